//! Answers keep the query's field order (GraphQL spec 7.2.2) and give a failed field `null`
//! beside its error (6.4.4), the same over `POST` and `GET /graphql` and over the WebSocket.

use std::time::Duration;

use crate::support::websocket::{connect_port, subscribe};
use consentry_tests::{Caller, TestApp, both_backends};
use futures_util::StreamExt;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Every member of a JSON text by its path (`data.clients.edges.0.node`), in the order the
/// text writes them: a `serde_json::Value` would sort them.
fn paths(text: &str) -> Vec<String> {
    struct Members<'a> {
        prefix: String,
        out: &'a mut Vec<String>,
    }

    impl Members<'_> {
        fn below(&mut self, name: &str) -> Members<'_> {
            let prefix = if self.prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{}.{name}", self.prefix)
            };
            Members {
                prefix,
                out: self.out,
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Members<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Members<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                let below = self.below(&key);
                below.out.push(below.prefix.clone());
                map.next_value_seed(below)?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
            let mut index = 0usize;
            while seq
                .next_element_seed(self.below(&index.to_string()))?
                .is_some()
            {
                index += 1;
            }
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }

    let mut out = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    Members {
        prefix: String::new(),
        out: &mut out,
    }
    .deserialize(&mut deserializer)
    .unwrap();
    out
}

/// One answer as a transport wrote it.
struct Answer {
    transport: &'static str,
    /// The members below `data`, in the order written.
    order: Vec<String>,
    body: Value,
}

/// The same operation over `POST /graphql`, `GET /graphql` and the WebSocket.
async fn over_every_transport(app: &TestApp, caller: &Caller<'_>, query: &str) -> Vec<Answer> {
    let token = caller.token.clone().unwrap();
    let answer = |transport, text: String, data: &str| Answer {
        transport,
        order: paths(&text)
            .into_iter()
            .filter_map(|path| path.strip_prefix(data).map(str::to_owned))
            .collect(),
        body: serde_json::from_str(&text).unwrap(),
    };
    let post = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(&token)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap();
    let post = answer("POST", post.text().await.unwrap(), "data.");
    let get = app
        .http
        .get(app.url("/graphql"))
        .bearer_auth(&token)
        .query(&[("query", query)])
        .send()
        .await
        .unwrap();
    let get = answer("GET", get.text().await.unwrap(), "data.");

    let mut ws = connect_port(app.port, &token).await;
    subscribe(&mut ws, "1", query, json!({})).await;
    let text = loop {
        let message = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("an answer within 15 s")
            .expect("the socket stays open")
            .unwrap();
        if let Message::Text(text) = message
            && text.contains(r#""type":"next""#)
        {
            break text.to_string();
        }
    };
    let mut ws = answer("WebSocket", text, "payload.data.");
    ws.body = ws.body["payload"].take();
    vec![post, get, ws]
}

#[both_backends]
async fn fields_come_in_query_order_over_post_get_and_the_websocket(app: TestApp) {
    let caller = app.caller("msp-a", &["admin"]).await;
    caller.create_client("Contoso").await;
    // Sorted, `clients` would come before `viewer` and `edges` before `totalCount`;
    // finished first, `viewer` (no database) would come first and `edges` before
    // `totalCount` (which counts in the database).
    for (query, expected) in [
        (
            "{ viewer { roles msp { id } } clients(first: 1) { totalCount edges { node { name id } } } }",
            vec![
                "viewer",
                "viewer.roles",
                "viewer.msp",
                "viewer.msp.id",
                "clients",
                "clients.totalCount",
                "clients.edges",
                "clients.edges.0.node",
                "clients.edges.0.node.name",
                "clients.edges.0.node.id",
            ],
        ),
        (
            "{ clients(first: 1) { totalCount edges { node { name id } } } viewer { subject roles msp { id } } }",
            vec![
                "clients",
                "clients.totalCount",
                "clients.edges",
                "clients.edges.0.node",
                "clients.edges.0.node.name",
                "clients.edges.0.node.id",
                "viewer",
                "viewer.subject",
                "viewer.roles",
                "viewer.msp",
                "viewer.msp.id",
            ],
        ),
    ] {
        for answer in over_every_transport(&app, &caller, query).await {
            assert_eq!(
                answer.order, expected,
                "{}: {}",
                answer.transport, answer.body
            );
        }
    }
}

#[both_backends]
async fn aliases_and_fragments_come_in_query_order(app: TestApp) {
    let caller = app.caller("msp-a", &["viewer"]).await;
    let query = "query { zulu: clients(first: 1) { totalCount } yankee: viewer { subject } ...Who \
                 xray: delegatedPermissions { scope } } fragment Who on Query { yankee: viewer { roles } }";
    let mut expected = vec![
        "zulu",
        "zulu.totalCount",
        "yankee",
        "yankee.subject",
        "yankee.roles",
        "xray",
    ];
    let scopes: Vec<String> = (0..4).map(|i| format!("xray.{i}.scope")).collect();
    expected.extend(scopes.iter().map(String::as_str));
    for answer in over_every_transport(&app, &caller, query).await {
        assert_eq!(
            answer.order, expected,
            "{}: {}",
            answer.transport, answer.body
        );
    }
}

#[both_backends]
async fn a_nullable_field_that_fails_reads_null_beside_its_error(app: TestApp) {
    // `client` is nullable; another MSP's client is not this caller's to read.
    let other = app.caller("msp-b", &["admin"]).await;
    let theirs = other.create_client("Fabrikam").await;
    let caller = app.caller("msp-a", &["viewer"]).await;
    let query = format!(
        r#"{{ viewer {{ subject }} client(id: "{theirs}") {{ name }} delegatedPermissions {{ scope }} }}"#
    );
    for answer in over_every_transport(&app, &caller, &query).await {
        let (transport, body) = (answer.transport, &answer.body);
        assert_eq!(
            answer.order[..3],
            ["viewer", "viewer.subject", "client"],
            "{transport}: {body}"
        );
        assert_eq!(body["data"]["client"], Value::Null, "{transport}: {body}");
        assert_eq!(
            body["data"]["viewer"]["subject"], "user@msp.example",
            "{transport}: {body}"
        );
        assert_eq!(
            body["data"]["delegatedPermissions"]
                .as_array()
                .map(Vec::len),
            Some(4),
            "{transport}: {body}"
        );
        assert_eq!(
            body["errors"].as_array().map(Vec::len),
            Some(1),
            "{transport}: {body}"
        );
        assert_eq!(
            body["errors"][0]["path"],
            json!(["client"]),
            "{transport}: {body}"
        );
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{transport}: {body}"
        );
    }
}

