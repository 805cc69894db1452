//! GraphQL over HTTP (`POST /graphql`, `GET /graphql` for queries) and over WebSocket
//! (`/graphql/ws`). Transport rules live here; the schema does the rest.

use std::{collections::BTreeMap, sync::Arc};

use async_graphql::parser::{
    parse_query,
    types::{DocumentOperations, OperationType},
};
use axum::{
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::error_response;
use crate::{
    auth::AuthError,
    error_code::ErrorCode,
    graphql::{Kept, Loaders, OneAnswer, SeenOperation},
    state::AppState,
};

/// Largest accepted request body (checklist 57).
pub(crate) const MAX_BODY_BYTES: usize = 100 * 1024;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// The media type the response is written in (GraphQL over HTTP, "Accept").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// `application/json`: always 200 for a well-formed request.
    Json,
    /// `application/graphql-response+json`: request errors get 4xx.
    GraphqlResponseJson,
}

/// The client accepts none of the media types Consentry writes.
#[derive(Debug)]
struct NotAcceptable;

impl IntoResponse for NotAcceptable {
    fn into_response(self) -> Response {
        error_response(
            ErrorCode::NotAcceptable,
            "responses are application/graphql-response+json or application/json; accept one of them",
        )
    }
}

fn negotiate(headers: &HeaderMap) -> Result<Format, NotAcceptable> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Format::Json);
    };
    if accept.trim().is_empty() {
        return Ok(Format::Json);
    }
    let ranges: Vec<String> = accept
        .split(',')
        .map(|r| {
            r.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    if ranges.iter().any(|r| r == GRAPHQL_RESPONSE_JSON) {
        Ok(Format::GraphqlResponseJson)
    } else if ranges
        .iter()
        .any(|r| r == "application/json" || r == "application/*" || r == "*/*")
    {
        Ok(Format::Json)
    } else {
        Err(NotAcceptable)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|media| media == "application/json")
}

/// `POST /graphql`: one operation as a JSON object. No batching, no forms, no multipart.
pub(crate) async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let format = match negotiate(&headers) {
        Ok(format) => format,
        Err(refusal) => return refusal.into_response(),
    };
    // Browsers send forms and text/plain without a CORS preflight: refusing every other type
    // is what keeps cross-site requests out (checklist 62–63).
    if !is_json(&headers) {
        return error_response(
            ErrorCode::UnsupportedMediaType,
            "send the operation as JSON with `Content-Type: application/json`",
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the request body is larger than {} KiB",
                    MAX_BODY_BYTES / 1024
                ),
            );
        }
        Err(rejection) => {
            return error_response(ErrorCode::BadRequest, rejection.body_text());
        }
    };
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(_) => {
            return error_response(ErrorCode::BadRequest, "the request body is not valid JSON");
        }
    };
    if value.is_array() {
        return error_response(
            ErrorCode::BadRequest,
            "batched operations are not supported; send one operation per request",
        );
    }
    // async-graphql would take a missing `query` for an empty document.
    if !value.get("query").is_some_and(serde_json::Value::is_string) {
        return error_response(
            ErrorCode::BadRequest,
            "the body must be an object with `query` (string) and optional `variables` (object) and `operationName` (string)",
        );
    }
    let request: async_graphql::Request = match serde_json::from_value(value) {
        Ok(request) => request,
        Err(_) => {
            return error_response(
                ErrorCode::BadRequest,
                "the body must be an object with `query` (string) and optional `variables` (object) and `operationName` (string)",
            );
        }
    };
    execute(&state, &headers, request, format).await
}

