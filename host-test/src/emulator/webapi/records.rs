//! Entity sets: `GET/POST /accounts`, `GET/PATCH/DELETE /accounts(<key>)`,
//! `GET /accounts/$count`, as Dataverse does them: server-driven paging,
//! upsert semantics of PATCH, conditional headers, `@odata.bind` lookups,
//! and Dataverse's error codes.
//!
//! The dispatcher of one entity set: `$ref`, file columns and bound
//! operations under a row go to their own modules; what they share with
//! this one ([`rows`], [`reply`]) lives apart, so the imports run one way.
//! (The bulk messages, which run each target back through [`handle`], are
//! routed by [`super::handle`].)

use super::caller::Caller;
use super::reply::{
    error, header, json_response, method_not_allowed, not_found, prefer, store_error,
    with_entity_id,
};
use super::rows::{
    self, Key, ReferenceError, UnderRow, existing, key_text, parse_key, resolve_reference,
};
use super::{changes, events, files, impersonation, operations, plugins, refs};
use crate::emulator::odata::aggregate;
use crate::emulator::odata::options::{Prefer, QueryOptions, decode_component, query_pairs};
use crate::emulator::odata::paging::{self, MAX_PAGE_SIZE};
use crate::emulator::odata::payload::{self, Refusal, payload_error};
use crate::emulator::odata::shape::Shaper;
use crate::emulator::odata::{ODataError, eval::unknown_property};
use crate::emulator::response::{no_content, odata_json};
use crate::emulator::store::schema::{AttributeKind, EntityDef, Navigation};
use crate::emulator::store::{Changes, Record, StoreError, normalize_guid};
use crate::emulator::webhooks::Message;
use crate::emulator::{EmuRequest, EmuResponse, State};
use bytes::Bytes;
use serde_json::{Map, Value, json};

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
    if let (Some(raw), None, "backgroundoperation") = (raw_key, rest, entity.logical_name)
        && request.method() == http::Method::GET
    {
        operations::advance_background(state, caller, raw);
    }
    if let (Some(raw), Some(part)) = (raw_key, rest) {
        let at = UnderRow {
            request,
            caller,
            entity: &entity,
            raw_key: raw,
            part,
        };
        let answer = refs::handle(state, &at)
            .or_else(|| files::handle(state, &at))
            .or_else(|| operations::bound(state, &at));
        if answer.is_some() {
            return answer;
        }
    }
    let method = request.method().clone();
    if raw_key.is_none()
        && rest.is_none()
        && method == http::Method::GET
        && changes::requested(request)
    {
        return Some(changes::retrieve(state, request, caller, &entity).unwrap_or_else(error));
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
        (_, Some(other)) => Err(ODataError::not_implemented(format!(
            "The emulator does not serve '{set}/…/{other}' yet."
        ))),
    };
    Some(result.unwrap_or_else(error))
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
    let shaper = read_shaper(state, caller, &prefer, entity, &options)?;
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
    if let Some(apply) = &options.apply {
        // An aggregation answers its rows in one page.
        aggregate::check(apply, &ctx)?;
        let value: Vec<Value> = aggregate::rows(apply, &ctx, &rows)?
            .into_iter()
            .map(Value::Object)
            .collect();
        let mut body = Map::new();
        body.insert(
            "@odata.context".into(),
            Value::String(shaper.context_url(entity, &options, false)),
        );
        body.insert("value".into(), Value::Array(value));
        let applied: Vec<String> = annotations_applied(&prefer).into_iter().collect();
        return Ok(json_response(200, &Value::Object(body), &applied));
    }
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
                decode_component(name) != "$skiptoken"
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

/// The shaper of a read or write answer, with `options` checked against
/// `entity` (unknown columns, bad expands) before anything is read.
fn read_shaper<'a>(
    state: &'a State,
    caller: &'a Caller,
    prefer: &'a Prefer,
    entity: &'a EntityDef,
    options: &QueryOptions,
) -> Result<Shaper<'a>, ODataError> {
    let shaper = caller
        .shaper(state, prefer)
        .paging_nested_collections(options);
    shaper.check(entity, options, 0, false)?;
    Ok(shaper)
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
    let shaper = read_shaper(state, caller, &prefer, entity, &options)?;
    let record = in_partition(state, request, caller, entity, key)?;
    // Conditional retrieval (Microsoft Learn, "Perform conditional
    // operations using the Web API", Conditional retrievals): the ETag the
    // caller holds is still the record's → 304 Not Modified, no body. Never
    // for a query with $expand or a Prefer asking for annotations.
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
    let record = existing(state, entity, key)?;
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
    let mut response = if prefer.return_representation {
        represented(
            state,
            request,
            caller,
            entity,
            id,
            status_with_body,
            &prefer,
        )?
    } else {
        with_entity_id(no_content(), &entity_id_url(caller, entity, key_form))
    };
    // Elastic tables answer every write with its session token ("Use
    // elastic tables using code").
    if entity.table_type == "Elastic"
        && let Some(record) = state.store.get(entity.logical_name, id)
        && let Ok(v) = http::HeaderValue::from_str(&plugins::session_token(record.version))
    {
        response.headers_mut().insert("x-ms-session-token", v);
    }
    Ok(response)
}

