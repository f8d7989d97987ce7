//! Dataverse search, counts and aggregates through the component against
//! the emulator: searchRecords, suggestRecords, autocompleteSearch,
//! getSearchStatus, and queryEntities' count and apply.

mod common;

use common::Env;
use serde_json::{Value, json};

/// Requests the emulator received under `/api/search/`.
fn search_requests(env: &Env) -> usize {
    env.emulator
        .log()
        .iter()
        .filter(|r| r.path().starts_with("/api/search/"))
        .count()
}

fn input_of(e: &Value) -> &str {
    e["input"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_misspelled_company_name_is_found_with_a_highlight() {
    let mut env = Env::new();
    let out = env
        .ok(
            "searchRecords",
            r#"{"search":"Fabrikm","entities":["account"]}"#,
        )
        .await;
    let results = out["results"].as_array().unwrap();
    // The seed has Fabrikam, Fabrikam Ltd and Fabrikam Group.
    assert_eq!(results.len(), 3, "{out}");
    for r in results {
        assert_eq!(r["entityName"], "account");
        assert_eq!(r["objectTypeCode"], 1);
        assert!(
            r["attributes"]["name"]
                .as_str()
                .unwrap()
                .starts_with("Fabrikam")
        );
        let hl = r["highlights"]["name"][0].as_str().unwrap();
        assert!(hl.contains("{crmhit}Fabrikam{/crmhit}"), "{hl}");
        assert!(r["score"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(out["queryContext"]["AlteredQuery"], "fabrikam", "{out}");
    // Lucene's fuzzy operator finds it without correction.
    let lucene = env
        .ok(
            "searchRecords",
            r#"{"search":"Fabrikm~","searchType":"full","entities":["account"],"top":2}"#,
        )
        .await;
    assert_eq!(lucene["results"].as_array().unwrap().len(), 2, "top");
    assert_eq!(lucene["queryContext"], Value::Null);
    // The body carried the lists as JSON text, as the API takes them.
    let sent = env
        .emulator
        .log()
        .iter()
        .rev()
        .find(|r| r.path() == "/api/search/v2.0/query")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap();
    let body: Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(body["entities"], r#"[{"name":"account"}]"#);
    assert_eq!(body["options"], r#"["lucene"]"#);
}

#[tokio::test]
async fn facets_by_statecode_add_up_to_the_total_count() {
    let mut env = Env::new();
    // Two of the three Fabrikam accounts inactive.
    for n in [2, 22] {
        let id = host_test::emulator::store::seed::account_id(n);
        env.ok(
            "updateEntity",
            &json!({"entityType": "accounts", "entityId": id, "fieldValues": {"statecode": 1, "statuscode": 2}}).to_string(),
        )
        .await;
    }
    let out = env
        .ok(
            "searchRecords",
            r#"{"search":"fabrikam | contoso","entities":["account"],"facets":["statecode"],"count":true,"top":1}"#,
        )
        .await;
    let total = out["totalCount"].as_i64().unwrap();
    assert_eq!(total, 6, "three Fabrikam and three Contoso accounts: {out}");
    assert_eq!(out["results"].as_array().unwrap().len(), 1, "top 1");
    let buckets = out["facets"]["statecode"].as_array().unwrap();
    let sum: i64 = buckets.iter().map(|b| b["Count"].as_i64().unwrap()).sum();
    assert_eq!(sum, total, "{buckets:?}");
    let inactive = buckets.iter().find(|b| b["Value"] == 1).unwrap();
    assert_eq!(inactive["Count"], 2);
    // Without count, no total (Dataverse's -1 becomes null).
    let plain = env
        .ok(
            "searchRecords",
            r#"{"search":"fabrikam","entities":["account"]}"#,
        )
        .await;
    assert_eq!(plain["totalCount"], Value::Null);
}

#[tokio::test]
async fn suggest_autocomplete_and_status_answer_in_their_shapes() {
    let mut env = Env::new();
    let s = env
        .ok(
            "suggestRecords",
            r#"{"search":"Alpi","entities":["account"]}"#,
        )
        .await;
    let results = s["results"].as_array().unwrap();
    assert!(!results.is_empty() && results.len() <= 5, "{s}");
    for r in results {
        let text = r["text"].as_str().unwrap();
        assert!(text.contains("{crmhit}Alpine{/crmhit}"), "{text}");
        assert_eq!(r["document"]["@search.entityname"], "account");
        assert!(common::is_guid(&r["document"]["@search.objectid"]));
    }
    let a = env
        .ok(
            "autocompleteSearch",
            r#"{"search":"woodgr","entities":["account"]}"#,
        )
        .await;
    assert_eq!(a["value"], "woodgrove", "{a}");
    let status = env.ok("getSearchStatus", "{}").await;
    assert_eq!(status["enabled"], true);
    let tables: Vec<&str> = status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["entityName"].as_str().unwrap())
        .collect();
    assert!(
        tables.contains(&"account") && tables.contains(&"contact"),
        "{tables:?}"
    );
}

#[tokio::test]
async fn search_off_is_the_coded_error_with_where_to_turn_it_on() {
    let mut env = Env::new();
    env.emulator.state().config.search_enabled = false;
    for (key, inputs) in [
        ("searchRecords", r#"{"search":"contoso"}"#),
        ("suggestRecords", r#"{"search":"contoso"}"#),
        ("autocompleteSearch", r#"{"search":"cont"}"#),
    ] {
        let e = env.err(key, inputs).await;
        assert_eq!(e["kind"], "dataverse", "{key}: {e}");
        assert_eq!(e["code"], "0x80048d0b", "{key}");
        assert!(
            e["hint"]
                .as_str()
                .unwrap()
                .contains("Power Platform admin center"),
            "{key}: {e}"
        );
    }
    let status = env.ok("getSearchStatus", "{}").await;
    assert_eq!(status["enabled"], false);
    assert_eq!(status["status"], "notprovisioned");
    assert!(status["hint"].as_str().unwrap().contains("admin center"));
}

#[tokio::test]
async fn bad_search_inputs_are_named_and_caught_before_sending() {
    let mut env = Env::new();
    for (key, inputs, input) in [
        ("searchRecords", r#"{"search":"  "}"#, "search"),
        ("searchRecords", r#"{"search":"x","top":101}"#, "top"),
        (
            "searchRecords",
            r#"{"search":"x","entities":["Account"]}"#,
            "entities[0]",
        ),
        (
            "searchRecords",
            r#"{"search":"x","orderBy":["name sideways"]}"#,
            "orderBy",
        ),
        ("suggestRecords", r#"{"search":"ab"}"#, "search"),
    ] {
        let e = env.err(key, inputs).await;
        assert_eq!(e["kind"], "invalid-input", "{inputs}: {e}");
        assert_eq!(input_of(&e), input, "{inputs}");
    }
    assert_eq!(search_requests(&env), 0, "nothing was sent");
    // A table search does not index can only be told by the server: its
    // answer is turned into an error naming the input.
    let e = env
        .err(
            "searchRecords",
            r#"{"search":"x","entities":["nosuchtable"]}"#,
        )
        .await;
    assert_eq!(input_of(&e), "entities", "{e}");
    assert!(e["hint"].as_str().unwrap().contains("getSearchStatus"));
    assert_eq!(search_requests(&env), 1);
}

#[tokio::test]
async fn a_count_over_twelve_thousand_rows_stops_at_5000_and_says_so() {
    let mut env = common::env_with_big_accounts(12_000, 10);
    let out = env
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","count":true,"pageSize":10,"fieldNames":["name"]}"#,
        )
        .await;
    assert_eq!(out["totalCount"], 5000, "{}", out["totalCount"]);
    assert_eq!(out["totalCountLimitExceeded"], true);
    assert_eq!(out["count"], 10);
    let small = env
        .ok(
            "queryEntities",
            r#"{"entityType":"contacts","count":true,"pageSize":10,"filter":"lastname eq 'Ruiz'"}"#,
        )
        .await;
    assert_eq!(small["totalCountLimitExceeded"], false);
    assert!(small["totalCount"].as_i64().unwrap() > 0);
    // Without count the output keeps its old shape.
    let plain = env
        .ok("queryEntities", r#"{"entityType":"contacts","top":1}"#)
        .await;
    assert!(plain.get("totalCount").is_none(), "{plain}");
}

#[tokio::test]
async fn apply_groupby_sum_agrees_with_a_sum_over_a_fetch_all() {
    let mut env = Env::new();
    let grouped = env
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","apply":"groupby((industrycode),aggregate(revenue with sum as total,$count as n))"}"#,
        )
        .await;
    let all = env
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","fieldNames":["industrycode","revenue"],"fetchAll":true,"pageSize":7}"#,
        )
        .await;
    // The test's own sums, from every row.
    let mut expected: std::collections::BTreeMap<i64, (f64, i64)> = Default::default();
    for r in all["value"].as_array().unwrap() {
        let key = r["industrycode"].as_i64().unwrap_or(-1);
        let e = expected.entry(key).or_default();
        e.0 += r["revenue"].as_f64().unwrap_or(0.0);
        e.1 += 1;
    }
    let rows = grouped["value"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len(), "{grouped}");
    for row in rows {
        let key = row["industrycode"].as_i64().unwrap_or(-1);
        let (sum, n) = expected[&key];
        assert_eq!(row["total"].as_f64().unwrap(), sum, "{row}");
        assert_eq!(row["n"].as_i64().unwrap(), n, "{row}");
    }
    // filter then aggregate.
    let one = env
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","apply":"filter(industrycode eq 1)/aggregate(revenue with max as top,$count as n)"}"#,
        )
        .await;
    assert_eq!(one["value"][0]["n"].as_i64().unwrap(), expected[&1].1);
}

#[tokio::test]
async fn an_apply_typo_is_refused_before_sending_and_past_the_limit_gets_a_hint() {
    let mut env = Env::new();
    let web_api = |env: &Env| {
        env.emulator
            .log()
            .iter()
            .filter(|r| r.path().starts_with("/api/data/"))
            .count()
    };
    let before = web_api(&env);
    let e = env
        .err(
            "queryEntities",
            r#"{"entityType":"accounts","apply":"groupby((statecode),aggregate(revenue with total as n))"}"#,
        )
        .await;
    assert_eq!(input_of(&e), "apply", "{e}");
    let after = web_api(&env);
    assert_eq!(before, after, "nothing sent");

    let mut big = Env::with_config(host_test::emulator::Config {
        generated_records: 50_000,
        log_retention: host_test::emulator::LogRetention::RECENT,
        ..Default::default()
    });
    let e = big
        .err(
            "queryEntities",
            r#"{"entityType":"accounts","apply":"aggregate($count as n)"}"#,
        )
        .await;
    assert_eq!(e["code"], "0x8004e023", "{e}");
    assert!(e["hint"].as_str().unwrap().contains("50,000"), "{e}");
    // Filtered under the limit, the same aggregate works.
    let ok = big
        .ok(
            "queryEntities",
            r#"{"entityType":"accounts","apply":"filter(industrycode eq 1)/aggregate($count as n)"}"#,
        )
        .await;
    assert!(ok["value"][0]["n"].as_i64().unwrap() > 0);
}

/// The emulator's search endpoint on the wire: answers wrapped as JSON
/// text in `response`, statistics counting the indexed rows, search off
/// refusing queries but not status.
#[tokio::test]
async fn the_emulator_answers_search_in_the_documented_wire_shapes() {
    use common::wire::{Req, Wire};
    let env = Env::new();
    let wire = Wire::new(&env).await;
    let unwrap = |body: &Value| -> Value {
        serde_json::from_str(body["response"].as_str().expect("response is JSON text")).unwrap()
    };
    let q = wire
        .send(
            Req::new("POST", "http://localhost/api/search/v2.0/query").json(
                json!({"search": "contoso", "entities": "[{\"name\":\"account\"}]", "count": true}),
            ),
        )
        .await;
    assert_eq!(q.status, 200, "{}", q.body);
    let inner = unwrap(&q.body);
    assert_eq!(inner["Count"], 3);
    assert_eq!(inner["Value"][0]["EntityName"], "account");
    let stats = wire
        .send(Req::get("http://localhost/api/search/v2.0/statistics"))
        .await;
    let inner = unwrap(&stats.body);
    let indexed: usize = {
        let state = env.emulator.state();
        ["account", "contact", "opportunity", "lead"]
            .iter()
            .map(|t| state.store.count(t))
            .sum()
    };
    assert_eq!(inner["value"]["documentcount"], indexed);
    assert!(inner["value"]["storagesizeinbytes"].as_u64().unwrap() > 0);
    // A POST the index does not serve, and a method it refuses.
    let top = wire
        .send(
            Req::new("POST", "http://localhost/api/search/v2.0/query")
                .json(json!({"search": "x", "top": 101})),
        )
        .await;
    assert_eq!(top.status, 400);
    let get = wire
        .send(Req::get("http://localhost/api/search/v2.0/query"))
        .await;
    assert_eq!(get.status, 405);
    env.emulator.state().config.search_enabled = false;
    let off = wire
        .send(
            Req::new("POST", "http://localhost/api/search/v2.0/query")
                .json(json!({"search": "contoso"})),
        )
        .await;
    assert_eq!(off.status, 400);
    assert_eq!(off.body["error"]["code"], "0x80048d0b");
    let status = wire
        .send(Req::get("http://localhost/api/search/v2.0/status"))
        .await;
    assert_eq!(unwrap(&status.body)["value"]["status"], "notprovisioned");
}
