//! "Authorise": the Graph API tile's admin-consent flow end to end (docs/design.md §1). Consent
//! links, the callback's verdict (verified with an app-only token, never taken on trust),
//! manual and scheduled re-verification, and expiry of links nobody used. Every transition
//! is written in one transaction with its audit event.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use entity::{
    StringList, client,
    enums::{AuditAction, GraphApiProblemCode, GraphApiStatus, OAuthFlowKind, OAuthFlowStatus},
    graph_api_tile, oauth_flow,
};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait,
    sea_query::{Expr, LockType},
};
use serde_json::{Value, json};
use url::Url;
use uuid::Uuid;

use super::{
    Error, Result, access,
    audit::{self, Actor},
    callback::Answer,
    clients::{self, ClientView},
    crypto::{FlowKeys, TokenKeys},
    now,
    oauth_flows::{self, FlowOutcome},
    service_principal_requests::{
        RepairableApps, SignInTokens, TEAMS_ADMIN_API_APP_ID, TEAMS_ADMIN_API_DISPLAY_NAME,
    },
    tenant_proof::TenantProof,
};
use crate::{
    auth::Viewer,
    db::{WriteTransaction, begin_write},
    microsoft::{Microsoft, MicrosoftError, Problem, TenantHint, identity::FlowSecrets},
};

/// Lifetime of a consent link when the caller gives none.
pub const DEFAULT_LINK_LIFETIME_MINUTES: i64 = 15;
/// Longest a consent link may live: an MSP emails links to clients' admins.
pub const MAX_LINK_LIFETIME_MINUTES: i64 = 7 * 24 * 60;
/// A re-verification that could not reach Microsoft is tried again after this.
const VERIFY_RETRY: Duration = Duration::minutes(10);
/// How many due tiles or expired flows one sweep takes on.
const SWEEP_BATCH: u64 = 50;

/// What the consent flows need besides the database.
#[derive(Clone, Debug)]
pub struct Consents {
    /// Microsoft's identity platform and Graph; `None` without an app registration.
    pub microsoft: Option<Arc<Microsoft>>,
    /// How often an authorised tile is re-verified (`CONSENTRY_REVERIFY_INTERVAL`).
    pub reverify_interval: std::time::Duration,
    /// Admin sign-in tokens of service principal repairs, in memory only.
    pub sign_in_tokens: Arc<SignInTokens>,
    /// Keys that encrypt stored refresh tokens; `None` when not configured.
    pub token_keys: Option<Arc<TokenKeys>>,
    /// Keys that seal the PKCE verifiers of pending flows: the token keys, else one derived
    /// from the Microsoft client secret.
    pub flow_keys: FlowKeys,
    /// How often a delegated consent's refresh token is renewed.
    pub keepalive_interval: std::time::Duration,
    /// How long a callback may work on a flow it claimed (and a repair stay `CREATING`)
    /// before a sweep takes it for interrupted (`CONSENTRY_CALLBACK_LEASE`, checklist 92).
    pub callback_lease: Duration,
    /// The applications whose service principals repairs may create
    /// (`CONSENTRY_MS_REPAIRABLE_APP_IDS`, checklist 96).
    pub repairable_apps: RepairableApps,
}

impl Consents {
    pub fn new(
        microsoft: Option<Arc<Microsoft>>,
        reverify_interval: std::time::Duration,
        keepalive_interval: std::time::Duration,
        token_keys: Option<Arc<TokenKeys>>,
    ) -> Self {
        let flow_keys = FlowKeys::new(
            token_keys.clone(),
            microsoft.as_deref().map(|m| &m.config().client_secret),
        );
        Self {
            microsoft,
            reverify_interval,
            sign_in_tokens: Arc::default(),
            token_keys,
            flow_keys,
            keepalive_interval,
            callback_lease: oauth_flows::EXCHANGE_LEASE,
            repairable_apps: RepairableApps::default(),
        }
    }

    /// With more applications to repair than the Teams admin API (see
    /// [`Consents::repairable_apps`]).
    pub fn with_repairable_apps(mut self, apps: RepairableApps) -> Self {
        self.repairable_apps = apps;
        self
    }

    /// With another lease for interrupted callbacks (see [`Consents::callback_lease`]).
    pub fn with_callback_lease(mut self, lease: std::time::Duration) -> Self {
        self.callback_lease = Duration::from_std(lease).unwrap_or(oauth_flows::EXCHANGE_LEASE);
        self
    }

