//! Targets 1, 2 and 8: the dashboard query runs a constant, small number of SQL statements;
//! its throughput through GraphQL is at least half that of a plain axum handler answering the
//! same JSON from the same SQL (2), and at least five times that of the Node.js peer —
//! graphql-yoga, better-sqlite3 and DataLoader — answering the same JSON (8).
//!
//! Consentry keeps answers while nothing of the MSP changes (its answer cache), so the load,
//! one query asked again and again, is mostly answered from memory. The same server with its
//! cache off is measured beside it (tracked, without a target): every query read from the
//! database, the cost of the first read after each change.
//!
//! The servers take turns, round after round (Consentry, Consentry without its cache,
//! baseline, peer, three rounds), so a slow patch of the machine hits each alike; each
//! throughput is the median of its rounds.

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{Bench, metric};
use crate::{
    database::Backend,
    load::{self, Request},
    report::Row,
    seed,
};

/// The dashboard query of issue 8 (`FIRST` is the page size).
const DASHBOARD: &str = "clients(first: FIRST) { edges { node { name graphApiTile { status problem { code } availableActions } delegatedConsents { userPrincipalName status } } } }";

/// Concurrent connections of the throughput load (issue 17 measured with 16).
const CONNECTIONS: usize = 16;

/// Rounds each server is measured in, taking turns.
const ROUNDS: usize = 3;

/// Consentry's throughput against the Node.js peer's, at least (issue 17).
const PEER_RATIO: f64 = 5.0;

fn query(name: &str, first: usize) -> String {
    format!(
        "query {name} {{ {} }}",
        DASHBOARD.replace("FIRST", &first.to_string())
    )
}

