//! The in-memory record store: one table per entity, rows keyed (and so
//! ordered) by primary key, a store-wide version that increases with every
//! write, and a log of deletions. It knows nothing about OData or FetchXML:
//! the query pieces here (filter by predicate, order by comparator, page by
//! primary key) are shared by every query language.
//!
//! `Store` is `Clone` and rows are `Arc`ed, so a snapshot for an
//! all-or-nothing `$batch` changeset costs one pointer copy per row.
//!
//! Building on it:
//! - metadata: [`Store::schema`] has every entity's names, metadata ids,
//!   ownership, typed attributes (picklist options, lookup targets with
//!   navigation properties and relationship names) and alternate keys;
//!   [`schema::Schema::one_to_many`] lists the other side of each lookup;
//! - another query language (FetchXML): [`Store::query`] with a predicate
//!   and a comparator, [`values::compare`]/[`values::equals`] for
//!   Dataverse's comparison rules, `odata::eval::like` for LIKE, and
//!   [`Store::get_or_deleted`] to resume paging after a deleted row;
//! - `$batch` changesets: `let before = state.store.clone();` … on failure
//!   `state.store = before;`;
//! - change tracking: every write bumps [`Store::version`] and stamps the
//!   row ([`Record::version`]); [`Store::deletions_since`] lists removals.

pub mod schema;
pub mod seed;
pub mod seed_sales;
pub mod values;

use schema::{EntityDef, Schema};
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One row. `values` holds attribute logical names → canonical JSON values
/// (see [`values`]); a lookup's value is the target's GUID and its target
/// entity is in `lookup_targets`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    /// The store version of the last write (the row's ETag and change
    /// tracking version).
    pub version: u64,
    /// The columns that have a value; an unset (null) column is absent.
    pub values: Map<String, Value>,
    pub lookup_targets: BTreeMap<String, String>,
}

impl Record {
    pub fn get(&self, attribute: &str) -> &Value {
        self.values.get(attribute).unwrap_or(&Value::Null)
    }

    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

/// A remembered deletion, for change tracking; the row as it was lets a
/// paged query resume after a row deleted between two pages.
#[derive(Debug, Clone, PartialEq)]
pub struct Deletion {
    pub entity: String,
    pub id: String,
    pub version: u64,
    pub record: Arc<Record>,
}

#[derive(Debug, Clone, Default)]
struct Table {
    rows: BTreeMap<String, Arc<Record>>,
    /// Alternate key name → normalised key values → row id.
    keys: BTreeMap<String, HashMap<String, String>>,
}

/// The index form of a key's values (case-insensitive, like the collation);
/// `None` when a key column is null (such rows are not indexed).
fn key_text(attributes: &[&str], record: &Record) -> Option<String> {
    let mut out = String::new();
    for a in attributes {
        let v = record.get(a);
        let text = match v {
            Value::Null => return None,
            Value::String(s) => s.to_lowercase(),
            other => canonical_number(other),
        };
        out.push_str(&text);
        out.push('\u{1f}');
    }
    Some(out)
}

fn canonical_number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) => f.to_string(),
        None => v.to_string(),
    }
}

/// Why a write was refused. The Web API layer maps these to status codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    UnknownEntity(String),
    NotFound {
        entity: String,
        id: String,
    },
    /// Primary key or alternate key values already used.
    DuplicateKey,
    /// A value does not fit its attribute.
    InvalidValue {
        attribute: String,
        message: String,
    },
}

/// A write: attribute values, and lookups as (attribute → (target entity, id)).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub values: Map<String, Value>,
    pub lookups: BTreeMap<String, Option<(String, String)>>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.lookups.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    schema: Schema,
    /// Shared until written: a change set's snapshot ([`Clone`]) copies
    /// only the tables it then writes to, not every row of a large store.
    tables: BTreeMap<String, Arc<Table>>,
    version: u64,
    deletions: Vec<Deletion>,
}

