//! The simulator's identity platform: `adminconsent`, `authorize` (pages and their forms),
//! `token`, OpenID discovery and keys, in Microsoft's shapes (reference §1–§5).

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

pub(super) async fn admin_consent_page(
    State(inner): State<Shared>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    record(
        &inner,
        "GET",
        &format!("/{tenant}/v2.0/adminconsent"),
        &params,
        &Params::new(),
    );
    let tenants = match check_app(&inner, &tenant, &params) {
        Ok(tenants) => tenants,
        Err(page) => return page,
    };
    let permissions: Vec<String> = read(&inner.config)
        .required_roles
        .iter()
        .map(|r| format!("{r} (application permission)"))
        .collect();
    Html(pages::consent(
        &format!("/{tenant}/v2.0/adminconsent"),
        "Permissions requested — Accept for your organization",
        "Consentry",
        &permissions,
        &tenants,
        signed_in(&headers),
        &params,
    ))
    .into_response()
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

pub(super) async fn admin_consent_decision(
    State(inner): State<Shared>,
    Path(tenant): Path<String>,
    Form(params): Form<Params>,
) -> Response {
    let index = record(
        &inner,
        "POST",
        &format!("/{tenant}/v2.0/adminconsent"),
        &Params::new(),
        &params,
    );
    let tenants = match check_app(&inner, &tenant, &params) {
        Ok(tenants) => tenants,
        Err(page) => return page,
    };
    let Some((home, user)) = chosen_user(&all_tenants(&inner), &params) else {
        return (
            StatusCode::BAD_REQUEST,
            Html(pages::error(
                50034,
                "The user account does not exist in this directory.",
            )),
        )
            .into_response();
    };
    if !tenants.iter().any(|t| t.id == home.id) {
        note(&inner, index, "outcome=50020");
        return redirect_error(
            &inner,
            &params,
            50020,
            "access_denied",
            &format!(
                "User account '{}' from identity provider 'https://sts.windows.net/{}/' does not exist in tenant '{}' and cannot access the application.",
                user.user_principal_name, home.id, tenant
            ),
            true,
        );
    }
    let declined = params.get("decision").map(String::as_str) != Some("accept")
        || home.faults.consent_declined;
    let outcome = if home.faults.mfa_required {
        Some((50076, "interaction_required", "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access 'Consentry'.".to_owned()))
    } else if home.faults.conditional_access_blocked {
        Some((53003, "access_denied", "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.".to_owned()))
    } else if declined {
        Some((
            65004,
            "access_denied",
            "User declined to consent to access the app.".to_owned(),
        ))
    } else if !user.is_admin {
        Some((
            90094,
            "access_denied",
            "The grant requires admin permission.".to_owned(),
        ))
    } else if let Some(app_id) = missing_principal(&inner, home.id) {
        Some((
            650052,
            "invalid_client",
            format!(
                "The app is trying to access a service '{app_id}'({}) that your organization '{}' lacks a service principal for. Contact your IT Admin to review the configuration of your service subscriptions or consent to the application in order to create the required service principal.",
                app_display_name(&app_id),
                home.id
            ),
        ))
    } else {
        None
    };
    if let Some((code, error, message)) = outcome {
        note(&inner, index, format!("outcome={code}"));
        return redirect_error(&inner, &params, code, error, &message, true);
    }
    let required = read(&inner.config).required_roles.clone();
    if let Some(state) = write(&inner.tenants)
        .iter_mut()
        .find(|t| t.spec.id == home.id)
    {
        state.granted_roles = Some(state.spec.faults.granted_roles.clone().unwrap_or(required));
    }
    note(&inner, index, "outcome=consented");
    let mut out = vec![
        ("admin_consent", "True".to_owned()),
        ("tenant", home.id.to_string()),
        ("scope", params.get("scope").cloned().unwrap_or_default()),
    ];
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

pub(super) async fn authorize_page(
    State(inner): State<Shared>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let index = record(
        &inner,
        "GET",
        &format!("/{tenant}/oauth2/v2.0/authorize"),
        &params,
        &Params::new(),
    );
    let tenants = match check_app(&inner, &tenant, &params) {
        Ok(tenants) => tenants,
        Err(page) => return page,
    };
    if params.get("response_type").map(String::as_str) != Some("code") {
        note(&inner, index, "outcome=unsupported_response_type");
        return redirect_error(
            &inner,
            &params,
            700054,
            "unsupported_response_type",
            "response_type 'code' is the only one enabled for this application.",
            false,
        );
    }
    let scopes: Vec<String> = params
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    // `prompt=select_account` asks the user to pick an account again.
    let session = signed_in(&headers)
        .filter(|_| params.get("prompt").map(String::as_str) != Some("select_account"));
    Html(pages::consent(
        &format!("/{tenant}/oauth2/v2.0/authorize"),
        "Permissions requested",
        "Consentry",
        &scopes,
        &hinted_first(&inner, tenants, &params),
        session,
        &params,
    ))
    .into_response()
}

pub(super) async fn authorize_decision(
    State(inner): State<Shared>,
    Path(tenant): Path<String>,
    Form(params): Form<Params>,
) -> Response {
    let index = record(
        &inner,
        "POST",
        &format!("/{tenant}/oauth2/v2.0/authorize"),
        &Params::new(),
        &params,
    );
    let tenants = match check_app(&inner, &tenant, &params) {
        Ok(tenants) => tenants,
        Err(page) => return page,
    };
    let Some((home, user)) = chosen_user(&all_tenants(&inner), &params) else {
        return (
            StatusCode::BAD_REQUEST,
            Html(pages::error(
                50034,
                "The user account does not exist in this directory.",
            )),
        )
            .into_response();
    };
    if !tenants.iter().any(|t| t.id == home.id) {
        note(&inner, index, "outcome=50020");
        return redirect_error(
            &inner,
            &params,
            50020,
            "access_denied",
            "The user account does not exist in this tenant.",
            false,
        );
    }
    let requested: Vec<String> = params
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let declined = params.get("decision").map(String::as_str) != Some("accept")
        || home.faults.consent_declined;
    let admin_only = |s: &String| {
        ADMIN_ONLY_SCOPES
            .iter()
            .any(|a| scope_name(s).eq_ignore_ascii_case(a))
    };
    let granted: Vec<String> = if user.is_admin {
        requested.clone()
    } else {
        requested
            .iter()
            .filter(|s| !admin_only(s))
            .cloned()
            .collect()
    };
    let grants_resource_scope = granted
        .iter()
        .any(|s| !OIDC_SCOPES.contains(&s.to_ascii_lowercase().as_str()));
    let outcome = if home.faults.mfa_required {
        Some((
            50076,
            "interaction_required",
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access 'Consentry'.",
        ))
    } else if home.faults.conditional_access_blocked {
        Some((
            53003,
            "access_denied",
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        ))
    } else if declined {
        Some((
            65004,
            "access_denied",
            "User declined to consent to access the app.",
        ))
    } else if !grants_resource_scope && requested.iter().any(admin_only) {
        Some((
            90094,
            "access_denied",
            "The grant requires admin permission.",
        ))
    } else {
        None
    };
    if let Some((code, error, message)) = outcome {
        note(&inner, index, format!("outcome={code}"));
        return redirect_error(&inner, &params, code, error, message, false);
    }
    if granted.len() < requested.len() {
        note(&inner, index, "outcome=partial-grant");
    }
    let challenge = params.get("code_challenge").map(|c| {
        (
            c.clone(),
            params
                .get("code_challenge_method")
                .cloned()
                .unwrap_or_else(|| "plain".to_owned()),
        )
    });
    let code = random_token("sim-code");
    lock(&inner.codes).insert(
        code.clone(),
        CodeGrant {
            client_id: params.get("client_id").cloned().unwrap_or_default(),
            redirect_uri: params.get("redirect_uri").cloned().unwrap_or_default(),
            tenant_id: home.id,
            user_id: user.id,
            scopes: granted,
            nonce: params.get("nonce").cloned(),
            challenge,
            issued_at: Utc::now(),
            redeemed: false,
        },
    );
    note(&inner, index, "outcome=code");
    let mut out = vec![("code", code)];
    if let Some(state) = params.get("state") {
        out.push(("state", state.clone()));
    }
    let mut response = redirect(
        params
            .get("redirect_uri")
            .map(String::as_str)
            .unwrap_or_default(),
        &out,
    );
    if let Ok(cookie) = header::HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
        user.id
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
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

fn client_authenticated(inner: &Inner, form: &Params, headers: &HeaderMap) -> Result<(), Response> {
    let config = read(&inner.config);
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
        });
    let (client_id, secret) = match (form.get("client_id"), form.get("client_secret"), basic) {
        (Some(id), Some(secret), _) => (id.clone(), secret.clone()),
        (_, _, Some((id, secret))) => (id, secret),
        (Some(id), None, None) => (id.clone(), String::new()),
        _ => {
            return Err(oauth_error(
                inner,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            ));
        }
    };
    if client_id != config.client_id {
        return Err(oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory."),
        ));
    }
    if secret != config.client_secret {
        return Err(oauth_error(
            inner,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        ));
    }
    Ok(())
}

