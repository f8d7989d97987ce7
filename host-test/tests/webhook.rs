//! The webhook trigger through the real component: key checks, body
//! parsing and flattening, the `d365 trigger webhook` CLI, and the
//! emulator's webhook delivery reaching the trigger.

mod common;

use common::host;
use host_test::emulator::webhooks::{Message, Mode, StepRegistration, WebhookAuth, Write};
use host_test::emulator::{Config, Emulator, data};
use host_test::host::{IncomingWebhook, WebhookEvent, WebhookRejection};
use host_test::trigger::{self as listener, Delivery};
use serde_json::{Map, Value, json};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const KEY: &str = "k3y-Wh/+=x";
const RECORD: &str = "0d6f0000-0000-0000-0000-000000000001";

fn keyed() -> String {
    json!({"webhookKey": KEY}).to_string()
}

fn encoded(key: &str) -> String {
    url::form_urlencoded::byte_serialize(key.as_bytes()).collect()
}

/// A RemoteExecutionContext as §8.3 of the wire reference shows it, with
/// the typed values the trigger must flatten.
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
                    {"key": "contactid", "value": RECORD},
                    {"key": "modifiedon", "value": "/Date(1735689600000)/"},
                    {"key": "lastusedincampaign", "value": "/Date(1735693200000+0100)/"},
                    {"key": "modifiedby", "value": {"__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts",
                        "Id": "5e6f7a8b-bbbb-ef11-8eef-000d3a5b1c2d", "KeyAttributes": [], "LogicalName": "systemuser", "Name": null, "RowVersion": null}},
                    {"key": "preferredcontactmethodcode", "value": {"__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 2}},
                    {"key": "creditlimit", "value": {"__type": "Money:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 2500.75}}
                ],
                "EntityState": null, "FormattedValues": [], "Id": RECORD,
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
        "PostEntityImages": [],
        "PreEntityImages": [
            {"key": "PreImage", "value": {"__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
                "Attributes": [{"key": "firstname", "value": "Anna"},
                    {"key": "creditlimit", "value": {"__type": "Money:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 1000}}],
                "EntityState": null, "FormattedValues": [], "Id": RECORD, "KeyAttributes": [],
                "LogicalName": "contact", "RelatedEntities": [], "RowVersion": null}}
        ],
        "PrimaryEntityId": RECORD,
        "PrimaryEntityName": "contact",
        "RequestId": null,
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": 40,
        "UserId": "5e6f7a8b-bbbb-ef11-8eef-000d3a5b1c2d"
    })
}

fn request(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> IncomingWebhook {
    let mut all = vec![
        ("content-type".to_string(), "application/json".to_string()),
        (
            "x-ms-dynamics-organization".to_string(),
            "contoso.crm.dynamics.com".to_string(),
        ),
        (
            "x-ms-dynamics-entity-name".to_string(),
            "contact".to_string(),
        ),
        (
            "x-ms-dynamics-request-name".to_string(),
            "Update".to_string(),
        ),
        (
            "x-ms-correlation-request-id".to_string(),
            "e4d1c0b2-7777-4c1e-9a0a-5b5b5b5b5b5b".to_string(),
        ),
    ];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    IncomingWebhook {
        method: "POST".into(),
        url: url.into(),
        headers: all,
        body,
    }
}

async fn run(req: &IncomingWebhook, inputs: &str) -> Result<WebhookEvent, WebhookRejection> {
    host().webhook(req, inputs).await.expect("no trap")
}

fn rejected(result: Result<WebhookEvent, WebhookRejection>) -> WebhookRejection {
    match result {
        Ok(e) => panic!("accepted unexpectedly: {}", e.payload),
        Err(r) => r,
    }
}

#[tokio::test]
async fn valid_key_gives_the_event_with_the_flattened_target() {
    let url = format!("/api/dataverse?code={}", encoded(KEY));
    let req = request(&url, &[], context().to_string().into_bytes());
    let event = match run(&req, &keyed()).await {
        Ok(e) => e,
        Err(r) => panic!("rejected: {} {}", r.status, r.reason),
    };
    assert!(event.authenticated);
    assert_eq!(event.message_name, "Update");
    assert_eq!(event.primary_entity_name, "contact");
    assert_eq!(event.primary_entity_id, RECORD);
    let p: Value = serde_json::from_str(&event.payload).unwrap();
    assert_eq!(
        p["Target"],
        json!({
            "firstname": "Ana",
            "contactid": RECORD,
            "modifiedon": "2025-01-01T00:00:00Z",
            "lastusedincampaign": "2025-01-01T01:00:00Z",
            "modifiedby": {"id": "5e6f7a8b-bbbb-ef11-8eef-000d3a5b1c2d", "logicalName": "systemuser", "name": null},
            "preferredcontactmethodcode": 2,
            "creditlimit": 2500.75
        })
    );
    assert_eq!(
        p["PreEntityImages"],
        json!({"PreImage": {"firstname": "Anna", "creditlimit": 1000}})
    );
    assert_eq!(p["PostEntityImages"], json!({}));
    for (k, want) in [
        ("MessageName", json!("Update")),
        ("PrimaryEntityName", json!("contact")),
        ("PrimaryEntityId", json!(RECORD)),
        ("Stage", json!(40)),
        ("Depth", json!(1)),
        ("Mode", json!(1)),
        ("UserId", json!("5e6f7a8b-bbbb-ef11-8eef-000d3a5b1c2d")),
        (
            "InitiatingUserId",
            json!("5e6f7a8b-bbbb-ef11-8eef-000d3a5b1c2d"),
        ),
        (
            "OrganizationId",
            json!("9c0d1e2f-cccc-4d5e-8f90-a1b2c3d4e5f6"),
        ),
        ("OrganizationName", json!("contoso")),
        (
            "BusinessUnitId",
            json!("1b2c3d4e-aaaa-ef11-8eef-000d3a5b1c2d"),
        ),
        (
            "CorrelationId",
            json!("e4d1c0b2-7777-4c1e-9a0a-5b5b5b5b5b5b"),
        ),
        ("RequestId", Value::Null),
        ("OperationId", json!("7a7a7a7a-1234-ef11-8eef-000d3a5b1c2d")),
        ("OperationCreatedOn", json!("2025-01-01T00:00:00Z")),
        ("authenticated", json!(true)),
        ("messageSizeExceeded", json!(false)),
    ] {
        assert_eq!(p[k], want, "{k}");
    }
    assert_eq!(
        p["headers"],
        json!({
            "x-ms-dynamics-organization": "contoso.crm.dynamics.com",
            "x-ms-dynamics-entity-name": "contact",
            "x-ms-dynamics-request-name": "Update",
            "x-ms-correlation-request-id": "e4d1c0b2-7777-4c1e-9a0a-5b5b5b5b5b5b"
        })
    );
    assert_eq!(p["context"], context(), "the raw context, unchanged");
    assert!(!event.payload.contains(KEY), "the key is not in the event");
}

#[tokio::test]
async fn without_a_key_the_event_says_unauthenticated() {
    let req = request("/hook", &[], context().to_string().into_bytes());
    let event = run(&req, "{}").await.expect("accepted");
    assert!(!event.authenticated);
    let p: Value = serde_json::from_str(&event.payload).unwrap();
    assert_eq!(p["authenticated"], false);
    assert_eq!(p["Target"]["firstname"], "Ana");
}

#[tokio::test]
async fn wrong_missing_or_header_key_is_401_without_an_event() {
    let body = context().to_string().into_bytes();
    let cases: Vec<(&str, IncomingWebhook)> = vec![
        ("wrong", request("/hook?code=guess", &[], body.clone())),
        ("missing", request("/hook", &[], body.clone())),
        ("empty", request("/hook?code=", &[], body.clone())),
        (
            "in a header",
            request(
                "/hook",
                &[
                    ("x-functions-key", KEY),
                    ("code", KEY),
                    ("Authorization", KEY),
                ],
                body.clone(),
            ),
        ),
        (
            "in another parameter",
            request(&format!("/hook?key={}", encoded(KEY)), &[], body.clone()),
        ),
    ];
    for (case, req) in cases {
        let r = rejected(run(&req, &keyed()).await);
        assert_eq!(r.status, 401, "{case}");
        let b: Value = serde_json::from_str(&r.body).expect("JSON error body");
        assert_eq!(b["error"]["code"], "Unauthorized", "{case}");
        assert!(!r.body.contains(KEY) && !r.reason.contains(KEY), "{case}");
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("content-type")
                    && v.starts_with("application/json")),
            "{case}"
        );
    }
}

#[tokio::test]
async fn malformed_bodies_are_400_with_a_reason() {
    let url = format!("/hook?code={}", encoded(KEY));
    // The same table as the connector's unit test (src/testdata/webhook_bad_bodies.json).
    let cases = d365_connector::trigger::fixtures::bad_bodies(&context());
    for (body, want) in cases {
        let r = rejected(run(&request(&url, &[], body), &keyed()).await);
        assert_eq!(r.status, 400, "{want}");
        assert!(r.reason.contains(&want), "{want}: {}", r.reason);
        let b: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(b["error"]["code"], "BadRequest");
        assert_eq!(b["error"]["message"], r.reason);
    }
}

#[tokio::test]
async fn not_a_post_is_405_and_bad_inputs_are_500() {
    let mut req = request("/hook", &[], context().to_string().into_bytes());
    req.method = "GET".into();
    let r = rejected(run(&req, "{}").await);
    assert_eq!(r.status, 405);
    assert!(r.headers.iter().any(|(k, v)| k == "Allow" && v == "POST"));
    req.method = "POST".into();
    let r = rejected(run(&req, r#"{"webhookKey": ["a"]}"#).await);
    assert_eq!(r.status, 500);
    assert!(r.reason.contains("webhookKey"), "{}", r.reason);
}

// ---- the emulator's webhooks reaching the trigger ----------------------

fn row(v: Value) -> Map<String, Value> {
    serde_json::from_value(v).expect("an object")
}

fn create_write<'a>(attributes: &'a Map<String, Value>) -> Write<'a> {
    Write {
        message: Message::Create,
        entity: "contact",
        record_id: RECORD,
        attributes,
        pre_image: None,
        post_image: Some(attributes),
        user_id: data::USER_ANA,
    }
}

fn new_contact() -> Map<String, Value> {
    row(json!({
        "firstname": "Ana",
        "lastname": "Ruiz",
        "createdon": "2025-01-01T00:00:00Z",
        "_parentcustomerid_value": "00000000-0000-0000-0000-0000000000aa",
        "_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "account",
        "_parentcustomerid_value@OData.Community.Display.V1.FormattedValue": "Contoso",
        "creditlimit": {"__type": "Money:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 100.5}
    }))
}

/// `d365 trigger webhook --listen 0 --key K` as a separate process; the
/// emulator registers a webhook with that key, a Create fires it, the
/// listener prints the event and answers 200. A second endpoint with the
/// wrong key gets 401 and prints nothing on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_webhook_fires_on_create_and_the_cli_listener_accepts_it() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_d365"))
        .args(["trigger", "webhook", "--listen", "0", "--key", KEY])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("d365 starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), stderr.next_line())
        .await
        .expect("the listener starts")
        .unwrap()
        .expect("a line");
    let url = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_string();

    let emulator = Emulator::new(Config::default());
    let good = emulator
        .register_webhook(
            "flow",
            &format!("{url}api/hook"),
            WebhookAuth::WebhookKey(KEY.into()),
        )
        .unwrap();
    let mut step = StepRegistration::new(Message::Create, "contact");
    step.post_image = Some("PostImage".into());
    emulator.register_webhook_step(&good, step).unwrap();
    // Steps for other messages or tables do not fire.
    emulator
        .register_webhook_step(&good, StepRegistration::new(Message::Delete, "contact"))
        .unwrap();
    emulator
        .register_webhook_step(&good, StepRegistration::new(Message::Create, "account"))
        .unwrap();

    let attributes = new_contact();
    let records = emulator.fire_webhooks(&create_write(&attributes)).await;
    assert_eq!(records.len(), 1, "one matching step: {records:#?}");
    assert_eq!(records[0].status, Some(200), "{:?}", records[0].error);
    assert_eq!(records[0].attempts, 1);

    let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .expect("an event line")
        .unwrap()
        .expect("a line");
    let event: Value = serde_json::from_str(&line).expect("each event is one JSON line");
    assert_eq!(event["authenticated"], true);
    assert_eq!(event["MessageName"], "Create");
    assert_eq!(event["PrimaryEntityName"], "contact");
    assert_eq!(event["PrimaryEntityId"], RECORD);
    assert_eq!(event["Stage"], 40);
    assert_eq!(event["Mode"], 1);
    assert_eq!(event["UserId"], data::USER_ANA);
    assert_eq!(event["BusinessUnitId"], data::ROOT_BU);
    assert_eq!(event["OrganizationId"], data::ORGANIZATION_ID);
    assert_eq!(event["OrganizationName"], "contoso");
    assert_eq!(
        event["Target"],
        json!({
            "firstname": "Ana",
            "lastname": "Ruiz",
            "createdon": "2025-01-01T00:00:00Z",
            "parentcustomerid": {"id": "00000000-0000-0000-0000-0000000000aa", "logicalName": "account", "name": "Contoso"},
            "creditlimit": 100.5,
            "contactid": RECORD
        })
    );
    assert_eq!(event["PostEntityImages"]["PostImage"]["lastname"], "Ruiz");
    assert_eq!(event["OutputParameters"]["id"], RECORD);
    assert_eq!(event["headers"]["x-ms-dynamics-request-name"], "Create");
    assert_eq!(event["headers"]["x-ms-dynamics-entity-name"], "contact");
    assert_eq!(
        event["headers"]["x-ms-dynamics-organization"],
        "contoso.crm.dynamics.com"
    );
    assert_eq!(
        event["headers"]["x-ms-correlation-request-id"],
        event["CorrelationId"]
    );
    let created = event["OperationCreatedOn"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() >= 20, "{created}");

    // The same listener, reached with the wrong key: 401, no event.
    let other = Emulator::new(Config::default());
    let bad = other
        .register_webhook("stale", &url, WebhookAuth::WebhookKey("old-key".into()))
        .unwrap();
    other
        .register_webhook_step(&bad, StepRegistration::new(Message::Create, "contact"))
        .unwrap();
    let records = other.fire_webhooks(&create_write(&attributes)).await;
    assert_eq!(records[0].status, Some(401));
    assert!(!records[0].succeeded());
    let logged = tokio::time::timeout(Duration::from_secs(30), stderr.next_line())
        .await
        .expect("the rejection is logged")
        .unwrap()
        .unwrap();
    let logged: Value = serde_json::from_str(&logged).unwrap();
    assert_eq!(logged["status"], 401);
    assert!(!logged.to_string().contains("old-key"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stdout.next_line())
            .await
            .is_err(),
        "no event line for a rejected request"
    );
    child.kill().await.ok();
}

/// The record store's path: a write queues deliveries under the lock, and
/// `Emulator::handle` sends them once it has answered. A synchronous step is
/// delivered before `handle` returns; here an in-test listener hands the
/// request to the trigger export.
#[tokio::test]
async fn queued_synchronous_webhook_is_sent_by_handle_to_an_in_test_listener() {
    let (server, mut deliveries) = listener::listen(host(), 0, keyed()).await.unwrap();
    let emulator = Emulator::new(Config::default());
    let id = emulator
        .register_webhook("sync", &server.url(), WebhookAuth::WebhookKey(KEY.into()))
        .unwrap();
    let mut step = StepRegistration::new(Message::Update, "contact");
    step.mode = Mode::Synchronous;
    step.pre_image = Some("PreImage".into());
    step.filtering_attributes = vec!["lastname".into()];
    emulator.register_webhook_step(&id, step).unwrap();

    let before = row(json!({"firstname": "Ana", "lastname": "Ruiz"}));
    let changes = row(json!({"lastname": "Lima"}));
    let queued = emulator.state().queue_webhooks(&Write {
        message: Message::Update,
        entity: "contact",
        record_id: RECORD,
        attributes: &changes,
        pre_image: Some(&before),
        post_image: None,
        user_id: data::USER_BEN,
    });
    assert_eq!(queued, 1);
    // Any request makes the emulator send what the write queued.
    let request = http::Request::get("http://localhost/nothing-here")
        .body(bytes::Bytes::new())
        .unwrap();
    emulator.handle(request).await;
    let records = emulator.webhook_deliveries();
    assert_eq!(records.len(), 1, "delivered before handle returned");
    assert_eq!(records[0].status, Some(200), "{:?}", records[0].error);
    let Some(Delivery::Event(event)) = deliveries.recv().await else {
        panic!("expected an event");
    };
    assert_eq!(event["MessageName"], "Update");
    assert_eq!(event["Mode"], 0);
    assert_eq!(event["modeName"], "Synchronous");
    assert_eq!(
        event["Target"],
        json!({"lastname": "Lima", "contactid": RECORD})
    );
    assert_eq!(
        event["PreEntityImages"]["PreImage"],
        json!({"firstname": "Ana", "lastname": "Ruiz"})
    );
    assert_eq!(event["BusinessUnitId"], data::SALES_BU);
    assert!(
        event["RequestId"].is_string(),
        "synchronous steps carry a RequestId"
    );
    server.shutdown();
}

/// A webhook registered with HttpHeader authentication sends its key as a
/// header; a trigger configured with a webhookKey refuses it (401), because
/// only `code` counts.
#[tokio::test]
async fn http_header_auth_does_not_satisfy_a_webhook_key() {
    let (server, mut deliveries) = listener::listen(host(), 0, keyed()).await.unwrap();
    let emulator = Emulator::new(Config::default());
    let id = emulator
        .register_webhook(
            "header",
            &server.url(),
            WebhookAuth::HttpHeader(vec![("code".into(), KEY.into())]),
        )
        .unwrap();
    emulator
        .register_webhook_step(&id, StepRegistration::new(Message::Create, "contact"))
        .unwrap();
    let attributes = new_contact();
    let records = emulator.fire_webhooks(&create_write(&attributes)).await;
    assert_eq!(records[0].status, Some(401));
    assert!(records[0].headers.contains(&("code".into(), KEY.into())));
    let Some(Delivery::Rejected(r)) = deliveries.recv().await else {
        panic!("expected a rejection");
    };
    assert_eq!(r["status"], 401);
    server.shutdown();
}

// ---- d365 trigger webhook --request-file -------------------------------

fn d365() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_d365"))
}

#[test]
fn cli_request_file_prints_the_event_or_the_rejection() {
    let dir = std::env::temp_dir().join(format!("d365-webhook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("request.json");
    let request = json!({
        "method": "POST",
        "url": format!("/hook?code={}", encoded(KEY)),
        "headers": {"x-ms-dynamics-request-name": "Update"},
        "body": context(),
    });
    std::fs::write(&file, request.to_string()).unwrap();
    let out = d365()
        .args(["trigger", "webhook", "--key", KEY, "--request-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let event: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(event["Target"]["creditlimit"], 2500.75);
    assert_eq!(event["headers"]["x-ms-dynamics-request-name"], "Update");

    let out = d365()
        .args(["trigger", "webhook", "--key", "another", "--request-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let rejection: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(rejection["status"], 401);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("another"));

    std::fs::write(
        &file,
        json!({"url": "/hook", "body": "{not json"}).to_string(),
    )
    .unwrap();
    let out = d365()
        .args(["trigger", "webhook", "--request-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let rejection: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(rejection["status"], 400);
    std::fs::remove_dir_all(&dir).ok();
}

// ---- delivery semantics (§8.4) ------------------------------------------

/// A receiver that answers with `statuses` in turn (then 200) and counts
/// the requests it got.
async fn scripted_receiver(
    statuses: Vec<u16>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            let statuses = statuses.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |_req: hyper::Request<hyper::body::Incoming>| {
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        let status = statuses.get(n).copied().unwrap_or(200);
                        async move {
                            let mut res = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::new(),
                            ));
                            *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(res)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, hits)
}

#[tokio::test]
async fn gateway_errors_are_retried_once_and_others_are_not() {
    use std::sync::atomic::Ordering;
    let attributes = new_contact();
    for (statuses, want_status, want_attempts) in [
        (vec![503], 200, 2),
        (vec![502, 504], 504, 2),
        (vec![500], 500, 1),
        (vec![404], 404, 1),
    ] {
        let (url, hits) = scripted_receiver(statuses.clone()).await;
        let emulator = Emulator::new(Config::default());
        let id = emulator
            .register_webhook("h", &url, WebhookAuth::WebhookKey(KEY.into()))
            .unwrap();
        emulator
            .register_webhook_step(&id, StepRegistration::new(Message::Create, "contact"))
            .unwrap();
        let records = emulator.fire_webhooks(&create_write(&attributes)).await;
        assert_eq!(records[0].status, Some(want_status), "{statuses:?}");
        assert_eq!(records[0].attempts, want_attempts, "{statuses:?}");
        assert_eq!(hits.load(Ordering::SeqCst), want_attempts as usize);
        assert_eq!(records[0].succeeded(), want_status == 200);
    }
}

/// An asynchronous step queued by a write is sent in the background after
/// `handle` answered, and lands in the delivery log.
#[tokio::test]
async fn queued_asynchronous_webhook_is_delivered_in_the_background() {
    let (server, mut deliveries) = listener::listen(host(), 0, "{}".into()).await.unwrap();
    let emulator = Emulator::new(Config::default());
    let id = emulator
        .register_webhook(
            "async",
            &server.url(),
            WebhookAuth::HttpQueryString(vec![("tenant".into(), "a".into())]),
        )
        .unwrap();
    emulator
        .register_webhook_step(&id, StepRegistration::new(Message::Delete, "contact"))
        .unwrap();
    let before = row(json!({"firstname": "Ana"}));
    let none = Map::new();
    let queued = emulator.state().queue_webhooks(&Write {
        message: Message::Delete,
        entity: "contact",
        record_id: RECORD,
        attributes: &none,
        pre_image: Some(&before),
        post_image: None,
        user_id: data::USER_APP,
    });
    assert_eq!(queued, 1);
    let request = http::Request::get("http://localhost/nothing-here")
        .body(bytes::Bytes::new())
        .unwrap();
    emulator.handle(request).await;
    let Some(Delivery::Event(event)) =
        tokio::time::timeout(Duration::from_secs(30), deliveries.recv())
            .await
            .expect("delivered")
    else {
        panic!("expected an event");
    };
    assert_eq!(event["MessageName"], "Delete");
    assert_eq!(event["authenticated"], false);
    assert_eq!(
        event["Target"],
        json!({"id": RECORD, "logicalName": "contact", "name": null})
    );
    assert_eq!(
        event["PreEntityImages"],
        json!({}),
        "no image was registered"
    );
    // The background task records the outcome after the listener answered.
    let mut records = emulator.webhook_deliveries();
    for _ in 0..100 {
        if !records.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        records = emulator.webhook_deliveries();
    }
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, Some(200));
    server.shutdown();
}
