//! Live status over `graphql-transport-ws`: every state of a tile arrives in order, MSPs never
//! see each other's events, events cross instances on PostgreSQL, a stalled subscriber does
//! not hold up another, and tokens, origins and limits are enforced (checklist 66–73).

use std::time::Duration;

use crate::support::{
    flows::{
        World, admin_consent, authorise, callback, consent_page, healthy, new_client, with_client,
        world,
    },
    websocket::{Ws, connect_port, next_message, open_port, subscribe, token},
};
use consentry_tests::{Backend, TestApp, both_backends, serde_json::Value};
use futures_util::{SinkExt, StreamExt};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

const TILES: &str =
    "subscription($id: ID) { graphApiTileChanged(clientId: $id) { id status version } }";

async fn open(
    app: &TestApp,
    origin: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    open_port(app.port, origin).await
}

/// A socket past `connection_ack`.
async fn connect(app: &TestApp, token: &str) -> Ws {
    connect_port(app.port, token).await
}

/// The next `next` payload's data for subscription `id`.
async fn next_data(ws: &mut Ws, id: &str) -> Value {
    loop {
        let message = next_message(ws).await.expect("the socket stays open");
        if message["id"] == id && message["type"] == "next" {
            assert!(message["payload"]["errors"].is_null(), "{message}");
            return message["payload"]["data"].clone();
        }
        assert_ne!(message["type"], "error", "{message}");
    }
}

/// Waits until `n` subscriptions are live on `app` (its open-subscriptions gauge).
async fn live(app: &TestApp, n: usize) {
    live_at(&app.address, n).await;
}

async fn live_at(address: &str, n: usize) {
    let line = format!("consentry_graphql_subscriptions_active {n}");
    let http = reqwest::Client::new();
    consentry_tests::eventually(
        Duration::from_secs(10),
        "the subscriptions to be live",
        || async {
            let text = http
                .get(format!("{address}/metrics"))
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

#[both_backends]
async fn a_tile_walks_through_every_state_in_order(backend: Backend) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![tenant.clone()], |_| {}).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["viewer", "admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    let mut one = connect(&world.app, &token(&caller)).await;
    subscribe(&mut one, "1", TILES, json!({ "id": client })).await;
    let mut all = connect(&world.app, &token(&caller)).await;
    // Issue 19: an all-clients event says whose tile it is, and when its link expires.
    subscribe(
        &mut all,
        "all",
        "subscription { graphApiTileChanged { id status version clientId client { name }
            consentLinkExpiresAt headline } }",
        json!({}),
    )
    .await;
    live(&world.app, 2).await;

    let link = authorise(&caller, &client).await;
    let seen_awaiting = |tile: &Value| {
        assert_eq!(tile["status"], "AWAITING_CONSENT", "{tile}");
        tile.clone()
    };
    let first = seen_awaiting(&next_data(&mut one, "1").await["graphApiTileChanged"]);
    assert_eq!(first["version"], 1);
    let awaiting = seen_awaiting(&next_data(&mut all, "all").await["graphApiTileChanged"]);
    assert_eq!(awaiting["clientId"], client.as_str(), "{awaiting}");
    assert_eq!(awaiting["client"]["name"], "Contoso", "{awaiting}");
    assert_eq!(
        awaiting["consentLinkExpiresAt"], link["expiresAt"],
        "the pending link's expiry: {awaiting}"
    );
    assert!(
        awaiting["headline"].as_str().unwrap().contains("Waiting"),
        "{awaiting}"
    );
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        tenant.admin().unwrap().id,
        "accept",
    )
    .await;
    callback(&world.app, &back).await;

    for (ws, id) in [(&mut one, "1"), (&mut all, "all")] {
        let mut seen = Vec::new();
        let mut versions = vec![1];
        let mut last = Value::Null;
        while seen.last().map(String::as_str) != Some("AUTHORISED") {
            let data = next_data(ws, id).await;
            last = data["graphApiTileChanged"].clone();
            seen.push(last["status"].as_str().unwrap().to_owned());
            versions.push(last["version"].as_i64().unwrap());
        }
        if id == "all" {
            assert!(last["consentLinkExpiresAt"].is_null(), "used: {last}");
            assert_eq!(last["client"]["name"], "Contoso");
        }
        assert_eq!(seen, ["VERIFYING", "AUTHORISED"], "{id}");
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "in commit order: {versions:?}"
        );
    }
}

/// Checklist 71: MSP B sees none of MSP A's events, and cannot subscribe to A's client.
#[both_backends]
async fn another_msp_receives_nothing(backend: Backend) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let fabrikam = healthy("fabrikam.onmicrosoft.com");
    let Some(world) = world(backend, vec![tenant.clone(), fabrikam.clone()], |_| {}).await else {
        return;
    };
    let a = world.app.caller("msp-a", &["admin"]).await;
    let b = world.app.caller("msp-b", &["admin"]).await;
    let a_client = new_client(&a, "Contoso", Some(&tenant.domain), None).await;
    let b_client = new_client(&b, "Fabrikam", Some(&fabrikam.domain), None).await;

    let mut spy = connect(&world.app, &token(&b)).await;
    subscribe(&mut spy, "a", TILES, json!({ "id": a_client })).await;
    let refused = next_message(&mut spy).await.unwrap();
    let errors = if refused["type"] == "error" {
        refused["payload"].clone()
    } else {
        refused["payload"]["errors"].clone()
    };
    assert_eq!(errors[0]["extensions"]["code"], "NOT_FOUND", "{refused}");
    subscribe(&mut spy, "mine", TILES, json!({})).await;
    live(&world.app, 1).await;

    let link = authorise(&a, &a_client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        tenant.admin().unwrap().id,
        "accept",
    )
    .await;
    callback(&world.app, &back).await;
    // B's own change comes after all of A's: B's first event must be its own.
    authorise(&b, &b_client).await;
    let first = next_data(&mut spy, "mine").await;
    assert_eq!(first["graphApiTileChanged"]["status"], "AWAITING_CONSENT");
    let b_tile = b
        .run(
            "query($id: ID!) { client(id: $id) { graphApiTile { id } } }",
            json!({ "id": b_client }),
        )
        .await;
    assert_eq!(
        first["graphApiTileChanged"]["id"],
        b_tile.data()["client"]["graphApiTile"]["id"]
    );
}

