//! The server's modules depend on each other without a cycle (issue 18, item 4): this test
//! reads `api/src` (with `syn`), draws an edge from a module to every module whose items it
//! names (`use crate::…`, `use super::…`, a path such as `crate::domain::tile::write` in
//! code, a parent's `pub use child::…`), and fails on every cycle, naming each edge of it
//! with the file and the path that makes it. A module's own declaration of its children (`mod
//! child;`) is ownership, not a dependency; unit tests (`#[cfg(test)]`) do not count.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use syn::visit::Visit;

/// A module, as its path from the crate root (`domain::flows::callback`; the root is "").
type Module = String;

/// Why one module depends on another: the first place it names it.
type Edges = BTreeMap<(Module, Module), String>;

/// Every module of the crate rooted at `root` (`lib.rs`), with the file that holds it.
fn modules(root: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    collect(&root.join("lib.rs"), String::new(), &mut found);
    found
}

fn collect(file: &Path, module: Module, found: &mut BTreeMap<Module, PathBuf>) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let syntax = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    found.insert(module.clone(), file.to_owned());
    // Where this module's children live: beside `lib.rs`/`mod.rs`, else in a folder named
    // after the module.
    let folder = if file.ends_with("lib.rs") || file.ends_with("mod.rs") {
        file.parent().unwrap().to_owned()
    } else {
        file.with_extension("")
    };
    for item in &syntax.items {
        let syn::Item::Mod(child) = item else {
            continue;
        };
        if is_test_only(&child.attrs) || child.content.is_some() {
            // Inline modules are unit tests here (checked above) or part of their file.
            continue;
        }
        let name = child.ident.to_string();
        let path = [
            folder.join(format!("{name}.rs")),
            folder.join(&name).join("mod.rs"),
        ]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("module {name} of {}: no file", file.display()));
        collect(&path, join(&module, &name), found);
    }
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .parse_args::<syn::Meta>()
                .is_ok_and(|meta| meta.path().is_ident("test"))
    })
}

/// The module a path names, seen from `from`: the longest known module it starts with, or
/// `None` for a path outside the crate (`std::…`, `entity::…`, a local name).
fn target(from: &str, segments: &[String], known: &BTreeSet<Module>) -> Option<Module> {
    let here = || -> Vec<String> {
        from.split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut base: Vec<String> = match segments.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("super") | Some("self") => here(),
        // `child::item`: a path relative to this module (one segment alone is a local name).
        Some(first) if segments.len() > 1 && known.contains(&join(from, first)) => here(),
        _ => return None,
    };
    let mut rest = segments;
    if rest.first().map(String::as_str) == Some("crate") {
        rest = &rest[1..];
    } else {
        while let Some(first) = rest.first() {
            match first.as_str() {
                "super" => {
                    base.pop();
                }
                "self" => {}
                _ => break,
            }
            rest = &rest[1..];
        }
    }
    let mut module = base.join("::");
    for segment in rest {
        let deeper = join(&module, segment);
        if known.contains(&deeper) {
            module = deeper;
        } else {
            break;
        }
    }
    Some(module)
}

fn join(module: &str, child: &str) -> Module {
    if module.is_empty() {
        child.to_owned()
    } else {
        format!("{module}::{child}")
    }
}

/// Collects the module paths one file names.
struct Uses<'a> {
    module: &'a str,
    file: &'a Path,
    known: &'a BTreeSet<Module>,
    edges: &'a mut Edges,
}

