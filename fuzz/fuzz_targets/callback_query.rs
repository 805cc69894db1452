//! `CallbackParams::from_query`: the query string of `GET /oauth/callback?…`, as anyone on the
//! internet may send it.
//!
//! Invariants: no panic; whether a query is read, and what `Debug` prints, depend on the
//! parameter names alone (so `Debug` can show no value: the type carries the authorization
//! code and the state); the accessors give what a plain form-urlencoded reading gives, and
//! what axum's `Query<HashMap<String, String>>` (the handler's extractor before) gave; the
//! only queries refused are those repeating a parameter the callback acts on.

#![no_main]

use std::collections::HashMap;

use api::{CallbackParams, InvalidCallbackQuery};
use libfuzzer_sys::fuzz_target;
use url::form_urlencoded;

fuzz_target!(|data: &[u8]| {
    // axum hands the handler the query as a `&str`.
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = CallbackParams::from_query(query);

    // The same names with other values.
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let renamed = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().map(|(name, _)| (name.as_str(), "other value")))
        .finish();
    match (&parsed, &CallbackParams::from_query(&renamed)) {
        (Ok(params), Ok(other)) => assert_eq!(format!("{params:?}"), format!("{other:?}")),
        (Err(error), Err(other)) => {
            assert_eq!(error, other);
            assert_eq!(error.to_string(), other.to_string());
        }
        (params, other) => {
            panic!("the values changed whether the query is read: {params:?} vs {other:?}")
        }
    }

    // axum's `Query` read the query with `serde_urlencoded` into a map (the last value wins).
    let axum: HashMap<String, String> =
        serde_urlencoded::from_str(query).expect("axum's Query never refused a query");
    let params = match parsed {
        Ok(params) => params,
        Err(InvalidCallbackQuery::Repeated(name)) => {
            assert!(pairs.iter().filter(|(n, _)| n == name).count() > 1);
            return;
        }
    };
    // Each parameter read appears at most once, so its value is the only one given; blank
    // values count as absent.
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    };
    for (name, read) in [
        ("state", params.state()),
        ("code", params.code()),
        ("error", params.error().map(|(e, _)| e)),
    ] {
        let before = axum.get(name).map(String::as_str);
        assert_eq!(read, before.filter(|v| !v.trim().is_empty()), "{name}");
    }
    assert_eq!(params.state(), value("state"));
    assert_eq!(params.code(), value("code"));
    assert_eq!(
        params.error(),
        value("error").map(|e| (e, value("error_description").unwrap_or_default()))
    );
    assert_eq!(params.tenant(), value("tenant"));
    // Whatever a redirect says, what Consentry keeps of its error is bounded and holds none
    // of its words (checklist 96).
    let repairable = api::RepairableApps::default();
    if let Some(problem) = params.refusal(&repairable) {
        assert_eq!(problem.message, None);
        assert!(problem.remediation.len() < 1_000);
        let description = value("error_description").unwrap_or_default();
        if description.len() > 40 {
            assert!(!problem.remediation.contains(description));
        }
    }
});
