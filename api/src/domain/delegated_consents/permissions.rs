//! The delegated permissions Consentry can ask a client-tenant user for (docs/design.md §1),
//! and what the "New Consent" page shows about each (docs/microsoft-identity.md §8).

use crate::microsoft::MicrosoftConfig;
use crate::microsoft::known::{AZURE_APP_ID, AZURE_USER_IMPERSONATION_SCOPE, GRAPH_APP_ID};

/// A delegated permission Consentry can ask a client-tenant user for (docs/design.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DelegatedPermission {
    MailSend,
    AzureUserImpersonation,
    UserAuthenticationMethodReadWriteAll,
    DirectoryAccessAsUserAll,
}

/// What the "New Consent" page shows about a permission (reference §8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermissionInfo {
    pub permission: DelegatedPermission,
    /// The scope's name at its resource, e.g. `Mail.Send`.
    pub scope: &'static str,
    pub resource: &'static str,
    pub resource_app_id: &'static str,
    pub display_name: &'static str,
    pub description: &'static str,
    /// Whether only an admin can grant it (others get the rest of what they chose).
    pub admin_consent_required: bool,
    /// Recommended for password resets (all four are, as the runbook says).
    pub recommended: bool,
}

impl DelegatedPermission {
    pub const ALL: [Self; 4] = [
        Self::MailSend,
        Self::AzureUserImpersonation,
        Self::UserAuthenticationMethodReadWriteAll,
        Self::DirectoryAccessAsUserAll,
    ];

    /// The name stored in the database (and used in GraphQL).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MailSend => "MAIL_SEND",
            Self::AzureUserImpersonation => "AZURE_USER_IMPERSONATION",
            Self::UserAuthenticationMethodReadWriteAll => {
                "USER_AUTHENTICATION_METHOD_READ_WRITE_ALL"
            }
            Self::DirectoryAccessAsUserAll => "DIRECTORY_ACCESS_AS_USER_ALL",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    pub fn info(self) -> PermissionInfo {
        let graph = |scope, display_name, description, admin| PermissionInfo {
            permission: self,
            scope,
            resource: "Microsoft Graph",
            resource_app_id: GRAPH_APP_ID,
            display_name,
            description,
            admin_consent_required: admin,
            recommended: true,
        };
        match self {
            Self::MailSend => graph(
                "Mail.Send",
                "Send mail as a user",
                "Send mail as the user who consents (password-reset notices).",
                false,
            ),
            Self::UserAuthenticationMethodReadWriteAll => graph(
                "UserAuthenticationMethod.ReadWrite.All",
                "Read and write all users' authentication methods",
                "Reset passwords and manage sign-in methods of the tenant's users.",
                true,
            ),
            Self::DirectoryAccessAsUserAll => graph(
                "Directory.AccessAsUser.All",
                "Access the directory as the signed-in user",
                "Act in the directory with the consenting admin's own rights (also lets Consentry create a missing service principal without another sign-in).",
                true,
            ),
            Self::AzureUserImpersonation => PermissionInfo {
                permission: self,
                scope: "user_impersonation",
                resource: "Azure Service Management",
                resource_app_id: AZURE_APP_ID,
                display_name: "Access Azure Service Management as organization users",
                description: "Manage Azure resources as the user who consents.",
                admin_consent_required: false,
                recommended: true,
            },
        }
    }

    pub(crate) fn is_graph(self) -> bool {
        self != Self::AzureUserImpersonation
    }

    /// The full scope to request, at the configured Graph.
    pub(crate) fn scope(self, microsoft: &MicrosoftConfig) -> String {
        match self {
            Self::AzureUserImpersonation => AZURE_USER_IMPERSONATION_SCOPE.to_owned(),
            other => microsoft.graph_scope(other.info().scope),
        }
    }
}

/// Parses stored permission names, skipping (and logging) any this build does not know.
pub(crate) fn permissions(stored: &[String]) -> Vec<DelegatedPermission> {
    stored
        .iter()
        .filter_map(|name| {
            let parsed = DelegatedPermission::parse(name);
            if parsed.is_none() {
                tracing::warn!(permission = %name, "unknown delegated permission in the database");
            }
            parsed
        })
        .collect()
}
