//! Entity sets: `GET/POST /accounts`, `GET/PATCH/DELETE /accounts(<key>)`,
//! `GET /accounts/$count`, as Dataverse does them: server-driven paging,
//! upsert semantics of PATCH, conditional headers, `@odata.bind` lookups,
//! and Dataverse's error codes.

use super::Caller;
use crate::emulator::odata::options::{Prefer, QueryOptions, query_pairs};
use crate::emulator::odata::paging::{self, MAX_PAGE_SIZE};
use crate::emulator::odata::payload::{self, Refusal, payload_error};
use crate::emulator::odata::shape::Shaper;
use crate::emulator::odata::{ODataError, eval::unknown_property};
use crate::emulator::response::{no_content, odata_error, odata_json};
use crate::emulator::store::schema::{AttributeKind, EntityDef, Navigation};
use crate::emulator::store::{Changes, Record, StoreError, normalize_guid};
use crate::emulator::webhooks::Message;
use crate::emulator::{EmuRequest, EmuResponse, State};
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// The record a URL key names.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Key {
    Id(String),
    /// Attribute logical names and values.
    Alternate(Vec<(String, Value)>),
}

pub(super) fn error(e: ODataError) -> EmuResponse {
    odata_error(e.status, &e.code, &e.message)
}

pub fn not_found(entity: &str, id: &str) -> ODataError {
    ODataError::new(
        404,
        "0x80040217",
        format!("{entity} With Id = {id} Does Not Exist"),
    )
}

pub(super) fn store_error(e: StoreError) -> ODataError {
    match e {
        StoreError::NotFound { entity, id } => not_found(&entity, &id),
        StoreError::DuplicateKey => ODataError::new(
            412,
            "0x80040237",
            "A record with matching key values already exists.",
        ),
        StoreError::UnknownEntity(name) => ODataError::new(
            404,
            "0x8006088a",
            format!("Resource not found for the segment '{name}'."),
        ),
        StoreError::InvalidValue { message, .. } if message.starts_with("A validation error") => {
            ODataError::new(400, "0x80044331", message)
        }
        StoreError::InvalidValue { message, .. } => ODataError::bad_request(message),
    }
}

fn method_not_allowed(method: &http::Method) -> EmuResponse {
    odata_error(
        405,
        "0x80060888",
        &format!("The requested resource does not support http method '{method}'."),
    )
}

/// Answers a request whose first segment is an entity set; `None` when
/// `segment` names no entity set.
pub fn handle(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    resource: &str,
) -> Option<EmuResponse> {
    let (head, rest) = match resource.split_once('/') {
        Some((h, r)) => (h, Some(r)),
        None => (resource, None),
    };
    let (set, raw_key) = match head.split_once('(') {
        Some((s, k)) => (s, Some(k.strip_suffix(')').unwrap_or(k))),
        None => (head, None),
    };
    let entity = state.store.schema().by_entity_set(set)?.clone();
    if let (Some(raw), Some(part)) = (raw_key, rest)
        && let Some(answer) = super::refs::handle(state, request, caller, &entity, raw, part)
            .or_else(|| super::files::handle(state, request, caller, &entity, raw, part))
            .or_else(|| super::operations::bound(state, request, caller, &entity, raw, part))
    {
        return Some(answer);
    }
    let method = request.method().clone();
    if raw_key.is_none()
        && rest.is_none()
        && method == http::Method::GET
        && super::changes::requested(request)
    {
        return Some(
            super::changes::retrieve(state, request, caller, &entity).unwrap_or_else(error),
        );
    }
    let result = match (raw_key, rest) {
        (None, None) => match method {
            http::Method::GET => retrieve_multiple(state, request, caller, &entity, None),
            http::Method::POST => create(state, request, caller, &entity),
            _ => Ok(method_not_allowed(&method)),
        },
        (None, Some("$count")) if method == http::Method::GET => {
            let n = state.store.count(entity.logical_name).min(MAX_PAGE_SIZE);
            Ok(http::Response::builder()
                .status(200)
                .header("Content-Type", "text/plain")
                .header("OData-Version", "4.0")
                .body(Bytes::from(n.to_string()))
                .unwrap_or_default())
        }
        (Some(raw), None) => match parse_key(&entity, raw) {
            Err(e) => Err(e),
            Ok(key) => match method {
                http::Method::GET => retrieve(state, request, caller, &entity, &key),
                http::Method::PATCH => patch(state, request, caller, &entity, &key, raw),
                http::Method::DELETE => delete(state, request, caller, &entity, &key),
                _ => Ok(method_not_allowed(&method)),
            },
        },
        (Some(raw), Some(part)) if method == http::Method::GET && !part.contains('/') => {
            parse_key(&entity, raw)
                .and_then(|key| retrieve_part(state, request, caller, &entity, &key, part))
        }
        (None, Some(op)) if super::bulk::is_bulk(op) => {
            Ok(super::bulk::handle(state, request, caller, &entity, op))
        }
        (_, Some(other)) => Err(ODataError::not_implemented(format!(
            "The emulator does not serve '{set}/…/{other}' yet."
        ))),
    };
    Some(result.unwrap_or_else(error))
}

