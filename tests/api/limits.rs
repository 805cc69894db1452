//! GraphQL abuse limits (checklist §E): cost, aliases, nesting, directives, each MSP's
//! mutation rate, the query timeout, and a bound on every list.

use std::time::{Duration, Instant};

use consentry_tests::{Backend, TestApp, both_backends, spawn_app_with};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use serde_json::{Value, json};

const CLIENT_COUNT: &str = "{ clients { totalCount } }";

async fn client_count(caller: &consentry_tests::Caller<'_>) -> u64 {
    caller.run(CLIENT_COUNT, json!({})).await.data()["clients"]["totalCount"]
        .as_u64()
        .unwrap()
}

async fn post_body(app: &TestApp, body: String) -> reqwest::Response {
    app.http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[both_backends]
async fn checklist_53_costly_queries_are_refused_and_pages_are_bounded(app: TestApp) {
    let caller = app.caller("msp-a", &["admin"]).await;
    caller.create_client("Contoso").await;
    // A hundred clients with a hundred audit events each: refused before anything runs.
    let costly = "{ clients(first: 100) { nodes { auditLog(first: 100) {
        edges { node { at action actorSubject details } } } } } }";
    let response = caller.run(costly, json!({})).await;
    assert_eq!(response.error_code(), "GRAPHQL_VALIDATION_FAILED");
    assert!(
        response.error_message().contains("too complex"),
        "{}",
        response.body
    );
    // Page sizes given as variables count the same.
    let by_variables = "query($n: Int) { clients(first: $n) { nodes { auditLog(first: $n) {
        edges { node { at action actorSubject details } } } } } }";
    let response = caller.run(by_variables, json!({ "n": 100 })).await;
    assert!(
        response.error_message().contains("too complex"),
        "{}",
        response.body
    );
    caller.run(by_variables, json!({ "n": 10 })).await.data();
    // The README's dashboard, a full page with every client's consents and repairs, fits.
    let dashboard = "{ clients(first: 100) { totalCount edges { node {
        id name domain azureTenantId
        graphApiTile { status availableActions grantedPermissions missingPermissions problem { code remediation appId } }
        delegatedConsents { id userPrincipalName displayName status permissions missingPermissions grantedAt }
        servicePrincipalRequests { id appId status problemCode remediation } } }
        pageInfo { hasNextPage endCursor } } }";
    let page = caller.run(dashboard, json!({})).await;
    assert_eq!(page.data()["clients"]["totalCount"], 1);
    // Huge pages are refused, not clamped silently.
    for query in [
        "{ clients(first: 99999999) { totalCount } }",
        "{ clients { nodes { delegatedConsents(first: 101) { id } } } }",
        "{ clients { nodes { servicePrincipalRequests(first: 0) { id } } } }",
        "{ clients { nodes { auditLog(first: -1) { edges { cursor } } } } }",
    ] {
        let response = caller.run(query, json!({})).await;
        assert_eq!(
            response.error_code(),
            "BAD_USER_INPUT",
            "{query}: {}",
            response.body
        );
        assert_eq!(response.errors()[0]["extensions"]["field"], "first");
    }
}

#[both_backends]
async fn checklist_54_a_thousand_aliases_or_one_mutation_aliased_are_refused(app: TestApp) {
    let caller = app.caller("msp-a", &["admin"]).await;
    let aliased: String = (0..1000).map(|i| format!("a{i}: __typename ")).collect();
    let response = caller.run(&format!("{{ {aliased} }}"), json!({})).await;
    assert_eq!(response.error_code(), "GRAPHQL_VALIDATION_FAILED");
    assert!(
        response.error_message().contains("aliases"),
        "{}",
        response.body
    );
    // As many as the cap allow is fine.
    let aliased: String = (0..32).map(|i| format!("a{i}: __typename ")).collect();
    caller
        .run(&format!("{{ {aliased} }}"), json!({}))
        .await
        .data();
    // One sensitive mutation, aliased many times: refused, and nothing was created.
    let mutations: String = (0..40)
        .map(|i| format!("m{i}: createClient(input: {{ name: \"Aliased {i}\" }}) {{ id }} "))
        .collect();
    let response = caller
        .run(&format!("mutation {{ {mutations} }}"), json!({}))
        .await;
    assert!(
        response.error_message().contains("aliases"),
        "{}",
        response.body
    );
    assert_eq!(client_count(&caller).await, 0);
}

