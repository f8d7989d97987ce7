//! Pieces of the `d365` CLI that tests call directly: the embedded emulator
//! connection, running an action, and the catalog as YAML.

use crate::emulator::{self, Emulator};
use crate::host::{ConnectionFile, ConnectorHost, Route, error_json, trap};
use anyhow::{Context as _, Result};
use serde_json::{Map, Value, json};
use std::path::Path;

/// The in-process emulator's origin. Requests never leave the process; the
/// name only has to be a loopback host so that `http://` is accepted.
pub const IN_PROCESS_ORIGIN: &str = "http://localhost";

/// A ready client-credentials connection to an emulator at `origin`.
pub fn emulator_connection(origin: &str) -> ConnectionFile {
    let mut settings = Map::new();
    settings.insert("webApiUrl".into(), json!(origin));
    settings.insert(
        "tokenUrl".into(),
        json!(format!(
            "{origin}/{}/oauth2/v2.0/token",
            emulator::data::TENANT_ID
        )),
    );
    settings.insert(
        "clientId".into(),
        json!(emulator::identity::CLIENT_CREDENTIALS_APP_ID),
    );
    settings.insert(
        "clientSecret".into(),
        json!(emulator::identity::CLIENT_CREDENTIALS_SECRET),
    );
    ConnectionFile {
        connection_type: "oauth2ClientCredentials".into(),
        settings,
        state: None,
    }
}

/// An authorization-code connection to an emulator at `origin` (the seeded
/// public client; PKCE, no secret).
pub fn emulator_auth_code_connection(origin: &str, redirect_uri: &str) -> ConnectionFile {
    let mut settings = Map::new();
    settings.insert("webApiUrl".into(), json!(origin));
    settings.insert("tenantId".into(), json!(emulator::data::TENANT_ID));
    settings.insert(
        "tokenUrl".into(),
        json!(format!(
            "{origin}/{}/oauth2/v2.0/token",
            emulator::data::TENANT_ID
        )),
    );
    settings.insert(
        "authorizeUrl".into(),
        json!(format!(
            "{origin}/{}/oauth2/v2.0/authorize",
            emulator::data::TENANT_ID
        )),
    );
    settings.insert(
        "clientId".into(),
        json!(emulator::identity::AUTH_CODE_APP_ID),
    );
    settings.insert("redirectUri".into(), json!(redirect_uri));
    ConnectionFile {
        connection_type: "oauth2AuthCode".into(),
        settings,
        state: None,
    }
}

/// What `d365 run` ends with.
pub enum RunOutcome {
    /// The action's output JSON, and the connection with its new token state
    /// when it changed.
    Ok {
        output: Value,
        refreshed: Option<ConnectionFile>,
    },
    /// The connector's typed error, as JSON.
    Err(Value),
}

/// Runs `action` through the component. Without a connection, an embedded
/// emulator answers in-process.
pub async fn run_action(
    host: &ConnectorHost,
    action: &str,
    inputs: &str,
    connection: Option<&ConnectionFile>,
    route: Option<Route>,
) -> Result<RunOutcome> {
    let (file, route) = match connection {
        Some(c) => (c.clone(), route.unwrap_or(Route::Network)),
        None => (
            emulator_connection(IN_PROCESS_ORIGIN),
            route.unwrap_or_else(|| Route::InProcess(Emulator::new(Default::default()))),
        ),
    };
    let conn = file.connection()?;
    match host
        .invoke(&route, action, &conn, inputs)
        .await
        .map_err(trap)?
    {
        Ok(result) => {
            let output: Value = serde_json::from_str(&result.output)
                .context("the component's output is not JSON")?;
            let refreshed = result.state.map(|s| ConnectionFile {
                state: Some(s.into()),
                ..file.clone()
            });
            Ok(RunOutcome::Ok { output, refreshed })
        }
        Err(e) => {
            let mut err = error_json(&e);
            let catalog = host.describe().await.map_err(trap)?;
            add_schema_path(&mut err, action, &catalog);
            Ok(RunOutcome::Err(err))
        }
    }
}

