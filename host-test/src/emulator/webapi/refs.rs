//! Entity references (`…/{nav}/$ref`): associate and disassociate records
//! as the wire reference §2.7 describes, over the store's lookups (a
//! one-to-many relationship is the lookup on the many side).
//!
//! - `POST  /accounts(<a>)/<collectionNav>/$ref` `{"@odata.id": "<url>"}` → 204
//! - `PUT   /opportunities(<o>)/<singleNav>/$ref` `{"@odata.id": "<url>"}` → 204
//! - `DELETE /accounts(<a>)/<collectionNav>/$ref?$id=<url>` or
//!   `DELETE /accounts(<a>)/<collectionNav>(<o>)/$ref` → 204
//! - `DELETE /opportunities(<o>)/<singleNav>/$ref` → 204
//! - `GET …/<nav>/$ref` → the references (`@odata.id` of each related row).

use super::caller::Caller;
use super::reply::{error, method_not_allowed_error, not_found, segment_not_found, store_error};
use super::rows::{
    self, ReferenceError, UnderRow, existing, existing_id, parse_key, resolve_reference,
};
use crate::emulator::odata::ODataError;
use crate::emulator::odata::options::query_pairs;
use crate::emulator::response::{no_content, odata_json};
use crate::emulator::store::schema::{EntityDef, ManyToMany, Navigation};
use crate::emulator::store::{Changes, Record};
use crate::emulator::{EmuRequest, EmuResponse, State};
use serde_json::{Value, json};

/// Answers `part` = `<nav>/$ref` or `<nav>(<key>)/$ref` under `set(<raw_key>)`;
/// `None` when `part` is not a `$ref` path.
pub fn handle(state: &mut State, at: &UnderRow<'_>) -> Option<EmuResponse> {
    let nav_part = at.part.strip_suffix("/$ref")?;
    let answer = run(
        state, at.request, at.caller, at.entity, at.raw_key, nav_part,
    );
    Some(answer.unwrap_or_else(error))
}

fn run(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    raw_key: &str,
    nav_part: &str,
) -> Result<EmuResponse, ODataError> {
    let (nav, target_key) = match nav_part.split_once('(') {
        Some((n, k)) => (
            n,
            Some(
                k.strip_suffix(')')
                    .ok_or_else(|| segment_not_found(nav_part))?,
            ),
        ),
        None => (nav_part, None),
    };
    let key = parse_key(entity, raw_key)?;
    let source = existing(state, entity, &key)?.clone();
    let navigation = state
        .store
        .schema()
        .navigation(entity, nav)
        .ok_or_else(|| segment_not_found(nav))?;
    let method = request.method().clone();
    match (navigation, method) {
        (Navigation::Collection { entity: child, .. }, http::Method::GET)
            if target_key.is_none() =>
        {
            list_refs(state, caller, entity, &source, nav, &child)
        }
        (Navigation::Single { attribute, target }, http::Method::GET) if target_key.is_none() => {
            let id = linked(&source, &attribute, &target);
            let def = entity_def(state, &target)?;
            match id {
                Some(id) => Ok(odata_json(
                    200,
                    &json!({
                        "@odata.context": format!("{}$metadata#$ref", caller.service_root),
                        "@odata.id": format!("{}{}({id})", caller.service_root, def.entity_set_name),
                    }),
                )),
                None => Ok(no_content()),
            }
        }
        (
            Navigation::Collection {
                entity: child,
                attribute,
            },
            http::Method::POST,
        ) if target_key.is_none() => {
            check_writable(state, &child, &attribute)?;
            let child_id = resolve_id(state, &body_id(request)?, &child)?;
            let mut changes = Changes::default();
            changes.lookups.insert(
                attribute,
                Some((entity.logical_name.to_string(), source.id.clone())),
            );
            write(state, caller, &child, &child_id, changes)
        }
        (Navigation::Single { attribute, target }, http::Method::PUT) if target_key.is_none() => {
            check_writable(state, entity.logical_name, &attribute)?;
            let target_id = resolve_id(state, &body_id(request)?, &target)?;
            let mut changes = Changes::default();
            changes.lookups.insert(attribute, Some((target, target_id)));
            write(state, caller, entity.logical_name, &source.id, changes)
        }
        (
            Navigation::Collection {
                entity: child,
                attribute,
            },
            http::Method::DELETE,
        ) => {
            check_writable(state, &child, &attribute)?;
            let child_id = delete_target(state, request, &child, target_key)?;
            let row = state
                .store
                .get(&child, &child_id)
                .ok_or_else(|| not_found(&child, &child_id))?;
            // Only a row that points here is unlinked; removing a link
            // that does not exist changes nothing (UNCONFIRMED: Dataverse
            // is believed to answer 204 here too).
            if linked(row, &attribute, entity.logical_name) != Some(source.id.as_str()) {
                return Ok(no_content());
            }
            let mut changes = Changes::default();
            changes.lookups.insert(attribute, None);
            write(state, caller, &child, &child_id, changes)
        }
        (Navigation::Single { attribute, .. }, http::Method::DELETE) if target_key.is_none() => {
            check_writable(state, entity.logical_name, &attribute)?;
            let mut changes = Changes::default();
            changes.lookups.insert(attribute, None);
            write(state, caller, entity.logical_name, &source.id, changes)
        }
        (Navigation::ManyToMany(m), method) => many_to_many(
            state, request, caller, entity, &source, m, target_key, method,
        ),
        (_, method) => Err(method_not_allowed_error(&method)),
    }
}

