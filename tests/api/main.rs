//! Consentry's integration tests: one binary, the real server over HTTP and WebSocket.

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    unreachable_pub,
    missing_debug_implementations
)]

mod answer_cache;
mod answers;
mod auth;
mod bounded;
mod browser;
mod callback_security;
mod canary;
mod checklist;
mod cli;
mod clients;
mod consent;
mod dashboard;
mod delegated;
mod demo;
mod documents;
mod faults;
mod graphiql;
mod http;
mod id_token;
mod isolation;
mod jwks;
mod kms;
mod layout;
mod limits;
mod logs;
mod microsoft;
mod microsoft_faults;
mod oidc_sign_in;
mod schema;
mod secrets_at_rest;
mod service_principals;
mod shapes;
mod statements;
mod storage;
mod subscriptions;
mod support;
mod tenant_proof;
mod websocket_protocol;
