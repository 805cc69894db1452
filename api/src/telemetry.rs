//! Structured logs via `tracing`: human-readable text or JSON lines, levels from `RUST_LOG`.
//!
//! Log lines carry values from requests: callback parameters, operation names, ids. In the
//! text format every message and every field of events and spans is written through
//! [`escape_controls`], so no value can start a line of its own or send a terminal escape
//! (checklist 101); JSON lines are escaped by serde_json.

use std::{
    borrow::Cow,
    fmt::{self, Write as _},
    io::IsTerminal,
};

use tracing::{
    Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    EnvFilter, Layer,
    field::RecordFields,
    fmt::{FormatFields, MakeWriter, format::Writer},
    prelude::*,
    registry::LookupSpan,
};

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(format: LogFormat, default_directives: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_directives));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        // Colours are for a person at a terminal; a file or a log collector gets plain text.
        LogFormat::Text => registry
            .with(text_layer(std::io::stderr, std::io::stderr().is_terminal()))
            .try_init(),
        LogFormat::Json => registry.with(json_layer(std::io::stderr)).try_init(),
    };
}

/// The text format: tracing-subscriber's default layout (time, level, spans, target,
/// message, fields) with [`EscapedFields`] writing the messages and fields.
fn text_layer<S, W>(writer: W, ansi: bool) -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(EscapedFields)
        .with_ansi(ansi)
        .with_target(true)
        .with_writer(writer)
}

/// The JSON format: one object per line, the event's fields at the top level.
fn json_layer<S, W>(writer: W) -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer)
}

/// `text` with every character that could end a log line or drive a terminal written as an
/// escape: `\n`, `\r` and `\t`, and `\u{…}` for the other C0 and C1 controls (ESC is
/// `\u{1b}`, NEL `\u{85}`), DEL, and the line and paragraph separators U+2028 and U+2029.
/// Everything else is unchanged (backslashes too, so `?`-formatted strings stay readable).
fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if needs_escape(c) => escaped.extend(c.escape_unicode()),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Writes fields as tracing-subscriber's `DefaultFields` does (the message as it is, then
/// `name=value` separated by spaces), with each message and value through
/// [`escape_controls`]. Used for events and for spans' fields alike.
#[derive(Clone, Copy, Debug, Default)]
struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    /// Nothing written yet (so no separating space).
    empty: bool,
    result: fmt::Result,
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // As `DefaultFields`: a message as it is, other strings quoted.
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut sources = Vec::new();
        let mut source = value.source();
        while let Some(error) = source {
            sources.push(error.to_string());
            source = error.source();
        }
        if sources.is_empty() {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            let name = field.name();
            let sources = sources.join(", ");
            self.record_debug(field, &format_args!("{value} {name}.sources=[{sources}]"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // Metadata of records from the `log` crate, already shown in the line's header.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        self.result = self.write(name, value);
    }
}

impl EscapingVisitor<'_> {
    fn write(&mut self, name: &str, value: &dyn fmt::Debug) -> fmt::Result {
        if !std::mem::take(&mut self.empty) {
            self.writer.write_char(' ')?;
        }
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            if self.writer.has_ansi_escapes() {
                // Italic name, dimmed `=`, as `DefaultFields` writes them.
                write!(self.writer, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")?;
            } else {
                write!(self.writer, "{name}=")?;
            }
        }
        write!(Escaping(&mut self.writer), "{value:?}")
    }
}

