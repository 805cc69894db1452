//! Consentry's Microsoft client against the simulator: every scenario and every failure
//! (timeout, 5xx, 429, malformed JSON, wrong content type, redirect).

use std::{collections::BTreeMap, time::Duration};

use api::{Creation, ExpectedTenant, FlowSecrets, Microsoft, MicrosoftError, TenantHint};
use consentry_tests::{microsoft_client, start_simulator};
use entity::enums::GraphApiProblemCode;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use simulator::{Faults, ResponseFault, SimTenant, Simulator, Throttle};
use url::Url;
use uuid::Uuid;

const TEAMS: &str = "48ac35b8-9aa8-4d74-927d-1f4a14a0b239";

/// A browser that does not follow redirects, so the test sees where Microsoft sends it.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn params(url: &Url) -> BTreeMap<String, String> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Opens a consent or sign-in URL, then answers its form as `user` would (accept or cancel),
/// returning where the browser is sent.
async fn answer(url: &Url, user: Uuid, decision: &str) -> BTreeMap<String, String> {
    let page = browser().get(url.clone()).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "{url}");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Accept") && html.contains("Cancel"),
        "a page a person can click through"
    );
    assert!(
        html.contains(&user.to_string()),
        "the user is offered on the page"
    );
    let mut form = params(url);
    form.insert("user".into(), user.to_string());
    form.insert("decision".into(), decision.into());
    let mut action = url.clone();
    action.set_query(None);
    let response = browser().post(action).form(&form).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        location
            .as_str()
            .starts_with("http://127.0.0.1:9/oauth/callback"),
        "{location}"
    );
    params(&location)
}

fn problem_of(callback: &BTreeMap<String, String>) -> api::Problem {
    api::from_identity(&callback["error"], &callback["error_description"], &[])
}

async fn admin_consent(
    microsoft: &Microsoft,
    tenant: &SimTenant,
    user: Uuid,
    decision: &str,
) -> BTreeMap<String, String> {
    let secrets = FlowSecrets::new();
    let url =
        microsoft.admin_consent_url(&TenantHint::Domain(tenant.domain.clone()), &secrets.state);
    let callback = answer(&url, user, decision).await;
    assert_eq!(
        callback["state"],
        *secrets.state.secret(),
        "state comes back"
    );
    callback
}

#[tokio::test]
async fn admin_consent_succeeds_and_is_verified_with_an_app_only_token() {
    let tenant = SimTenant::healthy("contoso.onmicrosoft.com", "Contoso");
    let simulator = start_simulator(vec![tenant.clone()]).await;
    let microsoft = microsoft_client(&simulator);

    // Before consent there is no app-only access.
    let before = microsoft
        .app_token(&tenant.id.to_string())
        .await
        .unwrap_err();
    assert_eq!(
        before.problem().code,
        GraphApiProblemCode::ConsentRevoked,
        "AADSTS700016"
    );

    let callback = admin_consent(&microsoft, &tenant, tenant.admin().unwrap().id, "accept").await;
    assert_eq!(callback["admin_consent"], "True");
    assert_eq!(callback["tenant"], tenant.id.to_string());
    assert!(!callback.contains_key("error"));

    let token = microsoft.app_token(&tenant.id.to_string()).await.unwrap();
    assert_eq!(
        token.tenant_id.as_deref(),
        Some(tenant.id.to_string().as_str())
    );
    assert_eq!(
        token.roles,
        [
            "Organization.Read.All",
            "Directory.Read.All",
            "Application.Read.All"
        ]
    );
    let organization = microsoft.organization(&token.access_token).await.unwrap();
    assert_eq!(organization.id, tenant.id.to_string());
    assert_eq!(
        organization.verified_domains[0].name,
        "contoso.onmicrosoft.com"
    );

    // The consent URL has Microsoft's v2 shape.
    let url = microsoft.admin_consent_url(&TenantHint::Id(tenant.id), &FlowSecrets::new().state);
    assert_eq!(url.path(), format!("/{}/v2.0/adminconsent", tenant.id));
    let query = params(&url);
    assert_eq!(query["client_id"], simulator.client_id());
    assert_eq!(
        query["scope"],
        format!(
            "{}/.default",
            simulator.base_url().as_str().trim_end_matches('/')
        )
    );
    assert_eq!(query["redirect_uri"], "http://127.0.0.1:9/oauth/callback");
}

