//! Clients and their connection.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};

use super::audit::AuditEventEdge;
use crate::domain::clients::{self, ClientFilter, ClientView, Cursor, Page};
use crate::domain::{self, Error, audit};
use crate::graphql::context::{database, page_size, viewer};
use crate::graphql::ids::{GlobalId, IdKind};
use crate::graphql::limits::list_cost;
use crate::graphql::loaders::{Loaders, Selected, load_error};
use crate::graphql::types::audit::{AuditEvent, AuditEventConnection};
use crate::graphql::types::connection::PageInfo;
use crate::graphql::types::consent::DelegatedConsent;
use crate::graphql::types::enums::GraphApiStatus;
use crate::graphql::types::service_principal::ServicePrincipalRequest;
use crate::graphql::types::tile::GraphApiTile;

/// One of the MSP's customers, with a Microsoft 365 tenant.
pub(crate) struct Client(pub ClientView);

/// The client an object belongs to, read as `client(id:)` reads it (support staff's look is
/// audited); null once the client is gone, or when the viewer may not see it.
pub(crate) async fn owner(ctx: &Context<'_>, id: uuid::Uuid) -> Result<Option<Client>> {
    match clients::get(database(ctx)?, viewer(ctx)?, id).await {
        Ok(view) => Ok(Some(Client(view))),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

#[Object]
impl Client {
    pub async fn id(&self) -> ID {
        GlobalId::new(IdKind::Client, self.0.client.id).encode()
    }

    async fn name(&self) -> &str {
        &self.0.client.name
    }

    /// The client's primary Microsoft 365 domain, e.g. `contoso.com`.
    async fn domain(&self) -> Option<&str> {
        self.0.client.domain.as_deref()
    }

    /// The client's Microsoft Entra tenant id, once known.
    async fn azure_tenant_id(&self) -> Option<String> {
        self.0.client.azure_tenant_id.map(|t| t.to_string())
    }

    /// The MSP this client belongs to.
    async fn msp_id(&self) -> ID {
        ID(self.0.client.msp_id.clone())
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.client.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.client.updated_at
    }

    /// The Microsoft Graph API authorisation state.
    async fn graph_api_tile(&self) -> GraphApiTile {
        GraphApiTile::from(self.0.tile.clone())
    }

    /// Users of the client tenant who granted delegated permissions, newest first.
    #[graphql(complexity = "list_cost(first, 20, child_complexity)")]
    async fn delegated_consents(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "At most this many (the newest), 1 to 100.")] first: Option<
            i32,
        >,
    ) -> Result<Vec<DelegatedConsent>> {
        let first = page_size(first.unwrap_or(20))?;
        let mut own = None;
        let loaders = Loaders::of(ctx, &mut own)?;
        Ok(loaders
            .lists()
            .delegated_consents
            .load_one(self.0.client.id)
            .await
            .map_err(load_error)?
            .unwrap_or_default()
            .into_iter()
            .take(first as usize)
            .map(DelegatedConsent::from)
            .collect())
    }

    /// Attempts to create missing service principals, newest first.
    #[graphql(complexity = "list_cost(first, 20, child_complexity)")]
    async fn service_principal_requests(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "At most this many (the newest), 1 to 100.")] first: Option<
            i32,
        >,
    ) -> Result<Vec<ServicePrincipalRequest>> {
        let first = page_size(first.unwrap_or(20))?;
        let mut own = None;
        let loaders = Loaders::of(ctx, &mut own)?;
        Ok(loaders
            .lists()
            .service_principal_requests
            .load_one(self.0.client.id)
            .await
            .map_err(load_error)?
            .unwrap_or_default()
            .into_iter()
            .take(first as usize)
            .map(ServicePrincipalRequest::new)
            .collect())
    }

    /// Who did what to this client, newest first. Survives the client's deletion in storage.
    #[graphql(complexity = "list_cost(first, 20, child_complexity)")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size, 1 to 100.")] first: Option<i32>,
        #[graphql(desc = "`pageInfo.endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<AuditEventConnection> {
        let first = page_size(first.unwrap_or(20))?;
        let before = after
            .map(|cursor| {
                cursor
                    .parse::<i64>()
                    .map_err(|_| Error::bad_input("after", "not a cursor from this auditLog"))
            })
            .transpose()?;
        let mut events = audit::for_client(database(ctx)?, self.0.client.id, first + 1, before)
            .await
            .map_err(Error::from)?;
        let has_next_page = events.len() as u64 > first;
        events.truncate(first as usize);
        let edges: Vec<AuditEventEdge> = events
            .into_iter()
            .map(|e| AuditEventEdge {
                cursor: e.id.to_string(),
                node: AuditEvent(e),
            })
            .collect();
        Ok(AuditEventConnection {
            page_info: PageInfo {
                has_next_page,
                has_previous_page: false,
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges,
        })
    }
}