impl Uses<'_> {
    fn named(&mut self, segments: &[String]) {
        let Some(to) = target(self.module, segments, self.known) else {
            return;
        };
        if to == self.module {
            return;
        }
        let at = format!("{}: {}", self.file.display(), segments.join("::"));
        self.edges.entry((self.module.to_owned(), to)).or_insert(at);
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                prefix.push(name.ident.to_string());
                self.named(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Rename(rename) => {
                prefix.push(rename.ident.to_string());
                self.named(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Glob(_) => {
                prefix.push("*".to_owned());
                self.named(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Uses<'_> {
    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        // A child in its own file is read as its own module; unit tests do not count.
        if module.content.is_some() && !is_test_only(&module.attrs) {
            syn::visit::visit_item_mod(self, module);
        }
    }

    fn visit_item_fn(&mut self, function: &'ast syn::ItemFn) {
        if !is_test_only(&function.attrs) {
            syn::visit::visit_item_fn(self, function);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if !is_test_only(&item.attrs) {
            self.use_tree(&mut Vec::new(), &item.tree);
        }
    }

    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {
        // `pub(crate)`, `pub(super)`: a visibility, not a dependency.
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.named(&segments);
        syn::visit::visit_path(self, path);
    }
}

/// Every dependency between the modules of the crate rooted at `root`.
fn dependencies(root: &Path) -> Edges {
    let modules = modules(root);
    let known: BTreeSet<Module> = modules.keys().cloned().collect();
    let mut edges = Edges::new();
    for (module, file) in &modules {
        let syntax = syn::parse_file(&std::fs::read_to_string(file).unwrap()).unwrap();
        Uses {
            module,
            file: file.strip_prefix(root.parent().unwrap()).unwrap_or(file),
            known: &known,
            edges: &mut edges,
        }
        .visit_file(&syntax);
    }
    edges
}

/// The strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(edges: &Edges) -> Vec<Vec<Module>> {
    struct Tarjan<'a> {
        next: BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<Module>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, node: &'a str) {
            let at = self.index.len();
            self.index.insert(node, at);
            self.low.insert(node, at);
            self.stack.push(node);
            self.on_stack.insert(node);
            for to in self.next.get(node).cloned().unwrap_or_default() {
                if !self.index.contains_key(to) {
                    self.visit(to);
                    let low = self.low[node].min(self.low[to]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(to) {
                    let low = self.low[node].min(self.index[to]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.push(top.to_owned());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        next: BTreeMap::new(),
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for (from, to) in edges.keys() {
        tarjan.next.entry(from).or_default().push(to);
        tarjan.next.entry(to).or_default();
    }
    let nodes: Vec<&str> = tarjan.next.keys().copied().collect();
    for node in nodes {
        if !tarjan.index.contains_key(node) {
            tarjan.visit(node);
        }
    }
    tarjan.found.sort();
    tarjan.found
}

/// A cycle as a reader can fix it: each edge inside it, with where it is made.
fn explain(component: &[Module], edges: &Edges) -> String {
    let inside: BTreeSet<&Module> = component.iter().collect();
    let mut lines = vec![format!("cycle among {component:?}:")];
    for ((from, to), at) in edges {
        if inside.contains(from) && inside.contains(to) {
            lines.push(format!("  {from} -> {to}   ({at})"));
        }
    }
    lines.join("\n")
}

/// `edges` with the modules under `unit` as one module: their edges among themselves drop
/// out, and their edges to and from others become the unit's.
fn as_one(edges: Edges, unit: &str) -> Edges {
    let fold = |module: Module| {
        if module.starts_with(&format!("{unit}::")) {
            unit.to_owned()
        } else {
            module
        }
    };
    let mut folded = Edges::new();
    for ((from, to), at) in edges {
        let (from, to) = (fold(from), fold(to));
        if from != to {
            folded.entry((from, to)).or_insert(at);
        }
    }
    folded
}

#[test]
fn the_servers_modules_depend_on_each_other_without_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src");
    // The GraphQL object types are one unit, as the schema is one graph: a `Client` has a
    // `graphApiTile`, and a tile names its `client` (what a subscriber needs to place an
    // event), so their files name each other. Everything else stays free of cycles, the
    // object types' edges to the rest of the server included.
    let edges = as_one(dependencies(&root), "graphql::types");
    assert!(
        edges.len() > 100,
        "the reader found {} dependencies: it no longer reads the sources",
        edges.len()
    );
    let found: Vec<String> = cycles(&edges)
        .iter()
        .map(|component| explain(component, &edges))
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n\n"));
}

#[test]
fn the_cycle_check_finds_a_cycle_through_a_parent_and_its_child() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\n").unwrap();
    // a's child uses its parent, and the parent re-exports the child: a cycle.
    std::fs::write(
        src.join("a/mod.rs"),
        "mod child;\npub use child::X;\npub fn f() {}\n",
    )
    .unwrap();
    std::fs::write(src.join("a/child.rs"), "use super::f;\npub struct X;\n").unwrap();
    // b -> c -> b through a path in code, and through a `use`.
    std::fs::write(src.join("b.rs"), "pub fn g() { crate::c::h(); }\n").unwrap();
    std::fs::write(src.join("c.rs"), "use crate::b::g;\npub fn h() {}\n").unwrap();
    let edges = dependencies(&src);
    let found = cycles(&edges);
    assert_eq!(
        found,
        vec![
            vec!["a".to_owned(), "a::child".to_owned()],
            vec!["b".to_owned(), "c".to_owned()],
        ]
    );
    assert!(explain(&found[1], &edges).contains("b -> c   (src/b.rs: crate::c::h)"));
    // Folded into one unit, a parent and its child are no cycle; b and c still are.
    assert_eq!(
        cycles(&as_one(edges, "a")),
        vec![vec!["b".to_owned(), "c".to_owned()]]
    );
}
