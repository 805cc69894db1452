//! `GlobalId::decode` and `GlobalId::expect`: every `ID` argument of the GraphQL API.
//!
//! Invariants: no panic; what decodes re-encodes to the very same string (one spelling per
//! id) and decodes back to itself; an error is `BAD_USER_INPUT` and its message echoes at
//! most a bounded prefix of the input, however long the input.

#![no_main]

use api::{GlobalId, IdKind};
use libfuzzer_sys::fuzz_target;

const KINDS: [IdKind; 4] = [
    IdKind::Client,
    IdKind::GraphApiTile,
    IdKind::DelegatedConsent,
    IdKind::ServicePrincipalRequest,
];

/// Longest message an error may have, whatever the input's length: the fixed words and at
/// most 80 quoted characters of the input, each escaped to at most 10 (`\u{10ffff}`).
const MAX_MESSAGE_CHARS: usize = 1024;
/// The longest id the API issues (`ServicePrincipalRequest:<uuid>`, base64url): echoing one
/// whole is fine, echoing a longer input whole is not.
const LONGEST_ID_CHARS: usize = 80;

fn assert_bounded(error: &api::Error, input: &str) {
    assert_eq!(error.code().as_str(), "BAD_USER_INPUT");
    let message = error.to_string();
    assert!(
        message.chars().count() <= MAX_MESSAGE_CHARS,
        "the message grows with the input: {} chars",
        message.chars().count()
    );
    // Quoted as `{:?}` writes it: the raw input may well appear inside a longer escaped prefix
    // (`\\` is written `\\\\`), the quoted whole input may not.
    if input.chars().count() > LONGEST_ID_CHARS {
        assert!(
            !message.contains(&format!("{input:?}")),
            "the message quotes a long input whole"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    // async-graphql hands resolvers the id as a `&str`.
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = GlobalId::decode("id", input);
    match &decoded {
        Ok(id) => {
            let encoded = id.encode();
            assert_eq!(encoded.as_str(), input, "a second spelling of {id:?}");
            assert_eq!(GlobalId::decode("id", &encoded).ok(), Some(*id));
        }
        Err(error) => assert_bounded(error, input),
    }
    for kind in KINDS {
        match GlobalId::expect("id", input, kind) {
            Ok(uuid) => assert_eq!(decoded.as_ref().ok(), Some(&GlobalId::new(kind, uuid))),
            Err(error) => {
                assert!(decoded.as_ref().is_ok_and(|id| id.kind != kind) || decoded.is_err());
                assert_bounded(&error, input);
            }
        }
    }
});
