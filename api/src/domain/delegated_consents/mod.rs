//! Delegated consents (docs/design.md §1): a named client-tenant user grants chosen delegated
//! permissions; Consentry keeps their refresh token encrypted, renews it well before
//! Microsoft's 90-day inactivity limit, and erases it on revocation. Tokens never leave the
//! server: not in GraphQL, logs or errors.

mod permissions;
mod record;
mod refresh;

use chrono::{DateTime, Utc};
use entity::{
    StringList, delegated_consent,
    enums::{AuditAction, OAuthFlowKind},
    oauth_flow,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QuerySelect, SqlErr,
};
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use super::access;
use super::audit::{self, Actor};
use super::consents::Consents;
use super::crypto::{self, TokenKeys};
use super::error::{Error, Result};
use super::flows::store::{self, NewFlow};
use super::graph_api::{self, ConsentLink};
use crate::{
    auth::Viewer,
    db::begin_write,
    microsoft::{TenantHint, id_token::IdTokenClaims},
};

pub use self::record::for_clients;
pub(crate) use self::record::{ConsentEvent, find, next, revoke, token_keys};
pub(crate) use self::{
    permissions::{DelegatedPermission, permissions},
    refresh::{admin_token, keep_alive, rotate_keys, verify},
};

fn names(permissions: &[DelegatedPermission]) -> Vec<String> {
    permissions.iter().map(|p| p.as_str().to_owned()).collect()
}

/// `startDelegatedConsent`: a link for a client-tenant user to grant `chosen` permissions
/// (authorization code, PKCE S256, nonce, `prompt=consent`).
#[tracing::instrument(skip_all, fields(msp = %viewer.msp_id(), client = %client_id))]
pub(crate) async fn start(
    db: &DatabaseConnection,
    consents: &Consents,
    viewer: &Viewer,
    client_id: Uuid,
    chosen: &[DelegatedPermission],
    lifetime_minutes: Option<i64>,
) -> Result<ConsentLink> {
    access::require_writer(viewer)?;
    if chosen.is_empty() {
        return Err(Error::bad_input(
            "permissions",
            "choose at least one permission (see delegatedPermissions)",
        ));
    }
    if let Some(twice) = chosen
        .iter()
        .enumerate()
        .find(|(i, p)| chosen[..*i].contains(p))
        .map(|(_, p)| p)
    {
        return Err(Error::bad_input(
            "permissions",
            format!(
                "{} is listed twice; list each permission once",
                twice.as_str()
            ),
        ));
    }
    let lifetime = graph_api::link_lifetime(lifetime_minutes)?;
    let txn = begin_write(db).await?;
    let view = graph_api::writable_client(&txn, viewer, client_id).await?;
    let microsoft = consents.microsoft()?;
    token_keys(consents)?;

    let (flow, secrets) = store::open(
        &txn,
        &consents.flow_keys,
        NewFlow {
            kind: OAuthFlowKind::DelegatedConsent,
            client: &view.client,
            created_by: &viewer.subject,
            lifetime,
            requested_permissions: Some(names(chosen)),
            service_principal_request_id: None,
        },
    )
    .await?;
    audit::record(
        &txn,
        &Actor::from(viewer),
        &view.client.msp_id,
        Some(client_id),
        AuditAction::DelegatedConsentStarted,
        json!({ "flowId": flow.id, "permissions": names(chosen), "expiresAt": flow.expires_at }),
    )
    .await?;
    txn.commit().await?;

    let config = microsoft.config();
    let scopes = config.delegated_sign_in_scopes(chosen.iter().map(|p| p.scope(config)));
    let hint = TenantHint::for_client(view.client.azure_tenant_id, view.client.domain.as_deref());
    let url = microsoft.authorize_url(&hint, &scopes, &secrets, Some("consent"));
    tracing::info!(flow = %flow.id, "delegated consent link created");
    Ok(ConsentLink {
        url,
        expires_at: flow.expires_at,
        view,
    })
}

/// What a consent callback established, before it is stored.
pub(crate) struct Granted {
    pub(crate) claims: IdTokenClaims,
    pub(crate) refresh_token: SecretString,
    pub(crate) granted: Vec<DelegatedPermission>,
    pub(crate) missing: Vec<DelegatedPermission>,
}

