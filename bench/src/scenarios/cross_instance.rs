//! Target 4: a change committed on one instance reaches a subscriber of another instance
//! through PostgreSQL LISTEN/NOTIFY, against a subscriber of the committing instance itself.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;
use tokio::sync::mpsc;

use super::{AUTHORISE, Bench, graphql, live};
use crate::{
    database::Backend,
    report::Row,
    stats::{Samples, ms, ratio},
    ws,
};

const SUBSCRIPTION: &str =
    "subscription($id: ID) { graphApiTileChanged(clientId: $id) { id status version } }";

pub(super) async fn run(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let (sim, db, client) = bench.one_client(Backend::Postgres, "Instances").await?;
    let first = bench.consentry("instance-a", &db, Some(&sim)).await?;
    let second = bench.consentry("instance-b", &db, Some(&sim)).await?;
    let token = bench.token()?;
    let http = reqwest::Client::new();
    let variables = json!({ "id": client });
    let (arrivals, mut arrived) = mpsc::unbounded_channel();
    let same_socket = ws::subscribe(first.port, &token, SUBSCRIPTION, variables.clone()).await?;
    let other_socket = ws::subscribe(second.port, &token, SUBSCRIPTION, variables.clone()).await?;
    let listeners = [
        ws::listen(0, same_socket, arrivals.clone()),
        ws::listen(1, other_socket, arrivals),
    ];
    live(&http, &first, 1, Duration::from_secs(10)).await?;
    live(&http, &second, 1, Duration::from_secs(10)).await?;

    let rounds = if bench.quick() { 20 } else { 200 };
    let (mut same, mut other) = (Samples::default(), Samples::default());
    for _ in 0..rounds {
        let sent = Instant::now();
        graphql(&http, &first, &token, AUTHORISE, variables.clone()).await?;
        let mut got = [None, None];
        while got.iter().any(Option::is_none) {
            let Ok(Some(arrival)) =
                tokio::time::timeout(Duration::from_secs(10), arrived.recv()).await
            else {
                bail!("a change committed on one instance did not arrive within 10 s");
            };
            if arrival.version().is_none() {
                bail!("a subscriber received an error instead of the change");
            }
            got[arrival.subscriber].get_or_insert(arrival.at.duration_since(sent));
        }
        same.push(got[0].unwrap_or_default());
        other.push(got[1].unwrap_or_default());
    }
    first.stop().await;
    second.stop().await;
    for listener in listeners {
        let _ = listener.await;
    }
    let p99 = other.p99();
    Ok(vec![
        Row::new(
            4,
            "change committed on instance A → subscriber on instance B: p99",
            Backend::Postgres.label(),
        )
        .value(format!("{} (p50 {})", ms(p99), ms(other.p50())))
        .baseline(format!("{} (subscriber on A)", ms(same.p99())))
        .ratio(ratio(p99.as_secs_f64(), same.p99().as_secs_f64()))
        .goal("≤ 50 ms", p99 <= Duration::from_millis(50)),
    ])
}
