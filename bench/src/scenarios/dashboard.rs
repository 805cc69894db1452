//! Targets 1 and 2: the dashboard query runs a constant, small number of SQL statements, and
//! its throughput through GraphQL is at least half that of a plain axum handler answering the
//! same JSON from the same SQL.

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

/// Concurrent connections of the throughput load.
const CONNECTIONS: usize = 8;

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

    // Target 2: the same answer, then the throughput of each.
    let graphql = request(
        format!("{}/graphql", consentry.base),
        query("Dashboard", 100),
    );
    let plain = request(
        format!("{}/graphql", baseline.base),
        query("Dashboard", 100),
    );
    let graphql_answer = graphql.send(&http).await?;
    let plain_answer = plain.send(&http).await?;
    same_answer(&graphql_answer, &plain_answer)?;

    let half = bench.options.measure_for() / 2;
    let (mut graphql_rate, mut plain_rate) = (0.0, 0.0);
    // Interleaved, so that a slow patch of the machine hits both alike.
    for _ in 0..2 {
        plain_rate += load::throughput(&plain, CONNECTIONS, half, plain_answer.len()).await? / 2.0;
        graphql_rate +=
            load::throughput(&graphql, CONNECTIONS, half, graphql_answer.len()).await? / 2.0;
    }
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

    consentry.stop().await;
    baseline.stop().await;
    Ok(vec![statements, throughput])
}

/// The baseline must answer exactly what GraphQL answers, or its throughput proves nothing.
fn same_answer(graphql: &[u8], plain: &[u8]) -> anyhow::Result<()> {
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
            .map(|(g, p)| format!("GraphQL {g} / baseline {p}"))
            .unwrap_or_else(|| "the lists differ in length".to_owned());
        bail!("the baseline's answer differs from GraphQL's: {first}");
    }
    Ok(())
}
