use sea_orm_migration::prelude::*;

use crate::{at, belongs_to_msp, json, text, uuid_null};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Append-only. `client_id` deliberately has no foreign key: a client's audit trail
        // outlives the client.
        manager
            .create_table(
                Table::create()
                    .table("audit_event")
                    .col(
                        ColumnDef::new("id")
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new("msp_id").string_len(64).not_null())
                    .col(uuid_null("client_id"))
                    .col(text("actor_subject"))
                    .col(json("actor_roles"))
                    .col(ColumnDef::new("actor_msp_id").string_len(64).not_null())
                    .col(text("action"))
                    .col(json("details"))
                    .col(at("created_at"))
                    .foreign_key(&mut belongs_to_msp("audit_event"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_event_client")
                    .table("audit_event")
                    .col("client_id")
                    .col("id")
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_event_msp")
                    .table("audit_event")
                    .col("msp_id")
                    .col("id")
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("audit_event").take())
            .await
    }
}
