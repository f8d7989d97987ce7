//! Deeply nested inputs end in a result or a clear error, never in a trap:
//! the guest's stack (its size is set in `.cargo/config.toml`) must hold
//! the deepest JSON serde_json accepts (128 levels) through every action
//! that parses, walks, re-serialises and drops it, and nested FetchXML.
//! runBatch reads its items' data as raw text (serde_json skips values
//! without recursing), so any depth is sent on, and the server judges it.

mod common;

use common::Env;
use host_test::host::error_json;

/// `{"a":{"a":…1…}}`, `depth` objects deep.
fn nested_object(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

/// `[[…[1]…]]`, `depth` arrays deep.
fn nested_array(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// Runs `action` and requires an answer (success or a connector error).
async fn answers(env: &Env, action: &str, inputs: &str) -> String {
    match env.invoke_or_trap(action, inputs).await {
        Ok(Ok(_)) => "ok".to_string(),
        Ok(Err(e)) => error_json(&e)["kind"].as_str().unwrap_or("?").to_string(),
        Err(trap) => panic!(
            "{action} trapped on {} bytes of input: {trap:?}",
            inputs.len()
        ),
    }
}

#[tokio::test]
async fn the_deepest_json_each_action_parses_is_answered() {
    let env = Env::new();
    let mut shallow = std::collections::BTreeMap::new();
    for depth in [1, 64, 125, 126, 127, 1000, 100_000] {
        let object = nested_object(depth);
        let array = nested_array(depth);
        // (action, inputs, levels around the value when the guest parses it:
        // none, as each input is parsed on its own; None: it is not parsed).
        let cases = [
            (
                "createEntity",
                format!(r#"{{"entityType":"accounts","fieldValues":{object}}}"#),
                Some(0),
            ),
            (
                "updateEntity",
                format!(
                    r#"{{"entityType":"accounts","entityId":"00000000-0000-4000-8000-000000000001","fieldValues":{object}}}"#
                ),
                Some(0),
            ),
            (
                "executeAction",
                format!(r#"{{"name":"WhoAmI","parameters":{object}}}"#),
                Some(0),
            ),
            (
                "rawRequest",
                format!(r#"{{"method":"POST","url":"accounts","data":{array}}}"#),
                Some(0),
            ),
            (
                "runBatch",
                format!(
                    r#"{{"batchActions":[{{"collection":"accounts","action":"create","data":{object}}}]}}"#
                ),
                None,
            ),
        ];
        for (action, inputs, around) in cases {
            let outcome = answers(&env, action, &inputs).await;
            if depth == 1 {
                shallow.insert(action, outcome);
            } else if around.is_none_or(|around| depth + around <= 127) {
                // Below serde_json's limit of 128 levels, depth alone
                // changes nothing.
                assert_eq!(
                    Some(&outcome),
                    shallow.get(action),
                    "{action} at depth {depth}"
                );
            } else {
                assert_eq!(outcome, "invalid-input", "{action} at depth {depth}");
            }
        }
    }
}

#[tokio::test]
async fn deeply_nested_fetchxml_is_answered() {
    let env = Env::new();
    for depth in [10, 100, 1_000, 10_000] {
        let filters = format!(
            "{}<condition attribute=\"name\" operator=\"eq\" value=\"x\"/>{}",
            "<filter type=\"and\">".repeat(depth),
            "</filter>".repeat(depth)
        );
        let xml = format!(
            r#"<fetch><entity name="account"><attribute name="name"/>{filters}</entity></fetch>"#
        );
        let inputs = serde_json::json!({"entityType": "accounts", "fetchXml": xml}).to_string();
        answers(&env, "runFetchXml", &inputs).await;
        let links = format!(
            "{}{}",
            r#"<link-entity name="contact" from="parentcustomerid" to="accountid">"#.repeat(depth),
            "</link-entity>".repeat(depth)
        );
        let xml = format!(r#"<fetch><entity name="account">{links}</entity></fetch>"#);
        let inputs = serde_json::json!({"entityType": "accounts", "fetchXml": xml}).to_string();
        answers(&env, "runFetchXml", &inputs).await;
    }
}
