//! id_token validation against tokens the simulator signs (checklist §B 21–28 and the OpenID
//! conformance RP cases §C 29–45 that apply to a code flow, plus 89, 90, 94).

use std::time::Duration;

use api::KeyError;
use api::{ExpectedTenant, IdTokenError, Microsoft, NonceHash};
use consentry_tests::{eventually, microsoft_client, start_simulator};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{Value, json};
use simulator::{SimTenant, Simulator};
use uuid::Uuid;

const NONCE: &str = "n-0S6_WzA2Mj";

/// What a flow keeps of [`NONCE`].
fn nonce() -> NonceHash {
    NonceHash::of(NONCE)
}

struct Fixture {
    simulator: Simulator,
    microsoft: Microsoft,
    tenant: SimTenant,
}

async fn fixture() -> Fixture {
    let tenant = SimTenant::healthy("contoso.onmicrosoft.com", "Contoso");
    let other = SimTenant::healthy("evil.onmicrosoft.com", "Evil Corp");
    let simulator = start_simulator(vec![tenant.clone(), other]).await;
    let microsoft = microsoft_client(&simulator);
    Fixture {
        simulator,
        microsoft,
        tenant,
    }
}

impl Fixture {
    fn issuer(&self, tid: Uuid) -> String {
        format!(
            "{}/{tid}/v2.0",
            self.simulator.base_url().as_str().trim_end_matches('/')
        )
    }

    /// Valid claims for the tenant; tests break one thing at a time.
    fn claims(&self) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.issuer(self.tenant.id), "aud": self.simulator.client_id(), "sub": "pairwise-sub",
            "tid": self.tenant.id, "oid": self.tenant.admin().unwrap().id, "nonce": NONCE,
            "iat": now, "nbf": now, "exp": now + 3600, "ver": "2.0",
            "preferred_username": "admin@contoso.onmicrosoft.com", "name": "Admin",
        })
    }

    fn signed(&self, claims: &Value) -> SecretString {
        SecretString::from(self.simulator.sign(claims).unwrap())
    }

    async fn validate(&self, token: &SecretString) -> Result<api::IdTokenClaims, IdTokenError> {
        self.microsoft
            .validate_id_token(token, &ExpectedTenant::Exactly(self.tenant.id), &nonce())
            .await
    }

    async fn rejects(&self, claims: &Value, expected: IdTokenError) {
        let result = self.validate(&self.signed(claims)).await;
        assert_eq!(result, Err(expected), "{claims}");
    }
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn b64(bytes: &[u8]) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Checklist 29, 36.
#[tokio::test]
async fn a_correct_token_is_accepted_and_its_claims_read() {
    // Checklist 29, 36: rp-response_type-code, rp-id_token-sig-rs256.
    let f = fixture().await;
    let claims = f.validate(&f.signed(&f.claims())).await.unwrap();
    assert_eq!(claims.tenant_id, f.tenant.id);
    assert_eq!(
        claims.object_id,
        Some(f.tenant.admin().unwrap().id.to_string())
    );
    assert_eq!(claims.subject, "pairwise-sub");
    assert_eq!(claims.issuer, f.issuer(f.tenant.id));
}

/// Checklist 21, 38.
#[tokio::test]
async fn a_tampered_token_fails_its_signature() {
    // Checklist 21, 38 (invalid-sig-rs256).
    let f = fixture().await;
    let token = f.simulator.sign(&f.claims()).unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = b64(with(f.claims(), "sub", json!("someone-else"))
        .to_string()
        .as_bytes());
    let tampered = SecretString::from(parts.join("."));
    assert_eq!(f.validate(&tampered).await, Err(IdTokenError::Signature));
}

