//! Evaluating a parsed [`Fetch`] over the record store: the answer to
//! `GET {entityset}?fetchXml=…` (reference §4).
//!
//! What it does, as Dataverse does it:
//! - joins `link-entity` rows (inner drops rows without a match, outer
//!   keeps them; nested links join to their parent link), filters with
//!   and/or trees (conditions may name a link alias with `entityname`),
//!   orders (then by primary key, the order paging relies on);
//! - columns: listed `attribute`s or `all-attributes`, the primary key
//!   (except with `distinct`), **null columns omitted** (FetchXML differs
//!   from OData there), base lookups as `_x_value`, link columns as `alias.column`;
//!   formatted values and lookup annotations when `Prefer` asks for them;
//! - paging: `count` (≤ 5000) and `page`, or the `paging-cookie` (resume
//!   after the cookie's last primary key); `@Microsoft.Dynamics.CRM.morerecords`
//!   and `…fetchxmlpagingcookie` only when asked for by `Prefer` and only
//!   while more rows remain; no cookie when ordered by a link column;
//! - `top`, `distinct`, aggregates (count, countcolumn, sum, avg, min, max,
//!   groupby with alias) over at most 50,000 rows.
//!
//! UNCONFIRMED choices (not in the reference): the outer cookie's
//! `pagenumber` is the next page on a cookieless request and the request's
//! page when a cookie came in (this reproduces both published examples);
//! a query without `attribute` elements returns only the primary key; error
//! codes for an unknown column (`0x80041103`, the message public clients
//! show), an unknown link entity and an entity-name/entity-set mismatch.

use super::cookie::{self, CookieColumn};
use super::{
    Aggregate, Columns, Condition, Fetch, FetchError, Filter, FilterItem, FilterType, LinkEntity,
    LinkType, MAX_PAGE_SIZE, Operator, Order,
};
use crate::emulator::EmuResponse;
use crate::emulator::odata::options::Prefer;
use crate::emulator::odata::shape::{FORMATTED, LOOKUP_TYPE, NAVIGATION};
use crate::emulator::response::odata_json;
use crate::emulator::store::schema::{AttributeDef, AttributeKind, EntityDef};
use crate::emulator::store::{Record, Store, normalize_guid, values};
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::HashMap;

pub const MORE_RECORDS: &str = "Microsoft.Dynamics.CRM.morerecords";
pub const PAGING_COOKIE: &str = "Microsoft.Dynamics.CRM.fetchxmlpagingcookie";
const TOTAL: &str = "Microsoft.Dynamics.CRM.totalrecordcount";
const TOTAL_EXCEEDED: &str = "Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded";

/// Rows an aggregate query may read (Dataverse's AggregateQueryRecordLimit).
pub const AGGREGATE_LIMIT: usize = 50_000;

/// The whole answer to `GET {entityset}?fetchXml=…`.
pub fn respond(
    store: &Store,
    entity: &EntityDef,
    xml: &str,
    prefer: &Prefer,
    service_root: &str,
) -> EmuResponse {
    match evaluate(store, entity, xml, prefer, service_root) {
        Ok(body) => {
            let mut response = odata_json(200, &Value::Object(body));
            if !prefer.annotations.is_empty()
                && let Ok(v) = http::HeaderValue::from_str(&format!(
                    "odata.include-annotations=\"{}\"",
                    prefer.annotations.join(",")
                ))
            {
                response.headers_mut().insert("Preference-Applied", v);
            }
            response
        }
        Err(e) => e.to_response(),
    }
}

/// The response body, or the error Dataverse would give.
pub fn evaluate(
    store: &Store,
    entity: &EntityDef,
    xml: &str,
    prefer: &Prefer,
    service_root: &str,
) -> Result<Map<String, Value>, FetchError> {
    let fetch = super::parse(xml)?;
    if fetch.entity.name != entity.logical_name {
        return Err(bad(
            "0x80040203",
            format!(
                "The entity name '{}' in the FetchXML does not match the entity set '{}' (entity '{}').",
                fetch.entity.name, entity.entity_set_name, entity.logical_name
            ),
        ));
    }
    let query = Query::new(store, entity, &fetch)?;
    query.validate()?;
    let rows = query.rows()?;
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!(
            "{service_root}$metadata#{}",
            entity.entity_set_name
        )),
    );
    let page_size = fetch.count.unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE) as usize;
    let page = fetch.page.unwrap_or(1).max(1);
    if fetch.return_total_record_count && prefer.wants(TOTAL) {
        body.insert(
            format!("@{TOTAL}"),
            Value::from(rows.len().min(MAX_PAGE_SIZE as usize)),
        );
        body.insert(
            format!("@{TOTAL_EXCEEDED}"),
            Value::Bool(rows.len() > MAX_PAGE_SIZE as usize),
        );
    }
    if fetch.aggregate {
        if rows.len() > AGGREGATE_LIMIT {
            return Err(bad(
                "0x8004e023",
                "AggregateQueryRecordLimit exceeded. Cannot perform this operation.".into(),
            ));
        }
        let groups = query.aggregate(&rows, prefer)?;
        let (start, end) = simple_window(&fetch, page, page_size, groups.len());
        if end < groups.len() && prefer.wants(MORE_RECORDS) {
            body.insert(format!("@{MORE_RECORDS}"), Value::Bool(true));
        }
        let value: Vec<Value> = groups
            .into_iter()
            .skip(start)
            .take(end - start)
            .map(Value::Object)
            .collect();
        body.insert("value".into(), Value::Array(value));
        return Ok(body);
    }

    // Distinct rows are compared by their output columns.
    let shaped: Option<Vec<Map<String, Value>>> = fetch.distinct.then(|| {
        let mut seen: Vec<Map<String, Value>> = Vec::new();
        let mut out = Vec::new();
        for row in &rows {
            let mut m = query.shape(row, prefer);
            let mut key = m.clone();
            key.remove("@odata.etag");
            if !seen.contains(&key) {
                seen.push(key);
                m.remove("@odata.etag");
                out.push(m);
            }
        }
        out
    });
    let total = shaped.as_ref().map_or(rows.len(), Vec::len);

    let (start, end) = if fetch.top.is_some() {
        (0, total.min(fetch.top.unwrap_or(0) as usize))
    } else {
        let resumed = fetch
            .paging_cookie
            .as_deref()
            .filter(|_| shaped.is_none())
            .and_then(cookie::parse_inner)
            .and_then(|c| query.resume_after(&c, &rows));
        match resumed {
            Some(start) => (start, (start + page_size).min(total)),
            None => simple_window(&fetch, page, page_size, total),
        }
    };
    let more = fetch.top.is_none() && end < total;
    if more && prefer.wants(MORE_RECORDS) {
        body.insert(format!("@{MORE_RECORDS}"), Value::Bool(true));
    }
    if more
        && shaped.is_none()
        && prefer.wants(PAGING_COOKIE)
        && let Some(inner) = query.cookie(page, rows.get(start..end).unwrap_or(&[]))
    {
        let outer = if fetch.paging_cookie.is_some() {
            page
        } else {
            page + 1
        };
        body.insert(
            format!("@{PAGING_COOKIE}"),
            Value::String(cookie::annotation(outer, &inner)),
        );
    }
    let value: Vec<Value> = match shaped {
        Some(maps) => maps
            .into_iter()
            .skip(start)
            .take(end.saturating_sub(start))
            .map(Value::Object)
            .collect(),
        None => rows
            .get(start..end)
            .unwrap_or(&[])
            .iter()
            .map(|r| Value::Object(query.shape(r, prefer)))
            .collect(),
    };
    body.insert("value".into(), Value::Array(value));
    Ok(body)
}

