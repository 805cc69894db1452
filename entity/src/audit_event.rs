//! Append-only record of who did what to which client. Outlives the client it names.

use sea_orm::entity::prelude::*;

use crate::{StringList, enums::AuditAction};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_event")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The MSP whose data the event is about.
    pub msp_id: String,
    pub client_id: Option<Uuid>,
    pub actor_subject: String,
    pub actor_roles: StringList,
    /// The MSP of the actor (differs from `msp_id` for support staff).
    pub actor_msp_id: String,
    pub action: AuditAction,
    pub details: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
