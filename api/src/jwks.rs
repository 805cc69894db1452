//! A cached JSON Web Key Set: fetched on demand, refetched for an unknown `kid` at most once
//! per interval (single flight), and kept when a refetch fails (checklist 89–90). Used for
//! callers' tokens and for Microsoft's id_tokens. Keys come only from the configured URL:
//! a token's `jku`, `x5u` or `x5c` is never followed (checklist 27).

use std::time::{Duration, Instant};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm},
};
use tokio::sync::{Mutex, RwLock};
use url::Url;

/// Why no key verifies a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key set cannot be fetched and none is cached: fail closed, retryable.
    #[error("cannot be verified: the signing keys cannot be fetched right now")]
    Unavailable,
    #[error("is signed with a key the issuer does not publish")]
    UnknownKey,
    #[error("has no kid and no single published key matches its algorithm")]
    Ambiguous,
    #[error("names a key that does not match its algorithm")]
    AlgorithmMismatch,
    #[error("names a signing key that is unusable")]
    Unusable,
}

/// Refetch proactively once the cached set is this old (keys rotate).
const MAX_AGE: Duration = Duration::from_secs(3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Cached {
    keys: Option<JwkSet>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

/// Keys from one JWKS URL.
pub(crate) struct JwksCache {
    url: Url,
    http: reqwest::Client,
    /// Never refetch more often than this, however many unknown `kid`s arrive.
    min_refetch_interval: Duration,
    cached: RwLock<Cached>,
    /// Held while fetching, so concurrent misses wait for one fetch instead of each making one.
    fetching: Mutex<()>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.url.as_str())
            .finish()
    }
}

impl JwksCache {
    pub(crate) fn new(url: Url, min_refetch_interval: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            url,
            http,
            min_refetch_interval,
            cached: RwLock::new(Cached::default()),
            fetching: Mutex::new(()),
        })
    }

    /// Fetches the key set now (subject to the refetch interval).
    pub(crate) async fn refresh(&self) -> anyhow::Result<()> {
        let observed = self.cached.read().await.attempted_at;
        self.refetch(observed).await
    }

    /// The key that verifies a token with this header.
    pub(crate) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, KeyError> {
        let observed = {
            let cached = self.cached.read().await;
            let fresh = cached.fetched_at.is_some_and(|t| t.elapsed() < MAX_AGE);
            if let Some(keys) = &cached.keys
                && let Some(found) = select(keys, kid, alg)?
                && fresh
            {
                return decoding_key(found);
            }
            cached.attempted_at
        };
        // Unknown kid, stale set, or nothing yet: one refetch for everyone waiting.
        if let Err(error) = self.refetch(observed).await {
            tracing::warn!(%error, url = %self.url, "cannot refresh signing keys; using the last good set");
        }
        let cached = self.cached.read().await;
        let Some(keys) = &cached.keys else {
            return Err(KeyError::Unavailable);
        };
        match select(keys, kid, alg)? {
            Some(found) => decoding_key(found),
            None if kid.is_some() => Err(KeyError::UnknownKey),
            None => Err(KeyError::Ambiguous),
        }
    }

    /// Fetches unless another task fetched since `observed`, or the last attempt was too recent.
    async fn refetch(&self, observed: Option<Instant>) -> anyhow::Result<()> {
        let _guard = self.fetching.lock().await;
        {
            let cached = self.cached.read().await;
            if cached.attempted_at != observed {
                return Ok(()); // someone else fetched while we waited
            }
            if cached
                .attempted_at
                .is_some_and(|t| t.elapsed() < self.min_refetch_interval)
            {
                return Ok(());
            }
        }
        self.cached.write().await.attempted_at = Some(Instant::now());
        let keys: JwkSet = crate::microsoft::clock::waiting(async {
            let response = self.http.get(self.url.clone()).send().await?;
            if !response.status().is_success() {
                anyhow::bail!("{} answered {}", self.url, response.status());
            }
            Ok(response.json().await?)
        })
        .await?;
        let mut cached = self.cached.write().await;
        cached.keys = Some(keys);
        cached.fetched_at = Some(Instant::now());
        Ok(())
    }
}

/// Picks the key for `kid`; without a `kid`, the one key that fits the algorithm
/// (checklist 34–35: several candidates and no `kid` is refused).
fn select<'a>(
    keys: &'a JwkSet,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Option<&'a Jwk>, KeyError> {
    match kid {
        Some(kid) => {
            let Some(key) = keys.find(kid) else {
                return Ok(None);
            };
            if !fits(key, alg) {
                return Err(KeyError::AlgorithmMismatch);
            }
            Ok(Some(key))
        }
        None => {
            let mut candidates = keys.keys.iter().filter(|k| fits(k, alg));
            match (candidates.next(), candidates.next()) {
                (Some(only), None) => Ok(Some(only)),
                _ => Ok(None),
            }
        }
    }
}

/// True when `key` can verify `alg`: the right key type and curve, and no conflicting `alg`.
fn fits(key: &Jwk, alg: Algorithm) -> bool {
    let declared_ok = match key.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(_) => false,
    };
    let type_ok = match (&key.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        _ => false,
    };
    declared_ok && type_ok
}

fn decoding_key(key: &Jwk) -> Result<DecodingKey, KeyError> {
    DecodingKey::from_jwk(key).map_err(|_| KeyError::Unusable)
}
