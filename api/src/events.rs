//! Change events for subscribers (DESIGN §3, "events"): every state change of a tile, a
//! delegated consent or a service principal request is recorded *in the transaction of the
//! change*, so no subscriber sees a change that was rolled back and none is lost when it
//! commits.
//!
//! - PostgreSQL: `pg_notify` inside the transaction (delivered on commit); every instance
//!   `LISTEN`s and re-broadcasts locally, so events fan out across instances.
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
pub const CHANNEL_PREFIX: &str = "consentry_events_";
/// How often the SQLite outbox is read.
const OUTBOX_POLL: Duration = Duration::from_millis(25);
/// How long outbox rows are kept.
const OUTBOX_RETENTION: chrono::Duration = chrono::Duration::minutes(10);

/// One change, with the object's state after it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub msp_id: String,
    pub client_id: Uuid,
    pub change: Change,
}

/// The object's state, shared by every subscriber it is delivered to (each reads it; none
/// copies it).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "state")]
pub enum Change {
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
pub enum Delivery {
    Event(Box<Event>),
    /// Events may have been missed: re-query.
    Resync,
}

/// The local fan-out of events to this instance's subscribers.
#[derive(Clone, Debug)]
pub struct Bus {
    sender: broadcast::Sender<Arc<Delivery>>,
    /// Whether events reach this bus: PostgreSQL's `LISTEN` is in place, or the SQLite
    /// outbox is being read.
    receiving: Arc<AtomicBool>,
}

impl Bus {
    /// A bus whose subscribers may fall `capacity` events behind before they get a `Resync`.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            receiving: Arc::default(),
        }
    }

    /// Whether events reach this instance now. Until they do, a subscriber here would miss
    /// changes committed elsewhere, so `/readyz` waits for it.
    pub fn receiving(&self) -> bool {
        self.receiving.load(Ordering::Acquire)
    }

    fn set_receiving(&self, receiving: bool) {
        self.receiving.store(receiving, Ordering::Release);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Delivery>> {
        self.sender.subscribe()
    }

    fn publish(&self, delivery: Delivery) {
        // No subscribers is fine.
        let _ = self.sender.send(Arc::new(delivery));
    }
}

/// Records an event in the caller's transaction.
pub async fn record<C: ConnectionTrait>(txn: &C, event: Event) -> Result<(), DbErr> {
    let payload = serde_json::to_string(&event).map_err(|e| DbErr::Custom(e.to_string()))?;
    match txn.get_database_backend() {
        DatabaseBackend::Postgres => {
            txn.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_notify($1 || current_schema(), $2)",
                [CHANNEL_PREFIX.into(), payload.into()],
            ))
            .await?;
        }
        _ => {
            event_outbox::Entity::insert(event_outbox::ActiveModel {
                payload: Set(payload),
                created_at: Set(crate::domain::now()),
                ..Default::default()
            })
            .exec_without_returning(txn)
            .await?;
        }
    }
    Ok(())
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
pub async fn consent<C: ConnectionTrait>(
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
pub async fn request<C: ConnectionTrait>(
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
pub async fn dispatch(db: DatabaseConnection, bus: Bus) {
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
                Ok(Some(notification)) => {
                    match serde_json::from_str::<Event>(notification.payload()) {
                        Ok(event) => bus.publish(Delivery::Event(Box::new(event))),
                        Err(error) => tracing::warn!(%error, "an event could not be read"),
                    }
                }
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
                    match serde_json::from_str::<Event>(&row.payload) {
                        Ok(event) => bus.publish(Delivery::Event(Box::new(event))),
                        Err(error) => tracing::warn!(%error, "an event could not be read"),
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read events"),
        }
        since_prune += 1;
        if since_prune >= 2400 {
            since_prune = 0;
            let cutoff = crate::domain::now() - OUTBOX_RETENTION;
            if let Err(error) = event_outbox::Entity::delete_many()
                .filter(event_outbox::Column::CreatedAt.lt(cutoff))
                .exec(&db)
                .await
            {
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
