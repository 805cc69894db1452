//! Consentry's client of Microsoft: the app registration it acts as, the errors Microsoft's
//! answers become, and the HTTP plumbing (timeouts, retries, `Retry-After`) every call shares.

use std::{collections::HashMap, sync::Arc, time::Duration};

use secrecy::SecretString;
use url::Url;

use super::{
    errors::{self, Problem},
    text::bounded,
};

use crate::{config::Settings, jwks::JwksCache};

/// Consentry's app registration, and where Microsoft is.
#[derive(Clone, Debug)]
pub struct MicrosoftConfig {
    pub client_id: String,
    pub client_secret: SecretString,
    /// e.g. `https://login.microsoftonline.com`
    pub authority: Url,
    /// e.g. `https://graph.microsoft.com`
    pub graph: Url,
    /// The one redirect URI of every flow.
    pub redirect_uri: Url,
    /// Every call to Microsoft gives up after this long (reqwest has no default timeout).
    pub timeout: Duration,
    /// The longest `Retry-After` Consentry waits out; longer throttling fails the call.
    pub max_retry_wait: Duration,
    /// Application permissions a tenant must grant (`CONSENTRY_MS_REQUIRED_ROLES`).
    pub required_roles: Vec<String>,
}

impl MicrosoftConfig {
    /// The app registration from the settings, or `None` when it is not configured.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        Some(Self {
            client_id: settings.ms_client_id.clone()?,
            client_secret: settings.ms_client_secret.clone()?,
            authority: settings.ms_authority_url.clone(),
            graph: settings.ms_graph_url.clone(),
            redirect_uri: settings.redirect_uri(),
            timeout: Duration::from_secs(settings.ms_timeout_seconds),
            max_retry_wait: Duration::from_secs(settings.ms_max_retry_wait_seconds),
            required_roles: settings.required_roles(),
        })
    }

    /// `{graph}/.default`: every application permission of the app registration.
    pub fn graph_default_scope(&self) -> String {
        format!("{}/.default", self.graph.as_str().trim_end_matches('/'))
    }

    /// `{authority}/{tid}/v2.0`, the issuer of a tenant's v2 id_tokens.
    pub fn issuer(&self, tenant_id: &str) -> String {
        format!(
            "{}/{tenant_id}/v2.0",
            self.authority.as_str().trim_end_matches('/')
        )
    }

    /// The tenant an issuer names, when it is exactly [`Self::issuer`] of a tenant id (in its
    /// canonical, lower-case form).
    pub fn issuer_tenant(&self, issuer: &str) -> Option<uuid::Uuid> {
        let tenant = issuer
            .strip_prefix(self.authority.as_str().trim_end_matches('/'))?
            .strip_prefix('/')?
            .strip_suffix("/v2.0")?;
        uuid::Uuid::try_parse(tenant)
            .ok()
            .filter(|id| id.to_string() == tenant)
    }

    /// `{graph}/{permission}`: a delegated permission of Microsoft Graph as a scope.
    pub fn graph_scope(&self, permission: &str) -> String {
        format!("{}/{permission}", self.graph.as_str().trim_end_matches('/'))
    }

    pub(super) fn endpoint(&self, tenant: &str, path: &str) -> Url {
        crate::config::join(&self.authority, &format!("{tenant}/{path}"))
    }
}

/// Why a call to Microsoft failed. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum MicrosoftError {
    /// The identity platform refused (`{"error", "error_description", "error_codes"}`).
    #[error("Microsoft refused ({status}): {error} {codes:?}")]
    Identity {
        status: u16,
        error: String,
        description: String,
        codes: Vec<u64>,
        suberror: Option<String>,
    },
    /// Graph refused (`{"error": {"code", "message"}}`).
    #[error("Microsoft Graph refused ({status}): {code}")]
    Graph {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer within the timeout.
    #[error("Microsoft did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed.
    #[error("Microsoft could not be reached: {0}")]
    Unreachable(String),
    /// 5xx, or throttling longer than Consentry waits.
    #[error("Microsoft is unavailable ({status})")]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Not Microsoft's documented shape: unexpected status, content type, JSON or a redirect.
    #[error("Microsoft answered in an unexpected shape: {0}")]
    Malformed(String),
}

impl MicrosoftError {
    /// The problem to show for this failure.
    pub fn problem(&self) -> Problem {
        match self {
            Self::Identity {
                error,
                description,
                codes,
                ..
            } => errors::from_identity(error, description, codes),
            Self::Graph {
                status,
                code,
                message,
            } => errors::from_graph(*status, code, message),
            Self::Unavailable { status: 429, .. } => errors::from_graph(429, "TooManyRequests", ""),
            other => errors::unavailable(&bounded(&other.to_string(), 300)),
        }
    }

    /// True for failures worth retrying later (Microsoft down, slow or throttling).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_) | Self::Unreachable(_) | Self::Unavailable { .. }
        )
    }

    /// Microsoft answered, in its documented shape, that it will not — a refusal someone must
    /// act on (consent again), as opposed to an outage, a garbled answer, or a refusal of
    /// Consentry's own credentials. Only a refusal may expire a stored consent.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Identity { .. } | Self::Graph { .. }) && !self.problem().ours
    }
}

