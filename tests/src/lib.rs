//! Test harness: starts the real Consentry server on port 0 with a fresh database — a
//! temporary SQLite file, or (when `TEST_DATABASE_URL` is set) a fresh PostgreSQL schema —
//! and talks to it over HTTP like any caller.

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    missing_debug_implementations
)]

use std::{future::Future, time::Duration};

use api::{
    Application, Settings,
    auth::{CallerClaims, OneOrMany, mint_hs256},
};
use reqwest::{StatusCode, header::HeaderMap};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};

pub use serde_json;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Issuer and audience of the test server's HS256 tokens.
pub const ISSUER: &str = "consentry-tests";
pub const AUDIENCE: &str = "consentry-api";

/// Runs each test twice: `sqlite::name` always, `postgres::name` when `TEST_DATABASE_URL` is
/// set (and fails, instead of skipping, when `CONSENTRY_TEST_REQUIRE_POSTGRES=1`).
#[macro_export]
macro_rules! backend_tests {
    ($($(#[$meta:meta])* async fn $name:ident($app:ident: TestApp) $body:block)*) => {
        $( $(#[$meta])* async fn $name($app: $crate::TestApp) $body )*

        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::spawn_app($crate::Backend::Sqlite).await.expect("SQLite is always available");
                    super::$name(app).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::spawn_app($crate::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

/// Runs each `async fn name(backend: Backend)` as `sqlite::name` and `postgres::name`; for
/// tests that build their own servers (the function returns early when the backend is not
/// configured).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// A fresh database for one test, removed when dropped.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    /// `CONSENTRY_TOKEN_KEYS` for servers on this database (kept across restarts).
    pub token_keys: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Directory(#[allow(dead_code)] tempfile::TempDir),
    PostgresSchema { admin_url: String, schema: String },
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Cleanup::PostgresSchema { admin_url, schema } = &self.cleanup {
            let (admin_url, schema) = (admin_url.clone(), schema.clone());
            // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    if let Ok(db) = Database::connect(&admin_url).await {
                        let _ = db
                            .execute_unprepared(&format!(
                                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                            ))
                            .await;
                        let _ = db.close().await;
                    }
                });
            })
            .join();
        }
    }
}

impl TestDatabase {
    /// A new empty database, or `None` when PostgreSQL is not configured for tests.
    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("consentry.db").display()
                );
                Some(Self {
                    url,
                    backend,
                    token_keys: new_token_keys(),
                    cleanup: Cleanup::Directory(dir),
                })
            }
            Backend::Postgres => {
                let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
                    if std::env::var("CONSENTRY_TEST_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                        panic!(
                            "CONSENTRY_TEST_REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set"
                        );
                    }
                    eprintln!("skipped: set TEST_DATABASE_URL to run the PostgreSQL variant");
                    return None;
                };
                let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| panic!("TEST_DATABASE_URL is set but unreachable: {e}"));
                admin
                    .execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
                    .await
                    .unwrap();
                admin.close().await.unwrap();
                let separator = if admin_url.contains('?') { '&' } else { '?' };
                let url = format!("{admin_url}{separator}options=-c%20search_path%3D{schema}");
                Some(Self {
                    url,
                    backend,
                    token_keys: new_token_keys(),
                    cleanup: Cleanup::PostgresSchema { admin_url, schema },
                })
            }
        }
    }

    /// The directory of an SQLite database (where generated secrets are kept).
    pub fn directory(&self) -> Option<&std::path::Path> {
        match &self.cleanup {
            Cleanup::Directory(dir) => Some(dir.path()),
            Cleanup::PostgresSchema { .. } => None,
        }
    }
}

fn new_token_keys() -> String {
    use secrecy::ExposeSecret;
    api::domain::crypto::TokenKeys::generate_setting("k1")
        .expose_secret()
        .to_owned()
}

