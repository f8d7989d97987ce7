//! Typed values that end up in URLs: GUIDs, entity set names and record
//! keys. Quote escaping (`'` → `''`) and percent-encoding happen here and
//! nowhere else.

use crate::error::{ConnectorError, Result};
use std::fmt;

/// A GUID in Dataverse's canonical form (lower case, hyphenated). Parsing
/// tolerates braces, upper case and the 32-digit form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Guid(String);

impl Guid {
    /// 32 hex digits, hyphenated 8-4-4-4-12 or not, braces allowed;
    /// canonical form lowercase and hyphenated. One pass, one allocation:
    /// a `$batch` of 1,000 creates parses 1,000 ids.
    pub fn parse(s: &str) -> Option<Guid> {
        let t = s.trim();
        let t = t
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(t);
        let hyphenated = match t.len() {
            36 => true,
            32 => false,
            _ => return None,
        };
        // Bytes, not chars: every byte kept is an ASCII hex digit or '-'.
        // Into a fixed buffer: pushing byte by byte showed in runBatch's
        // profile (1,000 ids per batch).
        let mut out = [b'-'; 36];
        let mut at = 0usize;
        let mut digits = 0usize;
        for (i, b) in t.bytes().enumerate() {
            if hyphenated && matches!(i, 8 | 13 | 18 | 23) {
                if b != b'-' {
                    return None;
                }
                continue;
            }
            if !b.is_ascii_hexdigit() {
                return None;
            }
            if matches!(digits, 8 | 12 | 16 | 20) {
                at += 1; // over the '-' already there
            }
            *out.get_mut(at)? = b.to_ascii_lowercase();
            at += 1;
            digits += 1;
        }
        if digits != 32 {
            return None;
        }
        std::str::from_utf8(&out).ok().map(|s| Guid(s.to_string()))
    }

    /// Whether `s` is exactly the hyphenated 8-4-4-4-12 form (any case; no
    /// braces or spaces), as Dataverse writes GUIDs in JSON.
    pub fn is_hyphenated(s: &str) -> bool {
        s.len() == 36 && Self::parse(s).is_some()
    }

    /// The GUID at the end of an entity URL (`OData-EntityId`, `Location`:
    /// `…/accounts(00000000-…)`), if that is what it ends with.
    pub fn in_entity_url(url: &str) -> Option<Guid> {
        let inner = url.rsplit_once('(')?.1.split(')').next()?;
        Self::parse(inner)
    }

