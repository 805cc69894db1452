//! The one table that turns Microsoft's errors — AADSTS codes from the identity platform and
//! error codes from Graph — into a [`Problem`]: our code, Microsoft's words, and what a
//! technician can do about it (reference §3, §6). Nothing else in Consentry parses them.

use entity::enums::GraphApiProblemCode;

use crate::microsoft::text::{MAX_MESSAGE_CHARS, MAX_NAME_CHARS, bounded};

/// What went wrong, ready for a tile or a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub code: GraphApiProblemCode,
    /// The AADSTS number, when Microsoft gave one.
    pub aadsts: Option<u64>,
    /// Microsoft's message without its trace and correlation ids.
    pub message: Option<String>,
    /// What to do about it.
    pub remediation: String,
    /// A missing service principal's application id (AADSTS650052).
    pub app_id: Option<String>,
    /// Its display name, when the message names it.
    pub app_display_name: Option<String>,
    /// True when the fault is Consentry's own configuration (e.g. its client secret), not
    /// the client tenant's: such errors must not mark client tiles as failed.
    pub ours: bool,
}

impl Problem {
    /// A problem in Consentry's words only.
    pub(crate) fn new(code: GraphApiProblemCode, remediation: impl Into<String>) -> Self {
        Self {
            code,
            aadsts: None,
            message: None,
            remediation: remediation.into(),
            app_id: None,
            app_display_name: None,
            ours: false,
        }
    }

    /// Marks the problem as Consentry's own configuration's (see [`Problem::ours`]).
    pub(crate) fn ours(mut self) -> Self {
        self.ours = true;
        self
    }
}

/// The AADSTS numbers in a Microsoft error: `error_codes` when present, else the
/// `AADSTSnnnn:` prefix of the description.
pub(crate) fn aadsts_codes(error_codes: &[u64], description: &str) -> Vec<u64> {
    if !error_codes.is_empty() {
        return error_codes.to_vec();
    }
    description
        .trim()
        .strip_prefix("AADSTS")
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .into_iter()
        .collect()
}

/// Microsoft's description without the `AADSTSnnnn: ` prefix and the trace, correlation and
/// timestamp lines it appends.
pub(crate) fn clean_description(description: &str) -> String {
    let first = description
        .split(['\r', '\n'])
        .next()
        .unwrap_or_default()
        .trim();
    let text = match first.strip_prefix("AADSTS") {
        Some(rest) => rest
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start_matches(':')
            .trim(),
        None => first,
    };
    bounded(text, MAX_MESSAGE_CHARS)
}

/// The application id and display name named by an AADSTS650052 message:
/// `…access a service '{appId}'({name}) that your organization …`, or the older
/// `…needs access to a service ("{name}") that your organization …`. The id is kept only
/// when it is a GUID, the name only bounded.
pub(crate) fn missing_service(description: &str) -> (Option<String>, Option<String>) {
    let name_of = |name: &str| Some(bounded(name, MAX_NAME_CHARS)).filter(|n| !n.is_empty());
    if let Some(start) = description.find("service '") {
        let rest = &description[start + "service '".len()..];
        if let Some(end) = rest.find('\'') {
            let app_id = uuid::Uuid::try_parse(rest[..end].trim())
                .ok()
                .map(|id| id.to_string());
            let name = rest[end + 1..]
                .strip_prefix('(')
                .and_then(|r| r.split_once(')'))
                .and_then(|(name, _)| name_of(name));
            return (app_id, name);
        }
    }
    if let Some(start) = description.find("service (\"") {
        let rest = &description[start + "service (\"".len()..];
        if let Some((name, _)) = rest.split_once("\")") {
            return (None, name_of(name));
        }
    }
    (None, None)
}

