//! The database connection: SQLite (embedded default) or PostgreSQL, migrated at start.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, LazyLock, PoisonError},
    time::Duration,
};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionTrait,
};
use secrecy::ExposeSecret;

use crate::config::{DatabaseKind, Settings};

/// How long an SQLite writer waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the database could not be opened or migrated, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The SQLite file's directory does not exist.
    #[error(
        "cannot open the SQLite database {path}: its directory does not exist; create it or point DATABASE_URL elsewhere"
    )]
    MissingDirectory { path: String },
    /// The SQLite file does not exist, and the URL does not let SQLite create it.
    #[error(
        "the SQLite database {path} does not exist, and DATABASE_URL does not let Consentry create it: add ?mode=rwc (sqlite://{path}?mode=rwc), or point DATABASE_URL at an existing file"
    )]
    MissingFile { path: String },
    /// The server refused or could not be reached. `reason` is the innermost cause, said
    /// once; `advice` what to check.
    #[error("cannot connect to the database at {label}: {reason}. {advice}")]
    Connect {
        label: String,
        reason: String,
        advice: &'static str,
    },
    /// A migration failed.
    #[error("database migration failed on {label}: {source}")]
    Migrate {
        label: String,
        #[source]
        source: DbErr,
    },
    /// The SQLite file could not be created owner-only.
    #[error("cannot create the SQLite database {path}: {source}")]
    CreateFile {
        path: String,
        #[source]
        source: std::io::Error,
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
    if let DatabaseKind::SqliteFile(path) = &kind
        && !path.exists()
        && !settings.database_url.expose_secret().contains("mode=rwc")
    {
        return Err(DatabaseError::MissingFile {
            path: path.display().to_string(),
        });
    }
    if kind == DatabaseKind::Postgres {
        // One connection first: the pool would retry a refused or failing connection until
        // its acquire timeout and then say only "pool timed out".
        probe_postgres(settings).await?;
    }
    if let DatabaseKind::SqliteFile(path) = &kind {
        private_sqlite_file(
            path,
            settings.database_url.expose_secret().contains("mode=rwc"),
        )
        .map_err(|source| DatabaseError::CreateFile {
            path: path.display().to_string(),
            source,
        })?;
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
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
        });
    Database::connect(options)
        .await
        .map_err(|source| DatabaseError::Connect {
            label: settings.database_label(),
            reason: innermost(&source),
            advice: "check DATABASE_URL",
        })
}

/// How long the first PostgreSQL connection may take before Consentry says it cannot reach it.
const POSTGRES_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (and closes) one PostgreSQL connection, to say at once and in one sentence why the
/// database cannot be used: nothing listening, a wrong password, a missing database.
async fn probe_postgres(settings: &Settings) -> Result<(), DatabaseError> {
    use sea_orm::sqlx::{Connection, postgres::PgConnection};
    let failed = |reason: String, advice: &'static str| DatabaseError::Connect {
        label: settings.database_label(),
        reason,
        advice,
    };
    let url = settings.database_url.expose_secret();
    match tokio::time::timeout(POSTGRES_PROBE_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(error)) => {
            let advice = match &error {
                sea_orm::sqlx::Error::Io(_) => {
                    "Is PostgreSQL running, and listening at that host and port?"
                }
                sea_orm::sqlx::Error::Database(_) => {
                    "Check the user, password and database name in DATABASE_URL (the database must exist: createdb NAME)."
                }
                sea_orm::sqlx::Error::Tls(_) => "Check the server's TLS settings and sslmode.",
                _ => "Check DATABASE_URL.",
            };
            let reason = match &error {
                // PostgreSQL's own words, without the server source line sqlx appends.
                sea_orm::sqlx::Error::Database(database) => database.message().to_owned(),
                other => innermost(other),
            };
            Err(failed(reason, advice))
        }
        Err(_) => Err(failed(
            format!("no answer within {} s", POSTGRES_PROBE_TIMEOUT.as_secs()),
            "Is the host reachable from here (firewall, VPN, DNS)?",
        )),
    }
}

