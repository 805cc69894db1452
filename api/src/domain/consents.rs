//! What the consent flows need besides the database: Microsoft, the keys, and the
//! intervals and leases the settings choose. One per server, shared by every request.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::crypto::{FlowKeys, TokenKeys};
use super::error::{Error, Result};
use super::flows::store;
use super::repairable::RepairableApps;
use super::service_principal_requests::held::SignInTokens;
use crate::microsoft::Microsoft;

/// What the consent flows need besides the database.
#[derive(Clone, Debug)]
pub(crate) struct Consents {
    /// Microsoft's identity platform and Graph; `None` without an app registration.
    pub microsoft: Option<Arc<Microsoft>>,
    /// How often an authorised tile is re-verified (`CONSENTRY_REVERIFY_INTERVAL`).
    pub reverify_interval: std::time::Duration,
    /// Admin sign-in tokens of service principal repairs, in memory only.
    pub sign_in_tokens: Arc<SignInTokens>,
    /// Keys that encrypt stored refresh tokens; `None` when not configured.
    pub token_keys: Option<Arc<TokenKeys>>,
    /// Keys that seal the PKCE verifiers of pending flows: the token keys, else one derived
    /// from the Microsoft client secret.
    pub flow_keys: FlowKeys,
    /// How often a delegated consent's refresh token is renewed.
    pub keepalive_interval: std::time::Duration,
    /// How long a callback may work on a flow it claimed (and a repair stay `CREATING`)
    /// before a sweep takes it for interrupted (`CONSENTRY_CALLBACK_LEASE`, checklist 92).
    pub callback_lease: Duration,
    /// The applications whose service principals repairs may create
    /// (`CONSENTRY_MS_REPAIRABLE_APP_IDS`, checklist 96).
    pub repairable_apps: RepairableApps,
}

impl Consents {
    pub(crate) fn new(
        microsoft: Option<Arc<Microsoft>>,
        reverify_interval: std::time::Duration,
        keepalive_interval: std::time::Duration,
        token_keys: Option<Arc<TokenKeys>>,
    ) -> Self {
        let flow_keys = FlowKeys::new(
            token_keys.clone(),
            microsoft.as_deref().map(|m| &m.config().client_secret),
        );
        Self {
            microsoft,
            reverify_interval,
            sign_in_tokens: Arc::default(),
            token_keys,
            flow_keys,
            keepalive_interval,
            callback_lease: store::EXCHANGE_LEASE,
            repairable_apps: RepairableApps::default(),
        }
    }

    /// With more applications to repair than the Teams admin API (see
    /// [`Consents::repairable_apps`]).
    pub(crate) fn with_repairable_apps(mut self, apps: RepairableApps) -> Self {
        self.repairable_apps = apps;
        self
    }

    /// With another lease for interrupted callbacks (see [`Consents::callback_lease`]).
    pub(crate) fn with_callback_lease(mut self, lease: std::time::Duration) -> Self {
        self.callback_lease = Duration::from_std(lease).unwrap_or(store::EXCHANGE_LEASE);
        self
    }

    /// When a consent refreshed at `now` is next renewed.
    pub(crate) fn next_keepalive(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + Duration::from_std(self.keepalive_interval).unwrap_or(Duration::days(7))
    }
}

impl Consents {
    /// The Microsoft client, or the error naming the settings to set.
    pub(crate) fn microsoft(&self) -> Result<&Microsoft> {
        self.microsoft.as_deref().ok_or_else(|| {
            Error::NotConfigured(
                "Consentry has no Microsoft app registration: set CONSENTRY_MS_CLIENT_ID and \
                 CONSENTRY_MS_CLIENT_SECRET (and register CONSENTRY_PUBLIC_URL/oauth/callback as \
                 its redirect URI), then restart. `consentry demo` runs with a built-in simulator."
                    .to_owned(),
            )
        })
    }

    pub(crate) fn next_verification(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + Duration::from_std(self.reverify_interval).unwrap_or(Duration::hours(6))
    }
}
