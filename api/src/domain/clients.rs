//! Clients: an MSP's customers, each with its Graph API tile. Create, change, remove, find
//! and list them, within the caller's MSP (support staff: across MSPs, audited).

use std::collections::{BTreeMap, HashMap};

use entity::{
    client, delegated_consent,
    enums::{AuditAction, GraphApiStatus, OAuthFlowKind},
    graph_api_tile,
};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, JoinType,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, RelationTrait, SelectTwo, SqlErr,
    sea_query::{Expr, ExprTrait, LikeExpr},
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::access::{self, Sight};
use super::audit::{self, Actor};
use super::consents::Consents;
use super::error::{Error, Result};
use super::flows::store;
use super::{tile, validate};
use crate::{auth::Viewer, db::begin_write};

/// Page sizes are bounded so that no query can ask for everything at once.
pub(crate) const MAX_PAGE_SIZE: u64 = 100;

/// A client with its tile: what every client-shaped answer is built from.
#[derive(Clone, Debug)]
pub struct ClientView {
    pub client: client::Model,
    pub tile: graph_api_tile::Model,
}

/// Input of `createClient`.
#[derive(Clone, Debug, Default)]
pub struct NewClient {
    pub name: String,
    pub domain: Option<String>,
    pub azure_tenant_id: Option<String>,
}

/// One field of `updateClient`: left alone, set, or cleared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Patch<T> {
    #[default]
    Keep,
    Set(T),
    Clear,
}

/// Input of `updateClient`.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientPatch {
    pub name: Option<String>,
    pub domain: Patch<String>,
    pub azure_tenant_id: Patch<String>,
}

/// Which clients a list shows.
#[derive(Clone, Debug, Default)]
pub struct ClientFilter {
    /// Only clients whose tile is in one of these states (empty: any).
    pub statuses: Vec<GraphApiStatus>,
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
    /// Support staff only: one MSP's clients.
    pub msp_id: Option<String>,
    /// Only clients whose tile has (`true`) or lacks (`false`) a tenant proof: with status
    /// `AUTHORISED`, `false` lists the authorisations made before tenants were proven.
    pub tenant_proven: Option<bool>,
}

/// Position in the name-ordered list: the last client of the previous page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub name_key: String,
    pub id: Uuid,
}

/// One page of clients, in name order.
#[derive(Clone, Debug)]
pub struct Page {
    pub items: Vec<ClientView>,
    pub has_next_page: bool,
}

fn optional<T>(raw: Option<&str>, parse: impl FnOnce(&str) -> Result<T>) -> Result<Option<T>> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => parse(value).map(Some),
    }
}

fn patch<T>(raw: &Patch<String>, parse: impl FnOnce(&str) -> Result<T>) -> Result<Patch<T>> {
    Ok(match raw {
        Patch::Keep => Patch::Keep,
        Patch::Clear => Patch::Clear,
        Patch::Set(value) if value.trim().is_empty() => Patch::Clear,
        Patch::Set(value) => Patch::Set(parse(value)?),
    })
}

/// Creates a client, with its tile in `NOT_AUTHORISED`, in the caller's MSP.
#[tracing::instrument(skip_all, fields(msp = %viewer.msp_id()))]
pub async fn create(
    db: &DatabaseConnection,
    viewer: &Viewer,
    input: NewClient,
) -> Result<ClientView> {
    access::require_writer(viewer)?;
    let name = validate::client_name("input.name", &input.name)?;
    let domain = optional(input.domain.as_deref(), |d| {
        validate::domain("input.domain", d)
    })?;
    let tenant = optional(input.azure_tenant_id.as_deref(), |t| {
        validate::tenant_id("input.azureTenantId", t)
    })?;
    let msp_id = viewer.msp_id().to_owned();
    let now = crate::db::now();
    let model = client::Model {
        id: Uuid::now_v7(),
        msp_id: msp_id.clone(),
        name_key: validate::name_key(&name),
        name,
        domain,
        azure_tenant_id: tenant,
        created_by: viewer.subject.clone(),
        created_at: now,
        updated_at: now,
    };

    let txn = begin_write(db).await?;
    // Written first, so a duplicate is caught by the unique indexes even under a race.
    let inserted = client::Entity::insert(client::ActiveModel::from(model.clone()))
        .exec_without_returning(&txn)
        .await;
    if let Err(error) = inserted {
        drop(txn);
        return Err(conflict_or(db, &msp_id, &model, None, error).await);
    }
    let tile = tile::initial(model.id, now).insert(&txn).await?;
    audit::record(
        &txn,
        &Actor::from(viewer),
        &msp_id,
        Some(model.id),
        AuditAction::ClientCreated,
        json!({ "name": model.name, "domain": model.domain, "azureTenantId": model.azure_tenant_id }),
    )
    .await?;
    txn.commit().await?;
    tracing::info!(client = %model.id, "client created");
    Ok(ClientView {
        client: model,
        tile,
    })
}