/// An error's innermost cause, as its own words (the layers above repeat it).
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Makes the embedded database readable by its owner only: a file the URL lets SQLite create
/// (`mode=rwc`) is created here first, empty and 0600, so that SQLite never creates it 0644;
/// its `-wal` and `-shm` files then follow, since SQLite gives them the database file's
/// permissions. An existing file keeps the permissions its operator chose, with a warning when
/// others may read it.
fn private_sqlite_file(path: &std::path::Path, create: bool) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        path = %path.display(),
                        mode = format!("{mode:o}"),
                        "the SQLite database (refresh tokens, sign-in links) is readable by others: \
                         `chmod 600` it and the files beside it"
                    );
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                {
                    Ok(_) => Ok(()),
                    // Another process created it meanwhile, with the same permissions.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                    Err(e) => Err(e),
                }
            }
            // SQLite reports a missing file it may not create, with its own words.
            Err(_) => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, create);
        Ok(())
    }
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
pub(crate) async fn migration_status(
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
/// failing with SQLITE_BUSY halfway through — and it first waits its turn among this
/// process's writers, first come first served: SQLite has one write lock, and a writer that
/// finds it taken polls for it in SQLite's busy handler, whose sleeps grow to 100 ms and
/// favour no one (under a burst of callbacks that, not the work, was most of their time).
pub(crate) async fn begin_write(db: &DatabaseConnection) -> Result<WriteTransaction, DbErr> {
    let local = match db.get_database_backend() {
        DbBackend::Sqlite => Some(sqlite_local(db)),
        _ => None,
    };
    let turn = match &local {
        // As long as SQLite's own busy timeout: a writer that waits longer is told the
        // database is unavailable (retry), never left waiting for ever.
        Some(local) => Some(
            tokio::time::timeout(SQLITE_BUSY_TIMEOUT, local.writers.clone().lock_owned())
                .await
                .map_err(|_| {
                    tracing::warn!("gave up waiting for SQLite's write lock");
                    DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout)
                })?,
        ),
        None => None,
    };
    let txn = db
        .begin_with_options(sea_orm::TransactionOptions {
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
    Ok(WriteTransaction {
        txn,
        _turn: turn,
        local,
    })
}

/// What this process shares about one SQLite database.
struct SqliteLocal {
    /// Its writers, in the order they asked.
    writers: Arc<tokio::sync::Mutex<()>>,
    /// Signalled after every commit of a [`WriteTransaction`].
    committed: Arc<tokio::sync::Notify>,
}

/// The process's state of one SQLite database (by its file).
fn sqlite_local(db: &DatabaseConnection) -> Arc<SqliteLocal> {
    static LOCAL: LazyLock<std::sync::Mutex<HashMap<PathBuf, Arc<SqliteLocal>>>> =
        LazyLock::new(Default::default);
    let file = db
        .get_sqlite_connection_pool()
        .connect_options()
        .get_filename()
        .to_path_buf();
    let mut local = LOCAL.lock().unwrap_or_else(PoisonError::into_inner);
    local
        .entry(file)
        .or_insert_with(|| {
            Arc::new(SqliteLocal {
                writers: Arc::default(),
                committed: Arc::default(),
            })
        })
        .clone()
}

/// SQLite: notified after each write transaction this process commits, so that the event
/// outbox is read at once rather than at its next poll. `None` on PostgreSQL.
pub(crate) fn sqlite_commits(db: &DatabaseConnection) -> Option<Arc<tokio::sync::Notify>> {
    match db.get_database_backend() {
        DbBackend::Sqlite => Some(sqlite_local(db).committed.clone()),
        _ => None,
    }
}

/// A transaction that will write (see [`begin_write`]). Dropped without `commit`, it rolls
/// back.
pub(crate) struct WriteTransaction {
    txn: sea_orm::DatabaseTransaction,
    /// SQLite: this writer's turn, held until the transaction ends (declared after `txn`, so
    /// it is released after the transaction is).
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    local: Option<Arc<SqliteLocal>>,
}

impl std::fmt::Debug for WriteTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTransaction").finish_non_exhaustive()
    }
}

impl WriteTransaction {
    pub(crate) async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await?;
        if let Some(local) = &self.local {
            local.committed.notify_one();
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTransaction {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.txn.support_returning()
    }
}

/// How many SQL statements one request ran (see [`counted`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct StatementCount(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl StatementCount {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A handle on the same pool that counts the statements run through it (DataLoaders and
/// transactions included), so each GraphQL operation's statement count can be observed.
pub(crate) fn counted(db: &DatabaseConnection) -> (DatabaseConnection, StatementCount) {
    let count = StatementCount::default();
    let mut counting = db.clone();
    let counter = count.0.clone();
    counting.set_metric_callback(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    (counting, count)
}

/// The current time at the database's precision (microseconds), so that what a mutation
/// returns equals what a later read returns.
pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6)
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Database, Statement};

    /// `.cargo/config.toml` builds SQLite with the query planner stability guarantee: with
    /// it, a statement whose LIMIT is a bound value is not compiled again at every run.
    #[tokio::test]
    async fn sqlite_is_built_with_a_stable_query_planner() {
        let db = Database::connect("sqlite::memory:").await.expect("sqlite");
        let options = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "PRAGMA compile_options",
            ))
            .await
            .expect("compile options");
        let options: Vec<String> = options
            .iter()
            .filter_map(|row| row.try_get_by_index::<String>(0).ok())
            .collect();
        assert!(
            options.iter().any(|o| o == "ENABLE_QPSG"),
            "SQLite was built without SQLITE_ENABLE_QPSG (LIBSQLITE3_FLAGS in .cargo/config.toml): {options:?}"
        );
    }
}
