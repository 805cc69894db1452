use sea_orm_migration::prelude::*;

use crate::json_null;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Admin consent has two steps since 2026-12: an OpenID sign-in that proves which tenant
        // the admin belongs to, then Microsoft's admin-consent page for that tenant. The second
        // step has a `state` of its own (kept as a hash, like the first), and the flow keeps
        // the proof between the two.
        manager
            .alter_table(
                Table::alter()
                    .table("oauth_flow")
                    .add_column(ColumnDef::new("consent_state_hash").string_len(64).null())
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("oauth_flow")
                    .add_column(json_null("tenant_proof"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_oauth_flow_consent_state_hash")
                    .table("oauth_flow")
                    .col("consent_state_hash")
                    .unique()
                    .take(),
            )
            .await?;
        // Which signed-in admin proved the tenant of an authorisation. Tiles authorised before
        // this column existed have none: they stay AUTHORISED, read as unproven, and gain a
        // proof with their next consent.
        manager
            .alter_table(
                Table::alter()
                    .table("graph_api_tile")
                    .add_column(json_null("tenant_proof"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("graph_api_tile")
                    .drop_column("tenant_proof")
                    .take(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ux_oauth_flow_consent_state_hash")
                    .table("oauth_flow")
                    .to_owned(),
            )
            .await?;
        for column in ["consent_state_hash", "tenant_proof"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("oauth_flow")
                        .drop_column(column)
                        .take(),
                )
                .await?;
        }
        Ok(())
    }
}
