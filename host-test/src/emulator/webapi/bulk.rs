//! The bulk operation messages bound to an entity set:
//! `POST /{set}/Microsoft.Dynamics.CRM.CreateMultiple`, `UpdateMultiple` and
//! `UpsertMultiple`, each with `{"Targets": [{"@odata.type":
//! "Microsoft.Dynamics.CRM.<logicalname>", …}]}`.
//!
//! Every target runs through the ordinary record endpoints (same
//! validation, lookups and errors). On standard tables the operation is
//! all or nothing: the first failing target rolls every earlier one back
//! and its error answers for the whole request.
//!
//! Answers: CreateMultiple → 200 `{"@odata.context": …CreateMultipleResponse,
//! "Ids": […]}`; UpdateMultiple → 204; UpsertMultiple → 200 with `Ids`
//! like CreateMultiple. UNCONFIRMED: the exact UpsertMultiple body shape
//! (the SDK names `Results` of `UpsertResponse`; the Web API answer is
//! modelled with `Ids`), and the code/message for a missing or mismatched
//! `@odata.type` and for an update target without its primary key.

use super::caller::Caller;
use super::records;
use super::reply::{error, method_not_allowed, segment_not_found};
use crate::emulator::response::{no_content, odata_error, odata_json};
use crate::emulator::store::schema::EntityDef;
use crate::emulator::{EmuRequest, EmuResponse, State};
use bytes::Bytes;
use serde_json::{Value, json};

const NAMESPACE: &str = "Microsoft.Dynamics.CRM.";

/// The three bulk messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    Create,
    Update,
    Upsert,
}

/// Answers `<set>/Microsoft.Dynamics.CRM.<bulk message>` for an entity
/// set of the schema; `None` for any other resource.
pub fn route(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    resource: &str,
) -> Option<EmuResponse> {
    let (set, segment) = resource.split_once('/')?;
    if set.contains('(') {
        return None;
    }
    let msg = message(segment)?;
    let entity = state.store.schema().by_entity_set(set)?.clone();
    Some(handle(state, request, caller, &entity, msg))
}

fn message(segment: &str) -> Option<Message> {
    match segment.strip_prefix(NAMESPACE)? {
        "CreateMultiple" => Some(Message::Create),
        "UpdateMultiple" => Some(Message::Update),
        "UpsertMultiple" => Some(Message::Upsert),
        _ => None,
    }
}

fn handle(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    msg: Message,
) -> EmuResponse {
    if request.method() != http::Method::POST {
        return method_not_allowed(request.method());
    }
    let body: Option<Value> = serde_json::from_slice(request.body()).ok();
    let Some(targets) = body
        .as_ref()
        .and_then(|b| b.get("Targets"))
        .and_then(Value::as_array)
    else {
        return odata_error(
            400,
            "0x80060888",
            "Request message has unresolved parameters.",
        );
    };
    let expected_type = format!("{NAMESPACE}{}", entity.logical_name);
    let snapshot = state.snapshot();
    let mut ids = Vec::with_capacity(targets.len());
    for target in targets {
        match run_target(state, request, caller, entity, msg, &expected_type, target) {
            Ok(id) => ids.push(id),
            Err(response) => {
                state.restore(snapshot);
                return response;
            }
        }
    }
    match msg {
        Message::Update => no_content(),
        Message::Create | Message::Upsert => {
            let name = match msg {
                Message::Upsert => "UpsertMultipleResponse",
                _ => "CreateMultipleResponse",
            };
            odata_json(
                200,
                &json!({
                    "@odata.context": format!("{}$metadata#{NAMESPACE}{name}", caller.service_root),
                    "Ids": ids,
                }),
            )
        }
    }
}

