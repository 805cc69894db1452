//! Secrets at rest (issue 16): what a database dump, a copy of the data directory or a
//! `git add .` could give away. Pending links keep their PKCE verifier only sealed to their
//! flow and their nonce only as a hash (checklist 74, 75, 77); the SQLite database and every
//! file beside it are created 0600; every file a server start creates is git-ignored; GraphiQL
//! keeps the caller's token out of `localStorage` — on SQLite and PostgreSQL.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::support::{
    flows::{
        World, admin_consent, authorise, browser, callback, consent_as, consent_page, consents_of,
        flows, healthy, location, new_client, start_link, tile, token_grants, world,
    },
    storage::{dump, holds, logical_dump},
};
use api::{DERIVED_FLOW_KEY_ID, NonceHash};
use consentry_tests::{
    Backend, TestApp, TestDatabase, both_backends, eventually, serde_json::Value, start,
};
use entity::enums::OAuthFlowStatus;
use migration::MigratorTrait;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database};
use serde_json::json;
use simulator::SimTenant;
use url::Url;
use uuid::Uuid;

const CREATE_SERVICE_PRINCIPAL: &str = "mutation($id: ID!) {
    createServicePrincipal(clientId: $id) { status signInUrl } }";

const SERVICE_PRINCIPAL_REQUESTS: &str =
    "query($id: ID!) { client(id: $id) { servicePrincipalRequests { status } } }";

/// The query parameters of a link.
fn query_of(url: &str) -> BTreeMap<String, String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// The PKCE verifiers Microsoft received with authorization codes.
fn verifiers_sent(world: &World) -> Vec<String> {
    world
        .sim
        .requests()
        .iter()
        .filter(|r| r.param("grant_type") == Some("authorization_code"))
        .filter_map(|r| r.param("code_verifier").map(str::to_owned))
        .collect()
}

/// Goes through an admin-consent link as the admin's browser does, when the server that made
/// it was restarted (at the same public URL, on another port): every redirect back to
/// Consentry reaches `app`. Returns the last callback's response.
async fn admin_consent_after_restart(app: &TestApp, link: &str, user: Uuid) -> reqwest::Response {
    let mut signed_in = consent_page(link, user, "accept").await;
    signed_in.set_port(Some(app.port)).unwrap();
    let response = browser().get(signed_in).send().await.unwrap();
    let Some(consent) = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .filter(|l| l.contains("/adminconsent"))
        .map(str::to_owned)
    else {
        return response;
    };
    let mut back = consent_page(&consent, user, "accept").await;
    back.set_port(Some(app.port)).unwrap();
    browser().get(back).send().await.unwrap()
}

