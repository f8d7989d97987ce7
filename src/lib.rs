//! Microsoft Dynamics 365 (Dataverse Web API) connector.
//!
//! Compiled for `wasm32-wasip2` this crate is a WebAssembly component whose
//! world is in `wit/connector.wit`; [`glue`] is the thin layer between the
//! generated bindings and the plain-Rust modules below, which unit tests reach
//! natively through a fake [`http::Platform`].
//!
//! Where things live:
//! - [`connection`]: connection settings, Web API URL normalisation, token state;
//! - [`auth`]: the OAuth 2.0 flows against the Microsoft identity platform;
//! - [`client`]: a Web API session (token reuse, one refresh on 401, retries);
//! - [`retry`]: the retry policy every action shares;
//! - [`http`]: request/response values and the platform trait (wasi:http);
//! - [`catalog`], [`schema`] and [`inputs`]: what builders see (JSON Schema
//!   included), and validation against it;
//! - [`types`] and [`odata`]: GUIDs, entity sets, record keys, query options
//!   and nextLinks (all escaping and URL encoding happens there);
//! - [`actions`]: the action registry, one module per group of actions;
//! - [`trigger`]: the webhook trigger (request in, event or rejection out),
//!   the RemoteExecutionContext it decodes, and its lifecycle (subscribe,
//!   check, unsubscribe through the Web API);
//! - [`fetchxml`] and [`batch`]: the FetchXML and `$batch` wire codecs;
//! - [`page`]: collection pages read with records kept as raw JSON, and the
//!   action [`page::Output`] that passes them through;
//! - [`percent`]: URL percent-encoding;
//! - [`rawjson`]: objects and arrays read as raw member text (no `Value` trees);
//! - [`error`] and [`secret`]: typed errors, redaction.
//! - `sandbox` (wasm only): keeps wasi-libc's environment and stdio
//!   imports out of the component.

pub mod actions;
pub mod assertion;
pub mod auth;
pub mod batch;
pub mod bytes;
pub mod catalog;
pub mod client;
pub mod connection;
pub mod controls;
pub mod error;
pub mod fetchxml;
pub mod http;
pub mod inputs;
pub mod metadata;
pub mod odata;
pub mod page;
pub mod percent;
pub mod rawjson;
pub mod retry;
pub mod schema;
pub mod secret;
pub mod trigger;
pub mod types;

#[cfg(target_family = "wasm")]
mod glue;
#[cfg(target_family = "wasm")]
mod sandbox;

use connection::{ConnectionType, Settings, TokenState};
use error::{ConnectorError, Result};
use http::Platform;

/// What `invoke` returns: the output JSON, and the new token state when the
/// call fetched or refreshed a token.
#[derive(Debug)]
pub struct Invocation {
    pub output: String,
    pub state: Option<TokenState>,
}

/// The single entry builders call: validates the action key, the connection
/// and the inputs, then runs the action.
pub fn invoke(
    platform: &mut dyn Platform,
    action_key: &str,
    kind: ConnectionType,
    settings_json: &str,
    state: Option<TokenState>,
    inputs_json: &str,
) -> Result<Invocation> {
    let action = actions::find(action_key).ok_or_else(|| actions::unknown_action(action_key))?;
    let settings = Settings::parse(kind, settings_json)?;
    if let Some(allowed) = &settings.allowed_operations
        && !allowed.iter().any(|a| a == action_key)
    {
        return Err(ConnectorError::forbidden(format!(
            "action '{action_key}' is not in this connection's allowedOperations"
        ))
        .with_hint("Add the action key to allowedOperations to permit it."));
    }
    let inputs = inputs::Inputs::parse(&action.def, inputs_json)?;
    let mut session = client::Session::new(platform, settings, state);
    // Errors may quote server text; none leaves with a credential in it.
    let output = (action.run)(&mut session, &inputs).map_err(|e| session.scrub(e))?;
    Ok(Invocation {
        output: output.into_json(),
        state: session.into_new_state(),
    })
}
