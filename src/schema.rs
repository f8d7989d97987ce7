//! JSON Schema (draft 2020-12) for every action's inputs and outputs,
//! generated from the catalog definitions — the same definitions that
//! [`crate::inputs`] validates against, so schema and validation cannot drift.
//! The schemas are part of the catalog JSON (`inputSchema`, `outputSchema` on
//! each action) and therefore of connector.yaml.

use crate::catalog::def::{ActionDef, InputDef, InputType};
use serde_json::{Map, Value, json};

pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The schema of one action's inputs object.
pub fn input_schema(action: &ActionDef) -> Value {
    let inputs = action.inputs();
    let mut properties = Map::new();
    for input in &inputs {
        properties.insert(input.key.to_string(), property(input));
    }
    let required: Vec<_> = inputs
        .iter()
        .filter(|i| i.required)
        .map(|i| i.key)
        .collect();
    json!({
        "$schema": DIALECT,
        "title": format!("{} inputs", action.label),
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn property(input: &InputDef) -> Value {
    // JSON text rather than `json!`: each `json!` object is a run of inlined
    // allocations and inserts in the component, the text a few bytes of data.
    let base = match input.ty {
        InputType::String => r#"{"type":"string"}"#,
        InputType::Password => r#"{"type":"string","writeOnly":true}"#,
        InputType::Code => r#"{"type":"string","contentMediaType":"application/xml"}"#,
        // Builders often send "true"/"false"; the component accepts both.
        InputType::Boolean => r#"{"type":["boolean","string"],"enum":[true,false,"true","false"]}"#,
        InputType::Integer => r#"{"type":["integer","string"],"pattern":"^-?[0-9]+$"}"#,
        InputType::Json => "{}",
        InputType::List => {
            r#"{"anyOf":[{"type":"array","items":{"type":"string"}},{"type":"string","description":"comma-separated"}]}"#
        }
        InputType::KeyValueList => {
            r#"{"anyOf":[{"type":"array","items":{"type":"object","properties":{"key":{"type":"string"},"value":{}},"required":["key","value"]}},{"type":"object"}]}"#
        }
    };
    let mut p = serde_json::from_str::<Value>(base).unwrap_or_default();
    let Some(obj) = p.as_object_mut() else {
        return p;
    };
    obj.insert("title".into(), json!(input.label));
    obj.insert("description".into(), json!(input.comment));
    if let Some(d) = &input.default {
        obj.insert("default".into(), d.clone());
    }
    if let Some(e) = &input.example {
        obj.insert("examples".into(), json!([e]));
    }
    if let Some(c) = &input.choices {
        obj.insert("enum".into(), json!(c));
    }
    if let (Some(min), Some(max)) = (input.min, input.max) {
        obj.insert("minimum".into(), json!(min));
        obj.insert("maximum".into(), json!(max));
    }
    p
}

/// The output schemas (JSON Schema 2020-12 bodies, keyed by action key; one
/// action per line). Actions not listed return a JSON object. Kept as JSON
/// text rather than `json!` code: the text is a fraction of the size of the
/// code that would build the same values in the component.
const OUTPUT_SCHEMAS: &str = include_str!("output_schemas.json");

/// The schema of one action's output JSON.
pub fn output_schema(key: &str) -> Value {
    let body = serde_json::from_str::<Value>(OUTPUT_SCHEMAS)
        .ok()
        .and_then(|mut all| all.get_mut(key).map(Value::take))
        .unwrap_or_else(|| json!({"type": "object"}));
    let mut schema = json!({"$schema": DIALECT, "title": format!("{key} output")});
    if let (Some(s), Value::Object(b)) = (schema.as_object_mut(), body) {
        s.extend(b);
    }
    schema
}

/// The JSON pointer, within an action's catalog entry, of an input's schema.
pub fn input_pointer(action_key: &str, input_key: &str) -> String {
    format!("/actions/{action_key}/inputSchema/properties/{input_key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// output_schemas.json parses, names only catalog actions, and each
    /// entry is an object schema (a typo would otherwise fall back silently
    /// to {"type": "object"}).
    #[test]
    fn output_schemas_file_is_valid() {
        let all: Value = serde_json::from_str(OUTPUT_SCHEMAS).unwrap();
        let all = all.as_object().unwrap();
        assert!(all.len() >= 16, "{}", all.len());
        let catalog = crate::catalog::catalog();
        for (key, body) in all {
            assert!(catalog.action(key).is_some(), "{key} is not an action");
            assert_eq!(body["type"], "object", "{key}");
            let schema = output_schema(key);
            assert_eq!(schema["$schema"], DIALECT);
            assert_eq!(schema["properties"], body["properties"], "{key}");
        }
        assert_eq!(output_schema("getCurrentUser")["required"][0], "UserId");
        assert_eq!(output_schema("noSuchAction")["type"], "object");
    }
    use crate::catalog::catalog;

    #[test]
    fn every_action_has_object_schemas_listing_all_inputs() {
        for action in &catalog().actions {
            let s = input_schema(action);
            assert_eq!(s["$schema"], DIALECT);
            assert_eq!(s["additionalProperties"], false);
            let props = s["properties"].as_object().unwrap();
            let inputs = action.inputs();
            assert_eq!(props.len(), inputs.len(), "{}", action.key);
            for i in &inputs {
                assert_eq!(props[i.key]["title"], i.label);
                assert_eq!(
                    s["required"].as_array().unwrap().contains(&json!(i.key)),
                    i.required
                );
            }
            assert_eq!(output_schema(action.key)["$schema"], DIALECT);
        }
    }

    #[test]
    fn defaults_and_ranges_are_carried() {
        let def = ActionDef {
            key: "t",
            label: "T",
            description: "",
            deprecated: false,
            input_defs: || {
                vec![
                    crate::catalog::def::input(
                        "pageSize",
                        "Records Per Page",
                        InputType::Integer,
                        "c",
                    )
                    .default(json!(100))
                    .range(1, 5000),
                ]
            },
        };
        let p = &input_schema(&def)["properties"]["pageSize"];
        assert_eq!(p["default"], 100);
        assert_eq!(p["minimum"], 1);
        assert_eq!(p["maximum"], 5000);
    }
}
