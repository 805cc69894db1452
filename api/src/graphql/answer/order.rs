//! Putting a kept answer's lists in the order the query asked for, and collecting what the
//! answer holds where.

use std::borrow::Cow;

use async_graphql::{
    Name, PathSegment, QueryPathNode, Value, Variables,
    indexmap::IndexMap,
    parser::types::{Field, Selection, SelectionSet},
};

use super::model::{Answer, Fragments, Root, Types, is_at, is_skipped, path_of};

/// Where an object is in the answer, to find what an abstract-typed one turned out to be.
pub(super) enum Where<'a> {
    Node(&'a QueryPathNode<'a>),
    Path(Vec<PathSegment>),
}

impl Where<'_> {
    pub(super) fn is(&self, path: &[PathSegment]) -> bool {
        match self {
            Where::Node(node) => is_at(node, path),
            Where::Path(own) => own == path,
        }
    }

    pub(super) fn below(&self, segment: PathSegment) -> Where<'static> {
        let mut path = match self {
            Where::Node(node) => path_of(node),
            Where::Path(path) => path.clone(),
        };
        path.push(segment);
        Where::Path(path)
    }
}

/// Puts objects in the order their selections ask for.
pub(super) struct Order<'a> {
    pub(super) answer: &'a Answer,
    pub(super) collect: Collect<'a>,
}

impl Order<'_> {
    pub(super) fn root(&self, object: &mut IndexMap<Name, Value>, root: &Root) {
        sort(object, root.keys.iter());
        for merged in &root.merged {
            let sets: Vec<&SelectionSet> = merged.sets.iter().collect();
            if let (Some(value), Some(ty)) = (
                object.get_mut(&merged.key),
                self.collect.types.field_type(&root.ty, &merged.field),
            ) {
                let at = Where::Path(vec![PathSegment::Field(merged.key.to_string())]);
                self.value(value, &sets, ty, &at);
            }
        }
    }

    pub(super) fn value(
        &self,
        value: &mut Value,
        sets: &[&SelectionSet],
        declared: &str,
        at: &Where<'_>,
    ) {
        match value {
            Value::List(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    self.value(item, sets, declared, &at.below(PathSegment::Index(index)));
                }
            }
            Value::Object(object) => self.object(object, sets, declared, at),
            _ => {}
        }
    }

    /// Puts one object's fields in order, and those of the fields it merged from several
    /// selections (their parts were resolved apart, so nothing else orders them).
    pub(super) fn object(
        &self,
        object: &mut IndexMap<Name, Value>,
        sets: &[&SelectionSet],
        declared: &str,
        at: &Where<'_>,
    ) {
        let concrete = self.object_type(object, sets, declared, at);
        // Most selections are fields only: their order is the selection's own.
        if let [set] = sets
            && set
                .items
                .iter()
                .all(|item| matches!(item.node, Selection::Field(_)))
        {
            let fields = set.items.iter().filter_map(|item| match &item.node {
                Selection::Field(field) => Some(&field.node),
                _ => None,
            });
            self.fields(object, fields, &concrete, at);
        } else {
            let fields = self.collect.fields(sets, &concrete, declared);
            self.fields(object, fields.iter().copied(), &concrete, at);
        }
    }

    pub(super) fn fields<'f>(
        &self,
        object: &mut IndexMap<Name, Value>,
        fields: impl Iterator<Item = &'f Field> + Clone,
        concrete: &str,
        at: &Where<'_>,
    ) {
        sort(object, fields.clone().map(|f| &f.response_key().node));
        for (index, field) in fields.clone().enumerate() {
            if field.selection_set.node.items.is_empty() {
                continue;
            }
            let key = &field.response_key().node;
            let same_key = |other: &&Field| other.response_key().node == *key;
            let merged = fields.clone().skip(index + 1).any(|f| same_key(&f))
                && !fields.clone().take(index).any(|f| same_key(&f));
            if !merged {
                continue;
            }
            if let (Some(value), Some(ty)) = (
                object.get_mut(key),
                self.collect.types.field_type(concrete, &field.name.node),
            ) {
                let sets: Vec<&SelectionSet> = fields
                    .clone()
                    .filter(same_key)
                    .map(|f| &f.selection_set.node)
                    .collect();
                let at = at.below(PathSegment::Field(key.to_string()));
                self.value(value, &sets, ty, &at);
            }
        }
    }

    /// What an object's type is: its declared type, or what an abstract-typed one turned out
    /// to be (seen as its fields resolved, or in its `__typename`).
    pub(super) fn object_type<'d>(
        &self,
        object: &IndexMap<Name, Value>,
        sets: &[&SelectionSet],
        declared: &'d str,
        at: &Where<'_>,
    ) -> Cow<'d, str> {
        if !self.collect.types.is_abstract(declared) {
            return Cow::Borrowed(declared);
        }
        if let Some(ty) = self.answer.runtime_type(at) {
            return Cow::Owned(ty);
        }
        let mut fields = Vec::new();
        for set in sets {
            self.collect.every_field(set, &mut fields, &mut Vec::new());
        }
        fields
            .into_iter()
            .filter(|field| field.name.node == "__typename")
            .find_map(|field| match object.get(&field.response_key().node) {
                Some(Value::String(name)) => Some(Cow::Owned(name.clone())),
                _ => None,
            })
            .unwrap_or(Cow::Borrowed(declared))
    }
}

