//! Dataverse search (the relevance search index): `searchRecords`,
//! `suggestRecords`, `autocompleteSearch` and `getSearchStatus`, through the
//! native search 2.0 endpoint (`POST {org}/api/search/v2.0/query|suggest|
//! autocomplete`, `GET …/status`).
//!
//! Microsoft Learn, "Search for Dataverse records" and its pages query,
//! suggest, autocomplete and status (power-apps/developer/data-platform/
//! search/…): the list parameters (`entities`, `facets`, `orderby`,
//! `options`) travel as JSON text inside the JSON body, and the answer is
//! `{"response": "<JSON text>"}`. Both are hidden here: builders give plain
//! lists, and the output is plain JSON.

use crate::actions::action::Action;
use crate::catalog::def::{ActionDef, InputDef, InputType, input};
use crate::client::{Session, parse_json};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::http::Method;
use crate::inputs::{Inputs, describe};
use crate::page::Output;
use crate::types::is_identifier;
use serde_json::{Map, Value, json};

// Input keys, each written once: the definitions and `run` use these.
const SEARCH: &str = "search";
const ENTITIES: &str = "entities";
const FILTER: &str = "filter";
const FACETS: &str = "facets";
const ORDER_BY: &str = "orderBy";
const TOP: &str = "top";
const SKIP: &str = "skip";
const COUNT: &str = "count";
const SEARCH_MODE: &str = "searchMode";
const SEARCH_TYPE: &str = "searchType";
const USE_FUZZY: &str = "useFuzzy";

/// The documented limit of a search term.
const MAX_SEARCH_CHARS: usize = 100;

/// Where an administrator turns search on (Microsoft Learn, "Configure
/// Dataverse search for your environment").
const TURN_ON_HINT: &str = "Dataverse search is off for this environment: an administrator turns it on in the Power Platform admin center (Environments > the environment > Settings > Product > Features > Dataverse search). getSearchStatus shows the state.";

fn search_text(min_chars: usize) -> InputDef {
    let text = "The text to search for (up to 100 characters). Simple syntax: + (and), | (or), - (not), trailing * wildcard, \"exact phrase\"; with Search Type full, Lucene syntax (fuzzy~, proximity, regular expressions).";
    input(SEARCH, "Search Text", InputType::String, text)
        .required()
        .range(min_chars as i64, MAX_SEARCH_CHARS as i64)
        .example(json!("Contoso"))
}

fn entities() -> InputDef {
    let text = "Tables to search (default: every table enabled for search): logical names (account, contact), or objects {name, selectColumns, searchColumns, filter} to choose the columns returned and searched and filter one table. A plain list, not the escaped JSON text the API takes.";
    input(ENTITIES, "Tables", InputType::Json, text).example(json!([
        "contact",
        {"name": "account", "selectColumns": ["name", "address1_city"], "searchColumns": ["name"], "filter": "statecode eq 0"}
    ]))
}

fn filter() -> InputDef {
    input(
        FILTER,
        "Filter",
        InputType::String,
        "A filter over every table's results, in OData syntax, e.g. statecode eq 0 or modifiedon ge 2025-01-01T00:00:00Z; per table: account:revenue gt 100000.",
    )
}

fn search_inputs() -> Vec<InputDef> {
    vec![
        search_text(1),
        entities(),
        filter(),
        input(
            FACETS,
            "Facets",
            InputType::List,
            "Facet definitions, e.g. entityname,count:100 or statecode or createdon,values:2025-01-01T00:00:00|2025-07-01T00:00:00; each comes back with its buckets and counts.",
        ),
        input(
            ORDER_BY,
            "Order By",
            InputType::List,
            "Clauses such as @search.score desc or modifiedon desc, in order of precedence (default: relevance).",
        ),
        input(
            TOP,
            "Top",
            InputType::Integer,
            "At most this many results (1–100; Dataverse returns 50 by default).",
        )
        .range(1, 100),
        input(
            SKIP,
            "Skip",
            InputType::Integer,
            "Results to skip: with Top, pages through the results.",
        )
        .range(0, 100_000),
        input(
            COUNT,
            "Return Total Count",
            InputType::Boolean,
            "Return totalCount, the number of matches whatever Top and Skip say.",
        )
        .default(json!(false)),
        input(
            SEARCH_MODE,
            "Search Mode",
            InputType::String,
            "any: a result matches any of the terms; all: every term must match.",
        )
        .default(json!("any"))
        .choices(&["any", "all"]),
        input(
            SEARCH_TYPE,
            "Search Type",
            InputType::String,
            "simple (the default syntax) or full (Lucene syntax: fuzzy search, term boosting, proximity, regular expressions).",
        )
        .default(json!("simple"))
        .choices(&["simple", "full"]),
    ]
}

