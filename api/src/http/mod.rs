//! HTTP endpoints other than GraphQL resolvers: the GraphQL transport, GraphiQL, health,
//! metrics, and the JSON error shape they share.

pub mod graphiql;
pub mod graphql;
pub mod health;
pub mod html;
pub mod metrics;
pub mod oauth;
pub mod websocket;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// A GraphQL-shaped error response (`{"errors":[{message, extensions.code}]}`) for failures
/// that happen before GraphQL runs.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "errors": [{ "message": message.into(), "extensions": { "code": code } }] });
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
