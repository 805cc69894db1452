//! Service principal repair (docs/design.md §1): create a client tenant's missing service principal
//! — by default the Skype and Teams Tenant Admin API's — from the API instead of Azure CLI.
//! An admin signs in once (authorization code + PKCE + nonce, `Application.ReadWrite.All`);
//! Consentry looks the principal up, creates it when absent, waits until Microsoft's
//! replicas all see it, and then offers Authorise again. The wait is a job row any instance
//! can claim, so it survives a restart. Only allow-listed applications are repaired
//! (checklist 96): see [`RepairableApps`].

pub(crate) mod held;
mod machine;
mod replication;

use std::{collections::HashMap, time::Duration as StdDuration};

use chrono::Duration;
use entity::{
    enums::{OAuthFlowKind, ServicePrincipalRequestStatus as Status},
    service_principal_request,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder,
};
use secrecy::SecretString;
use serde_json::json;
use url::Url;
use uuid::Uuid;

use super::audit::Actor;
use super::consents::Consents;
use super::error::{Error, Result};
use super::flows::store::{self, NewFlow};
use super::{access, delegated_consents, graph_api};
use crate::db::now;
use crate::{
    auth::Viewer,
    db::begin_write,
    microsoft::{
        Microsoft, MicrosoftError, Problem, TenantHint,
        graph::Creation,
        known::{TEAMS_ADMIN_API_APP_ID, display_name},
    },
};

pub(crate) use self::machine::{RequestEvent, fail, status_name};
use self::machine::{finish_ready, record, step};
pub(crate) use self::replication::sweep;
use super::repairable::{RepairableApps, not_repairable, parse_app_id};

/// The display name of an application as a request shows it: its well-known name, else
/// its id (an application an operator allow-listed is not in the table).
fn display_name_or_id(app_id: &str) -> String {
    display_name(app_id).map_or_else(|| app_id.to_owned(), str::to_owned)
}

/// A request as `createServicePrincipal` returns it.
#[derive(Clone, Debug)]
pub(crate) struct StartedRequest {
    pub request: service_principal_request::Model,
    /// Where an admin of the client's tenant signs in; only in the answer that created the
    /// sign-in (its `state` is stored only as a hash).
    pub sign_in_url: Option<Url>,
}

/// `createServicePrincipal`: starts (or, for the same client and application, continues)
/// one repair. Two requests at once make one (checklist 85).
#[tracing::instrument(skip_all, fields(msp = %viewer.msp_id(), client = %client_id))]
pub(crate) async fn create(
    db: &DatabaseConnection,
    consents: &Consents,
    viewer: &Viewer,
    client_id: Uuid,
    app_id: Option<&str>,
    lifetime_minutes: Option<i64>,
) -> Result<StartedRequest> {
    access::require_writer(viewer)?;
    let app_id = app_id_or_default(app_id)?;
    // Before anything is stored or Microsoft is asked (checklist 96).
    if !consents.repairable_apps.contains(&app_id) {
        return Err(Error::bad_input("appId", RepairableApps::refusal(&app_id)));
    }
    let lifetime = graph_api::link_lifetime(lifetime_minutes)?;
    let txn = begin_write(db).await?;
    // The tile's row lock serialises requests for one client (SQLite: the write lock).
    let view = graph_api::writable_client(&txn, viewer, client_id).await?;
    let microsoft = consents.microsoft()?;
    if view.client.azure_tenant_id.is_none() && view.client.domain.is_none() {
        return Err(Error::bad_input(
            "clientId",
            "Consentry cannot tell which tenant to repair: set the client's domain or azureTenantId first",
        ));
    }

    let actor = Actor::from(viewer);
    let request = match open_request(&txn, &view.client, &app_id, &actor, &viewer.subject).await? {
        // Already acting or waiting: the same request, nothing new.
        request if request.status != Status::PendingSignIn => {
            txn.commit().await?;
            return Ok(StartedRequest {
                request,
                sign_in_url: None,
            });
        }
        request => request,
    };
    txn.commit().await?;

    // A stored admin consent that can act in the directory: act at once, no sign-in.
    if let Some(admin) = delegated_consents::admin_token(db, consents, client_id).await?
        && view
            .client
            .azure_tenant_id
            .is_none_or(|known| known == admin.tenant)
    {
        tracing::info!(request = %request.id, consent = %admin.consent_id, "acting with a stored delegated consent");
        let authority = Authority::StoredConsent {
            consent_id: admin.consent_id,
            user_principal_name: admin.user_principal_name,
            user_object_id: admin.user_object_id,
        };
        let (tenant, token) = (admin.tenant, admin.token);
        act(db, consents, &request, tenant, token, &authority, &actor).await?;
        let request = find(db, request.id)
            .await?
            .ok_or_else(|| Error::not_found("service principal request", request.id.to_string()))?;
        return Ok(StartedRequest {
            request,
            sign_in_url: None,
        });
    }
    let url = sign_in_link(
        db,
        consents,
        microsoft,
        &view.client,
        viewer,
        &request,
        lifetime,
    )
    .await?;
    Ok(StartedRequest {
        request,
        sign_in_url: Some(url),
    })
}

