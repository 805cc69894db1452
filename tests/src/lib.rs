//! Test harness: starts the real Consentry server on port 0 with a fresh database — a
//! temporary SQLite file, or (when `TEST_DATABASE_URL` is set) a fresh PostgreSQL schema —
//! and talks to it over HTTP like any caller.

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    missing_debug_implementations
)]

use std::{future::Future, time::Duration};

use api::{Application, CallerClaims, OneOrMany, Settings, mint_hs256};
use reqwest::{StatusCode, header::HeaderMap};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};

pub use serde_json;

pub mod operations;
pub mod vault;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Issuer and audience of the test server's HS256 tokens.
pub const ISSUER: &str = "consentry-tests";
pub const AUDIENCE: &str = "consentry-api";
/// The operator's own MSP tenant of test servers (`CONSENTRY_SUPPORT_MSP`): the only one
/// whose tokens' `support` role counts.
pub const SUPPORT_MSP: &str = "msp-platform";

/// `#[both_backends]` on an `async fn name(app: TestApp)` or `async fn name(backend: Backend)`
/// runs it as `name::sqlite` always and `name::postgres` when `TEST_DATABASE_URL` is set
/// (failing, instead of skipping, when `CONSENTRY_TEST_REQUIRE_POSTGRES=1`).
pub use consentry_test_macros::both_backends;

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
    api::TokenKeys::generate_setting("k1")
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
    settings.support_msp = Some(SUPPORT_MSP.to_owned());
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
    /// The server's shared state (`None` for a server run as a process), for what only memory
    /// holds.
    pub state: Option<api::AppState>,
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

/// `TEST_LOG=1 cargo test …` shows the servers' logs (levels from `RUST_LOG`, default
/// `info`): an in-process server's as it runs, a server process's when it ends. Without it
/// the tests are quiet.
pub fn test_log() -> bool {
    std::env::var_os("TEST_LOG").is_some()
}

async fn launch(
    database: &TestDatabase,
    secret: String,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    if test_log() {
        api::init_telemetry(api::LogFormat::Text, "info");
    }
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
    let server_db = app.state().db().clone();
    let state = app.state().clone();
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
        state: Some(state),
        database: None,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

/// Starts the Microsoft simulator on a free loopback port with these tenants.
pub async fn start_simulator(tenants: Vec<simulator::SimTenant>) -> simulator::Simulator {
    let config = simulator::SimulatorConfig {
        tenants,
        ..Default::default()
    };
    simulator::Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the simulator starts")
}

/// Consentry's Microsoft client, pointed at `simulator`, with short timeouts for tests.
pub fn microsoft_client(simulator: &simulator::Simulator) -> api::Microsoft {
    let config = api::MicrosoftConfig {
        client_id: simulator.client_id(),
        client_secret: SecretString::from(simulator.client_secret()),
        authority: simulator.base_url().clone(),
        graph: simulator.base_url().clone(),
        redirect_uri: "http://127.0.0.1:9/oauth/callback".parse().unwrap(),
        timeout: Duration::from_secs(2),
        max_retry_wait: Duration::from_secs(3),
        required_roles: simulator::DEFAULT_REQUIRED_ROLES
            .iter()
            .map(|r| (*r).to_owned())
            .collect(),
    };
    api::Microsoft::new(config)
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

    /// The server's `/metrics`, as Prometheus text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one series of `/metrics`, named with its labels exactly as the server
    /// writes them (`name{label="…"}`); `None` while the server has not written it.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let prefix = format!("{series} ");
        self.metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|value| value.trim().parse().unwrap())
    }

    /// Registers an MSP tenant (as `consentry msp add` would).
    pub async fn register_msp(&self, id: &str) {
        api::ensure_msp(&self.db, id, None).await.unwrap();
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

impl TestDatabase {
    /// A new empty PostgreSQL schema in the database at `admin_url` (e.g. a
    /// [`PrivatePostgres`]), dropped with the value.
    pub async fn create_in_postgres(admin_url: &str) -> Self {
        let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(admin_url).await.unwrap();
        admin
            .execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        Self {
            url: format!("{admin_url}{separator}options=-c%20search_path%3D{schema}"),
            backend: Backend::Postgres,
            token_keys: new_token_keys(),
            cleanup: Cleanup::PostgresSchema {
                admin_url: admin_url.to_owned(),
                schema,
            },
        }
    }
}

impl TestApp {
    /// A `TestApp` for a server the test runs as a process ([`ServerProcess`]): callers,
    /// tokens and database access as usual; starting and stopping it is the process's
    /// business (`server_db` is a connection of the test's own).
    pub async fn attach(port: u16, secret: &str, database: &TestDatabase) -> TestApp {
        let db = Database::connect(&database.url).await.unwrap();
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            port,
            server_db: db.clone(),
            db,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            secret: secret.to_owned(),
            state: None,
            database: None,
            shutdown: None,
            server: None,
        }
    }
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `consentry serve` as a process of the test's own, on `database`, talking to `simulator`:
/// what `kill -9` and SIGTERM are tried on. Killed when dropped; its log is kept in a file.
pub struct ServerProcess {
    child: std::process::Child,
    pub port: u16,
    log: std::path::PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if test_log() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- the log of the server on port {} ---\n{log}", self.port);
        }
    }
}

