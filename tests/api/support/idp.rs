//! A stand-in for the caller identity provider, on loopback: its discovery document, an
//! `/authorize` that signs its one user in at once (no page), a `/token` that redeems each
//! code once against its PKCE verifier (S256) and answers the dashboard's origin with CORS,
//! and the `/jwks` Consentry verifies the access tokens with (an ES256 key made here).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The `aud` the stand-in issues its access tokens for, as `CONSENTRY_AUTH_AUDIENCE`.
pub(crate) const AUDIENCE: &str = "api://consentry";
/// The public client registered at the stand-in for the dashboard.
pub(crate) const CLIENT_ID: &str = "consentry-dashboard";

/// The one user the stand-in signs in.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub(crate) subject: String,
    pub(crate) msp: String,
    pub(crate) roles: Vec<String>,
}

/// What `/authorize` handed out, waiting for `/token`.
struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
}

struct Inner {
    issuer: String,
    user: User,
    kid: String,
    key: EncodingKey,
    jwk: Jwk,
    /// The dashboard's registration: its redirect URI and origin, known once Consentry runs.
    redirect_uri: Mutex<Option<String>>,
    origin: Mutex<Option<String>>,
    codes: Mutex<HashMap<String, Grant>>,
    token_requests: AtomicUsize,
}

/// A running stand-in; it stops with the test's runtime.
#[derive(Clone)]
pub(crate) struct IdentityProvider(Arc<Inner>);

fn random() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

impl IdentityProvider {
    /// Starts the stand-in on a free loopback port, signing `user` in.
    pub(crate) async fn start(user: User) -> Self {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let secret = p256::SecretKey::random(&mut rsa::rand_core::OsRng);
        let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
        let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
        let kid = "stand-in-1".to_owned();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.clone());

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let provider = Self(Arc::new(Inner {
            issuer,
            user,
            kid,
            key,
            jwk,
            redirect_uri: Mutex::new(None),
            origin: Mutex::new(None),
            codes: Mutex::new(HashMap::new()),
            token_requests: AtomicUsize::new(0),
        }));
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize))
            .route("/token", axum::routing::post(token).options(preflight))
            .route("/jwks", get(jwks))
            .with_state(provider.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        provider
    }

    /// `CONSENTRY_AUTH_ISSUER`: `http://127.0.0.1:PORT`.
    pub(crate) fn issuer(&self) -> &str {
        &self.0.issuer
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0.issuer)
    }

    /// Registers the dashboard: its redirect URI, and its origin for CORS at `/token`.
    pub(crate) fn register_dashboard(&self, redirect_uri: &str, origin: &str) {
        *self.0.redirect_uri.lock().unwrap() = Some(redirect_uri.to_owned());
        *self.0.origin.lock().unwrap() = Some(origin.to_owned());
    }

    /// How many requests reached `/token`, whatever became of them.
    pub(crate) fn token_requests(&self) -> usize {
        self.0.token_requests.load(Ordering::SeqCst)
    }

    /// An access token for the user, as `/token` issues it (for arranging over the API).
    pub(crate) fn access_token(&self) -> String {
        let now = chrono::Utc::now().timestamp();
        let user = &self.0.user;
        let claims = json!({
            "iss": self.0.issuer, "aud": AUDIENCE, "sub": user.subject, "msp": user.msp,
            "roles": user.roles, "iat": now, "exp": now + 600,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.0.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.0.key).unwrap()
    }
}

async fn discovery(State(idp): State<IdentityProvider>) -> Json<Value> {
    Json(json!({
        "issuer": idp.issuer(),
        "authorization_endpoint": idp.url("/authorize"),
        "token_endpoint": idp.url("/token"),
        "jwks_uri": idp.url("/jwks"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

async fn jwks(State(idp): State<IdentityProvider>) -> Json<Value> {
    Json(json!({ "keys": [idp.0.jwk] }))
}

fn refused(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("refused: {why}\n")).into_response()
}

/// Signs the user in at once and sends the browser back with a code and the same state;
/// refuses (400, no redirect) an unknown client or redirect URI, or PKCE that is not S256.
async fn authorize(
    State(idp): State<IdentityProvider>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let given = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    if given("client_id") != CLIENT_ID {
        return refused("unknown client_id");
    }
    let registered = idp.0.redirect_uri.lock().unwrap().clone();
    if registered.as_deref() != Some(given("redirect_uri")) {
        return refused("redirect_uri is not registered for this client");
    }
    if given("response_type") != "code" {
        return refused("response_type must be code");
    }
    if given("code_challenge").len() < 43 || given("code_challenge_method") != "S256" {
        return refused("PKCE with code_challenge_method=S256 is required");
    }
    let code = random();
    idp.0.codes.lock().unwrap().insert(
        code.clone(),
        Grant {
            client_id: given("client_id").to_owned(),
            redirect_uri: given("redirect_uri").to_owned(),
            challenge: given("code_challenge").to_owned(),
        },
    );
    let mut back = url::Url::parse(given("redirect_uri")).unwrap();
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", given("state"))
        .append_pair("iss", idp.issuer());
    Redirect::to(back.as_str()).into_response()
}

/// CORS for the dashboard's origin only.
fn allow_dashboard(idp: &IdentityProvider, request: &HeaderMap, response: &mut Response) {
    let origin = request.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let registered = idp.0.origin.lock().unwrap().clone();
    if let (Some(origin), Some(registered)) = (origin, registered)
        && origin == registered
    {
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_str(origin).unwrap(),
        );
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

async fn preflight(State(idp): State<IdentityProvider>, request: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    allow_dashboard(&idp, &request, &mut response);
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, accept"),
    );
    response
}

fn token_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// Redeems a code once: the same client and redirect URI, and a verifier whose SHA-256 is
/// the challenge `/authorize` was given.
async fn token(State(idp): State<IdentityProvider>, request: HeaderMap, body: String) -> Response {
    idp.0.token_requests.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let given = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let mut response = if given("grant_type") != "authorization_code" {
        token_error("unsupported_grant_type", "only authorization_code")
    } else {
        match idp.0.codes.lock().unwrap().remove(given("code")) {
            None => token_error("invalid_grant", "unknown or already used code"),
            Some(grant) if grant.client_id != given("client_id") => {
                token_error("invalid_client", "the code was issued to another client")
            }
            Some(grant) if grant.redirect_uri != given("redirect_uri") => token_error(
                "invalid_grant",
                "redirect_uri differs from the authorization request's",
            ),
            Some(grant)
                if URL_SAFE_NO_PAD.encode(Sha256::digest(given("code_verifier").as_bytes()))
                    != grant.challenge =>
            {
                token_error(
                    "invalid_grant",
                    "code_verifier does not match the code_challenge",
                )
            }
            Some(_) => Json(json!({
                "access_token": idp.access_token(),
                "token_type": "Bearer",
                "expires_in": 600,
            }))
            .into_response(),
        }
    };
    allow_dashboard(&idp, &request, &mut response);
    response
}
