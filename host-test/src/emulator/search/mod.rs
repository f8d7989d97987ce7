//! Dataverse search 2.0: `POST /api/search/v2.0/query`, `…/suggest`,
//! `…/autocomplete` and `GET …/status` (Microsoft Learn, "Search for
//! Dataverse records" and its query, suggest, autocomplete and status pages,
//! power-apps/developer/data-platform/search/…).
//!
//! As documented: the list parameters (`entities`, `facets`, `orderby`,
//! `options`) arrive as JSON text inside the JSON body; every answer is
//! `{"response": "<JSON text>"}`; a result carries `Id`, `EntityName`,
//! `ObjectTypeCode`, `Attributes`, `Highlights` (matches between
//! `{crmhit}` and `{/crmhit}`) and `Score`; `Count` is -1 unless asked for;
//! `top` is at most 100 (default 50), suggest's 5. Status says
//! `notprovisioned` when search is off, and then the other operations fail.
//! The matching itself is in [`index`].

pub mod index;

use crate::emulator::odata::eval::Context;
use crate::emulator::odata::filter::{Expr, parse_filter};
use crate::emulator::store::Record;
use crate::emulator::store::schema::EntityDef;
use crate::emulator::{EmuRequest, EmuResponse, State, response, webapi};
use bytes::Bytes;
use index::{Hit, Term};
use serde_json::{Map, Value, json};
use std::cmp::Ordering;
use std::collections::HashMap;

/// Dataverse's default and largest `top` for query.
const DEFAULT_TOP: usize = 50;
const MAX_TOP: usize = 100;
/// The longest search text.
const MAX_SEARCH_CHARS: usize = 100;

/// UNCONFIRMED: the code and text Dataverse answers with when search is
/// not provisioned for the environment (the status operation's
/// `notprovisioned` is documented; the error is not).
const NOT_ENABLED_CODE: &str = "0x80048d0b";
const NOT_ENABLED: &str = "Dataverse search is not enabled for this environment.";

pub fn handle(state: &mut State, request: &EmuRequest) -> EmuResponse {
    let path = request.uri().path();
    let Some(operation) = path.strip_prefix("/api/search/v2.0/") else {
        return response::odata_error(
            404,
            "0x8006088a",
            &format!(
                "Resource not found for the segment '{}'.",
                path.trim_start_matches('/')
            ),
        );
    };
    if let Err(refused) = webapi::authenticate(state, request) {
        return refused;
    }
    let method = request.method().clone();
    let result = match (operation, method) {
        ("status", http::Method::GET) => Ok(status(state)),
        ("statistics", http::Method::GET) if state.config.search_enabled => Ok(statistics(state)),
        ("query" | "suggest" | "autocomplete", http::Method::POST) => {
            if !state.config.search_enabled {
                Err(error(400, NOT_ENABLED_CODE, NOT_ENABLED.to_string()))
            } else {
                body_of(request).and_then(|body| match operation {
                    "query" => query(state, &body),
                    "suggest" => suggest(state, &body),
                    _ => autocomplete(state, &body),
                })
            }
        }
        ("statistics", http::Method::GET) => {
            Err(error(400, NOT_ENABLED_CODE, NOT_ENABLED.to_string()))
        }
        ("status" | "statistics" | "query" | "suggest" | "autocomplete", m) => Err(error(
            405,
            "0x80060888",
            format!("The HTTP method '{m}' is not allowed for '{operation}'."),
        )),
        _ => Err(error(
            404,
            "0x8006088a",
            format!("Resource not found for the segment '{operation}'."),
        )),
    };
    match result {
        Ok(inner) => wrapped(&inner),
        Err(e) => e,
    }
}

/// An error as the Web API writes them.
fn error(status: u16, code: &str, message: String) -> EmuResponse {
    response::odata_error(status, code, &message)
}

fn bad(message: impl Into<String>) -> EmuResponse {
    error(400, "0x80040203", message.into())
}

/// `{"response": "<JSON text>"}`.
fn wrapped(inner: &Value) -> EmuResponse {
    let body = json!({"response": inner.to_string()});
    http::Response::builder()
        .status(200)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(Bytes::from(body.to_string()))
        .unwrap_or_default()
}

fn body_of(request: &EmuRequest) -> Result<Map<String, Value>, EmuResponse> {
    match serde_json::from_slice::<Value>(request.body()) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("The request body must be a JSON object.")),
        Err(e) => Err(bad(format!("The request body is not valid JSON: {e}"))),
    }
}

