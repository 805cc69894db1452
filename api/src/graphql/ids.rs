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
        let invalid = || Error::bad_input(field, format!("{id:?} is not an id issued by this API"));
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
        Ok(Self { kind, id })
    }

    /// Decodes an id that must name a `kind`.
    pub fn expect(field: &str, id: &str, kind: IdKind) -> Result<Uuid, Error> {
        let decoded = Self::decode(field, id)?;
        if decoded.kind != kind {
            return Err(Error::bad_input(
                field,
                format!(
                    "{id:?} is the id of a {}, not of a {}",
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
        assert_eq!(err.code(), "BAD_USER_INPUT");
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
            assert_eq!(err.code(), "BAD_USER_INPUT", "{bad}");
        }
    }
}
