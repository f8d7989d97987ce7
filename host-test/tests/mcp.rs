//! `d365 mcp` (issue #31) driven by an MCP client nobody here wrote: the
//! official TypeScript SDK's `Client` over stdio (`@modelcontextprotocol/sdk`
//! and Ajv, pinned in host-test/js-mcp/package-lock.json). The built `d365`
//! binary serves an emulator on a real loopback socket; `js-mcp/client.mjs`
//! runs a plan of MCP steps and reports what came back; every assertion is
//! here.

use host_test::cli;
use host_test::emulator::{self, Emulator, Faults, Injected, Limit, Trigger, server};
use host_test::host::ConnectorHost;
use host_test::mcp::{EFFECTS, Effect, effect};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js-mcp")
}

/// Installs the pinned client packages once (`npm ci`: exactly the lockfile).
fn install_client() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = js_dir();
        let node = Command::new("node").arg("--version").output();
        assert!(
            node.as_ref().is_ok_and(|o| o.status.success()),
            "Node.js is required for the MCP client test (apt-get install nodejs)"
        );
        let installed = ["sdk", "inspector"].iter().all(|p| {
            dir.join("node_modules/@modelcontextprotocol")
                .join(p)
                .exists()
        });
        if !installed {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .expect("npm runs");
            assert!(status.success(), "npm ci in host-test/js-mcp failed");
        }
    });
}

/// The catalog as the component reports it.
async fn catalog() -> Vec<Value> {
    let json = ConnectorHost::shared().unwrap().describe().await.unwrap();
    let v: Value = serde_json::from_str(&json).unwrap();
    v["actions"].as_array().unwrap().clone()
}

fn keys(actions: &[Value]) -> BTreeSet<String> {
    actions
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_string())
        .collect()
}

/// An emulator on a loopback socket, and a directory for connection files.
struct Org {
    emulator: Emulator,
    server: server::Server,
    dir: PathBuf,
}

