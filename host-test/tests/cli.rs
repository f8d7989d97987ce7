//! The `d365` CLI as a user runs it: `run` (on the embedded emulator and
//! with a connection file), input errors, `describe`, `actions`, the
//! `emulator` server and `login`. Each `run` goes through the real
//! component.

mod common;

use common::{host, http_get, is_guid};
use host_test::cli;
use host_test::emulator::{self, data, store::seed};
use host_test::host::Route;
use serde_json::Value;
use std::process::{Command, Stdio};

fn d365() -> Command {
    Command::new(env!("CARGO_BIN_EXE_d365"))
}

/// `d365` with `args`, expecting success: its output as JSON and what it
/// wrote to stderr.
fn d365_ok(args: &[&str]) -> (Value, String) {
    let out = d365().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

#[test]
fn cli_query_entities_prints_three_accounts() {
    let (v, _) = d365_ok(&[
        "run",
        "queryEntities",
        "--input",
        r#"{"entityType":"accounts","fieldNames":["name"],"top":3}"#,
    ]);
    let values = v["value"].as_array().unwrap();
    assert_eq!(values.len(), 3);
    assert!(
        values
            .iter()
            .all(|a| a["name"].is_string() && is_guid(&a["accountid"]))
    );
}

#[test]
fn cli_shows_fetch_all_progress_on_stderr() {
    let (v, stderr) = d365_ok(&[
        "run",
        "queryEntities",
        "--input",
        r#"{"entityType":"contacts","fieldNames":["fullname"],"fetchAll":true,"pageSize":50}"#,
    ]);
    assert_eq!(v["count"], seed::CONTACTS);
    assert!(
        stderr.contains("page 2") && stderr.contains("page 3"),
        "{stderr}"
    );
}

/// A page retried after a 429 is the same page: progress counts it once.
#[test]
fn cli_progress_counts_a_retried_page_once() {
    let dir = std::env::temp_dir().join(format!("d365-progress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conn_path = dir.join("conn.json");
    // Every second Web API request is a 429 (Retry-After: 1): pages 2 and
    // 3 of the three are each answered 429 once, then served.
    let mut server = common::spawn_cli_emulator(
        &["--inject-429-every", "2", "--retry-after", "1"],
        &conn_path,
    );
    let out = d365()
        .args(["run", "queryEntities", "--connection"])
        .arg(&conn_path)
        .args([
            "--input",
            r#"{"entityType":"contacts","fieldNames":["fullname"],"fetchAll":true,"pageSize":50}"#,
        ])
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["count"], seed::CONTACTS);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("page ")).collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("page 2") && lines[1].starts_with("page 3"),
        "{stderr}"
    );
}

#[test]
fn cli_run_get_current_user_on_the_embedded_emulator() {
    let (v, _) = d365_ok(&["run", "getCurrentUser"]);
    for k in ["UserId", "BusinessUnitId", "OrganizationId"] {
        assert!(is_guid(&v[k]), "{k}: {v}");
    }
}

