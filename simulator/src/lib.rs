//! A faithful local stand-in for Microsoft's identity platform and the Graph endpoints
//! Consentry calls, on Microsoft's own paths (docs/design.md §3, `docs/microsoft-identity.md`).
//! Tests and `consentry demo` run against it; `consentry serve` never falls back to it.
//!
//! Its consent and sign-in pages are real HTML a person can click through; its tokens are
//! RS256 JWTs signed with keys it generates (and rotates on request); its tenants are
//! scenarios (healthy, missing the Teams admin API principal, declining, not admin, MFA,
//! Conditional Access, throttled, slow or failing, expired refresh tokens); and it records
//! every request so tests can assert what Consentry sent.

// Handlers answer refusals early with a finished `Response` as the error value; its size is
// irrelevant in a test stand-in.
#![allow(clippy::result_large_err)]

pub mod browser;
mod graph;
mod identity;
mod keys;
mod pages;
pub mod scenario;

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex, RwLock},
};

use axum::{
    Json, Router,
    extract::{Path as UrlPath, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post, put},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use url::Url;
use uuid::Uuid;

pub use scenario::{
    Faults, IdTokenAttack, ResponseFault, SimTenant, SimUser, Throttle, demo_tenants, stable_id,
};

use self::keys::KeyRing;

/// The app registration the simulator knows, and the tenants it simulates.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimulatorConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Registered redirect URIs; empty accepts any (tests on random ports).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// The application permissions the app registration requires (`requiredResourceAccess`);
    /// admin consent grants these.
    pub required_roles: Vec<String>,
    /// Whether id_tokens carry `wids`, the user's directory roles: Microsoft adds them when the
    /// app registration's `groupMembershipClaims` is `DirectoryRole` or `All`.
    #[serde(default = "yes")]
    pub directory_roles_in_id_tokens: bool,
    #[serde(default)]
    pub tenants: Vec<SimTenant>,
}

fn yes() -> bool {
    true
}

/// Directory role template ids the simulator puts in `wids`.
pub mod roles {
    use uuid::Uuid;

    /// Global Administrator: the simulator's admins hold it.
    pub const GLOBAL_ADMINISTRATOR: Uuid = Uuid::from_u128(0x62e90394_69f5_4237_9190_012177145e10);
    /// The role every member of a tenant holds ("User").
    pub const USER: Uuid = Uuid::from_u128(0xb79fbf4d_3ef9_4689_8143_76b194e85509);
}

/// The application permissions the simulator's app registration requires by default.
pub const DEFAULT_REQUIRED_ROLES: [&str; 3] = [
    "Organization.Read.All",
    "Directory.Read.All",
    "Application.Read.All",
];

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            client_id: stable_id("consentry-simulator-app").to_string(),
            client_secret: format!("sim-secret-{}", Uuid::new_v4().simple()),
            redirect_uris: Vec::new(),
            required_roles: DEFAULT_REQUIRED_ROLES
                .iter()
                .map(|r| (*r).to_owned())
                .collect(),
            directory_roles_in_id_tokens: true,
            tenants: Vec::new(),
        }
    }
}

impl SimulatorConfig {
    /// Reads the configuration (or only a list of tenants) from a JSON file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        if let Ok(tenants) = serde_json::from_str::<Vec<SimTenant>>(&text) {
            return Ok(Self {
                tenants,
                ..Self::default()
            });
        }
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} is neither a list of tenants nor a simulator configuration: {e}",
                path.display()
            )
        })
    }
}

/// One request the simulator received.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRequest {
    pub at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub form: BTreeMap<String, String>,
    /// What the simulator concluded, e.g. `pkce=ok` or `code=already-redeemed`.
    pub notes: Vec<String>,
}

impl RecordedRequest {
    /// A parameter from the query or the form.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .or_else(|| self.form.get(name))
            .map(String::as_str)
    }
}

/// A tenant with what has happened to it.
struct TenantState {
    spec: SimTenant,
    /// The app's application permissions granted by admin consent.
    granted_roles: Option<Vec<String>>,
    /// Created service principals: appId → (object id, lookups still invisible).
    created: HashMap<String, (Uuid, u32)>,
    graph_calls: u32,
}

