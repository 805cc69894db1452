//! Per-request DataLoaders: each per-client list field is one query for the whole page.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use chrono::{DateTime, Utc};
use entity::{delegated_consent, service_principal_request};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::domain::{self, delegated_consents, flows, service_principal_requests};

/// The loaders of one request (their caches live as long as the request). Made when first
/// used: most operations — every subscription among them — never load a per-client list,
/// and each subscriber would otherwise hold a pair of empty loaders for as long as it stays.
pub(crate) struct Loaders {
    db: DatabaseConnection,
    lists: OnceLock<Lists>,
    consent_links: OnceLock<DataLoader<ConsentLinkExpiries, HashMapCache>>,
}

pub(crate) struct Lists {
    pub(crate) delegated_consents: DataLoader<DelegatedConsentsByClient, HashMapCache>,
    pub(crate) service_principal_requests:
        DataLoader<ServicePrincipalRequestsByClient, HashMapCache>,
}

impl std::fmt::Debug for Loaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Loaders")
    }
}

impl Loaders {
    /// The operation's loaders or, in a subscription's event, loaders of this one resolution,
    /// kept in `own`. A subscription has none of its own: a cache kept for as long as the
    /// subscription would answer a later event with the lists of an earlier one, and each
    /// subscriber would hold the loaders while idle.
    pub(crate) fn of<'a>(
        ctx: &async_graphql::Context<'a>,
        own: &'a mut Option<Loaders>,
    ) -> Result<&'a Loaders, domain::Error> {
        if let Some(loaders) = ctx.data_opt::<Loaders>() {
            return Ok(loaders);
        }
        let db = super::context::database(ctx)?;
        Ok(own.insert(Loaders::new(db)))
    }

    pub(crate) fn new(db: &DatabaseConnection) -> Self {
        Self {
            db: db.clone(),
            lists: OnceLock::new(),
            consent_links: OnceLock::new(),
        }
    }

    /// When each tile's pending consent link expires (batched over a page's tiles; `None`
    /// where no link is out, so a primed page asks nothing more).
    pub(crate) fn consent_links(&self) -> &DataLoader<ConsentLinkExpiries, HashMapCache> {
        self.consent_links.get_or_init(|| {
            DataLoader::with_cache(
                ConsentLinkExpiries(self.db.clone()),
                tokio::spawn,
                HashMapCache::default(),
            )
        })
    }

    pub(crate) fn lists(&self) -> &Lists {
        self.lists.get_or_init(|| Lists {
            delegated_consents: DataLoader::with_cache(
                DelegatedConsentsByClient(self.db.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            service_principal_requests: DataLoader::with_cache(
                ServicePrincipalRequestsByClient(self.db.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
        })
    }
}

impl Loaders {
    /// Loads what a page selects per client in one query each, before its clients resolve:
    /// a batch that depends on timing (DataLoader's 1 ms window) could split into several on
    /// a busy machine.
    pub(crate) async fn prime(
        &self,
        ids: &[Uuid],
        selected: Selected,
    ) -> Result<(), domain::Error> {
        if selected.consents {
            let loader = &self.lists().delegated_consents;
            let mut found = loader.loader().load(ids).await.map_err(unshare)?;
            loader
                .feed_many(
                    ids.iter()
                        .map(|id| (*id, found.remove(id).unwrap_or_default())),
                )
                .await;
        }
        if selected.requests {
            let loader = &self.lists().service_principal_requests;
            let mut found = loader.loader().load(ids).await.map_err(unshare)?;
            loader
                .feed_many(
                    ids.iter()
                        .map(|id| (*id, found.remove(id).unwrap_or_default())),
                )
                .await;
        }
        if selected.consent_links {
            let loader = self.consent_links();
            let mut found = loader.loader().load(ids).await.map_err(unshare)?;
            loader
                .feed_many(ids.iter().map(|id| (*id, found.remove(id).flatten())))
                .await;
        }
        Ok(())
    }
}

/// What a page of clients selects of each client, to be loaded before the clients resolve.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Selected {
    /// `delegatedConsents`.
    pub(crate) consents: bool,
    /// `servicePrincipalRequests`.
    pub(crate) requests: bool,
    /// `graphApiTile { consentLinkExpiresAt }`.
    pub(crate) consent_links: bool,
}

fn unshare(error: LoadError) -> domain::Error {
    Arc::try_unwrap(error).unwrap_or_else(|shared| match &*shared {
        domain::Error::Unavailable => domain::Error::Unavailable,
        other => domain::Error::Internal(anyhow::anyhow!("{other}")),
    })
}

/// Loader errors must be cloneable; the domain error is shared.
pub(crate) type LoadError = Arc<domain::Error>;

pub(crate) struct DelegatedConsentsByClient(DatabaseConnection);

impl Loader<Uuid> for DelegatedConsentsByClient {
    type Value = Vec<delegated_consent::Model>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        delegated_consents::for_clients(&self.0, keys)
            .await
            .map_err(|e| Arc::new(e.into()))
    }
}

pub(crate) struct ServicePrincipalRequestsByClient(DatabaseConnection);

impl Loader<Uuid> for ServicePrincipalRequestsByClient {
    type Value = Vec<service_principal_request::Model>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        service_principal_requests::for_clients(&self.0, keys)
            .await
            .map_err(|e| Arc::new(e.into()))
    }
}

pub(crate) struct ConsentLinkExpiries(DatabaseConnection);

impl Loader<Uuid> for ConsentLinkExpiries {
    type Value = Option<DateTime<Utc>>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let found = flows::store::consent_link_expiries(&self.0, keys)
            .await
            .map_err(Arc::new)?;
        Ok(keys
            .iter()
            .map(|key| (*key, found.get(key).copied()))
            .collect())
    }
}

/// A loader failure as a GraphQL error (the shared domain error, re-mapped).
pub(crate) fn load_error(error: LoadError) -> async_graphql::Error {
    match Arc::try_unwrap(error) {
        Ok(error) => error.into(),
        Err(shared) => match &*shared {
            domain::Error::Internal(source) => {
                domain::Error::Internal(anyhow::anyhow!("{source:#}")).into()
            }
            domain::Error::Unavailable => domain::Error::Unavailable.into(),
            other => {
                async_graphql::Error::new(other.to_string()).extend_with_code(other.code().as_str())
            }
        },
    }
}

trait ExtendWithCode {
    fn extend_with_code(self, code: &'static str) -> Self;
}

impl ExtendWithCode for async_graphql::Error {
    fn extend_with_code(self, code: &'static str) -> Self {
        use async_graphql::ErrorExtensions;
        self.extend_with(|_, e| e.set("code", code))
    }
}
