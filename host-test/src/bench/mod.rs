//! `d365 bench`: the connector against a native baseline and against
//! DynamicsWebApi, on one loopback emulator, interleaved per round so drift
//! on a shared machine hits every contender alike, each round in another
//! order so that none always runs after the same one
//! ([`report::Contender::order`]).
//! Speed is reported as ratios, never asserted.

pub mod machine;
pub mod native;
pub mod peer;
pub mod report;

use crate::cli;
use crate::emulator::store::seed::generated_account_id;
use crate::emulator::{self, Emulator};
use crate::host::{COMPONENT_WASM, ConnectorHost, Route, StateJson, error_json, trap};
use anyhow::{Context as _, Result, anyhow};
use native::Native;
use report::{Contender, Report, Rss};
use serde_json::{Value, json};
use std::time::Instant;

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub rounds: usize,
    /// Generated accounts (the seeded demo accounts come on top).
    pub records: usize,
    pub page_size: usize,
    pub gets: usize,
    pub instantiations: usize,
    /// Creates in the one `$batch` of scenario 4.
    pub batch_creates: usize,
    /// Rounds of scenario 4, which are short enough to afford more.
    pub batch_rounds: usize,
    /// The file of scenario 7, in MiB.
    pub file_mib: usize,
}

impl Sizes {
    /// The issue's sizes: 100,000 records × 5,000 per page, 1,000 gets;
    /// five rounds, since a median of three moved by ±0.1 in the ratios
    /// between runs on a shared two-core machine.
    pub const FULL: Sizes = Sizes {
        rounds: 5,
        records: 100_000,
        page_size: 5_000,
        gets: 1_000,
        instantiations: 1_000,
        batch_creates: 1_000,
        // A round is ≈ 0.3 s (Node's start included) and a median of five
        // ≈ 35 ms runs moved by ±0.05 in the ratio between runs: fifteen.
        batch_rounds: 15,
        // The issue's file: 64 MiB up and down.
        file_mib: 64,
    };
    /// Small and one round: keeps the suite from rotting in CI.
    pub const QUICK: Sizes = Sizes {
        rounds: 1,
        records: 300,
        page_size: 100,
        gets: 20,
        instantiations: 20,
        batch_creates: 20,
        batch_rounds: 1,
        // Three 4 MiB chunks and ranges instead of sixteen.
        file_mib: 9,
    };
}

/// A window over one in-process contender's run: the process's peak RSS,
/// and what the process held when the run started. The window opens with
/// freed heap handed back to the OS, so the start is what is live (the
/// emulator's data, mostly), not what earlier rounds left in malloc's free
/// lists, and the peak above it is this run's own.
struct RssWindow {
    start_mib: Option<f64>,
}

impl RssWindow {
    fn open() -> Self {
        trim_heap();
        // `clear_refs` 5 resets VmHWM to the current RSS (Linux ≥ 4.0).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        RssWindow {
            start_mib: status_mib("VmRSS:"),
        }
    }

    fn close(&self) -> Option<Rss> {
        Some(Rss {
            peak_mib: status_mib("VmHWM:")?,
            start_mib: self.start_mib,
        })
    }
}

/// glibc keeps freed memory in its arenas; hand it back so RSS is the live set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim only returns free pages of glibc's heap to the OS.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// A `/proc/self/status` line in MiB (Linux).
fn status_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The p-th percentile (nearest rank) of `v`.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// Everything the contenders share: the emulator's address and credentials.
struct Setup {
    base: String,
    token_url: String,
    token_path: String,
    client_id: String,
    secret: String,
    host: &'static ConnectorHost,
    /// A connection carrying a token already (a platform reuses it).
    with_token: crate::host::Connection,
    /// A connection without token state (the first call fetches one).
    cold: crate::host::Connection,
    peer: Result<(), String>,
}

impl Setup {
    async fn invoke(&self, action: &str, inputs: &Value) -> Result<Value> {
        let output = self.invoke_text(action, &inputs.to_string()).await?;
        Ok(serde_json::from_str(&output)?)
    }

    /// The call as a platform makes it: inputs and output as JSON text.
    async fn invoke_text(&self, action: &str, inputs: &str) -> Result<String> {
        let r = self
            .host
            .invoke(&Route::Network, action, &self.with_token, inputs)
            .await
            .map_err(trap)?
            .map_err(|e| anyhow!("{action} failed: {}", error_json(&e)))?;
        Ok(r.output)
    }

