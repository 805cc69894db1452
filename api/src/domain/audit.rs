//! The append-only audit trail: who did what to which client, and every support-staff look.

use entity::{StringList, audit_event, enums::AuditAction};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    prelude::*,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::Viewer;

/// Who an audit event is attributed to.
#[derive(Clone, Debug)]
pub(crate) struct Actor {
    pub subject: String,
    pub roles: Vec<String>,
    pub msp_id: String,
}

impl From<&Viewer> for Actor {
    fn from(viewer: &Viewer) -> Self {
        Self {
            subject: viewer.subject.clone(),
            roles: viewer.role_names(),
            msp_id: viewer.msp_id().to_owned(),
        }
    }
}

impl Actor {
    /// Consentry itself (sweeps and scheduled re-verification).
    pub(crate) fn system(msp_id: &str) -> Self {
        Self {
            subject: "consentry".to_owned(),
            roles: Vec::new(),
            msp_id: msp_id.to_owned(),
        }
    }

    /// Whoever Microsoft sent back to the consent callback: anonymous, and only trusted as
    /// far as the flow's `state` binds it to an MSP and client.
    pub(crate) fn callback(msp_id: &str) -> Self {
        Self {
            subject: "oauth-callback".to_owned(),
            roles: Vec::new(),
            msp_id: msp_id.to_owned(),
        }
    }
}

fn event(
    actor: &Actor,
    msp_id: &str,
    client_id: Option<Uuid>,
    action: AuditAction,
    details: Value,
) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        msp_id: Set(msp_id.to_owned()),
        client_id: Set(client_id),
        actor_subject: Set(actor.subject.clone()),
        actor_roles: Set(StringList(actor.roles.clone())),
        actor_msp_id: Set(actor.msp_id.clone()),
        action: Set(action),
        details: Set(details),
        created_at: Set(crate::db::now()),
        ..Default::default()
    }
}

/// Appends one event; call it inside the transaction that makes the change it describes.
pub(crate) async fn record<C: ConnectionTrait>(
    db: &C,
    actor: &Actor,
    msp_id: &str,
    client_id: Option<Uuid>,
    action: AuditAction,
    details: Value,
) -> Result<(), DbErr> {
    audit_event::Entity::insert(event(actor, msp_id, client_id, action, details))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Records that support staff read these clients of other MSPs (one event per client, one
/// statement in all). `what` names the query, e.g. `clients`.
pub(crate) async fn record_support_reads<C: ConnectionTrait>(
    db: &C,
    viewer: &Viewer,
    what: &str,
    clients: &[(String, Uuid)],
) -> Result<(), DbErr> {
    if clients.is_empty() {
        return Ok(());
    }
    let actor = Actor::from(viewer);
    let events = clients.iter().map(|(msp_id, client_id)| {
        event(
            &actor,
            msp_id,
            Some(*client_id),
            AuditAction::SupportRead,
            json!({ "query": what }),
        )
    });
    audit_event::Entity::insert_many(events)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// A client's events, newest first, older than `before` (an event id) when given.
pub(crate) async fn for_client<C: ConnectionTrait>(
    db: &C,
    client_id: Uuid,
    limit: u64,
    before: Option<i64>,
) -> Result<Vec<audit_event::Model>, DbErr> {
    let mut query = audit_event::Entity::find().filter(audit_event::Column::ClientId.eq(client_id));
    if let Some(before) = before {
        query = query.filter(audit_event::Column::Id.lt(before));
    }
    query
        .order_by_desc(audit_event::Column::Id)
        .limit(limit)
        .all(db)
        .await
}
