//! Secrets at rest (checklist 74–79): refresh tokens and the PKCE verifiers of pending flows.
//! AES-256-GCM from RustCrypto's `aes-gcm`, a random 96-bit nonce per encryption, associated
//! data that binds each ciphertext to its row and column, and a key ring from
//! `CONSENTRY_TOKEN_KEYS` (`kid:base64key,…`): the first key encrypts, every key decrypts, and
//! `consentry rotate-keys` re-encrypts old rows. [`FlowKeys`] adds, for flows only, a key
//! derived from the Microsoft client secret where no token keys are configured.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng, Payload},
};
use std::sync::Arc;

use base64::{Engine, engine::general_purpose::STANDARD};
use secrecy::{ExposeSecret, SecretBox, SecretString};

/// Length of the nonce stored in front of each ciphertext.
const NONCE_LEN: usize = 12;

/// Why a ciphertext could not be used. Never holds key or token material.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The row names a key this server does not have (retired too early, or misconfigured).
    #[error(
        "no token key {0:?} is configured (CONSENTRY_TOKEN_KEYS); it was retired while rows still use it"
    )]
    UnknownKey(String),
    /// Tampered with, copied from another row, or encrypted under another key.
    #[error("a stored token failed authentication")]
    Corrupt,
}

/// Why `CONSENTRY_TOKEN_KEYS` cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("CONSENTRY_TOKEN_KEYS: {0}")]
pub struct KeysError(String);

/// The configured keys. `Debug` shows key ids only.
pub struct TokenKeys {
    keys: Vec<(String, Aes256Gcm)>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("ids", &self.ids())
            .finish()
    }
}

impl TokenKeys {
    /// Parses `kid:base64key,kid:base64key`; each key is 32 random bytes in standard base64.
    pub fn parse(setting: &SecretString) -> Result<Self, KeysError> {
        let mut keys: Vec<(String, Aes256Gcm)> = Vec::new();
        for entry in setting
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let Some((kid, key)) = entry.split_once(':') else {
                return Err(KeysError(
                    "each key is `id:base64key` (generate one with `openssl rand -base64 32`)"
                        .to_owned(),
                ));
            };
            let kid = kid.trim();
            if kid.is_empty()
                || kid.len() > 32
                || !kid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(KeysError(format!(
                    "key id {kid:?} must be 1 to 32 letters, digits, '-' or '_'"
                )));
            }
            if keys.iter().any(|(k, _)| k == kid) {
                return Err(KeysError(format!("key id {kid:?} appears twice")));
            }
            let bytes = STANDARD
                .decode(key.trim())
                .map_err(|_| KeysError(format!("key {kid:?} is not base64")))?;
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| {
                KeysError(format!(
                    "key {kid:?} is {} bytes; AES-256 needs exactly 32 (`openssl rand -base64 32`)",
                    bytes.len()
                ))
            })?;
            keys.push((kid.to_owned(), cipher));
        }
        if keys.is_empty() {
            return Err(KeysError(
                "no key given: set `id:base64key` (generate with `openssl rand -base64 32`)"
                    .to_owned(),
            ));
        }
        Ok(Self { keys })
    }

    /// A ring of one key given as bytes, under an id that need not be a configurable one.
    fn single(kid: &str, key: &[u8]) -> Result<Self, KeysError> {
        let cipher = Aes256Gcm::new_from_slice(key)
            .map_err(|_| KeysError(format!("key {kid:?} is not 32 bytes")))?;
        Ok(Self {
            keys: vec![(kid.to_owned(), cipher)],
        })
    }

    /// The ring of a KMS's data keys (the first encrypts; `kms:…` ids), and after them the
    /// configured keys of `legacy`, which then only decrypt what they made before the KMS
    /// (`consentry rotate-keys` moves it under the newest data key).
    pub fn with_data_keys(
        data_keys: &[(String, SecretBox<[u8; 32]>)],
        legacy: Option<&TokenKeys>,
    ) -> Result<Self, KeysError> {
        let mut keys = Vec::new();
        for (kid, key) in data_keys {
            let cipher = Aes256Gcm::new_from_slice(key.expose_secret())
                .map_err(|_| KeysError(format!("data key {kid:?} is not 32 bytes")))?;
            keys.push((kid.clone(), cipher));
        }
        if let Some(legacy) = legacy {
            keys.extend(legacy.keys.iter().cloned());
        }
        if keys.is_empty() {
            return Err(KeysError("the KMS gave no data key".to_owned()));
        }
        Ok(Self { keys })
    }

    /// A fresh random 32-byte data key.
    pub fn generate_data_key() -> SecretBox<[u8; 32]> {
        let key = Aes256Gcm::generate_key(&mut OsRng);
        SecretBox::new(Box::new(key.into()))
    }

    /// A new setting with one fresh random key.
    pub fn generate_setting(kid: &str) -> SecretString {
        let key = Aes256Gcm::generate_key(&mut OsRng);
        SecretString::from(format!("{kid}:{}", STANDARD.encode(key)))
    }

    /// The key ids, the encrypting one first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(kid, _)| kid.as_str()).collect()
    }

    /// The id of the key new ciphertexts use.
    pub fn current(&self) -> &str {
        &self.keys[0].0
    }

    /// Encrypts under the first key: returns its id and `nonce ‖ ciphertext ‖ tag`.
    pub fn encrypt(&self, plaintext: &SecretString, aad: &str) -> (String, Vec<u8>) {
        let (kid, cipher) = &self.keys[0];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            // Only fails for plaintexts beyond AES-GCM's 64 GiB limit.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        (kid.clone(), out)
    }

    /// Decrypts a ciphertext made by [`TokenKeys::encrypt`] under key `kid` for `aad`.
    pub fn decrypt(
        &self,
        kid: &str,
        stored: &[u8],
        aad: &str,
    ) -> Result<SecretString, CryptoError> {
        let Some((_, cipher)) = self.keys.iter().find(|(k, _)| k == kid) else {
            return Err(CryptoError::UnknownKey(kid.to_owned()));
        };
        if stored.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Corrupt);
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Corrupt)?;
        let plain = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Corrupt)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Corrupt)
    }
}