/// A problem reported by a browser redirect: the `error` and `error_description` of a
/// callback. Nothing a redirect carries is authenticated — anyone can send a browser, or
/// request the callback themselves, with any text — so only its AADSTS number and its
/// `error` name choose the problem; the words are Consentry's own, Microsoft's message is
/// not kept, and no name is read from it (checklist 96). A missing service principal is the
/// application the description names only when `repairable` says Consentry may repair it
/// anyway (so a redirect can only choose among those); otherwise the Teams admin API, the
/// usual cause. Its name comes from Consentry's own table.
pub(crate) fn from_redirect(
    error: &str,
    description: &str,
    repairable: &dyn Fn(&str) -> bool,
) -> Problem {
    use super::known::{TEAMS_ADMIN_API_APP_ID, display_name};
    let codes = aadsts_codes(&[], description);
    let error = bounded(error, 64);
    let mut problem = from_identity(&error, "", &codes);
    problem.message = None;
    if problem.code == GraphApiProblemCode::MissingServicePrincipal {
        let app_id = missing_service(description)
            .0
            .filter(|id| repairable(id))
            .unwrap_or_else(|| TEAMS_ADMIN_API_APP_ID.to_owned());
        let name = display_name(&app_id);
        let app = match name {
            Some(name) => format!("the {name} ({app_id})"),
            None => format!("application {app_id}"),
        };
        let usual = if app_id == TEAMS_ADMIN_API_APP_ID {
            ", common in tenants without Teams licences"
        } else {
            ""
        };
        problem.remediation = format!(
            "The tenant is missing the service principal of an API Consentry needs: most likely \
             {app}{usual}. Create it with createServicePrincipal (no PowerShell needed), wait a \
             few minutes, then authorise again."
        );
        problem.app_display_name = name.map(str::to_owned);
        problem.app_id = Some(app_id);
    }
    problem
}

/// A problem reported by the identity platform (`error`, `error_description`, `error_codes`),
/// from a callback or a token response.
pub fn from_identity(error: &str, description: &str, error_codes: &[u64]) -> Problem {
    use GraphApiProblemCode::*;
    let codes = aadsts_codes(error_codes, description);
    let first = codes.first().copied();
    let message = clean_description(description);
    let mut problem = match first {
        Some(650052) => {
            let (app_id, name) = missing_service(description);
            let what = match (&name, &app_id) {
                (Some(name), Some(id)) => format!("{name} ({id})"),
                (Some(name), None) => name.clone(),
                (None, Some(id)) => id.clone(),
                (None, None) => "an API Consentry needs".to_owned(),
            };
            let mut p = Problem::new(
                MissingServicePrincipal,
                format!(
                    "The tenant has no service principal for {what}, usually because it has no Teams licence. \
                     Create it with createServicePrincipal (no PowerShell needed), wait a few minutes, then authorise again."
                ),
            );
            p.app_id = app_id;
            p.app_display_name = name;
            p
        }
        Some(500011) => Problem::new(
            MissingServicePrincipal,
            "The tenant has no service principal for a resource Consentry needs. Create it with \
             createServicePrincipal, wait a few minutes, then authorise again.",
        ),
        Some(65004) => Problem::new(
            ConsentDeclined,
            "The admin declined or cancelled the consent. Send the link again and ask them to press Accept.",
        ),
        Some(90094 | 90095 | 900941) => Problem::new(
            AdminConsentRequired,
            "The account that signed in cannot consent for the whole tenant. Sign in as a Global \
             Administrator, Privileged Role Administrator or Cloud Application Administrator of the \
             client's tenant (or approve the request in Entra ID's admin consent workflow).",
        ),
        Some(65001 | 700016 | 70000) => Problem::new(
            ConsentRevoked,
            "The tenant no longer has Consentry's app, or its consent was removed. Authorise again.",
        ),
        Some(700082 | 70008 | 50173 | 70043) => Problem::new(
            ConsentRevoked,
            "The stored sign-in has expired or was revoked. The user must consent again.",
        ),
        Some(50076 | 50079 | 53003 | 53000 | 53001) => Problem::new(
            ConditionalAccess,
            "Multi-factor authentication or a Conditional Access policy blocked the sign-in. Complete \
             MFA on the sign-in page, or have the tenant's admin exclude the signing-in admin from the policy, then try again.",
        ),
        Some(90002) => Problem::new(
            WrongTenant,
            "Microsoft does not know this tenant. Check the client's domain or tenant id.",
        ),
        Some(50020 | 700005) => Problem::new(
            WrongTenant,
            "The person who signed in belongs to another tenant. Sign in with an admin account of the client's own tenant.",
        ),
        Some(50105) => Problem::new(
            AdminConsentRequired,
            "The signed-in user is not assigned to Consentry's app in this tenant. Assign them under \
             Enterprise applications, or sign in as an admin.",
        ),
        Some(90008) => Problem::new(
            PermissionsMissing,
            "Consentry's app registration must request at least Microsoft Graph User.Read.",
        )
        .ours(),
        Some(7000215 | 7000222 | 7000112 | 700027) => Problem::new(
            IdentityProviderUnavailable,
            "Consentry's own client secret is invalid or expired. An operator must set a new \
             CONSENTRY_MS_CLIENT_SECRET; client tenants are not affected.",
        )
        .ours(),
        Some(50011 | 700054 | 9001023 | 70011 | 28000 | 28003 | 700022 | 90023) => Problem::new(
            Unknown,
            "Consentry's request was not accepted (redirect URI or scope). An operator must check \
             CONSENTRY_PUBLIC_URL against the app registration's redirect URIs.",
        )
        .ours(),
        Some(54005) => Problem::new(
            Unknown,
            "This sign-in was already used. Start the consent again.",
        ),
        Some(50126) => Problem::new(
            Unknown,
            "The username or password was wrong. Try the sign-in again.",
        ),
        _ => match error {
            "access_denied" | "consent_required" | "permission_denied" => Problem::new(
                ConsentDeclined,
                "The admin declined or cancelled the consent. Send the link again and ask them to press Accept.",
            ),
            "interaction_required" | "login_required" => Problem::new(
                ConditionalAccess,
                "Microsoft needs the admin to sign in interactively again (MFA or a policy). Start the consent again.",
            ),
            "temporarily_unavailable" | "server_error" => Problem::new(
                IdentityProviderUnavailable,
                "Microsoft's sign-in service failed for a moment. Try again in a few minutes.",
            ),
            "invalid_client" | "unauthorized_client" => Problem::new(
                IdentityProviderUnavailable,
                "Microsoft refused Consentry's app credentials. An operator must check \
                 CONSENTRY_MS_CLIENT_ID and CONSENTRY_MS_CLIENT_SECRET.",
            )
            .ours(),
            _ => Problem::new(
                Unknown,
                "Microsoft reported an error Consentry does not recognise. Try again, and contact \
                 support if it persists.",
            ),
        },
    };
    problem.aadsts = first;
    problem.message = (!message.is_empty()).then_some(message);
    problem
}

