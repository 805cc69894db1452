//! The schema's one extension: the rules every operation passes through — stable codes on
//! parse and validation errors, the limits of the document's shape (`limits.rs`) and of its
//! cost, introspection only with a token, each MSP's mutation and query budgets, the query
//! timeout, the answer's size budget (`answer_size.rs`), its own DataLoaders — its metrics,
//! and answers the spec's way (field order and `null` for failed fields, see `answer/`).
//!
//! One extension rather than one per rule: async-graphql runs every field of every answer
//! (and of every event pushed to every subscriber) through each extension's `resolve` hook,
//! even a default one, so each extension costs on every field. This one's `resolve` does
//! only what the answer needs: it counts the answer's bytes, lets the runtime take a turn,
//! makes a few comparisons per field and, per object, checks that its fields came in the
//! query's order; more only when something fails.

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
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

use super::{
    answer::{Answer, Types},
    answer_size::{self, AnswerSize, ResponseCap},
    budgets::{Budgets, Charge},
    compact,
    limits::{self, Limit},
};
use crate::{error_code::ErrorCode, http::metrics::Metrics};

/// Request data of an operation that gets one answer (HTTP), where a subscription cannot
/// run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OneAnswer;

fn with_code(mut error: ServerError, code: ErrorCode) -> ServerError {
    let has_code = error
        .extensions
        .as_ref()
        .is_some_and(|e| e.get("code").is_some());
    if !has_code {
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code.as_str());
    }
    error
}

/// The metric label of every operation of an anonymous caller.
const UNAUTHENTICATED_OPERATION: &str = "(unauthenticated)";

/// Every operation's rules and metrics (see the module docs).
pub(crate) struct Operations {
    metrics: Arc<Metrics>,
    query_timeout: Duration,
    budgets: Arc<Budgets>,
    max_response_bytes: usize,
    /// The schema's interfaces and unions, read from its registry on first use.
    abstract_types: Arc<OnceLock<Vec<String>>>,
}

impl Operations {
    pub(crate) fn new(
        limits: super::limits::Limits,
        metrics: Arc<Metrics>,
        budgets: Arc<Budgets>,
    ) -> Self {
        Self {
            metrics,
            query_timeout: limits.query_timeout,
            budgets,
            max_response_bytes: limits.max_response_bytes,
            abstract_types: Arc::default(),
        }
    }
}

impl ExtensionFactory for Operations {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Operation {
            metrics: self.metrics.clone(),
            query_timeout: self.query_timeout,
            budgets: self.budgets.clone(),
            abstract_types: self.abstract_types.clone(),
            requested_name: Mutex::new(None),
            selected: Mutex::new(None),
            answer: Answer::default(),
            size: AnswerSize::new(self.max_response_bytes),
            mutation: AtomicBool::new(false),
        })
    }
}

/// One operation on its way through.
struct Operation {
    metrics: Arc<Metrics>,
    query_timeout: Duration,
    budgets: Arc<Budgets>,
    abstract_types: Arc<OnceLock<Vec<String>>>,
    requested_name: Mutex<Option<String>>,
    /// The operation that runs, once its document is parsed.
    selected: Mutex<Option<Selected>>,
    answer: Answer,
    /// The answer's bytes so far (of each event, for a subscription: each goes through
    /// `execute`).
    size: AnswerSize,
    /// Whether the operation that runs is a mutation (read on every field).
    mutation: AtomicBool,
}

/// The operation of a document that runs.
#[derive(Clone)]
struct Selected {
    name: String,
    kind: &'static str,
    /// Root fields of a mutation (each is one mutation; aliases included).
    mutations: u32,
}

impl Operation {
    fn selected(&self) -> Option<Selected> {
        self.selected.lock().ok().and_then(|op| op.clone())
    }

    /// The schema's types, for shaping answers.
    fn types<'a>(&'a self, ctx: &ExtensionContext<'a>) -> Types<'a> {
        let registry = &ctx.schema_env.registry;
        let abstract_types = self.abstract_types.get_or_init(|| {
            registry
                .types
                .values()
                .filter(|ty| ty.is_abstract())
                .map(|ty| ty.name().to_owned())
                .collect()
        });
        Types {
            registry,
            abstract_types,
        }
    }