/// `page`/`count` paging: rows `(page-1)*count ..`.
fn simple_window(fetch: &Fetch, page: u32, page_size: usize, total: usize) -> (usize, usize) {
    if let Some(top) = fetch.top {
        return (0, total.min(top as usize));
    }
    let start = (page as usize - 1).saturating_mul(page_size).min(total);
    (start, (start + page_size).min(total))
}

fn bad(code: &'static str, message: String) -> FetchError {
    FetchError {
        status: 400,
        code,
        message,
    }
}

fn not_implemented(message: String) -> FetchError {
    FetchError {
        status: 501,
        code: "0x0",
        message,
    }
}

fn no_attribute(entity: &str, name: &str) -> FetchError {
    bad(
        "0x80041103",
        format!(
            "'{entity}' entity doesn't contain attribute with Name = '{name}' and NameMapping = 'Logical'."
        ),
    )
}

/// One link-entity, flattened in document order.
struct Link<'q> {
    link: &'q LinkEntity,
    def: &'q EntityDef,
    alias: String,
    /// Index of the parent link; `None` = the base entity.
    parent: Option<usize>,
    /// Rows of the linked table passing the link's own filters, by the
    /// normalised value of its `from` column.
    index: HashMap<String, Vec<&'q Record>>,
}

/// An order key: the link it reads (`None` = base), column, descending.
type OrderKey<'q> = (Option<usize>, &'q str, bool);

/// A result row before shaping: the base record and one slot per link.
#[derive(Clone)]
pub struct Row<'q> {
    base: &'q Record,
    links: Vec<Option<&'q Record>>,
}

struct Query<'q> {
    store: &'q Store,
    entity: &'q EntityDef,
    fetch: &'q Fetch,
    links: Vec<Link<'q>>,
}

/// The join key form of a value: GUIDs and strings case-insensitive.
fn join_key(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(normalize_guid(s).unwrap_or_else(|| s.to_lowercase())),
        Value::Number(n) => n.as_f64().map(|f| f.to_string()),
        other => Some(other.to_string()),
    }
}

impl<'q> Query<'q> {
    fn new(store: &'q Store, entity: &'q EntityDef, fetch: &'q Fetch) -> Result<Self, FetchError> {
        let mut q = Query {
            store,
            entity,
            fetch,
            links: Vec::new(),
        };
        let mut counter = HashMap::new();
        for link in &fetch.entity.links {
            q.flatten(link, None, &mut counter)?;
        }
        Ok(q)
    }

    fn flatten(
        &mut self,
        link: &'q LinkEntity,
        parent: Option<usize>,
        counter: &mut HashMap<String, usize>,
    ) -> Result<(), FetchError> {
        let store = self.store;
        let def = store.schema().by_logical_name(&link.name).ok_or_else(|| {
            bad(
                "0x80041102",
                format!(
                    "The entity with a name = '{}' with namemapping = 'Logical' was not found in the MetadataCache.",
                    link.name
                ),
            )
        })?;
        // Dataverse names an alias-less link after its entity: contact1, contact2…
        let alias = match &link.alias {
            Some(a) => a.clone(),
            None => {
                let n = counter.entry(link.name.clone()).or_insert(0);
                *n += 1;
                format!("{}{n}", link.name)
            }
        };
        if def.attribute(&link.from).is_none() {
            return Err(no_attribute(def.logical_name, &link.from));
        }
        let mut index: HashMap<String, Vec<&'q Record>> = HashMap::new();
        for r in store.records(def.logical_name) {
            let mut ok = true;
            for f in &link.filters {
                if !self.filter_on_record(f, r)? {
                    ok = false;
                    break;
                }
            }
            if ok && let Some(k) = join_key(r.get(&link.from)) {
                index.entry(k).or_default().push(r);
            }
        }
        self.links.push(Link {
            link,
            def,
            alias,
            parent,
            index,
        });
        let me = self.links.len() - 1;
        for child in &link.links {
            self.flatten(child, Some(me), counter)?;
        }
        Ok(())
    }