/// Microsoft refused Consentry's own app credentials (bad or expired client secret): an
/// operator's problem, shown by `/readyz`, never a client tile's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialProblem {
    /// Since when every token request has been refused this way.
    pub since: chrono::DateTime<chrono::Utc>,
    pub aadsts: Option<u64>,
    pub remediation: String,
}

/// The client for Microsoft's identity platform and Graph.
pub struct Microsoft {
    pub(super) config: MicrosoftConfig,
    /// Set while Microsoft refuses our own credentials.
    pub(super) credentials: std::sync::Mutex<Option<CredentialProblem>>,
    pub(super) http: reqwest::Client,
    /// id_token signing keys, per tenant key-set URL.
    pub(super) keys: std::sync::Mutex<HashMap<String, Arc<JwksCache>>>,
    pub(super) key_refetch_interval: Duration,
}

impl std::fmt::Debug for Microsoft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Microsoft")
            .field("client_id", &self.config.client_id)
            .field("authority", &self.config.authority.as_str())
            .field("graph", &self.config.graph.as_str())
            .finish_non_exhaustive()
    }
}

impl Microsoft {
    pub fn new(config: MicrosoftConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            // Checklist 19: a redirect from a token, key or Graph endpoint is never followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("consentry/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            config,
            credentials: std::sync::Mutex::new(None),
            http,
            keys: std::sync::Mutex::new(HashMap::new()),
            key_refetch_interval: Duration::from_secs(30),
        })
    }

    /// Shortens the least time between key-set fetches for unknown `kid`s (tests).
    pub fn with_key_refetch_interval(mut self, interval: Duration) -> Self {
        self.key_refetch_interval = interval;
        self
    }

    pub fn config(&self) -> &MicrosoftConfig {
        &self.config
    }

    /// Whether Microsoft currently refuses Consentry's own client credentials.
    pub fn credential_problem(&self) -> Option<CredentialProblem> {
        match self.credentials.lock() {
            Ok(health) => health.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The key-set cache of one tenant path (`{tid}` or `organizations`).
    pub(super) fn key_set(&self, tenant: &str) -> anyhow::Result<Arc<JwksCache>> {
        let url = self.config.endpoint(tenant, "discovery/v2.0/keys");
        let mut keys = self
            .keys
            .lock()
            .map_err(|_| anyhow::anyhow!("key cache poisoned"))?;
        if let Some(cache) = keys.get(url.as_str()) {
            return Ok(cache.clone());
        }
        // Bounded: a flood of made-up tenants cannot grow the cache without limit.
        if keys.len() >= 10_000 {
            keys.clear();
        }
        let cache = Arc::new(JwksCache::new(url.clone(), self.key_refetch_interval)?);
        keys.insert(url.to_string(), cache.clone());
        Ok(cache)
    }

    /// Waits out a `Retry-After`, if it is within the bound.
    pub(super) fn retry_wait(
        &self,
        retry_after: Option<Duration>,
        attempt: u32,
    ) -> Option<Duration> {
        // Without Retry-After: capped exponential backoff with jitter (checklist 87).
        let wait = retry_after.unwrap_or_else(|| {
            let base = Duration::from_millis(250 * 2u64.pow(attempt.min(5)));
            let jitter = Duration::from_millis(rand::random::<u64>() % 250);
            base + jitter
        });
        (wait <= self.config.max_retry_wait).then_some(wait)
    }
}

/// Reads `Retry-After` (seconds) from a response.
pub(super) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A transport failure as a [`MicrosoftError`].
pub(super) fn transport(error: reqwest::Error, timeout: Duration) -> MicrosoftError {
    if error.is_timeout() {
        MicrosoftError::Timeout(timeout)
    } else {
        // The URL may carry a query (never a secret), but keep messages short.
        MicrosoftError::Unreachable(error.without_url().to_string())
    }
}

/// Checks a response is JSON before parsing it.
pub(super) fn is_json(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|media| media == "application/json" || media.ends_with("+json"))
}

/// OpenID Connect's scopes: an id_token naming the user.
const OPENID: [&str; 2] = ["openid", "profile"];

impl MicrosoftConfig {
    /// What a service principal repair's admin sign-in asks for: Graph's
    /// `Application.ReadWrite.All` (to create the principal) and `User.Read` (to read the
    /// organization), with OpenID for a validated id_token.
    pub fn repair_sign_in_scopes(&self) -> Vec<String> {
        let mut scopes: Vec<String> = OPENID.map(str::to_owned).into();
        scopes.push(self.graph_scope("User.Read"));
        scopes.push(self.graph_scope("Application.ReadWrite.All"));
        scopes
    }

    /// What a delegated consent's sign-in asks for besides the permissions chosen: OpenID,
    /// a refresh token (`offline_access`) and Graph's `User.Read`, followed by `chosen`.
    pub fn delegated_sign_in_scopes(
        &self,
        chosen: impl IntoIterator<Item = String>,
    ) -> Vec<String> {
        let mut scopes: Vec<String> = OPENID.map(str::to_owned).into();
        scopes.push("offline_access".to_owned());
        scopes.push(self.graph_scope("User.Read"));
        scopes.extend(chosen);
        scopes
    }
}
