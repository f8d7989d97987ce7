//! Optimistic concurrency through the real component against the emulator
//! (issue #29, Concurrency; Microsoft Learn, "Perform conditional
//! operations using the Web API"): ETags on every record read, `ifMatch` on
//! updateEntity and deleteEntity, `upsertMode` on upsertEntity,
//! `ifNoneMatch` on getEntity, and malformed ones refused before anything
//! is sent.

mod common;

use common::{Env, request_header, web_api_requests};
use host_test::emulator::LoggedRequest;
use host_test::emulator::store::seed;
use serde_json::{Value, json};

/// ConcurrencyVersionMismatch: the code of a 412 for a stale ETag.
const VERSION_MISMATCH: &str = "0x80060882";
/// A record with matching key values already exists.
const DUPLICATE_KEY: &str = "0x80040237";

/// Whether `v` is an ETag as Dataverse writes it: `W/"<digits>"`.
fn is_etag(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.strip_prefix("W/\"")
            .and_then(|r| r.strip_suffix('"'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The last Web API request the emulator saw.
fn last_request(env: &Env) -> LoggedRequest {
    web_api_requests(env).pop().expect("a Web API request")
}

/// getEntity of one account's name (and its etag).
async fn read_account(env: &mut Env, id: &str) -> Value {
    env.ok(
        "getEntity",
        &json!({"entityType":"accounts","entityId":id,"fieldNames":["name"]}).to_string(),
    )
    .await
}

/// How many accounts have this account number.
async fn accounts_numbered(env: &mut Env, number: &str) -> u64 {
    let out = env
        .ok(
            "queryEntities",
            &json!({"entityType":"accounts","fieldNames":["name"],
                    "filter": format!("accountnumber eq '{number}'"),"fetchAll":true})
            .to_string(),
        )
        .await;
    out["count"].as_u64().expect("a count")
}

#[tokio::test]
async fn a_stale_etag_update_is_refused_and_the_record_is_unchanged() {
    let mut env = Env::new();
    let id = seed::account_id(1);
    let read = read_account(&mut env, &id).await;
    let stale = read["@odata.etag"].clone();
    assert!(is_etag(&stale), "{read}");

    // Someone else writes in between: the record gets a new version.
    env.ok(
        "updateEntity",
        &json!({"entityType":"accounts","entityId":id,"fieldValues":{"name":"Theirs"}}).to_string(),
    )
    .await;
    let theirs = read_account(&mut env, &id).await;
    assert_ne!(theirs["@odata.etag"], stale, "every write is a new version");

    let e = env
        .err(
            "updateEntity",
            &json!({"entityType":"accounts","entityId":id,"fieldValues":{"name":"Mine"},
                    "ifMatch":stale})
            .to_string(),
        )
        .await;
    assert_eq!(e["kind"], "conflict", "{e}");
    assert_eq!(e["status"], 412, "{e}");
    assert_eq!(e["code"], VERSION_MISMATCH, "{e}");
    let hint = e["hint"].as_str().expect("a hint");
    assert!(
        hint.contains("getEntity") && hint.contains(stale.as_str().unwrap()),
        "the hint says to read it again: {hint}"
    );
    let patch = last_request(&env);
    assert_eq!(patch.method, "PATCH");
    assert_eq!(request_header(&patch, "If-Match"), stale.as_str());
    assert_eq!(patch.status, 412);

    // Unchanged: what the other writer left, at the same version.
    let after = read_account(&mut env, &id).await;
    assert_eq!(after["name"], "Theirs");
    assert_eq!(after["@odata.etag"], theirs["@odata.etag"]);

    // With the fresh ETag the update goes through, and makes a new one.
    let fresh = after["@odata.etag"].clone();
    let out = env
        .ok(
            "updateEntity",
            &json!({"entityType":"accounts","entityId":id,"fieldValues":{"name":"Mine"},
                    "ifMatch":fresh})
            .to_string(),
        )
        .await;
    assert_eq!(out["record"]["name"], "Mine", "{out}");
    assert!(is_etag(&out["record"]["@odata.etag"]), "{out}");
    assert_ne!(out["record"]["@odata.etag"], fresh);
    assert_eq!(
        request_header(&last_request(&env), "If-Match"),
        fresh.as_str()
    );
    assert_eq!(read_account(&mut env, &id).await["name"], "Mine");
}

#[tokio::test]
async fn a_delete_with_a_stale_etag_is_refused_and_the_record_survives() {
    let mut env = Env::new();
    let id = seed::account_id(2);
    let stale = read_account(&mut env, &id).await["@odata.etag"].clone();
    env.ok(
        "updateEntity",
        &json!({"entityType":"accounts","entityId":id,"fieldValues":{"name":"Touched"}})
            .to_string(),
    )
    .await;

    let e = env
        .err(
            "deleteEntity",
            &json!({"entityType":"accounts","entityId":id,"ifMatch":stale}).to_string(),
        )
        .await;
    assert_eq!(e["kind"], "conflict", "{e}");
    assert_eq!(e["status"], 412);
    assert_eq!(e["code"], VERSION_MISMATCH);
    assert!(
        e["hint"]
            .as_str()
            .is_some_and(|h| h.contains("nothing was deleted")),
        "{e}"
    );
    let delete = last_request(&env);
    assert_eq!(delete.method, "DELETE");
    assert_eq!(request_header(&delete, "If-Match"), stale.as_str());
    let still = read_account(&mut env, &id).await;
    assert_eq!(still["name"], "Touched", "the record still exists");

    // With the current ETag it is deleted.
    let out = env
        .ok(
            "deleteEntity",
            &json!({"entityType":"accounts","entityId":id,"ifMatch":still["@odata.etag"]})
                .to_string(),
        )
        .await;
    assert_eq!(out["deleted"], true);
    let gone = env
        .err(
            "getEntity",
            &json!({"entityType":"accounts","entityId":id}).to_string(),
        )
        .await;
    assert_eq!(gone["kind"], "not-found", "{gone}");

    // Without ifMatch a delete stays unconditional: no If-Match at all.
    env.ok(
        "deleteEntity",
        &json!({"entityType":"accounts","entityId":seed::account_id(3)}).to_string(),
    )
    .await;
    assert_eq!(request_header(&last_request(&env), "If-Match"), None);
}

#[tokio::test]
async fn create_only_twice_makes_one_record_and_a_conflict() {
    let mut env = Env::new();
    let id = "0c0c0c0c-1111-4222-8333-444444444444";
    let first = env
        .ok(
            "upsertEntity",
            &json!({"entityType":"accounts","entityId":id,"upsertMode":"createOnly",
                    "fieldValues":{"name":"Once","accountnumber":"CO-1"}})
            .to_string(),
        )
        .await;
    assert_eq!(first["created"], true, "{first}");
    let patch = last_request(&env);
    assert_eq!(request_header(&patch, "If-None-Match"), Some("*"));
    assert_eq!(request_header(&patch, "If-Match"), None);

    let e = env
        .err(
            "upsertEntity",
            &json!({"entityType":"accounts","entityId":id,"upsertMode":"createOnly",
                    "fieldValues":{"name":"Twice","accountnumber":"CO-1"}})
            .to_string(),
        )
        .await;
    assert_eq!(e["kind"], "conflict", "{e}");
    assert_eq!(e["status"], 412);
    assert_eq!(e["code"], DUPLICATE_KEY);
    assert!(
        e["hint"].as_str().is_some_and(|h| h.contains("createOnly")),
        "{e}"
    );
    assert_eq!(accounts_numbered(&mut env, "CO-1").await, 1, "one record");
    assert_eq!(read_account(&mut env, id).await["name"], "Once");
}

#[tokio::test]
async fn update_only_on_a_missing_id_creates_nothing() {
    let mut env = Env::new();
    let missing = "0d0d0d0d-1111-4222-8333-444444444444";
    let e = env
        .err(
            "upsertEntity",
            &json!({"entityType":"accounts","entityId":missing,"upsertMode":"updateOnly",
                    "fieldValues":{"name":"Ghost","accountnumber":"UO-1"}})
            .to_string(),
        )
        .await;
    assert_eq!(e["kind"], "not-found", "{e}");
    assert_eq!(e["status"], 404);
    assert!(
        e["hint"].as_str().is_some_and(|h| h.contains("updateOnly")),
        "{e}"
    );
    let patch = last_request(&env);
    assert_eq!(request_header(&patch, "If-Match"), Some("*"));
    assert_eq!(request_header(&patch, "If-None-Match"), None);
    let gone = env
        .err(
            "getEntity",
            &json!({"entityType":"accounts","entityId":missing}).to_string(),
        )
        .await;
    assert_eq!(gone["kind"], "not-found", "nothing created: {gone}");
    assert_eq!(accounts_numbered(&mut env, "UO-1").await, 0);

    // On an existing record updateOnly updates.
    let id = seed::account_id(4);
    let out = env
        .ok(
            "upsertEntity",
            &json!({"entityType":"accounts","entityId":id,"upsertMode":"updateOnly",
                    "fieldValues":{"name":"Updated only"}})
            .to_string(),
        )
        .await;
    assert_eq!(out["created"], false, "{out}");
    assert_eq!(out["record"]["name"], "Updated only");

    // The default, createOrUpdate, sends neither header.
    env.ok(
        "upsertEntity",
        &json!({"entityType":"accounts","entityId":missing,"fieldValues":{"name":"Now"}})
            .to_string(),
    )
    .await;
    let patch = last_request(&env);
    assert_eq!(request_header(&patch, "If-Match"), None);
    assert_eq!(request_header(&patch, "If-None-Match"), None);
}

#[tokio::test]
async fn get_with_the_current_etag_is_not_modified() {
    let mut env = Env::new();
    let id = seed::account_id(6);
    let etag = read_account(&mut env, &id).await["@odata.etag"].clone();
    let conditional =
        json!({"entityType":"accounts","entityId":id,"fieldNames":["name"],"ifNoneMatch":etag})
            .to_string();
    let out = env.ok("getEntity", &conditional).await;
    assert_eq!(out, json!({"notModified": true, "etag": etag}));
    let get = last_request(&env);
    assert_eq!(request_header(&get, "If-None-Match"), etag.as_str());
    assert_eq!(get.status, 304);
    assert!(get.response_body.is_empty(), "304 has no body");

    env.ok(
        "updateEntity",
        &json!({"entityType":"accounts","entityId":id,"fieldValues":{"name":"Newer"}}).to_string(),
    )
    .await;
    let out = env.ok("getEntity", &conditional).await;
    assert_eq!(out["name"], "Newer", "a changed record comes back: {out}");
    assert!(out.get("notModified").is_none(), "{out}");
    assert!(is_etag(&out["@odata.etag"]));
    assert_ne!(out["@odata.etag"], etag);
    assert_eq!(last_request(&env).status, 200);
}

#[tokio::test]
async fn etags_survive_every_page_and_a_select_list() {
    let mut env = Env::new();
    let out = env
        .ok(
            "queryEntities",
            r#"{"entityType":"contacts","fieldNames":["fullname"],"fetchAll":true,"pageSize":40}"#,
        )
        .await;
    let records = out["value"].as_array().expect("records");
    assert_eq!(records.len(), seed::CONTACTS, "{}", out["count"]);
    assert!(out["pages"].as_u64().unwrap() >= 4, "{}", out["pages"]);
    let gets = web_api_requests(&env);
    assert_eq!(gets.len() as u64, out["pages"].as_u64().unwrap());
    for r in records {
        assert!(is_etag(&r["@odata.etag"]), "{r}");
        assert!(r["fullname"].is_string(), "{r}");
        assert!(r.get("emailaddress1").is_none(), "only the selected: {r}");
    }
    // The last page's etags are the records' own.
    let last = records.last().unwrap();
    let got = env
        .ok(
            "getEntity",
            &json!({"entityType":"contacts","entityId":last["contactid"],"fieldNames":["fullname"]})
                .to_string(),
        )
        .await;
    assert_eq!(got["@odata.etag"], last["@odata.etag"]);

    // One page at a time, the next page keeps them too.
    let first = env
        .ok(
            "queryEntities",
            r#"{"entityType":"contacts","fieldNames":["fullname"],"pageSize":100}"#,
        )
        .await;
    let next = first["nextLink"].as_str().expect("a next page").to_string();
    let second = env
        .ok(
            "queryEntities",
            &json!({"entityType":"contacts","nextPage":next,"pageSize":100}).to_string(),
        )
        .await;
    let page = second["value"].as_array().expect("records");
    assert_eq!(page.len(), seed::CONTACTS - 100);
    assert!(page.iter().all(|r| is_etag(&r["@odata.etag"])), "{second}");
}

#[tokio::test]
async fn malformed_etags_and_modes_are_refused_before_sending() {
    let mut env = Env::new();
    let id = seed::account_id(7);
    let before = read_account(&mut env, &id).await;
    let sent_before = web_api_requests(&env).len();
    for bad in ["123", "W/123", "\"123\"", "W/\"\"", "W/\"1 2\"", ""] {
        for (action, key, inputs) in [
            (
                "updateEntity",
                "ifMatch",
                json!({"entityType":"accounts","entityId":id,"fieldValues":{"name":"x"},"ifMatch":bad}),
            ),
            (
                "deleteEntity",
                "ifMatch",
                json!({"entityType":"accounts","entityId":id,"ifMatch":bad}),
            ),
            (
                "getEntity",
                "ifNoneMatch",
                json!({"entityType":"accounts","entityId":id,"ifNoneMatch":bad}),
            ),
        ] {
            let e = env.err(action, &inputs.to_string()).await;
            assert_eq!(e["kind"], "invalid-input", "{action} {bad:?}: {e}");
            assert_eq!(e["input"], key, "{action} {bad:?}: {e}");
        }
    }
    // A number is not an ETag either (nor is it taken as "no ifMatch").
    let e = env
        .err(
            "deleteEntity",
            &json!({"entityType":"accounts","entityId":id,"ifMatch":123}).to_string(),
        )
        .await;
    assert_eq!(e["input"], "ifMatch", "{e}");
    // `*` is an If-Match (the record exists), never an If-None-Match here.
    let e = env
        .err(
            "getEntity",
            &json!({"entityType":"accounts","entityId":id,"ifNoneMatch":"*"}).to_string(),
        )
        .await;
    assert_eq!(e["input"], "ifNoneMatch", "{e}");
    let e = env
        .err(
            "upsertEntity",
            &json!({"entityType":"accounts","entityId":id,"fieldValues":{"name":"x"},
                    "upsertMode":"createOrIgnore"})
            .to_string(),
        )
        .await;
    assert_eq!(e["kind"], "invalid-input", "{e}");
    assert_eq!(e["input"], "upsertMode", "{e}");
    let sent = web_api_requests(&env);
    assert_eq!(
        sent.len(),
        sent_before,
        "nothing was sent: {:?}",
        &sent[sent_before.min(sent.len())..]
    );
    assert_eq!(read_account(&mut env, &id).await, before, "untouched");
}