/// Parses the text inside `(…)`: a GUID, or `name='value',name2=2`.
pub(super) fn parse_key(entity: &EntityDef, raw: &str) -> Result<Key, ODataError> {
    let text = percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned();
    if let Some(id) = normalize_guid(&text) {
        return Ok(Key::Id(id));
    }
    let bad = || {
        ODataError::bad_request(format!(
            "Bad Request - Error in query syntax: the key '{text}' is not valid for '{}'.",
            entity.entity_set_name
        ))
    };
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut pairs = Vec::new();
    while i < chars.len() {
        let start = i;
        while i < chars.len() && chars[i] != '=' {
            i += 1;
        }
        let name: String = chars[start..i]
            .iter()
            .collect::<String>()
            .trim()
            .to_string();
        if i >= chars.len() || name.is_empty() {
            return Err(bad());
        }
        i += 1;
        let value = if chars.get(i) == Some(&'\'') {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(bad()),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        s.push(*c);
                        i += 1;
                    }
                }
            }
            Value::String(s)
        } else {
            let start = i;
            while i < chars.len() && chars[i] != ',' {
                i += 1;
            }
            let word: String = chars[start..i]
                .iter()
                .collect::<String>()
                .trim()
                .to_string();
            if let Some(g) = normalize_guid(&word) {
                Value::String(g)
            } else if let Ok(n) = word.parse::<i64>() {
                Value::from(n)
            } else if let Ok(f) = word.parse::<f64>() {
                Value::from(f)
            } else if word == "true" || word == "false" {
                Value::Bool(word == "true")
            } else {
                return Err(bad());
            }
        };
        let attr = entity
            .property(&name)
            .ok_or_else(|| unknown_property(entity, &name))?;
        pairs.push((attr.logical_name.clone(), value));
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        match chars.get(i) {
            Some(',') => i += 1,
            None => {}
            Some(_) => return Err(bad()),
        }
    }
    let mut names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let defined = entity.keys.iter().any(|k| {
        let mut a = k.attributes.clone();
        a.sort_unstable();
        a == names
    });
    if !defined {
        return Err(ODataError::bad_request(format!(
            "Invalid alternate key: ({}) is not a key defined for entity {}.",
            names.join(","),
            entity.logical_name
        )));
    }
    Ok(Key::Alternate(pairs))
}

pub(super) fn find<'s>(state: &'s State, entity: &EntityDef, key: &Key) -> Option<&'s Record> {
    match key {
        Key::Id(id) => state.store.get(entity.logical_name, id),
        Key::Alternate(pairs) => state.store.find_by_key(entity.logical_name, pairs),
    }
}

