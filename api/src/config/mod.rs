//! Settings from the environment and command-line flags (docs/design.md §2, "Configuration").
//!
//! Every option is a flag and an environment variable; secrets are wrapped so that they
//! cannot be printed by accident.

mod derived;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::domain::repairable::{REPAIRABLE_APP_IDS_SETTING, RepairableApps};

/// The embedded default: one SQLite file in the working directory.
pub(crate) const DEFAULT_DATABASE_URL: &str = "sqlite://consentry.db?mode=rwc";
/// `CONSENTRY_PUBLIC_URL` when unset: replaced by the address the server really listens on
/// ([`Settings::settle_public_url`]).
pub(crate) const DEFAULT_PUBLIC_URL: &str = "http://localhost:8080";
/// Issuer and audience of HS256 caller tokens when none are configured.
pub const DEFAULT_HS256_ISSUER: &str = "consentry";
pub const DEFAULT_HS256_AUDIENCE: &str = "consentry";

/// Everything the server needs to start, whichever subcommand runs.
#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// Database: `sqlite://FILE?mode=rwc` (embedded) or `postgres://USER:PASSWORD@HOST/DB`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, value_parser = secret, hide_env_values = true, hide_default_value = true, global = true, help_heading = "Database")]
    pub database_url: SecretString,

    /// Maximum open database connections of this instance.
    #[arg(
        long,
        env = "CONSENTRY_DB_MAX_CONNECTIONS",
        default_value_t = 10,
        global = true,
        help_heading = "Database"
    )]
    pub db_max_connections: u32,

    /// Address and port to listen on (port 0 picks a free port); `:PORT` listens on every
    /// interface.
    #[arg(
        long,
        env = "CONSENTRY_LISTEN",
        default_value = "127.0.0.1:8080",
        value_parser = listen_address,
        global = true,
        help_heading = "HTTP"
    )]
    pub listen: SocketAddr,

    /// Public base URL of this server; the OAuth redirect URI is this + `/oauth/callback`.
    /// Unset: `http://localhost:PORT` of the port it listens on.
    #[arg(
        long,
        env = "CONSENTRY_PUBLIC_URL",
        default_value = DEFAULT_PUBLIC_URL,
        global = true,
        help_heading = "HTTP"
    )]
    pub public_url: Url,

    /// Where the callback sends the browser afterwards (`{url}/clients/{id}?graphApi=STATUS`).
    /// Unset: the callback renders its own result page.
    #[arg(
        long,
        env = "CONSENTRY_FRONTEND_URL",
        global = true,
        help_heading = "HTTP"
    )]
    pub frontend_url: Option<Url>,

    /// Application (client) id of Consentry's app registration in Microsoft Entra ID.
    #[arg(
        long,
        env = "CONSENTRY_MS_CLIENT_ID",
        global = true,
        help_heading = "Microsoft"
    )]
    pub ms_client_id: Option<String>,

    /// Client secret of that app registration.
    #[arg(long, env = "CONSENTRY_MS_CLIENT_SECRET", value_parser = secret, hide_env_values = true, global = true, help_heading = "Microsoft")]
    pub ms_client_secret: Option<SecretString>,

    /// Microsoft identity platform base URL.
    #[arg(
        long,
        env = "CONSENTRY_MS_AUTHORITY_URL",
        default_value = "https://login.microsoftonline.com",
        global = true,
        help_heading = "Microsoft"
    )]
    pub ms_authority_url: Url,

    /// Microsoft Graph base URL.
    #[arg(
        long,
        env = "CONSENTRY_MS_GRAPH_URL",
        default_value = "https://graph.microsoft.com",
        global = true,
        help_heading = "Microsoft"
    )]
    pub ms_graph_url: Url,

    /// Seconds before a call to Microsoft gives up.
    #[arg(
        long,
        env = "CONSENTRY_MS_TIMEOUT_SECONDS",
        default_value_t = 10,
        global = true,
        help_heading = "Microsoft"
    )]
    pub ms_timeout_seconds: u64,

    /// Longest `Retry-After` (seconds) Consentry waits out when Microsoft throttles.
    #[arg(
        long,
        env = "CONSENTRY_MS_MAX_RETRY_WAIT_SECONDS",
        default_value_t = 30,
        global = true,
        help_heading = "Microsoft"
    )]
    pub ms_max_retry_wait_seconds: u64,

    /// Least time between two fetches of Microsoft's signing keys caused by unknown key ids
    /// (seconds): a key rotated in just after a fetch is picked up once this has passed.
    #[arg(
        long,
        env = "CONSENTRY_MS_KEY_REFETCH_SECONDS",
        default_value_t = 30,
        global = true,
        help_heading = "Microsoft"
    )]
    pub ms_key_refetch_seconds: u64,

    /// Application permissions (Graph `roles`) a client tenant must grant for its tile to be
    /// `AUTHORISED`, comma-separated. Match the app registration's `requiredResourceAccess`.
    #[arg(
        long,
        env = "CONSENTRY_MS_REQUIRED_ROLES",
        value_delimiter = ',',
        default_value = "Organization.Read.All,Directory.Read.All,Application.Read.All",
        global = true,
        help_heading = "Microsoft"
    )]
    pub ms_required_roles: Vec<String>,

    /// Applications whose missing service principal `createServicePrincipal` may create, as
    /// comma-separated application (client) ids, besides the Skype and Teams Tenant Admin API
    /// (48ac35b8-9aa8-4d74-927d-1f4a14a0b239), which is always allowed. Any other is refused.
    #[arg(
        long,
        env = "CONSENTRY_MS_REPAIRABLE_APP_IDS",
        value_delimiter = ',',
        global = true,
        help_heading = "Microsoft"
    )]
    pub ms_repairable_app_ids: Vec<String>,

    /// How often every authorised tile is re-verified, e.g. `6h`, `30m`.
    #[arg(
        long,
        env = "CONSENTRY_REVERIFY_INTERVAL",
        default_value = "6h",
        value_parser = humantime::parse_duration,
        global = true, help_heading = "Background work")]
    pub reverify_interval: Duration,

    /// How often background sweeps run: expired consent links, interrupted callbacks, due
    /// re-verifications, old flows, e.g. `30s`.
    #[arg(
        long,
        env = "CONSENTRY_SWEEP_INTERVAL",
        default_value = "30s",
        value_parser = humantime::parse_duration,
        global = true, help_heading = "Background work")]
    pub sweep_interval: Duration,

    /// JWKS URL of the identity provider that signs callers' tokens (RS256/ES256).
    #[arg(
        long,
        env = "CONSENTRY_AUTH_JWKS_URL",
        global = true,
        help_heading = "Caller tokens"
    )]
    pub auth_jwks_url: Option<Url>,

    /// Least time between two JWKS fetches triggered by unknown key ids (seconds).
    #[arg(
        long,
        env = "CONSENTRY_AUTH_JWKS_REFETCH_SECONDS",
        default_value_t = 30,
        global = true,
        help_heading = "Caller tokens"
    )]
    pub auth_jwks_refetch_seconds: u64,

    /// Required `iss` of callers' tokens (default with HS256: `consentry`).
    #[arg(
        long,
        env = "CONSENTRY_AUTH_ISSUER",
        global = true,
        help_heading = "Caller tokens"
    )]
    pub auth_issuer: Option<String>,

    /// Required `aud` of callers' tokens (default with HS256: `consentry`).
    #[arg(
        long,
        env = "CONSENTRY_AUTH_AUDIENCE",
        global = true,
        help_heading = "Caller tokens"
    )]
    pub auth_audience: Option<String>,

    /// Longest lifetime of an accepted caller token, e.g. `24h`: `exp - iat`, or for a token
    /// without `iat`, `exp` - now. Longer-lived tokens are refused, whoever signed them.
    #[arg(
        long,
        env = "CONSENTRY_AUTH_MAX_TOKEN_LIFETIME",
        default_value = "24h",
        value_parser = humantime::parse_duration,
        global = true, help_heading = "Caller tokens")]
    pub auth_max_token_lifetime: Duration,

    /// The platform operator's own MSP tenant: the `support` role counts only in tokens whose
    /// `msp` claim names it. Unset: nobody is support staff.
    #[arg(
        long,
        env = "CONSENTRY_SUPPORT_MSP",
        global = true,
        help_heading = "Caller tokens"
    )]
    pub support_msp: Option<String>,

    /// How often each instance re-reads which MSPs are disabled: an open WebSocket of a
    /// disabled MSP is closed (4403) within this, e.g. `10s`.
    #[arg(
        long,
        env = "CONSENTRY_RIGHTS_RECHECK_INTERVAL",
        default_value = "10s",
        value_parser = humantime::parse_duration,
        global = true, help_heading = "Caller tokens")]
    pub rights_recheck_interval: Duration,

    /// Client id of a public client (no secret) registered at the identity provider of
    /// `CONSENTRY_AUTH_JWKS_URL`: the dashboard then also signs in there (authorization code
    /// with PKCE, redirect URI `CONSENTRY_PUBLIC_URL/dashboard`). Needs a JWKS configuration;
    /// the provider's endpoints are discovered from `CONSENTRY_AUTH_ISSUER` at start.
    #[arg(
        long,
        env = "CONSENTRY_DASHBOARD_OIDC_CLIENT_ID",
        global = true,
        help_heading = "Caller tokens"
    )]
    pub dashboard_oidc_client_id: Option<String>,

    /// Scopes the dashboard asks the identity provider for (space-separated): whatever makes
    /// it issue an access token for `CONSENTRY_AUTH_AUDIENCE` with the `msp` and `roles` claims.
    #[arg(
        long,
        env = "CONSENTRY_DASHBOARD_OIDC_SCOPE",
        default_value = "openid",
        global = true,
        help_heading = "Caller tokens"
    )]
    pub dashboard_oidc_scope: String,

    /// Shared secret for HS256 caller tokens (at least 32 bytes). Unset, and without a JWKS
    /// URL, one is generated and kept beside the embedded database.
    #[arg(long, env = "CONSENTRY_AUTH_HS256_SECRET", value_parser = secret, hide_env_values = true, global = true, help_heading = "Caller tokens")]
    pub auth_hs256_secret: Option<SecretString>,

    /// HashiCorp Vault server whose transit engine holds the key-encryption key (a KMS):
    /// Consentry's data keys are stored wrapped by it and unwrapped at start. Unset: the keys
    /// of `CONSENTRY_TOKEN_KEYS` encrypt directly.
    #[arg(
        long,
        env = "CONSENTRY_KMS_VAULT_ADDR",
        global = true,
        help_heading = "Encryption keys"
    )]
    pub kms_vault_addr: Option<Url>,

    /// Vault token allowed to encrypt, decrypt and rewrap with the transit key.
    #[arg(long, env = "CONSENTRY_KMS_VAULT_TOKEN", value_parser = secret, hide_env_values = true, global = true, help_heading = "Encryption keys")]
    pub kms_vault_token: Option<SecretString>,

    /// Name of the transit key in Vault.
    #[arg(
        long,
        env = "CONSENTRY_KMS_VAULT_KEY",
        default_value = "consentry",
        global = true,
        help_heading = "Encryption keys"
    )]
    pub kms_vault_key: String,

    /// Path where Vault's transit engine is mounted.
    #[arg(
        long,
        env = "CONSENTRY_KMS_VAULT_MOUNT",
        default_value = "transit",
        global = true,
        help_heading = "Encryption keys"
    )]
    pub kms_vault_mount: String,

    /// Keys that encrypt stored refresh tokens and the PKCE verifiers of pending links:
    /// `kid:base64key,…` (32-byte keys, e.g. `k2:$(openssl rand -base64 32)`); the first
    /// encrypts, all decrypt. Unset with SQLite, one is generated beside the database file;
    /// unset with PostgreSQL, links use a key derived from the Microsoft client secret.
    #[arg(long, env = "CONSENTRY_TOKEN_KEYS", value_parser = secret, hide_env_values = true, global = true, help_heading = "Encryption keys")]
    pub token_keys: Option<SecretString>,

    /// How often each delegated consent's refresh token is renewed, well within Microsoft's
    /// 90-day inactivity limit, e.g. `7d`.
    #[arg(
        long,
        env = "CONSENTRY_KEEPALIVE_INTERVAL",
        default_value = "7d",
        value_parser = humantime::parse_duration,
        global = true, help_heading = "Background work")]
    pub keepalive_interval: Duration,

    /// Browser origins allowed to call the API (comma-separated), e.g. `https://app.example.com`.
    #[arg(
        long,
        env = "CONSENTRY_CORS_ORIGINS",
        value_delimiter = ',',
        global = true,
        help_heading = "HTTP"
    )]
    pub cors_origins: Vec<String>,

    /// Mutations each MSP may run per minute on this instance (every root field of a mutation
    /// counts, aliases included); a burst of as many is allowed. `0` turns the limit off.
    #[arg(
        long,
        env = "CONSENTRY_MSP_MUTATIONS_PER_MINUTE",
        default_value_t = 120,
        global = true,
        help_heading = "Limits"
    )]
    pub msp_mutations_per_minute: u32,

    /// Queries each MSP may run per minute on this instance (a mutation sent by a read-only
    /// caller is refused and counts as a query); a burst of as many is allowed. `0` turns the
    /// limit off.
    #[arg(
        long,
        env = "CONSENTRY_MSP_QUERIES_PER_MINUTE",
        default_value_t = 1200,
        global = true,
        help_heading = "Limits"
    )]
    pub msp_queries_per_minute: u32,

    /// WebSocket connections one caller (one `sub` of one MSP) may hold open on this instance;
    /// one more is closed with 1013. `0` turns the cap off.
    #[arg(
        long,
        env = "CONSENTRY_WS_CONNECTIONS_PER_CALLER",
        default_value_t = 16,
        global = true,
        help_heading = "Limits"
    )]
    pub ws_connections_per_caller: u32,

    /// Messages one caller may send per minute over all its WebSocket connections on this
    /// instance (a burst of as many is allowed); past it the connection is closed with 1013.
    /// `0` turns the limit off.
    #[arg(
        long,
        env = "CONSENTRY_WS_MESSAGES_PER_MINUTE",
        default_value_t = 600,
        global = true,
        help_heading = "Limits"
    )]
    pub ws_messages_per_minute: u32,

    /// Longest a query may run before it is cancelled with `TIMEOUT`, e.g. `30s`. Mutations
    /// are never cut short (each call to Microsoft has its own timeout).
    #[arg(
        long,
        env = "CONSENTRY_QUERY_TIMEOUT",
        default_value = "30s",
        value_parser = humantime::parse_duration,
        global = true, help_heading = "Limits")]
    pub query_timeout: Duration,

    /// Largest answer one operation may give (its `data` as JSON), in bytes, e.g. `2MiB`; past
    /// it the operation answers `RESPONSE_TOO_LARGE` instead of a partial answer. Over a
    /// WebSocket an answer is also held to the socket's own 192 KiB.
    #[arg(
        long,
        env = "CONSENTRY_MAX_RESPONSE_BYTES",
        default_value = "2MiB",
        value_parser = parse_bytes,
        global = true, help_heading = "Limits")]
    pub max_response_bytes: usize,

    /// Memory for answers kept for reuse, in bytes, e.g. `32MiB`: an MSP caller's query is
    /// answered from memory while nothing of its MSP has changed since (the MSP's revision,
    /// which the database changes with every write). `0` turns the cache off.
    #[arg(
        long,
        env = "CONSENTRY_ANSWER_CACHE_BYTES",
        default_value = "32MiB",
        value_parser = parse_bytes,
        global = true, help_heading = "Limits")]
    pub answer_cache_bytes: usize,

    /// How long a consent callback may work on its flow before another instance's sweep takes
    /// it for interrupted (the process died) and fails it so the user can start again, e.g. `5m`.
    #[arg(
        long,
        env = "CONSENTRY_CALLBACK_LEASE",
        default_value = "5m",
        value_parser = humantime::parse_duration,
        global = true, help_heading = "Background work")]
    pub callback_lease: Duration,

    /// On SIGTERM, how long in-flight requests may take to finish before the process exits
    /// anyway, e.g. `30s`. WebSocket subscribers are told at once (close code 1001).
    #[arg(
        long,
        env = "CONSENTRY_SHUTDOWN_TIMEOUT",
        default_value = "30s",
        value_parser = humantime::parse_duration,
        global = true, help_heading = "HTTP")]
    pub shutdown_timeout: Duration,

    /// Log format: `text` for people, `json` for log collectors. Levels come from `RUST_LOG`.
    #[arg(
        long,
        env = "CONSENTRY_LOG_FORMAT",
        default_value = "text",
        global = true,
        help_heading = "Logging"
    )]
    pub log_format: LogFormat,
}

