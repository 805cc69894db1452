use sea_orm_migration::prelude::*;

use crate::{at, text};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Change events written in the transaction of their change, for subscribers on the
        // embedded SQLite database (PostgreSQL uses NOTIFY instead). SQLite runs one writer at
        // a time, so ids grow in commit order; rows are pruned after a few minutes.
        manager
            .create_table(
                Table::create()
                    .table("event_outbox")
                    .col(
                        ColumnDef::new("id")
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(text("payload"))
                    .col(at("created_at"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("event_outbox").take())
            .await
    }
}
