//! Triggers: the `webhook` trigger, which receives the request a Dataverse
//! webhook service endpoint sends (a serialized `RemoteExecutionContext`) and
//! turns it into a structured event, or into the HTTP answer the host should
//! send instead (401 for a bad key, 400 for a body that is not a context).
//!
//! Everything here is plain Rust over bytes and strings so that it can be unit
//! tested natively and fed arbitrary input: no path from the request to a
//! panic. `glue.rs` only converts the WIT records.
//!
//!
//! Where things live: this module is the trigger (its catalog entry, the key
//! check, the answer to each request); [`context`] decodes the
//! RemoteExecutionContext into the event; [`wcf_date`] reads WCF `/Date(…)/`
//! values; [`subscription`] is the lifecycle (the WIT's `subscribe`,
//! `check`, `unsubscribe`), which registers the endpoint and steps that
//! send those requests. `recordChanges`, the polling trigger, runs as an action
//! (`src/actions/record_changes.rs`, with its design note).

pub mod context;
#[cfg(any(test, feature = "test-fixtures"))]
#[doc(hidden)]
pub mod fixtures;
pub mod subscription;
pub mod wcf_date;

use crate::catalog::def::{InputDef, InputType, TriggerDef, TriggerKind, input};
use crate::inputs::Inputs;
use context::{Context, event_json, printable};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The input that holds the shared secret.
pub const WEBHOOK_KEY: &str = "webhookKey";
/// The subscription inputs (read by [`subscription`]; `handle` reads
/// `filteringAttributes` for `changedAttributes`).
pub const ENTITY_NAME: &str = "entityName";
pub const MESSAGES: &str = "messages";
pub const FILTERING_ATTRIBUTES: &str = "filteringAttributes";
pub const STAGE: &str = "stage";
pub const PRE_IMAGE_ATTRIBUTES: &str = "preImageAttributes";
pub const POST_IMAGE_ATTRIBUTES: &str = "postImageAttributes";
pub const RUN_AS_USER_ID: &str = "runAsUserId";
/// The `stage` choices: post-operation, asynchronous (the default) or
/// synchronous.
pub const STAGE_ASYNC: &str = "postOperationAsync";
pub const STAGE_SYNC: &str = "postOperationSync";

/// The webhook trigger's catalog entry (the catalog lists the polling
/// triggers after it).
pub fn definition() -> TriggerDef {
    TriggerDef {
        key: "webhook",
        label: "Webhook",
        description: "Receives the request a Dataverse webhook service endpoint sends (a RemoteExecutionContext) and emits it as an event: message, table, record id, user, organization, the Target's attributes flattened to plain JSON, pre/post images, the x-ms-dynamics-* headers, a stable eventId and the changedAttributes. Registers itself: subscribe creates the service endpoint and one step per message (with images) through the Web API, unsubscribe removes them.",
        kind: TriggerKind::Webhook,
        inputs: webhook_inputs(),
    }
}

fn webhook_inputs() -> Vec<InputDef> {
    let stage = "When the step runs: after the operation, asynchronously (postOperationAsync, the default: the write does not wait for the webhook) or synchronously (postOperationSync: the write waits, and fails when the webhook does).";
    vec![
        input(
            WEBHOOK_KEY,
            "Webhook Authentication Key",
            InputType::Password,
            "The key of a service endpoint registered with authentication WebhookKey: Dataverse sends it as the `code` query parameter, which must then equal it (compared in constant time) or the request is refused with 401. Empty: every request is accepted and the event says it was unauthenticated (subscribe then refuses a callback URL that is not on loopback). subscribe registers it (at least 16 characters).",
        ),
        input(
            ENTITY_NAME,
            "Table",
            InputType::String,
            "The table's logical name (account, contact, …) whose events subscribe registers.",
        )
        .example(json!("account")),
        input(
            MESSAGES,
            "Messages",
            InputType::List,
            "The messages subscribe registers a step for: Create, Update, Delete, or any other message of the table, such as a custom API or action (When an action is performed).",
        )
        .example(json!(["Create", "Update", "Delete"])),
        input(
            FILTERING_ATTRIBUTES,
            "Filtering Columns",
            InputType::List,
            "Update only: the step fires only when the request sets one of these columns (the step's filteringattributes); the event's changedAttributes lists those whose value changed.",
        )
        .example(json!(["name"])),
        input(STAGE, "Stage", InputType::String, stage)
            .default(json!(STAGE_ASYNC))
            .choices(&[STAGE_ASYNC, STAGE_SYNC]),
        input(
            PRE_IMAGE_ATTRIBUTES,
            "Pre-Image Columns",
            InputType::List,
            "Columns of the row before the operation, registered as the step's PreImage and delivered in the event (Update, Delete).",
        ),
        input(
            POST_IMAGE_ATTRIBUTES,
            "Post-Image Columns",
            InputType::List,
            "Columns of the row after the operation, registered as the step's PostImage and delivered in the event (Create, Update).",
        ),
        input(
            RUN_AS_USER_ID,
            "Run As User",
            InputType::String,
            "The systemuserid the steps impersonate (the step's impersonatinguserid); empty: the calling user.",
        ),
    ]
}

