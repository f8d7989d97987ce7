//! Action dispatch. Each group of actions is one module that exposes
//! `definitions()` (its catalog entries) and `run()` (returns `None` for keys
//! it does not own). Adding a group is one line in each list below.

mod batch;
mod raw;
mod records;
mod user;

use crate::catalog::ActionDef;
use crate::client::Session;
use crate::error::{ConnectorError, Result};
use crate::inputs::Inputs;
use serde_json::Value;

/// Every action's catalog entry, in the order builders list them.
pub fn definitions() -> Vec<ActionDef> {
    [
        user::definitions(),
        records::definitions(),
        raw::definitions(),
        batch::definitions(),
    ]
    .concat()
}

/// Runs one action whose inputs were already validated.
pub fn run(key: &str, session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let groups: [fn(&str, &mut Session<'_>, &Inputs) -> Option<Result<Value>>; 4] =
        [user::run, records::run, raw::run, batch::run];
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
