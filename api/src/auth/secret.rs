//! Secrets Consentry generates for itself when none are configured, kept beside the embedded
//! database: the HS256 secret (so that `consentry token` and `consentry serve` agree on it)
//! and the key that encrypts stored refresh tokens.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use secrecy::SecretString;

use crate::config::{DatabaseKind, Settings};

/// `consentry.db` keeps its secret in `consentry.db.hs256-secret`.
pub(crate) const HS256_SECRET_FILE_SUFFIX: &str = ".hs256-secret";
/// … and its token-encryption keys in `consentry.db.token-keys`.
pub(crate) const TOKEN_KEYS_FILE_SUFFIX: &str = ".token-keys";

/// The keys that encrypt stored refresh tokens: `CONSENTRY_TOKEN_KEYS`; else the ones kept
/// beside the SQLite file (created on first use); else, for an in-memory database, a fresh
/// key that dies with the process. `None` on PostgreSQL without the setting: nothing is
/// generated there, and delegated consents stay unavailable until it is set (sign-in links
/// then use a key derived from the Microsoft client secret: `domain::crypto::FlowKeys`).
pub(crate) fn resolve_token_keys(settings: &Settings) -> anyhow::Result<Option<SecretString>> {
    if let Some(keys) = &settings.token_keys {
        return Ok(Some(keys.clone()));
    }
    let generate = || crate::domain::crypto::TokenKeys::generate_setting("k1");
    match settings.database_kind()? {
        DatabaseKind::SqliteFile(db) => {
            load_or_create(&sibling(&db, TOKEN_KEYS_FILE_SUFFIX), generate, parse_keys).map(Some)
        }
        DatabaseKind::SqliteMemory => Ok(Some(generate())),
        DatabaseKind::Postgres => Ok(None),
    }
}

/// The keys of `CONSENTRY_TOKEN_KEYS`, else of a key file already beside the SQLite file,
/// without making one. With a KMS these only decrypt what they encrypted before it.
pub(crate) fn existing_token_keys(settings: &Settings) -> anyhow::Result<Option<SecretString>> {
    if let Some(keys) = &settings.token_keys {
        return Ok(Some(keys.clone()));
    }
    let DatabaseKind::SqliteFile(db) = settings.database_kind()? else {
        return Ok(None);
    };
    let path = sibling(&db, TOKEN_KEYS_FILE_SUFFIX);
    match fs::read_to_string(&path) {
        Ok(text) => parse_keys(&path, &text).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn parse_keys(path: &Path, text: &str) -> anyhow::Result<SecretString> {
    let keys = SecretString::from(text.trim().to_owned());
    crate::domain::crypto::TokenKeys::parse(&keys)
        .with_context(|| format!("{} is not a valid key file", path.display()))?;
    Ok(keys)
}

/// The configured secret; else the one kept beside the SQLite file (created on first use);
/// else, for an in-memory database, a fresh one that dies with the process.
pub(crate) fn resolve_hs256_secret(settings: &Settings) -> anyhow::Result<SecretString> {
    if let Some(secret) = &settings.auth_hs256_secret {
        return Ok(secret.clone());
    }
    match settings.database_kind()? {
        DatabaseKind::SqliteFile(db) => {
            load_or_create(&sibling(&db, HS256_SECRET_FILE_SUFFIX), generate, parse)
        }
        DatabaseKind::SqliteMemory => {
            tracing::warn!("in-memory database: using a throw-away HS256 secret");
            Ok(generate())
        }
        DatabaseKind::Postgres => bail!(
            "no caller-token verification is configured: set CONSENTRY_AUTH_JWKS_URL (with \
             CONSENTRY_AUTH_ISSUER and CONSENTRY_AUTH_AUDIENCE) or CONSENTRY_AUTH_HS256_SECRET; \
             a secret is only generated for the embedded SQLite database"
        ),
    }
}

fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn generate() -> SecretString {
    let mut bytes = [0u8; 48];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

fn load_or_create(
    path: &Path,
    generate: impl Fn() -> SecretString,
    parse: impl Fn(&Path, &str) -> anyhow::Result<SecretString>,
) -> anyhow::Result<SecretString> {
    match fs::read_to_string(path) {
        Ok(text) => return parse(path, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let secret = generate();
    // Written to a private temporary file, then linked into place: two processes starting at
    // once end up with the same secret, and no reader ever sees a half-written file.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".consentry-secret-{}", uuid::Uuid::new_v4()));
    {
        let mut file =
            private_file(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        use secrecy::ExposeSecret;
        file.write_all(secret.expose_secret().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a secret (keep this file private)");
            Ok(secret)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            parse(path, &fs::read_to_string(path)?)
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

fn parse(path: &Path, text: &str) -> anyhow::Result<SecretString> {
    let secret = text.trim();
    if secret.len() < 32 {
        bail!(
            "{} holds a secret shorter than 32 bytes; delete it to have a new one generated",
            path.display()
        );
    }
    Ok(SecretString::from(secret.to_owned()))
}

#[cfg(unix)]
fn private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn the_secret_is_created_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db.hs256-secret");
        let first = load_or_create(&path, generate, parse).unwrap();
        let second = load_or_create(&path, generate, parse).unwrap();
        assert_eq!(first.expose_secret(), second.expose_secret());
        assert!(first.expose_secret().len() >= 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_truncated_secret_file_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db.hs256-secret");
        fs::write(&path, "short\n").unwrap();
        let err = load_or_create(&path, generate, parse)
            .unwrap_err()
            .to_string();
        assert!(err.contains("delete it"), "{err}");
    }
}
