//! The limits an operation's document is held to before anything runs, and the refusal each
//! limit gives: `extensions.code` says what kind of error it is, `extensions.limit` which limit
//! (a stable name a client can branch on).
//!
//! Every measure here follows fragments where they are spread, and remembers what it measured
//! of each fragment: a document that spreads one fragment twice, which spreads the next twice,
//! and so on, is as many fields as 2 to the power of its fragments, but costs one visit per
//! fragment to measure.

use std::collections::HashMap;

use async_graphql::{
    ServerError,
    parser::types::{ExecutableDocument, Field, Selection, SelectionSet},
};

use crate::error_code::ErrorCode;

use std::sync::Arc;

use super::budgets::Budgets;

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
    Limit::ALL.into_iter().map(Limit::name)
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
    pub(crate) fn from_settings(settings: &crate::config::Settings) -> Self {
        Self {
            mutations_per_minute: settings.msp_mutations_per_minute,
            queries_per_minute: settings.msp_queries_per_minute,
            query_timeout: settings.query_timeout,
            max_response_bytes: settings.max_response_bytes,
        }
    }
}

/// A limit an operation went past.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `DEPTH`: selections nested deeper than [`MAX_DEPTH`] (introspection has its own).
    Depth,
    /// `NESTING`: selection sets and fragments nested deeper than [`MAX_RECURSIVE_DEPTH`],
    /// or a fragment that spreads itself.
    Nesting,
    /// `COST`: more than [`MAX_COMPLEXITY`], lists weighted by their page size; a document
    /// that expands to more fields than that is refused before it is weighed.
    Cost,
    /// `ALIASES`: more than [`MAX_ALIASES`] aliases in the document.
    Aliases,
    /// `DIRECTIVES`: more than [`MAX_DIRECTIVES`] directives on one field.
    Directives,
    /// `INTROSPECTION_CYCLE`: one introspection list (`fields`, `interfaces`, `possibleTypes`,
    /// …) inside itself: `interfaces { possibleTypes { interfaces … } }`, `fields { type {
    /// fields … } }`. Each turn of such a cycle multiplies the answer.
    IntrospectionCycle,
    /// `INTROSPECTION_LISTS`: more than [`MAX_INTROSPECTION_LISTS`] introspection lists
    /// nested in one another.
    IntrospectionLists,
    /// `RESPONSE_SIZE`: the answer would be larger than its budget
    /// (`CONSENTRY_MAX_RESPONSE_BYTES`).
    ResponseSize,
    /// `QUERY_TIMEOUT`: the query ran longer than `CONSENTRY_QUERY_TIMEOUT`.
    QueryTimeout,
}

impl Limit {
    /// Every limit, in the order their names are documented.
    pub(crate) const ALL: [Limit; 9] = [
        Limit::Depth,
        Limit::Nesting,
        Limit::Cost,
        Limit::Aliases,
        Limit::Directives,
        Limit::IntrospectionCycle,
        Limit::IntrospectionLists,
        Limit::ResponseSize,
        Limit::QueryTimeout,
    ];

    /// The limit's stable name, `extensions.limit`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Limit::Depth => "DEPTH",
            Limit::Nesting => "NESTING",
            Limit::Cost => "COST",
            Limit::Aliases => "ALIASES",
            Limit::Directives => "DIRECTIVES",
            Limit::IntrospectionCycle => "INTROSPECTION_CYCLE",
            Limit::IntrospectionLists => "INTROSPECTION_LISTS",
            Limit::ResponseSize => "RESPONSE_SIZE",
            Limit::QueryTimeout => "QUERY_TIMEOUT",
        }
    }

    /// `extensions.code`: the document's limits refuse it like any invalid document (400 with
    /// `application/graphql-response+json`); the answer's size and the time are their own.
    pub(crate) fn code(self) -> ErrorCode {
        match self {
            Limit::ResponseSize => ErrorCode::ResponseTooLarge,
            Limit::QueryTimeout => ErrorCode::Timeout,
            _ => ErrorCode::GraphqlValidationFailed,
        }
    }

    /// The refusal, with `message` for people.
    pub(crate) fn refusal(self, message: impl Into<String>) -> ServerError {
        let mut error = ServerError::new(message, None);
        let extensions = error.extensions.get_or_insert_with(Default::default);
        extensions.set("code", self.code().as_str());
        extensions.set("limit", self.name());
        error
    }
}

/// Introspection fields that answer lists of objects: what makes an introspection answer grow.
const INTROSPECTION_LISTS: [&str; 8] = [
    "types",
    "directives",
    "fields",
    "args",
    "inputFields",
    "interfaces",
    "possibleTypes",
    "enumValues",
];

