//! GraphQL over WebSocket at `/graphql/ws` (`graphql-transport-ws`, and legacy `graphql-ws`).
//!
//! Consentry reads `connection_init` itself before handing the socket to async-graphql, whose
//! default accepts anything: the caller's token must come in its payload as
//! `{"Authorization": "Bearer …"}` (never in the URL), within 10 seconds.
//!
//! Every message the caller sends then passes a gate (checklist 72, 73, 99): the caller's
//! message rate, its MSP still enabled and its token unexpired before each new operation, and
//! at most `MAX_SUBSCRIPTIONS` subscriptions open at once. The connection closes when its
//! token expires (within `SWEEP_INTERVAL`), when its MSP is disabled (at the next re-check),
//! or when the server stops.
//!
//! An idle subscriber waits on one thing only: its connection's `ended`. What ends it from the
//! outside — the token's expiry, the MSP's being disabled, the server's stop — is found by
//! [`SocketLimits`], which keeps a list of the open connections and sweeps it, so that no
//! subscriber keeps a timer and two watches of its own (a few hundred bytes each time).

use std::{sync::Arc, time::Duration};

use async_graphql::{Data, http::ALL_WEBSOCKET_PROTOCOLS};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    http::{HeaderMap, HeaderValue, header},
    response::Response,
};
use chrono::Utc;
use futures_util::{SinkExt, StreamExt, stream};
use sea_orm::DatabaseConnection;

mod close;
pub(crate) mod connections;

use close::{Goodbye, MSP_DISABLED, SHUTTING_DOWN, TOKEN_EXPIRED};
use connections::{Connection, ended};

use crate::{auth::DisabledMsps, state::AppState};

/// How often [`SocketLimits::sweep`] runs: a connection closes at most this long after its
/// token expires.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How long a client may take to send `connection_init`.
pub(crate) const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest accepted message (checklist 73).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The read buffer of each socket. tungstenite zero-fills its whole read buffer on the first
/// read, so axum's default (128 KiB) makes every idle subscriber resident for 128 KiB.
/// Clients send a few small messages, and a larger one still arrives whole: the buffer grows
/// to each frame's length, up to `MAX_MESSAGE_BYTES`. Under 1 KiB on purpose: once a frame
/// has been split off the buffer, `bytes` replaces it with one of at least the first buffer's
/// size rounded to a power of two when that was 1 KiB or more, and with one of only what the
/// next frame needs when it was less — so an idle subscriber keeps a few bytes, not 1 KiB.
pub(crate) const READ_BUFFER_BYTES: usize = 256;
/// Most bytes queued for one slow subscriber before its connection fails: a socket that takes
/// nothing cannot hold more than this (events are also dropped for it after
/// `SUBSCRIBER_BUFFER` and it is told to resync).
pub(crate) const MAX_WRITE_BUFFER_BYTES: usize = 4 * MAX_MESSAGE_BYTES;
/// Largest answer sent over a socket (when `CONSENTRY_MAX_RESPONSE_BYTES` allows more): a
/// message larger than the write buffer would break the connection instead of answering; the
/// rest of the buffer leaves room for the message's envelope (its id is at most a message).
pub const MAX_RESPONSE_BYTES: usize = MAX_WRITE_BUFFER_BYTES - MAX_MESSAGE_BYTES;

