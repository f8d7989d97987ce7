//! FetchXML as Dataverse reads it: the query language behind
//! `GET {entityset}?fetchXml=…` (reference §4). This module parses a query
//! into an AST and rejects what Dataverse rejects, with errors shaped like
//! Dataverse's (`{"error":{"code":"0x…","message":"…"}}`, HTTP 400).
//! [`eval`] runs a [`Fetch`] over the record store; [`condition`]
//! evaluates one condition against one column value; [`cookie`] builds and
//! reads paging cookies.
//!
//! Error codes and messages (reference §4 and §7 do not document FetchXML
//! errors, so these are UNCONFIRMED):
//! - not well-formed XML → `0x80040201` "Invalid XML." (the `InvalidXml`
//!   platform code, as public Dataverse emulators return it);
//! - no `<entity>` or no entity name → `0x80041102` "Entity Name was not
//!   specified in FetchXml String." (`QueryBuilderNoEntity`);
//! - schema violations (unknown element or attribute, bad operator, wrong
//!   number of values, bad numbers) → `0x80040203` (`InvalidArgument`) with
//!   .NET schema-validator style text;
//! - `count`/`top` above 5000 and `top` with paging → `0x80040203`.

pub mod condition;
pub mod cookie;
pub mod eval;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// Dataverse's page size cap for FetchXML (reference §4).
pub const MAX_PAGE_SIZE: u32 = 5000;

/// A FetchXML error as the Web API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl FetchError {
    fn invalid_xml(detail: &str) -> Self {
        FetchError {
            status: 400,
            code: "0x80040201",
            message: format!("Invalid XML. {detail}").trim().to_string(),
        }
    }

    fn no_entity() -> Self {
        FetchError {
            status: 400,
            code: "0x80041102",
            message: "Entity Name was not specified in FetchXml String.".into(),
        }
    }

    fn schema(message: impl Into<String>) -> Self {
        FetchError {
            status: 400,
            code: "0x80040203",
            message: message.into(),
        }
    }

    /// The Web API answer for this error.
    pub fn to_response(&self) -> super::EmuResponse {
        super::response::odata_error(self.status, self.code, &self.message)
    }
}

/// `<fetch>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fetch {
    pub top: Option<u32>,
    pub count: Option<u32>,
    pub page: Option<u32>,
    /// The `paging-cookie` attribute, XML-unescaped (the inner cookie).
    pub paging_cookie: Option<String>,
    pub distinct: bool,
    pub aggregate: bool,
    pub return_total_record_count: bool,
    pub no_lock: bool,
    pub entity: Entity,
}

/// `<entity>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entity {
    pub name: String,
    pub columns: Columns,
    pub filters: Vec<Filter>,
    pub orders: Vec<Order>,
    pub links: Vec<LinkEntity>,
}

/// Which columns an entity or link-entity returns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Columns {
    /// `<all-attributes/>`.
    pub all: bool,
    pub attributes: Vec<Attribute>,
}

/// `<attribute>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attribute {
    pub name: String,
    pub alias: Option<String>,
    pub aggregate: Option<Aggregate>,
    pub groupby: bool,
    /// `distinct="true"` on a `countcolumn` aggregate.
    pub distinct: bool,
    /// `dategrouping` (day, week, month, quarter, year, fiscal-period, fiscal-year).
    pub date_grouping: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    CountColumn,
    Sum,
    Avg,
    Min,
    Max,
}

impl Aggregate {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "count" => Self::Count,
            "countcolumn" => Self::CountColumn,
            "sum" => Self::Sum,
            "avg" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilterType {
    #[default]
    And,
    Or,
}

/// `<filter type="and|or">` with conditions and nested filters in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub kind: FilterType,
    pub items: Vec<FilterItem>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FilterItem {
    Condition(Condition),
    Filter(Filter),
}

/// `<condition>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// `entityname`: a link-entity alias the condition applies to.
    pub entity_name: Option<String>,
    pub attribute: String,
    pub operator: Operator,
    /// From `value="…"` or the `<value>` children, in order.
    pub values: Vec<String>,
    /// `valueof`: compare with another column.
    pub value_of: Option<String>,
}

