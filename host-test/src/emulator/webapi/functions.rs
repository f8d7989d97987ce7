//! Unbound functions (`WhoAmI`, …).

use super::Caller;
use crate::emulator::response::{odata_error, odata_json};
use crate::emulator::{EmuRequest, EmuResponse, State};
use serde_json::json;

/// 405 for a method the resource does not support (a function called with
/// POST, an action with GET, …). Message as OData/ASP.NET words it; the hex
/// code is UNCONFIRMED.
pub fn method_not_allowed(request: &EmuRequest) -> EmuResponse {
    odata_error(
        405,
        "0x80060888",
        &format!(
            "The requested resource does not support http method '{}'.",
            request.method()
        ),
    )
}

/// `GET WhoAmI` / `GET WhoAmI()`.
pub fn who_am_i(state: &State, request: &EmuRequest, caller: &Caller) -> EmuResponse {
    if request.method() != http::Method::GET {
        return method_not_allowed(request);
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
