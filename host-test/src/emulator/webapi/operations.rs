//! Dataverse functions and actions over the record store (wire reference
//! §2.8): `WinOpportunity` (unbound action), `CalculateRollupField` and
//! `RetrieveTotalRecordCount` (unbound functions, parameters inline or as
//! `@p` aliases), and `Microsoft.Dynamics.CRM.new_SetCreditHold`, a custom
//! API bound to account that this emulated environment ships (custom APIs
//! are how Dataverse environments get bound actions). A bound operation
//! named without its namespace gets Dataverse's 400; an unknown one 404.

use super::caller::Caller;
use super::events;
use super::reply::{error, method_not_allowed, segment_not_found, store_error};
use super::rows::{self, ReferenceError, UnderRow, existing, parse_key, resolve_reference};
use crate::emulator::dates;
use crate::emulator::odata::ODataError;
use crate::emulator::odata::options::query_pairs;
use crate::emulator::response::{no_content, odata_json};
use crate::emulator::store::Changes;
use crate::emulator::store::schema::EntityDef;
use crate::emulator::webhooks::Message;
use crate::emulator::{EmuRequest, EmuResponse, State};
use serde_json::{Map, Value, json};

const NAMESPACE: &str = "Microsoft.Dynamics.CRM.";
const UNBOUND: [&str; 3] = [
    "WinOpportunity",
    "CalculateRollupField",
    "RetrieveTotalRecordCount",
];
const BOUND: [&str; 1] = ["new_SetCreditHold"];

/// Whether `name` (the first segment without its parameters) is an unbound
/// operation this module answers.
pub fn is_unbound(name: &str) -> bool {
    UNBOUND.contains(&name)
}

pub fn unbound(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    resource: &str,
) -> EmuResponse {
    let segment = resource.split('/').next().unwrap_or("");
    let (name, inline) = match segment.split_once('(') {
        Some((n, rest)) => (n, Some(rest.strip_suffix(')').unwrap_or(rest))),
        None => (segment, None),
    };
    let is_function = name != "WinOpportunity";
    let expected = if is_function {
        http::Method::GET
    } else {
        http::Method::POST
    };
    if request.method() != expected {
        return method_not_allowed(request.method());
    }
    if respond_async(request) {
        return error(not_a_custom_api(name));
    }
    let result = match name {
        "WinOpportunity" => win_opportunity(state, request, caller),
        other => function_parameters(request, inline).and_then(|params| match other {
            "CalculateRollupField" => calculate_rollup_field(state, caller, &params),
            _ => retrieve_total_record_count(state, caller, &params),
        }),
    };
    result.unwrap_or_else(error)
}

/// `POST set(<key>)/Microsoft.Dynamics.CRM.<Name>`; `None` when `part` is
/// not an operation segment (a property, a navigation property, …).
pub fn bound(state: &mut State, at: &UnderRow<'_>) -> Option<EmuResponse> {
    let (request, part) = (at.request, at.part);
    if part.contains('/') {
        return None;
    }
    let name = part.split('(').next().unwrap_or(part);
    let result = match name.strip_prefix(NAMESPACE) {
        Some(op) if BOUND.contains(&op) && at.entity.logical_name == "account" => {
            if request.method() != http::Method::POST {
                return Some(method_not_allowed(request.method()));
            }
            if respond_async(request) {
                queue_background(state, request, at.caller, at.entity, at.raw_key, op)
            } else {
                set_credit_hold(state, request, at.caller, at.entity, at.raw_key)
            }
        }
        Some(_) => Err(segment_not_found(name)),
        // [S: ACT] a bound action without its namespace.
        None if BOUND.contains(&name) || UNBOUND.contains(&name) => Err(ODataError::bad_request(
            "Request message has unresolved parameters.".to_string(),
        )),
        None => return None,
    };
    Some(result.unwrap_or_else(error))
}

