//! `startDelegatedConsent`, `verifyDelegatedConsent`, `revokeDelegatedConsent`.

use async_graphql::{Context, ID, Object, Result};

use crate::{
    domain::{access, delegated_consents},
    graphql::{
        context::{database, viewer},
        ids::{GlobalId, IdKind},
        mutation::graph_api::consents,
        types::{Client, ConsentLink, DelegatedConsent, GraphApiTile, enums::DelegatedPermission},
    },
};

#[derive(Default)]
pub(crate) struct DelegatedMutation;

#[Object]
impl DelegatedMutation {
    /// A link for a user of the client's tenant to grant the chosen delegated permissions
    /// (authorization code, PKCE, `prompt=consent`). When they accept, Consentry keeps their
    /// refresh token, encrypted, and `Client.delegatedConsents` shows what they granted.
    async fn start_delegated_consent(
        &self,
        ctx: &Context<'_>,
        client_id: ID,
        permissions: Vec<DelegatedPermission>,
        #[graphql(desc = "How long the link works, in minutes: 1 to 10080. Default 15.")]
        link_lifetime_minutes: Option<i32>,
    ) -> Result<ConsentLink> {
        let viewer = viewer(ctx)?;
        access::require_writer(viewer)?;
        let client_id = GlobalId::expect("clientId", &client_id, IdKind::Client)?;
        let chosen: Vec<_> = permissions.into_iter().map(Into::into).collect();
        let link = delegated_consents::start(
            database(ctx)?,
            consents(ctx)?,
            viewer,
            client_id,
            &chosen,
            link_lifetime_minutes.map(i64::from),
        )
        .await?;
        Ok(ConsentLink {
            url: link.url.to_string(),
            expires_at: link.expires_at,
            graph_api_tile: GraphApiTile::from(link.view.tile.clone()),
            client: Client(link.view),
        })
    }

    /// Refreshes the consent's token now and reads the user (`GET /me`). A refused token
    /// turns the consent `EXPIRED` with the reason.
    async fn verify_delegated_consent(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<DelegatedConsent> {
        let viewer = viewer(ctx)?;
        access::require_writer(viewer)?;
        let id = GlobalId::expect("id", &id, IdKind::DelegatedConsent)?;
        Ok(DelegatedConsent::from(
            delegated_consents::verify(database(ctx)?, consents(ctx)?, viewer, id).await?,
        ))
    }

    /// Revokes the consent in Consentry: `REVOKED`, its stored token erased. (The grant in
    /// the client's tenant stays until an admin removes it in Entra ID.)
    async fn revoke_delegated_consent(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<DelegatedConsent> {
        let viewer = viewer(ctx)?;
        access::require_writer(viewer)?;
        let id = GlobalId::expect("id", &id, IdKind::DelegatedConsent)?;
        Ok(DelegatedConsent::from(
            delegated_consents::revoke(database(ctx)?, consents(ctx)?, viewer, id).await?,
        ))
    }
}
