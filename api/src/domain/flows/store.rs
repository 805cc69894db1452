//! The flow rows (docs/design.md §1): one started sign-in or consent, bound server-side to its
//! MSP, client and kind (checklist 5); found again only through the SHA-256 of its `state`;
//! claimed by exactly one callback (checklist 84); finished with an outcome that a replayed
//! callback shows again instead of running anything twice (checklist 3, 83). What a sign-in
//! needs back at its callback is kept so that a database dump reveals none of it: the PKCE
//! verifier sealed to the flow, the nonce as its hash (checklist 74, 75).

use chrono::{DateTime, Duration, Utc};
use entity::{
    enums::{OAuthFlowKind, OAuthFlowStatus},
    oauth_flow,
};
use oauth2::PkceCodeVerifier;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    UpdateMany, sea_query::Expr,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::now;
use crate::domain::crypto::{self, CryptoError, FlowKeys};
use crate::domain::error::{Error, Result};
use crate::microsoft::id_token::NonceHash;
use crate::microsoft::identity::FlowSecrets;

/// Longest a `state` Consentry issues can be; anything longer is not ours and is not hashed.
const MAX_STATE_CHARS: usize = 512;

/// How long a callback that claimed a flow may take to finish it, unless
/// `CONSENTRY_CALLBACK_LEASE` says otherwise. A flow still `EXCHANGING` after this (its
/// instance died mid-exchange) is failed by a sweep so the user can restart (checklist 92).
pub(crate) const EXCHANGE_LEASE: Duration = Duration::minutes(5);

/// How long a finished flow is kept, so that a replayed callback shows its first outcome;
/// after that its row is deleted and the `state` is simply unknown.
pub(crate) const RETENTION: Duration = Duration::days(7);

/// The stored form of a `state`: its SHA-256, hex. Looking a flow up by this hash compares
/// hashes in the database, never the secret itself (checklist 7).
pub fn state_hash(state: &str) -> String {
    format!("{:x}", Sha256::digest(state.as_bytes()))
}

/// A sign-in's secrets as a new flow stores them: the PKCE verifier sealed to the flow, and
/// the nonce's hash.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StoredSignIn {
    pub sealed_pkce_verifier: Vec<u8>,
    pub pkce_verifier_key_id: String,
    pub nonce_hash: String,
}

impl std::fmt::Debug for StoredSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSignIn")
            .field("pkce_verifier_key_id", &self.pkce_verifier_key_id)
            .finish_non_exhaustive()
    }
}

/// Seals the sign-in secrets of the new flow `flow_id` of `msp_id`.
pub(crate) fn store_sign_in(
    keys: &FlowKeys,
    msp_id: &str,
    flow_id: Uuid,
    secrets: &FlowSecrets,
) -> Result<StoredSignIn> {
    let verifier = SecretString::from(secrets.pkce_verifier.secret().clone());
    let Some((kid, sealed)) = keys.encrypt(&verifier, &crypto::pkce_verifier_aad(msp_id, flow_id))
    else {
        return Err(Error::NotConfigured(
            "Consentry has no key to protect sign-in links with: set CONSENTRY_TOKEN_KEYS (`k1:` \
             followed by `openssl rand -base64 32`) or CONSENTRY_MS_CLIENT_SECRET, then restart."
                .to_owned(),
        ));
    };
    Ok(StoredSignIn {
        sealed_pkce_verifier: sealed,
        pkce_verifier_key_id: kid,
        nonce_hash: NonceHash::of(secrets.nonce.secret()).to_hex(),
    })
}

/// What a sign-in's callback needs back: the verifier to redeem the code with, and the hash
/// the id_token's nonce must match.
pub(crate) struct SignInSecrets {
    pub pkce_verifier: PkceCodeVerifier,
    pub nonce: NonceHash,
}

impl std::fmt::Debug for SignInSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignInSecrets { .. }")
    }
}

