//! Delegated consents (docs/design.md §1): a named client-tenant user grants chosen delegated
//! permissions; Consentry keeps their refresh token encrypted, renews it well before
//! Microsoft's 90-day inactivity limit, and erases it on revocation. Tokens never leave the
//! server: not in GraphQL, logs or errors.

mod permissions;
mod refresh;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use entity::{
    StringList, delegated_consent,
    enums::{AuditAction, DelegatedConsentStatus, OAuthFlowKind},
    oauth_flow,
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
    sea_query::Expr,
};
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use super::{
    Consents, Error, Result, access,
    audit::{self, Actor},
    crypto::{self, TokenKeys},
    flows::{self, NewFlow},
    graph_api::{self, ConsentLink},
    now,
};
use crate::{
    auth::Viewer,
    db::begin_write,
    microsoft::{
        Microsoft, MicrosoftConfig, TenantHint,
        id_token::IdTokenClaims,
        known::{AZURE_APP_ID, AZURE_USER_IMPERSONATION_SCOPE, GRAPH_APP_ID},
    },
};

pub(crate) use self::{
    permissions::{DelegatedPermission, permissions},
    refresh::{admin_token, keep_alive, rotate_keys, verify},
};

fn names(permissions: &[DelegatedPermission]) -> Vec<String> {
    permissions.iter().map(|p| p.as_str().to_owned()).collect()
}

