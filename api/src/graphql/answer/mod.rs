//! Answers as the GraphQL spec shapes them, where async-graphql 7.2 does not: fields in the
//! order the query asks for them (spec 7.2.2, fields collected as 6.3.2 says), and a failed
//! field reads `null` beside its error, a failed non-null field making its nearest nullable
//! parent `null` (spec 6.4.4).
//!
//! async-graphql 7.1 (async-graphql#1746) writes an object's fields in the order they finish,
//! not the query's, and leaves out a field whose resolver failed. Its 8.0 line reverts that
//! change (#1806). Until Consentry runs a release with the revert, the operations extension
//! corrects each object as its field resolves (and the root at the end), for HTTP and the
//! WebSocket alike, before either writes it. An idle subscription keeps nothing of it but a
//! few words: the per-field work reads the selection async-graphql already holds.

mod model;
mod order;

use std::sync::atomic::Ordering;

use async_graphql::{
    PathSegment, QueryPathNode, QueryPathSegment, Response, ServerResult, Value, Variables,
    parser::types::{Field, OperationDefinition, OperationType, Selection, SelectionSet},
    registry::MetaTypeName,
};

pub(crate) use self::model::{Answer, Types};
use self::model::{Fragments, Merged, Root, State, depth_of, is_at, is_skipped, path_of};
use self::order::{Collect, Order, Where};

impl Answer {
    /// Keeps what the operation that runs selects at its root, and the document's fragments.
    pub(crate) fn select(
        &self,
        types: Types<'_>,
        operation: &OperationDefinition,
        fragments: &Fragments,
        variables: &Variables,
    ) {
        let ty = match operation.ty {
            OperationType::Query => Some(types.registry.query_type.as_str()),
            OperationType::Mutation => types.registry.mutation_type.as_deref(),
            OperationType::Subscription => types.registry.subscription_type.as_deref(),
        };
        let Some(ty) = ty else {
            return;
        };
        let fragments: Fragments = fragments
            .iter()
            .map(|(name, fragment)| {
                let mut fragment = fragment.clone();
                without_skipped(&mut fragment.node.selection_set.node, variables);
                (name.clone(), fragment)
            })
            .collect();
        let fields = Collect {
            types,
            fragments: Some(&fragments),
            variables: Some(variables),
        }
        .fields(&[&operation.selection_set.node], ty, ty);
        let mut root = Root {
            ty: ty.to_owned(),
            keys: Vec::with_capacity(fields.len()),
            merged: Vec::new(),
            fragments: Fragments::new(),
        };
        for (index, field) in fields.iter().enumerate() {
            let key = &field.response_key().node;
            if root.keys.contains(key) {
                continue;
            }
            root.keys.push(key.clone());
            if let Some(sets) = merged_selections(&fields[index..]) {
                root.merged.push(Merged {
                    key: key.clone(),
                    field: field.name.node.clone(),
                    sets: sets
                        .into_iter()
                        .map(|set| {
                            let mut set = set.clone();
                            without_skipped(&mut set, variables);
                            set
                        })
                        .collect(),
                });
            }
        }
        // A subscription has one root field: nothing to order there unless fragments or a
        // merge are involved.
        let needed = operation.ty != OperationType::Subscription
            || !fragments.is_empty()
            || !root.merged.is_empty();
        root.fragments = fragments;
        if needed {
            let _ = self.root.set(Box::new(root));
        }
    }

    /// Before a field (or a list item) resolves: what its parent turned out to be, when the
    /// parent is abstract; and whether this one is.
    pub(crate) fn field_starts(
        &self,
        types: Types<'_>,
        at: &QueryPathNode<'_>,
        field: &Field,
        parent_type: &str,
        return_type: &str,
    ) -> bool {
        if self.watching.load(Ordering::Acquire) > 0
            && let Some(parent) = at.parent
        {
            self.with_state(|state| {
                let watched = state
                    .watched
                    .iter()
                    .find(|(path, declared)| declared != parent_type && is_at(parent, path))
                    .map(|(path, _)| path.clone());
                if let Some(path) = watched
                    && !state.runtime_types.iter().any(|(seen, _)| *seen == path)
                {
                    state.runtime_types.push((path, parent_type.to_owned()));
                }
            });
        }
        if field.selection_set.node.items.is_empty() || is_list(return_type) {
            return false;
        }
        let named = MetaTypeName::concrete_typename(return_type);
        let is_abstract = types.is_abstract(named);
        if is_abstract {
            self.with_state(|state| state.watched.push((path_of(at), named.to_owned())));
            self.watching.fetch_add(1, Ordering::AcqRel);
        }
        is_abstract
    }

