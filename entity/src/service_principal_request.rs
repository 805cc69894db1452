//! One attempt to create a missing service principal in a client's tenant.

use sea_orm::entity::prelude::*;

use crate::enums::ServicePrincipalRequestStatus;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "service_principal_request")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub msp_id: String,
    pub client_id: Uuid,
    pub app_id: String,
    pub app_display_name: Option<String>,
    pub status: ServicePrincipalRequestStatus,
    pub problem_code: Option<String>,
    pub problem_message: Option<String>,
    pub problem_remediation: Option<String>,
    pub graph_object_id: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTimeUtc>,
    pub claimed_until: Option<DateTimeUtc>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    /// The tenant it is created in, once a validated sign-in named it.
    pub tenant_id: Option<String>,
    /// When the wait for replication began (status `PROPAGATING`).
    pub propagating_since: Option<DateTimeUtc>,
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
