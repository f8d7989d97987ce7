//! `executeAction`: any Dataverse action (POST with a JSON body of
//! parameters) or function (GET with parameter aliases
//! `Name(P=@p1)?@p1=<literal>`), unbound or bound to a record. Bound
//! operations get the `Microsoft.Dynamics.CRM.` namespace they require.

use crate::actions::action::Action;
use crate::actions::controls;
use crate::catalog::def::{ActionDef, InputType, input};
use crate::client::{Session, parse_json};
use crate::controls::OPERATION_KEYS;
use crate::error::{ConnectorError, Result};
use crate::http::Method;
use crate::inputs::Inputs;
use crate::page::Output;
use crate::types::{EntityKey, EntitySet, Guid, encode_query, is_identifier, string_literal};
use serde_json::{Map, Value, json};

// Input keys, each written once: the definitions and `run` use these.
const NAME: &str = "name";
const KIND: &str = "kind";
const BOUND_ENTITY_SET: &str = "boundEntitySet";
const BOUND_ID: &str = "boundId";
const PARAMETERS: &str = "parameters";
const RUN_IN_BACKGROUND: &str = "runInBackground";
const BACKGROUND_OPERATION_ID: &str = "backgroundOperationId";

const NAMESPACE: &str = "Microsoft.Dynamics.CRM.";

pub const EXECUTE_ACTION: Action = Action {
    def: ActionDef {
        key: "executeAction",
        label: "Execute Action or Function",
        description: "Runs a Dataverse action (POST, e.g. WinOpportunity) or function (GET, e.g. WhoAmI, RetrieveTotalRecordCount, CalculateRollupField), unbound or bound to a record.",
        deprecated: false,
        input_defs: || {
            vec![
                {
                    let text = "The action or function name, e.g. WinOpportunity; the Microsoft.Dynamics.CRM. namespace is optional (added for bound operations).";
                    input(NAME, "Name", InputType::String, text)
                        .required()
                        .example(json!("WinOpportunity"))
                },
                {
                    let text = "action (POST, parameters in the JSON body) or function (GET, parameters as @p aliases in the URL).";
                    input(KIND, "Kind", InputType::String, text)
                        .choices(&["action", "function"])
                        .default(json!("action"))
                },
                input(
                    BOUND_ENTITY_SET,
                    "Bound Entity Type",
                    InputType::String,
                    "For a bound operation: the entity set of the record it is bound to, e.g. accounts.",
                ),
                input(
                    BOUND_ID,
                    "Bound Entity ID",
                    InputType::String,
                    "For a bound operation: the record's GUID or alternate key values.",
                ),
                {
                    let text = "The parameters as a JSON object. Records as {\"@odata.id\": \"accounts(<id>)\"} (function) or with @odata.bind / @odata.type (action); strings, numbers, booleans, arrays.";
                    input(PARAMETERS, "Parameters", InputType::Json, text)
                        .example(json!({"EntityNames": ["account"]}))
                },
                {
                    let text = "Run it as a background operation (Prefer: respond-async): the answer is {backgroundOperationId, location} at once, and getBackgroundOperation reads its status and result. Custom APIs only; privileges prvReadbackgroundoperation and prvWritebackgroundoperation.";
                    input(RUN_IN_BACKGROUND, "Run in Background", InputType::Boolean, text)
                        .default(json!(false))
                },
            ]
            .into_iter()
            .chain(controls::inputs(OPERATION_KEYS))
            .collect()
        },
    },
    run: |s, i| execute(s, i).map(Output::from),
};

pub const GET_BACKGROUND_OPERATION: Action = Action {
    def: ActionDef {
        key: "getBackgroundOperation",
        label: "Get Background Operation",
        description: "Reads a background operation's state, status and, once it completed, its output parameters or error (the backgroundoperations table).",
        deprecated: false,
        input_defs: || {
            let text = "The backgroundOperationId executeAction returned with runInBackground, or its location URL.";
            vec![
                input(
                    BACKGROUND_OPERATION_ID,
                    "Background Operation ID",
                    InputType::String,
                    text,
                )
                .required(),
            ]
        },
    },
    run: |s, i| background_operation(s, i).map(Output::from),
};

/// The operation name without its namespace, validated.
fn name_of(inputs: &Inputs) -> Result<String> {
    let raw = inputs.expect_str(NAME)?.trim();
    let bare = raw.strip_prefix(NAMESPACE).unwrap_or(raw);
    if !is_identifier(bare) {
        return Err(ConnectorError::invalid_input(
            NAME,
            format!("'{raw}' is not an action or function name (letters, digits and _ only)"),
        ));
    }
    Ok(bare.to_string())
}

