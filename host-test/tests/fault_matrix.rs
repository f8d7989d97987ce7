//! The fault matrix: every action of the catalog under every injected
//! fault (host-test/src/fault_matrix.rs runs it), checked against the
//! committed table `fault_matrix.tsv` and against the invariants that hold
//! whatever the table says (no trap, typed errors, no write applied twice
//! or lost on success, fetch-all complete or an error). The matrix is
//! printed (`--nocapture`); `FAULT_MATRIX_WRITE=1` rewrites the table from
//! the observed outcomes (review the diff: the table is the specification).

mod common;

use common::{Env, host};
use host_test::emulator::store::seed;
use host_test::emulator::{self, Faults, Injected, Trigger};
use host_test::fault_matrix;
use host_test::host::Route;
use serde_json::{Value, json};

const TABLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fault_matrix.tsv");

#[tokio::test(start_paused = true)]
async fn every_action_under_every_fault_matches_the_table() {
    let text = std::fs::read_to_string(TABLE).unwrap_or_default();
    let expected = fault_matrix::parse_table(&text).unwrap();
    let cells = fault_matrix::run(host()).await.unwrap();
    assert_eq!(
        cells.len(),
        (fault_matrix::ACTIONS.len() + fault_matrix::LIFECYCLE.len()) * fault_matrix::FAULTS.len()
    );
    println!("{}", fault_matrix::render(&cells, &expected));
    let violations = fault_matrix::violations(&cells);
    assert!(
        violations.is_empty(),
        "invariants broken:\n{}",
        violations.join("\n")
    );
    if std::env::var_os("FAULT_MATRIX_WRITE").is_some() {
        std::fs::write(TABLE, fault_matrix::to_tsv(&cells)).unwrap();
        return;
    }
    let mismatches = fault_matrix::mismatches(&cells, &expected);
    assert!(
        mismatches.is_empty(),
        "outcomes differ from {TABLE}:\n{}",
        mismatches.join("\n")
    );
}

/// Every action of the catalog is in the matrix.
#[tokio::test]
async fn the_matrix_covers_the_whole_catalog() {
    let catalog = common::catalog().await;
    let keys: Vec<&str> = catalog.iter().filter_map(|a| a["key"].as_str()).collect();
    assert_eq!(keys, fault_matrix::ACTIONS);
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

/// Server mode: the loopback emulator really resets the socket (TCP RST).
/// Over a socket the request is already written when the reset comes, so
/// the connector sees a broken connection for both resets: a GET is
/// retried, a POST is not, and nothing is applied twice.
#[tokio::test]
async fn real_time_server_mode_resets_the_connection() {
    let emulator = emulator::Emulator::new(Default::default());
    let server = emulator::server::serve(emulator.clone(), 0).await.unwrap();
    let mut env = Env::new();
    env.emulator = emulator.clone();
    env.route = Route::Network;
    env.connection = host_test::cli::emulator_connection(&server.base_url());
    env.ok("getCurrentUser", "{}").await;
    let named = |name: &str| {
        emulator
            .state()
            .store
            .records("account")
            .filter(|r| r.get("name") == name)
            .count()
    };
    type Reset = fn(Faults, Trigger) -> Faults;
    let resets: [(&str, Reset, usize); 2] = [
        ("before", Faults::with_reset_before_send, 0),
        ("after", Faults::with_reset_after_send, 1),
    ];
    for (when, reset, applied) in resets {
        emulator.set_faults(reset(Faults::default(), Trigger::Nth(1)));
        let who = env.ok("getCurrentUser", "{}").await;
        assert_eq!(who["UserId"], emulator::data::USER_APP);
        let stats = emulator.fault_stats();
        assert_eq!(
            (stats.requests, stats.resets),
            (2, 1),
            "{when}: a GET is retried"
        );

        emulator.set_faults(reset(Faults::default(), Trigger::Nth(1)));
        let name = format!("Server reset {when}");
        let fields = json!({"entityType": "accounts", "fieldValues": {"name": name}});
        let err: Value = env.err("createEntity", &fields.to_string()).await;
        assert_eq!(err["kind"], "transport", "{when}: {err}");
        assert_eq!(err["code"], "connection-broken", "{when}: {err}");
        assert_eq!(emulator.fault_stats().requests, 1, "{when}: a POST is not");
        assert_eq!(named(&name), applied, "{when}");
    }
    server.shutdown();
}

/// A write whose answer was lost after the service may have applied it is
/// not repeated by the session, and its error tells the caller not to
/// repeat it blindly either (retryable false, with a hint).
#[tokio::test(start_paused = true)]
async fn a_write_that_may_have_been_applied_is_not_retryable() {
    let lost = [
        Faults::default().with_reset_after_send(Trigger::Nth(1)),
        Faults::default().with_error_after_processing(Trigger::Nth(1), Injected::Status(502)),
    ];
    for faults in lost {
        let mut env = Env::new();
        env.emulator.set_faults(faults.clone());
        let create = json!({"entityType": "accounts", "fieldValues": {"name": "Lost answer"}});
        let err = env.err("createEntity", &create.to_string()).await;
        assert_eq!(err["retryable"], false, "{err}");
        assert!(
            err["hint"]
                .as_str()
                .is_some_and(|h| h.contains("may have been applied")),
            "{err}"
        );
        assert_eq!(env.emulator.fault_stats().requests, 1, "sent once");
        // The same loss on a 503 refusal (nothing applied) stays retryable.
        env.emulator.set_faults(Faults::fail_next(1000, 503));
        let err = env.err("createEntity", &create.to_string()).await;
        assert_eq!(err["retryable"], true, "{err}");
    }
}
