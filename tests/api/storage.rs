//! Storage: migrations create every table with its constraints, and run idempotently.

use consentry_tests::{Backend, TestDatabase, both_backends, start};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

const TABLES: [&str; 7] = [
    "msp_tenant",
    "client",
    "graph_api_tile",
    "oauth_flow",
    "delegated_consent",
    "service_principal_request",
    "audit_event",
];

async fn count(db: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[both_backends]
async fn a_second_start_on_the_same_database_is_a_no_op(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let first = start(database, |_| {}).await;
    for table in TABLES {
        count(&first.db, &format!("SELECT COUNT(*) FROM {table}")).await;
    }
    let migrations = count(&first.db, "SELECT COUNT(*) FROM seaql_migrations").await;
    assert_eq!(
        migrations,
        i64::try_from(<migration::Migrator as migration::MigratorTrait>::migrations().len())
            .unwrap()
    );
    first
        .caller("msp-a", &["admin"])
        .await
        .create_client("Survivor")
        .await;

    // Restart on the same database: nothing is re-applied and the data is still there.
    let database = first.stop().await;
    let second = start(database, |_| {}).await;
    assert_eq!(
        count(&second.db, "SELECT COUNT(*) FROM seaql_migrations").await,
        migrations
    );
    let caller = second.caller("msp-a", &["admin"]).await;
    let list = caller
        .run(
            "{ clients { edges { node { name graphApiTile { status } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        list.data()["clients"]["edges"][0]["node"]["name"],
        "Survivor"
    );
}

#[both_backends]
async fn foreign_keys_and_unique_indexes_are_enforced_by_the_database(backend: Backend) {
    use entity::client;
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let app = start(database, |_| {}).await;
    let now = chrono::Utc::now();
    // A client of an MSP that does not exist.
    let orphan = client::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        msp_id: Set("no-such-msp".into()),
        name: Set("x".into()),
        name_key: Set("x".into()),
        domain: Set(None),
        azure_tenant_id: Set(None),
        created_by: Set("t".into()),
        created_at: Set(now),
        updated_at: Set(now),
    };
    assert!(
        orphan.insert(&app.db).await.is_err(),
        "client.msp_id must reference msp_tenant"
    );
    // A tile of a client that does not exist.
    let tile = api::initial_tile(uuid::Uuid::now_v7(), now);
    assert!(
        tile.insert(&app.db).await.is_err(),
        "graph_api_tile.client_id must reference client"
    );
}
