//! The Client API: create, read, list, filter, page, change and remove clients.

use consentry_tests::{Caller, TestApp, both_backends};
use entity::enums::GraphApiStatus;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};

const CREATE: &str = "mutation($input: CreateClientInput!) {
  createClient(input: $input) {
    id name domain azureTenantId createdAt
    graphApiTile { id status problem { code } availableActions grantedPermissions missingPermissions authorisedAt }
    delegatedConsents { userPrincipalName }
    servicePrincipalRequests { appId }
  }
}";

const UPDATE: &str = "mutation($id: ID!, $input: UpdateClientInput!) {
  updateClient(id: $id, input: $input) { id name domain azureTenantId graphApiTile { status } }
}";

const LIST: &str = "query($first: Int, $after: String, $filter: ClientFilterInput) {
  clients(first: $first, after: $after, filter: $filter) {
    edges { cursor node { id name graphApiTile { status } } }
    pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}";

async fn create(caller: &Caller<'_>, input: Value) -> consentry_tests::GraphQLResponse {
    caller.run(CREATE, json!({ "input": input })).await
}

fn names(response: &consentry_tests::GraphQLResponse) -> Vec<String> {
    response.data()["clients"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Sets a client's tile status directly in the database (flows that do it come later).
async fn set_tile_status(app: &TestApp, client_gid: &str, status: GraphApiStatus) {
    let id = api::GlobalId::expect("id", client_gid, api::IdKind::Client).unwrap();
    let tile = entity::graph_api_tile::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let mut tile: entity::graph_api_tile::ActiveModel = tile.into();
    tile.status = Set(status);
    tile.update(&app.db).await.unwrap();
}

#[both_backends]
async fn a_new_client_has_a_tile_awaiting_authorisation_and_nothing_else(app: TestApp) {
    let admin = app.caller("msp-a", &["admin"]).await;
    let response = create(
        &admin,
        json!({
            "name": "  Contoso Ltd  ",
            "domain": "Contoso.COM",
            "azureTenantId": "72F988BF-86F1-41AF-91AB-2D7CD011DB47",
        }),
    )
    .await;
    let client = &response.data()["createClient"];
    assert_eq!(client["name"], "Contoso Ltd", "the name is trimmed");
    assert_eq!(client["domain"], "contoso.com");
    assert_eq!(
        client["azureTenantId"],
        "72f988bf-86f1-41af-91ab-2d7cd011db47"
    );
    let tile = &client["graphApiTile"];
    assert_eq!(tile["status"], "NOT_AUTHORISED");
    assert_eq!(tile["availableActions"], json!(["AUTHORISE"]));
    assert_eq!(tile["problem"], Value::Null);
    assert_eq!(tile["grantedPermissions"], json!([]));
    assert_eq!(tile["authorisedAt"], Value::Null);
    assert_eq!(client["delegatedConsents"], json!([]));
    assert_eq!(client["servicePrincipalRequests"], json!([]));

    // It reads back the same, by id and through node().
    let id = client["id"].as_str().unwrap();
    let by_id = admin
        .run(
            "query($id: ID!) { client(id: $id) { name graphApiTile { status } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(by_id.data()["client"]["name"], "Contoso Ltd");
    let tile_id = tile["id"].as_str().unwrap();
    let node = admin.run(
        "query($a: ID!, $b: ID!) { a: node(id: $a) { id ... on Client { name } } b: node(id: $b) { id ... on GraphApiTile { status } } }",
        json!({ "a": id, "b": tile_id }),
    ).await;
    assert_eq!(node.data()["a"]["name"], "Contoso Ltd");
    assert_eq!(node.data()["b"]["status"], "NOT_AUTHORISED");
}

#[both_backends]
async fn invalid_input_is_refused_with_a_field_and_a_clear_message(app: TestApp) {
    let admin = app.caller("msp-a", &["admin"]).await;
    let cases = [
        (json!({ "name": "   " }), "input.name", "required"),
        (
            json!({ "name": "x".repeat(201) }),
            "input.name",
            "201 characters",
        ),
        (
            json!({ "name": "Tab\there" }),
            "input.name",
            "control characters",
        ),
        (
            json!({ "name": "A", "domain": "not a domain" }),
            "input.domain",
            "not a valid domain",
        ),
        (
            json!({ "name": "A", "domain": "contoso" }),
            "input.domain",
            "two labels",
        ),
        (
            json!({ "name": "A", "azureTenantId": "contoso.com" }),
            "input.azureTenantId",
            "GUID",
        ),
    ];
    for (input, field, hint) in cases {
        let response = create(&admin, input.clone()).await;
        assert_eq!(response.error_code(), "BAD_USER_INPUT", "{input}");
        assert_eq!(
            response.errors()[0]["extensions"]["field"],
            field,
            "{input}"
        );
        assert!(
            response.error_message().contains(hint),
            "{:?} should mention {hint:?}",
            response.error_message()
        );
    }
    // 200 characters is fine; nothing invalid was stored.
    create(&admin, json!({ "name": "y".repeat(200) }))
        .await
        .data();
    let list = admin.run(LIST, json!({})).await;
    assert_eq!(names(&list).len(), 1);
}

#[both_backends]
async fn a_missing_name_is_a_validation_error(app: TestApp) {
    let admin = app.caller("msp-a", &["admin"]).await;
    let response = create(&admin, json!({ "domain": "contoso.com" })).await;
    assert_eq!(response.error_code(), "GRAPHQL_VALIDATION_FAILED");
    assert!(
        response.error_message().contains("name"),
        "{}",
        response.error_message()
    );
}

#[both_backends]
async fn duplicate_names_and_tenants_conflict_within_an_msp_only(app: TestApp) {
    let a = app.caller("msp-a", &["admin"]).await;
    let b = app.caller("msp-b", &["admin"]).await;
    let tenant = "11111111-2222-3333-4444-555555555555";
    create(&a, json!({ "name": "Fabrikam", "azureTenantId": tenant }))
        .await
        .data();

    let response = create(&a, json!({ "name": "FABRIKAM" })).await;
    assert_eq!(response.error_code(), "CONFLICT");
    assert_eq!(response.errors()[0]["extensions"]["field"], "input.name");
    assert!(
        response.error_message().contains("already exists"),
        "{}",
        response.error_message()
    );

    let response = create(&a, json!({ "name": "Other", "azureTenantId": tenant })).await;
    assert_eq!(response.error_code(), "CONFLICT");
    assert_eq!(
        response.errors()[0]["extensions"]["field"],
        "input.azureTenantId"
    );

    // Another MSP may manage the same company and tenant (co-management).
    create(&b, json!({ "name": "Fabrikam", "azureTenantId": tenant }))
        .await
        .data();
}

#[both_backends]
async fn clients_page_forward_in_name_order(app: TestApp) {
    let admin = app.caller("msp-a", &["admin"]).await;
    for name in [
        "delta", "Alpha", "charlie", "Echo", "bravo", "golf", "Foxtrot",
    ] {
        admin.create_client(name).await;
    }
    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let response = admin.run(LIST, json!({ "first": 3, "after": after })).await;
        seen.extend(names(&response));
        pages += 1;
        let info = &response.data()["clients"]["pageInfo"];
        assert_eq!(info["hasPreviousPage"], false);
        if info["hasNextPage"] == false {
            break;
        }
        after = info["endCursor"].clone();
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        [
            "Alpha", "bravo", "charlie", "delta", "Echo", "Foxtrot", "golf"
        ]
    );
    let count = admin
        .run("{ clients(first: 1) { totalCount } }", json!({}))
        .await;
    assert_eq!(count.data()["clients"]["totalCount"], 7);
}

#[both_backends]
async fn page_size_and_cursor_are_validated(app: TestApp) {
    let admin = app.caller("msp-a", &["admin"]).await;
    for first in [0, -1, 101] {
        let response = admin.run(LIST, json!({ "first": first })).await;
        assert_eq!(response.error_code(), "BAD_USER_INPUT", "first: {first}");
        assert!(response.error_message().contains("between 1 and 100"));
    }
    let response = admin.run(LIST, json!({ "after": "garbage" })).await;
    assert_eq!(response.error_code(), "BAD_USER_INPUT");
    assert!(response.error_message().contains("endCursor"));
}

#[both_backends]
async fn clients_filter_by_tile_status_and_name(app: TestApp) {
    let admin = app.caller("msp-a", &["admin"]).await;
    let contoso = admin.create_client("Contoso").await;
    admin.create_client("Contoso East").await;
    admin.create_client("Northwind").await;
    admin.create_client("100% Cotton_Co").await;
    set_tile_status(&app, &contoso, GraphApiStatus::Failed).await;

    let failed = admin
        .run(LIST, json!({ "filter": { "status": ["FAILED"] } }))
        .await;
    assert_eq!(names(&failed), ["Contoso"]);
    let either = admin
        .run(
            LIST,
            json!({ "filter": { "status": ["FAILED", "NOT_AUTHORISED"] } }),
        )
        .await;
    assert_eq!(names(&either).len(), 4);

    let search = admin
        .run(LIST, json!({ "filter": { "search": "CONTOSO" } }))
        .await;
    assert_eq!(names(&search), ["Contoso", "Contoso East"]);
    let both = admin
        .run(
            LIST,
            json!({ "filter": { "search": "contoso", "status": ["NOT_AUTHORISED"] } }),
        )
        .await;
    assert_eq!(names(&both), ["Contoso East"]);
    // LIKE wildcards in the search text are literal.
    let literal = admin
        .run(LIST, json!({ "filter": { "search": "0% C" } }))
        .await;
    assert_eq!(names(&literal), ["100% Cotton_Co"]);
    let underscore = admin
        .run(LIST, json!({ "filter": { "search": "n_c" } }))
        .await;
    assert_eq!(names(&underscore), ["100% Cotton_Co"]);
    let count = admin
        .run(
            "{ clients(filter: { search: \"contoso\" }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(count.data()["clients"]["totalCount"], 2);
}

/// The counts beside a dashboard's status filter: per status (zeros too), narrowed by the
/// search but not by the status filter, and never counting another MSP's clients — MSP B
/// asking for MSP A's counts is refused, and support staff see one MSP's when they name it.
#[both_backends]
async fn status_counts_are_per_status_and_per_msp(app: TestApp) {
    const COUNTS: &str = "query($filter: ClientFilterInput) {
        clients(first: 1, filter: $filter) { totalCount statusCounts { status count } } }";
    let counts = |response: consentry_tests::GraphQLResponse| -> Vec<(String, u64)> {
        response.data()["clients"]["statusCounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["status"].as_str().unwrap().to_owned(),
                    c["count"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let a = app.caller("msp-a", &["viewer"]).await;
    let admin_a = app.caller("msp-a", &["admin"]).await;
    let contoso = admin_a.create_client("Contoso").await;
    let east = admin_a.create_client("Contoso East").await;
    admin_a.create_client("Northwind").await;
    set_tile_status(&app, &contoso, GraphApiStatus::Failed).await;
    set_tile_status(&app, &east, GraphApiStatus::Authorised).await;
    let b = app.caller("msp-b", &["admin"]).await;
    let fabrikam = b.create_client("Fabrikam").await;
    set_tile_status(&app, &fabrikam, GraphApiStatus::Failed).await;

    let all = [
        "NOT_AUTHORISED",
        "AWAITING_CONSENT",
        "VERIFYING",
        "AUTHORISED",
        "FAILED",
        "REVOKED",
    ];
    let expect = |pairs: &[(&str, u64)]| -> Vec<(String, u64)> {
        all.iter()
            .map(|s| {
                let n = pairs.iter().find(|(p, _)| p == s).map_or(0, |(_, n)| *n);
                ((*s).to_owned(), n)
            })
            .collect()
    };
    assert_eq!(
        counts(a.run(COUNTS, json!({})).await),
        expect(&[("NOT_AUTHORISED", 1), ("AUTHORISED", 1), ("FAILED", 1)])
    );
    // The search narrows the counts; the status filter narrows only the list.
    let contosos = a
        .run(
            COUNTS,
            json!({ "filter": { "search": "contoso", "status": ["FAILED"] } }),
        )
        .await;
    assert_eq!(contosos.data()["clients"]["totalCount"], 1);
    assert_eq!(
        counts(contosos),
        expect(&[("AUTHORISED", 1), ("FAILED", 1)])
    );
    // MSP B counts its own client only, and cannot ask for MSP A's.
    assert_eq!(
        counts(b.run(COUNTS, json!({})).await),
        expect(&[("FAILED", 1)])
    );
    let refused = b
        .run(COUNTS, json!({ "filter": { "mspId": "msp-a" } }))
        .await;
    assert_eq!(refused.error_code(), "BAD_USER_INPUT", "{refused:?}");
    // Support staff count one MSP when they name it, every MSP otherwise.
    let support = app.caller(consentry_tests::SUPPORT_MSP, &["support"]).await;
    assert_eq!(
        counts(
            support
                .run(COUNTS, json!({ "filter": { "mspId": "msp-b" } }))
                .await
        ),
        expect(&[("FAILED", 1)])
    );
    assert_eq!(
        counts(support.run(COUNTS, json!({})).await),
        expect(&[("NOT_AUTHORISED", 1), ("AUTHORISED", 1), ("FAILED", 2)])
    );
}

/// Issue 19: audit entries written before problem codes were stored as the schema spells
/// them (`LinkExpired`) read as the API spells them (`LINK_EXPIRED`); other details are
/// read as they were written.
#[both_backends]
async fn older_audit_entries_read_with_the_schemas_spelling(app: TestApp) {
    let admin = app.caller("msp-a", &["admin"]).await;
    let client = admin.create_client("Contoso").await;
    let id = api::GlobalId::expect("id", &client, api::IdKind::Client).unwrap();
    for details in [
        json!({ "to": "FAILED", "problem": { "code": "LinkExpired", "aadsts": null } }),
        json!({ "to": "FAILED", "problem": "PermissionsMissing", "note": "KeepMe" }),
    ] {
        entity::audit_event::ActiveModel {
            msp_id: Set("msp-a".to_owned()),
            client_id: Set(Some(id)),
            actor_subject: Set("sweeper".to_owned()),
            actor_roles: Set(entity::StringList(vec![])),
            actor_msp_id: Set("msp-a".to_owned()),
            action: Set(entity::enums::AuditAction::GraphApiStatusChanged),
            details: Set(details),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        }
        .insert(&app.db)
        .await
        .unwrap();
    }
    let read = admin
        .run(
            "query($id: ID!) { client(id: $id) { auditLog(first: 10) { edges { node { details } } } } }",
            json!({ "id": client }),
        )
        .await;
    let details: Vec<Value> = read.data()["client"]["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["details"].clone())
        .filter(|d| d["to"] == "FAILED")
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details
            .iter()
            .any(|d| d["problem"]["code"] == "LINK_EXPIRED"),
        "{details:?}"
    );
    let spelled = details
        .iter()
        .find(|d| d["problem"] == "PERMISSIONS_MISSING")
        .unwrap_or_else(|| panic!("{details:?}"));
    assert_eq!(spelled["note"], "KeepMe");
}

#[both_backends]
async fn updating_a_client_changes_only_what_is_given(app: TestApp) {
    let admin = app.caller("msp-a", &["admin"]).await;
    let id = create(
        &admin,
        json!({ "name": "Tailspin", "domain": "tailspin.com" }),
    )
    .await
    .data()["createClient"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let renamed = admin
        .run(
            UPDATE,
            json!({ "id": id, "input": { "name": "Tailspin Toys" } }),
        )
        .await;
    assert_eq!(renamed.data()["updateClient"]["name"], "Tailspin Toys");
    assert_eq!(renamed.data()["updateClient"]["domain"], "tailspin.com");

    let cleared = admin.run(UPDATE, json!({ "id": id, "input": { "domain": null, "azureTenantId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee" } })).await;
    assert_eq!(cleared.data()["updateClient"]["domain"], Value::Null);
    assert_eq!(
        cleared.data()["updateClient"]["azureTenantId"],
        "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    );

    let response = admin
        .run(UPDATE, json!({ "id": id, "input": { "name": null } }))
        .await;
    assert_eq!(response.error_code(), "BAD_USER_INPUT");
    let response = admin
        .run(
            UPDATE,
            json!({ "id": id, "input": { "domain": "bad domain" } }),
        )
        .await;
    assert_eq!(response.error_code(), "BAD_USER_INPUT");

    admin.create_client("Wingtip").await;
    let response = admin
        .run(UPDATE, json!({ "id": id, "input": { "name": "wingtip" } }))
        .await;
    assert_eq!(response.error_code(), "CONFLICT");

    let log = admin.run(
        "query($id: ID!) { client(id: $id) { auditLog { edges { node { action actorSubject details } } } } }",
        json!({ "id": id }),
    ).await;
    let actions: Vec<Value> = log.data()["client"]["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["action"].clone())
        .collect();
    assert_eq!(
        actions,
        [
            json!("CLIENT_UPDATED"),
            json!("CLIENT_UPDATED"),
            json!("CLIENT_CREATED")
        ]
    );
    let last = &log.data()["client"]["auditLog"]["edges"][0]["node"];
    assert_eq!(last["actorSubject"], "user@msp.example");
    assert_eq!(last["details"]["changes"]["domain"]["from"], "tailspin.com");
}

#[both_backends]
async fn a_new_tenant_id_sends_an_authorised_tile_back_to_not_authorised(app: TestApp) {
    let admin = app.caller("msp-a", &["admin"]).await;
    let id = admin.create_client("Adatum").await;
    set_tile_status(&app, &id, GraphApiStatus::Authorised).await;
    let response = admin
        .run(
            UPDATE,
            json!({ "id": id, "input": { "domain": "adatum.com" } }),
        )
        .await;
    assert_eq!(
        response.data()["updateClient"]["graphApiTile"]["status"],
        "AUTHORISED",
        "a new domain keeps the consent"
    );
    let response = admin.run(UPDATE, json!({ "id": id, "input": { "azureTenantId": "99999999-8888-7777-6666-555555555555" } })).await;
    assert_eq!(
        response.data()["updateClient"]["graphApiTile"]["status"],
        "NOT_AUTHORISED"
    );
}

/// Checklist 82: offboarding a client deletes its stored (encrypted) refresh tokens.
#[both_backends]
async fn deleting_a_client_removes_everything_but_its_audit_trail(app: TestApp) {
    use entity::{audit_event, delegated_consent, graph_api_tile, oauth_flow};
    use sea_orm::{ColumnTrait, PaginatorTrait, QueryFilter};
    let admin = app.caller("msp-a", &["admin"]).await;
    let gid = admin.create_client("Litware").await;
    let id = api::GlobalId::expect("id", &gid, api::IdKind::Client).unwrap();
    let now = chrono::Utc::now();
    // A pending flow and a consent with a stored (encrypted) token, as later flows write them.
    oauth_flow::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        msp_id: Set("msp-a".into()),
        client_id: Set(id),
        kind: Set(entity::enums::OAuthFlowKind::AdminConsent),
        state_hash: Set("ab".repeat(32)),
        sealed_pkce_verifier: Set(None),
        pkce_verifier_key_id: Set(None),
        nonce_hash: Set(None),
        expected_tenant: Set(None),
        requested_permissions: Set(None),
        service_principal_request_id: Set(None),
        status: Set(entity::enums::OAuthFlowStatus::Pending),
        outcome: Set(None),
        created_by: Set("t".into()),
        created_at: Set(now),
        expires_at: Set(now),
        completed_at: Set(None),
        claimed_at: Set(None),
        consent_state_hash: Set(None),
        tenant_proof: Set(None),
    }
    .insert(&app.db)
    .await
    .unwrap();
    delegated_consent::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        msp_id: Set("msp-a".into()),
        client_id: Set(id),
        tenant_id: Set("t".into()),
        user_object_id: Set("u".into()),
        user_principal_name: Set("admin@litware.com".into()),
        display_name: Set(None),
        permissions: Set(entity::StringList(vec!["MAIL_SEND".into()])),
        missing_permissions: Set(Default::default()),
        status: Set(entity::enums::DelegatedConsentStatus::Active),
        status_reason: Set(None),
        refresh_token: Set(Some(vec![1, 2, 3])),
        refresh_token_key_id: Set(Some("k1".into())),
        granted_at: Set(now),
        last_refreshed_at: Set(None),
        next_refresh_at: Set(None),
        granted_by: Set("t".into()),
        created_at: Set(now),
        updated_at: Set(now),
        id_token_issuer: Set(None),
        id_token_subject: Set(None),
        refreshing_until: Set(None),
    }
    .insert(&app.db)
    .await
    .unwrap();
    let consents = admin.run("query($id: ID!) { client(id: $id) { delegatedConsents { userPrincipalName status permissions } } }", json!({ "id": gid })).await;
    assert_eq!(
        consents.data()["client"]["delegatedConsents"][0]["permissions"],
        json!(["MAIL_SEND"])
    );

    let deleted = admin
        .run(
            "mutation($id: ID!) { deleteClient(id: $id) { deletedClientId } }",
            json!({ "id": gid }),
        )
        .await;
    assert_eq!(
        deleted.data()["deleteClient"]["deletedClientId"],
        gid.as_str()
    );

    assert!(
        entity::client::Entity::find_by_id(id)
            .one(&app.db)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        graph_api_tile::Entity::find_by_id(id)
            .one(&app.db)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        oauth_flow::Entity::find()
            .filter(oauth_flow::Column::ClientId.eq(id))
            .count(&app.db)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        delegated_consent::Entity::find()
            .filter(delegated_consent::Column::ClientId.eq(id))
            .count(&app.db)
            .await
            .unwrap(),
        0
    );
    let trail: Vec<_> = audit_event::Entity::find()
        .filter(audit_event::Column::ClientId.eq(id))
        .all(&app.db)
        .await
        .unwrap();
    let actions: Vec<_> = trail.iter().map(|e| e.action).collect();
    assert!(actions.contains(&entity::enums::AuditAction::ClientCreated));
    assert!(actions.contains(&entity::enums::AuditAction::ClientDeleted));
    let deletion = trail
        .iter()
        .find(|e| e.action == entity::enums::AuditAction::ClientDeleted)
        .unwrap();
    assert_eq!(deletion.details["delegatedConsentsRemoved"], 1);

    let again = admin
        .run(
            "query($id: ID!) { client(id: $id) { name } }",
            json!({ "id": gid }),
        )
        .await;
    assert_eq!(again.error_code(), "NOT_FOUND");
    let again = admin
        .run(
            "mutation($id: ID!) { deleteClient(id: $id) { deletedClientId } }",
            json!({ "id": gid }),
        )
        .await;
    assert_eq!(again.error_code(), "NOT_FOUND");
}

#[both_backends]
async fn malformed_ids_are_bad_input(app: TestApp) {
    let admin = app.caller("msp-a", &["admin"]).await;
    let response = admin
        .run("{ client(id: \"nope\") { name } }", json!({}))
        .await;
    assert_eq!(response.error_code(), "BAD_USER_INPUT");
    let tile = admin.create_client("X").await;
    let tile_id = admin
        .run(
            "query($id: ID!) { client(id: $id) { graphApiTile { id } } }",
            json!({ "id": tile }),
        )
        .await
        .data()["client"]["graphApiTile"]["id"]
        .clone();
    let response = admin
        .run(
            "query($id: ID!) { client(id: $id) { name } }",
            json!({ "id": tile_id }),
        )
        .await;
    assert_eq!(response.error_code(), "BAD_USER_INPUT");
    assert!(
        response.error_message().contains("GraphApiTile"),
        "{}",
        response.error_message()
    );
}

#[both_backends]
async fn a_technician_can_change_clients(app: TestApp) {
    let technician = app.caller("msp-a", &["technician"]).await;
    let id = technician.create_client("Woodgrove").await;
    technician
        .run(
            UPDATE,
            json!({ "id": id, "input": { "domain": "woodgrove.com" } }),
        )
        .await
        .data();
    technician
        .run(
            "mutation($id: ID!) { deleteClient(id: $id) { deletedClientId } }",
            json!({ "id": id }),
        )
        .await
        .data();
}
