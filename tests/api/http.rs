//! GraphQL over HTTP and WebSocket, GraphiQL, health and metrics.

use consentry_tests::{TestApp, both_backends};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

async fn post_raw(
    app: &TestApp,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = app.http.post(app.url("/graphql")).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

#[both_backends]
async fn health_and_readiness_answer(app: TestApp) {
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready = json_of(ready).await;
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(
        ready["checks"]["events"], "receiving",
        "events reach this instance"
    );
}

#[both_backends]
async fn readiness_fails_when_the_database_is_unreachable(app: TestApp) {
    let caller = app.caller("msp-a", &["admin"]).await;
    // Closing the server's own pool leaves it exactly as a vanished database would.
    app.server_db.clone().close().await.unwrap();
    let response = caller
        .run("{ clients { edges { node { name } } } }", json!({}))
        .await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.error_code(), "UNAVAILABLE");
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json_of(ready).await["checks"]["database"], "unreachable");
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        health.status(),
        StatusCode::OK,
        "liveness does not depend on the database"
    );
}

/// Checklist 61.
#[both_backends]
async fn get_runs_queries_but_never_mutations(app: TestApp) {
    // Checklist 61.
    let caller = app.caller("msp-a", &["admin"]).await;
    let token = caller.token.clone().unwrap();
    let query = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", "{ viewer { subject } }")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), StatusCode::OK);
    assert_eq!(
        json_of(query).await["data"]["viewer"]["subject"],
        "user@msp.example"
    );

    let mutation = app
        .http
        .get(app.url("/graphql"))
        .query(&[(
            "query",
            "mutation { createClient(input: { name: \"Via GET\" }) { id } }",
        )])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(mutation.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(mutation.headers()["allow"], "POST");
    assert_eq!(
        json_of(mutation).await["errors"][0]["extensions"]["code"],
        "METHOD_NOT_ALLOWED"
    );
    let list = caller
        .run("{ clients { edges { node { name } } } }", json!({}))
        .await;
    assert_eq!(
        list.data()["clients"]["edges"],
        json!([]),
        "the GET mutation had no effect"
    );
}

/// Checklist 62–63.
#[both_backends]
async fn only_json_bodies_are_accepted(app: TestApp) {
    // Checklist 62–63: forms, text/plain, multipart and missing types are refused (CSRF).
    let body = r#"{"query":"{ __typename }"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let response = post_raw(&app, content_type, body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(
            json_of(response).await["errors"][0]["extensions"]["code"],
            "UNSUPPORTED_MEDIA_TYPE"
        );
    }
    let ok = post_raw(&app, Some("application/json; charset=utf-8"), body).await;
    assert_eq!(ok.status(), StatusCode::OK);
}

