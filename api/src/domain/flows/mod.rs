//! OAuth flows (docs/design.md §1): every sign-in and consent Consentry hands out a link for
//! goes through one lifecycle, written once here; what differs between kinds is one file
//! each.
//!
//! 1. **Open** ([`store::open`]): the mutation that hands out the link stores one flow row,
//!    bound to its MSP, client and kind (checklist 5), its `state` kept only as a hash
//!    (checklist 7), its PKCE verifier sealed and its nonce hashed (checklist 74, 75).
//! 2. **Claim** ([`callback::handle`]): the callback finds the flow by its `state` and claims
//!    it with one conditional UPDATE, so exactly one request acts on it (checklist 84); in that
//!    same transaction the kind may show watchers what is happening ([`Kind::claimed`]).
//! 3. **Complete** ([`Kind::complete`]): the kind acts on Microsoft's answer and finishes the
//!    flow with the outcome a replayed callback shows again (checklist 3, 83).
//! 4. **End** ([`end`]): a flow nobody finished ends on one path, whether its link expired
//!    unused (the sweep, or a late callback) or its callback was interrupted (checklist 92);
//!    the kind writes what that means for its record ([`Kind::ended`]).
//!
//! A new kind is a variant of `OAuthFlowKind` (in `entity`), a file here that implements
//! [`Kind`], its arm in [`kind`], and the mutation that opens it with [`store::open`].

mod admin_consent;
pub(crate) mod callback;
mod delegated_consent;
mod service_principal_sign_in;
mod sign_in;
pub(crate) mod store;

use async_trait::async_trait;
use chrono::Duration;
use entity::{
    client,
    enums::{OAuthFlowKind, OAuthFlowStatus},
    oauth_flow,
};
use sea_orm::DatabaseConnection;
use url::Url;

use self::callback::{Answer, CallbackResult};
pub(crate) use self::store::{EXCHANGE_LEASE, FlowOutcome, Step};
pub(crate) use self::store::{NewFlow, open};
use super::{
    Consents, Result,
    clients::{self, ClientView},
    now,
};
use crate::db::{WriteTransaction, begin_write};

/// How many expired or interrupted flows one sweep takes on.
const SWEEP_BATCH: u64 = 50;

/// What one kind of flow does at each point of the lifecycle. Implemented by a unit struct
/// in the kind's file; [`kind`] picks it.
#[async_trait]
trait Kind: Sync {
    /// The answer to a callback for a step the flow has already passed (admin consent's
    /// sign-in, repeated once it proved the tenant), given without claiming anything. `None`
    /// (the default): the callback claims the flow.
    fn passed(
        &self,
        _consents: &Consents,
        _flow: &oauth_flow::Model,
        _step: Step,
        _state: &str,
        _code: Option<&str>,
    ) -> Option<CallbackResult> {
        None
    }

    /// Writes, in the transaction that claims the flow for this callback, what watchers
    /// should see at once. Nothing by default.
    async fn claimed(&self, _txn: &WriteTransaction, _callback: &Claimed<'_>) -> Result<()> {
        Ok(())
    }

    /// Acts on the answer to the flow this callback claimed, and finishes the flow (or, for
    /// a flow of two steps, opens the next).
    async fn complete(&self, callback: &Claimed<'_>) -> Result<Completed>;

    /// What the person who comes back with an expired link reads.
    fn expired(&self, flow: &oauth_flow::Model, client: &client::Model) -> FlowOutcome {
        FlowOutcome::cancelled(flow, &client.name, "it expired")
    }

    /// Writes what the end of a flow nobody finished means for the kind's record, in the
    /// transaction that ended the flow (the client's tile locked in it); not called for an
    /// expired link while a newer one of the same job is out. Nothing by default.
    async fn ended(
        &self,
        _txn: &WriteTransaction,
        _flow: &oauth_flow::Model,
        _view: &ClientView,
        _ending: Ending,
    ) -> Result<()> {
        Ok(())
    }
}

/// The one place that knows which file handles which kind.
fn kind(kind: OAuthFlowKind) -> &'static dyn Kind {
    match kind {
        OAuthFlowKind::AdminConsent => &admin_consent::AdminConsent,
        OAuthFlowKind::DelegatedConsent => &delegated_consent::DelegatedConsent,
        OAuthFlowKind::ServicePrincipalSignIn => &service_principal_sign_in::ServicePrincipalSignIn,
    }
}

/// A flow claimed by this callback, with everything its kind needs to complete it.
struct Claimed<'a> {
    db: &'a DatabaseConnection,
    consents: &'a Consents,
    /// The flow's client, as the claim found it.
    client: &'a client::Model,
    flow: &'a oauth_flow::Model,
    /// Which of the flow's `state`s the callback came back with.
    step: Step,
    /// That `state` (admin consent derives its second step's from it).
    state: &'a str,
    answer: &'a Answer<'a>,
}

