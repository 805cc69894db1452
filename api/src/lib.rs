//! Consentry: the GraphQL API server that gets Microsoft Graph authorised for each of an
//! MSP's client tenants, diagnoses what blocks it, and pushes every status change.
//!
//! Layers (DESIGN §3): `http`/`graphql` → `domain` → (`entity` + `microsoft`) → `events`.

#![warn(unreachable_pub)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod domain;
pub mod events;
#[cfg(test)]
mod fuzz_regressions;
pub mod graphql;
pub mod http;
pub mod jwks;
pub mod kms;
pub mod microsoft;
pub mod refusal_log;
pub mod sweeps;
pub mod telemetry;

pub use app::Application;
pub use config::Settings;
