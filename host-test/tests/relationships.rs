//! `associate`, `disassociate` and `executeAction` through the real
//! component against the emulator: links seen through `$expand`, the `$ref`
//! requests on the wire, unbound functions and actions, a bound action,
//! and Dataverse's errors for unknown and namespace-less operations.

mod common;

use common::{Env, web_api_requests};
use host_test::emulator::store::seed;
use serde_json::{Value, json};

fn target_of(r: &host_test::emulator::LoggedRequest) -> String {
    r.target.clone()
}

async fn create(env: &mut Env, set: &str, fields: Value) -> String {
    let out = env
        .ok(
            "createEntity",
            &json!({"entityType": set, "fieldValues": fields}).to_string(),
        )
        .await;
    out["id"].as_str().expect("an id").to_string()
}

async fn expanded(env: &mut Env, set: &str, id: &str, expand: &str) -> Value {
    let out = env
        .ok(
            "getEntity",
            &json!({"entityType": set, "entityId": id, "fieldNames": ["name"], "expand": expand})
                .to_string(),
        )
        .await;
    out[expand.split('(').next().unwrap_or(expand)].clone()
}

/// associate / disassociate inputs: the account's `navigation` to `target`
/// in `target_set`.
fn link(account: &str, navigation: &str, target_set: &str, target: &str) -> String {
    json!({
        "entityType": "accounts", "entityId": account,
        "navigationProperty": navigation,
        "targetEntityType": target_set, "targetId": target
    })
    .to_string()
}

/// The `key` column of each record of an expanded collection.
fn ids_in<'a>(collection: &'a Value, key: &str) -> Vec<&'a str> {
    collection
        .as_array()
        .expect("a collection")
        .iter()
        .filter_map(|r| r[key].as_str())
        .collect()
}

#[tokio::test]
async fn associate_then_expand_shows_a_collection_link_and_disassociate_removes_it() {
    let mut env = Env::new();
    let account = create(&mut env, "accounts", json!({"name": "Linked Co"})).await;
    let c1 = create(
        &mut env,
        "contacts",
        json!({"firstname": "Ada", "lastname": "One"}),
    )
    .await;
    let c2 = create(
        &mut env,
        "contacts",
        json!({"firstname": "Bo", "lastname": "Two"}),
    )
    .await;
    let before = expanded(&mut env, "accounts", &account, "contact_customer_accounts").await;
    assert_eq!(before, json!([]));

    env.emulator.clear_log();
    for c in [&c1, &c2] {
        let out = env
            .ok(
                "associate",
                &link(&account, "contact_customer_accounts", "contacts", c),
            )
            .await;
        assert_eq!(out["associated"], true);
        assert_eq!(
            out["target"],
            format!("http://localhost/api/data/v9.2/contacts({c})")
        );
    }
    let log = web_api_requests(&env);
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, "POST");
    assert_eq!(
        log[0].path(),
        format!("/api/data/v9.2/accounts({account})/contact_customer_accounts/$ref")
    );
    let body: Value = serde_json::from_slice(&log[0].body).expect("JSON body");
    assert_eq!(
        body,
        json!({"@odata.id": format!("http://localhost/api/data/v9.2/contacts({c1})")})
    );

    let linked = expanded(&mut env, "accounts", &account, "contact_customer_accounts").await;
    let mut ids = ids_in(&linked, "contactid");
    ids.sort_unstable();
    let mut want = vec![c1.as_str(), c2.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);

    env.emulator.clear_log();
    let out = env
        .ok(
            "disassociate",
            &link(&account, "contact_customer_accounts", "contacts", &c1),
        )
        .await;
    assert_eq!(out["disassociated"], true);
    let log = web_api_requests(&env);
    assert_eq!(log[0].method, "DELETE");
    assert_eq!(
        log[0].path(),
        format!("/api/data/v9.2/accounts({account})/contact_customer_accounts({c1})/$ref")
    );
    let linked = expanded(&mut env, "accounts", &account, "contact_customer_accounts").await;
    let ids = ids_in(&linked, "contactid");
    assert_eq!(ids, [c2.as_str()], "only the other contact is still linked");
}