/// For an `invalid-input` error about one of the action's inputs, adds
/// `schemaPath`: the JSON pointer of that input's schema in the catalog
/// (connector.yaml), e.g. `/actions/queryEntities/inputSchema/properties/pageSize`.
pub fn add_schema_path(err: &mut Value, action: &str, catalog_json: &str) {
    let Some(input) = err.get("input").and_then(Value::as_str).map(str::to_string) else {
        return;
    };
    let Ok(catalog) = serde_json::from_str::<Value>(catalog_json) else {
        return;
    };
    let base = input.split(['[', '.']).next().unwrap_or(&input).to_string();
    let Some(entry) = catalog["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["key"] == action))
    else {
        return;
    };
    if entry["inputSchema"]["properties"].get(&base).is_some() {
        let mut pointer = format!("/actions/{action}/inputSchema/properties/{base}");
        if input.contains('[') {
            pointer.push_str("/items");
        }
        err["schemaPath"] = json!(pointer);
    }
}

/// One action for people: label, description, then every input.
pub fn describe_action(catalog_json: &str, key: &str) -> Result<String> {
    let catalog: Value = serde_json::from_str(catalog_json)?;
    let action = catalog["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["key"] == key))
        .with_context(|| format!("no action '{key}' (see `d365 actions`)"))?;
    let mut out = format!(
        "{} ({key}){}\n{}\n\n",
        action["label"].as_str().unwrap_or(""),
        if action["deprecated"] == json!(true) {
            " — deprecated"
        } else {
            ""
        },
        action["description"].as_str().unwrap_or("")
    );
    let inputs = action["inputs"].as_array().cloned().unwrap_or_default();
    if inputs.is_empty() {
        out.push_str("No inputs.\n");
        return Ok(out);
    }
    let width = inputs
        .iter()
        .filter_map(|i| i["key"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!(
        "{:width$}  {:12}  {:8}  {:14}  {}\n",
        "INPUT", "TYPE", "REQUIRED", "DEFAULT", "LABEL — COMMENT"
    ));
    for i in &inputs {
        let default = match &i["default"] {
            Value::Null => "—".to_string(),
            v => v.to_string(),
        };
        out.push_str(&format!(
            "{:width$}  {:12}  {:8}  {:14}  {} — {}\n",
            i["key"].as_str().unwrap_or(""),
            i["type"].as_str().unwrap_or(""),
            if i["required"] == json!(true) {
                "yes"
            } else {
                "no"
            },
            default,
            i["label"].as_str().unwrap_or(""),
            i["comment"].as_str().unwrap_or(""),
        ));
    }
    Ok(out)
}

/// Progress for long runs on stderr: one line per follow-up page of a
/// paged query (requests carrying a `$skiptoken`). The same URL again is
/// the page retried (after a 429 or a 503), not a new page.
pub fn progress_observer() -> crate::host::route::Observer {
    let last = std::sync::Mutex::new((1usize, String::new()));
    std::sync::Arc::new(move |method, uri| {
        if is_follow_up_page(method, uri) {
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            let url = uri.to_string();
            if last.1 != url {
                last.0 += 1;
                last.1 = url;
                eprintln!("page {} … {}", last.0, uri.path());
            }
        }
    })
}

/// A request for the second or a later page of a paged query (a GET of a
/// nextLink, which carries `$skiptoken`): what `d365 run` prints and
/// `d365 mcp` reports as progress.
pub fn is_follow_up_page(method: &http::Method, uri: &http::Uri) -> bool {
    let query = uri.query().unwrap_or("");
    method == http::Method::GET && (query.contains("$skiptoken") || query.contains("%24skiptoken"))
}

pub fn read_connection(path: &Path) -> Result<ConnectionFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a connection file", path.display()))
}

pub fn write_connection(path: &Path, file: &ConnectionFile) -> Result<()> {
    let text = serde_json::to_string_pretty(file)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// The catalog as connector.yaml holds it.
pub fn catalog_yaml(catalog_json: &str) -> Result<String> {
    let value: Value = serde_json::from_str(catalog_json)?;
    let body = serde_norway::to_string(&value)?;
    Ok(format!(
        "# Generated from the component's catalog (src/catalog.rs) by `d365 actions --yaml`.\n# A test fails when this file and the component disagree.\n{body}"
    ))
}

/// A table of actions for people.
pub fn catalog_table(catalog_json: &str) -> Result<String> {
    let value: Value = serde_json::from_str(catalog_json)?;
    let mut out = String::new();
    let actions = value["actions"].as_array().cloned().unwrap_or_default();
    let width = actions
        .iter()
        .filter_map(|a| a["key"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(10);
    out.push_str(&format!("{:width$}  {}\n", "ACTION", "LABEL"));
    for a in &actions {
        let deprecated = if a["deprecated"] == json!(true) {
            "  (deprecated)"
        } else {
            ""
        };
        out.push_str(&format!(
            "{:width$}  {}{deprecated}\n",
            a["key"].as_str().unwrap_or(""),
            a["label"].as_str().unwrap_or("")
        ));
    }
    let triggers = value["triggers"].as_array().cloned().unwrap_or_default();
    if !triggers.is_empty() {
        out.push_str(&format!("\n{:width$}  {}\n", "TRIGGER", "LABEL"));
        for t in &triggers {
            out.push_str(&format!(
                "{:width$}  {}\n",
                t["key"].as_str().unwrap_or(""),
                t["label"].as_str().unwrap_or("")
            ));
        }
    }
    Ok(out)
}