pub(super) async fn token(
    State(inner): State<Shared>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> Response {
    let index = record(
        &inner,
        "POST",
        &format!("/{tenant}/oauth2/v2.0/token"),
        &Params::new(),
        &form,
    );
    // Faults belong to the tenant in the path, or (for organizations) the grant's tenant.
    let path_tenant = find_tenant(&inner, &tenant);
    let grant_tenant = form
        .get("code")
        .and_then(|c| lock(&inner.codes).get(c).map(|g| g.tenant_id))
        .or_else(|| {
            form.get("refresh_token")
                .and_then(|r| lock(&inner.refresh_tokens).get(r).map(|g| g.tenant_id))
        });
    let faults = path_tenant
        .clone()
        .or_else(|| grant_tenant.and_then(|id| find_tenant(&inner, &id.to_string())))
        .map(|t| t.faults)
        .unwrap_or_default();
    if faults.token_delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(faults.token_delay_ms)).await;
    }
    if let Some(status) = faults.token_failure_status {
        note(&inner, index, format!("outcome=fault-{status}"));
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let error = if status == StatusCode::SERVICE_UNAVAILABLE {
            "temporarily_unavailable"
        } else {
            "server_error"
        };
        return oauth_error(
            &inner,
            status,
            error,
            90033,
            "A transient error has occurred. Please try again.",
        );
    }
    if let Some(fault) = faults.token_response {
        note(&inner, index, format!("outcome=fault-{fault:?}"));
        return faulty(fault);
    }
    if let Err(refusal) = client_authenticated(&inner, &form, &headers) {
        note(&inner, index, "outcome=client-refused");
        return refusal;
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => redeem_code(&inner, index, &form),
        Some("refresh_token") => redeem_refresh_token(&inner, index, &form, &faults),
        Some("client_credentials") => {
            client_credentials(&inner, index, &tenant, path_tenant, &form)
        }
        _ => oauth_error(
            &inner,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        ),
    }
}

