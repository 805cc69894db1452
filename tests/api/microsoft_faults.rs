//! Microsoft slow, failing, throttling or answering garbage (checklist §H): every tile,
//! delegated consent and service principal request stays consistent and retryable.
//!
//! Every test drives the real server over HTTP with the Microsoft simulator standing in for
//! Microsoft, with a 1 s timeout (`CONSENTRY_MS_TIMEOUT_SECONDS`) and a 2 s bound on the
//! `Retry-After` Consentry waits out (`CONSENTRY_MS_MAX_RETRY_WAIT_SECONDS`). Faults the
//! simulator cannot make itself (Graph answering 503, or slowly) come from [`GraphFront`], a
//! small stand-in put in front of the simulator's Graph.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::support::flows::{
    TEAMS, World, admin_consent, authorise, authorised, browser, callback, consent_page,
    consents_of, flows, healthy, location, new_client, posts, rows, settled_within, start_link,
    strings, token_grants, token_requests, world,
};
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode as HttpStatus, header},
    response::{IntoResponse, Response},
};
use consentry_tests::{
    Backend, Caller, TestApp, both_backends, eventually, serde_json::Value, spawn_app_with,
    start_simulator,
};
use entity::enums::{DelegatedConsentStatus, OAuthFlowKind, OAuthFlowStatus};
use reqwest::StatusCode;
use serde_json::json;
use simulator::{Faults, ResponseFault, SimTenant, Simulator, Throttle};
use url::Url;

/// What Microsoft's broken answers carry that must never reach a page, an error, a tile, a
/// request or the audit trail: Consentry describes a fault in its own words.
const RAW_BODIES: [&str; 9] = [
    // MalformedJson: `{"access_token": `
    "\"access_token\"",
    // WrongContentType: an HTML service notice
    "Service notice",
    // Redirect: where Microsoft's 302 pointed
    "login.example.invalid",
    // The token endpoint's 5xx body (AADSTS90033, with trace and correlation ids)
    "AADSTS90033",
    "transient error",
    "trace_id",
    "correlation_id",
    // Graph's 429 body
    "Please retry after",
    // The Graph front's 503 body
    FRONT_RAW_BODY,
];

const FRONT_RAW_BODY: &str = "graph-front-raw-503-body";

/// The token endpoint's delay for "slow": beyond the 1 s timeout.
const SLOW: Duration = Duration::from_millis(1500);

/// One way Microsoft misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The token endpoint answers after 1.5 s, beyond the 1 s timeout (checklist 86).
    SlowTokens,
    /// The token endpoint fails with this status (checklist 87).
    TokenStatus(u16),
    /// The token endpoint answers 200 in an undocumented shape, or redirects.
    TokenShape(ResponseFault),
    /// Graph answers in an undocumented shape, or redirects.
    GraphShape(ResponseFault),
    /// Graph throttles with `Retry-After: 5`, beyond the 2 s Consentry waits out (checklist 87).
    GraphThrottled,
    /// Graph answers 503 to every call, with this `Retry-After` (through the [`GraphFront`]).
    GraphUnavailable(Option<u64>),
    /// Graph answers after 1.5 s (through the [`GraphFront`]; checklist 86).
    SlowGraph,
}

impl Fault {
    /// The simulator's faults for the tenant.
    fn simulated(self) -> Faults {
        let mut faults = Faults::default();
        match self {
            Self::SlowTokens => faults.token_delay_ms = SLOW.as_millis() as u64,
            Self::TokenStatus(status) => faults.token_failure_status = Some(status),
            Self::TokenShape(shape) => faults.token_response = Some(shape),
            Self::GraphShape(shape) => faults.graph_response = Some(shape),
            Self::GraphThrottled => {
                faults.graph_throttle = Some(Throttle {
                    count: 1_000,
                    retry_after_seconds: 5,
                });
            }
            Self::GraphUnavailable(_) | Self::SlowGraph => {}
        }
        faults
    }

    /// The Graph front's fault.
    fn front(self) -> Option<FrontFault> {
        match self {
            Self::GraphUnavailable(retry_after) => Some(FrontFault {
                status: Some(503),
                retry_after,
                delay: Duration::ZERO,
                remaining: u32::MAX,
            }),
            Self::SlowGraph => Some(FrontFault {
                status: None,
                retry_after: None,
                delay: SLOW,
                remaining: u32::MAX,
            }),
            _ => None,
        }
    }

    fn needs_front(self) -> bool {
        self.front().is_some()
    }

    /// Whether it hits the token endpoint (rather than Graph).
    fn at_token_endpoint(self) -> bool {
        matches!(
            self,
            Self::SlowTokens | Self::TokenStatus(_) | Self::TokenShape(_)
        )
    }
}

/// Every fault of the token endpoint.
const TOKEN_FAULTS: [Fault; 7] = [
    Fault::SlowTokens,
    Fault::TokenStatus(429),
    Fault::TokenStatus(500),
    Fault::TokenStatus(503),
    Fault::TokenShape(ResponseFault::MalformedJson),
    Fault::TokenShape(ResponseFault::WrongContentType),
    Fault::TokenShape(ResponseFault::Redirect),
];

/// Every fault of Graph the simulator makes itself.
const GRAPH_FAULTS: [Fault; 4] = [
    Fault::GraphShape(ResponseFault::MalformedJson),
    Fault::GraphShape(ResponseFault::WrongContentType),
    Fault::GraphShape(ResponseFault::Redirect),
    Fault::GraphThrottled,
];

/// Graph faults only the front makes.
const FRONT_FAULTS: [Fault; 3] = [
    Fault::GraphUnavailable(None),
    Fault::GraphUnavailable(Some(5)),
    Fault::SlowGraph,
];

/// Sets `fault` on the tenant (and the front, if any).
fn inject(sim: &Simulator, front: Option<&GraphFront>, tenant: &SimTenant, fault: Fault) {
    sim.set_faults(tenant.id, fault.simulated());
    if let Some(front) = front {
        front.set(fault.front());
    } else {
        assert!(!fault.needs_front(), "{fault:?} needs the Graph front");
    }
}

/// Microsoft is well again.
fn heal(sim: &Simulator, front: Option<&GraphFront>, tenant: &SimTenant) {
    sim.set_faults(tenant.id, Faults::default());
    if let Some(front) = front {
        front.set(None);
    }
}

