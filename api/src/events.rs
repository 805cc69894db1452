//! Change events for subscribers (docs/design.md §3, "events"): every state change of a tile, a
//! delegated consent or a service principal request is recorded *in the transaction of the
//! change*, so no subscriber sees a change that was rolled back and none is lost when it
//! commits.
//!
//! - PostgreSQL: `pg_notify` inside the transaction (delivered on commit); every instance
//!   `LISTEN`s and re-broadcasts locally, so events fan out across instances. An event too
//!   big for a NOTIFY payload is written to `event_outbox` in the same transaction and the
//!   notification carries only its row id; the listener reads the row. Either way the
//!   notification is sent in the transaction, so events still arrive in commit order.
//! - SQLite (one process): a row in `event_outbox`, which this process reads right after
//!   commit — SQLite runs one writer at a time, so ids grow in commit order.
//!
//! Locally, a bounded broadcast channel feeds the subscriptions: a subscriber that falls
//! behind, or an instance whose listener connection dropped, gets a `Resync` telling it to
//! re-query — never a silent gap.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use entity::{delegated_consent, event_outbox, graph_api_tile, service_principal_request};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

/// The PostgreSQL channel events travel on, per schema (`consentry_events_{schema}`), so
/// that deployments sharing one database in different schemas never hear each other.
pub(crate) const CHANNEL_PREFIX: &str = "consentry_events_";
/// How often the SQLite outbox is read.
const OUTBOX_POLL: Duration = Duration::from_millis(25);
/// How long outbox rows are kept.
const OUTBOX_RETENTION: chrono::Duration = chrono::Duration::minutes(10);
/// The largest event (bytes of JSON) sent inside a NOTIFY payload; bigger ones go by
/// reference. PostgreSQL refuses a payload of 8,000 bytes or more (less on a server built
/// with smaller pages), counted in the server's encoding, where a character may take more
/// bytes than in our UTF-8. The margin costs nothing that matters: a usual event is well
/// under 2 KB, so only the rare one carrying long strings pays the extra insert.
const INLINE_LIMIT: usize = 7_000;

/// What a notification carries instead of an event too big for it: the `event_outbox` row
/// that holds the event.
#[derive(Debug, Serialize, Deserialize)]
// An event's first field fails this at once, so an event is never taken for a reference.
#[serde(deny_unknown_fields)]
struct OutboxReference {
    outbox: i64,
}

/// One change, with the object's state after it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Event {
    pub msp_id: String,
    pub client_id: Uuid,
    pub change: Change,
}

/// The object's state, shared by every subscriber it is delivered to (each reads it; none
/// copies it).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "state")]
pub(crate) enum Change {
    GraphApiTile(#[serde(with = "shared")] Arc<graph_api_tile::Model>),
    DelegatedConsent(#[serde(with = "shared")] Arc<delegated_consent::Model>),
    ServicePrincipalRequest(#[serde(with = "shared")] Arc<service_principal_request::Model>),
}

/// An `Arc<T>` travels as the `T` it holds.
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        value: &Arc<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        T::serialize(value, serializer)
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(deserializer).map(Arc::new)
    }
}

/// What a subscriber receives.
#[derive(Clone, Debug)]
pub(crate) enum Delivery {
    Event(Box<Event>),
    /// Events may have been missed: re-query.
    Resync,
}

/// The local fan-out of events to this instance's subscribers.
#[derive(Clone, Debug)]
pub(crate) struct Bus {
    sender: broadcast::Sender<Arc<Delivery>>,
    /// Whether events reach this bus: PostgreSQL's `LISTEN` is in place, or the SQLite
    /// outbox is being read.
    receiving: Arc<AtomicBool>,
}

impl Bus {
    /// A bus whose subscribers may fall `capacity` events behind before they get a `Resync`.
    pub(crate) fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            receiving: Arc::default(),
        }
    }

    /// Whether events reach this instance now. Until they do, a subscriber here would miss
    /// changes committed elsewhere, so `/readyz` waits for it.
    pub(crate) fn receiving(&self) -> bool {
        self.receiving.load(Ordering::Acquire)
    }

    fn set_receiving(&self, receiving: bool) {
        self.receiving.store(receiving, Ordering::Release);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Delivery>> {
        self.sender.subscribe()
    }

    fn publish(&self, delivery: Delivery) {
        // No subscribers is fine.
        let _ = self.sender.send(Arc::new(delivery));
    }
}

