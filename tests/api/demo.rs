//! `consentry demo`, started as a user would start it: a real process, its printed address and
//! token, GraphiQL with the token filled in, and one sample client per scenario.

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
    let (mut graphiql, mut token, mut simulator, mut banner) = (None, None, None, Vec::new());
    while graphiql.is_none() || token.is_none() || simulator.is_none() {
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
        graphiql = graphiql.or_else(|| field("GraphiQL:"));
        token = token.or_else(|| field("Token:"));
        simulator = simulator.or_else(|| field("Simulator:"));
    }
    let (graphiql, token, simulator) = (graphiql.unwrap(), token.unwrap(), simulator.unwrap());
    let base = graphiql.trim_end_matches("/graphiql").to_owned();

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
}