/// Whether the request asks to run in the background (`Prefer:
/// respond-async`, "Background operations").
fn respond_async(request: &EmuRequest) -> bool {
    request
        .headers()
        .get_all("Prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

/// Only custom APIs run in the background ("Background operations"). The
/// code and message are UNCONFIRMED.
fn not_a_custom_api(name: &str) -> ODataError {
    ODataError::bad_request(format!(
        "The message {name} cannot be processed in the background: only custom APIs can."
    ))
}

/// Queues a custom API call as a `backgroundoperation` row and answers 202
/// with the status monitor's `Location` and the row's id in
/// `x-ms-dyn-backgroundoperationid`. The row advances each time it is
/// read ([`advance_background`]).
fn queue_background(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    raw_key: &str,
    op: &str,
) -> Result<EmuResponse, ODataError> {
    let key = parse_key(entity, raw_key)?;
    let target = existing(state, entity, &key)?.id.clone();
    let body = json_body(request)?;
    let mut inputs =
        vec![json!({"Key": "Target", "Value": format!("{}({target})", entity.entity_set_name)})];
    for (k, v) in body {
        inputs.push(json!({"Key": k, "Value": v}));
    }
    let mut changes = Changes::default();
    for (k, v) in [
        ("name", json!(op)),
        ("displayname", json!("Set Credit Hold")),
        ("backgroundoperationstatecode", json!(0)),
        ("backgroundoperationstatuscode", json!(0)),
        ("inputparameters", json!(Value::Array(inputs).to_string())),
        ("runas", json!(caller.user_id)),
        ("retrycount", json!(0)),
        ("ttlinseconds", json!(7_776_000)),
    ] {
        changes.values.insert(k.into(), v);
    }
    let id = rows::create(state, caller, "backgroundoperation", None, changes)?
        .id
        .clone();
    let origin = caller.service_root.split("/api/data/").next().unwrap_or("");
    Ok(http::Response::builder()
        .status(202)
        .header("Location", format!("{origin}/api/backgroundoperation/{id}"))
        .header("x-ms-dyn-backgroundoperationid", id.as_str())
        .header("Preference-Applied", "respond-async")
        .header("OData-Version", "4.0")
        .body(bytes::Bytes::new())
        .unwrap_or_default())
}

/// Moves a background operation one step on: Ready → Locked (In Progress)
/// → Completed (Succeeded, with its output parameters, or Failed with the
/// error's code and message). Called on every read of its row, so a poller
/// sees each state once.
pub fn advance_background(state: &mut State, caller: &Caller, raw_key: &str) {
    let Some(id) = crate::emulator::store::normalize_guid(raw_key) else {
        return;
    };
    let Some(row) = state.store.get("backgroundoperation", &id) else {
        return;
    };
    let code = |k: &str| row.values.get(k).and_then(Value::as_i64);
    let now = json!(dates::format_datetime(state.now() as i64));
    let mut changes = Changes::default();
    match code("backgroundoperationstatecode") {
        Some(0) => {
            changes
                .values
                .insert("backgroundoperationstatecode".into(), json!(2));
            changes
                .values
                .insert("backgroundoperationstatuscode".into(), json!(20));
            changes.values.insert("starttime".into(), now);
        }
        Some(2) => {
            let inputs: Vec<Value> = row
                .values
                .get("inputparameters")
                .and_then(Value::as_str)
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default();
            let input = |k: &str| {
                inputs
                    .iter()
                    .find(|p| p.get("Key").and_then(Value::as_str) == Some(k))
                    .and_then(|p| p.get("Value"))
                    .cloned()
            };
            let target = input("Target")
                .and_then(|t| t.as_str().map(str::to_string))
                .and_then(|t| {
                    t.split_once('(')
                        .map(|(_, k)| k.trim_end_matches(')').to_string())
                })
                .unwrap_or_default();
            let result = match input("OnHold").and_then(|v| v.as_bool()) {
                Some(on_hold) => apply_credit_hold(state, caller, &target, on_hold),
                None => Err(unresolved()),
            };
            changes
                .values
                .insert("backgroundoperationstatecode".into(), json!(3));
            changes.values.insert("endtime".into(), now);
            match result {
                Ok(previous) => {
                    changes
                        .values
                        .insert("backgroundoperationstatuscode".into(), json!(30));
                    let out = json!([{"Key": "PreviousValue", "Value": previous}]);
                    changes
                        .values
                        .insert("outputparameters".into(), json!(out.to_string()));
                }
                Err(e) => {
                    changes
                        .values
                        .insert("backgroundoperationstatuscode".into(), json!(31));
                    let code = i64::from_str_radix(e.code.trim_start_matches("0x"), 16)
                        .map(|c| c as i32 as i64)
                        .unwrap_or(0);
                    changes.values.insert("errorcode".into(), json!(code));
                    changes
                        .values
                        .insert("errormessage".into(), json!(e.message));
                }
            }
        }
        _ => return,
    }
    let _ = rows::update(state, caller, "backgroundoperation", &id, changes);
}

/// The status monitor resource ("Background operations", Poll the status
/// monitor resource; Send a DELETE request to the status monitor
/// resource). GET: `backgroundOperationStateCode`/`StatusCode`, the output
/// parameters as members once it succeeded, `backgroundOperationErrorCode`/
/// `ErrorMessage` once it failed; no labels. DELETE: cancels an operation
/// not yet completed (Completed, Canceled). The body of a DELETE answer is
/// UNCONFIRMED (204 here).
pub fn status_monitor(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    id: &str,
) -> EmuResponse {
    let Some(id) = crate::emulator::store::normalize_guid(id) else {
        return error(ODataError::new(
            404,
            "0x80040217",
            format!("Could not find item '{id}'."),
        ));
    };
    let missing = || {
        error(ODataError::new(
            404,
            "0x80040217",
            format!("Could not find item '{id}'."),
        ))
    };
    if state.store.get("backgroundoperation", &id).is_none() {
        return missing();
    }
    match *request.method() {
        http::Method::GET => {
            advance_background(state, caller, &id);
            let Some(row) = state.store.get("backgroundoperation", &id) else {
                return missing();
            };
            let code = |k: &str| row.values.get(k).cloned().unwrap_or(Value::Null);
            let mut body = Map::new();
            body.insert(
                "backgroundOperationStateCode".into(),
                code("backgroundoperationstatecode"),
            );
            body.insert(
                "backgroundOperationStatusCode".into(),
                code("backgroundoperationstatuscode"),
            );
            match row
                .values
                .get("backgroundoperationstatuscode")
                .and_then(Value::as_i64)
            {
                Some(30) => {
                    let outputs: Vec<Value> = row
                        .values
                        .get("outputparameters")
                        .and_then(Value::as_str)
                        .and_then(|t| serde_json::from_str(t).ok())
                        .unwrap_or_default();
                    for p in outputs {
                        if let (Some(k), Some(v)) =
                            (p.get("Key").and_then(Value::as_str), p.get("Value"))
                        {
                            body.insert(k.to_string(), v.clone());
                        }
                    }
                }
                Some(31) => {
                    body.insert("backgroundOperationErrorCode".into(), code("errorcode"));
                    body.insert(
                        "backgroundOperationErrorMessage".into(),
                        code("errormessage"),
                    );
                }
                _ => {}
            }
            odata_json(200, &Value::Object(body))
        }
        http::Method::DELETE => {
            let state_code = state
                .store
                .get("backgroundoperation", &id)
                .and_then(|r| r.values.get("backgroundoperationstatecode"))
                .and_then(Value::as_i64);
            if state_code != Some(3) {
                let mut changes = Changes::default();
                changes
                    .values
                    .insert("backgroundoperationstatecode".into(), json!(3));
                changes
                    .values
                    .insert("backgroundoperationstatuscode".into(), json!(32));
                if let Err(e) = rows::update(state, caller, "backgroundoperation", &id, changes) {
                    return error(e);
                }
            }
            no_content()
        }
        _ => method_not_allowed(request.method()),
    }
}

fn unresolved() -> ODataError {
    ODataError::bad_request("Request message has unresolved parameters.".to_string())
}

fn json_body(request: &EmuRequest) -> Result<Map<String, Value>, ODataError> {
    if request.body().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice(request.body()) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ODataError::bad_request(
            "The request body of an action must be a JSON object of parameters.".to_string(),
        )),
    }
}