/// Changes a client's name, domain or tenant id. A new tenant id sends an authorised (or
/// failed) tile back to `NOT_AUTHORISED`: the old consent was for another tenant.
#[tracing::instrument(skip_all, fields(msp = %viewer.msp_id(), client = %id))]
pub(crate) async fn update(
    db: &DatabaseConnection,
    viewer: &Viewer,
    id: Uuid,
    input: ClientPatch,
) -> Result<ClientView> {
    access::require_writer(viewer)?;
    let name = input
        .name
        .as_deref()
        .map(|n| validate::client_name("input.name", n))
        .transpose()?;
    let domain = patch(&input.domain, |d| validate::domain("input.domain", d))?;
    let tenant = patch(&input.azure_tenant_id, |t| {
        validate::tenant_id("input.azureTenantId", t)
    })?;

    let txn = begin_write(db).await?;
    let Some(current) = load(&txn, id).await? else {
        return Err(Error::not_found("client", id.to_string()));
    };
    access::require_writable(viewer, &current.client.msp_id, "client", &id.to_string())?;

    let before = current.client.clone();
    let mut after = patched(&before, name, domain, tenant);
    let changes = changes(&before, &after);
    if changes.is_empty() {
        return Ok(current);
    }
    let now = crate::db::now();
    after.updated_at = now;
    let updated = client::ActiveModel {
        id: Set(after.id),
        name: Set(after.name.clone()),
        name_key: Set(after.name_key.clone()),
        domain: Set(after.domain.clone()),
        azure_tenant_id: Set(after.azure_tenant_id),
        updated_at: Set(now),
        ..Default::default()
    }
    .update(&txn)
    .await;
    if let Err(error) = updated {
        drop(txn);
        return Err(conflict_or(db, &before.msp_id, &after, Some(id), error).await);
    }

    let reset = if before.azure_tenant_id == after.azure_tenant_id {
        None
    } else {
        tile::reset(&txn, &current.tile, &after.msp_id, now).await?
    };
    let tile_reset = reset.is_some();
    let tile = match reset {
        Some(tile) => {
            cancel_links(&txn, &after, now).await?;
            tile
        }
        None => current.tile.clone(),
    };
    audit::record(
        &txn,
        &Actor::from(viewer),
        &before.msp_id,
        Some(id),
        AuditAction::ClientUpdated,
        json!({ "changes": changes, "tileReset": tile_reset }),
    )
    .await?;
    txn.commit().await?;
    tracing::info!("client updated");
    Ok(ClientView {
        client: after,
        tile,
    })
}

/// The client with the patch applied.
fn patched(
    before: &client::Model,
    name: Option<String>,
    domain: Patch<String>,
    tenant: Patch<Uuid>,
) -> client::Model {
    let mut after = before.clone();
    if let Some(name) = name {
        after.name_key = validate::name_key(&name);
        after.name = name;
    }
    match domain {
        Patch::Keep => {}
        Patch::Set(d) => after.domain = Some(d),
        Patch::Clear => after.domain = None,
    }
    match tenant {
        Patch::Keep => {}
        Patch::Set(t) => after.azure_tenant_id = Some(t),
        Patch::Clear => after.azure_tenant_id = None,
    }
    after
}

