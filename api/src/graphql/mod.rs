//! The GraphQL API: schema, roots, types (views built from domain values), DataLoaders.

mod error;
mod extensions;
mod ids;
mod loaders;
pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;

use std::sync::Arc;

use async_graphql::{Schema, SchemaBuilder};
use sea_orm::DatabaseConnection;

pub use error::{code_of, gql_error};
pub use ids::{GlobalId, IdKind};
pub use loaders::Loaders;

use crate::{domain::graph_api::Consents, events::Bus, http::metrics::Metrics};

pub type AppSchema =
    Schema<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot>;

/// Deepest selection a query may nest (checklist 52).
pub const MAX_DEPTH: usize = 12;
/// Deepest nesting of input values and fragments (checklist 56).
pub const MAX_RECURSIVE_DEPTH: usize = 32;

fn builder()
-> SchemaBuilder<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot> {
    Schema::build(
        query::QueryRoot::default(),
        mutation::MutationRoot::default(),
        subscription::SubscriptionRoot,
    )
    .limit_recursive_depth(MAX_RECURSIVE_DEPTH)
    .disable_suggestions()
}

/// The schema the server runs, with its shared data.
pub fn schema(
    db: DatabaseConnection,
    metrics: Arc<Metrics>,
    consents: Consents,
    bus: Bus,
) -> AppSchema {
    builder()
        .extension(extensions::Operations {
            max_depth: MAX_DEPTH,
            metrics: metrics.clone(),
        })
        .data(metrics)
        .data(db)
        .data(consents)
        .data(bus)
        .finish()
}

/// The schema in SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
