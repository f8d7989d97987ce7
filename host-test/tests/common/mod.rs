//! Helpers shared by the end-to-end tests: every test drives the real
//! component (`ConnectorHost::shared`) against an emulator.
#![allow(dead_code)]

use bytes::Bytes;
use host_test::cli::{self, IN_PROCESS_ORIGIN};
use host_test::emulator::{Config, Emulator};
use host_test::host::{
    ActionResult, ConnectionFile, ConnectorError, ConnectorHost, Route, StateJson, error_json,
};
use http_body_util::{BodyExt, Empty};
use serde_json::Value;

pub mod cert;
pub mod wire;

pub fn host() -> &'static ConnectorHost {
    ConnectorHost::shared().expect("the component compiles and links")
}

/// An in-process emulator and a client-credentials connection to it.
pub struct Env {
    pub emulator: Emulator,
    pub route: Route,
    pub connection: ConnectionFile,
}

impl Env {
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Self {
        let emulator = Emulator::new(config);
        Env {
            route: Route::InProcess(emulator.clone()),
            emulator,
            connection: cli::emulator_connection(IN_PROCESS_ORIGIN),
        }
    }

    /// Invokes an action through the component; keeps any new token state
    /// in `self.connection` as a host would.
    pub async fn invoke(&mut self, action: &str, inputs: &str) -> Result<Value, ConnectorError> {
        let result = self.invoke_raw(action, inputs).await?;
        if let Some(state) = result.state {
            self.connection.state = Some(state.into());
        }
        Ok(serde_json::from_str(&result.output).expect("output is JSON"))
    }

    pub async fn invoke_raw(
        &self,
        action: &str,
        inputs: &str,
    ) -> Result<ActionResult, ConnectorError> {
        self.invoke_or_trap(action, inputs).await.expect("no trap")
    }

    /// Like [`Self::invoke_raw`], returning a trap instead of panicking.
    pub async fn invoke_or_trap(
        &self,
        action: &str,
        inputs: &str,
    ) -> wasmtime::Result<Result<ActionResult, ConnectorError>> {
        let conn = self
            .connection
            .connection()
            .expect("connection file is valid");
        host().invoke(&self.route, action, &conn, inputs).await
    }

    /// Like [`Self::invoke`], expecting success.
    pub async fn ok(&mut self, action: &str, inputs: &str) -> Value {
        match self.invoke(action, inputs).await {
            Ok(v) => v,
            Err(e) => panic!("{action} failed: {}", error_json(&e)),
        }
    }

    /// Like [`Self::invoke`], expecting an error; returns it as JSON.
    pub async fn err(&mut self, action: &str, inputs: &str) -> Value {
        match self.invoke(action, inputs).await {
            Ok(v) => panic!("{action} succeeded unexpectedly: {v}"),
            Err(e) => error_json(&e),
        }
    }

    pub fn token_requests(&self) -> usize {
        self.emulator
            .log()
            .iter()
            .filter(|r| r.is_token_request())
            .count()
    }

    /// Every logged request as (is it a token request, its status), in
    /// order: the shape of a renewal and retry.
    pub fn statuses(&self) -> Vec<(bool, u16)> {
        self.emulator
            .log()
            .iter()
            .map(|r| (r.is_token_request(), r.status))
            .collect()
    }

    pub fn state(&self) -> Option<StateJson> {
        self.connection.state.clone()
    }
}

/// The emulator's log of Web API requests (`/api/data/…`; token requests
/// and anything else left out).
pub fn web_api_requests(env: &Env) -> Vec<host_test::emulator::LoggedRequest> {
    env.emulator
        .log()
        .into_iter()
        .filter(|r| r.path().starts_with("/api/data/"))
        .collect()
}

/// A header of a logged request, by case-insensitive name.
pub fn request_header<'a>(
    r: &'a host_test::emulator::LoggedRequest,
    name: &str,
) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The catalog's actions (with their input schemas), from the component
/// itself.
pub async fn catalog() -> Vec<Value> {
    let catalog: Value =
        serde_json::from_str(&host().describe().await.expect("describe")).expect("catalog JSON");
    catalog["actions"]
        .as_array()
        .expect("the catalog lists actions")
        .clone()
}

pub fn is_guid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 36
            && s.chars().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            })
    })
}

/// A plain HTTP/1.1 GET over loopback (no connector involved).
pub async fn http_get(url: &str) -> (u16, Vec<(String, String)>, Bytes) {
    http_send(url, http::Method::GET).await
}

/// A plain HTTP/1.1 request without a body over loopback (no connector
/// involved); hyper declares no length for it.
pub async fn http_send(url: &str, method: http::Method) -> (u16, Vec<(String, String)>, Bytes) {
    let uri: http::Uri = url.parse().expect("valid URL");
    let authority = uri.authority().expect("authority").to_string();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header("Host", authority)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let res = sender.send_request(req).await.expect("response");
    let status = res.status().as_u16();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, headers, body)
}

/// An emulator with `n` more accounts named `Big 0`, `Big 1` … whose
/// descriptions are `bytes` long, put straight into its store: enough
/// record text to pass the connector's output limit with few records. The
/// description's MaxLength is raised to fit (Dataverse's own memo limit is
/// 1 MiB), and the request log keeps only recent pages.
pub fn env_with_big_accounts(n: usize, bytes: usize) -> Env {
    let env = Env::with_config(Config {
        log_retention: host_test::emulator::LogRetention::RECENT,
        ..Default::default()
    });
    seed_big_accounts(&env, n, bytes);
    env
}

fn seed_big_accounts(env: &Env, n: usize, bytes: usize) {
    use host_test::emulator::data::USER_APP;
    use host_test::emulator::store::Changes;
    use host_test::emulator::store::schema::AttributeKind;
    let big = serde_json::Value::String("x".repeat(bytes));
    let mut state = env.emulator.state();
    let now = state.now();
    let account = state
        .store
        .schema_mut()
        .entities
        .iter_mut()
        .find(|e| e.logical_name == "account")
        .expect("account table");
    for a in &mut account.attributes {
        if a.logical_name == "description" {
            a.kind = AttributeKind::Memo {
                max_length: bytes as u32,
            };
        }
    }
    for i in 0..n {
        let mut changes = Changes::default();
        changes
            .values
            .insert("name".into(), serde_json::Value::String(format!("Big {i}")));
        changes.values.insert("description".into(), big.clone());
        state
            .store
            .create("account", None, changes, USER_APP, now)
            .expect("a big account");
    }
}

/// `d365 emulator --port 0 EXTRA… --connection-out CONN`, started as a
/// child process; returns once it printed its base URL (after writing the
/// connection file). Kill it when done.
pub fn spawn_cli_emulator(extra: &[&str], conn: &std::path::Path) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_d365"))
        .args(["emulator", "--port", "0"])
        .args(extra)
        .arg("--connection-out")
        .arg(conn)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("d365 starts");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("a first line");
    assert!(line.trim().starts_with("http://127.0.0.1:"), "{line}");
    server
}
