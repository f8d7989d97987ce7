//! Secret canaries: every credential a connection can hold (client secret,
//! access token, refresh token, certificate private key) is set to a unique
//! string, every action in the catalog runs with valid and invalid inputs
//! under each fault the emulator can inject, and every output, every error,
//! every response the emulator sent back and the CLI's stdout/stderr are
//! scanned. Any canary found fails the test. The canaries must of course
//! reach the token endpoint (what the connector sends); only what comes back
//! or is printed is scanned.

mod common;

use common::cert::TestCert;
use common::{Env, host};
use host_test::cli::{self, IN_PROCESS_ORIGIN};
use host_test::emulator::identity::{AUTH_CODE_APP_ID, AccessGrant, CLIENT_CREDENTIALS_APP_ID};
use host_test::emulator::{Emulator, Faults, Injected, Trigger, data, server};
use host_test::host::{ConnectionFile, StateJson, error_json};
use serde_json::{Value, json};

const SECRET: &str = "CANARY-client-secret-5b1e9f2a7c";
const ACCESS: &str = "CANARY-access-token-c0ffee4211";
const ACCESS_EXPIRED: &str = "CANARY-expired-access-token-77a1";
const REFRESH: &str = "CANARY-refresh-token-d15ea5e903";
const FAR_FUTURE: u64 = 4_000_000_000;

/// Every canary: the secret and tokens, and the certificate's private key
/// (the connection's canary certificate).
fn canaries(cert: &TestCert) -> Vec<String> {
    let mut all: Vec<String> = [SECRET, ACCESS, ACCESS_EXPIRED, REFRESH]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // Every full base64 line of the private key: any one of them in an
    // output means key material leaked.
    all.extend(
        cert.key_pem()
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 40)
            .map(str::to_string),
    );
    all
}

/// Fails with `context` when `text` holds any canary.
fn scan(text: &str, canaries: &[String], context: &str) {
    for c in canaries {
        assert!(
            !text.contains(c.as_str()),
            "secret canary {c:?} leaked in {context}:\n{text}"
        );
    }
}

/// The ways a connection holds credentials.
#[derive(Debug, Clone, Copy)]
enum Holder {
    /// Client credentials with the canary secret, no token yet.
    ClientSecret,
    /// Client credentials with a planted, valid canary access token.
    PlantedAccessToken,
    /// Authorization code with an expired canary access token and a canary
    /// refresh token (so the call refreshes).
    RefreshToken,
    /// Client credentials with the canary certificate key.
    Certificate,
}

const HOLDERS: [Holder; 4] = [
    Holder::ClientSecret,
    Holder::PlantedAccessToken,
    Holder::RefreshToken,
    Holder::Certificate,
];

/// An emulator that knows the canaries, and a connection holding them.
fn canary_env(holder: Holder, cert: &TestCert) -> Env {
    let mut env = Env::new();
    set_up_emulator(&env.emulator, cert);
    env.connection = canary_connection(holder, cert, IN_PROCESS_ORIGIN);
    env
}

fn set_up_emulator(emulator: &Emulator, cert: &TestCert) {
    let mut state = emulator.state();
    let identity = &mut state.identity;
    for app in identity.apps.iter_mut() {
        if app.client_id == CLIENT_CREDENTIALS_APP_ID {
            app.secret = Some(SECRET.into());
        }
    }
    identity.register_certificate(CLIENT_CREDENTIALS_APP_ID, cert.registered());
    identity.grant_access_token(
        ACCESS,
        AccessGrant {
            user_id: data::USER_APP.into(),
            client_id: CLIENT_CREDENTIALS_APP_ID.into(),
            expires_at: FAR_FUTURE,
        },
    );
    identity.grant_refresh_token(
        REFRESH,
        AUTH_CODE_APP_ID,
        data::USER_ANA,
        "http://localhost/user_impersonation offline_access",
    );
}

fn canary_connection(holder: Holder, cert: &TestCert, origin: &str) -> ConnectionFile {
    let mut conn = cli::emulator_connection(origin);
    conn.settings.insert("clientSecret".into(), json!(SECRET));
    match holder {
        Holder::ClientSecret => {}
        Holder::PlantedAccessToken => {
            conn.state = Some(StateJson {
                access_token: ACCESS.into(),
                expires_at: FAR_FUTURE,
                refresh_token: None,
                scope: None,
            });
        }
        Holder::RefreshToken => {
            conn = cli::emulator_auth_code_connection(origin, "http://localhost:8400/callback");
            conn.state = Some(StateJson {
                access_token: ACCESS_EXPIRED.into(),
                expires_at: 1,
                refresh_token: Some(REFRESH.into()),
                scope: Some("http://localhost/user_impersonation offline_access".into()),
            });
        }
        Holder::Certificate => {
            conn.settings.remove("clientSecret");
            conn.settings
                .insert("certificatePem".into(), json!(cert.pem()));
        }
    }
    conn
}

