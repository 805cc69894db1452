//! Watching a new service principal replicate: a job any instance can claim, polled with
//! backoff until every replica sees the principal (or the window is over), then `READY`;
//! creations interrupted by a restart are failed.

use crate::db::{begin_write, now};
use crate::domain::audit::Actor;
use crate::domain::consents::Consents;
use crate::domain::error::Result;
use crate::domain::repairable::not_repairable;
use crate::domain::service_principal_requests::machine::{RequestEvent, fail, finish_ready};
use crate::microsoft::{Microsoft, Problem};
use chrono::{DateTime, Duration, Utc};
use entity::enums::{GraphApiProblemCode, ServicePrincipalRequestStatus as Status};
use entity::service_principal_request;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use secrecy::SecretString;
use uuid::Uuid;

/// How long Consentry watches a new principal replicate before it calls it ready anyway
/// (it was created; replicas catch up).
pub(super) const PROPAGATION_WINDOW: Duration = Duration::minutes(15);
/// Longest pause between two replication lookups.
pub(super) const MAX_POLL_INTERVAL: Duration = Duration::seconds(30);
/// A claimed lookup not finished within this is taken over by another sweep (also after a
/// restart that interrupted one). Lookups are idempotent, so an overlap is harmless.
pub(super) const POLL_LEASE: Duration = Duration::seconds(30);

/// Sweeps: watches new principals replicate, fails interrupted creations. Returns how many
/// requests moved on.
pub(crate) async fn sweep(db: &DatabaseConnection, consents: &Consents) -> Result<usize> {
    forget_tokens_of_ended_requests(db, consents).await?;
    let mut moved = fail_stuck_creations(db, consents.callback_lease).await?;
    let now = now();
    let due = service_principal_request::Entity::find()
        .filter(service_principal_request::Column::Status.eq(Status::Propagating))
        .filter(service_principal_request::Column::NextAttemptAt.lte(now))
        .filter(
            Condition::any()
                .add(service_principal_request::Column::ClaimedUntil.is_null())
                .add(service_principal_request::Column::ClaimedUntil.lt(now)),
        )
        .order_by_asc(service_principal_request::Column::NextAttemptAt)
        .limit(20)
        .all(db)
        .await?;
    for request in due {
        // Made before the allow-list: ended, never watched or finished as a repair
        // (checklist 96). Left due, it would be picked again by every sweep.
        if !consents.repairable_apps.contains(&request.app_id) {
            let txn = begin_write(db).await?;
            let mut problem = not_repairable(&request.app_id);
            problem.remediation.push_str(
                " Its service principal may have been created already: check Enterprise \
                 applications in the client's Entra ID.",
            );
            if fail(&txn, &request, &problem, &Actor::system(&request.msp_id)).await? {
                moved += 1;
            }
            txn.commit().await?;
            continue;
        }
        // Claimed with a conditional UPDATE: of several instances one polls it.
        let claimed = service_principal_request::Entity::update_many()
            .col_expr(
                service_principal_request::Column::ClaimedUntil,
                Expr::value(now + POLL_LEASE),
            )
            .filter(service_principal_request::Column::Id.eq(request.id))
            .filter(service_principal_request::Column::Status.eq(Status::Propagating))
            .filter(
                Condition::any()
                    .add(service_principal_request::Column::ClaimedUntil.is_null())
                    .add(service_principal_request::Column::ClaimedUntil.lt(now)),
            )
            .exec(db)
            .await?;
        if claimed.rows_affected == 1 && poll(db, consents, &request).await? {
            consents.sign_in_tokens.forget(request.id);
            moved += 1;
        }
    }
    Ok(moved)
}

/// Forgets the tokens held for requests that no longer wait for replication: finished, or
/// gone with their client — also when that happened on another instance. (A request is still
/// `CREATING` between its token being kept and its move to `PROPAGATING`.)
pub(super) async fn forget_tokens_of_ended_requests(
    db: &DatabaseConnection,
    consents: &Consents,
) -> Result<()> {
    let held = consents.sign_in_tokens.requests();
    if held.is_empty() {
        return Ok(());
    }
    let waiting: Vec<Uuid> = service_principal_request::Entity::find()
        .select_only()
        .column(service_principal_request::Column::Id)
        .filter(service_principal_request::Column::Id.is_in(held.iter().copied()))
        .filter(
            service_principal_request::Column::Status
                .is_in([Status::Creating, Status::Propagating]),
        )
        .into_tuple()
        .all(db)
        .await?;
    for request in held.into_iter().filter(|id| !waiting.contains(id)) {
        consents.sign_in_tokens.forget(request);
    }
    Ok(())
}