    fn link_by_alias(&self, alias: &str) -> Option<usize> {
        self.links.iter().position(|l| l.alias == alias)
    }

    /// Every column the query names exists.
    fn validate(&self) -> Result<(), FetchError> {
        let e = &self.fetch.entity;
        self.check_columns(self.entity, &e.columns)?;
        for f in &e.filters {
            self.check_filter(self.entity, f, true)?;
        }
        for o in &e.orders {
            self.check_order(self.entity, o, true)?;
        }
        for l in &self.links {
            let parent_def = match l.parent {
                None => self.entity,
                Some(p) => self.links.get(p).map_or(self.entity, |p| p.def),
            };
            if parent_def.attribute(&l.link.to).is_none() {
                return Err(no_attribute(parent_def.logical_name, &l.link.to));
            }
            self.check_columns(l.def, &l.link.columns)?;
            for f in &l.link.filters {
                self.check_filter(l.def, f, false)?;
            }
            for o in &l.link.orders {
                self.check_order(l.def, o, false)?;
            }
        }
        if !self.fetch.aggregate
            && (self
                .all_attributes()
                .any(|(_, a)| a.aggregate.is_some() || a.groupby))
        {
            return Err(bad(
                "0x80040203",
                "An attribute with aggregate or groupby needs aggregate=\"true\" on <fetch>."
                    .into(),
            ));
        }
        Ok(())
    }

    fn all_attributes(&self) -> impl Iterator<Item = (Option<usize>, &'q super::Attribute)> + '_ {
        let base = self
            .fetch
            .entity
            .columns
            .attributes
            .iter()
            .map(|a| (None, a));
        let links = self
            .links
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.link.columns.attributes.iter().map(move |a| (Some(i), a)));
        base.chain(links)
    }

    fn check_columns(&self, def: &EntityDef, columns: &Columns) -> Result<(), FetchError> {
        for a in &columns.attributes {
            if def.attribute(&a.name).is_none() {
                return Err(no_attribute(def.logical_name, &a.name));
            }
        }
        Ok(())
    }

