//! The Graph API authorisation state of one client.

use sea_orm::entity::prelude::*;

use crate::{
    StringList,
    enums::{GraphApiProblemCode, GraphApiStatus},
};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "graph_api_tile")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: Uuid,
    pub status: GraphApiStatus,
    pub problem_code: Option<GraphApiProblemCode>,
    pub problem_aadsts_code: Option<i64>,
    pub problem_message: Option<String>,
    pub problem_remediation: Option<String>,
    pub problem_app_id: Option<String>,
    pub problem_app_display_name: Option<String>,
    pub granted_permissions: StringList,
    pub missing_permissions: StringList,
    pub authorised_at: Option<DateTimeUtc>,
    pub last_verified_at: Option<DateTimeUtc>,
    /// When an authorised tile is next re-verified (also the claim of the instance doing it).
    pub next_verification_at: Option<DateTimeUtc>,
    /// Which signed-in admin proved the tenant of the current authorisation (the domain's
    /// `TenantProof`); none for tiles authorised before tenants were proven.
    pub tenant_proof: Option<Json>,
    pub version: i64,
    pub status_changed_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
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
