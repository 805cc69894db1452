//! Faults a real deployment meets (checklist §H), with real processes: `kill -9` of the server
//! in the middle of a callback, SIGTERM with requests and subscriptions in flight, and the
//! database (a PostgreSQL server of the test's own) going away and coming back.

use std::time::Duration;

use crate::support::{
    flows::{
        admin_consent, authorise, browser, consent_page, flows, healthy, location, new_client,
        tile, token_grants, token_requests,
    },
    websocket::{connect_port, subscribe},
};
use consentry_tests::{
    Backend, PrivatePostgres, ServerProcess, TestApp, TestDatabase, both_backends, eventually,
    free_port, start, start_simulator,
};
use entity::{
    delegated_consent,
    enums::{GraphApiStatus, OAuthFlowStatus},
    graph_api_tile,
};
use futures_util::StreamExt;
use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::json;
use simulator::{Faults, SimTenant, Simulator};
use tokio_tungstenite::tungstenite::Message;
use url::Url;

const CONSENTRY: &str = env!("CARGO_BIN_EXE_consentry-under-test");

/// Settings of a server that is expected to be interrupted: a short callback lease (so the
/// sweep fails an interrupted callback within the test) and Microsoft timeouts to match.
const INTERRUPTIBLE: [(&str, &str); 4] = [
    ("CONSENTRY_CALLBACK_LEASE", "4s"),
    ("CONSENTRY_MS_TIMEOUT_SECONDS", "3"),
    ("CONSENTRY_MS_MAX_RETRY_WAIT_SECONDS", "1"),
    ("CONSENTRY_SWEEP_INTERVAL", "200ms"),
];

/// Microsoft's token endpoint answers after 1.5 s: long enough to kill the server while a
/// callback waits for it.
fn slow_tokens() -> Faults {
    Faults {
        token_delay_ms: 1_500,
        ..Faults::default()
    }
}

/// Starts the callback `url` in the background, as a browser would, and waits until it is
/// waiting on Microsoft's token endpoint (a `grant` request arrives).
async fn callback_waiting_on_microsoft(
    sim: &Simulator,
    url: &Url,
    grant: &str,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let before = token_grants(sim, grant);
    let pending = tokio::spawn(browser().get(url.clone()).send());
    eventually(
        Duration::from_secs(10),
        "the callback to ask Microsoft for a token",
        || async { (token_grants(sim, grant) > before).then_some(()) },
    )
    .await;
    pending
}

/// A `consentry serve` process on a fresh database, talking to its own simulator with one
/// tenant, and a [`TestApp`] to call it as MSP `msp-a`'s admin.
struct ProcessWorld {
    database: TestDatabase,
    sim: Simulator,
    tenant: SimTenant,
    secret: String,
    port: u16,
    server: ServerProcess,
    app: TestApp,
}

impl ProcessWorld {
    async fn start(backend: Backend, tenant: SimTenant, env: &[(&str, &str)]) -> Option<Self> {
        let database = TestDatabase::create(backend).await?;
        let sim = start_simulator(vec![tenant.clone()]).await;
        let secret = format!("test-secret-{}", uuid::Uuid::new_v4());
        let port = free_port();
        let server = ServerProcess::start(CONSENTRY, &database, &secret, &sim, port, env).await;
        let app = TestApp::attach(port, &secret, &database).await;
        Some(Self {
            database,
            sim,
            tenant,
            secret,
            port,
            server,
            app,
        })
    }
}