/// Pending links of all three kinds that sign someone in (admin consent, delegated consent,
/// a service principal repair), dumped while pending, then completed end to end: the dump
/// holds none of their verifiers, nonces or states, and the verifier Microsoft receives is
/// the one that was sealed (each flow succeeds).
#[both_backends]
async fn checklist_74_75_a_dump_of_pending_links_holds_no_verifier_nonce_or_state(
    backend: Backend,
) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let fabrikam = SimTenant::missing_teams("fabrikam.onmicrosoft.com", "Fabrikam");
    let Some(world) = world(backend, vec![contoso.clone(), fabrikam.clone()], |s| {
        s.sweep_interval = Duration::from_millis(100);
    })
    .await
    else {
        return;
    };
    let app = &world.app;
    let caller = app.caller("msp-a", &["admin"]).await;

    // Fabrikam lacks the Teams admin API: its Authorise fails, and a repair needs a sign-in.
    let repair = new_client(&caller, "Fabrikam", Some(&fabrikam.domain), None).await;
    let failing = authorise(&caller, &repair).await;
    let admin = fabrikam.admin().unwrap().id;
    callback(
        app,
        &admin_consent(failing["url"].as_str().unwrap(), admin, "accept").await,
    )
    .await;
    assert_eq!(
        tile(&caller, &repair).await["problem"]["code"],
        "MISSING_SERVICE_PRINCIPAL"
    );
    let created = caller
        .run(CREATE_SERVICE_PRINCIPAL, json!({ "id": repair }))
        .await;
    let repair_link = created.data()["createServicePrincipal"]["signInUrl"]
        .as_str()
        .unwrap()
        .to_owned();

    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let admin_link = authorise(&caller, &client).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let delegated_link = start_link(&caller, &client, &["MAIL_SEND"]).await;
    let links = [&admin_link, &delegated_link, &repair_link];

    let pending: Vec<_> = flows(app)
        .await
        .into_iter()
        .filter(|f| f.status == OAuthFlowStatus::Pending)
        .collect();
    assert_eq!(pending.len(), 3, "{pending:?}");
    for flow in &pending {
        assert_eq!(flow.pkce_verifier_key_id.as_deref(), Some("k1"), "{flow:?}");
        assert!(flow.sealed_pkce_verifier.as_ref().unwrap().len() >= 12 + 43 + 16);
    }
    let mut nonce_hashes: Vec<_> = pending.iter().map(|f| f.nonce_hash.clone()).collect();
    nonce_hashes.sort();
    let mut expected: Vec<_> = links
        .iter()
        .map(|link| Some(NonceHash::of(&query_of(link)["nonce"]).to_hex()))
        .collect();
    expected.sort();
    assert_eq!(
        nonce_hashes, expected,
        "each nonce is stored as its SHA-256"
    );

    let dumped = dump(app).await;

    // Each link still completes end to end.
    let back = admin_consent(&admin_link, contoso.admin().unwrap().id, "accept").await;
    callback(app, &back).await;
    assert_eq!(tile(&caller, &client).await["status"], "AUTHORISED");
    consent_as(app, &delegated_link, contoso.admin().unwrap().id).await;
    assert_eq!(consents_of(&caller, &client).await[0]["status"], "ACTIVE");
    let back = consent_page(&repair_link, admin, "accept").await;
    callback(app, &back).await;
    eventually(Duration::from_secs(20), "the repair to finish", || async {
        let requests = caller
            .run(SERVICE_PRINCIPAL_REQUESTS, json!({ "id": repair }))
            .await;
        (requests.data()["client"]["servicePrincipalRequests"][0]["status"] == "READY")
            .then_some(())
    })
    .await;

    let verifiers = verifiers_sent(&world);
    assert_eq!(
        verifiers.len(),
        4,
        "Fabrikam's failed Authorise, then the three links"
    );
    for verifier in &verifiers {
        assert!(verifier.len() >= 43);
        assert!(!holds(&dumped, verifier), "a PKCE verifier is in the dump");
    }
    for link in links {
        let query = query_of(link);
        for secret in ["nonce", "state"] {
            assert!(!holds(&dumped, &query[secret]), "a {secret} is in the dump");
        }
    }
    for flow in flows(app).await {
        assert!(
            flow.sealed_pkce_verifier.is_none()
                && flow.pkce_verifier_key_id.is_none()
                && flow.nonce_hash.is_none(),
            "a finished flow keeps nothing of its sign-in: {flow:?}"
        );
    }
}

/// A sealed verifier copied into another flow's row does not open there: the link fails
/// with "send a new link", and no code is redeemed at Microsoft.
/// Checklist 78, without a KMS: the keys that encrypt refresh tokens and verifiers live
/// outside the database — in `CONSENTRY_TOKEN_KEYS`, a secret store's, or a 0600 file beside
/// an SQLite database — so no dump, and no database role, holds them. (With a KMS, see
/// `kms.rs`.)
#[both_backends]
async fn checklist_78_the_keys_never_reach_the_database(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let app = &world.app;
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    // A stored refresh token, and a pending link with a sealed verifier.
    let link = start_link(&caller, &client, &["MAIL_SEND"]).await;
    let back = consent_page(&link, contoso.admin().unwrap().id, "accept").await;
    callback(app, &back).await;
    authorise(&caller, &client).await;
    let dump = dump(app).await;
    assert!(holds(&dump, "msp-a"), "the dump holds the test's rows");
    for entry in app.database().token_keys.split(',') {
        let (kid, key) = entry.split_once(':').unwrap();
        assert!(!holds(&dump, key), "key {kid} is in the database");
        let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key).unwrap();
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            !dump.windows(raw.len()).any(|w| w == raw.as_slice()) && !holds(&dump, &hex),
            "key {kid}'s bytes are in the database"
        );
    }
}