/// A problem reported by Microsoft Graph (`{"error":{"code","message"}}`), with its HTTP status.
pub(crate) fn from_graph(status: u16, code: &str, message: &str) -> Problem {
    use GraphApiProblemCode::*;
    let mut problem = match (status, code) {
        (403, _) | (_, "Authorization_RequestDenied") => Problem::new(
            PermissionsMissing,
            "Microsoft Graph refused: insufficient privileges. The admin who signs in needs the \
             Application Administrator, Cloud Application Administrator or Global Administrator role, \
             and the consent must include the required permissions.",
        ),
        (401, _) | (_, "InvalidAuthenticationToken") => Problem::new(
            ConsentRevoked,
            "Microsoft Graph no longer accepts Consentry's access for this tenant. Authorise again.",
        ),
        (429, _) => Problem::new(
            IdentityProviderUnavailable,
            "Microsoft Graph is throttling requests for this tenant. Consentry retries; try again in a few minutes.",
        ),
        (500..=599, _) => Problem::new(
            IdentityProviderUnavailable,
            "Microsoft Graph failed for a moment. Try again in a few minutes.",
        ),
        _ => Problem::new(
            Unknown,
            "Microsoft Graph reported an error Consentry does not recognise; its message is shown.",
        ),
    };
    let message = bounded(message, MAX_MESSAGE_CHARS);
    problem.message = (!message.is_empty()).then_some(message);
    problem
}

/// A problem for a Microsoft endpoint that could not be reached, timed out, or answered
/// something that is not Microsoft's documented shape.
pub(crate) fn unavailable(detail: &str) -> Problem {
    let mut problem = Problem::new(
        GraphApiProblemCode::IdentityProviderUnavailable,
        "Microsoft could not be reached or answered unexpectedly. Try again in a few minutes.",
    );
    problem.message = Some(detail.to_owned());
    problem
}