fn entity_def<'s>(state: &'s State, logical: &str) -> Result<&'s EntityDef, ODataError> {
    state
        .store
        .schema()
        .by_logical_name(logical)
        .ok_or_else(|| segment_not_found(logical))
}

/// The id `record`'s lookup `attribute` holds when it points at `target`.
fn linked<'r>(record: &'r Record, attribute: &str, target: &str) -> Option<&'r str> {
    record
        .get(attribute)
        .as_str()
        .filter(|_| record.lookup_targets.get(attribute).map(String::as_str) == Some(target))
}

/// System lookups (createdby, modifiedby) cannot be set by a client.
fn check_writable(state: &State, entity: &str, attribute: &str) -> Result<(), ODataError> {
    let read_only = entity_def(state, entity)?
        .attribute(attribute)
        .is_some_and(|a| a.read_only);
    if read_only {
        // Message UNCONFIRMED.
        return Err(ODataError::bad_request(format!(
            "The attribute '{attribute}' of '{entity}' is set by the system and cannot be associated."
        )));
    }
    Ok(())
}

/// The `@odata.id` of a `$ref` request body.
fn body_id(request: &EmuRequest) -> Result<String, ODataError> {
    let body: Value = serde_json::from_slice(request.body()).map_err(|_| {
        ODataError::bad_request(
            "The request body of a $ref request must be a JSON object with @odata.id.".to_string(),
        )
    })?;
    body.get("@odata.id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            ODataError::bad_request(
                "A reference must carry an '@odata.id' annotation naming the related record."
                    .to_string(),
            )
        })
}

/// Resolves an entity reference (absolute `https://…/api/data/v9.2/set(id)`,
/// `/set(id)` or `set(id)`; [S: ASSOC] allows absolute and relative) to the
/// id of an existing row of `target`.
fn resolve_id(state: &State, url: &str, target: &str) -> Result<String, ODataError> {
    resolve_reference(state, url, target).map_err(|e| match e {
        ReferenceError::Malformed => ODataError::bad_request(format!(
            "The reference '{url}' is not a valid entity id: expected <entityset>(<id>)."
        )),
        ReferenceError::UnknownSet(set) => segment_not_found(&set),
        ReferenceError::WrongEntity(actual) => ODataError::bad_request(format!(
            "The reference '{url}' points at '{actual}', but the navigation property relates '{target}'."
        )),
        ReferenceError::BadKey(e) | ReferenceError::Missing(e) => e,
    })
}

fn write(
    state: &mut State,
    caller: &Caller,
    entity: &str,
    id: &str,
    changes: Changes,
) -> Result<EmuResponse, ODataError> {
    rows::update(state, caller, entity, id, changes)?;
    Ok(no_content())
}

