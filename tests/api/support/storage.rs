//! What the database holds: a logical dump of its rows, and whether a secret is in it.

use consentry_tests::{Backend, TestApp};
use sea_orm::{ConnectionTrait, Statement};

/// Every row of every table, as a dump (`pg_dump`, `sqlite3 .dump`) would hold it: on
/// PostgreSQL each row as JSON (`bytea` as hex), on SQLite each value `quote()`d (blobs as
/// hex).
pub(crate) async fn logical_dump(app: &TestApp) -> Vec<u8> {
    let db = &app.db;
    let query = |sql: String| async move {
        db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.try_get_by_index::<String>(0).unwrap())
            .collect::<Vec<String>>()
    };
    let mut rows = Vec::new();
    match app.database().backend {
        Backend::Sqlite => {
            for table in query("SELECT name FROM sqlite_master WHERE type = 'table'".into()).await {
                let columns = query(format!("SELECT name FROM pragma_table_info('{table}')")).await;
                let row = columns
                    .iter()
                    .map(|c| format!("quote(\"{c}\")"))
                    .collect::<Vec<_>>()
                    .join(" || '|' || ");
                rows.extend(query(format!("SELECT {row} FROM \"{table}\"")).await);
            }
        }
        Backend::Postgres => {
            let tables = query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema()"
                    .into(),
            )
            .await;
            for table in tables {
                rows.extend(query(format!("SELECT row_to_json(t)::text FROM \"{table}\" t")).await);
            }
        }
    }
    assert!(
        rows.iter().any(|row| row.contains("msp-a")),
        "the dump read the test's tables"
    );
    rows.join("\n").into_bytes()
}

/// Everything a dump or a copy of the data holds: the logical dump and, on SQLite, the bytes
/// of the database file and of every file beside it (the WAL, what is not checkpointed yet).
pub(crate) async fn dump(app: &TestApp) -> Vec<u8> {
    let mut bytes = logical_dump(app).await;
    if let Some(dir) = app.database().directory() {
        for entry in std::fs::read_dir(dir).unwrap() {
            bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
    bytes
}

/// Whether `secret` appears in `dump`, as text or hex-encoded (how `bytea` is dumped).
pub(crate) fn holds(dump: &[u8], secret: &str) -> bool {
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    [secret.as_bytes(), hex.as_bytes()]
        .iter()
        .any(|needle| dump.windows(needle.len()).any(|w| w == *needle))
}
