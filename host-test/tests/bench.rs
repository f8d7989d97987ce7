//! `d365 bench --quick` runs end to end (so the suite cannot rot): every
//! scenario produces rows for the connector and the native baseline, and for
//! DynamicsWebApi when Node is present. No timing is asserted — timed tests
//! flake; the bench prints ratios instead.

use serde_json::Value;
use std::process::Command;

const SCENARIOS: [(&str, &[&str]); 7] = [
    ("1. fetch-all queryEntities", &["whole fetch-all"]),
    ("2. fetch-all runFetchXml", &["whole fetch-all"]),
    (
        "3. getEntity ×N sequential",
        &["p50 per call", "p99 per call"],
    ),
    ("4. runBatch creates", &["build + send + decode"]),
    (
        "5. cold start",
        &[
            "load precompiled + pre-instantiate",
            "instantiate (fresh store)",
            "first getCurrentUser (new host, token fetched)",
        ],
    ),
    ("6. release .wasm", &["size", "gzip -9 size"]),
    // --quick moves a 9 MiB file (the row names the size).
    (
        "7. uploadFile + downloadFile",
        &[
            "upload + download (9 MiB)",
            "upload (9 MiB)",
            "download (9 MiB)",
            "peak linear memory, upload",
            "peak linear memory, download",
        ],
    ),
];

/// Which contenders each metric is measured for.
fn contenders(scenario: &str, metric: &str) -> &'static [&'static str] {
    match (scenario, metric) {
        ("6. release .wasm", _) => &["connector"],
        // DynamicsWebApi is not run on files; memory is the component's.
        ("7. uploadFile + downloadFile", m) if m.starts_with("peak") => &["connector"],
        ("7. uploadFile + downloadFile", _) => &["connector", "native"],
        ("5. cold start", m) if m != "first getCurrentUser (new host, token fetched)" => {
            &["connector"]
        }
        _ => &["connector", "native", "peer"],
    }
}

fn node_present() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One bench at a time: the first may `npm install` in host-test/js.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn bench(args: &[&str]) -> String {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_d365"))
        .arg("bench")
        .arg("--quick")
        .args(args)
        .output()
        .expect("d365 runs");
    assert!(
        out.status.success(),
        "d365 bench --quick {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn quick_bench_reports_every_scenario_for_every_contender() {
    let report: Value = serde_json::from_str(&bench(&["--json"])).expect("--json prints JSON");
    let rows = report["rows"].as_array().expect("rows");
    let node = node_present();
    for (scenario, metrics) in SCENARIOS {
        for metric in metrics {
            for contender in contenders(scenario, metric) {
                let row = rows
                    .iter()
                    .find(|r| {
                        r["scenario"] == scenario
                            && r["metric"] == *metric
                            && r["contender"] == *contender
                    })
                    .unwrap_or_else(|| panic!("no row for {scenario} / {metric} / {contender}"));
                if *contender == "peer" && !node {
                    // Without Node the row says why instead of failing the run.
                    assert!(
                        row["error"].as_str().is_some_and(|e| e.contains("Node")),
                        "{row}"
                    );
                    continue;
                }
                // DynamicsWebApi, the connector and the baseline each complete
                // every scenario against the emulator.
                assert!(
                    row.get("error").is_none(),
                    "{scenario} / {metric} / {contender}: {row}"
                );
                let samples = row["samples"].as_array().expect("samples");
                assert!(!samples.is_empty(), "{row}");
                assert!(
                    samples.iter().all(|s| s.as_f64().is_some_and(|v| v > 0.0)),
                    "{row}"
                );
                assert!(row["median"].as_f64().is_some(), "{row}");
                if *contender != "native" && contenders(scenario, metric).contains(&"native") {
                    assert!(row["ratioToNative"].as_f64().is_some(), "{row}");
                }
            }
        }
    }
    // The fetch-alls return every generated record (the report already
    // refuses a contender whose count differs from the others').
    let generated = report["sizes"]["generatedRecords"].as_u64().unwrap();
    let fetch = rows
        .iter()
        .find(|r| r["scenario"] == "1. fetch-all queryEntities" && r["contender"] == "connector")
        .unwrap();
    assert!(fetch["records"].as_u64().unwrap() > generated, "{fetch}");
    // Every target of the issue is evaluated (holds or not), none left unmeasured.
    let targets = report["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 13, "{targets:?}");
    for t in targets {
        if node || !t["target"].as_str().unwrap().contains("DynamicsWebApi") {
            assert!(t["holds"].is_boolean(), "target not measured: {t}");
        }
    }
}

#[test]
fn quick_bench_prints_the_table() {
    let table = bench(&[]);
    for (scenario, metrics) in SCENARIOS {
        for metric in metrics {
            for contender in contenders(scenario, metric) {
                let label = if *contender == "peer" {
                    "DynamicsWebApi"
                } else {
                    contender
                };
                let line = format!("| {scenario} | {metric} | {label} |");
                assert!(table.contains(&line), "missing {line} in\n{table}");
            }
        }
    }
    assert!(table.contains("| target | holds | measured |"), "{table}");
    assert!(table.contains("release .wasm ≤ 512 KiB"), "{table}");
}
