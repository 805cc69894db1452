//! The table the benchmark prints: one row per measured figure.

use std::fmt::Write as _;

/// How a figure compares with its target.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass,
    Miss,
    /// A figure reported for its trend, with no target to meet.
    Tracked,
    /// Not measured here, and why (e.g. PostgreSQL unreachable).
    Skipped(String),
    /// The scenario failed: a correctness check, a server that did not start.
    Error(String),
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// The target's number (1–6: issue 8's; 7: issue 16's worst operation; 8, 9: issue 17's
    /// Node peer and paging).
    pub target: u8,
    pub measure: String,
    pub backend: &'static str,
    pub value: String,
    pub baseline: String,
    pub ratio: Option<f64>,
    pub goal: String,
    pub outcome: Outcome,
}

impl Row {
    pub(crate) fn new(target: u8, measure: &str, backend: &'static str) -> Self {
        Self {
            target,
            measure: measure.to_owned(),
            backend,
            value: String::new(),
            baseline: String::new(),
            ratio: None,
            goal: String::new(),
            outcome: Outcome::Skipped("not measured".to_owned()),
        }
    }

    pub(crate) fn value(mut self, value: impl Into<String>) -> Self {
        self.value = value.into();
        self
    }

    pub(crate) fn baseline(mut self, baseline: impl Into<String>) -> Self {
        self.baseline = baseline.into();
        self
    }

    pub(crate) fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = Some(ratio);
        self
    }

    /// The target in words, and whether it was met.
    pub(crate) fn goal(mut self, goal: impl Into<String>, met: bool) -> Self {
        self.goal = goal.into();
        self.outcome = if met { Outcome::Pass } else { Outcome::Miss };
        self
    }

    /// A figure without a target: reported, never judged.
    pub(crate) fn tracked(mut self) -> Self {
        self.goal = "tracked".to_owned();
        self.outcome = Outcome::Tracked;
        self
    }

    pub(crate) fn skipped(mut self, why: impl Into<String>) -> Self {
        self.outcome = Outcome::Skipped(why.into());
        self
    }

    pub(crate) fn error(mut self, error: &anyhow::Error) -> Self {
        self.outcome = Outcome::Error(format!("{error:#}"));
        self
    }
}

/// Everything one run measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub machine: String,
    pub rows: Vec<Row>,
}

impl Report {
    pub(crate) fn new(machine: String) -> Self {
        Self {
            machine,
            rows: Vec::new(),
        }
    }

    pub(crate) fn extend(&mut self, rows: Vec<Row>) {
        self.rows.extend(rows);
    }

    /// Rows whose target was missed.
    pub fn misses(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.outcome == Outcome::Miss)
            .count()
    }

    /// Rows whose scenario failed.
    pub fn errors(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Error(_)))
            .count()
    }

    /// A Markdown table, ready for the README.
    pub fn render(&self) -> String {
        let mut out = format!("Machine: {}\n\n", self.machine);
        out.push_str("| # | measure | backend | value | baseline | ratio | target | result |\n");
        out.push_str("|---|---|---|---|---|---|---|---|\n");
        for row in &self.rows {
            let ratio = row.ratio.map(|r| format!("{r:.2}")).unwrap_or_default();
            let result = match &row.outcome {
                Outcome::Pass => "pass".to_owned(),
                Outcome::Miss => "**MISS**".to_owned(),
                Outcome::Tracked => "tracked".to_owned(),
                Outcome::Skipped(why) => format!("skipped: {why}"),
                Outcome::Error(error) => format!("**ERROR**: {}", error.replace('|', "/")),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                row.target,
                row.measure,
                row.backend,
                row.value,
                row.baseline,
                ratio,
                row.goal,
                result
            );
        }
        out
    }
}

/// The machine in one line: CPU model, cores, memory, kernel.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        })
        .map(|kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {memory} RAM, Linux {}",
        kernel.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_target_and_an_error_are_counted_and_shown() {
        let mut report = Report::new("test machine".into());
        report.extend(vec![
            Row::new(2, "throughput", "SQLite")
                .value("900 req/s")
                .baseline("1000 req/s")
                .ratio(0.9)
                .goal("ratio ≥ 0.50", true),
            Row::new(3, "p99", "SQLite")
                .value("300 ms")
                .goal("≤ 250 ms", false),
            Row::new(4, "p99", "PostgreSQL").error(&anyhow::anyhow!("a|b")),
            Row::new(4, "p99", "PostgreSQL").skipped("unreachable"),
            Row::new(5, "CPU", "SQLite").value("2 ms").tracked(),
        ]);
        assert_eq!(report.misses(), 1);
        assert_eq!(report.errors(), 1);
        let table = report.render();
        assert!(
            table.contains(
                "| 2 | throughput | SQLite | 900 req/s | 1000 req/s | 0.90 | ratio ≥ 0.50 | pass |"
            ),
            "{table}"
        );
        assert!(
            table.contains("**MISS**") && table.contains("**ERROR**: a/b"),
            "{table}"
        );
        assert!(table.contains("skipped: unreachable"), "{table}");
        assert!(
            table.contains("| 5 | CPU | SQLite | 2 ms |  |  | tracked | tracked |"),
            "{table}"
        );
    }
}
