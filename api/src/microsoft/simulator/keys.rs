//! The simulator's signing keys: real RSA keys it generates, published as a JWKS, rotatable.

use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse},
};
use rsa::{RsaPrivateKey, pkcs1::EncodeRsaPrivateKey};
use serde::Serialize;

/// One RSA signing key.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl SigningKey {
    /// A fresh 2048-bit RSA key.
    pub(crate) fn generate() -> anyhow::Result<Self> {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
        let der = private.to_pkcs1_der()?;
        let encoding = EncodingKey::from_rsa_der(der.as_bytes());
        let kid = uuid::Uuid::new_v4().simple().to_string();
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        // Microsoft's v2 keys carry no `alg`; keep the same shape.
        jwk.common.key_algorithm = None::<KeyAlgorithm>;
        Ok(Self { kid, encoding, jwk })
    }

    /// Signs `claims` as an RS256 JWT with this key's `kid`.
    pub(crate) fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }
}

impl SigningKey {
    pub(crate) fn sign_without_kid<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            claims,
            &self.encoding,
        )?)
    }
}

/// The published keys; the newest signs.
pub(crate) struct KeyRing {
    keys: Vec<SigningKey>,
}

impl KeyRing {
    pub(crate) fn new() -> anyhow::Result<Self> {
        Ok(Self {
            keys: vec![SigningKey::generate()?],
        })
    }

    pub(crate) fn active(&self) -> &SigningKey {
        // Never empty: created with one key, rotation adds before it removes.
        &self.keys[self.keys.len() - 1]
    }

    /// Adds a new signing key; with `retire`, older keys are no longer published.
    pub(crate) fn rotate(&mut self, retire: bool) -> anyhow::Result<String> {
        let key = SigningKey::generate()?;
        let kid = key.kid.clone();
        if retire {
            self.keys.clear();
        }
        self.keys.push(key);
        Ok(kid)
    }

    pub(crate) fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(|k| k.jwk.clone()).collect(),
        }
    }
}
