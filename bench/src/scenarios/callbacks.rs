//! Target 5: the admin-consent callback — state lookup, verification against the simulator,
//! commit, publish — in bursts of 100 concurrent callbacks. Every callback of every burst must
//! succeed and authorise its tile (the target). Issue 17 retired its latency target (a human
//! clicks each consent; the burst arithmetic on two shared cores cannot meet 25 ms), so the
//! burst's cost is tracked, not judged: CPU per callback, the server's and the database's
//! (PostgreSQL's processes; SQLite's work is in the server's), and the callback's own time
//! against the same callback one at a time. Its own time is the handler's, as its
//! `Server-Timing` reports it: from the request reaching the handler to the answer, less the
//! time spent waiting for Microsoft. What the browser waited, less Microsoft's share, is shown
//! beside it: it adds the connection, the request's parsing and the bench's own scheduling
//! (its runtime also runs the simulator).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use entity::{enums::GraphApiStatus, graph_api_tile};
use futures_util::{StreamExt, future::join_all, stream};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use simulator::{SimTenant, browser};
use url::Url;

use super::{AUTHORISE, Bench, client_id, graphql, simulator};
use crate::{
    database::Backend,
    process::Server,
    report::Row,
    seed,
    stats::{Samples, ms, ratio},
};

pub(super) async fn run(bench: &Bench, backend: Backend) -> anyhow::Result<Vec<Row>> {
    let (concurrent, rounds, alone) = if bench.quick() {
        (20, 1, 10)
    } else {
        (100, 5, 50)
    };
    let total = concurrent * rounds + alone;
    let tenants: Vec<SimTenant> = (0..total)
        .map(|i| {
            SimTenant::healthy(
                &format!("tenant{i:04}.onmicrosoft.com"),
                &format!("Tenant {i:04}"),
            )
        })
        .collect();
    let sim = simulator(tenants.clone()).await?;
    let db = bench.database(backend, "callbacks").await?;
    let connection = db.connect().await?;
    let viewer = seed::admin(&connection).await?;
    let mut clients = Vec::with_capacity(total);
    for tenant in &tenants {
        let id = seed::client(
            &connection,
            &viewer,
            tenant.display_name.clone(),
            Some(tenant.domain.clone()),
        )
        .await?;
        clients.push(id);
    }

    let server = bench.consentry("callbacks", &db, Some(&sim)).await?;
    let token = bench.token()?;
    let http = reqwest::Client::new();
    let browser_http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    // The admin's part, before any clock starts: a link per client, the sign-in that proves
    // the tenant, and the (simulated) consent page accepted. What comes back is the consent
    // step's callback URL to open: the one that verifies and authorises.
    let links: Vec<anyhow::Result<Url>> = stream::iter(clients.iter().zip(&tenants))
        .map(|(client, tenant)| {
            let (http, browser_http, server, token) = (&http, &browser_http, &server, &token);
            async move {
                let data = graphql(
                    http,
                    server,
                    token,
                    AUTHORISE,
                    json!({ "id": client_id(*client) }),
                )
                .await?;
                let link = data["authoriseGraphApi"]["url"]
                    .as_str()
                    .context("authoriseGraphApi returned no url")?;
                let admin = tenant.admin().context("a tenant without an admin")?;
                browser::admin_consent(browser_http, link, admin.id, "accept").await
            }
        })
        .buffered(8)
        .collect()
        .await;
    let links = links.into_iter().collect::<anyhow::Result<Vec<_>>>()?;

    let mut one_at_a_time = Samples::default();
    for link in &links[..alone] {
        one_at_a_time.push(callback(&browser_http, &server, link).await?.handler);
    }
    let mut together = Samples::default();
    let mut browser_saw = Samples::default();
    let (mut failed, mut first_failure) = (0, None);
    let cpu_before = server.cpu()?;
    let database_before = crate::process::postgres_cpu();
    for burst in links[alone..].chunks(concurrent) {
        let results = join_all(
            burst
                .iter()
                .map(|link| callback(&browser_http, &server, link)),
        )
        .await;
        for own in results {
            match own {
                Ok(own) => {
                    together.push(own.handler);
                    browser_saw.push(own.browser);
                }
                Err(error) => {
                    failed += 1;
                    first_failure.get_or_insert(error);
                }
            }
        }
    }
    let callbacks = (concurrent * rounds) as u32;
    let cpu_per_callback = server.cpu()?.saturating_sub(cpu_before) / callbacks;
    let database_per_callback = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(crate::process::postgres_cpu_since(&database_before) / callbacks),
    };
    server.stop().await;
    if let Some(error) = &first_failure {
        eprintln!("{failed} callbacks of the bursts failed; the first: {error:#}");
    }

    let authorised = graph_api_tile::Entity::find()
        .filter(graph_api_tile::Column::Status.eq(GraphApiStatus::Authorised))
        .count(&connection)
        .await?;
    connection.close().await?;
    if failed == 0 && authorised != total as u64 {
        bail!("{authorised} of {total} tiles were authorised by their callbacks");
    }

    let p99 = together.p99();
    let database = match database_per_callback {
        Some(cpu) => format!("PostgreSQL {}", ms(cpu)),
        None => "SQLite's, in the server's".to_owned(),
    };
    Ok(vec![
        Row::new(
            5,
            &format!("{concurrent} concurrent admin-consent callbacks, {rounds} bursts: failures"),
            backend.label(),
        )
        .value(format!(
            "{failed} of {} (tiles authorised: {authorised} of {total})",
            concurrent * rounds
        ))
        .goal("none", failed == 0),
        Row::new(
            5,
            &format!(
                "admin-consent callback at {concurrent} concurrent: CPU per callback, own time"
            ),
            backend.label(),
        )
        .value(format!(
            "server {} + database {database}; own time p99 {} (p50 {}; as the browser saw it {})",
            ms(cpu_per_callback),
            ms(p99),
            ms(together.p50()),
            ms(browser_saw.p99()),
        ))
        .baseline(format!("{} (one at a time)", ms(one_at_a_time.p99())))
        .ratio(ratio(p99.as_secs_f64(), one_at_a_time.p99().as_secs_f64()))
        .tracked(),
    ])
}