/// Checklist 51 over the socket: support staff may subscribe to another MSP's client (and get
/// its events); each such subscription is written to that client's audit trail, as a read is.
#[both_backends]
async fn support_staff_subscriptions_are_audited(backend: Backend) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![tenant.clone()], |_| {}).await else {
        return;
    };
    let a = world.app.caller("msp-a", &["admin"]).await;
    let support = world
        .app
        .caller(consentry_tests::SUPPORT_MSP, &["support"])
        .await;
    let client = new_client(&a, "Contoso", Some(&tenant.domain), None).await;
    let mut ws = connect(&world.app, &token(&support)).await;
    subscribe(&mut ws, "1", TILES, json!({ "id": client })).await;
    live(&world.app, 1).await;

    authorise(&a, &client).await;
    let data = next_data(&mut ws, "1").await;
    assert_eq!(data["graphApiTileChanged"]["status"], "AWAITING_CONSENT");
    let id = api::GlobalId::expect("id", &client, api::IdKind::Client).unwrap();
    let reads = entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::ClientId.eq(id))
        .filter(entity::audit_event::Column::Action.eq(entity::enums::AuditAction::SupportRead))
        .all(&world.app.db)
        .await
        .unwrap();
    assert_eq!(reads.len(), 1, "the subscription is one audited look");
    assert_eq!(reads[0].actor_msp_id, "msp-platform");
}

/// A second `consentry` process, killed when dropped.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two `consentry` processes on one PostgreSQL: subscribe on one, complete the consent
/// through the other; the events cross over NOTIFY.
#[both_backends]
async fn events_cross_processes(backend: Backend) {
    if backend != Backend::Postgres {
        return;
    }
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![tenant.clone()], |_| {}).await else {
        return;
    };
    let database = world.app.database();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("http://127.0.0.1:{port}");
    let _second = Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_consentry-under-test"))
            .arg("serve")
            .env("DATABASE_URL", &database.url)
            .env("CONSENTRY_LISTEN", format!("127.0.0.1:{port}"))
            .env("CONSENTRY_PUBLIC_URL", &address)
            .env("CONSENTRY_AUTH_HS256_SECRET", &world.app.secret)
            .env("CONSENTRY_AUTH_ISSUER", consentry_tests::ISSUER)
            .env("CONSENTRY_AUTH_AUDIENCE", consentry_tests::AUDIENCE)
            .env("CONSENTRY_TOKEN_KEYS", &database.token_keys)
            .env("CONSENTRY_MS_CLIENT_ID", world.sim.client_id())
            .env("CONSENTRY_MS_CLIENT_SECRET", world.sim.client_secret())
            .env("CONSENTRY_MS_AUTHORITY_URL", world.sim.base_url().as_str())
            .env("CONSENTRY_MS_GRAPH_URL", world.sim.base_url().as_str())
            .env_remove("CONSENTRY_AUTH_JWKS_URL")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    consentry_tests::eventually(
        Duration::from_secs(30),
        "the second process to start",
        || async {
            reqwest::get(format!("{address}/readyz"))
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        },
    )
    .await;
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    let mut ws = connect_port(port, &token(&caller)).await;
    subscribe(&mut ws, "1", TILES, json!({ "id": client })).await;
    live_at(&address, 1).await;

    let link = authorise(&caller, &client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        tenant.admin().unwrap().id,
        "accept",
    )
    .await;
    callback(&world.app, &back).await;
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("AUTHORISED") {
        let data = next_data(&mut ws, "1").await;
        seen.push(
            data["graphApiTileChanged"]["status"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(seen, ["AWAITING_CONSENT", "VERIFYING", "AUTHORISED"]);
}

/// A subscriber that never reads does not hold up one that does.
#[both_backends]
async fn a_stalled_subscriber_does_not_stall_another(backend: Backend) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![tenant], |_| {}).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let mut stalled = connect(&world.app, &token(&caller)).await;
    subscribe(&mut stalled, "1", TILES, json!({})).await;
    let mut reader = connect(&world.app, &token(&caller)).await;
    subscribe(&mut reader, "1", TILES, json!({})).await;
    live(&world.app, 2).await;
    let mut clients = Vec::new();
    for i in 0..20 {
        let client = new_client(
            &caller,
            &format!("Client {i:02}"),
            Some("contoso.onmicrosoft.com"),
            None,
        )
        .await;
        authorise(&caller, &client).await;
        clients.push(client);
    }
    for _ in 0..20 {
        let data = next_data(&mut reader, "1").await;
        assert_eq!(data["graphApiTileChanged"]["status"], "AWAITING_CONSENT");
    }
    drop(stalled);
}

