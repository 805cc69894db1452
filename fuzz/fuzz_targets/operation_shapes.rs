//! Query shapes (checklist 97): operations generated from the schema by
//! `consentry_tests::operations` — fields and arguments, aliases, directives, fragments,
//! variables, introspection — against a real Consentry on SQLite, started once per process,
//! for as long as the fuzzer runs; `tests/api/shapes.rs` runs a few thousand in `cargo test`.
//!
//! Invariants: a refused operation is one error with a stable code and `extensions.limit`
//! naming the limit its shape breaks (measured independently on the generated syntax tree); an
//! accepted one is within the answer budget and the query timeout, and breaks no limit. A
//! server that dies (a stack overflow, memory) is a crash too.
//!
//! The input is `arbitrary`'s byte stream, not text: libFuzzer's mutations change the
//! generator's choices, so every input is a valid operation (or none, when it runs out).

#![no_main]

use std::{sync::LazyLock, time::Duration};

use consentry_tests::{Backend, operations::Target};
use libfuzzer_sys::fuzz_target;

/// Small enough that answers reach it often; the full introspection is about 70 KB.
const BUDGET: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(2);

struct Harness {
    runtime: tokio::runtime::Runtime,
    target: Target,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let target = runtime
        .block_on(Target::start(Backend::Sqlite, BUDGET, TIMEOUT))
        .expect("SQLite is always available");
    Harness { runtime, target }
});

fuzz_target!(|data: &[u8]| {
    let harness = &*HARNESS;
    if let Err(why) = harness.runtime.block_on(harness.target.fuzz(data)) {
        panic!("{why}");
    }
});