/// Condition operators. The common ones are typed; the other documented
/// Dataverse operators (date, fiscal, hierarchy, user…) parse as
/// [`Operator::Other`] so a valid query is never called invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Like,
    NotLike,
    In,
    NotIn,
    Null,
    NotNull,
    Between,
    NotBetween,
    BeginsWith,
    NotBeginWith,
    EndsWith,
    NotEndWith,
    Other(String),
}

/// Documented operators without their own variant.
const OTHER_OPERATORS: &[&str] = &[
    "yesterday",
    "today",
    "tomorrow",
    "last-seven-days",
    "next-seven-days",
    "last-week",
    "this-week",
    "next-week",
    "last-month",
    "this-month",
    "next-month",
    "on",
    "on-or-before",
    "on-or-after",
    "last-year",
    "this-year",
    "next-year",
    "last-x-hours",
    "next-x-hours",
    "last-x-days",
    "next-x-days",
    "last-x-weeks",
    "next-x-weeks",
    "last-x-months",
    "next-x-months",
    "olderthan-x-months",
    "olderthan-x-years",
    "olderthan-x-weeks",
    "olderthan-x-days",
    "olderthan-x-hours",
    "olderthan-x-minutes",
    "last-x-years",
    "next-x-years",
    "eq-userid",
    "ne-userid",
    "eq-userteams",
    "eq-useroruserteams",
    "eq-useroruserhierarchy",
    "eq-useroruserhierarchyandteams",
    "eq-businessid",
    "ne-businessid",
    "eq-userlanguage",
    "this-fiscal-year",
    "this-fiscal-period",
    "next-fiscal-year",
    "next-fiscal-period",
    "last-fiscal-year",
    "last-fiscal-period",
    "last-x-fiscal-years",
    "last-x-fiscal-periods",
    "next-x-fiscal-years",
    "next-x-fiscal-periods",
    "in-fiscal-year",
    "in-fiscal-period",
    "in-fiscal-period-and-year",
    "in-or-before-fiscal-period-and-year",
    "in-or-after-fiscal-period-and-year",
    "under",
    "eq-or-under",
    "not-under",
    "above",
    "eq-or-above",
    "contain-values",
    "not-contain-values",
];

/// How many values an operator takes.
enum Arity {
    None,
    One,
    Two,
    AtLeastOne,
    Any,
}

impl Operator {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "eq" => Self::Eq,
            "ne" | "neq" => Self::Ne,
            "gt" => Self::Gt,
            "ge" => Self::Ge,
            "lt" => Self::Lt,
            "le" => Self::Le,
            "like" => Self::Like,
            "not-like" => Self::NotLike,
            "in" => Self::In,
            "not-in" => Self::NotIn,
            "null" => Self::Null,
            "not-null" => Self::NotNull,
            "between" => Self::Between,
            "not-between" => Self::NotBetween,
            "begins-with" => Self::BeginsWith,
            "not-begin-with" => Self::NotBeginWith,
            "ends-with" => Self::EndsWith,
            "not-end-with" => Self::NotEndWith,
            other if OTHER_OPERATORS.contains(&other) => Self::Other(other.to_string()),
            _ => return None,
        })
    }

    fn arity(&self) -> Arity {
        match self {
            Self::Null | Self::NotNull => Arity::None,
            Self::Between | Self::NotBetween => Arity::Two,
            Self::In | Self::NotIn => Arity::AtLeastOne,
            Self::Other(_) => Arity::Any,
            _ => Arity::One,
        }
    }
}

/// `<order attribute|alias descending>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Order {
    pub attribute: Option<String>,
    pub alias: Option<String>,
    /// `entityname`: order by a link-entity column.
    pub entity_name: Option<String>,
    pub descending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkType {
    #[default]
    Inner,
    Outer,
}

