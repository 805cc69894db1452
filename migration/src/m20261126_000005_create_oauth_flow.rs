use sea_orm_migration::prelude::*;

use crate::{
    at, at_null, belongs_to_msp, json_null, owned_by_client, text, text_null, uuid, uuid_null,
};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One started sign-in or consent. The `state` is kept only as a hash; the flow is
        // bound server-side to (MSP, client, kind) and used once.
        manager
            .create_table(
                Table::create()
                    .table("oauth_flow")
                    .col(uuid("id").primary_key())
                    .col(ColumnDef::new("msp_id").string_len(64).not_null())
                    .col(uuid("client_id"))
                    .col(text("kind"))
                    .col(ColumnDef::new("state_hash").string_len(64).not_null())
                    .col(text_null("pkce_verifier"))
                    .col(text_null("nonce"))
                    .col(text_null("expected_tenant"))
                    .col(json_null("requested_permissions"))
                    .col(uuid_null("service_principal_request_id"))
                    .col(text("status"))
                    .col(json_null("outcome"))
                    .col(text("created_by"))
                    .col(at("created_at"))
                    .col(at("expires_at"))
                    .col(at_null("completed_at"))
                    .foreign_key(&mut owned_by_client("oauth_flow"))
                    .foreign_key(&mut belongs_to_msp("oauth_flow"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_oauth_flow_service_principal_request")
                            .from("oauth_flow", "service_principal_request_id")
                            .to("service_principal_request", "id")
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_oauth_flow_state_hash")
                    .table("oauth_flow")
                    .col("state_hash")
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_oauth_flow_client")
                    .table("oauth_flow")
                    .col("client_id")
                    .take(),
            )
            .await?;
        // Expiry sweeps look for pending flows past their deadline.
        manager
            .create_index(
                Index::create()
                    .name("ix_oauth_flow_status_expiry")
                    .table("oauth_flow")
                    .col("status")
                    .col("expires_at")
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("oauth_flow").take())
            .await
    }
}