/// Checklist 66: a browser's socket connects from a listed origin only.
#[both_backends]
async fn checklist_66_only_listed_origins_may_open_a_socket(app: TestApp) {
    match open(&app, Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            // Issue 19: the refusal says why, and what to do.
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(
                body.contains("https://evil.example") && body.contains("open Consentry at"),
                "{body}"
            );
        }
        other => panic!("an unlisted origin is refused: {:?}", other.map(|_| ())),
    }
    let allowed = open(&app, Some("https://app.example.com")).await;
    assert!(allowed.is_ok(), "a listed origin connects");
    // Issue 19: the server itself under another loopback name (the test server's public URL
    // is http://127.0.0.1:PORT) is the same origin; another port is not.
    let alias = format!("http://localhost:{}", app.port);
    assert!(open(&app, Some(&alias)).await.is_ok(), "{alias}");
    let other_port = format!("http://localhost:{}", app.port.wrapping_add(1));
    assert!(open(&app, Some(&other_port)).await.is_err(), "{other_port}");
}

/// Checklist 67: an expired token cannot start a connection: it is closed with 4403.
#[both_backends]
async fn checklist_67_an_expired_token_is_closed_with_4403(app: TestApp) {
    app.register_msp("msp-a").await;
    let expired = app.token_with(|c| {
        c.msp = Some("msp-a".into());
        c.exp = chrono::Utc::now().timestamp() - 600;
    });
    let mut ws = open(&app, None).await.unwrap();
    ws.send(Message::text(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {expired}") } }).to_string()))
        .await
        .unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4403),
        other => panic!("expected a 4403 close, got {other:?}"),
    }
}

/// Checklist 72: a token that expires during the connection ends it, with 4403.
#[both_backends]
async fn checklist_72_a_token_expiring_mid_connection_ends_it(app: TestApp) {
    app.register_msp("msp-a").await;
    let short = app.token_with(|c| {
        c.msp = Some("msp-a".into());
        c.exp = chrono::Utc::now().timestamp() + 2;
    });
    let mut ws = connect(&app, &short).await;
    subscribe(&mut ws, "1", TILES, json!({})).await;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("closed within 15 s")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame when the token expired, got {other:?}"),
        }
    };
    assert_eq!(
        u16::from(closed.unwrap().code),
        4403,
        "closed when the token expired"
    );
}

/// Checklist 73: the 33rd subscription on one connection closes it.
#[both_backends]
async fn checklist_73_too_many_subscriptions_close_the_connection(app: TestApp) {
    let caller = app.caller("msp-a", &["admin"]).await;
    let mut ws = connect(&app, &token(&caller)).await;
    for i in 0..33 {
        subscribe(&mut ws, &format!("s{i}"), TILES, json!({})).await;
    }
    assert!(
        next_message(&mut ws).await.is_none(),
        "too many subscriptions close the connection"
    );
}

/// Fabrikam (missing the Teams admin API's principal) behind a server of its own, with a
/// client of MSP A for it.
async fn fabrikam(backend: Backend) -> Option<(World, simulator::SimTenant, String)> {
    let tenant = simulator::SimTenant::missing_teams("fabrikam.onmicrosoft.com", "Fabrikam");
    let (world, client) = with_client(backend, &tenant, "Fabrikam", |s| {
        s.sweep_interval = Duration::from_millis(100);
    })
    .await?;
    Some((world, tenant, client))
}

