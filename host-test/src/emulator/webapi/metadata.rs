//! `EntityDefinitions`: table and column definitions, generated on every
//! request from the record store's schema, so metadata and records never
//! disagree — a column created here is at once writable and queryable
//! through the entity set.
//!
//! Served: the collection, one definition by `LogicalName='x'` or
//! MetadataId, `/Attributes` (collection, by `LogicalName='x'` or id),
//! attribute cast segments (`/Microsoft.Dynamics.CRM.MoneyAttributeMetadata`),
//! `$select`, `$filter` on metadata properties (enum literals with their
//! namespace, managed properties through `/Value`), `$expand` of
//! `Attributes`, `Keys`, `ManyToOneRelationships` and
//! `OneToManyRelationships` with nested `$select`/`$filter`, `OptionSet` on
//! choice casts; `POST …/Attributes` and `PUT …/Attributes(…)` with
//! `MSCRM.MergeLabels`. Metadata is never paged (reference §6.1).
//!
//! Labels: the emulator keeps one label per item, in LanguageCode 1033.

use super::caller::Caller;
use super::reply::{method_not_allowed_error as method_not_allowed, with_entity_id};
use crate::emulator::odata::ODataError;
use crate::emulator::odata::filter::{CmpOp, Expr, Literal, Operand};
use crate::emulator::odata::options::{ExpandItem, QueryOptions, query_pairs};
use crate::emulator::response::{no_content, odata_error, odata_json};
use crate::emulator::store::normalize_guid;
use crate::emulator::store::schema::{
    ACTIVITY_ENTITIES, AttributeDef, AttributeKind, EntityDef, INTERSECT_ENTITIES, LookupTarget,
    Schema, stable_guid,
};
use crate::emulator::{EmuRequest, EmuResponse, State};
use serde_json::{Map, Value, json};

const NS: &str = "Microsoft.Dynamics.CRM.";
const LANGUAGE: i64 = 1033;

fn error(e: ODataError) -> EmuResponse {
    odata_error(e.status, &e.code, &e.message)
}

/// A missing table. Status and code UNCONFIRMED: the message is the one
/// the platform's MetadataCache raises (seen in public SDK faults, code
/// 0x80041102); 404 as for any missing resource.
fn entity_not_found(name: &str) -> ODataError {
    ODataError::new(
        404,
        "0x80041102",
        format!(
            "Could not find entity with name '{name}'. The entity with a name = '{name}' with namemapping = 'Logical' was not found in the MetadataCache."
        ),
    )
}

fn attribute_not_found(entity: &str, key: &str) -> ODataError {
    ODataError::new(
        404,
        "0x80041102",
        format!("Could not find attribute {key} on entity {entity}."),
    )
}

/// Entry point for every path under `EntityDefinitions`.
pub fn handle(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    resource: &str,
) -> EmuResponse {
    let decoded = percent_encoding::percent_decode_str(resource)
        .decode_utf8_lossy()
        .into_owned();
    match route(state, request, caller, &decoded) {
        Ok(r) => r,
        Err(e) => error(e),
    }
}

/// Splits a path at `/` outside quotes and parentheses.
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut depth, mut quoted) = (0i32, false);
    for c in path.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            '/' if !quoted && depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

/// `name(key)` → (name, Some(key)).
fn split_key(segment: &str) -> (&str, Option<&str>) {
    match segment.split_once('(') {
        Some((n, k)) => (n, Some(k.strip_suffix(')').unwrap_or(k))),
        None => (segment, None),
    }
}

/// A metadata key: a MetadataId or `LogicalName='x'`.
enum MetaKey {
    Id(String),
    LogicalName(String),
}

fn parse_meta_key(raw: &str) -> Result<MetaKey, ODataError> {
    if let Some(id) = normalize_guid(raw.trim()) {
        return Ok(MetaKey::Id(id));
    }
    let bad = || {
        ODataError::bad_request(format!(
            "Bad Request - Error in query syntax: the key '{raw}' is not valid; use a MetadataId or LogicalName='…'."
        ))
    };
    let (name, value) = raw.split_once('=').ok_or_else(bad)?;
    if name.trim() != "LogicalName" {
        return Err(bad());
    }
    let v = value.trim();
    let inner = v
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .ok_or_else(bad)?;
    Ok(MetaKey::LogicalName(inner.replace("''", "'")))
}

fn find_entity<'s>(schema: &'s Schema, raw: &str) -> Result<&'s EntityDef, ODataError> {
    match parse_meta_key(raw)? {
        MetaKey::Id(id) => schema
            .entities
            .iter()
            .find(|e| e.metadata_id == id)
            .ok_or_else(|| entity_not_found(&id)),
        MetaKey::LogicalName(n) => schema
            .by_logical_name(&n)
            .ok_or_else(|| entity_not_found(&n)),
    }
}

/// [`find_entity`], for a change to its definition.
fn find_entity_mut<'s>(schema: &'s mut Schema, raw: &str) -> Result<&'s mut EntityDef, ODataError> {
    let logical = find_entity(schema, raw)?.logical_name;
    schema
        .entities
        .iter_mut()
        .find(|e| e.logical_name == logical)
        .ok_or_else(|| entity_not_found(raw))
}

