//! The callback and the authorization request against a hostile browser or network
//! (checklist §A): states bound to their flow, tampered and swapped states, off-site
//! redirects, spoofed forwarding headers, and what every sign-in request carries.

use std::collections::HashMap;

use crate::support::flows::{
    World, admin_consent, authorise, browser, callback, consent_page, healthy, location,
    new_client, tile, world,
};
use consentry_tests::{Backend, TestApp, both_backends, eventually};
use reqwest::StatusCode;
use serde_json::json;
use url::Url;

fn params(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let mut url = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .filter(|(n, _)| n != name)
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(name, value);
    url
}

fn token_requests(world: &World) -> usize {
    world
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
        .count()
}

/// Headers a proxy (or an attacker in front of one) could add.
fn spoofed(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request
        .header("x-forwarded-host", "evil.example.com")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-port", "666")
        .header("forwarded", "host=evil.example.com;proto=http")
        .header("x-original-url", "https://evil.example.com/")
}

/// Checklist 5, 6: a `state` is an opaque random value that names one flow, bound to its
/// MSP, client and kind. One character changed → 400, nothing stored, nothing asked. A
/// state swapped into another tenant's answer acts only on its own flow, and a consent is
/// never attached to any other client or MSP.
#[both_backends]
async fn checklist_5_6_states_are_bound_to_their_flow_and_tampering_is_refused(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let fabrikam = healthy("fabrikam.onmicrosoft.com");
    let Some(world) = world(backend, vec![contoso.clone(), fabrikam.clone()], |_| {}).await else {
        return;
    };
    let app = &world.app;
    let a = app.caller("msp-a", &["admin"]).await;
    let b = app.caller("msp-b", &["admin"]).await;
    let a_client = new_client(&a, "Contoso", Some(&contoso.domain), Some(contoso.id)).await;
    let b_client = new_client(&b, "Fabrikam", Some(&fabrikam.domain), Some(fabrikam.id)).await;
    let a_link = authorise(&a, &a_client).await;
    let b_link = authorise(&b, &b_client).await;
    let a_back = admin_consent(
        a_link["url"].as_str().unwrap(),
        contoso.admin().unwrap().id,
        "accept",
    )
    .await;
    let b_state = params(&Url::parse(b_link["url"].as_str().unwrap()).unwrap())["state"].clone();
    let asked = token_requests(&world);

    // Tampered: the last character of a genuine state changed.
    let state = params(&a_back)["state"].clone();
    let mut tampered = state.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let response = callback(app, &with_param(&a_back, "state", &tampered)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(token_requests(&world), asked, "nothing asked of Microsoft");
    assert_eq!(tile(&a, &a_client).await["status"], "AWAITING_CONSENT");

    // Swapped: Contoso's answer carrying MSP B's state acts on MSP B's flow only — where it
    // proves nothing (B's flow expects its admin's sign-in), so it authorises nothing.
    let response = callback(app, &with_param(&a_back, "state", &b_state)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let b_tile = tile(&b, &b_client).await;
    assert_eq!(b_tile["status"], "FAILED", "{b_tile}");
    assert_eq!(token_requests(&world), asked, "nothing asked of Microsoft");
    assert_eq!(tile(&a, &a_client).await["status"], "AWAITING_CONSENT");

    // The genuine callback still completes, for its own client only.
    let response = callback(app, &a_back).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(tile(&a, &a_client).await["status"], "AUTHORISED");
    assert_eq!(tile(&b, &b_client).await["status"], "FAILED");
}

/// Checklist 16, 17, 20: whatever the request says — `returnTo`/`next` parameters, spoofed
/// `X-Forwarded-*`/`Forwarded`/`Host` headers — the redirect URI Microsoft gets and the
/// redirect after the callback stay Consentry's own; the callback redirects at once (303)
/// with `Referrer-Policy: no-referrer`, and the result page loads nothing from anywhere.
#[both_backends]
async fn checklist_16_17_20_redirects_stay_home_whatever_the_request_says(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let app: &TestApp = &world.app;
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let token = caller.token.clone().unwrap();
    let link: serde_json::Value = spoofed(app.http.post(app.url("/graphql")))
        .header("host", "evil.example.com")
        .bearer_auth(&token)
        .json(&json!({
            "query": "mutation($id: ID!) { authoriseGraphApi(clientId: $id) { url } }",
            "variables": { "id": client },
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = Url::parse(link["data"]["authoriseGraphApi"]["url"].as_str().unwrap()).unwrap();
    assert_eq!(params(&url)["redirect_uri"], app.url("/oauth/callback"));

    let admin = contoso.admin().unwrap().id;
    let hostile = |back: &Url| {
        let mut hostile = back.clone();
        hostile
            .query_pairs_mut()
            .append_pair("returnTo", "https://evil.example.com/")
            .append_pair("next", "//evil.example.com/")
            .append_pair("redirect_uri", "https://evil.example.com/");
        hostile
    };
    // The sign-in's callback sends the browser on to Microsoft's consent page, at the
    // configured authority, with Consentry's own redirect URI.
    let signed_in = consent_page(url.as_str(), admin, "accept").await;
    let response = spoofed(browser().get(hostile(&signed_in)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    let consent = Url::parse(&location(&response)).unwrap();
    assert_eq!(consent.origin(), world.sim.base_url().origin(), "{consent}");
    assert_eq!(params(&consent)["redirect_uri"], app.url("/oauth/callback"));

    let back = consent_page(consent.as_str(), admin, "accept").await;
    let response = spoofed(browser().get(hostile(&back))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let target = location(&response);
    assert!(
        target.starts_with(&app.url("/oauth/result/")),
        "redirected to {target}"
    );
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    assert_eq!(response.headers()["cache-control"], "no-store");

    let page = browser().get(&target).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("http"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    for third_party in ["<script", "src=", "evil.example.com"] {
        assert!(!html.contains(third_party), "{third_party} in {html}");
    }
    // Its one link leads back to Consentry's own dashboard, from the public URL.
    let links: Vec<_> = html.split("href=\"").skip(1).collect();
    assert_eq!(links.len(), 1, "{html}");
    assert!(
        links[0].starts_with(&format!("{}\"", app.url("/dashboard"))),
        "{html}"
    );
    assert_eq!(tile(&caller, &client).await["status"], "AUTHORISED");
}

/// Checklist 8, 18: a sign-in asks only for `response_type=code` with an S256 PKCE challenge
/// and Consentry's own redirect URI, and the code is redeemed with that same redirect URI
/// and the verifier (43–128 characters, never in a URL). A public URL that is not HTTPS is
/// refused at start (loopback aside).
#[both_backends]
async fn checklist_8_18_sign_ins_use_the_code_flow_with_s256_and_one_redirect_uri(
    backend: Backend,
) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let app = &world.app;
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let link = caller
        .run(
            "mutation($id: ID!) { startDelegatedConsent(clientId: $id, permissions: [MAIL_SEND]) { url } }",
            json!({ "id": client }),
        )
        .await;
    let url = Url::parse(
        link.data()["startDelegatedConsent"]["url"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let query = params(&url);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert_eq!(query["redirect_uri"], app.url("/oauth/callback"));
    assert!(!query.contains_key("code_verifier"));
    assert!(
        query
            .get("response_mode")
            .is_none_or(|mode| mode == "query")
    );

    let back = consent_page(url.as_str(), contoso.admin().unwrap().id, "accept").await;
    assert!(!back.as_str().contains("code_verifier"));
    let response = callback(app, &back).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let redemption = eventually(
        std::time::Duration::from_secs(5),
        "the code redemption",
        || async {
            world
                .sim
                .requests()
                .into_iter()
                .find(|r| r.param("grant_type") == Some("authorization_code"))
        },
    )
    .await;
    assert_eq!(
        redemption.param("redirect_uri"),
        Some(app.url("/oauth/callback").as_str())
    );
    let verifier = redemption.param("code_verifier").unwrap();
    assert!((43..=128).contains(&verifier.len()), "{verifier}");

    let mut settings = api::Settings::defaults();
    settings.public_url = Url::parse("http://consentry.example.com").unwrap();
    let refused = settings.validate().unwrap_err().to_string();
    assert!(refused.contains("https"), "{refused}");
}

/// Checklist 11 (RFC 9207): an answer whose `iss` is not exactly the issuer the request went
/// to (`{authority}/{tenant}/v2.0`, compared after form-decoding) fails its flow like an error
/// answer, and its code is never redeemed; the right `iss` is accepted. (Microsoft does not
/// advertise `authorization_response_iss_parameter_supported`, so a missing `iss` is fine.)
#[both_backends]
async fn checklist_11_an_answer_from_another_issuer_is_refused(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let app = &world.app;
    let caller = app.caller("msp-a", &["admin"]).await;
    let authority = world
        .sim
        .base_url()
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let good = format!("{authority}/{}/v2.0", contoso.id);
    let admin = contoso.admin().unwrap().id;

    // A delegated sign-in whose answer names another issuer: no code is redeemed.
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), Some(contoso.id)).await;
    for wrong in [
        format!("https://evil.example.com/{}/v2.0", contoso.id),
        format!("{authority}/{}/v2.0", uuid::Uuid::new_v4()),
        format!("{authority}/{}/v2.0/", contoso.id),
        format!("{authority}/organizations/v2.0"),
    ] {
        let link = caller
            .run(
                "mutation($id: ID!) { startDelegatedConsent(clientId: $id, permissions: [MAIL_SEND]) { url } }",
                json!({ "id": client }),
            )
            .await;
        let url = link.data()["startDelegatedConsent"]["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let back = consent_page(&url, admin, "accept").await;
        let response = callback(app, &with_param(&back, "iss", &wrong)).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{wrong}");
        let page = browser().get(location(&response)).send().await.unwrap();
        assert_eq!(page.headers()["x-consentry-outcome"], "failed", "{wrong}");
        assert_eq!(token_requests(&world), 0, "{wrong}: no code redeemed");
    }
    let consents = caller
        .run(
            "query($id: ID!) { client(id: $id) { delegatedConsents { id } } }",
            json!({ "id": client }),
        )
        .await;
    assert_eq!(consents.data()["client"]["delegatedConsents"], json!([]));

    // Admin consent: another issuer fails the tile; the right one is verified as usual.
    let link = authorise(&caller, &client).await;
    let back = admin_consent(link["url"].as_str().unwrap(), admin, "accept").await;
    let evil = format!("https://evil.example.com/{}/v2.0", contoso.id);
    let asked = token_requests(&world);
    callback(app, &with_param(&back, "iss", &evil)).await;
    assert_eq!(tile(&caller, &client).await["status"], "FAILED");
    assert_eq!(token_requests(&world), asked, "nothing verified");
    let link = authorise(&caller, &client).await;
    let back = admin_consent(link["url"].as_str().unwrap(), admin, "accept").await;
    let response = callback(app, &with_param(&back, "iss", &good)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(tile(&caller, &client).await["status"], "AUTHORISED");
}
