//! What the settings mean once read: the values derived from them (the redirect URI, the
//! allowed origins, the database), and the checks that refuse a configuration that cannot
//! work, each naming the setting to change.

use super::*;

impl Settings {
    /// Settings with every default, as if no flag or variable were given.
    pub fn defaults() -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        // Parsing an empty command line cannot fail: every option has a default or is optional.
        #[allow(clippy::expect_used)]
        Only::try_parse_from(["consentry"])
            .expect("defaults parse")
            .settings
    }

    /// Points the Microsoft settings (app registration, authority, Graph) at a running
    /// simulator: what `consentry demo` and the tests do.
    pub fn use_simulator(&mut self, simulator: &simulator::Simulator) {
        self.ms_client_id = Some(simulator.client_id());
        self.ms_client_secret = Some(SecretString::from(simulator.client_secret()));
        self.ms_authority_url = simulator.base_url().clone();
        self.ms_graph_url = simulator.base_url().clone();
    }

    /// When `CONSENTRY_PUBLIC_URL` was left unset, this server's own address once bound, so
    /// that printed links and the OAuth redirect URI name the port it really listens on:
    /// `http://localhost:PORT` for a loopback or every-interface listener (what a browser on
    /// this machine opens), else `http://IP:PORT` (which [`Settings::validate`] then asks to
    /// replace with the https address browsers reach).
    pub fn settle_public_url(&mut self, bound: std::net::SocketAddr) {
        if self.public_url.as_str().trim_end_matches('/') != DEFAULT_PUBLIC_URL {
            return;
        }
        let ip = bound.ip();
        let host = if ip.is_loopback() || ip.is_unspecified() {
            "localhost".to_owned()
        } else if ip.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        if let Ok(url) = Url::parse(&format!("http://{host}:{}", bound.port())) {
            self.public_url = url;
        }
    }

    /// The browser origins that are this server itself: the public URL's, and when it is a
    /// loopback address, the other spellings of that address on the same port (`localhost`,
    /// `127.0.0.1`, `[::1]`), which a person may type as well.
    pub fn own_origins(&self) -> Vec<String> {
        let own = self.public_url.origin().ascii_serialization();
        if !is_loopback(&self.public_url) {
            return vec![own];
        }
        let (scheme, port) = (
            self.public_url.scheme(),
            self.public_url.port_or_known_default().unwrap_or(80),
        );
        let mut origins = vec![own];
        for host in ["localhost", "127.0.0.1", "[::1]"] {
            let alias = match Url::parse(&format!("{scheme}://{host}:{port}")) {
                Ok(url) => url.origin().ascii_serialization(),
                Err(_) => continue,
            };
            if !origins.contains(&alias) {
                origins.push(alias);
            }
        }
        origins
    }

    /// Checks what can be checked without touching the network or the database.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.database_kind()?;
        check_base_url("CONSENTRY_PUBLIC_URL", &self.public_url)?;
        if let Some(url) = &self.frontend_url {
            check_base_url("CONSENTRY_FRONTEND_URL", url)?;
        }
        check_base_url("CONSENTRY_MS_AUTHORITY_URL", &self.ms_authority_url)?;
        check_base_url("CONSENTRY_MS_GRAPH_URL", &self.ms_graph_url)?;
        // The redirect URI carries authorization codes: HTTPS unless it stays on this machine.
        if self.public_url.scheme() != "https" && !is_loopback(&self.public_url) {
            return Err(invalid(
                "CONSENTRY_PUBLIC_URL",
                format!(
                    "{} must use https (plain http is only allowed for localhost): set it to \
                     the https address browsers reach Consentry at",
                    self.public_url
                ),
            ));
        }
        match (&self.kms_vault_addr, &self.kms_vault_token) {
            (Some(_), None) => {
                return Err(invalid(
                    "CONSENTRY_KMS_VAULT_TOKEN",
                    "is needed with CONSENTRY_KMS_VAULT_ADDR: a Vault token allowed to encrypt, \
                     decrypt and rewrap with the transit key",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "CONSENTRY_KMS_VAULT_ADDR",
                    "is needed with CONSENTRY_KMS_VAULT_TOKEN: the Vault server's address",
                ));
            }
            (Some(address), Some(_)) => {
                check_base_url("CONSENTRY_KMS_VAULT_ADDR", address)?;
                // The token travels with every call.
                if address.scheme() != "https" && !is_loopback(address) {
                    return Err(invalid(
                        "CONSENTRY_KMS_VAULT_ADDR",
                        format!(
                            "{address} must use https (plain http is only allowed for localhost)"
                        ),
                    ));
                }
            }
            (None, None) => {}
        }
        if self.ms_client_secret.is_some() && self.ms_client_id.is_none() {
            return Err(invalid(
                "CONSENTRY_MS_CLIENT_ID",
                "a client secret is set but no client id: set CONSENTRY_MS_CLIENT_ID to the app registration's Application (client) ID",
            ));
        }
        if self.ms_timeout_seconds == 0 {
            return Err(invalid(
                "CONSENTRY_MS_TIMEOUT_SECONDS",
                "must be at least 1",
            ));
        }
        let roles = self.required_roles();
        if roles.is_empty() {
            return Err(invalid(
                "CONSENTRY_MS_REQUIRED_ROLES",
                "name at least one application permission, e.g. Organization.Read.All",
            ));
        }
        if let Some(bad) = roles.iter().find(|r| {
            !r.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
        }) {
            return Err(invalid(
                "CONSENTRY_MS_REQUIRED_ROLES",
                format!("{bad:?} is not a permission name such as Organization.Read.All"),
            ));
        }
        self.repairable_apps()?;
        if let Some(keys) = &self.token_keys {
            crate::domain::crypto::TokenKeys::parse(keys)
                .map_err(|e| invalid("CONSENTRY_TOKEN_KEYS", e.to_string()))?;
        }
        if self.keepalive_interval < Duration::from_secs(1)
            || self.keepalive_interval > Duration::from_secs(60 * 24 * 3600)
        {
            return Err(invalid(
                "CONSENTRY_KEEPALIVE_INTERVAL",
                "must be between 1s and 60d (Microsoft expires refresh tokens unused for 90 days)",
            ));
        }
        if self.reverify_interval < Duration::from_secs(1) {
            return Err(invalid(
                "CONSENTRY_REVERIFY_INTERVAL",
                "must be at least 1s",
            ));
        }
        if self.sweep_interval < Duration::from_millis(10) {
            return Err(invalid("CONSENTRY_SWEEP_INTERVAL", "must be at least 10ms"));
        }
        if self.db_max_connections == 0 {
            return Err(invalid(
                "CONSENTRY_DB_MAX_CONNECTIONS",
                "must be at least 1",
            ));
        }
        if self.query_timeout.is_zero() {
            return Err(invalid("CONSENTRY_QUERY_TIMEOUT", "must be more than 0s"));
        }
        // Smaller, and a refusal's own message would hardly fit.
        if self.max_response_bytes < 1024 {
            return Err(invalid(
                "CONSENTRY_MAX_RESPONSE_BYTES",
                "must be at least 1KiB",
            ));
        }
        // A lease shorter than one call to Microsoft would fail callbacks that are merely slow.
        if self.callback_lease <= Duration::from_secs(self.ms_timeout_seconds) {
            return Err(invalid(
                "CONSENTRY_CALLBACK_LEASE",
                format!(
                    "must be longer than CONSENTRY_MS_TIMEOUT_SECONDS ({}s): a callback that is still \
                     waiting for Microsoft would be taken for interrupted",
                    self.ms_timeout_seconds
                ),
            ));
        }
        if self.auth_max_token_lifetime < Duration::from_secs(60)
            || self.auth_max_token_lifetime > Duration::from_secs(30 * 24 * 3600)
        {
            return Err(invalid(
                "CONSENTRY_AUTH_MAX_TOKEN_LIFETIME",
                "must be between 1m and 30d: a stolen token is good for this long, and an open \
                 WebSocket stays open for as long as its token lives",
            ));
        }
        if let Some(msp) = &self.support_msp {
            crate::domain::msp::validate_id(msp).map_err(|_| {
                invalid(
                    "CONSENTRY_SUPPORT_MSP",
                    format!(
                        "{msp:?} is not an MSP id: name the operator's own MSP tenant as its \
                         tokens carry it in their `msp` claim (1–64 letters, digits, '.', '_' or '-')"
                    ),
                )
            })?;
        }
        if self.rights_recheck_interval < Duration::from_millis(10)
            || self.rights_recheck_interval > Duration::from_secs(300)
        {
            return Err(invalid(
                "CONSENTRY_RIGHTS_RECHECK_INTERVAL",
                "must be between 10ms and 5m: it bounds how long a disabled MSP's open WebSocket \
                 connections stay open",
            ));
        }
        for origin in &self.cors_origins {
            parse_origin(origin)?;
        }
        self.caller_auth()?;
        self.dashboard_oidc()?;
        Ok(())
    }

    /// What kind of database `DATABASE_URL` names.
    pub fn database_kind(&self) -> Result<DatabaseKind, ConfigError> {
        database_kind(self.database_url.expose_secret())
    }

    /// The database URL without its password, for log lines and error messages.
    pub fn database_label(&self) -> String {
        let raw = self.database_url.expose_secret();
        match Url::parse(raw) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            Ok(url) => url.to_string(),
            Err(_) => "(unparseable DATABASE_URL)".to_owned(),
        }
    }

    /// The required application permissions, trimmed, without blanks or repeats.
    pub fn required_roles(&self) -> Vec<String> {
        let mut roles: Vec<String> = Vec::new();
        for role in self.ms_required_roles.iter().map(|r| r.trim()) {
            if !role.is_empty() && !roles.iter().any(|r| r.eq_ignore_ascii_case(role)) {
                roles.push(role.to_owned());
            }
        }
        roles
    }

    /// The applications service principal repairs may create: the Teams admin API and
    /// `CONSENTRY_MS_REPAIRABLE_APP_IDS`.
    pub fn repairable_apps(&self) -> Result<RepairableApps, ConfigError> {
        RepairableApps::parse(&self.ms_repairable_app_ids).map_err(|bad| {
            invalid(
                REPAIRABLE_APP_IDS_SETTING,
                format!(
                    "{bad:?} is not an application id: list application (client) ids, separated \
                     by commas, in their GUID form such as 00000003-0000-0000-c000-000000000000 \
                     (the id AADSTS650052 names, or Application ID under Enterprise applications \
                     in Entra ID); unset it to repair only the Teams admin API"
                ),
            )
        })
    }

    /// The one redirect URI of every flow.
    pub fn redirect_uri(&self) -> Url {
        join(&self.public_url, "oauth/callback")
    }

    /// How callers' tokens are to be verified.
    pub fn caller_auth(&self) -> Result<CallerAuthSettings, ConfigError> {
        match (&self.auth_jwks_url, &self.auth_hs256_secret) {
            (Some(_), Some(_)) => Err(invalid(
                "CONSENTRY_AUTH_JWKS_URL",
                "set either CONSENTRY_AUTH_JWKS_URL (production) or CONSENTRY_AUTH_HS256_SECRET, not both",
            )),
            (Some(url), None) => {
                check_base_url("CONSENTRY_AUTH_JWKS_URL", url)?;
                let issuer = self.auth_issuer.clone().ok_or_else(|| {
                    invalid(
                        "CONSENTRY_AUTH_ISSUER",
                        "required with CONSENTRY_AUTH_JWKS_URL: the exact `iss` your identity provider puts in callers' tokens",
                    )
                })?;
                let audience = self.auth_audience.clone().ok_or_else(|| {
                    invalid(
                        "CONSENTRY_AUTH_AUDIENCE",
                        "required with CONSENTRY_AUTH_JWKS_URL: the `aud` your identity provider issues for Consentry",
                    )
                })?;
                Ok(CallerAuthSettings::Jwks {
                    url: url.clone(),
                    issuer,
                    audience,
                    refetch_interval: std::time::Duration::from_secs(
                        self.auth_jwks_refetch_seconds,
                    ),
                })
            }
            (None, secret) => {
                if let Some(secret) = secret
                    && secret.expose_secret().len() < 32
                {
                    return Err(invalid(
                        "CONSENTRY_AUTH_HS256_SECRET",
                        "must be at least 32 bytes; generate one with `openssl rand -base64 48`",
                    ));
                }
                Ok(CallerAuthSettings::Hs256 {
                    secret: secret.clone(),
                    issuer: self
                        .auth_issuer
                        .clone()
                        .unwrap_or_else(|| DEFAULT_HS256_ISSUER.to_owned()),
                    audience: self
                        .auth_audience
                        .clone()
                        .unwrap_or_else(|| DEFAULT_HS256_AUDIENCE.to_owned()),
                })
            }
        }
    }

    /// The dashboard's sign-in at the caller identity provider, when
    /// `CONSENTRY_DASHBOARD_OIDC_CLIENT_ID` is set: only beside a JWKS configuration, whose
    /// issuer is where the provider's endpoints are discovered.
    pub fn dashboard_oidc(&self) -> Result<Option<DashboardOidcSettings>, ConfigError> {
        const VARIABLE: &str = "CONSENTRY_DASHBOARD_OIDC_CLIENT_ID";
        let Some(client_id) = &self.dashboard_oidc_client_id else {
            return Ok(None);
        };
        let client_id = client_id.trim();
        if client_id.is_empty() || !client_id.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid(
                VARIABLE,
                format!(
                    "{client_id:?} is not a client id: give the public client's id as the identity provider shows it"
                ),
            ));
        }
        let CallerAuthSettings::Jwks { issuer, .. } = self.caller_auth()? else {
            return Err(invalid(
                VARIABLE,
                "needs CONSENTRY_AUTH_JWKS_URL, CONSENTRY_AUTH_ISSUER and CONSENTRY_AUTH_AUDIENCE: \
                 the dashboard signs in at the identity provider that signs callers' tokens; \
                 with HS256 tokens there is none, so unset it",
            ));
        };
        let issuer_url = Url::parse(&issuer).map_err(|_| {
            invalid(
                "CONSENTRY_AUTH_ISSUER",
                format!(
                    "{issuer:?} is not a URL, so the identity provider's endpoints cannot be \
                     discovered for {VARIABLE}: give the issuer URL the provider publishes"
                ),
            )
        })?;
        check_base_url("CONSENTRY_AUTH_ISSUER", &issuer_url)?;
        if issuer_url.scheme() != "https" && !is_loopback(&issuer_url) {
            return Err(invalid(
                "CONSENTRY_AUTH_ISSUER",
                format!(
                    "{issuer} must use https for {VARIABLE} (plain http is only allowed for localhost)"
                ),
            ));
        }
        let scope = self.dashboard_oidc_scope.trim();
        // RFC 6749 §3.3: scope tokens of printable characters but `"` and `\`.
        if scope.is_empty()
            || !scope.split(' ').all(|t| {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
            })
        {
            return Err(invalid(
                "CONSENTRY_DASHBOARD_OIDC_SCOPE",
                format!(
                    "{scope:?} is not a list of scopes separated by single spaces, e.g. `openid api://consentry/.default`"
                ),
            ));
        }
        Ok(Some(DashboardOidcSettings {
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            discovery_url: join(&issuer_url, ".well-known/openid-configuration"),
            issuer,
            redirect_uri: join(&self.public_url, "dashboard"),
        }))
    }

    /// Browser origins allowed by CORS, parsed.
    pub fn allowed_origins(&self) -> Result<Vec<axum::http::HeaderValue>, ConfigError> {
        self.cors_origins.iter().map(|o| parse_origin(o)).collect()
    }
}

