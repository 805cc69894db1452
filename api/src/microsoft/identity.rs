//! The identity platform: consent and sign-in URLs (v2, PKCE S256, nonce), and the token
//! endpoint for `authorization_code`, `refresh_token` and `client_credentials` (reference §1,
//! §2, §5).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use oauth2::{CsrfToken, PkceCodeChallenge, PkceCodeVerifier};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;
use uuid::Uuid;

use super::client::{Microsoft, MicrosoftError, is_json, retry_after, transport};

/// Which tenant a consent or sign-in is sent to: the client's tenant id when known, else its
/// domain, else `organizations`. Never `common` (reference §1: "Do not use 'common'").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantHint {
    Id(Uuid),
    Domain(String),
    Organizations,
}

impl TenantHint {
    pub fn for_client(azure_tenant_id: Option<Uuid>, domain: Option<&str>) -> Self {
        match (azure_tenant_id, domain) {
            (Some(id), _) => Self::Id(id),
            (None, Some(domain)) if !domain.is_empty() => Self::Domain(domain.to_owned()),
            _ => Self::Organizations,
        }
    }

    /// The `{tenant}` path segment.
    pub fn path(&self) -> String {
        match self {
            Self::Id(id) => id.to_string(),
            Self::Domain(domain) => domain.clone(),
            Self::Organizations => "organizations".to_owned(),
        }
    }
}

/// Fresh random values for one flow: `state`, `nonce`, and the PKCE pair. The verifier is
/// 43+ characters from 32 random octets (checklist 8).
pub struct FlowSecrets {
    pub state: CsrfToken,
    pub nonce: CsrfToken,
    pub pkce_challenge: PkceCodeChallenge,
    pub pkce_verifier: PkceCodeVerifier,
}

impl std::fmt::Debug for FlowSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowSecrets { .. }")
    }
}

impl FlowSecrets {
    pub fn new() -> Self {
        let (pkce_challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256_len(32);
        Self {
            state: CsrfToken::new_random_len(32),
            nonce: CsrfToken::new_random_len(32),
            pkce_challenge,
            pkce_verifier,
        }
    }
}

impl Default for FlowSecrets {
    fn default() -> Self {
        Self::new()
    }
}

/// The tokens of a successful token request. Debug never shows them.
pub struct TokenSet {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub id_token: Option<SecretString>,
    /// The scopes Microsoft says it granted (`scope`), lower-cased.
    pub scopes: Vec<String>,
    pub expires_in: Option<u64>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("scopes", &self.scopes)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// An app-only token for a tenant, with the application permissions it carries.
pub struct AppToken {
    pub access_token: SecretString,
    /// The `roles` claim: application permissions actually granted.
    pub roles: Vec<String>,
    /// The `tid` claim.
    pub tenant_id: Option<String>,
}

impl std::fmt::Debug for AppToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppToken")
            .field("roles", &self.roles)
            .field("tenant_id", &self.tenant_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct IdentityErrorBody {
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u64>,
    #[serde(default)]
    suberror: Option<String>,
}

/// What a token request is for; decides whether it may be retried.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// Never retried: a code is single-use (checklist 83, 86).
    AuthorizationCode,
    /// Never retried: the refresh token rotates.
    RefreshToken,
    /// Retried on 429/503 within the Retry-After bound.
    ClientCredentials,
}

/// The scopes of the sign-in that proves an admin's tenant: OpenID Connect's, and the profile
/// (`oid`, `preferred_username`) for the audit trail. No resource is asked for.
pub(crate) const TENANT_SIGN_IN_SCOPES: [&str; 2] = ["openid", "profile"];

/// The authority path of every sign-in and of its token request. Always `organizations`,
/// never a tenant a caller named: until a tenant is proven, nothing Consentry asks Microsoft
/// may depend on which tenant a client claims (checklist 95). The client's tenant goes in
/// `domain_hint` only, which merely picks the sign-in page.
const SIGN_IN_AUTHORITY: &str = "organizations";

impl Microsoft {
    /// [`Microsoft::authorize_url`] for the first step of admin
    /// consent: an OpenID Connect sign-in (code, PKCE S256, nonce) that proves which tenant
    /// the admin belongs to. `prompt=select_account` makes the admin pick the account
    /// deliberately; `domain_hint` names the client's tenant when it is known.
    pub fn tenant_sign_in_url(&self, hint: &TenantHint, secrets: &FlowSecrets) -> Url {
        let scopes = TENANT_SIGN_IN_SCOPES.map(str::to_owned);
        self.authorize_url(hint, &scopes, secrets, Some("select_account"))
    }