    /// When a consent refreshed at `now` is next renewed.
    pub fn next_keepalive(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + Duration::from_std(self.keepalive_interval).unwrap_or(Duration::days(7))
    }
}

impl Consents {
    /// The Microsoft client, or the error naming the settings to set.
    pub fn microsoft(&self) -> Result<&Microsoft> {
        self.microsoft.as_deref().ok_or_else(|| {
            Error::NotConfigured(
                "Consentry has no Microsoft app registration: set CONSENTRY_MS_CLIENT_ID and \
                 CONSENTRY_MS_CLIENT_SECRET (and register CONSENTRY_PUBLIC_URL/oauth/callback as \
                 its redirect URI), then restart. `consentry demo` runs with a built-in simulator."
                    .to_owned(),
            )
        })
    }

    fn next_verification(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + Duration::from_std(self.reverify_interval).unwrap_or(Duration::hours(6))
    }
}

/// A consent link to send to the client's admin.
#[derive(Clone, Debug)]
pub struct ConsentLink {
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
pub async fn authorise(
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

    let now = now();
    let expires_at = now + lifetime;
    let secrets = FlowSecrets::new();
    // Random (v4): the id also names the flow's result page.
    let id = Uuid::new_v4();
    let sign_in =
        oauth_flows::store_sign_in(&consents.flow_keys, &view.client.msp_id, id, &secrets)?;
    let superseded = oauth_flows::cancel_open(
        &txn,
        client_id,
        &view.client.name,
        &[OAuthFlowKind::AdminConsent],
        "a newer link was sent",
        now,
    )
    .await?;
    let flow = oauth_flow::Model {
        id,
        msp_id: view.client.msp_id.clone(),
        client_id,
        kind: OAuthFlowKind::AdminConsent,
        state_hash: oauth_flows::state_hash(secrets.state.secret()),
        // The sign-in that proves the tenant is a code flow with PKCE and a nonce.
        sealed_pkce_verifier: Some(sign_in.sealed_pkce_verifier),
        pkce_verifier_key_id: Some(sign_in.pkce_verifier_key_id),
        nonce_hash: Some(sign_in.nonce_hash),
        expected_tenant: view.client.azure_tenant_id.map(|t| t.to_string()),
        requested_permissions: None,
        service_principal_request_id: None,
        status: OAuthFlowStatus::Pending,
        outcome: None,
        created_by: viewer.subject.clone(),
        created_at: now,
        expires_at,
        completed_at: None,
        claimed_at: None,
        consent_state_hash: None,
        tenant_proof: None,
    };
    oauth_flow::Entity::insert(oauth_flow::ActiveModel::from(flow.clone()))
        .exec_without_returning(&txn)
        .await?;

    let actor = Actor::from(viewer);
    let mut tile = view.tile.clone();
    if tile.status != GraphApiStatus::Authorised {
        tile = write_tile(
            &txn,
            &view.tile,
            TileChange::to(GraphApiStatus::AwaitingConsent),
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

pub(super) fn link_lifetime(minutes: Option<i64>) -> Result<Duration> {
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

/// What a callback concluded, before it is written.
pub(super) enum Verdict {
    /// Verified: the tenant an admin proved granted every required permission.
    Authorised {
        proof: TenantProof,
        granted: Vec<String>,
    },
    /// The consent failed or proved insufficient.
    Failed {
        problem: Problem,
        granted: Vec<String>,
        missing: Vec<String>,
    },
    /// Consentry's own configuration stopped it (our secret, our redirect URI, no app
    /// registration): an operator's problem, which must not mark the client's tile failed.
    Ours(Problem),
}

impl Verdict {
    pub(super) fn failed(problem: Problem) -> Self {
        if problem.ours {
            return Self::Ours(problem);
        }
        Self::Failed {
            problem,
            granted: Vec::new(),
            missing: Vec::new(),
        }
    }
}

/// Acts on the callback of admin consent's second step (Microsoft's consent page), given the
/// transaction that claimed it. Success is decided by the absence of `error`, the redirect's
/// `tenant` must be the one the admin proved when signing in, and the consent is then
/// verified with an app-only token for that tenant (checklist 13, 14, 95).
///
/// Two commits at most: the claim together with the tile's `VERIFYING` (or, when there is
/// nothing to ask Microsoft, with the verdict), and the verdict after Microsoft answered.
/// No transaction is open while Microsoft is asked.
#[tracing::instrument(skip_all, fields(flow = %flow.id, client = %flow.client_id))]
pub async fn complete_consent(
    db: &DatabaseConnection,
    claim: WriteTransaction,
    consents: &Consents,
    flow: &oauth_flow::Model,
    answer: &Answer<'_>,
) -> Result<FlowOutcome> {
    let Some(view) = locked_view(&claim, flow.client_id).await? else {
        // The client was deleted (and with it this flow) while we were on our way.
        return Ok(FlowOutcome::cancelled(flow, "", "the client was removed"));
    };
    let (microsoft, proof) = match to_verify(consents, flow, answer) {
        Verification::Ask { microsoft, proof } => (microsoft, proof),
        Verification::Settled(verdict) => {
            return conclude(db, claim, view, consents, flow, verdict).await;
        }
    };
    let tenant = proof.tenant_id;
    if !matches!(
        view.tile.status,
        GraphApiStatus::Authorised | GraphApiStatus::Verifying
    ) {
        // Watchers see VERIFYING while Microsoft is asked.
        write_tile(
            &claim,
            &view.tile,
            TileChange::to(GraphApiStatus::Verifying),
            &Actor::callback(&flow.msp_id),
            &flow.msp_id,
            json!({ "reason": "consent received; verifying", "flowId": flow.id, "tenant": tenant }),
        )
        .await?;
    }
    claim.commit().await?;

    let verdict = match check_tenant(microsoft, tenant, view.client.domain.as_deref()).await {
        Ok(check) if check.missing.is_empty() => Verdict::Authorised {
            proof,
            granted: check.granted,
        },
        Ok(check) => Verdict::Failed {
            problem: permissions_missing(&check.missing),
            granted: check.granted,
            missing: check.missing,
        },
        Err(CheckFailure::WrongTenant(p)) => Verdict::failed(p),
        Err(CheckFailure::Microsoft(e)) => {
            tracing::warn!(error = %e, "could not verify the consent");
            Verdict::failed(e.problem())
        }
    };
    let txn = begin_write(db).await?;
    let Some(view) = locked_view(&txn, flow.client_id).await? else {
        return Ok(FlowOutcome::cancelled(flow, "", "the client was removed"));
    };
    conclude(db, txn, view, consents, flow, verdict).await
}

/// What a consent step's callback leads to.
enum Verification<'a> {
    /// Ask Microsoft what the proven tenant granted.
    Ask {
        microsoft: &'a Microsoft,
        proof: TenantProof,
    },
    /// There is nothing Microsoft could confirm: this is the verdict.
    Settled(Verdict),
}

fn to_verify<'a>(
    consents: &'a Consents,
    flow: &oauth_flow::Model,
    answer: &Answer<'_>,
) -> Verification<'a> {
    if let Some(refusal) = &answer.refusal {
        return Verification::Settled(Verdict::failed(refusal.clone()));
    }
    let Some(proof) = TenantProof::stored(flow.tenant_proof.as_ref()) else {
        return Verification::Settled(Verdict::failed(problem(
            GraphApiProblemCode::Unknown,
            "No admin signed in for this consent, so the tenant was never proven. Send a new link.",
        )));
    };
    // The redirect's `tenant` is never adopted, only compared with the proven one.
    let named = answer.tenant.and_then(|t| Uuid::try_parse(t.trim()).ok());
    if named != Some(proof.tenant_id) {
        return Verification::Settled(Verdict::failed(wrong_tenant(&format!(
            "Microsoft's answer did not name the tenant {} signed in to ({}), so Consentry did \
             not use it. Send a new link, and have the admin accept the consent in the same \
             browser window they signed in with.",
            proof.signed_in_as, proof.tenant_id
        ))));
    }
    let Ok(microsoft) = consents.microsoft() else {
        return Verification::Settled(no_microsoft());
    };
    Verification::Ask { microsoft, proof }
}

/// The verdict when no Microsoft app registration is configured: an operator's problem.
pub(super) fn no_microsoft() -> Verdict {
    let mut p = problem(
        GraphApiProblemCode::IdentityProviderUnavailable,
        "Consentry has no Microsoft app registration configured, so it cannot complete the \
         consent. An operator must set CONSENTRY_MS_CLIENT_ID and CONSENTRY_MS_CLIENT_SECRET.",
    );
    p.ours = true;
    Verdict::Ours(p)
}

/// Writes the verdict in `txn`, on the client `view` locked in it: the flow's outcome, the
/// tile, the client's tenant, and the audit trail, committed together. A flow someone else
/// finished meanwhile keeps their outcome.
pub(super) async fn conclude(
    db: &DatabaseConnection,
    txn: WriteTransaction,
    view: ClientView,
    consents: &Consents,
    flow: &oauth_flow::Model,
    verdict: Verdict,
) -> Result<FlowOutcome> {
    let now = now();
    let ClientView { client, tile } = view;
    let reconsent = tile.status == GraphApiStatus::Authorised;
    let mut verdict = verdict;
    // Within one MSP a tenant belongs to one client (checklist 15); checked again here, in
    // the transaction that records it.
    if let Verdict::Authorised { proof, .. } = &verdict
        && client.azure_tenant_id != Some(proof.tenant_id)
        && let Some(problem) = tenant_taken(&txn, &client, proof.tenant_id).await?
    {
        verdict = Verdict::failed(problem);
    }

    let actor = Actor::callback(&flow.msp_id);
    let base =
        |succeeded: bool, status: GraphApiStatus, headline: String, next: String| FlowOutcome {
            client_id: client.id,
            client_name: client.name.clone(),
            succeeded,
            topic: oauth_flows::topic(flow.kind).to_owned(),
            status: status_name(status).to_owned(),
            headline,
            next_step: next,
            microsoft_message: None,
        };
    let (flow_status, outcome, change, details) = match &verdict {
        Verdict::Authorised { proof, granted } => {
            let tenant = &proof.tenant_id;
            if client.azure_tenant_id.is_none() {
                client::ActiveModel {
                    id: Set(client.id),
                    azure_tenant_id: Set(Some(*tenant)),
                    updated_at: Set(now),
                    ..Default::default()
                }
                .update(&txn)
                .await?;
            }
            let change = TileChange {
                status: GraphApiStatus::Authorised,
                problem: None,
                granted: Some(granted.clone()),
                missing: Some(Vec::new()),
                authorised_at: Some(now),
                verified_at: Some(now),
                next_verification_at: Some(consents.next_verification(now)),
                proof: Some(proof.clone()),
            };
            (
                OAuthFlowStatus::Succeeded,
                base(
                    true,
                    GraphApiStatus::Authorised,
                    format!("Microsoft Graph access for {} is authorised.", client.name),
                    "Nothing more to do: you can close this window.".to_owned(),
                ),
                Some(change),
                json!({
                    "result": "AUTHORISED",
                    "tenant": tenant,
                    "grantedPermissions": granted,
                    "provenBy": proof.signed_in_as,
                }),
            )
        }
        Verdict::Failed {
            problem,
            granted,
            missing,
        } => {
            let mut outcome = base(
                false,
                if reconsent {
                    GraphApiStatus::Authorised
                } else {
                    GraphApiStatus::Failed
                },
                failure_headline(problem.code, &client.name),
                // The remediation is written for the MSP's technician; the page is read by the
                // client's admin, who passes it on.
                format!("For your IT provider: {}", problem.remediation),
            );
            outcome.microsoft_message = problem.message.clone();
            if reconsent {
                outcome.next_step = format!(
                    "{} The earlier authorisation still stands.",
                    problem.remediation
                );
            }
            // A failed re-consent leaves a working authorisation alone.
            let change = (!reconsent).then(|| TileChange {
                status: GraphApiStatus::Failed,
                problem: Some(problem.clone()),
                granted: Some(granted.clone()),
                missing: Some(missing.clone()),
                authorised_at: None,
                verified_at: None,
                next_verification_at: None,
                proof: None,
            });
            (
                OAuthFlowStatus::Failed,
                outcome,
                change,
                json!({ "result": "FAILED", "problem": problem_json(problem) }),
            )
        }
        Verdict::Ours(problem) => {
            let outcome = base(
                false,
                if reconsent {
                    GraphApiStatus::Authorised
                } else {
                    GraphApiStatus::NotAuthorised
                },
                "Consentry could not complete the authorisation because of a problem in its own \
                 configuration, not in your tenant."
                    .to_owned(),
                "Your IT provider has been alerted. Once they have fixed it they will send you a new link."
                    .to_owned(),
            );
            tracing::error!(
                aadsts = ?problem.aadsts,
                "a consent could not be completed because of Consentry's own configuration: {}",
                problem.remediation
            );
            let change = (!reconsent).then(|| TileChange::to(GraphApiStatus::NotAuthorised));
            (
                OAuthFlowStatus::Failed,
                outcome,
                change,
                json!({ "result": "OPERATOR_PROBLEM", "problem": problem_json(problem) }),
            )
        }
    };

    if !oauth_flows::finish(
        &txn,
        flow.id,
        &[OAuthFlowStatus::Exchanging],
        flow_status,
        &outcome,
        now,
    )
    .await?
    {
        drop(txn);
        let current = oauth_flows::find(db, flow.id).await?;
        return Ok(current
            .map(|f| oauth_flows::outcome_of(&f))
            .unwrap_or_else(|| FlowOutcome::cancelled(flow, &client.name, "it was cancelled")));
    }
    if let Some(change) = change {
        write_tile(
            &txn,
            &tile,
            change,
            &actor,
            &flow.msp_id,
            json!({ "reason": "consent callback", "flowId": flow.id }),
        )
        .await?;
    }
    let mut details = details;
    details["flowId"] = json!(flow.id);
    details["reconsent"] = json!(reconsent);
    audit::record(
        &txn,
        &actor,
        &flow.msp_id,
        Some(flow.client_id),
        AuditAction::ConsentCallbackReceived,
        details,
    )
    .await?;
    txn.commit().await?;
    tracing::info!(status = %outcome.status, succeeded = outcome.succeeded, "consent callback handled");
    Ok(outcome)
}

/// What a tenant actually granted.
struct TenantCheck {
    granted: Vec<String>,
    missing: Vec<String>,
}

enum CheckFailure {
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
async fn check_tenant(
    microsoft: &Microsoft,
    tenant: Uuid,
    domain: Option<&str>,
) -> std::result::Result<TenantCheck, CheckFailure> {
    let token = microsoft.app_token(&tenant.to_string()).await?;
    if let Some(tid) = token.tenant_id.as_deref()
        && Uuid::parse_str(tid).ok() != Some(tenant)
    {
        return Err(CheckFailure::WrongTenant(wrong_tenant(
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
        return Err(CheckFailure::WrongTenant(wrong_tenant(&format!(
            "Microsoft Graph answered for organization {} instead of tenant {tenant}.",
            crate::microsoft::bounded(&organization.id, 64)
        ))));
    }
    if let Some(domain) = domain
        && !organization
            .verified_domains
            .iter()
            .any(|d| d.name.eq_ignore_ascii_case(domain))
    {
        return Err(CheckFailure::WrongTenant(wrong_tenant(&format!(
            "The tenant that consented ({}, {tenant}) does not own the client's domain {domain}. \
             The admin must sign in to the client's own tenant, or correct the client's domain.",
            organization.display_name.as_deref().unwrap_or("unnamed")
        ))));
    }
    Ok(TenantCheck { granted, missing })
}

/// Re-checks an `AUTHORISED` tile now (`verifyGraphApi`). Only authorised tiles can be
/// verified: verification never authorises a tile no consent callback authorised
/// (checklist 15).
#[tracing::instrument(skip_all, fields(msp = %viewer.msp_id(), client = %client_id))]
pub async fn verify(
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
                status_name(view.tile.status)
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
    let now = now();
    let change = match check {
        Ok(check) if check.missing.is_empty() => TileChange {
            status: GraphApiStatus::Authorised,
            problem: None,
            granted: Some(check.granted),
            missing: Some(Vec::new()),
            authorised_at: None,
            verified_at: Some(now),
            next_verification_at: Some(consents.next_verification(now)),
            proof: None,
        },
        Ok(check) => TileChange {
            status: GraphApiStatus::Revoked,
            problem: Some(permissions_missing(&check.missing)),
            granted: Some(check.granted),
            missing: Some(check.missing),
            authorised_at: None,
            verified_at: Some(now),
            next_verification_at: None,
            proof: None,
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
                // Not the tenant's doing: leave the tile alone and try again later.
                tracing::warn!(client = %view.client.id, error = %error, ours = problem.ours, "re-verification postponed");
                postpone(db, view.client.id, now + VERIFY_RETRY).await?;
                let reason = if problem.ours {
                    format!(
                        "Microsoft refused Consentry's own credentials: {}",
                        problem.remediation
                    )
                } else {
                    "Microsoft could not be reached to verify the authorisation.".to_owned()
                };
                return Ok(Reverified::Unchanged(reason));
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
    };

    let txn = begin_write(db).await?;
    let Some(tile) = lock_tile(&txn, view.client.id).await? else {
        return Err(Error::not_found("client", view.client.id.to_string()));
    };
    if tile.status != GraphApiStatus::Authorised {
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
        write_tile(
            &txn,
            &tile,
            change,
            actor,
            &view.client.msp_id,
            json!({ "reason": reason }),
        )
        .await?
    } else {
        let mut active: graph_api_tile::ActiveModel = tile.clone().into();
        active.last_verified_at = Set(change.verified_at);
        active.next_verification_at = Set(change.next_verification_at);
        active.version = Set(tile.version + 1);
        let tile = active.update(&txn).await?;
        crate::events::tile(&txn, &view.client.msp_id, &tile).await?;
        if requested {
            audit::record(
                &txn,
                actor,
                &view.client.msp_id,
                Some(view.client.id),
                AuditAction::GraphApiVerified,
                json!({ "grantedPermissions": tile.granted_permissions.0 }),
            )
            .await?;
        }
        tile
    };
    txn.commit().await?;
    Ok(Reverified::Written(Box::new(ClientView {
        client: view.client.clone(),
        tile,
    })))
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
pub async fn reverify_due(db: &DatabaseConnection, consents: &Consents) -> Result<usize> {
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

/// Expires links nobody used (every kind: see [`super::callback::expire`]). For admin
/// consent the flow becomes `EXPIRED` and a tile still
/// `AWAITING_CONSENT` becomes `FAILED`/`LINK_EXPIRED`, with a remediation that names the
/// usual cause ("the Accept window never appeared": a missing service principal).
pub async fn expire_links(db: &DatabaseConnection) -> Result<usize> {
    let now = now();
    let mut expired = 0;
    for flow in oauth_flows::expired(db, now, SWEEP_BATCH).await? {
        let done = super::callback::expire(db, &flow).await?;
        if done {
            expired += 1;
        }
    }
    Ok(expired)
}

/// Expires one pending admin-consent flow (from the sweep, or from a late callback).
pub async fn expire_flow(db: &DatabaseConnection, flow: &oauth_flow::Model) -> Result<bool> {
    let now = now();
    let txn = begin_write(db).await?;
    let Some(tile) = lock_tile(&txn, flow.client_id).await? else {
        return Ok(false);
    };
    let Some(client) = client::Entity::find_by_id(flow.client_id).one(&txn).await? else {
        return Ok(false);
    };
    let problem = link_expired();
    let outcome = FlowOutcome {
        client_id: client.id,
        client_name: client.name.clone(),
        succeeded: false,
        topic: oauth_flows::topic(flow.kind).to_owned(),
        status: "LINK_EXPIRED".to_owned(),
        headline: "This consent link has expired.".to_owned(),
        next_step:
            "Ask your IT provider for a new link. If the Accept window did not appear when you \
                    signed in, tell them: your tenant is probably missing a service principal."
                .to_owned(),
        microsoft_message: None,
    };
    if !oauth_flows::finish(
        &txn,
        flow.id,
        &[OAuthFlowStatus::Pending],
        OAuthFlowStatus::Expired,
        &outcome,
        now,
    )
    .await?
    {
        return Ok(false);
    }
    if tile.status == GraphApiStatus::AwaitingConsent
        && !oauth_flows::has_other_open(&txn, flow.client_id, flow.kind, flow.id).await?
    {
        write_tile(
            &txn,
            &tile,
            TileChange {
                status: GraphApiStatus::Failed,
                ..TileChange::revoked(problem)
            },
            &Actor::system(&flow.msp_id),
            &flow.msp_id,
            json!({ "reason": "consent link expired unused", "flowId": flow.id }),
        )
        .await?;
    }
    txn.commit().await?;
    tracing::info!(flow = %flow.id, client = %flow.client_id, "consent link expired");
    Ok(true)
}

/// Fails flows whose callback was interrupted (the instance died between claiming the flow
/// and writing its outcome), so the tile does not stay `VERIFYING` forever (checklist 92).
pub async fn fail_interrupted(db: &DatabaseConnection, consents: &Consents) -> Result<usize> {
    let now = now();
    let mut failed = 0;
    for flow in oauth_flows::stuck(db, now - consents.callback_lease, SWEEP_BATCH).await? {
        if flow.kind == OAuthFlowKind::ServicePrincipalSignIn {
            if super::service_principal_requests::fail_interrupted_sign_in(db, &flow).await? {
                failed += 1;
            }
            continue;
        }
        if flow.kind == OAuthFlowKind::DelegatedConsent {
            let outcome =
                FlowOutcome::cancelled(&flow, "", "Consentry was interrupted while completing it");
            if oauth_flows::finish(
                db,
                flow.id,
                &[OAuthFlowStatus::Exchanging],
                OAuthFlowStatus::Failed,
                &outcome,
                now,
            )
            .await?
            {
                failed += 1;
            }
            continue;
        }
        let txn = begin_write(db).await?;
        let Some(tile) = lock_tile(&txn, flow.client_id).await? else {
            continue;
        };
        let name = client::Entity::find_by_id(flow.client_id)
            .one(&txn)
            .await?
            .map(|c| c.name)
            .unwrap_or_default();
        let outcome =
            FlowOutcome::cancelled(&flow, &name, "Consentry was interrupted while checking it");
        if !oauth_flows::finish(
            &txn,
            flow.id,
            &[OAuthFlowStatus::Exchanging],
            OAuthFlowStatus::Failed,
            &outcome,
            now,
        )
        .await?
        {
            continue;
        }
        if matches!(
            tile.status,
            GraphApiStatus::AwaitingConsent | GraphApiStatus::Verifying
        ) {
            write_tile(
                &txn,
                &tile,
                TileChange {
                    status: GraphApiStatus::Failed,
                    ..TileChange::revoked(problem(
                        GraphApiProblemCode::Unknown,
                        "Consentry was interrupted while verifying the consent. Authorise again: the \
                         admin only needs to sign in and press Accept once more.",
                    ))
                },
                &Actor::system(&flow.msp_id),
                &flow.msp_id,
                json!({ "reason": "callback interrupted", "flowId": flow.id }),
            )
            .await?;
        }
        txn.commit().await?;
        tracing::warn!(flow = %flow.id, "an interrupted consent callback was failed");
        failed += 1;
    }
    Ok(failed)
}

/// A service principal the tile was missing now exists: a tile that failed for want of it
/// says so and offers Authorise again.
pub(super) async fn service_principal_ready<C: ConnectionTrait>(
    txn: &C,
    request: &entity::service_principal_request::Model,
    actor: &Actor,
) -> Result<()> {
    let Some(tile) = lock_tile(txn, request.client_id).await? else {
        return Ok(());
    };
    let waiting = tile.status == GraphApiStatus::Failed
        && match tile.problem_code {
            Some(GraphApiProblemCode::MissingServicePrincipal) => tile
                .problem_app_id
                .as_deref()
                .is_none_or(|app| app.eq_ignore_ascii_case(&request.app_id)),
            Some(GraphApiProblemCode::LinkExpired) => true,
            _ => false,
        };
    if !waiting {
        return Ok(());
    }
    let name = request
        .app_display_name
        .clone()
        .unwrap_or_else(|| request.app_id.clone());
    let created = Problem {
        app_id: Some(request.app_id.clone()),
        app_display_name: request.app_display_name.clone(),
        ..problem(
            GraphApiProblemCode::ServicePrincipalCreated,
            &format!(
                "The service principal for {name} was created — authorise again: the admin will now see the Accept window."
            ),
        )
    };
    write_tile(
        txn,
        &tile,
        TileChange {
            status: GraphApiStatus::Failed,
            ..TileChange::revoked(created)
        },
        actor,
        &request.msp_id,
        json!({ "reason": "service principal created", "requestId": request.id }),
    )
    .await?;
    Ok(())
}

/// A change to a tile. `None` leaves a field as it is.
struct TileChange {
    status: GraphApiStatus,
    /// The problem to show (`None` clears it).
    problem: Option<Problem>,
    granted: Option<Vec<String>>,
    missing: Option<Vec<String>>,
    authorised_at: Option<DateTime<Utc>>,
    verified_at: Option<DateTime<Utc>>,
    next_verification_at: Option<DateTime<Utc>>,
    /// Who proved the tenant of a new authorisation (`None` keeps the current proof).
    proof: Option<TenantProof>,
}

impl TileChange {
    fn to(status: GraphApiStatus) -> Self {
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

    fn revoked(problem: Problem) -> Self {
        Self {
            problem: Some(problem),
            ..Self::to(GraphApiStatus::Revoked)
        }
    }
}

/// Writes a tile change with its audit event (in the caller's transaction).
async fn write_tile<C: ConnectionTrait>(
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

/// The client's tile, locked for this transaction (PostgreSQL: `FOR UPDATE`; SQLite's write
/// transaction already holds the database lock).
async fn lock_tile<C: ConnectionTrait>(
    txn: &C,
    client_id: Uuid,
) -> Result<Option<graph_api_tile::Model>> {
    Ok(graph_api_tile::Entity::find_by_id(client_id)
        .lock_exclusive()
        .one(txn)
        .await?)
}

/// The client, locked for this transaction, if the viewer may change it (another MSP's
/// client reads as missing; support staff's as read-only).
pub(super) async fn writable_client<C: ConnectionTrait>(
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
    locked_view(txn, client_id)
        .await?
        .ok_or_else(|| Error::not_found("client", client_id.to_string()))
}

/// The client with its tile, the tile locked for this transaction (one statement);
/// `None` when it is gone.
pub(super) async fn locked_view<C: ConnectionTrait>(
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

pub(super) fn problem(code: GraphApiProblemCode, remediation: &str) -> Problem {
    Problem {
        code,
        aadsts: None,
        message: None,
        remediation: remediation.to_owned(),
        app_id: None,
        app_display_name: None,
        ours: false,
    }
}

/// `WRONG_TENANT` when another client of the same MSP already has `tenant`: within one MSP,
/// a tenant belongs to one client (checklist 15).
pub(super) async fn tenant_taken<C: ConnectionTrait>(
    db: &C,
    client: &client::Model,
    tenant: Uuid,
) -> Result<Option<Problem>> {
    let other = client::Entity::find()
        .filter(client::Column::MspId.eq(client.msp_id.clone()))
        .filter(client::Column::AzureTenantId.eq(tenant))
        .filter(client::Column::Id.ne(client.id))
        .one(db)
        .await?;
    Ok(other.map(|other| {
        wrong_tenant(&format!(
            "Tenant {tenant} already belongs to your client {:?}. Each Microsoft tenant can \
             belong to one client of an MSP: check which client this admin belongs to.",
            other.name
        ))
    }))
}

pub(super) fn wrong_tenant(remediation: &str) -> Problem {
    problem(GraphApiProblemCode::WrongTenant, remediation)
}

fn permissions_missing(missing: &[String]) -> Problem {
    problem(
        GraphApiProblemCode::PermissionsMissing,
        &format!(
            "The tenant did not grant {}. Authorise again and make sure the admin accepts every \
             permission; if an admin removed them in Entra ID (Enterprise applications → Permissions), \
             grant admin consent there again.",
            missing.join(", ")
        ),
    )
}

fn link_expired() -> Problem {
    Problem {
        app_id: Some(TEAMS_ADMIN_API_APP_ID.to_owned()),
        app_display_name: Some(TEAMS_ADMIN_API_DISPLAY_NAME.to_owned()),
        ..problem(
            GraphApiProblemCode::LinkExpired,
            "The consent link expired before anyone completed it. If the admin signed in but the \
             Accept window never appeared, the tenant is most likely missing the service principal of \
             the Skype and Teams Tenant Admin API (48ac35b8-9aa8-4d74-927d-1f4a14a0b239), common in \
             tenants without Teams licences: create it with createServicePrincipal, wait a few \
             minutes, then authorise again. Otherwise simply send a new link.",
        )
    }
}

fn failure_headline(code: GraphApiProblemCode, client: &str) -> String {
    use GraphApiProblemCode::*;
    match code {
        MissingServicePrincipal => format!(
            "{client}'s tenant is missing a service principal Consentry needs, so consent could not be granted."
        ),
        ConsentDeclined => "The consent was declined or cancelled.".to_owned(),
        AdminConsentRequired => {
            "The account that signed in cannot consent for the whole organisation.".to_owned()
        }
        WrongTenant => "The consent came from the wrong Microsoft tenant.".to_owned(),
        PermissionsMissing => "Consent was given, but not every permission was granted.".to_owned(),
        ConditionalAccess => {
            "Multi-factor authentication or a Conditional Access policy stopped the sign-in."
                .to_owned()
        }
        IdentityProviderUnavailable => {
            "Microsoft could not be reached to complete the authorisation.".to_owned()
        }
        _ => "The authorisation did not complete.".to_owned(),
    }
}

fn problem_json(problem: &Problem) -> Value {
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

    #[test]
    fn an_expired_link_names_the_missing_service_principal_cause() {
        let p = link_expired();
        assert_eq!(p.code, GraphApiProblemCode::LinkExpired);
        assert_eq!(p.app_id.as_deref(), Some(TEAMS_ADMIN_API_APP_ID));
        assert!(p.remediation.contains("Accept window never appeared"));
        assert!(p.remediation.contains("createServicePrincipal"));
    }
}