/// A service principal request pushes every step of its repair, up to `READY`.
#[both_backends]
async fn a_repair_pushes_every_step(backend: Backend) {
    let Some((world, tenant, client)) = fabrikam(backend).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let mut ws = connect(&world.app, &token(&caller)).await;
    subscribe(
        &mut ws,
        "sp",
        "subscription { servicePrincipalRequestChanged { status clientId client { name } } }",
        json!({}),
    )
    .await;
    live(&world.app, 1).await;

    let created = caller
        .run(
            "mutation($id: ID!) { createServicePrincipal(clientId: $id) { signInUrl } }",
            json!({ "id": client }),
        )
        .await;
    let url = created.data()["createServicePrincipal"]["signInUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let back = consent_page(&url, tenant.admin().unwrap().id, "accept").await;
    callback(&world.app, &back).await;
    let mut steps = Vec::new();
    while steps.last().map(String::as_str) != Some("READY") {
        let data = next_data(&mut ws, "sp").await;
        // Issue 19: an all-clients subscriber can place every step.
        let request = &data["servicePrincipalRequestChanged"];
        assert_eq!(request["clientId"], client.as_str(), "{request}");
        assert_eq!(request["client"]["name"], "Fabrikam", "{request}");
        steps.push(
            data["servicePrincipalRequestChanged"]["status"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        steps,
        ["PENDING_SIGN_IN", "CREATING", "PROPAGATING", "READY"]
    );
}

/// A delegated consent pushes its grant, with its permissions.
#[both_backends]
async fn a_delegated_consent_pushes_its_grant(backend: Backend) {
    let Some((world, tenant, client)) = fabrikam(backend).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let mut ws = connect(&world.app, &token(&caller)).await;
    subscribe(
        &mut ws,
        "dc",
        "subscription { delegatedConsentChanged { status permissions clientId client { name } } }",
        json!({}),
    )
    .await;
    live(&world.app, 1).await;

    let link = caller
        .run("mutation($id: ID!) { startDelegatedConsent(clientId: $id, permissions: [MAIL_SEND]) { url } }", json!({ "id": client }))
        .await;
    let back = consent_page(
        link.data()["startDelegatedConsent"]["url"]
            .as_str()
            .unwrap(),
        tenant.admin().unwrap().id,
        "accept",
    )
    .await;
    callback(&world.app, &back).await;
    let data = next_data(&mut ws, "dc").await;
    assert_eq!(data["delegatedConsentChanged"]["status"], "ACTIVE");
    assert_eq!(
        data["delegatedConsentChanged"]["permissions"],
        json!(["MAIL_SEND"])
    );
    assert_eq!(data["delegatedConsentChanged"]["clientId"], client.as_str());
    assert_eq!(
        data["delegatedConsentChanged"]["client"]["name"],
        "Fabrikam"
    );
}

/// PostgreSQL: when the listener's connection is killed, subscribers are told to resync, and
/// events flow again after the reconnect.
#[both_backends]
async fn a_dropped_listener_connection_means_resync_not_a_silent_gap(backend: Backend) {
    if backend != Backend::Postgres {
        return;
    }
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![tenant], |_| {}).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let mut ws = connect(&world.app, &token(&caller)).await;
    subscribe(&mut ws, "1", TILES, json!({})).await;
    live(&world.app, 1).await;
    let schema = {
        use sea_orm::{ConnectionTrait, Statement};
        let row = world
            .app
            .db
            .query_one_raw(Statement::from_string(
                world.app.db.get_database_backend(),
                "SELECT current_schema()".to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<String>(0).unwrap()
    };
    let killed = {
        use sea_orm::{ConnectionTrait, Statement};
        let sql = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN \"consentry_events_{schema}\"'"
        );
        world
            .app
            .db
            .query_all_raw(Statement::from_string(
                world.app.db.get_database_backend(),
                sql,
            ))
            .await
            .unwrap()
            .len()
    };
    assert_eq!(killed, 1, "the listener's connection was found and killed");
    let message = next_message(&mut ws).await.unwrap();
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"], "RESYNC",
        "{message}"
    );

    // Events flow again once the listener has reconnected (a change per attempt, until one
    // arrives; the deadline bounds it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for attempt in 0.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no event after the reconnect"
        );
        let client = new_client(
            &caller,
            &format!("Contoso {attempt}"),
            Some("contoso.onmicrosoft.com"),
            None,
        )
        .await;
        authorise(&caller, &client).await;
        let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_millis(500), ws.next()).await
        else {
            continue;
        };
        let value: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
        if value["payload"]["data"]["graphApiTileChanged"]["status"] == "AWAITING_CONSENT" {
            break;
        }
    }
}

/// Checklist 96, the hostile form: a forged error callback whose description is 50 KB
/// (naming a made-up service) commits on both backends, and neither the description nor
/// anything named in it is kept, shown or pushed: the tile fails with Consentry's own words.
#[both_backends]
async fn checklist_96_a_50_kb_forged_description_is_neither_kept_nor_a_failure(backend: Backend) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![tenant.clone()], |_| {}).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    let mut ws = connect(&world.app, &token(&caller)).await;
    subscribe(
        &mut ws,
        "1",
        "subscription($id: ID) { graphApiTileChanged(clientId: $id) {
            status problem { code message appId appDisplayName remediation } } }",
        json!({ "id": client }),
    )
    .await;
    live(&world.app, 1).await;
    let link = authorise(&caller, &client).await;
    next_data(&mut ws, "1").await;

    let planted = format!("Evil Backdoor {}", "x".repeat(50_000));
    let state: std::collections::BTreeMap<_, _> = url::Url::parse(link["url"].as_str().unwrap())
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let mut back = url::Url::parse(&world.app.url("/oauth/callback")).unwrap();
    back.query_pairs_mut()
        .append_pair("error", "invalid_client")
        .append_pair(
            "error_description",
            &format!(
                "AADSTS650052: The app is trying to access a service '{}'({planted}) that your \
                 organization '{}' lacks a service principal for.",
                uuid::Uuid::new_v4(),
                tenant.id
            ),
        )
        .append_pair("admin_consent", "True")
        .append_pair("state", &state["state"]);
    assert!(back.as_str().len() > 50_000);
    let response = callback(&world.app, &back).await;
    assert_eq!(
        response.status(),
        reqwest::StatusCode::SEE_OTHER,
        "the callback's transaction commits"
    );

    let failed = next_data(&mut ws, "1").await;
    let tile = &failed["graphApiTileChanged"];
    assert_eq!(tile["status"], "FAILED");
    assert_eq!(tile["problem"]["code"], "MISSING_SERVICE_PRINCIPAL");
    assert!(tile["problem"]["message"].is_null(), "{tile}");
    assert_eq!(
        tile["problem"]["appId"],
        api::TEAMS_ADMIN_API_APP_ID,
        "the app to repair is Consentry's, not the redirect's"
    );
    assert!(!tile.to_string().contains("Evil"), "{tile}");
    assert!(tile.to_string().len() < 2_000, "{tile}");
    let stored = crate::support::flows::tile(&caller, &client).await;
    assert!(!stored.to_string().contains("Evil"), "{stored}");
}

