//! Canonical values per attribute type, comparison with Dataverse's
//! semantics (case-insensitive strings, nulls), and formatted values
//! (`OData.Community.Display.V1.FormattedValue`). Dates: [`crate::emulator::dates`].
//!
//! Canonical JSON per type: String/Memo → string; Integer, Picklist, State
//! → integer; Money/Decimal → number; Boolean → bool; DateTime → string
//! `YYYY-MM-DDTHH:MM:SSZ`; Uniqueidentifier and Lookup → lower-case GUID.

use super::normalize_guid;
use super::schema::{AttributeDef, AttributeKind};
use crate::emulator::dates::{civil_from_days, format_datetime, parse_datetime};
use serde_json::Value;
use std::cmp::Ordering;

/// Checks and canonicalises a value written to `attr`.
pub fn coerce(attr: &AttributeDef, value: &Value) -> Result<Value, String> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let wrong = |want: &str| {
        format!(
            "Cannot convert the literal '{value}' to the expected type '{want}' for '{}'.",
            attr.logical_name
        )
    };
    Ok(match &attr.kind {
        AttributeKind::String { max_length } | AttributeKind::Memo { max_length } => {
            let s = value.as_str().ok_or_else(|| wrong("Edm.String"))?;
            if s.chars().count() > *max_length as usize {
                return Err(format!(
                    "A validation error occurred.  The length of the '{}' attribute of the record exceeded the maximum allowed length of '{max_length}'.",
                    attr.logical_name
                ));
            }
            value.clone()
        }
        AttributeKind::Integer | AttributeKind::Picklist { .. } | AttributeKind::State { .. } => {
            let n = value.as_i64().ok_or_else(|| wrong("Edm.Int32"))?;
            if let Some(options) = attr.kind.options()
                && !options.iter().any(|(v, _)| *v == n)
            {
                return Err(format!(
                    "A validation error occurred. The value {n} of '{}' on record of type is outside the valid range.",
                    attr.logical_name
                ));
            }
            Value::from(n)
        }
        AttributeKind::Money | AttributeKind::Decimal => {
            let n = value.as_f64().ok_or_else(|| wrong("Edm.Decimal"))?;
            Value::from(n)
        }
        AttributeKind::Boolean => Value::Bool(value.as_bool().ok_or_else(|| wrong("Edm.Boolean"))?),
        AttributeKind::DateTime => {
            let s = value.as_str().ok_or_else(|| wrong("Edm.DateTimeOffset"))?;
            let secs = parse_datetime(s).ok_or_else(|| wrong("Edm.DateTimeOffset"))?;
            Value::String(format_datetime(secs))
        }
        // Edm.Binary: base64 text (the thumbnail).
        AttributeKind::Image { .. } => {
            value.as_str().ok_or_else(|| wrong("Edm.Binary"))?;
            value.clone()
        }
        AttributeKind::Uniqueidentifier
        | AttributeKind::Lookup { .. }
        | AttributeKind::File { .. } => {
            let s = value.as_str().ok_or_else(|| wrong("Edm.Guid"))?;
            Value::String(normalize_guid(s).ok_or_else(|| wrong("Edm.Guid"))?)
        }
    })
}

/// Equality as a Dataverse filter sees it; `None` when the types cannot be
/// compared. Strings (and so GUIDs and dates) compare case-insensitively.
pub fn equals(a: &Value, b: &Value) -> Option<bool> {
    compare(a, b).map(|o| o == Ordering::Equal)
}

/// Ordering of two values of the same type. Nulls sort first (as in SQL
/// Server's ascending order); mixed types do not compare.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) => Some(Ordering::Less),
        (_, Value::Null) => Some(Ordering::Greater),
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::String(x), Value::String(y)) => {
            if let (Some(dx), Some(dy)) = (date_like(x), date_like(y)) {
                return Some(dx.cmp(&dy));
            }
            Some(x.to_lowercase().cmp(&y.to_lowercase()))
        }
        _ => None,
    }
}

/// Seconds for strings that look like dates (so that `2024-01-01` and
/// `2024-01-01T00:00:00Z` compare as the same instant).
fn date_like(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' && b[0].is_ascii_digit() {
        parse_datetime(s)
    } else {
        None
    }
}

/// Ordering for `$orderby`/FetchXML `order`: like [`compare`], with
/// incomparable values treated as equal.
pub fn sort_cmp(a: &Value, b: &Value) -> Ordering {
    compare(a, b).unwrap_or(Ordering::Equal)
}

/// The display text Dataverse sends as the FormattedValue annotation.
/// Lookups are formatted by the caller (they need the target's name).
pub fn formatted(attr: &AttributeDef, value: &Value) -> Option<String> {
    if value.is_null() {
        return None;
    }
    Some(match &attr.kind {
        AttributeKind::Money => format!("${}", group_thousands(value.as_f64()?, 2)),
        AttributeKind::Decimal => group_thousands(value.as_f64()?, 2),
        AttributeKind::Integer => group_thousands(value.as_f64()?, 0),
        AttributeKind::Boolean => if value.as_bool()? { "Yes" } else { "No" }.to_string(),
        AttributeKind::Picklist { options } | AttributeKind::State { options } => {
            let n = value.as_i64()?;
            options.iter().find(|(v, _)| *v == n)?.1.to_string()
        }
        AttributeKind::DateTime => {
            let secs = parse_datetime(value.as_str()?)?;
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let rem = secs.rem_euclid(86_400);
            let (h, mi) = (rem / 3600, (rem % 3600) / 60);
            let (h12, ampm) = match h {
                0 => (12, "AM"),
                1..=11 => (h, "AM"),
                12 => (12, "PM"),
                _ => (h - 12, "PM"),
            };
            format!("{m}/{d}/{y} {h12}:{mi:02} {ampm}")
        }
        _ => return None,
    })
}

fn group_thousands(n: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, n.abs());
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i.to_string(), Some(f.to_string())),
        None => (text.clone(), None),
    };
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(&f);
    }
    if n < 0.0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comparisons_follow_dataverse() {
        assert_eq!(equals(&json!("Contoso"), &json!("contoso")), Some(true));
        assert_eq!(equals(&json!(2), &json!(2.0)), Some(true));
        assert_eq!(
            compare(&json!("2024-01-01T00:00:00Z"), &json!("2024-01-01")),
            Some(Ordering::Equal)
        );
        assert_eq!(compare(&json!(1), &json!("a")), None);
        assert_eq!(compare(&Value::Null, &json!(1)), Some(Ordering::Less));
    }

    #[test]
    fn formats_money_and_numbers() {
        assert_eq!(group_thousands(1234567.5, 2), "1,234,567.50");
        assert_eq!(group_thousands(-999.0, 0), "-999");
    }
}
