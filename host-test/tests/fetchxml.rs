//! `runFetchXml` through the real component against the emulator's FetchXML
//! engine: paging by cookie, by page number and to the end; link-entity;
//! aggregates; annotations; malformed queries; long queries through
//! `$batch`; impersonation (the emulator's WhoAmI and createdby too).

mod common;

use common::{Env, web_api_requests};
use host_test::emulator::store::seed;
use host_test::emulator::{Config, LoggedRequest, data};
use serde_json::{Value, json};
use std::collections::HashSet;

const BEN_OBJECT_ID: &str = "b0b0b0b0-0000-4000-8000-00000000b0b0";

fn with_accounts(total: usize) -> Env {
    Env::with_config(Config {
        generated_records: total - seed::ACCOUNTS,
        ..Config::default()
    })
}

fn ids(out: &Value, key: &str) -> Vec<String> {
    out["value"]
        .as_array()
        .expect("a value array")
        .iter()
        .map(|r| r[key].as_str().expect("an id").to_string())
        .collect()
}

/// Every account id in primary key order (the order of an unordered fetch).
fn account_ids_in_order(env: &Env) -> Vec<String> {
    let state = env.emulator.state();
    state
        .store
        .records("account")
        .map(|r| r.id.clone())
        .collect()
}

/// The `fetchXml` query parameter of a logged request, decoded.
fn fetch_param(r: &LoggedRequest) -> Option<String> {
    let query = r.target.split_once('?')?.1;
    query.split('&').find_map(|p| {
        let v = p.strip_prefix("fetchXml=")?;
        Some(
            percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .ok()?
                .into_owned(),
        )
    })
}

fn inputs(entity: &str, xml: &str, extra: Value) -> String {
    let mut v = json!({"entityType": entity, "fetchXml": xml});
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v.to_string()
}

const PAGE_OF_500: &str =
    "<fetch count='500'><entity name='account'><attribute name='name'/></entity></fetch>";

#[tokio::test]
async fn a_three_page_walk_by_cookie_returns_1200_distinct_ids_in_order() {
    let mut env = with_accounts(1200);
    let expected = account_ids_in_order(&env);
    assert_eq!(expected.len(), 1200);
    let mut all = Vec::new();
    let mut next: Option<String> = None;
    let mut sizes = Vec::new();
    for _ in 0..3 {
        let extra = match &next {
            Some(n) => json!({"nextPage": n}),
            None => json!({}),
        };
        let out = env
            .ok("runFetchXml", &inputs("accounts", PAGE_OF_500, extra))
            .await;
        sizes.push(out["count"].as_u64().unwrap());
        all.extend(ids(&out, "accountid"));
        next = out["nextPage"].as_str().map(str::to_string);
        assert_eq!(out["moreRecords"], next.is_some());
    }
    assert_eq!(sizes, [500, 500, 200]);
    assert!(next.is_none(), "the third page is the last");
    assert_eq!(all.len(), 1200);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 1200);
    assert_eq!(all, expected, "every id once, in primary key order");

    // Pages 2 and 3 were asked for with page N and the cookie of page N-1.
    let sent: Vec<String> = web_api_requests(&env)
        .iter()
        .filter_map(fetch_param)
        .collect();
    assert_eq!(sent.len(), 3);
    assert!(sent[0].contains("page=\"1\"") && !sent[0].contains("paging-cookie"));
    for (i, xml) in sent.iter().enumerate().skip(1) {
        assert!(xml.contains(&format!("page=\"{}\"", i + 1)), "{xml}");
        assert!(
            xml.contains(&format!(
                "paging-cookie=\"&lt;cookie page=&quot;{i}&quot;&gt;&lt;accountid last=&quot;{{"
            )),
            "the decoded inner cookie, XML-escaped by the library: {xml}"
        );
    }
    let prefer = web_api_requests(&env)[0]
        .header("Prefer")
        .unwrap_or("")
        .to_string();
    assert!(
        prefer.contains("Microsoft.Dynamics.CRM.fetchxmlpagingcookie")
            && prefer.contains("Microsoft.Dynamics.CRM.morerecords"),
        "{prefer}"
    );
}

