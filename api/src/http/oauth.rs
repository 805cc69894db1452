//! `GET /oauth/callback`, the one redirect URI of every flow, and `GET /oauth/result/{flow}`,
//! the small page people land on when no frontend is configured.
//!
//! The callback never echoes what it was sent: its query (code, state) is not logged, and
//! its pages show only Consentry's own words and Microsoft's HTML-escaped message. Every
//! answer carries `Referrer-Policy: no-referrer` and redirects at once, so the query leaves
//! the address bar (checklist 13, 17).

use std::time::{Duration, Instant};

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use uuid::Uuid;

use super::html::escape;
use crate::{
    config::join,
    domain::{
        Error,
        flows::{
            FlowOutcome,
            callback::{self, CallbackParams},
            kind::CallbackResult,
            store,
        },
    },
    graphql::{GlobalId, IdKind},
    state::AppState,
};

/// How long a callback waits for a concurrent one that is acting on the same flow.
const WAIT_FOR_OTHER: Duration = Duration::from_secs(15);

/// `GET /oauth/callback`. `Server-Timing` tells Consentry's own time (`app`) from the time
/// spent waiting for Microsoft (`microsoft`), for operators and the benchmark tool.
pub(crate) async fn callback(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let started = Instant::now();
    let (mut response, microsoft) =
        crate::microsoft::timed(answer(&state, query.as_deref().unwrap_or_default())).await;
    let app = started.elapsed().saturating_sub(microsoft);
    let timing = format!(
        "app;dur={:.3};desc=\"Consentry\", microsoft;dur={:.3};desc=\"Microsoft\"",
        app.as_secs_f64() * 1000.0,
        microsoft.as_secs_f64() * 1000.0
    );
    if let Ok(value) = HeaderValue::from_str(&timing) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("server-timing"), value);
    }
    response
}

async fn answer(state: &AppState, query: &str) -> Response {
    // A query that cannot be read gets the page of a link without a valid `state`: nothing
    // was stored and nothing was asked of Microsoft.
    let params = match CallbackParams::from_query(query) {
        Ok(params) => params,
        Err(error) => {
            tracing::info!(%error, "callback query refused");
            return rejected(state);
        }
    };
    let deadline = tokio::time::Instant::now() + WAIT_FOR_OTHER;
    loop {
        match callback::handle(&state.db, &state.consents, &params).await {
            Ok(CallbackResult::Finished {
                flow_id, outcome, ..
            }) => return finished(state, flow_id, &outcome),
            Ok(CallbackResult::Rejected) => return rejected(state),
            Ok(CallbackResult::Continue { url }) => {
                // The admin proved their tenant: on to Microsoft's consent page for it.
                state.metrics.callback("continued");
                return onward(&url);
            }
            Ok(CallbackResult::AlreadySignedIn) => {
                state.metrics.callback("already_signed_in");
                return page(
                    StatusCode::CONFLICT,
                    "Already signed in",
                    "<p>This sign-in was already used, and Microsoft's consent page was opened \
                     from it. Finish there: press Accept in that window.</p><p>If you closed it, \
                     ask your IT provider for a new link.</p>",
                );
            }
            Ok(CallbackResult::InProgress) if tokio::time::Instant::now() < deadline => {
                // Another request (a double click, a refresh) is acting on this flow: wait for
                // its outcome rather than act twice (checklist 84).
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(CallbackResult::InProgress) => {
                state.metrics.callback("in_progress");
                let mut response = page(
                    StatusCode::CONFLICT,
                    "Still working on it",
                    "<p>Consentry is still completing this authorisation. Reload this page in a \
                     few seconds to see the result.</p>",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return response;
            }
            Err(Error::Unavailable) => {
                state.metrics.callback("unavailable");
                // The flow was not consumed: the same link works once the database is back
                // (checklist 91).
                let mut response = page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Consentry is briefly unavailable",
                    "<p>Nothing was lost. Reload this page in a minute to finish.</p>",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
                return response;
            }
            Err(error) => {
                state.metrics.callback("error");
                let reference = Uuid::new_v4();
                tracing::error!(%reference, %error, error_source = ?error, "consent callback failed");
                return page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    &format!(
                        "<p>Consentry could not finish this authorisation. Reload this page to try \
                         again; if it keeps failing, give your IT provider this reference: {reference}</p>"
                    ),
                );
            }
        }
    }
}

/// A callback Consentry does not recognise: no `state`, one it never issued, or a query it
/// cannot read.
fn rejected(state: &AppState) -> Response {
    state.metrics.callback("rejected");
    page(
        StatusCode::BAD_REQUEST,
        "This link is not valid",
        "<p>Consentry does not recognise this sign-in. The link may be incomplete, or it was \
         never issued by Consentry.</p><p>Ask your IT provider for a new link.</p>",
    )
}

/// Sends the browser on: to the frontend's client page when one is configured, else to
/// Consentry's own result page.
fn finished(state: &AppState, flow_id: Uuid, outcome: &FlowOutcome) -> Response {
    state.metrics.callback(if outcome.succeeded {
        "succeeded"
    } else {
        "failed"
    });
    let location = match &state.settings.frontend_url {
        Some(frontend) => {
            let client = GlobalId::new(IdKind::Client, outcome.client_id).encode();
            let mut url = join(frontend, &format!("clients/{}", client.as_str()));
            url.query_pairs_mut()
                .append_pair(&outcome.topic, &outcome.status);
            url
        }
        None => join(
            &state.settings.public_url,
            &format!("oauth/result/{flow_id}"),
        ),
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location.as_str()) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    protect(response.headers_mut());
    response
}

/// Sends the browser on to Microsoft (the next step of a flow). Like every answer of the
/// callback: no referrer, no caching.
fn onward(url: &url::Url) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(url.as_str()) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    protect(response.headers_mut());
    response
}

