//! Service principal requests.

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Result};
use chrono::{DateTime, Utc};
use entity::service_principal_request;

use super::client::{Client, owner};
use super::enums::ServicePrincipalRequestStatus;
use crate::graphql::ids::{GlobalId, IdKind};

/// One attempt to create a missing service principal in a client's tenant.
pub(crate) struct ServicePrincipalRequest(
    pub Arc<service_principal_request::Model>,
    Option<String>,
);

impl ServicePrincipalRequest {
    pub(crate) fn new(request: service_principal_request::Model) -> Self {
        Self::shared(Arc::new(request))
    }

    /// An event's request, shared with every subscriber it reaches.
    pub(crate) fn shared(request: Arc<service_principal_request::Model>) -> Self {
        Self(request, None)
    }

    pub(crate) fn with_sign_in(
        request: service_principal_request::Model,
        url: Option<String>,
    ) -> Self {
        Self(Arc::new(request), url)
    }
}

#[Object]
impl ServicePrincipalRequest {
    pub async fn id(&self) -> ID {
        GlobalId::new(IdKind::ServicePrincipalRequest, self.0.id).encode()
    }

    /// The client whose tenant the principal is created in: its id.
    async fn client_id(&self) -> ID {
        GlobalId::new(IdKind::Client, self.0.client_id).encode()
    }

    /// The client whose tenant the principal is created in; null once the client is deleted.
    async fn client(&self, ctx: &Context<'_>) -> Result<Option<Client>> {
        owner(ctx, self.0.client_id).await
    }

    /// The application whose principal is created.
    async fn app_id(&self) -> &str {
        &self.0.app_id
    }

    /// The application's name, or its id when Consentry does not know its name.
    async fn app_display_name(&self) -> Option<&str> {
        Some(self.0.app_display_name.as_deref().unwrap_or(&self.0.app_id))
    }

    async fn status(&self) -> ServicePrincipalRequestStatus {
        self.0.status.into()
    }

    /// Where an admin of the client's tenant signs in so that Consentry can create the
    /// principal. Only in the `createServicePrincipal` answer that made the link (Consentry
    /// keeps only a hash of its `state`); call it again for a fresh link.
    async fn sign_in_url(&self) -> Option<&str> {
        self.1.as_deref()
    }

    /// Why it failed (a `GraphApiProblemCode` name such as `PERMISSIONS_MISSING`).
    async fn problem_code(&self) -> Option<&str> {
        self.0.problem_code.as_deref()
    }

    /// The tenant it was created in, once a validated sign-in named it.
    async fn tenant_id(&self) -> Option<&str> {
        self.0.tenant_id.as_deref()
    }

    /// Microsoft's words when it failed, or a note on a ready request.
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
