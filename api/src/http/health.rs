//! Liveness and readiness.

use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

use crate::state::AppState;

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the process can serve, i.e. the database answers and change events reach
/// it (on PostgreSQL, its `LISTEN` is in place: until then a subscriber here would miss
/// changes committed elsewhere); 503 otherwise. Also
/// reports, without failing readiness, whether Microsoft accepts Consentry's own app
/// credentials: a bad or expired client secret is an operator's problem that every instance
/// shares, and taking them all out of the load balancer would not fix it.
pub(crate) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = crate::db::ping(&state.db, Duration::from_secs(2)).await;
    let credentials = state
        .microsoft
        .as_ref()
        .and_then(|microsoft| microsoft.credential_problem());
    let events = state.bus.receiving();
    let status = if database && events {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let microsoft = match (&state.microsoft, &credentials) {
        (None, _) => json!("not configured"),
        (Some(_), None) => json!("configured"),
        (Some(_), Some(problem)) => json!({
            "status": "credentials rejected",
            "aadsts": problem.aadsts,
            "since": problem.since,
            "remediation": problem.remediation,
        }),
    };
    let overall = match (database && events, credentials.is_some()) {
        (false, _) => "unavailable",
        (true, true) => "degraded",
        (true, false) => "ready",
    };
    (
        status,
        Json(json!({
            "status": overall,
            "checks": {
                "database": if database { "ok" } else { "unreachable" },
                "events": if events { "receiving" } else { "connecting" },
                // Without an app registration the API serves, but no consent flow can start.
                "microsoft": microsoft,
            },
        })),
    )
}
