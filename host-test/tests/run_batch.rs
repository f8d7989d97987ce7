//! `runBatch` through the real component against the emulator's `$batch`:
//! size, change-set atomicity, continue-on-error, `$n` references, the
//! 1,000-item limit, mixed operations and bulk (CreateMultiple …).

mod common;

use common::{Env, is_guid};
use host_test::emulator::store::seed;
use serde_json::{Value, json};

fn batch_requests(env: &Env) -> Vec<host_test::emulator::LoggedRequest> {
    env.emulator
        .log()
        .into_iter()
        .filter(|r| r.path().starts_with("/api/data/"))
        .collect()
}

fn count(env: &Env, entity: &str) -> usize {
    env.emulator.state().store.count(entity)
}

fn accounts_named(env: &Env, prefix: &str) -> Vec<String> {
    env.emulator
        .state()
        .store
        .records("account")
        .filter_map(|r| r.get("name").as_str().map(str::to_string))
        .filter(|n| n.starts_with(prefix))
        .collect()
}

async fn run(env: &mut Env, inputs: Value) -> Value {
    env.ok("runBatch", &inputs.to_string()).await
}

#[tokio::test]
async fn a_thousand_creates_in_one_batch_give_a_thousand_records_and_results_in_order() {
    let mut env = Env::new();
    let before = count(&env, "account");
    let items: Vec<Value> = (0..1000)
        .map(|i| json!({"collection": "accounts", "action": "create", "data": {"name": format!("Bulk {i:04}")}}))
        .collect();
    let out = run(&mut env, json!({"batchActions": items})).await;
    let results = out["results"].as_array().expect("results");
    assert_eq!(results.len(), 1000);
    assert_eq!(out["succeeded"], 1000);
    assert_eq!(out["failed"], 0);
    let mut ids = std::collections::HashSet::new();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i);
        assert_eq!(r["success"], true, "{r}");
        assert_eq!(r["status"], 204);
        assert!(is_guid(&r["id"]), "{r}");
        // Each result's id is the record created from that item.
        let state = env.emulator.state();
        let rec = state
            .store
            .get("account", r["id"].as_str().unwrap())
            .expect("record exists");
        assert_eq!(rec.get("name"), &json!(format!("Bulk {i:04}")));
        drop(state);
        assert!(
            ids.insert(r["id"].as_str().unwrap().to_string()),
            "no duplicate ids"
        );
    }
    assert_eq!(count(&env, "account"), before + 1000);
    let posts: Vec<_> = batch_requests(&env);
    assert_eq!(posts.len(), 1, "one $batch request");
    assert!(posts[0].path().ends_with("/$batch"));
}

#[tokio::test]
async fn a_failing_item_rolls_back_the_whole_change_set_and_says_which_and_why() {
    let mut env = Env::new();
    let before = count(&env, "account");
    let mut items: Vec<Value> = (0..5)
        .map(|i| json!({"collection": "accounts", "action": "create", "data": {"name": format!("Atomic {i}")}}))
        .collect();
    items[2] = json!({"collection": "accounts", "action": "create", "data": {"name": "Atomic 2", "nosuchcolumn": 1}});
    let out = run(&mut env, json!({"batchActions": items, "atomic": true})).await;
    assert_eq!(count(&env, "account"), before, "none of the 5 exist");
    assert!(accounts_named(&env, "Atomic").is_empty());
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(out["succeeded"], 0);
    let failed = &results[2];
    assert_eq!(failed["success"], false);
    assert_eq!(failed["status"], 400);
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("nosuchcolumn"), "{failed}");
    assert!(
        failed.get("notRun").is_none(),
        "the failing item has its own answer"
    );
    for i in [0, 1, 3, 4] {
        let r = &results[i];
        assert_eq!(r["success"], false, "{r}");
        assert_eq!(r["status"], Value::Null);
        assert_eq!(r["notRun"], true);
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("rolled back: batchActions[2] failed"),
            "{r}"
        );
    }
}

