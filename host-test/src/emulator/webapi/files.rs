//! File columns: a single-request upload `PATCH /accounts(<id>)/new_document`
//! with `x-ms-file-name` and the raw bytes → 204, the download
//! `GET …/new_document/$value` (bytes, `x-ms-file-name`, `x-ms-file-size`),
//! and `DELETE …/new_document` → 204. The column's JSON value is the file id;
//! `<column>_name` holds the file name, as in Dataverse.
//!
//! Not emulated: chunked uploads (`x-ms-transfer-mode: chunked`) and ranged
//! downloads (`Range`); a chunked request gets 501.

use super::caller::Caller;
use super::reply::{error, header};
use super::rows::{self, UnderRow, existing_id};
use crate::emulator::odata::ODataError;
use crate::emulator::response::no_content;
use crate::emulator::store::schema::{AttributeKind, EntityDef};
use crate::emulator::store::{Changes, new_guid};
use crate::emulator::{EmuRequest, EmuResponse, State};
use bytes::Bytes;
use serde_json::Value;
use std::collections::BTreeMap;

/// One stored file.
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    pub name: String,
    pub bytes: Bytes,
}

/// Files by file id.
#[derive(Debug, Clone, Default)]
pub struct FileBlobs(BTreeMap<String, Blob>);

impl FileBlobs {
    pub fn get(&self, file_id: &str) -> Option<&Blob> {
        self.0.get(file_id)
    }
}

/// Answers `part` = `<fileColumn>` (PATCH/PUT/DELETE) or
/// `<fileColumn>/$value` (GET); `None` for anything else.
pub fn handle(state: &mut State, at: &UnderRow<'_>) -> Option<EmuResponse> {
    let (entity, raw_key) = (at.entity, at.raw_key);
    let (column, value) = match at.part.strip_suffix("/$value") {
        Some(c) => (c, true),
        None => (at.part, false),
    };
    let attr = entity.attribute(column)?;
    let AttributeKind::File { max_size_kb } = attr.kind else {
        return None;
    };
    let result = match (value, at.request.method().clone()) {
        (true, http::Method::GET) => download(state, entity, raw_key, column),
        (false, http::Method::PATCH | http::Method::PUT) => upload(
            state,
            at.request,
            at.caller,
            entity,
            raw_key,
            column,
            max_size_kb,
        ),
        (false, http::Method::DELETE) => clear(state, at.caller, entity, raw_key, column),
        _ => return None,
    };
    Some(result.unwrap_or_else(error))
}

fn upload(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    raw_key: &str,
    column: &str,
    max_size_kb: u32,
) -> Result<EmuResponse, ODataError> {
    let id = existing_id(state, entity, raw_key)?;
    if header(request, "x-ms-transfer-mode").is_some() {
        return Err(ODataError::not_implemented(
            "The emulator does not implement chunked file uploads.".to_string(),
        ));
    }
    // Message UNCONFIRMED; Dataverse requires the file name header.
    let name = header(request, "x-ms-file-name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ODataError::bad_request(
                "The x-ms-file-name header is required to upload a file.".to_string(),
            )
        })?
        .to_string();
    let bytes = request.body().clone();
    if bytes.len() as u64 > u64::from(max_size_kb) * 1024 {
        // Code and message UNCONFIRMED.
        return Err(ODataError::new(
            400,
            "0x80090001",
            format!("The file is larger than the maximum size of {max_size_kb} KB for '{column}'."),
        ));
    }
    let file_id = new_guid();
    let old = state
        .store
        .get(entity.logical_name, &id)
        .and_then(|r| r.get(column).as_str().map(str::to_string));
    let mut changes = Changes::default();
    changes
        .values
        .insert(column.to_string(), Value::String(file_id.clone()));
    set_name(entity, column, &mut changes, Value::String(name.clone()));
    rows::update(state, caller, entity.logical_name, &id, changes)?;
    if let Some(old) = old {
        state.files.0.remove(&old);
    }
    state.files.0.insert(file_id, Blob { name, bytes });
    Ok(no_content())
}

/// `<column>_name` is read-only to clients but the platform sets it.
fn set_name(entity: &EntityDef, column: &str, changes: &mut Changes, name: Value) {
    let name_column = format!("{column}_name");
    if entity.attribute(&name_column).is_some() {
        changes.values.insert(name_column, name);
    }
}

fn download(
    state: &State,
    entity: &EntityDef,
    raw_key: &str,
    column: &str,
) -> Result<EmuResponse, ODataError> {
    let id = existing_id(state, entity, raw_key)?;
    let blob = state
        .store
        .get(entity.logical_name, &id)
        .and_then(|r| r.get(column).as_str())
        .and_then(|file_id| state.files.get(file_id))
        .ok_or_else(|| {
            // Code and message UNCONFIRMED.
            ODataError::new(
                404,
                "0x80060891",
                format!("No file attachment found for attribute: {column} EntityId: {id}."),
            )
        })?;
    Ok(http::Response::builder()
        .status(200)
        .header("Content-Type", "application/octet-stream")
        .header("OData-Version", "4.0")
        .header("x-ms-file-name", blob.name.as_str())
        .header("x-ms-file-size", blob.bytes.len().to_string())
        .body(blob.bytes.clone())
        .unwrap_or_default())
}

fn clear(
    state: &mut State,
    caller: &Caller,
    entity: &EntityDef,
    raw_key: &str,
    column: &str,
) -> Result<EmuResponse, ODataError> {
    let id = existing_id(state, entity, raw_key)?;
    let old = state
        .store
        .get(entity.logical_name, &id)
        .and_then(|r| r.get(column).as_str().map(str::to_string));
    let mut changes = Changes::default();
    changes.values.insert(column.to_string(), Value::Null);
    set_name(entity, column, &mut changes, Value::Null);
    rows::update(state, caller, entity.logical_name, &id, changes)?;
    if let Some(old) = old {
        state.files.0.remove(&old);
    }
    Ok(no_content())
}
