//! Evaluating one `<condition>` against one column value, independent of
//! how records are stored: the evaluator over the record store (after the
//! records merge) reads the column and asks [`Condition::matches`].
//!
//! Semantics follow SQL Server, which Dataverse runs FetchXML on:
//! comparisons are case-insensitive (the default collation), a null column
//! matches only `null` (so `ne`, `not-like`, `not-in`, `not-between` exclude
//! nulls), `like` uses `%` and `_`, `begins-with`/`ends-with` are `like`
//! with a trailing/leading `%`. GUIDs compare without braces. Numbers
//! compare numerically, booleans accept `1`/`0`/`true`/`false`, and
//! date-times compare as ISO 8601 text (UNCONFIRMED: time-zone behaviour of
//! date conditions is not modelled).

use super::{Condition, FetchError, Operator};
use serde_json::Value;
use std::cmp::Ordering;

impl Condition {
    /// Whether a row whose column holds `value` (`None` = absent) passes.
    /// Operators the emulator does not evaluate (date shortcuts, fiscal,
    /// hierarchy…) are a 501 error rather than a silent wrong answer.
    pub fn matches(&self, value: Option<&Value>) -> Result<bool, FetchError> {
        let value = value.filter(|v| !v.is_null());
        let Some(v) = value else {
            return Ok(matches!(self.operator, Operator::Null));
        };
        let first = || self.values.first().map(String::as_str).unwrap_or("");
        let cmp = |s: &str| compare(v, s);
        Ok(match &self.operator {
            Operator::Null => false,
            Operator::NotNull => true,
            Operator::Eq => cmp(first()) == Some(Ordering::Equal),
            Operator::Ne => cmp(first()).is_some_and(|o| o != Ordering::Equal),
            Operator::Gt => cmp(first()) == Some(Ordering::Greater),
            Operator::Ge => matches!(cmp(first()), Some(Ordering::Greater | Ordering::Equal)),
            Operator::Lt => cmp(first()) == Some(Ordering::Less),
            Operator::Le => matches!(cmp(first()), Some(Ordering::Less | Ordering::Equal)),
            Operator::In => self.values.iter().any(|s| cmp(s) == Some(Ordering::Equal)),
            Operator::NotIn => !self.values.iter().any(|s| cmp(s) == Some(Ordering::Equal)),
            Operator::Between | Operator::NotBetween => {
                let lo = self.values.first().map(String::as_str).unwrap_or("");
                let hi = self.values.get(1).map(String::as_str).unwrap_or("");
                let inside = matches!(cmp(lo), Some(Ordering::Greater | Ordering::Equal))
                    && matches!(cmp(hi), Some(Ordering::Less | Ordering::Equal));
                inside == matches!(self.operator, Operator::Between)
            }
            Operator::Like => like(&text(v), first()),
            Operator::NotLike => !like(&text(v), first()),
            Operator::BeginsWith => like(&text(v), &format!("{}%", first())),
            Operator::NotBeginWith => !like(&text(v), &format!("{}%", first())),
            Operator::EndsWith => like(&text(v), &format!("%{}", first())),
            Operator::NotEndWith => !like(&text(v), &format!("%{}", first())),
            Operator::Other(name) => {
                return Err(FetchError {
                    status: 501,
                    code: "0x0",
                    message: format!(
                        "The condition operator '{name}' is valid FetchXML but this emulator does not evaluate it."
                    ),
                });
            }
        })
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn normalize(s: &str) -> String {
    let t = s.trim();
    let t = t
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(t);
    t.to_lowercase()
}

/// Column value vs condition text; `None` when they cannot be compared
/// (a number column against `abc`).
fn compare(v: &Value, s: &str) -> Option<Ordering> {
    match v {
        Value::Number(n) => {
            let a = n.as_f64()?;
            let b = s.trim().parse::<f64>().ok()?;
            a.partial_cmp(&b)
        }
        Value::Bool(b) => {
            let c = match s.trim().to_ascii_lowercase().as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => return None,
            };
            Some(b.cmp(&c))
        }
        Value::String(t) => Some(normalize(t).cmp(&normalize(s))),
        _ => None,
    }
}

/// SQL `LIKE`, case-insensitive: `%` any run, `_` one character.
/// Iterative with backtracking to the last `%` (linear-ish, no recursion).
fn like(value: &str, pattern: &str) -> bool {
    let v: Vec<char> = value.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let (mut vi, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        match p.get(pi) {
            Some('%') => {
                star = Some((pi, vi));
                pi += 1;
            }
            Some(c) if *c == '_' || Some(c) == v.get(vi) => {
                vi += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, sv)) => {
                    pi = sp + 1;
                    vi = sv + 1;
                    star = Some((sp, sv + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '%'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::fetchxml::parse;
    use serde_json::json;

    fn cond(op: &str, values: &[&str]) -> Condition {
        let vals: String = values
            .iter()
            .map(|v| format!("<value>{v}</value>"))
            .collect();
        let xml = format!(
            "<fetch><entity name='a'><filter><condition attribute='x' operator='{op}'>{vals}</condition></filter></entity></fetch>"
        );
        match parse(&xml)
            .unwrap()
            .entity
            .filters
            .remove(0)
            .items
            .remove(0)
        {
            crate::emulator::fetchxml::FilterItem::Condition(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn m(op: &str, values: &[&str], v: Value) -> bool {
        cond(op, values).matches(Some(&v)).unwrap()
    }

    #[test]
    fn comparisons() {
        assert!(m("eq", &["Contoso"], json!("contoso")));
        assert!(m(
            "eq",
            &["{AA000000-0000-0000-0000-000000000001}"],
            json!("aa000000-0000-0000-0000-000000000001")
        ));
        assert!(m("ne", &["x"], json!("y")));
        assert!(m("gt", &["10"], json!(10.5)));
        assert!(!m("gt", &["10"], json!(10)));
        assert!(m("ge", &["10"], json!(10)));
        assert!(m("lt", &["2024-02-01"], json!("2024-01-31T23:00:00Z")));
        assert!(m("le", &["5"], json!(5)));
        assert!(m("eq", &["1"], json!(true)) && m("eq", &["false"], json!(false)));
        assert!(!m("eq", &["abc"], json!(3)), "incomparable is no match");
        assert!(m("in", &["1", "2", "3"], json!(2)));
        assert!(m("not-in", &["1", "2"], json!(3)));
        assert!(m("between", &["10", "20"], json!(20)));
        assert!(!m("between", &["10", "20"], json!(21)));
        assert!(m("not-between", &["10", "20"], json!(9)));
    }

    #[test]
    fn text_patterns() {
        assert!(m("like", &["%Contoso%"], json!("The CONTOSO Group")));
        assert!(m("like", &["C_nt%o"], json!("Contoso")));
        assert!(!m("like", &["C_nt"], json!("Contoso")));
        assert!(m("like", &["%%a%"], json!("banana")));
        assert!(m("not-like", &["%x%"], json!("banana")));
        assert!(m("begins-with", &["ban"], json!("Banana")));
        assert!(m("not-begin-with", &["nan"], json!("Banana")));
        assert!(m("ends-with", &["ANA"], json!("banana")));
        assert!(m("not-end-with", &["x"], json!("banana")));
        assert!(like("", "%"));
        assert!(!like("", "_"));
    }

    #[test]
    fn nulls_follow_sql() {
        for (op, values) in [
            ("eq", vec!["x"]),
            ("ne", vec!["x"]),
            ("not-like", vec!["x"]),
            ("not-in", vec!["x"]),
            ("not-between", vec!["1", "2"]),
            ("not-null", vec![]),
        ] {
            let c = cond(op, &values);
            assert!(!c.matches(None).unwrap(), "{op}");
            assert!(!c.matches(Some(&Value::Null)).unwrap(), "{op}");
        }
        assert!(cond("null", &[]).matches(None).unwrap());
        assert!(!cond("null", &[]).matches(Some(&json!("x"))).unwrap());
        assert!(cond("not-null", &[]).matches(Some(&json!(0))).unwrap());
    }

    #[test]
    fn unevaluated_operators_are_explicit() {
        let e = cond("last-x-days", &["7"])
            .matches(Some(&json!("2024-01-01")))
            .unwrap_err();
        assert_eq!(e.status, 501);
        assert!(e.message.contains("last-x-days"));
    }
}
