//! HTTP endpoints other than GraphQL resolvers: the GraphQL transport, the dashboard,
//! GraphiQL and the files they load, health, metrics, and the JSON error shape they share.

pub(crate) mod assets;
pub(crate) mod dashboard;
pub(crate) mod graphiql;
pub(crate) mod graphql;
pub(crate) mod health;
pub(crate) mod html;
pub(crate) mod metrics;
pub(crate) mod oauth;
pub(crate) mod websocket;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::error_code::ErrorCode;

/// A GraphQL-shaped error response (`{"errors":[{message, extensions.code}]}`) for failures
/// that happen before GraphQL runs.
pub(crate) fn error_response(code: ErrorCode, message: impl Into<String>) -> Response {
    let status = code.http_status();
    let body = json!({ "errors": [{ "message": message.into(), "extensions": { "code": code.as_str() } }] });
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
