//! The schema's enums (docs/design.md §2). Stored enums mirror the entity enums one-to-one.

use async_graphql::Enum;

use crate::{auth, domain};

/// Where a client's Graph API authorisation stands.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::GraphApiStatus")]
pub enum GraphApiStatus {
    /// Not authorised: never yet, or no longer after its tenant changed, or ready again after a
    /// repair (`headline` says which).
    NotAuthorised,
    /// A consent link is out; waiting for the client's admin to accept it.
    AwaitingConsent,
    /// The admin accepted; Consentry is checking what was actually granted.
    Verifying,
    /// Verified: an app-only token reads the tenant with the required permissions.
    Authorised,
    /// The last attempt failed; `problem` says why and what to do.
    Failed,
    /// Consent that used to work was withdrawn; `problem` says what was found.
    Revoked,
}

/// Why a tile is `FAILED` or `REVOKED`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::GraphApiProblemCode")]
pub enum GraphApiProblemCode {
    /// The tenant lacks a service principal the app needs (AADSTS650052); create it, then authorise again.
    MissingServicePrincipal,
    /// The missing service principal was created; authorise again. No longer a tile's
    /// `problem` (a repaired tile reads `NOT_AUTHORISED` and says so in its `headline`); kept
    /// for older audit entries.
    ServicePrincipalCreated,
    /// The admin declined or cancelled the consent (AADSTS65004).
    ConsentDeclined,
    /// The person who signed in is not an admin who can consent for the tenant (AADSTS90094).
    AdminConsentRequired,
    /// The consent came from a tenant other than the client's.
    WrongTenant,
    /// Consent succeeded but required permissions were not granted.
    PermissionsMissing,
    /// Consent that used to work was withdrawn.
    ConsentRevoked,
    /// MFA or a Conditional Access policy blocked the sign-in (AADSTS50076, 53003).
    ConditionalAccess,
    /// The consent link expired before anyone used it.
    LinkExpired,
    /// Microsoft's identity platform could not be reached or failed.
    IdentityProviderUnavailable,
    /// Anything else; `message` has Microsoft's text.
    Unknown,
}

/// A button a frontend may show on the tile.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::tile::GraphApiAction")]
pub enum GraphApiAction {
    /// Start (or restart) admin consent: `authoriseGraphApi`.
    Authorise,
    /// Re-check an authorised tile now: `verifyGraphApi`.
    Verify,
    /// Create the missing service principal: `createServicePrincipal`.
    CreateServicePrincipal,
    /// Ask a named admin for delegated permissions: `startDelegatedConsent`.
    Delegate,
}

/// A delegated permission a client-tenant user can grant.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::delegated_consents::DelegatedPermission")]
pub enum DelegatedPermission {
    /// Microsoft Graph `Mail.Send`.
    MailSend,
    /// Azure Service Management `user_impersonation`.
    AzureUserImpersonation,
    /// Microsoft Graph `UserAuthenticationMethod.ReadWrite.All` (admin consent required).
    UserAuthenticationMethodReadWriteAll,
    /// Microsoft Graph `Directory.AccessAsUser.All` (admin consent required).
    DirectoryAccessAsUserAll,
}

/// A delegated consent's standing.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::DelegatedConsentStatus")]
pub enum DelegatedConsentStatus {
    /// Consentry holds a working refresh token.
    Active,
    /// The refresh token stopped working; the user must consent again.
    Expired,
    /// Revoked through Consentry; the token was erased.
    Revoked,
}

/// Progress of one service-principal repair.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::ServicePrincipalRequestStatus")]
pub enum ServicePrincipalRequestStatus {
    /// Waiting for an admin to sign in through `signInUrl`.
    PendingSignIn,
    /// Creating the principal in the tenant.
    Creating,
    /// The principal already existed.
    AlreadyExists,
    /// Created; waiting until Microsoft's directory replicas all see it.
    Propagating,
    /// Visible everywhere: authorise again.
    Ready,
    /// It could not be created; `problem` says why.
    Failed,
}

/// A caller's role.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "auth::Role")]
pub enum Role {
    /// Everything within the caller's MSP.
    Admin,
    /// Everything within the caller's MSP.
    Technician,
    /// Read-only within the caller's MSP.
    Viewer,
    /// Read-only across every MSP; each such read is audited.
    Support,
}

/// What an audit event records.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "entity::enums::AuditAction")]
pub enum AuditAction {
    ClientCreated,
    ClientUpdated,
    ClientDeleted,
    /// Support staff of another MSP read this client.
    SupportRead,
    /// A consent link for the Graph API tile was created (`authoriseGraphApi`).
    GraphApiAuthorisationStarted,
    /// Microsoft sent the client's admin back with the result of a consent link.
    ConsentCallbackReceived,
    /// An admin signed in for a consent link and proved their tenant and their role in it.
    TenantProven,
    /// The Graph API tile changed status, or what it was granted changed.
    GraphApiStatusChanged,
    /// A requested re-check found the authorisation unchanged.
    GraphApiVerified,
    /// A service principal request was made, or moved on a step.
    ServicePrincipalRequestChanged,
    /// A delegated-consent link was created.
    DelegatedConsentStarted,
    /// A user granted (or granted again) delegated permissions.
    DelegatedConsentGranted,
    /// A delegated consent stopped working; `details.reason` says why.
    DelegatedConsentExpired,
    /// Someone checked a delegated consent.
    DelegatedConsentVerified,
    /// Someone revoked a delegated consent; its token was erased.
    DelegatedConsentRevoked,
}
