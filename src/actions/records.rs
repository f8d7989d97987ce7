//! The record actions: create, get, update, upsert, delete and query
//! entities, with server-driven paging.

use crate::actions::action::Action;
use crate::actions::controls;
use crate::catalog::def::{ActionDef, InputDef, InputType, input};
use crate::client::{Session, parse_json};
use crate::controls::{Controls, READ_KEYS as READ, WRITE_KEYS as WRITE};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::http::{Method, Response};
use crate::inputs::Inputs;
use crate::odata::{self, ODataQuery};
use crate::page::{self, Follow, Next, Output, RawRecords};
use crate::types::{ETag, EntityKey, EntitySet, Guid, encode_path, encode_query, string_literal};
use serde_json::{Map, Value, json};

// Input keys, each written once: the definitions and `run` use these.
const ENTITY_TYPE: &str = "entityType";
const ENTITY_ID: &str = "entityId";
const FIELD_VALUES: &str = "fieldValues";
const DYNAMIC_VALUES: &str = "dynamicValues";
const FIELD_NAMES: &str = "fieldNames";
const EXPAND: &str = "expand";
const INCLUDE_ANNOTATIONS: &str = "includeAnnotations";
const FILTER: &str = "filter";
const ORDER_BY: &str = "orderBy";
const FETCH_ALL: &str = "fetchAll";
const PAGE_SIZE: &str = "pageSize";
const NEXT_PAGE: &str = "nextPage";
const TOP: &str = "top";
const COUNT: &str = "count";
const APPLY: &str = "apply";
const IF_MATCH: &str = "ifMatch";
const IF_NONE_MATCH: &str = "ifNoneMatch";
const UPSERT_MODE: &str = "upsertMode";

// upsertMode's choices.
const CREATE_OR_UPDATE: &str = "createOrUpdate";
const CREATE_ONLY: &str = "createOnly";
const UPDATE_ONLY: &str = "updateOnly";

/// Dataverse's code for a write whose If-Match ETag is no longer the
/// record's (ConcurrencyVersionMismatch, -2147088254; Microsoft Learn,
/// "DeleteRequest.ConcurrencyBehavior"). The Web API answers it with 412
/// ("Perform conditional operations using the Web API"), whose example
/// shows an empty code: the connector then fills this one in, so a flow
/// can branch on one code either way.
const VERSION_MISMATCH_CODE: &str = "0x80060882";

/// Dataverse's code for a record that already exists (DuplicateRecord /
/// matching key values): the 412 an `If-None-Match: *` upsert gets.
const DUPLICATE_KEY_CODE: &str = "0x80040237";

/// What `count` asks Dataverse for besides `$count=true`.
const COUNT_ANNOTATIONS: &str =
    "Microsoft.Dynamics.CRM.totalrecordcount,Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded";

/// Dataverse's code for an aggregate over more than 50,000 rows
/// (AggregateQueryRecordLimit; Microsoft Learn, "Aggregate data using the
/// Web API" and "… using FetchXml": 0x8004E023).
const AGGREGATE_LIMIT_CODE: &str = "0x8004e023";

/// An aggregate over too many rows gets a hint on what to do instead.
fn explain_aggregate_limit(e: ConnectorError) -> ConnectorError {
    let code = e.code.as_deref().unwrap_or("").to_ascii_lowercase();
    if code == AGGREGATE_LIMIT_CODE || e.message.contains("AggregateQueryRecordLimit") {
        e.with_hint("An aggregate ($apply) reads at most 50,000 rows: narrow it with a filter (filter(…)/groupby(…) or the filter input), or aggregate page by page with runFetchXml.")
    } else {
        e
    }
}

pub(super) fn entity_type() -> InputDef {
    let text =
        "The entity set name (plural, case-sensitive), e.g. accounts, contacts, opportunities.";
    input(ENTITY_TYPE, "Entity Type", InputType::String, text)
        .required()
        .example(json!("accounts"))
}

pub(super) fn entity_id() -> InputDef {
    let text = "The record's GUID (braces and case tolerated), or alternate key values such as accountnumber='A-1' (several keys comma-separated; quotes inside values are escaped for you).";
    input(ENTITY_ID, "Entity ID", InputType::String, text).required()
}

fn field_values() -> InputDef {
    let text = "The columns to write, as a JSON object of logical names. Set lookups with \"<navigationProperty>@odata.bind\": \"/<entityset>(<GUID>)\", e.g. \"primarycontactid@odata.bind\": \"/contacts(…)\"; a plain GUID for a lookup is refused by Dataverse.";
    input(FIELD_VALUES, "Field Value", InputType::Json, text).example(json!({"name": "Fabrikam", "primarycontactid@odata.bind": "/contacts(3f2a0c55-1111-4a7e-9a01-0d3a8c2b7e10)"}))
}

fn dynamic_values() -> InputDef {
    input(
        DYNAMIC_VALUES,
        "Dynamic Values",
        InputType::KeyValueList,
        "Columns as a list of {key, value}, merged over Field Value (a key here wins). Keys are sent exactly as given: navigation property names in @odata.bind keys are case-sensitive.",
    )
}

