//! Caller tokens verified against an identity provider's JWKS (RS256/ES256): keys are made in
//! the test and served from a local JWKS endpoint (docs/design.md §2; checklist 27, 34–35, 46, 90).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use axum::{Json, Router, extract::State, routing::get};
use std::time::Duration;

use consentry_tests::{Backend, TestApp, both_backends, eventually, spawn_app_with};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.example.com/";
const AUDIENCE: &str = "consentry";

/// A signing key of the fake identity provider.
struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl Key {
    fn rsa(kid: &str) -> Self {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let private = rsa::RsaPrivateKey::new(&mut rand_core_compat(), 2048).unwrap();
        let pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
        Self::from_encoding(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        )
    }

    fn ec(kid: &str) -> Self {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let secret = p256::SecretKey::random(&mut rand_core_compat());
        let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
        Self::from_encoding(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        )
    }

    fn from_encoding(kid: &str, alg: Algorithm, encoding: EncodingKey) -> Self {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    fn sign_without_kid(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(self.alg), claims, &self.encoding).unwrap()
    }
}

/// The RustCrypto key generators want a `rand_core` 0.6 RNG.
fn rand_core_compat() -> rsa::rand_core::OsRng {
    rsa::rand_core::OsRng
}

#[derive(Clone, Default)]
struct Idp {
    keys: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
}

