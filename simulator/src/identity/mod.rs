//! The simulator's identity platform: `adminconsent`, `authorize` (pages and their forms),
//! `token`, OpenID discovery and keys, in Microsoft's shapes (reference §1–§5).

mod sign_in_pages;
mod token;

use std::collections::BTreeMap;

use axum::{
    Form, Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;
use uuid::Uuid;

use super::{
    AccessGrant, CodeGrant, Inner, RefreshGrant, ResponseFault, Shared, SimTenant, SimUser,
    all_tenants, find_tenant, lock, note, pages, read, record,
    scenario::{IdTokenAttack, app_display_name},
    write,
};

pub(super) use self::{
    sign_in_pages::{
        admin_consent_decision, admin_consent_page, authorize_decision, authorize_page,
    },
    token::token,
};

type Params = BTreeMap<String, String>;

/// Scopes that only an administrator can consent to (reference §8).
const ADMIN_ONLY_SCOPES: [&str; 4] = [
    "userauthenticationmethod.readwrite.all",
    "directory.accessasuser.all",
    "application.readwrite.all",
    "directory.readwrite.all",
];

const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "offline_access", "email"];

fn now() -> i64 {
    Utc::now().timestamp()
}

fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    format!("{prefix}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Microsoft's error description: the AADSTS text plus trace, correlation and timestamp lines.
fn description(code: u64, message: &str) -> String {
    format!(
        "AADSTS{code}: {message}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
        Uuid::new_v4(),
        Uuid::new_v4(),
        Utc::now().format("%Y-%m-%d %H:%M:%SZ")
    )
}

/// A token-endpoint error in the documented JSON shape (reference §2).
pub(super) fn oauth_error(
    inner: &Inner,
    status: StatusCode,
    error: &str,
    code: u64,
    message: &str,
) -> Response {
    let body = json!({
        "error": error,
        "error_description": description(code, message),
        "error_codes": [code],
        "timestamp": Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
        "trace_id": Uuid::new_v4(),
        "correlation_id": Uuid::new_v4(),
        "error_uri": format!("{}error?code={code}", inner.base_url),
    });
    (status, Json(body)).into_response()
}

/// A response that breaks Microsoft's documented shape.
pub(super) fn faulty(fault: ResponseFault) -> Response {
    match fault {
        ResponseFault::MalformedJson => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"access_token\": ",
        )
            .into_response(),
        ResponseFault::WrongContentType => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Service notice</body></html>",
        )
            .into_response(),
        ResponseFault::Redirect => (
            StatusCode::FOUND,
            [(header::LOCATION, "https://login.example.invalid/elsewhere")],
            "",
        )
            .into_response(),
    }
}

/// 302 to the redirect URI with `params` added to its query.
fn redirect(redirect_uri: &str, params: &[(&str, String)]) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return (
            StatusCode::BAD_REQUEST,
            Html(pages::error(50011, "The redirect URI is not a URL.")),
        )
            .into_response();
    };
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in params {
            query.append_pair(key, value);
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, url.to_string())], "").into_response()
}

fn redirect_error(
    inner: &Inner,
    params: &Params,
    code: u64,
    error: &str,
    message: &str,
    admin_consent: bool,
) -> Response {
    let mut out = vec![
        ("error", error.to_owned()),
        ("error_description", description(code, message)),
        ("error_uri", format!("{}error?code={code}", inner.base_url)),
    ];
    if admin_consent {
        out.push(("admin_consent", "True".to_owned()));
    }
    if let Some(state) = params.get("state") {
        out.push(("state", state.clone()));
    }
    redirect(
        params
            .get("redirect_uri")
            .map(String::as_str)
            .unwrap_or_default(),
        &out,
    )
}

/// Checks what Microsoft checks before it shows a page: the app and its redirect URI. A
/// failure is an error page, never a redirect.
fn check_app(inner: &Inner, tenant: &str, params: &Params) -> Result<Vec<SimTenant>, Response> {
    let config = read(&inner.config);
    let page = |code, message: &str| {
        (StatusCode::BAD_REQUEST, Html(pages::error(code, message))).into_response()
    };
    if params.get("client_id") != Some(&config.client_id) {
        return Err(page(
            700016,
            "Application with the given identifier was not found in the directory.",
        ));
    }
    let redirect_uri = params
        .get("redirect_uri")
        .map(String::as_str)
        .unwrap_or_default();
    if redirect_uri.is_empty()
        || (!config.redirect_uris.is_empty()
            && !config.redirect_uris.iter().any(|r| r == redirect_uri))
    {
        return Err(page(
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{}'.",
                config.client_id
            ),
        ));
    }
    drop(config);
    if params.get("scope").is_none_or(|s| s.trim().is_empty()) {
        return Err(page(
            900144,
            "The request body must contain the following parameter: 'scope'.",
        ));
    }
    match tenant.to_ascii_lowercase().as_str() {
        "common" | "organizations" => Ok(all_tenants(inner)),
        segment => find_tenant(inner, segment)
            .map(|t| vec![t])
            .ok_or_else(|| page(90002, &format!("Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."))),
    }
}

