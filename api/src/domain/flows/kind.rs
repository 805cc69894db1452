//! What a kind of flow is to the lifecycle (see the module [`super`]): the [`Kind`] each
//! kind's file implements, what a claimed callback hands it, and the ways a kind finishes a
//! flow. Nothing here knows the kinds themselves: [`super::kind`] picks them.

use async_trait::async_trait;
use entity::{
    client,
    enums::{GraphApiProblemCode, OAuthFlowStatus},
    oauth_flow,
};
use sea_orm::DatabaseConnection;
use url::Url;
use uuid::Uuid;

use super::store::{self, FlowOutcome, Step};
use crate::db::{WriteTransaction, begin_write, now};
use crate::domain::{clients::ClientView, consents::Consents, error::Result};
use crate::microsoft::Problem;

/// What one kind of flow does at each point of the lifecycle. Implemented by a unit struct
/// in the kind's file; [`kind`] picks it.
#[async_trait]
pub(super) trait Kind: Sync {
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

/// A flow claimed by this callback, with everything its kind needs to complete it.
pub(super) struct Claimed<'a> {
    pub(super) db: &'a DatabaseConnection,
    pub(super) consents: &'a Consents,
    /// The flow's client, as the claim found it.
    pub(super) client: &'a client::Model,
    pub(super) flow: &'a oauth_flow::Model,
    /// Which of the flow's `state`s the callback came back with.
    pub(super) step: Step,
    /// That `state` (admin consent derives its second step's from it).
    pub(super) state: &'a str,
    pub(super) answer: &'a Answer<'a>,
}

/// How a claimed flow's callback ended.
pub(super) enum Completed {
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

/// What a redirect says, as far as it can be believed: Microsoft's refusal (as a problem),
/// or a code to redeem, or neither.
#[derive(Clone, Debug)]
pub(crate) struct Answer<'a> {
    pub refusal: Option<Problem>,
    /// The authorization code; never set together with a refusal.
    pub code: Option<&'a str>,
    /// Admin consent's `tenant`, unauthenticated.
    pub tenant: Option<&'a str>,
}

impl Answer<'_> {
    /// The code to redeem, or the problem that stops the flow: Microsoft's refusal, or no
    /// code at all. `again` tells the person what to restart ("Send a new link.").
    pub(crate) fn code_or_problem(&self, again: &str) -> Result<&str, Problem> {
        if let Some(refusal) = &self.refusal {
            return Err(refusal.clone());
        }
        self.code.ok_or_else(|| {
            Problem::new(
                GraphApiProblemCode::Unknown,
                format!("Microsoft sent no authorization code. {again}"),
            )
        })
    }
}

/// What the callback request gets.
#[derive(Clone, Debug)]
pub(crate) enum CallbackResult {
    /// No `state`, or one Consentry never issued (or has forgotten): nothing was stored and
    /// nothing was asked of Microsoft.
    Rejected,
    /// Another request is acting on this flow right now.
    InProgress,
    /// The flow goes on at Microsoft: admin consent's sign-in proved the tenant, and the
    /// admin's browser continues to Microsoft's consent page for it. The URL carries the
    /// next step's `state`: it is given only to whoever presented this step's `state` *and*
    /// its authorization code.
    Continue { url: Url },
    /// Admin consent's sign-in link, used again after its sign-in: the admin continues on
    /// Microsoft's consent page, not here.
    AlreadySignedIn,
    /// The flow's outcome: the first one, however often the callback is repeated.
    Finished { flow_id: Uuid, outcome: FlowOutcome },
}

/// Finishes a flow this callback claimed, in the caller's transaction. When someone else
/// finished it meanwhile (a sweep took it for interrupted), theirs is the outcome to show:
/// `Err` carries it, and the caller writes nothing more.
pub(super) async fn finish_claimed(
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
pub(super) async fn finish(
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
pub(super) fn failure(
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
