//! Admin consent's first step: an OpenID Connect sign-in that proves which tenant the admin
//! belongs to, before Microsoft's consent page is shown (docs/design.md §1, amended 2026-12;
//! checklist 95).
//!
//! Consentry is one multi-tenant app shared by every MSP, so an admin-consent redirect's
//! `admin_consent=True&tenant=…` proves nothing: anyone can request the callback with any
//! tenant, and a tenant that consented for one MSP answers app-only token requests for all of
//! them. What proves a tenant is an id_token Consentry redeemed itself, server to server,
//! with the flow's PKCE verifier, validated (signature, `iss` with `tid`, `aud`, `nonce`,
//! `exp`) and naming a user who holds a directory role that may grant Microsoft Graph
//! application permissions. Only then is the admin sent on to Microsoft's consent page for
//! that very tenant, and the consent's redirect must name it.
//!
//! Until a tenant is proven, nothing Consentry asks Microsoft depends on a tenant a caller
//! named: the sign-in and its token request go to `organizations`, so what another MSP can
//! observe is the same whether a tenant uses Consentry or not.

use chrono::{DateTime, Duration, Utc};
use entity::{client, enums::GraphApiProblemCode as Code, oauth_flow};
use oauth2::CsrfToken;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;
use uuid::Uuid;

use super::consents::Consents;
use super::crypto::FlowKeys;
use super::error::Result;
use super::flows::store;
use crate::db::now;
use crate::microsoft::{
    Microsoft, Problem, TenantHint,
    id_token::{ExpectedTenant, IdTokenClaims, IdTokenError},
    known::CONSENT_ROLES,
};

/// How long the admin has, once signed in, to press Accept on Microsoft's consent page.
pub(crate) const CONSENT_STEP_LIFETIME: Duration = Duration::minutes(30);

/// Who proved which tenant, and when. Kept on the flow between its two steps, and on the
/// tile it authorised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TenantProof {
    /// The `tid` of the validated id_token.
    pub tenant_id: Uuid,
    /// The admin's sign-in name (`preferred_username`), else their subject.
    pub signed_in_as: String,
    /// The admin's object id in the tenant (`oid`).
    pub user_object_id: Option<String>,
    /// Their directory roles that allow the consent.
    pub roles: Vec<Uuid>,
    pub proven_at: DateTime<Utc>,
}

impl TenantProof {
    /// The proof stored in a row, if it holds one.
    pub(crate) fn stored(json: Option<&serde_json::Value>) -> Option<Self> {
        json.and_then(|json| serde_json::from_value(json.clone()).ok())
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Names of the roles that allowed the consent.
    pub(crate) fn role_names(&self) -> Vec<&'static str> {
        self.roles
            .iter()
            .filter_map(|role| {
                CONSENT_ROLES
                    .iter()
                    .find(|(id, _)| id == role)
                    .map(|(_, name)| *name)
            })
            .collect()
    }
}

/// The consent step's `state`: derived from the sign-in's `state` and its authorization
/// code, so that only whoever holds both (the admin's browser) can learn it, and the same
/// callback repeated leads to the same consent page. The MSP knows the first `state` (it
/// handed the link out); the code never leaves Microsoft and the admin's browser.
pub(crate) fn consent_state(sign_in_state: &str, code: &str) -> CsrfToken {
    let digest = Sha256::new()
        .chain_update(b"consentry admin-consent step\0")
        .chain_update((sign_in_state.len() as u64).to_be_bytes())
        .chain_update(sign_in_state.as_bytes())
        .chain_update(code.as_bytes())
        .finalize();
    use base64::Engine;
    CsrfToken::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest))
}

/// The consent page again, for a repeat of a sign-in callback that already proved its tenant
/// (checklist 83): only when it brings the same code. `None` for anything else.
pub(crate) fn repeat_sign_in(
    consents: &Consents,
    flow: &oauth_flow::Model,
    sign_in_state: &str,
    code: Option<&str>,
) -> Option<Url> {
    let microsoft = consents.microsoft().ok()?;
    let proof = TenantProof::stored(flow.tenant_proof.as_ref())?;
    let state = consent_state(sign_in_state, code?);
    (flow.consent_state_hash.as_deref() == Some(&store::state_hash(state.secret())))
        .then(|| microsoft.admin_consent_url(&TenantHint::Id(proof.tenant_id), &state))
}

/// A tenant proven by a sign-in, and the code that proved it (the consent step's `state`
/// is derived from it).
pub(crate) struct Proven<'c> {
    pub(crate) proof: TenantProof,
    pub(crate) code: &'c str,
}

