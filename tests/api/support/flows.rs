//! Driving Consentry's flows as a browser and a technician would: a server wired to its own
//! Microsoft simulator, clients, consent links followed through the simulator's pages, and
//! what the simulator and the database saw.

use std::time::Duration;

use consentry_tests::{
    Backend, Caller, TestApp, eventually, serde_json::Value, spawn_app_with, start_simulator,
};
use entity::{delegated_consent, oauth_flow};
use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::json;
use simulator::{SimTenant, Simulator};
use url::Url;
use uuid::Uuid;

pub(crate) const TEAMS: &str = "48ac35b8-9aa8-4d74-927d-1f4a14a0b239";

pub(crate) const TILE: &str = "query($id: ID!) { client(id: $id) { azureTenantId graphApiTile {
    clientId status headline consentLinkExpiresAt availableActions grantedPermissions missingPermissions authorisedAt lastVerifiedAt
    tenantProof { tenantId signedInAs userObjectId roles provenAt }
    problem { code aadstsCode message remediation appId appDisplayName } } } }";

pub(crate) const AUTHORISE: &str = "mutation($id: ID!, $minutes: Int) {
    authoriseGraphApi(clientId: $id, linkLifetimeMinutes: $minutes) {
        url expiresAt graphApiTile { status availableActions } client { id } } }";

/// A server wired to its own Microsoft simulator.
pub(crate) struct World {
    pub(crate) sim: Simulator,
    pub(crate) app: TestApp,
}

pub(crate) async fn world(
    backend: Backend,
    tenants: Vec<SimTenant>,
    configure: impl FnOnce(&mut api::Settings),
) -> Option<World> {
    let sim = start_simulator(tenants).await;
    let app = spawn_app_with(backend, |settings| {
        settings.use_simulator(&sim);
        settings.ms_timeout_seconds = 5;
        settings.ms_max_retry_wait_seconds = 2;
        configure(settings);
    })
    .await?;
    Some(World { sim, app })
}

pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Opens the consent link like a browser, picks `user` on Microsoft's (simulated) page and
/// presses `decision`'s button, as the page's own form would post it. Returns the URL
/// Microsoft sends the browser back to: Consentry's callback.
pub(crate) async fn consent_page(link: &str, user: Uuid, decision: &str) -> Url {
    simulator::browser::consent(&browser(), link, user, decision)
        .await
        .unwrap()
}

/// Goes through an admin-consent link as the admin's browser does: signs in as `user` on
/// Microsoft's sign-in page (always accepting), opens the sign-in's callback, which proves
/// the tenant and sends the browser on to Microsoft's consent page, and presses `decision`
/// there. Returns the callback URL of the consent step, to open. When the sign-in's callback
/// ends the flow instead (a refusal, not an admin, the wrong tenant), returns the sign-in's
/// callback URL: opening it again shows that same outcome (a replay shows the first).
pub(crate) async fn admin_consent(link: &str, user: Uuid, decision: &str) -> Url {
    let http = browser();
    let signed_in = consent_page(link, user, "accept").await;
    let response = http.get(signed_in.clone()).send().await.unwrap();
    let onward = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .filter(|l| l.contains("/adminconsent"))
        .map(str::to_owned);
    match onward {
        Some(consent) => consent_page(&consent, user, decision).await,
        None => signed_in,
    }
}

/// Follows Microsoft's redirect to Consentry's callback; returns the response (not followed).
pub(crate) async fn callback(app: &TestApp, url: &Url) -> reqwest::Response {
    assert!(
        url.as_str().starts_with(&app.url("/oauth/callback")),
        "the redirect URI is Consentry's callback: {url}"
    );
    browser().get(url.clone()).send().await.unwrap()
}

pub(crate) fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

pub(crate) async fn new_client(
    caller: &Caller<'_>,
    name: &str,
    domain: Option<&str>,
    tenant: Option<Uuid>,
) -> String {
    let response = caller
        .run(
            "mutation($input: CreateClientInput!) { createClient(input: $input) { id } }",
            json!({ "input": { "name": name, "domain": domain, "azureTenantId": tenant.map(|t| t.to_string()) } }),
        )
        .await;
    response.data()["createClient"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) async fn authorise(caller: &Caller<'_>, client: &str) -> Value {
    let response = caller.run(AUTHORISE, json!({ "id": client })).await;
    response.data()["authoriseGraphApi"].clone()
}

pub(crate) async fn client_view(caller: &Caller<'_>, client: &str) -> Value {
    caller.run(TILE, json!({ "id": client })).await.data()["client"].clone()
}

pub(crate) async fn tile(caller: &Caller<'_>, client: &str) -> Value {
    client_view(caller, client).await["graphApiTile"].clone()
}

pub(crate) fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Requests the simulator received at its token endpoint for `tenant`, by grant type.
pub(crate) fn token_requests(sim: &Simulator, tenant: &str, grant: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|r| {
            r.path == format!("/{tenant}/oauth2/v2.0/token") && r.param("grant_type") == Some(grant)
        })
        .count()
}

