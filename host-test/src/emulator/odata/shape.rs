//! Turns store records into OData JSON: `$select` (the primary key always
//! comes back, null columns included), lookups as `_x_value`, `$expand` of
//! single-valued and collection navigation properties with nested options,
//! and the annotations a `Prefer: odata.include-annotations` asks for.

use super::ODataError;
use super::eval::{Context, unknown_property};
use super::options::{ExpandItem, Prefer, QueryOptions};
use super::paging::{self, MAX_PAGE_SIZE};
use crate::emulator::store::schema::{AttributeDef, AttributeKind, EntityDef, Navigation};
use crate::emulator::store::values;
use crate::emulator::store::{Record, Store};
use serde_json::{Map, Value};

mod many_to_many;

pub const FORMATTED: &str = "OData.Community.Display.V1.FormattedValue";
pub const NAVIGATION: &str = "Microsoft.Dynamics.CRM.associatednavigationproperty";
pub const LOOKUP_TYPE: &str = "Microsoft.Dynamics.CRM.lookuplogicalname";

pub struct Shaper<'a> {
    pub store: &'a Store,
    pub prefer: &'a Prefer,
    /// e.g. `http://localhost/api/data/v9.2/`.
    pub service_root: &'a str,
    pub now: u64,
    pub user_id: &'a str,
    /// Set when the query nests an `$expand` inside another: Dataverse then
    /// pages every expanded collection by `odata.maxpagesize`, with a
    /// `$skiptoken` in the per-row nextLink.
    pub collection_page_size: Option<usize>,
}

impl<'a> Shaper<'a> {
    /// Turns on per-collection paging when `options` nest an expand and
    /// the request sent `odata.maxpagesize`.
    pub fn paging_nested_collections(mut self, options: &QueryOptions) -> Self {
        let nested = options.expand.iter().any(|e| !e.options.expand.is_empty());
        self.collection_page_size = match (nested, self.prefer.maxpagesize) {
            (true, Some(n)) => Some(n.clamp(1, MAX_PAGE_SIZE)),
            _ => None,
        };
        self
    }

    pub fn context(&self, entity: &'a EntityDef) -> Context<'a> {
        Context {
            store: self.store,
            entity,
            now: self.now,
            user_id: self.user_id,
        }
    }

    fn entity(&self, logical: &str) -> Result<&'a EntityDef, ODataError> {
        self.store
            .schema()
            .by_logical_name(logical)
            .ok_or_else(|| ODataError::bad_request(format!("Unknown entity '{logical}'.")))
    }

    /// Validates `$select`, `$filter`, `$orderby` and `$expand` (recursively)
    /// against the schema. `nested` is the depth of expansion.
    pub fn check(
        &self,
        entity: &'a EntityDef,
        options: &QueryOptions,
        depth: usize,
        single_valued: bool,
    ) -> Result<(), ODataError> {
        let ctx = self.context(entity);
        if let Some(select) = &options.select {
            for name in select {
                if entity.property(name).is_none() {
                    return Err(unknown_property(entity, name));
                }
            }
        }
        if let Some(f) = &options.filter {
            ctx.check(f)?;
        }
        ctx.check_order(&options.orderby)?;
        if (single_valued || depth > 1) && (options.top.is_some() || !options.orderby.is_empty()) {
            return Err(ODataError::bad_request(
                "Only $select and $filter clause can be provided while doing $expand on many-to-one relationship or nested one-to-many relationship.".to_string(),
            ));
        }
        for item in &options.expand {
            match self.store.schema().navigation(entity, &item.navigation) {
                Some(Navigation::Single { target, .. }) => {
                    self.check(self.entity(&target)?, &item.options, depth + 1, true)?
                }
                Some(Navigation::Collection { entity: e, .. }) => {
                    self.check(self.entity(&e)?, &item.options, depth + 1, false)?
                }
                Some(Navigation::ManyToMany(m)) => {
                    let other = m.sides(entity.logical_name).map_or("", |(_, e, _)| e);
                    self.check(self.entity(other)?, &item.options, depth + 1, false)?
                }
                None => return Err(unknown_property(entity, &item.navigation)),
            }
        }
        Ok(())
    }

