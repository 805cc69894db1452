//! Bounds on every string Consentry keeps from Microsoft.

/// The longest Microsoft message Consentry keeps (without trace and correlation lines).
pub(crate) const MAX_MESSAGE_CHARS: usize = 1000;
/// The longest name Consentry keeps from Microsoft: a user, an organisation, an application.
pub(crate) const MAX_NAME_CHARS: usize = 256;

/// `text` trimmed, and cut to at most `max_chars` characters (with `…` when cut). Every
/// string Consentry stores or shows from Microsoft passes through here first, so a hostile or
/// broken answer can never grow a row, an event or a page without bound.
pub(crate) fn bounded(text: &str, max_chars: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some(_) => {
            let cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
            format!("{}…", cut.trim_end())
        }
    }
}

/// Serde: an optional string from Microsoft, bounded to [`MAX_NAME_CHARS`].
pub(crate) fn bounded_name<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value: Option<String> = serde::Deserialize::deserialize(deserializer)?;
    Ok(value.map(|v| bounded(&v, MAX_NAME_CHARS)))
}
