use sea_orm_migration::prelude::*;

use crate::text_null;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A flow's PKCE verifier is kept sealed (AES-256-GCM, bound to the flow) and its nonce
        // only as a SHA-256 hash, so that a database dump holds neither.
        manager
            .alter_table(
                Table::alter()
                    .table("oauth_flow")
                    .add_column(ColumnDef::new("sealed_pkce_verifier").binary().null())
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("oauth_flow")
                    .add_column(text_null("pkce_verifier_key_id"))
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("oauth_flow")
                    .add_column(ColumnDef::new("nonce_hash").string_len(64).null())
                    .take(),
            )
            .await?;
        // The plaintext ones go. No key is at hand here to seal them with, so the links still
        // pending lose their sign-in: their callback fails with "send a new link". Erased
        // before the columns are dropped (PostgreSQL's DROP COLUMN leaves the values in place
        // until rows are rewritten).
        manager
            .get_connection()
            .execute_unprepared("UPDATE oauth_flow SET pkce_verifier = NULL, nonce = NULL")
            .await?;
        for column in ["pkce_verifier", "nonce"] {
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

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Pending links made since cannot be completed by the earlier version.
        for column in ["pkce_verifier", "nonce"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("oauth_flow")
                        .add_column(text_null(column))
                        .take(),
                )
                .await?;
        }
        for column in ["sealed_pkce_verifier", "pkce_verifier_key_id", "nonce_hash"] {
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
