//! `$expand` of a many-to-many navigation property: the related rows are
//! those paired with this record by a row of the intersect entity.

use super::Shaper;
use crate::emulator::odata::options::ExpandItem;
use crate::emulator::odata::paging::MAX_PAGE_SIZE;
use crate::emulator::store::Record;
use crate::emulator::store::schema::{EntityDef, ManyToMany};
use serde_json::{Map, Value};
use std::collections::HashSet;

impl<'a> Shaper<'a> {
    pub(super) fn expand_many_to_many(
        &self,
        entity: &'a EntityDef,
        record: &Record,
        item: &ExpandItem,
        relationship: ManyToMany,
        out: &mut Map<String, Value>,
    ) {
        let Some((this_attr, other, other_attr)) = relationship.sides(entity.logical_name) else {
            return;
        };
        let Ok(def) = self.entity(other) else {
            return;
        };
        let paired: HashSet<String> = self
            .store
            .records(relationship.intersect)
            .filter(|row| row.get(this_attr).as_str() == Some(record.id.as_str()))
            .filter_map(|row| row.get(other_attr).as_str().map(str::to_string))
            .collect();
        let ctx = self.context(def);
        let mut filter = |r: &Record| {
            paired.contains(&r.id)
                && item
                    .options
                    .filter
                    .as_ref()
                    .is_none_or(|f| ctx.matches(f, r))
        };
        let order = ctx.order(&item.options.orderby);
        let limit = match self.collection_page_size {
            Some(n) => n,
            None => item.options.top.unwrap_or(MAX_PAGE_SIZE).min(MAX_PAGE_SIZE),
        };
        let values: Vec<Value> = self
            .store
            .query(other, &mut filter, &order)
            .into_iter()
            .take(limit)
            .map(|r| Value::Object(self.record(def, r, &item.options)))
            .collect();
        out.insert(item.navigation.clone(), Value::Array(values));
        if self.collection_page_size.is_none() {
            out.insert(
                format!("{}@odata.nextLink", item.navigation),
                Value::String(format!(
                    "{}{}({})/{}",
                    self.service_root, entity.entity_set_name, record.id, item.navigation
                )),
            );
        }
    }
}
