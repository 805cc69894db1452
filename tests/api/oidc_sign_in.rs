//! The dashboard's sign-in through the caller identity provider (issue 19, item 2): OIDC
//! authorization code with PKCE by a public client (`CONSENTRY_DASHBOARD_OIDC_CLIENT_ID`),
//! against the stand-in provider of `support::idp`. What the server says about it
//! (`/dashboard/sign-in.json`, the policy's `connect-src`, start-up refusals), and the whole
//! sign-in in headless Chromium, including an answer this tab never asked for (checklist 1, 13).

use consentry_tests::{Backend, TestApp, TestDatabase, both_backends, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    browser::Browser,
    idp::{AUDIENCE, CLIENT_ID, IdentityProvider, User},
    pages::no_redirects,
};

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const SUBJECT: &str = "idp|ada.lovelace";
const MSP: &str = "msp-a";

async fn provider() -> IdentityProvider {
    IdentityProvider::start(User {
        subject: SUBJECT.to_owned(),
        msp: MSP.to_owned(),
        roles: vec!["admin".to_owned()],
    })
    .await
}

/// Caller tokens from `idp`'s JWKS, and the dashboard signing in there.
fn use_provider(settings: &mut api::Settings, idp: &IdentityProvider) {
    settings.auth_hs256_secret = None;
    settings.auth_jwks_url = Some(idp.url("/jwks").parse().unwrap());
    settings.auth_issuer = Some(idp.issuer().to_owned());
    settings.auth_audience = Some(AUDIENCE.to_owned());
    settings.dashboard_oidc_client_id = Some(CLIENT_ID.to_owned());
}

/// A server whose dashboard signs in at `idp`, registered there, with MSP `msp-a`.
async fn app_signing_in_at(backend: Backend, idp: &IdentityProvider) -> Option<TestApp> {
    let app = spawn_app_with(backend, |s| use_provider(s, idp)).await?;
    idp.register_dashboard(&app.url("/dashboard"), &app.address);
    app.register_msp(MSP).await;
    Some(app)
}

async fn sign_in_options(app: &TestApp) -> Value {
    let response = app
        .http
        .get(app.url("/dashboard/sign-in.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn policy_of(app: &TestApp, path: &str) -> String {
    let response = app.http.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn without_a_client_id_the_dashboard_offers_only_a_pasted_token() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();

    assert_eq!(sign_in_options(&app).await, json!({ "oidc": null }));
    assert_eq!(policy_of(&app, "/dashboard").await, POLICY);
    assert_eq!(policy_of(&app, "/dashboard/app.js").await, POLICY);
}

#[tokio::test]
async fn with_a_client_id_the_dashboard_learns_the_providers_endpoints_and_may_reach_its_token_endpoint()
 {
    let idp = provider().await;
    let app = app_signing_in_at(Backend::Sqlite, &idp).await.unwrap();

    assert_eq!(
        sign_in_options(&app).await,
        json!({ "oidc": {
            "issuer": idp.issuer(),
            "authorizationEndpoint": idp.url("/authorize"),
            "tokenEndpoint": idp.url("/token"),
            "clientId": CLIENT_ID,
            "scope": "openid",
            "redirectUri": app.url("/dashboard"),
        } })
    );
    let widened = POLICY.replace(
        "connect-src 'self'",
        &format!("connect-src 'self' {}", idp.issuer()),
    );
    assert_eq!(policy_of(&app, "/dashboard").await, widened);
    assert_eq!(policy_of(&app, "/dashboard/oidc.js").await, widened);
}

#[tokio::test]
async fn the_redirect_uri_is_the_dashboard_under_the_public_url() {
    let idp = provider().await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        use_provider(s, &idp);
        s.public_url = "https://consentry.example.com/msp-portal/".parse().unwrap();
    })
    .await
    .unwrap();

    assert_eq!(
        sign_in_options(&app).await["oidc"]["redirectUri"],
        "https://consentry.example.com/msp-portal/dashboard"
    );
}

#[tokio::test]
async fn start_up_refuses_a_client_id_without_a_jwks_configuration() {
    let database = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let mut settings =
        consentry_tests::test_settings(&database, "a-secret-of-at-least-32-bytes-0000");
    settings.dashboard_oidc_client_id = Some(CLIENT_ID.to_owned());

    let refused = api::Application::build(settings)
        .await
        .expect_err("a client id without a JWKS stops the start");
    let why = format!("{refused:#}");
    assert!(
        why.contains("CONSENTRY_DASHBOARD_OIDC_CLIENT_ID")
            && why.contains("needs CONSENTRY_AUTH_JWKS_URL"),
        "{why}"
    );
}

