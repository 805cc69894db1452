//! The Mutation root.

mod clients;
mod delegated;
mod graph_api;
mod service_principals;

use async_graphql::MergedObject;

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub(crate) struct MutationRoot(
    clients::ClientMutation,
    graph_api::GraphApiMutation,
    service_principals::ServicePrincipalMutation,
    delegated::DelegatedMutation,
);
