//! A stand-in for HashiCorp Vault's transit engine (`/v1/{mount}/encrypt|decrypt|rewrap/{key}`,
//! `X-Vault-Token`), enough to be Consentry's KMS in tests. It records every plaintext it
//! wrapped, so a test can search a database dump for the data keys themselves.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

#[derive(Default)]
struct Transit {
    /// Ciphertext → plaintext.
    wrapped: HashMap<String, Vec<u8>>,
    /// The transit key's newest version.
    version: u32,
    /// Every plaintext ever wrapped.
    plaintexts: Vec<Vec<u8>>,
    /// `operation key` of every call.
    calls: Vec<String>,
}

/// A running stand-in; stops when dropped.
pub struct Vault {
    pub addr: SocketAddr,
    token: String,
    transit: Arc<Mutex<Transit>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Vault {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = (String, Arc<Mutex<Transit>>);

impl Vault {
    /// Listens on a free loopback port; `token` is the only one it accepts.
    pub async fn start(token: &str) -> Self {
        let transit = Arc::new(Mutex::new(Transit {
            version: 1,
            ..Transit::default()
        }));
        let router = Router::new()
            .route("/v1/{mount}/{operation}/{key}", post(transit_call))
            .with_state((token.to_owned(), transit.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            addr,
            token: token.to_owned(),
            transit,
            task,
        }
    }

    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).unwrap()
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Every plaintext (data key) it wrapped.
    pub fn plaintexts(&self) -> Vec<Vec<u8>> {
        self.transit.lock().unwrap().plaintexts.clone()
    }

    /// `operation key` of every call so far.
    pub fn calls(&self) -> Vec<String> {
        self.transit.lock().unwrap().calls.clone()
    }

    /// A new version of the transit key (as `vault write -f transit/keys/…/rotate`).
    pub fn rotate(&self) {
        self.transit.lock().unwrap().version += 1;
    }
}

fn refused(status: StatusCode, why: &str) -> Response {
    (status, Json(json!({ "errors": [why] }))).into_response()
}

async fn transit_call(
    State((token, transit)): State<Shared>,
    Path((_mount, operation, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if headers.get("x-vault-token").and_then(|t| t.to_str().ok()) != Some(token.as_str()) {
        return refused(StatusCode::FORBIDDEN, "permission denied");
    }
    let mut transit = transit.lock().unwrap();
    transit.calls.push(format!("{operation} {key}"));
    let new_ciphertext = |plaintext: Vec<u8>, transit: &mut Transit| {
        let mut handle = [0u8; 24];
        rand::Rng::fill(&mut rand::rng(), &mut handle);
        let ciphertext = format!("vault:v{}:{}", transit.version, STANDARD.encode(handle));
        transit.wrapped.insert(ciphertext.clone(), plaintext);
        ciphertext
    };
    match operation.as_str() {
        "encrypt" => {
            let Some(plaintext) = body["plaintext"]
                .as_str()
                .and_then(|p| STANDARD.decode(p).ok())
            else {
                return refused(StatusCode::BAD_REQUEST, "missing plaintext to encrypt");
            };
            transit.plaintexts.push(plaintext.clone());
            let ciphertext = new_ciphertext(plaintext, &mut transit);
            Json(json!({ "data": { "ciphertext": ciphertext, "key_version": transit.version } }))
                .into_response()
        }
        "decrypt" | "rewrap" => {
            let Some(plaintext) = body["ciphertext"]
                .as_str()
                .and_then(|c| transit.wrapped.get(c))
                .cloned()
            else {
                return refused(StatusCode::BAD_REQUEST, "invalid ciphertext");
            };
            if operation == "decrypt" {
                Json(json!({ "data": { "plaintext": STANDARD.encode(plaintext) } })).into_response()
            } else {
                let ciphertext = new_ciphertext(plaintext, &mut transit);
                Json(
                    json!({ "data": { "ciphertext": ciphertext, "key_version": transit.version } }),
                )
                .into_response()
            }
        }
        _ => refused(StatusCode::NOT_FOUND, "unsupported path"),
    }
}
