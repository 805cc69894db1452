//! What Consentry does, independent of how it is asked: clients, tiles, consents, audit.
//! Nothing here knows about GraphQL or HTTP.

pub mod access;
pub mod audit;
pub mod clients;
mod consents;
pub mod crypto;
pub mod data_keys;
pub mod delegated_consents;
mod error;
pub mod flows;
pub mod graph_api;
pub mod msp;
pub mod service_principal_requests;
pub mod tenant_proof;
pub mod tile;
pub mod validate;

pub use consents::Consents;
pub use error::{Error, Result};

use chrono::{DateTime, SubsecRound, Utc};

/// The current time at the database's precision (microseconds), so that what a mutation
/// returns equals what a later read returns.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
