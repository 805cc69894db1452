//! MSP tenants: the platform's customers. Callers' tokens name one in their `msp` claim.

use entity::msp_tenant;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, QueryOrder, sea_query::OnConflict,
};

use super::{
    Error, Result,
    access::{self, Sight},
    audit::{self, Actor},
};
use crate::auth::Viewer;

/// An MSP id as it appears in tokens: 1–64 of `A–Z a–z 0–9 . _ -`.
pub fn validate_id(raw: &str) -> Result<String> {
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
        created_at: Set(super::now()),
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
pub async fn list<C: ConnectionTrait>(db: &C) -> Result<Vec<msp_tenant::Model>, DbErr> {
    msp_tenant::Entity::find()
        .order_by_asc(msp_tenant::Column::Id)
        .all(db)
        .await
}

/// Succeeds when the viewer may follow the MSP's events: its own MSP, or for support staff any
/// registered one — a look written to the MSP's audit trail as `SUPPORT_READ` (checklist
/// 100). `NOT_FOUND` otherwise, exactly as for an MSP that does not exist. `what` names the
/// subscription, e.g. `graphApiTileChanged`.
pub async fn require_watchable<C: ConnectionTrait>(
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
