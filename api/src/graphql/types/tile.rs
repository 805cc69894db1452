//! The Graph API tile.

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::graph_api_tile;

use super::client::{Client, owner};
use super::enums::{GraphApiAction, GraphApiProblemCode, GraphApiStatus};
use crate::{
    domain::{tenant_proof, tile},
    graphql::{
        ids::{GlobalId, IdKind},
        loaders::{Loaders, load_error},
    },
};

/// The authorisation state of one client's Microsoft Graph API access. Shared: an event's
/// tile is the same allocation for every subscriber it reaches.
pub(crate) struct GraphApiTile(pub Arc<graph_api_tile::Model>);

impl From<graph_api_tile::Model> for GraphApiTile {
    fn from(tile: graph_api_tile::Model) -> Self {
        Self(Arc::new(tile))
    }
}

#[Object]
impl GraphApiTile {
    pub async fn id(&self) -> ID {
        GlobalId::new(IdKind::GraphApiTile, self.0.client_id).encode()
    }

    /// The client's id (what an all-clients subscriber needs to place an event).
    async fn client_id(&self) -> ID {
        GlobalId::new(IdKind::Client, self.0.client_id).encode()
    }

    /// The client this tile belongs to; null once the client is deleted.
    async fn client(&self, ctx: &Context<'_>) -> Result<Option<Client>> {
        owner(ctx, self.0.client_id).await
    }

    async fn status(&self) -> GraphApiStatus {
        self.0.status.into()
    }

    /// One sentence on where the tile stands and what comes next, for a person: success
    /// reads as success (a repaired tile says it is ready to authorise), and a pending
    /// re-consent does not hide a standing authorisation.
    async fn headline(&self) -> String {
        tile::headline(&self.0)
    }

    /// When the admin-consent link that is out stops working; null when none is pending.
    /// Also set on an `AUTHORISED` tile while a re-consent link is out.
    async fn consent_link_expires_at(&self, ctx: &Context<'_>) -> Result<Option<DateTime<Utc>>> {
        let mut own = None;
        let loaders = Loaders::of(ctx, &mut own)?;
        loaders
            .consent_links()
            .load_one(self.0.client_id)
            .await
            .map(Option::flatten)
            .map_err(load_error)
    }

    /// Why the tile is `FAILED` or `REVOKED`, and what to do; null otherwise.
    async fn problem(&self) -> Option<GraphApiProblem> {
        let tile = &self.0;
        if !tile::is_failing(tile.status) {
            return None;
        }
        tile.problem_code.map(|code| GraphApiProblem {
            code: code.into(),
            aadsts_code: tile.problem_aadsts_code,
            message: tile.problem_message.clone(),
            remediation: tile.problem_remediation.clone().unwrap_or_default(),
            app_id: tile.problem_app_id.clone(),
            app_display_name: tile.problem_app_display_name.clone(),
        })
    }

    /// The buttons to show now.
    async fn available_actions(&self) -> Vec<GraphApiAction> {
        tile::available_actions(&self.0)
            .into_iter()
            .map(Into::into)
            .collect()
    }

    /// Application permissions the tenant actually granted (from the verified token's `roles`).
    async fn granted_permissions(&self) -> &[String] {
        &self.0.granted_permissions.0
    }

    /// Required application permissions the tenant did not grant.
    async fn missing_permissions(&self) -> &[String] {
        &self.0.missing_permissions.0
    }

    async fn authorised_at(&self) -> Option<DateTime<Utc>> {
        self.0.authorised_at
    }

    async fn last_verified_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_verified_at
    }

    /// Who proved the tenant of the current (or last) authorisation: the admin who signed in
    /// during that very consent. Null for a tile never authorised, and for authorisations
    /// made before Consentry proved tenants (they stay `AUTHORISED` until the next consent,
    /// which proves it; list them with `clients(filter: {status: [AUTHORISED], tenantProven:
    /// false})`).
    async fn tenant_proof(&self) -> Option<TenantProof> {
        tenant_proof::TenantProof::stored(self.0.tenant_proof.as_ref()).map(|proof| TenantProof {
            roles: proof.role_names().into_iter().map(str::to_owned).collect(),
            tenant_id: proof.tenant_id.to_string(),
            signed_in_as: proof.signed_in_as,
            user_object_id: proof.user_object_id,
            proven_at: proof.proven_at,
        })
    }

    /// When `status` last changed.
    async fn status_changed_at(&self) -> DateTime<Utc> {
        self.0.status_changed_at
    }

    /// Increases with every change; order and de-duplicate updates by it.
    async fn version(&self) -> i64 {
        self.0.version
    }
}

/// The proof of a tile's tenant: an admin of that tenant signed in during the consent, and
/// Microsoft's signed id_token said so.
#[derive(SimpleObject, Clone, Debug)]
pub(crate) struct TenantProof {
    /// The tenant the validated id_token named (`tid`).
    pub(crate) tenant_id: String,
    /// The admin's sign-in name.
    pub(crate) signed_in_as: String,
    /// The admin's object id in the tenant.
    pub(crate) user_object_id: Option<String>,
    /// The directory roles that allowed them to consent.
    pub(crate) roles: Vec<String>,
    pub(crate) proven_at: DateTime<Utc>,
}

/// What went wrong, in Microsoft's words and ours.
#[derive(SimpleObject, Clone, Debug)]
pub(crate) struct GraphApiProblem {
    pub code: GraphApiProblemCode,
    /// The AADSTS error number, when Microsoft gave one.
    pub aadsts_code: Option<i64>,
    /// Microsoft's message (without trace and correlation ids).
    pub message: Option<String>,
    /// What a technician can do about it.
    pub remediation: String,
    /// For a missing service principal: the application id to create.
    pub app_id: Option<String>,
    /// For a missing service principal: its display name, when known.
    pub app_display_name: Option<String>,
}
