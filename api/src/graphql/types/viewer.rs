//! The caller, as GraphQL sees them.

use async_graphql::{ID, Object};
use chrono::{DateTime, Utc};
use entity::msp_tenant;

use super::enums::Role;
use crate::auth;

/// The authenticated caller.
pub(crate) struct Viewer(pub auth::Viewer);

#[Object]
impl Viewer {
    /// The token's `sub`.
    async fn subject(&self) -> &str {
        &self.0.subject
    }

    async fn roles(&self) -> Vec<Role> {
        self.0.roles.iter().map(|r| (*r).into()).collect()
    }

    /// The caller's MSP tenant.
    async fn msp(&self) -> MspTenant {
        MspTenant(self.0.msp.clone())
    }

    /// True for admins and technicians.
    async fn can_write(&self) -> bool {
        self.0.can_write()
    }

    /// True for support staff, who read every MSP's clients (each read is audited).
    async fn reads_all_msps(&self) -> bool {
        self.0.reads_all_msps()
    }

    /// When the caller's token expires.
    async fn token_expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
}

/// One MSP: a customer of the platform.
pub(crate) struct MspTenant(pub msp_tenant::Model);

#[Object]
impl MspTenant {
    /// The MSP's id, as in callers' `msp` claim.
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }
}
