//! The application: the Router (tests build the very same one) over the shared state, and the
//! listening server with graceful shutdown.

use std::{
    future::{Future, IntoFuture},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    extract::Request,
    http::{HeaderName, Method, header},
    middleware,
    routing::get,
    serve::ListenerExt,
};
use tokio::net::TcpListener;
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    sensitive_headers::SetSensitiveRequestHeadersLayer,
    trace::TraceLayer,
};

pub(crate) use crate::state::AppState;
use crate::{
    auth::{CallerAuth, DashboardSignIn},
    config::Settings,
    db,
    domain::crypto::TokenKeys,
    http,
    microsoft::{Microsoft, MicrosoftConfig},
};

/// Every route of docs/design.md §2 (those that exist so far).
pub(crate) fn router(state: AppState) -> anyhow::Result<Router> {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(state.settings.allowed_origins()?))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .max_age(Duration::from_secs(600));
    let graphql = Router::new()
        .route(
            "/graphql",
            get(http::graphql::get).post(http::graphql::post),
        )
        .route("/graphql/ws", get(http::websocket::upgrade))
        .layer(DefaultBodyLimit::max(http::graphql::MAX_BODY_BYTES))
        .layer(cors);
    Ok(Router::new()
        .merge(graphql)
        .route("/", get(http::dashboard::root))
        .route("/dashboard", get(http::dashboard::page))
        .route("/dashboard/", get(http::dashboard::trailing_slash))
        .route("/dashboard/sign-in.json", get(http::dashboard::sign_in))
        .route("/dashboard/{file}", get(http::dashboard::file))
        .route("/assets/vendor/{*path}", get(http::assets::vendor))
        .route("/graphiql", get(http::graphiql::page))
        .route("/graphiql/app.js", get(http::graphiql::script))
        .route("/graphiql/app.css", get(http::graphiql::style))
        .route("/oauth/callback", get(http::oauth::callback))
        .route("/oauth/result/{flow}", get(http::oauth::result))
        .route("/healthz", get(http::health::healthz))
        .route("/readyz", get(http::health::readyz))
        .route("/metrics", get(http::metrics::serve).with_state(state.metrics.clone()))
        .layer(middleware::from_fn_with_state(state.metrics.clone(), http::metrics::track))
        // Paths only: query strings (OAuth codes and states) never reach the logs.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
        }))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            HeaderName::from_static("sec-websocket-protocol"),
        ]))
        .with_state(state))
}

/// The keys that encrypt refresh tokens and sign-in verifiers. With a KMS
/// (`CONSENTRY_KMS_VAULT_ADDR`, checklist 78): its data keys, unwrapped now (one is made the
/// first time), followed by any configured or existing `CONSENTRY_TOKEN_KEYS`, which then only
/// decrypt what they made before. Without: `CONSENTRY_TOKEN_KEYS` (generated beside an SQLite
/// file). A KMS that cannot unwrap stops the start with what to check.
pub(crate) async fn key_ring(
    settings: &Settings,
    db: &sea_orm::DatabaseConnection,
) -> anyhow::Result<Option<Arc<TokenKeys>>> {
    let Some(kms) = crate::kms::VaultTransit::from_settings(settings)? else {
        return match crate::auth::resolve_token_keys(settings)? {
            Some(setting) => Ok(Some(Arc::new(TokenKeys::parse(&setting)?))),
            None => Ok(None),
        };
    };
    let legacy = crate::auth::existing_token_keys(settings)?
        .map(|setting| TokenKeys::parse(&setting))
        .transpose()?;
    let data_keys = crate::domain::data_keys::load_or_create(db, &kms)
        .await
        .map_err(|error| match error {
            crate::domain::Error::Internal(inner) => inner,
            other => anyhow::Error::new(other),
        })?;
    let keys = TokenKeys::with_data_keys(&data_keys, legacy.as_ref())?;
    tracing::info!(key = %kms.label(), data_keys = data_keys.len(), "data keys unwrapped by the KMS");
    Ok(Some(Arc::new(keys)))
}

/// A built server, bound to its port but not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.local_addr().ok())
            .finish()
    }
}