#[tokio::test]
async fn continue_on_error_keeps_the_good_items_and_reports_the_bad_ones() {
    let mut env = Env::new();
    let missing = "0badbad0-0000-4000-8000-000000000000";
    let items = json!([
        {"collection": "accounts", "action": "create", "data": {"name": "Keep 1"}},
        {"collection": "accounts", "action": "update", "key": missing, "data": {"name": "x"}},
        {"collection": "accounts", "action": "create", "data": {"name": "Keep 2"}},
        {"collection": "accounts", "action": "create", "data": {"name": "Bad", "nosuchcolumn": 1}},
        {"collection": "accounts", "action": "create", "data": {"name": "Keep 3"}}
    ]);
    let out = run(
        &mut env,
        json!({"batchActions": items, "continueOnError": true}),
    )
    .await;
    let mut names = accounts_named(&env, "Keep");
    names.sort();
    assert_eq!(names, ["Keep 1", "Keep 2", "Keep 3"]);
    assert!(accounts_named(&env, "Bad").is_empty());
    let r = out["results"].as_array().unwrap();
    assert_eq!(out["succeeded"], 3);
    assert_eq!(out["failed"], 2);
    for i in [0, 2, 4] {
        assert_eq!(r[i]["success"], true);
    }
    assert_eq!(r[1]["status"], 404);
    assert_eq!(r[1]["error"]["code"], "0x80040217");
    assert_eq!(r[3]["status"], 400);
    let req = &batch_requests(&env)[0];
    assert_eq!(req.header("Prefer"), Some("odata.continue-on-error"));
}