/// `<link-entity>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkEntity {
    pub name: String,
    /// Column of the linked table.
    pub from: String,
    /// Column of the parent table.
    pub to: String,
    pub alias: Option<String>,
    pub link_type: LinkType,
    pub columns: Columns,
    pub filters: Vec<Filter>,
    pub orders: Vec<Order>,
    pub links: Vec<LinkEntity>,
}

/// A generic element tree, built first so the AST pass can look at
/// children in any order.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    text: String,
}

impl Node {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Rejects attributes the schema does not declare for this element.
    fn allow_attrs(&self, allowed: &[&str]) -> Result<(), FetchError> {
        match self
            .attrs
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            Some((k, _)) => Err(FetchError::schema(format!(
                "The '{k}' attribute is not declared on element '{}'.",
                self.name
            ))),
            None => Ok(()),
        }
    }

    fn required(&self, name: &str) -> Result<String, FetchError> {
        match self.attr(name).map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v.to_string()),
            _ => Err(FetchError::schema(format!(
                "The required attribute '{name}' is missing on element '{}'.",
                self.name
            ))),
        }
    }

    fn flag(&self, name: &str) -> Result<bool, FetchError> {
        match self.attr(name).map(str::trim) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
            Some(v) => Err(FetchError::schema(format!(
                "The '{name}' attribute is invalid - The value '{v}' is invalid according to its datatype 'http://www.w3.org/2001/XMLSchema:boolean'."
            ))),
        }
    }

    fn number(&self, name: &str) -> Result<Option<u32>, FetchError> {
        match self.attr(name).map(str::trim) {
            None => Ok(None),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Some(n)),
                _ => Err(FetchError::schema(format!(
                    "The '{name}' attribute is invalid - The value '{v}' is invalid according to its datatype 'http://www.w3.org/2001/XMLSchema:positiveInteger'."
                ))),
            },
        }
    }

    fn unexpected_child(&self, child: &Node, expected: &str) -> FetchError {
        FetchError::schema(format!(
            "The element '{}' has invalid child element '{}'. List of possible elements expected: '{expected}'.",
            self.name, child.name
        ))
    }
}