pub(super) fn key_text(key: &Key) -> String {
    match key {
        Key::Id(id) => id.clone(),
        Key::Alternate(pairs) => pairs
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn prefer(request: &EmuRequest) -> Prefer {
    Prefer::parse(
        request
            .headers()
            .get_all("Prefer")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

fn header<'r>(request: &'r EmuRequest, name: &str) -> Option<&'r str> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn json_response(status: u16, body: &Value, applied: &[String]) -> EmuResponse {
    let mut response = odata_json(status, body);
    if !applied.is_empty()
        && let Ok(v) = http::HeaderValue::from_str(&applied.join(","))
    {
        response.headers_mut().insert("Preference-Applied", v);
    }
    response
}

fn annotations_applied(prefer: &Prefer) -> Option<String> {
    (!prefer.annotations.is_empty()).then(|| {
        format!(
            "odata.include-annotations=\"{}\"",
            prefer.annotations.join(",")
        )
    })
}

/// Restricts a collection to the rows related to one parent record (a
/// GET on a collection-valued navigation property).
struct Related<'a> {
    attribute: &'a str,
    parent_entity: &'a str,
    parent_id: &'a str,
    /// The resource path nextLinks repeat, e.g. `accounts(<id>)/contact_customer_accounts`.
    path: String,
}

fn retrieve_multiple(
    state: &State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    related: Option<&Related<'_>>,
) -> Result<EmuResponse, ODataError> {
    let raw_query = request.uri().query();
    let pairs = query_pairs(raw_query);
    // `?fetchXml=…` is answered by the FetchXML evaluator over the same store.
    if related.is_none()
        && let Some((_, xml)) = pairs.iter().find(|(k, _)| k == "fetchXml")
    {
        let prefer = prefer(request);
        return Ok(crate::emulator::fetchxml::eval::respond(
            &state.store,
            entity,
            xml,
            &prefer,
            &caller.service_root,
        ));
    }
    let options = QueryOptions::parse(&pairs)?;
    let prefer = prefer(request);
    let shaper = Shaper {
        store: &state.store,
        prefer: &prefer,
        service_root: &caller.service_root,
        now: state.now(),
        user_id: &caller.user_id,
        collection_page_size: None,
    }
    .paging_nested_collections(&options);
    shaper.check(entity, &options, 0, false)?;
    let ctx = shaper.context(entity);
    let mut filter = |r: &Record| {
        related.is_none_or(|rel| {
            r.get(rel.attribute).as_str() == Some(rel.parent_id)
                && r.lookup_targets.get(rel.attribute).map(String::as_str)
                    == Some(rel.parent_entity)
        }) && options.filter.as_ref().is_none_or(|f| ctx.matches(f, r))
    };
    let order = ctx.order(&options.orderby);
    let rows = state.store.query(entity.logical_name, &mut filter, &order);
    let total = rows.len();

    // $top is ignored when odata.maxpagesize is sent (Dataverse's rule).
    let page_size = prefer.maxpagesize.map(|n| n.clamp(1, MAX_PAGE_SIZE));
    let (limit, paged) = match (page_size, options.top) {
        (Some(n), _) => (n, true),
        (None, Some(top)) => (top.min(MAX_PAGE_SIZE), false),
        (None, None) => (MAX_PAGE_SIZE, true),
    };
    let (start, page_number) = match &options.skiptoken {
        None => (0, 1),
        Some(token) => {
            let cookie = paging::parse_skiptoken(token).ok_or_else(|| {
                ODataError::bad_request(format!("The $skiptoken '{token}' is not valid."))
            })?;
            // Resume after where the last row served sorts now: right after
            // it while it still matches, else (deleted, or no longer
            // matching) before the first row that sorts after it, so no row
            // is skipped. `rows` is sorted by exactly this order: a binary
            // search, not a scan of the whole result for every page.
            let start = match state
                .store
                .get_or_deleted(entity.logical_name, &cookie.last)
            {
                Some(anchor) => rows.partition_point(|r| {
                    order(r, anchor).then_with(|| r.id.cmp(&anchor.id))
                        != std::cmp::Ordering::Greater
                }),
                None => (cookie.page.saturating_sub(1) * limit).min(rows.len()),
            };
            (start, cookie.page)
        }
    };
    let end = (start + limit).min(total);
    let page = &rows[start.min(end)..end];
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(shaper.context_url(entity, &options, false)),
    );
    if options.count {
        body.insert("@odata.count".into(), Value::from(total.min(MAX_PAGE_SIZE)));
    }
    if prefer.wants("Microsoft.Dynamics.CRM.totalrecordcount") {
        let count = if options.count {
            total.min(MAX_PAGE_SIZE) as i64
        } else {
            -1
        };
        body.insert(
            "@Microsoft.Dynamics.CRM.totalrecordcount".into(),
            Value::from(count),
        );
        body.insert(
            "@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded".into(),
            Value::Bool(options.count && total > MAX_PAGE_SIZE),
        );
    }
    body.insert(
        "value".into(),
        Value::Array(
            page.iter()
                .map(|r| Value::Object(shaper.record(entity, r, &options)))
                .collect(),
        ),
    );
    if paged
        && end < total
        && let (Some(first), Some(last)) = (page.first(), page.last())
    {
        let token = paging::skiptoken(&entity.primary_id, page_number, &first.id, &last.id);
        let mut query: Vec<&str> = raw_query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let name = p.split('=').next().unwrap_or("");
                crate::emulator::odata::options::decode_component(name) != "$skiptoken"
            })
            .collect();
        let encoded = format!("$skiptoken={}", paging::encode_token_for_url(&token));
        query.push(&encoded);
        body.insert(
            "@odata.nextLink".into(),
            Value::String(format!(
                "{}{}?{}",
                caller.service_root,
                related.map_or(entity.entity_set_name, |r| r.path.as_str()),
                query.join("&")
            )),
        );
    }
    let mut applied = Vec::new();
    if let Some(n) = page_size {
        applied.push(format!("odata.maxpagesize={n}"));
    }
    applied.extend(annotations_applied(&prefer));
    Ok(json_response(200, &Value::Object(body), &applied))
}

