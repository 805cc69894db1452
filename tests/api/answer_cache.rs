//! Kept answers (issue 17): a query is answered from memory only while nothing of the
//! caller's MSP has changed — a change made by a mutation, by a consent callback, by another
//! instance or by SQL shows in the very next answer — never to another MSP's caller or
//! another caller of the same MSP, never to support staff (each of their reads is audited),
//! and never past the MSP's query budget.

use crate::support::flows::{
    World, admin_consent, authorise, callback, consent_as, healthy, new_client, start_link, world,
};
use consentry_tests::{
    Backend, ServerProcess, TestApp, both_backends, free_port, serde_json::Value,
};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;

const CONSENTRY: &str = env!("CARGO_BIN_EXE_consentry-under-test");

/// What a dashboard shows, and the client's own audit log.
const DASHBOARD: &str = "query Dashboard { clients(first: 100) { edges { node {
    name graphApiTile { status availableActions } delegatedConsents { userPrincipalName status }
    auditLog(first: 3) { edges { node { action } } } } } } }";

/// `consentry_graphql_answer_cache_lookups_total{outcome="…"}` on `app`'s `/metrics`.
async fn lookups(app: &TestApp, outcome: &str) -> u64 {
    let series = format!("consentry_graphql_answer_cache_lookups_total{{outcome=\"{outcome}\"}}");
    app.metric(&series).await.unwrap_or(0.0) as u64
}

