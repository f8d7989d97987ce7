//! The emulator's webhooks fire on writes made through the Web API (the
//! record store's write path), and the trigger export accepts what they
//! send: a `createEntity` through the component reaches an in-test listener
//! running the webhook trigger, with the Target and images as Dataverse
//! sends them.

mod common;

use common::{Env, host};
use host_test::emulator::webhooks::{Message, Mode, StepRegistration, WebhookAuth};
use host_test::trigger::{self as listener, Delivery};
use serde_json::json;
use std::time::Duration;

const KEY: &str = "wr1te-K3y";

async fn next_event(
    deliveries: &mut tokio::sync::mpsc::UnboundedReceiver<Delivery>,
) -> serde_json::Value {
    match tokio::time::timeout(Duration::from_secs(30), deliveries.recv()).await {
        Ok(Some(Delivery::Event(e))) => e,
        other => panic!("expected an accepted event, got {other:?}"),
    }
}

#[tokio::test]
async fn create_update_and_delete_through_the_component_fire_the_registered_webhook() {
    let (server, mut deliveries) =
        listener::listen(host(), 0, json!({"webhookKey": KEY}).to_string())
            .await
            .unwrap();
    let mut env = Env::new();
    let endpoint = env
        .emulator
        .register_webhook("writes", &server.url(), WebhookAuth::WebhookKey(KEY.into()))
        .unwrap();
    let mut on_create = StepRegistration::new(Message::Create, "account");
    on_create.mode = Mode::Synchronous;
    on_create.post_image = Some("PostImage".into());
    env.emulator
        .register_webhook_step(&endpoint, on_create)
        .unwrap();
    let mut on_update = StepRegistration::new(Message::Update, "account");
    on_update.mode = Mode::Synchronous;
    on_update.pre_image = Some("PreImage".into());
    on_update.filtering_attributes = vec!["name".into()];
    env.emulator
        .register_webhook_step(&endpoint, on_update)
        .unwrap();
    let mut on_delete = StepRegistration::new(Message::Delete, "account");
    on_delete.mode = Mode::Synchronous;
    on_delete.pre_image = Some("PreImage".into());
    env.emulator
        .register_webhook_step(&endpoint, on_delete)
        .unwrap();

    let created = env
        .ok(
            "createEntity",
            &json!({"entityType": "accounts", "fieldValues": {"name": "Hooked Ltd", "accountnumber": "HK-1"}})
                .to_string(),
        )
        .await;
    let id = created["id"].as_str().expect("id").to_string();
    let event = next_event(&mut deliveries).await;
    assert_eq!(event["authenticated"], true);
    assert_eq!(event["MessageName"], "Create");
    assert_eq!(event["PrimaryEntityName"], "account");
    assert_eq!(event["PrimaryEntityId"], id);
    assert_eq!(event["Target"]["name"], "Hooked Ltd");
    assert_eq!(event["Target"]["accountnumber"], "HK-1");
    assert_eq!(event["Target"]["accountid"], id);
    assert!(
        event["Target"].get("revenue").is_none(),
        "only the columns set: {}",
        event["Target"]
    );
    assert_eq!(event["PostEntityImages"]["PostImage"]["name"], "Hooked Ltd");

    // An update of a filtered column fires with the row before it.
    env.ok(
        "updateEntity",
        &json!({"entityType": "accounts", "entityId": id, "fieldValues": {"name": "Renamed Ltd"}})
            .to_string(),
    )
    .await;
    let event = next_event(&mut deliveries).await;
    assert_eq!(event["MessageName"], "Update");
    assert_eq!(event["Target"]["name"], "Renamed Ltd");
    assert_eq!(event["PreEntityImages"]["PreImage"]["name"], "Hooked Ltd");
    // An update of another column does not (filtering attributes).
    env.ok(
        "updateEntity",
        &json!({"entityType": "accounts", "entityId": id, "fieldValues": {"accountnumber": "HK-2"}}).to_string(),
    )
    .await;

    env.ok(
        "deleteEntity",
        &json!({"entityType": "accounts", "entityId": id}).to_string(),
    )
    .await;
    let event = next_event(&mut deliveries).await;
    assert_eq!(event["MessageName"], "Delete");
    assert_eq!(event["PrimaryEntityId"], id);
    assert_eq!(
        event["PreEntityImages"]["PreImage"]["accountnumber"],
        "HK-2"
    );

    let records = env.emulator.webhook_deliveries();
    assert_eq!(records.len(), 3, "create, the filtered update, delete");
    assert!(records.iter().all(|r| r.status == Some(200)), "{records:?}");
    server.shutdown();
}
