//! Checklist 80–81: run the real `consentry` process with debug logging through every flow
//! against the simulator, then look for every secret that crossed it — codes, access and
//! refresh tokens, PKCE verifiers, client secrets, states — in its logs, its HTTP answers and
//! its audit trail. None may appear.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::support::flows::{admin_consent, browser, consent_page, location};
use api::{CallerClaims, OneOrMany, mint_hs256};
use consentry_tests::{eventually, serde_json::Value, start_simulator};
use sea_orm::{ConnectionTrait, Database, Statement};
use secrecy::SecretString;
use serde_json::json;
use simulator::SimTenant;
use url::Url;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    /// Every body the server answered.
    answers: Vec<String>,
}

impl Client {
    async fn graphql(&mut self, query: &str, variables: Value) -> Value {
        let text = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        self.answers.push(text.clone());
        let body: Value = serde_json::from_str(&text).unwrap();
        assert!(body.get("errors").is_none(), "{body}");
        body["data"].clone()
    }

    /// Follows Microsoft's redirect to the callback and then to the result page.
    async fn come_back(&mut self, back: &Url) {
        let response = browser().get(back.clone()).send().await.unwrap();
        let next = location(&response);
        self.answers.push(response.text().await.unwrap());
        if next.starts_with(&self.base) {
            let page = browser()
                .get(next)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            self.answers.push(page);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checklist_80_81_no_secret_reaches_logs_answers_or_the_audit_trail() {
    let contoso = SimTenant::healthy("contoso.onmicrosoft.com", "Contoso");
    let fabrikam = SimTenant::missing_teams("fabrikam.onmicrosoft.com", "Fabrikam");
    let sim = start_simulator(vec![contoso.clone(), fabrikam.clone()]).await;
    let dir = tempfile::tempdir().unwrap();
    let database = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("canary.db").display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let hs256 = format!("canary-hs256-{}", uuid::Uuid::new_v4().simple());
    let log_path = dir.path().join("consentry.log");
    let env = |command: &mut Command| {
        command
            .env("DATABASE_URL", &database)
            .env("CONSENTRY_LISTEN", format!("127.0.0.1:{port}"))
            .env("CONSENTRY_PUBLIC_URL", &base)
            .env("CONSENTRY_MS_CLIENT_ID", sim.client_id())
            .env("CONSENTRY_MS_CLIENT_SECRET", sim.client_secret())
            .env("CONSENTRY_MS_AUTHORITY_URL", sim.base_url().as_str())
            .env("CONSENTRY_MS_GRAPH_URL", sim.base_url().as_str())
            .env("CONSENTRY_AUTH_HS256_SECRET", &hs256)
            .env("CONSENTRY_AUTH_ISSUER", "canary")
            .env("CONSENTRY_AUTH_AUDIENCE", "canary")
            .env("CONSENTRY_SWEEP_INTERVAL", "100ms")
            .env_remove("CONSENTRY_TOKEN_KEYS")
            .env_remove("CONSENTRY_AUTH_JWKS_URL")
            .env_remove("CONSENTRY_FRONTEND_URL");
    };
    let binary = env!("CARGO_BIN_EXE_consentry-under-test");
    let mut add = Command::new(binary);
    env(&mut add);
    assert!(
        add.args(["msp", "add", "canary-msp"])
            .status()
            .unwrap()
            .success()
    );
    let log = std::fs::File::create(&log_path).unwrap();
    let mut serve = Command::new(binary);
    env(&mut serve);
    serve
        .arg("serve")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    let server = Server(serve.spawn().unwrap());
    eventually(Duration::from_secs(30), "the server to start", || async {
        reqwest::get(format!("{base}/healthz"))
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;

    let now = chrono::Utc::now().timestamp();
    let token = mint_hs256(
        &SecretString::from(hs256.clone()),
        &CallerClaims {
            sub: "canary-admin".into(),
            msp: Some("canary-msp".into()),
            roles: OneOrMany::Many(vec!["admin".into()]),
            iss: "canary".into(),
            aud: OneOrMany::One("canary".into()),
            exp: now + 600,
            iat: Some(now),
            nbf: None,
        },
    )
    .unwrap();
    let mut client = Client {
        http: reqwest::Client::new(),
        base: base.clone(),
        token: token.clone(),
        answers: Vec::new(),
    };
    let create = "mutation($name: String!, $domain: String) { createClient(input: { name: $name, domain: $domain }) { id } }";
    let contoso_id = client
        .graphql(
            create,
            json!({ "name": "Contoso", "domain": contoso.domain }),
        )
        .await["createClient"]["id"]
        .clone();
    let fabrikam_id = client
        .graphql(
            create,
            json!({ "name": "Fabrikam", "domain": fabrikam.domain }),
        )
        .await["createClient"]["id"]
        .clone();

    // Authorise, delegated consent (all four), verify, and a service principal repair.
    let link = client
        .graphql(
            "mutation($id: ID!) { authoriseGraphApi(clientId: $id) { url } }",
            json!({ "id": contoso_id }),
        )
        .await;
    let back = admin_consent(
        link["authoriseGraphApi"]["url"].as_str().unwrap(),
        contoso.admin().unwrap().id,
        "accept",
    )
    .await;
    client.come_back(&back).await;
    let link = client
        .graphql(
            "mutation($id: ID!) { startDelegatedConsent(clientId: $id, permissions: [MAIL_SEND, AZURE_USER_IMPERSONATION, USER_AUTHENTICATION_METHOD_READ_WRITE_ALL, DIRECTORY_ACCESS_AS_USER_ALL]) { url } }",
            json!({ "id": contoso_id }),
        )
        .await;
    let back = consent_page(
        link["startDelegatedConsent"]["url"].as_str().unwrap(),
        contoso.admin().unwrap().id,
        "accept",
    )
    .await;
    client.come_back(&back).await;
    let consents = client
        .graphql("query($id: ID!) { client(id: $id) { graphApiTile { status } delegatedConsents { id status } } }", json!({ "id": contoso_id }))
        .await;
    assert_eq!(consents["client"]["graphApiTile"]["status"], "AUTHORISED");
    let consent_id = consents["client"]["delegatedConsents"][0]["id"].clone();
    let verified = client
        .graphql(
            "mutation($id: ID!) { verifyDelegatedConsent(id: $id) { status } }",
            json!({ "id": consent_id }),
        )
        .await;
    assert_eq!(verified["verifyDelegatedConsent"]["status"], "ACTIVE");
    let repair = client
        .graphql(
            "mutation($id: ID!) { createServicePrincipal(clientId: $id) { signInUrl } }",
            json!({ "id": fabrikam_id }),
        )
        .await;
    let back = consent_page(
        repair["createServicePrincipal"]["signInUrl"]
            .as_str()
            .unwrap(),
        fabrikam.admin().unwrap().id,
        "accept",
    )
    .await;
    client.come_back(&back).await;
    eventually(Duration::from_secs(20), "the repair to finish", || {
        let http = client.http.clone();
        let (base, token, id) = (base.clone(), token.clone(), fabrikam_id.clone());
        async move {
            let body: Value = http
                .post(format!("{base}/graphql"))
                .bearer_auth(token)
                .json(&json!({ "query": "query($id: ID!) { client(id: $id) { servicePrincipalRequests { status } } }", "variables": { "id": id } }))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (body["data"]["client"]["servicePrincipalRequests"][0]["status"] == "READY").then_some(())
        }
    })
    .await;
    for path in ["/metrics", "/readyz"] {
        client.answers.push(
            reqwest::get(format!("{base}{path}"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    drop(server);

    // Every secret that crossed the server.
    let mut secrets: Vec<String> = sim.issued_secrets();
    secrets.push(sim.client_secret());
    secrets.push(hs256.clone());
    let mut states: Vec<String> = Vec::new();
    for request in sim.requests() {
        for (name, value) in request.query.iter().chain(request.form.iter()) {
            match name.as_str() {
                "code" | "code_verifier" | "refresh_token" | "client_secret" => {
                    secrets.push(value.clone());
                }
                "state" => states.push(value.clone()),
                _ => {}
            }
        }
    }
    secrets.retain(|s| s.len() >= 12);
    secrets.sort();
    secrets.dedup();
    assert!(
        secrets.len() > 10,
        "the flows ran: {} secrets",
        secrets.len()
    );

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logs.contains("consent callback handled"),
        "debug logs were captured"
    );
    let db = Database::connect(&database).await.unwrap();
    let mut trail = String::new();
    for sql in [
        "SELECT details FROM audit_event",
        "SELECT COALESCE(outcome, '') FROM oauth_flow",
    ] {
        for row in db
            .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
        {
            trail.push_str(&row.try_get_by_index::<String>(0).unwrap_or_default());
        }
    }
    let answers = client.answers.join("\n");
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret is in the log");
        assert!(
            !answers.contains(secret.as_str()),
            "a secret is in an answer"
        );
        assert!(
            !trail.contains(secret.as_str()),
            "a secret is in the audit trail"
        );
    }
    // States travel in the links Consentry hands out, by design, but never into its logs.
    for state in &states {
        assert!(!logs.contains(state.as_str()), "a state is in the log");
        assert!(!trail.contains(state.as_str()));
    }
}