#[tokio::test]
async fn without_continue_on_error_later_items_are_reported_not_run() {
    let mut env = Env::new();
    let items = json!([
        {"collection": "accounts", "action": "create", "data": {"name": "Stop 1"}},
        {"collection": "accounts", "action": "create", "data": {"name": "Stop 2", "nosuchcolumn": 1}},
        {"collection": "accounts", "action": "create", "data": {"name": "Stop 3"}}
    ]);
    let out = run(&mut env, json!({"batchActions": items})).await;
    assert_eq!(accounts_named(&env, "Stop"), ["Stop 1"]);
    let r = out["results"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    // Dataverse answers only the failing part; the first item did run.
    assert_eq!(r[0]["success"], true, "{}", r[0]);
    assert_eq!(r[0]["status"], Value::Null);
    assert_eq!(r[0]["answered"], false);
    assert!(r[0].get("notRun").is_none());
    assert_eq!(r[1]["status"], 400);
    assert_eq!(r[2]["notRun"], true);
    assert!(
        r[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("continueOnError"),
        "{}",
        r[2]
    );
}

#[tokio::test]
async fn an_atomic_batch_reports_gets_by_when_they_were_sent() {
    let mut env = Env::new();
    let a1 = seed::account_id(1);
    // The change set goes where its first write is (item 0), so the get
    // (item 1) is sent after it and never runs when the change set fails.
    let out = run(
        &mut env,
        json!({"batchActions": [
            {"collection": "accounts", "action": "create", "data": {"name": "Order 1"}},
            {"collection": "accounts", "action": "get", "key": a1},
            {"collection": "accounts", "action": "create", "data": {"name": "Order 2", "nosuchcolumn": 1}}
        ], "atomic": true}),
    )
    .await;
    let r = out["results"].as_array().unwrap();
    assert_eq!(r[0]["notRun"], true);
    assert!(
        r[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rolled back")
    );
    assert_eq!(r[1]["notRun"], true, "{}", r[1]);
    assert_eq!(r[1]["success"], false);
    assert_eq!(r[2]["status"], 400);
    assert!(accounts_named(&env, "Order").is_empty());
    // A get before the change set ran, but its answer is not returned.
    let out = run(
        &mut env,
        json!({"batchActions": [
            {"collection": "accounts", "action": "get", "key": a1},
            {"collection": "accounts", "action": "create", "data": {"name": "Order 3", "nosuchcolumn": 1}}
        ], "atomic": true}),
    )
    .await;
    let r = out["results"].as_array().unwrap();
    assert_eq!(r[0]["success"], true, "{}", r[0]);
    assert_eq!(r[0]["answered"], false);
    assert_eq!(r[1]["status"], 400);
}

#[tokio::test]
async fn a_content_id_reference_binds_a_contact_to_the_account_created_before_it() {
    let mut env = Env::new();
    let items = json!([
        {"collection": "accounts", "action": "create", "data": {"name": "Parent Co"}},
        {"collection": "contacts", "action": "create", "data": {"lastname": "Child", "parentcustomerid_account@odata.bind": "$1"}, "returnRepresentation": true}
    ]);
    let out = run(&mut env, json!({"batchActions": items, "atomic": true})).await;
    let r = out["results"].as_array().unwrap();
    assert_eq!(out["succeeded"], 2, "{out}");
    let account_id = r[0]["id"].as_str().unwrap();
    assert_eq!(r[1]["status"], 201);
    assert_eq!(r[1]["record"]["_parentcustomerid_value"], account_id);
    let contact_id = r[1]["id"].as_str().unwrap();
    let got = env
        .ok(
            "getEntity",
            &json!({"entityType": "contacts", "entityId": contact_id, "fieldNames": ["_parentcustomerid_value"]}).to_string(),
        )
        .await;
    assert_eq!(got["_parentcustomerid_value"], account_id, "{got}");
}

/// Item bodies go out as the workflow wrote them: a decimal keeps digits an
/// f64 would round away, and a `$n` written as `\u0024` is still resolved.
#[tokio::test]
async fn item_data_is_sent_as_written_and_escaped_references_resolve() {
    let mut env = Env::new();
    let inputs = r#"{"atomic": true, "batchActions": [
        {"collection": "accounts", "action": "create",
         "data": {"name": "Exact Co", "revenue": 1234567.1000000000000000055}},
        {"collection": "contacts", "action": "create",
         "data": {"lastname": "Escaped", "parentcustomerid_account@odata.bind": "\u00241"}}
    ]}"#;
    let out = env.ok("runBatch", inputs).await;
    assert_eq!(out["succeeded"], 2, "{out}");
    let batch = batch_requests(&env)
        .into_iter()
        .find(|r| r.path().ends_with("/$batch"))
        .expect("a $batch request");
    let body = String::from_utf8_lossy(&batch.body);
    assert!(
        body.contains(r#"{"name": "Exact Co", "revenue": 1234567.1000000000000000055}"#),
        "the first body, byte for byte: {body}"
    );
    let account_id = out["results"][0]["id"].as_str().expect("an id");
    let contact_id = out["results"][1]["id"].as_str().expect("an id");
    let got = env
        .ok(
            "getEntity",
            &json!({"entityType": "contacts", "entityId": contact_id, "fieldNames": ["_parentcustomerid_value"]}).to_string(),
        )
        .await;
    assert_eq!(
        got["_parentcustomerid_value"], account_id,
        "the escaped $1 bound the contact to the account: {got}"
    );
}

/// A body with a property written twice reaches the server as written, and
/// Dataverse's OData reader refuses it: that item fails, the others run.
#[tokio::test]
async fn a_duplicate_property_fails_its_item_as_dataverse_does() {
    let mut env = Env::new();
    let inputs = r#"{"continueOnError": true, "batchActions": [
        {"collection": "accounts", "action": "create", "data": {"name": "Twice A", "name": "Twice B"}},
        {"collection": "accounts", "action": "create", "data": {"name": "Once"}}
    ]}"#;
    let out = env.ok("runBatch", inputs).await;
    let r = out["results"].as_array().expect("results");
    assert_eq!(
        (out["succeeded"].as_u64(), out["failed"].as_u64()),
        (Some(1), Some(1)),
        "{out}"
    );
    assert_eq!(r[0]["status"], 400, "{out}");
    assert_eq!(r[0]["error"]["code"], "0x80048d19", "{out}");
    let message = r[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Multiple properties with the name 'name'"),
        "{message}"
    );
    assert_eq!(r[1]["success"], true);
    assert!(
        accounts_named(&env, "Twice").is_empty(),
        "nothing was written"
    );
    assert_eq!(accounts_named(&env, "Once").len(), 1);
}

