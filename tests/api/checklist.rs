//! Every case of the security checklist's §A (authorization request and callback), §D (API
//! tokens and tenant isolation), §E (GraphQL hardening) and §H (reliability) is a named test:
//! its number is in a test's name (`checklist_12_…`) or in a comment beside it
//! ("Checklist 12", ranges as "1–4"). This test keeps it so.

use std::collections::BTreeSet;

/// §A 1–20, §D 46–51, §E 52–65, §H 83–94, and of §I the cases built so far: 95, 96 (the
/// tenant proof) and 101 (escaped logs).
const REQUIRED: [(u32, u32); 4] = [(1, 20), (46, 65), (83, 96), (101, 101)];

/// The case numbers cited after each "checklist" in `text`: `checklist_3_83_name`,
/// `Checklist 1–4, 12, 83`, `checklist 66-73`.
fn cited(text: &str) -> BTreeSet<u32> {
    let lower = text.to_lowercase();
    let mut found = BTreeSet::new();
    for (at, _) in lower.match_indices("checklist") {
        let mut rest = &lower[at + "checklist".len()..];
        if let Some(after) = rest.strip_prefix([' ', '_']) {
            rest = after;
        } else {
            continue;
        }
        loop {
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            if digits == 0 {
                break;
            }
            let from: u32 = rest[..digits].parse().unwrap();
            rest = &rest[digits..];
            let mut to = from;
            if let Some(after) = rest.strip_prefix(['–', '-']) {
                let digits = after.chars().take_while(char::is_ascii_digit).count();
                if digits > 0 {
                    to = after[..digits].parse().unwrap();
                    rest = &after[digits..];
                }
            }
            found.extend(from..=to);
            match [", ", ",", "_", " and ", " "]
                .iter()
                .find_map(|separator| rest.strip_prefix(separator))
            {
                Some(after) if after.starts_with(|c: char| c.is_ascii_digit()) => rest = after,
                _ => break,
            }
        }
    }
    found
}

#[test]
fn citations_are_read_in_every_written_form() {
    assert_eq!(
        cited("fn checklist_3_83_replayed_callback()"),
        BTreeSet::from([3, 83])
    );
    assert_eq!(
        cited("// Checklist 1–4, 12, 83 and 91: …"),
        (1..=4).chain([12, 83, 91]).collect()
    );
    assert_eq!(cited("checklist 66-68."), BTreeSet::from([66, 67, 68]));
    assert_eq!(cited("checklist §D"), BTreeSet::new());
}

#[test]
fn every_case_of_sections_a_d_e_and_h_has_a_named_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("api");
    let mut all = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("checklist.rs") {
            all.extend(cited(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    let missing: Vec<u32> = REQUIRED
        .iter()
        .flat_map(|&(from, to)| from..=to)
        .filter(|case| !all.contains(case))
        .collect();
    assert!(
        missing.is_empty(),
        "checklist cases without a test: {missing:?}"
    );
}
