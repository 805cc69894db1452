//! "Authorise" end to end: consent links, the simulator's consent page driven as a browser
//! would, the callback (checklist 1–4, 12–15, 83, 84, 91, 92), verification and
//! re-verification, link expiry, and the audit trail — on SQLite and PostgreSQL.

use std::{collections::BTreeMap, time::Duration};

use crate::support::flows::{
    AUTHORISE, TEAMS, World, admin_consent, audit_actions, authorise, authorised, browser,
    callback, client_view, consent_page, flows, healthy, location, new_client, strings, tile,
    token_grants, token_requests, with_client, world,
};
use consentry_tests::{
    Backend, Caller, TestApp, both_backends, eventually, serde_json::Value, spawn_app_with, start,
};
use entity::{
    enums::{GraphApiStatus, OAuthFlowStatus},
    graph_api_tile, oauth_flow,
};
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use simulator::{Faults, SimTenant, Simulator};
use url::Url;
use uuid::Uuid;

const REQUIRED: [&str; 3] = [
    "Organization.Read.All",
    "Directory.Read.All",
    "Application.Read.All",
];

/// The `Server-Timing` durations of a response, in milliseconds, by metric name.
fn server_timing(response: &reqwest::Response) -> BTreeMap<String, f64> {
    let header = response.headers()["server-timing"].to_str().unwrap();
    header
        .split(',')
        .map(|metric| {
            let mut parts = metric.trim().split(';');
            let name = parts.next().unwrap().to_owned();
            let duration = parts
                .find_map(|p| p.strip_prefix("dur="))
                .unwrap_or_else(|| panic!("no duration in {header}"))
                .parse()
                .unwrap();
            (name, duration)
        })
        .collect()
}

fn all_token_requests(sim: &Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
        .count()
}

/// Contoso (a healthy tenant) behind a server of its own, with a client of MSP A for it.
async fn contoso(backend: Backend) -> Option<(World, SimTenant, String)> {
    let contoso = healthy("contoso.onmicrosoft.com");
    let (world, client) = with_client(backend, &contoso, "Contoso", |_| {}).await?;
    Some((world, contoso, client))
}

/// The link's `state`.
fn state_of(link: &Value) -> String {
    let url = Url::parse(link["url"].as_str().unwrap()).unwrap();
    let (_, state) = url.query_pairs().find(|(k, _)| k == "state").unwrap();
    state.into_owned()
}

/// Contoso's admin goes through `link` and accepts: the answer to the consent's callback.
async fn accepted(app: &TestApp, contoso: &SimTenant, link: &Value) -> reqwest::Response {
    let admin = contoso.admin().unwrap().id;
    let back = admin_consent(link["url"].as_str().unwrap(), admin, "accept").await;
    callback(app, &back).await
}

/// Checklist 7: the link is a sign-in at Microsoft (PKCE, a nonce, the client's domain as a
/// hint) that lives 15 minutes, and its `state` is stored only as its hash.
#[both_backends]
async fn checklist_7_the_authorise_link_is_a_sign_in_whose_state_is_kept_hashed(backend: Backend) {
    let Some((World { sim, app }, _, client)) = contoso(backend).await else {
        return;
    };
    let caller = app.caller("msp-a", &["technician"]).await;

    let before = chrono::Utc::now();
    let link = authorise(&caller, &client).await;
    assert_eq!(link["graphApiTile"]["status"], "AWAITING_CONSENT");
    assert_eq!(link["client"]["id"], client.as_str());
    let expires: chrono::DateTime<chrono::Utc> =
        link["expiresAt"].as_str().unwrap().parse().unwrap();
    let lifetime = expires - before;
    assert!(
        lifetime > chrono::Duration::minutes(14)
            && lifetime <= chrono::Duration::minutes(15) + chrono::Duration::seconds(5),
        "links live 15 minutes by default: {lifetime}"
    );
    let url = Url::parse(link["url"].as_str().unwrap()).unwrap();
    assert_eq!(
        url.origin(),
        sim.base_url().origin(),
        "the link is Microsoft's page"
    );
    // First the admin signs in (an OpenID Connect code flow at `organizations`, the client's
    // domain only a hint), which proves their tenant; Microsoft's consent page follows.
    assert_eq!(url.path(), "/organizations/oauth2/v2.0/authorize");
    let query: BTreeMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["redirect_uri"], app.url("/oauth/callback"));
    assert_eq!(query["domain_hint"], "contoso.onmicrosoft.com");
    assert_eq!(query["scope"], "openid profile");
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["prompt"], "select_account");
    assert!(query["nonce"].len() >= 43);

    let stored = flows(&app).await;
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].state_hash, query["state"]);
    assert_eq!(stored[0].state_hash.len(), 64);
    assert_eq!(stored[0].status, OAuthFlowStatus::Pending);
}

/// The admin's sign-in proves their tenant and sends them on to Microsoft's consent page of
/// that tenant, with a state of its own; the sign-in's verifier and nonce are used up.
#[both_backends]
async fn signing_in_proves_the_tenant_and_continues_to_its_consent_page(backend: Backend) {
    let Some((World { sim, app }, contoso, client)) = contoso(backend).await else {
        return;
    };
    let caller = app.caller("msp-a", &["technician"]).await;
    let link = authorise(&caller, &client).await;

    let admin = contoso.admin().unwrap().id;
    let signed_in = consent_page(link["url"].as_str().unwrap(), admin, "accept").await;
    let onward = callback(&app, &signed_in).await;
    assert_eq!(onward.status(), StatusCode::SEE_OTHER);
    assert_eq!(onward.headers()["referrer-policy"], "no-referrer");
    let consent = Url::parse(&location(&onward)).unwrap();
    assert_eq!(consent.origin(), sim.base_url().origin());
    assert_eq!(
        consent.path(),
        format!("/{}/v2.0/adminconsent", contoso.id),
        "the consent page of the tenant the admin proved"
    );
    let consent_state: BTreeMap<_, _> = consent.query_pairs().into_owned().collect();
    assert_ne!(
        consent_state["state"],
        state_of(&link),
        "a state of its own"
    );
    assert_eq!(tile(&caller, &client).await["status"], "AWAITING_CONSENT");
    let stored = flows(&app).await;
    assert_eq!(stored[0].status, OAuthFlowStatus::Pending);
    assert!(
        stored[0].sealed_pkce_verifier.is_none()
            && stored[0].pkce_verifier_key_id.is_none()
            && stored[0].nonce_hash.is_none(),
        "the sign-in's verifier and nonce are used up"
    );
    assert_ne!(stored[0].consent_state_hash, None);
}

