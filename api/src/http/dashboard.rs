//! The Client Dashboard at `/dashboard` (docs/design.md §2): one page of plain HTML, CSS and
//! ES modules embedded in the binary (`api/assets/dashboard/`), working against `/graphql`
//! and `/graphql/ws` with the caller token a person pastes in or gets from the caller identity
//! provider (kept in the tab's `sessionStorage`). Nothing is inline, so its policy allows
//! scripts and styles only from this server.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Json, Response},
};
use serde_json::json;

use super::assets;
use crate::state::AppState;

/// No inline script or style at all; `connect-src 'self'` also covers the WebSocket to this
/// origin (`ws:`/`wss:` match `'self'` in CSP Level 3, in every current browser).
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// [`CONTENT_SECURITY_POLICY`], and with a sign-in at the caller identity provider, its token
/// endpoint's origin in `connect-src` (the browser redeems the code there itself).
fn content_security_policy(state: &AppState) -> HeaderValue {
    let Some(sign_in) = &state.dashboard_sign_in else {
        return HeaderValue::from_static(CONTENT_SECURITY_POLICY);
    };
    let policy = CONTENT_SECURITY_POLICY.replacen(
        "connect-src 'self'",
        &format!("connect-src 'self' {}", sign_in.token_origin()),
        1,
    );
    // An origin serialized by `url` is plain ASCII; the fallback only keeps the type honest.
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(CONTENT_SECURITY_POLICY))
}

fn protect(headers: &mut HeaderMap, policy: HeaderValue) {
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// `GET /`: the dashboard is the front door. A relative location, so a path prefix in front
/// of Consentry is kept.
pub(crate) async fn root() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "dashboard")]).into_response()
}

/// `GET /dashboard/`: its files are relative to `/dashboard`, so send the browser there.
pub(crate) async fn trailing_slash() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "../dashboard")]).into_response()
}

/// `GET /dashboard`. In `consentry demo` the page carries the demo's admin token in a
/// `<meta>` (never in a script), and is then never stored by the browser.
pub(crate) async fn page(State(state): State<AppState>) -> Response {
    let (token, cache_control) = match &state.demo_token {
        Some(token) => (
            format!(
                "<meta name=\"consentry-token\" content=\"{}\">",
                super::html::escape(token)
            ),
            "no-store",
        ),
        None => (String::new(), "no-cache"),
    };
    let mut response = Html(assets::DASHBOARD_PAGE.replace("<!--token-->", &token)).into_response();
    let policy = content_security_policy(&state);
    let headers = response.headers_mut();
    protect(headers, policy);
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    response
}

/// `GET /dashboard/{file}`: one of the dashboard's own files, or 404.
pub(crate) async fn file(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: HeaderMap,
) -> Response {
    let mut response = assets::dashboard_file(&name, &request).unwrap_or_else(assets::not_found);
    protect(response.headers_mut(), content_security_policy(&state));
    response
}

/// `GET /dashboard/sign-in.json`: how the dashboard may sign in besides a pasted token,
/// `{"oidc": {...}}` with the caller identity provider's endpoints, or `{"oidc": null}`. A
/// file rather than inline script, so the page's policy stays as strict.
pub(crate) async fn sign_in(State(state): State<AppState>) -> Response {
    let mut response = Json(json!({ "oidc": state.dashboard_sign_in.as_deref() })).into_response();
    let policy = content_security_policy(&state);
    let headers = response.headers_mut();
    protect(headers, policy);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
