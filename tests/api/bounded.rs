//! Checklist 97: every operation is bounded before it starts, over HTTP and the WebSocket.
//! Introspection's cycles are refused at any depth while the standard introspection documents
//! pass, a fragment bomb is refused before it is expanded, every answer has a size budget past
//! which it is refused whole, and the query timeout stops an answer that never waits.

use std::time::{Duration, Instant};

use crate::support::websocket::{Ws, connect_port, subscribe};
use consentry_tests::{Backend, Caller, TestApp, both_backends, spawn_app_with};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The standard introspection documents, exactly as each tool sends them
/// (`fixtures/introspection/README.md` says where each comes from).
const STANDARD: [(&str, &str); 7] = [
    (
        "GraphiQL 3.8.3",
        include_str!("fixtures/introspection/graphiql-3.8.3.graphql"),
    ),
    (
        "graphql-js 16.15.0, every option",
        include_str!("fixtures/introspection/graphql-js-16.15.0-all-options.graphql"),
    ),
    (
        "graphql-js 17.1.0, every option",
        include_str!("fixtures/introspection/graphql-js-17.1.0-all-options.graphql"),
    ),
    (
        "Apollo Sandbox",
        include_str!("fixtures/introspection/apollo-sandbox.graphql"),
    ),
    (
        "Apollo Sandbox, without deprecated arguments",
        include_str!("fixtures/introspection/apollo-sandbox-without-deprecated-args.graphql"),
    ),
    (
        "Altair 8.5.7",
        include_str!("fixtures/introspection/altair-8.5.7.graphql"),
    ),
    (
        "Altair 8.5.7, every option",
        include_str!("fixtures/introspection/altair-8.5.7-all-options.graphql"),
    ),
];

/// graphql-js's full introspection with its `__schema` asked `copies` times under aliases: an
/// operation within every limit of its shape, whose answer grows with `copies` (about 70 KB
/// each) and which never waits for anything.
pub(crate) fn aliased_introspection(copies: usize) -> String {
    let document = STANDARD[1].1;
    let open = document.find("__schema {").unwrap();
    let body_start = open + "__schema {".len();
    let mut depth = 1;
    let body_end = document[body_start..]
        .char_indices()
        .find_map(|(i, c)| {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(body_start + i)
        })
        .unwrap();
    let body = &document[body_start..body_end];
    let copies: String = (0..copies)
        .map(|i| format!("s{i}: __schema {{{body}}}\n"))
        .collect();
    let fragments = &document[document.find("fragment FullType").unwrap()..];
    format!("query IntrospectionQuery {{\n{copies}}}\n{fragments}")
}

/// `interfaces { possibleTypes { interfaces { … } } }`, `turns` lists deep, under `types`.
fn interface_cycle(turns: usize) -> String {
    let mut selection = "name".to_owned();
    for turn in 0..turns {
        let list = if turn % 2 == 0 {
            "possibleTypes"
        } else {
            "interfaces"
        };
        selection = format!("{list} {{ name {selection} }}");
    }
    format!("{{ __schema {{ types {{ name {selection} }} }} }}")
}

/// `fields { type { ofType { fields { … } } } }`, `turns` times, under `__type`.
fn field_cycle(turns: usize) -> String {
    let mut selection = "name".to_owned();
    for _ in 0..turns {
        selection = format!("fields {{ name type {{ name ofType {{ name {selection} }} }} }}");
    }
    format!("{{ __type(name: \"Query\") {{ {selection} }} }}")
}

/// POSTs `body` with the caller's token; status and JSON answer.
async fn post(caller: &Caller<'_>, body: Value, accept: &str) -> (StatusCode, Value, usize) {
    let response = caller
        .app
        .http
        .post(caller.app.url("/graphql"))
        .header("content-type", "application/json")
        .header("accept", accept)
        .bearer_auth(caller.token.as_deref().unwrap())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let answer = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, answer, text.len())
}

/// The answer to operation `id` on the socket: its `next` payload, or its `error` payload as
/// `{"errors": …}`; panics if the socket closes first.
async fn answer(ws: &mut Ws, id: &str) -> Value {
    answers(ws, &[id]).await.remove(0)
}