fn field_names() -> InputDef {
    let text = "Columns to return ($select); lookups as _<name>_value. Empty returns every column.";
    input(FIELD_NAMES, "Field Name", InputType::List, text).example(json!(["name", "revenue"]))
}

fn expand() -> InputDef {
    input(
        EXPAND,
        "Expand Property Name",
        InputType::String,
        "$expand: navigation properties with optional nested options, e.g. primarycontactid($select=fullname),contact_customer_accounts($select=fullname;$top=5).",
    )
}

fn include_annotations() -> InputDef {
    input(
        INCLUDE_ANNOTATIONS,
        "Include Annotations",
        InputType::String,
        "Prefer odata.include-annotations value, e.g. OData.Community.Display.V1.FormattedValue (display text of choices, money, dates and lookups) or * for all.",
    )
}

fn if_match() -> InputDef {
    let text = "Write only if nobody changed the record since you read it: its @odata.etag as getEntity or queryEntities returned it, e.g. W/\"4410023\" (sent as If-Match). A record changed since is a conflict error (412) and is left as it is; * only asks that the record exists.";
    input(IF_MATCH, "If Match (ETag)", InputType::String, text).example(json!("W/\"4410023\""))
}

fn if_none_match() -> InputDef {
    let text = "The @odata.etag of the copy you already hold, e.g. W/\"4410023\" (sent as If-None-Match): while the record is unchanged, the output is {\"notModified\": true, \"etag\": …} instead of the record. Dataverse always returns the record when expand or includeAnnotations is given.";
    input(
        IF_NONE_MATCH,
        "If None Match (ETag)",
        InputType::String,
        text,
    )
    .example(json!("W/\"4410023\""))
}

fn upsert_mode() -> InputDef {
    let text = "createOrUpdate: update the record, or create it when absent. createOnly: create it; when it exists, a conflict error and nothing changes (If-None-Match: *). updateOnly: update it; when absent, a not-found error and nothing is created (If-Match: *).";
    input(UPSERT_MODE, "Upsert Mode", InputType::String, text)
        .default(json!(CREATE_OR_UPDATE))
        .choices(&[CREATE_OR_UPDATE, CREATE_ONLY, UPDATE_ONLY])
}

pub const CREATE_ENTITY: Action = Action {
    def: ActionDef {
        key: "createEntity",
        label: "Create Entity",
        description: "Creates a record and returns it (Prefer: return=representation), or at least its id.",
        deprecated: false,
        input_defs: || with_controls(vec![entity_type(), field_values(), dynamic_values()], WRITE),
    },
    run: |s, i| create(s, i).map(Output::from),
};

pub const GET_ENTITY: Action = Action {
    def: ActionDef {
        key: "getEntity",
        label: "Get Entity",
        description: "Retrieves one record by GUID or alternate key.",
        deprecated: false,
        input_defs: || {
            let inputs = vec![
                entity_type(),
                entity_id(),
                field_names(),
                expand(),
                include_annotations(),
                if_none_match(),
            ];
            with_controls(inputs, READ)
        },
    },
    run: get,
};

pub const UPDATE_ENTITY: Action = Action {
    def: ActionDef {
        key: "updateEntity",
        label: "Update Entity",
        description: "Updates an existing record (PATCH with If-Match: *, so a missing record is not-found and never created); with ifMatch, only if nobody changed it since it was read.",
        deprecated: false,
        input_defs: || {
            let inputs = vec![
                entity_type(),
                entity_id(),
                field_values(),
                dynamic_values(),
                if_match().default(json!("*")),
            ];
            with_controls(inputs, WRITE)
        },
    },
    run: |s, i| update(s, i).map(Output::from),
};

pub const UPSERT_ENTITY: Action = Action {
    def: ActionDef {
        key: "upsertEntity",
        label: "Upsert Entity",
        description: "Updates the record, or creates it with that GUID or those alternate key values when it does not exist (PATCH without If-Match); upsertMode createOnly or updateOnly allows only one of the two.",
        deprecated: false,
        input_defs: || {
            let inputs = vec![
                entity_type(),
                entity_id(),
                field_values(),
                dynamic_values(),
                upsert_mode(),
            ];
            with_controls(inputs, WRITE)
        },
    },
    run: |s, i| upsert(s, i).map(Output::from),
};

pub const DELETE_ENTITY: Action = Action {
    def: ActionDef {
        key: "deleteEntity",
        label: "Delete Entity",
        description: "Deletes one record by GUID or alternate key; with ifMatch, only if nobody changed it since it was read.",
        deprecated: false,
        input_defs: || with_controls(vec![entity_type(), entity_id(), if_match()], WRITE),
    },
    run: |s, i| delete(s, i).map(Output::from),
};

pub const QUERY_ENTITIES: Action = Action {
    def: ActionDef {
        key: "queryEntities",
        label: "Query Entities",
        description: "Lists records with $select, $filter, $orderby and $expand, one page at a time (pageSize, nextPage) or all pages (fetchAll). Returns the records, their count and the next page's link.",
        deprecated: false,
        input_defs: query_inputs,
    },
    run: query,
};

/// An action's own inputs followed by the write (or read) controls.
fn with_controls(mut inputs: Vec<InputDef>, keys: &[&str]) -> Vec<InputDef> {
    inputs.extend(controls::inputs(keys));
    inputs
}