/// Checklist 92: `kill -9` while an admin-consent callback waits on Microsoft. After a
/// restart nothing is half-written: the tile was never marked authorised, the claimed flow
/// is failed by the sweep once its lease runs out, a replay of the same callback does not
/// exchange anything again, and a new Authorise succeeds.
#[both_backends]
async fn checklist_92_kill_9_during_a_consent_callback_leaves_nothing_half_written(
    backend: Backend,
) {
    let tenant = healthy("contoso.onmicrosoft.com").with_faults(slow_tokens());
    let Some(mut world) = ProcessWorld::start(backend, tenant, &INTERRUPTIBLE).await else {
        return;
    };
    let (app, sim, tenant) = (&world.app, &world.sim, world.tenant.clone());
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    let link = authorise(&caller, &client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        tenant.admin().unwrap().id,
        "accept",
    )
    .await;

    let pending = callback_waiting_on_microsoft(sim, &back, "client_credentials").await;
    world.server.kill9();
    assert!(
        pending.await.unwrap().is_err(),
        "the browser lost its connection"
    );

    // What the crash left: a claimed flow and a tile being verified — nothing authorised.
    let flow = flows(app).await.remove(0);
    assert_eq!(flow.status, OAuthFlowStatus::Exchanging);
    let row = graph_api_tile::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(row[0].status, GraphApiStatus::Verifying);
    assert!(row[0].authorised_at.is_none());

    world.server = ServerProcess::start(
        CONSENTRY,
        &world.database,
        &world.secret,
        &world.sim,
        world.port,
        &INTERRUPTIBLE,
    )
    .await;
    let failed = eventually(
        Duration::from_secs(20),
        "the sweep to fail the interrupted callback",
        || async {
            let tile = tile(&caller, &client).await;
            (tile["status"] == "FAILED").then_some(tile)
        },
    )
    .await;
    assert!(
        failed["availableActions"]
            .as_array()
            .unwrap()
            .contains(&json!("AUTHORISE")),
        "{failed}"
    );
    assert_eq!(flows(app).await[0].status, OAuthFlowStatus::Failed);

    // The browser reloads the callback: it shows the outcome and asks Microsoft nothing.
    let asked = token_requests(sim, &tenant.id.to_string(), "client_credentials");
    let replay = browser().get(back.clone()).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
    let page = browser().get(location(&replay)).send().await.unwrap();
    assert_eq!(page.headers()["x-consentry-outcome"], "failed");
    assert_eq!(
        token_requests(sim, &tenant.id.to_string(), "client_credentials"),
        asked
    );

    // And the admin can simply start again.
    sim.set_faults(tenant.id, Faults::default());
    let link = authorise(&caller, &client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        tenant.admin().unwrap().id,
        "accept",
    )
    .await;
    let response = browser().get(back).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(tile(&caller, &client).await["status"], "AUTHORISED");
}

const START_DELEGATED: &str = "mutation($id: ID!) {
    startDelegatedConsent(clientId: $id, permissions: [MAIL_SEND]) { url } }";

