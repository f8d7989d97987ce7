//! The record actions through the real component against the emulator:
//! every input of createEntity, getEntity, updateEntity, upsertEntity,
//! deleteEntity and queryEntities; paging; keys; lookups. The emulator's
//! record endpoints on the wire are checked in `records_emulator.rs`, the
//! CLI in `cli.rs`.

mod common;

use common::{Env, is_guid, request_header, web_api_requests};
use host_test::emulator::store::seed;
use host_test::emulator::{Config, Faults, Trigger};
use serde_json::{Value, json};
use std::collections::HashSet;

fn ids(records: &Value, key: &str) -> Vec<String> {
    records
        .as_array()
        .expect("an array of records")
        .iter()
        .map(|r| r[key].as_str().expect("id").to_string())
        .collect()
}

// ---- create / get / update / delete ---------------------------------------

#[tokio::test]
async fn create_merges_dynamic_values_and_returns_the_record() {
    let mut env = Env::new();
    let out = env
        .ok(
            "createEntity",
            r#"{"entityType":"accounts",
                "fieldValues":{"name":"Created Co","revenue":5000,"numberofemployees":3},
                "dynamicValues":[{"key":"name","value":"Dynamic Co"},{"key":"creditonhold","value":true}]}"#,
        )
        .await;
    assert!(is_guid(&out["id"]), "{out}");
    let record = &out["record"];
    assert_eq!(
        record["name"], "Dynamic Co",
        "dynamicValues win over fieldValues"
    );
    assert_eq!(record["revenue"], 5000.0);
    assert_eq!(record["creditonhold"], true);
    assert_eq!(record["accountid"], out["id"]);
    let post = web_api_requests(&env)
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("a POST");
    assert_eq!(post.path(), "/api/data/v9.2/accounts");
    assert_eq!(
        request_header(&post, "Prefer"),
        Some("return=representation")
    );

    let got = env
        .ok(
            "getEntity",
            &json!({"entityType":"accounts","entityId":out["id"],"fieldNames":["name","revenue"]})
                .to_string(),
        )
        .await;
    assert_eq!(got["name"], "Dynamic Co");
    assert_eq!(
        got["accountid"], out["id"],
        "the primary key always comes back"
    );
    assert!(
        got.get("numberofemployees").is_none(),
        "only selected columns: {got}"
    );
}

#[tokio::test]
async fn get_by_guid_tolerates_braces_and_case() {
    let mut env = Env::new();
    let id = seed::account_id(1);
    let braced = format!("{{{}}}", id.to_uppercase());
    let got = env
        .ok(
            "getEntity",
            &json!({"entityType":"accounts","entityId":braced,"fieldNames":"name"}).to_string(),
        )
        .await;
    assert_eq!(got["accountid"], id);
    assert_eq!(got["name"], "Contoso");
    let get = web_api_requests(&env).pop().unwrap();
    assert!(
        get.target.contains(&format!("accounts({id})")),
        "{}",
        get.target
    );
}

#[tokio::test]
async fn get_by_alternate_key() {
    let mut env = Env::new();
    let got = env
        .ok(
            "getEntity",
            r#"{"entityType":"accounts","entityId":"accountnumber='A-2'","fieldNames":["name","accountnumber"]}"#,
        )
        .await;
    assert_eq!(got["accountid"], seed::account_id(2));
    assert_eq!(got["accountnumber"], "A-2");
}