/// An HTTP request as the host received it.
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest {
    pub method: String,
    /// The request target with its query (`/hook?code=…`) or a full URL.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An accepted request.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// False when no key is configured: anyone could have sent it.
    pub authenticated: bool,
    pub message_name: String,
    pub primary_entity_name: String,
    pub primary_entity_id: String,
    /// The whole event as JSON (see [`event_json`]).
    pub payload: Value,
}

/// A refused request: what the host should answer instead of running the
/// flow. `reason` is for the host's log; the body says the same, without
/// secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub reason: String,
}

impl Rejection {
    fn new(status: u16, code: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        let body = json!({"error": {"code": code, "message": reason}}).to_string();
        Rejection {
            status,
            headers: vec![(
                "Content-Type".to_string(),
                "application/json; charset=utf-8".to_string(),
            )],
            body,
            reason,
        }
    }

    fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", reason)
    }
}

/// Runs the `webhook` trigger on one request. `inputs_json` holds the
/// trigger's inputs (`webhookKey`).
///
/// Order matters: the key is checked before anything about the request is
/// looked at, so an unauthenticated caller learns nothing (not even whether
/// its body would parse).
pub fn handle_webhook(
    request: &WebhookRequest,
    inputs_json: &str,
) -> Result<WebhookEvent, Rejection> {
    let def = definition();
    // A misconfigured trigger is the receiver's fault: 500, and the reason
    // names the input (never its value).
    let inputs = Inputs::parse_for(def.key, &def.inputs, inputs_json).map_err(|e| {
        Rejection::new(
            500,
            "TriggerMisconfigured",
            format!("the trigger's inputs are invalid: {}", e.message),
        )
    })?;
    let key = inputs
        .str(WEBHOOK_KEY)
        .map_err(|e| Rejection::new(500, "TriggerMisconfigured", e.message))?
        .filter(|k| !k.is_empty());
    let authenticated = match key {
        Some(key) => {
            check_code(&request.url, key)?;
            true
        }
        None => false,
    };
    if !request.method.eq_ignore_ascii_case("POST") {
        return Err(Rejection::new(
            405,
            "MethodNotAllowed",
            format!(
                "a Dataverse webhook is a POST; got {}",
                printable(&request.method, 16)
            ),
        )
        .with_header("Allow", "POST"));
    }
    let text = std::str::from_utf8(&request.body).map_err(|e| {
        Rejection::bad_request(format!(
            "the body is not UTF-8 text (invalid byte at offset {}); expected a RemoteExecutionContext as JSON",
            e.valid_up_to()
        ))
    })?;
    let raw: Value = serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|e| {
        Rejection::bad_request(format!(
            "the body is not JSON ({e}); expected a RemoteExecutionContext"
        ))
    })?;
    let context = Context::parse(&raw).map_err(Rejection::bad_request)?;
    let headers = dynamics_headers(&request.headers);
    let mut payload = event_json(&context, &raw, headers, authenticated);
    let filtering = inputs
        .list(FILTERING_ATTRIBUTES)
        .map_err(|e| Rejection::new(500, "TriggerMisconfigured", e.message))?;
    context::add_event_id(&mut payload, text);
    context::add_changed_attributes(&mut payload, &filtering);
    Ok(WebhookEvent {
        authenticated,
        message_name: context.message_name.to_string(),
        primary_entity_name: context.primary_entity_name.to_string(),
        primary_entity_id: context.primary_entity_id.to_string(),
        payload,
    })
}

