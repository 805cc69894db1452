//! Schema extensions: stable codes on parse and validation errors, and per-operation metrics.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use async_graphql::{
    Request, Response, ServerError, ServerResult, ValidationResult, Value, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
        NextPrepareRequest, NextRequest, NextResolve, NextValidation, ResolveInfo,
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

/// Gives parse errors `GRAPHQL_PARSE_FAILED` and validation errors `GRAPHQL_VALIDATION_FAILED`,
/// so every error a caller sees carries `extensions.code`.
pub(crate) struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(|e| with_code(e, "GRAPHQL_PARSE_FAILED"))
    }

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
}

/// Refuses queries nested deeper than `max` (checklist 52), before validation and before any
/// resolver runs. Unlike async-graphql's `limit_depth`, introspection (`__schema`, `__type`)
/// is not counted: its depth is bounded by the schema, and GraphiQL's standard introspection
/// query is deeper than any query of Consentry's own types needs to be.
pub(crate) struct DepthLimit {
    pub(crate) max: usize,
}

impl ExtensionFactory for DepthLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DepthLimit { max: self.max })
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for DepthLimit {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let deepest = document
            .operations
            .iter()
            .map(|(_, op)| depth(&document, &op.node.selection_set.node, &mut Vec::new()))
            .max()
            .unwrap_or(0);
        if deepest > self.max {
            return Err(with_code(
                ServerError::new(
                    format!("Query is nested too deep (the limit is {}).", self.max),
                    None,
                ),
                "GRAPHQL_VALIDATION_FAILED",
            ));
        }
        Ok(document)
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

/// Refuses introspection to callers without a token (checklist 58). The SDL is published in
/// the repository anyway; this keeps anonymous probing from mapping the API.
pub(crate) struct IntrospectionNeedsToken;

impl ExtensionFactory for IntrospectionNeedsToken {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(IntrospectionNeedsToken)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for IntrospectionNeedsToken {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if matches!(info.name, "__schema" | "__type")
            && ctx.data_opt::<crate::auth::Viewer>().is_none()
        {
            let error = ServerError::new(
                "introspection needs a caller token: send `Authorization: Bearer <token>`",
                None,
            );
            return Err(with_code(error, "UNAUTHENTICATED"));
        }
        next.run(ctx, info).await
    }
}

/// Counts and times every operation by name and type.
pub(crate) struct OperationMetrics {
    metrics: Arc<Metrics>,
}

impl OperationMetrics {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationMetricsForRequest {
            metrics: self.metrics.clone(),
            requested_name: Mutex::new(None),
            operation: Mutex::new(None),
        })
    }
}

struct OperationMetricsForRequest {
    metrics: Arc<Metrics>,
    requested_name: Mutex<Option<String>>,
    operation: Mutex<Option<(String, &'static str)>>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for OperationMetricsForRequest {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let (name, kind) = self
            .operation
            .lock()
            .ok()
            .and_then(|op| op.clone())
            .unwrap_or_else(|| ("(invalid)".to_owned(), "unknown"));
        self.metrics
            .observe_operation(&name, kind, response.is_ok(), started.elapsed());
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(mut name) = self.requested_name.lock() {
            name.clone_from(&request.operation_name);
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
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
            if let Ok(mut op) = self.operation.lock() {
                *op = Some((name, kind));
            }
        }
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let response = next.run(ctx, operation_name).await;
        // The request's own data (the statement counter) is only visible from here on.
        if let Some(statements) = ctx.data_opt::<crate::db::StatementCount>()
            && let Some((name, kind)) = self.operation.lock().ok().and_then(|op| op.clone())
        {
            self.metrics
                .observe_statements(&name, kind, statements.get());
        }
        response
    }
}

/// Gives every operation its own DataLoaders (and so its own cache) when the transport did
/// not: operations over the WebSocket share one connection but never a cache.
pub(crate) struct PerOperationLoaders;

impl ExtensionFactory for PerOperationLoaders {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerOperationLoaders)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for PerOperationLoaders {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let missing = !request
            .data
            .contains_key(&std::any::TypeId::of::<super::Loaders>());
        if missing && let Ok(db) = ctx.data::<sea_orm::DatabaseConnection>() {
            request.data.insert(super::Loaders::new(db));
        }
        next.run(ctx, request).await
    }
}
