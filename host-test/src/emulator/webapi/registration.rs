//! Webhook registration through the Web API, as the Plug-in Registration
//! tool and self-registering triggers do it: `POST serviceendpoints`
//! (contract 8 = Webhook), `POST sdkmessageprocessingsteps` with
//! `sdkmessageid@odata.bind`, `sdkmessagefilterid@odata.bind`,
//! `eventhandler_serviceendpoint@odata.bind` and
//! `impersonatinguserid@odata.bind`, `POST sdkmessageprocessingstepimages`
//! (`sdkmessageprocessingstepid@odata.bind`), and their deletes. The rows
//! live in the record store (`store/schema/sdk.rs`), so queries, `$select`
//! and `$expand` work as for any table; this module adds what the generic
//! handler cannot know:
//! - `serviceendpoint.authvalue` is valid for create and update but not for
//!   read (Learn, serviceendpoint table reference,
//!   https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/serviceendpoint):
//!   it is taken out of the body and kept aside, never returned;
//! - the registration rules ("Register a plug-in",
//!   https://learn.microsoft.com/power-apps/developer/data-platform/register-plug-in,
//!   and the step/image table references): asynchronous only in
//!   post-operation, no pre-image on Create, no post-image on Delete or
//!   before post-operation, the filter must belong to the step's message;
//!   the error codes and wording are UNCONFIRMED;
//! - deletes cascade as the relationships say: `serviceendpoint_sdkmessageprocessingstep`
//!   (Delete: Cascade, serviceendpoint reference) and
//!   `sdkmessageprocessingstepid_sdkmessageprocessingstepimage` (Delete:
//!   Cascade, sdkmessageprocessingstep reference);
//! - `registrations` reads the rows back for delivery.
//!
//! Not emulated: Learn's "Registered WebHooks support only port 80 for
//! HTTP and port 443 for HTTPS" (the emulator's receivers listen on
//! loopback ports); registrations made inside `$batch` skip these checks.

use super::caller::Caller;
use super::records;
use super::registrations::message_name;
use super::reply::error;
use crate::emulator::odata::ODataError;
use crate::emulator::store::normalize_guid;
use crate::emulator::webhooks::CONTRACT_WEBHOOK;
use crate::emulator::{EmuRequest, EmuResponse, State};
use bytes::Bytes;
use serde_json::{Map, Value};

const ENDPOINTS: &str = "serviceendpoints";
const STEPS: &str = "sdkmessageprocessingsteps";
const IMAGES: &str = "sdkmessageprocessingstepimages";

/// Answers the registration requests that need more than the record
/// handler; `None` hands the request on to it unchanged.
pub fn route(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    resource: &str,
) -> Option<EmuResponse> {
    if resource.contains('/') {
        return None;
    }
    let (set, key) = match resource.split_once('(') {
        Some((s, k)) => (s, Some(k.strip_suffix(')').unwrap_or(k))),
        None => (resource, None),
    };
    if ![ENDPOINTS, STEPS, IMAGES].contains(&set) {
        return None;
    }
    let id = key.and_then(normalize_guid);
    let method = request.method().clone();
    match (set, method, id) {
        (ENDPOINTS, http::Method::POST, None) if key.is_none() => {
            Some(write_endpoint(state, request, caller, resource, None))
        }
        (ENDPOINTS, http::Method::PATCH, Some(id)) => {
            Some(write_endpoint(state, request, caller, resource, Some(id)))
        }
        (ENDPOINTS, http::Method::DELETE, Some(id)) => {
            if state.store.get("serviceendpoint", &id).is_some() {
                delete_steps_of(state, &id);
            }
            let answer = records::handle(state, request, caller, resource)?;
            if answer.status().is_success() {
                state.webhooks.auth_values.remove(&id);
            }
            Some(answer)
        }
        (STEPS, http::Method::POST, None) if key.is_none() => {
            check_step(state, request.body()).err().map(error)
        }
        (STEPS, http::Method::DELETE, Some(id)) => {
            if state.store.get("sdkmessageprocessingstep", &id).is_some() {
                delete_images_of(state, &id);
            }
            None
        }
        (IMAGES, http::Method::POST, None) if key.is_none() => {
            check_image(state, request.body()).err().map(error)
        }
        _ => None,
    }
}

fn body_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// The GUID of an `x@odata.bind` value (`/sdkmessages(<id>)`).
fn bound(body: &Map<String, Value>, navigation: &str) -> Option<String> {
    let text = body.get(&format!("{navigation}@odata.bind"))?.as_str()?;
    let inner = text.rsplit_once('(')?.1.strip_suffix(')')?;
    normalize_guid(inner)
}

fn bad(message: &str) -> ODataError {
    // UNCONFIRMED: Dataverse's code and wording for these refusals.
    ODataError::new(400, "0x80040203", message.to_string())
}

