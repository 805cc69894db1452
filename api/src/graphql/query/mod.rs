//! The Query root.

mod clients;
mod permissions;
mod viewer;

use async_graphql::MergedObject;

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub(crate) struct QueryRoot(
    viewer::ViewerQuery,
    clients::ClientQuery,
    permissions::PermissionQuery,
);
