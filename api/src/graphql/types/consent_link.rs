//! A consent link for a client's admin.

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};

use crate::graphql::types::client::Client;
use crate::graphql::types::tile::GraphApiTile;

/// A link to Microsoft's admin-consent page for one client's tenant. Send it to the client's
/// admin: it works once, until `expiresAt`, and only for this client.
#[derive(SimpleObject)]
pub(crate) struct ConsentLink {
    /// Microsoft's consent page, with Consentry's single-use `state`.
    pub url: String,
    pub expires_at: DateTime<Utc>,
    /// The tile as the link left it (`AWAITING_CONSENT`, or still `AUTHORISED` during a re-consent).
    pub graph_api_tile: GraphApiTile,
    pub client: Client,
}
