//! A subscription's parsed document, kept as small as it is. The parser collects each list (a
//! selection set, the arguments, the variable definitions) into a `Vec` that starts with room
//! for four, so `subscription($id: ID) { graphApiTileChanged(clientId: $id) { id status } }`
//! holds room for eight selections, four arguments and four variable definitions: about 1.5 KiB
//! that every subscriber kept for as long as it stayed. A query's document lives only as long
//! as its request and is left as parsed.

use async_graphql::{
    Positioned,
    parser::types::{
        Directive, DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
    },
};

/// Whether the operation that runs (`name`, or the document's only one) is a subscription:
/// only those are compacted and run without DataLoaders, and the WebSocket counts them.
pub(crate) fn subscribes(document: &ExecutableDocument, name: Option<&str>) -> bool {
    let ty = match (&document.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| op.node.ty),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| op.node.ty)
        }
        (DocumentOperations::Multiple(_), None) => None,
    };
    ty == Some(OperationType::Subscription)
}

/// Gives every list of the document exactly the room it uses. The document's nesting is
/// bounded before this runs (`limits::check_document`), so the recursion is too.
pub(crate) fn compact(document: &mut ExecutableDocument) {
    match &mut document.operations {
        DocumentOperations::Single(op) => operation(&mut op.node),
        DocumentOperations::Multiple(ops) => {
            ops.shrink_to_fit();
            ops.values_mut().for_each(|op| operation(&mut op.node));
        }
    }
    document.fragments.shrink_to_fit();
    for fragment in document.fragments.values_mut() {
        directives(&mut fragment.node.directives);
        selection_set(&mut fragment.node.selection_set.node);
    }
}

fn operation(op: &mut async_graphql::parser::types::OperationDefinition) {
    op.variable_definitions.shrink_to_fit();
    for variable in &mut op.variable_definitions {
        directives(&mut variable.node.directives);
    }
    directives(&mut op.directives);
    selection_set(&mut op.selection_set.node);
}

fn selection_set(set: &mut SelectionSet) {
    set.items.shrink_to_fit();
    for item in &mut set.items {
        match &mut item.node {
            Selection::Field(field) => {
                let field = &mut field.node;
                field.arguments.shrink_to_fit();
                directives(&mut field.directives);
                selection_set(&mut field.selection_set.node);
            }
            Selection::FragmentSpread(spread) => directives(&mut spread.node.directives),
            Selection::InlineFragment(fragment) => {
                directives(&mut fragment.node.directives);
                selection_set(&mut fragment.node.selection_set.node);
            }
        }
    }
}

fn directives(list: &mut Vec<Positioned<Directive>>) {
    list.shrink_to_fit();
    for directive in list {
        directive.node.arguments.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    /// Every list of a compacted document, with its room and its length.
    fn lists(document: &ExecutableDocument) -> Vec<(usize, usize)> {
        fn set(selections: &SelectionSet, out: &mut Vec<(usize, usize)>) {
            out.push((selections.items.capacity(), selections.items.len()));
            for item in &selections.items {
                match &item.node {
                    Selection::Field(field) => {
                        let field = &field.node;
                        out.push((field.arguments.capacity(), field.arguments.len()));
                        out.push((field.directives.capacity(), field.directives.len()));
                        set(&field.selection_set.node, out);
                    }
                    Selection::FragmentSpread(spread) => {
                        let d = &spread.node.directives;
                        out.push((d.capacity(), d.len()));
                    }
                    Selection::InlineFragment(fragment) => {
                        let d = &fragment.node.directives;
                        out.push((d.capacity(), d.len()));
                        set(&fragment.node.selection_set.node, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (_, op) in document.operations.iter() {
            let v = &op.node.variable_definitions;
            out.push((v.capacity(), v.len()));
            set(&op.node.selection_set.node, &mut out);
        }
        for fragment in document.fragments.values() {
            set(&fragment.node.selection_set.node, &mut out);
        }
        out
    }

    const SUBSCRIPTION: &str = r#"
        subscription Tiles($id: ID, $skip: Boolean = false) {
            graphApiTileChanged(clientId: $id) @skip(if: $skip) {
                id status ...More
                ... on GraphApiTile @include(if: true) { version }
            }
        }
        fragment More on GraphApiTile { availableActions problem { code } }
    "#;

    #[test]
    fn a_compacted_document_is_the_same_document_with_no_spare_room() {
        let parsed = parse_query(SUBSCRIPTION).unwrap();
        assert!(subscribes(&parsed, None));
        assert!(
            lists(&parsed).iter().any(|(room, len)| room > len),
            "the parser left no spare room: this test no longer shows anything"
        );
        let mut compacted = parsed.clone();
        compact(&mut compacted);
        assert_eq!(format!("{compacted:?}"), format!("{parsed:?}"));
        for (room, len) in lists(&compacted) {
            assert_eq!(room, len, "a list kept spare room");
        }
    }

    #[test]
    fn only_a_subscription_that_runs_counts() {
        let query = |text: &str| parse_query(text).unwrap();
        assert!(!subscribes(&query("{ viewer { subject } }"), None));
        assert!(!subscribes(
            &query("mutation { verifyGraphApi(clientId: \"x\") { id } }"),
            None
        ));
        let both =
            query("query Q { viewer { subject } } subscription S { graphApiTileChanged { id } }");
        assert!(subscribes(&both, Some("S")));
        assert!(!subscribes(&both, Some("Q")));
        assert!(!subscribes(&both, None), "no operation runs");
    }
}
