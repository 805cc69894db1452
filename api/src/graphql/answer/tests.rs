//! A small schema whose fields finish out of order and fail on purpose, run through the
//! real operations extension.

use std::{sync::Arc, time::Duration};

use async_graphql::{Interface, Object, Result, Schema, Subscription};
use futures_util::{Stream, StreamExt};

use crate::graphql::extensions::Operations;
use crate::graphql::limits::Limits;
use crate::http::metrics::Metrics;

async fn later<T>(value: T) -> T {
    tokio::time::sleep(Duration::from_millis(20)).await;
    value
}

struct Query;

#[Object]
impl Query {
    async fn slow(&self) -> i32 {
        later(1).await
    }
    async fn fast(&self) -> i32 {
        2
    }
    /// Nullable, and fails.
    async fn missing(&self) -> Result<Option<i32>> {
        Err("missing".into())
    }
    async fn parent(&self) -> Option<Parent> {
        Some(Parent)
    }
    async fn parents(&self) -> Vec<Parent> {
        vec![Parent, Parent]
    }
    async fn maybe_parents(&self) -> Vec<Option<Parent>> {
        vec![Some(Parent), Some(Parent)]
    }
    async fn nested(&self) -> Vec<Option<Vec<Parent>>> {
        vec![Some(vec![Parent]), None]
    }
    async fn thing(&self, kind: String) -> Option<Thing> {
        Some(if kind == "a" {
            Thing::A(A)
        } else {
            Thing::B(B)
        })
    }
}

struct Parent;

#[Object]
impl Parent {
    async fn slow(&self) -> i32 {
        later(1).await
    }
    async fn fast(&self) -> i32 {
        2
    }
    async fn child(&self) -> Parent {
        later(Parent).await
    }
    /// Non-null, and fails.
    async fn strict(&self) -> Result<i32> {
        later(Err("strict".into())).await
    }
}

#[derive(Interface)]
#[graphql(field(name = "id", ty = "i32"))]
enum Thing {
    A(A),
    B(B),
}

struct A;

#[Object]
impl A {
    async fn id(&self) -> i32 {
        1
    }
    async fn when(&self) -> i32 {
        later(1).await
    }
}

struct B;

#[Object]
impl B {
    async fn id(&self) -> i32 {
        later(2).await
    }
    async fn when(&self) -> i32 {
        2
    }
}

struct Subscriptions;

#[Subscription]
impl Subscriptions {
    async fn parents(&self) -> impl Stream<Item = Parent> {
        futures_util::stream::iter([Parent, Parent])
    }
}

fn schema() -> Schema<Query, async_graphql::EmptyMutation, Subscriptions> {
    let limits = Limits {
        mutations_per_minute: 0,
        queries_per_minute: 0,
        query_timeout: Duration::from_secs(10),
        max_response_bytes: 2 * 1024 * 1024,
    };
    Schema::build(Query, async_graphql::EmptyMutation, Subscriptions)
        .extension(Operations::new(
            limits.clone(),
            Arc::new(Metrics::new()),
            limits.budgets(),
        ))
        .finish()
}

/// The answer's `data` as written, and the paths of its errors.
async fn run(query: &str) -> (String, Vec<String>) {
    let response = schema().execute(query).await;
    let paths = response
        .errors
        .iter()
        .map(|e| serde_json::to_string(&e.path).unwrap())
        .collect();
    (serde_json::to_string(&response.data).unwrap(), paths)
}

#[tokio::test]
async fn fields_come_in_query_order_however_long_each_takes() {
    let (data, _) = run("{ slow fast parent { fast slow } z: fast a: slow }").await;
    assert_eq!(
        data,
        r#"{"slow":1,"fast":2,"parent":{"fast":2,"slow":1},"z":2,"a":1}"#
    );
}

