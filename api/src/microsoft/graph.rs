//! The Microsoft Graph calls Consentry makes (reference §6), with Graph's error shape parsed
//! and 429/503 `Retry-After` honoured within a bound. Nothing else is retried.

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;

use super::client::{Microsoft, MicrosoftError, is_json, retry_after, transport};

/// `GET /v1.0/organization`: the tenant a token belongs to.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub id: String,
    #[serde(default, deserialize_with = "super::text::bounded_name")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub verified_domains: Vec<VerifiedDomain>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedDomain {
    pub name: String,
    #[serde(default)]
    pub is_default: bool,
    #[serde(default)]
    pub is_initial: bool,
}

/// `GET /v1.0/me`: the signed-in user.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub id: String,
    #[serde(default, deserialize_with = "super::text::bounded_name")]
    pub user_principal_name: Option<String>,
    #[serde(default, deserialize_with = "super::text::bounded_name")]
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "super::text::bounded_name")]
    pub mail: Option<String>,
}

/// A service principal as Graph returns it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipal {
    pub id: String,
    pub app_id: String,
    #[serde(default, deserialize_with = "super::text::bounded_name")]
    pub app_display_name: Option<String>,
}

/// What `POST /servicePrincipals` achieved.
#[derive(Clone, Debug)]
pub enum Creation {
    Created(ServicePrincipal),
    /// 409: the principal already exists, which is what we wanted (reference §6).
    AlreadyExists,
}

#[derive(Deserialize)]
struct Collection<T> {
    value: Vec<T>,
}

#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphErrorDetail,
}

#[derive(Deserialize)]
struct GraphErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl Microsoft {
    /// The organization of the token's tenant.
    pub async fn organization(&self, token: &SecretString) -> Result<Organization, MicrosoftError> {
        let orgs: Collection<Organization> = self
            .graph(Method::GET, "v1.0/organization", &[], token, None)
            .await?;
        orgs.value.into_iter().next().ok_or_else(|| {
            MicrosoftError::Malformed("/organization returned no organization".to_owned())
        })
    }

    /// The user a delegated token belongs to.
    pub async fn me(&self, token: &SecretString) -> Result<Me, MicrosoftError> {
        self.graph(Method::GET, "v1.0/me", &[], token, None).await
    }

    /// The tenant's service principal for `app_id`, if there is one. `app_id` must already be
    /// a validated GUID.
    pub async fn find_service_principal(
        &self,
        token: &SecretString,
        app_id: &str,
    ) -> Result<Option<ServicePrincipal>, MicrosoftError> {
        let filter = format!("appId eq '{app_id}'");
        let found: Collection<ServicePrincipal> = self
            .graph(
                Method::GET,
                "v1.0/servicePrincipals",
                &[("$filter", &filter)],
                token,
                None,
            )
            .await?;
        Ok(found.value.into_iter().next())
    }

    /// Creates the tenant's service principal for `app_id` (what `az ad sp create --id`
    /// does). A 409 means it exists already.
    pub async fn create_service_principal(
        &self,
        token: &SecretString,
        app_id: &str,
    ) -> Result<Creation, MicrosoftError> {
        let body = json!({ "appId": app_id, "accountEnabled": true });
        match self
            .graph::<ServicePrincipal>(
                Method::POST,
                "v1.0/servicePrincipals",
                &[],
                token,
                Some(body),
            )
            .await
        {
            Ok(created) => Ok(Creation::Created(created)),
            Err(MicrosoftError::Graph { status: 409, .. }) => Ok(Creation::AlreadyExists),
            Err(other) => Err(other),
        }
    }

    async fn graph<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        token: &SecretString,
        body: Option<serde_json::Value>,
    ) -> Result<T, MicrosoftError> {
        let mut url = crate::config::join(&self.config.graph, path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut attempt = 0;
        loop {
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose_secret())
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = super::clock::waiting(request.send())
                .await
                .map_err(|e| transport(e, self.config.timeout))?;
            let status = response.status().as_u16();
            if matches!(status, 429 | 503) {
                let after = retry_after(&response);
                if attempt < 3
                    && let Some(wait) = self.retry_wait(after, attempt)
                {
                    tracing::info!(
                        status,
                        ?wait,
                        path,
                        "Microsoft Graph is throttling; waiting"
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
            return super::clock::waiting(read_graph_response(response)).await;
        }
    }
}

async fn read_graph_response<T: DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, MicrosoftError> {
    let status = response.status().as_u16();
    if (300..400).contains(&status) {
        return Err(MicrosoftError::Malformed(format!(
            "Graph redirected ({status}); not followed"
        )));
    }
    if !is_json(&response) {
        if status >= 500 {
            return Err(MicrosoftError::Unavailable {
                status,
                retry_after: None,
            });
        }
        return Err(MicrosoftError::Malformed(format!(
            "Graph answered {status} without JSON"
        )));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| MicrosoftError::Unreachable(e.without_url().to_string()))?;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&body).map_err(|_| {
            MicrosoftError::Malformed(format!("Graph answered {status} with unexpected JSON"))
        });
    }
    match serde_json::from_slice::<GraphErrorBody>(&body) {
        Ok(error) => Err(MicrosoftError::Graph {
            status,
            code: super::text::bounded(&error.error.code, 100),
            message: super::text::bounded(&error.error.message, super::text::MAX_MESSAGE_CHARS),
        }),
        Err(_) if status >= 500 => Err(MicrosoftError::Unavailable {
            status,
            retry_after: None,
        }),
        Err(_) => Err(MicrosoftError::Malformed(format!(
            "Graph answered {status} with unexpected JSON"
        ))),
    }
}
