//! The nine schema actions through the real component against the
//! emulator's EntityDefinitions, which is generated from the record store's
//! schema: every action, each boolean input both ways, listEntityTypes
//! paging, a created column written and queried through the record actions,
//! a label update, missing tables, and the records' navigation-property
//! hint that reads ManyToOneRelationships.

mod common;

use common::{Env, is_guid, request_header, web_api_requests};
use host_test::emulator::store::seed;
use serde_json::{Value, json};

fn last_target(env: &Env) -> String {
    let log = web_api_requests(env);
    let r = log.last().expect("a Web API request");
    percent_encoding::percent_decode_str(&r.target)
        .decode_utf8_lossy()
        .into_owned()
}

/// Asserts that the last Web API request's target (decoded) contains `part`.
fn assert_last_target_contains(env: &Env, part: &str) {
    let target = last_target(env);
    assert!(target.contains(part), "{target} should contain {part}");
}

fn names(out: &Value) -> Vec<String> {
    out["value"]
        .as_array()
        .expect("value array")
        .iter()
        .map(|e| e["LogicalName"].as_str().expect("LogicalName").to_string())
        .collect()
}

fn find<'a>(out: &'a Value, logical: &str) -> &'a Value {
    out["value"]
        .as_array()
        .expect("value array")
        .iter()
        .find(|e| e["LogicalName"] == logical)
        .unwrap_or_else(|| panic!("{logical} missing from {out}"))
}

// ---- getEntityMetadata -----------------------------------------------------

