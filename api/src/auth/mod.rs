//! Who is calling: caller-JWT validation (HS256 shared secret, or RS256/ES256 from a JWKS),
//! the resulting [`Viewer`], and its roles (docs/design.md §2, "Callers' tokens").

mod claims;
mod dashboard_sign_in;
mod disabled;
mod secret;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use entity::msp_tenant;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use sea_orm::{
    DatabaseConnection, DbErr, EntityTrait, FromQueryResult, QueryResult, QuerySelect,
    sea_query::Expr,
};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

pub use claims::{CallerClaims, OneOrMany, mint_hs256};
pub(crate) use dashboard_sign_in::DashboardSignIn;
pub(crate) use disabled::DisabledMsps;
pub(crate) use secret::{existing_token_keys, resolve_hs256_secret, resolve_token_keys};

use crate::{
    config::{CallerAuthSettings, Settings},
    jwks::{JwksCache, KeyError},
};

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 60;

/// A caller's role. `viewer` and `support` are read-only; `support` reads every MSP, and
/// counts only in tokens of the operator's own tenant ([`TokenPolicy::support_msp`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Admin,
    Technician,
    Viewer,
    Support,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Technician, Role::Viewer, Role::Support];

    /// The role's name in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Viewer => "viewer",
            Role::Support => "support",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// An authenticated caller: who they are, which MSP they belong to, what they may do.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub subject: String,
    pub msp: msp_tenant::Model,
    /// Sorted, without duplicates, never empty.
    pub roles: Vec<Role>,
    pub expires_at: DateTime<Utc>,
}

impl Viewer {
    pub fn msp_id(&self) -> &str {
        &self.msp.id
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Admins and technicians change things; viewers and support staff only look.
    pub fn can_write(&self) -> bool {
        self.has_role(Role::Admin) || self.has_role(Role::Technician)
    }

    /// Support staff read every MSP's data (each such read is audited).
    pub fn reads_all_msps(&self) -> bool {
        self.has_role(Role::Support)
    }

    /// The roles as they appear in tokens and audit events.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.as_str().to_owned()).collect()
    }
}

/// Why a caller was turned away.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable token: HTTP 401, `UNAUTHENTICATED`.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token whose roles allow nothing here: HTTP 403, `FORBIDDEN`.
    #[error("{0}")]
    Forbidden(String),
    /// The token cannot be checked right now (signing keys or database unreachable): HTTP 503.
    #[error("{0}")]
    Unavailable(String),
}

fn unauthenticated(message: impl Into<String>) -> AuthError {
    AuthError::Unauthenticated(message.into())
}

enum Verifier {
    Hs256(DecodingKey),
    Jwks(JwksCache),
}

/// Where HS256 tokens come from, for messages that say what to do.
const HS256_ORIGIN: &str = "HS256 tokens must be printed by `consentry token` against the server's \
     DATABASE_URL, or signed with its CONSENTRY_AUTH_HS256_SECRET";

/// What Consentry asks of a verified token beyond its signature and standard claims
/// (docs/design.md §2, amended 2026-12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Longest accepted lifetime: `exp - iat`, and `exp` - now.
    pub max_lifetime: Duration,
    /// The operator's own MSP tenant, the only one whose tokens' `support` role counts.
    pub support_msp: Option<String>,
}

impl Default for TokenPolicy {
    /// The settings' defaults: tokens live at most 24 hours, and nobody is support staff.
    fn default() -> Self {
        Self {
            max_lifetime: Duration::from_secs(24 * 3600),
            support_msp: None,
        }
    }
}

