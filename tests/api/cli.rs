//! The `consentry` command line, run as a real process.

use std::process::{Command, Output};

use consentry_tests::{Backend, TestDatabase, both_backends, start};
use serde_json::json;

fn consentry(database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_consentry-under-test"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env_remove("CONSENTRY_AUTH_HS256_SECRET")
        .env_remove("CONSENTRY_AUTH_JWKS_URL")
        .env_remove("CONSENTRY_AUTH_ISSUER")
        .env_remove("CONSENTRY_AUTH_AUDIENCE")
        .env_remove("RUST_LOG")
        .output()
        .expect("the consentry binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_printed_token_works_against_a_server_on_the_same_embedded_database() {
    // With no secret configured, `token` and `serve` share the one generated beside the database.
    let database = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let output = consentry(
        &database.url,
        &[
            "token",
            "--msp",
            "acme",
            "--role",
            "admin",
            "--sub",
            "pia@acme.example",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("registered MSP tenant \"acme\""),
        "{}",
        stderr(&output)
    );
    let token = stdout(&output).trim().to_owned();
    assert_eq!(
        token.split('.').count(),
        3,
        "a JWT on stdout, nothing else: {token}"
    );
    let secret_file = database
        .directory()
        .unwrap()
        .join("consentry.db.hs256-secret");
    assert!(
        secret_file.exists(),
        "the secret is kept beside the database"
    );

    let app = start(database, |s| {
        s.auth_hs256_secret = None;
        s.auth_issuer = None;
        s.auth_audience = None;
    })
    .await;
    let viewer = app
        .graphql(
            Some(&token),
            "{ viewer { subject roles msp { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(viewer.data()["viewer"]["msp"]["id"], "acme");
    assert_eq!(viewer.data()["viewer"]["roles"], json!(["ADMIN"]));
    assert_eq!(viewer.data()["viewer"]["subject"], "pia@acme.example");
    app.with_token(token).create_client("Contoso").await;
}

#[tokio::test]
async fn token_refuses_bad_arguments_with_advice() {
    let database = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let output = consentry(&database.url, &["token", "--msp", "acme"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--role"), "{}", stderr(&output));
    let output = consentry(
        &database.url,
        &["token", "--msp", "acme", "--role", "owner"],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("possible values"),
        "{}",
        stderr(&output)
    );
    let output = consentry(
        &database.url,
        &["token", "--msp", "has spaces", "--role", "admin"],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("not an MSP id"),
        "{}",
        stderr(&output)
    );
    let output = Command::new(env!("CARGO_BIN_EXE_consentry-under-test"))
        .args(["token", "--msp", "acme", "--role", "admin"])
        .env("DATABASE_URL", &database.url)
        .env("CONSENTRY_AUTH_JWKS_URL", "https://idp.example.com/jwks")
        .env("CONSENTRY_AUTH_ISSUER", "https://idp.example.com/")
        .env("CONSENTRY_AUTH_AUDIENCE", "consentry")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("identity provider"),
        "{}",
        stderr(&output)
    );
}

/// Checklist 99: `consentry token` mints no token the server would refuse for living too
/// long: a `--ttl` past CONSENTRY_AUTH_MAX_TOKEN_LIFETIME is refused, saying so, before
/// anything is registered; within it (or a raised setting), the token works.
#[both_backends]
async fn checklist_99_token_mints_nothing_longer_lived_than_the_server_accepts(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let secret = "a-shared-secret-for-the-cli-test-0123456789";
    let token = |ttl: &str, max: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_consentry-under-test"));
        command
            .args(["token", "--msp", "acme", "--role", "admin", "--ttl", ttl])
            .env("DATABASE_URL", &database.url)
            .env("CONSENTRY_AUTH_HS256_SECRET", secret)
            .env("CONSENTRY_AUTH_ISSUER", consentry_tests::ISSUER)
            .env("CONSENTRY_AUTH_AUDIENCE", consentry_tests::AUDIENCE)
            .env_remove("CONSENTRY_AUTH_JWKS_URL")
            .env_remove("RUST_LOG");
        match max {
            Some(max) => command.env("CONSENTRY_AUTH_MAX_TOKEN_LIFETIME", max),
            None => command.env_remove("CONSENTRY_AUTH_MAX_TOKEN_LIFETIME"),
        };
        command.output().unwrap()
    };
    let refused = token("30d", None);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--ttl 30d is longer than the 24h")
            && stderr(&refused).contains("CONSENTRY_AUTH_MAX_TOKEN_LIFETIME"),
        "{}",
        stderr(&refused)
    );
    assert!(stdout(&refused).is_empty());
    let day = token("24h", None);
    assert!(day.status.success(), "{}", stderr(&day));
    let two_days = token("2d", Some("48h"));
    assert!(two_days.status.success(), "{}", stderr(&two_days));

    let app = start(database, |s| {
        s.auth_hs256_secret = Some(secrecy::SecretString::from(secret));
    })
    .await;
    let who = "{ viewer { msp { id } } }";
    let answer = app.graphql(Some(stdout(&day).trim()), who, json!({})).await;
    assert_eq!(answer.data()["viewer"]["msp"]["id"], "acme");
    // A server with the default refuses what a raised setting minted.
    let answer = app
        .graphql(Some(stdout(&two_days).trim()), who, json!({}))
        .await;
    assert_eq!(answer.status, reqwest::StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn schema_prints_the_committed_sdl() {
    let output = consentry("sqlite::memory:", &["schema"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql"))
            .unwrap_or_default();
    assert_eq!(
        stdout(&output),
        committed,
        "regenerate with: cargo run -p api -- schema > schema.graphql"
    );
}

#[tokio::test]
async fn configuration_mistakes_are_explained() {
    let output = consentry("mysql://localhost/consentry", &["migrate"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("sqlite: (embedded) or postgres://"),
        "{}",
        stderr(&output)
    );
    let output = consentry(
        "sqlite:///no/such/directory/consentry.db?mode=rwc",
        &["migrate"],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("directory does not exist"),
        "{}",
        stderr(&output)
    );
    let output = Command::new(env!("CARGO_BIN_EXE_consentry-under-test"))
        .args([
            "migrate",
            "--database-url",
            "sqlite::memory:",
            "--public-url",
            "http://consentry.example.com",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("must use https"),
        "{}",
        stderr(&output)
    );
}

/// Issue 19: a database that cannot be opened is explained once, at once, with what to do —
/// an SQLite file the URL does not let SQLite create, nothing listening where PostgreSQL
/// should be — instead of the same driver error three times, or five silent seconds.
#[tokio::test]
async fn a_database_that_cannot_be_opened_is_explained_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing.db");
    let url = format!("sqlite://{}", file.display());
    let output = consentry(&url, &["migrate"]);
    assert!(!output.status.success());
    let said = stderr(&output);
    assert!(said.contains("?mode=rwc"), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(!said.contains("unable to open database file"), "{said}");
    assert!(!file.exists(), "nothing was created");

    // A port where nothing listens: bound, then closed again.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let output = consentry(
        &format!("postgres://consentry:secret@127.0.0.1:{port}/consentry"),
        &["migrate"],
    );
    assert!(!output.status.success());
    let said = stderr(&output);
    assert!(said.contains("Is PostgreSQL running"), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(!said.contains("secret"), "no password: {said}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "said at once, not after the pool's timeout: {:?}",
        started.elapsed()
    );
}

async fn migrate_is_idempotent(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let first = consentry(&database.url, &["migrate"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        stdout(&first)
            .lines()
            .filter(|l| l.starts_with("applied"))
            .count(),
        all_migrations(),
        "{}",
        stdout(&first)
    );
    let second = consentry(&database.url, &["migrate"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stderr(&second).contains(&format!("{} applied, 0 pending", all_migrations())),
        "{}",
        stderr(&second)
    );
    let status = consentry(&database.url, &["migrate", "--status"]);
    assert!(
        stdout(&status).contains("applied  m20261126_000007_create_audit_event"),
        "{}",
        stdout(&status)
    );
    let msp = consentry(
        &database.url,
        &["msp", "add", "northwind-msp", "--name", "Northwind IT"],
    );
    assert!(msp.status.success(), "{}", stderr(&msp));
    let list = consentry(&database.url, &["msp", "list"]);
    assert!(
        stdout(&list).contains("northwind-msp\tactive\tNorthwind IT"),
        "{}",
        stdout(&list)
    );
    // Checklist 99: `msp disable` and `msp enable`.
    let disabled = consentry(&database.url, &["msp", "disable", "northwind-msp"]);
    assert!(disabled.status.success(), "{}", stderr(&disabled));
    let list = consentry(&database.url, &["msp", "list"]);
    assert!(
        stdout(&list).contains("northwind-msp\tdisabled\tNorthwind IT"),
        "{}",
        stdout(&list)
    );
    let enabled = consentry(&database.url, &["msp", "enable", "northwind-msp"]);
    assert!(enabled.status.success(), "{}", stderr(&enabled));
    let list = consentry(&database.url, &["msp", "list"]);
    assert!(
        stdout(&list).contains("northwind-msp\tactive"),
        "{}",
        stdout(&list)
    );
    let unknown = consentry(&database.url, &["msp", "disable", "nobody"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("not registered"),
        "{}",
        stderr(&unknown)
    );
}

#[tokio::test]
async fn migrate_is_idempotent_on_sqlite() {
    migrate_is_idempotent(Backend::Sqlite).await;
}

#[tokio::test]
async fn migrate_is_idempotent_on_postgres() {
    migrate_is_idempotent(Backend::Postgres).await;
}

/// How many migrations the code has.
fn all_migrations() -> usize {
    use migration::MigratorTrait;
    migration::Migrator::migrations().len()
}