#[tokio::test]
async fn fetch_all_reads_12000_records_in_5000_row_pages() {
    let mut env = with_accounts(12_000);
    let expected = account_ids_in_order(&env);
    let out = env
        .ok(
            "runFetchXml",
            &inputs(
                "accounts",
                "<fetch><entity name='account'><attribute name='name'/></entity></fetch>",
                json!({"fetchAll": true}),
            ),
        )
        .await;
    assert_eq!(out["count"], 12_000);
    assert_eq!(
        out["pages"], 3,
        "Dataverse's 5000-row page cap: 5000 + 5000 + 2000"
    );
    assert_eq!(out["moreRecords"], false);
    assert_eq!(out["nextPage"], Value::Null);
    let got = ids(&out, "accountid");
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 12_000);
    assert_eq!(got, expected);
    assert_eq!(
        web_api_requests(&env)
            .iter()
            .filter(|r| fetch_param(r).is_some())
            .count(),
        3
    );
}

#[tokio::test]
async fn page_number_three_alone_reads_that_page() {
    let mut env = with_accounts(1200);
    let expected = account_ids_in_order(&env);
    let out = env
        .ok(
            "runFetchXml",
            &inputs("accounts", PAGE_OF_500, json!({"pageNumber": 3})),
        )
        .await;
    assert_eq!(out["pageNumber"], 3);
    assert_eq!(ids(&out, "accountid"), expected[1000..1200].to_vec());
    assert_eq!(out["nextPage"], Value::Null);
    let sent: Vec<String> = web_api_requests(&env)
        .iter()
        .filter_map(fetch_param)
        .collect();
    assert_eq!(sent.len(), 1, "one request");
    assert!(sent[0].contains("page=\"3\"") && !sent[0].contains("paging-cookie"));

    // Page 2 by number hands back a nextPage that continues with page 3.
    let out = env
        .ok(
            "runFetchXml",
            &inputs("accounts", PAGE_OF_500, json!({"pageNumber": 2})),
        )
        .await;
    assert_eq!(ids(&out, "accountid"), expected[500..1000].to_vec());
    let next = out["nextPage"].as_str().expect("more pages").to_string();
    let out = env
        .ok(
            "runFetchXml",
            &inputs("accounts", PAGE_OF_500, json!({"nextPage": next})),
        )
        .await;
    assert_eq!(ids(&out, "accountid"), expected[1000..1200].to_vec());
}

#[tokio::test]
async fn link_entity_returns_alias_columns() {
    let mut env = Env::new();
    let xml = "<fetch><entity name='contact'>\
        <attribute name='fullname'/><order attribute='contactid'/>\
        <link-entity name='account' from='accountid' to='parentcustomerid' alias='acc' link-type='inner'>\
          <attribute name='name'/><attribute name='accountnumber'/>\
          <filter><condition attribute='accountnumber' operator='in'><value>A-2</value><value>A-3</value></condition></filter>\
        </link-entity></entity></fetch>";
    let out = env
        .ok("runFetchXml", &inputs("contacts", xml, json!({})))
        .await;
    let rows = out["value"].as_array().unwrap();
    // Contacts n with (n-1) % 60 + 1 in {2, 3}: n = 2, 3, 62, 63, 122, 123.
    assert_eq!(rows.len(), 6, "{out}");
    for r in rows {
        let number = r["acc.accountnumber"].as_str().unwrap();
        assert!(number == "A-2" || number == "A-3", "{r}");
        assert!(r["acc.name"].is_string());
        assert!(r["fullname"].is_string());
        assert!(
            r.get("accountid").is_none(),
            "link columns only as alias.column"
        );
    }
    assert_eq!(rows[0]["contactid"], seed::contact_id(2));
    assert_eq!(rows[0]["acc.name"], "Fabrikam");

    // Outer join: contacts without a matching account keep their row.
    let outer = xml.replace("link-type='inner'", "link-type='outer'");
    let out = env
        .ok("runFetchXml", &inputs("contacts", &outer, json!({})))
        .await;
    assert_eq!(out["count"], seed::CONTACTS);
}