impl Idp {
    async fn serve(&self) -> String {
        async fn jwks(State(idp): State<Idp>) -> Json<JwkSet> {
            idp.fetches.fetch_add(1, Ordering::SeqCst);
            Json(JwkSet {
                keys: idp.keys.lock().unwrap().clone(),
            })
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/jwks", get(jwks))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        format!("http://{addr}/jwks")
    }

    fn publish(&self, keys: &[&Key]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }
}

fn claims(msp: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({ "sub": "idp|42", "msp": msp, "roles": ["admin"], "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, "iat": now })
}

async fn app_with_idp(backend: Backend, idp: &Idp) -> Option<TestApp> {
    let url = idp.serve().await;
    let app = spawn_app_with(backend, |s| {
        s.auth_hs256_secret = None;
        s.auth_jwks_url = Some(url.parse().unwrap());
        s.auth_issuer = Some(ISSUER.into());
        s.auth_audience = Some(AUDIENCE.into());
        s.auth_jwks_refetch_seconds = 1;
    })
    .await?;
    app.register_msp("msp-a").await;
    Some(app)
}

const VIEWER: &str = "{ viewer { subject msp { id } } }";

async fn accepted(app: &TestApp, token: &str) {
    let response = app.graphql(Some(token), VIEWER, json!({})).await;
    assert_eq!(response.data()["viewer"]["subject"], "idp|42");
}

async fn refused(app: &TestApp, token: &str, status: StatusCode, hint: &str) {
    let response = app.graphql(Some(token), VIEWER, json!({})).await;
    assert_eq!(response.status, status, "{}", response.body);
    assert!(
        response.error_message().contains(hint),
        "{:?} should mention {hint:?}",
        response.error_message()
    );
}

/// Checklist 46, 35.
#[both_backends]
async fn rs256_and_es256_tokens_verify_against_the_jwks(backend: Backend) {
    let idp = Idp::default();
    let (rsa, ec, ec2) = (Key::rsa("rsa-1"), Key::ec("ec-1"), Key::ec("ec-2"));
    idp.publish(&[&rsa, &ec, &ec2]);
    let Some(app) = app_with_idp(backend, &idp).await else {
        return;
    };
    accepted(&app, &rsa.sign(&claims("msp-a"))).await;
    accepted(&app, &ec.sign(&claims("msp-a"))).await;

    // HS256 keyed with anything is outside the allow-list in JWKS mode (checklist 46).
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("msp-a"),
        &EncodingKey::from_secret(b"whatever-secret-whatever-secret!"),
    )
    .unwrap();
    refused(&app, &hs, StatusCode::UNAUTHORIZED, "RS256 or ES256").await;

    // Wrong audience or issuer, even correctly signed.
    let mut wrong = claims("msp-a");
    wrong["aud"] = json!("someone-else");
    refused(
        &app,
        &rsa.sign(&wrong),
        StatusCode::UNAUTHORIZED,
        "audience",
    )
    .await;
    let mut wrong = claims("msp-a");
    wrong["iss"] = json!("https://evil.example.com/");
    refused(&app, &rsa.sign(&wrong), StatusCode::UNAUTHORIZED, "issuer").await;

    // A key the IdP does not publish.
    let stranger = Key::ec("ec-unknown");
    refused(
        &app,
        &stranger.sign(&claims("msp-a")),
        StatusCode::UNAUTHORIZED,
        "does not publish",
    )
    .await;

    // A token whose header claims RS256 but names the EC key.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("ec-1".into());
    let mismatched = jsonwebtoken::encode(&header, &claims("msp-a"), &rsa.encoding).unwrap();
    refused(
        &app,
        &mismatched,
        StatusCode::UNAUTHORIZED,
        "does not match",
    )
    .await;

    // Without a kid, a token verifies only when exactly one published key fits its algorithm;
    // with two candidates nothing is guessed (checklist 35).
    refused(
        &app,
        &ec.sign_without_kid(&claims("msp-a")),
        StatusCode::UNAUTHORIZED,
        "no kid",
    )
    .await;
    accepted(&app, &rsa.sign_without_kid(&claims("msp-a"))).await;
}

/// Checklist 34.
#[both_backends]
async fn a_single_key_verifies_tokens_without_kid(backend: Backend) {
    // Checklist 34.
    let idp = Idp::default();
    let ec = Key::ec("only");
    idp.publish(&[&ec]);
    let Some(app) = app_with_idp(backend, &idp).await else {
        return;
    };
    accepted(&app, &ec.sign_without_kid(&claims("msp-a"))).await;
}

/// Checklist 90.
#[both_backends]
async fn rotated_keys_are_fetched_at_most_once_per_interval(backend: Backend) {
    // Checklist 90: a flood of unknown kids causes at most one refetch per interval.
    let idp = Idp::default();
    let old = Key::ec("old");
    idp.publish(&[&old]);
    let Some(app) = app_with_idp(backend, &idp).await else {
        return;
    };
    accepted(&app, &old.sign(&claims("msp-a"))).await;
    let fetches_before = idp.fetches.load(Ordering::SeqCst);
    let tokens: Vec<String> = (0..20)
        .map(|i| Key::ec(&format!("random-{i}")).sign(&claims("msp-a")))
        .collect();
    let flood = tokens
        .iter()
        .map(|token| app.graphql(Some(token), VIEWER, json!({})));
    for response in futures_util::future::join_all(flood).await {
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let fetches = idp.fetches.load(Ordering::SeqCst) - fetches_before;
    assert!(
        fetches <= 1,
        "{fetches} JWKS fetches for a flood of unknown kids"
    );
}

/// Checklist 43.
#[both_backends]
async fn a_rotated_signing_key_is_picked_up(backend: Backend) {
    // Checklist 43 (for callers' tokens): an unknown kid triggers a refetch and then verifies.
    let idp = Idp::default();
    let old = Key::rsa("2026-old");
    idp.publish(&[&old]);
    let Some(app) = app_with_idp(backend, &idp).await else {
        return;
    };
    accepted(&app, &old.sign(&claims("msp-a"))).await;
    let new = Key::ec("2026-new");
    idp.publish(&[&old, &new]);
    let token = new.sign(&claims("msp-a"));
    eventually(
        Duration::from_secs(10),
        "the rotated key to be accepted",
        || {
            let (app, token) = (&app, &token);
            async move {
                let response = app.graphql(Some(token), VIEWER, json!({})).await;
                (response.status == StatusCode::OK).then_some(())
            }
        },
    )
    .await;
    accepted(&app, &old.sign(&claims("msp-a"))).await;
}

/// Checklist 89.
#[both_backends]
async fn an_unreachable_jwks_fails_closed_with_503(backend: Backend) {
    // Checklist 89: no keys at all means no access, and a retryable answer.
    let Some(app) = spawn_app_with(backend, |s| {
        s.auth_hs256_secret = None;
        s.auth_jwks_url = Some("http://127.0.0.1:9/jwks".parse().unwrap());
        s.auth_issuer = Some(ISSUER.into());
        s.auth_audience = Some(AUDIENCE.into());
    })
    .await
    else {
        return;
    };
    app.register_msp("msp-a").await;
    let key = Key::ec("any");
    let response = app
        .graphql(Some(&key.sign(&claims("msp-a"))), VIEWER, json!({}))
        .await;
    assert_eq!(
        response.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        response.body
    );
    assert_eq!(response.error_code(), "UNAVAILABLE");
}

#[both_backends]
async fn hs256_mode_refuses_rs256_tokens(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app(backend).await else {
        return;
    };
    app.register_msp("msp-a").await;
    let key = Key::rsa("rsa-x");
    let mut body = claims("msp-a");
    body["iss"] = json!(consentry_tests::ISSUER);
    body["aud"] = json!(consentry_tests::AUDIENCE);
    refused(&app, &key.sign(&body), StatusCode::UNAUTHORIZED, "HS256").await;
}
