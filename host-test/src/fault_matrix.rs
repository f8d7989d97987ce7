//! The fault matrix (issue #12): every action of the catalog meets every
//! fault of [`FAULTS`] on a fresh in-process emulator, through the real
//! component. Each cell's outcome — `ok` (succeeded with as many requests
//! as without the fault), `retried-ok` (succeeded after repeating a
//! request) or `error:<kind>` (a typed error) — is compared with a
//! committed table (`tests/fault_matrix.tsv`, the specification), and every
//! cell is checked against invariants that hold whatever the table says:
//!
//! - the call never traps, and an error has a non-empty message;
//! - a write is applied at most once, and is applied when the call
//!   succeeded (the emulator's store is counted after the call);
//! - a read that succeeds answers what it answers without the fault; a
//!   list (fetch-all over many pages) holds every record once, in order —
//!   never a silent part.
//!
//! Multi-request actions (fetch-all, $batch, metadata) meet the fault on a
//! request in the middle of their run (a later page, not the first), as
//! counted in a fault-free run. `tests/fault_matrix.rs` runs it; `d365
//! faults` prints it.

use crate::cli::{self, IN_PROCESS_ORIGIN};
use crate::emulator::store::schema::AttributeDef;
use crate::emulator::store::seed;
use crate::emulator::webapi::files;
use crate::emulator::{Emulator, Faults, Injected, Limit, State, Trigger};
use crate::host::{
    ConnectorHost, HostLimits, Route, error_json, subscription_from_json, subscription_json,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// The committed table, embedded for `d365 faults`.
pub const COMMITTED_TABLE: &str = include_str!("../tests/fault_matrix.tsv");

/// The faults, in the table's order (see [`fault`]).
pub const FAULTS: &[&str] = &[
    "none",
    "429-retry-after",
    "503",
    "500",
    "500-always",
    "502-after-processing",
    "reset-before-send",
    "reset-after-send",
    "cut-body",
    "invalid-json",
    "endless-body",
    "stall-30s",
    "token-expired",
];

/// The fault `name` hitting Web API request number `at`.
pub fn fault(name: &str, at: u64) -> Option<Faults> {
    let n = Trigger::Nth(at);
    let f = Faults::default();
    Some(match name {
        "none" => f,
        "429-retry-after" => f.with_error(
            n,
            Injected::Throttle {
                retry_after_secs: 2,
                limit: Limit::Requests,
            },
        ),
        "503" => f.with_error(
            n,
            Injected::Unavailable {
                retry_after_secs: None,
            },
        ),
        "500" => f.with_error(n, Injected::Status(500)),
        "500-always" => Faults::fail_next(u64::MAX, 500),
        "502-after-processing" => f.with_error_after_processing(n, Injected::Status(502)),
        "reset-before-send" => f.with_reset_before_send(n),
        "reset-after-send" => f.with_reset_after_send(n),
        "cut-body" => f.with_cut_body(n),
        "invalid-json" => f.with_invalid_json(n),
        "endless-body" => f.with_endless_body(n),
        "stall-30s" => f.with_delay(n, Duration::from_secs(30)),
        "token-expired" => f.with_expired_tokens(n),
        _ => return None,
    })
}

/// What a write changes, counted in the store.
type Footprint = Box<dyn Fn(&State) -> usize + Send + Sync>;

/// How a cell's result is checked beyond its outcome.
enum Check {
    /// A read: when it succeeds, `digest` of its output equals the
    /// fault-free run's.
    Read(fn(&Value) -> Value),
    /// A read of a list at `pointer` whose records carry `id`: when it
    /// succeeds, the ids equal the fault-free run's (same order, no
    /// duplicates) and number `expected(store)`.
    List {
        pointer: &'static str,
        id: &'static str,
        expected: fn(&State) -> usize,
    },
    /// A write: `footprint` is `applied` after a success, and either its
    /// value before the call or `applied` after a failure.
    Write {
        footprint: Footprint,
        applied: usize,
    },
}

/// The inputs and the check of one action.
struct Prepared {
    inputs: Value,
    check: Check,
}

/// The name every matrix write uses (one fresh emulator per cell).
const MARK: &str = "Fault Matrix";

fn whole(v: &Value) -> Value {
    v.clone()
}

fn body(v: &Value) -> Value {
    v["body"].clone()
}

fn accounts(s: &State) -> usize {
    s.store.count("account")
}

fn named(s: &State, entity: &str, name: &str) -> usize {
    s.store
        .records(entity)
        .filter(|r| r.get("name").as_str() == Some(name))
        .count()
}

fn parent_of(s: &State, contact: &str) -> Option<String> {
    s.store
        .get("contact", contact)
        .and_then(|r| r.get("parentcustomerid").as_str().map(str::to_string))
}

/// A seeded contact whose parent customer is an account, and that account.
fn linked_contact(s: &State) -> Option<(String, String)> {
    s.store.records("contact").find_map(|r| {
        let parent = r.get("parentcustomerid").as_str()?;
        (r.lookup_targets.get("parentcustomerid").map(String::as_str) == Some("account"))
            .then(|| (r.id.clone(), parent.to_string()))
    })
}

/// The columns of `entity` that `pick` selects.
fn attributes(s: &State, entity: &str, pick: fn(&AttributeDef) -> bool) -> usize {
    s.store
        .schema()
        .by_logical_name(entity)
        .map_or(0, |e| e.attributes.iter().filter(|a| pick(a)).count())
}

/// (Dis)associates `contact` with `account` through the one-to-many
/// relationship; afterwards the link exists `applied` (1) or not (0) times.
fn link(account: String, contact: String, applied: usize) -> (Value, Check) {
    let inputs = json!({"entityType": "accounts", "entityId": account,
        "navigationProperty": "contact_customer_accounts",
        "targetEntityType": "contacts", "targetId": contact});
    let footprint = move |s: &State| usize::from(parent_of(s, &contact) == Some(account.clone()));
    (inputs, write(Box::new(footprint), applied))
}

/// The file the file actions move: 8 MiB and 1 byte, so three chunks or
/// ranges of 4 MiB.
fn file_data() -> Vec<u8> {
    (0..(8 << 20) + 1).map(|i: usize| (i % 251) as u8).collect()
}

fn seed_file(emulator: &Emulator, account: &str) {
    files::put_file(
        &mut emulator.state(),
        "account",
        account,
        "new_document",
        "matrix.bin",
        file_data().into(),
    )
    .expect("account has the file column new_document");
}

fn write(footprint: Footprint, applied: usize) -> Check {
    Check::Write { footprint, applied }
}

/// Every action of the catalog, with inputs that reach the wire and
/// succeed without a fault.
pub const ACTIONS: &[&str] = &[
    "getCurrentUser",
    "createEntity",
    "getEntity",
    "updateEntity",
    "upsertEntity",
    "deleteEntity",
    "queryEntities",
    "rawRequest",
    "rawRequestDeprecated",
    "runFetchXml",
    "recordChanges",
    "getEntityMetadata",
    "getEntitiesMetadata",
    "listEntities",
    "listEntityTypes",
    "listAttributes",
    "queryAttributes",
    "getAttribute",
    "createAttribute",
    "updateAttribute",
    "uploadFile",
    "downloadFile",
    "deleteFile",
    "associate",
    "disassociate",
    "executeAction",
    "getBackgroundOperation",
    "searchRecords",
    "suggestRecords",
    "autocompleteSearch",
    "getSearchStatus",
    "runBatch",
];

/// The webhook trigger's lifecycle calls, in the matrix as actions are
/// (the host's `subscribe` and `unsubscribe` exports, by these keys).
pub const LIFECYCLE: &[&str] = &["webhook.subscribe", "webhook.unsubscribe"];

/// Where the matrix's subscriptions point (nothing is delivered: the
/// matrix makes no record writes while one exists).
const HOOK: &str = "http://127.0.0.1:9/matrix-hook";
const HOOK_NAME: &str = "d365-connector fault-matrix";

/// Registration rows the connector made (named `d365-connector …`).
fn registrations(s: &State) -> usize {
    [
        "serviceendpoint",
        "sdkmessageprocessingstep",
        "sdkmessageprocessingstepimage",
    ]
    .iter()
    .map(|table| {
        s.store
            .records(table)
            .filter(|r| {
                r.get("name")
                    .as_str()
                    .is_some_and(|n| n.starts_with("d365-connector "))
            })
            .count()
    })
    .sum()
}

/// A subscription as `subscribe` would have left it: an endpoint, three
/// steps, two images, written straight into the store; its record.
fn seed_subscription(emulator: &Emulator) -> Value {
    use crate::emulator::store::Changes;
    use crate::emulator::store::schema::sdk;
    let mut state = emulator.state();
    let now = state.now();
    let user = crate::emulator::data::USER_ANA;
    let endpoint = "5e5e0000-0000-4000-8000-000000000001".to_string();
    let mut put = |entity: &str, id: &str, values: Value, lookups: &[(&str, &str, &str)]| {
        let mut changes = Changes::default();
        if let Value::Object(map) = values {
            changes.values = map;
        }
        for (attr, target, to) in lookups {
            changes
                .lookups
                .insert(attr.to_string(), Some((target.to_string(), to.to_string())));
        }
        state
            .store
            .create(entity, Some(id.to_string()), changes, user, now)
            .map(|_| ())
            .unwrap_or_else(|e| panic!("seeding {entity}: {e:?}"));
    };
    put(
        "serviceendpoint",
        &endpoint,
        json!({"name": HOOK_NAME, "contract": 8, "authtype": 4, "url": HOOK}),
        &[],
    );
    let message = sdk::message_id("Create");
    let steps: Vec<String> = (1..=3)
        .map(|n| format!("5e5e0000-0000-4000-8000-00000000010{n}"))
        .collect();
    for (n, step) in steps.iter().enumerate() {
        put(
            "sdkmessageprocessingstep",
            step,
            json!({"name": format!("{HOOK_NAME}: step {n}"), "stage": 40, "mode": 1}),
            &[
                ("eventhandler", "serviceendpoint", &endpoint),
                ("sdkmessageid", "sdkmessage", &message),
            ],
        );
    }
    let images: Vec<String> = (1..=2)
        .map(|n| format!("5e5e0000-0000-4000-8000-00000000020{n}"))
        .collect();
    for image in &images {
        put(
            "sdkmessageprocessingstepimage",
            image,
            json!({"name": format!("{HOOK_NAME} image"), "imagetype": 0,
                "messagepropertyname": "Target", "attributes": "name"}),
            &[(
                "sdkmessageprocessingstepid",
                "sdkmessageprocessingstep",
                &steps[0],
            )],
        );
    }
    json!({"name": HOOK_NAME, "callbackUrl": HOOK, "endpointId": endpoint,
        "stepIds": steps, "imageIds": images, "inputs": {}})
}

fn prepare(action: &str, emulator: &Emulator) -> Prepared {
    let account = seed::account_id(3);
    let (inputs, check) = match action {
        // One endpoint, three steps, four images (Create's post-image,
        // Update's two, Delete's pre-image).
        "webhook.subscribe" => (
            json!({"callbackUrl": HOOK, "inputs": {"webhookKey": "Fault-Matrix-Key-0123456789",
                "entityName": "account", "messages": ["Create", "Update", "Delete"],
                "filteringAttributes": ["name"], "preImageAttributes": ["name"],
                "postImageAttributes": ["name"]}}),
            write(Box::new(registrations), 8),
        ),
        "webhook.unsubscribe" => (
            seed_subscription(emulator),
            write(Box::new(registrations), 0),
        ),
        "getCurrentUser" => (json!({}), Check::Read(whole)),
        "createEntity" => (
            json!({"entityType": "accounts", "fieldValues": {"name": MARK}}),
            write(Box::new(|s| named(s, "account", MARK)), 1),
        ),
        "getEntity" => (
            json!({"entityType": "accounts", "entityId": account, "fieldNames": ["name"]}),
            Check::Read(whole),
        ),
        "updateEntity" => (
            json!({"entityType": "accounts", "entityId": account, "fieldValues": {"name": MARK}}),
            write(Box::new(|s| named(s, "account", MARK)), 1),
        ),
        "upsertEntity" => (
            json!({"entityType": "accounts", "entityId": "0f0f0f0f-0000-4000-8000-000000000abc",
                "fieldValues": {"name": MARK}}),
            write(Box::new(|s| named(s, "account", MARK)), 1),
        ),
        "deleteEntity" => (
            json!({"entityType": "accounts", "entityId": account}),
            write(
                Box::new(move |s| usize::from(s.store.get("account", &account).is_some())),
                0,
            ),
        ),
        "queryEntities" => (
            json!({"entityType": "accounts", "fieldNames": ["name"], "fetchAll": true,
                "pageSize": 2}),
            Check::List {
                pointer: "/value",
                id: "accountid",
                expected: accounts,
            },
        ),
        // rawRequest writes (a POST, retried only when the caller asks);
        // its deprecated twin reads with retries asked for.
        "rawRequest" => (
            json!({"url": "/api/data/v9.2/accounts", "method": "POST", "data": {"name": MARK}}),
            write(Box::new(|s| named(s, "account", MARK)), 1),
        ),
        "rawRequestDeprecated" => (
            json!({"url": "/api/data/v9.2/accounts?$select=name&$top=3", "maxRetries": 2}),
            Check::Read(body),
        ),
        "runFetchXml" => (
            json!({"entityType": "accounts", "fetchAll": true, "fetchXml":
                "<fetch count='2'><entity name='account'><attribute name='name'/></entity></fetch>"}),
            Check::List {
                pointer: "/value",
                id: "accountid",
                expected: accounts,
            },
        ),
        "recordChanges" => (
            json!({"entityType": "accounts", "fieldNames": ["name"], "pageSize": 2}),
            Check::List {
                pointer: "/changed",
                id: "accountid",
                expected: accounts,
            },
        ),
        "getEntityMetadata" => (json!({"entityType": "account"}), Check::Read(whole)),
        "getEntitiesMetadata" => (
            json!({"entityTypeFilter": ["account", "contacts"], "includeAllCustom": false}),
            Check::Read(whole),
        ),
        "listEntities" => (json!({}), Check::Read(whole)),
        "listEntityTypes" => (
            json!({"fetchAll": true, "maxPageSize": 2}),
            Check::List {
                pointer: "/value",
                id: "LogicalName",
                expected: |s| s.store.schema().entities.len(),
            },
        ),
        "listAttributes" => (json!({"entityId": "account"}), Check::Read(whole)),
        "queryAttributes" => (
            json!({"entityId": "new_project", "fieldNames": ["LogicalName", "AttributeType"],
                "filter": "IsCustomAttribute eq true"}),
            Check::Read(whole),
        ),
        "getAttribute" => (
            json!({"entityId": "account", "attributeKey": "LogicalName='name'"}),
            Check::Read(whole),
        ),
        "createAttribute" => (
            json!({"entityId": "account", "attributeBody": {
                "@odata.type": "Microsoft.Dynamics.CRM.MoneyAttributeMetadata",
                "SchemaName": "new_MatrixBalance",
                "DisplayName": {"LocalizedLabels": [{"Label": MARK, "LanguageCode": 1033}]},
                "RequiredLevel": {"Value": "None"},
                "PrecisionSource": 2}}),
            write(
                Box::new(|s| attributes(s, "account", |a| a.logical_name == "new_matrixbalance")),
                1,
            ),
        ),
        "updateAttribute" => (
            json!({"entityId": "new_project", "attributeBody": {
                "@odata.type": "Microsoft.Dynamics.CRM.MoneyAttributeMetadata",
                "SchemaName": "new_Budget", "LogicalName": "new_budget",
                "DisplayName": {"LocalizedLabels": [{"Label": MARK, "LanguageCode": 1033}]}}}),
            write(
                Box::new(|s| attributes(s, "new_project", |a| a.display_name == MARK)),
                1,
            ),
        ),
        // Three chunks (8 MiB + 1 byte): the fault lands on a chunk.
        "uploadFile" => {
            let data = file_data();
            let id = account.clone();
            (
                json!({"entityType": "accounts", "entityId": account, "columnName": "new_document",
                    "fileName": "matrix.bin", "fileContent": B64.encode(&data)}),
                write(
                    Box::new(move |s| {
                        usize::from(
                            files::file_bytes(s, "account", &id, "new_document")
                                .is_some_and(|b| b[..] == data[..]),
                        )
                    }),
                    1,
                ),
            )
        }
        // Three ranges: the fault lands on the second.
        "downloadFile" => {
            seed_file(emulator, &account);
            (
                json!({"entityType": "accounts", "entityId": account, "columnName": "new_document"}),
                Check::Read(whole),
            )
        }
        "deleteFile" => {
            seed_file(emulator, &account);
            let id = account.clone();
            (
                json!({"entityType": "accounts", "entityId": account, "columnName": "new_document"}),
                write(
                    Box::new(move |s| {
                        usize::from(files::file_bytes(s, "account", &id, "new_document").is_some())
                    }),
                    0,
                ),
            )
        }
        "associate" => link(account, seed::contact_id(2), 1),
        "disassociate" => {
            let (contact, parent) =
                linked_contact(&emulator.state()).expect("the seed links contacts to accounts");
            link(parent, contact, 0)
        }
        "executeAction" => {
            let opportunity = seed::opportunity_id(1);
            (
                json!({"name": "WinOpportunity", "parameters": {"Status": 3, "OpportunityClose": {
                    "subject": MARK,
                    "opportunityid@odata.bind": format!("/opportunities({opportunity})")}}}),
                write(
                    Box::new(move |s| {
                        s.store
                            .get("opportunity", &opportunity)
                            .map_or(0, |r| usize::from(r.get("statecode").as_i64() == Some(1)))
                    }),
                    1,
                ),
            )
        }
        "getBackgroundOperation" => {
            // A completed operation: reading it again changes nothing.
            let mut values = serde_json::Map::new();
            for (k, v) in [
                ("name", json!("new_SetCreditHold")),
                ("backgroundoperationstatecode", json!(3)),
                ("backgroundoperationstatuscode", json!(30)),
                (
                    "outputparameters",
                    json!(r#"[{"Key":"PreviousValue","Value":false}]"#),
                ),
            ] {
                values.insert(k.into(), v);
            }
            let id = "0b0b0b0b-0000-4000-8000-000000000b0b";
            let changes = crate::emulator::store::Changes {
                values,
                lookups: Default::default(),
            };
            let mut state = emulator.state();
            let now = state.now();
            let created = state.store.create(
                "backgroundoperation",
                Some(id.to_string()),
                changes,
                crate::emulator::data::USER_APP,
                now,
            );
            assert!(created.is_ok(), "a background operation to read");
            (json!({"backgroundOperationId": id}), Check::Read(whole))
        }
        "searchRecords" => (
            json!({"search": "contoso", "entities": ["account"], "count": true}),
            Check::Read(whole),
        ),
        "suggestRecords" => (json!({"search": "Fabri"}), Check::Read(whole)),
        "autocompleteSearch" => (json!({"search": "woodgr"}), Check::Read(whole)),
        "getSearchStatus" => (json!({}), Check::Read(whole)),
        "runBatch" => (
            json!({"batchActions": [
                {"collection": "accounts", "action": "create", "data": {"name": MARK}},
                {"collection": "accounts", "action": "get", "key": seed::account_id(1)},
                {"collection": "accounts", "action": "create", "data": {"name": MARK}}
            ]}),
            write(Box::new(|s| named(s, "account", MARK)), 2),
        ),
        other => panic!("the fault matrix has no inputs for {other}"),
    };
    Prepared { inputs, check }
}

/// One cell of the matrix.
#[derive(Debug, Clone)]
pub struct Cell {
    pub action: String,
    pub fault: String,
    /// `ok`, `retried-ok` or `error:<kind>`.
    pub outcome: String,
    /// Web API requests that arrived (attempts included), and how many a
    /// fault-free run makes.
    pub requests: u64,
    pub baseline_requests: u64,
    /// Broken invariants (empty when the cell is sound).
    pub violations: Vec<String>,
}

/// A fresh in-process emulator and a client-credentials connection.
fn fresh() -> (Emulator, Route) {
    let emulator = Emulator::new(Default::default());
    let route = Route::InProcess(emulator.clone());
    (emulator, route)
}

/// What one call produced: the output JSON or the error as JSON, or a trap.
type Called = Result<Result<Value, Value>, String>;

async fn call(host: &ConnectorHost, route: &Route, action: &str, inputs: &Value) -> Called {
    let conn = cli::emulator_connection(IN_PROCESS_ORIGIN)
        .connection()
        .map_err(|e| format!("{e:#}"))?;
    match action {
        "webhook.subscribe" => {
            let callback = inputs["callbackUrl"].as_str().unwrap_or("");
            let called = host
                .subscribe(route, &conn, &inputs["inputs"].to_string(), callback)
                .await;
            return match called {
                Err(trap) => Err(format!("trap: {trap:?}")),
                Ok(Err(e)) => Ok(Err(error_json(&e))),
                Ok(Ok(sub)) => Ok(Ok(subscription_json(&sub))),
            };
        }
        "webhook.unsubscribe" => {
            let sub = subscription_from_json(inputs).map_err(|e| format!("{e:#}"))?;
            return match host.unsubscribe(route, &conn, &sub).await {
                Err(trap) => Err(format!("trap: {trap:?}")),
                Ok(Err(e)) => Ok(Err(error_json(&e))),
                Ok(Ok(())) => Ok(Ok(json!({}))),
            };
        }
        _ => {}
    }
    match host.invoke(route, action, &conn, &inputs.to_string()).await {
        Err(trap) => Err(format!("trap: {trap:?}")),
        Ok(Err(e)) => Ok(Err(error_json(&e))),
        Ok(Ok(r)) => match serde_json::from_str(&r.output) {
            Ok(v) => Ok(Ok(v)),
            Err(e) => Err(format!("output is not JSON ({e}): {}", r.output)),
        },
    }
}

/// The fault-free run of one action: its output and request count.
struct Baseline {
    output: Value,
    requests: u64,
}

async fn baseline(host: &ConnectorHost, action: &str) -> Result<Baseline, String> {
    let (emulator, route) = fresh();
    let prepared = prepare(action, &emulator);
    emulator.set_faults(Faults::default());
    match call(host, &route, action, &prepared.inputs).await? {
        Ok(output) => Ok(Baseline {
            output,
            requests: emulator.fault_stats().requests,
        }),
        Err(e) => Err(format!("{action} fails without a fault: {e}")),
    }
}

fn ids(out: &Value, pointer: &str, id: &str) -> Option<Vec<Value>> {
    out.pointer(pointer)?
        .as_array()
        .map(|rows| rows.iter().map(|r| r[id].clone()).collect())
}

async fn cell(
    host: &ConnectorHost,
    action: &str,
    fault_name: &str,
    base: &Baseline,
) -> Result<Cell, String> {
    let (emulator, route) = fresh();
    let prepared = prepare(action, &emulator);
    let at = base.requests / 2 + 1;
    let faults = fault(fault_name, at).ok_or_else(|| format!("no fault {fault_name}"))?;
    let before = match &prepared.check {
        Check::Write { footprint, .. } => footprint(&emulator.state()),
        _ => 0,
    };
    emulator.set_faults(faults);
    let called = call(host, &route, action, &prepared.inputs).await;
    let stats = emulator.fault_stats();
    let requests = stats.requests;
    emulator.set_faults(Faults::default());
    let mut violations = Vec::new();
    let fired = stats.injected.len() as u64
        + stats.delayed
        + stats.cut
        + stats.tokens_expired
        + stats.endless
        + stats.resets
        + stats.invalid_json;
    if fault_name != "none" && fired == 0 {
        violations.push(format!(
            "the fault never fired (request {at} of {requests})"
        ));
    }
    let outcome = match &called {
        Err(trap) => {
            violations.push(trap.clone());
            "trap".to_string()
        }
        Ok(Ok(_)) if requests > base.requests => "retried-ok".to_string(),
        Ok(Ok(_)) => "ok".to_string(),
        Ok(Err(e)) => {
            if e["message"].as_str().is_none_or(|m| m.trim().is_empty()) {
                violations.push(format!("an error without a message: {e}"));
            }
            format!("error:{}", e["kind"].as_str().unwrap_or("?"))
        }
    };
    let output = match &called {
        Ok(Ok(v)) => Some(v),
        _ => None,
    };
    match (&prepared.check, output) {
        (Check::Write { footprint, applied }, output) => {
            let after = footprint(&emulator.state());
            if output.is_some() && after != *applied {
                violations.push(format!(
                    "succeeded, but the store holds {after} where the write makes {applied}"
                ));
            }
            if after != before && after != *applied {
                violations.push(format!(
                    "the store holds {after}: neither untouched ({before}) nor written once ({applied})"
                ));
            }
        }
        (Check::Read(digest), Some(out)) => {
            if digest(out) != digest(&base.output) {
                violations.push(format!(
                    "answered differently than without the fault: {}",
                    clip(&digest(out).to_string())
                ));
            }
        }
        (
            Check::List {
                pointer,
                id,
                expected,
            },
            Some(out),
        ) => {
            let got = ids(out, pointer, id).unwrap_or_default();
            let want = ids(&base.output, pointer, id).unwrap_or_default();
            let unique: HashSet<String> = got.iter().map(Value::to_string).collect();
            let total = expected(&emulator.state());
            if got != want || unique.len() != got.len() || got.len() != total {
                violations.push(format!(
                    "a partial or repeated list: {} rows ({} distinct) where {total} exist",
                    got.len(),
                    unique.len()
                ));
            }
        }
        (_, None) => {}
    }
    Ok(Cell {
        action: action.to_string(),
        fault: fault_name.to_string(),
        outcome,
        requests,
        baseline_requests: base.requests,
        violations,
    })
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Runs every cell. Meant for a paused tokio clock (Retry-After waits,
/// back-off and the 30 s stall are then skipped); the endless body meets a
/// host whose response cap is 8 MiB (the component's own 128 MiB cap would
/// only make the run slow).
pub async fn run(host: &ConnectorHost) -> Result<Vec<Cell>, String> {
    let host = host.limited(HostLimits {
        max_response_body: 8 << 20,
        ..*host.limits()
    });
    let mut cells = Vec::new();
    for action in ACTIONS.iter().chain(LIFECYCLE) {
        let base = baseline(&host, action).await?;
        for fault_name in FAULTS {
            cells.push(cell(&host, action, fault_name, &base).await?);
        }
    }
    Ok(cells)
}

/// A table: (action, fault) → expected outcome.
pub type Table = BTreeMap<(String, String), String>;

/// Parses the TSV table (`action<TAB>fault<TAB>outcome`, `#` comments).
pub fn parse_table(text: &str) -> Result<Table, String> {
    let mut table = Table::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        match line.split('\t').collect::<Vec<_>>()[..] {
            [a, f, o] => {
                table.insert((a.to_string(), f.to_string()), o.to_string());
            }
            _ => return Err(format!("bad table line: {line}")),
        }
    }
    Ok(table)
}

/// The observed outcomes as the TSV table.
pub fn to_tsv(cells: &[Cell]) -> String {
    let mut out = String::from(
        "# The fault matrix: action, fault, expected outcome. ok = succeeded with\n\
         # the requests a fault-free run makes; retried-ok = succeeded after\n\
         # repeating a request; error:<kind> = a typed error.\n\
         # Checked by tests/fault_matrix.rs (host-test/src/fault_matrix.rs).\n",
    );
    for c in cells {
        out.push_str(&format!("{}\t{}\t{}\n", c.action, c.fault, c.outcome));
    }
    out
}

/// Cells whose outcome differs from `expected`, and table rows no cell ran.
pub fn mismatches(cells: &[Cell], expected: &Table) -> Vec<String> {
    let mut out = Vec::new();
    for c in cells {
        match expected.get(&(c.action.clone(), c.fault.clone())) {
            Some(want) if *want == c.outcome => {}
            want => out.push(format!(
                "{} / {}: expected {}, observed {}",
                c.action,
                c.fault,
                want.map_or("(no row)", String::as_str),
                c.outcome
            )),
        }
    }
    let ran: HashSet<(String, String)> = cells
        .iter()
        .map(|c| (c.action.clone(), c.fault.clone()))
        .collect();
    for key in expected.keys().filter(|k| !ran.contains(*k)) {
        out.push(format!("{} / {}: in the table, not run", key.0, key.1));
    }
    out
}

/// Every broken invariant, as `action / fault: what`.
pub fn violations(cells: &[Cell]) -> Vec<String> {
    cells
        .iter()
        .flat_map(|c| {
            c.violations
                .iter()
                .map(move |v| format!("{} / {}: {v}", c.action, c.fault))
        })
        .collect()
}

/// The matrix as an aligned table: one row per action, one column per
/// fault; a cell shows the observed outcome, and `expected → observed`
/// (marked `!`) where it differs from the table, `✗` where an invariant
/// broke. Short forms: `ok`, `retry-ok`, `E:<kind>`.
pub fn render(cells: &[Cell], expected: &Table) -> String {
    let short = |o: &str| o.replace("retried-ok", "retry-ok").replace("error:", "E:");
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["action \\ fault".to_string()];
    header.extend(FAULTS.iter().map(|f| f.to_string()));
    rows.push(header);
    for action in ACTIONS {
        let mut row = vec![action.to_string()];
        for fault in FAULTS {
            let text = match cells
                .iter()
                .find(|c| c.action == *action && c.fault == *fault)
            {
                None => "-".to_string(),
                Some(c) => {
                    let mut t = match expected.get(&(c.action.clone(), c.fault.clone())) {
                        Some(want) if *want == c.outcome => short(&c.outcome),
                        Some(want) => format!("!{}→{}", short(want), short(&c.outcome)),
                        None => format!("!?→{}", short(&c.outcome)),
                    };
                    if !c.violations.is_empty() {
                        t.push_str(" ✗");
                    }
                    t
                }
            };
            row.push(text);
        }
        rows.push(row);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let count = |p: &dyn Fn(&Cell) -> bool| cells.iter().filter(|c| p(c)).count();
    out.push_str(&format!(
        "\n{} cells: {} ok, {} retried-ok, {} typed errors; {} differ from the table, {} break an invariant\n",
        cells.len(),
        count(&|c| c.outcome == "ok"),
        count(&|c| c.outcome == "retried-ok"),
        count(&|c| c.outcome.starts_with("error:")),
        mismatches(cells, expected).len(),
        count(&|c| !c.violations.is_empty()),
    ));
    out
}
