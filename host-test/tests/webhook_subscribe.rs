//! The webhook trigger registers itself (issue 30): `subscribe`,
//! `check` and `unsubscribe` through the real component, against the
//! emulator served over loopback; the events the emulator then sends reach
//! an in-test listener running the real `handle`.

mod common;

use common::host;
use host_test::cli;
use host_test::emulator::faults::{Faults, Injected, Trigger};
use host_test::emulator::{Emulator, server};
use host_test::host::{Connection, ConnectorError, Route, Subscription, error_json};
use host_test::trigger::{self as listener, Delivery, WebhookListener};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

const KEY: &str = "Subscr1be-K3y/0123456789+=";

/// An emulator served on a loopback port, and a connection to it.
struct Org {
    emulator: Emulator,
    server: server::Server,
    connection: Connection,
}

impl Org {
    async fn new() -> Org {
        let emulator = Emulator::new(Default::default());
        let server = server::serve(emulator.clone(), 0)
            .await
            .expect("the emulator listens");
        let connection = cli::emulator_connection(&server.base_url())
            .connection()
            .expect("a connection");
        Org {
            emulator,
            server,
            connection,
        }
    }

    async fn subscribe(
        &self,
        inputs: &Value,
        callback: &str,
    ) -> Result<Subscription, ConnectorError> {
        host()
            .subscribe(
                &Route::Network,
                &self.connection,
                &inputs.to_string(),
                callback,
            )
            .await
            .expect("no trap")
    }

    async fn unsubscribe(&self, subscription: &Subscription) -> Result<(), ConnectorError> {
        host()
            .unsubscribe(&Route::Network, &self.connection, subscription)
            .await
            .expect("no trap")
    }

    async fn check(&self, subscription: &Subscription) -> bool {
        host()
            .check_subscription(&Route::Network, &self.connection, subscription)
            .await
            .expect("no trap")
            .unwrap_or_else(|e| panic!("check failed: {}", error_json(&e)))
    }

    /// Runs an action through the component over loopback.
    async fn run(&self, action: &str, inputs: Value) -> Value {
        let result = host()
            .invoke(
                &Route::Network,
                action,
                &self.connection,
                &inputs.to_string(),
            )
            .await
            .expect("no trap")
            .unwrap_or_else(|e| panic!("{action} failed: {}", error_json(&e)));
        serde_json::from_str(&result.output).expect("JSON output")
    }

    /// Rows of `table` the connector registered (named `d365-connector …`).
    fn ours(&self, table: &str) -> usize {
        let state = self.emulator.state();
        state
            .store
            .records(table)
            .filter(|r| {
                r.get("name")
                    .as_str()
                    .is_some_and(|n| n.starts_with("d365-connector "))
            })
            .count()
    }

    fn registered(&self) -> (usize, usize, usize) {
        (
            self.ours("serviceendpoint"),
            self.ours("sdkmessageprocessingstep"),
            self.ours("sdkmessageprocessingstepimage"),
        )
    }

    /// Web API writes (anything but GET) the log holds.
    fn writes(&self) -> Vec<String> {
        self.emulator
            .log()
            .into_iter()
            .filter(|r| r.path().starts_with("/api/data/") && r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    }
}

fn account_inputs(stage: &str) -> Value {
    json!({
        "webhookKey": KEY,
        "entityName": "account",
        "messages": ["Create", "Update", "Delete"],
        "filteringAttributes": ["name"],
        "stage": stage,
        "preImageAttributes": ["name", "telephone1"],
        "postImageAttributes": ["name"],
    })
}

async fn listen(inputs: &Value) -> (WebhookListener, UnboundedReceiver<Delivery>) {
    listener::listen(host(), 0, inputs.to_string())
        .await
        .expect("a listener")
}

async fn next_event(deliveries: &mut UnboundedReceiver<Delivery>) -> Value {
    match tokio::time::timeout(Duration::from_secs(30), deliveries.recv()).await {
        Ok(Some(Delivery::Event(e))) => e,
        other => panic!("expected an accepted event, got {other:?}"),
    }
}

fn is_event_id(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit()))
}

