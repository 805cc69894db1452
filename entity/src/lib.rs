//! Consentry's storage shapes: sea-orm entities and the enums stored in their columns.
//!
//! Entities carry no GraphQL or HTTP concerns; the API builds its own views from them.

pub mod audit_event;
pub mod client;
pub mod data_key;
pub mod delegated_consent;
pub mod enums;
pub mod event_outbox;
pub mod graph_api_tile;
pub mod msp_tenant;
pub mod oauth_flow;
pub mod service_principal_request;

use sea_orm::FromJsonQueryResult;
use serde::{Deserialize, Serialize};

/// A list of strings kept in one JSON column (permissions, roles).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
pub struct StringList(pub Vec<String>);

impl From<Vec<String>> for StringList {
    fn from(items: Vec<String>) -> Self {
        Self(items)
    }
}