/// Accepting ends on Consentry's result page: no referrer, a strict CSP, no script and no
/// state on it, and `Server-Timing` telling Consentry's own time from Microsoft's (issue 8,
/// target 5).
#[both_backends]
async fn an_accepted_consent_ends_on_a_result_page_that_keeps_nothing(backend: Backend) {
    let Some((World { app, sim: _sim }, contoso, client)) = contoso(backend).await else {
        return;
    };
    let caller = app.caller("msp-a", &["technician"]).await;
    let link = authorise(&caller, &client).await;

    let response = accepted(&app, &contoso, &link).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    let timing = server_timing(&response);
    assert!(timing["app"] > 0.0, "{timing:?}");
    assert!(
        timing["microsoft"] > 0.0,
        "two calls to Microsoft were timed: {timing:?}"
    );
    let result = location(&response);
    assert!(result.starts_with(&app.url("/oauth/result/")), "{result}");

    let page = browser().get(&result).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Contoso") && html.contains("authorised"),
        "{html}"
    );
    assert!(
        !html.contains(&state_of(&link)) && !html.contains("<script"),
        "no state, no script"
    );
}

/// Without a frontend of its own (`CONSENTRY_FRONTEND_URL` unset), the oauth result page
/// links back to Consentry's dashboard, under the public URL.
#[both_backends]
async fn the_oauth_result_page_links_back_to_the_dashboard(backend: Backend) {
    let Some((World { app, sim: _sim }, contoso, client)) = contoso(backend).await else {
        return;
    };
    let caller = app.caller("msp-a", &["technician"]).await;
    let link = authorise(&caller, &client).await;

    let result = location(&accepted(&app, &contoso, &link).await);
    let html = browser()
        .get(&result)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let dashboard = app.url("/dashboard");
    assert!(
        html.contains(&format!(
            "<a href=\"{dashboard}\">Back to the dashboard</a>"
        )),
        "{html}"
    );
}

/// An accepted consent is verified with one app-only token and one organization read, and
/// authorises the tile: every required permission granted, the tenant recorded with who
/// proved it. The finished flow keeps no secret material.
#[both_backends]
async fn an_accepted_consent_is_verified_once_and_authorises_the_tile(backend: Backend) {
    let Some((World { sim, app }, contoso, client)) = contoso(backend).await else {
        return;
    };
    let caller = app.caller("msp-a", &["technician"]).await;
    let link = authorise(&caller, &client).await;
    accepted(&app, &contoso, &link).await;

    let view = client_view(&caller, &client).await;
    let tile = &view["graphApiTile"];
    assert_eq!(tile["status"], "AUTHORISED");
    assert_eq!(strings(&tile["grantedPermissions"]), REQUIRED);
    assert_eq!(strings(&tile["missingPermissions"]), Vec::<String>::new());
    assert!(tile["authorisedAt"].is_string() && tile["lastVerifiedAt"].is_string());
    assert!(tile["problem"].is_null());
    assert_eq!(
        strings(&tile["availableActions"]),
        ["VERIFY", "AUTHORISE", "DELEGATE"]
    );
    assert_eq!(
        view["azureTenantId"],
        contoso.id.to_string(),
        "the tenant is recorded"
    );
    let proof = &tile["tenantProof"];
    assert_eq!(proof["tenantId"], contoso.id.to_string());
    assert_eq!(proof["signedInAs"], "admin@contoso.onmicrosoft.com");
    assert_eq!(proof["roles"], json!(["Global Administrator"]));

    assert_eq!(
        token_requests(&sim, &contoso.id.to_string(), "client_credentials"),
        1
    );
    assert_eq!(
        sim.requests()
            .iter()
            .filter(|r| r.path == "/v1.0/organization")
            .count(),
        1
    );
    assert!(
        sim.requests()
            .iter()
            .all(|r| !r.query.contains_key("client_secret")),
        "the secret never travels in a URL"
    );

    let stored = flows(&app).await;
    assert_eq!(stored[0].status, OAuthFlowStatus::Succeeded);
    assert!(stored[0].sealed_pkce_verifier.is_none() && stored[0].nonce_hash.is_none());
}

/// Every step of a consent is in the client's audit trail, newest first and paged: who
/// started it, who proved the tenant (the callback, naming the admin), each status change.
#[both_backends]
async fn every_step_of_a_consent_is_in_the_audit_trail(backend: Backend) {
    let Some((World { app, sim: _sim }, contoso, client)) = contoso(backend).await else {
        return;
    };
    let caller = app.caller("msp-a", &["technician"]).await;
    let link = authorise(&caller, &client).await;
    accepted(&app, &contoso, &link).await;

    assert_eq!(
        audit_actions(&caller, &client).await,
        [
            "CONSENT_CALLBACK_RECEIVED",
            "GRAPH_API_STATUS_CHANGED",
            "GRAPH_API_STATUS_CHANGED",
            "TENANT_PROVEN",
            "GRAPH_API_AUTHORISATION_STARTED",
            "GRAPH_API_STATUS_CHANGED",
            "CLIENT_CREATED",
        ]
    );
    let page = caller
        .run(
            "query($id: ID!, $after: String) { client(id: $id) { auditLog(first: 2, after: $after) {
                pageInfo { hasNextPage endCursor } edges { node { action actorSubject details } } } } }",
            json!({ "id": client }),
        )
        .await;
    let log = &page.data()["client"]["auditLog"];
    assert_eq!(log["pageInfo"]["hasNextPage"], true);
    assert_eq!(log["edges"][1]["node"]["details"]["to"], "AUTHORISED");
    let next = caller
        .run(
            "query($id: ID!, $after: String) { client(id: $id) { auditLog(first: 2, after: $after) {
                edges { node { action actorSubject details } } } } }",
            json!({ "id": client, "after": log["pageInfo"]["endCursor"] }),
        )
        .await;
    let edges = &next.data()["client"]["auditLog"]["edges"];
    assert_eq!(edges[0]["node"]["details"]["to"], "VERIFYING");
    assert_eq!(edges[1]["node"]["action"], "TENANT_PROVEN");
    assert_eq!(
        edges[1]["node"]["details"]["signedInAs"],
        "admin@contoso.onmicrosoft.com"
    );
    assert_eq!(edges[1]["node"]["actorSubject"], "oauth-callback");
    let started = caller
        .run(
            "query($id: ID!) { client(id: $id) { auditLog(first: 10) {
                edges { node { action actorSubject } } } } }",
            json!({ "id": client }),
        )
        .await;
    let started = started.data()["client"]["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["action"] == "GRAPH_API_AUTHORISATION_STARTED")
        .cloned()
        .unwrap();
    assert_eq!(
        started["node"]["actorSubject"], "user@msp.example",
        "who started it"
    );
}

