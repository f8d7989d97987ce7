//! The bench's results: rows of samples per (scenario, metric, contender),
//! min/median/max, the ratio to the native baseline, and the issue's targets.

use super::machine::Machine;
use super::{Sizes, percentile};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Contender {
    /// The release `.wasm` in the wasmtime host, over wasi:http.
    Connector,
    /// hyper + serde_json in this process.
    Native,
    /// DynamicsWebApi under Node.
    Peer,
}

impl Contender {
    /// The order the contenders run in round `round`: every permutation in
    /// turn, so that within six rounds each contender runs right after each
    /// other one equally often (a rotation is not enough: it keeps every
    /// contender's neighbour). With one fixed order the connector always ran
    /// right after Node had run and exited: scenario 4 measured 1.30–1.40 ×
    /// native that way, 1.19 and 1.21 without Node.
    pub fn order(round: usize) -> [Contender; 3] {
        use Contender::{Connector as C, Native as N, Peer as P};
        const ORDERS: [[Contender; 3]; 6] = [
            [C, N, P],
            [C, P, N],
            [N, P, C],
            [N, C, P],
            [P, C, N],
            [P, N, C],
        ];
        ORDERS[round % ORDERS.len()]
    }
}

impl Contender {
    pub fn label(self) -> &'static str {
        match self {
            Contender::Connector => "connector",
            Contender::Native => "native",
            Contender::Peer => "DynamicsWebApi",
        }
    }
}

/// One contender's memory in one fetch-all round, in MiB.
#[derive(Debug, Clone, Copy)]
pub struct Rss {
    /// The peak RSS of the process that ran it.
    pub peak_mib: f64,
    /// That process's RSS when the round started, where known (the bench's
    /// own process; Node starts fresh each round).
    pub start_mib: Option<f64>,
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub metric: String,
    pub contender: Contender,
    pub unit: String,
    pub samples: Vec<f64>,
    /// Records per second at the median (fetch-all scenarios).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<usize>,
    /// Peak RSS in MiB, the highest over the rounds (fetch-all scenarios).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    /// The most the process grew during one round, in MiB: the peak less
    /// the RSS when the round started (in-process contenders only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_growth_mib: Option<f64>,
    /// Why this contender has no (or fewer) samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Row {
    pub fn min(&self) -> f64 {
        self.samples.iter().copied().fold(f64::NAN, f64::min)
    }
    pub fn max(&self) -> f64 {
        self.samples.iter().copied().fold(f64::NAN, f64::max)
    }
    pub fn median(&self) -> f64 {
        percentile(&self.samples, 50.0)
    }
}

/// Whether one of the issue's targets holds (`None`: not measured).
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub target: String,
    pub holds: Option<bool>,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub profile: &'static str,
    pub sizes: Value,
    pub rows: Vec<Row>,
    pub targets: Vec<Target>,
    pub seconds: f64,
    #[serde(skip)]
    counts: BTreeMap<String, usize>,
}

impl Report {
    pub fn new(sizes: Sizes) -> Self {
        Report {
            profile: env!("D365_HOST_PROFILE"),
            sizes: json!({
                "rounds": sizes.rounds,
                "generatedRecords": sizes.records,
                "pageSize": sizes.page_size,
                "getEntityCalls": sizes.gets,
                "instantiations": sizes.instantiations,
                "batchCreates": sizes.batch_creates,
                "batchRounds": sizes.batch_rounds,
                "fileMiB": sizes.file_mib,
            }),
            rows: Vec::new(),
            targets: Vec::new(),
            seconds: 0.0,
            counts: BTreeMap::new(),
        }
    }