impl Granted {
    /// The user who consented, by their sign-in name (else their subject).
    pub(crate) fn user_principal_name(&self) -> String {
        self.claims
            .preferred_username
            .clone()
            .unwrap_or_else(|| self.claims.subject.clone())
    }
}

/// Stores what a consent flow granted, with its event and audit entry, in the transaction
/// that finished the flow.
pub(crate) async fn grant<C: ConnectionTrait>(
    txn: &C,
    consents: &Consents,
    flow: &oauth_flow::Model,
    granted: &Granted,
    now: DateTime<Utc>,
) -> Result<delegated_consent::Model> {
    let keys = token_keys(consents)?;
    let consent = upsert(txn, consents, keys, flow, granted, now).await?;
    audit::record(
        txn,
        &Actor::callback(&flow.msp_id),
        &flow.msp_id,
        Some(flow.client_id),
        AuditAction::DelegatedConsentGranted,
        json!({
            "consentId": consent.id,
            "user": consent.user_principal_name,
            "userObjectId": consent.user_object_id,
            "permissions": consent.permissions.0,
            "missingPermissions": consent.missing_permissions.0,
            "flowId": flow.id,
        }),
    )
    .await?;
    Ok(consent)
}

/// One consent per (client, user): consenting again updates it.
async fn upsert<C: ConnectionTrait>(
    txn: &C,
    consents: &Consents,
    keys: &TokenKeys,
    flow: &oauth_flow::Model,
    granted: &Granted,
    now: DateTime<Utc>,
) -> Result<delegated_consent::Model> {
    let user_object_id = granted
        .claims
        .object_id
        .clone()
        .unwrap_or_else(|| granted.claims.subject.clone());
    let tenant = granted.claims.tenant_id.to_string();
    let existing = delegated_consent::Entity::find()
        .filter(delegated_consent::Column::ClientId.eq(flow.client_id))
        .filter(delegated_consent::Column::UserObjectId.eq(user_object_id.clone()))
        .lock_exclusive()
        .one(txn)
        .await?;
    let id = existing.as_ref().map_or_else(Uuid::new_v4, |c| c.id);
    let Some(status) = next(existing.as_ref().map(|c| c.status), ConsentEvent::Granted) else {
        return Err(Error::Internal(anyhow::anyhow!(
            "a consent refused to be granted again"
        )));
    };
    let (kid, sealed) = keys.encrypt(
        &granted.refresh_token,
        &crypto::refresh_token_aad(&flow.msp_id, &tenant, id),
    );
    let model = delegated_consent::Model {
        id,
        msp_id: flow.msp_id.clone(),
        client_id: flow.client_id,
        tenant_id: tenant,
        user_object_id,
        user_principal_name: granted.user_principal_name(),
        display_name: granted.claims.name.clone(),
        permissions: StringList(names(&granted.granted)),
        missing_permissions: StringList(names(&granted.missing)),
        status,
        status_reason: None,
        refresh_token: Some(sealed),
        refresh_token_key_id: Some(kid),
        granted_at: now,
        last_refreshed_at: Some(now),
        next_refresh_at: Some(consents.next_keepalive(now)),
        granted_by: flow.created_by.clone(),
        created_at: existing.as_ref().map_or(now, |c| c.created_at),
        updated_at: now,
        id_token_issuer: Some(granted.claims.issuer.clone()),
        id_token_subject: Some(granted.claims.subject.clone()),
        refreshing_until: None,
    };
    crate::events::consent(txn, &model).await?;
    let active = delegated_consent::ActiveModel::from(model.clone());
    if existing.is_some() {
        active.reset_all().update(txn).await?;
    } else {
        let inserted = delegated_consent::Entity::insert(active)
            .exec_without_returning(txn)
            .await;
        if let Err(error) = inserted {
            return Err(match error.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => Error::Conflict {
                    field: "userObjectId".to_owned(),
                    message:
                        "this user consented twice at the same moment; the other consent was kept"
                            .to_owned(),
                },
                _ => error.into(),
            });
        }
    }
    Ok(model)
}
