//! The Graph API tile's state machine (docs/design.md §1): what each status offers a frontend,
//! and the one writer of a tile's changes (row, event and audit entry together).

use chrono::{DateTime, Utc};
use entity::{
    StringList, client,
    enums::{AuditAction, GraphApiProblemCode, GraphApiStatus},
    graph_api_tile,
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, EntityTrait, QuerySelect, QueryTrait,
    sea_query::LockType,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    Result,
    audit::{self, Actor},
    clients::ClientView,
    now,
    tenant_proof::TenantProof,
};
use crate::microsoft::Problem;

/// A button a frontend may show on the tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GraphApiAction {
    Authorise,
    Verify,
    CreateServicePrincipal,
    Delegate,
}

/// What the tile offers in its current state, so no frontend re-implements the machine.
pub fn available_actions(tile: &graph_api_tile::Model) -> Vec<GraphApiAction> {
    use GraphApiAction::*;
    match tile.status {
        GraphApiStatus::NotAuthorised
        | GraphApiStatus::AwaitingConsent
        | GraphApiStatus::Revoked => {
            vec![Authorise]
        }
        GraphApiStatus::Verifying => vec![],
        GraphApiStatus::Authorised => vec![Verify, Authorise, Delegate],
        GraphApiStatus::Failed => match tile.problem_code {
            // An expired link usually means the Accept window never appeared: the same
            // missing principal.
            Some(
                GraphApiProblemCode::MissingServicePrincipal | GraphApiProblemCode::LinkExpired,
            ) => {
                vec![CreateServicePrincipal, Authorise]
            }
            _ => vec![Authorise],
        },
    }
}

/// The tile every new client starts with.
pub fn initial(client_id: Uuid, now: DateTime<Utc>) -> graph_api_tile::ActiveModel {
    graph_api_tile::ActiveModel {
        client_id: Set(client_id),
        status: Set(GraphApiStatus::NotAuthorised),
        problem_code: Set(None),
        problem_aadsts_code: Set(None),
        problem_message: Set(None),
        problem_remediation: Set(None),
        problem_app_id: Set(None),
        problem_app_display_name: Set(None),
        granted_permissions: Set(StringList::default()),
        missing_permissions: Set(StringList::default()),
        authorised_at: Set(None),
        last_verified_at: Set(None),
        next_verification_at: Set(None),
        tenant_proof: Set(None),
        version: Set(0),
        status_changed_at: Set(now),
        updated_at: Set(now),
    }
}

/// Back to `NOT_AUTHORISED`, forgetting what the old authorisation granted (the client's
/// tenant changed, so it no longer applies).
pub fn reset(tile: &graph_api_tile::Model, now: DateTime<Utc>) -> graph_api_tile::ActiveModel {
    let mut next = initial(tile.client_id, now);
    next.version = Set(tile.version + 1);
    next
}

/// A change to a tile. `None` leaves a field as it is.
pub(crate) struct TileChange {
    pub(crate) status: GraphApiStatus,
    /// The problem to show (`None` clears it).
    pub(crate) problem: Option<Problem>,
    pub(crate) granted: Option<Vec<String>>,
    pub(crate) missing: Option<Vec<String>>,
    pub(crate) authorised_at: Option<DateTime<Utc>>,
    pub(crate) verified_at: Option<DateTime<Utc>>,
    pub(crate) next_verification_at: Option<DateTime<Utc>>,
    /// Who proved the tenant of a new authorisation (`None` keeps the current proof).
    pub(crate) proof: Option<TenantProof>,
}

impl TileChange {
    pub(crate) fn to(status: GraphApiStatus) -> Self {
        Self {
            status,
            problem: None,
            granted: None,
            missing: None,
            authorised_at: None,
            verified_at: None,
            next_verification_at: None,
            proof: None,
        }
    }

    pub(crate) fn revoked(problem: Problem) -> Self {
        Self {
            problem: Some(problem),
            ..Self::to(GraphApiStatus::Revoked)
        }
    }
}