impl Store {
    pub fn new(schema: Schema) -> Self {
        let tables = schema
            .entities
            .iter()
            .map(|e| (e.logical_name.to_string(), Arc::default()))
            .collect();
        Store {
            schema,
            tables,
            version: 1000,
            deletions: Vec::new(),
        }
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn schema_mut(&mut self) -> &mut Schema {
        &mut self.schema
    }

    /// The version of the latest write.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Deletions after `version`, oldest first.
    pub fn deletions_since(&self, version: u64) -> impl Iterator<Item = &Deletion> {
        self.deletions.iter().filter(move |d| d.version > version)
    }

    pub fn get(&self, entity: &str, id: &str) -> Option<&Record> {
        let id = normalize_guid(id)?;
        self.tables.get(entity)?.rows.get(&id).map(Arc::as_ref)
    }

    /// The row as it is, or as it was when deleted: where a paged query
    /// resumes when the last row it served has gone.
    pub fn get_or_deleted(&self, entity: &str, id: &str) -> Option<&Record> {
        self.get(entity, id).or_else(|| {
            self.deletions
                .iter()
                .rev()
                .find(|d| d.entity == entity && d.id == id)
                .map(|d| d.record.as_ref())
        })
    }

    pub fn count(&self, entity: &str) -> usize {
        self.tables.get(entity).map(|t| t.rows.len()).unwrap_or(0)
    }

    /// Every row of `entity` in primary key order.
    pub fn records(&self, entity: &str) -> impl Iterator<Item = &Record> {
        self.tables
            .get(entity)
            .into_iter()
            .flat_map(|t| t.rows.values().map(Arc::as_ref))
    }

    /// The row whose attributes equal `key` (strings compared
    /// case-insensitively, as Dataverse's collation does).
    pub fn find_by_key(&self, entity: &str, key: &[(String, Value)]) -> Option<&Record> {
        let def = self.schema.by_logical_name(entity)?;
        let table = self.tables.get(entity)?;
        let mut names: Vec<&str> = key.iter().map(|(a, _)| a.as_str()).collect();
        names.sort_unstable();
        for k in &def.keys {
            let mut attrs = k.attributes.clone();
            attrs.sort_unstable();
            if attrs == names {
                let probe = Record {
                    id: String::new(),
                    version: 0,
                    values: key.iter().cloned().collect(),
                    lookup_targets: BTreeMap::new(),
                };
                let text = key_text(&k.attributes, &probe)?;
                let id = table.keys.get(k.logical_name)?.get(&text)?;
                return self.get(entity, id);
            }
        }
        self.records(entity).find(|r| {
            key.iter()
                .all(|(a, v)| values::equals(r.get(a), v) == Some(true))
        })
    }

    /// Rows matching `filter`, sorted by `order` then primary key: the
    /// one ordering every query language pages over.
    pub fn query<'s>(
        &'s self,
        entity: &str,
        filter: &mut dyn FnMut(&Record) -> bool,
        order: &dyn Fn(&Record, &Record) -> Ordering,
    ) -> Vec<&'s Record> {
        let mut rows: Vec<&Record> = self.records(entity).filter(|r| filter(r)).collect();
        rows.sort_by(|a, b| order(a, b).then_with(|| a.id.cmp(&b.id)));
        rows
    }

    /// Creates a row. `id` is the client's choice (upsert) or a new GUID.
    pub fn create(
        &mut self,
        entity: &str,
        id: Option<String>,
        changes: Changes,
        caller: &str,
        now: u64,
    ) -> Result<&Record, StoreError> {
        let def = self.entity(entity)?.clone();
        let id = match id {
            Some(id) => normalize_guid(&id).ok_or_else(|| StoreError::InvalidValue {
                attribute: def.primary_id.clone(),
                message: format!("'{id}' is not a GUID"),
            })?,
            None => new_guid(),
        };
        if self.get(entity, &id).is_some() {
            return Err(StoreError::DuplicateKey);
        }
        let stamp = Value::String(crate::emulator::dates::format_datetime(now as i64));
        let mut record = Record {
            id: id.clone(),
            version: 0,
            values: Map::new(),
            lookup_targets: BTreeMap::new(),
        };
        // Unset columns are not stored (`Record::get` answers null for them;
        // responses list every selected column from the schema): a row of a
        // table with a hundred columns and a few values set stays small.
        record
            .values
            .insert(def.primary_id.clone(), Value::String(id.clone()));
        for (name, v) in [("createdon", &stamp), ("modifiedon", &stamp)] {
            if def.attribute(name).is_some() {
                record.values.insert(name.into(), v.clone());
            }
        }
        for name in ["createdby", "modifiedby", "ownerid"] {
            if def.attribute(name).is_some() {
                record
                    .values
                    .insert(name.into(), Value::String(caller.into()));
                record
                    .lookup_targets
                    .insert(name.into(), "systemuser".into());
            }
        }
        if def.attribute("statecode").is_some() {
            record.values.insert("statecode".into(), Value::from(0));
            record.values.insert("statuscode".into(), Value::from(1));
        }
        apply(&def, &mut record, changes)?;
        self.check_alternate_keys(&def, &record)?;
        self.version += 1;
        record.version = self.version;
        if def.attribute("versionnumber").is_some() {
            record
                .values
                .insert("versionnumber".into(), Value::from(self.version));
        }
        self.reindex(entity, None, Some(&record));
        let table = self.table_mut(entity)?;
        table.rows.insert(id.clone(), Arc::new(record));
        self.get(entity, &id).ok_or(StoreError::NotFound {
            entity: entity.into(),
            id,
        })
    }

    /// Updates a row's columns.
    pub fn update(
        &mut self,
        entity: &str,
        id: &str,
        changes: Changes,
        caller: &str,
        now: u64,
    ) -> Result<&Record, StoreError> {
        let def = self.entity(entity)?.clone();
        let not_found = || StoreError::NotFound {
            entity: entity.into(),
            id: id.into(),
        };
        let mut record = self.get(entity, id).ok_or_else(not_found)?.clone();
        apply(&def, &mut record, changes)?;
        self.check_alternate_keys(&def, &record)?;
        self.version += 1;
        record.version = self.version;
        if def.attribute("modifiedon").is_some() {
            record.values.insert(
                "modifiedon".into(),
                Value::String(crate::emulator::dates::format_datetime(now as i64)),
            );
        }
        if def.attribute("modifiedby").is_some() {
            record
                .values
                .insert("modifiedby".into(), Value::String(caller.into()));
        }
        if def.attribute("versionnumber").is_some() {
            record
                .values
                .insert("versionnumber".into(), Value::from(self.version));
        }
        let key = record.id.clone();
        let old = self.get(entity, &key).cloned();
        self.reindex(entity, old.as_ref(), Some(&record));
        self.table_mut(entity)?
            .rows
            .insert(key.clone(), Arc::new(record));
        self.get(entity, &key).ok_or_else(not_found)
    }

    pub fn delete(&mut self, entity: &str, id: &str) -> Result<(), StoreError> {
        let key = normalize_guid(id).unwrap_or_default();
        let Some(removed) = self.table_mut(entity)?.rows.remove(&key) else {
            return Err(StoreError::NotFound {
                entity: entity.into(),
                id: id.into(),
            });
        };
        self.reindex(entity, Some(removed.as_ref()), None);
        self.version += 1;
        self.deletions.push(Deletion {
            entity: entity.into(),
            id: key,
            version: self.version,
            record: removed,
        });
        Ok(())
    }

    fn entity(&self, entity: &str) -> Result<&EntityDef, StoreError> {
        self.schema
            .by_logical_name(entity)
            .ok_or_else(|| StoreError::UnknownEntity(entity.into()))
    }

    fn table_mut(&mut self, entity: &str) -> Result<&mut Table, StoreError> {
        self.tables
            .get_mut(entity)
            .map(Arc::make_mut)
            .ok_or_else(|| StoreError::UnknownEntity(entity.into()))
    }

    /// Alternate keys are unique among rows whose key columns are all set.
    fn check_alternate_keys(&self, def: &EntityDef, record: &Record) -> Result<(), StoreError> {
        let Some(table) = self.tables.get(def.logical_name) else {
            return Ok(());
        };
        for key in &def.keys {
            let Some(text) = key_text(&key.attributes, record) else {
                continue;
            };
            if let Some(owner) = table.keys.get(key.logical_name).and_then(|m| m.get(&text))
                && *owner != record.id
            {
                return Err(StoreError::DuplicateKey);
            }
        }
        Ok(())
    }

    /// Replaces `old`'s index entries by `new`'s (either may be absent).
    fn reindex(&mut self, entity: &str, old: Option<&Record>, new: Option<&Record>) {
        let Some(def) = self.schema.by_logical_name(entity) else {
            return;
        };
        let keys = def.keys.clone();
        let Some(table) = self.tables.get_mut(entity).map(Arc::make_mut) else {
            return;
        };
        for key in &keys {
            let index = table.keys.entry(key.logical_name.to_string()).or_default();
            if let Some(text) = old.and_then(|r| key_text(&key.attributes, r)) {
                index.remove(&text);
            }
            if let Some(r) = new
                && let Some(text) = key_text(&key.attributes, r)
            {
                index.insert(text, r.id.clone());
            }
        }
    }
}