    async fn native(&self) -> Result<Native> {
        Native::connect(&self.base, &self.token_path, &self.client_id, &self.secret).await
    }

    async fn peer(&self, job: Value) -> Result<peer::PeerRun> {
        if let Err(why) = &self.peer {
            return Err(anyhow!("{why}"));
        }
        peer::run(
            &self.base,
            &self.token_url,
            &self.client_id,
            &self.secret,
            job,
        )
        .await
    }
}

/// Runs the scenarios (all of them when `only` is empty) and returns the
/// report (progress on stderr).
pub async fn run(sizes: Sizes, only: &[u8]) -> Result<Report> {
    let wanted = |n: u8| only.is_empty() || only.contains(&n);
    let started = Instant::now();
    eprintln!("bench: generating {} accounts…", sizes.records);
    let emulator = Emulator::new(emulator::Config {
        generated_records: sizes.records,
        // Every round's pages kept in the log grew the process ≈ 280 MB a
        // round, and every contender's peak RSS with it.
        log_retention: emulator::LogRetention::RECENT,
        ..Default::default()
    });
    let server = emulator::server::serve(emulator, 0).await?;
    let base = server.base_url();
    let file = cli::emulator_connection(&base);
    let setting = |k: &str| -> Result<String> {
        file.settings
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("emulator connection has no {k}"))
    };
    let token_url = setting("tokenUrl")?;
    let host = ConnectorHost::shared().map_err(trap)?;
    let token = host
        .client_credentials_token(&Route::Network, &file.settings_json())
        .await
        .map_err(trap)?
        .map_err(|e| anyhow!("token: {}", error_json(&e)))?;
    let with_token = crate::host::ConnectionFile {
        state: Some(StateJson::from(token)),
        ..file.clone()
    }
    .connection()?;
    let peer = peer::prepare().map_err(|e| format!("{e:#}"));
    if let Err(why) = &peer {
        eprintln!("bench: DynamicsWebApi unavailable: {why}");
    }
    let setup = Setup {
        token_path: token_url
            .strip_prefix(&base)
            .unwrap_or(&token_url)
            .to_string(),
        token_url,
        client_id: setting("clientId")?,
        secret: setting("clientSecret")?,
        cold: file.connection()?,
        base,
        host,
        with_token,
        peer,
    };
    let mut report = Report::new(sizes);

    if wanted(1) {
        fetch_all(&setup, sizes, &mut report).await;
    }
    if wanted(3) {
        get_entity(&setup, sizes, &mut report).await;
    }
    if wanted(5) {
        cold_start(&setup, sizes, &mut report).await;
    }
    if wanted(6) {
        wasm_size(&mut report);
    }
    if wanted(2) {
        fetch_xml(&setup, sizes, &mut report).await;
    }
    if wanted(4) {
        batch(&setup, sizes, &mut report).await;
    }
    if wanted(7) {
        files(&setup, sizes, &mut report).await;
    }

    server.shutdown();
    report.finish(started.elapsed());
    Ok(report)
}

const FETCH: &str = "1. fetch-all queryEntities";
const GET: &str = "3. getEntity ×N sequential";
const COLD: &str = "5. cold start";
const SIZE: &str = "6. release .wasm";
const FETCHXML: &str = "2. fetch-all runFetchXml";
const BATCH: &str = "4. runBatch creates";
const FILES: &str = "7. uploadFile + downloadFile";
/// Scenario 7's time row and memory rows (× the file's size).
pub const FILES_TIME: &str = "upload + download";
pub const FILES_UP_MEMORY: &str = "peak linear memory, upload";
pub const FILES_DOWN_MEMORY: &str = "peak linear memory, download";