#[tokio::test]
async fn disassociate_by_alternate_key_uses_the_id_query_option() {
    let mut env = Env::new();
    let parent = create(&mut env, "accounts", json!({"name": "Parent"})).await;
    create(
        &mut env,
        "accounts",
        json!({"name": "Child", "accountnumber": "CH-'1"}),
    )
    .await;
    let child = link(
        &parent,
        "account_parent_account",
        "accounts",
        "accountnumber='CH-''1'",
    );
    env.ok("associate", &child).await;
    let children = expanded(&mut env, "accounts", &parent, "account_parent_account").await;
    assert_eq!(children.as_array().map(Vec::len), Some(1), "{children}");
    assert_eq!(children[0]["name"], "Child");

    env.emulator.clear_log();
    env.ok("disassociate", &child).await;
    let log = web_api_requests(&env);
    assert_eq!(log[0].method, "DELETE");
    assert!(
        target_of(&log[0]).contains("/account_parent_account/$ref?$id="),
        "{}",
        log[0].target
    );
    let children = expanded(&mut env, "accounts", &parent, "account_parent_account").await;
    assert_eq!(children, json!([]));
}

#[tokio::test]
async fn a_single_valued_lookup_is_set_with_put_and_cleared_with_delete() {
    let mut env = Env::new();
    let account = create(&mut env, "accounts", json!({"name": "Has Contact"})).await;
    let contact = create(
        &mut env,
        "contacts",
        json!({"firstname": "Pri", "lastname": "Mary"}),
    )
    .await;
    env.emulator.clear_log();
    env.ok(
        "associate",
        &json!({
            "entityType": "accounts", "entityId": account,
            "navigationProperty": "primarycontactid",
            "targetEntityType": "contacts", "targetId": contact,
            "singleValued": true
        })
        .to_string(),
    )
    .await;
    let log = web_api_requests(&env);
    assert_eq!(log[0].method, "PUT");
    assert_eq!(
        log[0].path(),
        format!("/api/data/v9.2/accounts({account})/primarycontactid/$ref")
    );
    let primary = expanded(&mut env, "accounts", &account, "primarycontactid").await;
    assert_eq!(primary["contactid"], contact.as_str(), "{primary}");
    assert_eq!(primary["fullname"], "Pri Mary");

    env.emulator.clear_log();
    let out = env
        .ok(
            "disassociate",
            &json!({
                "entityType": "accounts", "entityId": account,
                "navigationProperty": "primarycontactid", "singleValued": true
            })
            .to_string(),
        )
        .await;
    assert_eq!(out["target"], Value::Null);
    let log = web_api_requests(&env);
    assert_eq!(log[0].method, "DELETE");
    assert_eq!(
        log[0].path(),
        format!("/api/data/v9.2/accounts({account})/primarycontactid/$ref")
    );
    let primary = expanded(&mut env, "accounts", &account, "primarycontactid").await;
    assert_eq!(primary, Value::Null);
}

#[tokio::test]
async fn relationship_errors_are_typed_and_bad_input_sends_nothing() {
    let mut env = Env::new();
    let account = seed::account_id(1);
    env.emulator.clear_log();
    for (inputs, input) in [
        (
            json!({"entityType": "accounts", "entityId": account, "navigationProperty": "a/b",
                   "targetEntityType": "contacts", "targetId": seed::contact_id(1)}),
            "navigationProperty",
        ),
        (
            json!({"entityType": "accounts", "entityId": account, "navigationProperty": "contact_customer_accounts",
                   "targetEntityType": "contacts"}),
            "targetId",
        ),
        (
            json!({"entityType": "accounts", "entityId": "nope nope", "navigationProperty": "contact_customer_accounts",
                   "targetEntityType": "contacts", "targetId": seed::contact_id(1)}),
            "entityId",
        ),
    ] {
        let err = env.err("associate", &inputs.to_string()).await;
        assert_eq!(err["kind"], "invalid-input", "{err}");
        assert_eq!(err["input"], input, "{err}");
    }
    let err = env
        .err(
            "disassociate",
            &json!({"entityType": "accounts", "entityId": account,
                    "navigationProperty": "contact_customer_accounts"})
            .to_string(),
        )
        .await;
    assert_eq!(err["input"], "targetId", "{err}");
    assert!(web_api_requests(&env).is_empty(), "nothing was sent");

    // An unknown navigation property: Dataverse's 404 for the segment.
    let err = env
        .err(
            "associate",
            &json!({"entityType": "accounts", "entityId": account, "navigationProperty": "no_such_nav",
                    "targetEntityType": "contacts", "targetId": seed::contact_id(1)})
            .to_string(),
        )
        .await;
    assert_eq!(err["status"], 404, "{err}");
    assert_eq!(err["code"], "0x8006088a");
    // A missing related record.
    let err = env
        .err(
            "associate",
            &json!({"entityType": "accounts", "entityId": account, "navigationProperty": "contact_customer_accounts",
                    "targetEntityType": "contacts", "targetId": "00000000-0000-4000-8000-0000000000ff"})
            .to_string(),
        )
        .await;
    assert_eq!(err["status"], 404, "{err}");
    assert_eq!(err["code"], "0x80040217");
}