#[tokio::test]
async fn subscribe_create_update_delete_gives_three_events_and_unsubscribe_removes_everything() {
    let org = Org::new().await;
    let inputs = account_inputs("postOperationSync");
    let (server, mut deliveries) = listen(&inputs).await;
    let sub = org
        .subscribe(&inputs, &server.url())
        .await
        .unwrap_or_else(|e| panic!("subscribe failed: {}", error_json(&e)));
    assert!(sub.name.starts_with("d365-connector "), "{}", sub.name);
    assert_eq!(sub.callback_url, server.url());
    assert_eq!(sub.step_ids.len(), 3, "one step per message");
    // Create: a post-image; Update: both (with the filtered column);
    // Delete: a pre-image.
    assert_eq!(sub.image_ids.len(), 4);
    assert_eq!(org.registered(), (1, 3, 4));
    let copy: Value = serde_json::from_str(&sub.inputs).unwrap();
    assert_eq!(copy["entityName"], "account");
    assert_eq!(copy["messages"], json!(["Create", "Update", "Delete"]));
    assert!(copy.get("webhookKey").is_none() && !sub.inputs.contains(KEY));
    assert!(org.check(&sub).await);
    // The step's documented columns, as registered through the Web API.
    {
        let state = org.emulator.state();
        let update = state
            .store
            .records("sdkmessageprocessingstep")
            .find(|r| {
                r.get("name")
                    .as_str()
                    .is_some_and(|n| n.contains(": Update of account"))
            })
            .expect("the Update step")
            .clone();
        assert_eq!(update.get("filteringattributes"), &json!("name"));
        assert_eq!(update.get("stage"), &json!(40));
        assert_eq!(update.get("mode"), &json!(0));
        assert_eq!(
            update.get("eventhandler").as_str(),
            Some(sub.endpoint_id.as_str())
        );
    }

    let created = org
        .run(
            "createEntity",
            json!({"entityType": "accounts", "fieldValues": {"name": "Hooked Ltd", "telephone1": "555-0100"}}),
        )
        .await;
    let id = created["id"].as_str().expect("an id").to_string();
    let create = next_event(&mut deliveries).await;
    assert_eq!(create["authenticated"], true, "the key came back as ?code=");
    assert_eq!(create["MessageName"], "Create");
    assert_eq!(create["PrimaryEntityId"], id);
    assert!(is_event_id(&create["eventId"]), "{}", create["eventId"]);
    assert_eq!(
        create["PostEntityImages"]["PostImage"],
        json!({"name": "Hooked Ltd"})
    );
    let changed = create["changedAttributes"].as_array().expect("a list");
    assert!(changed.contains(&json!("name")) && changed.contains(&json!("telephone1")));

    org.run(
        "updateEntity",
        json!({"entityType": "accounts", "entityId": id, "fieldValues": {"name": "Renamed Ltd"}}),
    )
    .await;
    let update = next_event(&mut deliveries).await;
    assert_eq!(update["MessageName"], "Update");
    assert!(is_event_id(&update["eventId"]));
    assert_eq!(update["PreEntityImages"]["PreImage"]["name"], "Hooked Ltd");
    assert_eq!(
        update["PreEntityImages"]["PreImage"]["telephone1"],
        "555-0100"
    );
    assert_eq!(
        update["PostEntityImages"]["PostImage"],
        json!({"name": "Renamed Ltd"})
    );
    assert_eq!(update["changedAttributes"], json!(["name"]));

    // Not a filtering column: no step fires.
    org.run(
        "updateEntity",
        json!({"entityType": "accounts", "entityId": id, "fieldValues": {"telephone1": "555-0199"}}),
    )
    .await;

    org.run(
        "deleteEntity",
        json!({"entityType": "accounts", "entityId": id}),
    )
    .await;
    let delete = next_event(&mut deliveries).await;
    assert_eq!(delete["MessageName"], "Delete");
    assert!(is_event_id(&delete["eventId"]));
    assert_eq!(
        delete["PreEntityImages"]["PreImage"]["telephone1"],
        "555-0199"
    );
    assert_eq!(delete["changedAttributes"], json!([]));
    let ids: std::collections::BTreeSet<_> = [&create, &update, &delete]
        .iter()
        .map(|e| e["eventId"].to_string())
        .collect();
    assert_eq!(ids.len(), 3, "three events, three ids");
    // Synchronous steps are sent before the write's answer: exactly three.
    assert_eq!(org.emulator.webhook_deliveries().len(), 3);
    assert!(deliveries.try_recv().is_err(), "no fourth event");

    org.unsubscribe(&sub)
        .await
        .unwrap_or_else(|e| panic!("unsubscribe failed: {}", error_json(&e)));
    assert_eq!(org.registered(), (0, 0, 0), "nothing of ours is left");
    assert!(!org.check(&sub).await);
    org.run(
        "createEntity",
        json!({"entityType": "accounts", "fieldValues": {"name": "After Ltd"}}),
    )
    .await;
    assert_eq!(
        org.emulator.webhook_deliveries().len(),
        3,
        "nothing more is sent"
    );
    // Already gone is success.
    org.unsubscribe(&sub)
        .await
        .expect("a second unsubscribe is fine");
    server.shutdown();
    org.server.shutdown();
}

