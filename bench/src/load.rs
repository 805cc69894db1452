//! A closed-loop HTTP load: a fixed number of keep-alive connections, each sending the next
//! request as soon as the last answer is read.

use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::future::try_join_all;

/// One request, sent over and over.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) url: String,
    pub(crate) token: String,
    pub(crate) body: String,
}

impl Request {
    pub(crate) async fn send(&self, http: &reqwest::Client) -> anyhow::Result<axum::body::Bytes> {
        let response = http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.body.clone())
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            bail!(
                "{} answered {status}: {}",
                self.url,
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }
}

/// Requests per second over `duration` with `connections` concurrent connections, after a
/// warm-up of a fifth of it. Every answer must be a success of the expected size, so a server
/// that fails fast cannot look fast.
pub(crate) async fn throughput(
    request: &Request,
    connections: usize,
    duration: Duration,
    expected_len: usize,
) -> anyhow::Result<f64> {
    let warm_up = duration / 5;
    let start = Instant::now() + warm_up;
    let end = start + duration;
    let workers = (0..connections).map(|_| {
        let request = request.clone();
        async move {
            let http = reqwest::Client::builder().http1_only().build()?;
            let mut counted = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    return anyhow::Ok(counted);
                }
                let body = request.send(&http).await?;
                if body.len() != expected_len {
                    bail!(
                        "an answer of {} bytes where {expected_len} were expected",
                        body.len()
                    );
                }
                if sent >= start {
                    counted += 1;
                }
            }
        }
    });
    let counts = try_join_all(workers).await?;
    Ok(counts.iter().sum::<u64>() as f64 / duration.as_secs_f64())
}
