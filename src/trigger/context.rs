//! The RemoteExecutionContext a Dataverse webhook posts, decoded: the
//! properties every event needs checked for shape, WCF-serialized values
//! flattened to plain JSON, and the event the trigger emits.

use crate::inputs::describe;
use crate::trigger::wcf_date::parse_wcf_date;
use crate::types::Guid;
use serde_json::{Map, Value, json};

/// The typed part of a RemoteExecutionContext: the properties every event
/// needs, checked for shape. Everything else stays in the raw JSON.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    pub(crate) message_name: &'a str,
    pub(crate) primary_entity_name: &'a str,
    pub(crate) primary_entity_id: &'a str,
    secondary_entity_name: Option<&'a str>,
    stage: Option<i64>,
    depth: Option<i64>,
    mode: Option<i64>,
    ids: Vec<(&'static str, Option<&'a str>)>,
    organization_name: Option<&'a str>,
    operation_created_on: Option<String>,
    input_parameters: Option<Map<String, Value>>,
    output_parameters: Option<Map<String, Value>>,
    pre_images: Option<Map<String, Value>>,
    post_images: Option<Map<String, Value>>,
}

/// Context properties that hold GUIDs (or null).
const ID_PROPERTIES: [&str; 8] = [
    "UserId",
    "InitiatingUserId",
    "OrganizationId",
    "BusinessUnitId",
    "CorrelationId",
    "RequestId",
    "OperationId",
    "PrimaryEntityId",
];

impl<'a> Context<'a> {
    pub(crate) fn parse(raw: &'a Value) -> Result<Context<'a>, String> {
        let Value::Object(obj) = raw else {
            return Err(format!(
                "the body is JSON but {}, not a RemoteExecutionContext object",
                describe(raw)
            ));
        };
        let required_str = |name: &str| -> Result<&'a str, String> {
            match obj.get(name) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
                Some(other) => Err(format!(
                    "{name} must be a non-empty string, got {}",
                    describe(other)
                )),
                None => Err(format!(
                    "{name} is missing: the body is not a RemoteExecutionContext"
                )),
            }
        };
        let optional_str = |name: &str| -> Result<Option<&'a str>, String> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(other) => Err(format!("{name} must be a string, got {}", describe(other))),
            }
        };
        let optional_int = |name: &str| -> Result<Option<i64>, String> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| format!("{name} must be a whole number, got {n}")),
                Some(other) => Err(format!(
                    "{name} must be a whole number, got {}",
                    describe(other)
                )),
            }
        };
        let message_name = required_str("MessageName")?;
        let primary_entity_name = required_str("PrimaryEntityName")?;
        let primary_entity_id = required_str("PrimaryEntityId")?;
        let mut ids = Vec::with_capacity(ID_PROPERTIES.len());
        for name in ID_PROPERTIES {
            let value = optional_str(name)?;
            if let Some(v) = value
                && !Guid::is_hyphenated(v)
            {
                return Err(format!("{name} must be a GUID, got '{}'", printable(v, 40)));
            }
            ids.push((name, value));
        }
        let operation_created_on = match obj.get("OperationCreatedOn") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(parse_wcf_date(s).map(|d| d.to_iso()).ok_or_else(|| {
                    format!(
                        "OperationCreatedOn must be a /Date(ms)/ value, got '{}'",
                        printable(s, 40)
                    )
                })?)
            }
            Some(other) => {
                return Err(format!(
                    "OperationCreatedOn must be a /Date(ms)/ string, got {}",
                    describe(other)
                ));
            }
        };
        Ok(Context {
            message_name,
            primary_entity_name,
            primary_entity_id,
            secondary_entity_name: optional_str("SecondaryEntityName")?,
            stage: optional_int("Stage")?,
            depth: optional_int("Depth")?,
            mode: optional_int("Mode")?,
            ids,
            organization_name: optional_str("OrganizationName")?,
            operation_created_on,
            input_parameters: parameter_collection(obj, "InputParameters")?,
            output_parameters: parameter_collection(obj, "OutputParameters")?,
            pre_images: image_collection(obj, "PreEntityImages")?,
            post_images: image_collection(obj, "PostEntityImages")?,
        })
    }

    fn id(&self, name: &str) -> Value {
        self.ids
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| *v)
            .map_or(Value::Null, |v| Value::String(v.to_string()))
    }
}

/// A WCF dictionary (`[{"key": …, "value": …}]`) as a flattened object.
/// Absent or null (Dataverse strips them when the payload is too large) is
/// `None`.
fn parameter_collection(
    obj: &Map<String, Value>,
    name: &str,
) -> Result<Option<Map<String, Value>>, String> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => key_value_list(v)
            .map(|pairs| {
                // Inserting one by one (later keys win, as collect did) keeps
                // BTreeMap::from_iter and its sort out of the component.
                let mut map = Map::new();
                for (k, v) in pairs {
                    map.insert(k.to_string(), flatten(v));
                }
                Some(map)
            })
            .map_err(|e| format!("{name} {e}")),
    }
}

