//! The `batchActions` item model: validating a workflow's list of
//! operations (everything before anything is sent) and turning it into
//! batch parts.

use super::*;
use crate::controls::{self, Controls};
use crate::error::{ConnectorError, Result};
use crate::percent;
use crate::rawjson;
use crate::types::{EntityKey, EntitySet, Guid, KeyValue, is_identifier};
use serde_json::value::RawValue;
use serde_json::{Map, Value, error::Category};
use std::borrow::Cow;

// ---------------------------------------------------------------------------
// The `batchActions` item model.

/// What an item does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchAction {
    /// `POST {collection}`.
    Create,
    /// `PATCH {collection}({key})` with `If-Match: *` (update only, 404 when missing).
    Update,
    /// `PATCH {collection}({key})` (creates when missing).
    Upsert,
    /// `DELETE {collection}({key})`.
    Delete,
    /// `GET {collection}[({key})][?query]`.
    Get,
}

impl BatchAction {
    const ALL: [Self; 5] = [
        Self::Create,
        Self::Update,
        Self::Upsert,
        Self::Delete,
        Self::Get,
    ];

    /// An item's `action`, any case.
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|a| a.key().eq_ignore_ascii_case(s))
    }

    pub fn is_write(self) -> bool {
        !matches!(self, Self::Get)
    }

    /// As items and results name it.
    pub fn key(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Upsert => "upsert",
            Self::Delete => "delete",
            Self::Get => "get",
        }
    }
}

/// How an item addresses its record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ItemKey {
    /// A primary key GUID or alternate key values.
    Record(EntityKey),
    /// A record created earlier in the same change set (`$1`).
    ContentRef(usize),
}

impl ItemKey {
    /// `key` is a GUID (braces allowed), `$n`, an alternate key in OData
    /// syntax (`accountnumber='A-1'`), or an object of alternate key values
    /// (`{"accountnumber": "A-1"}`). `input` names the field for errors.
    fn parse(input: &str, value: &Value) -> Result<Self> {
        match value {
            Value::String(s) => {
                if let Some(n) = parse_content_ref(s.trim()) {
                    return Ok(Self::ContentRef(n));
                }
                EntityKey::parse(input, s).map(Self::Record)
            }
            Value::Object(map) if !map.is_empty() => {
                let mut pairs = Vec::with_capacity(map.len());
                for (name, v) in map {
                    if !is_identifier(name) {
                        return Err(ConnectorError::invalid_input(
                            input,
                            format!("'{name}' is not a column name"),
                        ));
                    }
                    let value = match v {
                        Value::String(s) => KeyValue::String(s.clone()),
                        Value::Number(n) => KeyValue::Bare(n.to_string()),
                        Value::Bool(b) => KeyValue::Bare(b.to_string()),
                        _ => {
                            return Err(ConnectorError::invalid_input(
                                input,
                                format!(
                                    "the value of '{name}' must be a string, a number or true/false"
                                ),
                            ));
                        }
                    };
                    pairs.push((name.clone(), value));
                }
                Ok(Self::Record(EntityKey::Alternate(pairs)))
            }
            _ => Err(ConnectorError::invalid_input(
                input,
                "must be a GUID, an alternate key such as accountnumber='A-1', an object of alternate key values, or $n",
            )),
        }
    }

    fn path(&self, collection_url: &str) -> String {
        match self {
            Self::Record(k) => format!("{collection_url}{}", k.to_segment()),
            Self::ContentRef(n) => format!("${n}"),
        }
    }
}

pub(super) fn parse_guid(s: &str) -> Option<String> {
    Guid::parse(s).map(Guid::into_string)
}

fn parse_content_ref(s: &str) -> Option<usize> {
    let n = s.strip_prefix('$')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// One validated `batchActions` item. Its body borrows from the input.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem<'a> {
    pub collection: EntitySet,
    pub action: BatchAction,
    key: Option<ItemKey>,
    pub data: Option<ItemData<'a>>,
    pub return_representation: bool,
    pub headers: Vec<(String, String)>,
    /// OData query options for `get` (`$select=name&$filter=…`).
    pub query: Option<String>,
    /// Query options of the item's write controls (`tag`, `partitionId`),
    /// encoded.
    pub options: Vec<(&'static str, String)>,
}

/// An item's `data`: the text of a JSON object, as the input wrote it, and
/// sent as it is. 1,000 creates are neither parsed into maps nor serialised
/// again (with the inputs' `Value` tree, ~1.2 ms of a 1,000-item runBatch,
/// `ab_cost`), and numbers keep every digit the caller wrote (a decimal
/// column's 0.1000000000000000055 is not rounded through an f64).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemData<'a> {
    text: Cow<'a, str>,
    /// The `$n` references in it, in order.
    refs: Vec<usize>,
}