/// One client per failure scenario, each consented through the page.
#[both_backends]
async fn each_failure_scenario_ends_in_its_status_problem_and_actions(backend: Backend) {
    let missing = SimTenant::missing_teams("fabrikam.onmicrosoft.com", "Fabrikam");
    let declines = healthy("northwind.onmicrosoft.com").with_faults(Faults {
        consent_declined: true,
        ..Faults::default()
    });
    let cancels = healthy("cancel.onmicrosoft.com");
    let not_admin = SimTenant::without_admins("tailspin.onmicrosoft.com", "Tailspin");
    let mfa = healthy("woodgrove.onmicrosoft.com").with_faults(Faults {
        mfa_required: true,
        ..Faults::default()
    });
    let blocked = healthy("adatum.onmicrosoft.com").with_faults(Faults {
        conditional_access_blocked: true,
        ..Faults::default()
    });
    let partial = healthy("litware.onmicrosoft.com").with_faults(Faults {
        granted_roles: Some(vec!["Organization.Read.All".to_owned()]),
        ..Faults::default()
    });
    let failing = healthy("wingtip.onmicrosoft.com").with_faults(Faults {
        token_failure_status: Some(503),
        ..Faults::default()
    });
    let tenants = vec![
        missing.clone(),
        declines.clone(),
        cancels.clone(),
        not_admin.clone(),
        mfa.clone(),
        blocked.clone(),
        partial.clone(),
        failing.clone(),
    ];
    let Some(World { sim, app }) = world(backend, tenants, |_| {}).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;

    // (tenant, decision, status, code, aadsts, whether Microsoft's token endpoint is asked)
    type Case<'a> = (&'a SimTenant, &'a str, &'a str, &'a str, Option<i64>, bool);
    let cases: Vec<Case<'_>> = vec![
        (
            &missing,
            "accept",
            "FAILED",
            "MISSING_SERVICE_PRINCIPAL",
            Some(650052),
            false,
        ),
        (
            &declines,
            "accept",
            "FAILED",
            "CONSENT_DECLINED",
            Some(65004),
            false,
        ),
        (
            &cancels,
            "cancel",
            "FAILED",
            "CONSENT_DECLINED",
            Some(65004),
            false,
        ),
        // Found from the signed-in user's directory roles, before the consent page.
        (
            &not_admin,
            "accept",
            "FAILED",
            "ADMIN_CONSENT_REQUIRED",
            None,
            false,
        ),
        (
            &mfa,
            "accept",
            "FAILED",
            "CONDITIONAL_ACCESS",
            Some(50076),
            false,
        ),
        (
            &blocked,
            "accept",
            "FAILED",
            "CONDITIONAL_ACCESS",
            Some(53003),
            false,
        ),
        (
            &partial,
            "accept",
            "FAILED",
            "PERMISSIONS_MISSING",
            None,
            true,
        ),
        // The sign-in's own token request meets the outage: no verification is attempted.
        (
            &failing,
            "accept",
            "FAILED",
            "IDENTITY_PROVIDER_UNAVAILABLE",
            None,
            false,
        ),
    ];
    for (tenant, decision, status, code, aadsts, asks_microsoft) in cases {
        let client = new_client(&caller, &tenant.display_name, Some(&tenant.domain), None).await;
        let link = authorise(&caller, &client).await;
        let user = tenant.users[0].id;
        let back = admin_consent(link["url"].as_str().unwrap(), user, decision).await;
        let response = callback(&app, &back).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{code}");
        let page = browser().get(location(&response)).send().await.unwrap();
        assert_eq!(page.headers()["x-consentry-outcome"], "failed", "{code}");
        let html = page.text().await.unwrap();
        assert!(html.contains("What to do next"), "{html}");

        let tile = tile(&caller, &client).await;
        assert_eq!(tile["status"], status, "{code}: {tile}");
        assert_eq!(tile["problem"]["code"], code, "{tile}");
        assert_eq!(tile["problem"]["aadstsCode"].as_i64(), aadsts, "{code}");
        assert!(!tile["problem"]["remediation"].as_str().unwrap().is_empty());
        let asked = token_requests(&sim, &tenant.id.to_string(), "client_credentials") > 0;
        assert_eq!(
            asked, asks_microsoft,
            "{code}: an error callback asks Microsoft nothing (checklist 13)"
        );
        let actions = strings(&tile["availableActions"]);
        if code == "MISSING_SERVICE_PRINCIPAL" {
            assert_eq!(actions, ["CREATE_SERVICE_PRINCIPAL", "AUTHORISE"]);
            assert_eq!(tile["problem"]["appId"], TEAMS);
            assert_eq!(
                tile["problem"]["appDisplayName"],
                "Skype and Teams Tenant Admin API"
            );
        } else {
            assert_eq!(actions, ["AUTHORISE"], "{code}");
        }
        if code == "PERMISSIONS_MISSING" {
            assert_eq!(
                strings(&tile["grantedPermissions"]),
                ["Organization.Read.All"]
            );
            assert_eq!(
                strings(&tile["missingPermissions"]),
                ["Directory.Read.All", "Application.Read.All"]
            );
            let remediation = tile["problem"]["remediation"].as_str().unwrap();
            assert!(
                remediation.contains("Directory.Read.All")
                    && remediation.contains("Application.Read.All")
            );
        }
    }
}

