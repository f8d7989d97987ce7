//! JSON Schema (draft 2020-12) for every action's inputs and outputs,
//! generated from the catalog definitions — the same definitions that
//! [`crate::inputs`] validates against, so schema and validation cannot drift.
//! The schemas are part of the catalog JSON (`inputSchema`, `outputSchema` on
//! each action) and therefore of connector.yaml.

use crate::catalog::{ActionDef, InputDef, InputType};
use serde_json::{Map, Value, json};

pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The schema of one action's inputs object.
pub fn input_schema(action: &ActionDef) -> Value {
    let mut properties = Map::new();
    for input in &action.inputs {
        properties.insert(input.key.to_string(), property(input));
    }
    let required: Vec<_> = action
        .inputs
        .iter()
        .filter(|i| i.required)
        .map(|i| i.key)
        .collect();
    json!({
        "$schema": DIALECT,
        "title": format!("{} inputs", action.label),
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn property(input: &InputDef) -> Value {
    let mut p = match input.ty {
        InputType::String => json!({"type": "string"}),
        InputType::Password => json!({"type": "string", "writeOnly": true}),
        InputType::Code => json!({"type": "string", "contentMediaType": "application/xml"}),
        // Builders often send "true"/"false"; the component accepts both.
        InputType::Boolean => {
            json!({"type": ["boolean", "string"], "enum": [true, false, "true", "false"]})
        }
        InputType::Integer => json!({"type": ["integer", "string"], "pattern": "^-?[0-9]+$"}),
        InputType::Json => json!({}),
        InputType::List => json!({
            "anyOf": [
                {"type": "array", "items": {"type": "string"}},
                {"type": "string", "description": "comma-separated"}
            ]
        }),
        InputType::KeyValueList => json!({
            "anyOf": [
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"key": {"type": "string"}, "value": {}},
                        "required": ["key", "value"]
                    }
                },
                {"type": "object"}
            ]
        }),
    };
    let Some(obj) = p.as_object_mut() else {
        return p;
    };
    obj.insert("title".into(), json!(input.label));
    obj.insert("description".into(), json!(input.comment));
    if let Some(d) = &input.default {
        obj.insert("default".into(), d.clone());
    }
    if let Some(e) = &input.example {
        obj.insert("examples".into(), json!([e]));
    }
    if let Some(c) = &input.choices {
        obj.insert("enum".into(), json!(c));
    }
    if let (Some(min), Some(max)) = (input.min, input.max) {
        obj.insert("minimum".into(), json!(min));
        obj.insert("maximum".into(), json!(max));
    }
    p
}