#[tokio::test]
async fn more_than_a_thousand_items_is_invalid_input_and_nothing_is_sent() {
    let mut env = Env::new();
    let items: Vec<Value> = (0..1001)
        .map(|i| json!({"collection": "accounts", "action": "create", "data": {"name": format!("Too many {i}")}}))
        .collect();
    let e = env
        .err("runBatch", &json!({"batchActions": items}).to_string())
        .await;
    assert_eq!(e["kind"], "invalid-input", "{e}");
    assert_eq!(e["input"], "batchActions");
    assert!(e["message"].as_str().unwrap().contains("1001"), "{e}");
    assert!(
        env.emulator.log().is_empty(),
        "no request, not even a token"
    );
}

#[tokio::test]
async fn an_invalid_item_names_its_index_and_field_before_anything_is_sent() {
    let mut env = Env::new();
    let e = env
        .err(
            "runBatch",
            &json!({"batchActions": [
                {"collection": "accounts", "action": "get"},
                {"collection": "accounts", "action": "update", "data": {"name": "x"}}
            ]})
            .to_string(),
        )
        .await;
    assert_eq!(e["kind"], "invalid-input");
    assert_eq!(e["input"], "batchActions[1].key");
    assert!(env.emulator.log().is_empty());
}

#[tokio::test]
async fn mixed_get_create_update_delete_in_one_batch() {
    let mut env = Env::new();
    let a1 = seed::account_id(1);
    let a2 = seed::account_id(2);
    let items = json!([
        {"collection": "accounts", "action": "get", "key": a1, "query": "$select=name"},
        {"collection": "accounts", "action": "create", "data": {"name": "Mixed New"}, "returnRepresentation": true},
        {"collection": "accounts", "action": "update", "key": a1, "data": {"name": "Mixed Renamed"}},
        {"collection": "accounts", "action": "delete", "key": a2},
        {"collection": "accounts", "action": "get", "query": "$select=name&$filter=startswith(name,'Mixed')&$orderby=name"}
    ]);
    let out = run(&mut env, json!({"batchActions": items})).await;
    let r = out["results"].as_array().unwrap();
    assert_eq!(out["succeeded"], 5, "{out}");
    assert_eq!(r[0]["status"], 200);
    assert!(r[0]["record"]["name"].is_string());
    assert_eq!(
        r[0]["record"]["name"]
            .as_str()
            .map(|n| n.starts_with("Mixed")),
        Some(false)
    );
    assert_eq!(r[1]["status"], 201);
    assert_eq!(r[1]["record"]["name"], "Mixed New");
    assert_eq!(r[2]["status"], 204);
    assert_eq!(r[3]["status"], 204);
    let names: Vec<&str> = r[4]["record"]["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Mixed New", "Mixed Renamed"],
        "the get sees the earlier writes"
    );
    assert!(env.emulator.state().store.get("account", &a2).is_none());
    // Atomic: the same shape runs the writes in one change set, gets outside.
    let out = run(
        &mut env,
        json!({"batchActions": [
            {"collection": "accounts", "action": "create", "data": {"name": "Mixed Atomic"}},
            {"collection": "accounts", "action": "get", "key": a1, "query": "$select=name"},
            {"collection": "accounts", "action": "update", "key": "$1", "data": {"name": "Mixed Atomic 2"}}
        ], "atomic": true}),
    )
    .await;
    assert_eq!(out["succeeded"], 3, "{out}");
    assert_eq!(out["results"][1]["record"]["name"], "Mixed Renamed");
    assert_eq!(accounts_named(&env, "Mixed Atomic"), ["Mixed Atomic 2"]);
}

