//! Property test through the real component (issue #12): for every action
//! of the catalog, inputs generated from the action's own input JSON Schema
//! — valid values, edge values (empty, huge, unicode, quotes, `%/?#`,
//! extreme numbers, null, wrong types, extra keys, deep nesting) and
//! invalid ones (missing required keys, not an object, not JSON) — go
//! through wasmtime to the in-process emulator. Whatever the input: the
//! call never traps, and every error is a typed connector error with a
//! message; an `invalid-input` error names an input of the call.
//!
//! `D365_PROPERTY_CASES` (per action, default 200) and `D365_PROPERTY_SEED`
//! (default fixed) make runs configurable and reproducible; the summary
//! (executions, errors by kind, failures) is printed (`--nocapture`).
//! The generator is a seeded splitmix64 rather than `proptest`: the inputs
//! come from the schema the component reports at run time, and a failure
//! prints the seed and the exact input to replay it.

mod common;

use common::Env;
use host_test::emulator::store::seed;
use host_test::host::error_json;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Instant;

/// splitmix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// The declared error kinds (the WIT `error-kind` variant).
const KINDS: &[&str] = &[
    "invalid-input",
    "unauthorized",
    "forbidden",
    "not-found",
    "conflict",
    "throttled",
    "dataverse",
    "transport",
    "timeout",
];

const METADATA_ACTIONS: &[&str] = &[
    "listAttributes",
    "queryAttributes",
    "getAttribute",
    "createAttribute",
    "updateAttribute",
];

fn guid(rng: &mut Rng) -> String {
    let a = rng.next();
    let b = rng.next();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn record_id(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => seed::account_id(1 + rng.below(60)),
        1 => seed::contact_id(1 + rng.below(150)),
        2 => seed::opportunity_id(1 + rng.below(40)),
        3 => "accountnumber='A1'".to_string(),
        _ => guid(rng),
    }
}

fn fetch_xml(rng: &mut Rng) -> String {
    let entity = rng.pick(&["account", "contact", "opportunity"]);
    match rng.below(4) {
        0 => format!("<fetch><entity name='{entity}'><all-attributes/></entity></fetch>"),
        1 => format!(
            "<fetch count='{}' page='{}'><entity name='{entity}'><attribute name='name'/>\
             <order attribute='name'/></entity></fetch>",
            1 + rng.below(5),
            1 + rng.below(3)
        ),
        2 => format!(
            "<fetch aggregate='true'><entity name='{entity}'>\
             <attribute name='{entity}id' alias='n' aggregate='count'/></entity></fetch>"
        ),
        _ => format!(
            "<fetch><entity name='{entity}'><filter><condition attribute='name' operator='like' \
             value='%{}%'/></filter></entity></fetch>",
            rng.pick(&["Con", "O'Brien", "&amp;", "100%"])
        ),
    }
}

fn batch_item(rng: &mut Rng) -> Value {
    let collection = rng.pick(&["accounts", "contacts", "leads"]);
    match rng.below(5) {
        0 => json!({"collection": collection, "action": "create",
            "data": {"name": format!("Prop {}", rng.next() % 1000)}}),
        1 => json!({"collection": collection, "action": "get", "key": record_id(rng)}),
        2 => json!({"collection": collection, "action": "update", "key": record_id(rng),
            "data": {"name": "Prop updated"}}),
        3 => json!({"collection": collection, "action": "delete", "key": record_id(rng)}),
        _ => json!({"collection": collection, "action": "upsert", "key": guid(rng),
            "data": {"name": "Prop upsert"}, "returnRepresentation": true}),
    }
}

