//! Admin consent, the Graph API tile's flow ("Authorise"), in two steps (docs/design.md §1;
//! checklist 13, 14, 95):
//!
//! 1. **Sign-in:** the link is an OpenID Connect sign-in that proves which tenant the admin
//!    belongs to and that they may consent for it ([`tenant_proof`]); the browser then goes on
//!    to Microsoft's consent page for that very tenant.
//! 2. **Consent:** success is the absence of `error`, the redirect's `tenant` must be the one
//!    proven, and the consent is then verified with an app-only token for that tenant: what
//!    a redirect says is never taken on trust.
//!
//! The verdict is written in one transaction: the flow's outcome, the tile, the client's
//! tenant and the audit trail. No transaction is open while Microsoft is asked.

use async_trait::async_trait;
use entity::{
    client,
    enums::{AuditAction, GraphApiProblemCode, GraphApiStatus, OAuthFlowStatus},
    oauth_flow,
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection};
use serde_json::{Value, json};
use uuid::Uuid;

use super::kind::{Answer, CallbackResult, Claimed, Completed, Ending, Kind, finish_claimed};
use super::store;
use crate::db::{WriteTransaction, begin_write, now};
use crate::domain::audit::{self, Actor};
use crate::domain::clients::{self, ClientView};
use crate::domain::consents::Consents;
use crate::domain::error::Result;
use crate::domain::flows::store::{FlowOutcome, Step};
use crate::domain::graph_api::{self, CheckFailure};
use crate::domain::tenant_proof::{self, Proven, TenantProof};
use crate::domain::tile::{self, TileChange, TileEvent};
use crate::microsoft::known::{TEAMS_ADMIN_API_APP_ID, TEAMS_ADMIN_API_DISPLAY_NAME};
use crate::microsoft::{Microsoft, Problem, TenantHint};

pub(super) struct AdminConsent;

#[async_trait]
impl Kind for AdminConsent {
    /// The sign-in's link again, once it proved the tenant and opened the consent step: the
    /// same callback (a refresh, a double click) goes on to the same consent page; anything
    /// else learns nothing about it.
    fn passed(
        &self,
        consents: &Consents,
        flow: &oauth_flow::Model,
        step: Step,
        state: &str,
        code: Option<&str>,
    ) -> Option<CallbackResult> {
        if step != Step::SignIn || flow.consent_state_hash.is_none() {
            return None;
        }
        Some(
            match tenant_proof::repeat_sign_in(consents, flow, state, code) {
                Some(url) => CallbackResult::Continue { url },
                None => CallbackResult::AlreadySignedIn,
            },
        )
    }

    /// Watchers see `VERIFYING` while Microsoft is asked about a consent.
    async fn claimed(&self, txn: &WriteTransaction, callback: &Claimed<'_>) -> Result<()> {
        let (consents, flow, answer) = (callback.consents, callback.flow, callback.answer);
        if callback.step != Step::Consent {
            return Ok(());
        }
        let Verification::Ask { proof, .. } = to_verify(consents, flow, answer) else {
            return Ok(());
        };
        let Some(view) = clients::locked_view(txn, flow.client_id).await? else {
            return Ok(());
        };
        let Some(status) = tile::next(&view.tile, &TileEvent::ConsentReceived) else {
            return Ok(());
        };
        tile::write(
            txn,
            &view.tile,
            TileChange::to(status),
            &Actor::callback(&flow.msp_id),
            &flow.msp_id,
            json!({ "reason": "consent received; verifying", "flowId": flow.id, "tenant": proof.tenant_id }),
        )
        .await?;
        Ok(())
    }

    async fn complete(&self, callback: &Claimed<'_>) -> Result<Completed> {
        match callback.step {
            Step::SignIn => complete_sign_in(callback).await,
            Step::Consent => complete_consent(callback).await.map(Completed::Finished),
        }
    }

    fn expired(&self, flow: &oauth_flow::Model, client: &client::Model) -> FlowOutcome {
        FlowOutcome::of(
            flow,
            client,
            false,
            "LINK_EXPIRED",
            "This consent link has expired.".to_owned(),
            "Ask your IT provider for a new link. If the Accept window did not appear when you \
             signed in, tell them: your tenant is probably missing a service principal."
                .to_owned(),
        )
    }