    /// The attributes a `$select` names (all when absent), primary key first.
    fn selected(&self, entity: &'a EntityDef, select: Option<&[String]>) -> Vec<&'a AttributeDef> {
        match select {
            None => entity.attributes.iter().collect(),
            Some(names) => {
                let mut out: Vec<&AttributeDef> = Vec::new();
                for n in names {
                    if let Some(a) = entity.property(n)
                        && !out.iter().any(|x| x.logical_name == a.logical_name)
                    {
                        out.push(a);
                    }
                }
                if !out.iter().any(|a| a.logical_name == entity.primary_id)
                    && let Some(pk) = entity.attribute(&entity.primary_id)
                {
                    out.push(pk);
                }
                out
            }
        }
    }

    /// One record as OData JSON.
    pub fn record(
        &self,
        entity: &'a EntityDef,
        record: &Record,
        options: &QueryOptions,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("@odata.etag".into(), Value::String(record.etag()));
        for attr in self.selected(entity, options.select.as_deref()) {
            let prop = attr.property_name();
            let value = record.get(&attr.logical_name).clone();
            if let (AttributeKind::Lookup { targets }, Some(id)) = (&attr.kind, value.as_str()) {
                let target = record.lookup_targets.get(&attr.logical_name);
                if self.prefer.wants(FORMATTED)
                    && let Some(name) = target.and_then(|t| self.primary_name(t, id))
                {
                    out.insert(format!("{prop}@{FORMATTED}"), Value::String(name));
                }
                if self.prefer.wants(NAVIGATION)
                    && let Some(t) = targets.iter().find(|t| Some(&t.entity) == target)
                {
                    out.insert(
                        format!("{prop}@{NAVIGATION}"),
                        Value::String(t.navigation_property.clone()),
                    );
                }
                if self.prefer.wants(LOOKUP_TYPE)
                    && let Some(t) = target
                {
                    out.insert(format!("{prop}@{LOOKUP_TYPE}"), Value::String(t.clone()));
                }
            } else if self.prefer.wants(FORMATTED)
                && let Some(text) = values::formatted(attr, &value)
            {
                out.insert(format!("{prop}@{FORMATTED}"), Value::String(text));
            }
            out.insert(prop, value);
        }
        for item in &options.expand {
            self.expand(entity, record, item, &mut out);
        }
        out
    }

    fn primary_name(&self, entity: &str, id: &str) -> Option<String> {
        let def = self.store.schema().by_logical_name(entity)?;
        let r = self.store.get(entity, id)?;
        r.get(def.primary_name).as_str().map(str::to_string)
    }

    fn expand(
        &self,
        entity: &'a EntityDef,
        record: &Record,
        item: &ExpandItem,
        out: &mut Map<String, Value>,
    ) {
        match self.store.schema().navigation(entity, &item.navigation) {
            Some(Navigation::Single { attribute, target }) => {
                let related = record
                    .get(&attribute)
                    .as_str()
                    .filter(|_| record.lookup_targets.get(&attribute) == Some(&target))
                    .and_then(|id| self.store.get(&target, id));
                let value = match (related, self.entity(&target)) {
                    (Some(r), Ok(def)) => Value::Object(self.record(def, r, &item.options)),
                    _ => Value::Null,
                };
                out.insert(item.navigation.clone(), value);
            }
            Some(Navigation::Collection {
                entity: child,
                attribute,
            }) => {
                let Ok(def) = self.entity(&child) else {
                    return;
                };
                let ctx = self.context(def);
                let mut filter = |r: &Record| {
                    r.get(&attribute).as_str() == Some(record.id.as_str())
                        && r.lookup_targets.get(&attribute).map(String::as_str)
                            == Some(entity.logical_name)
                        && item
                            .options
                            .filter
                            .as_ref()
                            .is_none_or(|f| ctx.matches(f, r))
                };
                let order = ctx.order(&item.options.orderby);
                let rows = self.store.query(&child, &mut filter, &order);
                let limit = match self.collection_page_size {
                    Some(n) => n,
                    None => item.options.top.unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE),
                };
                let more = rows.len() > limit;
                let page: Vec<&Record> = rows.into_iter().take(limit).collect();
                let mut query: Vec<String> = item
                    .options
                    .select
                    .as_ref()
                    .map(|s| format!("$select={}", s.join(",")))
                    .into_iter()
                    .collect();
                if let (Some(_), true, Some(first), Some(last)) =
                    (self.collection_page_size, more, page.first(), page.last())
                {
                    let token = paging::skiptoken(&def.primary_id, 1, &first.id, &last.id);
                    query.push(format!(
                        "$skiptoken={}",
                        paging::encode_token_for_url(&token)
                    ));
                }
                let values: Vec<Value> = page
                    .iter()
                    .map(|r| Value::Object(self.record(def, r, &item.options)))
                    .collect();
                out.insert(item.navigation.clone(), Value::Array(values));
                // Single-level expansions always carry the link; paged
                // nested ones only when rows remain.
                if self.collection_page_size.is_none() || more {
                    let q = if query.is_empty() {
                        String::new()
                    } else {
                        format!("?{}", query.join("&"))
                    };
                    out.insert(
                        format!("{}@odata.nextLink", item.navigation),
                        Value::String(format!(
                            "{}{}({})/{}{q}",
                            self.service_root, entity.entity_set_name, record.id, item.navigation
                        )),
                    );
                }
            }
            Some(Navigation::ManyToMany(m)) => {
                self.expand_many_to_many(entity, record, item, m, out)
            }
            None => {}
        }
    }

    /// `…/$metadata#accounts(name,primarycontactid(fullname))`.
    pub fn context_url(&self, entity: &EntityDef, options: &QueryOptions, single: bool) -> String {
        let shape = shape_list(options);
        let suffix = if single { "/$entity" } else { "" };
        if shape.is_empty() {
            format!(
                "{}$metadata#{}{suffix}",
                self.service_root, entity.entity_set_name
            )
        } else {
            format!(
                "{}$metadata#{}({shape}){suffix}",
                self.service_root, entity.entity_set_name
            )
        }
    }
}

fn shape_list(options: &QueryOptions) -> String {
    let mut parts: Vec<String> = options.select.clone().unwrap_or_default();
    for item in &options.expand {
        parts.push(format!(
            "{}({})",
            item.navigation,
            shape_list(&item.options)
        ));
    }
    parts.join(",")
}