/// An event too big for a PostgreSQL NOTIFY payload (8,000 bytes) still reaches subscribers
/// whole, in order: it travels by reference through the outbox. (Consentry bounds every
/// string it keeps from Microsoft, so a tile's event stays far smaller; this is the
/// mechanism's own test, with a change written as an older version or a future field might.)
#[both_backends]
async fn an_event_larger_than_a_notify_payload_reaches_subscribers_whole(backend: Backend) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![tenant.clone()], |_| {}).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    let mut ws = connect(&world.app, &token(&caller)).await;
    subscribe(
        &mut ws,
        "1",
        "subscription($id: ID) { graphApiTileChanged(clientId: $id) {
            status version problem { code message } } }",
        json!({ "id": client }),
    )
    .await;
    live(&world.app, 1).await;

    // Multi-byte characters too: the limit counts bytes, not characters.
    let message = (0..600)
        .map(|i| format!("Teams Admin API — Ä{i:03}"))
        .collect::<Vec<_>>()
        .join(" ");
    let id = api::GlobalId::expect("id", &client, api::IdKind::Client).unwrap();
    let txn = sea_orm::TransactionTrait::begin(&world.app.db)
        .await
        .unwrap();
    let mut tile = entity::graph_api_tile::Entity::find_by_id(id)
        .one(&txn)
        .await
        .unwrap()
        .unwrap();
    tile.status = entity::enums::GraphApiStatus::Failed;
    tile.problem_code = Some(entity::enums::GraphApiProblemCode::Unknown);
    tile.problem_message = Some(message.clone());
    tile.version += 1;
    let tile = entity::graph_api_tile::ActiveModel::from(tile.clone())
        .reset_all()
        .update(&txn)
        .await
        .unwrap();
    api::record_tile_event(&txn, "msp-a", &tile).await.unwrap();
    txn.commit().await.unwrap();

    let failed = next_data(&mut ws, "1").await;
    let pushed = &failed["graphApiTileChanged"];
    assert!(
        pushed.to_string().len() > 8_000,
        "the event exceeds a NOTIFY payload"
    );
    assert_eq!(pushed["status"], "FAILED");
    assert_eq!(pushed["version"], tile.version);
    assert_eq!(pushed["problem"]["message"], message.as_str());
}

/// PostgreSQL: the sweeps delete outbox events past their ten minutes (SQLite's outbox
/// poller prunes its own), whichever instance runs them.
#[both_backends]
async fn old_outbox_events_are_pruned_on_postgres_too(backend: Backend) {
    if backend != Backend::Postgres {
        return;
    }
    let Some(app) =
        consentry_tests::spawn_app_with(backend, |s| s.sweep_interval = Duration::from_millis(50))
            .await
    else {
        return;
    };
    let now = chrono::Utc::now();
    for (payload, created_at) in [("old", now - chrono::Duration::minutes(11)), ("new", now)] {
        entity::event_outbox::ActiveModel {
            payload: sea_orm::ActiveValue::Set(payload.to_owned()),
            created_at: sea_orm::ActiveValue::Set(created_at),
            ..Default::default()
        }
        .insert(&app.db)
        .await
        .unwrap();
    }
    let left = consentry_tests::eventually(
        Duration::from_secs(10),
        "the old outbox event to be pruned",
        || async {
            let rows = entity::event_outbox::Entity::find()
                .all(&app.db)
                .await
                .unwrap();
            (rows.len() == 1).then_some(rows)
        },
    )
    .await;
    assert_eq!(left[0].payload, "new");
}

/// The legacy `graphql-ws` subprotocol (`start`/`data`) delivers the same events.
#[both_backends]
async fn the_legacy_graphql_ws_protocol_works_too(backend: Backend) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![tenant.clone()], |_| {}).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    let mut request = format!("ws://127.0.0.1:{}/graphql/ws", world.app.port)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-ws"),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "graphql-ws");
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", token(&caller)) } }).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(
        next_message(&mut ws).await.unwrap()["type"],
        "connection_ack"
    );
    ws.send(Message::text(
        json!({ "id": "1", "type": "start", "payload": { "query": TILES, "variables": { "id": client } } }).to_string(),
    ))
    .await
    .unwrap();
    live(&world.app, 1).await;
    authorise(&caller, &client).await;
    let data = loop {
        let message = next_message(&mut ws).await.expect("the socket stays open");
        if message["type"] == "data" {
            break message;
        }
    };
    assert_eq!(data["id"], "1");
    assert_eq!(
        data["payload"]["data"]["graphApiTileChanged"]["status"],
        "AWAITING_CONSENT"
    );
}

/// Queries work over the WebSocket too, per-client lists included.
#[both_backends]
async fn queries_run_over_the_websocket_too(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app(backend).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    caller.create_client("Contoso").await;
    let mut ws = connect(&app, &token(&caller)).await;
    for id in ["q1", "q2"] {
        subscribe(&mut ws, id, "{ clients { nodes { name delegatedConsents { status } servicePrincipalRequests { status } } } }", json!({})).await;
        let data = next_data(&mut ws, id).await;
        assert_eq!(data["clients"]["nodes"][0]["name"], "Contoso");
        assert_eq!(data["clients"]["nodes"][0]["delegatedConsents"], json!([]));
    }
}