/// A list parameter: JSON text holding an array (as documented), or an
/// array given directly.
fn list_param(body: &Map<String, Value>, name: &str) -> Result<Vec<Value>, EmuResponse> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(Vec::new()),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => Ok(items),
            _ => Err(bad(format!("The parameter '{name}' is not a JSON array."))),
        },
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(_) => Err(bad(format!("The parameter '{name}' is not a JSON array."))),
    }
}

fn search_text(body: &Map<String, Value>, min_chars: usize) -> Result<String, EmuResponse> {
    let text = body
        .get("search")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    let n = text.chars().count();
    if n < min_chars {
        return Err(bad(format!(
            "The search term must be at least {min_chars} character{} long.",
            if min_chars == 1 { "" } else { "s" }
        )));
    }
    if n > MAX_SEARCH_CHARS {
        return Err(bad(format!(
            "The search term exceeds the limit of {MAX_SEARCH_CHARS} characters."
        )));
    }
    Ok(text.to_string())
}

fn usize_param(body: &Map<String, Value>, name: &str) -> Result<Option<usize>, EmuResponse> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            bad(format!(
                "The parameter '{name}' must be a non-negative integer."
            ))
        }),
    }
}

/// One table searched: what is searched, what is returned, its filter.
struct Scope<'a> {
    entity: &'a EntityDef,
    search_columns: Vec<String>,
    select_columns: Vec<String>,
    filter: Option<Expr>,
}

/// The tables a request searches (`entities`, or every indexed one).
fn scopes<'a>(state: &'a State, body: &Map<String, Value>) -> Result<Vec<Scope<'a>>, EmuResponse> {
    let schema = state.store.schema();
    let entity_of = |name: &str| {
        schema
            .by_logical_name(name)
            .filter(|e| !index::indexed_columns(e).is_empty())
            .ok_or_else(|| {
                // UNCONFIRMED: Dataverse's text for a table not enabled for
                // search.
                bad(format!(
                    "The entity '{name}' is not enabled for Dataverse search."
                ))
            })
    };
    let items = list_param(body, "entities")?;
    if items.is_empty() {
        return index::INDEXED
            .iter()
            .filter_map(|(name, _)| schema.by_logical_name(name))
            .map(|entity| {
                Ok(Scope {
                    entity,
                    search_columns: index::indexed_columns(entity)
                        .iter()
                        .map(|c| c.to_string())
                        .collect(),
                    select_columns: Vec::new(),
                    filter: None,
                })
            })
            .collect();
    }
    items
        .iter()
        .map(|item| {
            let name = item.get("name").and_then(Value::as_str).unwrap_or("");
            let entity = entity_of(name)?;
            let columns = |field: &str| -> Result<Vec<String>, EmuResponse> {
                let list = item
                    .get(field)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                list.iter()
                    .map(|c| {
                        let c = c.as_str().unwrap_or("");
                        entity.attribute(c).map(|_| c.to_string()).ok_or_else(|| {
                            bad(format!(
                                "The column '{c}' in {field} does not exist on the entity '{name}'."
                            ))
                        })
                    })
                    .collect()
            };
            let mut search_columns = columns("searchColumns")?;
            if search_columns.is_empty() {
                // Documented: only the primary name is searched by default.
                search_columns.push(entity.primary_name.to_string());
            }
            let filter = match item.get("filter").and_then(Value::as_str) {
                Some(f) if !f.trim().is_empty() => Some(
                    parse_filter(f, &HashMap::new())
                        .map_err(|e| error(e.status, &e.code, e.message))?,
                ),
                _ => None,
            };
            Ok(Scope {
                entity,
                search_columns,
                select_columns: columns("selectColumns")?,
                filter,
            })
        })
        .collect()
}

/// The request-wide `filter`: `table:expr` for one table, or `expr` for
/// every table that has its columns.
fn global_filter(body: &Map<String, Value>) -> Result<Option<(Option<String>, Expr)>, EmuResponse> {
    let Some(text) = body
        .get("filter")
        .and_then(Value::as_str)
        .filter(|f| !f.trim().is_empty())
    else {
        return Ok(None);
    };
    let (table, expr) = match text.split_once(':') {
        Some((t, rest))
            if !t.trim().is_empty()
                && t.trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            (Some(t.trim().to_string()), rest)
        }
        _ => (None, text),
    };
    let expr =
        parse_filter(expr, &HashMap::new()).map_err(|e| error(e.status, &e.code, e.message))?;
    Ok(Some((table, expr)))
}

/// A matched row.
struct Found<'a> {
    scope: usize,
    record: &'a Record,
    hit: Hit,
}