/// The spec's CollectFields (6.3.2), deciding which fragments apply the way async-graphql does.
pub(super) struct Collect<'a> {
    pub(super) types: Types<'a>,
    pub(super) fragments: Option<&'a Fragments>,
    /// To leave out what `@skip` and `@include` leave out, in a selection async-graphql has
    /// not yet prepared (its own has neither directive left).
    pub(super) variables: Option<&'a Variables>,
}

impl<'a> Collect<'a> {
    /// Every field an object of type `concrete`, at a position of type `declared`, selects,
    /// in the query's order (fields of one response key merge later).
    pub(super) fn fields<'s>(
        &self,
        sets: &[&'s SelectionSet],
        concrete: &str,
        declared: &str,
    ) -> Vec<&'s Field>
    where
        'a: 's,
    {
        let mut fields = Vec::new();
        let mut spread = Vec::new();
        for set in sets {
            self.collect(set, concrete, declared, &mut fields, &mut spread);
        }
        fields
    }

    pub(super) fn collect<'s>(
        &self,
        set: &'s SelectionSet,
        concrete: &str,
        declared: &str,
        fields: &mut Vec<&'s Field>,
        spread: &mut Vec<&'s Name>,
    ) where
        'a: 's,
    {
        for item in &set.items {
            if self
                .variables
                .is_some_and(|variables| is_skipped(item.node.directives(), variables))
            {
                continue;
            }
            match &item.node {
                Selection::Field(field) => fields.push(&field.node),
                Selection::FragmentSpread(spread_here) => {
                    let name = &spread_here.node.fragment_name.node;
                    if spread.contains(&name) {
                        continue;
                    }
                    spread.push(name);
                    if let Some(fragment) = self.fragments.and_then(|f| f.get(name))
                        && self.applies(
                            &fragment.node.type_condition.node.on.node,
                            concrete,
                            declared,
                        )
                    {
                        self.collect(
                            &fragment.node.selection_set.node,
                            concrete,
                            declared,
                            fields,
                            spread,
                        );
                    }
                }
                Selection::InlineFragment(fragment) => {
                    let applies = fragment
                        .node
                        .type_condition
                        .as_ref()
                        .is_none_or(|condition| {
                            self.applies(&condition.node.on.node, concrete, declared)
                        });
                    if applies {
                        self.collect(
                            &fragment.node.selection_set.node,
                            concrete,
                            declared,
                            fields,
                            spread,
                        );
                    }
                }
            }
        }
    }

    /// Every field of a selection set, whatever the type conditions.
    pub(super) fn every_field<'s>(
        &self,
        set: &'s SelectionSet,
        fields: &mut Vec<&'s Field>,
        spread: &mut Vec<&'s Name>,
    ) where
        'a: 's,
    {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => fields.push(&field.node),
                Selection::FragmentSpread(spread_here) => {
                    let name = &spread_here.node.fragment_name.node;
                    if !spread.contains(&name) {
                        spread.push(name);
                        if let Some(fragment) = self.fragments.and_then(|f| f.get(name)) {
                            self.every_field(&fragment.node.selection_set.node, fields, spread);
                        }
                    }
                }
                Selection::InlineFragment(fragment) => {
                    self.every_field(&fragment.node.selection_set.node, fields, spread);
                }
            }
        }
    }

    /// Whether a fragment on `condition` applies to an object of type `concrete` at a
    /// position of type `declared` (async-graphql's rule in `Fields::add_set`).
    pub(super) fn applies(&self, condition: &str, concrete: &str, declared: &str) -> bool {
        condition == concrete
            || condition == declared
            || self
                .types
                .registry
                .implements
                .get(concrete)
                .is_some_and(|interfaces| interfaces.contains(condition))
    }
}

/// Puts an object's members in the order of `keys`, where the first of equal keys counts
/// (members without one go last, as they were).
pub(super) fn sort<'k>(
    object: &mut IndexMap<Name, Value>,
    keys: impl Iterator<Item = &'k Name> + Clone,
) {
    let rank = |member: &Name| {
        keys.clone()
            .position(|key| key == member)
            .unwrap_or(usize::MAX)
    };
    // Most objects are in order already.
    if !object.keys().map(rank).is_sorted() {
        object.sort_by_cached_key(|member, _| rank(member));
    }
}