/// Asserts `text` holds nothing of Microsoft's raw answers and none of the codes and tokens
/// the simulator issued.
fn assert_no_raw_body(sim: &Simulator, what: &str, text: &str) {
    for raw in RAW_BODIES {
        assert!(
            !text.contains(raw),
            "{what} repeats Microsoft's raw answer ({raw:?}): {text}"
        );
    }
    for secret in sim.issued_secrets() {
        assert!(!text.contains(&secret), "{what} holds a token or code");
    }
}

// ---------------------------------------------------------------------------------------
// The Graph front: Graph's faults the simulator cannot make (503, slow answers).

/// A fault the front answers with instead of (or before) forwarding.
#[derive(Clone, Copy, Debug)]
struct FrontFault {
    /// Answer this status instead of forwarding.
    status: Option<u16>,
    retry_after: Option<u64>,
    /// Wait this long first.
    delay: Duration,
    /// For how many more requests.
    remaining: u32,
}

struct FrontState {
    target: Url,
    http: reqwest::Client,
    fault: Mutex<Option<FrontFault>>,
    /// Requests the front answered with its fault.
    faulted: AtomicUsize,
}

/// Stands in front of the simulator's Graph (Consentry's `CONSENTRY_MS_GRAPH_URL`) and
/// forwards every request to it, unless told to answer 503 or to answer late. Only for
/// app-only Graph calls: delegated scopes name the Graph URL, which the simulator then no
/// longer recognises as its own.
struct GraphFront {
    url: Url,
    state: Arc<FrontState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GraphFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GraphFront {
    async fn start(target: &Url) -> Self {
        let state = Arc::new(FrontState {
            target: target.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            fault: Mutex::new(None),
            faulted: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let router = Router::new()
            .fallback(front_forward)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, state, task }
    }

    fn set(&self, fault: Option<FrontFault>) {
        *self.state.fault.lock().unwrap() = fault;
        self.state.faulted.store(0, Ordering::SeqCst);
    }

    /// Requests answered with the fault since it was set.
    fn faulted(&self) -> usize {
        self.state.faulted.load(Ordering::SeqCst)
    }
}

async fn front_forward(State(state): State<Arc<FrontState>>, request: Request) -> Response {
    let fault = {
        let mut current = state.fault.lock().unwrap();
        match current.as_mut() {
            Some(fault) if fault.remaining > 0 => {
                fault.remaining -= 1;
                Some(*fault)
            }
            _ => None,
        }
    };
    if let Some(fault) = fault {
        state.faulted.fetch_add(1, Ordering::SeqCst);
        if !fault.delay.is_zero() {
            tokio::time::sleep(fault.delay).await;
        }
        if let Some(status) = fault.status {
            let body =
                json!({ "error": { "code": "serviceNotAvailable", "message": FRONT_RAW_BODY } });
            let mut response = (
                HttpStatus::from_u16(status).unwrap(),
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response();
            if let Some(after) = fault.retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(after));
            }
            return response;
        }
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let mut url = state.target.clone();
    url.set_path(parts.uri.path());
    url.set_query(parts.uri.query());
    let mut outgoing = state.http.request(parts.method, url).body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(value) = parts.headers.get(&name) {
            outgoing = outgoing.header(name, value.clone());
        }
    }
    let Ok(answer) = outgoing.send().await else {
        return HttpStatus::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let mut builder = Response::builder().status(status);
    for name in [header::CONTENT_TYPE, header::RETRY_AFTER, header::LOCATION] {
        if let Some(value) = answer.headers().get(&name) {
            builder = builder.header(name, value.clone());
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    builder.body(Body::from(bytes)).unwrap()
}

// ---------------------------------------------------------------------------------------
// Worlds and views.

/// A server wired to its own simulator, with a 1 s timeout and a 2 s `Retry-After` bound.
async fn fault_world(
    backend: Backend,
    tenants: Vec<SimTenant>,
    configure: impl FnOnce(&mut api::Settings),
) -> Option<World> {
    world(backend, tenants, |s| {
        s.ms_timeout_seconds = 1;
        s.ms_max_retry_wait_seconds = 2;
        configure(s);
    })
    .await
}

/// Like [`fault_world`], with Consentry's Graph behind a [`GraphFront`].
async fn fronted_world(backend: Backend, tenants: Vec<SimTenant>) -> Option<(World, GraphFront)> {
    let sim = start_simulator(tenants).await;
    let front = GraphFront::start(sim.base_url()).await;
    let app = spawn_app_with(backend, |s| {
        s.use_simulator(&sim);
        s.ms_graph_url = front.url.clone();
        s.ms_timeout_seconds = 1;
        s.ms_max_retry_wait_seconds = 2;
    })
    .await?;
    Some((World { sim, app }, front))
}

const TILE: &str = "query($id: ID!) { client(id: $id) { azureTenantId graphApiTile {
    status headline availableActions grantedPermissions missingPermissions authorisedAt
    lastVerifiedAt statusChangedAt version problem { code aadstsCode message remediation appId } } } }";

/// A tile whose missing principal a repair created: ready to authorise again, not failing.
fn assert_repaired(tile: &Value) {
    assert_eq!(tile["status"], "NOT_AUTHORISED", "{tile}");
    assert!(tile["problem"].is_null(), "{tile}");
    assert!(
        tile["headline"]
            .as_str()
            .unwrap()
            .contains("authorise again"),
        "{tile}"
    );
}

async fn full_tile(caller: &Caller<'_>, client: &str) -> Value {
    caller.run(TILE, json!({ "id": client })).await.data()["client"]["graphApiTile"].clone()
}

/// The audit trail, newest first: `{ action details }`.
async fn audit_trail(caller: &Caller<'_>, client: &str) -> Vec<Value> {
    let response = caller
        .run(
            "query($id: ID!) { client(id: $id) { auditLog(first: 100) { edges { node { action details } } } } }",
            json!({ "id": client }),
        )
        .await;
    response.data()["client"]["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// No flow is left mid-exchange: every callback finished what it claimed.
async fn assert_no_flow_exchanging(app: &TestApp, what: &str) {
    let stuck: Vec<_> = flows(app)
        .await
        .into_iter()
        .filter(|f| f.status == OAuthFlowStatus::Exchanging)
        .collect();
    assert!(stuck.is_empty(), "{what}: flows left EXCHANGING: {stuck:?}");
}

/// Follows the callback's redirect to Consentry's result page: its outcome header and text.
async fn result_page(
    sim: &Simulator,
    response: &reqwest::Response,
    what: &str,
) -> (String, String) {
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "{what}: the callback answers with its result page, not an error page"
    );
    let page = browser().get(location(response)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "{what}");
    let outcome = page
        .headers()
        .get("x-consentry-outcome")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let html = page.text().await.unwrap();
    assert_no_raw_body(sim, &format!("{what}: the result page"), &html);
    (outcome, html)
}

/// Asserts Consentry really met `fault`: a request the simulator received since `since`
/// (an index into its log) carries the fault's note.
fn assert_fault_met(sim: &Simulator, since: usize, fault: Fault, what: &str) {
    let note = match fault {
        Fault::TokenStatus(status) => format!("outcome=fault-{status}"),
        Fault::TokenShape(shape) | Fault::GraphShape(shape) => format!("outcome=fault-{shape:?}"),
        Fault::GraphThrottled => "outcome=throttled".to_owned(),
        // The simulator notes no delay; the Graph front counts its own.
        Fault::SlowTokens | Fault::GraphUnavailable(_) | Fault::SlowGraph => return,
    };
    let met = sim
        .requests()
        .iter()
        .skip(since)
        .any(|r| r.notes.contains(&note));
    assert!(met, "{what}: the set-up: no request met {note}");
}

fn organization_reads(sim: &Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path == "/v1.0/organization")
        .count()
}

fn at(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"))
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// 1. Authorise: the callback's verification meets Microsoft's faults.

/// Checklist 86, 87 (and 92: nothing is left mid-exchange): whatever Microsoft does while a
/// consent callback verifies the consent — token endpoint slow beyond the timeout, 5xx,
/// malformed, redirecting; Graph malformed, redirecting, 503, slow, or throttling longer than
/// Consentry waits — the callback answers with its result page, the tile ends `FAILED` with
/// `IDENTITY_PROVIDER_UNAVAILABLE` and offers `AUTHORISE` (README: "Microsoft down or
/// failing"), the flow is finished, the audit trail says so, nothing of Microsoft's raw
/// answer is shown, and once Microsoft is well a fresh link authorises the tile.
#[both_backends]
async fn checklist_86_87_microsoft_faults_during_authorise_leave_the_tile_failed_and_retryable(
    backend: Backend,
) {
    let faults: Vec<Fault> = TOKEN_FAULTS
        .into_iter()
        .chain(GRAPH_FAULTS)
        .chain(FRONT_FAULTS)
        .collect();
    // One tenant (and client) per fault: a tenant belongs to one client of an MSP.
    let tenants: Vec<SimTenant> = (0..faults.len())
        .map(|i| healthy(&format!("fault{i}.onmicrosoft.com")))
        .collect();
    let Some((world, front)) = fronted_world(backend, tenants.clone()).await else {
        return;
    };
    let (sim, app) = (&world.sim, &world.app);
    let caller = app.caller("msp-a", &["admin"]).await;

    for (fault, tenant) in faults.iter().copied().zip(&tenants) {
        let what = format!("{fault:?}");
        let client = new_client(&caller, &tenant.display_name, Some(&tenant.domain), None).await;
        let link = authorise(&caller, &client).await;
        let admin = tenant.admin().unwrap().id;
        let back = admin_consent(link["url"].as_str().unwrap(), admin, "accept").await;

        inject(sim, Some(&front), tenant, fault);
        let since = sim.requests().len();
        let reads_before = organization_reads(sim);
        let started = Instant::now();
        let response = callback(app, &back).await;
        let took = started.elapsed();
        assert_fault_met(sim, since, fault, &what);
        let (outcome, html) = result_page(sim, &response, &what).await;
        assert_eq!(outcome, "failed", "{what}: {html}");
        assert!(
            html.contains("Microsoft could not be reached"),
            "{what}: the page says what happened: {html}"
        );

        let tile = full_tile(&caller, &client).await;
        assert_eq!(tile["status"], "FAILED", "{what}: {tile}");
        assert_eq!(
            tile["problem"]["code"], "IDENTITY_PROVIDER_UNAVAILABLE",
            "{what}: {tile}"
        );
        assert!(
            !tile["problem"]["remediation"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{what}: {tile}"
        );
        assert_eq!(
            strings(&tile["availableActions"]),
            ["AUTHORISE"],
            "{what}: retryable"
        );
        assert!(
            tile["authorisedAt"].is_null() && tile["lastVerifiedAt"].is_null(),
            "{what}: nothing was verified: {tile}"
        );
        assert_no_raw_body(sim, &format!("{what}: the tile"), &tile.to_string());
        assert_no_flow_exchanging(app, &what).await;

        // The audit trail: the callback and the tile's move to FAILED, with the problem.
        let trail = audit_trail(&caller, &client).await;
        assert_eq!(trail[0]["action"], "CONSENT_CALLBACK_RECEIVED", "{what}");
        assert_eq!(trail[0]["details"]["result"], "FAILED", "{what}: {trail:?}");
        let problem = trail[0]["details"]["problem"]["code"].to_string();
        assert!(
            problem.contains("IDENTITY_PROVIDER_UNAVAILABLE")
                || problem.contains("IdentityProviderUnavailable"),
            "{what}: {trail:?}"
        );
        assert!(
            trail
                .iter()
                .any(|e| e["action"] == "GRAPH_API_STATUS_CHANGED"
                    && e["details"]["from"] == "VERIFYING"
                    && e["details"]["to"] == "FAILED"),
            "{what}: {trail:?}"
        );
        assert_no_raw_body(
            sim,
            &format!("{what}: the audit trail"),
            &Value::from(trail.clone()).to_string(),
        );

        // How hard Consentry tried (checklist 86, 87).
        let app_tokens = token_requests(sim, &tenant.id.to_string(), "client_credentials");
        let reads = organization_reads(sim) - reads_before;
        match fault {
            // A timeout is not re-sent; a 500 is not retried (only 429/503 are).
            Fault::SlowTokens | Fault::TokenStatus(500) | Fault::TokenShape(_) => {
                assert_eq!(app_tokens, 1, "{what}: asked once");
            }
            // 429/503 without Retry-After: capped exponential backoff, three retries.
            Fault::TokenStatus(_) => {
                assert_eq!(app_tokens, 4, "{what}: three retries");
                assert!(
                    took >= Duration::from_millis(1700),
                    "{what}: backed off ({took:?})"
                );
            }
            Fault::GraphShape(_) => assert_eq!(reads, 1, "{what}: not retried"),
            // (The front forwards the late read to the simulator after Consentry gave up.)
            Fault::SlowGraph => assert_eq!(front.faulted(), 1, "{what}: not retried"),
            // Retry-After 5 s is beyond the 2 s bound: fail at once rather than wait.
            Fault::GraphThrottled => {
                assert_eq!(reads, 1, "{what}: not retried");
                assert!(
                    took < Duration::from_secs(4),
                    "{what}: did not wait ({took:?})"
                );
            }
            Fault::GraphUnavailable(Some(_)) => {
                assert_eq!(front.faulted(), 1, "{what}: not retried");
                assert!(
                    took < Duration::from_secs(4),
                    "{what}: did not wait ({took:?})"
                );
            }
            Fault::GraphUnavailable(None) => {
                assert_eq!(front.faulted(), 4, "{what}: three retries");
                assert!(
                    took >= Duration::from_millis(1700),
                    "{what}: backed off ({took:?})"
                );
            }
        }
        if fault.at_token_endpoint() {
            assert_eq!(reads, 0, "{what}: Graph is not asked without a token");
        }

        // Microsoft is well again: a fresh link authorises the tile.
        heal(sim, Some(&front), tenant);
        let link = authorise(&caller, &client).await;
        assert_eq!(
            link["graphApiTile"]["availableActions"],
            json!(["AUTHORISE"]),
            "{what}"
        );
        let back = admin_consent(link["url"].as_str().unwrap(), admin, "accept").await;
        let response = callback(app, &back).await;
        let (outcome, html) = result_page(sim, &response, &what).await;
        assert_eq!(outcome, "succeeded", "{what}: {html}");
        let tile = full_tile(&caller, &client).await;
        assert_eq!(tile["status"], "AUTHORISED", "{what}: {tile}");
        assert!(tile["problem"].is_null(), "{what}: {tile}");
        assert_eq!(
            strings(&tile["grantedPermissions"]),
            simulator::DEFAULT_REQUIRED_ROLES,
            "{what}"
        );
    }
    assert_no_flow_exchanging(app, "at the end").await;
}

/// Checklist 87: Graph's 503 with a `Retry-After` within the bound is waited out (at least
/// as long as it says), and the consent is verified.
#[both_backends]
async fn checklist_87_graph_503_within_the_retry_bound_is_waited_out(backend: Backend) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some((world, front)) = fronted_world(backend, vec![tenant.clone()]).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    let link = authorise(&caller, &client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        tenant.admin().unwrap().id,
        "accept",
    )
    .await;
    front.set(Some(FrontFault {
        status: Some(503),
        retry_after: Some(1),
        delay: Duration::ZERO,
        remaining: 2,
    }));
    let started = Instant::now();
    let response = callback(&world.app, &back).await;
    let took = started.elapsed();
    let (outcome, _) = result_page(&world.sim, &response, "503 + Retry-After 1").await;
    assert_eq!(outcome, "succeeded");
    assert_eq!(front.faulted(), 2, "two 503s, then the answer");
    assert!(
        took >= Duration::from_secs(2),
        "waited at least Retry-After each time ({took:?})"
    );
    assert_eq!(full_tile(&caller, &client).await["status"], "AUTHORISED");
}

// ---------------------------------------------------------------------------------------
// 2. verifyGraphApi while Microsoft fails.

const VERIFY: &str = "mutation($id: ID!) { verifyGraphApi(clientId: $id) {
    status lastVerifiedAt grantedPermissions problem { code } } }";

