//! The Client Dashboard as a browser first meets it: `/` sends it there, the page and every
//! script it loads or imports are served from the binary with their type and a strict policy,
//! nothing inline, and nothing outside the fixed list of files. (What it does in a browser is
//! for the browser tests.)

use std::collections::BTreeSet;

use consentry_tests::{Backend, spawn_app};
use reqwest::StatusCode;

use crate::support::{
    documents::{Kind, QUERIES_JS, documents},
    flows::numbered_clients,
    pages::{attributes, imported_modules, loaded_files, no_redirects, resolve, served},
};

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's ES modules, by name under `/dashboard/`.
const MODULES: [&str; 9] = [
    "app", "api", "dom", "clients", "tile", "consents", "audit", "queries", "oidc",
];

async fn text_of(app: &consentry_tests::TestApp, path: &str) -> String {
    app.http
        .get(app.url(path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Whether GraphQL `text` names `field` (as a whole word).
fn names(text: &str, field: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|word| word == field)
}

#[tokio::test]
async fn root_redirects_to_the_dashboard() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let response = no_redirects().get(app.url("/")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap();
    assert_eq!(
        resolve(&app.url("/"), location).as_str(),
        app.url("/dashboard")
    );
}

#[tokio::test]
async fn the_dashboard_page_is_served_with_its_strict_policy() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let response = app.http.get(app.url("/dashboard")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["content-security-policy"], POLICY);
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let html = response.text().await.unwrap();
    assert!(
        !html.contains("consentry-token") && !html.contains("<!--token-->"),
        "no token outside the demo"
    );
}

/// Every file: the page's scripts and style sheet, and every module those scripts import, in
/// turn.
#[tokio::test]
async fn every_dashboard_file_is_served_with_its_type_and_policy() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let page = app.url("/dashboard");
    let html = app
        .http
        .get(&page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let mut pending: Vec<_> = loaded_files(&html)
        .iter()
        .map(|f| resolve(&page, f))
        .collect();
    let mut seen = BTreeSet::new();
    while let Some(url) = pending.pop() {
        if !seen.insert(url.clone()) {
            continue;
        }
        let response = served(&app, &url).await;
        let headers = response.headers().clone();
        if url.path().starts_with("/assets/vendor/") {
            assert_eq!(
                headers["cache-control"], "public, max-age=31536000, immutable",
                "{url}"
            );
            continue;
        }
        assert!(url.path().starts_with("/dashboard/"), "{url}");
        assert_eq!(headers["content-security-policy"], POLICY, "{url}");
        assert_eq!(headers["cache-control"], "no-cache", "{url}");
        let text = response.text().await.unwrap();
        pending.extend(imported_modules(&text).iter().map(|m| url.join(m).unwrap()));
    }
    let paths: BTreeSet<_> = seen.iter().map(|u| u.path().to_owned()).collect();
    for module in MODULES {
        assert!(
            paths.contains(&format!("/dashboard/{module}.js")),
            "{module}.js is loaded: {paths:?}"
        );
    }
    assert!(paths.contains("/assets/vendor/graphql-ws-5.16.2/graphql-ws.min.js"));
}

/// The policy allows no inline script and no inline style, so the page and its scripts
/// have none: every `<script>` has a `src`, no element has a `style` attribute, and the
/// scripts build elements without `innerHTML` or style attributes.
#[tokio::test]
async fn the_dashboard_has_no_inline_script_and_no_style_attribute() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let page = app.url("/dashboard");
    let html = app
        .http
        .get(&page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let scripts = html.matches("<script").count();
    assert!(scripts >= 2, "{html}");
    assert_eq!(attributes(&html, "script", "src").len(), scripts, "{html}");
    assert!(
        !html.contains("style=") && !html.contains("<style"),
        "{html}"
    );
    let handlers: Vec<_> = html
        .match_indices(" on")
        .map(|(at, _)| &html[at + 1..])
        .filter(|rest| {
            let name = rest.split('=').next().unwrap_or_default();
            rest.contains('=') && name.len() > 2 && name.chars().all(|c| c.is_ascii_lowercase())
        })
        .map(|rest| &rest[..rest.find('=').unwrap()])
        .collect();
    assert!(handlers.is_empty(), "inline handlers: {handlers:?}");
    for module in MODULES {
        let script = app
            .http
            .get(app.url(&format!("/dashboard/{module}.js")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            ".style",
            "'style'",
            "eval(",
        ] {
            assert!(!script.contains(forbidden), "{module}.js uses {forbidden}");
        }
    }
}

#[tokio::test]
async fn unknown_dashboard_and_asset_paths_are_not_found() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    for path in [
        "/dashboard/nothing.js",
        "/dashboard/index.html",
        "/dashboard/..%2f..%2fCargo.toml",
        "/dashboard/%2e%2e%2fapi%2fsrc%2fmain.rs",
        "/assets/vendor/graphiql-3.8.3/graphiql.min.js.map",
        "/assets/vendor/react-18.3.1/LICENSE",
        "/assets/vendor/react-18.3.1/../../../Cargo.toml",
        "/assets/vendor/..%2f..%2fsrc%2fmain.rs",
        "/assets/vendor/README.md",
        "/assets/dashboard/app.js",
    ] {
        let response = no_redirects().get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

/// The dashboard's own files are asked for again every time (cheaply: their ETag answers
/// 304), so a new server version reaches the browser at once.
#[tokio::test]
async fn dashboard_files_are_revalidated_with_their_etag() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let url = app.url("/dashboard/app.js");
    let first = app.http.get(&url).send().await.unwrap();
    let etag = first.headers()["etag"].clone();

    let again = app
        .http
        .get(&url)
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();

    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"], etag);
    assert_eq!(again.headers()["cache-control"], "no-cache");
    assert!(again.bytes().await.unwrap().is_empty());
}

/// The module that holds every GraphQL document is one of the page's scripts like the others:
/// JavaScript, under the page's policy, imported by the modules that send them.
#[tokio::test]
async fn the_queries_module_is_served_as_javascript_under_the_policy() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let url = resolve(&app.url("/dashboard"), "dashboard/queries.js");
    assert_eq!(url.path(), QUERIES_JS);

    let response = served(&app, &url).await;

    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(headers["content-security-policy"], POLICY);
    assert_eq!(headers["cache-control"], "no-cache");
    let script = response.text().await.unwrap();
    assert!(script.contains("export const CLIENTS_PAGE"), "{script}");
    for module in ["app", "clients", "tile", "consents", "audit"] {
        let text = text_of(&app, &format!("/dashboard/{module}.js")).await;
        assert!(
            imported_modules(&text).contains(&"./queries.js".to_owned()),
            "{module}.js imports its documents from queries.js"
        );
    }
}

/// One place for documents: no other module writes GraphQL of its own.
#[tokio::test]
async fn no_dashboard_module_but_queries_js_holds_a_graphql_document() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    for module in MODULES.iter().filter(|m| **m != "queries") {
        let script = text_of(&app, &format!("/dashboard/{module}.js")).await;
        for start in [
            "`query ",
            "`mutation ",
            "`subscription ",
            "`fragment ",
            "'query ",
            "'subscription ",
        ] {
            assert!(
                !script.contains(start),
                "{module}.js writes a document ({start}…)"
            );
        }
    }
}

