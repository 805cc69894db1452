//! The callback half of every user sign-in (delegated consents, service principal repair):
//! redeem the code once with the flow's PKCE verifier, and trust nothing from the answer
//! until its id_token is validated against the flow's tenant and nonce (checklist 9–12,
//! §B) — and, when only the client's domain is known, until the tenant is shown to own it.

use entity::{enums::GraphApiProblemCode as Code, oauth_flow};
use uuid::Uuid;

use super::kind::Claimed;
use super::store;
use crate::microsoft::{
    Microsoft, Problem,
    id_token::{ExpectedTenant, IdTokenClaims, IdTokenError},
    identity::TokenSet,
};

/// A validated sign-in: Microsoft's tokens and who signed in, in which tenant.
pub(super) struct SignedIn<'a> {
    pub microsoft: &'a Microsoft,
    pub tokens: TokenSet,
    pub claims: IdTokenClaims,
}

/// Redeems `code` for `scopes` (one resource) and validates the answer. `again` tells the
/// person what to restart ("Send a new link.").
pub(super) async fn redeem<'a>(
    callback: &Claimed<'a>,
    code: &str,
    scopes: &[String],
    again: &str,
) -> Result<SignedIn<'a>, Problem> {
    let (consents, flow, client) = (callback.consents, callback.flow, callback.client);
    let microsoft = consents
        .microsoft()
        .map_err(|e| Problem::new(Code::IdentityProviderUnavailable, e.to_string()).ours())?;
    let secrets = store::sign_in_secrets(&consents.flow_keys, flow).map_err(|e| {
        tracing::warn!(error = %e, kind = ?flow.kind, "a sign-in's stored secrets cannot be used");
        Problem::new(Code::LinkExpired, format!("{} {again}", e.on_the_page()))
    })?;
    let expected = flow
        .expected_tenant
        .as_deref()
        .and_then(|t| Uuid::parse_str(t).ok());
    // At `organizations`, like the sign-in itself: no tenant a caller named is asked anything.
    let tokens = microsoft
        .redeem_sign_in(code, &secrets.pkce_verifier, scopes)
        .await
        .map_err(|e| e.problem())?;
    // Checklist 10: nothing from the answer is used before its id_token is validated.
    let Some(id_token) = &tokens.id_token else {
        return Err(Problem::new(
            Code::Unknown,
            format!(
                "Microsoft's answer had no id_token, so the user could not be identified. {again}"
            ),
        ));
    };
    // Any organisation's issuer, exactly for the token's own tenant; then that tenant must be
    // the client's (checklist 12, 23).
    let claims = microsoft
        .validate_id_token(id_token, &ExpectedTenant::AnyOrganization, &secrets.nonce)
        .await
        .map_err(|e| untrusted(flow, &e, again))?;
    if let Some(expected) = expected
        && expected != claims.tenant_id
    {
        tracing::warn!(kind = ?flow.kind, "a sign-in came from another tenant than the client's");
        return Err(Problem::new(
            Code::WrongTenant,
            format!(
                "The account that signed in belongs to tenant {}, not to the client's tenant \
                 {expected}. Sign in with an account of the client's own tenant. {again}",
                claims.tenant_id
            ),
        ));
    }
    if expected.is_none()
        && let Some(domain) = client.domain.as_deref()
    {
        owns_domain(microsoft, &tokens, &claims, domain, again).await?;
    }
    Ok(SignedIn {
        microsoft,
        tokens,
        claims,
    })
}

/// A sign-in to a client known only by its domain: the tenant the id_token names must be
/// the one the access token reads, and own the domain.
async fn owns_domain(
    microsoft: &Microsoft,
    tokens: &TokenSet,
    claims: &IdTokenClaims,
    domain: &str,
    again: &str,
) -> Result<(), Problem> {
    let organization = microsoft
        .organization(&tokens.access_token)
        .await
        .map_err(|e| e.problem())?;
    if Uuid::parse_str(&organization.id).ok() != Some(claims.tenant_id) {
        return Err(Problem::new(
            Code::WrongTenant,
            format!("Microsoft's answers named two different tenants. {again}"),
        ));
    }
    if organization
        .verified_domains
        .iter()
        .any(|d| d.name.eq_ignore_ascii_case(domain))
    {
        return Ok(());
    }
    Err(Problem::new(
        Code::WrongTenant,
        format!(
            "The account that signed in belongs to {}, which does not own the client's domain \
             {domain}. Sign in with an account of the client's own tenant.",
            organization
                .display_name
                .as_deref()
                .unwrap_or("another tenant")
        ),
    ))
}

/// The problem of a sign-in whose id_token was rejected.
fn untrusted(flow: &oauth_flow::Model, error: &IdTokenError, again: &str) -> Problem {
    tracing::warn!(%error, kind = ?flow.kind, "a sign-in's id_token was rejected");
    let code = if matches!(error, IdTokenError::Tenant | IdTokenError::Issuer) {
        Code::WrongTenant
    } else {
        Code::Unknown
    };
    Problem::new(
        code,
        format!(
            "Consentry could not trust this sign-in ({error}). Sign in with an account of the \
             client's own tenant. {again}"
        ),
    )
}
