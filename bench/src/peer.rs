//! The Node.js peer (issue 17): `bench/node-peer`, a graphql-yoga + better-sqlite3 +
//! DataLoader server answering the dashboard query over Consentry's SQLite database. The
//! tool installs its locked dependencies (`npm ci`) when they are missing, unless told not
//! to, and starts it like any other server of the run.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::process::{Server, free_port};

/// Where the peer lives in the source tree.
pub(crate) fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("node-peer")
}

/// A peer ready to start, or why it cannot be.
#[derive(Clone, Debug)]
pub(crate) struct NodePeer {
    dir: PathBuf,
}

impl NodePeer {
    /// Finds Node.js and the peer's dependencies; installs them from the lock file with
    /// `npm ci` when `install` allows it.
    pub(crate) async fn prepare(dir: PathBuf, install: bool) -> Result<Self, String> {
        let version = Command::new("node")
            .arg("--version")
            .output()
            .await
            .map_err(|e| format!("Node.js is not installed ({e})"))?;
        if !version.status.success() {
            return Err("`node --version` failed".to_owned());
        }
        if !dir.join("node_modules").join("graphql-yoga").exists() {
            if !install {
                return Err(format!(
                    "the Node peer's dependencies are not installed (run `npm ci` in {})",
                    dir.display()
                ));
            }
            eprintln!("installing the Node peer's dependencies (npm ci)");
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--omit=dev"])
                .current_dir(&dir)
                .status()
                .await
                .map_err(|e| format!("cannot run npm ({e})"))?;
            if !status.success() {
                return Err(format!("`npm ci` failed in {} ({status})", dir.display()));
            }
        }
        Ok(Self { dir })
    }

    /// Starts the peer over the SQLite database at `database`, serving MSP `msp`.
    pub(crate) async fn start(
        &self,
        name: &str,
        database: &Path,
        msp: &str,
        work: &Path,
    ) -> anyhow::Result<Server> {
        if !database.exists() {
            bail!("no SQLite database at {}", database.display());
        }
        let port = free_port()?;
        let script = self.dir.join("server.mjs");
        let script = script.to_str().context("the peer's path is not UTF-8")?;
        let database = database
            .to_str()
            .context("the database path is not UTF-8")?;
        let port_text = port.to_string();
        Server::start_program(
            name,
            &[],
            Path::new("node"),
            &[
                script,
                "--database",
                database,
                "--port",
                &port_text,
                "--msp",
                msp,
            ],
            &[("NODE_ENV".to_owned(), "production".to_owned())],
            port,
            work,
        )
        .await
    }
}
