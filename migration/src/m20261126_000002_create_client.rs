use sea_orm_migration::prelude::*;

use crate::{at, belongs_to_msp, text, text_null, uuid, uuid_null};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("client")
                    .col(uuid("id").primary_key())
                    .col(ColumnDef::new("msp_id").string_len(64).not_null())
                    .col(ColumnDef::new("name").string_len(200).not_null())
                    // Lower-cased name: uniqueness, search and ordering ignore case on every backend.
                    .col(text("name_key"))
                    .col(text_null("domain"))
                    .col(uuid_null("azure_tenant_id"))
                    .col(text("created_by"))
                    .col(at("created_at"))
                    .col(at("updated_at"))
                    .foreign_key(&mut belongs_to_msp("client"))
                    .take(),
            )
            .await?;
        // One name per MSP (also the keyset-pagination index of an MSP's client list).
        manager
            .create_index(
                Index::create()
                    .name("ux_client_msp_name")
                    .table("client")
                    .col("msp_id")
                    .col("name_key")
                    .unique()
                    .take(),
            )
            .await?;
        // Within one MSP a Microsoft tenant belongs to one client (checklist 15).
        manager
            .create_index(
                Index::create()
                    .name("ux_client_msp_tenant")
                    .table("client")
                    .col("msp_id")
                    .col("azure_tenant_id")
                    .unique()
                    .take(),
            )
            .await?;
        // Support staff list clients across MSPs in name order.
        manager
            .create_index(
                Index::create()
                    .name("ix_client_name")
                    .table("client")
                    .col("name_key")
                    .col("id")
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("client").take())
            .await
    }
}
