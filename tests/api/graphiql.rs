//! GraphiQL without a CDN: every file its page loads comes from Consentry (the vendored npm
//! builds in `api/assets/vendor/`, byte for byte the pinned ones), and its policy names no
//! other origin.

use std::path::Path;

use consentry_tests::{Backend, spawn_app};
use sha2::{Digest, Sha256};

use crate::support::pages::{loaded_files, policy, resolve, served};

#[tokio::test]
async fn graphiql_loads_every_file_from_consentry_itself() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let page = app.url("/graphiql");
    let html = app
        .http
        .get(&page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let files = loaded_files(&html);
    assert_eq!(
        files.len(),
        7,
        "four scripts of GraphiQL's, its style sheet, and ours: {files:?}"
    );
    for file in &files {
        assert!(!file.contains("//"), "{file} names another origin");
        let url = resolve(&page, file);
        let response = served(&app, &url).await;
        if url.path().starts_with("/assets/vendor/") {
            assert_eq!(
                response.headers()["cache-control"],
                "public, max-age=31536000, immutable",
                "{url}"
            );
        }
    }
    assert!(
        !html.contains("https://") && !html.contains("unpkg"),
        "{html}"
    );
}

#[tokio::test]
async fn graphiqls_policy_allows_this_server_and_data_urls_only() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let response = app.http.get(app.url("/graphiql")).send().await.unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();

    for (directive, sources) in policy(&csp) {
        for source in &sources {
            let allowed = match source.as_str() {
                "'self'" | "'none'" => true,
                // Fonts and icons embedded in GraphiQL's style sheet.
                "data:" => ["img-src", "font-src"].contains(&directive.as_str()),
                // The <style> element GraphiQL's dialogs add at run time.
                "'unsafe-inline'" => directive == "style-src",
                _ => false,
            };
            assert!(allowed, "{directive} {source} in {csp}");
        }
    }
    let script_src = policy(&csp)
        .into_iter()
        .find(|(directive, _)| directive == "script-src")
        .unwrap()
        .1;
    assert_eq!(script_src, ["'self'"], "{csp}");
}

/// The vendored files are the npm registry's, as `api/assets/vendor/README.md` and
/// `scripts/vendor-assets.sh` pin them (the script checks the registry against the same pins),
/// and Consentry serves exactly those bytes.
#[tokio::test]
async fn graphiqls_vendored_files_are_the_pinned_npm_files() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let vendor = root.join("api/assets/vendor");
    let readme = std::fs::read_to_string(vendor.join("README.md")).unwrap();
    let script = std::fs::read_to_string(root.join("scripts/vendor-assets.sh")).unwrap();

    // README rows: | package@version | `path in the tarball` | `sha256` |
    let pins: Vec<(String, String, String)> = readme
        .lines()
        .filter(|line| line.starts_with("| ") && line.contains('@') && line.contains('`'))
        .map(|line| {
            let cells: Vec<&str> = line
                .split('|')
                .map(|c| c.trim().trim_matches('`'))
                .collect();
            (
                cells[1].to_owned(),
                cells[2].to_owned(),
                cells[3].to_owned(),
            )
        })
        .collect();
    assert_eq!(pins.len(), 9, "five files and four licences: {pins:?}");
    for (package, inner, sha256) in &pins {
        assert!(
            script.contains(&format!("\"{package}|{inner}|{sha256}\"")),
            "scripts/vendor-assets.sh pins {package} {inner} otherwise"
        );
        let (name, version) = package.rsplit_once('@').unwrap();
        let file = Path::new(inner).file_name().unwrap().to_str().unwrap();
        let relative = format!("{name}-{version}/{file}");
        let bytes = std::fs::read(vendor.join(&relative)).unwrap();
        let actual: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(&actual, sha256, "{relative}");
        if !file.starts_with("LICENSE") {
            let served = app
                .http
                .get(app.url(&format!("/assets/vendor/{relative}")))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert!(
                served == bytes,
                "/assets/vendor/{relative} serves other bytes"
            );
        }
    }
}