/// Scenario 7: a file uploaded in chunks, then downloaded in ranges, by the
/// connector (uploadFile with the base64 inputs a platform hands it, then
/// downloadFile) and by the native client making the same requests. The
/// connector's peak linear memory for each call is reported as a multiple
/// of the file's size.
async fn files(s: &Setup, sizes: Sizes, report: &mut Report) {
    use base64::Engine as _;
    let size = sizes.file_mib << 20;
    if sizes.file_mib != 64 {
        eprintln!(
            "bench: {FILES}: a {} MiB file (the full run moves 64 MiB)",
            sizes.file_mib
        );
    }
    let account = crate::emulator::store::seed::account_id(1);
    let data: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
    let upload =
        json!({"entityType": "accounts", "entityId": account, "columnName": "new_document",
        "fileName": "bench.bin", "fileContent": encoded})
        .to_string();
    drop(encoded);
    let download =
        json!({"entityType": "accounts", "entityId": account, "columnName": "new_document"})
            .to_string();
    let metric = format!("{FILES_TIME} ({} MiB)", sizes.file_mib);
    let up_metric = format!("upload ({} MiB)", sizes.file_mib);
    let down_metric = format!("download ({} MiB)", sizes.file_mib);
    for round in 0..sizes.rounds {
        eprintln!("bench: {FILES}, round {}", round + 1);
        for contender in Contender::order(round) {
            let r = match contender {
                Contender::Connector => {
                    async {
                        let call = |action: &'static str, inputs: &str| {
                            let inputs = inputs.to_string();
                            async move {
                                let (r, memory) = s
                                    .host
                                    .invoke_measured(
                                        &Route::Network,
                                        action,
                                        &s.with_token,
                                        &inputs,
                                    )
                                    .await
                                    .map_err(trap)?;
                                let r = r.map_err(|e| anyhow!("{action}: {}", error_json(&e)))?;
                                Ok::<_, anyhow::Error>((r.output, memory))
                            }
                        };
                        let t = Instant::now();
                        let (_, up_memory) = call("uploadFile", &upload).await?;
                        let up = ms(t.elapsed());
                        let (output, down_memory) = call("downloadFile", &download).await?;
                        let elapsed = ms(t.elapsed());
                        report.sample(FILES, &up_metric, "ms", contender, up);
                        report.sample(FILES, &down_metric, "ms", contender, elapsed - up);

                        let out: FileOutput = serde_json::from_str(&output)?;
                        let got = base64::engine::general_purpose::STANDARD
                            .decode(out.file_content.as_bytes())?;
                        if got != data {
                            return Err(anyhow!("downloadFile returned other bytes"));
                        }
                        let times = |m: usize| m as f64 / size as f64;
                        report.sample(
                            FILES,
                            FILES_UP_MEMORY,
                            "× file",
                            contender,
                            times(up_memory),
                        );
                        report.sample(
                            FILES,
                            FILES_DOWN_MEMORY,
                            "× file",
                            contender,
                            times(down_memory),
                        );
                        Ok(elapsed)
                    }
                    .await
                }
                Contender::Native => {
                    async {
                        let mut n = s.native().await?;
                        let t = Instant::now();
                        n.upload_file(&account, "bench.bin", &data).await?;
                        let up = ms(t.elapsed());
                        let got = n.download_file(&account).await?;
                        let elapsed = ms(t.elapsed());
                        report.sample(FILES, &up_metric, "ms", contender, up);
                        report.sample(FILES, &down_metric, "ms", contender, elapsed - up);
                        if got != data {
                            return Err(anyhow!("the native download returned other bytes"));
                        }
                        Ok(elapsed)
                    }
                    .await
                }
                // DynamicsWebApi is not run on files.
                Contender::Peer => continue,
            };
            report.one(FILES, &metric, contender, r);
        }
    }
}

/// What scenario 7 reads of downloadFile's output.
#[derive(serde::Deserialize)]
struct FileOutput {
    #[serde(rename = "fileContent")]
    file_content: String,
}

/// Half the generated accounts (revenue is `(n % 1000) × 1000`): 50,000 of
/// 100,000 in the full run. Ordered by the primary key so paging cookies apply.
fn fetch_xml_query(page_size: usize, paging: bool) -> String {
    let paging = if paging {
        r#" page="{page}" paging-cookie="{cookie}""#
    } else {
        ""
    };
    format!(
        r#"<fetch count="{page_size}"{paging}><entity name="account"><attribute name="accountid"/><attribute name="name"/><attribute name="revenue"/><order attribute="accountid"/><filter><condition attribute="revenue" operator="lt" value="500000"/></filter></entity></fetch>"#
    )
}