/// Writes a tile change with its audit event (in the caller's transaction).
pub(crate) async fn write<C: ConnectionTrait>(
    txn: &C,
    tile: &graph_api_tile::Model,
    change: TileChange,
    actor: &Actor,
    msp_id: &str,
    mut details: Value,
) -> Result<graph_api_tile::Model> {
    let now = now();
    let mut active: graph_api_tile::ActiveModel = tile.clone().into();
    active.status = Set(change.status);
    let p = change.problem.as_ref();
    active.problem_code = Set(p.map(|p| p.code));
    active.problem_aadsts_code = Set(p.and_then(|p| p.aadsts).and_then(|c| i64::try_from(c).ok()));
    active.problem_message = Set(p.and_then(|p| p.message.clone()));
    active.problem_remediation = Set(p.map(|p| p.remediation.clone()));
    active.problem_app_id = Set(p.and_then(|p| p.app_id.clone()));
    active.problem_app_display_name = Set(p.and_then(|p| p.app_display_name.clone()));
    if let Some(granted) = &change.granted {
        active.granted_permissions = Set(StringList(granted.clone()));
    }
    if let Some(missing) = &change.missing {
        active.missing_permissions = Set(StringList(missing.clone()));
    }
    if let Some(proof) = &change.proof {
        active.tenant_proof = Set(Some(proof.to_json()));
    }
    if change.status == GraphApiStatus::NotAuthorised {
        active.granted_permissions = Set(StringList::default());
        active.missing_permissions = Set(StringList::default());
        active.tenant_proof = Set(None);
    }
    if let Some(at) = change.authorised_at {
        active.authorised_at = Set(Some(at));
    }
    if let Some(at) = change.verified_at {
        active.last_verified_at = Set(Some(at));
    }
    // Only an authorised tile is re-verified.
    active.next_verification_at = Set(match change.status {
        GraphApiStatus::Authorised => change.next_verification_at.or(tile.next_verification_at),
        _ => None,
    });
    if change.status != tile.status {
        active.status_changed_at = Set(now);
    }
    active.version = Set(tile.version + 1);
    active.updated_at = Set(now);
    let updated = active.update(txn).await?;
    crate::events::tile(txn, msp_id, &updated).await?;

    details["from"] = json!(status_name(tile.status));
    details["to"] = json!(status_name(updated.status));
    if let Some(problem) = p {
        details["problem"] = problem_json(problem);
    }
    if change.granted.is_some() {
        details["grantedPermissions"] = json!(updated.granted_permissions.0);
        details["missingPermissions"] = json!(updated.missing_permissions.0);
    }
    audit::record(
        txn,
        actor,
        msp_id,
        Some(tile.client_id),
        AuditAction::GraphApiStatusChanged,
        details,
    )
    .await?;
    Ok(updated)
}

/// Records a verification that found the tile as it was: when it was verified and when it
/// is next, with its event, and (`audited`) an audit entry.
pub(crate) async fn reconfirm<C: ConnectionTrait>(
    txn: &C,
    tile: &graph_api_tile::Model,
    change: &TileChange,
    actor: &Actor,
    msp_id: &str,
    audited: bool,
) -> Result<graph_api_tile::Model> {
    let mut active: graph_api_tile::ActiveModel = tile.clone().into();
    active.last_verified_at = Set(change.verified_at);
    active.next_verification_at = Set(change.next_verification_at);
    active.version = Set(tile.version + 1);
    let tile = active.update(txn).await?;
    crate::events::tile(txn, msp_id, &tile).await?;
    if audited {
        audit::record(
            txn,
            actor,
            msp_id,
            Some(tile.client_id),
            AuditAction::GraphApiVerified,
            json!({ "grantedPermissions": tile.granted_permissions.0 }),
        )
        .await?;
    }
    Ok(tile)
}

/// The client's tile, locked for this transaction (PostgreSQL: `FOR UPDATE`; SQLite's write
/// transaction already holds the database lock).
pub(crate) async fn lock<C: ConnectionTrait>(
    txn: &C,
    client_id: Uuid,
) -> Result<Option<graph_api_tile::Model>> {
    Ok(graph_api_tile::Entity::find_by_id(client_id)
        .lock_exclusive()
        .one(txn)
        .await?)
}

/// The client with its tile, the tile locked for this transaction (one statement);
/// `None` when it is gone.
pub(crate) async fn locked_view<C: ConnectionTrait>(
    txn: &C,
    client_id: Uuid,
) -> Result<Option<ClientView>> {
    let mut select =
        graph_api_tile::Entity::find_by_id(client_id).find_also_related(client::Entity);
    // The tile's row only: every writer locks a client's tile first, and only it.
    QueryTrait::query(&mut select).lock_with_tables(LockType::Update, [graph_api_tile::Entity]);
    Ok(match select.one(txn).await? {
        Some((tile, Some(client))) => Some(ClientView { client, tile }),
        _ => None,
    })
}

pub(crate) fn problem_json(problem: &Problem) -> Value {
    json!({
        "code": problem.code,
        "aadsts": problem.aadsts,
        "appId": problem.app_id,
    })
}

/// A status as the schema spells it.
pub fn status_name(status: GraphApiStatus) -> &'static str {
    match status {
        GraphApiStatus::NotAuthorised => "NOT_AUTHORISED",
        GraphApiStatus::AwaitingConsent => "AWAITING_CONSENT",
        GraphApiStatus::Verifying => "VERIFYING",
        GraphApiStatus::Authorised => "AUTHORISED",
        GraphApiStatus::Failed => "FAILED",
        GraphApiStatus::Revoked => "REVOKED",
    }
}
