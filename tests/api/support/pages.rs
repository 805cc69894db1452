//! Reading the pages Consentry serves to browsers (the dashboard, GraphiQL) as a browser
//! would: the files a page loads, the modules a script imports, and its Content Security
//! Policy.

use consentry_tests::TestApp;
use reqwest::{StatusCode, redirect::Policy};
use url::Url;

/// A client that, like a test of redirects needs, does not follow them.
pub(crate) fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The value of `attribute` in each `<tag …>` of `html`.
pub(crate) fn attributes(html: &str, tag: &str, attribute: &str) -> Vec<String> {
    html.split(&format!("<{tag}"))
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
            let at = tag.find(&format!(" {attribute}=\""))? + attribute.len() + 3;
            Some(tag[at..at + tag[at..].find('"')?].to_owned())
        })
        .collect()
}

/// Every file `html` loads from a server: scripts' `src` and links' `href` (style sheets,
/// icons), less the `data:` URLs that need no request.
pub(crate) fn loaded_files(html: &str) -> Vec<String> {
    let mut files = attributes(html, "script", "src");
    files.extend(attributes(html, "link", "href"));
    files.retain(|file| !file.starts_with("data:"));
    files
}

/// The modules an ES module imports by relative path (`from './api.js'`).
pub(crate) fn imported_modules(script: &str) -> Vec<String> {
    script
        .split(" from '")
        .skip(1)
        .filter_map(|rest| Some(rest[..rest.find('\'')?].to_owned()))
        .filter(|path| path.starts_with("./") || path.starts_with("../"))
        .collect()
}

/// `reference` as the browser resolves it against `page` (a URL of `app`).
pub(crate) fn resolve(page: &str, reference: &str) -> Url {
    Url::parse(page).unwrap().join(reference).unwrap()
}

/// The directives of a Content Security Policy, each with its sources.
pub(crate) fn policy(csp: &str) -> Vec<(String, Vec<String>)> {
    csp.split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|directive| {
            let mut words = directive.split_whitespace().map(str::to_owned);
            (words.next().unwrap(), words.collect())
        })
        .collect()
}

/// The Content-Type a file's name calls for.
pub(crate) fn expected_type(path: &str) -> &'static str {
    if path.ends_with(".js") {
        "text/javascript; charset=utf-8"
    } else if path.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        panic!("no expected type for {path}")
    }
}

/// GETs `url` from `app` and checks it answers 200 with the type its name calls for; the
/// response for more checks.
pub(crate) async fn served(app: &TestApp, url: &Url) -> reqwest::Response {
    let response = app.http.get(url.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    assert_eq!(
        response.headers()["content-type"],
        expected_type(url.path()),
        "{url}"
    );
    assert_eq!(
        response.headers()["x-content-type-options"],
        "nosniff",
        "{url}"
    );
    response
}