fn query_inputs() -> Vec<InputDef> {
    let inputs = vec![
        entity_type(),
        field_names(),
        input(
            FILTER,
            "Filter Expression",
            InputType::String,
            "$filter as OData text, e.g. statecode eq 0 and contains(name,'contoso'); quotes inside string literals are doubled (O''Brien). Sent as written, URL-encoded.",
        ),
        {
            let text = "$orderby: columns with optional asc/desc, comma-separated, e.g. createdon desc, name.";
            input(ORDER_BY, "Order By Field Name", InputType::String, text)
                .example(json!("createdon desc"))
        },
        expand(),
        {
            let text = "Follow @odata.nextLink to the last page and return every record once, in order. At most 127 MiB of records in one answer: past that, an error asks for fewer columns or rows.";
            input(FETCH_ALL, "Fetch All", InputType::Boolean, text).default(json!(false))
        },
        {
            let text =
                "Page size, sent as Prefer: odata.maxpagesize (Dataverse's maximum is 5000).";
            input(PAGE_SIZE, "Records Per Page", InputType::Integer, text)
                .default(json!(100))
                .range(1, 5000)
        },
        input(
            NEXT_PAGE,
            "Next Page ID",
            InputType::String,
            "The nextLink from an earlier call, to read the following page; must point at this connection's environment.",
        ),
        input(
            TOP,
            "Top",
            InputType::Integer,
            "At most this many records in all (across pages).",
        )
        .range(1, i64::from(u32::MAX)),
        include_annotations(),
        input(
            COUNT,
            "Return Total Count",
            InputType::Boolean,
            "Ask for $count=true: totalCount is the number of matching rows (Dataverse stops counting at 5,000: totalCountLimitExceeded then says so).",
        )
        .default(json!(false)),
        {
            let text = "An $apply aggregation instead of rows: groupby((statecode),aggregate($count as n)), aggregate(revenue with sum as total), or filter(…)/groupby(…). Functions: sum, average, min, max, countdistinct, $count. At most 50,000 rows are aggregated.";
            input(APPLY, "Aggregate ($apply)", InputType::String, text)
                .example(json!("groupby((statecode),aggregate(revenue with sum as total))"))
        },
    ];
    with_controls(inputs, READ)
}

pub(super) fn set_of(inputs: &Inputs) -> Result<EntitySet> {
    EntitySet::parse(ENTITY_TYPE, inputs.expect_str(ENTITY_TYPE)?)
}

pub(super) fn key_of(inputs: &Inputs) -> Result<EntityKey> {
    EntityKey::parse(ENTITY_ID, inputs.expect_str(ENTITY_ID)?)
}

/// `fieldValues` with `dynamicValues` merged over it; key case is kept.
fn body_of(inputs: &Inputs) -> Result<Map<String, Value>> {
    let mut body = match inputs.get(FIELD_VALUES)? {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) if s.trim().starts_with('{') => match serde_json::from_str(s) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(ConnectorError::invalid_input(
                    FIELD_VALUES,
                    "must be a JSON object of column names and values",
                ));
            }
        },
        Some(_) => {
            return Err(ConnectorError::invalid_input(
                FIELD_VALUES,
                "must be a JSON object of column names and values",
            ));
        }
    };
    for (k, v) in inputs.pairs(DYNAMIC_VALUES)? {
        if k.trim().is_empty() {
            return Err(ConnectorError::invalid_input(
                DYNAMIC_VALUES,
                "has an empty key",
            ));
        }
        body.insert(k, v);
    }
    Ok(body)
}

fn select_of(inputs: &Inputs) -> Result<Vec<String>> {
    odata::parse_select(FIELD_NAMES, &inputs.list(FIELD_NAMES)?)
}

fn annotations_of(inputs: &Inputs) -> Result<Option<String>> {
    match inputs.str(INCLUDE_ANNOTATIONS)? {
        Some(a) => odata::parse_annotations(INCLUDE_ANNOTATIONS, a),
        None => Ok(None),
    }
}

/// Improves the hint of a refused write: a plain value given for a lookup,
/// or an `@odata.bind` key naming no navigation property.
fn explain_write_error(
    session: &mut Session<'_>,
    set: &EntitySet,
    body: &Map<String, Value>,
    mut e: ConnectorError,
) -> ConnectorError {
    if e.status != Some(400) {
        return e;
    }
    let msg = e.message.clone();
    // "The property 'parentcustomerid' does not exist on type …" for a
    // polymorphic lookup's logical name given a GUID: also a lookup mistake.
    let unknown_guid_property = msg
        .strip_prefix("The property '")
        .and_then(|r| r.split('\'').next())
        .filter(|p| {
            msg.contains("does not exist on type")
                && body
                    .get(*p)
                    .and_then(Value::as_str)
                    .is_some_and(|v| Guid::parse(v).is_some())
        })
        .is_some();
    if msg.contains("navigation property")
        || msg.contains("Entity Reference")
        || unknown_guid_property
    {
        let plain: Vec<&String> = body
            .keys()
            .filter(|k| !k.contains('@'))
            .filter(|k| {
                body.get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|v| Guid::parse(v).is_some())
            })
            .collect();
        let named = if plain.is_empty() {
            "the lookup".to_string()
        } else {
            plain
                .iter()
                .map(|k| format!("'{k}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        e.hint = Some(format!(
            "A lookup was given as a plain GUID ({named}). Set lookups with @odata.bind: \"<navigationProperty>@odata.bind\": \"/<entityset>(<GUID>)\", e.g. \"primarycontactid@odata.bind\": \"/contacts(00000000-0000-0000-0000-000000000000)\"."
        ));
    } else if let Some(prop) = msg
        .strip_prefix("An undeclared property '")
        .and_then(|r| r.split('\'').next())
    {
        let suggestion = navigation_suggestions(session, set, prop);
        e.hint = Some(match suggestion {
            Some(s) => format!(
                "'{prop}@odata.bind' names no navigation property of {set}. Navigation property names are case-sensitive and can differ from the lookup's logical name: use {s}."
            ),
            None => format!(
                "'{prop}@odata.bind' names no navigation property of {set}. Navigation property names are case-sensitive and can differ from the lookup's logical name (e.g. parentcustomerid_account); see the entity's ManyToOneRelationships."
            ),
        });
    }
    e
}

