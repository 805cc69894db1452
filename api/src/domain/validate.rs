//! Input rules for clients, with messages that say how to fix the input.

use uuid::Uuid;

use super::error::{Error, Result};

pub(crate) const MAX_CLIENT_NAME_CHARS: usize = 200;

/// A client's display name: trimmed, 1–200 characters, no control characters.
pub(crate) fn client_name(field: &str, raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(Error::bad_input(field, "the client name is required"));
    }
    let chars = name.chars().count();
    if chars > MAX_CLIENT_NAME_CHARS {
        return Err(Error::bad_input(
            field,
            format!(
                "the client name is {chars} characters long; the limit is {MAX_CLIENT_NAME_CHARS}"
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::bad_input(
            field,
            "the client name must not contain control characters (tabs, line breaks)",
        ));
    }
    Ok(name.to_owned())
}

/// The key names are compared by: case-insensitive on every database.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// A DNS domain name such as `contoso.com` or `contoso.onmicrosoft.com`, lower-cased.
/// Internationalised names are accepted in their ASCII (`xn--`) form.
pub(crate) fn domain(field: &str, raw: &str) -> Result<String> {
    let domain = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let fail = |why: &str| {
        Err(Error::bad_input(
            field,
            format!(
                "{:?} is not a valid domain name: {why} (example: contoso.com)",
                raw.trim()
            ),
        ))
    };
    if domain.is_empty() {
        return fail("it is empty");
    }
    if domain.len() > 253 {
        return fail("it is longer than 253 characters");
    }
    if !domain.is_ascii() {
        return fail("use the ASCII (xn--) form of internationalised names");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return fail("it needs at least two labels");
    }
    for label in &labels {
        if label.is_empty() {
            return fail("it has an empty label");
        }
        if label.len() > 63 {
            return fail("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return fail("labels may only contain letters, digits and hyphens");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return fail("a label starts or ends with a hyphen");
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return fail("the top-level label is numeric (IP addresses are not domains)");
    }
    Ok(domain)
}

/// A Microsoft Entra tenant id: a GUID in its usual hyphenated form.
pub(crate) fn tenant_id(field: &str, raw: &str) -> Result<Uuid> {
    let trimmed = raw.trim();
    let parsed = (trimmed.len() == 36)
        .then(|| Uuid::try_parse(trimmed).ok())
        .flatten();
    parsed.filter(|id| !id.is_nil()).ok_or_else(|| {
        Error::bad_input(
            field,
            format!(
                "{trimmed:?} is not a tenant id: expected a GUID like 72f988bf-86f1-41af-91ab-2d7cd011db47 \
                 (Entra admin center → Overview → Tenant ID)"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            client_name("name", "  Contoso Ltd ").unwrap(),
            "Contoso Ltd"
        );
        assert!(client_name("name", "   ").is_err());
        assert!(client_name("name", &"x".repeat(200)).is_ok());
        assert!(
            client_name("name", &"é".repeat(200)).is_ok(),
            "limit counts characters, not bytes"
        );
        assert!(client_name("name", &"x".repeat(201)).is_err());
        assert!(client_name("name", "a\nb").is_err());
    }

    #[test]
    fn domains_follow_dns_rules() {
        assert_eq!(domain("d", "Contoso.COM.").unwrap(), "contoso.com");
        assert_eq!(
            domain("d", "xn--mnchen-3ya.de").unwrap(),
            "xn--mnchen-3ya.de"
        );
        assert_eq!(
            domain("d", "contoso.onmicrosoft.com").unwrap(),
            "contoso.onmicrosoft.com"
        );
        for bad in [
            "",
            "contoso",
            "-contoso.com",
            "contoso-.com",
            "con toso.com",
            "contoso..com",
            "10.0.0.1",
            "münchen.de",
            "contoso.com/path",
            "https://contoso.com",
        ] {
            assert!(domain("d", bad).is_err(), "{bad:?} accepted");
        }
        assert!(domain("d", &format!("{}.com", "a".repeat(64))).is_err());
    }

    #[test]
    fn tenant_ids_are_hyphenated_guids() {
        let id = tenant_id("t", " 72F988BF-86F1-41AF-91AB-2D7CD011DB47 ").unwrap();
        assert_eq!(id.to_string(), "72f988bf-86f1-41af-91ab-2d7cd011db47");
        for bad in [
            "",
            "contoso.com",
            "72f988bf86f141af91ab2d7cd011db47",
            "{72f988bf-86f1-41af-91ab-2d7cd011db47}",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert!(tenant_id("t", bad).is_err(), "{bad:?} accepted");
        }
    }
}