#[both_backends]
async fn a_failed_non_null_field_makes_its_nearest_nullable_parent_null(app: TestApp) {
    let caller = app.caller("msp-a", &["admin"]).await;
    let mine = caller.create_client("Contoso").await;
    // `delegatedConsents` cannot be null and refuses `first: 0`: `client` (nullable)
    // takes the null; `viewer` beside it stays.
    let query = format!(
        r#"{{ client(id: "{mine}") {{ name delegatedConsents(first: 0) {{ status }} }} viewer {{ subject }} }}"#
    );
    for answer in over_every_transport(&app, &caller, &query).await {
        let (transport, body) = (answer.transport, &answer.body);
        assert_eq!(
            body["data"],
            json!({ "client": null, "viewer": { "subject": "user@msp.example" } }),
            "{transport}: {body}"
        );
        assert_eq!(
            body["errors"][0]["path"],
            json!(["client", "delegatedConsents"]),
            "{transport}: {body}"
        );
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{transport}: {body}"
        );
    }
    // Nothing nullable above it: `data` itself is null, and over HTTP that is still a
    // 200 (the operation ran), whatever the media type.
    let query =
        "{ clients { nodes { name delegatedConsents(first: 0) { status } } } viewer { subject } }";
    for answer in over_every_transport(&app, &caller, query).await {
        let (transport, body) = (answer.transport, &answer.body);
        assert_eq!(body["data"], Value::Null, "{transport}: {body}");
        assert!(
            body.as_object().unwrap().contains_key("data"),
            "{transport}: {body}"
        );
        assert_eq!(
            body["errors"][0]["path"],
            json!(["clients", "nodes", 0, "delegatedConsents"]),
            "{transport}: {body}"
        );
    }
    let response = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(caller.token.as_deref().unwrap())
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
}