/// `GET /oauth/result/{flow}`: what happened, and what to do next.
pub(crate) async fn result(State(state): State<AppState>, Path(flow): Path<String>) -> Response {
    let not_found = || {
        page(
            StatusCode::NOT_FOUND,
            "No such result",
            "<p>There is no result at this address. Results are kept for a week.</p>",
        )
    };
    let Ok(flow_id) = Uuid::parse_str(&flow) else {
        return not_found();
    };
    let flow = match store::find(&state.db, flow_id).await {
        Ok(Some(flow)) if flow.completed_at.is_some() => flow,
        Ok(_) => return not_found(),
        Err(Error::Unavailable) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Consentry is briefly unavailable",
                "<p>Reload this page in a minute.</p>",
            );
        }
        Err(error) => {
            tracing::error!(%error, "result page failed");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "<p>Reload this page to try again.</p>",
            );
        }
    };
    let outcome = store::outcome_of(&flow);
    let mut body = String::new();
    if !outcome.client_name.is_empty() {
        body.push_str(&format!(
            "<p class=\"client\">{}</p>",
            escape(&outcome.client_name)
        ));
    }
    body.push_str(&format!(
        "<p><strong>What to do next:</strong> {}</p>",
        escape(&outcome.next_step)
    ));
    if let Some(message) = &outcome.microsoft_message {
        body.push_str(&format!(
            "<p class=\"ms\">Microsoft said: {}</p>",
            escape(message)
        ));
    }
    // Without a frontend of its own, the MSP's way back is Consentry's dashboard.
    if state.settings.frontend_url.is_none() {
        body.push_str(&format!(
            "<p class=\"back\"><a href=\"{}\">Back to the dashboard</a></p>",
            escape(join(&state.settings.public_url, "dashboard").as_str())
        ));
    }
    let (title, class) = match (outcome.succeeded, outcome.status.as_str()) {
        (true, _) => ("Done", "ok"),
        // A re-consent that did not go through leaves the authorisation standing: the page
        // must not tell the admin that the client lost it.
        (false, "AUTHORISED") => ("Still authorised", "unchanged"),
        (false, _) => ("Not authorised", "failed"),
    };
    let mut response = page(
        StatusCode::OK,
        title,
        &format!(
            "<p class=\"headline {class}\">{}</p>{body}",
            escape(&outcome.headline)
        ),
    );
    response.headers_mut().insert(
        HeaderName::from_static("x-consentry-outcome"),
        HeaderValue::from_static(if outcome.succeeded {
            "succeeded"
        } else {
            "failed"
        }),
    );
    response
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;color:#1d1d1f}\
main{max-width:520px;margin:64px auto;background:#fff;padding:32px 40px;border-radius:8px;\
box-shadow:0 1px 4px rgba(0,0,0,.15)}h1{font-size:22px;margin-top:0}.ok{color:#107c10}\
.failed{color:#a4262c}.headline{font-size:18px}.client{color:#555}.ms{color:#555;font-size:14px}\
.back{margin-top:24px}a{color:#0b57d0}";

/// A self-contained page: no scripts, no third-party content, no referrer.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · Consentry</title><style>{STYLE}</style></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>",
        title = escape(title),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    protect(headers);
    response
}

/// No referrer (the callback URL carries the state) and no caching.
fn protect(headers: &mut HeaderMap) {
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