#[tokio::test]
async fn bulk_sends_create_update_and_upsert_multiple_with_per_item_results() {
    let mut env = Env::new();
    let before = count(&env, "account");
    let items: Vec<Value> = (0..5)
        .map(|i| json!({"collection": "accounts", "action": "create", "data": {"name": format!("Bulky {i}")}}))
        .collect();
    let out = run(&mut env, json!({"batchActions": items, "bulk": true})).await;
    let r = out["results"].as_array().unwrap();
    assert_eq!(r.len(), 5);
    assert_eq!(out["succeeded"], 5, "{out}");
    assert_eq!(count(&env, "account"), before + 5);
    let ids: Vec<String> = r
        .iter()
        .enumerate()
        .map(|(i, x)| {
            assert_eq!(x["bulk"], "CreateMultiple");
            let id = x["id"].as_str().unwrap().to_string();
            let state = env.emulator.state();
            assert_eq!(
                state.store.get("account", &id).unwrap().get("name"),
                &json!(format!("Bulky {i}"))
            );
            id
        })
        .collect();
    let inner = env
        .emulator
        .log()
        .into_iter()
        .find(|r| r.path().ends_with("/$batch"))
        .unwrap();
    let body = String::from_utf8_lossy(&inner.body).to_string();
    assert!(
        body.contains(
            "POST /api/data/v9.2/accounts/Microsoft.Dynamics.CRM.CreateMultiple HTTP/1.1"
        ),
        "{body}"
    );
    assert!(body.contains("\"@odata.type\":\"Microsoft.Dynamics.CRM.account\""));

    let new_id = "b1b1b1b1-0000-4000-8000-000000000001";
    let out = run(
        &mut env,
        json!({"batchActions": [
            {"collection": "accounts", "action": "update", "key": ids[0], "data": {"name": "Bulky U0"}},
            {"collection": "accounts", "action": "update", "key": ids[1], "data": {"name": "Bulky U1"}},
            {"collection": "accounts", "action": "upsert", "key": ids[2], "data": {"name": "Bulky P2"}},
            {"collection": "accounts", "action": "upsert", "key": new_id, "data": {"name": "Bulky P new"}}
        ], "bulk": true, "atomic": true}),
    )
    .await;
    let r = out["results"].as_array().unwrap();
    assert_eq!(out["succeeded"], 4, "{out}");
    assert_eq!(r[0]["bulk"], "UpdateMultiple");
    assert_eq!(r[0]["id"], ids[0].as_str());
    assert_eq!(r[3]["bulk"], "UpsertMultiple");
    assert_eq!(r[3]["id"], new_id);
    let mut names = accounts_named(&env, "Bulky");
    names.sort();
    assert_eq!(
        names,
        [
            "Bulky 3",
            "Bulky 4",
            "Bulky P new",
            "Bulky P2",
            "Bulky U0",
            "Bulky U1"
        ]
    );

    // A failing target fails its whole bulk request: every member carries the error.
    let missing = "0badbad0-0000-4000-8000-000000000000";
    let out = run(
        &mut env,
        json!({"batchActions": [
            {"collection": "accounts", "action": "update", "key": ids[0], "data": {"name": "Bulky never"}},
            {"collection": "accounts", "action": "update", "key": missing, "data": {"name": "x"}}
        ], "bulk": true}),
    )
    .await;
    let r = out["results"].as_array().unwrap();
    assert_eq!(out["failed"], 2);
    for x in r {
        assert_eq!(x["status"], 404, "{x}");
        assert_eq!(x["error"]["code"], "0x80040217");
    }
    assert!(
        accounts_named(&env, "Bulky never").is_empty(),
        "rolled back"
    );

    // Bulk requests and single parts interleaved: each answer lands on its items.
    let out = run(
        &mut env,
        json!({"batchActions": [
            {"collection": "accounts", "action": "create", "data": {"name": "Mix A"}},
            {"collection": "accounts", "action": "create", "data": {"name": "Mix B"}},
            {"collection": "contacts", "action": "update", "key": missing, "data": {"lastname": "x"}},
            {"collection": "accounts", "action": "get", "key": ids[0], "query": "$select=name"},
            {"collection": "accounts", "action": "create", "data": {"name": "Mix C"}},
            {"collection": "accounts", "action": "create", "data": {"name": "Mix D"}}
        ], "bulk": true, "continueOnError": true}),
    )
    .await;
    let r = out["results"].as_array().unwrap();
    assert_eq!(out["succeeded"], 5, "{out}");
    for (i, name) in [(0, "Mix A"), (1, "Mix B"), (4, "Mix C"), (5, "Mix D")] {
        assert_eq!(r[i]["bulk"], "CreateMultiple");
        let id = r[i]["id"].as_str().unwrap();
        assert_eq!(
            env.emulator
                .state()
                .store
                .get("account", id)
                .unwrap()
                .get("name"),
            &json!(name)
        );
    }
    assert_eq!(r[2]["status"], 404);
    assert_eq!(r[2]["error"]["code"], "0x80040217");
    assert_eq!(r[3]["status"], 200);
    assert_eq!(r[3]["record"]["name"], "Bulky U0");
}

