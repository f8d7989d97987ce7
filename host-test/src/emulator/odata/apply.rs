//! `$apply`: the aggregation subset Dataverse supports (Microsoft Learn,
//! "Aggregate data using the Web API", power-apps/developer/data-platform/
//! webapi/query/aggregate-data): `filter(…)` steps, then `groupby((cols))`
//! with an optional `aggregate(…)`, or `aggregate(…)` alone; aggregates are
//! `col with sum|average|min|max|countdistinct as alias` and
//! `$count as alias`. This module parses; [`super::aggregate`] evaluates.

use super::ODataError;
use super::filter::{Expr, parse_filter};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Sum,
    Average,
    Min,
    Max,
    CountDistinct,
    /// `$count as alias`: rows in the group.
    Count,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// The property path (`revenue`); empty for `$count`.
    pub path: Vec<String>,
    pub function: Function,
    pub alias: String,
}

/// A parsed `$apply`: filters first, then one grouping or aggregation.
#[derive(Debug, Clone, PartialEq)]
pub struct Apply {
    pub filters: Vec<Expr>,
    /// Group-by property paths (empty with `aggregate(…)` alone).
    pub group_by: Vec<Vec<String>>,
    pub aggregates: Vec<Aggregate>,
}

fn unsupported(what: &str) -> ODataError {
    // UNCONFIRMED: the text Dataverse gives for an $apply form it does not
    // support; the status and code are those of any invalid query option.
    ODataError::bad_request(format!(
        "The $apply transformation '{what}' is not supported."
    ))
}

fn syntax(text: &str) -> ODataError {
    ODataError::bad_request(format!("Syntax error in $apply '{text}'."))
}

/// Splits at `sep` outside parentheses and quotes; `None` when they do
/// not balance.
fn split_top(text: &str, sep: char) -> Option<Vec<&str>> {
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    let mut parts = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            c if c == sep && depth == 0 && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    (depth == 0 && !quoted).then(|| {
        parts.push(&text[start..]);
        parts
    })
}

/// `name(args)` → (`name`, `args`).
fn call(step: &str) -> Option<(&str, &str)> {
    let open = step.find('(')?;
    Some((step[..open].trim(), step[open + 1..].strip_suffix(')')?))
}

fn path(text: &str) -> Option<Vec<String>> {
    let parts: Vec<String> = text.trim().split('/').map(str::to_string).collect();
    parts
        .iter()
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(parts)
}

fn aggregates(text: &str) -> Result<Vec<Aggregate>, ODataError> {
    let items = split_top(text, ',').ok_or_else(|| syntax(text))?;
    items
        .iter()
        .map(|item| {
            let words: Vec<&str> = item.split_whitespace().collect();
            match words.as_slice() {
                ["$count", "as", alias] => Ok(Aggregate {
                    path: Vec::new(),
                    function: Function::Count,
                    alias: alias.to_string(),
                }),
                [column, "with", function, "as", alias] => {
                    let function = match *function {
                        "sum" => Function::Sum,
                        "average" => Function::Average,
                        "min" => Function::Min,
                        "max" => Function::Max,
                        "countdistinct" => Function::CountDistinct,
                        other => return Err(unsupported(&format!("with {other}"))),
                    };
                    Ok(Aggregate {
                        path: path(column).ok_or_else(|| syntax(item))?,
                        function,
                        alias: alias.to_string(),
                    })
                }
                _ => Err(syntax(item)),
            }
        })
        .collect()
}

/// Parses `$apply`.
pub fn parse_apply(text: &str, aliases: &HashMap<String, String>) -> Result<Apply, ODataError> {
    let mut apply = Apply {
        filters: Vec::new(),
        group_by: Vec::new(),
        aggregates: Vec::new(),
    };
    let steps = split_top(text.trim(), '/').ok_or_else(|| syntax(text))?;
    let mut grouped = false;
    for step in steps {
        let (name, args) = call(step.trim()).ok_or_else(|| syntax(step))?;
        if grouped {
            // Dataverse aggregates last: nothing may follow.
            return Err(unsupported(name));
        }
        match name {
            "filter" => apply.filters.push(parse_filter(args, aliases)?),
            "aggregate" => {
                apply.aggregates = aggregates(args)?;
                grouped = true;
            }
            "groupby" => {
                let parts = split_top(args, ',').ok_or_else(|| syntax(args))?;
                let columns = parts
                    .first()
                    .and_then(|c| c.trim().strip_prefix('('))
                    .and_then(|c| c.strip_suffix(')'))
                    .ok_or_else(|| syntax(args))?;
                for column in columns.split(',') {
                    apply
                        .group_by
                        .push(path(column).ok_or_else(|| syntax(columns))?);
                }
                match parts.get(1..).unwrap_or_default() {
                    [] => {}
                    [rest] => match call(rest.trim()) {
                        Some(("aggregate", a)) => apply.aggregates = aggregates(a)?,
                        _ => return Err(unsupported(rest.trim())),
                    },
                    _ => return Err(syntax(args)),
                }
                grouped = true;
            }
            other => return Err(unsupported(other)),
        }
    }
    if !grouped {
        return Err(unsupported("filter without groupby or aggregate"));
    }
    Ok(apply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Apply, ODataError> {
        parse_apply(text, &HashMap::new())
    }

    #[test]
    fn the_supported_forms_parse() {
        let a = parse("filter(statecode eq 0)/groupby((industrycode),aggregate(revenue with sum as total,$count as n))").unwrap();
        assert_eq!(a.filters.len(), 1);
        assert_eq!(a.group_by, vec![vec!["industrycode".to_string()]]);
        assert_eq!(a.aggregates[0].function, Function::Sum);
        assert_eq!(a.aggregates[1].function, Function::Count);
        let b = parse("aggregate(revenue with countdistinct as kinds)").unwrap();
        assert!(b.group_by.is_empty());
        assert_eq!(parse("groupby((statecode))").unwrap().aggregates, vec![]);
    }

    #[test]
    fn other_forms_are_errors_not_panics() {
        for bad in [
            "groupby(statecode)",
            "groupby((statecode),aggregate($count as n)",
            "aggregate(revenue with median as m)",
            "compute(revenue mul 2 as r)",
            "filter(statecode eq 0)",
            "groupby((statecode))/filter(statecode eq 0)",
            "aggregate(revenue as total)",
            ")(",
            "",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
        }
    }
}