/// The answer's raw bytes, as the server wrote them.
async fn raw(app: &TestApp, token: &str, query: &str) -> String {
    let response = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

fn data(answer: &str) -> Value {
    let value: Value = serde_json::from_str(answer).unwrap();
    assert!(value.get("errors").is_none(), "{value}");
    value["data"].clone()
}

fn first_client(answer: &str) -> Value {
    data(answer)["clients"]["edges"][0]["node"].clone()
}

/// The MSP's revision, as the database keeps it.
async fn revision(app: &TestApp, msp: &str) -> i64 {
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            format!("SELECT revision FROM msp_tenant WHERE id = '{msp}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

async fn sql(app: &TestApp, statement: &str) {
    app.db.execute_unprepared(statement).await.unwrap();
}

/// Every path that changes an MSP's rows — a mutation, a consent callback, a delegated
/// consent, SQL by hand on each of its tables — shows in the very next answer, and a kept
/// answer is reused, byte for byte, only while none has happened.
#[both_backends]
async fn a_kept_answer_is_reused_only_while_nothing_of_the_msp_changes(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(World { sim: _sim, app }) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let token = caller.token.clone().unwrap();
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;

    let first = raw(&app, &token, DASHBOARD).await;
    let hits = lookups(&app, "hit").await;
    let again = raw(&app, &token, DASHBOARD).await;
    assert_eq!(again, first, "the same bytes");
    assert_eq!(lookups(&app, "hit").await, hits + 1, "answered from memory");

    // A mutation.
    let renamed = caller
        .run(
            "mutation($id: ID!) { updateClient(id: $id, input: { name: \"Contoso Ltd\" }) { id } }",
            json!({ "id": client }),
        )
        .await;
    renamed.data();
    let now = raw(&app, &token, DASHBOARD).await;
    assert_eq!(first_client(&now)["name"], "Contoso Ltd");
    assert_eq!(
        first_client(&now)["auditLog"]["edges"][0]["node"]["action"],
        "CLIENT_UPDATED"
    );

    // A consent link, then the admin's consent through the callback.
    let link = authorise(&caller, &client).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = raw(&app, &token, DASHBOARD).await;
    assert_eq!(
        first_client(&now)["graphApiTile"]["status"],
        "AWAITING_CONSENT"
    );
    let back = admin_consent(&link, contoso.admin().unwrap().id, "accept").await;
    callback(&app, &back).await;
    let now = raw(&app, &token, DASHBOARD).await;
    assert_eq!(first_client(&now)["graphApiTile"]["status"], "AUTHORISED");

    // A delegated consent, through its own callback.
    let delegated = start_link(&caller, &client, &["MAIL_SEND"]).await;
    raw(&app, &token, DASHBOARD).await;
    consent_as(&app, &delegated, contoso.admin().unwrap().id).await;
    let now = raw(&app, &token, DASHBOARD).await;
    assert_eq!(
        first_client(&now)["delegatedConsents"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{now}"
    );

    // SQL by hand, on each of the MSP's tables: every one changes the revision, and what
    // a query reads shows at once.
    let client_id = api::GlobalId::expect("id", &client, api::IdKind::Client).unwrap();
    let key = match backend {
        Backend::Sqlite => format!("x'{}'", client_id.simple()),
        Backend::Postgres => format!("'{client_id}'"),
    };
    for statement in [
        "UPDATE client SET name = 'Renamed by hand' WHERE msp_id = 'msp-a'".to_owned(),
        format!("UPDATE graph_api_tile SET status = 'REVOKED' WHERE client_id = {key}"),
        "UPDATE delegated_consent SET status = 'EXPIRED' WHERE msp_id = 'msp-a'".to_owned(),
        "UPDATE audit_event SET action = 'CLIENT_CREATED' WHERE msp_id = 'msp-a'".to_owned(),
        "UPDATE oauth_flow SET kind = kind WHERE msp_id = 'msp-a'".to_owned(),
        "UPDATE msp_tenant SET name = 'MSP A, renamed' WHERE id = 'msp-a'".to_owned(),
        "DELETE FROM delegated_consent WHERE msp_id = 'msp-a'".to_owned(),
    ] {
        let before = revision(&app, "msp-a").await;
        sql(&app, &statement).await;
        assert!(
            revision(&app, "msp-a").await > before,
            "{statement} left the revision at {before}"
        );
    }
    let now = raw(&app, &token, DASHBOARD).await;
    let node = first_client(&now);
    assert_eq!(node["name"], "Renamed by hand");
    assert_eq!(node["graphApiTile"]["status"], "REVOKED");
    assert_eq!(node["delegatedConsents"], json!([]));
    let msp = raw(&app, &token, "{ viewer { msp { name } } }").await;
    assert_eq!(data(&msp)["viewer"]["msp"]["name"], "MSP A, renamed");

    // Another MSP's changes are not this MSP's.
    let other = app.caller("msp-b", &["admin"]).await;
    let before = revision(&app, "msp-a").await;
    other.create_client("Bravo").await;
    assert_eq!(revision(&app, "msp-a").await, before);
}

/// Every table that holds an MSP's rows (a column `msp_id`, or `client_id` through its
/// client) changes the MSP's revision on insert, update and delete: a table added without
/// the triggers fails here.
#[both_backends]
async fn every_table_of_an_msps_rows_changes_its_revision(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app(backend).await else {
        return;
    };
    let tables: Vec<(String, String)> = match backend {
        Backend::Sqlite => {
            let rows = app
                .db
                .query_all_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
                     WHERE m.type = 'table' AND p.name IN ('msp_id', 'client_id')",
                ))
                .await
                .unwrap();
            rows.iter()
                .map(|r| {
                    (
                        r.try_get_by_index(0).unwrap(),
                        r.try_get_by_index(1).unwrap(),
                    )
                })
                .collect()
        }
        Backend::Postgres => {
            let rows = app
                .db
                .query_all_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT table_name::text, column_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() \
                     AND column_name IN ('msp_id', 'client_id')",
                ))
                .await
                .unwrap();
            rows.iter()
                .map(|r| {
                    (
                        r.try_get_by_index(0).unwrap(),
                        r.try_get_by_index(1).unwrap(),
                    )
                })
                .collect()
        }
    };
    let mut tables: Vec<String> = tables.into_iter().map(|(table, _)| table).collect();
    tables.sort();
    tables.dedup();
    assert!(tables.len() >= 6, "{tables:?}");
    for table in &tables {
        let triggers: Vec<String> = match backend {
            Backend::Sqlite => app
                .db
                .query_all_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    format!(
                        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = '{table}' \
                         AND name LIKE 'msp_revision_%'"
                    ),
                ))
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get_by_index::<String>(0).unwrap().to_uppercase())
                .collect(),
            Backend::Postgres => app
                .db
                .query_all_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!(
                        "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t \
                         JOIN pg_class c ON c.oid = t.tgrelid \
                         WHERE c.relname = '{table}' AND c.relnamespace = current_schema()::regnamespace \
                         AND t.tgname = 'msp_revision'"
                    ),
                ))
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get_by_index::<String>(0).unwrap().to_uppercase())
                .collect(),
        };
        for event in ["INSERT", "UPDATE", "DELETE"] {
            assert!(
                triggers
                    .iter()
                    .any(|t| t.contains(&format!("AFTER {event}"))
                        || t.contains(&format!("OR {event}"))),
                "{table} does not change the MSP's revision on {event}: {triggers:?}"
            );
        }
    }
}

