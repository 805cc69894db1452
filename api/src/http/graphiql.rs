//! GraphiQL at `/graphiql`: a static page wired to `/graphql` and `/graphql/ws`, with the
//! header editor open for a caller token. Its React, GraphiQL and graphql-ws builds are
//! Consentry's own copies (`http::assets`, `/assets/vendor/…`), so the page needs nothing but
//! this server. The page itself can do nothing without a token (checklist 58), and keeps the
//! token in the tab's `sessionStorage` (GraphiQL's `storage` prop), never in `localStorage`,
//! where any later visitor of the browser profile would find it.

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{Html, IntoResponse, Response},
};

use crate::state::AppState;

/// Everything comes from this server. `data:` is for the fonts and icons that GraphiQL's
/// style sheet embeds as `data:` URLs. `'unsafe-inline'` styles are still needed: GraphiQL's
/// dialogs (Radix, through react-remove-scroll's react-style-singleton) add a `<style>`
/// element at run time, which a nonce could only allow if the bundle were told it; inline
/// styles cannot run script. (Its `style` props and CodeMirror's `style.cssText` go through
/// the CSSOM, which CSP does not restrict.)
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; \
    script-src 'self'; \
    style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; \
    font-src 'self' data:; \
    connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <title>Consentry GraphiQL</title>
  <!--token-->
  <link rel="stylesheet" href="assets/vendor/graphiql-3.8.3/graphiql.min.css">
  <link rel="stylesheet" href="graphiql/app.css">
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script src="assets/vendor/react-18.3.1/react.production.min.js"></script>
  <script src="assets/vendor/react-dom-18.3.1/react-dom.production.min.js"></script>
  <script src="assets/vendor/graphql-ws-5.16.2/graphql-ws.min.js"></script>
  <script src="assets/vendor/graphiql-3.8.3/graphiql.min.js"></script>
  <script src="graphiql/app.js"></script>
</body>
</html>
"#;

const STYLE: &str = "html, body, #graphiql { height: 100%; margin: 0; }\n";

const SCRIPT: &str = r#"// Consentry's GraphiQL wiring: HTTP for queries and mutations, graphql-ws for subscriptions,
// both carrying the Authorization header from the Headers tab.
(function () {
  var httpUrl = new URL('../graphql', document.baseURI.replace(/graphiql.*$/, 'graphiql/')).toString();
  var wsUrl = httpUrl.replace(/^http/, 'ws') + '/ws';
  var wsClient = null;
  var wsAuthorization = null;

  function subscriptionClient(authorization) {
    if (!wsClient || authorization !== wsAuthorization) {
      if (wsClient) wsClient.dispose();
      wsAuthorization = authorization;
      wsClient = graphqlWs.createClient({
        url: wsUrl,
        lazy: true,
        connectionParams: authorization ? { Authorization: authorization } : {},
      });
    }
    return wsClient;
  }

  function isSubscription(params, opts) {
    var doc = opts && opts.documentAST;
    if (!doc) return /^\s*subscription\b/.test(params.query || '');
    var ops = doc.definitions.filter(function (d) { return d.kind === 'OperationDefinition'; });
    var op = ops.find(function (d) { return d.name && d.name.value === params.operationName; }) || ops[0];
    return !!op && op.operation === 'subscription';
  }

  function fetcher(params, opts) {
    var headers = Object.assign({}, (opts && opts.headers) || {});
    var authorization = headers.Authorization || headers.authorization || null;
    if (authorization && /<paste/.test(authorization)) authorization = null;
    if (isSubscription(params, opts)) {
      var client = subscriptionClient(authorization);
      return client.iterate({ query: params.query, variables: params.variables, operationName: params.operationName });
    }
    var sent = { 'Content-Type': 'application/json', Accept: 'application/graphql-response+json, application/json' };
    if (authorization) sent.Authorization = authorization;
    Object.keys(headers).forEach(function (k) { if (k.toLowerCase() !== 'authorization') sent[k] = headers[k]; });
    return fetch(httpUrl, { method: 'POST', headers: sent, body: JSON.stringify(params), credentials: 'omit' })
      .then(function (r) { return r.json(); });
  }

  var defaultQuery = [
    '# Consentry. 1) Put a caller token in the Headers tab below:',
    '#      consentry token --msp demo --role admin',
    '#    2) Press the re-fetch-schema button (↻) to load the docs, then run this query.',
    '',
    'query Dashboard {',
    '  viewer { subject roles msp { id name } }',
    '  clients(first: 20) {',
    '    edges { node { id name domain graphApiTile { status availableActions problem { code remediation } } } }',
    '    pageInfo { hasNextPage endCursor }',
    '  }',
    '}',
    '',
    '# mutation Add { createClient(input: { name: "Contoso", domain: "contoso.com" }) { id name graphApiTile { status } } }',
    '',
  ].join('\n');

  // GraphiQL keeps its state, the headers with the token among it, in this tab's
  // sessionStorage (gone when the tab closes), or in memory where the browser refuses it.
  function memoryStorage() {
    var items = {};
    return {
      getItem: function (k) { return Object.prototype.hasOwnProperty.call(items, k) ? items[k] : null; },
      setItem: function (k, v) { items[k] = String(v); },
      removeItem: function (k) { delete items[k]; },
      clear: function () { items = {}; },
      get length() { return Object.keys(items).length; },
    };
  }
  var storage = null;
  try { storage = window.sessionStorage || null; } catch (e) { storage = null; }
  if (!storage) storage = memoryStorage();

  // Earlier versions let GraphiQL keep tokens in localStorage: remove what they left.
  try {
    var stale = [];
    for (var i = 0; i < window.localStorage.length; i++) {
      var key = window.localStorage.key(i);
      if (key && key.indexOf('graphiql:') === 0) stale.push(key);
    }
    stale.forEach(function (key) { window.localStorage.removeItem(key); });
  } catch (e) { /* no localStorage at all */ }

  // `consentry demo` hands GraphiQL a ready token.
  var demoToken = document.querySelector('meta[name="consentry-token"]');
  if (demoToken) {
    storage.setItem('graphiql:headers', JSON.stringify({ Authorization: 'Bearer ' + demoToken.content }, null, 2));
  }

  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(React.createElement(GraphiQL, {
    fetcher: fetcher,
    defaultQuery: defaultQuery,
    defaultHeaders: JSON.stringify({ Authorization: 'Bearer <paste a token from: consentry token --msp demo --role admin>' }, null, 2),
    defaultEditorToolsVisibility: 'headers',
    headerEditorEnabled: true,
    // Persisted to `storage` only: the tab's sessionStorage, never localStorage.
    storage: storage,
    shouldPersistHeaders: true,
  }));
})();
"#;

fn with_policy(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `GET /graphiql`. In `consentry demo` the page carries the demo admin token.
pub(crate) async fn page(State(state): State<AppState>) -> Response {
    let token = match &state.demo_token {
        Some(token) => format!(
            "<meta name=\"consentry-token\" content=\"{}\">",
            super::html::escape(token)
        ),
        None => String::new(),
    };
    with_policy(Html(PAGE.replace("<!--token-->", &token)).into_response())
}

/// `GET /graphiql/app.js`.
pub(crate) async fn script() -> Response {
    with_policy(
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            SCRIPT,
        )
            .into_response(),
    )
}

/// `GET /graphiql/app.css`.
pub(crate) async fn style() -> Response {
    with_policy(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response())
}
