//! The scenarios, and what they share: the run's directory, its databases, and how its
//! servers are started.

mod callbacks;
mod cross_instance;
mod dashboard;
mod footprint;
mod paging;
mod subscribers;
mod worst;

use std::{sync::Mutex, time::Duration};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use simulator::{SimTenant, Simulator, SimulatorConfig};
use tokio::sync::OnceCell;

use crate::{
    Options, Scenario,
    database::{self, Backend, Database},
    process::{Server, free_port},
    report::Row,
};

/// One benchmark run.
pub(crate) struct Bench {
    options: Options,
    work: tempfile::TempDir,
    /// PostgreSQL's admin URL, or why PostgreSQL is not measured.
    postgres: Result<String, String>,
    schemas: Mutex<Vec<String>>,
    /// The HS256 secret every server of the run accepts.
    secret: String,
    /// `CONSENTRY_TOKEN_KEYS` of the run's servers.
    token_keys: String,
    /// What an idle WebSocket costs with axum's defaults (measured once, when first needed).
    default_socket_cost: OnceCell<f64>,
    /// The Node.js peer, or why it is not measured (prepared when first needed).
    node_peer: OnceCell<Result<crate::peer::NodePeer, String>>,
}

impl Bench {
    pub(crate) async fn prepare(options: &Options) -> anyhow::Result<Self> {
        let work = tempfile::Builder::new()
            .prefix("consentry-bench-")
            .tempdir()?;
        let postgres = if options.sqlite_only {
            Err("--sqlite-only".to_owned())
        } else {
            reachable(&options.postgres_url).await
        };
        if let Err(why) = &postgres {
            eprintln!("PostgreSQL rows are skipped: {why}");
        }
        use secrecy::ExposeSecret;
        Ok(Self {
            options: options.clone(),
            work,
            postgres,
            schemas: Mutex::new(Vec::new()),
            secret: format!("bench-secret-{}", uuid::Uuid::new_v4()),
            token_keys: api::TokenKeys::generate_setting("bench")
                .expose_secret()
                .to_owned(),
            default_socket_cost: OnceCell::new(),
            node_peer: OnceCell::new(),
        })
    }

    /// Runs one scenario on every backend it applies to; failures become error rows.
    pub(crate) async fn run(&self, scenario: Scenario) -> Vec<Row> {
        let (target, name, backends): (u8, &str, &[Backend]) = match scenario {
            Scenario::Dashboard => (2, "dashboard", &[Backend::Sqlite, Backend::Postgres]),
            Scenario::Subscribers => (3, "subscribers", &[Backend::Sqlite, Backend::Postgres]),
            Scenario::CrossInstance => (4, "cross-instance delivery", &[Backend::Postgres]),
            Scenario::Callbacks => (5, "callbacks", &[Backend::Sqlite, Backend::Postgres]),
            Scenario::Footprint => (6, "footprint", &[Backend::Sqlite, Backend::Postgres]),
            Scenario::WorstOperation => {
                (7, "worst operation", &[Backend::Sqlite, Backend::Postgres])
            }
            Scenario::Paging => (9, "paging", &[Backend::Sqlite, Backend::Postgres]),
        };
        let mut rows = Vec::new();
        for &backend in backends {
            if backend == Backend::Postgres
                && let Err(why) = &self.postgres
            {
                rows.push(Row::new(target, name, backend.label()).skipped(why.clone()));
                continue;
            }
            let result = match scenario {
                Scenario::Dashboard => dashboard::run(self, backend).await,
                Scenario::Subscribers => subscribers::run(self, backend).await,
                Scenario::CrossInstance => cross_instance::run(self).await,
                Scenario::Callbacks => callbacks::run(self, backend).await,
                Scenario::Footprint => footprint::run(self, backend).await,
                Scenario::WorstOperation => worst::run(self, backend).await,
                Scenario::Paging => paging::run(self, backend).await,
            };
            match result {
                Ok(measured) => rows.extend(measured),
                Err(error) => {
                    eprintln!("{name} on {} failed: {error:#}", backend.label());
                    rows.push(Row::new(target, name, backend.label()).error(&error));
                }
            }
        }
        rows
    }

