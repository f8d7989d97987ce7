//! The connector's description for builders: connections, trigger and
//! actions with every input's key, label, type, default, required flag and
//! comment. This is the single source of truth: `connector.yaml` is generated
//! from it (`d365 actions --yaml`) and a test keeps the two equal; input
//! validation ([`crate::inputs`]) reads the same definitions.
//!
//! Connections are defined here; each action group defines its actions next
//! to their code (`definitions()` in `src/actions/*.rs`). Only actions that
//! work are listed: an action appears in the same change that implements it.

use serde::Serialize;
use serde_json::{Value, json};

pub const CONNECTOR_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    pub key: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub version: &'static str,
    pub connections: Vec<ConnectionDef>,
    pub triggers: Vec<TriggerDef>,
    pub actions: Vec<ActionDef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionDef {
    pub key: &'static str,
    pub label: &'static str,
    pub description: &'static str,
    pub inputs: Vec<InputDef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionDef {
    pub key: &'static str,
    pub label: &'static str,
    pub description: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
    /// Built on demand ([`Self::inputs`]): a call needs its own action's
    /// inputs only, and building a whole group's (labels, examples and
    /// defaults as JSON values) was ~10 % of a getEntity's guest time.
    #[serde(rename = "inputs", serialize_with = "built_inputs")]
    pub input_defs: fn() -> Vec<InputDef>,
}

impl ActionDef {
    pub fn inputs(&self) -> Vec<InputDef> {
        (self.input_defs)()
    }
}

fn built_inputs<S: serde::Serializer>(f: &fn() -> Vec<InputDef>, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&f(), s)
}

/// A trigger: something that starts a flow (defined in [`crate::trigger`]).
#[derive(Debug, Clone, Serialize)]
pub struct TriggerDef {
    pub key: &'static str,
    pub label: &'static str,
    pub description: &'static str,
    pub kind: TriggerKind,
    pub inputs: Vec<InputDef>,
}

/// How the host runs a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TriggerKind {
    /// The host receives an HTTP request and hands it to the exported
    /// webhook function.
    Webhook,
    /// The host calls the action of the same key on a schedule
    /// (`actions.invoke`), keeping the `state` it returns for the next call.
    Polling,
}

/// Input types as builders render them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum InputType {
    String,
    Boolean,
    Integer,
    /// Any JSON value (usually an object).
    Json,
    /// Source text in a language (FetchXML).
    Code,
    /// A list of strings; a comma-separated string is accepted too.
    List,
    /// A list of `{key, value}` objects; a plain object is accepted too.
    KeyValueList,
    /// A secret string (shown masked, never echoed).
    Password,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputDef {
    pub key: &'static str,
    pub label: &'static str,
    #[serde(rename = "type")]
    pub ty: InputType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    pub required: bool,
    pub comment: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// Kept as the JSON text the caller sent ([`crate::inputs::Inputs::raw`])
    /// instead of a parsed value: for large `json` inputs the action reads
    /// itself (runBatch's 1,000 items).
    #[serde(skip)]
    pub raw: bool,
}

/// Starts an input definition; chain the modifiers below.
///
/// Size: this and the modifiers are `inline(never)`; inlined, every one of
/// the catalog's inputs was a copy of their code in the component.
#[inline(never)]
pub fn input(
    key: &'static str,
    label: &'static str,
    ty: InputType,
    comment: &'static str,
) -> InputDef {
    InputDef {
        key,
        label,
        ty,
        default: None,
        required: false,
        comment,
        example: None,
        choices: None,
        min: None,
        max: None,
        raw: false,
    }
}

impl InputDef {
    #[inline(never)]
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    #[inline(never)]
    pub fn default(mut self, value: Value) -> Self {
        self.default = Some(value);
        self
    }
    #[inline(never)]
    pub fn example(mut self, value: Value) -> Self {
        self.example = Some(value);
        self
    }
    #[inline(never)]
    pub fn choices(mut self, choices: &[&'static str]) -> Self {
        self.choices = Some(choices.to_vec());
        self
    }
    /// See [`InputDef::raw`].
    #[inline(never)]
    pub fn raw(mut self) -> Self {
        self.raw = true;
        self
    }
    #[inline(never)]
    pub fn range(mut self, min: i64, max: i64) -> Self {
        self.min = Some(min);
        self.max = Some(max);
        self
    }
}

impl Catalog {
    pub fn action(&self, key: &str) -> Option<&ActionDef> {
        self.actions.iter().find(|a| a.key == key)
    }