/// Checklist 1, 2: a missing, never-issued or repeated state is a 400 that stores nothing and asks
/// Microsoft nothing.
#[both_backends]
async fn checklist_1_2_unknown_or_missing_state_is_400_and_stores_nothing(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(World { sim, app }) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let link = authorise(&caller, &client).await;
    let issued: BTreeMap<_, _> = Url::parse(link["url"].as_str().unwrap())
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let audit_before = audit_actions(&caller, &client).await;
    let flows_before = flows(&app).await;

    let tenant = contoso.id.to_string();
    for query in [
        format!("admin_consent=True&tenant={tenant}"),
        // Two states, even the issued one twice: ambiguous, so not acted on.
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("admin_consent", "True")
            .append_pair("tenant", &tenant)
            .append_pair("state", &issued["state"])
            .append_pair("state", &issued["state"])
            .finish(),
        format!("admin_consent=True&tenant={tenant}&state="),
        format!(
            "admin_consent=True&tenant={tenant}&state=never-issued-{}",
            Uuid::new_v4()
        ),
        "state=%3Cscript%3Ealert(1)%3C%2Fscript%3E&error=access_denied".to_owned(),
        format!("state={}", "x".repeat(5000)),
    ] {
        let response = browser()
            .get(app.url(&format!("/oauth/callback?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(response.headers()["referrer-policy"], "no-referrer");
        let html = response.text().await.unwrap();
        assert!(
            !html.contains("<script>alert") && !html.contains("never-issued"),
            "nothing echoed"
        );
    }
    assert_eq!(all_token_requests(&sim), 0, "no token request");
    assert_eq!(
        audit_actions(&caller, &client).await,
        audit_before,
        "nothing audited"
    );
    assert_eq!(flows(&app).await, flows_before, "no flow touched");
    assert_eq!(tile(&caller, &client).await["status"], "AWAITING_CONSENT");
}

/// Checklist 3, 83: a replayed callback shows the first outcome and exchanges nothing twice.
#[both_backends]
async fn checklist_3_83_replayed_callback_shows_the_first_outcome(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(World { sim, app }) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let link = authorise(&caller, &client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        contoso.admin().unwrap().id,
        "accept",
    )
    .await;
    let first = location(&callback(&app, &back).await);
    for _ in 0..3 {
        let again = callback(&app, &back).await;
        assert_eq!(again.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&again), first, "the same final page");
    }
    assert_eq!(
        token_requests(&sim, &contoso.id.to_string(), "client_credentials"),
        1
    );
    let callbacks = audit_actions(&caller, &client)
        .await
        .iter()
        .filter(|a| *a == "CONSENT_CALLBACK_RECEIVED")
        .count();
    assert_eq!(callbacks, 1);
    assert_eq!(tile(&caller, &client).await["status"], "AUTHORISED");
}

/// Checklist 84: fifty concurrent callbacks with one state → one verification, one outcome.
#[both_backends]
async fn checklist_84_fifty_concurrent_callbacks_verify_once(backend: Backend) {
    // A slow token endpoint keeps the first verification busy while the others arrive.
    let contoso = healthy("contoso.onmicrosoft.com").with_faults(Faults {
        token_delay_ms: 300,
        ..Faults::default()
    });
    let Some(World { sim, app }) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let link = authorise(&caller, &client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        contoso.admin().unwrap().id,
        "accept",
    )
    .await;

    let requests = (0..50).map(|_| {
        let url = back.clone();
        async move { browser().get(url).send().await.unwrap() }
    });
    let responses = futures_util::future::join_all(requests).await;
    let locations: Vec<String> = responses
        .iter()
        .map(|r| {
            assert_eq!(r.status(), StatusCode::SEE_OTHER);
            location(r)
        })
        .collect();
    assert!(
        locations.iter().all(|l| *l == locations[0]),
        "one outcome for all"
    );
    assert_eq!(
        token_requests(&sim, &contoso.id.to_string(), "client_credentials"),
        1,
        "one verification"
    );
    assert_eq!(
        sim.requests()
            .iter()
            .filter(|r| r.path == "/v1.0/organization")
            .count(),
        1
    );
    let actions = audit_actions(&caller, &client).await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "CONSENT_CALLBACK_RECEIVED")
            .count(),
        1
    );
    assert_eq!(tile(&caller, &client).await["status"], "AUTHORISED");
}

/// Checklist 4: a callback after the link's expiry is refused with `LINK_EXPIRED`.
#[both_backends]
async fn checklist_4_expired_link_is_refused_as_link_expired(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(World { sim, app }) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let link = caller
        .run(AUTHORISE, json!({ "id": client, "minutes": 1 }))
        .await
        .data()["authoriseGraphApi"]
        .clone();
    // The admin signs in, but comes back only after the link expired.
    let back = consent_page(
        link["url"].as_str().unwrap(),
        contoso.admin().unwrap().id,
        "accept",
    )
    .await;
    expire_all_links(&app).await;

    let response = callback(&app, &back).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let html = browser()
        .get(location(&response))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("expired"), "{html}");
    let tile = tile(&caller, &client).await;
    assert_eq!(tile["status"], "FAILED");
    assert_eq!(tile["problem"]["code"], "LINK_EXPIRED");
    assert_eq!(
        strings(&tile["availableActions"]),
        ["CREATE_SERVICE_PRINCIPAL", "AUTHORISE"]
    );
    assert_eq!(all_token_requests(&sim), 0, "nothing asked of Microsoft");
    assert_eq!(flows(&app).await[0].status, OAuthFlowStatus::Expired);
}