/// Checklist 86, 87: re-checking an authorised tile while Microsoft fails answers
/// `MICROSOFT_UNAVAILABLE` and changes nothing — same status, permissions, `lastVerifiedAt`,
/// version and audit trail (README: "Microsoft being unreachable is a `MICROSOFT_UNAVAILABLE`
/// error and changes nothing"); verifying again once Microsoft is well works. A re-consent
/// that meets a fault leaves the working authorisation alone.
#[both_backends]
async fn checklist_86_87_verify_graph_api_while_microsoft_fails_changes_nothing(backend: Backend) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some((world, front)) = fronted_world(backend, vec![tenant.clone()]).await else {
        return;
    };
    let (sim, app) = (&world.sim, &world.app);
    let caller = app.caller("msp-a", &["technician"]).await;
    let client = authorised(&world, &caller, &tenant, "Contoso").await;

    let faults: Vec<Fault> = TOKEN_FAULTS
        .into_iter()
        .chain(GRAPH_FAULTS)
        .chain(FRONT_FAULTS)
        .collect();
    for fault in faults {
        let what = format!("{fault:?}");
        let before = full_tile(&caller, &client).await;
        let trail = audit_trail(&caller, &client).await;

        inject(sim, Some(&front), &tenant, fault);
        let since = sim.requests().len();
        let refused = caller.run(VERIFY, json!({ "id": client })).await;
        assert_fault_met(sim, since, fault, &what);
        assert_eq!(
            refused.error_code(),
            "MICROSOFT_UNAVAILABLE",
            "{what}: {:?}",
            refused.body
        );
        assert!(
            refused.body["data"].is_null() || refused.body["data"]["verifyGraphApi"].is_null(),
            "{what}: {:?}",
            refused.body
        );
        assert_no_raw_body(
            sim,
            &format!("{what}: the error"),
            &refused.body.to_string(),
        );
        assert_eq!(
            full_tile(&caller, &client).await,
            before,
            "{what}: the tile is unchanged"
        );
        assert_eq!(
            audit_trail(&caller, &client).await,
            trail,
            "{what}: nothing happened, nothing audited"
        );

        heal(sim, Some(&front), &tenant);
        let verified = caller.run(VERIFY, json!({ "id": client })).await;
        let verified = &verified.data()["verifyGraphApi"];
        assert_eq!(verified["status"], "AUTHORISED", "{what}");
        assert_eq!(
            verified["grantedPermissions"], before["grantedPermissions"],
            "{what}"
        );
        assert!(
            at(&verified["lastVerifiedAt"]) > at(&before["lastVerifiedAt"]),
            "{what}: verified again: {verified} after {before}"
        );
    }

    // A re-consent that meets a fault leaves the working authorisation alone.
    let before = full_tile(&caller, &client).await;
    let link = authorise(&caller, &client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        tenant.admin().unwrap().id,
        "accept",
    )
    .await;
    inject(sim, Some(&front), &tenant, Fault::TokenStatus(503));
    let response = callback(app, &back).await;
    let (_, html) = result_page(sim, &response, "re-consent during a 503").await;
    assert!(
        html.contains("earlier authorisation still stands"),
        "{html}"
    );
    let after = full_tile(&caller, &client).await;
    assert_eq!(after["status"], "AUTHORISED", "{after}");
    assert_eq!(after["grantedPermissions"], before["grantedPermissions"]);
    assert_eq!(after["lastVerifiedAt"], before["lastVerifiedAt"]);
    assert_no_flow_exchanging(app, "re-consent").await;
}

