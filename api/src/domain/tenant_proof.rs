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
use sea_orm::{DatabaseConnection, EntityTrait};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;
use uuid::Uuid;

use super::{
    Result,
    audit::{self, Actor},
    callback::Answer,
    graph_api::{self, Consents, Verdict},
    now,
    oauth_flows::{self, FlowOutcome},
};
use crate::{
    db::begin_write,
    microsoft::{
        Microsoft, Problem, TenantHint,
        id_token::{ExpectedTenant, IdTokenClaims, IdTokenError},
    },
};

/// How long the admin has, once signed in, to press Accept on Microsoft's consent page.
pub const CONSENT_STEP_LIFETIME: Duration = Duration::minutes(30);

/// Global Administrator (directory role template id).
pub const GLOBAL_ADMINISTRATOR: Uuid = Uuid::from_u128(0x62e90394_69f5_4237_9190_012177145e10);
/// Privileged Role Administrator (directory role template id).
pub const PRIVILEGED_ROLE_ADMINISTRATOR: Uuid =
    Uuid::from_u128(0xe8611ab8_c189_46e8_94e1_60213ab1f814);

/// The directory roles that may grant Microsoft Graph *application* permissions for a whole
/// tenant, which is what Consentry asks for. (Cloud Application Administrator and Application
/// Administrator may consent to other APIs' application permissions, but not to Graph's.)
pub const CONSENT_ROLES: [(Uuid, &str); 2] = [
    (GLOBAL_ADMINISTRATOR, "Global Administrator"),
    (
        PRIVILEGED_ROLE_ADMINISTRATOR,
        "Privileged Role Administrator",
    ),
];

