//! The Graph API tile's authorisation (docs/design.md §1): consent links ("Authorise"), the
//! check of what a tenant granted (with an app-only token, never taken on trust), and manual
//! and scheduled re-verification. The flow a link starts is [`super::flows`]'s admin consent.
//! Every transition is written in one transaction with its audit event.

use chrono::{DateTime, Duration, Utc};
use entity::{
    client,
    enums::{AuditAction, GraphApiProblemCode, GraphApiStatus, OAuthFlowKind},
    graph_api_tile,
};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use serde_json::json;
use url::Url;
use uuid::Uuid;

use super::access;
use super::audit::{self, Actor};
use super::clients::{self, ClientView};
use super::consents::Consents;
use super::error::{Error, Result};
use super::flows::store::{self, NewFlow};
use super::tile::{self, TileChange, TileEvent};
use crate::db::now;
use crate::{
    auth::Viewer,
    db::begin_write,
    microsoft::{Microsoft, MicrosoftError, Problem, TenantHint},
};

/// Lifetime of a consent link when the caller gives none.
pub(crate) const DEFAULT_LINK_LIFETIME_MINUTES: i64 = 15;
/// Longest a consent link may live: an MSP emails links to clients' admins.
pub(crate) const MAX_LINK_LIFETIME_MINUTES: i64 = 7 * 24 * 60;
/// A re-verification that could not reach Microsoft is tried again after this.
const VERIFY_RETRY: Duration = Duration::minutes(10);
/// How many due tiles or expired flows one sweep takes on.
const SWEEP_BATCH: u64 = 50;

/// A consent link to send to the client's admin.
#[derive(Clone, Debug)]
pub(crate) struct ConsentLink {
    pub url: Url,
    pub expires_at: DateTime<Utc>,
    /// The client with its tile as the link left it.
    pub view: ClientView,
}

/// Starts admin consent for a client: records a single-use flow (its `state` kept only as a
/// hash, with the PKCE verifier and nonce of its sign-in), moves the tile to
/// `AWAITING_CONSENT` (an `AUTHORISED` tile stays so while a re-consent is pending), replaces
/// any earlier link, and audits who asked. The link is the sign-in that proves the admin's
/// tenant ([`super::tenant_proof`]); Microsoft's consent page follows it.
#[tracing::instrument(skip_all, fields(msp = %viewer.msp_id(), client = %client_id))]
pub(crate) async fn authorise(
    db: &DatabaseConnection,
    consents: &Consents,
    viewer: &Viewer,
    client_id: Uuid,
    lifetime_minutes: Option<i64>,
) -> Result<ConsentLink> {
    access::require_writer(viewer)?;
    let lifetime = link_lifetime(lifetime_minutes)?;
    let txn = begin_write(db).await?;
    let view = writable_client(&txn, viewer, client_id).await?;
    let microsoft = consents.microsoft()?;

    let superseded = store::cancel_open(
        &txn,
        client_id,
        &view.client.name,
        &[OAuthFlowKind::AdminConsent],
        "a newer link was sent",
        now(),
    )
    .await?;
    let (flow, secrets) = store::open(
        &txn,
        &consents.flow_keys,
        NewFlow {
            kind: OAuthFlowKind::AdminConsent,
            client: &view.client,
            created_by: &viewer.subject,
            lifetime,
            requested_permissions: None,
            service_principal_request_id: None,
        },
    )
    .await?;
    let expires_at = flow.expires_at;

    let actor = Actor::from(viewer);
    let mut tile = view.tile.clone();
    if let Some(status) = tile::next(&view.tile, &TileEvent::LinkSent) {
        tile = tile::write(
            &txn,
            &view.tile,
            TileChange::to(status),
            &actor,
            &view.client.msp_id,
            json!({ "reason": "consent link created", "flowId": flow.id }),
        )
        .await?;
    }
    audit::record(
        &txn,
        &actor,
        &view.client.msp_id,
        Some(client_id),
        AuditAction::GraphApiAuthorisationStarted,
        json!({
            "flowId": flow.id,
            "expiresAt": expires_at,
            "lifetimeMinutes": lifetime.num_minutes(),
            "replacedLinks": superseded,
            "tenantHint": tenant_hint(&view.client).path(),
        }),
    )
    .await?;
    txn.commit().await?;
    tracing::info!(flow = %flow.id, %expires_at, "consent link created");

    let url = microsoft.tenant_sign_in_url(&tenant_hint(&view.client), &secrets);
    Ok(ConsentLink {
        url,
        expires_at,
        view: ClientView {
            client: view.client,
            tile,
        },
    })
}

