//! `consentry demo`: Consentry on its embedded database with the built-in Microsoft simulator
//! in-process, one MSP with a sample client per simulated scenario, and the dashboard and
//! GraphiQL with a ready admin token — so a newcomer can click through every flow with nothing
//! installed.

#![allow(clippy::print_stdout)]

use std::{net::SocketAddr, path::PathBuf};

use chrono::Utc;
use secrecy::SecretString;
use simulator::{Simulator, SimulatorConfig, SimulatorState, demo_tenants};
use tokio::net::TcpListener;

use crate::{
    app::Application,
    app::shutdown_signal,
    auth::{self, CallerClaims, OneOrMany, Role, Viewer},
    config::{CallerAuthSettings, Settings},
    domain::{self, clients::NewClient},
};

/// The MSP the demo creates.
pub(crate) const DEMO_MSP: &str = "demo";

/// Options of `consentry demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// The demo's own database, kept apart from `DATABASE_URL`.
    #[arg(
        long,
        env = "CONSENTRY_DEMO_DATABASE_URL",
        default_value = "sqlite://consentry-demo.db?mode=rwc"
    )]
    pub demo_database_url: String,
    /// Simulated tenants (or a whole simulator configuration) from a JSON file, instead of
    /// the built-in scenarios.
    #[arg(long, env = "CONSENTRY_DEMO_TENANTS")]
    pub simulator_tenants: Option<PathBuf>,
    /// Where the Microsoft simulator listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub simulator_listen: SocketAddr,
}