fn parameters_of(inputs: &Inputs) -> Result<Map<String, Value>> {
    let bad = || ConnectorError::invalid_input(PARAMETERS, "must be a JSON object");
    let params = match inputs.get(PARAMETERS)? {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) if s.trim().is_empty() => Map::new(),
        Some(Value::String(s)) => match serde_json::from_str(s) {
            Ok(Value::Object(m)) => m,
            _ => return Err(bad()),
        },
        Some(_) => return Err(bad()),
    };
    Ok(params)
}

/// `set(key)/` for a bound operation, or nothing.
fn binding_of(inputs: &Inputs) -> Result<Option<String>> {
    let set = inputs
        .str(BOUND_ENTITY_SET)?
        .filter(|s| !s.trim().is_empty());
    let id = inputs.str(BOUND_ID)?.filter(|s| !s.trim().is_empty());
    match (set, id) {
        (None, None) => Ok(None),
        (Some(s), Some(i)) => {
            let set = EntitySet::parse(BOUND_ENTITY_SET, s)?;
            let key = EntityKey::parse(BOUND_ID, i)?;
            Ok(Some(format!("{set}{}/", key.to_segment())))
        }
        (Some(_), None) => Err(ConnectorError::invalid_input(
            BOUND_ID,
            "is required with boundEntitySet",
        )),
        (None, Some(_)) => Err(ConnectorError::invalid_input(
            BOUND_ENTITY_SET,
            "is required with boundId",
        )),
    }
}

/// An OData literal for a function parameter alias: strings quoted with `'`
/// doubled, numbers/booleans/null as they are, objects and arrays as JSON.
fn alias_literal(value: &Value) -> String {
    match value {
        Value::String(s) => string_literal(s),
        other => other.to_string(),
    }
}

/// `Name(A=@p1,B=@p2)?@p1=…&@p2=…` (parameters in the object's order).
fn function_path(prefix: &str, name: &str, params: &Map<String, Value>) -> Result<String> {
    let mut names = Vec::new();
    let mut aliases = Vec::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if !is_identifier(k) {
            return Err(ConnectorError::invalid_input(
                PARAMETERS,
                format!("'{k}' is not a parameter name (letters, digits and _ only)"),
            ));
        }
        names.push(format!("{k}=@p{}", i + 1));
        aliases.push(format!("@p{}={}", i + 1, encode_query(&alias_literal(v))));
    }
    let mut path = format!("{prefix}{name}({})", names.join(","));
    if !aliases.is_empty() {
        path.push('?');
        path.push_str(&aliases.join("&"));
    }
    Ok(path)
}

fn execute(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let name = name_of(inputs)?;
    let params = parameters_of(inputs)?;
    let binding = binding_of(inputs)?;
    let prefix = match &binding {
        Some(b) => format!("{b}{NAMESPACE}"),
        None => String::new(),
    };
    let request = match inputs.expect_str(KIND)? {
        "function" => session.request(Method::Get, &function_path(&prefix, &name, &params)?)?,
        "action" => session
            .request(Method::Post, &format!("{prefix}{name}"))?
            .json_body(&Value::Object(params)),
        other => {
            return Err(ConnectorError::invalid_input(
                KIND,
                format!("'{other}' is neither action nor function"),
            ));
        }
    };
    let c = controls::of(inputs, OPERATION_KEYS)?;
    let mut request = c.apply(request);
    let background = inputs.bool(RUN_IN_BACKGROUND)?;
    if background {
        request = request.header("Prefer", "respond-async");
    }
    let response = session.send_ok(request).map_err(|e| {
        let e = c.explain(e);
        if background && e.status == Some(400) {
            e.with_hint("Only custom APIs run as background operations; run this one without runInBackground.")
        } else {
            e
        }
    })?;
    // "Background operations": 202 Accepted, the operation's id in
    // x-ms-dyn-backgroundoperationid and its status monitor in Location.
    if background && response.status == 202 {
        let location = response.header("Location").unwrap_or("").to_string();
        let id = response
            .header("x-ms-dyn-backgroundoperationid")
            .and_then(Guid::parse)
            .or_else(|| location.rsplit('/').next().and_then(Guid::parse))
            .map(Guid::into_string);
        return Ok(json!({"status": 202, "backgroundOperationId": id, "location": location}));
    }
    let result = if response.body.is_empty() {
        Value::Null
    } else {
        parse_json(&response)?
    };
    Ok(json!({"status": response.status, "result": result}))
}

