//! Write controls through the real component against the emulator (issue
//! #29): impersonation, bypassing the org's plug-in steps and flows,
//! duplicate detection, elastic-table partitions and session tokens, the
//! plug-ins' tag, background operations — on single actions and on
//! `runBatch` items, where the headers go on that item's part only.

mod common;

use common::{Env, request_header, web_api_requests};
use host_test::emulator::webapi::batch::{InnerRequest, Part, parse_body};
use host_test::emulator::webapi::plugins::SYNC_AUDIT_STEP;
use host_test::emulator::{Config, LoggedRequest, data};
use serde_json::{Value, json};

/// Ben's Entra object id (Sales, not a System Administrator).
const BEN_OBJECT_ID: &str = "b0b0b0b0-0000-4000-8000-00000000b0b0";

/// The audit rows (source, step) the emulated custom logic wrote for one
/// record, sorted.
fn audit_of(env: &Env, id: &str) -> Vec<(String, Option<String>)> {
    let state = env.emulator.state();
    let mut out: Vec<(String, Option<String>)> = state
        .store
        .records("new_auditentry")
        .filter(|r| r.values.get("new_regardingid").and_then(Value::as_str) == Some(id))
        .map(|r| {
            (
                r.values["new_source"].as_str().unwrap_or("").to_string(),
                r.values
                    .get("new_tag")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            )
        })
        .collect();
    out.sort();
    out
}

fn sources(audit: &[(String, Option<String>)]) -> Vec<&str> {
    audit.iter().map(|(s, _)| s.as_str()).collect()
}

fn accounts_named(env: &Env, name: &str) -> Vec<String> {
    let state = env.emulator.state();
    state
        .store
        .records("account")
        .filter(|r| r.values.get("name").and_then(Value::as_str) == Some(name))
        .map(|r| r.id.clone())
        .collect()
}

/// The inner requests of the last `$batch` the emulator received.
fn last_batch_parts(env: &Env) -> Vec<InnerRequest> {
    let batch: LoggedRequest = web_api_requests(env)
        .into_iter()
        .rev()
        .find(|r| r.path().ends_with("/$batch"))
        .expect("a $batch request");
    let content_type = request_header(&batch, "Content-Type").expect("a content type");
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("a boundary")
        .trim_matches('"');
    parse_body(&batch.body, boundary)
        .expect("a valid batch body")
        .into_iter()
        .flat_map(|p| match p {
            Part::Request(r) => vec![r],
            Part::ChangeSet(rs) => rs,
        })
        .collect()
}

/// A logged request's target, percent-decoded.
fn decoded(r: &LoggedRequest) -> String {
    percent_encoding::percent_decode_str(&r.target)
        .decode_utf8_lossy()
        .into_owned()
}

fn part_header<'a>(r: &'a InnerRequest, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn impersonation_writes_as_the_user_and_goes_on_its_batch_part_only() {
    let mut env = Env::new();
    let out = env
        .ok(
            "createEntity",
            &json!({"entityType":"accounts","fieldValues":{"name":"As Ben"},
                    "impersonateUserId": BEN_OBJECT_ID})
            .to_string(),
        )
        .await;
    let id = out["id"].as_str().expect("an id").to_string();
    let post = web_api_requests(&env).pop().expect("the create");
    assert_eq!(request_header(&post, "CallerObjectId"), Some(BEN_OBJECT_ID));
    {
        let state = env.emulator.state();
        let row = state.store.get("account", &id).expect("created");
        assert_eq!(
            row.values["createdby"],
            json!(data::USER_BEN),
            "{:?}",
            row.values
        );
        assert_eq!(row.values["createdonbehalfby"], json!(data::USER_APP));
    }

    // On a runBatch item: only that item's part carries the header.
    let out = env
        .ok(
            "runBatch",
            &json!({"batchActions": [
                {"collection":"accounts","action":"create","data":{"name":"Batch App"}},
                {"collection":"accounts","action":"create","data":{"name":"Batch Ben"},
                 "impersonateUserId": data::USER_BEN, "impersonationHeader": "MSCRMCallerID"},
            ]})
            .to_string(),
        )
        .await;
    assert_eq!(out["succeeded"], 2, "{out}");
    let parts = last_batch_parts(&env);
    assert_eq!(parts.len(), 2);
    assert_eq!(part_header(&parts[0], "MSCRMCallerID"), None);
    assert_eq!(
        part_header(&parts[1], "MSCRMCallerID"),
        Some(data::USER_BEN)
    );
    let ben = accounts_named(&env, "Batch Ben");
    let state = env.emulator.state();
    assert_eq!(
        state.store.get("account", &ben[0]).expect("created").values["createdby"],
        json!(data::USER_BEN)
    );
}