/// What the API added for the dashboard is asked for, and used: the counts per status, the
/// tile's words and its pending link's expiry, and the client of every event.
#[tokio::test]
async fn the_dashboard_asks_for_status_counts_headline_link_expiry_and_client_ids() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let documents = documents(&text_of(&app, QUERIES_JS).await).unwrap();
    let document = |constant: &str| {
        &documents
            .iter()
            .find(|d| d.constant == constant)
            .unwrap_or_else(|| panic!("no {constant} in queries.js"))
            .text
    };

    let counts = document("CLIENT_COUNTS");
    for field in ["statusCounts", "status", "count"] {
        assert!(
            names(counts, field),
            "CLIENT_COUNTS lacks {field}: {counts}"
        );
    }
    for constant in ["CLIENTS_PAGE", "AUTHORISE", "VERIFY", "TILE_CHANGED"] {
        for field in [
            "headline",
            "consentLinkExpiresAt",
            "clientId",
            "problem",
            "version",
        ] {
            assert!(names(document(constant), field), "{constant} lacks {field}");
        }
    }
    let subscriptions: Vec<_> = documents
        .iter()
        .filter(|d| d.kind == Kind::Subscription)
        .collect();
    assert_eq!(subscriptions.len(), 3, "{subscriptions:#?}");
    for subscription in subscriptions {
        assert!(
            names(&subscription.text, "clientId"),
            "{} does not say which client an event is for",
            subscription.constant
        );
    }

    let clients = text_of(&app, "/dashboard/clients.js").await;
    for used in [
        "statusCounts",
        "tile.clientId",
        "request.clientId",
        "consent.clientId",
    ] {
        assert!(clients.contains(used), "clients.js does not use {used}");
    }
    let tile = text_of(&app, "/dashboard/tile.js").await;
    for used in [
        "tile.headline",
        "tile.consentLinkExpiresAt",
        "link expires at",
    ] {
        assert!(tile.contains(used), "tile.js does not use {used}");
    }
}