fn list_refs(
    state: &State,
    caller: &Caller,
    entity: &EntityDef,
    source: &Record,
    _nav: &str,
    child: &str,
) -> Result<EmuResponse, ODataError> {
    let Some(Navigation::Collection { attribute, .. }) =
        state.store.schema().navigation(entity, _nav)
    else {
        return Err(segment_not_found(_nav));
    };
    let def = entity_def(state, child)?;
    let ids = state
        .store
        .records(child)
        .filter(|r| linked(r, &attribute, entity.logical_name) == Some(source.id.as_str()))
        .map(|r| r.id.as_str());
    Ok(ref_collection(caller, def.entity_set_name, ids))
}

/// `GET …/<collection nav>/$ref`: an `@odata.id` per related row.
fn ref_collection<'i>(
    caller: &Caller,
    set: &str,
    ids: impl Iterator<Item = &'i str>,
) -> EmuResponse {
    let value: Vec<Value> = ids
        .map(|id| json!({"@odata.id": format!("{}{set}({id})", caller.service_root)}))
        .collect();
    odata_json(
        200,
        &json!({
            "@odata.context": format!("{}$metadata#Collection($ref)", caller.service_root),
            "value": value,
        }),
    )
}

/// The related record a collection `DELETE …/$ref` names: by key in the
/// path (`nav(<id>)/$ref`) or by URL in `$id`.
fn delete_target(
    state: &State,
    request: &EmuRequest,
    child: &str,
    target_key: Option<&str>,
) -> Result<String, ODataError> {
    match target_key {
        Some(raw) => {
            let def = entity_def(state, child)?.clone();
            existing_id(state, &def, raw)
        }
        None => {
            let pairs = query_pairs(request.uri().query());
            let url = pairs
                .iter()
                .find(|(k, _)| k == "$id")
                .map(|(_, v)| v.clone())
                .ok_or_else(|| {
                    ODataError::bad_request(
                        "The $id query option is required to delete a reference from a collection-valued navigation property.".to_string(),
                    )
                })?;
            resolve_id(state, &url, child)
        }
    }
}

/// `$ref` on a many-to-many navigation property: associating adds a row
/// to the intersect entity, disassociating removes it.
#[allow(clippy::too_many_arguments)]
fn many_to_many(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    source: &Record,
    m: ManyToMany,
    target_key: Option<&str>,
    method: http::Method,
) -> Result<EmuResponse, ODataError> {
    let (this_attr, other, other_attr) = m
        .sides(entity.logical_name)
        .ok_or_else(|| segment_not_found(m.schema_name))?;
    let pairs_with = |state: &State, other_id: &str| -> Vec<String> {
        state
            .store
            .records(m.intersect)
            .filter(|r| {
                r.get(this_attr).as_str() == Some(source.id.as_str())
                    && r.get(other_attr).as_str() == Some(other_id)
            })
            .map(|r| r.id.clone())
            .collect()
    };
    match method {
        http::Method::GET if target_key.is_none() => {
            let def = entity_def(state, other)?;
            let ids = state
                .store
                .records(m.intersect)
                .filter(|r| r.get(this_attr).as_str() == Some(source.id.as_str()))
                .filter_map(|r| r.get(other_attr).as_str());
            Ok(ref_collection(caller, def.entity_set_name, ids))
        }
        http::Method::POST if target_key.is_none() => {
            let other_id = resolve_id(state, &body_id(request)?, other)?;
            if !pairs_with(state, &other_id).is_empty() {
                // Code and message UNCONFIRMED (SQL's duplicate key surfaced).
                return Err(ODataError::new(
                    400,
                    "0x80040237",
                    "Cannot insert duplicate key.",
                ));
            }
            let mut changes = Changes::default();
            changes
                .values
                .insert(this_attr.into(), Value::String(source.id.clone()));
            changes
                .values
                .insert(other_attr.into(), Value::String(other_id));
            rows::create(state, caller, m.intersect, None, changes)?;
            Ok(no_content())
        }
        http::Method::DELETE => {
            let other_id = delete_target(state, request, other, target_key)?;
            // Removing a pair that does not exist changes nothing
            // (UNCONFIRMED, as for one-to-many).
            for row in pairs_with(state, &other_id) {
                state.store.delete(m.intersect, &row).map_err(store_error)?;
            }
            Ok(no_content())
        }
        method => Err(method_not_allowed_error(&method)),
    }
}
