//! One of an MSP's customers, with a Microsoft 365 tenant.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "client")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub msp_id: String,
    pub name: String,
    /// `name` lower-cased: the key for uniqueness, search and ordering.
    pub name_key: String,
    pub domain: Option<String>,
    pub azure_tenant_id: Option<Uuid>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::msp_tenant::Entity",
        from = "Column::MspId",
        to = "super::msp_tenant::Column::Id"
    )]
    MspTenant,
    #[sea_orm(has_one = "super::graph_api_tile::Entity")]
    GraphApiTile,
    #[sea_orm(has_many = "super::delegated_consent::Entity")]
    DelegatedConsent,
    #[sea_orm(has_many = "super::service_principal_request::Entity")]
    ServicePrincipalRequest,
    #[sea_orm(has_many = "super::oauth_flow::Entity")]
    OAuthFlow,
}

impl Related<super::msp_tenant::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::MspTenant.def()
    }
}

impl Related<super::graph_api_tile::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::GraphApiTile.def()
    }
}

impl Related<super::delegated_consent::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::DelegatedConsent.def()
    }
}

impl Related<super::service_principal_request::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ServicePrincipalRequest.def()
    }
}

impl Related<super::oauth_flow::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::OAuthFlow.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
