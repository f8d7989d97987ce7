//! The retry policy through the real component, against emulator faults.
//!
//! Time: every test but the real-time ones runs on tokio's paused clock with
//! the in-process route. The guest's sleeps are tokio timers and its
//! monotonic clock reads tokio's `Instant`, so a 60 s Retry-After costs no
//! wall time while the guest (and `virtual_elapsed`) still see 60 s pass.
//! `real_time_*` tests use the real clock; one of them over a loopback socket.

mod common;

use common::Env;
use host_test::cli;
use host_test::emulator::{self, Emulator, Faults, Injected, Limit, Trigger};
use host_test::host::Route;
use serde_json::{Value, json};
use std::time::Duration;

const WHO_AM_I: &str = "/api/data/v9.2/WhoAmI";
const WRITE_TARGET: &str = "/api/data/v9.2/PublishAllXml";

fn attempts(env: &Env) -> u64 {
    env.emulator.fault_stats().requests
}

fn raw(inputs: Value) -> String {
    let mut inputs = inputs;
    if inputs.get("url").is_none() {
        inputs["url"] = json!(WHO_AM_I);
    }
    inputs.to_string()
}

#[tokio::test]
async fn real_time_429_with_retry_after_1_is_retried_after_about_a_second() {
    let mut env = Env::new();
    env.ok("getCurrentUser", "{}").await; // token fetched outside the timing
    env.emulator.set_faults(Faults::fail_next(1, 429));
    let started = std::time::Instant::now();
    let out = env.ok("getCurrentUser", "{}").await;
    let took = started.elapsed();
    assert_eq!(out["UserId"], emulator::data::USER_APP);
    assert_eq!(attempts(&env), 2, "one 429, then the successful retry");
    assert_eq!(env.emulator.fault_stats().injected, [429]);
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(5),
        "waited Retry-After: 1 ({took:?})"
    );
}