impl<'a> ItemData<'a> {
    /// `text` is a JSON object. Only a body that could hold a `$n` reference
    /// (a `$`, or one escaped as `\u0024`) is parsed, to find them. Both
    /// searches start from bytes that are rare in JSON (`"` is not: a
    /// search for `"$` took 0.2 ms of a 1,000-item batch).
    fn parse(i: usize, text: Cow<'a, str>) -> Result<Self> {
        let bytes = text.as_bytes();
        let refs =
            if memchr::memchr(b'$', bytes).is_some() || crate::bytes::contains(bytes, b"\\u0024") {
                // Valid JSON, but not always a Value (1e400 is out of range).
                let value = serde_json::from_str::<Value>(&text)
                    .map_err(|e| field_error(i, "data", format!("is not valid JSON ({e})")))?;
                content_refs("", &value)
            } else {
                Vec::new()
            };
        Ok(ItemData { text, refs })
    }

    /// The object's JSON text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The object's members (bulk requests add to them).
    pub fn to_map(&self) -> serde_json::Result<Map<String, Value>> {
        match serde_json::from_str(&self.text)? {
            Value::Object(m) => Ok(m),
            // Checked when the item was parsed.
            _ => Err(serde::de::Error::custom("not a JSON object")),
        }
    }

    fn is_empty(&self) -> bool {
        self.text
            .trim()
            .strip_prefix('{')
            .is_some_and(|rest| rest.trim_start().starts_with('}'))
    }

    fn into_owned(self) -> ItemData<'static> {
        ItemData {
            text: Cow::Owned(self.text.into_owned()),
            refs: self.refs,
        }
    }
}

/// The members a `batchActions` item may have.
pub const ITEM_FIELDS: &[&str] = &[
    "collection",
    "action",
    "key",
    "data",
    "returnRepresentation",
    "headers",
    "query",
    // The write controls (crate::controls::WRITE_KEYS), for this item only.
    "impersonateUserId",
    "impersonationHeader",
    "bypassBusinessLogic",
    "bypassStepIds",
    "suppressFlowTriggers",
    "duplicateDetection",
    "partitionId",
    "tag",
];

/// Headers an item may not set: the batch framing and the connection own them.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "content-length",
    "content-id",
    "content-transfer-encoding",
    "host",
];

fn field_error(i: usize, field: &str, message: impl Into<String>) -> ConnectorError {
    ConnectorError::invalid_input(format!("{INPUT}[{i}].{field}"), message)
}

/// [`parse_items`] of a `Value` (tests, and callers that hold one), the
/// items detached from it.
pub fn parse_value(list: &Value, atomic: bool) -> Result<Vec<BatchItem<'static>>> {
    let raw = serde_json::value::to_raw_value(list)
        .map_err(|e| ConnectorError::invalid_input(INPUT, format!("is not JSON ({e})")))?;
    let items = parse_items(&raw, atomic)?;
    Ok(items.into_iter().map(BatchItem::into_owned).collect())
}

/// [`parse_value`] of a test's literal list, which must be valid.
#[cfg(test)]
pub(crate) fn parse_owned(list: Value, atomic: bool) -> Vec<BatchItem<'static>> {
    parse_value(&list, atomic).expect("a valid test list")
}

/// Validates the whole `batchActions` list (its JSON text) before anything
/// is sent. `atomic` is whether the writes will run as one change set: `$n`
/// references only resolve inside a change set.
pub fn parse_items(value: &RawValue, atomic: bool) -> Result<Vec<BatchItem<'_>>> {
    // Builders often pass the list as JSON text: its items own their bodies.
    if let Some(text) = rawjson::string(value) {
        let items = parse_list(&text, atomic)?;
        return Ok(items.into_iter().map(BatchItem::into_owned).collect());
    }
    parse_list(value.get(), atomic)
}

/// `text` is the list's JSON (from a string input, not yet checked).
fn parse_list(text: &str, atomic: bool) -> Result<Vec<BatchItem<'_>>> {
    let list = rawjson::elements(text).map_err(|e| {
        if e.classify() == Category::Data {
            ConnectorError::invalid_input(INPUT, "must be an array of items")
        } else {
            ConnectorError::invalid_input(INPUT, format!("is not a JSON array ({e})"))
        }
    })?;
    if list.is_empty() {
        return Err(ConnectorError::invalid_input(INPUT, "has no items"));
    }
    if list.len() > MAX_REQUESTS {
        return Err(ConnectorError::invalid_input(
            INPUT,
            format!(
                "has {} items; Dataverse runs at most {MAX_REQUESTS} requests per $batch: split the list",
                list.len()
            ),
        ));
    }
    let mut items: Vec<BatchItem<'_>> = Vec::with_capacity(list.len());
    for (i, raw) in list.into_iter().enumerate() {
        let members = rawjson::members(raw.get()).map_err(|_| {
            ConnectorError::invalid_input(
                format!("{INPUT}[{i}]"),
                "must be an object {collection, action, key, data, …}",
            )
        })?;
        let item = parse_item(i, members, atomic, &items)?;
        items.push(item);
    }
    Ok(items)
}