#[tokio::test]
async fn bypassing_business_logic_leaves_the_steps_silent_and_needs_the_privilege() {
    let mut env = Env::new();
    // Without controls every registered step and the flow run once.
    let plain = env
        .ok(
            "createEntity",
            &json!({"entityType":"accounts","fieldValues":{"name":"Plain"},"tag":"import-7"})
                .to_string(),
        )
        .await;
    let plain_id = plain["id"].as_str().expect("an id");
    let audit = audit_of(&env, plain_id);
    assert_eq!(sources(&audit), ["flow", "plugin:async", "plugin:sync"]);
    assert!(
        audit
            .iter()
            .all(|(_, tag)| tag.as_deref() == Some("import-7")),
        "the plug-ins read the tag: {audit:?}"
    );
    let post = web_api_requests(&env).pop().expect("the create");
    assert!(post.target.contains("tag=import-7"), "{}", post.target);

    // A bulk create with both kinds bypassed: one CreateMultiple part
    // carrying the header, the steps silent, the flow (not custom logic
    // in Dataverse's sense) still runs.
    let items: Vec<Value> = (0..3)
        .map(|i| json!({"collection":"accounts","action":"create","data":{"name": format!("Bulk {i}")}}))
        .collect();
    let out = env
        .ok(
            "runBatch",
            &json!({"batchActions": items, "bulk": true,
                    "bypassBusinessLogic": "CustomSync,CustomAsync"})
            .to_string(),
        )
        .await;
    assert_eq!(out["succeeded"], 3, "{out}");
    let parts = last_batch_parts(&env);
    assert_eq!(parts.len(), 1, "one CreateMultiple request");
    assert!(parts[0].url.ends_with("CreateMultiple"), "{}", parts[0].url);
    assert_eq!(
        part_header(&parts[0], "MSCRM.BypassBusinessLogicExecution"),
        Some("CustomSync,CustomAsync")
    );
    for i in 0..3 {
        let id = accounts_named(&env, &format!("Bulk {i}"));
        assert_eq!(id.len(), 1);
        assert_eq!(sources(&audit_of(&env, &id[0])), ["flow"]);
    }

    // One step by id, and flows suppressed.
    let out = env
        .ok(
            "createEntity",
            &json!({"entityType":"accounts","fieldValues":{"name":"Some"},
                    "bypassStepIds": [SYNC_AUDIT_STEP], "suppressFlowTriggers": true})
            .to_string(),
        )
        .await;
    let id = out["id"].as_str().expect("an id");
    assert_eq!(sources(&audit_of(&env, id)), ["plugin:async"]);
    let post = web_api_requests(&env).pop().expect("the create");
    assert_eq!(
        request_header(&post, "MSCRM.BypassBusinessLogicExecutionStepIds"),
        Some(SYNC_AUDIT_STEP)
    );
    assert_eq!(
        request_header(&post, "MSCRM.SuppressCallbackRegistrationExpanderJob"),
        Some("true")
    );

    // As Ben, who lacks prvBypassCustomBusinessLogic: forbidden, nothing
    // written — on a single create and on a bulk batch.
    let before = env.emulator.state().store.records("account").count();
    let e = env
        .err(
            "createEntity",
            &json!({"entityType":"accounts","fieldValues":{"name":"Forbidden"},
                    "impersonateUserId": BEN_OBJECT_ID, "bypassBusinessLogic": "CustomSync"})
            .to_string(),
        )
        .await;
    assert_eq!(e["kind"], "forbidden", "{e}");
    assert_eq!(e["status"], 403);
    assert!(
        e["hint"]
            .as_str()
            .is_some_and(|h| h.contains("prvBypassCustomBusinessLogic")),
        "{e}"
    );
    let out = env
        .ok(
            "runBatch",
            &json!({"batchActions": [
                {"collection":"accounts","action":"create","data":{"name":"Forbidden 1"}},
                {"collection":"accounts","action":"create","data":{"name":"Forbidden 2"}},
            ], "bulk": true, "atomic": true, "impersonateUserId": BEN_OBJECT_ID,
               "bypassBusinessLogic": "CustomAsync"})
            .to_string(),
        )
        .await;
    assert_eq!(out["succeeded"], 0, "{out}");
    assert_eq!(out["results"][0]["status"], 403, "{out}");
    assert_eq!(
        env.emulator.state().store.records("account").count(),
        before,
        "nothing written"
    );
    assert!(audit_of(&env, "Forbidden").is_empty());
}