#[cfg(test)]
mod tests {
    use super::*;

    const AADSTS650052: &str = "AADSTS650052: The app is trying to access a service \
        '48ac35b8-9aa8-4d74-927d-1f4a14a0b239'(Skype and Teams Tenant Admin API) that your organization \
        'c2d0f6a4-0c39-4a71-8d44-5a6e0c1e7e11' lacks a service principal for. Contact your IT Admin to review \
        the configuration of your service subscriptions or consent to the application in order to create the \
        required service principal.\r\nTrace ID: 0b9c\r\nCorrelation ID: 77aa\r\nTimestamp: 2026-11-26 10:00:00Z";

    #[test]
    fn missing_service_principal_names_the_app_and_offers_the_repair() {
        let problem = from_identity("invalid_client", AADSTS650052, &[650052]);
        assert_eq!(problem.code, GraphApiProblemCode::MissingServicePrincipal);
        assert_eq!(problem.aadsts, Some(650052));
        assert_eq!(
            problem.app_id.as_deref(),
            Some("48ac35b8-9aa8-4d74-927d-1f4a14a0b239")
        );
        assert_eq!(
            problem.app_display_name.as_deref(),
            Some("Skype and Teams Tenant Admin API")
        );
        assert!(problem.remediation.contains("createServicePrincipal"));
        let message = problem.message.unwrap();
        assert!(
            !message.contains("Trace ID") && !message.starts_with("AADSTS"),
            "{message}"
        );
        assert!(!problem.ours);
    }

    #[test]
    fn the_code_is_read_from_the_description_when_error_codes_are_absent() {
        // Callbacks carry only error and error_description.
        let problem = from_identity(
            "access_denied",
            "AADSTS65004: User declined to consent to access the app.",
            &[],
        );
        assert_eq!(problem.code, GraphApiProblemCode::ConsentDeclined);
        assert_eq!(problem.aadsts, Some(65004));
        assert_eq!(
            problem.message.as_deref(),
            Some("User declined to consent to access the app.")
        );
        let older = "AADSTS650052: The app needs access to a service (\"Skype and Teams Tenant Admin API\") that your organization \"contoso\" hasn't subscribed to or enabled.";
        let problem = from_identity("invalid_client", older, &[]);
        assert_eq!(
            problem.app_display_name.as_deref(),
            Some("Skype and Teams Tenant Admin API")
        );
        assert_eq!(problem.app_id, None);
    }

    #[test]
    fn every_code_of_the_reference_maps_to_a_problem_with_advice() {
        use GraphApiProblemCode::*;
        let table: &[(u64, GraphApiProblemCode, bool)] = &[
            (650052, MissingServicePrincipal, false),
            (65001, ConsentRevoked, false),
            (65004, ConsentDeclined, false),
            (90094, AdminConsentRequired, false),
            (90095, AdminConsentRequired, false),
            (900941, AdminConsentRequired, false),
            (90008, PermissionsMissing, true),
            (700016, ConsentRevoked, false),
            (90002, WrongTenant, false),
            (50020, WrongTenant, false),
            (50076, ConditionalAccess, false),
            (50079, ConditionalAccess, false),
            (53003, ConditionalAccess, false),
            (700082, ConsentRevoked, false),
            (70000, ConsentRevoked, false),
            (70008, ConsentRevoked, false),
            (70011, Unknown, true),
            (28000, Unknown, true),
            (28003, Unknown, true),
            (700022, Unknown, true),
            (50011, Unknown, true),
            (50105, AdminConsentRequired, false),
            (7000215, IdentityProviderUnavailable, true),
            (7000222, IdentityProviderUnavailable, true),
            (500011, MissingServicePrincipal, false),
            (50126, Unknown, false),
            (54005, Unknown, false),
            (700005, WrongTenant, false),
            (50173, ConsentRevoked, false),
            (70043, ConsentRevoked, false),
            (9001023, Unknown, true),
        ];
        for &(code, expected, ours) in table {
            let problem = from_identity(
                "invalid_grant",
                &format!("AADSTS{code}: something."),
                &[code],
            );
            assert_eq!(problem.code, expected, "AADSTS{code}");
            assert_eq!(problem.ours, ours, "AADSTS{code}");
            assert_eq!(problem.aadsts, Some(code));
            assert!(problem.remediation.len() > 20, "AADSTS{code} has no advice");
        }
    }