#[test]
fn cli_run_error_is_json_on_stderr_with_nonzero_exit() {
    let out = d365()
        .args(["run", "noSuchAction", "--input", "{}"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let v: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(v["kind"], "invalid-input");
}

/// `d365 run … --input` errors point at the schema path of the bad input.
#[test]
fn cli_input_errors_point_at_the_schema_path() {
    let out = d365()
        .args([
            "run",
            "queryEntities",
            "--input",
            r#"{"entityType":"accounts","pageSize":0}"#,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(v["input"], "pageSize");
    assert_eq!(
        v["schemaPath"],
        "/actions/queryEntities/inputSchema/properties/pageSize"
    );
    // The pointer resolves in connector.yaml and carries the violated bound.
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../connector.yaml")).unwrap();
    let yaml: Value = serde_norway::from_str(&text).unwrap();
    let action = yaml["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "queryEntities")
        .unwrap();
    assert_eq!(
        action["inputSchema"]["properties"]["pageSize"]["minimum"],
        1
    );
}

#[test]
fn cli_describe_shows_inputs_with_defaults() {
    let out = d365().args(["describe", "queryEntities"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("Query Entities (queryEntities)"), "{text}");
    let page_size = text
        .lines()
        .find(|l| l.starts_with("pageSize"))
        .expect("pageSize row");
    assert!(
        page_size.contains("100") && page_size.contains("integer"),
        "{page_size}"
    );
    let out = d365()
        .args(["describe", "queryEntities", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["inputSchema"]["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let out = d365().args(["describe", "nope"]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn cli_actions_lists_the_catalog() {
    let out = d365().arg("actions").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("getCurrentUser"));
}

/// `d365 emulator --connection-out F` then `d365 run --connection F`: the
/// token state is written back to F, and reused by the next run.
#[test]
fn cli_emulator_server_and_connection_file() {
    let dir = std::env::temp_dir().join(format!("d365-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conn_path = dir.join("conn.json");
    let mut server = common::spawn_cli_emulator(&[], &conn_path);
    let run = || {
        d365()
            .args(["run", "getCurrentUser", "--connection"])
            .arg(&conn_path)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&conn_path).unwrap()).unwrap();
    let token = saved["state"]["accessToken"]
        .as_str()
        .expect("state written back")
        .to_string();
    let second = run();
    assert!(second.status.success());
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&conn_path).unwrap()).unwrap();
    assert_eq!(
        saved["state"]["accessToken"], token,
        "token reused, file unchanged"
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// `d365 login`: prints the authorize URL, receives the redirect on its
/// loopback port, exchanges the code, saves the tokens.
#[tokio::test]
async fn cli_login_saves_tokens() {
    let emulator = emulator::Emulator::new(Default::default());
    let server = emulator::server::serve(emulator.clone(), 0).await.unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let conn = cli::emulator_auth_code_connection(&server.base_url(), &redirect);
    let dir = std::env::temp_dir().join(format!("d365-login-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("auth.json");
    cli::write_connection(&path, &conn).unwrap();
    let mut login = tokio::process::Command::new(env!("CARGO_BIN_EXE_d365"))
        .args(["login", "--connection"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(login.stdout.take().unwrap()));
    let authorize = lines
        .next_line()
        .await
        .unwrap()
        .expect("authorize URL printed");
    // The "browser": follow the emulator's redirect to the login listener.
    let (status, headers, _) = http_get(&authorize).await;
    assert_eq!(status, 302);
    let location = headers
        .iter()
        .find(|(k, _)| k == "location")
        .unwrap()
        .1
        .clone();
    assert!(location.starts_with(&redirect));
    let (status, _, _) = http_get(&location).await;
    assert_eq!(status, 200);
    let exit = tokio::time::timeout(std::time::Duration::from_secs(30), login.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success());
    let saved = cli::read_connection(&path).unwrap();
    let state = saved.state.expect("tokens saved");
    assert!(state.refresh_token.is_some());
    // The saved connection works.
    let result = host()
        .invoke(
            &Route::Network,
            "getCurrentUser",
            &saved_connection(&path),
            "{}",
        )
        .await
        .unwrap()
        .expect("WhoAmI as the signed-in user");
    let out: Value = serde_json::from_str(&result.output).unwrap();
    assert_eq!(out["UserId"], data::USER_ANA);
    server.shutdown();
}

fn saved_connection(path: &std::path::Path) -> host_test::host::Connection {
    cli::read_connection(path).unwrap().connection().unwrap()
}

/// `d365 component --out FILE` writes the component the tests load: a
/// component (not a core module) without custom sections, byte for byte
/// the embedded one.
#[test]
fn cli_component_writes_the_embedded_component() {
    let dir = std::env::temp_dir().join(format!("d365-component-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let out = dir.join("d365_connector.wasm");
    let status = d365()
        .args(["component", "--out"])
        .arg(&out)
        .status()
        .expect("d365 runs");
    assert!(status.success());
    let bytes = std::fs::read(&out).expect("written");
    assert_eq!(bytes, host_test::host::COMPONENT_WASM);
    // The component preamble: magic, version 0x0d, layer 1.
    assert_eq!(&bytes[..8], b"\0asm\x0d\x00\x01\x00");
    let custom: Vec<String> = wasmparser::Parser::new(0)
        .parse_all(&bytes)
        .filter_map(|p| match p.expect("parses") {
            wasmparser::Payload::CustomSection(c) => Some(c.name().to_string()),
            _ => None,
        })
        .collect();
    // Only the core module's own `producers` remain (inside it).
    assert!(!custom.iter().any(|n| n == "component-name"), "{custom:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