/// A hostile MSP sending, byte for byte, the request another MSP's caller just sent — same
/// subject, same roles, same expiry in its token — gets its own MSP's answer; a viewer of the
/// same MSP gets its own roles, not the admin's.
#[both_backends]
async fn another_msps_caller_never_gets_a_kept_answer(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app(backend).await else {
        return;
    };
    app.register_msp("msp-a").await;
    app.register_msp("msp-b").await;
    let exp = chrono::Utc::now().timestamp() + 3600;
    let token_of = |msp: &'static str, role: &'static str| {
        app.token_with(move |claims| {
            claims.sub = "same-person".to_owned();
            claims.msp = Some(msp.to_owned());
            claims.roles = api::OneOrMany::One(role.to_owned());
            claims.exp = exp;
        })
    };
    let (a, b) = (token_of("msp-a", "admin"), token_of("msp-b", "admin"));
    app.with_token(a.clone()).create_client("Alpha of A").await;
    app.with_token(b.clone()).create_client("Bravo of B").await;
    let query = "{ viewer { msp { id } roles } clients { edges { node { name } } } }";

    let for_a = raw(&app, &a, query).await;
    raw(&app, &a, query).await;
    let hits = lookups(&app, "hit").await;
    let for_b = raw(&app, &b, query).await;
    assert_eq!(
        lookups(&app, "hit").await,
        hits,
        "B's request found nothing kept"
    );
    assert_eq!(data(&for_a)["viewer"]["msp"]["id"], "msp-a");
    assert_eq!(data(&for_b)["viewer"]["msp"]["id"], "msp-b");
    assert_eq!(
        data(&for_b)["clients"]["edges"],
        json!([{ "node": { "name": "Bravo of B" } }])
    );
    let viewer = raw(&app, &token_of("msp-a", "viewer"), query).await;
    assert_eq!(data(&viewer)["viewer"]["roles"], json!(["VIEWER"]));
}

/// Support staff are never answered from memory: the same read twice is two reads, and two
/// audit events in the MSP's log.
#[both_backends]
async fn support_reads_are_never_kept_and_each_is_audited(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app(backend).await else {
        return;
    };
    let a = app.caller("msp-a", &["admin"]).await;
    a.create_client("Alpha of A").await;
    let support = app.caller("msp-platform", &["support"]).await;
    let token = support.token.clone().unwrap();
    let query = "{ clients(filter: { mspId: \"msp-a\" }) { edges { node { name } } } }";
    let audited = || async {
        let row = app
            .db
            .query_one_raw(Statement::from_string(
                app.db.get_database_backend(),
                "SELECT COUNT(*) FROM audit_event WHERE action = 'SUPPORT_READ' AND msp_id = 'msp-a'",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    };
    let hits = lookups(&app, "hit").await;
    let misses = lookups(&app, "miss").await;
    for n in 1..=3 {
        let answer = raw(&app, &token, query).await;
        assert_eq!(first_client(&answer)["name"], "Alpha of A");
        assert_eq!(audited().await, n);
    }
    assert_eq!(lookups(&app, "hit").await, hits);
    assert_eq!(lookups(&app, "miss").await, misses, "never even looked up");
}

/// A change made through another instance shows in this instance's very next answer: the
/// revision is read from the database with the caller, so there is nothing to wait for.
#[both_backends]
async fn a_change_through_another_instance_shows_in_the_next_answer(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(World { sim, app }) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let token = caller.token.clone().unwrap();
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let port = free_port();
    let _second =
        ServerProcess::start(CONSENTRY, app.database(), &app.secret, &sim, port, &[]).await;
    let second = TestApp::attach(port, &app.secret, app.database()).await;
    let through_second = second.with_token(token.clone());

    raw(&app, &token, DASHBOARD).await;
    raw(&app, &token, DASHBOARD).await;
    for name in ["Contoso One", "Contoso Two", "Contoso Three"] {
        through_second
            .run(
                "mutation($id: ID!, $name: String!) { updateClient(id: $id, input: { name: $name }) { id } }",
                json!({ "id": client, "name": name }),
            )
            .await
            .data();
        let now = raw(&app, &token, DASHBOARD).await;
        assert_eq!(first_client(&now)["name"], name);
        // And it is kept again at the new revision.
        let hits = lookups(&app, "hit").await;
        assert_eq!(raw(&app, &token, DASHBOARD).await, now);
        assert_eq!(lookups(&app, "hit").await, hits + 1);
    }
}

/// A kept answer is a query all the same: it is taken out of the MSP's query budget, and
/// past it the caller gets 429 like any other query.
#[both_backends]
async fn kept_answers_are_held_to_the_msps_query_budget(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app_with(backend, |settings| {
        settings.msp_queries_per_minute = 3;
    })
    .await
    else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let token = caller.token.clone().unwrap();
    let query = "{ viewer { subject } }";
    for _ in 0..3 {
        raw(&app, &token, query).await;
    }
    let refused = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(&token)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
}

/// With `CONSENTRY_ANSWER_CACHE_BYTES=0` every query runs.
#[both_backends]
async fn without_a_cache_every_query_runs(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app_with(backend, |settings| {
        settings.answer_cache_bytes = 0;
    })
    .await
    else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let token = caller.token.clone().unwrap();
    caller.create_client("Alpha").await;
    let first = raw(&app, &token, DASHBOARD).await;
    assert_eq!(raw(&app, &token, DASHBOARD).await, first);
    assert_eq!(lookups(&app, "hit").await, 0);
    assert_eq!(lookups(&app, "miss").await, 0);
}
