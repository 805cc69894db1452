//! Target 3: one tile change reaches every one of many `graphApiTileChanged` subscribers of
//! one instance quickly, and an idle subscriber costs little memory — against one subscriber's
//! delivery time and against what an idle WebSocket costs with axum's default buffers.

use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{StreamExt, stream};
use serde_json::json;
use tokio::sync::mpsc;

use super::{AUTHORISE, Bench, graphql, live};
use crate::{
    database::Backend,
    process::{Server, settle},
    report::Row,
    stats::{Samples, ms, ratio},
    ws::{self, Arrival},
};

const SUBSCRIPTION: &str = "subscription($id: ID) { graphApiTileChanged(clientId: $id) { id status availableActions version } }";
/// Sockets opened at once while connecting subscribers.
const CONNECTING: usize = 200;

pub(super) async fn run(bench: &Bench, backend: Backend) -> anyhow::Result<Vec<Row>> {
    let n = bench.options.subscribers();
    // This process holds one socket per subscriber, and so does the server (its own limit).
    let (soft, _) = rlimit_nofile();
    if soft < n as u64 + 200 {
        bail!(
            "{n} subscribers need about {} open files, but the limit is {soft}: raise it (`ulimit -n`) or pass --subscribers",
            n + 200
        );
    }
    let (sim, db, client) = bench.one_client(backend, "Fanout").await?;
    let server = bench.consentry("subscribers", &db, Some(&sim)).await?;
    let token = bench.token()?;
    let http = reqwest::Client::new();
    let variables = json!({ "id": client });
    let (arrivals, mut arrived) = mpsc::unbounded_channel();
    let mut listeners = Vec::with_capacity(n + 1);

    // One subscriber: the baseline delivery time, and a warm server.
    let first = ws::subscribe(server.port, &token, SUBSCRIPTION, variables.clone()).await?;
    listeners.push(ws::listen(0, first, arrivals.clone()));
    live(&http, &server, 1, Duration::from_secs(10)).await?;
    let rounds = if bench.quick() { 5 } else { 20 };
    let one = fan_out(&http, &server, &token, &client, &mut arrived, 1, rounds).await?;
    settle().await;
    let before = server.rss()?;

    let connected: Vec<anyhow::Result<ws::Socket>> = stream::iter(1..=n)
        .map(|_| ws::subscribe(server.port, &token, SUBSCRIPTION, variables.clone()))
        .buffer_unordered(CONNECTING)
        .collect()
        .await;
    for (i, socket) in connected.into_iter().enumerate() {
        listeners.push(ws::listen(i + 1, socket?, arrivals.clone()));
    }
    live(&http, &server, n + 1, Duration::from_secs(120)).await?;
    settle().await;
    let after = server.rss()?;
    let per_subscriber = after.saturating_sub(before) as f64 / n as f64 / 1024.0;

    let many = fan_out(&http, &server, &token, &client, &mut arrived, n + 1, 3).await?;
    server.stop().await;
    // Every subscriber's socket ends with the server: wait, so their files are free again.
    for listener in listeners {
        let _ = listener.await;
    }
    let default_cost = *bench
        .default_socket_cost
        .get_or_try_init(|| default_socket_cost(bench, backend, n))
        .await?;

    let p99 = many.p99();
    Ok(vec![
        Row::new(
            3,
            &format!("one tile change to {n} subscribers: p99 delivery"),
            backend.label(),
        )
        .value(format!("{} (p50 {})", ms(p99), ms(many.p50())))
        .baseline(format!("{} (1 subscriber)", ms(one.p99())))
        .ratio(ratio(p99.as_secs_f64(), one.p99().as_secs_f64()))
        .goal("≤ 250 ms", p99 <= Duration::from_millis(250)),
        Row::new(3, "resident memory per idle subscriber", backend.label())
            .value(format!("{per_subscriber:.1} KiB"))
            .baseline(format!(
                "{default_cost:.1} KiB (idle axum WebSocket, default buffers)"
            ))
            .ratio(ratio(per_subscriber, default_cost))
            .goal("≤ 16 KiB", per_subscriber <= 16.0),
    ])
}

/// Changes the tile `rounds` times; each time waits until all `subscribers` have it, and
/// keeps each one's time from the mutation being sent (an upper bound of the time from its
/// commit) to the event's arrival.
async fn fan_out(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    client: &str,
    arrived: &mut mpsc::UnboundedReceiver<Arrival>,
    subscribers: usize,
    rounds: usize,
) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for _ in 0..rounds {
        while arrived.try_recv().is_ok() {}
        let sent = Instant::now();
        graphql(http, server, token, AUTHORISE, json!({ "id": client })).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut got = vec![false; subscribers];
        let mut first = Vec::with_capacity(subscribers);
        while first.len() < subscribers {
            let Ok(Some(arrival)) = tokio::time::timeout_at(deadline, arrived.recv()).await else {
                bail!(
                    "only {} of {subscribers} subscribers received the change within 60 s",
                    first.len()
                );
            };
            if !std::mem::replace(&mut got[arrival.subscriber], true) {
                samples.push(arrival.at.duration_since(sent));
                first.push(arrival);
            }
        }
        // Only now, with every arrival timed, are the messages read: each must be the change.
        let versions: std::collections::BTreeSet<Option<i64>> =
            first.iter().map(Arrival::version).collect();
        if versions.len() != 1 || versions.contains(&None) {
            bail!("subscribers received different messages for one change: versions {versions:?}");
        }
    }
    Ok(samples)
}

/// KiB per idle WebSocket of a plain axum server with default buffers.
async fn default_socket_cost(bench: &Bench, backend: Backend, n: usize) -> anyhow::Result<f64> {
    let db = bench.database(backend, "sockets").await?;
    db.connect().await?.close().await?;
    let server = bench.baseline("sockets-baseline", &db).await?;
    let http = reqwest::Client::new();
    let url = format!("ws://127.0.0.1:{}/ws", server.port);
    // One socket first, so that the measurement starts from a warm server.
    let warm = ws::open(&url, None).await?;
    open_sockets(&http, &server, 1).await?;
    settle().await;
    let before = server.rss()?;
    let sockets: Vec<anyhow::Result<ws::Socket>> = stream::iter(0..n)
        .map(|_| ws::open(&url, None))
        .buffer_unordered(CONNECTING)
        .collect()
        .await;
    let sockets = sockets.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    open_sockets(&http, &server, n + 1).await?;
    settle().await;
    let after = server.rss()?;
    server.stop().await;
    drop((warm, sockets));
    Ok(after.saturating_sub(before) as f64 / n as f64 / 1024.0)
}

/// Waits until the baseline holds `n` sockets.
async fn open_sockets(http: &reqwest::Client, server: &Server, n: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let open: usize = http
            .get(format!("{}/ws/open", server.base))
            .send()
            .await?
            .text()
            .await?
            .trim()
            .parse()?;
        if open >= n {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("only {open} of {n} plain WebSockets opened");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rlimit_nofile() -> (u64, u64) {
    rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024))
}
