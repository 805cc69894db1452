//! MSP isolation and roles: another MSP's ids answer exactly like ids that do not exist;
//! viewers and support staff cannot change anything; support reads everything, audited
//! (checklist 50, 51).

use consentry_tests::{TestApp, both_backends};
use entity::{audit_event, enums::AuditAction};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

const BY_ID: &str = "query($id: ID!) { client(id: $id) { name } }";
const NODE: &str = "query($id: ID!) { node(id: $id) { id } }";
const UPDATE: &str =
    "mutation($id: ID!) { updateClient(id: $id, input: { name: \"Hijacked\" }) { name } }";
const DELETE: &str = "mutation($id: ID!) { deleteClient(id: $id) { deletedClientId } }";
const LIST: &str = "{ clients { edges { node { name mspId } } } }";

fn names(data: &Value) -> Vec<String> {
    data["clients"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A client id that exists nowhere.
fn unknown_client_id() -> String {
    api::GlobalId::new(api::IdKind::Client, uuid::Uuid::now_v7())
        .encode()
        .0
}

/// The error with the id replaced, so answers for different ids can be compared.
fn shape(response: &consentry_tests::GraphQLResponse, id: &str) -> String {
    format!(
        "{} {} {}",
        response.status,
        response.error_code(),
        response.error_message().replace(id, "ID")
    )
}

/// Checklist 50: another MSP's client reads exactly like one that does not exist.
#[both_backends]
async fn another_msps_client_is_indistinguishable_from_a_missing_one(app: TestApp) {
    let a = app.caller("msp-a", &["admin"]).await;
    let b = app.caller("msp-b", &["admin"]).await;
    let secret = a.create_client("A's client").await;
    let missing = unknown_client_id();
    for query in [BY_ID, NODE, UPDATE, DELETE] {
        let foreign = b.run(query, json!({ "id": secret })).await;
        let absent = b.run(query, json!({ "id": missing })).await;
        assert_eq!(foreign.error_code(), "NOT_FOUND", "{query}");
        assert_eq!(
            shape(&foreign, &secret),
            shape(&absent, &missing),
            "{query}"
        );
        assert!(!foreign.body.to_string().contains("A's client"));
    }
    assert!(names(b.run(LIST, json!({})).await.data()).is_empty());
    // Nothing changed for A.
    assert_eq!(
        a.run(BY_ID, json!({ "id": secret })).await.data()["client"]["name"],
        "A's client"
    );
}

/// Checklist 50: nor through `node(id:)`.
#[both_backends]
async fn another_msps_tile_is_not_found_through_node(app: TestApp) {
    let a = app.caller("msp-a", &["admin"]).await;
    let b = app.caller("msp-b", &["admin"]).await;
    let id = a.create_client("A").await;
    let tile = a
        .run(
            "query($id: ID!) { client(id: $id) { graphApiTile { id } } }",
            json!({ "id": id }),
        )
        .await
        .data()["client"]["graphApiTile"]["id"]
        .clone();
    let response = b.run(NODE, json!({ "id": tile })).await;
    assert_eq!(response.error_code(), "NOT_FOUND");
}

#[both_backends]
async fn viewers_and_support_cannot_change_anything(app: TestApp) {
    let admin = app.caller("msp-a", &["admin"]).await;
    let id = admin.create_client("Keep me").await;
    // Support staff belong to the operator's own tenant (CONSENTRY_SUPPORT_MSP).
    for (msp, roles) in [
        ("msp-a", &["viewer"][..]),
        ("msp-platform", &["support"][..]),
        ("msp-platform", &["viewer", "support"][..]),
    ] {
        let caller = app.caller(msp, roles).await;
        let create = caller
            .run(
                "mutation { createClient(input: { name: \"New\" }) { id } }",
                json!({}),
            )
            .await;
        assert_eq!(create.error_code(), "FORBIDDEN", "{roles:?}");
        assert!(
            create.error_message().contains("read-only"),
            "{}",
            create.error_message()
        );
        for mutation in [UPDATE, DELETE] {
            assert_eq!(
                caller.run(mutation, json!({ "id": id })).await.error_code(),
                "FORBIDDEN",
                "{roles:?} {mutation}"
            );
            // Refused before any lookup: an unknown or malformed id gets the same answer.
            assert_eq!(
                caller
                    .run(mutation, json!({ "id": unknown_client_id() }))
                    .await
                    .error_code(),
                "FORBIDDEN"
            );
            assert_eq!(
                caller
                    .run(mutation, json!({ "id": "garbage" }))
                    .await
                    .error_code(),
                "FORBIDDEN"
            );
        }
        // They can read.
        assert_eq!(names(caller.run(LIST, json!({})).await.data()), ["Keep me"]);
    }
    assert_eq!(names(admin.run(LIST, json!({})).await.data()), ["Keep me"]);
}

/// Checklist 51: support staff read across MSPs with an explicit role, read-only, and
/// every read is audited.
#[both_backends]
async fn support_reads_every_msp_and_each_read_is_audited(app: TestApp) {
    let a = app.caller("msp-a", &["admin"]).await;
    let b = app.caller("msp-b", &["admin"]).await;
    let a_client = a.create_client("Alpha of A").await;
    b.create_client("Bravo of B").await;
    let support = app.caller("msp-platform", &["support"]).await;

    let all = support.run(LIST, json!({})).await;
    assert_eq!(names(all.data()), ["Alpha of A", "Bravo of B"]);
    let only_b = support
        .run(
            "{ clients(filter: { mspId: \"msp-b\" }) { edges { node { name } } } }",
            json!({}),
        )
        .await;
    assert_eq!(names(only_b.data()), ["Bravo of B"]);
    let one = support.run(BY_ID, json!({ "id": a_client })).await;
    assert_eq!(one.data()["client"]["name"], "Alpha of A");

    let id = api::GlobalId::expect("id", &a_client, api::IdKind::Client).unwrap();
    let reads = audit_event::Entity::find()
        .filter(audit_event::Column::ClientId.eq(id))
        .filter(audit_event::Column::Action.eq(AuditAction::SupportRead))
        .all(&app.db)
        .await
        .unwrap();
    assert_eq!(reads.len(), 2, "the list read and the by-id read");
    assert!(
        reads
            .iter()
            .all(|e| e.actor_msp_id == "msp-platform" && e.msp_id == "msp-a")
    );
    // The MSP sees in its own audit log that support looked.
    let log = a.run("query($id: ID!) { client(id: $id) { auditLog { edges { node { action actorMspId } } } } }", json!({ "id": a_client })).await;
    assert_eq!(
        log.data()["client"]["auditLog"]["edges"][0]["node"]["action"],
        "SUPPORT_READ"
    );
    assert_eq!(
        log.data()["client"]["auditLog"]["edges"][0]["node"]["actorMspId"],
        "msp-platform"
    );

    // Support's own MSP is not audited as a cross-MSP read; writes stay forbidden.
    let update = support.run(UPDATE, json!({ "id": a_client })).await;
    assert_eq!(update.error_code(), "FORBIDDEN");
}

#[both_backends]
async fn support_with_a_write_role_writes_only_its_own_msp(app: TestApp) {
    let a = app.caller("msp-a", &["admin"]).await;
    let id = a.create_client("A").await;
    let support_admin = app.caller("msp-platform", &["admin", "support"]).await;
    let response = support_admin.run(UPDATE, json!({ "id": id })).await;
    assert_eq!(response.error_code(), "FORBIDDEN");
    assert!(response.error_message().contains("read-only"));
    support_admin.create_client("Platform's own").await;
}
