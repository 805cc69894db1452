//! The simulator's signing keys: real RSA keys it generates, published as a JWKS, rotatable.
//! Tokens are signed with `ring`: the `rsa` crate takes about 2 ms per RS256 signature, and
//! every app-only token the simulator issues is signed, so under a burst of consent callbacks
//! the stand-in for Microsoft took as much CPU as Consentry itself.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, EncodingKey,
    jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse},
};
use ring::{rand::SystemRandom, signature::RsaKeyPair};
use rsa::{RsaPrivateKey, pkcs1::EncodeRsaPrivateKey};
use serde::Serialize;
use serde_json::json;

/// One RSA signing key.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pair: RsaKeyPair,
    jwk: Jwk,
}

impl SigningKey {
    /// A fresh 2048-bit RSA key.
    pub(crate) fn generate() -> anyhow::Result<Self> {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
        let der = private.to_pkcs1_der()?;
        let pair = RsaKeyPair::from_der(der.as_bytes())
            .map_err(|e| anyhow::anyhow!("ring rejected the generated RSA key: {e}"))?;
        let kid = uuid::Uuid::new_v4().simple().to_string();
        let mut jwk =
            Jwk::from_encoding_key(&EncodingKey::from_rsa_der(der.as_bytes()), Algorithm::RS256)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        // Microsoft's v2 keys carry no `alg`; keep the same shape.
        jwk.common.key_algorithm = None::<KeyAlgorithm>;
        Ok(Self { kid, pair, jwk })
    }

    /// Signs `claims` as an RS256 JWT with this key's `kid`.
    pub(crate) fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        self.jwt(
            &json!({ "typ": "JWT", "alg": "RS256", "kid": self.kid }),
            claims,
        )
    }

    pub(crate) fn sign_without_kid<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        self.jwt(&json!({ "typ": "JWT", "alg": "RS256" }), claims)
    }

    /// `header.claims.signature`, each base64url without padding (RFC 7515 §7.1).
    fn jwt<T: Serialize>(&self, header: &serde_json::Value, claims: &T) -> anyhow::Result<String> {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
        );
        let mut signature = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| anyhow::anyhow!("RS256 signing failed"))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
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