/// Checklist 52–55 over the socket: operations sent over the WebSocket meet the same limits
/// as over HTTP — the depth limit, and each MSP's mutation rate (shared with HTTP).
#[both_backends]
async fn the_websocket_holds_operations_to_the_same_limits(backend: Backend) {
    let Some(app) =
        consentry_tests::spawn_app_with(backend, |s| s.msp_mutations_per_minute = 1).await
    else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    caller.create_client("Over HTTP").await;
    let mut ws = connect(&app, &token(&caller)).await;
    subscribe(
        &mut ws,
        "m1",
        "mutation { createClient(input: { name: \"Over the socket\" }) { id } }",
        json!({}),
    )
    .await;
    let refused = loop {
        let message = next_message(&mut ws).await.expect("an answer");
        if message["id"] == "m1" && message["type"] != "complete" {
            break message;
        }
    };
    let errors = if refused["type"] == "error" {
        refused["payload"].clone()
    } else {
        refused["payload"]["errors"].clone()
    };
    assert_eq!(errors[0]["extensions"]["code"], "RATE_LIMITED", "{refused}");
    let deep = format!(
        "{{ {} __typename {} }}",
        "viewer { ".repeat(13),
        "} ".repeat(13)
    );
    subscribe(&mut ws, "q1", &deep, json!({})).await;
    let refused = loop {
        let message = next_message(&mut ws).await.expect("an answer");
        if message["id"] == "q1" && message["type"] != "complete" {
            break message;
        }
    };
    assert!(refused.to_string().contains("nested too deep"), "{refused}");
    let names = caller
        .run("{ clients { nodes { name } } }", json!({}))
        .await;
    assert_eq!(
        names.data()["clients"]["nodes"],
        json!([{ "name": "Over HTTP" }])
    );
}

/// The close frame that ends the socket (code and reason), and the messages before it;
/// panics if none comes within `within` or the socket ends without one.
async fn closed_with(ws: &mut Ws, within: Duration) -> ((u16, String), Vec<Value>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut before = Vec::new();
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no close within {within:?}; got {before:?}"));
        match message {
            Some(Ok(Message::Close(Some(frame)))) => {
                return ((u16::from(frame.code), frame.reason.to_string()), before);
            }
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if !matches!(value["type"].as_str(), Some("ping" | "pong" | "ka")) {
                    before.push(value);
                }
            }
            Some(Ok(_)) => {}
            other => panic!("the socket ended without a close frame: {other:?}, after {before:?}"),
        }
    }
}

/// Sends `connection_init` with `token` on a fresh socket; the close that answers it.
async fn refused_init(port: u16, token: &str) -> (u16, String) {
    let mut ws = open_port(port, None).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }).to_string(),
    ))
    .await
    .unwrap();
    let (close, before) = closed_with(&mut ws, Duration::from_secs(10)).await;
    assert!(
        before.is_empty(),
        "no ack, nothing before the close: {before:?}"
    );
    close
}

/// `consentry` run as a process against the test's database (`msp disable`, `msp enable`).
fn consentry_cli(database_url: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_consentry-under-test"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "consentry {args:?}: {stderr}");
    stderr
}

const WHO: &str = "{ viewer { subject } }";