/// Every row of `scopes` that `terms` match and the filters keep.
fn find<'a>(
    state: &'a State,
    scopes: &[Scope<'a>],
    terms: &[Term],
    all: bool,
    global: Option<&(Option<String>, Expr)>,
    columns: impl Fn(&Scope<'a>) -> Vec<String>,
) -> Vec<Found<'a>> {
    let mut found = Vec::new();
    for (i, scope) in scopes.iter().enumerate() {
        let ctx = Context {
            store: &state.store,
            entity: scope.entity,
            now: state.now(),
            user_id: "",
        };
        let global = match global {
            Some((Some(table), _)) if table != scope.entity.logical_name => None,
            // A filter naming columns this table lacks keeps none of it.
            Some((_, expr)) if ctx.check(expr).is_err() => continue,
            Some((_, expr)) => Some(expr),
            None => None,
        };
        let cols = columns(scope);
        let col_refs: Vec<&str> = cols.iter().map(String::as_str).collect();
        for record in state.store.records(scope.entity.logical_name) {
            if scope
                .filter
                .as_ref()
                .is_some_and(|f| !ctx.matches(f, record))
                || global.is_some_and(|f| !ctx.matches(f, record))
            {
                continue;
            }
            if let Some(hit) =
                index::match_record(terms, all, record, &col_refs, scope.entity.primary_name)
            {
                found.push(Found {
                    scope: i,
                    record,
                    hit,
                });
            }
        }
    }
    found
}

/// Every indexed word of the searched columns (for spell correction).
fn vocabulary(state: &State, scopes: &[Scope<'_>]) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for scope in scopes {
        for record in state.store.records(scope.entity.logical_name) {
            for c in &scope.search_columns {
                if let Some(text) = index::text_of(record.get(c)) {
                    words.extend(index::words(&text));
                }
            }
        }
    }
    words.sort();
    words.dedup();
    words
}

fn options(body: &Map<String, Value>) -> Result<Vec<String>, EmuResponse> {
    list_param(body, "options")?
        .iter()
        .map(|o| {
            o.as_str()
                .map(str::to_ascii_lowercase)
                .ok_or_else(|| bad("The parameter 'options' must list strings."))
        })
        .collect()
}

fn query(state: &State, body: &Map<String, Value>) -> Result<Value, EmuResponse> {
    let text = search_text(body, 1)?;
    let options = options(body)?;
    let lucene = options.iter().any(|o| o == "lucene");
    // Documented spelling of the "all terms must match" option.
    let all = options.iter().any(|o| o == "searchmodelall");
    let top = usize_param(body, "top")?.unwrap_or(DEFAULT_TOP);
    if top > MAX_TOP {
        return Err(bad(format!(
            "The value of top must be at most {MAX_TOP}, got {top}."
        )));
    }
    let skip = usize_param(body, "skip")?.unwrap_or(0);
    let count = body.get("count").and_then(Value::as_bool).unwrap_or(false);
    let scopes = scopes(state, body)?;
    let global = global_filter(body)?;
    let mut terms = index::parse(&text, lucene);
    let search_columns = |s: &Scope<'_>| s.search_columns.clone();
    let mut found = find(state, &scopes, &terms, all, global.as_ref(), search_columns);
    let mut context = Value::Null;
    if found.is_empty() {
        let corrections = index::correct(&mut terms, &vocabulary(state, &scopes));
        if !corrections.is_empty() {
            found = find(state, &scopes, &terms, all, global.as_ref(), search_columns);
            let mut altered = text.to_lowercase();
            for (from, to) in &corrections {
                altered = altered.replace(from.as_str(), to);
            }
            context = json!({
                "OriginalQuery": text,
                "AlteredQuery": altered,
                "Reason": ["SpellCorrection"],
                "SpellSuggestions": corrections.iter().map(|(_, to)| to.clone()).collect::<Vec<_>>(),
            });
        }
    }
    sort(&mut found, &list_param(body, "orderby")?)?;
    let facets = facets(&found, &scopes, &list_param(body, "facets")?)?;
    let total = found.len();
    let value: Vec<Value> = found
        .iter()
        .skip(skip)
        .take(top)
        .map(|f| result(&scopes[f.scope], f))
        .collect();
    Ok(json!({
        "Error": null,
        "Value": value,
        "Facets": facets,
        "QueryContext": context,
        "Count": if count { total as i64 } else { -1 },
    }))
}