/// The answers to operations `ids`, in that order, whichever arrives first.
async fn answers(ws: &mut Ws, ids: &[&str]) -> Vec<Value> {
    let mut answered: Vec<Option<Value>> = vec![None; ids.len()];
    while answered.iter().any(Option::is_none) {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no answer to {ids:?} within 30 s: {answered:?}"));
        let Some(Ok(Message::Text(text))) = message else {
            panic!("the socket closed instead of answering {ids:?}: {message:?}");
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        let Some(i) = ids.iter().position(|id| message["id"] == *id) else {
            continue;
        };
        let payload = match message["type"].as_str() {
            Some("next") => message["payload"].clone(),
            Some("error") => json!({ "errors": message["payload"] }),
            _ => continue,
        };
        answered[i].get_or_insert(payload);
    }
    answered.into_iter().flatten().collect()
}

/// Asserts `answer` is the refusal of one limit (no `data`, one error), and returns its message.
fn refused(answer: &Value, code: &str, limit: &str) -> String {
    assert!(answer.get("data").is_none_or(Value::is_null), "{answer}");
    let errors = answer["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(errors.len(), 1, "{answer}");
    assert_eq!(errors[0]["extensions"]["code"], code, "{answer}");
    assert_eq!(errors[0]["extensions"]["limit"], limit, "{answer}");
    errors[0]["message"].as_str().unwrap().to_owned()
}

/// Waits until `n` subscriptions are live on `app` (its open-subscriptions gauge).
async fn live(app: &TestApp, n: usize) {
    let line = format!("consentry_graphql_subscriptions_active {n}");
    consentry_tests::eventually(
        Duration::from_secs(10),
        "the subscriptions to be live",
        || async {
            let text = app
                .http
                .get(app.url("/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.lines().any(|l| l == line).then_some(())
        },
    )
    .await;
}

fn token(caller: &Caller<'_>) -> String {
    caller.token.clone().unwrap()
}

#[both_backends]
async fn checklist_97_introspection_cycles_are_refused_before_they_run(app: TestApp) {
    let caller = app.caller("msp-a", &["viewer"]).await;
    // Twelve lists answered gigabytes before the process was killed; every length with a
    // list inside itself is now refused at once, without an answer.
    for turns in 3..=24 {
        let started = Instant::now();
        let response = caller.run(&interface_cycle(turns), json!({})).await;
        let message = refused(
            &response.body,
            "GRAPHQL_VALIDATION_FAILED",
            "INTROSPECTION_CYCLE",
        );
        assert!(message.contains("possibleTypes"), "{message}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{turns} turns took {:?}",
            started.elapsed()
        );
    }
    for turns in 2..=8 {
        let response = caller.run(&field_cycle(turns), json!({})).await;
        refused(
            &response.body,
            "GRAPHQL_VALIDATION_FAILED",
            "INTROSPECTION_CYCLE",
        );
    }
    // The same cycle through fragments, and an alias.
    let hidden = "{ __schema { types { ...T } } }
        fragment T on __Type { fields { type { ...U } } }
        fragment U on __Type { ofType { again: fields { name } } }";
    refused(
        &caller.run(hidden, json!({})).await.body,
        "GRAPHQL_VALIDATION_FAILED",
        "INTROSPECTION_CYCLE",
    );
    // No cycle, but four lists deep.
    let four = "{ __schema { types { possibleTypes { fields { args { name } } } } } }";
    refused(
        &caller.run(four, json!({})).await.body,
        "GRAPHQL_VALIDATION_FAILED",
        "INTROSPECTION_LISTS",
    );
    // `types → interfaces → possibleTypes` has no list inside itself: answered.
    let no_cycle = caller.run(&interface_cycle(2), json!({})).await;
    assert!(
        no_cycle.data()["__schema"]["types"]
            .as_array()
            .unwrap()
            .len()
            > 10
    );
    // Over the WebSocket the same.
    let mut ws = connect_port(app.port, &token(&caller)).await;
    subscribe(&mut ws, "c", &interface_cycle(12), json!({})).await;
    refused(
        &answer(&mut ws, "c").await,
        "GRAPHQL_VALIDATION_FAILED",
        "INTROSPECTION_CYCLE",
    );
    subscribe(&mut ws, "f", &field_cycle(6), json!({})).await;
    refused(
        &answer(&mut ws, "f").await,
        "GRAPHQL_VALIDATION_FAILED",
        "INTROSPECTION_CYCLE",
    );
}

#[both_backends]
async fn checklist_97_the_standard_introspection_documents_pass(app: TestApp) {
    let caller = app.caller("msp-a", &["viewer"]).await;
    let mut ws = connect_port(app.port, &token(&caller)).await;
    for (i, (tool, document)) in STANDARD.iter().enumerate() {
        let body = json!({ "query": document, "operationName": "IntrospectionQuery" });
        let (status, http, size) = post(&caller, body, "application/graphql-response+json").await;
        assert_eq!(status, StatusCode::OK, "{tool}: {http}");
        assert!(http.get("errors").is_none(), "{tool}: {http}");
        let types = http["data"]["__schema"]["types"].as_array().unwrap();
        assert!(types.iter().any(|t| t["name"] == "Client"), "{tool}");
        assert!(size > 10_000, "{tool}: {size} bytes");
        // Over the WebSocket, the same answer.
        let id = format!("i{i}");
        subscribe(&mut ws, &id, document, json!({})).await;
        let over_ws = answer(&mut ws, &id).await;
        assert_eq!(over_ws["data"], http["data"], "{tool} over the WebSocket");
    }
    // Every option asked for is answered.
    let all = caller.run(STANDARD[1].1, json!({})).await;
    let schema = &all.data()["__schema"];
    assert!(
        schema["directives"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["isRepeatable"].is_boolean())
    );
    let client = schema["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Client")
        .unwrap();
    assert!(
        client["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "auditLog")
    );
}

#[both_backends]
async fn checklist_97_a_fragment_bomb_is_refused_before_it_runs(app: TestApp) {
    // Each fragment spreads the next twice: 2^n fields from n short lines. Expanded where
    // each is spread, 22 of them kept a core busy for 16 s before; 30 would take hours.
    let caller = app.caller("msp-a", &["viewer"]).await;
    for (n, limit) in [(22, "COST"), (30, "COST"), (40, "NESTING")] {
        let fragments: String = (0..n)
            .map(|i| format!("fragment F{i} on Query {{ ...F{} ...F{} }}\n", i + 1, i + 1))
            .collect();
        let query = format!("{{ ...F0 }}\n{fragments}fragment F{n} on Query {{ __typename }}");
        let started = Instant::now();
        let response = caller.run(&query, json!({})).await;
        refused(&response.body, "GRAPHQL_VALIDATION_FAILED", limit);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{n}: {:?}",
            started.elapsed()
        );
    }
    // Fragments spread many times, within the limits, still run.
    let fragments: String = (0..8)
        .map(|i| format!("fragment F{i} on Query {{ ...F{} ...F{} }}\n", i + 1, i + 1))
        .collect();
    let query = format!("{{ ...F0 }}\n{fragments}fragment F8 on Query {{ viewer {{ subject }} }}");
    assert_eq!(
        caller.run(&query, json!({})).await.data()["viewer"]["subject"],
        "user@msp.example"
    );
}

/// Tests whose server needs its own settings.
mod configured {
    use super::*;

    /// A budget of 16 KiB: a larger answer is refused whole (no `data` at all), whether it is
    /// introspection or data; smaller ones are answered in full.
    #[both_backends]
    async fn checklist_97_an_answer_over_its_budget_is_refused_whole_over_http(backend: Backend) {
        let Some(app) = spawn_app_with(backend, |s| s.max_response_bytes = 16 * 1024).await else {
            return;
        };
        let caller = app.caller("msp-a", &["admin"]).await;
        // Introspection: the full schema is about 70 KB.
        for accept in ["application/json", "application/graphql-response+json"] {
            let body = json!({ "query": STANDARD[0].1 });
            let (status, answer, size) = post(&caller, body, accept).await;
            let message = refused(&answer, "RESPONSE_TOO_LARGE", "RESPONSE_SIZE");
            assert!(message.contains("16384 bytes"), "{message}");
            assert!(size < 1024, "{size}");
            let expected = if accept == "application/json" {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            assert_eq!(status, expected, "{accept}");
        }
        // Data: 40 clients with 150-character names, each name asked for under 4 aliases.
        for i in 0..40 {
            caller
                .create_client(&format!("{i:03}{}", "x".repeat(147)))
                .await;
        }
        let names = |aliases: usize| {
            let fields: String = (0..aliases).map(|a| format!("n{a}: name ")).collect();
            format!("{{ clients(first: 100) {{ totalCount nodes {{ id {fields} }} }} }}")
        };
        let (_, fits, size) = post(&caller, json!({ "query": names(1) }), "application/json").await;
        assert_eq!(
            fits["data"]["clients"]["nodes"].as_array().unwrap().len(),
            40
        );
        assert!(size <= 16 * 1024, "{size}");
        let (_, too_large, _) =
            post(&caller, json!({ "query": names(4) }), "application/json").await;
        refused(&too_large, "RESPONSE_TOO_LARGE", "RESPONSE_SIZE");
        // The server serves on.
        assert_eq!(
            caller
                .run("{ clients { totalCount } }", json!({}))
                .await
                .data()["clients"]["totalCount"],
            40
        );
    }

    /// Over the WebSocket, answers are also held to the socket's own 192 KiB (a larger message
    /// broke the connection), and each subscription event to the budget on its own.
    #[both_backends]
    async fn checklist_97_an_answer_over_its_budget_is_refused_whole_over_the_websocket(
        backend: Backend,
    ) {
        let Some(app) = consentry_tests::spawn_app(backend).await else {
            return;
        };
        let caller = app.caller("msp-a", &["viewer"]).await;
        let four = aliased_introspection(4);
        // Over HTTP (2 MiB) it is answered.
        let (_, over_http, size) =
            post(&caller, json!({ "query": four }), "application/json").await;
        assert!(
            over_http.get("errors").is_none() && size > 200 * 1024,
            "{size}"
        );
        // Over the socket it is refused, and the socket serves on.
        let mut ws = connect_port(app.port, &token(&caller)).await;
        subscribe(&mut ws, "big", &four, json!({})).await;
        let message = refused(
            &answer(&mut ws, "big").await,
            "RESPONSE_TOO_LARGE",
            "RESPONSE_SIZE",
        );
        assert!(
            message.contains(&format!("{} bytes", api::MAX_RESPONSE_BYTES)),
            "{message}"
        );
        subscribe(&mut ws, "one", &aliased_introspection(1), json!({})).await;
        assert!(answer(&mut ws, "one").await["data"]["s0"]["types"].is_array());
        drop(ws);

        // Each event of a subscription, with a budget of 1 KiB.
        let tenant = crate::support::flows::healthy("contoso.onmicrosoft.com");
        let Some(world) = crate::support::flows::world(backend, vec![tenant.clone()], |s| {
            s.max_response_bytes = 1024;
        })
        .await
        else {
            return;
        };
        let admin = world.app.caller("msp-a", &["admin"]).await;
        let client =
            crate::support::flows::new_client(&admin, "Contoso", Some(&tenant.domain), None).await;
        let mut ws = connect_port(world.app.port, &token(&admin)).await;
        let ids: String = (0..30).map(|i| format!("i{i}: id ")).collect();
        let large = format!(
            "subscription($id: ID) {{ graphApiTileChanged(clientId: $id) {{ {ids} status }} }}"
        );
        let small = "subscription($id: ID) { graphApiTileChanged(clientId: $id) { id status } }";
        subscribe(&mut ws, "large", &large, json!({ "id": client })).await;
        subscribe(&mut ws, "small", small, json!({ "id": client })).await;
        live(&world.app, 2).await;
        let link = admin
            .run(
                "mutation($id: ID!) { authoriseGraphApi(clientId: $id) { expiresAt } }",
                json!({ "id": client }),
            )
            .await;
        link.data();
        let [large, small] =
            <[Value; 2]>::try_from(answers(&mut ws, &["large", "small"]).await).unwrap();
        refused(&large, "RESPONSE_TOO_LARGE", "RESPONSE_SIZE");
        assert_eq!(
            small["data"]["graphApiTileChanged"]["status"], "AWAITING_CONSENT",
            "{small}"
        );
    }

    /// An answer that never waits (introspection, resolved in memory) used to run to its end in
    /// one poll, long past the timeout, and answer in full. It now yields every few fields, and
    /// the timeout stops it, over HTTP and the WebSocket.
    #[both_backends]
    async fn checklist_97_the_query_timeout_stops_an_answer_that_never_waits(backend: Backend) {
        let Some(app) = spawn_app_with(backend, |s| {
            s.query_timeout = Duration::from_millis(10);
            s.max_response_bytes = 64 * 1024 * 1024;
        })
        .await
        else {
            return;
        };
        let caller = app.caller("msp-a", &["viewer"]).await;
        // 31 copies of the schema: about 2 MB, many times the timeout to resolve (0.1 s in a
        // release build, more in a test's).
        let (status, stopped, _) = post(
            &caller,
            json!({ "query": aliased_introspection(31) }),
            "application/json",
        )
        .await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{stopped}");
        refused(&stopped, "TIMEOUT", "QUERY_TIMEOUT");
        // Over the socket, 2 copies (within its 192 KiB of answer).
        let mut ws = connect_port(app.port, &token(&caller)).await;
        subscribe(&mut ws, "long", &aliased_introspection(2), json!({})).await;
        refused(&answer(&mut ws, "long").await, "TIMEOUT", "QUERY_TIMEOUT");
        // The server serves on: a short query is answered (retried, should the machine be so
        // busy that even it takes 10 ms).
        consentry_tests::eventually(
            Duration::from_secs(10),
            "a short query to be answered",
            || async {
                let answer = caller.run("{ viewer { subject } }", json!({})).await;
                (answer.body["data"]["viewer"]["subject"] == "user@msp.example").then_some(())
            },
        )
        .await;
    }
}