    /// Redeems the code of that sign-in. Never retried.
    pub async fn redeem_tenant_sign_in(
        &self,
        code: &str,
        verifier: &PkceCodeVerifier,
    ) -> Result<TokenSet, MicrosoftError> {
        let scopes = TENANT_SIGN_IN_SCOPES.map(str::to_owned);
        self.redeem_sign_in(code, verifier, &scopes).await
    }

    /// `GET {authority}/{tenant}/v2.0/adminconsent`: tenant-wide admin consent to every
    /// application permission of the app registration (`{graph}/.default`).
    pub fn admin_consent_url(&self, tenant: &TenantHint, state: &CsrfToken) -> Url {
        let mut url = self.config.endpoint(&tenant.path(), "v2.0/adminconsent");
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("scope", &self.config.graph_default_scope())
            .append_pair("redirect_uri", self.config.redirect_uri.as_str())
            .append_pair("state", state.secret());
        url
    }

    /// `GET {authority}/organizations/oauth2/v2.0/authorize`: authorization code flow with
    /// PKCE S256 and a nonce; `response_type=code` only (checklist 8, 18). The client's
    /// tenant, when known, is only a `domain_hint`: until an id_token proves a tenant,
    /// nothing Consentry asks Microsoft depends on which tenant a client claims (checklist
    /// 95), so every sign-in and its token request go to `organizations`.
    pub fn authorize_url(
        &self,
        tenant: &TenantHint,
        scopes: &[String],
        secrets: &FlowSecrets,
        prompt: Option<&str>,
    ) -> Url {
        let mut url = self
            .config
            .endpoint(SIGN_IN_AUTHORITY, "oauth2/v2.0/authorize");
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("client_id", &self.config.client_id)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", self.config.redirect_uri.as_str())
                .append_pair("response_mode", "query")
                .append_pair("scope", &scopes.join(" "))
                .append_pair("state", secrets.state.secret())
                .append_pair("nonce", secrets.nonce.secret())
                .append_pair("code_challenge", secrets.pkce_challenge.as_str())
                .append_pair(
                    "code_challenge_method",
                    secrets.pkce_challenge.method().as_str(),
                );
            if let Some(prompt) = prompt {
                query.append_pair("prompt", prompt);
            }
            if *tenant != TenantHint::Organizations {
                query.append_pair("domain_hint", &tenant.path());
            }
        }
        url
    }

    /// Redeems the code of a sign-in started with [`Microsoft::authorize_url`], at the same
    /// `organizations` authority, for the one resource of `scopes`. Never retried.
    pub async fn redeem_sign_in(
        &self,
        code: &str,
        verifier: &PkceCodeVerifier,
        scopes: &[String],
    ) -> Result<TokenSet, MicrosoftError> {
        self.redeem_code(SIGN_IN_AUTHORITY, code, verifier, scopes)
            .await
    }