/// The documented labels of `backgroundoperationstatecode` and
/// `backgroundoperationstatuscode` ("Background operations", Background
/// operations table).
fn background_label(code: i64) -> &'static str {
    match code {
        0 => "Waiting For Resources",
        20 => "In Progress",
        22 => "Canceling",
        30 => "Succeeded",
        31 => "Failed",
        32 => "Canceled",
        _ => "Unknown",
    }
}

fn background_operation(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let given = inputs.expect_str(BACKGROUND_OPERATION_ID)?.trim();
    // An id, or the status monitor URL ending in one.
    let tail = given
        .trim_end_matches('/')
        .rsplit(['/', '('])
        .next()
        .unwrap_or("");
    let id = Guid::parse(given)
        .or_else(|| Guid::parse(tail.trim_end_matches(')')))
        .ok_or_else(|| {
            ConnectorError::invalid_input(
                BACKGROUND_OPERATION_ID,
                format!("'{given}' is neither a GUID nor a background operation's location"),
            )
        })?;
    let path = format!(
        "backgroundoperations({id})?$select=name,backgroundoperationstatecode,backgroundoperationstatuscode,outputparameters,errorcode,errormessage,starttime,endtime"
    );
    let request = session.request(Method::Get, &path)?;
    let mut row = session.send_json(request).map_err(|e| {
        if e.status == Some(404) {
            e.with_hint("No background operation has this id: it may have passed its time to live (90 days by default), or be in another environment.")
        } else {
            e
        }
    })?;
    let int = |k: &str| row.get(k).and_then(Value::as_i64);
    let state = int("backgroundoperationstatecode").unwrap_or(-1);
    let status = int("backgroundoperationstatuscode").unwrap_or(-1);
    // outputparameters: a JSON array of {Key, Value}, as text.
    let mut output = Map::new();
    if let Some(Value::Array(pairs)) = row
        .get("outputparameters")
        .and_then(Value::as_str)
        .and_then(|t| serde_json::from_str(t).ok())
    {
        for p in pairs {
            if let (Some(Value::String(k)), Some(v)) = (p.get("Key"), p.get("Value")) {
                output.insert(k.clone(), v.clone());
            }
        }
    }
    // The row as Dataverse sent it, plus what a flow branches on.
    if let Some(map) = row.as_object_mut() {
        let state_label = match state {
            0 => "Ready",
            2 => "Locked",
            3 => "Completed",
            _ => "Unknown",
        };
        for (k, v) in [
            ("backgroundOperationId", Value::from(id.as_str())),
            ("state", Value::from(state_label)),
            ("status", Value::from(background_label(status))),
            ("done", Value::Bool(state == 3)),
            ("succeeded", Value::Bool(status == 30)),
            ("output", Value::Object(output)),
        ] {
            map.insert(k.into(), v);
        }
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_parameters_become_encoded_aliases() {
        let params: Map<String, Value> = serde_json::from_value(json!({
            "Target": {"@odata.id": "accounts(a0000000-0000-4000-8000-000000000001)"},
            "FieldName": "it's & more",
            "Count": 3,
        }))
        .unwrap_or_default();
        let path = function_path("", "F", &params).unwrap_or_default();
        // Aliases are numbered in the parameters' order.
        let alias = |name: &str| {
            let i = params.keys().position(|k| k == name).unwrap_or(99) + 1;
            assert!(path.contains(&format!("{name}=@p{i}")), "{path}");
            format!("@p{i}=")
        };
        assert!(path.starts_with("F("), "{path}");
        assert!(
            path.contains(&format!("{}'it''s%20%26%20more'", alias("FieldName"))),
            "{path}"
        );
        assert!(path.contains(&format!("{}3", alias("Count"))), "{path}");
        assert!(
            path.contains(&format!(
                "{}%7B%22@odata.id%22:%22accounts(a0000000",
                alias("Target")
            )),
            "{path}"
        );
        assert_eq!(
            function_path("", "WhoAmI", &Map::new()).ok().as_deref(),
            Some("WhoAmI()")
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let def = &EXECUTE_ACTION.def;
        for (json, input) in [
            (r#"{"name":"Win/../x"}"#, "name"),
            (r#"{"name":"X","parameters":[1]}"#, "parameters"),
            (r#"{"name":"X","boundEntitySet":"accounts"}"#, "boundId"),
        ] {
            let inputs = Inputs::parse(def, json).ok();
            let err = inputs
                .as_ref()
                .map(|i| name_of(i).and(parameters_of(i)).and(binding_of(i)).err());
            let got = match err.flatten().map(|e| e.kind) {
                Some(crate::error::ErrorKind::InvalidInput { input }) => Some(input),
                _ => None,
            };
            assert_eq!(got.as_deref(), Some(input), "{json}");
        }
    }
}