/// A client's tenant changed (its tile was reset): every link already sent out, for the old
/// tenant, is cancelled so that it cannot complete.
async fn cancel_links<C: ConnectionTrait>(
    txn: &C,
    client: &client::Model,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    store::cancel_open(
        txn,
        client.id,
        &client.name,
        &[
            OAuthFlowKind::AdminConsent,
            OAuthFlowKind::DelegatedConsent,
            OAuthFlowKind::ServicePrincipalSignIn,
        ],
        "the client's Microsoft tenant was changed",
        now,
    )
    .await?;
    Ok(())
}

/// Removes a client with its tile, flows, delegated consents and their stored tokens. Its
/// audit events remain, with one more saying who removed it.
#[tracing::instrument(skip_all, fields(msp = %viewer.msp_id(), client = %id))]
pub(crate) async fn delete(
    db: &DatabaseConnection,
    consents: &Consents,
    viewer: &Viewer,
    id: Uuid,
) -> Result<client::Model> {
    access::require_writer(viewer)?;
    let txn = begin_write(db).await?;
    let Some(current) = client::Entity::find_by_id(id).one(&txn).await? else {
        return Err(Error::not_found("client", id.to_string()));
    };
    access::require_writable(viewer, &current.msp_id, "client", &id.to_string())?;
    let delegated = delegated_consent::Entity::find()
        .filter(delegated_consent::Column::ClientId.eq(id))
        .count(&txn)
        .await?;
    audit::record(
        &txn,
        &Actor::from(viewer),
        &current.msp_id,
        Some(id),
        AuditAction::ClientDeleted,
        json!({
            "name": current.name,
            "domain": current.domain,
            "azureTenantId": current.azure_tenant_id,
            "delegatedConsentsRemoved": delegated,
        }),
    )
    .await?;
    // Tile, flows, consents (with their encrypted tokens) and requests go by ON DELETE CASCADE.
    client::Entity::delete_by_id(id).exec(&txn).await?;
    txn.commit().await?;
    // Checklist 82: no token that could act in the client's tenant outlives it here (other
    // instances forget theirs at their next sweep).
    consents.sign_in_tokens.forget_client(id);
    tracing::info!("client deleted");
    Ok(current)
}

/// A client the viewer may see; support staff's look at another MSP's client is audited.
pub(crate) async fn get(db: &DatabaseConnection, viewer: &Viewer, id: Uuid) -> Result<ClientView> {
    let found = load(db, id)
        .await?
        .filter(|view| access::sight(viewer, &view.client.msp_id).is_some());
    let Some(view) = found else {
        return Err(Error::not_found("client", id.to_string()));
    };
    audit_support_reads(db, viewer, "client", std::slice::from_ref(&view)).await?;
    Ok(view)
}

/// Succeeds when the viewer may see the client (support staff's look at another MSP's client
/// is audited, as by [`get`]); `NOT_FOUND` otherwise, exactly as for ids that do not exist.
/// For callers that need only the answer (subscriptions): it reads one column.
pub(crate) async fn require_visible(
    db: &DatabaseConnection,
    viewer: &Viewer,
    id: Uuid,
) -> Result<()> {
    let msp_id: Option<String> = client::Entity::find_by_id(id)
        .select_only()
        .column(client::Column::MspId)
        .into_tuple()
        .one(db)
        .await?;
    match msp_id.map(|msp| (access::sight(viewer, &msp), msp)) {
        Some((Some(Sight::Own), _)) => Ok(()),
        Some((Some(Sight::Support), msp)) => {
            audit::record_support_reads(db, viewer, "client", &[(msp, id)]).await?;
            Ok(())
        }
        _ => Err(Error::not_found("client", id.to_string())),
    }
}

/// One page of the clients the viewer may see, in name order.
pub async fn list(
    db: &DatabaseConnection,
    viewer: &Viewer,
    filter: &ClientFilter,
    first: u64,
    after: Option<&Cursor>,
) -> Result<Page> {
    let first = first.clamp(1, MAX_PAGE_SIZE);
    let mut rows = list_query(viewer, filter, first, after)?.all(db).await?;
    let has_next_page = rows.len() as u64 > first;
    rows.truncate(first as usize);
    let items = rows
        .into_iter()
        .map(with_tile)
        .collect::<Result<Vec<_>>>()?;
    audit_support_reads(db, viewer, "clients", &items).await?;
    Ok(Page {
        items,
        has_next_page,
    })
}