/// One callback's own time, two ways.
struct OwnTime {
    /// The handler's time less Microsoft's (`Server-Timing: app`).
    handler: Duration,
    /// What the browser waited, less Microsoft's share.
    browser: Duration,
}

/// Opens one callback as the browser would.
async fn callback(http: &reqwest::Client, server: &Server, link: &Url) -> anyhow::Result<OwnTime> {
    if !link
        .as_str()
        .starts_with(&format!("{}/oauth/callback", server.base))
    {
        bail!("the consent page sent the browser elsewhere: {link}");
    }
    let started = Instant::now();
    let response = http.get(link.clone()).send().await?;
    let waited = started.elapsed();
    if response.status() != reqwest::StatusCode::SEE_OTHER {
        bail!("the callback answered {}", response.status());
    }
    let to_result = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .is_some_and(|l| l.contains("/oauth/result/"));
    if !to_result {
        bail!("the callback did not send the browser to its result page");
    }
    let timing = response
        .headers()
        .get("server-timing")
        .and_then(|t| t.to_str().ok())
        .context("the callback sent no Server-Timing")?;
    Ok(OwnTime {
        handler: server_timing(timing, "app")?,
        browser: waited.saturating_sub(server_timing(timing, "microsoft")?),
    })
}

/// The duration of one metric (`app`, `microsoft`) of a `Server-Timing` header.
fn server_timing(timing: &str, metric: &str) -> anyhow::Result<Duration> {
    let millis: f64 = timing
        .split(',')
        .map(str::trim)
        .find_map(|entry| {
            let mut parts = entry.split(';');
            (parts.next() == Some(metric))
                .then(|| parts.find_map(|p| p.trim().strip_prefix("dur=")))
                .flatten()
        })
        .with_context(|| format!("no {metric} duration in Server-Timing {timing:?}"))?
        .parse()?;
    Ok(Duration::from_secs_f64(millis / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_from_server_timing() {
        let timing = "app;dur=3.250;desc=\"Consentry\", microsoft;dur=12.500;desc=\"Microsoft\"";
        assert_eq!(
            server_timing(timing, "microsoft").unwrap(),
            Duration::from_micros(12_500)
        );
        assert_eq!(
            server_timing(timing, "app").unwrap(),
            Duration::from_micros(3_250)
        );
        assert!(server_timing("app;dur=3", "microsoft").is_err());
    }
}
