//! `getCurrentUser`: the WhoAmI function.

use crate::actions::action::Action;
use crate::catalog::def::ActionDef;
use crate::client::Session;
use crate::error::{ConnectorError, Result};
use crate::http::Method;
use crate::inputs::Inputs;
use crate::page::Output;
use serde_json::{Value, json};

pub const GET_CURRENT_USER: Action = Action {
    def: ActionDef {
        key: "getCurrentUser",
        label: "Get Current User",
        description: "WhoAmI: the calling user's UserId, BusinessUnitId and OrganizationId.",
        deprecated: false,
        input_defs: Vec::new,
    },
    run: |s, i| get_current_user(s, i).map(Output::from),
};

fn get_current_user(session: &mut Session<'_>, _inputs: &Inputs) -> Result<Value> {
    let request = session.request(Method::Get, "WhoAmI")?;
    let body = session.send_json(request)?;
    let field = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ConnectorError::transport(format!("WhoAmI answer lacks {name}")))
    };
    Ok(json!({
        "UserId": field("UserId")?,
        "BusinessUnitId": field("BusinessUnitId")?,
        "OrganizationId": field("OrganizationId")?,
    }))
}
