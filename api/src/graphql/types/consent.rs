//! Delegated consents.

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Result};
use chrono::{DateTime, Utc};
use entity::delegated_consent;

use super::client::{Client, owner};
use super::enums::{DelegatedConsentStatus, DelegatedPermission};
use crate::{
    domain::delegated_consents::permissions,
    graphql::ids::{GlobalId, IdKind},
};

/// One client-tenant user's delegated consent. Tokens never leave the server.
pub(crate) struct DelegatedConsent(pub Arc<delegated_consent::Model>);

impl From<delegated_consent::Model> for DelegatedConsent {
    fn from(consent: delegated_consent::Model) -> Self {
        Self(Arc::new(consent))
    }
}

#[Object]
impl DelegatedConsent {
    pub async fn id(&self) -> ID {
        GlobalId::new(IdKind::DelegatedConsent, self.0.id).encode()
    }

    /// The client whose tenant the user belongs to: its id.
    async fn client_id(&self) -> ID {
        GlobalId::new(IdKind::Client, self.0.client_id).encode()
    }

    /// The client whose tenant the user belongs to; null once the client is deleted.
    async fn client(&self, ctx: &Context<'_>) -> Result<Option<Client>> {
        owner(ctx, self.0.client_id).await
    }

    async fn user_principal_name(&self) -> &str {
        &self.0.user_principal_name
    }

    async fn display_name(&self) -> Option<&str> {
        self.0.display_name.as_deref()
    }

    /// The user's immutable object id in the client tenant.
    async fn user_object_id(&self) -> &str {
        &self.0.user_object_id
    }

    /// What the user granted.
    async fn permissions(&self) -> Vec<DelegatedPermission> {
        permissions(&self.0.permissions.0)
            .into_iter()
            .map(Into::into)
            .collect()
    }

    /// What was asked for but not granted.
    async fn missing_permissions(&self) -> Vec<DelegatedPermission> {
        permissions(&self.0.missing_permissions.0)
            .into_iter()
            .map(Into::into)
            .collect()
    }

    async fn status(&self) -> DelegatedConsentStatus {
        self.0.status.into()
    }

    /// Why the consent is no longer active.
    async fn status_reason(&self) -> Option<&str> {
        self.0.status_reason.as_deref()
    }

    async fn granted_at(&self) -> DateTime<Utc> {
        self.0.granted_at
    }

    async fn last_refreshed_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_refreshed_at
    }
}