const GUID: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// The schema of one action's output JSON.
pub fn output_schema(key: &str) -> Value {
    let body = match key {
        "getCurrentUser" => json!({
            "type": "object",
            "properties": {
                "UserId": {"type": "string", "pattern": GUID},
                "BusinessUnitId": {"type": "string", "pattern": GUID},
                "OrganizationId": {"type": "string", "pattern": GUID},
            },
            "required": ["UserId", "BusinessUnitId", "OrganizationId"],
        }),
        "runFetchXml" => json!({
            "type": "object",
            "properties": {
                "value": {
                    "type": "array",
                    "items": {"type": "object"},
                    "description": "The records (null columns omitted, link-entity columns as alias.column), or the aggregate rows.",
                },
                "count": {"type": "integer", "minimum": 0},
                "pageNumber": {"type": "integer", "minimum": 1, "description": "The first page this call read."},
                "pages": {"type": "integer", "minimum": 1},
                "moreRecords": {"type": "boolean"},
                "nextPage": {
                    "type": ["string", "null"],
                    "description": "Pass as nextPage to read the following page; null on the last page.",
                },
                "sentVia": {"enum": ["get", "batch"]},
            },
            "required": ["value", "count", "pageNumber", "pages", "moreRecords", "nextPage", "sentVia"],
        }),
        "recordChanges" => json!({
            "type": "object",
            "properties": {
                "changed": {
                    "type": "array",
                    "items": {"type": "object"},
                    "description": "Rows created or updated since the state (every row on a full sync), with their current values of the selected columns.",
                },
                "deleted": {
                    "type": "array",
                    "items": {"type": "string", "pattern": GUID},
                    "description": "Ids of rows deleted since the state (always empty on a full sync).",
                },
                "changedCount": {"type": "integer", "minimum": 0},
                "deletedCount": {"type": "integer", "minimum": 0},
                "fullSync": {"type": "boolean", "description": "True when every row was read (no state, or resync)."},
                "pages": {"type": "integer", "minimum": 1},
                "state": {"type": "string", "description": "The @odata.deltaLink to pass as state to the next poll."},
            },
            "required": ["changed", "deleted", "changedCount", "deletedCount", "fullSync", "pages", "state"],
        }),
        "getEntityMetadata" => entity_definition(),
        "getEntitiesMetadata" | "listEntities" | "listEntityTypes" => {
            let mut item = entity_definition();
            if key == "getEntitiesMetadata" {
                item["properties"]["selected"] = json!({"type": "boolean"});
                item["required"] = json!(["MetadataId", "LogicalName", "selected"]);
            }
            let mut out = json!({
                "type": "object",
                "properties": {
                    "value": {"type": "array", "items": item},
                    "count": {"type": "integer", "minimum": 0},
                },
                "required": ["value", "count"],
            });
            if key == "listEntityTypes" {
                out["properties"]["nextLink"] = json!({"type": ["string", "null"]});
            }
            if key == "getEntitiesMetadata" {
                out["properties"]["unmatchedDefaultSelected"] =
                    json!({"type": "array", "items": {"type": "string"}});
            }
            out
        }
        "listAttributes" | "queryAttributes" => json!({
            "type": "object",
            "properties": {
                "value": {"type": "array", "items": attribute_definition()},
                "count": {"type": "integer", "minimum": 0},
            },
            "required": ["value", "count"],
        }),
        "getAttribute" => attribute_definition(),
        "createAttribute" | "updateAttribute" => json!({
            "type": "object",
            "properties": {
                "created": {"type": "boolean"},
                "updated": {"type": "boolean"},
                "MetadataId": {"type": ["string", "null"], "pattern": GUID},
                "LogicalName": {"type": ["string", "null"]},
                "entityIdUrl": {"type": ["string", "null"]},
            },
        }),
        "associate" | "disassociate" => json!({
            "type": "object",
            "properties": {
                (if key == "associate" { "associated" } else { "disassociated" }): {"const": true},
                "entityType": {"type": "string"},
                "navigationProperty": {"type": "string"},
                "target": {
                    "type": ["string", "null"],
                    "format": "uri",
                    "description": "The related record's URL (@odata.id); null when a lookup was cleared without naming it."
                },
            },
            "required": [
                if key == "associate" { "associated" } else { "disassociated" },
                "entityType", "navigationProperty", "target"
            ],
        }),
        "executeAction" => json!({
            "type": "object",
            "properties": {
                "status": {"type": "integer", "description": "200 with a result, 204 for a void action."},
                "result": {
                    "type": ["object", "null"],
                    "description": "The operation's response (e.g. WhoAmIResponse), null for a void action."
                },
            },
            "required": ["status", "result"],
        }),
        "runBatch" => json!({
            "type": "object",
            "properties": {
                "status": {"type": "integer", "description": "HTTP status of the $batch response"},
                "succeeded": {"type": "integer"},
                "failed": {"type": "integer"},
                "results": {
                    "type": "array",
                    "description": "One result per batchActions item, in input order",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": {"type": "integer"},
                            "action": {"enum": ["create", "update", "upsert", "delete", "get"]},
                            "collection": {"type": "string"},
                            "status": {"type": ["integer", "null"], "description": "null when the item has no response of its own (not run, or rolled back)"},
                            "success": {"type": "boolean"},
                            "id": {"type": "string", "pattern": GUID, "description": "from OData-EntityId"},
                            "entityUrl": {"type": "string"},
                            "record": {"description": "the returned record or collection (gets, returnRepresentation)"},
                            "error": {"type": "object", "description": "the Dataverse error for this item (code, message, status, hint), or why it has none"},
                            "notRun": {"type": "boolean", "description": "true when Dataverse returned nothing for the item: not run after an earlier failure, or rolled back with its change set"},
                            "answered": {"type": "boolean", "description": "false for an item that ran before the failure that stopped the batch: applied, but Dataverse sent no response for it"},
                            "note": {"type": "string"},
                            "outcomeUnknown": {"type": "boolean", "description": "true when Dataverse returned a failure it did not tie to any item, so whether this item ran is unknown"},
                            "bulk": {"enum": ["CreateMultiple", "UpdateMultiple", "UpsertMultiple"]},
                        },
                        "required": ["index", "action", "collection", "status", "success"],
                    },
                },
                "unplaced": {"type": "array", "description": "responses Dataverse did not tie to an item"},
            },
            "required": ["status", "succeeded", "failed", "results"],
        }),
        // Actions without a specific schema return a JSON object.
        _ => json!({"type": "object"}),
    };
    let mut schema = json!({"$schema": DIALECT, "title": format!("{key} output")});
    if let (Some(s), Some(b)) = (schema.as_object_mut(), body.as_object()) {
        s.extend(b.clone());
    }
    schema
}