#[tokio::test]
async fn obrien_is_found_through_an_escaped_alternate_key() {
    let mut env = Env::new();
    for given in [
        "firstname='Siobhan',lastname='O''Brien'",
        "firstname='Siobhan',lastname='O'Brien'",
    ] {
        let got = env
            .ok(
                "getEntity",
                &json!({"entityType":"contacts","entityId":given,"fieldNames":["fullname"]})
                    .to_string(),
            )
            .await;
        assert_eq!(got["contactid"], seed::CONTACT_OBRIEN, "{given}");
        assert_eq!(got["fullname"], "Siobhan O'Brien");
    }
    let get = web_api_requests(&env).pop().unwrap();
    assert!(
        get.target
            .starts_with("/api/data/v9.2/contacts(firstname='Siobhan',lastname='O''Brien')"),
        "quote doubled once, nothing else changed: {}",
        get.target
    );
    // And as a filter value, written by the user with the quote doubled.
    let q = env
        .ok(
            "queryEntities",
            r#"{"entityType":"contacts","fieldNames":["fullname"],"filter":"lastname eq 'O''Brien'"}"#,
        )
        .await;
    assert_eq!(q["count"], 1);
    assert_eq!(q["value"][0]["fullname"], "Siobhan O'Brien");
}

#[tokio::test]
async fn get_with_expand_and_formatted_values() {
    let mut env = Env::new();
    let got = env
        .ok(
            "getEntity",
            &json!({
                "entityType": "accounts",
                "entityId": seed::account_id(3),
                "fieldNames": ["name", "revenue", "accountcategorycode", "_primarycontactid_value"],
                "expand": "primarycontactid($select=fullname),contact_customer_accounts($select=fullname)",
                "includeAnnotations": "OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname"
            })
            .to_string(),
        )
        .await;
    assert_eq!(
        got["revenue@OData.Community.Display.V1.FormattedValue"],
        "$375,000.00"
    );
    assert_eq!(
        got["accountcategorycode@OData.Community.Display.V1.FormattedValue"],
        "Preferred Customer"
    );
    assert_eq!(got["_primarycontactid_value"], seed::contact_id(3));
    assert_eq!(
        got["_primarycontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname"],
        "contact"
    );
    assert_eq!(
        got["_primarycontactid_value@OData.Community.Display.V1.FormattedValue"],
        got["primarycontactid"]["fullname"]
    );
    assert_eq!(got["primarycontactid"]["contactid"], seed::contact_id(3));
    let children = got["contact_customer_accounts"].as_array().unwrap();
    assert!(!children.is_empty());
    assert!(children.iter().all(|c| c["fullname"].is_string()));
    let get = web_api_requests(&env).pop().unwrap();
    assert!(
        request_header(&get, "Prefer").unwrap().contains("odata.include-annotations=\"OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname\""),
        "{:?}",
        get.headers
    );
}

#[tokio::test]
async fn update_sends_if_match_and_never_creates() {
    let mut env = Env::new();
    let id = seed::account_id(4);
    let out = env
        .ok(
            "updateEntity",
            &json!({"entityType":"accounts","entityId":id,"fieldValues":{"name":"Renamed"},
                    "dynamicValues":[{"key":"telephone1","value":"+1 555 9999"}]})
            .to_string(),
        )
        .await;
    assert_eq!(out["id"], id);
    assert_eq!(out["record"]["name"], "Renamed");
    assert_eq!(out["record"]["telephone1"], "+1 555 9999");
    let patch = web_api_requests(&env).pop().unwrap();
    assert_eq!(patch.method, "PATCH");
    assert_eq!(request_header(&patch, "If-Match"), Some("*"));

    // By alternate key: the key column in the URL is not overwritten.
    let out = env
        .ok(
            "updateEntity",
            r#"{"entityType":"accounts","entityId":"accountnumber='A-9'","fieldValues":{"name":"Keyed rename","accountnumber":"ignored"}}"#,
        )
        .await;
    assert_eq!(out["id"], seed::account_id(9));
    assert_eq!(out["record"]["name"], "Keyed rename");
    assert_eq!(out["record"]["accountnumber"], "A-9");

    let missing = "00000000-0000-4000-8000-0000000000ff";
    let e = env
        .err(
            "updateEntity",
            &json!({"entityType":"accounts","entityId":missing,"fieldValues":{"name":"x"}})
                .to_string(),
        )
        .await;
    assert_eq!(e["kind"], "not-found", "{e}");
    assert_eq!(e["code"], "0x80040217");
    assert_eq!(e["status"], 404);
    let still = env
        .err(
            "getEntity",
            &json!({"entityType":"accounts","entityId":missing}).to_string(),
        )
        .await;
    assert_eq!(still["kind"], "not-found", "update did not create: {still}");
}

