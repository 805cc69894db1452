use sea_orm_migration::prelude::*;

use crate::{at, at_null, belongs_to_msp, json, owned_by_client, text, text_null, uuid};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One user of a client tenant who granted delegated scopes, with their refresh token
        // (ciphertext only) so Consentry can act as them.
        manager
            .create_table(
                Table::create()
                    .table("delegated_consent")
                    .col(uuid("id").primary_key())
                    .col(ColumnDef::new("msp_id").string_len(64).not_null())
                    .col(uuid("client_id"))
                    .col(text("tenant_id"))
                    .col(text("user_object_id"))
                    .col(text("user_principal_name"))
                    .col(text_null("display_name"))
                    .col(json("permissions"))
                    .col(json("missing_permissions"))
                    .col(text("status"))
                    .col(text_null("status_reason"))
                    .col(ColumnDef::new("refresh_token").binary().null())
                    .col(text_null("refresh_token_key_id"))
                    .col(at("granted_at"))
                    .col(at_null("last_refreshed_at"))
                    .col(at_null("next_refresh_at"))
                    .col(text("granted_by"))
                    .col(at("created_at"))
                    .col(at("updated_at"))
                    .foreign_key(&mut owned_by_client("delegated_consent"))
                    .foreign_key(&mut belongs_to_msp("delegated_consent"))
                    .take(),
            )
            .await?;
        // One consent per (client, user): consenting again updates it.
        manager
            .create_index(
                Index::create()
                    .name("ux_delegated_consent_client_user")
                    .table("delegated_consent")
                    .col("client_id")
                    .col("user_object_id")
                    .unique()
                    .take(),
            )
            .await?;
        // The keep-alive job picks active consents whose refresh is due.
        manager
            .create_index(
                Index::create()
                    .name("ix_delegated_consent_refresh_due")
                    .table("delegated_consent")
                    .col("status")
                    .col("next_refresh_at")
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("delegated_consent").take())
            .await
    }
}
