//! Consentry's benchmark tool (issue 8). It seeds its own data, starts the servers it needs
//! as real processes (Consentry, the plain axum baseline, the Microsoft simulator in this
//! process), runs each scenario and prints one table: value, baseline, ratio, target, result.
//!
//! Every figure that can be is a ratio against a baseline measured in the same run, on the
//! same machine, so the table reads the same on a laptop and on a busy CI box.

#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod baseline;
mod database;
mod load;
mod peer;
mod process;
mod report;
mod scenarios;
mod seed;
mod stats;
mod ws;

use std::{process::ExitCode, time::Duration};

use clap::{Parser, ValueEnum};

pub use report::{Report, Row};

/// Measures Consentry against its performance budgets and prints the table.
#[derive(Clone, Debug, Parser)]
#[command(name = "consentry-bench", version, about)]
pub struct Options {
    /// Scenarios to run (default: all).
    #[arg(value_enum)]
    pub scenarios: Vec<Scenario>,
    /// A short run that checks the tool end to end (fewer requests, subscribers and rounds).
    #[arg(long)]
    pub quick: bool,
    /// Subscribers of the fan-out scenario (default: 10000, or 200 with --quick).
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// How long each throughput measurement runs, in seconds (default: 5, or 1 with --quick).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// PostgreSQL to create scratch schemas in (dropped afterwards); unreachable, the
    /// PostgreSQL rows are skipped.
    #[arg(
        long,
        env = "BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres_url: String,
    /// Run on SQLite only.
    #[arg(long)]
    pub sqlite_only: bool,
    /// Exit with status 2 when a target is missed (the table is printed either way).
    #[arg(long)]
    pub check: bool,
    /// Keep the run's directory (databases, every server's log) and print where it is.
    #[arg(long)]
    pub keep: bool,
    /// Never run `npm ci` for the Node peer: without its dependencies installed, the peer's
    /// rows are skipped (the smoke test runs so, and never reaches the network).
    #[arg(long)]
    pub no_npm_install: bool,
    /// The Node peer's directory (default: `bench/node-peer` of this source tree).
    #[arg(long)]
    pub node_peer_dir: Option<std::path::PathBuf>,
    /// Run Consentry's servers under this command, e.g. a profiler:
    /// `--wrap "valgrind --tool=massif --massif-out-file=/tmp/massif.%p"` (split on spaces).
    #[arg(long)]
    pub wrap: Option<String>,
}

/// One part of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Targets 1, 2 and 8: SQL statements of the dashboard query, and its throughput against
    /// a plain axum handler running the same SQL and against the Node.js peer.
    Dashboard,
    /// Target 3: one tile change fanned out to many subscribers; memory per subscriber.
    Subscribers,
    /// Target 4: commit on one instance to delivery on another (PostgreSQL).
    CrossInstance,
    /// Target 5: bursts of 100 concurrent admin-consent callbacks, free of failures; their
    /// CPU per callback (server and database), tracked.
    Callbacks,
    /// Target 6: idle memory and start-to-ready time.
    Footprint,
    /// Target 7: the worst operation Consentry accepts, alone and 32 at once: resident memory
    /// and `/healthz` meanwhile.
    WorstOperation,
    /// Target 9: paging through MSPs of 100, 1,000 and 10,000 clients: statements and time
    /// per page, and the plans of the status and name filters.
    Paging,
}

impl Options {
    pub(crate) fn subscribers(&self) -> usize {
        self.subscribers
            .unwrap_or(if self.quick { 200 } else { 10_000 })
    }

    pub(crate) fn measure_for(&self) -> Duration {
        Duration::from_secs(self.seconds.unwrap_or(if self.quick { 1 } else { 5 }))
    }
}

/// Runs the benchmark and prints its table (the entry point of `consentry-bench`).
pub fn main(options: Options) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options.clone())) {
        Ok(report) => {
            println!("{}", report.render());
            if report.errors() > 0 {
                ExitCode::FAILURE
            } else if options.check && report.misses() > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen scenarios; a scenario that fails is reported as an error row and the
/// others still run.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    api::raise_open_file_limit();
    let bench = scenarios::Bench::prepare(&options).await?;
    let chosen = if options.scenarios.is_empty() {
        Scenario::value_variants().to_vec()
    } else {
        options.scenarios.clone()
    };
    let mut report = Report::new(report::machine());
    for scenario in chosen {
        eprintln!("==> {scenario:?}");
        report.extend(bench.run(scenario).await);
    }
    bench.finish().await;
    Ok(report)
}
