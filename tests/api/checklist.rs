//! The security checklist (`docs/security-checklist.md`, cases 1–101)
//! is covered case by case, by tests that say so on themselves. A test declares the cases
//! it covers in its name (`checklist_12_14_…`) or in a doc line on the function
//! (`/// Checklist 21, 38: …`); nothing else counts — not a module comment, not a comment in
//! a body. This test parses every test (with `syn`) and fails when:
//! - a case has no test and is not marked not applicable here, with the reason;
//! - a declaration sits on a function that is not a test;
//! - a test that starts a server or opens a database does not run on both backends
//!   (`#[both_backends]`); tests of pure code need no backend;
//! - a case marked not applicable is also declared by a test.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use quote::ToTokens;
use syn::visit::Visit;

/// The checklist's cases.
const CASES: std::ops::RangeInclusive<u32> = 1..=101;

/// Cases that do not apply to Consentry, and why.
const NOT_APPLICABLE: &[(u32, &str)] = &[
    (
        40,
        "Consentry never calls a userinfo endpoint: who signed in comes from the validated \
         id_token (and Graph /me, which is not OpenID userinfo)",
    ),
    (
        41,
        "Consentry authenticates to Microsoft's token endpoint with client_secret in the body \
         (client_secret_post, as Microsoft documents it) and never uses userinfo; the \
         client_secret_basic and userinfo-claims variants are never sent",
    ),
    (
        42,
        "Consentry reads no OpenID discovery document: Microsoft's endpoints and key sets are \
         fixed paths under CONSENTRY_MS_AUTHORITY_URL, and every issuer is checked against \
         its template for the token's tenant (checklist 23)",
    ),
    (
        45,
        "only response_type=code is ever sent (checklist 18), so the hash claims and nonce \
         rules of implicit and hybrid flows never apply",
    ),
];

/// The case numbers cited after each "checklist" in `text`: `checklist_3_83_name`,
/// `Checklist 1–4, 12, 83`, `checklist 66-73`.
fn cited(text: &str) -> BTreeSet<u32> {
    let lower = text.to_lowercase();
    let mut found = BTreeSet::new();
    for (at, _) in lower.match_indices("checklist") {
        let mut rest = &lower[at + "checklist".len()..];
        if let Some(after) = rest.strip_prefix([' ', '_']) {
            rest = after;
        } else {
            continue;
        }
        loop {
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            if digits == 0 {
                break;
            }
            let from: u32 = rest[..digits].parse().unwrap();
            rest = &rest[digits..];
            let mut to = from;
            if let Some(after) = rest.strip_prefix(['–', '-']) {
                let digits = after.chars().take_while(char::is_ascii_digit).count();
                if digits > 0 {
                    to = after[..digits].parse().unwrap();
                    rest = &after[digits..];
                }
            }
            found.extend(from..=to);
            match [", ", ",", "_", " and ", " "]
                .iter()
                .find_map(|separator| rest.strip_prefix(separator))
            {
                Some(after) if after.starts_with(|c: char| c.is_ascii_digit()) => rest = after,
                _ => break,
            }
        }
    }
    found
}

/// One function that declares checklist cases.
#[derive(Debug)]
struct Declaration {
    /// `file::function`.
    test: String,
    cases: BTreeSet<u32>,
    /// Why the declaration does not count, if it does not.
    invalid: Option<&'static str>,
}

/// The functions of one file, and which of them run on both backends.
#[derive(Default)]
struct FileTests {
    functions: Vec<syn::ItemFn>,
}

impl<'ast> Visit<'ast> for FileTests {
    fn visit_item_fn(&mut self, function: &'ast syn::ItemFn) {
        self.functions.push(function.clone());
        syn::visit::visit_item_fn(self, function);
    }
}

/// Whether a function is declared `#[both_backends]`: a test run once per backend.
fn on_both_backends(function: &syn::ItemFn) -> bool {
    function.attrs.iter().any(|attr| {
        attr.path()
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "both_backends")
    })
}

fn is_test(function: &syn::ItemFn) -> bool {
    function.attrs.iter().any(|attr| {
        let path = attr.path().to_token_stream().to_string().replace(' ', "");
        path == "test" || path == "tokio::test"
    })
}

