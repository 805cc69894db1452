//! `client` and `clients`.

use async_graphql::{Context, ID, InputObject, Object, Result};

use crate::domain::clients::{self, ClientFilter};
use crate::graphql::context::{database, page_size, viewer};
use crate::graphql::ids::{GlobalId, IdKind};
use crate::graphql::limits::list_cost;
use crate::graphql::types::enums::GraphApiStatus;
use crate::graphql::types::{Client, ClientConnection, decode_cursor};

#[derive(Default)]
pub(crate) struct ClientQuery;

/// Which clients to list.
#[derive(InputObject, Default)]
pub(crate) struct ClientFilterInput {
    /// Only clients whose Graph API tile is in one of these states.
    pub status: Option<Vec<GraphApiStatus>>,
    /// Case-insensitive part of the client's name.
    pub search: Option<String>,
    /// Support staff only: one MSP's clients (default: every MSP).
    pub msp_id: Option<ID>,
    /// Only clients whose Graph API tile has (`true`) or lacks (`false`) a `tenantProof`.
    /// With `status: [AUTHORISED]`, `false` lists authorisations made before Consentry proved
    /// tenants: they need one more consent.
    pub tenant_proven: Option<bool>,
}

#[Object]
impl ClientQuery {
    /// One client by id.
    async fn client(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Client>> {
        let id = GlobalId::expect("id", &id, IdKind::Client)?;
        Ok(Some(Client(
            clients::get(database(ctx)?, viewer(ctx)?, id).await?,
        )))
    }

    /// The caller's clients in name order (support staff: every MSP's), a page at a time.
    #[graphql(complexity = "list_cost(first, 50, child_complexity)")]
    async fn clients(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, desc = "Page size, 1 to 100.")] first: Option<i32>,
        #[graphql(desc = "`pageInfo.endCursor` of the previous page.")] after: Option<String>,
        filter: Option<ClientFilterInput>,
    ) -> Result<ClientConnection> {
        let viewer = viewer(ctx)?;
        let first = page_size(first.unwrap_or(50))?;
        let after = after.as_deref().map(decode_cursor).transpose()?;
        let input = filter.unwrap_or_default();
        let filter = ClientFilter {
            statuses: input
                .status
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            search: input.search,
            msp_id: input.msp_id.map(|id| id.0),
            tenant_proven: input.tenant_proven,
        };
        let page = clients::list(database(ctx)?, viewer, &filter, first, after.as_ref()).await?;
        Ok(ClientConnection { page, filter })
    }
}
