//! Delegated consents: the permissions a named client-tenant user granted, and reading them.

use std::collections::HashMap;

use entity::delegated_consent;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, prelude::*};
use uuid::Uuid;

/// A delegated permission Consentry can ask a client-tenant user for (DESIGN §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DelegatedPermission {
    MailSend,
    AzureUserImpersonation,
    UserAuthenticationMethodReadWriteAll,
    DirectoryAccessAsUserAll,
}

impl DelegatedPermission {
    pub const ALL: [Self; 4] = [
        Self::MailSend,
        Self::AzureUserImpersonation,
        Self::UserAuthenticationMethodReadWriteAll,
        Self::DirectoryAccessAsUserAll,
    ];

    /// The name stored in the database (and used in GraphQL).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MailSend => "MAIL_SEND",
            Self::AzureUserImpersonation => "AZURE_USER_IMPERSONATION",
            Self::UserAuthenticationMethodReadWriteAll => {
                "USER_AUTHENTICATION_METHOD_READ_WRITE_ALL"
            }
            Self::DirectoryAccessAsUserAll => "DIRECTORY_ACCESS_AS_USER_ALL",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// Parses stored permission names, skipping (and logging) any this build does not know.
pub fn permissions(stored: &[String]) -> Vec<DelegatedPermission> {
    stored
        .iter()
        .filter_map(|name| {
            let parsed = DelegatedPermission::parse(name);
            if parsed.is_none() {
                tracing::warn!(permission = %name, "unknown delegated permission in the database");
            }
            parsed
        })
        .collect()
}

/// The consents of several clients at once, each client's newest first.
pub async fn for_clients<C: ConnectionTrait>(
    db: &C,
    client_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<delegated_consent::Model>>, DbErr> {
    let rows = delegated_consent::Entity::find()
        .filter(delegated_consent::Column::ClientId.is_in(client_ids.iter().copied()))
        .order_by_desc(delegated_consent::Column::GrantedAt)
        .order_by_asc(delegated_consent::Column::Id)
        .all(db)
        .await?;
    let mut grouped: HashMap<Uuid, Vec<_>> = HashMap::new();
    for row in rows {
        grouped.entry(row.client_id).or_default().push(row);
    }
    Ok(grouped)
}

/// One consent by id, whoever owns it (callers check sight).
pub async fn find<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Option<delegated_consent::Model>, DbErr> {
    delegated_consent::Entity::find_by_id(id).one(db).await
}
