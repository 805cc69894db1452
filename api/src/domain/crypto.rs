//! Refresh tokens at rest (checklist 74–79): AES-256-GCM from RustCrypto's `aes-gcm`, a
//! random 96-bit nonce per encryption, associated data that binds each ciphertext to its row
//! and column, and a key ring from `CONSENTRY_TOKEN_KEYS` (`kid:base64key,…`): the first key
//! encrypts, every key decrypts, and `consentry rotate-keys` re-encrypts old rows.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use secrecy::{ExposeSecret, SecretString};

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
pub fn refresh_token_aad(msp_id: &str, tenant_id: &str, consent_id: uuid::Uuid) -> String {
    format!("consentry/delegated_consent.refresh_token/{msp_id}/{tenant_id}/{consent_id}")
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
}
