//! Relay pagination metadata.

use async_graphql::SimpleObject;

/// Where a page sits in its list (Relay cursor connections).
#[derive(SimpleObject, Clone, Debug)]
pub(crate) struct PageInfo {
    pub has_next_page: bool,
    /// Always false: lists page forwards only.
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}
