//! `consentry demo`, started as a user would start it: a real process, its printed addresses and
//! token, the dashboard and GraphiQL with the token filled in, and one sample client per
//! scenario.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

struct Demo(Child);

impl Demo {
    /// Stops it as Ctrl-C or SIGTERM would, and waits until it has exited.
    fn stop(mut self) {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.0.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the demo did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running demo and what its banner said.
struct Started {
    demo: Demo,
    dashboard: String,
    graphiql: String,
    token: String,
    simulator: String,
    /// The server's base URL (GraphiQL's without `/graphiql`).
    base: String,
}

/// Starts `consentry demo` on `listen` and the SQLite file `database`, and reads its banner.
fn start_demo(listen: &str, database: &str) -> Started {
    let mut child = Command::new(env!("CARGO_BIN_EXE_consentry-under-test"))
        .args(["demo", "--listen", listen, "--demo-database-url", database])
        .env_remove("CONSENTRY_AUTH_HS256_SECRET")
        .env_remove("CONSENTRY_AUTH_JWKS_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let demo = Demo(child);

    // Read the banner (a blocking reader on its own thread, with a deadline). The thread
    // drains the output for as long as the demo runs: a closed pipe would end the demo at its
    // next line.
    let (sender, received) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut dashboard, mut graphiql, mut token, mut simulator, mut banner) =
        (None, None, None, None, Vec::new());
    while dashboard.is_none() || graphiql.is_none() || token.is_none() || simulator.is_none() {
        let line = received
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the demo did not print its banner in time: {banner:?}"));
        banner.push(line.clone());
        let field = |name: &str| {
            line.trim().strip_prefix(name).map(|rest| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
        };
        dashboard = dashboard.or_else(|| field("Dashboard:"));
        graphiql = graphiql.or_else(|| field("GraphiQL:"));
        token = token.or_else(|| field("Token:"));
        simulator = simulator.or_else(|| field("Simulator:"));
    }
    let (dashboard, graphiql, token, simulator) = (
        dashboard.unwrap(),
        graphiql.unwrap(),
        token.unwrap(),
        simulator.unwrap(),
    );
    let base = graphiql.trim_end_matches("/graphiql").to_owned();
    assert_eq!(dashboard, format!("{base}/dashboard"), "{banner:?}");
    Started {
        demo,
        dashboard,
        graphiql,
        token,
        simulator,
        base,
    }
}

#[tokio::test]
async fn the_demo_starts_with_a_simulator_sample_clients_and_a_ready_token() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("demo.db").display());
    let Started {
        demo: _demo,
        dashboard,
        graphiql,
        token,
        simulator,
        base,
    } = start_demo("127.0.0.1:0", &database);

    let http = reqwest::Client::new();
    let response: Value = http
        .post(format!("{base}/graphql"))
        .bearer_auth(&token)
        .json(&json!({ "query": "{ viewer { msp { id } } clients(first: 50) { totalCount edges { node { name domain graphApiTile { status availableActions } } } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        response["data"]["viewer"]["msp"]["id"], "demo",
        "{response}"
    );
    let clients = response["data"]["clients"]["edges"].as_array().unwrap();
    assert_eq!(clients.len(), 10, "one client per scenario: {response}");
    assert!(
        clients
            .iter()
            .any(|c| c["node"]["domain"] == "fabrikam.onmicrosoft.com")
    );
    assert!(
        clients
            .iter()
            .all(|c| c["node"]["graphApiTile"]["status"] == "NOT_AUTHORISED")
    );

    let page = http
        .get(&graphiql)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("content=\"{token}\"")),
        "GraphiQL starts with the token"
    );
    let dashboard_page = http.get(&dashboard).send().await.unwrap();
    assert_eq!(dashboard_page.status(), reqwest::StatusCode::OK);
    assert_eq!(
        dashboard_page.headers()["cache-control"],
        "no-store",
        "a page with a token is never stored"
    );
    assert!(
        dashboard_page.text().await.unwrap().contains(&format!(
            "<meta name=\"consentry-token\" content=\"{token}\">"
        )),
        "the dashboard starts signed in"
    );

    // Issue 19: the simulator's printed address is a page that says what it is and who can
    // sign in, not a bare 404.
    let index = http.get(&simulator).send().await.unwrap();
    assert_eq!(index.status(), reqwest::StatusCode::OK);
    let index = index.text().await.unwrap();
    assert!(
        index.contains("Microsoft simulator") && index.contains("admin@contoso.onmicrosoft.com"),
        "{index}"
    );

    let discovery: Value = http
        .get(format!(
            "{simulator}contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        discovery["issuer"].as_str().unwrap().ends_with("/v2.0"),
        "{discovery}"
    );
    let ready: Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["microsoft"], "configured");

    walk_every_scenario(&http, &base, &token, &simulator).await;
}

/// What Authorise ends in for each demo client, walked through the pages as a browser would:
/// the sign-in that proves the tenant, then Microsoft's consent page.
const EXPECTED: [(&str, &str, Option<&str>); 10] = [
    ("contoso.onmicrosoft.com", "AUTHORISED", None),
    (
        "fabrikam.onmicrosoft.com",
        "FAILED",
        Some("MISSING_SERVICE_PRINCIPAL"),
    ),
    (
        "northwind.onmicrosoft.com",
        "FAILED",
        Some("CONSENT_DECLINED"),
    ),
    (
        "tailspin.onmicrosoft.com",
        "FAILED",
        Some("ADMIN_CONSENT_REQUIRED"),
    ),
    (
        "woodgrove.onmicrosoft.com",
        "FAILED",
        Some("CONDITIONAL_ACCESS"),
    ),
    (
        "adatum.onmicrosoft.com",
        "FAILED",
        Some("CONDITIONAL_ACCESS"),
    ),
    ("litware.onmicrosoft.com", "AUTHORISED", None),
    ("proseware.onmicrosoft.com", "AUTHORISED", None),
    (
        "wingtip.onmicrosoft.com",
        "FAILED",
        Some("IDENTITY_PROVIDER_UNAVAILABLE"),
    ),
    ("lamna.onmicrosoft.com", "AUTHORISED", None),
];

async fn graphql(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Value {
    let response: Value = http
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(response["errors"].is_null(), "{response}");
    response["data"].clone()
}

/// Where a callback sends the browser (it never follows redirects).
async fn open_callback(browser: &reqwest::Client, url: &url::Url) -> String {
    let response = browser.get(url.clone()).send().await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// Through the pages of an Authorise link: sign in (and, when that proves the tenant, Accept
/// the consent); returns where Consentry then sends the browser.
async fn through_the_pages(browser: &reqwest::Client, link: &str, user: uuid::Uuid) -> String {
    use simulator::browser::consent;
    let signed_in = consent(browser, link, user, "accept").await.unwrap();
    let next = open_callback(browser, &signed_in).await;
    if next.contains("/adminconsent") {
        let back = consent(browser, &next, user, "accept").await.unwrap();
        open_callback(browser, &back).await
    } else {
        next
    }
}

/// Issue 19: the demo survives its own restart. Its simulator comes back on the same address
/// knowing what it knew (saved beside the demo database), so an authorised tile verifies as
/// authorised — not REVOKED — and a link handed out before the restart still works.
#[tokio::test]
async fn a_restarted_demo_keeps_its_authorisations_and_its_links() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("demo.db").display());
    // One address for both runs, as `consentry demo` has by default (8080).
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let http = reqwest::Client::new();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let first = start_demo(&listen, &database);
    let (token, simulator) = (first.token.clone(), first.simulator.clone());
    let ids = graphql(
        &http,
        &first.base,
        &token,
        "{ clients(first: 50) { nodes { id domain } } }",
        json!({}),
    )
    .await["clients"]["nodes"]
        .clone();
    let id_of = |domain: &str| {
        ids.as_array()
            .unwrap()
            .iter()
            .find(|c| c["domain"] == domain)
            .unwrap()["id"]
            .clone()
    };
    let tenants: Value = http
        .get(format!("{simulator}_simulator/tenants"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin_of = |domain: &str| -> uuid::Uuid {
        let tenant = tenants
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["domain"] == domain)
            .unwrap();
        let admin = tenant["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["isAdmin"] == true)
            .unwrap();
        admin["id"].as_str().unwrap().parse().unwrap()
    };
    let authorise = "mutation($id: ID!) { authoriseGraphApi(clientId: $id) { url } }";
    let link_for = |domain: &'static str| {
        let (http, base, token) = (http.clone(), first.base.clone(), token.clone());
        let id = id_of(domain);
        async move {
            graphql(&http, &base, &token, authorise, json!({ "id": id })).await["authoriseGraphApi"]
                ["url"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let contoso = "contoso.onmicrosoft.com";
    let litware = "litware.onmicrosoft.com";
    let result = through_the_pages(&browser, &link_for(contoso).await, admin_of(contoso)).await;
    assert!(result.contains("/oauth/result/"), "{result}");
    let waiting = link_for(litware).await;
    first.demo.stop();
    assert!(
        dir.path().join("demo.simulator.json").exists(),
        "the simulator's state is kept beside the demo database"
    );

    let second = start_demo(&listen, &database);
    // Connections kept alive to the first run are gone with it.
    let http = reqwest::Client::new();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(
        second.simulator, simulator,
        "the simulator's address is kept"
    );
    // The first run's token still works (below): the secret is kept beside the database too.
    let verified = graphql(
        &http,
        &second.base,
        &token,
        "mutation($id: ID!) { verifyGraphApi(clientId: $id) { status problem { code } } }",
        json!({ "id": id_of(contoso) }),
    )
    .await;
    assert_eq!(
        verified["verifyGraphApi"]["status"], "AUTHORISED",
        "{verified}"
    );
    let result = through_the_pages(&browser, &waiting, admin_of(litware)).await;
    assert!(result.contains("/oauth/result/"), "{result}");
    let tile = graphql(
        &http,
        &second.base,
        &token,
        "query($id: ID!) { client(id: $id) { graphApiTile { status } } }",
        json!({ "id": id_of(litware) }),
    )
    .await;
    assert_eq!(
        tile["client"]["graphApiTile"]["status"], "AUTHORISED",
        "the link sent before the restart worked: {tile}"
    );
}

/// Every demo scenario, Authorise from the link to the result page; Fabrikam's missing
/// principal is then repaired and Authorise succeeds.
async fn walk_every_scenario(http: &reqwest::Client, base: &str, token: &str, simulator: &str) {
    use simulator::browser::consent;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let tenants: Value = http
        .get(format!("{simulator}_simulator/tenants"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let clients = graphql(
        http,
        base,
        token,
        "{ clients(first: 50) { nodes { id domain } } }",
        json!({}),
    )
    .await["clients"]["nodes"]
        .clone();
    let authorise = "mutation($id: ID!) { authoriseGraphApi(clientId: $id) { url } }";
    let tile = "query($id: ID!) { client(id: $id) { graphApiTile { status problem { code } tenantProof { signedInAs } } } }";
    let through_the_pages = |link: String, user: uuid::Uuid| {
        let browser = browser.clone();
        async move { through_the_pages(&browser, &link, user).await }
    };
    for (domain, status, problem) in EXPECTED {
        let client = clients
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["domain"] == domain)
            .unwrap_or_else(|| panic!("no demo client for {domain}"))["id"]
            .clone();
        let users = tenants
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["domain"] == domain)
            .unwrap()["users"]
            .as_array()
            .unwrap()
            .clone();
        let user = users
            .iter()
            .find(|u| u["isAdmin"] == true)
            .unwrap_or(&users[0])["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let link = graphql(http, base, token, authorise, json!({ "id": client })).await
            ["authoriseGraphApi"]["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let result = through_the_pages(link, user).await;
        assert!(result.contains("/oauth/result/"), "{domain}: {result}");
        let page = browser.get(&result).send().await.unwrap();
        assert_eq!(page.status(), reqwest::StatusCode::OK, "{domain}");
        let shown = graphql(http, base, token, tile, json!({ "id": client })).await["client"]
            ["graphApiTile"]
            .clone();
        assert_eq!(shown["status"], status, "{domain}: {shown}");
        assert_eq!(
            shown["problem"]["code"].as_str(),
            problem,
            "{domain}: {shown}"
        );
        assert_eq!(
            shown["tenantProof"].is_object(),
            status == "AUTHORISED",
            "{domain}: {shown}"
        );

        if domain == "fabrikam.onmicrosoft.com" {
            // The repair: sign in, wait for READY, and Authorise again.
            let created = graphql(
                http,
                base,
                token,
                "mutation($id: ID!) { createServicePrincipal(clientId: $id) { signInUrl } }",
                json!({ "id": client }),
            )
            .await;
            let url = created["createServicePrincipal"]["signInUrl"]
                .as_str()
                .unwrap();
            let back = consent(&browser, url, user, "accept").await.unwrap();
            open_callback(&browser, &back).await;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let requests = graphql(
                    http,
                    base,
                    token,
                    "query($id: ID!) { client(id: $id) { servicePrincipalRequests { status } } }",
                    json!({ "id": client }),
                )
                .await;
                let status = requests["client"]["servicePrincipalRequests"][0]["status"].clone();
                if status == "READY" {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the repair did not finish: {status}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let link = graphql(http, base, token, authorise, json!({ "id": client })).await
                ["authoriseGraphApi"]["url"]
                .as_str()
                .unwrap()
                .to_owned();
            through_the_pages(link, user).await;
            let shown = graphql(http, base, token, tile, json!({ "id": client })).await["client"]
                ["graphApiTile"]
                .clone();
            assert_eq!(shown["status"], "AUTHORISED", "{shown}");
        }
    }
}