fn suggest_inputs() -> Vec<InputDef> {
    vec![
        search_text(3),
        entities(),
        filter(),
        input(
            ORDER_BY,
            "Order By",
            InputType::List,
            "Clauses such as modifiedon desc, in order of precedence.",
        ),
        input(
            TOP,
            "Top",
            InputType::Integer,
            "At most this many suggestions (1–100; Dataverse returns 5 by default).",
        )
        .range(1, 100),
        input(
            USE_FUZZY,
            "Use Fuzzy Search",
            InputType::Boolean,
            "Match misspellings too (a character or two off).",
        )
        .default(json!(false)),
    ]
}

fn autocomplete_inputs() -> Vec<InputDef> {
    vec![
        search_text(1),
        entities(),
        filter(),
        input(
            USE_FUZZY,
            "Use Fuzzy Search",
            InputType::Boolean,
            "Complete misspelled text too (a character or two off).",
        )
        .default(json!(false)),
    ]
}

pub const SEARCH_RECORDS: Action = Action {
    def: ActionDef {
        key: "searchRecords",
        label: "Search Rows",
        description: "Dataverse search across tables by relevance, as people remember things (a misspelled name, part of an email): results with their table, id, columns, highlighted matches and score, optional facets and total count.",
        deprecated: false,
        input_defs: search_inputs,
    },
    run: |s, i| search_records(s, i).map(Output::from),
};

pub const SUGGEST_RECORDS: Action = Action {
    def: ActionDef {
        key: "suggestRecords",
        label: "Suggest Rows",
        description: "Records whose primary column matches what was typed so far (at least 3 characters), for a search box's drop-down: each with the suggested text (matches marked) and the record's columns.",
        deprecated: false,
        input_defs: suggest_inputs,
    },
    run: |s, i| suggest_records(s, i).map(Output::from),
};

pub const AUTOCOMPLETE_SEARCH: Action = Action {
    def: ActionDef {
        key: "autocompleteSearch",
        label: "Autocomplete Search",
        description: "Completes the search text being typed from the terms in the search index.",
        deprecated: false,
        input_defs: autocomplete_inputs,
    },
    run: |s, i| autocomplete(s, i).map(Output::from),
};

pub const GET_SEARCH_STATUS: Action = Action {
    def: ActionDef {
        key: "getSearchStatus",
        label: "Get Search Status",
        description: "Whether Dataverse search is on for the environment, and which tables (and columns) it indexes.",
        deprecated: false,
        input_defs: Vec::new,
    },
    run: |s, _| search_status(s).map(Output::from),
};

/// The search term, checked as documented (1–100 characters; suggest
/// needs 3).
fn term(inputs: &Inputs, min_chars: usize) -> Result<String> {
    let text = inputs.expect_str(SEARCH)?.trim();
    let chars = text.chars().count();
    if chars < min_chars {
        let what = if min_chars == 1 {
            "must not be empty".to_string()
        } else {
            format!("needs at least {min_chars} characters, got {chars}")
        };
        return Err(ConnectorError::invalid_input(SEARCH, what));
    }
    if chars > MAX_SEARCH_CHARS {
        return Err(ConnectorError::invalid_input(
            SEARCH,
            format!("has {chars} characters; Dataverse search takes at most {MAX_SEARCH_CHARS}"),
        ));
    }
    Ok(text.to_string())
}

