//! An action's inputs, validated against its catalog definition before any
//! request is sent: unknown keys, missing required inputs and wrong types are
//! `invalid-input` errors naming the key. Builders send loosely typed values
//! (`"true"`, `"100"`, `"name,revenue"`), which are coerced here once so that
//! actions only ever see canonical JSON types.

use crate::catalog::def::{ActionDef, InputDef, InputType};
use crate::error::{ConnectorError, Result};
use crate::rawjson;
use serde_json::value::RawValue;
use serde_json::{Map, Value, error::Category};

/// Getters take the input's key and refuse one the action's definition
/// does not declare (a connector bug a test sees, never a silent `None`).
/// Defaults live only in the definition: an input with one is always
/// present, read with the `expect_` getters.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Whose inputs these are (named in errors), and every key it declares.
    owner: String,
    declared: Vec<&'static str>,
    values: Map<String, Value>,
    /// Inputs defined [`InputDef::raw`], as the JSON text the caller sent.
    raw: Vec<(&'static str, Box<RawValue>)>,
}

impl Inputs {
    pub fn parse(def: &ActionDef, json: &str) -> Result<Inputs> {
        Self::parse_for(def.key, &def.inputs(), json)
    }

    /// Like [`Self::parse`] for anything with inputs (actions, triggers);
    /// `owner` is the key named in messages.
    pub fn parse_for(owner: &str, defs: &[InputDef], json: &str) -> Result<Inputs> {
        let json = if json.trim().is_empty() { "{}" } else { json };
        // Each input's text first, parsed below one by one: a raw input
        // (a 1,000-item batchActions, ~100 KB) never becomes a Value tree.
        let given = rawjson::members(json).map_err(|e| {
            if e.classify() == Category::Data {
                ConnectorError::invalid_input("inputs", "must be a JSON object")
            } else {
                ConnectorError::invalid_input("inputs", format!("not valid JSON ({e})"))
            }
        })?;
        // The first unknown by name, whatever the order they came in.
        if let Some(unknown) = given
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !defs.iter().any(|i| i.key == k.as_ref()))
            .min()
        {
            let known: Vec<_> = defs.iter().map(|i| i.key).collect();
            let known = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            return Err(ConnectorError::invalid_input(
                unknown.to_string(),
                format!("is not an input of {owner} (inputs: {known})"),
            ));
        }
        let mut inputs = Inputs {
            owner: owner.to_string(),
            declared: defs.iter().map(|d| d.key).collect(),
            ..Inputs::default()
        };
        for input in defs {
            let text = rawjson::member(&given, input.key).filter(|r| !rawjson::is_null(r));
            if input.raw {
                let raw = match (text, &input.default) {
                    (Some(r), _) => Some(r.to_owned()),
                    (None, Some(d)) => RawValue::from_string(d.to_string()).ok(),
                    (None, None) if input.required => {
                        return Err(ConnectorError::invalid_input(input.key, "is required"));
                    }
                    (None, None) => None,
                };
                if let Some(raw) = raw {
                    inputs.raw.push((input.key, raw));
                }
                continue;
            }
            let given = text
                .map(|r| serde_json::from_str::<Value>(r.get()))
                .transpose()
                .map_err(|e| {
                    // Valid JSON that serde_json cannot hold (1e400).
                    ConnectorError::invalid_input(input.key, format!("is not valid JSON ({e})"))
                })?;
            let value = match (given, &input.default) {
                (Some(v), _) => coerce(input.key, input.ty, v)?,
                (None, Some(d)) => d.clone(),
                (None, None) if input.required => {
                    return Err(ConnectorError::invalid_input(input.key, "is required"));
                }
                (None, None) => continue,
            };
            if let (Some(n), Some(min), Some(max)) = (value.as_i64(), input.min, input.max)
                && !(min..=max).contains(&n)
            {
                return Err(ConnectorError::invalid_input(
                    input.key,
                    format!("must be between {min} and {max}, got {n}"),
                ));
            }
            if let (Some(choices), Some(s)) = (&input.choices, value.as_str())
                && !choices.iter().any(|c| c.eq_ignore_ascii_case(s))
            {
                return Err(ConnectorError::invalid_input(
                    input.key,
                    format!("must be one of {}, got '{s}'", choices.join(", ")),
                ));
            }
            inputs.values.insert(input.key.to_string(), value);
        }
        Ok(inputs)
    }

    /// Refuses a key the definition does not declare.
    fn declared(&self, key: &str) -> Result<()> {
        if self.declared.contains(&key) {
            Ok(())
        } else {
            Err(ConnectorError::invalid_input(
                key,
                format!(
                    "is read by {} but not declared in its catalog entry (a connector bug)",
                    self.owner
                ),
            ))
        }
    }

    /// A [`InputDef::raw`] input's JSON text.
    pub fn raw(&self, key: &str) -> Result<Option<&RawValue>> {
        self.declared(key)?;
        Ok(self.raw.iter().find(|(k, _)| *k == key).map(|(_, r)| &**r))
    }

    pub fn get(&self, key: &str) -> Result<Option<&Value>> {
        self.declared(key)?;
        Ok(self.values.get(key))
    }

    pub fn str(&self, key: &str) -> Result<Option<&str>> {
        Ok(self.get(key)?.and_then(Value::as_str))
    }

    /// An input that is always there: required, or with a default.
    pub fn expect_str(&self, key: &str) -> Result<&str> {
        self.str(key)?
            .ok_or_else(|| ConnectorError::invalid_input(key, "is required"))
    }

    /// A boolean input; absent is false.
    pub fn bool(&self, key: &str) -> Result<bool> {
        Ok(self.get(key)?.and_then(Value::as_bool).unwrap_or(false))
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.get(key)?.and_then(Value::as_u64))
    }

    /// An integer input that is always there: required, or with a default.
    pub fn expect_u64(&self, key: &str) -> Result<u64> {
        self.u64(key)?
            .ok_or_else(|| ConnectorError::invalid_input(key, "is required"))
    }

    /// A `list` input as strings.
    pub fn list(&self, key: &str) -> Result<Vec<String>> {
        Ok(match self.get(key)? {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        })
    }

    /// A `keyValueList` input as pairs, in order.
    pub fn pairs(&self, key: &str) -> Result<Vec<(String, Value)>> {
        Ok(match self.get(key)? {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|item| {
                    Some((
                        item.get("key")?.as_str()?.to_string(),
                        item.get("value")?.clone(),
                    ))
                })
                .collect(),
            _ => Vec::new(),
        })
    }
}

