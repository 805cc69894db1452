//! Subscribers: `graphql-transport-ws` clients that record when each event arrives.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{
        Message, client::IntoClientRequest, http::HeaderValue, protocol::WebSocketConfig,
    },
};

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Small client buffers: ten thousand subscribers in this process must not cost gigabytes.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// A plain WebSocket to `url` (with a subprotocol, if given).
pub(crate) async fn open(url: &str, protocol: Option<&str>) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_str(protocol)?);
    }
    let (socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config()), true).await?;
    Ok(socket)
}

/// A subscription on Consentry's `/graphql/ws`, past `connection_ack` and subscribed.
pub(crate) async fn subscribe(
    port: u16,
    token: &str,
    query: &str,
    variables: Value,
) -> anyhow::Result<Socket> {
    let url = format!("ws://127.0.0.1:{port}/graphql/ws");
    let mut socket = open(&url, Some("graphql-transport-ws")).await?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket.send(Message::text(init.to_string())).await?;
    let ack = tokio::time::timeout(Duration::from_secs(30), socket.next())
        .await
        .context("no connection_ack within 30 s")?;
    match ack {
        Some(Ok(Message::Text(text))) if text.contains("connection_ack") => {}
        other => bail!("expected connection_ack, got {other:?}"),
    }
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } });
    socket.send(Message::text(subscribe.to_string())).await?;
    Ok(socket)
}

/// One event as a subscriber saw it.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub(crate) subscriber: usize,
    pub(crate) at: Instant,
    /// The protocol message, unparsed: parsing ten thousand of them while others are still
    /// arriving would delay this process's reads and so inflate later arrival times.
    text: String,
}

impl Arrival {
    /// `version` of the pushed object; `None` when the message was not a `next` carrying one
    /// (an error, e.g. `RESYNC`).
    pub(crate) fn version(&self) -> Option<i64> {
        let parsed: Value = serde_json::from_str(&self.text).ok()?;
        if parsed["type"] != "next" {
            return None;
        }
        parsed["payload"]["data"]
            .as_object()
            .and_then(|fields| fields.values().next())
            .and_then(|object| object["version"].as_i64())
    }
}

/// Reads `socket` until it closes, reporting every message but pings and pongs on
/// `arrivals` with the time it arrived, and answering pings.
pub(crate) fn listen(
    subscriber: usize,
    socket: Socket,
    arrivals: mpsc::UnboundedSender<Arrival>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut sink, mut stream) = socket.split();
        while let Some(Ok(message)) = stream.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let at = Instant::now();
            if text.contains("\"type\":\"ping\"") {
                let _ = sink
                    .send(Message::text(json!({ "type": "pong" }).to_string()))
                    .await;
                continue;
            }
            if text.contains("\"type\":\"pong\"") {
                continue;
            }
            let arrival = Arrival {
                subscriber,
                at,
                text: text.to_string(),
            };
            if arrivals.send(arrival).is_err() {
                return;
            }
        }
    })
}