/// Who proved which tenant, and when. Kept on the flow between its two steps, and on the
/// tile it authorised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantProof {
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
    pub fn stored(json: Option<&serde_json::Value>) -> Option<Self> {
        json.and_then(|json| serde_json::from_value(json.clone()).ok())
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Names of the roles that allowed the consent.
    pub fn role_names(&self) -> Vec<&'static str> {
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

/// How admin consent's sign-in step ended.
pub enum SignInStep {
    /// Proven: the admin's browser goes on to Microsoft's consent page at this URL.
    Continue(Url),
    /// The flow ended here (a refusal, a sign-in that proves nothing, the wrong tenant).
    Finished(FlowOutcome),
}

/// The consent step's `state`: derived from the sign-in's `state` and its authorization
/// code, so that only whoever holds both (the admin's browser) can learn it, and the same
/// callback repeated leads to the same consent page. The MSP knows the first `state` (it
/// handed the link out); the code never leaves Microsoft and the admin's browser.
fn consent_state(sign_in_state: &str, code: &str) -> CsrfToken {
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
pub(super) fn repeat_sign_in(
    consents: &Consents,
    flow: &oauth_flow::Model,
    sign_in_state: &str,
    code: Option<&str>,
) -> Option<Url> {
    let microsoft = consents.microsoft().ok()?;
    let proof = TenantProof::stored(flow.tenant_proof.as_ref())?;
    let state = consent_state(sign_in_state, code?);
    (flow.consent_state_hash.as_deref() == Some(&oauth_flows::state_hash(state.secret())))
        .then(|| microsoft.admin_consent_url(&TenantHint::Id(proof.tenant_id), &state))
}

/// Acts on the sign-in callback of an admin-consent flow this request claimed: proves the
/// tenant, then opens the consent step; or ends the flow with the reason it cannot.
#[tracing::instrument(skip_all, fields(flow = %flow.id, client = %flow.client_id))]
pub(super) async fn complete_sign_in(
    db: &DatabaseConnection,
    consents: &Consents,
    flow: &oauth_flow::Model,
    sign_in_state: &str,
    answer: &Answer<'_>,
) -> Result<SignInStep> {
    let Some(client) = client::Entity::find_by_id(flow.client_id).one(db).await? else {
        return Ok(SignInStep::Finished(FlowOutcome::cancelled(
            flow,
            "",
            "the client was removed",
        )));
    };
    let proven = match prove(db, consents, flow, &client, answer).await? {
        SignIn::Proven(proven) => proven,
        SignIn::Refused(verdict) => {
            let txn = begin_write(db).await?;
            let Some(view) = graph_api::locked_view(&txn, flow.client_id).await? else {
                return Ok(SignInStep::Finished(FlowOutcome::cancelled(
                    flow,
                    "",
                    "the client was removed",
                )));
            };
            return graph_api::conclude(db, txn, view, consents, flow, verdict)
                .await
                .map(SignInStep::Finished);
        }
    };
    let Proven {
        microsoft,
        proof,
        code,
    } = proven;
    let state = consent_state(sign_in_state, code);
    let now = now();
    let txn = begin_write(db).await?;
    if !oauth_flows::open_consent_step(
        &txn,
        flow.id,
        state.secret(),
        proof.to_json(),
        now + CONSENT_STEP_LIFETIME,
    )
    .await?
    {
        drop(txn);
        return Ok(SignInStep::Finished(
            oauth_flows::find(db, flow.id)
                .await?
                .map(|f| oauth_flows::outcome_of(&f))
                .unwrap_or_else(|| FlowOutcome::cancelled(flow, "", "it was cancelled")),
        ));
    }
    audit::record(
        &txn,
        &Actor::callback(&flow.msp_id),
        &flow.msp_id,
        Some(flow.client_id),
        entity::enums::AuditAction::TenantProven,
        serde_json::json!({
            "flowId": flow.id,
            "tenant": proof.tenant_id,
            "signedInAs": proof.signed_in_as,
            "userObjectId": proof.user_object_id,
            "roles": proof.role_names(),
        }),
    )
    .await?;
    txn.commit().await?;
    tracing::info!(tenant = %proof.tenant_id, "admin signed in; on to Microsoft's consent page");
    Ok(SignInStep::Continue(microsoft.admin_consent_url(
        &TenantHint::Id(proof.tenant_id),
        &state,
    )))
}

/// What a sign-in proved.
enum SignIn<'a, 'c> {
    Proven(Proven<'a, 'c>),
    /// Nothing (or the wrong thing): the flow's verdict.
    Refused(Verdict),
}

/// A tenant proven by this sign-in.
struct Proven<'a, 'c> {
    microsoft: &'a Microsoft,
    proof: TenantProof,
    code: &'c str,
}

/// Redeems the sign-in's code and decides what it proves.
async fn prove<'a, 'c>(
    db: &DatabaseConnection,
    consents: &'a Consents,
    flow: &oauth_flow::Model,
    client: &client::Model,
    answer: &Answer<'c>,
) -> Result<SignIn<'a, 'c>> {
    let failed =
        |code: Code, text: &str| SignIn::Refused(Verdict::failed(graph_api::problem(code, text)));
    if let Some(refusal) = &answer.refusal {
        return Ok(SignIn::Refused(Verdict::failed(refusal.clone())));
    }
    let Ok(microsoft) = consents.microsoft() else {
        return Ok(SignIn::Refused(graph_api::no_microsoft()));
    };
    // A link made by an earlier version (before admins signed in first, or with its secrets
    // in plaintext), or one whose key has since changed: nothing to prove a tenant with.
    let secrets = match oauth_flows::sign_in_secrets(&consents.flow_keys, flow) {
        Ok(secrets) => secrets,
        Err(error) => {
            tracing::warn!(%error, "the admin-consent link's stored secrets cannot be used");
            return Ok(failed(
                Code::LinkExpired,
                &format!("{} Send a new link.", super::sign_in::unusable_link(&error)),
            ));
        }
    };
    let Some(code) = answer.code else {
        return Ok(failed(
            Code::Unknown,
            "Microsoft sent no authorization code, so the admin's sign-in could not be checked. \
             Send a new link.",
        ));
    };
    let tokens = match microsoft
        .redeem_tenant_sign_in(code, &secrets.pkce_verifier)
        .await
    {
        Ok(tokens) => tokens,
        Err(error) => {
            tracing::warn!(%error, "the admin's sign-in could not be redeemed");
            return Ok(SignIn::Refused(Verdict::failed(error.problem())));
        }
    };
    // Checklist 10: nothing from the answer is used before its id_token is validated.
    let Some(id_token) = &tokens.id_token else {
        return Ok(failed(
            Code::Unknown,
            "Microsoft's answer to the sign-in had no id_token, so the admin's tenant could not \
             be proven. Send a new link.",
        ));
    };
    let claims = match microsoft
        .validate_id_token(id_token, &ExpectedTenant::AnyOrganization, &secrets.nonce)
        .await
    {
        Ok(claims) => claims,
        Err(error) => {
            tracing::warn!(%error, "the admin's id_token was rejected");
            let code = match error {
                IdTokenError::Tenant | IdTokenError::Issuer => Code::WrongTenant,
                IdTokenError::Key(crate::jwks::KeyError::Unavailable) => {
                    Code::IdentityProviderUnavailable
                }
                _ => Code::Unknown,
            };
            return Ok(failed(
                code,
                &format!(
                    "Consentry could not trust the admin's sign-in ({error}), so it did not go on \
                     to the consent. Send a new link."
                ),
            ));
        }
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
        let why = format!(
            "{user} signed in to tenant {tenant}, but this client's tenant is {expected}. The \
             admin must sign in with an account of the client's own tenant; if the client moved \
             tenants, correct its azureTenantId first."
        );
        return Ok(SignIn::Refused(Verdict::failed(graph_api::wrong_tenant(
            &why,
        ))));
    }
    let roles = match consent_roles(&claims, &user) {
        Ok(roles) => roles,
        Err(problem) => return Ok(SignIn::Refused(Verdict::failed(problem))),
    };
    if let Some(problem) = graph_api::tenant_taken(db, client, claims.tenant_id).await? {
        return Ok(SignIn::Refused(Verdict::failed(problem)));
    }
    Ok(SignIn::Proven(Proven {
        microsoft,
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

/// The roles of the signed-in user that allow the consent, or why there are none.
fn consent_roles(claims: &IdTokenClaims, user: &str) -> std::result::Result<Vec<Uuid>, Problem> {
    let Some(held) = &claims.directory_roles else {
        let mut problem = graph_api::problem(
            Code::IdentityProviderUnavailable,
            "Microsoft's sign-in did not say which directory roles the admin holds, so Consentry \
             cannot tell an administrator from any user of the tenant. An operator must set \
             \"groupMembershipClaims\": \"DirectoryRole\" in the manifest of Consentry's app \
             registration, so that id_tokens carry the wids claim.",
        );
        problem.ours = true;
        return Err(problem);
    };
    let allowed: Vec<Uuid> = CONSENT_ROLES
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| held.contains(id))
        .collect();
    if allowed.is_empty() {
        let names: Vec<&str> = CONSENT_ROLES.iter().map(|(_, name)| *name).collect();
        return Err(graph_api::problem(
            Code::AdminConsentRequired,
            &format!(
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

#[cfg(test)]
mod tests {
    use super::*;

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
