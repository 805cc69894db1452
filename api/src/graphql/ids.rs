//! Opaque global ids (`Node.id`): base64url of `Kind:uuid`. Clients must not parse them.

use async_graphql::ID;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use crate::domain::Error;

/// What a global id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Client,
    GraphApiTile,
    DelegatedConsent,
    ServicePrincipalRequest,
}

impl IdKind {
    const ALL: [IdKind; 4] = [
        IdKind::Client,
        IdKind::GraphApiTile,
        IdKind::DelegatedConsent,
        IdKind::ServicePrincipalRequest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            IdKind::Client => "Client",
            IdKind::GraphApiTile => "GraphApiTile",
            IdKind::DelegatedConsent => "DelegatedConsent",
            IdKind::ServicePrincipalRequest => "ServicePrincipalRequest",
        }
    }
}

/// How much of a refused id an error message repeats: the longest id this API issues
/// (`ServicePrincipalRequest:<uuid>`, base64url) fits whole.
const ECHOED_CHARS: usize = 80;

/// The id as error messages quote it. Cut short: the caller may send anything, of any length,
/// and the message goes back to them and into logs.
fn quoted(id: &str) -> String {
    match id.char_indices().nth(ECHOED_CHARS) {
        Some((end, _)) => format!("{:?}…", &id[..end]),
        None => format!("{id:?}"),
    }
}

/// A decoded global id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalId {
    pub kind: IdKind,
    pub id: Uuid,
}

impl GlobalId {
    pub fn new(kind: IdKind, id: Uuid) -> Self {
        Self { kind, id }
    }

    pub fn encode(self) -> ID {
        ID(URL_SAFE_NO_PAD.encode(format!("{}:{}", self.kind.name(), self.id)))
    }

    /// Decodes any global id; `field` names the argument in the error.
    pub fn decode(field: &str, id: &str) -> Result<Self, Error> {
        let invalid = || {
            Error::bad_input(
                field,
                format!("{} is not an id issued by this API", quoted(id)),
            )
        };
        if id.len() > 128 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(id).map_err(|_| invalid())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
        let (kind, uuid) = text.split_once(':').ok_or_else(invalid)?;
        let kind = IdKind::ALL
            .into_iter()
            .find(|k| k.name() == kind)
            .ok_or_else(invalid)?;
        let id = Uuid::try_parse(uuid).map_err(|_| invalid())?;
        // `try_parse` also reads upper-case hex and the simple, braced and URN forms; only the
        // form `encode` writes was issued here, and one spelling per id keeps ids comparable.
        if id.hyphenated().encode_lower(&mut Uuid::encode_buffer()) != uuid {
            return Err(invalid());
        }
        Ok(Self { kind, id })
    }

    /// Decodes an id that must name a `kind`.
    pub fn expect(field: &str, id: &str, kind: IdKind) -> Result<Uuid, Error> {
        let decoded = Self::decode(field, id)?;
        if decoded.kind != kind {
            return Err(Error::bad_input(
                field,
                format!(
                    "{} is the id of a {}, not of a {}",
                    quoted(id),
                    decoded.kind.name(),
                    kind.name()
                ),
            ));
        }
        Ok(decoded.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_keep_their_kind() {
        let id = Uuid::now_v7();
        let encoded = GlobalId::new(IdKind::Client, id).encode();
        assert_eq!(
            GlobalId::expect("id", &encoded, IdKind::Client).unwrap(),
            id
        );
        let err = GlobalId::expect("id", &encoded, IdKind::DelegatedConsent).unwrap_err();
        assert_eq!(err.code(), crate::error_code::ErrorCode::BadUserInput);
    }

    #[test]
    fn garbage_is_refused_as_bad_input() {
        for bad in [
            "",
            "x",
            "Q2xpZW50OjE",
            "%%%",
            &"A".repeat(500),
            "RnJvYjo2YjY0ZTk3Yy1hYjJkLTQ1NGUtOTlhYi0wMDAwMDAwMDAwMDA",
        ] {
            let err = GlobalId::decode("id", bad).unwrap_err();
            assert_eq!(
                err.code(),
                crate::error_code::ErrorCode::BadUserInput,
                "{bad}"
            );
        }
    }

    #[test]
    fn an_id_has_one_spelling() {
        let id = Uuid::parse_str("0190f3a2-7c1e-7b4d-9e8f-1a2b3c4d5e70").unwrap();
        for spelling in [
            id.hyphenated().to_string().to_uppercase(),
            id.simple().to_string(),
            id.braced().to_string(),
            id.urn().to_string(),
        ] {
            let other = URL_SAFE_NO_PAD.encode(format!("Client:{spelling}"));
            assert!(GlobalId::decode("id", &other).is_err(), "{spelling}");
        }
    }

    #[test]
    fn a_refused_id_is_quoted_only_in_part() {
        let long = "A".repeat(4096);
        let message = GlobalId::decode("id", &long).unwrap_err().to_string();
        assert_eq!(
            message,
            format!("\"{}\"… is not an id issued by this API", "A".repeat(80))
        );
    }

    /// What the `global_id` fuzz target checks, on the inputs it kept.
    #[test]
    fn fuzz_regressions_decode_to_one_spelling_or_fail_briefly() {
        for (name, input) in crate::fuzz_regressions::text_inputs("global_id") {
            let brief = |error: Error, name: &str| {
                assert_eq!(
                    error.code(),
                    crate::error_code::ErrorCode::BadUserInput,
                    "{name}"
                );
                let message = error.to_string();
                assert!(message.chars().count() <= 1024, "{name}");
                if input.chars().count() > ECHOED_CHARS {
                    assert!(
                        !message.contains(&format!("{input:?}")),
                        "{name}: quoted whole"
                    );
                }
            };
            match GlobalId::decode("id", &input) {
                Ok(id) => assert_eq!(id.encode().as_str(), input, "{name}"),
                Err(error) => brief(error, &name),
            }
            for kind in IdKind::ALL {
                match GlobalId::expect("id", &input, kind) {
                    Ok(uuid) => assert_eq!(
                        GlobalId::decode("id", &input).ok(),
                        Some(GlobalId::new(kind, uuid)),
                        "{name}"
                    ),
                    Err(error) => brief(error, &name),
                }
            }
        }
    }
}