impl TokenPolicy {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            max_lifetime: settings.auth_max_token_lifetime,
            support_msp: settings.support_msp.clone(),
        }
    }

    /// Refuses a token that lives longer than `max_lifetime`: judged by `exp - iat`, and by
    /// what is left of it now (which also catches an `iat` set in the future, or none).
    fn check_lifetime(&self, claims: &CallerClaims, now: i64) -> Result<(), AuthError> {
        let max = i64::try_from(self.max_lifetime.as_secs()).unwrap_or(i64::MAX);
        let declared = claims.iat.map(|iat| claims.exp.saturating_sub(iat));
        let left = claims.exp.saturating_sub(now);
        let too_long = declared.is_some_and(|lifetime| lifetime > max)
            || left > max.saturating_add(LEEWAY_SECONDS as i64);
        if !too_long {
            return Ok(());
        }
        let lifetime = declared.filter(|d| *d > max).unwrap_or(left);
        Err(unauthenticated(format!(
            "the bearer token lives {}, longer than the {} allowed \
             (CONSENTRY_AUTH_MAX_TOKEN_LIFETIME); get a shorter one",
            duration_text(Duration::from_secs(lifetime.unsigned_abs())),
            duration_text(self.max_lifetime),
        )))
    }

    /// The token's roles as they count here: `support` only in the operator's own tenant.
    fn honoured_roles(&self, msp_id: &str, mut roles: Vec<Role>) -> Result<Vec<Role>, AuthError> {
        if self.support_msp.as_deref() == Some(msp_id) || !roles.contains(&Role::Support) {
            return Ok(roles);
        }
        roles.retain(|role| *role != Role::Support);
        if roles.is_empty() {
            return Err(AuthError::Forbidden(format!(
                "the support role counts only in tokens of the operator's own MSP tenant \
                 (CONSENTRY_SUPPORT_MSP), not of {msp_id:?}, and the token grants no other role"
            )));
        }
        Ok(roles)
    }
}

/// Verifies callers' tokens and turns them into [`Viewer`]s.
pub struct CallerAuth {
    verifier: Verifier,
    issuer: String,
    audience: String,
    policy: TokenPolicy,
}

impl std::fmt::Debug for CallerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerAuth")
            .field(
                "verifier",
                &match self.verifier {
                    Verifier::Hs256(_) => "HS256",
                    Verifier::Jwks(_) => "JWKS",
                },
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("policy", &self.policy)
            .finish()
    }
}