// ---- the privacy-request flow ----------------------------------------------

use host_test::emulator::store::seed_sales as privacy;

const DOC_FIELDS: &str =
    "billto_name,billto_line1,billto_city,billto_telephone,shipto_line1,emailaddress";

/// The GETs of an access request: the person as a contact and as a lead,
/// with every linked record expanded. `by` is the filter (by email the
/// first time; by the ids found, once the email itself is masked).
fn access_request(contact_filter: &str, lead_filter: &str) -> Value {
    let contact_query = format!(
        "$select=contactid,fullname,firstname,lastname,emailaddress1,telephone1,address1_city,birthdate&$filter={contact_filter}&$expand=Contact_CustomerAddress($select=name,line1,city,postalcode,telephone1),Contact_Annotation($select=subject,notetext),incident_customer_contacts($select=title,description,emailaddress),quote_customer_contacts($select={DOC_FIELDS}),order_customer_contacts($select={DOC_FIELDS}),invoice_customer_contacts($select={DOC_FIELDS})"
    );
    let lead_query = format!(
        "$select=leadid,fullname,firstname,lastname,emailaddress1,companyname&$filter={lead_filter}&$expand=Lead_Annotation($select=subject,notetext)"
    );
    json!({"batchActions": [
        {"collection": "contacts", "action": "get", "query": contact_query},
        {"collection": "leads", "action": "get", "query": lead_query}
    ]})
}

/// Every record an access request found: (entity set, primary key, record).
fn found(out: &Value) -> Vec<(&'static str, String, Value)> {
    let mut all = Vec::new();
    let results = out["results"].as_array().expect("results");
    assert_eq!(out["succeeded"], 2, "{out}");
    for contact in results[0]["record"]["value"].as_array().unwrap() {
        all.push((
            "contacts",
            contact["contactid"].as_str().unwrap().to_string(),
            contact.clone(),
        ));
        for (nav, set, key) in [
            (
                "Contact_CustomerAddress",
                "customeraddresses",
                "customeraddressid",
            ),
            ("Contact_Annotation", "annotations", "annotationid"),
            ("incident_customer_contacts", "incidents", "incidentid"),
            ("quote_customer_contacts", "quotes", "quoteid"),
            ("order_customer_contacts", "salesorders", "salesorderid"),
            ("invoice_customer_contacts", "invoices", "invoiceid"),
        ] {
            for r in contact[nav]
                .as_array()
                .unwrap_or_else(|| panic!("{nav} expanded: {contact}"))
            {
                all.push((set, r[key].as_str().unwrap().to_string(), r.clone()));
            }
        }
    }
    for lead in results[1]["record"]["value"].as_array().unwrap() {
        all.push((
            "leads",
            lead["leadid"].as_str().unwrap().to_string(),
            lead.clone(),
        ));
        for r in lead["Lead_Annotation"].as_array().unwrap() {
            all.push((
                "annotations",
                r["annotationid"].as_str().unwrap().to_string(),
                r.clone(),
            ));
        }
    }
    all
}

