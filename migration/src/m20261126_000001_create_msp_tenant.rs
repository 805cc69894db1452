use sea_orm_migration::prelude::*;

use crate::{at, at_null, text};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The id is the MSP's identifier as it appears in callers' tokens (`msp` claim).
        manager
            .create_table(
                Table::create()
                    .table("msp_tenant")
                    .col(ColumnDef::new("id").string_len(64).not_null().primary_key())
                    .col(text("name"))
                    .col(at("created_at"))
                    .col(at_null("disabled_at"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("msp_tenant").take())
            .await
    }
}
