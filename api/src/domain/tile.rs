//! The Graph API tile's state machine (docs/design.md §1): what each status offers a frontend,
//! and the one writer of a tile's changes (row, event and audit entry together).

use chrono::{DateTime, Utc};
use entity::{
    StringList,
    enums::{AuditAction, GraphApiProblemCode, GraphApiStatus},
    graph_api_tile,
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, EntityTrait, QuerySelect};
use serde_json::{Value, json};
use uuid::Uuid;

use super::audit::{self, Actor};
use super::error::Result;
use super::tenant_proof::TenantProof;
use crate::db::now;
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

/// Whether `status` is one whose `problem` says what went wrong (`FAILED`, `REVOKED`). A
/// repaired tile keeps its note on the repair while `NOT_AUTHORISED`, but nothing is failing.
pub(crate) fn is_failing(status: GraphApiStatus) -> bool {
    matches!(status, GraphApiStatus::Failed | GraphApiStatus::Revoked)
}

/// One sentence on where the tile stands, for a person (a dashboard's headline, a partner's
/// status column): a repaired tile reads as ready, not as failed.
pub(crate) fn headline(tile: &graph_api_tile::Model) -> String {
    // In a few words: `problem` has Microsoft's and the remedy.
    let problem = tile.problem_code.map(problem_words);
    match tile.status {
        GraphApiStatus::NotAuthorised => match tile.problem_code {
            Some(GraphApiProblemCode::ServicePrincipalCreated) => {
                tile.problem_remediation.clone().unwrap_or_else(|| {
                    "The missing service principal was created: authorise again.".to_owned()
                })
            }
            _ => "Not authorised yet: send the client's admin a consent link.".to_owned(),
        },
        GraphApiStatus::AwaitingConsent => {
            "Waiting for the client's admin to accept the consent link.".to_owned()
        }
        GraphApiStatus::Verifying => {
            "The admin accepted: checking with Microsoft what was granted.".to_owned()
        }
        GraphApiStatus::Authorised => "Authorised: Microsoft Graph access works.".to_owned(),
        GraphApiStatus::Failed => format!(
            "Not authorised: {}",
            problem.unwrap_or("the last attempt failed.")
        ),
        GraphApiStatus::Revoked => format!(
            "Authorisation lost: {}",
            problem.unwrap_or("the consent was withdrawn.")
        ),
    }
}

/// A problem in a few words.
fn problem_words(code: GraphApiProblemCode) -> &'static str {
    use GraphApiProblemCode::*;
    match code {
        MissingServicePrincipal => "the tenant lacks a service principal the app needs.",
        ServicePrincipalCreated => "the missing service principal was created.",
        ConsentDeclined => "the admin declined the consent.",
        AdminConsentRequired => "the person who signed in cannot consent for the tenant.",
        WrongTenant => "the consent came from another tenant than the client's.",
        PermissionsMissing => "required permissions were not granted.",
        ConsentRevoked => "the consent was withdrawn.",
        ConditionalAccess => "MFA or a Conditional Access policy blocked the sign-in.",
        LinkExpired => "the consent link expired before anyone used it.",
        IdentityProviderUnavailable => "Microsoft's identity platform could not be reached.",
        Unknown => "Microsoft reported an error.",
    }
}

/// What can happen to a tile. [`next`] says what each does from each status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TileEvent {
    /// An admin-consent link was sent (`authoriseGraphApi`).
    LinkSent,
    /// A consent came back, and Microsoft is being asked what was granted.
    ConsentReceived,
    /// The consent was verified: every required permission is granted.
    Authorised,
    /// The consent failed, for a reason of the tenant's (declined, wrong tenant, missing
    /// permissions, a missing service principal…).
    ConsentFailed,
    /// Consentry's own configuration stopped the consent.
    OperatorProblem,
    /// The client's last link expired unused.
    LinkExpired,
    /// The callback of a consent was interrupted (its instance died).
    Interrupted,
    /// A re-verification found the grant as it should be.
    Reverified,
    /// A re-verification found the grant gone or incomplete.
    Revoked,
    /// The service principal of `app_id`, which a repair was creating, exists now.
    ServicePrincipalCreated { app_id: String },
    /// The client's Microsoft tenant was changed.
    TenantChanged,
}