#[tokio::test]
async fn a_duplicate_is_refused_naming_the_match_then_created_with_detection_off() {
    let mut env = Env::new();
    let first = env
        .ok(
            "createEntity",
            &json!({"entityType":"accounts","fieldValues":{"name":"Northwind Roastery"}})
                .to_string(),
        )
        .await;
    let first_id = first["id"].as_str().expect("an id").to_string();
    let e = env
        .err(
            "createEntity",
            &json!({"entityType":"accounts","fieldValues":{"name":" northwind roastery"},
                    "duplicateDetection": true})
            .to_string(),
        )
        .await;
    assert_eq!(e["kind"], "conflict", "{e}");
    assert_eq!(e["code"], "0x80040333", "{e}");
    assert!(
        e["hint"].as_str().is_some_and(|h| h.contains(&first_id)),
        "the hint names the matching record: {e}"
    );
    let sent: Vec<LoggedRequest> = web_api_requests(&env);
    let create = sent
        .iter()
        .rev()
        .find(|r| r.method == "POST")
        .expect("the create");
    assert_eq!(
        request_header(create, "MSCRM.SuppressDuplicateDetection"),
        Some("false")
    );
    assert!(
        sent.iter().any(|r| r.path().contains("RetrieveDuplicates")),
        "the match was looked up"
    );
    assert_eq!(accounts_named(&env, "Northwind Roastery").len(), 1);

    // Detection off (the Web API's default): created.
    env.ok(
        "createEntity",
        &json!({"entityType":"accounts","fieldValues":{"name":"Northwind Roastery"}}).to_string(),
    )
    .await;
    assert_eq!(accounts_named(&env, "Northwind Roastery").len(), 2);

    // On a batch item, the refusal is that item's.
    let out = env
        .ok(
            "runBatch",
            &json!({"batchActions": [
                {"collection":"accounts","action":"create","data":{"name":"Northwind Roastery"},
                 "duplicateDetection": true},
                {"collection":"accounts","action":"create","data":{"name":"Southwind Roastery"}},
            ], "continueOnError": true})
            .to_string(),
        )
        .await;
    assert_eq!(out["results"][0]["success"], false, "{out}");
    assert_eq!(out["results"][0]["error"]["code"], "0x80040333", "{out}");
    assert_eq!(out["results"][1]["success"], true, "{out}");
    let parts = last_batch_parts(&env);
    assert_eq!(
        part_header(&parts[0], "MSCRM.SuppressDuplicateDetection"),
        Some("false")
    );
    assert_eq!(
        part_header(&parts[1], "MSCRM.SuppressDuplicateDetection"),
        None
    );
}

