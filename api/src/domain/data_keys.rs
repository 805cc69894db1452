//! Data keys wrapped by a KMS (checklist 78). With `CONSENTRY_KMS_VAULT_ADDR` set, refresh
//! tokens and sign-in verifiers are encrypted under data keys that Consentry generates,
//! stores only wrapped by Vault's transit key (`data_key`), and unwraps at start; the
//! key-encryption key never leaves Vault. `consentry rotate-keys` makes a new data key,
//! re-encrypts everything under it, rewraps the data keys under the transit key's newest
//! version, and retires data keys nothing uses any more (checklist 77).

use entity::{data_key, delegated_consent, oauth_flow};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::OnConflict,
};
use secrecy::SecretBox;
use uuid::Uuid;

use super::crypto::TokenKeys;
use super::error::{Error, Result};
use crate::db::now;
use crate::kms::{KmsError, VaultTransit};

/// The prefix of a data key's id; a configured key id cannot contain ':', so the two never
/// meet.
pub(crate) const ID_PREFIX: &str = "kms:";

fn kms_error(error: KmsError) -> Error {
    Error::Internal(anyhow::anyhow!(
        "{error}: check CONSENTRY_KMS_VAULT_ADDR, its token and the transit key's policy"
    ))
}

/// Every data key, unwrapped, newest first; one is made when there is none yet.
pub(crate) async fn load_or_create<C: ConnectionTrait>(
    db: &C,
    kms: &VaultTransit,
) -> Result<Vec<(String, SecretBox<[u8; 32]>)>> {
    let mut rows = stored(db).await?;
    if rows.is_empty() {
        create(db, kms).await?;
        // Another instance starting at the same time may have made one too: both are kept,
        // and the newest encrypts.
        rows = stored(db).await?;
    }
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        let key = kms.unwrap(&row.wrapped).await.map_err(kms_error)?;
        keys.push((row.id, key));
    }
    Ok(keys)
}

async fn stored<C: ConnectionTrait>(db: &C) -> Result<Vec<data_key::Model>> {
    Ok(data_key::Entity::find()
        .order_by_desc(data_key::Column::CreatedAt)
        .order_by_desc(data_key::Column::Id)
        .all(db)
        .await?)
}

/// Makes a new data key, stores it wrapped, and returns its id. It encrypts from the next
/// start (or key ring) on.
pub(crate) async fn create<C: ConnectionTrait>(db: &C, kms: &VaultTransit) -> Result<String> {
    let key = TokenKeys::generate_data_key();
    let wrapped = kms.wrap(&key).await.map_err(kms_error)?;
    let id = format!("{ID_PREFIX}{}", &Uuid::new_v4().simple().to_string()[..16]);
    data_key::Entity::insert(data_key::ActiveModel {
        id: Set(id.clone()),
        wrapped: Set(wrapped),
        kek: Set(kms.label()),
        created_at: Set(now()),
    })
    .on_conflict(
        OnConflict::column(data_key::Column::Id)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(id)
}

/// Wraps every data key again under the transit key's newest version (after a rotation in
/// Vault): Vault rewraps without anyone seeing the keys. Returns how many.
pub(crate) async fn rewrap<C: ConnectionTrait>(db: &C, kms: &VaultTransit) -> Result<usize> {
    let rows = stored(db).await?;
    for row in &rows {
        let wrapped = kms.rewrap(&row.wrapped).await.map_err(kms_error)?;
        data_key::Entity::update_many()
            .col_expr(
                data_key::Column::Wrapped,
                sea_orm::sea_query::Expr::value(wrapped),
            )
            .col_expr(
                data_key::Column::Kek,
                sea_orm::sea_query::Expr::value(kms.label()),
            )
            .filter(data_key::Column::Id.eq(row.id.clone()))
            .exec(db)
            .await?;
    }
    Ok(rows.len())
}

/// Deletes the data keys that no stored ciphertext names any more, except `current`.
/// Returns how many.
pub(crate) async fn retire_unused<C: ConnectionTrait>(db: &C, current: &str) -> Result<u64> {
    let mut used: Vec<String> = delegated_consent::Entity::find()
        .select_only()
        .column(delegated_consent::Column::RefreshTokenKeyId)
        .filter(delegated_consent::Column::RefreshTokenKeyId.is_not_null())
        .distinct()
        .into_tuple::<Option<String>>()
        .all(db)
        .await?
        .into_iter()
        .flatten()
        .collect();
    used.extend(
        oauth_flow::Entity::find()
            .select_only()
            .column(oauth_flow::Column::PkceVerifierKeyId)
            .filter(oauth_flow::Column::PkceVerifierKeyId.is_not_null())
            .distinct()
            .into_tuple::<Option<String>>()
            .all(db)
            .await?
            .into_iter()
            .flatten(),
    );
    used.push(current.to_owned());
    let retired = data_key::Entity::delete_many()
        .filter(data_key::Column::Id.is_not_in(used))
        .exec(db)
        .await?;
    Ok(retired.rows_affected)
}