/// The one resource a token request's scopes name (reference §2: one per request).
fn single_resource(inner: &Inner, scope: &str, fallback: &[String]) -> Result<String, Response> {
    let mut resources: Vec<String> = scope
        .split_whitespace()
        .filter_map(|s| resource_of(inner, s))
        .collect();
    resources.dedup();
    if resources.is_empty() {
        resources = fallback
            .iter()
            .filter_map(|s| resource_of(inner, s))
            .take(1)
            .collect();
    }
    match resources.as_slice() {
        [one] => Ok(one.clone()),
        [] => Ok(graph_resource(inner)),
        _ => Err(oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            28000,
            &format!(
                "Provided value for the input parameter scope is not valid because it contains more than one resource. Scope {scope} is not valid."
            ),
        )),
    }
}

fn redeem_code(inner: &Inner, index: usize, form: &Params) -> Response {
    let code = form.get("code").cloned().unwrap_or_default();
    let mut codes = lock(&inner.codes);
    let Some(grant) = codes.get_mut(&code) else {
        note(inner, index, "code=unknown");
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            9002313,
            "Invalid request. Request is malformed or invalid.",
        );
    };
    if grant.redeemed {
        note(inner, index, "code=already-redeemed");
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
        );
    }
    if (Utc::now() - grant.issued_at).num_minutes() >= 10 {
        note(inner, index, "code=expired");
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        );
    }
    if form.get("client_id") != Some(&grant.client_id) {
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            70002,
            "The client does not match the one the code was issued to.",
        );
    }
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        note(inner, index, "redirect_uri=mismatch");
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            50148,
            "The redirect_uri does not match the one used in the authorization request.",
        );
    }
    if let Some((challenge, method)) = &grant.challenge {
        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
        let computed = if method.eq_ignore_ascii_case("S256") {
            URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
        } else {
            verifier
        };
        if computed != *challenge {
            note(inner, index, "pkce=mismatch");
            return oauth_error(
                inner,
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            );
        }
        note(inner, index, format!("pkce=ok ({method})"));
    } else {
        note(inner, index, "pkce=absent");
    }
    let scope = form.get("scope").cloned().unwrap_or_default();
    let resource = match single_resource(inner, &scope, &grant.scopes) {
        Ok(resource) => resource,
        Err(refusal) => return refusal,
    };
    grant.redeemed = true;
    note(inner, index, "code=redeemed");
    let (tenant_id, user_id, scopes, nonce) = (
        grant.tenant_id,
        grant.user_id,
        grant.scopes.clone(),
        grant.nonce.clone(),
    );
    drop(codes);
    issue_user_tokens(
        inner,
        tenant_id,
        user_id,
        &scopes,
        &resource,
        nonce.as_deref(),
    )
}

