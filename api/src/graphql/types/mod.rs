//! GraphQL object types: views built from domain values.

mod audit;
mod client;
mod connection;
mod consent;
mod consent_link;
pub(crate) mod enums;
mod node;
mod service_principal;
mod tile;
mod viewer;

pub(crate) use client::{Client, ClientConnection, decode_cursor};
pub(crate) use consent::DelegatedConsent;
pub(crate) use consent_link::ConsentLink;
pub(crate) use node::Node;
pub(crate) use service_principal::ServicePrincipalRequest;
pub(crate) use tile::GraphApiTile;
pub(crate) use viewer::Viewer;