/// One `entities` item as the API takes it.
fn search_entity(i: usize, item: &Value) -> Result<Value> {
    let at = |field: &str| format!("{ENTITIES}[{i}]{field}");
    let name_ok = |n: &str| is_identifier(n) && n.chars().all(|c| !c.is_ascii_uppercase());
    match item {
        Value::String(name) if name_ok(name.trim()) => Ok(json!({"name": name.trim()})),
        Value::String(name) => Err(ConnectorError::invalid_input(
            at(""),
            format!("'{name}' is not a table's logical name (lower case, e.g. account)"),
        )),
        Value::Object(fields) => {
            let mut out = Map::new();
            for (key, value) in fields {
                match key.as_str() {
                    "name" => match value.as_str().map(str::trim) {
                        Some(n) if name_ok(n) => {
                            out.insert("name".into(), Value::from(n));
                        }
                        _ => {
                            return Err(ConnectorError::invalid_input(
                                at(".name"),
                                "must be a table's logical name (lower case, e.g. account)",
                            ));
                        }
                    },
                    "selectColumns" | "searchColumns" => {
                        let columns = value
                            .as_array()
                            .filter(|c| c.iter().all(|c| c.as_str().is_some_and(is_identifier)));
                        let Some(columns) = columns else {
                            return Err(ConnectorError::invalid_input(
                                at(&format!(".{key}")),
                                "must be a list of column logical names",
                            ));
                        };
                        out.insert(key.clone(), Value::Array(columns.clone()));
                    }
                    "filter" => match value {
                        Value::String(f) => {
                            out.insert("filter".into(), Value::from(f.as_str()));
                        }
                        other => {
                            return Err(ConnectorError::invalid_input(
                                at(".filter"),
                                format!("must be a string, got {}", describe(other)),
                            ));
                        }
                    },
                    other => {
                        return Err(ConnectorError::invalid_input(
                            at(&format!(".{other}")),
                            "is not a field of a table (name, selectColumns, searchColumns, filter)",
                        ));
                    }
                }
            }
            if !out.contains_key("name") {
                return Err(ConnectorError::invalid_input(at(".name"), "is required"));
            }
            Ok(Value::Object(out))
        }
        other => Err(ConnectorError::invalid_input(
            at(""),
            format!("must be a table name or an object, got {}", describe(other)),
        )),
    }
}

/// `entities` as the list the API takes, or `None` for every table.
fn entities_of(inputs: &Inputs) -> Result<Option<Vec<Value>>> {
    let items: Vec<Value> = match inputs.get(ENTITIES)? {
        None => return Ok(None),
        Some(Value::Array(items)) => items.clone(),
        // A comma-separated list of names, as builders send lists.
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Value::from)
            .collect(),
        Some(other) => {
            return Err(ConnectorError::invalid_input(
                ENTITIES,
                format!("must be a list of tables, got {}", describe(other)),
            ));
        }
    };
    if items.is_empty() {
        return Ok(None);
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| search_entity(i, item))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// `orderBy` clauses, checked: a column (or `@search.score`) and an
/// optional asc/desc.
fn order_by_of(inputs: &Inputs) -> Result<Vec<String>> {
    let clauses = inputs.list(ORDER_BY)?;
    for clause in &clauses {
        let mut words = clause.split_whitespace();
        let column = words.next().unwrap_or("");
        let direction = words.next().map(str::to_ascii_lowercase);
        let column_ok = column == "@search.score" || is_identifier(column);
        let direction_ok = matches!(direction.as_deref(), None | Some("asc") | Some("desc"));
        if !column_ok || !direction_ok || words.next().is_some() {
            return Err(ConnectorError::invalid_input(
                ORDER_BY,
                format!("'{clause}' is not a column (or @search.score) followed by asc or desc"),
            ));
        }
    }
    Ok(clauses)
}

/// A list parameter as the API takes it: JSON text.
fn json_text(items: &[Value]) -> Value {
    Value::String(Value::Array(items.to_vec()).to_string())
}

fn strings(items: &[String]) -> Vec<Value> {
    items.iter().map(|s| Value::from(s.as_str())).collect()
}

/// The body every search operation shares: search, entities, filter.
fn common_body(inputs: &Inputs, min_chars: usize) -> Result<(Map<String, Value>, Vec<String>)> {
    let mut body = Map::new();
    body.insert("search".into(), Value::from(term(inputs, min_chars)?));
    let mut names = Vec::new();
    if let Some(entities) = entities_of(inputs)? {
        names = entities
            .iter()
            .filter_map(|e| e.get("name").and_then(Value::as_str).map(str::to_string))
            .collect();
        body.insert("entities".into(), json_text(&entities));
    }
    if let Some(f) = inputs.str(FILTER)?.filter(|f| !f.trim().is_empty()) {
        body.insert("filter".into(), Value::from(f));
    }
    Ok((body, names))
}