/// Asks the entity's metadata for the navigation properties of lookup
/// `prop` (ManyToOne relationships). Best effort: `None` when metadata is
/// unavailable.
fn navigation_suggestions(
    session: &mut Session<'_>,
    set: &EntitySet,
    prop: &str,
) -> Option<String> {
    let query = format!(
        "EntityDefinitions?$filter={}&$select=LogicalName&$expand={}",
        encode_query(&format!("EntitySetName eq '{}'", set.as_str())),
        encode_query(
            "ManyToOneRelationships($select=ReferencingAttribute,ReferencingEntityNavigationPropertyName,ReferencedEntity)"
        )
    );
    let request = session.request(Method::Get, &query).ok()?;
    let body = session.send_json(request).ok()?;
    let rels = body
        .get("value")?
        .get(0)?
        .get("ManyToOneRelationships")?
        .as_array()?;
    let lower = prop.to_ascii_lowercase();
    let matches: Vec<String> = rels
        .iter()
        .filter(|r| {
            let attr = r
                .get("ReferencingAttribute")
                .and_then(Value::as_str)
                .unwrap_or("");
            let nav = r
                .get("ReferencingEntityNavigationPropertyName")
                .and_then(Value::as_str)
                .unwrap_or("");
            attr.eq_ignore_ascii_case(&lower) || nav.eq_ignore_ascii_case(&lower)
        })
        .filter_map(|r| {
            let nav = r.get("ReferencingEntityNavigationPropertyName")?.as_str()?;
            let target = r
                .get("ReferencedEntity")
                .and_then(Value::as_str)
                .unwrap_or("?");
            Some(format!("'{nav}@odata.bind' (→ {target})"))
        })
        .collect();
    (!matches.is_empty()).then(|| matches.join(" or "))
}

/// The record id of a write's answer: the `OData-EntityId` header, else
/// `Location`, else the body's `@odata.id` or primary key.
fn id_of(response: &Response, set: &EntitySet, body: Option<&Value>) -> Option<String> {
    let from_url = |u: &str| Guid::in_entity_url(u).map(Guid::into_string);
    if let Some(id) = response.header("OData-EntityId").and_then(from_url) {
        return Some(id);
    }
    if let Some(id) = response.header("Location").and_then(from_url) {
        return Some(id);
    }
    let body = body?;
    if let Some(id) = body
        .get("@odata.id")
        .and_then(Value::as_str)
        .and_then(from_url)
    {
        return Some(id);
    }
    let s = set.as_str();
    let singular = if let Some(stem) = s.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = s.strip_suffix("ses") {
        format!("{stem}s")
    } else {
        s.strip_suffix('s').unwrap_or(s).to_string()
    };
    for key in [format!("{singular}id"), format!("{s}id")] {
        if let Some(id) = body.get(&key).and_then(Value::as_str).and_then(Guid::parse) {
            return Some(id.to_string());
        }
    }
    None
}

fn json_body(response: &Response) -> Result<Option<Value>> {
    if response.body.is_empty() {
        Ok(None)
    } else {
        parse_json(response).map(Some)
    }
}

fn create(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let set = set_of(inputs)?;
    let mut body = body_of(inputs)?;
    let c = controls::of(inputs, WRITE)?;
    if let Some(p) = &c.partition_id {
        controls::elastic(session, &set, &c)?;
        // "Use elastic tables using code": a create names its partition in
        // the body's partitionid column.
        match body.get("partitionid") {
            Some(Value::String(given)) if given != p => {
                return Err(ConnectorError::invalid_input(
                    c.partition_input.clone(),
                    format!("'{p}' differs from the partitionid '{given}' in the record's values"),
                ));
            }
            _ => {
                body.insert("partitionid".into(), Value::String(p.clone()));
            }
        }
    }
    let request = session
        .request(Method::Post, set.as_str())?
        .header("Prefer", "return=representation")
        .json_body(&Value::Object(body.clone()));
    let response = match session.send_ok(c.apply(request)) {
        Ok(r) => r,
        Err(e) => return Err(write_error(session, &set, &body, &c, e)),
    };
    let record = json_body(&response)?;
    let id = id_of(&response, &set, record.as_ref());
    let mut out = json!({"id": id, "record": record});
    controls::add_session_token(&mut out, &response);
    Ok(out)
}

