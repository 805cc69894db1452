//! The `consentry` entry point, built inside the tests package so integration tests can run
//! the real command line as a process (`CARGO_BIN_EXE_consentry-under-test`).

fn main() -> std::process::ExitCode {
    api::main()
}