/// What a simulator has come to know since it started, beyond its configuration: what each
/// tenant's admins consented to, the service principals created, the refresh tokens issued.
/// Saved beside a demo's database and given back at its next start, a restarted demo agrees
/// with the tiles and consents that database remembers.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SimulatorState {
    /// The port it listened on, to listen on again (so that links already sent still work).
    pub port: u16,
    pub tenants: Vec<SavedTenant>,
    /// Refresh tokens issued and not yet rotated away.
    pub refresh_tokens: Vec<SavedRefreshToken>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedTenant {
    pub id: Uuid,
    /// The app's application permissions the tenant's admin granted.
    pub granted_roles: Option<Vec<String>>,
    /// appId → object id of each service principal created (visible everywhere by now).
    pub created: Vec<(String, Uuid)>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedRefreshToken {
    pub token: String,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub scopes: Vec<String>,
}

/// An authorization code waiting to be redeemed.
struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    tenant_id: Uuid,
    user_id: Uuid,
    scopes: Vec<String>,
    nonce: Option<String>,
    challenge: Option<(String, String)>,
    issued_at: DateTime<Utc>,
    redeemed: bool,
}

/// A refresh token's grant.
#[derive(Clone)]
struct RefreshGrant {
    tenant_id: Uuid,
    user_id: Uuid,
    scopes: Vec<String>,
}

/// What an access token the simulator issued allows (checked by its Graph endpoints).
#[derive(Clone)]
struct AccessGrant {
    tenant_id: Uuid,
    /// `None` for app-only tokens.
    user_id: Option<Uuid>,
    roles: Vec<String>,
    scopes: Vec<String>,
}

struct Inner {
    base_url: Url,
    config: RwLock<SimulatorConfig>,
    keys: RwLock<KeyRing>,
    tenants: RwLock<Vec<TenantState>>,
    codes: Mutex<HashMap<String, CodeGrant>>,
    refresh_tokens: Mutex<HashMap<String, RefreshGrant>>,
    access_tokens: Mutex<HashMap<String, AccessGrant>>,
    requests: Mutex<Vec<RecordedRequest>>,
}

type Shared = Arc<Inner>;