/// Checklist 92: `kill -9` while a delegated consent's code is being redeemed. No consent
/// row exists afterwards (the tokens and the consent are committed together or not at all),
/// the flow is failed once its lease runs out, and a new link works.
#[both_backends]
async fn checklist_92_kill_9_during_a_delegated_consent_stores_no_consent(backend: Backend) {
    let tenant = healthy("contoso.onmicrosoft.com").with_faults(slow_tokens());
    let Some(mut world) = ProcessWorld::start(backend, tenant, &INTERRUPTIBLE).await else {
        return;
    };
    let (app, sim, tenant) = (&world.app, &world.sim, world.tenant.clone());
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    let start_link = || async {
        caller
            .run(START_DELEGATED, json!({ "id": client }))
            .await
            .data()["startDelegatedConsent"]["url"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let user = tenant.admin().unwrap().id;
    let back = consent_page(&start_link().await, user, "accept").await;

    let pending = callback_waiting_on_microsoft(sim, &back, "authorization_code").await;
    world.server.kill9();
    assert!(pending.await.unwrap().is_err());
    let consents = delegated_consent::Entity::find()
        .all(&app.db)
        .await
        .unwrap();
    assert!(consents.is_empty(), "no consent half-written: {consents:?}");

    world.server = ServerProcess::start(
        CONSENTRY,
        &world.database,
        &world.secret,
        &world.sim,
        world.port,
        &INTERRUPTIBLE,
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the sweep to fail the interrupted sign-in",
        || async { (flows(app).await[0].status == OAuthFlowStatus::Failed).then_some(()) },
    )
    .await;
    assert!(
        delegated_consent::Entity::find()
            .all(&app.db)
            .await
            .unwrap()
            .is_empty()
    );

    sim.set_faults(tenant.id, Faults::default());
    let back = consent_page(&start_link().await, user, "accept").await;
    let response = browser().get(back).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let consents = caller
        .run(
            "query($id: ID!) { client(id: $id) { delegatedConsents { status permissions } } }",
            json!({ "id": client }),
        )
        .await;
    assert_eq!(
        consents.data()["client"]["delegatedConsents"],
        json!([{ "status": "ACTIVE", "permissions": ["MAIL_SEND"] }])
    );
}

/// SIGTERM: the server stops accepting, tells its WebSocket subscribers (close 1001), lets
/// the request in flight finish with its answer, and exits cleanly.
#[both_backends]
async fn sigterm_drains_in_flight_requests_and_closes_subscriptions_with_1001(backend: Backend) {
    let Some(mut world) =
        ProcessWorld::start(backend, healthy("contoso.onmicrosoft.com"), &[]).await
    else {
        return;
    };
    let (app, sim, tenant, port) = (&world.app, &world.sim, world.tenant.clone(), world.port);
    let caller = app.caller("msp-a", &["admin"]).await;
    let token = caller.token.clone().unwrap();
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    let link = authorise(&caller, &client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        tenant.admin().unwrap().id,
        "accept",
    )
    .await;
    browser().get(back).send().await.unwrap();
    assert_eq!(tile(&caller, &client).await["status"], "AUTHORISED");

    // A subscriber, acknowledged and subscribed.
    let mut ws = connect_port(port, &token).await;
    subscribe(
        &mut ws,
        "1",
        "subscription { graphApiTileChanged { status } }",
        json!({}),
    )
    .await;

    // A request in flight: re-verification waits 1.5 s for Microsoft's token endpoint.
    sim.set_faults(tenant.id, slow_tokens());
    let verify = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(&token)
        .json(&json!({
            "query": "mutation($id: ID!) { verifyGraphApi(clientId: $id) { status lastVerifiedAt } }",
            "variables": { "id": client },
        }))
        .send();
    let in_flight = tokio::spawn(verify);
    let asked = token_requests(sim, &tenant.id.to_string(), "client_credentials");
    eventually(
        Duration::from_secs(10),
        "the request to reach Microsoft",
        || async {
            (token_requests(sim, &tenant.id.to_string(), "client_credentials") > asked)
                .then_some(())
        },
    )
    .await;

    world.server.terminate();
    // The subscriber is told at once: 1001, "going away".
    let goodbye = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("a close frame within 5 s");
    assert_eq!(u16::from(goodbye.unwrap().code), 1001);
    // New connections are refused while the request in flight is still being answered.
    eventually(Duration::from_secs(5), "the listener to close", || async {
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let answer = in_flight.await.unwrap().unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(
        body["data"]["verifyGraphApi"]["status"], "AUTHORISED",
        "{body}"
    );
    let status = world.server.exited(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        world.server.log()
    );
    assert!(
        world.server.log().contains("stopped"),
        "{}",
        world.server.log()
    );
}

/// Checklist 91 and §H: PostgreSQL goes away (a crash: `pg_ctl stop -m immediate`) and comes
/// back. While it is away `/readyz` fails, requests get a clean `UNAVAILABLE`, a callback
/// answers 503 without consuming its flow; afterwards the server serves again by itself (its
/// pool and its `LISTEN` reconnect), the same callback completes, and nothing was
/// half-written. (An embedded SQLite database cannot go away without the process.)
#[both_backends]
async fn database_outage_fails_readiness_and_service_resumes_by_itself(backend: Backend) {
    if backend != Backend::Postgres || std::env::var("TEST_DATABASE_URL").is_err() {
        return;
    }
    let Some(postgres) = PrivatePostgres::start() else {
        return;
    };
    let database = TestDatabase::create_in_postgres(&postgres.url()).await;
    let tenant = healthy("contoso.onmicrosoft.com");
    let sim = start_simulator(vec![tenant.clone()]).await;
    let app = start(database, |s| {
        s.use_simulator(&sim);
        s.ms_timeout_seconds = 3;
    })
    .await;
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    let link = authorise(&caller, &client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        tenant.admin().unwrap().id,
        "accept",
    )
    .await;

    postgres.stop();
    let ready = |expected: StatusCode| {
        let http = app.http.clone();
        let url = app.url("/readyz");
        async move {
            let response = http.get(&url).send().await.ok()?;
            (response.status() == expected)
                .then_some(response.json::<serde_json::Value>().await.ok()?)
        }
    };
    let readiness = eventually(Duration::from_secs(10), "readiness to fail", || {
        ready(StatusCode::SERVICE_UNAVAILABLE)
    })
    .await;
    assert_eq!(
        readiness["checks"]["database"], "unreachable",
        "{readiness}"
    );
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let refused = caller
        .run(
            "mutation { createClient(input: { name: \"During the outage\" }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.error_code(), "UNAVAILABLE");
    let response = browser().get(back.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        token_requests(&sim, &tenant.id.to_string(), "client_credentials"),
        0,
        "nothing asked of Microsoft"
    );

    postgres.start_again();
    let readiness = eventually(
        Duration::from_secs(30),
        "readiness to come back by itself",
        || ready(StatusCode::OK),
    )
    .await;
    assert_eq!(readiness["checks"]["events"], "receiving", "{readiness}");
    // Nothing of the refused mutation was written, and the same link still works.
    let names = caller
        .run("{ clients { nodes { name } } }", json!({}))
        .await;
    assert_eq!(
        names.data()["clients"]["nodes"],
        json!([{ "name": "Contoso" }])
    );
    let response = browser().get(back).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(tile(&caller, &client).await["status"], "AUTHORISED");
    caller.create_client("After the outage").await;
}
