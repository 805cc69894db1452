//! The benchmark tool, end to end at a small scale: every scenario runs and its correctness
//! checks hold (the baseline answers GraphQL's JSON, every subscriber gets every change,
//! every callback authorises its tile). Timings are not judged here: this is a debug build on
//! a shared machine; `cargo run --release -p consentry-bench` judges them.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::process::Command;

#[test]
fn the_benchmark_runs_every_scenario_end_to_end() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_consentry-bench"));
    command.args(["--quick", "--subscribers", "50"]);
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
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .collect();
    for target in 1..=6 {
        let measured = rows
            .iter()
            .filter(|row| row.starts_with(&format!("| {target} |")))
            .filter(|row| row.ends_with("| pass |") || row.ends_with("| **MISS** |"))
            .count();
        assert!(measured > 0, "target {target} was not measured:\n{table}");
    }
    if postgres.is_some() {
        assert!(
            !table.contains("skipped"),
            "PostgreSQL is configured, yet rows were skipped:\n{table}"
        );
        assert!(table.contains("| PostgreSQL |"), "{table}");
    }
    assert!(table.contains("| SQLite |"), "{table}");
}
