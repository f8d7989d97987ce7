//! Every action and trigger in the component's catalog has an end-to-end
//! test that invokes it by its key through the component (in the spirit of
//! wasmtime's `assert_test_exists`): a new action cannot land untested.
//!
//! The check reads the catalog from the real component and scans the source
//! of the test files next to this one for calls that name a key as a string
//! literal: `env.ok("key"`, `.err(`, `.invoke(`, `.invoke_raw(`,
//! `.invoke_or_trap(` (the `Env` helpers), `host().invoke(&route, "key"`,
//! and the CLI's `"run", "key"`. Loops over the whole catalog (canary,
//! property, fault matrix) do not count: they name no key. A polling
//! trigger runs as the action of its key; a webhook trigger is covered by a
//! call of each of the host's webhook exports: `host().webhook(` (handle),
//! `.subscribe(`, `.unsubscribe(` and `.check_subscription(` (its
//! lifecycle).

mod common;

use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The methods that invoke an action whose first argument is its key.
const KEY_FIRST: &[&str] = &[
    ".ok(",
    ".err(",
    ".invoke(",
    ".invoke_raw(",
    ".invoke_or_trap(",
];

/// The call of the host's webhook export.
const WEBHOOK_CALL: &str = ".webhook(";
/// The calls of the webhook trigger's lifecycle exports.
const LIFECYCLE_CALLS: &[&str] = &[".subscribe(", ".unsubscribe(", ".check_subscription("];

/// What a set of test sources invokes.
#[derive(Debug, Default)]
struct Invoked {
    actions: BTreeSet<String>,
    webhook: bool,
    lifecycle: BTreeSet<&'static str>,
}

/// The text of a string literal starting at `s` (after leading
/// whitespace), if `s` starts with one.
fn literal(s: &str) -> Option<&str> {
    let rest = s.trim_start().strip_prefix('"')?;
    rest.find('"').map(|end| &rest[..end])
}

/// `s` after its first argument (the text up to the first comma outside
/// brackets), or `None` when the call ends first.
fn after_first_argument(s: &str) -> Option<&str> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => return None,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => return Some(&s[i + 1..]),
            _ => {}
        }
    }
    None
}

/// Scans test source for invocations (comment lines are skipped).
fn scan(source: &str, into: &mut Invoked) {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for method in KEY_FIRST {
        for (at, _) in code.match_indices(method) {
            let args = &code[at + method.len()..];
            // `env.invoke("key", …)`, or `host().invoke(&route, "key", …)`.
            let key = literal(args).or_else(|| {
                (*method == ".invoke(")
                    .then(|| after_first_argument(args))
                    .flatten()
                    .and_then(literal)
            });
            if let Some(key) = key {
                into.actions.insert(key.to_string());
            }
        }
    }
    // The CLI: `d365 run key`, written `"run", "key"`.
    for (at, _) in code.match_indices("\"run\"") {
        let rest = code[at + 5..].trim_start();
        if let Some(key) = rest.strip_prefix(',').and_then(literal) {
            into.actions.insert(key.to_string());
        }
    }
    into.webhook |= code.contains(WEBHOOK_CALL);
    for call in LIFECYCLE_CALLS {
        if code.contains(call) {
            into.lifecycle.insert(call);
        }
    }
}

/// The catalog's keys that nothing invokes, as `action key` or
/// `trigger key`.
fn missing(catalog: &Value, invoked: &Invoked) -> Vec<String> {
    let list = |name: &str| catalog[name].as_array().cloned().unwrap_or_default();
    let actions = list("actions");
    let triggers = list("triggers");
    assert!(!actions.is_empty(), "the catalog lists actions: {catalog}");
    assert!(
        !triggers.is_empty(),
        "the catalog lists triggers: {catalog}"
    );
    let mut missing = Vec::new();
    for a in &actions {
        let key = a["key"].as_str().expect("an action key");
        if !invoked.actions.contains(key) {
            missing.push(format!("action {key}"));
        }
    }
    for t in &triggers {
        let key = t["key"].as_str().expect("a trigger key");
        let covered = match t["kind"].as_str() {
            Some("webhook") => {
                invoked.webhook
                    && LIFECYCLE_CALLS
                        .iter()
                        .all(|c| invoked.lifecycle.contains(c))
            }
            Some("polling") => invoked.actions.contains(key),
            other => panic!("trigger {key} has an unknown kind {other:?}"),
        };
        if !covered {
            missing.push(format!("trigger {key}"));
        }
    }
    missing
}

