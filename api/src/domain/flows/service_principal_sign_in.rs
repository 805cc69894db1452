//! The admin sign-in of a service principal repair ("Create service principal"): an admin of
//! the client's tenant signs in once with `Application.ReadWrite.All`; the validated sign-in
//! lets the repair act ([`service_principal_requests`]). Only allow-listed applications are
//! repaired: a request for another one never redeems its code (checklist 96).

use async_trait::async_trait;
use entity::{
    client,
    enums::{
        GraphApiProblemCode as Code, OAuthFlowStatus, ServicePrincipalRequestStatus as Status,
    },
    oauth_flow, service_principal_request,
};
use sea_orm::DatabaseConnection;
use secrecy::SecretString;
use uuid::Uuid;

use super::kind::{Claimed, Completed, Ending, Kind, failure, finish, finish_claimed};
use super::sign_in;
use crate::db::{WriteTransaction, begin_write};
use crate::domain::audit::Actor;
use crate::domain::clients::ClientView;
use crate::domain::error::{Error, Result};
use crate::domain::flows::store::FlowOutcome;
use crate::domain::service_principal_requests::{self, Authority};
use crate::microsoft::Problem;

pub(super) struct ServicePrincipalSignIn;

#[async_trait]
impl Kind for ServicePrincipalSignIn {
    #[tracing::instrument(skip_all, fields(flow = %callback.flow.id, client = %callback.flow.client_id))]
    async fn complete(&self, callback: &Claimed<'_>) -> Result<Completed> {
        complete(callback).await.map(Completed::Finished)
    }

    /// The request fails: when its link expired, or when the callback that was using the
    /// sign-in was interrupted.
    async fn ended(
        &self,
        txn: &WriteTransaction,
        flow: &oauth_flow::Model,
        _view: &ClientView,
        ending: Ending,
    ) -> Result<()> {
        let Some(request_id) = flow.service_principal_request_id else {
            return Ok(());
        };
        let Some(request) = service_principal_requests::find(txn, request_id).await? else {
            return Ok(());
        };
        let why = match ending {
            Ending::Expired => {
                "Nobody signed in before the link expired. Start the repair again and send the new link."
            }
            Ending::Interrupted => {
                "Consentry was interrupted while completing the sign-in. Start the repair again."
            }
        };
        service_principal_requests::fail(
            txn,
            &request,
            &Problem::new(Code::Unknown, why),
            &Actor::system(&flow.msp_id),
        )
        .await?;
        Ok(())
    }
}

/// Validates the sign-in, then acts. Returns what to show.
async fn complete(callback: &Claimed<'_>) -> Result<FlowOutcome> {
    let (db, client, flow) = (callback.db, callback.client, callback.flow);
    let Some(request_id) = flow.service_principal_request_id else {
        return Err(Error::Internal(anyhow::anyhow!(
            "sign-in flow without a request"
        )));
    };
    let Some(request) = service_principal_requests::find(db, request_id).await? else {
        return Ok(FlowOutcome::cancelled(flow, "", "the request was removed"));
    };
    if request.status != Status::PendingSignIn {
        // The repair went ahead (or ended) without this sign-in: redeem nothing.
        return no_longer_needed(db, flow, client, &request).await;
    }
    // A request made before the allow-list (or for an application since taken off it): its
    // code is not even redeemed (checklist 96).
    let result = if !callback.consents.repairable_apps.contains(&request.app_id) {
        Err(crate::domain::repairable::not_repairable(&request.app_id))
    } else {
        match callback.answer.code_or_problem("Start the repair again.") {
            Ok(code) => sign_in_token(callback, code).await,
            Err(problem) => Err(problem),
        }
    };
    match result {
        Err(problem) => refused(db, flow, client, &request, &problem).await,
        Ok((token, tenant, authority)) => {
            let outcome = FlowOutcome::of(
                flow,
                client,
                true,
                "CREATING",
                format!(
                    "Thank you. Consentry is creating the service principal for {}.",
                    app_name(&request)
                ),
                "Nothing more to do: you can close this window. It takes a few minutes to be \
                 ready everywhere."
                    .to_owned(),
            );
            if let Err(theirs) = finish(db, flow, OAuthFlowStatus::Succeeded, &outcome).await? {
                // Someone else finished it meanwhile: theirs stands, and nothing is done.
                return Ok(theirs);
            }
            let actor = Actor::callback(&flow.msp_id);
            let consents = callback.consents;
            service_principal_requests::act(
                db, consents, &request, tenant, token, &authority, &actor,
            )
            .await?;
            Ok(outcome)
        }
    }
}

fn app_name(request: &service_principal_request::Model) -> String {
    request
        .app_display_name
        .clone()
        .unwrap_or_else(|| request.app_id.clone())
}

/// A sign-in that cannot be used: the flow and its request fail with the problem.
async fn refused(
    db: &DatabaseConnection,
    flow: &oauth_flow::Model,
    client: &client::Model,
    request: &service_principal_request::Model,
    problem: &Problem,
) -> Result<FlowOutcome> {
    let outcome = failure(
        flow,
        client,
        "FAILED",
        format!(
            "The service principal for {} was not created.",
            app_name(request)
        ),
        problem,
    );
    let txn = begin_write(db).await?;
    if let Err(theirs) = finish_claimed(&txn, flow, OAuthFlowStatus::Failed, &outcome).await? {
        return Ok(theirs);
    }
    let actor = Actor::callback(&flow.msp_id);
    service_principal_requests::fail(&txn, request, problem, &actor).await?;
    txn.commit().await?;
    Ok(outcome)
}

/// The sign-in of a request that went ahead (or ended) without it: the flow fails, and its
/// code is not redeemed.
async fn no_longer_needed(
    db: &DatabaseConnection,
    flow: &oauth_flow::Model,
    client: &client::Model,
    request: &service_principal_request::Model,
) -> Result<FlowOutcome> {
    let outcome = FlowOutcome::cancelled(
        flow,
        &client.name,
        &format!(
            "the repair no longer needs it (it is {})",
            service_principal_requests::status_name(request.status)
                .to_lowercase()
                .replace('_', " ")
        ),
    );
    let finished = finish(db, flow, OAuthFlowStatus::Failed, &outcome).await?;
    Ok(finished.err().unwrap_or(outcome))
}

/// Redeems the sign-in's code and validates its id_token: the tenant must be the client's
/// (its known id, else the tenant that owns its domain).
async fn sign_in_token(
    callback: &Claimed<'_>,
    code: &str,
) -> std::result::Result<(SecretString, Uuid, Authority), Problem> {
    let scopes = callback
        .consents
        .microsoft
        .as_deref()
        .map(|microsoft| microsoft.config().repair_sign_in_scopes())
        .unwrap_or_default();
    let signed_in = sign_in::redeem(callback, code, &scopes, "Start the repair again.").await?;
    let authority = Authority::AdminSignIn {
        user_principal_name: signed_in.claims.preferred_username,
        user_object_id: signed_in.claims.object_id,
    };
    Ok((
        signed_in.tokens.access_token,
        signed_in.claims.tenant_id,
        authority,
    ))
}