    pub fn trigger(&self, key: &str) -> Option<&TriggerDef> {
        self.triggers.iter().find(|t| t.key == key)
    }

    /// The catalog as JSON, each action carrying its generated
    /// `inputSchema` and `outputSchema` (JSON Schema 2020-12).
    pub fn to_json(&self) -> String {
        // Serialising plain owned data cannot fail.
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(actions) = v.get_mut("actions").and_then(Value::as_array_mut) {
            for (entry, def) in actions.iter_mut().zip(&self.actions) {
                if let Some(obj) = entry.as_object_mut() {
                    obj.insert("inputSchema".into(), crate::schema::input_schema(def));
                    obj.insert("outputSchema".into(), crate::schema::output_schema(def.key));
                }
            }
        }
        v.to_string()
    }
}

fn allowed_operations() -> InputDef {
    input(
        "allowedOperations",
        "Allowed Operations",
        InputType::List,
        "Default-deny list of action keys; when present, any other action is refused before a request is sent.",
    )
}

fn region() -> InputDef {
    input(
        "region",
        "Region",
        InputType::String,
        "Short form: with webApiUrl set to just the environment name (contoso), the region code builds https://contoso.{region}.dynamics.com.",
    )
    .choices(crate::connection::REGIONS)
}

fn retry_policy() -> InputDef {
    input(
        "retryPolicy",
        "Retry Policy",
        InputType::Json,
        "How every action retries throttling (429, with Retry-After), 503, 502/504 and network errors; writes are retried only when they cannot have been applied. Object with any of maxRetries (default 5), baseDelayMs (1000), maxDelayMs (30000), maxRetryAfterSeconds (300), maxTotalSeconds (600).",
    )
    .example(json!({"maxRetries": 3, "maxTotalSeconds": 120}))
}

fn web_api_url() -> InputDef {
    input(
        "webApiUrl",
        "Web API URL",
        InputType::String,
        "The environment URL, e.g. https://contoso.crm.dynamics.com; …/api/data/v9.2/ forms are accepted too.",
    )
    .required()
    .example(json!("https://contoso.crm.dynamics.com"))
}

fn connections() -> Vec<ConnectionDef> {
    vec![
        ConnectionDef {
            key: "oauth2AuthCode",
            label: "OAuth 2.0 Authorization Code",
            description: "Delegated: acts as the signed-in Dynamics user (PKCE S256, refresh tokens).",
            inputs: vec![
                web_api_url(),
                region(),
                input(
                    "scopes",
                    "Scopes",
                    InputType::String,
                    "Space-separated. Default: {webApiUrl}/user_impersonation offline_access; without offline_access no refresh token is issued.",
                ),
                input(
                    "clientId",
                    "Client ID",
                    InputType::String,
                    "The app registration's Application (client) ID.",
                )
                .required(),
                input(
                    "clientSecret",
                    "Client Secret",
                    InputType::Password,
                    "For confidential (web) app registrations; leave empty for public clients.",
                ),
                input(
                    "authorizeUrl",
                    "Authorize URL",
                    InputType::String,
                    "Default: https://login.microsoftonline.com/{tenantId or organizations}/oauth2/v2.0/authorize.",
                ),
                input(
                    "tokenUrl",
                    "Token URL",
                    InputType::String,
                    "Default: https://login.microsoftonline.com/{tenantId or organizations}/oauth2/v2.0/token.",
                ),
                input(
                    "tenantId",
                    "Tenant ID",
                    InputType::String,
                    "Directory (tenant) ID or domain; default organizations.",
                ),
                input(
                    "redirectUri",
                    "Redirect URI",
                    InputType::String,
                    "Must equal a redirect URI registered on the app, e.g. http://localhost:8400/callback.",
                ),
                allowed_operations(),
                retry_policy(),
            ],
        },
        ConnectionDef {
            key: "oauth2ClientCredentials",
            label: "OAuth 2.0 Client Credentials",
            description: "Server-to-server as an Application User of the environment.",
            inputs: vec![
                web_api_url(),
                region(),
                input(
                    "tokenUrl",
                    "Token URL",
                    InputType::String,
                    "https://login.microsoftonline.com/{tenant id}/oauth2/v2.0/token",
                )
                .required(),
                input(
                    "scopes",
                    "Scopes",
                    InputType::String,
                    "Default: {webApiUrl}/.default.",
                ),
                input(
                    "clientId",
                    "Client ID",
                    InputType::String,
                    "The app registration's Application (client) ID.",
                )
                .required(),
                input(
                    "clientSecret",
                    "Client secret value",
                    InputType::Password,
                    "The secret's Value (not its Secret ID). Required unless a certificate credential is given.",
                ),
                input(
                    "certificatePem",
                    "Certificate Private Key (PEM)",
                    InputType::Password,
                    "Certificate credential instead of a secret: the PKCS#8 private key (-----BEGIN PRIVATE KEY-----), optionally followed by the certificate.",
                ),
                input(
                    "certificateThumbprint",
                    "Certificate Thumbprint",
                    InputType::String,
                    "Hex SHA-1 thumbprint (as the Azure portal shows) or SHA-256; not needed when certificatePem includes the certificate.",
                ),
                input(
                    "assertionAlgorithm",
                    "Assertion Algorithm",
                    InputType::String,
                    "PS256 (x5t#S256 header) or RS256 (x5t header). Default: PS256 when the SHA-256 thumbprint is known, else RS256.",
                )
                .choices(&["PS256", "RS256"]),
                allowed_operations(),
                retry_policy(),
            ],
        },
    ]
}

/// The whole catalog.
pub fn catalog() -> Catalog {
    Catalog {
        key: "dynamics365",
        name: "Microsoft Dynamics 365",
        description: "Dataverse Web API (OData v4) connector: records, FetchXML, batches, metadata and raw requests.",
        version: CONNECTOR_VERSION,
        connections: connections(),
        triggers: crate::trigger::definitions(),
        actions: crate::actions::definitions(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_camel_case() {
        let c = catalog();
        let mut keys: Vec<_> = c.actions.iter().map(|a| a.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), c.actions.len());
        for a in &c.actions {
            assert!(
                a.key.chars().next().unwrap().is_ascii_lowercase(),
                "{}",
                a.key
            );
            let defs = a.inputs();
            let mut inputs: Vec<_> = defs.iter().map(|i| i.key).collect();
            inputs.sort();
            inputs.dedup();
            assert_eq!(inputs.len(), defs.len(), "duplicate input in {}", a.key);
        }
        for t in &c.triggers {
            // A polling trigger runs as the action of its key; a webhook
            // trigger is never an action.
            match t.kind {
                TriggerKind::Polling => {
                    assert!(c.action(t.key).is_some(), "{} has no action", t.key)
                }
                TriggerKind::Webhook => assert!(c.action(t.key).is_none(), "{} is both", t.key),
            }
            assert!(c.trigger(t.key).is_some());
        }
    }

    #[test]
    fn json_has_connections_and_actions() {
        let v: Value = serde_json::from_str(&catalog().to_json()).unwrap();
        assert_eq!(v["connections"].as_array().unwrap().len(), 2);
        assert!(
            v["actions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["key"] == "getCurrentUser")
        );
        let webhook = &v["triggers"][0];
        assert_eq!(webhook["key"], "webhook");
        assert_eq!(webhook["inputs"][0]["key"], "webhookKey");
        assert_eq!(webhook["inputs"][0]["label"], "Webhook Authentication Key");
        assert_eq!(webhook["inputs"][0]["type"], "password");
        assert_eq!(webhook["inputs"][0]["required"], false);
    }
}
