//! Delegated consents (docs/design.md §1): a named client-tenant user grants chosen delegated
//! permissions; Consentry keeps their refresh token encrypted, renews it well before
//! Microsoft's 90-day inactivity limit, and erases it on revocation. Tokens never leave the
//! server: not in GraphQL, logs or errors.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use entity::{
    StringList, delegated_consent,
    enums::{AuditAction, DelegatedConsentStatus, OAuthFlowKind},
    oauth_flow,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr, sea_query::Expr,
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

/// How long one refresh may hold a consent before another may take over.
const REFRESH_LEASE: Duration = Duration::minutes(2);
/// A keep-alive that could not reach Microsoft is tried again after this.
const RETRY_AFTER_FAILURE: Duration = Duration::minutes(30);

/// A delegated permission Consentry can ask a client-tenant user for (docs/design.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DelegatedPermission {
    MailSend,
    AzureUserImpersonation,
    UserAuthenticationMethodReadWriteAll,
    DirectoryAccessAsUserAll,
}

/// What the "New Consent" page shows about a permission (reference §8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermissionInfo {
    pub permission: DelegatedPermission,
    /// The scope's name at its resource, e.g. `Mail.Send`.
    pub scope: &'static str,
    pub resource: &'static str,
    pub resource_app_id: &'static str,
    pub display_name: &'static str,
    pub description: &'static str,
    /// Whether only an admin can grant it (others get the rest of what they chose).
    pub admin_consent_required: bool,
    /// Recommended for password resets (all four are, as the runbook says).
    pub recommended: bool,
}

impl DelegatedPermission {
    pub const ALL: [Self; 4] = [
        Self::MailSend,
        Self::AzureUserImpersonation,
        Self::UserAuthenticationMethodReadWriteAll,
        Self::DirectoryAccessAsUserAll,
    ];

    /// The name stored in the database (and used in GraphQL).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MailSend => "MAIL_SEND",
            Self::AzureUserImpersonation => "AZURE_USER_IMPERSONATION",
            Self::UserAuthenticationMethodReadWriteAll => {
                "USER_AUTHENTICATION_METHOD_READ_WRITE_ALL"
            }
            Self::DirectoryAccessAsUserAll => "DIRECTORY_ACCESS_AS_USER_ALL",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    pub fn info(self) -> PermissionInfo {
        let graph = |scope, display_name, description, admin| PermissionInfo {
            permission: self,
            scope,
            resource: "Microsoft Graph",
            resource_app_id: GRAPH_APP_ID,
            display_name,
            description,
            admin_consent_required: admin,
            recommended: true,
        };
        match self {
            Self::MailSend => graph(
                "Mail.Send",
                "Send mail as a user",
                "Send mail as the user who consents (password-reset notices).",
                false,
            ),
            Self::UserAuthenticationMethodReadWriteAll => graph(
                "UserAuthenticationMethod.ReadWrite.All",
                "Read and write all users' authentication methods",
                "Reset passwords and manage sign-in methods of the tenant's users.",
                true,
            ),
            Self::DirectoryAccessAsUserAll => graph(
                "Directory.AccessAsUser.All",
                "Access the directory as the signed-in user",
                "Act in the directory with the consenting admin's own rights (also lets Consentry create a missing service principal without another sign-in).",
                true,
            ),
            Self::AzureUserImpersonation => PermissionInfo {
                permission: self,
                scope: "user_impersonation",
                resource: "Azure Service Management",
                resource_app_id: AZURE_APP_ID,
                display_name: "Access Azure Service Management as organization users",
                description: "Manage Azure resources as the user who consents.",
                admin_consent_required: false,
                recommended: true,
            },
        }
    }

    pub(crate) fn is_graph(self) -> bool {
        self != Self::AzureUserImpersonation
    }

    /// The full scope to request, at the configured Graph.
    pub(crate) fn scope(self, microsoft: &MicrosoftConfig) -> String {
        match self {
            Self::AzureUserImpersonation => AZURE_USER_IMPERSONATION_SCOPE.to_owned(),
            other => microsoft.graph_scope(other.info().scope),
        }
    }
}

