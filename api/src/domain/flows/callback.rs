//! The one redirect URI of every flow (`GET /oauth/callback`): finds the flow by its `state`,
//! lets exactly one request act on it — the claim's transaction is this module's, for every
//! kind — and hands every other request, concurrent or a replay, the first outcome
//! (checklist 1–4, 83, 84).

use std::collections::HashMap;

use entity::enums::{GraphApiProblemCode, OAuthFlowStatus};
use sea_orm::{DatabaseConnection, EntityTrait};
use url::form_urlencoded;
use uuid::Uuid;

use super::kind::{Answer, CallbackResult, Claimed, Completed, Ending};
use super::{end, kind, store};
use crate::db::{begin_write, now};
use crate::domain::consents::Consents;
use crate::domain::error::Result;
use crate::domain::flows::store::FlowOutcome;
use crate::domain::repairable::RepairableApps;
use crate::domain::tenant_proof::TenantProof;
use crate::microsoft::{Problem, errors};

/// The callback's query parameters. Values are kept only for this request.
#[derive(Clone, Default)]
pub struct CallbackParams {
    params: HashMap<String, String>,
}

// Hand-written: the query can carry an authorization code and the state.
impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.params.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("CallbackParams")
            .field("names", &names)
            .finish()
    }
}

/// The parameters the callback acts on.
const READ: [&str; 6] = [
    "state",
    "code",
    "error",
    "error_description",
    "tenant",
    "iss",
];

/// A callback query that cannot be read. Answered like a missing `state`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCallbackQuery {
    /// A parameter the callback acts on appears more than once.
    #[error("the callback's {0} parameter appears more than once")]
    Repeated(&'static str),
}

impl CallbackParams {
    /// Reads the raw query string (without the `?`) as `application/x-www-form-urlencoded`,
    /// as axum's `Query` does: `+` is a space, a malformed percent-escape is kept as written,
    /// invalid UTF-8 becomes U+FFFD, and unknown parameters are kept but ignored.
    pub fn from_query(raw: &str) -> Result<Self, InvalidCallbackQuery> {
        let mut params = HashMap::new();
        for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
            // Microsoft sends each parameter once; with two `state`s or `code`s, which one
            // counts would be up to the parser rather than the sender, so refuse the query.
            if let Some(read) = READ.into_iter().find(|read| *read == name)
                && params.contains_key(read)
            {
                return Err(InvalidCallbackQuery::Repeated(read));
            }
            params.insert(name.into_owned(), value.into_owned());
        }
        Ok(Self { params })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// The `state` that names the flow, when present and not blank.
    pub fn state(&self) -> Option<&str> {
        self.get("state")
    }

    /// The authorization `code`, when present and not blank.
    pub fn code(&self) -> Option<&str> {
        self.get("code")
    }

    /// Microsoft's `error` and its `error_description` (empty when absent), when Microsoft
    /// reported one.
    pub fn error(&self) -> Option<(&str, &str)> {
        self.get("error")
            .map(|e| (e, self.get("error_description").unwrap_or_default()))
    }

    /// The issuer the answer names (RFC 9207's `iss`), when present and not blank.
    pub fn issuer(&self) -> Option<&str> {
        self.get("iss")
    }

    /// The error Microsoft reported, as a problem: only its AADSTS number and error name
    /// count, since anyone can put anything in a redirect (checklist 13, 96). A missing
    /// service principal may name only an application Consentry repairs anyway.
    pub fn refusal(&self, repairable: &RepairableApps) -> Option<Problem> {
        self.error().map(|(error, description)| {
            errors::from_redirect(error, description, &|app| repairable.contains(app))
        })
    }

    /// The `tenant` an admin-consent redirect names: unauthenticated, only ever compared
    /// with the tenant the admin proved (checklist 14, 95).
    pub fn tenant(&self) -> Option<&str> {
        self.get("tenant")
    }
}