/// Applies changes after checking each value against its attribute.
fn apply(def: &EntityDef, record: &mut Record, changes: Changes) -> Result<(), StoreError> {
    for (name, value) in changes.values {
        let attr = def
            .attribute(&name)
            .ok_or_else(|| StoreError::InvalidValue {
                attribute: name.clone(),
                message: format!("unknown attribute '{name}'"),
            })?;
        let value = values::coerce(attr, &value).map_err(|message| StoreError::InvalidValue {
            attribute: name.clone(),
            message,
        })?;
        if value.is_null() {
            record.values.remove(&name);
        } else {
            record.values.insert(name, value);
        }
    }
    for (name, target) in changes.lookups {
        match target {
            Some((entity, id)) => {
                record.values.insert(name.clone(), Value::String(id));
                record.lookup_targets.insert(name, entity);
            }
            None => {
                record.values.remove(&name);
                record.lookup_targets.remove(&name);
            }
        }
    }
    // Full names follow first and last names, as Dataverse composes them.
    if def.attribute("fullname").is_some() && def.attribute("firstname").is_some() {
        let first = record.get("firstname").as_str().unwrap_or("").to_string();
        let last = record.get("lastname").as_str().unwrap_or("").to_string();
        let full = format!("{first} {last}").trim().to_string();
        if !full.is_empty() {
            record.values.insert("fullname".into(), Value::String(full));
        }
    }
    Ok(())
}