fn tenant_hint(client: &client::Model) -> TenantHint {
    TenantHint::for_client(client.azure_tenant_id, client.domain.as_deref())
}

pub(crate) fn link_lifetime(minutes: Option<i64>) -> Result<Duration> {
    let minutes = minutes.unwrap_or(DEFAULT_LINK_LIFETIME_MINUTES);
    if !(1..=MAX_LINK_LIFETIME_MINUTES).contains(&minutes) {
        return Err(Error::bad_input(
            "linkLifetimeMinutes",
            format!(
                "a consent link lives from 1 minute to 7 days ({MAX_LINK_LIFETIME_MINUTES} minutes); got {minutes}"
            ),
        ));
    }
    Ok(Duration::minutes(minutes))
}

/// What a tenant actually granted.
pub(crate) struct TenantCheck {
    pub(crate) granted: Vec<String>,
    pub(crate) missing: Vec<String>,
}

pub(crate) enum CheckFailure {
    WrongTenant(Problem),
    Microsoft(MicrosoftError),
}

impl From<MicrosoftError> for CheckFailure {
    fn from(error: MicrosoftError) -> Self {
        Self::Microsoft(error)
    }
}

/// Verifies a tenant's consent the only way that cannot be forged: an app-only token for
/// the tenant, `GET /organization` with it, and the `roles` it carries compared with the
/// required list.
pub(crate) async fn check_tenant(
    microsoft: &Microsoft,
    tenant: Uuid,
    domain: Option<&str>,
) -> std::result::Result<TenantCheck, CheckFailure> {
    let token = microsoft.app_token(&tenant.to_string()).await?;
    if let Some(tid) = token.tenant_id.as_deref()
        && Uuid::parse_str(tid).ok() != Some(tenant)
    {
        return Err(CheckFailure::WrongTenant(Problem::new(
            GraphApiProblemCode::WrongTenant,
            "Microsoft issued the verification token for another tenant. Send a new link.",
        )));
    }
    let required = &microsoft.config().required_roles;
    let granted = token.roles.clone();
    let missing: Vec<String> = required
        .iter()
        .filter(|r| !granted.iter().any(|g| g.eq_ignore_ascii_case(r)))
        .cloned()
        .collect();
    let organization = match microsoft.organization(&token.access_token).await {
        Ok(organization) => organization,
        // Reading the organization needs one of the required permissions; their absence is
        // the finding, not Graph's refusal.
        Err(MicrosoftError::Graph { status: 403, .. }) if !missing.is_empty() => {
            return Ok(TenantCheck { granted, missing });
        }
        Err(e) => return Err(e.into()),
    };
    if Uuid::parse_str(&organization.id).ok() != Some(tenant) {
        return Err(CheckFailure::WrongTenant(Problem::new(
            GraphApiProblemCode::WrongTenant,
            format!(
                "Microsoft Graph answered for organization {} instead of tenant {tenant}.",
                crate::microsoft::bounded(&organization.id, 64)
            ),
        )));
    }
    if let Some(domain) = domain
        && !organization
            .verified_domains
            .iter()
            .any(|d| d.name.eq_ignore_ascii_case(domain))
    {
        return Err(CheckFailure::WrongTenant(Problem::new(
            GraphApiProblemCode::WrongTenant,
            format!(
                "The tenant that consented ({}, {tenant}) does not own the client's domain {domain}. \
             The admin must sign in to the client's own tenant, or correct the client's domain.",
                organization.display_name.as_deref().unwrap_or("unnamed")
            ),
        )));
    }
    Ok(TenantCheck { granted, missing })
}

