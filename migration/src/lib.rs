//! Consentry's schema, as an ordered list of sea-orm migrations.
//!
//! Migrations name tables and columns by string and never import `entity`, so an old
//! migration keeps compiling (and keeps meaning the same thing) when entities change.

// `MigrationTrait` is declared with an elided `SchemaManager` lifetime; implementations must match.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_create_msp_tenant;
mod m20261126_000002_create_client;
mod m20261126_000003_create_graph_api_tile;
mod m20261126_000004_create_service_principal_request;
mod m20261126_000005_create_oauth_flow;
mod m20261126_000006_create_delegated_consent;
mod m20261126_000007_create_audit_event;
mod m20261202_000008_consent_flow_leases;
mod m20261202_000009_create_event_outbox;
mod m20261204_000010_tenant_proof;
mod m20261204_000011_flow_secrets_at_rest;
mod m20261204_000012_create_data_key;
mod m20261204_000013_msp_revision;

/// Every migration, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_msp_tenant::Migration),
            Box::new(m20261126_000002_create_client::Migration),
            Box::new(m20261126_000003_create_graph_api_tile::Migration),
            Box::new(m20261126_000004_create_service_principal_request::Migration),
            Box::new(m20261126_000005_create_oauth_flow::Migration),
            Box::new(m20261126_000006_create_delegated_consent::Migration),
            Box::new(m20261126_000007_create_audit_event::Migration),
            Box::new(m20261202_000008_consent_flow_leases::Migration),
            Box::new(m20261202_000009_create_event_outbox::Migration),
            Box::new(m20261204_000010_tenant_proof::Migration),
            Box::new(m20261204_000011_flow_secrets_at_rest::Migration),
            Box::new(m20261204_000012_create_data_key::Migration),
            Box::new(m20261204_000013_msp_revision::Migration),
        ]
    }
}

/// Timestamp columns are always `timestamp with time zone` (text in SQLite) holding UTC.
fn at(name: &'static str) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .take()
}

fn at_null(name: &'static str) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .null()
        .take()
}

fn text(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).text().not_null().take()
}

fn text_null(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).text().null().take()
}

fn uuid(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).uuid().not_null().take()
}

fn uuid_null(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).uuid().null().take()
}

fn json(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).json().not_null().take()
}

fn json_null(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).json().null().take()
}

/// A foreign key from `table.column` to `client.id` that removes the row with its client.
fn owned_by_client(table: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_client"))
        .from(table, "client_id")
        .to("client", "id")
        .on_delete(ForeignKeyAction::Cascade)
        .on_update(ForeignKeyAction::Cascade)
        .take()
}

/// A foreign key from `table.msp_id` to `msp_tenant.id`; an MSP with data cannot be removed.
fn belongs_to_msp(table: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_msp"))
        .from(table, "msp_id")
        .to("msp_tenant", "id")
        .on_delete(ForeignKeyAction::Restrict)
        .on_update(ForeignKeyAction::Restrict)
        .take()
}
