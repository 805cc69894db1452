//! Liveness and readiness.

use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

use crate::app::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the process can serve, i.e. the database answers.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = crate::db::ping(&state.db, Duration::from_secs(2)).await;
    let status = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if database { "ready" } else { "unavailable" },
            "checks": {
                "database": if database { "ok" } else { "unreachable" },
                // Informational: without an app registration the API serves, but no consent flow can start.
                "microsoft": if state.microsoft.is_some() { "configured" } else { "not configured" },
            },
        })),
    )
}
