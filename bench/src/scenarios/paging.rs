//! Target 9 (issue 17): an MSP's size does not change what a page of its clients costs.
//!
//! Three MSPs share one database: 100, 1,000 and 10,000 clients, two delegated consents each.
//! Consentry walks every page of each (`first: 100`, following `endCursor`) with its answer
//! cache off, so every page is read from the database. For each MSP the tool checks that the
//! walk returned every client once, in name order, and reports:
//! - the SQL statements of each page, as the server counts them: the same for every page of
//!   every MSP;
//! - the median time of a page, against the 100-client MSP's: at most 1.5×;
//! - the plans of the status and the name filter on the 10,000-client MSP: the client rows
//!   are found through an index, never by reading the whole table.
//!
//! The MSPs take turns, walk after walk, so a slow patch of the machine hits each alike.

use std::time::Instant;

use anyhow::{Context, bail};
use api::{ClientFilter, list_query};
use entity::enums::GraphApiStatus;
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryTrait};
use serde_json::{Value, json};

use super::{Bench, metric};
use crate::{database::Backend, report::Row, seed, stats::Samples};

/// The page of issue 17's dashboard, with what it takes to ask for the next one.
const PAGE: &str = "clients(first: 100, after: $after) { edges { node { name graphApiTile { status problem { code } availableActions } delegatedConsents { userPrincipalName status } } } pageInfo { hasNextPage endCursor } }";

/// A page may take this much longer than the 100-client MSP's, at most.
const PAGE_TIME_RATIO: f64 = 1.5;

/// Pages each MSP is timed on, at least (the 100-client MSP has a single page: it is walked
/// again and again).
const PAGES_PER_MSP: usize = 30;

/// One MSP of the scenario.
struct Msp {
    id: String,
    clients: usize,
    token: String,
    /// The operation's name, so that the server's statement counts are this MSP's alone.
    operation: String,
    pages: Samples,
    statements: Vec<f64>,
}

pub(super) async fn run(bench: &Bench, backend: Backend) -> anyhow::Result<Vec<Row>> {
    let sizes: &[usize] = if bench.quick() {
        &[100, 1_000]
    } else {
        &[100, 1_000, 10_000]
    };
    let db = bench.database(backend, "paging").await?;
    let connection = db.connect().await?;
    let mut msps = Vec::new();
    for &clients in sizes {
        let id = format!("paging-{clients}");
        seed::admin_of(&connection, &id).await?;
        seed::many(&connection, &id, clients).await?;
        msps.push(Msp {
            token: seed::token_of(&bench.secret, &id)?,
            operation: format!("Page{clients}"),
            id,
            clients,
            pages: Samples::default(),
            statements: Vec::new(),
        });
    }
    if backend == Backend::Postgres {
        // What autovacuum does to freshly loaded tables, so the planner knows their sizes.
        connection.execute_unprepared("ANALYZE").await?;
    }

    let consentry = bench
        .consentry_with(
            "paging-consentry",
            &db,
            None,
            &[("CONSENTRY_ANSWER_CACHE_BYTES", "0")],
        )
        .await?;
    let http = reqwest::Client::new();
    let rounds = if bench.quick() { 1 } else { 3 };
    for _ in 0..rounds {
        for msp in &mut msps {
            let walks = PAGES_PER_MSP.div_ceil(msp.clients.div_ceil(100) * rounds);
            for _ in 0..walks {
                walk(&http, &consentry, msp).await?;
            }
        }
    }
    consentry.stop().await;

    let mut rows = Vec::new();
    let statements: Vec<f64> = msps
        .iter()
        .flat_map(|m| m.statements.iter().copied())
        .collect();
    let first = statements.first().copied().unwrap_or_default();
    let constant = statements.iter().all(|s| *s == first);
    let most = statements.iter().copied().fold(0.0, f64::max);
    let sizes_text = msps
        .iter()
        .map(|m| group(m.clients))
        .collect::<Vec<_>>()
        .join(" / ");
    rows.push(
        Row::new(
            9,
            &format!("SQL statements per page (first: 100), MSPs of {sizes_text} clients"),
            backend.label(),
        )
        .value(
            msps.iter()
                .map(|m| format!("{}", m.statements.iter().copied().fold(0.0, f64::max)))
                .collect::<Vec<_>>()
                .join(" / "),
        )
        .baseline(format!("{first} (first page)"))
        .ratio(crate::stats::ratio(most, first))
        .goal("the same on every page", constant && first > 0.0),
    );
    let base = msps[0].pages.p50();
    for msp in &msps[1..] {
        let median = msp.pages.p50();
        let ratio = crate::stats::ratio(median.as_secs_f64(), base.as_secs_f64());
        rows.push(
            Row::new(
                9,
                &format!(
                    "median page time, MSP of {} clients vs of 100 (answer cache off)",
                    group(msp.clients)
                ),
                backend.label(),
            )
            .value(crate::stats::ms(median))
            .baseline(crate::stats::ms(base))
            .ratio(ratio)
            .goal(
                format!("ratio ≤ {PAGE_TIME_RATIO}"),
                ratio <= PAGE_TIME_RATIO,
            ),
        );
    }

    // The filters' plans, on the largest MSP, in the middle of its list.
    let largest = msps.last().context("no MSP")?;
    let viewer = seed::admin_of(&connection, &largest.id).await?;
    let after = api::Cursor {
        name_key: api::name_key(&format!("Client {:05}", largest.clients / 2)),
        id: uuid::Uuid::nil(),
    };
    for (what, filter) in [
        (
            "status",
            ClientFilter {
                statuses: vec![GraphApiStatus::Failed, GraphApiStatus::AwaitingConsent],
                ..ClientFilter::default()
            },
        ),
        (
            "name",
            ClientFilter {
                search: Some("client 09".to_owned()),
                ..ClientFilter::default()
            },
        ),
    ] {
        let plan = plan(&connection, backend, &viewer, &filter, &after).await?;
        let indexed = uses_indexes(backend, &plan);
        eprintln!(
            "plan of the {what} filter on {} (page after the middle):\n{}",
            backend.label(),
            plan.join("\n")
        );
        rows.push(
            Row::new(
                9,
                &format!(
                    "{what} filter on the MSP of {} clients: how the client rows are found",
                    group(largest.clients)
                ),
                backend.label(),
            )
            .value(summary(backend, &plan))
            .goal("through an index", indexed),
        );
    }
    connection.close().await?;
    Ok(rows)
}