/// The associated data of a delegated consent's refresh token: MSP, tenant, consent and
/// column, so a ciphertext copied to another row (or column) fails to decrypt (checklist 75).
pub(crate) fn refresh_token_aad(msp_id: &str, tenant_id: &str, consent_id: uuid::Uuid) -> String {
    format!("consentry/delegated_consent.refresh_token/{msp_id}/{tenant_id}/{consent_id}")
}

/// The associated data of a flow's PKCE verifier: MSP, flow and column, so that a
/// ciphertext copied to another flow (or column) fails to decrypt (checklist 75).
pub(crate) fn pkce_verifier_aad(msp_id: &str, flow_id: uuid::Uuid) -> String {
    format!("consentry/oauth_flow.pkce_verifier/{msp_id}/{flow_id}")
}

/// The id under which [`FlowKeys`] stores what it sealed with the key derived from the
/// Microsoft client secret. A configured id cannot contain ':', so the two never meet.
pub const DERIVED_FLOW_KEY_ID: &str = "derived:ms-client-secret";

/// HKDF-SHA256 (RFC 5869) parameters of that key: fixed, so every instance with the same
/// client secret derives the same key, and versioned, so another use never shares it.
const DERIVED_FLOW_KEY_SALT: &[u8] = b"consentry flow-secret key v1";
const DERIVED_FLOW_KEY_INFO: &[u8] = b"consentry/oauth_flow.pkce_verifier";

/// The keys that seal the PKCE verifiers of pending flows. The token keys when there are
/// (always with SQLite, where they are generated beside the database); else — PostgreSQL
/// without `CONSENTRY_TOKEN_KEYS` — a key derived with HKDF-SHA256 from the Microsoft client
/// secret, which every instance of a deployment shares and which is never stored in the
/// database, so that admin consent keeps working there. Verifiers sealed under the derived
/// key stay readable after token keys are configured; a changed client secret makes the
/// links of that moment unusable (a new link works).
#[derive(Clone, Debug, Default)]
pub(crate) struct FlowKeys {
    configured: Option<Arc<TokenKeys>>,
    derived: Option<Arc<TokenKeys>>,
}

impl FlowKeys {
    /// From the configured token keys, if any, and the Microsoft client secret, if any.
    pub(crate) fn new(
        configured: Option<Arc<TokenKeys>>,
        client_secret: Option<&SecretString>,
    ) -> Self {
        let derived = client_secret
            .and_then(derive_flow_key)
            .and_then(|key| TokenKeys::single(DERIVED_FLOW_KEY_ID, &key).ok())
            .map(Arc::new);
        Self {
            configured,
            derived,
        }
    }