/// A Label property's plain text as the metadata actions surface it.
fn surfaced_label() -> Value {
    json!({"type": ["string", "null"], "description": "The user's localized label (UserLocalizedLabel.Label)."})
}

/// An EntityMetadata object (properties depend on the action's $select).
fn entity_definition() -> Value {
    json!({
        "type": "object",
        "properties": {
            "MetadataId": {"type": "string", "pattern": GUID},
            "LogicalName": {"type": "string"},
            "SchemaName": {"type": "string"},
            "EntitySetName": {"type": "string"},
            "IsCustomEntity": {"type": "boolean"},
            "OwnershipType": {"type": "string"},
            "DisplayName": {"type": "object"},
            "displayName": surfaced_label(),
            "displayCollectionName": surfaced_label(),
            "description": surfaced_label(),
            "Attributes": {"type": "array", "items": attribute_definition()},
        },
        "required": ["MetadataId", "LogicalName"],
    })
}

/// An AttributeMetadata object.
fn attribute_definition() -> Value {
    json!({
        "type": "object",
        "properties": {
            "MetadataId": {"type": "string", "pattern": GUID},
            "LogicalName": {"type": "string"},
            "SchemaName": {"type": "string"},
            "AttributeType": {"type": "string"},
            "displayName": surfaced_label(),
        },
        "required": ["MetadataId"],
    })
}

/// The JSON pointer, within an action's catalog entry, of an input's schema.
pub fn input_pointer(action_key: &str, input_key: &str) -> String {
    format!("/actions/{action_key}/inputSchema/properties/{input_key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::catalog;

    #[test]
    fn every_action_has_object_schemas_listing_all_inputs() {
        for action in &catalog().actions {
            let s = input_schema(action);
            assert_eq!(s["$schema"], DIALECT);
            assert_eq!(s["additionalProperties"], false);
            let props = s["properties"].as_object().unwrap();
            assert_eq!(props.len(), action.inputs.len(), "{}", action.key);
            for i in &action.inputs {
                assert_eq!(props[i.key]["title"], i.label);
                assert_eq!(
                    s["required"].as_array().unwrap().contains(&json!(i.key)),
                    i.required
                );
            }
            assert_eq!(output_schema(action.key)["$schema"], DIALECT);
        }
    }

    #[test]
    fn defaults_and_ranges_are_carried() {
        let def = ActionDef {
            key: "t",
            label: "T",
            description: "",
            deprecated: false,
            inputs: vec![
                crate::catalog::input("pageSize", "Records Per Page", InputType::Integer, "c")
                    .default(json!(100))
                    .range(1, 5000),
            ],
        };
        let p = &input_schema(&def)["properties"]["pageSize"];
        assert_eq!(p["default"], 100);
        assert_eq!(p["minimum"], 1);
        assert_eq!(p["maximum"], 5000);
    }
}