/// Scenario 2: a filtered FetchXML fetch-all with paging cookies.
async fn fetch_xml(s: &Setup, sizes: Sizes, report: &mut Report) {
    let xml = fetch_xml_query(sizes.page_size, false);
    for round in 0..sizes.rounds {
        eprintln!("bench: {FETCHXML}, round {}", round + 1);
        for contender in Contender::order(round) {
            let r = match contender {
                Contender::Connector => {
                    let inputs =
                        json!({"entityType": "accounts", "fetchXml": xml, "fetchAll": true});
                    connector_fetch(s, "runFetchXml", &inputs).await
                }
                Contender::Native => {
                    async {
                        let mut n = s.native().await?;
                        let rss = RssWindow::open();
                        let t = Instant::now();
                        let records = n
                            .fetch_xml_all(&fetch_xml_query(sizes.page_size, true))
                            .await?;
                        Ok((ms(t.elapsed()), records.len(), rss.close()))
                    }
                    .await
                }
                Contender::Peer => peer_fetch(
                    s.peer(json!({"scenario": "runFetchXml", "fetchXml": xml}))
                        .await,
                ),
            };
            report.fetch_sample(FETCHXML, contender, r, 0);
        }
    }
}

/// One connector fetch-all: (ms, records, RSS).
async fn connector_fetch(
    s: &Setup,
    action: &str,
    inputs: &Value,
) -> Result<(f64, usize, Option<Rss>)> {
    let rss = RssWindow::open();
    let t = Instant::now();
    let r = s.invoke(action, inputs).await;
    // The records are in hand: stop the clock before dropping them, as
    // for the native client (dropping 100,000 parsed records takes
    // ≈ 0.3 s, and was inside the connector's time only).
    let elapsed = t.elapsed();
    let count = r.and_then(|v| {
        v["count"]
            .as_u64()
            .map(|c| c as usize)
            .context("no count in the output")
    })?;
    Ok((ms(elapsed), count, rss.close()))
}

/// A peer fetch-all's report: (ms, records, RSS).
fn peer_fetch(run: Result<peer::PeerRun>) -> Result<(f64, usize, Option<Rss>)> {
    let p = run?;
    let ms = p.out["ms"].as_f64().context("no ms")?;
    let count = p.out["count"].as_u64().context("no count")? as usize;
    let rss = p.out["maxRssKb"].as_f64().map(|k| Rss {
        peak_mib: k / 1024.0,
        start_mib: None,
    });
    Ok((ms, count, rss))
}

/// Scenario 4: one `$batch` of contact creates: build, send, decode.
async fn batch(s: &Setup, sizes: Sizes, report: &mut Report) {
    const METRIC: &str = "build + send + decode";
    let n = sizes.batch_creates;
    for round in 0..sizes.batch_rounds {
        eprintln!("bench: {BATCH}, round {}", round + 1);
        for contender in Contender::order(round) {
            let r = match contender {
                Contender::Connector => batch_connector(s, n, round).await,
                Contender::Native => {
                    async {
                        let mut native = s.native().await?;
                        let t = Instant::now();
                        let ids = native.batch_creates(n, round).await?;
                        let ms = ms(t.elapsed());
                        if ids.len() != n {
                            return Err(anyhow!("{} ids for {n} creates", ids.len()));
                        }
                        Ok(ms)
                    }
                    .await
                }
                Contender::Peer => s
                    .peer(json!({"scenario": "runBatch", "creates": n, "round": round}))
                    .await
                    .and_then(|p| {
                        if p.out["count"].as_u64() != Some(n as u64) {
                            return Err(anyhow!("{} results for {n} creates", p.out["count"]));
                        }
                        p.out["ms"].as_f64().context("no ms")
                    }),
            };
            report.one(BATCH, METRIC, contender, r);
        }
    }
}