#[tokio::test]
async fn a_partitioned_read_with_the_session_token_sees_its_own_write() {
    // Writes take an hour to reach readers without a session token.
    let mut env = Env::with_config(Config {
        elastic_read_lag_secs: 3600,
        ..Config::default()
    });
    let created = env
        .ok(
            "createEntity",
            &json!({"entityType":"contoso_sensordatas","partitionId":"device-001",
                    "fieldValues":{"contoso_deviceid":"device-001","contoso_value":40}})
            .to_string(),
        )
        .await;
    let id = created["id"].as_str().expect("an id").to_string();
    let token = created["sessionToken"]
        .as_str()
        .expect("a session token")
        .to_string();
    let post = web_api_requests(&env).pop().expect("the create");
    let body: Value = serde_json::from_slice(&post.body).expect("JSON");
    assert_eq!(
        body["partitionid"], "device-001",
        "the partition goes in the body"
    );

    let get = |token: Option<&str>, partition: &str| {
        let mut inputs = json!({"entityType":"contoso_sensordatas","entityId": id,
                                "partitionId": partition, "fieldNames":["contoso_value"]});
        if let Some(t) = token {
            inputs["sessionToken"] = json!(t);
        }
        inputs.to_string()
    };
    let e = env.err("getEntity", &get(None, "device-001")).await;
    assert_eq!(
        e["kind"], "not-found",
        "without the token the write is not seen yet: {e}"
    );
    let seen = env.ok("getEntity", &get(Some(&token), "device-001")).await;
    assert_eq!(seen["contoso_value"], 40, "{seen}");
    let read = web_api_requests(&env).pop().expect("the read");
    assert_eq!(
        request_header(&read, "MSCRM.SessionToken"),
        Some(token.as_str())
    );
    assert!(
        decoded(&read).contains("partitionId=device-001"),
        "{}",
        read.target
    );
    let e = env.err("getEntity", &get(Some(&token), "device-002")).await;
    assert_eq!(e["kind"], "not-found", "another partition: {e}");

    // An update names the partition in the key and returns a newer token.
    let updated = env
        .ok(
            "updateEntity",
            &json!({"entityType":"contoso_sensordatas","entityId": id,"partitionId":"device-001",
                    "fieldValues":{"contoso_value":60}})
            .to_string(),
        )
        .await;
    let patch = web_api_requests(&env).pop().expect("the update");
    assert!(
        decoded(&patch).contains(&format!(
            "contoso_sensordatas(contoso_sensordataid={id},partitionid='device-001')"
        )),
        "{}",
        patch.target
    );
    let newer = updated["sessionToken"].as_str().expect("a session token");
    assert_ne!(newer, token);
    let seen = env.ok("getEntity", &get(Some(newer), "device-001")).await;
    assert_eq!(seen["contoso_value"], 60, "{seen}");
    let listed = env
        .ok(
            "queryEntities",
            &json!({"entityType":"contoso_sensordatas","partitionId":"device-001",
                    "sessionToken": newer, "fieldNames":["contoso_value"]})
            .to_string(),
        )
        .await;
    assert_eq!(listed["count"], 1, "{listed}");

    env.ok(
        "deleteEntity",
        &json!({"entityType":"contoso_sensordatas","entityId": id,"partitionId":"device-001"})
            .to_string(),
    )
    .await;
    let delete = web_api_requests(&env).pop().expect("the delete");
    assert_eq!(delete.method, "DELETE");
    assert!(
        decoded(&delete).contains("partitionId=device-001"),
        "{}",
        delete.target
    );
    assert!(
        env.emulator
            .state()
            .store
            .get("contoso_sensordata", &id)
            .is_none()
    );

    // A partition on a standard table is refused before anything is written.
    let before = web_api_requests(&env).len();
    let e = env
        .err(
            "createEntity",
            &json!({"entityType":"accounts","partitionId":"p1","fieldValues":{"name":"x"}})
                .to_string(),
        )
        .await;
    assert_eq!(e["kind"], "invalid-input", "{e}");
    assert_eq!(e["input"], "partitionId", "{e}");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("Standard")),
        "{e}"
    );
    let after = web_api_requests(&env);
    assert!(
        after[before..].iter().all(|r| r.method == "GET"),
        "only the metadata was read"
    );
}

