//! The open WebSocket connections of this instance: each caller's count and message rate
//! (checklist 73), each connection's operations in flight, and the sweeps that end
//! connections from outside — a token's expiry, an MSP disabled, the server's stop.

use std::{
    collections::{BTreeSet, HashMap},
    num::NonZeroU32,
    sync::{Arc, Mutex, OnceLock, Weak},
};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::close::{self, Goodbye, MSP_DISABLED, SHUTTING_DOWN, TOKEN_EXPIRED};
use crate::refusal_log::RefusalLog;

/// Most subscriptions one connection may hold open at once (checklist 73); one more closes it
/// with 1008. Queries and mutations sent over the socket do not count: they end by themselves.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 32;

/// Each caller's WebSocket connections and message rate on this instance (checklist 73). A
/// caller is one `sub` of one MSP.
#[derive(Debug)]
pub(crate) struct SocketLimits {
    /// Most connections one caller may hold open; `None`: no cap.
    max_connections: Option<NonZeroU32>,
    open: Mutex<HashMap<Arc<str>, u32>>,
    /// Messages each caller may send per minute; `None`: no limit.
    messages: Option<governor::DefaultKeyedRateLimiter<Arc<str>>>,
    refusals: RefusalLog,
    /// The open connections, for [`Self::sweep`] and [`Self::going_away`].
    live: Mutex<Live>,
}

/// The open connections of this instance. Dropped ones stay listed (a pointer each) until the
/// next sweep.
#[derive(Debug, Default)]
struct Live {
    connections: Vec<Weak<Connection>>,
    /// The server is stopping: a connection that comes now is told so at once.
    stopping: bool,
}

impl SocketLimits {
    /// `CONSENTRY_WS_CONNECTIONS_PER_CALLER` and `CONSENTRY_WS_MESSAGES_PER_MINUTE` (0: off).
    pub(crate) fn new(connections_per_caller: u32, messages_per_minute: u32) -> Self {
        Self {
            max_connections: NonZeroU32::new(connections_per_caller),
            open: Mutex::default(),
            messages: NonZeroU32::new(messages_per_minute).map(|per_minute| {
                governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute))
            }),
            refusals: RefusalLog::default(),
            live: Mutex::default(),
        }
    }

    /// Counts one more connection of the caller (`subject` of `msp_id`) until the last part
    /// of it drops; the caller's key when it already holds as many as allowed.
    pub(super) fn connect(
        self: &Arc<Self>,
        msp_id: &str,
        subject: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Arc<Connection>, String> {
        // A caller is one `sub` of one MSP (MSP ids have no spaces).
        let key = format!("{msp_id} {subject}");
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (caller, held) = match open.get_key_value(key.as_str()) {
            Some((caller, held)) => (caller.clone(), *held),
            None => (Arc::from(key.as_str()), 0),
        };
        if self.max_connections.is_some_and(|max| held >= max.get()) {
            return Err(key);
        }
        open.insert(caller.clone(), held + 1);
        drop(open);
        let connection = Arc::new(Connection {
            limits: self.clone(),
            caller,
            msp_len: msp_id.len(),
            expires_at,
            operations: Mutex::default(),
            goodbye: OnceLock::new(),
            ended: Notify::new(),
        });
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.connections.push(Arc::downgrade(&connection));
        if live.stopping {
            connection.end(SHUTTING_DOWN);
        }
        Ok(connection)
    }

    /// Ends the connections whose token has expired by `now` or whose MSP is in `disabled`
    /// (checklist 72, 99), and forgets the ones that have closed. Runs every
    /// `SWEEP_INTERVAL`, and at once after each re-read of the disabled MSPs.
    pub(crate) fn sweep(&self, now: DateTime<Utc>, disabled: &BTreeSet<String>) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.connections.retain(|connection| {
            let Some(connection) = connection.upgrade() else {
                return false;
            };
            if connection.expires_at <= now {
                connection.end(TOKEN_EXPIRED);
            } else if disabled.contains(connection.msp_id()) {
                connection.end(MSP_DISABLED);
            }
            true
        });
        // A burst of subscribers that has gone should not leave its room behind.
        if live.connections.capacity() > 2 * live.connections.len() + 64 {
            live.connections.shrink_to_fit();
        }
    }

    /// Tells every connection, and every one that comes from now on, that the server is
    /// stopping (close code 1001).
    pub(crate) fn going_away(&self) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.stopping = true;
        for connection in live.connections.iter().filter_map(Weak::upgrade) {
            connection.end(SHUTTING_DOWN);
        }
    }

    /// Whether `caller` may send one more message now.
    pub(super) fn message(&self, caller: &Arc<str>) -> bool {
        self.messages
            .as_ref()
            .is_none_or(|limiter| limiter.check_key(caller).is_ok())
    }

    /// Forgets the message rates of callers who have been quiet for a while (each caller's
    /// state is a few bytes, but callers come and go).
    pub(crate) fn forget_idle(&self) {
        if let Some(limiter) = &self.messages {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Logs a closed connection, at most once a minute per caller and reason.
    pub(super) fn log_refusal(&self, caller: &str, (code, reason): Goodbye) {
        if let Some(unwritten) = self.refusals.admit(reason, caller) {
            tracing::info!(
                caller,
                code,
                reason,
                refusals_not_logged = unwritten,
                "WebSocket connection closed"
            );
        }
    }
}

/// One open connection of a caller, counted in [`SocketLimits`] until its last part (the task,
/// the gate, the watch on what the server sends) drops. One allocation that the parts share:
/// every idle subscriber keeps it.
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) limits: Arc<SocketLimits>,
    /// The caller's key in [`SocketLimits`]: `"{msp_id} {sub}"`, shared with its other
    /// connections.
    pub(super) caller: Arc<str>,
    /// How much of `caller` is the MSP's id.
    pub(super) msp_len: usize,
    /// When the caller's token expires.
    pub(super) expires_at: DateTime<Utc>,
    /// The operations in flight; the server's `complete` or `error` ends them too.
    pub(super) operations: Mutex<Operations>,
    /// Why the server ends the connection, once it does: the first reason wins.
    pub(super) goodbye: OnceLock<Goodbye>,
    /// Wakes the connection's task when something outside it ends the connection.
    pub(super) ended: Notify,
}