#[tokio::test]
async fn an_executed_custom_action_gives_one_event_on_its_subscription() {
    let org = Org::new().await;
    let inputs = json!({
        "webhookKey": KEY,
        "entityName": "account",
        "messages": ["new_setcredithold"],
    });
    let (server, mut deliveries) = listen(&inputs).await;
    let sub = org
        .subscribe(&inputs, &server.url())
        .await
        .unwrap_or_else(|e| panic!("subscribe failed: {}", error_json(&e)));
    assert_eq!(sub.step_ids.len(), 1);
    assert!(sub.image_ids.is_empty());
    let account = host_test::emulator::store::seed::account_id(3);
    org.run(
        "executeAction",
        json!({
            "name": "new_SetCreditHold",
            "kind": "action",
            "boundEntitySet": "accounts",
            "boundId": account,
            "parameters": {"OnHold": true},
        }),
    )
    .await;
    // Asynchronous (the default stage): it arrives after the answer.
    let event = next_event(&mut deliveries).await;
    assert_eq!(event["MessageName"], "new_SetCreditHold");
    assert_eq!(event["PrimaryEntityName"], "account");
    assert_eq!(event["PrimaryEntityId"], account);
    assert_eq!(event["modeName"], "Asynchronous");
    assert_eq!(event["InputParameters"]["OnHold"], true);
    assert_eq!(event["Target"]["id"], account);
    assert!(is_event_id(&event["eventId"]));
    // A plain update of the row is another message: nothing for this one.
    org.run(
        "updateEntity",
        json!({"entityType": "accounts", "entityId": account, "fieldValues": {"name": "Held"}}),
    )
    .await;
    org.unsubscribe(&sub).await.expect("unsubscribed");
    // Every asynchronous delivery is logged when it completes; the one
    // event is all there was.
    for _ in 0..300 {
        if !org.emulator.webhook_deliveries().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(org.emulator.webhook_deliveries().len(), 1);
    assert!(deliveries.try_recv().is_err());
    server.shutdown();
    org.server.shutdown();
}

#[tokio::test]
async fn subscribing_twice_keeps_one_endpoint_and_one_step_per_message() {
    let org = Org::new().await;
    let inputs = account_inputs("postOperationSync");
    let (server, mut deliveries) = listen(&inputs).await;
    let first = org.subscribe(&inputs, &server.url()).await.expect("first");
    let writes = org.writes().len();
    let second = org.subscribe(&inputs, &server.url()).await.expect("second");
    assert_eq!(first.endpoint_id, second.endpoint_id);
    assert_eq!(first.step_ids, second.step_ids);
    // The same images (a reused step's are read back, in the org's order).
    let sorted = |ids: &[String]| {
        let mut v = ids.to_vec();
        v.sort();
        v
    };
    assert_eq!(sorted(&first.image_ids), sorted(&second.image_ids));
    assert_eq!(org.registered(), (1, 3, 4));
    // The second call wrote only the endpoint's key (it may have changed).
    let again: Vec<String> = org.writes().split_off(writes);
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(
        again[0].starts_with("PATCH /api/data/v9.2/serviceendpoints("),
        "{again:?}"
    );

    // The same callback URL with other inputs replaces the steps: Create
    // and Update only now, and never two steps for one event.
    let mut fewer = account_inputs("postOperationSync");
    fewer["messages"] = json!(["Update", "Create"]);
    let third = org.subscribe(&fewer, &server.url()).await.expect("third");
    assert_eq!(third.endpoint_id, first.endpoint_id);
    assert_eq!(org.registered(), (1, 2, 3));
    let created = org
        .run(
            "createEntity",
            json!({"entityType": "accounts", "fieldValues": {"name": "Once"}}),
        )
        .await;
    let event = next_event(&mut deliveries).await;
    assert_eq!(event["MessageName"], "Create");
    org.run(
        "deleteEntity",
        json!({"entityType": "accounts", "entityId": created["id"]}),
    )
    .await;
    assert_eq!(
        org.emulator.webhook_deliveries().len(),
        1,
        "one Create, no Delete"
    );
    org.unsubscribe(&third).await.expect("unsubscribed");
    assert_eq!(org.registered(), (0, 0, 0));
    server.shutdown();
    org.server.shutdown();
}

#[tokio::test]
async fn a_failure_on_the_second_step_leaves_nothing_behind() {
    let org = Org::new().await;
    let inputs = account_inputs("postOperationAsync");
    // The second request on sdkmessageprocessingsteps (the second step's
    // POST) is refused.
    org.emulator.set_faults(
        Faults::default()
            .with_error(Trigger::Nth(2), Injected::Status(403))
            .only_path("sdkmessageprocessingsteps"),
    );
    let e = org
        .subscribe(&inputs, "http://127.0.0.1:9/hook")
        .await
        .expect_err("the injected failure");
    assert_eq!(e.status, Some(403), "{}", error_json(&e));
    assert_eq!(org.emulator.fault_stats().injected, vec![403]);
    assert_eq!(org.registered(), (0, 0, 0), "{:?}", org.writes());
    // One DELETE: the endpoint this call created, which cascades to the
    // first step and its image.
    let deletes: Vec<String> = org
        .writes()
        .into_iter()
        .filter(|w| w.starts_with("DELETE"))
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert!(deletes[0].contains("/serviceendpoints("), "{deletes:?}");
    // Without the fault it works, from scratch.
    org.emulator.set_faults(Faults::default());
    let sub = org
        .subscribe(&inputs, "http://127.0.0.1:9/hook")
        .await
        .expect("subscribed");
    assert_eq!(org.registered(), (1, 3, 4));
    org.unsubscribe(&sub).await.expect("unsubscribed");
    org.server.shutdown();
}

#[tokio::test]
async fn bad_inputs_are_refused_clearly_and_register_nothing() {
    let org = Org::new().await;
    let base = account_inputs("postOperationAsync");
    let with = |k: &str, v: Value| {
        let mut i = base.clone();
        i[k] = v;
        i
    };
    let cases: Vec<(Value, &str, &str, &str)> = vec![
        (
            with("entityName", json!("nosuchtable")),
            "http://127.0.0.1:9/h",
            "entityName",
            "nosuchtable",
        ),
        (
            with("messages", json!(["Update", "Frobnicate"])),
            "http://127.0.0.1:9/h",
            "messages",
            "Frobnicate",
        ),
        (
            with("messages", json!([])),
            "http://127.0.0.1:9/h",
            "messages",
            "at least one",
        ),
        (
            with("messages", json!(["Create"])),
            "http://127.0.0.1:9/h",
            "filteringAttributes",
            "Update only",
        ),
        (
            with("webhookKey", json!("")),
            "https://hooks.example.com/d365",
            "webhookKey",
            "anyone could call",
        ),
        (
            with("webhookKey", json!("short")),
            "http://127.0.0.1:9/h",
            "webhookKey",
            "at least 16",
        ),
        (
            with("stage", json!("preOperation")),
            "http://127.0.0.1:9/h",
            "stage",
            "must be one of",
        ),
        (
            with("runAsUserId", json!("nobody")),
            "http://127.0.0.1:9/h",
            "runAsUserId",
            "GUID",
        ),
        (base.clone(), "ftp://127.0.0.1/h", "callbackUrl", "http(s)"),
        (
            base.clone(),
            "http://127.0.0.1:9/h?code=x",
            "callbackUrl",
            "`code`",
        ),
    ];
    for (inputs, url, input, text) in cases {
        let e = org.subscribe(&inputs, url).await.expect_err(input);
        let json = error_json(&e);
        assert_eq!(json["kind"], "invalid-input", "{json}");
        assert_eq!(json["input"], input, "{json}");
        assert!(e.message.contains(text), "{input}: {}", e.message);
        assert!(!e.message.contains(KEY));
    }
    assert_eq!(org.registered(), (0, 0, 0));
    assert!(
        org.writes().is_empty(),
        "nothing was written: {:?}",
        org.writes()
    );
    // An empty key is allowed on loopback (nothing else can reach it),
    // and the events then say they are unauthenticated.
    let open = with("webhookKey", json!(""));
    let (server, mut deliveries) = listen(&open).await;
    let mut sync = open.clone();
    sync["stage"] = json!("postOperationSync");
    let sub = org
        .subscribe(&sync, &server.url())
        .await
        .expect("loopback, no key");
    org.run(
        "createEntity",
        json!({"entityType": "accounts", "fieldValues": {"name": "Open"}}),
    )
    .await;
    let event = next_event(&mut deliveries).await;
    assert_eq!(event["authenticated"], false);
    org.unsubscribe(&sub).await.expect("unsubscribed");
    server.shutdown();
    org.server.shutdown();
}

#[tokio::test]
async fn the_key_is_in_no_subscription_error_or_readable_row() {
    let org = Org::new().await;
    let inputs = account_inputs("postOperationAsync");
    // A gateway that echoes the request, body and all, on the endpoint's
    // POST: the error quotes it, without the key.
    org.emulator.set_faults(
        Faults::default()
            .with_error(Trigger::Nth(1), Injected::EchoRequest)
            .only_path("serviceendpoints"),
    );
    let e = org
        .subscribe(&inputs, "http://127.0.0.1:9/hook")
        .await
        .expect_err("the echoing gateway");
    let text = error_json(&e).to_string();
    assert!(!text.contains(KEY), "{text}");
    assert!(!org.emulator.fault_stats().injected.is_empty());
    assert_eq!(org.registered(), (0, 0, 0));
    org.emulator.set_faults(Faults::default());
    let sub = org
        .subscribe(&inputs, "http://127.0.0.1:9/hook")
        .await
        .expect("subscribed");
    let record = host_test::host::subscription_json(&sub).to_string();
    assert!(!record.contains(KEY), "{record}");
    assert!(!sub.inputs.contains(KEY));
    // authvalue is write-only: reading the endpoint back never shows it.
    let row = org
        .run(
            "getEntity",
            json!({"entityType": "serviceendpoints", "entityId": sub.endpoint_id}),
        )
        .await;
    assert_eq!(row["authtype"], 4, "WebhookKey: {row}");
    assert_eq!(row["contract"], 8);
    assert!(!row.to_string().contains(KEY), "{row}");
    org.unsubscribe(&sub).await.expect("unsubscribed");
    org.server.shutdown();
}

// ---- d365 trigger webhook --subscribe / d365 trigger unsubscribe ----------

mod cli_lifecycle {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader, Lines};
    use tokio::process::{Child, ChildStderr, Command};

    fn d365() -> Command {
        Command::new(env!("CARGO_BIN_EXE_d365"))
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("d365-subscribe-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `d365 trigger webhook --listen 0 --subscribe …` on the emulator
    /// behind `conn`; returns the process, its stderr after the
    /// `{"subscribed": …}` line, and that record.
    async fn start(conn: &Path, out: &Path) -> (Child, Lines<BufReader<ChildStderr>>, Value) {
        let inputs = json!({
            "entityName": "account",
            "messages": ["Create"],
            "postImageAttributes": ["name"],
        });
        let mut child = d365()
            .args([
                "trigger",
                "webhook",
                "--listen",
                "0",
                "--key",
                KEY,
                "--subscribe",
            ])
            .arg("--connection")
            .arg(conn)
            .args(["--input", &inputs.to_string()])
            .arg("--subscription-out")
            .arg(out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("d365 starts");
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let record = loop {
            let line = tokio::time::timeout(Duration::from_secs(60), stderr.next_line())
                .await
                .expect("d365 subscribes")
                .unwrap()
                .expect("a line before the process ends");
            assert!(!line.contains(KEY), "the key on stderr: {line}");
            if line.starts_with("{\"subscribed\"") {
                break serde_json::from_str::<Value>(&line).unwrap()["subscribed"].clone();
            }
            assert!(line.starts_with("listening on "), "{line}");
        };
        (child, stderr, record)
    }

    async fn run(conn: &Path, args: &[&str]) -> (bool, String, String) {
        let out = d365()
            .args(args)
            .arg("--connection")
            .arg(conn)
            .output()
            .await
            .expect("d365 runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    /// Service endpoints named like the connector's, read through the CLI.
    async fn our_endpoints(conn: &Path) -> usize {
        let input = json!({"entityType": "serviceendpoints", "fieldNames": ["name"]}).to_string();
        let (ok, out, err) = run(conn, &["run", "queryEntities", "--input", &input]).await;
        assert!(ok, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("d365-connector "))
            })
            .count()
    }

    fn check_record_file(path: &Path, record: &Value) {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the subscription file is private");
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.contains(KEY), "{text}");
        let saved: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(&saved, record);
        assert_eq!(saved["stepIds"].as_array().map(Vec::len), Some(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cli_subscribes_prints_events_and_unsubscribes_on_ctrl_c() {
        let dir = temp_dir("ctrl-c");
        let conn = dir.join("conn.json");
        let out = dir.join("subscription.json");
        let mut emulator = common::spawn_cli_emulator(&[], &conn);
        let (mut child, mut stderr, record) = start(&conn, &out).await;
        check_record_file(&out, &record);
        assert_eq!(our_endpoints(&conn).await, 1);

        let input =
            json!({"entityType": "accounts", "fieldValues": {"name": "Via CLI"}}).to_string();
        let (ok, _, err) = run(&conn, &["run", "createEntity", "--input", &input]).await;
        assert!(ok, "{err}");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .expect("an event line")
            .unwrap()
            .expect("a line");
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["MessageName"], "Create");
        assert_eq!(event["authenticated"], true);
        assert_eq!(event["PostEntityImages"]["PostImage"]["name"], "Via CLI");
        assert!(is_event_id(&event["eventId"]));

        // Ctrl-C: the process unsubscribes, then exits 0.
        let pid = child.id().expect("running").to_string();
        let status = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("d365 exits")
            .unwrap();
        assert!(exit.success(), "{exit:?}");
        let mut rest = Vec::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            rest.push(line);
        }
        assert!(
            rest.iter().any(|l| l.starts_with("{\"unsubscribed\"")),
            "{rest:?}"
        );
        assert_eq!(our_endpoints(&conn).await, 0, "nothing left behind");
        // The saved record can still be passed to unsubscribe: gone is fine.
        let (ok, out_text, err) = run(
            &conn,
            &[
                "trigger",
                "unsubscribe",
                "--subscription",
                out.to_str().unwrap(),
            ],
        )
        .await;
        assert!(ok, "{err}");
        assert!(out_text.contains("\"unsubscribed\""), "{out_text}");
        let _ = emulator.kill();
        let _ = emulator.wait();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cli_unsubscribe_removes_a_subscription_left_behind() {
        let dir = temp_dir("left-behind");
        let conn = dir.join("conn.json");
        let out = dir.join("subscription.json");
        let mut emulator = common::spawn_cli_emulator(&[], &conn);
        let (mut child, _stderr, record) = start(&conn, &out).await;
        check_record_file(&out, &record);
        // Killed outright: no chance to clean up.
        child.kill().await.unwrap();
        assert_eq!(our_endpoints(&conn).await, 1, "left behind");
        let (ok, out_text, err) = run(
            &conn,
            &[
                "trigger",
                "unsubscribe",
                "--subscription",
                out.to_str().unwrap(),
            ],
        )
        .await;
        assert!(ok, "{err}");
        assert!(
            out_text.contains(record["name"].as_str().unwrap()),
            "{out_text}"
        );
        assert_eq!(our_endpoints(&conn).await, 0);
        // A record that is not a subscription is refused clearly.
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"name": "x"}"#).unwrap();
        let (ok, _, err) = run(
            &conn,
            &[
                "trigger",
                "unsubscribe",
                "--subscription",
                bad.to_str().unwrap(),
            ],
        )
        .await;
        assert!(!ok);
        assert!(err.contains("callbackUrl"), "{err}");
        let _ = emulator.kill();
        let _ = emulator.wait();
    }
}

// ---- the emulator's registration endpoints, on the wire -------------------

mod registration_wire {
    use super::common::Env;
    use super::common::wire::{Req, Wire};
    use host_test::emulator::store::schema::sdk;
    use serde_json::json;

    fn id_of(reply: &super::common::wire::Reply) -> String {
        let entity_id = reply.header("OData-EntityId").expect("OData-EntityId");
        entity_id
            .rsplit_once('(')
            .and_then(|(_, r)| r.strip_suffix(')'))
            .expect("an id in the URL")
            .to_string()
    }

    /// Registration refuses what Dataverse refuses, never returns
    /// `authvalue`, and deleting an endpoint cascades to its steps and their
    /// images.
    #[tokio::test]
    async fn registration_rules_write_only_authvalue_and_cascading_deletes() {
        let env = Env::new();
        let wire = Wire::new(&env).await;
        let endpoint = wire
            .send(Req::new("POST", "serviceendpoints").json(json!({
                "name": "wire", "contract": 8, "authtype": 4,
                "authvalue": "wire-secret-value-123", "url": "http://127.0.0.1:9/h"
            })))
            .await;
        assert_eq!(endpoint.status, 204, "{}", endpoint.body);
        let endpoint = id_of(&endpoint);
        let row = wire
            .send(Req::get(format!("serviceendpoints({endpoint})")))
            .await;
        assert_eq!(row.status, 200);
        assert_eq!(row.body["contract"], 8);
        assert!(
            !row.body.to_string().contains("wire-secret-value-123"),
            "{}",
            row.body
        );
        // A webhook without a key, or without a URL, is refused.
        for body in [
            json!({"name": "x", "contract": 8, "authtype": 4, "url": "http://127.0.0.1:9/h"}),
            json!({"name": "x", "contract": 8, "authtype": 4, "authvalue": "k-123456"}),
        ] {
            let r = wire
                .send(Req::new("POST", "serviceendpoints").json(body))
                .await;
            assert_eq!(r.status, 400, "{}", r.body);
        }
        let create = sdk::message_id("Create");
        let filter = sdk::filter_id("Create", "account");
        let step = |stage: i64, mode: i64, filter: &str| {
            json!({
                "name": "wire step", "stage": stage, "mode": mode,
                "sdkmessageid@odata.bind": format!("/sdkmessages({create})"),
                "sdkmessagefilterid@odata.bind": format!("/sdkmessagefilters({filter})"),
                "eventhandler_serviceendpoint@odata.bind": format!("/serviceendpoints({endpoint})"),
            })
        };
        // Asynchronous only in post-operation; the filter must be the
        // message's.
        let r = wire
            .send(Req::new("POST", "sdkmessageprocessingsteps").json(step(20, 1, &filter)))
            .await;
        assert_eq!(r.status, 400, "{}", r.body);
        let other = sdk::filter_id("Update", "account");
        let r = wire
            .send(Req::new("POST", "sdkmessageprocessingsteps").json(step(40, 1, &other)))
            .await;
        assert_eq!(r.status, 400, "{}", r.body);
        let r = wire
            .send(Req::new("POST", "sdkmessageprocessingsteps").json(step(40, 1, &filter)))
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        let step_id = id_of(&r);
        let image = |kind: i64| {
            json!({"name": "img", "entityalias": "Img", "imagetype": kind,
                "messagepropertyname": "Id", "attributes": "name",
                "sdkmessageprocessingstepid@odata.bind": format!("/sdkmessageprocessingsteps({step_id})")})
        };
        // Create has no pre-image.
        let r = wire
            .send(Req::new("POST", "sdkmessageprocessingstepimages").json(image(0)))
            .await;
        assert_eq!(r.status, 400, "{}", r.body);
        let r = wire
            .send(Req::new("POST", "sdkmessageprocessingstepimages").json(image(1)))
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        let image_id = id_of(&r);
        // The messages and filters a registration looks up.
        let r = wire
            .send(Req::get(
                "sdkmessagefilters?$select=sdkmessagefilterid&$filter=primaryobjecttypecode%20eq%20'account'%20and%20_sdkmessageid_value%20eq%20".to_string()
                    + &create,
            ))
            .await;
        assert_eq!(r.body["value"][0]["sdkmessagefilterid"], filter.as_str());
        // Deleting the endpoint takes its step and the step's image.
        let r = wire
            .send(Req::new("DELETE", format!("serviceendpoints({endpoint})")))
            .await;
        assert_eq!(r.status, 204);
        for gone in [
            format!("sdkmessageprocessingsteps({step_id})"),
            format!("sdkmessageprocessingstepimages({image_id})"),
        ] {
            assert_eq!(
                wire.send(Req::get(gone.clone())).await.status,
                404,
                "{gone}"
            );
        }
    }
}
