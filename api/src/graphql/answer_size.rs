//! The size budget of one answer, counted while it is resolved: past the budget every field
//! still to come stops at once, and the operation answers one `RESPONSE_TOO_LARGE` error
//! instead of a partial answer.
//!
//! Each resolved value is counted once, as the JSON it becomes: an object or a list by its
//! punctuation, keys and leaf values (its objects and lists are resolved, and counted, on their
//! own), a custom scalar (`JSON`) whole. The count is an upper bound of the `data` the answer
//! would carry, so an answer within it is within the budget.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_graphql::{
    Value,
    registry::{MetaType, Registry},
};

/// The budget of answers on one connection, when the transport allows less than the server
/// (a WebSocket's write buffer): put in the connection's data by the transport.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResponseCap(pub usize);

/// What one answer has spent of its budget.
#[derive(Debug)]
pub(crate) struct AnswerSize {
    budget: AtomicUsize,
    spent: AtomicUsize,
    exceeded: AtomicBool,
}

impl AnswerSize {
    /// An answer of at most `budget` bytes.
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget: AtomicUsize::new(budget),
            spent: AtomicUsize::new(0),
            exceeded: AtomicBool::new(false),
        }
    }

    /// Lowers the budget to `cap` bytes (a transport's own limit).
    pub(crate) fn cap(&self, cap: usize) {
        self.budget.fetch_min(cap, Ordering::Relaxed);
    }

    /// Starts the answer (again, for each event of a subscription) with nothing spent.
    pub(crate) fn restart(&self) {
        self.spent.store(0, Ordering::Relaxed);
        self.exceeded.store(false, Ordering::Relaxed);
    }

    pub(crate) fn budget(&self) -> usize {
        self.budget.load(Ordering::Relaxed)
    }

    /// Whether the answer went over its budget.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Adds `bytes`; false once the answer is over its budget.
    pub(crate) fn spend(&self, bytes: usize) -> bool {
        let spent = self
            .spent
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes);
        if spent > self.budget() {
            self.exceeded.store(true, Ordering::Relaxed);
        }
        !self.exceeded()
    }
}

/// The bytes `value` adds to the answer, as the value of a field (or a list item) whose type is
/// `return_type`; its own objects and lists are not counted here, they are counted as they are
/// resolved.
pub(crate) fn own_bytes(value: &Value, return_type: &str, registry: &Registry) -> usize {
    match value {
        Value::Object(fields) => {
            if is_scalar(return_type, registry) {
                return json_bytes(value);
            }
            // `{}` and, per field, `"key":` and a comma.
            2 + fields
                .iter()
                .map(|(key, value)| key.len() + 4 + leaf_bytes(value))
                .sum::<usize>()
        }
        Value::List(items) => {
            if is_scalar(return_type, registry) {
                return json_bytes(value);
            }
            2 + items.iter().map(|item| 1 + leaf_bytes(item)).sum::<usize>()
        }
        // A leaf is counted by the object or list that holds it.
        _ => 0,
    }
}

/// Whether a (qualified) type such as `JSON!` is a scalar rather than an object, an interface,
/// a union or a list.
fn is_scalar(return_type: &str, registry: &Registry) -> bool {
    let name = return_type.trim_end_matches('!');
    !name.starts_with('[') && matches!(registry.types.get(name), Some(MetaType::Scalar { .. }))
}

/// A leaf's size as JSON; 0 for objects and lists (counted on their own).
fn leaf_bytes(value: &Value) -> usize {
    match value {
        Value::Object(_) | Value::List(_) => 0,
        leaf => json_bytes(leaf),
    }
}

/// The size of `value` written as JSON, at least.
pub(crate) fn json_bytes(value: &Value) -> usize {
    match value {
        Value::Null => 4,
        Value::Boolean(true) => 4,
        Value::Boolean(false) => 5,
        Value::Number(number) => number_bytes(number),
        Value::String(text) => string_bytes(text),
        Value::Enum(name) => name.len() + 2,
        // Written as an array of numbers.
        Value::Binary(bytes) => 2 + bytes.len() * 4,
        Value::List(items) => 2 + items.iter().map(|v| 1 + json_bytes(v)).sum::<usize>(),
        Value::Object(fields) => {
            2 + fields
                .iter()
                .map(|(key, value)| string_bytes(key) + 2 + json_bytes(value))
                .sum::<usize>()
        }
    }
}

fn number_bytes(number: &serde_json::Number) -> usize {
    fn digits(mut n: u64) -> usize {
        let mut digits = 1;
        while n >= 10 {
            n /= 10;
            digits += 1;
        }
        digits
    }
    if let Some(n) = number.as_u64() {
        digits(n)
    } else if let Some(n) = number.as_i64() {
        1 + digits(n.unsigned_abs())
    } else {
        // The longest a float is written (`-1.7976931348623157e308`).
        24
    }
}

/// A string as JSON: quotes, and escapes for what needs them.
fn string_bytes(text: &str) -> usize {
    2 + text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use async_graphql::{Name, indexmap::IndexMap};

    use super::*;

    #[test]
    fn json_bytes_are_an_upper_bound_of_what_serde_json_writes() {
        let mut object = IndexMap::new();
        object.insert(Name::new("name"), Value::String("Con\"toso\n\u{1}é".into()));
        object.insert(Name::new("n"), Value::from(-1234));
        object.insert(Name::new("f"), Value::from(0.1));
        object.insert(Name::new("ok"), Value::Boolean(false));
        object.insert(Name::new("none"), Value::Null);
        object.insert(Name::new("status"), Value::Enum(Name::new("AUTHORISED")));
        object.insert(
            Name::new("list"),
            Value::List(vec![Value::from(1), Value::from("two")]),
        );
        let value = Value::Object(object);
        let written = serde_json::to_string(&value).unwrap().len();
        let counted = json_bytes(&value);
        assert!(counted >= written, "{counted} < {written}");
        assert!(counted <= written + 24, "{counted} ≫ {written}");
    }

    #[test]
    fn an_answer_over_its_budget_stays_over_until_restarted() {
        let size = AnswerSize::new(100);
        size.cap(1000);
        assert_eq!(size.budget(), 100);
        size.cap(10);
        assert!(size.spend(10));
        assert!(!size.spend(1));
        assert!(size.exceeded());
        assert!(!size.spend(0));
        size.restart();
        assert!(!size.exceeded());
        assert_eq!(size.budget(), 10);
    }
}
