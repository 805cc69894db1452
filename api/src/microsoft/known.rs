//! Microsoft's own names that Consentry relies on: well-known application ids, directory
//! role templates, and the scopes each sign-in asks for (docs/microsoft-identity.md §2, §7,
//! §8). Nothing outside `microsoft/` spells one.

use uuid::Uuid;

/// The Skype and Teams Tenant Admin API, the principal most often missing.
pub const TEAMS_ADMIN_API_APP_ID: &str = "48ac35b8-9aa8-4d74-927d-1f4a14a0b239";
/// Its display name, as Microsoft names it (docs/microsoft-identity.md §7).
pub(crate) const TEAMS_ADMIN_API_DISPLAY_NAME: &str = "Skype and Teams Tenant Admin API";
/// [`TEAMS_ADMIN_API_APP_ID`] as a value.
pub(crate) const TEAMS_ADMIN_API: Uuid = Uuid::from_u128(0x48ac35b8_9aa8_4d74_927d_1f4a14a0b239);
/// Microsoft Graph.
pub(crate) const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Azure Service Management.
pub(crate) const AZURE_APP_ID: &str = "797f4846-ba00-4fd7-ba43-dac1f8f63013";

/// The display name of a well-known application.
pub(crate) fn display_name(app_id: &str) -> Option<&'static str> {
    match app_id {
        TEAMS_ADMIN_API_APP_ID => Some(TEAMS_ADMIN_API_DISPLAY_NAME),
        GRAPH_APP_ID => Some("Microsoft Graph"),
        AZURE_APP_ID => Some("Windows Azure Service Management API"),
        _ => None,
    }
}

/// Global Administrator (directory role template id).
pub(crate) const GLOBAL_ADMINISTRATOR: Uuid =
    Uuid::from_u128(0x62e90394_69f5_4237_9190_012177145e10);
/// Privileged Role Administrator (directory role template id).
pub(crate) const PRIVILEGED_ROLE_ADMINISTRATOR: Uuid =
    Uuid::from_u128(0xe8611ab8_c189_46e8_94e1_60213ab1f814);

/// The directory roles that may grant Microsoft Graph *application* permissions for a whole
/// tenant, which is what Consentry asks for. (Cloud Application Administrator and Application
/// Administrator may consent to other APIs' application permissions, but not to Graph's.)
pub(crate) const CONSENT_ROLES: [(Uuid, &str); 2] = [
    (GLOBAL_ADMINISTRATOR, "Global Administrator"),
    (
        PRIVILEGED_ROLE_ADMINISTRATOR,
        "Privileged Role Administrator",
    ),
];

/// Azure Service Management's `user_impersonation` (the double slash is intended:
/// docs/microsoft-identity.md §8).
pub(crate) const AZURE_USER_IMPERSONATION_SCOPE: &str =
    "https://management.core.windows.net//user_impersonation";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_teams_admin_api_id_is_one_value_in_both_forms() {
        assert_eq!(TEAMS_ADMIN_API.to_string(), TEAMS_ADMIN_API_APP_ID);
        assert_eq!(
            display_name(TEAMS_ADMIN_API_APP_ID),
            Some(TEAMS_ADMIN_API_DISPLAY_NAME)
        );
    }
}
