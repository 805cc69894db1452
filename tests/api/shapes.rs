//! Query-shape fuzzing in CI (checklist 97): a few thousand operations generated from the
//! schema (`consentry_tests::operations`: fields and their arguments, aliases, directives,
//! fragments, variables, introspection) against the real server and its limits. Every refused
//! one names, with a stable code, the limit its shape breaks; every accepted one stays within
//! the answer budget and the query timeout, and within the depth and introspection limits.
//!
//! `CONSENTRY_FUZZ_CASES` and `CONSENTRY_FUZZ_SEED` change how many and which; a failure names
//! its seed and case. `fuzz/fuzz_targets/operation_shapes.rs` runs the same for longer, and
//! every input that once broke it is replayed here (`fuzz/regressions/operation_shapes/`).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use consentry_tests::{
    Backend, both_backends,
    operations::{Outcome, Target},
};
use rand::{RngCore, SeedableRng, rngs::StdRng};

/// Small enough that answers reach it often (the full schema's introspection is about 70 KB).
const BUDGET: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(2);

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[both_backends]
async fn checklist_97_generated_operations_are_refused_by_name_or_stay_within_budgets(
    backend: Backend,
) {
    let Some(target) = Target::start(backend, BUDGET, TIMEOUT).await else {
        return;
    };
    let default_cases = if backend == Backend::Sqlite {
        2000
    } else {
        1000
    };
    let cases = setting("CONSENTRY_FUZZ_CASES", default_cases);
    let seed = setting("CONSENTRY_FUZZ_SEED", 97);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut outcomes: BTreeMap<Outcome, usize> = BTreeMap::new();
    let mut largest = 0;
    let mut bytes = vec![0u8; 8192];
    for case in 0..cases {
        rng.fill_bytes(&mut bytes);
        match target.fuzz(&bytes).await {
            Ok(Some((outcome, size))) => {
                if outcome == Outcome::Answered {
                    largest = largest.max(size);
                }
                *outcomes.entry(outcome).or_default() += 1;
            }
            Ok(None) => {}
            Err(why) => panic!("seed {seed}, case {case}: {why}"),
        }
    }
    eprintln!("{cases} operations: {outcomes:?}; the largest answer {largest} bytes");
    // The generator reaches the limits and the answer budget in a run this long. Not `DEPTH`:
    // Consentry's own types nest at most 7 deep (`clients → edges → node → auditLog → edges →
    // node → details`), and introspection has limits of its own, so no valid operation is
    // deeper than 12 (`limits.rs` and `bounded.rs` test it with fields that do not exist).
    let refused = |limit| outcomes.get(&Outcome::Refused(limit)).copied().unwrap_or(0);
    for limit in [
        "ALIASES",
        "DIRECTIVES",
        "NESTING",
        "COST",
        "INTROSPECTION_CYCLE",
        "INTROSPECTION_LISTS",
        "RESPONSE_SIZE",
    ] {
        assert!(
            refused(limit) > 0,
            "no operation was refused by {limit}: {outcomes:?}"
        );
    }
    let answered = outcomes.get(&Outcome::Answered).copied().unwrap_or(0);
    assert!(answered > cases as usize / 4, "{outcomes:?}");
}

/// Every input kept from the fuzz target, replayed.
#[both_backends]
async fn the_fuzz_targets_regressions_are_replayed(backend: Backend) {
    let Some(target) = Target::start(backend, BUDGET, TIMEOUT).await else {
        return;
    };
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/operation_shapes");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs in {}", dir.display());
    for input in inputs {
        let bytes = std::fs::read(&input).unwrap();
        if let Err(why) = target.fuzz(&bytes).await {
            panic!("{}: {why}", input.display());
        }
    }
}
