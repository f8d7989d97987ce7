//! The emulator's service protection limits (issue #32), each reached at
//! scaled settings through the real component and on the wire: the
//! documented 429, `Retry-After` and code; and the connector riding them
//! out (its retries honour `Retry-After`).

mod common;

use common::Env;
use common::wire::{Req, Wire};
use host_test::emulator::limits::Limits;
use host_test::emulator::{Config, LogRetention};

fn env_with(limits: &str) -> Env {
    Env::with_config(Config {
        limits: Some(limits.parse::<Limits>().expect("a limits spec")),
        log_retention: LogRetention::RECENT,
        ..Default::default()
    })
}

/// The statuses, codes and Retry-After of `n` sequential WhoAmI calls.
async fn who_am_i(wire: &Wire, n: usize) -> Vec<(u16, String, Option<u64>)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = wire.send(Req::get("WhoAmI")).await;
        let retry = r.header("Retry-After").and_then(|v| v.parse().ok());
        out.push((
            r.status,
            r.at("/error/code").as_str().unwrap_or("").to_string(),
            retry,
        ));
    }
    out
}

#[tokio::test]
async fn the_request_limit_answers_the_documented_429() {
    let env = env_with("requests=5,window=60s");
    let wire = Wire::new(&env).await;
    let got = who_am_i(&wire, 6).await;
    assert!(got[..5].iter().all(|(s, _, _)| *s == 200), "{got:?}");
    let (status, code, retry) = &got[5];
    assert_eq!((*status, code.as_str()), (429, "0x80072322"));
    let retry = retry.expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    let r = wire.send(Req::get("WhoAmI")).await;
    assert_eq!(
        r.at("/error/message").as_str().unwrap_or(""),
        "Number of requests exceeded the limit of 5 over time window of 60 seconds."
    );
    // Successful answers say what is left.
    let env = env_with("requests=5,window=60s");
    let wire = Wire::new(&env).await;
    let ok = wire.send(Req::get("WhoAmI")).await;
    assert_eq!(
        ok.header("x-ms-ratelimit-burst-remaining-xrm-requests"),
        Some("4")
    );
    assert!(ok.header("x-ms-dop-hint").is_some());
}

#[tokio::test]
async fn the_execution_time_limit_answers_the_documented_429() {
    // A GET costs 10 ms of simulated execution: 3 of them pass 25 ms.
    let env = env_with("execution=25ms,window=60s");
    let wire = Wire::new(&env).await;
    let got = who_am_i(&wire, 4).await;
    assert!(got[..3].iter().all(|(s, _, _)| *s == 200), "{got:?}");
    assert_eq!(
        (got[3].0, got[3].1.as_str()),
        (429, "0x80072321"),
        "{got:?}"
    );
    assert!(got[3].2.is_some_and(|s| (1..=60).contains(&s)));
}

#[tokio::test]
async fn the_concurrency_limit_refuses_at_once() {
    // One at a time; a write (30 ms) in progress while a read arrives.
    let env = env_with("concurrent=1");
    let wire = Wire::new(&env).await;
    let (a, b) = tokio::join!(
        wire.send(Req::new("POST", "accounts").json(serde_json::json!({"name": "Slow"}))),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            wire.send(Req::get("WhoAmI")).await
        }
    );
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(b.status, 429, "{}", b.body);
    assert_eq!(b.at("/error/code").as_str().unwrap_or(""), "0x80072326");
    assert_eq!(
        b.at("/error/message").as_str().unwrap_or(""),
        "Number of concurrent requests exceeded the limit of 1."
    );
    assert!(b.header("Retry-After").is_some());
}

#[tokio::test]
async fn the_connector_rides_out_the_request_limit() {
    // 4 requests per 2 s: a fetch-all of 150 contacts in 10 pages has to
    // wait out the window twice; every record arrives once.
    let mut env = env_with("requests=4,window=2s");
    let out = env
        .ok(
            "queryEntities",
            r#"{"entityType":"contacts","fieldNames":["fullname"],"fetchAll":true,"pageSize":15}"#,
        )
        .await;
    assert_eq!(out["count"], 150);
    let ids: std::collections::BTreeSet<_> = out["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["contactid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 150);
    let refused = env
        .emulator
        .state()
        .limiter
        .as_ref()
        .map_or(0, |l| l.refused.get("requests").copied().unwrap_or(0));
    assert!(refused >= 2, "the limit was reached: {refused}");
}