// ---------------------------------------------------------------------------------------
// 3. Delegated consents.

const VERIFY_CONSENT: &str = "mutation($id: ID!) { verifyDelegatedConsent(id: $id) {
    status statusReason lastRefreshedAt } }";

/// The user consents through the page and comes back: the result page's outcome and text.
async fn consent_through_the_page(
    world: &World,
    url: &str,
    user: uuid::Uuid,
    what: &str,
) -> (String, String) {
    let back = consent_page(url, user, "accept").await;
    let response = callback(&world.app, &back).await;
    result_page(&world.sim, &response, what).await
}

/// Checklist 86, 87, 92: a delegated consent whose code exchange meets a fault — the token
/// endpoint slow, 5xx, malformed or redirecting, or Graph failing while the sign-in's tenant
/// is checked — writes no consent and leaves the existing one exactly as it was; the code is
/// sent once (never re-POSTed), the flow is finished, nothing of Microsoft's answer is shown,
/// and a new link succeeds once Microsoft is well.
#[both_backends]
async fn checklist_86_87_delegated_consent_exchange_faults_store_nothing_and_a_new_link_works(
    backend: Backend,
) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some(world) = fault_world(backend, vec![tenant.clone()], |_| {}).await else {
        return;
    };
    let (sim, app) = (&world.sim, &world.app);
    let caller = app.caller("msp-a", &["admin"]).await;
    // Known by its domain only: the exchange also reads Graph's /organization.
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    let admin = tenant.admin().unwrap().id;
    let (outcome, html) = consent_through_the_page(
        &world,
        &start_link(&caller, &client, &["MAIL_SEND"]).await,
        admin,
        "the first consent",
    )
    .await;
    assert_eq!(outcome, "succeeded", "{html}");

    for fault in TOKEN_FAULTS.into_iter().chain(GRAPH_FAULTS) {
        let what = format!("{fault:?}");
        let existing = rows(app).await;
        assert_eq!(existing.len(), 1, "{what}");
        let url = start_link(
            &caller,
            &client,
            &["MAIL_SEND", "DIRECTORY_ACCESS_AS_USER_ALL"],
        )
        .await;
        let back = consent_page(&url, admin, "accept").await;

        inject(sim, None, &tenant, fault);
        let since = sim.requests().len();
        let exchanges = token_grants(sim, "authorization_code");
        let response = callback(app, &back).await;
        assert_fault_met(sim, since, fault, &what);
        let (outcome, html) = result_page(sim, &response, &what).await;
        assert_eq!(outcome, "failed", "{what}: {html}");
        assert_eq!(
            token_grants(sim, "authorization_code") - exchanges,
            1,
            "{what}: the code is sent once, never re-POSTed (checklist 86)"
        );
        assert_eq!(
            rows(app).await,
            existing,
            "{what}: no consent written, the existing one untouched"
        );
        let consents = consents_of(&caller, &client).await;
        assert_eq!(consents.len(), 1, "{what}");
        assert_eq!(consents[0]["status"], "ACTIVE", "{what}");
        assert_eq!(consents[0]["permissions"], json!(["MAIL_SEND"]), "{what}");
        assert_no_raw_body(
            sim,
            &format!("{what}: the consents"),
            &Value::from(consents).to_string(),
        );
        assert_no_flow_exchanging(app, &what).await;
        let flow = flows(app)
            .await
            .into_iter()
            .filter(|f| f.kind == OAuthFlowKind::DelegatedConsent)
            .max_by_key(|f| f.created_at)
            .unwrap();
        assert_eq!(flow.status, OAuthFlowStatus::Failed, "{what}: finished");
        assert!(
            flow.sealed_pkce_verifier.is_none() && flow.nonce_hash.is_none(),
            "{what}: a finished flow keeps no secret material"
        );
        // The link was used: coming back again shows the same outcome, asks nothing.
        let again = callback(app, &back).await;
        assert_eq!(location(&again), location(&response), "{what}");
        assert_eq!(
            token_grants(sim, "authorization_code") - exchanges,
            1,
            "{what}: a replay exchanges nothing"
        );

        // Microsoft is well again: a new link works and updates the same consent.
        heal(sim, None, &tenant);
        let (outcome, html) = consent_through_the_page(
            &world,
            &start_link(&caller, &client, &["MAIL_SEND"]).await,
            admin,
            &what,
        )
        .await;
        assert_eq!(outcome, "succeeded", "{what}: {html}");
        let rows = rows(app).await;
        assert_eq!(rows.len(), 1, "{what}: one consent per user");
        assert_eq!(
            rows[0].id, existing[0].id,
            "{what}: consenting again updates it"
        );
        assert_eq!(rows[0].status, DelegatedConsentStatus::Active, "{what}");
        assert!(rows[0].updated_at > existing[0].updated_at, "{what}");
    }
}