/// The tile's state machine: the status `event` moves `tile` to, or `None` when the event
/// leaves it as it is (a refused or meaningless transition). Every writer asks this first.
pub(crate) fn next(tile: &graph_api_tile::Model, event: &TileEvent) -> Option<GraphApiStatus> {
    use GraphApiStatus::*;
    let status = tile.status;
    match event {
        // An authorised tile stays so while a re-consent is pending, and a failed re-consent
        // leaves the authorisation standing.
        TileEvent::LinkSent => (status != Authorised).then_some(AwaitingConsent),
        TileEvent::ConsentReceived => {
            (!matches!(status, Authorised | Verifying)).then_some(Verifying)
        }
        TileEvent::Authorised => Some(Authorised),
        TileEvent::ConsentFailed => (status != Authorised).then_some(Failed),
        TileEvent::OperatorProblem => (status != Authorised).then_some(NotAuthorised),
        TileEvent::LinkExpired => (status == AwaitingConsent).then_some(Failed),
        TileEvent::Interrupted => matches!(status, AwaitingConsent | Verifying).then_some(Failed),
        // Only an authorised tile is re-verified; anything else was changed meanwhile, and
        // that change stands.
        TileEvent::Reverified => (status == Authorised).then_some(Authorised),
        TileEvent::Revoked => (status == Authorised).then_some(Revoked),
        TileEvent::ServicePrincipalCreated { app_id } => {
            let waited_for = match tile.problem_code {
                Some(GraphApiProblemCode::MissingServicePrincipal) => tile
                    .problem_app_id
                    .as_deref()
                    .is_none_or(|app| app.eq_ignore_ascii_case(app_id)),
                // An expired link usually means the Accept window never appeared.
                Some(GraphApiProblemCode::LinkExpired) => true,
                _ => false,
            };
            // Nothing is failing any more: the tile is ready to be authorised again, and its
            // headline says the repair is done.
            (status == Failed && waited_for).then_some(NotAuthorised)
        }
        // A repaired tile's note on its repair belongs to the old tenant too.
        TileEvent::TenantChanged => {
            (status != NotAuthorised || tile.problem_code.is_some()).then_some(NotAuthorised)
        }
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

/// The client's Microsoft tenant changed ([`TileEvent::TenantChanged`]): the tile goes back
/// to `NOT_AUTHORISED`, forgetting what the old authorisation granted and who proved it (it no
/// longer applies), with its change event. `None` when the tile is not authorised in any way
/// to forget. The audit entry is the client's own (`CLIENT_UPDATED` names the new tenant).
pub(crate) async fn reset<C: ConnectionTrait>(
    txn: &C,
    tile: &graph_api_tile::Model,
    msp_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<graph_api_tile::Model>> {
    if next(tile, &TileEvent::TenantChanged).is_none() {
        return Ok(None);
    }
    let mut reset = initial(tile.client_id, now);
    reset.version = Set(tile.version + 1);
    let reset = reset.update(txn).await?;
    crate::events::tile(txn, msp_id, &reset).await?;
    Ok(Some(reset))
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

pub(crate) fn problem_json(problem: &Problem) -> Value {
    json!({
        "code": problem_code_name(problem.code),
        "aadsts": problem.aadsts,
        "appId": problem.app_id,
    })
}

/// A problem code as the schema spells it, e.g. `LINK_EXPIRED` (its stored value too). Audit
/// entries written before 2026-12-06 spelled it as Rust does (`LinkExpired`); the API reads
/// those through [`schema_spelling`].
pub(crate) fn problem_code_name(code: GraphApiProblemCode) -> String {
    use sea_orm::ActiveEnum;
    code.to_value()
}

/// `LinkExpired` → `LINK_EXPIRED`: an older audit entry's problem code as the schema spells it.
/// Anything not spelled like a Rust variant is returned as it is.
pub(crate) fn schema_spelling(code: &str) -> std::borrow::Cow<'_, str> {
    let rust_like = code.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && code.chars().all(|c| c.is_ascii_alphanumeric())
        && code.chars().any(|c| c.is_ascii_lowercase());
    if !rust_like {
        return code.into();
    }
    let mut spelled = String::with_capacity(code.len() + 4);
    for (i, c) in code.chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            spelled.push('_');
        }
        spelled.push(c.to_ascii_uppercase());
    }
    spelled.into()
}

/// A status as the schema spells it.
pub(crate) fn status_name(status: GraphApiStatus) -> &'static str {
    match status {
        GraphApiStatus::NotAuthorised => "NOT_AUTHORISED",
        GraphApiStatus::AwaitingConsent => "AWAITING_CONSENT",
        GraphApiStatus::Verifying => "VERIFYING",
        GraphApiStatus::Authorised => "AUTHORISED",
        GraphApiStatus::Failed => "FAILED",
        GraphApiStatus::Revoked => "REVOKED",
    }
}

