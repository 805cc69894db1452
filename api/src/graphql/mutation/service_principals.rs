//! `createServicePrincipal`.

use async_graphql::{Context, ID, Object, Result};

use crate::{
    domain::{access, service_principal_requests},
    graphql::{
        context::{database, viewer},
        ids::{GlobalId, IdKind},
        mutation::graph_api::consents,
        types::ServicePrincipalRequest,
    },
};

#[derive(Default)]
pub(crate) struct ServicePrincipalMutation;

#[Object]
impl ServicePrincipalMutation {
    /// Creates a service principal the client's tenant lacks (what `az ad sp create --id`
    /// does), by default the Skype and Teams Tenant Admin API's. Answers `PENDING_SIGN_IN` with
    /// a `signInUrl` for an admin of the tenant; after the sign-in Consentry creates the
    /// principal, waits until it has replicated, and the tile offers Authorise again. A
    /// request already under way for the same client and application is returned instead of
    /// a second one (with a fresh `signInUrl` while it waits for a sign-in). Only the Teams
    /// admin API and the applications the server setting `CONSENTRY_MS_REPAIRABLE_APP_IDS`
    /// names are repaired; any other `appId` is refused with `BAD_USER_INPUT`.
    async fn create_service_principal(
        &self,
        ctx: &Context<'_>,
        client_id: ID,
        #[graphql(
            desc = "The application whose principal is missing (a GUID; AADSTS650052 names it): the Teams admin API or one in CONSENTRY_MS_REPAIRABLE_APP_IDS. Default: 48ac35b8-9aa8-4d74-927d-1f4a14a0b239."
        )]
        app_id: Option<String>,
        #[graphql(desc = "How long the sign-in link works, in minutes: 1 to 10080. Default 15.")]
        link_lifetime_minutes: Option<i32>,
    ) -> Result<ServicePrincipalRequest> {
        let viewer = viewer(ctx)?;
        access::require_writer(viewer)?;
        let client_id = GlobalId::expect("clientId", &client_id, IdKind::Client)?;
        let started = service_principal_requests::create(
            database(ctx)?,
            consents(ctx)?,
            viewer,
            client_id,
            app_id.as_deref(),
            link_lifetime_minutes.map(i64::from),
        )
        .await?;
        Ok(ServicePrincipalRequest::with_sign_in(
            started.request,
            started.sign_in_url.map(|u| u.to_string()),
        ))
    }
}