/// Verifies a consent while `fault` is on: asserts it stays `ACTIVE` with the very same
/// stored refresh token, that the refresh token was sent once, and that verifying after
/// Microsoft is well works (the token still works).
async fn verify_during(
    world: &World,
    caller: &Caller<'_>,
    tenant: &SimTenant,
    id: &str,
    fault: Fault,
) {
    let (sim, app) = (&world.sim, &world.app);
    let what = format!("{fault:?}");
    let before = rows(app).await.remove(0);
    assert_eq!(before.status, DelegatedConsentStatus::Active, "{what}");

    inject(sim, None, tenant, fault);
    let since = sim.requests().len();
    let refreshes = token_grants(sim, "refresh_token");
    let answer = caller.run(VERIFY_CONSENT, json!({ "id": id })).await;
    assert_fault_met(sim, since, fault, &what);
    assert_no_raw_body(
        sim,
        &format!("{what}: the answer"),
        &answer.body.to_string(),
    );
    assert_eq!(
        token_grants(sim, "refresh_token") - refreshes,
        1,
        "{what}: a refresh is never sent twice"
    );
    let after = rows(app).await.remove(0);
    assert_eq!(
        after.status,
        DelegatedConsentStatus::Active,
        "{what}: a failure of Microsoft's never expires a consent (only invalid_grant may): {:?} / {:?}",
        after.status_reason,
        answer.body
    );
    if fault.at_token_endpoint() {
        assert_eq!(
            answer.error_code(),
            "MICROSOFT_UNAVAILABLE",
            "{what}: {:?}",
            answer.body
        );
        assert_eq!(
            after.refresh_token, before.refresh_token,
            "{what}: the stored token is kept"
        );
        assert_eq!(after.last_refreshed_at, before.last_refreshed_at, "{what}");
    } else if answer.errors().is_empty() {
        // The refresh worked; only reading /me failed.
        assert_eq!(
            answer.data()["verifyDelegatedConsent"]["status"],
            "ACTIVE",
            "{what}"
        );
    } else {
        assert_eq!(
            answer.error_code(),
            "MICROSOFT_UNAVAILABLE",
            "{what}: {:?}",
            answer.body
        );
    }
    assert!(after.refresh_token.is_some(), "{what}: the token is kept");
    assert!(
        after.refreshing_until.is_none(),
        "{what}: the refresh lease is released"
    );

    heal(sim, None, tenant);
    let verified = caller.run(VERIFY_CONSENT, json!({ "id": id })).await;
    let verified = &verified.data()["verifyDelegatedConsent"];
    assert_eq!(
        verified["status"], "ACTIVE",
        "{what}: the token still works"
    );
    let renewed = rows(app).await.remove(0);
    assert!(
        renewed.last_refreshed_at > after.last_refreshed_at,
        "{what}: refreshed again"
    );
}

