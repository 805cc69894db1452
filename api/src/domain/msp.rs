//! MSP tenants: the platform's customers. Callers' tokens name one in their `msp` claim.

use entity::msp_tenant;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    sea_query::Expr, sea_query::OnConflict,
};

use super::access::{self, Sight};
use super::audit::{self, Actor};
use super::error::{Error, Result};
use crate::auth::Viewer;

/// An MSP id as it appears in tokens: 1–64 of `A–Z a–z 0–9 . _ -`.
pub(crate) fn validate_id(raw: &str) -> Result<String> {
    let id = raw.trim();
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(id.to_owned())
    } else {
        Err(Error::bad_input(
            "msp",
            format!("{id:?} is not an MSP id: use 1–64 letters, digits, '.', '_' or '-'"),
        ))
    }
}

/// Registers an MSP tenant unless it exists. Returns it, and whether it was new.
pub async fn ensure<C: ConnectionTrait>(
    db: &C,
    id: &str,
    name: Option<&str>,
) -> Result<(msp_tenant::Model, bool)> {
    let id = validate_id(id)?;
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(&id)
        .to_owned();
    let inserted = msp_tenant::Entity::insert(msp_tenant::ActiveModel {
        id: Set(id.clone()),
        name: Set(name),
        created_at: Set(crate::db::now()),
        disabled_at: Set(None),
    })
    .on_conflict(
        OnConflict::column(msp_tenant::Column::Id)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    let model = msp_tenant::Entity::find_by_id(id.clone())
        .one(db)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("MSP tenant {id} vanished after insert")))?;
    Ok((model, inserted > 0))
}

/// Every MSP tenant, by id.
pub(crate) async fn list<C: ConnectionTrait>(db: &C) -> Result<Vec<msp_tenant::Model>, DbErr> {
    msp_tenant::Entity::find()
        .order_by_asc(msp_tenant::Column::Id)
        .all(db)
        .await
}

/// `consentry msp disable` / `enable`: a disabled MSP's tokens are refused at once over HTTP
/// and for every new operation on an open WebSocket, and its open WebSockets are closed
/// (4403) at the next re-check of every instance (`CONSENTRY_RIGHTS_RECHECK_INTERVAL`).
/// Disabling keeps the first `disabled_at`. Returns the MSP as it is now.
pub(crate) async fn set_disabled<C: ConnectionTrait>(
    db: &C,
    id: &str,
    disabled: bool,
) -> Result<msp_tenant::Model> {
    let id = validate_id(id)?;
    let mut update = msp_tenant::Entity::update_many().filter(msp_tenant::Column::Id.eq(&id));
    update = if disabled {
        update
            .col_expr(
                msp_tenant::Column::DisabledAt,
                Expr::value(crate::db::now()),
            )
            .filter(msp_tenant::Column::DisabledAt.is_null())
    } else {
        update.col_expr(
            msp_tenant::Column::DisabledAt,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
    };
    update.exec(db).await?;
    msp_tenant::Entity::find_by_id(id.clone())
        .one(db)
        .await?
        .ok_or_else(|| {
            Error::bad_input(
                "msp",
                format!("MSP tenant {id:?} is not registered (see `consentry msp list`)"),
            )
        })
}

/// Succeeds when the viewer may follow the MSP's events: its own MSP, or for support staff any
/// registered one — a look written to the MSP's audit trail as `SUPPORT_READ` (checklist
/// 100). `NOT_FOUND` otherwise, exactly as for an MSP that does not exist. `what` names the
/// subscription, e.g. `graphApiTileChanged`.
pub(crate) async fn require_watchable<C: ConnectionTrait>(
    db: &C,
    viewer: &Viewer,
    msp_id: &str,
    what: &str,
) -> Result<()> {
    match access::sight(viewer, msp_id) {
        Some(Sight::Own) => Ok(()),
        Some(Sight::Support) => {
            let registered = msp_tenant::Entity::find_by_id(msp_id.to_owned())
                .one(db)
                .await?
                .is_some();
            if !registered {
                return Err(Error::not_found("MSP tenant", msp_id));
            }
            audit::record(
                db,
                &Actor::from(viewer),
                msp_id,
                None,
                entity::enums::AuditAction::SupportRead,
                serde_json::json!({ "subscription": what }),
            )
            .await?;
            Ok(())
        }
        None => Err(Error::not_found("MSP tenant", msp_id)),
    }
}
