//! Service principal requests: attempts to create a missing principal in a client's tenant.

use std::collections::HashMap;

use entity::service_principal_request;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, prelude::*};
use uuid::Uuid;

/// The Skype and Teams Tenant Admin API, the principal most often missing.
pub const TEAMS_ADMIN_API_APP_ID: &str = "48ac35b8-9aa8-4d74-927d-1f4a14a0b239";
/// Its display name, as Microsoft names it (reference §7).
pub const TEAMS_ADMIN_API_DISPLAY_NAME: &str = "Skype and Teams Tenant Admin API";

/// The requests of several clients at once, each client's newest first.
pub async fn for_clients<C: ConnectionTrait>(
    db: &C,
    client_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<service_principal_request::Model>>, DbErr> {
    let rows = service_principal_request::Entity::find()
        .filter(service_principal_request::Column::ClientId.is_in(client_ids.iter().copied()))
        .order_by_desc(service_principal_request::Column::CreatedAt)
        .order_by_asc(service_principal_request::Column::Id)
        .all(db)
        .await?;
    let mut grouped: HashMap<Uuid, Vec<_>> = HashMap::new();
    for row in rows {
        grouped.entry(row.client_id).or_default().push(row);
    }
    Ok(grouped)
}

/// One request by id, whoever owns it (callers check sight).
pub async fn find<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Option<service_principal_request::Model>, DbErr> {
    service_principal_request::Entity::find_by_id(id)
        .one(db)
        .await
}