/// The end-to-end test files next to this one (this file excluded: its
/// self-check holds sample invocations).
fn test_sources() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let mut sources: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("the tests folder")
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .filter(|p| !p.ends_with("coverage.rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("a readable test file");
            (p.display().to_string(), text)
        })
        .collect();
    sources.sort();
    sources
}

/// The scanner itself: it finds each form of invocation, ignores comments,
/// and reports what is not invoked.
#[test]
fn the_scanner_finds_invocations_and_reports_what_is_missing() {
    let sample = r##"
        let out = env
            .ok(
                "createEntity",
                r#"{}"#,
            )
            .await;
        let e = env.err("getEntity", "{}").await;
        env.invoke("updateEntity", "{}").await;
        env.invoke_raw("deleteEntity", "{}").await;
        env.invoke_or_trap("runBatch", "{}").await;
        host().invoke(&Route::Network, "getCurrentUser", &conn, "{}").await;
        d365().args(["run", "queryEntities", "--input", "{}"]);
        d365().args([
            "run",
            "recordChanges",
        ]);
        let ok = result.ok();
        // env.ok("inAComment", "{}")
        host().webhook(&request, "{}").await;
        host().subscribe(&route, &conn, "{}", url).await;
        host().unsubscribe(&route, &conn, &sub).await;
        host().check_subscription(&route, &conn, &sub).await;
    "##;
    let mut invoked = Invoked::default();
    scan(sample, &mut invoked);
    let want: BTreeSet<String> = [
        "createEntity",
        "getEntity",
        "updateEntity",
        "deleteEntity",
        "runBatch",
        "getCurrentUser",
        "queryEntities",
        "recordChanges",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(invoked.actions, want);
    assert!(invoked.webhook);

    let catalog = json!({
        "actions": [{"key": "getCurrentUser"}, {"key": "notAnAction"}, {"key": "recordChanges"}],
        "triggers": [
            {"key": "webhook", "kind": "webhook"},
            {"key": "recordChanges", "kind": "polling"},
            {"key": "notATrigger", "kind": "polling"}
        ]
    });
    assert_eq!(
        missing(&catalog, &invoked),
        vec!["action notAnAction", "trigger notATrigger"]
    );
    let mut no_webhook = Invoked::default();
    scan("env.ok(\"getCurrentUser\", \"{}\")", &mut no_webhook);
    assert!(
        missing(&catalog, &no_webhook).contains(&"trigger webhook".to_string()),
        "a webhook trigger needs a call of the webhook export"
    );
    let mut no_lifecycle = Invoked::default();
    scan("host().webhook(&request, \"{}\").await;", &mut no_lifecycle);
    assert!(
        missing(&catalog, &no_lifecycle).contains(&"trigger webhook".to_string()),
        "a webhook trigger needs calls of its subscribe, unsubscribe and check exports"
    );
}

#[tokio::test]
async fn every_catalog_action_and_trigger_has_an_end_to_end_test() {
    let mut catalog: Value =
        serde_json::from_str(&common::host().describe().await.expect("describe"))
            .expect("catalog JSON");
    let sources = test_sources();
    assert!(sources.len() > 10, "the test files: {sources:?}");
    let mut invoked = Invoked::default();
    for (_, text) in &sources {
        scan(text, &mut invoked);
    }
    let missing_now = missing(&catalog, &invoked);
    assert!(
        missing_now.is_empty(),
        "no end-to-end test invokes {}: add a test in host-test/tests/ that invokes each \
         through the component by its key (`env.ok(\"key\", …)`, `env.err(\"key\", …)`, \
         `host().invoke(&route, \"key\", …)`, or `host().webhook(…)`, `.subscribe(…)`, \
         `.unsubscribe(…)` and `.check_subscription(…)` for a webhook trigger) and asserts \
         its output",
        missing_now.join(", ")
    );
    // The same scan of the real sources reports a key nothing invokes.
    catalog["actions"]
        .as_array_mut()
        .expect("actions")
        .push(json!({"key": "notAnAction"}));
    assert_eq!(missing(&catalog, &invoked), vec!["action notAnAction"]);
}