/// The user chosen on the page, and their tenant.
fn chosen_user(tenants: &[SimTenant], params: &Params) -> Option<(SimTenant, SimUser)> {
    let id = params.get("user")?;
    tenants.iter().find_map(|tenant| {
        tenant
            .users
            .iter()
            .find(|u| u.id.to_string() == *id)
            .map(|u| (tenant.clone(), u.clone()))
    })
}

/// The session cookie the simulator sets when someone signs in: who is signed in in this
/// browser, so that the next page (admin consent after the sign-in that proved the tenant)
/// has them chosen already, like Microsoft's single sign-on.
const SESSION_COOKIE: &str = "sim-signed-in";

fn signed_in(headers: &HeaderMap) -> Option<Uuid> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE).then(|| Uuid::try_parse(value).ok())?
        })
}

/// `tenants` with the one `domain_hint` names first, as Microsoft's home realm discovery
/// leads with the hinted organisation (other accounts stay available).
fn hinted_first(inner: &Inner, mut tenants: Vec<SimTenant>, params: &Params) -> Vec<SimTenant> {
    if let Some(hinted) = params
        .get("domain_hint")
        .and_then(|hint| find_tenant(inner, hint))
    {
        tenants.sort_by_key(|t| t.id != hinted.id);
    }
    tenants
}

/// The first service principal the tenant still lacks.
fn missing_principal(inner: &Inner, tenant_id: Uuid) -> Option<String> {
    let tenants = read(&inner.tenants);
    let state = tenants.iter().find(|t| t.spec.id == tenant_id)?;
    state
        .spec
        .missing_service_principals
        .iter()
        .find(|app| !state.created.contains_key(*app))
        .cloned()
}

/// The part of a scope after its resource: `https://graph.microsoft.com/Mail.Send` → `Mail.Send`.
fn scope_name(scope: &str) -> &str {
    scope.rsplit('/').next().unwrap_or(scope)
}

/// The resource a scope belongs to; `None` for OpenID scopes. Bare names are Graph's.
fn resource_of(inner: &Inner, scope: &str) -> Option<String> {
    let lower = scope.to_ascii_lowercase();
    if OIDC_SCOPES.contains(&lower.as_str()) {
        return None;
    }
    if let Some(index) = scope.rfind('/') {
        let resource = scope[..index].trim_end_matches('/');
        return Some(normalise_resource(inner, resource));
    }
    Some(graph_resource(inner))
}

fn graph_resource(inner: &Inner) -> String {
    inner.base_url.as_str().trim_end_matches('/').to_owned()
}

fn normalise_resource(inner: &Inner, resource: &str) -> String {
    let resource = resource.trim_end_matches('/');
    if resource.eq_ignore_ascii_case("https://graph.microsoft.com")
        || resource == "00000003-0000-0000-c000-000000000000"
    {
        return graph_resource(inner);
    }
    if resource.eq_ignore_ascii_case("https://management.core.windows.net")
        || resource.eq_ignore_ascii_case("https://management.azure.com")
    {
        return "https://management.core.windows.net/".to_owned();
    }
    resource.to_owned()
}

/// The scopes of `scopes` that belong to `resource`, as Microsoft reports them: Graph's by
/// name, others in full.
fn scopes_for(inner: &Inner, scopes: &[String], resource: &str) -> Vec<String> {
    let graph = graph_resource(inner);
    scopes
        .iter()
        .filter(|s| resource_of(inner, s).is_none_or(|r| r == resource))
        .map(|s| {
            if resource == graph {
                scope_name(s).to_owned()
            } else {
                s.clone()
            }
        })
        .collect()
}

pub(super) async fn openid_configuration(
    State(inner): State<Shared>,
    Path(tenant): Path<String>,
) -> Response {
    let base = inner.base_url.as_str().trim_end_matches('/');
    let issuer_tenant = match find_tenant(&inner, &tenant) {
        Some(t) => t.id.to_string(),
        None if matches!(tenant.as_str(), "common" | "organizations") => "{tenantid}".to_owned(),
        None => {
            return oauth_error(
                &inner,
                StatusCode::BAD_REQUEST,
                "invalid_tenant",
                90002,
                &format!("Tenant '{tenant}' not found."),
            );
        }
    };
    Json(json!({
        "issuer": format!("{base}/{issuer_tenant}/v2.0"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "preferred_username", "name", "tid", "ver", "oid"],
    }))
    .into_response()
}

pub(super) async fn keys(State(inner): State<Shared>, Path(tenant): Path<String>) -> Response {
    record(
        &inner,
        "GET",
        &format!("/{tenant}/discovery/v2.0/keys"),
        &Params::new(),
        &Params::new(),
    );
    Json(read(&inner.keys).jwks()).into_response()
}
