//! `d365 load`: concurrent workflows on one connection against the
//! loopback emulator with scaled service protection limits (issue #32).
//!
//! N workers share one host (each call a fresh instance of the shared
//! pre-instantiated component, as a platform would) and one connection
//! (one token, refreshed by whichever call needs it). Each runs a mix
//! until the time is up: bulk creates through `runBatch`, a query, an
//! update and a delete of its own rows, a metadata read. Afterwards the
//! emulator's store is checked: every create the connector reported is
//! there exactly once unless the worker deleted it (`lost`, `duplicates`).
//! Throughput is compared with the ceiling the limits allow over the run.

use crate::cli;
use crate::emulator::limits::Limits;
use crate::emulator::{self, Emulator, server};
use crate::host::{ConnectionFile, ConnectorHost, Route, error_json};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The default scaled limits: reached within seconds by a few workers.
pub const DEFAULT_LIMITS: &str = "requests=200,window=5s,concurrent=16,execution=10s";

/// Rows one bulk create writes.
const BATCH: usize = 5;

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub workers: usize,
    pub seconds: u64,
    pub limits: Limits,
}

/// One action's figures.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionStats {
    pub ok: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub workers: usize,
    pub seconds: f64,
    pub limits: String,
    pub operations: u64,
    pub actions: BTreeMap<String, ActionStats>,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// 429s the emulator answered, by limit.
    pub throttled: BTreeMap<String, u64>,
    /// Web API requests the emulator admitted (retries included).
    pub requests_admitted: u64,
    /// The connector's retries: every 429 answered that did not end as a
    /// throttled error was sent again.
    pub retries: u64,
    pub rows_written: u64,
    pub writes_per_second: f64,
    /// The requests the limits allow over the run (see [`ceiling`]).
    pub ceiling_requests: f64,
    /// Admitted ÷ allowed, 0–1.
    pub ceiling_fraction: f64,
    pub duplicates: u64,
    pub lost: u64,
}

/// The requests `limits` allow over `seconds` at their steady rate, for a
/// mean cost of `cost_ms` a request: `requests` per window, `execution ÷
/// cost` per window by time, and `concurrent` at once each held its cost;
/// the tightest binds. (A run's first window may burst above the steady
/// rate, so the fraction is capped at 1.)
pub fn ceiling(limits: &Limits, seconds: f64, cost_ms: f64) -> f64 {
    let windows = seconds * 1000.0 / limits.window_ms as f64;
    let by_count = limits.requests as f64 * windows;
    let by_time = limits.execution_ms as f64 / cost_ms.max(1.0) * windows;
    let by_concurrency = f64::from(limits.concurrent) * seconds * 1000.0 / cost_ms.max(1.0);
    by_count.min(by_time).min(by_concurrency)
}

/// What one worker saw.
#[derive(Default)]
struct Worker {
    latencies: HashMap<&'static str, Vec<f64>>,
    errors: HashMap<&'static str, u64>,
    errors_by_kind: HashMap<String, u64>,
    /// Rows the connector reported created, by name, and whether the
    /// worker deleted them since.
    created: Vec<(String, String, bool)>,
    rows_written: u64,
}

