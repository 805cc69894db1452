//! Enumerations stored as text columns. Their string values are part of the stored format:
//! never rename one without a migration.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Authorisation state of a client's Graph API tile (docs/design.md §1, the tile status machine).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum GraphApiStatus {
    #[sea_orm(string_value = "NOT_AUTHORISED")]
    NotAuthorised,
    #[sea_orm(string_value = "AWAITING_CONSENT")]
    AwaitingConsent,
    #[sea_orm(string_value = "VERIFYING")]
    Verifying,
    #[sea_orm(string_value = "AUTHORISED")]
    Authorised,
    #[sea_orm(string_value = "FAILED")]
    Failed,
    #[sea_orm(string_value = "REVOKED")]
    Revoked,
}

/// Why a tile is `FAILED` or `REVOKED`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum GraphApiProblemCode {
    #[sea_orm(string_value = "MISSING_SERVICE_PRINCIPAL")]
    MissingServicePrincipal,
    #[sea_orm(string_value = "SERVICE_PRINCIPAL_CREATED")]
    ServicePrincipalCreated,
    #[sea_orm(string_value = "CONSENT_DECLINED")]
    ConsentDeclined,
    #[sea_orm(string_value = "ADMIN_CONSENT_REQUIRED")]
    AdminConsentRequired,
    #[sea_orm(string_value = "WRONG_TENANT")]
    WrongTenant,
    #[sea_orm(string_value = "PERMISSIONS_MISSING")]
    PermissionsMissing,
    #[sea_orm(string_value = "CONSENT_REVOKED")]
    ConsentRevoked,
    #[sea_orm(string_value = "CONDITIONAL_ACCESS")]
    ConditionalAccess,
    #[sea_orm(string_value = "LINK_EXPIRED")]
    LinkExpired,
    #[sea_orm(string_value = "IDENTITY_PROVIDER_UNAVAILABLE")]
    IdentityProviderUnavailable,
    #[sea_orm(string_value = "UNKNOWN")]
    Unknown,
}

/// What a started OAuth flow is for.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum OAuthFlowKind {
    /// Tenant-wide admin consent for the Graph API tile.
    #[sea_orm(string_value = "ADMIN_CONSENT")]
    AdminConsent,
    /// A named user's delegated consent.
    #[sea_orm(string_value = "DELEGATED_CONSENT")]
    DelegatedConsent,
    /// An admin sign-in used once to create a missing service principal.
    #[sea_orm(string_value = "SERVICE_PRINCIPAL_SIGN_IN")]
    ServicePrincipalSignIn,
}

/// Life of an OAuth flow: single use, then a final outcome.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum OAuthFlowStatus {
    #[sea_orm(string_value = "PENDING")]
    Pending,
    /// A callback claimed the flow and is exchanging the code.
    #[sea_orm(string_value = "EXCHANGING")]
    Exchanging,
    #[sea_orm(string_value = "SUCCEEDED")]
    Succeeded,
    #[sea_orm(string_value = "FAILED")]
    Failed,
    #[sea_orm(string_value = "EXPIRED")]
    Expired,
}

/// A delegated consent's standing.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum DelegatedConsentStatus {
    #[sea_orm(string_value = "ACTIVE")]
    Active,
    #[sea_orm(string_value = "EXPIRED")]
    Expired,
    #[sea_orm(string_value = "REVOKED")]
    Revoked,
}

/// Progress of one service-principal repair.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum ServicePrincipalRequestStatus {
    #[sea_orm(string_value = "PENDING_SIGN_IN")]
    PendingSignIn,
    #[sea_orm(string_value = "CREATING")]
    Creating,
    #[sea_orm(string_value = "ALREADY_EXISTS")]
    AlreadyExists,
    #[sea_orm(string_value = "PROPAGATING")]
    Propagating,
    #[sea_orm(string_value = "READY")]
    Ready,
    #[sea_orm(string_value = "FAILED")]
    Failed,
}

/// What an audit event records.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum AuditAction {
    #[sea_orm(string_value = "CLIENT_CREATED")]
    ClientCreated,
    #[sea_orm(string_value = "CLIENT_UPDATED")]
    ClientUpdated,
    #[sea_orm(string_value = "CLIENT_DELETED")]
    ClientDeleted,
    /// Support staff read an MSP's data from outside that MSP.
    #[sea_orm(string_value = "SUPPORT_READ")]
    SupportRead,
    /// Someone created a consent link for the Graph API tile.
    #[sea_orm(string_value = "GRAPH_API_AUTHORISATION_STARTED")]
    GraphApiAuthorisationStarted,
    /// Microsoft sent the browser back to the consent callback.
    #[sea_orm(string_value = "CONSENT_CALLBACK_RECEIVED")]
    ConsentCallbackReceived,
    /// An admin signed in for an admin consent and proved their tenant (and their role in
    /// it); Microsoft's consent page comes next.
    #[sea_orm(string_value = "TENANT_PROVEN")]
    TenantProven,
    /// The Graph API tile changed status (or, when re-verified, what it was granted).
    #[sea_orm(string_value = "GRAPH_API_STATUS_CHANGED")]
    GraphApiStatusChanged,
    /// Someone asked for the Graph API authorisation to be re-checked and it was unchanged.
    #[sea_orm(string_value = "GRAPH_API_VERIFIED")]
    GraphApiVerified,
    /// A service principal request was made or moved on a step.
    #[sea_orm(string_value = "SERVICE_PRINCIPAL_REQUEST_CHANGED")]
    ServicePrincipalRequestChanged,
    /// Someone created a delegated-consent link.
    #[sea_orm(string_value = "DELEGATED_CONSENT_STARTED")]
    DelegatedConsentStarted,
    /// A user granted (or granted again) delegated permissions.
    #[sea_orm(string_value = "DELEGATED_CONSENT_GRANTED")]
    DelegatedConsentGranted,
    /// A delegated consent stopped working (its refresh token was refused).
    #[sea_orm(string_value = "DELEGATED_CONSENT_EXPIRED")]
    DelegatedConsentExpired,
    /// Someone checked a delegated consent (refresh and `/me`).
    #[sea_orm(string_value = "DELEGATED_CONSENT_VERIFIED")]
    DelegatedConsentVerified,
    /// Someone revoked a delegated consent; its token was erased.
    #[sea_orm(string_value = "DELEGATED_CONSENT_REVOKED")]
    DelegatedConsentRevoked,
}