/// Results by `orderby` (`@search.score` or a column, asc/desc), else by
/// score, best first; ties by id so that answers are stable.
fn sort(found: &mut [Found<'_>], orderby: &[Value]) -> Result<(), EmuResponse> {
    let mut keys = Vec::new();
    for clause in orderby {
        let clause = clause.as_str().unwrap_or("");
        let mut words = clause.split_whitespace();
        let column = words.next().unwrap_or("").to_string();
        let descending = match words.next() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(bad(format!("The orderby clause '{clause}' is not valid."))),
        };
        keys.push((column, descending));
    }
    if keys.is_empty() {
        keys.push(("@search.score".to_string(), true));
    }
    found.sort_by(|a, b| {
        for (column, descending) in &keys {
            let o = if column == "@search.score" {
                a.hit
                    .score
                    .partial_cmp(&b.hit.score)
                    .unwrap_or(Ordering::Equal)
            } else {
                compare(a.record.get(column), b.record.get(column))
            };
            let o = if *descending { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.record.id.cmp(&b.record.id)
    });
    Ok(())
}

fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// One `QueryResult`.
fn result(scope: &Scope<'_>, f: &Found<'_>) -> Value {
    let entity = scope.entity;
    let mut attributes = Map::new();
    // Documented: the primary name always, plus selectColumns.
    let mut columns = vec![entity.primary_name.to_string()];
    columns.extend(scope.select_columns.iter().cloned());
    for c in columns {
        attributes.insert(c.clone(), f.record.get(&c).clone());
    }
    json!({
        "Id": f.record.id,
        "EntityName": entity.logical_name,
        "ObjectTypeCode": entity.object_type_code(),
        "Attributes": attributes,
        "Highlights": f.hit.highlights,
        "Score": f.hit.score,
    })
}

/// `facets`: each `field[,count:N][,sort:count|-count|value|-value]`;
/// `entityname` groups by table. Buckets are `{Type: "Value", Value,
/// Count}`. (Ranges, `values:` and `interval:`, are not modelled: 400.)
fn facets(
    found: &[Found<'_>],
    scopes: &[Scope<'_>],
    specs: &[Value],
) -> Result<Value, EmuResponse> {
    let mut out = Map::new();
    for spec in specs {
        let spec = spec.as_str().unwrap_or("");
        let mut parts = spec.split(',');
        let field = parts.next().unwrap_or("").trim().to_string();
        let (mut limit, mut order) = (10usize, "count".to_string());
        for p in parts {
            match p.trim().split_once(':') {
                Some(("count", n)) => {
                    limit = n
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("The facet '{spec}' is not valid.")))?;
                }
                Some(("sort", s)) => order = s.trim().to_string(),
                _ => {
                    return Err(bad(format!(
                        "The facet option in '{spec}' is not supported."
                    )));
                }
            }
        }
        let (table, column) = match field.split_once(':') {
            Some((t, c)) => (Some(t.to_string()), c.to_string()),
            None => (None, field.clone()),
        };
        let mut buckets: Vec<(Value, usize)> = Vec::new();
        for f in found {
            let scope = &scopes[f.scope];
            if table
                .as_deref()
                .is_some_and(|t| t != scope.entity.logical_name)
            {
                continue;
            }
            let value = if column == "entityname" {
                Value::from(scope.entity.logical_name)
            } else if scope.entity.attribute(&column).is_some() {
                f.record.get(&column).clone()
            } else {
                continue;
            };
            match buckets.iter_mut().find(|(v, _)| *v == value) {
                Some((_, n)) => *n += 1,
                None => buckets.push((value, 1)),
            }
        }
        buckets.sort_by(|(va, na), (vb, nb)| match order.as_str() {
            "-count" => na.cmp(nb).then_with(|| compare(va, vb)),
            "value" => compare(va, vb),
            "-value" => compare(vb, va),
            _ => nb.cmp(na).then_with(|| compare(va, vb)),
        });
        buckets.truncate(limit);
        out.insert(
            field,
            Value::Array(
                buckets
                    .into_iter()
                    .map(|(v, n)| json!({"Type": "Value", "Value": v, "Count": n}))
                    .collect(),
            ),
        );
    }
    Ok(Value::Object(out))
}

fn suggest(state: &State, body: &Map<String, Value>) -> Result<Value, EmuResponse> {
    // Documented: suggestions need at least 3 characters.
    let text = search_text(body, 3)?;
    let top = usize_param(body, "top")?.unwrap_or(5);
    if top > MAX_TOP {
        return Err(bad(format!(
            "The value of top must be at most {MAX_TOP}, got {top}."
        )));
    }
    let fuzzy = body.get("fuzzy").and_then(Value::as_bool).unwrap_or(false);
    let scopes = scopes(state, body)?;
    let global = global_filter(body)?;
    // As the user types: every word a prefix of a word in the primary name.
    let mut terms = index::parse(&text, false);
    for t in &mut terms {
        if fuzzy {
            t.fuzzy = Some(1);
        } else {
            t.prefix = true;
        }
    }
    let primary = |s: &Scope<'_>| vec![s.entity.primary_name.to_string()];
    let mut found = find(state, &scopes, &terms, true, global.as_ref(), primary);
    sort(&mut found, &list_param(body, "orderby")?)?;
    let value: Vec<Value> = found
        .iter()
        .take(top)
        .map(|f| {
            let entity = scopes[f.scope].entity;
            let text = f
                .hit
                .highlights
                .get(entity.primary_name)
                .and_then(|h| h.get(0))
                .cloned()
                .unwrap_or(Value::Null);
            let mut document = Map::new();
            document.insert("@search.objectid".into(), Value::from(f.record.id.as_str()));
            document.insert(
                "@search.entityname".into(),
                Value::from(entity.logical_name),
            );
            document.insert(
                "@search.objecttypecode".into(),
                Value::from(entity.object_type_code()),
            );
            document.insert(
                entity.primary_name.to_string(),
                f.record.get(entity.primary_name).clone(),
            );
            json!({"Text": text, "Document": document})
        })
        .collect();
    Ok(json!({"Error": null, "Value": value, "QueryContext": null}))
}

fn autocomplete(state: &State, body: &Map<String, Value>) -> Result<Value, EmuResponse> {
    let text = search_text(body, 1)?;
    let fuzzy = body.get("fuzzy").and_then(Value::as_bool).unwrap_or(false);
    let scopes = scopes(state, body)?;
    let (head, last) = match text.rsplit_once(char::is_whitespace) {
        Some((h, l)) => (format!("{} ", h.trim_end()), l.to_lowercase()),
        None => (String::new(), text.to_lowercase()),
    };
    let words = vocabulary(state, &scopes);
    let completion = words
        .iter()
        .find(|w| w.starts_with(&last) && **w != last)
        .or_else(|| words.iter().find(|w| **w == last))
        .or_else(|| {
            fuzzy
                .then(|| words.iter().find(|w| index::distance(w, &last, 1) <= 1))
                .flatten()
        });
    Ok(json!({
        "Error": null,
        "Value": completion.map(|w| format!("{}{w}", head.to_lowercase())),
        "QueryContext": null,
    }))
}

/// The status operation: provisioned with the indexed tables, or
/// `notprovisioned` when search is off (the documented shapes).
fn status(state: &State) -> Value {
    if !state.config.search_enabled {
        return json!({"value": {"status": "notprovisioned", "lockboxstatus": "Unknown"}});
    }
    let schema = state.store.schema();
    let tables: Vec<Value> = index::INDEXED
        .iter()
        .filter_map(|(name, _)| schema.by_logical_name(name))
        .map(|e| {
            let fields: Map<String, Value> = index::indexed_columns(e)
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    (
                        (*c).to_string(),
                        json!({"indexfieldname": format!("a{i:x}")}),
                    )
                })
                .collect();
            json!({
                "entitylogicalname": e.logical_name,
                "objecttypecode": e.object_type_code(),
                "primarynamefield": e.primary_name,
                "entitystatus": "EntitySyncComplete",
                "searchableindexedfieldinfomap": fields,
            })
        })
        .collect();
    json!({"value": {
        "entitystatusresults": tables,
        "status": "provisioned",
        "lockboxstatus": "Disabled",
        "cmkstatus": "Disabled",
    }})
}

/// The statistics operation: documents in the index and its size (the
/// documented shape; the size is the indexed text's, an emulator's guess
/// at what an index would take).
fn statistics(state: &State) -> Value {
    let schema = state.store.schema();
    let (mut documents, mut bytes) = (0usize, 0usize);
    for (name, _) in index::INDEXED {
        let Some(entity) = schema.by_logical_name(name) else {
            continue;
        };
        let columns = index::indexed_columns(entity);
        for record in state.store.records(name) {
            documents += 1;
            bytes += columns
                .iter()
                .filter_map(|c| index::text_of(record.get(c)))
                .map(|t| t.len())
                .sum::<usize>();
        }
    }
    json!({"value": {
        "storagesizeinbytes": bytes,
        "storagesizeinmb": bytes >> 20,
        "documentcount": documents,
    }})
}
