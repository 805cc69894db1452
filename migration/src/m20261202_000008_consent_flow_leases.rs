use sea_orm_migration::prelude::*;

use crate::at_null;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // When a callback claimed the flow: a flow stuck in EXCHANGING past its lease (the
        // instance died mid-exchange) is failed by a sweep, so the user can start again.
        manager
            .alter_table(
                Table::alter()
                    .table("oauth_flow")
                    .add_column(at_null("claimed_at"))
                    .take(),
            )
            .await?;
        // When an authorised tile is next re-verified. Instances claim a due tile by moving
        // this forward with a compare-and-set, so no two verify the same tile at once.
        manager
            .alter_table(
                Table::alter()
                    .table("graph_api_tile")
                    .add_column(at_null("next_verification_at"))
                    .take(),
            )
            .await?;
        // The tenant a service principal is created in (from the validated sign-in), and
        // when its replication wait began.
        manager
            .alter_table(
                Table::alter()
                    .table("service_principal_request")
                    .add_column(ColumnDef::new("tenant_id").text().null())
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("service_principal_request")
                    .add_column(at_null("propagating_since"))
                    .take(),
            )
            .await?;
        // A delegated consent remembers who Microsoft said signed in (a refreshed id_token
        // must name the same issuer and subject, checklist 28), and is leased while one
        // refresh runs so that refreshes of one consent never overlap (checklist 93).
        for column in ["id_token_issuer", "id_token_subject"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("delegated_consent")
                        .add_column(ColumnDef::new(column).text().null())
                        .take(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table("delegated_consent")
                    .add_column(at_null("refreshing_until"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_graph_api_tile_next_verification")
                    .table("graph_api_tile")
                    .col("status")
                    .col("next_verification_at")
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["id_token_issuer", "id_token_subject", "refreshing_until"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("delegated_consent")
                        .drop_column(column)
                        .take(),
                )
                .await?;
        }
        for column in ["tenant_id", "propagating_since"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("service_principal_request")
                        .drop_column(column)
                        .take(),
                )
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("ix_graph_api_tile_next_verification")
                    .table("graph_api_tile")
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("graph_api_tile")
                    .drop_column("next_verification_at")
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("oauth_flow")
                    .drop_column("claimed_at")
                    .take(),
            )
            .await
    }
}