/// Records an event in the caller's transaction.
pub(crate) async fn record<C: ConnectionTrait>(txn: &C, event: Event) -> Result<(), DbErr> {
    let payload = serde_json::to_string(&event).map_err(|e| DbErr::Custom(e.to_string()))?;
    match txn.get_database_backend() {
        DatabaseBackend::Postgres => {
            let notification = notification(txn, payload).await?;
            txn.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_notify($1 || current_schema(), $2)",
                [CHANNEL_PREFIX.into(), notification.into()],
            ))
            .await?;
        }
        _ => {
            event_outbox::Entity::insert(event_outbox::ActiveModel {
                payload: Set(payload),
                created_at: Set(crate::db::now()),
                ..Default::default()
            })
            .exec_without_returning(txn)
            .await?;
        }
    }
    Ok(())
}

/// The NOTIFY payload for an event: the event itself when it fits, else a reference to the
/// `event_outbox` row it is written to (in the caller's transaction, so the row commits or
/// rolls back with the change).
async fn notification<C: ConnectionTrait>(txn: &C, payload: String) -> Result<String, DbErr> {
    if payload.len() <= INLINE_LIMIT {
        return Ok(payload);
    }
    let outbox = event_outbox::Entity::insert(event_outbox::ActiveModel {
        payload: Set(payload),
        created_at: Set(crate::db::now()),
        ..Default::default()
    })
    .exec(txn)
    .await?
    .last_insert_id;
    serde_json::to_string(&OutboxReference { outbox }).map_err(|e| DbErr::Custom(e.to_string()))
}

/// Deletes outbox rows older than the retention, on either backend. Any number of instances
/// may run it at once: each deletes what is old, and a listener that is that far behind
/// resyncs its subscribers anyway.
pub(crate) async fn prune_outbox<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    let cutoff = crate::db::now() - OUTBOX_RETENTION;
    Ok(event_outbox::Entity::delete_many()
        .filter(event_outbox::Column::CreatedAt.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected)
}

/// A tile's new state.
pub async fn tile<C: ConnectionTrait>(
    txn: &C,
    msp_id: &str,
    tile: &graph_api_tile::Model,
) -> Result<(), DbErr> {
    record(
        txn,
        Event {
            msp_id: msp_id.to_owned(),
            client_id: tile.client_id,
            change: Change::GraphApiTile(Arc::new(tile.clone())),
        },
    )
    .await
}

/// A delegated consent's new state (its token never travels).
pub(crate) async fn consent<C: ConnectionTrait>(
    txn: &C,
    consent: &delegated_consent::Model,
) -> Result<(), DbErr> {
    let mut state = consent.clone();
    state.refresh_token = None;
    state.refresh_token_key_id = None;
    record(
        txn,
        Event {
            msp_id: consent.msp_id.clone(),
            client_id: consent.client_id,
            change: Change::DelegatedConsent(Arc::new(state)),
        },
    )
    .await
}

/// A service principal request's new state.
pub(crate) async fn request<C: ConnectionTrait>(
    txn: &C,
    request: &service_principal_request::Model,
) -> Result<(), DbErr> {
    record(
        txn,
        Event {
            msp_id: request.msp_id.clone(),
            client_id: request.client_id,
            change: Change::ServicePrincipalRequest(Arc::new(request.clone())),
        },
    )
    .await
}

/// Feeds the bus from the database until the task is dropped.
pub(crate) async fn dispatch(db: DatabaseConnection, bus: Bus) {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => listen(db, bus).await,
        _ => poll_outbox(db, bus).await,
    }
}

