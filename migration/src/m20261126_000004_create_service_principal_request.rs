use sea_orm_migration::prelude::*;

use crate::{at, at_null, belongs_to_msp, owned_by_client, text, text_null, uuid};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One attempt to create a missing service principal in a client's tenant. The
        // propagation poll is a job on this row that any instance can claim.
        manager
            .create_table(
                Table::create()
                    .table("service_principal_request")
                    .col(uuid("id").primary_key())
                    .col(ColumnDef::new("msp_id").string_len(64).not_null())
                    .col(uuid("client_id"))
                    .col(text("app_id"))
                    .col(text_null("app_display_name"))
                    .col(text("status"))
                    .col(text_null("problem_code"))
                    .col(text_null("problem_message"))
                    .col(text_null("problem_remediation"))
                    .col(text_null("graph_object_id"))
                    .col(ColumnDef::new("attempts").integer().not_null().default(0))
                    .col(at_null("next_attempt_at"))
                    .col(at_null("claimed_until"))
                    .col(text("created_by"))
                    .col(at("created_at"))
                    .col(at("updated_at"))
                    .col(at_null("completed_at"))
                    .foreign_key(&mut owned_by_client("service_principal_request"))
                    .foreign_key(&mut belongs_to_msp("service_principal_request"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_service_principal_request_client")
                    .table("service_principal_request")
                    .col("client_id")
                    .col("created_at")
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_service_principal_request_due")
                    .table("service_principal_request")
                    .col("status")
                    .col("next_attempt_at")
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("service_principal_request").take())
            .await
    }
}