/// A running simulator.
pub struct Simulator {
    inner: Shared,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("base_url", &self.inner.base_url.as_str())
            .finish()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Reads a running simulator's state (see [`Simulator::state_reader`]).
#[derive(Clone)]
pub struct StateReader {
    inner: Shared,
    port: u16,
}

impl StateReader {
    pub fn state(&self) -> SimulatorState {
        state_of(&self.inner, self.port)
    }
}

fn state_of(inner: &Inner, port: u16) -> SimulatorState {
    let tenants = read(&inner.tenants)
        .iter()
        .map(|t| {
            let mut created: Vec<(String, Uuid)> = t
                .created
                .iter()
                .map(|(app, (id, _))| (app.clone(), *id))
                .collect();
            created.sort();
            SavedTenant {
                id: t.spec.id,
                granted_roles: t.granted_roles.clone(),
                created,
            }
        })
        .collect();
    let mut refresh_tokens: Vec<SavedRefreshToken> = lock(&inner.refresh_tokens)
        .iter()
        .map(|(token, grant)| SavedRefreshToken {
            token: token.clone(),
            tenant_id: grant.tenant_id,
            user_id: grant.user_id,
            scopes: grant.scopes.clone(),
        })
        .collect();
    refresh_tokens.sort_by(|a, b| a.token.cmp(&b.token));
    SimulatorState {
        port,
        tenants,
        refresh_tokens,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Simulator {
    /// Starts the simulator on `addr` (port 0 picks a free port).
    pub async fn start(config: SimulatorConfig, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("the Microsoft simulator cannot listen on {addr}: {e}"))?;
        let addr = listener.local_addr()?;
        let base_url = Url::parse(&format!("http://{addr}"))?;
        let tenants = config
            .tenants
            .iter()
            .cloned()
            .map(|spec| TenantState {
                spec,
                granted_roles: None,
                created: HashMap::new(),
                graph_calls: 0,
            })
            .collect();
        let keys = tokio::task::spawn_blocking(KeyRing::new).await??;
        let inner = Arc::new(Inner {
            base_url,
            config: RwLock::new(config),
            keys: RwLock::new(keys),
            tenants: RwLock::new(tenants),
            codes: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            access_tokens: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
        });
        let router = router(inner.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(without_nagle(listener), router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        tracing::info!(%addr, "Microsoft simulator listening");
        Ok(Self {
            inner,
            addr,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: both the authority and the Graph base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    pub fn client_id(&self) -> String {
        read(&self.inner.config).client_id.clone()
    }

    pub fn client_secret(&self) -> String {
        read(&self.inner.config).client_secret.clone()
    }

    /// What it knows now (see [`SimulatorState`]).
    pub fn state(&self) -> SimulatorState {
        state_of(&self.inner, self.addr.port())
    }

    /// Reads its state from elsewhere (a task that saves it while it runs).
    pub fn state_reader(&self) -> StateReader {
        StateReader {
            inner: self.inner.clone(),
            port: self.addr.port(),
        }
    }

    /// Takes back what an earlier run knew, for the tenants it still simulates.
    pub fn restore(&self, state: &SimulatorState) {
        let mut tenants = write(&self.inner.tenants);
        for saved in &state.tenants {
            if let Some(tenant) = tenants.iter_mut().find(|t| t.spec.id == saved.id) {
                tenant.granted_roles = saved.granted_roles.clone();
                tenant.created = saved
                    .created
                    .iter()
                    .map(|(app, id)| (app.clone(), (*id, 0)))
                    .collect();
            }
        }
        let known: Vec<Uuid> = tenants.iter().map(|t| t.spec.id).collect();
        drop(tenants);
        let mut refresh_tokens = lock(&self.inner.refresh_tokens);
        for saved in &state.refresh_tokens {
            if known.contains(&saved.tenant_id) {
                refresh_tokens.insert(
                    saved.token.clone(),
                    RefreshGrant {
                        tenant_id: saved.tenant_id,
                        user_id: saved.user_id,
                        scopes: saved.scopes.clone(),
                    },
                );
            }
        }
    }

    /// Adds a tenant, or replaces the one with the same id.
    pub fn put_tenant(&self, tenant: SimTenant) {
        put_tenant(&self.inner, tenant);
    }

    /// Changes a tenant's faults.
    pub fn set_faults(&self, tenant_id: Uuid, faults: Faults) {
        if let Some(state) = write(&self.inner.tenants)
            .iter_mut()
            .find(|t| t.spec.id == tenant_id)
        {
            state.spec.faults = faults;
            state.graph_calls = 0;
        }
    }

    /// Publishes a new signing key (which signs from now on); with `retire`, the old keys are
    /// no longer published. Returns the new `kid`.
    pub fn rotate_keys(&self, retire: bool) -> anyhow::Result<String> {
        write(&self.inner.keys).rotate(retire)
    }

    /// Signs arbitrary claims with the active key (for tests of id_token validation).
    pub fn sign(&self, claims: &serde_json::Value) -> anyhow::Result<String> {
        read(&self.inner.keys).active().sign(claims)
    }

    /// Signs claims with the active key but without `kid` in the header (checklist 34–35).
    pub fn sign_without_kid(&self, claims: &serde_json::Value) -> anyhow::Result<String> {
        read(&self.inner.keys).active().sign_without_kid(claims)
    }

    /// Every code, access token and refresh token issued so far (for canary tests: none may
    /// ever show up in Consentry's logs, responses or audit trail).
    pub fn issued_secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = lock(&self.inner.codes).keys().cloned().collect();
        secrets.extend(lock(&self.inner.refresh_tokens).keys().cloned());
        secrets.extend(lock(&self.inner.access_tokens).keys().cloned());
        secrets
    }

    /// Everything received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.requests).clone()
    }

    /// Whether a tenant has the service principal of `app_id` (created or never missing).
    pub fn has_service_principal(&self, tenant_id: Uuid, app_id: &str) -> bool {
        read(&self.inner.tenants)
            .iter()
            .find(|t| t.spec.id == tenant_id)
            .is_some_and(|t| {
                !t.spec
                    .missing_service_principals
                    .iter()
                    .any(|a| a == app_id)
                    || t.created.contains_key(app_id)
            })
    }

    /// The application permissions a tenant's admin consent granted, if any.
    pub fn granted_roles(&self, tenant_id: Uuid) -> Option<Vec<String>> {
        read(&self.inner.tenants)
            .iter()
            .find(|t| t.spec.id == tenant_id)?
            .granted_roles
            .clone()
    }

    /// Consent as an admin of the tenant would, without the pages (for tests and the demo).
    pub fn grant_admin_consent(&self, tenant_id: Uuid) {
        let required = read(&self.inner.config).required_roles.clone();
        if let Some(state) = write(&self.inner.tenants)
            .iter_mut()
            .find(|t| t.spec.id == tenant_id)
        {
            state.granted_roles = Some(state.spec.faults.granted_roles.clone().unwrap_or(required));
        }
    }

    /// Removes a tenant's admin consent (as an admin deleting the enterprise app would).
    pub fn revoke_admin_consent(&self, tenant_id: Uuid) {
        if let Some(state) = write(&self.inner.tenants)
            .iter_mut()
            .find(|t| t.spec.id == tenant_id)
        {
            state.granted_roles = None;
        }
    }

    /// Stops serving and waits until the listener is closed.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

fn put_tenant(inner: &Inner, tenant: SimTenant) {
    let mut tenants = write(&inner.tenants);
    if let Some(state) = tenants.iter_mut().find(|t| t.spec.id == tenant.id) {
        state.spec = tenant;
    } else {
        tenants.push(TenantState {
            spec: tenant,
            granted_roles: None,
            created: HashMap::new(),
            graph_calls: 0,
        });
    }
}

fn record(
    inner: &Inner,
    method: &str,
    path: &str,
    query: &BTreeMap<String, String>,
    form: &BTreeMap<String, String>,
) -> usize {
    let mut requests = lock(&inner.requests);
    requests.push(RecordedRequest {
        at: Utc::now(),
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.clone(),
        form: form.clone(),
        notes: Vec::new(),
    });
    requests.len() - 1
}

fn note(inner: &Inner, index: usize, note: impl Into<String>) {
    if let Some(request) = lock(&inner.requests).get_mut(index) {
        request.notes.push(note.into());
    }
}

/// A tenant by its `{tenant}` path segment: id or any of its domains. `organizations` and
/// `common` name no tenant.
fn find_tenant(inner: &Inner, segment: &str) -> Option<SimTenant> {
    let tenants = read(&inner.tenants);
    let segment = segment.to_ascii_lowercase();
    tenants
        .iter()
        .find(|t| t.spec.id.to_string() == segment || t.spec.domain.eq_ignore_ascii_case(&segment))
        .map(|t| t.spec.clone())
}

fn all_tenants(inner: &Inner) -> Vec<SimTenant> {
    read(&inner.tenants)
        .iter()
        .map(|t| t.spec.clone())
        .collect()
}

fn router(inner: Shared) -> Router {
    Router::new()
        .route(
            "/{tenant}/v2.0/adminconsent",
            get(identity::admin_consent_page).post(identity::admin_consent_decision),
        )
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(identity::authorize_page).post(identity::authorize_decision),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(identity::token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(identity::openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(identity::keys))
        .route("/v1.0/organization", get(graph::organization))
        .route("/v1.0/me", get(graph::me))
        .route(
            "/v1.0/servicePrincipals",
            get(graph::list_service_principals).post(graph::create_service_principal),
        )
        .route("/", get(index))
        .route("/_simulator/requests", get(control_requests))
        .route("/_simulator/tenants", get(control_tenants))
        .route("/_simulator/tenants/{id}", put(control_put_tenant))
        .route("/_simulator/keys/rotate", post(control_rotate))
        .with_state(inner)
}

async fn control_requests(State(inner): State<Shared>) -> impl IntoResponse {
    Json(lock(&inner.requests).clone())
}

async fn index(State(inner): State<Shared>) -> impl IntoResponse {
    axum::response::Html(pages::index(&all_tenants(&inner)))
}

async fn control_tenants(State(inner): State<Shared>) -> impl IntoResponse {
    Json(all_tenants(&inner))
}

async fn control_put_tenant(
    State(inner): State<Shared>,
    UrlPath(id): UrlPath<Uuid>,
    Json(tenant): Json<SimTenant>,
) -> impl IntoResponse {
    if tenant.id != id {
        return (
            StatusCode::BAD_REQUEST,
            "the tenant's id must match the path",
        )
            .into_response();
    }
    put_tenant(&inner, tenant);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct RotateQuery {
    #[serde(default)]
    retire: bool,
}

async fn control_rotate(
    State(inner): State<Shared>,
    axum::extract::Query(query): axum::extract::Query<RotateQuery>,
) -> impl IntoResponse {
    match write(&inner.keys).rotate(query.retire) {
        Ok(kid) => Json(serde_json::json!({ "kid": kid })).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The listener with `TCP_NODELAY` on every accepted connection: the simulator answers in
/// small writes that Nagle's algorithm would hold back for a delayed ACK.
fn without_nagle(
    listener: TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    })
}