pub async fn run(host: &'static ConnectorHost, config: &LoadConfig) -> anyhow::Result<Report> {
    let emulator = Emulator::new(emulator::Config {
        limits: Some(config.limits),
        log_retention: emulator::LogRetention::RECENT,
        ..Default::default()
    });
    let server = server::serve(emulator.clone(), 0).await?;
    let connection = Arc::new(Mutex::new(cli::emulator_connection(&server.base_url())));
    let deadline = Instant::now() + Duration::from_secs(config.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..config.workers {
        let connection = connection.clone();
        tasks.push(tokio::spawn(async move {
            worker(host, w, deadline, connection).await
        }));
    }
    let mut workers = Vec::new();
    for t in tasks {
        workers.push(t.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let report = report(config, &emulator, workers, elapsed);
    server.shutdown();
    Ok(report)
}

/// One call through the component, keeping a refreshed token for all.
async fn call(
    host: &ConnectorHost,
    connection: &Mutex<ConnectionFile>,
    action: &str,
    inputs: &Value,
) -> Result<Value, Value> {
    let file = connection.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let conn = file
        .connection()
        .map_err(|e| json!({"kind": "host", "message": e.to_string()}))?;
    match host
        .invoke(&Route::Network, action, &conn, &inputs.to_string())
        .await
    {
        Err(trap) => Err(json!({"kind": "trap", "message": trap.to_string()})),
        Ok(Err(e)) => Err(error_json(&e)),
        Ok(Ok(result)) => {
            if let Some(state) = result.state {
                connection.lock().unwrap_or_else(|p| p.into_inner()).state = Some(state.into());
            }
            serde_json::from_str(&result.output)
                .map_err(|e| json!({"kind": "host", "message": e.to_string()}))
        }
    }
}

async fn worker(
    host: &'static ConnectorHost,
    w: usize,
    deadline: Instant,
    connection: Arc<Mutex<ConnectionFile>>,
) -> Worker {
    let mut me = Worker::default();
    let mut seq = 0usize;
    while Instant::now() < deadline {
        let (action, inputs): (&'static str, Value) = match seq % 5 {
            0 => {
                let items: Vec<Value> = (0..BATCH)
                    .map(|k| {
                        json!({"collection": "accounts", "action": "create",
                        "data": {"name": format!("load-{w}-{seq}-{k}")}})
                    })
                    .collect();
                ("runBatch", json!({"batchActions": items, "bulk": true}))
            }
            1 => (
                "queryEntities",
                json!({"entityType": "accounts", "top": 20, "fieldNames": ["name"],
                    "filter": format!("startswith(name,'load-{w}-')")}),
            ),
            2 => match me.created.iter().rev().find(|(_, _, deleted)| !deleted) {
                Some((_, id, _)) => (
                    "updateEntity",
                    json!({"entityType": "accounts", "entityId": id,
                        "fieldValues": {"description": format!("updated by {w} at {seq}")}}),
                ),
                None => ("getCurrentUser", json!({})),
            },
            3 => match me.created.iter().find(|(_, _, deleted)| !deleted) {
                Some((_, id, _)) => (
                    "deleteEntity",
                    json!({"entityType": "accounts", "entityId": id}),
                ),
                None => ("getCurrentUser", json!({})),
            },
            _ => ("getEntityMetadata", json!({"entityType": "account"})),
        };
        let t = Instant::now();
        let result = call(host, &connection, action, &inputs).await;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        me.latencies.entry(action).or_default().push(ms);
        match result {
            Ok(out) => match action {
                "runBatch" => {
                    for r in out["results"].as_array().into_iter().flatten() {
                        if r["success"] == true
                            && let (Some(id), Some(i)) = (r["id"].as_str(), r["index"].as_u64())
                        {
                            let name = format!("load-{w}-{seq}-{i}");
                            me.created.push((name, id.to_string(), false));
                            me.rows_written += 1;
                        }
                    }
                }
                "updateEntity" => me.rows_written += 1,
                "deleteEntity" => {
                    let id = inputs["entityId"].as_str().unwrap_or("");
                    if let Some(row) = me.created.iter_mut().find(|(_, i, _)| i == id) {
                        row.2 = true;
                    }
                    me.rows_written += 1;
                }
                _ => {}
            },
            Err(e) => {
                *me.errors.entry(action).or_default() += 1;
                let kind = e["kind"].as_str().unwrap_or("unknown").to_string();
                *me.errors_by_kind.entry(kind).or_default() += 1;
            }
        }
        seq += 1;
    }
    me
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(config: &LoadConfig, emulator: &Emulator, workers: Vec<Worker>, seconds: f64) -> Report {
    let mut latencies: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
    let mut errors_by_kind = BTreeMap::new();
    let mut created = Vec::new();
    let mut rows_written = 0;
    for w in workers {
        for (a, l) in w.latencies {
            latencies.entry(a).or_default().extend(l);
        }
        for (a, n) in w.errors {
            *errors.entry(a).or_default() += n;
        }
        for (k, n) in w.errors_by_kind {
            *errors_by_kind.entry(k).or_default() += n;
        }
        created.extend(w.created);
        rows_written += w.rows_written;
    }
    let mut actions = BTreeMap::new();
    let mut operations = 0;
    for (a, mut l) in latencies {
        l.sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
        let errs = errors.get(a).copied().unwrap_or(0);
        operations += l.len() as u64;
        actions.insert(
            a.to_string(),
            ActionStats {
                ok: l.len() as u64 - errs,
                errors: errs,
                p50_ms: percentile(&l, 50.0),
                p99_ms: percentile(&l, 99.0),
            },
        );
    }
    let state = emulator.state();
    // Every row a load worker wrote, by name.
    let mut by_name: HashMap<String, u64> = HashMap::new();
    for r in state.store.records("account") {
        if let Some(name) = r.get("name").as_str().filter(|n| n.starts_with("load-")) {
            *by_name.entry(name.to_string()).or_default() += 1;
        }
    }
    let duplicates = by_name.values().map(|n| n.saturating_sub(1)).sum();
    let lost = created
        .iter()
        .filter(|(name, id, deleted)| {
            !deleted
                && (by_name.get(name).copied().unwrap_or(0) == 0
                    || state.store.get("account", id).is_none())
        })
        .count() as u64;
    let (throttled, admitted, mean_cost): (BTreeMap<String, u64>, u64, f64) = match &state.limiter {
        Some(l) => (
            l.refused.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            l.admitted,
            l.cost_total_ms as f64 / l.admitted.max(1) as f64,
        ),
        None => (BTreeMap::new(), 0, 10.0),
    };
    let ceiling_requests = ceiling(&config.limits, seconds, mean_cost);
    let throttled_total: u64 = throttled.values().sum();
    let throttled_errors = errors_by_kind.get("throttled").copied().unwrap_or(0);
    Report {
        workers: config.workers,
        seconds,
        limits: config.limits.to_string(),
        operations,
        actions,
        errors_by_kind,
        throttled,
        requests_admitted: admitted,
        retries: throttled_total.saturating_sub(throttled_errors),
        rows_written,
        writes_per_second: rows_written as f64 / seconds.max(0.001),
        ceiling_requests,
        ceiling_fraction: (admitted as f64 / ceiling_requests.max(1.0)).min(1.0),
        duplicates,
        lost,
    }
}

/// The report as a table.
pub fn render(r: &Report) -> String {
    let mut out = format!(
        "d365 load: {} workers, {:.1} s, limits {}\n",
        r.workers, r.seconds, r.limits
    );
    out.push_str("action               ok  errors   p50 ms   p99 ms\n");
    for (a, s) in &r.actions {
        out.push_str(&format!(
            "{a:<18} {:>5} {:>7} {:>8.1} {:>8.1}\n",
            s.ok, s.errors, s.p50_ms, s.p99_ms
        ));
    }
    out.push_str(&format!(
        "operations {}, requests admitted {}, retries {}, 429s {:?}, errors {:?}\n",
        r.operations, r.requests_admitted, r.retries, r.throttled, r.errors_by_kind
    ));
    out.push_str(&format!(
        "rows written {} ({:.1}/s); ceiling {:.0} requests, achieved {:.0}% of it\n",
        r.rows_written,
        r.writes_per_second,
        r.ceiling_requests,
        r.ceiling_fraction * 100.0
    ));
    out.push_str(&format!("duplicates {}, lost {}\n", r.duplicates, r.lost));
    out
}

/// One soak sample: after `call` calls, the host's resident memory and
/// open file descriptors.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub call: u64,
    pub rss_kib: u64,
    pub fds: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SoakReport {
    pub calls: u64,
    pub seconds: f64,
    pub errors: u64,
    pub samples: Vec<Sample>,
    /// RSS growth from the sample at 10 % of the calls to the last, as a
    /// fraction (the target: ≤ 0.05).
    pub rss_growth: f64,
    /// Descriptors at the end minus at 10 % (target: ≤ 0).
    pub fd_growth: i64,
}

/// The host's resident set (KiB) and open descriptors, from /proc (Linux);
/// zeros elsewhere.
fn sample(call: u64) -> Sample {
    let page_kib = 4;
    let rss_kib = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_kib);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    Sample { call, rss_kib, fds }
}

/// `calls` getEntity calls, one after another, each a fresh instance, on
/// the in-process emulator; a sample every `every` calls.
pub async fn soak(
    host: &'static ConnectorHost,
    calls: u64,
    every: u64,
) -> anyhow::Result<SoakReport> {
    let emulator = Emulator::new(emulator::Config {
        log_retention: emulator::LogRetention::RECENT,
        ..Default::default()
    });
    let route = Route::InProcess(emulator);
    let mut file = cli::emulator_connection(cli::IN_PROCESS_ORIGIN);
    let inputs = json!({"entityType": "accounts",
        "entityId": emulator::store::seed::account_id(1), "fieldNames": ["name"]})
    .to_string();
    let started = Instant::now();
    let mut samples = vec![sample(0)];
    let mut errors = 0;
    let every = every.max(1);
    for i in 1..=calls {
        let conn = file.connection()?;
        match host.invoke(&route, "getEntity", &conn, &inputs).await {
            Ok(Ok(result)) => {
                if let Some(state) = result.state {
                    file.state = Some(state.into());
                }
            }
            _ => errors += 1,
        }
        if i % every == 0 {
            samples.push(sample(i));
        }
    }
    let base = samples
        .iter()
        .find(|s| s.call >= calls / 10)
        .cloned()
        .unwrap_or_else(|| sample(0));
    let last = samples.last().cloned().unwrap_or_else(|| sample(calls));
    Ok(SoakReport {
        calls,
        seconds: started.elapsed().as_secs_f64(),
        errors,
        rss_growth: (last.rss_kib as f64 - base.rss_kib as f64) / base.rss_kib.max(1) as f64,
        fd_growth: last.fds as i64 - base.fds as i64,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_is_the_tightest_limit_over_the_run() {
        let l: Limits = "requests=100,window=5s,concurrent=4,execution=1000ms"
            .parse()
            .unwrap();
        // 10 s = 2 windows: 200 by count, 2 × 1000/10 = 200 by time,
        // 4 × 10,000/10 = 4,000 by concurrency.
        assert_eq!(ceiling(&l, 10.0, 10.0), 200.0);
        // Dearer requests: time binds (2 × 1000/40 = 50).
        assert_eq!(ceiling(&l, 10.0, 40.0), 50.0);
        // The steady rate: half a window, half the requests.
        assert_eq!(ceiling(&l, 2.5, 10.0), 50.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }
}
