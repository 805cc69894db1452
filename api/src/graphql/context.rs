//! What every resolver reads from the request's context: the caller, the database, and the
//! page size it asked for.

use std::sync::Arc;

use async_graphql::Context;
use sea_orm::DatabaseConnection;

use crate::{auth, domain::Error};

/// The caller, or `UNAUTHENTICATED`.
pub(crate) fn viewer<'a>(ctx: &Context<'a>) -> Result<&'a auth::Viewer, Error> {
    ctx.data_opt::<Arc<auth::Viewer>>()
        .map(AsRef::as_ref)
        .ok_or(Error::Unauthenticated)
}

/// The caller, shared: a subscription keeps it for as long as it stays open, and every
/// subscription of a connection shares the connection's one copy.
pub(crate) fn shared_viewer(ctx: &Context<'_>) -> Result<Arc<auth::Viewer>, Error> {
    ctx.data_opt::<Arc<auth::Viewer>>()
        .cloned()
        .ok_or(Error::Unauthenticated)
}

pub(crate) fn database<'a>(ctx: &Context<'a>) -> Result<&'a DatabaseConnection, Error> {
    ctx.data::<DatabaseConnection>()
        .map_err(|e| Error::Internal(anyhow::anyhow!("schema without a database: {}", e.message)))
}

/// A page size argument: 1 to 100.
pub(crate) fn page_size(first: i32) -> Result<u64, Error> {
    let max = crate::domain::clients::MAX_PAGE_SIZE;
    u64::try_from(first)
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            Error::bad_input(
                "first",
                format!("first must be between 1 and {max} (got {first})"),
            )
        })
}
