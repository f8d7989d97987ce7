//! The rows a URL names and the writes handlers make as the caller: keys
//! in `set(<key>)` (a GUID or alternate key values), entity references
//! (`@odata.bind`, `$ref` bodies, action parameters), and store writes
//! stamped with the caller and the emulator's clock. Shared by the record
//! endpoints and their siblings (`$ref`, files, operations); imports none
//! of them.

use super::caller::Caller;
use super::reply::{not_found, store_error};
use crate::emulator::odata::{ODataError, eval::unknown_property};
use crate::emulator::store::schema::EntityDef;
use crate::emulator::store::{Changes, Record, normalize_guid};
use crate::emulator::{EmuRequest, State};
use serde_json::Value;

/// A request for something under one row, `<set>(<raw_key>)/<part>`: what
/// the `$ref`, file column and bound operation handlers are given.
#[derive(Clone, Copy)]
pub struct UnderRow<'r> {
    pub request: &'r EmuRequest,
    pub caller: &'r Caller,
    pub entity: &'r EntityDef,
    pub raw_key: &'r str,
    pub part: &'r str,
}

/// The record a URL key names.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Id(String),
    /// Attribute logical names and values.
    Alternate(Vec<(String, Value)>),
}

/// Parses the text inside `(…)`: a GUID, or `name='value',name2=2`.
pub fn parse_key(entity: &EntityDef, raw: &str) -> Result<Key, ODataError> {
    let text = percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned();
    if let Some(id) = normalize_guid(&text) {
        return Ok(Key::Id(id));
    }
    let bad = || {
        ODataError::bad_request(format!(
            "Bad Request - Error in query syntax: the key '{text}' is not valid for '{}'.",
            entity.entity_set_name
        ))
    };
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut pairs = Vec::new();
    while i < chars.len() {
        let start = i;
        while i < chars.len() && chars[i] != '=' {
            i += 1;
        }
        let name: String = chars[start..i]
            .iter()
            .collect::<String>()
            .trim()
            .to_string();
        if i >= chars.len() || name.is_empty() {
            return Err(bad());
        }
        i += 1;
        let value = if chars.get(i) == Some(&'\'') {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(bad()),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        s.push(*c);
                        i += 1;
                    }
                }
            }
            Value::String(s)
        } else {
            let start = i;
            while i < chars.len() && chars[i] != ',' {
                i += 1;
            }
            let word: String = chars[start..i]
                .iter()
                .collect::<String>()
                .trim()
                .to_string();
            if let Some(g) = normalize_guid(&word) {
                Value::String(g)
            } else if let Ok(n) = word.parse::<i64>() {
                Value::from(n)
            } else if let Ok(f) = word.parse::<f64>() {
                Value::from(f)
            } else if word == "true" || word == "false" {
                Value::Bool(word == "true")
            } else {
                return Err(bad());
            }
        };
        let attr = entity
            .property(&name)
            .ok_or_else(|| unknown_property(entity, &name))?;
        pairs.push((attr.logical_name.clone(), value));
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        match chars.get(i) {
            Some(',') => i += 1,
            None => {}
            Some(_) => return Err(bad()),
        }
    }
    let mut names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let defined = entity.keys.iter().any(|k| {
        let mut a = k.attributes.clone();
        a.sort_unstable();
        a == names
    });
    if !defined {
        return Err(ODataError::bad_request(format!(
            "Invalid alternate key: ({}) is not a key defined for entity {}.",
            names.join(","),
            entity.logical_name
        )));
    }
    Ok(Key::Alternate(pairs))
}

pub fn find<'s>(state: &'s State, entity: &EntityDef, key: &Key) -> Option<&'s Record> {
    match key {
        Key::Id(id) => state.store.get(entity.logical_name, id),
        Key::Alternate(pairs) => state.store.find_by_key(entity.logical_name, pairs),
    }
}

pub fn key_text(key: &Key) -> String {
    match key {
        Key::Id(id) => id.clone(),
        Key::Alternate(pairs) => pairs
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// The row `key` names, or Dataverse's 404 for it.
pub fn existing<'s>(
    state: &'s State,
    entity: &EntityDef,
    key: &Key,
) -> Result<&'s Record, ODataError> {
    find(state, entity, key).ok_or_else(|| not_found(entity.logical_name, &key_text(key)))
}

/// The id of the row `set(<raw_key>)` names, or why there is none.
pub fn existing_id(state: &State, entity: &EntityDef, raw_key: &str) -> Result<String, ODataError> {
    let key = parse_key(entity, raw_key)?;
    existing(state, entity, &key).map(|r| r.id.clone())
}

/// Creates a row of `entity` (logical name) as the caller, now.
pub fn create<'s>(
    state: &'s mut State,
    caller: &Caller,
    entity: &str,
    id: Option<String>,
    changes: Changes,
) -> Result<&'s Record, ODataError> {
    let now = state.now();
    state
        .store
        .create(entity, id, changes, &caller.user_id, now)
        .map_err(store_error)
}

/// Updates row `id` of `entity` (logical name) as the caller, now.
pub fn update<'s>(
    state: &'s mut State,
    caller: &Caller,
    entity: &str,
    id: &str,
    changes: Changes,
) -> Result<&'s Record, ODataError> {
    let now = state.now();
    state
        .store
        .update(entity, id, changes, &caller.user_id, now)
        .map_err(store_error)
}

/// Why an entity reference did not resolve; each caller words it as its
/// context (`@odata.bind`, `$ref`, an action parameter) needs.
pub enum ReferenceError {
    /// Not `[…/api/data/vX/]<set>(<key>)`.
    Malformed,
    /// No such entity set.
    UnknownSet(String),
    /// The set exists but holds another entity (its logical name).
    WrongEntity(String),
    /// The key names no existing row.
    Missing(ODataError),
    /// The key does not parse for that entity.
    BadKey(ODataError),
}

/// Resolves an entity reference — `/set(<id>)`, `set(<id>)`, an absolute
/// `…/api/data/vX/set(<id>)` or a key form `set(k='v')` — to the id of an
/// existing `target` row. The one parser behind `@odata.bind`, `$ref`
/// bodies and entity-typed action parameters.
pub fn resolve_reference(
    state: &State,
    text: &str,
    target: &str,
) -> Result<String, ReferenceError> {
    let path = match text.find("/api/data/") {
        Some(i) => text
            .get(i + "/api/data/".len()..)
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, r)| r)
            .ok_or(ReferenceError::Malformed)?,
        None => text.trim_start_matches('/'),
    };
    let (set, raw_key) = path.split_once('(').ok_or(ReferenceError::Malformed)?;
    let raw_key = raw_key.strip_suffix(')').ok_or(ReferenceError::Malformed)?;
    let def = state
        .store
        .schema()
        .by_entity_set(set)
        .ok_or_else(|| ReferenceError::UnknownSet(set.to_string()))?;
    if def.logical_name != target {
        return Err(ReferenceError::WrongEntity(def.logical_name.to_string()));
    }
    let key = parse_key(def, raw_key).map_err(ReferenceError::BadKey)?;
    find(state, def, &key)
        .map(|r| r.id.clone())
        .ok_or_else(|| ReferenceError::Missing(not_found(def.logical_name, &key_text(&key))))
}
