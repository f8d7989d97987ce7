//! Metadata (`EntityDefinitions`) requests: typed keys for tables and
//! columns, the attribute-type cast segments, validation of attribute
//! definitions before they are sent, the "top level" rule builders use to
//! hide plumbing tables, and label surfacing. Pure: no I/O.

use crate::error::{ConnectorError, Result};
use crate::types::{Guid, is_identifier, string_literal};
use serde_json::{Map, Value};

const NS: &str = "Microsoft.Dynamics.CRM.";

/// A table definition as a key: its MetadataId or its logical name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityRef {
    Id(Guid),
    LogicalName(String),
}

impl EntityRef {
    /// Parses `input`: a GUID, a logical name (`account`) or the key form
    /// `LogicalName='account'`. Logical names are lower case in Dataverse;
    /// any case is accepted and lowered.
    pub fn parse(input: &str, s: &str) -> Result<EntityRef> {
        let s = s.trim();
        if let Some(g) = Guid::parse(s) {
            return Ok(EntityRef::Id(g));
        }
        let name = logical_name_of(s).ok_or_else(|| {
            ConnectorError::invalid_input(
                input,
                format!(
                    "'{s}' is neither a MetadataId GUID nor a logical name (e.g. account, new_project)"
                ),
            )
        })?;
        Ok(EntityRef::LogicalName(name))
    }

    /// `EntityDefinitions(…)`.
    pub fn path(&self) -> String {
        match self {
            EntityRef::Id(g) => format!("EntityDefinitions({g})"),
            EntityRef::LogicalName(n) => {
                format!("EntityDefinitions(LogicalName={})", string_literal(n))
            }
        }
    }
}

/// A bare or `LogicalName='x'` logical name, lowered; `None` when invalid.
fn logical_name_of(s: &str) -> Option<String> {
    let inner = match s.strip_prefix("LogicalName=") {
        Some(rest) => rest.trim().strip_prefix('\'')?.strip_suffix('\'')?,
        None => s,
    };
    let lower = inner.trim().to_ascii_lowercase();
    is_identifier(&lower).then_some(lower)
}

/// A column definition as a key: MetadataId or logical name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeRef {
    Id(Guid),
    LogicalName(String),
}

impl AttributeRef {
    pub fn parse(input: &str, s: &str) -> Result<AttributeRef> {
        match EntityRef::parse(input, s)? {
            EntityRef::Id(g) => Ok(AttributeRef::Id(g)),
            EntityRef::LogicalName(n) => Ok(AttributeRef::LogicalName(n)),
        }
    }

    /// `Attributes(…)`.
    pub fn segment(&self) -> String {
        match self {
            AttributeRef::Id(g) => format!("Attributes({g})"),
            AttributeRef::LogicalName(n) => {
                format!("Attributes(LogicalName={})", string_literal(n))
            }
        }
    }
}

/// `AttributeType` names builders pick from, with the metadata type their
/// cast segment names. Lookup-like types share LookupAttributeMetadata.
const ATTRIBUTE_TYPES: &[(&str, &str)] = &[
    ("BigInt", "BigIntAttributeMetadata"),
    ("Boolean", "BooleanAttributeMetadata"),
    ("Customer", "LookupAttributeMetadata"),
    ("DateTime", "DateTimeAttributeMetadata"),
    ("Decimal", "DecimalAttributeMetadata"),
    ("Double", "DoubleAttributeMetadata"),
    ("Integer", "IntegerAttributeMetadata"),
    ("Lookup", "LookupAttributeMetadata"),
    ("Memo", "MemoAttributeMetadata"),
    ("Money", "MoneyAttributeMetadata"),
    (
        "MultiSelectPicklist",
        "MultiSelectPicklistAttributeMetadata",
    ),
    ("Owner", "LookupAttributeMetadata"),
    ("Picklist", "PicklistAttributeMetadata"),
    ("State", "StateAttributeMetadata"),
    ("Status", "StatusAttributeMetadata"),
    ("String", "StringAttributeMetadata"),
    ("Uniqueidentifier", "UniqueIdentifierAttributeMetadata"),
    ("Image", "ImageAttributeMetadata"),
    ("File", "FileAttributeMetadata"),
];

/// The concrete AttributeMetadata types a create/update body may name.
pub const ATTRIBUTE_METADATA_TYPES: &[&str] = &[
    "BigIntAttributeMetadata",
    "BooleanAttributeMetadata",
    "DateTimeAttributeMetadata",
    "DecimalAttributeMetadata",
    "DoubleAttributeMetadata",
    "FileAttributeMetadata",
    "ImageAttributeMetadata",
    "IntegerAttributeMetadata",
    "LookupAttributeMetadata",
    "MemoAttributeMetadata",
    "MoneyAttributeMetadata",
    "MultiSelectPicklistAttributeMetadata",
    "PicklistAttributeMetadata",
    "StateAttributeMetadata",
    "StatusAttributeMetadata",
    "StringAttributeMetadata",
    "UniqueIdentifierAttributeMetadata",
];