#[cfg(test)]
mod tests {
    use GraphApiStatus::*;
    use sea_orm::Iterable;

    use super::*;

    #[test]
    fn every_problem_code_spelled_as_rust_once_did_reads_as_the_schema_spells_it() {
        for code in GraphApiProblemCode::iter() {
            let old = format!("{code:?}");
            assert_eq!(schema_spelling(&old), problem_code_name(code), "{old}");
            assert_eq!(
                schema_spelling(&problem_code_name(code)),
                problem_code_name(code)
            );
        }
        assert_eq!(schema_spelling("AADSTS65004"), "AADSTS65004");
        assert_eq!(schema_spelling(""), "");
    }

    /// The statuses in the order of the table's columns.
    const STATUSES: [GraphApiStatus; 6] = [
        NotAuthorised,
        AwaitingConsent,
        Verifying,
        Authorised,
        Failed,
        Revoked,
    ];

    /// What each event does from each status (columns as [`STATUSES`]); `None`: refused,
    /// the tile stays as it is. Written as a match so that a new event cannot compile
    /// without its row.
    fn expected(event: &TileEvent) -> [Option<GraphApiStatus>; 6] {
        const N: Option<GraphApiStatus> = None;
        let all = |to| [Some(to); 6];
        match event {
            TileEvent::LinkSent => [
                Some(AwaitingConsent),
                Some(AwaitingConsent),
                Some(AwaitingConsent),
                N,
                Some(AwaitingConsent),
                Some(AwaitingConsent),
            ],
            TileEvent::ConsentReceived => [
                Some(Verifying),
                Some(Verifying),
                N,
                N,
                Some(Verifying),
                Some(Verifying),
            ],
            TileEvent::Authorised => all(Authorised),
            TileEvent::ConsentFailed => [
                Some(Failed),
                Some(Failed),
                Some(Failed),
                N,
                Some(Failed),
                Some(Failed),
            ],
            TileEvent::OperatorProblem => [
                Some(NotAuthorised),
                Some(NotAuthorised),
                Some(NotAuthorised),
                N,
                Some(NotAuthorised),
                Some(NotAuthorised),
            ],
            TileEvent::LinkExpired => [N, Some(Failed), N, N, N, N],
            TileEvent::Interrupted => [N, Some(Failed), Some(Failed), N, N, N],
            TileEvent::Reverified => [N, N, N, Some(Authorised), N, N],
            TileEvent::Revoked => [N, N, N, Some(Revoked), N, N],
            // With the tile's problem a missing principal of this very application.
            TileEvent::ServicePrincipalCreated { .. } => [N, N, N, N, Some(NotAuthorised), N],
            // Every tile of the table carries a problem, which a tenant change forgets.
            TileEvent::TenantChanged => [
                Some(NotAuthorised),
                Some(NotAuthorised),
                Some(NotAuthorised),
                Some(NotAuthorised),
                Some(NotAuthorised),
                Some(NotAuthorised),
            ],
        }
    }

