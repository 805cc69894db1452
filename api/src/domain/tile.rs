//! The Graph API tile's state machine (docs/design.md §1): what each status offers a frontend.

use chrono::{DateTime, Utc};
use entity::{
    StringList,
    enums::{GraphApiProblemCode, GraphApiStatus},
    graph_api_tile,
};
use sea_orm::ActiveValue::Set;
use uuid::Uuid;

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
