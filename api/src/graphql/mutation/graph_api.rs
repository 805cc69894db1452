//! `authoriseGraphApi`, `verifyGraphApi`.

use async_graphql::{Context, ID, Object, Result};

use crate::{
    domain::{Consents, Error, access, graph_api},
    graphql::{
        context::{database, viewer},
        ids::{GlobalId, IdKind},
        types::{Client, ConsentLink, GraphApiTile},
    },
};

#[derive(Default)]
pub(crate) struct GraphApiMutation;

pub(crate) fn consents<'a>(ctx: &Context<'a>) -> Result<&'a Consents, Error> {
    ctx.data::<Consents>()
        .map_err(|e| Error::Internal(anyhow::anyhow!("schema without consents: {}", e.message)))
}

#[Object]
impl GraphApiMutation {
    /// Creates an admin-consent link for the client's tenant and moves its tile to
    /// `AWAITING_CONSENT` (an `AUTHORISED` tile stays authorised while the re-consent is
    /// pending). A newer link replaces older ones. Needs the admin or technician role.
    async fn authorise_graph_api(
        &self,
        ctx: &Context<'_>,
        client_id: ID,
        #[graphql(
            desc = "How long the link works, in minutes: 1 to 10080 (7 days). Null or omitted: 15."
        )]
        link_lifetime_minutes: Option<i32>,
    ) -> Result<ConsentLink> {
        let viewer = viewer(ctx)?;
        access::require_writer(viewer)?;
        let client_id = GlobalId::expect("clientId", &client_id, IdKind::Client)?;
        let link = graph_api::authorise(
            database(ctx)?,
            consents(ctx)?,
            viewer,
            client_id,
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

    /// Re-checks an `AUTHORISED` tile with Microsoft now: an app-only token for the tenant,
    /// `GET /organization`, and the granted permissions. Lost consent turns it `REVOKED`.
    /// Tiles in any other state cannot be verified (authorise them instead).
    async fn verify_graph_api(&self, ctx: &Context<'_>, client_id: ID) -> Result<GraphApiTile> {
        let viewer = viewer(ctx)?;
        access::require_writer(viewer)?;
        let client_id = GlobalId::expect("clientId", &client_id, IdKind::Client)?;
        let view = graph_api::verify(database(ctx)?, consents(ctx)?, viewer, client_id).await?;
        Ok(GraphApiTile::from(view.tile))
    }
}
