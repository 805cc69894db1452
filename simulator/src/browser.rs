//! The simulator's consent and sign-in pages driven as a browser would: open the link, pick a
//! user, press a button, and post the page's own form. Tests and the benchmark tool use it.

use anyhow::{Context, bail};
use url::Url;
use uuid::Uuid;

fn unescape(text: &str) -> String {
    html_escape::decode_html_entities(text).into_owned()
}

/// The value of `name="…"` in one tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = start + tag[start..].find('"')?;
    Some(unescape(&tag[start..end]))
}

/// Opens `link` (a consent or sign-in link), picks `user` on the page and presses the
/// `decision` button (`accept` or `cancel`), posting the form exactly as the page would.
/// Returns where Microsoft sends the browser back to: the redirect URI with its query.
/// `http` must not follow redirects.
pub async fn consent(
    http: &reqwest::Client,
    link: &str,
    user: Uuid,
    decision: &str,
) -> anyhow::Result<Url> {
    let link = Url::parse(link).context("the link is not a URL")?;
    let page = http.get(link.clone()).send().await?;
    if !page.status().is_success() {
        bail!("the consent page answered {}", page.status());
    }
    let html = page.text().await?;
    let form_start = html.find("<form").context("the page has no form")?;
    let form_end = html[form_start..]
        .find('>')
        .context("the form tag is not closed")?;
    let form_tag = &html[form_start..form_start + form_end];
    let action = link.join(&attribute(form_tag, "action").context("the form has no action")?)?;
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut offered = false;
    for tag in html.split("<input").skip(1) {
        let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
        let (Some(name), Some(value)) = (attribute(tag, "name"), attribute(tag, "value")) else {
            continue;
        };
        match attribute(tag, "type").as_deref() {
            Some("radio") => offered |= value == user.to_string(),
            _ => fields.push((name, value)),
        }
    }
    if !offered {
        bail!("the page does not offer user {user}");
    }
    if !html.contains(&format!("value=\"{decision}\"")) {
        bail!("the page has no {decision} button");
    }
    fields.push(("user".into(), user.to_string()));
    fields.push(("decision".into(), decision.into()));
    let response = http.post(action).form(&fields).send().await?;
    if response.status() != reqwest::StatusCode::FOUND {
        bail!(
            "Microsoft answered {} instead of redirecting back",
            response.status()
        );
    }
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .context("the redirect has no Location")?
        .to_str()?;
    Ok(Url::parse(location)?)
}

/// Admin consent as the admin's browser goes through it: signs in as `user` on the link
/// (Microsoft's sign-in page), lets the redirect URI (Consentry's callback) send the browser
/// on to Microsoft's consent page for the tenant the sign-in proved, and presses `decision`
/// there. Returns where Microsoft then sends the browser back to: the callback of the
/// consent step. Fails when the sign-in's callback ends the flow instead of going on (its
/// answer is in the error). `http` must not follow redirects.
pub async fn admin_consent(
    http: &reqwest::Client,
    link: &str,
    user: Uuid,
    decision: &str,
) -> anyhow::Result<Url> {
    let back = consent(http, link, user, "accept").await?;
    let onward = sign_in_callback(http, &back).await?;
    consent(http, onward.as_str(), user, decision).await
}

/// Opens the callback of a sign-in and returns where it sends the browser on to: Microsoft's
/// consent page. Fails when it answers anything else.
pub async fn sign_in_callback(http: &reqwest::Client, callback: &Url) -> anyhow::Result<Url> {
    let response = http.get(callback.clone()).send().await?;
    let status = response.status();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    match location {
        Some(location) if status.is_redirection() && location.contains("/adminconsent") => {
            Ok(Url::parse(&location)?)
        }
        _ => bail!(
            "the sign-in's callback answered {status} ({}) instead of going on to the consent page",
            location.unwrap_or_default()
        ),
    }
}
