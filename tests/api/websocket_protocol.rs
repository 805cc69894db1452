//! The `graphql-transport-ws` protocol's own rules (enisdenjo/graphql-ws `PROTOCOL.md`), as a
//! real client meets them: a second `connection_init` is refused with 4429, a `subscribe`
//! before the acknowledgement with 4401, and a subscription id already in use with 4409.

use std::time::Duration;

use consentry_tests::{Backend, TestApp, both_backends};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const TILES: &str = "subscription { graphApiTileChanged { id status } }";

async fn open(app: &TestApp) -> Ws {
    let mut request = format!("ws://127.0.0.1:{}/graphql/ws", app.port)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn send(ws: &mut Ws, message: serde_json::Value) {
    ws.send(Message::text(message.to_string())).await.unwrap();
}

fn init(app: &TestApp) -> serde_json::Value {
    let token = app.token("msp-a", &["admin"]);
    json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })
}

fn subscribe(id: &str) -> serde_json::Value {
    json!({ "id": id, "type": "subscribe", "payload": { "query": TILES } })
}

/// The close code the server ends the socket with, skipping any other message; panics after
/// 15 s or when the socket ends without a close frame.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("the server closes the socket within 15 s");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                panic!("the socket ended without a close code")
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// Reads until `connection_ack`.
async fn acknowledged(ws: &mut Ws) {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("an answer within 15 s")
            .expect("the socket stays open")
            .unwrap();
        if let Message::Text(text) = message {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "connection_ack" {
                return;
            }
        }
    }
}

/// Checklist 69: a second `connection_init` on an acknowledged socket closes it with 4429
/// ("Too many initialisation requests").
#[both_backends]
async fn checklist_69_a_second_connection_init_closes_with_4429(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app(backend).await else {
        return;
    };
    app.register_msp("msp-a").await;
    let mut ws = open(&app).await;
    send(&mut ws, init(&app)).await;
    acknowledged(&mut ws).await;
    send(&mut ws, init(&app)).await;
    assert_eq!(close_code(&mut ws).await, 4429);
}

/// Checklist 69: a `subscribe` before `connection_ack` closes the socket with 4401
/// ("Unauthorized"), and nothing is delivered.
#[both_backends]
async fn checklist_69_a_subscribe_before_the_ack_closes_with_4401(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app(backend).await else {
        return;
    };
    let mut ws = open(&app).await;
    send(&mut ws, subscribe("1")).await;
    assert_eq!(close_code(&mut ws).await, 4401);
}

/// Checklist 70: a `subscribe` whose id is already in use closes the socket with 4409
/// ("Subscriber for <id> already exists"): two streams never share an id.
#[both_backends]
async fn checklist_70_a_duplicate_subscription_id_closes_with_4409(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app(backend).await else {
        return;
    };
    app.register_msp("msp-a").await;
    let mut ws = open(&app).await;
    send(&mut ws, init(&app)).await;
    acknowledged(&mut ws).await;
    send(&mut ws, subscribe("1")).await;
    send(&mut ws, subscribe("1")).await;
    assert_eq!(close_code(&mut ws).await, 4409);
}