#[tokio::test]
async fn upsert_creates_then_updates() {
    let mut env = Env::new();
    let id = "12345678-aaaa-4bbb-8ccc-1234567890ab";
    let first = env
        .ok(
            "upsertEntity",
            &json!({"entityType":"accounts","entityId":id,"fieldValues":{"name":"Upserted","accountnumber":"U-1"}})
                .to_string(),
        )
        .await;
    assert_eq!(first["created"], true, "{first}");
    assert_eq!(first["id"], id);
    let patch = web_api_requests(&env).pop().unwrap();
    assert_eq!(
        request_header(&patch, "If-Match"),
        None,
        "upsert must not send If-Match"
    );
    let second = env
        .ok(
            "upsertEntity",
            &json!({"entityType":"accounts","entityId":id,"fieldValues":{"name":"Upserted again"},
                    "dynamicValues":[{"key":"numberofemployees","value":12}]})
            .to_string(),
        )
        .await;
    assert_eq!(second["created"], false);
    assert_eq!(second["record"]["name"], "Upserted again");
    assert_eq!(second["record"]["numberofemployees"], 12);
    assert_eq!(second["record"]["accountnumber"], "U-1");

    // By alternate key: the key value is copied into the new row.
    let by_key = env
        .ok(
            "upsertEntity",
            r#"{"entityType":"accounts","entityId":"accountnumber='NEW-7'","fieldValues":{"name":"Keyed"}}"#,
        )
        .await;
    assert_eq!(by_key["created"], true);
    assert!(is_guid(&by_key["id"]), "{by_key}");
    let got = env
        .ok(
            "getEntity",
            r#"{"entityType":"accounts","entityId":"accountnumber='NEW-7'","fieldNames":"name"}"#,
        )
        .await;
    assert_eq!(got["name"], "Keyed");
    assert_eq!(got["accountid"], by_key["id"]);
}

#[tokio::test]
async fn delete_then_get_is_not_found() {
    let mut env = Env::new();
    let id = seed::account_id(5);
    let out = env
        .ok(
            "deleteEntity",
            &json!({"entityType":"accounts","entityId":id}).to_string(),
        )
        .await;
    assert_eq!(out["deleted"], true);
    let e = env
        .err(
            "getEntity",
            &json!({"entityType":"accounts","entityId":id}).to_string(),
        )
        .await;
    assert_eq!(e["kind"], "not-found");
    assert_eq!(e["code"], "0x80040217");
    assert!(e["message"].as_str().unwrap().contains("Does Not Exist"));
    let again = env
        .err(
            "deleteEntity",
            &json!({"entityType":"accounts","entityId":id}).to_string(),
        )
        .await;
    assert_eq!(again["kind"], "not-found");
    // By alternate key too.
    env.ok(
        "deleteEntity",
        r#"{"entityType":"accounts","entityId":"accountnumber='A-6'"}"#,
    )
    .await;
    let gone = env
        .err(
            "getEntity",
            r#"{"entityType":"accounts","entityId":"accountnumber='A-6'"}"#,
        )
        .await;
    assert_eq!(gone["kind"], "not-found");
}

// ---- lookups --------------------------------------------------------------