/// A refused write, explained: its values (lookups), then its controls
/// (privileges, the records a duplicate matched).
fn write_error(
    session: &mut Session<'_>,
    set: &EntitySet,
    body: &Map<String, Value>,
    c: &Controls,
    e: ConnectorError,
) -> ConnectorError {
    let e = explain_write_error(session, set, body, e);
    c.explain(controls::name_duplicates(session, set, body, e))
}

fn get(session: &mut Session<'_>, inputs: &Inputs) -> Result<Output> {
    let set = set_of(inputs)?;
    let key = key_of(inputs)?;
    let query = ODataQuery {
        select: select_of(inputs)?,
        expand: match inputs.str(EXPAND)? {
            Some(e) => odata::parse_expand(EXPAND, e)?,
            None => Vec::new(),
        },
        ..Default::default()
    };
    let c = controls::of(inputs, READ)?;
    controls::elastic(session, &set, &c)?;
    let mut request = c.apply(session.request(
        Method::Get,
        &query.append_to(&format!("{set}{}", key.to_segment())),
    )?);
    if let Some(p) = odata::prefer_header(None, annotations_of(inputs)?.as_deref()) {
        request = request.header("Prefer", p);
    }
    let held = etag_of(inputs, IF_NONE_MATCH)?;
    if let Some(tag) = &held {
        request = request.header("If-None-Match", tag.as_str());
    }
    // 304 Not Modified, without a body: the copy the caller holds is
    // current (Microsoft Learn, "Perform conditional operations using the
    // Web API", Conditional retrievals).
    let response = match (session.send_ok(request), &held) {
        (Err(e), Some(tag)) if e.status == Some(304) => {
            // An ETag's only `"` are the two around its opaque part, and
            // it holds no `\` (ETag::parse): escaping those makes it JSON.
            let tag = tag.as_str().replace('"', "\\\"");
            return Ok(Output::Json(format!(
                "{{\"notModified\":true,\"etag\":\"{tag}\"}}"
            )));
        }
        (response, _) => response.map_err(|e| c.explain(e))?,
    };
    // The record as Dataverse sent it: validated, not re-encoded.
    Ok(Output::Json(page::raw_json(&response)?))
}

/// An optional ETag input.
fn etag_of(inputs: &Inputs, key: &str) -> Result<Option<ETag>> {
    inputs.str(key)?.map(|t| ETag::parse(key, t)).transpose()
}

/// ifMatch: `*` or an ETag.
fn if_match_of(inputs: &Inputs) -> Result<Option<IfMatch>> {
    Ok(match inputs.str(IF_MATCH)? {
        Some(t) if t.trim() == "*" => Some(IfMatch::Exists),
        Some(t) => Some(IfMatch::Unchanged(ETag::parse(IF_MATCH, t)?)),
        None => None,
    })
}

/// What an `If-Match` header asks of the record.
enum IfMatch {
    /// `*`: that it exists.
    Exists,
    /// That it is unchanged since this version was read.
    Unchanged(ETag),
}

impl IfMatch {
    fn header(&self) -> &str {
        match self {
            IfMatch::Exists => "*",
            IfMatch::Unchanged(tag) => tag.as_str(),
        }
    }

    /// A 412 for an ETag is a record changed since it was read
    /// (ConcurrencyVersionMismatch): nothing was `done`; re-read first.
    fn explain(&self, e: ConnectorError, done: &str) -> ConnectorError {
        let IfMatch::Unchanged(tag) = self else {
            return e;
        };
        let duplicate = e
            .code
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(DUPLICATE_KEY_CODE));
        if e.status != Some(412) || duplicate {
            return e;
        }
        let e = if e.code.is_none() {
            e.with_code(VERSION_MISMATCH_CODE)
        } else {
            e
        };
        e.with_hint(format!(
            "The record changed since it was read (its ETag is no longer {tag}), so nothing was {done}. Read it again (getEntity), decide on what it holds now, and send its new @odata.etag as ifMatch."
        ))
    }
}

fn update(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let condition = if_match_of(inputs)?
        .ok_or_else(|| ConnectorError::invalid_input(IF_MATCH, "is required"))?;
    let (out, _) = patch(session, inputs, Some(("If-Match", condition.header())))
        .map_err(|e| match e.kind {
            ErrorKind::NotFound => e.with_hint(
                "No record has this id or key; updateEntity never creates one (use upsertEntity to create when absent).",
            ),
            _ => condition.explain(e, "updated"),
        })?;
    Ok(out)
}

/// upsertEntity: a PATCH without a condition, or with the one its mode
/// names (Microsoft Learn, "Perform conditional operations using the Web
/// API", Limit upsert operations: `If-None-Match: *` prevents an update,
/// `If-Match: *` a create).
fn upsert(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let mode = inputs.expect_str(UPSERT_MODE)?;
    // createOrUpdate has no condition.
    let condition = UPSERT_CONDITIONS
        .iter()
        .find(|c| c.mode.eq_ignore_ascii_case(mode));
    let (mut out, status) = patch(session, inputs, condition.map(|c| (c.header, "*"))).map_err(
        |e| match condition {
            Some(c) if e.status == Some(c.refused) => e.with_hint(c.hint),
            _ => e,
        },
    )?;
    out["created"] = Value::Bool(status == 201);
    Ok(out)
}