/// `HOST:PORT`, or `:PORT` for every interface (as many servers spell it).
fn listen_address(value: &str) -> Result<SocketAddr, String> {
    let value = value.trim();
    let full = match value.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => value.to_owned(),
    };
    full.parse().map_err(|_| {
        format!("{value:?} is not an address to listen on: give IP:PORT (127.0.0.1:8080) or :PORT")
    })
}

fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

/// A size in bytes: `65536`, `64KiB` or `2MiB`.
fn parse_bytes(value: &str) -> Result<usize, String> {
    let value = value.trim();
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => value.split_at(at),
        None => (value, ""),
    };
    let multiplier: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        other => {
            return Err(format!(
                "unknown unit {other:?}: write bytes, KiB or MiB, e.g. 2MiB"
            ));
        }
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{value:?} is not a size such as 2MiB"))
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A setting that cannot work, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting has a value Consentry cannot use.
    #[error("{variable}: {problem}")]
    Invalid {
        variable: &'static str,
        problem: String,
    },
}

fn invalid(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        variable,
        problem: problem.into(),
    }
}

/// Where the database lives, as far as Consentry cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseKind {
    /// An SQLite file; generated secrets are kept beside it.
    SqliteFile(PathBuf),
    /// An in-memory SQLite database (tests, experiments): nothing survives a restart.
    SqliteMemory,
    Postgres,
}