#[both_backends]
async fn checklist_75_a_verifier_copied_to_another_flow_is_refused_before_microsoft_is_asked(
    backend: Backend,
) {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let contoso = healthy("contoso.onmicrosoft.com");
    let northwind = healthy("northwind.onmicrosoft.com");
    let Some(world) = world(backend, vec![contoso.clone(), northwind.clone()], |_| {}).await else {
        return;
    };
    let app = &world.app;
    let caller = app.caller("msp-a", &["admin"]).await;
    let first = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let second = new_client(&caller, "Northwind", Some(&northwind.domain), None).await;
    authorise(&caller, &first).await;
    let link = authorise(&caller, &second).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = flows(app).await;
    let state_hash = api::state_hash(&query_of(&link)["state"]);
    let (target, source): (Vec<_>, Vec<_>) =
        stored.into_iter().partition(|f| f.state_hash == state_hash);
    let mut moved: entity::oauth_flow::ActiveModel = target[0].clone().into();
    moved.sealed_pkce_verifier = Set(source[0].sealed_pkce_verifier.clone());
    moved.pkce_verifier_key_id = Set(source[0].pkce_verifier_key_id.clone());
    moved.update(&app.db).await.unwrap();

    let redeemed = token_grants(&world.sim, "authorization_code");
    let back = admin_consent(&link, northwind.admin().unwrap().id, "accept").await;
    let response = callback(app, &back).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let tile = tile(&caller, &second).await;
    assert_eq!(tile["status"], "FAILED", "{tile}");
    assert_eq!(tile["problem"]["code"], "LINK_EXPIRED", "{tile}");
    assert!(
        tile["problem"]["remediation"]
            .as_str()
            .unwrap()
            .contains("new link"),
        "{tile}"
    );
    assert_eq!(
        token_grants(&world.sim, "authorization_code"),
        redeemed,
        "no code was redeemed"
    );
}

/// With no `CONSENTRY_TOKEN_KEYS`, links are sealed all the same: under the key generated
/// beside an SQLite database, or — PostgreSQL — under one derived from the Microsoft client
/// secret, so that admin consent keeps working there.
#[both_backends]
async fn checklist_74_without_configured_token_keys_links_are_sealed_and_complete(
    backend: Backend,
) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(world) = world(backend, vec![contoso.clone()], |s| s.token_keys = None).await else {
        return;
    };
    let app = &world.app;
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let link = authorise(&caller, &client).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let flow = flows(app).await.remove(0);
    let expected = match backend {
        Backend::Sqlite => "k1",
        Backend::Postgres => DERIVED_FLOW_KEY_ID,
    };
    assert_eq!(flow.pkce_verifier_key_id.as_deref(), Some(expected));
    assert!(flow.sealed_pkce_verifier.is_some());

    let back = admin_consent(&link, contoso.admin().unwrap().id, "accept").await;
    callback(app, &back).await;
    assert_eq!(tile(&caller, &client).await["status"], "AUTHORISED");
    let verifier = verifiers_sent(&world).remove(0);
    assert!(!holds(&dump(app).await, &verifier));
}

/// A link made before the upgrade kept its verifier and nonce in plaintext: the upgrade
/// erases them (a dump after it holds neither), and the link then fails cleanly with "send a
/// new link", while a new link works.
#[both_backends]
async fn links_made_before_the_upgrade_lose_their_plaintext_and_fail_cleanly(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(World { sim, app }) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let link = authorise(&caller, &client).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(caller);
    let public_url = Url::parse(&app.address).unwrap();
    let database = app.stop().await;

    // Back to the schema before, with the link's secrets in plaintext as it kept them.
    let db = Database::connect(&database.url).await.unwrap();
    migration::Migrator::down(&db, Some(migrations_after(FLOW_SECRETS_MIGRATION) + 1))
        .await
        .unwrap();
    db.execute_unprepared(
        "UPDATE oauth_flow SET pkce_verifier = 'plaintext-verifier-of-an-old-link-0123456789', \
         nonce = 'plaintext-nonce-of-an-old-link'",
    )
    .await
    .unwrap();
    db.close().await.unwrap();

    let app = start(database, |s| {
        s.use_simulator(&sim);
        s.public_url = public_url;
    })
    .await;
    // The values, not the pages SQLite freed or PostgreSQL's dead row versions: those go with
    // a VACUUM (the README's upgrade note).
    let dumped = logical_dump(&app).await;
    assert!(!holds(&dumped, "plaintext-verifier-of-an-old-link"));
    assert!(!holds(&dumped, "plaintext-nonce-of-an-old-link"));

    let caller = app.caller("msp-a", &["admin"]).await;
    let response = admin_consent_after_restart(&app, &link, contoso.admin().unwrap().id).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let mut result = Url::parse(&location(&response)).unwrap();
    result.set_port(Some(app.port)).unwrap();
    let page = reqwest::get(result).await.unwrap().text().await.unwrap();
    assert!(page.contains("earlier version of Consentry"), "{page}");
    let failed = tile(&caller, &client).await;
    assert_eq!(failed["problem"]["code"], "LINK_EXPIRED", "{failed}");

    let link = authorise(&caller, &client).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    admin_consent_after_restart(&app, &link, contoso.admin().unwrap().id).await;
    assert_eq!(tile(&caller, &client).await["status"], "AUTHORISED");
}

