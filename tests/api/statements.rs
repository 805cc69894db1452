//! No N+1 (issue 8, target 1): the dashboard query runs the same small number of SQL
//! statements whatever the page size — counted by the server itself per operation
//! (`consentry_graphql_operation_db_statements`), authentication included.

use consentry_tests::{TestApp, both_backends};
use entity::{StringList, delegated_consent, enums::DelegatedConsentStatus};
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use serde_json::json;

const DASHBOARD: &str = "{ clients(first: FIRST) { edges { node { name graphApiTile { status problem { code } availableActions } delegatedConsents { userPrincipalName status } } } } }";

/// The statements the named operation ran (its only run), from `/metrics`.
async fn statements_of(app: &TestApp, operation: &str) -> f64 {
    let series = format!(
        "consentry_graphql_operation_db_statements_sum{{operation=\"{operation}\",kind=\"query\"}}"
    );
    app.metric(&series)
        .await
        .unwrap_or_else(|| panic!("no statement count for {operation}"))
}

#[both_backends]
async fn the_dashboard_runs_a_constant_number_of_statements_whatever_the_page_size(app: TestApp) {
    let caller = app.caller("msp-a", &["admin"]).await;
    for i in 0..100 {
        let gid = caller.create_client(&format!("Client {i:03}")).await;
        let id = api::GlobalId::expect("id", &gid, api::IdKind::Client).unwrap();
        for user in 0..2 {
            let now = chrono::Utc::now();
            delegated_consent::ActiveModel {
                id: Set(uuid::Uuid::new_v4()),
                msp_id: Set("msp-a".into()),
                client_id: Set(id),
                tenant_id: Set("t".into()),
                user_object_id: Set(format!("user-{user}")),
                user_principal_name: Set(format!("user{user}@client{i}.example")),
                display_name: Set(None),
                permissions: Set(StringList(vec!["MAIL_SEND".into()])),
                missing_permissions: Set(StringList::default()),
                status: Set(DelegatedConsentStatus::Active),
                status_reason: Set(None),
                refresh_token: Set(None),
                refresh_token_key_id: Set(None),
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
        }
    }
    for first in [1, 10, 100] {
        let query = format!(
            "query Dashboard{first} {}",
            DASHBOARD.replace("FIRST", &first.to_string())
        );
        let response = caller.run(&query, json!({})).await;
        let edges = response.data()["clients"]["edges"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(edges.len(), first);
        assert!(
            edges
                .iter()
                .all(|e| e["node"]["delegatedConsents"].as_array().unwrap().len() == 2)
        );
    }
    let counts = [
        statements_of(&app, "Dashboard1").await,
        statements_of(&app, "Dashboard10").await,
        statements_of(&app, "Dashboard100").await,
    ];
    assert!(
        counts.iter().all(|c| *c == counts[0]),
        "constant: {counts:?}"
    );
    assert!(counts[0] <= 4.0, "at most 4 statements: {counts:?}");
    assert!(
        counts[0] >= 2.0,
        "the counter counts (client page and consents at least): {counts:?}"
    );
}