#[tokio::test]
async fn a_many_to_many_link_shows_from_both_sides_and_disassociate_removes_it() {
    let mut env = Env::new();
    let account = create(&mut env, "accounts", json!({"name": "N to N"})).await;
    let lead = seed::lead_id(1);
    let pair = link(&account, "accountleads_association", "leads", &lead);
    env.ok("associate", &pair).await;
    let leads = expanded(&mut env, "accounts", &account, "accountleads_association").await;
    let ids = ids_in(&leads, "leadid");
    assert_eq!(ids, [lead.as_str()]);
    // The other side sees the same pair.
    let out = env
        .ok(
            "getEntity",
            &json!({"entityType": "leads", "entityId": lead, "fieldNames": ["subject"],
                    "expand": "accountleads_association($select=name)"})
            .to_string(),
        )
        .await;
    let accounts = ids_in(&out["accountleads_association"], "accountid");
    assert_eq!(accounts, [account.as_str()], "{out}");
    // One row in the intersect entity, readable like Dataverse's.
    let rows = env
        .ok(
            "queryEntities",
            &json!({"entityType": "accountleadscollection",
                    "filter": format!("accountid eq {account}")})
            .to_string(),
        )
        .await;
    assert_eq!(rows["value"].as_array().map(Vec::len), Some(1), "{rows}");
    // Associating the same pair again is refused.
    let err = env.err("associate", &pair).await;
    assert_eq!(err["status"], 400, "{err}");

    env.ok("disassociate", &pair).await;
    let leads = expanded(&mut env, "accounts", &account, "accountleads_association").await;
    assert_eq!(leads, json!([]));
}

// ---- executeAction ---------------------------------------------------------

#[tokio::test]
async fn unbound_functions_send_aliases_and_return_their_documented_shapes() {
    let mut env = Env::new();
    env.emulator.clear_log();
    let out = env
        .ok(
            "executeAction",
            r#"{"name":"RetrieveTotalRecordCount","kind":"function","parameters":{"EntityNames":["account","contact"]}}"#,
        )
        .await;
    assert_eq!(out["status"], 200);
    let counts = &out["result"]["EntityRecordCountCollection"];
    assert_eq!(counts["Count"], 2);
    assert_eq!(counts["IsReadOnly"], false);
    assert_eq!(counts["Keys"], json!(["account", "contact"]));
    assert_eq!(
        counts["Values"],
        json!([seed::ACCOUNTS as u64, seed::CONTACTS as u64])
    );
    let log = web_api_requests(&env);
    assert_eq!(log[0].method, "GET");
    assert_eq!(
        log[0].target,
        "/api/data/v9.2/RetrieveTotalRecordCount(EntityNames=@p1)?@p1=%5B%22account%22,%22contact%22%5D"
    );

    let who = env
        .ok("executeAction", r#"{"name":"WhoAmI","kind":"function"}"#)
        .await;
    assert_eq!(who["result"]["UserId"], host_test::emulator::data::USER_APP);

    // CalculateRollupField with a record parameter and a string parameter
    // whose quote must be doubled: opendeals counts open opportunities.
    let account = create(&mut env, "accounts", json!({"name": "Rollup Co"})).await;
    for name in ["Deal 1", "Deal 2"] {
        create(
            &mut env,
            "opportunities",
            json!({"name": name, "parentaccountid@odata.bind": format!("/accounts({account})")}),
        )
        .await;
    }
    let out = env
        .ok(
            "executeAction",
            &json!({"name": "CalculateRollupField", "kind": "function", "parameters": {
                "Target": {"@odata.id": format!("accounts({account})")},
                "FieldName": "opendeals"
            }})
            .to_string(),
        )
        .await;
    assert_eq!(out["result"]["opendeals"], 2, "{out}");
    assert_eq!(out["result"]["opendeals_state"], 1);
    assert_eq!(out["result"]["accountid"], account.as_str());
    let err = env
        .err(
            "executeAction",
            &json!({"name": "CalculateRollupField", "kind": "function", "parameters": {
                "Target": {"@odata.id": format!("accounts({account})")},
                "FieldName": "it's not"
            }})
            .to_string(),
        )
        .await;
    assert_eq!(err["status"], 400, "{err}");
    assert!(
        err["message"].as_str().unwrap_or("").contains("'it's not'"),
        "the quoted string arrived intact: {err}"
    );
}

#[tokio::test]
async fn win_opportunity_closes_the_opportunity() {
    let mut env = Env::new();
    let opp = create(&mut env, "opportunities", json!({"name": "Big deal"})).await;
    env.emulator.clear_log();
    let out = env
        .ok(
            "executeAction",
            &json!({"name": "WinOpportunity", "parameters": {
                "Status": 3,
                "OpportunityClose": {"subject": "Won!", "opportunityid@odata.bind": format!("/opportunities({opp})")}
            }})
            .to_string(),
        )
        .await;
    assert_eq!(out, json!({"status": 204, "result": null}));
    let log = web_api_requests(&env);
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].path(), "/api/data/v9.2/WinOpportunity");
    let got = env
        .ok(
            "getEntity",
            &json!({"entityType": "opportunities", "entityId": opp,
                    "fieldNames": ["statecode", "statuscode"]})
            .to_string(),
        )
        .await;
    assert_eq!(got["statecode"], 1, "{got}");
    assert_eq!(got["statuscode"], 3);
    // Winning it again: it is no longer open.
    let err = env
        .err(
            "executeAction",
            &json!({"name": "WinOpportunity", "parameters": {
                "Status": 3,
                "OpportunityClose": {"opportunityid@odata.bind": format!("/opportunities({opp})")}
            }})
            .to_string(),
        )
        .await;
    assert_eq!(err["status"], 400, "{err}");
}

