//! Raises the registered webhooks ([`crate::emulator::webhooks`]) for a write
//! made through the Web API: the Target is the columns the request set, the
//! images are the whole row before and after, all as Web API JSON (lookups
//! with their `lookuplogicalname` annotation, which the RemoteExecutionContext
//! needs for EntityReferences).
//!
//! Not emulated: a `$batch` change set that rolls back still sends the
//! webhooks its successful parts queued (Dataverse would not).

use super::registrations as registration;
use crate::emulator::State;
use crate::emulator::odata::options::{Prefer, QueryOptions};
use crate::emulator::odata::shape::{LOOKUP_TYPE, Shaper};
use crate::emulator::store::schema::EntityDef;
use crate::emulator::store::{Changes, Record};
use crate::emulator::webhooks::{Message, Write};
use serde_json::{Map, Value};

/// The property names (Web API form) a write sets: what goes in the Target.
pub fn changed_columns(entity: &EntityDef, changes: &Changes) -> Vec<String> {
    let mut names: Vec<String> = changes.values.keys().cloned().collect();
    for attribute in changes.lookups.keys() {
        names.push(
            entity
                .attribute(attribute)
                .map(|a| a.property_name())
                .unwrap_or_else(|| format!("_{attribute}_value")),
        );
    }
    names
}

/// Every column of a row as Web API JSON.
fn image(state: &State, entity: &EntityDef, record: &Record) -> Map<String, Value> {
    let prefer = Prefer {
        annotations: vec![LOOKUP_TYPE.to_string()],
        ..Prefer::default()
    };
    Shaper {
        store: &state.store,
        prefer: &prefer,
        service_root: "",
        now: state.now(),
        user_id: "",
        collection_page_size: None,
    }
    .record(entity, record, &QueryOptions::default())
}

/// Queues the webhooks of one write. `before` is the row as it was (update,
/// delete); the row after is read from the store (create, update).
pub fn raise(
    state: &mut State,
    message: Message,
    entity: &EntityDef,
    id: &str,
    before: Option<&Record>,
    changed: &[String],
    user_id: &str,
) {
    let (endpoints, steps) = registration::registered(state);
    if state.webhooks.steps.is_empty() && steps.is_empty() {
        return;
    }
    let pre = before.map(|r| image(state, entity, r));
    let post = match message {
        Message::Delete => None,
        _ => state
            .store
            .get(entity.logical_name, id)
            .map(|r| image(state, entity, r)),
    };
    let mut target = Map::new();
    if let Some(post) = &post {
        for (k, v) in post {
            let base = k.split('@').next().unwrap_or(k);
            if changed.iter().any(|c| c == base) {
                target.insert(k.clone(), v.clone());
            }
        }
    }
    let write = Write {
        message,
        entity: entity.logical_name,
        record_id: id,
        attributes: &target,
        pre_image: pre.as_ref(),
        post_image: post.as_ref(),
        user_id,
    };
    state.queue_webhooks_with(&write, &endpoints, &steps);
}

/// Queues the webhooks of an executed custom API or action bound to a row:
/// the Target is a reference to the row, `parameters` the other input
/// parameters as the request gave them.
pub fn raise_action(
    state: &mut State,
    message: Message,
    entity: &EntityDef,
    id: &str,
    parameters: &Map<String, Value>,
    user_id: &str,
) {
    let (endpoints, steps) = registration::registered(state);
    if state.webhooks.steps.is_empty() && steps.is_empty() {
        return;
    }
    let write = Write {
        message,
        entity: entity.logical_name,
        record_id: id,
        attributes: parameters,
        pre_image: None,
        post_image: None,
        user_id,
    };
    state.queue_webhooks_with(&write, &endpoints, &steps);
}