/// An attribute type filter: the `AttributeType` name and its cast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeType {
    /// `AttributeTypeCode` member, e.g. `Money`.
    pub code: &'static str,
    /// Metadata type, e.g. `MoneyAttributeMetadata`.
    pub metadata_type: &'static str,
}

impl AttributeType {
    /// Accepts `Money`, `money`, `MoneyType`, `MoneyAttributeMetadata` and
    /// `Microsoft.Dynamics.CRM.MoneyAttributeMetadata`.
    pub fn parse(input: &str, s: &str) -> Result<AttributeType> {
        let t = s.trim().trim_start_matches('#');
        let t = t.strip_prefix(NS).unwrap_or(t);
        let stem = t
            .strip_suffix("AttributeMetadata")
            .or_else(|| t.strip_suffix("Type"))
            .unwrap_or(t);
        let stem = if stem.eq_ignore_ascii_case("UniqueIdentifier") {
            "Uniqueidentifier"
        } else {
            stem
        };
        ATTRIBUTE_TYPES
            .iter()
            .find(|(code, _)| code.eq_ignore_ascii_case(stem))
            .map(|(code, metadata_type)| AttributeType {
                code,
                metadata_type,
            })
            .ok_or_else(|| {
                let known: Vec<_> = ATTRIBUTE_TYPES.iter().map(|(c, _)| *c).collect();
                ConnectorError::invalid_input(
                    input,
                    format!("unknown attribute type '{s}' (known: {})", known.join(", ")),
                )
            })
    }

    /// `/Microsoft.Dynamics.CRM.MoneyAttributeMetadata`.
    pub fn cast_segment(&self) -> String {
        format!("/{NS}{}", self.metadata_type)
    }

    /// `AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Money'`:
    /// needed besides the cast where several codes share one metadata type
    /// (Lookup, Customer, Owner).
    pub fn filter(&self) -> String {
        format!("AttributeType eq {NS}AttributeTypeCode'{}'", self.code)
    }
}

/// Whether a schema name carries a publisher customization prefix: 2–8
/// letters or digits starting with a letter, not `mscrm`, then `_` and the
/// name (`new_Balance`, `contoso_UnitPrice`).
pub fn has_publisher_prefix(schema_name: &str) -> bool {
    let Some((prefix, rest)) = schema_name.split_once('_') else {
        return false;
    };
    (2..=8).contains(&prefix.len())
        && prefix
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && prefix.chars().all(|c| c.is_ascii_alphanumeric())
        && !prefix.to_ascii_lowercase().starts_with("mscrm")
        && !rest.is_empty()
        && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks an AttributeMetadata body for createAttribute/updateAttribute:
/// a JSON object (or JSON text of one) whose `@odata.type` is a concrete
/// AttributeMetadata type and whose `SchemaName` has a publisher prefix.
/// Returns the object with `@odata.type` in its canonical form.
pub fn attribute_body(input: &str, value: Option<&Value>) -> Result<Map<String, Value>> {
    let mut body = match value {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) => match serde_json::from_str(s) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(ConnectorError::invalid_input(
                    input,
                    "must be an AttributeMetadata JSON object",
                ));
            }
        },
        _ => {
            return Err(ConnectorError::invalid_input(
                input,
                "must be an AttributeMetadata JSON object",
            ));
        }
    };
    let t = body
        .get("@odata.type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .trim_start_matches('#');
    let short = t.strip_prefix(NS).unwrap_or(t);
    let Some(known) = ATTRIBUTE_METADATA_TYPES.iter().find(|k| **k == short) else {
        return Err(ConnectorError::invalid_input(
            input,
            format!(
                "@odata.type must name a concrete AttributeMetadata type such as Microsoft.Dynamics.CRM.MoneyAttributeMetadata (got '{t}'; known: {})",
                ATTRIBUTE_METADATA_TYPES.join(", ")
            ),
        ));
    };
    body.insert("@odata.type".into(), Value::String(format!("{NS}{known}")));
    let schema_name = body.get("SchemaName").and_then(Value::as_str).unwrap_or("");
    if !has_publisher_prefix(schema_name) {
        return Err(ConnectorError::invalid_input(
            input,
            format!(
                "SchemaName must start with the publisher's customization prefix, e.g. new_Balance (got '{schema_name}')"
            ),
        ));
    }
    Ok(body)
}