/// A small member (key, headers) as a `Value`.
fn value_of(i: usize, field: &str, raw: &RawValue) -> Result<Value> {
    serde_json::from_str(raw.get())
        .map_err(|e| field_error(i, field, format!("is not valid JSON ({e})")))
}

fn parse_item<'a>(
    i: usize,
    members: rawjson::Members<'a>,
    atomic: bool,
    earlier: &[BatchItem<'_>],
) -> Result<BatchItem<'a>> {
    // The first unknown by name, whatever the order they came in.
    if let Some(unknown) = members
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !ITEM_FIELDS.contains(&k.as_ref()))
        .min()
    {
        return Err(field_error(
            i,
            unknown,
            format!("is not an item field (fields: {})", ITEM_FIELDS.join(", ")),
        ));
    }
    // Absent, `null` and `""` are all "not given".
    let present = |name: &str| {
        rawjson::member(&members, name).filter(|r| !matches!(r.get(), "null" | "\"\""))
    };
    let action = match present("action") {
        None => {
            return Err(field_error(
                i,
                "action",
                "is required (create, update, upsert, delete or get)",
            ));
        }
        Some(r) => match rawjson::string(r) {
            Some(s) => BatchAction::parse(&s).ok_or_else(|| {
                field_error(
                    i,
                    "action",
                    format!("'{s}' is not one of create, update, upsert, delete, get"),
                )
            })?,
            None => return Err(field_error(i, "action", "must be a string")),
        },
    };
    let collection = match present("collection").map(rawjson::string) {
        // The field's name is only formatted for an error (1,000 items).
        Some(Some(s)) => EntitySet::parse(INPUT, &s).map_err(|_| {
            field_error(
                i,
                "collection",
                format!("'{s}' is not an entity set name (e.g. accounts)"),
            )
        })?,
        Some(None) => return Err(field_error(i, "collection", "must be a string")),
        None => {
            return Err(field_error(
                i,
                "collection",
                "is required (the entity set name, e.g. accounts)",
            ));
        }
    };
    let key = match present("key") {
        None => None,
        Some(r) => Some(ItemKey::parse(
            &format!("{INPUT}[{i}].key"),
            &value_of(i, "key", r)?,
        )?),
    };
    match (action, &key) {
        (BatchAction::Update | BatchAction::Upsert | BatchAction::Delete, None) => {
            return Err(field_error(
                i,
                "key",
                format!("is required for {action:?}").to_ascii_lowercase(),
            ));
        }
        (BatchAction::Create, Some(_)) => {
            return Err(field_error(
                i,
                "key",
                "is not used by create (Dataverse assigns the id): use upsert to write a record with a known key",
            ));
        }
        _ => {}
    }
    if let Some(ItemKey::ContentRef(n)) = key {
        check_reference(i, "key", n, atomic, earlier)?;
    }
    let not_an_object = || field_error(i, "data", "must be a JSON object of column values");
    let data = match present("data") {
        None => None,
        Some(r) if r.get().starts_with('{') => Some(ItemData::parse(i, Cow::Borrowed(r.get()))?),
        Some(r) => match rawjson::string(r) {
            // A JSON object written as a string (builders' text fields).
            Some(s) => match serde_json::from_str::<&RawValue>(&s) {
                Ok(inner) if inner.get().starts_with('{') => {
                    Some(ItemData::parse(i, Cow::Owned(inner.get().to_string()))?)
                }
                _ => return Err(not_an_object()),
            },
            None => return Err(not_an_object()),
        },
    };
    let is_body_write = matches!(
        action,
        BatchAction::Create | BatchAction::Update | BatchAction::Upsert
    );
    // `{}` on a delete or get is as good as no data.
    let data = data.filter(|d| is_body_write || !d.is_empty());
    match (action, &data) {
        (BatchAction::Create | BatchAction::Update | BatchAction::Upsert, None) => {
            return Err(field_error(
                i,
                "data",
                format!("is required for {action:?}").to_ascii_lowercase(),
            ));
        }
        (BatchAction::Delete | BatchAction::Get, Some(_)) => {
            return Err(field_error(
                i,
                "data",
                format!("is not used by {action:?}").to_ascii_lowercase(),
            ));
        }
        _ => {}
    }
    if let Some(d) = &data {
        for n in &d.refs {
            check_reference(i, "data", *n, atomic, earlier)?;
        }
    }
    let return_representation = match present("returnRepresentation") {
        None => false,
        Some(r) => match (r.get(), rawjson::string(r)) {
            ("true", _) => true,
            ("false", _) => false,
            (_, Some(s)) if s.eq_ignore_ascii_case("true") => true,
            (_, Some(s)) if s.eq_ignore_ascii_case("false") => false,
            _ => {
                return Err(field_error(
                    i,
                    "returnRepresentation",
                    "must be true or false",
                ));
            }
        },
    };
    let headers = match present("headers")
        .map(|r| value_of(i, "headers", r))
        .transpose()?
    {
        None => Vec::new(),
        Some(Value::Object(m)) => {
            let mut out = Vec::with_capacity(m.len());
            for (name, v) in m {
                let value = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(field_error(
                            i,
                            "headers",
                            format!("the value of '{name}' must be a string"),
                        ));
                    }
                };
                let token_ok = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token_ok {
                    return Err(field_error(
                        i,
                        "headers",
                        format!("'{name}' is not a header name"),
                    ));
                }
                if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(field_error(
                        i,
                        "headers",
                        format!("'{name}' is set by the connector and cannot be overridden"),
                    ));
                }
                if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                    return Err(field_error(
                        i,
                        "headers",
                        format!("the value of '{name}' contains a line break or control character"),
                    ));
                }
                out.push((name, value));
            }
            out
        }
        Some(_) => {
            return Err(field_error(
                i,
                "headers",
                "must be an object of header names to values",
            ));
        }
    };
    // Write controls: parsed only when an item has one (1,000 items).
    let mut headers = headers;
    let mut options = Vec::new();
    if members
        .iter()
        .any(|(k, _)| controls::WRITE_KEYS.contains(&k.as_ref()))
    {
        let c = Controls::parse(
            &|key| {
                Ok(present(key)
                    .map(|r| value_of(i, key, r))
                    .transpose()?
                    .as_ref()
                    .and_then(controls::text_of))
            },
            &|k| format!("{INPUT}[{i}].{k}"),
        )?;
        let get_or_delete = matches!(action, BatchAction::Get | BatchAction::Delete);
        if c.partition_id.is_some() && !get_or_delete {
            return Err(field_error(
                i,
                controls::PARTITION_ID,
                "is for get and delete items; a create names its partition in data (partitionid), an update or upsert in the key ({\"<table>id\": \"<GUID>\", \"partitionid\": \"…\"})",
            ));
        }
        for (name, value) in c.headers.iter().cloned() {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            headers.push((name.to_string(), value));
        }
        options = c.query(get_or_delete);
    }
    let query = match present("query").map(|r| (r, rawjson::string(r))) {
        None => None,
        Some((_, Some(q))) if action == BatchAction::Get => {
            Some(q.trim().trim_start_matches('?').to_string())
        }
        Some((_, Some(_))) => return Err(field_error(i, "query", "is only used by get")),
        Some((_, None)) => {
            return Err(field_error(
                i,
                "query",
                "must be a string of OData query options",
            ));
        }
    };
    Ok(BatchItem {
        collection,
        action,
        key,
        data,
        return_representation,
        headers,
        query,
        options,
    })
}

