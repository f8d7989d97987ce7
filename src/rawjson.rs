//! Reading JSON without building `Value` trees: an object's members and an
//! array's elements as their raw text, parsed further only where needed.
//! runBatch's 1,000 items are read this way: as a `Value` tree they took
//! ~1.5 ms to build and drop, and their bodies were serialised again.
//!
//! One visitor for every object (inputs, batch items), so that the
//! component carries one copy of serde_json's generic code for it.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// An object's members in document order (duplicates kept; readers take
/// the last, as a JSON object read as a map does).
pub type Members<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// The members of the JSON object `text`. An error of category `Data`
/// means `text` is JSON but not an object.
pub fn members(text: &str) -> serde_json::Result<Members<'_>> {
    serde_json::from_str::<Object>(text).map(|o| o.0)
}

/// The elements of the JSON array `text`.
pub fn elements(text: &str) -> serde_json::Result<Vec<&RawValue>> {
    serde_json::from_str(text)
}

/// The last member called `name`.
pub fn member<'a>(members: &Members<'a>, name: &str) -> Option<&'a RawValue> {
    members
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
}

/// A JSON string's text (borrowed unless it has escapes); `None` for any
/// other JSON type.
pub fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let t = raw.get();
    let inner = t.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(t).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// `null`, which inputs and items treat as absent.
pub fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

struct Object<'a>(Members<'a>);

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Object<'de>, M::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(name) = map.next_key::<Name<'de>>()? {
            out.push((name.0, map.next_value::<&'de RawValue>()?));
        }
        Ok(Object(out))
    }
}

/// A member name, borrowed from the input unless it has escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_order_duplicates_and_raw_text() {
        let m = members(r#"{"b": [1, 2], "a\u0062": "x\"y", "b": 1.10}"#).unwrap();
        let names: Vec<&str> = m.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(names, ["b", "ab", "b"]);
        assert!(
            matches!(m[0].0, Cow::Borrowed(_)),
            "unescaped names are borrowed"
        );
        assert_eq!(m[0].1.get(), "[1, 2]");
        assert_eq!(
            member(&m, "b").unwrap().get(),
            "1.10",
            "the last one counts"
        );
        assert_eq!(string(member(&m, "ab").unwrap()).unwrap(), "x\"y");
        assert_eq!(string(m[0].1), None);
        let e = members("[1]").unwrap_err();
        assert_eq!(e.classify(), serde_json::error::Category::Data);
        assert_ne!(
            members("{").unwrap_err().classify(),
            serde_json::error::Category::Data
        );
    }

    #[test]
    fn elements_are_raw() {
        let e = elements(r#"[ {"a": 1} , null ]"#).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].get(), r#"{"a": 1}"#);
        assert!(is_null(e[1]));
    }
}
