//! The guest program's result lines, the results file of a boot, and the side-by-side table of
//! our driver against the stock one.
//!
//! The guest program writes (through `OutputDebugStringA`, so on COM1 between the kernel's own
//! lines) `TCPIPVM START version=1 scenarios=N`, one `TCPIPVM RESULT name=S status=pass|fail|
//! timeout|crash elapsed_ms=T key=value...` per scenario, `TCPIPVM ERROR name=S text` for the
//! details of a failure, and `TCPIPVM END pass=P fail=F`.

use std::fmt::Write as _;

/// One scenario's result line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioResult {
    /// The scenario's name.
    pub name: String,
    /// `pass`, `fail`, `timeout` or `crash`.
    pub status: String,
    /// The other `key=value` pairs, in the order printed.
    pub metrics: Vec<(String, String)>,
}

impl ScenarioResult {
    /// The value of `key`, if printed.
    pub fn metric(&self, key: &str) -> Option<&str> {
        self.metrics
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What the guest program reported in one boot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestReport {
    /// The scenario count of the START line, if it came.
    pub announced: Option<usize>,
    /// The RESULT lines.
    pub results: Vec<ScenarioResult>,
    /// The ERROR lines, as (scenario, text).
    pub errors: Vec<(String, String)>,
    /// The OUT lines of `exec` entries, as (name, text).
    pub outputs: Vec<(String, String)>,
    /// Whether the END line came.
    pub ended: bool,
}

impl GuestReport {
    /// Reads the guest program's lines out of the COM1 log. A line may carry kernel output in
    /// front of the marker (COM1 is shared); the text from the marker on is taken.
    pub fn parse(lines: &[String]) -> Self {
        let mut report = Self::default();
        for line in lines {
            let Some(at) = line.find("TCPIPVM ") else {
                continue;
            };
            let mut words = line[at + "TCPIPVM ".len()..].split_whitespace();
            match words.next() {
                Some("START") => {
                    report.announced = words
                        .filter_map(|w| w.strip_prefix("scenarios="))
                        .find_map(|n| n.parse().ok());
                }
                Some("RESULT") => {
                    let pairs: Vec<(String, String)> = words
                        .filter_map(|w| w.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    let take = |key: &str| {
                        pairs
                            .iter()
                            .find(|(k, _)| k == key)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    };
                    report.results.push(ScenarioResult {
                        name: take("name"),
                        status: take("status"),
                        metrics: pairs
                            .iter()
                            .filter(|(k, _)| k != "name" && k != "status")
                            .cloned()
                            .collect(),
                    });
                }
                Some("ERROR") => {
                    let name = words
                        .next()
                        .and_then(|w| w.strip_prefix("name="))
                        .unwrap_or("")
                        .to_string();
                    let text: Vec<&str> = words.collect();
                    report.errors.push((name, text.join(" ")));
                }
                Some("OUT") => {
                    let rest = &line[at + "TCPIPVM OUT ".len()..];
                    if let Some((name, text)) = rest
                        .strip_prefix("name=")
                        .and_then(|rest| rest.split_once(" | "))
                    {
                        report.outputs.push((name.to_string(), text.to_string()));
                    }
                }
                Some("END") => report.ended = true,
                _ => {}
            }
        }
        report
    }

    /// Checks what the network tools printed (`tools::check`): a tool that exited 0 but told
    /// something other than the truth of the network fails, with the reasons as ERROR lines.
    pub fn check_tools(&mut self) {
        let mut errors = Vec::new();
        for result in &mut self.results {
            if result.status != "pass" {
                continue;
            }
            let problems = super::tools::check(&result.name, &self.outputs, &result.metrics);
            if !problems.is_empty() {
                result.status = "fail".into();
                errors.extend(problems.into_iter().map(|p| (result.name.clone(), p)));
            }
        }
        self.errors.extend(errors);
    }

    /// Why this boot's suite failed, or `None` when every announced scenario passed.
    pub fn failure(&self) -> Option<String> {
        if !self.ended {
            return Some("the guest program did not finish".into());
        }
        if self.announced != Some(self.results.len()) {
            return Some(format!(
                "{} scenarios announced, {} results",
                self.announced.map_or("no".into(), |n| n.to_string()),
                self.results.len()
            ));
        }
        let failed: Vec<String> = self
            .results
            .iter()
            .filter(|r| r.status != "pass")
            .map(|r| format!("{} ({})", r.name, r.status))
            .collect();
        (!failed.is_empty()).then(|| format!("failed: {}", failed.join(", ")))
    }

    /// The results file: one row per scenario, tab-separated, every metric as `key=value`.
    pub fn results_file(&self) -> String {
        let mut out = String::from("scenario\tstatus\tmetrics\n");
        for result in &self.results {
            let metrics: Vec<String> = result
                .metrics
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(
                out,
                "{}\t{}\t{}",
                result.name,
                result.status,
                metrics.join(" ")
            );
        }
        for (name, text) in &self.errors {
            let _ = writeln!(out, "# error {name}: {text}");
        }
        out
    }
}

/// The side-by-side table: for each scenario and each numeric metric, stock, ours and the ratio
/// ours/stock. Markdown, so it can go into a note as it is.
pub fn comparison(stock: &GuestReport, ours: &GuestReport) -> String {
    let mut out = String::from(
        "| scenario | metric | stock | ours | ours/stock |\n|---|---|---:|---:|---:|\n",
    );
    for mine in &ours.results {
        let theirs = stock.results.iter().find(|r| r.name == mine.name);
        let status = |r: Option<&ScenarioResult>| r.map_or("-".to_string(), |r| r.status.clone());
        let _ = writeln!(
            out,
            "| {} | status | {} | {} | |",
            mine.name,
            status(theirs),
            mine.status
        );
        for (key, value) in &mine.metrics {
            let Ok(ours_value) = value.parse::<f64>() else {
                continue;
            };
            let stock_value = theirs
                .and_then(|r| r.metric(key))
                .and_then(|v| v.parse::<f64>().ok());
            let ratio = match stock_value {
                Some(s) if s != 0.0 => format!("{:.2}x", ours_value / s),
                _ => "-".into(),
            };
            let shown = stock_value.map_or("-".into(), |s| s.to_string());
            let _ = writeln!(
                out,
                "| {} | {key} | {shown} | {value} | {ratio} |",
                mine.name
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    const OURS: &str = "noise\nTCPIPVM START version=1 scenarios=2\n\
        (kernel) TCPIPVM RESULT name=bulk status=pass elapsed_ms=900 kib_per_s=4000\n\
        TCPIPVM RESULT name=edge status=fail elapsed_ms=12 ok=6 failed=1\n\
        TCPIPVM ERROR name=edge refused: connect gave 10060\nTCPIPVM END pass=1 fail=1\n";

    #[test]
    fn result_lines_are_parsed_even_behind_kernel_output() {
        let report = GuestReport::parse(&log(OURS));
        assert_eq!(report.announced, Some(2));
        assert!(report.ended);
        assert_eq!(report.results.len(), 2);
        assert_eq!(report.results[0].name, "bulk");
        assert_eq!(report.results[0].metric("kib_per_s"), Some("4000"));
        assert_eq!(
            report.errors,
            vec![("edge".into(), "refused: connect gave 10060".into())]
        );
        assert_eq!(report.failure().as_deref(), Some("failed: edge (fail)"));
    }

    #[test]
    fn a_missing_end_or_result_is_a_failure() {
        let report = GuestReport::parse(&log(
            "TCPIPVM START version=1 scenarios=3\nTCPIPVM END pass=0 fail=0",
        ));
        assert_eq!(
            report.failure().as_deref(),
            Some("3 scenarios announced, 0 results")
        );
        let report = GuestReport::parse(&log("TCPIPVM START version=1 scenarios=3"));
        assert_eq!(
            report.failure().as_deref(),
            Some("the guest program did not finish")
        );
    }

    #[test]
    fn comparison_shows_ratios_against_stock() {
        let ours = GuestReport::parse(&log(OURS));
        let stock = GuestReport::parse(&log(
            "TCPIPVM RESULT name=bulk status=pass elapsed_ms=1800 kib_per_s=1000\n",
        ));
        let table = comparison(&stock, &ours);
        assert!(
            table.contains("| bulk | kib_per_s | 1000 | 4000 | 4.00x |"),
            "{table}"
        );
        assert!(
            table.contains("| bulk | elapsed_ms | 1800 | 900 | 0.50x |"),
            "{table}"
        );
        assert!(table.contains("| edge | status | - | fail | |"), "{table}");
    }
}
