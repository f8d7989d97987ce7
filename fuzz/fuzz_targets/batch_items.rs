//! `$batch` requests: the `batchActions` item model (arbitrary JSON) →
//! parts → multipart encoding, and mapping (hostile) responses back to
//! items.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use d365_connector::batch::{self, BatchPart, InnerRequest};
use d365_fuzz::{batch_item, json};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check_request(r: &InnerRequest) {
    assert!(
        !r.url.contains([' ', '\r', '\n', '\t', '#']),
        "request line injection: {:?}",
        r.url
    );
    for (k, v) in &r.headers {
        assert!(
            !k.is_empty() && !k.contains([':', '\r', '\n', ' ']),
            "header name {k:?}"
        );
        assert!(!v.contains(['\r', '\n']), "header value {v:?}");
    }
}

/// What an item means, whatever the spelling of its JSON: data as a value.
fn meaning(item: &batch::BatchItem) -> String {
    let data = item
        .data
        .as_ref()
        .map(|d| serde_json::from_str::<Value>(d.text()).expect("data text is JSON"));
    format!(
        "{:?} {} {:?} {:?} {:?} {:?} {} {:?}",
        item.action,
        item.collection,
        item.to_request("/r/", 1).url,
        item.referenced(),
        item.headers,
        item.query,
        item.return_representation,
        data
    )
}

/// `parse_items` of `text`: each item's meaning, or the input an error names.
fn parse_text(text: &str, atomic: bool) -> Result<Vec<String>, String> {
    let raw: Box<serde_json::value::RawValue> =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    match batch::parse_items(&raw, atomic) {
        Ok(items) => Ok(items.iter().map(meaning).collect()),
        Err(e) => Err(format!("{:?}", e.kind)),
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(atomic) = bool::arbitrary(&mut u) else {
        return;
    };
    let Ok(n) = u.int_in_range(0..=6u8) else {
        return;
    };
    let mut list = Vec::new();
    for _ in 0..n {
        match batch_item(&mut u) {
            Ok(v) => list.push(v),
            Err(_) => return,
        }
    }
    let value = match u.int_in_range(0..=7u8).unwrap_or(0) {
        0 => json(&mut u, 3).unwrap_or(Value::Null),
        1 => Value::String(Value::Array(list.clone()).to_string()),
        _ => Value::Array(list),
    };
    // The same list spelled differently means the same: items are read from
    // the raw text (src/rawjson.rs), so spacing and escapes must not matter.
    // `$` and `/` only occur inside JSON strings, so escaping every one is
    // still the same JSON.
    let compact = value.to_string();
    let expected = parse_text(&compact, atomic);
    for variant in [
        serde_json::to_string_pretty(&value).expect("a Value serialises"),
        compact.replace('$', "\\u0024").replace('/', "\\/"),
    ] {
        assert_eq!(parse_text(&variant, atomic), expected, "{variant}");
    }
    let Ok(items) = batch::parse_value(&value, atomic) else {
        return;
    };
    assert!(!items.is_empty());
    // Bodies travel as the input's text: each must still be one JSON object.
    for item in &items {
        if let Some(d) = &item.data {
            let body: Value = serde_json::from_str(d.text()).expect("data text is JSON");
            assert!(body.is_object(), "data is not an object: {}", d.text());
        }
    }
    let parts = batch::build_parts(&items, "/api/data/v9.2/", atomic);
    let mut requests = 0;
    for p in &parts {
        match p {
            BatchPart::Request(r) => {
                check_request(r);
                requests += 1;
            }
            BatchPart::ChangeSet(rs) => {
                assert!(atomic && !rs.is_empty());
                for r in rs {
                    assert_ne!(r.method, "GET", "a GET inside a change set");
                    check_request(r);
                }
                requests += rs.len();
            }
        }
    }
    assert_eq!(requests, items.len(), "an item was lost or duplicated");
    let encoded = batch::encode(&parts);
    let boundary = batch::boundary_of(&encoded.content_type).expect("a boundary");
    // The boundary frames the parts and occurs nowhere else.
    let delim = format!("--{boundary}");
    assert_eq!(
        count(&encoded.body, delim.as_bytes()),
        parts.len() + 1,
        "{}",
        String::from_utf8_lossy(&encoded.body)
    );
    assert!(encoded.body.ends_with(format!("{delim}--\r\n").as_bytes()));

    // Responses from a hostile server, mapped back to the items.
    let mut ct = String::from("application/json");
    let body = d365_fuzz::response_body(&mut u, &mut ct).unwrap_or_default();
    let responses = batch::decode(&ct, &body).unwrap_or_default();
    let total = responses.len();
    let assigned = batch::assign_to_items(items.len(), responses);
    let placed = assigned.slots.iter().filter(|s| s.is_some()).count();
    assert_eq!(
        placed + assigned.unplaced.len(),
        total,
        "a response was lost"
    );
    let results = batch::item_results(&items, atomic, &assigned);
    assert_eq!(results.len(), items.len());
});