/// Sends one search operation and returns its answer, unwrapped from the
/// `response` text.
fn call(
    session: &mut Session<'_>,
    method: Method,
    operation: &str,
    body: Option<Map<String, Value>>,
    tables: &[String],
) -> Result<Value> {
    let url = search_url(session, operation)?;
    // Every search operation only reads the index: safe to repeat.
    let mut request = session.request_to(method, url).reads_only();
    if let Some(body) = body {
        request = request.json_body(&Value::Object(body));
    }
    let response = match session.send_ok(request) {
        Ok(r) => r,
        Err(e) => return Err(explain(e, tables)),
    };
    let answer = unwrap_response(parse_json(&response)?)?;
    // The index's own error, inside a 200 (Microsoft Learn: ErrorDetail).
    if let Some(error) = answer.get("Error").filter(|e| !e.is_null()) {
        let code = error
            .get("Code")
            .and_then(Value::as_str)
            .map(str::to_string);
        let message = error
            .get("Message")
            .and_then(Value::as_str)
            .unwrap_or("the search index answered with an error");
        let mut e = ConnectorError {
            kind: ErrorKind::Dataverse,
            status: Some(response.status),
            code,
            message: message.to_string(),
            hint: None,
            retryable: false,
        };
        if tables.iter().any(|t| message.contains(t.as_str())) {
            e = e.with_hint("A table in entities is not indexed for search: getSearchStatus lists the tables that are.");
        }
        return Err(e);
    }
    Ok(answer)
}

fn search_url(session: &Session<'_>, operation: &str) -> Result<url::Url> {
    let origin = session.web_api().origin();
    url::Url::parse(&format!("{origin}/api/search/v2.0/{operation}"))
        .map_err(|e| ConnectorError::invalid_input("webApiUrl", format!("no search URL ({e})")))
}

/// `{"response": "<JSON text>"}` (or an object, should a server send one)
/// → the JSON it holds.
fn unwrap_response(body: Value) -> Result<Value> {
    match body.get("response") {
        Some(Value::String(text)) => serde_json::from_str(text).map_err(|e| {
            ConnectorError::transport(format!(
                "the search answer's response is not JSON text ({e})"
            ))
        }),
        Some(Value::Object(_)) => Ok(body.get("response").cloned().unwrap_or_default()),
        _ => Err(ConnectorError::transport(
            "the search answer has no response member",
        )),
    }
}

/// Search off, or a table it does not know: what to do about it.
fn explain(e: ConnectorError, tables: &[String]) -> ConnectorError {
    let message = e.message.to_ascii_lowercase();
    // UNCONFIRMED: the exact text Dataverse gives when search is not
    // provisioned; the emulator says "Dataverse search is not enabled".
    if message.contains("search is not enabled") || message.contains("notprovisioned") {
        return e.with_hint(TURN_ON_HINT);
    }
    if e.status == Some(400)
        && let Some(table) = tables.iter().find(|t| e.message.contains(t.as_str()))
    {
        let message = format!(
            "'{table}' is not a table indexed for search ({})",
            e.message
        );
        return ConnectorError {
            kind: ErrorKind::InvalidInput {
                input: ENTITIES.into(),
            },
            message: format!("{ENTITIES}: {message}"),
            hint: Some("getSearchStatus lists the tables Dataverse search indexes; an administrator adds tables in the environment's search settings.".into()),
            ..e
        };
    }
    e
}

