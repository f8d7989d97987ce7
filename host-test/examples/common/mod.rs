//! What `call_cost`, `batch_cost` and `fetch_cost` share: a loopback emulator, the
//! connector host (or the component `D365_COMPONENT` names), a connection
//! holding a token, and the bench's native client on the same emulator.

// Each example is its own crate and uses its own subset of the rig.
#![allow(dead_code)]

use anyhow::{Context as _, Result, anyhow};
use host_test::bench::native::Native;
use host_test::emulator::{self, Emulator, server::Server};
use host_test::host::{
    Connection, ConnectionFile, ConnectorHost, Route, StateJson, error_json, trap,
};
use serde_json::Value;

pub struct Rig {
    pub emulator: Emulator,
    pub server: Server,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub host: &'static ConnectorHost,
    /// Settings and a token, as a platform passes them on each call.
    pub connection: Connection,
    pub access_token: String,
    pub native: Native,
}

/// Starts an emulator with `generated_records` accounts on a loopback port
/// and connects both clients to it.
pub async fn rig(generated_records: usize) -> Result<Rig> {
    let emulator = Emulator::new(emulator::Config {
        generated_records,
        ..Default::default()
    });
    let server = emulator::server::serve(emulator.clone(), 0).await?;
    let base = server.base_url();
    let file = host_test::cli::emulator_connection(&base);
    let host = match std::env::var_os("D365_COMPONENT") {
        Some(path) => {
            let wasm = std::fs::read(&path).with_context(|| format!("reading {path:?}"))?;
            &*Box::leak(Box::new(ConnectorHost::new(&wasm).map_err(trap)?))
        }
        None => ConnectorHost::shared().map_err(trap)?,
    };
    let token = host
        .client_credentials_token(&Route::Network, &file.settings_json())
        .await
        .map_err(trap)?
        .map_err(|e| anyhow!("token: {}", error_json(&e)))?;
    let access_token = token.access_token.clone();
    let connection = ConnectionFile {
        state: Some(StateJson::from(token)),
        ..file.clone()
    }
    .connection()?;
    let setting = |k: &str| {
        file.settings
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let token_path = setting("tokenUrl").strip_prefix(&base).unwrap_or_default();
    let native = Native::connect(
        &base,
        token_path,
        setting("clientId"),
        setting("clientSecret"),
    )
    .await?;
    Ok(Rig {
        emulator,
        server,
        base,
        host,
        connection,
        access_token,
        native,
    })
}

/// runBatch inputs for `creates` contact creates. Contacts have an
/// alternate key on (firstname, lastname), so `round` keeps the names of
/// each call's contacts apart from every other call's.
pub fn batch_create_inputs(firstname: &str, round: usize, creates: usize) -> String {
    let actions: Vec<Value> = (0..creates)
        .map(|i| serde_json::json!({"collection": "contacts", "action": "create", "data": {"firstname": firstname, "lastname": format!("s{round} {i}")}}))
        .collect();
    serde_json::json!({ "batchActions": actions }).to_string()
}