/// Redeems an admin-consent sign-in's code and decides what it proves: the tenant, or the
/// problem that stops the flow (`ours` when it is Consentry's own configuration's).
pub(crate) async fn prove<'c>(
    db: &DatabaseConnection,
    microsoft: &Microsoft,
    keys: &FlowKeys,
    flow: &oauth_flow::Model,
    client: &client::Model,
    code: Option<&'c str>,
) -> Result<std::result::Result<Proven<'c>, Problem>> {
    // A link made by an earlier version (before admins signed in first, or with its secrets
    // in plaintext), or one whose key has since changed: nothing to prove a tenant with.
    let secrets = match store::sign_in_secrets(keys, flow) {
        Ok(secrets) => secrets,
        Err(error) => {
            tracing::warn!(%error, "the admin-consent link's stored secrets cannot be used");
            return Ok(Err(Problem::new(
                Code::LinkExpired,
                format!("{} Send a new link.", error.on_the_page()),
            )));
        }
    };
    let Some(code) = code else {
        return Ok(Err(Problem::new(
            Code::Unknown,
            "Microsoft sent no authorization code, so the admin's sign-in could not be checked. \
             Send a new link.",
        )));
    };
    let claims = match signed_in(microsoft, &secrets, code).await {
        Ok(claims) => claims,
        Err(problem) => return Ok(Err(problem)),
    };
    let user = claims
        .preferred_username
        .clone()
        .unwrap_or_else(|| claims.subject.clone());
    let expected = client.azure_tenant_id.or_else(|| {
        flow.expected_tenant
            .as_deref()
            .and_then(|t| Uuid::try_parse(t).ok())
    });
    if let Some(expected) = expected
        && expected != claims.tenant_id
    {
        let tenant = claims.tenant_id;
        return Ok(Err(Problem::new(
            Code::WrongTenant,
            format!(
                "{user} signed in to tenant {tenant}, but this client's tenant is {expected}. The \
                 admin must sign in with an account of the client's own tenant; if the client \
                 moved tenants, correct its azureTenantId first."
            ),
        )));
    }
    // A client known only by its domain: the tenant that signed in must own it. Said now,
    // before Microsoft's consent page, whose own failure in the wrong tenant (a principal
    // *that* tenant lacks, say) would send the technician after the wrong problem.
    if expected.is_none()
        && let Some(domain) = client.domain.as_deref()
        && let Some(problem) = domain_not_owned(microsoft, domain, claims.tenant_id, &user).await
    {
        return Ok(Err(problem));
    }
    let roles = match consent_roles(&claims, &user) {
        Ok(roles) => roles,
        Err(problem) => return Ok(Err(problem)),
    };
    if let Some(problem) = tenant_taken(db, client, claims.tenant_id).await? {
        return Ok(Err(problem));
    }
    Ok(Ok(Proven {
        proof: TenantProof {
            tenant_id: claims.tenant_id,
            signed_in_as: user,
            user_object_id: claims.object_id,
            roles,
            proven_at: now(),
        },
        code,
    }))
}

/// Why `tenant` cannot consent for a client whose domain is `domain`: Microsoft places the
/// domain in another tenant, or in none. `None` when it owns it — or when Microsoft cannot say
/// now: the verification after the consent checks the tenant's verified domains anyway.
async fn domain_not_owned(
    microsoft: &Microsoft,
    domain: &str,
    tenant: Uuid,
    user: &str,
) -> Option<Problem> {
    let owner = match microsoft.domain_tenant(domain).await {
        Ok(owner) => owner,
        Err(error) => {
            tracing::warn!(%error, "could not ask Microsoft which tenant owns the client's domain");
            return None;
        }
    };
    let why = match owner {
        Some(owner) if owner == tenant => return None,
        Some(_) => format!(
            "{user} signed in to tenant {tenant}, which does not own the client's domain {domain}: \
             Microsoft places {domain} in another tenant."
        ),
        None => format!(
            "{user} signed in to tenant {tenant}, but Microsoft knows no tenant with the client's \
             domain {domain}."
        ),
    };
    tracing::warn!("the tenant that signed in does not own the client's domain");
    Some(Problem::new(
        Code::WrongTenant,
        format!(
            "{why} The admin must sign in with an account of the client's own tenant; if the \
             client's domain is wrong, correct it (or set its azureTenantId) and send a new link."
        ),
    ))
}

/// Redeems the code and validates its id_token: who signed in, in which tenant.
async fn signed_in(
    microsoft: &Microsoft,
    secrets: &store::SignInSecrets,
    code: &str,
) -> std::result::Result<IdTokenClaims, Problem> {
    let tokens = microsoft
        .redeem_tenant_sign_in(code, &secrets.pkce_verifier)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "the admin's sign-in could not be redeemed");
            error.problem()
        })?;
    // Checklist 10: nothing from the answer is used before its id_token is validated.
    let Some(id_token) = &tokens.id_token else {
        return Err(Problem::new(
            Code::Unknown,
            "Microsoft's answer to the sign-in had no id_token, so the admin's tenant could not \
             be proven. Send a new link.",
        ));
    };
    microsoft
        .validate_id_token(id_token, &ExpectedTenant::AnyOrganization, &secrets.nonce)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "the admin's id_token was rejected");
            let code = match error {
                IdTokenError::Tenant | IdTokenError::Issuer => Code::WrongTenant,
                IdTokenError::Key(crate::jwks::KeyError::Unavailable) => {
                    Code::IdentityProviderUnavailable
                }
                _ => Code::Unknown,
            };
            Problem::new(
                code,
                format!(
                    "Consentry could not trust the admin's sign-in ({error}), so it did not go on \
                     to the consent. Send a new link."
                ),
            )
        })
}