/// The client's open request for `app_id` (waiting for a sign-in, creating or propagating),
/// else a new one waiting for a sign-in, written with its audit entry and event.
async fn open_request<C: ConnectionTrait>(
    txn: &C,
    client: &entity::client::Model,
    app_id: &str,
    actor: &Actor,
    created_by: &str,
) -> Result<service_principal_request::Model> {
    let open = service_principal_request::Entity::find()
        .filter(service_principal_request::Column::ClientId.eq(client.id))
        .filter(service_principal_request::Column::AppId.eq(app_id))
        .filter(service_principal_request::Column::Status.is_in([
            Status::PendingSignIn,
            Status::Creating,
            Status::Propagating,
        ]))
        .one(txn)
        .await?;
    if let Some(open) = open {
        return Ok(open);
    }
    let now = now();
    let request = service_principal_request::Model {
        id: Uuid::new_v4(),
        msp_id: client.msp_id.clone(),
        client_id: client.id,
        app_display_name: Some(display_name_or_id(app_id)),
        app_id: app_id.to_owned(),
        status: Status::PendingSignIn,
        problem_code: None,
        problem_message: None,
        problem_remediation: None,
        graph_object_id: None,
        attempts: 0,
        next_attempt_at: None,
        claimed_until: None,
        created_by: created_by.to_owned(),
        created_at: now,
        updated_at: now,
        completed_at: None,
        tenant_id: None,
        propagating_since: None,
    };
    service_principal_request::Entity::insert(service_principal_request::ActiveModel::from(
        request.clone(),
    ))
    .exec_without_returning(txn)
    .await?;
    record(txn, &request, actor, None, json!({ "reason": "requested" })).await?;
    crate::events::request(txn, &request).await?;
    Ok(request)
}

/// A sign-in link for an admin of the client's tenant; it replaces any earlier link of the
/// request.
async fn sign_in_link(
    db: &DatabaseConnection,
    consents: &Consents,
    microsoft: &Microsoft,
    client: &entity::client::Model,
    viewer: &Viewer,
    request: &service_principal_request::Model,
    lifetime: Duration,
) -> Result<Url> {
    let txn = begin_write(db).await?;
    store::cancel_open_for_request(
        &txn,
        request.id,
        &client.name,
        "a newer link was sent",
        now(),
    )
    .await?;
    let (_, secrets) = store::open(
        &txn,
        &consents.flow_keys,
        NewFlow {
            kind: OAuthFlowKind::ServicePrincipalSignIn,
            client,
            created_by: &viewer.subject,
            lifetime,
            requested_permissions: None,
            service_principal_request_id: Some(request.id),
        },
    )
    .await?;
    txn.commit().await?;
    tracing::info!(request = %request.id, app = %request.app_id, "service principal sign-in link created");
    let hint = TenantHint::for_client(client.azure_tenant_id, client.domain.as_deref());
    Ok(microsoft.authorize_url(
        &hint,
        &microsoft.config().repair_sign_in_scopes(),
        &secrets,
        None,
    ))
}

fn app_id_or_default(app_id: Option<&str>) -> Result<String> {
    let raw = app_id.map(str::trim).filter(|a| !a.is_empty());
    let Some(raw) = raw else {
        return Ok(TEAMS_ADMIN_API_APP_ID.to_owned());
    };
    match parse_app_id(raw) {
        Some(id) => Ok(id.to_string()),
        None => Err(Error::bad_input(
            "appId",
            format!(
                "{raw:?} is not an application id: expected a GUID like {TEAMS_ADMIN_API_APP_ID} \
                 (the Skype and Teams Tenant Admin API, the default)"
            ),
        )),
    }
}