fn single_body(
    shaper: &Shaper<'_>,
    entity: &EntityDef,
    record: &Record,
    options: &QueryOptions,
) -> Value {
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(shaper.context_url(entity, options, true)),
    );
    body.extend(shaper.record(entity, record, options));
    Value::Object(body)
}

fn retrieve(
    state: &State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    key: &Key,
) -> Result<EmuResponse, ODataError> {
    let pairs = query_pairs(request.uri().query());
    let options = QueryOptions::parse(&pairs)?;
    let prefer = prefer(request);
    let shaper = Shaper {
        store: &state.store,
        prefer: &prefer,
        service_root: &caller.service_root,
        now: state.now(),
        user_id: &caller.user_id,
        collection_page_size: None,
    }
    .paging_nested_collections(&options);
    shaper.check(entity, &options, 0, false)?;
    let record =
        find(state, entity, key).ok_or_else(|| not_found(entity.logical_name, &key_text(key)))?;
    if let Some(tag) = header(request, "If-None-Match")
        && tag == record.etag()
        && options.expand.is_empty()
        && prefer.annotations.is_empty()
    {
        return Ok(http::Response::builder()
            .status(304)
            .header("OData-Version", "4.0")
            .body(Bytes::new())
            .unwrap_or_default());
    }
    let body = single_body(&shaper, entity, record, &options);
    let applied: Vec<String> = annotations_applied(&prefer).into_iter().collect();
    Ok(json_response(200, &body, &applied))
}

/// `GET accounts(<id>)/<navigation or property>`: the related collection
/// (paged like any collection), the related record, or one column's value.
fn retrieve_part(
    state: &State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    key: &Key,
    part: &str,
) -> Result<EmuResponse, ODataError> {
    let record =
        find(state, entity, key).ok_or_else(|| not_found(entity.logical_name, &key_text(key)))?;
    let schema = state.store.schema();
    match schema.navigation(entity, part) {
        Some(Navigation::Collection {
            entity: child,
            attribute,
        }) => {
            let def = schema
                .by_logical_name(&child)
                .ok_or_else(|| unknown_property(entity, part))?;
            let related = Related {
                attribute: &attribute,
                parent_entity: entity.logical_name,
                parent_id: &record.id,
                path: format!("{}({})/{part}", entity.entity_set_name, record.id),
            };
            retrieve_multiple(state, request, caller, def, Some(&related))
        }
        Some(Navigation::Single { attribute, target }) => {
            let def = schema
                .by_logical_name(&target)
                .ok_or_else(|| unknown_property(entity, part))?;
            let id = record
                .get(&attribute)
                .as_str()
                .filter(|_| record.lookup_targets.get(&attribute) == Some(&target))
                .ok_or_else(|| {
                    ODataError::new(404, "0x80040217", format!("No {target} is set on {part}."))
                })?;
            retrieve(state, request, caller, def, &Key::Id(id.to_string()))
        }
        Some(Navigation::ManyToMany(_)) => Err(ODataError::not_implemented(format!(
            "The emulator serves many-to-many '{part}' through $expand and $ref only."
        ))),
        None => {
            let attr = entity
                .property(part)
                .ok_or_else(|| unknown_property(entity, part))?;
            let value = record.get(&attr.logical_name).clone();
            if value.is_null() {
                return Ok(no_content());
            }
            Ok(odata_json(
                200,
                &json!({
                    "@odata.context": format!(
                        "{}$metadata#{}({})/{part}",
                        caller.service_root, entity.entity_set_name, record.id
                    ),
                    "value": value,
                }),
            ))
        }
    }
}

