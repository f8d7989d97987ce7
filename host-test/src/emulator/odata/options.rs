//! System query options (`$select`, `$filter`, `$orderby`, `$top`,
//! `$expand` with nested options, `$count`, `$skiptoken`, `$apply`) and the `Prefer`
//! header, parsed into typed values.

use super::ODataError;
use super::apply::{Apply, parse_apply};
use super::filter::{Expr, parse_filter};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    pub property: String,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpandItem {
    pub navigation: String,
    pub options: QueryOptions,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryOptions {
    pub select: Option<Vec<String>>,
    pub filter: Option<Expr>,
    pub orderby: Vec<OrderKey>,
    pub top: Option<usize>,
    pub expand: Vec<ExpandItem>,
    pub count: bool,
    pub skiptoken: Option<String>,
    /// `$apply` (see [`super::apply`]).
    pub apply: Option<Apply>,
}

/// Splits `s` at `sep` outside parentheses, brackets and quotes.
fn split_top(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' | '[' if !quoted => depth += 1,
            ')' | ']' if !quoted => depth -= 1,
            _ => {}
        }
        if c == sep && depth == 0 && !quoted {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Percent-decoding of one query component (`+` is a space, as servers
/// treat form-style query strings).
pub fn decode_component(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The query string as (name, decoded value) pairs, in order.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode_component(k), decode_component(v)),
            None => (decode_component(p), String::new()),
        })
        .collect()
}

impl QueryOptions {
    /// Parses the system query options of a request's query string.
    pub fn parse(pairs: &[(String, String)]) -> Result<QueryOptions, ODataError> {
        let aliases: HashMap<String, String> = pairs
            .iter()
            .filter_map(|(k, v)| k.strip_prefix('@').map(|n| (n.to_string(), v.clone())))
            .collect();
        let mut o = QueryOptions::default();
        for (k, v) in pairs {
            if k.starts_with('@') || !k.starts_with('$') {
                continue;
            }
            o.apply(k, v, &aliases, false)?;
        }
        Ok(o)
    }

    fn apply(
        &mut self,
        name: &str,
        value: &str,
        aliases: &HashMap<String, String>,
        nested: bool,
    ) -> Result<(), ODataError> {
        match name {
            "$select" => {
                self.select = Some(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                )
            }
            "$filter" => self.filter = Some(parse_filter(value, aliases)?),
            "$orderby" => {
                self.orderby = Vec::new();
                for part in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let mut words = part.split_whitespace();
                    let property = words.next().unwrap_or("").to_string();
                    let descending = match words.next() {
                        None | Some("asc") => false,
                        Some("desc") => true,
                        Some(other) => {
                            return Err(ODataError::bad_request(format!(
                                "Syntax error at position {} in '{value}'.",
                                value.find(other).unwrap_or(0)
                            )));
                        }
                    };
                    self.orderby.push(OrderKey {
                        property,
                        descending,
                    });
                }
            }
            "$top" => {
                let n = value.trim().parse::<usize>().map_err(|_| {
                    ODataError::bad_request(format!(
                        "Invalid value '{value}' for $top query option found. The $top query option requires a non-negative integer value."
                    ))
                })?;
                self.top = Some(n);
            }
            "$count" if !nested => {
                self.count = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ODataError::bad_request(format!(
                            "'{value}' is not a valid count option."
                        )));
                    }
                }
            }
            "$expand" => {
                self.expand = Vec::new();
                for item in split_top(value, ',') {
                    let item = item.trim();
                    if item.is_empty() {
                        continue;
                    }
                    let (nav, inner) = match item.find('(') {
                        Some(i) if item.ends_with(')') => {
                            (&item[..i], Some(&item[i + 1..item.len() - 1]))
                        }
                        Some(_) => {
                            return Err(ODataError::bad_request(format!(
                                "Syntax error at position {} in '{value}'.",
                                value.len()
                            )));
                        }
                        None => (item, None),
                    };
                    let mut options = QueryOptions::default();
                    if let Some(inner) = inner {
                        for opt in split_top(inner, ';') {
                            let opt = opt.trim();
                            if opt.is_empty() {
                                continue;
                            }
                            let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
                            if !matches!(k, "$select" | "$filter" | "$orderby" | "$top" | "$expand")
                            {
                                return Err(ODataError::bad_request(format!(
                                    "The query option '{k}' is not supported inside $expand."
                                )));
                            }
                            options.apply(k, v, aliases, true)?;
                        }
                    }
                    self.expand.push(ExpandItem {
                        navigation: nav.trim().to_string(),
                        options,
                    });
                }
                if self.expand.len() > 15 {
                    return Err(ODataError::bad_request(
                        "Number of expands in a query exceeds the limit of 15.".to_string(),
                    ));
                }
            }
            "$skiptoken" if !nested => self.skiptoken = Some(value.to_string()),
            "$skip" => {
                return Err(ODataError::bad_request(
                    "The query parameter $skip is not supported".to_string(),
                ));
            }
            "$apply" if !nested => self.apply = Some(parse_apply(value, aliases)?),
            "$search" | "$levels" | "$format" | "$deltatoken" => {
                return Err(ODataError::not_implemented(format!(
                    "The query option '{name}' is not supported by the emulator."
                )));
            }
            other => {
                return Err(ODataError::bad_request(format!(
                    "The query parameter '{other}' is not supported."
                )));
            }
        }
        Ok(())
    }
}

