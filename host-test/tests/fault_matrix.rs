//! The fault matrix (record actions for now): every action in [`ACTIONS`]
//! meets every fault in [`faults`] on a fresh emulator, and its outcome —
//! `ok` (succeeded, after retries where the policy allows them) or
//! `error:<kind>` — must equal the row of `fault_matrix.tsv`, the table
//! committed next to this file. Independently of the table: no write is
//! applied twice, a successful write is really applied, and a fetch-all
//! returns every record or fails, never a silent part. The table is printed
//! (`--nocapture`); `FAULT_MATRIX_WRITE=1` rewrites it from the observed
//! outcomes (review the diff: the table is the specification).

mod common;

use common::{Env, host};
use host_test::emulator::store::seed;
use host_test::emulator::{Faults, Injected, Limit, Trigger};
use host_test::host::{HostLimits, error_json};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

const TABLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fault_matrix.tsv");

const ACTIONS: &[&str] = &[
    "getCurrentUser",
    "createEntity",
    "getEntity",
    "updateEntity",
    "upsertEntity",
    "deleteEntity",
    "queryEntities",
];

/// Each fault, hitting Web API request `at` (the first one, or the second
/// page of a fetch-all).
fn faults(at: u64) -> Vec<(&'static str, Faults)> {
    let n = Trigger::Nth(at);
    vec![
        ("none", Faults::default()),
        (
            "429-retry-after",
            Faults::default().with_error(
                n,
                Injected::Throttle {
                    retry_after_secs: 2,
                    limit: Limit::Requests,
                },
            ),
        ),
        (
            "503",
            Faults::default().with_error(
                n,
                Injected::Unavailable {
                    retry_after_secs: None,
                },
            ),
        ),
        (
            "500",
            Faults::default().with_error(n, Injected::Status(500)),
        ),
        (
            "502-after-processing",
            Faults::default().with_error_after_processing(n, Injected::Status(502)),
        ),
        ("cut-body", Faults::default().with_cut_body(n)),
        (
            "stall-30s",
            Faults::default().with_delay(n, Duration::from_secs(30)),
        ),
        ("token-expired", Faults::default().with_expired_tokens(n)),
        ("endless-body", Faults::default().with_endless_body(n)),
        ("500-always", Faults::fail_next(1000, 500)),
    ]
}

fn inputs(action: &str, name: &str) -> Value {
    let id = seed::account_id(3);
    match action {
        "getCurrentUser" => json!({}),
        "createEntity" => json!({"entityType": "accounts", "fieldValues": {"name": name}}),
        "getEntity" => json!({"entityType": "accounts", "entityId": id, "fieldNames": ["name"]}),
        "updateEntity" => {
            json!({"entityType": "accounts", "entityId": id, "fieldValues": {"name": name}})
        }
        "upsertEntity" => json!({"entityType": "accounts",
            "entityId": "0f0f0f0f-0000-4000-8000-000000000abc", "fieldValues": {"name": name}}),
        "deleteEntity" => json!({"entityType": "accounts", "entityId": id}),
        "queryEntities" => json!({"entityType": "accounts", "fieldNames": ["name"],
            "fetchAll": true, "pageSize": 2}),
        other => panic!("no inputs for {other}"),
    }
}

/// All account ids, read without faults.
async fn account_ids(env: &mut Env) -> Vec<String> {
    env.emulator.set_faults(Faults::default());
    let out = env
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","fieldNames":["name"],"fetchAll":true}"#,
        )
        .await;
    out["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["accountid"].as_str().unwrap().to_string())
        .collect()
}

async fn names(env: &mut Env, name: &str) -> usize {
    env.emulator.set_faults(Faults::default());
    let out = env
        .ok(
            "queryEntities",
            &json!({"entityType": "accounts", "filter": format!("name eq '{name}'"), "fetchAll": true})
                .to_string(),
        )
        .await;
    out["value"].as_array().unwrap().len()
}