#[tokio::test]
async fn a_missing_teams_principal_fails_with_650052_until_it_is_created() {
    let tenant = SimTenant::missing_teams("fabrikam.onmicrosoft.com", "Fabrikam");
    let simulator = start_simulator(vec![tenant.clone()]).await;
    let microsoft = microsoft_client(&simulator);
    let admin = tenant.admin().unwrap().id;

    let callback = admin_consent(&microsoft, &tenant, admin, "accept").await;
    assert_eq!(
        callback["admin_consent"], "True",
        "admin_consent=True comes with errors too"
    );
    assert!(!callback.contains_key("tenant"));
    let problem = problem_of(&callback);
    assert_eq!(problem.code, GraphApiProblemCode::MissingServicePrincipal);
    assert_eq!(problem.aadsts, Some(650052));
    assert_eq!(problem.app_id.as_deref(), Some(TEAMS));
    assert_eq!(
        problem.app_display_name.as_deref(),
        Some("Skype and Teams Tenant Admin API")
    );

    // An admin signs in for Application.ReadWrite.All and creates the principal.
    let token = sign_in(
        &microsoft,
        &tenant,
        admin,
        &["https://graph.microsoft.com/Application.ReadWrite.All"],
    )
    .await;
    assert!(
        microsoft
            .find_service_principal(&token, TEAMS)
            .await
            .unwrap()
            .is_none()
    );
    let created = microsoft
        .create_service_principal(&token, TEAMS)
        .await
        .unwrap();
    assert!(
        matches!(created, Creation::Created(ref sp) if sp.app_id == TEAMS),
        "{created:?}"
    );
    assert!(simulator.has_service_principal(tenant.id, TEAMS));
    let found = microsoft
        .find_service_principal(&token, TEAMS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.app_display_name.as_deref(),
        Some("Skype and Teams Tenant Admin API")
    );
    assert!(matches!(
        microsoft
            .create_service_principal(&token, TEAMS)
            .await
            .unwrap(),
        Creation::AlreadyExists
    ));

    let callback = admin_consent(&microsoft, &tenant, admin, "accept").await;
    assert_eq!(
        callback["tenant"],
        tenant.id.to_string(),
        "consent now succeeds: {callback:?}"
    );
}

#[tokio::test]
async fn declining_cancelling_and_not_being_an_admin_are_told_apart() {
    let healthy = SimTenant::healthy("northwind.onmicrosoft.com", "Northwind");
    let declining =
        SimTenant::healthy("declines.onmicrosoft.com", "Declines").with_faults(Faults {
            consent_declined: true,
            ..Faults::default()
        });
    let simulator = start_simulator(vec![healthy.clone(), declining.clone()]).await;
    let microsoft = microsoft_client(&simulator);

    let cancelled =
        admin_consent(&microsoft, &healthy, healthy.admin().unwrap().id, "cancel").await;
    assert_eq!(cancelled["error"], "access_denied");
    assert_eq!(
        problem_of(&cancelled).code,
        GraphApiProblemCode::ConsentDeclined
    );
    let declined = admin_consent(
        &microsoft,
        &declining,
        declining.admin().unwrap().id,
        "accept",
    )
    .await;
    assert_eq!(problem_of(&declined).aadsts, Some(65004));
    let not_admin = admin_consent(
        &microsoft,
        &healthy,
        healthy.user("user").unwrap().id,
        "accept",
    )
    .await;
    let problem = problem_of(&not_admin);
    assert_eq!(
        (problem.code, problem.aadsts),
        (GraphApiProblemCode::AdminConsentRequired, Some(90094))
    );
    assert!(
        simulator.granted_roles(healthy.id).is_none(),
        "nothing was granted"
    );
}