    /// The canonical text, without a copy.
    pub fn into_string(self) -> String {
        self.0
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `s` is an OData simple identifier (`accounts`, `_parentaccountid_value`,
/// `new_Custom1`).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An entity set name (`accounts`), checked to be an identifier so it can
/// be put in a URL as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitySet(String);

impl EntitySet {
    /// `input` names the action input for errors.
    pub fn parse(input: &str, s: &str) -> Result<EntitySet> {
        let t = s.trim();
        if !is_identifier(t) {
            return Err(ConnectorError::invalid_input(
                input,
                format!("'{t}' is not an entity set name (letters, digits and _ only)"),
            )
            .with_hint("Use the entity set name, usually the plural logical name: accounts, contacts, opportunities."));
        }
        Ok(EntitySet(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One value of an alternate key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    String(String),
    /// A number, `true`/`false` or a GUID: written without quotes.
    Bare(String),
}

/// How a URL names one record: its GUID, or alternate key values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityKey {
    Id(Guid),
    Alternate(Vec<(String, KeyValue)>),
}

impl EntityKey {
    /// Parses `entityId`: a GUID (braces and case tolerated), or alternate
    /// keys `accountnumber='A-1'` / `k1='x',k2=2`. Inside quotes, `''` is a
    /// quote, and so is a lone `'` not followed by `,` or the end (so both
    /// `lastname='O''Brien'` and `lastname='O'Brien'` mean O'Brien).
    pub fn parse(input: &str, s: &str) -> Result<EntityKey> {
        let t = s.trim();
        if let Some(g) = Guid::parse(t) {
            return Ok(EntityKey::Id(g));
        }
        let bad = |why: &str| {
            ConnectorError::invalid_input(
                input,
                format!("'{t}' is neither a GUID nor an alternate key ({why})"),
            )
            .with_hint("Give the record's GUID, or alternate key values such as accountnumber='A-1' (several keys comma-separated).")
        };
        if t.is_empty() {
            return Err(bad("empty"));
        }
        let chars: Vec<char> = t.chars().collect();
        let mut i = 0;
        let mut pairs = Vec::new();
        while i < chars.len() {
            let start = i;
            while chars.get(i).is_some_and(|c| *c != '=') {
                i += 1;
            }
            let name: String = chars
                .get(start..i)
                .unwrap_or_default()
                .iter()
                .collect::<String>()
                .trim()
                .to_string();
            if i >= chars.len() {
                return Err(bad("expected name=value"));
            }
            if !is_identifier(&name) {
                return Err(bad(&format!("'{name}' is not a column name")));
            }
            i += 1;
            while chars.get(i).is_some_and(|c| c.is_whitespace()) {
                i += 1;
            }
            let value = if chars.get(i) == Some(&'\'') {
                i += 1;
                let mut v = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(bad("unterminated quote")),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            v.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            let mut j = i + 1;
                            while chars.get(j).is_some_and(|c| c.is_whitespace()) {
                                j += 1;
                            }
                            if matches!(chars.get(j), None | Some(',')) {
                                i = j;
                                break;
                            }
                            v.push('\'');
                            i += 1;
                        }
                        Some(c) => {
                            v.push(*c);
                            i += 1;
                        }
                    }
                }
                KeyValue::String(v)
            } else {
                let start = i;
                while chars.get(i).is_some_and(|c| *c != ',') {
                    i += 1;
                }
                let word: String = chars
                    .get(start..i)
                    .unwrap_or_default()
                    .iter()
                    .collect::<String>()
                    .trim()
                    .to_string();
                if let Some(g) = Guid::parse(&word) {
                    KeyValue::Bare(g.to_string())
                } else if word == "true" || word == "false" || is_float_literal(&word) {
                    KeyValue::Bare(word)
                } else {
                    return Err(bad(&format!(
                        "the value of {name} must be quoted ('…'), a number, true/false or a GUID"
                    )));
                }
            };
            pairs.push((name, value));
            match chars.get(i) {
                Some(',') => i += 1,
                None => {}
                Some(_) => return Err(bad("expected a comma between keys")),
            }
        }
        Ok(EntityKey::Alternate(pairs))
    }

    /// The `(…)` URL segment, escaped and percent-encoded.
    pub fn to_segment(&self) -> String {
        match self {
            EntityKey::Id(g) => format!("({g})"),
            EntityKey::Alternate(pairs) => {
                let parts: Vec<String> = pairs
                    .iter()
                    .map(|(name, v)| match v {
                        KeyValue::String(s) => {
                            format!("{name}={}", encode_path(&string_literal(s)))
                        }
                        KeyValue::Bare(b) => format!("{name}={}", encode_path(b)),
                    })
                    .collect();
                format!("({})", parts.join(","))
            }
        }
    }
}

/// An entity tag as Dataverse writes it in `@odata.etag` and the `ETag`
/// header: weak, `W/"<opaque>"` (Microsoft Learn, "Perform conditional
/// operations using the Web API": `W/"468026"`; only equality is
/// meaningful). What goes inside the quotes is HTTP's `etagc` (RFC 9110
/// §8.8.3: visible ASCII but `"`) less `\`, so the header is well formed
/// and escaping the two quotes makes the tag a JSON string. Anything else
/// (`123`, `W/123`, a strong `"123"`, which Dataverse never issues) is
/// refused before a request is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ETag(String);

impl ETag {
    /// `input` names the action input for errors.
    pub fn parse(input: &str, s: &str) -> Result<ETag> {
        let t = s.trim();
        let opaque = t.strip_prefix("W/\"").and_then(|r| r.strip_suffix('"'));
        match opaque {
            Some(o) if !o.is_empty() && o.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') => {
                Ok(ETag(t.to_string()))
            }
            _ => Err(ConnectorError::invalid_input(
                input,
                format!("'{}' is not an ETag", crate::error::clip(t, 80)),
            )
            .with_hint("Give the record's @odata.etag exactly as getEntity or queryEntities returned it, e.g. W/\"4410023\" (with W/ and the quotes).")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An OData string literal: quoted, with `'` doubled. The only place
/// quotes are escaped.
pub fn string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Percent-encodes text for a path segment; quotes stay (they delimit
/// OData literals).
pub fn encode_path(s: &str) -> String {
    crate::percent::encode_except(s, b"'")
}

/// Percent-encodes a query option value: spaces become `%20` (never `+`),
/// and `&`, `+`, `#`, `%`, `?` are encoded; OData punctuation stays readable.
pub fn encode_query(s: &str) -> String {
    crate::percent::encode_except(s, b"'(),$/:@*=;")
}

/// What `str::parse::<f64>` accepts (sign, digits with an optional
/// fraction, an optional exponent; `inf`, `infinity`, `nan` in any case),
/// checked without pulling the float parser into the component.
fn is_float_literal(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    if ["inf", "infinity", "nan"]
        .iter()
        .any(|w| s.eq_ignore_ascii_case(w))
    {
        return true;
    }
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_literal_matches_the_std_parser() {
        for s in [
            "0",
            "1",
            "-1",
            "+1",
            "1.5",
            "-0.25",
            ".5",
            "5.",
            "1e5",
            "1E-5",
            "2.5e+10",
            "inf",
            "-Infinity",
            "NaN",
            "",
            ".",
            "-",
            "e5",
            "1e",
            "1e+",
            "1.2.3",
            "1,5",
            "0x10",
            "١",
            "1 ",
            "infinit",
            "+-1",
            "1_000",
            "--1",
            "1e5.5",
        ] {
            assert_eq!(is_float_literal(s), s.parse::<f64>().is_ok(), "{s:?}");
        }
    }
    use crate::error::ErrorKind;

    #[test]
    fn guids_normalise() {
        let g = Guid::parse("{A0000000-0000-4000-8000-00000000000A}").unwrap();
        assert_eq!(g.as_str(), "a0000000-0000-4000-8000-00000000000a");
        assert_eq!(
            Guid::parse(
                "A00000000000400080000000000000 0A"
                    .replace(' ', "")
                    .as_str()
            )
            .unwrap(),
            g
        );
        assert!(Guid::parse("a0000000-0000-4000-8000-00000000000g").is_none());
        assert!(Guid::parse("a000000-00000-4000-8000-00000000000a").is_none());
        assert!(Guid::parse("").is_none());
        // Hyphens only at 8-4-4-4-12, and only in the 36-character form.
        assert!(Guid::parse("a0000000-0000-4000-8000-00000000000-").is_none());
        assert!(Guid::parse("a0000000-0000-4000-8000-0000000000").is_none());
        assert!(Guid::parse("a000000000004000800000000000000-").is_none());
        // Non-ASCII never passes for hex, whatever its byte length.
        assert!(Guid::parse("a0000000-0000-4000-8000-0000000000é").is_none());
        assert_eq!(
            Guid::parse(" a0000000-0000-4000-8000-00000000000A ").unwrap(),
            g
        );
    }

    #[test]
    fn entity_sets_are_identifiers() {
        assert!(EntitySet::parse("entityType", "accounts").is_ok());
        let e = EntitySet::parse("entityType", "accounts?$top=1").unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::InvalidInput {
                input: "entityType".into()
            }
        );
    }

    #[test]
    fn alternate_keys_are_escaped_and_encoded() {
        let k = EntityKey::parse("entityId", "accountnumber='A-1'").unwrap();
        assert_eq!(k.to_segment(), "(accountnumber='A-1')");
        for given in ["lastname='O''Brien'", "lastname='O'Brien'"] {
            let k = EntityKey::parse("entityId", given).unwrap();
            assert_eq!(
                k,
                EntityKey::Alternate(vec![(
                    "lastname".into(),
                    KeyValue::String("O'Brien".into())
                )])
            );
            assert_eq!(k.to_segment(), "(lastname='O''Brien')");
        }
        let k = EntityKey::parse("entityId", "k1='a b&c#d/e?', k2=2").unwrap();
        assert_eq!(k.to_segment(), "(k1='a%20b%26c%23d%2Fe%3F',k2=2)");
        let k = EntityKey::parse("entityId", "{A0000000-0000-4000-8000-00000000000A}").unwrap();
        assert_eq!(k.to_segment(), "(a0000000-0000-4000-8000-00000000000a)");
    }

    #[test]
    fn bad_keys_name_the_input() {
        for bad in [
            "",
            "not a key",
            "name=unquoted text",
            "a=1 b=2",
            "na me='x'",
            "k='open",
        ] {
            let e = EntityKey::parse("entityId", bad).unwrap_err();
            assert_eq!(
                e.kind,
                ErrorKind::InvalidInput {
                    input: "entityId".into()
                },
                "{bad}"
            );
        }
    }

    #[test]
    fn etags_are_weak_and_quoted() {
        let tag = ETag::parse("ifMatch", " W/\"4410023\" ").unwrap();
        assert_eq!(tag.as_str(), "W/\"4410023\"");
        assert_eq!(tag.to_string(), "W/\"4410023\"");
        for bad in [
            "",
            "123",
            "W/123",
            "\"123\"",
            "W/\"\"",
            "W/\"1\"2\"",
            "W/\"1 2\"",
            "W/\"1\r\n\"",
            "W/\"1\\\\\"",
            "w/\"1\"",
            "*",
        ] {
            let e = ETag::parse("ifMatch", bad).unwrap_err();
            assert_eq!(
                e.kind,
                crate::error::ErrorKind::InvalidInput {
                    input: "ifMatch".into()
                },
                "{bad:?}"
            );
        }
    }

    #[test]
    fn query_encoding_uses_percent_20() {
        assert_eq!(
            encode_query("name eq 'a+b' and x eq 'c&d'"),
            "name%20eq%20'a%2Bb'%20and%20x%20eq%20'c%26d'"
        );
    }
}
