//! Each MSP's budgets of operations on this instance (checklist 55, 98): mutations, counted
//! by root field, for callers who may run them; and queries, one each. A caller whose roles
//! are read-only never spends the mutation budget: its mutations are refused by their
//! resolvers, and each counts as one query instead — so a viewer looping refused mutations
//! can neither lock the MSP's admins out of changes nor run unbounded.

use std::num::NonZeroU32;

use async_graphql::ServerError;

use crate::{auth::Viewer, refusal_log::RefusalLog};

/// A steady rate per MSP (GCRA), with a burst of as many as a minute allows.
struct Budget {
    /// What it counts, in messages: `mutations`, `queries`.
    what: &'static str,
    per_minute: NonZeroU32,
    spent: governor::DefaultKeyedRateLimiter<String>,
}

impl Budget {
    fn new(what: &'static str, per_minute: u32) -> Option<Self> {
        NonZeroU32::new(per_minute).map(|per_minute| Self {
            what,
            per_minute,
            spent: governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute)),
        })
    }
}

/// The budgets of every MSP, and the log of their refusals.
pub(crate) struct Budgets {
    /// `None` when mutations are not limited.
    mutations: Option<Budget>,
    /// `None` when queries are not limited.
    queries: Option<Budget>,
    refusals: RefusalLog,
}

/// The kind of operation being charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Charge {
    /// A query (over HTTP or the WebSocket).
    Query,
    /// A mutation running this many root fields (aliases included).
    Mutations(u32),
}

impl Budgets {
    pub(crate) fn new(mutations_per_minute: u32, queries_per_minute: u32) -> Self {
        Self {
            mutations: Budget::new("mutations", mutations_per_minute),
            queries: Budget::new("queries", queries_per_minute),
            refusals: RefusalLog::default(),
        }
    }

    /// Takes the operation out of its MSP's budget, or the refusal (`RATE_LIMITED`) when it
    /// does not fit. Anonymous operations cost nothing: their resolvers refuse them.
    pub(crate) fn charge(
        &self,
        viewer: Option<&Viewer>,
        charge: Charge,
    ) -> Result<(), ServerError> {
        let Some(viewer) = viewer else {
            return Ok(());
        };
        let (budget, n) = match charge {
            Charge::Mutations(n) if viewer.can_write() => (&self.mutations, n),
            // Refused by its resolvers before anything is looked up: as cheap as a query.
            Charge::Mutations(_) | Charge::Query => (&self.queries, 1),
        };
        let (Some(budget), Some(n)) = (budget, NonZeroU32::new(n)) else {
            return Ok(());
        };
        let msp = viewer.msp_id();
        let wait = match budget.spent.check_key_n(&msp.to_owned(), n) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(not_until)) => {
                use governor::clock::Clock as _;
                Some(not_until.wait_time_from(governor::clock::DefaultClock::default().now()))
            }
            // More in one operation than a whole minute allows: never fits.
            Err(_) => None,
        };
        if let Some(unwritten) = self.refusals.admit(budget.what, msp) {
            tracing::info!(
                msp = %msp,
                budget = budget.what,
                per_minute = budget.per_minute,
                refusals_not_logged = unwritten,
                "rate limit reached"
            );
        }
        Err(refusal(budget, n.get(), wait))
    }
}

fn refusal(budget: &Budget, n: u32, wait: Option<std::time::Duration>) -> ServerError {
    let what = budget.what;
    let per_minute = budget.per_minute;
    let mut error = match wait {
        Some(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut error = ServerError::new(
                format!(
                    "too many {what}: your MSP may run at most {per_minute} a minute; retry in {seconds} s"
                ),
                None,
            );
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("retryAfter", seconds.max(1));
            error
        }
        None => ServerError::new(
            format!(
                "this operation runs {n} {what}, more than your MSP may run in a minute ({per_minute}); split it"
            ),
            None,
        ),
    };
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", crate::error_code::ErrorCode::RateLimited.as_str());
    error
}