    /// An expired link fails a tile still waiting for it, naming the usual cause; an
    /// interrupted callback fails a tile it left waiting or verifying.
    async fn ended(
        &self,
        txn: &WriteTransaction,
        flow: &oauth_flow::Model,
        view: &ClientView,
        ending: Ending,
    ) -> Result<()> {
        let tile = &view.tile;
        let (event, problem, reason) = match ending {
            Ending::Expired => {
                let reason = "consent link expired unused";
                (TileEvent::LinkExpired, link_expired(), reason)
            }
            Ending::Interrupted => {
                let problem = Problem::new(
                    GraphApiProblemCode::Unknown,
                    "Consentry was interrupted while verifying the consent. Authorise again: the \
                     admin only needs to sign in and press Accept once more.",
                );
                (TileEvent::Interrupted, problem, "callback interrupted")
            }
        };
        let Some(status) = tile::next(tile, &event) else {
            return Ok(());
        };
        tile::write(
            txn,
            tile,
            TileChange {
                status,
                ..TileChange::revoked(problem)
            },
            &Actor::system(&flow.msp_id),
            &flow.msp_id,
            json!({ "reason": reason, "flowId": flow.id }),
        )
        .await?;
        Ok(())
    }
}

/// What a callback concluded, before it is written.
enum Verdict {
    /// Verified: the tenant an admin proved granted every required permission.
    Authorised {
        proof: TenantProof,
        granted: Vec<String>,
    },
    /// The consent failed or proved insufficient.
    Failed {
        problem: Problem,
        granted: Vec<String>,
        missing: Vec<String>,
    },
    /// Consentry's own configuration stopped it (our secret, our redirect URI, no app
    /// registration): an operator's problem, which must not mark the client's tile failed.
    Ours(Problem),
}

impl Verdict {
    fn failed(problem: Problem) -> Self {
        if problem.ours {
            return Self::Ours(problem);
        }
        Self::Failed {
            problem,
            granted: Vec::new(),
            missing: Vec::new(),
        }
    }
}

/// The sign-in step: proves the tenant, then opens the consent step and sends the browser on
/// to Microsoft's consent page; or ends the flow with the reason it cannot.
#[tracing::instrument(skip_all, fields(flow = %callback.flow.id, client = %callback.flow.client_id))]
async fn complete_sign_in(callback: &Claimed<'_>) -> Result<Completed> {
    let consents = callback.consents;
    if let Some(refusal) = &callback.answer.refusal {
        return finished(callback, Verdict::failed(refusal.clone())).await;
    }
    let Ok(microsoft) = consents.microsoft() else {
        return finished(callback, no_microsoft()).await;
    };
    let (db, flow) = (callback.db, callback.flow);
    let code = callback.answer.code;
    let proven = tenant_proof::prove(
        db,
        microsoft,
        &consents.flow_keys,
        flow,
        callback.client,
        code,
    )
    .await?;
    match proven {
        Ok(proven) => open_consent_step(db, microsoft, flow, callback.state, proven).await,
        Err(problem) => finished(callback, Verdict::failed(problem)).await,
    }
}

async fn finished(callback: &Claimed<'_>, verdict: Verdict) -> Result<Completed> {
    conclude(callback, verdict).await.map(Completed::Finished)
}

/// Makes the flow pending again, now found by the consent step's `state`, with the proof
/// kept and the sign-in's secrets erased; audited as the tenant proven.
async fn open_consent_step(
    db: &DatabaseConnection,
    microsoft: &Microsoft,
    flow: &oauth_flow::Model,
    sign_in_state: &str,
    proven: Proven<'_>,
) -> Result<Completed> {
    let Proven { proof, code } = proven;
    let state = tenant_proof::consent_state(sign_in_state, code);
    let txn = begin_write(db).await?;
    if !store::open_consent_step(
        &txn,
        flow.id,
        state.secret(),
        proof.to_json(),
        now() + tenant_proof::CONSENT_STEP_LIFETIME,
    )
    .await?
    {
        let theirs = store::find(&txn, flow.id).await?.map_or_else(
            || FlowOutcome::cancelled(flow, "", "it was cancelled"),
            |f| store::outcome_of(&f),
        );
        return Ok(Completed::Finished(theirs));
    }
    audit::record(
        &txn,
        &Actor::callback(&flow.msp_id),
        &flow.msp_id,
        Some(flow.client_id),
        AuditAction::TenantProven,
        json!({
            "flowId": flow.id,
            "tenant": proof.tenant_id,
            "signedInAs": proof.signed_in_as,
            "userObjectId": proof.user_object_id,
            "roles": proof.role_names(),
        }),
    )
    .await?;
    txn.commit().await?;
    tracing::info!(tenant = %proof.tenant_id, "admin signed in; on to Microsoft's consent page");
    Ok(Completed::Continue(microsoft.admin_consent_url(
        &TenantHint::Id(proof.tenant_id),
        &state,
    )))
}