/// Re-checks an `AUTHORISED` tile now (`verifyGraphApi`). Only authorised tiles can be
/// verified: verification never authorises a tile no consent callback authorised
/// (checklist 15).
#[tracing::instrument(skip_all, fields(msp = %viewer.msp_id(), client = %client_id))]
pub(crate) async fn verify(
    db: &DatabaseConnection,
    consents: &Consents,
    viewer: &Viewer,
    client_id: Uuid,
) -> Result<ClientView> {
    access::require_writer(viewer)?;
    let Some(view) = clients::load(db, client_id).await? else {
        return Err(Error::not_found("client", client_id.to_string()));
    };
    access::require_writable(
        viewer,
        &view.client.msp_id,
        "client",
        &client_id.to_string(),
    )?;
    if view.tile.status != GraphApiStatus::Authorised {
        return Err(Error::bad_input(
            "clientId",
            format!(
                "only an AUTHORISED tile can be verified; this one is {}: authorise it with authoriseGraphApi",
                tile::status_name(view.tile.status)
            ),
        ));
    }
    let microsoft = consents.microsoft()?;
    let result = reverify(db, consents, microsoft, &view, &Actor::from(viewer), true).await?;
    match result {
        Reverified::Written(view) => Ok(*view),
        Reverified::Unchanged(reason) => Err(Error::MicrosoftUnavailable(format!(
            "{reason} The tile is unchanged; try again shortly."
        ))),
    }
}

enum Reverified {
    Written(Box<ClientView>),
    /// Nothing was learnt (Microsoft unreachable, or our own credentials refused).
    Unchanged(String),
}

async fn reverify(
    db: &DatabaseConnection,
    consents: &Consents,
    microsoft: &Microsoft,
    view: &ClientView,
    actor: &Actor,
    requested: bool,
) -> Result<Reverified> {
    let Some(tenant) = view.client.azure_tenant_id else {
        return Err(Error::Internal(anyhow::anyhow!(
            "authorised client {} has no tenant id",
            view.client.id
        )));
    };
    let check = check_tenant(microsoft, tenant, view.client.domain.as_deref()).await;
    let change = match reverified(consents, check, now()) {
        Ok(change) => change,
        Err(postponed) => {
            // Not the tenant's doing: leave the tile alone and try again later.
            tracing::warn!(client = %view.client.id, error = %postponed.error, ours = postponed.ours, "re-verification postponed");
            postpone(db, view.client.id, now() + VERIFY_RETRY).await?;
            return Ok(Reverified::Unchanged(postponed.reason));
        }
    };

    let txn = begin_write(db).await?;
    let Some(tile) = tile::lock(&txn, view.client.id).await? else {
        return Err(Error::not_found("client", view.client.id.to_string()));
    };
    let event = match change.status {
        GraphApiStatus::Authorised => TileEvent::Reverified,
        _ => TileEvent::Revoked,
    };
    if tile::next(&tile, &event).is_none() {
        // Someone re-authorised or reset it meanwhile: their change stands.
        drop(txn);
        return Ok(Reverified::Written(Box::new(
            clients::load(db, view.client.id)
                .await?
                .ok_or_else(|| Error::not_found("client", view.client.id.to_string()))?,
        )));
    }
    let changed = change.status != tile.status
        || change.granted.as_ref() != Some(&tile.granted_permissions.0);
    let reason = if requested {
        "verification requested"
    } else {
        "scheduled re-verification"
    };
    let tile = if changed {
        tile::write(
            &txn,
            &tile,
            change,
            actor,
            &view.client.msp_id,
            json!({ "reason": reason }),
        )
        .await?
    } else {
        // Only a verification someone asked for is audited: the schedule's would flood the
        // trail with "nothing changed".
        tile::reconfirm(&txn, &tile, &change, actor, &view.client.msp_id, requested).await?
    };
    txn.commit().await?;
    Ok(Reverified::Written(Box::new(ClientView {
        client: view.client.clone(),
        tile,
    })))
}