/// What an upsertMode other than createOrUpdate sends, and how Dataverse
/// refuses a record that is not as it asks.
struct UpsertCondition {
    mode: &'static str,
    /// Sent with the value `*`.
    header: &'static str,
    refused: u16,
    hint: &'static str,
}

const UPSERT_CONDITIONS: [UpsertCondition; 2] = [
    UpsertCondition {
        mode: CREATE_ONLY,
        header: "If-None-Match",
        refused: 412,
        hint: "upsertMode createOnly: a record with this id or key already exists, and it was left unchanged. Use updateEntity (or upsertMode createOrUpdate) to change it.",
    },
    UpsertCondition {
        mode: UPDATE_ONLY,
        header: "If-Match",
        refused: 404,
        hint: "upsertMode updateOnly: no record has this id or key, and none was created. Check the id or key, or use upsertMode createOrUpdate to create it.",
    },
];

/// PATCHes the record with `condition` (a header) and returns
/// `{id, record}` and the answer's status.
fn patch(
    session: &mut Session<'_>,
    inputs: &Inputs,
    condition: Option<(&str, &str)>,
) -> Result<(Value, u16)> {
    let set = set_of(inputs)?;
    let key = key_of(inputs)?;
    let body = body_of(inputs)?;
    let c = controls::of(inputs, WRITE)?;
    let segment = match (controls::elastic(session, &set, &c)?, &c.partition_id, &key) {
        // "Use elastic tables using code": PATCH names the partition in the
        // key (KeyForNoSqlEntityWithPKPartitionId); partitionId as a query
        // option is ignored there.
        (Some(table), Some(p), EntityKey::Id(g)) => format!(
            "({}={g},partitionid={})",
            table.primary_id,
            encode_path(&string_literal(p))
        ),
        (Some(_), _, _) => {
            return Err(ConnectorError::invalid_input(
                c.partition_input.clone(),
                "needs entityId as a GUID; with an alternate key, put partitionid in the key instead",
            ));
        }
        _ => key.to_segment(),
    };
    let mut request = session
        .request(Method::Patch, &format!("{set}{segment}"))?
        .header("Prefer", "return=representation")
        .json_body(&Value::Object(body.clone()));
    if let Some((name, value)) = condition {
        request = request.header(name, value);
    }
    let response = match session.send_ok(c.apply(request)) {
        Ok(r) => r,
        Err(e) => return Err(write_error(session, &set, &body, &c, e)),
    };
    let record = json_body(&response)?;
    let id = match &key {
        EntityKey::Id(g) => Some(g.to_string()),
        EntityKey::Alternate(_) => id_of(&response, &set, record.as_ref()),
    };
    let mut out = json!({"id": id, "record": record});
    controls::add_session_token(&mut out, &response);
    Ok((out, response.status))
}

fn delete(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let set = set_of(inputs)?;
    let key = key_of(inputs)?;
    let condition = if_match_of(inputs)?;
    let controls = controls::of(inputs, WRITE)?;
    controls::elastic(session, &set, &controls)?;
    let mut request = session.request(Method::Delete, &format!("{set}{}", key.to_segment()))?;
    if let Some(c) = &condition {
        request = request.header("If-Match", c.header());
    }
    let response = session.send(controls.apply(request))?;
    // A 404 after retrying an attempt that may have been applied means
    // that attempt deleted the record: the outcome the caller asked for.
    let deleted_by_earlier_attempt =
        response.status == 404 && session.retried_after_maybe_applied();
    if !response.is_success() && !deleted_by_earlier_attempt {
        let e =
            ConnectorError::from_web_api(response.status, response.retry_after(), &response.body);
        return Err(controls.explain(match &condition {
            Some(c) => c.explain(e, "deleted"),
            None => e,
        }));
    }
    let id = match &key {
        EntityKey::Id(g) => Value::String(g.to_string()),
        EntityKey::Alternate(_) => Value::Null,
    };
    Ok(json!({"deleted": true, "id": id}))
}

/// A page of a query to read: the query's own URL, or a link (nextPage, or
/// a nextLink Dataverse returned), checked against the connection's
/// environment before it is sent.
enum PageTarget {
    Query(url::Url),
    Link(String),
}

