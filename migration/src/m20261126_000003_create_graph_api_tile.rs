use sea_orm_migration::prelude::*;

use crate::{at, at_null, json, owned_by_client, text, text_null, uuid};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One tile per client: the client's Graph API authorisation state.
        manager
            .create_table(
                Table::create()
                    .table("graph_api_tile")
                    .col(uuid("client_id").primary_key())
                    .col(text("status"))
                    .col(text_null("problem_code"))
                    .col(ColumnDef::new("problem_aadsts_code").big_integer().null())
                    .col(text_null("problem_message"))
                    .col(text_null("problem_remediation"))
                    .col(text_null("problem_app_id"))
                    .col(text_null("problem_app_display_name"))
                    .col(json("granted_permissions"))
                    .col(json("missing_permissions"))
                    .col(at_null("authorised_at"))
                    .col(at_null("last_verified_at"))
                    // Bumped on every change: subscribers order and de-duplicate events by it.
                    .col(
                        ColumnDef::new("version")
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(at("status_changed_at"))
                    .col(at("updated_at"))
                    .foreign_key(&mut owned_by_client("graph_api_tile"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_graph_api_tile_status")
                    .table("graph_api_tile")
                    .col("status")
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("graph_api_tile").take())
            .await
    }
}
