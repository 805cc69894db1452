//! Background sweeps, on every instance: expire consent links nobody used, fail callbacks
//! that were interrupted, re-verify authorised tiles that are due, and delete old flows and
//! (PostgreSQL) old outbox events.
//! Each step claims its rows with a conditional UPDATE, so any number of instances can sweep
//! the same database without doing one job twice.

use std::time::Duration;

use sea_orm::DatabaseBackend;

use crate::{
    domain::{self, delegated_consents, flows, graph_api, service_principal_requests},
    state::AppState,
};

/// Runs the flow sweeps (expiry, interrupted callbacks, garbage) every `interval`.
pub(crate) async fn flows(state: AppState, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let metrics = &state.metrics;
        count(
            metrics,
            "link_expired",
            flows::expire_links(&state.db).await,
        );
        count(
            metrics,
            "callback_interrupted",
            flows::fail_interrupted(&state.db, state.consents.callback_lease).await,
        );
        count(
            metrics,
            "service_principal_request_moved",
            service_principal_requests::sweep(&state.db, &state.consents).await,
        );
        count(
            metrics,
            "delegated_consent_refreshed",
            delegated_consents::keep_alive(&state.db, &state.consents).await,
        );
        count(
            metrics,
            "flow_deleted",
            flows::store::collect_garbage(&state.db, crate::db::now()).await,
        );
        // On PostgreSQL the outbox holds only events too big for a NOTIFY; SQLite's outbox
        // poller prunes its own table.
        if state.db.get_database_backend() == DatabaseBackend::Postgres {
            count(
                metrics,
                "event_outbox_pruned",
                crate::events::prune_outbox(&state.db)
                    .await
                    .map_err(Into::into),
            );
        }
    }
}

/// Re-reads which MSP tenants are disabled every `interval` — open WebSockets of a disabled
/// MSP close at once (checklist 99) — and forgets the message rates of quiet WebSocket callers.
pub(crate) async fn rights(state: AppState, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(error) = state.disabled_msps.refresh(&state.db).await {
            tracing::warn!(%error, "cannot re-read which MSP tenants are disabled; retrying at the next interval");
            state.metrics.sweep("sweep_failed", 1);
        }
        (state.sockets).sweep(crate::db::now(), &state.disabled_msps.current());
        state.sockets.forget_idle();
    }
}

/// Closes the WebSockets whose token has expired, or whose MSP was disabled at the last
/// re-read, every `SWEEP_INTERVAL` (checklist 72, 99).
pub(crate) async fn sockets(state: AppState) {
    let mut ticker = tokio::time::interval(crate::http::websocket::SWEEP_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        (state.sockets).sweep(crate::db::now(), &state.disabled_msps.current());
    }
}

/// Re-verifies due tiles every `interval` (in its own task: it waits on Microsoft).
pub(crate) async fn reverification(state: AppState, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        count(
            &state.metrics,
            "tile_reverified",
            graph_api::reverify_due(&state.db, &state.consents).await,
        );
    }
}

fn count<N: TryInto<u64>>(
    metrics: &crate::http::metrics::Metrics,
    action: &str,
    result: domain::Result<N>,
) {
    match result {
        Ok(n) => {
            let n = n.try_into().unwrap_or(0);
            if n > 0 {
                tracing::debug!(action, n, "sweep");
                metrics.sweep(action, n);
            }
        }
        Err(error) => {
            tracing::warn!(action, %error, "sweep failed; retrying at the next interval");
            metrics.sweep("sweep_failed", 1);
        }
    }
}