impl Application {
    /// Validates settings, connects and migrates the database, prepares caller auth, and binds
    /// the listener (port 0 picks a free port: see [`Application::local_addr`]).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
        Self::build_on(settings, listener).await
    }

    /// Like [`Application::build`], on a listener bound by the caller.
    pub async fn build_on(mut settings: Settings, listener: TcpListener) -> anyhow::Result<Self> {
        settings.settle_public_url(listener.local_addr()?);
        settings.validate()?;
        let db = db::connect(&settings).await?;
        db::migrate(&db, &settings.database_label()).await?;
        let auth = CallerAuth::from_settings(&settings)?;
        auth.warm_up().await;
        let dashboard_sign_in = match settings.dashboard_oidc()? {
            Some(oidc) => Some(Arc::new(DashboardSignIn::discover(&oidc).await?)),
            None => None,
        };
        let microsoft = match MicrosoftConfig::from_settings(&settings) {
            Some(config) => Some(Arc::new(Microsoft::new(config)?.with_key_refetch_interval(
                Duration::from_secs(settings.ms_key_refetch_seconds),
            ))),
            None => {
                tracing::warn!(
                    "no Microsoft app registration (CONSENTRY_MS_CLIENT_ID, CONSENTRY_MS_CLIENT_SECRET): \
                     consent flows are unavailable until both are set"
                );
                None
            }
        };
        let token_keys = key_ring(&settings, &db).await?;
        if token_keys.is_none() {
            tracing::warn!(
                "no CONSENTRY_TOKEN_KEYS: delegated consents are unavailable until it is set \
                 (keys are generated only beside an embedded SQLite database); sign-in links \
                 are sealed with a key derived from CONSENTRY_MS_CLIENT_SECRET meanwhile"
            );
        }
        let repairable_apps = settings.repairable_apps()?;
        let mut state = AppState::new(settings, db, auth, microsoft, token_keys, repairable_apps);
        state.dashboard_sign_in = dashboard_sign_in;
        // The router's only fallible part: fail at start, not when serving begins.
        state.settings.allowed_origins()?;
        Ok(Self { listener, state })
    }

    /// Starts GraphiQL (in its headers) and the dashboard (signed in) with this token
    /// (`consentry demo`).
    pub fn with_demo_token(mut self, token: String) -> Self {
        self.state.demo_token = Some(token.into());
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes; then stops accepting, tells WebSocket subscribers
    /// (close 1001) and lets in-flight requests finish, for at most `CONSENTRY_SHUTDOWN_TIMEOUT`.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        let settings = &self.state.settings;
        tracing::info!(
            bound = %addr,
            database = %settings.database_label(),
            "consentry is listening at {}",
            settings.public_url
        );
        if self.state.demo_token.is_none() {
            tracing::info!(
                "GraphiQL: {}, dashboard: {} (a token for them: `consentry token --msp demo --role admin`)",
                crate::config::join(&settings.public_url, "graphiql"),
                crate::config::join(&settings.public_url, "dashboard")
            );
        }
        let router = router(self.state.clone())?;
        let interval = settings.sweep_interval;
        let sweeps = [
            tokio::spawn(crate::events::dispatch(
                self.state.db.clone(),
                self.state.bus.clone(),
            )),
            tokio::spawn(crate::sweeps::flows(self.state.clone(), interval)),
            tokio::spawn(crate::sweeps::reverification(self.state.clone(), interval)),
            tokio::spawn(crate::sweeps::rights(
                self.state.clone(),
                settings.rights_recheck_interval,
            )),
            tokio::spawn(crate::sweeps::sockets(self.state.clone())),
        ];
        let draining = self.state.draining.clone();
        let begin = {
            let draining = draining.clone();
            let sockets = self.state.sockets.clone();
            async move {
                shutdown.await;
                draining.begin();
                sockets.going_away();
            }
        };
        let served = axum::serve(without_nagle(self.listener), router)
            .with_graceful_shutdown(begin)
            .into_future();
        let limit = settings.shutdown_timeout;
        let overdue = {
            let stopping = draining.stopping();
            async move {
                stopping.await;
                tokio::time::sleep(limit).await;
            }
        };
        let served = tokio::select! {
            served = served => served,
            () = overdue => {
                tracing::warn!(timeout = ?limit, "requests still in flight when the shutdown timeout ran out: stopping anyway");
                Ok(())
            }
        };
        // Subscribers were told when the stop began; give their goodbyes a moment to go out.
        if !draining.finished(Duration::from_secs(5)).await {
            tracing::warn!("some WebSocket connections did not close in time");
        }
        // Every sweep step is its own transaction: stopping between two is safe.
        for sweep in sweeps {
            sweep.abort();
        }
        served?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The listener with TCP_NODELAY on every connection. Events and answers are small writes:
/// with Nagle's algorithm (axum's default), one waits for the peer's delayed ACK — 40 ms —
/// whenever an earlier write is still unacknowledged.
pub fn without_nagle(
    listener: TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = SocketAddr> {
    listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    })
}

/// Lifts the soft open-file limit to the hard one, as Go and nginx do: every WebSocket
/// subscriber holds a socket, and common soft limits (1024) would cap them far below what
/// one instance serves.
pub fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
