//! One delegated consent's record: its state machine ([`next`]), its one writer of an end
//! (expiry and revocation), and its reads.

use std::collections::HashMap;

use entity::{
    delegated_consent,
    enums::{AuditAction, DelegatedConsentStatus},
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::json;
use uuid::Uuid;

use crate::db::now;
use crate::domain::access;
use crate::domain::audit::{self, Actor};
use crate::domain::consents::Consents;
use crate::domain::crypto::TokenKeys;
use crate::domain::error::{Error, Result};
use crate::{auth::Viewer, db::begin_write};

pub(crate) fn token_keys(consents: &Consents) -> Result<&TokenKeys> {
    consents.token_keys.as_deref().ok_or_else(|| {
        Error::NotConfigured(
            "Consentry has no key to encrypt stored refresh tokens: set CONSENTRY_TOKEN_KEYS \
             (`k1:` followed by `openssl rand -base64 32`) on every instance, then restart."
                .to_owned(),
        )
    })
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
pub(crate) fn allowing(event: ConsentEvent) -> Vec<DelegatedConsentStatus> {
    use sea_orm::Iterable;
    DelegatedConsentStatus::iter()
        .filter(|status| next(Some(*status), event).is_some())
        .collect()
}

/// Ends a consent (`EXPIRED` or `REVOKED` by `event`, with `reason`), erasing its
/// ciphertext, with its event and audit entry: the one writer of a consent's end. `None`
/// when the consent's status refuses the event (it moved on meanwhile).
pub(crate) async fn end<C: ConnectionTrait>(
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
pub(crate) async fn expire(
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

pub(crate) async fn writable(
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
    Ok(crate::domain::clients::by_client(rows, |row| row.client_id))
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
    use entity::enums::DelegatedConsentStatus;

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