/// The `details` of a client's audit entries with `action`, newest first.
async fn audit_details(caller: &Caller<'_>, client: &str, action: &str) -> Vec<Value> {
    let response = caller
        .run(
            "query($id: ID!) { client(id: $id) { auditLog(first: 100) { edges { node { action details } } } } }",
            json!({ "id": client }),
        )
        .await;
    response.data()["client"]["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["action"] == action)
        .map(|e| e["node"]["details"].clone())
        .collect()
}

async fn expire_all_links(app: &TestApp) {
    for flow in flows(app).await {
        let mut active: oauth_flow::ActiveModel = flow.clone().into();
        active.expires_at = Set(chrono::Utc::now() - chrono::Duration::seconds(1));
        active.update(&app.db).await.unwrap();
    }
}

/// Pia's "the Accept window never appeared": a link nobody completes expires by itself, and
/// the tile says what to try.
#[both_backends]
async fn unused_link_expires_by_itself(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(World { app, sim: _sim }) = world(backend, vec![contoso.clone()], |s| {
        s.sweep_interval = Duration::from_millis(100);
    })
    .await
    else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let link = authorise(&caller, &client).await;
    let awaiting = tile(&caller, &client).await;
    assert_eq!(awaiting["status"], "AWAITING_CONSENT");
    // Issue 19: the tile shows when the link that is out stops working.
    assert_eq!(awaiting["consentLinkExpiresAt"], link["expiresAt"]);
    expire_all_links(&app).await;

    let tile = eventually(Duration::from_secs(10), "the link to expire", || async {
        let tile = tile(&caller, &client).await;
        (tile["status"] == "FAILED").then_some(tile)
    })
    .await;
    assert_eq!(tile["problem"]["code"], "LINK_EXPIRED");
    let remediation = tile["problem"]["remediation"].as_str().unwrap();
    assert!(remediation.contains("Accept window never appeared") && remediation.contains(TEAMS));
    assert_eq!(tile["problem"]["appId"], TEAMS);
    assert!(tile["consentLinkExpiresAt"].is_null(), "{tile}");
    assert_eq!(flows(&app).await[0].status, OAuthFlowStatus::Expired);
    // Issue 19: the audit trail spells the code as the API does.
    let failed = audit_details(&caller, &client, "GRAPH_API_STATUS_CHANGED")
        .await
        .into_iter()
        .find(|d| d["to"] == "FAILED")
        .unwrap();
    assert_eq!(failed["problem"]["code"], "LINK_EXPIRED", "{failed}");

    // Checklist 4: a week later the flow is garbage-collected and its state is unknown.
    let flow = flows(&app).await.remove(0);
    let mut old: oauth_flow::ActiveModel = flow.into();
    old.completed_at = Set(Some(chrono::Utc::now() - chrono::Duration::days(8)));
    old.update(&app.db).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the old flow to be deleted",
        || async { flows(&app).await.is_empty().then_some(()) },
    )
    .await;
    let state: BTreeMap<_, _> = Url::parse(link["url"].as_str().unwrap())
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let mut late = Url::parse(&app.url("/oauth/callback")).unwrap();
    late.query_pairs_mut()
        .append_pair("admin_consent", "True")
        .append_pair("tenant", &contoso.id.to_string())
        .append_pair("state", &state["state"]);
    assert_eq!(
        callback(&app, &late).await.status(),
        StatusCode::BAD_REQUEST
    );
}

/// Checklist 12, 14: the tenant comes from the admin's validated sign-in. The consent's
/// redirect must name that same tenant (it is compared, never adopted); a sign-in from
/// another tenant than the client's is refused before any consent; and a tenant that does
/// not own the client's domain is refused after verification.
#[both_backends]
async fn checklist_12_14_callback_from_another_tenant_is_refused(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let evil = healthy("evil.onmicrosoft.com");
    let Some(World { sim, app }) =
        world(backend, vec![contoso.clone(), evil.clone()], |_| {}).await
    else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;

    // The consent's redirect names another tenant than the one the admin proved: refused,
    // nothing verified.
    let known = new_client(&caller, "Contoso", None, Some(contoso.id)).await;
    let link = authorise(&caller, &known).await;
    let url = Url::parse(link["url"].as_str().unwrap()).unwrap();
    let hint: BTreeMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(
        hint["domain_hint"],
        contoso.id.to_string(),
        "tenant hint: the id"
    );
    let back = admin_consent(url.as_str(), contoso.admin().unwrap().id, "accept").await;
    let mut forged = Url::parse(&app.url("/oauth/callback")).unwrap();
    forged
        .query_pairs_mut()
        .extend_pairs(back.query_pairs().filter(|(k, _)| k != "tenant"))
        .append_pair("tenant", &evil.id.to_string());
    let response = callback(&app, &forged).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let refused = tile(&caller, &known).await;
    assert_eq!(refused["status"], "FAILED");
    assert_eq!(refused["problem"]["code"], "WRONG_TENANT");
    assert_eq!(token_grants(&sim, "client_credentials"), 0);

    // An admin of another tenant signs in for a client whose tenant is known: refused at the
    // sign-in, before Microsoft's consent page (checklist 12).
    let link = authorise(&caller, &known).await;
    let signed_in = consent_page(
        link["url"].as_str().unwrap(),
        evil.admin().unwrap().id,
        "accept",
    )
    .await;
    let response = callback(&app, &signed_in).await;
    assert!(location(&response).contains("/oauth/result/"));
    let tile = tile(&caller, &known).await;
    assert_eq!(tile["problem"]["code"], "WRONG_TENANT", "{tile}");
    assert!(
        tile["problem"]["remediation"]
            .as_str()
            .unwrap()
            .contains(&contoso.id.to_string())
    );
    assert_eq!(token_grants(&sim, "client_credentials"), 0);

    // Only a domain known: the tenant whose admin consented must own it.
    let by_domain = new_client(&caller, "Contoso by domain", Some(&contoso.domain), None).await;
    let link = authorise(&caller, &by_domain).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        evil.admin().unwrap().id,
        "accept",
    )
    .await;
    callback(&app, &back).await;
    let view = client_view(&caller, &by_domain).await;
    assert_eq!(view["graphApiTile"]["status"], "FAILED");
    assert_eq!(view["graphApiTile"]["problem"]["code"], "WRONG_TENANT");
    assert!(
        view["graphApiTile"]["problem"]["remediation"]
            .as_str()
            .unwrap()
            .contains("contoso.onmicrosoft.com")
    );
    assert!(view["azureTenantId"].is_null(), "no tenant recorded");
}