/// The faults every action meets (each on a fresh emulator).
fn faults() -> Vec<(&'static str, Option<Faults>)> {
    vec![
        ("no fault", None),
        ("429 once", Some(Faults::fail_next(1, 429))),
        ("503 once", Some(Faults::fail_next(1, 503))),
        ("500 always", Some(Faults::fail_next(1000, 500))),
        (
            "cut body",
            Some(Faults::default().with_cut_body(Trigger::Next(1))),
        ),
        (
            "token expires",
            Some(Faults::default().with_expired_tokens(Trigger::Nth(1))),
        ),
        (
            "every token rejected",
            Some(Faults {
                reject_all_tokens: true,
                ..Faults::default()
            }),
        ),
        (
            ECHO,
            Some(Faults::default().with_error(Trigger::Every(1), Injected::EchoRequest)),
        ),
    ]
}

/// A gateway that answers every Web API request with a page quoting it,
/// bearer token included: the emulator's answers hold the token by design.
const ECHO: &str = "gateway echoes the request";

/// Inputs that reach the wire: a hand-written set for the actions that need
/// more than the catalog's examples, else each input's example or default.
fn valid_inputs(action: &Value) -> Vec<String> {
    let key = action["key"].as_str().unwrap();
    let mut out = vec![generated_inputs(action).to_string()];
    let extra: &[Value] = &match key {
        "createEntity" => {
            vec![json!({"entityType": "accounts", "fieldValues": {"name": "Canary Co"}})]
        }
        "queryEntities" => vec![json!({"entityType": "accounts", "fetchAll": true, "pageSize": 2})],
        "runFetchXml" => vec![json!({"entityType": "accounts", "fetchXml":
            "<fetch count='2'><entity name='account'><attribute name='name'/></entity></fetch>",
            "fetchAll": true})],
        "rawRequest" | "rawRequestDeprecated" => vec![
            json!({"url": "/api/data/v9.2/WhoAmI", "method": "GET"}),
            json!({"url": "/api/data/v9.2/accounts?$top=1", "method": "GET", "maxRetries": 2}),
        ],
        "runBatch" => vec![json!({"batchActions": [
            {"collection": "accounts", "action": "create", "data": {"name": "Batch canary"}},
            {"collection": "accounts", "action": "get", "key": "00000000-0000-0000-0000-000000000001"}
        ]})],
        "getEntityMetadata" => vec![json!({"entityType": "account"})],
        "uploadFile" => vec![json!({"entityType": "accounts",
            "entityId": "accountnumber='A-1'", "columnName": "new_document",
            "fileName": "canary.txt", "fileContent": "Y2FuYXJ5"})],
        "downloadFile" | "deleteFile" => vec![json!({"entityType": "accounts",
            "entityId": "accountnumber='A-1'", "columnName": "new_document"})],
        "listAttributes" => vec![json!({"entityId": "account"})],
        _ => vec![],
    };
    out.extend(extra.iter().map(Value::to_string));
    out
}

fn generated_inputs(action: &Value) -> Value {
    let mut inputs = serde_json::Map::new();
    if let Some(props) = action["inputSchema"]["properties"].as_object() {
        for (name, schema) in props {
            let value = schema["examples"]
                .as_array()
                .and_then(|e| e.first())
                .or_else(|| schema.get("default"));
            if let Some(v) = value {
                inputs.insert(name.clone(), v.clone());
            }
        }
    }
    Value::Object(inputs)
}