#[tokio::test]
async fn start_up_refuses_a_provider_whose_endpoints_cannot_be_discovered() {
    let database = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let idp = provider().await;
    let mut settings =
        consentry_tests::test_settings(&database, "a-secret-of-at-least-32-bytes-0000");
    use_provider(&mut settings, &idp);
    settings.listen = "127.0.0.1:0".parse().unwrap();
    // Nothing listens on port 9 of loopback.
    settings.auth_issuer = Some("http://127.0.0.1:9".to_owned());

    let unreachable = api::Application::build(settings.clone())
        .await
        .expect_err("an unreachable provider stops the start");
    let why = format!("{unreachable:#}");
    assert!(
        why.contains("CONSENTRY_DASHBOARD_OIDC_CLIENT_ID")
            && why.contains(
                "cannot be discovered at http://127.0.0.1:9/.well-known/openid-configuration"
            ),
        "{why}"
    );

    // The stand-in's discovery names its own issuer, not this one.
    settings.auth_issuer = Some(format!("{}/", idp.issuer()));
    let mismatch = api::Application::build(settings.clone())
        .await
        .expect_err("a provider naming another issuer stops the start");
    assert!(
        format!("{mismatch:#}").contains("not CONSENTRY_AUTH_ISSUER"),
        "{mismatch:#}"
    );

    settings.auth_issuer = Some("http://idp.example.com".to_owned());
    let plain = settings.validate().expect_err("plain http off loopback");
    assert!(plain.to_string().contains("must use https"), "{plain}");
}

/// The stand-in refuses what the dashboard must never send: another client, another
/// redirect URI, no PKCE or `plain` PKCE (so the browser test below proves what was sent).
#[tokio::test]
async fn the_stand_in_provider_refuses_requests_the_dashboard_must_not_make() {
    let idp = provider().await;
    idp.register_dashboard("http://127.0.0.1:1/dashboard", "http://127.0.0.1:1");
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let authorize = |client: &str, redirect: &str, method: &str| {
        let mut url = url::Url::parse(&idp.url("/authorize")).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client)
            .append_pair("redirect_uri", redirect)
            .append_pair("state", "s")
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", method);
        url.to_string()
    };
    let http = no_redirects();
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status() }
    };
    let registered = "http://127.0.0.1:1/dashboard";
    assert_eq!(
        status(authorize(CLIENT_ID, registered, "S256")).await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        status(authorize("someone-else", registered, "S256")).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(authorize(CLIENT_ID, "http://127.0.0.1:2/dashboard", "S256")).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(authorize(CLIENT_ID, registered, "plain")).await,
        StatusCode::BAD_REQUEST
    );
}

/// A code from the stand-in, as an attacker would get one for their own sign-in.
async fn code_of_someone_else(idp: &IdentityProvider, redirect_uri: &str) -> String {
    let mut url = url::Url::parse(&idp.url("/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", "the-attackers-own")
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256");
    let response = no_redirects().get(url).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(name, _)| name == "code")
        .unwrap()
        .1
        .into_owned()
}

const WHO: &str = "//span[@id='who']";
const SIGN_IN_ERROR: &str = "//div[@id='sign-in-error']";
const PENDING: &str = "return window.sessionStorage.getItem('consentry:oidc-pending')";

/// Opens the dashboard (its identity provider button shown) with a sign-in of this tab
/// waiting for its answer under `state`, as the button leaves it before going to the provider.
async fn sign_in_waiting(browser: &Browser, app: &TestApp, state: &str) {
    browser.client.goto(&app.url("/dashboard")).await.unwrap();
    browser
        .shown("//button[normalize-space()='Sign in with your identity provider']")
        .await;
    browser
        .run(
            "window.sessionStorage.setItem('consentry:oidc-pending', JSON.stringify(
               { state: arguments[0], nonce: 'n', verifier: 'v'.repeat(43) }))",
            vec![json!(state)],
        )
        .await;
}

/// Click, the stand-in signs the user in and sends the browser back; the dashboard redeems
/// the code and shows the MSP's clients, signed in as the provider's user. The code has left
/// the address bar and the verifier the tab's storage.
#[both_backends]
async fn signing_in_through_the_identity_provider_shows_the_clients(backend: Backend) {
    let idp = provider().await;
    let Some(app) = app_signing_in_at(backend, &idp).await else {
        return;
    };
    app.with_token(idp.access_token())
        .create_client("Contoso")
        .await;
    let Some(browser) = Browser::open().await else {
        return;
    };

    browser.client.goto(&app.url("/dashboard")).await.unwrap();
    browser
        .shown("//button[normalize-space()='Sign in with your identity provider']")
        .await;
    browser.screenshot("sign-in").await;
    browser
        .assert_accessible("the sign-in with an identity provider")
        .await;
    browser
        .click("//button[normalize-space()='Sign in with your identity provider']")
        .await;

    let who = browser.text_with(WHO, SUBJECT).await;
    assert!(who.contains("(admin)"), "{who}");
    browser.text_with("//p[@id='page-status']", " of ").await;
    browser
        .text_with("//ul[@id='client-list']", "Contoso")
        .await;
    browser.screenshot("signed-in").await;
    let address = browser.client.current_url().await.unwrap();
    assert_eq!(address.as_str(), app.url("/dashboard"));
    assert!(!address.as_str().contains("code="), "{address}");
    assert_eq!(browser.run(PENDING, vec![]).await, Value::Null);
    let kept = browser
        .run("return Object.keys(window.sessionStorage)", vec![])
        .await;
    assert_eq!(kept, json!(["consentry:token"]), "only the token is kept");
    assert_eq!(idp.token_requests(), 1);
    browser.close().await;
}

