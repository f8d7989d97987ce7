//! Unbound functions (`WhoAmI`, …).

use super::caller::Caller;
use super::reply::method_not_allowed;
use crate::emulator::response::{odata_error, odata_json};
use crate::emulator::{EmuRequest, EmuResponse, State};
use serde_json::json;

/// `GET WhoAmI` / `GET WhoAmI()`.
pub fn who_am_i(state: &State, request: &EmuRequest, caller: &Caller) -> EmuResponse {
    if request.method() != http::Method::GET {
        return method_not_allowed(request.method());
    }
    let Some(user) = state.directory.user(&caller.user_id) else {
        return odata_error(
            401,
            "0x80072560",
            "The user is not a member of the organization.",
        );
    };
    odata_json(
        200,
        &json!({
            "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", caller.service_root),
            "BusinessUnitId": user.business_unit,
            "UserId": user.id,
            "OrganizationId": state.directory.organization_id,
        }),
    )
}