/// A plausible value for a known input, to reach past validation.
fn domain_value(rng: &mut Rng, action: &str, key: &str) -> Option<Value> {
    let metadata = METADATA_ACTIONS.contains(&action);
    Some(match key {
        "entityType" if action == "getEntityMetadata" => {
            json!(rng.pick(&["account", "contact", "accounts", "new_project"]))
        }
        "entityType" | "collection" | "boundEntitySet" | "targetEntityType" => json!(rng.pick(&[
            "accounts",
            "contacts",
            "opportunities",
            "leads",
            "new_projects"
        ])),
        "entityId" if metadata => json!(rng.pick(&["account", "contact", "new_project"])),
        "entityId" | "targetId" | "boundId" => json!(record_id(rng)),
        "attributeKey" => json!(rng.pick(&[
            "LogicalName='name'",
            "name",
            "new_budget",
            "LogicalName='revenue'"
        ])),
        "attributeType" => json!(rng.pick(&["Money", "String", "Picklist", "Lookup"])),
        "fieldNames" => rng.pick(&[
            json!(["name"]),
            json!("name,revenue"),
            json!([]),
            json!(["LogicalName", "AttributeType"]),
        ]),
        "filter" => json!(rng.pick(&[
            "statecode eq 0",
            "contains(name,'Con')",
            "name eq 'O''Brien'",
            "IsCustomAttribute eq true",
            "revenue gt 1000"
        ])),
        "orderBy" => json!(rng.pick(&["name desc", "createdon desc", "name"])),
        "expand" => json!(rng.pick(&[
            "primarycontactid($select=fullname)",
            "contact_customer_accounts($select=fullname;$top=2)",
            "OptionSet"
        ])),
        "fetchXml" => json!(fetch_xml(rng)),
        "url" => json!(rng.pick(&[
            "/api/data/v9.2/WhoAmI",
            "WhoAmI",
            "accounts?$select=name&$top=2",
            "/api/data/v9.2/accounts",
            "EntityDefinitions(LogicalName='account')"
        ])),
        "navigationProperty" => json!(rng.pick(&[
            "contact_customer_accounts",
            "primarycontactid",
            "account_parent_account"
        ])),
        "name" if action == "executeAction" => json!(rng.pick(&[
            "WhoAmI",
            "WinOpportunity",
            "RetrieveTotalRecordCount",
            "PublishAllXml",
            "CalculateRollupField"
        ])),
        "parameters" => {
            let opportunity = seed::opportunity_id(1 + rng.below(40));
            rng.pick(&[
                json!({"EntityNames": ["account"]}),
                json!({"Status": 3, "OpportunityClose": {
                    "opportunityid@odata.bind": format!("/opportunities({opportunity})")}}),
                json!({}),
            ])
        }
        "fieldValues" | "data" => {
            let name = format!("Prop {}", rng.next() % 1000);
            let contact = seed::contact_id(1 + rng.below(150));
            rng.pick(&[
                json!({"name": name}),
                json!({"name": "Lookup",
                    "primarycontactid@odata.bind": format!("/contacts({contact})")}),
                json!({"revenue": 12.5, "numberofemployees": 3}),
            ])
        }
        "dynamicValues" | "headers" | "queryParams" | "formData" => rng.pick(&[
            json!([{"key": "name", "value": "Dyn"}]),
            json!({"name": "Dyn"}),
            json!([]),
        ]),
        "batchActions" => {
            let n = 1 + rng.below(4);
            Value::Array((0..n).map(|_| batch_item(rng)).collect())
        }
        "attributeBody" => json!({
            "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
            "SchemaName": format!("new_Prop{}", rng.next() % 10_000),
            "LogicalName": "new_budget",
            "MaxLength": 100,
            "DisplayName": {"LocalizedLabels": [{"Label": "Prop", "LanguageCode": 1033}]}
        }),
        "impersonateUserId" => json!(guid(rng)),
        "includeAnnotations" => {
            json!(rng.pick(&["*", "OData.Community.Display.V1.FormattedValue"]))
        }
        "nextPage" | "nextLink" | "state" => json!(format!(
            "http://localhost/api/data/v9.2/accounts?$skiptoken={}",
            rng.next() % 100
        )),
        "entityTypeFilter" | "defaultSelected" => {
            rng.pick(&[json!(["account", "Contact"]), json!("lead"), json!([])])
        }
        "fileData" => json!("aGVsbG8="),
        "fileContent" => rng.pick(&[
            json!("aGVsbG8="),
            json!("data:text/plain;base64,aGk="),
            json!("not base64"),
            json!(""),
        ]),
        "columnName" => json!(rng.pick(&["new_document", "entityimage", "name", "Bad Column"])),
        "fileName" => json!(rng.pick(&["a.txt", "résumé.pdf", ""])),
        "solutionUniqueName" => json!("widgets"),
        _ => return None,
    })
}