/// One connector round of scenario 4, in ms.
async fn batch_connector(s: &Setup, n: usize, round: usize) -> Result<f64> {
    let t = Instant::now();
    // The inputs are serialised from plain structs, as a Rust platform
    // would, and the output read into one: as `Value` trees (json!,
    // insertion-ordered maps with SipHash) building the inputs alone took
    // ~3 ms of the connector's time (`examples/batch_cost.rs`, "inputs to
    // JSON"). The native client's contact data comes from the same struct.
    let inputs = BatchInputs {
        batch_actions: (0..n)
            .map(|i| BatchCreate {
                collection: "contacts",
                action: "create",
                data: native::Contact {
                    firstname: "Bench",
                    lastname: format!("Connector r{round} {i}"),
                },
            })
            .collect(),
    };
    let output = s
        .invoke_text("runBatch", &serde_json::to_string(&inputs)?)
        .await?;
    let out: BatchOutput = serde_json::from_str(&output)?;
    let ms = ms(t.elapsed());
    if out.results.len() != n {
        return Err(anyhow!("{} results for {n} creates", out.results.len()));
    }
    if let Some(bad) = out.results.iter().position(|r| !r.success) {
        return Err(anyhow!("batch create {bad} failed: {output}"));
    }
    Ok(ms)
}

/// Scenario 4's inputs, serialised as the catalog names them.
#[derive(serde::Serialize)]
struct BatchInputs {
    #[serde(rename = "batchActions")]
    batch_actions: Vec<BatchCreate>,
}

#[derive(serde::Serialize)]
struct BatchCreate {
    collection: &'static str,
    action: &'static str,
    data: native::Contact,
}

/// What scenario 4 checks in runBatch's output (other fields are skipped).
#[derive(serde::Deserialize)]
struct BatchOutput {
    results: Vec<BatchResult>,
}

#[derive(serde::Deserialize)]
struct BatchResult {
    success: bool,
}

/// Scenario 1: every account, `page_size` per page.
async fn fetch_all(s: &Setup, sizes: Sizes, report: &mut Report) {
    let expected = sizes.records;
    for round in 0..sizes.rounds {
        eprintln!("bench: {FETCH}, round {}", round + 1);
        for contender in Contender::order(round) {
            let r = match contender {
                Contender::Connector => {
                    let inputs = json!({"entityType": "accounts", "fetchAll": true, "pageSize": sizes.page_size});
                    connector_fetch(s, "queryEntities", &inputs).await
                }
                Contender::Native => {
                    async {
                        let mut n = s.native().await?;
                        let rss = RssWindow::open();
                        let t = Instant::now();
                        let records = n.fetch_all(sizes.page_size).await?;
                        Ok((ms(t.elapsed()), records.len(), rss.close()))
                    }
                    .await
                }
                Contender::Peer => peer_fetch(
                    s.peer(json!({"scenario": "queryEntities", "pageSize": sizes.page_size}))
                        .await,
                ),
            };
            report.fetch_sample(FETCH, contender, r, expected);
        }
    }
}

/// Scenario 3: `gets` sequential single-record reads, per-call latency.
async fn get_entity(s: &Setup, sizes: Sizes, report: &mut Report) {
    let n = sizes.gets.min(sizes.records).max(1);
    let ids: Vec<String> = (0..n)
        .map(|i| generated_account_id(1 + i * sizes.records.max(1) / n))
        .collect();
    for round in 0..sizes.rounds {
        eprintln!("bench: {GET}, round {}", round + 1);
        for contender in Contender::order(round) {
            let r = match contender {
                Contender::Connector => {
                    async {
                        let mut samples = Vec::with_capacity(n);
                        for id in &ids {
                            let t = Instant::now();
                            let v = s
                                .invoke(
                                    "getEntity",
                                    &json!({"entityType": "accounts", "entityId": id}),
                                )
                                .await?;
                            samples.push(ms(t.elapsed()));
                            if v["accountid"].as_str() != Some(id.as_str()) {
                                return Err(anyhow!("getEntity {id} returned {}", v["accountid"]));
                            }
                        }
                        Ok(samples)
                    }
                    .await
                }
                Contender::Native => {
                    async {
                        let mut native = s.native().await?;
                        let mut samples = Vec::with_capacity(n);
                        for id in &ids {
                            let t = Instant::now();
                            let v = native.get_account(id).await?;
                            samples.push(ms(t.elapsed()));
                            if v["accountid"].as_str() != Some(id.as_str()) {
                                return Err(anyhow!(
                                    "GET account {id} returned {}",
                                    v["accountid"]
                                ));
                            }
                        }
                        Ok(samples)
                    }
                    .await
                }
                Contender::Peer => s
                    .peer(json!({"scenario": "getEntity", "ids": ids}))
                    .await
                    .and_then(|p| {
                        p.out["samplesMs"]
                            .as_array()
                            .context("no samplesMs")?
                            .iter()
                            .map(|x| x.as_f64().context("sample not a number"))
                            .collect::<Result<Vec<f64>>>()
                    }),
            };
            report.latency_samples(GET, contender, r);
        }
    }
}

