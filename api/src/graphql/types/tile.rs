//! The Graph API tile.

use std::sync::Arc;

use async_graphql::{ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::graph_api_tile;

use super::enums::{GraphApiAction, GraphApiProblemCode, GraphApiStatus};
use crate::{
    domain::tile,
    graphql::ids::{GlobalId, IdKind},
};

/// The authorisation state of one client's Microsoft Graph API access. Shared: an event's
/// tile is the same allocation for every subscriber it reaches.
pub struct GraphApiTile(pub Arc<graph_api_tile::Model>);

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

    async fn status(&self) -> GraphApiStatus {
        self.0.status.into()
    }

    /// Why the tile is `FAILED` or `REVOKED`, and what to do; null otherwise.
    async fn problem(&self) -> Option<GraphApiProblem> {
        let tile = &self.0;
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

    /// When `status` last changed.
    async fn status_changed_at(&self) -> DateTime<Utc> {
        self.0.status_changed_at
    }

    /// Increases with every change; order and de-duplicate updates by it.
    async fn version(&self) -> i64 {
        self.0.version
    }
}

/// What went wrong, in Microsoft's words and ours.
#[derive(SimpleObject, Clone, Debug)]
pub struct GraphApiProblem {
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