/// Token requests of grant type `grant` the simulator received, to any tenant's path.
pub(crate) fn token_grants(sim: &Simulator, grant: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token") && r.param("grant_type") == Some(grant))
        .count()
}

pub(crate) async fn audit_actions(caller: &Caller<'_>, client: &str) -> Vec<String> {
    let response = caller
        .run(
            "query($id: ID!) { client(id: $id) { auditLog(first: 100) { edges { node { action } } } } }",
            json!({ "id": client }),
        )
        .await;
    response.data()["client"]["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["action"].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) async fn flows(app: &TestApp) -> Vec<oauth_flow::Model> {
    oauth_flow::Entity::find().all(&app.db).await.unwrap()
}

/// `tenant` behind a server of its own (settings changed by `configure`), with a client of
/// MSP A for it named `name`: what most flow tests start from. The world, and the client's id.
pub(crate) async fn with_client(
    backend: Backend,
    tenant: &SimTenant,
    name: &str,
    configure: impl FnOnce(&mut api::Settings),
) -> Option<(World, String)> {
    let world = world(backend, vec![tenant.clone()], configure).await?;
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, name, Some(&tenant.domain), None).await;
    drop(caller);
    Some((world, client))
}

pub(crate) fn healthy(domain: &str) -> SimTenant {
    SimTenant::healthy(domain, domain.split('.').next().unwrap())
}

pub(crate) async fn authorised(
    world: &World,
    caller: &Caller<'_>,
    tenant: &SimTenant,
    name: &str,
) -> String {
    let client = new_client(caller, name, Some(&tenant.domain), None).await;
    let link = authorise(caller, &client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        tenant.admin().unwrap().id,
        "accept",
    )
    .await;
    callback(&world.app, &back).await;
    assert_eq!(tile(caller, &client).await["status"], "AUTHORISED");
    client
}

pub(crate) const START: &str = "mutation($id: ID!, $permissions: [DelegatedPermission!]!) {
    startDelegatedConsent(clientId: $id, permissions: $permissions) { url expiresAt graphApiTile { status } } }";

pub(crate) const CONSENTS: &str = "query($id: ID!) { client(id: $id) { delegatedConsents {
    id userPrincipalName displayName userObjectId permissions missingPermissions status statusReason
    grantedAt lastRefreshedAt } } }";

pub(crate) async fn start_link(caller: &Caller<'_>, client: &str, permissions: &[&str]) -> String {
    let response = caller
        .run(START, json!({ "id": client, "permissions": permissions }))
        .await;
    response.data()["startDelegatedConsent"]["url"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The user consents through the page; returns the result page's text.
pub(crate) async fn consent_as(app: &TestApp, url: &str, user: uuid::Uuid) -> String {
    let back = consent_page(url, user, "accept").await;
    let response = callback(app, &back).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    browser()
        .get(location(&response))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub(crate) async fn consents_of(caller: &Caller<'_>, client: &str) -> Vec<Value> {
    caller.run(CONSENTS, json!({ "id": client })).await.data()["client"]["delegatedConsents"]
        .as_array()
        .unwrap()
        .clone()
}

pub(crate) async fn rows(app: &TestApp) -> Vec<delegated_consent::Model> {
    delegated_consent::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
}

pub(crate) const REQUESTS: &str = "query($id: ID!) { client(id: $id) { servicePrincipalRequests {
    id status signInUrl problemCode problemMessage remediation } } }";

pub(crate) async fn request_status(caller: &Caller<'_>, client: &str) -> Value {
    let response = caller.run(REQUESTS, json!({ "id": client })).await;
    response.data()["client"]["servicePrincipalRequests"][0].clone()
}

/// The newest request, once it is `READY`, `ALREADY_EXISTS` or `FAILED`.
pub(crate) async fn settled_within(
    caller: &Caller<'_>,
    client: &str,
    deadline: Duration,
    what: &str,
) -> Value {
    eventually(deadline, what, || async {
        let request = request_status(caller, client).await;
        matches!(
            request["status"].as_str(),
            Some("READY" | "ALREADY_EXISTS" | "FAILED")
        )
        .then_some(request)
    })
    .await
}

/// Principals created (`POST /v1.0/servicePrincipals`).
pub(crate) fn posts(sim: &simulator::Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v1.0/servicePrincipals")
        .count()
}

/// `count` clients of `msp` named `Client 0000`, `Client 0001`, …, written straight through
/// the domain (a thousand API round trips would only slow the test).
pub(crate) async fn numbered_clients(app: &TestApp, msp: &str, count: usize) {
    let (msp, _) = api::ensure_msp(&app.db, msp, None).await.unwrap();
    let seeder = api::Viewer {
        subject: "seed@msp.example".to_owned(),
        msp,
        roles: vec![api::Role::Admin],
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    for i in 0..count {
        let client = api::NewClient {
            name: format!("Client {i:04}"),
            domain: None,
            azure_tenant_id: None,
        };
        api::create_client(&app.db, &seeder, client).await.unwrap();
    }
}