    /// Remembers which operation of the document runs: its name and type for the metrics,
    /// how many mutations it runs for the rate limit, and its selection for the answer.
    /// Anonymous callers' operation names never become metric labels: they could mint them
    /// without end.
    fn select(
        &self,
        types: Types<'_>,
        document: &ExecutableDocument,
        variables: &Variables,
        authenticated: bool,
    ) {
        let requested = self.requested_name.lock().ok().and_then(|n| n.clone());
        let selected = match (&document.operations, requested.as_deref()) {
            (DocumentOperations::Single(op), _) => Some((None, &op.node)),
            (DocumentOperations::Multiple(ops), Some(name)) => {
                ops.get(name).map(|op| (Some(name.to_owned()), &op.node))
            }
            (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops
                .iter()
                .next()
                .map(|(name, op)| (Some(name.to_string()), &op.node)),
            (DocumentOperations::Multiple(_), None) => None,
        };
        let Some((name, operation)) = selected else {
            return;
        };
        self.answer
            .select(types, operation, &document.fragments, variables);
        let (kind, mutations) = match operation.ty {
            OperationType::Query => ("query", 0),
            OperationType::Mutation => {
                let fields = root_fields(document, &operation.selection_set.node, &mut Vec::new());
                ("mutation", u32::try_from(fields).unwrap_or(u32::MAX))
            }
            OperationType::Subscription => ("subscription", 0),
        };
        self.mutation
            .store(operation.ty == OperationType::Mutation, Ordering::Relaxed);
        let name = match name {
            _ if !authenticated => UNAUTHENTICATED_OPERATION.to_owned(),
            Some(name) => name,
            None => "(anonymous)".to_owned(),
        };
        if let Ok(mut op) = self.selected.lock() {
            *op = Some(Selected {
                name,
                kind,
                mutations,
            });
        }
    }

    /// Takes the operation out of its MSP's budget (checklist 55, 98: the limits count
    /// operations and their mutations, not HTTP requests; read-only callers never spend the
    /// mutation budget); the refusal when it does not fit.
    fn spend(&self, ctx: &ExtensionContext<'_>, op: &Selected) -> Result<(), ServerError> {
        let charge = match op.kind {
            "query" => Charge::Query,
            "mutation" => Charge::Mutations(op.mutations),
            _ => return Ok(()),
        };
        let viewer = ctx.data_opt::<Arc<crate::auth::Viewer>>();
        self.budgets.charge(viewer.map(AsRef::as_ref), charge)
    }

    /// The refusal of an answer over its budget, in place of the whole answer. A mutation's
    /// changes were made all the same: it is only its answer that is withheld.
    fn too_large(&self) -> ServerError {
        let done = if self.mutation.load(Ordering::Relaxed) {
            "; the mutation's changes were made: read back what you need with a smaller query"
        } else {
            ""
        };
        Limit::ResponseSize.refusal(format!(
            "the answer would be larger than {} bytes, the most one answer may be; ask for less (a smaller `first`, fewer fields or aliases){done}",
            self.size.budget()
        ))
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Operation {
    /// Counts and times every operation by name and type.
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let (name, kind) = self.selected().map_or_else(
            || ("(invalid)".to_owned(), "unknown"),
            |op| (op.name, op.kind),
        );
        self.metrics
            .observe_operation(&name, kind, response.is_ok(), started.elapsed());
        response
    }

    /// Parses the document and holds it to the limits of its shape (checklist 52–56, 97),
    /// before anything else looks at it (a subscription's is then compacted: its subscribers
    /// keep it); lowers the answer's budget to the transport's own; and gives every query and
    /// mutation its own DataLoaders (and so its own cache) when the transport did not:
    /// operations over the WebSocket share one connection but never a cache. A subscription
    /// gets none: each event's lists are read for that event (`Loaders::of`).
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(mut name) = self.requested_name.lock() {
            name.clone_from(&request.operation_name);
        }
        // The document is parsed here, and held to the limits of its shape, before
        // async-graphql's own walks: those expand every fragment where it is spread, which a
        // few hundred bytes of fragments can make take hours.
        let mut document =
            async_graphql::parser::parse_query(&request.query).map_err(|error| match error {
                async_graphql::parser::Error::RecursionLimitExceeded => {
                    Limit::Nesting.refusal(format!(
                        "Query is nested deeper than {} selection sets and fragments.",
                        super::limits::MAX_RECURSIVE_DEPTH
                    ))
                }
                error => with_code(error.into(), ErrorCode::GraphqlParseFailed),
            })?;
        limits::check_document(&document)?;
        let subscription = compact::subscribes(&document, request.operation_name.as_deref());
        if subscription {
            compact::compact(&mut document);
        }
        request.set_parsed_query(document);
        if let Some(cap) = ctx.data_opt::<ResponseCap>() {
            self.size.cap(cap.0);
        }
        let missing = !request
            .data
            .contains_key(&std::any::TypeId::of::<super::loaders::Loaders>());
        if missing
            && !subscription
            && let Ok(db) = ctx.data::<sea_orm::DatabaseConnection>()
        {
            request.data.insert(super::loaders::Loaders::new(db));
        }
        next.run(ctx, request).await
    }

    /// Parse errors get `GRAPHQL_PARSE_FAILED` (the document was parsed and its shape checked
    /// in `prepare_request`). Then, before validation and before any resolver runs,
    /// introspection without a caller token is refused (checklist 58: the SDL is published
    /// anyway; this keeps anonymous probing from mapping the API).
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
            .map_err(|e| with_code(e, ErrorCode::GraphqlParseFailed))?;
        let introspects = document
            .operations
            .iter()
            .any(|(_, op)| introspects(&document, &op.node.selection_set.node, &mut Vec::new()));
        let authenticated = ctx.data_opt::<Arc<crate::auth::Viewer>>().is_some();
        if introspects && !authenticated {
            let error = ServerError::new(
                "introspection needs a caller token: send `Authorization: Bearer <token>`",
                None,
            );
            return Err(with_code(error, ErrorCode::Unauthenticated));
        }
        self.select(self.types(ctx), &document, variables, authenticated);
        if let (Some(seen), Some(op)) = (
            ctx.data_opt::<Arc<super::answer_cache::SeenOperation>>(),
            self.selected(),
        ) {
            seen.set(&op.name, op.kind);
        }
        Ok(document)
    }

