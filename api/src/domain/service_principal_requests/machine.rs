//! The repair request's state machine ([`next`]) and its one writer ([`step`]): every change
//! of a request is written with its audit entry and its event, and only when its status
//! allows it.

use crate::db::{begin_write, now};
use crate::domain::audit::{self, Actor};
use crate::domain::error::Result;
use crate::domain::graph_api;
use crate::domain::tile::problem_code_name;
use crate::microsoft::Problem;
use entity::enums::{AuditAction, ServicePrincipalRequestStatus as Status};
use entity::service_principal_request;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QuerySelect,
};
use serde_json::json;
use uuid::Uuid;

/// Ends a request as ready (or already existing) and tells the tile: "created — authorise
/// again".
pub(super) async fn finish_ready(
    db: &DatabaseConnection,
    request_id: Uuid,
    event: RequestEvent,
    object_id: Option<String>,
    note: Option<&str>,
    actor: &Actor,
) -> Result<()> {
    let txn = begin_write(db).await?;
    let now = now();
    let Some(request) = step(&txn, request_id, event, actor, json!({}), |r| {
        if object_id.is_some() {
            r.graph_object_id = Set(object_id.clone());
        }
        r.problem_message = Set(note.map(str::to_owned));
        r.completed_at = Set(Some(now));
        r.next_attempt_at = Set(None);
        r.claimed_until = Set(None);
    })
    .await?
    else {
        return Ok(());
    };
    graph_api::service_principal_ready(&txn, &request, actor).await?;
    txn.commit().await?;
    tracing::info!(request = %request.id, status = ?request.status, "service principal ready");
    Ok(())
}

/// Ends a request as failed, with its problem. False when it had already ended.
pub(crate) async fn fail<C: ConnectionTrait>(
    txn: &C,
    request: &service_principal_request::Model,
    problem: &Problem,
    actor: &Actor,
) -> Result<bool> {
    let now = now();
    Ok(step(
        txn,
        request.id,
        RequestEvent::Failed,
        actor,
        json!({}),
        |r| {
            r.problem_code = Set(Some(problem_code_name(problem.code)));
            r.problem_message = Set(problem.message.clone());
            r.problem_remediation = Set(Some(problem.remediation.clone()));
            r.completed_at = Set(Some(now));
            r.next_attempt_at = Set(None);
            r.claimed_until = Set(None);
        },
    )
    .await?
    .is_some())
}

/// What can happen to a repair request. [`next`] says what each does from each status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestEvent {
    /// An admin signed in, or a stored consent can act: creating starts.
    Acting,
    /// Microsoft created the principal: it must now replicate.
    Created,
    /// The principal was there already.
    Found,
    /// Every replica sees the principal (or the wait is over).
    Replicated,
    /// The repair failed.
    Failed,
}

/// The repair request's state machine: the status `event` moves a request in `status` to,
/// or `None` when the event is refused (the request moved on meanwhile).
pub(crate) fn next(status: Status, event: RequestEvent) -> Option<Status> {
    use Status::*;
    let to = match event {
        RequestEvent::Acting if status == PendingSignIn => Creating,
        RequestEvent::Created if status == Creating => Propagating,
        RequestEvent::Found if matches!(status, Creating | Propagating) => AlreadyExists,
        RequestEvent::Replicated if matches!(status, Creating | Propagating) => Ready,
        RequestEvent::Failed if matches!(status, PendingSignIn | Creating | Propagating) => Failed,
        _ => return None,
    };
    Some(to)
}

/// Moves a request on by `event` if its status allows it ([`next`]), with its audit entry
/// (`details` and the step) and its event: the one writer of a request's changes.
pub(super) async fn step<C: ConnectionTrait>(
    db: &C,
    request_id: Uuid,
    event: RequestEvent,
    actor: &Actor,
    details: serde_json::Value,
    change: impl FnOnce(&mut service_principal_request::ActiveModel),
) -> Result<Option<service_principal_request::Model>> {
    let Some(current) = service_principal_request::Entity::find_by_id(request_id)
        .lock_exclusive()
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let Some(to) = next(current.status, event) else {
        return Ok(None);
    };
    let mut active: service_principal_request::ActiveModel = current.clone().into();
    active.status = Set(to);
    change(&mut active);
    active.updated_at = Set(now());
    let updated = active.update(db).await?;
    record(db, &updated, actor, Some(current.status), details).await?;
    crate::events::request(db, &updated).await?;
    Ok(Some(updated))
}

pub(super) async fn record<C: ConnectionTrait>(
    db: &C,
    request: &service_principal_request::Model,
    actor: &Actor,
    from: Option<Status>,
    mut details: serde_json::Value,
) -> Result<(), DbErr> {
    details["requestId"] = json!(request.id);
    details["appId"] = json!(request.app_id);
    details["from"] = json!(from.map(status_name));
    details["to"] = json!(status_name(request.status));
    if let Some(code) = &request.problem_code {
        details["problem"] = json!(code);
    }
    audit::record(
        db,
        actor,
        &request.msp_id,
        Some(request.client_id),
        AuditAction::ServicePrincipalRequestChanged,
        details,
    )
    .await
}

pub(crate) fn status_name(status: Status) -> &'static str {
    match status {
        Status::PendingSignIn => "PENDING_SIGN_IN",
        Status::Creating => "CREATING",
        Status::AlreadyExists => "ALREADY_EXISTS",
        Status::Propagating => "PROPAGATING",
        Status::Ready => "READY",
        Status::Failed => "FAILED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: every (status, event) pair of a repair request, the refused ones included.
    #[test]
    fn every_status_answers_every_event_as_the_table_says() {
        use Status::*;
        use sea_orm::Iterable;
        let statuses = [
            PendingSignIn,
            Creating,
            Propagating,
            AlreadyExists,
            Ready,
            Failed,
        ];
        assert_eq!(statuses.len(), Status::iter().count());
        const N: Option<Status> = None;
        // What each event does from each status (columns as `statuses`); a match, so that
        // a new event does not compile without its row.
        let expected = |event| match event {
            RequestEvent::Acting => [Some(Creating), N, N, N, N, N],
            RequestEvent::Created => [N, Some(Propagating), N, N, N, N],
            RequestEvent::Found => [N, Some(AlreadyExists), Some(AlreadyExists), N, N, N],
            RequestEvent::Replicated => [N, Some(Ready), Some(Ready), N, N, N],
            RequestEvent::Failed => [Some(Failed), Some(Failed), Some(Failed), N, N, N],
        };
        let events = [
            RequestEvent::Acting,
            RequestEvent::Created,
            RequestEvent::Found,
            RequestEvent::Replicated,
            RequestEvent::Failed,
        ];
        for event in events {
            for (status, want) in statuses.into_iter().zip(expected(event)) {
                assert_eq!(next(status, event), want, "{status:?} on {event:?}");
            }
        }
    }
}