/// Lower-case hyphenated form of a GUID given with or without braces, in
/// any case; `None` when it is not a GUID.
pub fn normalize_guid(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let shaped = s.len() == 36
        && s.char_indices()
            .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'));
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) || !(shaped || s.len() == 32)
    {
        return None;
    }
    Some(dashed(&hex.to_ascii_lowercase()))
}

/// 32 hex digits in the 8-4-4-4-12 form of a GUID.
fn dashed(h: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random version-4 GUID.
pub fn new_guid() -> String {
    let bytes: [u8; 16] = rand::random();
    let mut h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    h.replace_range(12..13, "4");
    h.replace_range(16..17, "8");
    dashed(&h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_normalise() {
        assert_eq!(
            normalize_guid("{ABCDEF01-2345-6789-ABCD-EF0123456789}").as_deref(),
            Some("abcdef01-2345-6789-abcd-ef0123456789")
        );
        assert!(normalize_guid("abc").is_none());
        assert!(normalize_guid("abcdef01-2345-6789-abcd-ef012345678g").is_none());
        assert!(new_guid().len() == 36);
    }

    #[test]
    fn snapshot_restores_everything() {
        let mut store = seed::seeded(&crate::emulator::Directory::seeded(0), 10, 1_700_000_000);
        let before = store.clone();
        let id = store.records("account").next().unwrap().id.clone();
        store.delete("account", &id).unwrap();
        assert!(store.get("account", &id).is_none());
        assert_eq!(store.deletions_since(0).count(), 1);
        store = before;
        assert!(store.get("account", &id).is_some());
    }

    #[test]
    fn every_write_gives_the_row_a_new_etag() {
        let mut store = seed::seeded(&crate::emulator::Directory::seeded(0), 0, 1_700_000_000);
        let id = seed::account_id(1);
        let etag = |store: &Store| store.get("account", &id).map(Record::etag);
        let before = etag(&store).unwrap();
        assert!(
            before.starts_with("W/\"") && before.ends_with('"'),
            "{before}"
        );
        // Even a write that changes no column is a new version.
        store
            .update(
                "account",
                &id,
                Changes::default(),
                crate::emulator::data::USER_ANA,
                2,
            )
            .unwrap();
        let after = etag(&store).unwrap();
        assert_ne!(before, after);
        let other = seed::account_id(2);
        let v = store.version();
        store.delete("account", &other).unwrap();
        assert!(store.version() > v, "a delete is a write too");
        assert_eq!(etag(&store).unwrap(), after, "other rows keep theirs");
    }

    #[test]
    fn alternate_keys_are_unique_and_versions_increase() {
        let mut store = seed::seeded(&crate::emulator::Directory::seeded(0), 0, 1_700_000_000);
        let mut changes = Changes::default();
        changes
            .values
            .insert("accountnumber".into(), Value::from("A-1"));
        assert_eq!(
            store
                .create("account", None, changes, crate::emulator::data::USER_ANA, 1)
                .unwrap_err(),
            StoreError::DuplicateKey
        );
        let v = store.version();
        let mut changes = Changes::default();
        changes.values.insert("name".into(), Value::from("New"));
        let r = store
            .create("account", None, changes, crate::emulator::data::USER_ANA, 1)
            .unwrap();
        assert!(r.version > v);
        assert_eq!(r.get("name"), "New");
        assert_eq!(r.get("revenue"), &Value::Null, "unset columns are null");
        assert!(!r.values.contains_key("revenue"), "and not stored");
    }
}