/// The personal columns of each table and how they are masked.
fn personal_fields(set: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match set {
        "contacts" => (
            &[
                "firstname",
                "lastname",
                "emailaddress1",
                "telephone1",
                "address1_city",
            ],
            &["birthdate"],
        ),
        "leads" => (&["firstname", "lastname", "emailaddress1"], &[]),
        "customeraddresses" => (&["line1", "city", "postalcode", "telephone1"], &[]),
        "annotations" => (&["subject", "notetext"], &[]),
        "incidents" => (&["title", "description", "emailaddress"], &[]),
        "quotes" | "invoices" | "salesorders" => (
            &[
                "billto_name",
                "billto_line1",
                "billto_city",
                "billto_telephone",
                "shipto_line1",
                "emailaddress",
            ],
            &[],
        ),
        other => panic!("no personal fields known for {other}"),
    }
}

const PAT_EMAIL: &str = "pat.privacy@example.org";

const PRIVACY_SETS: [&str; 8] = [
    "contacts",
    "leads",
    "customeraddresses",
    "annotations",
    "incidents",
    "quotes",
    "salesorders",
    "invoices",
];

/// Pat Privacy as a contact and a lead, with an address, notes, a case, a
/// quote, a sales order and an invoice: one atomic batch whose later items
/// bind to the contact and lead by `$1` / `$2`. Returns (entity set, id) of
/// each record, in item order.
async fn create_pat(env: &mut Env) -> Vec<(&'static str, String)> {
    let doc = |name: &str| {
        json!({
            "name": name, "totalamount": 99.0, "billto_name": "Pat Privacy",
            "billto_line1": "1 Privacy Row", "billto_city": "London",
            "billto_telephone": "+44 20 7946 0001", "shipto_line1": "1 Privacy Row",
            "emailaddress": PAT_EMAIL, "customerid_contact@odata.bind": "$1",
        })
    };
    let items = json!([
        {"collection": "contacts", "action": "create", "data": {
            "firstname": "Pat", "lastname": "Privacy", "emailaddress1": PAT_EMAIL,
            "telephone1": "+44 20 7946 0001", "address1_city": "London",
            "birthdate": "1984-03-09T00:00:00Z", "jobtitle": "Buyer"}},
        {"collection": "leads", "action": "create", "data": {
            "subject": "Pricing enquiry", "firstname": "Pat", "lastname": "Privacy",
            "emailaddress1": PAT_EMAIL, "companyname": "Privacy Ltd"}},
        {"collection": "customeraddresses", "action": "create", "data": {
            "name": "Home", "line1": "1 Privacy Row", "city": "London", "postalcode": "N1 1AA",
            "telephone1": "+44 20 7946 0002", "parentid_contact@odata.bind": "$1"}},
        {"collection": "annotations", "action": "create", "data": {
            "subject": "Call with Pat", "notetext": "Prefers calls after 5pm.",
            "objectid_contact@odata.bind": "$1"}},
        {"collection": "annotations", "action": "create", "data": {
            "subject": "Lead note", "notetext": "Met Pat at the fair.",
            "objectid_lead@odata.bind": "$2"}},
        {"collection": "incidents", "action": "create", "data": {
            "title": "Delivery to Pat Privacy late", "description": "Parcel for 1 Privacy Row.",
            "emailaddress": PAT_EMAIL, "customerid_contact@odata.bind": "$1"}},
        {"collection": "quotes", "action": "create", "data": doc("QUO-PAT")},
        {"collection": "salesorders", "action": "create", "data": doc("ORD-PAT")},
        {"collection": "invoices", "action": "create", "data": doc("INV-PAT")}
    ]);
    let out = run(env, json!({"batchActions": items, "atomic": true})).await;
    assert_eq!(out["succeeded"], 9, "{out}");
    out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r["collection"].as_str().unwrap();
            let set = *PRIVACY_SETS
                .iter()
                .find(|s| **s == name)
                .expect("a known set");
            (set, r["id"].as_str().expect("created id").to_string())
        })
        .collect()
}