impl CallerAuth {
    /// Builds the verifier the settings ask for; with neither a secret nor a JWKS URL, uses
    /// (or creates) the secret kept beside the embedded database.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Arc<Self>> {
        let auth = match settings.caller_auth()? {
            CallerAuthSettings::Hs256 {
                issuer, audience, ..
            } => {
                let secret = resolve_hs256_secret(settings)?;
                Self::hs256(&secret, issuer, audience)
            }
            CallerAuthSettings::Jwks {
                url,
                issuer,
                audience,
                refetch_interval,
            } => Self::jwks(url, issuer, audience, refetch_interval)?,
        };
        Ok(Arc::new(
            auth.with_policy(TokenPolicy::from_settings(settings)),
        ))
    }

    /// The same verifier, asking this of tokens (default: [`TokenPolicy::default`]).
    pub fn with_policy(mut self, policy: TokenPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn hs256(secret: &SecretString, issuer: String, audience: String) -> Self {
        Self {
            verifier: Verifier::Hs256(DecodingKey::from_secret(secret.expose_secret().as_bytes())),
            issuer,
            audience,
            policy: TokenPolicy::default(),
        }
    }

    pub fn jwks(
        url: Url,
        issuer: String,
        audience: String,
        refetch_interval: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            verifier: Verifier::Jwks(JwksCache::new(url, refetch_interval)?),
            issuer,
            audience,
            policy: TokenPolicy::default(),
        })
    }

    /// Fetches signing keys ahead of the first request (JWKS only). Failure is not fatal:
    /// requests are refused with 503 until the keys can be fetched.
    pub async fn warm_up(&self) {
        if let Verifier::Jwks(cache) = &self.verifier
            && let Err(error) = cache.refresh().await
        {
            tracing::warn!(%error, "cannot fetch callers' signing keys yet; will retry on demand");
        }
    }

    fn allowed_algorithms(&self) -> &'static [Algorithm] {
        match self.verifier {
            Verifier::Hs256(_) => &[Algorithm::HS256],
            Verifier::Jwks(_) => &[Algorithm::RS256, Algorithm::ES256],
        }
    }

    /// Checks signature, algorithm, `exp`, `nbf`, `iss`, `aud` and `sub`; returns the claims.
    pub async fn verify(&self, token: &str) -> Result<CallerClaims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            unauthenticated(format!(
                "the bearer token is not a JWT signed with an accepted algorithm ({})",
                alg_names(self.allowed_algorithms())
            ))
        })?;
        if !self.allowed_algorithms().contains(&header.alg) {
            return Err(unauthenticated(format!(
                "tokens signed with {:?} are not accepted; use {}",
                header.alg,
                alg_names(self.allowed_algorithms())
            )));
        }
        let key = match &self.verifier {
            Verifier::Hs256(key) => key.clone(),
            Verifier::Jwks(cache) => cache
                .key_for(header.kid.as_deref(), header.alg)
                .await
                .map_err(|e| match e {
                    KeyError::Unavailable => AuthError::Unavailable(
                        "callers' signing keys cannot be fetched right now; retry shortly"
                            .to_owned(),
                    ),
                    other => AuthError::Unauthenticated(format!("the bearer token {other}")),
                })?,
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        let data = jsonwebtoken::decode::<CallerClaims>(token, &key, &validation)
            .map_err(|e| self.explain(e.kind()))?;
        // `jsonwebtoken` only requires `sub` to be present: `""` or `" "` names nobody.
        if data.claims.sub.trim().is_empty() {
            return Err(unauthenticated("the bearer token's sub claim is empty"));
        }
        Ok(data.claims)
    }

    fn explain(&self, kind: &ErrorKind) -> AuthError {
        let hs256 = matches!(self.verifier, Verifier::Hs256(_));
        unauthenticated(match kind {
            ErrorKind::ExpiredSignature if hs256 => {
                "the bearer token has expired; print a new one with `consentry token`".to_owned()
            }
            ErrorKind::ExpiredSignature => "the bearer token has expired; get a new one".to_owned(),
            ErrorKind::InvalidSignature if hs256 => {
                format!("the bearer token's signature does not verify: {HS256_ORIGIN}")
            }
            ErrorKind::ImmatureSignature => "the bearer token is not valid yet (nbf is in the future)".to_owned(),
            ErrorKind::InvalidIssuer => format!("the bearer token's issuer is not accepted (expected iss {:?})", self.issuer),
            ErrorKind::InvalidAudience => format!("the bearer token's audience is not accepted (expected aud {:?})", self.audience),
            ErrorKind::InvalidSignature => "the bearer token's signature does not verify".to_owned(),
            ErrorKind::MissingRequiredClaim(claim) => format!("the bearer token lacks the required {claim:?} claim"),
            ErrorKind::InvalidClaimFormat(claim) => format!("the bearer token's {claim:?} claim has the wrong type"),
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
                format!("the bearer token's algorithm is not accepted; use {}", alg_names(self.allowed_algorithms()))
            }
            ErrorKind::Json(_) => "the bearer token's claims are malformed (sub, msp, roles, iss, aud and exp are expected)".to_owned(),
            _ => "the bearer token is malformed".to_owned(),
        })
    }

    /// Turns an `Authorization` header value into a [`Viewer`]: a verified token that lives
    /// no longer than the policy allows, a registered and enabled MSP, and at least one known
    /// role that counts for it (`support` only in the operator's tenant).
    pub async fn authenticate(
        &self,
        db: &DatabaseConnection,
        authorization: &str,
    ) -> Result<Viewer, AuthError> {
        self.authenticate_at_revision(db, authorization)
            .await
            .map(|(viewer, _)| viewer)
    }

    /// [`Self::authenticate`], with the revision of the caller's MSP as read then: every
    /// change to the MSP's rows committed before this read is in what the request reads
    /// after it (the answer cache reuses answers only at the revision they were made at).
    pub async fn authenticate_at_revision(
        &self,
        db: &DatabaseConnection,
        authorization: &str,
    ) -> Result<(Viewer, i64), AuthError> {
        let token = bearer_token(authorization)?;
        let claims = self.verify(token).await?;
        self.policy
            .check_lifetime(&claims, Utc::now().timestamp())?;
        let msp_id = claims
            .msp
            .as_deref()
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| {
                unauthenticated("the bearer token has no msp claim naming the caller's MSP tenant")
            })?;
        let mut roles = Vec::new();
        for name in claims.roles.iter() {
            let role = Role::parse(name).ok_or_else(|| {
                AuthError::Forbidden(format!(
                    "unknown role {name:?} in the bearer token; roles are admin, technician, viewer and support"
                ))
            })?;
            roles.push(role);
        }
        roles.sort();
        roles.dedup();
        let roles = self.policy.honoured_roles(msp_id, roles)?;
        if roles.is_empty() {
            return Err(AuthError::Forbidden(
                "the bearer token grants no role; give it one of admin, technician, viewer or support".to_owned(),
            ));
        }
        let msp = tokio::time::timeout(
            Duration::from_secs(5),
            msp_tenant::Entity::find_by_id(msp_id.to_owned())
                .column_as(Expr::col(REVISION), REVISION)
                .into_model::<MspAtRevision>()
                .one(db),
        )
        .await
        .map_err(|_| AuthError::Unavailable("the database is unavailable; retry shortly".to_owned()))?
        .map_err(|error| {
            tracing::warn!(%error, "cannot look up the caller's MSP tenant");
            AuthError::Unavailable("the database is unavailable; retry shortly".to_owned())
        })?
        .filter(|m| m.msp.disabled_at.is_none())
        .ok_or_else(|| {
            unauthenticated(format!(
                "MSP tenant {msp_id:?} is not registered or is disabled; register it with `consentry msp add {msp_id}`"
            ))
        })?;
        let expires_at = DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(Utc::now);
        let MspAtRevision { msp, revision } = msp;
        Ok((
            Viewer {
                subject: claims.sub,
                msp,
                roles,
                expires_at,
            },
            revision,
        ))
    }
}