#[tokio::test]
async fn list_items_and_repeated_fields_keep_the_first_place_of_their_key() {
    let (data, _) = run(
        "query { parents { slow fast } ...F parent { slow } } fragment F on Query { fast parent { fast } }",
    )
    .await;
    assert_eq!(
        data,
        r#"{"parents":[{"slow":1,"fast":2},{"slow":1,"fast":2}],"fast":2,"parent":{"fast":2,"slow":1}}"#
    );
    let (data, _) = run("{ parent { child { slow } fast child { fast slow } } }").await;
    assert_eq!(data, r#"{"parent":{"child":{"slow":1,"fast":2},"fast":2}}"#);
}

#[tokio::test]
async fn skipped_fields_leave_no_place_behind() {
    let (data, _) =
        run("{ fast @skip(if: true) slow fast parent @include(if: false) { fast } }").await;
    assert_eq!(data, r#"{"slow":1,"fast":2}"#);
    let (data, _) =
        run("query($no: Boolean = false) { parent { fast @include(if: $no) slow fast } }").await;
    assert_eq!(data, r#"{"parent":{"slow":1,"fast":2}}"#);
}

#[tokio::test]
async fn fragments_on_object_types_apply_by_what_the_object_turned_out_to_be() {
    let query = |kind| {
        format!(r#"{{ thing(kind: "{kind}") {{ ... on A {{ when }} id ... on B {{ when }} }} }}"#)
    };
    assert_eq!(run(&query("a")).await.0, r#"{"thing":{"when":1,"id":1}}"#);
    assert_eq!(run(&query("b")).await.0, r#"{"thing":{"id":2,"when":2}}"#);
    // Told by `__typename` alone when nothing else in the fragment resolves.
    let query = |kind| {
        format!(
            r#"{{ thing(kind: "{kind}") {{ ... on A {{ __typename }} id ... on B {{ __typename }} }} }}"#
        )
    };
    assert_eq!(
        run(&query("a")).await.0,
        r#"{"thing":{"__typename":"A","id":1}}"#
    );
    assert_eq!(
        run(&query("b")).await.0,
        r#"{"thing":{"id":2,"__typename":"B"}}"#
    );
}

#[tokio::test]
async fn a_nullable_field_that_fails_reads_null_beside_its_error() {
    let (data, errors) = run("{ slow missing fast }").await;
    assert_eq!(data, r#"{"slow":1,"missing":null,"fast":2}"#);
    assert_eq!(errors, [r#"["missing"]"#]);
}

#[tokio::test]
async fn a_non_null_field_that_fails_makes_its_nearest_nullable_parent_null() {
    let (data, errors) = run("{ fast parent { fast strict } slow }").await;
    assert_eq!(data, r#"{"fast":2,"parent":null,"slow":1}"#);
    assert_eq!(errors, [r#"["parent","strict"]"#]);

    let (data, errors) = run("{ maybeParents { strict fast } fast }").await;
    assert_eq!(data, r#"{"maybeParents":[null,null],"fast":2}"#);
    assert_eq!(errors.len(), 2, "one error per failed field");

    // A field selected twice is one field: either selection's failure makes it null.
    let (data, _) = run("{ parent { fast } fast parent { strict } }").await;
    assert_eq!(data, r#"{"parent":null,"fast":2}"#);
    let (data, _) = run("{ maybeParents { fast } maybeParents { strict } }").await;
    assert_eq!(data, r#"{"maybeParents":[null,null]}"#);

    // In lists of lists, the nearest nullable level takes the null.
    let (data, _) = run("{ nested { strict } fast }").await;
    assert_eq!(data, r#"{"nested":[null,null],"fast":2}"#);

    // Non-null all the way up: no data at all.
    let (data, errors) = run("{ fast parents { strict } }").await;
    assert_eq!(data, "null");
    assert_eq!(errors.len(), 2);
}

#[tokio::test]
async fn subscription_events_are_answered_the_same_way() {
    let events: Vec<_> = schema()
        .execute_stream("subscription { parents { slow fast } }")
        .map(|r| serde_json::to_string(&r.data).unwrap())
        .collect()
        .await;
    assert_eq!(events, [r#"{"parents":{"slow":1,"fast":2}}"#; 2]);

    let events: Vec<_> = schema()
        .execute_stream("subscription { parents { ...F fast } } fragment F on Parent { slow }")
        .map(|r| serde_json::to_string(&r.data).unwrap())
        .collect()
        .await;
    assert_eq!(events, [r#"{"parents":{"slow":1,"fast":2}}"#; 2]);

    let events: Vec<_> = schema()
        .execute_stream("subscription { parents { fast strict } }")
        .map(|r| (serde_json::to_string(&r.data).unwrap(), r.errors.len()))
        .collect()
        .await;
    let null = ("null".to_owned(), 1);
    assert_eq!(
        events,
        [null.clone(), null],
        "each event has its own errors"
    );
}
