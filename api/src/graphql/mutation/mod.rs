//! The Mutation root.

mod clients;

use async_graphql::MergedObject;

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(clients::ClientMutation);
