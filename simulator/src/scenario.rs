//! Simulated tenants: who is in them and how they misbehave. Set from tests, or loaded from a
//! JSON file (`consentry demo --simulator-tenants FILE`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The Skype and Teams Tenant Admin API's application id: the service principal a tenant most
/// often lacks. The simulator keeps Microsoft's ids itself rather than borrow the server's, so
/// that it stays an independent witness of what Microsoft does.
pub const TEAMS_ADMIN_API_APP_ID: &str = "48ac35b8-9aa8-4d74-927d-1f4a14a0b239";

/// A deterministic id from a name, so that a tenant keeps its id across restarts.
pub fn stable_id(name: &str) -> Uuid {
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// One user of a simulated tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimUser {
    /// The object id (`oid`).
    pub id: Uuid,
    pub user_principal_name: String,
    pub display_name: String,
    /// A Global Administrator: may grant tenant-wide consent and create service principals.
    #[serde(default)]
    pub is_admin: bool,
}

impl SimUser {
    pub fn new(tenant_domain: &str, name: &str, is_admin: bool) -> Self {
        let upn = format!("{name}@{tenant_domain}");
        Self {
            id: stable_id(&upn),
            display_name: format!("{}{}", name[..1].to_uppercase(), &name[1..]),
            user_principal_name: upn,
            is_admin,
        }
    }
}

/// A response that is not Microsoft's documented shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ResponseFault {
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// 200 with `text/html`.
    WrongContentType,
    /// 302 to somewhere else.
    Redirect,
}

/// How the token endpoint forges the id_tokens it issues (for the id_token attack tests of
/// checklist §B and §C).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IdTokenAttack {
    /// A valid token with one signature bit flipped.
    BadSignature,
    /// `alg: none`, no signature.
    AlgNone,
    /// HS256, "signed" with the published public key as the HMAC secret.
    Hs256WithPublicKey,
    /// Another tenant's issuer.
    WrongIssuer,
    /// Another application's audience.
    WrongAudience,
    /// Correctly signed, but for another tenant (`tid` and `iss` both another tenant's).
    OtherTenant,
    /// A nonce other than the flow's.
    WrongNonce,
    /// Expired an hour ago.
    Expired,
    /// Signed with a key published only now (a rotation): valid once keys are refetched.
    RotatedKey,
}

/// Throttling: the first `count` Graph calls answer 429 with `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttle {
    pub count: u32,
    pub retry_after_seconds: u64,
}

/// How a tenant misbehaves. The default is a healthy tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Every consent ends as declined (AADSTS65004), whichever button is pressed.
    pub consent_declined: bool,
    /// Sign-in needs MFA the simulator cannot do (AADSTS50076).
    pub mfa_required: bool,
    /// A Conditional Access policy blocks sign-in (AADSTS53003).
    pub conditional_access_blocked: bool,
    /// Graph throttles.
    pub graph_throttle: Option<Throttle>,
    /// The token endpoint answers after this delay.
    pub token_delay_ms: u64,
    /// The token endpoint answers this status (500, 503) to everything.
    pub token_failure_status: Option<u16>,
    /// The token endpoint answers in an undocumented shape.
    pub token_response: Option<ResponseFault>,
    /// Graph answers in an undocumented shape.
    pub graph_response: Option<ResponseFault>,
    /// Refresh tokens have expired (AADSTS700082).
    pub refresh_token_expired: bool,
    /// The tenant removed Consentry's app: app-only tokens fail (AADSTS700016).
    pub app_removed: bool,
    /// A newly created service principal stays invisible for this many lookups (replication).
    pub propagation_lookups: u32,
    /// Whoever signs in lacks a directory role that may create service principals (e.g. a
    /// Helpdesk Administrator where the app's delegated scopes were pre-consented): creating
    /// one answers 403 `Authorization_RequestDenied`.
    pub insufficient_privileges: bool,
    /// The token endpoint's id_tokens are forged this way.
    pub id_token_attack: Option<IdTokenAttack>,
    /// Admin consent grants only these application permissions (default: all required).
    pub granted_roles: Option<Vec<String>>,
}

/// A simulated Microsoft Entra tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimTenant {
    pub id: Uuid,
    /// The initial domain, e.g. `contoso.onmicrosoft.com`.
    pub domain: String,
    pub display_name: String,
    #[serde(default)]
    pub users: Vec<SimUser>,
    /// Application ids whose service principals the tenant lacks until they are created.
    #[serde(default)]
    pub missing_service_principals: Vec<String>,
    #[serde(default)]
    pub faults: Faults,
}