    fn row(&mut self, scenario: &str, metric: &str, unit: &str, c: Contender) -> &mut Row {
        let i = match self
            .rows
            .iter()
            .position(|r| r.scenario == scenario && r.metric == metric && r.contender == c)
        {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    scenario: scenario.into(),
                    metric: metric.into(),
                    contender: c,
                    unit: unit.into(),
                    samples: Vec::new(),
                    records: None,
                    peak_rss_mib: None,
                    rss_growth_mib: None,
                    error: None,
                });
                self.rows.len() - 1
            }
        };
        &mut self.rows[i]
    }

    pub fn sample(&mut self, scenario: &str, metric: &str, unit: &str, c: Contender, v: f64) {
        self.row(scenario, metric, unit, c).samples.push(v);
    }

    pub fn samples(&mut self, scenario: &str, metric: &str, unit: &str, c: Contender, v: &[f64]) {
        self.row(scenario, metric, unit, c)
            .samples
            .extend_from_slice(v);
    }

    pub fn error(&mut self, scenario: &str, metric: &str, c: Contender, e: String) {
        let row = self.row(scenario, metric, "ms", c);
        if row.error.is_none() {
            row.error = Some(e);
        }
    }

    /// A single timing in ms, or why there is none.
    pub fn one(&mut self, scenario: &str, metric: &str, c: Contender, r: anyhow::Result<f64>) {
        match r {
            Ok(v) => self.sample(scenario, metric, "ms", c, v),
            Err(e) => self.error(scenario, metric, c, format!("{e:#}")),
        }
    }

    /// A fetch-all: (ms, records, memory). Every contender must return the
    /// same number of records.
    pub fn fetch_sample(
        &mut self,
        scenario: &str,
        c: Contender,
        r: anyhow::Result<(f64, usize, Option<Rss>)>,
        _generated: usize,
    ) {
        const METRIC: &str = "whole fetch-all";
        match r {
            Ok((ms, count, rss)) => {
                let reference = *self.counts.entry(scenario.to_string()).or_insert(count);
                if count != reference {
                    self.error(
                        scenario,
                        METRIC,
                        c,
                        format!("returned {count} records, another contender {reference}"),
                    );
                    return;
                }
                let row = self.row(scenario, METRIC, "ms", c);
                row.samples.push(ms);
                row.records = Some(count);
                if let Some(rss) = rss {
                    let max = |old: Option<f64>, new: f64| Some(old.map_or(new, |o| o.max(new)));
                    row.peak_rss_mib = max(row.peak_rss_mib, rss.peak_mib);
                    if let Some(start) = rss.start_mib {
                        row.rss_growth_mib = max(row.rss_growth_mib, rss.peak_mib - start);
                    }
                }
            }
            Err(e) => self.error(scenario, METRIC, c, format!("{e:#}")),
        }
    }

    /// Per-call latencies of one round: its p50 and p99 become samples.
    pub fn latency_samples(&mut self, scenario: &str, c: Contender, r: anyhow::Result<Vec<f64>>) {
        match r {
            Ok(v) => {
                self.sample(scenario, "p50 per call", "ms", c, percentile(&v, 50.0));
                self.sample(scenario, "p99 per call", "ms", c, percentile(&v, 99.0));
            }
            Err(e) => {
                let e = format!("{e:#}");
                self.error(scenario, "p50 per call", c, e.clone());
                self.error(scenario, "p99 per call", c, e);
            }
        }
    }

    fn median_of(&self, scenario: &str, metric: &str, c: Contender) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.metric == metric && r.contender == c)
            .filter(|r| !r.samples.is_empty() && r.error.is_none())
            .map(Row::median)
    }

    /// The ratio of a row's median to the native baseline's.
    pub fn ratio(&self, row: &Row) -> Option<f64> {
        let base = self.median_of(&row.scenario, &row.metric, Contender::Native)?;
        (!row.samples.is_empty() && base > 0.0).then(|| row.median() / base)
    }

    /// Evaluates the issue's targets on what was measured.
    pub fn finish(&mut self, elapsed: Duration) {
        self.seconds = elapsed.as_secs_f64();
        let mut targets = Vec::new();
        for (scenario, metric) in [
            (super::FETCH, "whole fetch-all"),
            (super::FETCHXML, "whole fetch-all"),
            (super::GET, "p50 per call"),
            (super::BATCH, "build + send + decode"),
        ] {
            let c = self.median_of(scenario, metric, Contender::Connector);
            let n = self.median_of(scenario, metric, Contender::Native);
            let p = self.median_of(scenario, metric, Contender::Peer);
            let (holds, detail) = match (c, n) {
                (Some(c), Some(n)) => (Some(c / n <= 1.3), format!("{:.2}", c / n)),
                _ => (None, "not measured".into()),
            };
            targets.push(Target {
                target: format!("{scenario} ({metric}): connector / native ≤ 1.3"),
                holds,
                detail,
            });
            let (holds, detail) = match (c, p) {
                (Some(c), Some(p)) => (
                    Some(c < p),
                    format!("connector {c:.3} ms vs DynamicsWebApi {p:.3} ms"),
                ),
                _ => (None, "not measured".into()),
            };
            targets.push(Target {
                target: format!("{scenario} ({metric}): connector faster than DynamicsWebApi"),
                holds,
                detail,
            });
        }
        // Scenario 7: the time row's name carries the file's size.
        let files_time = self
            .rows
            .iter()
            .find(|r| r.scenario == super::FILES && r.metric.starts_with(super::FILES_TIME))
            .map(|r| r.metric.clone());
        let (c, n) = match &files_time {
            Some(m) => (
                self.median_of(super::FILES, m, Contender::Connector),
                self.median_of(super::FILES, m, Contender::Native),
            ),
            None => (None, None),
        };
        targets.push(Target {
            target: format!(
                "{} ({}): connector / native ≤ 1.3",
                super::FILES,
                files_time.as_deref().unwrap_or(super::FILES_TIME)
            ),
            holds: c.zip(n).map(|(c, n)| c / n <= 1.3),
            detail: c
                .zip(n)
                .map_or("not measured".into(), |(c, n)| format!("{:.2}", c / n)),
        });
        for metric in [super::FILES_UP_MEMORY, super::FILES_DOWN_MEMORY] {
            let peak = self
                .rows
                .iter()
                .find(|r| r.scenario == super::FILES && r.metric == metric)
                .filter(|r| !r.samples.is_empty())
                .map(Row::max);
            targets.push(Target {
                target: format!("{} {metric} ≤ 3 × the file's size", super::FILES),
                holds: peak.map(|p| p <= 3.0),
                detail: peak.map_or("not measured".into(), |p| format!("{p:.2} × the file")),
            });
        }
        let inst = self.median_of(
            super::COLD,
            "instantiate (fresh store)",
            Contender::Connector,
        );
        targets.push(Target {
            target: "instantiation (pre-instantiated, fresh store) ≤ 20 µs median".into(),
            holds: inst.map(|m| m <= 20.0),
            detail: inst.map_or("not measured".into(), |m| format!("{m:.1} µs")),
        });
        let size = self.median_of(super::SIZE, "size", Contender::Connector);
        targets.push(Target {
            target: "release .wasm ≤ 512 KiB".into(),
            holds: size.map(|s| s <= 512.0 * 1024.0),
            detail: size.map_or("not measured".into(), |s| format!("{:.1} KiB", s / 1024.0)),
        });
        self.targets = targets;
    }

    /// The table as Markdown (readable in a terminal and in RESULTS.md).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| scenario | metric | contender | n | min | median | max | unit | × native | notes |"
        );
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---|---:|---|");
        for r in &self.rows {
            let f = |v: f64| {
                if v.is_nan() {
                    "–".to_string()
                } else if r.unit == "bytes" {
                    format!("{v:.0}")
                } else if v >= 100.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.3}")
                }
            };
            let ratio = self.ratio(r).map_or("–".into(), |x| format!("{x:.2}"));
            let mut notes = Vec::new();
            if let Some(n) = r.records {
                let med = r.median();
                if med > 0.0 {
                    notes.push(format!(
                        "{n} records, {:.0} records/s",
                        n as f64 / (med / 1e3)
                    ));
                }
            }
            match (r.peak_rss_mib, r.rss_growth_mib) {
                (Some(rss), Some(growth)) => notes.push(format!(
                    "peak RSS {rss:.0} MiB (+{growth:.0} during a round)"
                )),
                (Some(rss), None) => notes.push(format!("peak RSS {rss:.0} MiB")),
                _ => {}
            }
            if let Some(e) = &r.error {
                let one_line: String = e
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .replace('|', "/")
                    .chars()
                    .take(300)
                    .collect();
                notes.push(format!("UNAVAILABLE: {one_line}"));
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.scenario,
                r.metric,
                r.contender.label(),
                r.samples.len(),
                f(r.min()),
                f(r.median()),
                f(r.max()),
                r.unit,
                ratio,
                notes.join("; ")
            );
        }
        let _ = writeln!(out, "\n| target | holds | measured |\n|---|---|---|");
        for t in &self.targets {
            let holds = match t.holds {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "n/a",
            };
            let _ = writeln!(out, "| {} | {} | {} |", t.target, holds, t.detail);
        }
        let _ = writeln!(
            out,
            "\nprofile: {}; sizes: {}; took {:.1} s",
            self.profile, self.sizes, self.seconds
        );
        out
    }

    /// The whole report as Markdown with the machine it ran on (snapshots
    /// before and after the run): `host-test/benches/RESULTS.md`.
    pub fn markdown(&self, before: &Machine, after: &Machine) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmark results (`d365 bench`)\n");
        let _ = writeln!(
            out,
            "Written by `d365 bench --results` at {} (started {}), commit {}.\n",
            after.taken_at, before.taken_at, before.commit
        );
        let _ = writeln!(out, "Machine:\n```");
        let _ = writeln!(out, "cores: {}  cpu: {}", before.cores, before.cpu);
        let _ = writeln!(
            out,
            "memory: {:.1} GiB total, {:.1} GiB available before the run",
            before.mem_total_gib, before.mem_available_gib
        );
        let _ = writeln!(
            out,
            "load average before: {}   after: {}",
            before.load, after.load
        );
        let _ = writeln!(
            out,
            "{}; wasmtime 48.0.8; Node {}; dynamics-web-api {}",
            before.rustc, before.node, before.dwa
        );
        let _ = writeln!(
            out,
            "host profile: {} (the connector is always the release .wasm)",
            self.profile
        );
        let _ = writeln!(out, "```\n");
        let _ = writeln!(
            out,
            "Contenders run interleaved per round, each round in another of the six orders, so that none always runs right after the same one. \
             Peak RSS is this process's high-water mark (it also holds the emulator) \
             for connector and native, with the most it grew during one round (from \
             the live heap at the round's start); Node's own for DynamicsWebApi.\n"
        );
        out.push_str(&self.table());
        out
    }

    /// The report as JSON, with each row's min/median/max and ratio.
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                let num = |x: f64| if x.is_nan() { Value::Null } else { json!(x) };
                v["min"] = num(r.min());
                v["median"] = num(r.median());
                v["max"] = num(r.max());
                v["ratioToNative"] = self.ratio(r).map_or(Value::Null, |x| json!(x));
                v
            })
            .collect();
        json!({
            "profile": self.profile,
            "sizes": self.sizes,
            "seconds": self.seconds,
            "rows": rows,
            "targets": self.targets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Contender;

    #[test]
    fn six_rounds_run_each_contender_once_a_round_after_each_other_equally() {
        let mut before = std::collections::BTreeMap::new();
        for round in 0..6 {
            let order = Contender::order(round);
            let mut sorted = order;
            sorted.sort();
            assert_eq!(
                sorted,
                [Contender::Connector, Contender::Native, Contender::Peer]
            );
            for pair in order.windows(2) {
                *before.entry((pair[0], pair[1])).or_insert(0) += 1;
            }
        }
        // Six ordered pairs, each twice: the connector follows Node in two
        // rounds of six, and native in two.
        assert_eq!(before.len(), 6);
        assert!(before.values().all(|n| *n == 2), "{before:?}");
    }
}