#[tokio::test(start_paused = true)]
async fn a_60_second_retry_after_is_honoured_on_the_paused_clock() {
    let mut env = Env::new();
    // Only the first request is throttled.
    env.emulator.set_faults(Faults::default().with_error(
        Trigger::Nth(1),
        Injected::Throttle {
            retry_after_secs: 60,
            limit: Limit::Concurrency,
        },
    ));
    let wall = std::time::Instant::now();
    let virtual_start = tokio::time::Instant::now();
    let out = env.ok("rawRequest", &raw(json!({"maxRetries": 1}))).await;
    assert_eq!(out["status"], 200);
    assert_eq!(attempts(&env), 2);
    let waited = virtual_start.elapsed();
    assert!(
        waited >= Duration::from_secs(60) && waited < Duration::from_secs(61),
        "Retry-After 60 s waited on the guest's clock: {waited:?}"
    );
    assert!(
        wall.elapsed() < Duration::from_secs(30),
        "no real sleeping: {:?}",
        wall.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn max_retries_2_against_three_failures_errors_after_exactly_three_attempts() {
    let mut env = Env::new();
    env.emulator.set_faults(Faults::fail_next(3, 500));
    let err = env
        .err(
            "rawRequest",
            &raw(json!({"maxRetries": 2, "retryDelayMs": 250})),
        )
        .await;
    assert_eq!(err["status"], 500);
    assert_eq!(err["code"], "0x80040216");
    assert_eq!(attempts(&env), 3);

    // One more retry and the fourth attempt succeeds.
    env.emulator.set_faults(Faults::fail_next(3, 503));
    let started = tokio::time::Instant::now();
    let out = env
        .ok(
            "rawRequest",
            &raw(json!({"maxRetries": 3, "retryDelayMs": 250})),
        )
        .await;
    assert_eq!(out["status"], 200);
    assert_eq!(attempts(&env), 4);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(750) && waited < Duration::from_millis(1000),
        "three fixed 250 ms delays: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn max_retries_0_means_no_retry_even_when_throttled() {
    let mut env = Env::new();
    env.emulator.set_faults(Faults::fail_next(1, 429));
    let err = env.err("rawRequest", &raw(json!({}))).await;
    assert_eq!(err["kind"], "throttled");
    assert_eq!(err["retryAfter"], 1);
    assert_eq!(err["code"], "0x80072322");
    assert_eq!(attempts(&env), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_all_errors_retries_a_400_and_without_it_a_400_is_final() {
    let mut env = Env::new();
    env.emulator.set_faults(Faults::fail_next(1, 400));
    let err = env.err("rawRequest", &raw(json!({"maxRetries": 3}))).await;
    assert_eq!(err["status"], 400);
    assert_eq!(attempts(&env), 1, "only 5xx and network errors by default");

    env.emulator.set_faults(Faults::fail_next(1, 400));
    let out = env
        .ok(
            "rawRequest",
            &raw(json!({"maxRetries": 3, "retryAllErrors": true})),
        )
        .await;
    assert_eq!(out["status"], 200);
    assert_eq!(attempts(&env), 2);
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_follows_the_documented_schedule() {
    let mut env = Env::new();
    env.emulator.set_faults(Faults::fail_next(3, 503));
    let started = tokio::time::Instant::now();
    let out = env
        .ok(
            "rawRequest",
            &raw(json!({"maxRetries": 3, "useExponentialBackoff": true, "retryDelayMs": 100000})),
        )
        .await;
    assert_eq!(out["status"], 200);
    assert_eq!(attempts(&env), 4);
    // 1 s, 2 s, 4 s less up to half each (jitter): 3.5 s to 7 s; the fixed
    // 100 s delay is ignored.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(3_500) && waited <= Duration::from_millis(7_100),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_shorter_than_the_delay_is_a_timeout_error() {
    let mut env = Env::new();
    env.ok("getCurrentUser", "{}").await;
    env.emulator
        .set_faults(Faults::default().with_delay(Trigger::Next(1), Duration::from_secs(5)));
    let started = tokio::time::Instant::now();
    let err = env.err("rawRequest", &raw(json!({"timeout": 1000}))).await;
    assert_eq!(err["kind"], "timeout", "{err}");
    assert_eq!(err["code"], "response-timeout");
    assert_eq!(attempts(&env), 1);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
        "gave up after the 1 s timeout, not the 5 s delay: {waited:?}"
    );

    // Retried per the options: the second attempt is not delayed.
    env.emulator
        .set_faults(Faults::default().with_delay(Trigger::Next(1), Duration::from_secs(5)));
    let out = env
        .ok(
            "rawRequest",
            &raw(json!({"timeout": 1000, "maxRetries": 1})),
        )
        .await;
    assert_eq!(out["status"], 200);
    assert_eq!(attempts(&env), 2);
}

#[tokio::test(start_paused = true)]
async fn a_write_that_meets_a_500_is_not_retried_unless_asked() {
    let mut env = Env::new();
    env.emulator
        .set_faults(Faults::fail_next(1, 500).only_path("PublishAllXml"));
    let err = env
        .err(
            "rawRequest",
            &raw(json!({"url": WRITE_TARGET, "method": "POST", "data": {}})),
        )
        .await;
    assert_eq!(err["status"], 500);
    assert_eq!(attempts(&env), 1, "sent once: nothing can be applied twice");

    env.emulator
        .set_faults(Faults::fail_next(1, 500).only_path("PublishAllXml"));
    let out = env
        .ok(
            "rawRequest",
            &raw(json!({"url": WRITE_TARGET, "method": "POST", "data": {}, "maxRetries": 1})),
        )
        .await;
    assert_eq!(out["status"], 204);
    assert_eq!(attempts(&env), 2, "the option asked for a retry");
}

#[tokio::test(start_paused = true)]
async fn every_action_retries_503_and_gateway_errors_with_backoff() {
    let mut env = Env::new();
    env.emulator
        .set_faults(Faults::fail_next(1, 503).with_error(Trigger::Nth(2), Injected::Status(502)));
    let started = tokio::time::Instant::now();
    let out = env.ok("getCurrentUser", "{}").await;
    assert_eq!(out["UserId"], emulator::data::USER_APP);
    assert_eq!(attempts(&env), 3);
    assert_eq!(env.emulator.fault_stats().injected, [503, 502]);
    // Default schedule: 0.5–1 s, then 1–2 s.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1_500) && waited <= Duration::from_millis(3_100),
        "{waited:?}"
    );

    // A 500 is not retried by the default policy.
    env.emulator.set_faults(Faults::fail_next(1, 500));
    let err = env.err("getCurrentUser", "{}").await;
    assert_eq!(err["status"], 500);
    assert_eq!(attempts(&env), 1);
}

#[tokio::test(start_paused = true)]
async fn throttling_is_bounded_by_retries_and_total_time() {
    let mut env = Env::new();
    env.emulator.set_faults(Faults::throttle_every(1, 60));
    let started = tokio::time::Instant::now();
    let err = env.err("getCurrentUser", "{}").await;
    assert_eq!(err["kind"], "throttled");
    assert_eq!(err["retryAfter"], 60);
    assert_eq!(
        attempts(&env),
        6,
        "the first attempt and 5 retries (default)"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(300) && waited < Duration::from_secs(301),
        "{waited:?}"
    );

    // Per-connection override: at most 100 s in total, Retry-After capped at 45 s.
    env.connection.settings.insert(
        "retryPolicy".into(),
        json!({"maxTotalSeconds": 100, "maxRetryAfterSeconds": 45}),
    );
    env.emulator.set_faults(Faults::throttle_every(1, 60));
    let started = tokio::time::Instant::now();
    let err = env.err("getCurrentUser", "{}").await;
    assert_eq!(err["kind"], "throttled");
    assert_eq!(
        attempts(&env),
        3,
        "waits of 45 s + 45 s fit in 100 s, a third does not"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(90) && waited < Duration::from_secs(91),
        "{waited:?}"
    );

    // maxRetries 0 on the connection turns retries off for typed actions.
    env.connection
        .settings
        .insert("retryPolicy".into(), json!({"maxRetries": 0}));
    env.emulator.set_faults(Faults::fail_next(1, 503));
    env.err("getCurrentUser", "{}").await;
    assert_eq!(attempts(&env), 1);

    // A bad setting names itself.
    env.connection
        .settings
        .insert("retryPolicy".into(), json!({"maxRetries": "lots"}));
    let err = env.err("getCurrentUser", "{}").await;
    assert_eq!(err["input"], "retryPolicy.maxRetries");
}

#[tokio::test(start_paused = true)]
async fn tokens_expiring_early_get_one_renewal() {
    let mut env = Env::new();
    env.ok("getCurrentUser", "{}").await;
    env.emulator.clear_log();
    env.emulator
        .set_faults(Faults::default().with_expired_tokens(Trigger::Nth(1)));
    let out = env.ok("rawRequest", &raw(json!({}))).await;
    assert_eq!(out["status"], 200);
    let statuses = env.statuses();
    assert_eq!(statuses, [(false, 401), (true, 200), (false, 200)]);
    assert_eq!(env.emulator.fault_stats().tokens_expired, 1);
}

#[tokio::test(start_paused = true)]
async fn a_body_cut_mid_way_is_retried_for_reads_only() {
    let mut env = Env::new();
    env.emulator
        .set_faults(Faults::default().with_cut_body(Trigger::Nth(1)));
    let out = env.ok("getCurrentUser", "{}").await;
    assert_eq!(out["UserId"], emulator::data::USER_APP);
    assert_eq!(attempts(&env), 2, "a GET is safe to repeat");

    env.emulator.set_faults(
        Faults::default()
            .with_cut_body(Trigger::Nth(1))
            .only_path("PublishXml"),
    );
    let err = env
        .err(
            "rawRequest",
            &raw(json!({"url": "/api/data/v9.2/PublishXml", "method": "POST", "data": {}})),
        )
        .await;
    assert_eq!(err["kind"], "transport", "{err}");
    assert_eq!(err["code"], "connection-broken");
    assert_eq!(attempts(&env), 1);
}

/// Server mode: the connection really closes mid-body (a real socket, so
/// real time).
#[tokio::test]
async fn real_time_server_mode_connection_closed_mid_body() {
    let emulator = Emulator::new(Default::default());
    let server = emulator::server::serve(emulator.clone(), 0).await.unwrap();
    let mut env = Env::new();
    env.emulator = emulator.clone();
    env.route = Route::Network;
    env.connection = cli::emulator_connection(&server.base_url());
    env.ok("getCurrentUser", "{}").await;

    emulator.set_faults(Faults::default().with_cut_body(Trigger::Nth(1)));
    let err = env.err("rawRequest", &raw(json!({}))).await;
    assert_eq!(err["kind"], "transport", "{err}");
    assert_eq!(err["code"], "connection-broken");
    assert_eq!(emulator.fault_stats().requests, 1);

    emulator.set_faults(Faults::default().with_cut_body(Trigger::Nth(1)));
    let out = env.ok("getCurrentUser", "{}").await;
    assert_eq!(out["UserId"], emulator::data::USER_APP);
    assert_eq!(emulator.fault_stats().requests, 2);
    server.shutdown();
}

#[test]
fn cli_emulator_flags_inject_429_and_503() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_d365"))
        .args([
            "emulator",
            "--inject-429-every",
            "2",
            "--retry-after",
            "7",
            "--inject-503-every",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("d365 starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().to_string();
    if !base.starts_with("http://") {
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).ok();
        panic!("d365 emulator did not start: stdout {line:?}, stderr {stderr}");
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let statuses: Vec<(u16, Option<String>)> = runtime.block_on(async {
        let mut out = Vec::new();
        for _ in 0..6 {
            let (status, headers, _) =
                common::http_get(&format!("{base}/api/data/v9.2/WhoAmI")).await;
            let retry_after = headers
                .iter()
                .find(|(k, _)| k == "retry-after")
                .map(|(_, v)| v.clone());
            out.push((status, retry_after));
        }
        out
    });
    child.kill().ok();
    child.wait().ok();
    // Unauthenticated requests: 401 unless a fault answers first.
    let seven = Some("7".to_string());
    assert_eq!(
        statuses,
        [
            (401, None),
            (429, seven.clone()),
            (503, None),
            (429, seven.clone()),
            (401, None),
            (429, seven),
        ]
    );
}

/// Stand-in, until record actions exist, for "fetchAll over 12,000 records
/// with a 429 on every 5th request": a run of calls under periodic
/// throttling all succeed, each throttled request retried exactly once.
#[tokio::test(start_paused = true)]
async fn periodic_throttling_loses_no_call() {
    let mut env = Env::new();
    env.ok("getCurrentUser", "{}").await;
    env.emulator.set_faults(Faults::throttle_every(5, 2));
    let started = tokio::time::Instant::now();
    for i in 0..20 {
        let out = if i % 2 == 0 {
            env.ok("getCurrentUser", "{}").await["UserId"].clone()
        } else {
            env.ok("rawRequest", &raw(json!({"maxRetries": 1}))).await["body"]["UserId"].clone()
        };
        assert_eq!(out, emulator::data::USER_APP, "call {i}");
    }
    let stats = env.emulator.fault_stats();
    let throttled = stats.injected.len() as u64;
    assert_eq!(stats.requests, 20 + throttled, "one extra attempt per 429");
    assert!(throttled >= 4, "{stats:?}");
    assert!(stats.injected.iter().all(|s| *s == 429));
    assert_eq!(
        started.elapsed().as_secs(),
        2 * throttled,
        "Retry-After: 2 each time"
    );
}
