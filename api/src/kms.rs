//! The key-encryption key in a KMS (checklist 78): HashiCorp Vault's transit engine wraps
//! Consentry's data keys, so the key that protects refresh tokens and sign-in verifiers is
//! never in the database, in Consentry's configuration, or in its memory — only the data keys
//! are, unwrapped at start. The database holds the data keys wrapped (`data_key`), and the
//! ciphertexts they made; Vault's policies decide who may unwrap.
//!
//! Vault's transit API (`/v1/{mount}/encrypt/{key}`, `decrypt`, `rewrap`), authenticated
//! with `X-Vault-Token`. Consentry keeps nothing Vault answers but the wrapped key.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::Deserialize;
use url::Url;

use crate::config::Settings;

/// Why the KMS could not do what was asked. Never holds a key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KmsError {
    #[error("Vault ({0}) could not be reached: {1}")]
    Unreachable(String, String),
    #[error("Vault ({0}) refused: HTTP {1}: {2}")]
    Refused(String, u16, String),
    #[error("Vault ({0}) answered in an unexpected shape")]
    Malformed(String),
}

/// A transit key of a Vault server: wraps and unwraps data keys.
pub(crate) struct VaultTransit {
    address: Url,
    mount: String,
    key: String,
    token: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for VaultTransit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultTransit")
            .field("key", &self.label())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Answer<T> {
    data: T,
}

#[derive(Deserialize)]
struct Ciphertext {
    ciphertext: String,
}

#[derive(Deserialize)]
struct Plaintext {
    plaintext: String,
}

#[derive(Deserialize, Default)]
struct Errors {
    #[serde(default)]
    errors: Vec<String>,
}

impl VaultTransit {
    /// The KMS the settings name (`CONSENTRY_KMS_VAULT_ADDR` and its token), if any.
    pub(crate) fn from_settings(settings: &Settings) -> anyhow::Result<Option<Self>> {
        let (Some(address), Some(token)) = (&settings.kms_vault_addr, &settings.kms_vault_token)
        else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Some(Self {
            address: address.clone(),
            mount: settings.kms_vault_mount.trim_matches('/').to_owned(),
            key: settings.kms_vault_key.clone(),
            token: token.clone(),
            http,
        }))
    }

    /// Which key wraps, as recorded beside each wrapped data key: `vault-transit:{mount}/{key}`.
    pub(crate) fn label(&self) -> String {
        format!("vault-transit:{}/{}", self.mount, self.key)
    }

    /// Wraps a data key: Vault's ciphertext of it (`vault:v1:…`).
    pub(crate) async fn wrap(&self, data_key: &SecretBox<[u8; 32]>) -> Result<String, KmsError> {
        let body = serde_json::json!({ "plaintext": STANDARD.encode(data_key.expose_secret()) });
        let answer: Ciphertext = self.call("encrypt", body).await?;
        Ok(answer.ciphertext)
    }

    /// Unwraps a data key that [`VaultTransit::wrap`] wrapped.
    pub(crate) async fn unwrap(&self, wrapped: &str) -> Result<SecretBox<[u8; 32]>, KmsError> {
        let body = serde_json::json!({ "ciphertext": wrapped });
        let answer: Plaintext = self.call("decrypt", body).await?;
        let bytes = STANDARD
            .decode(answer.plaintext.as_bytes())
            .map_err(|_| self.malformed())?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| self.malformed())?;
        Ok(SecretBox::new(Box::new(key)))
    }

    /// Wraps a data key again under the transit key's newest version (after it was rotated in
    /// Vault), without Consentry ever seeing it.
    pub(crate) async fn rewrap(&self, wrapped: &str) -> Result<String, KmsError> {
        let body = serde_json::json!({ "ciphertext": wrapped });
        let answer: Ciphertext = self.call("rewrap", body).await?;
        Ok(answer.ciphertext)
    }

    fn malformed(&self) -> KmsError {
        KmsError::Malformed(self.address.to_string())
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        body: serde_json::Value,
    ) -> Result<T, KmsError> {
        let url = crate::config::join(
            &self.address,
            &format!("v1/{}/{operation}/{}", self.mount, self.key),
        );
        let where_ = self.address.to_string();
        let response = self
            .http
            .post(url)
            .header("X-Vault-Token", self.token.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(|e| KmsError::Unreachable(where_.clone(), e.without_url().to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| KmsError::Unreachable(where_.clone(), e.without_url().to_string()))?;
        if !status.is_success() {
            let errors: Errors = serde_json::from_slice(&bytes).unwrap_or_default();
            let why = errors.errors.join("; ");
            return Err(KmsError::Refused(
                where_,
                status.as_u16(),
                crate::microsoft::bounded(&why, 300),
            ));
        }
        serde_json::from_slice::<Answer<T>>(&bytes)
            .map(|answer| answer.data)
            .map_err(|_| self.malformed())
    }
}