impl Org {
    async fn new(name: &str, config: emulator::Config) -> Org {
        let emulator = Emulator::new(config);
        let server = server::serve(emulator.clone(), 0).await.unwrap();
        let dir = std::env::temp_dir().join(format!("d365-mcp-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Org {
            emulator,
            server,
            dir,
        }
    }

    /// A client-credentials connection file, with `extra` settings.
    fn connection(&self, name: &str, extra: Value) -> PathBuf {
        let mut conn = cli::emulator_connection(&self.server.base_url());
        if let Value::Object(extra) = extra {
            conn.settings.extend(extra);
        }
        let path = self.dir.join(format!("{name}.json"));
        cli::write_connection(&path, &conn).unwrap();
        path
    }

    fn finish(self) {
        self.server.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `d365 mcp ARGS` under the TypeScript client with these steps and
/// returns its report (initialize, one result per step, the transcript).
async fn session(args: &[&str], steps: Value) -> Value {
    install_client();
    let plan = json!({
        "command": env!("CARGO_BIN_EXE_d365"),
        "args": std::iter::once("mcp").chain(args.iter().copied()).collect::<Vec<_>>(),
        "steps": steps,
    });
    let plan_path = std::env::temp_dir().join(format!(
        "d365-mcp-plan-{}-{}.json",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::write(&plan_path, plan.to_string()).unwrap();
    let out = tokio::process::Command::new("node")
        .arg(js_dir().join("client.mjs"))
        .arg(&plan_path)
        .output()
        .await
        .expect("node runs");
    let _ = std::fs::remove_file(&plan_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "the client's report is not JSON ({e}):\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        report.get("fatal").is_none(),
        "the MCP session failed: {}\nserver stderr:\n{}",
        report["fatal"],
        report["stderr"]
    );
    report
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The result of the step at `i`, failing on a protocol error.
fn step(report: &Value, i: usize) -> &Value {
    let s = &report["steps"][i];
    assert!(
        s.get("thrown").is_none(),
        "step {i} ({} {}) threw: {}\nserver stderr:\n{}",
        s["op"],
        s["name"],
        s["thrown"],
        report["stderr"]
    );
    s
}

/// A successful tool call's structured output.
fn ok(report: &Value, i: usize) -> &Value {
    let s = step(report, i);
    assert_eq!(
        s["isError"], false,
        "step {i} ({}): {}",
        s["name"], s["text"]
    );
    // The text rendering is the same JSON as the structured content (as
    // numbers: JavaScript, which parsed the latter, writes 7e6 for 7000000.0).
    let text: Value = serde_json::from_str(s["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        numbers_as_f64(&text),
        numbers_as_f64(&s["structuredContent"]),
        "step {i}"
    );
    &s["structuredContent"]
}

fn numbers_as_f64(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_f64).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A failed tool call's typed error (the JSON in its text).
fn tool_error(report: &Value, i: usize) -> Value {
    let s = step(report, i);
    assert_eq!(
        s["isError"], true,
        "step {i} ({}) succeeded: {}",
        s["name"], s["text"]
    );
    serde_json::from_str(s["text"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("step {i}: the error text is not JSON ({e}): {}", s["text"]))
}

fn listed_names(report: &Value, i: usize) -> BTreeSet<String> {
    step(report, i)["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// Every string the server sent (its stdout as parsed) and its stderr.
fn transcript_text(report: &Value) -> String {
    let received: Vec<&Value> = report["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["dir"] != "sent")
        .collect();
    format!(
        "{}\n{}",
        serde_json::to_string(&received).unwrap(),
        report["stderr"].as_str().unwrap_or("")
    )
}

/// The catalog's `example` of each input, per action.
fn catalog_examples(actions: &[Value]) -> Value {
    let mut all = serde_json::Map::new();
    for a in actions {
        let mut examples = serde_json::Map::new();
        for i in a["inputs"].as_array().unwrap() {
            if let Some(example) = i.get("example") {
                examples.insert(i["key"].as_str().unwrap().into(), example.clone());
            }
        }
        all.insert(a["key"].as_str().unwrap().into(), Value::Object(examples));
    }
    Value::Object(all)
}

/// The secret this test's connection carries (the emulator is told to
/// accept it), so that a leak of it is unmistakable.
const SECRET: &str = "CANARY-mcp-client-secret-8d41c9";

/// The five agent tasks (describe, query, get, create bound, update), the
/// listing, the schemas, a refused plain-GUID lookup, an unknown tool, the
/// token written back, and no secret anywhere in the transcript.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_describes_queries_gets_creates_and_updates() {
    let actions = catalog().await;
    let org = Org::new("agent", Default::default()).await;
    {
        let mut state = org.emulator.state();
        for app in state.identity.apps.iter_mut() {
            if app.client_id == emulator::identity::CLIENT_CREDENTIALS_APP_ID {
                app.secret = Some(SECRET.into());
            }
        }
    }
    let conn = org.connection("agent", json!({"clientSecret": SECRET}));
    let bogus_contact = "3f2a0c55-1111-4a7e-9a01-0d3a8c2b7e10";
    let report = session(
        &["--connection", conn.to_str().unwrap()],
        json!([
            {"op": "list"},
            {"op": "schemas", "examples": catalog_examples(&actions)},
            {"op": "resources"},
            {"op": "call", "name": "getEntityMetadata", "arguments": {"entityType": "account"}},
            {"op": "call", "name": "queryEntities", "save": "query", "arguments": {
                "entityType": "accounts",
                "fieldNames": ["name", "revenue", "address1_city"],
                "filter": "address1_city eq 'Seattle' and revenue gt 1000000",
                "orderBy": "revenue desc",
                "expand": "primarycontactid($select=fullname)",
                "top": 2}},
            {"op": "call", "name": "getEntity", "save": "account", "arguments": {
                "entityType": "accounts", "entityId": "${query.value.0.accountid}",
                "fieldNames": ["name", "accountid"]}},
            {"op": "call", "name": "createEntity", "save": "contact", "arguments": {
                "entityType": "contacts",
                "fieldValues": {"firstname": "Agent", "lastname": "Created",
                    "parentcustomerid_account@odata.bind": "/accounts(${account.accountid})"}}},
            {"op": "call", "name": "updateEntity", "arguments": {
                "entityType": "contacts", "entityId": "${contact.id}",
                "fieldValues": {"jobtitle": "Buyer"}}},
            {"op": "call", "name": "getEntity", "arguments": {
                "entityType": "contacts", "entityId": "${contact.id}",
                "fieldNames": ["fullname", "jobtitle", "_parentcustomerid_value"]}},
            {"op": "call", "name": "createEntity", "arguments": {
                "entityType": "accounts",
                "fieldValues": {"name": "Plain GUID", "primarycontactid": bogus_contact}}},
            {"op": "call", "name": "noSuchTool", "arguments": {}},
            {"op": "call", "name": "rawRequest", "arguments": {"url": "/api/data/v9.2/WhoAmI"}},
        ]),
    )
    .await;

    // initialize
    let init = &report["initialize"];
    assert_eq!(init["serverInfo"]["name"], "d365", "{init}");
    assert!(init["capabilities"]["tools"].is_object(), "{init}");
    assert!(init["capabilities"]["resources"].is_object(), "{init}");

    // tools/list: every action (the connection restricts nothing), each
    // exactly as the catalog describes it, annotated from the one table.
    let tools = step(&report, 0)["tools"].as_array().unwrap();
    assert_eq!(listed_names(&report, 0), keys(&actions));
    for tool in tools {
        let name = tool["name"].as_str().unwrap();
        let action = actions.iter().find(|a| a["key"] == name).unwrap();
        assert_eq!(tool["title"], action["label"], "{name}");
        assert_eq!(tool["description"], action["description"], "{name}");
        assert_eq!(tool["inputSchema"], action["inputSchema"], "{name}");
        if action["outputSchema"].get("properties").is_some() {
            assert_eq!(tool["outputSchema"], action["outputSchema"], "{name}");
        } else {
            assert!(tool.get("outputSchema").is_none(), "{name}");
        }
        let hints = &tool["annotations"];
        match effect(name) {
            Effect::Read => {
                assert_eq!(hints["readOnlyHint"], true, "{name}");
                assert_eq!(hints["destructiveHint"], false, "{name}");
            }
            Effect::Write {
                idempotent,
                destructive,
            } => {
                assert_eq!(hints["readOnlyHint"], false, "{name}");
                assert_eq!(hints["destructiveHint"], destructive, "{name}");
                assert_eq!(hints["idempotentHint"], idempotent, "{name}");
            }
        }
    }
    for (name, read_only) in [
        ("getEntity", true),
        ("queryEntities", true),
        ("runFetchXml", true),
        ("recordChanges", true),
        ("getEntityMetadata", true),
        ("createEntity", false),
        ("deleteEntity", false),
    ] {
        let t = tools.iter().find(|t| t["name"] == name).unwrap();
        assert_eq!(t["annotations"]["readOnlyHint"], read_only, "{name}");
    }
    for name in ["deleteEntity", "disassociate"] {
        let t = tools.iter().find(|t| t["name"] == name).unwrap();
        assert_eq!(t["annotations"]["destructiveHint"], true, "{name}");
    }
    for name in ["getEntity", "queryEntities", "upsertEntity", "updateEntity"] {
        let t = tools.iter().find(|t| t["name"] == name).unwrap();
        assert_eq!(t["annotations"]["idempotentHint"], true, "{name}");
    }

    // Every inputSchema is valid JSON Schema 2020-12 (Ajv, strict), every
    // array says its items, every required input is a property, and the
    // catalog's own examples are accepted.
    let schemas = step(&report, 1)["schemas"].as_array().unwrap();
    assert_eq!(schemas.len(), actions.len());
    let mut examples_checked = 0;
    for s in schemas {
        let name = &s["name"];
        assert_eq!(
            s["metaschemaValid"], true,
            "{name}: {}",
            s["metaschemaErrors"]
        );
        assert_eq!(s["compiles"], true, "{name}: {}", s["compileError"]);
        assert_eq!(s["arraysWithoutItems"], json!([]), "{name}");
        assert_eq!(s["requiredNotInProperties"], json!([]), "{name}");
        if s.get("outputMetaschemaValid").is_some() {
            assert_eq!(s["outputMetaschemaValid"], true, "{name}");
        }
        for e in s["examples"].as_array().unwrap() {
            assert_eq!(
                e["accepted"], true,
                "{name}.{}: {}",
                e["input"], e["errors"]
            );
            examples_checked += 1;
        }
    }
    assert!(examples_checked >= 20, "only {examples_checked} examples");

    // connector.yaml as a resource, equal to what `d365 actions --yaml` prints.
    let resources = step(&report, 2);
    assert_eq!(resources["resources"][0]["uri"], "d365://connector.yaml");
    let yaml = resources["read"][0]["contents"][0]["text"]
        .as_str()
        .unwrap();
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../connector.yaml"))
            .unwrap();
    assert_eq!(yaml, committed);

    // 1. describe account
    let metadata = ok(&report, 3);
    assert_eq!(metadata["LogicalName"], "account", "{metadata}");
    assert!(
        metadata["Attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["LogicalName"] == "primarycontactid"),
        "{metadata}"
    );
    // 2. query with select, filter, orderBy, expand, top
    let query = ok(&report, 4);
    let rows = query["value"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{query}");
    let revenues: Vec<f64> = rows
        .iter()
        .map(|r| r["revenue"].as_f64().unwrap())
        .collect();
    assert!(revenues[0] >= revenues[1], "{revenues:?}");
    for r in rows {
        assert_eq!(r["address1_city"], "Seattle", "{r}");
        assert!(r["revenue"].as_f64().unwrap() > 1e6, "{r}");
        assert!(r["primarycontactid"]["fullname"].is_string(), "{r}");
        assert!(r.get("telephone1").is_none(), "$select: {r}");
    }
    let sent = org
        .emulator
        .log()
        .into_iter()
        .find(|l| l.target.contains("$filter=address1_city"))
        .expect("the query reached the emulator");
    for option in ["$select=", "$orderby=", "$expand=", "$top=2"] {
        assert!(sent.target.contains(option), "{option}: {}", sent.target);
    }
    // 3. get by GUID
    let account = ok(&report, 5);
    assert_eq!(account["accountid"], rows[0]["accountid"]);
    assert_eq!(account["name"], rows[0]["name"]);
    // 4. create a contact bound to the account
    let created = ok(&report, 6);
    let contact_id = created["id"].as_str().unwrap();
    assert_eq!(
        created["record"]["_parentcustomerid_value"],
        account["accountid"]
    );
    // 5. update it, and read it back
    ok(&report, 7);
    let contact = ok(&report, 8);
    assert_eq!(contact["jobtitle"], "Buyer", "{contact}");
    assert_eq!(contact["fullname"], "Agent Created");
    assert_eq!(contact["_parentcustomerid_value"], account["accountid"]);
    assert_eq!(contact["contactid"], contact_id);

    // A plain GUID for a lookup: a tool error with the @odata.bind hint.
    let e = tool_error(&report, 9);
    assert_eq!(e["kind"], "dataverse", "{e}");
    assert_eq!(e["status"], 400, "{e}");
    let hint = e["hint"].as_str().unwrap();
    assert!(hint.contains("primarycontactid@odata.bind"), "{hint}");
    // An unknown tool: a protocol error (-32602), as MCP specifies.
    let unknown = &report["steps"][10]["thrown"];
    assert_eq!(unknown["code"], -32602, "{unknown}");
    // A raw request works too.
    assert!(ok(&report, 11)["body"]["UserId"].is_string());

    // The token state was written back to the connection file.
    let file = cli::read_connection(&conn).unwrap();
    let token = file.state.expect("token state saved").access_token;
    assert!(!token.is_empty());

    // No secret and no token in anything the server said (stdout, stderr).
    let transcript = transcript_text(&report);
    assert!(
        transcript.contains("Agent Created"),
        "the transcript is recorded"
    );
    assert!(!transcript.contains(SECRET), "the client secret leaked");
    assert!(!transcript.contains(&token), "the access token leaked");
    org.finish();
}

/// The canary test's gateway, under MCP: a proxy that quotes each request
/// it refuses, bearer token included, answers every other Web API request.
/// The tool errors quote it; neither the secret nor any token the session
/// held reaches stdout or stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_in_the_transcript_when_a_gateway_echoes_them() {
    let org = Org::new("echo", Default::default()).await;
    {
        let mut state = org.emulator.state();
        for app in state.identity.apps.iter_mut() {
            if app.client_id == emulator::identity::CLIENT_CREDENTIALS_APP_ID {
                app.secret = Some(SECRET.into());
            }
        }
    }
    org.emulator
        .set_faults(Faults::default().with_error(Trigger::Every(2), Injected::EchoRequest));
    let conn = org.connection("echo", json!({"clientSecret": SECRET}));
    let report = session(
        &["--connection", conn.to_str().unwrap()],
        json!([
            {"op": "call", "name": "getCurrentUser", "arguments": {}},
            {"op": "call", "name": "queryEntities", "arguments": {"entityType": "accounts", "top": 2}},
            {"op": "call", "name": "rawRequest", "arguments": {"url": "/api/data/v9.2/WhoAmI"}},
            {"op": "call", "name": "createEntity", "arguments": {
                "entityType": "accounts", "fieldValues": {"name": "Echoed"}}},
            {"op": "call", "name": "getEntity", "arguments": {"entityType": "accounts"}},
        ]),
    )
    .await;
    let results: Vec<bool> = (0..5)
        .map(|i| step(&report, i)["isError"].as_bool().unwrap())
        .collect();
    assert!(
        results.iter().any(|e| *e) && results.iter().any(|e| !*e),
        "both answers and echoed refusals: {results:?}"
    );
    // The gateway did quote the token it was sent.
    let echoed = org
        .emulator
        .log()
        .into_iter()
        .filter(|l| l.status == 400)
        .map(|l| String::from_utf8_lossy(&l.response_body).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let token = cli::read_connection(&conn)
        .unwrap()
        .state
        .expect("token state saved")
        .access_token;
    assert!(echoed.contains(&token), "the gateway quoted no token");
    let transcript = transcript_text(&report);
    // What the gateway quoted reached the client, with the token masked.
    assert!(
        (0..5).any(|i| step(&report, i)["isError"] == true
            && step(&report, i)["text"]
                .as_str()
                .unwrap()
                .contains("Bearer ***")),
        "{transcript}"
    );
    assert!(!transcript.contains(SECRET), "the client secret leaked");
    assert!(
        !transcript.contains(&token),
        "the access token leaked:\n{transcript}"
    );
    org.finish();
}

/// `--read-only`: only reads are listed; a write called anyway is refused
/// as a tool error, and nothing reaches the org.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_lists_no_write_and_refuses_one() {
    let actions = catalog().await;
    let org = Org::new("readonly", Default::default()).await;
    let conn = org.connection("readonly", json!({}));
    let report = session(
        &["--connection", conn.to_str().unwrap(), "--read-only"],
        json!([
            {"op": "list"},
            {"op": "call", "name": "createEntity", "arguments": {
                "entityType": "accounts", "fieldValues": {"name": "Must not exist"}}},
            {"op": "call", "name": "getCurrentUser", "arguments": {}},
        ]),
    )
    .await;
    let reads: BTreeSet<String> = keys(&actions)
        .into_iter()
        .filter(|k| effect(k) == Effect::Read)
        .collect();
    assert!(reads.contains("queryEntities") && reads.contains("getEntityMetadata"));
    assert_eq!(listed_names(&report, 0), reads);
    for t in step(&report, 0)["tools"].as_array().unwrap() {
        assert_eq!(t["annotations"]["readOnlyHint"], true, "{}", t["name"]);
    }
    let e = tool_error(&report, 1);
    assert_eq!(e["kind"], "forbidden");
    assert!(
        e["message"].as_str().unwrap().contains("--read-only"),
        "{e}"
    );
    assert!(
        org.emulator
            .log()
            .iter()
            .all(|l| l.method != "POST" || l.target.contains("/token")),
        "a write reached the org"
    );
    ok(&report, 2);
    org.finish();
}

/// `allowedOperations: ["getEntity"]` lists exactly one tool; `--allow`
/// narrows further, and another action is refused by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_operations_list_only_what_the_connection_permits() {
    let org = Org::new("allowed", Default::default()).await;
    let conn = org.connection("allowed", json!({"allowedOperations": ["getEntity"]}));
    let report = session(
        &["--connection", conn.to_str().unwrap()],
        json!([
            {"op": "list"},
            {"op": "call", "name": "queryEntities", "arguments": {"entityType": "accounts"}},
        ]),
    )
    .await;
    assert_eq!(
        listed_names(&report, 0),
        BTreeSet::from(["getEntity".to_string()])
    );
    let e = tool_error(&report, 1);
    assert_eq!(e["kind"], "forbidden");
    assert!(
        e["message"].as_str().unwrap().contains("allowedOperations"),
        "{e}"
    );

    let open = org.connection("open", json!({}));
    let report = session(
        &[
            "--connection",
            open.to_str().unwrap(),
            "--allow",
            "getEntity,queryEntities",
        ],
        json!([{"op": "list"}]),
    )
    .await;
    assert_eq!(
        listed_names(&report, 0),
        BTreeSet::from(["getEntity".to_string(), "queryEntities".to_string()])
    );
    org.finish();
}

/// Under service-protection throttling (every third Web API request is a
/// 429 with Retry-After: 1, what `d365 emulator --inject-429-every 3`
/// injects) calls still succeed, and a fetch-all over several pages sends
/// progress notifications for each follow-up page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_calls_succeed_and_a_fetch_all_reports_progress() {
    let org = Org::new(
        "throttled",
        emulator::Config {
            generated_records: 60,
            ..Default::default()
        },
    )
    .await;
    org.emulator.set_faults(Faults::default().with_error(
        Trigger::Every(3),
        Injected::Throttle {
            retry_after_secs: 1,
            limit: Limit::Requests,
        },
    ));
    let conn = org.connection("throttled", json!({}));
    let report = session(
        &["--connection", conn.to_str().unwrap()],
        json!([
            {"op": "call", "name": "getCurrentUser", "arguments": {}},
            {"op": "call", "name": "getCurrentUser", "arguments": {}},
            {"op": "call", "name": "queryEntities", "progress": true, "arguments": {
                "entityType": "accounts", "fieldNames": ["name"], "fetchAll": true,
                "pageSize": 10}},
        ]),
    )
    .await;
    ok(&report, 0);
    ok(&report, 1);
    let all = ok(&report, 2);
    let rows = all["value"].as_array().unwrap();
    assert!(rows.len() >= 60, "{} rows", rows.len());
    let ids: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["accountid"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), rows.len(), "a record came twice");
    let throttled = org
        .emulator
        .log()
        .iter()
        .filter(|l| l.status == 429)
        .count();
    assert!(throttled >= 2, "only {throttled} requests were throttled");

    // One notification per follow-up page (2, 3, … the last; a page
    // retried after a 429 is still one page), before the result.
    let progress = step(&report, 2)["progress"].as_array().unwrap();
    let pages = all["pages"].as_u64().unwrap();
    assert_eq!(pages as usize, rows.len().div_ceil(10));
    let values: Vec<u64> = progress
        .iter()
        .map(|p| p["progress"].as_u64().unwrap())
        .collect();
    assert_eq!(values, (2..=pages).collect::<Vec<_>>(), "{progress:?}");
    assert!(
        org.emulator
            .log()
            .iter()
            .any(|l| l.status == 429 && l.target.contains("skiptoken")),
        "no page was throttled, so no page was retried"
    );
    org.finish();
}

/// A cancelled fetch-all stops: the client cancels at the first progress
/// notification, and while the session stays open no further page is
/// requested (each page takes the emulator 700 ms, so a fetch that went on
/// would ask for several more in the wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_fetch_all_requests_no_further_page() {
    let org = Org::new(
        "cancel",
        emulator::Config {
            generated_records: 60,
            ..Default::default()
        },
    )
    .await;
    org.emulator.set_faults(
        Faults::default().with_delay(Trigger::Every(1), std::time::Duration::from_millis(700)),
    );
    let conn = org.connection("cancel", json!({}));
    let report = session(
        &["--connection", conn.to_str().unwrap()],
        json!([
            {"op": "cancel", "name": "queryEntities", "waitMs": 4000, "arguments": {
                "entityType": "accounts", "fieldNames": ["name"], "fetchAll": true,
                "pageSize": 5}},
            {"op": "call", "name": "getCurrentUser", "arguments": {}},
        ]),
    )
    .await;
    let cancelled = step(&report, 0);
    assert_eq!(cancelled["completed"], false, "{cancelled}");
    assert!(
        cancelled["aborted"].as_str().unwrap().contains("cancels"),
        "{cancelled}"
    );
    // The server is still serving.
    ok(&report, 1);
    let pages = org
        .emulator
        .log()
        .iter()
        .filter(|l| l.target.contains("skiptoken"))
        .count();
    // The log keeps answered requests: page 2 was under way when the
    // client cancelled (its request is what sent the progress), and is
    // logged only if it was answered before the call was dropped; page 3 at
    // most could have followed before the cancellation arrived. Going on,
    // the fetch would have answered 5 more pages in the 4 s wait (13+ in all).
    assert!(
        pages <= 2,
        "{pages} follow-up pages were answered after a cancel at page 2"
    );
    org.finish();
}

/// `--http PORT`: the streamable HTTP transport, with the same client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamable_http_transport_serves_the_same_tools() {
    use tokio::io::AsyncBufReadExt as _;
    install_client();
    let actions = catalog().await;
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_d365"))
        .args(["mcp", "--http", "0"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().expect("the URL on stderr");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    let plan = json!({"url": url, "steps": [
        {"op": "list"},
        {"op": "call", "name": "getCurrentUser", "arguments": {}},
    ]});
    let plan_path = std::env::temp_dir().join(format!("d365-mcp-http-{}.json", std::process::id()));
    std::fs::write(&plan_path, plan.to_string()).unwrap();
    let out = tokio::process::Command::new("node")
        .arg(js_dir().join("client.mjs"))
        .arg(&plan_path)
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_file(&plan_path);
    server.kill().await.unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.get("fatal").is_none(), "{}", report["fatal"]);
    assert_eq!(listed_names(&report, 0), keys(&actions));
    assert!(ok(&report, 1)["UserId"].is_string());
}

/// Without --connection the embedded emulator answers, one for the whole
/// session: a record created by one call is there for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_connection_the_embedded_emulator_answers() {
    let report = session(
        &[],
        json!([
            {"op": "call", "name": "createEntity", "save": "created", "arguments": {
                "entityType": "accounts", "fieldValues": {"name": "Embedded"}}},
            {"op": "call", "name": "getEntity", "arguments": {
                "entityType": "accounts", "entityId": "${created.id}", "fieldNames": ["name"]}},
        ]),
    )
    .await;
    ok(&report, 0);
    assert_eq!(ok(&report, 1)["name"], "Embedded");
}

/// The SDK client checks every call's `structuredContent` against the
/// tool's `outputSchema` once it has listed the tools: the search tools,
/// and queryEntities with count and apply, answer in their schemas.
#[tokio::test]
async fn search_and_aggregate_outputs_match_their_output_schemas() {
    let report = session(
        &[],
        json!([
            {"op": "list"},
            {"op": "call", "name": "searchRecords", "arguments": {
                "search": "contoso", "entities": ["account"], "count": true, "facets": ["statecode"]}},
            {"op": "call", "name": "suggestRecords", "arguments": {"search": "Fabri"}},
            {"op": "call", "name": "autocompleteSearch", "arguments": {"search": "woodgr"}},
            {"op": "call", "name": "getSearchStatus", "arguments": {}},
            {"op": "call", "name": "queryEntities", "arguments": {
                "entityType": "accounts", "count": true, "top": 2}},
            {"op": "call", "name": "queryEntities", "arguments": {
                "entityType": "accounts", "apply": "groupby((industrycode),aggregate($count as n))"}},
        ]),
    )
    .await;
    let listed = step(&report, 0)["tools"].as_array().unwrap().clone();
    for name in [
        "searchRecords",
        "suggestRecords",
        "autocompleteSearch",
        "getSearchStatus",
    ] {
        let tool = listed.iter().find(|t| t["name"] == name).unwrap();
        assert_eq!(
            tool["outputSchema"]["type"], "object",
            "{name} has an output schema"
        );
        assert_eq!(tool["annotations"]["readOnlyHint"], true, "{name}");
    }
    assert_eq!(ok(&report, 1)["totalCount"], 3);
    assert!(!ok(&report, 2)["results"].as_array().unwrap().is_empty());
    assert_eq!(ok(&report, 3)["value"], "woodgrove");
    assert_eq!(ok(&report, 4)["enabled"], true);
    assert_eq!(ok(&report, 5)["totalCount"], 60);
    assert!(!ok(&report, 6)["value"].as_array().unwrap().is_empty());
}

/// The official MCP Inspector's CLI (pinned in `js-mcp`) lists the tools
/// `d365 mcp` serves: every catalog action without a connection file (the
/// embedded emulator), only the reads with `--read-only`.
#[tokio::test]
async fn the_mcp_inspector_cli_lists_the_tools() {
    install_client();
    let actions = catalog().await;
    let cli = js_dir().join("node_modules/@modelcontextprotocol/inspector/cli/build/cli.js");
    let list = |extra: &[&str]| {
        let mut args = vec![
            cli.to_str().unwrap().to_string(),
            "--cli".to_string(),
            env!("CARGO_BIN_EXE_d365").to_string(),
            "mcp".to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.extend(["--method".to_string(), "tools/list".to_string()]);
        let out = Command::new("node")
            .args(&args)
            .output()
            .expect("node runs");
        assert!(
            out.status.success(),
            "the Inspector failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: Value = serde_json::from_slice(&out.stdout).expect("the Inspector prints JSON");
        listed["tools"]
            .as_array()
            .expect("a tools list")
            .iter()
            .map(|t| {
                assert!(t["inputSchema"]["type"] == "object", "{t}");
                t["name"].as_str().unwrap().to_string()
            })
            .collect::<BTreeSet<String>>()
    };
    assert_eq!(list(&[]), keys(&actions));
    let reads: BTreeSet<String> = keys(&actions)
        .into_iter()
        .filter(|k| effect(k) == Effect::Read)
        .collect();
    assert_eq!(list(&["--read-only"]), reads);
}

/// Every catalog action has a deliberate entry in the effects table (the
/// annotations and `--read-only` come from it).
#[tokio::test]
async fn every_action_is_classified() {
    let table: BTreeSet<String> = EFFECTS.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(keys(&catalog().await), table);
}