/// How callers' tokens are verified.
#[derive(Clone, Debug)]
pub enum CallerAuthSettings {
    Hs256 {
        secret: Option<SecretString>,
        issuer: String,
        audience: String,
    },
    Jwks {
        url: Url,
        issuer: String,
        audience: String,
        refetch_interval: std::time::Duration,
    },
}

/// The dashboard's sign-in at the caller identity provider (a public client, PKCE).
#[derive(Clone, Debug)]
pub struct DashboardOidcSettings {
    pub client_id: String,
    /// Space-separated scopes.
    pub scope: String,
    /// `{CONSENTRY_AUTH_ISSUER}/.well-known/openid-configuration`.
    pub discovery_url: Url,
    /// `CONSENTRY_AUTH_ISSUER`, exactly: discovery must name the same.
    pub issuer: String,
    /// The dashboard's own address, `{CONSENTRY_PUBLIC_URL}/dashboard`.
    pub redirect_uri: Url,
}

/// Joins `path` onto a base URL, keeping any path prefix the base has.
pub(crate) fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    {
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{trimmed}/{}", path.trim_start_matches('/')));
    }
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// Whether `url` points at this machine (`localhost`, `*.localhost`, a loopback address):
/// the one place plain `http` is allowed for a URL setting.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{derived::database_kind, *};

    #[test]
    fn database_kind_recognises_every_form() {
        assert_eq!(
            database_kind("sqlite://consentry.db?mode=rwc").unwrap(),
            DatabaseKind::SqliteFile("consentry.db".into())
        );
        assert_eq!(
            database_kind("sqlite:///var/lib/consentry/c.db").unwrap(),
            DatabaseKind::SqliteFile("/var/lib/consentry/c.db".into())
        );
        assert_eq!(
            database_kind("sqlite::memory:").unwrap(),
            DatabaseKind::SqliteMemory
        );
        assert_eq!(
            database_kind("postgres://u:p@h/db").unwrap(),
            DatabaseKind::Postgres
        );
        assert!(database_kind("mysql://h/db").is_err());
    }

    #[test]
    fn a_listen_address_may_be_just_a_port() {
        assert_eq!(
            listen_address(":9000").unwrap(),
            "0.0.0.0:9000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            listen_address("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse::<SocketAddr>().unwrap()
        );
        assert!(listen_address("9000").unwrap_err().contains(":PORT"));
        assert!(listen_address(":http").is_err());
    }

    /// Issue 19: an unset public URL follows the port the server listens on, as a browser on
    /// this machine opens it; a set one is kept.
    #[test]
    fn an_unset_public_url_names_the_port_really_bound() {
        let settle = |public: &str, bound: &str| {
            let mut settings = Settings::defaults();
            settings.public_url = Url::parse(public).unwrap();
            settings.settle_public_url(bound.parse().unwrap());
            settings.public_url.to_string()
        };
        assert_eq!(
            settle(DEFAULT_PUBLIC_URL, "0.0.0.0:9000"),
            "http://localhost:9000/"
        );
        assert_eq!(
            settle(DEFAULT_PUBLIC_URL, "127.0.0.1:41234"),
            "http://localhost:41234/"
        );
        assert_eq!(
            settle(DEFAULT_PUBLIC_URL, "[::]:9000"),
            "http://localhost:9000/"
        );
        assert_eq!(
            settle(DEFAULT_PUBLIC_URL, "10.1.2.3:9000"),
            "http://10.1.2.3:9000/"
        );
        assert_eq!(
            settle("https://consentry.example.com", "0.0.0.0:9000"),
            "https://consentry.example.com/"
        );
        // 0.0.0.0 no longer ends as a public URL that validation refuses.
        let mut settings = Settings::defaults();
        settings.settle_public_url("0.0.0.0:8080".parse().unwrap());
        settings.validate().unwrap();
    }

    /// Issue 19: a page opened at `127.0.0.1` of a server whose public URL says `localhost`
    /// is the same server; any other host or port is not.
    #[test]
    fn own_origins_are_the_loopback_spellings_of_a_loopback_public_url() {
        let mut settings = Settings::defaults();
        settings.public_url = Url::parse("http://localhost:8080").unwrap();
        assert_eq!(
            settings.own_origins(),
            [
                "http://localhost:8080",
                "http://127.0.0.1:8080",
                "http://[::1]:8080"
            ]
        );
        settings.public_url = Url::parse("https://consentry.example.com/base/").unwrap();
        assert_eq!(settings.own_origins(), ["https://consentry.example.com"]);
    }

    #[test]
    fn join_keeps_a_path_prefix() {
        let base = Url::parse("https://example.com/consentry/").unwrap();
        assert_eq!(
            join(&base, "oauth/callback").as_str(),
            "https://example.com/consentry/oauth/callback"
        );
        let base = Url::parse("http://localhost:8080").unwrap();
        assert_eq!(
            join(&base, "/oauth/callback").as_str(),
            "http://localhost:8080/oauth/callback"
        );
    }

    #[test]
    fn public_url_must_be_https_off_loopback() {
        let mut settings = Settings::defaults();
        settings.public_url = Url::parse("http://consentry.example.com").unwrap();
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("must use https"), "{err}");
        settings.public_url = Url::parse("https://consentry.example.com").unwrap();
        settings.validate().unwrap();
    }

    #[test]
    fn a_kms_needs_both_its_address_and_its_token_and_https() {
        let mut settings = Settings::defaults();
        settings.kms_vault_addr = Some(Url::parse("https://vault.example.com").unwrap());
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("CONSENTRY_KMS_VAULT_TOKEN"), "{err}");
        settings.kms_vault_token = Some(SecretString::from("hvs.x".to_owned()));
        settings.validate().unwrap();
        settings.kms_vault_addr = Some(Url::parse("http://vault.example.com").unwrap());
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("https"), "{err}");
        settings.kms_vault_addr = None;
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("CONSENTRY_KMS_VAULT_ADDR"), "{err}");
    }

    #[test]
    fn response_sizes_are_read_in_bytes_kib_or_mib() {
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_bytes("2MiB"), Ok(2 * 1024 * 1024));
        assert!(parse_bytes("2MB").unwrap_err().contains("KiB or MiB"));
        assert!(parse_bytes("lots").is_err());
        assert_eq!(Settings::defaults().max_response_bytes, 2 * 1024 * 1024);
        let mut settings = Settings::defaults();
        settings.max_response_bytes = 100;
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("CONSENTRY_MAX_RESPONSE_BYTES"), "{err}");
    }

    #[test]
    fn short_hs256_secret_is_refused() {
        let mut settings = Settings::defaults();
        settings.auth_hs256_secret = Some(SecretString::from("short"));
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("at least 32 bytes"), "{err}");
    }

    #[test]
    fn jwks_needs_issuer_and_audience() {
        let mut settings = Settings::defaults();
        settings.auth_jwks_url = Some(Url::parse("https://idp.example.com/jwks").unwrap());
        assert!(
            settings
                .validate()
                .unwrap_err()
                .to_string()
                .contains("CONSENTRY_AUTH_ISSUER")
        );
        settings.auth_issuer = Some("https://idp.example.com/".into());
        assert!(
            settings
                .validate()
                .unwrap_err()
                .to_string()
                .contains("CONSENTRY_AUTH_AUDIENCE")
        );
        settings.auth_audience = Some("consentry".into());
        settings.validate().unwrap();
    }

    /// Issue 19: the dashboard's public client needs the JWKS provider, a URL issuer to
    /// discover it from (https unless loopback), and scopes in RFC 6749's form.
    #[test]
    fn a_dashboard_client_id_needs_a_jwks_provider_to_sign_in_at() {
        let refusal = |settings: &Settings| settings.validate().unwrap_err().to_string();
        let mut settings = Settings::defaults();
        settings.dashboard_oidc_client_id = Some("dashboard".into());
        let why = refusal(&settings);
        assert!(
            why.starts_with("CONSENTRY_DASHBOARD_OIDC_CLIENT_ID: needs CONSENTRY_AUTH_JWKS_URL"),
            "{why}"
        );

        settings.auth_jwks_url = Some(Url::parse("https://idp.example.com/jwks").unwrap());
        settings.auth_audience = Some("consentry".into());
        settings.auth_issuer = Some("idp".into());
        assert!(refusal(&settings).contains("is not a URL"));
        settings.auth_issuer = Some("http://idp.example.com/tenant".into());
        assert!(refusal(&settings).contains("must use https"));
        settings.auth_issuer = Some("https://idp.example.com/tenant".into());
        settings.dashboard_oidc_scope = "openid  api://consentry/x".into();
        assert!(refusal(&settings).starts_with("CONSENTRY_DASHBOARD_OIDC_SCOPE"));
        settings.dashboard_oidc_scope = "openid api://consentry/x".into();
        settings.public_url = Url::parse("https://consentry.example.com/portal/").unwrap();

        let oidc = settings.dashboard_oidc().unwrap().unwrap();
        assert_eq!(
            oidc.discovery_url.as_str(),
            "https://idp.example.com/tenant/.well-known/openid-configuration"
        );
        assert_eq!(
            oidc.redirect_uri.as_str(),
            "https://consentry.example.com/portal/dashboard"
        );
        settings.auth_issuer = Some("http://localhost:9000".into());
        settings.validate().unwrap();
    }

    #[test]
    fn cors_origins_must_be_bare_origins() {
        let mut settings = Settings::defaults();
        settings.cors_origins = vec!["https://app.example.com".into()];
        settings.validate().unwrap();
        for bad in ["*", "https://app.example.com/path", "app.example.com"] {
            settings.cors_origins = vec![bad.into()];
            assert!(settings.validate().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn repairable_app_ids_must_be_application_ids() {
        let mut settings = Settings::defaults();
        assert_eq!(
            settings.repairable_apps().unwrap(),
            RepairableApps::default()
        );
        settings.ms_repairable_app_ids = vec![
            " 00000003-0000-0000-C000-000000000000".into(),
            String::new(),
            "797f4846-ba00-4fd7-ba43-dac1f8f63013".into(),
        ];
        settings.validate().unwrap();
        let apps = settings.repairable_apps().unwrap();
        assert!(apps.contains("00000003-0000-0000-c000-000000000000"));
        assert!(apps.contains("797f4846-ba00-4fd7-ba43-dac1f8f63013"));
        assert!(apps.contains("48ac35b8-9aa8-4d74-927d-1f4a14a0b239"));
        // The flag (like the variable) takes one comma-separated list.
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        let parsed = <Only as clap::Parser>::try_parse_from([
            "consentry",
            "--ms-repairable-app-ids",
            "00000003-0000-0000-c000-000000000000,797f4846-ba00-4fd7-ba43-dac1f8f63013",
        ])
        .unwrap()
        .settings;
        assert_eq!(parsed.repairable_apps().unwrap(), apps);
        for bad in [
            "teams",
            "0000000300000000c000000000000000",
            "00000000-0000-0000-0000-000000000000",
        ] {
            settings.ms_repairable_app_ids = vec![bad.into()];
            let err = settings.validate().unwrap_err().to_string();
            assert!(
                err.starts_with("CONSENTRY_MS_REPAIRABLE_APP_IDS: ")
                    && err.contains(bad)
                    && err.contains("comma"),
                "{err}"
            );
        }
    }

    #[test]
    fn rights_settings_are_checked_with_advice() {
        let mut settings = Settings::defaults();
        assert_eq!(
            settings.auth_max_token_lifetime,
            Duration::from_secs(24 * 3600)
        );
        assert_eq!(settings.support_msp, None);
        assert_eq!(settings.rights_recheck_interval, Duration::from_secs(10));
        for bad in [Duration::from_secs(59), Duration::from_secs(31 * 86_400)] {
            settings.auth_max_token_lifetime = bad;
            let err = settings.validate().unwrap_err().to_string();
            assert!(
                err.starts_with("CONSENTRY_AUTH_MAX_TOKEN_LIFETIME: "),
                "{err}"
            );
        }
        settings.auth_max_token_lifetime = Duration::from_secs(3600);
        settings.support_msp = Some("operator tenant".into());
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.starts_with("CONSENTRY_SUPPORT_MSP: "), "{err}");
        settings.support_msp = Some("operator".into());
        settings.rights_recheck_interval = Duration::from_secs(301);
        let err = settings.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("CONSENTRY_RIGHTS_RECHECK_INTERVAL: "),
            "{err}"
        );
        settings.rights_recheck_interval = Duration::from_secs(30);
        settings.validate().unwrap();
    }

    #[test]
    fn database_label_hides_the_password() {
        let mut settings = Settings::defaults();
        settings.database_url = SecretString::from("postgres://app:hunter2@db.internal/consentry");
        let label = settings.database_label();
        assert!(!label.contains("hunter2"), "{label}");
        assert!(label.contains("db.internal"), "{label}");
    }
}
