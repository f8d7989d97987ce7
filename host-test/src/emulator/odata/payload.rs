//! Write payloads as Dataverse's OData reader judges them, before any
//! column is looked at: what a JSON map would silently paper over.

use super::ODataError;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Dataverse's answer to a write payload its OData reader refuses: code
/// 0x80048d19 and the reader's exception after a fixed preamble (the shape
/// of Microsoft's "Error identified in Payload" troubleshooting entry).
pub fn payload_error(entity_set: &str, inner: &str) -> ODataError {
    ODataError::new(
        400,
        "0x80048d19",
        format!(
            "Error identified in Payload provided by the user for Entity :'{entity_set}', For more information on this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ---->  InnerException : Microsoft.OData.ODataException: {inner}"
        ),
    )
}

/// Why [`parse`] refused a payload.
#[derive(Debug)]
pub enum Refusal {
    /// Not JSON (or deeper than serde_json's 128 levels).
    Json(serde_json::Error),
    /// The first property name that occurs twice in one object, at any
    /// depth (nested records of a deep insert included).
    Duplicate(String),
}

/// Reads a write payload in one pass, as Dataverse's OData reader does:
/// JSON, with no object naming a property twice (a `Value` map would keep
/// the last one and say nothing).
pub fn parse(body: &[u8]) -> Result<Value, Refusal> {
    use serde::de::Deserializer as _;
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = de.deserialize_any(Read).map_err(Refusal::Json)?;
    de.end().map_err(Refusal::Json)?;
    read.0.map_err(Refusal::Duplicate)
}

/// A value, or the first duplicate property found in it.
struct Checked(Result<Value, String>);

struct Read;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        d.deserialize_any(Read)
    }
}

impl<'de> Visitor<'de> for Read {
    type Value = Checked;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Checked, M::Error> {
        let mut out = Map::new();
        let mut duplicate = None;
        while let Some(name) = map.next_key::<String>()? {
            let inner = map.next_value::<Checked>()?.0;
            match inner {
                Err(d) => duplicate = duplicate.or(Some(d)),
                Ok(v) => {
                    if out.contains_key(&name) {
                        duplicate = duplicate.or(Some(name));
                    } else {
                        out.insert(name, v);
                    }
                }
            }
        }
        Ok(Checked(duplicate.map_or(Ok(Value::Object(out)), Err)))
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Checked, S::Error> {
        let mut out = Vec::new();
        let mut duplicate = None;
        while let Some(inner) = seq.next_element::<Checked>()? {
            match inner.0 {
                Ok(v) => out.push(v),
                Err(d) => duplicate = duplicate.or(Some(d)),
            }
        }
        Ok(Checked(duplicate.map_or(Ok(Value::Array(out)), Err)))
    }
    fn visit_bool<E>(self, b: bool) -> Result<Checked, E> {
        Ok(Checked(Ok(Value::Bool(b))))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Checked, E> {
        Ok(Checked(Ok(Value::from(n))))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Checked, E> {
        Ok(Checked(Ok(Value::from(n))))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Checked, E> {
        Ok(Checked(Ok(Value::from(n))))
    }
    fn visit_str<E>(self, s: &str) -> Result<Checked, E> {
        Ok(Checked(Ok(Value::String(s.to_string()))))
    }
    fn visit_string<E>(self, s: String) -> Result<Checked, E> {
        Ok(Checked(Ok(Value::String(s))))
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked(Ok(Value::Null)))
    }
}

#[cfg(test)]
mod tests {
    use super::{Refusal, parse};
    use serde_json::Value;

    fn duplicate_property(body: &[u8]) -> Option<String> {
        match parse(body) {
            Err(Refusal::Duplicate(name)) => Some(name),
            _ => None,
        }
    }

    #[test]
    fn a_payload_reads_as_serde_json_reads_it() {
        for body in [
            r#"{"a": 1, "b": [true, null, -2, 1.5, "x\u0041"], "c": {"d": 18446744073709551615}}"#,
            "[]",
            "\"s\"",
        ] {
            let ours = parse(body.as_bytes()).expect("valid");
            assert_eq!(ours, serde_json::from_str::<Value>(body).unwrap(), "{body}");
        }
        assert!(matches!(parse(b"{} x"), Err(Refusal::Json(_))));
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(parse(deep.as_bytes()), Err(Refusal::Json(_))));
    }

    #[test]
    fn duplicate_properties_are_found_at_any_depth() {
        assert_eq!(duplicate_property(br#"{"a": 1, "b": 2}"#), None);
        assert_eq!(
            duplicate_property(br#"{"a": 1, "b": 2, "a": 3}"#).as_deref(),
            Some("a")
        );
        // Escapes name the same property.
        assert_eq!(
            duplicate_property(br#"{"name": 1, "n\u0061me": 2}"#).as_deref(),
            Some("name")
        );
        // Inside a nested record (deep insert) or an array of them.
        assert_eq!(
            duplicate_property(br#"{"x": {"y": [1, {"z": 1, "z": 2}]}, "w": 0}"#).as_deref(),
            Some("z")
        );
        // The same name in sibling objects is fine.
        assert_eq!(duplicate_property(br#"[{"a": 1}, {"a": 2}]"#), None);
        assert_eq!(duplicate_property(b"{not json"), None);
    }
}
