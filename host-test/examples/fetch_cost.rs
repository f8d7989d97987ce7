//! Where a 100,000-record `queryEntities` fetch-all's time goes (`d365
//! bench` scenario 1 times the whole of it): the connector's call alone
//! (guest, wasi-http, lifting the output), the host parsing that output as
//! the bench does and dropping the parsed tree, and the native client with
//! and without its JSON parse.
//!
//! ```text
//! cargo run --profile bench-host -p host-test --example fetch_cost -- [ROUNDS] [--connector-only]
//! ```
//!
//! `--connector-only` runs only the connector's call (output parsed and
//! dropped, untimed), for a profile of its side under `perf record`.

mod common;

use anyhow::{Context as _, Result, anyhow};
use host_test::host::{Route, error_json, trap};
use serde_json::{Value, json};
use std::time::Instant;

const RECORDS: usize = 100_000;
const PAGE: usize = 5_000;

fn main() -> Result<()> {
    let connector_only = std::env::args().any(|a| a == "--connector-only");
    let rounds: usize = match std::env::args().skip(1).find(|a| !a.starts_with("--")) {
        Some(n) => n.parse().with_context(|| format!("ROUNDS: '{n}'"))?,
        None => 5,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(rounds.max(1), connector_only))
}

async fn run(rounds: usize, connector_only: bool) -> Result<()> {
    let mut rig = common::rig(RECORDS).await?;
    let inputs = json!({"entityType": "accounts", "fetchAll": true, "pageSize": PAGE}).to_string();
    let mut rows: [Vec<f64>; 5] = Default::default();
    for _ in 0..rounds {
        let t = Instant::now();
        let out = rig
            .host
            .invoke(&Route::Network, "queryEntities", &rig.connection, &inputs)
            .await
            .map_err(trap)?
            .map_err(|e| anyhow!("queryEntities: {}", error_json(&e)))?;
        rows[0].push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let v: Value = serde_json::from_str(&out.output)?;
        rows[1].push(t.elapsed().as_secs_f64() * 1e3);
        let count = v["count"].as_u64().context("no count in the output")?;
        let t = Instant::now();
        drop(v);
        rows[2].push(t.elapsed().as_secs_f64() * 1e3);
        drop(out);
        if connector_only {
            continue;
        }
        let t = Instant::now();
        let records = rig.native.fetch_all(PAGE).await?;
        rows[3].push(t.elapsed().as_secs_f64() * 1e3);
        // The emulator holds a few seeded accounts besides the generated ones.
        if records.len() as u64 != count || count < RECORDS as u64 {
            return Err(anyhow!(
                "connector {count} records, native {}",
                records.len()
            ));
        }
        drop(records);
        let t = Instant::now();
        let bytes = rig.native.fetch_all_bytes(PAGE).await?;
        rows[4].push(t.elapsed().as_secs_f64() * 1e3);
        if bytes == 0 {
            return Err(anyhow!("native read nothing"));
        }
    }
    println!("{rounds} rounds of a {RECORDS}-record fetch-all, {PAGE} per page; median:");
    for (label, mut v) in [
        "connector call (output as text)",
        "host parses that output",
        "host drops the parsed output",
        "native (HTTP + parse)",
        "native HTTP only (no parse)",
    ]
    .into_iter()
    .zip(rows)
    {
        if v.is_empty() {
            continue;
        }
        v.sort_by(f64::total_cmp);
        println!("  {label:<34} {:8.1} ms", v[v.len() / 2]);
    }
    rig.server.shutdown();
    Ok(())
}
