//! Service principal requests.

use async_graphql::{ID, Object};
use chrono::{DateTime, Utc};
use entity::service_principal_request;

use super::enums::ServicePrincipalRequestStatus;
use crate::graphql::ids::{GlobalId, IdKind};

/// One attempt to create a missing service principal in a client's tenant.
pub struct ServicePrincipalRequest(pub service_principal_request::Model);

#[Object]
impl ServicePrincipalRequest {
    pub async fn id(&self) -> ID {
        GlobalId::new(IdKind::ServicePrincipalRequest, self.0.id).encode()
    }

    /// The application whose principal is created.
    async fn app_id(&self) -> &str {
        &self.0.app_id
    }

    async fn app_display_name(&self) -> Option<&str> {
        self.0.app_display_name.as_deref()
    }

    async fn status(&self) -> ServicePrincipalRequestStatus {
        self.0.status.into()
    }

    /// Why it failed, and what to do.
    async fn problem_message(&self) -> Option<&str> {
        self.0.problem_message.as_deref()
    }

    async fn remediation(&self) -> Option<&str> {
        self.0.problem_remediation.as_deref()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }

    async fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.0.completed_at
    }
}
