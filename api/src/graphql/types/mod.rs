//! GraphQL object types: views built from domain values.

mod audit;
mod client;
mod connection;
mod consent;
mod consent_link;
pub mod enums;
mod node;
mod service_principal;
mod tile;
mod viewer;

pub use audit::{AuditEvent, AuditEventConnection};
pub use client::{Client, ClientConnection, ClientEdge, decode_cursor};
pub use connection::PageInfo;
pub use consent::DelegatedConsent;
pub use consent_link::ConsentLink;
pub use node::Node;
pub use service_principal::ServicePrincipalRequest;
pub use tile::{GraphApiProblem, GraphApiTile};
pub use viewer::{MspTenant, Viewer};