/// Reads a write body into store changes: columns by logical name, lookups
/// only through `<navigation property>@odata.bind` (case-sensitive).
fn parse_body(
    state: &State,
    entity: &EntityDef,
    body: &[u8],
) -> Result<(Changes, Option<String>), ODataError> {
    let value = payload::parse(body).map_err(|refusal| match refusal {
        Refusal::Json(e) => {
            ODataError::new(400, "0x80048d19", format!("Error in JSON payload: {e}"))
        }
        // A map keeps the last of two same-named properties; Dataverse's
        // OData reader refuses the payload instead.
        Refusal::Duplicate(name) => payload_error(
            entity.entity_set_name,
            &format!(
                "Multiple properties with the name '{name}' were detected in a resource or a complex value. In OData, duplicate property names are not allowed."
            ),
        ),
    })?;
    let Value::Object(map) = value else {
        return Err(ODataError::new(
            400,
            "0x80048d19",
            "The request body must be a JSON object.",
        ));
    };
    let mut changes = Changes::default();
    let mut id = None;
    for (k, v) in map {
        if let Some(nav) = k.strip_suffix("@odata.bind") {
            let Some((attr, target)) = entity.single_navigation(nav) else {
                return Err(ODataError::bad_request(format!(
                    "An undeclared property '{nav}' which only has property annotations in the payload but no property value was found in the payload. In OData, only declared navigation properties and declared named streams can be represented as properties without values."
                )));
            };
            let resolved = match &v {
                Value::Null => None,
                Value::String(s) => Some(resolve_bind(state, s, &target.entity)?),
                _ => {
                    return Err(ODataError::bad_request(format!(
                        "The value of '{k}' must be a URL string such as '/{}(<GUID>)'.",
                        state
                            .store
                            .schema()
                            .by_logical_name(&target.entity)
                            .map(|e| e.entity_set_name)
                            .unwrap_or("…")
                    )));
                }
            };
            changes.lookups.insert(
                attr.logical_name.clone(),
                resolved.map(|id| (target.entity.clone(), id)),
            );
            continue;
        }
        if k.starts_with('@') || k.contains('@') {
            continue; // other annotations (@odata.type …) carry no data
        }
        if k.starts_with('_') && k.ends_with("_value") && entity.property(&k).is_some() {
            return Err(ODataError::bad_request(
                "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead.".to_string(),
            ));
        }
        if let Some((attr, _)) = entity.single_navigation(&k) {
            match v {
                Value::Null => {
                    changes.lookups.insert(attr.logical_name.clone(), None);
                    continue;
                }
                Value::Object(_) | Value::Array(_) => {
                    return Err(ODataError::not_implemented(
                        "Deep insert is not supported by the emulator.".to_string(),
                    ));
                }
                _ => {
                    return Err(ODataError::bad_request(
                        "A 'PrimitiveValue' node with non-null value was found when trying to read the value of a navigation property; however, a 'StartArray' node, a 'StartObject' node, or a 'PrimitiveValue' node with null value was expected.".to_string(),
                    ));
                }
            }
        }
        let Some(attr) = entity.attribute(&k).filter(|a| !a.kind.is_lookup()) else {
            return Err(ODataError::bad_request(format!(
                "The property '{k}' does not exist on type '{}'. Make sure to only use property names that are defined by the type.",
                entity.odata_type()
            )));
        };
        if attr.logical_name == entity.primary_id {
            let text = v.as_str().and_then(normalize_guid).ok_or_else(|| {
                ODataError::bad_request(format!(
                    "Cannot convert the literal '{v}' to the expected type 'Edm.Guid'."
                ))
            })?;
            id = Some(text);
            continue;
        }
        if attr.read_only {
            continue; // Dataverse ignores values for system-set columns
        }
        if matches!(attr.kind, AttributeKind::Uniqueidentifier) && v.is_null() {
            continue;
        }
        changes.values.insert(k, v);
    }
    Ok((changes, id))
}