    /// Drops the run's PostgreSQL schemas (the SQLite files go with the run's directory,
    /// unless `--keep`).
    pub(crate) async fn finish(self) {
        if self.options.keep {
            let kept = self.work.keep();
            eprintln!(
                "kept the run's databases and server logs in {}",
                kept.display()
            );
        }
        if let Ok(admin) = &self.postgres {
            let schemas = self.schemas.lock().map(|s| s.clone()).unwrap_or_default();
            database::drop_schemas(admin, &schemas).await;
        }
    }

    /// A new empty database on `backend`.
    pub(crate) async fn database(&self, backend: Backend, name: &str) -> anyhow::Result<Database> {
        match backend {
            Backend::Sqlite => Ok(Database::sqlite(self.work.path(), name)),
            Backend::Postgres => {
                let admin = self
                    .postgres
                    .as_ref()
                    .map_err(|why| anyhow::anyhow!("{why}"))?;
                let (database, schema) = Database::postgres(admin).await?;
                if let Ok(mut schemas) = self.schemas.lock() {
                    schemas.push(schema);
                }
                Ok(database)
            }
        }
    }

    /// The environment of a server on `db` listening on `port`; with a simulator, Consentry's
    /// Microsoft settings point at it.
    fn environment(
        &self,
        db: &Database,
        port: u16,
        simulator: Option<&Simulator>,
    ) -> Vec<(String, String)> {
        let mut env = vec![
            ("DATABASE_URL".to_owned(), db.url.clone()),
            ("CONSENTRY_LISTEN".to_owned(), format!("127.0.0.1:{port}")),
            (
                "CONSENTRY_PUBLIC_URL".to_owned(),
                format!("http://127.0.0.1:{port}"),
            ),
            (
                "CONSENTRY_AUTH_HS256_SECRET".to_owned(),
                self.secret.clone(),
            ),
            ("CONSENTRY_TOKEN_KEYS".to_owned(), self.token_keys.clone()),
            // Every load comes from one caller of one MSP: its per-caller and per-MSP budgets
            // would be measured instead of the server.
            (
                "CONSENTRY_MSP_QUERIES_PER_MINUTE".to_owned(),
                "0".to_owned(),
            ),
            (
                "CONSENTRY_MSP_MUTATIONS_PER_MINUTE".to_owned(),
                "0".to_owned(),
            ),
            (
                "CONSENTRY_WS_CONNECTIONS_PER_CALLER".to_owned(),
                "0".to_owned(),
            ),
            (
                "CONSENTRY_WS_MESSAGES_PER_MINUTE".to_owned(),
                "0".to_owned(),
            ),
        ];
        if let Some(simulator) = simulator {
            let base = simulator.base_url().to_string();
            env.extend([
                ("CONSENTRY_MS_CLIENT_ID".to_owned(), simulator.client_id()),
                (
                    "CONSENTRY_MS_CLIENT_SECRET".to_owned(),
                    simulator.client_secret(),
                ),
                ("CONSENTRY_MS_AUTHORITY_URL".to_owned(), base.clone()),
                ("CONSENTRY_MS_GRAPH_URL".to_owned(), base),
            ]);
        }
        env
    }

    /// Starts Consentry (`consentry serve`) on `db`.
    async fn consentry(
        &self,
        name: &str,
        db: &Database,
        simulator: Option<&Simulator>,
    ) -> anyhow::Result<Server> {
        self.consentry_with(name, db, simulator, &[]).await
    }

