//! The state every request handler, WebSocket and sweep shares. In a module of its own: the
//! HTTP handlers and the sweeps depend on it, and the application (`app`) builds it and the
//! Router from it, so none of them depends on another through it.

use std::{future::Future, sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;

use crate::{
    auth::{CallerAuth, DashboardSignIn, DisabledMsps},
    config::Settings,
    domain::{Consents, crypto::TokenKeys, repairable::RepairableApps},
    events::Bus,
    graphql::{self, AppSchema},
    http::{metrics::Metrics, websocket::connections::SocketLimits},
    microsoft::Microsoft,
};

/// How many events a subscriber may fall behind before it is told to resync.
pub(crate) const SUBSCRIBER_BUFFER: usize = 1024;

/// Everything a request handler may need.
#[derive(Clone)]
pub struct AppState {
    pub(crate) db: DatabaseConnection,
    pub(crate) schema: AppSchema,
    /// Answers kept for reuse while their MSP does not change (`graphql::AnswerCache`).
    pub(crate) answers: Arc<graphql::AnswerCache>,
    pub(crate) auth: Arc<CallerAuth>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) settings: Arc<Settings>,
    /// Microsoft's identity platform and Graph; `None` when no app registration is set.
    pub(crate) microsoft: Option<Arc<Microsoft>>,
    /// What the consent flows need besides the database.
    pub(crate) consents: Consents,
    /// Change events for this instance's subscribers.
    pub(crate) bus: Bus,
    /// A token GraphiQL and the dashboard start with (`consentry demo` only).
    pub(crate) demo_token: Option<Arc<str>>,
    /// The dashboard's sign-in at the caller identity provider, when configured.
    pub(crate) dashboard_sign_in: Option<Arc<DashboardSignIn>>,
    /// Tells WebSocket subscribers the server is stopping, and counts them out.
    pub(crate) draining: Draining,
    /// Which MSP tenants are disabled, re-read every `CONSENTRY_RIGHTS_RECHECK_INTERVAL`.
    pub(crate) disabled_msps: DisabledMsps,
    /// Each caller's WebSocket connections and message rate.
    pub(crate) sockets: Arc<SocketLimits>,
}

impl AppState {
    /// The server's database connection (tests read what only storage shows).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// How many repair requests' creating tokens this instance holds in memory.
    pub fn held_sign_in_tokens(&self) -> usize {
        self.consents.sign_in_tokens.requests().len()
    }
}

/// The server's stop, as long-lived connections see it: HTTP requests are drained by axum,
/// but an upgraded WebSocket is no longer axum's, so each subscriber is told by
/// [`SocketLimits::going_away`], says goodbye (close code 1001) and is counted out here
/// before the process exits.
#[derive(Clone, Debug)]
pub(crate) struct Draining {
    signal: Arc<tokio::sync::watch::Sender<bool>>,
    connections: tokio_util::task::TaskTracker,
}

impl Default for Draining {
    fn default() -> Self {
        Self {
            signal: Arc::new(tokio::sync::watch::Sender::new(false)),
            connections: tokio_util::task::TaskTracker::new(),
        }
    }
}

impl Draining {
    /// Runs a long-lived connection, counted until it ends.
    pub(crate) fn track<F: Future>(
        &self,
        connection: F,
    ) -> tokio_util::task::task_tracker::TrackedFuture<F> {
        self.connections.track_future(connection)
    }

    /// Completes once the server has begun to stop.
    pub(crate) fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut signal = self.signal.subscribe();
        async move {
            let _ = signal.wait_for(|stopping| *stopping).await;
        }
    }

    pub(crate) fn begin(&self) {
        self.signal.send_replace(true);
        self.connections.close();
    }

    /// Waits for every tracked connection to end, at most `limit`; false if some did not.
    pub(crate) async fn finished(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.connections.wait())
            .await
            .is_ok()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(
        settings: Settings,
        db: DatabaseConnection,
        auth: Arc<CallerAuth>,
        microsoft: Option<Arc<Microsoft>>,
        token_keys: Option<Arc<TokenKeys>>,
        repairable_apps: RepairableApps,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let consents = Consents::new(
            microsoft.clone(),
            settings.reverify_interval,
            settings.keepalive_interval,
            token_keys,
        )
        .with_callback_lease(settings.callback_lease)
        .with_repairable_apps(repairable_apps);
        let bus = Bus::new(SUBSCRIBER_BUFFER);
        let sockets = Arc::new(SocketLimits::new(
            settings.ws_connections_per_caller,
            settings.ws_messages_per_minute,
        ));
        let limits = graphql::Limits::from_settings(&settings);
        let budgets = limits.budgets();
        Self {
            schema: graphql::schema(
                db.clone(),
                metrics.clone(),
                consents.clone(),
                bus.clone(),
                limits,
                budgets.clone(),
            ),
            answers: Arc::new(graphql::AnswerCache::new(
                settings.answer_cache_bytes,
                budgets,
                metrics.clone(),
            )),
            consents,
            bus,
            db,
            auth,
            metrics,
            settings: Arc::new(settings),
            microsoft,
            demo_token: None,
            dashboard_sign_in: None,
            draining: Draining::default(),
            disabled_msps: DisabledMsps::default(),
            sockets,
        }
    }
}