/// Turns a loosely typed value into the input type's canonical JSON shape.
fn coerce(key: &str, ty: InputType, value: Value) -> Result<Value> {
    let wrong = |want: &str, value: &Value| {
        ConnectorError::invalid_input(key, format!("must be {want}, got {}", describe(value)))
    };
    Ok(match ty {
        InputType::String | InputType::Password | InputType::Code => match value {
            Value::String(_) => value,
            Value::Number(n) => Value::String(n.to_string()),
            _ => return Err(wrong("a string", &value)),
        },
        InputType::Boolean => match value {
            Value::Bool(_) => value,
            Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => return Err(wrong("true or false", &value)),
        },
        InputType::Integer => match value {
            // Not `is_u64`: a number above i64::MAX would slip past the
            // range check below (found by the invoke fuzz target: rawRequest's
            // maxRetries 18446744073709551615 became 4,294,967,295 retries).
            Value::Number(ref n) if n.is_i64() => value,
            Value::String(ref s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| wrong("a whole number", &value))?,
            _ => return Err(wrong("a whole number", &value)),
        },
        InputType::Json => value,
        InputType::List => match value {
            Value::Array(ref items) => {
                if items.iter().any(|i| !i.is_string()) {
                    return Err(wrong("a list of strings", &value));
                }
                value
            }
            Value::String(s) => Value::Array(
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            ),
            _ => return Err(wrong("a list of strings", &value)),
        },
        InputType::KeyValueList => match value {
            Value::Array(ref items) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.get("key").is_some_and(Value::is_string) || item.get("value").is_none()
                    {
                        return Err(ConnectorError::invalid_input(
                            format!("{key}[{i}]"),
                            "must be an object {\"key\": \"…\", \"value\": …}",
                        ));
                    }
                }
                value
            }
            Value::Object(map) => Value::Array(
                map.into_iter()
                    .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
                    .collect(),
            ),
            _ => return Err(wrong("a list of {key, value} objects", &value)),
        },
    })
}

