//! The key-encryption key in a KMS (checklist 77, 78): with `CONSENTRY_KMS_VAULT_ADDR`,
//! refresh tokens and sign-in verifiers are encrypted under data keys that only Vault's
//! transit key can unwrap; the database holds them wrapped, never in clear. Vault here is a
//! stand-in of its transit API (`consentry_tests::vault`).

use std::process::Command;

use crate::support::{
    flows::{World, consent_as, consents_of, healthy, new_client, rows, start_link, world},
    storage::{dump, holds},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use consentry_tests::{Backend, TestApp, TestDatabase, both_backends, start, vault::Vault};
use entity::data_key;
use sea_orm::EntityTrait;
use serde_json::json;

const VAULT_TOKEN: &str = "hvs.test-token";

const VERIFY: &str = "mutation($id: ID!) { verifyDelegatedConsent(id: $id) { status } }";

fn use_kms(settings: &mut api::Settings, vault: &Vault) {
    settings.kms_vault_addr = Some(vault.url());
    settings.kms_vault_token = Some(vault.token().to_owned().into());
}

/// The delegated consent of `client` refreshes: its stored token decrypts.
async fn still_decrypts(app: &TestApp, client: &str) {
    let caller = app.caller("msp-a", &["admin"]).await;
    let consent = consents_of(&caller, client).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let verified = caller.run(VERIFY, json!({ "id": consent })).await;
    assert_eq!(
        verified.data()["verifyDelegatedConsent"]["status"],
        "ACTIVE"
    );
}

async fn data_keys(app: &TestApp) -> Vec<data_key::Model> {
    data_key::Entity::find().all(&app.db).await.unwrap()
}

/// Whether `dump` holds `key`: raw, hex or base64.
fn holds_key(dump: &[u8], key: &[u8]) -> bool {
    dump.windows(key.len()).any(|w| w == key) || holds(dump, &STANDARD.encode(key)) || {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        holds(dump, &hex)
    }
}

/// Checklist 78: with a KMS, a stored refresh token is encrypted under a data key the
/// database holds only wrapped by Vault; no dump holds the data key itself; and after a
/// restart Vault unwraps it and the token decrypts again.
#[both_backends]
async fn checklist_78_data_keys_are_wrapped_by_the_kms_and_never_stored_in_clear(backend: Backend) {
    let vault = Vault::start(VAULT_TOKEN).await;
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(World { sim, app }) = world(backend, vec![contoso.clone()], |s| {
        s.token_keys = None;
        use_kms(s, &vault);
    })
    .await
    else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let link = start_link(&caller, &client, &["MAIL_SEND"]).await;
    consent_as(&app, &link, contoso.admin().unwrap().id).await;

    let stored = data_keys(&app).await;
    assert_eq!(stored.len(), 1, "one data key, made at start");
    assert!(
        stored[0].wrapped.starts_with("vault:v1:"),
        "{:?}",
        stored[0]
    );
    assert_eq!(stored[0].kek, "vault-transit:transit/consentry");
    let consent = rows(&app).await.remove(0);
    assert_eq!(
        consent.refresh_token_key_id.as_deref(),
        Some(stored[0].id.as_str())
    );
    let dump = dump(&app).await;
    let wrapped = vault.plaintexts();
    assert_eq!(wrapped.len(), 1);
    assert!(
        !holds_key(&dump, &wrapped[0]),
        "the data key is in the database"
    );

    // A restart unwraps the data key through Vault, and the token decrypts.
    drop(caller);
    let database = app.stop().await;
    let app = start(database, |s| {
        s.use_simulator(&sim);
        s.token_keys = None;
        use_kms(s, &vault);
    })
    .await;
    still_decrypts(&app, &client).await;
    assert!(
        vault.calls().iter().any(|c| c == "decrypt consentry"),
        "{:?}",
        vault.calls()
    );
    assert_eq!(data_keys(&app).await.len(), 1, "no second key made");
}

/// Without Vault (down, or refusing the token) a server with a KMS does not start, and says
/// what to check: nothing is ever encrypted under a key the KMS does not hold.
#[both_backends]
async fn checklist_78_without_the_kms_the_server_does_not_start_and_says_why(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let vault = Vault::start(VAULT_TOKEN).await;
    let mut settings =
        consentry_tests::test_settings(&database, "a-secret-of-at-least-32-bytes-0000");
    settings.token_keys = None;
    use_kms(&mut settings, &vault);
    settings.kms_vault_token = Some("hvs.not-this-one".to_owned().into());
    let refused = api::Application::build(settings.clone())
        .await
        .expect_err("a token Vault refuses stops the start");
    let why = format!("{refused:#}");
    assert!(
        why.contains("CONSENTRY_KMS_VAULT_ADDR") && why.contains("permission denied"),
        "{why}"
    );
    assert!(!why.contains("hvs."), "the token is not shown: {why}");

    drop(vault);
    use_kms(&mut settings, &Vault::start(VAULT_TOKEN).await);
    settings.kms_vault_addr = Some(url::Url::parse("http://127.0.0.1:9").unwrap());
    let unreachable = api::Application::build(settings)
        .await
        .expect_err("an unreachable Vault stops the start");
    assert!(
        format!("{unreachable:#}").contains("could not be reached"),
        "{unreachable:#}"
    );
}

/// Checklist 77, 78: moving to a KMS and rotating under it. Tokens stored under
/// `CONSENTRY_TOKEN_KEYS` still decrypt once a KMS is set beside them; `consentry rotate-keys`
/// makes a new data key, rewraps the data keys under the transit key's newest version,
/// re-encrypts everything under the new one, and retires what nothing uses; then the
/// configured keys can go.
#[both_backends]
async fn checklist_77_78_moving_to_a_kms_and_rotating_under_it(backend: Backend) {
    let vault = Vault::start(VAULT_TOKEN).await;
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(World { sim, app }) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let link = start_link(&caller, &client, &["MAIL_SEND"]).await;
    consent_as(&app, &link, contoso.admin().unwrap().id).await;
    assert_eq!(
        rows(&app).await[0].refresh_token_key_id.as_deref(),
        Some("k1")
    );
    drop(caller);

    // A KMS beside the configured keys: the old token still decrypts.
    let database = app.stop().await;
    let app = start(database, |s| {
        s.use_simulator(&sim);
        use_kms(s, &vault);
    })
    .await;
    still_decrypts(&app, &client).await;
    let first = data_keys(&app).await.remove(0);

    // Rotate: a new data key, rewrapped under version 2 of the transit key.
    let database = app.stop().await;
    vault.rotate();
    let output = Command::new(env!("CARGO_BIN_EXE_consentry-under-test"))
        .arg("rotate-keys")
        .env("DATABASE_URL", &database.url)
        .env("CONSENTRY_TOKEN_KEYS", &database.token_keys)
        .env("CONSENTRY_KMS_VAULT_ADDR", vault.url().as_str())
        .env("CONSENTRY_KMS_VAULT_TOKEN", VAULT_TOKEN)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("retired 1 data key(s)"), "{said}");

    // The configured keys can go: with the KMS alone, everything still decrypts.
    let app = start(database, |s| {
        s.use_simulator(&sim);
        s.token_keys = None;
        use_kms(s, &vault);
    })
    .await;
    let stored = data_keys(&app).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_ne!(stored[0].id, first.id, "a new data key");
    assert!(stored[0].wrapped.starts_with("vault:v2:"), "{stored:?}");
    assert_eq!(
        rows(&app).await[0].refresh_token_key_id.as_deref(),
        Some(stored[0].id.as_str())
    );
    still_decrypts(&app, &client).await;
}