/// Checks a parsed document against every limit of its shape; the first one it breaks.
///
/// The order is part of the contract (the limit named is the first broken): directives,
/// aliases, nesting, size, depth, introspection. Validation comes after, and then the cost
/// with lists weighted (see the extension).
pub(crate) fn check_document(document: &ExecutableDocument) -> Result<(), ServerError> {
    let definitions = || {
        document
            .operations
            .iter()
            .map(|(_, op)| &op.node.selection_set.node)
            .chain(
                document
                    .fragments
                    .values()
                    .map(|f| &f.node.selection_set.node),
            )
    };
    if let Some(field) = definitions().find_map(too_many_directives) {
        return Err(Limit::Directives.refusal(format!(
            "Field \"{field}\" has more than {MAX_DIRECTIVES} directives; at most {MAX_DIRECTIVES} are allowed on one field."
        )));
    }
    let aliases: usize = definitions().map(aliases).sum();
    if aliases > MAX_ALIASES {
        return Err(Limit::Aliases.refusal(format!(
            "Query uses {aliases} aliases; at most {MAX_ALIASES} are allowed."
        )));
    }
    let mut measure = Measure::new(document);
    let operations = || {
        document
            .operations
            .iter()
            .map(|(_, op)| &op.node.selection_set.node)
    };
    for set in operations() {
        measure.nesting(set, 0)?;
    }
    let fields = operations().fold(0u64, |sum, set| sum.saturating_add(measure.fields(set)));
    if fields > MAX_COMPLEXITY as u64 {
        return Err(Limit::Cost.refusal(format!(
            "Query is too complex: its fragments expand to {fields} fields, more than its cost may be ({MAX_COMPLEXITY})."
        )));
    }
    let deepest = operations()
        .map(|set| measure.depth(set))
        .max()
        .unwrap_or(0);
    if deepest > MAX_DEPTH {
        return Err(Limit::Depth.refusal(format!(
            "Query is nested too deep (the limit is {MAX_DEPTH})."
        )));
    }
    for set in operations() {
        measure.introspection(set, None)?;
    }
    Ok(())
}

/// The name of a field with more directives than allowed, if any.
fn too_many_directives(set: &SelectionSet) -> Option<String> {
    set.items.iter().find_map(|item| match &item.node {
        Selection::Field(field) if field.node.directives.len() > MAX_DIRECTIVES => {
            Some(field.node.name.node.to_string())
        }
        Selection::Field(field) => too_many_directives(&field.node.selection_set.node),
        Selection::InlineFragment(fragment) => {
            too_many_directives(&fragment.node.selection_set.node)
        }
        Selection::FragmentSpread(_) => None,
    })
}