/// Whose authority a repair acts with, written on the step that starts creating.
#[derive(Clone, Debug)]
pub(crate) enum Authority {
    /// An admin of the client's tenant signed in for this repair.
    AdminSignIn {
        user_principal_name: Option<String>,
        user_object_id: Option<String>,
    },
    /// A stored delegated consent holding `Directory.AccessAsUser.All`: nobody signed in
    /// for this repair, so the trail names the user whose token was used.
    StoredConsent {
        consent_id: Uuid,
        user_principal_name: String,
        user_object_id: String,
    },
}

impl Authority {
    fn audit_details(&self) -> serde_json::Value {
        match self {
            Self::AdminSignIn {
                user_principal_name,
                user_object_id,
            } => json!({
                "actedWith": "ADMIN_SIGN_IN",
                "userPrincipalName": user_principal_name,
                "userObjectId": user_object_id,
            }),
            Self::StoredConsent {
                consent_id,
                user_principal_name,
                user_object_id,
            } => json!({
                "actedWith": "STORED_DELEGATED_CONSENT",
                "delegatedConsentId": consent_id,
                "userPrincipalName": user_principal_name,
                "userObjectId": user_object_id,
            }),
        }
    }
}

/// Acts with an admin's token: looks the principal up, creates it when absent, and starts
/// the replication wait. Every step is written with its audit event; the first names whose
/// token it acts with.
pub(crate) async fn act(
    db: &DatabaseConnection,
    consents: &Consents,
    pending: &service_principal_request::Model,
    tenant: Uuid,
    token: SecretString,
    authority: &Authority,
    actor: &Actor,
) -> Result<()> {
    let microsoft = consents.microsoft()?;
    let txn = begin_write(db).await?;
    // Every path to a creation passes here (checklist 96).
    if !consents.repairable_apps.contains(&pending.app_id) {
        tracing::warn!(request = %pending.id, app = %pending.app_id, "refused to repair an application that is not allow-listed");
        fail(&txn, pending, &not_repairable(&pending.app_id), actor).await?;
        txn.commit().await?;
        return Ok(());
    }
    let Some(request) = step(
        &txn,
        pending.id,
        RequestEvent::Acting,
        actor,
        authority.audit_details(),
        |r| {
            r.tenant_id = Set(Some(tenant.to_string()));
        },
    )
    .await?
    else {
        return Ok(());
    };
    // The request no longer waits for a sign-in: a link still out (this went ahead with a
    // stored consent) must not later redeem a code and promise a creation it will not do.
    store::cancel_open_for_request(
        &txn,
        request.id,
        "",
        "the repair went ahead without this sign-in",
        now(),
    )
    .await?;
    txn.commit().await?;
    let result = create_at_microsoft(microsoft, &token, &request.app_id).await;
    match result {
        Ok(Acted::Created(object_id)) => {
            let consent_id = match authority {
                Authority::StoredConsent { consent_id, .. } => Some(*consent_id),
                Authority::AdminSignIn { .. } => None,
            };
            // Kept to watch the new principal replicate.
            let held = StdDuration::from_secs(50 * 60);
            consents
                .sign_in_tokens
                .put(&request, consent_id, token, held);
            propagating(db, &request, object_id, actor).await
        }
        Ok(Acted::Exists(object_id)) => {
            let found = RequestEvent::Found;
            finish_ready(db, request.id, found, object_id, None, actor).await
        }
        Err(error) => {
            tracing::warn!(%error, "creating the service principal failed");
            let txn = begin_write(db).await?;
            fail(&txn, &request, &creation_problem(&error), actor).await?;
            txn.commit().await?;
            Ok(())
        }
    }
}