/// The consent step: asks Microsoft what the proven tenant granted, and writes the verdict.
#[tracing::instrument(skip_all, fields(flow = %callback.flow.id, client = %callback.flow.client_id))]
async fn complete_consent(callback: &Claimed<'_>) -> Result<FlowOutcome> {
    let (microsoft, proof) = match to_verify(callback.consents, callback.flow, callback.answer) {
        Verification::Ask { microsoft, proof } => (microsoft, proof),
        Verification::Settled(verdict) => return conclude(callback, verdict).await,
    };
    let domain = callback.client.domain.as_deref();
    let tenant = proof.tenant_id;
    let verdict = match graph_api::check_tenant(microsoft, tenant, domain).await {
        Ok(check) if check.missing.is_empty() => Verdict::Authorised {
            proof,
            granted: check.granted,
        },
        Ok(check) => Verdict::Failed {
            problem: graph_api::permissions_missing(&check.missing),
            granted: check.granted,
            missing: check.missing,
        },
        Err(CheckFailure::WrongTenant(p)) => Verdict::failed(p),
        Err(CheckFailure::Microsoft(e)) => {
            tracing::warn!(error = %e, "could not verify the consent");
            Verdict::failed(e.problem())
        }
    };
    conclude(callback, verdict).await
}

/// What a consent step's callback leads to.
enum Verification<'a> {
    /// Ask Microsoft what the proven tenant granted.
    Ask {
        microsoft: &'a Microsoft,
        proof: TenantProof,
    },
    /// There is nothing Microsoft could confirm: this is the verdict.
    Settled(Verdict),
}

fn to_verify<'a>(
    consents: &'a Consents,
    flow: &oauth_flow::Model,
    answer: &Answer<'_>,
) -> Verification<'a> {
    if let Some(refusal) = &answer.refusal {
        return Verification::Settled(Verdict::failed(refusal.clone()));
    }
    let Some(proof) = TenantProof::stored(flow.tenant_proof.as_ref()) else {
        return Verification::Settled(Verdict::failed(Problem::new(
            GraphApiProblemCode::Unknown,
            "No admin signed in for this consent, so the tenant was never proven. Send a new link.",
        )));
    };
    // The redirect's `tenant` is never adopted, only compared with the proven one.
    let named = answer.tenant.and_then(|t| Uuid::try_parse(t.trim()).ok());
    if named != Some(proof.tenant_id) {
        return Verification::Settled(Verdict::failed(Problem::new(
            GraphApiProblemCode::WrongTenant,
            format!(
                "Microsoft's answer did not name the tenant {} signed in to ({}), so Consentry did \
                 not use it. Send a new link, and have the admin accept the consent in the same \
                 browser window they signed in with.",
                proof.signed_in_as, proof.tenant_id
            ),
        )));
    }
    let Ok(microsoft) = consents.microsoft() else {
        return Verification::Settled(no_microsoft());
    };
    Verification::Ask { microsoft, proof }
}

/// The verdict when no Microsoft app registration is configured: an operator's problem.
fn no_microsoft() -> Verdict {
    Verdict::Ours(
        Problem::new(
            GraphApiProblemCode::IdentityProviderUnavailable,
            "Consentry has no Microsoft app registration configured, so it cannot complete the \
             consent. An operator must set CONSENTRY_MS_CLIENT_ID and CONSENTRY_MS_CLIENT_SECRET.",
        )
        .ours(),
    )
}

