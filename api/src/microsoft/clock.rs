//! How long a task has waited for Microsoft: callers tell their own time from Microsoft's.

use std::{cell::Cell, future::Future, time::Duration};

tokio::task_local! {
    /// How long the current task has waited for Microsoft, inside [`timed`].
    static WAITED: Cell<Duration>;
}

/// Runs `work` and says how much of its time was spent waiting for Microsoft (requests,
/// answers, `Retry-After` waits), so that a caller can tell its own time from Microsoft's.
pub(crate) async fn timed<F: Future>(work: F) -> (F::Output, Duration) {
    WAITED
        .scope(Cell::new(Duration::ZERO), async move {
            let output = work.await;
            (output, WAITED.with(Cell::get))
        })
        .await
}

/// Counts `call` as waiting for Microsoft in the enclosing [`timed`], if there is one.
pub(crate) async fn waiting<F: Future>(call: F) -> F::Output {
    let started = std::time::Instant::now();
    let output = call.await;
    let _ = WAITED.try_with(|waited| waited.set(waited.get() + started.elapsed()));
    output
}