#[tokio::test]
async fn aggregate_count_grouped_by_a_column() {
    let mut env = Env::new();
    let xml = "<fetch aggregate='true'><entity name='account'>\
        <attribute name='accountcategorycode' groupby='true' alias='category'/>\
        <attribute name='accountid' aggregate='count' alias='accounts'/>\
        <attribute name='revenue' aggregate='avg' alias='average'/>\
        <order alias='accounts' descending='true'/></entity></fetch>";
    let out = env
        .ok("runFetchXml", &inputs("accounts", xml, json!({})))
        .await;
    assert_eq!(
        out["value"],
        json!([
            {"category": 2, "accounts": 40, "average": 3_750_000},
            {"category": 1, "accounts": 20, "average": 3_937_500},
        ]),
        "60 seeded accounts: every third is category 1"
    );
}

#[tokio::test]
async fn formatted_values_come_when_annotations_are_asked_for() {
    let mut env = Env::new();
    let xml = "<fetch><entity name='account'><attribute name='name'/><attribute name='revenue'/>\
        <attribute name='accountcategorycode'/><attribute name='ownerid'/>\
        <filter><condition attribute='accountnumber' operator='eq' value='A-3'/></filter></entity></fetch>";
    let out = env
        .ok(
            "runFetchXml",
            &inputs(
                "accounts",
                xml,
                json!({"includeAnnotations": "OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname"}),
            ),
        )
        .await;
    let row = &out["value"][0];
    const F: &str = "@OData.Community.Display.V1.FormattedValue";
    assert_eq!(row[format!("revenue{F}")], "$375,000.00", "{row}");
    assert_eq!(row[format!("accountcategorycode{F}")], "Preferred Customer");
    // Account 3's owner is owners[3 % 3] = Ana.
    assert_eq!(row[format!("_ownerid_value{F}")], "Ana Ruiz");
    assert_eq!(
        row["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"],
        "systemuser"
    );
    let prefer = web_api_requests(&env)
        .last()
        .and_then(|r| r.header("Prefer").map(str::to_string))
        .unwrap_or_default();
    assert!(
        prefer.starts_with("odata.include-annotations=\"OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname,Microsoft.Dynamics.CRM.fetchxmlpagingcookie,Microsoft.Dynamics.CRM.morerecords\""),
        "{prefer}"
    );
    // Without includeAnnotations: values only.
    let out = env
        .ok("runFetchXml", &inputs("accounts", xml, json!({})))
        .await;
    let row = out["value"][0].as_object().unwrap();
    assert_eq!(row["revenue"], 375_000.0);
    assert!(row.keys().all(|k| !k.contains(F)), "{row:?}");
}

#[tokio::test]
async fn malformed_xml_is_invalid_input_with_a_position_and_nothing_is_sent() {
    let mut env = Env::new();
    let before = web_api_requests(&env).len();
    let e = env
        .err(
            "runFetchXml",
            &inputs(
                "accounts",
                "<fetch>\n  <entity name='account'>\n    <attribute name='name'>\n  </entity>\n</fetch>",
                json!({}),
            ),
        )
        .await;
    assert_eq!(e["kind"], "invalid-input", "{e}");
    assert_eq!(e["input"], "fetchXml");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("line 4, column"), "{message}");
    let e = env
        .err(
            "runFetchXml",
            &inputs(
                "accounts",
                "<query><entity name='account'/></query>",
                json!({}),
            ),
        )
        .await;
    assert_eq!(e["input"], "fetchXml");
    assert!(e["message"].as_str().unwrap().contains("<query>"), "{e}");
    let e = env
        .err(
            "runFetchXml",
            &inputs("accounts", "<fetch><filter/></fetch>", json!({})),
        )
        .await;
    assert!(
        e["message"].as_str().unwrap().contains("no <entity>"),
        "{e}"
    );
    assert_eq!(web_api_requests(&env).len(), before, "no request was sent");

    // What only the server can know (an unknown column) is Dataverse's error.
    let e = env
        .err(
            "runFetchXml",
            &inputs(
                "accounts",
                "<fetch><entity name='account'><attribute name='nosuchcolumn'/></entity></fetch>",
                json!({}),
            ),
        )
        .await;
    assert_eq!(e["status"], 400, "{e}");
    assert_eq!(e["code"], "0x80041103");
}