/// A re-verification that told nothing about the tenant.
struct Postponed {
    /// Why, as the caller reads it.
    reason: String,
    /// What Microsoft answered, for the log.
    error: String,
    /// Whether Microsoft refused Consentry's own credentials.
    ours: bool,
}

/// What a re-verification's check means for an authorised tile; `Err` when it tells
/// nothing about the tenant (Microsoft unreachable, or our own credentials refused).
fn reverified(
    consents: &Consents,
    check: std::result::Result<TenantCheck, CheckFailure>,
    now: DateTime<Utc>,
) -> std::result::Result<TileChange, Postponed> {
    Ok(match check {
        Ok(check) if check.missing.is_empty() => TileChange {
            granted: Some(check.granted),
            missing: Some(Vec::new()),
            verified_at: Some(now),
            next_verification_at: Some(consents.next_verification(now)),
            ..TileChange::to(GraphApiStatus::Authorised)
        },
        Ok(check) => TileChange {
            problem: Some(permissions_missing(&check.missing)),
            granted: Some(check.granted),
            missing: Some(check.missing),
            verified_at: Some(now),
            ..TileChange::to(GraphApiStatus::Revoked)
        },
        Err(CheckFailure::WrongTenant(problem)) => TileChange {
            verified_at: Some(now),
            ..TileChange::revoked(problem)
        },
        Err(CheckFailure::Microsoft(error)) => {
            let problem = error.problem();
            if problem.ours
                || error.is_transient()
                || problem.code == GraphApiProblemCode::IdentityProviderUnavailable
            {
                let reason = if problem.ours {
                    format!(
                        "Microsoft refused Consentry's own credentials: {}",
                        problem.remediation
                    )
                } else {
                    "Microsoft could not be reached to verify the authorisation.".to_owned()
                };
                return Err(Postponed {
                    reason,
                    error: error.to_string(),
                    ours: problem.ours,
                });
            }
            let problem = match problem.code {
                // Consent that no longer works reads as revoked, whatever the exact code.
                GraphApiProblemCode::Unknown => Problem {
                    code: GraphApiProblemCode::ConsentRevoked,
                    ..problem
                },
                _ => problem,
            };
            TileChange {
                verified_at: Some(now),
                ..TileChange::revoked(problem)
            }
        }
    })
}

async fn postpone(db: &DatabaseConnection, client_id: Uuid, until: DateTime<Utc>) -> Result<()> {
    graph_api_tile::Entity::update_many()
        .col_expr(
            graph_api_tile::Column::NextVerificationAt,
            Expr::value(until),
        )
        .filter(graph_api_tile::Column::ClientId.eq(client_id))
        .filter(graph_api_tile::Column::Status.eq(GraphApiStatus::Authorised))
        .exec(db)
        .await?;
    Ok(())
}

/// Re-verifies authorised tiles that are due. Each tile is claimed with a compare-and-set on
/// its `next_verification_at`, so of several instances exactly one verifies it.
pub(crate) async fn reverify_due(db: &DatabaseConnection, consents: &Consents) -> Result<usize> {
    let Some(microsoft) = consents.microsoft.as_deref() else {
        return Ok(0);
    };
    let now = now();
    let due = graph_api_tile::Entity::find()
        .filter(graph_api_tile::Column::Status.eq(GraphApiStatus::Authorised))
        .filter(
            Condition::any()
                .add(graph_api_tile::Column::NextVerificationAt.is_null())
                .add(graph_api_tile::Column::NextVerificationAt.lte(now)),
        )
        .order_by_asc(graph_api_tile::Column::NextVerificationAt)
        .limit(SWEEP_BATCH)
        .all(db)
        .await?;
    let mut verified = 0;
    for tile in due {
        let mut claim = graph_api_tile::Entity::update_many()
            .col_expr(
                graph_api_tile::Column::NextVerificationAt,
                Expr::value(now + VERIFY_RETRY),
            )
            .filter(graph_api_tile::Column::ClientId.eq(tile.client_id))
            .filter(graph_api_tile::Column::Status.eq(GraphApiStatus::Authorised));
        claim = match tile.next_verification_at {
            Some(at) => claim.filter(graph_api_tile::Column::NextVerificationAt.eq(at)),
            None => claim.filter(graph_api_tile::Column::NextVerificationAt.is_null()),
        };
        if claim.exec(db).await?.rows_affected != 1 {
            continue;
        }
        let Some(view) = clients::load(db, tile.client_id).await? else {
            continue;
        };
        let actor = Actor::system(&view.client.msp_id);
        match reverify(db, consents, microsoft, &view, &actor, false).await {
            Ok(_) => verified += 1,
            Err(error) => {
                tracing::warn!(client = %tile.client_id, %error, "re-verification failed");
            }
        }
    }
    Ok(verified)
}

