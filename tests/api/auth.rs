//! Caller authentication with HS256 tokens: every claim rule, every role (docs/design.md §2;
//! checklist §D, 46–49).

use consentry_tests::{AUDIENCE, ISSUER, TestApp, both_backends};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

const VIEWER: &str = "{ viewer { subject roles canWrite readsAllMsps msp { id name } } }";

async fn rejected(app: &TestApp, token: &str, status: StatusCode, code: &str, hint: &str) {
    let response = app.graphql(Some(token), VIEWER, json!({})).await;
    assert_eq!(response.status, status, "{}", response.body);
    assert_eq!(response.error_code(), code);
    let message = response.error_message();
    assert!(
        message.contains(hint),
        "message {message:?} should mention {hint:?}"
    );
    assert!(!message.contains(token), "the token is echoed");
    assert_eq!(response.body["data"], Value::Null);
}

fn unsigned(claims: &Value) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

fn sign_raw(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn claims(msp: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({ "sub": "someone", "msp": msp, "roles": ["admin"], "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "iat": now })
}

#[both_backends]
async fn a_valid_token_makes_a_viewer(app: TestApp) {
    let caller = app.caller("msp-a", &["technician", "viewer"]).await;
    let data = caller.run(VIEWER, json!({})).await.data().clone();
    assert_eq!(data["viewer"]["subject"], "user@msp.example");
    assert_eq!(data["viewer"]["roles"], json!(["TECHNICIAN", "VIEWER"]));
    assert_eq!(data["viewer"]["canWrite"], true);
    assert_eq!(data["viewer"]["readsAllMsps"], false);
    assert_eq!(data["viewer"]["msp"]["id"], "msp-a");
}

#[both_backends]
async fn no_token_is_unauthenticated_with_advice(app: TestApp) {
    let response = app.anonymous().run(VIEWER, json!({})).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.error_code(), "UNAUTHENTICATED");
    assert!(
        response.error_message().contains("consentry token"),
        "{}",
        response.error_message()
    );
}

#[both_backends]
async fn a_token_that_is_not_a_jwt_is_refused_with_401(app: TestApp) {
    rejected(
        &app,
        "not-a-jwt",
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "not a JWT",
    )
    .await;
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .body(r#"{"query":"{ viewer { subject } }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
}

#[both_backends]
async fn a_token_without_the_bearer_scheme_gets_a_hint(app: TestApp) {
    let caller = app.caller("msp-a", &["admin"]).await;
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .header("authorization", caller.token.clone().unwrap())
        .body(r#"{"query":"{ viewer { subject } }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("write `Bearer `"),
        "{body}"
    );
}

#[both_backends]
async fn an_expired_token_is_refused(app: TestApp) {
    app.register_msp("msp-a").await;
    let token = app.token_with(|c| c.exp = chrono::Utc::now().timestamp() - 3600);
    rejected(
        &app,
        &token,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "expired",
    )
    .await;
}

/// Checklist 48.
#[both_backends]
async fn a_token_from_another_issuer_or_for_another_audience_is_refused(app: TestApp) {
    // Checklist 48: tokens meant for something else (e.g. Microsoft's) are kept apart by iss/aud.
    app.register_msp("msp-a").await;
    let token = app.token_with(|c| c.iss = "https://login.microsoftonline.com/x/v2.0".into());
    rejected(
        &app,
        &token,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "issuer",
    )
    .await;
    let token = app.token_with(|c| c.aud = api::OneOrMany::One("graph".into()));
    rejected(
        &app,
        &token,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "audience",
    )
    .await;
}

#[both_backends]
async fn a_token_signed_with_another_secret_is_refused(app: TestApp) {
    app.register_msp("msp-a").await;
    let token = sign_raw(
        "an-entirely-different-secret-of-enough-length",
        &claims("msp-a"),
    );
    rejected(
        &app,
        &token,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "printed by `consentry token`",
    )
    .await;
}

/// Checklist 46.
#[both_backends]
async fn alg_none_and_algorithms_outside_the_allow_list_are_refused(app: TestApp) {
    // Checklist 46.
    app.register_msp("msp-a").await;
    rejected(
        &app,
        &unsigned(&claims("msp-a")),
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "HS256",
    )
    .await;
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims("msp-a"),
        &EncodingKey::from_secret(app.secret.as_bytes()),
    )
    .unwrap();
    rejected(
        &app,
        &token,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "HS256",
    )
    .await;
}

/// Checklist 47.
#[both_backends]
async fn required_claims_must_all_be_present(app: TestApp) {
    // Checklist 47: exp, iss, aud and sub are required; a future nbf is refused.
    app.register_msp("msp-a").await;
    for missing in ["exp", "iss", "aud", "sub"] {
        let mut body = claims("msp-a");
        body.as_object_mut().unwrap().remove(missing);
        let token = sign_raw(&app.secret, &body);
        rejected(
            &app,
            &token,
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "",
        )
        .await;
    }
    let token = app.token_with(|c| c.nbf = Some(chrono::Utc::now().timestamp() + 3600));
    rejected(
        &app,
        &token,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "not valid yet",
    )
    .await;
}

/// Checklist 49.
#[both_backends]
async fn a_missing_or_unknown_msp_is_unauthenticated(app: TestApp) {
    // Checklist 49.
    let token = app.token_with(|c| c.msp = None);
    rejected(
        &app,
        &token,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "msp claim",
    )
    .await;
    let token = app.token("msp-nobody-registered", &["admin"]);
    rejected(
        &app,
        &token,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "consentry msp add",
    )
    .await;
}

#[both_backends]
async fn a_disabled_msp_is_unauthenticated(app: TestApp) {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    app.register_msp("msp-a").await;
    entity::msp_tenant::ActiveModel {
        id: Set("msp-a".into()),
        disabled_at: Set(Some(chrono::Utc::now())),
        ..Default::default()
    }
    .update(&app.db)
    .await
    .unwrap();
    let token = app.token("msp-a", &["admin"]);
    rejected(
        &app,
        &token,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "disabled",
    )
    .await;
}

/// Checklist 49.
#[both_backends]
async fn an_unknown_role_or_no_role_is_forbidden(app: TestApp) {
    // Checklist 49: an unknown role is 403.
    app.register_msp("msp-a").await;
    let token = app.token("msp-a", &["admin", "owner"]);
    rejected(&app, &token, StatusCode::FORBIDDEN, "FORBIDDEN", "owner").await;
    let token = app.token("msp-a", &[]);
    rejected(&app, &token, StatusCode::FORBIDDEN, "FORBIDDEN", "no role").await;
}

#[both_backends]
async fn a_single_string_roles_claim_is_accepted(app: TestApp) {
    app.register_msp("msp-a").await;
    let token = app.token_with(|c| c.roles = api::OneOrMany::One("viewer".into()));
    let response = app.graphql(Some(&token), VIEWER, json!({})).await;
    assert_eq!(response.data()["viewer"]["roles"], json!(["VIEWER"]));
}

#[both_backends]
async fn checklist_99_a_token_living_longer_than_the_maximum_is_refused_with_the_reason(
    app: TestApp,
) {
    // CONSENTRY_AUTH_MAX_TOKEN_LIFETIME, 24h by default: `exp - iat`, or `exp` - now.
    app.register_msp("msp-a").await;
    let now = chrono::Utc::now().timestamp();
    let month = app.token_with(|c| {
        c.iat = Some(now);
        c.exp = now + 30 * 86_400;
    });
    rejected(
        &app,
        &month,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "CONSENTRY_AUTH_MAX_TOKEN_LIFETIME",
    )
    .await;
    rejected(
        &app,
        &month,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "lives 30d, longer than the 24h",
    )
    .await;
    // Issued long ago, with an hour left: it still lived too long.
    let old = app.token_with(|c| {
        c.iat = Some(now - 7 * 86_400);
        c.exp = now + 3600;
    });
    rejected(
        &app,
        &old,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
        "CONSENTRY_AUTH_MAX_TOKEN_LIFETIME",
    )
    .await;
    // Without `iat`, or with one set ahead, what is left of it counts.
    for iat in [None, Some(now + 29 * 86_400)] {
        let token = app.token_with(|c| {
            c.iat = iat;
            c.exp = now + 30 * 86_400;
        });
        rejected(
            &app,
            &token,
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "CONSENTRY_AUTH_MAX_TOKEN_LIFETIME",
        )
        .await;
    }
    for iat in [Some(now), None] {
        let day = app.token_with(|c| {
            c.iat = iat;
            c.exp = now + 86_400;
        });
        let response = app.graphql(Some(&day), VIEWER, json!({})).await;
        assert_eq!(response.data()["viewer"]["msp"]["id"], "msp-a");
    }
}

#[both_backends]
async fn checklist_100_support_counts_only_in_the_operators_tenant(app: TestApp) {
    // The test servers' operator tenant is `msp-platform` (CONSENTRY_SUPPORT_MSP).
    let staff = app.caller(consentry_tests::SUPPORT_MSP, &["support"]).await;
    let data = staff.run(VIEWER, json!({})).await.data().clone();
    assert_eq!(data["viewer"]["readsAllMsps"], true);
    app.register_msp("msp-a").await;
    let token = app.token("msp-a", &["support"]);
    rejected(
        &app,
        &token,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        "CONSENTRY_SUPPORT_MSP",
    )
    .await;
    // With another role, the token keeps that one only.
    let viewer = app.caller("msp-a", &["viewer", "support"]).await;
    let data = viewer.run(VIEWER, json!({})).await.data().clone();
    assert_eq!(data["viewer"]["roles"], json!(["VIEWER"]));
    assert_eq!(data["viewer"]["readsAllMsps"], false);
    let b = app.caller("msp-b", &["admin"]).await;
    b.create_client("Bravo of B").await;
    let seen = viewer.run("{ clients { totalCount } }", json!({})).await;
    assert_eq!(
        seen.data()["clients"]["totalCount"],
        0,
        "another MSP's clients stay hidden"
    );
}

/// Checklist 49.
#[both_backends]
async fn graphql_arguments_never_override_the_token(app: TestApp) {
    // Checklist 49: an MSP id in an argument does not widen what a caller sees.
    let a = app.caller("msp-a", &["admin"]).await;
    let b = app.caller("msp-b", &["admin"]).await;
    b.create_client("Only B's").await;
    let response = a
        .run(
            "{ clients(filter: { mspId: \"msp-b\" }) { edges { node { name } } } }",
            json!({}),
        )
        .await;
    assert_eq!(response.error_code(), "BAD_USER_INPUT");
    let own = a
        .run(
            "{ clients(filter: { mspId: \"msp-a\" }) { edges { node { name } } } }",
            json!({}),
        )
        .await;
    assert_eq!(own.data()["clients"]["edges"], json!([]));
}

/// Tests whose server needs its own settings.
mod configured {
    use consentry_tests::{Backend, both_backends, spawn_app_with};

    use super::*;

    /// Checklist 100: without CONSENTRY_SUPPORT_MSP, nobody is support staff.
    #[both_backends]
    async fn checklist_100_without_an_operator_tenant_nobody_is_support(backend: Backend) {
        let Some(app) = spawn_app_with(backend, |s| s.support_msp = None).await else {
            return;
        };
        app.register_msp(consentry_tests::SUPPORT_MSP).await;
        let token = app.token(consentry_tests::SUPPORT_MSP, &["support"]);
        rejected(
            &app,
            &token,
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "CONSENTRY_SUPPORT_MSP",
        )
        .await;
    }

    /// Checklist 99: CONSENTRY_AUTH_MAX_TOKEN_LIFETIME sets the maximum.
    #[both_backends]
    async fn checklist_99_the_maximum_token_lifetime_is_a_setting(backend: Backend) {
        let Some(app) = spawn_app_with(backend, |s| {
            s.auth_max_token_lifetime = std::time::Duration::from_secs(3600);
        })
        .await
        else {
            return;
        };
        app.register_msp("msp-a").await;
        let now = chrono::Utc::now().timestamp();
        let token = app.token_with(|c| {
            c.iat = Some(now);
            c.exp = now + 7200;
        });
        rejected(
            &app,
            &token,
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "lives 2h, longer than the 1h",
        )
        .await;
        let token = app.token_with(|c| {
            c.iat = Some(now);
            c.exp = now + 3600;
        });
        let response = app.graphql(Some(&token), VIEWER, json!({})).await;
        assert_eq!(response.data()["viewer"]["msp"]["id"], "msp-a");
    }
}
