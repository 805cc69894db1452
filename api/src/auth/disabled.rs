//! Rights that change while a caller stays connected (checklist 72, 99): which MSP tenants
//! are disabled. HTTP requests look their MSP up every time; an open WebSocket re-reads it
//! before each new operation, and watches this instance's list — re-read from the database
//! every `CONSENTRY_RIGHTS_RECHECK_INTERVAL`, so a change made by any instance or by
//! `consentry msp disable` reaches every instance — and is closed by the sweep that follows
//! each re-read when its MSP is disabled.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;
use tokio::sync::watch;

use entity::msp_tenant;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

/// The disabled MSP tenants, as this instance last read them.
#[derive(Clone, Debug)]
pub(crate) struct DisabledMsps {
    ids: Arc<watch::Sender<Arc<BTreeSet<String>>>>,
}

impl Default for DisabledMsps {
    fn default() -> Self {
        Self {
            ids: Arc::new(watch::Sender::new(Arc::default())),
        }
    }
}

impl DisabledMsps {
    /// Whether the MSP was disabled at the last re-read.
    pub(crate) fn contains(&self, msp_id: &str) -> bool {
        self.ids.borrow().contains(msp_id)
    }

    /// The list as last re-read.
    pub(crate) fn current(&self) -> Arc<BTreeSet<String>> {
        self.ids.borrow().clone()
    }

    /// Re-reads the list from the database.
    pub(crate) async fn refresh(&self, db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
        let ids: BTreeSet<String> = disabled_ids(db).await?.into_iter().collect();
        self.ids.send_if_modified(|current| {
            if **current == ids {
                return false;
            }
            *current = Arc::new(ids);
            true
        });
        Ok(())
    }

    /// Whether the MSP may still act, read from the database now (a new operation on an open
    /// WebSocket is refused at once once its MSP is disabled). When the database cannot
    /// answer, the last re-read decides: the operation would need the database anyway.
    pub(crate) async fn still_enabled(&self, db: &DatabaseConnection, msp_id: &str) -> bool {
        match tokio::time::timeout(Duration::from_secs(5), is_enabled(db, msp_id)).await {
            Ok(Ok(enabled)) => enabled,
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot re-read the caller's MSP tenant; using the last re-check");
                !self.contains(msp_id)
            }
            Err(_) => !self.contains(msp_id),
        }
    }
}

/// The ids of every disabled MSP tenant.
async fn disabled_ids<C: ConnectionTrait>(db: &C) -> Result<Vec<String>, DbErr> {
    msp_tenant::Entity::find()
        .select_only()
        .column(msp_tenant::Column::Id)
        .filter(msp_tenant::Column::DisabledAt.is_not_null())
        .into_tuple()
        .all(db)
        .await
}

/// Whether the MSP tenant is registered and not disabled.
async fn is_enabled<C: ConnectionTrait>(db: &C, id: &str) -> Result<bool, DbErr> {
    let disabled: Option<Option<chrono::DateTime<chrono::Utc>>> =
        msp_tenant::Entity::find_by_id(id.to_owned())
            .select_only()
            .column(msp_tenant::Column::DisabledAt)
            .into_tuple()
            .one(db)
            .await?;
    Ok(matches!(disabled, Some(None)))
}