fn find_attribute<'e>(entity: &'e EntityDef, raw: &str) -> Result<&'e AttributeDef, ODataError> {
    let found = match parse_meta_key(raw)? {
        MetaKey::Id(id) => entity.attributes.iter().find(|a| a.metadata_id == id),
        MetaKey::LogicalName(n) => entity.attribute(&n),
    };
    found.ok_or_else(|| attribute_not_found(entity.logical_name, raw))
}

/// The concrete metadata type of an attribute kind.
fn metadata_type(kind: &AttributeKind) -> &'static str {
    kind.metadata_names().2
}

/// Metadata types a cast segment may name (the abstract
/// `EnumAttributeMetadata` is not castable, reference §6.1).
const CASTABLE: &[&str] = &[
    "UniqueIdentifierAttributeMetadata",
    "StringAttributeMetadata",
    "MemoAttributeMetadata",
    "IntegerAttributeMetadata",
    "MoneyAttributeMetadata",
    "DecimalAttributeMetadata",
    "DateTimeAttributeMetadata",
    "BooleanAttributeMetadata",
    "PicklistAttributeMetadata",
    "StateAttributeMetadata",
    "StatusAttributeMetadata",
    "LookupAttributeMetadata",
    "MultiSelectPicklistAttributeMetadata",
    "BigIntAttributeMetadata",
    "DoubleAttributeMetadata",
    "ImageAttributeMetadata",
    "FileAttributeMetadata",
];

fn cast_of(segment: &str) -> Result<&'static str, ODataError> {
    let short = segment.strip_prefix(NS).unwrap_or(segment);
    CASTABLE
        .iter()
        .find(|t| **t == short)
        .copied()
        .ok_or_else(|| {
            ODataError::new(
                404,
                "0x8006088a",
                format!("Resource not found for the segment '{segment}'."),
            )
        })
}

fn route(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    resource: &str,
) -> Result<EmuResponse, ODataError> {
    let segs = segments(resource);
    let method = request.method().clone();
    let pairs = query_pairs(request.uri().query());
    let head = segs.first().map(String::as_str).unwrap_or("");
    let (_, entity_key) = split_key(head);
    let rest: Vec<&str> = segs.iter().skip(1).map(String::as_str).collect();
    match (entity_key, rest.as_slice()) {
        (None, []) => match method {
            http::Method::GET => {
                let options = QueryOptions::parse(&pairs)?;
                let schema = state.store.schema();
                let mut rows = Vec::new();
                for e in &schema.entities {
                    let full = entity_json(schema, e);
                    if matches_filter(&options, &full, "EntityMetadata")? {
                        rows.push(shape_entity(schema, e, full, &options)?);
                    }
                }
                Ok(odata_json(
                    200,
                    &json!({
                        "@odata.context": format!("{}$metadata#EntityDefinitions{}", caller.service_root, select_suffix(&options)),
                        "value": rows,
                    }),
                ))
            }
            http::Method::POST => Err(ODataError::not_implemented(
                "The emulator does not create tables (POST EntityDefinitions).".into(),
            )),
            _ => Err(method_not_allowed(&method)),
        },
        (Some(key), []) => match method {
            http::Method::GET => {
                let options = QueryOptions::parse(&pairs)?;
                let schema = state.store.schema();
                let e = find_entity(schema, key)?;
                let mut body = shape_entity(schema, e, entity_json(schema, e), &options)?;
                body.insert(
                    "@odata.context".into(),
                    json!(format!(
                        "{}$metadata#EntityDefinitions{}/$entity",
                        caller.service_root,
                        select_suffix(&options)
                    )),
                );
                Ok(odata_json(200, &Value::Object(body)))
            }
            // Community reports (UNCONFIRMED): PATCH on EntityMetadata → 405.
            http::Method::PATCH => Err(ODataError::new(
                405,
                "0x80060888",
                "Operation not supported on EntityMetadata",
            )),
            _ => Err(method_not_allowed(&method)),
        },
        (Some(key), [attrs, tail @ ..]) if split_key(attrs).0 == "Attributes" => {
            let (_, attr_key) = split_key(attrs);
            attributes(state, request, caller, key, attr_key, tail, &pairs)
        }
        (Some(key), [nav]) if method == http::Method::GET => {
            // A navigation collection of one table, e.g. /Keys.
            let schema = state.store.schema();
            let e = find_entity(schema, key)?;
            let options = QueryOptions::parse(&pairs)?;
            let items = navigation(schema, e, nav).ok_or_else(|| {
                ODataError::new(
                    404,
                    "0x8006088a",
                    format!("Resource not found for the segment '{nav}'."),
                )
            })?;
            let mut out = Vec::new();
            for item in items {
                if matches_filter(&options, &item, "MetadataBase")? {
                    out.push(Value::Object(select(item, options.select.as_deref())?));
                }
            }
            Ok(odata_json(200, &json!({"value": out})))
        }
        _ => Err(ODataError::not_implemented(format!(
            "The emulator does not serve 'EntityDefinitions/{}'.",
            rest.join("/")
        ))),
    }
}