/// What kind of JSON value this is, for messages ("got a list").
pub fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::def::{ActionDef, input};
    use crate::error::ErrorKind;
    use serde_json::json;

    fn def() -> ActionDef {
        ActionDef {
            key: "test",
            label: "Test",
            description: "",
            deprecated: false,
            input_defs: || {
                vec![
                    input("entityType", "Entity Type", InputType::String, "").required(),
                    input("fetchAll", "Fetch All", InputType::Boolean, "").default(json!(false)),
                    input("pageSize", "Page Size", InputType::Integer, "")
                        .default(json!(100))
                        .range(1, 5000),
                    input("fieldNames", "Fields", InputType::List, ""),
                    input("dynamicValues", "Dyn", InputType::KeyValueList, ""),
                ]
            },
        }
    }

    fn err_input(json: &str) -> String {
        match Inputs::parse(&def(), json).unwrap_err().kind {
            ErrorKind::InvalidInput { input } => input,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_and_coercion() {
        let i = Inputs::parse(
            &def(),
            r#"{"entityType":"accounts","fetchAll":"true","pageSize":"50","fieldNames":"name, revenue","dynamicValues":{"a":1}}"#,
        )
        .unwrap();
        assert!(i.bool("fetchAll").unwrap());
        assert_eq!(i.u64("pageSize").unwrap(), Some(50));
        assert_eq!(i.list("fieldNames").unwrap(), vec!["name", "revenue"]);
        assert_eq!(
            i.pairs("dynamicValues").unwrap(),
            vec![("a".to_string(), json!(1))]
        );
        let d = Inputs::parse(&def(), r#"{"entityType":"accounts"}"#).unwrap();
        assert_eq!(d.expect_u64("pageSize").unwrap(), 100, "the default");
        assert!(!d.bool("fetchAll").unwrap());
    }

    #[test]
    fn errors_name_the_input() {
        assert_eq!(err_input("{}"), "entityType");
        assert_eq!(err_input(r#"{"entityType":"a","pagesize":1}"#), "pagesize");
        assert_eq!(err_input(r#"{"entityType":"a","pageSize":0}"#), "pageSize");
        assert_eq!(
            err_input(r#"{"entityType":"a","pageSize":"x"}"#),
            "pageSize"
        );
        assert_eq!(err_input(r#"{"entityType":"a","fetchAll":3}"#), "fetchAll");
        // Above i64::MAX: refused, never past the range check.
        for big in [
            "18446744073709551615",
            "9223372036854775808",
            "\"9223372036854775808\"",
        ] {
            assert_eq!(
                err_input(&format!(r#"{{"entityType":"a","pageSize":{big}}}"#)),
                "pageSize"
            );
        }
        assert_eq!(
            err_input(r#"{"entityType":"a","dynamicValues":[{"k":1}]}"#),
            "dynamicValues[0]"
        );
        assert_eq!(err_input("[1]"), "inputs");
        assert_eq!(err_input("{"), "inputs");
        assert_eq!(err_input(r#"{"entityType":"a"} x"#), "inputs");
        // Valid JSON that serde_json cannot hold: the input is named.
        assert_eq!(
            err_input(r#"{"entityType":"a","pageSize":1e400}"#),
            "pageSize"
        );
        // The first unknown by name, and a later duplicate wins.
        assert_eq!(err_input(r#"{"entityType":"a","zz":1,"ab":2}"#), "ab");
        let i = Inputs::parse(&def(), r#"{"entityType":"x","entityType":"accounts"}"#).unwrap();
        assert_eq!(i.str("entityType").unwrap(), Some("accounts"));
    }

    #[test]
    fn a_key_the_definition_does_not_declare_is_refused() {
        let i = Inputs::parse(&def(), r#"{"entityType":"accounts"}"#).unwrap();
        for e in [
            i.str("entitytype").unwrap_err(),
            i.get("top").unwrap_err(),
            i.bool("fetchall").unwrap_err(),
            i.u64("pagesize").unwrap_err(),
            i.list("fields").unwrap_err(),
            i.pairs("values").unwrap_err(),
            i.raw("batch").unwrap_err(),
        ] {
            assert!(e.message.contains("not declared"), "{}", e.message);
            assert!(
                e.message.contains("test"),
                "names the action: {}",
                e.message
            );
        }
        // Declared but absent and without a default: no value, not an error.
        assert_eq!(i.str("dynamicValues").unwrap(), None);
        assert!(i.list("fieldNames").unwrap().is_empty());
        assert!(matches!(
            i.expect_str("fieldNames").unwrap_err().kind,
            ErrorKind::InvalidInput { ref input } if input == "fieldNames"
        ));
    }

    #[test]
    fn raw_inputs_keep_their_text() {
        let defs = vec![
            input("list", "List", InputType::Json, "").raw().required(),
            input("other", "Other", InputType::Json, "")
                .raw()
                .default(json!({"a": 1})),
        ];
        let i = Inputs::parse_for("t", &defs, r#"{"list": [ 1.50, {"b" : 2} ]}"#).unwrap();
        assert_eq!(
            i.raw("list").unwrap().unwrap().get(),
            r#"[ 1.50, {"b" : 2} ]"#
        );
        assert_eq!(
            i.raw("other").unwrap().unwrap().get(),
            r#"{"a":1}"#,
            "the default"
        );
        assert!(i.get("list").unwrap().is_none(), "not a Value as well");
        let e = Inputs::parse_for("t", &defs, r#"{"list": null}"#).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::InvalidInput { ref input } if input == "list"));
    }
}
