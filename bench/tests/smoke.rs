//! The benchmark tool, end to end at a small scale: every scenario runs and its correctness
//! checks hold (the baseline answers GraphQL's JSON, every subscriber gets every change,
//! every callback authorises its tile). Timings are not judged here: this is a debug build on
//! a shared machine; `cargo run --release -p consentry-bench` judges them.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::process::Command;

#[test]
fn the_benchmark_runs_every_scenario_end_to_end() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_consentry-bench"));
    // Tests never reach the network: the Node peer is measured when its dependencies are
    // already installed (`.ci/run` installs them), and reported as skipped otherwise.
    command.args(["--quick", "--subscribers", "50", "--no-npm-install"]);
    let peer_installed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("node-peer/node_modules/graphql-yoga")
        .exists();
    let postgres = std::env::var("TEST_DATABASE_URL").ok();
    match &postgres {
        Some(url) => {
            command.env("BENCH_DATABASE_URL", url);
        }
        None if std::env::var("CONSENTRY_TEST_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("CONSENTRY_TEST_REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set");
        }
        None => {
            command.arg("--sqlite-only");
        }
    }
    let output = command.output().unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the benchmark failed:\n{table}\n{log}"
    );
    assert!(!table.contains("ERROR"), "{table}");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    // Every target is reported. A SQLite row is always measured; a PostgreSQL row is
    // measured when PostgreSQL is configured, and otherwise says it was skipped (target 4 is
    // PostgreSQL's alone, so without PostgreSQL it is reported, not measured). Target 8 is
    // the Node peer's: measured when its dependencies are installed.
    for target in 1..=9 {
        let target = target.to_string();
        assert!(
            rows.iter().any(|row| row[0] == target),
            "target {target} is not in the table:\n{table}"
        );
    }
    for row in &rows {
        let (backend, result) = (row[2], row[row.len() - 1]);
        let measured = result == "pass" || result == "**MISS**" || result == "tracked";
        if row[1].contains("Node.js peer") && !peer_installed {
            assert!(
                result.starts_with("skipped: "),
                "the Node peer is not installed, yet: {row:?}\n{table}"
            );
            continue;
        }
        match backend {
            "SQLite" => assert!(measured, "a SQLite row was not measured: {row:?}\n{table}"),
            "PostgreSQL" if postgres.is_some() => {
                assert!(measured, "PostgreSQL is configured, yet: {row:?}\n{table}");
            }
            "PostgreSQL" => assert!(
                result.starts_with("skipped: "),
                "PostgreSQL is not configured, yet: {row:?}\n{table}"
            ),
            other => panic!("a row of an unknown backend {other:?}:\n{table}"),
        }
    }
    assert!(rows.iter().any(|row| row[2] == "SQLite"), "{table}");
    if postgres.is_some() {
        assert!(rows.iter().any(|row| row[2] == "PostgreSQL"), "{table}");
    }
}
