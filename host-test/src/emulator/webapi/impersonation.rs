//! Impersonation (reference §2.9): `CallerObjectId: <Entra object id>`
//! (preferred) or `MSCRMCallerID: <systemuserid>` (legacy) make a request
//! act as that user. WhoAmI answers with the impersonated user; writes get
//! `createdby`/`modifiedby` = the impersonated user and
//! `createdonbehalfby`/`modifiedonbehalfby` = the real caller.
//!
//! UNCONFIRMED (not in the reference): when both headers are sent,
//! `CallerObjectId` wins; an impersonated user who is not in the
//! organization gets `403` with `0x80072560` ("not a member of the
//! organization", the code WhoAmI uses for the same situation); a header
//! that is not a GUID gets `400`. Every caller may impersonate (the
//! emulator does not model the prvActOnBehalfOfAnotherUser privilege).

use super::caller::Caller;
use crate::emulator::response::odata_error;
use crate::emulator::store::Changes;
use crate::emulator::store::schema::EntityDef;
use crate::emulator::{EmuRequest, EmuResponse, State};

/// The user a request acts as: `None` without impersonation headers.
pub fn effective_user(state: &State, request: &EmuRequest) -> Result<Option<String>, EmuResponse> {
    let header = |name: &str| super::reply::header(request, name).filter(|v| !v.is_empty());
    let (name, value, by_object_id) = match (header("CallerObjectId"), header("MSCRMCallerID")) {
        (Some(v), _) => ("CallerObjectId", v, true),
        (None, Some(v)) => ("MSCRMCallerID", v, false),
        (None, None) => return Ok(None),
    };
    let Some(id) = crate::emulator::store::normalize_guid(value) else {
        return Err(odata_error(
            400,
            "0x80040203",
            &format!("The {name} header value '{value}' is not a valid GUID."),
        ));
    };
    let user = state.directory.users.iter().find(|u| {
        if by_object_id {
            u.entra_object_id.eq_ignore_ascii_case(&id)
        } else {
            u.id.eq_ignore_ascii_case(&id)
        }
    });
    match user {
        Some(u) => Ok(Some(u.id.to_string())),
        None => Err(odata_error(
            403,
            "0x80072560",
            &format!(
                "The user with {} = {id} is not a member of the organization, so the request cannot act on their behalf.",
                if by_object_id {
                    "azureactivedirectoryobjectid"
                } else {
                    "systemuserid"
                }
            ),
        )),
    }
}

/// Adds `createdonbehalfby` (on create) and `modifiedonbehalfby` = the real
/// caller to a write made under impersonation.
pub fn stamp(changes: &mut Changes, entity: &EntityDef, caller: &Caller, creating: bool) {
    let Some(real) = &caller.on_behalf_of else {
        return;
    };
    let mut columns = vec!["modifiedonbehalfby"];
    if creating {
        columns.push("createdonbehalfby");
    }
    for column in columns {
        if entity.attribute(column).is_some() {
            changes.lookups.insert(
                column.to_string(),
                Some(("systemuser".to_string(), real.clone())),
            );
        }
    }
}