/// `GET /graphql?query=…`: queries only; a mutation is refused with 405 and runs nothing
/// (checklist 61).
pub(crate) async fn get(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let format = match negotiate(&headers) {
        Ok(format) => format,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(request) = query_string_request(uri.query().unwrap_or_default()) else {
        return error_response(
            ErrorCode::BadRequest,
            "pass the operation as ?query=…[&variables=JSON][&operationName=…][&extensions=JSON]",
        );
    };
    if matches!(
        operation_type(&request),
        Some(OperationType::Mutation | OperationType::Subscription)
    ) {
        let mut response = error_response(
            ErrorCode::MethodNotAllowed,
            "GET runs queries only; send mutations with POST (and subscriptions over /graphql/ws)",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    execute(&state, &headers, request, format).await
}

/// The type of the operation a request would run; `None` when the document does not parse
/// or does not say which operation (execution then reports why).
fn operation_type(request: &async_graphql::Request) -> Option<OperationType> {
    let document = parse_query(&request.query).ok()?;
    match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| op.node.ty),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| op.node.ty)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// The operation a GET carries in its query string (GraphQL over HTTP: `query`, and
/// optionally `variables` and `extensions` as JSON, `operationName`); `None` when it is not
/// one, or names a parameter twice.
fn query_string_request(raw: &str) -> Option<async_graphql::Request> {
    let (mut query, mut variables, mut operation_name, mut extensions) = (None, None, None, None);
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        let slot = match name.as_ref() {
            "query" => &mut query,
            "variables" => &mut variables,
            "operationName" => &mut operation_name,
            "extensions" => &mut extensions,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return None;
        }
    }
    let mut request = async_graphql::Request::new(query?);
    if let Some(variables) = variables.filter(|v| !v.is_empty()) {
        let variables: serde_json::Value = serde_json::from_str(&variables).ok()?;
        if !variables.is_object() {
            return None;
        }
        request = request.variables(async_graphql::Variables::from_json(variables));
    }
    if let Some(extensions) = extensions.filter(|e| !e.is_empty()) {
        request.extensions = serde_json::from_str(&extensions).ok()?;
    }
    request.operation_name = operation_name.filter(|n| !n.is_empty());
    Some(request)
}

/// Authenticates the caller (a presented token must be valid) and runs the operation.
async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    request: async_graphql::Request,
    format: Format,
) -> Response {
    // Every statement of this request, authentication included, is counted for
    // `consentry_graphql_operation_db_statements` (no N+1 goes unnoticed).
    let started = std::time::Instant::now();
    let (db, statements) = crate::db::counted(&state.db);
    let (viewer, revision) = match headers.get(header::AUTHORIZATION) {
        None => (None, 0),
        Some(value) => {
            let value = value.to_str().unwrap_or_default();
            match state.auth.authenticate_at_revision(&db, value).await {
                Ok((viewer, revision)) => (Some(viewer), revision),
                Err(error) => return auth_error_response(&error),
            }
        }
    };
    // An answer kept at the MSP's current revision is the answer (`graphql::AnswerCache`).
    let lookup = viewer
        .as_ref()
        .and_then(|viewer| state.answers.lookup(viewer, revision, &request));
    let kept = match (&lookup, &viewer) {
        (Some(lookup), Some(viewer)) => state.answers.answer(lookup, viewer, started),
        _ => None,
    };
    let seen = Arc::new(SeenOperation::default());
    let response = match kept {
        Some(Kept::Answer(body)) => return answer(StatusCode::OK, format, body, None),
        Some(Kept::Refused(refusal)) => async_graphql::Response::from_errors(vec![refusal]),
        None => {
            let mut request = request
                .data(Loaders::new(&db))
                .data(db)
                .data(statements)
                .data(seen.clone())
                .data(OneAnswer);
            if let Some(viewer) = viewer {
                // Shared, as on WebSockets (see `graphql::query::viewer`).
                request = request.data(Arc::new(viewer));
            }
            state.schema.execute(request).await
        }
    };
    // An error before execution (parsing, validation, limits) leaves no `data` at all.
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let refusal = response
        .errors
        .first()
        .and_then(|e| e.extensions.as_ref())
        .and_then(|e| match e.get("code") {
            Some(async_graphql::Value::String(code)) => ErrorCode::parse(code),
            _ => None,
        });
    let mut retry_after = None;
    let status = match refusal {
        // Checklist 55: 429 whatever the media type, so proxies and clients back off.
        Some(ErrorCode::RateLimited) if request_error => {
            retry_after = response
                .errors
                .first()
                .and_then(|e| e.extensions.as_ref())
                .and_then(|e| match e.get("retryAfter") {
                    Some(async_graphql::Value::Number(n)) => n.as_u64(),
                    _ => None,
                });
            ErrorCode::RateLimited.http_status()
        }
        Some(code @ ErrorCode::Timeout) if request_error => code.http_status(),
        _ if format == Format::GraphqlResponseJson && request_error => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    // Written once, straight from async-graphql's answer: its objects keep the query's field
    // order (GraphQL 7.2.2), which a `serde_json::Value` on the way would sort.
    let body = if request_error {
        serde_json::to_vec(&RequestError {
            extensions: &response.extensions,
            errors: &response.errors,
        })
    } else {
        serde_json::to_vec(&response)
    };
    let Ok(body) = body else {
        return error_response(ErrorCode::Internal, "cannot encode the response");
    };
    let body = Bytes::from(body);
    if let Some(lookup) = lookup
        && status == StatusCode::OK
        && !request_error
    {
        state.answers.keep(lookup, &seen, &response, &body);
    }
    answer(status, format, body, retry_after)
}

/// The HTTP answer: the body in the negotiated media type, never stored by shared caches.
fn answer(status: StatusCode, format: Format, body: Bytes, retry_after: Option<u64>) -> Response {
    let content_type = match format {
        Format::Json => "application/json",
        Format::GraphqlResponseJson => GRAPHQL_RESPONSE_JSON,
    };
    let mut http = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    // Answers depend on the caller's token: never cache them in shared caches.
    http.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(seconds) = retry_after {
        http.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    http
}

/// The answer to a request error: no `data` at all (GraphQL over HTTP), the rest as
/// async-graphql writes a `Response`.
#[derive(Serialize)]
struct RequestError<'a> {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extensions: &'a BTreeMap<String, async_graphql::Value>,
    errors: &'a [async_graphql::ServerError],
}

/// The HTTP answer to a refused token.
pub(crate) fn auth_error_response(error: &AuthError) -> Response {
    match error {
        AuthError::Unauthenticated(message) => {
            error_response(ErrorCode::Unauthenticated, message.clone())
        }
        AuthError::Forbidden(message) => error_response(ErrorCode::Forbidden, message.clone()),
        AuthError::Unavailable(message) => error_response(ErrorCode::Unavailable, message.clone()),
    }
}
