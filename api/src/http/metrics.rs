//! Prometheus metrics: HTTP requests per route and GraphQL operations per name, each counted
//! and timed. Served as text at `/metrics`.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Distinct operation names tracked before further names are counted as `(other)`: names
/// come from callers, so they must not grow the metric set without bound. Only authenticated
/// callers' names count (anonymous operations are all `(unauthenticated)`), so no one
/// without a token can fill these slots.
const MAX_OPERATION_NAMES: usize = 200;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationOutcomeLabels {
    operation: String,
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatusLabels {
    method: String,
    route: String,
    status: String,
}

fn statement_buckets() -> Histogram {
    // 1 .. 256 statements
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1.0, 2.0, 9,
    ))
}

fn latency_buckets() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 15,
    ))
}

/// The server's metrics registry.
pub(crate) struct Metrics {
    registry: Registry,
    operations: Family<OperationOutcomeLabels, Counter>,
    operation_seconds: Family<OperationLabels, Histogram, fn() -> Histogram>,
    requests: Family<RouteStatusLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    operation_statements: Family<OperationLabels, Histogram, fn() -> Histogram>,
    callbacks: Family<OutcomeLabels, Counter>,
    sweeps: Family<OutcomeLabels, Counter>,
    answer_cache: Family<OutcomeLabels, Counter>,
    subscriptions: Gauge,
    known_operations: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("consentry");
        let operations = Family::<OperationOutcomeLabels, Counter>::default();
        let operation_seconds =
            Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_buckets,
            );
        let requests = Family::<RouteStatusLabels, Counter>::default();
        let request_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_buckets,
            );
        registry.register(
            "graphql_operations",
            "GraphQL operations by name, type and outcome (ok: no errors)",
            operations.clone(),
        );
        registry.register(
            "graphql_operation_duration_seconds",
            "Time to answer a GraphQL operation, by name and type",
            operation_seconds.clone(),
        );
        let operation_statements =
            Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                statement_buckets,
            );
        registry.register(
            "graphql_operation_db_statements",
            "SQL statements one GraphQL operation ran (authentication included), by name and type",
            operation_statements.clone(),
        );
        let callbacks = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "oauth_callbacks",
            "Consent callbacks by outcome (succeeded, failed, rejected, in_progress, unavailable, error)",
            callbacks.clone(),
        );
        let subscriptions = Gauge::default();
        registry.register(
            "graphql_subscriptions_active",
            "GraphQL subscriptions currently open on this instance",
            subscriptions.clone(),
        );
        let sweeps = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sweep_actions",
            "Background sweep actions (link_expired, callback_interrupted, tile_reverified, flow_deleted, event_outbox_pruned, sweep_failed)",
            sweeps.clone(),
        );
        let answer_cache = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "graphql_answer_cache_lookups",
            "Lookups of kept answers by outcome (hit; miss: none kept; stale: kept before the MSP's last change)",
            answer_cache.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route",
            request_seconds.clone(),
        );
        Self {
            registry,
            operations,
            operation_seconds,
            requests,
            request_seconds,
            operation_statements,
            callbacks,
            sweeps,
            answer_cache,
            subscriptions,
            known_operations: Mutex::new(HashSet::new()),
        }
    }

    /// Records one GraphQL operation.
    pub(crate) fn observe_operation(&self, name: &str, kind: &str, ok: bool, elapsed: Duration) {
        let operation = self.operation_label(name);
        self.operations
            .get_or_create(&OperationOutcomeLabels {
                operation: operation.clone(),
                kind: kind.to_owned(),
                outcome: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
        self.operation_seconds
            .get_or_create(&OperationLabels {
                operation,
                kind: kind.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records how many SQL statements an operation ran.
    pub(crate) fn observe_statements(&self, name: &str, kind: &str, statements: u64) {
        self.operation_statements
            .get_or_create(&OperationLabels {
                operation: self.operation_label(name),
                kind: kind.to_owned(),
            })
            .observe(statements as f64);
    }

    fn operation_label(&self, name: &str) -> String {
        let sane = name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'(' || b == b')');
        if !sane {
            return "(other)".to_owned();
        }
        let Ok(mut known) = self.known_operations.lock() else {
            return "(other)".to_owned();
        };
        if known.contains(name) {
            return name.to_owned();
        }
        if known.len() >= MAX_OPERATION_NAMES {
            return "(other)".to_owned();
        }
        known.insert(name.to_owned());
        name.to_owned()
    }

    /// The registry in Prometheus text format.
    pub(crate) fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Middleware: counts and times each request by its route template (never the raw path, so
/// ids and query strings stay out of metrics).
pub(crate) async fn track(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let method = method_label(request.method()).to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .request_seconds
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RouteStatusLabels {
            method,
            route,
            status: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

/// A request's method as a label: one of the standard methods, or `(other)` — anyone can
/// send `FOO /` and must not mint a label by it.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    static KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::PATCH,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("(other)", Method::as_str)
}

/// `GET /metrics`.
pub(crate) async fn serve(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

impl Metrics {
    /// Counts one consent callback by outcome.
    pub(crate) fn callback(&self, outcome: &str) {
        self.callbacks
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts what a background sweep did.
    pub(crate) fn sweep(&self, action: &str, count: u64) {
        self.sweeps
            .get_or_create(&OutcomeLabels {
                outcome: action.to_owned(),
            })
            .inc_by(count);
    }

    /// Counts one lookup of a kept answer by outcome (`hit`, `miss`, `stale`).
    pub(crate) fn answer_cache(&self, outcome: &str) {
        self.answer_cache
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts an open subscription until the returned guard is dropped.
    pub(crate) fn subscription_opened(self: &Arc<Self>) -> SubscriptionGuard {
        self.subscriptions.inc();
        SubscriptionGuard(self.clone())
    }
}

/// Decrements the open-subscriptions gauge when its subscription ends.
#[derive(Debug)]
pub(crate) struct SubscriptionGuard(Arc<Metrics>);

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.0.subscriptions.dec();
    }
}