/// Why a flow's sign-in secrets cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unreadable {
    /// None are stored: the flow was made by a version that kept them in plaintext (erased by
    /// the upgrade), or before admin consent began with a sign-in, or they are used up.
    #[error("the flow holds no sign-in secrets")]
    Missing,
    /// The verifier cannot be decrypted: its key was removed, the client secret its key is
    /// derived from changed, or the row was altered.
    #[error("the flow's PKCE verifier cannot be decrypted: {0}")]
    Key(#[from] CryptoError),
}

impl Unreadable {
    /// Why a link whose sign-in secrets cannot be used is over, in the words of its result
    /// page.
    pub(crate) fn on_the_page(&self) -> &'static str {
        match self {
            Self::Missing => {
                "This link was made by an earlier version of Consentry and can no longer be used."
            }
            Self::Key(_) => {
                "This link can no longer be used: the key that protects it has changed since it \
                 was made."
            }
        }
    }
}

/// Opens the sign-in secrets a flow stored with [`store_sign_in`].
pub(crate) fn sign_in_secrets(
    keys: &FlowKeys,
    flow: &oauth_flow::Model,
) -> std::result::Result<SignInSecrets, Unreadable> {
    let (Some(sealed), Some(kid), Some(nonce)) = (
        &flow.sealed_pkce_verifier,
        &flow.pkce_verifier_key_id,
        &flow.nonce_hash,
    ) else {
        return Err(Unreadable::Missing);
    };
    let nonce = NonceHash::from_hex(nonce).ok_or(Unreadable::Key(CryptoError::Corrupt))?;
    let verifier = keys.decrypt(
        kid,
        sealed,
        &crypto::pkce_verifier_aad(&flow.msp_id, flow.id),
    )?;
    Ok(SignInSecrets {
        pkce_verifier: PkceCodeVerifier::new(verifier.expose_secret().to_owned()),
        nonce,
    })
}

/// What a finished flow showed the person who came back from Microsoft. Stored with the
/// flow, so a replay shows the same thing. Holds no token, code or state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FlowOutcome {
    pub client_id: Uuid,
    pub client_name: String,
    /// Whether the flow achieved what it was for.
    pub succeeded: bool,
    /// What the outcome is about, as the frontend's query parameter name (`graphApi`).
    pub topic: String,
    /// The resulting status of that object, e.g. `AUTHORISED`.
    pub status: String,
    /// One sentence: what happened.
    pub headline: String,
    /// What to do next.
    pub next_step: String,
    /// Microsoft's own words, when it reported an error.
    #[serde(default)]
    pub microsoft_message: Option<String>,
}

impl FlowOutcome {
    /// The outcome of `flow` for `client`, without Microsoft's words.
    pub(crate) fn of(
        flow: &oauth_flow::Model,
        client: &entity::client::Model,
        succeeded: bool,
        status: &str,
        headline: String,
        next_step: String,
    ) -> Self {
        Self {
            client_id: client.id,
            client_name: client.name.clone(),
            succeeded,
            topic: topic(flow.kind).to_owned(),
            status: status.to_owned(),
            headline,
            next_step,
            microsoft_message: None,
        }
    }

    /// The outcome of a flow that was stopped before anyone came back with it.
    pub(crate) fn cancelled(flow: &oauth_flow::Model, client_name: &str, why: &str) -> Self {
        Self {
            client_id: flow.client_id,
            client_name: client_name.to_owned(),
            succeeded: false,
            topic: topic(flow.kind).to_owned(),
            status: "CANCELLED".to_owned(),
            headline: format!("This link is no longer valid: {why}."),
            next_step: "Ask your IT provider for a new link.".to_owned(),
            microsoft_message: None,
        }
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// The frontend query parameter a flow kind reports on.
pub(crate) fn topic(kind: OAuthFlowKind) -> &'static str {
    match kind {
        OAuthFlowKind::AdminConsent => "graphApi",
        OAuthFlowKind::DelegatedConsent => "delegatedConsent",
        OAuthFlowKind::ServicePrincipalSignIn => "servicePrincipal",
    }
}

/// The outcome stored with a finished flow. Flows finished without a stored outcome (none
/// are, but rows outlive code) read as "no longer valid".
pub(crate) fn outcome_of(flow: &oauth_flow::Model) -> FlowOutcome {
    flow.outcome
        .clone()
        .and_then(|json| serde_json::from_value(json).ok())
        .unwrap_or_else(|| FlowOutcome::cancelled(flow, "", "it was already used"))
}

/// Which of a flow's `state`s a callback came back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The `state` of the link Consentry handed out: every flow's first (or only) step.
    SignIn,
    /// Admin consent's second step: Microsoft's consent page, after the sign-in that proved
    /// the tenant.
    Consent,
}