/// The migration that sealed the links' secrets.
const FLOW_SECRETS_MIGRATION: &str = "m20261204_000011_flow_secrets_at_rest";

/// How many migrations come after `name`: rolling back one more than that undoes `name`,
/// however many later migrations exist.
fn migrations_after(name: &str) -> u32 {
    let names: Vec<String> = migration::Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let position = names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no migration {name} in {names:?}"));
    u32::try_from(names.len() - position - 1).unwrap()
}

/// `consentry rotate-keys` re-encrypts the verifiers of pending links too, so the old key can
/// be removed at once without breaking a link in flight.
#[both_backends]
async fn checklist_77_rotate_keys_rewraps_pending_links_so_the_old_key_can_go(backend: Backend) {
    let contoso = healthy("contoso.onmicrosoft.com");
    let Some(World { sim, app }) = world(backend, vec![contoso.clone()], |_| {}).await else {
        return;
    };
    let caller = app.caller("msp-a", &["admin"]).await;
    let client = new_client(&caller, "Contoso", Some(&contoso.domain), None).await;
    let link = authorise(&caller, &client).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(caller);
    let public_url = Url::parse(&app.address).unwrap();
    let database = app.stop().await;
    let new_key = {
        use secrecy::ExposeSecret;
        api::TokenKeys::generate_setting("k2")
            .expose_secret()
            .to_owned()
    };
    let output = Command::new(env!("CARGO_BIN_EXE_consentry-under-test"))
        .arg("rotate-keys")
        .env("DATABASE_URL", &database.url)
        .env(
            "CONSENTRY_TOKEN_KEYS",
            format!("{new_key},{}", database.token_keys),
        )
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("sign-in secrets of 1 pending link(s)"),
        "{stderr}"
    );

    let app = start(database, |s| {
        s.use_simulator(&sim);
        s.public_url = public_url;
        s.token_keys = Some(new_key.clone().into());
    })
    .await;
    assert_eq!(
        flows(&app).await[0].pkce_verifier_key_id.as_deref(),
        Some("k2")
    );
    let caller = app.caller("msp-a", &["admin"]).await;
    admin_consent_after_restart(&app, &link, contoso.admin().unwrap().id).await;
    assert_eq!(
        tile(&caller, &client).await["status"],
        "AUTHORISED",
        "completed with k2 alone"
    );
}

/// `consentry serve`, started by `sh` under the usual umask 022 in an empty directory, as an
/// operator would start it; stopped (SIGTERM, then SIGKILL) when dropped.
struct Served {
    child: Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve_in(dir: &Path, env: &[(&str, &str)]) -> Served {
    let port = consentry_tests::free_port();
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask 022 && exec \"$0\" serve"])
        .arg(env!("CARGO_BIN_EXE_consentry-under-test"))
        .current_dir(dir)
        .env("CONSENTRY_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONSENTRY_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("RUST_LOG", "warn");
    for name in [
        "DATABASE_URL",
        "CONSENTRY_TOKEN_KEYS",
        "CONSENTRY_AUTH_HS256_SECRET",
        "CONSENTRY_AUTH_JWKS_URL",
        "CONSENTRY_MS_CLIENT_ID",
        "CONSENTRY_MS_CLIENT_SECRET",
    ] {
        command.env_remove(name);
    }
    command
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut served = Served {
        child: command.spawn().unwrap(),
    };
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = served.child.try_wait() {
            panic!("consentry exited at start: {status}");
        }
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "consentry was not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    served
}

/// The repository's root, where `.gitignore` is.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Whether git would leave `name` out of a `git add .` at the repository's root.
fn git_ignores(name: &str) -> bool {
    let output = Command::new("git")
        .arg("-C")
        .arg(repository())
        .args(["check-ignore", "--no-index", "--quiet", name])
        .output()
        .unwrap_or_else(|e| panic!("git is needed to check .gitignore: {e}"));
    match output.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!(
            "git check-ignore failed (is {} a git checkout?): {}",
            repository().display(),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The files in `dir`, by name, with their permission bits.
fn files_in(dir: &Path) -> BTreeMap<String, u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            (entry.file_name().to_string_lossy().into_owned(), mode)
        })
        .collect()
}

