//! id_token validation (checklist §B and §C): RS256 only, key by `kid` from the tenant's key
//! set, `iss` exactly `{authority}/{tid}/v2.0` with the tenant taken from the flow, `aud` our
//! client id and nothing else, `nonce`, and `exp`/`nbf`/`iat` within two minutes of skew.
//! No token from the response is used before this passes.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::microsoft::client::Microsoft;
use crate::{auth::OneOrMany, jwks::KeyError};

/// Clock skew tolerated on `exp`, `nbf` and `iat` (checklist 94: "a few minutes").
pub(crate) const LEEWAY_SECONDS: u64 = 120;

/// Which tenant the id_token must come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectedTenant {
    /// The flow was started for this tenant id: `tid` and `iss` must name it.
    Exactly(Uuid),
    /// The flow went to a domain or `organizations`: any tenant, but `tid` must be a GUID and
    /// `iss` must be that tenant's issuer (reference §4, multi-tenant validation). The caller
    /// must then bind the tenant to the client.
    AnyOrganization,
}

/// What a flow keeps of the `nonce` it sent: its SHA-256, so that a database dump holds
/// nothing to replay. The nonce only ever needs comparing: an id_token's `nonce` matches when
/// its hash equals this one, compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct NonceHash([u8; 32]);

impl NonceHash {
    /// The hash of a nonce sent to Microsoft.
    pub fn of(nonce: &str) -> Self {
        Self(Sha256::digest(nonce.as_bytes()).into())
    }

    /// A stored hash (64 hex digits); `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// The stored form: 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `nonce` is the one this is the hash of.
    pub fn matches(&self, nonce: &str) -> bool {
        bool::from(Self::of(nonce).0.ct_eq(&self.0))
    }
}

impl std::fmt::Debug for NonceHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceHash(..)")
    }
}

/// The claims Consentry uses from a validated id_token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdTokenClaims {
    pub tenant_id: Uuid,
    /// Immutable user id in the tenant (Graph `user.id`).
    pub object_id: Option<String>,
    pub subject: String,
    pub preferred_username: Option<String>,
    pub name: Option<String>,
    pub issuer: String,
    /// `wids`: the directory role templates the user holds in the tenant. `None` when the
    /// token carries no such claim: the app registration must ask for it
    /// (`groupMembershipClaims` set to `DirectoryRole` or `All`).
    pub directory_roles: Option<Vec<Uuid>>,
}

/// Why an id_token was rejected. Messages never contain the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the id_token is not a well-formed JWT")]
    Malformed,
    #[error("the id_token is signed with {0}, only RS256 is accepted")]
    Algorithm(String),
    #[error("the id_token {0}")]
    Key(KeyError),
    #[error("the id_token's signature does not verify")]
    Signature,
    #[error("the id_token's issuer is not the expected tenant's")]
    Issuer,
    #[error("the id_token is not for this application (aud/azp)")]
    Audience,
    #[error("the id_token has expired")]
    Expired,
    #[error("the id_token is not valid yet")]
    NotYetValid,
    #[error("the id_token lacks the {0} claim")]
    MissingClaim(String),
    #[error("the id_token's nonce does not match this flow")]
    Nonce,
    #[error("the id_token is from another tenant")]
    Tenant,
    #[error("the refreshed id_token names another user than the original")]
    Subject,
}

/// Optional fields, so that a missing required claim is reported by name (jsonwebtoken checks
/// `required_spec_claims` after deserialising).
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<OneOrMany>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    tid: Option<String>,
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default, deserialize_with = "super::text::bounded_name")]
    preferred_username: Option<String>,
    #[serde(default, deserialize_with = "super::text::bounded_name")]
    name: Option<String>,
    #[serde(default)]
    wids: Option<Vec<String>>,
}

impl Microsoft {
    /// Validates an id_token for a flow that expects `tenant` and sent the nonce of `nonce`.
    pub async fn validate_id_token(
        &self,
        id_token: &SecretString,
        tenant: &ExpectedTenant,
        nonce: &NonceHash,
    ) -> Result<IdTokenClaims, IdTokenError> {
        self.validate(id_token, tenant, Some(nonce)).await
    }

    /// Validates an id_token that came with a refreshed token: the same checks, no nonce
    /// (none is sent on a refresh), and `iss`, `sub` and `tid` must equal the original's
    /// (checklist 28, 44).
    pub async fn validate_refreshed_id_token(
        &self,
        id_token: &SecretString,
        original: &IdTokenClaims,
    ) -> Result<IdTokenClaims, IdTokenError> {
        let refreshed = self
            .validate(id_token, &ExpectedTenant::Exactly(original.tenant_id), None)
            .await?;
        if refreshed.issuer != original.issuer {
            return Err(IdTokenError::Issuer);
        }
        if refreshed.subject != original.subject {
            return Err(IdTokenError::Subject);
        }
        Ok(refreshed)
    }

