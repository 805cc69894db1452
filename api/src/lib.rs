//! Consentry: the GraphQL API server that gets Microsoft Graph authorised for each of an
//! MSP's client tenants, diagnoses what blocks it, and pushes every status change.
//!
//! Layers (docs/design.md §3): `http`/`graphql` → `domain` → (`entity` + `microsoft`) → `events`.

#![warn(unreachable_pub)]

mod app;
mod auth;
mod cli;
mod config;
mod db;
mod demo;
mod domain;
mod error_code;
mod events;
#[cfg(test)]
mod fuzz_regressions;
mod graphql;
mod http;
mod jwks;
mod kms;
mod microsoft;
mod refusal_log;
mod state;
mod sweeps;
mod telemetry;

// The library's public surface, and all of it: what the `consentry` binary, the integration
// tests, the benchmark and the fuzz targets use. Every module above is private and everything
// in it is `pub(crate)` unless it is re-exported here, so `unreachable_pub` flags an item
// that is `pub` without a reason.

// The binary, and running a server (the tests' and the benchmark's).
pub use app::{Application, raise_open_file_limit, without_nagle};
pub use cli::{main, main_from};
pub use config::{DEFAULT_HS256_AUDIENCE, DEFAULT_HS256_ISSUER, LogFormat, Settings};
pub use db::{connect as connect_database, migrate as migrate_database, ping as ping_database};
pub use telemetry::init as init_telemetry;

// Callers and their tokens (tests, the benchmark's callers, the token fuzz targets).
pub use auth::{
    AuthError, CallerAuth, CallerClaims, OneOrMany, Role, Viewer, bearer_token, mint_hs256,
};
pub use jwks::KeyError;
pub use state::AppState;

// The API's limits and ids, as the tests and the GraphQL fuzz targets check them.
pub use graphql::{
    GlobalId, IdKind, MAX_ALIASES, MAX_COMPLEXITY, MAX_DEPTH, MAX_DIRECTIVES,
    MAX_INTROSPECTION_LISTS, MAX_RECURSIVE_DEPTH, limit_names, sdl,
};
pub use http::websocket::{MAX_MESSAGE_BYTES, MAX_RESPONSE_BYTES};

// Consentry's Microsoft client, which the tests drive against the simulator directly.
pub use microsoft::{
    Microsoft, MicrosoftConfig, MicrosoftError, Problem,
    errors::from_identity,
    graph::Creation,
    id_token::{ExpectedTenant, IdTokenClaims, IdTokenError, NonceHash},
    identity::{FlowSecrets, TenantHint},
    known::TEAMS_ADMIN_API_APP_ID,
};

// The domain, for the benchmark's baseline server and seed, the storage tests and the callback
// fuzz target.
pub use domain::{
    Error,
    clients::{
        ClientFilter, Cursor, NewClient, create as create_client, list as list_clients, list_query,
    },
    crypto::{DERIVED_FLOW_KEY_ID, TokenKeys},
    delegated_consents::for_clients as delegated_consents_of,
    flows::{
        callback::{CallbackParams, InvalidCallbackQuery},
        store::state_hash,
    },
    msp::ensure as ensure_msp,
    repairable::RepairableApps,
    tile::{GraphApiAction, available_actions, initial as initial_tile},
    validate::name_key,
};
pub use events::tile as record_tile_event;

/// mimalloc for every program that runs Consentry (the `consentry` binary, the benchmark's
/// servers, the tests' servers). Profiled under the dashboard load (README, Performance),
/// glibc's allocator spent about a third of the server's CPU time in `malloc`,
/// `malloc_consolidate` and `free`, contending across the runtime's threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
