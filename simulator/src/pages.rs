//! The simulator's sign-in and consent pages: plain HTML a person can click through, and
//! forms tests can post to directly.

use std::collections::BTreeMap;

use super::scenario::{SimTenant, SimUser};

/// HTML-escapes text for element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    html_escape::encode_quoted_attribute(text).into_owned()
}

const STYLE: &str = "body{font-family:Segoe UI,system-ui,sans-serif;background:#f2f2f2;margin:0}\
main{max-width:440px;margin:48px auto;background:#fff;padding:32px 40px;box-shadow:0 2px 6px rgba(0,0,0,.2)}\
h1{font-size:22px;font-weight:600}.muted{color:#666;font-size:13px}ul{padding-left:20px}\
label{display:block;margin:6px 0}button{padding:8px 24px;margin-right:8px;font-size:15px}\
button.primary{background:#0067b8;color:#fff;border:0}.banner{background:#fff4ce;padding:8px;font-size:13px}\
table{border-collapse:collapse;font-size:13px}td,th{text-align:left;padding:4px 8px 4px 0;vertical-align:top}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>\
         <p class=\"banner\">Microsoft sign-in <b>simulator</b> (Consentry demo). No real account is used.</p>{body}</main></body></html>",
        title = escape(title)
    )
}

/// The request parameters, carried through the form as hidden fields.
fn hidden(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "user" | "decision"))
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect()
}

/// Every user of `tenants` to pick from: `signed_in` (the browser's session) checked when it
/// is among them, else the first.
fn user_choices(tenants: &[SimTenant], signed_in: Option<uuid::Uuid>) -> String {
    let mut html = String::new();
    let offered = signed_in.filter(|id| {
        tenants
            .iter()
            .any(|tenant| tenant.users.iter().any(|user| user.id == *id))
    });
    let mut first = true;
    for tenant in tenants {
        for user in &tenant.users {
            let checked = match offered {
                Some(id) => user.id == id,
                None => first,
            };
            html.push_str(&user_choice(tenant, user, checked));
            first = false;
        }
    }
    if html.is_empty() {
        html.push_str("<p>No users in this tenant.</p>");
    }
    html
}

fn user_choice(tenant: &SimTenant, user: &SimUser, checked: bool) -> String {
    format!(
        "<label><input type=\"radio\" name=\"user\" value=\"{id}\"{checked}> {name} &lt;{upn}&gt; <span class=\"muted\">{role} · {tenant}</span></label>",
        id = user.id,
        checked = if checked { " checked" } else { "" },
        name = escape(&user.display_name),
        upn = escape(&user.user_principal_name),
        role = if user.is_admin {
            "Global Administrator"
        } else {
            "user"
        },
        tenant = escape(&tenant.display_name),
    )
}

/// The consent page of `adminconsent` and `authorize`.
pub(crate) fn consent(
    action: &str,
    heading: &str,
    app_name: &str,
    permissions: &[String],
    tenants: &[SimTenant],
    signed_in: Option<uuid::Uuid>,
    params: &BTreeMap<String, String>,
) -> String {
    let permissions: String = permissions
        .iter()
        .map(|p| format!("<li>{}</li>", escape(p)))
        .collect();
    page(
        heading,
        &format!(
            "<h1>{heading}</h1><p><b>{app}</b> wants permission to:</p><ul>{permissions}</ul>\
             <form method=\"post\" action=\"{action}\"><p>Sign in as:</p>{users}{hidden}\
             <p class=\"muted\">Accepting lets the app use this data as described.</p>\
             <button class=\"primary\" type=\"submit\" name=\"decision\" value=\"accept\">Accept</button>\
             <button type=\"submit\" name=\"decision\" value=\"cancel\">Cancel</button></form>",
            heading = escape(heading),
            app = escape(app_name),
            action = escape(action),
            users = user_choices(tenants, signed_in),
            hidden = hidden(params),
        ),
    )
}

/// An error shown on the sign-in page itself (no redirect), like Microsoft's for an unknown
/// app or an unregistered redirect URI.
/// The page at the simulator's own address: what it is, and who can sign in where.
pub(crate) fn index(tenants: &[SimTenant]) -> String {
    let rows: String = tenants
        .iter()
        .map(|tenant| {
            let users: Vec<String> = tenant
                .users
                .iter()
                .map(|u| {
                    format!(
                        "{}{}",
                        escape(&u.user_principal_name),
                        if u.is_admin { " (admin)" } else { "" }
                    )
                })
                .collect();
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&tenant.display_name),
                escape(&tenant.domain),
                users.join("<br>")
            )
        })
        .collect();
    page(
        "Microsoft simulator",
        &format!(
            "<h1>Microsoft simulator</h1>\
             <p>This stands in for Microsoft's sign-in pages and Microsoft Graph. You do not use \
             it directly: Consentry's consent links bring you to its sign-in page, where you \
             pick one of these accounts (no password).</p>\
             <table><thead><tr><th>Tenant</th><th>Domain</th><th>Accounts</th></tr></thead>\
             <tbody>{rows}</tbody></table>\
             <p class=\"muted\">For scripts: <code>GET /_simulator/tenants</code> lists the tenants \
             as JSON, <code>GET /_simulator/requests</code> what Consentry asked.</p>"
        ),
    )
}

pub(crate) fn error(code: u64, message: &str) -> String {
    page(
        "Sign in to your account",
        &format!(
            "<h1>Sorry, but we’re having trouble signing you in.</h1><p>AADSTS{code}: {}</p>",
            escape(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_escaped_in_the_page() {
        let mut params = BTreeMap::new();
        params.insert(
            "state".to_owned(),
            "\"><script>alert(1)</script>".to_owned(),
        );
        let html = consent(
            "/t/v2.0/adminconsent",
            "Permissions requested",
            "<App>",
            &["x".into()],
            &[],
            None,
            &params,
        );
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;App&gt;"));
        let page = error(1, "<i>marker</i>");
        assert!(!page.contains("<i>marker") && page.contains("&lt;i&gt;marker"));
    }

    #[test]
    fn whoever_signed_in_is_chosen_on_the_next_page() {
        let tenant = SimTenant::healthy("contoso.onmicrosoft.com", "Contoso");
        let (admin, user) = (&tenant.users[0], &tenant.users[1]);
        let checked = |signed_in| {
            let html = user_choices(std::slice::from_ref(&tenant), signed_in);
            html.split("<label>")
                .filter(|choice| choice.contains(" checked"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let first = checked(None);
        assert_eq!(first.len(), 1);
        assert!(first[0].contains(&admin.id.to_string()));
        let session = checked(Some(user.id));
        assert_eq!(session.len(), 1);
        assert!(session[0].contains(&user.id.to_string()));
        // Someone signed in elsewhere: the first user, as without a session.
        assert_eq!(checked(Some(uuid::Uuid::new_v4())), first);
    }
}