/// The flow a `state` belongs to, if any, and which of its steps that `state` is.
pub(crate) async fn find_by_state<C: ConnectionTrait>(
    db: &C,
    state: &str,
) -> Result<Option<(oauth_flow::Model, Step)>> {
    if state.is_empty() || state.chars().count() > MAX_STATE_CHARS {
        return Ok(None);
    }
    let hash = state_hash(state);
    let flow = oauth_flow::Entity::find()
        .filter(
            Condition::any()
                .add(oauth_flow::Column::StateHash.eq(hash.clone()))
                .add(oauth_flow::Column::ConsentStateHash.eq(hash.clone())),
        )
        .one(db)
        .await?;
    Ok(flow.map(|flow| {
        let step = if flow.state_hash == hash {
            Step::SignIn
        } else {
            Step::Consent
        };
        (flow, step)
    }))
}

pub(crate) async fn find<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Option<oauth_flow::Model>> {
    Ok(oauth_flow::Entity::find_by_id(id).one(db).await?)
}

/// Claims a pending, unexpired flow for the one callback that will act on it: a single
/// conditional UPDATE, so of any number of concurrent callbacks exactly one wins.
pub(crate) async fn claim<C: ConnectionTrait>(
    db: &C,
    flow: &oauth_flow::Model,
    now: DateTime<Utc>,
) -> Result<bool> {
    let claimed = oauth_flow::Entity::update_many()
        .col_expr(
            oauth_flow::Column::Status,
            Expr::value(OAuthFlowStatus::Exchanging),
        )
        .col_expr(oauth_flow::Column::ClaimedAt, Expr::value(now))
        .filter(oauth_flow::Column::Id.eq(flow.id))
        .filter(oauth_flow::Column::Status.eq(OAuthFlowStatus::Pending))
        .filter(oauth_flow::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    Ok(claimed.rows_affected == 1)
}

/// Opens admin consent's second step on a flow its sign-in proved: the flow is pending again,
/// now found by the consent step's `state`, with the proof kept and the sign-in's PKCE
/// verifier and nonce erased (they are used up). False when the flow had moved on.
pub(crate) async fn open_consent_step<C: ConnectionTrait>(
    db: &C,
    flow_id: Uuid,
    consent_state: &str,
    proof: serde_json::Value,
    expires_at: DateTime<Utc>,
) -> Result<bool> {
    let opened = erasing_secrets(oauth_flow::Entity::update_many())
        .col_expr(
            oauth_flow::Column::Status,
            Expr::value(OAuthFlowStatus::Pending),
        )
        .col_expr(
            oauth_flow::Column::ConsentStateHash,
            Expr::value(state_hash(consent_state)),
        )
        .col_expr(oauth_flow::Column::TenantProof, Expr::value(proof))
        .col_expr(oauth_flow::Column::ExpiresAt, Expr::value(expires_at))
        .col_expr(
            oauth_flow::Column::ClaimedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(oauth_flow::Column::Id.eq(flow_id))
        .filter(oauth_flow::Column::Status.eq(OAuthFlowStatus::Exchanging))
        .exec(db)
        .await?;
    Ok(opened.rows_affected == 1)
}

/// The update, also erasing the sign-in's PKCE verifier and nonce: once a step is over they
/// are used up, and a database dump must not hold them (checklist 74, 75).
fn erasing_secrets(update: UpdateMany<oauth_flow::Entity>) -> UpdateMany<oauth_flow::Entity> {
    update
        .col_expr(
            oauth_flow::Column::SealedPkceVerifier,
            Expr::value(Option::<Vec<u8>>::None),
        )
        .col_expr(
            oauth_flow::Column::PkceVerifierKeyId,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            oauth_flow::Column::NonceHash,
            Expr::value(Option::<String>::None),
        )
}

/// Finishes a flow that is still in one of `from`, with its outcome, and erases its PKCE
/// verifier and nonce. False when the flow had already moved on (someone else finished it).
pub(crate) async fn finish<C: ConnectionTrait>(
    db: &C,
    flow_id: Uuid,
    from: &[OAuthFlowStatus],
    to: OAuthFlowStatus,
    outcome: &FlowOutcome,
    now: DateTime<Utc>,
) -> Result<bool> {
    let finished = erasing_secrets(oauth_flow::Entity::update_many())
        .col_expr(oauth_flow::Column::Status, Expr::value(to))
        .col_expr(oauth_flow::Column::Outcome, Expr::value(outcome.to_json()))
        .col_expr(oauth_flow::Column::CompletedAt, Expr::value(now))
        .filter(oauth_flow::Column::Id.eq(flow_id))
        .filter(oauth_flow::Column::Status.is_in(from.iter().copied()))
        .exec(db)
        .await?;
    Ok(finished.rows_affected == 1)
}

/// Cancels every open flow of `kind` for a client (a newer link replaces them, or the
/// client's tenant changed). Returns how many were cancelled.
pub(crate) async fn cancel_open<C: ConnectionTrait>(
    db: &C,
    client_id: Uuid,
    client_name: &str,
    kinds: &[OAuthFlowKind],
    why: &str,
    now: DateTime<Utc>,
) -> Result<u64> {
    let open = [OAuthFlowStatus::Pending, OAuthFlowStatus::Exchanging];
    let flows = oauth_flow::Entity::find()
        .filter(oauth_flow::Column::ClientId.eq(client_id))
        .filter(oauth_flow::Column::Kind.is_in(kinds.iter().copied()))
        .filter(oauth_flow::Column::Status.is_in(open))
        .all(db)
        .await?;
    cancel(db, &flows, &open, client_name, why, now).await
}

/// Cancels the pending sign-in flows of one service principal request (a newer link
/// replaces them).
pub(crate) async fn cancel_open_for_request<C: ConnectionTrait>(
    db: &C,
    request_id: Uuid,
    client_name: &str,
    why: &str,
    now: DateTime<Utc>,
) -> Result<u64> {
    let pending = [OAuthFlowStatus::Pending];
    let flows = oauth_flow::Entity::find()
        .filter(oauth_flow::Column::ServicePrincipalRequestId.eq(request_id))
        .filter(oauth_flow::Column::Status.is_in(pending))
        .all(db)
        .await?;
    cancel(db, &flows, &pending, client_name, why, now).await
}

/// Fails each of `flows` still in one of `from`, with a "no longer valid" outcome.
async fn cancel<C: ConnectionTrait>(
    db: &C,
    flows: &[oauth_flow::Model],
    from: &[OAuthFlowStatus],
    client_name: &str,
    why: &str,
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut cancelled = 0;
    for flow in flows {
        let outcome = FlowOutcome::cancelled(flow, client_name, why);
        if finish(db, flow.id, from, OAuthFlowStatus::Failed, &outcome, now).await? {
            cancelled += 1;
        }
    }
    Ok(cancelled)
}

/// Pending flows whose link has expired, oldest first.
pub(crate) async fn expired<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<oauth_flow::Model>> {
    Ok(oauth_flow::Entity::find()
        .filter(oauth_flow::Column::Status.eq(OAuthFlowStatus::Pending))
        .filter(oauth_flow::Column::ExpiresAt.lte(now))
        .order_by_asc(oauth_flow::Column::ExpiresAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// Flows claimed by a callback, at or before `claimed_before`, that it never finished
/// (checklist 92).
pub(crate) async fn stuck<C: ConnectionTrait>(
    db: &C,
    claimed_before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<oauth_flow::Model>> {
    Ok(oauth_flow::Entity::find()
        .filter(oauth_flow::Column::Status.eq(OAuthFlowStatus::Exchanging))
        .filter(oauth_flow::Column::ClaimedAt.lte(claimed_before))
        .limit(limit)
        .all(db)
        .await?)
}

/// A flow to open: what differs between kinds.
pub(crate) struct NewFlow<'a> {
    pub(crate) kind: OAuthFlowKind,
    pub(crate) client: &'a entity::client::Model,
    /// Who asked for the link (the caller's subject).
    pub(crate) created_by: &'a str,
    pub(crate) lifetime: Duration,
    /// A delegated consent's permissions.
    pub(crate) requested_permissions: Option<Vec<String>>,
    /// A repair's request.
    pub(crate) service_principal_request_id: Option<Uuid>,
}

/// Opens a flow in the caller's transaction: a single-use `state`, the PKCE verifier sealed
/// to the flow and the nonce's hash (its id is random: it also names the flow's result
/// page). Returns the row and the secrets its link carries.
pub(crate) async fn open<C: ConnectionTrait>(
    txn: &C,
    keys: &FlowKeys,
    new: NewFlow<'_>,
) -> Result<(oauth_flow::Model, FlowSecrets)> {
    let now = now();
    let secrets = FlowSecrets::new();
    let id = Uuid::new_v4();
    let sign_in = store_sign_in(keys, &new.client.msp_id, id, &secrets)?;
    let flow = oauth_flow::Model {
        id,
        msp_id: new.client.msp_id.clone(),
        client_id: new.client.id,
        kind: new.kind,
        state_hash: state_hash(secrets.state.secret()),
        sealed_pkce_verifier: Some(sign_in.sealed_pkce_verifier),
        pkce_verifier_key_id: Some(sign_in.pkce_verifier_key_id),
        nonce_hash: Some(sign_in.nonce_hash),
        expected_tenant: new.client.azure_tenant_id.map(|t| t.to_string()),
        requested_permissions: new.requested_permissions.map(entity::StringList),
        service_principal_request_id: new.service_principal_request_id,
        status: OAuthFlowStatus::Pending,
        outcome: None,
        created_by: new.created_by.to_owned(),
        created_at: now,
        expires_at: now + new.lifetime,
        completed_at: None,
        claimed_at: None,
        consent_state_hash: None,
        tenant_proof: None,
    };
    oauth_flow::Entity::insert(oauth_flow::ActiveModel::from(flow.clone()))
        .exec_without_returning(txn)
        .await?;
    Ok((flow, secrets))
}

/// What `consentry rotate-keys` did to the sign-in secrets of pending flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rewrapped {
    /// Re-encrypted under the current key.
    pub rotated: u64,
    /// Already under it.
    pub current: u64,
    /// Not readable with any key given: those links fail with "send a new link" anyway.
    pub unreadable: u64,
}

/// `consentry rotate-keys`: re-encrypts the PKCE verifier of every flow that still holds one
/// under the current key (checklist 77), so that older keys can be retired without breaking
/// links in flight. Each row is swapped with a compare-and-set, so a callback finishing the
/// flow meanwhile is never overwritten.
pub(crate) async fn rotate_keys<C: ConnectionTrait>(db: &C, keys: &FlowKeys) -> Result<Rewrapped> {
    let mut done = Rewrapped::default();
    let Some(current) = keys.current() else {
        return Ok(done);
    };
    let flows = oauth_flow::Entity::find()
        .filter(oauth_flow::Column::SealedPkceVerifier.is_not_null())
        .all(db)
        .await?;
    for flow in flows {
        let (Some(sealed), Some(kid)) = (&flow.sealed_pkce_verifier, &flow.pkce_verifier_key_id)
        else {
            continue;
        };
        if kid == current {
            done.current += 1;
            continue;
        }
        let aad = crypto::pkce_verifier_aad(&flow.msp_id, flow.id);
        let Ok(verifier) = keys.decrypt(kid, sealed, &aad) else {
            tracing::warn!(flow = %flow.id, key = %kid, "a pending link's PKCE verifier cannot be decrypted");
            done.unreadable += 1;
            continue;
        };
        let Some((new_kid, resealed)) = keys.encrypt(&verifier, &aad) else {
            continue;
        };
        let swapped = oauth_flow::Entity::update_many()
            .col_expr(
                oauth_flow::Column::SealedPkceVerifier,
                Expr::value(resealed),
            )
            .col_expr(oauth_flow::Column::PkceVerifierKeyId, Expr::value(new_kid))
            .filter(oauth_flow::Column::Id.eq(flow.id))
            .filter(oauth_flow::Column::PkceVerifierKeyId.eq(kid.clone()))
            .filter(oauth_flow::Column::SealedPkceVerifier.eq(sealed.clone()))
            .exec(db)
            .await?;
        done.rotated += swapped.rows_affected;
    }
    Ok(done)
}

/// Deletes flows finished longer than [`RETENTION`] ago (checklist 4).
pub(crate) async fn collect_garbage<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<u64> {
    let deleted = oauth_flow::Entity::delete_many()
        .filter(oauth_flow::Column::Status.is_in([
            OAuthFlowStatus::Succeeded,
            OAuthFlowStatus::Failed,
            OAuthFlowStatus::Expired,
        ]))
        .filter(oauth_flow::Column::CompletedAt.lte(now - RETENTION))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}

/// Whether another link doing the same job as `flow` is still open: of the same kind for
/// the same client (and, for a repair's sign-in, the same request).
pub(crate) async fn has_other_open<C: ConnectionTrait>(
    db: &C,
    flow: &oauth_flow::Model,
) -> Result<bool> {
    let mut others = oauth_flow::Entity::find()
        .filter(oauth_flow::Column::ClientId.eq(flow.client_id))
        .filter(oauth_flow::Column::Kind.eq(flow.kind))
        .filter(oauth_flow::Column::Id.ne(flow.id))
        .filter(
            oauth_flow::Column::Status
                .is_in([OAuthFlowStatus::Pending, OAuthFlowStatus::Exchanging]),
        );
    if let Some(request) = flow.service_principal_request_id {
        others = others.filter(oauth_flow::Column::ServicePrincipalRequestId.eq(request));
    }
    Ok(others.one(db).await?.is_some())
}

/// When each client's admin-consent link that is out stops working (clients without one are
/// absent). A newer link cancels the older ones, so there is one at most.
pub(crate) async fn consent_link_expiries<C: ConnectionTrait>(
    db: &C,
    client_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, DateTime<Utc>>> {
    let rows: Vec<(Uuid, DateTime<Utc>)> = oauth_flow::Entity::find()
        .select_only()
        .column(oauth_flow::Column::ClientId)
        .column(oauth_flow::Column::ExpiresAt)
        .filter(oauth_flow::Column::ClientId.is_in(client_ids.iter().copied()))
        .filter(oauth_flow::Column::Kind.eq(OAuthFlowKind::AdminConsent))
        .filter(oauth_flow::Column::Status.eq(OAuthFlowStatus::Pending))
        .filter(oauth_flow::Column::ExpiresAt.gt(now()))
        .into_tuple()
        .all(db)
        .await?;
    let mut latest = std::collections::HashMap::new();
    for (client, expires_at) in rows {
        let at = latest.entry(client).or_insert(expires_at);
        *at = (*at).max(expires_at);
    }
    Ok(latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checklist 7: the state is kept and compared only as its SHA-256, so no comparison
    /// ever touches the secret itself.
    #[test]
    fn the_state_is_stored_as_a_sha256_hex_digest() {
        let hash = state_hash("abc");
        assert_eq!(
            hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(state_hash("abd"), hash);
    }
}
