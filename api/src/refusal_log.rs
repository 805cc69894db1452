//! Log lines about refusals (rate limits, caps) at a bounded rate (checklist 98): a caller
//! who loops refused requests must not write a log line per request. At most one line per
//! caller and kind of refusal per interval; the next line says how many went unwritten.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// How often one caller's refusals of one kind may each be logged.
pub(crate) const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Callers remembered at once: past it, those quiet for an interval are forgotten, and while
/// it is still full new ones are not logged (a flood of distinct callers writes nothing).
const MAX_TRACKED: usize = 10_000;

/// When each caller's refusals were last logged, and how many since went unwritten.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    interval: Duration,
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug)]
struct Seen {
    logged_at: Instant,
    unwritten: u64,
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self::new(REFUSAL_LOG_INTERVAL)
    }
}

impl RefusalLog {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to log this refusal of `caller`: `Some(n)` to write a line now, saying that `n`
    /// refusals of the kind went unwritten since the last one; `None` to stay quiet.
    pub(crate) fn admit(&self, kind: &str, caller: &str) -> Option<u64> {
        self.admit_at(kind, caller, Instant::now())
    }

    fn admit_at(&self, kind: &str, caller: &str, now: Instant) -> Option<u64> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = format!("{kind}\u{0}{caller}");
        if let Some(entry) = seen.get_mut(&key) {
            if now.duration_since(entry.logged_at) < self.interval {
                entry.unwritten = entry.unwritten.saturating_add(1);
                return None;
            }
            entry.logged_at = now;
            return Some(std::mem::take(&mut entry.unwritten));
        }
        if seen.len() >= MAX_TRACKED {
            let interval = self.interval;
            seen.retain(|_, entry| now.duration_since(entry.logged_at) < interval);
            if seen.len() >= MAX_TRACKED {
                return None;
            }
        }
        seen.insert(
            key,
            Seen {
                logged_at: now,
                unwritten: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checklist 98: a caller's refusals are logged once per interval, with a count of the
    /// rest; each caller and each kind on its own.
    #[test]
    fn checklist_98_refusals_are_logged_once_per_interval_with_a_count() {
        let log = RefusalLog::new(Duration::from_secs(60));
        let start = Instant::now();
        assert_eq!(log.admit_at("mutations", "msp-a", start), Some(0));
        for second in 1..=59 {
            let at = start + Duration::from_secs(second);
            assert_eq!(log.admit_at("mutations", "msp-a", at), None);
        }
        assert_eq!(log.admit_at("mutations", "msp-b", start), Some(0));
        assert_eq!(log.admit_at("queries", "msp-a", start), Some(0));
        let later = start + Duration::from_secs(60);
        assert_eq!(log.admit_at("mutations", "msp-a", later), Some(59));
        assert_eq!(log.admit_at("mutations", "msp-a", later), None);
        assert_eq!(
            log.admit_at("mutations", "msp-a", later + Duration::from_secs(60)),
            Some(1)
        );
    }

    #[test]
    fn a_flood_of_distinct_callers_stays_bounded_and_quiet() {
        let log = RefusalLog::new(Duration::from_secs(60));
        let start = Instant::now();
        for caller in 0..MAX_TRACKED {
            assert_eq!(log.admit_at("sockets", &caller.to_string(), start), Some(0));
        }
        assert_eq!(log.admit_at("sockets", "one more", start), None);
        let later = start + Duration::from_secs(61);
        assert_eq!(log.admit_at("sockets", "one more", later), Some(0));
        assert_eq!(
            log.seen.lock().unwrap().len(),
            1,
            "the quiet ones were forgotten"
        );
    }
}