/// A real start of `consentry serve` in an empty directory, with nothing configured but the
/// database: on SQLite (the default `DATABASE_URL`) it creates the database, its `-wal` and
/// `-shm`, the HS256 secret and the token keys, each 0600 and each git-ignored; on PostgreSQL
/// it creates no file at all.
#[both_backends]
async fn every_file_a_server_start_creates_is_owner_only_and_git_ignored(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let served = match backend {
        Backend::Sqlite => serve_in(dir.path(), &[]).await,
        Backend::Postgres => {
            serve_in(
                dir.path(),
                &[
                    ("DATABASE_URL", &database.url),
                    ("CONSENTRY_AUTH_HS256_SECRET", &"s".repeat(32)),
                ],
            )
            .await
        }
    };
    let files = files_in(dir.path());
    drop(served);
    match backend {
        Backend::Sqlite => {
            for name in [
                "consentry.db",
                "consentry.db-wal",
                "consentry.db-shm",
                "consentry.db.hs256-secret",
                "consentry.db.token-keys",
            ] {
                assert!(files.contains_key(name), "{name} was created: {files:?}");
            }
        }
        Backend::Postgres => assert_eq!(files, BTreeMap::new(), "nothing is written to disk"),
    }
    for (name, mode) in &files {
        assert_eq!(*mode, 0o600, "{name} is {mode:o}");
        assert!(git_ignores(name), "{name} is not in .gitignore");
    }
    // `consentry demo` keeps its database and secrets under another name, beside the default.
    for suffix in [
        "",
        "-wal",
        "-shm",
        "-journal",
        ".hs256-secret",
        ".token-keys",
    ] {
        let name = format!("consentry-demo.db{suffix}");
        assert!(git_ignores(&name), "{name} is not in .gitignore");
    }
    // A secret is first written to a temporary file, which a crash could leave behind.
    assert!(git_ignores(".consentry-secret-0b6b7a8e"));
    assert!(!git_ignores("api/src/main.rs"), "the check itself works");
}

/// What the served GraphiQL script did with storage, run by Node.js against stand-ins for
/// the browser and GraphiQL (`fixtures/graphiql-storage.js`); `None` without Node.js outside
/// CI.
fn run_graphiql_script(script: &str, token: Option<&str>, browser: &str) -> Option<Value> {
    if Command::new("node").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "Node.js is needed to run GraphiQL's script (.ci/run installs it)"
        );
        eprintln!("skipped: Node.js is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.js");
    std::fs::write(&path, script).unwrap();
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("api/fixtures/graphiql-storage.js");
    let output = Command::new("node")
        .arg(harness)
        .arg(&path)
        .arg(token.unwrap_or("-"))
        .arg(browser)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

/// GraphiQL is given the tab's `sessionStorage` (or memory, where the browser refuses it)
/// for everything it keeps, the Headers tab with its token included; the demo's token goes
/// there too; `localStorage` is only cleared of what earlier versions left in it.
#[both_backends]
async fn graphiql_keeps_the_token_in_session_storage_never_in_local_storage(backend: Backend) {
    let Some(app) = consentry_tests::spawn_app(backend).await else {
        return;
    };
    let script = app
        .http
        .get(app.url("/graphiql/app.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !script.contains("localStorage.setItem") && !script.contains("localStorage.getItem"),
        "{script}"
    );
    for (token, browser) in [
        (None, "ordinary"),
        (Some("demo-token-abc"), "ordinary"),
        (Some("demo-token-abc"), "no-session-storage"),
    ] {
        let Some(run) = run_graphiql_script(&script, token, browser) else {
            return;
        };
        let what = format!("{token:?} in a browser with {browser} storage: {run}");
        let expected = if browser == "ordinary" {
            "sessionStorage"
        } else {
            "memory"
        };
        assert_eq!(run["storage"], expected, "{what}");
        assert_eq!(run["shouldPersistHeaders"], true, "{what}");
        for call in run["calls"].as_array().unwrap() {
            if call[0] == "localStorage" {
                assert_eq!(call[1], "removeItem", "{what}");
            }
        }
        assert_eq!(run["local"], json!({ "another-app": "kept" }), "{what}");
        if let Some(token) = token {
            assert!(
                run["headersAtStart"].as_str().unwrap().contains(token),
                "{what}"
            );
        }
        if browser == "ordinary" {
            assert!(
                run["session"]["graphiql:headers"]
                    .as_str()
                    .unwrap()
                    .contains("typed-into-the-headers-tab"),
                "{what}"
            );
        } else {
            assert_eq!(run["session"], json!({}), "{what}");
        }
    }
}