/// 1,000 clients stay usable: the dashboard's page asks for its page size (25, from
/// `clients.js`) and gets that many, with as many SQL statements as a page of one; the next
/// page follows from the cursor; and the counts come back in one answer that holds no client.
#[tokio::test]
async fn the_dashboard_reads_a_thousand_clients_a_page_at_a_time() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    numbered_clients(&app, "msp-a", 1000).await;
    let admin = app.with_token(app.token("msp-a", &["admin"]));
    let documents = documents(&text_of(&app, QUERIES_JS).await).unwrap();
    let document = |constant: &str| {
        documents
            .iter()
            .find(|d| d.constant == constant)
            .unwrap()
            .text
            .clone()
    };
    let clients_js = text_of(&app, "/dashboard/clients.js").await;
    let page_size: u64 = clients_js
        .split("const PAGE_SIZE = ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(page_size <= 25, "clients.js asks for {page_size} a page");

    let statements =
        "consentry_graphql_operation_db_statements_sum{operation=\"Clients\",kind=\"query\"}";
    admin
        .run(
            &document("CLIENTS_PAGE"),
            serde_json::json!({ "first": 1, "filter": {} }),
        )
        .await
        .data();
    let one_client = app.metric(statements).await.unwrap();
    let first = admin
        .run(
            &document("CLIENTS_PAGE"),
            serde_json::json!({ "first": page_size, "filter": {} }),
        )
        .await;
    let a_page = app.metric(statements).await.unwrap() - one_client;
    let page = &first.data()["clients"];
    let second = admin
        .run(
            &document("CLIENTS_PAGE"),
            serde_json::json!({ "first": page_size, "after": page["pageInfo"]["endCursor"], "filter": {} }),
        )
        .await;
    let counts = admin
        .run(
            &document("CLIENT_COUNTS"),
            serde_json::json!({ "filter": {} }),
        )
        .await;

    // Not N+1 (that would add 24 statements a field): every per-client field the page
    // selects, the tiles' `consentLinkExpiresAt` among them, is loaded once for the page.
    assert_eq!(
        a_page, one_client,
        "a page of {page_size} runs {a_page} SQL statements, a page of one {one_client}"
    );
    assert_eq!(page["totalCount"], 1000);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(page["nodes"].as_array().unwrap().len() as u64, page_size);
    let next = &second.data()["clients"]["nodes"];
    assert_eq!(next.as_array().unwrap().len() as u64, page_size);
    assert_ne!(next[0]["id"], page["nodes"][0]["id"]);
    let counts = &counts.data()["clients"];
    assert_eq!(counts["totalCount"], 1000);
    assert!(counts.get("nodes").is_none() && counts.get("edges").is_none());
    let by_status: Vec<(String, u64)> = counts["statusCounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_owned(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_status.len(), 6, "every status, zeros too: {by_status:?}");
    assert!(by_status.contains(&("NOT_AUTHORISED".to_owned(), 1000)));
}