/// A new principal was created: the request watches it replicate.
async fn propagating(
    db: &DatabaseConnection,
    request: &service_principal_request::Model,
    object_id: String,
    actor: &Actor,
) -> Result<()> {
    let now = now();
    let txn = begin_write(db).await?;
    step(
        &txn,
        request.id,
        RequestEvent::Created,
        actor,
        json!({}),
        |r| {
            r.graph_object_id = Set(Some(object_id));
            r.propagating_since = Set(Some(now));
            r.next_attempt_at = Set(Some(now));
            r.attempts = Set(0);
        },
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Looks the principal up, and creates it when absent: `az ad sp create` fails on an
/// existing principal; Consentry calls that success.
async fn create_at_microsoft(
    microsoft: &Microsoft,
    token: &SecretString,
    app_id: &str,
) -> std::result::Result<Acted, MicrosoftError> {
    if let Some(existing) = microsoft.find_service_principal(token, app_id).await? {
        return Ok(Acted::Exists(Some(existing.id)));
    }
    Ok(
        match microsoft.create_service_principal(token, app_id).await? {
            Creation::Created(created) => Acted::Created(created.id),
            Creation::AlreadyExists => Acted::Exists(None),
        },
    )
}

/// What acting achieved.
enum Acted {
    /// Created, with its object id: now it must replicate.
    Created(String),
    /// It was there already (found, or Graph answered 409).
    Exists(Option<String>),
}

fn creation_problem(error: &MicrosoftError) -> Problem {
    let mut problem = error.problem();
    if let MicrosoftError::Graph { status: 403, .. } = error {
        problem.remediation = "Microsoft refused: the admin who signed in may not create service \
            principals. Sign in as a Global Administrator, Application Administrator or Cloud \
            Application Administrator of the client's tenant, then start the repair again."
            .to_owned();
    }
    problem
}

/// The requests of several clients at once, each client's newest first.
pub(crate) async fn for_clients<C: ConnectionTrait>(
    db: &C,
    client_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<service_principal_request::Model>>, DbErr> {
    let rows = service_principal_request::Entity::find()
        .filter(service_principal_request::Column::ClientId.is_in(client_ids.iter().copied()))
        .order_by_desc(service_principal_request::Column::CreatedAt)
        .order_by_asc(service_principal_request::Column::Id)
        .all(db)
        .await?;
    Ok(super::clients::by_client(rows, |row| row.client_id))
}

/// One request by id, whoever owns it (callers check sight).
pub(crate) async fn find<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Option<service_principal_request::Model>, DbErr> {
    service_principal_request::Entity::find_by_id(id)
        .one(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::repairable::REPAIRABLE_APP_IDS_SETTING, microsoft::known::TEAMS_ADMIN_API,
    };

    #[test]
    fn checklist_96_only_the_teams_admin_api_and_listed_apps_are_repairable() {
        assert_eq!(TEAMS_ADMIN_API.to_string(), TEAMS_ADMIN_API_APP_ID);
        let graph = "00000003-0000-0000-c000-000000000000";
        let only_teams = RepairableApps::default();
        assert!(only_teams.contains(TEAMS_ADMIN_API_APP_ID));
        assert!(only_teams.contains(&TEAMS_ADMIN_API_APP_ID.to_uppercase()));
        assert!(!only_teams.contains(graph));
        assert!(!only_teams.contains("not an id"));

        let listed =
            RepairableApps::parse(&[" 00000003-0000-0000-C000-000000000000 ", ""]).unwrap();
        assert!(listed.contains(graph) && listed.contains(TEAMS_ADMIN_API_APP_ID));
        assert!(!listed.contains("797f4846-ba00-4fd7-ba43-dac1f8f63013"));
        assert_eq!(
            RepairableApps::parse(&["00000000-0000-0000-0000-000000000000"]).unwrap_err(),
            "00000000-0000-0000-0000-000000000000"
        );

        let refusal = RepairableApps::refusal(graph);
        assert!(
            refusal.contains(REPAIRABLE_APP_IDS_SETTING) && refusal.contains("Microsoft Graph"),
            "{refusal}"
        );
        assert_eq!(display_name_or_id(graph), "Microsoft Graph");
        let unknown = "11111111-2222-3333-4444-555555555555";
        assert_eq!(display_name_or_id(unknown), unknown);
    }

    #[test]
    fn the_app_id_defaults_to_the_teams_admin_api_and_must_be_a_guid() {
        assert_eq!(app_id_or_default(None).unwrap(), TEAMS_ADMIN_API_APP_ID);
        assert_eq!(
            app_id_or_default(Some("  ")).unwrap(),
            TEAMS_ADMIN_API_APP_ID
        );
        assert_eq!(
            app_id_or_default(Some("00000003-0000-0000-C000-000000000000")).unwrap(),
            "00000003-0000-0000-c000-000000000000"
        );
        for bad in [
            "teams",
            "48ac35b89aa84d74927d1f4a14a0b239",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(
                app_id_or_default(Some(bad)).unwrap_err().code(),
                crate::error_code::ErrorCode::BadUserInput,
                "{bad}"
            );
        }
    }
}
