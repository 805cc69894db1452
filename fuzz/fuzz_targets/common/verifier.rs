//! The caller-token verifier both token targets drive: HS256 with a fixed secret, issuer and
//! audience (the same as `api::auth`'s regression tests), run on one current-thread runtime.

use std::sync::LazyLock;

use api::{AuthError, CallerAuth, CallerClaims};
use secrecy::SecretString;
use tokio::runtime::Runtime;

pub const SECRET: &str = "consentry-fuzz-hs256-secret-0123456789abcdef";
pub const ISSUER: &str = "consentry";
pub const AUDIENCE: &str = "consentry-api";

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
});

static AUTH: LazyLock<CallerAuth> = LazyLock::new(|| {
    CallerAuth::hs256(
        &SecretString::from(SECRET),
        ISSUER.to_owned(),
        AUDIENCE.to_owned(),
    )
});

/// `CallerAuth::verify` on `token`.
pub fn verify(token: &str) -> Result<CallerClaims, AuthError> {
    RUNTIME.block_on(AUTH.verify(token))
}