/// The doc lines on a function.
fn doc(function: &syn::ItemFn) -> String {
    function
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .map(|attr| attr.to_token_stream().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a function touches a backend: starts a server, opens a database or names one.
fn touches_a_backend(function: &syn::ItemFn) -> bool {
    let code = function.to_token_stream().to_string();
    [
        "Backend",
        "spawn_app",
        "TestDatabase",
        "ServerProcess",
        "world (",
    ]
    .iter()
    .any(|word| code.contains(word))
}

/// The declarations in one file. In the server's own sources only unit tests count: its
/// doc comments cite the checklist to explain the code, which covers nothing.
fn declarations(path: &Path, text: &str) -> Vec<Declaration> {
    let server_source = path.components().any(|c| c.as_os_str() == "src");
    let file = syn::parse_file(text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut tests = FileTests::default();
    tests.visit_file(&file);
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    tests
        .functions
        .iter()
        .filter(|function| !server_source || is_test(function))
        .filter_map(|function| {
            let name = function.sig.ident.to_string();
            let mut cases = cited(&name);
            cases.extend(cited(&doc(function)));
            if cases.is_empty() {
                return None;
            }
            let both = on_both_backends(function);
            let invalid = if both {
                None
            } else if !is_test(function) {
                Some("declares checklist cases but is not a test run on both backends")
            } else if touches_a_backend(function) {
                Some("starts a server or opens a database, but runs on one backend only")
            } else {
                None
            };
            Some(Declaration {
                test: format!("{stem}::{name}"),
                cases,
                invalid,
            })
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every declaration in the integration tests and the server's and simulator's unit tests.
fn all_declarations() -> Vec<Declaration> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("api"), &mut files);
    rust_files(&root.join("../api/src"), &mut files);
    rust_files(&root.join("../simulator/src"), &mut files);
    files
        .iter()
        .filter(|path| !path.ends_with("checklist.rs"))
        .flat_map(|path| declarations(path, &std::fs::read_to_string(path).unwrap()))
        .collect()
}

#[test]
fn citations_are_read_in_every_written_form() {
    assert_eq!(
        cited("fn checklist_3_83_replayed_callback()"),
        BTreeSet::from([3, 83])
    );
    assert_eq!(
        cited("// Checklist 1–4, 12, 83 and 91: …"),
        (1..=4).chain([12, 83, 91]).collect()
    );
    assert_eq!(cited("checklist 66-68."), BTreeSet::from([66, 67, 68]));
    assert_eq!(cited("checklist §D"), BTreeSet::new());
}

#[test]
fn only_declarations_on_tests_that_run_on_both_backends_count() {
    let source = r#"
        //! Module comment: checklist 1 does not count.

        /// Checklist 2: a doc line on a test run on both backends.
        #[both_backends]
        async fn covers_two(backend: Backend) {}

        #[consentry_tests::both_backends]
        async fn checklist_3_in_the_name(backend: Backend) {
            // Checklist 4 in a body does not count.
        }

        /// Checklist 5, on a test that forgot its attribute.
        async fn forgotten(backend: Backend) {}

        /// Checklist 6, on a helper.
        fn helper() {}

        /// Checklist 7: pure code needs no backend.
        #[test]
        fn pure() {}

        /// Checklist 8, one backend only.
        #[tokio::test]
        async fn sqlite_only() { spawn_app(Backend::Sqlite).await; }

        mod nested {
            /// Checklist 9.
            #[both_backends]
            async fn in_a_module(app: TestApp) {}
        }
    "#;
    let found = declarations(Path::new("example.rs"), source);
    let valid: BTreeSet<u32> = found
        .iter()
        .filter(|d| d.invalid.is_none())
        .flat_map(|d| d.cases.iter().copied())
        .collect();
    assert_eq!(valid, BTreeSet::from([2, 3, 7, 9]));
    let invalid: BTreeMap<&str, &str> = found
        .iter()
        .filter_map(|d| d.invalid.map(|why| (d.test.as_str(), why)))
        .collect();
    assert_eq!(
        invalid.keys().copied().collect::<Vec<_>>(),
        [
            "example::forgotten",
            "example::helper",
            "example::sqlite_only"
        ]
    );
}

#[test]
fn every_case_of_the_checklist_is_covered_or_not_applicable() {
    let declarations = all_declarations();
    let invalid: Vec<String> = declarations
        .iter()
        .filter_map(|d| d.invalid.map(|why| format!("{}: {why}", d.test)))
        .collect();
    assert!(
        invalid.is_empty(),
        "declarations that do not count:\n{invalid:#?}"
    );

    let mut covered: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for declaration in &declarations {
        for case in &declaration.cases {
            covered.entry(*case).or_default().push(&declaration.test);
        }
    }
    let not_applicable: BTreeMap<u32, &str> = NOT_APPLICABLE.iter().copied().collect();
    for (case, why) in &not_applicable {
        assert!(why.len() > 20, "case {case} needs its reason");
        assert!(
            !covered.contains_key(case),
            "case {case} is marked not applicable, yet {:?} declare it",
            covered[case]
        );
    }
    let missing: Vec<u32> = CASES
        .filter(|case| !covered.contains_key(case) && !not_applicable.contains_key(case))
        .collect();
    assert!(
        missing.is_empty(),
        "checklist cases without a test that declares them: {missing:?}"
    );
    let unknown: Vec<u32> = covered
        .keys()
        .copied()
        .filter(|case| !CASES.contains(case))
        .collect();
    assert!(
        unknown.is_empty(),
        "cases the checklist does not have: {unknown:?}"
    );
}

/// The repository's own documents, under `docs/`.
fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// The case numbers of the checklist document: its lines `N. …`.
fn checklist_cases() -> BTreeSet<u32> {
    let text = std::fs::read_to_string(docs().join("security-checklist.md")).unwrap();
    text.lines()
        .filter_map(|line| line.split_once(". ")?.0.parse().ok())
        .collect()
}

/// The section numbers of the design document: its headings `## N. …`.
/// The numbered sections (`## N. …`) of a document under `docs/`.
fn sections_of(doc: &str) -> BTreeSet<u32> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join(doc)).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.strip_prefix("## ")?.split_once(". ")?.0.parse().ok())
        .collect()
}

/// Every `docs/…` path named in `text`, and every section cited as `docs/….md §N`, with
/// its document.
fn doc_references(text: &str) -> (BTreeSet<String>, BTreeSet<(String, u32)>) {
    let mut paths = BTreeSet::new();
    let mut sections = BTreeSet::new();
    for (at, _) in text.match_indices("docs/") {
        // Part of a longer path or an address (`…/docs/…`) is not the repository's.
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
        {
            continue;
        }
        let path: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'))
            .collect();
        let path = path.trim_end_matches('.').to_owned();
        if let Some(after) = text[at + path.len()..].strip_prefix(" §") {
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(section) = digits.parse() {
                sections.insert((path.clone(), section));
            }
        }
        paths.insert(path);
    }
    (paths, sections)
}

/// Every Rust file of the workspace and the README, as (path, text).
fn cited_sources() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in [
        "api/src",
        "simulator/src",
        "tests",
        "bench/src",
        "bench/tests",
        "fuzz/fuzz_targets",
        "entity/src",
        "migration/src",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    files.push(root.join("README.md"));
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect()
}

#[test]
fn the_checklist_document_has_exactly_the_cases_this_test_checks() {
    assert_eq!(checklist_cases(), CASES.collect::<BTreeSet<u32>>());
}

/// Issue 18: the repository contains what it cites. Every `docs/…` path named in the code
/// or the README exists, every section cited exists in its document, and every checklist case cited
/// anywhere — in a test's name, a doc comment or a plain comment — is one of the document's.
#[test]
fn every_reference_to_the_projects_documents_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cases = checklist_cases();
    let mut broken = Vec::new();
    let mut citations = 0;
    for (path, text) in cited_sources() {
        let (paths, cited_sections) = doc_references(&text);
        for doc in paths.iter().filter(|doc| !root.join(doc).exists()) {
            broken.push(format!("{}: {doc} does not exist", path.display()));
        }
        for (doc, section) in cited_sections {
            if !sections_of(&doc).contains(&section) {
                broken.push(format!("{}: {doc} has no §{section}", path.display()));
            }
        }
        let cited_cases = cited(&text);
        citations += cited_cases.len();
        for case in cited_cases.difference(&cases) {
            broken.push(format!(
                "{}: the checklist has no case {case}",
                path.display()
            ));
        }
    }
    assert!(citations > 100, "only {citations} checklist citations read");
    assert!(
        broken.is_empty(),
        "references that do not resolve:\n{broken:#?}"
    );
}

#[test]
fn references_to_the_documents_are_read_in_every_written_form() {
    let (paths, sections) = doc_references(
        "(docs/design.md §2, \"Callers' tokens\"); see docs/security-checklist.md. \
         and [the reference](docs/microsoft-identity.md), docs/microsoft-identity.md §8",
    );
    assert_eq!(
        paths,
        BTreeSet::from(
            [
                "docs/design.md",
                "docs/security-checklist.md",
                "docs/microsoft-identity.md"
            ]
            .map(String::from)
        )
    );
    assert_eq!(
        sections,
        BTreeSet::from([
            ("docs/design.md".to_owned(), 2),
            ("docs/microsoft-identity.md".to_owned(), 8)
        ])
    );
    assert!(sections_of("docs/design.md").contains(&3));
    assert!(!sections_of("docs/design.md").contains(&8));
    assert!(sections_of("docs/microsoft-identity.md").contains(&8));
}
