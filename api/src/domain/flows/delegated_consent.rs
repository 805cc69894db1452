//! A delegated consent's flow ("Delegate"): a named user of the client's tenant grants the
//! permissions the MSP chose. The code is redeemed once (for Graph), the id_token validated
//! before any token is used or kept, the refresh token redeemed again for Azure management
//! when that was chosen, and the consent stored with the newest refresh token, encrypted
//! (docs/design.md §1).

use async_trait::async_trait;
use entity::{client, enums::GraphApiProblemCode as Code, enums::OAuthFlowStatus, oauth_flow};

use super::kind::{Claimed, Completed, Kind, failure, finish, finish_claimed};
use super::sign_in;
use crate::db::{begin_write, now};
use crate::domain::delegated_consents::{self, DelegatedPermission, Granted};
use crate::domain::error::Result;
use crate::domain::flows::store::FlowOutcome;
use crate::microsoft::Problem;
use crate::microsoft::identity::TokenSet;
use crate::microsoft::known::AZURE_USER_IMPERSONATION_SCOPE;

pub(super) struct DelegatedConsent;

#[async_trait]
impl Kind for DelegatedConsent {
    #[tracing::instrument(skip_all, fields(flow = %callback.flow.id, client = %callback.flow.client_id))]
    async fn complete(&self, callback: &Claimed<'_>) -> Result<Completed> {
        let flow = callback.flow;
        let requested = delegated_consents::permissions(
            &flow.requested_permissions.clone().unwrap_or_default().0,
        );
        let result = match callback.answer.code_or_problem("Send a new link.") {
            Ok(code) => redeem(callback, &requested, code).await,
            Err(problem) => Err(problem),
        };
        let outcome = match result {
            Err(problem) => {
                let headline = "The delegated consent was not completed.".to_owned();
                let outcome = failure(flow, callback.client, "FAILED", headline, &problem);
                // Nothing is stored.
                let finished = finish(callback.db, flow, OAuthFlowStatus::Failed, &outcome).await?;
                finished.err().unwrap_or(outcome)
            }
            Ok(granted) => store(callback, &granted).await?,
        };
        Ok(Completed::Finished(outcome))
    }
}

/// Finishes the flow with what was granted and stores the consent (a consent that granted
/// nothing is a failed flow, and stores nothing).
async fn store(callback: &Claimed<'_>, granted: &Granted) -> Result<FlowOutcome> {
    let flow = callback.flow;
    let outcome = granted_outcome(flow, callback.client, granted);
    let flow_status = if granted.granted.is_empty() {
        OAuthFlowStatus::Failed
    } else {
        OAuthFlowStatus::Succeeded
    };
    let txn = begin_write(callback.db).await?;
    if let Err(theirs) = finish_claimed(&txn, flow, flow_status, &outcome).await? {
        return Ok(theirs);
    }
    if !granted.granted.is_empty() {
        delegated_consents::grant(&txn, callback.consents, flow, granted, now()).await?;
    }
    txn.commit().await?;
    Ok(outcome)
}