/// Settings for a test server on `database`: port 0, an HS256 secret known to the test.
pub fn test_settings(database: &TestDatabase, secret: &str) -> Settings {
    let mut settings = Settings::defaults();
    settings.database_url = SecretString::from(database.url.clone());
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.db_max_connections = 5;
    settings.auth_hs256_secret = Some(SecretString::from(secret.to_owned()));
    settings.auth_issuer = Some(ISSUER.to_owned());
    settings.auth_audience = Some(AUDIENCE.to_owned());
    settings.auth_jwks_url = None;
    settings.cors_origins = vec!["https://app.example.com".to_owned()];
    settings.token_keys = Some(SecretString::from(database.token_keys.clone()));
    settings
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    pub port: u16,
    /// A connection of the test's own to the server's database, for arranging and asserting.
    pub db: DatabaseConnection,
    /// The server's own pool (closing it takes the server's database away).
    pub server_db: DatabaseConnection,
    pub http: reqwest::Client,
    pub secret: String,
    database: Option<TestDatabase>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Starts a server on a fresh database; `None` when the backend is not configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// Like [`spawn_app`], letting the test change settings first.
pub async fn spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    let database = TestDatabase::create(backend).await?;
    Some(start(database, configure).await)
}

/// Starts a server on an existing test database.
pub async fn start(database: TestDatabase, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let secret = format!("test-secret-{}", uuid::Uuid::new_v4());
    let mut app = launch(&database, secret, configure).await;
    app.database = Some(database);
    app
}

async fn launch(
    database: &TestDatabase,
    secret: String,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = test_settings(database, &secret);
    // Bound first so that the public URL (the OAuth redirect URI) is this very server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    settings.public_url =
        url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    configure(&mut settings);
    let app = if settings.listen.port() == 0 {
        Application::build_on(settings, listener).await
    } else {
        drop(listener);
        Application::build(settings).await
    }
    .expect("the server starts");
    let port = app.local_addr().unwrap().port();
    let server_db = app.state().db.clone();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = app
            .run_until(async {
                let _ = stopped.await;
            })
            .await;
    });
    // Every test starts from a ready server: its database answers and events reach it.
    let http = reqwest::Client::new();
    eventually(
        Duration::from_secs(30),
        "the server to be ready",
        || async {
            http.get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        },
    )
    .await;
    let db = Database::connect(&database.url).await.unwrap();
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db,
        server_db,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        secret,
        database: None,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

/// Starts the Microsoft simulator on a free loopback port with these tenants.
pub async fn start_simulator(
    tenants: Vec<api::microsoft::simulator::SimTenant>,
) -> api::microsoft::simulator::Simulator {
    let config = api::microsoft::simulator::SimulatorConfig {
        tenants,
        ..Default::default()
    };
    api::microsoft::simulator::Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the simulator starts")
}

/// Consentry's Microsoft client, pointed at `simulator`, with short timeouts for tests.
pub fn microsoft_client(
    simulator: &api::microsoft::simulator::Simulator,
) -> api::microsoft::Microsoft {
    let config = api::microsoft::MicrosoftConfig {
        client_id: simulator.client_id(),
        client_secret: SecretString::from(simulator.client_secret()),
        authority: simulator.base_url().clone(),
        graph: simulator.base_url().clone(),
        redirect_uri: "http://127.0.0.1:9/oauth/callback".parse().unwrap(),
        timeout: Duration::from_secs(2),
        max_retry_wait: Duration::from_secs(3),
        required_roles: api::microsoft::simulator::DEFAULT_REQUIRED_ROLES
            .iter()
            .map(|r| (*r).to_owned())
            .collect(),
    };
    api::microsoft::Microsoft::new(config)
        .unwrap()
        .with_key_refetch_interval(Duration::from_millis(500))
}

