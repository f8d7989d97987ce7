//! The schema actions: table and column definitions for builders' pickers
//! ("which entity?", "which field?") and column create/update. Query
//! building and validation live in [`crate::metadata`].

use crate::actions::action::Action;
use crate::catalog::def::{ActionDef, InputDef, InputType, input};
use crate::client::Session;
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::http::Method;
use crate::inputs::Inputs;
use crate::metadata::{
    self, AttributeRef, AttributeType, EntityRef, TOP_LEVEL_PROPERTIES, is_top_level, names_entity,
    surface_labels,
};
use crate::odata;
use crate::page::Output;
use crate::types::{EntitySet, Guid, encode_query, string_literal};
use serde_json::{Value, json};

// Input keys, each written once: the definitions and `run` use these.
const ENTITY_ID: &str = "entityId";
const ATTRIBUTE_TYPE: &str = "attributeType";
const FIELD_NAMES: &str = "fieldNames";
const EXPAND: &str = "expand";
const ATTRIBUTE_BODY: &str = "attributeBody";
const SOLUTION_UNIQUE_NAME: &str = "solutionUniqueName";
const ENTITY_TYPE: &str = "entityType";
const USE_LOGICAL_NAME: &str = "useLogicalName";
const DEFAULT_SELECTED: &str = "defaultSelected";
const ENTITY_TYPE_FILTER: &str = "entityTypeFilter";
const INCLUDE_ALL_CUSTOM: &str = "includeAllCustom";
const TOP_LEVEL_ONLY: &str = "topLevelOnly";
const INCLUDE_CUSTOM: &str = "includeCustom";
const INCLUDE_DETAILS: &str = "includeDetails";
const MAX_PAGE_SIZE: &str = "maxPageSize";
const NEXT_LINK: &str = "nextLink";
const FETCH_ALL: &str = "fetchAll";
const FILTER: &str = "filter";
const ATTRIBUTE_KEY: &str = "attributeKey";

/// Table properties every listing returns.
const ENTITY_BASICS: &[&str] = &[
    "LogicalName",
    "SchemaName",
    "EntitySetName",
    "DisplayName",
    "DisplayCollectionName",
    "PrimaryIdAttribute",
    "PrimaryNameAttribute",
    "IsCustomEntity",
    "ObjectTypeCode",
];

/// listEntities' "Include Entity Details".
const ENTITY_DETAILS: &[&str] = &[
    "Description",
    "OwnershipType",
    "IsActivity",
    "IsValidForAdvancedFind",
    "IsIntersect",
    "IsChildEntity",
    "IsActivityParty",
    "ChangeTrackingEnabled",
    "IsManaged",
    "IsCustomizable",
];

/// Column properties every attribute listing returns.
const ATTRIBUTE_BASICS: &[&str] = &[
    "LogicalName",
    "SchemaName",
    "AttributeType",
    "DisplayName",
    "IsCustomAttribute",
    "IsPrimaryId",
    "IsPrimaryName",
];

fn entity_id() -> InputDef {
    let text = "The table's definition: its MetadataId GUID or its logical name (account, new_project; LogicalName='account' also works).";
    input(ENTITY_ID, "Entity ID", InputType::String, text)
        .required()
        .example(json!("account"))
}

fn attribute_type() -> InputDef {
    let text = "Only columns of this type, read through its cast so type-specific properties (MaxLength, Precision, Targets, OptionSet) are available: Money, String, Memo, Integer, BigInt, Decimal, Double, DateTime, Boolean, Picklist, MultiSelectPicklist, State, Status, Lookup, Customer, Owner, Uniqueidentifier, Image, File.";
    input(ATTRIBUTE_TYPE, "Attribute Type", InputType::String, text).example(json!("Money"))
}

fn field_names() -> InputDef {
    input(
        FIELD_NAMES,
        "Field Names",
        InputType::List,
        "Metadata properties to return ($select), e.g. LogicalName, AttributeType, DisplayName; MetadataId always comes back. Empty returns every property.",
    )
}

