//! The one redirect URI of every flow (`GET /oauth/callback`): finds the flow by its `state`,
//! lets exactly one request act on it, and hands every other request — concurrent, or a
//! replay — the first outcome (checklist 1–4, 83, 84).

use std::collections::HashMap;

use entity::enums::{OAuthFlowKind, OAuthFlowStatus};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::{
    Result, delegated_consents,
    graph_api::{self, ConsentCallback, Consents},
    now,
    oauth_flows::{self, FlowOutcome},
    service_principal_requests,
};
use crate::db::begin_write;

/// The callback's query parameters. Values are kept only for this request.
#[derive(Clone, Default)]
pub struct CallbackParams {
    params: HashMap<String, String>,
}

// Hand-written: the query can carry an authorization code and the state.
impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.params.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("CallbackParams")
            .field("names", &names)
            .finish()
    }
}

impl CallbackParams {
    pub fn new(params: HashMap<String, String>) -> Self {
        Self { params }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    fn consent(&self) -> ConsentCallback {
        ConsentCallback {
            error: self.get("error").map(str::to_owned),
            error_description: self.get("error_description").map(str::to_owned),
            tenant: self.get("tenant").map(str::to_owned),
        }
    }
}

/// What the callback request gets.
#[derive(Clone, Debug)]
pub enum CallbackResult {
    /// No `state`, or one Consentry never issued (or has forgotten): nothing was stored and
    /// nothing was asked of Microsoft.
    Rejected,
    /// Another request is acting on this flow right now.
    InProgress,
    /// The flow's outcome: the first one, however often the callback is repeated.
    Finished {
        flow_id: Uuid,
        kind: OAuthFlowKind,
        outcome: FlowOutcome,
    },
}

/// Handles one callback request.
pub async fn handle(
    db: &DatabaseConnection,
    consents: &Consents,
    params: &CallbackParams,
) -> Result<CallbackResult> {
    let Some(state) = params.get("state") else {
        return Ok(CallbackResult::Rejected);
    };
    let Some(flow) = oauth_flows::find_by_state(db, state).await? else {
        return Ok(CallbackResult::Rejected);
    };
    let finished =
        |flow: &entity::oauth_flow::Model, outcome: FlowOutcome| CallbackResult::Finished {
            flow_id: flow.id,
            kind: flow.kind,
            outcome,
        };
    match flow.status {
        OAuthFlowStatus::Pending => {}
        OAuthFlowStatus::Exchanging => return Ok(CallbackResult::InProgress),
        OAuthFlowStatus::Succeeded | OAuthFlowStatus::Failed | OAuthFlowStatus::Expired => {
            return Ok(finished(&flow, oauth_flows::outcome_of(&flow)));
        }
    }

    let now = now();
    if flow.expires_at <= now {
        expire(db, &flow).await?;
        return Ok(reread(db, flow.id)
            .await?
            .unwrap_or(CallbackResult::Rejected));
    }
    // The claim is a write like any other (on SQLite it waits its turn with them), and its
    // transaction goes on to the flow's first step.
    let claim = begin_write(db).await?;
    if !oauth_flows::claim(&claim, &flow, now).await? {
        drop(claim);
        // Someone else claimed (or expired) it first: show theirs.
        return Ok(reread(db, flow.id)
            .await?
            .unwrap_or(CallbackResult::Rejected));
    }
    tracing::info!(flow = %flow.id, kind = ?flow.kind, "callback claimed its flow");
    let outcome = match flow.kind {
        OAuthFlowKind::AdminConsent => {
            graph_api::complete_consent(db, claim, consents, &flow, &params.consent()).await?
        }
        OAuthFlowKind::ServicePrincipalSignIn => {
            claim.commit().await?;
            let error = params
                .get("error")
                .map(|e| (e, params.get("error_description").unwrap_or_default()));
            service_principal_requests::complete_sign_in(
                db,
                consents,
                &flow,
                error,
                params.get("code"),
            )
            .await?
        }
        OAuthFlowKind::DelegatedConsent => {
            claim.commit().await?;
            let error = params
                .get("error")
                .map(|e| (e, params.get("error_description").unwrap_or_default()));
            delegated_consents::complete(db, consents, &flow, error, params.get("code")).await?
        }
    };
    Ok(finished(&flow, outcome))
}

/// Expires a pending flow whose link ran out, with what its kind does on expiry (a tile
/// shows `LINK_EXPIRED`, a repair request fails). False when it had already moved on. Used
/// by a late callback and by the sweep alike.
pub async fn expire(db: &DatabaseConnection, flow: &entity::oauth_flow::Model) -> Result<bool> {
    match flow.kind {
        OAuthFlowKind::AdminConsent => graph_api::expire_flow(db, flow).await,
        OAuthFlowKind::ServicePrincipalSignIn => {
            service_principal_requests::expire_sign_in(db, flow).await
        }
        OAuthFlowKind::DelegatedConsent => {
            let outcome = FlowOutcome::cancelled(flow, "", "it expired");
            oauth_flows::finish(
                db,
                flow.id,
                &[OAuthFlowStatus::Pending],
                OAuthFlowStatus::Expired,
                &outcome,
                now(),
            )
            .await
        }
    }
}

/// The flow's state now, as a callback result (`None`: it no longer exists).
async fn reread(db: &DatabaseConnection, flow_id: Uuid) -> Result<Option<CallbackResult>> {
    let Some(flow) = oauth_flows::find(db, flow_id).await? else {
        return Ok(None);
    };
    Ok(Some(match flow.status {
        OAuthFlowStatus::Pending | OAuthFlowStatus::Exchanging => CallbackResult::InProgress,
        _ => CallbackResult::Finished {
            flow_id: flow.id,
            kind: flow.kind,
            outcome: oauth_flows::outcome_of(&flow),
        },
    }))
}