/// Checklist 13: an error callback is HTML-escaped on its page and asks Microsoft nothing.
#[both_backends]
async fn checklist_13_error_callback_is_escaped_and_asks_microsoft_nothing(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(World { sim, app }) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso <b>", Some(&contoso.domain), None).await;
    let link = authorise(&caller, &client).await;
    let state: BTreeMap<_, _> = Url::parse(link["url"].as_str().unwrap())
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let mut forged = Url::parse(&app.url("/oauth/callback")).unwrap();
    forged
        .query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair(
            "error_description",
            "AADSTS65004: <script>alert(1)</script> declined",
        )
        .append_pair("admin_consent", "True")
        .append_pair("state", &state["state"]);
    let response = callback(&app, &forged).await;
    let html = browser()
        .get(location(&response))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // A redirect's description is nobody's word: it is neither shown nor kept (checklist 96);
    // what is shown is escaped.
    assert!(!html.contains("alert(1)"), "{html}");
    assert!(!html.contains("Microsoft said"), "{html}");
    assert!(
        !html.contains("<script>") && !html.contains("<b>"),
        "{html}"
    );
    assert!(html.contains("Contoso &lt;b&gt;"));
    assert_eq!(
        tile(&caller, &client).await["problem"]["code"],
        "CONSENT_DECLINED"
    );
    assert_eq!(all_token_requests(&sim), 0);
}

/// Checklist 15: one MSP's consent never authorises another MSP's client, verification never
/// authorises, and within one MSP a tenant belongs to one client.
#[both_backends]
async fn checklist_15_consent_stays_with_its_msp_and_client(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(World { app, sim: _sim }) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let a = app.caller("msp-a", &["admin"]).await;
    let b = app.caller("msp-b", &["admin"]).await;
    let a_client = new_client(&a, "Contoso", Some(&contoso.domain), None).await;
    let b_client = new_client(&b, "Contoso", Some(&contoso.domain), Some(contoso.id)).await;

    let link = authorise(&a, &a_client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        contoso.admin().unwrap().id,
        "accept",
    )
    .await;
    callback(&app, &back).await;
    assert_eq!(tile(&a, &a_client).await["status"], "AUTHORISED");
    assert_eq!(
        tile(&b, &b_client).await["status"],
        "NOT_AUTHORISED",
        "co-managed, not shared"
    );

    let refused = b
        .run(
            "mutation($id: ID!) { verifyGraphApi(clientId: $id) { status } }",
            json!({ "id": b_client }),
        )
        .await;
    assert_eq!(refused.error_code(), "BAD_USER_INPUT");
    assert!(refused.error_message().contains("authoriseGraphApi"));
    assert_eq!(tile(&b, &b_client).await["status"], "NOT_AUTHORISED");

    // MSP A's second client for the same tenant cannot take it over.
    let twin = new_client(&a, "Contoso twin", None, None).await;
    let link = authorise(&a, &twin).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        contoso.admin().unwrap().id,
        "accept",
    )
    .await;
    callback(&app, &back).await;
    let twin_view = client_view(&a, &twin).await;
    assert_eq!(twin_view["graphApiTile"]["problem"]["code"], "WRONG_TENANT");
    assert!(
        twin_view["graphApiTile"]["problem"]["remediation"]
            .as_str()
            .unwrap()
            .contains("Contoso")
    );
    assert!(twin_view["azureTenantId"].is_null());
}

/// `verifyGraphApi` re-checks now; lost consent (AADSTS700016) becomes `REVOKED`.
#[both_backends]
async fn verify_turns_lost_consent_into_revoked(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["technician"]).await;
    let client = authorised(&world, &caller, &contoso, "Contoso").await;
    let first = tile(&caller, &client).await["lastVerifiedAt"].clone();

    const VERIFY: &str = "mutation($id: ID!) { verifyGraphApi(clientId: $id) {
        status lastVerifiedAt grantedPermissions problem { code aadstsCode remediation } availableActions } }";
    let verified = caller.run(VERIFY, json!({ "id": client })).await;
    let verified = &verified.data()["verifyGraphApi"];
    assert_eq!(verified["status"], "AUTHORISED");
    assert_ne!(verified["lastVerifiedAt"], first, "verified again");
    assert_eq!(
        audit_actions(&caller, &client).await[0],
        "GRAPH_API_VERIFIED"
    );

    world.sim.revoke_admin_consent(contoso.id);
    let revoked = caller.run(VERIFY, json!({ "id": client })).await;
    let revoked = &revoked.data()["verifyGraphApi"];
    assert_eq!(revoked["status"], "REVOKED");
    assert_eq!(revoked["problem"]["code"], "CONSENT_REVOKED");
    assert_eq!(revoked["problem"]["aadstsCode"], 700016);
    assert_eq!(strings(&revoked["availableActions"]), ["AUTHORISE"]);

    let viewer = world.app.caller("msp-a", &["viewer"]).await;
    assert_eq!(
        viewer
            .run(VERIFY, json!({ "id": client }))
            .await
            .error_code(),
        "FORBIDDEN"
    );
}

