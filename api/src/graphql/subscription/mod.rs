//! The Subscription root: every status change, pushed (docs/design.md §2). Each event is the object's
//! state after the change, with the same fields as the query. Events reach only subscribers
//! who may see the client (their own MSP; support staff: the MSP or client they named, a look
//! audited when the subscription starts), checked on every event.
//! When events may have been missed — a slow subscriber, a dropped listener connection — the
//! subscriber gets an error with `extensions.code = "RESYNC"` and should re-query; the
//! subscription stays open.

use std::sync::Arc;

use async_graphql::{Context, ErrorExtensions, ID, Result, Subscription};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::{
    domain::{Error, access, clients, msp},
    events::{Bus, Change, Delivery},
    graphql::{
        context::{database, shared_viewer},
        ids::{GlobalId, IdKind},
        types::{DelegatedConsent, GraphApiTile, ServicePrincipalRequest},
    },
    http::metrics::Metrics,
};

#[derive(Default)]
pub(crate) struct SubscriptionRoot;

fn resync() -> async_graphql::Error {
    async_graphql::Error::new(
        "events may have been missed: re-query the objects you show, then keep listening",
    )
    .extend_with(|_, e| e.set("code", "RESYNC"))
}

/// The events of the viewer's clients (or of one MSP's, or of one client), as `map` turns
/// them into items. `what` names the subscription in the audit trail. Resolvers box its
/// future: async-graphql keeps room for the resolver's future beside the stream it returns, for
/// as long as the subscriber stays.
async fn events<T, F>(
    ctx: &Context<'_>,
    what: &'static str,
    msp_id: Option<String>,
    client_id: Option<ID>,
    map: F,
) -> Result<impl Stream<Item = Result<T>> + Send + use<T, F>>
where
    T: Send + 'static,
    F: Fn(&Change) -> Option<T> + Send + 'static,
{
    let viewer = shared_viewer(ctx)?;
    access::require_named_scope(&viewer, msp_id.is_some(), client_id.is_some())?;
    if let Some(msp_id) = &msp_id {
        Box::pin(msp::require_watchable(
            database(ctx)?,
            &viewer,
            msp_id,
            what,
        ))
        .await?;
    }
    let only: Option<Uuid> = match client_id {
        Some(id) => {
            let id = GlobalId::expect("clientId", &id, IdKind::Client)?;
            // NOT_FOUND for ids the viewer may not see, exactly as for queries. Boxed: the
            // lookup's future is large, and the subscription's stream would otherwise keep
            // its room for as long as the subscriber stays.
            Box::pin(clients::require_visible(database(ctx)?, &viewer, id)).await?;
            Some(id)
        }
        None => None,
    };
    // On the heap: the stream keeps room for what it holds inline for as long as the
    // subscriber stays, and most subscriptions name nothing.
    let named = (msp_id.is_some() || only.is_some()).then(|| {
        Box::new(Named {
            msp_id,
            client_id: only,
        })
    });
    let bus = ctx
        .data::<Bus>()
        .map_err(|e| Error::Internal(anyhow::anyhow!("schema without a bus: {}", e.message)))?;
    let receiver = bus.subscribe();
    // Counted from the moment events are buffered for it (the gauge tells tests and
    // operators that the subscription is live).
    let guard = ctx
        .data::<Arc<Metrics>>()
        .ok()
        .map(|metrics| metrics.subscription_opened());
    // Each next delivery, awaited inside the stream itself (tokio-stream's wrapper would box
    // the wait: one more allocation for every idle subscriber). A closed bus ends the stream.
    let deliveries = futures_util::stream::unfold(receiver, |mut receiver| async move {
        match receiver.recv().await {
            Err(RecvError::Closed) => None,
            received => Some((received, receiver)),
        }
    });
    let stream = deliveries.filter_map(move |received| {
        let _open = &guard;
        let item = match received {
            Err(RecvError::Lagged(_) | RecvError::Closed) => Some(Err(resync())),
            Ok(delivery) => match &*delivery {
                Delivery::Resync => Some(Err(resync())),
                Delivery::Event(event) => {
                    let visible = access::sight(&viewer, &event.msp_id).is_some()
                        && named.as_ref().is_none_or(|named| named.sees(event))
                        // Checklist 72: a token that has expired gets nothing more.
                        && viewer.expires_at > chrono::Utc::now();
                    if visible {
                        map(&event.change).map(Ok)
                    } else {
                        None
                    }
                }
            },
        };
        std::future::ready(item)
    });
    Ok(stream)
}

/// The MSP or the client a subscriber named.
struct Named {
    msp_id: Option<String>,
    client_id: Option<Uuid>,
}

impl Named {
    fn sees(&self, event: &crate::events::Event) -> bool {
        self.msp_id.as_ref().is_none_or(|msp| *msp == event.msp_id)
            && self.client_id.is_none_or(|id| id == event.client_id)
    }
}

#[Subscription]
impl SubscriptionRoot {
    /// Every change of a Graph API tile: one client's (`clientId`), one MSP's (`mspId`: the
    /// viewer's own, or for support staff any), or all of the viewer's clients'. Support staff
    /// must name an MSP or a client. In commit order per client.
    async fn graph_api_tile_changed(
        &self,
        ctx: &Context<'_>,
        msp_id: Option<String>,
        client_id: Option<ID>,
    ) -> Result<impl Stream<Item = Result<GraphApiTile>>> {
        Box::pin(events(
            ctx,
            "graphApiTileChanged",
            msp_id,
            client_id,
            |change| match change {
                Change::GraphApiTile(tile) => Some(GraphApiTile(tile.clone())),
                _ => None,
            },
        ))
        .await
    }

    /// Every change of a delegated consent: granted, renewed, expired, revoked. Scoped as
    /// `graphApiTileChanged`.
    async fn delegated_consent_changed(
        &self,
        ctx: &Context<'_>,
        msp_id: Option<String>,
        client_id: Option<ID>,
    ) -> Result<impl Stream<Item = Result<DelegatedConsent>>> {
        Box::pin(events(
            ctx,
            "delegatedConsentChanged",
            msp_id,
            client_id,
            |change| match change {
                Change::DelegatedConsent(consent) => Some(DelegatedConsent(consent.clone())),
                _ => None,
            },
        ))
        .await
    }

    /// Every step of a service principal request. Scoped as `graphApiTileChanged`.
    async fn service_principal_request_changed(
        &self,
        ctx: &Context<'_>,
        msp_id: Option<String>,
        client_id: Option<ID>,
    ) -> Result<impl Stream<Item = Result<ServicePrincipalRequest>>> {
        Box::pin(events(
            ctx,
            "servicePrincipalRequestChanged",
            msp_id,
            client_id,
            |change| match change {
                Change::ServicePrincipalRequest(request) => {
                    Some(ServicePrincipalRequest::shared(request.clone()))
                }
                _ => None,
            },
        ))
        .await
    }
}
