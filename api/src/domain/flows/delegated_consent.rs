//! A delegated consent's flow ("Delegate"): a named user of the client's tenant grants the
//! permissions the MSP chose. The code is redeemed once (for Graph), the id_token validated
//! before any token is used or kept, the refresh token redeemed again for Azure management
//! when that was chosen, and the consent stored with the newest refresh token, encrypted
//! (docs/design.md §1).

use async_trait::async_trait;
use entity::{client, enums::GraphApiProblemCode as Code, enums::OAuthFlowStatus, oauth_flow};
use sea_orm::{DatabaseConnection, EntityTrait};

use super::{Claimed, Completed, FlowOutcome, Kind, failure, finish_claimed, sign_in};
use crate::{
    db::begin_write,
    domain::{
        Consents, Result,
        delegated_consents::{self, DelegatedPermission, Granted},
        now,
    },
    microsoft::{Problem, identity::TokenSet, known::AZURE_USER_IMPERSONATION_SCOPE},
};

pub(super) struct DelegatedConsent;

#[async_trait]
impl Kind for DelegatedConsent {
    #[tracing::instrument(skip_all, fields(flow = %callback.flow.id, client = %callback.flow.client_id))]
    async fn complete(&self, callback: &Claimed<'_>) -> Result<Completed> {
        let Claimed {
            db,
            consents,
            flow,
            answer,
            ..
        } = *callback;
        let Some(client) = client::Entity::find_by_id(flow.client_id).one(db).await? else {
            return Ok(Completed::Finished(FlowOutcome::cancelled(
                flow,
                "",
                "the client was removed",
            )));
        };
        let requested = delegated_consents::permissions(
            &flow.requested_permissions.clone().unwrap_or_default().0,
        );
        let result = match (&answer.refusal, answer.code) {
            (Some(refusal), _) => Err(refusal.clone()),
            (None, Some(code)) => redeem(consents, flow, &client, &requested, code).await,
            (None, None) => Err(Problem::new(
                Code::Unknown,
                "Microsoft sent no authorization code. Send a new link.",
            )),
        };
        let outcome = match result {
            Err(problem) => failed(db, flow, &client, &problem).await?,
            Ok(granted) => store(db, consents, flow, &client, &granted).await?,
        };
        Ok(Completed::Finished(outcome))
    }
}

/// Fails the flow with the problem; nothing is stored.
async fn failed(
    db: &DatabaseConnection,
    flow: &oauth_flow::Model,
    client: &client::Model,
    problem: &Problem,
) -> Result<FlowOutcome> {
    let outcome = failure(
        flow,
        client,
        "FAILED",
        "The delegated consent was not completed.".to_owned(),
        problem,
    );
    let txn = begin_write(db).await?;
    if let Err(theirs) = finish_claimed(&txn, flow, OAuthFlowStatus::Failed, &outcome).await? {
        return Ok(theirs);
    }
    txn.commit().await?;
    Ok(outcome)
}

/// Finishes the flow with what was granted and stores the consent (a consent that granted
/// nothing is a failed flow, and stores nothing).
async fn store(
    db: &DatabaseConnection,
    consents: &Consents,
    flow: &oauth_flow::Model,
    client: &client::Model,
    granted: &Granted,
) -> Result<FlowOutcome> {
    let outcome = granted_outcome(flow, client, granted);
    let flow_status = if granted.granted.is_empty() {
        OAuthFlowStatus::Failed
    } else {
        OAuthFlowStatus::Succeeded
    };
    let txn = begin_write(db).await?;
    if let Err(theirs) = finish_claimed(&txn, flow, flow_status, &outcome).await? {
        return Ok(theirs);
    }
    if !granted.granted.is_empty() {
        delegated_consents::grant(&txn, consents, flow, granted, now()).await?;
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
    consents: &Consents,
    flow: &oauth_flow::Model,
    client: &client::Model,
    requested: &[DelegatedPermission],
    code: &str,
) -> std::result::Result<Granted, Problem> {
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
    } = sign_in::redeem(
        consents,
        flow,
        client,
        code,
        &graph_scopes,
        "Send a new link.",
    )
    .await?;
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