#[tokio::test]
async fn a_bound_action_gets_the_namespace_and_acts_on_its_record() {
    let mut env = Env::new();
    let account = create(&mut env, "accounts", json!({"name": "Bound Co"})).await;
    env.emulator.clear_log();
    let out = env
        .ok(
            "executeAction",
            &json!({"name": "new_SetCreditHold", "boundEntitySet": "accounts", "boundId": account,
                    "parameters": {"OnHold": true}})
            .to_string(),
        )
        .await;
    assert_eq!(out["status"], 200);
    assert_eq!(out["result"]["PreviousValue"], false, "{out}");
    let log = web_api_requests(&env);
    assert_eq!(log[0].method, "POST");
    assert_eq!(
        log[0].path(),
        format!("/api/data/v9.2/accounts({account})/Microsoft.Dynamics.CRM.new_SetCreditHold")
    );
    let got = env
        .ok(
            "getEntity",
            &json!({"entityType": "accounts", "entityId": account, "fieldNames": ["creditonhold"]})
                .to_string(),
        )
        .await;
    assert_eq!(got["creditonhold"], true);
}

#[tokio::test]
async fn unknown_operations_and_missing_namespaces_get_dataverse_errors() {
    let mut env = Env::new();
    let err = env
        .err(
            "executeAction",
            r#"{"name":"NoSuchAction","parameters":{}}"#,
        )
        .await;
    assert_eq!(err["kind"], "not-found", "{err}");
    assert_eq!(err["status"], 404);
    assert_eq!(err["code"], "0x8006088a");
    assert_eq!(
        err["message"],
        "Resource not found for the segment 'NoSuchAction'."
    );
    let err = env
        .err(
            "executeAction",
            r#"{"name":"NoSuchFunction","kind":"function"}"#,
        )
        .await;
    assert_eq!(err["status"], 404);
    assert_eq!(
        err["message"],
        "Resource not found for the segment 'NoSuchFunction'."
    );
    // Through rawRequest: a bound action without its namespace → 400.
    let account = seed::account_id(1);
    let err = env
        .err(
            "rawRequest",
            &json!({"url": format!("accounts({account})/new_SetCreditHold"), "method": "POST",
                    "data": {"OnHold": true}})
            .to_string(),
        )
        .await;
    assert_eq!(err["status"], 400, "{err}");
    assert_eq!(err["message"], "Request message has unresolved parameters.");
    // A function called as an action: 405.
    let err = env
        .err("executeAction", r#"{"name":"RetrieveTotalRecordCount"}"#)
        .await;
    assert_eq!(err["status"], 405, "{err}");
}
