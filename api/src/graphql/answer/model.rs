//! What an operation's answer keeps while async-graphql resolves it, and the paths it
//! compares: read by the ordering ([`super::order`]) and written by the hooks ([`super`]).

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock, atomic::AtomicUsize},
};

use async_graphql::{
    Name, PathSegment, Positioned, QueryPathNode, QueryPathSegment, ServerError, Value, Variables,
    parser::types::{Directive, FragmentDefinition, SelectionSet},
    registry::{MetaTypeName, Registry},
};

pub(super) type Fragments = HashMap<Name, Positioned<FragmentDefinition>>;

/// What one operation's answer needs beyond what async-graphql gives. Each operation has its
/// own; a subscription's is emptied after each event.
#[derive(Default)]
pub(crate) struct Answer {
    /// What the operation selects at its root, and the document's fragments (the hooks see
    /// fields only). Not kept for a subscription that needs neither.
    pub(super) root: OnceLock<Box<Root>>,
    /// How many non-null positions failed and still wait for a parent to take the `null`;
    /// read without the lock on every field.
    pub(super) failing: AtomicUsize,
    /// How many abstract-typed objects are being resolved.
    pub(super) watching: AtomicUsize,
    /// Created when something fails or an abstract-typed object resolves.
    pub(super) state: Mutex<Option<Box<State>>>,
}

#[derive(Default)]
pub(super) struct State {
    /// Errors of the fields that were given `null`, for the answer's `errors`.
    pub(super) errors: Vec<ServerError>,
    /// Non-null positions (and list items) that failed, until the parent that takes their
    /// `null` resolves.
    pub(super) failed: Vec<Vec<PathSegment>>,
    /// Positions given `null`: async-graphql merges a field selected twice from two
    /// resolutions, and keeps an object over a `null`, so the answer is set again at the end.
    pub(super) nulled: Vec<Vec<PathSegment>>,
    /// Abstract-typed objects being resolved, with their declared type.
    pub(super) watched: Vec<(Vec<PathSegment>, String)>,
    /// The object type each abstract-typed object turned out to be.
    pub(super) runtime_types: Vec<(Vec<PathSegment>, String)>,
}

/// The root of an operation's selection, as async-graphql runs it (without what `@skip` and
/// `@include` leave out).
pub(super) struct Root {
    /// The root operation type: `Query`, `Mutation` or `SubscriptionRoot`.
    pub(super) ty: String,
    /// Response keys in the query's order.
    pub(super) keys: Vec<Name>,
    /// Keys selected more than once with selections of their own: async-graphql resolves each
    /// apart and merges them in the order they finish.
    pub(super) merged: Vec<Merged>,
    pub(super) fragments: Fragments,
}

pub(super) struct Merged {
    pub(super) key: Name,
    /// The field's name (the key may be an alias).
    pub(super) field: Name,
    pub(super) sets: Vec<SelectionSet>,
}

/// The schema's types, as ordering an object needs them.
#[derive(Clone, Copy)]
pub(crate) struct Types<'a> {
    pub(crate) registry: &'a Registry,
    /// Its interfaces and unions.
    pub(crate) abstract_types: &'a [String],
}

impl Types<'_> {
    pub(super) fn is_abstract(&self, ty: &str) -> bool {
        self.abstract_types.iter().any(|t| t == ty)
    }

    /// The named type of a field of an object type.
    pub(super) fn field_type(&self, object_type: &str, field: &str) -> Option<&str> {
        let field = self.registry.types.get(object_type)?.field_by_name(field)?;
        Some(MetaTypeName::concrete_typename(&field.ty))
    }
}

pub(super) fn is_skipped(directives: &[Positioned<Directive>], variables: &Variables) -> bool {
    directives.iter().any(|directive| {
        let include = match directive.node.name.node.as_str() {
            "skip" => false,
            "include" => true,
            _ => return false,
        };
        directive.node.get_argument("if").is_some_and(|condition| {
            let value = condition
                .node
                .clone()
                .into_const_with(|name| variables.get(&name).cloned().ok_or(()));
            include != matches!(value, Ok(Value::Boolean(true)))
        })
    })
}

pub(super) fn same_segment(segment: &QueryPathSegment<'_>, path: &PathSegment) -> bool {
    match (segment, path) {
        (QueryPathSegment::Name(name), PathSegment::Field(field)) => name == field,
        (QueryPathSegment::Index(index), PathSegment::Index(other)) => index == other,
        _ => false,
    }
}

/// Whether `node` is the position `path` names.
pub(super) fn is_at(node: &QueryPathNode<'_>, path: &[PathSegment]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    same_segment(&node.segment, last)
        && match node.parent {
            Some(node) => is_at(node, parent),
            None => parent.is_empty(),
        }
}

pub(super) fn depth_of(node: &QueryPathNode<'_>) -> usize {
    std::iter::successors(Some(node), |node| node.parent).count()
}

pub(super) fn path_of(node: &QueryPathNode<'_>) -> Vec<PathSegment> {
    let mut path = Vec::new();
    let mut current = Some(node);
    while let Some(node) = current {
        path.push(match node.segment {
            QueryPathSegment::Name(name) => PathSegment::Field(name.to_owned()),
            QueryPathSegment::Index(index) => PathSegment::Index(index),
        });
        current = node.parent;
    }
    path.reverse();
    path
}
