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

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_demo_starts_with_a_simulator_sample_clients_and_a_ready_token() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("demo.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_consentry-under-test"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--demo-database-url",
            &database,
        ])
        .env_remove("CONSENTRY_AUTH_HS256_SECRET")
        .env_remove("CONSENTRY_AUTH_JWKS_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _demo = Demo(child);

    // Read the banner (a blocking reader on its own thread, with a deadline).
    let (sender, received) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
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
    // Through the pages: sign in (and, when that proves the tenant, Accept the consent).
    let through_the_pages = |link: String, user: uuid::Uuid| {
        let browser = browser.clone();
        async move {
            let signed_in = consent(&browser, &link, user, "accept").await.unwrap();
            let next = open_callback(&browser, &signed_in).await;
            if next.contains("/adminconsent") {
                let back = consent(&browser, &next, user, "accept").await.unwrap();
                open_callback(&browser, &back).await
            } else {
                next
            }
        }
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