    #[test]
    fn checklist_96_a_redirect_yields_only_its_code_and_consentrys_own_words() {
        let planted = format!(
            "AADSTS650052: The app is trying to access a service '{}'(Evil Corp <b>Backdoor</b>) \
             that your organization lacks a service principal for. Call +1 555 0100 to fix it. {}",
            uuid::Uuid::new_v4(),
            "x".repeat(50_000)
        );
        let problem = from_redirect("invalid_client", &planted, &|_| false);
        assert_eq!(problem.code, GraphApiProblemCode::MissingServicePrincipal);
        assert_eq!(problem.aadsts, Some(650052));
        assert_eq!(problem.message, None, "Microsoft's words are not kept");
        assert_eq!(
            problem.app_id.as_deref(),
            Some(crate::microsoft::known::TEAMS_ADMIN_API_APP_ID),
            "the app to repair comes from Consentry's own table"
        );
        assert!(
            !problem.remediation.contains("Evil"),
            "{}",
            problem.remediation
        );
        assert!(
            !problem.remediation.contains("555"),
            "{}",
            problem.remediation
        );
        let declined = from_redirect("access_denied", "AADSTS65004: Call +1 555 0100.", &|_| true);
        assert_eq!(declined.code, GraphApiProblemCode::ConsentDeclined);
        assert_eq!(declined.message, None);
        assert_eq!(
            from_redirect(&"e".repeat(10_000), "", &|_| true).aadsts,
            None
        );

        // An application the operator allow-listed may be named; its name is still ours.
        let listed = uuid::Uuid::new_v4().to_string();
        let named = format!(
            "AADSTS650052: The app is trying to access a service '{listed}'(Planted Name) that \
             your organization lacks a service principal for."
        );
        let problem = from_redirect("invalid_client", &named, &|id| id == listed);
        assert_eq!(problem.app_id.as_deref(), Some(listed.as_str()));
        assert_eq!(problem.app_display_name, None);
        assert!(!problem.remediation.contains("Planted"));
    }

    #[test]
    fn names_and_ids_from_microsoft_are_bounded() {
        let long = format!(
            "AADSTS650052: a service 'not-a-guid'({}) that your organization lacks",
            "n".repeat(10_000)
        );
        let (app_id, name) = missing_service(&long);
        assert_eq!(app_id, None, "an app id is a GUID or nothing");
        assert!(name.unwrap().chars().count() <= MAX_NAME_CHARS);
        let problem = from_identity("invalid_grant", &"m".repeat(50_000), &[]);
        assert!(problem.message.unwrap().chars().count() <= MAX_MESSAGE_CHARS);
        let graph = from_graph(400, "x", &"m".repeat(50_000));
        assert!(graph.message.unwrap().chars().count() <= MAX_MESSAGE_CHARS);
    }

    #[test]
    fn errors_without_a_code_fall_back_on_the_error_name() {
        assert_eq!(
            from_identity("access_denied", "", &[]).code,
            GraphApiProblemCode::ConsentDeclined
        );
        assert_eq!(
            from_identity("temporarily_unavailable", "", &[]).code,
            GraphApiProblemCode::IdentityProviderUnavailable
        );
        assert!(from_identity("invalid_client", "", &[]).ours);
        assert_eq!(
            from_identity("something_new", "x", &[]).code,
            GraphApiProblemCode::Unknown
        );
    }

    #[test]
    fn graph_errors_map_by_status_and_code() {
        let p = from_graph(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        );
        assert_eq!(p.code, GraphApiProblemCode::PermissionsMissing);
        assert!(p.remediation.contains("Application Administrator"));
        assert_eq!(
            from_graph(429, "TooManyRequests", "").code,
            GraphApiProblemCode::IdentityProviderUnavailable
        );
        assert_eq!(
            from_graph(503, "serviceNotAvailable", "").code,
            GraphApiProblemCode::IdentityProviderUnavailable
        );
        assert_eq!(
            from_graph(401, "InvalidAuthenticationToken", "").code,
            GraphApiProblemCode::ConsentRevoked
        );
    }
}
