//! What a repair holds besides its row: which applications it may repair at all
//! (checklist 96), and the admin tokens that watch a new principal replicate, in memory only.

use super::*;

/// The setting that names further applications Consentry may repair.
pub(crate) const REPAIRABLE_APP_IDS_SETTING: &str = "CONSENTRY_MS_REPAIRABLE_APP_IDS";

/// An application id as Consentry accepts one: a GUID in its 36-character form, not nil.
pub(crate) fn parse_app_id(raw: &str) -> Option<Uuid> {
    Uuid::try_parse(raw)
        .ok()
        .filter(|id| raw.len() == 36 && !id.is_nil())
}

/// The applications whose service principals Consentry creates (checklist 96): the Teams
/// admin API always, plus those an operator names in `CONSENTRY_MS_REPAIRABLE_APP_IDS`. A
/// stored delegated consent can create a principal with nobody signing in, so an arbitrary
/// application id must never get that far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairableApps {
    extra: Vec<Uuid>,
}

impl RepairableApps {
    /// The Teams admin API and `extra`.
    pub fn new(extra: impl IntoIterator<Item = Uuid>) -> Self {
        let mut apps = Self::default();
        for id in extra {
            if !apps.extra.contains(&id) {
                apps.extra.push(id);
            }
        }
        apps
    }

    /// The setting's comma-separated entries (blanks ignored); the first that is not an
    /// application id is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut extra = Vec::new();
        for raw in entries.iter().map(|e| e.as_ref().trim()) {
            if raw.is_empty() {
                continue;
            }
            extra.push(parse_app_id(raw).ok_or_else(|| raw.to_owned())?);
        }
        Ok(Self::new(extra))
    }

    /// Whether Consentry may create this application's principal.
    pub fn contains(&self, app_id: &str) -> bool {
        Uuid::try_parse(app_id).is_ok_and(|id| id == TEAMS_ADMIN_API || self.extra.contains(&id))
    }

    /// Why a request for `app_id` is refused, and what to do about it.
    pub(crate) fn refusal(app_id: &str) -> String {
        let app = match display_name(app_id) {
            Some(name) => format!("{name} ({app_id})"),
            None => app_id.to_owned(),
        };
        format!(
            "Consentry does not repair {app}: it creates service principals only for the \
             {TEAMS_ADMIN_API_DISPLAY_NAME} ({TEAMS_ADMIN_API_APP_ID}) and the applications the \
             server setting {REPAIRABLE_APP_IDS_SETTING} names. If this client needs it, ask \
             your Consentry operator to add its application id there and restart Consentry."
        )
    }
}

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
