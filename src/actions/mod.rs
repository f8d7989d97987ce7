//! Action dispatch: the catalog key → the function that runs it. Each action
//! is a pure function of (session, inputs) → output JSON.

mod user;

use crate::client::Session;
use crate::error::{ConnectorError, Result};
use crate::inputs::Inputs;
use serde_json::Value;

/// Runs one action whose inputs were already validated.
pub fn run(key: &str, session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    match key {
        "getCurrentUser" => user::get_current_user(session, inputs),
        other => Err(unknown_action(other)),
    }
}

pub fn unknown_action(key: &str) -> ConnectorError {
    let known: Vec<_> = crate::catalog::catalog()
        .actions
        .iter()
        .map(|a| a.key)
        .collect();
    ConnectorError::invalid_input(
        "action",
        format!("unknown action '{key}' (known: {})", known.join(", ")),
    )
}