/// The statement behind [`list`]: the viewer's scope and the filter, after the cursor, in
/// name order, one row more than the page to tell whether another follows.
///
/// The cursor's condition is written `name_key >= k AND (name_key > k OR id > i)` rather
/// than the equivalent `name_key > k OR (name_key = k AND id > i)`: its first term bounds a
/// range of the (msp_id, name_key) index, so each page reads its own rows and no earlier
/// ones, whatever page it is (the README shows the plans).
pub fn list_query(
    viewer: &Viewer,
    filter: &ClientFilter,
    first: u64,
    after: Option<&Cursor>,
) -> Result<SelectTwo<client::Entity, graph_api_tile::Entity>> {
    let mut query = client::Entity::find()
        .find_also_related(graph_api_tile::Entity)
        .filter(scope(viewer, filter)?);
    if let Some(after) = after {
        query = query.filter(
            Condition::all()
                .add(client::Column::NameKey.gte(after.name_key.clone()))
                .add(
                    Condition::any()
                        .add(client::Column::NameKey.gt(after.name_key.clone()))
                        .add(client::Column::Id.gt(after.id)),
                ),
        );
    }
    Ok(query
        .order_by_asc(client::Column::NameKey)
        .order_by_asc(client::Column::Id)
        .limit(first.clamp(1, MAX_PAGE_SIZE) + 1))
}

/// How many clients match the filter (ignoring pagination).
pub(crate) async fn count(
    db: &DatabaseConnection,
    viewer: &Viewer,
    filter: &ClientFilter,
) -> Result<u64> {
    Ok(client::Entity::find()
        .join(JoinType::InnerJoin, client::Relation::GraphApiTile.def())
        .filter(scope(viewer, filter)?)
        .count(db)
        .await?)
}

/// How many of the clients a filter matches are in each tile status, whatever statuses the
/// filter itself names (a status filter's counts), every status listed, zeros included.
pub(crate) async fn count_by_status(
    db: &DatabaseConnection,
    viewer: &Viewer,
    filter: &ClientFilter,
) -> Result<Vec<(GraphApiStatus, u64)>> {
    let any_status = ClientFilter {
        statuses: Vec::new(),
        ..filter.clone()
    };
    let found: Vec<(GraphApiStatus, i64)> = client::Entity::find()
        .select_only()
        .join(JoinType::InnerJoin, client::Relation::GraphApiTile.def())
        .column(graph_api_tile::Column::Status)
        .column_as(client::Column::Id.count(), "count")
        .filter(scope(viewer, &any_status)?)
        .group_by(graph_api_tile::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    Ok(<GraphApiStatus as sea_orm::Iterable>::iter()
        .map(|status| {
            let count = found
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0));
            (status, count)
        })
        .collect())
}

/// The WHERE clause of a list: the viewer's MSP (or, for support, all or one MSP), tile
/// states, and name search.
fn scope(viewer: &Viewer, filter: &ClientFilter) -> Result<Condition> {
    let mut condition = Condition::all();
    match (&filter.msp_id, viewer.reads_all_msps()) {
        (Some(msp), true) => condition = condition.add(client::Column::MspId.eq(msp.clone())),
        (None, true) => {}
        (Some(msp), false) if msp != viewer.msp_id() => {
            return Err(Error::bad_input(
                "filter.mspId",
                "only support staff can list another MSP's clients; your token already limits you to your own MSP",
            ));
        }
        (_, false) => condition = condition.add(client::Column::MspId.eq(viewer.msp_id())),
    }
    if !filter.statuses.is_empty() {
        condition =
            condition.add(graph_api_tile::Column::Status.is_in(filter.statuses.iter().copied()));
    }
    match filter.tenant_proven {
        Some(true) => condition = condition.add(graph_api_tile::Column::TenantProof.is_not_null()),
        Some(false) => condition = condition.add(graph_api_tile::Column::TenantProof.is_null()),
        None => {}
    }
    if let Some(search) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if search.chars().count() > validate::MAX_CLIENT_NAME_CHARS {
            return Err(Error::bad_input(
                "filter.search",
                format!(
                    "the search text is longer than a client name can be ({} characters)",
                    validate::MAX_CLIENT_NAME_CHARS
                ),
            ));
        }
        let pattern = format!("%{}%", escape_like(&validate::name_key(search)));
        condition = condition.add(
            Expr::col((client::Entity, client::Column::NameKey))
                .like(LikeExpr::new(pattern).escape('\\')),
        );
    }
    Ok(condition)
}

fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// A client and its tile, by id, without any access check.
pub(crate) async fn load<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<ClientView>> {
    client::Entity::find_by_id(id)
        .find_also_related(graph_api_tile::Entity)
        .one(db)
        .await?
        .map(with_tile)
        .transpose()
}

fn with_tile((client, tile): (client::Model, Option<graph_api_tile::Model>)) -> Result<ClientView> {
    let tile = tile.ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "client {} has no Graph API tile",
            client.id
        ))
    })?;
    Ok(ClientView { client, tile })
}

/// Audits the support-staff reads among `views` (those of MSPs other than the viewer's).
pub(crate) async fn audit_support_reads(
    db: &DatabaseConnection,
    viewer: &Viewer,
    what: &str,
    views: &[ClientView],
) -> Result<()> {
    let foreign: Vec<(String, Uuid)> = views
        .iter()
        .filter(|v| access::sight(viewer, &v.client.msp_id) == Some(Sight::Support))
        .map(|v| (v.client.msp_id.clone(), v.client.id))
        .collect();
    audit::record_support_reads(db, viewer, what, &foreign).await?;
    Ok(())
}

/// The fields that differ, as `{field: {from, to}}` for the audit trail.
fn changes(before: &client::Model, after: &client::Model) -> BTreeMap<&'static str, Value> {
    let mut changes = BTreeMap::new();
    if before.name != after.name {
        changes.insert("name", json!({ "from": before.name, "to": after.name }));
    }
    if before.domain != after.domain {
        changes.insert(
            "domain",
            json!({ "from": before.domain, "to": after.domain }),
        );
    }
    if before.azure_tenant_id != after.azure_tenant_id {
        changes.insert(
            "azureTenantId",
            json!({ "from": before.azure_tenant_id, "to": after.azure_tenant_id }),
        );
    }
    changes
}

/// Turns a unique-index violation into a `CONFLICT` that names the clashing field; anything
/// else passes through.
async fn conflict_or(
    db: &DatabaseConnection,
    msp_id: &str,
    wanted: &client::Model,
    except: Option<Uuid>,
    error: DbErr,
) -> Error {
    if !matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
        return error.into();
    }
    let others = || {
        let mut q = client::Entity::find().filter(client::Column::MspId.eq(msp_id));
        if let Some(id) = except {
            q = q.filter(client::Column::Id.ne(id));
        }
        q
    };
    let name_taken = others()
        .filter(client::Column::NameKey.eq(wanted.name_key.clone()))
        .one(db)
        .await;
    match name_taken {
        Ok(Some(existing)) => Error::Conflict {
            field: "input.name".to_owned(),
            message: format!(
                "a client named {:?} already exists in your MSP; choose another name",
                existing.name
            ),
        },
        Ok(None) => match wanted.azure_tenant_id {
            Some(tenant) => Error::Conflict {
                field: "input.azureTenantId".to_owned(),
                message: format!(
                    "another client of your MSP already has tenant {tenant}; a Microsoft tenant belongs to one client"
                ),
            },
            None => error.into(),
        },
        Err(e) => e.into(),
    }
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
    sea_orm::QueryTrait::query(&mut select).lock_with_tables(
        sea_orm::sea_query::LockType::Update,
        [graph_api_tile::Entity],
    );
    Ok(match select.one(txn).await? {
        Some((tile, Some(client))) => Some(ClientView { client, tile }),
        _ => None,
    })
}

/// Rows grouped by their client, each group in the order of `rows`.
pub(crate) fn by_client<T>(rows: Vec<T>, client: impl Fn(&T) -> Uuid) -> HashMap<Uuid, Vec<T>> {
    let mut grouped: HashMap<Uuid, Vec<T>> = HashMap::new();
    for row in rows {
        grouped.entry(client(&row)).or_default().push(row);
    }
    grouped
}
