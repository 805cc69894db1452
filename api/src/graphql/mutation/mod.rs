//! The Mutation root.

mod clients;
mod graph_api;

use async_graphql::MergedObject;

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(clients::ClientMutation, graph_api::GraphApiMutation);