/// The text to show for a Label: the user's localized label, else the
/// first localized one; `None` for an empty label.
pub fn label_text(label: &Value) -> Option<String> {
    label
        .get("UserLocalizedLabel")
        .filter(|u| !u.is_null())
        .or_else(|| label.get("LocalizedLabels")?.get(0))
        .and_then(|l| l.get("Label"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Adds `displayName`, `displayCollectionName` and `description` (plain
/// strings) next to the Label objects of a definition, and recurses into
/// `Attributes`, so builders need not dig into LocalizedLabels.
pub fn surface_labels(item: &mut Value) {
    let Some(obj) = item.as_object_mut() else {
        return;
    };
    for (label, plain) in [
        ("DisplayName", "displayName"),
        ("DisplayCollectionName", "displayCollectionName"),
        ("Description", "description"),
    ] {
        if let Some(l) = obj.get(label) {
            let text = label_text(l).map_or(Value::Null, Value::String);
            obj.insert(plain.to_string(), text);
        }
    }
    if let Some(Value::Array(attrs)) = obj.get_mut("Attributes") {
        attrs.iter_mut().for_each(surface_labels);
    }
}

/// The EntityMetadata properties [`is_top_level`] reads.
pub const TOP_LEVEL_PROPERTIES: &[&str] = &[
    "IsIntersect",
    "IsChildEntity",
    "IsActivityParty",
    "IsValidForAdvancedFind",
];

/// Whether a table is "top level": one a user works with directly, so a
/// builder lists it in its table picker. That is a table that is
/// - not an intersect table (`IsIntersect`: the hidden table behind a
///   many-to-many relationship),
/// - not a child table (`IsChildEntity`: rows exist only under a parent,
///   such as a product's price list items),
/// - not the activity-party table (`IsActivityParty`: the from/to rows of
///   activities), and
/// - valid for Advanced Find (`IsValidForAdvancedFind`: system plumbing
///   tables are not).
///
/// Activities themselves (email, task) are top level. A missing property
/// counts as the harmless value (false; true for IsValidForAdvancedFind).
pub fn is_top_level(entity: &Value) -> bool {
    let flag =
        |name: &str, missing: bool| entity.get(name).and_then(Value::as_bool).unwrap_or(missing);
    !flag("IsIntersect", false)
        && !flag("IsChildEntity", false)
        && !flag("IsActivityParty", false)
        && flag("IsValidForAdvancedFind", true)
}

/// Whether `needle` names this table: its logical, schema or entity set
/// name, or its display or collection label — case-insensitively.
pub fn names_entity(entity: &Value, needle: &str) -> bool {
    let needle = needle.trim();
    if needle.is_empty() {
        return false;
    }
    let texts = ["LogicalName", "SchemaName", "EntitySetName"]
        .iter()
        .filter_map(|k| entity.get(*k).and_then(Value::as_str).map(str::to_string))
        .chain(
            ["DisplayName", "DisplayCollectionName"]
                .iter()
                .filter_map(|k| entity.get(*k).and_then(label_text)),
        );
    texts.into_iter().any(|t| t.eq_ignore_ascii_case(needle))
}

/// listEntityTypes' page cursor: Dataverse never pages metadata
/// (reference §6.1), so the connector pages the list sorted by logical
/// name itself. The cursor is the last logical name served (keyset), so a
/// table created between two calls is neither served twice nor skips
/// another.
pub const CURSOR_PREFIX: &str = "listEntityTypes:after=";

pub fn next_cursor(last_logical_name: &str) -> String {
    format!("{CURSOR_PREFIX}{last_logical_name}")
}

pub fn parse_cursor(input: &str, s: &str) -> Result<String> {
    s.trim()
        .strip_prefix(CURSOR_PREFIX)
        .filter(|n| is_identifier(n))
        .map(str::to_string)
        .ok_or_else(|| {
            ConnectorError::invalid_input(
                input,
                "is not a nextLink returned by listEntityTypes (it looks like listEntityTypes:after=<logical name>)",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    fn input_of(e: ConnectorError) -> String {
        match e.kind {
            ErrorKind::InvalidInput { input } => input,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn entity_keys() {
        assert_eq!(
            EntityRef::parse("entityId", "Account").unwrap().path(),
            "EntityDefinitions(LogicalName='account')"
        );
        assert_eq!(
            EntityRef::parse("entityId", "LogicalName='new_project'")
                .unwrap()
                .path(),
            "EntityDefinitions(LogicalName='new_project')"
        );
        assert_eq!(
            EntityRef::parse("entityId", "{70816501-EDB9-4740-A16C-6A5EFBC05D84}")
                .unwrap()
                .path(),
            "EntityDefinitions(70816501-edb9-4740-a16c-6a5efbc05d84)"
        );
        assert_eq!(
            input_of(EntityRef::parse("entityId", "acc'ount").unwrap_err()),
            "entityId"
        );
        assert_eq!(
            AttributeRef::parse("attributeKey", "LogicalName='Name'")
                .unwrap()
                .segment(),
            "Attributes(LogicalName='name')"
        );
    }

    #[test]
    fn attribute_types_and_casts() {
        for s in [
            "Money",
            "money",
            "MoneyType",
            "MoneyAttributeMetadata",
            "#Microsoft.Dynamics.CRM.MoneyAttributeMetadata",
        ] {
            let t = AttributeType::parse("attributeType", s).unwrap();
            assert_eq!(
                t.cast_segment(),
                "/Microsoft.Dynamics.CRM.MoneyAttributeMetadata"
            );
            assert_eq!(
                t.filter(),
                "AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Money'"
            );
        }
        assert_eq!(
            AttributeType::parse("attributeType", "UniqueIdentifier")
                .unwrap()
                .metadata_type,
            "UniqueIdentifierAttributeMetadata"
        );
        assert_eq!(
            input_of(AttributeType::parse("attributeType", "Currency").unwrap_err()),
            "attributeType"
        );
    }

    #[test]
    fn publisher_prefixes() {
        assert!(has_publisher_prefix("new_Balance"));
        assert!(has_publisher_prefix("contoso_UnitPrice"));
        for bad in [
            "Balance",
            "_Balance",
            "n_Balance",
            "toolongpfx_X",
            "new_",
            "1ab_X",
            "mscrm_X",
            "new_Bal ance",
        ] {
            assert!(!has_publisher_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn attribute_bodies_are_checked() {
        let ok = json!({"@odata.type": "#MoneyAttributeMetadata", "SchemaName": "new_Balance"});
        let b = attribute_body("attributeBody", Some(&ok)).unwrap();
        assert_eq!(
            b["@odata.type"],
            "Microsoft.Dynamics.CRM.MoneyAttributeMetadata"
        );
        let text = Value::String(ok.to_string());
        assert!(attribute_body("attributeBody", Some(&text)).is_ok());
        for bad in [
            json!({"SchemaName": "new_Balance"}),
            json!({"@odata.type": "Microsoft.Dynamics.CRM.EnumAttributeMetadata", "SchemaName": "new_X"}),
            json!({"@odata.type": "Microsoft.Dynamics.CRM.MoneyAttributeMetadata", "SchemaName": "Balance"}),
            json!([1]),
        ] {
            assert_eq!(
                input_of(attribute_body("attributeBody", Some(&bad)).unwrap_err()),
                "attributeBody"
            );
        }
        assert!(attribute_body("attributeBody", None).is_err());
    }

    #[test]
    fn top_level_excludes_intersect_child_and_activity_party_tables() {
        let base = json!({"IsIntersect": false, "IsChildEntity": false, "IsActivityParty": false, "IsValidForAdvancedFind": true, "IsActivity": false});
        assert!(is_top_level(&base));
        let with = |k: &str, v: bool| {
            let mut e = base.clone();
            e[k] = json!(v);
            e
        };
        assert!(!is_top_level(&with("IsIntersect", true)));
        assert!(!is_top_level(&with("IsChildEntity", true)));
        assert!(!is_top_level(&with("IsActivityParty", true)));
        assert!(!is_top_level(&with("IsValidForAdvancedFind", false)));
        // Activities are tables users work with.
        assert!(is_top_level(&with("IsActivity", true)));
    }

    #[test]
    fn labels_surface_and_names_match_case_insensitively() {
        let mut e = json!({
            "LogicalName": "account", "EntitySetName": "accounts", "SchemaName": "Account",
            "DisplayName": {"LocalizedLabels": [{"Label": "Account", "LanguageCode": 1033}], "UserLocalizedLabel": {"Label": "Account", "LanguageCode": 1033}},
            "DisplayCollectionName": {"LocalizedLabels": [{"Label": "Accounts", "LanguageCode": 1033}], "UserLocalizedLabel": null},
            "Description": {"LocalizedLabels": [], "UserLocalizedLabel": null},
            "Attributes": [{"LogicalName": "name", "DisplayName": {"LocalizedLabels": [], "UserLocalizedLabel": {"Label": "Account Name"}}}]
        });
        assert!(names_entity(&e, "ACCOUNTS"));
        assert!(names_entity(&e, "account"));
        assert!(!names_entity(&e, "contact"));
        assert!(!names_entity(&e, " "));
        surface_labels(&mut e);
        assert_eq!(e["displayName"], "Account");
        assert_eq!(e["displayCollectionName"], "Accounts");
        assert_eq!(e["description"], Value::Null);
        assert_eq!(e["Attributes"][0]["displayName"], "Account Name");
    }

    #[test]
    fn cursors_round_trip() {
        assert_eq!(
            parse_cursor("nextLink", &next_cursor("contact")).unwrap(),
            "contact"
        );
        assert_eq!(
            input_of(
                parse_cursor("nextLink", "https://x/api/data/v9.2/EntityDefinitions").unwrap_err()
            ),
            "nextLink"
        );
    }
}