/// Passes what is written to it on through [`escape_controls`]. (Escaping works character by
/// character, so it does not matter how a value is cut into writes.)
struct Escaping<'a, 'writer>(&'a mut Writer<'writer>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_str(&escape_controls(s))
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use tracing_subscriber::Registry;

    use super::*;

    /// What a hostile caller puts in a request: CR LF to forge a line, an ANSI colour, and
    /// the Unicode line separator.
    const HOSTILE: &str = "access_denied\r\nFORGED LINE\x1b[31m\u{2028}FORGED TOO";
    const ESCAPED: &str = r"access_denied\r\nFORGED LINE\u{1b}[31m\u{2028}FORGED TOO";

    #[test]
    fn escape_controls_escapes_what_ends_a_line_or_drives_a_terminal() {
        for (raw, escaped) in [
            ("\r\n", r"\r\n"),
            ("\t", r"\t"),
            ("\x1b[31m", r"\u{1b}[31m"),
            ("\0\x07\x08\x0b\x0c\x1f", r"\u{0}\u{7}\u{8}\u{b}\u{c}\u{1f}"),
            ("\x7f", r"\u{7f}"),
            ("\u{85}\u{9b}", r"\u{85}\u{9b}"),
            ("a\u{2028}b\u{2029}c", r"a\u{2028}b\u{2029}c"),
            (HOSTILE, ESCAPED),
        ] {
            assert_eq!(escape_controls(raw), escaped, "{raw:?}");
        }
    }

    #[test]
    fn escape_controls_leaves_everything_else_as_it_is() {
        for text in [
            "",
            "plain",
            r"a\nb \u{1b}",
            "Zürich ✓ 東京 \u{200b}",
            "\"quoted\"",
        ] {
            assert!(
                matches!(escape_controls(text), Cow::Borrowed(t) if t == text),
                "{text:?}"
            );
        }
    }

    /// A log destination the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Logs one event carrying [`HOSTILE`] every way a call site can: `%` and `?` fields, a
    /// plain string field, the message, a span's field at creation and recorded later.
    fn log_hostile_values(layer: impl Layer<Registry> + Send + Sync + 'static) {
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "callback",
                operation = %HOSTILE,
                client = tracing::field::Empty
            );
            span.record("client", tracing::field::display(HOSTILE));
            let _entered = span.enter();
            tracing::warn!(
                error = %HOSTILE,
                debugged = ?HOSTILE,
                string = HOSTILE,
                "refused {HOSTILE}"
            );
        });
    }

    #[test]
    fn text_format_writes_request_values_escaped_on_one_line() {
        let captured = Captured::default();
        let sink = captured.clone();
        log_hostile_values(text_layer(move || sink.clone(), false));

        let text = captured.text();
        let line = text.strip_suffix('\n').unwrap();
        assert!(!line.chars().any(needs_escape), "{text:?}");
        // The default layout: time, level, span with its fields, target, message, fields.
        let (_time, rest) = line.split_once("  WARN ").unwrap();
        let expected = format!(
            "callback{{operation={ESCAPED} client={ESCAPED}}}: api::telemetry::tests: \
             refused {ESCAPED} error={ESCAPED} debugged=\"{ESCAPED}\" string=\"{ESCAPED}\""
        );
        assert_eq!(rest, expected);
    }

    #[test]
    fn text_format_with_colours_escapes_request_values_too() {
        let captured = Captured::default();
        let sink = captured.clone();
        log_hostile_values(text_layer(move || sink.clone(), true));

        let text = captured.text();
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        assert!(
            !text.contains('\r') && !text.contains('\u{2028}'),
            "{text:?}"
        );
        assert!(!text.contains("\x1b[31m"), "{text:?}");
        assert_eq!(text.matches(ESCAPED).count(), 6, "{text:?}");
    }

    #[test]
    fn json_format_writes_request_values_escaped_on_one_line() {
        let captured = Captured::default();
        let sink = captured.clone();
        log_hostile_values(json_layer(move || sink.clone()));

        let text = captured.text();
        let line = text.strip_suffix('\n').unwrap();
        assert!(
            !line.contains(['\r', '\n', '\x1b']) && !line.chars().any(|c| c < ' '),
            "{text:?}"
        );
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["error"], HOSTILE);
        assert_eq!(event["string"], HOSTILE);
        assert_eq!(event["message"], format!("refused {HOSTILE}"));
        assert_eq!(event["span"]["operation"], HOSTILE);
        assert_eq!(event["span"]["client"], HOSTILE);
    }
}