/// Checks the `code` query parameter against the key. Only `code` counts
/// (Dataverse's WebhookKey mode, the Azure Functions convention): a key in a
/// header or any other parameter is not accepted. A repeated `code` is
/// refused rather than guessed at.
fn check_code(url: &str, key: &str) -> Result<(), Rejection> {
    // No WWW-Authenticate: there is no registered scheme for a query-string
    // key, and Azure Functions (the convention Dataverse follows) sends none.
    let unauthorized = |reason: &str| Rejection::new(401, "Unauthorized", reason.to_string());
    let query = query_of(url);
    let mut codes = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name == "code")
        .map(|(_, value)| value);
    let Some(code) = codes.next() else {
        return Err(unauthorized(
            "the request has no `code` query parameter; this webhook requires its key there",
        ));
    };
    if codes.next().is_some() {
        return Err(unauthorized(
            "the request has more than one `code` query parameter",
        ));
    }
    if constant_time_eq(code.as_bytes(), key.as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized(
            "the `code` query parameter does not match the webhook key",
        ))
    }
}

/// The query part of a request target or URL (without the fragment).
fn query_of(url: &str) -> &str {
    let without_fragment = url.split('#').next().unwrap_or("");
    match without_fragment.split_once('?') {
        Some((_, q)) => q,
        None => "",
    }
}

