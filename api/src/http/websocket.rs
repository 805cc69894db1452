//! GraphQL over WebSocket at `/graphql/ws` (`graphql-transport-ws`, and legacy `graphql-ws`).
//!
//! Consentry reads `connection_init` itself before handing the socket to async-graphql, whose
//! default accepts anything: the caller's token must come in its payload as
//! `{"Authorization": "Bearer …"}` (never in the URL), within 10 seconds.

use std::time::Duration;

use async_graphql::{Data, http::ALL_WEBSOCKET_PROTOCOLS};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use futures_util::{SinkExt, StreamExt, stream};

use crate::app::AppState;

/// How long a client may take to send `connection_init`.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest accepted message (checklist 73).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most subscriptions one connection may hold at once (checklist 73); one more closes it.
pub const MAX_SUBSCRIPTIONS: usize = 32;
/// The read buffer of each socket. tungstenite zero-fills its whole read buffer on the first
/// read, so axum's default (128 KiB) makes every idle subscriber resident for 128 KiB;
/// clients send a few small messages, and a larger one still arrives whole (the buffer grows
/// for it, up to `MAX_MESSAGE_BYTES`).
pub const READ_BUFFER_BYTES: usize = 1024;
/// Most bytes queued for one slow subscriber before its connection fails: a socket that takes
/// nothing cannot hold more than this (events are also dropped for it after
/// `SUBSCRIBER_BUFFER` and it is told to resync).
pub const MAX_WRITE_BUFFER_BYTES: usize = 4 * MAX_MESSAGE_BYTES;

/// Close codes of the `graphql-transport-ws` protocol.
mod close {
    pub(super) const BAD_REQUEST: u16 = 4400;
    pub(super) const UNAUTHORIZED: u16 = 4401;
    pub(super) const FORBIDDEN: u16 = 4403;
    pub(super) const INIT_TIMEOUT: u16 = 4408;
    /// RFC 6455 "going away": the server is shutting down.
    pub(super) const GOING_AWAY: u16 = 1001;
}

/// `GET /graphql/ws`. A browser's `Origin` must be Consentry's own or one of
/// `CONSENTRY_CORS_ORIGINS` (checklist 66); clients that send none (servers, CLIs) pass.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN)
        && !origin_allowed(&state, origin)
    {
        return super::error_response(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "this Origin may not open GraphQL subscriptions: add it to CONSENTRY_CORS_ORIGINS",
        );
    }
    let draining = state.draining.clone();
    let state = Box::new(state);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        // Every event is written at once (async-graphql flushes each message anyway), so
        // nothing is held in a write buffer between events.
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| draining.track(serve(state, protocol, Box::new(socket))))
}

