//! Where one `runBatch` of N creates spends its time (the bench's scenario
//! 4), layer by layer, as medians over ROUNDS:
//!
//! - `inputs to JSON`: the host building and serialising the inputs (the
//!   bench counts it in the connector's time, as a platform would pay it);
//! - `runBatch in-process`: the call with the emulator in this process (no
//!   socket), until its output is in hand (as text);
//! - `runBatch loopback`: the same over the host's pooled loopback HTTP;
//! - `native $batch`: the bench's native client, same creates, same emulator;
//! - `emulator alone`: the emulator's own handling of the native client's
//!   `$batch` body;
//! - `emulator, connector body`: the same for the body the connector sends
//!   (built natively with the crate's batch codec), so that a difference in
//!   what the two bodies cost the server is not taken for the connector's own.
//!
//! ```text
//! cargo run --profile bench-host -p host-test --example batch_cost -- [ROUNDS] [CREATES] [--in-process-only]
//! ```
//!
//! `--in-process-only` runs only the in-process call, for a profile of the
//! connector's side under `perf record`.
//!
//! `D365_COMPONENT=path.wasm` loads that component instead of the embedded
//! one (see `call_cost.rs`).

mod common;

use anyhow::{Context as _, Result, anyhow};
use host_test::host::{Route, error_json, trap};
use serde_json::Value;
use std::time::Instant;

fn main() -> Result<()> {
    let in_process_only = std::env::args().any(|a| a == "--in-process-only");
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let rounds: usize = match args.next() {
        Some(n) => n.parse().context("ROUNDS")?,
        None => 20,
    };
    let creates: usize = match args.next() {
        Some(n) => n.parse().context("CREATES")?,
        None => 1000,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(rounds.max(1), creates.max(1), in_process_only))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

async fn run(rounds: usize, creates: usize, in_process_only: bool) -> Result<()> {
    let mut rig = common::rig(1000).await?;
    let in_process = Route::InProcess(rig.emulator.clone());

    let mut serial = 0usize;
    let mut inputs = || {
        serial += 1;
        common::batch_create_inputs("Cost", serial, creates)
    };
    let (mut to_json, mut in_proc, mut loopback, mut nat, mut alone, mut alone_conn) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let t = Instant::now();
        let _ = inputs();
        to_json.push(ms(t));
        for (route, samples) in [
            (&in_process, &mut in_proc),
            (&Route::Network, &mut loopback),
        ] {
            if in_process_only && matches!(route, Route::Network) {
                continue;
            }
            let text = inputs();
            let t = Instant::now();
            let out = rig
                .host
                .invoke(route, "runBatch", &rig.connection, &text)
                .await
                .map_err(trap)?
                .map_err(|e| anyhow!("runBatch: {}", error_json(&e)))?;
            // The call alone: the bench reads the output into a small typed
            // struct, cheaper than this check's Value tree.
            samples.push(ms(t));
            let v: Value = serde_json::from_str(&out.output)?;
            let ok = v["results"]
                .as_array()
                .is_some_and(|r| r.len() == creates && r.iter().all(|r| r["success"] == true));
            if !ok {
                return Err(anyhow!("runBatch did not create {creates} contacts"));
            }
        }
        if in_process_only {
            continue;
        }
        let t = Instant::now();
        let ids = rig.native.batch_creates(creates, 1_000_000 + round).await?;
        nat.push(ms(t));
        if ids.len() != creates {
            return Err(anyhow!("native: {} ids for {creates} creates", ids.len()));
        }
        let (content_type, body) = rig.native.batch_body(creates, 2_000_000 + round);
        let request = http::Request::post(format!("{}/api/data/v9.2/$batch", rig.base))
            .header("Authorization", format!("Bearer {}", rig.access_token))
            .header("Content-Type", content_type)
            .body(body)?;
        let t = Instant::now();
        let status = rig.emulator.handle(request).await.status();
        alone.push(ms(t));
        if status != 200 {
            return Err(anyhow!("the emulator answered {status}"));
        }
        let (content_type, body) = connector_body(creates, 3_000_000 + round)?;
        let request = http::Request::post(format!("{}/api/data/v9.2/$batch", rig.base))
            .header("Authorization", format!("Bearer {}", rig.access_token))
            .header("Content-Type", content_type)
            .body(body.into())?;
        let t = Instant::now();
        let status = rig.emulator.handle(request).await.status();
        alone_conn.push(ms(t));
        if status != 200 {
            return Err(anyhow!(
                "the emulator answered {status} to the connector's body"
            ));
        }
    }
    println!("{rounds} rounds of {creates} creates; median per round:");
    for (label, v) in [
        ("inputs to JSON", to_json),
        ("runBatch in-process", in_proc),
        ("runBatch loopback", loopback),
        ("native $batch", nat),
        ("emulator alone", alone),
        ("emulator, connector body", alone_conn),
    ] {
        if !v.is_empty() {
            println!("  {label:<26} {:8.2} ms", median(v));
        }
    }
    rig.server.shutdown();
    Ok(())
}

/// The `$batch` body the connector sends for `creates` contact creates.
fn connector_body(creates: usize, round: usize) -> Result<(String, Vec<u8>)> {
    use d365_connector::batch;
    let inputs: Value = serde_json::from_str(&common::batch_create_inputs("Cost", round, creates))?;
    let items = batch::parse_value(&inputs["batchActions"], false)
        .map_err(|e| anyhow!("batchActions: {e:?}"))?;
    let encoded = batch::encode(&batch::build_parts(&items, "/api/data/v9.2/", false));
    Ok((encoded.content_type, encoded.body))
}
