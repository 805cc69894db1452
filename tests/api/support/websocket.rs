//! A `graphql-transport-ws` client for the tests: connect, subscribe, read messages.

use consentry_tests::{Caller, serde_json::Value};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) async fn open_port(
    port: u16,
    origin: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://127.0.0.1:{port}/graphql/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

pub(crate) async fn connect_port(port: u16, token: &str) -> Ws {
    let mut ws = open_port(port, None).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }).to_string(),
    ))
    .await
    .unwrap();
    let ack = next_message(&mut ws)
        .await
        .expect("an answer to connection_init");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws
}

pub(crate) async fn subscribe(ws: &mut Ws, id: &str, query: &str, variables: Value) {
    ws.send(Message::text(
        json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }).to_string(),
    ))
    .await
    .unwrap();
}

/// The next protocol message, or `None` when the socket closed; panics after 15 s.
pub(crate) async fn next_message(ws: &mut Ws) -> Option<Value> {
    let deadline = Duration::from_secs(15);
    loop {
        let message = tokio::time::timeout(deadline, ws.next())
            .await
            .expect("a message within 15 s");
        match message {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if matches!(value["type"].as_str(), Some("ping" | "pong" | "ka")) {
                    continue;
                }
                return Some(value);
            }
            Some(Ok(_)) => continue,
        }
    }
}

pub(crate) fn token(caller: &Caller<'_>) -> String {
    caller.token.clone().unwrap()
}
