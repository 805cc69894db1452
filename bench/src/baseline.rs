//! The baseline the ratios are taken against: a plain axum server with Consentry's own
//! settings, pool and caller authentication, and no GraphQL.
//!
//! - `POST /graphql` answers the dashboard query's JSON from the same SQL (the caller's MSP,
//!   one page of clients with their tiles, their delegated consents), built with serde.
//! - `GET /ws` holds WebSockets open with axum's default buffers (what a socket costs when
//!   nothing is tuned); `GET /ws/open` counts them.
//! - `GET /readyz` answers once the database does.

use std::{
    ffi::OsString,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use api::{
    CallerAuth, ClientFilter, GraphApiAction, available_actions, delegated_consents_of,
    list_clients,
};
use axum::{
    Router,
    body::Bytes,
    extract::{State, WebSocketUpgrade, ws::Message},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use clap::Parser;
use sea_orm::{ActiveEnum, DatabaseConnection};
use serde::Serialize;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    settings: api::Settings,
}

#[derive(Clone)]
struct Baseline {
    db: DatabaseConnection,
    auth: Arc<CallerAuth>,
    open_sockets: Arc<AtomicUsize>,
}

/// `consentry-bench baseline [consentry's server options]`: serves until killed.
pub fn main(args: impl Iterator<Item = OsString>) -> ExitCode {
    let args = Args::parse_from(std::iter::once(OsString::from("baseline")).chain(args));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args.settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: api::Settings) -> anyhow::Result<()> {
    let db = api::connect_database(&settings).await?;
    let auth = CallerAuth::from_settings(&settings)?;
    let state = Baseline {
        db,
        auth,
        open_sockets: Arc::default(),
    };
    let router = Router::new()
        .route("/graphql", post(dashboard))
        .route("/readyz", get(readyz))
        .route("/ws", get(socket))
        .route("/ws/open", get(open_sockets))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    axum::serve(api::without_nagle(listener), router).await?;
    Ok(())
}

async fn readyz(State(state): State<Baseline>) -> StatusCode {
    if api::ping_database(&state.db, std::time::Duration::from_secs(2)).await {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

#[derive(Serialize)]
struct Answer<'a> {
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    clients: Clients<'a>,
}

#[derive(Serialize)]
struct Clients<'a> {
    edges: Vec<Edge<'a>>,
}

#[derive(Serialize)]
struct Edge<'a> {
    node: Node<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Node<'a> {
    name: &'a str,
    graph_api_tile: Tile,
    delegated_consents: Vec<Consent<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tile {
    status: String,
    problem: Option<Problem>,
    available_actions: Vec<&'static str>,
}

#[derive(Serialize)]
struct Problem {
    code: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Consent<'a> {
    user_principal_name: &'a str,
    status: String,
}

fn action_name(action: GraphApiAction) -> &'static str {
    match action {
        GraphApiAction::Authorise => "AUTHORISE",
        GraphApiAction::Verify => "VERIFY",
        GraphApiAction::CreateServicePrincipal => "CREATE_SERVICE_PRINCIPAL",
        GraphApiAction::Delegate => "DELEGATE",
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

/// The dashboard query's answer (`clients(first: 100) { edges { node { name graphApiTile {
/// status problem { code } availableActions } delegatedConsents { userPrincipalName status } } } }`).
async fn dashboard(State(state): State<Baseline>, headers: HeaderMap, body: Bytes) -> Response {
    // The request is read as GraphQL's would be: a JSON object.
    if !serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v.is_object()) {
        return error(StatusCode::BAD_REQUEST, "not a JSON object".to_owned());
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let viewer = match state.auth.authenticate(&state.db, authorization).await {
        Ok(viewer) => viewer,
        Err(e) => return error(StatusCode::UNAUTHORIZED, e.to_string()),
    };
    let page = match list_clients(&state.db, &viewer, &ClientFilter::default(), 100, None).await {
        Ok(page) => page,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let ids: Vec<_> = page.items.iter().map(|v| v.client.id).collect();
    let consents = match delegated_consents_of(&state.db, &ids).await {
        Ok(consents) => consents,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let edges = page
        .items
        .iter()
        .map(|view| Edge {
            node: Node {
                name: &view.client.name,
                graph_api_tile: Tile {
                    status: view.tile.status.to_value(),
                    problem: view.tile.problem_code.map(|code| Problem {
                        code: code.to_value(),
                    }),
                    available_actions: available_actions(&view.tile)
                        .into_iter()
                        .map(action_name)
                        .collect(),
                },
                delegated_consents: consents
                    .get(&view.client.id)
                    .map(|list| {
                        list.iter()
                            .map(|c| Consent {
                                user_principal_name: &c.user_principal_name,
                                status: c.status.to_value(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            },
        })
        .collect();
    let answer = Answer {
        data: Data {
            clients: Clients { edges },
        },
    };
    match serde_json::to_vec(&answer) {
        Ok(body) => {
            let mut response = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A WebSocket with axum's defaults, held open until the client closes it.
async fn socket(State(state): State<Baseline>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |mut socket| async move {
        state.open_sockets.fetch_add(1, Ordering::Relaxed);
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
        state.open_sockets.fetch_sub(1, Ordering::Relaxed);
    })
}

async fn open_sockets(State(state): State<Baseline>) -> String {
    state.open_sockets.load(Ordering::Relaxed).to_string()
}