/// Aliases written in a selection set (each written once, however often it is spread).
fn aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some()) + aliases(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => aliases(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

/// Measures of a document's operations, with what was measured of each fragment.
struct Measure<'d> {
    document: &'d ExecutableDocument,
    nesting: HashMap<&'d str, usize>,
    fields: HashMap<&'d str, u64>,
    depth: HashMap<&'d str, usize>,
}

/// Where an introspection selection is: the lists it is inside, outermost first.
type Lists<'d> = Vec<&'d str>;

impl<'d> Measure<'d> {
    fn new(document: &'d ExecutableDocument) -> Self {
        Self {
            document,
            nesting: HashMap::new(),
            fields: HashMap::new(),
            depth: HashMap::new(),
        }
    }

    fn fragment(&self, name: &str) -> Option<(&'d str, &'d SelectionSet)> {
        self.document
            .fragments
            .get_key_value(name)
            .map(|(name, fragment)| (name.as_str(), &fragment.node.selection_set.node))
    }

    /// How deep below `set` selection sets go (a field's selection, a spread fragment and an
    /// inline fragment each one level, as async-graphql's `limit_recursive_depth` counts);
    /// refused as soon as a set lies deeper than [`MAX_RECURSIVE_DEPTH`] from the operation,
    /// which also ends a fragment that spreads itself.
    fn nesting(&mut self, set: &'d SelectionSet, at: usize) -> Result<usize, ServerError> {
        if at > MAX_RECURSIVE_DEPTH {
            return Err(Limit::Nesting.refusal(format!(
                "Query is nested deeper than {MAX_RECURSIVE_DEPTH} selection sets and fragments (a fragment that spreads itself never ends)."
            )));
        }
        let mut deepest = 0;
        for item in &set.items {
            let below = match &item.node {
                Selection::Field(field) if field.node.selection_set.node.items.is_empty() => {
                    continue;
                }
                Selection::Field(field) => self.nesting(&field.node.selection_set.node, at + 1)?,
                Selection::InlineFragment(fragment) => {
                    self.nesting(&fragment.node.selection_set.node, at + 1)?
                }
                Selection::FragmentSpread(spread) => {
                    let Some((name, fragment)) = self.fragment(&spread.node.fragment_name.node)
                    else {
                        continue;
                    };
                    match self.nesting.get(name) {
                        Some(&known) if at + 1 + known <= MAX_RECURSIVE_DEPTH => known,
                        _ => {
                            let known = self.nesting(fragment, at + 1)?;
                            self.nesting.insert(name, known);
                            known
                        }
                    }
                }
            };
            deepest = deepest.max(1 + below);
        }
        Ok(deepest)
    }

    /// Fields `set` runs, fragments expanded. Only called once nesting is known to be bounded
    /// (no fragment spreads itself).
    fn fields(&mut self, set: &'d SelectionSet) -> u64 {
        let mut sum = 0u64;
        for item in &set.items {
            let n = match &item.node {
                Selection::Field(field) => {
                    1u64.saturating_add(self.fields(&field.node.selection_set.node))
                }
                Selection::InlineFragment(fragment) => {
                    self.fields(&fragment.node.selection_set.node)
                }
                Selection::FragmentSpread(spread) => {
                    match self.fragment(&spread.node.fragment_name.node) {
                        None => 0,
                        Some((name, fragment)) => match self.fields.get(name) {
                            Some(&known) => known,
                            None => {
                                let known = self.fields(fragment);
                                self.fields.insert(name, known);
                                known
                            }
                        },
                    }
                }
            };
            sum = sum.saturating_add(n);
        }
        sum
    }

    /// Fields nested in `set`, introspection's own not counted (it has its own limits).
    fn depth(&mut self, set: &'d SelectionSet) -> usize {
        let mut deepest = 0;
        for item in &set.items {
            let d = match &item.node {
                Selection::Field(field) if field.node.name.node.starts_with("__") => 0,
                Selection::Field(field) => 1 + self.depth(&field.node.selection_set.node),
                Selection::InlineFragment(fragment) => {
                    self.depth(&fragment.node.selection_set.node)
                }
                Selection::FragmentSpread(spread) => {
                    match self.fragment(&spread.node.fragment_name.node) {
                        None => 0,
                        Some((name, fragment)) => match self.depth.get(name) {
                            Some(&known) => known,
                            None => {
                                let known = self.depth(fragment);
                                self.depth.insert(name, known);
                                known
                            }
                        },
                    }
                }
            };
            deepest = deepest.max(d);
        }
        deepest
    }

    /// Introspection's own limits: under `__schema` and `__type`, no list inside itself and at
    /// most [`MAX_INTROSPECTION_LISTS`] lists inside one another. `lists` is `None` outside
    /// introspection. Walks fragments expanded: only called once the document is known to
    /// expand to a bounded number of fields.
    fn introspection(
        &mut self,
        set: &'d SelectionSet,
        lists: Option<&Lists<'d>>,
    ) -> Result<(), ServerError> {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => self.introspection_field(&field.node, lists)?,
                Selection::InlineFragment(fragment) => {
                    self.introspection(&fragment.node.selection_set.node, lists)?;
                }
                Selection::FragmentSpread(spread) => {
                    if let Some((_, fragment)) = self.fragment(&spread.node.fragment_name.node) {
                        self.introspection(fragment, lists)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn introspection_field(
        &mut self,
        field: &'d Field,
        lists: Option<&Lists<'d>>,
    ) -> Result<(), ServerError> {
        let name = field.name.node.as_str();
        let set = &field.selection_set.node;
        if set.items.is_empty() {
            return Ok(());
        }
        let Some(lists) = lists else {
            // Outside introspection until `__schema` or `__type` (only the roots have them).
            let inside = matches!(name, "__schema" | "__type").then(Lists::new);
            return self.introspection(set, inside.as_ref());
        };
        if !INTROSPECTION_LISTS.contains(&name) {
            return self.introspection(set, Some(lists));
        }
        if lists.contains(&name) {
            let path = lists.join(" → ");
            return Err(Limit::IntrospectionCycle.refusal(format!(
                "Introspection asks for `{name}` inside `{name}` ({path} → {name}): each turn of such a cycle multiplies the answer, so none is allowed."
            )));
        }
        if lists.len() >= MAX_INTROSPECTION_LISTS {
            let path = lists.join(" → ");
            return Err(Limit::IntrospectionLists.refusal(format!(
                "Introspection nests {} lists ({path} → {name}); at most {MAX_INTROSPECTION_LISTS} are allowed.",
                lists.len() + 1
            )));
        }
        let mut inner = lists.clone();
        inner.push(name);
        self.introspection(set, Some(&inner))
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn refusal(query: &str) -> Option<String> {
        let document = parse_query(query).unwrap();
        check_document(&document).err().map(|error| {
            let extensions = error.extensions.unwrap();
            match extensions.get("limit") {
                Some(async_graphql::Value::String(limit)) => limit.clone(),
                other => panic!("a refusal without a limit: {other:?}"),
            }
        })
    }

    #[test]
    fn every_limit_has_its_own_stable_name() {
        let mut names: Vec<&str> = Limit::ALL.iter().map(|l| l.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Limit::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        );
    }

    #[test]
    fn introspection_cycles_of_any_length_are_refused() {
        for turns in 1..=20 {
            let mut selection = "name".to_owned();
            for i in 0..turns {
                let list = if i % 2 == 0 {
                    "interfaces"
                } else {
                    "possibleTypes"
                };
                selection = format!("{list} {{ name {selection} }}");
            }
            let query =
                format!("{{ __type(name: \"Node\") {{ possibleTypes {{ {selection} }} }} }}");
            let expected = if turns == 1 {
                None
            } else {
                Some("INTROSPECTION_CYCLE".to_owned())
            };
            assert_eq!(refusal(&query), expected, "{turns} turns");
        }
        let fields = "{ __schema { types { fields { type { ofType { fields { name } } } } } } }";
        assert_eq!(refusal(fields).as_deref(), Some("INTROSPECTION_CYCLE"));
        // The same cycle hidden in fragments.
        let hidden = "{ __schema { types { ...T } } }
            fragment T on __Type { fields { type { ...U } } }
            fragment U on __Type { ofType { fields { name } } }";
        assert_eq!(refusal(hidden).as_deref(), Some("INTROSPECTION_CYCLE"));
    }

    #[test]
    fn introspection_may_nest_three_lists() {
        let three =
            "{ __schema { types { fields { args { name type { kind ofType { name } } } } } } }";
        assert_eq!(refusal(three), None);
        let four = "{ __schema { types { possibleTypes { fields { args { name } } } } } }";
        assert_eq!(refusal(four).as_deref(), Some("INTROSPECTION_LISTS"));
    }

    #[test]
    fn a_fragment_bomb_is_measured_once_per_fragment_and_refused_by_cost() {
        let fragments: String = (0..60)
            .map(|i| format!("fragment F{i} on Query {{ ...F{} ...F{} }} ", i + 1, i + 1))
            .collect();
        let query = format!("{{ ...F0 }} {fragments} fragment F60 on Query {{ __typename }}");
        let started = std::time::Instant::now();
        assert_eq!(refusal(&query).as_deref(), Some("NESTING"));
        let fragments: String = (0..30)
            .map(|i| format!("fragment F{i} on Query {{ ...F{} ...F{} }} ", i + 1, i + 1))
            .collect();
        let query = format!("{{ ...F0 }} {fragments} fragment F30 on Query {{ __typename }}");
        assert_eq!(refusal(&query).as_deref(), Some("COST"));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn fragments_that_spread_themselves_are_refused_as_nesting() {
        let query =
            "{ ...A } fragment A on Query { viewer { subject } ...B } fragment B on Query { ...A }";
        assert_eq!(refusal(query).as_deref(), Some("NESTING"));
    }

    #[test]
    fn depth_counts_fields_where_fragments_are_spread() {
        let twelve = format!(
            "{{ {} __typename {} }}",
            "viewer { ".repeat(12),
            "} ".repeat(12)
        );
        assert_eq!(refusal(&twelve), None);
        let thirteen = format!(
            "{{ {} __typename {} }}",
            "viewer { ".repeat(13),
            "} ".repeat(13)
        );
        assert_eq!(refusal(&thirteen).as_deref(), Some("DEPTH"));
        let spread = format!(
            "{{ viewer {{ ...V }} }} fragment V on Viewer {{ {} __typename {} }}",
            "msp { ".repeat(12),
            "} ".repeat(12)
        );
        assert_eq!(refusal(&spread).as_deref(), Some("DEPTH"));
    }

    #[test]
    fn directives_and_aliases_are_counted_as_written() {
        let directives = "{ viewer @skip(if: false) @skip(if: false) @skip(if: false) @skip(if: false) @skip(if: false) { subject } }";
        assert_eq!(refusal(directives).as_deref(), Some("DIRECTIVES"));
        let aliases: String = (0..33).map(|i| format!("a{i}: __typename ")).collect();
        assert_eq!(
            refusal(&format!("{{ {aliases} }}")).as_deref(),
            Some("ALIASES")
        );
    }
}