/// `$n` references in a body value: strings under `…@odata.bind` (or its
/// arrays) and `@odata.id`, at any depth.
fn content_refs(name: &str, value: &Value) -> Vec<usize> {
    let is_ref_key = name.ends_with("@odata.bind") || name == "@odata.id";
    match value {
        Value::String(s) if is_ref_key => {
            let head = s.split('/').next().unwrap_or("");
            parse_content_ref(head).into_iter().collect()
        }
        Value::Array(a) => a.iter().flat_map(|v| content_refs(name, v)).collect(),
        Value::Object(m) => m.iter().flat_map(|(k, v)| content_refs(k, v)).collect(),
        _ => Vec::new(),
    }
}

fn check_reference(
    i: usize,
    field: &str,
    n: usize,
    atomic: bool,
    earlier: &[BatchItem],
) -> Result<()> {
    let target = n.checked_sub(1).and_then(|j| earlier.get(j));
    match target {
        Some(t) if matches!(t.action, BatchAction::Create | BatchAction::Upsert) => {}
        Some(_) => {
            return Err(field_error(
                i,
                field,
                format!(
                    "${n} refers to item {} which does not create a record",
                    n - 1
                ),
            ));
        }
        None => {
            return Err(field_error(
                i,
                field,
                format!(
                    "${n} must refer to an earlier item: $1 is the first item (batchActions[0])"
                ),
            ));
        }
    }
    if !atomic {
        return Err(field_error(
            i,
            field,
            format!(
                "${n} references only resolve inside a change set: run the batch with atomic: true"
            ),
        ));
    }
    Ok(())
}

