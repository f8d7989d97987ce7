//! `d365 load` in short: concurrent workflows on one connection under
//! scaled service protection limits reach the limits, ride them out, and
//! leave no duplicate and no lost write in the store; the soak mode
//! samples the host. The full runs' figures are in host-test/benches/LOAD.md.

use serde_json::Value;
use std::process::Command;

fn d365_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_d365"))
        .args(args)
        .output()
        .expect("d365 runs");
    assert!(
        out.status.success(),
        "d365 {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

#[test]
fn a_short_load_reaches_the_limits_and_loses_and_duplicates_nothing() {
    let r = d365_json(&[
        "load",
        "--workers",
        "4",
        "--seconds",
        "4",
        "--limits",
        "requests=40,window=2s,concurrent=8,execution=10s",
        "--json",
    ]);
    assert_eq!(r["duplicates"], 0, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    // Every action of the mix ran and succeeded at least once.
    for action in [
        "runBatch",
        "queryEntities",
        "updateEntity",
        "deleteEntity",
        "getEntityMetadata",
    ] {
        assert!(
            r["actions"][action]["ok"].as_u64().unwrap_or(0) > 0,
            "{action}: {r}"
        );
    }
    // The request limit was reached, and every 429 was ridden out.
    assert!(r["throttled"]["requests"].as_u64().unwrap_or(0) > 0, "{r}");
    assert!(r["retries"].as_u64().unwrap() > 0, "{r}");
    assert!(r["errorsByKind"].as_object().unwrap().is_empty(), "{r}");
    let fraction = r["ceilingFraction"].as_f64().unwrap();
    assert!(fraction > 0.0 && fraction <= 1.0, "{fraction}");
    assert!(r["rowsWritten"].as_u64().unwrap() > 0);
}

#[test]
fn the_soak_samples_memory_and_descriptors() {
    let r = d365_json(&[
        "load", "--soak", "--calls", "2000", "--every", "500", "--json",
    ]);
    assert_eq!(r["errors"], 0, "{r}");
    let samples = r["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 5, "{r}");
    assert!(samples.iter().all(|s| s["rssKib"].as_u64().unwrap() > 0));
    assert!(samples.iter().all(|s| s["fds"].as_u64().unwrap() > 0));
}