/// Runs the demo until Ctrl-C.
pub(crate) async fn run(mut settings: Settings, args: DemoArgs) -> anyhow::Result<()> {
    settings.database_url = SecretString::from(args.demo_database_url.clone());
    let CallerAuthSettings::Hs256 {
        issuer, audience, ..
    } = settings.caller_auth()?
    else {
        anyhow::bail!("the demo signs its own admin token: unset CONSENTRY_AUTH_JWKS_URL for it");
    };

    let (mut config, descriptions) = match &args.simulator_tenants {
        Some(path) => (SimulatorConfig::from_file(path)?, Vec::new()),
        None => {
            let presets = demo_tenants();
            let descriptions = presets
                .iter()
                .map(|(t, d)| (t.domain.clone(), (*d).to_owned()))
                .collect();
            let config = SimulatorConfig {
                tenants: presets.into_iter().map(|(t, _)| t).collect(),
                ..SimulatorConfig::default()
            };
            (config, descriptions)
        }
    };
    // The demo's client secret is fixed so that restarts keep working with one database.
    config.client_secret = "consentry-demo-simulator-secret".to_owned();
    // The simulated app registration requires what Consentry checks for.
    config.required_roles = settings.required_roles();
    let tenants = config.tenants.clone();
    let saved = SavedSimulator::beside(&settings)?;
    let simulator = saved.start(config, args.simulator_listen).await?;
    settings.use_simulator(&simulator);
    // Background steps (expired links, replication of a created principal) show within a
    // second or two, not the production default of 30 s.
    if settings.sweep_interval == Settings::defaults().sweep_interval {
        settings.sweep_interval = std::time::Duration::from_secs(1);
    }

    // Bind first, so that the public URL (the OAuth redirect URI) is this very server.
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
    settings.settle_public_url(listener.local_addr()?);
    let secret = auth::resolve_hs256_secret(&settings)?;
    let now = Utc::now().timestamp();
    let token = auth::mint_hs256(
        &secret,
        &CallerClaims {
            sub: "demo-admin".to_owned(),
            msp: Some(DEMO_MSP.to_owned()),
            roles: OneOrMany::Many(vec![Role::Admin.as_str().to_owned()]),
            iss: issuer,
            aud: OneOrMany::One(audience),
            // As long as the server accepts (CONSENTRY_AUTH_MAX_TOKEN_LIFETIME).
            exp: now.saturating_add(
                i64::try_from(settings.auth_max_token_lifetime.as_secs()).unwrap_or(i64::MAX),
            ),
            iat: Some(now),
            nbf: None,
        },
    )?;
    let graphiql = crate::config::join(&settings.public_url, "graphiql");
    let dashboard = crate::config::join(&settings.public_url, "dashboard");
    let app = Application::build_on(settings, listener)
        .await?
        .with_demo_token(token.clone());

    let db = &app.state().db;
    let (msp, _) = domain::msp::ensure(db, DEMO_MSP, Some("Demo MSP"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let admin = Viewer {
        subject: "consentry-demo".to_owned(),
        msp,
        roles: vec![Role::Admin],
        expires_at: Utc::now(),
    };
    for tenant in &tenants {
        let input = NewClient {
            name: tenant.display_name.clone(),
            domain: Some(tenant.domain.clone()),
            azure_tenant_id: None,
        };
        match domain::clients::create(db, &admin, input).await {
            Ok(_) | Err(domain::Error::Conflict { .. }) => {}
            Err(e) => anyhow::bail!("cannot create the demo client {}: {e}", tenant.display_name),
        }
    }

    println!();
    println!("Consentry demo is running.");
    println!();
    println!("  Dashboard:  {dashboard}");
    println!("  GraphiQL:   {graphiql}");
    println!("  Token:      {token}");
    println!(
        "  Simulator:  {} (Microsoft's sign-in pages and Graph, simulated)",
        simulator.base_url()
    );
    println!();
    println!(
        "The dashboard is signed in and GraphiQL sends the token. Demo MSP {DEMO_MSP:?} has one client per scenario:"
    );
    for tenant in &tenants {
        let description = descriptions
            .iter()
            .find(|(domain, _)| *domain == tenant.domain)
            .map(|(_, d)| d.as_str())
            .unwrap_or("from your tenants file");
        println!(
            "  - {:<20} {:<28} {description}",
            tenant.display_name, tenant.domain
        );
    }
    println!();
    println!(
        "Authorise a client: press Authorise on its tile in the dashboard and open the link; or in GraphiQL,"
    );
    println!("take an id from `{{ clients {{ nodes {{ id name }} }} }}`,");
    println!(
        "run `mutation {{ authoriseGraphApi(clientId: \"ID\") {{ url }} }}` and open the url: sign in as the"
    );
    println!(
        "client's admin (that proves the tenant), then press Accept on the consent page that follows."
    );
    println!();
    println!("Press Ctrl-C to stop. Data stays in the demo database; delete it to start over.");
    let keeping = saved.keep(&simulator);
    let served = app.run_until(shutdown_signal()).await;
    keeping.abort();
    saved.save(&simulator);
    simulator.stop().await;
    served
}

/// The simulator's state (what its tenants consented to, the principals created, the refresh
/// tokens issued, its port), kept beside an SQLite demo database: a restarted demo's simulator
/// then agrees with the tiles and consents the database remembers, on the same address, so
/// Verify keeps them and links already sent still work. An in-memory or PostgreSQL demo
/// database starts the simulator afresh.
struct SavedSimulator {
    file: Option<PathBuf>,
    state: Option<SimulatorState>,
}

impl SavedSimulator {
    /// `consentry-demo.db` → `consentry-demo.simulator.json`, read if it is there.
    fn beside(settings: &Settings) -> anyhow::Result<Self> {
        let file = match settings.database_kind()? {
            crate::config::DatabaseKind::SqliteFile(path) => {
                Some(path.with_extension("simulator.json"))
            }
            _ => None,
        };
        let state = file.as_deref().and_then(|file| {
            let text = std::fs::read_to_string(file).ok()?;
            match serde_json::from_str(&text) {
                Ok(state) => Some(state),
                Err(error) => {
                    tracing::warn!(file = %file.display(), %error, "the simulator's saved state is unreadable: starting it afresh");
                    None
                }
            }
        });
        Ok(Self { file, state })
    }

    /// Starts the simulator with the saved state, on the saved port unless another was asked
    /// for (or it is taken).
    async fn start(
        &self,
        config: SimulatorConfig,
        listen: SocketAddr,
    ) -> anyhow::Result<Simulator> {
        let saved_port = self.state.as_ref().map_or(0, |s| s.port);
        let simulator = if listen.port() == 0 && saved_port != 0 {
            let again = SocketAddr::new(listen.ip(), saved_port);
            match Simulator::start(config.clone(), again).await {
                Ok(simulator) => simulator,
                Err(error) => {
                    println!(
                        "note: the simulator could not listen on its earlier address {again} ({error:#}): links sent before this restart no longer work"
                    );
                    Simulator::start(config, listen).await?
                }
            }
        } else {
            Simulator::start(config, listen).await?
        };
        if let Some(state) = &self.state {
            simulator.restore(state);
        }
        Ok(simulator)
    }

    /// Saves the state every second while it changes, until aborted.
    fn keep(&self, simulator: &Simulator) -> tokio::task::JoinHandle<()> {
        let Some(file) = self.file.clone() else {
            return tokio::spawn(async {});
        };
        let simulator = simulator.state_reader();
        tokio::spawn(async move {
            let mut written = None;
            loop {
                let state = simulator.state();
                if written.as_ref() != Some(&state) {
                    write_state(&file, &state);
                    written = Some(state);
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        })
    }

    fn save(&self, simulator: &Simulator) {
        if let Some(file) = &self.file {
            write_state(file, &simulator.state());
        }
    }
}

/// Writes the state owner-only (it holds the simulated refresh tokens), replacing the file at
/// once so that a crash never leaves half of it.
fn write_state(file: &std::path::Path, state: &SimulatorState) {
    let result = (|| -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(state).map_err(std::io::Error::other)?;
        let partial = file.with_extension("json.partial");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut out = options.open(&partial)?;
            out.write_all(text.as_bytes())?;
            out.sync_all()?;
        }
        std::fs::rename(&partial, file)
    })();
    if let Err(error) = result {
        tracing::warn!(file = %file.display(), %error, "could not save the simulator's state");
    }
}
