//! Evaluates parsed `$filter` and `$orderby` against store records. Property
//! names are checked against the schema first, so that an unknown name is a
//! 400 with Dataverse's message rather than a silent no-match.

use super::ODataError;
use super::filter::{CmpOp, Expr, Literal, Operand, Param, StringFn};
use super::options::OrderKey;
use crate::emulator::dates::parse_datetime;
use crate::emulator::store::schema::{AttributeKind, EntityDef, Navigation};
use crate::emulator::store::values::{self, compare};
use crate::emulator::store::{Record, Store};
use serde_json::Value;
use std::cmp::Ordering;

/// What an expression is evaluated against.
pub struct Context<'a> {
    pub store: &'a Store,
    pub entity: &'a EntityDef,
    /// Seconds since the epoch (for LastXDays and friends).
    pub now: u64,
    /// The calling systemuser (for EqualUserId).
    pub user_id: &'a str,
}

pub fn unknown_property(entity: &EntityDef, name: &str) -> ODataError {
    ODataError::bad_request(format!(
        "Could not find a property named '{name}' on type '{}'.",
        entity.odata_type()
    ))
}

impl<'a> Context<'a> {
    fn entity(&self, logical: &str) -> Option<&'a EntityDef> {
        self.store.schema().by_logical_name(logical)
    }

    /// Checks that a property path exists; returns the entity that holds
    /// the last segment's attribute.
    pub fn check_path(&self, path: &[String]) -> Result<(), ODataError> {
        let mut entity = self.entity;
        for (i, seg) in path.iter().enumerate() {
            if i + 1 == path.len() {
                return entity
                    .property(seg)
                    .map(|_| ())
                    .ok_or_else(|| unknown_property(entity, seg));
            }
            match self.store.schema().navigation(entity, seg) {
                Some(Navigation::Single { target, .. }) => {
                    entity = self
                        .entity(&target)
                        .ok_or_else(|| unknown_property(entity, seg))?;
                }
                _ => return Err(unknown_property(entity, seg)),
            }
        }
        Ok(())
    }

    /// Checks every property and function in `expr`.
    pub fn check(&self, expr: &Expr) -> Result<(), ODataError> {
        match expr {
            Expr::And(a, b) | Expr::Or(a, b) => {
                self.check(a)?;
                self.check(b)
            }
            Expr::Not(a) => self.check(a),
            Expr::Compare { left, right, .. } => {
                self.check_operand(left)?;
                self.check_operand(right)
            }
            Expr::StringFn {
                property, value, ..
            } => {
                self.check_operand(property)?;
                self.check_operand(value)
            }
            Expr::Query { name, params } => {
                if !KNOWN_QUERY_FUNCTIONS.contains(&name.as_str()) {
                    return Err(ODataError::bad_request(format!(
                        "'Microsoft.Dynamics.CRM.{name}' is not a valid function."
                    )));
                }
                let prop = param_string(params, "PropertyName").ok_or_else(|| {
                    ODataError::bad_request(format!(
                        "Microsoft.Dynamics.CRM.{name} requires the parameter 'PropertyName'."
                    ))
                })?;
                self.check_path(&[prop])
            }
        }
    }

    fn check_operand(&self, op: &Operand) -> Result<(), ODataError> {
        match op {
            Operand::Property(p) => self.check_path(p),
            Operand::Literal(_) => Ok(()),
        }
    }

    /// The value at `path` for `record` (following single-valued
    /// navigation properties; null when a lookup is empty).
    pub fn value(&self, record: &Record, path: &[String]) -> Value {
        let mut entity = self.entity;
        let mut current = record;
        for (i, seg) in path.iter().enumerate() {
            if i + 1 == path.len() {
                return match entity.property(seg) {
                    Some(a) => current.get(&a.logical_name).clone(),
                    None => Value::Null,
                };
            }
            let Some(Navigation::Single { attribute, target }) =
                self.store.schema().navigation(entity, seg)
            else {
                return Value::Null;
            };
            let Some(id) = current.get(&attribute).as_str() else {
                return Value::Null;
            };
            // A polymorphic lookup pointing at another type is null here.
            if current.lookup_targets.get(&attribute) != Some(&target) {
                return Value::Null;
            }
            let (Some(next_entity), Some(next)) =
                (self.entity(&target), self.store.get(&target, id))
            else {
                return Value::Null;
            };
            entity = next_entity;
            current = next;
        }
        Value::Null
    }

    fn operand(&self, record: &Record, op: &Operand) -> Value {
        match op {
            Operand::Property(p) => self.value(record, p),
            Operand::Literal(l) => literal_value(l),
        }
    }

    /// Whether `record` satisfies `expr` (SQL semantics for nulls: a
    /// comparison with a null column is false, except `eq null`/`ne null`).
    pub fn matches(&self, expr: &Expr, record: &Record) -> bool {
        match expr {
            Expr::And(a, b) => self.matches(a, record) && self.matches(b, record),
            Expr::Or(a, b) => self.matches(a, record) || self.matches(b, record),
            Expr::Not(a) => !self.matches(a, record),
            Expr::Compare { op, left, right } => {
                let l = self.operand(record, left);
                let r = self.operand(record, right);
                match (l.is_null(), r.is_null()) {
                    (true, true) => return matches!(op, CmpOp::Eq | CmpOp::Le | CmpOp::Ge),
                    (true, false) | (false, true) => return *op == CmpOp::Ne,
                    _ => {}
                }
                let Some(ord) = compare(&l, &r) else {
                    return false;
                };
                match op {
                    CmpOp::Eq => ord == Ordering::Equal,
                    CmpOp::Ne => ord != Ordering::Equal,
                    CmpOp::Gt => ord == Ordering::Greater,
                    CmpOp::Ge => ord != Ordering::Less,
                    CmpOp::Lt => ord == Ordering::Less,
                    CmpOp::Le => ord != Ordering::Greater,
                }
            }
            Expr::StringFn {
                func,
                property,
                value,
            } => {
                let (Value::String(hay), Value::String(needle)) =
                    (self.operand(record, property), self.operand(record, value))
                else {
                    return false;
                };
                // Dataverse turns these into SQL LIKE, so %, _ and [..]
                // inside the literal are wildcards.
                let pattern = match func {
                    StringFn::Contains => format!("%{needle}%"),
                    StringFn::StartsWith => format!("{needle}%"),
                    StringFn::EndsWith => format!("%{needle}"),
                };
                like(&hay, &pattern)
            }
            Expr::Query { name, params } => self.query_function(name, params, record),
        }
    }

    fn query_function(&self, name: &str, params: &[(String, Param)], record: &Record) -> bool {
        let Some(prop) = param_string(params, "PropertyName") else {
            return false;
        };
        let attr = self.entity.property(&prop);
        let value = self.value(record, std::slice::from_ref(&prop));
        let list: Vec<Value> = match params.iter().find(|(n, _)| n == "PropertyValues") {
            Some((_, Param::List(items))) => items
                .iter()
                .map(|s| typed_text(attr.map(|a| &a.kind), s))
                .collect(),
            _ => Vec::new(),
        };
        let single = params
            .iter()
            .find(|(n, _)| n == "PropertyValue")
            .and_then(|(_, p)| match p {
                Param::Literal(l) => Some(literal_value(l)),
                Param::List(_) => None,
            });
        let number = single.as_ref().and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        let secs = value.as_str().and_then(parse_datetime);
        let now = self.now as i64;
        let today = now - now.rem_euclid(86_400);
        let in_range = |from: i64, to: i64| secs.is_some_and(|s| s >= from && s < to);
        match name {
            "In" => list.iter().any(|v| values::equals(&value, v) == Some(true)),
            "NotIn" => {
                !value.is_null() && !list.iter().any(|v| values::equals(&value, v) == Some(true))
            }
            "Between" | "NotBetween" => {
                let inside = list.len() == 2
                    && compare(&value, &list[0]).is_some_and(|o| o != Ordering::Less)
                    && compare(&value, &list[1]).is_some_and(|o| o != Ordering::Greater)
                    && !value.is_null();
                if name == "Between" {
                    inside
                } else {
                    !value.is_null() && !inside
                }
            }
            "LastXDays" => number.is_some_and(|n| in_range(today - n * 86_400, now + 1)),
            "NextXDays" => number.is_some_and(|n| in_range(now, today + (n + 1) * 86_400)),
            "LastXHours" => number.is_some_and(|n| in_range(now - n * 3600, now + 1)),
            "NextXHours" => number.is_some_and(|n| in_range(now, now + n * 3600 + 1)),
            "Today" => in_range(today, today + 86_400),
            "Yesterday" => in_range(today - 86_400, today),
            "Tomorrow" => in_range(today + 86_400, today + 2 * 86_400),
            "On" | "OnOrAfter" | "OnOrBefore" => {
                let Some(day) = single
                    .as_ref()
                    .and_then(Value::as_str)
                    .and_then(parse_datetime)
                    .map(|s| s - s.rem_euclid(86_400))
                else {
                    return false;
                };
                match name {
                    "On" => in_range(day, day + 86_400),
                    "OnOrAfter" => in_range(day, i64::MAX),
                    _ => in_range(i64::MIN, day + 86_400),
                }
            }
            "EqualUserId" => value
                .as_str()
                .is_some_and(|v| v.eq_ignore_ascii_case(self.user_id)),
            "NotEqualUserId" => !value
                .as_str()
                .is_some_and(|v| v.eq_ignore_ascii_case(self.user_id)),
            "Null" => value.is_null(),
            "NotNull" => !value.is_null(),
            _ => false,
        }
    }

    /// The comparator for `$orderby` (nulls first ascending, as SQL does).
    pub fn order(&self, keys: &'a [OrderKey]) -> impl Fn(&Record, &Record) -> Ordering + '_ {
        move |a, b| {
            for k in keys {
                let path = [k.property.clone()];
                let o = values::sort_cmp(&self.value(a, &path), &self.value(b, &path));
                let o = if k.descending { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        }
    }

    /// Checks `$orderby` property names.
    pub fn check_order(&self, keys: &[OrderKey]) -> Result<(), ODataError> {
        for k in keys {
            self.check_path(std::slice::from_ref(&k.property))?;
        }
        Ok(())
    }
}

/// SQL Server's `LIKE`, case-insensitive: `%` any run, `_` one character,
/// `[abc]`, `[a-z]` and `[^abc]` one character of (not of) a set.
pub fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    // matches[i]: whether the pattern so far can end just before t[i].
    let mut matches = vec![false; t.len() + 1];
    matches[0] = true;
    let mut i = 0;
    while i < p.len() {
        let mut next = vec![false; t.len() + 1];
        match p[i] {
            '%' => {
                let mut any = false;
                for (k, m) in matches.iter().enumerate() {
                    any |= *m;
                    next[k] = any;
                }
                i += 1;
            }
            '[' if p[i + 1..].contains(&']') => {
                let close = i + 1 + p[i + 1..].iter().position(|c| *c == ']').unwrap_or(0);
                let set = &p[i + 1..close];
                let (negate, set) = match set.first() {
                    Some('^') => (true, &set[1..]),
                    _ => (false, set),
                };
                let in_set = |c: char| {
                    let mut j = 0;
                    while j < set.len() {
                        if j + 2 < set.len() && set[j + 1] == '-' {
                            if set[j] <= c && c <= set[j + 2] {
                                return true;
                            }
                            j += 3;
                        } else {
                            if set[j] == c {
                                return true;
                            }
                            j += 1;
                        }
                    }
                    false
                };
                for k in 0..t.len() {
                    next[k + 1] = matches[k] && in_set(t[k]) != negate;
                }
                i = close + 1;
            }
            c => {
                for k in 0..t.len() {
                    next[k + 1] = matches[k] && (c == '_' || t[k] == c);
                }
                i += 1;
            }
        }
        matches = next;
    }
    matches[t.len()]
}

/// The query functions the emulator evaluates.
pub const KNOWN_QUERY_FUNCTIONS: &[&str] = &[
    "In",
    "NotIn",
    "Between",
    "NotBetween",
    "LastXDays",
    "NextXDays",
    "LastXHours",
    "NextXHours",
    "Today",
    "Yesterday",
    "Tomorrow",
    "On",
    "OnOrAfter",
    "OnOrBefore",
    "EqualUserId",
    "NotEqualUserId",
    "Null",
    "NotNull",
];

fn param_string(params: &[(String, Param)], name: &str) -> Option<String> {
    params.iter().find_map(|(n, p)| match p {
        Param::Literal(Literal::String(s)) if n == name => Some(s.clone()),
        _ => None,
    })
}

pub fn literal_value(l: &Literal) -> Value {
    match l {
        Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Int(i) => Value::from(*i),
        Literal::Float(f) => Value::from(*f),
        Literal::String(s) | Literal::Guid(s) | Literal::DateTime(s) => Value::String(s.clone()),
    }
}

/// A list item of a query function (always text on the wire) typed after
/// the attribute it is compared with.
fn typed_text(kind: Option<&AttributeKind>, s: &str) -> Value {
    match kind {
        Some(
            AttributeKind::Integer
            | AttributeKind::Picklist { .. }
            | AttributeKind::State { .. }
            | AttributeKind::Money
            | AttributeKind::Decimal,
        ) => s
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(s.to_string())),
        _ => Value::String(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_follows_sql_server() {
        assert!(like("Contoso Ltd", "%ltd"));
        assert!(like("Contoso", "c_nt%"));
        assert!(!like("Contoso", "c_t%"));
        assert!(like("A-1", "[a-c]-%"));
        assert!(!like("D-1", "[a-c]-%"));
        assert!(like("D-1", "[^a-c]-%"));
        assert!(like("50%", "%5[0-9][%]"));
        assert!(like("", "%"));
        assert!(!like("abc", "ab"));
    }
}