/// `msp_tenant.revision`: changed by the database with every change to the MSP's rows
/// (migration `m20261204_000013_msp_revision`); read, never written, by Consentry.
const REVISION: &str = "revision";

/// An MSP tenant and its revision, read in one statement.
struct MspAtRevision {
    msp: msp_tenant::Model,
    revision: i64,
}

impl FromQueryResult for MspAtRevision {
    fn from_query_result(row: &QueryResult, prefix: &str) -> Result<Self, DbErr> {
        Ok(Self {
            msp: msp_tenant::Model::from_query_result(row, prefix)?,
            revision: row.try_get(prefix, REVISION)?,
        })
    }
}

/// The token from `Bearer <token>`; the scheme is case-insensitive (RFC 7235).
pub fn bearer_token(authorization: &str) -> Result<&str, AuthError> {
    let trimmed = authorization.trim();
    if !trimmed.contains(' ') && trimmed.split('.').count() == 3 {
        return Err(unauthenticated(
            "the Authorization header holds a bare token: write `Bearer ` before it",
        ));
    }
    let (scheme, token) = authorization
        .trim()
        .split_once(' ')
        .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(unauthenticated(
            "the Authorization header must be `Bearer <token>`",
        ));
    }
    Ok(token)
}

/// A duration as a setting would be written: `30d`, `24h`, `90m`, `45s`.
pub(crate) fn duration_text(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s >= 2 * 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn alg_names(algs: &[Algorithm]) -> String {
    algs.iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        assert_eq!(bearer_token("Bearer abc").unwrap(), "abc");
        assert_eq!(bearer_token("bearer  abc ").unwrap(), "abc");
        assert!(bearer_token("Basic abc").is_err());
        assert!(bearer_token("abc").is_err());
        assert!(bearer_token("Bearer ").is_err());
    }

    #[test]
    fn roles_parse_by_their_token_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::parse("owner"), None);
    }

    fn claims_living(iat: Option<i64>, exp: i64) -> CallerClaims {
        CallerClaims {
            sub: "someone".to_owned(),
            msp: Some("msp-a".to_owned()),
            roles: OneOrMany::One("admin".to_owned()),
            iss: FUZZ_ISSUER.to_owned(),
            aud: OneOrMany::One(FUZZ_AUDIENCE.to_owned()),
            exp,
            iat,
            nbf: None,
        }
    }

    /// Checklist 72, 99: a token lives at most the policy's lifetime, by `exp - iat`, or by
    /// what is left of it when it has no `iat` (or one in the future).
    #[test]
    fn checklist_99_tokens_living_longer_than_the_maximum_are_refused_with_the_reason() {
        let policy = TokenPolicy::default();
        let now = 1_800_000_000;
        let day = 24 * 3600;
        for (iat, exp) in [
            (Some(now), now + day),
            (Some(now - 3600), now + day - 3600),
            (None, now + day),
            // A minute of clock skew on a token without `iat`.
            (None, now + day + 60),
        ] {
            policy
                .check_lifetime(&claims_living(iat, exp), now)
                .unwrap_or_else(|e| panic!("{iat:?}..{exp}: {e}"));
        }
        for (iat, exp) in [
            (Some(now), now + day + 1),
            (Some(now - 30 * day), now + 3600),
            (None, now + day + 61),
            // An `iat` set ahead makes a long-lived token look short.
            (Some(now + 29 * day), now + 30 * day),
        ] {
            let error = policy
                .check_lifetime(&claims_living(iat, exp), now)
                .unwrap_err();
            assert!(matches!(error, AuthError::Unauthenticated(_)), "{error:?}");
            let message = error.to_string();
            assert!(
                message.contains("CONSENTRY_AUTH_MAX_TOKEN_LIFETIME") && message.contains("24h"),
                "{message}"
            );
        }
        let error = policy
            .check_lifetime(&claims_living(Some(now), now + 30 * day), now)
            .unwrap_err();
        assert!(
            error.to_string().starts_with("the bearer token lives 30d,"),
            "{error}"
        );
    }

    /// Checklist 100: `support` counts only in the operator's tenant; without it a token
    /// keeps its other roles, or is refused when it has none.
    #[test]
    fn checklist_100_support_counts_only_in_the_operators_tenant() {
        let nobody = TokenPolicy::default();
        let operator = TokenPolicy {
            support_msp: Some("operator".to_owned()),
            ..TokenPolicy::default()
        };
        let support = vec![Role::Support];
        let both = vec![Role::Viewer, Role::Support];
        assert_eq!(
            operator
                .honoured_roles("operator", support.clone())
                .unwrap(),
            support
        );
        assert_eq!(
            operator.honoured_roles("msp-a", both.clone()).unwrap(),
            [Role::Viewer]
        );
        assert_eq!(
            nobody.honoured_roles("operator", both).unwrap(),
            [Role::Viewer]
        );
        for policy in [&nobody, &operator] {
            let error = policy.honoured_roles("msp-a", support.clone()).unwrap_err();
            assert!(matches!(error, AuthError::Forbidden(_)), "{error:?}");
            assert!(
                error.to_string().contains("CONSENTRY_SUPPORT_MSP"),
                "{error}"
            );
        }
    }

    /// The secret, issuer and audience of the `caller_token` and `caller_claims` fuzz targets.
    const FUZZ_SECRET: &str = "consentry-fuzz-hs256-secret-0123456789abcdef";
    const FUZZ_ISSUER: &str = "consentry";
    const FUZZ_AUDIENCE: &str = "consentry-api";

    fn fuzz_auth() -> CallerAuth {
        CallerAuth::hs256(
            &SecretString::from(FUZZ_SECRET),
            FUZZ_ISSUER.to_owned(),
            FUZZ_AUDIENCE.to_owned(),
        )
    }

    #[tokio::test]
    async fn a_token_whose_sub_is_blank_is_refused() {
        let claims = CallerClaims {
            sub: " ".to_owned(),
            msp: Some("msp-a".to_owned()),
            roles: OneOrMany::One("admin".to_owned()),
            iss: FUZZ_ISSUER.to_owned(),
            aud: OneOrMany::One(FUZZ_AUDIENCE.to_owned()),
            exp: Utc::now().timestamp() + 3600,
            iat: None,
            nbf: None,
        };
        let token = mint_hs256(&SecretString::from(FUZZ_SECRET), &claims).unwrap();
        let error = fuzz_auth().verify(&token).await.unwrap_err();
        assert_eq!(error.to_string(), "the bearer token's sub claim is empty");
    }

    /// What the `caller_token` fuzz target checks, on the inputs it kept: nothing unsigned is
    /// accepted, whether as a header or as a bare token.
    #[tokio::test]
    async fn fuzz_regressions_of_unsigned_tokens_are_refused() {
        let auth = fuzz_auth();
        for (name, authorization) in crate::fuzz_regressions::text_inputs("caller_token") {
            let mut tokens = vec![authorization.as_str()];
            match bearer_token(&authorization) {
                Ok(token) => {
                    assert!(!token.is_empty() && token == token.trim(), "{name}");
                    tokens.push(token);
                }
                Err(error) => assert!(matches!(error, AuthError::Unauthenticated(_)), "{name}"),
            }
            for token in tokens {
                let error = auth.verify(token).await.unwrap_err();
                assert!(matches!(error, AuthError::Unauthenticated(_)), "{name}");
                assert!(error.to_string().len() <= 512, "{name}");
            }
        }
    }

    /// What the `caller_claims` fuzz target checks, on the inputs it kept: a header line and a
    /// claims set, signed with the fuzz secret; whatever is accepted keeps the rules.
    #[tokio::test]
    async fn fuzz_regressions_of_signed_claims_keep_the_rules() {
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        use jsonwebtoken::EncodingKey;

        let auth = fuzz_auth();
        let key = EncodingKey::from_secret(FUZZ_SECRET.as_bytes());
        let mut accepted = 0;
        for (name, input) in crate::fuzz_regressions::inputs("caller_claims") {
            let Some(newline) = input.iter().position(|b| *b == b'\n') else {
                continue;
            };
            let message = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(&input[..newline]),
                URL_SAFE_NO_PAD.encode(&input[newline + 1..])
            );
            let signature =
                jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
            let before = Utc::now().timestamp();
            let Ok(claims) = auth.verify(&format!("{message}.{signature}")).await else {
                continue;
            };
            accepted += 1;
            let leeway = LEEWAY_SECONDS as i64;
            assert!(claims.exp.saturating_add(leeway) >= before, "{name}");
            if let Some(nbf) = claims.nbf {
                assert!(nbf <= Utc::now().timestamp() + leeway, "{name}");
            }
            assert_eq!(claims.iss, FUZZ_ISSUER, "{name}");
            assert!(claims.aud.iter().any(|aud| aud == FUZZ_AUDIENCE), "{name}");
            assert!(!claims.sub.trim().is_empty(), "{name}");
        }
        assert!(
            accepted > 0,
            "the seeds reach the checks past the signature"
        );
    }
}