#[tokio::test]
async fn mfa_and_conditional_access_are_reported_as_such() {
    let mfa = SimTenant::healthy("woodgrove.onmicrosoft.com", "Woodgrove").with_faults(Faults {
        mfa_required: true,
        ..Faults::default()
    });
    let ca = SimTenant::healthy("adatum.onmicrosoft.com", "Adatum").with_faults(Faults {
        conditional_access_blocked: true,
        ..Faults::default()
    });
    let simulator = start_simulator(vec![mfa.clone(), ca.clone()]).await;
    let microsoft = microsoft_client(&simulator);
    for (tenant, code) in [(&mfa, 50076), (&ca, 53003)] {
        let callback =
            admin_consent(&microsoft, tenant, tenant.admin().unwrap().id, "accept").await;
        let problem = problem_of(&callback);
        assert_eq!(
            (problem.code, problem.aadsts),
            (GraphApiProblemCode::ConditionalAccess, Some(code))
        );
    }
}

/// Signs `user` in through the authorize page with PKCE and returns a Graph access token.
async fn sign_in(
    microsoft: &Microsoft,
    tenant: &SimTenant,
    user: Uuid,
    scopes: &[&str],
) -> SecretString {
    let secrets = FlowSecrets::new();
    let mut all: Vec<String> = vec!["openid".into(), "profile".into(), "offline_access".into()];
    all.extend(scopes.iter().map(|s| (*s).to_owned()));
    let url = microsoft.authorize_url(&TenantHint::Id(tenant.id), &all, &secrets, Some("consent"));
    let callback = answer(&url, user, "accept").await;
    let tokens = microsoft
        .redeem_code(
            &tenant.id.to_string(),
            &callback["code"],
            &secrets.pkce_verifier,
            &scopes.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    tokens.access_token
}

/// Litware's admin signed in and consented to `scopes` through an authorize URL of the
/// Microsoft client's; the client, the tenant, the flow's secrets and the callback's query.
struct SignedIn {
    simulator: Simulator,
    microsoft: Microsoft,
    tenant: SimTenant,
    secrets: FlowSecrets,
    url: Url,
    callback: BTreeMap<String, String>,
}

/// The delegated scopes of a password-reset consent: Graph's Mail.Send and Azure's
/// user_impersonation, with OpenID and a refresh token.
fn delegated_scopes() -> Vec<String> {
    [
        "openid",
        "profile",
        "offline_access",
        "https://graph.microsoft.com/Mail.Send",
        "https://management.core.windows.net//user_impersonation",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

async fn signed_in() -> SignedIn {
    let tenant = SimTenant::healthy("litware.onmicrosoft.com", "Litware");
    let simulator = start_simulator(vec![tenant.clone()]).await;
    let microsoft = microsoft_client(&simulator);
    let secrets = FlowSecrets::new();
    let url = microsoft.authorize_url(
        &TenantHint::Id(tenant.id),
        &delegated_scopes(),
        &secrets,
        Some("consent"),
    );
    let callback = answer(&url, tenant.admin().unwrap().id, "accept").await;
    SignedIn {
        simulator,
        microsoft,
        tenant,
        secrets,
        url,
        callback,
    }
}

/// Graph's Mail.Send, the resource a code is redeemed for first.
fn mail_send() -> Vec<String> {
    vec!["https://graph.microsoft.com/Mail.Send".to_owned()]
}

#[tokio::test]
async fn the_authorize_url_signs_in_at_organizations_with_pkce_and_a_nonce() {
    let SignedIn {
        url,
        tenant,
        secrets,
        ..
    } = signed_in().await;
    let query = params(&url);
    // Every sign-in goes to `organizations`; the client's tenant is only a hint.
    assert_eq!(url.path(), "/organizations/oauth2/v2.0/authorize");
    assert_eq!(query["domain_hint"], tenant.id.to_string());
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["prompt"], "consent");
    assert_eq!(query["nonce"], *secrets.nonce.secret());
    assert!(!query.contains_key("client_secret") && !query.contains_key("code_verifier"));
}

/// A code is redeemed with its PKCE verifier, at `organizations`, for one resource; the tokens
/// hide themselves from `Debug`, and the access token reads Graph's /me.
#[tokio::test]
async fn a_code_is_redeemed_with_pkce_for_one_resource() {
    let signed_in = signed_in().await;
    let tokens = signed_in
        .microsoft
        .redeem_sign_in(
            &signed_in.callback["code"],
            &signed_in.secrets.pkce_verifier,
            &mail_send(),
        )
        .await
        .unwrap();
    assert!(
        tokens.scopes.contains(&"mail.send".to_owned()),
        "{:?}",
        tokens.scopes
    );
    assert!(
        !format!("{tokens:?}").contains(tokens.access_token.expose_secret()),
        "Debug hides tokens"
    );
    let me = signed_in.microsoft.me(&tokens.access_token).await.unwrap();
    assert_eq!(me.id, signed_in.tenant.admin().unwrap().id.to_string());

    let token_request = signed_in
        .simulator
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/token") && r.param("grant_type") == Some("authorization_code"))
        .unwrap();
    assert_eq!(token_request.path, "/organizations/oauth2/v2.0/token");
    assert!(
        token_request.notes.iter().any(|n| n == "pkce=ok (S256)"),
        "{:?}",
        token_request.notes
    );
    assert_eq!(
        token_request.param("scope"),
        Some("https://graph.microsoft.com/Mail.Send"),
        "one resource per token request"
    );
}

/// The id_token of a redeemed code validates against the tenant and the flow's nonce, and
/// names the admin with their directory roles (`wids`).
#[tokio::test]
async fn a_redeemed_codes_id_token_names_the_admin_and_their_roles() {
    let signed_in = signed_in().await;
    let tokens = signed_in
        .microsoft
        .redeem_sign_in(
            &signed_in.callback["code"],
            &signed_in.secrets.pkce_verifier,
            &mail_send(),
        )
        .await
        .unwrap();
    let tenant = &signed_in.tenant;
    let claims = signed_in
        .microsoft
        .validate_id_token(
            tokens.id_token.as_ref().unwrap(),
            &ExpectedTenant::Exactly(tenant.id),
            &api::NonceHash::of(signed_in.secrets.nonce.secret()),
        )
        .await
        .unwrap();
    assert_eq!(claims.tenant_id, tenant.id);
    assert_eq!(
        claims.object_id.as_deref(),
        Some(tenant.admin().unwrap().id.to_string().as_str())
    );
    assert_eq!(
        claims.preferred_username.as_deref(),
        Some("admin@litware.onmicrosoft.com")
    );
    assert_eq!(
        claims.directory_roles.as_deref(),
        Some(
            [
                simulator::roles::USER,
                simulator::roles::GLOBAL_ADMINISTRATOR
            ]
            .as_slice()
        ),
        "wids: the admin's directory roles"
    );
}

/// The refresh token of a redeemed code is redeemed for another resource (Azure management):
/// the new token is for that resource only, and the refresh token rotates.
#[tokio::test]
async fn a_refresh_token_is_redeemed_for_another_resource_and_rotates() {
    let signed_in = signed_in().await;
    let tokens = signed_in
        .microsoft
        .redeem_sign_in(
            &signed_in.callback["code"],
            &signed_in.secrets.pkce_verifier,
            &mail_send(),
        )
        .await
        .unwrap();
    let refresh = tokens.refresh_token.unwrap();
    let arm = vec!["https://management.core.windows.net//user_impersonation".to_owned()];
    let refreshed = signed_in
        .microsoft
        .refresh(&signed_in.tenant.id.to_string(), &refresh, &arm)
        .await
        .unwrap();
    assert!(
        refreshed
            .scopes
            .contains(&"https://management.core.windows.net//user_impersonation".to_owned()),
        "{:?}",
        refreshed.scopes
    );
    assert!(
        !refreshed.scopes.contains(&"mail.send".to_owned()),
        "a token is for one resource"
    );
    assert_ne!(
        refreshed.refresh_token.unwrap().expose_secret(),
        refresh.expose_secret(),
        "refresh tokens rotate"
    );
}

#[tokio::test]
async fn a_code_is_redeemed_once_and_only_with_its_verifier() {
    // Checklist 3, 9, 83.
    let tenant = SimTenant::healthy("tailspin.onmicrosoft.com", "Tailspin");
    let simulator = start_simulator(vec![tenant.clone()]).await;
    let microsoft = microsoft_client(&simulator);
    let secrets = FlowSecrets::new();
    let scopes = vec![
        "openid".to_owned(),
        "https://graph.microsoft.com/User.Read".to_owned(),
    ];
    let url = microsoft.authorize_url(&TenantHint::Id(tenant.id), &scopes, &secrets, None);
    let code = answer(&url, tenant.admin().unwrap().id, "accept").await["code"].clone();
    let graph = vec!["https://graph.microsoft.com/User.Read".to_owned()];

    let injected = FlowSecrets::new(); // an attacker's own flow
    let error = microsoft
        .redeem_code(
            &tenant.id.to_string(),
            &code,
            &injected.pkce_verifier,
            &graph,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, MicrosoftError::Identity { error, codes, .. } if error == "invalid_grant" && codes == &[501481]),
        "{error:?}"
    );

    microsoft
        .redeem_code(
            &tenant.id.to_string(),
            &code,
            &secrets.pkce_verifier,
            &graph,
        )
        .await
        .unwrap();
    let replay = microsoft
        .redeem_code(
            &tenant.id.to_string(),
            &code,
            &secrets.pkce_verifier,
            &graph,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&replay, MicrosoftError::Identity { codes, .. } if codes == &[54005]),
        "{replay:?}"
    );

    let redeemed: Vec<_> = simulator
        .requests()
        .into_iter()
        .filter(|r| r.notes.iter().any(|n| n == "code=redeemed"))
        .collect();
    assert_eq!(redeemed.len(), 1, "exactly one successful exchange");

    // Two resources in one token request are refused by Microsoft (AADSTS28000).
    let secrets = FlowSecrets::new();
    let url = microsoft.authorize_url(&TenantHint::Id(tenant.id), &scopes, &secrets, None);
    let code = answer(&url, tenant.admin().unwrap().id, "accept").await["code"].clone();
    let two = vec![
        "https://graph.microsoft.com/User.Read".to_owned(),
        "https://management.core.windows.net//user_impersonation".to_owned(),
    ];
    let error = microsoft
        .redeem_code(&tenant.id.to_string(), &code, &secrets.pkce_verifier, &two)
        .await
        .unwrap_err();
    assert_eq!(error.problem().aadsts, Some(28000));
}

