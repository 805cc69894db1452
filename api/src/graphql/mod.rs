//! The GraphQL API: schema, roots, types (views built from domain values), DataLoaders.

mod answer;
mod answer_cache;
mod answer_size;
mod budgets;
pub(crate) mod compact;
mod context;
mod error;
mod extensions;
mod ids;
mod limits;
mod loaders;
pub(crate) mod mutation;
pub(crate) mod query;
pub(crate) mod subscription;
pub(crate) mod types;

use std::sync::Arc;

use async_graphql::{Schema, SchemaBuilder};
use sea_orm::DatabaseConnection;

pub(crate) use answer_cache::{AnswerCache, Kept, SeenOperation};
pub(crate) use answer_size::ResponseCap;
pub(crate) use budgets::Budgets;
pub(crate) use extensions::OneAnswer;
pub use ids::{GlobalId, IdKind};
pub(crate) use loaders::Loaders;

use crate::{domain::Consents, events::Bus, http::metrics::Metrics};

pub(crate) use limits::Limits;
pub use limits::{
    MAX_ALIASES, MAX_COMPLEXITY, MAX_DEPTH, MAX_DIRECTIVES, MAX_INTROSPECTION_LISTS,
    MAX_RECURSIVE_DEPTH, limit_names,
};

pub(crate) type AppSchema =
    Schema<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot>;

fn builder()
-> SchemaBuilder<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot> {
    Schema::build(
        query::QueryRoot::default(),
        mutation::MutationRoot::default(),
        subscription::SubscriptionRoot,
    )
    // The extension checks these first, naming the limit (`limits.rs`); async-graphql's own
    // checks stay as a second line. The cost is checked by the extension alone.
    .limit_recursive_depth(MAX_RECURSIVE_DEPTH)
    .limit_directives(MAX_DIRECTIVES)
    .disable_suggestions()
}

/// The schema the server runs, with its shared data.
pub(crate) fn schema(
    db: DatabaseConnection,
    metrics: Arc<Metrics>,
    consents: Consents,
    bus: Bus,
    limits: Limits,
    budgets: Arc<Budgets>,
) -> AppSchema {
    builder()
        .extension(extensions::Operations::new(
            limits,
            metrics.clone(),
            budgets,
        ))
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
