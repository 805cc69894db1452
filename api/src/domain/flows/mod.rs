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
pub(crate) mod kind;
mod service_principal_sign_in;
mod sign_in;
pub(crate) mod store;

use chrono::Duration;
use entity::{
    enums::{OAuthFlowKind, OAuthFlowStatus},
    oauth_flow,
};
use sea_orm::DatabaseConnection;

pub(crate) use self::kind::Ending;
use self::kind::Kind;
pub(crate) use self::store::FlowOutcome;
use super::clients::{self};
use super::error::Result;
use crate::db::begin_write;
use crate::db::now;

/// How many expired or interrupted flows one sweep takes on.
const SWEEP_BATCH: u64 = 50;

/// The one place that knows which file handles which kind.
fn kind(kind: OAuthFlowKind) -> &'static dyn Kind {
    match kind {
        OAuthFlowKind::AdminConsent => &admin_consent::AdminConsent,
        OAuthFlowKind::DelegatedConsent => &delegated_consent::DelegatedConsent,
        OAuthFlowKind::ServicePrincipalSignIn => &service_principal_sign_in::ServicePrincipalSignIn,
    }
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