/// Makes related inputs agree (a record of the named table, a FetchXML of
/// the entity set, a linked pair), so that more calls get past Dataverse's
/// own checks and reach the code that handles its answers.
fn cohere(rng: &mut Rng, action: &str, inputs: &mut Map<String, Value>) {
    let account = seed::account_id(1 + rng.below(60));
    let contact = seed::contact_id(1 + rng.below(150));
    match action {
        "getEntity" | "updateEntity" | "deleteEntity" | "upsertEntity" | "uploadFile"
        | "downloadFile" | "deleteFile" => {
            let (set, id) = match rng.below(3) {
                0 => ("contacts", contact),
                1 => ("opportunities", seed::opportunity_id(1 + rng.below(40))),
                _ => ("accounts", account),
            };
            inputs.insert("entityType".into(), json!(set));
            inputs.insert("entityId".into(), json!(id));
            if inputs.contains_key("fieldValues") && set != "accounts" {
                inputs.insert("fieldValues".into(), json!({"description": "Prop"}));
            }
        }
        "runFetchXml" | "queryEntities" | "recordChanges" => {
            let (set, entity) = rng.pick(&[("accounts", "account"), ("contacts", "contact")]);
            inputs.insert("entityType".into(), json!(set));
            if action == "runFetchXml" {
                inputs.insert(
                    "fetchXml".into(),
                    json!(format!(
                        "<fetch count='{}'><entity name='{entity}'><attribute name='{entity}id'/></entity></fetch>",
                        1 + rng.below(50)
                    )),
                );
                inputs.remove("nextPage");
            }
            if action == "queryEntities" {
                inputs.remove("nextPage");
                inputs.remove("expand");
                inputs.remove("filter");
                inputs.insert("fieldNames".into(), json!([]));
            }
            if action == "recordChanges" {
                inputs.remove("state");
                inputs.insert("fieldNames".into(), json!([]));
            }
        }
        "associate" | "disassociate" => {
            inputs.insert("entityType".into(), json!("accounts"));
            inputs.insert("entityId".into(), json!(account));
            if rng.chance(50) {
                inputs.insert(
                    "navigationProperty".into(),
                    json!("contact_customer_accounts"),
                );
                inputs.insert("targetEntityType".into(), json!("contacts"));
                inputs.insert("targetId".into(), json!(contact));
                inputs.remove("singleValued");
            } else {
                inputs.insert("navigationProperty".into(), json!("primarycontactid"));
                inputs.insert("singleValued".into(), json!(true));
                inputs.insert("targetEntityType".into(), json!("contacts"));
                inputs.insert("targetId".into(), json!(contact));
                if action == "disassociate" {
                    inputs.remove("targetId");
                    inputs.remove("targetEntityType");
                }
            }
        }
        "updateAttribute" => {
            inputs.insert("entityId".into(), json!("new_project"));
            inputs.insert(
                "attributeBody".into(),
                json!({"@odata.type": "Microsoft.Dynamics.CRM.MoneyAttributeMetadata",
                    "SchemaName": "new_Budget", "LogicalName": "new_budget",
                    "DisplayName": {"LocalizedLabels": [{"Label": "Prop", "LanguageCode": 1033}]}}),
            );
        }
        _ => {}
    }
}