/// Checklist 72, 99: disabling an MSP refuses the next operation on its open sockets at once
/// (closed with 4403, no answer), long before the next re-check would close them; HTTP
/// refuses its tokens at once too. Another MSP's socket is untouched, and enabling the MSP
/// again lets it back in.
#[both_backends]
async fn checklist_99_a_disabled_msps_next_operation_on_an_open_socket_is_refused_at_once(
    backend: Backend,
) {
    let Some(app) = consentry_tests::spawn_app_with(backend, |s| {
        s.rights_recheck_interval = Duration::from_secs(300);
    })
    .await
    else {
        return;
    };
    let a = app.caller("msp-a", &["admin"]).await;
    let b = app.caller("msp-b", &["admin"]).await;
    let mut ws_a = connect(&app, &token(&a)).await;
    let mut ws_b = connect(&app, &token(&b)).await;
    subscribe(&mut ws_a, "q1", WHO, json!({})).await;
    next_data(&mut ws_a, "q1").await;

    let said = consentry_cli(&app.database().url, &["msp", "disable", "msp-a"]);
    assert!(said.contains("disabled MSP tenant \"msp-a\""), "{said}");
    let started = std::time::Instant::now();
    assert_eq!(
        a.run(WHO, json!({})).await.status,
        reqwest::StatusCode::UNAUTHORIZED
    );
    subscribe(&mut ws_a, "q2", WHO, json!({})).await;
    let ((code, reason), before) = closed_with(&mut ws_a, Duration::from_secs(10)).await;
    assert_eq!(code, 4403, "{reason}");
    assert!(reason.contains("disabled"), "{reason}");
    assert!(
        before
            .iter()
            .all(|m| m["id"] != "q2" || m["type"] == "complete"),
        "the refused operation answered nothing: {before:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    subscribe(&mut ws_b, "q1", WHO, json!({})).await;
    next_data(&mut ws_b, "q1").await;
    assert!(
        refused_init(app.port, &token(&a))
            .await
            .1
            .contains("disabled")
    );
    consentry_cli(&app.database().url, &["msp", "enable", "msp-a"]);
    let mut again = connect(&app, &token(&a)).await;
    subscribe(&mut again, "q1", WHO, json!({})).await;
    next_data(&mut again, "q1").await;
}

/// Checklist 72, 99: a disabled MSP's open sockets close with 4403 within the re-check
/// interval (`CONSENTRY_RIGHTS_RECHECK_INTERVAL`, here 1 s) without sending anything — on
/// PostgreSQL on every instance, including one that never saw the change.
#[both_backends]
async fn checklist_99_a_disabled_msps_open_sockets_close_with_4403_within_the_recheck_interval(
    backend: Backend,
) {
    let Some(app) = consentry_tests::spawn_app_with(backend, |s| {
        s.rights_recheck_interval = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let a = app.caller("msp-a", &["admin"]).await;
    let b = app.caller("msp-b", &["admin"]).await;
    let mut ws_a = connect(&app, &token(&a)).await;
    subscribe(&mut ws_a, "1", TILES, json!({})).await;
    let mut ws_b = connect(&app, &token(&b)).await;
    subscribe(&mut ws_b, "1", TILES, json!({})).await;
    live(&app, 2).await;
    // On PostgreSQL, a second instance with a socket of the same MSP.
    let simulator = consentry_tests::start_simulator(Vec::new()).await;
    let second = match backend {
        Backend::Postgres => {
            let port = consentry_tests::free_port();
            let process = consentry_tests::ServerProcess::start(
                env!("CARGO_BIN_EXE_consentry-under-test"),
                app.database(),
                &app.secret,
                &simulator,
                port,
                &[("CONSENTRY_RIGHTS_RECHECK_INTERVAL", "1s")],
            )
            .await;
            let mut ws = connect_port(port, &token(&a)).await;
            subscribe(&mut ws, "1", TILES, json!({})).await;
            live_at(&format!("http://127.0.0.1:{port}"), 1).await;
            Some((process, ws))
        }
        Backend::Sqlite => None,
    };

    consentry_cli(&app.database().url, &["msp", "disable", "msp-a"]);
    let started = std::time::Instant::now();
    let ((code, reason), before) = closed_with(&mut ws_a, Duration::from_secs(10)).await;
    assert_eq!(code, 4403, "{reason}");
    assert!(reason.contains("disabled"), "{reason}");
    assert!(before.is_empty(), "{before:?}");
    // The interval, and the slack of a loaded test machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    if let Some((_process, mut ws)) = second {
        let ((code, _), _) = closed_with(&mut ws, Duration::from_secs(10)).await;
        assert_eq!(code, 4403, "closed on the other instance too");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    // Another MSP's subscriber stays.
    live(&app, 1).await;
    subscribe(&mut ws_b, "q", WHO, json!({})).await;
    next_data(&mut ws_b, "q").await;
    simulator.stop().await;
}

/// Checklist 99 over the socket: a token that lives longer than the maximum gets no ack, and
/// the close says why.
#[both_backends]
async fn checklist_99_a_socket_whose_token_lives_too_long_gets_no_ack(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app(backend).await else {
        return;
    };
    app.register_msp("msp-a").await;
    let now = chrono::Utc::now().timestamp();
    let month = app.token_with(|c| {
        c.iat = Some(now);
        c.exp = now + 30 * 86_400;
    });
    let (code, reason) = refused_init(app.port, &month).await;
    assert_eq!(code, 4403);
    assert!(
        reason.contains("CONSENTRY_AUTH_MAX_TOKEN_LIFETIME"),
        "{reason}"
    );
    assert!(reason.contains("lives 30d"), "{reason}");
}

/// A `subscribe` message of exactly `size` bytes running `{ viewer { subject } }` (padded
/// with a comment).
fn padded_subscribe(id: &str, size: usize) -> String {
    let message = |padding: usize| {
        json!({ "id": id, "type": "subscribe", "payload": { "query": format!("{WHO} #{}", "x".repeat(padding)) } })
            .to_string()
    };
    let overhead = message(0).len();
    let padded = message(size - overhead);
    assert_eq!(padded.len(), size);
    padded
}

/// Checklist 73: a message of 64 KiB is served; one byte more closes the connection, and
/// the operation it carried never runs.
#[both_backends]
async fn checklist_73_a_message_over_64_kib_closes_the_connection(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app(backend).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let limit = api::MAX_MESSAGE_BYTES;
    assert_eq!(limit, 64 * 1024);
    let mut ws = connect(&app, &token(&caller)).await;
    ws.send(Message::text(padded_subscribe("fits", limit)))
        .await
        .unwrap();
    assert_eq!(
        next_data(&mut ws, "fits").await["viewer"]["subject"],
        "user@msp.example"
    );
    ws.send(Message::text(padded_subscribe("too-big", limit + 1)))
        .await
        .unwrap();
    let ((code, reason), before) = closed_with(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("64 KiB"), "{reason}");
    assert!(
        before.iter().all(|m| m["id"] != "too-big"),
        "the oversized operation ran: {before:?}"
    );
}

/// Checklist 73: the cap counts subscriptions open at once, not operations: queries (which
/// end by themselves) never close a connection, a completed subscription frees its place,
/// and the 33rd open subscription closes the connection with 1008.
#[both_backends]
async fn checklist_73_the_cap_counts_open_subscriptions_not_operations(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app(backend).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let mut ws = connect(&app, &token(&caller)).await;
    for i in 0..40 {
        let id = format!("q{i}");
        subscribe(&mut ws, &id, WHO, json!({})).await;
        next_data(&mut ws, &id).await;
    }
    for i in 0..32 {
        subscribe(&mut ws, &format!("s{i}"), TILES, json!({})).await;
    }
    live(&app, 32).await;
    ws.send(Message::text(
        json!({ "id": "s0", "type": "complete" }).to_string(),
    ))
    .await
    .unwrap();
    live(&app, 31).await;
    subscribe(&mut ws, "s32", TILES, json!({})).await;
    live(&app, 32).await;
    subscribe(&mut ws, "q-after", WHO, json!({})).await;
    next_data(&mut ws, "q-after").await;
    subscribe(&mut ws, "s33", TILES, json!({})).await;
    let ((code, reason), _) = closed_with(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("subscriptions"), "{reason}");
}

/// Checklist 73: each caller may hold `CONSENTRY_WS_CONNECTIONS_PER_CALLER` connections
/// (one more is closed with 1013 before any ack; another caller is not held up; a closed one
/// frees its place), and send `CONSENTRY_WS_MESSAGES_PER_MINUTE` messages (past them, 1013).
#[both_backends]
async fn checklist_73_each_callers_connections_and_message_rate_are_capped(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app_with(backend, |s| {
        s.ws_connections_per_caller = 2;
        s.ws_messages_per_minute = 6;
    })
    .await
    else {
        return;
    };
    let caller = app.caller("msp-a", &["viewer"]).await;
    let first = connect(&app, &token(&caller)).await;
    let _second = connect(&app, &token(&caller)).await;
    let (code, reason) = refused_init(app.port, &token(&caller)).await;
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("connections"), "{reason}");
    let other = app.token_with(|c| c.sub = "someone-else@msp.example".to_owned());
    let _other = connect(&app, &other).await;
    drop(first);
    let mut again = consentry_tests::eventually(
        Duration::from_secs(10),
        "the closed connection to free its place",
        || async {
            let mut ws = open(&app, None).await.ok()?;
            let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", token(&caller)) } });
            ws.send(Message::text(init.to_string())).await.ok()?;
            let ack = next_message(&mut ws).await?;
            (ack["type"] == "connection_ack").then_some(ws)
        },
    )
    .await;
    let _ = again.close(None).await;

    // A caller of its own: its connection_init is its first message of six.
    let chatty = app.token_with(|c| c.sub = "chatty@msp.example".to_owned());
    let mut ws = connect(&app, &chatty).await;
    for i in 0..5 {
        let id = format!("q{i}");
        subscribe(&mut ws, &id, WHO, json!({})).await;
        next_data(&mut ws, &id).await;
    }
    subscribe(&mut ws, "q5", WHO, json!({})).await;
    let ((code, reason), before) = closed_with(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("messages"), "{reason}");
    assert!(before.iter().all(|m| m["id"] != "q5"), "{before:?}");
}

/// Checklist 100: support staff must name an MSP or a client to subscribe to; naming an MSP
/// is written to its audit trail when the subscription starts, and only that MSP's events
/// arrive. Nobody else may name another MSP.
#[both_backends]
async fn checklist_100_support_subscriptions_name_an_msp_or_a_client_and_are_audited(
    backend: Backend,
) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let fabrikam = healthy("fabrikam.onmicrosoft.com");
    let Some(world) = world(backend, vec![contoso.clone(), fabrikam.clone()], |_| {}).await else {
        return;
    };
    let a = world.app.caller("msp-a", &["admin"]).await;
    let b = world.app.caller("msp-b", &["admin"]).await;
    let support = world
        .app
        .caller(consentry_tests::SUPPORT_MSP, &["support"])
        .await;
    let a_client = new_client(&a, "Contoso", Some(&contoso.domain), None).await;
    let b_client = new_client(&b, "Fabrikam", Some(&fabrikam.domain), None).await;
    const BY_MSP: &str =
        "subscription($msp: String) { graphApiTileChanged(mspId: $msp) { id status } }";

    let mut ws = connect(&world.app, &token(&support)).await;
    subscribe(&mut ws, "everything", TILES, json!({})).await;
    let refused = next_message(&mut ws).await.unwrap();
    let errors = if refused["type"] == "error" {
        refused["payload"].clone()
    } else {
        refused["payload"]["errors"].clone()
    };
    assert_eq!(
        errors[0]["extensions"]["code"], "BAD_USER_INPUT",
        "{refused}"
    );
    assert!(
        errors[0]["message"].as_str().unwrap().contains("mspId"),
        "{refused}"
    );
    subscribe(&mut ws, "a", BY_MSP, json!({ "msp": "msp-a" })).await;
    live(&world.app, 1).await;
    let audited = entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::Action.eq(entity::enums::AuditAction::SupportRead))
        .all(&world.app.db)
        .await
        .unwrap();
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].msp_id, "msp-a");
    assert_eq!(audited[0].client_id, None);
    assert_eq!(audited[0].actor_msp_id, consentry_tests::SUPPORT_MSP);
    assert_eq!(audited[0].details["subscription"], "graphApiTileChanged");

    // B's change comes first, then A's: the first event to arrive must be A's.
    authorise(&b, &b_client).await;
    authorise(&a, &a_client).await;
    let first = next_data(&mut ws, "a").await;
    let a_tile = a
        .run(
            "query($id: ID!) { client(id: $id) { graphApiTile { id } } }",
            json!({ "id": a_client }),
        )
        .await;
    assert_eq!(
        first["graphApiTileChanged"]["id"],
        a_tile.data()["client"]["graphApiTile"]["id"]
    );

    // An MSP's own staff may name only their own MSP.
    let mut own = connect(&world.app, &token(&a)).await;
    subscribe(&mut own, "b", BY_MSP, json!({ "msp": "msp-b" })).await;
    let refused = next_message(&mut own).await.unwrap();
    assert!(refused.to_string().contains("NOT_FOUND"), "{refused}");
}

/// Checklist 68: no `connection_init` within 10 s closes the socket with 4408.
#[both_backends]
async fn a_silent_connection_is_closed_with_4408(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app(backend).await else {
        return;
    };
    let mut ws = open(&app, None).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(15), ws.next())
        .await
        .unwrap();
    match closed {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4408),
        other => panic!("expected a 4408 close, got {other:?}"),
    }
}
