//! The host's per-call limits: a component that loops forever, allocates
//! without bound, or meets a server that streams without end is stopped with
//! an error naming the limit, and the same `ConnectorHost` then serves a
//! normal call. The misbehaving component is `tests/guests/misbehave` (built
//! here for wasm32-wasip2 into its own target directory); the endless body
//! comes from the emulator's fault injection.

mod common;

use common::Env;
use host_test::emulator::{Faults, Trigger};
use host_test::host::limits::EPOCH_TICK;
use host_test::host::{ConnectorHost, HostLimits, Route};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Builds the misbehaving guest once per test binary.
fn misbehave_host() -> &'static ConnectorHost {
    static HOST: OnceLock<ConnectorHost> = OnceLock::new();
    HOST.get_or_init(|| {
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/guests/misbehave"
        ));
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("../../../../target"))
            .join("misbehave");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&dir)
            .args([
                "build",
                "--locked",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--target-dir",
            ])
            .arg(&target_dir);
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd.status().expect("running cargo for the test guest");
        assert!(status.success(), "building tests/guests/misbehave failed");
        let wasm = std::fs::read(target_dir.join("wasm32-wasip2/release/misbehave.wasm"))
            .expect("the guest was built");
        ConnectorHost::new(&wasm).expect("the guest compiles and links")
    })
}

fn limits(f: impl FnOnce(&mut HostLimits)) -> HostLimits {
    let mut l = HostLimits::default();
    f(&mut l);
    l
}

async fn call(host: &ConnectorHost, route: &Route, key: &str, inputs: &str) -> String {
    let env = Env::new();
    let conn = env.connection.connection().unwrap();
    match host.invoke(route, key, &conn, inputs).await {
        Ok(Ok(r)) => r.output,
        Ok(Err(e)) => format!("connector error: {}", e.message),
        Err(trap) => format!("stopped: {trap:?}"),
    }
}

/// A normal call on the same host after a stopped one.
async fn still_serves(host: &ConnectorHost) {
    let out = call(host, &Route::Network, "ok", "").await;
    assert_eq!(out, r#"{"ok":true}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_loops_forever_is_stopped_at_the_deadline() {
    let host = misbehave_host().limited(limits(|l| l.deadline = Duration::from_secs(3)));
    let started = Instant::now();
    let looping = {
        let host = host.clone();
        tokio::spawn(async move {
            let env = Env::new();
            let conn = env.connection.connection().unwrap();
            host.invoke(&Route::Network, "loop", &conn, "").await
        })
    };
    // Other calls are served while the loop spins.
    tokio::time::sleep(Duration::from_millis(300)).await;
    still_serves(&host).await;
    assert!(!looping.is_finished(), "the loop was still running");
    let error = match looping.await.unwrap() {
        Err(e) => format!("{e:?}"),
        Ok(r) => panic!("a forever loop returned: {r:?}"),
    };
    let took = started.elapsed();
    assert!(
        error.contains("exceeded its deadline of 3s"),
        "clear error: {error}"
    );
    assert!(
        // The deadline counts epoch ticks, so it may fire up to one tick early.
        took >= Duration::from_secs(3) - EPOCH_TICK && took < Duration::from_secs(30),
        "{took:?}"
    );
    still_serves(&host).await;
}

#[tokio::test]
async fn a_component_that_allocates_without_bound_is_stopped_at_the_memory_cap() {
    let host = misbehave_host().limited(limits(|l| l.memory_bytes = 64 << 20));
    let out = call(&host, &Route::Network, "allocate", "").await;
    assert!(out.starts_with("stopped:"), "{out}");
    assert!(
        out.contains("exceeded its linear memory limit of 64 MiB"),
        "clear error: {out}"
    );
    still_serves(&host).await;
    // The default cap (512 MiB) stops it too.
    let out = call(misbehave_host(), &Route::Network, "allocate", "").await;
    assert!(out.contains("linear memory limit of 512 MiB"), "{out}");
    still_serves(misbehave_host()).await;
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_host_cap() {
    let env = Env::new();
    env.emulator
        .set_faults(Faults::default().with_endless_body(Trigger::Next(1000)));
    let route = Route::InProcess(env.emulator.clone());
    let cap: u64 = 4 << 20;
    let host = misbehave_host().limited(limits(|l| l.max_response_body = cap));
    // A guest with no cap of its own keeps reading; the host ends the stream.
    let out = call(
        &host,
        &route,
        "read-endless",
        "http://localhost/api/data/v9.2/WhoAmI",
    )
    .await;
    let read: u64 = out
        .split("body failed after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a stream error after some bytes: {out}"));
    assert!(
        read <= cap && read > cap - (128 << 10),
        "{read} of {cap}: {out}"
    );
    assert!(
        out.to_ascii_lowercase().contains("body") && out.contains("ize"),
        "names the body size limit: {out}"
    );
    assert_eq!(env.emulator.fault_stats().endless, 1);
    still_serves(&host).await;

    // The real connector under the same cap: a typed error, not a trap, and
    // the same host then serves it normally.
    let connector = common::host().limited(limits(|l| l.max_response_body = 1 << 20));
    let conn = env.connection.connection().unwrap();
    let result = connector
        .invoke(&route, "getCurrentUser", &conn, "{}")
        .await
        .expect("no trap");
    let err = result.expect_err("an endless body is an error");
    assert!(
        matches!(err.kind, host_test::host::ErrorKind::Transport),
        "{err:?}"
    );
    env.emulator.set_faults(Faults::default());
    let ok = connector
        .invoke(&route, "getCurrentUser", &conn, "{}")
        .await
        .expect("no trap")
        .expect("served normally after the fault");
    assert!(ok.output.contains("UserId"), "{}", ok.output);
}