fn redeem_refresh_token(
    inner: &Inner,
    index: usize,
    form: &Params,
    faults: &super::Faults,
) -> Response {
    let token = form.get("refresh_token").cloned().unwrap_or_default();
    let Some(grant) = lock(&inner.refresh_tokens).get(&token).cloned() else {
        note(inner, index, "refresh=unknown");
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            9002313,
            "Invalid request. Request is malformed or invalid.",
        );
    };
    if faults.refresh_token_expired {
        note(inner, index, "refresh=expired");
        let issued = (Utc::now() - chrono::Duration::days(91)).format("%Y-%m-%dT%H:%M:%S.0000000Z");
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            700082,
            &format!(
                "The refresh token has expired due to inactivity. The token was issued on {issued} and was inactive for 90.00:00:00."
            ),
        );
    }
    let scope = form.get("scope").cloned().unwrap_or_default();
    // A refresh spanning resources gets a token for the first (reference §2).
    let resource = scope
        .split_whitespace()
        .find_map(|s| resource_of(inner, s))
        .unwrap_or_else(|| graph_resource(inner));
    note(inner, index, "refresh=ok");
    issue_user_tokens(
        inner,
        grant.tenant_id,
        grant.user_id,
        &grant.scopes,
        &resource,
        None,
    )
}

