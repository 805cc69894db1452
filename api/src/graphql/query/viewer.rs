//! `viewer` and `node`.

use async_graphql::{Context, ID, Object, Result};

use crate::graphql::context::{database, viewer};
use crate::{
    domain::{self, Error, access, clients},
    graphql::{
        ids::{GlobalId, IdKind},
        types::{Client, DelegatedConsent, GraphApiTile, Node, ServicePrincipalRequest, Viewer},
    },
};

#[derive(Default)]
pub(crate) struct ViewerQuery;

#[Object]
impl ViewerQuery {
    /// The caller: who they are, their MSP and roles.
    async fn viewer(&self, ctx: &Context<'_>) -> Result<Viewer> {
        Ok(Viewer(viewer(ctx)?.clone()))
    }

    /// Any object by its global id. Ids of other MSPs' objects answer exactly like ids that
    /// do not exist (`NOT_FOUND`).
    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Node>> {
        let viewer = viewer(ctx)?;
        let db = database(ctx)?;
        let global = GlobalId::decode("id", &id)?;
        let not_found = || Error::not_found("object", id.to_string());
        // Whatever is not visible reads as "no object with this id"; other failures stay.
        let hide = |e: Error| match e {
            Error::NotFound { .. } => not_found(),
            other => other,
        };
        Ok(Some(match global.kind {
            IdKind::Client => Node::Client(Client(
                clients::get(db, viewer, global.id).await.map_err(hide)?,
            )),
            IdKind::GraphApiTile => Node::GraphApiTile(GraphApiTile::from(
                clients::get(db, viewer, global.id)
                    .await
                    .map_err(hide)?
                    .tile,
            )),
            IdKind::DelegatedConsent => {
                let consent = domain::delegated_consents::find(db, global.id)
                    .await
                    .map_err(Error::from)?
                    .ok_or_else(not_found)?;
                visible(db, viewer, &consent.msp_id, consent.client_id)
                    .await
                    .map_err(hide)?;
                Node::DelegatedConsent(DelegatedConsent::from(consent))
            }
            IdKind::ServicePrincipalRequest => {
                let request = domain::service_principal_requests::find(db, global.id)
                    .await
                    .map_err(Error::from)?
                    .ok_or_else(not_found)?;
                visible(db, viewer, &request.msp_id, request.client_id)
                    .await
                    .map_err(hide)?;
                Node::ServicePrincipalRequest(ServicePrincipalRequest::new(request))
            }
        }))
    }
}

/// Checks that the viewer may see an object of this MSP and client (auditing support reads).
async fn visible(
    db: &sea_orm::DatabaseConnection,
    viewer: &crate::auth::Viewer,
    msp_id: &str,
    client_id: uuid::Uuid,
) -> Result<(), Error> {
    if access::sight(viewer, msp_id).is_none() {
        return Err(Error::not_found("object", client_id.to_string()));
    }
    clients::get(db, viewer, client_id).await.map(|_| ())
}
