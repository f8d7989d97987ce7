//! Two builds of the component, A and B, on the same call, alternating A B A
//! B … in one process against one in-process emulator, so that the
//! machine's slow and fast phases hit both alike. Prints each one's median
//! and their difference: for checking that a change to the connector made
//! it faster (or not slower) when separate runs vary more than the change.
//!
//! ```text
//! cargo run --profile bench-host -p host-test --example ab_cost -- A.wasm B.wasm [runBatch|getEntity] [ROUNDS]
//! ```
//!
//! `runBatch` is the bench's scenario 4 (1,000 contact creates), timed from
//! the call to its output parsed; `getEntity` is one account read.

mod common;

use anyhow::{Context as _, Result, anyhow};
use host_test::emulator::store::seed::generated_account_id;
use host_test::host::{ConnectorHost, Route, error_json, trap};
use serde_json::{Value, json};
use std::time::Instant;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [a, b, rest @ ..] = args.as_slice() else {
        return Err(anyhow!(
            "usage: ab_cost A.wasm B.wasm [runBatch|getEntity] [ROUNDS]"
        ));
    };
    let action = rest.first().map_or("runBatch", String::as_str).to_string();
    let rounds: usize = match rest.get(1) {
        Some(n) => n.parse().context("ROUNDS")?,
        None => 40,
    };
    let load = |p: &str| -> Result<ConnectorHost> {
        let wasm = std::fs::read(p).with_context(|| format!("reading {p}"))?;
        ConnectorHost::new(&wasm).map_err(trap)
    };
    let hosts = [load(a)?, load(b)?];
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(hosts, &action, rounds.max(1)))
}

async fn run(hosts: [ConnectorHost; 2], action: &str, rounds: usize) -> Result<()> {
    let rig = common::rig(1000).await?;
    let route = Route::InProcess(rig.emulator.clone());
    let id = generated_account_id(5);
    let mut serial = 0usize;
    let mut inputs = || -> String {
        serial += 1;
        match action {
            "getEntity" => json!({"entityType": "accounts", "entityId": id}).to_string(),
            _ => common::batch_create_inputs("AB", serial, 1000),
        }
    };
    let mut samples = [Vec::new(), Vec::new()];
    for round in 0..rounds * 2 {
        // A B, then B A: neither always runs right after the emulator grew.
        let which = (round + round / 2) % 2;
        let text = inputs();
        let t = Instant::now();
        let out = hosts[which]
            .invoke(&route, action, &rig.connection, &text)
            .await
            .map_err(trap)?
            .map_err(|e| anyhow!("{action}: {}", error_json(&e)))?;
        let v: Value = serde_json::from_str(&out.output)?;
        samples[which].push(t.elapsed().as_secs_f64() * 1e3);
        if v.is_null() {
            return Err(anyhow!("{action} returned null"));
        }
    }
    let [ma, mb] = samples.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    });
    println!("{rounds} {action} calls each, alternating; median ms:");
    println!(
        "  A {ma:9.3}\n  B {mb:9.3}\n  B - A {:+.3} ({:+.1}%)",
        mb - ma,
        (mb / ma - 1.0) * 100.0
    );
    rig.server.shutdown();
    Ok(())
}
