use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// The tables that hold an MSP's rows, each with its `msp_id`.
const BY_MSP: [&str; 5] = [
    "client",
    "delegated_consent",
    "service_principal_request",
    "audit_event",
    "oauth_flow",
];

/// The tables that hold an MSP's rows through their client.
const BY_CLIENT: [&str; 1] = ["graph_api_tile"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Each MSP's revision (issue 17): it changes, in the same transaction, with every
        // change to a row of the MSP — its clients, tiles, delegated consents, service
        // principal requests, audit events, sign-in flows, and its own name or state — made by
        // any instance, by the command line, or by hand in SQL. A stored answer is reused only
        // at the revision it was computed at.
        manager
            .alter_table(
                Table::alter()
                    .table("msp_tenant")
                    .add_column(
                        ColumnDef::new("revision")
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .take(),
            )
            .await?;
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                for statement in postgres_up() {
                    db.execute_unprepared(&statement).await?;
                }
            }
            _ => {
                for statement in sqlite_up() {
                    db.execute_unprepared(&statement).await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                for table in BY_MSP.iter().chain(&BY_CLIENT) {
                    db.execute_unprepared(&format!(
                        "DROP TRIGGER IF EXISTS msp_revision ON {table}"
                    ))
                    .await?;
                }
                db.execute_unprepared("DROP TRIGGER IF EXISTS msp_revision ON msp_tenant")
                    .await?;
                for function in [
                    "msp_revision_by_msp",
                    "msp_revision_by_client",
                    "msp_revision_own",
                ] {
                    db.execute_unprepared(&format!("DROP FUNCTION IF EXISTS {function}()"))
                        .await?;
                }
            }
            _ => {
                for table in BY_MSP.iter().chain(&BY_CLIENT) {
                    for event in ["insert", "update", "delete"] {
                        db.execute_unprepared(&format!(
                            "DROP TRIGGER IF EXISTS msp_revision_{table}_{event}"
                        ))
                        .await?;
                    }
                }
                db.execute_unprepared("DROP TRIGGER IF EXISTS msp_revision_msp_tenant_update")
                    .await?;
            }
        }
        manager
            .alter_table(
                Table::alter()
                    .table("msp_tenant")
                    .drop_column("revision")
                    .take(),
            )
            .await
    }
}

/// PostgreSQL: the rows' triggers are deferred to the commit, so the MSP's row is locked only
/// while a transaction commits, after every other lock it takes — never held while it waits
/// for another row, so they can never deadlock. Functions keep the search path they were
/// created with, so each schema's triggers change that schema's MSPs.
fn postgres_up() -> Vec<String> {
    let mut statements = vec![
        "CREATE FUNCTION msp_revision_by_msp() RETURNS trigger LANGUAGE plpgsql \
         SET search_path FROM CURRENT AS $$ \
         BEGIN \
           IF TG_OP <> 'INSERT' THEN \
             UPDATE msp_tenant SET revision = revision + 1 WHERE id = OLD.msp_id; \
           END IF; \
           IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.msp_id IS DISTINCT FROM OLD.msp_id) THEN \
             UPDATE msp_tenant SET revision = revision + 1 WHERE id = NEW.msp_id; \
           END IF; \
           RETURN NULL; \
         END $$"
            .to_owned(),
        "CREATE FUNCTION msp_revision_by_client() RETURNS trigger LANGUAGE plpgsql \
         SET search_path FROM CURRENT AS $$ \
         BEGIN \
           UPDATE msp_tenant SET revision = revision + 1 WHERE id = ( \
             SELECT msp_id FROM client WHERE id = \
               CASE WHEN TG_OP = 'DELETE' THEN OLD.client_id ELSE NEW.client_id END); \
           RETURN NULL; \
         END $$"
            .to_owned(),
        "CREATE FUNCTION msp_revision_own() RETURNS trigger LANGUAGE plpgsql \
         SET search_path FROM CURRENT AS $$ \
         BEGIN \
           NEW.revision := OLD.revision + 1; \
           RETURN NEW; \
         END $$"
            .to_owned(),
        "CREATE TRIGGER msp_revision BEFORE UPDATE OF name, disabled_at ON msp_tenant \
         FOR EACH ROW EXECUTE FUNCTION msp_revision_own()"
            .to_owned(),
    ];
    for table in BY_MSP {
        statements.push(format!(
            "CREATE CONSTRAINT TRIGGER msp_revision AFTER INSERT OR UPDATE OR DELETE ON {table} \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION msp_revision_by_msp()"
        ));
    }
    for table in BY_CLIENT {
        statements.push(format!(
            "CREATE CONSTRAINT TRIGGER msp_revision AFTER INSERT OR UPDATE OR DELETE ON {table} \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION msp_revision_by_client()"
        ));
    }
    statements
}

/// SQLite runs one writer at a time: its triggers change the revision as the row changes.
/// A tile's row deleted with its client finds no client: the client's own trigger counts it.
fn sqlite_up() -> Vec<String> {
    let bump =
        |which: &str| format!("UPDATE msp_tenant SET revision = revision + 1 WHERE id = {which};");
    let mut statements = Vec::new();
    for table in BY_MSP {
        statements.push(format!(
            "CREATE TRIGGER msp_revision_{table}_insert AFTER INSERT ON {table} BEGIN {} END",
            bump("NEW.msp_id")
        ));
        statements.push(format!(
            "CREATE TRIGGER msp_revision_{table}_update AFTER UPDATE ON {table} BEGIN {} END",
            "UPDATE msp_tenant SET revision = revision + 1 WHERE id IN (OLD.msp_id, NEW.msp_id);"
        ));
        statements.push(format!(
            "CREATE TRIGGER msp_revision_{table}_delete AFTER DELETE ON {table} BEGIN {} END",
            bump("OLD.msp_id")
        ));
    }
    for table in BY_CLIENT {
        for (event, row) in [("insert", "NEW"), ("update", "NEW"), ("delete", "OLD")] {
            statements.push(format!(
                "CREATE TRIGGER msp_revision_{table}_{event} AFTER {} ON {table} BEGIN {} END",
                event.to_uppercase(),
                bump(&format!(
                    "(SELECT msp_id FROM client WHERE id = {row}.client_id)"
                ))
            ));
        }
    }
    statements.push(format!(
        "CREATE TRIGGER msp_revision_msp_tenant_update AFTER UPDATE OF name, disabled_at \
         ON msp_tenant BEGIN {} END",
        bump("NEW.id")
    ));
    statements
}