#[tokio::test]
async fn bind_creates_a_lookup_that_expands() {
    let mut env = Env::new();
    let account = seed::account_id(8);
    let out = env
        .ok(
            "createEntity",
            &json!({"entityType":"contacts","fieldValues":{
                "firstname":"Bound","lastname":"Contact",
                "parentcustomerid_account@odata.bind": format!("/accounts({account})")}})
            .to_string(),
        )
        .await;
    let id = out["id"].as_str().unwrap().to_string();
    assert_eq!(out["record"]["_parentcustomerid_value"], account);
    let got = env
        .ok(
            "getEntity",
            &json!({"entityType":"contacts","entityId":id,"fieldNames":["fullname"],
                    "expand":"parentcustomerid_account($select=name,accountnumber)"})
            .to_string(),
        )
        .await;
    assert_eq!(got["fullname"], "Bound Contact");
    assert_eq!(got["parentcustomerid_account"]["accountid"], account);
    assert_eq!(got["parentcustomerid_account"]["accountnumber"], "A-8");
}

#[tokio::test]
async fn a_plain_guid_for_a_lookup_gets_an_odata_bind_hint() {
    let mut env = Env::new();
    let e = env
        .err(
            "createEntity",
            &json!({"entityType":"accounts","fieldValues":{"name":"x","primarycontactid": seed::contact_id(1)}})
                .to_string(),
        )
        .await;
    assert_eq!(e["status"], 400, "{e}");
    assert_eq!(e["code"], "0x80060888");
    let hint = e["hint"].as_str().unwrap();
    assert!(
        hint.contains("@odata.bind") && hint.contains("'primarycontactid'"),
        "{hint}"
    );
    let e = env
        .err(
            "createEntity",
            &json!({"entityType":"accounts","fieldValues":{"_primarycontactid_value": seed::contact_id(1)}})
                .to_string(),
        )
        .await;
    assert!(e["hint"].as_str().unwrap().contains("@odata.bind"), "{e}");
    // A polymorphic lookup's logical name is not a property at all.
    let e = env
        .err(
            "createEntity",
            &json!({"entityType":"contacts","fieldValues":{"lastname":"x","parentcustomerid": seed::account_id(1)}})
                .to_string(),
        )
        .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("does not exist on type"),
        "{e}"
    );
    let hint = e["hint"].as_str().unwrap();
    assert!(
        hint.contains("@odata.bind") && hint.contains("'parentcustomerid'"),
        "{hint}"
    );
}

#[tokio::test]
async fn bind_keys_keep_their_case_and_a_wrong_name_is_explained() {
    let mut env = Env::new();
    let e = env
        .err(
            "createEntity",
            &json!({"entityType":"contacts","dynamicValues":[{"key":"parentcustomerid@odata.bind","value":format!("/accounts({})", seed::account_id(1))}]})
                .to_string(),
        )
        .await;
    assert_eq!(e["status"], 400);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("undeclared property 'parentcustomerid'"),
        "{e}"
    );
    assert!(
        e["hint"].as_str().unwrap().contains("case-sensitive"),
        "{e}"
    );
    // Case matters: Dataverse's navigation property is parentcustomerid_account.
    let e = env
        .err(
            "createEntity",
            &json!({"entityType":"contacts","fieldValues":{"ParentCustomerId_Account@odata.bind":format!("/accounts({})", seed::account_id(1))}})
                .to_string(),
        )
        .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("'ParentCustomerId_Account'"),
        "sent as given: {e}"
    );
    // A bind to a record that does not exist is a 400.
    let e = env
        .err(
            "createEntity",
            r#"{"entityType":"contacts","fieldValues":{"lastname":"x","parentcustomerid_account@odata.bind":"/accounts(00000000-0000-4000-8000-000000000999)"}}"#,
        )
        .await;
    assert_eq!(e["status"], 400, "{e}");
}