    /// Starts Consentry on `db` with these settings besides the run's.
    async fn consentry_with(
        &self,
        name: &str,
        db: &Database,
        simulator: Option<&Simulator>,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let port = free_port()?;
        let mut env = self.environment(db, port, simulator);
        env.extend(
            settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let wrap: Vec<&str> = self
            .options
            .wrap
            .as_deref()
            .map(|w| w.split_whitespace().collect())
            .unwrap_or_default();
        Server::start(
            name,
            &wrap,
            &["consentry", "serve"],
            &env,
            port,
            self.work.path(),
        )
        .await
    }

    /// Starts the plain axum baseline on `db`.
    async fn baseline(&self, name: &str, db: &Database) -> anyhow::Result<Server> {
        let port = free_port()?;
        let env = self.environment(db, port, None);
        Server::start(name, &[], &["baseline"], &env, port, self.work.path()).await
    }

    /// Starts the Node.js peer over the SQLite database `db`, or says why it cannot.
    async fn node_peer(&self, name: &str, db: &Database) -> anyhow::Result<Result<Server, String>> {
        let peer = self
            .node_peer
            .get_or_init(|| {
                crate::peer::NodePeer::prepare(
                    self.options
                        .node_peer_dir
                        .clone()
                        .unwrap_or_else(crate::peer::default_dir),
                    !self.options.no_npm_install,
                )
            })
            .await;
        let peer = match peer {
            Ok(peer) => peer,
            Err(why) => return Ok(Err(why.clone())),
        };
        let path = db
            .sqlite_path()
            .context("the Node peer reads an SQLite database")?;
        Ok(Ok(peer
            .start(name, &path, crate::seed::MSP, self.work.path())
            .await?))
    }

    /// A simulated tenant, a database on `backend` with one client of it, and the client's
    /// global id: what the subscription scenarios change.
    async fn one_client(
        &self,
        backend: Backend,
        name: &str,
    ) -> anyhow::Result<(Simulator, Database, String)> {
        let tenant = SimTenant::healthy(&format!("{}.onmicrosoft.com", name.to_lowercase()), name);
        let sim = simulator(vec![tenant.clone()]).await?;
        let db = self.database(backend, &name.to_lowercase()).await?;
        let connection = db.connect().await?;
        let viewer = crate::seed::admin(&connection).await?;
        let client =
            crate::seed::client(&connection, &viewer, name.to_owned(), Some(tenant.domain)).await?;
        connection.close().await?;
        Ok((sim, db, client_id(client)))
    }

    fn token(&self) -> anyhow::Result<String> {
        crate::seed::token(&self.secret)
    }

    fn quick(&self) -> bool {
        self.options.quick
    }
}

/// Whether PostgreSQL answers at `url` (the reason, without any password, when not).
async fn reachable(url: &str) -> Result<String, String> {
    let shown = url::Url::parse(url)
        .map(|mut u| {
            let _ = u.set_password(None);
            u.to_string()
        })
        .unwrap_or_else(|_| "the configured URL".to_owned());
    match tokio::time::timeout(Duration::from_secs(5), sea_orm::Database::connect(url)).await {
        Ok(Ok(db)) => {
            let _ = db.close().await;
            Ok(url.to_owned())
        }
        Ok(Err(error)) => Err(format!("PostgreSQL unreachable at {shown} ({error})")),
        Err(_) => Err(format!("PostgreSQL did not answer at {shown} within 5 s")),
    }
}

/// A simulator with these tenants, in this process.
async fn simulator(tenants: Vec<SimTenant>) -> anyhow::Result<Simulator> {
    Simulator::start(
        SimulatorConfig {
            tenants,
            ..SimulatorConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await
}

/// A change to a client's tile that needs no Microsoft call: a new consent link (its `url`
/// is what the admin opens).
const AUTHORISE: &str = "mutation($id: ID!) { authoriseGraphApi(clientId: $id) { url } }";

/// Runs a GraphQL operation on `server` and returns its `data`, failing on any error.
async fn graphql(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let response: Value = http
        .post(format!("{}/graphql", server.base))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?
        .json()
        .await?;
    if let Some(errors) = response.get("errors") {
        bail!("GraphQL answered errors: {errors}");
    }
    Ok(response["data"].clone())
}

/// A Prometheus sample from `server`'s `/metrics`: the value of the line starting `series `.
async fn metric(http: &reqwest::Client, server: &Server, series: &str) -> anyhow::Result<f64> {
    let text = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await?
        .text()
        .await?;
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .with_context(|| format!("no {series} on /metrics"))?
        .trim()
        .parse()
        .with_context(|| format!("{series} is not a number"))
}

/// Waits until `server` holds `n` open subscriptions.
async fn live(
    http: &reqwest::Client,
    server: &Server,
    n: usize,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let open = metric(http, server, "consentry_graphql_subscriptions_active")
            .await
            .unwrap_or(0.0);
        if open as usize >= n {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("only {open} of {n} subscriptions were live after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The global id GraphQL gives a client.
fn client_id(id: uuid::Uuid) -> String {
    api::GlobalId::new(api::IdKind::Client, id).encode().0
}