fn search_records(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let (mut body, tables) = common_body(inputs, 1)?;
    let count = inputs.bool(COUNT)?;
    body.insert("count".into(), Value::from(count));
    let facets = inputs.list(FACETS)?;
    if !facets.is_empty() {
        body.insert("facets".into(), json_text(&strings(&facets)));
    }
    let order = order_by_of(inputs)?;
    if !order.is_empty() {
        body.insert("orderby".into(), json_text(&strings(&order)));
    }
    if let Some(top) = inputs.u64(TOP)? {
        body.insert("top".into(), Value::from(top));
    }
    if let Some(skip) = inputs.u64(SKIP)? {
        body.insert("skip".into(), Value::from(skip));
    }
    let mut options = Vec::new();
    if inputs.expect_str(SEARCH_TYPE)?.eq_ignore_ascii_case("full") {
        options.push(Value::from("lucene"));
    }
    if inputs.expect_str(SEARCH_MODE)?.eq_ignore_ascii_case("all") {
        // UNCONFIRMED spelling: Microsoft Learn's query page lists the
        // option as written here.
        options.push(Value::from("searchmodelall"));
    }
    if !options.is_empty() {
        body.insert("options".into(), json_text(&options));
    }
    let answer = call(session, Method::Post, "query", Some(body), &tables)?;
    let results: Vec<Value> = answer
        .get("Value")
        .and_then(Value::as_array)
        .map(|items| items.iter().map(result).collect())
        .unwrap_or_default();
    // Count is -1 when it was not asked for (Microsoft Learn).
    let total = answer
        .get("Count")
        .and_then(Value::as_i64)
        .filter(|n| count && *n >= 0);
    Ok(json!({
        "results": results,
        "count": results.len(),
        "totalCount": total,
        "facets": answer.get("Facets").filter(|f| !f.is_null()).cloned().unwrap_or_else(|| json!({})),
        "queryContext": answer.get("QueryContext").cloned().unwrap_or(Value::Null),
    }))
}

/// One `QueryResult`, with camelCase names.
fn result(item: &Value) -> Value {
    renamed(
        item,
        &[
            ("Id", "id"),
            ("EntityName", "entityName"),
            ("ObjectTypeCode", "objectTypeCode"),
            ("Attributes", "attributes"),
            ("Highlights", "highlights"),
            ("Score", "score"),
        ],
    )
}

/// `item`'s members under new names (`(from, to)`), a missing one null.
/// Size: one loop over a table instead of a `json!` per output shape.
#[inline(never)]
fn renamed(item: &Value, names: &[(&str, &str)]) -> Value {
    let mut out = Map::new();
    for (from, to) in names {
        let value = item.get(*from).cloned().unwrap_or(Value::Null);
        out.insert((*to).to_string(), value);
    }
    Value::Object(out)
}

fn suggest_records(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let (mut body, tables) = common_body(inputs, 3)?;
    body.insert("fuzzy".into(), Value::from(inputs.bool(USE_FUZZY)?));
    let order = order_by_of(inputs)?;
    if !order.is_empty() {
        body.insert("orderby".into(), json_text(&strings(&order)));
    }
    if let Some(top) = inputs.u64(TOP)? {
        body.insert("top".into(), Value::from(top));
    }
    let answer = call(session, Method::Post, "suggest", Some(body), &tables)?;
    let results: Vec<Value> = answer
        .get("Value")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|s| renamed(s, &[("Text", "text"), ("Document", "document")]))
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({"results": results, "count": results.len()}))
}

fn autocomplete(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let (mut body, tables) = common_body(inputs, 1)?;
    body.insert("fuzzy".into(), Value::from(inputs.bool(USE_FUZZY)?));
    let answer = call(session, Method::Post, "autocomplete", Some(body), &tables)?;
    Ok(json!({"value": answer.get("Value").cloned().unwrap_or(Value::Null)}))
}

/// One table of the status answer, with camelCase names and its indexed
/// columns as a list.
fn status_table(t: &Value) -> Value {
    let mut out = renamed(
        t,
        &[
            ("entitylogicalname", "entityName"),
            ("objecttypecode", "objectTypeCode"),
            ("primarynamefield", "primaryNameColumn"),
            ("entitystatus", "status"),
        ],
    );
    let columns: Vec<Value> = t
        .get("searchableindexedfieldinfomap")
        .and_then(Value::as_object)
        .map(|m| m.keys().map(|k| Value::from(k.as_str())).collect())
        .unwrap_or_default();
    out["columns"] = Value::Array(columns);
    out
}