/// A value the schema allows (types, enums, ranges), for any input.
fn schema_value(rng: &mut Rng, schema: &Value) -> Value {
    if let Some(options) = schema["enum"].as_array() {
        return rng.pick(options);
    }
    if let Some(examples) = schema["examples"].as_array().filter(|e| !e.is_empty())
        && rng.chance(50)
    {
        return rng.pick(examples);
    }
    if let Some(any) = schema["anyOf"].as_array().filter(|a| !a.is_empty()) {
        let choice = rng.pick(any);
        return schema_value(rng, &choice);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    match types.first().copied() {
        Some("boolean") => json!(rng.chance(50)),
        Some("integer") => {
            let min = schema["minimum"].as_i64().unwrap_or(0);
            let max = schema["maximum"].as_i64().unwrap_or(1000).min(min + 1000);
            let n = min + rng.below((max - min + 1) as usize) as i64;
            if types.contains(&"string") && rng.chance(30) {
                json!(n.to_string())
            } else {
                json!(n)
            }
        }
        Some("array") => {
            let n = rng.below(3);
            Value::Array(
                (0..n)
                    .map(|_| schema_value(rng, &schema["items"]))
                    .collect(),
            )
        }
        Some("object") => {
            let mut m = Map::new();
            if let Some(props) = schema["properties"].as_object() {
                for (k, s) in props {
                    m.insert(k.clone(), schema_value(rng, s));
                }
            }
            Value::Object(m)
        }
        Some("string") => json!(format!("v{}", rng.next() % 1000)),
        _ => json!({"name": format!("any {}", rng.next() % 100)}),
    }
}

fn huge(rng: &mut Rng) -> String {
    let unit = rng.pick(&["a", "é", "漢", "🙂", "'", "%2F", "<x>"]);
    unit.repeat(1 + rng.below(70_000))
}

/// An edge value: boundary, hostile or of the wrong type.
fn edge_value(rng: &mut Rng) -> Value {
    match rng.below(22) {
        0 => json!(""),
        1 => json!("   "),
        2 => json!(huge(rng)),
        3 => json!("ü漢字🙂\u{200b}\u{feff}"),
        4 => json!("O'Brien"),
        5 => json!("100%"),
        6 => json!("a/b/../$batch"),
        7 => json!("x?y=1&$top=1"),
        8 => json!("#fragment"),
        9 => json!("\u{0}\u{1}\n\r\t"),
        10 => json!("' or 1 eq 1 or '"),
        11 => json!("\"quoted\" <tag> & {braces}"),
        12 => json!(rng.pick(&[-1i64, 0, i64::MIN, i64::MAX])),
        13 => json!(u64::MAX),
        14 => json!(rng.pick(&[1e308, -0.0, 3.5, -2.5e-300])),
        15 => Value::Null,
        16 => json!(rng.chance(50)),
        17 => json!([]),
        18 => json!({}),
        19 => json!([null, 1, "two", {"three": [3]}]),
        20 => json!({"@odata.type": "#Microsoft.Dynamics.CRM.Nothing", "name": {"nested": [1]}}),
        _ => json!(guid(rng).to_uppercase()),
    }
}

/// Nested arrays `depth` deep, as JSON text (never built as a `Value`, so
/// the test's own stack is not at risk).
fn deep_text(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Valid,
    Edge,
    Invalid,
}

/// One generated input: the JSON text and the extra keys it holds.
fn generate(rng: &mut Rng, action: &Value) -> (Mode, String, Vec<String>) {
    let key = action["key"].as_str().unwrap_or("");
    let schema = &action["inputSchema"];
    let props: Vec<(String, Value)> = schema["properties"]
        .as_object()
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let required: Vec<String> = schema["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mode = match rng.below(10) {
        0..=3 => Mode::Valid,
        4..=7 => Mode::Edge,
        _ => Mode::Invalid,
    };
    let mut inputs = Map::new();
    for (name, s) in &props {
        if !required.contains(name) && !rng.chance(40) {
            continue;
        }
        let v = match domain_value(rng, key, name) {
            Some(v) if rng.chance(75) => v,
            _ => schema_value(rng, s),
        };
        inputs.insert(name.clone(), v);
    }
    if rng.chance(60) {
        cohere(rng, key, &mut inputs);
    }
    let mut extra = Vec::new();
    match mode {
        Mode::Valid => {}
        Mode::Edge => {
            for _ in 0..1 + rng.below(3) {
                if props.is_empty() {
                    break;
                }
                let (name, _) = rng.pick(&props);
                inputs.insert(name, edge_value(rng));
            }
        }
        Mode::Invalid => match rng.below(7) {
            0 if !required.is_empty() => {
                let name = rng.pick(&required);
                inputs.remove(&name);
            }
            1 => {
                let name = rng.pick(&["noSuchInput", "EntityType", "$top", ""]);
                extra.push(name.to_string());
                inputs.insert(name.to_string(), edge_value(rng));
            }
            2 => {
                let text =
                    rng.pick(&["[]", "null", "\"inputs\"", "42", "{not json", "{\"a\":", ""]);
                return (mode, text.to_string(), extra);
            }
            3 if !props.is_empty() => {
                // Deep nesting in one input (JSON-typed or not).
                let (name, _) = rng.pick(&props);
                inputs.remove(&name);
                let depth = rng.pick(&[64, 129, 1000, 20_000]);
                let rest = Value::Object(inputs.clone()).to_string();
                let sep = if rest == "{}" { "" } else { "," };
                let text = format!("{{\"{name}\":{}{sep}{}", deep_text(depth), &rest[1..]);
                return (mode, text, extra);
            }
            4 if key == "runBatch" => {
                let items: Vec<Value> = (0..1001)
                    .map(|i| json!({"collection": "accounts", "action": "get", "key": seed::account_id(1 + i % 60)}))
                    .collect();
                inputs.insert("batchActions".into(), Value::Array(items));
            }
            _ => {
                // A wrong type for every given input.
                for v in inputs.values_mut() {
                    *v = match v {
                        Value::String(_) => json!([1, 2]),
                        Value::Array(_) | Value::Object(_) => json!(42),
                        _ => json!({"x": "y"}),
                    };
                }
            }
        },
    }
    (mode, Value::Object(inputs).to_string(), extra)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn clip(s: &str) -> String {
    if s.len() <= 300 {
        return s.to_string();
    }
    let mut end = 300;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// What is wrong with an error, if anything.
fn check_error(e: &Value, schema_keys: &[String], extra: &[String]) -> Option<String> {
    let kind = e["kind"].as_str().unwrap_or("");
    if !KINDS.contains(&kind) {
        return Some(format!("undeclared kind {kind}"));
    }
    if e["message"].as_str().is_none_or(|m| m.trim().is_empty()) {
        return Some("an error without a message".into());
    }
    if kind == "invalid-input" {
        let input = e["input"].as_str().unwrap_or("");
        let root = input.split(['.', '[', '/']).next().unwrap_or("");
        let named = input == "inputs"
            || schema_keys.iter().any(|k| k == root)
            || extra.iter().any(|k| k == input);
        if input.trim().is_empty() && !extra.iter().any(String::is_empty) {
            return Some("invalid-input names no input".into());
        }
        if !named {
            return Some(format!("invalid-input names '{input}', not an input"));
        }
    }
    None
}

#[tokio::test(start_paused = true)]
async fn generated_inputs_never_trap_and_every_error_is_typed() {
    let cases = env_u64("D365_PROPERTY_CASES", 200);
    let seed = env_u64("D365_PROPERTY_SEED", 0x0d36_5c0f_fee0_0012);
    let actions = common::catalog().await;
    assert!(actions.len() >= 24, "the whole catalog: {}", actions.len());
    let started = Instant::now();
    let mut executions = 0u64;
    let mut oks = 0u64;
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_mode: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_action: Vec<(String, u64, u64)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (index, action) in actions.iter().enumerate() {
        let key = action["key"].as_str().expect("action key").to_string();
        let schema_keys: Vec<String> = action["inputSchema"]["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let mut rng = Rng(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut env = Env::new();
        let mut action_oks = 0;
        for case in 0..cases {
            // A fresh emulator now and then: writes and deletes pile up.
            if case > 0 && case % 100 == 0 {
                env = Env::new();
            }
            let (mode, inputs, extra) = generate(&mut rng, action);
            *by_mode.entry(format!("{mode:?}")).or_default() += 1;
            executions += 1;
            let result = env.invoke_or_trap(&key, &inputs).await;
            let problem = match result {
                Err(trap) => Some(format!("trap: {trap:?}")),
                Ok(Ok(r)) => {
                    if let Some(state) = r.state {
                        env.connection.state = Some(state.into());
                    }
                    oks += 1;
                    action_oks += 1;
                    serde_json::from_str::<Value>(&r.output)
                        .err()
                        .map(|e| format!("output is not JSON ({e})"))
                }
                Ok(Err(e)) => {
                    let e = error_json(&e);
                    *by_kind
                        .entry(e["kind"].as_str().unwrap_or("?").to_string())
                        .or_default() += 1;
                    check_error(&e, &schema_keys, &extra).map(|p| format!("{p}: {e}"))
                }
            };
            if let Some(p) = problem {
                failures.push(format!(
                    "{key} case {case} ({mode:?}, seed {seed:#x}): {}\n    inputs: {}",
                    clip(&p),
                    clip(&inputs)
                ));
            }
        }
        per_action.push((key, cases, action_oks));
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "property: {executions} executions over {} actions in {seconds:.1} s (seed {seed:#x}, {cases} per action)",
        per_action.len()
    );
    println!("  succeeded: {oks}; inputs by mode: {by_mode:?}");
    println!("  errors by kind: {by_kind:?}");
    let quiet: Vec<&str> = per_action
        .iter()
        .filter(|(_, _, ok)| *ok == 0)
        .map(|(k, _, _)| k.as_str())
        .collect();
    let succeeded: Vec<String> = per_action
        .iter()
        .map(|(k, n, ok)| format!("{k} {ok}/{n}"))
        .collect();
    println!("  succeeded per action: {}", succeeded.join(", "));
    println!("  actions that never succeeded: {quiet:?}");
    println!("  failures: {}", failures.len());
    for f in failures.iter().take(30) {
        println!("  {f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {executions} generated calls trapped or returned an untyped error:\n{}",
        failures.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The generator must reach past validation for most actions, or the
    // property says little.
    assert!(
        quiet.len() <= 2 || cases < 50,
        "no generated input succeeded for {quiet:?}"
    );
}
