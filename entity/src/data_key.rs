//! A data key wrapped by the KMS (checklist 78): what encrypts refresh tokens and sign-in
//! verifiers when a KMS holds the key-encryption key. Only its wrapped form is stored.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "data_key")]
pub struct Model {
    /// The key id ciphertexts name (`kms:…`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The KMS's ciphertext of the key (Vault: `vault:v1:…`).
    pub wrapped: String,
    /// Which KMS key wrapped it (`vault-transit:{mount}/{key}`).
    pub kek: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