/// Checklist 55, 57.
#[both_backends]
async fn malformed_batched_and_oversized_bodies_are_refused(app: TestApp) {
    // Checklist 55, 57.
    let response = post_raw(&app, Some("application/json"), "{not json").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = post_raw(
        &app,
        Some("application/json"),
        r#"[{"query":"{ __typename }"},{"query":"{ __typename }"}]"#,
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        json_of(response).await["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("batched")
    );
    let huge = format!(
        r#"{{"query":"{{ __typename }}","variables":{{"x":"{}"}}}}"#,
        "a".repeat(200 * 1024)
    );
    let response = post_raw(&app, Some("application/json"), huge).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[both_backends]
async fn request_errors_follow_the_negotiated_media_type(app: TestApp) {
    let send = |accept: &'static str| {
        app.http
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .header("accept", accept)
            .body(r#"{"query":"{ viewer { "}"#)
            .send()
    };
    let response = send("application/graphql-response+json").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()["content-type"],
        "application/graphql-response+json"
    );
    assert_eq!(
        json_of(response).await["errors"][0]["extensions"]["code"],
        "GRAPHQL_PARSE_FAILED"
    );
    let response = send("application/json").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let response = send("text/html").await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
}

#[both_backends]
async fn a_valid_subscription_sent_over_post_is_refused_with_a_code_and_the_socket_to_use(
    app: TestApp,
) {
    let token = app.caller("msp-a", &["admin"]).await.token.unwrap();
    let send = |accept: &'static str| {
        app.http
            .post(app.url("/graphql"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("accept", accept)
            .body(r#"{"query":"subscription { graphApiTileChanged { status } }"}"#)
            .send()
    };
    let response = send("application/graphql-response+json").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json_of(response).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/graphql/ws"),
        "{body}"
    );
    assert!(body.get("data").is_none(), "{body}");
    // application/json: a well-formed request answers 200, with the same error.
    let response = send("application/json").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json_of(response).await["errors"][0]["extensions"]["code"],
        "BAD_REQUEST"
    );
    // The document is validated first: a wrong one is told what is wrong with it.
    let invalid = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"query":"subscription { graphApiTileChanged { statusText } }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(invalid).await["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
}

/// Checklist 59.
#[both_backends]
async fn misspelled_fields_get_no_suggestions(app: TestApp) {
    // Checklist 59.
    let caller = app.caller("msp-a", &["admin"]).await;
    let response = caller
        .run("{ clients { edgez { node { name } } } }", json!({}))
        .await;
    assert_eq!(response.error_code(), "GRAPHQL_VALIDATION_FAILED");
    assert!(
        !response
            .error_message()
            .to_lowercase()
            .contains("did you mean"),
        "{}",
        response.error_message()
    );
}

/// Checklist 52.
#[both_backends]
async fn deep_queries_are_refused_before_any_resolver_runs(app: TestApp) {
    // Checklist 52: the depth is checked right after parsing, before validation and before
    // any resolver, so even a query of made-up fields is refused for its depth alone.
    let caller = app.caller("msp-a", &["admin"]).await;
    let twelve = format!(
        "{{ clients {{ edges {{ node {{ {} name {} }} }} }} }}",
        "a { ".repeat(8),
        "} ".repeat(8)
    );
    let response = caller.run(&twelve, json!({})).await;
    assert!(
        !response.error_message().contains("nested too deep"),
        "{}",
        response.body
    );
    let thirteen = format!(
        "{{ clients {{ edges {{ node {{ {} name {} }} }} }} }}",
        "a { ".repeat(9),
        "} ".repeat(9)
    );
    let response = caller.run(&thirteen, json!({})).await;
    assert!(
        response.error_message().contains("nested too deep"),
        "{}",
        response.body
    );
    assert_eq!(response.error_code(), "GRAPHQL_VALIDATION_FAILED");
    // Fragments count where they are spread.
    let spread = format!(
        "query {{ ...Deep }} fragment Deep on Query {{ clients {{ edges {{ node {{ {} name {} }} }} }} }}",
        "a { ".repeat(9),
        "} ".repeat(9)
    );
    assert!(
        caller
            .run(&spread, json!({}))
            .await
            .error_message()
            .contains("nested too deep")
    );
}

#[both_backends]
async fn graphiqls_introspection_query_works_with_a_token(app: TestApp) {
    // GraphiQL's standard introspection is deeper than the depth limit; it is exempt.
    let caller = app.caller("msp-a", &["viewer"]).await;
    let query = include_str!("fixtures/graphiql-introspection.graphql");
    let response = caller.run(query, json!({})).await;
    let types = response.data()["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "Client"));
    let anonymous = app.anonymous().run(query, json!({})).await;
    assert_eq!(anonymous.error_code(), "UNAUTHENTICATED");
}

/// Checklist 58.
#[both_backends]
async fn introspection_needs_a_token(app: TestApp) {
    // Checklist 58.
    let query = "{ __schema { queryType { name } } }";
    let anonymous = app.anonymous().run(query, json!({})).await;
    assert!(
        !anonymous.errors().is_empty(),
        "anonymous introspection answered: {}",
        anonymous.body
    );
    let caller = app.caller("msp-a", &["viewer"]).await;
    assert_eq!(
        caller.run(query, json!({})).await.data()["__schema"]["queryType"]["name"],
        "Query"
    );
}

#[both_backends]
async fn no_cookie_is_ever_set_or_honoured(app: TestApp) {
    // Web hygiene: the API authenticates by bearer token only, so a browser's ambient
    // cookies can never act for anyone (no CSRF through cookies), and nothing sets one.
    let caller = app.caller("msp-a", &["admin"]).await;
    let token = caller.token.clone().unwrap();
    let as_cookie = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .header(
            "cookie",
            format!("Authorization=Bearer {token}; token={token}; session={token}"),
        )
        .body(r#"{"query":"mutation { createClient(input: { name: \"Via a cookie\" }) { id } }"}"#)
        .send()
        .await
        .unwrap();
    assert!(as_cookie.headers().get("set-cookie").is_none());
    assert_eq!(
        json_of(as_cookie).await["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    assert_eq!(
        caller
            .run("{ clients { totalCount } }", json!({}))
            .await
            .data()["clients"]["totalCount"],
        0
    );
    for path in [
        "/graphiql",
        "/graphiql/app.js",
        "/healthz",
        "/readyz",
        "/metrics",
        "/oauth/callback?state=x",
        "/oauth/result/00000000-0000-0000-0000-000000000000",
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert!(
            response.headers().get("set-cookie").is_none(),
            "{path} sets a cookie"
        );
    }
    let answer = caller.run("{ viewer { subject } }", json!({})).await;
    assert!(answer.headers.get("set-cookie").is_none());
}

/// Checklist 64.
#[both_backends]
async fn cors_allows_only_listed_origins(app: TestApp) {
    // Checklist 64.
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        allowed
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let refused = preflight("https://evil.example.com").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[both_backends]
async fn graphiql_is_served_with_a_strict_policy_and_both_endpoints(app: TestApp) {
    let page = app.http.get(app.url("/graphiql")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("https://"),
        "no CDN: its files come from Consentry (tests/api/graphiql.rs)"
    );
    assert!(html.contains("graphiql/app.js"));
    let script = app
        .http
        .get(app.url("/graphiql/app.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        script.contains("'../graphql'") && script.contains("'/ws'"),
        "wired to /graphql and /graphql/ws"
    );
    assert!(
        script.contains("Authorization"),
        "the header editor carries the token"
    );
}

#[both_backends]
async fn metrics_count_and_time_operations_by_name(app: TestApp) {
    let caller = app.caller("msp-a", &["admin"]).await;
    caller
        .run(
            "query Dashboard { clients { edges { node { name } } } }",
            json!({}),
        )
        .await
        .data();
    caller
        .run(
            "query Dashboard { clients { edges { node { name } } } }",
            json!({}),
        )
        .await
        .data();
    caller
        .run(
            "mutation AddOne { createClient(input: { name: \"\" }) { id } }",
            json!({}),
        )
        .await;
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(r#"consentry_graphql_operations_total{operation="Dashboard",kind="query",outcome="ok"} 2"#), "{text}");
    assert!(text.contains(r#"consentry_graphql_operations_total{operation="AddOne",kind="mutation",outcome="error"} 1"#), "{text}");
    assert!(text.contains(r#"consentry_graphql_operation_duration_seconds_count{operation="Dashboard",kind="query"} 2"#), "{text}");
    assert!(
        text.contains(
            r#"consentry_http_requests_total{method="POST",route="/graphql",status="200"}"#
        ),
        "{text}"
    );
}

#[both_backends]
async fn websocket_connections_need_a_valid_token(app: TestApp) {
    let caller = app.caller("msp-a", &["admin"]).await;
    let url = format!("ws://127.0.0.1:{}/graphql/ws", app.port);
    let connect = || {
        let mut request = url.as_str().into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        tokio_tungstenite::connect_async(request)
    };
    let (mut ws, _) = connect().await.unwrap();
    ws.send(Message::text(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", caller.token.as_deref().unwrap()) } }).to_string())).await.unwrap();
    let ack = ws.next().await.unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"), "{ack:?}");

    for payload in [json!({}), json!({ "Authorization": "Bearer not-a-token" })] {
        let (mut ws, _) = connect().await.unwrap();
        ws.send(Message::text(
            json!({ "type": "connection_init", "payload": payload }).to_string(),
        ))
        .await
        .unwrap();
        let answer = ws.next().await.unwrap().unwrap();
        match answer {
            Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4403, "{frame:?}"),
            other => panic!("expected the socket to close, got {other:?}"),
        }
    }

    // Subscribing before connection_init is unauthorised.
    let (mut ws, _) = connect().await.unwrap();
    ws.send(Message::text(
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ __typename }" } })
            .to_string(),
    ))
    .await
    .unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4401, "{frame:?}"),
        other => panic!("expected the socket to close, got {other:?}"),
    }
}