/// Pre/PostEntityImages: a WCF dictionary whose values are entities.
fn image_collection(
    obj: &Map<String, Value>,
    name: &str,
) -> Result<Option<Map<String, Value>>, String> {
    let Some(value) = obj.get(name).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let pairs = key_value_list(value).map_err(|e| format!("{name} {e}"))?;
    let mut images = Map::new();
    for (image_name, image) in pairs {
        if !is_entity(image) {
            return Err(format!(
                "{name}['{}'] must be an Entity (an object with Attributes), got {}",
                printable(image_name, 40),
                describe(image)
            ));
        }
        images.insert(image_name.to_string(), flatten(image));
    }
    Ok(Some(images))
}

fn key_value_list(value: &Value) -> Result<Vec<(&str, &Value)>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "must be a list of {{\"key\", \"value\"}} pairs, got {}",
            describe(value)
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match (item.get("key"), item.get("value")) {
            (Some(Value::String(k)), Some(v)) => Ok((k.as_str(), v)),
            _ => Err(format!(
                "[{i}] must be an object {{\"key\": string, \"value\": …}}"
            )),
        })
        .collect()
}

fn is_entity(value: &Value) -> bool {
    value.get("Attributes").is_some_and(Value::is_array)
        && value
            .get("__type")
            .and_then(Value::as_str)
            .is_none_or(|t| type_name(t) == "Entity")
}

/// `"EntityReference:http://schemas…"` → `"EntityReference"`.
fn type_name(wcf_type: &str) -> &str {
    wcf_type.split(':').next().unwrap_or("")
}