#[tokio::test]
async fn unknown_columns_and_bad_inputs() {
    let mut env = Env::new();
    let e = env
        .err(
            "createEntity",
            r#"{"entityType":"accounts","fieldValues":{"nosuchcolumn":1}}"#,
        )
        .await;
    assert_eq!(e["status"], 400);
    assert_eq!(e["code"], "0x80060888");
    assert!(e["message"].as_str().unwrap().contains("nosuchcolumn"));
    // Each bad input is an invalid-input error naming it.
    for (action, inputs, input) in [
        (
            "getEntity",
            r#"{"entityType":"accounts","entityId":"not a key"}"#,
            "entityId",
        ),
        (
            "getEntity",
            r#"{"entityType":"accounts)?x","entityId":"accountnumber='A-1'"}"#,
            "entityType",
        ),
        (
            "createEntity",
            r#"{"entityType":"accounts","fieldValues":[1,2]}"#,
            "fieldValues",
        ),
        (
            "queryEntities",
            r#"{"entityType":"accounts","orderBy":"name sideways"}"#,
            "orderBy",
        ),
        (
            "queryEntities",
            r#"{"entityType":"accounts","pageSize":5001}"#,
            "pageSize",
        ),
    ] {
        let e = env.err(action, inputs).await;
        assert_eq!(
            (e["kind"].as_str(), e["input"].as_str()),
            (Some("invalid-input"), Some(input)),
            "{action} {inputs}: {e}"
        );
    }
    let e = env
        .err("queryEntities", r#"{"entityType":"nosuchset"}"#)
        .await;
    assert_eq!(e["code"], "0x8006088a", "{e}");
    let e = env
        .err(
            "queryEntities",
            r#"{"entityType":"accounts","filter":"name eq 'x"}"#,
        )
        .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("unterminated literal at position"),
        "{e}"
    );
    assert!(web_api_requests(&env).iter().all(|r| r.status != 500));
}

// ---- queries and paging ---------------------------------------------------

#[tokio::test]
async fn query_selects_filters_orders_and_expands() {
    let mut env = Env::new();
    let out = env
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","fieldNames":["name","revenue","address1_city"],
                "filter":"address1_city eq 'Seattle' and revenue gt 1000000",
                "orderBy":"revenue desc",
                "expand":"primarycontactid($select=fullname)"}"#,
        )
        .await;
    let values = out["value"].as_array().unwrap();
    assert!(!values.is_empty());
    assert_eq!(out["count"], values.len());
    let revenues: Vec<f64> = values
        .iter()
        .map(|v| v["revenue"].as_f64().unwrap())
        .collect();
    assert!(revenues.windows(2).all(|w| w[0] >= w[1]), "{revenues:?}");
    assert!(
        values
            .iter()
            .all(|v| v["address1_city"] == "Seattle" && v["revenue"].as_f64().unwrap() > 1e6)
    );
    assert!(
        values
            .iter()
            .all(|v| v["primarycontactid"]["fullname"].is_string())
    );
    let get = web_api_requests(&env).pop().unwrap();
    assert!(
        get.target.contains("$filter=address1_city%20eq%20"),
        "{}",
        get.target
    );
    assert!(
        !get.target.contains('+'),
        "spaces as %20, never +: {}",
        get.target
    );
    assert!(
        get.target.contains("$orderby=revenue%20desc"),
        "{}",
        get.target
    );

    // The filter is passed through: functions and nulls work end to end.
    let out = env
        .ok(
            "queryEntities",
            r#"{"entityType":"contacts","fieldNames":["fullname"],"filter":"Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=[\"O'Brien\",\"Ruiz\"]) and jobtitle ne null","pageSize":500}"#,
        )
        .await;
    let names: Vec<&str> = out["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["fullname"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Siobhan O'Brien"), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.ends_with("O'Brien") || n.ends_with("Ruiz"))
    );
    // Null columns are included in OData answers.
    let out = env
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","fieldNames":["name","websiteurl"],"top":1}"#,
        )
        .await;
    assert!(
        out["value"][0]
            .as_object()
            .unwrap()
            .contains_key("websiteurl")
    );
    assert!(out["value"][0]["websiteurl"].is_null());
}