/// The re-verification sweep finds lost consent by itself.
#[both_backends]
async fn reverification_finds_lost_consent(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![contoso.clone()], |s| {
        s.sweep_interval = Duration::from_millis(100);
        s.reverify_interval = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let client = authorised(&world, &caller, &contoso, "Contoso").await;
    world.sim.revoke_admin_consent(contoso.id);
    let tile = eventually(
        Duration::from_secs(15),
        "re-verification to notice",
        || async {
            let tile = tile(&caller, &client).await;
            (tile["status"] == "REVOKED").then_some(tile)
        },
    )
    .await;
    assert_eq!(tile["problem"]["code"], "CONSENT_REVOKED");
    let actions = audit_actions(&caller, &client).await;
    assert_eq!(actions[0], "GRAPH_API_STATUS_CHANGED");
}

/// Our own bad secret (AADSTS7000215) shows in `/readyz`, and leaves client tiles alone:
/// authorised tiles stay authorised, and a consent in progress is not marked failed.
#[both_backends]
async fn our_bad_secret_is_an_operator_problem(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let fabrikam = healthy("fabrikam.onmicrosoft.com");
    let Some(world) = world(backend, vec![contoso.clone(), fabrikam.clone()], |_| {}).await else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let authorised_client = authorised(&world, &caller, &contoso, "Contoso").await;
    drop(caller);
    let World { sim, app } = world;
    let database = app.stop().await;
    // Due now, set once that server is gone.
    let db = sea_orm::Database::connect(&database.url).await.unwrap();
    graph_api_tile::Entity::update_many()
        .col_expr(
            graph_api_tile::Column::NextVerificationAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
        )
        .exec(&db)
        .await
        .unwrap();

    let app = start(database, |s| {
        s.use_simulator(&sim);
        s.ms_client_secret = Some("not-the-secret".to_owned().into());
        s.sweep_interval = Duration::from_millis(100);
        s.reverify_interval = Duration::from_secs(1);
    })
    .await;
    let caller = app.caller("msp-a", &["admin"]).await;
    let ready = eventually(
        Duration::from_secs(15),
        "readyz to report our credentials",
        || async {
            let body: Value = app
                .http
                .get(app.url("/readyz"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (body["checks"]["microsoft"]["status"] == "credentials rejected").then_some(body)
        },
    )
    .await;
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["checks"]["microsoft"]["aadsts"], 7000215);
    assert!(!ready.to_string().contains("not-the-secret"));
    assert_eq!(
        tile(&caller, &authorised_client).await["status"],
        "AUTHORISED",
        "left alone"
    );

    let refused = caller
        .run(
            "mutation($id: ID!) { verifyGraphApi(clientId: $id) { status } }",
            json!({ "id": authorised_client }),
        )
        .await;
    assert_eq!(refused.error_code(), "MICROSOFT_UNAVAILABLE");
    assert!(
        refused
            .error_message()
            .contains("CONSENTRY_MS_CLIENT_SECRET"),
        "{}",
        refused.error_message()
    );
    assert!(!refused.body.to_string().contains("not-the-secret"));

    let fresh = new_client(&caller, "Fabrikam", Some(&fabrikam.domain), None).await;
    let link = authorise(&caller, &fresh).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        fabrikam.admin().unwrap().id,
        "accept",
    )
    .await;
    let response = callback(&app, &back).await;
    let html = browser()
        .get(location(&response))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("its own configuration"), "{html}");
    let tile = tile(&caller, &fresh).await;
    assert_eq!(tile["status"], "NOT_AUTHORISED", "not FAILED: {tile}");
    assert!(tile["problem"].is_null());
}

/// The page a browser shows for a callback's answer.
async fn result_page(app: &TestApp, back: &Url) -> String {
    browser()
        .get(location(&callback(app, back).await))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Only the client's own MSP's writers may hand out its link: a viewer and support staff are
/// refused, another MSP is told the client does not exist, and a refusal stores nothing.
#[both_backends]
async fn only_the_msps_writers_may_authorise_its_client(backend: Backend) {
    let Some((World { app, sim: _sim }, _, client)) = contoso(backend).await else {
        return;
    };
    for roles in [&["viewer"][..], &["support"][..]] {
        let caller = app.caller("msp-a", roles).await;
        let refused = caller.run(AUTHORISE, json!({ "id": client })).await;
        assert_eq!(refused.error_code(), "FORBIDDEN", "{roles:?}");
    }
    let other = app.caller("msp-b", &["admin"]).await;
    assert_eq!(
        other
            .run(AUTHORISE, json!({ "id": client }))
            .await
            .error_code(),
        "NOT_FOUND"
    );
    assert!(flows(&app).await.is_empty(), "refusals store nothing");
    let admin = app.caller("msp-a", &["admin"]).await;
    assert_eq!(tile(&admin, &client).await["status"], "NOT_AUTHORISED");
}

/// A link lives from one minute to a week: anything else is bad input, and stores nothing.
#[both_backends]
async fn a_link_lives_from_a_minute_to_a_week(backend: Backend) {
    let Some((World { app, sim: _sim }, _, client)) = contoso(backend).await else {
        return;
    };
    let admin = app.caller("msp-a", &["admin"]).await;
    for minutes in [0, -1, 10_081] {
        let refused = admin
            .run(AUTHORISE, json!({ "id": client, "minutes": minutes }))
            .await;
        assert_eq!(refused.error_code(), "BAD_USER_INPUT", "{minutes}");
    }
    assert!(flows(&app).await.is_empty(), "refusals store nothing");
    assert_eq!(tile(&admin, &client).await["status"], "NOT_AUTHORISED");

    let week = admin
        .run(AUTHORISE, json!({ "id": client, "minutes": 10_080 }))
        .await;
    let expires: chrono::DateTime<chrono::Utc> = week.data()["authoriseGraphApi"]["expiresAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        expires - chrono::Utc::now() > chrono::Duration::days(7) - chrono::Duration::minutes(1)
    );
}

/// A newer link replaces the older one: the older one, used after, is no longer valid and
/// changes nothing; the newer one authorises.
#[both_backends]
async fn a_newer_link_replaces_the_older_one(backend: Backend) {
    let Some((World { app, sim: _sim }, contoso, client)) = contoso(backend).await else {
        return;
    };
    let admin = app.caller("msp-a", &["admin"]).await;
    let old = authorise(&admin, &client).await;
    let new = authorise(&admin, &client).await;
    let old_back = admin_consent(
        old["url"].as_str().unwrap(),
        contoso.admin().unwrap().id,
        "accept",
    )
    .await;
    let html = result_page(&app, &old_back).await;
    assert!(html.contains("no longer valid"), "{html}");
    assert_eq!(tile(&admin, &client).await["status"], "AWAITING_CONSENT");

    accepted(&app, &contoso, &new).await;
    assert_eq!(tile(&admin, &client).await["status"], "AUTHORISED");
}

/// Re-consent: an authorised tile stays authorised while a new link is out, and a declined
/// re-consent leaves the working authorisation alone, saying so.
#[both_backends]
async fn a_declined_re_consent_leaves_the_authorisation_standing(backend: Backend) {
    let Some((World { app, sim: _sim }, contoso, client)) = contoso(backend).await else {
        return;
    };
    let admin = app.caller("msp-a", &["admin"]).await;
    let first = authorise(&admin, &client).await;
    accepted(&app, &contoso, &first).await;
    assert_eq!(tile(&admin, &client).await["status"], "AUTHORISED");

    let again = authorise(&admin, &client).await;
    assert_eq!(again["graphApiTile"]["status"], "AUTHORISED");
    let back = admin_consent(
        again["url"].as_str().unwrap(),
        contoso.admin().unwrap().id,
        "cancel",
    )
    .await;
    let html = result_page(&app, &back).await;
    assert!(
        html.contains("earlier authorisation still stands"),
        "{html}"
    );
    // Issue 19: the page is not headlined as if the client lost its authorisation.
    assert!(html.contains("<h1>Still authorised</h1>"), "{html}");
    assert!(!html.contains("Not authorised"), "{html}");
    assert_eq!(tile(&admin, &client).await["status"], "AUTHORISED");
}

/// Without an app registration, the mutation says which settings to set.
#[both_backends]
async fn without_microsoft_the_error_names_the_settings(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", None, None).await;
    let refused = caller.run(AUTHORISE, json!({ "id": client })).await;
    assert_eq!(refused.error_code(), "NOT_CONFIGURED");
    let message = refused.error_message();
    assert!(
        message.contains("CONSENTRY_MS_CLIENT_ID")
            && message.contains("CONSENTRY_MS_CLIENT_SECRET"),
        "{message}"
    );
    assert!(flows(&app).await.is_empty());
    assert_eq!(tile(&caller, &client).await["status"], "NOT_AUTHORISED");
}

/// With a frontend configured, the browser goes to its client page with the status.
#[both_backends]
async fn callback_redirects_to_the_frontend(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![contoso.clone()], |s| {
        s.frontend_url = Some(Url::parse("https://app.example.com/msp/").unwrap());
    })
    .await
    else {
        return;
    };
    let caller = world.app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let link = authorise(&caller, &client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        contoso.admin().unwrap().id,
        "accept",
    )
    .await;
    let response = callback(&world.app, &back).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    assert_eq!(
        location(&response),
        format!("https://app.example.com/msp/clients/{client}?graphApi=AUTHORISED")
    );
}

