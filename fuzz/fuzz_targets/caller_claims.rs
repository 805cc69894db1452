//! `CallerAuth::verify` past the signature: the input is a JOSE header (first line) and a
//! claims set (the rest), both signed here with the verifier's own HS256 secret, so every
//! claim check is reached with arbitrary JSON.
//!
//! Invariants: no panic; accepted claims keep the rules: `exp` not past (beyond the 60 s
//! leeway), `nbf` not ahead (same leeway), `iss` and one `aud` the configured ones, `sub`
//! not blank.
//!
//! Byte-level mutations rarely turn one valid claims set into another (a `sub` of `""`, an
//! `exp` a minute ago), so half the mutations are structural: a custom mutator parses both
//! lines as JSON objects, sets, retypes or removes a claim or a header field, and writes the
//! JSON back. Inputs stay in the same text form, which the `api` regression test replays.

#![no_main]

#[path = "common/verifier.rs"]
mod verifier;

use std::{
    sync::LazyLock,
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};
use serde_json::{Map, Value, json};
use verifier::{AUDIENCE, ISSUER, SECRET};

/// `api::auth`'s clock skew on `exp` and `nbf`.
const LEEWAY_SECONDS: i64 = 60;

static KEY: LazyLock<EncodingKey> = LazyLock::new(|| EncodingKey::from_secret(SECRET.as_bytes()));

fn now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since_epoch.as_secs()).expect("a clock before 2262")
}

fuzz_target!(|data: &[u8]| {
    let Some(newline) = data.iter().position(|b| *b == b'\n') else {
        return;
    };
    let (header, claims) = (&data[..newline], &data[newline + 1..]);
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &KEY, Algorithm::HS256)
        .expect("HS256 signs anything");
    let token = format!("{message}.{signature}");

    let before = now();
    let verified = verifier::verify(&token);
    let after = now();
    let Ok(claims) = verified else {
        return;
    };
    assert!(
        claims.exp.saturating_add(LEEWAY_SECONDS) >= before,
        "expired: {claims:?}"
    );
    if let Some(nbf) = claims.nbf {
        assert!(nbf <= after + LEEWAY_SECONDS, "not yet valid: {claims:?}");
    }
    assert_eq!(claims.iss, ISSUER, "{claims:?}");
    assert!(claims.aud.iter().any(|aud| aud == AUDIENCE), "{claims:?}");
    assert!(!claims.sub.trim().is_empty(), "blank sub: {claims:?}");
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let mut rng = Rng(u64::from(seed));
    let structural = match rng.below(2) {
        0 => mutate_json(&data[..size], &mut rng),
        _ => None,
    };
    match structural {
        Some(mutated) if mutated.len() <= max_size => {
            data[..mutated.len()].copy_from_slice(&mutated);
            mutated.len()
        }
        _ => fuzzer_mutate(data, size, max_size),
    }
});

/// splitmix64: the mutator must be deterministic in libFuzzer's seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z % n as u64) as usize
    }

    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())].clone()
    }
}

fn mutate_json(input: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let newline = input.iter().position(|b| *b == b'\n')?;
    let mut header: Map<String, Value> = serde_json::from_slice(&input[..newline]).ok()?;
    let mut claims: Map<String, Value> = serde_json::from_slice(&input[newline + 1..]).ok()?;
    for _ in 0..=rng.below(3) {
        if rng.below(5) == 0 {
            mutate_header(&mut header, rng);
        } else {
            mutate_claim(&mut claims, rng);
        }
    }
    let mut output = serde_json::to_vec(&header).ok()?;
    output.push(b'\n');
    output.extend(serde_json::to_vec(&claims).ok()?);
    Some(output)
}

fn mutate_header(header: &mut Map<String, Value>, rng: &mut Rng) {
    let (name, value) = rng.pick(&[
        ("alg", json!("HS256")),
        ("alg", json!("hs256")),
        ("alg", json!("HS384")),
        ("alg", json!("RS256")),
        ("alg", json!("none")),
        ("alg", Value::Null),
        ("typ", json!("JWT")),
        ("typ", json!(7)),
        ("kid", json!("1")),
        ("crit", json!(["exp"])),
        ("b64", json!(false)),
        ("jku", json!("https://evil.example/jwks")),
    ]);
    if rng.below(4) == 0 {
        header.remove(name);
    } else {
        header.insert(name.to_owned(), value);
    }
}

fn mutate_claim(claims: &mut Map<String, Value>, rng: &mut Rng) {
    let name = rng.pick(&["sub", "iss", "aud", "exp", "nbf", "iat", "msp", "roles"]);
    if rng.below(4) == 0 {
        claims.remove(name);
        return;
    }
    let moment = now() + rng.pick(&[-86_400, -3_600, -61, -60, -59, -1, 0, 1, 59, 60, 61, 3_600]);
    let value = match rng.below(22) {
        0 => Value::Null,
        1 => json!(""),
        2 => json!(" "),
        3 => json!("\u{0}"),
        4 => json!(ISSUER),
        5 => json!(AUDIENCE),
        6 => json!(format!("{ISSUER} ")),
        7 => json!(AUDIENCE.to_uppercase()),
        8 => json!([AUDIENCE, "graph"]),
        9 => json!(["graph"]),
        10 => json!([]),
        11 => json!(["admin", "support"]),
        12 => json!(moment),
        13 => json!(moment as f64 + 0.5),
        14 => json!(moment.to_string()),
        15 => json!(-moment),
        16 => json!(i64::MAX),
        17 => json!(u64::MAX),
        18 => json!(1e300),
        19 => json!(true),
        20 => json!({}),
        _ => json!("alice@contoso.example"),
    };
    claims.insert(name.to_owned(), value);
}