    /// After a field (or a list item) resolved: a failure becomes `null` here when the field
    /// is nullable, and in its parent when not (spec 6.4.4); so does a non-null child's. An
    /// object is put in the order its selection asks for.
    pub(crate) fn field_ends(
        &self,
        types: Types<'_>,
        at: &QueryPathNode<'_>,
        field: &Field,
        return_type: &str,
        was_abstract: bool,
        result: ServerResult<Option<Value>>,
    ) -> ServerResult<Option<Value>> {
        if was_abstract {
            self.with_state(|state| state.watched.retain(|(path, _)| !is_at(at, path)));
            self.watching.fetch_sub(1, Ordering::AcqRel);
        }
        let mut value = match result {
            Ok(value) if self.failing.load(Ordering::Acquire) == 0 => value,
            result => match self.settle(at, return_type, result) {
                Some(value) => value,
                None => return Ok(Some(Value::Null)),
            },
        };
        if let Some(Value::Object(object)) = value.as_mut()
            && !field.selection_set.node.items.is_empty()
        {
            let declared = MetaTypeName::concrete_typename(return_type);
            let set = [&field.selection_set.node];
            self.order(types)
                .object(object, &set, declared, &Where::Node(at));
        }
        Ok(value)
    }

    /// A field's result once the failures at and below it are settled; `None` when it fails.
    fn settle(
        &self,
        at: &QueryPathNode<'_>,
        return_type: &str,
        result: ServerResult<Option<Value>>,
    ) -> Option<Option<Value>> {
        let (mut value, error) = match result {
            Ok(value) => (value, None),
            Err(error) => (None, Some(error)),
        };
        let is_item = matches!(at.segment, QueryPathSegment::Index(_));
        let settled = self.with_state(|state| {
            let mut failed = error.is_some();
            state.errors.extend(error);
            let (field_failed, items) = self.take_failed_below(state, at, is_item);
            failed |= field_failed;
            for indices in items {
                let Some(list) = value.as_mut() else {
                    continue;
                };
                match settle_item(list, return_type, &indices) {
                    Landing::List => failed = true,
                    Landing::Item(levels) => {
                        let mut path = path_of(at);
                        path.extend(indices[..levels].iter().map(|i| PathSegment::Index(*i)));
                        state.nulled.push(path);
                    }
                    Landing::Nowhere => {}
                }
            }
            if !failed {
                return true;
            }
            // A list item cannot tell whether it may be null (async-graphql names the items
            // of a list of nullable objects non-null), so its list's field decides.
            if is_item || return_type.ends_with('!') {
                state.failed.push(path_of(at));
                self.failing.fetch_add(1, Ordering::AcqRel);
            } else {
                state.nulled.push(path_of(at));
            }
            false
        });
        match settled {
            Some(false) => None,
            _ => Some(value),
        }
    }

    /// Takes the failures right below `at`: whether a non-null field of this object failed,
    /// and which items of this list (by their indices at each level) did. An item leaves
    /// the failed items of a list within it to the field that holds both.
    fn take_failed_below(
        &self,
        state: &mut State,
        at: &QueryPathNode<'_>,
        is_item: bool,
    ) -> (bool, Vec<Vec<usize>>) {
        let depth = depth_of(at);
        let before = state.failed.len();
        let (mut field_failed, mut items) = (false, Vec::new());
        state.failed.retain(|path| {
            let Some(below) = path.get(depth..).filter(|_| is_at(at, &path[..depth])) else {
                return true;
            };
            if let [PathSegment::Field(_)] = below {
                field_failed = true;
                return false;
            }
            let indices: Option<Vec<usize>> = below
                .iter()
                .map(|segment| match segment {
                    PathSegment::Index(index) => Some(*index),
                    PathSegment::Field(_) => None,
                })
                .collect();
            match indices {
                Some(indices) if !is_item && !indices.is_empty() => {
                    items.push(indices);
                    false
                }
                _ => true,
            }
        });
        self.failing
            .fetch_sub(before - state.failed.len(), Ordering::AcqRel);
        (field_failed, items)
    }