fn expand() -> InputDef {
    input(
        EXPAND,
        "Expand",
        InputType::String,
        "$expand of metadata navigation properties, e.g. OptionSet (with a Picklist attribute type).",
    )
}

fn attribute_body() -> InputDef {
    let text = "The AttributeMetadata JSON: @odata.type of a concrete type (e.g. Microsoft.Dynamics.CRM.MoneyAttributeMetadata), SchemaName with the publisher prefix (new_Balance), DisplayName label, RequiredLevel and the type's properties.";
    input(ATTRIBUTE_BODY, "Attribute Body", InputType::Json, text).required().example(json!({ "@odata.type": "Microsoft.Dynamics.CRM.MoneyAttributeMetadata", "SchemaName": "new_Balance", "PrecisionSource": 2, "RequiredLevel": {"Value": "None", "CanBeChanged": true, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"}, "DisplayName": {"@odata.type": "Microsoft.Dynamics.CRM.Label", "LocalizedLabels": [{"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": "Balance", "LanguageCode": 1033}]} }))
}

fn solution() -> InputDef {
    input(
        SOLUTION_UNIQUE_NAME,
        "Solution Unique Name",
        InputType::String,
        "Adds the column to this unmanaged solution (MSCRM.SolutionUniqueName); empty uses the default solution.",
    )
}

pub const GET_ENTITY_METADATA: Action = Action {
    def: ActionDef {
        key: "getEntityMetadata",
        label: "Get Entity Metadata",
        description: "One table's definition (EntityMetadata) with its columns, labels surfaced as displayName/displayCollectionName/description.",
        deprecated: false,
        input_defs: || {
            vec![
                {
                    let text = "The table: its logical name (account) when Use Logical Name is on, else its entity set name (accounts).";
                    input(ENTITY_TYPE, "Entity Type", InputType::String, text)
                        .required()
                        .example(json!("account"))
                },
                {
                    let text = "On: EntityDefinitions(LogicalName='account'). Off: Entity Type is the entity set name and the table is found with $filter=EntitySetName eq '…'.";
                    input(
                        USE_LOGICAL_NAME,
                        "Use Logical Name for Lookup",
                        InputType::Boolean,
                        text,
                    )
                    .default(json!(true))
                },
            ]
        },
    },
    run: |s, i| get_entity_metadata(s, i).map(Output::from),
};

pub const GET_ENTITIES_METADATA: Action = Action {
    def: ActionDef {
        key: "getEntitiesMetadata",
        label: "Get Entities Metadata",
        description: "Tables with their columns for a picker, each marked selected when it is one of the default-selected ones.",
        deprecated: false,
        input_defs: || {
            vec![
                input(
                    DEFAULT_SELECTED,
                    "Default Selected Entity Types",
                    InputType::List,
                    "Tables (logical, schema or entity set names, or display labels; case-insensitive) returned with selected: true. They are always included.",
                ),
                input(
                    ENTITY_TYPE_FILTER,
                    "Entity Type Filter",
                    InputType::List,
                    "Only these tables: logical, schema or entity set names or display labels, case-insensitive. Empty: every system table.",
                ),
                {
                    let text = "Include every custom table whether or not the filter names it. Off: custom tables only when the filter names them.";
                    input(
                        INCLUDE_ALL_CUSTOM,
                        "Include All Custom Entity Types",
                        InputType::Boolean,
                        text,
                    )
                    .default(json!(true))
                },
                {
                    let text = "Leave out intersect, child and activity-party tables and tables not valid for Advanced Find.";
                    input(
                        TOP_LEVEL_ONLY,
                        "Include Only Top Level Record Types",
                        InputType::Boolean,
                        text,
                    )
                    .default(json!(false))
                },
            ]
        },
    },
    run: |s, i| get_entities_metadata(s, i).map(Output::from),
};

pub const LIST_ENTITIES: Action = Action {
    def: ActionDef {
        key: "listEntities",
        label: "List Entities",
        description: "Every table's names and labels, sorted by logical name.",
        deprecated: false,
        input_defs: || {
            vec![
                input(
                    INCLUDE_CUSTOM,
                    "Include Custom Entities",
                    InputType::Boolean,
                    "Include custom (publisher-prefixed) tables.",
                )
                .default(json!(true)),
                {
                    let text = "Leave out intersect, child and activity-party tables and tables not valid for Advanced Find.";
                    input(TOP_LEVEL_ONLY, "Top Level Only", InputType::Boolean, text)
                        .default(json!(false))
                },
                {
                    let text = "Add description, ownership type and the validity flags (IsActivity, IsValidForAdvancedFind, IsIntersect, …).";
                    input(
                        INCLUDE_DETAILS,
                        "Include Entity Details",
                        InputType::Boolean,
                        text,
                    )
                    .default(json!(false))
                },
            ]
        },
    },
    run: |s, i| list_entities(s, i).map(Output::from),
};

pub const LIST_ENTITY_TYPES: Action = Action {
    def: ActionDef {
        key: "listEntityTypes",
        label: "List Entity Types",
        description: "Table names and labels for a picker, a page at a time (sorted by logical name). Dataverse does not page metadata, so the connector pages the list itself; nextLink is its cursor.",
        deprecated: false,
        input_defs: || {
            vec![
                input(
                    MAX_PAGE_SIZE,
                    "Max Page Size",
                    InputType::Integer,
                    "Tables per page (1–5000).",
                )
                .default(json!(5000))
                .range(1, 5000),
                input(
                    NEXT_LINK,
                    "Next Link",
                    InputType::String,
                    "The nextLink of an earlier call, to get the following page.",
                ),
                {
                    let text = "Return every table in one answer (Max Page Size is ignored).";
                    input(FETCH_ALL, "Fetch All", InputType::Boolean, text).default(json!(false))
                },
            ]
        },
    },
    run: |s, i| list_entity_types(s, i).map(Output::from),
};

pub const LIST_ATTRIBUTES: Action = Action {
    def: ActionDef {
        key: "listAttributes",
        label: "List Attributes",
        description: "A table's columns: names, types and labels (and more with Include Details).",
        deprecated: false,
        input_defs: || {
            vec![entity_id(), attribute_type(), {
                let text = "Every property of each column, including the type-specific ones of the Attribute Type cast; off: names, type and label only.";
                input(INCLUDE_DETAILS, "Include Details", InputType::Boolean, text)
                    .default(json!(false))
            }]
        },
    },
    run: |s, i| list_attributes(s, i).map(Output::from),
};

pub const QUERY_ATTRIBUTES: Action = Action {
    def: ActionDef {
        key: "queryAttributes",
        label: "Query Attributes",
        description: "A table's columns with your own $select, $filter (e.g. IsCustomAttribute eq true) and $expand.",
        deprecated: false,
        input_defs: || {
            vec![
                entity_id(),
                attribute_type(),
                field_names(),
                input(
                    FILTER,
                    "Filter",
                    InputType::String,
                    "$filter on column metadata, e.g. IsValidForCreate eq true or AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Money'. Labels cannot be filtered on.",
                ),
                expand(),
            ]
        },
    },
    run: |s, i| query_attributes(s, i).map(Output::from),
};

pub const GET_ATTRIBUTE: Action = Action {
    def: ActionDef {
        key: "getAttribute",
        label: "Get Attribute",
        description: "One column's definition by MetadataId or logical name.",
        deprecated: false,
        input_defs: || {
            vec![
                entity_id(),
                {
                    let text =
                        "The column: its MetadataId GUID, its logical name, or LogicalName='name'.";
                    input(ATTRIBUTE_KEY, "Attribute Key", InputType::String, text)
                        .required()
                        .example(json!("LogicalName='revenue'"))
                },
                field_names(),
                expand(),
                attribute_type(),
            ]
        },
    },
    run: |s, i| get_attribute(s, i).map(Output::from),
};

pub const CREATE_ATTRIBUTE: Action = Action {
    def: ActionDef {
        key: "createAttribute",
        label: "Create Attribute",
        description: "Adds a column to a table (POST EntityDefinitions(…)/Attributes). Publish customizations afterwards for apps to show it.",
        deprecated: false,
        input_defs: || vec![entity_id(), attribute_body(), solution()],
    },
    run: |s, i| create_attribute(s, i).map(Output::from),
};

pub const UPDATE_ATTRIBUTE: Action = Action {
    def: ActionDef {
        key: "updateAttribute",
        label: "Update Attribute",
        description: "Replaces a column's definition (PUT of the full definition with MSCRM.MergeLabels: true, so labels in other languages are kept). The column is found by the body's MetadataId, else its LogicalName or SchemaName.",
        deprecated: false,
        input_defs: || vec![entity_id(), attribute_body(), solution()],
    },
    run: |s, i| update_attribute(s, i).map(Output::from),
};

fn entity_ref(inputs: &Inputs) -> Result<EntityRef> {
    EntityRef::parse(ENTITY_ID, inputs.expect_str(ENTITY_ID)?)
}

fn attribute_type_of(inputs: &Inputs) -> Result<Option<AttributeType>> {
    match inputs.str(ATTRIBUTE_TYPE)?.filter(|s| !s.trim().is_empty()) {
        Some(s) => AttributeType::parse(ATTRIBUTE_TYPE, s).map(Some),
        None => Ok(None),
    }
}

fn select(props: &[&str]) -> String {
    format!("$select={}", props.join(","))
}

/// Adds a hint naming the input to a table that does not exist.
fn explain_not_found(e: ConnectorError, input: &str, what: &str) -> ConnectorError {
    if e.kind == ErrorKind::NotFound {
        let hint = format!(
            "No {what} matches {input}. Use the logical name (lower case, e.g. account) or the MetadataId; listEntities shows them."
        );
        e.with_hint(hint)
    } else {
        e
    }
}

/// The `value` array of a collection answer.
fn values(body: Value) -> Result<Vec<Value>> {
    match body {
        Value::Object(mut m) => match m.remove("value") {
            Some(Value::Array(v)) => Ok(v),
            _ => Err(ConnectorError::transport(
                "the metadata answer has no value array",
            )),
        },
        _ => Err(ConnectorError::transport(
            "the metadata answer is not an object",
        )),
    }
}

fn listing(mut items: Vec<Value>) -> Value {
    items.iter_mut().for_each(surface_labels);
    json!({"count": items.len(), "value": items})
}

const ENTITY_ATTRIBUTES_EXPAND: &str = "Attributes($select=LogicalName,SchemaName,AttributeType,DisplayName,IsPrimaryId,IsPrimaryName,IsValidForCreate,IsValidForUpdate,IsValidForRead,IsCustomAttribute,RequiredLevel)";

fn get_entity_metadata(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let raw = inputs.expect_str(ENTITY_TYPE)?;
    let expand = format!("$expand={}", encode_query(ENTITY_ATTRIBUTES_EXPAND));
    let mut entity = if inputs.bool(USE_LOGICAL_NAME)? {
        let r = EntityRef::parse(ENTITY_TYPE, raw)?;
        let request = session.request(Method::Get, &format!("{}?{expand}", r.path()))?;
        session
            .send_json(request)
            .map_err(|e| explain_not_found(e, ENTITY_TYPE, "table logical name"))?
    } else {
        let set = EntitySet::parse(ENTITY_TYPE, raw)?;
        let filter = format!("EntitySetName eq {}", string_literal(set.as_str()));
        let request = session.request(
            Method::Get,
            &format!(
                "EntityDefinitions?$filter={}&{expand}",
                encode_query(&filter)
            ),
        )?;
        let found = values(session.send_json(request)?)?;
        found.into_iter().next().ok_or_else(|| {
            ConnectorError::not_found(format!("No table has the entity set name '{set}'."))
                .with_hint("Entity set names are plural and case-sensitive (accounts); switch Use Logical Name for Lookup on to look up by logical name (account).")
        })?
    };
    if let Some(o) = entity.as_object_mut() {
        o.remove("@odata.context");
    }
    surface_labels(&mut entity);
    Ok(entity)
}

/// All tables with the properties the pickers and the top-level rule need.
fn all_entities(
    session: &mut Session<'_>,
    extra: &[&str],
    filter: Option<&str>,
    expand: Option<&str>,
) -> Result<Vec<Value>> {
    let mut props: Vec<&str> = ENTITY_BASICS.to_vec();
    for p in TOP_LEVEL_PROPERTIES.iter().chain(extra) {
        if !props.contains(p) {
            props.push(p);
        }
    }
    let mut query = format!("EntityDefinitions?{}", select(&props));
    if let Some(f) = filter {
        query.push_str(&format!("&$filter={}", encode_query(f)));
    }
    if let Some(x) = expand {
        query.push_str(&format!("&$expand={}", encode_query(x)));
    }
    let request = session.request(Method::Get, &query)?;
    let mut items = values(session.send_json(request)?)?;
    sort_by_logical_name(&mut items);
    Ok(items)
}

/// One sort for both listings (each distinct sort call is a few KB of
/// component code).
fn sort_by_logical_name(items: &mut [Value]) {
    items.sort_by(|a, b| logical_name(a).cmp(logical_name(b)));
}

fn logical_name(v: &Value) -> &str {
    v.get("LogicalName").and_then(Value::as_str).unwrap_or("")
}

fn is_custom(e: &Value) -> bool {
    e.get("IsCustomEntity").and_then(Value::as_bool) == Some(true)
}

/// Which tables getEntitiesMetadata returns: a custom table when Include
/// All Custom is on or the filter names it; a system table when the filter
/// is empty or names it; a default-selected table always. Then Top Level
/// Only removes what [`metadata::is_top_level`] rejects. Labels cannot be
/// filtered on server-side (reference §6.1), so this runs here.
fn picks(
    entity: &Value,
    filter: &[String],
    selected: &[String],
    include_all_custom: bool,
    top_level_only: bool,
) -> Option<bool> {
    let named = |list: &[String]| list.iter().any(|n| names_entity(entity, n));
    let is_selected = named(selected);
    let included = is_selected
        || if is_custom(entity) {
            include_all_custom || named(filter)
        } else {
            filter.is_empty() || named(filter)
        };
    (included && (!top_level_only || is_top_level(entity))).then_some(is_selected)
}

fn get_entities_metadata(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let filter = inputs.list(ENTITY_TYPE_FILTER)?;
    let selected = inputs.list(DEFAULT_SELECTED)?;
    let include_all_custom = inputs.bool(INCLUDE_ALL_CUSTOM)?;
    let top_level_only = inputs.bool(TOP_LEVEL_ONLY)?;
    let all = all_entities(session, &[], None, Some(ENTITY_ATTRIBUTES_EXPAND))?;
    let mut out = Vec::new();
    for mut e in all {
        if let Some(is_selected) = picks(&e, &filter, &selected, include_all_custom, top_level_only)
        {
            // Items come from the server: only objects can carry the mark.
            if let Some(o) = e.as_object_mut() {
                o.insert("selected".into(), Value::Bool(is_selected));
                out.push(e);
            }
        }
    }
    // A default-selected name that matches no table is most likely a typo.
    let unmatched: Vec<&String> = selected
        .iter()
        .filter(|n| !out.iter().any(|e| names_entity(e, n)))
        .collect();
    let mut result = listing(out);
    result["unmatchedDefaultSelected"] = json!(unmatched);
    Ok(result)
}

fn list_entities(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let details: &[&str] = if inputs.bool(INCLUDE_DETAILS)? {
        ENTITY_DETAILS
    } else {
        &[]
    };
    let filter = (!inputs.bool(INCLUDE_CUSTOM)?).then_some("IsCustomEntity eq false");
    let all = all_entities(session, details, filter, None)?;
    let top_level_only = inputs.bool(TOP_LEVEL_ONLY)?;
    let keep: Vec<Value> = all
        .into_iter()
        .filter(|e| !top_level_only || is_top_level(e))
        .map(|mut e| {
            // The flags fetched only for the top-level rule are details.
            if let Some(o) = e.as_object_mut()
                && details.is_empty()
            {
                for p in TOP_LEVEL_PROPERTIES {
                    o.remove(*p);
                }
            }
            e
        })
        .collect();
    Ok(listing(keep))
}

fn list_entity_types(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let after = match inputs.str(NEXT_LINK)?.filter(|s| !s.trim().is_empty()) {
        Some(link) => Some(metadata::parse_cursor(NEXT_LINK, link)?),
        None => None,
    };
    let page_size = inputs.expect_u64(MAX_PAGE_SIZE)?.clamp(1, 5000) as usize;
    let fetch_all = inputs.bool(FETCH_ALL)?;
    let request = session.request(
        Method::Get,
        &format!(
            "EntityDefinitions?{}",
            select(&[
                "LogicalName",
                "EntitySetName",
                "SchemaName",
                "DisplayName",
                "DisplayCollectionName",
                "IsCustomEntity"
            ])
        ),
    )?;
    let mut all = values(session.send_json(request)?)?;
    let name = |v: &Value| {
        v.get("LogicalName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    sort_by_logical_name(&mut all);
    let rest: Vec<Value> = all
        .into_iter()
        .filter(|e| after.as_ref().is_none_or(|a| name(e).as_str() > a.as_str()))
        .collect();
    let (page, more) = if fetch_all || rest.len() <= page_size {
        (rest, false)
    } else {
        (rest.into_iter().take(page_size).collect::<Vec<_>>(), true)
    };
    let next = if more {
        page.last().map(|e| metadata::next_cursor(&name(e)))
    } else {
        None
    };
    let mut out = listing(page);
    out["nextLink"] = json!(next);
    Ok(out)
}

/// `EntityDefinitions(…)/Attributes[/cast]?…` with the type filter.
fn attributes_query(
    entity: &EntityRef,
    ty: Option<&AttributeType>,
    select: Option<String>,
    filter: Option<String>,
    expand: Option<&str>,
) -> String {
    let mut path = format!("{}/Attributes", entity.path());
    let mut filters: Vec<String> = Vec::new();
    if let Some(t) = ty {
        path.push_str(&t.cast_segment());
        filters.push(t.filter());
    }
    if let Some(f) = filter {
        filters.push(format!("({f})"));
    }
    let mut options = Vec::new();
    if let Some(s) = select {
        options.push(s);
    }
    if !filters.is_empty() {
        options.push(format!("$filter={}", encode_query(&filters.join(" and "))));
    }
    if let Some(x) = expand {
        options.push(format!("$expand={}", encode_query(x)));
    }
    if options.is_empty() {
        path
    } else {
        format!("{path}?{}", options.join("&"))
    }
}

fn list_attributes(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let entity = entity_ref(inputs)?;
    let ty = attribute_type_of(inputs)?;
    let select = if inputs.bool(INCLUDE_DETAILS)? {
        None
    } else {
        Some(select(ATTRIBUTE_BASICS))
    };
    let request = session.request(
        Method::Get,
        &attributes_query(&entity, ty.as_ref(), select, None, None),
    )?;
    let body = session
        .send_json(request)
        .map_err(|e| explain_not_found(e, ENTITY_ID, "table"))?;
    Ok(listing(values(body)?))
}

fn select_of(inputs: &Inputs) -> Result<Option<String>> {
    let fields = odata::parse_select(FIELD_NAMES, &inputs.list(FIELD_NAMES)?)?;
    Ok((!fields.is_empty()).then(|| format!("$select={}", fields.join(","))))
}

fn expand_of(inputs: &Inputs) -> Result<Option<String>> {
    match inputs.str(EXPAND)?.filter(|s| !s.trim().is_empty()) {
        Some(e) => {
            // Validated with the record expand grammar; sent as written.
            odata::parse_expand(EXPAND, e)?;
            Ok(Some(e.trim().to_string()))
        }
        None => Ok(None),
    }
}

fn query_attributes(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let entity = entity_ref(inputs)?;
    let ty = attribute_type_of(inputs)?;
    let filter = inputs
        .str(FILTER)?
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_string);
    let expand = expand_of(inputs)?;
    let request = session.request(
        Method::Get,
        &attributes_query(
            &entity,
            ty.as_ref(),
            select_of(inputs)?,
            filter,
            expand.as_deref(),
        ),
    )?;
    let body = session
        .send_json(request)
        .map_err(|e| explain_not_found(e, ENTITY_ID, "table"))?;
    Ok(listing(values(body)?))
}

fn get_attribute(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let entity = entity_ref(inputs)?;
    let key = AttributeRef::parse(ATTRIBUTE_KEY, inputs.expect_str(ATTRIBUTE_KEY)?)?;
    let ty = attribute_type_of(inputs)?;
    let mut path = format!("{}/{}", entity.path(), key.segment());
    if let Some(t) = &ty {
        path.push_str(&t.cast_segment());
    }
    let options: Vec<String> = [
        select_of(inputs)?,
        expand_of(inputs)?.map(|x| format!("$expand={}", encode_query(&x))),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !options.is_empty() {
        path = format!("{path}?{}", options.join("&"));
    }
    let request = session.request(Method::Get, &path)?;
    let mut body = session
        .send_json(request)
        .map_err(|e| explain_not_found(e, "entityId/attributeKey", "table or column"))?;
    if let Some(o) = body.as_object_mut() {
        o.remove("@odata.context");
    }
    surface_labels(&mut body);
    Ok(body)
}

/// The MetadataId at the end of an `OData-EntityId` URL, if any.
fn id_in(url: Option<&str>) -> Option<String> {
    Guid::in_entity_url(url?).map(Guid::into_string)
}

fn with_solution(
    mut request: crate::http::Request,
    inputs: &Inputs,
) -> Result<crate::http::Request> {
    if let Some(s) = inputs
        .str(SOLUTION_UNIQUE_NAME)?
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !crate::types::is_identifier(s) {
            return Err(ConnectorError::invalid_input(
                SOLUTION_UNIQUE_NAME,
                "must be a solution's unique name (letters, digits, underscores)",
            ));
        }
        request = request.header("MSCRM.SolutionUniqueName", s);
    }
    Ok(request)
}

fn create_attribute(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let entity = entity_ref(inputs)?;
    let body = metadata::attribute_body(ATTRIBUTE_BODY, inputs.get(ATTRIBUTE_BODY)?)?;
    let request = session
        .request(Method::Post, &format!("{}/Attributes", entity.path()))?
        .json_body(&Value::Object(body.clone()));
    let request = with_solution(request, inputs)?;
    let response = session
        .send_ok(request)
        .map_err(|e| explain_not_found(e, ENTITY_ID, "table"))?;
    let url = response.header("OData-EntityId").map(str::to_string);
    Ok(json!({
        "created": true,
        "MetadataId": id_in(url.as_deref()),
        "LogicalName": body.get("SchemaName").and_then(Value::as_str).map(str::to_ascii_lowercase),
        "entityIdUrl": url,
    }))
}

fn update_attribute(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let entity = entity_ref(inputs)?;
    let body = metadata::attribute_body(ATTRIBUTE_BODY, inputs.get(ATTRIBUTE_BODY)?)?;
    let key = if let Some(id) = body.get("MetadataId").and_then(Value::as_str) {
        AttributeRef::Id(Guid::parse(id).ok_or_else(|| {
            ConnectorError::invalid_input(ATTRIBUTE_BODY, "MetadataId is not a GUID")
        })?)
    } else {
        let name = body
            .get("LogicalName")
            .or_else(|| body.get("SchemaName"))
            .and_then(Value::as_str)
            .unwrap_or("");
        AttributeRef::parse(ATTRIBUTE_BODY, name)?
    };
    let request = session
        .request(Method::Put, &format!("{}/{}", entity.path(), key.segment()))?
        .header("MSCRM.MergeLabels", "true")
        .json_body(&Value::Object(body));
    let request = with_solution(request, inputs)?;
    let response = session
        .send_ok(request)
        .map_err(|e| explain_not_found(e, "entityId/attributeBody", "table or column"))?;
    let url = response.header("OData-EntityId").map(str::to_string);
    Ok(json!({
        "updated": true,
        "MetadataId": match &key { AttributeRef::Id(g) => Some(g.to_string()), AttributeRef::LogicalName(_) => id_in(url.as_deref()) },
        "entityIdUrl": url,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_queries_cast_and_filter() {
        let e = EntityRef::parse("entityId", "account").unwrap();
        let t = AttributeType::parse("attributeType", "Money").unwrap();
        let q = attributes_query(
            &e,
            Some(&t),
            Some(select(&["LogicalName"])),
            Some("IsCustomAttribute eq false".into()),
            None,
        );
        assert_eq!(
            q,
            "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.MoneyAttributeMetadata?$select=LogicalName&$filter=AttributeType%20eq%20Microsoft.Dynamics.CRM.AttributeTypeCode'Money'%20and%20(IsCustomAttribute%20eq%20false)"
        );
        assert_eq!(
            attributes_query(&e, None, None, None, None),
            "EntityDefinitions(LogicalName='account')/Attributes"
        );
    }

    #[test]
    fn picks_combine_filter_custom_and_top_level() {
        let sys = json!({"LogicalName": "account", "IsCustomEntity": false, "IsIntersect": false, "IsValidForAdvancedFind": true});
        let custom = json!({"LogicalName": "new_project", "IsCustomEntity": true, "IsIntersect": false, "IsValidForAdvancedFind": true});
        let inter = json!({"LogicalName": "new_project_contact", "IsCustomEntity": true, "IsIntersect": true, "IsValidForAdvancedFind": false});
        let none: Vec<String> = vec![];
        let f = vec!["ACCOUNT".to_string()];
        // Empty filter: every system table; custom ones per includeAllCustom.
        assert_eq!(picks(&sys, &none, &none, true, false), Some(false));
        assert_eq!(picks(&custom, &none, &none, false, false), None);
        assert_eq!(picks(&custom, &none, &none, true, false), Some(false));
        // A filter limits system tables; custom ones still come with includeAllCustom.
        assert_eq!(picks(&sys, &f, &none, false, false), Some(false));
        assert_eq!(picks(&custom, &f, &none, true, false), Some(false));
        assert_eq!(picks(&custom, &f, &none, false, false), None);
        // Top level only drops the intersect table.
        assert_eq!(picks(&inter, &none, &none, true, false), Some(false));
        assert_eq!(picks(&inter, &none, &none, true, true), None);
        // Default-selected tables are included and marked.
        let sel = vec!["new_project".to_string()];
        assert_eq!(picks(&custom, &f, &sel, false, false), Some(true));
    }
}
