//! `createClient`, `updateClient`, `deleteClient`.

use async_graphql::{Context, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject};

use crate::{
    domain::{
        Error, access,
        clients::{self, ClientPatch, NewClient, Patch},
    },
    graphql::{
        context::{database, viewer},
        ids::{GlobalId, IdKind},
        mutation::graph_api::consents,
        types::Client,
    },
};

#[derive(Default)]
pub(crate) struct ClientMutation;

/// A new client.
#[derive(InputObject)]
pub(crate) struct CreateClientInput {
    /// Display name, unique within the MSP (case-insensitive), at most 200 characters.
    pub name: String,
    /// Primary Microsoft 365 domain, e.g. `contoso.com`.
    pub domain: Option<String>,
    /// Microsoft Entra tenant id (a GUID), when known.
    pub azure_tenant_id: Option<String>,
}

/// Changes to a client; omitted fields stay as they are, `null` clears a field.
#[derive(InputObject)]
pub(crate) struct UpdateClientInput {
    pub name: MaybeUndefined<String>,
    pub domain: MaybeUndefined<String>,
    /// Changing the tenant sends an authorised tile back to `NOT_AUTHORISED`.
    pub azure_tenant_id: MaybeUndefined<String>,
}

/// The result of `deleteClient`.
#[derive(SimpleObject)]
pub(crate) struct DeleteClientPayload {
    pub deleted_client_id: ID,
}

fn patch(value: MaybeUndefined<String>) -> Patch<String> {
    match value {
        MaybeUndefined::Undefined => Patch::Keep,
        MaybeUndefined::Null => Patch::Clear,
        MaybeUndefined::Value(v) => Patch::Set(v),
    }
}

#[Object]
impl ClientMutation {
    /// Adds a client; its Graph API tile starts `NOT_AUTHORISED`.
    async fn create_client(&self, ctx: &Context<'_>, input: CreateClientInput) -> Result<Client> {
        access::require_writer(viewer(ctx)?)?;
        let input = NewClient {
            name: input.name,
            domain: input.domain,
            azure_tenant_id: input.azure_tenant_id,
        };
        Ok(Client(
            clients::create(database(ctx)?, viewer(ctx)?, input).await?,
        ))
    }

    /// Changes a client's name, domain or tenant id.
    async fn update_client(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateClientInput,
    ) -> Result<Client> {
        let viewer = viewer(ctx)?;
        access::require_writer(viewer)?;
        let id = GlobalId::expect("id", &id, IdKind::Client)?;
        let name = match input.name {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => {
                return Err(Error::bad_input(
                    "input.name",
                    "the client name is required; it cannot be removed",
                )
                .into());
            }
            MaybeUndefined::Value(name) => Some(name),
        };
        let patch = ClientPatch {
            name,
            domain: patch(input.domain),
            azure_tenant_id: patch(input.azure_tenant_id),
        };
        Ok(Client(
            clients::update(database(ctx)?, viewer, id, patch).await?,
        ))
    }

    /// Removes a client with its tile, consent flows, delegated consents and stored tokens.
    /// Its audit trail is kept.
    async fn delete_client(&self, ctx: &Context<'_>, id: ID) -> Result<DeleteClientPayload> {
        let viewer = viewer(ctx)?;
        access::require_writer(viewer)?;
        let client_id = GlobalId::expect("id", &id, IdKind::Client)?;
        clients::delete(database(ctx)?, consents(ctx)?, viewer, client_id).await?;
        Ok(DeleteClientPayload {
            deleted_client_id: id,
        })
    }
}