impl Connection {
    pub(super) fn msp_id(&self) -> &str {
        &self.caller[..self.msp_len]
    }

    /// Ends the connection with `goodbye`, unless it is already ending for another reason.
    pub(super) fn end(&self, goodbye: Goodbye) {
        if self.goodbye.set(goodbye).is_ok() {
            // One waiter, the connection's task; a permit is kept if it is not waiting yet.
            self.ended.notify_one();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = open.get_mut(&*self.caller) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                open.remove(&*self.caller);
            }
        }
    }
}

/// The operations in flight on one connection, by id: a handful at most, so a list (smaller
/// than a set). Subscriptions count against `MAX_SUBSCRIPTIONS`; queries and mutations end by
/// themselves.
#[derive(Debug, Default)]
pub(super) struct Operations(Vec<(Box<str>, bool)>);

impl Operations {
    /// Starts operation `id` (a subscription or not), or says why the connection ends: the id
    /// is in use (the protocol's 4409), or one subscription too many.
    pub(super) fn start(&mut self, id: &str, subscription: bool) -> Result<(), Goodbye> {
        if self.0.iter().any(|(open, _)| &**open == id) {
            return Err((close::ID_IN_USE, "Subscriber for this id already exists"));
        }
        // Exactly: an idle subscriber keeps this list, and a push would make room for four.
        self.0.reserve_exact(1);
        self.0.push((id.into(), subscription));
        if self
            .0
            .iter()
            .filter(|(_, subscription)| *subscription)
            .count()
            > MAX_SUBSCRIPTIONS
        {
            return Err((
                close::POLICY_VIOLATION,
                "Too many subscriptions: at most 32 may be open on one connection",
            ));
        }
        Ok(())
    }

    pub(super) fn end(&mut self, id: &str) {
        self.0.retain(|(open, _)| &**open != id);
    }
}