/// Parses stored permission names, skipping (and logging) any this build does not know.
pub fn permissions(stored: &[String]) -> Vec<DelegatedPermission> {
    stored
        .iter()
        .filter_map(|name| {
            let parsed = DelegatedPermission::parse(name);
            if parsed.is_none() {
                tracing::warn!(permission = %name, "unknown delegated permission in the database");
            }
            parsed
        })
        .collect()
}

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
pub async fn start(
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
        status: DelegatedConsentStatus::Active,
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

/// Claims a consent for one refresh (checklist 93): a conditional UPDATE, so of several
/// instances or requests one refreshes and the rest wait for it. Returns the row as it is
/// once claimed — with the refresh token the previous refresh stored, never an older copy.
async fn claim(
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
enum Refreshed {
    /// A working access token for `scopes`; the rotated refresh token is stored.
    Ok(SecretString),
    /// Microsoft refused the refresh token: the consent is now `EXPIRED`.
    Expired,
    /// Microsoft could not be asked; nothing changed.
    Unavailable(String),
}

/// Refreshes a claimed consent for `scopes`, stores the rotated refresh token in the same
/// UPDATE that releases the claim, and expires the consent on `invalid_grant`.
async fn refresh(
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
async fn renewed(
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
        .filter(delegated_consent::Column::Status.eq(DelegatedConsentStatus::Active))
        .exec(&txn)
        .await?;
    if let Some(renewed) = find(&txn, consent.id).await? {
        crate::events::consent(&txn, &renewed).await?;
    }
    txn.commit().await?;
    Ok(())
}

async fn release(db: &DatabaseConnection, id: Uuid, next: Option<DateTime<Utc>>) -> Result<()> {
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

/// The consent no longer works: `EXPIRED` with the reason, its ciphertext erased.
async fn expire(
    db: &DatabaseConnection,
    consent: &delegated_consent::Model,
    reason: &str,
    actor: &Actor,
) -> Result<()> {
    let txn = begin_write(db).await?;
    let updated = delegated_consent::Entity::update_many()
        .col_expr(
            delegated_consent::Column::Status,
            Expr::value(DelegatedConsentStatus::Expired),
        )
        .col_expr(
            delegated_consent::Column::StatusReason,
            Expr::value(reason.to_owned()),
        )
        .col_expr(
            delegated_consent::Column::RefreshToken,
            Expr::value(Option::<Vec<u8>>::None),
        )
        .col_expr(
            delegated_consent::Column::RefreshTokenKeyId,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            delegated_consent::Column::NextRefreshAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            delegated_consent::Column::RefreshingUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(delegated_consent::Column::UpdatedAt, Expr::value(now()))
        .filter(delegated_consent::Column::Id.eq(consent.id))
        .filter(delegated_consent::Column::Status.eq(DelegatedConsentStatus::Active))
        .exec(&txn)
        .await?;
    if updated.rows_affected == 1 {
        if let Some(now_expired) = find(&txn, consent.id).await? {
            crate::events::consent(&txn, &now_expired).await?;
        }
        audit::record(
            &txn,
            actor,
            &consent.msp_id,
            Some(consent.client_id),
            AuditAction::DelegatedConsentExpired,
            json!({ "consentId": consent.id, "user": consent.user_principal_name, "reason": reason }),
        )
        .await?;
        tracing::warn!(consent = %consent.id, "a delegated consent expired");
    }
    txn.commit().await?;
    Ok(())
}

/// The Graph scopes a consent's refresh asks for: `User.Read` and its granted Graph
/// permissions.
fn graph_scopes(microsoft: &Microsoft, consent: &delegated_consent::Model) -> Vec<String> {
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
async fn wait_for_refresh(db: &DatabaseConnection, id: Uuid) -> Result<delegated_consent::Model> {
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
pub async fn verify(
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

/// `revokeDelegatedConsent`: `REVOKED`, ciphertext erased, audited.
#[tracing::instrument(skip_all, fields(msp = %viewer.msp_id(), consent = %id))]
pub async fn revoke(
    db: &DatabaseConnection,
    consents: &Consents,
    viewer: &Viewer,
    id: Uuid,
) -> Result<delegated_consent::Model> {
    access::require_writer(viewer)?;
    let consent = writable(db, viewer, id).await?;
    let txn = begin_write(db).await?;
    let now = now();
    delegated_consent::Entity::update_many()
        .col_expr(
            delegated_consent::Column::Status,
            Expr::value(DelegatedConsentStatus::Revoked),
        )
        .col_expr(
            delegated_consent::Column::StatusReason,
            Expr::value(format!("revoked by {}", viewer.subject)),
        )
        .col_expr(
            delegated_consent::Column::RefreshToken,
            Expr::value(Option::<Vec<u8>>::None),
        )
        .col_expr(
            delegated_consent::Column::RefreshTokenKeyId,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            delegated_consent::Column::NextRefreshAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(delegated_consent::Column::UpdatedAt, Expr::value(now))
        .filter(delegated_consent::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    if let Some(revoked) = find(&txn, id).await? {
        crate::events::consent(&txn, &revoked).await?;
    }
    audit::record(
        &txn,
        &Actor::from(viewer),
        &consent.msp_id,
        Some(consent.client_id),
        AuditAction::DelegatedConsentRevoked,
        json!({ "consentId": id, "user": consent.user_principal_name, "was": format!("{:?}", consent.status) }),
    )
    .await?;
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

/// The keep-alive sweep: refreshes every active consent that is due, well before
/// Microsoft's 90-day inactivity limit.
pub async fn keep_alive(db: &DatabaseConnection, consents: &Consents) -> Result<usize> {
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
pub struct AdminToken {
    pub token: SecretString,
    pub tenant: Uuid,
    pub consent_id: Uuid,
    pub user_principal_name: String,
    pub user_object_id: String,
}

/// A Graph token that can act as an admin of the client's tenant, from an active consent
/// holding `Directory.AccessAsUser.All` (service principal repair without a sign-in).
pub async fn admin_token(
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
pub async fn rotate_keys(db: &DatabaseConnection, keys: &TokenKeys) -> Result<(u64, u64)> {
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
    let mut grouped: HashMap<Uuid, Vec<_>> = HashMap::new();
    for row in rows {
        grouped.entry(row.client_id).or_default().push(row);
    }
    Ok(grouped)
}

/// One consent by id, whoever owns it (callers check sight).
pub async fn find<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Option<delegated_consent::Model>, DbErr> {
    delegated_consent::Entity::find_by_id(id).one(db).await
}