    const TEAMS: &str = crate::microsoft::known::TEAMS_ADMIN_API_APP_ID;

    fn tile(status: GraphApiStatus, problem: Option<GraphApiProblemCode>) -> graph_api_tile::Model {
        let now = Utc::now();
        graph_api_tile::Model {
            client_id: Uuid::nil(),
            status,
            problem_code: problem,
            problem_aadsts_code: None,
            problem_message: None,
            problem_remediation: None,
            problem_app_id: problem.map(|_| TEAMS.to_owned()),
            problem_app_display_name: None,
            granted_permissions: StringList::default(),
            missing_permissions: StringList::default(),
            authorised_at: None,
            last_verified_at: None,
            next_verification_at: None,
            tenant_proof: None,
            version: 0,
            status_changed_at: now,
            updated_at: now,
        }
    }

    /// Issue 18: every (status, event) pair, the refused ones included.
    #[test]
    fn every_status_answers_every_event_as_the_table_says() {
        assert_eq!(STATUSES.len(), GraphApiStatus::iter().count());
        let events = [
            TileEvent::LinkSent,
            TileEvent::ConsentReceived,
            TileEvent::Authorised,
            TileEvent::ConsentFailed,
            TileEvent::OperatorProblem,
            TileEvent::LinkExpired,
            TileEvent::Interrupted,
            TileEvent::Reverified,
            TileEvent::Revoked,
            TileEvent::ServicePrincipalCreated {
                app_id: TEAMS.to_owned(),
            },
            TileEvent::TenantChanged,
        ];
        let mut walked = 0;
        for event in &events {
            for (status, want) in STATUSES.into_iter().zip(expected(event)) {
                let from = tile(status, Some(GraphApiProblemCode::MissingServicePrincipal));
                assert_eq!(next(&from, event), want, "{status:?} on {event:?}");
                walked += 1;
            }
        }
        assert_eq!(walked, 66);
    }

    #[test]
    fn a_created_principal_moves_only_a_tile_that_waited_for_it() {
        let created = |app: &str| TileEvent::ServicePrincipalCreated {
            app_id: app.to_owned(),
        };
        let missing = GraphApiProblemCode::MissingServicePrincipal;
        // Another application's principal, or a tile that failed for another reason, stays.
        let other = "00000003-0000-0000-c000-000000000000";
        assert_eq!(next(&tile(Failed, Some(missing)), &created(other)), None);
        for problem in [
            GraphApiProblemCode::ConsentDeclined,
            GraphApiProblemCode::WrongTenant,
        ] {
            assert_eq!(next(&tile(Failed, Some(problem)), &created(TEAMS)), None);
        }
        assert_eq!(next(&tile(Failed, None), &created(TEAMS)), None);
        // An expired link (the Accept window never appeared) waited for any of them; a
        // missing principal that named none, too; application ids compare case-blind.
        let expired = tile(Failed, Some(GraphApiProblemCode::LinkExpired));
        assert_eq!(next(&expired, &created(other)), Some(NotAuthorised));
        let mut unnamed = tile(Failed, Some(missing));
        unnamed.problem_app_id = None;
        assert_eq!(next(&unnamed, &created(other)), Some(NotAuthorised));
        let upper = TEAMS.to_ascii_uppercase();
        assert_eq!(
            next(&tile(Failed, Some(missing)), &created(&upper)),
            Some(NotAuthorised)
        );
    }
}