fn tree(xml: &str) -> Result<Node, FetchError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let event = reader.read_event().map_err(|e| {
            FetchError::invalid_xml(&format!("{e} (at byte {}).", reader.error_position()))
        })?;
        match event {
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                let _ = e;
                return Err(FetchError::invalid_xml("There are multiple root elements."));
            }
            Event::Start(e) => stack.push(node(&e)?),
            Event::Empty(e) => {
                let n = node(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(n),
                    None => root = Some(n),
                }
            }
            Event::End(_) => {
                let n = stack
                    .pop()
                    .ok_or_else(|| FetchError::invalid_xml("Unexpected end tag."))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(n),
                    None => root = Some(n),
                }
            }
            Event::Text(t) => {
                let text = t
                    .decode()
                    .map_err(|e| FetchError::invalid_xml(&e.to_string()))?;
                match stack.last_mut() {
                    Some(n) => n.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => {
                        return Err(FetchError::invalid_xml(
                            "Data at the root level is invalid.",
                        ));
                    }
                }
            }
            Event::GeneralRef(r) => {
                let name = r
                    .decode()
                    .map_err(|e| FetchError::invalid_xml(&e.to_string()))?;
                let ch = match name.as_ref() {
                    "amp" => "&".to_string(),
                    "lt" => "<".to_string(),
                    "gt" => ">".to_string(),
                    "quot" => "\"".to_string(),
                    "apos" => "'".to_string(),
                    other => match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        _ => {
                            return Err(FetchError::invalid_xml(&format!(
                                "Reference to undeclared entity '{other}'."
                            )));
                        }
                    },
                };
                match stack.last_mut() {
                    Some(n) => n.text.push_str(&ch),
                    None => {
                        return Err(FetchError::invalid_xml(
                            "Data at the root level is invalid.",
                        ));
                    }
                }
            }
            Event::CData(c) => {
                let text = String::from_utf8_lossy(&c).into_owned();
                match stack.last_mut() {
                    Some(n) => n.text.push_str(&text),
                    None => {
                        return Err(FetchError::invalid_xml(
                            "Data at the root level is invalid.",
                        ));
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(FetchError::invalid_xml(
            "Unexpected end of file has occurred. The following elements are not closed.",
        ));
    }
    root.ok_or_else(|| FetchError::invalid_xml("Root element is missing."))
}

fn node(e: &BytesStart<'_>) -> Result<Node, FetchError> {
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| FetchError::invalid_xml(&err.to_string()))?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        if attrs.iter().any(|(k, _): &(String, String)| *k == key) {
            return Err(FetchError::invalid_xml(&format!(
                "'{key}' is a duplicate attribute name."
            )));
        }
        let value = a
            .unescape_value()
            .map_err(|err| FetchError::invalid_xml(&err.to_string()))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Node {
        name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Parses a FetchXML query as Dataverse would.
pub fn parse(xml: &str) -> Result<Fetch, FetchError> {
    let root = tree(xml)?;
    if root.name != "fetch" {
        return Err(FetchError::schema(format!(
            "The '{}' element is not declared.",
            root.name
        )));
    }
    root.allow_attrs(&[
        "version",
        "output-format",
        "mapping",
        "distinct",
        "top",
        "count",
        "page",
        "paging-cookie",
        "aggregate",
        "aggregatelimit",
        "returntotalrecordcount",
        "no-lock",
        "utc-offset",
        "min-active-row-version",
        "latematerialize",
        "useraworderby",
        "datasource",
        "options",
    ])?;
    let mut fetch = Fetch {
        top: root.number("top")?,
        count: root.number("count")?,
        page: root.number("page")?,
        paging_cookie: root.attr("paging-cookie").map(str::to_string),
        distinct: root.flag("distinct")?,
        aggregate: root.flag("aggregate")?,
        return_total_record_count: root.flag("returntotalrecordcount")?,
        no_lock: root.flag("no-lock")?,
        entity: Entity::default(),
    };
    for (name, v) in [("count", fetch.count), ("top", fetch.top)] {
        if let Some(n) = v
            && n > MAX_PAGE_SIZE
        {
            return Err(FetchError::schema(format!(
                "The '{name}' attribute value {n} exceeds the maximum of {MAX_PAGE_SIZE}."
            )));
        }
    }
    if fetch.top.is_some() && (fetch.page.is_some() || fetch.count.is_some()) {
        return Err(FetchError::schema(
            "The 'top' attribute can't be specified with paging attribute 'page' or 'count'.",
        ));
    }
    let mut entity = None;
    for child in &root.children {
        match child.name.as_str() {
            "entity" if entity.is_none() => entity = Some(parse_entity(child)?),
            "entity" => {
                return Err(FetchError::schema(
                    "The element 'fetch' has more than one child element 'entity'.",
                ));
            }
            _ => return Err(root.unexpected_child(child, "entity")),
        }
    }
    fetch.entity = entity.ok_or_else(FetchError::no_entity)?;
    check_aggregates(&fetch)?;
    Ok(fetch)
}

fn parse_entity(n: &Node) -> Result<Entity, FetchError> {
    n.allow_attrs(&["name", "enableprefiltering", "prefilterparametername"])?;
    let name = match n.attr("name").map(str::trim) {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => return Err(FetchError::no_entity()),
    };
    let mut entity = Entity {
        name,
        ..Entity::default()
    };
    for child in &n.children {
        match child.name.as_str() {
            "all-attributes" => entity.columns.all = true,
            "attribute" => entity.columns.attributes.push(parse_attribute(child)?),
            "filter" => entity.filters.push(parse_filter(child)?),
            "order" => entity.orders.push(parse_order(child)?),
            "link-entity" => entity.links.push(parse_link(child)?),
            _ => {
                return Err(n.unexpected_child(
                    child,
                    "all-attributes, attribute, order, filter, link-entity",
                ));
            }
        }
    }
    Ok(entity)
}

fn parse_attribute(n: &Node) -> Result<Attribute, FetchError> {
    n.allow_attrs(&[
        "name",
        "alias",
        "aggregate",
        "groupby",
        "distinct",
        "dategrouping",
        "usertimezone",
        "rowaggregate",
        "build",
        "addedby",
    ])?;
    let aggregate = match n.attr("aggregate") {
        None => None,
        Some(a) => Some(Aggregate::parse(a.trim()).ok_or_else(|| {
            FetchError::schema(format!(
                "The 'aggregate' attribute is invalid - The value '{a}' is invalid according to its datatype 'http://schemas.microsoft.com/crm/2006/query:AggregateType' - The Enumeration constraint failed."
            ))
        })?),
    };
    Ok(Attribute {
        name: n.required("name")?,
        alias: n.attr("alias").map(|s| s.trim().to_string()),
        aggregate,
        groupby: n.flag("groupby")?,
        distinct: n.flag("distinct")?,
        date_grouping: n.attr("dategrouping").map(|s| s.trim().to_string()),
    })
}

fn parse_filter(n: &Node) -> Result<Filter, FetchError> {
    n.allow_attrs(&[
        "type",
        "isquickfindfields",
        "overridequickfindrecordlimitenabled",
        "overridequickfindrecordlimitdisabled",
        "hint",
    ])?;
    let kind = match n.attr("type").map(str::trim) {
        None | Some("and") => FilterType::And,
        Some("or") => FilterType::Or,
        Some(other) => {
            return Err(FetchError::schema(format!(
                "The 'type' attribute is invalid - The value '{other}' is invalid according to its datatype 'http://schemas.microsoft.com/crm/2006/query:filterType' - The Enumeration constraint failed."
            )));
        }
    };
    let mut items = Vec::new();
    for child in &n.children {
        match child.name.as_str() {
            "condition" => items.push(FilterItem::Condition(parse_condition(child)?)),
            "filter" => items.push(FilterItem::Filter(parse_filter(child)?)),
            _ => return Err(n.unexpected_child(child, "condition, filter")),
        }
    }
    Ok(Filter { kind, items })
}

fn parse_condition(n: &Node) -> Result<Condition, FetchError> {
    n.allow_attrs(&[
        "entityname",
        "attribute",
        "operator",
        "value",
        "valueof",
        "alias",
        "aggregate",
        "rowaggregate",
        "column",
        "uiname",
        "uitype",
        "uihidden",
    ])?;
    let attribute = n.required("attribute")?;
    let op_text = n.required("operator")?;
    let operator = Operator::parse(&op_text).ok_or_else(|| {
        FetchError::schema(format!(
            "The 'operator' attribute is invalid - The value '{op_text}' is invalid according to its datatype 'http://schemas.microsoft.com/crm/2006/query:operator' - The Enumeration constraint failed."
        ))
    })?;
    let mut values = Vec::new();
    if let Some(v) = n.attr("value") {
        values.push(v.to_string());
    }
    for child in &n.children {
        if child.name != "value" {
            return Err(n.unexpected_child(child, "value"));
        }
        child.allow_attrs(&["uiname", "uitype"])?;
        values.push(child.text.clone());
    }
    let value_of = n.attr("valueof").map(|s| s.trim().to_string());
    let arity_ok = match operator.arity() {
        Arity::None => values.is_empty() && value_of.is_none(),
        Arity::One => (values.len() == 1) != value_of.is_some(),
        Arity::Two => values.len() == 2,
        Arity::AtLeastOne => !values.is_empty(),
        Arity::Any => true,
    };
    if !arity_ok {
        return Err(FetchError::schema(format!(
            "Condition for attribute '{attribute}': the operator '{op_text}' does not take {} value(s).",
            values.len()
        )));
    }
    Ok(Condition {
        entity_name: n.attr("entityname").map(|s| s.trim().to_string()),
        attribute,
        operator,
        values,
        value_of,
    })
}

fn parse_order(n: &Node) -> Result<Order, FetchError> {
    n.allow_attrs(&["attribute", "alias", "descending", "entityname"])?;
    let order = Order {
        attribute: n.attr("attribute").map(|s| s.trim().to_string()),
        alias: n.attr("alias").map(|s| s.trim().to_string()),
        entity_name: n.attr("entityname").map(|s| s.trim().to_string()),
        descending: n.flag("descending")?,
    };
    if order.attribute.is_none() == order.alias.is_none() {
        return Err(FetchError::schema(
            "An order element needs exactly one of the 'attribute' and 'alias' attributes.",
        ));
    }
    Ok(order)
}

fn parse_link(n: &Node) -> Result<LinkEntity, FetchError> {
    n.allow_attrs(&[
        "name",
        "from",
        "to",
        "alias",
        "link-type",
        "visible",
        "intersect",
        "enableprefiltering",
        "prefilterparametername",
    ])?;
    let link_type = match n.attr("link-type").map(str::trim) {
        None | Some("inner") => LinkType::Inner,
        Some("outer") => LinkType::Outer,
        Some(other) => {
            return Err(FetchError::schema(format!(
                "The 'link-type' attribute value '{other}' is not supported by this emulator (inner, outer)."
            )));
        }
    };
    let mut link = LinkEntity {
        name: n.required("name")?,
        from: n.required("from")?,
        to: n.required("to")?,
        alias: n.attr("alias").map(|s| s.trim().to_string()),
        link_type,
        ..LinkEntity::default()
    };
    for child in &n.children {
        match child.name.as_str() {
            "all-attributes" => link.columns.all = true,
            "attribute" => link.columns.attributes.push(parse_attribute(child)?),
            "filter" => link.filters.push(parse_filter(child)?),
            "order" => link.orders.push(parse_order(child)?),
            "link-entity" => link.links.push(parse_link(child)?),
            _ => {
                return Err(n.unexpected_child(
                    child,
                    "all-attributes, attribute, order, filter, link-entity",
                ));
            }
        }
    }
    Ok(link)
}

/// Aggregate queries: every attribute is an aggregate or a group-by and
/// has an alias; aggregates outside `aggregate="true"` are errors.
fn check_aggregates(fetch: &Fetch) -> Result<(), FetchError> {
    fn walk<'a>(columns: &'a Columns, links: &'a [LinkEntity], out: &mut Vec<(&'a Columns, bool)>) {
        out.push((columns, true));
        for l in links {
            walk(&l.columns, &l.links, out);
        }
    }
    let mut all = Vec::new();
    walk(&fetch.entity.columns, &fetch.entity.links, &mut all);
    for (columns, _) in all {
        if fetch.aggregate && columns.all {
            return Err(FetchError::schema(
                "An aggregate query cannot contain the all-attributes element.",
            ));
        }
        for a in &columns.attributes {
            let is_agg = a.aggregate.is_some() || a.groupby;
            if is_agg && !fetch.aggregate {
                return Err(FetchError::schema(format!(
                    "The attribute '{}' uses aggregate or groupby, which needs aggregate='true' on the fetch element.",
                    a.name
                )));
            }
            if fetch.aggregate && !is_agg {
                return Err(FetchError::schema(format!(
                    "Attribute '{}' of an aggregate query needs an aggregate or groupby.",
                    a.name
                )));
            }
            if fetch.aggregate && a.alias.as_deref().is_none_or(str::is_empty) {
                return Err(FetchError::schema(format!(
                    "An alias is required for aggregate and groupby attribute '{}'.",
                    a.name
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_query() {
        let f = parse(
            r#"<fetch version="1.0" top="50" distinct="true" no-lock="true">
  <entity name="account">
    <attribute name="name" />
    <attribute name="accountid" alias="id" />
    <filter type="and">
      <condition attribute="statecode" operator="eq" value="0" />
      <condition attribute="name" operator="like" value="%Contoso &amp; Co%" />
      <condition attribute="revenue" operator="between"><value>10</value><value>20</value></condition>
      <condition attribute="industrycode" operator="in"><value>1</value><value>2</value><value>3</value></condition>
      <condition attribute="telephone1" operator="null" />
      <filter type="or">
        <condition attribute="address1_city" operator="begins-with" value="Red" />
        <condition attribute="address1_city" operator="ends-with" value="mond" />
        <condition attribute="createdon" operator="last-x-days" value="7" />
      </filter>
    </filter>
    <order attribute="name" descending="true" />
    <link-entity name="contact" from="contactid" to="primarycontactid" alias="pc" link-type="outer">
      <attribute name="fullname" />
      <filter><condition attribute="lastname" operator="ne" value="x" /></filter>
      <link-entity name="systemuser" from="systemuserid" to="owninguser"><all-attributes /></link-entity>
    </link-entity>
  </entity>
</fetch>"#,
        )
        .unwrap();
        assert_eq!(f.top, Some(50));
        assert!(f.distinct && f.no_lock && !f.aggregate);
        let e = &f.entity;
        assert_eq!(e.name, "account");
        assert_eq!(e.columns.attributes.len(), 2);
        assert_eq!(e.columns.attributes[1].alias.as_deref(), Some("id"));
        let filter = &e.filters[0];
        assert_eq!(filter.kind, FilterType::And);
        assert_eq!(filter.items.len(), 6);
        let FilterItem::Condition(like) = &filter.items[1] else {
            panic!()
        };
        assert_eq!(like.operator, Operator::Like);
        assert_eq!(like.values, vec!["%Contoso & Co%"]);
        let FilterItem::Condition(between) = &filter.items[2] else {
            panic!()
        };
        assert_eq!(between.values, vec!["10", "20"]);
        let FilterItem::Condition(inn) = &filter.items[3] else {
            panic!()
        };
        assert_eq!((inn.operator.clone(), inn.values.len()), (Operator::In, 3));
        let FilterItem::Filter(or) = &filter.items[5] else {
            panic!()
        };
        assert_eq!(or.kind, FilterType::Or);
        let FilterItem::Condition(other) = &or.items[2] else {
            panic!()
        };
        assert_eq!(other.operator, Operator::Other("last-x-days".into()));
        assert_eq!(
            e.orders[0],
            Order {
                attribute: Some("name".into()),
                descending: true,
                ..Order::default()
            }
        );
        let link = &e.links[0];
        assert_eq!(
            (link.name.as_str(), link.from.as_str(), link.to.as_str()),
            ("contact", "contactid", "primarycontactid")
        );
        assert_eq!(link.alias.as_deref(), Some("pc"));
        assert_eq!(link.link_type, LinkType::Outer);
        assert_eq!(link.filters.len(), 1);
        assert!(link.links[0].columns.all);
        assert_eq!(link.links[0].link_type, LinkType::Inner);
    }

    #[test]
    fn parses_paging_and_aggregates() {
        let f = parse(r#"<fetch count="500" page="3" paging-cookie="&lt;cookie page=&quot;2&quot;&gt;&lt;accountid last=&quot;{A}&quot; first=&quot;{B}&quot; /&gt;&lt;/cookie&gt;" returntotalrecordcount="true"><entity name="account"><order attribute="accountid"/></entity></fetch>"#).unwrap();
        assert_eq!((f.count, f.page), (Some(500), Some(3)));
        assert!(f.return_total_record_count);
        assert_eq!(
            f.paging_cookie.as_deref(),
            Some(r#"<cookie page="2"><accountid last="{A}" first="{B}" /></cookie>"#)
        );
        let a = parse(r#"<fetch aggregate="true"><entity name="account"><attribute name="accountid" alias="n" aggregate="count"/><attribute name="industrycode" alias="ind" groupby="true"/><attribute name="revenue" alias="total" aggregate="sum"/><order alias="n" descending="true"/></entity></fetch>"#).unwrap();
        assert!(a.aggregate);
        let attrs = &a.entity.columns.attributes;
        assert_eq!(attrs[0].aggregate, Some(Aggregate::Count));
        assert!(attrs[1].groupby);
        assert_eq!(attrs[2].aggregate, Some(Aggregate::Sum));
        assert_eq!(a.entity.orders[0].alias.as_deref(), Some("n"));
    }

    fn err(xml: &str) -> FetchError {
        parse(xml).unwrap_err()
    }

    #[test]
    fn errors_are_shaped_like_dataverse() {
        let e = err("<fetch><entity name='account'></fetch>");
        assert_eq!((e.status, e.code), (400, "0x80040201"));
        assert!(e.message.starts_with("Invalid XML."), "{}", e.message);
        assert_eq!(err("<fetch><entity name='a'>").code, "0x80040201");
        assert_eq!(err("").code, "0x80040201");
        assert_eq!(err("<fetch/><fetch/>").code, "0x80040201");
        assert_eq!(
            err("<fetch a='1' a='2'><entity name='x'/></fetch>").code,
            "0x80040201"
        );
        let e = err("<fetch><attribute name='x'/></fetch>");
        assert_eq!(e.code, "0x80040203");
        let e = err("<fetch></fetch>");
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                "0x80041102",
                "Entity Name was not specified in FetchXml String."
            )
        );
        assert_eq!(err("<fetch><entity/></fetch>").code, "0x80041102");
        let e = err(
            "<fetch><entity name='a'><filter><condition attribute='x' operator='equals' value='1'/></filter></entity></fetch>",
        );
        assert_eq!(e.code, "0x80040203");
        assert!(e.message.contains("'equals' is invalid"), "{}", e.message);
        for bad in [
            "<query><entity name='a'/></query>",
            "<fetch><entity name='a'><filter><condition attribute='x' operator='eq'/></filter></entity></fetch>",
            "<fetch><entity name='a'><filter><condition attribute='x' operator='null' value='1'/></filter></entity></fetch>",
            "<fetch><entity name='a'><filter><condition attribute='x' operator='between' value='1'/></filter></entity></fetch>",
            "<fetch><entity name='a'><filter><condition attribute='x' operator='in'/></filter></entity></fetch>",
            "<fetch><entity name='a'><filter type='xor'/></entity></fetch>",
            "<fetch><entity name='a'><condition attribute='x' operator='eq' value='1'/></entity></fetch>",
            "<fetch count='0'><entity name='a'/></fetch>",
            "<fetch count='5001'><entity name='a'/></fetch>",
            "<fetch top='10' page='2'><entity name='a'/></fetch>",
            "<fetch distinct='maybe'><entity name='a'/></fetch>",
            "<fetch><entity name='a'><order/></entity></fetch>",
            "<fetch><entity name='a'><link-entity name='b' from='x'/></entity></fetch>",
            "<fetch><entity name='a'><attribute name='x' aggregate='count' alias='n'/></entity></fetch>",
            "<fetch aggregate='true'><entity name='a'><attribute name='x'/></entity></fetch>",
            "<fetch aggregate='true'><entity name='a'><attribute name='x' aggregate='count'/></entity></fetch>",
            "<fetch aggregate='true'><entity name='a'><attribute name='x' aggregate='median' alias='m'/></entity></fetch>",
            "<fetch><entity name='a' colour='red'/></fetch>",
            "<fetch><entity name='a'/><entity name='b'/></fetch>",
        ] {
            assert_eq!(err(bad).code, "0x80040203", "{bad}");
            assert_eq!(err(bad).status, 400);
        }
    }

    #[test]
    fn error_response_has_the_odata_body() {
        let r = err("<fetch>").to_response();
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["error"]["code"], "0x80040201");
    }
}
