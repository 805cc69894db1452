//! Scratch databases: an SQLite file in the run's directory, or a fresh PostgreSQL schema
//! (dropped when the run ends).

use std::path::Path;

use sea_orm::{ConnectionTrait, Database as Connect, DatabaseConnection};
use secrecy::SecretString;

/// Which store a figure was measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// One scratch database.
#[derive(Clone, Debug)]
pub(crate) struct Database {
    /// `DATABASE_URL` for servers on it.
    pub(crate) url: String,
}

impl Database {
    pub(crate) fn sqlite(dir: &Path, name: &str) -> Self {
        Self {
            url: format!(
                "sqlite://{}?mode=rwc",
                dir.join(format!("{name}.db")).display()
            ),
        }
    }

    /// The file of an SQLite database (`None` on PostgreSQL).
    pub(crate) fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        let rest = self.url.strip_prefix("sqlite://")?;
        Some(std::path::PathBuf::from(
            rest.split_once('?').map_or(rest, |(path, _)| path),
        ))
    }

    /// A new schema in the PostgreSQL at `admin_url`; returns it and its name (to drop).
    pub(crate) async fn postgres(admin_url: &str) -> anyhow::Result<(Self, String)> {
        let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let admin = Connect::connect(admin_url).await?;
        admin
            .execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
            .await?;
        admin.close().await?;
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-c%20search_path%3D{schema}");
        Ok((Self { url }, schema))
    }

    /// Settings for a server (or the seeder) on this database.
    pub(crate) fn settings(&self) -> api::Settings {
        let mut settings = api::Settings::defaults();
        settings.database_url = SecretString::from(self.url.clone());
        settings
    }

    /// A migrated connection, as Consentry opens it.
    pub(crate) async fn connect(&self) -> anyhow::Result<DatabaseConnection> {
        let settings = self.settings();
        let db = api::connect_database(&settings).await?;
        api::migrate_database(&db, &settings.database_label()).await?;
        Ok(db)
    }
}

/// Drops scratch schemas (best effort: a failure leaves a schema behind, named `bench_…`).
pub(crate) async fn drop_schemas(admin_url: &str, schemas: &[String]) {
    if schemas.is_empty() {
        return;
    }
    let Ok(admin) = Connect::connect(admin_url).await else {
        return;
    };
    for schema in schemas {
        let _ = admin
            .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await;
    }
    let _ = admin.close().await;
}
