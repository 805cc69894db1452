//! Consentry's integration tests: one binary, the real server over HTTP and WebSocket.

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    unreachable_pub,
    missing_debug_implementations
)]

mod auth;
mod cli;
mod clients;
mod http;
mod isolation;
mod jwks;
mod schema;
mod storage;