/// Inputs the connector must refuse (or at least survive): not JSON, not an
/// object, an unknown input, and every input with a value of the wrong type.
fn invalid_inputs(action: &Value) -> Vec<String> {
    let mut out = vec![
        "{not json".to_string(),
        "[]".to_string(),
        json!({"noSuchInput": 1}).to_string(),
    ];
    if let Some(props) = action["inputSchema"]["properties"].as_object() {
        let mut wrong = serde_json::Map::new();
        for (name, schema) in props {
            let bad = match schema["type"].as_str() {
                Some("string") => json!([1, 2]),
                Some("object") | Some("array") => json!(42),
                _ => json!("not-a-valid-value"),
            };
            wrong.insert(name.clone(), bad);
        }
        out.push(Value::Object(wrong).to_string());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn no_canary_in_any_output_error_or_response() {
    let cert = TestCert::new();
    let canaries = canaries(&cert);
    let actions = common::catalog().await;
    assert!(actions.len() >= 20, "the whole catalog: {}", actions.len());
    let mut calls = 0usize;
    let mut successes = 0usize;
    for holder in HOLDERS {
        // The canary credential really authenticates: only it is accepted.
        let mut env = canary_env(holder, &cert);
        let who = env.ok("getCurrentUser", "{}").await;
        assert!(common::is_guid(&who["UserId"]), "{holder:?}: {who}");

        for (fault_name, fault) in faults() {
            let env = canary_env(holder, &cert);
            if let Some(f) = fault.clone() {
                env.emulator.set_faults(f);
            }
            for action in &actions {
                let key = action["key"].as_str().unwrap();
                let mut cases: Vec<(String, &str)> = valid_inputs(action)
                    .into_iter()
                    .map(|i| (i, "valid"))
                    .collect();
                if fault.is_none() {
                    cases.extend(invalid_inputs(action).into_iter().map(|i| (i, "invalid")));
                }
                for (inputs, kind) in cases {
                    let context = format!("{holder:?} / {fault_name} / {key} / {kind} {inputs}");
                    let result = host()
                        .invoke(
                            &env.route,
                            key,
                            &env.connection.connection().unwrap(),
                            &inputs,
                        )
                        .await
                        .unwrap_or_else(|trap| panic!("trap in {context}: {trap:?}"));
                    calls += 1;
                    match result {
                        Ok(r) => {
                            successes += 1;
                            scan(&r.output, &canaries, &format!("output of {context}"));
                        }
                        Err(e) => {
                            scan(
                                &error_json(&e).to_string(),
                                &canaries,
                                &format!("error of {context}"),
                            );
                            scan(&format!("{e:?}"), &canaries, &format!("error of {context}"));
                        }
                    }
                }
            }
            let mut echoed = 0;
            for logged in env.emulator.log() {
                let text = String::from_utf8_lossy(&logged.response_body);
                if fault_name == ECHO {
                    echoed += usize::from(text.contains(ACCESS));
                    continue;
                }
                scan(
                    &text,
                    &canaries,
                    &format!(
                        "emulator response to {} {} ({holder:?} / {fault_name})",
                        logged.method, logged.target
                    ),
                );
                for (name, value) in &logged.headers {
                    scan(value, &canaries, &format!("logged request header {name}"));
                }
            }
            if fault_name == ECHO && matches!(holder, Holder::PlantedAccessToken) {
                assert!(
                    echoed > 0,
                    "{holder:?}: the gateway quoted the canary token"
                );
            }
        }
    }
    eprintln!("canary: {calls} calls, {successes} succeeded, no canary found");
    assert!(
        successes > calls / 10,
        "enough calls reach the service to mean something: {successes}/{calls}"
    );
}

/// The CLI over real sockets, with a connection file full of canaries:
/// stdout and stderr (including the component's own log lines) stay clean
/// in success, invalid input and each fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_in_cli_stdout_or_stderr() {
    let cert = TestCert::new();
    let canaries = canaries(&cert);
    let emulator = Emulator::new(Default::default());
    set_up_emulator(&emulator, &cert);
    let srv = server::serve(emulator.clone(), 0).await.unwrap();
    let dir = std::env::temp_dir().join(format!("d365-canary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let runs: &[(&str, Value)] = &[
        ("getCurrentUser", json!({})),
        ("queryEntities", json!({"entityType": "accounts", "top": 3})),
        ("createEntity", json!({"entityType": 42})),
        (
            "rawRequest",
            json!({"url": "/api/data/v9.2/WhoAmI", "method": "GET"}),
        ),
    ];
    let mut ok_runs = 0;
    for holder in HOLDERS {
        for (fault_name, fault) in faults() {
            // Each CLI process compiles the component (seconds): every run
            // without faults, and under faults one fetch with the holders
            // whose credential the error paths handle (secret, refresh token).
            let runs = match (&fault, holder) {
                (None, _) => runs,
                (Some(_), Holder::ClientSecret | Holder::RefreshToken) => &runs[1..2],
                (Some(_), _) => continue,
            };
            emulator.set_faults(fault.clone().unwrap_or_default());
            for (action, inputs) in runs {
                // A fresh file per run: the CLI writes refreshed state back.
                let path = dir.join(format!("{holder:?}.json"));
                let conn = canary_connection(holder, &cert, &srv.base_url());
                std::fs::write(&path, serde_json::to_string(&conn).unwrap()).unwrap();
                let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_d365"))
                    .args([
                        "run",
                        action,
                        "--input",
                        &inputs.to_string(),
                        "--connection",
                    ])
                    .arg(&path)
                    .output()
                    .await
                    .unwrap();
                let context = format!("d365 run {action} ({holder:?} / {fault_name})");
                let stdout = String::from_utf8_lossy(&out.stdout);
                let stderr = String::from_utf8_lossy(&out.stderr);
                scan(&stdout, &canaries, &format!("stdout of {context}"));
                scan(&stderr, &canaries, &format!("stderr of {context}"));
                if out.status.success() {
                    ok_runs += 1;
                } else {
                    // A failure is a typed JSON error, not a crash.
                    // Log lines may come first; the error is the last top-level object.
                    let start = stderr.rfind("\n{").map_or(0, |i| i + 1);
                    let err: Value = serde_json::from_str(&stderr[start..]).unwrap_or_else(|_| {
                        panic!("{context}: stderr ends with a JSON error:\n{stderr}")
                    });
                    assert!(err["kind"].is_string(), "{context}: {err}");
                }
            }
            if fault.is_none() && !matches!(holder, Holder::RefreshToken) {
                // Valid runs succeed without faults (auth really used the canary).
                assert!(ok_runs > 0, "{holder:?}: no CLI run succeeded");
            }
        }
    }
    for logged in emulator.log() {
        scan(
            &String::from_utf8_lossy(&logged.response_body),
            &canaries,
            &format!("emulator response to {}", logged.target),
        );
    }
    srv.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
