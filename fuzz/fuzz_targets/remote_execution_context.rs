//! The webhook trigger: a request as a Dataverse service endpoint sends it
//! (a `RemoteExecutionContext` as JSON), with arbitrary method, URL, headers,
//! body and trigger inputs; WCF dates and the flattening of WCF-typed values.
#![no_main]

use arbitrary::Unstructured;
use d365_connector::trigger::{self, WebhookRequest, context, wcf_date};
use d365_fuzz::{json, object_with_keys, string};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const CONTEXT_KEYS: &[&str] = &[
    "BusinessUnitId",
    "CorrelationId",
    "Depth",
    "InitiatingUserId",
    "InputParameters",
    "IsExecutingOffline",
    "IsInTransaction",
    "IsOfflinePlayback",
    "IsolationMode",
    "MessageName",
    "Mode",
    "OperationCreatedOn",
    "OperationId",
    "OrganizationId",
    "OrganizationName",
    "OutputParameters",
    "OwningExtension",
    "ParentContext",
    "PostEntityImages",
    "PreEntityImages",
    "PrimaryEntityId",
    "PrimaryEntityName",
    "RequestId",
    "SecondaryEntityName",
    "SharedVariables",
    "Stage",
    "UserId",
    "__type",
    "key",
    "value",
    "Attributes",
    "EntityState",
    "FormattedValues",
    "Id",
    "KeyAttributes",
    "LogicalName",
    "RelatedEntities",
    "RowVersion",
    "Target",
];

/// A context-shaped JSON value: the known keys, nested key/value lists.
fn context(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
    let mut v = object_with_keys(u, CONTEXT_KEYS, depth)?;
    if let Value::Object(map) = &mut v {
        if u.ratio(3u8, 4u8)? {
            map.insert(
                "MessageName".into(),
                Value::String(u.choose(&["Create", "Update", "Delete", ""])?.to_string()),
            );
            map.insert(
                "PrimaryEntityName".into(),
                Value::String(u.choose(&["account", "contact", ""])?.to_string()),
            );
            map.insert("PrimaryEntityId".into(), Value::String(string(u)?));
        }
        for list in [
            "InputParameters",
            "OutputParameters",
            "PreEntityImages",
            "PostEntityImages",
            "SharedVariables",
        ] {
            if depth > 0 && u.arbitrary()? {
                let n = u.int_in_range(0..=3u8)?;
                let mut items = Vec::new();
                for _ in 0..n {
                    let value = if u.arbitrary()? {
                        context(u, depth - 1)?
                    } else {
                        json(u, 1)?
                    };
                    items.push(serde_json::json!({"key": string(u)?, "value": value}));
                }
                map.insert(list.into(), Value::Array(items));
            }
        }
    }
    Ok(v)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(mode) = u.int_in_range(0..=3u8) else {
        return;
    };
    let key = if u.arbitrary().unwrap_or(false) {
        "k3y"
    } else {
        ""
    };
    let inputs = match u.int_in_range(0..=5u8).unwrap_or(0) {
        0 => {
            let n = u.arbitrary_len::<u8>().unwrap_or(0);
            String::from_utf8_lossy(u.bytes(n).unwrap_or_default()).into_owned()
        }
        _ => serde_json::json!({ "webhookKey": key }).to_string(),
    };
    let url = match u.int_in_range(0..=3u8).unwrap_or(0) {
        0 => string(&mut u).unwrap_or_default(),
        _ => format!(
            "/hook?code={}",
            if u.arbitrary().unwrap_or(true) {
                key.to_string()
            } else {
                string(&mut u).unwrap_or_default()
            }
        ),
    };
    let method = if u.ratio(7u8, 8u8).unwrap_or(true) {
        "POST".to_string()
    } else {
        string(&mut u).unwrap_or_default()
    };
    let mut headers = Vec::new();
    for _ in 0..u.int_in_range(0..=3u8).unwrap_or(0) {
        let name = u
            .choose(&[
                "x-ms-dynamics-organization",
                "x-ms-dynamics-msg-size-exceeded",
                "x-ms-dynamics-entity-name",
                "x-ms-dynamics-request-name",
                "Content-Type",
                "X-Other",
            ])
            .unwrap_or(&"X")
            .to_string();
        headers.push((name, string(&mut u).unwrap_or_default()));
    }
    let body = match mode {
        0 => {
            let n = u.len();
            u.bytes(n).unwrap_or_default().to_vec()
        }
        _ => context(&mut u, 3)
            .unwrap_or(Value::Null)
            .to_string()
            .into_bytes(),
    };
    let request = WebhookRequest {
        method,
        url,
        headers,
        body,
    };
    let configured = inputs == serde_json::json!({ "webhookKey": "k3y" }).to_string();
    // Whether the sender itself wrote the key anywhere but in `code=k3y`.
    let sender_wrote_key = request.url.replace("code=k3y", "").contains("k3y")
        || request.method.contains("k3y")
        || String::from_utf8_lossy(&request.body).contains("k3y")
        || request
            .headers
            .iter()
            .any(|(n, v)| n.contains("k3y") || v.contains("k3y"));
    match trigger::handle_webhook(&request, &inputs) {
        Ok(event) => {
            assert!(event.payload.is_object());
            if configured {
                // Nothing accepted without the key.
                assert!(event.authenticated);
                assert!(
                    request.url.contains("code=k3y"),
                    "accepted {:?}",
                    request.url
                );
                if !sender_wrote_key {
                    assert!(
                        !event.payload.to_string().contains("k3y"),
                        "the payload echoes the key"
                    );
                }
            } else {
                assert!(!event.authenticated);
            }
        }
        Err(r) => {
            assert!((400..=599).contains(&r.status));
            assert!(
                serde_json::from_str::<Value>(&r.body).is_ok(),
                "{:?}",
                r.body
            );
            if configured && !sender_wrote_key {
                assert!(
                    !r.body.contains("k3y") && !r.reason.contains("k3y"),
                    "the rejection echoes the key"
                );
            }
        }
    }
    // WCF dates and flattening on their own.
    if let Ok(s) = String::from_utf8(data.to_vec()) {
        if let Some(d) = wcf_date::parse_wcf_date(&s) {
            let iso = d.to_iso();
            assert!(iso.len() >= 20 && iso.ends_with('Z'), "{iso}");
        }
        let v = Value::String(s);
        let _ = context::flatten(&v);
    }
});
