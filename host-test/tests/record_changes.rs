//! `recordChanges`, the change tracking polling trigger, through the real
//! component against the emulator's change tracking (`webapi/changes.rs`):
//! full sync, deltas with creates, updates and deletes, paging, token
//! errors and resync, and tables without change tracking.

mod common;

use common::Env;
use common::wire::{Fact::*, ROOT, Req, Wire};
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn poll_inputs(state: Option<&str>, extra: Value) -> String {
    let mut v = json!({"entityType": "accounts", "fieldNames": ["name", "accountnumber"]});
    if let Some(s) = state {
        v["state"] = json!(s);
    }
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    v.to_string()
}

fn ids(rows: &Value, key: &str) -> BTreeSet<String> {
    rows.as_array()
        .expect("array")
        .iter()
        .map(|r| r[key].as_str().expect("id").to_string())
        .collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn current_account_ids(env: &Env) -> BTreeSet<String> {
    env.emulator
        .state()
        .store
        .records("account")
        .map(|r| r.id.clone())
        .collect()
}

/// The error for an unusable state: a full resync is needed, and how.
fn asks_for_a_resync(err: &Value) {
    let message = err["message"].as_str().unwrap_or_default();
    assert!(message.contains("full resync is needed"), "{err}");
    let hint = err["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("resync: true"), "{err}");
}

async fn create(env: &mut Env, name: &str) -> String {
    let out = env
        .ok(
            "createEntity",
            &json!({"entityType": "accounts", "fieldValues": {"name": name}}).to_string(),
        )
        .await;
    out["id"].as_str().expect("created id").to_string()
}

async fn rename(env: &mut Env, id: &str, name: &str) {
    env.ok(
        "updateEntity",
        &json!({"entityType": "accounts", "entityId": id, "fieldValues": {"name": name}})
            .to_string(),
    )
    .await;
}

#[tokio::test]
async fn first_poll_then_exactly_the_changes_then_nothing() {
    let mut env = Env::new();
    let first = env.ok("recordChanges", &poll_inputs(None, json!({}))).await;
    assert_eq!(first["fullSync"], true);
    let all = current_account_ids(&env);
    assert!(all.len() >= 3, "the seed has accounts");
    assert_eq!(ids(&first["changed"], "accountid"), all);
    assert_eq!(first["changedCount"], all.len());
    assert_eq!(first["deleted"], json!([]));
    // Only the selected columns (plus the key and etag) come back.
    let row = first["changed"][0].as_object().unwrap();
    assert!(
        row.contains_key("name") && !row.contains_key("revenue"),
        "{row:?}"
    );
    let state = first["state"].as_str().expect("state").to_string();
    assert!(state.contains("$deltatoken="), "{state}");
    let sent = env.emulator.log();
    let track = sent
        .iter()
        .rev()
        .find(|r| r.path().ends_with("/accounts"))
        .unwrap();
    assert!(
        track
            .header("Prefer")
            .unwrap()
            .contains("odata.track-changes")
    );

    // 3 creates, 2 updates (of existing rows), 1 delete.
    let existing: Vec<String> = all.iter().cloned().collect();
    let mut created = BTreeSet::new();
    for n in ["Delta One", "Delta Two", "Delta Three"] {
        created.insert(create(&mut env, n).await);
    }
    rename(&mut env, &existing[0], "Renamed Zero").await;
    rename(&mut env, &existing[1], "Renamed One").await;
    env.ok(
        "deleteEntity",
        &json!({"entityType": "accounts", "entityId": existing[2]}).to_string(),
    )
    .await;

    let second = env
        .ok("recordChanges", &poll_inputs(Some(&state), json!({})))
        .await;
    assert_eq!(second["fullSync"], false);
    let mut expected: BTreeSet<String> = created.clone();
    expected.insert(existing[0].clone());
    expected.insert(existing[1].clone());
    assert_eq!(second["changed"].as_array().unwrap().len(), 5, "{second}");
    assert_eq!(ids(&second["changed"], "accountid"), expected);
    assert_eq!(
        strings(&second["deleted"]),
        BTreeSet::from([existing[2].clone()])
    );
    assert_eq!(
        (
            second["changedCount"].clone(),
            second["deletedCount"].clone()
        ),
        (json!(5), json!(1))
    );
    let renamed = second["changed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["accountid"] == existing[0])
        .unwrap();
    assert_eq!(
        renamed["name"], "Renamed Zero",
        "rows carry their current values"
    );
    // The delta request was the delta link itself.
    let delta_req = env
        .emulator
        .log()
        .into_iter()
        .rev()
        .find(|r| r.target.contains("$deltatoken"))
        .unwrap();
    assert_eq!(delta_req.status, 200);

    let state2 = second["state"].as_str().unwrap().to_string();
    let third = env
        .ok("recordChanges", &poll_inputs(Some(&state2), json!({})))
        .await;
    assert_eq!(third["changed"], json!([]));
    assert_eq!(third["deleted"], json!([]));
    assert!(third["state"].as_str().unwrap().contains("$deltatoken="));
}

#[tokio::test]
async fn a_delta_is_paged_with_a_small_page_size() {
    let mut env = Env::new();
    let first = env
        .ok("recordChanges", &poll_inputs(None, json!({"pageSize": 2})))
        .await;
    let all = current_account_ids(&env);
    assert_eq!(ids(&first["changed"], "accountid"), all, "every page read");
    assert_eq!(first["pages"], all.len().div_ceil(2));
    let state = first["state"].as_str().unwrap().to_string();

    let mut created = BTreeSet::new();
    for i in 0..5 {
        created.insert(create(&mut env, &format!("Paged {i}")).await);
    }
    let before = env.emulator.log().len();
    let delta = env
        .ok(
            "recordChanges",
            &poll_inputs(Some(&state), json!({"pageSize": 2})),
        )
        .await;
    assert_eq!(delta["pages"], 3);
    assert_eq!(ids(&delta["changed"], "accountid"), created);
    assert_eq!(
        delta["changed"].as_array().unwrap().len(),
        5,
        "no row twice"
    );
    let log = env.emulator.log();
    let pages: Vec<_> = log[before..]
        .iter()
        .filter(|r| r.path().ends_with("/accounts"))
        .collect();
    assert_eq!(pages.len(), 3);
    assert!(
        pages[1].target.contains("$skiptoken="),
        "{}",
        pages[1].target
    );
    assert!(
        pages
            .iter()
            .all(|p| p.header("Prefer").unwrap().contains("odata.maxpagesize=2"))
    );
}

#[tokio::test]
async fn an_invalid_or_expired_token_asks_for_a_resync_which_recovers() {
    let mut env = Env::new();
    let first = env.ok("recordChanges", &poll_inputs(None, json!({}))).await;
    let state = first["state"].as_str().unwrap().to_string();
    let (base, _) = state.split_once("$deltatoken=").unwrap();
    let forged = format!("{base}$deltatoken=not-a-token");
    let err = env
        .err("recordChanges", &poll_inputs(Some(&forged), json!({})))
        .await;
    asks_for_a_resync(&err);
    assert_eq!(err["status"], 400);

    // Tokens older than 30 days have expired.
    env.emulator.state().clock_offset_secs = 31 * 86_400;
    let err = env
        .err("recordChanges", &poll_inputs(Some(&state), json!({})))
        .await;
    assert_eq!(err["code"], "0x80044352", "{err}");
    asks_for_a_resync(&err);

    let again = env
        .ok(
            "recordChanges",
            &poll_inputs(Some(&state), json!({"resync": true})),
        )
        .await;
    assert_eq!(again["fullSync"], true);
    assert_eq!(
        ids(&again["changed"], "accountid"),
        current_account_ids(&env)
    );
    let fresh = again["state"].as_str().unwrap();
    let next = env
        .ok("recordChanges", &poll_inputs(Some(fresh), json!({})))
        .await;
    assert_eq!(next["changed"], json!([]));
}

#[tokio::test]
async fn tables_without_change_tracking_and_foreign_states_are_refused() {
    let mut env = Env::new();
    let err = env
        .err(
            "recordChanges",
            &json!({"entityType": "systemusers"}).to_string(),
        )
        .await;
    assert_eq!(err["kind"], "invalid-input", "{err}");
    assert_eq!(err["input"], "entityType");
    assert!(
        err["message"].as_str().unwrap().contains("change tracking"),
        "{err}"
    );

    let sent = env.emulator.log().len();
    let err = env
        .err(
            "recordChanges",
            &poll_inputs(
                Some("https://evil.example/api/data/v9.2/accounts?$deltatoken=1"),
                json!({}),
            ),
        )
        .await;
    assert_eq!(err["input"], "state", "{err}");
    let first = env.ok("recordChanges", &poll_inputs(None, json!({}))).await;
    let err = env
        .err(
            "recordChanges",
            &json!({"entityType": "contacts", "state": first["state"]}).to_string(),
        )
        .await;
    assert_eq!(
        err["input"], "state",
        "a delta link of another table: {err}"
    );
    assert_eq!(
        env.emulator.log()[sent..]
            .iter()
            .filter(|r| r.target.contains("deltatoken"))
            .count(),
        0,
        "refused states are never requested"
    );
}

/// The emulator's wire shapes as Microsoft documents them, without the
/// component: Preference-Applied, the /$delta context, $deletedEntity.
#[tokio::test]
async fn the_emulator_answers_in_dataverse_shapes() {
    let mut env = Env::new();
    let first = env.ok("recordChanges", &poll_inputs(None, json!({}))).await;
    let log = env.emulator.log();
    let track = log
        .iter()
        .rev()
        .find(|r| r.path().ends_with("/accounts"))
        .unwrap();
    assert_eq!(track.status, 200);
    let id = first["changed"][0]["accountid"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(
        "deleteEntity",
        &json!({"entityType": "accounts", "entityId": id}).to_string(),
    )
    .await;
    let state = first["state"].as_str().unwrap();
    let w = Wire::new(&env).await;
    w.expect(
            "the delta link",
            Req::get(state).prefer("odata.track-changes"),
            &[
                Status(200),
                Header("Preference-Applied", "odata.track-changes"),
                EndsWith("/@odata.context", "/$delta"),
                Json(
                    "/value",
                    json!([{
                        "@odata.context": "http://localhost/api/data/v9.2/$metadata#accounts/$deletedEntity",
                        "id": id,
                        "reason": "deleted"
                    }]),
                ),
                Contains("/@odata.deltaLink", "$deltatoken="),
            ],
        )
        .await;

    // Refusals: a table without change tracking, and query options change
    // tracking does not take (both UNCONFIRMED codes, see webapi/changes.rs).
    for target in [
        "systemusers?$select=fullname",
        "accounts?$select=name&$filter=name%20eq%20'x'",
    ] {
        w.expect(
            target,
            Req::get(target).prefer("odata.track-changes"),
            &[Status(400), Json("/error/code", json!("0x80040203"))],
        )
        .await;
    }
}

/// GET of a change tracking link, expecting 200 and a JSON object; the body.
async fn emu_get(w: &Wire, url: &str, prefer: &str) -> Value {
    let body = w
        .expect(url, Req::get(url).prefer(prefer), &[Status(200)])
        .await
        .body;
    assert!(body.is_object(), "{url}: a JSON body");
    body
}

/// Follows nextLinks to the end: (row ids, deleted ids, deltaLink).
async fn emu_read_all(w: &Wire, first: Value, prefer: &str) -> (Vec<String>, Vec<String>, String) {
    let (mut rows, mut deleted) = (Vec::new(), Vec::new());
    let mut body = first;
    loop {
        for v in body["value"].as_array().unwrap() {
            match v["reason"].as_str() {
                Some("deleted") => deleted.push(v["id"].as_str().unwrap().to_string()),
                _ => rows.push(v["accountid"].as_str().unwrap().to_string()),
            }
        }
        match body["@odata.nextLink"].as_str() {
            Some(next) => body = emu_get(w, next, prefer).await,
            None => {
                let delta = body["@odata.deltaLink"]
                    .as_str()
                    .expect("deltaLink")
                    .to_string();
                return (rows, deleted, delta);
            }
        }
    }
}

/// No write is lost to a client that pages: a row written after the first
/// page falls after the window and comes with the next delta; a row created
/// and deleted between two polls comes only as deleted.
#[tokio::test]
async fn writes_while_paging_come_with_the_next_delta() {
    let mut env = Env::new();
    let w = Wire::new(&env).await;
    let prefer = "odata.track-changes,odata.maxpagesize=1";
    let first = emu_get(&w, &format!("{ROOT}accounts?$select=name"), prefer).await;
    assert!(first["@odata.nextLink"].is_string(), "paged: {first}");
    let all = current_account_ids(&env);
    let last = all.iter().next_back().unwrap().clone();
    // Between pages: the row served last is updated, a new row is created.
    rename(&mut env, &last, "Updated mid-paging").await;
    let created = create(&mut env, "Created mid-paging").await;
    let (rows, deleted, delta) = emu_read_all(&w, first, prefer).await;
    assert!(deleted.is_empty());
    let served: BTreeSet<String> = rows.iter().cloned().collect();
    assert_eq!(served.len(), rows.len(), "no row twice");

    // Created and deleted before the next poll: only the deletion shows.
    let ghost = create(&mut env, "Ghost").await;
    env.ok(
        "deleteEntity",
        &json!({"entityType": "accounts", "entityId": ghost}).to_string(),
    )
    .await;
    let next = emu_get(&w, &delta, prefer).await;
    let (rows2, deleted2, _) = emu_read_all(&w, next, prefer).await;
    assert_eq!(deleted2, vec![ghost.clone()]);
    let changed: BTreeSet<String> = rows2.iter().cloned().collect();
    assert!(
        changed.contains(&last) && changed.contains(&created),
        "{changed:?}"
    );
    let union: BTreeSet<String> = served.union(&changed).cloned().collect();
    assert_eq!(
        union,
        current_account_ids(&env),
        "every row seen once the two polls are joined"
    );
}

/// A first poll (full sync) past the connector's 127 MiB output limit ends
/// with an error naming fieldNames, the input that can make it fit.
#[tokio::test]
async fn a_full_sync_past_the_output_limit_is_an_error_naming_field_names() {
    let mut env = common::env_with_big_accounts(17, 8 << 20);
    let e = env
        .err(
            "recordChanges",
            r#"{"entityType":"accounts","fieldNames":["name","description"],"pageSize":1}"#,
        )
        .await;
    assert_eq!(e["kind"], "invalid-input", "{e}");
    assert_eq!(e["input"], "fieldNames", "{e}");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(message.contains("127 MiB output limit"), "{message}");
    assert!(
        e["hint"].as_str().unwrap_or_default().contains("maxPages"),
        "{e}"
    );
    // With maxPages the same columns come over several polls, each under
    // the limit, every row once.
    let mut big = Vec::new();
    let mut state: Option<String> = None;
    for _ in 0..20 {
        let mut inputs = json!({"entityType": "accounts", "fieldNames": ["name", "description"], "pageSize": 1, "maxPages": 8});
        if let Some(s) = &state {
            inputs["state"] = json!(s);
        }
        let out = env.ok("recordChanges", &inputs.to_string()).await;
        big.extend(
            out["changed"]
                .as_array()
                .expect("changed rows")
                .iter()
                .filter(|r| {
                    r["description"]
                        .as_str()
                        .is_some_and(|d| d.len() >= 8 << 20)
                })
                .filter_map(|r| r["name"].as_str().map(str::to_string)),
        );
        state = out["state"].as_str().map(str::to_string);
        if out["moreAvailable"] == false {
            break;
        }
    }
    assert!(state.is_some_and(|s| s.contains("$deltatoken")));
    assert_eq!(big.len(), 17, "{big:?}");
    assert_eq!(
        big.iter().collect::<BTreeSet<_>>().len(),
        17,
        "each row once"
    );
    // Without the big column the same full sync fits, every row once.
    let out = env
        .ok(
            "recordChanges",
            r#"{"entityType":"accounts","fieldNames":["name"],"pageSize":7}"#,
        )
        .await;
    let names: Vec<&str> = out["changed"]
        .as_array()
        .expect("changed rows")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .filter(|n| n.starts_with("Big "))
        .collect();
    assert_eq!(names.len(), 17, "{names:?}");
    assert_eq!(
        names.iter().collect::<BTreeSet<_>>().len(),
        17,
        "each row once"
    );
    assert_eq!(
        out["changedCount"],
        out["changed"].as_array().map(Vec::len).unwrap_or(0)
    );
    assert!(
        out["state"]
            .as_str()
            .is_some_and(|s| s.contains("$deltatoken"))
    );
}

/// `maxPages`: a first poll of a large table is read over several polls,
/// each returning a state that continues at the next page; rows written
/// meanwhile are neither lost nor left stale (the delta after the last page
/// brings them).
#[tokio::test]
async fn max_pages_spreads_a_full_sync_over_several_polls_without_losing_a_row() {
    let mut env = Env::new();
    for i in 0..6 {
        create(&mut env, &format!("Spread {i}")).await;
    }
    let at_start = current_account_ids(&env);
    let page = json!({"pageSize": 2, "maxPages": 2});
    let first = env
        .ok("recordChanges", &poll_inputs(None, page.clone()))
        .await;
    assert_eq!(first["pages"], 2, "{first}");
    assert_eq!(first["moreAvailable"], true, "{first}");
    assert_eq!(first["fullSync"], true);
    assert_eq!(first["changedCount"], 4);
    let mut state = first["state"].as_str().unwrap().to_string();
    assert!(state.contains("$skiptoken="), "{state}");
    assert!(!state.contains("$deltatoken="), "{state}");

    // Writes between polls: a row the sync has not reached yet renamed,
    // another deleted, a new one created.
    let mut seen: Vec<String> = first["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["accountid"].as_str().unwrap().to_string())
        .collect();
    let ahead: Vec<String> = at_start
        .iter()
        .filter(|id| !seen.contains(id))
        .cloned()
        .collect();
    rename(&mut env, &ahead[0], "Renamed while syncing").await;
    env.ok(
        "deleteEntity",
        &json!({"entityType": "accounts", "entityId": ahead[1]}).to_string(),
    )
    .await;
    let created = create(&mut env, "Created while syncing").await;

    let mut polls = 1;
    let mut last_name = std::collections::BTreeMap::new();
    loop {
        let out = env
            .ok("recordChanges", &poll_inputs(Some(&state), page.clone()))
            .await;
        polls += 1;
        assert_eq!(out["fullSync"], true, "{out}");
        assert!(out["deleted"].as_array().unwrap().is_empty(), "{out}");
        assert!(out["pages"].as_u64().unwrap() <= 2, "{out}");
        for row in out["changed"].as_array().unwrap() {
            let id = row["accountid"].as_str().unwrap().to_string();
            last_name.insert(id.clone(), row["name"].clone());
            seen.push(id);
        }
        state = out["state"].as_str().unwrap().to_string();
        if out["moreAvailable"] == false {
            break;
        }
        assert!(polls < 50, "the sync does not end");
    }
    assert!(polls >= 3, "{polls} polls for {} rows", at_start.len());
    assert!(state.contains("$deltatoken="), "{state}");
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a row came twice in the sync");

    let delta = env
        .ok("recordChanges", &poll_inputs(Some(&state), json!({})))
        .await;
    assert_eq!(delta["fullSync"], false);
    assert_eq!(delta["moreAvailable"], false);
    let delta_changed = ids(&delta["changed"], "accountid");
    assert!(delta_changed.contains(&created), "{delta}");
    for row in delta["changed"].as_array().unwrap() {
        last_name.insert(
            row["accountid"].as_str().unwrap().to_string(),
            row["name"].clone(),
        );
    }
    // Every row there is now was delivered, with its current name.
    let now = current_account_ids(&env);
    let delivered: BTreeSet<_> = unique.union(&delta_changed).cloned().collect();
    assert!(
        now.is_subset(&delivered),
        "lost: {:?}",
        now.difference(&delivered)
    );
    assert_eq!(last_name[&ahead[0]], "Renamed while syncing");
    assert!(!unique.contains(&ahead[1]) || strings(&delta["deleted"]).contains(&ahead[1]));
}

#[tokio::test]
async fn a_state_that_is_neither_a_delta_link_nor_a_next_page_is_refused() {
    let mut env = Env::new();
    let first = env.ok("recordChanges", &poll_inputs(None, json!({}))).await;
    let state = first["state"].as_str().unwrap().to_string();
    let (base, _) = state.split_once('?').unwrap();
    let err = env
        .err(
            "recordChanges",
            &poll_inputs(Some(&format!("{base}?$select=name")), json!({})),
        )
        .await;
    assert_eq!(err["input"], "state", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("$skiptoken"),
        "{err}"
    );
    let err = env
        .err("recordChanges", &poll_inputs(None, json!({"maxPages": 0})))
        .await;
    assert_eq!(err["input"], "maxPages", "{err}");

    // A next-page state whose page cookie the server refuses: resync.
    let first = env
        .ok(
            "recordChanges",
            &poll_inputs(None, json!({"pageSize": 1, "maxPages": 1})),
        )
        .await;
    let next = first["state"].as_str().unwrap();
    let (head, _) = next.split_once("$skiptoken=").unwrap();
    let err = env
        .err(
            "recordChanges",
            &poll_inputs(Some(&format!("{head}$skiptoken=ct1.nonsense")), json!({})),
        )
        .await;
    assert_eq!(err["status"], 400, "{err}");
    asks_for_a_resync(&err);
}
