//! One started sign-in or consent. The `state` and `nonce` are stored only as their SHA-256
//! hashes, the PKCE verifier only as AES-256-GCM ciphertext bound to the flow.

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
    /// The sign-in's PKCE verifier, sealed (`nonce ‖ ciphertext ‖ tag`) with associated data
    /// naming this flow and column; never plaintext. Erased when the flow moves on.
    pub sealed_pkce_verifier: Option<Vec<u8>>,
    /// The key that sealed it (a `CONSENTRY_TOKEN_KEYS` id, or the derived key's).
    pub pkce_verifier_key_id: Option<String>,
    /// SHA-256 (hex) of the `nonce` the sign-in sent; the id_token's must hash to it.
    pub nonce_hash: Option<String>,
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

// Hand-written so that not even the sealed verifier or the nonce's hash reaches a log line.
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