/// Close codes of the `graphql-transport-ws` protocol.
/// `GET /graphql/ws`. A browser's `Origin` must be Consentry's own or one of
/// `CONSENTRY_CORS_ORIGINS` (checklist 66); clients that send none (servers, CLIs) pass.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN)
        && !origin_allowed(&state, origin)
    {
        // A browser shows the page nothing of this answer: the log says why.
        let origin = crate::microsoft::bounded(&String::from_utf8_lossy(origin.as_bytes()), 200);
        let public = state.settings.public_url.origin().ascii_serialization();
        tracing::warn!(
            %origin,
            %public,
            "refused a WebSocket from a page of another origin: open Consentry at its public              URL (CONSENTRY_PUBLIC_URL), or list the page's origin in CONSENTRY_CORS_ORIGINS"
        );
        return super::error_response(
            crate::error_code::ErrorCode::Forbidden,
            format!(
                "the Origin {origin} may not open GraphQL subscriptions: open Consentry at \
                 {public}, or add the origin to CONSENTRY_CORS_ORIGINS"
            ),
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
    // The caller comes shared: a future keeps room for each of its locals, moved or not.
    let Some((init, viewer)) = Box::pin(handshake(&state, &mut sink, &mut stream)).await else {
        return;
    };
    let connected = (state.sockets).connect(viewer.msp_id(), &viewer.subject, viewer.expires_at);
    let connection = match connected {
        Ok(connection) => connection,
        Err(caller) => {
            let goodbye = (
                close::TRY_AGAIN_LATER,
                "Too many connections: close one of yours first",
            );
            state.sockets.log_refusal(&caller, goodbye);
            close_with(&mut sink, goodbye.0, goodbye.1).await;
            return;
        }
    };
    // Checklist 99: an MSP found disabled by a re-read whose sweep ran before this connection
    // was listed.
    if state.disabled_msps.contains(connection.msp_id()) {
        connection.end(MSP_DISABLED);
    }
    let schema = state.schema.clone();
    let gate = Gate {
        connection: connection.clone(),
        db: state.db.clone(),
        disabled_msps: state.disabled_msps.clone(),
    };
    // Nothing else of the state is needed for as long as the subscriber stays.
    drop(state);
    let mut data = Data::default();
    data.insert(viewer);
    data.insert(crate::graphql::ResponseCap(MAX_RESPONSE_BYTES));
    // async-graphql sees the same connection_init again and acknowledges it. Boxed:
    // async-graphql keeps the stream it is given twice over, as given and as it wraps it.
    let input = stream::once(std::future::ready(Ok(Message::Text(init.into())))).chain(stream);
    let gated = stream::unfold((input, gate), |(mut input, mut gate)| async move {
        let message = input.next().await?;
        // Boxed: the unfold keeps room for its largest state for as long as the subscriber
        // stays, and a message to check comes rarely (a subscribe, a complete, a ping).
        match Box::pin(gate.admit(&message)).await {
            Ok(()) => Some((message, (input, gate))),
            Err(goodbye) => {
                let _ = gate.connection.goodbye.set(goodbye);
                None
            }
        }
    })
    .boxed();
    // What the server sends is watched for operations it ended. The sink is lent, so that a
    // goodbye can still be sent when the server stops or the token expires.
    let watching = connection.clone();
    let watched = (&mut sink).with(move |message: Message| {
        if let Message::Text(text) = &message {
            ended(&watching.operations, text);
        }
        std::future::ready(Ok::<_, axum::Error>(message))
    });
    let serve = GraphQLWebSocket::new_with_pair(watched, gated, schema, protocol)
        .with_data(data)
        .serve();
    // The gate ends `serve` when it refuses a message; the sweeps and the server's stop end
    // the connection from outside (checklist 72, 99).
    tokio::select! {
        () = serve => {}
        () = connection.ended.notified() => {}
    }
    let Some(goodbye) = connection.goodbye.get().copied() else {
        return;
    };
    if goodbye == TOKEN_EXPIRED {
        tracing::info!("a subscriber's token expired; its connection is closed");
    } else if goodbye != SHUTTING_DOWN {
        connection.limits.log_refusal(&connection.caller, goodbye);
    }
    close_with(&mut sink, goodbye.0, goodbye.1).await;
}

/// What every message from the caller passes before async-graphql sees it.
struct Gate {
    connection: Arc<Connection>,
    db: DatabaseConnection,
    disabled_msps: DisabledMsps,
}

impl Gate {
    /// Lets the message through, or says why the connection ends.
    async fn admit(&mut self, message: &Result<Message, axum::Error>) -> Result<(), Goodbye> {
        let text = match message {
            Ok(Message::Text(text)) => text.as_str(),
            // async-graphql reads binary messages as JSON too.
            Ok(Message::Binary(bytes)) => std::str::from_utf8(bytes).unwrap_or_default(),
            Err(error) if too_big(error) => {
                return Err((
                    close::MESSAGE_TOO_BIG,
                    "Message too big: at most 64 KiB per message",
                ));
            }
            // Other errors end the connection in async-graphql; pings are answered by the
            // socket.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_)) | Err(_) => return Ok(()),
        };
        if !self.connection.limits.message(&self.connection.caller) {
            return Err((
                close::TRY_AGAIN_LATER,
                "Too many messages: slow down (CONSENTRY_WS_MESSAGES_PER_MINUTE)",
            ));
        }
        let Ok(parsed) = serde_json::from_str::<serde_json::Value>(text) else {
            // async-graphql closes with the protocol's code.
            return Ok(());
        };
        let id = parsed
            .get("id")
            .and_then(|i| i.as_str())
            .unwrap_or_default();
        match parsed.get("type").and_then(|t| t.as_str()) {
            Some("subscribe" | "start") => {
                // Checklist 99: a new operation is refused at once once the MSP is disabled.
                if self.connection.expires_at <= Utc::now() {
                    return Err(TOKEN_EXPIRED);
                }
                let enabled = (self.disabled_msps)
                    .still_enabled(&self.db, self.connection.msp_id())
                    .await;
                if !enabled {
                    return Err(MSP_DISABLED);
                }
                let subscription = subscribes(parsed.get("payload"));
                let mut open =
                    (self.connection.operations.lock()).unwrap_or_else(|p| p.into_inner());
                open.start(id, subscription)?;
            }
            Some("complete" | "stop") => {
                let mut open =
                    (self.connection.operations.lock()).unwrap_or_else(|p| p.into_inner());
                open.end(id);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Whether reading failed on a message over `MAX_MESSAGE_BYTES` (checklist 73).
fn too_big(error: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<Error>())
        .is_some_and(|error| matches!(error, Error::Capacity(_)))
}

/// Whether a `subscribe` (or legacy `start`) payload runs a subscription: the operation it
/// names, or its document's only one. A document that does not parse runs nothing.
fn subscribes(payload: Option<&serde_json::Value>) -> bool {
    let Some(query) = payload
        .and_then(|p| p.get("query"))
        .and_then(|q| q.as_str())
    else {
        return false;
    };
    let name = payload
        .and_then(|p| p.get("operationName"))
        .and_then(|n| n.as_str());
    async_graphql::parser::parse_query(query)
        .is_ok_and(|document| crate::graphql::compact::subscribes(&document, name))
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;
type Stream = futures_util::stream::SplitStream<WebSocket>;

/// Reads `connection_init` and authenticates its token; returns the message (to hand to
/// async-graphql) and the caller, or closes the socket with the protocol's code.
async fn handshake(
    state: &AppState,
    sink: &mut Sink,
    stream: &mut Stream,
) -> Option<(String, Arc<crate::auth::Viewer>)> {
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
        Ok(viewer) => Some((init, Arc::new(viewer))),
        Err(error) => {
            close_with(sink, close::FORBIDDEN, &format!("Forbidden: {error}")).await;
            None
        }
    }
}

fn origin_allowed(state: &AppState, origin: &HeaderValue) -> bool {
    let own = state.settings.own_origins();
    own.iter().any(|o| o.as_bytes() == origin.as_bytes())
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
