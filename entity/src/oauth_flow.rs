//! One started sign-in or consent. The `state` is stored only as its SHA-256 hash.

use sea_orm::entity::prelude::*;

use crate::{
    StringList,
    enums::{OAuthFlowKind, OAuthFlowStatus},
};

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_flow")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub msp_id: String,
    pub client_id: Uuid,
    pub kind: OAuthFlowKind,
    pub state_hash: String,
    pub pkce_verifier: Option<String>,
    pub nonce: Option<String>,
    pub expected_tenant: Option<String>,
    pub requested_permissions: Option<StringList>,
    pub service_principal_request_id: Option<Uuid>,
    pub status: OAuthFlowStatus,
    pub outcome: Option<Json>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    /// When a callback claimed the flow (status `EXCHANGING`).
    pub claimed_at: Option<DateTimeUtc>,
    /// Admin consent's second step (Microsoft's consent page): the hash of its own `state`,
    /// set once the first step proved the tenant.
    pub consent_state_hash: Option<String>,
    /// Admin consent: who signed in and which tenant that proved (the domain's `TenantProof`).
    pub tenant_proof: Option<Json>,
}

// Hand-written so that the PKCE verifier and nonce can never reach a log line.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("oauth_flow::Model")
            .field("id", &self.id)
            .field("msp_id", &self.msp_id)
            .field("client_id", &self.client_id)
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::client::Entity",
        from = "Column::ClientId",
        to = "super::client::Column::Id",
        on_delete = "Cascade"
    )]
    Client,
}

impl Related<super::client::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Client.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