#[tokio::test]
async fn get_entity_metadata_by_logical_name_and_by_entity_set_name() {
    let mut env = Env::new();
    let by_logical = env
        .ok(
            "getEntityMetadata",
            r#"{"entityType":"account","useLogicalName":true}"#,
        )
        .await;
    assert_last_target_contains(
        &env,
        "EntityDefinitions(LogicalName='account')?$expand=Attributes(",
    );
    assert_eq!(by_logical["LogicalName"], "account");
    assert_eq!(by_logical["EntitySetName"], "accounts");
    assert_eq!(by_logical["SchemaName"], "Account");
    assert_eq!(by_logical["PrimaryIdAttribute"], "accountid");
    assert_eq!(by_logical["PrimaryNameAttribute"], "name");
    assert_eq!(by_logical["OwnershipType"], "UserOwned");
    assert_eq!(by_logical["IsCustomEntity"], false);
    assert!(is_guid(&by_logical["MetadataId"]));
    // Labels in Dataverse's shape, surfaced for builders.
    assert_eq!(
        by_logical["DisplayName"]["UserLocalizedLabel"]["Label"],
        "Account"
    );
    assert_eq!(
        by_logical["DisplayName"]["LocalizedLabels"][0]["LanguageCode"],
        1033
    );
    assert_eq!(by_logical["displayName"], "Account");
    assert_eq!(by_logical["displayCollectionName"], "Accounts");
    assert_eq!(
        by_logical["IsCustomizable"]["ManagedPropertyLogicalName"],
        "iscustomizable"
    );
    let revenue = by_logical["Attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["LogicalName"] == "revenue")
        .expect("revenue column");
    assert_eq!(revenue["AttributeType"], "Money");
    assert_eq!(revenue["displayName"], "Annual Revenue");

    let by_set = env
        .ok(
            "getEntityMetadata",
            r#"{"entityType":"accounts","useLogicalName":false}"#,
        )
        .await;
    assert_last_target_contains(
        &env,
        "EntityDefinitions?$filter=EntitySetName eq 'accounts'",
    );
    assert_eq!(by_set["MetadataId"], by_logical["MetadataId"]);
    assert_eq!(by_set["displayName"], "Account");

    // Default is the logical name.
    let default = env
        .ok("getEntityMetadata", r#"{"entityType":"contact"}"#)
        .await;
    assert_eq!(default["EntitySetName"], "contacts");

    // The other form of name with each setting finds nothing.
    let e = env
        .err(
            "getEntityMetadata",
            r#"{"entityType":"account","useLogicalName":false}"#,
        )
        .await;
    assert_eq!(e["kind"], "not-found", "{e}");
    assert!(
        e["hint"].as_str().unwrap().contains("Use Logical Name"),
        "{e}"
    );
}

#[tokio::test]
async fn an_unknown_entity_is_not_found_with_the_dataverse_code() {
    let mut env = Env::new();
    let e = env
        .err("getEntityMetadata", r#"{"entityType":"nosuchtable"}"#)
        .await;
    assert_eq!(e["kind"], "not-found", "{e}");
    assert_eq!(e["status"], 404);
    assert_eq!(e["code"], "0x80041102");
    assert!(
        e["message"].as_str().unwrap().contains("nosuchtable"),
        "{e}"
    );
    assert!(e["hint"].as_str().unwrap().contains("logical name"), "{e}");

    let e = env
        .err("listAttributes", r#"{"entityId":"nosuchtable"}"#)
        .await;
    assert_eq!(e["kind"], "not-found", "{e}");
    assert_eq!(e["code"], "0x80041102");
    let e = env
        .err(
            "getAttribute",
            r#"{"entityId":"account","attributeKey":"nosuchcolumn"}"#,
        )
        .await;
    assert_eq!(e["kind"], "not-found", "{e}");

    // Bad names never reach the server.
    let before = web_api_requests(&env).len();
    let e = env
        .err("getEntityMetadata", r#"{"entityType":"acc'ount"}"#)
        .await;
    assert_eq!(e["kind"], "invalid-input");
    assert_eq!(e["input"], "entityType");
    let e = env
        .err(
            "listAttributes",
            r#"{"entityId":"account","attributeType":"Currency"}"#,
        )
        .await;
    assert_eq!(e["input"], "attributeType");
    assert_eq!(web_api_requests(&env).len(), before);
}

// ---- getEntitiesMetadata ---------------------------------------------------

#[tokio::test]
async fn get_entities_metadata_filters_by_names_and_labels_and_marks_selected() {
    let mut env = Env::new();
    // Filter by a logical name and a display label, case-insensitively;
    // custom tables excluded unless named.
    let out = env
        .ok(
            "getEntitiesMetadata",
            r#"{"entityTypeFilter":["ACCOUNT","contacts","Lead"],"includeAllCustom":false,"defaultSelected":["Contact"]}"#,
        )
        .await;
    assert_eq!(names(&out), vec!["account", "contact", "lead"]);
    assert_eq!(find(&out, "contact")["selected"], true);
    assert_eq!(find(&out, "account")["selected"], false);
    assert_eq!(find(&out, "account")["displayName"], "Account");
    let attrs = find(&out, "account")["Attributes"].as_array().unwrap();
    assert!(
        attrs
            .iter()
            .any(|a| a["LogicalName"] == "name" && a["displayName"] == "Account Name")
    );

    // includeAllCustom: the same filter plus every custom table.
    let out = env
        .ok(
            "getEntitiesMetadata",
            r#"{"entityTypeFilter":"account","includeAllCustom":true}"#,
        )
        .await;
    assert_eq!(
        names(&out),
        vec![
            "account",
            "contoso_sensordata",
            "new_auditentry",
            "new_project",
            "new_project_contact"
        ]
    );
    assert_eq!(find(&out, "new_project")["IsCustomEntity"], true);

    // A custom table named by its label is included without includeAllCustom.
    let out = env
        .ok(
            "getEntitiesMetadata",
            r#"{"entityTypeFilter":["projects"],"includeAllCustom":false}"#,
        )
        .await;
    assert_eq!(names(&out), vec!["new_project"]);

    // A default-selected name matching nothing is reported.
    let out = env
        .ok(
            "getEntitiesMetadata",
            r#"{"entityTypeFilter":["account"],"includeAllCustom":false,"defaultSelected":["acount"]}"#,
        )
        .await;
    assert_eq!(out["unmatchedDefaultSelected"], json!(["acount"]));
}

#[tokio::test]
async fn top_level_only_drops_the_intersect_table_both_ways() {
    let mut env = Env::new();
    // Defaults: every system table, all custom ones, not only top level.
    let all = env.ok("getEntitiesMetadata", "{}").await;
    let all_names = names(&all);
    assert!(all_names.contains(&"new_project_contact".to_string()));
    assert!(all_names.contains(&"account".to_string()));
    assert_eq!(find(&all, "new_project_contact")["IsIntersect"], true);
    assert!(
        all["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["selected"] == false)
    );

    let top = env
        .ok("getEntitiesMetadata", r#"{"topLevelOnly":true}"#)
        .await;
    let top_names = names(&top);
    assert!(!top_names.contains(&"new_project_contact".to_string()));
    assert!(top_names.contains(&"new_project".to_string()));
    assert_eq!(top_names.len(), all_names.len() - 1);

    // listEntities applies the same rule.
    let out = env.ok("listEntities", r#"{"topLevelOnly":false}"#).await;
    assert!(names(&out).contains(&"new_project_contact".to_string()));
    let out = env.ok("listEntities", r#"{"topLevelOnly":true}"#).await;
    assert!(!names(&out).contains(&"new_project_contact".to_string()));
    assert!(names(&out).contains(&"new_project".to_string()));
}

// ---- listEntities ----------------------------------------------------------

#[tokio::test]
async fn list_entities_include_custom_and_details_both_ways() {
    let mut env = Env::new();
    let out = env.ok("listEntities", "{}").await;
    let all = names(&out);
    assert_eq!(out["count"], all.len());
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "sorted by logical name");
    assert!(all.contains(&"new_project".to_string()));
    let account = find(&out, "account");
    assert_eq!(account["EntitySetName"], "accounts");
    assert_eq!(account["displayName"], "Account");
    assert!(
        account.get("OwnershipType").is_none(),
        "no details: {account}"
    );
    assert!(account.get("Description").is_none());

    let out = env.ok("listEntities", r#"{"includeCustom":false}"#).await;
    assert_last_target_contains(&env, "$filter=IsCustomEntity eq false");
    assert!(names(&out).iter().all(|n| !n.starts_with("new_")), "{out}");
    assert!(names(&out).contains(&"account".to_string()));
    let out = env.ok("listEntities", r#"{"includeCustom":true}"#).await;
    assert!(names(&out).contains(&"new_project".to_string()));

    let out = env.ok("listEntities", r#"{"includeDetails":true}"#).await;
    let account = find(&out, "account");
    assert_eq!(account["OwnershipType"], "UserOwned");
    assert_eq!(
        account["description"],
        "Business that represents a customer or potential customer."
    );
    assert_eq!(account["IsValidForAdvancedFind"], true);
    assert_eq!(account["IsActivity"], false);
    assert_eq!(find(&out, "new_project_contact")["OwnershipType"], "None");
    let out = env.ok("listEntities", r#"{"includeDetails":false}"#).await;
    assert!(
        find(&out, "account")
            .get("IsValidForAdvancedFind")
            .is_none()
    );
}

// ---- listEntityTypes -------------------------------------------------------

#[tokio::test]
async fn list_entity_types_pages_with_max_page_size_and_fetch_all() {
    let mut env = Env::new();
    let everything = env.ok("listEntityTypes", r#"{"fetchAll":true}"#).await;
    let all = names(&everything);
    assert!(all.len() >= 8, "{all:?}");
    assert_eq!(everything["nextLink"], Value::Null);
    // fetchAll ignores the page size.
    let again = env
        .ok("listEntityTypes", r#"{"fetchAll":true,"maxPageSize":2}"#)
        .await;
    assert_eq!(names(&again), all);

    // Pages of two, following nextLink, give every table exactly once.
    let mut seen = Vec::new();
    let mut link: Option<String> = None;
    let mut pages = 0;
    loop {
        let inputs = match &link {
            None => json!({"maxPageSize": 2, "fetchAll": false}),
            Some(l) => json!({"maxPageSize": 2, "nextLink": l}),
        };
        let page = env.ok("listEntityTypes", &inputs.to_string()).await;
        pages += 1;
        let n = names(&page);
        assert!(n.len() <= 2, "{page}");
        seen.extend(n);
        match page["nextLink"].as_str() {
            Some(l) => link = Some(l.to_string()),
            None => break,
        }
        assert!(pages < 100);
    }
    assert_eq!(seen, all);
    assert_eq!(pages, all.len().div_ceil(2));
    // Metadata is not paged on the wire: no Prefer odata.maxpagesize.
    assert!(
        web_api_requests(&env)
            .iter()
            .all(|r| request_header(r, "Prefer").is_none_or(|p| !p.contains("maxpagesize")))
    );

    // Default page size 5000 returns everything in one page.
    let one = env.ok("listEntityTypes", "{}").await;
    assert_eq!(names(&one), all);
    assert_eq!(one["nextLink"], Value::Null);

    let e = env.err("listEntityTypes", r#"{"maxPageSize":0}"#).await;
    assert_eq!(e["input"], "maxPageSize");
    let e = env.err("listEntityTypes", r#"{"maxPageSize":5001}"#).await;
    assert_eq!(e["input"], "maxPageSize");
    let e = env
        .err(
            "listEntityTypes",
            r#"{"nextLink":"https://evil.example/x"}"#,
        )
        .await;
    assert_eq!(e["input"], "nextLink");
}

// ---- listAttributes / queryAttributes / getAttribute -----------------------

#[tokio::test]
async fn list_attributes_by_type_with_and_without_details() {
    let mut env = Env::new();
    let out = env.ok("listAttributes", r#"{"entityId":"account"}"#).await;
    let all = names(&out);
    assert!(all.contains(&"name".to_string()) && all.contains(&"revenue".to_string()));
    assert!(find(&out, "name").get("RequiredLevel").is_none());
    assert_eq!(find(&out, "name")["displayName"], "Account Name");

    let money = env
        .ok(
            "listAttributes",
            r#"{"entityId":"account","attributeType":"Money","includeDetails":false}"#,
        )
        .await;
    assert_last_target_contains(
        &env,
        "/Attributes/Microsoft.Dynamics.CRM.MoneyAttributeMetadata?$select=LogicalName",
    );
    assert_eq!(names(&money), vec!["revenue"]);
    assert!(find(&money, "revenue").get("Precision").is_none());

    let detailed = env
        .ok(
            "listAttributes",
            r#"{"entityId":"account","attributeType":"money","includeDetails":true}"#,
        )
        .await;
    let revenue = find(&detailed, "revenue");
    assert_eq!(revenue["Precision"], 2, "cast properties: {revenue}");
    assert_eq!(
        revenue["@odata.type"],
        "#Microsoft.Dynamics.CRM.MoneyAttributeMetadata"
    );
    assert_eq!(revenue["RequiredLevel"]["Value"], "None");

    // By MetadataId; lookups show their targets through the cast.
    let meta = env
        .ok("getEntityMetadata", r#"{"entityType":"contact"}"#)
        .await;
    let id = meta["MetadataId"].as_str().unwrap().to_string();
    let lookups = env
        .ok(
            "listAttributes",
            &json!({"entityId": id, "attributeType": "Lookup", "includeDetails": true}).to_string(),
        )
        .await;
    assert_eq!(
        find(&lookups, "parentcustomerid")["Targets"],
        json!(["account", "contact"])
    );
}

#[tokio::test]
async fn query_attributes_with_select_filter_and_expand() {
    let mut env = Env::new();
    let out = env
        .ok(
            "queryAttributes",
            r#"{"entityId":"new_project","fieldNames":["LogicalName","AttributeType","IsCustomAttribute"],"filter":"IsCustomAttribute eq true"}"#,
        )
        .await;
    let n = names(&out);
    assert!(n.contains(&"new_budget".to_string()), "{out}");
    assert!(!n.contains(&"createdon".to_string()));
    let budget = find(&out, "new_budget");
    assert!(
        budget.get("DisplayName").is_none(),
        "$select honoured: {budget}"
    );
    assert!(is_guid(&budget["MetadataId"]));

    let picklists = env
        .ok(
            "queryAttributes",
            r#"{"entityId":"new_project","attributeType":"Picklist","expand":"OptionSet","fieldNames":"LogicalName,OptionSet"}"#,
        )
        .await;
    let stage = find(&picklists, "new_stage");
    let options = stage["OptionSet"]["Options"].as_array().unwrap();
    assert_eq!(options[0]["Value"], 100000000);
    assert_eq!(
        options[1]["Label"]["UserLocalizedLabel"]["Label"],
        "Running"
    );

    let e = env
        .err(
            "queryAttributes",
            r#"{"entityId":"account","filter":"NoSuchProperty eq 1"}"#,
        )
        .await;
    assert_eq!(e["status"], 400);
    assert!(e["message"].as_str().unwrap().contains("NoSuchProperty"));
}

#[tokio::test]
async fn get_attribute_by_logical_name_and_by_metadata_id_with_a_cast() {
    let mut env = Env::new();
    let name = env
        .ok(
            "getAttribute",
            r#"{"entityId":"account","attributeKey":"LogicalName='name'"}"#,
        )
        .await;
    assert_eq!(name["AttributeType"], "String");
    assert_eq!(name["IsPrimaryName"], true);
    assert_eq!(name["displayName"], "Account Name");
    let id = name["MetadataId"].as_str().unwrap().to_string();

    let typed = env
        .ok(
            "getAttribute",
            &json!({"entityId":"account","attributeKey": id,"attributeType":"String","fieldNames":["LogicalName","MaxLength"]}).to_string(),
        )
        .await;
    assert_last_target_contains(
        &env,
        &format!(
            "Attributes({id})/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength"
        ),
    );
    assert_eq!(typed["MaxLength"], 160);
    assert!(typed.get("AttributeType").is_none());

    let choice = env
        .ok(
            "getAttribute",
            r#"{"entityId":"account","attributeKey":"industrycode","attributeType":"Picklist","expand":"OptionSet"}"#,
        )
        .await;
    assert_eq!(choice["OptionSet"]["Options"][0]["Value"], 1);
}

// ---- createAttribute / updateAttribute -------------------------------------

fn money_body(schema: &str, label: &str) -> Value {
    json!({
        "@odata.type": "Microsoft.Dynamics.CRM.MoneyAttributeMetadata",
        "AttributeType": "Money",
        "AttributeTypeName": {"Value": "MoneyType"},
        "SchemaName": schema,
        "PrecisionSource": 2,
        "RequiredLevel": {"Value": "None", "CanBeChanged": true, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
        "DisplayName": {"@odata.type": "Microsoft.Dynamics.CRM.Label", "LocalizedLabels": [{"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": label, "LanguageCode": 1033}]}
    })
}

#[tokio::test]
async fn a_created_money_column_is_written_and_queried_through_the_record_actions() {
    let mut env = Env::new();
    let created = env
        .ok(
            "createAttribute",
            &json!({"entityId":"account","attributeBody": money_body("new_Balance", "Balance"),"solutionUniqueName":"widgets"}).to_string(),
        )
        .await;
    assert_eq!(created["created"], true);
    assert!(is_guid(&created["MetadataId"]), "{created}");
    assert_eq!(created["LogicalName"], "new_balance");
    let post = web_api_requests(&env).into_iter().last().unwrap();
    assert_eq!(post.method, "POST");
    assert!(
        post.path()
            .ends_with("EntityDefinitions(LogicalName='account')/Attributes")
    );
    assert_eq!(
        request_header(&post, "MSCRM.SolutionUniqueName"),
        Some("widgets")
    );

    // Metadata shows it.
    let col = env
        .ok(
            "getAttribute",
            r#"{"entityId":"account","attributeKey":"new_balance","attributeType":"Money"}"#,
        )
        .await;
    assert_eq!(col["MetadataId"], created["MetadataId"]);
    assert_eq!(col["IsCustomAttribute"], true);
    assert_eq!(col["displayName"], "Balance");

    // Records use it.
    let rec = env
        .ok(
            "createEntity",
            r#"{"entityType":"accounts","fieldValues":{"name":"Balance Co","new_balance":1234.5}}"#,
        )
        .await;
    assert_eq!(rec["record"]["new_balance"], 1234.5);
    let id = rec["id"].as_str().unwrap().to_string();
    let q = env
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","fieldNames":["name","new_balance"],"filter":"new_balance gt 1000"}"#,
        )
        .await;
    assert_eq!(q["count"], 1, "{q}");
    assert_eq!(q["value"][0]["accountid"], id);
    assert_eq!(q["value"][0]["new_balance"], 1234.5);

    // A second create of the same column is refused by the server.
    let e = env
        .err(
            "createAttribute",
            &json!({"entityId":"account","attributeBody": money_body("new_Balance", "Balance")})
                .to_string(),
        )
        .await;
    assert_eq!(e["status"], 400, "{e}");
}

#[tokio::test]
async fn create_attribute_validates_type_and_publisher_prefix_before_sending() {
    let mut env = Env::new();
    let before = web_api_requests(&env).len();
    let mut body = money_body("Balance", "Balance");
    let e = env
        .err(
            "createAttribute",
            &json!({"entityId":"account","attributeBody": body}).to_string(),
        )
        .await;
    assert_eq!(e["input"], "attributeBody");
    assert!(e["message"].as_str().unwrap().contains("prefix"), "{e}");
    body["SchemaName"] = json!("new_Balance");
    body["@odata.type"] = json!("Microsoft.Dynamics.CRM.CurrencyAttributeMetadata");
    let e = env
        .err(
            "createAttribute",
            &json!({"entityId":"account","attributeBody": body}).to_string(),
        )
        .await;
    assert_eq!(e["input"], "attributeBody");
    assert!(
        e["message"].as_str().unwrap().contains("@odata.type"),
        "{e}"
    );
    let e = env
        .err(
            "updateAttribute",
            &json!({"entityId":"account","attributeBody": {"SchemaName":"new_X"}}).to_string(),
        )
        .await;
    assert_eq!(e["input"], "attributeBody");
    assert_eq!(web_api_requests(&env).len(), before, "nothing sent");
}

#[tokio::test]
async fn update_attribute_changes_the_display_label_with_merge_labels() {
    let mut env = Env::new();
    let current = env
        .ok(
            "getAttribute",
            r#"{"entityId":"new_project","attributeKey":"new_budget","attributeType":"Money"}"#,
        )
        .await;
    assert_eq!(current["displayName"], "Budget");
    // GET through the cast, change the label, PUT the full definition.
    let mut body = current.clone();
    for k in ["displayName", "displayCollectionName", "description"] {
        body.as_object_mut().unwrap().remove(k);
    }
    body["DisplayName"] =
        json!({"LocalizedLabels": [{"Label": "Approved Budget", "LanguageCode": 1033}]});
    let out = env
        .ok(
            "updateAttribute",
            &json!({"entityId":"new_project","attributeBody": body}).to_string(),
        )
        .await;
    assert_eq!(out["updated"], true);
    assert_eq!(out["MetadataId"], current["MetadataId"]);
    let put = web_api_requests(&env).into_iter().last().unwrap();
    assert_eq!(put.method, "PUT");
    assert_eq!(request_header(&put, "MSCRM.MergeLabels"), Some("true"));
    assert!(
        put.path().ends_with(&format!(
            "/Attributes({})",
            current["MetadataId"].as_str().unwrap()
        )),
        "uncast URL: {}",
        put.path()
    );
    let after = env
        .ok(
            "getAttribute",
            r#"{"entityId":"new_project","attributeKey":"new_budget"}"#,
        )
        .await;
    assert_eq!(after["displayName"], "Approved Budget");
    assert_eq!(
        after["DisplayName"]["UserLocalizedLabel"]["Label"],
        "Approved Budget"
    );

    // Without a MetadataId the column is found by its logical name; the
    // type must stay the same.
    let e = env
        .err(
            "updateAttribute",
            &json!({"entityId":"new_project","attributeBody": {"@odata.type":"Microsoft.Dynamics.CRM.StringAttributeMetadata","SchemaName":"new_Budget","LogicalName":"new_budget"}}).to_string(),
        )
        .await;
    assert_eq!(e["status"], 400, "{e}");
}

// ---- the records' navigation-property hint ---------------------------------

#[tokio::test]
async fn a_wrong_bind_key_gets_the_navigation_property_from_many_to_one_relationships() {
    let mut env = Env::new();
    let e = env
        .err(
            "createEntity",
            &json!({"entityType":"contacts","fieldValues":{"lastname":"Hint","parentcustomerid@odata.bind": format!("/accounts({})", seed::account_id(1))}}).to_string(),
        )
        .await;
    assert_eq!(e["status"], 400);
    let hint = e["hint"].as_str().unwrap();
    assert!(
        hint.contains("'parentcustomerid_account@odata.bind' (→ account)")
            && hint.contains("'parentcustomerid_contact@odata.bind' (→ contact)"),
        "{hint}"
    );
    // The hint came from EntityDefinitions' ManyToOneRelationships.
    assert!(web_api_requests(&env).iter().any(|r| {
        let t = percent_encoding::percent_decode_str(&r.target)
            .decode_utf8_lossy()
            .into_owned();
        t.contains("EntityDefinitions?$filter=EntitySetName eq 'contacts'")
            && t.contains("ManyToOneRelationships")
            && r.status == 200
    }));
    // And the suggested key works.
    let ok = env
        .ok(
            "createEntity",
            &json!({"entityType":"contacts","fieldValues":{"lastname":"Hint","parentcustomerid_account@odata.bind": format!("/accounts({})", seed::account_id(1))}}).to_string(),
        )
        .await;
    assert!(is_guid(&ok["id"]));
}

// ---- the emulator's EntityDefinitions on the wire (through rawRequest) -----

/// GET through rawRequest: (status, body or error JSON).
async fn raw(env: &mut Env, url: &str, method: &str) -> (u64, Value) {
    match env
        .invoke(
            "rawRequest",
            &json!({"url": url, "method": method}).to_string(),
        )
        .await
    {
        Ok(out) => (out["status"].as_u64().unwrap(), out["body"].clone()),
        Err(e) => {
            let e = host_test::host::error_json(&e);
            (e["status"].as_u64().unwrap_or(0), e)
        }
    }
}

#[tokio::test]
async fn emulator_metadata_filters_expands_casts_and_errors() {
    let mut env = Env::new();
    // Enum filter with its namespace, and a boolean one.
    let (status, body) = raw(
        &mut env,
        "EntityDefinitions?$select=LogicalName,OwnershipType&$filter=OwnershipType eq Microsoft.Dynamics.CRM.OwnershipTypes'BusinessOwned'",
        "GET",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut owned = names(&body);
    owned.sort();
    assert_eq!(owned, vec!["businessunit", "systemuser"]);
    assert!(
        body["value"][0].get("DisplayName").is_none(),
        "$select: {body}"
    );
    assert!(
        is_guid(&body["value"][0]["MetadataId"]),
        "MetadataId always"
    );
    let (_, body) = raw(
        &mut env,
        "EntityDefinitions?$select=LogicalName&$filter=IsCustomEntity eq true and CanCreateAttributes/Value eq true",
        "GET",
    )
    .await;
    assert_eq!(
        names(&body),
        vec!["new_project", "contoso_sensordata", "new_auditentry"]
    );

    // $expand=Attributes with nested $select and an AttributeTypeCode filter.
    let (status, body) = raw(
        &mut env,
        "EntityDefinitions(LogicalName='account')?$select=LogicalName&$expand=Attributes($select=LogicalName;$filter=AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist')",
        "GET",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/$entity")
    );
    let mut picklists: Vec<&str> = body["Attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["LogicalName"].as_str().unwrap())
        .collect();
    picklists.sort();
    assert_eq!(
        picklists,
        vec!["accountcategorycode", "industrycode", "statuscode"]
    );

    // By MetadataId; a cast the attribute is not is a 404; an unknown
    // cast type too.
    let (_, account) = raw(
        &mut env,
        "EntityDefinitions(LogicalName='account')?$select=MetadataId",
        "GET",
    )
    .await;
    let id = account["MetadataId"].as_str().unwrap().to_string();
    let (status, body) = raw(
        &mut env,
        &format!("EntityDefinitions({id})/Attributes(LogicalName='revenue')/Microsoft.Dynamics.CRM.MoneyAttributeMetadata?$select=LogicalName,Precision"),
        "GET",
    )
    .await;
    assert_eq!(
        (status, body["Precision"].clone()),
        (200, json!(2)),
        "{body}"
    );
    // Then unknown properties, label filters and PATCH are refused.
    for (url, method, want, why) in [
        (
            "EntityDefinitions(LogicalName='account')/Attributes(LogicalName='name')/Microsoft.Dynamics.CRM.MoneyAttributeMetadata",
            "GET",
            404,
            "a cast the attribute is not",
        ),
        (
            "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.EnumAttributeMetadata",
            "GET",
            404,
            "the abstract type is not castable",
        ),
        (
            "EntityDefinitions?$select=Nope",
            "GET",
            400,
            "an unknown property",
        ),
        (
            "EntityDefinitions?$filter=DisplayName eq 'Account'",
            "GET",
            400,
            "a label filter",
        ),
        (
            "EntityDefinitions(LogicalName='account')",
            "PATCH",
            405,
            "PATCH of an entity definition",
        ),
    ] {
        let (status, body) = raw(&mut env, url, method).await;
        assert_eq!(status, want, "{why}: {body}");
    }

    // Records and metadata agree: every entity set answers a query.
    let (_, all) = raw(&mut env, "EntityDefinitions?$select=EntitySetName", "GET").await;
    for e in all["value"].as_array().unwrap() {
        let set = e["EntitySetName"].as_str().unwrap();
        let (status, body) = raw(&mut env, &format!("{set}?$top=1"), "GET").await;
        assert_eq!(status, 200, "{set}: {body}");
    }
}

#[tokio::test]
async fn emulator_put_without_merge_labels_replaces_the_labels() {
    let mut env = Env::new();
    let put = |merge: &str| {
        json!({
            "url": "EntityDefinitions(LogicalName='new_project')/Attributes(LogicalName='new_hours')",
            "method": "PUT",
            "headers": [{"key": "MSCRM.MergeLabels", "value": merge}],
            // No DisplayName in the body.
            "data": {"@odata.type": "Microsoft.Dynamics.CRM.IntegerAttributeMetadata", "SchemaName": "new_Hours", "LogicalName": "new_hours"}
        })
        .to_string()
    };
    // MergeLabels: true keeps the stored label when the body has none.
    let out = env.ok("rawRequest", &put("true")).await;
    assert_eq!(out["status"], 204, "{out}");
    let a = env
        .ok(
            "getAttribute",
            r#"{"entityId":"new_project","attributeKey":"new_hours"}"#,
        )
        .await;
    assert_eq!(a["displayName"], "Planned Hours");
    // MergeLabels: false overwrites: no label in the body clears it.
    let out = env.ok("rawRequest", &put("false")).await;
    assert_eq!(out["status"], 204, "{out}");
    let a = env
        .ok(
            "getAttribute",
            r#"{"entityId":"new_project","attributeKey":"new_hours"}"#,
        )
        .await;
    assert_eq!(a["displayName"], Value::Null);
    assert_eq!(a["DisplayName"]["LocalizedLabels"], json!([]));
}