#[tokio::test]
async fn a_background_execute_action_is_polled_to_completion() {
    let mut env = Env::new();
    let account = host_test::emulator::store::seed::account_id(3);
    let queued = env
        .ok(
            "executeAction",
            &json!({"name":"new_SetCreditHold","boundEntitySet":"accounts","boundId": account,
                    "parameters":{"OnHold": true},"runInBackground": true})
            .to_string(),
        )
        .await;
    assert_eq!(queued["status"], 202, "{queued}");
    let op = queued["backgroundOperationId"]
        .as_str()
        .expect("an id")
        .to_string();
    let location = queued["location"].as_str().expect("a location");
    assert!(
        location.ends_with(&format!("/api/backgroundoperation/{op}")),
        "{location}"
    );
    let sent = web_api_requests(&env).pop().expect("the action");
    assert_eq!(request_header(&sent, "Prefer"), Some("respond-async"));
    let held = |env: &Env| {
        env.emulator
            .state()
            .store
            .get("account", &account)
            .expect("seeded")
            .values
            .get("creditonhold")
            .cloned()
    };
    assert_ne!(held(&env), Some(json!(true)), "queued, not run yet");

    // Polled by id (and once by its location): each state once, then done.
    let mut seen = Vec::new();
    for round in 0..5 {
        let id = if round == 1 {
            location.to_string()
        } else {
            op.clone()
        };
        let status = env
            .ok(
                "getBackgroundOperation",
                &json!({"backgroundOperationId": id}).to_string(),
            )
            .await;
        seen.push(status["status"].as_str().unwrap_or("").to_string());
        if status["done"] == true {
            assert_eq!(status["succeeded"], true, "{status}");
            assert_eq!(status["state"], "Completed");
            assert_eq!(status["output"]["PreviousValue"], false, "{status}");
            assert_eq!(status["name"], "new_SetCreditHold");
            break;
        }
    }
    assert_eq!(seen, ["In Progress", "Succeeded"], "{seen:?}");
    assert_eq!(held(&env), Some(json!(true)), "the operation ran");

    // Not a custom API: refused with a hint.
    let e = env
        .err(
            "executeAction",
            &json!({"name":"WinOpportunity","parameters":{},"runInBackground": true}).to_string(),
        )
        .await;
    assert_eq!(e["status"], 400, "{e}");
    assert!(
        e["hint"]
            .as_str()
            .is_some_and(|h| h.contains("custom APIs")),
        "{e}"
    );
    let e = env
        .err(
            "getBackgroundOperation",
            &json!({"backgroundOperationId": "nope"}).to_string(),
        )
        .await;
    assert_eq!(e["input"], "backgroundOperationId", "{e}");
}

#[tokio::test]
async fn bad_controls_are_refused_naming_the_input_before_anything_is_sent() {
    let mut env = Env::new();
    let cases = [
        (
            "createEntity",
            json!({"entityType":"accounts","fieldValues":{"name":"x"},"bypassBusinessLogic":"All"}),
            "bypassBusinessLogic",
        ),
        (
            "updateEntity",
            json!({"entityType":"accounts","entityId": host_test::emulator::store::seed::account_id(1),
                   "fieldValues":{"name":"x"},"ifMatch":"abc"}),
            "ifMatch",
        ),
        (
            "deleteEntity",
            json!({"entityType":"accounts","entityId": host_test::emulator::store::seed::account_id(1),
                   "impersonateUserId":"ben"}),
            "impersonateUserId",
        ),
        (
            "associate",
            json!({"entityType":"accounts","entityId": host_test::emulator::store::seed::account_id(1),
                   "navigationProperty":"contact_customer_accounts","targetEntityType":"contacts",
                   "targetId": host_test::emulator::store::seed::account_id(1),
                   "suppressFlowTriggers":"maybe"}),
            "suppressFlowTriggers",
        ),
        (
            "runBatch",
            json!({"batchActions":[{"collection":"accounts","action":"create","data":{"name":"x"},
                   "bypassBusinessLogic":"Nope"}]}),
            "batchActions[0].bypassBusinessLogic",
        ),
        (
            "runBatch",
            json!({"batchActions":[{"collection":"accounts","action":"create","data":{"name":"x"},
                   "partitionId":"p"}]}),
            "batchActions[0].partitionId",
        ),
        (
            "executeAction",
            json!({"name":"WhoAmI","kind":"function","bypassStepIds":["x"]}),
            "bypassStepIds",
        ),
    ];
    for (action, inputs, input) in cases {
        let before = web_api_requests(&env).len();
        let e = env.err(action, &inputs.to_string()).await;
        assert_eq!(e["kind"], "invalid-input", "{action}: {e}");
        assert_eq!(e["input"], input, "{action}: {e}");
        assert_eq!(
            web_api_requests(&env).len(),
            before,
            "{action}: nothing sent"
        );
    }
    // Past the org's limit of three step ids: Dataverse's refusal.
    let four: Vec<String> = (0..4)
        .map(|i| format!("4ab978b0-1d77-ec11-8d21-000d3a554d5{i}"))
        .collect();
    let e = env
        .err(
            "createEntity",
            &json!({"entityType":"accounts","fieldValues":{"name":"x"},"bypassStepIds": four})
                .to_string(),
        )
        .await;
    assert_eq!(e["status"], 400, "{e}");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("allows 3")),
        "{e}"
    );
}