fn select_suffix(options: &QueryOptions) -> String {
    match &options.select {
        Some(s) if !s.is_empty() => format!("({})", s.join(",")),
        _ => String::new(),
    }
}

fn attributes(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    entity_key: &str,
    attr_key: Option<&str>,
    tail: &[&str],
    pairs: &[(String, String)],
) -> Result<EmuResponse, ODataError> {
    let method = request.method().clone();
    let cast = match tail {
        [] => None,
        [c] => Some(cast_of(c)?),
        _ => {
            return Err(ODataError::not_implemented(format!(
                "The emulator does not serve '…/Attributes/{}'.",
                tail.join("/")
            )));
        }
    };
    match (&method, attr_key) {
        (&http::Method::GET, key) => {
            let options = QueryOptions::parse(pairs)?;
            let schema = state.store.schema();
            let e = find_entity(schema, entity_key)?;
            match key {
                None => {
                    let mut rows = Vec::new();
                    for a in &e.attributes {
                        if cast.is_some_and(|c| c != metadata_type(&a.kind)) {
                            continue;
                        }
                        let full = attribute_json(e, a, cast.is_some(), &options);
                        if matches_filter(&options, &full, "AttributeMetadata")? {
                            rows.push(Value::Object(select(full, options.select.as_deref())?));
                        }
                    }
                    let ctx = format!(
                        "{}$metadata#EntityDefinitions('{}')/Attributes{}{}",
                        caller.service_root,
                        e.metadata_id,
                        cast.map(|c| format!("/{NS}{c}")).unwrap_or_default(),
                        select_suffix(&options)
                    );
                    Ok(odata_json(
                        200,
                        &json!({"@odata.context": ctx, "value": rows}),
                    ))
                }
                Some(k) => {
                    let a = find_attribute(e, k)?;
                    if let Some(c) = cast
                        && c != metadata_type(&a.kind)
                    {
                        // Casting to a type the attribute is not: no such resource.
                        return Err(ODataError::new(
                            404,
                            "0x8006088a",
                            format!(
                                "Attribute {} is a {}, not a {c}.",
                                a.logical_name,
                                metadata_type(&a.kind)
                            ),
                        ));
                    }
                    let full = attribute_json(e, a, cast.is_some(), &options);
                    let mut body = select(full, options.select.as_deref())?;
                    body.insert(
                        "@odata.context".into(),
                        json!(format!(
                            "{}$metadata#EntityDefinitions('{}')/Attributes{}/$entity",
                            caller.service_root,
                            e.metadata_id,
                            cast.map(|c| format!("/{NS}{c}")).unwrap_or_default()
                        )),
                    );
                    Ok(odata_json(200, &Value::Object(body)))
                }
            }
        }
        (&http::Method::POST, None) if cast.is_none() => {
            create_attribute(state, request, caller, entity_key)
        }
        (&http::Method::PUT, Some(k)) if cast.is_none() => {
            update_attribute(state, request, caller, entity_key, k)
        }
        (&http::Method::PATCH, Some(_)) => Err(ODataError::new(
            405,
            "0x80060888",
            "Operation not supported on AttributeMetadata: update column definitions with PUT of the full definition.",
        )),
        _ => Err(method_not_allowed(&method)),
    }
}

// ---------------------------------------------------------------- shapes

/// A Label in the LocalizedLabels/UserLocalizedLabel shape; an empty text
/// is the empty label.
pub fn label(text: &str, owner: &str) -> Value {
    if text.is_empty() {
        return json!({"LocalizedLabels": [], "UserLocalizedLabel": null});
    }
    let one = json!({
        "Label": text,
        "LanguageCode": LANGUAGE,
        "IsManaged": false,
        "MetadataId": stable_guid(&format!("label:{owner}")),
        "HasChanged": null,
    });
    json!({"LocalizedLabels": [one.clone()], "UserLocalizedLabel": one})
}

fn managed(value: bool, name: &str) -> Value {
    json!({"Value": value, "CanBeChanged": true, "ManagedPropertyLogicalName": name})
}