#[tokio::test]
async fn paging_over_three_pages_with_next_page_round_trips() {
    let mut env = Env::new();
    let first = env
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","fieldNames":["name"],"pageSize":25}"#,
        )
        .await;
    assert_eq!(first["count"], 25);
    let link1 = first["nextLink"].as_str().expect("a next link").to_string();
    assert!(link1.contains("$skiptoken="), "{link1}");
    let second = env
        .ok(
            "queryEntities",
            &json!({"entityType":"accounts","pageSize":25,"nextPage":link1}).to_string(),
        )
        .await;
    assert_eq!(second["count"], 25);
    // A relative link (as some servers send) resolves against the service root.
    let link2 = second["nextLink"].as_str().unwrap();
    let relative = link2.split("/api/data/v9.2/").nth(1).unwrap();
    let third = env
        .ok(
            "queryEntities",
            &json!({"entityType":"accounts","pageSize":25,"nextPage":relative}).to_string(),
        )
        .await;
    assert_eq!(third["count"], seed::ACCOUNTS - 50);
    assert!(third["nextLink"].is_null(), "last page has no link");
    let mut all = ids(&first["value"], "accountid");
    all.extend(ids(&second["value"], "accountid"));
    all.extend(ids(&third["value"], "accountid"));
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), seed::ACCOUNTS, "no record lost or repeated");
    let requests = web_api_requests(&env);
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(
            request_header(r, "Prefer"),
            Some("odata.maxpagesize=25"),
            "{}",
            r.target
        );
    }
}

/// A fetch-all past the connector's output limit (127 MiB) ends with an
/// error naming fetchAll. Before the limit, the call failed in wasmtime
/// ("too much data is being copied between the host and the guest").
/// Seventeen accounts with 8 MiB descriptions make 136 MiB of records.
#[tokio::test]
async fn a_fetch_all_past_the_output_limit_is_an_error_naming_fetch_all() {
    let mut env = common::env_with_big_accounts(17, 8 << 20);
    let e = env
        .err(
            "queryEntities",
            r#"{"entityType":"accounts","fieldNames":["name","description"],"filter":"startswith(name,'Big ')","fetchAll":true,"pageSize":1}"#,
        )
        .await;
    assert_eq!(e["kind"], "invalid-input", "{e}");
    assert_eq!(e["input"], "fetchAll", "{e}");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("127 MiB output limit after 15 records"),
        "{message}"
    );
    assert!(
        e["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("fieldNames")
    );
    // The same rows read page by page still work.
    let page = env
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","fieldNames":["name","description"],"filter":"startswith(name,'Big ')","pageSize":2}"#,
        )
        .await;
    assert_eq!(page["count"], 2);
    assert!(page["nextLink"].is_string());
}

#[tokio::test]
async fn fetch_all_returns_twelve_thousand_distinct_records_with_annotations_on_every_page() {
    let mut env = Env::with_config(Config {
        generated_records: 12_000,
        ..Default::default()
    });
    let out = env
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","fieldNames":["name","revenue"],"filter":"startswith(name,'Generated Account')",
                "fetchAll":true,"pageSize":1000,"includeAnnotations":"OData.Community.Display.V1.FormattedValue"}"#,
        )
        .await;
    assert_eq!(out["count"], 12_000);
    let all = ids(&out["value"], "accountid");
    assert_eq!(all.len(), 12_000);
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        12_000,
        "distinct ids"
    );
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "in order");
    assert!(out["nextLink"].is_null());
    assert_eq!(out["pages"], 12);
    let values = out["value"].as_array().unwrap();
    assert!(
        values
            .iter()
            .all(|v| v["revenue@OData.Community.Display.V1.FormattedValue"].is_string()),
        "formatted values on every page"
    );
    let requests = web_api_requests(&env);
    assert_eq!(requests.len(), 12);
    for r in &requests {
        let prefer = request_header(r, "Prefer").unwrap();
        assert!(prefer.contains("odata.maxpagesize=1000"), "{prefer}");
        assert!(
            prefer.contains(
                "odata.include-annotations=\"OData.Community.Display.V1.FormattedValue\""
            ),
            "{prefer}"
        );
    }
}