/// Checklist 91: with the database down no link is handed out, and a callback is a 503 that
/// leaves the flow unconsumed, so the same link succeeds once the database is back.
#[both_backends]
async fn checklist_91_database_outage_loses_nothing(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(World { sim, app }) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let link = authorise(&caller, &client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        contoso.admin().unwrap().id,
        "accept",
    )
    .await;
    let asked = all_token_requests(&sim);

    app.server_db.clone().close().await.unwrap();
    let refused = caller.run(AUTHORISE, json!({ "id": client })).await;
    assert_eq!(refused.error_code(), "UNAVAILABLE");
    assert!(refused.body["data"].is_null() || refused.body["data"]["authoriseGraphApi"].is_null());
    let response = callback(&app, &back).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        all_token_requests(&sim),
        asked,
        "nothing more asked of Microsoft"
    );
    drop(caller);

    let database = app.stop().await;
    let app = start(database, |s| s.use_simulator(&sim)).await;
    // The redirect URI was the old server's; the same callback goes to the new one.
    let mut again = back.clone();
    again.set_port(Some(app.port)).unwrap();
    let response = browser().get(again).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let caller = app.caller("msp-a", &["admin"]).await;
    assert_eq!(tile(&caller, &client).await["status"], "AUTHORISED");
}

/// Checklist 92: a callback interrupted between claiming its flow and finishing it (the
/// process died) is failed by the sweep, and the user can start again.
#[both_backends]
async fn checklist_92_interrupted_callback_is_failed_by_the_sweep(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(World { app, sim: _sim }) = world(backend, vec![contoso.clone()], |s| {
        s.sweep_interval = Duration::from_millis(100);
    })
    .await
    else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let link = authorise(&caller, &client).await;
    let back = admin_consent(
        link["url"].as_str().unwrap(),
        contoso.admin().unwrap().id,
        "accept",
    )
    .await;

    // What a crash mid-verification leaves behind (the tile first: the sweep acts as soon as
    // the flow looks interrupted).
    let flow = flows(&app).await.remove(0);
    graph_api_tile::Entity::update_many()
        .col_expr(
            graph_api_tile::Column::Status,
            sea_orm::sea_query::Expr::value(GraphApiStatus::Verifying),
        )
        .filter(graph_api_tile::Column::ClientId.eq(flow.client_id))
        .exec(&app.db)
        .await
        .unwrap();
    let mut stuck: oauth_flow::ActiveModel = flow.clone().into();
    stuck.status = Set(OAuthFlowStatus::Exchanging);
    stuck.claimed_at = Set(Some(chrono::Utc::now() - chrono::Duration::minutes(6)));
    stuck.update(&app.db).await.unwrap();

    let tile = eventually(
        Duration::from_secs(10),
        "the sweep to fail the flow",
        || async {
            let tile = tile(&caller, &client).await;
            (tile["status"] == "FAILED").then_some(tile)
        },
    )
    .await;
    assert_eq!(strings(&tile["availableActions"]), ["AUTHORISE"]);
    assert!(
        tile["problem"]["remediation"]
            .as_str()
            .unwrap()
            .contains("Authorise again")
    );
    assert_eq!(flows(&app).await[0].status, OAuthFlowStatus::Failed);
    let html = result_page(&app, &back).await;
    assert!(html.contains("no longer valid"), "{html}");
}