#[tokio::test]
async fn a_fetchxml_over_40_kb_goes_through_batch_and_returns_the_right_rows() {
    let mut env = Env::new();
    let wanted: Vec<String> = (1..=10).map(|n| seed::account_id(n * 5)).collect();
    let mut values: String = wanted
        .iter()
        .map(|id| format!("<value>{{{id}}}</value>"))
        .collect();
    for n in 0..800 {
        values.push_str(&format!(
            "<value>{{f0000000-0000-4000-8000-{n:012x}}}</value>"
        ));
    }
    let xml = format!(
        "<fetch><entity name='account'><attribute name='name'/><order attribute='accountid'/>\
         <filter><condition attribute='accountid' operator='in'>{values}</condition></filter></entity></fetch>"
    );
    assert!(xml.len() > 40 * 1024, "{}", xml.len());
    let out = env
        .ok("runFetchXml", &inputs("accounts", &xml, json!({})))
        .await;
    assert_eq!(out["sentVia"], "batch");
    assert_eq!(ids(&out, "accountid"), wanted);
    let log = web_api_requests(&env);
    assert!(
        log.iter().all(|r| fetch_param(r).is_none()),
        "no plain GET carried the query"
    );
    let batch: Vec<&LoggedRequest> = log
        .iter()
        .filter(|r| r.path().ends_with("/$batch"))
        .collect();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].method, "POST");
    let body = String::from_utf8_lossy(&batch[0].body).to_string();
    assert!(
        body.contains(
            "\r\n\r\nGET /api/data/v9.2/accounts?fetchXml=%3Cfetch%20page%3D%221%22%3E%3Centity"
        ),
        "the inner GET carries the query"
    );
    assert!(body.contains("Prefer: odata.include-annotations="));

    // A short query with the same shape stays a plain GET.
    let short = "<fetch><entity name='account'><attribute name='name'/><filter><condition attribute='accountnumber' operator='eq' value='A-5'/></filter></entity></fetch>";
    let out = env
        .ok("runFetchXml", &inputs("accounts", short, json!({})))
        .await;
    assert_eq!(out["sentVia"], "get");
    assert_eq!(ids(&out, "accountid"), [seed::account_id(5)]);
}

#[tokio::test]
async fn impersonation_sends_caller_object_id_or_mscrmcallerid() {
    let mut env = Env::new();
    let xml = "<fetch top='1'><entity name='account'><attribute name='name'/></entity></fetch>";
    env.ok(
        "runFetchXml",
        &inputs("accounts", xml, json!({"impersonateUserId": BEN_OBJECT_ID})),
    )
    .await;
    let last = web_api_requests(&env).pop().unwrap();
    assert_eq!(last.header("CallerObjectId"), Some(BEN_OBJECT_ID));
    assert_eq!(last.header("MSCRMCallerID"), None);
    env.ok(
        "runFetchXml",
        &inputs(
            "accounts",
            xml,
            json!({"impersonateUserId": data::USER_BEN, "impersonationHeader": "MSCRMCallerID"}),
        ),
    )
    .await;
    let last = web_api_requests(&env).pop().unwrap();
    assert_eq!(last.header("MSCRMCallerID"), Some(data::USER_BEN));
    assert_eq!(last.header("CallerObjectId"), None);

    // A user who is not in the organization: 403 from the service.
    let e = env
        .err(
            "runFetchXml",
            &inputs(
                "accounts",
                xml,
                json!({"impersonateUserId": "12345678-0000-4000-8000-000000000000"}),
            ),
        )
        .await;
    assert_eq!(e["kind"], "forbidden", "{e}");
    assert_eq!(e["status"], 403);
    let e = env
        .err(
            "runFetchXml",
            &inputs("accounts", xml, json!({"impersonateUserId": "ben"})),
        )
        .await;
    assert_eq!(e["input"], "impersonateUserId");
}