/// What a request's `Prefer` headers ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefer {
    pub return_representation: bool,
    pub maxpagesize: Option<usize>,
    /// The `odata.include-annotations` patterns.
    pub annotations: Vec<String>,
    pub continue_on_error: bool,
    pub track_changes: bool,
}

impl Prefer {
    /// Parses every `Prefer` header value (several headers or one
    /// comma-joined list; quoted values may contain commas).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Prefer {
        let mut p = Prefer::default();
        for header in values {
            for item in split_quoted(header) {
                let item = item.trim();
                let (k, v) = match item.split_once('=') {
                    Some((k, v)) => (k.trim(), v.trim().trim_matches('"')),
                    None => (item, ""),
                };
                match k {
                    "return" => p.return_representation = v == "representation",
                    "odata.maxpagesize" => p.maxpagesize = v.parse().ok(),
                    "odata.include-annotations" => {
                        p.annotations = v
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    }
                    "odata.continue-on-error" => p.continue_on_error = true,
                    "odata.track-changes" => p.track_changes = true,
                    _ => {}
                }
            }
        }
        p
    }

    /// Whether annotation `name` was asked for (`*`, exact, or `prefix.*`).
    pub fn wants(&self, name: &str) -> bool {
        self.annotations.iter().any(|a| {
            a == "*"
                || a == name
                || a.strip_suffix('*')
                    .is_some_and(|prefix| name.starts_with(prefix))
        })
    }
}

fn split_quoted(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == ',' && !quoted {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(q: &str) -> Result<QueryOptions, ODataError> {
        QueryOptions::parse(&query_pairs(Some(q)))
    }

    #[test]
    fn parses_every_option() {
        let o = opts("$select=name,revenue&$filter=name%20eq%20'a'&$orderby=revenue desc,name&$top=5&$count=true&$expand=primarycontactid($select=fullname;$expand=parentcustomerid_account($select=name)),contact_customer_accounts($select=fullname;$top=2)").unwrap();
        assert_eq!(o.select.unwrap(), vec!["name", "revenue"]);
        assert!(o.filter.is_some());
        assert_eq!(o.orderby.len(), 2);
        assert!(o.orderby[0].descending && !o.orderby[1].descending);
        assert_eq!(o.top, Some(5));
        assert!(o.count);
        assert_eq!(o.expand.len(), 2);
        assert_eq!(o.expand[0].navigation, "primarycontactid");
        assert_eq!(
            o.expand[0].options.select.as_ref().unwrap(),
            &vec!["fullname"]
        );
        assert_eq!(
            o.expand[0].options.expand[0].navigation,
            "parentcustomerid_account"
        );
        assert_eq!(o.expand[1].options.top, Some(2));
    }

    #[test]
    fn skip_is_rejected() {
        let e = opts("$skip=10").unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn prefer_values() {
        let p = Prefer::parse([
            "odata.include-annotations=\"OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.*\", odata.maxpagesize=10",
            "return=representation",
        ]);
        assert_eq!(p.maxpagesize, Some(10));
        assert!(p.return_representation);
        assert!(p.wants("OData.Community.Display.V1.FormattedValue"));
        assert!(p.wants("Microsoft.Dynamics.CRM.lookuplogicalname"));
        assert!(!p.wants("Other.Thing"));
    }
}