/// Access, refresh and id tokens for a user, for one resource.
fn issue_user_tokens(
    inner: &Inner,
    tenant_id: Uuid,
    user_id: Uuid,
    scopes: &[String],
    resource: &str,
    nonce: Option<&str>,
) -> Response {
    let Some(tenant) = find_tenant(inner, &tenant_id.to_string()) else {
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
            "Tenant not found.",
        );
    };
    let Some(user) = tenant.users.iter().find(|u| u.id == user_id).cloned() else {
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            50034,
            "The user account does not exist in this directory.",
        );
    };
    let client_id = read(&inner.config).client_id.clone();
    let granted = scopes_for(inner, scopes, resource);
    let resource_scopes: Vec<String> = granted
        .iter()
        .filter(|s| !OIDC_SCOPES.contains(&s.to_ascii_lowercase().as_str()))
        .cloned()
        .collect();
    let issuer = format!("{}{}/v2.0", inner.base_url, tenant_id);
    let issued = now();
    let access_claims = json!({
        "aud": resource, "iss": issuer, "iat": issued, "nbf": issued, "exp": issued + 3600,
        "tid": tenant_id, "oid": user.id, "sub": user.id, "scp": resource_scopes.join(" "),
        "azp": client_id, "name": user.display_name, "upn": user.user_principal_name, "ver": "2.0",
    });
    let Ok(access_token) = read(&inner.keys).active().sign(&access_claims) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "signing failed").into_response();
    };
    lock(&inner.access_tokens).insert(
        access_token.clone(),
        AccessGrant {
            tenant_id,
            user_id: Some(user.id),
            roles: Vec::new(),
            scopes: resource_scopes.clone(),
        },
    );
    let lower: Vec<String> = scopes.iter().map(|s| s.to_ascii_lowercase()).collect();
    let mut body = json!({
        "token_type": "Bearer",
        "scope": granted.join(" "),
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": access_token,
    });
    if lower.iter().any(|s| s == "offline_access") {
        let refresh = random_token("sim-refresh");
        lock(&inner.refresh_tokens).insert(
            refresh.clone(),
            RefreshGrant {
                tenant_id,
                user_id,
                scopes: scopes.to_vec(),
            },
        );
        body["refresh_token"] = Value::String(refresh);
    }
    if lower.iter().any(|s| s == "openid") {
        // Pairwise subject: stable per user and app.
        let sub = URL_SAFE_NO_PAD.encode(Sha256::digest(
            format!("{}:{client_id}", user.id).as_bytes(),
        ));
        let mut id_claims = json!({
            "aud": client_id, "iss": issuer, "iat": issued, "nbf": issued, "exp": issued + 3600,
            "tid": tenant_id, "oid": user.id, "sub": sub, "ver": "2.0",
            "preferred_username": user.user_principal_name, "name": user.display_name,
        });
        if read(&inner.config).directory_roles_in_id_tokens {
            let mut wids = vec![super::roles::USER];
            if user.is_admin {
                wids.push(super::roles::GLOBAL_ADMINISTRATOR);
            }
            id_claims["wids"] = json!(wids);
        }
        if let Some(nonce) = nonce {
            id_claims["nonce"] = Value::String(nonce.to_owned());
        }
        let Ok(id_token) = forge_id_token(inner, tenant.faults.id_token_attack, id_claims) else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "signing failed").into_response();
        };
        body["id_token"] = Value::String(id_token);
    }
    Json(body).into_response()
}