#[tokio::test]
async fn the_emulator_acts_as_the_impersonated_user() {
    let mut env = Env::new();
    let who = env
        .ok(
            "rawRequest",
            &json!({"url": "WhoAmI", "headers": [{"key": "CallerObjectId", "value": BEN_OBJECT_ID}]})
                .to_string(),
        )
        .await;
    assert_eq!(who["body"]["UserId"], data::USER_BEN, "{who}");
    let me = env.ok("getCurrentUser", "{}").await;
    assert_eq!(
        me["UserId"],
        data::USER_APP,
        "without the header: the app user"
    );

    let created = env
        .ok(
            "rawRequest",
            &json!({
                "url": "accounts?$select=name,_createdby_value,_createdonbehalfby_value,_modifiedby_value",
                "method": "POST",
                "data": {"name": "Made for Ben"},
                "headers": [
                    {"key": "MSCRMCallerID", "value": data::USER_BEN},
                    {"key": "Prefer", "value": "return=representation"}
                ]
            })
            .to_string(),
        )
        .await;
    let record = &created["body"];
    assert_eq!(record["_createdby_value"], data::USER_BEN, "{created}");
    assert_eq!(record["_modifiedby_value"], data::USER_BEN);
    assert_eq!(record["_createdonbehalfby_value"], data::USER_APP);

    // FetchXML as Ben sees the same row, createdby = Ben.
    let id = record["accountid"].as_str().unwrap().to_string();
    let out = env
        .ok(
            "runFetchXml",
            &inputs(
                "accounts",
                &format!("<fetch><entity name='account'><attribute name='createdby'/><attribute name='createdonbehalfby'/><filter><condition attribute='accountid' operator='eq' value='{id}'/></filter></entity></fetch>"),
                json!({"impersonateUserId": BEN_OBJECT_ID}),
            ),
        )
        .await;
    assert_eq!(out["value"][0]["_createdby_value"], data::USER_BEN);
    assert_eq!(out["value"][0]["_createdonbehalfby_value"], data::USER_APP);
}

#[tokio::test]
async fn fetch_all_with_an_order_on_a_repeating_column_loses_and_repeats_nothing() {
    let mut env = with_accounts(1200);
    let xml = "<fetch count='500'><entity name='account'><attribute name='address1_city'/>\
        <order attribute='address1_city' descending='true'/></entity></fetch>";
    let out = env
        .ok(
            "runFetchXml",
            &inputs("accounts", xml, json!({"fetchAll": true})),
        )
        .await;
    assert_eq!(out["pages"], 3);
    let rows = out["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1200);
    let got = ids(&out, "accountid");
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 1200);
    // City descending (8 cities, many ties), then primary key.
    let mut expected: Vec<(String, String)> = {
        let state = env.emulator.state();
        state
            .store
            .records("account")
            .map(|r| {
                (
                    r.get("address1_city").as_str().unwrap_or("").to_lowercase(),
                    r.id.clone(),
                )
            })
            .collect()
    };
    expected.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    assert_eq!(got, expected);
    // The cookie carried the order column as well as the primary key.
    let second = web_api_requests(&env)
        .iter()
        .filter_map(fetch_param)
        .nth(1)
        .unwrap();
    assert!(second.contains("&lt;address1_city last=&quot;"), "{second}");
}

#[tokio::test]
async fn server_errors_come_back_typed_through_get_and_batch() {
    let mut env = Env::new();
    // The <entity> must be the entity set's table.
    let e = env
        .err(
            "runFetchXml",
            &inputs(
                "contacts",
                "<fetch><entity name='account'><attribute name='name'/></entity></fetch>",
                json!({}),
            ),
        )
        .await;
    assert_eq!(
        (e["status"].as_u64(), e["code"].as_str()),
        (Some(400), Some("0x80040203")),
        "{e}"
    );
    // A long query's error arrives inside the $batch answer.
    let values: String = (0..900)
        .map(|n| format!("<value>{{f0000000-0000-4000-8000-{n:012x}}}</value>"))
        .collect();
    let xml = format!(
        "<fetch><entity name='account'><attribute name='nosuchcolumn'/>\
         <filter><condition attribute='accountid' operator='in'>{values}</condition></filter></entity></fetch>"
    );
    let e = env
        .err("runFetchXml", &inputs("accounts", &xml, json!({})))
        .await;
    assert_eq!(e["status"], 400, "{e}");
    assert_eq!(e["code"], "0x80041103");
    assert!(
        web_api_requests(&env)
            .last()
            .is_some_and(|r| r.path().ends_with("/$batch"))
    );
}
