//! One client-tenant user's delegated consent, with their refresh token as ciphertext.

use sea_orm::entity::prelude::*;

use crate::{StringList, enums::DelegatedConsentStatus};

#[derive(Clone, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "delegated_consent")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub msp_id: String,
    pub client_id: Uuid,
    pub tenant_id: String,
    pub user_object_id: String,
    pub user_principal_name: String,
    pub display_name: Option<String>,
    pub permissions: StringList,
    pub missing_permissions: StringList,
    pub status: DelegatedConsentStatus,
    pub status_reason: Option<String>,
    /// AES-256-GCM ciphertext; never plaintext. Never serialised (events carry no token).
    #[serde(skip)]
    pub refresh_token: Option<Vec<u8>>,
    #[serde(skip)]
    pub refresh_token_key_id: Option<String>,
    pub granted_at: DateTimeUtc,
    pub last_refreshed_at: Option<DateTimeUtc>,
    pub next_refresh_at: Option<DateTimeUtc>,
    pub granted_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The validated id_token's `iss` and `sub`: a refreshed id_token must name the same.
    pub id_token_issuer: Option<String>,
    pub id_token_subject: Option<String>,
    /// While a refresh runs: refreshes of one consent never overlap.
    pub refreshing_until: Option<DateTimeUtc>,
}

// Hand-written so that even the ciphertext stays out of logs.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("delegated_consent::Model")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("user_object_id", &self.user_object_id)
            .field("status", &self.status)
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