/// One subscriber's connection, for as long as it stays. The state and the socket come boxed:
/// a future keeps room for its arguments for its whole life, even once they have been moved
/// out or dropped, and these two (a few hundred bytes each) are only needed at the start.
async fn serve(state: Box<AppState>, protocol: GraphQLProtocol, socket: Box<WebSocket>) {
    let (mut sink, mut stream) = (*socket).split();
    // Boxed: the handshake's futures (parsing, a database lookup) are large, and a future's
    // size is that of its largest state — inline, every idle subscriber would keep them.
    let Some((init, viewer)) = Box::pin(handshake(&state, &mut sink, &mut stream)).await else {
        return;
    };
    let expires_at = viewer.expires_at;
    let schema = state.schema.clone();
    let stopping = state.draining.stopping();
    // Nothing else of the state is needed for as long as the subscriber stays.
    drop(state);
    let mut data = Data::default();
    data.insert(std::sync::Arc::new(viewer));
    // async-graphql sees the same connection_init again and acknowledges it. Boxed:
    // async-graphql keeps the stream it is given twice over, as given and as it wraps it.
    let replayed = stream::once(async move { Ok(Message::Text(init.into())) })
        .chain(stream)
        .scan(Vec::<Box<str>>::new(), |active, message| {
            let within = count_subscriptions(active, &message);
            std::future::ready(within.then_some(message))
        })
        .boxed();
    // The sink is lent, so that a goodbye can still be sent when the server stops or the
    // token expires.
    let serve = GraphQLWebSocket::new_with_pair(&mut sink, replayed, schema, protocol)
        .with_data(data)
        .serve();
    // Checklist 72: the connection ends when the caller's token does.
    let left = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    let goodbye = tokio::select! {
        () = serve => None,
        () = tokio::time::sleep(left) => {
            tracing::info!("a subscriber's token expired; its connection is closed");
            Some((close::FORBIDDEN, "Forbidden: the token expired; reconnect with a new one"))
        }
        () = stopping => Some((close::GOING_AWAY, "Consentry is shutting down; reconnect")),
    };
    if let Some((code, reason)) = goodbye {
        close_with(&mut sink, code, reason).await;
    }
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;
type Stream = futures_util::stream::SplitStream<WebSocket>;

/// Reads `connection_init` and authenticates its token; returns the message (to hand to
/// async-graphql) and the caller, or closes the socket with the protocol's code.
async fn handshake(
    state: &AppState,
    sink: &mut Sink,
    stream: &mut Stream,
) -> Option<(String, crate::auth::Viewer)> {
    let init = match tokio::time::timeout(INIT_TIMEOUT, first_text(stream)).await {
        Err(_) => {
            close_with(
                sink,
                close::INIT_TIMEOUT,
                "Connection initialisation timeout",
            )
            .await;
            return None;
        }
        Ok(None) => return None,
        Ok(Some(text)) => text,
    };
    let Ok(message) = serde_json::from_str::<serde_json::Value>(&init) else {
        close_with(sink, close::BAD_REQUEST, "Invalid message received").await;
        return None;
    };
    match message.get("type").and_then(|t| t.as_str()) {
        Some("connection_init") => {}
        Some("subscribe" | "start") => {
            close_with(sink, close::UNAUTHORIZED, "Unauthorized").await;
            return None;
        }
        _ => {
            close_with(sink, close::BAD_REQUEST, "Invalid message received").await;
            return None;
        }
    }
    let authorization = message.get("payload").and_then(|payload| {
        payload
            .get("Authorization")
            .or_else(|| payload.get("authorization"))
            .and_then(|v| v.as_str())
    });
    let Some(authorization) = authorization else {
        close_with(
            sink,
            close::FORBIDDEN,
            "Forbidden: connection_init must carry {\"Authorization\": \"Bearer <token>\"}",
        )
        .await;
        return None;
    };
    match state.auth.authenticate(&state.db, authorization).await {
        Ok(viewer) => Some((init, viewer)),
        Err(error) => {
            close_with(sink, close::FORBIDDEN, &format!("Forbidden: {error}")).await;
            None
        }
    }
}

/// Tracks the connection's subscription ids; false once there would be too many, which
/// ends the connection.
fn count_subscriptions(active: &mut Vec<Box<str>>, message: &Result<Message, axum::Error>) -> bool {
    let Ok(Message::Text(text)) = message else {
        return true;
    };
    let Ok(parsed) = serde_json::from_str::<serde_json::Value>(text) else {
        return true;
    };
    let id = parsed
        .get("id")
        .and_then(|i| i.as_str())
        .unwrap_or_default();
    match parsed.get("type").and_then(|t| t.as_str()) {
        Some("subscribe" | "start") => {
            // A handful of ids at most: a list is smaller than a set.
            if !active.iter().any(|a| &**a == id) {
                active.push(id.into());
            }
            active.len() <= MAX_SUBSCRIPTIONS
        }
        Some("complete" | "stop") => {
            active.retain(|a| &**a != id);
            true
        }
        _ => true,
    }
}

fn origin_allowed(state: &AppState, origin: &HeaderValue) -> bool {
    let own = state.settings.public_url.origin().ascii_serialization();
    origin.as_bytes() == own.as_bytes()
        || state
            .settings
            .allowed_origins()
            .is_ok_and(|allowed| allowed.iter().any(|a| a == origin))
}

/// The first text message, skipping pings and pongs; `None` when the client goes away.
async fn first_text(stream: &mut Stream) -> Option<String> {
    while let Some(message) = stream.next().await {
        match message.ok()? {
            Message::Text(text) => return Some(text.to_string()),
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Binary(_) | Message::Close(_) => return None,
        }
    }
    None
}

async fn close_with(sink: &mut Sink, code: u16, reason: &str) {
    // A close reason may be at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: reason[..end].to_owned().into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
    let _ = sink.close().await;
}