/// Runs one target through the record endpoint; the record's id, or the
/// error response.
fn run_target(
    state: &mut State,
    outer: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    msg: Message,
    expected_type: &str,
    target: &Value,
) -> Result<String, EmuResponse> {
    let Some(fields) = target.as_object() else {
        return Err(odata_error(
            400,
            "0x80048d19",
            "Error in JSON payload: each target must be an object.",
        ));
    };
    let odata_type = fields
        .get("@odata.type")
        .and_then(Value::as_str)
        .map(|t| t.trim_start_matches('#'));
    if odata_type != Some(expected_type) {
        return Err(odata_error(
            400,
            "0x80048d19",
            &format!(
                "Each target must carry \"@odata.type\": \"{expected_type}\" (found {}).",
                odata_type.unwrap_or("none")
            ),
        ));
    }
    let mut body = fields.clone();
    body.remove("@odata.type");
    let id = body
        .get(entity.primary_id.as_str())
        .and_then(Value::as_str)
        .map(str::to_string);
    let set = entity.entity_set_name;
    let (method, resource, if_match) = match (msg, &id) {
        (Message::Create, _) => (http::Method::POST, set.to_string(), false),
        (Message::Update, Some(id)) => (http::Method::PATCH, format!("{set}({id})"), true),
        (Message::Upsert, Some(id)) => (http::Method::PATCH, format!("{set}({id})"), false),
        (Message::Update, None) => {
            return Err(odata_error(
                400,
                "0x80040203",
                &format!(
                    "Each UpdateMultiple target needs its primary key '{}'.",
                    entity.primary_id
                ),
            ));
        }
        (Message::Upsert, None) => (http::Method::POST, set.to_string(), false),
    };
    let path = format!("/api/data/v9.2/{resource}");
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path.as_str())
        .header("Content-Type", "application/json");
    if if_match {
        builder = builder.header("If-Match", "*");
    }
    for name in ["authorization", "host"] {
        if let Some(v) = outer.headers().get(name) {
            builder = builder.header(name, v.clone());
        }
    }
    let inner = builder
        .body(Bytes::from(Value::Object(body).to_string()))
        .map_err(|e| odata_error(400, "0x0", &format!("The target is not valid: {e}.")))?;
    let response = records::handle(state, &inner, caller, &resource)
        .unwrap_or_else(|| error(segment_not_found(set)));
    if !response.status().is_success() {
        return Err(response);
    }
    response
        .headers()
        .get("OData-EntityId")
        .and_then(|v| v.to_str().ok())
        .and_then(|url| {
            url.rsplit_once('(')
                .map(|(_, k)| k.trim_end_matches(')').to_string())
        })
        .or(id)
        .ok_or_else(|| odata_error(500, "0x0", "The record written has no id."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::{Config, Emulator, data, identity};

    /// A client-credentials bearer token from the emulator's own endpoint.
    async fn token(emu: &Emulator) -> String {
        let body = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope=http%3A%2F%2Flocalhost%2F.default",
            identity::CLIENT_CREDENTIALS_APP_ID,
            identity::CLIENT_CREDENTIALS_SECRET
        );
        let req = http::Request::post(format!("/{}/oauth2/v2.0/token", data::TENANT_ID))
            .header("Host", "localhost")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(Bytes::from(body))
            .unwrap();
        let res = emu.handle(req).await;
        let v: Value = serde_json::from_slice(res.body()).unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    async fn post(emu: &Emulator, token: &str, url: &str, body: Value) -> (u16, Value) {
        let req = http::Request::post(url)
            .header("Host", "localhost")
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .body(Bytes::from(body.to_string()))
            .unwrap();
        let res = emu.handle(req).await;
        let json = serde_json::from_slice(res.body()).unwrap_or(Value::Null);
        (res.status().as_u16(), json)
    }

    const CREATE: &str = "/api/data/v9.2/accounts/Microsoft.Dynamics.CRM.CreateMultiple";
    const UPDATE: &str = "/api/data/v9.2/accounts/Microsoft.Dynamics.CRM.UpdateMultiple";
    const UPSERT: &str = "/api/data/v9.2/accounts/Microsoft.Dynamics.CRM.UpsertMultiple";
    const T: &str = "Microsoft.Dynamics.CRM.account";

    #[tokio::test]
    async fn create_multiple_answers_ids_in_order_and_is_all_or_nothing() {
        let emu = Emulator::new(Config::default());
        let token = token(&emu).await;
        let before = emu.state().store.count("account");
        let (status, body) = post(
            &emu,
            &token,
            CREATE,
            json!({"Targets": [{"@odata.type": T, "name": "B1"}, {"@odata.type": T, "name": "B2"}]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["@odata.context"]
                .as_str()
                .unwrap()
                .ends_with("$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse")
        );
        let ids = body["Ids"].as_array().unwrap();
        assert_eq!(ids.len(), 2);
        {
            let state = emu.state();
            for (id, name) in ids.iter().zip(["B1", "B2"]) {
                let r = state.store.get("account", id.as_str().unwrap()).unwrap();
                assert_eq!(r.get("name"), &json!(name));
            }
        }
        // The second target fails: the first is rolled back.
        let (status, body) = post(
            &emu,
            &token,
            CREATE,
            json!({"Targets": [{"@odata.type": T, "name": "B3"}, {"@odata.type": T, "nosuch": 1}]}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("nosuch")
        );
        assert_eq!(emu.state().store.count("account"), before + 2);
    }

    #[tokio::test]
    async fn targets_need_their_type_and_updates_their_key() {
        let emu = Emulator::new(Config::default());
        let token = token(&emu).await;
        let (status, _) = post(&emu, &token, CREATE, json!({"Targets": [{"name": "x"}]})).await;
        assert_eq!(status, 400, "@odata.type is required");
        let (status, _) = post(
            &emu,
            &token,
            CREATE,
            json!({"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.contact", "name": "x"}]}),
        )
        .await;
        assert_eq!(status, 400, "the type must be the set's");
        let (status, _) = post(
            &emu,
            &token,
            UPDATE,
            json!({"Targets": [{"@odata.type": T, "name": "x"}]}),
        )
        .await;
        assert_eq!(status, 400, "update needs the primary key");
        let (status, body) = post(&emu, &token, CREATE, json!({})).await;
        assert_eq!(status, 400, "{body}");
    }

    #[tokio::test]
    async fn update_and_upsert_multiple() {
        let emu = Emulator::new(Config::default());
        let token = token(&emu).await;
        let a1 = crate::emulator::store::seed::account_id(1);
        let missing = "0badbad0-0000-4000-8000-000000000000";
        let (status, _) = post(
            &emu,
            &token,
            UPDATE,
            json!({"Targets": [{"@odata.type": T, "accountid": a1, "name": "U1"}]}),
        )
        .await;
        assert_eq!(status, 204);
        let (status, body) = post(
            &emu,
            &token,
            UPDATE,
            json!({"Targets": [{"@odata.type": T, "accountid": missing, "name": "U2"}]}),
        )
        .await;
        assert_eq!(status, 404, "update never creates: {body}");
        let (status, body) = post(
            &emu,
            &token,
            UPSERT,
            json!({"Targets": [
                {"@odata.type": T, "accountid": a1, "name": "P1"},
                {"@odata.type": T, "accountid": missing, "name": "P2"}
            ]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["Ids"], json!([a1, missing]));
        let state = emu.state();
        assert_eq!(
            state.store.get("account", &a1).unwrap().get("name"),
            &json!("P1")
        );
        assert_eq!(
            state.store.get("account", missing).unwrap().get("name"),
            &json!("P2")
        );
    }
}
