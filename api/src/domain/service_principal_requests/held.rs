//! What a repair holds besides its row: the admin tokens that watch a new principal
//! replicate, in memory only.

use entity::service_principal_request;
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration as StdDuration, Instant};
use uuid::Uuid;

/// Access tokens that created a service principal — an admin's sign-in, or a stored
/// delegated consent's — kept in this process's memory only and only while their request
/// waits for replication: they are never written anywhere. Each is forgotten when its
/// request ends, when its client is deleted or its consent revoked (checklist 82), and by
/// the sweep of every instance once its request is no longer waiting.
#[derive(Default)]
pub(crate) struct SignInTokens {
    tokens: Mutex<HashMap<Uuid, HeldToken>>,
}

/// A token, whose it is, and until when it may be used.
struct HeldToken {
    token: SecretString,
    client_id: Uuid,
    /// The delegated consent it was taken from, if any.
    consent_id: Option<Uuid>,
    until: Instant,
}

impl std::fmt::Debug for SignInTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignInTokens { .. }")
    }
}

impl SignInTokens {
    pub(crate) fn put(
        &self,
        request: &service_principal_request::Model,
        consent_id: Option<Uuid>,
        token: SecretString,
        lifetime: StdDuration,
    ) {
        let mut tokens = self.lock();
        let now = Instant::now();
        tokens.retain(|_, held| held.until > now);
        tokens.insert(
            request.id,
            HeldToken {
                token,
                client_id: request.client_id,
                consent_id,
                until: now + lifetime,
            },
        );
    }

    pub(crate) fn get(&self, request: Uuid) -> Option<SecretString> {
        let tokens = self.lock();
        tokens
            .get(&request)
            .filter(|held| held.until > Instant::now())
            .map(|held| held.token.clone())
    }

    pub(crate) fn forget(&self, request: Uuid) {
        self.lock().remove(&request);
    }

    /// Forgets every token held for the client's requests (`deleteClient`).
    pub(crate) fn forget_client(&self, client_id: Uuid) {
        self.lock().retain(|_, held| held.client_id != client_id);
    }

    /// Forgets every token taken from the delegated consent (`revokeDelegatedConsent`).
    pub(crate) fn forget_consent(&self, consent_id: Uuid) {
        self.lock()
            .retain(|_, held| held.consent_id != Some(consent_id));
    }

    /// The requests whose tokens are held.
    pub(crate) fn requests(&self) -> Vec<Uuid> {
        self.lock().keys().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, HeldToken>> {
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