/// A service principal the tile was missing now exists: a tile that failed for want of it
/// says so and offers Authorise again.
pub(crate) async fn service_principal_ready<C: ConnectionTrait>(
    txn: &C,
    request: &entity::service_principal_request::Model,
    actor: &Actor,
) -> Result<()> {
    let Some(tile) = tile::lock(txn, request.client_id).await? else {
        return Ok(());
    };
    let event = TileEvent::ServicePrincipalCreated {
        app_id: request.app_id.clone(),
    };
    let Some(status) = tile::next(&tile, &event) else {
        return Ok(());
    };
    let name = request
        .app_display_name
        .clone()
        .unwrap_or_else(|| request.app_id.clone());
    let created = Problem {
        app_id: Some(request.app_id.clone()),
        app_display_name: request.app_display_name.clone(),
        ..Problem::new(
            GraphApiProblemCode::ServicePrincipalCreated,
            format!(
                "The service principal for {name} was created — authorise again: the admin will now see the Accept window."
            ),
        )
    };
    tile::write(
        txn,
        &tile,
        TileChange {
            status,
            ..TileChange::revoked(created)
        },
        actor,
        &request.msp_id,
        json!({ "reason": "service principal created", "requestId": request.id }),
    )
    .await?;
    Ok(())
}

/// The client, locked for this transaction, if the viewer may change it (another MSP's
/// client reads as missing; support staff's as read-only).
pub(crate) async fn writable_client<C: ConnectionTrait>(
    txn: &C,
    viewer: &Viewer,
    client_id: Uuid,
) -> Result<ClientView> {
    let view = lock_client(txn, client_id).await?;
    access::require_writable(
        viewer,
        &view.client.msp_id,
        "client",
        &client_id.to_string(),
    )?;
    Ok(view)
}

async fn lock_client<C: ConnectionTrait>(txn: &C, client_id: Uuid) -> Result<ClientView> {
    clients::locked_view(txn, client_id)
        .await?
        .ok_or_else(|| Error::not_found("client", client_id.to_string()))
}

pub(crate) fn permissions_missing(missing: &[String]) -> Problem {
    Problem::new(
        GraphApiProblemCode::PermissionsMissing,
        format!(
            "The tenant did not grant {}. Authorise again and make sure the admin accepts every \
             permission; if an admin removed them in Entra ID (Enterprise applications → Permissions), \
             grant admin consent there again.",
            missing.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_lifetimes_run_from_one_minute_to_seven_days() {
        assert_eq!(link_lifetime(None).unwrap(), Duration::minutes(15));
        assert_eq!(link_lifetime(Some(1)).unwrap(), Duration::minutes(1));
        assert_eq!(link_lifetime(Some(10_080)).unwrap(), Duration::days(7));
        for bad in [0, -5, 10_081] {
            let error = link_lifetime(Some(bad)).unwrap_err();
            assert_eq!(
                error.code(),
                crate::error_code::ErrorCode::BadUserInput,
                "{bad}"
            );
        }
    }
}