pub(super) fn check_base_url(variable: &'static str, url: &Url) -> Result<(), ConfigError> {
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            variable,
            format!("{url} is not an http(s) URL with a host"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            variable,
            format!("{url} must not have a query or fragment"),
        ));
    }
    Ok(())
}

pub(super) fn parse_origin(origin: &str) -> Result<axum::http::HeaderValue, ConfigError> {
    let origin = origin.trim();
    let url = Url::parse(origin).map_err(|e| {
        invalid(
            "CONSENTRY_CORS_ORIGINS",
            format!("{origin:?} is not an origin like https://app.example.com ({e})"),
        )
    })?;
    let serialized = url.origin().ascii_serialization();
    if origin == "*" || serialized == "null" || serialized != origin.trim_end_matches('/') {
        return Err(invalid(
            "CONSENTRY_CORS_ORIGINS",
            format!(
                "{origin:?} is not an origin: give scheme://host[:port] only, no path and no wildcard"
            ),
        ));
    }
    axum::http::HeaderValue::from_str(&serialized)
        .map_err(|e| invalid("CONSENTRY_CORS_ORIGINS", format!("{origin:?}: {e}")))
}

pub(super) fn database_kind(url: &str) -> Result<DatabaseKind, ConfigError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(DatabaseKind::Postgres);
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(invalid(
            "DATABASE_URL",
            "must start with sqlite: (embedded) or postgres:// (production)",
        ));
    };
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return Ok(DatabaseKind::SqliteMemory);
    }
    Ok(DatabaseKind::SqliteFile(PathBuf::from(path)))
}