/// Converts a WCF-serialized value to plain JSON:
/// - `/Date(ms±hhmm)/` → ISO-8601 UTC;
/// - EntityReference → `{id, logicalName, name}`;
/// - OptionSetValue, Money, BooleanManagedProperty, AliasedValue → the value;
/// - OptionSetValueCollection → a list of numbers;
/// - Entity → its attributes as an object (recursively);
/// - EntityCollection → a list of such objects;
/// - any other `__type`d object → its fields without `__type`.
///
/// serde_json caps nesting at 128 levels, which bounds the recursion.
pub fn flatten(value: &Value) -> Value {
    match value {
        Value::String(s) => match parse_wcf_date(s) {
            Some(d) => Value::String(d.to_iso()),
            None => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(flatten).collect()),
        Value::Object(obj) => {
            let ty = obj.get("__type").and_then(Value::as_str).map(type_name);
            match ty {
                Some("EntityReference") => json!({
                    "id": obj.get("Id").map(flatten).unwrap_or(Value::Null),
                    "logicalName": obj.get("LogicalName").map(flatten).unwrap_or(Value::Null),
                    "name": obj.get("Name").map(flatten).unwrap_or(Value::Null),
                }),
                Some("Entity") => flatten_entity(obj),
                Some("EntityCollection") => match obj.get("Entities") {
                    Some(Value::Array(items)) => Value::Array(items.iter().map(flatten).collect()),
                    _ => Value::Array(Vec::new()),
                },
                Some("OptionSetValueCollection") => match obj.get("Values").or(obj.get("Value")) {
                    Some(v) => flatten(v),
                    None => Value::Array(Vec::new()),
                },
                Some(_) if obj.contains_key("Value") => {
                    obj.get("Value").map(flatten).unwrap_or(Value::Null)
                }
                None if obj.get("Attributes").is_some_and(Value::is_array) => flatten_entity(obj),
                _ => {
                    let mut map = Map::new();
                    for (k, v) in obj.iter().filter(|(k, _)| k.as_str() != "__type") {
                        map.insert(k.clone(), flatten(v));
                    }
                    Value::Object(map)
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
    }
}

/// An Entity's `Attributes` (a WCF dictionary) as a plain object. Pairs that
/// are not `{key, value}` are skipped rather than guessed at.
fn flatten_entity(obj: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    if let Some(Value::Array(attrs)) = obj.get("Attributes") {
        for attr in attrs {
            if let (Some(Value::String(k)), Some(v)) = (attr.get("key"), attr.get("value")) {
                out.insert(k.clone(), flatten(v));
            }
        }
    }
    Value::Object(out)
}

/// The event as the trigger emits it. Context properties keep their
/// Dataverse names (so Microsoft's documentation applies); what the connector
/// adds is camelCase.
pub(crate) fn event_json(
    context: &Context<'_>,
    raw: &Value,
    headers: Map<String, Value>,
    authenticated: bool,
) -> Value {
    let size_exceeded = headers
        .get("x-ms-dynamics-msg-size-exceeded")
        .and_then(Value::as_str)
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("false") && !v.trim().is_empty());
    let target = context
        .input_parameters
        .as_ref()
        .and_then(|p| p.get("Target"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut event = Map::new();
    event.insert("authenticated".into(), Value::Bool(authenticated));
    event.insert("MessageName".into(), json!(context.message_name));
    event.insert(
        "PrimaryEntityName".into(),
        json!(context.primary_entity_name),
    );
    event.insert("PrimaryEntityId".into(), json!(context.primary_entity_id));
    event.insert(
        "SecondaryEntityName".into(),
        json!(context.secondary_entity_name),
    );
    event.insert("Stage".into(), json!(context.stage));
    event.insert(
        "stageName".into(),
        json!(context.stage.and_then(stage_name)),
    );
    event.insert("Depth".into(), json!(context.depth));
    event.insert("Mode".into(), json!(context.mode));
    event.insert("modeName".into(), json!(context.mode.and_then(mode_name)));
    for name in ID_PROPERTIES {
        if name != "PrimaryEntityId" {
            event.insert(name.into(), context.id(name));
        }
    }
    event.insert("OrganizationName".into(), json!(context.organization_name));
    event.insert(
        "OperationCreatedOn".into(),
        json!(context.operation_created_on),
    );
    event.insert("Target".into(), target);
    event.insert(
        "InputParameters".into(),
        context
            .input_parameters
            .clone()
            .map_or(Value::Null, Value::Object),
    );
    event.insert(
        "OutputParameters".into(),
        context
            .output_parameters
            .clone()
            .map_or(Value::Null, Value::Object),
    );
    event.insert(
        "PreEntityImages".into(),
        Value::Object(context.pre_images.clone().unwrap_or_default()),
    );
    event.insert(
        "PostEntityImages".into(),
        Value::Object(context.post_images.clone().unwrap_or_default()),
    );
    event.insert("messageSizeExceeded".into(), Value::Bool(size_exceeded));
    event.insert("headers".into(), Value::Object(headers));
    event.insert("context".into(), raw.clone());
    Value::Object(event)
}

/// Adds `eventId`: the same for every delivery of one event (Dataverse
/// retries a 502/503/504 with the same context), different for two events,
/// so that a platform can drop duplicates. It is the SHA-256 (first 16
/// bytes, hex) of the context's OperationId, CorrelationId, Depth, owning
/// step (two steps of one operation are two events), message and record;
/// a context without OperationId and CorrelationId hashes the body as
/// sent instead.
pub(crate) fn add_event_id(event: &mut Value, body: &str) {
    use sha2::{Digest, Sha256};
    let context = &event["context"];
    let text = |name: &str| context[name].as_str().unwrap_or("");
    let mut hasher = Sha256::new();
    if text("OperationId").is_empty() && text("CorrelationId").is_empty() {
        hasher.update(body.as_bytes());
    } else {
        for name in [
            "OperationId",
            "CorrelationId",
            "MessageName",
            "PrimaryEntityId",
        ] {
            hasher.update(text(name).as_bytes());
            hasher.update([0u8]);
        }
        hasher.update(context["Depth"].as_i64().unwrap_or(0).to_le_bytes());
        hasher.update(
            context["OwningExtension"]["Id"]
                .as_str()
                .unwrap_or("")
                .as_bytes(),
        );
    }
    let id = super::hex(&hasher.finalize()[..16]);
    event["eventId"] = Value::String(id);
}

/// Adds `changedAttributes`: for an Update, the columns (the filtering
/// columns when there are any, else those the Target sets) whose value
/// differs between the pre- and post-image, or, without both images, that
/// the Target sets; for a Create, the columns the Target sets; otherwise
/// none. Lookups compare by id.
pub(crate) fn add_changed_attributes(event: &mut Value, filtering: &[String]) {
    let first_image = |name: &str| -> Option<Map<String, Value>> {
        event[name]
            .as_object()
            .and_then(|images| images.values().find_map(|v| v.as_object().cloned()))
    };
    let target = event["Target"].as_object().cloned().unwrap_or_default();
    let entity = event["PrimaryEntityName"].as_str().unwrap_or("");
    let is_id = |k: &str| k.strip_suffix("id") == Some(entity);
    let changed: Vec<Value> = match event["MessageName"].as_str() {
        Some("Update") => {
            let candidates: Vec<String> = if filtering.is_empty() {
                target.keys().filter(|k| !is_id(k)).cloned().collect()
            } else {
                filtering.to_vec()
            };
            let (pre, post) = (
                first_image("PreEntityImages"),
                first_image("PostEntityImages"),
            );
            candidates
                .into_iter()
                .filter(|c| match (&pre, &post) {
                    (Some(pre), Some(post)) => pre.get(c) != post.get(c),
                    _ => target.contains_key(c),
                })
                .map(Value::String)
                .collect()
        }
        Some("Create") => target
            .keys()
            .filter(|k| !is_id(k))
            .map(|k| Value::String(k.clone()))
            .collect(),
        _ => Vec::new(),
    };
    event["changedAttributes"] = Value::Array(changed);
}

fn stage_name(stage: i64) -> Option<&'static str> {
    Some(match stage {
        10 => "PreValidation",
        20 => "PreOperation",
        30 => "MainOperation",
        40 => "PostOperation",
        _ => return None,
    })
}

fn mode_name(mode: i64) -> Option<&'static str> {
    Some(match mode {
        0 => "Synchronous",
        1 => "Asynchronous",
        _ => return None,
    })
}

/// control characters replaced.
pub(crate) fn printable(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}
