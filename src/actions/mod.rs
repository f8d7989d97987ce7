//! Action dispatch. Each group of actions is one module that exposes
//! `definitions()` (its catalog entries) and `run()` (returns `None` for keys
//! it does not own). Adding a group is one line in each list below.

mod batch;
mod changes;
mod execute;
mod fetchxml;
mod metadata;
mod raw;
mod records;
mod relationships;
mod user;

use crate::catalog::{ActionDef, TriggerDef, TriggerKind};
use crate::client::Session;
use crate::error::{ConnectorError, Result};
use crate::inputs::Inputs;
use crate::page::Output;
use serde_json::Value;

/// Each group's catalog entries, in the order builders list them.
const GROUPS: [fn() -> Vec<ActionDef>; 9] = [
    user::definitions,
    records::definitions,
    raw::definitions,
    fetchxml::definitions,
    changes::definitions,
    metadata::definitions,
    relationships::definitions,
    execute::definitions,
    batch::definitions,
];

/// Every action's catalog entry, in the order builders list them.
pub fn definitions() -> Vec<ActionDef> {
    GROUPS.iter().flat_map(|group| group()).collect()
}

/// One action's catalog entry. A call builds only the groups up to the
/// action's own, not the whole catalog: building and dropping every entry
/// (labels, schemas, examples) was over half of a `getEntity` call's guest
/// time, and every call runs in a fresh instance, so nothing can be cached.
pub fn definition(key: &str) -> Option<ActionDef> {
    GROUPS
        .iter()
        .find_map(|group| group().into_iter().find(|a| a.key == key))
}

/// One group's `run`: `None` when the key is not one of its actions.
type GroupRun = fn(&str, &mut Session<'_>, &Inputs) -> Option<Result<Output>>;

/// Runs one action whose inputs were already validated.
pub fn run(key: &str, session: &mut Session<'_>, inputs: &Inputs) -> Result<Output> {
    fn value(r: Option<Result<Value>>) -> Option<Result<Output>> {
        r.map(|r| r.map(Output::from))
    }
    // records, fetchxml and changes pass records through raw (see `page`).
    let groups: [GroupRun; 9] = [
        |k, s, i| value(user::run(k, s, i)),
        records::run,
        |k, s, i| value(raw::run(k, s, i)),
        fetchxml::run,
        changes::run,
        |k, s, i| value(metadata::run(k, s, i)),
        |k, s, i| value(relationships::run(k, s, i)),
        |k, s, i| value(execute::run(k, s, i)),
        batch::run,
    ];
    for group in groups {
        if let Some(result) = group(key, session, inputs) {
            return result;
        }
    }
    Err(unknown_action(key))
}

pub fn unknown_action(key: &str) -> ConnectorError {
    let known: Vec<_> = definitions().iter().map(|a| a.key).collect();
    ConnectorError::invalid_input(
        "action",
        format!("unknown action '{key}' (known: {})", known.join(", ")),
    )
}

/// The polling triggers, each run as the action of the same key.
pub fn polling_triggers() -> Vec<TriggerDef> {
    vec![TriggerDef {
        key: changes::KEY,
        label: "Record Changes",
        description: "Polling trigger on Dataverse change tracking: call the recordChanges action on a schedule, passing the state the previous call returned; each call returns the rows created or updated and the ids of rows deleted since, and the next state. An expired or invalid state is an error asking for resync: true.",
        kind: TriggerKind::Polling,
        inputs: changes::inputs(),
    }]
}