fn token_keys(consents: &Consents) -> Result<&TokenKeys> {
    consents.token_keys.as_deref().ok_or_else(|| {
        Error::NotConfigured(
            "Consentry has no key to encrypt stored refresh tokens: set CONSENTRY_TOKEN_KEYS \
             (`k1:` followed by `openssl rand -base64 32`) on every instance, then restart."
                .to_owned(),
        )
    })
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

    let (flow, secrets) = flows::open(
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

/// What can happen to a delegated consent. [`next`] says what each does from each status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConsentEvent {
    /// The user consented (again): the consent is active with their newest refresh token.
    Granted,
    /// A refresh renewed the stored refresh token.
    Renewed,
    /// Microsoft refused the stored refresh token, or its refreshed identity differs.
    Refused,
    /// An MSP's technician revoked it.
    Revoked,
}

/// The delegated consent's state machine: the status `event` moves a consent in `status`
/// (`None`: there is none yet) to, or `None` when the event is refused.
pub(crate) fn next(
    status: Option<DelegatedConsentStatus>,
    event: ConsentEvent,
) -> Option<DelegatedConsentStatus> {
    use DelegatedConsentStatus::*;
    match event {
        // Consenting again revives an expired or revoked consent.
        ConsentEvent::Granted => Some(Active),
        ConsentEvent::Renewed => (status == Some(Active)).then_some(Active),
        ConsentEvent::Refused => (status == Some(Active)).then_some(Expired),
        // Revoking again says again who revoked it.
        ConsentEvent::Revoked => status.map(|_| Revoked),
    }
}

/// The statuses from which `event` is allowed, for a conditional UPDATE.
fn allowing(event: ConsentEvent) -> Vec<DelegatedConsentStatus> {
    use sea_orm::Iterable;
    DelegatedConsentStatus::iter()
        .filter(|status| next(Some(*status), event).is_some())
        .collect()
}

/// Ends a consent (`EXPIRED` or `REVOKED` by `event`, with `reason`), erasing its
/// ciphertext, with its event and audit entry: the one writer of a consent's end. `None`
/// when the consent's status refuses the event (it moved on meanwhile).
async fn end<C: ConnectionTrait>(
    txn: &C,
    id: Uuid,
    event: ConsentEvent,
    reason: &str,
    actor: &Actor,
    audit_action: AuditAction,
) -> Result<Option<delegated_consent::Model>> {
    let Some(current) = delegated_consent::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    let Some(status) = next(Some(current.status), event) else {
        return Ok(None);
    };
    let mut active: delegated_consent::ActiveModel = current.clone().into();
    active.status = Set(status);
    active.status_reason = Set(Some(reason.to_owned()));
    active.refresh_token = Set(None);
    active.refresh_token_key_id = Set(None);
    active.next_refresh_at = Set(None);
    active.refreshing_until = Set(None);
    active.updated_at = Set(now());
    let ended = active.update(txn).await?;
    crate::events::consent(txn, &ended).await?;
    audit::record(
        txn,
        actor,
        &current.msp_id,
        Some(current.client_id),
        audit_action,
        json!({
            "consentId": id,
            "user": current.user_principal_name,
            "reason": reason,
            "was": format!("{:?}", current.status),
        }),
    )
    .await?;
    Ok(Some(ended))
}

/// The consent no longer works: `EXPIRED` with the reason, its ciphertext erased.
async fn expire(
    db: &DatabaseConnection,
    consent: &delegated_consent::Model,
    reason: &str,
    actor: &Actor,
) -> Result<()> {
    let txn = begin_write(db).await?;
    let event = ConsentEvent::Refused;
    let action = AuditAction::DelegatedConsentExpired;
    if end(&txn, consent.id, event, reason, actor, action)
        .await?
        .is_some()
    {
        tracing::warn!(consent = %consent.id, "a delegated consent expired");
    }
    txn.commit().await?;
    Ok(())
}

/// `revokeDelegatedConsent`: `REVOKED`, ciphertext erased, audited.
#[tracing::instrument(skip_all, fields(msp = %viewer.msp_id(), consent = %id))]
pub(crate) async fn revoke(
    db: &DatabaseConnection,
    consents: &Consents,
    viewer: &Viewer,
    id: Uuid,
) -> Result<delegated_consent::Model> {
    access::require_writer(viewer)?;
    writable(db, viewer, id).await?;
    let txn = begin_write(db).await?;
    let reason = format!("revoked by {}", viewer.subject);
    let event = ConsentEvent::Revoked;
    let action = AuditAction::DelegatedConsentRevoked;
    end(&txn, id, event, &reason, &Actor::from(viewer), action).await?;
    txn.commit().await?;
    // Checklist 82: an access token taken from this consent (a repair waiting for
    // replication) is forgotten with it.
    consents.sign_in_tokens.forget_consent(id);
    tracing::info!("delegated consent revoked");
    find(db, id)
        .await?
        .ok_or_else(|| Error::not_found("delegated consent", id.to_string()))
}

async fn writable(
    db: &DatabaseConnection,
    viewer: &Viewer,
    id: Uuid,
) -> Result<delegated_consent::Model> {
    let Some(consent) = find(db, id).await? else {
        return Err(Error::not_found("delegated consent", id.to_string()));
    };
    access::require_writable(
        viewer,
        &consent.msp_id,
        "delegated consent",
        &id.to_string(),
    )?;
    Ok(consent)
}

/// The consents of several clients at once, each client's newest first.
pub async fn for_clients<C: ConnectionTrait>(
    db: &C,
    client_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<delegated_consent::Model>>, DbErr> {
    let rows = delegated_consent::Entity::find()
        .filter(delegated_consent::Column::ClientId.is_in(client_ids.iter().copied()))
        .order_by_desc(delegated_consent::Column::GrantedAt)
        .order_by_asc(delegated_consent::Column::Id)
        .all(db)
        .await?;
    Ok(super::clients::by_client(rows, |row| row.client_id))
}

/// One consent by id, whoever owns it (callers check sight).
pub(crate) async fn find<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Option<delegated_consent::Model>, DbErr> {
    delegated_consent::Entity::find_by_id(id).one(db).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: every (status, event) pair of a delegated consent, the refused ones and a
    /// consent that does not exist yet included.
    #[test]
    fn every_status_answers_every_event_as_the_table_says() {
        use DelegatedConsentStatus::*;
        use sea_orm::Iterable;
        let statuses = [None, Some(Active), Some(Expired), Some(Revoked)];
        assert_eq!(statuses.len(), DelegatedConsentStatus::iter().count() + 1);
        const N: Option<DelegatedConsentStatus> = None;
        // Columns as `statuses`; a match, so that a new event cannot compile without its row.
        let expected = |event| match event {
            ConsentEvent::Granted => [Some(Active); 4],
            ConsentEvent::Renewed => [N, Some(Active), N, N],
            ConsentEvent::Refused => [N, Some(Expired), N, N],
            ConsentEvent::Revoked => [N, Some(Revoked), Some(Revoked), Some(Revoked)],
        };
        let events = [
            ConsentEvent::Granted,
            ConsentEvent::Renewed,
            ConsentEvent::Refused,
            ConsentEvent::Revoked,
        ];
        for event in events {
            for (status, want) in statuses.into_iter().zip(expected(event)) {
                assert_eq!(next(status, event), want, "{status:?} on {event:?}");
            }
        }
        assert_eq!(allowing(ConsentEvent::Renewed), vec![Active]);
    }
}