/// Handles one callback request: finds the flow, lets exactly one request claim it, and
/// hands it to its kind (see the module [`super`]).
pub(crate) async fn handle(
    db: &DatabaseConnection,
    consents: &Consents,
    params: &CallbackParams,
) -> Result<CallbackResult> {
    let Some(state) = params.state() else {
        return Ok(CallbackResult::Rejected);
    };
    let Some((flow, step)) = store::find_by_state(db, state).await? else {
        return Ok(CallbackResult::Rejected);
    };
    match flow.status {
        OAuthFlowStatus::Pending => {}
        OAuthFlowStatus::Exchanging => return Ok(CallbackResult::InProgress),
        OAuthFlowStatus::Succeeded | OAuthFlowStatus::Failed | OAuthFlowStatus::Expired => {
            return Ok(finished(&flow, store::outcome_of(&flow)));
        }
    }
    let handler = kind(flow.kind);
    if let Some(repeat) = handler.passed(consents, &flow, step, state, params.code()) {
        return Ok(repeat);
    }
    let answer = answer(consents, &flow, params);
    if flow.expires_at <= now() {
        end(db, &flow, Ending::Expired).await?;
        return reread(db, flow.id).await;
    }
    // The claim is a write like any other (on SQLite it waits its turn with them); the kind
    // may show watchers what happens next in the same transaction.
    let claim = begin_write(db).await?;
    if !store::claim(&claim, &flow, now()).await? {
        drop(claim);
        // Someone else claimed (or expired) it first: show theirs.
        return reread(db, flow.id).await;
    }
    tracing::info!(flow = %flow.id, kind = ?flow.kind, ?step, "callback claimed its flow");
    let Some(client) = entity::client::Entity::find_by_id(flow.client_id)
        .one(&claim)
        .await?
    else {
        // The client was deleted (and with it this flow) while we were on our way.
        let outcome = FlowOutcome::cancelled(&flow, "", "the client was removed");
        return Ok(finished(&flow, outcome));
    };
    let claimed = Claimed {
        db,
        consents,
        client: &client,
        flow: &flow,
        step,
        state,
        answer: &answer,
    };
    handler.claimed(&claim, &claimed).await?;
    claim.commit().await?;
    Ok(match handler.complete(&claimed).await? {
        Completed::Continue(url) => CallbackResult::Continue { url },
        Completed::Finished(outcome) => finished(&flow, outcome),
    })
}

fn finished(flow: &entity::oauth_flow::Model, outcome: FlowOutcome) -> CallbackResult {
    CallbackResult::Finished {
        flow_id: flow.id,
        outcome,
    }
}

/// What the redirect says, as far as it can be believed.
fn answer<'p>(
    consents: &Consents,
    flow: &entity::oauth_flow::Model,
    params: &'p CallbackParams,
) -> Answer<'p> {
    // Checklist 11 (RFC 9207): an answer naming another issuer than the one the request went
    // to is a mix-up; it fails its flow like an error answer, and its code is never redeemed.
    if let Some(issuer) = wrong_issuer(consents, flow, params) {
        tracing::warn!(flow = %flow.id, %issuer, "callback from an unexpected issuer refused");
        return Answer {
            refusal: Some(Problem::new(
                GraphApiProblemCode::Unknown,
                "The answer did not come from the Microsoft sign-in this link started (its \
                 issuer is not the expected one), so Consentry did not use it. Send a new link.",
            )),
            code: None,
            tenant: None,
        };
    }
    let refusal = params.refusal(&consents.repairable_apps);
    if let (Some(refusal), Some((error, _))) = (&refusal, params.error()) {
        // Logged (escaped) for operators; the description is nobody's word.
        tracing::info!(flow = %flow.id, %error, aadsts = ?refusal.aadsts, "the answer is an error");
    }
    Answer {
        code: params.code().filter(|_| refusal.is_none()),
        refusal,
        tenant: params.tenant(),
    }
}

/// The `iss` of an answer that is not the issuer its request went to: exactly
/// `{authority}/{tenant}/v2.0`, with the tenant the admin proved or the flow's tenant when
/// it knows one, else any tenant id (Microsoft's per-tenant issuer). `None` when the answer
/// names none (Microsoft does not advertise `authorization_response_iss_parameter_supported`,
/// so one is not required) or the right one.
fn wrong_issuer<'p>(
    consents: &Consents,
    flow: &entity::oauth_flow::Model,
    params: &'p CallbackParams,
) -> Option<&'p str> {
    let issuer = params.issuer()?;
    let Some(microsoft) = consents.microsoft.as_deref() else {
        return Some(issuer);
    };
    let tenant = microsoft.config().issuer_tenant(issuer);
    let expected = TenantProof::stored(flow.tenant_proof.as_ref())
        .map(|proof| proof.tenant_id)
        .or_else(|| {
            flow.expected_tenant
                .as_deref()
                .and_then(|t| Uuid::try_parse(t).ok())
        });
    match (tenant, expected) {
        (Some(tenant), Some(expected)) if tenant == expected => None,
        (Some(_), None) => None,
        _ => Some(issuer),
    }
}