#[tokio::test]
async fn top_caps_the_total() {
    let mut env = Env::new();
    let out = env
        .ok(
            "queryEntities",
            r#"{"entityType":"contacts","fieldNames":["fullname"],"fetchAll":true,"pageSize":20,"top":45}"#,
        )
        .await;
    assert_eq!(out["count"], 45);
    assert_eq!(out["value"].as_array().unwrap().len(), 45);
    assert!(out["nextLink"].is_null());
    assert_eq!(web_api_requests(&env).len(), 3);
    let out = env
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","fieldNames":["name"],"top":3}"#,
        )
        .await;
    assert_eq!(out["count"], 3);
    let get = web_api_requests(&env).pop().unwrap();
    assert_eq!(request_header(&get, "Prefer"), Some("odata.maxpagesize=3"));
}

/// A server whose nextLink points back at the page just read: the
/// fetch-all stops at the repeat, with an error that says so, instead of
/// looping (and without a record twice).
#[tokio::test]
async fn a_fetch_all_stops_when_the_server_repeats_a_next_link() {
    let mut env = Env::new();
    env.emulator
        .set_faults(Faults::default().with_repeated_next_link(Trigger::Every(1)));
    let e = env
        .err(
            "queryEntities",
            r#"{"entityType":"accounts","fieldNames":["name"],"fetchAll":true,"pageSize":5}"#,
        )
        .await;
    assert_eq!(e["kind"], "transport", "{e}");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("paging stopped after 2 pages: the server repeated a nextLink"),
        "{message}"
    );
    assert_eq!(env.emulator.fault_stats().repeated_links, 2);
    // One page at a time, the repeated link comes back as nextLink for the
    // caller to see.
    let page = env
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","fieldNames":["name"],"pageSize":5}"#,
        )
        .await;
    assert_eq!(page["count"], 5);
    assert!(
        page["nextLink"]
            .as_str()
            .is_some_and(|l| l.contains("/api/data/v9.2/accounts")),
        "{page}"
    );
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused_before_sending() {
    let mut env = Env::new();
    for link in [
        "https://evil.example.com/api/data/v9.2/accounts?$skiptoken=x",
        "http://localhost:8080/api/data/v9.2/accounts?$skiptoken=x",
    ] {
        let e = env
            .err(
                "queryEntities",
                &json!({"entityType":"accounts","nextPage":link}).to_string(),
            )
            .await;
        assert_eq!(e["kind"], "invalid-input", "{e}");
        assert_eq!(e["input"], "nextPage");
    }
    assert!(
        env.emulator.log().is_empty(),
        "no request at all, not even a token request"
    );
}

/// A query too long for a URL is the Web API's 414 with a hint, never a
/// retryable transport error: past the server's ~32 KB the server answers
/// 414; past 64 KiB a URL cannot even be sent, and nothing is.
#[tokio::test]
async fn a_query_too_long_for_a_url_is_a_414_with_a_hint() {
    let mut env = Env::new();
    for (len, sent) in [(40_000, true), (70_000, false)] {
        let filter = format!("name eq '{}'", "a".repeat(len));
        let before = env.emulator.log().len();
        let err = env
            .err(
                "queryEntities",
                &json!({"entityType": "accounts", "filter": filter}).to_string(),
            )
            .await;
        assert_eq!(err["kind"], "dataverse", "{len}: {err}");
        assert_eq!(err["status"], 414, "{len}: {err}");
        assert_eq!(err["retryable"], false, "{len}: {err}");
        assert!(
            err["hint"].as_str().unwrap_or("").contains("runFetchXml"),
            "{len}: {err}"
        );
        let requests: Vec<String> = env.emulator.log()[before..]
            .iter()
            .filter(|r| !r.is_token_request())
            .map(|r| {
                format!(
                    "{} {} {}",
                    r.method,
                    &r.target[..r.target.len().min(60)],
                    r.status
                )
            })
            .collect();
        assert_eq!(!requests.is_empty(), sent, "{len}: {requests:?}");
    }
}
