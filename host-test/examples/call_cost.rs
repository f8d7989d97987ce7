//! Where one connector call's time goes: the per-call medians that `d365
//! bench` does not split apart. Each line peels off one layer:
//!
//! - `instantiate`: a fresh store and instance, nothing called;
//! - `rejected input`: getEntity with a malformed id: instantiation, the
//!   call, settings and inputs checked, no request;
//! - `getEntity in-process`: the request answered by the emulator in this
//!   process (wasi-http, no socket);
//! - `getEntity loopback`: the same over the host's pooled loopback HTTP;
//! - `getEntity spawned`: the same inside `tokio::spawn`, as a server
//!   handling requests on the runtime's workers would call it;
//! - `pool send`: the same GET on the host's pooled client
//!   (`host::network`), no component: what the network route costs alone;
//! - `native GET`: the bench's native client, same request, same emulator;
//! - `emulator alone`: the emulator's own handling of that request.
//!
//! ```text
//! cargo run --profile bench-host -p host-test --example call_cost -- [CALLS] [--current-thread] [--only LABEL]
//! ```
//!
//! `--only LABEL` runs only the lines whose label contains LABEL (e.g.
//! `--only in-process`), so a profile holds one layer.
//!
//! `--current-thread` runs everything on one thread (no cross-thread wakeups
//! between the call, wasi-http's tasks and the server). For a profile, run it
//! under `perf record` with `D365_WASM_PROFILER=perfmap`; `D365_COMPONENT=
//! path.wasm` loads that component instead of the embedded one (e.g. one
//! built with `CARGO_PROFILE_RELEASE_STRIP=false`, so the guest's functions
//! have names).

mod common;

use anyhow::{Context as _, Result, anyhow};
use host_test::emulator::store::seed::generated_account_id;
use host_test::host::{Route, error_json, trap};
use serde_json::{Value, json};
use std::future::Future;
use std::time::Instant;

fn main() -> Result<()> {
    let mut calls = 2000usize;
    let mut current_thread = false;
    let mut only = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--current-thread" => current_thread = true,
            "--only" => only = args.next().context("--only needs a label")?,
            n => {
                calls = n
                    .parse()
                    .with_context(|| format!("CALLS: '{n}' is not a count"))?
            }
        }
    }
    let runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()?;
    println!(
        "{calls} calls each, {} runtime; median per call:",
        if current_thread {
            "current-thread"
        } else {
            "multi-thread"
        }
    );
    runtime.block_on(run(calls.max(1), &only))
}

/// The median of `calls` timings of `f`, in µs.
async fn median_us<F, Fut>(calls: usize, mut f: F) -> Result<f64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        f().await?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

async fn run(calls: usize, only: &str) -> Result<()> {
    let wanted = |label: &str| label.contains(only);
    let mut rig = common::rig(1000).await?;
    let id = generated_account_id(5);
    let get = json!({"entityType": "accounts", "entityId": id}).to_string();
    let rejected = json!({"entityType": "accounts", "entityId": "not-a-guid"}).to_string();
    let in_process = Route::InProcess(rig.emulator.clone());

    if wanted("instantiate") {
        let us = median_us(calls, || async {
            rig.host.instantiate_fresh().await.map_err(trap)
        })
        .await?;
        println!("  instantiate            {us:8.1} µs");
    }

    if wanted("rejected input") {
        let us = median_us(calls, || async {
            match rig
                .host
                .invoke(&in_process, "getEntity", &rig.connection, &rejected)
                .await
            {
                Ok(Err(_)) => Ok(()),
                Ok(Ok(_)) => Err(anyhow!("a malformed id was accepted")),
                Err(e) => Err(trap(e)),
            }
        })
        .await?;
        println!("  rejected input         {us:8.1} µs");
    }

    for (label, route) in [
        ("getEntity in-process", &in_process),
        ("getEntity loopback", &Route::Network),
    ] {
        if !wanted(label) {
            continue;
        }
        let us = median_us(calls, || async {
            let out = rig
                .host
                .invoke(route, "getEntity", &rig.connection, &get)
                .await
                .map_err(trap)?
                .map_err(|e| anyhow!("getEntity: {}", error_json(&e)))?;
            let v: Value = serde_json::from_str(&out.output)?;
            check_id(&v, &id)
        })
        .await?;
        println!("  {label:<22} {us:8.1} µs");
    }

    if wanted("spawned") {
        let host = rig.host;
        let us = median_us(calls, || {
            let connection = rig.connection.clone();
            let get = get.clone();
            let id = id.clone();
            async move {
                tokio::spawn(async move {
                    let out = host
                        .invoke(&Route::Network, "getEntity", &connection, &get)
                        .await
                        .map_err(trap)?
                        .map_err(|e| anyhow!("getEntity: {}", error_json(&e)))?;
                    let v: Value = serde_json::from_str(&out.output)?;
                    check_id(&v, &id)
                })
                .await?
            }
        })
        .await?;
        println!("  getEntity spawned      {us:8.1} µs");
    }

    if wanted("pool send") {
        use http_body_util::BodyExt;
        let network = host_test::host::network::Network::new();
        let url = format!("{}/api/data/v9.2/accounts({id})", rig.base);
        let us = median_us(calls, || async {
            let body: wasmtime_wasi_http::WasiBody = http_body_util::Empty::<bytes::Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync();
            let request = http::Request::get(&url)
                .header("Authorization", format!("Bearer {}", rig.access_token))
                .header("Accept", "application/json")
                .body(body)?;
            let res = network
                .send(request, None)
                .await
                .map_err(|e| anyhow!("{e:?}"))?;
            let bytes = res
                .into_body()
                .collect()
                .await
                .map_err(|e| anyhow!("{e:?}"))?
                .to_bytes();
            let v: Value = serde_json::from_slice(&bytes)?;
            check_id(&v, &id)
        })
        .await?;
        println!("  pool send              {us:8.1} µs");
    }

    if wanted("native GET") {
        let mut samples = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            let v = rig.native.get_account(&id).await?;
            samples.push(t.elapsed().as_secs_f64() * 1e6);
            check_id(&v, &id)?;
        }
        samples.sort_by(f64::total_cmp);
        println!(
            "  native GET             {:8.1} µs",
            samples[samples.len() / 2]
        );
    }

    if wanted("emulator alone") {
        let url = format!("{}/api/data/v9.2/accounts({id})", rig.base);
        let us = median_us(calls, || async {
            let request = http::Request::get(&url)
                .header("Authorization", format!("Bearer {}", rig.access_token))
                .body(bytes::Bytes::new())?;
            let status = rig.emulator.handle(request).await.status();
            if status != 200 {
                return Err(anyhow!("the emulator answered {status}"));
            }
            Ok(())
        })
        .await?;
        println!("  emulator alone         {us:8.1} µs");
    }
    rig.server.shutdown();
    Ok(())
}

fn check_id(v: &Value, id: &str) -> Result<()> {
    if v["accountid"].as_str() == Some(id) {
        Ok(())
    } else {
        Err(anyhow!("expected account {id}, got {}", v["accountid"]))
    }
}