impl BatchItem<'_> {
    /// This item with a body of its own, independent of the input.
    pub fn into_owned(self) -> BatchItem<'static> {
        BatchItem {
            collection: self.collection,
            action: self.action,
            key: self.key,
            data: self.data.map(ItemData::into_owned),
            return_representation: self.return_representation,
            headers: self.headers,
            query: self.query,
            options: self.options,
        }
    }

    /// The record's GUID when the key is a primary key (not an alternate
    /// key and not a `$n` reference).
    pub fn record_id(&self) -> Option<&Guid> {
        match &self.key {
            Some(ItemKey::Record(EntityKey::Id(g))) => Some(g),
            _ => None,
        }
    }

    /// The `$n` references of this item (key and body), as n.
    pub fn referenced(&self) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .data
            .as_ref()
            .map(|d| d.refs.clone())
            .unwrap_or_default();
        if let Some(ItemKey::ContentRef(n)) = self.key {
            out.push(n);
        }
        out
    }

    /// Whether the body refers to a record created earlier in the batch.
    pub fn has_content_refs(&self) -> bool {
        self.data.as_ref().is_some_and(|d| !d.refs.is_empty())
    }
}

impl BatchItem<'_> {
    /// The inner request for this item. `api_root` is the server-relative
    /// service root, e.g. `/api/data/v9.2/`; `content_id` is `index + 1`.
    pub fn to_request(&self, api_root: &str, content_id: usize) -> InnerRequest {
        let collection_url = format!("{api_root}{}", self.collection);
        let record_url = || {
            self.key
                .as_ref()
                .map(|k| k.path(&collection_url))
                .unwrap_or_else(|| collection_url.clone())
        };
        let (method, url) = match self.action {
            BatchAction::Create => ("POST", collection_url.clone()),
            BatchAction::Update | BatchAction::Upsert => ("PATCH", record_url()),
            BatchAction::Delete => ("DELETE", record_url()),
            BatchAction::Get => {
                let url = record_url();
                match self.query.as_deref().filter(|q| !q.is_empty()) {
                    Some(q) => ("GET", format!("{url}?{}", percent::encode_query(q))),
                    None => ("GET", url),
                }
            }
        };
        let url = if self.options.is_empty() {
            url
        } else {
            controls::url_with(&url, &self.options)
        };
        let mut headers = Vec::new();
        if self.action == BatchAction::Update {
            headers.push(("If-Match".to_string(), "*".to_string()));
        }
        if self.return_representation
            && self.action.is_write()
            && self.action != BatchAction::Delete
        {
            headers.push(("Prefer".to_string(), "return=representation".to_string()));
        }
        for (k, v) in &self.headers {
            if let Some(existing) = headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(k)) {
                existing.1 = v.clone();
            } else {
                headers.push((k.clone(), v.clone()));
            }
        }
        InnerRequest {
            method,
            url,
            headers,
            body: self.data.as_ref().map(|d| d.text().to_string()),
            content_id: Some(content_id.to_string()),
        }
    }
}

/// The parts for `items`: individual parts, or (atomic) every write in one
/// change set placed at the first write; reads keep their relative order
/// around it (GETs are not allowed inside a change set). Content-IDs are
/// `index + 1`, so responses map back with [`assign_to_items`].
pub fn build_parts(items: &[BatchItem], api_root: &str, atomic: bool) -> Vec<BatchPart> {
    let requests = items
        .iter()
        .enumerate()
        .map(|(i, item)| item.to_request(api_root, i + 1));
    if !atomic {
        return requests.map(BatchPart::Request).collect();
    }
    let mut parts = Vec::new();
    let mut changeset: Option<usize> = None;
    for (item, request) in items.iter().zip(requests) {
        if item.action.is_write() {
            match changeset.and_then(|at| parts.get_mut(at)) {
                Some(BatchPart::ChangeSet(rs)) => rs.push(request),
                _ => {
                    changeset = Some(parts.len());
                    parts.push(BatchPart::ChangeSet(vec![request]));
                }
            }
        } else {
            parts.push(BatchPart::Request(request));
        }
    }
    parts
}