    fn check_filter(&self, def: &EntityDef, f: &Filter, at_base: bool) -> Result<(), FetchError> {
        for item in &f.items {
            match item {
                FilterItem::Filter(inner) => self.check_filter(def, inner, at_base)?,
                FilterItem::Condition(c) => {
                    let target = match (&c.entity_name, at_base) {
                        (Some(alias), true) => {
                            let i = self.link_by_alias(alias).ok_or_else(|| {
                                bad(
                                    "0x80040203",
                                    format!("No link-entity has the alias '{alias}' named by a condition's entityname."),
                                )
                            })?;
                            self.links.get(i).map_or(def, |l| l.def)
                        }
                        _ => def,
                    };
                    if target.attribute(&c.attribute).is_none() {
                        return Err(no_attribute(target.logical_name, &c.attribute));
                    }
                    if let Some(other) = &c.value_of
                        && target.attribute(other).is_none()
                    {
                        return Err(no_attribute(target.logical_name, other));
                    }
                    if let Operator::Other(name) = &c.operator {
                        return Err(not_implemented(format!(
                            "The condition operator '{name}' is valid FetchXML but this emulator does not evaluate it."
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn check_order(&self, def: &EntityDef, o: &Order, at_base: bool) -> Result<(), FetchError> {
        if let Some(a) = &o.attribute {
            let target = match (&o.entity_name, at_base) {
                (Some(alias), true) => self
                    .link_by_alias(alias)
                    .and_then(|i| self.links.get(i))
                    .map(|l| l.def)
                    .ok_or_else(|| {
                        bad(
                            "0x80040203",
                            format!("No link-entity has the alias '{alias}' named by an order's entityname."),
                        )
                    })?,
                _ => def,
            };
            if target.attribute(a).is_none() {
                return Err(no_attribute(target.logical_name, a));
            }
        }
        if o.alias.is_some() && !self.fetch.aggregate {
            return Err(bad(
                "0x80040203",
                "An order by alias is only valid in an aggregate query.".into(),
            ));
        }
        Ok(())
    }

    /// A condition tree against one record (a link's own filters).
    fn filter_on_record(&self, f: &Filter, r: &Record) -> Result<bool, FetchError> {
        let mut results = Vec::with_capacity(f.items.len());
        for item in &f.items {
            results.push(match item {
                FilterItem::Filter(inner) => self.filter_on_record(inner, r)?,
                FilterItem::Condition(c) => condition(c, r.get(&c.attribute), r)?,
            });
        }
        Ok(combine(f.kind, &results))
    }

    /// A condition tree against a joined row (the base entity's filters).
    fn filter_on_row(&self, f: &Filter, row: &Row<'q>) -> Result<bool, FetchError> {
        let mut results = Vec::with_capacity(f.items.len());
        for item in &f.items {
            results.push(match item {
                FilterItem::Filter(inner) => self.filter_on_row(inner, row)?,
                FilterItem::Condition(c) => {
                    let record = match &c.entity_name {
                        None => Some(row.base),
                        Some(alias) => self
                            .link_by_alias(alias)
                            .and_then(|i| row.links.get(i).copied().flatten()),
                    };
                    match record {
                        Some(r) => condition(c, r.get(&c.attribute), r)?,
                        None => c.matches(None)?,
                    }
                }
            });
        }
        Ok(combine(f.kind, &results))
    }

    /// Joined, filtered, ordered rows.
    fn rows(&self) -> Result<Vec<Row<'q>>, FetchError> {
        let mut rows: Vec<Row<'q>> = self
            .store
            .records(self.entity.logical_name)
            .map(|base| Row {
                base,
                links: Vec::with_capacity(self.links.len()),
            })
            .collect();
        for l in &self.links {
            let mut next = Vec::with_capacity(rows.len());
            for row in rows {
                let parent = match l.parent {
                    None => Some(row.base),
                    Some(p) => row.links.get(p).copied().flatten(),
                };
                let matches = parent
                    .and_then(|p| join_key(p.get(&l.link.to)))
                    .and_then(|k| l.index.get(&k));
                match matches {
                    Some(found) if !found.is_empty() => {
                        for m in found {
                            let mut r = row.clone();
                            r.links.push(Some(*m));
                            next.push(r);
                        }
                    }
                    _ if l.link.link_type == LinkType::Outer => {
                        let mut r = row;
                        r.links.push(None);
                        next.push(r);
                    }
                    _ => {}
                }
            }
            rows = next;
        }
        let mut kept = Vec::with_capacity(rows.len());
        for row in rows {
            let mut ok = true;
            for f in &self.fetch.entity.filters {
                if !self.filter_on_row(f, &row)? {
                    ok = false;
                    break;
                }
            }
            if ok {
                kept.push(row);
            }
        }
        if !self.fetch.aggregate {
            let keys = self.order_keys();
            kept.sort_by(|a, b| self.compare(&keys, a, b));
        }
        Ok(kept)
    }

    /// The order keys: the base entity's orders (an `entityname` one reads
    /// a link), then each link's own orders.
    fn order_keys(&self) -> Vec<OrderKey<'q>> {
        let mut keys = Vec::new();
        for o in &self.fetch.entity.orders {
            if let Some(a) = &o.attribute {
                let link = o.entity_name.as_deref().and_then(|x| self.link_by_alias(x));
                keys.push((link, a.as_str(), o.descending));
            }
        }
        for (i, l) in self.links.iter().enumerate() {
            for o in &l.link.orders {
                if let Some(a) = &o.attribute {
                    keys.push((Some(i), a.as_str(), o.descending));
                }
            }
        }
        keys
    }

    fn value_of(&self, row: &Row<'q>, link: Option<usize>, attr: &str) -> &'q Value {
        static NULL: Value = Value::Null;
        match link {
            None => row.base.get(attr),
            Some(i) => row
                .links
                .get(i)
                .copied()
                .flatten()
                .map_or(&NULL, |r| r.get(attr)),
        }
    }

    fn compare(&self, keys: &[OrderKey<'q>], a: &Row<'q>, b: &Row<'q>) -> Ordering {
        for &(link, attr, desc) in keys {
            let o = values::sort_cmp(self.value_of(a, link, attr), self.value_of(b, link, attr));
            let o = if desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.base.id.cmp(&b.base.id).then_with(|| {
            let ids = |r: &Row<'q>| -> Vec<String> {
                r.links
                    .iter()
                    .map(|l| l.map(|x| x.id.clone()).unwrap_or_default())
                    .collect()
            };
            ids(a).cmp(&ids(b))
        })
    }

    /// Where a page resumes after the cookie's last row: after its last
    /// occurrence, or (when it was deleted or no longer matches) after where
    /// it sorts.
    fn resume_after(&self, c: &cookie::ParsedCookie, rows: &[Row<'q>]) -> Option<usize> {
        let col = c
            .columns
            .iter()
            .find(|col| col.name == self.entity.primary_id)?;
        let last = normalize_guid(&col.last)?;
        if let Some(i) = rows.iter().rposition(|r| r.base.id == last) {
            return Some(i + 1);
        }
        let anchor = self.store.get_or_deleted(self.entity.logical_name, &last)?;
        let probe = Row {
            base: anchor,
            links: vec![None; self.links.len()],
        };
        let keys = self.order_keys();
        Some(
            rows.iter()
                .position(|r| self.compare(&keys, r, &probe) == Ordering::Greater)
                .unwrap_or(rows.len()),
        )
    }

    /// The inner cookie for a page: the base order columns, then the
    /// primary key, with the page's first and last values. `None` when an
    /// order reads a link column (Dataverse gives no cookie then).
    fn cookie(&self, page: u32, rows: &[Row<'q>]) -> Option<String> {
        let (first, last) = (rows.first()?, rows.last()?);
        let keys = self.order_keys();
        if keys.iter().any(|(link, _, _)| link.is_some()) {
            return None;
        }
        let text = |v: &Value| match v {
            Value::Null => String::new(),
            Value::String(s) => match normalize_guid(s) {
                Some(g) => cookie::braced_guid(&g),
                None => s.clone(),
            },
            other => other.to_string(),
        };
        let mut columns: Vec<CookieColumn> = keys
            .iter()
            .filter(|(_, a, _)| *a != self.entity.primary_id)
            .map(|(_, a, _)| CookieColumn {
                name: a.to_string(),
                last: text(last.base.get(a)),
                first: text(first.base.get(a)),
            })
            .collect();
        columns.push(CookieColumn {
            name: self.entity.primary_id.clone(),
            last: cookie::braced_guid(&last.base.id),
            first: cookie::braced_guid(&first.base.id),
        });
        Some(cookie::inner_cookie(page, &columns))
    }

    /// One row as FetchXML through the Web API returns it.
    fn shape(&self, row: &Row<'q>, prefer: &Prefer) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("@odata.etag".into(), Value::String(row.base.etag()));
        let primary = &self.entity.primary_id;
        let mut wrote_primary = false;
        for (attr, alias) in selected(self.entity, &self.fetch.entity.columns) {
            wrote_primary |= attr.logical_name == *primary && alias.is_none();
            let key = alias.unwrap_or_else(|| attr.property_name());
            self.put(&mut out, &key, attr, row.base, prefer);
        }
        // With distinct, only the asked-for columns: the key would make every row distinct.
        if !wrote_primary
            && !self.fetch.distinct
            && let Some(attr) = self.entity.attribute(primary)
        {
            self.put(&mut out, primary, attr, row.base, prefer);
        }
        for (i, l) in self.links.iter().enumerate() {
            let Some(r) = row.links.get(i).copied().flatten() else {
                continue;
            };
            for (attr, alias) in selected(l.def, &l.link.columns) {
                let key = alias.unwrap_or_else(|| format!("{}.{}", l.alias, attr.logical_name));
                self.put(&mut out, &key, attr, r, prefer);
            }
        }
        out
    }

    /// Writes one column (skipped when null) and its annotations.
    fn put(
        &self,
        out: &mut Map<String, Value>,
        key: &str,
        attr: &AttributeDef,
        record: &Record,
        prefer: &Prefer,
    ) {
        let value = record.get(&attr.logical_name);
        if value.is_null() {
            return;
        }
        if let AttributeKind::Lookup { targets } = &attr.kind {
            let target = record.lookup_targets.get(&attr.logical_name);
            if prefer.wants(FORMATTED)
                && let (Some(t), Some(id)) = (target, value.as_str())
                && let Some(name) = self.primary_name(t, id)
            {
                out.insert(format!("{key}@{FORMATTED}"), Value::String(name));
            }
            if prefer.wants(NAVIGATION)
                && let Some(t) = targets.iter().find(|t| Some(&t.entity) == target)
            {
                out.insert(
                    format!("{key}@{NAVIGATION}"),
                    Value::String(t.navigation_property.clone()),
                );
            }
            if prefer.wants(LOOKUP_TYPE)
                && let Some(t) = target
            {
                out.insert(format!("{key}@{LOOKUP_TYPE}"), Value::String(t.clone()));
            }
        } else if prefer.wants(FORMATTED)
            && let Some(text) = values::formatted(attr, value)
        {
            out.insert(format!("{key}@{FORMATTED}"), Value::String(text));
        }
        out.insert(key.to_string(), value.clone());
    }

    fn primary_name(&self, entity: &str, id: &str) -> Option<String> {
        let def = self.store.schema().by_logical_name(entity)?;
        let r = self.store.get(entity, id)?;
        r.get(def.primary_name).as_str().map(str::to_string)
    }

    /// Aggregate rows: one per distinct combination of the groupby columns.
    fn aggregate(
        &self,
        rows: &[Row<'q>],
        prefer: &Prefer,
    ) -> Result<Vec<Map<String, Value>>, FetchError> {
        let attrs: Vec<(Option<usize>, &super::Attribute)> = self.all_attributes().collect();
        for (_, a) in &attrs {
            if a.alias.is_none() {
                return Err(bad(
                    "0x80040203",
                    format!(
                        "An aggregate query needs an alias on every attribute; '{}' has none.",
                        a.name
                    ),
                ));
            }
            if a.aggregate.is_none() && !a.groupby {
                return Err(bad(
                    "0x80040203",
                    format!(
                        "In an aggregate query every attribute needs aggregate or groupby; '{}' has neither.",
                        a.name
                    ),
                ));
            }
            if a.date_grouping.is_some() {
                return Err(not_implemented(
                    "dategrouping is valid FetchXML but this emulator does not evaluate it.".into(),
                ));
            }
        }
        let group_cols: Vec<&(Option<usize>, &super::Attribute)> =
            attrs.iter().filter(|(_, a)| a.groupby).collect();
        let mut order: Vec<Vec<&Value>> = Vec::new();
        let mut groups: HashMap<Vec<Option<String>>, (usize, Vec<&Row<'q>>)> = HashMap::new();
        for row in rows {
            let vals: Vec<&Value> = group_cols
                .iter()
                .map(|(l, a)| self.value_of(row, *l, &a.name))
                .collect();
            let key: Vec<Option<String>> = vals.iter().map(|v| join_key(v)).collect();
            let n = groups.len();
            let entry = groups.entry(key).or_insert_with(|| {
                order.push(vals.clone());
                (n, Vec::new())
            });
            entry.1.push(row);
        }
        if group_cols.is_empty() && groups.is_empty() {
            order.push(Vec::new());
            groups.insert(Vec::new(), (0, Vec::new()));
        }
        let mut by_index: Vec<(usize, Vec<&Row<'q>>)> = groups.into_values().collect();
        by_index.sort_by_key(|(i, _)| *i);
        let mut out = Vec::with_capacity(by_index.len());
        for (i, members) in by_index {
            let mut m = Map::new();
            for (link, a) in &attrs {
                let alias = a.alias.clone().unwrap_or_default();
                let def = match link {
                    None => self.entity,
                    Some(l) => self.links.get(*l).map_or(self.entity, |l| l.def),
                };
                let attr_def = def.attribute(&a.name);
                if a.groupby {
                    let v = order
                        .get(i)
                        .and_then(|vals| {
                            group_cols
                                .iter()
                                .position(|(_, g)| std::ptr::eq(*g, *a))
                                .and_then(|p| vals.get(p))
                        })
                        .copied()
                        .cloned()
                        .unwrap_or(Value::Null);
                    if let (Some(ad), Some(first)) = (attr_def, members.first()) {
                        let record = match link {
                            None => Some(first.base),
                            Some(l) => first.links.get(*l).copied().flatten(),
                        };
                        if let Some(r) = record {
                            self.put(&mut m, &alias, ad, r, prefer);
                            continue;
                        }
                    }
                    m.insert(alias, v);
                    continue;
                }
                let vals: Vec<&Value> = members
                    .iter()
                    .map(|r| self.value_of(r, *link, &a.name))
                    .filter(|v| !v.is_null())
                    .collect();
                let nums: Vec<f64> = vals.iter().filter_map(|v| v.as_f64()).collect();
                let value = match a.aggregate {
                    Some(Aggregate::Count) => Value::from(members.len()),
                    Some(Aggregate::CountColumn) if a.distinct => {
                        let mut keys: Vec<String> =
                            vals.iter().filter_map(|v| join_key(v)).collect();
                        keys.sort();
                        keys.dedup();
                        Value::from(keys.len())
                    }
                    Some(Aggregate::CountColumn) => Value::from(vals.len()),
                    Some(Aggregate::Sum) => number(nums.iter().sum()),
                    Some(Aggregate::Avg) if nums.is_empty() => Value::Null,
                    Some(Aggregate::Avg) => number(nums.iter().sum::<f64>() / nums.len() as f64),
                    Some(Aggregate::Min) => vals
                        .iter()
                        .min_by(|x, y| values::sort_cmp(x, y))
                        .map_or(Value::Null, |v| (*v).clone()),
                    Some(Aggregate::Max) => vals
                        .iter()
                        .max_by(|x, y| values::sort_cmp(x, y))
                        .map_or(Value::Null, |v| (*v).clone()),
                    None => Value::Null,
                };
                if prefer.wants(FORMATTED)
                    && let Some(ad) = attr_def
                    && !matches!(a.aggregate, Some(Aggregate::Count | Aggregate::CountColumn))
                    && let Some(text) = values::formatted(ad, &value)
                {
                    m.insert(format!("{alias}@{FORMATTED}"), Value::String(text));
                } else if prefer.wants(FORMATTED) && value.is_number() {
                    m.insert(
                        format!("{alias}@{FORMATTED}"),
                        Value::String(value.to_string()),
                    );
                }
                m.insert(alias, value);
            }
            out.push(m);
        }
        // Orders by alias (or by a groupby column); groups otherwise come
        // sorted by their groupby values, as SQL Server's grouping does.
        let mut keys: Vec<(String, bool)> = Vec::new();
        for o in &self.fetch.entity.orders {
            if let Some(alias) = &o.alias {
                keys.push((alias.clone(), o.descending));
            } else if let Some(attr) = &o.attribute
                && let Some((_, a)) = attrs.iter().find(|(l, a)| l.is_none() && a.name == *attr)
                && let Some(alias) = &a.alias
            {
                keys.push((alias.clone(), o.descending));
            }
        }
        if keys.is_empty() {
            keys = group_cols
                .iter()
                .filter_map(|(_, a)| a.alias.clone().map(|al| (al, false)))
                .collect();
        }
        out.sort_by(|x, y| {
            for (k, desc) in &keys {
                let o = values::sort_cmp(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        Ok(out)
    }
}

/// Whole numbers as JSON integers, others as floats.
fn number(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::from(f as i64)
    } else {
        Value::from(f)
    }
}

fn combine(kind: FilterType, results: &[bool]) -> bool {
    match kind {
        FilterType::And => results.iter().all(|b| *b),
        FilterType::Or => results.is_empty() || results.iter().any(|b| *b),
    }
}

/// One condition, with `valueof` (column against column) handled here.
fn condition(c: &Condition, value: &Value, record: &Record) -> Result<bool, FetchError> {
    let Some(other) = &c.value_of else {
        return c.matches(Some(value));
    };
    let o = values::compare(value, record.get(other));
    let (a, b) = (value.is_null(), record.get(other).is_null());
    if a || b {
        return Ok(false);
    }
    Ok(match c.operator {
        Operator::Eq => o == Some(Ordering::Equal),
        Operator::Ne => o.is_some_and(|o| o != Ordering::Equal),
        Operator::Gt => o == Some(Ordering::Greater),
        Operator::Ge => matches!(o, Some(Ordering::Greater | Ordering::Equal)),
        Operator::Lt => o == Some(Ordering::Less),
        Operator::Le => matches!(o, Some(Ordering::Less | Ordering::Equal)),
        _ => {
            return Err(bad(
                "0x80040203",
                "valueof is only valid with eq, ne, gt, ge, lt and le.".into(),
            ));
        }
    })
}

/// The columns a `Columns` returns, with their output aliases: listed
/// attributes in order, or every attribute for `all-attributes`.
fn selected<'d>(def: &'d EntityDef, columns: &Columns) -> Vec<(&'d AttributeDef, Option<String>)> {
    if columns.all {
        return def.attributes.iter().map(|a| (a, None)).collect();
    }
    columns
        .attributes
        .iter()
        .filter_map(|a| def.attribute(&a.name).map(|d| (d, a.alias.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::data::Directory;
    use crate::emulator::store::seed;

    fn store() -> Store {
        seed::seeded(&Directory::seeded(0), 0, 1_800_000_000)
    }

    fn prefer(a: &str) -> Prefer {
        Prefer::parse([format!("odata.include-annotations=\"{a}\"").as_str()])
    }

    fn run(
        store: &Store,
        set: &str,
        xml: &str,
        p: &Prefer,
    ) -> Result<Map<String, Value>, FetchError> {
        let def = store.schema().by_entity_set(set).unwrap();
        evaluate(store, def, xml, p, "http://localhost/api/data/v9.2/")
    }

    fn values_of(body: &Map<String, Value>) -> &Vec<Value> {
        body["value"].as_array().unwrap()
    }

    #[test]
    fn filters_orders_and_omits_nulls() {
        let s = store();
        let body = run(
            &s,
            "accounts",
            "<fetch><entity name='account'><attribute name='name'/><attribute name='websiteurl'/><filter type='or'><condition attribute='accountnumber' operator='in'><value>A-1</value><value>A-2</value></condition><filter><condition attribute='name' operator='begins-with' value='fabrikam'/><condition attribute='revenue' operator='between'><value>0</value><value>300000</value></condition></filter></filter><order attribute='name' descending='true'/></entity></fetch>",
            &Prefer::default(),
        )
        .unwrap();
        let rows = values_of(&body);
        let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
        // A-1 Contoso, A-2 Fabrikam (also begins-with fabrikam, revenue 250000).
        assert_eq!(names, ["Fabrikam", "Contoso"]);
        assert!(
            rows.iter().all(|r| r.get("websiteurl").is_none()),
            "nulls omitted"
        );
        assert!(
            rows.iter().all(|r| r.get("accountid").is_some()),
            "primary key always"
        );
        assert!(body.get("@Microsoft.Dynamics.CRM.morerecords").is_none());
    }

    #[test]
    fn pages_by_cookie_and_by_number_alike() {
        let s = seed::seeded(&Directory::seeded(0), 25, 1_800_000_000);
        let p = prefer("*");
        let q = |extra: &str| {
            format!(
                "<fetch count='10' {extra}><entity name='account'><attribute name='name'/></entity></fetch>"
            )
        };
        let first = run(&s, "accounts", &q("page='1'"), &p).unwrap();
        assert_eq!(first["@Microsoft.Dynamics.CRM.morerecords"], true);
        let ann = first["@Microsoft.Dynamics.CRM.fetchxmlpagingcookie"]
            .as_str()
            .unwrap();
        assert!(ann.starts_with("<cookie pagenumber=\"2\" pagingcookie=\"%253ccookie%2520page%253d%25221%2522%253e%253caccountid%2520last%253d%2522%257bA0000000-"), "{ann}");
        let cookie_attr = ann
            .split("pagingcookie=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let inner = crate::emulator::odata::options::decode_component(
            &crate::emulator::odata::options::decode_component(cookie_attr),
        );
        let escaped = inner
            .replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;");
        let second = run(
            &s,
            "accounts",
            &q(&format!("page='2' paging-cookie=\"{escaped}\"")),
            &p,
        )
        .unwrap();
        let by_number = run(&s, "accounts", &q("page='2'"), &p).unwrap();
        assert_eq!(values_of(&second), values_of(&by_number));
        assert_eq!(values_of(&second).len(), 10);
        let last = run(&s, "accounts", &q("page='9'"), &p).unwrap();
        assert_eq!(values_of(&last).len(), 5, "85 accounts: 8 full pages and 5");
        assert!(last.get("@Microsoft.Dynamics.CRM.morerecords").is_none());
        assert!(
            last.get("@Microsoft.Dynamics.CRM.fetchxmlpagingcookie")
                .is_none()
        );
        // Without the Prefer annotations, no paging annotations.
        let plain = run(&s, "accounts", &q("page='1'"), &Prefer::default()).unwrap();
        assert!(plain.get("@Microsoft.Dynamics.CRM.morerecords").is_none());
    }

    #[test]
    fn link_entities_join_with_alias_keys() {
        let s = store();
        let xml = "<fetch><entity name='contact'><attribute name='fullname'/><filter><condition attribute='contactid' operator='eq' value='c0000000-0000-4000-8000-000000000002'/></filter><link-entity name='account' from='accountid' to='parentcustomerid' alias='acc' link-type='inner'><attribute name='name'/><attribute name='accountnumber'/></link-entity></entity></fetch>";
        let body = run(&s, "contacts", xml, &prefer("*")).unwrap();
        let rows = values_of(&body);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["acc.accountnumber"], "A-2");
        assert_eq!(rows[0]["acc.name"], "Fabrikam");
        // Inner join on a link filter that matches nothing drops the row;
        // outer keeps it without the link's columns.
        let none = xml.replace("link-type='inner'>", "link-type='inner'><filter><condition attribute='name' operator='eq' value='zzz'/></filter>");
        assert!(values_of(&run(&s, "contacts", &none, &Prefer::default()).unwrap()).is_empty());
        let outer = none.replace("link-type='inner'", "link-type='outer'");
        let rows = run(&s, "contacts", &outer, &Prefer::default()).unwrap();
        assert_eq!(values_of(&rows).len(), 1);
        assert!(values_of(&rows)[0].get("acc.name").is_none());
    }

    #[test]
    fn aggregates_group_count_and_sum() {
        let s = store();
        let xml = "<fetch aggregate='true'><entity name='account'><attribute name='accountcategorycode' groupby='true' alias='cat'/><attribute name='accountid' aggregate='count' alias='n'/><attribute name='revenue' aggregate='sum' alias='total'/><attribute name='numberofemployees' aggregate='max' alias='most'/></entity></fetch>";
        let body = run(
            &s,
            "accounts",
            xml,
            &prefer("OData.Community.Display.V1.FormattedValue"),
        )
        .unwrap();
        let rows = values_of(&body);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["cat"], 1);
        assert_eq!(rows[0]["n"], 20, "every third of 60 accounts is category 1");
        assert_eq!(rows[1]["n"], 40);
        assert_eq!(
            rows[0]["cat@OData.Community.Display.V1.FormattedValue"],
            "Preferred Customer"
        );
        let total: f64 = (1..=60)
            .filter(|n| n % 3 == 0)
            .map(|n| n as f64 * 125_000.0)
            .sum();
        assert_eq!(rows[0]["total"].as_f64(), Some(total));
    }

    #[test]
    fn errors_are_shaped_like_dataverse() {
        let s = store();
        let e = run(
            &s,
            "accounts",
            "<fetch><entity name='contact'/></fetch>",
            &Prefer::default(),
        )
        .unwrap_err();
        assert_eq!((e.status, e.code), (400, "0x80040203"));
        let e = run(
            &s,
            "accounts",
            "<fetch><entity name='account'><attribute name='nope'/></entity></fetch>",
            &Prefer::default(),
        )
        .unwrap_err();
        assert_eq!(e.code, "0x80041103");
        assert!(e.message.contains("Name = 'nope'"));
        let e = run(
            &s,
            "accounts",
            "<fetch><entity name='account'>",
            &Prefer::default(),
        )
        .unwrap_err();
        assert_eq!(e.code, "0x80040201");
        let e = run(&s, "accounts", "<fetch><entity name='account'><filter><condition attribute='createdon' operator='today'/></filter></entity></fetch>", &Prefer::default()).unwrap_err();
        assert_eq!(e.status, 501);
    }

    #[test]
    fn top_and_distinct() {
        let s = store();
        let body = run(
            &s,
            "accounts",
            "<fetch top='3'><entity name='account'><attribute name='name'/></entity></fetch>",
            &prefer("*"),
        )
        .unwrap();
        assert_eq!(values_of(&body).len(), 3);
        assert!(body.get("@Microsoft.Dynamics.CRM.morerecords").is_none());
        let body = run(&s, "accounts", "<fetch distinct='true'><entity name='account'><attribute name='address1_city'/></entity></fetch>", &Prefer::default()).unwrap();
        // Eight cities over 60 accounts; no primary key with distinct.
        assert_eq!(values_of(&body).len(), 8);
        assert!(values_of(&body)[0].get("accountid").is_none());
    }

    #[test]
    fn all_attributes_nested_links_and_more_operators() {
        let s = store();
        // all-attributes: every non-null column, nulls left out.
        let body = run(&s, "accounts", "<fetch><entity name='account'><all-attributes/><filter><condition attribute='accountnumber' operator='eq' value='A-1'/></filter></entity></fetch>", &Prefer::default()).unwrap();
        let row = values_of(&body)[0].as_object().unwrap();
        assert_eq!(row["name"], "Contoso");
        assert!(row.contains_key("_ownerid_value") && row.contains_key("createdon"));
        assert!(!row.contains_key("websiteurl"));
        // Nested link: contact → account → primary contact; unaliased links
        // are named after their entity.
        let xml = "<fetch><entity name='contact'><attribute name='fullname'/><filter><condition attribute='contactid' operator='eq' value='c0000000-0000-4000-8000-000000000002'/></filter><link-entity name='account' from='accountid' to='parentcustomerid'><attribute name='name'/><link-entity name='contact' from='contactid' to='primarycontactid' alias='pc'><attribute name='emailaddress1'/></link-entity></link-entity></entity></fetch>";
        let body = run(&s, "contacts", xml, &Prefer::default()).unwrap();
        let row = &values_of(&body)[0];
        assert_eq!(row["account1.name"], "Fabrikam");
        assert!(
            row["pc.emailaddress1"]
                .as_str()
                .unwrap()
                .ends_with("2@example.com"),
            "{row}"
        );
        // ne / not-like / ends-with / not-null / not-in, and valueof.
        let count = |filter: &str| {
            let xml = format!(
                "<fetch><entity name='account'><attribute name='name'/><filter>{filter}</filter></entity></fetch>"
            );
            values_of(&run(&s, "accounts", &xml, &Prefer::default()).unwrap()).len()
        };
        assert_eq!(
            count("<condition attribute='name' operator='ends-with' value='ltd'/>"),
            20
        );
        assert_eq!(
            count(
                "<condition attribute='name' operator='not-like' value='%Ltd'/><condition attribute='name' operator='not-like' value='%Group'/>"
            ),
            20
        );
        assert_eq!(
            count("<condition attribute='accountcategorycode' operator='ne' value='1'/>"),
            40
        );
        assert_eq!(
            count("<condition attribute='websiteurl' operator='not-null'/>"),
            0
        );
        assert_eq!(
            count("<condition attribute='websiteurl' operator='null'/>"),
            60
        );
        assert_eq!(
            count(
                "<condition attribute='accountnumber' operator='not-in'><value>A-1</value><value>A-2</value></condition>"
            ),
            58
        );
        assert_eq!(
            count("<condition attribute='revenue' operator='gt' valueof='numberofemployees'/>"),
            60
        );
        // countcolumn distinct and min.
        let body = run(&s, "accounts", "<fetch aggregate='true'><entity name='account'><attribute name='address1_city' aggregate='countcolumn' distinct='true' alias='cities'/><attribute name='revenue' aggregate='min' alias='least'/></entity></fetch>", &Prefer::default()).unwrap();
        assert_eq!(values_of(&body)[0]["cities"], 8);
        assert_eq!(values_of(&body)[0]["least"].as_f64(), Some(125_000.0));
    }
}