#[tokio::test]
async fn each_batch_item_carries_its_own_controls_and_no_other_part_does() {
    let mut env = Env::new();
    let sensor = env
        .ok(
            "createEntity",
            &json!({"entityType":"contoso_sensordatas","partitionId":"dev-9",
                    "fieldValues":{"contoso_deviceid":"dev-9","contoso_value":1}})
            .to_string(),
        )
        .await["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let out = env
        .ok(
            "runBatch",
            &json!({"batchActions": [
                {"collection":"accounts","action":"create","data":{"name":"Item Sync"},
                 "bypassBusinessLogic":"CustomSync"},
                {"collection":"accounts","action":"create","data":{"name":"Item Flowless"},
                 "suppressFlowTriggers": true},
                {"collection":"accounts","action":"create","data":{"name":"Item Tagged"},
                 "tag":"wave 2"},
                {"collection":"contoso_sensordatas","action":"get","key": sensor,
                 "partitionId":"dev-9","query":"$select=contoso_value"},
                {"collection":"accounts","action":"create","data":{"name":"Item Plain"}},
            ]})
            .to_string(),
        )
        .await;
    assert_eq!(out["succeeded"], 5, "{out}");
    assert_eq!(out["results"][3]["record"]["contoso_value"], 1, "{out}");
    let parts = last_batch_parts(&env);
    let controls = [
        "MSCRM.BypassBusinessLogicExecution",
        "MSCRM.SuppressCallbackRegistrationExpanderJob",
    ];
    let carried: Vec<Vec<&str>> = parts
        .iter()
        .map(|p| {
            controls
                .iter()
                .copied()
                .filter(|h| part_header(p, h).is_some())
                .collect()
        })
        .collect();
    assert_eq!(
        carried,
        vec![vec![controls[0]], vec![controls[1]], vec![], vec![], vec![]],
        "each header on its own item's part only"
    );
    let query_of = |i: usize| {
        percent_encoding::percent_decode_str(&parts[i].url)
            .decode_utf8_lossy()
            .into_owned()
    };
    assert!(query_of(2).ends_with("?tag=wave 2"), "{}", query_of(2));
    assert!(query_of(3).contains("partitionId=dev-9"), "{}", query_of(3));
    for i in [0, 1, 4] {
        assert!(!parts[i].url.contains('?'), "{}", parts[i].url);
    }
    // What each control did.
    let id = |name: &str| accounts_named(&env, name).pop().expect("created");
    assert_eq!(
        sources(&audit_of(&env, &id("Item Sync"))),
        ["flow", "plugin:async"]
    );
    assert_eq!(
        sources(&audit_of(&env, &id("Item Flowless"))),
        ["plugin:async", "plugin:sync"]
    );
    let tagged = audit_of(&env, &id("Item Tagged"));
    assert!(
        tagged.iter().all(|(_, t)| t.as_deref() == Some("wave 2")),
        "{tagged:?}"
    );
    assert_eq!(
        sources(&audit_of(&env, &id("Item Plain"))),
        ["flow", "plugin:async", "plugin:sync"]
    );
}

#[tokio::test]
async fn an_upload_carries_its_controls_on_every_request_chunks_included() {
    use base64::Engine as _;
    let mut env = Env::new();
    let account = host_test::emulator::store::seed::account_id(4);
    // Above the 4 MiB single-request limit: a session and two chunks.
    let bytes: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let out = env
        .ok(
            "uploadFile",
            &json!({"entityType":"accounts","entityId": account,"columnName":"new_document",
                    "fileName":"report.bin",
                    "fileContent": base64::engine::general_purpose::STANDARD.encode(&bytes),
                    "impersonateUserId": BEN_OBJECT_ID, "suppressFlowTriggers": true})
            .to_string(),
        )
        .await;
    assert_eq!(out["chunks"], 2, "{out}");
    let patches: Vec<LoggedRequest> = web_api_requests(&env)
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 3, "the session and two chunks");
    for p in &patches {
        assert_eq!(
            request_header(p, "CallerObjectId"),
            Some(BEN_OBJECT_ID),
            "{}",
            p.target
        );
        assert_eq!(
            request_header(p, "MSCRM.SuppressCallbackRegistrationExpanderJob"),
            Some("true")
        );
    }
    let e = env
        .err(
            "uploadFile",
            &json!({"entityType":"accounts","entityId": account,"columnName":"new_document",
                    "fileName":"a.txt","fileContent":"aGk=","bypassBusinessLogic":"Sometimes"})
            .to_string(),
        )
        .await;
    assert_eq!(e["input"], "bypassBusinessLogic", "{e}");
}