/// The flow's state now, as a callback result (`Rejected`: it no longer exists).
async fn reread(db: &DatabaseConnection, flow_id: Uuid) -> Result<CallbackResult> {
    let Some(flow) = store::find(db, flow_id).await? else {
        return Ok(CallbackResult::Rejected);
    };
    Ok(match flow.status {
        OAuthFlowStatus::Pending | OAuthFlowStatus::Exchanging => CallbackResult::InProgress,
        _ => finished(&flow, store::outcome_of(&flow)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callback_query_is_read_like_axum_reads_a_form() {
        let params = CallbackParams::from_query(
            "error=access_denied&error_description=AADSTS65004%3A+User+declined&state=s%2B1&tenant=%20",
        )
        .unwrap();
        assert_eq!(params.state(), Some("s+1"));
        assert_eq!(params.code(), None);
        assert_eq!(
            params.error(),
            Some(("access_denied", "AADSTS65004: User declined"))
        );
        assert_eq!(params.tenant(), None, "blank counts as absent");
        assert!(CallbackParams::from_query("").unwrap().state().is_none());
    }

    /// Every user sign-in's kind reads its answer through this: a refusal wins over a code,
    /// and no code at all is a problem that says what to restart.
    #[test]
    fn an_answer_gives_its_code_or_the_problem_that_stops_the_flow() {
        let refusal = Problem::new(GraphApiProblemCode::ConsentDeclined, "declined");
        let answer = |refusal: Option<Problem>, code| Answer {
            refusal,
            code,
            tenant: None,
        };
        assert_eq!(
            answer(None, Some("c0de")).code_or_problem("Send a new link."),
            Ok("c0de")
        );
        assert_eq!(
            answer(Some(refusal.clone()), Some("c0de")).code_or_problem("Send a new link."),
            Err(refusal)
        );
        let none = answer(None, None)
            .code_or_problem("Start the repair again.")
            .unwrap_err();
        assert_eq!(none.code, GraphApiProblemCode::Unknown);
        assert_eq!(
            none.remediation,
            "Microsoft sent no authorization code. Start the repair again."
        );
    }

    #[test]
    fn a_parameter_the_callback_acts_on_may_not_appear_twice() {
        for query in ["state=a&state=b", "state=a&code=1&code=2", "error=&error=x"] {
            assert!(CallbackParams::from_query(query).is_err(), "{query}");
        }
        let params = CallbackParams::from_query("state=a&extra=1&extra=2").unwrap();
        assert_eq!(params.state(), Some("a"), "other parameters are ignored");
    }

    #[test]
    fn debug_names_the_parameters_and_shows_no_value() {
        let params =
            CallbackParams::from_query("code=SECRET-CODE&state=SECRET-STATE&tenant=x").unwrap();
        let debug = format!("{params:?}");
        assert_eq!(
            debug,
            r#"CallbackParams { names: ["code", "state", "tenant"] }"#
        );
    }

    /// What the `callback_query` fuzz target checks, on the inputs it kept.
    #[test]
    fn fuzz_regressions_show_no_value_and_read_like_a_plain_form() {
        for (name, query) in crate::fuzz_regressions::text_inputs("callback_query") {
            let parsed = CallbackParams::from_query(&query);
            let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            // The same names with other values: Debug, and whether the query is read at all,
            // must not change.
            let renamed = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs.iter().map(|(n, _)| (n.as_str(), "other value")))
                .finish();
            match (&parsed, &CallbackParams::from_query(&renamed)) {
                (Ok(params), Ok(other)) => {
                    assert_eq!(format!("{params:?}"), format!("{other:?}"), "{name}")
                }
                (Err(error), Err(other)) => assert_eq!(error, other, "{name}"),
                _ => panic!("{name}: the values changed whether the query is read"),
            }
            let Ok(params) = parsed else { continue };
            let value = |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.as_str())
                    .filter(|v| !v.trim().is_empty())
            };
            assert_eq!(params.state(), value("state"), "{name}");
            assert_eq!(params.code(), value("code"), "{name}");
            assert_eq!(params.error().map(|(e, _)| e), value("error"), "{name}");
            assert_eq!(params.tenant(), value("tenant"), "{name}");
        }
    }
}