/// Why an entity reference did not resolve; each caller words it as its
/// context (`@odata.bind`, `$ref`, an action parameter) needs.
pub(super) enum ReferenceError {
    /// Not `[…/api/data/vX/]<set>(<key>)`.
    Malformed,
    /// No such entity set.
    UnknownSet(String),
    /// The set exists but holds another entity (its logical name).
    WrongEntity(String),
    /// The key names no existing row.
    Missing(ODataError),
    /// The key does not parse for that entity.
    BadKey(ODataError),
}

/// Resolves an entity reference — `/set(<id>)`, `set(<id>)`, an absolute
/// `…/api/data/vX/set(<id>)` or a key form `set(k='v')` — to the id of an
/// existing `target` row. The one parser behind `@odata.bind`, `$ref`
/// bodies and entity-typed action parameters.
pub(super) fn resolve_reference(
    state: &State,
    text: &str,
    target: &str,
) -> Result<String, ReferenceError> {
    let path = match text.find("/api/data/") {
        Some(i) => text
            .get(i + "/api/data/".len()..)
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, r)| r)
            .ok_or(ReferenceError::Malformed)?,
        None => text.trim_start_matches('/'),
    };
    let (set, raw_key) = path.split_once('(').ok_or(ReferenceError::Malformed)?;
    let raw_key = raw_key.strip_suffix(')').ok_or(ReferenceError::Malformed)?;
    let def = state
        .store
        .schema()
        .by_entity_set(set)
        .ok_or_else(|| ReferenceError::UnknownSet(set.to_string()))?;
    if def.logical_name != target {
        return Err(ReferenceError::WrongEntity(def.logical_name.to_string()));
    }
    let key = parse_key(def, raw_key).map_err(ReferenceError::BadKey)?;
    find(state, def, &key)
        .map(|r| r.id.clone())
        .ok_or_else(|| ReferenceError::Missing(not_found(def.logical_name, &key_text(&key))))
}

/// Resolves an `@odata.bind` URL to the id of an existing `target` row.
fn resolve_bind(state: &State, text: &str, target: &str) -> Result<String, ODataError> {
    resolve_reference(state, text, target).map_err(|e| match e {
        ReferenceError::Malformed => ODataError::bad_request(format!(
            "The URI '{text}' in an @odata.bind annotation is not valid: expected /<entityset>(<id>)."
        )),
        ReferenceError::UnknownSet(set) => ODataError::bad_request(format!(
            "The entity set '{set}' in the @odata.bind URI '{text}' does not exist."
        )),
        ReferenceError::WrongEntity(actual) => ODataError::bad_request(format!(
            "The @odata.bind URI '{text}' points at '{actual}', but the navigation property expects '{target}'."
        )),
        ReferenceError::BadKey(e) => e,
        // A bind to a missing row is a bad request, not a missing resource.
        ReferenceError::Missing(mut e) => {
            e.status = 400;
            e
        }
    })
}

fn entity_id_url(caller: &Caller, entity: &EntityDef, key_form: &str) -> String {
    format!(
        "{}{}({key_form})",
        caller.service_root, entity.entity_set_name
    )
}

fn with_entity_id(mut response: EmuResponse, url: &str) -> EmuResponse {
    if let Ok(v) = http::HeaderValue::from_str(url) {
        response.headers_mut().insert("OData-EntityId", v);
    }
    response
}

fn written(
    state: &State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    id: &str,
    status_with_body: u16,
    key_form: &str,
) -> Result<EmuResponse, ODataError> {
    let prefer = prefer(request);
    if !prefer.return_representation {
        return Ok(with_entity_id(
            no_content(),
            &entity_id_url(caller, entity, key_form),
        ));
    }
    let pairs = query_pairs(request.uri().query());
    let mut options = QueryOptions::parse(&pairs)?;
    options.expand.clear(); // $expand is ignored on writes
    let shaper = Shaper {
        store: &state.store,
        prefer: &prefer,
        service_root: &caller.service_root,
        now: state.now(),
        user_id: &caller.user_id,
        collection_page_size: None,
    }
    .paging_nested_collections(&options);
    shaper.check(entity, &options, 0, false)?;
    let record = state
        .store
        .get(entity.logical_name, id)
        .ok_or_else(|| not_found(entity.logical_name, id))?;
    let body = single_body(&shaper, entity, record, &options);
    let mut applied = vec!["return=representation".to_string()];
    applied.extend(annotations_applied(&prefer));
    let mut response = json_response(status_with_body, &body, &applied);
    if let Ok(v) = http::HeaderValue::from_str(&record.etag()) {
        response.headers_mut().insert("ETag", v);
    }
    Ok(response)
}

