//! Evaluates a parsed `$apply` ([`super::apply`]) over a query's rows:
//! filters, groups (in key order), aggregates. At most 50,000 rows are
//! aggregated: past that, Dataverse's AggregateQueryRecordLimit error
//! (`0x8004E023`, documented for FetchXML aggregates, which share the
//! limit; Microsoft Learn, "Aggregate data using the Web API").

use super::ODataError;
use super::apply::{Aggregate, Apply, Function};
use super::eval::{Context, unknown_property};
use crate::emulator::store::Record;
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::BTreeSet;

/// The most rows one aggregate reads.
pub const AGGREGATE_ROW_LIMIT: usize = 50_000;

/// Checks every property it names against the entity.
pub fn check(apply: &Apply, ctx: &Context<'_>) -> Result<(), ODataError> {
    for f in &apply.filters {
        ctx.check(f)?;
    }
    for p in &apply.group_by {
        ctx.check_path(p)?;
    }
    for a in apply.aggregates.iter().filter(|a| !a.path.is_empty()) {
        ctx.check_path(&a.path)?;
        if ctx.entity.property(&a.path[0]).is_none() {
            return Err(unknown_property(ctx.entity, &a.path[0]));
        }
    }
    Ok(())
}

/// The aggregated rows of `rows` (already filtered by `$filter`).
pub fn rows(
    apply: &Apply,
    ctx: &Context<'_>,
    rows: &[&Record],
) -> Result<Vec<Map<String, Value>>, ODataError> {
    let kept: Vec<&Record> = rows
        .iter()
        .copied()
        .filter(|r| apply.filters.iter().all(|f| ctx.matches(f, r)))
        .collect();
    if kept.len() > AGGREGATE_ROW_LIMIT {
        return Err(ODataError::new(
            400,
            "0x8004e023",
            "AggregateQueryRecordLimit exceeded. Cannot perform this operation.",
        ));
    }
    // Groups in the order of their keys, as Dataverse sorts them.
    let mut groups: Vec<(Vec<Value>, Vec<&Record>)> = Vec::new();
    for r in kept {
        let key: Vec<Value> = apply.group_by.iter().map(|p| ctx.value(r, p)).collect();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    if apply.group_by.is_empty() && groups.is_empty() {
        groups.push((Vec::new(), Vec::new()));
    }
    groups.sort_by(|(a, _), (b, _)| {
        a.iter()
            .zip(b)
            .map(|(x, y)| compare(x, y))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    });
    Ok(groups
        .into_iter()
        .map(|(key, members)| {
            let mut row = Map::new();
            for (p, v) in apply.group_by.iter().zip(key) {
                row.insert(group_name(ctx, p), v);
            }
            for a in &apply.aggregates {
                row.insert(a.alias.clone(), aggregate(ctx, a, &members));
            }
            row
        })
        .collect())
}

/// A grouped column's name in the answer: its own for a column of the
/// table, `<table>_<column>` for one reached through a lookup (as the
/// reference notes, e.g. `contact_fullname`).
fn group_name(ctx: &Context<'_>, path: &[String]) -> String {
    match path {
        [one] => one.clone(),
        _ => {
            let mut entity = ctx.entity;
            for seg in &path[..path.len() - 1] {
                if let Some(crate::emulator::store::schema::Navigation::Single { target, .. }) =
                    ctx.store.schema().navigation(entity, seg)
                    && let Some(next) = ctx.store.schema().by_logical_name(&target)
                {
                    entity = next;
                }
            }
            format!("{}_{}", entity.logical_name, path[path.len() - 1])
        }
    }
}

/// Nulls first, then numbers, then text.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn aggregate(ctx: &Context<'_>, a: &Aggregate, members: &[&Record]) -> Value {
    if a.function == Function::Count {
        return Value::from(members.len());
    }
    let values: Vec<Value> = members
        .iter()
        .map(|r| ctx.value(r, &a.path))
        .filter(|v| !v.is_null())
        .collect();
    let numbers = || values.iter().filter_map(Value::as_f64);
    match a.function {
        Function::Sum => number(numbers().sum()),
        Function::Average if values.is_empty() => Value::Null,
        Function::Average => number(numbers().sum::<f64>() / numbers().count().max(1) as f64),
        Function::Min => values
            .iter()
            .min_by(|x, y| compare(x, y))
            .cloned()
            .unwrap_or(Value::Null),
        Function::Max => values
            .iter()
            .max_by(|x, y| compare(x, y))
            .cloned()
            .unwrap_or(Value::Null),
        Function::CountDistinct => {
            let distinct: BTreeSet<String> = values.iter().map(Value::to_string).collect();
            Value::from(distinct.len())
        }
        Function::Count => Value::from(members.len()),
    }
}

/// A sum or average as JSON: whole when it is whole.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}