/// One replication lookup. True when the request became `READY`.
pub(super) async fn poll(
    db: &DatabaseConnection,
    consents: &Consents,
    request: &service_principal_request::Model,
) -> Result<bool> {
    let actor = Actor::system(&request.msp_id);
    let now = now();
    let window_over = request
        .propagating_since
        .is_some_and(|since| now - since >= PROPAGATION_WINDOW);
    let Some(microsoft) = consents.microsoft.as_deref() else {
        return Ok(false);
    };
    let Some(token) = watch_token(consents, microsoft, request).await else {
        // Nothing can see the tenant: the principal was created (201), and replicas catch
        // up within minutes. Say so rather than wait blindly.
        finish_ready(
            db,
            request.id,
            RequestEvent::Replicated,
            None,
            Some("Created. Consentry could not watch it replicate (it restarted meanwhile), so allow a few minutes before authorising."),
            &actor,
        )
        .await?;
        return Ok(true);
    };
    match microsoft
        .find_service_principal(&token, &request.app_id)
        .await
    {
        Ok(Some(_)) => {
            finish_ready(db, request.id, RequestEvent::Replicated, None, None, &actor).await?;
            Ok(true)
        }
        Ok(None) if window_over => {
            finish_ready(
                db,
                request.id,
                RequestEvent::Replicated,
                None,
                Some("Created, but not yet visible everywhere after 15 minutes. If Authorise fails with a missing service principal again, wait a few minutes and retry."),
                &actor,
            )
            .await?;
            Ok(true)
        }
        result => {
            if let Err(error) = &result {
                tracing::info!(request = %request.id, %error, "replication lookup failed; retrying");
                if !error.is_transient() {
                    consents.sign_in_tokens.forget(request.id);
                }
            }
            retry_later(db, request, now).await?;
            Ok(false)
        }
    }
}

/// A token that can see the tenant: the admin's, held by this instance, else (another
/// instance signed in, or this one restarted) an app-only token, which works when the tenant
/// has consented to Consentry.
pub(super) async fn watch_token(
    consents: &Consents,
    microsoft: &Microsoft,
    request: &service_principal_request::Model,
) -> Option<SecretString> {
    if let Some(token) = consents.sign_in_tokens.get(request.id) {
        return Some(token);
    }
    let tenant = request.tenant_id.as_deref()?;
    let token = microsoft.app_token(tenant).await.ok()?;
    Some(token.access_token)
}

/// Schedules the next replication lookup, backing off.
pub(super) async fn retry_later(
    db: &DatabaseConnection,
    request: &service_principal_request::Model,
    now: DateTime<Utc>,
) -> Result<()> {
    // Backoff: 1 s, 2 s, 4 s … up to 30 s.
    let attempts = request.attempts.saturating_add(1);
    let wait = Duration::seconds(1_i64 << attempts.clamp(0, 5)).min(MAX_POLL_INTERVAL);
    service_principal_request::Entity::update_many()
        .col_expr(
            service_principal_request::Column::Attempts,
            Expr::value(attempts),
        )
        .col_expr(
            service_principal_request::Column::NextAttemptAt,
            Expr::value(now + wait),
        )
        .col_expr(
            service_principal_request::Column::ClaimedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            service_principal_request::Column::UpdatedAt,
            Expr::value(now),
        )
        .filter(service_principal_request::Column::Id.eq(request.id))
        .filter(service_principal_request::Column::Status.eq(Status::Propagating))
        .exec(db)
        .await?;
    Ok(())
}

/// Requests whose process died between `CREATING` and Graph's answer (still `CREATING`
/// after `lease`): failed, so the user can start again (creation is idempotent: an existing
/// principal reads as `ALREADY_EXISTS`).
pub(super) async fn fail_stuck_creations(
    db: &DatabaseConnection,
    lease: Duration,
) -> Result<usize> {
    let stuck = service_principal_request::Entity::find()
        .filter(service_principal_request::Column::Status.eq(Status::Creating))
        .filter(service_principal_request::Column::UpdatedAt.lte(now() - lease))
        .limit(20)
        .all(db)
        .await?;
    let mut failed = 0;
    for request in stuck {
        let txn = begin_write(db).await?;
        let problem = Problem::new(
            GraphApiProblemCode::Unknown,
            "Consentry was interrupted while creating the service principal. Start the repair again; \
             if it was created meanwhile, the new request finds it.",
        );
        if fail(&txn, &request, &problem, &Actor::system(&request.msp_id)).await? {
            failed += 1;
        }
        txn.commit().await?;
    }
    Ok(failed)
}
