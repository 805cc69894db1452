//! Every GraphQL document the dashboard sends (its `queries.js`, as the server serves it) is
//! valid for the server's schema, so a renamed or dropped field breaks this test, not the
//! page in someone's browser.

use consentry_tests::{Backend, TestApp, spawn_app};

use crate::support::documents::{
    Document, Kind, QUERIES_JS, check, constants, documents, variables,
};

async fn served_documents(app: &TestApp) -> Vec<Document> {
    let script = app
        .http
        .get(app.url(QUERIES_JS))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    documents(&script).unwrap()
}

#[tokio::test]
async fn every_document_the_dashboard_sends_is_valid_for_the_schema() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let admin = app.caller("msp-a", &["admin"]).await;
    let client = admin.create_client("Contoso").await;
    let documents = served_documents(&app).await;

    for kind in [Kind::Query, Kind::Mutation, Kind::Subscription] {
        assert!(
            documents.iter().any(|d| d.kind == kind),
            "no {kind:?}: {documents:#?}"
        );
    }
    assert!(documents.len() >= 15, "{documents:#?}");
    let mut invalid = Vec::new();
    for document in &documents {
        if let Err(error) = check(&admin, document, &client).await {
            invalid.push(error);
        }
    }
    assert!(invalid.is_empty(), "{}", invalid.join("\n"));
}

/// The check can fail: a field the schema does not have is caught, in a query and in a
/// subscription (which the server validates before it refuses it over HTTP).
#[tokio::test]
async fn a_document_asking_for_a_field_the_schema_lacks_is_caught() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let admin = app.caller("msp-a", &["admin"]).await;
    let client = admin.create_client("Contoso").await;
    let documents = served_documents(&app).await;

    for constant in ["CLIENTS_PAGE", "VERIFY", "TILE_CHANGED"] {
        let document = documents.iter().find(|d| d.constant == constant).unwrap();
        assert!(check(&admin, document, &client).await.is_ok(), "{constant}");
        let broken = Document {
            constant: format!("{constant} (broken)"),
            kind: document.kind,
            text: document.text.replace("headline", "headlineText"),
        };
        let error = check(&admin, &broken, &client).await.unwrap_err();
        assert!(
            error.contains("GRAPHQL_VALIDATION_FAILED") && error.contains("headlineText"),
            "{error}"
        );
    }
}

#[test]
fn an_interpolation_that_is_not_a_constant_of_the_module_is_refused() {
    let script = "export const A = `query A { viewer { subject } }`;\n\
                  export const B = `query B { viewer { ${FIELDS} } }`;\n";
    let error = documents(script).unwrap_err();
    assert!(error.contains("FIELDS"), "{error}");

    let error = constants("export function build() {}\n").unwrap_err();
    assert!(error.contains("export function"), "{error}");
}

#[test]
fn fragments_are_resolved_into_the_operations_that_use_them() {
    let script = "export const F = `fragment F on Viewer { subject }`;\n\
                  export const Q = `query Q($first: Int!, $after: String) { viewer { ...F } }\n${F}`;\n";
    let documents = documents(script).unwrap();

    assert_eq!(documents.len(), 1);
    assert!(
        documents[0]
            .text
            .ends_with("fragment F on Viewer { subject }")
    );
    assert_eq!(
        variables(&documents[0].text),
        [
            ("first".to_owned(), "Int!".to_owned()),
            ("after".to_owned(), "String".to_owned())
        ]
    );
}
