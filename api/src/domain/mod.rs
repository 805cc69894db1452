//! What Consentry does, independent of how it is asked: clients, tiles, consents, audit.
//! Nothing here knows about GraphQL or HTTP.

pub(crate) mod access;
pub(crate) mod audit;
pub(crate) mod clients;
pub(crate) mod consents;
pub(crate) mod crypto;
pub(crate) mod data_keys;
pub(crate) mod delegated_consents;
pub(crate) mod error;
pub(crate) mod flows;
pub(crate) mod graph_api;
pub(crate) mod msp;
pub(crate) mod repairable;
pub(crate) mod service_principal_requests;
pub(crate) mod tenant_proof;
pub(crate) mod tile;
pub(crate) mod validate;

pub(crate) use consents::Consents;
pub use error::Error;
pub(crate) use error::Result;