    async fn validate(
        &self,
        id_token: &SecretString,
        tenant: &ExpectedTenant,
        nonce: Option<&NonceHash>,
    ) -> Result<IdTokenClaims, IdTokenError> {
        let token = id_token.expose_secret();
        let header = jsonwebtoken::decode_header(token).map_err(|_| match header_alg(token) {
            Some(alg) => IdTokenError::Algorithm(alg),
            None => IdTokenError::Malformed,
        })?;
        if header.alg != Algorithm::RS256 {
            return Err(IdTokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let tenant_path = match tenant {
            ExpectedTenant::Exactly(id) => id.to_string(),
            ExpectedTenant::AnyOrganization => "organizations".to_owned(),
        };
        let keys = self
            .key_set(&tenant_path)
            .map_err(|_| IdTokenError::Key(KeyError::Unavailable))?;
        let key = keys
            .key_for(header.kid.as_deref(), Algorithm::RS256)
            .await
            .map_err(IdTokenError::Key)?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_audience(&[&self.config.client_id]);
        if let ExpectedTenant::Exactly(id) = tenant {
            validation.set_issuer(&[self.config.issuer(&id.to_string())]);
        } else {
            validation.iss = None;
        }
        let data =
            jsonwebtoken::decode::<RawClaims>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::InvalidSignature => IdTokenError::Signature,
                    ErrorKind::InvalidIssuer => IdTokenError::Issuer,
                    ErrorKind::InvalidAudience => IdTokenError::Audience,
                    ErrorKind::ExpiredSignature => IdTokenError::Expired,
                    ErrorKind::ImmatureSignature => IdTokenError::NotYetValid,
                    ErrorKind::MissingRequiredClaim(claim) => {
                        IdTokenError::MissingClaim(claim.clone())
                    }
                    ErrorKind::InvalidAlgorithm => {
                        IdTokenError::Algorithm("a mismatched algorithm".to_owned())
                    }
                    ErrorKind::Json(_) => IdTokenError::Malformed,
                    _ => IdTokenError::Malformed,
                }
            })?;
        let claims = data.claims;
        let missing = |name: &str| IdTokenError::MissingClaim(name.to_owned());
        let issuer = claims.iss.ok_or_else(|| missing("iss"))?;
        let subject = claims.sub.ok_or_else(|| missing("sub"))?;
        let audience = claims.aud.ok_or_else(|| missing("aud"))?;

        // Exactly our client id: an extra audience is someone else's token too (checklist 25).
        let audiences: Vec<&str> = audience.iter().collect();
        if audiences != [self.config.client_id.as_str()] {
            return Err(IdTokenError::Audience);
        }
        if claims
            .azp
            .as_deref()
            .is_some_and(|azp| azp != self.config.client_id)
        {
            return Err(IdTokenError::Audience);
        }
        let iat = claims
            .iat
            .ok_or_else(|| IdTokenError::MissingClaim("iat".to_owned()))?;
        if iat > chrono::Utc::now().timestamp() + LEEWAY_SECONDS as i64 {
            return Err(IdTokenError::NotYetValid);
        }
        let tid = claims
            .tid
            .as_deref()
            .ok_or_else(|| IdTokenError::MissingClaim("tid".to_owned()))?;
        let tenant_id = Uuid::try_parse(tid).map_err(|_| IdTokenError::Tenant)?;
        match tenant {
            ExpectedTenant::Exactly(expected) if *expected != tenant_id => {
                return Err(IdTokenError::Tenant);
            }
            ExpectedTenant::Exactly(_) => {}
            // The template is filled from the token's own tid only after checking it is a GUID.
            ExpectedTenant::AnyOrganization => {
                if issuer != self.config.issuer(&tenant_id.to_string()) {
                    return Err(IdTokenError::Issuer);
                }
            }
        }
        if let Some(nonce) = nonce {
            let sent = claims.nonce.as_deref().ok_or(IdTokenError::Nonce)?;
            if !nonce.matches(sent) {
                return Err(IdTokenError::Nonce);
            }
        }
        Ok(IdTokenClaims {
            tenant_id,
            // Graph's `user.id`: a GUID, or nothing.
            object_id: claims
                .oid
                .and_then(|oid| Uuid::try_parse(&oid).ok())
                .map(|oid| oid.to_string()),
            subject: super::text::bounded(&subject, super::text::MAX_NAME_CHARS),
            preferred_username: claims.preferred_username,
            name: claims.name,
            issuer,
            directory_roles: claims.wids.map(|roles| {
                roles
                    .iter()
                    .filter_map(|role| Uuid::try_parse(role).ok())
                    .take(256)
                    .collect()
            }),
        })
    }
}

/// The `alg` of a header jsonwebtoken cannot parse (e.g. `none`), for the error message.
fn header_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("alg")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::NonceHash;

    #[test]
    fn a_nonce_is_kept_as_its_sha256_and_only_compared() {
        let hash = NonceHash::of("abc");
        assert_eq!(
            hash.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(NonceHash::from_hex(&hash.to_hex()), Some(hash.clone()));
        assert!(hash.matches("abc"));
        assert!(!hash.matches("abd") && !hash.matches(""));
        assert!(!format!("{hash:?}").contains("ba78"), "Debug shows nothing");
        for bad in ["", "ab", &"g".repeat(64), &"é".repeat(32)] {
            assert_eq!(NonceHash::from_hex(bad), None, "{bad}");
        }
    }
}