/// Bytes as lower-case hex (event ids, subscription names).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// Compares two secrets in time independent of where they differ and of
/// the length of the secret. Both sides are first hashed with SHA-256, so the
/// loop always runs over 32 bytes whatever the lengths: the only
/// length-dependent work is hashing each input once, which reveals the
/// length of the caller's own guess and nothing about the key (whose hashing
/// cost is the same on every call). No early exit: every byte is folded into
/// the accumulator, and `black_box` keeps the optimiser from turning the
/// fold into a short-circuiting comparison.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(given);
    let b = Sha256::digest(expected);
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= std::hint::black_box(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// The `x-ms-*` headers Dataverse adds, keyed by lower-case name, and
/// whether the payload was stripped for size.
fn dynamics_headers(headers: &[(String, String)]) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if name.starts_with("x-ms-dynamics-") || name == "x-ms-correlation-request-id" {
            out.insert(name, Value::String(value.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::context::flatten;
    use super::*;

    const KEY: &str = "s3cr3t-Key/+=";

    fn context() -> Value {
        json!({
            "BusinessUnitId": "1b2c3d4e-aaaa-ef11-8eef-000d3a5b1c2d",
            "CorrelationId": "e4d1c0b2-7777-4c1e-9a0a-5b5b5b5b5b5b",
            "Depth": 1,
            "InitiatingUserId": "5e6f7a8b-bbbb-ef11-8eef-000d3a5b1c2d",
            "InputParameters": [
                {"key": "Target", "value": {
                    "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
                    "Attributes": [
                        {"key": "firstname", "value": "Ana"},
                        {"key": "contactid", "value": "0d6f0000-0000-0000-0000-000000000001"},
                        {"key": "modifiedon", "value": "/Date(1735689600000)/"},
                        {"key": "birthdate", "value": "/Date(-86400000+0200)/"},
                        {"key": "modifiedby", "value": {"__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts",
                            "Id": "5e6f7a8b-bbbb-ef11-8eef-000d3a5b1c2d", "KeyAttributes": [], "LogicalName": "systemuser", "Name": "Ana Lima", "RowVersion": null}},
                        {"key": "preferredcontactmethodcode", "value": {"__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 2}},
                        {"key": "creditlimit", "value": {"__type": "Money:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 1500.5}},
                        {"key": "donotemail", "value": false},
                        {"key": "numberofchildren", "value": 3},
                        {"key": "parent", "value": {"__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
                            "Attributes": [{"key": "name", "value": "Contoso"}], "Id": "00000000-0000-0000-0000-000000000002", "LogicalName": "account"}}
                    ],
                    "EntityState": null, "FormattedValues": [], "Id": "0d6f0000-0000-0000-0000-000000000001",
                    "KeyAttributes": [], "LogicalName": "contact", "RelatedEntities": [], "RowVersion": null}}
            ],
            "IsExecutingOffline": false, "IsInTransaction": false, "IsOfflinePlayback": false,
            "IsolationMode": 1,
            "MessageName": "Update",
            "Mode": 1,
            "OperationCreatedOn": "/Date(1735689600000-0000)/",
            "OperationId": "7a7a7a7a-1234-ef11-8eef-000d3a5b1c2d",
            "OrganizationId": "9c0d1e2f-cccc-4d5e-8f90-a1b2c3d4e5f6",
            "OrganizationName": "contoso",
            "OutputParameters": [],
            "OwningExtension": {"Id": "3c3c3c3c-5678-ef11-8eef-000d3a5b1c2d", "KeyAttributes": [], "LogicalName": "sdkmessageprocessingstep", "Name": null, "RowVersion": null},
            "ParentContext": null,
            "PostEntityImages": [
                {"key": "PostImage", "value": {"__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
                    "Attributes": [{"key": "firstname", "value": "Ana"}, {"key": "lastname", "value": "Lima"}],
                    "Id": "0d6f0000-0000-0000-0000-000000000001", "LogicalName": "contact"}}
            ],
            "PreEntityImages": [
                {"key": "PreImage", "value": {"__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
                    "Attributes": [{"key": "firstname", "value": "Anna"}],
                    "Id": "0d6f0000-0000-0000-0000-000000000001", "LogicalName": "contact"}}
            ],
            "PrimaryEntityId": "0d6f0000-0000-0000-0000-000000000001",
            "PrimaryEntityName": "contact",
            "RequestId": null,
            "SecondaryEntityName": "none",
            "SharedVariables": [],
            "Stage": 40,
            "UserId": "5e6f7a8b-bbbb-ef11-8eef-000d3a5b1c2d"
        })
    }

    fn request(url: &str, body: &[u8]) -> WebhookRequest {
        WebhookRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![
                (
                    "X-MS-Dynamics-Organization".into(),
                    "contoso.crm.dynamics.com".into(),
                ),
                ("x-ms-dynamics-entity-name".into(), "contact".into()),
                ("x-ms-dynamics-request-name".into(), "Update".into()),
                (
                    "x-ms-correlation-request-id".into(),
                    "e4d1c0b2-7777-4c1e-9a0a-5b5b5b5b5b5b".into(),
                ),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: body.to_vec(),
        }
    }

    fn keyed() -> String {
        json!({ WEBHOOK_KEY: KEY }).to_string()
    }

    fn encoded_key() -> String {
        url::form_urlencoded::byte_serialize(KEY.as_bytes()).collect()
    }

    #[test]
    fn valid_code_gives_the_flattened_event() {
        let body = context().to_string();
        let url = format!("/api/hook?x=1&code={}", encoded_key());
        let event = handle_webhook(&request(&url, body.as_bytes()), &keyed()).unwrap();
        assert!(event.authenticated);
        assert_eq!(event.message_name, "Update");
        assert_eq!(event.primary_entity_name, "contact");
        assert_eq!(
            event.primary_entity_id,
            "0d6f0000-0000-0000-0000-000000000001"
        );
        let p = &event.payload;
        assert_eq!(p["Stage"], 40);
        assert_eq!(p["stageName"], "PostOperation");
        assert_eq!(p["modeName"], "Asynchronous");
        assert_eq!(p["OperationCreatedOn"], "2025-01-01T00:00:00Z");
        assert_eq!(p["OrganizationName"], "contoso");
        assert_eq!(p["RequestId"], Value::Null);
        assert_eq!(
            p["Target"],
            json!({
                "firstname": "Ana",
                "contactid": "0d6f0000-0000-0000-0000-000000000001",
                "modifiedon": "2025-01-01T00:00:00Z",
                "birthdate": "1969-12-31T00:00:00Z",
                "modifiedby": {"id": "5e6f7a8b-bbbb-ef11-8eef-000d3a5b1c2d", "logicalName": "systemuser", "name": "Ana Lima"},
                "preferredcontactmethodcode": 2,
                "creditlimit": 1500.5,
                "donotemail": false,
                "numberofchildren": 3,
                "parent": {"name": "Contoso"}
            })
        );
        assert_eq!(
            p["PreEntityImages"]["PreImage"],
            json!({"firstname": "Anna"})
        );
        assert_eq!(p["PostEntityImages"]["PostImage"]["lastname"], "Lima");
        assert_eq!(
            p["headers"]["x-ms-dynamics-organization"],
            "contoso.crm.dynamics.com"
        );
        assert_eq!(p["headers"]["x-ms-dynamics-request-name"], "Update");
        assert!(p["headers"].get("content-type").is_none());
        assert_eq!(p["messageSizeExceeded"], false);
        assert_eq!(p["context"], context());
    }

    #[test]
    fn event_ids_are_stable_per_event_and_changed_columns_come_from_the_images() {
        let body = context().to_string();
        let inputs = |filtering: Value| json!({"filteringAttributes": filtering}).to_string();
        let first = handle_webhook(
            &request("/h", body.as_bytes()),
            &inputs(json!(["firstname", "lastname", "donotemail"])),
        )
        .unwrap();
        let again = handle_webhook(&request("/h?retry=1", body.as_bytes()), "{}").unwrap();
        let id = first.payload["eventId"].as_str().unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(
            first.payload["eventId"], again.payload["eventId"],
            "a retried delivery"
        );
        let mut other = context();
        other["OperationId"] = json!("7a7a7a7a-1234-ef11-8eef-000d3a5b1c2e");
        let other = handle_webhook(&request("/h", other.to_string().as_bytes()), "{}").unwrap();
        assert_ne!(other.payload["eventId"], first.payload["eventId"]);
        let mut deeper = context();
        deeper["Depth"] = json!(2);
        let deeper = handle_webhook(&request("/h", deeper.to_string().as_bytes()), "{}").unwrap();
        assert_ne!(deeper.payload["eventId"], first.payload["eventId"]);
        // Pre-image firstname Anna, post-image Ana; lastname only after;
        // donotemail in neither image: unchanged.
        assert_eq!(
            first.payload["changedAttributes"],
            json!(["firstname", "lastname"])
        );
        // Without filtering columns, the Target's columns are compared.
        let all = again.payload["changedAttributes"]
            .as_array()
            .unwrap()
            .clone();
        assert!(
            all.contains(&json!("firstname")) && !all.contains(&json!("contactid")),
            "{all:?}"
        );
        // A Delete changes nothing; a Create sets the Target's columns.
        let mut delete = context();
        delete["MessageName"] = json!("Delete");
        let delete = handle_webhook(&request("/h", delete.to_string().as_bytes()), "{}").unwrap();
        assert_eq!(delete.payload["changedAttributes"], json!([]));
        let mut create = context();
        create["MessageName"] = json!("Create");
        let create = handle_webhook(&request("/h", create.to_string().as_bytes()), "{}").unwrap();
        assert!(
            create.payload["changedAttributes"]
                .as_array()
                .unwrap()
                .contains(&json!("firstname"))
        );
        // Without ids the body itself identifies the event.
        let mut bare = context();
        bare["OperationId"] = Value::Null;
        bare["CorrelationId"] = Value::Null;
        let a = handle_webhook(&request("/h", bare.to_string().as_bytes()), "{}").unwrap();
        let b = handle_webhook(&request("/h", bare.to_string().as_bytes()), "{}").unwrap();
        assert_eq!(a.payload["eventId"], b.payload["eventId"]);
        assert_ne!(a.payload["eventId"], first.payload["eventId"]);
    }

    #[test]
    fn no_key_accepts_and_says_unauthenticated() {
        let body = context().to_string();
        for inputs in ["{}", "", r#"{"webhookKey": ""}"#, r#"{"webhookKey": null}"#] {
            let event = handle_webhook(&request("/hook", body.as_bytes()), inputs).unwrap();
            assert!(!event.authenticated, "{inputs}");
            assert_eq!(event.payload["authenticated"], false);
        }
    }

    fn status(url: &str, headers: &[(&str, &str)], body: &[u8], inputs: &str) -> u16 {
        let mut req = request(url, body);
        for (k, v) in headers {
            req.headers.push((k.to_string(), v.to_string()));
        }
        match handle_webhook(&req, inputs) {
            Ok(_) => 200,
            Err(r) => {
                assert!(!r.body.contains(KEY), "the key leaks: {}", r.body);
                assert!(!r.reason.contains(KEY));
                r.status
            }
        }
    }

    #[test]
    fn wrong_missing_or_misplaced_key_is_401() {
        let body = context().to_string();
        let b = body.as_bytes();
        let k = keyed();
        assert_eq!(status("/hook?code=nope", &[], b, &k), 401);
        assert_eq!(status("/hook", &[], b, &k), 401);
        assert_eq!(status("/hook?code=", &[], b, &k), 401);
        assert_eq!(
            status(&format!("/hook?Code={}", encoded_key()), &[], b, &k),
            401
        );
        assert_eq!(
            status(&format!("/hook?key={}", encoded_key()), &[], b, &k),
            401
        );
        assert_eq!(
            status("/hook", &[("x-functions-key", KEY), ("code", KEY)], b, &k),
            401
        );
        let twice = format!("/hook?code={0}&code={0}", encoded_key());
        assert_eq!(status(&twice, &[], b, &k), 401);
        // A prefix or an extension of the key is not the key.
        assert_eq!(status("/hook?code=s3cr3t", &[], b, &k), 401);
        let longer = format!("/hook?code={}x", encoded_key());
        assert_eq!(status(&longer, &[], b, &k), 401);
        // The code in the fragment does not count.
        assert_eq!(
            status(&format!("/hook#?code={}", encoded_key()), &[], b, &k),
            401
        );
        // And the right one, as a full URL.
        let ok = format!("https://example.org/hook?code={}", encoded_key());
        assert_eq!(status(&ok, &[], b, &k), 200);
    }

    #[test]
    fn the_key_is_checked_before_the_body() {
        let r = handle_webhook(&request("/hook?code=bad", b"not json"), &keyed()).unwrap_err();
        assert_eq!(r.status, 401);
        assert!(r.reason.contains("does not match"), "{}", r.reason);
    }

    #[test]
    fn malformed_bodies_are_400_with_a_reason() {
        for (body, want) in super::fixtures::bad_bodies(&context()) {
            let r = handle_webhook(&request("/hook", &body), "{}").unwrap_err();
            assert_eq!(r.status, 400, "{want}");
            assert!(r.reason.contains(&want), "{want}: {}", r.reason);
            let v: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(v["error"]["code"], "BadRequest");
            assert_eq!(v["error"]["message"], r.reason);
        }
    }

    #[test]
    fn not_post_is_405_and_bad_inputs_500() {
        let body = context().to_string();
        let mut req = request("/hook", body.as_bytes());
        req.method = "GET".into();
        let r = handle_webhook(&req, "{}").unwrap_err();
        assert_eq!(r.status, 405);
        assert!(r.headers.contains(&("Allow".into(), "POST".into())));
        let r = handle_webhook(&request("/hook", body.as_bytes()), r#"{"webhookkey":"x"}"#)
            .unwrap_err();
        assert_eq!(r.status, 500);
        assert!(r.reason.contains("webhookkey"), "{}", r.reason);
        let r = handle_webhook(
            &request("/hook", body.as_bytes()),
            r#"{"webhookKey":{"a":1}}"#,
        )
        .unwrap_err();
        assert_eq!(r.status, 500);
        assert!(r.reason.contains("webhookKey"));
    }

    #[test]
    fn stripped_payload_is_accepted_and_flagged() {
        let mut c = context();
        let obj = c.as_object_mut().unwrap();
        for k in [
            "InputParameters",
            "PreEntityImages",
            "PostEntityImages",
            "ParentContext",
        ] {
            obj.remove(k);
        }
        let mut req = request("/hook", c.to_string().as_bytes());
        req.headers
            .push(("x-ms-dynamics-msg-size-exceeded".into(), "true".into()));
        let event = handle_webhook(&req, "{}").unwrap();
        assert_eq!(event.payload["messageSizeExceeded"], true);
        assert_eq!(event.payload["Target"], Value::Null);
        assert_eq!(event.payload["PreEntityImages"], json!({}));
    }

    #[test]
    fn delete_target_is_an_entity_reference() {
        let mut c = context();
        c["MessageName"] = json!("Delete");
        c["InputParameters"] = json!([{"key": "Target", "value": {
            "__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts",
            "Id": "0d6f0000-0000-0000-0000-000000000001", "KeyAttributes": [], "LogicalName": "contact", "Name": null, "RowVersion": null}}]);
        let event = handle_webhook(&request("/hook", c.to_string().as_bytes()), "{}").unwrap();
        assert_eq!(
            event.payload["Target"],
            json!({"id": "0d6f0000-0000-0000-0000-000000000001", "logicalName": "contact", "name": null})
        );
    }

    #[test]
    fn typed_values_flatten() {
        let v = json!([
            {"__type": "OptionSetValueCollection:x", "Values": [{"__type": "OptionSetValue:x", "Value": 1}, {"__type": "OptionSetValue:x", "Value": 3}]},
            {"__type": "EntityCollection:x", "Entities": [{"__type": "Entity:x", "Attributes": [{"key": "a", "value": "/Date(0)/"}]}], "EntityName": "x"},
            {"__type": "AliasedValue:x", "AttributeLogicalName": "name", "EntityLogicalName": "account", "Value": "Contoso"},
            {"__type": "BooleanManagedProperty:x", "Value": true, "CanBeChanged": true},
            {"__type": "Something:x", "A": "/Date(0)/"},
            {"plain": {"Attributes": [{"key": "k", "value": 1}, {"bad": 1}]}},
            "/Date(not)/"
        ]);
        assert_eq!(
            flatten(&v),
            json!([
                [1, 3],
                [{"a": "1970-01-01T00:00:00Z"}],
                "Contoso",
                true,
                {"A": "1970-01-01T00:00:00Z"},
                {"plain": {"k": 1}},
                "/Date(not)/"
            ])
        );
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(!constant_time_eq(b"\0", b""));
        let long = vec![7u8; 10_000];
        assert!(constant_time_eq(&long, &long.clone()));
        let mut other = long.clone();
        other[9_999] = 8;
        assert!(!constant_time_eq(&long, &other));
    }

    /// Arbitrary bytes, as a fuzzer would send them: never a panic, and only
    /// the documented statuses. A small xorshift generator keeps the test
    /// deterministic without a dependency.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let valid = context().to_string().into_bytes();
        for round in 0..3000 {
            let body: Vec<u8> = if round % 3 == 0 {
                // Mutations of a valid body reach the shape checks.
                let mut b = valid.clone();
                for _ in 0..(next() % 8 + 1) {
                    let i = (next() as usize) % b.len();
                    match next() % 3 {
                        0 => b[i] = next() as u8,
                        1 => {
                            b.remove(i);
                        }
                        _ => b.insert(i, b"{}[]\":,0/Date(-+"[(next() % 16) as usize]),
                    }
                }
                b
            } else {
                let len = (next() % 200) as usize;
                (0..len).map(|_| next() as u8).collect()
            };
            let url_bytes: Vec<u8> = (0..(next() % 40)).map(|_| next() as u8).collect();
            let url = format!("/h?{}", String::from_utf8_lossy(&url_bytes));
            let inputs = if round % 2 == 0 {
                "{}".to_string()
            } else {
                keyed()
            };
            match handle_webhook(&request(&url, &body), &inputs) {
                Ok(e) => assert!(e.payload.is_object()),
                Err(r) => assert!(matches!(r.status, 400 | 401), "{}", r.status),
            }
        }
        // Deep nesting is refused by the JSON parser, not by the stack.
        let deep = "[".repeat(100_000);
        let r = handle_webhook(&request("/h", deep.as_bytes()), "{}").unwrap_err();
        assert_eq!(r.status, 400);
    }
}