pub(super) async fn run(bench: &Bench, backend: Backend) -> anyhow::Result<Vec<Row>> {
    let db = bench.database(backend, "dashboard").await?;
    let connection = db.connect().await?;
    let viewer = seed::admin(&connection).await?;
    seed::dashboard(&connection, &viewer, 100, 2).await?;
    connection.close().await?;

    let consentry = bench.consentry("dashboard-consentry", &db, None).await?;
    // The same server with its answer cache off: every query read from the database.
    let uncached_server = bench
        .consentry_with(
            "dashboard-consentry-uncached",
            &db,
            None,
            &[("CONSENTRY_ANSWER_CACHE_BYTES", "0")],
        )
        .await?;
    let baseline = bench.baseline("dashboard-baseline", &db).await?;
    let token = bench.token()?;
    let http = reqwest::Client::new();
    let request = |url: String, query: String| Request {
        url,
        token: token.clone(),
        body: json!({ "query": query }).to_string(),
    };

    // Target 1: statements per operation, as the server counts them.
    let mut counts = Vec::new();
    for first in [1, 10, 100] {
        let name = format!("Statements{first}");
        let answer = request(format!("{}/graphql", consentry.base), query(&name, first))
            .send(&http)
            .await?;
        let answer: Value = serde_json::from_slice(&answer)?;
        let edges = answer["data"]["clients"]["edges"]
            .as_array()
            .with_context(|| format!("no clients in {answer}"))?;
        if edges.len() != first {
            bail!("asked for {first} clients, got {}", edges.len());
        }
        let series = format!(
            "consentry_graphql_operation_db_statements_sum{{operation=\"{name}\",kind=\"query\"}}"
        );
        counts.push(metric(&http, &consentry, &series).await?);
    }
    let constant = counts.iter().all(|c| *c == counts[0]);
    let most = counts.iter().copied().fold(0.0, f64::max);
    let statements = Row::new(
        1,
        "SQL statements per dashboard query, first: 1 / 10 / 100",
        backend.label(),
    )
    .value(format!("{} / {} / {}", counts[0], counts[1], counts[2]))
    .baseline(format!("{} (first: 1)", counts[0]))
    .ratio(crate::stats::ratio(counts[2], counts[0]))
    .goal("constant, ≤ 4", constant && most <= 4.0);

    // Targets 2 and 8: the same answer from each, then the throughput of each.
    let graphql = request(
        format!("{}/graphql", consentry.base),
        query("Dashboard", 100),
    );
    let plain = request(
        format!("{}/graphql", baseline.base),
        query("Dashboard", 100),
    );
    let uncached_request = request(
        format!("{}/graphql", uncached_server.base),
        query("Dashboard", 100),
    );
    let graphql_answer = graphql.send(&http).await?;
    let plain_answer = plain.send(&http).await?;
    same_answer("the baseline", &graphql_answer, &plain_answer)?;
    same_answer(
        "Consentry without its answer cache",
        &graphql_answer,
        &uncached_request.send(&http).await?,
    )?;

    // The peer reads SQLite: on PostgreSQL it gets an SQLite database seeded alike.
    let peer_db = match backend {
        Backend::Sqlite => db.clone(),
        Backend::Postgres => {
            let peer_db = bench.database(Backend::Sqlite, "dashboard-peer").await?;
            let connection = peer_db.connect().await?;
            let viewer = seed::admin(&connection).await?;
            seed::dashboard(&connection, &viewer, 100, 2).await?;
            connection.close().await?;
            peer_db
        }
    };
    let peer = bench.node_peer("dashboard-node-peer", &peer_db).await?;
    let peer_request = match &peer {
        Ok(peer) => {
            let peer_request = request(format!("{}/graphql", peer.base), query("Dashboard", 100));
            let peer_answer = peer_request.send(&http).await?;
            same_answer("the Node peer", &graphql_answer, &peer_answer)?;
            Some(peer_request)
        }
        Err(_) => None,
    };

    let round = bench.options.measure_for() / 2;
    let (mut graphql_rates, mut plain_rates, mut peer_rates) = (vec![], vec![], vec![]);
    let mut uncached_rates = vec![];
    for _ in 0..ROUNDS {
        graphql_rates
            .push(load::throughput(&graphql, CONNECTIONS, round, graphql_answer.len()).await?);
        uncached_rates.push(
            load::throughput(&uncached_request, CONNECTIONS, round, graphql_answer.len()).await?,
        );
        plain_rates.push(load::throughput(&plain, CONNECTIONS, round, plain_answer.len()).await?);
        if let Some(peer_request) = &peer_request {
            peer_rates.push(
                load::throughput(peer_request, CONNECTIONS, round, graphql_answer.len()).await?,
            );
        }
    }
    let graphql_rate = crate::stats::median(&mut graphql_rates);
    let plain_rate = crate::stats::median(&mut plain_rates);
    let ratio = crate::stats::ratio(graphql_rate, plain_rate);
    let throughput = Row::new(
        2,
        "dashboard throughput (100 clients × 2 consents), GraphQL vs plain axum",
        backend.label(),
    )
    .value(format!("{graphql_rate:.0} req/s"))
    .baseline(format!("{plain_rate:.0} req/s"))
    .ratio(ratio)
    .goal("ratio ≥ 0.50", ratio >= 0.5);

    let against_peer = Row::new(
        8,
        "dashboard throughput, Consentry vs Node.js peer (graphql-yoga, better-sqlite3, DataLoader; SQLite)",
        backend.label(),
    );
    let peer_rate = match &peer {
        Ok(_) => Ok(crate::stats::median(&mut peer_rates)),
        Err(why) => Err(why.clone()),
    };
    let against_peer = match &peer_rate {
        Ok(peer_rate) => {
            let peer_rate = *peer_rate;
            let ratio = crate::stats::ratio(graphql_rate, peer_rate);
            against_peer
                .value(format!("{graphql_rate:.0} req/s"))
                .baseline(format!("{peer_rate:.0} req/s"))
                .ratio(ratio)
                .goal(format!("ratio ≥ {PEER_RATIO:.0}"), ratio >= PEER_RATIO)
        }
        Err(why) => against_peer.skipped(why.clone()),
    };

    let uncached_rate = crate::stats::median(&mut uncached_rates);
    let uncached = {
        let row = Row::new(
            8,
            "dashboard throughput with the answer cache off (every query from the database)",
            backend.label(),
        )
        .value(format!("{uncached_rate:.0} req/s"));
        match peer_rate {
            Ok(peer_rate) => row
                .baseline(format!("{peer_rate:.0} req/s (Node peer)"))
                .ratio(crate::stats::ratio(uncached_rate, peer_rate)),
            Err(_) => row
                .baseline(format!("{plain_rate:.0} req/s (plain axum)"))
                .ratio(crate::stats::ratio(uncached_rate, plain_rate)),
        }
        .tracked()
    };

    consentry.stop().await;
    uncached_server.stop().await;
    baseline.stop().await;
    if let Ok(peer) = peer {
        peer.stop().await;
    }
    Ok(vec![statements, throughput, against_peer, uncached])
}

/// A server compared with Consentry must answer exactly what Consentry answers, or its
/// throughput proves nothing.
fn same_answer(who: &str, graphql: &[u8], plain: &[u8]) -> anyhow::Result<()> {
    let graphql: Value = serde_json::from_slice(graphql)?;
    let plain: Value = serde_json::from_slice(plain)?;
    let edges = graphql["data"]["clients"]["edges"]
        .as_array()
        .context("GraphQL answered no clients")?;
    let consents: usize = edges
        .iter()
        .map(|e| {
            e["node"]["delegatedConsents"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum();
    if edges.len() != 100 || consents != 200 {
        bail!(
            "GraphQL answered {} clients and {consents} consents, not 100 and 200",
            edges.len()
        );
    }
    if graphql != plain {
        let first = edges
            .iter()
            .zip(
                plain["data"]["clients"]["edges"]
                    .as_array()
                    .into_iter()
                    .flatten(),
            )
            .find(|(g, p)| g != p)
            .map(|(g, p)| format!("Consentry {g} / {who} {p}"))
            .unwrap_or_else(|| "the lists differ in length".to_owned());
        bail!("{who}'s answer differs from Consentry's: {first}");
    }
    Ok(())
}