/// The roles of the signed-in user that allow the consent, or why there are none.
fn consent_roles(claims: &IdTokenClaims, user: &str) -> std::result::Result<Vec<Uuid>, Problem> {
    let Some(held) = &claims.directory_roles else {
        let problem = Problem::new(
            Code::IdentityProviderUnavailable,
            "Microsoft's sign-in did not say which directory roles the admin holds, so Consentry \
             cannot tell an administrator from any user of the tenant. An operator must set \
             \"groupMembershipClaims\": \"DirectoryRole\" in the manifest of Consentry's app \
             registration, so that id_tokens carry the wids claim.",
        );
        return Err(problem.ours());
    };
    let allowed: Vec<Uuid> = CONSENT_ROLES
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| held.contains(id))
        .collect();
    if allowed.is_empty() {
        let names: Vec<&str> = CONSENT_ROLES.iter().map(|(_, name)| *name).collect();
        return Err(Problem::new(
            Code::AdminConsentRequired,
            format!(
                "{user} signed in, but is not a {} of the tenant: only these roles may grant \
                 Microsoft Graph application permissions for the whole organisation. Sign in \
                 with such an account (or ask one to approve the request in Entra ID's admin \
                 consent workflow).",
                names.join(" or ")
            ),
        ));
    }
    Ok(allowed)
}

/// `WRONG_TENANT` when another client of the same MSP already has `tenant`: within one MSP,
/// a tenant belongs to one client (checklist 15).
pub(crate) async fn tenant_taken<C: ConnectionTrait>(
    db: &C,
    client: &client::Model,
    tenant: Uuid,
) -> Result<Option<Problem>> {
    let other = client::Entity::find()
        .filter(client::Column::MspId.eq(client.msp_id.clone()))
        .filter(client::Column::AzureTenantId.eq(tenant))
        .filter(client::Column::Id.ne(client.id))
        .one(db)
        .await?;
    Ok(other.map(|other| {
        Problem::new(
            Code::WrongTenant,
            format!(
                "Tenant {tenant} already belongs to your client {:?}. Each Microsoft tenant can \
             belong to one client of an MSP: check which client this admin belongs to.",
                other.name
            ),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::microsoft::known::{GLOBAL_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR};

    fn claims(roles: Option<Vec<Uuid>>) -> IdTokenClaims {
        IdTokenClaims {
            tenant_id: Uuid::new_v4(),
            object_id: None,
            subject: "s".into(),
            preferred_username: Some("admin@contoso.com".into()),
            name: None,
            issuer: "i".into(),
            directory_roles: roles,
        }
    }

    #[test]
    fn only_a_global_or_privileged_role_administrator_may_consent() {
        let member = Uuid::from_u128(0xb79fbf4d_3ef9_4689_8143_76b194e85509);
        let cloud_app_admin = Uuid::from_u128(0x158c047a_c907_4556_b7ef_446551a6b5f7);
        assert_eq!(
            consent_roles(&claims(Some(vec![member, GLOBAL_ADMINISTRATOR])), "a").unwrap(),
            [GLOBAL_ADMINISTRATOR]
        );
        assert_eq!(
            consent_roles(&claims(Some(vec![PRIVILEGED_ROLE_ADMINISTRATOR])), "a").unwrap(),
            [PRIVILEGED_ROLE_ADMINISTRATOR]
        );
        let refused = consent_roles(&claims(Some(vec![member, cloud_app_admin])), "a").unwrap_err();
        assert_eq!(refused.code, Code::AdminConsentRequired);
        assert!(refused.remediation.contains("Global Administrator"));
        assert!(!refused.ours);
        // No wids at all: the app registration does not ask for them, an operator's problem.
        let unknown = consent_roles(&claims(None), "a").unwrap_err();
        assert!(unknown.ours);
        assert!(unknown.remediation.contains("groupMembershipClaims"));
    }

    #[test]
    fn the_consent_state_needs_the_sign_in_state_and_its_code() {
        let a = consent_state("state-1", "code-1");
        assert_eq!(a.secret(), consent_state("state-1", "code-1").secret());
        assert_ne!(a.secret(), consent_state("state-1", "code-2").secret());
        assert_ne!(a.secret(), consent_state("state-2", "code-1").secret());
        // Length-prefixed: moving characters from one part to the other changes it.
        assert_ne!(
            consent_state("ab", "c").secret(),
            consent_state("a", "bc").secret()
        );
        assert!(a.secret().len() >= 43);
    }

    #[test]
    fn a_proof_round_trips_through_its_stored_form() {
        let proof = TenantProof {
            tenant_id: Uuid::new_v4(),
            signed_in_as: "admin@contoso.com".into(),
            user_object_id: Some(Uuid::new_v4().to_string()),
            roles: vec![GLOBAL_ADMINISTRATOR],
            proven_at: now(),
        };
        assert_eq!(
            TenantProof::stored(Some(&proof.to_json())),
            Some(proof.clone())
        );
        assert_eq!(proof.role_names(), ["Global Administrator"]);
        assert_eq!(TenantProof::stored(None), None);
    }
}
