//! The Relay `Node` interface.

use async_graphql::{ID, Interface};

use crate::graphql::types::client::Client;
use crate::graphql::types::consent::DelegatedConsent;
use crate::graphql::types::service_principal::ServicePrincipalRequest;
use crate::graphql::types::tile::GraphApiTile;

/// An object with a global id, fetchable with `node(id:)`.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
#[expect(
    clippy::large_enum_variant,
    reason = "one value per `node(id:)` answer, never stored or sent through a channel"
)]
pub(crate) enum Node {
    Client(Client),
    GraphApiTile(GraphApiTile),
    DelegatedConsent(DelegatedConsent),
    ServicePrincipalRequest(ServicePrincipalRequest),
}