/// The dashboard's own sign-in, as checklist 1 asks of the consent callback: a code sent back
/// with a state this tab never issued (here: a real code of the attacker's, while a sign-in
/// of this tab waits) is refused with a message and never sent to the token endpoint; the
/// waiting sign-in is used up.
#[both_backends]
async fn an_answer_with_a_forged_state_is_refused_and_never_redeemed(backend: Backend) {
    let idp = provider().await;
    let Some(app) = app_signing_in_at(backend, &idp).await else {
        return;
    };
    let Some(browser) = Browser::open().await else {
        return;
    };
    sign_in_waiting(&browser, &app, "the-one-this-tab-issued").await;
    let code = code_of_someone_else(&idp, &app.url("/dashboard")).await;

    browser
        .client
        .goto(&format!(
            "{}?code={code}&state=forged",
            app.url("/dashboard")
        ))
        .await
        .unwrap();

    let said = browser
        .text_with(SIGN_IN_ERROR, "state does not match")
        .await;
    assert!(said.contains("refused and not used"), "{said}");
    browser.screenshot("refused").await;
    let address = browser.client.current_url().await.unwrap();
    assert!(!address.as_str().contains("code="), "{address}");
    assert_eq!(idp.token_requests(), 0, "no token request");
    assert_eq!(browser.run(PENDING, vec![]).await, Value::Null);
    assert_eq!(
        browser
            .run("return document.getElementById('who').textContent", vec![])
            .await,
        json!("")
    );
    browser.close().await;
}

/// A crafted answer link opened in a tab that is signed in and started no sign-in (the
/// attacker's own code, say) changes nothing: the tab stays signed in as it was, the address
/// loses the code, and the code is never redeemed.
#[both_backends]
async fn a_crafted_answer_link_neither_signs_a_tab_out_nor_is_redeemed(backend: Backend) {
    let idp = provider().await;
    let Some(app) = app_signing_in_at(backend, &idp).await else {
        return;
    };
    let Some(browser) = Browser::open().await else {
        return;
    };
    let token = idp.access_token();
    browser.client.goto(&app.url("/dashboard")).await.unwrap();
    browser
        .shown("//textarea[@id='token']")
        .await
        .send_keys(&token)
        .await
        .unwrap();
    browser
        .click("//form[@id='sign-in-form']//button[@type='submit']")
        .await;
    browser.text_with("//span[@id='who']", "(admin)").await;
    let code = code_of_someone_else(&idp, &app.url("/dashboard")).await;

    browser
        .client
        .goto(&format!(
            "{}?code={code}&state=forged",
            app.url("/dashboard")
        ))
        .await
        .unwrap();

    // The page loaded afresh: its list and who is signed in come from the token it kept.
    browser
        .text_with("//p[@id='page-status']", "No clients")
        .await;
    let who = browser.text_with("//span[@id='who']", "(admin)").await;
    assert!(who.contains(SUBJECT), "{who}");
    let address = browser.client.current_url().await.unwrap();
    assert!(!address.as_str().contains("code="), "{address}");
    assert_eq!(idp.token_requests(), 0, "no token request");
    browser.close().await;
}

/// As checklist 13 asks of the consent callback: the provider's refusal is shown as its error
/// code and description, as text (markup in it stays characters), never a blank area;
/// nothing is redeemed.
#[both_backends]
async fn the_providers_refusal_is_shown_as_text(backend: Backend) {
    let idp = provider().await;
    let Some(app) = app_signing_in_at(backend, &idp).await else {
        return;
    };
    let Some(browser) = Browser::open().await else {
        return;
    };
    sign_in_waiting(&browser, &app, "issued-here").await;

    let mut answer = url::Url::parse(&app.url("/dashboard")).unwrap();
    answer
        .query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair("error_description", "<b>Ada</b> may not use Consentry")
        .append_pair("state", "issued-here");
    browser.client.goto(answer.as_str()).await.unwrap();

    let said = browser.text_with(SIGN_IN_ERROR, "access_denied").await;
    assert!(said.contains("<b>Ada</b> may not use Consentry"), "{said}");
    assert_eq!(
        browser
            .run(
                "return document.querySelectorAll('#sign-in-error b').length",
                vec![]
            )
            .await,
        json!(0)
    );
    assert_eq!(idp.token_requests(), 0);
    assert_eq!(browser.run(PENDING, vec![]).await, Value::Null);
    browser.close().await;
}
