//! Target 7: the worst operation Consentry accepts, alone and 32 at once. Every answer is held
//! to `CONSENTRY_MAX_RESPONSE_BYTES`, so the worst accepted answer is one just within it; the
//! one measured here is graphql-js's full introspection (every option) asked as many times, under
//! aliases, as the budget allows. It needs no database, so what it costs is Consentry's own:
//! its time alone, and the growth of resident memory. With 32 of them at once, resident memory
//! must stay within 1 GiB and `/healthz` must answer within 1 s throughout.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::Bench;
use crate::{
    database::Backend,
    process::{Server, resident_bytes, settle},
    report::Row,
    seed,
    stats::{Samples, ms},
};

/// graphql-js 17.1.0's `getIntrospectionQuery` with every option (the integration tests'
/// fixture).
const INTROSPECTION: &str =
    include_str!("../../../tests/api/fixtures/introspection/graphql-js-17.1.0-all-options.graphql");

/// The most aliases an operation may use: each copy of `__schema` takes one.
const MAX_COPIES: usize = api::MAX_ALIASES;
/// Resident memory the instance may reach with the operations running at once.
const MEMORY_TARGET: u64 = 1024 * 1024 * 1024;
/// How long `/healthz` may take meanwhile.
const HEALTH_TARGET: Duration = Duration::from_secs(1);

/// The introspection query with its `__schema` asked `copies` times under aliases.
fn aliased(copies: usize) -> anyhow::Result<String> {
    let open = INTROSPECTION
        .find("__schema {")
        .context("no __schema in the introspection query")?;
    let start = open + "__schema {".len();
    let mut depth = 1;
    let end = INTROSPECTION[start..]
        .char_indices()
        .find_map(|(i, c)| {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(start + i)
        })
        .context("an unbalanced introspection query")?;
    let fragments = INTROSPECTION
        .find("fragment FullType")
        .context("no fragments in the introspection query")?;
    let body = &INTROSPECTION[start..end];
    let copies: String = (0..copies)
        .map(|i| format!("s{i}: __schema {{{body}}}\n"))
        .collect();
    Ok(format!(
        "query Worst {{\n{copies}}}\n{}",
        &INTROSPECTION[fragments..]
    ))
}

/// One run of the operation: its answer's size and how long it took.
async fn run_once(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    query: &str,
) -> anyhow::Result<(usize, Duration)> {
    let started = Instant::now();
    let response = http
        .post(format!("{}/graphql", server.base))
        .bearer_auth(token)
        .json(&json!({ "query": query }))
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    let elapsed = started.elapsed();
    let answer: Value = serde_json::from_slice(&body)
        .with_context(|| format!("{status}: not JSON ({} bytes)", body.len()))?;
    if let Some(errors) = answer.get("errors") {
        bail!("{status}: {errors}");
    }
    Ok((body.len(), elapsed))
}

pub(super) async fn run(bench: &Bench, backend: Backend) -> anyhow::Result<Vec<Row>> {
    let db = bench.database(backend, "worst").await?;
    let connection = db.connect().await?;
    seed::admin(&connection).await?;
    connection.close().await?;
    let server = bench.consentry("worst-operation", &db, None).await?;
    let token = bench.token()?;
    let http = reqwest::Client::new();
    let budget = api::Settings::defaults().max_response_bytes;

    // The most copies whose answer the budget accepts.
    let (one, _) = run_once(&http, &server, &token, &aliased(1)?).await?;
    let mut copies = (budget / one).clamp(1, MAX_COPIES);
    let query = loop {
        let query = aliased(copies)?;
        match run_once(&http, &server, &token, &query).await {
            Ok(_) => break query,
            Err(_) if copies > 1 => copies -= 1,
            Err(error) => return Err(error.context("even one copy is refused")),
        }
    };
    // …and one more is refused, so this is the worst of its kind.
    if copies < MAX_COPIES
        && run_once(&http, &server, &token, &aliased(copies + 1)?)
            .await
            .is_ok()
    {
        bail!(
            "{} copies were accepted too: the budget is not {budget} bytes",
            copies + 1
        );
    }

    // Alone: time (median of runs) and the growth of resident memory while it runs.
    settle().await;
    let idle = server.rss()?;
    let runs = if bench.quick() { 3 } else { 10 };
    let sampler = Sampler::start(&server)?;
    let mut times = Samples::default();
    let mut size = 0;
    for _ in 0..runs {
        let (bytes, elapsed) = run_once(&http, &server, &token, &query).await?;
        size = bytes;
        times.push(elapsed);
    }
    let alone_peak = sampler.stop().await;

    // At once, with /healthz asked every 50 ms throughout.
    let at_once = if bench.quick() { 8 } else { 32 };
    let rounds = if bench.quick() { 1 } else { 3 };
    let sampler = Sampler::start(&server)?;
    let health = Health::start(&server);
    let started = Instant::now();
    for _ in 0..rounds {
        let runs = (0..at_once).map(|_| {
            let http = reqwest::Client::new();
            let (server, token, query) = (&server, &token, &query);
            async move { run_once(&http, server, token, query).await }
        });
        for result in futures_util::future::join_all(runs).await {
            result.context("an operation failed while the others ran")?;
        }
    }
    let all_done = started.elapsed();
    let slowest_health = health.stop().await?;
    let peak = sampler.stop().await;
    server.stop().await;

    let mib = |bytes: u64| bytes as f64 / 1024.0 / 1024.0;
    Ok(vec![
        Row::new(
            7,
            "worst accepted operation alone: answer, time (median), resident memory",
            backend.label(),
        )
        .value(format!(
            "{copies} × full introspection: {:.2} MB in {} (p100 {}); resident {:.0} → {:.0} MiB",
            size as f64 / 1e6,
            ms(times.p50()),
            ms(times.percentile(100.0)),
            mib(idle),
            mib(alone_peak),
        ))
        .goal(
            format!("answer ≤ CONSENTRY_MAX_RESPONSE_BYTES ({budget} bytes)"),
            size <= budget,
        ),
        Row::new(
            7,
            &format!("{at_once} at once, {rounds} rounds: peak resident memory"),
            backend.label(),
        )
        .value(format!(
            "{:.0} MiB (all done in {})",
            mib(peak),
            ms(all_done)
        ))
        .goal("≤ 1 GiB", peak <= MEMORY_TARGET),
        Row::new(
            7,
            &format!("{at_once} at once: slowest /healthz meanwhile"),
            backend.label(),
        )
        .value(ms(slowest_health))
        .goal("≤ 1 s", slowest_health <= HEALTH_TARGET),
    ])
}

/// Samples a server's resident memory every 5 ms, keeping the peak.
struct Sampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(server: &Server) -> anyhow::Result<Self> {
        let pid = server.pid().context("the server has exited")?;
        let peak = Arc::new(AtomicU64::new(resident_bytes(pid)?));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (peak, stop) = (peak.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(now) = resident_bytes(pid) {
                        peak.fetch_max(now, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        Ok(Self { peak, stop, task })
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

/// Asks `/healthz` every 50 ms, keeping the slowest answer (a failure is an error).
struct Health {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<Duration>>,
}

impl Health {
    fn start(server: &Server) -> Self {
        let url = format!("{}/healthz", server.base);
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()?;
                let mut slowest = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let response = http.get(&url).send().await?;
                    if !response.status().is_success() {
                        bail!("/healthz answered {}", response.status());
                    }
                    slowest = slowest.max(started.elapsed());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(slowest)
            }
        });
        Self { stop, task }
    }

    async fn stop(self) -> anyhow::Result<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?
    }
}
