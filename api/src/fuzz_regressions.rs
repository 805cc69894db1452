//! The inputs kept from fuzzing (`fuzz/regressions/<target>/`: the seeds, and every input that
//! once broke a target), for the unit tests of the parser each target drives.

use std::path::PathBuf;

/// Every file of `fuzz/regressions/<target>/` as `(name, bytes)`, sorted by name.
pub(crate) fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    inputs.sort();
    // The directory starts with the target's seeds: empty means the test reads nothing.
    assert!(!inputs.is_empty(), "no inputs in {}", dir.display());
    inputs
}

/// The inputs as the fuzz target sees them: it hands on only UTF-8 (every parser fuzzed takes
/// a `&str`) and skips the rest.
pub(crate) fn text_inputs(target: &str) -> Vec<(String, String)> {
    inputs(target)
        .into_iter()
        .filter_map(|(name, bytes)| Some((name, String::from_utf8(bytes).ok()?)))
        .collect()
}