async fn delegated_world(backend: Backend, tenant: &SimTenant) -> Option<(World, String, String)> {
    let world = fault_world(backend, vec![tenant.clone()], |_| {}).await?;
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    let (outcome, html) = consent_through_the_page(
        &world,
        &start_link(&caller, &client, &["MAIL_SEND"]).await,
        tenant.admin().unwrap().id,
        "the consent",
    )
    .await;
    assert_eq!(outcome, "succeeded", "{html}");
    let id = consents_of(&caller, &client).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(caller);
    Some((world, client, id))
}

/// Checklist 86, 87, 93: `verifyDelegatedConsent` while the token endpoint is slow or
/// failing (5xx) answers `MICROSOFT_UNAVAILABLE` and keeps the consent `ACTIVE` with its
/// stored token, which still works once Microsoft is well; Graph failing after a good
/// refresh does not expire it either. A transient failure never expires a consent (only
/// `invalid_grant` may; README "Delegated consents").
#[both_backends]
async fn checklist_86_87_verify_delegated_consent_during_an_outage_keeps_it_active(
    backend: Backend,
) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some((world, _client, id)) = delegated_world(backend, &tenant).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    for fault in [
        Fault::SlowTokens,
        Fault::TokenStatus(429),
        Fault::TokenStatus(500),
        Fault::TokenStatus(503),
    ]
    .into_iter()
    .chain(GRAPH_FAULTS)
    {
        verify_during(&world, &caller, &tenant, &id, fault).await;
    }
}

/// Checklist 87/93: an undocumented answer from the token endpoint is Microsoft failing,
/// not Microsoft refusing the refresh token: the consent must stay `ACTIVE`.
#[both_backends]
async fn checklist_87_93_a_garbled_token_answer_never_expires_a_delegated_consent(
    backend: Backend,
) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some((world, _client, id)) = delegated_world(backend, &tenant).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    for shape in [
        ResponseFault::MalformedJson,
        ResponseFault::WrongContentType,
        ResponseFault::Redirect,
    ] {
        verify_during(&world, &caller, &tenant, &id, Fault::TokenShape(shape)).await;
    }
}

/// Checklist 87: a 503 from the token endpoint while the refresh token is redeemed for Azure
/// management (the second token request of a delegated consent) is Microsoft failing, not
/// the user refusing `user_impersonation`.
#[both_backends]
async fn checklist_87_an_azure_outage_during_a_delegated_consent_is_not_a_refused_permission(
    backend: Backend,
) {
    let tenant = healthy("contoso.onmicrosoft.com");
    let Some(world) = fault_world(backend, vec![tenant.clone()], |_| {}).await else {
        return;
    };
    let (sim, app) = (&world.sim, &world.app);
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;
    let user = tenant.user("user").unwrap().id;
    let chosen = ["MAIL_SEND", "AZURE_USER_IMPERSONATION"];

    // Healthy: a plain user grants both.
    let (outcome, html) = consent_through_the_page(
        &world,
        &start_link(&caller, &client, &chosen).await,
        user,
        "the first consent",
    )
    .await;
    assert_eq!(outcome, "succeeded", "{html}");
    let consent = consents_of(&caller, &client).await.remove(0);
    assert_eq!(consent["permissions"], json!(chosen), "{consent}");

    // Again, and the Azure management redemption meets a 503. The code exchange is held
    // for 600 ms (within the timeout) so that the fault is set between the two requests:
    // the simulator reads a request's faults when it arrives.
    let back = consent_page(&start_link(&caller, &client, &chosen).await, user, "accept").await;
    sim.set_faults(
        tenant.id,
        Faults {
            token_delay_ms: 600,
            ..Faults::default()
        },
    );
    let exchanges = token_grants(sim, "authorization_code");
    let (response, ()) = tokio::join!(callback(app, &back), async {
        eventually(Duration::from_secs(5), "the code exchange", || async {
            (token_grants(sim, "authorization_code") > exchanges).then_some(())
        })
        .await;
        sim.set_faults(tenant.id, Fault::TokenStatus(503).simulated());
    });
    let (_, html) = result_page(sim, &response, "Azure redemption 503").await;
    let failed_refresh = sim
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.param("grant_type") == Some("refresh_token"))
        .unwrap();
    assert!(
        failed_refresh
            .notes
            .iter()
            .any(|n| n == "outcome=fault-503"),
        "the set-up: the Azure redemption met the 503 ({:?})",
        failed_refresh.notes
    );
    let consent = consents_of(&caller, &client).await.remove(0);
    assert_eq!(consent["status"], "ACTIVE", "{consent}");
    assert!(
        !html.contains("need an administrator"),
        "the user is told a non-admin scope needs an administrator because Microsoft answered 503: {html}"
    );
    assert_eq!(
        consent["permissions"],
        json!(chosen),
        "a 503 is recorded as the user not granting user_impersonation: {consent}"
    );
}