fn create(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
) -> Result<EmuResponse, ODataError> {
    let (mut changes, id) = parse_body(state, entity, request.body())?;
    super::impersonation::stamp(&mut changes, entity, caller, true);
    let now = state.now();
    let changed = super::events::changed_columns(entity, &changes);
    let record = state
        .store
        .create(entity.logical_name, id, changes, &caller.user_id, now)
        .map_err(store_error)?;
    let id = record.id.clone();
    super::events::raise(
        state,
        Message::Create,
        entity,
        &id,
        None,
        &changed,
        &caller.user_id,
    );
    written(state, request, caller, entity, &id, 201, &id)
}

fn patch(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    key: &Key,
    raw_key: &str,
) -> Result<EmuResponse, ODataError> {
    let (mut changes, body_id) = parse_body(state, entity, request.body())?;
    let if_match = header(request, "If-Match").map(str::to_string);
    let if_none_match = header(request, "If-None-Match").map(str::to_string);
    let existing = find(state, entity, key).cloned();
    super::impersonation::stamp(&mut changes, entity, caller, existing.is_none());
    let now = state.now();
    match existing {
        Some(record) => {
            if if_none_match.as_deref() == Some("*") {
                return Err(store_error(StoreError::DuplicateKey));
            }
            if let Some(tag) = if_match.as_deref()
                && tag != "*"
                && tag != record.etag()
            {
                return Err(ODataError::new(
                    412,
                    "0x80060882",
                    "The version of the existing record doesn't match the RowVersion property provided.",
                ));
            }
            if let Some(b) = body_id
                && b != record.id
            {
                return Err(ODataError::bad_request(format!(
                    "The primary key in the body ({b}) differs from the one in the URL ({}).",
                    record.id
                )));
            }
            // Values for key columns named in the URL are dropped on update.
            if let Key::Alternate(pairs) = key {
                for (name, _) in pairs {
                    changes.values.remove(name);
                }
            }
            let changed = super::events::changed_columns(entity, &changes);
            state
                .store
                .update(
                    entity.logical_name,
                    &record.id,
                    changes,
                    &caller.user_id,
                    now,
                )
                .map_err(store_error)?;
            super::events::raise(
                state,
                Message::Update,
                entity,
                &record.id,
                Some(&record),
                &changed,
                &caller.user_id,
            );
            written(state, request, caller, entity, &record.id, 200, raw_key)
        }
        None => {
            if if_match.is_some() {
                return Err(not_found(entity.logical_name, &key_text(key)));
            }
            let id = match key {
                Key::Id(id) => Some(id.clone()),
                Key::Alternate(pairs) => {
                    for (name, value) in pairs {
                        changes
                            .values
                            .entry(name.clone())
                            .or_insert_with(|| value.clone());
                    }
                    body_id
                }
            };
            let changed = super::events::changed_columns(entity, &changes);
            let record = state
                .store
                .create(entity.logical_name, id, changes, &caller.user_id, now)
                .map_err(store_error)?;
            let id = record.id.clone();
            super::events::raise(
                state,
                Message::Create,
                entity,
                &id,
                None,
                &changed,
                &caller.user_id,
            );
            written(state, request, caller, entity, &id, 201, raw_key)
        }
    }
}

fn delete(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    key: &Key,
) -> Result<EmuResponse, ODataError> {
    let record = find(state, entity, key)
        .ok_or_else(|| not_found(entity.logical_name, &key_text(key)))?
        .clone();
    if let Some(tag) = header(request, "If-Match")
        && tag != "*"
        && tag != record.etag()
    {
        return Err(ODataError::new(
            412,
            "0x80060882",
            "The version of the existing record doesn't match the RowVersion property provided.",
        ));
    }
    state
        .store
        .delete(entity.logical_name, &record.id)
        .map_err(store_error)?;
    super::events::raise(
        state,
        Message::Delete,
        entity,
        &record.id,
        Some(&record),
        &[],
        &caller.user_id,
    );
    Ok(no_content())
}
