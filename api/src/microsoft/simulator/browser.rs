//! The simulator's consent and sign-in pages driven as a browser would: open the link, pick a
//! user, press a button, and post the page's own form. Tests and the benchmark tool use it.

use anyhow::{Context, bail};
use url::Url;
use uuid::Uuid;

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
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