    /// Redeems an authorization code, for the one resource of `scopes` (reference §2: one
    /// resource per token request). Never retried.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn redeem_code(
        &self,
        tenant: &str,
        code: &str,
        verifier: &PkceCodeVerifier,
        scopes: &[String],
    ) -> Result<TokenSet, MicrosoftError> {
        let scope = scopes.join(" ");
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.config.redirect_uri.as_str()),
            ("code_verifier", verifier.secret().as_str()),
            ("scope", scope.as_str()),
        ];
        self.token_request(tenant, &form, Grant::AuthorizationCode)
            .await
            .and_then(token_set)
    }

    /// Redeems a refresh token for the one resource of `scopes`. The answer carries a new
    /// refresh token that replaces this one. Never retried.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn refresh(
        &self,
        tenant: &str,
        refresh_token: &SecretString,
        scopes: &[String],
    ) -> Result<TokenSet, MicrosoftError> {
        let scope = scopes.join(" ");
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("scope", scope.as_str()),
        ];
        self.token_request(tenant, &form, Grant::RefreshToken)
            .await
            .and_then(token_set)
    }

    /// The tenant that owns `domain` (a validated DNS name), as the `issuer` of Microsoft's
    /// public OpenID configuration for it says; `None` when Microsoft knows no tenant by that
    /// name (`invalid_tenant`, AADSTS90002). The answer is public and the same for every
    /// caller, so asking it reveals nothing about who uses Consentry; ask it only once a
    /// sign-in has proven a tenant (checklist 95).
    #[tracing::instrument(skip_all)]
    pub async fn domain_tenant(&self, domain: &str) -> Result<Option<Uuid>, MicrosoftError> {
        let url = self
            .config
            .endpoint(domain, "v2.0/.well-known/openid-configuration");
        let request = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        let response = super::clock::waiting(request.send())
            .await
            .map_err(|e| transport(e, self.config.timeout))?;
        let status = response.status().as_u16();
        if status >= 500 || status == 429 {
            return Err(MicrosoftError::Unavailable {
                status,
                retry_after: retry_after(&response),
            });
        }
        if !matches!(status, 200 | 400) || !is_json(&response) {
            return Err(MicrosoftError::Malformed(format!(
                "the OpenID configuration of a domain answered {status}"
            )));
        }
        let body = super::clock::waiting(response.bytes())
            .await
            .map_err(|e| MicrosoftError::Unreachable(e.without_url().to_string()))?;
        let malformed = || {
            MicrosoftError::Malformed("the OpenID configuration is not the documented JSON".into())
        };
        if status == 400 {
            let error: IdentityErrorBody =
                serde_json::from_slice(&body).map_err(|_| malformed())?;
            return if error.error == "invalid_tenant" {
                Ok(None)
            } else {
                Err(MicrosoftError::Identity {
                    status,
                    error: super::text::bounded(&error.error, 100),
                    description: super::text::bounded(
                        &error.error_description,
                        4 * super::text::MAX_MESSAGE_CHARS,
                    ),
                    codes: error.error_codes,
                    suberror: error.suberror,
                })
            };
        }
        #[derive(Deserialize)]
        struct Configuration {
            issuer: String,
        }
        let configuration: Configuration =
            serde_json::from_slice(&body).map_err(|_| malformed())?;
        self.config
            .issuer_tenant(&configuration.issuer)
            .map(Some)
            .ok_or_else(malformed)
    }

    /// An app-only Graph token for a tenant (client credentials, `{graph}/.default`), with the
    /// `roles` it carries: the application permissions the tenant actually granted.
    #[tracing::instrument(skip_all, fields(tenant = %tenant))]
    pub async fn app_token(&self, tenant: &str) -> Result<AppToken, MicrosoftError> {
        let scope = self.config.graph_default_scope();
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
        ];
        let response = self
            .token_request(tenant, &form, Grant::ClientCredentials)
            .await?;
        let claims = unverified_claims(&response.access_token)?;
        let roles = claims
            .get("roles")
            .and_then(|r| r.as_array())
            .map(|roles| {
                roles
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let tenant_id = claims
            .get("tid")
            .and_then(|t| t.as_str())
            .map(str::to_owned);
        Ok(AppToken {
            access_token: SecretString::from(response.access_token),
            roles,
            tenant_id,
        })
    }

    /// `POST {authority}/{tenant}/oauth2/v2.0/token`, authenticated with the client secret.
    async fn token_request(
        &self,
        tenant: &str,
        form: &[(&str, &str)],
        grant: Grant,
    ) -> Result<TokenResponse, MicrosoftError> {
        let url = self.config.endpoint(tenant, "oauth2/v2.0/token");
        let mut attempt = 0;
        loop {
            let request = self
                .http
                .post(url.clone())
                .body(encode_form(
                    &self.config.client_id,
                    &self.config.client_secret,
                    form,
                ))
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .header(reqwest::header::ACCEPT, "application/json");
            let response = super::clock::waiting(request.send())
                .await
                .map_err(|e| transport(e, self.config.timeout))?;
            let status = response.status().as_u16();
            if matches!(status, 429 | 503) && grant == Grant::ClientCredentials {
                let after = retry_after(&response);
                if attempt < 3
                    && let Some(wait) = self.retry_wait(after, attempt)
                {
                    tracing::info!(
                        status,
                        ?wait,
                        "Microsoft's token endpoint is throttling; waiting"
                    );
                    super::clock::waiting(tokio::time::sleep(wait)).await;
                    attempt += 1;
                    continue;
                }
                return Err(MicrosoftError::Unavailable {
                    status,
                    retry_after: after,
                });
            }
            let result = super::clock::waiting(read_token_response(response)).await;
            self.note_credentials(&result);
            return result;
        }
    }

    /// Keeps [`Microsoft::credential_problem`] current: an answer that blames our own
    /// credentials sets it (and is logged once), any accepted token request clears it.
    fn note_credentials(&self, result: &Result<TokenResponse, MicrosoftError>) {
        let mut health = match self.credentials.lock() {
            Ok(health) => health,
            Err(poisoned) => poisoned.into_inner(),
        };
        match result {
            Ok(_) => {
                if health.take().is_some() {
                    tracing::info!("Microsoft accepts Consentry's client credentials again");
                }
            }
            Err(error @ MicrosoftError::Identity { .. }) => {
                let problem = error.problem();
                if problem.ours {
                    if health.is_none() {
                        tracing::error!(
                            aadsts = ?problem.aadsts,
                            "Microsoft refused Consentry's own app credentials: {}",
                            problem.remediation
                        );
                    }
                    *health = Some(super::client::CredentialProblem {
                        since: health
                            .as_ref()
                            .map_or_else(chrono::Utc::now, |current| current.since),
                        aadsts: problem.aadsts,
                        remediation: problem.remediation,
                    });
                }
            }
            Err(_) => {}
        }
    }
}

