//! Checklist 101: values from requests reach the text log escaped. The real `consentry`
//! process logs to a file; callbacks whose `error` and `iss` carry CR, LF and ESC must not
//! forge a line or a terminal escape in it.

use crate::support::flows::{authorise, browser, healthy, new_client};
use consentry_tests::{
    Backend, ServerProcess, TestApp, TestDatabase, both_backends, free_port, serde_json::Value,
    start_simulator,
};
use reqwest::StatusCode;
use url::Url;
use uuid::Uuid;

const CONSENTRY: &str = env!("CARGO_BIN_EXE_consentry-under-test");

/// An `error` that ends its log line with CR LF, starts a forged one and turns the terminal red.
const HOSTILE_ERROR: &str = "access_denied%0D%0AFORGED%20LINE%1B%5B31m";
/// An issuer that starts a forged line with a bare LF.
const HOSTILE_ISSUER: &str = "https://x%0AFORGED";

/// The `state` of a consent link.
fn state_of(link: &Value) -> String {
    Url::parse(link["url"].as_str().unwrap())
        .unwrap()
        .query_pairs()
        .find_map(|(name, value)| (name == "state").then(|| value.into_owned()))
        .unwrap()
}

/// `GET /oauth/callback?{query}` as a browser sends it; the status of the answer.
async fn callback(app: &TestApp, query: &str) -> StatusCode {
    browser()
        .get(app.url(&format!("/oauth/callback?{query}")))
        .send()
        .await
        .unwrap()
        .status()
}

#[both_backends]
async fn checklist_101_request_values_are_logged_escaped(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let tenant = healthy("contoso.onmicrosoft.com");
    let sim = start_simulator(vec![tenant.clone()]).await;
    let secret = format!("test-secret-{}", Uuid::new_v4());
    let port = free_port();
    let server = ServerProcess::start(
        CONSENTRY,
        &database,
        &secret,
        &sim,
        port,
        &[("CONSENTRY_LOG_FORMAT", "text"), ("RUST_LOG", "info")],
    )
    .await;
    let app = TestApp::attach(port, &secret, &database).await;
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&tenant.domain), None).await;

    // An error answer to one link, an answer naming a forged issuer to the next (both reach
    // the code that logs them; a new link replaces the last), and both values with a state
    // never issued.
    let declined = state_of(&authorise(&caller, &client).await);
    let query = format!("admin_consent=True&state={declined}&error={HOSTILE_ERROR}");
    assert_eq!(callback(&app, &query).await, StatusCode::SEE_OTHER);
    let from_elsewhere = state_of(&authorise(&caller, &client).await);
    let query = format!("admin_consent=True&state={from_elsewhere}&iss={HOSTILE_ISSUER}");
    assert_eq!(callback(&app, &query).await, StatusCode::SEE_OTHER);
    let query = format!(
        "state=never-issued-{}&error={HOSTILE_ERROR}&iss={HOSTILE_ISSUER}",
        Uuid::new_v4()
    );
    assert_eq!(callback(&app, &query).await, StatusCode::BAD_REQUEST);

    let log = server.log();
    drop(server);

    assert!(
        log.contains("the answer is an error")
            && log.contains("callback from an unexpected issuer refused"),
        "both hostile values reached the code that logs them: {log:?}"
    );
    assert!(!log.contains('\x1b'), "no ESC in the log: {log:?}");
    assert!(!log.contains('\r'), "no CR in the log: {log:?}");
    for line in log.lines() {
        assert!(
            !line.trim_start().starts_with("FORGED"),
            "a forged line: {line:?}"
        );
    }
    assert!(
        log.contains(r"error=access_denied\r\nFORGED LINE\u{1b}[31m"),
        "the error is logged escaped: {log:?}"
    );
    assert!(
        log.contains(r"issuer=https://x\nFORGED"),
        "the issuer is logged escaped: {log:?}"
    );
}

/// Checklist 98: a caller looping refused operations writes one log line per minute, not one
/// per refusal (the next line counts those not written).
#[both_backends]
async fn checklist_98_refusals_are_logged_at_a_bounded_rate(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let sim = start_simulator(Vec::new()).await;
    let secret = format!("test-secret-{}", Uuid::new_v4());
    let port = free_port();
    let server = ServerProcess::start(
        CONSENTRY,
        &database,
        &secret,
        &sim,
        port,
        &[
            ("CONSENTRY_LOG_FORMAT", "text"),
            ("RUST_LOG", "info"),
            ("CONSENTRY_MSP_QUERIES_PER_MINUTE", "2"),
            ("CONSENTRY_MSP_MUTATIONS_PER_MINUTE", "2"),
        ],
    )
    .await;
    let app = TestApp::attach(port, &secret, &database).await;
    let viewer = app.caller("msp-a", &["viewer"]).await;
    let admin = app.caller("msp-a", &["admin"]).await;
    let mut refused = 0;
    for _ in 0..100 {
        let answer = viewer
            .run("{ clients { totalCount } }", serde_json::json!({}))
            .await;
        refused += usize::from(answer.status == StatusCode::TOO_MANY_REQUESTS);
        let answer = admin
            .run(
                "mutation { createClient(input: { name: \"Again\" }) { id } }",
                serde_json::json!({}),
            )
            .await;
        refused += usize::from(answer.status == StatusCode::TOO_MANY_REQUESTS);
    }
    let log = server.log();
    drop(server);

    assert!(refused >= 190, "{refused} refusals");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("rate limit reached"))
        .collect();
    assert_eq!(lines.len(), 2, "one line per budget of the MSP: {lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("budget=\"queries\"")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("budget=\"mutations\"")),
        "{lines:#?}"
    );
}
