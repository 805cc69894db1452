//! The dashboard's sign-in at the caller identity provider: OIDC authorization code with PKCE
//! by a public client, run by the browser itself. Consentry only discovers the provider's
//! endpoints at start and tells the dashboard about them (`GET /dashboard/sign-in.json`); the
//! access token the browser gets is checked like any other caller token, on first use.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::{DashboardOidcSettings, is_loopback};

const SETTING: &str = "CONSENTRY_DASHBOARD_OIDC_CLIENT_ID";
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the dashboard needs to sign in at the identity provider (serialized as the
/// `oidc` of `sign-in.json`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DashboardSignIn {
    /// The issuer the provider must name in its answer (RFC 9207 `iss`).
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    client_id: String,
    scope: String,
    redirect_uri: Url,
}

/// The parts of the provider's discovery document used here.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

impl DashboardSignIn {
    /// Reads `{issuer}/.well-known/openid-configuration` (redirects are not followed); fails
    /// with what to check when it cannot be read, names another issuer, offers endpoints that
    /// are not https (unless loopback), or says it cannot do S256 PKCE.
    pub(crate) async fn discover(settings: &DashboardOidcSettings) -> anyhow::Result<Self> {
        let url = &settings.discovery_url;
        let cannot = |why: String| {
            anyhow::anyhow!(
                "{SETTING}: the identity provider's endpoints cannot be discovered at {url}: {why}"
            )
        };
        let http = reqwest::Client::builder()
            .timeout(DISCOVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let response = http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| cannot(format!("it could not be reached ({e})")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(cannot(format!(
                "it answered HTTP {status}; check CONSENTRY_AUTH_ISSUER"
            )));
        }
        let discovery: Discovery = response
            .json()
            .await
            .map_err(|e| cannot(format!("it is not an OpenID discovery document ({e})")))?;
        if discovery.issuer != settings.issuer {
            return Err(cannot(format!(
                "it names the issuer {:?}, not CONSENTRY_AUTH_ISSUER {:?}",
                discovery.issuer, settings.issuer
            )));
        }
        if let Some(methods) = &discovery.code_challenge_methods_supported
            && !methods.iter().any(|m| m == "S256")
        {
            return Err(cannot(
                "the provider does not offer PKCE with S256 (code_challenge_methods_supported)"
                    .to_owned(),
            ));
        }
        let endpoint = |name: &str, raw: &str| -> anyhow::Result<Url> {
            let parsed =
                Url::parse(raw).map_err(|_| cannot(format!("its {name} {raw:?} is not a URL")))?;
            if parsed.fragment().is_some() || parsed.host_str().is_none() {
                return Err(cannot(format!("its {name} {raw:?} is not an endpoint URL")));
            }
            if parsed.scheme() != "https" && !(parsed.scheme() == "http" && is_loopback(&parsed)) {
                return Err(cannot(format!(
                    "its {name} {raw} must use https (plain http is only allowed for localhost)"
                )));
            }
            Ok(parsed)
        };
        let sign_in = Self {
            issuer: discovery.issuer.clone(),
            authorization_endpoint: endpoint(
                "authorization_endpoint",
                &discovery.authorization_endpoint,
            )?,
            token_endpoint: endpoint("token_endpoint", &discovery.token_endpoint)?,
            client_id: settings.client_id.clone(),
            scope: settings.scope.clone(),
            redirect_uri: settings.redirect_uri.clone(),
        };
        tracing::info!(
            authorization_endpoint = %sign_in.authorization_endpoint,
            token_endpoint = %sign_in.token_endpoint,
            "the dashboard signs in at the caller identity provider"
        );
        Ok(sign_in)
    }

    /// The token endpoint's origin, which the browser fetches cross-origin (the dashboard's
    /// `connect-src`).
    pub(crate) fn token_origin(&self) -> String {
        self.token_endpoint.origin().ascii_serialization()
    }
}