    /// Completes an answer: no `data` when a root field that cannot be null failed, the root
    /// in the query's order, and the errors of the fields that were given `null`.
    pub(crate) fn finish(&self, response: &mut Response, types: Types<'_>) {
        let root_failed = self
            .peek_state(|state| state.failed.iter().any(|path| path.len() == 1))
            .unwrap_or(false);
        if root_failed {
            response.data = Value::Null;
        }
        if let (Some(root), Value::Object(object)) = (self.root.get(), &mut response.data) {
            self.order(types).root(object, root);
        }
        let state = self
            .state
            .lock()
            .ok()
            .and_then(|mut state| state.take())
            .unwrap_or_default();
        self.failing.store(0, Ordering::Release);
        self.watching.store(0, Ordering::Release);
        for path in &state.nulled {
            set_null(&mut response.data, path);
        }
        response.errors.extend(state.errors);
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        let mut state = self.state.lock().ok()?;
        Some(f(state.get_or_insert_with(Box::default)))
    }

    /// Reads the state, if anything made one.
    fn peek_state<R>(&self, f: impl FnOnce(&State) -> R) -> Option<R> {
        let state = self.state.lock().ok()?;
        state.as_deref().map(f)
    }

    fn order<'a>(&'a self, types: Types<'a>) -> Order<'a> {
        Order {
            answer: self,
            collect: Collect {
                types,
                fragments: self.root.get().map(|root| &root.fragments),
                variables: None,
            },
        }
    }

    /// What an abstract-typed object at `at` turned out to be, as its fields saw it.
    fn runtime_type(&self, at: &Where<'_>) -> Option<String> {
        self.peek_state(|state| {
            state
                .runtime_types
                .iter()
                .find(|(path, _)| at.is(path))
                .map(|(_, ty)| ty.clone())
        })
        .flatten()
    }
}

/// The selections of the first field's response key when it is selected more than once.
fn merged_selections<'f>(fields: &[&'f Field]) -> Option<Vec<&'f SelectionSet>> {
    let (first, rest) = fields.split_first()?;
    let key = &first.response_key().node;
    if !rest.iter().any(|f| f.response_key().node == *key) {
        return None;
    }
    Some(
        fields
            .iter()
            .filter(|f| f.response_key().node == *key)
            .map(|f| &f.selection_set.node)
            .collect(),
    )
}

/// Removes the selections `@skip` and `@include` leave out, as async-graphql does before it
/// runs an operation (`remove_skipped_selection`): the same rule, so the same fields remain.
fn without_skipped(set: &mut SelectionSet, variables: &Variables) {
    set.items
        .retain(|item| !is_skipped(item.node.directives(), variables));
    for item in &mut set.items {
        match &mut item.node {
            Selection::Field(field) => {
                without_skipped(&mut field.node.selection_set.node, variables)
            }
            Selection::InlineFragment(fragment) => {
                without_skipped(&mut fragment.node.selection_set.node, variables);
            }
            Selection::FragmentSpread(_) => {}
        }
    }
}

/// Where the `null` of a failed list item lands.
enum Landing {
    /// On the list itself: its items may not be null.
    List,
    /// On the item this many levels down (`indices[..n]`).
    Item(usize),
    /// Nowhere: the list is already gone.
    Nowhere,
}

/// Gives `null` to a failed list item (at `indices`, one per level of nesting) where its
/// type allows, else to the list holding it, and so on up.
fn settle_item(list: &mut Value, list_type: &str, indices: &[usize]) -> Landing {
    let Some((&index, deeper)) = indices.split_first() else {
        return Landing::List;
    };
    let item_type = item_type(list_type);
    let item = match list {
        Value::List(items) => items.get_mut(index),
        _ => None,
    };
    let Some(item) = item else {
        return Landing::Nowhere;
    };
    match settle_item(item, item_type, deeper) {
        Landing::List if item_type.ends_with('!') => Landing::List,
        Landing::List => {
            *item = Value::Null;
            Landing::Item(1)
        }
        Landing::Item(levels) => Landing::Item(levels + 1),
        Landing::Nowhere => Landing::Nowhere,
    }
}

/// Sets the value at `path` to `null`, if it is there.
fn set_null(data: &mut Value, path: &[PathSegment]) {
    let mut value = data;
    for segment in path {
        let next = match (value, segment) {
            (Value::Object(object), PathSegment::Field(name)) => object.get_mut(name.as_str()),
            (Value::List(items), PathSegment::Index(index)) => items.get_mut(*index),
            _ => None,
        };
        let Some(next) = next else {
            return;
        };
        value = next;
    }
    *value = Value::Null;
}

/// The type of a list type's items: `[Client!]!` → `Client!`.
fn item_type(list_type: &str) -> &str {
    let list = list_type.strip_suffix('!').unwrap_or(list_type);
    list.strip_prefix('[')
        .and_then(|items| items.strip_suffix(']'))
        .unwrap_or(list)
}

fn is_list(ty: &str) -> bool {
    ty.trim_end_matches('!').starts_with('[')
}

#[cfg(test)]
mod tests;
