use sea_orm_migration::prelude::*;

use crate::{at, text};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Data keys wrapped by a KMS (checklist 78): refresh tokens and sign-in verifiers are
        // encrypted under them, and only the KMS can unwrap them. Empty without a KMS.
        manager
            .create_table(
                Table::create()
                    .table("data_key")
                    .col(ColumnDef::new("id").string_len(64).not_null().primary_key())
                    .col(text("wrapped"))
                    .col(text("kek"))
                    .col(at("created_at"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("data_key").take())
            .await
    }
}
