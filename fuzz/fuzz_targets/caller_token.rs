//! `bearer_token` and `CallerAuth::verify` (HS256): the `Authorization` header of every
//! GraphQL request and WebSocket, before anything else has looked at the caller.
//!
//! Invariants: no panic; no input is accepted as a token (only a correctly HS256-signed one
//! could be, and fuzzing does not forge signatures); refusals are `Unauthenticated`, with a
//! message that does not grow with the input.

#![no_main]

#[path = "common/verifier.rs"]
mod verifier;

use api::{AuthError, bearer_token};
use libfuzzer_sys::fuzz_target;

fn assert_refused(error: &AuthError) {
    assert!(matches!(error, AuthError::Unauthenticated(_)), "{error:?}");
    assert!(error.to_string().len() <= 512, "{error:?}");
}

fn assert_not_accepted(token: &str) {
    match verifier::verify(token) {
        Ok(claims) => panic!("an unsigned token was accepted: {claims:?}"),
        Err(error) => assert_refused(&error),
    }
}

fuzz_target!(|data: &[u8]| {
    // `HeaderValue::to_str` hands on only visible ASCII; any `&str` is a superset.
    let Ok(authorization) = std::str::from_utf8(data) else {
        return;
    };
    match bearer_token(authorization) {
        Ok(token) => {
            assert!(!token.is_empty() && token == token.trim());
            assert!(authorization.contains(token));
            assert_not_accepted(token);
        }
        Err(error) => assert_refused(&error),
    }
    assert_not_accepted(authorization);
});