/// PostgreSQL: `LISTEN`, re-broadcast, and on a lost connection reconnect and tell
/// subscribers to resync.
async fn listen(db: DatabaseConnection, bus: Bus) {
    let pool = db.get_postgres_connection_pool().clone();
    loop {
        let mut listener = match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for events; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // On the listener's own connection: one connection to open, not two, before this
        // instance is ready.
        let schema: Result<(String,), _> = sea_orm::sqlx::query_as("SELECT current_schema()")
            .fetch_one(&mut listener)
            .await;
        let channel = match schema {
            Ok((schema,)) => format!("{CHANNEL_PREFIX}{schema}"),
            Err(error) => {
                tracing::warn!(%error, "cannot read the current schema; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(&channel).await {
            tracing::warn!(%error, "cannot LISTEN for events; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tracing::debug!("listening for events");
        bus.set_receiving(true);
        loop {
            match listener.try_recv().await {
                // Resolved before the next notification is taken: deliveries keep the order
                // of commits.
                Ok(Some(notification)) => bus.publish(resolve(&db, notification.payload()).await),
                // The connection dropped; the next receive reconnects. Anything sent
                // meanwhile is lost: subscribers must re-query.
                Ok(None) => {
                    tracing::warn!("the event listener lost its connection; subscribers resync");
                    bus.publish(Delivery::Resync);
                }
                Err(error) => {
                    tracing::warn!(%error, "the event listener failed; reconnecting");
                    bus.set_receiving(false);
                    bus.publish(Delivery::Resync);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
        }
    }
}

/// What a notification delivers: its event, or the event of the outbox row it refers to.
/// Whatever cannot be read becomes a `Resync`, so subscribers re-query instead of missing
/// a change.
async fn resolve(db: &DatabaseConnection, payload: &str) -> Delivery {
    let Ok(OutboxReference { outbox }) = serde_json::from_str(payload) else {
        return decode(payload);
    };
    match event_outbox::Entity::find_by_id(outbox).one(db).await {
        Ok(Some(row)) => decode(&row.payload),
        Ok(None) => {
            tracing::warn!(outbox, "an event's outbox row is gone; subscribers resync");
            Delivery::Resync
        }
        Err(error) => {
            tracing::warn!(outbox, %error, "cannot read an event's outbox row; subscribers resync");
            Delivery::Resync
        }
    }
}

/// An event from its JSON, or `Resync` when it cannot be read (e.g. written by a newer
/// version during a rolling update).
fn decode(payload: &str) -> Delivery {
    match serde_json::from_str::<Event>(payload) {
        Ok(event) => Delivery::Event(Box::new(event)),
        Err(error) => {
            tracing::warn!(%error, "an event could not be read; subscribers resync");
            Delivery::Resync
        }
    }
}

/// SQLite: read new outbox rows in id (= commit) order, right after each of this process's
/// commits, and every `OUTBOX_POLL` for rows written otherwise.
async fn poll_outbox(db: DatabaseConnection, bus: Bus) {
    let mut last = latest(&db).await.unwrap_or(0);
    let mut ticker = tokio::time::interval(OUTBOX_POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let committed = crate::db::sqlite_commits(&db).unwrap_or_default();
    bus.set_receiving(true);
    let mut since_prune = 0u32;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = committed.notified() => {}
        }
        match event_outbox::Entity::find()
            .filter(event_outbox::Column::Id.gt(last))
            .order_by_asc(event_outbox::Column::Id)
            .limit(500)
            .all(&db)
            .await
        {
            Ok(rows) => {
                for row in rows {
                    last = row.id;
                    bus.publish(decode(&row.payload));
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read events"),
        }
        since_prune += 1;
        if since_prune >= 2400 {
            since_prune = 0;
            if let Err(error) = prune_outbox(&db).await {
                tracing::warn!(%error, "cannot prune old events");
            }
        }
    }
}

async fn latest(db: &DatabaseConnection) -> Result<i64, DbErr> {
    Ok(event_outbox::Entity::find()
        .order_by_desc(event_outbox::Column::Id)
        .one(db)
        .await?
        .map_or(0, |row| row.id))
}

#[cfg(test)]
mod tests {
    use entity::{
        StringList,
        enums::{GraphApiProblemCode, GraphApiStatus},
    };
    use sea_orm::{ConnectOptions, Database, PaginatorTrait, TransactionTrait};

    use super::*;

    /// One connection: an in-memory SQLite database lives and dies with its connection.
    async fn database() -> DatabaseConnection {
        let mut options = ConnectOptions::new("sqlite::memory:");
        options.max_connections(1).sqlx_logging(false);
        let db = Database::connect(options).await.unwrap();
        crate::db::migrate(&db, "test").await.unwrap();
        db
    }

    fn tile_event(message: Option<String>) -> Event {
        let now = crate::db::now();
        let client_id = Uuid::new_v4();
        Event {
            msp_id: "msp-a".to_owned(),
            client_id,
            change: Change::GraphApiTile(Arc::new(graph_api_tile::Model {
                client_id,
                status: GraphApiStatus::Failed,
                problem_code: Some(GraphApiProblemCode::MissingServicePrincipal),
                problem_aadsts_code: Some(650_052),
                problem_message: message,
                problem_remediation: Some(
                    "The tenant has no service principal for Skype and Teams Tenant Admin API \
                     (48ac35b8-9aa8-4d74-927d-1f4a14a0b239), usually because it has no Teams \
                     licence. Create it with createServicePrincipal (no PowerShell needed), wait \
                     a few minutes, then authorise again."
                        .to_owned(),
                ),
                problem_app_id: Some("48ac35b8-9aa8-4d74-927d-1f4a14a0b239".to_owned()),
                problem_app_display_name: Some("Skype and Teams Tenant Admin API".to_owned()),
                granted_permissions: StringList(vec!["Organization.Read.All".to_owned()]),
                missing_permissions: StringList(vec!["Directory.Read.All".to_owned()]),
                authorised_at: None,
                last_verified_at: Some(now),
                next_verification_at: None,
                tenant_proof: Some(serde_json::json!({
                    "tenantId": Uuid::new_v4(),
                    "signedInAs": "admin@contoso.onmicrosoft.com",
                    "userObjectId": Uuid::new_v4(),
                    "roles": ["62e90394-69f5-4237-9190-012177145e10"],
                    "provenAt": now,
                })),
                version: 3,
                status_changed_at: now,
                updated_at: now,
            })),
        }
    }

    fn problem_message(delivery: &Delivery) -> Option<String> {
        match delivery {
            Delivery::Event(event) => match &event.change {
                Change::GraphApiTile(tile) => tile.problem_message.clone(),
                other => panic!("expected a tile, got {other:?}"),
            },
            Delivery::Resync => panic!("expected an event, got a resync"),
        }
    }

    async fn outbox_rows(db: &DatabaseConnection) -> u64 {
        event_outbox::Entity::find().count(db).await.unwrap()
    }

    #[tokio::test]
    async fn an_event_of_usual_size_travels_inline_and_writes_nothing() {
        let db = database().await;
        let message = "The app is trying to access a service that your organization lacks a \
                       service principal for. Contact your IT Admin to review the configuration \
                       of your service subscriptions."
            .to_owned();
        let payload = serde_json::to_string(&tile_event(Some(message.clone()))).unwrap();
        assert!(
            payload.len() < INLINE_LIMIT / 4,
            "a usual event ({} bytes) is far below the limit",
            payload.len()
        );

        let txn = db.begin().await.unwrap();
        let sent = notification(&txn, payload.clone()).await.unwrap();
        txn.commit().await.unwrap();

        assert_eq!(sent, payload);
        assert_eq!(outbox_rows(&db).await, 0);
        assert_eq!(
            problem_message(&resolve(&db, &sent).await).as_deref(),
            Some(message.as_str())
        );
    }

    #[tokio::test]
    async fn an_event_too_big_for_a_notify_goes_by_reference_and_arrives_whole() {
        let db = database().await;
        // 3 bytes a character: 9,000 bytes in 3,000 characters.
        let message = "€".repeat(3_000);
        let payload = serde_json::to_string(&tile_event(Some(message.clone()))).unwrap();
        assert!(payload.len() > 8_000);

        let txn = db.begin().await.unwrap();
        let sent = notification(&txn, payload).await.unwrap();
        txn.commit().await.unwrap();

        assert!(sent.len() < 100, "only a reference is sent: {sent}");
        assert!(serde_json::from_str::<OutboxReference>(&sent).is_ok());
        assert_eq!(outbox_rows(&db).await, 1);
        assert_eq!(
            problem_message(&resolve(&db, &sent).await).as_deref(),
            Some(message.as_str())
        );
    }

    #[tokio::test]
    async fn a_rolled_back_change_leaves_no_outbox_row() {
        let db = database().await;
        let payload = serde_json::to_string(&tile_event(Some("x".repeat(8_000)))).unwrap();

        let txn = db.begin().await.unwrap();
        notification(&txn, payload).await.unwrap();
        txn.rollback().await.unwrap();

        assert_eq!(outbox_rows(&db).await, 0);
    }

    #[test]
    fn an_event_is_never_taken_for_a_reference() {
        let payload = serde_json::to_string(&tile_event(None)).unwrap();
        assert!(serde_json::from_str::<OutboxReference>(&payload).is_err());
        assert!(matches!(decode(&payload), Delivery::Event(_)));
    }

    #[tokio::test]
    async fn a_reference_that_cannot_be_read_means_resync() {
        let db = database().await;
        // Pruned, or never committed.
        assert!(matches!(
            resolve(&db, r#"{"outbox":42}"#).await,
            Delivery::Resync
        ));
        // The database fails the read.
        db.execute_unprepared("DROP TABLE event_outbox")
            .await
            .unwrap();
        assert!(matches!(
            resolve(&db, r#"{"outbox":1}"#).await,
            Delivery::Resync
        ));
    }

    #[test]
    fn an_unreadable_event_means_resync() {
        assert!(matches!(decode(r#"{"mspId":"#), Delivery::Resync));
        assert!(matches!(decode(r#"{"kind":"Other"}"#), Delivery::Resync));
    }

    #[tokio::test]
    async fn pruning_deletes_only_events_past_the_retention() {
        let db = database().await;
        for age in [
            OUTBOX_RETENTION + chrono::Duration::minutes(1),
            chrono::Duration::zero(),
        ] {
            event_outbox::Entity::insert(event_outbox::ActiveModel {
                payload: Set("{}".to_owned()),
                created_at: Set(crate::db::now() - age),
                ..Default::default()
            })
            .exec(&db)
            .await
            .unwrap();
        }

        assert_eq!(prune_outbox(&db).await.unwrap(), 1);
        assert_eq!(outbox_rows(&db).await, 1);
    }
}
