//! The small answers every Web API handler shares: an [`ODataError`] as a
//! response, Dataverse's not-found, store-error and 405 wording, and the
//! request headers they read (`Prefer`). Imports no handler, so that every
//! handler can import it.

use crate::emulator::odata::ODataError;
use crate::emulator::odata::options::Prefer;
use crate::emulator::response::{odata_error, odata_json};
use crate::emulator::store::StoreError;
use crate::emulator::{EmuRequest, EmuResponse};
use serde_json::Value;

pub(super) fn error(e: ODataError) -> EmuResponse {
    odata_error(e.status, &e.code, &e.message)
}

pub fn not_found(entity: &str, id: &str) -> ODataError {
    ODataError::new(
        404,
        "0x80040217",
        format!("{entity} With Id = {id} Does Not Exist"),
    )
}

/// 404 `0x8006088a` for a path segment that names nothing.
pub(super) fn segment_not_found(segment: &str) -> ODataError {
    ODataError::new(
        404,
        "0x8006088a",
        format!("Resource not found for the segment '{segment}'."),
    )
}

pub(super) fn store_error(e: StoreError) -> ODataError {
    match e {
        StoreError::NotFound { entity, id } => not_found(&entity, &id),
        StoreError::DuplicateKey => ODataError::new(
            412,
            "0x80040237",
            "A record with matching key values already exists.",
        ),
        StoreError::UnknownEntity(name) => segment_not_found(&name),
        StoreError::InvalidValue { message, .. } if message.starts_with("A validation error") => {
            ODataError::new(400, "0x80044331", message)
        }
        StoreError::InvalidValue { message, .. } => ODataError::bad_request(message),
    }
}

/// 405 for a method the resource does not support (a function called with
/// POST, an action with GET, …). Message as OData/ASP.NET words it; the hex
/// code is UNCONFIRMED.
pub(super) fn method_not_allowed_error(method: &http::Method) -> ODataError {
    ODataError::new(
        405,
        "0x80060888",
        format!("The requested resource does not support http method '{method}'."),
    )
}

/// [`method_not_allowed_error`] as a response.
pub(super) fn method_not_allowed(method: &http::Method) -> EmuResponse {
    error(method_not_allowed_error(method))
}

/// The request's `Prefer` headers, all of them.
pub(super) fn prefer(request: &EmuRequest) -> Prefer {
    Prefer::parse(
        request
            .headers()
            .get_all("Prefer")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// A request header as text, trimmed; `None` when absent or not text.
pub(super) fn header<'r>(request: &'r EmuRequest, name: &str) -> Option<&'r str> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// A JSON answer naming the preferences it applied in `Preference-Applied`.
pub(super) fn json_response(status: u16, body: &Value, applied: &[String]) -> EmuResponse {
    let mut response = odata_json(status, body);
    if !applied.is_empty()
        && let Ok(v) = http::HeaderValue::from_str(&applied.join(","))
    {
        response.headers_mut().insert("Preference-Applied", v);
    }
    response
}

/// `response` with the `OData-EntityId` header naming what was written.
pub(super) fn with_entity_id(mut response: EmuResponse, url: &str) -> EmuResponse {
    if let Ok(v) = http::HeaderValue::from_str(url) {
        response.headers_mut().insert("OData-EntityId", v);
    }
    response
}