fn encode_form(client_id: &str, secret: &SecretString, form: &[(&str, &str)]) -> String {
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    body.append_pair("client_id", client_id);
    body.append_pair("client_secret", secret.expose_secret());
    for (key, value) in form {
        body.append_pair(key, value);
    }
    body.finish()
}

async fn read_token_response(response: reqwest::Response) -> Result<TokenResponse, MicrosoftError> {
    let status = response.status().as_u16();
    if (300..400).contains(&status) {
        return Err(MicrosoftError::Malformed(format!(
            "the token endpoint redirected ({status}); not followed"
        )));
    }
    if status >= 500 || status == 429 {
        return Err(MicrosoftError::Unavailable {
            status,
            retry_after: retry_after(&response),
        });
    }
    if !is_json(&response) {
        return Err(MicrosoftError::Malformed(format!(
            "the token endpoint answered {status} without JSON"
        )));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| MicrosoftError::Unreachable(e.without_url().to_string()))?;
    if status == 200 {
        return serde_json::from_slice(&body).map_err(|_| {
            MicrosoftError::Malformed("the token response is not the documented JSON".to_owned())
        });
    }
    let error: IdentityErrorBody = serde_json::from_slice(&body).map_err(|_| {
        MicrosoftError::Malformed(format!(
            "the token endpoint answered {status} with unexpected JSON"
        ))
    })?;
    // Microsoft's words are kept only bounded (the description is cleaned and cut again
    // where it is shown).
    Err(MicrosoftError::Identity {
        status,
        error: super::text::bounded(&error.error, 100),
        description: super::text::bounded(
            &error.error_description,
            4 * super::text::MAX_MESSAGE_CHARS,
        ),
        codes: error.error_codes.into_iter().take(8).collect(),
        suberror: error.suberror.map(|s| super::text::bounded(&s, 100)),
    })
}

fn token_set(response: TokenResponse) -> Result<TokenSet, MicrosoftError> {
    let expires_in = match response.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    Ok(TokenSet {
        access_token: SecretString::from(response.access_token),
        refresh_token: response.refresh_token.map(SecretString::from),
        id_token: response.id_token.map(SecretString::from),
        scopes: response
            .scope
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect(),
        expires_in,
    })
}

/// The claims of an access token Consentry received directly from Microsoft's token endpoint
/// over TLS. Graph access tokens are not for us to validate (reference §5); we only read
/// `roles` and `tid` from them.
fn unverified_claims(token: &str) -> Result<serde_json::Value, MicrosoftError> {
    let malformed =
        || MicrosoftError::Malformed("the app-only access token is not a JWT".to_owned());
    let payload = token.split('.').nth(1).ok_or_else(malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| malformed())?;
    serde_json::from_slice(&bytes).map_err(|_| malformed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenant_hint_prefers_the_id_then_the_domain_and_is_never_common() {
        let id = Uuid::new_v4();
        assert_eq!(
            TenantHint::for_client(Some(id), Some("contoso.com")).path(),
            id.to_string()
        );
        assert_eq!(
            TenantHint::for_client(None, Some("contoso.com")).path(),
            "contoso.com"
        );
        assert_eq!(TenantHint::for_client(None, None).path(), "organizations");
        assert_eq!(
            TenantHint::for_client(None, Some("")).path(),
            "organizations"
        );
    }

    #[test]
    fn flow_secrets_are_fresh_and_long_enough() {
        let (a, b) = (FlowSecrets::new(), FlowSecrets::new());
        assert_ne!(a.state.secret(), b.state.secret());
        assert_ne!(a.nonce.secret(), b.nonce.secret());
        assert_ne!(a.pkce_verifier.secret(), b.pkce_verifier.secret());
        assert!((43..=128).contains(&a.pkce_verifier.secret().len()));
        assert_eq!(a.pkce_challenge.method().as_str(), "S256");
        assert!(!format!("{a:?}").contains(a.state.secret()));
    }
}