    /// The id new ciphertexts are sealed under; `None` when there is no key at all.
    pub(crate) fn current(&self) -> Option<&str> {
        self.configured
            .as_deref()
            .or(self.derived.as_deref())
            .map(TokenKeys::current)
    }

    /// Seals `plaintext` for `aad` under [`FlowKeys::current`]: its key id and ciphertext.
    /// `None` when there is no key at all (no token keys and no Microsoft client secret).
    pub(crate) fn encrypt(&self, plaintext: &SecretString, aad: &str) -> Option<(String, Vec<u8>)> {
        self.configured
            .as_deref()
            .or(self.derived.as_deref())
            .map(|keys| keys.encrypt(plaintext, aad))
    }

    /// Opens what [`FlowKeys::encrypt`] sealed under key `kid` for `aad`.
    pub(crate) fn decrypt(
        &self,
        kid: &str,
        stored: &[u8],
        aad: &str,
    ) -> Result<SecretString, CryptoError> {
        let keys = if kid == DERIVED_FLOW_KEY_ID {
            self.derived.as_deref()
        } else {
            self.configured.as_deref()
        };
        keys.ok_or_else(|| CryptoError::UnknownKey(kid.to_owned()))?
            .decrypt(kid, stored, aad)
    }
}

/// The flow key derived from the Microsoft client secret; `None` only if HKDF refused the
/// length (it does not for 32 bytes of SHA-256).
fn derive_flow_key(client_secret: &SecretString) -> Option<[u8; 32]> {
    use ring::hkdf::{HKDF_SHA256, Salt};
    let prk = Salt::new(HKDF_SHA256, DERIVED_FLOW_KEY_SALT)
        .extract(client_secret.expose_secret().as_bytes());
    let mut key = [0u8; 32];
    prk.expand(&[DERIVED_FLOW_KEY_INFO], HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut key))
        .ok()?;
    Some(key)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn keys(setting: &str) -> TokenKeys {
        TokenKeys::parse(&SecretString::from(setting.to_owned())).unwrap()
    }

    fn token() -> SecretString {
        SecretString::from("0.AAAA-refresh-token".to_owned())
    }

    #[test]
    fn checklist_74_75_a_ciphertext_decrypts_only_with_its_own_row_and_key() {
        let ring = keys(TokenKeys::generate_setting("k1").expose_secret());
        let (kid, sealed) = ring.encrypt(&token(), "row-a");
        assert_eq!(kid, "k1");
        assert!(!sealed.windows(7).any(|w| w == b"refresh"), "no plaintext");
        assert_eq!(
            ring.decrypt(&kid, &sealed, "row-a")
                .unwrap()
                .expose_secret(),
            token().expose_secret()
        );
        assert_eq!(
            ring.decrypt(&kid, &sealed, "row-b").unwrap_err(),
            CryptoError::Corrupt
        );
        for bit in [0, 13 * 8, sealed.len() * 8 - 1] {
            let mut flipped = sealed.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                ring.decrypt(&kid, &flipped, "row-a").unwrap_err(),
                CryptoError::Corrupt
            );
        }
    }

    #[test]
    fn checklist_76_nonces_do_not_repeat() {
        let ring = keys(TokenKeys::generate_setting("k1").expose_secret());
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            let (_, sealed) = ring.encrypt(&token(), "row");
            assert!(
                seen.insert(sealed[..NONCE_LEN].to_vec()),
                "a nonce repeated"
            );
        }
    }

    #[test]
    fn checklist_77_new_writes_use_the_first_key_and_old_ids_still_decrypt() {
        let old = TokenKeys::generate_setting("old");
        let new = TokenKeys::generate_setting("new");
        let before = keys(old.expose_secret());
        let (kid, sealed) = before.encrypt(&token(), "row");
        let after = keys(&format!("{},{}", new.expose_secret(), old.expose_secret()));
        assert_eq!(after.current(), "new");
        assert_eq!(after.encrypt(&token(), "row").0, "new");
        assert!(after.decrypt(&kid, &sealed, "row").is_ok());
        let retired = keys(new.expose_secret());
        assert_eq!(
            retired.decrypt(&kid, &sealed, "row").unwrap_err(),
            CryptoError::UnknownKey("old".to_owned())
        );
    }

    #[test]
    fn bad_settings_are_refused_with_advice() {
        for (setting, says) in [
            ("", "no key"),
            ("k1", "id:base64key"),
            ("k1:not base64!", "not base64"),
            ("k1:AAAA", "exactly 32"),
            ("bad id:AAAA", "letters"),
        ] {
            let error = TokenKeys::parse(&SecretString::from(setting.to_owned())).unwrap_err();
            assert!(error.to_string().contains(says), "{setting}: {error}");
        }
        let one = TokenKeys::generate_setting("k1");
        let twice = format!("{},{}", one.expose_secret(), one.expose_secret());
        assert!(
            TokenKeys::parse(&SecretString::from(twice))
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(!format!("{:?}", keys(one.expose_secret())).contains(&one.expose_secret()[3..]));
    }

    fn verifier() -> SecretString {
        SecretString::from("pkce-verifier-0123456789abcdefghijklmnopqrstuvwxyz".to_owned())
    }

    fn ring(setting: &SecretString) -> Option<Arc<TokenKeys>> {
        Some(Arc::new(keys(setting.expose_secret())))
    }

    #[test]
    fn checklist_74_75_a_flow_verifier_is_sealed_to_its_flow_under_the_token_keys() {
        let setting = TokenKeys::generate_setting("k1");
        let secret = SecretString::from("client-secret".to_owned());
        let flow_keys = FlowKeys::new(ring(&setting), Some(&secret));
        assert_eq!(flow_keys.current(), Some("k1"), "the token keys come first");
        let flow = uuid::Uuid::new_v4();
        let aad = pkce_verifier_aad("msp-a", flow);
        let (kid, sealed) = flow_keys.encrypt(&verifier(), &aad).unwrap();
        assert_eq!(kid, "k1");
        assert!(
            !sealed.windows(12).any(|w| w == b"pkce-verifie"),
            "no plaintext"
        );
        assert_eq!(
            flow_keys
                .decrypt(&kid, &sealed, &aad)
                .unwrap()
                .expose_secret(),
            verifier().expose_secret()
        );
        for other in [
            pkce_verifier_aad("msp-a", uuid::Uuid::new_v4()),
            pkce_verifier_aad("msp-b", flow),
            refresh_token_aad("msp-a", "tenant", flow),
        ] {
            assert_eq!(
                flow_keys.decrypt(&kid, &sealed, &other).unwrap_err(),
                CryptoError::Corrupt,
                "{other}"
            );
        }
    }

    #[test]
    fn without_token_keys_flows_use_a_key_derived_from_the_client_secret() {
        let secret = SecretString::from("client-secret".to_owned());
        let aad = pkce_verifier_aad("msp-a", uuid::Uuid::new_v4());
        let one = FlowKeys::new(None, Some(&secret));
        assert_eq!(one.current(), Some(DERIVED_FLOW_KEY_ID));
        let (kid, sealed) = one.encrypt(&verifier(), &aad).unwrap();
        assert_eq!(kid, DERIVED_FLOW_KEY_ID);

        // Another instance with the same secret reads it; one with token keys added later too.
        let another = FlowKeys::new(None, Some(&secret));
        assert!(another.decrypt(&kid, &sealed, &aad).is_ok());
        let configured_later =
            FlowKeys::new(ring(&TokenKeys::generate_setting("k1")), Some(&secret));
        assert_eq!(configured_later.current(), Some("k1"));
        assert!(configured_later.decrypt(&kid, &sealed, &aad).is_ok());

        // A rotated client secret cannot, and says so; nor can an instance without one.
        let rotated = FlowKeys::new(None, Some(&SecretString::from("rotated".to_owned())));
        assert_eq!(
            rotated.decrypt(&kid, &sealed, &aad).unwrap_err(),
            CryptoError::Corrupt
        );
        assert_eq!(
            FlowKeys::default()
                .decrypt(&kid, &sealed, &aad)
                .unwrap_err(),
            CryptoError::UnknownKey(DERIVED_FLOW_KEY_ID.to_owned())
        );
        assert_eq!(FlowKeys::default().encrypt(&verifier(), &aad), None);
        // A configured id is `[A-Za-z0-9_-]`: never this one.
        assert!(DERIVED_FLOW_KEY_ID.contains(':'));
    }
}
