//! `delegatedPermissions`: the catalog for a "New Consent" page.

use async_graphql::{Context, Object, Result, SimpleObject};

use crate::graphql::context::viewer;
use crate::{
    domain::delegated_consents::DelegatedPermission as Permission,
    graphql::types::enums::DelegatedPermission,
};

#[derive(Default)]
pub(crate) struct PermissionQuery;

/// A delegated permission a client-tenant user can grant Consentry.
#[derive(SimpleObject)]
pub(crate) struct DelegatedPermissionInfo {
    pub permission: DelegatedPermission,
    /// The scope's name at its resource, e.g. `Mail.Send` or `user_impersonation`.
    pub scope: String,
    /// The API it belongs to, e.g. `Microsoft Graph`.
    pub resource: String,
    /// That API's application id.
    pub resource_app_id: String,
    pub display_name: String,
    pub description: String,
    /// Only an administrator can grant it; other users consent to the rest.
    pub admin_consent_required: bool,
    /// Recommended: the runbook asks every client for all four.
    pub recommended: bool,
}

#[Object]
impl PermissionQuery {
    /// Every delegated permission `startDelegatedConsent` can ask for.
    async fn delegated_permissions(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<DelegatedPermissionInfo>> {
        viewer(ctx)?;
        Ok(Permission::ALL
            .into_iter()
            .map(|p| {
                let info = p.info();
                DelegatedPermissionInfo {
                    permission: p.into(),
                    scope: info.scope.to_owned(),
                    resource: info.resource.to_owned(),
                    resource_app_id: info.resource_app_id.to_owned(),
                    display_name: info.display_name.to_owned(),
                    description: info.description.to_owned(),
                    admin_consent_required: info.admin_consent_required,
                    recommended: info.recommended,
                }
            })
            .collect())
    }
}