/// `WinOpportunity` `{"Status": 3, "OpportunityClose": {"subject": …,
/// "opportunityid@odata.bind": "/opportunities(<id>)"}}` → 204; the
/// opportunity becomes Won (statecode 1) with the given status. The
/// opportunityclose activity itself is not stored (the emulator has no
/// activity tables).
fn win_opportunity(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
) -> Result<EmuResponse, ODataError> {
    let body = json_body(request)?;
    let status = body
        .get("Status")
        .and_then(Value::as_i64)
        .ok_or_else(unresolved)?;
    let close = body
        .get("OpportunityClose")
        .and_then(Value::as_object)
        .ok_or_else(unresolved)?;
    let bind = close
        .get("opportunityid@odata.bind")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            // Message UNCONFIRMED.
            ODataError::bad_request(
                "OpportunityClose must reference the opportunity with opportunityid@odata.bind."
                    .to_string(),
            )
        })?;
    let id = record_of(state, bind, "opportunity")?;
    let open = state
        .store
        .get("opportunity", &id)
        .is_some_and(|r| r.get("statecode").as_i64() == Some(0));
    if !open {
        // Code and message UNCONFIRMED.
        return Err(ODataError::new(
            400,
            "0x80040203",
            "Cannot close the opportunity because it is not open.",
        ));
    }
    if status != 3 {
        // Only the built-in Won status exists in the emulator's options.
        return Err(ODataError::new(
            400,
            "0x80040203",
            format!(
                "{status} is not a valid status code for state code OpportunityState.Won on opportunity."
            ),
        ));
    }
    let mut changes = Changes::default();
    changes.values.insert("statecode".into(), json!(1));
    changes.values.insert("statuscode".into(), json!(status));
    rows::update(state, caller, "opportunity", &id, changes)?;
    Ok(no_content())
}