#[tokio::test]
async fn an_expired_refresh_token_means_consent_again() {
    let tenant = SimTenant::healthy("lamna.onmicrosoft.com", "Lamna");
    let simulator = start_simulator(vec![tenant.clone()]).await;
    let microsoft = microsoft_client(&simulator);
    let secrets = FlowSecrets::new();
    let scopes = vec![
        "offline_access".to_owned(),
        "https://graph.microsoft.com/Mail.Send".to_owned(),
    ];
    let url = microsoft.authorize_url(&TenantHint::Id(tenant.id), &scopes, &secrets, None);
    let code = answer(&url, tenant.admin().unwrap().id, "accept").await["code"].clone();
    let graph = vec!["https://graph.microsoft.com/Mail.Send".to_owned()];
    let tokens = microsoft
        .redeem_code(
            &tenant.id.to_string(),
            &code,
            &secrets.pkce_verifier,
            &graph,
        )
        .await
        .unwrap();
    simulator.set_faults(
        tenant.id,
        Faults {
            refresh_token_expired: true,
            ..Faults::default()
        },
    );
    let error = microsoft
        .refresh(
            &tenant.id.to_string(),
            tokens.refresh_token.as_ref().unwrap(),
            &graph,
        )
        .await
        .unwrap_err();
    let MicrosoftError::Identity {
        error: name,
        codes,
        suberror,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(
        (name.as_str(), codes.as_slice(), suberror),
        ("invalid_grant", &[700082][..], &None)
    );
    assert_eq!(error.problem().code, GraphApiProblemCode::ConsentRevoked);
    assert!(
        error
            .problem()
            .message
            .unwrap()
            .contains("inactive for 90.00:00:00")
    );
}

async fn consented(faults: Faults) -> (Simulator, Microsoft, SimTenant) {
    let tenant = SimTenant::healthy("proseware.onmicrosoft.com", "Proseware");
    let simulator = start_simulator(vec![tenant.clone()]).await;
    simulator.grant_admin_consent(tenant.id);
    simulator.set_faults(tenant.id, faults);
    let microsoft = microsoft_client(&simulator);
    (simulator, microsoft, tenant)
}

#[tokio::test]
async fn throttled_graph_calls_wait_out_retry_after_within_a_bound() {
    // Checklist 87.
    let (simulator, microsoft, tenant) = consented(Faults {
        graph_throttle: Some(Throttle {
            count: 2,
            retry_after_seconds: 1,
        }),
        ..Faults::default()
    })
    .await;
    let token = microsoft.app_token(&tenant.id.to_string()).await.unwrap();
    let started = std::time::Instant::now();
    let organization = microsoft.organization(&token.access_token).await.unwrap();
    assert_eq!(organization.id, tenant.id.to_string());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited at least Retry-After twice"
    );
    let calls = simulator
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1.0/organization")
        .count();
    assert_eq!(calls, 3);

    // Throttling longer than Consentry waits fails the call at once, as retryable.
    simulator.set_faults(
        tenant.id,
        Faults {
            graph_throttle: Some(Throttle {
                count: 5,
                retry_after_seconds: 120,
            }),
            ..Faults::default()
        },
    );
    let started = std::time::Instant::now();
    let error = microsoft
        .organization(&token.access_token)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            MicrosoftError::Unavailable {
                status: 429,
                retry_after: Some(_)
            }
        ),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        error.problem().code,
        GraphApiProblemCode::IdentityProviderUnavailable
    );
}