/// Walks every page of `msp`'s clients once, timing each page and counting its statements;
/// fails unless the walk returns every client once, in name order, with its consents.
async fn walk(
    http: &reqwest::Client,
    server: &crate::process::Server,
    msp: &mut Msp,
) -> anyhow::Result<()> {
    let query = format!("query {}($after: String) {{ {PAGE} }}", msp.operation);
    let series = format!(
        "consentry_graphql_operation_db_statements_sum{{operation=\"{}\",kind=\"query\"}}",
        msp.operation
    );
    let mut counted = metric(http, server, &series).await.unwrap_or(0.0);
    let mut after = Value::Null;
    let mut names: Vec<String> = Vec::with_capacity(msp.clients);
    loop {
        let started = Instant::now();
        let answer: Value = http
            .post(format!("{}/graphql", server.base))
            .bearer_auth(&msp.token)
            .json(&json!({ "query": query, "variables": { "after": after } }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        msp.pages.push(started.elapsed());
        if let Some(errors) = answer.get("errors") {
            bail!("a page of {} answered errors: {errors}", msp.id);
        }
        let now = metric(http, server, &series).await?;
        msp.statements.push(now - counted);
        counted = now;
        let page = &answer["data"]["clients"];
        for edge in page["edges"].as_array().context("a page without edges")? {
            let consents = edge["node"]["delegatedConsents"]
                .as_array()
                .map_or(0, Vec::len);
            if consents != 2 {
                bail!("a client of {} with {consents} consents, not 2", msp.id);
            }
            names.push(
                edge["node"]["name"]
                    .as_str()
                    .context("a client without a name")?
                    .to_owned(),
            );
        }
        if page["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
        if names.len() > msp.clients {
            bail!("the walk of {} goes on past its clients", msp.id);
        }
    }
    let expected: Vec<String> = (0..msp.clients).map(|i| format!("Client {i:05}")).collect();
    if names != expected {
        bail!(
            "walking {} gave {} clients, not each of its {} once in name order",
            msp.id,
            names.len(),
            msp.clients
        );
    }
    Ok(())
}

/// The database's plan of the `clients` page statement for this filter, a line per step.
async fn plan(
    connection: &DatabaseConnection,
    backend: Backend,
    viewer: &api::Viewer,
    filter: &ClientFilter,
    after: &api::Cursor,
) -> anyhow::Result<Vec<String>> {
    let query = list_query(viewer, filter, 100, Some(after)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut statement = query.build(connection.get_database_backend());
    let (prefix, column) = match backend {
        Backend::Sqlite => ("EXPLAIN QUERY PLAN ", "detail"),
        Backend::Postgres => ("EXPLAIN ", "QUERY PLAN"),
    };
    statement.sql = format!("{prefix}{}", statement.sql);
    connection
        .query_all_raw(statement)
        .await?
        .iter()
        .map(|row| Ok(row.try_get::<String>("", column)?))
        .collect()
}

/// Whether the plan finds `client` rows through an index rather than by reading the table.
fn uses_indexes(backend: Backend, plan: &[String]) -> bool {
    let text = plan.join("\n");
    match backend {
        Backend::Sqlite => {
            !text.contains("SCAN client\n")
                && !text.ends_with("SCAN client")
                && (text.contains("client USING INDEX") || text.contains("client USING COVERING"))
        }
        Backend::Postgres => !text.contains("Seq Scan on client ") && text.contains("Index"),
    }
}

/// The plan's steps on `client` and `graph_api_tile`, in a line.
fn summary(backend: Backend, plan: &[String]) -> String {
    plan.iter()
        .map(|line| line.trim().trim_start_matches("->").trim())
        .filter(|line| match backend {
            Backend::Sqlite => line.starts_with("SEARCH") || line.starts_with("SCAN"),
            Backend::Postgres => line.contains(" on "),
        })
        .map(|line| line.split("  (cost").next().unwrap_or(line).to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}

/// 10000 as "10,000".
fn group(n: usize) -> String {
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    grouped
}
