//! OData query options built from typed pieces (`$select`, `$filter`,
//! `$orderby`, `$expand` with nested options, `$top`, `$count`), the
//! `Prefer` header, and `@odata.nextLink` handling. Query strings encode
//! spaces as `%20`, never `+`.

use crate::connection::WebApiUrl;
use crate::error::{ConnectorError, Result};
use crate::types::{encode_query, is_identifier};
use url::Url;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub property: String,
    pub descending: bool,
}

/// One `$expand` item: a navigation property and its nested options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expand {
    pub navigation: String,
    pub select: Vec<String>,
    pub filter: Option<String>,
    pub orderby: Vec<OrderBy>,
    pub top: Option<u32>,
    pub expand: Vec<Expand>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ODataQuery {
    pub select: Vec<String>,
    /// Passed through as the user wrote it (only encoded).
    pub filter: Option<String>,
    pub orderby: Vec<OrderBy>,
    pub expand: Vec<Expand>,
    pub top: Option<u32>,
    pub count: bool,
    /// `$apply`, checked by [`parse_apply`].
    pub apply: Option<String>,
}

/// Checks `$select` names (`name`, `_parentaccountid_value`).
pub fn parse_select(input: &str, names: &[String]) -> Result<Vec<String>> {
    names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .map(|n| {
            if is_identifier(n) {
                Ok(n.to_string())
            } else {
                Err(ConnectorError::invalid_input(
                    input,
                    format!("'{n}' is not a column name"),
                ))
            }
        })
        .collect()
}

/// Parses `createdon desc, name` (a column path may use `/`).
pub fn parse_orderby(input: &str, text: &str) -> Result<Vec<OrderBy>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut words = part.split_whitespace();
        let property = words.next().unwrap_or("").to_string();
        if !property.split('/').all(is_identifier) {
            return Err(ConnectorError::invalid_input(
                input,
                format!("'{property}' is not a column name"),
            ));
        }
        let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ConnectorError::invalid_input(
                    input,
                    format!("expected asc or desc after {property}, got '{other}'"),
                ));
            }
        };
        if words.next().is_some() {
            return Err(ConnectorError::invalid_input(
                input,
                format!("'{part}' has more than a column and a direction"),
            ));
        }
        out.push(OrderBy {
            property,
            descending,
        });
    }
    Ok(out)
}

/// Splits at `sep` outside parentheses and quotes.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == sep && depth == 0 && !quoted => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Dataverse runs at most 15 `$expand` options in one query, so no valid
/// `$expand` nests deeper; the bound also keeps parsing (recursive) from
/// exhausting the stack on hostile input.
pub const MAX_EXPAND_DEPTH: usize = 15;

/// Parses `primarycontactid($select=fullname),contact_customer_accounts($select=fullname;$top=5)`.
pub fn parse_expand(input: &str, text: &str) -> Result<Vec<Expand>> {
    parse_expand_at(input, text, 1)
}

/// `depth` is the nesting level of `text` (1 for the top-level `$expand`).
fn parse_expand_at(input: &str, text: &str, depth: usize) -> Result<Vec<Expand>> {
    let bad = |why: String| ConnectorError::invalid_input(input, why);
    if depth > MAX_EXPAND_DEPTH {
        return Err(bad(format!(
            "$expand nests deeper than {MAX_EXPAND_DEPTH} levels; Dataverse runs at most {MAX_EXPAND_DEPTH} $expand options in a query"
        )));
    }
    let mut out = Vec::new();
    for item in split_top(text, ',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (nav, inner) = match item.find('(') {
            Some(i) => {
                let inner = item[i + 1..]
                    .strip_suffix(')')
                    .ok_or_else(|| bad(format!("'{item}' lacks its closing parenthesis")))?;
                (item[..i].trim(), Some(inner))
            }
            None => (item, None),
        };
        if !is_identifier(nav) {
            return Err(bad(format!("'{nav}' is not a navigation property name")));
        }
        let mut e = Expand {
            navigation: nav.to_string(),
            ..Default::default()
        };
        for opt in inner.map(|i| split_top(i, ';')).unwrap_or_default() {
            let opt = opt.trim();
            if opt.is_empty() {
                continue;
            }
            let (k, v) = opt
                .split_once('=')
                .ok_or_else(|| bad(format!("'{opt}' in $expand needs name=value")))?;
            match k.trim() {
                "$select" => {
                    let names: Vec<String> = v.split(',').map(str::to_string).collect();
                    e.select = parse_select(input, &names)?;
                }
                "$filter" => e.filter = Some(v.to_string()),
                "$orderby" => e.orderby = parse_orderby(input, v)?,
                "$top" => {
                    e.top = Some(v.trim().parse().map_err(|_| {
                        bad(format!("$top in $expand must be a whole number, got '{v}'"))
                    })?)
                }
                "$expand" => e.expand = parse_expand_at(input, v, depth + 1)?,
                other => {
                    return Err(bad(format!(
                        "'{other}' is not supported inside $expand (use $select, $filter, $orderby, $top, $expand)"
                    )));
                }
            }
        }
        out.push(e);
    }
    Ok(out)
}