/// What the user who consented reads.
fn granted_outcome(
    flow: &oauth_flow::Model,
    client: &client::Model,
    granted: &Granted,
) -> FlowOutcome {
    let user = granted.user_principal_name();
    let scopes = |permissions: &[DelegatedPermission]| {
        permissions
            .iter()
            .map(|p| p.info().scope)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if granted.granted.is_empty() {
        return FlowOutcome::of(
            flow,
            client,
            false,
            "FAILED",
            format!("{user} granted none of the permissions."),
            "Nothing was granted. Sign in as an administrator and accept the permissions."
                .to_owned(),
        );
    }
    let next_step = if granted.missing.is_empty() {
        "Nothing more to do: you can close this window.".to_owned()
    } else {
        format!(
            "Not granted: {}. These need an administrator: ask a Global Administrator to consent.",
            scopes(&granted.missing)
        )
    };
    FlowOutcome::of(
        flow,
        client,
        true,
        "ACTIVE",
        format!("{user} granted Consentry: {}.", scopes(&granted.granted)),
        next_step,
    )
}

/// Redeems the code for Graph (one resource per token request: docs/microsoft-identity.md
/// §2), then the refresh token for Azure management when it was chosen, and tells what was
/// granted.
async fn redeem(
    callback: &Claimed<'_>,
    requested: &[DelegatedPermission],
    code: &str,
) -> std::result::Result<Granted, Problem> {
    let consents = callback.consents;
    let graph_scopes = consents
        .microsoft
        .as_deref()
        .map(|microsoft| {
            microsoft.config().delegated_sign_in_scopes(
                requested
                    .iter()
                    .filter(|p| p.is_graph())
                    .map(|p| p.scope(microsoft.config())),
            )
        })
        .unwrap_or_default();
    let sign_in::SignedIn {
        microsoft,
        tokens: first,
        claims,
    } = sign_in::redeem(callback, code, &graph_scopes, "Send a new link.").await?;
    let Some(mut refresh_token) = first.refresh_token.clone() else {
        return Err(Problem::new(
            Code::Unknown,
            "Microsoft issued no refresh token (offline_access was not granted).",
        ));
    };
    let mut azure: Option<TokenSet> = None;
    if requested.contains(&DelegatedPermission::AzureUserImpersonation) {
        azure = azure_management(microsoft, &claims, &refresh_token).await?;
        // The newest refresh token is the one kept.
        if let Some(newer) = azure.as_ref().and_then(|t| t.refresh_token.clone()) {
            refresh_token = newer;
        }
    }
    let granted: Vec<DelegatedPermission> = requested
        .iter()
        .copied()
        .filter(|p| match p {
            DelegatedPermission::AzureUserImpersonation => azure
                .as_ref()
                .is_some_and(|t| t.scopes.iter().any(|s| s.ends_with("user_impersonation"))),
            other => {
                let name = other.info().scope.to_ascii_lowercase();
                first
                    .scopes
                    .iter()
                    .any(|s| s.rsplit('/').next() == Some(name.as_str()))
            }
        })
        .collect();
    let missing = requested
        .iter()
        .copied()
        .filter(|p| !granted.contains(p))
        .collect();
    Ok(Granted {
        claims,
        refresh_token,
        granted,
        missing,
    })
}

/// Redeems the refresh token for Azure management's `user_impersonation`: the tokens when
/// granted, `None` when Microsoft says it was not, and the flow's problem when Microsoft
/// could not be asked (the user may well have granted it: retry rather than record a
/// refusal).
async fn azure_management(
    microsoft: &crate::microsoft::Microsoft,
    claims: &crate::microsoft::id_token::IdTokenClaims,
    refresh_token: &secrecy::SecretString,
) -> std::result::Result<Option<TokenSet>, Problem> {
    let answer = microsoft
        .refresh(
            &claims.tenant_id.to_string(),
            refresh_token,
            &[AZURE_USER_IMPERSONATION_SCOPE.to_owned()],
        )
        .await;
    match answer {
        Ok(tokens) => {
            if let Some(id_token) = &tokens.id_token {
                microsoft
                    .validate_refreshed_id_token(id_token, claims)
                    .await
                    .map_err(|e| {
                        Problem::new(
                            Code::Unknown,
                            format!(
                                "Consentry could not trust Microsoft's second answer ({e}). Send a new link."
                            ),
                        )
                    })?;
            }
            Ok(Some(tokens))
        }
        Err(error) if error.is_refusal() => {
            tracing::info!(%error, "Azure management was not granted");
            Ok(None)
        }
        Err(error) => {
            tracing::warn!(%error, "Azure management could not be asked");
            let mut problem = error.problem();
            problem.remediation = "Microsoft could not be asked for the Azure management \
                access just granted. Nothing was changed: send a new link in a few minutes."
                .to_owned();
            Err(problem)
        }
    }
}