/// Checklist 22, 37, 38.
#[tokio::test]
async fn alg_none_hs256_and_es256_are_refused() {
    // Checklist 22, 37, 38: only RS256; HS256 "signed" with the public key is the classic attack.
    let f = fixture().await;
    let none = SecretString::from(format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(f.claims().to_string().as_bytes())
    ));
    assert_eq!(
        f.validate(&none).await,
        Err(IdTokenError::Algorithm("none".into()))
    );

    let jwks: Value = reqwest::get(format!(
        "{}organizations/discovery/v2.0/keys",
        f.simulator.base_url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let public_key = jwks["keys"][0]["n"].as_str().unwrap().to_owned();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = jwks["keys"][0]["kid"].as_str().map(str::to_owned);
    let hs256 = jsonwebtoken::encode(
        &header,
        &f.claims(),
        &EncodingKey::from_secret(public_key.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        f.validate(&SecretString::from(hs256)).await,
        Err(IdTokenError::Algorithm("HS256".into()))
    );

    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let ec = p256::SecretKey::random(&mut rsa::rand_core::OsRng)
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap();
    let es256 = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &f.claims(),
        &EncodingKey::from_ec_pem(ec.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        f.validate(&SecretString::from(es256)).await,
        Err(IdTokenError::Algorithm("ES256".into()))
    );
}

/// Checklist 23, 24, 30.
#[tokio::test]
async fn the_issuer_must_be_the_flows_tenant_exactly() {
    // Checklist 23, 24, 30: iss is filled from the flow's tenant, never from the token.
    let f = fixture().await;
    f.rejects(
        &with(
            f.claims(),
            "iss",
            json!("https://login.microsoftonline.com/common/v2.0"),
        ),
        IdTokenError::Issuer,
    )
    .await;
    f.rejects(
        &with(
            f.claims(),
            "iss",
            json!(format!("{}/", f.issuer(f.tenant.id))),
        ),
        IdTokenError::Issuer,
    )
    .await;
    // A correctly signed token of another tenant, carrying our aud (the Airflow bug).
    let other = simulator::stable_id("evil.onmicrosoft.com");
    let foreign = with(
        with(f.claims(), "tid", json!(other)),
        "iss",
        json!(f.issuer(other)),
    );
    f.rejects(&foreign, IdTokenError::Issuer).await;
    // Its own tid with our issuer is still another tenant's token.
    f.rejects(&with(f.claims(), "tid", json!(other)), IdTokenError::Tenant)
        .await;
}

#[tokio::test]
async fn any_organization_accepts_a_tenant_only_with_its_own_issuer() {
    let f = fixture().await;
    let other = simulator::stable_id("evil.onmicrosoft.com");
    let foreign = with(
        with(f.claims(), "tid", json!(other)),
        "iss",
        json!(f.issuer(other)),
    );
    let claims = f
        .microsoft
        .validate_id_token(
            &f.signed(&foreign),
            &ExpectedTenant::AnyOrganization,
            &nonce(),
        )
        .await
        .unwrap();
    assert_eq!(
        claims.tenant_id, other,
        "the caller must then bind this tenant to the client"
    );
    let mixed = with(f.claims(), "tid", json!(other));
    let result = f
        .microsoft
        .validate_id_token(
            &f.signed(&mixed),
            &ExpectedTenant::AnyOrganization,
            &nonce(),
        )
        .await;
    assert_eq!(result, Err(IdTokenError::Issuer));
    let not_a_guid = with(
        with(f.claims(), "tid", json!("common")),
        "iss",
        json!(format!(
            "{}/common/v2.0",
            f.simulator.base_url().as_str().trim_end_matches('/')
        )),
    );
    let result = f
        .microsoft
        .validate_id_token(
            &f.signed(&not_a_guid),
            &ExpectedTenant::AnyOrganization,
            &nonce(),
        )
        .await;
    assert_eq!(result, Err(IdTokenError::Tenant));
}

/// Checklist 25, 32.
#[tokio::test]
async fn the_audience_must_be_exactly_our_client() {
    // Checklist 25, 32.
    let f = fixture().await;
    f.rejects(
        &with(
            f.claims(),
            "aud",
            json!("00000003-0000-0000-c000-000000000000"),
        ),
        IdTokenError::Audience,
    )
    .await;
    f.rejects(
        &with(
            f.claims(),
            "aud",
            json!([f.simulator.client_id(), "another-app"]),
        ),
        IdTokenError::Audience,
    )
    .await;
    f.rejects(
        &with(f.claims(), "azp", json!("another-app")),
        IdTokenError::Audience,
    )
    .await;
    f.rejects(
        &without(f.claims(), "aud"),
        IdTokenError::MissingClaim("aud".into()),
    )
    .await;
    assert!(
        f.validate(&f.signed(&with(f.claims(), "azp", json!(f.simulator.client_id()))))
            .await
            .is_ok()
    );
}

/// Checklist 26, 31, 33.
#[tokio::test]
async fn required_claims_must_be_present() {
    // Checklist 26, 31, 33.
    let f = fixture().await;
    f.rejects(
        &without(f.claims(), "sub"),
        IdTokenError::MissingClaim("sub".into()),
    )
    .await;
    f.rejects(
        &without(f.claims(), "iat"),
        IdTokenError::MissingClaim("iat".into()),
    )
    .await;
    f.rejects(
        &without(f.claims(), "exp"),
        IdTokenError::MissingClaim("exp".into()),
    )
    .await;
    f.rejects(
        &without(f.claims(), "tid"),
        IdTokenError::MissingClaim("tid".into()),
    )
    .await;
}

/// Checklist 10, 39.
#[tokio::test]
async fn the_nonce_must_be_this_flows() {
    // Checklist 10, 39.
    let f = fixture().await;
    f.rejects(
        &with(f.claims(), "nonce", json!("another-flows-nonce")),
        IdTokenError::Nonce,
    )
    .await;
    f.rejects(&without(f.claims(), "nonce"), IdTokenError::Nonce)
        .await;
}

/// Checklist 26, 94.
#[tokio::test]
async fn clock_skew_is_tolerated_up_to_two_minutes_and_no_further() {
    // Checklist 26, 94: ±(leeway−1 s) accepted, ±(leeway+1 s) refused, for exp, nbf and iat.
    let f = fixture().await;
    let now = chrono::Utc::now().timestamp();
    assert!(
        f.validate(&f.signed(&with(f.claims(), "exp", json!(now - 115))))
            .await
            .is_ok()
    );
    f.rejects(
        &with(f.claims(), "exp", json!(now - 125)),
        IdTokenError::Expired,
    )
    .await;
    assert!(
        f.validate(&f.signed(&with(f.claims(), "nbf", json!(now + 115))))
            .await
            .is_ok()
    );
    f.rejects(
        &with(f.claims(), "nbf", json!(now + 125)),
        IdTokenError::NotYetValid,
    )
    .await;
    assert!(
        f.validate(&f.signed(&with(f.claims(), "iat", json!(now + 115))))
            .await
            .is_ok()
    );
    f.rejects(
        &with(f.claims(), "iat", json!(now + 125)),
        IdTokenError::NotYetValid,
    )
    .await;
}

/// Checklist 27.
#[tokio::test]
async fn keys_come_only_from_the_configured_key_set() {
    // Checklist 27: a token's jku (or a kid the key set lacks) never fetches anything else.
    let f = fixture().await;
    use rsa::pkcs1::EncodeRsaPrivateKey;
    let foreign = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let key = EncodingKey::from_rsa_der(foreign.to_pkcs1_der().unwrap().as_bytes());
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("attacker-key".into());
    header.jku = Some("http://127.0.0.1:9/attacker-jwks".into());
    let token = jsonwebtoken::encode(&header, &f.claims(), &key).unwrap();
    assert_eq!(
        f.validate(&SecretString::from(token)).await,
        Err(IdTokenError::Key(KeyError::UnknownKey))
    );
    assert!(
        f.simulator
            .requests()
            .iter()
            .all(|r| !r.path.contains("attacker"))
    );
}

/// Checklist 34, 35.
#[tokio::test]
async fn a_kid_less_token_verifies_with_a_single_key_and_is_refused_with_several() {
    // Checklist 34, 35: with one published key a token without kid verifies with it; with
    // several, nothing is guessed.
    let f = fixture().await;
    let kid_less = SecretString::from(f.simulator.sign_without_kid(&f.claims()).unwrap());
    f.validate(&kid_less).await.unwrap();
    f.simulator.rotate_keys(false).unwrap();
    let with_kid = f.signed(&f.claims());
    eventually(
        Duration::from_secs(5),
        "the second key to be fetched",
        || {
            let (f, token) = (&f, &with_kid);
            async move { f.validate(token).await.ok() }
        },
    )
    .await;
    let kid_less = SecretString::from(f.simulator.sign_without_kid(&f.claims()).unwrap());
    assert_eq!(
        f.validate(&kid_less).await,
        Err(IdTokenError::Key(KeyError::Ambiguous))
    );
}

/// Checklist 43.
#[tokio::test]
async fn a_rotated_signing_key_is_fetched_once_and_then_accepted() {
    // Checklist 43: an unknown kid triggers one refetch of the key set.
    let f = fixture().await;
    f.validate(&f.signed(&f.claims())).await.unwrap();
    f.simulator.rotate_keys(true).unwrap();
    let token = f.signed(&f.claims());
    eventually(Duration::from_secs(5), "the rotated key to verify", || {
        let (f, token) = (&f, &token);
        async move { f.validate(token).await.ok() }
    })
    .await;
}

/// Checklist 90.
#[tokio::test]
async fn a_flood_of_unknown_kids_costs_at_most_one_fetch_per_interval() {
    // Checklist 90.
    let f = fixture().await;
    f.validate(&f.signed(&f.claims())).await.unwrap();
    let fetches = |f: &Fixture| {
        f.simulator
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/discovery/v2.0/keys"))
            .count()
    };
    let before = fetches(&f);
    let tokens: Vec<SecretString> = (0..30)
        .map(|i| {
            let mut parts: Vec<String> = f
                .simulator
                .sign(&f.claims())
                .unwrap()
                .split('.')
                .map(str::to_owned)
                .collect();
            parts[0] =
                b64(format!(r#"{{"alg":"RS256","typ":"JWT","kid":"random-{i}"}}"#).as_bytes());
            SecretString::from(parts.join("."))
        })
        .collect();
    let results = futures_util::future::join_all(tokens.iter().map(|t| f.validate(t))).await;
    assert!(results.iter().all(|r| r.is_err()));
    assert!(
        fetches(&f) - before <= 1,
        "{} fetches",
        fetches(&f) - before
    );
}

/// Checklist 89.
#[tokio::test]
async fn without_any_cached_keys_validation_fails_closed() {
    // Checklist 89: no keys and no cache means refusal, never a skipped signature check.
    let f = fixture().await;
    let token = f.signed(&f.claims());
    f.simulator.stop().await;
    let microsoft = f.microsoft;
    let result = microsoft
        .validate_id_token(&token, &ExpectedTenant::Exactly(f.tenant.id), &nonce())
        .await;
    assert_eq!(result, Err(IdTokenError::Key(KeyError::Unavailable)));
}

/// Checklist 89.
#[tokio::test]
async fn with_cached_keys_validation_survives_the_key_endpoint_going_away() {
    // Checklist 89: the last good keys keep working.
    let f = fixture().await;
    let token = f.signed(&f.claims());
    f.validate(&token).await.unwrap();
    let Fixture {
        simulator,
        microsoft,
        tenant,
    } = f;
    simulator.stop().await;
    let result = microsoft
        .validate_id_token(&token, &ExpectedTenant::Exactly(tenant.id), &nonce())
        .await;
    assert!(result.is_ok(), "{result:?}");
}

/// Checklist 28, 44.
#[tokio::test]
async fn a_refreshed_id_token_must_name_the_same_issuer_and_user() {
    // Checklist 28, 44: refresh-token succeeds; -invalid-issuer and -invalid-sub are refused.
    let f = fixture().await;
    let original = f.validate(&f.signed(&f.claims())).await.unwrap();
    let refreshed = without(f.claims(), "nonce");
    let same = f
        .microsoft
        .validate_refreshed_id_token(&f.signed(&refreshed), &original)
        .await
        .unwrap();
    assert_eq!(same.subject, original.subject);
    let other_user = with(refreshed.clone(), "sub", json!("someone-else"));
    assert_eq!(
        f.microsoft
            .validate_refreshed_id_token(&f.signed(&other_user), &original)
            .await,
        Err(IdTokenError::Subject)
    );
    let other_issuer = with(refreshed, "iss", json!("https://login.example.com/x/v2.0"));
    assert_eq!(
        f.microsoft
            .validate_refreshed_id_token(&f.signed(&other_issuer), &original)
            .await,
        Err(IdTokenError::Issuer)
    );
}

#[tokio::test]
async fn the_simulators_refreshed_id_token_passes_the_refresh_rules() {
    let f = fixture().await;
    let secrets = api::FlowSecrets::new();
    let scopes: Vec<String> = [
        "openid",
        "offline_access",
        "https://graph.microsoft.com/User.Read",
    ]
    .map(String::from)
    .to_vec();
    let url = f
        .microsoft
        .authorize_url(&api::TenantHint::Id(f.tenant.id), &scopes, &secrets, None);
    let mut form: std::collections::BTreeMap<String, String> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.insert("user".into(), f.tenant.admin().unwrap().id.to_string());
    form.insert("decision".into(), "accept".into());
    let mut action = url.clone();
    action.set_query(None);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let location = browser
        .post(action)
        .form(&form)
        .send()
        .await
        .unwrap()
        .headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let code = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let graph = vec!["https://graph.microsoft.com/User.Read".to_owned()];
    let tokens = f
        .microsoft
        .redeem_code(
            &f.tenant.id.to_string(),
            &code,
            &secrets.pkce_verifier,
            &graph,
        )
        .await
        .unwrap();
    let original = f
        .microsoft
        .validate_id_token(
            tokens.id_token.as_ref().unwrap(),
            &ExpectedTenant::Exactly(f.tenant.id),
            &NonceHash::of(secrets.nonce.secret()),
        )
        .await
        .unwrap();
    let refreshed = f
        .microsoft
        .refresh(
            &f.tenant.id.to_string(),
            tokens.refresh_token.as_ref().unwrap(),
            &graph,
        )
        .await
        .unwrap();
    let again = f
        .microsoft
        .validate_refreshed_id_token(refreshed.id_token.as_ref().unwrap(), &original)
        .await
        .unwrap();
    assert_eq!(again.object_id, original.object_id);
}
