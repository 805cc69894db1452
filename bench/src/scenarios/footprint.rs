//! Target 6: resident memory of an idle instance, and the time from starting the process to
//! its first successful `/readyz` on an existing database — against the plain axum baseline,
//! which opens the same pool and nothing else.

use std::time::Duration;

use serde_json::json;
use simulator::SimTenant;

use super::{Bench, simulator};
use crate::{
    database::Backend,
    load::Request,
    process::{Server, settle},
    report::Row,
    seed,
    stats::{Samples, ms, ratio},
};

const QUERY: &str = "query Dashboard { clients(first: 10) { edges { node { name graphApiTile { status problem { code } availableActions } delegatedConsents { userPrincipalName status } } } } }";

/// What one start measured.
struct Start {
    ready_after: Duration,
    resident: u64,
}

pub(super) async fn run(bench: &Bench, backend: Backend) -> anyhow::Result<Vec<Row>> {
    let sim = simulator(vec![SimTenant::healthy(
        "footprint.onmicrosoft.com",
        "Footprint",
    )])
    .await?;
    // An existing database: migrated, with clients.
    let db = bench.database(backend, "footprint").await?;
    let connection = db.connect().await?;
    let viewer = seed::admin(&connection).await?;
    seed::dashboard(&connection, &viewer, 10, 2).await?;
    connection.close().await?;

    let starts = if bench.quick() { 2 } else { 5 };
    let token = bench.token()?;
    let (mut consentry, mut plain) = (Vec::new(), Vec::new());
    for i in 0..starts {
        let server = bench
            .consentry(&format!("footprint-consentry-{i}"), &db, Some(&sim))
            .await?;
        consentry.push(weigh(server, &token).await?);
        let server = bench
            .baseline(&format!("footprint-baseline-{i}"), &db)
            .await?;
        plain.push(weigh(server, &token).await?);
    }

    let mib = |starts: &[Start]| {
        let mut sizes: Vec<u64> = starts.iter().map(|s| s.resident).collect();
        sizes.sort_unstable();
        sizes[sizes.len() / 2] as f64 / 1024.0 / 1024.0
    };
    let ready = |starts: &[Start]| -> Samples { starts.iter().map(|s| s.ready_after).collect() };
    let (memory, plain_memory) = (mib(&consentry), mib(&plain));
    let (started, plain_started) = (ready(&consentry), ready(&plain));
    Ok(vec![
        Row::new(
            6,
            "idle resident memory (median of starts)",
            backend.label(),
        )
        .value(format!("{memory:.1} MiB"))
        .baseline(format!("{plain_memory:.1} MiB (plain axum)"))
        .ratio(ratio(memory, plain_memory))
        .goal("≤ 30 MiB", memory <= 30.0),
        Row::new(
            6,
            "start to ready on an existing database (median of starts)",
            backend.label(),
        )
        .value(format!(
            "{} (worst {})",
            ms(started.p50()),
            ms(started.percentile(100.0))
        ))
        .baseline(format!("{} (plain axum)", ms(plain_started.p50())))
        .ratio(ratio(
            started.p50().as_secs_f64(),
            plain_started.p50().as_secs_f64(),
        ))
        .goal("≤ 300 ms", started.p50() <= Duration::from_millis(300)),
    ])
}

/// Serves one dashboard query (so the figure is of a server that has worked), lets it go
/// idle, reads its memory and stops it.
async fn weigh(server: Server, token: &str) -> anyhow::Result<Start> {
    let http = reqwest::Client::new();
    Request {
        url: format!("{}/graphql", server.base),
        token: token.to_owned(),
        body: json!({ "query": QUERY }).to_string(),
    }
    .send(&http)
    .await?;
    drop(http);
    settle().await;
    let start = Start {
        ready_after: server.ready_after,
        resident: server.rss()?,
    };
    server.stop().await;
    Ok(start)
}
