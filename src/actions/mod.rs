//! The action registry: one [`Action`] entry per action (its catalog entry
//! and its `run`), each defined next to its code in `src/actions/*.rs`, and
//! listed once in [`ACTIONS`] in the order builders show them. Adding an
//! action is one entry in its module and one line here
//! (docs/DEVELOPING.md, "Adding an action").

pub mod action;
mod batch;
mod controls;
mod execute;
mod fetchxml;
mod files;
mod metadata;
mod raw;
mod record_changes;
mod records;
mod relationships;
mod search;
mod user;

use crate::catalog::def::{ActionDef, TriggerDef, TriggerKind};
use crate::error::ConnectorError;
pub use action::Action;

/// Every action, in the order builders list them.
///
/// Entries are constants: finding one builds nothing. Every call runs in a
/// fresh instance, so nothing could be cached, and building a whole group's
/// entries (labels, schemas, examples) once took over half of a
/// `getEntity` call's guest time.
pub static ACTIONS: &[Action] = &[
    user::GET_CURRENT_USER,
    records::CREATE_ENTITY,
    records::GET_ENTITY,
    records::UPDATE_ENTITY,
    records::UPSERT_ENTITY,
    records::DELETE_ENTITY,
    records::QUERY_ENTITIES,
    raw::RAW_REQUEST,
    raw::RAW_REQUEST_DEPRECATED,
    fetchxml::RUN_FETCH_XML,
    record_changes::RECORD_CHANGES,
    metadata::GET_ENTITY_METADATA,
    metadata::GET_ENTITIES_METADATA,
    metadata::LIST_ENTITIES,
    metadata::LIST_ENTITY_TYPES,
    metadata::LIST_ATTRIBUTES,
    metadata::QUERY_ATTRIBUTES,
    metadata::GET_ATTRIBUTE,
    metadata::CREATE_ATTRIBUTE,
    metadata::UPDATE_ATTRIBUTE,
    files::UPLOAD_FILE,
    files::DOWNLOAD_FILE,
    files::DELETE_FILE,
    relationships::ASSOCIATE,
    relationships::DISASSOCIATE,
    execute::EXECUTE_ACTION,
    execute::GET_BACKGROUND_OPERATION,
    search::SEARCH_RECORDS,
    search::SUGGEST_RECORDS,
    search::AUTOCOMPLETE_SEARCH,
    search::GET_SEARCH_STATUS,
    batch::RUN_BATCH,
];

/// One action's registry entry.
pub fn find(key: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|a| a.def.key == key)
}

/// One action's catalog entry.
pub fn definition(key: &str) -> Option<ActionDef> {
    find(key).map(|a| a.def.clone())
}

pub fn unknown_action(key: &str) -> ConnectorError {
    let known: Vec<_> = ACTIONS.iter().map(|a| a.def.key).collect();
    ConnectorError::invalid_input(
        "action",
        format!("unknown action '{key}' (known: {})", known.join(", ")),
    )
}

/// The polling triggers, each run as the action of the same key.
pub fn polling_triggers() -> Vec<TriggerDef> {
    vec![TriggerDef {
        key: record_changes::RECORD_CHANGES.def.key,
        label: "Record Changes",
        description: "Polling trigger on Dataverse change tracking: call the recordChanges action on a schedule, passing the state the previous call returned; each call returns the rows created or updated and the ids of rows deleted since, and the next state. An expired or invalid state is an error asking for resync: true.",
        kind: TriggerKind::Polling,
        inputs: record_changes::inputs(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_listed_once_and_found() {
        let mut keys: Vec<_> = ACTIONS.iter().map(|a| a.def.key).collect();
        for key in &keys {
            assert_eq!(find(key).map(|a| a.def.key), Some(*key));
        }
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "a key is listed twice");
        assert!(find("noSuchAction").is_none());
        let e = unknown_action("noSuchAction");
        assert!(e.message.contains("getCurrentUser"), "{}", e.message);
    }
}