/// Writes the verdict in a transaction of its own, on the client's tile locked in it: the
/// flow's outcome, the tile, the client's tenant, and the audit trail, committed together.
/// A flow someone else finished meanwhile keeps their outcome.
async fn conclude(callback: &Claimed<'_>, verdict: Verdict) -> Result<FlowOutcome> {
    let (db, consents, flow) = (callback.db, callback.consents, callback.flow);
    let txn = begin_write(db).await?;
    let Some(view) = clients::locked_view(&txn, flow.client_id).await? else {
        // The client was deleted (and with it this flow) while we were on our way.
        return Ok(FlowOutcome::cancelled(flow, "", "the client was removed"));
    };
    let ClientView { client, tile } = view;
    let mut verdict = verdict;
    // Within one MSP a tenant belongs to one client (checklist 15); checked again here, in
    // the transaction that records it.
    if let Verdict::Authorised { proof, .. } = &verdict
        && client.azure_tenant_id != Some(proof.tenant_id)
        && let Some(problem) = tenant_proof::tenant_taken(&txn, &client, proof.tenant_id).await?
    {
        verdict = Verdict::failed(problem);
    }
    if let Verdict::Ours(problem) = &verdict {
        tracing::error!(
            aadsts = ?problem.aadsts,
            "a consent could not be completed because of Consentry's own configuration: {}",
            problem.remediation
        );
    }
    let written = written(consents, flow, &client, &tile, &verdict);
    if let Err(theirs) = finish_claimed(&txn, flow, written.flow_status, &written.outcome).await? {
        return Ok(theirs);
    }
    if let Verdict::Authorised { proof, .. } = &verdict
        && client.azure_tenant_id.is_none()
    {
        client::ActiveModel {
            id: Set(client.id),
            azure_tenant_id: Set(Some(proof.tenant_id)),
            updated_at: Set(now()),
            ..Default::default()
        }
        .update(&txn)
        .await?;
    }
    let actor = Actor::callback(&flow.msp_id);
    if let Some(change) = written.change {
        tile::write(
            &txn,
            &tile,
            change,
            &actor,
            &flow.msp_id,
            json!({ "reason": "consent callback", "flowId": flow.id }),
        )
        .await?;
    }
    audit::record(
        &txn,
        &actor,
        &flow.msp_id,
        Some(flow.client_id),
        AuditAction::ConsentCallbackReceived,
        written.details,
    )
    .await?;
    txn.commit().await?;
    let outcome = written.outcome;
    tracing::info!(status = %outcome.status, succeeded = outcome.succeeded, "consent callback handled");
    Ok(outcome)
}

/// What a verdict writes.
struct Written {
    flow_status: OAuthFlowStatus,
    outcome: FlowOutcome,
    /// The tile's change: none when a failed re-consent leaves a working authorisation alone.
    change: Option<TileChange>,
    /// The audit entry of the callback.
    details: Value,
}

/// What `verdict` writes on a client whose tile is `tile`.
fn written(
    consents: &Consents,
    flow: &oauth_flow::Model,
    client: &client::Model,
    tile: &entity::graph_api_tile::Model,
    verdict: &Verdict,
) -> Written {
    let reconsent = tile.status == GraphApiStatus::Authorised;
    let mut written = match verdict {
        Verdict::Authorised { proof, granted } => {
            authorised(consents, flow, client, tile, proof, granted)
        }
        Verdict::Failed {
            problem,
            granted,
            missing,
        } => failed(flow, client, tile, problem, granted, missing),
        Verdict::Ours(problem) => ours(flow, client, tile, problem),
    };
    written.details["flowId"] = json!(flow.id);
    written.details["reconsent"] = json!(reconsent);
    written
}

/// The outcome of a consent, named after the tile's status it leaves.
fn outcome(
    flow: &oauth_flow::Model,
    client: &client::Model,
    succeeded: bool,
    status: GraphApiStatus,
    headline: String,
    next_step: String,
) -> FlowOutcome {
    let status = tile::status_name(status);
    FlowOutcome::of(flow, client, succeeded, status, headline, next_step)
}

fn authorised(
    consents: &Consents,
    flow: &oauth_flow::Model,
    client: &client::Model,
    tile: &entity::graph_api_tile::Model,
    proof: &TenantProof,
    granted: &[String],
) -> Written {
    let now = now();
    Written {
        flow_status: OAuthFlowStatus::Succeeded,
        outcome: outcome(
            flow,
            client,
            true,
            GraphApiStatus::Authorised,
            format!("Microsoft Graph access for {} is authorised.", client.name),
            "Nothing more to do: you can close this window.".to_owned(),
        ),
        change: tile::next(tile, &TileEvent::Authorised).map(|status| TileChange {
            status,
            problem: None,
            granted: Some(granted.to_vec()),
            missing: Some(Vec::new()),
            authorised_at: Some(now),
            verified_at: Some(now),
            next_verification_at: Some(consents.next_verification(now)),
            proof: Some(proof.clone()),
        }),
        details: json!({
            "result": "AUTHORISED",
            "tenant": proof.tenant_id,
            "grantedPermissions": granted,
            "provenBy": proof.signed_in_as,
        }),
    }
}

