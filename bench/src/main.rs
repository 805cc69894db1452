//! `consentry-bench`: measures Consentry against its performance budgets and prints a table.
//!
//! The servers it measures are this very binary run as child processes: `consentry-bench
//! consentry …` is Consentry's own command line (the same code as the `consentry` binary) and
//! `consentry-bench baseline …` is the plain axum server the ratios are taken against.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_default();
    let first = std::env::args_os().nth(1);
    match first.as_ref().and_then(|a| a.to_str()) {
        Some("consentry") => {
            return api::main_from(std::iter::once(program).chain(args.skip(1)));
        }
        Some("baseline") => return consentry_bench::baseline::main(args.skip(1)),
        _ => {}
    }
    let options = consentry_bench::Options::parse();
    consentry_bench::main(options)
}