/// Scenario 5: load the precompiled component, instantiate with a fresh
/// store, and the first getCurrentUser of a new host (token not cached).
async fn cold_start(s: &Setup, sizes: Sizes, report: &mut Report) {
    let precompiled = match ConnectorHost::precompile(COMPONENT_WASM) {
        Ok(p) => p,
        Err(e) => {
            report.error(
                COLD,
                "load precompiled + pre-instantiate",
                Contender::Connector,
                format!("{e:?}"),
            );
            return;
        }
    };
    for round in 0..sizes.rounds {
        eprintln!("bench: {COLD}, round {}", round + 1);
        let r = async {
            let t = Instant::now();
            // SAFETY: `precompiled` is this process's own precompile output.
            let host = unsafe { ConnectorHost::from_precompiled(&precompiled) }.map_err(trap)?;
            let load = ms(t.elapsed());
            let mut inst = Vec::with_capacity(sizes.instantiations);
            for _ in 0..sizes.instantiations {
                let t = Instant::now();
                host.instantiate_fresh().await.map_err(trap)?;
                inst.push(t.elapsed().as_secs_f64() * 1e6);
            }
            Ok::<_, anyhow::Error>((load, inst))
        }
        .await;
        match r {
            Ok((load, inst)) => {
                report.sample(
                    COLD,
                    "load precompiled + pre-instantiate",
                    "ms",
                    Contender::Connector,
                    load,
                );
                report.samples(
                    COLD,
                    "instantiate (fresh store)",
                    "µs",
                    Contender::Connector,
                    &inst,
                );
            }
            Err(e) => report.error(
                COLD,
                "load precompiled + pre-instantiate",
                Contender::Connector,
                format!("{e:#}"),
            ),
        }
        const FIRST: &str = "first getCurrentUser (new host, token fetched)";
        let r = async {
            let t = Instant::now();
            // SAFETY: as above.
            let host = unsafe { ConnectorHost::from_precompiled(&precompiled) }.map_err(trap)?;
            let out = host
                .invoke(&Route::Network, "getCurrentUser", &s.cold, "{}")
                .await
                .map_err(trap)?
                .map_err(|e| anyhow!("getCurrentUser: {}", error_json(&e)))?;
            let elapsed = ms(t.elapsed());
            let v: Value = serde_json::from_str(&out.output)?;
            if v.get("UserId").is_none() && v.get("userId").is_none() {
                return Err(anyhow!("getCurrentUser output has no UserId: {v}"));
            }
            Ok(elapsed)
        }
        .await;
        report.one(COLD, FIRST, Contender::Connector, r);
        let r = async {
            let t = Instant::now();
            let mut n = s.native().await?;
            let v = n.who_am_i().await?;
            let elapsed = ms(t.elapsed());
            v.get("UserId").context("WhoAmI without UserId")?;
            Ok(elapsed)
        }
        .await;
        report.one(COLD, FIRST, Contender::Native, r);
        // The peer's cold start is Node's: spawn → import → token → WhoAmI.
        let r = s
            .peer(json!({"scenario": "coldStart"}))
            .await
            .map(|p| ms(p.wall));
        report.one(COLD, FIRST, Contender::Peer, r);
    }
}

/// Scenario 6: the release `.wasm` the host embeds, raw and gzipped.
fn wasm_size(report: &mut Report) {
    use std::io::Write as _;
    let raw = COMPONENT_WASM.len() as f64;
    report.sample(SIZE, "size", "bytes", Contender::Connector, raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let gzip = gz
        .write_all(COMPONENT_WASM)
        .and_then(|_| gz.finish())
        .map(|v| v.len() as f64);
    match gzip {
        Ok(n) => report.sample(SIZE, "gzip -9 size", "bytes", Contender::Connector, n),
        Err(e) => report.error(SIZE, "gzip -9 size", Contender::Connector, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).rev().collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