/// The id of the existing `entity` row an entity reference names
/// (`/set(<id>)`, `set(<id>)`, an absolute URL, or `set(key='v')`).
fn record_of(state: &State, reference: &str, entity: &str) -> Result<String, ODataError> {
    resolve_reference(state, reference, entity).map_err(|e| match e {
        ReferenceError::Malformed
        | ReferenceError::UnknownSet(_)
        | ReferenceError::WrongEntity(_) => ODataError::bad_request(format!(
            "The reference '{reference}' is not valid: expected <entityset>(<id>)."
        )),
        ReferenceError::BadKey(e) | ReferenceError::Missing(e) => e,
    })
}

/// A function's parameters: `Name(P=@p1,Q='x')` with `?@p1=…` aliases,
/// each value parsed as an OData literal (strings in `'…'` with `''`,
/// numbers, true/false/null, JSON objects and arrays, whose strings may use
/// single quotes as the docs' examples do).
fn function_parameters(
    request: &EmuRequest,
    inline: Option<&str>,
) -> Result<Map<String, Value>, ODataError> {
    let aliases = query_pairs(request.uri().query());
    let inline = percent_encoding::percent_decode_str(inline.unwrap_or(""))
        .decode_utf8_lossy()
        .into_owned();
    let mut out = Map::new();
    for part in split_top_level(&inline) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, raw) = part.split_once('=').ok_or_else(unresolved)?;
        let raw = raw.trim();
        let text = match raw.strip_prefix('@') {
            Some(alias) => aliases
                .iter()
                .find(|(k, _)| k.strip_prefix('@') == Some(alias))
                .map(|(_, v)| v.clone())
                .ok_or_else(unresolved)?,
            None => raw.to_string(),
        };
        let value = literal(&text).ok_or_else(|| {
            ODataError::bad_request(format!(
                "The value '{text}' of parameter '{}' is not a valid OData literal.",
                name.trim()
            ))
        })?;
        out.insert(name.trim().to_string(), value);
    }
    Ok(out)
}

