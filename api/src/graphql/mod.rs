//! The GraphQL API: schema, roots, types (views built from domain values), DataLoaders.

mod answer;
mod answer_cache;
mod answer_size;
mod budgets;
pub(crate) mod compact;
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
pub use ids::{GlobalId, IdKind};
pub(crate) use loaders::Loaders;

use crate::{domain::Consents, events::Bus, http::metrics::Metrics};

pub(crate) type AppSchema =
    Schema<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot>;

/// Deepest selection a query may nest (checklist 52); introspection has its own limits.
pub const MAX_DEPTH: usize = 12;
/// Most introspection lists (`types`, `fields`, `args`, `interfaces`, `possibleTypes`, …) one
/// may nest in another (checklist 97); none may be nested in itself. The standard introspection
/// queries nest three: `types → fields → args`.
pub const MAX_INTROSPECTION_LISTS: usize = 3;
/// Deepest nesting of input values and fragments (checklist 56).
pub const MAX_RECURSIVE_DEPTH: usize = 32;
/// Most an operation may cost (checklist 53): every field costs 1, and a list costs its page
/// size times what one item selects, so `clients(first: 100)` with 300 fields per client
/// (its consents and repairs included) is within it, and the same with 100 audit events per
/// client is not.
pub const MAX_COMPLEXITY: usize = 50_000;
/// Most aliases one document may use (checklist 54): a thousand aliases of one field, or one
/// mutation aliased many times, are refused before anything runs.
pub const MAX_ALIASES: usize = 32;
/// Most directives on one field (checklist 56).
pub const MAX_DIRECTIVES: usize = 4;

/// The stable names an operation's refusal may carry in `extensions.limit`, one per limit.
pub fn limit_names() -> impl Iterator<Item = &'static str> {
    limits::Limit::ALL.into_iter().map(limits::Limit::name)
}

/// What an operation costs to run, as `#[graphql(complexity = …)]` of a list field: its
/// page size (`first`, else `default`, within 1 to 100) times what each item selects, plus
/// one for the field itself.
pub(crate) fn list_cost(first: Option<i32>, default: i32, child_complexity: usize) -> usize {
    let page = first.unwrap_or(default).clamp(1, 100);
    usize::try_from(page)
        .unwrap_or(100)
        .saturating_mul(child_complexity)
        .saturating_add(1)
}

/// Limits each MSP and each operation is held to, from the settings.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    /// Mutations (root fields) each MSP may run per minute on this instance; 0: no limit.
    pub mutations_per_minute: u32,
    /// Queries each MSP may run per minute on this instance; 0: no limit.
    pub queries_per_minute: u32,
    /// Longest a query may run before it is cancelled.
    pub query_timeout: std::time::Duration,
    /// Largest answer (its `data`, as JSON) an operation may give (checklist 97).
    pub max_response_bytes: usize,
}

impl Limits {
    /// Each MSP's budgets of mutations and queries, shared by the schema and the answer
    /// cache (a reused answer is a query all the same).
    pub(crate) fn budgets(&self) -> Arc<Budgets> {
        Arc::new(Budgets::new(
            self.mutations_per_minute,
            self.queries_per_minute,
        ))
    }
}

impl Limits {
    pub(crate) fn from_settings(settings: &crate::Settings) -> Self {
        Self {
            mutations_per_minute: settings.msp_mutations_per_minute,
            queries_per_minute: settings.msp_queries_per_minute,
            query_timeout: settings.query_timeout,
            max_response_bytes: settings.max_response_bytes,
        }
    }
}

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
