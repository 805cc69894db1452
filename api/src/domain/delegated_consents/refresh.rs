//! Keeping a delegated consent alive: each refresh is claimed by one instance (checklist 93),
//! renews the stored refresh token in the same statement that releases the claim
//! (checklist 79), and expires the consent when Microsoft refuses it; `verifyDelegatedConsent`
//! is a refresh asked for now. A repair may borrow a stored admin consent's token.

use super::record::{ConsentEvent, allowing, expire, find, token_keys, writable};
use crate::auth::Viewer;
use crate::db::{begin_write, now};
use crate::domain::access;
use crate::domain::audit::{self, Actor};
use crate::domain::consents::Consents;
use crate::domain::crypto::{self, TokenKeys};
use crate::domain::delegated_consents::permissions::{DelegatedPermission, permissions};
use crate::domain::error::{Error, Result};
use crate::microsoft::Microsoft;
use crate::microsoft::id_token::IdTokenClaims;
use chrono::{DateTime, Duration, Utc};
use entity::delegated_consent;
use entity::enums::{AuditAction, DelegatedConsentStatus};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

/// How long one refresh may hold a consent before another may take over.
pub(super) const REFRESH_LEASE: Duration = Duration::minutes(2);
/// A keep-alive that could not reach Microsoft is tried again after this.
pub(super) const RETRY_AFTER_FAILURE: Duration = Duration::minutes(30);