    /// Validation errors get `GRAPHQL_VALIDATION_FAILED`. An anonymous caller gets one
    /// error that names nothing, without locations: the messages name fields, types and
    /// arguments, and where they point tells which exist — what introspection hides from it.
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let anonymous = ctx.data_opt::<Arc<crate::auth::Viewer>>().is_none();
        let result = next.run(ctx).await.map_err(|errors| {
            if anonymous {
                let error = ServerError::new(
                    "the operation is not valid for this schema; send a caller token \
                     (`Authorization: Bearer <token>`) to be told why",
                    None,
                );
                return vec![with_code(error, ErrorCode::GraphqlValidationFailed)];
            }
            errors
                .into_iter()
                .map(|e| with_code(e, ErrorCode::GraphqlValidationFailed))
                .collect::<Vec<_>>()
        })?;
        if result.complexity > super::limits::MAX_COMPLEXITY {
            return Err(vec![Limit::Cost.refusal(format!(
                "Query is too complex: it costs {}, at most {} is allowed (a list costs its page size times what each item selects).",
                result.complexity,
                super::limits::MAX_COMPLEXITY
            ))]);
        }
        Ok(result)
    }

    /// Holds operations to their MSP's budgets and queries to the timeout (checklist 55, 65,
    /// 98), and records the SQL statements the operation ran. Only valid operations get here.
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let selected = self.selected();
        self.size.restart();
        // A subscription over HTTP: refused once valid, with a code (async-graphql's own
        // refusal has none) and the way to the socket. (A socket's subscription passes here
        // for each of its events.)
        if ctx.data_opt::<OneAnswer>().is_some()
            && selected
                .as_ref()
                .is_some_and(|op| op.kind == "subscription")
        {
            let error = ServerError::new(
                "subscriptions run over WebSocket at /graphql/ws (graphql-transport-ws); \
                 POST runs queries and mutations",
                None,
            );
            return Response::from_errors(vec![with_code(error, ErrorCode::BadRequest)]);
        }
        if let Some(op) = &selected
            && let Err(refusal) = self.spend(ctx, op)
        {
            return Response::from_errors(vec![refusal]);
        }
        let run = async {
            let mut response = next.run(ctx, operation_name).await;
            self.answer.finish(&mut response, self.types(ctx));
            response
        };
        let response = match &selected {
            Some(op) if op.kind == "mutation" => run.await,
            // A query only reads, so cancelling it leaves nothing behind. Mutations are never
            // cut short: each of their calls to Microsoft has its own timeout, and stopping one
            // between two steps would leave the second undone.
            Some(op) if op.kind == "query" => {
                match tokio::time::timeout(self.query_timeout, run).await {
                    Ok(response) => response,
                    Err(_) => {
                        tracing::warn!(operation = %op.name, timeout = ?self.query_timeout, "query timed out");
                        let error = Limit::QueryTimeout.refusal(format!(
                            "the query ran longer than {} and was stopped; ask for less (a smaller `first`, fewer fields) or retry",
                            humantime::format_duration(self.query_timeout)
                        ));
                        Response::from_errors(vec![error])
                    }
                }
            }
            _ => run.await,
        };
        // Never part of an answer: the whole of it, or only the refusal.
        let response = if self.size.exceeded() {
            tracing::info!(
                budget = self.size.budget(),
                "an answer over its size budget was refused"
            );
            Response::from_errors(vec![self.too_large()])
        } else {
            response
        };
        // The request's own data (the statement counter) is only visible from here on.
        if let Some(statements) = ctx.data_opt::<crate::db::StatementCount>()
            && let Some(op) = selected
        {
            self.metrics
                .observe_statements(&op.name, op.kind, statements.get());
        }
        response
    }

    /// Counts each value into the answer's budget (every field still to come stops once the
    /// answer is over it — but a mutation's own root fields, which change things: they all
    /// run, so that the refusal can say the changes were made), gives a failed field `null`
    /// where the spec puts it, and notes what abstract-typed objects turn out to be (see
    /// `answer`). Each field also takes one unit of tokio's cooperative budget, so an answer
    /// that never waits for anything still yields every so often (128 fields) and the query
    /// timeout can stop it.
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        tokio::task::consume_budget().await;
        let (at, field, return_type) = (info.path_node, info.field, info.return_type);
        let types = self.types(ctx);
        let is_abstract = self
            .answer
            .field_starts(types, at, field, info.parent_type, return_type);
        let changes = at.parent.is_none() && self.mutation.load(Ordering::Relaxed);
        let result = if self.size.exceeded() && !changes {
            Err(over_budget())
        } else {
            let resolved = next.run(ctx, info).await;
            let bytes = match &resolved {
                Ok(Some(value)) => {
                    answer_size::own_bytes(value, return_type, &ctx.schema_env.registry)
                }
                Ok(None) => 0,
                // The error's message, path and code.
                Err(error) => error.message.len() + 128,
            };
            if self.size.spend(bytes) {
                resolved
            } else {
                Err(over_budget())
            }
        };
        self.answer
            .field_ends(types, at, field, return_type, is_abstract, result)
    }
}

/// What the fields still to come of an answer over its budget fail with (never seen: the
/// whole answer is replaced by the refusal).
fn over_budget() -> ServerError {
    ServerError::new("the answer is over its size budget", None)
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

/// How many fields a root selection set runs, fragments expanded (each spread counted where it
/// is spread, at most once per path).
fn root_fields<'d>(
    document: &'d ExecutableDocument,
    set: &'d SelectionSet,
    spreading: &mut Vec<&'d str>,
) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(_) => 1,
            Selection::InlineFragment(fragment) => {
                root_fields(document, &fragment.node.selection_set.node, spreading)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) else {
                    return 0;
                };
                if spreading.contains(&name) {
                    return 0;
                }
                spreading.push(name);
                let n = root_fields(document, &fragment.node.selection_set.node, spreading);
                spreading.pop();
                n
            }
        })
        .sum()
}