#[tokio::test]
async fn the_status_monitor_location_answers_polls_and_cancels() {
    use common::wire::{Req, Wire};
    let mut env = Env::new();
    let account = host_test::emulator::store::seed::account_id(5);
    let queue = |on_hold: bool| {
        json!({"name":"new_SetCreditHold","boundEntitySet":"accounts","boundId": account,
               "parameters":{"OnHold": on_hold},"runInBackground": true})
        .to_string()
    };
    let queued = env.ok("executeAction", &queue(true)).await;
    let location = queued["location"].as_str().expect("a location").to_string();
    let wire = Wire::new(&env).await;
    let first = wire.send(Req::get(location.clone())).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["backgroundOperationStateCode"], 2);
    assert_eq!(first.body["backgroundOperationStatusCode"], 20);
    let done = wire.send(Req::get(location.clone())).await;
    assert_eq!(
        done.body["backgroundOperationStatusCode"], 30,
        "{:?}",
        done.body
    );
    assert_eq!(
        done.body["PreviousValue"], false,
        "output parameters as members"
    );

    // Cancelled before it ran: Completed, Canceled, and the account untouched.
    let queued = env.ok("executeAction", &queue(false)).await;
    let location = queued["location"].as_str().expect("a location").to_string();
    let cancel = wire.send(Req::new("DELETE", location.clone())).await;
    assert_eq!(cancel.status, 204);
    let after = wire.send(Req::get(location)).await;
    assert_eq!(after.body["backgroundOperationStateCode"], 3);
    assert_eq!(after.body["backgroundOperationStatusCode"], 32);
    let status = env
        .ok(
            "getBackgroundOperation",
            &json!({"backgroundOperationId": queued["backgroundOperationId"]}).to_string(),
        )
        .await;
    assert_eq!(status["status"], "Canceled", "{status}");
    assert_eq!(status["done"], true);
    assert_eq!(
        env.emulator
            .state()
            .store
            .get("account", &account)
            .expect("seeded")
            .values["creditonhold"],
        json!(true),
        "the cancelled operation did not run"
    );
    let unknown = wire
        .send(Req::get(
            "http://localhost/api/backgroundoperation/0b0b0b0b-0000-4000-8000-00000000ffff",
        ))
        .await;
    assert_eq!(unknown.status, 404);
}
