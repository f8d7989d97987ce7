//! Canonical values per attribute type, comparison with Dataverse's
//! semantics (case-insensitive strings, nulls), dates without a date crate,
//! and formatted values (`OData.Community.Display.V1.FormattedValue`).
//!
//! Canonical JSON per type: String/Memo → string; Integer, Picklist, State
//! → integer; Money/Decimal → number; Boolean → bool; DateTime → string
//! `YYYY-MM-DDTHH:MM:SSZ`; Uniqueidentifier and Lookup → lower-case GUID.

use super::normalize_guid;
use super::schema::{AttributeDef, AttributeKind};
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

/// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The civil date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_datetime(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fff]]` with `Z` or `±HH:MM`.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    let num = |t: &str| t.parse::<i64>().ok();
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let y = num(parts.next()?)?;
    let m = num(parts.next()?)?;
    let d = num(parts.next()?)?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, m as u32, d as u32) * 86_400;
    if let Some(t) = time {
        let (clock, offset) = if let Some(c) = t.strip_suffix('Z') {
            (c, 0)
        } else if let Some(i) = t.rfind(['+', '-']) {
            let (c, o) = t.split_at(i);
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o.get(1..)?.split_once(':')?;
            (c, sign * (num(oh)? * 3600 + num(om)? * 60))
        } else {
            (t, 0)
        };
        let mut hms = clock.split(':');
        let h = num(hms.next()?)?;
        let mi = num(hms.next()?)?;
        let sec = match hms.next() {
            Some(x) => x.split('.').next().and_then(num)?,
            None => 0,
        };
        if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..61).contains(&sec) {
            return None;
        }
        secs += h * 3600 + mi * 60 + sec - offset;
    }
    Some(secs)
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
    fn dates_round_trip() {
        let s = parse_datetime("2024-02-29T13:05:09Z").unwrap();
        assert_eq!(format_datetime(s), "2024-02-29T13:05:09Z");
        assert_eq!(
            parse_datetime("2024-02-29").unwrap() + 13 * 3600 + 5 * 60 + 9,
            s
        );
        assert_eq!(parse_datetime("2024-02-29T15:05:09+02:00"), Some(s));
        assert!(parse_datetime("2024-13-01").is_none());
    }

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