#[tokio::test]
async fn a_slow_token_endpoint_times_out() {
    // Checklist 86.
    let (_simulator, microsoft, tenant) = consented(Faults {
        token_delay_ms: 3_000,
        ..Faults::default()
    })
    .await;
    let started = std::time::Instant::now();
    let error = microsoft
        .app_token(&tenant.id.to_string())
        .await
        .unwrap_err();
    assert!(matches!(error, MicrosoftError::Timeout(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(2_900));
    assert_eq!(
        error.problem().code,
        GraphApiProblemCode::IdentityProviderUnavailable
    );
}

#[tokio::test]
async fn a_failing_token_endpoint_is_retried_only_for_app_tokens() {
    let (simulator, microsoft, tenant) = consented(Faults {
        token_failure_status: Some(503),
        ..Faults::default()
    })
    .await;
    let error = microsoft
        .app_token(&tenant.id.to_string())
        .await
        .unwrap_err();
    assert!(
        matches!(error, MicrosoftError::Unavailable { status: 503, .. }),
        "{error:?}"
    );
    let attempts = simulator
        .requests()
        .into_iter()
        .filter(|r| r.param("grant_type") == Some("client_credentials"))
        .count();
    assert_eq!(attempts, 4, "one try and three retries with backoff");

    // A code exchange is never re-posted (checklist 86).
    let verifier = FlowSecrets::new().pkce_verifier;
    let error = microsoft
        .redeem_code(
            &tenant.id.to_string(),
            "some-code",
            &verifier,
            &["https://graph.microsoft.com/User.Read".to_owned()],
        )
        .await
        .unwrap_err();
    assert!(error.is_transient());
    let exchanges = simulator
        .requests()
        .into_iter()
        .filter(|r| r.param("grant_type") == Some("authorization_code"))
        .count();
    assert_eq!(exchanges, 1);

    simulator.set_faults(
        tenant.id,
        Faults {
            token_failure_status: Some(500),
            ..Faults::default()
        },
    );
    let error = microsoft
        .refresh(
            &tenant.id.to_string(),
            &SecretString::from("rt".to_owned()),
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, MicrosoftError::Unavailable { status: 500, .. }),
        "{error:?}"
    );
}

/// Checklist 19: a 302 from the token endpoint is not followed (nor is any other redirect),
/// and answers in an undocumented shape are refused.
#[tokio::test]
async fn answers_in_an_undocumented_shape_are_refused_and_redirects_not_followed() {
    for fault in [
        ResponseFault::MalformedJson,
        ResponseFault::WrongContentType,
        ResponseFault::Redirect,
    ] {
        let (simulator, microsoft, tenant) = consented(Faults {
            token_response: Some(fault),
            ..Faults::default()
        })
        .await;
        let error = microsoft
            .app_token(&tenant.id.to_string())
            .await
            .unwrap_err();
        assert!(
            matches!(error, MicrosoftError::Malformed(_)),
            "{fault:?}: {error:?}"
        );
        assert_eq!(
            error.problem().code,
            GraphApiProblemCode::IdentityProviderUnavailable
        );

        simulator.set_faults(
            tenant.id,
            Faults {
                graph_response: Some(fault),
                ..Faults::default()
            },
        );
        let token = microsoft.app_token(&tenant.id.to_string()).await.unwrap();
        let error = microsoft
            .organization(&token.access_token)
            .await
            .unwrap_err();
        assert!(
            matches!(error, MicrosoftError::Malformed(_)),
            "{fault:?}: {error:?}"
        );
    }
}

#[tokio::test]
async fn our_own_bad_secret_is_flagged_as_ours() {
    let tenant = SimTenant::healthy("wingtip.onmicrosoft.com", "Wingtip");
    let simulator = start_simulator(vec![tenant.clone()]).await;
    simulator.grant_admin_consent(tenant.id);
    let mut config = microsoft_client(&simulator).config().clone();
    config.client_secret = SecretString::from("not-the-secret".to_owned());
    let microsoft = Microsoft::new(config).unwrap();
    let error = microsoft
        .app_token(&tenant.id.to_string())
        .await
        .unwrap_err();
    let problem = error.problem();
    assert_eq!(problem.aadsts, Some(7000215));
    assert!(
        problem.ours,
        "a bad client secret is Consentry's fault, not the tenant's"
    );
    assert!(!error.to_string().contains("not-the-secret"));
}

#[tokio::test]
async fn service_principal_creation_needs_an_admin_and_takes_time_to_replicate() {
    let tenant = SimTenant::missing_teams("adventure.onmicrosoft.com", "Adventure Works")
        .with_faults(Faults {
            propagation_lookups: 2,
            ..Faults::default()
        });
    let simulator = start_simulator(vec![tenant.clone()]).await;
    let microsoft = microsoft_client(&simulator);

    let user = sign_in(
        &microsoft,
        &tenant,
        tenant.user("user").unwrap().id,
        &["https://graph.microsoft.com/User.Read"],
    )
    .await;
    let error = microsoft
        .create_service_principal(&user, TEAMS)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, MicrosoftError::Graph { status: 403, code, .. } if code == "Authorization_RequestDenied"),
        "{error:?}"
    );
    assert!(
        error
            .problem()
            .remediation
            .contains("Application Administrator")
    );

    let admin = sign_in(
        &microsoft,
        &tenant,
        tenant.admin().unwrap().id,
        &["https://graph.microsoft.com/Directory.AccessAsUser.All"],
    )
    .await;
    assert!(matches!(
        microsoft
            .create_service_principal(&admin, TEAMS)
            .await
            .unwrap(),
        Creation::Created(_)
    ));
    assert!(
        microsoft
            .find_service_principal(&admin, TEAMS)
            .await
            .unwrap()
            .is_none(),
        "not replicated yet"
    );
    assert!(
        microsoft
            .find_service_principal(&admin, TEAMS)
            .await
            .unwrap()
            .is_none(),
        "not replicated yet"
    );
    assert!(
        microsoft
            .find_service_principal(&admin, TEAMS)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn no_secret_travels_in_a_url() {
    // Checklist 8: the verifier and the client secret never appear in a URL.
    let tenant = SimTenant::healthy("graphic.onmicrosoft.com", "Graphic Design");
    let simulator = start_simulator(vec![tenant.clone()]).await;
    let microsoft = microsoft_client(&simulator);
    sign_in(
        &microsoft,
        &tenant,
        tenant.admin().unwrap().id,
        &["https://graph.microsoft.com/User.Read"],
    )
    .await;
    admin_consent(&microsoft, &tenant, tenant.admin().unwrap().id, "accept").await;
    let requests = simulator.requests();
    assert!(requests.len() >= 5);
    for request in &requests {
        assert!(!request.query.contains_key("client_secret"), "{request:?}");
        assert!(!request.query.contains_key("code_verifier"), "{request:?}");
        let secret = simulator.client_secret();
        assert!(
            !request.query.values().any(|v| v.contains(&secret)),
            "{request:?}"
        );
    }
    let token = requests
        .iter()
        .find(|r| r.path.ends_with("/token"))
        .unwrap();
    assert!(
        token.form.contains_key("client_secret") && token.form.contains_key("code_verifier"),
        "secrets go in the POST body only"
    );
}

#[tokio::test]
async fn unknown_apps_and_unregistered_redirect_uris_get_an_error_page_not_a_redirect() {
    let tenant = SimTenant::healthy("fourth.onmicrosoft.com", "Fourth Coffee");
    let simulator = start_simulator(vec![tenant.clone()]).await;
    let mut config = microsoft_client(&simulator).config().clone();
    config.client_id = Uuid::new_v4().to_string();
    let stranger = Microsoft::new(config).unwrap();
    let url = stranger.admin_consent_url(&TenantHint::Id(tenant.id), &FlowSecrets::new().state);
    let response = browser().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("AADSTS700016"));
}

#[tokio::test]
async fn tenants_can_come_from_a_json_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.json");
    let tenants = vec![
        SimTenant::healthy("first.onmicrosoft.com", "First"),
        SimTenant::missing_teams("second.onmicrosoft.com", "Second").with_faults(Faults {
            propagation_lookups: 3,
            ..Faults::default()
        }),
    ];
    std::fs::write(&path, serde_json::to_string_pretty(&tenants).unwrap()).unwrap();
    let config = simulator::SimulatorConfig::from_file(&path).unwrap();
    assert_eq!(config.tenants, tenants);
    let simulator = Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let listed: serde_json::Value =
        reqwest::get(format!("{}_simulator/tenants", simulator.base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(listed[1]["missingServicePrincipals"][0], TEAMS);
    assert_eq!(listed[1]["faults"]["propagationLookups"], 3);

    std::fs::write(&path, "{ not json").unwrap();
    let error = simulator::SimulatorConfig::from_file(&path)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("neither a list of tenants nor a simulator configuration"),
        "{error}"
    );
}