/// A write's answer with `Prefer: return=representation`: the row as
/// written.
fn represented(
    state: &State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    id: &str,
    status_with_body: u16,
    prefer: &Prefer,
) -> Result<EmuResponse, ODataError> {
    let pairs = query_pairs(request.uri().query());
    let mut options = QueryOptions::parse(&pairs)?;
    options.expand.clear(); // $expand is ignored on writes
    let shaper = read_shaper(state, caller, prefer, entity, &options)?;
    let record = state
        .store
        .get(entity.logical_name, id)
        .ok_or_else(|| not_found(entity.logical_name, id))?;
    let body = single_body(&shaper, entity, record, &options);
    let mut applied = vec!["return=representation".to_string()];
    applied.extend(annotations_applied(prefer));
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
    impersonation::stamp(&mut changes, entity, caller, true);
    plugins::check_duplicates(state, caller, entity, &changes, None)?;
    let id = create_row(state, caller, entity, id, changes)?;
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
    let existing = rows::find(state, entity, key).cloned();
    impersonation::stamp(&mut changes, entity, caller, existing.is_none());
    match existing {
        // Microsoft Learn, "Perform conditional operations using the Web
        // API": If-None-Match: * on an existing record is 412 (Prevent
        // update in upsert; 0x80040237, "A record with matching key values
        // already exists.", see `store_error`); If-Match: * (or an ETag) on
        // a missing one is 404 (Prevent create in upsert; for an ETag the
        // 404 is UNCONFIRMED).
        Some(record) => {
            if if_none_match.as_deref() == Some("*") {
                return Err(store_error(StoreError::DuplicateKey));
            }
            check_if_match(if_match.as_deref(), &record)?;
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
            plugins::check_duplicates(state, caller, entity, &changes, Some(&record.id))?;
            let changed = events::changed_columns(entity, &changes);
            rows::update(state, caller, entity.logical_name, &record.id, changes)?;
            events::raise(
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
            plugins::check_duplicates(state, caller, entity, &changes, None)?;
            let id = create_row(state, caller, entity, id, changes)?;
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
    let record = in_partition(state, request, caller, entity, key)?.clone();
    check_if_match(header(request, "If-Match"), &record)?;
    state
        .store
        .delete(entity.logical_name, &record.id)
        .map_err(store_error)?;
    events::raise(
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

/// The row `key` names, when the request may see it: in the partition a
/// `partitionId` query option names (elastic tables, "Use elastic tables
/// using code": GET and DELETE), and, for a read, replicated to this
/// reader ([`plugins::visible`]). Else Dataverse's 404.
fn in_partition<'s>(
    state: &'s State,
    request: &EmuRequest,
    caller: &Caller,
    entity: &EntityDef,
    key: &Key,
) -> Result<&'s Record, ODataError> {
    let record = existing(state, entity, key)?;
    // Only elastic tables have partitions: other tables ignore the option.
    let in_it = entity.table_type != "Elastic"
        || query_pairs(request.uri().query())
            .into_iter()
            .find(|(k, _)| k == "partitionId")
            .is_none_or(|(_, v)| {
                // Unquoted as "Use optional parameters" sends it; quoted as
                // "Use elastic tables using code" shows it: both are taken.
                let v = v.trim();
                let p = match v.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
                    Some(quoted) => quoted.replace("''", "'"),
                    None => v.to_string(),
                };
                record.values.get("partitionid").and_then(Value::as_str) == Some(p.as_str())
            });
    // Writes go to the primary copy: only reads can lag behind.
    let read = request.method() == http::Method::GET;
    if !in_it || (read && !plugins::visible(state, caller, entity, record)) {
        return Err(not_found(entity.logical_name, &key_text(key)));
    }
    Ok(record)
}

/// An `If-Match` other than `*` must be the row's current ETag (Microsoft
/// Learn, "Perform conditional operations using the Web API", Apply
/// optimistic concurrency: 412 Precondition Failed, "The version of the
/// existing record doesn't match the RowVersion property provided."). The
/// page's example shows an empty `code`; the hex code here is
/// ConcurrencyVersionMismatch, -2147088254 = 0x80060882 (Learn,
/// "DeleteRequest.ConcurrencyBehavior"); that the Web API body carries it
/// is UNCONFIRMED (the wire reference, 7.2). Every write gives the row a
/// new version ([`Record::etag`]), so any change since the read fails it.
fn check_if_match(tag: Option<&str>, record: &Record) -> Result<(), ODataError> {
    match tag {
        Some(tag) if tag != "*" && tag != record.etag() => Err(ODataError::new(
            412,
            "0x80060882",
            "The version of the existing record doesn't match the RowVersion property provided.",
        )),
        _ => Ok(()),
    }
}

/// Creates a row as the caller and raises its Create webhooks; its id.
fn create_row(
    state: &mut State,
    caller: &Caller,
    entity: &EntityDef,
    id: Option<String>,
    changes: Changes,
) -> Result<String, ODataError> {
    let changed = events::changed_columns(entity, &changes);
    let id = rows::create(state, caller, entity.logical_name, id, changes)?
        .id
        .clone();
    events::raise(
        state,
        Message::Create,
        entity,
        &id,
        None,
        &changed,
        &caller.user_id,
    );
    plugins::after_create(state, caller, entity, &id);
    Ok(id)
}
