//! Answers kept for reuse (issue 17): the same query from the same caller, while nothing of
//! the caller's MSP has changed, is answered with the bytes it was answered with before.
//!
//! What makes that safe is one number, the MSP's revision (`msp_tenant.revision`): the
//! database changes it in the transaction of every change to one of the MSP's rows — its
//! clients, tiles, delegated consents, service principal requests, audit events, sign-in
//! flows, its own name or state — whoever makes it: any instance, the command line, SQL by
//! hand (migration `m20261204_000013_msp_revision`). Authentication reads it with the
//! caller's MSP, before anything else of the request; so
//!
//! - an answer computed after reading revision `r` shows every change committed before that
//!   read, and is kept under `r`;
//! - it is reused only while the revision still reads `r`: no change to the MSP has
//!   committed since, so it is exactly what the query would answer now — on this instance
//!   and on every other one at once, without waiting for any event.
//!
//! Kept only: queries (never mutations or subscriptions), over HTTP, that succeeded whole (no
//! error, no extension), asked by an MSP's caller. Support staff are never answered from
//! memory: each of their reads is audited (and that audit is a change, so their answers
//! would never be reused anyway). The key is a SHA-256 fingerprint of everything an answer
//! depends on besides the database: the caller (MSP, subject, roles, token expiry — `viewer`
//! answers them), the document, the operation's name, the variables and the extensions. A
//! reused answer still takes its query out of the MSP's budget and is counted in the
//! operation metrics like any other.

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
};

use async_graphql::{Request, Response, ServerError};
use axum::body::Bytes;
use quick_cache::{Weighter, sync::Cache};
use sha2::{Digest, Sha256};

use super::budgets::{Budgets, Charge};
use crate::{auth::Viewer, http::metrics::Metrics};

/// What an answer is kept under.
type Fingerprint = [u8; 32];

/// A kept answer.
#[derive(Clone)]
struct Entry {
    /// The MSP's revision read before the answer was computed.
    revision: i64,
    /// The operation's name in the metrics.
    operation: Arc<str>,
    body: Bytes,
}

/// An entry weighs its bytes, plus what the cache spends on it.
#[derive(Clone)]
struct ByBytes;

impl Weighter<Fingerprint, Entry> for ByBytes {
    fn weight(&self, _: &Fingerprint, entry: &Entry) -> u64 {
        (entry.body.len() + entry.operation.len() + 128) as u64
    }
}

/// What the schema's extension saw of the operation that ran: its name in the metrics and
/// its type (`query`, `mutation`, `subscription`). Put in the request's data by the HTTP
/// transport; set once the document is parsed.
#[derive(Debug, Default)]
pub(crate) struct SeenOperation(OnceLock<(String, &'static str)>);

impl SeenOperation {
    pub(crate) fn set(&self, name: &str, kind: &'static str) {
        let _ = self.0.set((name.to_owned(), kind));
    }

    fn query_name(&self) -> Option<&str> {
        match self.0.get() {
            Some((name, "query")) => Some(name),
            _ => None,
        }
    }
}

/// A request whose answer may be kept: its fingerprint and the revision it reads at.
#[derive(Debug)]
pub(crate) struct Lookup {
    fingerprint: Fingerprint,
    revision: i64,
}

/// A kept answer, or what stands in its place.
#[derive(Debug)]
pub(crate) enum Kept {
    /// The answer's bytes (a `200` in either media type: kept answers have no error).
    Answer(Bytes),
    /// The MSP's query budget is spent: the refusal (`RATE_LIMITED`).
    Refused(ServerError),
}

/// Every kept answer of this instance, within its memory budget (least recently and least
/// often used go first).
pub(crate) struct AnswerCache {
    /// `None` when the cache is off (`CONSENTRY_ANSWER_CACHE_BYTES=0`).
    entries: Option<Cache<Fingerprint, Entry, ByBytes>>,
    budgets: Arc<Budgets>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("on", &self.entries.is_some())
            .finish()
    }
}

impl AnswerCache {
    /// A cache of `bytes` (none for 0), charging reused answers to `budgets`.
    pub(crate) fn new(bytes: usize, budgets: Arc<Budgets>, metrics: Arc<Metrics>) -> Self {
        let entries = (bytes > 0).then(|| {
            // A dashboard answer is some tens of KiB.
            let items = (bytes / (16 * 1024)).max(16);
            Cache::with_weighter(items, bytes as u64, ByBytes)
        });
        Self {
            entries,
            budgets,
            metrics,
        }
    }

    /// The request's lookup when its answer may be kept, i.e. the cache is on and the caller
    /// is an MSP's, not support staff.
    pub(crate) fn lookup(
        &self,
        viewer: &Viewer,
        revision: i64,
        request: &Request,
    ) -> Option<Lookup> {
        if self.entries.is_none() || viewer.reads_all_msps() {
            return None;
        }
        Some(Lookup {
            fingerprint: fingerprint(viewer, request),
            revision,
        })
    }

    /// The answer kept for the request at its revision, taken out of the MSP's query budget;
    /// `None` when there is none (an answer kept at another revision is dropped).
    pub(crate) fn answer(
        &self,
        lookup: &Lookup,
        viewer: &Viewer,
        started: std::time::Instant,
    ) -> Option<Kept> {
        let entries = self.entries.as_ref()?;
        let entry = match entries.get(&lookup.fingerprint) {
            Some(entry) if entry.revision == lookup.revision => entry,
            Some(_) => {
                entries.remove(&lookup.fingerprint);
                self.metrics.answer_cache("stale");
                return None;
            }
            None => {
                self.metrics.answer_cache("miss");
                return None;
            }
        };
        if let Err(refusal) = self.budgets.charge(Some(viewer), Charge::Query) {
            return Some(Kept::Refused(refusal));
        }
        self.metrics.answer_cache("hit");
        self.metrics
            .observe_operation(&entry.operation, "query", true, started.elapsed());
        Some(Kept::Answer(entry.body))
    }

    /// Keeps `body`, the answer to the looked-up request, if it may be reused: a query that
    /// succeeded whole.
    pub(crate) fn keep(
        &self,
        lookup: Lookup,
        seen: &SeenOperation,
        response: &Response,
        body: &Bytes,
    ) {
        let (Some(entries), Some(operation)) = (&self.entries, seen.query_name()) else {
            return;
        };
        if !response.errors.is_empty() || !response.extensions.is_empty() {
            return;
        }
        entries.insert(
            lookup.fingerprint,
            Entry {
                revision: lookup.revision,
                operation: operation.into(),
                body: body.clone(),
            },
        );
    }
}

/// SHA-256 over every input of an answer but the database, each field length-prefixed so
/// that no two requests write the same bytes.
fn fingerprint(viewer: &Viewer, request: &Request) -> Fingerprint {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    field(b"consentry answer 1");
    field(viewer.msp_id().as_bytes());
    field(viewer.subject.as_bytes());
    field(&(viewer.roles.len() as u64).to_le_bytes());
    for role in &viewer.roles {
        field(role.as_str().as_bytes());
    }
    field(&viewer.expires_at.timestamp().to_le_bytes());
    field(request.query.as_bytes());
    match &request.operation_name {
        Some(name) => field(format!("+{name}").as_bytes()),
        None => field(b"-"),
    }
    field(&serde_json::to_vec(&request.variables).unwrap_or_default());
    let extensions: BTreeMap<_, _> = request.extensions.iter().collect();
    field(&serde_json::to_vec(&extensions).unwrap_or_default());
    hash.finalize().into()
}