/// Claims a consent for one refresh (checklist 93): a conditional UPDATE, so of several
/// instances or requests one refreshes and the rest wait for it. Returns the row as it is
/// once claimed — with the refresh token the previous refresh stored, never an older copy.
pub(super) async fn claim(
    db: &DatabaseConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<delegated_consent::Model>> {
    let claimed = delegated_consent::Entity::update_many()
        .col_expr(
            delegated_consent::Column::RefreshingUntil,
            Expr::value(now + REFRESH_LEASE),
        )
        .filter(delegated_consent::Column::Id.eq(id))
        .filter(delegated_consent::Column::Status.eq(DelegatedConsentStatus::Active))
        .filter(
            Condition::any()
                .add(delegated_consent::Column::RefreshingUntil.is_null())
                .add(delegated_consent::Column::RefreshingUntil.lt(now)),
        )
        .exec(db)
        .await?;
    if claimed.rows_affected != 1 {
        return Ok(None);
    }
    Ok(find(db, id).await?)
}

/// What a refresh achieved.
pub(super) enum Refreshed {
    /// A working access token for `scopes`; the rotated refresh token is stored.
    Ok(SecretString),
    /// Microsoft refused the refresh token: the consent is now `EXPIRED`.
    Expired,
    /// Microsoft could not be asked; nothing changed.
    Unavailable(String),
}

/// Refreshes a claimed consent for `scopes`, stores the rotated refresh token in the same
/// UPDATE that releases the claim, and expires the consent on `invalid_grant`.
pub(super) async fn refresh(
    db: &DatabaseConnection,
    consents: &Consents,
    consent: &delegated_consent::Model,
    scopes: &[String],
    actor: &Actor,
) -> Result<Refreshed> {
    let microsoft = consents.microsoft()?;
    let keys = token_keys(consents)?;
    let aad = crypto::refresh_token_aad(&consent.msp_id, &consent.tenant_id, consent.id);
    let (Some(sealed), Some(kid)) = (&consent.refresh_token, &consent.refresh_token_key_id) else {
        return Ok(Refreshed::Expired);
    };
    let token = keys
        .decrypt(kid, sealed, &aad)
        .map_err(|e| Error::Internal(e.into()))?;
    let now = now();
    let result = microsoft.refresh(&consent.tenant_id, &token, scopes).await;
    let tokens = match result {
        Ok(tokens) => tokens,
        // An outage, a garbled answer or our own credentials: the token is not at fault.
        Err(error) if !error.is_refusal() => {
            release(db, consent.id, Some(now + RETRY_AFTER_FAILURE)).await?;
            return Ok(Refreshed::Unavailable(error.to_string()));
        }
        Err(error) => {
            let problem = error.problem();
            let reason = format!(
                "Microsoft refused the stored sign-in{}: {} Ask the user to consent again.",
                problem
                    .aadsts
                    .map(|c| format!(" (AADSTS{c})"))
                    .unwrap_or_default(),
                problem.message.clone().unwrap_or_default()
            );
            expire(db, consent, &reason, actor).await?;
            return Ok(Refreshed::Expired);
        }
    };
    if let Some(id_token) = &tokens.id_token {
        let original = IdTokenClaims {
            tenant_id: Uuid::parse_str(&consent.tenant_id).unwrap_or_default(),
            object_id: Some(consent.user_object_id.clone()),
            subject: consent.id_token_subject.clone().unwrap_or_default(),
            preferred_username: None,
            name: None,
            issuer: consent.id_token_issuer.clone().unwrap_or_default(),
            directory_roles: None,
        };
        if let Err(error) = microsoft
            .validate_refreshed_id_token(id_token, &original)
            .await
        {
            // Checklist 28: a refreshed identity that differs is rejected and flagged.
            expire(db, consent, &format!("Microsoft's refreshed sign-in did not match the original ({error}). Ask the user to consent again."), actor).await?;
            return Ok(Refreshed::Expired);
        }
    }
    let rotated = tokens.refresh_token.as_ref();
    renewed(db, consents, keys, consent, rotated, now).await?;
    Ok(Refreshed::Ok(tokens.access_token))
}

/// Stores a renewal: when it happened and is next due, the rotated refresh token in the
/// same UPDATE that releases the claim, and its event, in one transaction.
pub(super) async fn renewed(
    db: &DatabaseConnection,
    consents: &Consents,
    keys: &TokenKeys,
    consent: &delegated_consent::Model,
    rotated: Option<&SecretString>,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut update = delegated_consent::Entity::update_many()
        .col_expr(delegated_consent::Column::LastRefreshedAt, Expr::value(now))
        .col_expr(
            delegated_consent::Column::NextRefreshAt,
            Expr::value(consents.next_keepalive(now)),
        )
        .col_expr(
            delegated_consent::Column::RefreshingUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(delegated_consent::Column::UpdatedAt, Expr::value(now));
    if let Some(rotated) = rotated {
        // Checklist 79: the new token replaces the old one in one statement.
        let (kid, sealed) = keys.encrypt(
            rotated,
            &crypto::refresh_token_aad(&consent.msp_id, &consent.tenant_id, consent.id),
        );
        update = update
            .col_expr(delegated_consent::Column::RefreshToken, Expr::value(sealed))
            .col_expr(
                delegated_consent::Column::RefreshTokenKeyId,
                Expr::value(kid),
            );
    }
    // The renewal and its event in one transaction.
    let txn = begin_write(db).await?;
    update
        .filter(delegated_consent::Column::Id.eq(consent.id))
        .filter(delegated_consent::Column::Status.is_in(allowing(ConsentEvent::Renewed)))
        .exec(&txn)
        .await?;
    if let Some(renewed) = find(&txn, consent.id).await? {
        crate::events::consent(&txn, &renewed).await?;
    }
    txn.commit().await?;
    Ok(())
}

pub(super) async fn release(
    db: &DatabaseConnection,
    id: Uuid,
    next: Option<DateTime<Utc>>,
) -> Result<()> {
    let mut update = delegated_consent::Entity::update_many().col_expr(
        delegated_consent::Column::RefreshingUntil,
        Expr::value(Option::<DateTime<Utc>>::None),
    );
    if let Some(next) = next {
        update = update.col_expr(delegated_consent::Column::NextRefreshAt, Expr::value(next));
    }
    update
        .filter(delegated_consent::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// The Graph scopes a consent's refresh asks for: `User.Read` and its granted Graph
/// permissions.
pub(super) fn graph_scopes(
    microsoft: &Microsoft,
    consent: &delegated_consent::Model,
) -> Vec<String> {
    let config = microsoft.config();
    let mut scopes = vec![config.graph_scope("User.Read")];
    scopes.extend(
        permissions(&consent.permissions.0)
            .into_iter()
            .filter(|p| p.is_graph())
            .map(|p| p.scope(config)),
    );
    scopes
}

/// Waits for a refresh someone else is running to finish, then reads the consent.
pub(super) async fn wait_for_refresh(
    db: &DatabaseConnection,
    id: Uuid,
) -> Result<delegated_consent::Model> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let current = find(db, id)
            .await?
            .ok_or_else(|| Error::not_found("delegated consent", id.to_string()))?;
        let busy = current.refreshing_until.is_some_and(|until| until > now());
        if !busy || tokio::time::Instant::now() >= deadline {
            return Ok(current);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `verifyDelegatedConsent`: refresh now and read `GET /me`.
#[tracing::instrument(skip_all, fields(msp = %viewer.msp_id(), consent = %id))]
pub(crate) async fn verify(
    db: &DatabaseConnection,
    consents: &Consents,
    viewer: &Viewer,
    id: Uuid,
) -> Result<delegated_consent::Model> {
    access::require_writer(viewer)?;
    let consent = writable(db, viewer, id).await?;
    let microsoft = consents.microsoft()?;
    token_keys(consents)?;
    if consent.status != DelegatedConsentStatus::Active {
        return Ok(consent);
    }
    let Some(consent) = claim(db, id, now()).await? else {
        // Another refresh is running (checklist 93): its result is ours.
        return wait_for_refresh(db, id).await;
    };
    let actor = Actor::from(viewer);
    match refresh(
        db,
        consents,
        &consent,
        &graph_scopes(microsoft, &consent),
        &actor,
    )
    .await?
    {
        Refreshed::Ok(access) => {
            let me = microsoft.me(&access).await;
            let txn = begin_write(db).await?;
            if let Ok(me) = &me
                && let Some(upn) = &me.user_principal_name
            {
                delegated_consent::Entity::update_many()
                    .col_expr(
                        delegated_consent::Column::UserPrincipalName,
                        Expr::value(upn.clone()),
                    )
                    .col_expr(
                        delegated_consent::Column::DisplayName,
                        Expr::value(me.display_name.clone()),
                    )
                    .filter(delegated_consent::Column::Id.eq(id))
                    .exec(&txn)
                    .await?;
            }
            if let Some(current) = find(&txn, id).await? {
                crate::events::consent(&txn, &current).await?;
            }
            audit::record(
                &txn,
                &actor,
                &consent.msp_id,
                Some(consent.client_id),
                AuditAction::DelegatedConsentVerified,
                json!({ "consentId": id, "me": me.is_ok() }),
            )
            .await?;
            txn.commit().await?;
        }
        Refreshed::Expired => {}
        Refreshed::Unavailable(reason) => {
            return Err(Error::MicrosoftUnavailable(format!(
                "Microsoft could not be asked ({reason}); the consent is unchanged, try again shortly"
            )));
        }
    }
    find(db, id)
        .await?
        .ok_or_else(|| Error::not_found("delegated consent", id.to_string()))
}

/// The keep-alive sweep: refreshes every active consent that is due, well before
/// Microsoft's 90-day inactivity limit.
pub(crate) async fn keep_alive(db: &DatabaseConnection, consents: &Consents) -> Result<usize> {
    let (Some(microsoft), Some(_)) = (
        consents.microsoft.as_deref(),
        consents.token_keys.as_deref(),
    ) else {
        return Ok(0);
    };
    let now = now();
    let due = delegated_consent::Entity::find()
        .filter(delegated_consent::Column::Status.eq(DelegatedConsentStatus::Active))
        .filter(delegated_consent::Column::NextRefreshAt.lte(now))
        .order_by_asc(delegated_consent::Column::NextRefreshAt)
        .limit(50)
        .all(db)
        .await?;
    let mut refreshed = 0;
    for due in due {
        let Some(consent) = claim(db, due.id, now).await? else {
            continue;
        };
        let actor = Actor::system(&consent.msp_id);
        match refresh(
            db,
            consents,
            &consent,
            &graph_scopes(microsoft, &consent),
            &actor,
        )
        .await
        {
            Ok(Refreshed::Ok(_)) => refreshed += 1,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(consent = %consent.id, %error, "keep-alive failed");
                release(db, consent.id, Some(now + RETRY_AFTER_FAILURE)).await?;
            }
        }
    }
    Ok(refreshed)
}

/// A stored consent's Graph token that can act as an admin of the client's tenant, with
/// whose it is: nobody signs in when it is used, so the audit trail names its user.
#[derive(Debug)]
pub(crate) struct AdminToken {
    pub token: SecretString,
    pub tenant: Uuid,
    pub consent_id: Uuid,
    pub user_principal_name: String,
    pub user_object_id: String,
}

/// A Graph token that can act as an admin of the client's tenant, from an active consent
/// holding `Directory.AccessAsUser.All` (service principal repair without a sign-in).
pub(crate) async fn admin_token(
    db: &DatabaseConnection,
    consents: &Consents,
    client_id: Uuid,
) -> Result<Option<AdminToken>> {
    let (Some(microsoft), Some(_)) = (
        consents.microsoft.as_deref(),
        consents.token_keys.as_deref(),
    ) else {
        return Ok(None);
    };
    let candidates = delegated_consent::Entity::find()
        .filter(delegated_consent::Column::ClientId.eq(client_id))
        .filter(delegated_consent::Column::Status.eq(DelegatedConsentStatus::Active))
        .order_by_desc(delegated_consent::Column::GrantedAt)
        .all(db)
        .await?;
    for consent in candidates {
        if !permissions(&consent.permissions.0)
            .contains(&DelegatedPermission::DirectoryAccessAsUserAll)
        {
            continue;
        }
        let Ok(tenant) = Uuid::parse_str(&consent.tenant_id) else {
            continue;
        };
        let consent = match claim(db, consent.id, now()).await? {
            Some(claimed) => claimed,
            None => {
                wait_for_refresh(db, consent.id).await?;
                let Some(claimed) = claim(db, consent.id, now()).await? else {
                    continue;
                };
                claimed
            }
        };
        let scopes = vec![microsoft.config().graph_scope("Directory.AccessAsUser.All")];
        if let Refreshed::Ok(token) = refresh(
            db,
            consents,
            &consent,
            &scopes,
            &Actor::system(&consent.msp_id),
        )
        .await?
        {
            return Ok(Some(AdminToken {
                token,
                tenant,
                consent_id: consent.id,
                user_principal_name: consent.user_principal_name,
                user_object_id: consent.user_object_id,
            }));
        }
    }
    Ok(None)
}

/// `consentry rotate-keys`: re-encrypts every stored refresh token under the first key.
/// Returns (re-encrypted, already current). Each row is swapped with a compare-and-set, so a
/// refresh running meanwhile is never overwritten.
pub(crate) async fn rotate_keys(db: &DatabaseConnection, keys: &TokenKeys) -> Result<(u64, u64)> {
    let rows = delegated_consent::Entity::find()
        .filter(delegated_consent::Column::RefreshToken.is_not_null())
        .all(db)
        .await?;
    let (mut rotated, mut current) = (0, 0);
    for consent in rows {
        let (Some(sealed), Some(kid)) = (&consent.refresh_token, &consent.refresh_token_key_id)
        else {
            continue;
        };
        if kid == keys.current() {
            current += 1;
            continue;
        }
        let aad = crypto::refresh_token_aad(&consent.msp_id, &consent.tenant_id, consent.id);
        let token = keys
            .decrypt(kid, sealed, &aad)
            .map_err(|e| Error::Internal(anyhow::anyhow!("consent {}: {e}", consent.id)))?;
        let (new_kid, resealed) = keys.encrypt(&token, &aad);
        let swapped = delegated_consent::Entity::update_many()
            .col_expr(
                delegated_consent::Column::RefreshToken,
                Expr::value(resealed),
            )
            .col_expr(
                delegated_consent::Column::RefreshTokenKeyId,
                Expr::value(new_kid),
            )
            .filter(delegated_consent::Column::Id.eq(consent.id))
            .filter(delegated_consent::Column::RefreshTokenKeyId.eq(kid.clone()))
            .filter(delegated_consent::Column::RefreshToken.eq(sealed.clone()))
            .exec(db)
            .await?;
        rotated += swapped.rows_affected;
    }
    Ok((rotated, current))
}