#[tokio::test]
async fn privacy_request_finds_a_person_everywhere_and_masks_them_in_one_change_set() {
    let mut env = Env::new();
    let pat = create_pat(&mut env).await;
    let contact_id = pat[0].1.clone();
    let lead_id = pat[1].1.clone();
    env.emulator.clear_log();
    let email_filter = format!("emailaddress1 eq '{PAT_EMAIL}'");

    // 1. Access request: one $batch of GETs.
    let access = run(&mut env, access_request(&email_filter, &email_filter)).await;
    let records = found(&access);
    let mut kinds: Vec<(&str, &str)> = records.iter().map(|(s, id, _)| (*s, id.as_str())).collect();
    kinds.sort();
    let mut expected: Vec<(&str, &str)> = pat.iter().map(|(s, id)| (*s, id.as_str())).collect();
    expected.sort();
    assert_eq!(
        kinds, expected,
        "exactly the person's records, nobody else's"
    );
    let contact = &records.iter().find(|(s, _, _)| *s == "contacts").unwrap().2;
    assert_eq!(contact["birthdate"], "1984-03-09T00:00:00Z");
    assert_eq!(contact["telephone1"], "+44 20 7946 0001");
    let log_before = env.emulator.log().len();
    assert_eq!(
        env.emulator
            .log()
            .iter()
            .filter(|r| r.path().ends_with("/$batch"))
            .count(),
        1,
        "the access request was one $batch"
    );

    // 2. Erasure: one atomic change set masking every record except sales orders.
    let mut items = Vec::new();
    for (set, id, _) in &records {
        if *set == "salesorders" {
            continue;
        }
        let (strings, typed) = personal_fields(set);
        let mut data = serde_json::Map::new();
        for f in strings {
            data.insert((*f).into(), json!("MASKED"));
        }
        for f in typed {
            data.insert((*f).into(), Value::Null);
        }
        items.push(json!({"collection": set, "action": "update", "key": id, "data": data}));
    }
    assert_eq!(items.len(), 8);
    let masked = run(&mut env, json!({"batchActions": items, "atomic": true})).await;
    assert_eq!(masked["succeeded"], 8, "{masked}");
    let batch_posts: Vec<_> = env.emulator.log()[log_before..]
        .iter()
        .filter(|r| r.path().ends_with("/$batch"))
        .cloned()
        .collect();
    assert_eq!(batch_posts.len(), 1, "the erasure was one $batch");
    let body = String::from_utf8_lossy(&batch_posts[0].body);
    assert_eq!(
        body.matches("boundary=changeset_").count(),
        1,
        "one change set"
    );

    // 3. A second access request (by id: the email itself is masked now).
    let by_contact = format!("contactid eq {contact_id}");
    let by_lead = format!("leadid eq {lead_id}");
    let again = found(&run(&mut env, access_request(&by_contact, &by_lead)).await);
    assert_eq!(again.len(), 9, "the same records are found");
    for (set, id, record) in &again {
        let (strings, typed) = personal_fields(set);
        for f in strings {
            if *set == "salesorders" {
                assert_ne!(record[*f], "MASKED", "sales order {id} untouched: {record}");
            } else {
                assert_eq!(record[*f], "MASKED", "{set}({id}).{f}: {record}");
            }
        }
        for f in typed {
            assert_eq!(record[*f], Value::Null, "{set}({id}).{f} cleared");
        }
    }
    let order = &again
        .iter()
        .find(|(s, _, _)| *s == "salesorders")
        .unwrap()
        .2;
    assert_eq!(order["billto_line1"], "1 Privacy Row");
    assert_eq!(order["emailaddress"], PAT_EMAIL);
    let contact = &again.iter().find(|(s, _, _)| *s == "contacts").unwrap().2;
    assert_eq!(
        contact["fullname"], "MASKED MASKED",
        "the computed full name follows"
    );
    // Nobody else was touched (seeded contact 1's records).
    let state = env.emulator.state();
    let other = state.store.get("incident", privacy::OTHER_CASE).unwrap();
    assert_eq!(other.get("title"), &json!("Someone else's case"));
    let note = state
        .store
        .get("annotation", privacy::OTHER_NOTE_LEAD)
        .unwrap();
    assert_eq!(note.get("notetext"), &json!("Met at the fair."));
}