/// A GraphQL answer: HTTP status, headers and JSON body.
#[derive(Debug)]
pub struct GraphQLResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl GraphQLResponse {
    /// `data`, after asserting there are no errors.
    pub fn data(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none(),
            "expected no errors, got {}",
            serde_json::to_string_pretty(&self.body).unwrap()
        );
        &self.body["data"]
    }

    pub fn errors(&self) -> Vec<Value> {
        self.body["errors"].as_array().cloned().unwrap_or_default()
    }

    /// `extensions.code` of the first error, asserting there is one.
    pub fn error_code(&self) -> String {
        let errors = self.errors();
        assert!(!errors.is_empty(), "expected an error, got {}", self.body);
        errors[0]["extensions"]["code"]
            .as_str()
            .unwrap_or("(none)")
            .to_owned()
    }

    pub fn error_message(&self) -> String {
        self.errors()
            .first()
            .and_then(|e| e["message"].as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

impl TestApp {
    /// The database the server runs on.
    pub fn database(&self) -> &TestDatabase {
        self.database.as_ref().unwrap()
    }

    /// Stops the server (letting in-flight requests finish) and hands back its database, e.g.
    /// to start another server on it.
    pub async fn stop(mut self) -> TestDatabase {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.database.take().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Registers an MSP tenant (as `consentry msp add` would).
    pub async fn register_msp(&self, id: &str) {
        api::domain::msp::ensure(&self.db, id, None).await.unwrap();
    }

    /// A token for `msp` with `roles`, valid for an hour.
    pub fn token(&self, msp: &str, roles: &[&str]) -> String {
        self.token_with(|c| {
            c.msp = Some(msp.to_owned());
            c.roles = OneOrMany::Many(roles.iter().map(|r| (*r).to_owned()).collect());
        })
    }

    /// A token whose claims the test adjusts from valid defaults.
    pub fn token_with(&self, adjust: impl FnOnce(&mut CallerClaims)) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = CallerClaims {
            sub: "user@msp.example".to_owned(),
            msp: Some("msp-a".to_owned()),
            roles: OneOrMany::Many(vec!["admin".to_owned()]),
            iss: ISSUER.to_owned(),
            aud: OneOrMany::One(AUDIENCE.to_owned()),
            exp: now + 3600,
            iat: Some(now),
            nbf: None,
        };
        adjust(&mut claims);
        mint_hs256(&SecretString::from(self.secret.clone()), &claims).unwrap()
    }

    /// Registers `msp` and returns a caller with `roles` in it.
    pub async fn caller(&self, msp: &str, roles: &[&str]) -> Caller<'_> {
        self.register_msp(msp).await;
        Caller {
            app: self,
            token: Some(self.token(msp, roles)),
        }
    }

    /// A caller without a token.
    pub fn anonymous(&self) -> Caller<'_> {
        Caller {
            app: self,
            token: None,
        }
    }

    /// A caller presenting exactly this token.
    pub fn with_token(&self, token: impl Into<String>) -> Caller<'_> {
        Caller {
            app: self,
            token: Some(token.into()),
        }
    }

    /// POSTs a GraphQL operation with an optional bearer token.
    pub async fn graphql(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> GraphQLResponse {
        let mut request = self
            .http
            .post(self.url("/graphql"))
            .header("content-type", "application/json")
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        GraphQLResponse {
            status,
            headers,
            body,
        }
    }
}

/// Someone calling the API with a given token.
pub struct Caller<'a> {
    pub app: &'a TestApp,
    pub token: Option<String>,
}

impl Caller<'_> {
    pub async fn run(&self, query: &str, variables: Value) -> GraphQLResponse {
        self.app
            .graphql(self.token.as_deref(), query, variables)
            .await
    }

    /// Creates a client and returns its global id.
    pub async fn create_client(&self, name: &str) -> String {
        let response = self
            .run(
                "mutation($input: CreateClientInput!) { createClient(input: $input) { id } }",
                json!({ "input": { "name": name } }),
            )
            .await;
        response.data()["createClient"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout` (never a bare sleep).
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
