//! Unbound actions (`POST /<ActionName>` with a JSON body of parameters).
//! Only the ones that need no record store: publishing customizations,
//! which real environments accept at any time and answer with 204.

use super::reply::method_not_allowed;
use crate::emulator::response::{no_content, odata_error};
use crate::emulator::{EmuRequest, EmuResponse};
use serde_json::Value;

/// `POST PublishXml` `{"ParameterXml": "<importexportxml>…</importexportxml>"}` → 204.
pub fn publish_xml(request: &EmuRequest) -> EmuResponse {
    if request.method() != http::Method::POST {
        return method_not_allowed(request.method());
    }
    let body: Option<Value> = serde_json::from_slice(request.body()).ok();
    let xml = body
        .as_ref()
        .and_then(|b| b.get("ParameterXml"))
        .and_then(Value::as_str);
    match xml {
        Some(x) if x.trim_start().starts_with("<importexportxml") => no_content(),
        Some(_) => odata_error(
            400,
            "0x80040203",
            "ParameterXml must be an <importexportxml> document.",
        ),
        // Message text UNCONFIRMED; the status and shape follow the wire reference (2.8).
        None => odata_error(
            400,
            "0x80060888",
            "Request message has unresolved parameters.",
        ),
    }
}

/// `POST PublishAllXml` (no parameters) → 204.
pub fn publish_all_xml(request: &EmuRequest) -> EmuResponse {
    if request.method() != http::Method::POST {
        return method_not_allowed(request.method());
    }
    no_content()
}