/// Every scalar property of one table's EntityMetadata.
fn entity_json(_schema: &Schema, e: &EntityDef) -> Map<String, Value> {
    let intersect = INTERSECT_ENTITIES.contains(&e.logical_name);
    let activity = ACTIVITY_ENTITIES.contains(&e.logical_name);
    let ownership = if intersect {
        "None"
    } else {
        e.ownership.as_str()
    };
    let v = json!({
        "MetadataId": e.metadata_id,
        "LogicalName": e.logical_name,
        "SchemaName": e.schema_name,
        "EntitySetName": e.entity_set_name,
        "LogicalCollectionName": e.entity_set_name,
        "CollectionSchemaName": format!("{}s", e.schema_name),
        "ObjectTypeCode": e.object_type_code(),
        "DisplayName": label(e.display_name, &format!("entity:{}:display", e.logical_name)),
        "DisplayCollectionName": label(e.display_collection_name, &format!("entity:{}:collection", e.logical_name)),
        "Description": label(e.description, &format!("entity:{}:description", e.logical_name)),
        "IsCustomEntity": e.is_custom,
        "IsManaged": !e.is_custom,
        "TableType": e.table_type,
        "OwnershipType": ownership,
        "IsIntersect": intersect,
        "IsActivity": activity,
        "IsActivityParty": e.logical_name == "activityparty",
        "IsChildEntity": false,
        "IsPrivate": false,
        "IsValidForAdvancedFind": !intersect,
        "IsAvailableOffline": !intersect,
        "ChangeTrackingEnabled": !intersect,
        "IsOptimisticConcurrencyEnabled": true,
        "PrimaryIdAttribute": e.primary_id,
        "PrimaryNameAttribute": if e.primary_name.is_empty() { Value::Null } else { json!(e.primary_name) },
        "IsCustomizable": managed(true, "iscustomizable"),
        "IsRenameable": managed(e.is_custom, "isrenameable"),
        "CanCreateAttributes": managed(!intersect, "cancreateattributes"),
        "IsAuditEnabled": managed(false, "canmodifyauditsettings"),
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn option_set(e: &EntityDef, a: &AttributeDef) -> Value {
    let owner = format!("{}.{}", e.logical_name, a.logical_name);
    match &a.kind {
        AttributeKind::Boolean => json!({
            "MetadataId": stable_guid(&format!("optionset:{owner}")),
            "Name": format!("{}_{}", e.logical_name, a.logical_name),
            "OptionSetType": "Boolean",
            "IsGlobal": false,
            "TrueOption": {"Value": 1, "Label": label("Yes", &format!("{owner}:true"))},
            "FalseOption": {"Value": 0, "Label": label("No", &format!("{owner}:false"))},
        }),
        kind => {
            let options: Vec<Value> = kind
                .options()
                .unwrap_or(&[])
                .iter()
                .map(|(v, l)| {
                    json!({"Value": v, "Label": label(l, &format!("{owner}:{v}")), "Color": null, "IsManaged": false})
                })
                .collect();
            json!({
                "MetadataId": stable_guid(&format!("optionset:{owner}")),
                "Name": format!("{}_{}", e.logical_name, a.logical_name),
                "OptionSetType": if matches!(kind, AttributeKind::State { .. }) { "State" } else { "Picklist" },
                "IsGlobal": false,
                "Options": options,
            })
        }
    }
}

/// One attribute's AttributeMetadata. Subtype properties (MaxLength,
/// Precision, Targets, …) only through a cast (reference §6.1); `OptionSet`
/// only when expanded.
fn attribute_json(
    e: &EntityDef,
    a: &AttributeDef,
    cast: bool,
    options: &QueryOptions,
) -> Map<String, Value> {
    let owner = format!("attribute:{}.{}", e.logical_name, a.logical_name);
    let is_pk = a.logical_name == e.primary_id;
    let v = json!({
        "@odata.type": format!("#{NS}{}", metadata_type(&a.kind)),
        "MetadataId": a.metadata_id,
        "LogicalName": a.logical_name,
        "SchemaName": a.schema_name,
        "EntityLogicalName": e.logical_name,
        "AttributeType": a.kind.type_name(),
        "AttributeTypeName": {"Value": a.kind.metadata_names().1},
        "DisplayName": label(&a.display_name, &format!("{owner}:display")),
        "Description": label("", &owner),
        "IsCustomAttribute": a.is_custom,
        "IsPrimaryId": is_pk,
        "IsPrimaryName": a.logical_name == e.primary_name,
        "IsValidForCreate": !a.read_only,
        "IsValidForUpdate": !a.read_only && !is_pk,
        "IsValidForRead": true,
        "IsLogical": false,
        "AttributeOf": null,
        "IsValidForAdvancedFind": managed(true, "canmodifysearchsettings"),
        "RequiredLevel": {
            "Value": if is_pk { "SystemRequired" } else { "None" },
            "CanBeChanged": !is_pk,
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        },
    });
    let mut m = match v {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if cast {
        let typed = match &a.kind {
            AttributeKind::String { max_length } => json!({
                "MaxLength": max_length, "Format": "Text", "FormatName": {"Value": "Text"},
            }),
            AttributeKind::Memo { max_length } => json!({
                "MaxLength": max_length, "Format": "TextArea",
            }),
            AttributeKind::Integer => json!({
                "MinValue": -2147483648i64, "MaxValue": 2147483647, "Format": "None",
            }),
            AttributeKind::Money => json!({
                "Precision": 2, "PrecisionSource": 2,
                "MinValue": -922337203685477.0, "MaxValue": 922337203685477.0,
            }),
            AttributeKind::Decimal => json!({
                "Precision": 2, "MinValue": -100000000000.0, "MaxValue": 100000000000.0,
            }),
            AttributeKind::DateTime => json!({
                "Format": "DateAndTime", "DateTimeBehavior": {"Value": "UserLocal"},
            }),
            AttributeKind::Boolean => json!({"DefaultValue": false}),
            AttributeKind::Picklist { .. } => json!({"DefaultFormValue": -1}),
            AttributeKind::State { .. } => json!({"DefaultFormValue": null}),
            AttributeKind::Lookup { targets } => json!({
                "Targets": targets.iter().map(|t| t.entity.clone()).collect::<Vec<_>>(),
                "Format": null,
            }),
            AttributeKind::Uniqueidentifier => json!({}),
            AttributeKind::File { max_size_kb } => json!({"MaxSizeInKB": max_size_kb}),
            // ImageAttributeMetadata (Microsoft Learn, "Use image column
            // data": MaxSizeInKB, CanStoreFullImage, IsPrimaryImage;
            // thumbnails are 144×144).
            AttributeKind::Image {
                max_size_kb,
                can_store_full_image,
            } => json!({
                "MaxSizeInKB": max_size_kb,
                "CanStoreFullImage": can_store_full_image,
                "IsPrimaryImage": a.logical_name == "entityimage",
                "MaxHeight": 144,
                "MaxWidth": 144,
            }),
        };
        if let Value::Object(t) = typed {
            m.extend(t);
        }
        let expands_option_set = options
            .expand
            .iter()
            .any(|x| x.navigation == "OptionSet" || x.navigation == "GlobalOptionSet");
        if expands_option_set
            && matches!(
                a.kind,
                AttributeKind::Picklist { .. }
                    | AttributeKind::State { .. }
                    | AttributeKind::Boolean
            )
        {
            m.insert("OptionSet".into(), option_set(e, a));
            m.insert("GlobalOptionSet".into(), Value::Null);
        }
    }
    m
}

fn relationship_json(
    referencing: &EntityDef,
    a: &AttributeDef,
    t: &LookupTarget,
    referenced_pk: &str,
) -> Value {
    json!({
        "MetadataId": stable_guid(&format!("relationship:{}", t.relationship)),
        "SchemaName": t.relationship,
        "RelationshipType": "OneToManyRelationship",
        "IsCustomRelationship": t.relationship.starts_with("new_"),
        "ReferencedEntity": t.entity,
        "ReferencedAttribute": referenced_pk,
        "ReferencingEntity": referencing.logical_name,
        "ReferencingAttribute": a.logical_name,
        "ReferencedEntityNavigationPropertyName": t.relationship,
        "ReferencingEntityNavigationPropertyName": t.navigation_property,
    })
}

/// A table's navigation collection as plain objects.
fn navigation(schema: &Schema, e: &EntityDef, name: &str) -> Option<Vec<Map<String, Value>>> {
    let obj = |v: Value| match v {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let pk_of = |logical: &str| {
        schema
            .by_logical_name(logical)
            .map(|d| d.primary_id.clone())
            .unwrap_or_else(|| format!("{logical}id"))
    };
    Some(match name {
        "ManyToOneRelationships" => e
            .attributes
            .iter()
            .flat_map(|a| match &a.kind {
                AttributeKind::Lookup { targets } => targets
                    .iter()
                    .map(|t| obj(relationship_json(e, a, t, &pk_of(&t.entity))))
                    .collect(),
                _ => Vec::new(),
            })
            .collect(),
        "OneToManyRelationships" => {
            let mut out = Vec::new();
            for other in &schema.entities {
                for a in &other.attributes {
                    if let AttributeKind::Lookup { targets } = &a.kind {
                        for t in targets.iter().filter(|t| t.entity == e.logical_name) {
                            out.push(obj(relationship_json(other, a, t, &e.primary_id)));
                        }
                    }
                }
            }
            out
        }
        "ManyToManyRelationships" => Vec::new(),
        "Keys" => e
            .keys
            .iter()
            .map(|k| {
                obj(json!({
                    "MetadataId": stable_guid(&format!("key:{}.{}", e.logical_name, k.logical_name)),
                    "LogicalName": k.logical_name,
                    "SchemaName": k.schema_name,
                    "DisplayName": label(k.display_name, &format!("key:{}.{}", e.logical_name, k.logical_name)),
                    "EntityLogicalName": e.logical_name,
                    "KeyAttributes": k.attributes,
                    "EntityKeyIndexStatus": "Active",
                }))
            })
            .collect(),
        _ => return None,
    })
}

/// Applies `$select` and `$expand` to one table's definition.
fn shape_entity(
    schema: &Schema,
    e: &EntityDef,
    full: Map<String, Value>,
    options: &QueryOptions,
) -> Result<Map<String, Value>, ODataError> {
    let mut out = select(full, options.select.as_deref())?;
    for item in &options.expand {
        out.insert(
            item.navigation.clone(),
            Value::Array(expand(schema, e, item)?),
        );
    }
    Ok(out)
}

fn expand(schema: &Schema, e: &EntityDef, item: &ExpandItem) -> Result<Vec<Value>, ODataError> {
    let o = &item.options;
    let mut out = Vec::new();
    if item.navigation == "Attributes" {
        for a in &e.attributes {
            let full = attribute_json(e, a, false, o);
            if matches_filter(o, &full, "AttributeMetadata")? {
                out.push(Value::Object(select(full, o.select.as_deref())?));
            }
        }
        return Ok(out);
    }
    let items = navigation(schema, e, &item.navigation).ok_or_else(|| {
        ODataError::bad_request(format!(
            "Could not find a property named '{}' on type 'Microsoft.Dynamics.CRM.EntityMetadata'.",
            item.navigation
        ))
    })?;
    for m in items {
        if matches_filter(o, &m, "MetadataBase")? {
            out.push(Value::Object(select(m, o.select.as_deref())?));
        }
    }
    Ok(out)
}

/// `$select` over a metadata object; `MetadataId` (and `@odata.type`) are
/// always returned. An unknown property is a 400 as in Dataverse.
fn select(
    full: Map<String, Value>,
    names: Option<&[String]>,
) -> Result<Map<String, Value>, ODataError> {
    let Some(names) = names.filter(|n| !n.is_empty()) else {
        return Ok(full);
    };
    let mut out = Map::new();
    if let Some(t) = full.get("@odata.type") {
        out.insert("@odata.type".into(), t.clone());
    }
    if let Some(id) = full.get("MetadataId") {
        out.insert("MetadataId".into(), id.clone());
    }
    for n in names {
        match full.get(n.as_str()) {
            Some(v) => {
                out.insert(n.clone(), v.clone());
            }
            None if is_known_elsewhere(n) => {}
            None => {
                return Err(ODataError::bad_request(format!(
                    "Could not find a property named '{n}' on type 'Microsoft.Dynamics.CRM.{}'.",
                    type_of(&full)
                )));
            }
        }
    }
    Ok(out)
}

/// Properties of subtypes or navigation properties: valid in `$select`
/// without a cast, simply absent on items of another type.
fn is_known_elsewhere(name: &str) -> bool {
    matches!(
        name,
        "MaxLength"
            | "Format"
            | "FormatName"
            | "Precision"
            | "PrecisionSource"
            | "MinValue"
            | "MaxValue"
            | "Targets"
            | "DateTimeBehavior"
            | "DefaultValue"
            | "DefaultFormValue"
            | "OptionSet"
            | "GlobalOptionSet"
            | "Attributes"
            | "Keys"
            | "ManyToOneRelationships"
            | "OneToManyRelationships"
            | "ManyToManyRelationships"
    )
}

fn type_of(full: &Map<String, Value>) -> String {
    full.get("@odata.type")
        .and_then(Value::as_str)
        .map(|t| t.trim_start_matches('#').trim_start_matches(NS).to_string())
        .unwrap_or_else(|| {
            if full.contains_key("EntitySetName") {
                "EntityMetadata".into()
            } else {
                "MetadataBase".into()
            }
        })
}

// ---------------------------------------------------------------- $filter

fn matches_filter(
    options: &QueryOptions,
    item: &Map<String, Value>,
    type_name: &str,
) -> Result<bool, ODataError> {
    match &options.filter {
        None => Ok(true),
        Some(expr) => eval(expr, item, type_name),
    }
}

fn path_value<'v>(
    item: &'v Map<String, Value>,
    path: &[String],
    type_name: &str,
) -> Result<&'v Value, ODataError> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(&Value::Null);
    };
    let unknown = || {
        ODataError::bad_request(format!(
            "Could not find a property named '{first}' on type 'Microsoft.Dynamics.CRM.{type_name}'."
        ))
    };
    let mut v = match item.get(first.as_str()) {
        Some(v) => v,
        None if is_known_elsewhere(first) => &Value::Null,
        None => return Err(unknown()),
    };
    for p in rest {
        v = v.get(p.as_str()).unwrap_or(&Value::Null);
    }
    Ok(v)
}

fn literal(l: &Literal) -> Value {
    match l {
        Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Int(i) => json!(i),
        Literal::Float(f) => json!(f),
        Literal::String(s) | Literal::Guid(s) | Literal::DateTime(s) => json!(s),
    }
}

fn operand<'v>(
    o: &'v Operand,
    item: &'v Map<String, Value>,
    type_name: &str,
) -> Result<Value, ODataError> {
    match o {
        Operand::Literal(l) => Ok(literal(l)),
        Operand::Property(p) => {
            let v = path_value(item, p, type_name)?;
            if v.get("LocalizedLabels").is_some() {
                // Reference §6.1: filtering on Label properties doesn't work.
                return Err(ODataError::bad_request(format!(
                    "The $filter on the Label property '{}' is not supported.",
                    p.join("/")
                )));
            }
            Ok(v.clone())
        }
    }
}

fn compare(op: CmpOp, l: &Value, r: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (l, r) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
        (Value::String(a), Value::String(b)) => {
            // GUIDs and enum names compare case-insensitively.
            Some(a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase()))
        }
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    };
    match op {
        CmpOp::Eq => ord == Some(Ordering::Equal),
        CmpOp::Ne => ord != Some(Ordering::Equal),
        CmpOp::Gt => ord == Some(Ordering::Greater),
        CmpOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        CmpOp::Lt => ord == Some(Ordering::Less),
        CmpOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
    }
}