/// Signs an id_token, forged the way the tenant's fault says.
fn forge_id_token(
    inner: &Inner,
    attack: Option<IdTokenAttack>,
    mut claims: Value,
) -> anyhow::Result<String> {
    let elsewhere = super::stable_id("elsewhere.onmicrosoft.com");
    match attack {
        None
        | Some(
            IdTokenAttack::BadSignature
            | IdTokenAttack::AlgNone
            | IdTokenAttack::Hs256WithPublicKey
            | IdTokenAttack::RotatedKey,
        ) => {}
        Some(IdTokenAttack::WrongIssuer) => {
            claims["iss"] = json!(format!("{}{elsewhere}/v2.0", inner.base_url));
        }
        Some(IdTokenAttack::WrongAudience) => claims["aud"] = json!(Uuid::new_v4().to_string()),
        Some(IdTokenAttack::OtherTenant) => {
            claims["tid"] = json!(elsewhere);
            claims["iss"] = json!(format!("{}{elsewhere}/v2.0", inner.base_url));
        }
        Some(IdTokenAttack::WrongNonce) => claims["nonce"] = json!("not-this-flows-nonce"),
        Some(IdTokenAttack::Expired) => {
            let past = now() - 7200;
            claims["iat"] = json!(past);
            claims["nbf"] = json!(past);
            claims["exp"] = json!(past + 3600);
        }
    }
    let encode = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    match attack {
        Some(IdTokenAttack::AlgNone) => Ok(format!(
            "{}.{}.",
            encode(br#"{"alg":"none","typ":"JWT"}"#),
            encode(claims.to_string().as_bytes())
        )),
        Some(IdTokenAttack::Hs256WithPublicKey) => {
            let keys = read(&inner.keys);
            let jwks = keys.jwks();
            let public = jwks
                .keys
                .last()
                .map(|k| serde_json::to_string(k).unwrap_or_default())
                .unwrap_or_default();
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = Some(keys.active().kid.clone());
            Ok(jsonwebtoken::encode(
                &header,
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
            )?)
        }
        Some(IdTokenAttack::BadSignature) => {
            let token = read(&inner.keys).active().sign(&claims)?;
            let (head, signature) = token.rsplit_once('.').unwrap_or((&token, ""));
            let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap_or_default();
            if let Some(last) = bytes.last_mut() {
                *last ^= 1;
            }
            Ok(format!("{head}.{}", encode(&bytes)))
        }
        Some(IdTokenAttack::RotatedKey) => {
            write(&inner.keys).rotate(false)?;
            read(&inner.keys).active().sign(&claims)
        }
        _ => read(&inner.keys).active().sign(&claims),
    }
}

fn client_credentials(
    inner: &Inner,
    index: usize,
    segment: &str,
    tenant: Option<SimTenant>,
    form: &Params,
) -> Response {
    if matches!(
        segment.to_ascii_lowercase().as_str(),
        "common" | "organizations" | "consumers"
    ) {
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            9001023,
            "The grant type isn't supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint.",
        );
    }
    let Some(tenant) = tenant else {
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    };
    let scope = form.get("scope").cloned().unwrap_or_default();
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let [single] = scopes.as_slice() else {
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            &format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        );
    };
    let Some(resource) = single
        .strip_suffix("/.default")
        .map(|r| normalise_resource(inner, r))
    else {
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {single} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    };
    let client_id = read(&inner.config).client_id.clone();
    let granted = read(&inner.tenants)
        .iter()
        .find(|t| t.spec.id == tenant.id)
        .and_then(|t| t.granted_roles.clone());
    let (Some(roles), false) = (granted, tenant.faults.app_removed) else {
        note(inner, index, "outcome=700016");
        return oauth_error(
            inner,
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                tenant.id
            ),
        );
    };
    let issued = now();
    let mut claims = json!({
        "aud": resource, "iss": format!("{}{}/v2.0", inner.base_url, tenant.id), "iat": issued, "nbf": issued,
        "exp": issued + 3600, "tid": tenant.id, "oid": super::stable_id(&format!("sp:{client_id}:{}", tenant.id)),
        "sub": super::stable_id(&format!("sp:{client_id}:{}", tenant.id)), "azp": client_id, "idtyp": "app", "ver": "2.0",
    });
    if !roles.is_empty() {
        claims["roles"] = json!(roles);
    }
    let Ok(access_token) = read(&inner.keys).active().sign(&claims) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "signing failed").into_response();
    };
    lock(&inner.access_tokens).insert(
        access_token.clone(),
        AccessGrant {
            tenant_id: tenant.id,
            user_id: None,
            roles,
            scopes: Vec::new(),
        },
    );
    note(inner, index, "outcome=app-token");
    Json(json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": access_token })).into_response()
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
