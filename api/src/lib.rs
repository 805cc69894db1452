//! Consentry: the GraphQL API server that gets Microsoft Graph authorised for each of an
//! MSP's client tenants, diagnoses what blocks it, and pushes every status change.
//!
//! Layers (docs/design.md §3): `http`/`graphql` → `domain` → (`entity` + `microsoft`) → `events`.

#![warn(unreachable_pub)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod domain;
pub mod error_code;
pub mod events;
#[cfg(test)]
mod fuzz_regressions;
pub mod graphql;
pub mod http;
pub mod jwks;
pub mod kms;
pub mod microsoft;
pub mod refusal_log;
pub mod state;
pub mod sweeps;
pub mod telemetry;

pub use app::Application;
pub use config::Settings;

/// mimalloc for every program that runs Consentry (the `consentry` binary, the benchmark's
/// servers, the tests' servers). Profiled under the dashboard load (README, Performance),
/// glibc's allocator spent about a third of the server's CPU time in `malloc`,
/// `malloc_consolidate` and `free`, contending across the runtime's threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