fn render_orderby(keys: &[OrderBy]) -> String {
    keys.iter()
        .map(|k| {
            if k.descending {
                format!("{} desc", k.property)
            } else {
                k.property.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Expand {
    /// `nav($select=a,b;$filter=…)`, unencoded.
    fn render(&self) -> String {
        let mut opts = Vec::new();
        if !self.select.is_empty() {
            opts.push(format!("$select={}", self.select.join(",")));
        }
        if let Some(f) = &self.filter {
            opts.push(format!("$filter={f}"));
        }
        if !self.orderby.is_empty() {
            opts.push(format!("$orderby={}", render_orderby(&self.orderby)));
        }
        if let Some(t) = self.top {
            opts.push(format!("$top={t}"));
        }
        if !self.expand.is_empty() {
            let inner: Vec<String> = self.expand.iter().map(Expand::render).collect();
            opts.push(format!("$expand={}", inner.join(",")));
        }
        if opts.is_empty() {
            self.navigation.clone()
        } else {
            format!("{}({})", self.navigation, opts.join(";"))
        }
    }
}

impl ODataQuery {
    /// The query string (without `?`), every value percent-encoded.
    pub fn to_query_string(&self) -> String {
        let mut parts = Vec::new();
        if !self.select.is_empty() {
            parts.push(format!("$select={}", encode_query(&self.select.join(","))));
        }
        if let Some(f) = self.filter.as_deref().filter(|f| !f.trim().is_empty()) {
            parts.push(format!("$filter={}", encode_query(f)));
        }
        if !self.orderby.is_empty() {
            parts.push(format!(
                "$orderby={}",
                encode_query(&render_orderby(&self.orderby))
            ));
        }
        if !self.expand.is_empty() {
            let items: Vec<String> = self.expand.iter().map(Expand::render).collect();
            parts.push(format!("$expand={}", encode_query(&items.join(","))));
        }
        if let Some(t) = self.top {
            parts.push(format!("$top={t}"));
        }
        if self.count {
            parts.push("$count=true".to_string());
        }
        if let Some(a) = &self.apply {
            parts.push(format!("$apply={}", encode_query(a)));
        }
        parts.join("&")
    }

    /// `relative` plus the query string, e.g. `accounts?$select=name`.
    pub fn append_to(&self, relative: &str) -> String {
        let q = self.to_query_string();
        if q.is_empty() {
            relative.to_string()
        } else {
            format!("{relative}?{q}")
        }
    }
}

/// The aggregate functions Dataverse's `$apply` takes (Microsoft Learn,
/// "Aggregate data using the Web API").
const AGGREGATES: [&str; 5] = ["sum", "average", "min", "max", "countdistinct"];

/// Checks an `$apply` expression of the forms Dataverse supports, so that a
/// typo is an error naming the input before anything is sent:
/// `groupby((col,…))`, `groupby((col,…),aggregate(…))`, `aggregate(…)` and
/// `filter(…)` steps joined with `/`; an aggregate is `col with
/// sum|average|min|max|countdistinct as alias` or `$count as alias`.
pub fn parse_apply(input: &str, text: &str) -> Result<String> {
    let text = text.trim();
    let bad = |why: String| ConnectorError::invalid_input(input, why);
    if text.is_empty() {
        return Err(bad("is empty".into()));
    }
    if !balanced(text) {
        return Err(bad("has unbalanced parentheses or quotes".into()));
    }
    for step in split_top(text, '/') {
        let step = step.trim();
        let (name, args) = call_parts(step).ok_or_else(|| {
            bad(format!(
                "'{step}' is not groupby(…), aggregate(…) or filter(…)"
            ))
        })?;
        match name {
            "filter" if !args.trim().is_empty() => {}
            "aggregate" => check_aggregates(args).map_err(bad)?,
            "groupby" => {
                let parts = split_top(args, ',');
                let columns = parts.first().map(|c| c.trim()).unwrap_or("");
                let listed = columns
                    .strip_prefix('(')
                    .and_then(|c| c.strip_suffix(')'))
                    .is_some_and(|c| c.split(',').all(|n| n.trim().split('/').all(is_identifier)));
                if !listed {
                    return Err(bad(format!(
                        "groupby takes a parenthesised list of columns first, e.g. groupby((statecode)); got '{columns}'"
                    )));
                }
                match parts.get(1..).unwrap_or_default() {
                    [] => {}
                    [rest] => match call_parts(rest.trim()) {
                        Some(("aggregate", a)) => check_aggregates(a).map_err(bad)?,
                        _ => {
                            return Err(bad(format!(
                                "after groupby's columns comes aggregate(…), got '{}'",
                                rest.trim()
                            )));
                        }
                    },
                    _ => return Err(bad("groupby takes the columns and one aggregate(…)".into())),
                }
            }
            other => {
                return Err(bad(format!(
                    "'{other}' is not a transformation Dataverse supports (groupby, aggregate, filter)"
                )));
            }
        }
    }
    Ok(text.to_string())
}

/// `name(args)` → (`name`, `args`).
fn call_parts(step: &str) -> Option<(&str, &str)> {
    let open = step.find('(')?;
    let inner = step.get(open + 1..)?.strip_suffix(')')?;
    Some((step.get(..open)?.trim(), inner))
}

/// Whether parentheses and quotes pair up (outside quotes, `(` before `)`).
fn balanced(text: &str) -> bool {
    let (mut depth, mut quoted) = (0i32, false);
    for c in text.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0 && !quoted
}

fn check_aggregates(args: &str) -> std::result::Result<(), String> {
    for item in split_top(args, ',') {
        let words: Vec<&str> = item.split_whitespace().collect();
        let ok = match words.as_slice() {
            ["$count", "as", alias] => is_identifier(alias),
            [column, "with", function, "as", alias] => {
                column.split('/').all(is_identifier)
                    && AGGREGATES.contains(function)
                    && is_identifier(alias)
            }
            _ => false,
        };
        if !ok {
            return Err(format!(
                "'{}' is not an aggregate: <column> with {} as <alias>, or $count as <alias>",
                item.trim(),
                AGGREGATES.join("|")
            ));
        }
    }
    Ok(())
}

/// The `Prefer` header value for reads: page size and annotations.
pub fn prefer_header(max_page_size: Option<u32>, annotations: Option<&str>) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(n) = max_page_size {
        parts.push(format!("odata.maxpagesize={n}"));
    }
    if let Some(a) = annotations {
        parts.push(format!("odata.include-annotations=\"{a}\""));
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// Checks an `includeAnnotations` value (`*`, or comma-separated names,
/// optionally quoted) and returns it unquoted.
pub fn parse_annotations(input: &str, text: &str) -> Result<Option<String>> {
    let t = text.trim().trim_matches('"').trim();
    if t.is_empty() {
        return Ok(None);
    }
    let ok = t.split(',').map(str::trim).all(|a| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '*' | '_' | '-'))
    });
    if !ok {
        return Err(ConnectorError::invalid_input(
            input,
            format!("'{t}' is not a list of annotation names"),
        )
        .with_hint("Use * or names such as OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname."));
    }
    Ok(Some(
        t.split(',').map(str::trim).collect::<Vec<_>>().join(","),
    ))
}

/// Resolves an `@odata.nextLink` (absolute, or relative to the service
/// root) and refuses any link to another origin: following it would send
/// the connection's token elsewhere.
pub fn resolve_next_link(web_api: &WebApiUrl, input: &str, link: &str) -> Result<Url> {
    let link = link.trim();
    if link.is_empty() {
        return Err(ConnectorError::invalid_input(input, "is empty"));
    }
    let url = match Url::parse(link) {
        Ok(u) => u,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            web_api.service_root().join(link).map_err(|e| {
                ConnectorError::invalid_input(input, format!("'{link}' is not a URL ({e})"))
            })?
        }
        Err(e) => {
            return Err(ConnectorError::invalid_input(
                input,
                format!("'{link}' is not a URL ({e})"),
            ));
        }
    };
    if !web_api.is_same_origin(&url) {
        return Err(ConnectorError::invalid_input(
            input,
            format!(
                "the link points at {}, not at this connection's environment {}; refused so that the token is not sent there",
                url.origin().ascii_serialization(),
                web_api.origin()
            ),
        )
        .with_hint("Pass the @odata.nextLink returned by an earlier call on this same connection."));
    }
    if !url.path().starts_with("/api/data/") {
        return Err(ConnectorError::invalid_input(
            input,
            format!("'{link}' is not a Web API link (/api/data/…)"),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_an_encoded_query() {
        let q = ODataQuery {
            select: vec!["name".into(), "revenue".into()],
            filter: Some("name eq 'A&B + C'".into()),
            orderby: parse_orderby("orderBy", "createdon desc, name").unwrap(),
            expand: parse_expand("expand", "primarycontactid($select=fullname),contact_customer_accounts($select=fullname;$top=2)").unwrap(),
            top: Some(5),
            count: true,
            apply: None,
        };
        let s = q.to_query_string();
        assert_eq!(
            s,
            "$select=name,revenue&$filter=name%20eq%20'A%26B%20%2B%20C'&$orderby=createdon%20desc,name&$expand=primarycontactid($select=fullname),contact_customer_accounts($select=fullname;$top=2)&$top=5&$count=true"
        );
        assert!(!s.contains('+') && !s.contains(' '));
    }

    #[test]
    fn expand_parses_nested_options() {
        let e = parse_expand(
            "expand",
            "a($select=x,y;$expand=b($select=z);$orderby=x desc)",
        )
        .unwrap();
        assert_eq!(e[0].navigation, "a");
        assert_eq!(e[0].select, vec!["x", "y"]);
        assert_eq!(e[0].expand[0].select, vec!["z"]);
        assert!(e[0].orderby[0].descending);
        assert!(parse_expand("expand", "a($select=x").is_err());
        assert!(parse_expand("expand", "a b").is_err());
        assert!(parse_expand("expand", "a($skip=1)").is_err());
    }

    #[test]
    fn expand_nesting_is_bounded_not_a_stack_overflow() {
        // Found with the odata_query fuzz target (fuzz/README.md): 20,000
        // nested levels (200 KB of input) overflowed the stack.
        let nested = |depth: usize| format!("{}a{}", "a($expand=".repeat(depth), ")".repeat(depth));
        let ok = parse_expand("expand", &nested(MAX_EXPAND_DEPTH - 1)).unwrap();
        assert_eq!(ok[0].navigation, "a");
        for depth in [MAX_EXPAND_DEPTH, 20_000] {
            let e = parse_expand("expand", &nested(depth)).unwrap_err();
            assert_eq!(
                e.kind,
                crate::error::ErrorKind::InvalidInput {
                    input: "expand".into()
                }
            );
            assert!(e.message.contains("15 levels"), "{}", e.message);
        }
    }

    #[test]
    fn orderby_is_checked() {
        assert!(parse_orderby("orderBy", "name sideways").is_err());
        assert!(parse_orderby("orderBy", "na;me").is_err());
    }

    #[test]
    fn next_links_stay_on_the_environment() {
        let api = WebApiUrl::parse("https://contoso.crm.dynamics.com").unwrap();
        let ok = resolve_next_link(
            &api,
            "nextPage",
            "https://contoso.crm.dynamics.com/api/data/v9.2/accounts?$skiptoken=x",
        )
        .unwrap();
        assert_eq!(ok.host_str(), Some("contoso.crm.dynamics.com"));
        let rel = resolve_next_link(&api, "nextPage", "accounts?$skiptoken=x").unwrap();
        assert_eq!(
            rel.as_str(),
            "https://contoso.crm.dynamics.com/api/data/v9.2/accounts?$skiptoken=x"
        );
        let abs_path =
            resolve_next_link(&api, "nextPage", "/api/data/v9.2/accounts?$skiptoken=x").unwrap();
        assert_eq!(abs_path, rel);
        for bad in [
            "https://evil.example.com/api/data/v9.2/accounts",
            "http://contoso.crm.dynamics.com/api/data/v9.2/accounts",
            "https://contoso.crm.dynamics.com:444/api/data/v9.2/accounts",
            "https://contoso.crm.dynamics.com/other",
            "",
        ] {
            assert!(resolve_next_link(&api, "nextPage", bad).is_err(), "{bad}");
        }
    }

    /// Links on which debug builds panicked inside the IDNA adapter (found
    /// by the next_link fuzz target; see idna_adapter in Cargo.toml).
    #[test]
    fn links_the_idna_adapter_asserted_on_are_refused() {
        let api = WebApiUrl::parse("https://org.crm.dynamics.com").unwrap();
        for link in [
            "//Ä.Evil.com/api/data/v9.2/accounts",
            "\\\\8~5%4%45\u{2eba6}\u{1}\0\u{4}\0ww\0M\u{2eba6}/api/data/",
            "file\r:/\\\"fIl}\n\nJ\n\"fIl\nJ\u{79d0}0\u{79d0}i.\u{79d0}\n@&\n",
        ] {
            assert!(
                resolve_next_link(&api, "nextPage", link).is_err(),
                "{link:?}"
            );
        }
    }

    #[test]
    fn annotations_are_checked() {
        assert_eq!(
            parse_annotations("a", "\"OData.Community.Display.V1.FormattedValue\"").unwrap(),
            Some("OData.Community.Display.V1.FormattedValue".into())
        );
        assert!(parse_annotations("a", "x\"y").is_err());
        assert_eq!(
            prefer_header(Some(10), Some("*")).unwrap(),
            "odata.maxpagesize=10,odata.include-annotations=\"*\""
        );
    }

    #[test]
    fn apply_expressions_are_checked_before_sending() {
        for ok in [
            "groupby((statecode),aggregate($count as n))",
            "aggregate(revenue with sum as total)",
            "filter(statecode eq 0)/groupby((industrycode),aggregate(revenue with average as avg,$count as n))",
            "groupby((primarycontactid/fullname))",
            "aggregate(revenue with countdistinct as kinds,revenue with max as top)",
            "filter(name eq 'a/b (c)')/aggregate($count as n)",
        ] {
            assert_eq!(parse_apply("apply", ok).unwrap(), ok);
        }
        for bad in [
            "",
            "groupby(statecode)",
            "groupby((statecode),aggregate($count as n)",
            "groupby((statecode),aggregate(revenue with total as n))",
            "aggregate(revenue as total)",
            "grupby((statecode))",
            "groupby((statecode),filter(x))",
            "filter()",
            "aggregate($count as n))",
        ] {
            let e = parse_apply("apply", bad).unwrap_err();
            assert!(
                matches!(e.kind, crate::error::ErrorKind::InvalidInput { ref input } if input == "apply"),
                "{bad}"
            );
        }
        let q = ODataQuery {
            apply: Some("groupby((statecode),aggregate($count as n))".into()),
            ..Default::default()
        };
        assert_eq!(
            q.to_query_string(),
            "$apply=groupby((statecode),aggregate($count%20as%20n))"
        );
    }
}
