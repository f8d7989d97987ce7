//! Write payloads as Dataverse's OData reader judges them, before any
//! column is looked at: what a JSON map would silently paper over.

use super::ODataError;

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

/// The first property name that occurs twice in one JSON object of `body`,
/// at any depth (nested records of a deep insert included). `None` for
/// unique names, and for a body that is not JSON (reported elsewhere).
pub fn duplicate_property(body: &[u8]) -> Option<String> {
    use serde::de::{Deserializer as _, MapAccess, SeqAccess, Visitor};
    /// Walks one value.
    struct Walk;
    /// The first duplicate found in a value.
    struct Found(Option<String>);
    impl<'de> serde::Deserialize<'de> for Found {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Found, D::Error> {
            d.deserialize_any(Walk)
        }
    }
    impl<'de> Visitor<'de> for Walk {
        type Value = Found;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Found, M::Error> {
            let mut seen = std::collections::HashSet::new();
            let mut found = None;
            while let Some(name) = map.next_key::<String>()? {
                let inner = map.next_value::<Found>()?.0;
                if found.is_none() {
                    found = inner.or_else(|| (!seen.insert(name.clone())).then_some(name));
                }
            }
            Ok(Found(found))
        }
        fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Found, S::Error> {
            let mut found = None;
            while let Some(inner) = seq.next_element::<Found>()? {
                found = found.or(inner.0);
            }
            Ok(Found(found))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Found, E> {
            Ok(Found(None))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Found, E> {
            Ok(Found(None))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Found, E> {
            Ok(Found(None))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Found, E> {
            Ok(Found(None))
        }
        fn visit_str<E>(self, _: &str) -> Result<Found, E> {
            Ok(Found(None))
        }
        fn visit_unit<E>(self) -> Result<Found, E> {
            Ok(Found(None))
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    de.deserialize_any(Walk).ok().and_then(|f| f.0)
}

#[cfg(test)]
mod tests {
    use super::duplicate_property;

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