fn search_status(session: &mut Session<'_>) -> Result<Value> {
    let answer = call(session, Method::Get, "status", None, &[])?;
    let value = answer.get("value").cloned().unwrap_or(answer);
    let status = value
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let tables: Vec<Value> = value
        .get("entitystatusresults")
        .and_then(Value::as_array)
        .map(|items| items.iter().map(status_table).collect())
        .unwrap_or_default();
    let mut out = renamed(
        &value,
        &[
            ("lockboxstatus", "lockboxStatus"),
            ("cmkstatus", "cmkStatus"),
        ],
    );
    out["enabled"] = Value::from(status == "provisioned");
    out["status"] = Value::from(status.as_str());
    out["tables"] = Value::Array(tables);
    if status != "provisioned" {
        out["hint"] = Value::from(TURN_ON_HINT);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::def::ActionDef;

    fn parse(def: &ActionDef, json: &str) -> Inputs {
        Inputs::parse(def, json).unwrap()
    }

    fn input_of(e: ConnectorError) -> String {
        match e.kind {
            ErrorKind::InvalidInput { input } => input,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn search_terms_are_checked_before_sending() {
        let def = SEARCH_RECORDS.def;
        let empty = parse(&def, r#"{"search":"  "}"#);
        assert_eq!(input_of(term(&empty, 1).unwrap_err()), "search");
        let long = parse(&def, &format!(r#"{{"search":"{}"}}"#, "x".repeat(101)));
        assert_eq!(input_of(term(&long, 1).unwrap_err()), "search");
        let short = parse(&SUGGEST_RECORDS.def, r#"{"search":"ab"}"#);
        let e = term(&short, 3).unwrap_err();
        assert!(e.message.contains("at least 3"), "{}", e.message);
        assert_eq!(
            term(&parse(&def, r#"{"search":" Contoso "}"#), 1).unwrap(),
            "Contoso"
        );
    }

    #[test]
    fn entities_are_a_plain_list_sent_as_json_text() {
        let def = SEARCH_RECORDS.def;
        let i = parse(
            &def,
            r#"{"search":"x","entities":["contact",{"name":"account","selectColumns":["name"],"filter":"statecode eq 0"}]}"#,
        );
        let (body, tables) = common_body(&i, 1).unwrap();
        assert_eq!(tables, vec!["contact", "account"]);
        let text = body["entities"].as_str().unwrap();
        let back: Value = serde_json::from_str(text).unwrap();
        assert_eq!(back[0], json!({"name": "contact"}));
        assert_eq!(back[1]["selectColumns"], json!(["name"]));
        let names = parse(&def, r#"{"search":"x","entities":"account, contact"}"#);
        assert_eq!(
            common_body(&names, 1).unwrap().1,
            vec!["account", "contact"]
        );
        for (bad, input) in [
            (r#"["Account"]"#, "entities[0]"),
            (
                r#"[{"name":"account","columns":["x"]}]"#,
                "entities[0].columns",
            ),
            (r#"[{"selectColumns":["x"]}]"#, "entities[0].name"),
            (
                r#"[{"name":"account","searchColumns":"name"}]"#,
                "entities[0].searchColumns",
            ),
            (r#"[7]"#, "entities[0]"),
            (r#"{"name":"account"}"#, "entities"),
        ] {
            let i = parse(&def, &format!(r#"{{"search":"x","entities":{bad}}}"#));
            assert_eq!(input_of(common_body(&i, 1).unwrap_err()), input, "{bad}");
        }
    }

    #[test]
    fn order_by_clauses_are_checked() {
        let def = SEARCH_RECORDS.def;
        let ok = parse(
            &def,
            r#"{"search":"x","orderBy":["@search.score desc","modifiedon"]}"#,
        );
        assert_eq!(order_by_of(&ok).unwrap().len(), 2);
        let bad = parse(&def, r#"{"search":"x","orderBy":["name sideways"]}"#);
        assert_eq!(input_of(order_by_of(&bad).unwrap_err()), "orderBy");
    }

    #[test]
    fn the_response_text_is_unwrapped() {
        let wrapped = json!({"response": "{\"Value\":[],\"Count\":3}"});
        assert_eq!(unwrap_response(wrapped).unwrap()["Count"], 3);
        assert_eq!(
            unwrap_response(json!({"response": {"Count": 1}})).unwrap()["Count"],
            1
        );
        assert!(unwrap_response(json!({"response": "not json"})).is_err());
        assert!(unwrap_response(json!({})).is_err());
        let r = result(&json!({"Id": "1", "EntityName": "account", "Score": 2.5}));
        assert_eq!(r["entityName"], "account");
        assert_eq!(r["highlights"], Value::Null);
    }
}