/// Checklist 87, 93: service principal repair with a stored admin consent
/// (Directory.AccessAsUser.All) while Microsoft fails: with the token endpoint down the
/// consent is kept and a sign-in link is offered instead; with Graph throttling the request
/// fails with a remediation and the consent is kept; once Microsoft is well a new request
/// acts at once with the stored consent and creates the principal once.
#[both_backends]
async fn checklist_87_repair_with_a_stored_consent_survives_an_outage(backend: Backend) {
    let tenant = SimTenant::missing_teams("fabrikam.onmicrosoft.com", "Fabrikam");
    let Some(world) = fault_world(backend, vec![tenant.clone()], |s| {
        s.sweep_interval = Duration::from_millis(100);
    })
    .await
    else {
        return;
    };
    let (sim, app) = (&world.sim, &world.app);
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Fabrikam", Some(&tenant.domain), None).await;
    let admin = tenant.admin().unwrap().id;
    let link = authorise(&caller, &client).await;
    let back = admin_consent(link["url"].as_str().unwrap(), admin, "accept").await;
    callback(app, &back).await;
    assert_eq!(
        full_tile(&caller, &client).await["problem"]["code"],
        "MISSING_SERVICE_PRINCIPAL"
    );
    let (outcome, html) = consent_through_the_page(
        &world,
        &start_link(&caller, &client, &["DIRECTORY_ACCESS_AS_USER_ALL"]).await,
        admin,
        "the stored consent",
    )
    .await;
    assert_eq!(outcome, "succeeded", "{html}");
    let stored = rows(app).await.remove(0);

    // The token endpoint fails: the stored consent cannot be used now, and is kept.
    inject(sim, None, &tenant, Fault::TokenStatus(503));
    let created = caller.run(CREATE, json!({ "id": client })).await;
    let created = created.data()["createServicePrincipal"].clone();
    assert_eq!(created["status"], "PENDING_SIGN_IN", "{created}");
    assert!(
        created["signInUrl"].is_string(),
        "a sign-in instead: {created}"
    );
    let kept = rows(app).await.remove(0);
    assert_eq!(kept.status, DelegatedConsentStatus::Active);
    assert_eq!(
        kept.refresh_token, stored.refresh_token,
        "the stored token is kept"
    );
    assert!(!sim.has_service_principal(tenant.id, TEAMS));

    // Graph throttles beyond the bound: the request fails, the consent is kept.
    inject(sim, None, &tenant, Fault::GraphThrottled);
    let throttled = caller.run(CREATE, json!({ "id": client })).await;
    let throttled = throttled.data()["createServicePrincipal"].clone();
    assert_eq!(
        throttled["id"], created["id"],
        "the open request is continued"
    );
    let request = settled_within(
        &caller,
        &client,
        Duration::from_secs(20),
        "the throttled request",
    )
    .await;
    assert_eq!(request["status"], "FAILED", "{request}");
    assert_eq!(
        request["problemCode"], "IDENTITY_PROVIDER_UNAVAILABLE",
        "{request}"
    );
    assert!(
        !request["remediation"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    assert_no_raw_body(sim, "the throttled request", &request.to_string());
    assert_eq!(
        rows(app).await.remove(0).status,
        DelegatedConsentStatus::Active
    );
    assert!(!sim.has_service_principal(tenant.id, TEAMS));
    assert_eq!(posts(sim), 0);
    assert_no_flow_exchanging(app, "throttled").await;

    // Well again: a new request acts at once with the stored consent.
    heal(sim, None, &tenant);
    let again = caller.run(CREATE, json!({ "id": client })).await;
    let again = again.data()["createServicePrincipal"].clone();
    assert_ne!(again["id"], created["id"], "a new request");
    assert!(again["signInUrl"].is_null(), "no sign-in needed: {again}");
    let done = settled_within(&caller, &client, Duration::from_secs(20), "the repair").await;
    assert_eq!(done["status"], "READY", "{done}");
    assert!(sim.has_service_principal(tenant.id, TEAMS));
    assert_eq!(posts(sim), 1, "created once");
    assert_repaired(&full_tile(&caller, &client).await);
}

/// Checklist 92 ("service principal creation is idempotent on re-run") after a fault: a
/// link that reports "creating" must create.
#[both_backends]
async fn checklist_92_a_repair_that_went_ahead_cancels_its_open_sign_in_link(backend: Backend) {
    let tenant = SimTenant::missing_teams("fabrikam.onmicrosoft.com", "Fabrikam");
    let Some(world) = fault_world(backend, vec![tenant.clone()], |_| {}).await else {
        return;
    };
    let (sim, app) = (&world.sim, &world.app);
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Fabrikam", Some(&tenant.domain), None).await;
    let admin = tenant.admin().unwrap().id;
    let (outcome, html) = consent_through_the_page(
        &world,
        &start_link(&caller, &client, &["DIRECTORY_ACCESS_AS_USER_ALL"]).await,
        admin,
        "the stored consent",
    )
    .await;
    assert_eq!(outcome, "succeeded", "{html}");

    // The token endpoint is down: a sign-in link is offered (and emailed to the admin).
    inject(sim, None, &tenant, Fault::TokenStatus(503));
    let created = caller.run(CREATE, json!({ "id": client })).await;
    let link = created.data()["createServicePrincipal"]["signInUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    // Then Graph throttles while a technician retries with the stored consent: FAILED.
    inject(sim, None, &tenant, Fault::GraphThrottled);
    caller.run(CREATE, json!({ "id": client })).await;
    assert_eq!(
        settled_within(
            &caller,
            &client,
            Duration::from_secs(20),
            "the throttled request"
        )
        .await["status"],
        "FAILED"
    );

    // Microsoft recovers; the admin opens the link they were sent. The repair went ahead
    // without it, so the link was cancelled: it says so and redeems nothing.
    heal(sim, None, &tenant);
    let redeemed = |sim: &Simulator| {
        sim.requests()
            .iter()
            .filter(|r| r.param("grant_type") == Some("authorization_code"))
            .count()
    };
    let before = redeemed(sim);
    let back = consent_page(&link, admin, "accept").await;
    let response = callback(app, &back).await;
    let (outcome, html) = result_page(sim, &response, "the link").await;
    assert_eq!(outcome, "failed", "{html}");
    assert!(html.contains("no longer valid"), "{html}");
    assert_eq!(
        redeemed(sim),
        before,
        "no code redeemed for a link that was cancelled"
    );
    assert!(!sim.has_service_principal(tenant.id, TEAMS));
}

// ---------------------------------------------------------------------------------------
// 4. Service principal repair.

const CREATE: &str = "mutation($id: ID!) { createServicePrincipal(clientId: $id) {
    id status signInUrl problemCode remediation } }";

/// Checklist 86, 87, 92: a service principal repair whose admin sign-in meets a fault — the
/// code exchange slow, 5xx, malformed or redirecting, or Graph's lookup of the principal
/// malformed, redirecting or throttled beyond the bound — ends `FAILED` with a remediation;
/// nothing is created, the flow is finished, the tile still offers the repair, and a new
/// `createServicePrincipal` succeeds once Microsoft is well.
#[both_backends]
async fn checklist_86_87_92_service_principal_repair_faults_fail_cleanly_and_a_new_request_succeeds(
    backend: Backend,
) {
    let tenant = SimTenant::missing_teams("fabrikam.onmicrosoft.com", "Fabrikam");
    let Some(world) = fault_world(backend, vec![tenant.clone()], |s| {
        s.sweep_interval = Duration::from_millis(100);
    })
    .await
    else {
        return;
    };
    let (sim, app) = (&world.sim, &world.app);
    let caller = app.caller("msp-a", &["admin"]).await;
    // Its tenant id known: the sign-in goes straight to looking the principal up.
    let client = new_client(&caller, "Fabrikam", Some(&tenant.domain), Some(tenant.id)).await;
    let admin = tenant.admin().unwrap().id;
    let link = authorise(&caller, &client).await;
    let back = admin_consent(link["url"].as_str().unwrap(), admin, "accept").await;
    callback(app, &back).await;
    let tile = full_tile(&caller, &client).await;
    assert_eq!(
        tile["problem"]["code"], "MISSING_SERVICE_PRINCIPAL",
        "{tile}"
    );

    for fault in TOKEN_FAULTS.into_iter().chain(GRAPH_FAULTS) {
        let what = format!("{fault:?}");
        let created = caller.run(CREATE, json!({ "id": client })).await;
        let created = &created.data()["createServicePrincipal"];
        assert_eq!(
            created["status"], "PENDING_SIGN_IN",
            "{what}: a new request"
        );
        let url = created["signInUrl"].as_str().unwrap().to_owned();
        let back = consent_page(&url, admin, "accept").await;

        inject(sim, None, &tenant, fault);
        let since = sim.requests().len();
        let exchanges = token_grants(sim, "authorization_code");
        let response = callback(app, &back).await;
        assert_fault_met(sim, since, fault, &what);
        let (outcome, html) = result_page(sim, &response, &what).await;
        if fault.at_token_endpoint() {
            assert_eq!(outcome, "failed", "{what}: {html}");
        }
        let request = settled_within(&caller, &client, Duration::from_secs(20), &what).await;
        assert_eq!(request["id"], created["id"], "{what}");
        assert_eq!(request["status"], "FAILED", "{what}: {request}");
        assert_eq!(
            request["problemCode"], "IDENTITY_PROVIDER_UNAVAILABLE",
            "{what}: {request}"
        );
        assert!(
            !request["remediation"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{what}: {request}"
        );
        assert_no_raw_body(sim, &format!("{what}: the request"), &request.to_string());
        assert_eq!(
            token_grants(sim, "authorization_code") - exchanges,
            1,
            "{what}: the code is sent once"
        );
        assert!(
            !sim.has_service_principal(tenant.id, TEAMS),
            "{what}: nothing half-created"
        );
        assert_eq!(posts(sim), 0, "{what}");
        assert_no_flow_exchanging(app, &what).await;
        let tile = full_tile(&caller, &client).await;
        assert_eq!(
            tile["problem"]["code"], "MISSING_SERVICE_PRINCIPAL",
            "{what}: {tile}"
        );
        assert!(
            strings(&tile["availableActions"]).contains(&"CREATE_SERVICE_PRINCIPAL".to_owned()),
            "{what}: the repair is offered again: {tile}"
        );
        let trail = audit_trail(&caller, &client).await;
        assert!(
            trail
                .iter()
                .any(|e| e["action"] == "SERVICE_PRINCIPAL_REQUEST_CHANGED"
                    && e["details"]["to"] == "FAILED"
                    && e["details"]["requestId"].is_string()),
            "{what}: {trail:?}"
        );
        heal(sim, None, &tenant);
    }

    // Microsoft is well: a new request creates the principal, and Authorise succeeds.
    let created = caller.run(CREATE, json!({ "id": client })).await;
    let url = created.data()["createServicePrincipal"]["signInUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let back = consent_page(&url, admin, "accept").await;
    callback(app, &back).await;
    let done = settled_within(&caller, &client, Duration::from_secs(20), "the repair").await;
    assert_eq!(done["status"], "READY", "{done}");
    assert!(sim.has_service_principal(tenant.id, TEAMS));
    assert_eq!(posts(sim), 1, "created once");
    assert_repaired(&full_tile(&caller, &client).await);
    let link = authorise(&caller, &client).await;
    let back = admin_consent(link["url"].as_str().unwrap(), admin, "accept").await;
    callback(app, &back).await;
    assert_eq!(full_tile(&caller, &client).await["status"], "AUTHORISED");
}