impl ServerProcess {
    /// Starts `binary` (the tests' `env!("CARGO_BIN_EXE_consentry-under-test")`) serving on
    /// `port`, and waits until it is ready. `env` adds or overrides settings (`CONSENTRY_…`).
    pub async fn start(
        binary: &str,
        database: &TestDatabase,
        secret: &str,
        simulator: &simulator::Simulator,
        port: u16,
        env: &[(&str, &str)],
    ) -> Self {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("consentry.log");
        let file = std::fs::File::create(&log).unwrap();
        let address = format!("http://127.0.0.1:{port}");
        let mut command = std::process::Command::new(binary);
        command
            .arg("serve")
            .env("DATABASE_URL", &database.url)
            .env("CONSENTRY_LISTEN", format!("127.0.0.1:{port}"))
            .env("CONSENTRY_PUBLIC_URL", &address)
            .env("CONSENTRY_AUTH_HS256_SECRET", secret)
            .env("CONSENTRY_AUTH_ISSUER", ISSUER)
            .env("CONSENTRY_AUTH_AUDIENCE", AUDIENCE)
            .env("CONSENTRY_TOKEN_KEYS", &database.token_keys)
            .env("CONSENTRY_MS_CLIENT_ID", simulator.client_id())
            .env("CONSENTRY_MS_CLIENT_SECRET", simulator.client_secret())
            .env("CONSENTRY_MS_AUTHORITY_URL", simulator.base_url().as_str())
            .env("CONSENTRY_MS_GRAPH_URL", simulator.base_url().as_str())
            .env("CONSENTRY_DB_MAX_CONNECTIONS", "5")
            .env("RUST_LOG", "info")
            .env_remove("CONSENTRY_AUTH_JWKS_URL")
            .env_remove("CONSENTRY_CORS_ORIGINS")
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut process = Self {
            child: command.spawn().unwrap(),
            port,
            log,
            _log_dir: log_dir,
        };
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("consentry exited at start ({status}):\n{}", process.log());
            }
            let ready = http
                .get(format!("{address}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return process;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "consentry was not ready within 60 s:\n{}",
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: the process dies on the spot, whatever it was doing.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM (what an orchestrator sends to stop an instance).
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// The exit status, once the process has exited; panics after `within`.
    pub async fn exited(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "consentry still running {within:?} after it was asked to stop:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A PostgreSQL server of the test's own (its own data directory and port), so that a test
/// can stop and restart it without disturbing other tests.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
    /// `Some("postgres")` when the tests run as root (PostgreSQL refuses to run as root).
    user: Option<&'static str>,
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
    }
}

impl PrivatePostgres {
    /// Creates and starts one; `None` when PostgreSQL's server programs are not installed
    /// (a panic instead under `CONSENTRY_TEST_REQUIRE_POSTGRES=1`).
    pub fn start() -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            assert!(
                std::env::var("CONSENTRY_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "CONSENTRY_TEST_REQUIRE_POSTGRES=1 but no PostgreSQL server programs (initdb, pg_ctl) were found"
            );
            eprintln!("skipped: PostgreSQL's server programs are not installed");
            return None;
        };
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let user = root.then_some("postgres");
        let dir = tempfile::tempdir().unwrap();
        if let Some(user) = user {
            let status = std::process::Command::new("chown")
                .args(["-R", user, &dir.path().display().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "chown of the data directory failed");
        }
        let postgres = Self {
            dir,
            bin,
            port: free_port(),
            user,
        };
        let data = postgres.data();
        let initdb = postgres.bin.join("initdb").display().to_string();
        postgres.run(&[
            &initdb,
            "-D",
            &data,
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        postgres.start_again();
        Some(postgres)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts (again) and waits until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        let status = self.pg_ctl(&["start", "-w", "-t", "60", "-o", &options, "-l", &log]);
        assert!(
            status,
            "PostgreSQL did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops it as a crash would (`pg_ctl stop -m immediate`): every connection drops.
    pub fn stop(&self) {
        assert!(
            self.pg_ctl(&["stop", "-w", "-m", "immediate"]),
            "pg_ctl stop failed"
        );
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let data = self.data();
        let mut all = vec![pg_ctl.as_str(), "-D", data.as_str()];
        all.extend_from_slice(args);
        self.command(&all)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn run(&self, args: &[&str]) {
        let output = self.command(args).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        match self.user {
            Some(user) => {
                let mut command = std::process::Command::new("runuser");
                command.args(["-u", user, "--"]).args(args);
                command
            }
            None => {
                let mut command = std::process::Command::new(args[0]);
                command.args(&args[1..]);
                command
            }
        }
    }
}

/// The directory of PostgreSQL's server programs (Debian keeps them per version).
fn postgres_bin() -> Option<std::path::PathBuf> {
    let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}
