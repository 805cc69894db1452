//! Audit events.

use async_graphql::{ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::audit_event;

use super::enums::AuditAction;
use crate::domain::tile;
use crate::graphql::types::connection::PageInfo;

/// One entry of a client's audit trail.
pub(crate) struct AuditEvent(pub audit_event::Model);

#[Object]
impl AuditEvent {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn action(&self) -> AuditAction {
        self.0.action.into()
    }

    async fn at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// The `sub` of whoever did it.
    async fn actor_subject(&self) -> &str {
        &self.0.actor_subject
    }

    /// The actor's MSP (differs from the client's for support staff).
    async fn actor_msp_id(&self) -> &str {
        &self.0.actor_msp_id
    }

    async fn actor_roles(&self) -> &[String] {
        &self.0.actor_roles.0
    }

    /// What changed, as recorded. Problem codes read as the schema spells them
    /// (`LINK_EXPIRED`), also in entries written before they were stored that way.
    async fn details(&self) -> Json<serde_json::Value> {
        Json(schema_spelled(self.0.details.clone()))
    }
}

/// `details` with a problem code (`problem.code`, or `problem` itself on a service principal
/// request's step) in the schema's spelling.
fn schema_spelled(mut details: serde_json::Value) -> serde_json::Value {
    let code = match details.get_mut("problem") {
        Some(serde_json::Value::Object(problem)) => problem.get_mut("code"),
        Some(problem) => Some(problem),
        None => None,
    };
    if let Some(serde_json::Value::String(code)) = code
        && let std::borrow::Cow::Owned(spelled) = tile::schema_spelling(code)
    {
        *code = spelled;
    }
    details
}

/// A page of audit events, newest first.
#[derive(SimpleObject)]
pub(crate) struct AuditEventConnection {
    pub edges: Vec<AuditEventEdge>,
    pub page_info: PageInfo,
}

#[derive(SimpleObject)]
pub(crate) struct AuditEventEdge {
    pub cursor: String,
    pub node: AuditEvent,
}
