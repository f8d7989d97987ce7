//! The vocabulary of the catalog: what an action, a trigger, a connection
//! and an input are. Every action module, the inputs validator and the
//! schema generator build on these; none of them needs the assembled
//! catalog ([`crate::catalog`]), which is what keeps imports one-way.

use serde::Serialize;
use serde_json::Value;

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