#[both_backends]
async fn checklist_56_deep_nesting_and_many_directives_are_refused_without_harm(app: TestApp) {
    let caller = app.caller("msp-a", &["admin"]).await;
    // Selections nested past the recursion limit.
    let deep = format!(
        "{{ {} __typename {} }}",
        "viewer { ".repeat(40),
        "} ".repeat(40)
    );
    let response = caller.run(&deep, json!({})).await;
    assert!(!response.errors().is_empty(), "{}", response.body);
    // A fragment that spreads itself.
    let cycle = "query { ...A } fragment A on Query { viewer { subject } ...A }";
    let response = caller.run(cycle, json!({})).await;
    assert!(!response.errors().is_empty(), "{}", response.body);
    // Input values nested deeply, in the document and in the variables.
    let nested = format!(
        "{{ clients(filter: {{ status: {}AUTHORISED{} }}) {{ totalCount }} }}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let response = caller.run(&nested, json!({})).await;
    assert!(!response.errors().is_empty(), "{}", response.body);
    let body = format!(
        r#"{{"query":"query($v: [GraphApiStatus!]) {{ clients(filter: {{ status: $v }}) {{ totalCount }} }}","variables":{{"v":{}{}}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let response = post_body(&app, body).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // More directives on one field than allowed.
    let directives = "{ viewer @include(if: true) @skip(if: false) @include(if: true) @skip(if: false) @include(if: true) { subject } }";
    let response = caller.run(directives, json!({})).await;
    assert!(
        response.error_message().contains("directives"),
        "{}",
        response.body
    );
    // The server is unharmed.
    assert_eq!(
        caller.run("{ viewer { subject } }", json!({})).await.data()["viewer"]["subject"],
        "user@msp.example"
    );
}

#[both_backends]
async fn checklist_60_errors_carry_no_sql_stack_traces_or_internals(app: TestApp) {
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = caller.create_client("Contoso").await;
    let mut answers: Vec<Value> = Vec::new();
    answers.push(
        caller
            .run(
                "{ clients(after: \"' OR 1=1 --\") { totalCount } }",
                json!({}),
            )
            .await
            .body,
    );
    answers.push(
        caller
            .run(
                "query($id: ID!) { client(id: $id) { name } }",
                json!({ "id": "Q2xpZW50Oic7IERST1A=" }),
            )
            .await
            .body,
    );
    answers.push(caller.run("mutation($id: ID!) { updateClient(id: $id, input: { azureTenantId: \"not-a-guid\" }) { id } }", json!({ "id": client })).await.body);
    answers.push(
        caller
            .run("{ clients { edges { node { nope } } } }", json!({}))
            .await
            .body,
    );
    // With the database gone.
    app.server_db.clone().close().await.unwrap();
    let gone = caller
        .run(
            "mutation { createClient(input: { name: \"Fabrikam\" }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(gone.error_code(), "UNAVAILABLE");
    answers.push(gone.body);
    for answer in answers {
        let text = answer.to_string().to_lowercase();
        for leak in [
            "select ",
            "insert ",
            "sqlx",
            "sqlite",
            "postgres",
            "pool",
            "panicked",
            "backtrace",
            ".rs:",
            "stack",
        ] {
            assert!(!text.contains(leak), "{leak:?} in {answer}");
        }
        for error in answer["errors"].as_array().unwrap() {
            assert!(error["extensions"]["code"].is_string(), "{error}");
        }
    }
}

#[both_backends]
async fn checklist_58_anonymous_validation_errors_name_nothing_introspection_hides(app: TestApp) {
    // Introspection is refused without a token; the validation errors must not tell
    // what it would have: which fields, types and arguments exist, or where.
    let probe = "{ clients(first: 1, sneaky: 2) { nodes { name secretField } } viewer { nope } }";
    let anonymous = app.anonymous().run(probe, json!({})).await;
    let errors = anonymous.errors();
    assert_eq!(errors.len(), 1, "{}", anonymous.body);
    assert_eq!(anonymous.error_code(), "GRAPHQL_VALIDATION_FAILED");
    assert!(errors[0].get("locations").is_none(), "{}", anonymous.body);
    let text = anonymous.body.to_string();
    for named in [
        "clients",
        "sneaky",
        "secretField",
        "nope",
        "Client",
        "Query",
        "Viewer",
        "first",
    ] {
        assert!(!text.contains(named), "{named:?} in {text}");
    }
    // With a token, the caller is told exactly what is wrong.
    let caller = app.caller("msp-a", &["viewer"]).await;
    let told = caller.run(probe, json!({})).await;
    assert!(told.errors().len() > 1, "{}", told.body);
    assert!(
        told.body.to_string().contains("secretField"),
        "{}",
        told.body
    );
}

#[both_backends]
async fn anonymous_callers_cannot_mint_metric_labels(app: TestApp) {
    // Operation names and HTTP methods come from callers: those without a token get
    // fixed labels, so they cannot fill the bounded set of operation names.
    for i in 0..250 {
        app.anonymous()
            .run(&format!("query Minted{i} {{ __typename }}"), json!({}))
            .await;
    }
    app.anonymous()
        .run("query Invalid { nope }", json!({}))
        .await;
    let odd = reqwest::Method::from_bytes(b"MINTED").unwrap();
    app.http
        .request(odd, app.url("/healthz"))
        .send()
        .await
        .unwrap();
    let caller = app.caller("msp-a", &["viewer"]).await;
    caller
        .run("query Dashboard { clients { totalCount } }", json!({}))
        .await
        .data();
    let metrics = app.metrics().await;
    assert!(
        !metrics.contains("Minted"),
        "an anonymous caller minted a label"
    );
    assert!(
        !metrics.contains("Invalid"),
        "an anonymous caller minted a label"
    );
    assert!(
        metrics.contains(r#"operation="(unauthenticated)""#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"method="(other)""#), "{metrics}");
    assert!(
        metrics.contains(r#"operation="Dashboard""#),
        "authenticated names still count"
    );
}

#[both_backends]
async fn checklist_65_every_list_of_objects_takes_a_bounded_first(app: TestApp) {
    // Lists of objects are connections or take `first`; the only exceptions are a
    // connection's own items (its `first` bounds them) and fixed catalogs.
    let caller = app.caller("msp-a", &["viewer"]).await;
    let schema = caller.run(
        "{ __schema { types { name kind fields { name args { name } type { ...T } } } } }
         fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }",
        json!({}),
    ).await;
    let bounded_by_parent = ["edges", "nodes"];
    // Fixed catalogs: every delegated permission; one count per tile status.
    let catalogs = ["delegatedPermissions", "statusCounts"];
    let mut lists = Vec::new();
    for ty in schema.data()["__schema"]["types"].as_array().unwrap() {
        let name = ty["name"].as_str().unwrap();
        if name.starts_with("__") || ty["kind"] != "OBJECT" || name == "Subscription" {
            continue;
        }
        for field in ty["fields"].as_array().unwrap() {
            let (is_list, item_kind) = unwrap_type(&field["type"]);
            let field_name = field["name"].as_str().unwrap();
            let takes_first = field["args"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["name"] == "first");
            let connection =
                item_kind == "OBJECT" && unwrap_name(&field["type"]).ends_with("Connection");
            if connection {
                assert!(
                    takes_first,
                    "{name}.{field_name} is a connection without `first`"
                );
            }
            if is_list && item_kind == "OBJECT" {
                lists.push(format!("{name}.{field_name}"));
                assert!(
                    takes_first
                        || bounded_by_parent.contains(&field_name)
                        || catalogs.contains(&field_name),
                    "{name}.{field_name} lists objects without `first`"
                );
            }
        }
    }
    assert!(
        lists.contains(&"Client.delegatedConsents".to_owned()),
        "{lists:?}"
    );
}

/// Whether a field's type is a list, and the kind of what it holds.
fn unwrap_type(ty: &Value) -> (bool, String) {
    let mut ty = ty;
    let mut list = false;
    while ty["kind"] == "NON_NULL" || ty["kind"] == "LIST" {
        list |= ty["kind"] == "LIST";
        ty = &ty["ofType"];
    }
    (list, ty["kind"].as_str().unwrap_or_default().to_owned())
}

fn unwrap_name(ty: &Value) -> String {
    let mut ty = ty;
    while ty["name"].is_null() && !ty["ofType"].is_null() {
        ty = &ty["ofType"];
    }
    ty["name"].as_str().unwrap_or_default().to_owned()
}

/// Tests whose server needs its own settings.
mod configured {
    use super::*;
    use consentry_tests::both_backends;

    /// Checklist 55: each MSP's mutations are limited (every root field counts, aliases too);
    /// queries and other MSPs are not held up; the answer is 429 with `Retry-After`.
    #[both_backends]
    async fn checklist_55_mutations_are_rate_limited_per_msp_with_429(backend: Backend) {
        let Some(app) = spawn_app_with(backend, |s| s.msp_mutations_per_minute = 3).await else {
            return;
        };
        let a = app.caller("msp-a", &["admin"]).await;
        let b = app.caller("msp-b", &["admin"]).await;
        for i in 0..3 {
            a.create_client(&format!("Client {i}")).await;
        }
        let refused = a
            .run(
                "mutation { createClient(input: { name: \"One too many\" }) { id } }",
                json!({}),
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            refused.body
        );
        assert_eq!(refused.error_code(), "RATE_LIMITED");
        assert!(refused.body.get("data").is_none(), "{}", refused.body);
        let retry_after: u64 = refused.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=60).contains(&retry_after),
            "Retry-After: {retry_after}"
        );
        assert_eq!(
            refused.errors()[0]["extensions"]["retryAfter"],
            json!(retry_after)
        );
        // Nothing was created, and reading is not limited.
        assert_eq!(client_count(&a).await, 3);
        // Another MSP has its own budget.
        b.create_client("Elsewhere").await;
        // An operation with more mutations than a minute allows can never run: it says so.
        let mutations: String = (0..4)
            .map(|i| format!("m{i}: createClient(input: {{ name: \"Batch {i}\" }}) {{ id }} "))
            .collect();
        let refused = b
            .run(&format!("mutation {{ {mutations} }}"), json!({}))
            .await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.error_code(), "RATE_LIMITED");
        assert!(
            refused.error_message().contains("split it"),
            "{}",
            refused.body
        );
        assert_eq!(client_count(&b).await, 1);
    }

    /// Holds the database so that writing to the audit trail waits: SQLite's write lock, or
    /// PostgreSQL's lock on `audit_event`.
    async fn hold_audit_trail(app: &TestApp) -> DatabaseTransaction {
        let txn = app.db.begin().await.unwrap();
        let statement = match app.database().backend {
            Backend::Sqlite => "UPDATE msp_tenant SET name = name",
            Backend::Postgres => "LOCK TABLE audit_event IN EXCLUSIVE MODE",
        };
        txn.execute_unprepared(statement).await.unwrap();
        txn
    }

    /// Checklist 65: a query held up past `CONSENTRY_QUERY_TIMEOUT` is stopped with `TIMEOUT`
    /// (504), and the server serves on.
    #[both_backends]
    async fn checklist_65_a_query_held_up_past_the_timeout_is_stopped(backend: Backend) {
        let Some(app) =
            spawn_app_with(backend, |s| s.query_timeout = Duration::from_millis(500)).await
        else {
            return;
        };
        let admin = app.caller("msp-a", &["admin"]).await;
        let client = admin.create_client("Contoso").await;
        // Support staff's reads of another MSP's client are written to its audit trail.
        let support = app.caller(consentry_tests::SUPPORT_MSP, &["support"]).await;
        let read = "query($id: ID!) { client(id: $id) { name } }";
        support.run(read, json!({ "id": client })).await.data();

        let lock = hold_audit_trail(&app).await;
        let started = Instant::now();
        let stopped = support.run(read, json!({ "id": client })).await;
        assert_eq!(
            stopped.status,
            StatusCode::GATEWAY_TIMEOUT,
            "{}",
            stopped.body
        );
        assert_eq!(stopped.error_code(), "TIMEOUT");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "stopped at the timeout, not when the database gave up ({:?})",
            started.elapsed()
        );
        lock.rollback().await.unwrap();
        assert_eq!(
            support.run(read, json!({ "id": client })).await.data()["client"]["name"],
            "Contoso"
        );
    }

    const DELETE: &str = "mutation($id: ID!) { deleteClient(id: $id) { deletedClientId } }";

    /// Checklist 98: a read-only caller looping refused mutations never spends the MSP's
    /// mutation budget (its refusals count as queries), so the admins keep theirs.
    #[both_backends]
    async fn checklist_98_a_read_only_caller_never_spends_the_mutation_budget(backend: Backend) {
        let Some(app) = spawn_app_with(backend, |s| {
            s.msp_mutations_per_minute = 3;
            s.msp_queries_per_minute = 10;
        })
        .await
        else {
            return;
        };
        let admin = app.caller("msp-a", &["admin"]).await;
        let viewer = app.caller("msp-a", &["viewer"]).await;
        let client = admin.create_client("Keep me").await;
        let mut codes = std::collections::BTreeMap::<String, u32>::new();
        for _ in 0..20 {
            let refused = viewer.run(DELETE, json!({ "id": client })).await;
            *codes.entry(refused.error_code()).or_default() += 1;
        }
        // Refused by the resolver (ten, and one more for each six seconds the loop took),
        // then by the query budget: nothing else.
        let forbidden = codes.get("FORBIDDEN").copied().unwrap_or(0);
        let limited = codes.get("RATE_LIMITED").copied().unwrap_or(0);
        assert!(
            forbidden >= 10 && limited >= 5 && forbidden + limited == 20,
            "{codes:?}"
        );
        // The admin still has the two mutations left of the minute's three.
        for i in 0..2 {
            admin.create_client(&format!("Client {i}")).await;
        }
        let refused = admin
            .run(
                "mutation { createClient(input: { name: \"One too many\" }) { id } }",
                json!({}),
            )
            .await;
        assert_eq!(refused.error_code(), "RATE_LIMITED");
        assert!(
            refused.error_message().contains("mutations"),
            "{}",
            refused.body
        );
    }

    /// Queries have a per-MSP budget too: 429 with `Retry-After` past it, for that MSP only,
    /// and mutations keep their own budget.
    #[both_backends]
    async fn checklist_98_queries_have_a_per_msp_budget(backend: Backend) {
        let Some(app) = spawn_app_with(backend, |s| s.msp_queries_per_minute = 3).await else {
            return;
        };
        let a = app.caller("msp-a", &["admin"]).await;
        let b = app.caller("msp-b", &["admin"]).await;
        for _ in 0..3 {
            a.run(CLIENT_COUNT, json!({})).await.data();
        }
        let refused = a.run(CLIENT_COUNT, json!({})).await;
        assert_eq!(
            refused.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            refused.body
        );
        assert_eq!(refused.error_code(), "RATE_LIMITED");
        assert!(
            refused.error_message().contains("too many queries"),
            "{}",
            refused.body
        );
        let retry_after: u64 = refused.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=60).contains(&retry_after),
            "Retry-After: {retry_after}"
        );
        // Another MSP has its own budget; mutations have theirs.
        b.run(CLIENT_COUNT, json!({})).await.data();
        a.create_client("Still allowed").await;
    }
}