/// Forgets an operation the server ended: its stream completed, or it failed (the protocol
/// sends no `complete` after an `error`). async-graphql writes them as
/// `{"type":"complete","id":…}` and `{"type":"error","id":…}`; only those are parsed.
pub(super) fn ended(operations: &Mutex<Operations>, text: &str) {
    if !text.starts_with(r#"{"type":"complete""#) && !text.starts_with(r#"{"type":"error""#) {
        return;
    }
    let Ok(message) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    if let Some(id) = message.get("id").and_then(|i| i.as_str()) {
        let mut open = operations.lock().unwrap_or_else(|p| p.into_inner());
        open.end(id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_id_in_use_is_refused_until_its_operation_ends() {
        let mut open = Operations::default();
        open.start("1", false).unwrap();
        assert_eq!(open.start("1", true).unwrap_err().0, close::ID_IN_USE);
        open.end("1");
        open.start("1", true).unwrap();
    }

    #[test]
    fn only_open_subscriptions_count_against_the_cap() {
        let mut open = Operations::default();
        for id in 0..MAX_SUBSCRIPTIONS {
            open.start(&format!("s{id}"), true).unwrap();
        }
        // Queries in flight do not count; they end by themselves.
        open.start("q", false).unwrap();
        open.end("q");
        assert_eq!(
            open.start("one too many", true).unwrap_err().0,
            close::POLICY_VIOLATION
        );
    }

    #[test]
    fn a_sweep_ends_expired_and_disabled_connections_and_forgets_closed_ones() {
        let limits = Arc::new(SocketLimits::new(0, 0));
        let now = Utc::now();
        let later = now + chrono::Duration::minutes(5);
        let expired = limits.connect("msp-a", "alice", now).unwrap();
        let disabled = limits.connect("msp-b", "bob", later).unwrap();
        let fine = limits.connect("msp-a", "carol", later).unwrap();
        let gone = limits.connect("msp-a", "dave", later).unwrap();
        drop(gone);
        limits.sweep(now, &BTreeSet::from(["msp-b".to_owned()]));
        assert_eq!(expired.goodbye.get(), Some(&TOKEN_EXPIRED));
        assert_eq!(disabled.goodbye.get(), Some(&MSP_DISABLED));
        assert_eq!(fine.goodbye.get(), None);
        assert_eq!(limits.live.lock().unwrap().connections.len(), 3);
        // The first reason wins; the stop reaches the others.
        limits.going_away();
        assert_eq!(expired.goodbye.get(), Some(&TOKEN_EXPIRED));
        assert_eq!(fine.goodbye.get(), Some(&SHUTTING_DOWN));
        // A connection that comes once the server is stopping is told so at once.
        let late = limits.connect("msp-a", "erin", later).unwrap();
        assert_eq!(late.goodbye.get(), Some(&SHUTTING_DOWN));
        drop((expired, disabled, fine, late));
        limits.sweep(now, &BTreeSet::new());
        assert!(limits.live.lock().unwrap().connections.is_empty());
        assert!(limits.open.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_ended_connection_wakes_its_task_even_when_it_was_not_waiting_yet() {
        let limits = Arc::new(SocketLimits::new(0, 0));
        let connection = limits.connect("msp-a", "alice", Utc::now()).unwrap();
        limits.sweep(Utc::now(), &BTreeSet::new());
        tokio::time::timeout(Duration::from_secs(5), connection.ended.notified())
            .await
            .expect("the sweep's goodbye is kept until the task waits");
    }

    #[test]
    fn the_server_ends_operations_it_completes_or_fails() {
        let open = Mutex::new(Operations::default());
        for id in ["1", "2", "3"] {
            open.lock().unwrap().start(id, true).unwrap();
        }
        ended(&open, r#"{"type":"next","id":"1","payload":{}}"#);
        ended(&open, r#"{"type":"complete","id":"2"}"#);
        ended(&open, r#"{"type":"error","id":"3","payload":[]}"#);
        let open = open.lock().unwrap();
        let ids: Vec<&str> = open.0.iter().map(|(id, _)| &**id).collect();
        assert_eq!(ids, ["1"]);
    }
}