/// A page of clients, in name order.
pub(crate) struct ClientConnection {
    pub page: Page,
    pub filter: ClientFilter,
}

impl ClientConnection {
    /// One query per per-client list the page selects (no N+1, whatever the page size).
    async fn prime(&self, ctx: &Context<'_>, client: &async_graphql::Lookahead<'_>) -> Result<()> {
        let ids: Vec<_> = self.page.items.iter().map(|v| v.client.id).collect();
        let mut own = None;
        Loaders::of(ctx, &mut own)?
            .prime(
                &ids,
                Selected {
                    consents: client.field("delegatedConsents").exists(),
                    requests: client.field("servicePrincipalRequests").exists(),
                    consent_links: client
                        .field("graphApiTile")
                        .field("consentLinkExpiresAt")
                        .exists(),
                },
            )
            .await?;
        Ok(())
    }
}

#[Object]
impl ClientConnection {
    async fn edges(&self, ctx: &Context<'_>) -> Result<Vec<ClientEdge>> {
        let node = ctx.look_ahead().field("node");
        self.prime(ctx, &node).await?;
        Ok(self
            .page
            .items
            .iter()
            .map(|view| ClientEdge {
                cursor: encode_cursor(view),
                node: Client(view.clone()),
            })
            .collect())
    }

    /// The clients of the page, without cursors.
    async fn nodes(&self, ctx: &Context<'_>) -> Result<Vec<Client>> {
        self.prime(ctx, &ctx.look_ahead()).await?;
        Ok(self.page.items.iter().cloned().map(Client).collect())
    }

    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.page.has_next_page,
            has_previous_page: false,
            start_cursor: self.page.items.first().map(encode_cursor),
            end_cursor: self.page.items.last().map(encode_cursor),
        }
    }

    /// How many clients match the filter in all (one extra query; ask only when shown).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        Ok(domain::clients::count(database(ctx)?, viewer(ctx)?, &self.filter).await?)
    }

    /// How many clients match the filter in each tile status, every status listed (zeros
    /// too), as if the filter named no status: the counts beside a status filter. One extra
    /// query; ask only when shown.
    async fn status_counts(&self, ctx: &Context<'_>) -> Result<Vec<ClientStatusCount>> {
        let counts =
            domain::clients::count_by_status(database(ctx)?, viewer(ctx)?, &self.filter).await?;
        Ok(counts
            .into_iter()
            .map(|(status, count)| ClientStatusCount {
                status: status.into(),
                count,
            })
            .collect())
    }
}

/// How many clients are in one tile status.
#[derive(SimpleObject)]
pub(crate) struct ClientStatusCount {
    pub status: GraphApiStatus,
    pub count: u64,
}

#[derive(SimpleObject)]
pub(crate) struct ClientEdge {
    pub cursor: String,
    pub node: Client,
}

fn encode_cursor(view: &ClientView) -> String {
    let raw = serde_json::json!([view.client.name_key, view.client.id]).to_string();
    URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes an `after` cursor of the clients list.
pub(crate) fn decode_cursor(cursor: &str) -> Result<Cursor, Error> {
    let invalid = || {
        Error::bad_input(
            "after",
            "not a cursor from this clients list; pass pageInfo.endCursor",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let (name_key, id): (String, uuid::Uuid) =
        serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    Ok(Cursor { name_key, id })
}
