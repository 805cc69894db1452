//! The schema's one extension: the rules every operation passes through — stable codes on
//! parse and validation errors, the depth limit, introspection only with a token, its own
//! DataLoaders — and its metrics.
//!
//! One extension rather than one per rule: async-graphql runs every field of every answer
//! (and of every event pushed to every subscriber) through each extension's `resolve` hook,
//! even a default one, so each extension costs on every field. This one has no `resolve`.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use async_graphql::{
    Request, Response, ServerError, ServerResult, ValidationResult, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
        NextPrepareRequest, NextRequest, NextValidation,
    },
    parser::types::{
        DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
    },
};

use crate::http::metrics::Metrics;

fn with_code(mut error: ServerError, code: &str) -> ServerError {
    let has_code = error
        .extensions
        .as_ref()
        .is_some_and(|e| e.get("code").is_some());
    if !has_code {
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
    error
}

/// Every operation's rules and metrics (see the module docs).
pub(crate) struct Operations {
    /// Deepest selection an operation may nest (checklist 52).
    pub(crate) max_depth: usize,
    pub(crate) metrics: Arc<Metrics>,
}

impl ExtensionFactory for Operations {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Operation {
            max_depth: self.max_depth,
            metrics: self.metrics.clone(),
            requested_name: Mutex::new(None),
            selected: Mutex::new(None),
        })
    }
}

/// One operation on its way through.
struct Operation {
    max_depth: usize,
    metrics: Arc<Metrics>,
    requested_name: Mutex<Option<String>>,
    /// The operation's name and type, once its document is parsed.
    selected: Mutex<Option<(String, &'static str)>>,
}

impl Operation {
    fn selected(&self) -> Option<(String, &'static str)> {
        self.selected.lock().ok().and_then(|op| op.clone())
    }

    /// Remembers which operation of the document runs, for the metrics.
    fn select(&self, document: &ExecutableDocument) {
        let requested = self.requested_name.lock().ok().and_then(|n| n.clone());
        let selected = match (&document.operations, requested.as_deref()) {
            (DocumentOperations::Single(op), _) => Some((None, op.node.ty)),
            (DocumentOperations::Multiple(ops), Some(name)) => {
                ops.get(name).map(|op| (Some(name.to_owned()), op.node.ty))
            }
            (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops
                .iter()
                .next()
                .map(|(name, op)| (Some(name.to_string()), op.node.ty)),
            (DocumentOperations::Multiple(_), None) => None,
        };
        if let Some((name, ty)) = selected {
            let name = name.unwrap_or_else(|| "(anonymous)".to_owned());
            let kind = match ty {
                OperationType::Query => "query",
                OperationType::Mutation => "mutation",
                OperationType::Subscription => "subscription",
            };
            if let Ok(mut op) = self.selected.lock() {
                *op = Some((name, kind));
            }
        }
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Operation {
    /// Counts and times every operation by name and type.
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let (name, kind) = self
            .selected()
            .unwrap_or_else(|| ("(invalid)".to_owned(), "unknown"));
        self.metrics
            .observe_operation(&name, kind, response.is_ok(), started.elapsed());
        response
    }

    /// Gives every operation its own DataLoaders (and so its own cache) when the transport
    /// did not: operations over the WebSocket share one connection but never a cache.
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(mut name) = self.requested_name.lock() {
            name.clone_from(&request.operation_name);
        }
        let missing = !request
            .data
            .contains_key(&std::any::TypeId::of::<super::Loaders>());
        if missing && let Ok(db) = ctx.data::<sea_orm::DatabaseConnection>() {
            request.data.insert(super::Loaders::new(db));
        }
        next.run(ctx, request).await
    }

    /// Parse errors get `GRAPHQL_PARSE_FAILED`. Then, before validation and before any
    /// resolver runs: queries nested deeper than `max_depth` are refused (introspection is
    /// not counted: its depth is bounded by the schema, and GraphiQL's standard introspection
    /// query is deeper than any of Consentry's own needs to be), and so is introspection
    /// without a caller token (checklist 58: the SDL is published anyway; this keeps
    /// anonymous probing from mapping the API).
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next
            .run(ctx, query, variables)
            .await
            .map_err(|e| with_code(e, "GRAPHQL_PARSE_FAILED"))?;
        let deepest = document
            .operations
            .iter()
            .map(|(_, op)| depth(&document, &op.node.selection_set.node, &mut Vec::new()))
            .max()
            .unwrap_or(0);
        if deepest > self.max_depth {
            return Err(with_code(
                ServerError::new(
                    format!(
                        "Query is nested too deep (the limit is {}).",
                        self.max_depth
                    ),
                    None,
                ),
                "GRAPHQL_VALIDATION_FAILED",
            ));
        }
        let introspects = document
            .operations
            .iter()
            .any(|(_, op)| introspects(&document, &op.node.selection_set.node, &mut Vec::new()));
        if introspects && ctx.data_opt::<Arc<crate::auth::Viewer>>().is_none() {
            let error = ServerError::new(
                "introspection needs a caller token: send `Authorization: Bearer <token>`",
                None,
            );
            return Err(with_code(error, "UNAUTHENTICATED"));
        }
        self.select(&document);
        Ok(document)
    }

    /// Validation errors get `GRAPHQL_VALIDATION_FAILED`.
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| with_code(e, "GRAPHQL_VALIDATION_FAILED"))
                .collect()
        })
    }

    /// Records the SQL statements the operation ran.
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let response = next.run(ctx, operation_name).await;
        // The request's own data (the statement counter) is only visible from here on.
        if let Some(statements) = ctx.data_opt::<crate::db::StatementCount>()
            && let Some((name, kind)) = self.selected()
        {
            self.metrics
                .observe_statements(&name, kind, statements.get());
        }
        response
    }
}

/// Depth of a selection set; fragments count where they are spread, each at most once per
/// path (cycles are invalid and reported by validation later).
fn depth<'d>(
    document: &'d ExecutableDocument,
    set: &'d SelectionSet,
    spreading: &mut Vec<&'d str>,
) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => {
                let field = &field.node;
                if field.name.node.starts_with("__") {
                    0
                } else {
                    1 + depth(document, &field.selection_set.node, spreading)
                }
            }
            Selection::InlineFragment(fragment) => {
                depth(document, &fragment.node.selection_set.node, spreading)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                if spreading.contains(&name) {
                    return 0;
                }
                let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) else {
                    return 0;
                };
                spreading.push(name);
                let inner = depth(document, &fragment.node.selection_set.node, spreading);
                spreading.pop();
                inner
            }
        })
        .max()
        .unwrap_or(0)
}

/// Whether a root selection set asks for `__schema` or `__type`, directly or in fragments.
fn introspects<'d>(
    document: &'d ExecutableDocument,
    set: &'d SelectionSet,
    spreading: &mut Vec<&'d str>,
) -> bool {
    set.items.iter().any(|item| match &item.node {
        Selection::Field(field) => matches!(field.node.name.node.as_str(), "__schema" | "__type"),
        Selection::InlineFragment(fragment) => {
            introspects(document, &fragment.node.selection_set.node, spreading)
        }
        Selection::FragmentSpread(spread) => {
            let name = spread.node.fragment_name.node.as_str();
            let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) else {
                return false;
            };
            if spreading.contains(&name) {
                return false;
            }
            spreading.push(name);
            let found = introspects(document, &fragment.node.selection_set.node, spreading);
            spreading.pop();
            found
        }
    })
}