/// Splits on commas outside quotes, parentheses, braces and brackets.
fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quoted: Option<char> = None;
    let mut current = String::new();
    for c in s.chars() {
        match (quoted, c) {
            (Some(q), c) if c == q => quoted = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quoted = Some(c),
            (None, '(' | '{' | '[') => depth += 1,
            (None, ')' | '}' | ']') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

fn literal(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Some(inner) = t.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        if inner.replace("''", "").contains('\'') {
            return None;
        }
        return Some(Value::String(inner.replace("''", "'")));
    }
    if t.starts_with('{') || t.starts_with('[') {
        return serde_json::from_str(&single_to_double_quotes(t)).ok();
    }
    serde_json::from_str::<Value>(t)
        .ok()
        .filter(|v| v.is_number() || v.is_boolean() || v.is_null())
}

/// Rewrites `'…'` strings (with `''` for a quote) as JSON strings.
fn single_to_double_quotes(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '"' => {
                // A JSON string: copy through to its closing quote.
                out.push(c);
                i += 1;
                while let Some(&d) = chars.get(i) {
                    out.push(d);
                    i += 1;
                    if d == '\\' {
                        if let Some(&e) = chars.get(i) {
                            out.push(e);
                            i += 1;
                        }
                    } else if d == '"' {
                        break;
                    }
                }
            }
            '\'' => {
                let mut text = String::new();
                i += 1;
                while let Some(&d) = chars.get(i) {
                    if d == '\'' {
                        if chars.get(i + 1) == Some(&'\'') {
                            text.push('\'');
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    text.push(d);
                    i += 1;
                }
                out.push_str(&Value::String(text).to_string());
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// `CalculateRollupField(Target=@t,FieldName=@f)?@t={'@odata.id':'accounts(<id>)'}&@f='opendeals'`
/// → the record with the rollup column, its `_date` and `_state`
/// (state 1 = calculated). `opendeals` counts the account's open
/// opportunities.
fn calculate_rollup_field(
    state: &mut State,
    caller: &Caller,
    params: &Map<String, Value>,
) -> Result<EmuResponse, ODataError> {
    let target = params
        .get("Target")
        .and_then(|t| t.get("@odata.id"))
        .and_then(Value::as_str)
        .ok_or_else(unresolved)?;
    let field = params
        .get("FieldName")
        .and_then(Value::as_str)
        .ok_or_else(unresolved)?;
    let id = record_of(state, target, "account")?;
    if field != "opendeals" {
        // Code and message UNCONFIRMED.
        return Err(ODataError::new(
            400,
            "0x80040203",
            format!("The field '{field}' is not a rollup field of entity 'account'."),
        ));
    }
    let count = state
        .store
        .records("opportunity")
        .filter(|o| {
            o.get("statecode").as_i64() == Some(0)
                && o.get("parentaccountid").as_str() == Some(id.as_str())
        })
        .count();
    let now = state.now();
    let stamp = dates::format_datetime(now as i64);
    // The platform writes the rollup's columns itself (they are read-only
    // to clients), so this goes straight to the store.
    let mut changes = Changes::default();
    changes.values.insert("opendeals".into(), json!(count));
    changes
        .values
        .insert("opendeals_date".into(), json!(stamp.clone()));
    changes.values.insert("opendeals_state".into(), json!(1));
    let record = state
        .store
        .update("account", &id, changes, &caller.user_id, now)
        .map_err(store_error)?;
    Ok(odata_json(
        200,
        &json!({
            "@odata.context": format!("{}$metadata#accounts/$entity", caller.service_root),
            "@odata.etag": record.etag(),
            "accountid": id,
            "opendeals": count,
            "opendeals_date": stamp,
            "opendeals_state": 1,
        }),
    ))
}

/// `RetrieveTotalRecordCount(EntityNames=@p1)?@p1=["account"]`.
fn retrieve_total_record_count(
    state: &State,
    caller: &Caller,
    params: &Map<String, Value>,
) -> Result<EmuResponse, ODataError> {
    let names = params
        .get("EntityNames")
        .and_then(Value::as_array)
        .ok_or_else(unresolved)?;
    let mut keys = Vec::new();
    let mut counts = Vec::new();
    for n in names {
        let name = n.as_str().ok_or_else(unresolved)?;
        if state.store.schema().by_logical_name(name).is_none() {
            // Code and message UNCONFIRMED (the metadata cache's wording).
            return Err(ODataError::new(
                404,
                "0x80041102",
                format!(
                    "The entity with a name = '{name}' with namemapping = 'Logical' was not found in the MetadataCache."
                ),
            ));
        }
        keys.push(name.to_string());
        counts.push(state.store.count(name));
    }
    Ok(odata_json(
        200,
        &json!({
            "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.RetrieveTotalRecordCountResponse", caller.service_root),
            "EntityRecordCountCollection": {
                "Count": keys.len(),
                "IsReadOnly": false,
                "Keys": keys,
                "Values": counts,
            }
        }),
    ))
}

/// `POST accounts(<id>)/Microsoft.Dynamics.CRM.new_SetCreditHold`
/// `{"OnHold": true}` → 200 `{"PreviousValue": false}`: the emulated
/// environment's custom API, bound to account.
fn set_credit_hold(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    raw_key: &str,
) -> Result<EmuResponse, ODataError> {
    let key = parse_key(entity, raw_key)?;
    let id = existing(state, entity, &key)?.id.clone();
    let body = json_body(request)?;
    let on_hold = body
        .get("OnHold")
        .and_then(Value::as_bool)
        .ok_or_else(unresolved)?;
    let previous = apply_credit_hold(state, caller, &id, on_hold)?;
    // The executed message raises its own steps (a custom API is a message:
    // "Use webhooks", https://learn.microsoft.com/power-apps/developer/data-platform/use-webhooks);
    // what its own update raises as Update is not emulated (UNCONFIRMED).
    events::raise_action(
        state,
        Message::Custom("new_SetCreditHold"),
        entity,
        &id,
        &body,
        &caller.user_id,
    );
    Ok(odata_json(
        200,
        &json!({
            "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.new_SetCreditHoldResponse", caller.service_root),
            "PreviousValue": previous,
        }),
    ))
}

/// new_SetCreditHold's work: sets the account's creditonhold; the value
/// it had.
fn apply_credit_hold(
    state: &mut State,
    caller: &Caller,
    id: &str,
    on_hold: bool,
) -> Result<bool, ODataError> {
    let record = state.store.get("account", id).ok_or_else(|| {
        ODataError::new(
            404,
            "0x80040217",
            format!("account With Id = {id} Does Not Exist"),
        )
    })?;
    let previous = record.get("creditonhold").as_bool().unwrap_or(false);
    let mut changes = Changes::default();
    changes.values.insert("creditonhold".into(), json!(on_hold));
    rows::update(state, caller, "account", id, changes)?;
    Ok(previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_follow_odata() {
        assert_eq!(literal("'O''Brien'"), Some(json!("O'Brien")));
        assert_eq!(literal("12"), Some(json!(12)));
        assert_eq!(literal("true"), Some(json!(true)));
        assert_eq!(
            literal("{'@odata.id':'accounts(1)'}"),
            Some(json!({"@odata.id": "accounts(1)"}))
        );
        assert_eq!(
            literal(r#"["account","contact"]"#),
            Some(json!(["account", "contact"]))
        );
        assert_eq!(literal("'a'b'"), None);
        assert_eq!(literal("nope"), None);
    }

    #[test]
    fn parameters_split_outside_quotes_and_brackets() {
        assert_eq!(
            split_top_level("A=@p1,B='x,y',C={'a':1,'b':2}"),
            vec!["A=@p1", "B='x,y'", "C={'a':1,'b':2}"]
        );
    }
}