/// POST or PATCH of a service endpoint: `authvalue` kept aside.
fn write_endpoint(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    resource: &str,
    id: Option<String>,
) -> EmuResponse {
    let Some(mut body) = body_object(request.body()) else {
        // Not an object: the record handler gives Dataverse's answer.
        return records::handle(state, request, caller, resource).unwrap_or_default();
    };
    let auth_value = match body.remove("authvalue") {
        Some(Value::String(s)) => Some(s),
        Some(Value::Null) | None => None,
        Some(_) => return error(bad("authvalue must be a string.")),
    };
    let contract = body.get("contract").and_then(Value::as_i64);
    if id.is_none() && contract == Some(i64::from(CONTRACT_WEBHOOK)) {
        let url = body.get("url").and_then(Value::as_str).unwrap_or("");
        let ok = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return error(bad(
                "A webhook service endpoint needs an absolute http(s) url.",
            ));
        }
        if auth_value.as_deref().is_none_or(str::is_empty) {
            return error(bad("A webhook service endpoint needs an authvalue."));
        }
    }
    let mut stripped = http::Request::builder()
        .method(request.method().clone())
        .uri(request.uri().clone());
    for (name, value) in request.headers() {
        stripped = stripped.header(name, value);
    }
    let Ok(stripped) = stripped.body(Bytes::from(Value::Object(body).to_string())) else {
        return error(bad("The request could not be read."));
    };
    let Some(answer) = records::handle(state, &stripped, caller, resource) else {
        return EmuResponse::default();
    };
    if answer.status().is_success()
        && let Some(value) = auth_value
    {
        let id = id.or_else(|| {
            let entity_id = answer.headers().get("OData-EntityId")?.to_str().ok()?;
            let inner = entity_id.rsplit_once('(')?.1.strip_suffix(')')?;
            normalize_guid(inner)
        });
        if let Some(id) = id {
            state.webhooks.auth_values.insert(id, value);
        }
    }
    answer
}

/// The registration rules of a new step.
fn check_step(state: &State, body: &[u8]) -> Result<(), ODataError> {
    let Some(body) = body_object(body) else {
        return Ok(()); // the record handler refuses it
    };
    let message =
        bound(&body, "sdkmessageid").ok_or_else(|| bad("A step needs sdkmessageid@odata.bind."))?;
    if bound(&body, "eventhandler_serviceendpoint").is_none() {
        // Plug-in types are not emulated: a step here runs a service endpoint.
        return Err(bad(
            "A step needs eventhandler_serviceendpoint@odata.bind (plug-in types are not emulated).",
        ));
    }
    if let Some(filter) = bound(&body, "sdkmessagefilterid")
        && let Some(row) = state.store.get("sdkmessagefilter", &filter)
        && row.get("sdkmessageid").as_str() != Some(message.as_str())
    {
        return Err(bad(
            "The sdkmessagefilter does not belong to the step's sdkmessage.",
        ));
    }
    let stage = body.get("stage").and_then(Value::as_i64);
    let mode = body.get("mode").and_then(Value::as_i64).unwrap_or(0);
    if !matches!(stage, Some(10 | 20 | 40)) {
        return Err(bad(
            "stage must be 10 (PreValidation), 20 (PreOperation) or 40 (PostOperation).",
        ));
    }
    if mode == 1 && stage != Some(40) {
        return Err(bad(
            "Asynchronous steps are supported only in the PostOperation stage.",
        ));
    }
    Ok(())
}

/// The registration rules of a new step image.
fn check_image(state: &State, body: &[u8]) -> Result<(), ODataError> {
    let Some(body) = body_object(body) else {
        return Ok(());
    };
    let step_id = bound(&body, "sdkmessageprocessingstepid")
        .ok_or_else(|| bad("An image needs sdkmessageprocessingstepid@odata.bind."))?;
    let Some(step) = state.store.get("sdkmessageprocessingstep", &step_id) else {
        return Ok(()); // the bind fails in the record handler
    };
    let message = step
        .get("sdkmessageid")
        .as_str()
        .and_then(|m| message_name(state, m))
        .unwrap_or_default();
    let stage = step.get("stage").as_i64();
    let kind = body.get("imagetype").and_then(Value::as_i64);
    let (pre, post) = match kind {
        Some(0) => (true, false),
        Some(1) => (false, true),
        Some(2) => (true, true),
        _ => {
            return Err(bad(
                "imagetype must be 0 (PreImage), 1 (PostImage) or 2 (Both).",
            ));
        }
    };
    if body
        .get("messagepropertyname")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(bad(
            "An image needs its messagepropertyname (Target, or Id for Create).",
        ));
    }
    if pre && message == "Create" {
        return Err(bad("Create has no pre-image."));
    }
    if post && (message == "Delete" || stage != Some(40)) {
        return Err(bad(
            "Post-images exist only in PostOperation and not for Delete.",
        ));
    }
    Ok(())
}

fn delete_images_of(state: &mut State, step_id: &str) {
    let images: Vec<String> = state
        .store
        .records("sdkmessageprocessingstepimage")
        .filter(|r| r.get("sdkmessageprocessingstepid").as_str() == Some(step_id))
        .map(|r| r.id.clone())
        .collect();
    for id in images {
        let _ = state.store.delete("sdkmessageprocessingstepimage", &id);
    }
}

fn delete_steps_of(state: &mut State, endpoint_id: &str) {
    let steps: Vec<String> = state
        .store
        .records("sdkmessageprocessingstep")
        .filter(|r| r.get("eventhandler").as_str() == Some(endpoint_id))
        .map(|r| r.id.clone())
        .collect();
    for id in steps {
        delete_images_of(state, &id);
        let _ = state.store.delete("sdkmessageprocessingstep", &id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse() {
        let body: Map<String, Value> = serde_json::from_str(
            r#"{"sdkmessageid@odata.bind": "/sdkmessages(0D6F0000-0000-0000-0000-000000000001)"}"#,
        )
        .unwrap();
        assert_eq!(
            bound(&body, "sdkmessageid").as_deref(),
            Some("0d6f0000-0000-0000-0000-000000000001")
        );
        assert_eq!(bound(&body, "sdkmessagefilterid"), None);
    }
}