/// A failed consent fails the tile; a failed re-consent leaves the authorisation standing.
fn failed(
    flow: &oauth_flow::Model,
    client: &client::Model,
    tile: &entity::graph_api_tile::Model,
    problem: &Problem,
    granted: &[String],
    missing: &[String],
) -> Written {
    // The remediation is written for the MSP's technician; the page is read by the client's
    // admin, who passes it on.
    let change = tile::next(tile, &TileEvent::ConsentFailed).map(|status| TileChange {
        problem: Some(problem.clone()),
        granted: Some(granted.to_vec()),
        missing: Some(missing.to_vec()),
        ..TileChange::to(status)
    });
    let (status, next_step) = if change.is_none() {
        let next = format!(
            "{} The earlier authorisation still stands.",
            problem.remediation
        );
        (GraphApiStatus::Authorised, next)
    } else {
        let next = format!("For your IT provider: {}", problem.remediation);
        (GraphApiStatus::Failed, next)
    };
    let headline = failure_headline(problem.code, &client.name);
    Written {
        flow_status: OAuthFlowStatus::Failed,
        outcome: FlowOutcome {
            microsoft_message: problem.message.clone(),
            ..outcome(flow, client, false, status, headline, next_step)
        },
        change,
        details: json!({ "result": "FAILED", "problem": tile::problem_json(problem) }),
    }
}

/// Consentry's own configuration stopped the consent: the tile does not blame the tenant.
fn ours(
    flow: &oauth_flow::Model,
    client: &client::Model,
    tile: &entity::graph_api_tile::Model,
    problem: &Problem,
) -> Written {
    let change = tile::next(tile, &TileEvent::OperatorProblem).map(TileChange::to);
    // What the tile reads after it: a re-consent leaves the authorisation standing.
    let status = change.as_ref().map_or(tile.status, |c| c.status);
    Written {
        flow_status: OAuthFlowStatus::Failed,
        outcome: outcome(
            flow,
            client,
            false,
            status,
            "Consentry could not complete the authorisation because of a problem in its own \
             configuration, not in your tenant."
                .to_owned(),
            "Your IT provider has been alerted. Once they have fixed it they will send you a new \
             link."
                .to_owned(),
        ),
        change,
        details: json!({ "result": "OPERATOR_PROBLEM", "problem": tile::problem_json(problem) }),
    }
}

/// An expired link's problem, naming the usual cause: the Accept window never appeared
/// because the tenant lacks the Teams admin API's service principal.
fn link_expired() -> Problem {
    Problem {
        app_id: Some(TEAMS_ADMIN_API_APP_ID.to_owned()),
        app_display_name: Some(TEAMS_ADMIN_API_DISPLAY_NAME.to_owned()),
        ..Problem::new(
            GraphApiProblemCode::LinkExpired,
            "The consent link expired before anyone completed it. If the admin signed in but the \
             Accept window never appeared, the tenant is most likely missing the service principal of \
             the Skype and Teams Tenant Admin API (48ac35b8-9aa8-4d74-927d-1f4a14a0b239), common in \
             tenants without Teams licences: create it with createServicePrincipal, wait a few \
             minutes, then authorise again. Otherwise simply send a new link.",
        )
    }
}

fn failure_headline(code: GraphApiProblemCode, client: &str) -> String {
    use GraphApiProblemCode::*;
    match code {
        MissingServicePrincipal => format!(
            "{client}'s tenant is missing a service principal Consentry needs, so consent could not be granted."
        ),
        ConsentDeclined => "The consent was declined or cancelled.".to_owned(),
        AdminConsentRequired => {
            "The account that signed in cannot consent for the whole organisation.".to_owned()
        }
        WrongTenant => "The consent came from the wrong Microsoft tenant.".to_owned(),
        PermissionsMissing => "Consent was given, but not every permission was granted.".to_owned(),
        ConditionalAccess => {
            "Multi-factor authentication or a Conditional Access policy stopped the sign-in."
                .to_owned()
        }
        IdentityProviderUnavailable => {
            "Microsoft could not be reached to complete the authorisation.".to_owned()
        }
        _ => "The authorisation did not complete.".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_link_names_the_missing_service_principal_cause() {
        let p = link_expired();
        assert_eq!(p.code, GraphApiProblemCode::LinkExpired);
        assert_eq!(p.app_id.as_deref(), Some(TEAMS_ADMIN_API_APP_ID));
        assert!(p.remediation.contains("Accept window never appeared"));
        assert!(p.remediation.contains("createServicePrincipal"));
    }
}
