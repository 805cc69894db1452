//! Small helpers for the few HTML pages the server renders itself.

/// HTML-escapes text for element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    html_escape::encode_quoted_attribute(text).into_owned()
}
