//! Test fixtures the unit tests here and the end-to-end tests in
//! `host-test/tests/webhook.rs` share, so that one table serves both. Built
//! only for tests (the `test-fixtures` feature, which host-test's tests turn
//! on), never into the component: it may panic on a malformed table.

use serde_json::Value;

/// The bad bodies shared with the end-to-end test
/// (`src/testdata/webhook_bad_bodies.json`), each with the part of the
/// reason it must give.
pub fn bad_bodies(context: &Value) -> Vec<(Vec<u8>, String)> {
    let table: Value =
        serde_json::from_str(include_str!("../testdata/webhook_bad_bodies.json")).unwrap();
    let cases = table["cases"].as_array().unwrap();
    assert!(cases.len() >= 18, "the table lost cases");
    cases
        .iter()
        .map(|case| {
            let body = if let Some(text) = case["text"].as_str() {
                text.as_bytes().to_vec()
            } else if let Some(bytes) = case["bytes"].as_array() {
                bytes.iter().map(|b| b.as_u64().unwrap() as u8).collect()
            } else if let Some(patch) = case["context"].as_object() {
                let mut c = context.clone();
                for (k, v) in patch {
                    c[k] = v.clone();
                }
                c.to_string().into_bytes()
            } else {
                case["json"].to_string().into_bytes()
            };
            (body, case["reason"].as_str().unwrap().to_string())
        })
        .collect()
}