fn eval(expr: &Expr, item: &Map<String, Value>, type_name: &str) -> Result<bool, ODataError> {
    Ok(match expr {
        Expr::And(a, b) => eval(a, item, type_name)? && eval(b, item, type_name)?,
        Expr::Or(a, b) => eval(a, item, type_name)? || eval(b, item, type_name)?,
        Expr::Not(a) => !eval(a, item, type_name)?,
        Expr::Compare { op, left, right } => {
            let l = operand(left, item, type_name)?;
            let r = operand(right, item, type_name)?;
            compare(*op, &l, &r)
        }
        // Reference §6.1: string functions on metadata → 501 (UNCONFIRMED).
        Expr::StringFn { .. } => {
            return Err(ODataError::not_implemented(
                "Not supported: string functions in a metadata $filter.".into(),
            ));
        }
        Expr::Query { name, .. } => {
            return Err(ODataError::bad_request(format!(
                "The function '{name}' is not supported on metadata."
            )));
        }
    })
}

// ---------------------------------------------------------------- writes

fn body_json(request: &EmuRequest) -> Result<Map<String, Value>, ODataError> {
    match serde_json::from_slice::<Value>(request.body()) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ODataError::bad_request(
            "The request body is not a valid AttributeMetadata JSON object.".into(),
        )),
    }
}