/// How a claimed flow's callback ended.
enum Completed {
    /// The flow goes on at Microsoft: the browser continues to this URL.
    Continue(Url),
    /// The flow's outcome.
    Finished(FlowOutcome),
}

/// Why a flow ended without anyone finishing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Its link expired unused.
    Expired,
    /// Its callback claimed it and never finished (the instance died, checklist 92).
    Interrupted,
}

/// Ends a flow nobody finished, with what its kind does then (a tile shows `LINK_EXPIRED`,
/// a repair request fails), in one transaction that first locks the client's tile, as every
/// writer does. False when the flow had moved on (or its client is gone).
pub(crate) async fn end(
    db: &DatabaseConnection,
    flow: &oauth_flow::Model,
    ending: Ending,
) -> Result<bool> {
    let txn = begin_write(db).await?;
    let Some(view) = clients::locked_view(&txn, flow.client_id).await? else {
        return Ok(false);
    };
    let handler = kind(flow.kind);
    let (from, to, outcome) = match ending {
        Ending::Expired => (
            OAuthFlowStatus::Pending,
            OAuthFlowStatus::Expired,
            handler.expired(flow, &view.client),
        ),
        Ending::Interrupted => (
            OAuthFlowStatus::Exchanging,
            OAuthFlowStatus::Failed,
            FlowOutcome::cancelled(
                flow,
                &view.client.name,
                "Consentry was interrupted while completing it",
            ),
        ),
    };
    if !store::finish(&txn, flow.id, &[from], to, &outcome, now()).await? {
        return Ok(false);
    }
    // An expired link whose newer link is still out leaves its record waiting for that one.
    if ending == Ending::Interrupted || !store::has_other_open(&txn, flow).await? {
        handler.ended(&txn, flow, &view, ending).await?;
    }
    txn.commit().await?;
    tracing::info!(flow = %flow.id, kind = ?flow.kind, ?ending, "flow ended unfinished");
    Ok(true)
}

/// Ends the pending flows whose link expired unused. Returns how many.
pub(crate) async fn expire_links(db: &DatabaseConnection) -> Result<usize> {
    let mut ended = 0;
    for flow in store::expired(db, now(), SWEEP_BATCH).await? {
        if end(db, &flow, Ending::Expired).await? {
            ended += 1;
        }
    }
    Ok(ended)
}

/// Ends the flows whose callback claimed them more than `lease` ago and never finished
/// (checklist 92), so no tile stays `VERIFYING` and no request waits for ever. Returns how
/// many.
pub(crate) async fn fail_interrupted(db: &DatabaseConnection, lease: Duration) -> Result<usize> {
    let mut ended = 0;
    for flow in store::stuck(db, now() - lease, SWEEP_BATCH).await? {
        if end(db, &flow, Ending::Interrupted).await? {
            tracing::warn!(flow = %flow.id, "an interrupted callback's flow was failed");
            ended += 1;
        }
    }
    Ok(ended)
}

/// Finishes a flow this callback claimed, in the caller's transaction. When someone else
/// finished it meanwhile (a sweep took it for interrupted), theirs is the outcome to show:
/// `Err` carries it, and the caller writes nothing more.
async fn finish_claimed(
    txn: &WriteTransaction,
    flow: &oauth_flow::Model,
    to: OAuthFlowStatus,
    outcome: &FlowOutcome,
) -> Result<std::result::Result<(), FlowOutcome>> {
    if store::finish(
        txn,
        flow.id,
        &[OAuthFlowStatus::Exchanging],
        to,
        outcome,
        now(),
    )
    .await?
    {
        return Ok(Ok(()));
    }
    let theirs = store::find(txn, flow.id).await?.map_or_else(
        || FlowOutcome::cancelled(flow, &outcome.client_name, "it was cancelled"),
        |f| store::outcome_of(&f),
    );
    Ok(Err(theirs))
}

/// Finishes a flow this callback claimed, in a transaction of its own, when nothing else is
/// written with it; `Err` carries the outcome someone else finished it with meanwhile (see
/// [`finish_claimed`]).
async fn finish(
    db: &DatabaseConnection,
    flow: &oauth_flow::Model,
    to: OAuthFlowStatus,
    outcome: &FlowOutcome,
) -> Result<std::result::Result<(), FlowOutcome>> {
    let txn = begin_write(db).await?;
    let finished = finish_claimed(&txn, flow, to, outcome).await?;
    if finished.is_ok() {
        txn.commit().await?;
    }
    Ok(finished)
}

/// The outcome of a flow whose answer failed before anything was stored: the problem's
/// remediation, and Microsoft's words.
fn failure(
    flow: &oauth_flow::Model,
    client: &client::Model,
    status: &str,
    headline: String,
    problem: &crate::microsoft::Problem,
) -> FlowOutcome {
    FlowOutcome {
        microsoft_message: problem.message.clone(),
        ..FlowOutcome::of(
            flow,
            client,
            false,
            status,
            headline,
            problem.remediation.clone(),
        )
    }
}
