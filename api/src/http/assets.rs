//! Browser files embedded in the binary and served from a fixed list: the vendored GraphiQL,
//! React and graphql-ws builds (`api/assets/vendor/`, see its README) under
//! `/assets/vendor/…`, and the dashboard's own files under `/dashboard/…`. A path that is not
//! on the list is a 404: nothing is ever read from the file system at run time.

use std::sync::LazyLock;

use axum::{
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

/// One embedded file.
pub(crate) struct Asset {
    /// Its name under its route (`graphiql-3.8.3/graphiql.min.js`, `app.js`).
    pub(crate) name: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) bytes: &'static [u8],
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

macro_rules! asset {
    ($dir:literal, $name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/",
                $dir,
                "/",
                $name
            )),
        }
    };
}

/// The vendored files, by their path under `/assets/vendor/`. Each path carries the package's
/// version, so browsers may keep them for ever.
pub(crate) const VENDOR: &[Asset] = &[
    asset!("vendor", "react-18.3.1/react.production.min.js", JAVASCRIPT),
    asset!(
        "vendor",
        "react-dom-18.3.1/react-dom.production.min.js",
        JAVASCRIPT
    ),
    asset!("vendor", "graphql-ws-5.16.2/graphql-ws.min.js", JAVASCRIPT),
    asset!("vendor", "graphiql-3.8.3/graphiql.min.js", JAVASCRIPT),
    asset!("vendor", "graphiql-3.8.3/graphiql.min.css", CSS),
];

/// The dashboard's scripts and style sheet, by their name under `/dashboard/` (its page is
/// rendered by `http::dashboard`).
pub(crate) const DASHBOARD: &[Asset] = &[
    asset!("dashboard", "dashboard.css", CSS),
    asset!("dashboard", "app.js", JAVASCRIPT),
    asset!("dashboard", "api.js", JAVASCRIPT),
    asset!("dashboard", "dom.js", JAVASCRIPT),
    asset!("dashboard", "clients.js", JAVASCRIPT),
    asset!("dashboard", "tile.js", JAVASCRIPT),
    asset!("dashboard", "consents.js", JAVASCRIPT),
    asset!("dashboard", "audit.js", JAVASCRIPT),
    asset!("dashboard", "queries.js", JAVASCRIPT),
    asset!("dashboard", "oidc.js", JAVASCRIPT),
];

/// The dashboard's page, with `<!--token-->` where `consentry demo` puts its token.
pub(crate) const DASHBOARD_PAGE: &str = include_str!("../../assets/dashboard/index.html");

/// A strong validator for each file (its sha256, shortened), computed once.
static ETAGS: LazyLock<Vec<(&'static str, HeaderValue)>> = LazyLock::new(|| {
    VENDOR
        .iter()
        .chain(DASHBOARD)
        .filter_map(|asset| {
            let digest = Sha256::digest(asset.bytes);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            let value = HeaderValue::from_str(&format!("\"{hex}\"")).ok()?;
            Some((asset.name, value))
        })
        .collect()
});

fn etag_of(name: &str) -> Option<&'static HeaderValue> {
    ETAGS.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// How long a browser may keep a file.
#[derive(Clone, Copy)]
enum Caching {
    /// The path names the version: never ask again.
    Immutable,
    /// Ask every time (cheap with the ETag): the dashboard changes with the server.
    Revalidate,
}

/// Answers with `asset`, or 304 when the browser already has these bytes.
fn serve(asset: &'static Asset, caching: Caching, request: &HeaderMap) -> Response {
    let etag = etag_of(asset.name);
    let cache_control = match caching {
        Caching::Immutable => "public, max-age=31536000, immutable",
        Caching::Revalidate => "no-cache",
    };
    let fresh = etag.is_some_and(|etag| {
        request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|tag| tag.trim() == etag || tag.trim() == "*")
            })
    });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.bytes,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(etag) = etag {
        headers.insert(header::ETAG, etag.clone());
    }
    response
}

/// The 404 of every path that is not on a list.
pub(crate) fn not_found() -> Response {
    let mut response = (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "no such file\n",
    )
        .into_response();
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /assets/vendor/{*path}`: one of [`VENDOR`], else 404.
pub(crate) async fn vendor(Path(path): Path<String>, request: HeaderMap) -> Response {
    match VENDOR.iter().find(|asset| asset.name == path) {
        Some(asset) => serve(asset, Caching::Immutable, &request),
        None => not_found(),
    }
}

/// One of [`DASHBOARD`] by name (revalidated on every use), or `None`.
pub(crate) fn dashboard_file(name: &str, request: &HeaderMap) -> Option<Response> {
    DASHBOARD
        .iter()
        .find(|asset| asset.name == name)
        .map(|asset| serve(asset, Caching::Revalidate, request))
}