/// The 1033 label text of a Label property, if the body has one.
fn label_text(body: &Map<String, Value>, prop: &str) -> Option<String> {
    let l = body.get(prop)?;
    l.get("LocalizedLabels")
        .and_then(Value::as_array)
        .and_then(|ls| {
            ls.iter()
                .find(|x| x.get("LanguageCode").and_then(Value::as_i64) == Some(LANGUAGE))
        })
        .or_else(|| l.get("UserLocalizedLabel").filter(|u| !u.is_null()))
        .and_then(|x| x.get("Label"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A body's `@odata.type` without its `#`, and that without the namespace.
fn body_type(body: &Map<String, Value>) -> (&str, &str) {
    let t = body
        .get("@odata.type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim_start_matches('#');
    (t, t.strip_prefix(NS).unwrap_or(t))
}

/// The attribute kind a create body describes.
fn kind_from_body(body: &Map<String, Value>) -> Result<AttributeKind, ODataError> {
    let (_, short) = body_type(body);
    let max_len = |d: u32| {
        body.get("MaxLength")
            .and_then(Value::as_u64)
            .map_or(d, |n| n.min(u64::from(u32::MAX)) as u32)
    };
    Ok(match short {
        "StringAttributeMetadata" => AttributeKind::String {
            max_length: max_len(100),
        },
        "MemoAttributeMetadata" => AttributeKind::Memo {
            max_length: max_len(2000),
        },
        "IntegerAttributeMetadata" => AttributeKind::Integer,
        "MoneyAttributeMetadata" => AttributeKind::Money,
        "DecimalAttributeMetadata" => AttributeKind::Decimal,
        "DateTimeAttributeMetadata" => AttributeKind::DateTime,
        "BooleanAttributeMetadata" => AttributeKind::Boolean,
        "PicklistAttributeMetadata" => {
            let mut options = Vec::new();
            let opts = body
                .get("OptionSet")
                .and_then(|o| o.get("Options"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for o in opts {
                let v = o.get("Value").and_then(Value::as_i64).ok_or_else(|| {
                    ODataError::bad_request("Every option needs an integer Value.".into())
                })?;
                let text = o
                    .as_object()
                    .and_then(|m| label_text(m, "Label"))
                    .unwrap_or_default();
                // Schema option labels are 'static: leak the few created here.
                options.push((v, &*Box::leak(text.into_boxed_str())));
            }
            AttributeKind::Picklist { options }
        }
        "LookupAttributeMetadata" => {
            return Err(ODataError::bad_request(
                "Lookup columns are created with their one-to-many relationship (POST RelationshipDefinitions), not through Attributes.".into(),
            ));
        }
        "" => {
            return Err(ODataError::bad_request(
                "The AttributeMetadata body needs an @odata.type naming its concrete type.".into(),
            ));
        }
        other if CASTABLE.contains(&other) => {
            return Err(ODataError::not_implemented(format!(
                "The emulator does not create {other} columns."
            )));
        }
        other => {
            return Err(ODataError::bad_request(format!(
                "'{other}' is not an AttributeMetadata type."
            )));
        }
    })
}

fn create_attribute(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    entity_key: &str,
) -> Result<EmuResponse, ODataError> {
    let body = body_json(request)?;
    let kind = kind_from_body(&body)?;
    let schema_name = body
        .get("SchemaName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    // The schema name must carry the publisher's customization prefix.
    // Code UNCONFIRMED.
    if !schema_name.contains('_') || schema_name.starts_with('_') {
        return Err(ODataError::new(
            400,
            "0x80044355",
            format!(
                "The schema name '{schema_name}' must start with a valid customization prefix (e.g. new_)."
            ),
        ));
    }
    let logical = schema_name.to_ascii_lowercase();
    let display = label_text(&body, "DisplayName").unwrap_or_default();
    let schema = state.store.schema_mut();
    let e = find_entity_mut(schema, entity_key)?;
    let e_logical = e.logical_name;
    if e.attribute(&logical).is_some() {
        // Code UNCONFIRMED.
        return Err(ODataError::new(
            400,
            "0x80047013",
            format!("An attribute with the specified name {logical} already exists."),
        ));
    }
    let metadata_id = body
        .get("MetadataId")
        .and_then(Value::as_str)
        .and_then(normalize_guid)
        .unwrap_or_else(|| stable_guid(&format!("attribute:{e_logical}.{logical}")));
    e.attributes.push(AttributeDef {
        logical_name: logical,
        schema_name,
        display_name: display,
        metadata_id: metadata_id.clone(),
        kind,
        read_only: false,
        is_custom: true,
    });
    let url = format!(
        "{}EntityDefinitions(LogicalName='{e_logical}')/Attributes({metadata_id})",
        caller.service_root
    );
    Ok(with_entity_id(no_content(), &url))
}

fn update_attribute(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    entity_key: &str,
    attr_key: &str,
) -> Result<EmuResponse, ODataError> {
    let body = body_json(request)?;
    let merge = request
        .headers()
        .get("MSCRM.MergeLabels")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let schema = state.store.schema_mut();
    let e = find_entity_mut(schema, entity_key)?;
    let e_logical = e.logical_name;
    let a_logical = find_attribute(e, attr_key)?.logical_name.clone();
    let Some(a) = e
        .attributes
        .iter_mut()
        .find(|a| a.logical_name == a_logical)
    else {
        return Err(attribute_not_found(e_logical, attr_key));
    };
    let (t, short) = body_type(&body);
    if short != metadata_type(&a.kind) {
        return Err(ODataError::bad_request(format!(
            "The @odata.type '{t}' does not match the column's type {NS}{}; PUT the full definition with its own type.",
            metadata_type(&a.kind)
        )));
    }
    // A column's type and names never change through an update.
    if let Some(s) = body.get("SchemaName").and_then(Value::as_str)
        && !s.eq_ignore_ascii_case(&a.schema_name)
    {
        return Err(ODataError::bad_request(format!(
            "The SchemaName of a column cannot be changed ('{}' → '{s}').",
            a.schema_name
        )));
    }
    match label_text(&body, "DisplayName") {
        Some(text) => a.display_name = text,
        // Without MergeLabels the PUT's labels replace the stored ones.
        None if !merge => a.display_name = String::new(),
        None => {}
    }
    if let (AttributeKind::String { max_length } | AttributeKind::Memo { max_length }, Some(n)) =
        (&mut a.kind, body.get("MaxLength").and_then(Value::as_u64))
    {
        *max_length = n.min(u64::from(u32::MAX)) as u32;
    }
    let url = format!(
        "{}EntityDefinitions(LogicalName='{e_logical}')/Attributes(LogicalName='{a_logical}')",
        caller.service_root
    );
    Ok(with_entity_id(no_content(), &url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_outside_quotes_and_parentheses() {
        assert_eq!(
            segments(
                "EntityDefinitions(LogicalName='a/b')/Attributes(LogicalName='x')/Microsoft.Dynamics.CRM.MoneyAttributeMetadata"
            ),
            vec![
                "EntityDefinitions(LogicalName='a/b')",
                "Attributes(LogicalName='x')",
                "Microsoft.Dynamics.CRM.MoneyAttributeMetadata"
            ]
        );
    }

    #[test]
    fn every_schema_attribute_has_a_castable_type() {
        let schema = Schema::builtin();
        for e in &schema.entities {
            for a in &e.attributes {
                assert!(
                    CASTABLE.contains(&metadata_type(&a.kind)),
                    "{}",
                    a.logical_name
                );
            }
        }
    }

    #[test]
    fn filter_on_enum_and_managed_property() {
        let schema = Schema::builtin();
        let account = schema.by_logical_name("account").unwrap();
        let full = entity_json(&schema, account);
        let parse =
            |s: &str| crate::emulator::odata::filter::parse_filter(s, &Default::default()).unwrap();
        assert!(
            eval(
                &parse("OwnershipType eq Microsoft.Dynamics.CRM.OwnershipTypes'UserOwned'"),
                &full,
                "EntityMetadata"
            )
            .unwrap()
        );
        assert!(
            !eval(
                &parse("OwnershipType eq Microsoft.Dynamics.CRM.OwnershipTypes'OrganizationOwned'"),
                &full,
                "EntityMetadata"
            )
            .unwrap()
        );
        assert!(
            eval(
                &parse("CanCreateAttributes/Value eq true and IsCustomEntity eq false"),
                &full,
                "EntityMetadata"
            )
            .unwrap()
        );
        assert_eq!(
            eval(&parse("Nope eq 1"), &full, "EntityMetadata")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            eval(&parse("DisplayName eq 'Account'"), &full, "EntityMetadata")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            eval(
                &parse("startswith(LogicalName,'a')"),
                &full,
                "EntityMetadata"
            )
            .unwrap_err()
            .status,
            501
        );
    }
}
