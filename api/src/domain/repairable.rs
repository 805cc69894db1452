//! Which applications Consentry may create a service principal for at all (checklist 96).

use entity::enums::GraphApiProblemCode;
use uuid::Uuid;

use crate::microsoft::errors::Problem;
use crate::microsoft::known::{
    TEAMS_ADMIN_API, TEAMS_ADMIN_API_APP_ID, TEAMS_ADMIN_API_DISPLAY_NAME, display_name,
};

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

/// The problem of a request for an application that is not allow-listed.
pub(crate) fn not_repairable(app_id: &str) -> Problem {
    Problem::new(
        GraphApiProblemCode::Unknown,
        RepairableApps::refusal(app_id),
    )
    .ours()
}