impl SimTenant {
    /// A healthy tenant with an admin (`admin@domain`) and a user (`user@domain`).
    pub fn healthy(domain: &str, display_name: &str) -> Self {
        Self {
            id: stable_id(domain),
            domain: domain.to_owned(),
            display_name: display_name.to_owned(),
            users: vec![
                SimUser::new(domain, "admin", true),
                SimUser::new(domain, "user", false),
            ],
            missing_service_principals: Vec::new(),
            faults: Faults::default(),
        }
    }

    /// Lacks the Skype and Teams Tenant Admin API principal (AADSTS650052 until created).
    pub fn missing_teams(domain: &str, display_name: &str) -> Self {
        let mut tenant = Self::healthy(domain, display_name);
        tenant.missing_service_principals = vec![TEAMS_ADMIN_API_APP_ID.to_owned()];
        tenant
    }

    /// Only non-admin users: tenant-wide consent fails with AADSTS90094.
    pub fn without_admins(domain: &str, display_name: &str) -> Self {
        let mut tenant = Self::healthy(domain, display_name);
        for user in &mut tenant.users {
            user.is_admin = false;
        }
        tenant
    }

    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// The first admin user, if any.
    pub fn admin(&self) -> Option<&SimUser> {
        self.users.iter().find(|u| u.is_admin)
    }

    /// The user `name@domain`.
    pub fn user(&self, name: &str) -> Option<&SimUser> {
        let upn = format!("{name}@{}", self.domain);
        self.users.iter().find(|u| u.user_principal_name == upn)
    }
}

/// Display names of the application ids the simulator knows, as AADSTS650052 names them.
pub fn app_display_name(app_id: &str) -> &'static str {
    match app_id {
        TEAMS_ADMIN_API_APP_ID => "Skype and Teams Tenant Admin API",
        "00000003-0000-0000-c000-000000000000" => "Microsoft Graph",
        "797f4846-ba00-4fd7-ba43-dac1f8f63013" => "Windows Azure Service Management API",
        _ => "Unknown application",
    }
}

/// One tenant per scenario of the issue, for `consentry demo` (and tests that want them all).
pub fn demo_tenants() -> Vec<(SimTenant, &'static str)> {
    vec![
        (
            SimTenant::healthy("contoso.onmicrosoft.com", "Contoso"),
            "Healthy tenant: consent just works.",
        ),
        (
            SimTenant::missing_teams("fabrikam.onmicrosoft.com", "Fabrikam"),
            "No Teams licence: the Teams admin API principal is missing (AADSTS650052) until it is created.",
        ),
        (
            SimTenant::healthy("northwind.onmicrosoft.com", "Northwind Traders").with_faults(
                Faults {
                    consent_declined: true,
                    ..Faults::default()
                },
            ),
            "The admin declines the consent (AADSTS65004).",
        ),
        (
            SimTenant::without_admins("tailspin.onmicrosoft.com", "Tailspin Toys"),
            "Nobody who signs in is an admin: stopped at the sign-in (ADMIN_CONSENT_REQUIRED).",
        ),
        (
            SimTenant::healthy("woodgrove.onmicrosoft.com", "Woodgrove Bank").with_faults(Faults {
                mfa_required: true,
                ..Faults::default()
            }),
            "Sign-in needs MFA (AADSTS50076).",
        ),
        (
            SimTenant::healthy("adatum.onmicrosoft.com", "Adatum").with_faults(Faults {
                conditional_access_blocked: true,
                ..Faults::default()
            }),
            "A Conditional Access policy blocks sign-in (AADSTS53003).",
        ),
        (
            SimTenant::healthy("litware.onmicrosoft.com", "Litware").with_faults(Faults {
                graph_throttle: Some(Throttle {
                    count: 2,
                    retry_after_seconds: 1,
                }),
                ..Faults::default()
            }),
            "Graph throttles the first calls (429 + Retry-After).",
        ),
        (
            SimTenant::healthy("proseware.onmicrosoft.com", "Proseware").with_faults(Faults {
                token_delay_ms: 3_000,
                ..Faults::default()
            }),
            "The token endpoint is slow (3 s).",
        ),
        (
            SimTenant::healthy("wingtip.onmicrosoft.com", "Wingtip Toys").with_faults(Faults {
                token_failure_status: Some(503),
                ..Faults::default()
            }),
            "The token endpoint fails (503).",
        ),
        (
            SimTenant::healthy("lamna.onmicrosoft.com", "Lamna Healthcare").with_faults(Faults {
                refresh_token_expired: true,
                ..Faults::default()
            }),
            "Refresh tokens have expired (AADSTS700082).",
        ),
    ]
}