fn query(session: &mut Session<'_>, inputs: &Inputs) -> Result<Output> {
    let set = set_of(inputs)?;
    let c = controls::of(inputs, READ)?;
    controls::elastic(session, &set, &c)?;
    let page_size = inputs.expect_u64(PAGE_SIZE)?.clamp(1, 5000) as u32;
    let top = inputs.u64(TOP)?.map(|t| t.min(u64::from(u32::MAX)) as u32);
    let fetch_all = inputs.bool(FETCH_ALL)?;
    let count = inputs.bool(COUNT)?;
    let apply = match inputs.str(APPLY)?.filter(|a| !a.trim().is_empty()) {
        Some(a) => Some(odata::parse_apply(APPLY, a)?),
        None => None,
    };
    let mut annotations = annotations_of(inputs)?;
    if count {
        // Whether the count stopped at Dataverse's 5,000 (Microsoft Learn,
        // "Count rows": the annotations come only when asked for).
        annotations = Some(match annotations {
            Some(a) if a.split(',').any(|x| x.trim() == "*") => a,
            Some(a) => format!("{a},{COUNT_ANNOTATIONS}"),
            None => COUNT_ANNOTATIONS.to_string(),
        });
    }
    // Dataverse ignores $top when odata.maxpagesize is sent, so the total
    // is capped here; a page never needs to be larger than what is left.
    let page = top.map_or(page_size, |t| t.min(page_size));
    let prefer = odata::prefer_header(Some(page), annotations.as_deref());

    let first = match inputs.str(NEXT_PAGE)?.filter(|s| !s.trim().is_empty()) {
        Some(link) => PageTarget::Link(link.to_string()),
        None => {
            let query = ODataQuery {
                select: select_of(inputs)?,
                filter: inputs.str(FILTER)?.map(str::to_string),
                orderby: match inputs.str(ORDER_BY)? {
                    Some(o) => odata::parse_orderby(ORDER_BY, o)?,
                    None => Vec::new(),
                },
                expand: match inputs.str(EXPAND)? {
                    Some(e) => odata::parse_expand(EXPAND, e)?,
                    None => Vec::new(),
                },
                top,
                count,
                apply,
            };
            PageTarget::Query(session.web_api().resource(&query.append_to(set.as_str()))?)
        }
    };
    let records = RawRecords::new(
        FETCH_ALL,
        "Ask for less per call: fewer columns (fieldNames), fewer rows (filter, top), or page by page (pageSize and nextPage) instead of fetchAll.",
    );
    let follow = if fetch_all {
        Follow::All
    } else {
        Follow::OnePage
    };
    let limit = top.map_or(usize::MAX, |t| t as usize);
    let mut count_annotation = None;
    let mut limit_exceeded = None;
    let paged = page::read_pages(
        session,
        records,
        first,
        follow,
        "a query",
        "nextLink",
        |session, page: &PageTarget| {
            let url = match page {
                PageTarget::Query(url) => url.clone(),
                PageTarget::Link(link) => {
                    odata::resolve_next_link(session.web_api(), NEXT_PAGE, link)?
                }
            };
            let mut request = c.apply(session.request_to(Method::Get, url));
            if let Some(p) = &prefer {
                request = request.header("Prefer", p.clone());
            }
            session.send_ok(request).map_err(explain_aggregate_limit)
        },
        |_, _, body, records| {
            if count_annotation.is_none() {
                count_annotation = body.annotation("@odata.count").cloned();
                limit_exceeded = body
                    .annotation("@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded")
                    .and_then(Value::as_bool);
            }
            for record in body
                .records
                .iter()
                .take(limit.saturating_sub(records.len()))
            {
                records.push(record)?;
            }
            let next = body.annotation("@odata.nextLink").and_then(Value::as_str);
            Ok(match next {
                Some(next) if records.len() < limit => Next::Page {
                    cursor: PageTarget::Link(next.to_string()),
                    mark: next.to_string(),
                },
                _ => Next::Done,
            })
        },
    )?;
    let records = paged.records;
    let next_link = paged.next.map(|(_, link)| link);
    let mut envelope = Map::new();
    if count {
        envelope.insert(
            "totalCount".into(),
            count_annotation.clone().unwrap_or(Value::Null),
        );
        envelope.insert(
            "totalCountLimitExceeded".into(),
            limit_exceeded.map_or(Value::Null, Value::from),
        );
    }
    if let Some(c) = count_annotation {
        envelope.insert("@odata.count".into(), c);
    }
    envelope.insert("count".into(), Value::from(records.len()));
    envelope.insert(
        "nextLink".into(),
        next_link.map_or(Value::Null, Value::from),
    );
    envelope.insert("pages".into(), Value::from(paged.pages));
    Ok(Output::Collection {
        envelope,
        key: "value",
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(headers: &[(&str, &str)]) -> Response {
        Response {
            status: 201,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }

    #[test]
    fn created_id_comes_from_any_place_a_server_puts_it() {
        let set = EntitySet::parse("entityType", "opportunities").unwrap();
        let id = "a0000000-0000-4000-8000-000000000001";
        let header = format!("https://x.crm.dynamics.com/api/data/v9.2/opportunities({id})");
        assert_eq!(
            id_of(&response(&[("OData-EntityId", &header)]), &set, None).as_deref(),
            Some(id)
        );
        // 201 + body + Location, no OData-EntityId (a plain OData server).
        assert_eq!(
            id_of(&response(&[("Location", &header)]), &set, Some(&json!({}))).as_deref(),
            Some(id)
        );
        // Dataverse with return=representation: only the body.
        let body = json!({"opportunityid": id.to_ascii_uppercase()});
        assert_eq!(
            id_of(&response(&[]), &set, Some(&body)).as_deref(),
            Some(id)
        );
        assert_eq!(id_of(&response(&[]), &set, Some(&json!({}))), None);
    }

    #[test]
    fn dynamic_values_merge_over_field_values_keeping_case() {
        let def = CREATE_ENTITY.def;
        let inputs = Inputs::parse(
            &def,
            r#"{"entityType":"accounts","fieldValues":{"name":"A","revenue":1},"dynamicValues":[{"key":"name","value":"B"},{"key":"parentcustomerid_Account@odata.bind","value":"/accounts(1)"}]}"#,
        )
        .unwrap();
        let body = body_of(&inputs).unwrap();
        assert_eq!(body["name"], "B");
        assert_eq!(body["revenue"], 1);
        assert!(body.contains_key("parentcustomerid_Account@odata.bind"));
        let bad = Inputs::parse(&def, r#"{"entityType":"accounts","fieldValues":[1]}"#).unwrap();
        assert_eq!(
            body_of(&bad).unwrap_err().kind,
            ErrorKind::InvalidInput {
                input: "fieldValues".into()
            }
        );
    }

    /// A session against canned answers, with a token that needs no fetch.
    fn fake_session(platform: &mut crate::http::fake::ByUrl) -> Session<'_> {
        use crate::connection::{ConnectionType, Settings, TokenState};
        let settings = Settings::parse(
            ConnectionType::ClientCredentials,
            r#"{"webApiUrl":"https://contoso.crm.dynamics.com","tokenUrl":"https://login.microsoftonline.com/t/oauth2/v2.0/token","clientId":"c","clientSecret":"s"}"#,
        )
        .unwrap();
        let token = TokenState {
            access_token: "t".into(),
            expires_at: 1_800_000_000,
            refresh_token: None,
            scope: None,
        };
        Session::new(platform, settings, Some(token))
    }

    #[test]
    fn a_stale_etag_without_a_code_gets_the_documented_one() {
        // The 412 as "Perform conditional operations using the Web API"
        // shows it: an empty code.
        let mismatch = r#"{"error":{"code":"","message":"The version of the existing record doesn't match the RowVersion property provided."}}"#;
        let mut platform =
            crate::http::fake::ByUrl::new(vec![("/accounts(", 412, mismatch.to_string())]);
        let mut session = fake_session(&mut platform);
        let def = UPDATE_ENTITY.def;
        let inputs = Inputs::parse(
            &def,
            r#"{"entityType":"accounts","entityId":"a0000000-0000-4000-8000-000000000001","fieldValues":{"name":"x"},"ifMatch":"W/\"7\""}"#,
        )
        .unwrap();
        let e = update(&mut session, &inputs).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(e.status, Some(412));
        assert_eq!(e.code.as_deref(), Some(VERSION_MISMATCH_CODE));
        assert!(e.hint.unwrap().contains("W/\"7\""));
        // A duplicate key keeps its own code and hint.
        let duplicate = r#"{"error":{"code":"0x80040237","message":"A record with matching key values already exists."}}"#;
        let mut platform =
            crate::http::fake::ByUrl::new(vec![("/accounts(", 412, duplicate.to_string())]);
        let mut session = fake_session(&mut platform);
        let e = update(&mut session, &inputs).unwrap_err();
        assert_eq!(e.code.as_deref(), Some(DUPLICATE_KEY_CODE));
        assert!(!e.hint.unwrap_or_default().contains("changed since"));
    }

    #[test]
    fn an_undeclared_bind_gets_the_navigation_property_from_metadata() {
        let undeclared = r#"{"error":{"code":"0x80060888","message":"An undeclared property 'parentcustomerid' which only has property annotations in the payload but no property value was found in the payload."}}"#;
        let metadata = r#"{"value":[{"LogicalName":"contact","ManyToOneRelationships":[
            {"ReferencingAttribute":"parentcustomerid","ReferencingEntityNavigationPropertyName":"parentcustomerid_account","ReferencedEntity":"account"},
            {"ReferencingAttribute":"parentcustomerid","ReferencingEntityNavigationPropertyName":"parentcustomerid_contact","ReferencedEntity":"contact"},
            {"ReferencingAttribute":"ownerid","ReferencingEntityNavigationPropertyName":"ownerid","ReferencedEntity":"systemuser"}]}]}"#;
        let mut platform = crate::http::fake::ByUrl::new(vec![
            ("EntityDefinitions", 200, metadata.to_string()),
            ("/contacts", 400, undeclared.to_string()),
        ]);
        let mut session = fake_session(&mut platform);
        let def = CREATE_ENTITY.def;
        let inputs = Inputs::parse(
            &def,
            r#"{"entityType":"contacts","fieldValues":{"parentcustomerid@odata.bind":"/accounts(a0000000-0000-4000-8000-000000000001)"}}"#,
        )
        .unwrap();
        let e = create(&mut session, &inputs).unwrap_err();
        let hint = e.hint.unwrap();
        assert!(
            hint.contains("'parentcustomerid_account@odata.bind' (→ account)")
                && hint.contains("'parentcustomerid_contact@odata.bind' (→ contact)")
                && !hint.contains("ownerid"),
            "{hint}"
        );
        drop(session);
        let meta = platform
            .sent
            .iter()
            .find(|u| u.contains("EntityDefinitions"))
            .unwrap();
        assert!(meta.contains("EntitySetName%20eq%20"), "{meta}");
    }
}
