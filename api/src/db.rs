//! The database connection: SQLite (embedded default) or PostgreSQL, migrated at start.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    TransactionTrait,
};
use secrecy::ExposeSecret;

use crate::config::{DatabaseKind, Settings};

/// Why the database could not be opened or migrated, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The SQLite file's directory does not exist.
    #[error(
        "cannot open the SQLite database {path}: its directory does not exist; create it or point DATABASE_URL elsewhere"
    )]
    MissingDirectory { path: String },
    /// The server refused or could not be reached.
    #[error("cannot connect to the database at {label}: {source}")]
    Connect {
        label: String,
        #[source]
        source: DbErr,
    },
    /// A migration failed.
    #[error("database migration failed on {label}: {source}")]
    Migrate {
        label: String,
        #[source]
        source: DbErr,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Opens the pool. SQLite gets WAL (readers never wait for the writer) and a busy timeout.
#[tracing::instrument(skip_all, fields(database = %settings.database_label()))]
pub async fn connect(settings: &Settings) -> Result<DatabaseConnection, DatabaseError> {
    let kind = settings.database_kind()?;
    if let DatabaseKind::SqliteFile(path) = &kind
        && let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        return Err(DatabaseError::MissingDirectory {
            path: path.display().to_string(),
        });
    }
    let mut options = ConnectOptions::new(settings.database_url.expose_secret().to_owned());
    options
        .max_connections(match kind {
            // One in-memory database per connection otherwise.
            DatabaseKind::SqliteMemory => 1,
            _ => settings.db_max_connections,
        })
        .min_connections(0)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    Database::connect(options)
        .await
        .map_err(|source| DatabaseError::Connect {
            label: settings.database_label(),
            source,
        })
}

/// Applies pending migrations; a no-op on an up-to-date database. On PostgreSQL an advisory
/// lock makes instances that start together migrate one after the other.
pub async fn migrate(db: &DatabaseConnection, label: &str) -> Result<(), DatabaseError> {
    let wrap = |source| DatabaseError::Migrate {
        label: label.to_owned(),
        source,
    };
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let txn = db.begin().await.map_err(wrap)?;
            // Arbitrary constant: "consentry migrate".
            txn.execute_unprepared("SELECT pg_advisory_xact_lock(7261537001)")
                .await
                .map_err(wrap)?;
            Migrator::up(&txn, None).await.map_err(wrap)?;
            txn.commit().await.map_err(wrap)
        }
        _ => Migrator::up(db, None).await.map_err(wrap),
    }
}

/// Names of applied and pending migrations, oldest first.
pub async fn migration_status(
    db: &DatabaseConnection,
) -> Result<(Vec<String>, Vec<String>), DbErr> {
    let applied = Migrator::get_applied_migrations(db)
        .await?
        .into_iter()
        .map(|m| m.name().to_owned())
        .collect();
    let pending = Migrator::get_pending_migrations(db)
        .await?
        .into_iter()
        .map(|m| m.name().to_owned())
        .collect();
    Ok((applied, pending))
}

/// True when the database answers a trivial query within `timeout`.
pub async fn ping(db: &DatabaseConnection, timeout: Duration) -> bool {
    matches!(tokio::time::timeout(timeout, db.ping()).await, Ok(Ok(())))
}

/// Starts a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`), so a read-then-write transaction waits for other writers instead of
/// failing with SQLITE_BUSY halfway through.
pub async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    db.begin_with_options(sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// How many SQL statements one request ran (see [`counted`]).
#[derive(Clone, Debug, Default)]
pub struct StatementCount(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl StatementCount {
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A handle on the same pool that counts the statements run through it (DataLoaders and
/// transactions included), so each GraphQL operation's statement count can be observed.
pub fn counted(db: &DatabaseConnection) -> (DatabaseConnection, StatementCount) {
    let count = StatementCount::default();
    let mut counting = db.clone();
    let counter = count.0.clone();
    counting.set_metric_callback(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    (counting, count)
}
