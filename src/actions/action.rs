//! What the registry ([`crate::actions::ACTIONS`]) holds for one action:
//! its catalog entry and the function that runs it. The key is written once,
//! in the entry.

use crate::catalog::def::ActionDef;
use crate::client::Session;
use crate::error::Result;
use crate::inputs::Inputs;
use crate::page::Output;

/// Runs an action whose inputs were already validated against its entry.
pub type Run = fn(&mut Session<'_>, &Inputs) -> Result<Output>;

pub struct Action {
    pub def: ActionDef,
    pub run: Run,
}