/// Runs one cell; returns its outcome after checking the invariants.
async fn cell(action: &str, fault_name: &str, fault: Faults) -> String {
    let mut env = Env::new();
    let before = account_ids(&mut env).await;
    env.emulator.set_faults(fault);
    let name = format!("Matrix {action} {fault_name}");
    let conn = env.connection.connection().unwrap();
    // The endless body meets a host capped at 8 MiB (the component's own
    // 128 MiB cap would only make the test slow).
    let connector = host().limited(HostLimits {
        max_response_body: 8 << 20,
        ..HostLimits::default()
    });
    let result = connector
        .invoke(
            &env.route,
            action,
            &conn,
            &inputs(action, &name).to_string(),
        )
        .await
        .unwrap_or_else(|trap| panic!("{action} / {fault_name}: trap {trap:?}"));
    let ctx = format!("{action} / {fault_name}");
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("error:{}", error_json(e)["kind"].as_str().unwrap_or("?")),
    };
    let output: Option<Value> = result
        .as_ref()
        .ok()
        .map(|r| serde_json::from_str(&r.output).expect("output is JSON"));
    match action {
        "createEntity" | "upsertEntity" | "updateEntity" => {
            let n = names(&mut env, &name).await;
            assert!(n <= 1, "{ctx}: written {n} times");
            if output.is_some() {
                assert_eq!(n, 1, "{ctx}: ok but not applied");
            }
        }
        "deleteEntity" => {
            let after = account_ids(&mut env).await;
            if output.is_some() {
                assert!(
                    !after.contains(&seed::account_id(3)),
                    "{ctx}: ok but not deleted"
                );
            }
            assert!(
                after.len() + 1 >= before.len(),
                "{ctx}: deleted more than one"
            );
        }
        "queryEntities" => {
            if let Some(out) = &output {
                let got: HashSet<&str> = out["value"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["accountid"].as_str().unwrap())
                    .collect();
                assert_eq!(
                    out["value"].as_array().unwrap().len(),
                    before.len(),
                    "{ctx}: fetch-all returned a part, or duplicates"
                );
                assert_eq!(got.len(), before.len(), "{ctx}: duplicates");
            }
        }
        _ => {}
    }
    outcome
}

fn read_table() -> BTreeMap<(String, String), String> {
    let text = std::fs::read_to_string(TABLE).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 3, "bad table line: {l}");
            ((cols[0].into(), cols[1].into()), cols[2].into())
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn every_record_action_under_every_fault_matches_the_table() {
    let expected = read_table();
    let mut observed: Vec<(String, String, String)> = Vec::new();
    let mut mismatches = Vec::new();
    for action in ACTIONS {
        // A fetch-all meets the fault on its second page.
        let at = if *action == "queryEntities" { 2 } else { 1 };
        for (fault_name, fault) in faults(at) {
            let outcome = cell(action, fault_name, fault).await;
            match expected.get(&(action.to_string(), fault_name.to_string())) {
                Some(want) if *want == outcome => {}
                want => mismatches.push(format!(
                    "{action} / {fault_name}: expected {}, got {outcome}",
                    want.map_or("(no row)", String::as_str)
                )),
            }
            observed.push((action.to_string(), fault_name.to_string(), outcome));
        }
    }
    let mut table = String::from(
        "# The fault matrix: action, fault, expected outcome (ok = succeeded, after\n\
         # retries where the policy allows them; error:<kind> = a typed error).\n\
         # Checked by tests/fault_matrix.rs.\n",
    );
    for (a, f, o) in &observed {
        table.push_str(&format!("{a}\t{f}\t{o}\n"));
    }
    eprintln!("{table}");
    if std::env::var_os("FAULT_MATRIX_WRITE").is_some() {
        std::fs::write(TABLE, &table).unwrap();
        return;
    }
    assert!(
        mismatches.is_empty(),
        "outcomes differ from {TABLE}:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(observed.len(), expected.len(), "every table row was run");
}

/// A retried DELETE that meets 404 succeeds only when an earlier attempt
/// may have deleted the record (502 after processing); after an attempt the
/// service refused (503) a 404 still means the record never existed.
#[tokio::test(start_paused = true)]
async fn a_retried_delete_is_not_found_only_when_nothing_was_applied() {
    let mut env = Env::new();
    let missing = r#"{"entityType":"accounts","entityId":"0f0f0f0f-0000-4000-8000-00000000dead"}"#;
    env.emulator.set_faults(Faults::fail_next(1, 503));
    let err = env.err("deleteEntity", missing).await;
    assert_eq!(err["kind"], "not-found", "{err}");
    assert_eq!(env.emulator.fault_stats().requests, 2, "retried once");

    let existing = json!({"entityType": "accounts", "entityId": seed::account_id(4)}).to_string();
    env.emulator.set_faults(
        Faults::default().with_error_after_processing(Trigger::Nth(1), Injected::Status(502)),
    );
    let out = env.ok("deleteEntity", &existing).await;
    assert_eq!(out["deleted"], true);
    assert_eq!(env.emulator.fault_stats().requests, 2, "retried once");
    env.emulator.set_faults(Faults::default());
    let err = env.err("deleteEntity", &existing).await;
    assert_eq!(err["kind"], "not-found", "really gone: {err}");
}
