//! The two "Must show" items of the retry issue that need record actions
//! (`queryEntities`, `createEntity`) and the emulator's record store:
//! `fetchAll` over 12,000 records while every 5th request gets a 429 still
//! returns exactly 12,000 distinct records, and a create that meets a 500
//! is not retried unless the options say so, leaving no duplicate record.

mod common;

use common::Env;
use host_test::emulator::{Config, Faults, Injected, Trigger};
use serde_json::{Value, json};
use std::collections::HashSet;

fn ids(value: &Value, key: &str) -> Vec<String> {
    value
        .as_array()
        .expect("a list of records")
        .iter()
        .map(|r| r[key].as_str().expect("an id").to_string())
        .collect()
}

#[tokio::test(start_paused = true)]

async fn fetch_all_over_12000_records_with_a_429_every_5th_request() {
    let mut env = Env::with_config(Config {
        generated_records: 12_000,
        ..Default::default()
    });
    env.ok("getCurrentUser", "{}").await;
    env.emulator.set_faults(Faults::throttle_every(5, 3));
    let out = env
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","fieldNames":["name"],"filter":"startswith(name,'Generated Account')",
                "fetchAll":true,"pageSize":500}"#,
        )
        .await;
    let all = ids(&out["value"], "accountid");
    assert_eq!(all.len(), 12_000);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 12_000, "distinct");
    let stats = env.emulator.fault_stats();
    assert!(
        !stats.injected.is_empty(),
        "throttled along the way: {stats:?}"
    );
    // 24 pages of 500, one extra attempt per 429.
    assert_eq!(stats.requests, 24 + stats.injected.len() as u64);
}

/// How many accounts are named `name`, through queryEntities.
async fn accounts_named(env: &mut Env, name: &str) -> usize {
    let inputs = json!({"entityType":"accounts","fieldNames":["name"],"filter":format!("name eq '{name}'"),"fetchAll":true});
    let out = env.ok("queryEntities", &inputs.to_string()).await;
    out["value"].as_array().unwrap().len()
}

#[tokio::test(start_paused = true)]
async fn a_create_meeting_a_500_is_not_retried_and_no_duplicate_exists() {
    let mut env = Env::new();
    env.ok("getCurrentUser", "{}").await;
    // The next create on /accounts is applied, then answered with `status`.
    let error_after_processing = |status| {
        Faults::default()
            .with_error_after_processing(Trigger::Nth(1), Injected::Status(status))
            .only_path("/accounts")
    };

    // The create is applied, then the answer is a 500: sent once, one record.
    env.emulator.set_faults(error_after_processing(500));
    let err = env
        .err(
            "createEntity",
            r#"{"entityType":"accounts","fieldValues":{"name":"Retry Once Co"}}"#,
        )
        .await;
    assert_eq!(err["status"], 500);
    assert_eq!(env.emulator.fault_stats().requests, 1, "not retried");
    assert_eq!(
        accounts_named(&mut env, "Retry Once Co").await,
        1,
        "no duplicate"
    );

    // A 502 after processing is not retried either (a POST may have been applied).
    env.emulator.set_faults(error_after_processing(502));
    env.err(
        "createEntity",
        r#"{"entityType":"accounts","fieldValues":{"name":"Gateway Co"}}"#,
    )
    .await;
    assert_eq!(env.emulator.fault_stats().requests, 1);
    assert_eq!(accounts_named(&mut env, "Gateway Co").await, 1);

    // A 429 is refused before processing: retried, and still one record.
    env.emulator
        .set_faults(Faults::fail_next(1, 429).only_path("/accounts"));
    env.ok(
        "createEntity",
        r#"{"entityType":"accounts","fieldValues":{"name":"Throttled Co"}}"#,
    )
    .await;
    assert_eq!(env.emulator.fault_stats().requests, 2);
    assert_eq!(accounts_named(&mut env, "Throttled Co").await, 1);

    // rawRequest retries a 500 on a POST only when its options say so.
    env.emulator.set_faults(error_after_processing(500));
    env.err(
        "rawRequest",
        r#"{"url":"accounts","method":"POST","data":{"name":"Raw Co"}}"#,
    )
    .await;
    assert_eq!(env.emulator.fault_stats().requests, 1);
}
