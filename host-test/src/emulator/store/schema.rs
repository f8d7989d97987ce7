//! Entity definitions: the emulator's metadata. Everything the Web API needs
//! to read and write records (entity set names, primary keys, typed
//! attributes, lookups with their navigation properties, alternate keys) and
//! what an `EntityDefinitions` endpoint needs to describe them (schema names,
//! metadata ids, display names, ownership).

mod controls;
mod custom;
pub use custom::{ACTIVITY_ENTITIES, INTERSECT_ENTITIES};
mod sales;
pub mod sdk;

/// How an entity's records are owned (`OwnershipType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    UserOwned,
    OrganizationOwned,
    BusinessOwned,
}

impl Ownership {
    /// The metadata enum name, as `EntityDefinitions` returns it.
    pub fn as_str(self) -> &'static str {
        match self {
            Ownership::UserOwned => "UserOwned",
            Ownership::OrganizationOwned => "OrganizationOwned",
            Ownership::BusinessOwned => "BusinessOwned",
        }
    }
}

/// One target of a lookup: the referenced entity, the single-valued
/// navigation property on the referencing entity (what `…@odata.bind` and
/// `$expand` name) and the relationship, whose schema name is also the
/// collection-valued navigation property on the referenced entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupTarget {
    pub entity: String,
    pub navigation_property: String,
    pub relationship: String,
}

/// Attribute types (`AttributeType` in metadata).
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeKind {
    /// The primary key, or any GUID column.
    Uniqueidentifier,
    String {
        max_length: u32,
    },
    Memo {
        max_length: u32,
    },
    Integer,
    Money,
    Decimal,
    DateTime,
    Boolean,
    Picklist {
        options: Vec<(i64, &'static str)>,
    },
    /// State and status codes are picklists with their own metadata types.
    State {
        options: Vec<(i64, &'static str)>,
    },
    Lookup {
        targets: Vec<LookupTarget>,
    },
    /// A file column: the value is the id of the stored file (read-only in
    /// JSON); the content goes through `PATCH …/<column>` and `…/$value`.
    File {
        max_size_kb: u32,
    },
    /// An image column ("Use image column data",
    /// https://learn.microsoft.com/power-apps/developer/data-platform/image-column-data):
    /// the value is the thumbnail as base64; the image itself goes through
    /// the file protocol, and the full size is kept only when
    /// `can_store_full_image`.
    Image {
        max_size_kb: u32,
        can_store_full_image: bool,
    },
}

impl AttributeKind {
    /// The kind's names in metadata: `AttributeType`, the
    /// `AttributeTypeName` value and the concrete `…AttributeMetadata` type.
    pub fn metadata_names(&self) -> (&'static str, &'static str, &'static str) {
        match self {
            AttributeKind::Uniqueidentifier => (
                "Uniqueidentifier",
                "UniqueidentifierType",
                "UniqueIdentifierAttributeMetadata",
            ),
            AttributeKind::String { .. } => ("String", "StringType", "StringAttributeMetadata"),
            AttributeKind::Memo { .. } => ("Memo", "MemoType", "MemoAttributeMetadata"),
            AttributeKind::Integer => ("Integer", "IntegerType", "IntegerAttributeMetadata"),
            AttributeKind::Money => ("Money", "MoneyType", "MoneyAttributeMetadata"),
            AttributeKind::Decimal => ("Decimal", "DecimalType", "DecimalAttributeMetadata"),
            AttributeKind::DateTime => ("DateTime", "DateTimeType", "DateTimeAttributeMetadata"),
            AttributeKind::Boolean => ("Boolean", "BooleanType", "BooleanAttributeMetadata"),
            AttributeKind::Picklist { .. } => {
                ("Picklist", "PicklistType", "PicklistAttributeMetadata")
            }
            AttributeKind::State { .. } => ("State", "StateType", "StateAttributeMetadata"),
            AttributeKind::Lookup { .. } => ("Lookup", "LookupType", "LookupAttributeMetadata"),
            AttributeKind::File { .. } => ("File", "FileType", "FileAttributeMetadata"),
            // Image columns are virtual columns in Dataverse's metadata.
            AttributeKind::Image { .. } => ("Virtual", "ImageType", "ImageAttributeMetadata"),
        }
    }

    /// The metadata `AttributeType` name.
    pub fn type_name(&self) -> &'static str {
        self.metadata_names().0
    }

    pub fn is_lookup(&self) -> bool {
        matches!(self, AttributeKind::Lookup { .. })
    }

    pub fn options(&self) -> Option<&[(i64, &'static str)]> {
        match self {
            AttributeKind::Picklist { options } | AttributeKind::State { options } => Some(options),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttributeDef {
    pub logical_name: String,
    pub schema_name: String,
    pub display_name: String,
    pub metadata_id: String,
    pub kind: AttributeKind,
    /// Set by the platform, never by a client (createdon, versionnumber …).
    pub read_only: bool,
    pub is_custom: bool,
}

impl AttributeDef {
    /// The property name in OData payloads: `_x_value` for lookups.
    pub fn property_name(&self) -> String {
        if self.kind.is_lookup() {
            format!("_{}_value", self.logical_name)
        } else {
            self.logical_name.to_string()
        }
    }
}

/// An alternate key (`EntityKeyMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlternateKey {
    pub logical_name: &'static str,
    pub schema_name: &'static str,
    pub display_name: &'static str,
    pub attributes: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EntityDef {
    pub logical_name: &'static str,
    pub entity_set_name: &'static str,
    pub schema_name: &'static str,
    pub metadata_id: String,
    pub display_name: &'static str,
    pub display_collection_name: &'static str,
    pub description: &'static str,
    pub primary_id: String,
    pub primary_name: &'static str,
    pub ownership: Ownership,
    pub is_custom: bool,
    pub attributes: Vec<AttributeDef>,
    pub keys: Vec<AlternateKey>,
    /// `ChangeTrackingEnabled`: whether `Prefer: odata.track-changes` and
    /// delta links work on this table (`webapi/changes.rs`).
    pub change_tracking_enabled: bool,
    /// `TableType`: `Standard`, or `Elastic` for a partitioned table
    /// ("Use elastic tables using code").
    pub table_type: &'static str,
}

impl EntityDef {
    /// The table's ObjectTypeCode: Dataverse's numbers for the system
    /// tables, and for custom ones a stable code from 10000 up (metadata and
    /// search both report it).
    pub fn object_type_code(&self) -> i64 {
        match self.logical_name {
            "account" => 1,
            "contact" => 2,
            "opportunity" => 3,
            "lead" => 4,
            "systemuser" => 8,
            "businessunit" => 10,
            other => {
                let h = other
                    .bytes()
                    .fold(0u32, |h, b| h.wrapping_mul(31) ^ u32::from(b));
                10000 + i64::from(h % 5000)
            }
        }
    }
}

/// Tables the emulator seeds with "Track changes" on (as in environments
/// where Mobile Offline or Synapse Link use them); others start without it.
pub const CHANGE_TRACKED_BY_DEFAULT: &[&str] = &["account", "contact", "lead", "opportunity"];

/// What a navigation property name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Navigation {
    /// Many-to-one: follow `attribute` of this entity to `target`.
    Single { attribute: String, target: String },
    /// One-to-many: records of `entity` whose `attribute` points here.
    Collection { entity: String, attribute: String },
    /// Many-to-many: records of `entity` paired with this one by rows of
    /// the `intersect` entity (see [`ManyToMany`]).
    ManyToMany(ManyToMany),
}

/// A many-to-many relationship: its schema name is the collection-valued
/// navigation property on both sides; each association is one row of the
/// intersect entity holding both ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManyToMany {
    pub schema_name: &'static str,
    pub intersect: &'static str,
    pub entity1: &'static str,
    pub attribute1: &'static str,
    pub entity2: &'static str,
    pub attribute2: &'static str,
}

impl ManyToMany {
    /// (this side's intersect attribute, the other entity, its attribute)
    /// seen from `entity`.
    pub fn sides(&self, entity: &str) -> Option<(&'static str, &'static str, &'static str)> {
        if entity == self.entity1 {
            Some((self.attribute1, self.entity2, self.attribute2))
        } else if entity == self.entity2 {
            Some((self.attribute2, self.entity1, self.attribute1))
        } else {
            None
        }
    }
}

/// The built-in many-to-many relationships (Dataverse's own
/// `accountleads_association`, intersect entity `accountleads`).
pub const MANY_TO_MANY: &[ManyToMany] = &[ManyToMany {
    schema_name: "accountleads_association",
    intersect: "accountleads",
    entity1: "account",
    attribute1: "accountid",
    entity2: "lead",
    attribute2: "leadid",
}];

impl EntityDef {
    pub fn attribute(&self, logical_name: &str) -> Option<&AttributeDef> {
        self.attributes
            .iter()
            .find(|a| a.logical_name == logical_name)
    }

    /// Resolves an OData property name (`name`, `_parentaccountid_value`)
    /// to its attribute. Lookups also answer to their logical name, as
    /// Dataverse accepts both in `$select`.
    pub fn property(&self, name: &str) -> Option<&AttributeDef> {
        if let Some(inner) = name
            .strip_prefix('_')
            .and_then(|n| n.strip_suffix("_value"))
        {
            return self.attribute(inner).filter(|a| a.kind.is_lookup());
        }
        self.attribute(name)
    }

    /// The many-to-one navigation property named exactly `name`
    /// (navigation property names are case-sensitive).
    pub fn single_navigation(&self, name: &str) -> Option<(&AttributeDef, &LookupTarget)> {
        self.attributes.iter().find_map(|a| match &a.kind {
            AttributeKind::Lookup { targets } => targets
                .iter()
                .find(|t| t.navigation_property == name)
                .map(|t| (a, t)),
            _ => None,
        })
    }

    /// The OData type name used in error messages.
    pub fn odata_type(&self) -> String {
        format!("Microsoft.Dynamics.CRM.{}", self.logical_name)
    }
}

/// Every entity the emulator knows.
#[derive(Debug, Clone)]
pub struct Schema {
    pub entities: Vec<EntityDef>,
}

impl Schema {
    pub fn by_logical_name(&self, name: &str) -> Option<&EntityDef> {
        self.entities.iter().find(|e| e.logical_name == name)
    }

    /// Entity set names are case-sensitive in Dataverse.
    pub fn by_entity_set(&self, name: &str) -> Option<&EntityDef> {
        self.entities.iter().find(|e| e.entity_set_name == name)
    }

    /// Resolves a navigation property of `entity` (single or collection).
    pub fn navigation(&self, entity: &EntityDef, name: &str) -> Option<Navigation> {
        if let Some((attr, target)) = entity.single_navigation(name) {
            return Some(Navigation::Single {
                attribute: attr.logical_name.clone(),
                target: target.entity.clone(),
            });
        }
        self.one_to_many(entity.logical_name)
            .into_iter()
            .find(|(rel, _, _)| rel == name)
            .map(|(_, e, a)| Navigation::Collection {
                entity: e.to_string(),
                attribute: a,
            })
            .or_else(|| self.many_to_many(entity.logical_name, name))
    }

    /// The many-to-many relationship `name` of `logical_name`, when both
    /// sides and the intersect entity exist.
    fn many_to_many(&self, logical_name: &str, name: &str) -> Option<Navigation> {
        MANY_TO_MANY
            .iter()
            .find(|m| {
                m.schema_name == name
                    && m.sides(logical_name).is_some()
                    && [m.intersect, m.entity1, m.entity2]
                        .iter()
                        .all(|e| self.by_logical_name(e).is_some())
            })
            .map(|m| Navigation::ManyToMany(*m))
    }

    /// One-to-many relationships of `logical_name`: (relationship schema
    /// name = collection navigation property, referencing entity,
    /// referencing attribute).
    pub fn one_to_many(&self, logical_name: &str) -> Vec<(String, &'static str, String)> {
        let mut out = Vec::new();
        for e in &self.entities {
            for a in &e.attributes {
                if let AttributeKind::Lookup { targets } = &a.kind {
                    for t in targets.iter().filter(|t| t.entity == logical_name) {
                        out.push((
                            t.relationship.clone(),
                            e.logical_name,
                            a.logical_name.clone(),
                        ));
                    }
                }
            }
        }
        out
    }

    /// The built-in entities: account, contact, lead, opportunity,
    /// systemuser and businessunit, with the columns integrators use most.
    pub fn builtin() -> Schema {
        let mut schema = Schema {
            entities: vec![
                account(),
                contact(),
                lead(),
                opportunity(),
                systemuser(),
                businessunit(),
            ]
            .into_iter()
            .chain(custom::custom_entities())
            .chain(sales::entities())
            .chain(controls::entities())
            .chain(sdk::entities())
            .collect(),
        };
        relations_additions(&mut schema);
        schema
    }
}

/// A deterministic metadata id from a name (FNV-1a, shaped as a GUID), so
/// that metadata ids are stable across runs.
pub fn stable_guid(name: &str) -> String {
    let mut h1: u64 = 0xcbf29ce484222325;
    let mut h2: u64 = 0x84222325cbf29ce4;
    for b in name.bytes() {
        h1 = (h1 ^ u64::from(b)).wrapping_mul(0x100000001b3);
        h2 = (h2 ^ u64::from(b))
            .wrapping_mul(0x100000001b3)
            .rotate_left(5);
    }
    let hex = format!("{h1:016x}{h2:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

fn schema_name_of(logical: &str) -> String {
    // Dataverse schema names are PascalCase; the emulator capitalises the
    // first letter, which is what the built-in names mostly look like.
    let mut c = logical.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn attr(entity: &str, logical: &str, display: &str, kind: AttributeKind) -> AttributeDef {
    AttributeDef {
        logical_name: logical.to_string(),
        schema_name: schema_name_of(logical),
        display_name: display.to_string(),
        metadata_id: stable_guid(&format!("attribute:{entity}.{logical}")),
        kind,
        read_only: false,
        is_custom: false,
    }
}

/// An entity's columns in order, one call a column: a table reads as its
/// list of (logical name, display name, type), and the columns many tables
/// share are written once ([`Columns::system`], [`Columns::stamps`]).
pub(super) struct Columns {
    entity: &'static str,
    list: Vec<AttributeDef>,
}

impl Columns {
    pub(super) fn of(entity: &'static str) -> Self {
        Columns {
            entity,
            list: Vec::new(),
        }
    }

    pub(super) fn col(mut self, logical: &str, display: &str, kind: AttributeKind) -> Self {
        self.list.push(attr(self.entity, logical, display, kind));
        self
    }

    pub(super) fn string(self, logical: &str, display: &str, max_length: u32) -> Self {
        self.col(logical, display, AttributeKind::String { max_length })
    }

    pub(super) fn memo(self, logical: &str, display: &str, max_length: u32) -> Self {
        self.col(logical, display, AttributeKind::Memo { max_length })
    }

    pub(super) fn integer(self, logical: &str, display: &str) -> Self {
        self.col(logical, display, AttributeKind::Integer)
    }

    pub(super) fn money(self, logical: &str, display: &str) -> Self {
        self.col(logical, display, AttributeKind::Money)
    }

    pub(super) fn datetime(self, logical: &str, display: &str) -> Self {
        self.col(logical, display, AttributeKind::DateTime)
    }

    pub(super) fn boolean(self, logical: &str, display: &str) -> Self {
        self.col(logical, display, AttributeKind::Boolean)
    }

    pub(super) fn guid(self, logical: &str, display: &str) -> Self {
        self.col(logical, display, AttributeKind::Uniqueidentifier)
    }

    pub(super) fn picklist(
        self,
        logical: &str,
        display: &str,
        options: &[(i64, &'static str)],
    ) -> Self {
        let options = options.to_vec();
        self.col(logical, display, AttributeKind::Picklist { options })
    }

    /// A lookup; each target is (entity, navigation property, relationship).
    pub(super) fn lookup(
        self,
        logical: &str,
        display: &str,
        targets: &[(&str, &str, &str)],
    ) -> Self {
        let targets = targets
            .iter()
            .map(|(entity, nav, rel)| LookupTarget {
                entity: entity.to_string(),
                navigation_property: nav.to_string(),
                relationship: rel.to_string(),
            })
            .collect();
        self.col(logical, display, AttributeKind::Lookup { targets })
    }

    /// A lookup to systemuser whose navigation property is its own name.
    fn user(self, logical: &str, display: &str, relationship: &str) -> Self {
        self.lookup(logical, display, &[("systemuser", logical, relationship)])
    }

    /// Marks the last column as set by the platform, never by a client.
    pub(super) fn read_only(mut self) -> Self {
        if let Some(a) = self.list.last_mut() {
            a.read_only = true;
        }
        self
    }

    /// Marks the last column as custom, with the schema name Dataverse
    /// gives it (the publisher prefix kept: `new_Document`).
    pub(super) fn custom(mut self, schema_name: &str) -> Self {
        if let Some(a) = self.list.last_mut() {
            a.is_custom = true;
            a.schema_name = schema_name.to_string();
        }
        self
    }

    /// `createdon`, `modifiedon` and `versionnumber`, read-only: what the
    /// tables without an owner (users, business units) carry.
    fn stamps(self) -> Self {
        self.datetime("createdon", "Created On")
            .read_only()
            .datetime("modifiedon", "Modified On")
            .read_only()
            .integer("versionnumber", "Version Number")
            .read_only()
    }

    /// Columns every user-owned table has; `prefix` names their
    /// relationships (`lk_<prefix>_createdby`, `user_<prefix>`).
    pub(super) fn system(self, prefix: &str) -> Self {
        let rel = |suffix: &str| format!("lk_{prefix}_{suffix}");
        let state = AttributeKind::State {
            options: vec![(0, "Active"), (1, "Inactive")],
        };
        self.datetime("createdon", "Created On")
            .read_only()
            .datetime("modifiedon", "Modified On")
            .read_only()
            .user("createdby", "Created By", &rel("createdby"))
            .read_only()
            .user("modifiedby", "Modified By", &rel("modifiedby"))
            .read_only()
            .user("ownerid", "Owner", &format!("user_{prefix}"))
            .integer("versionnumber", "Version Number")
            .read_only()
            .col("statecode", "Status", state)
            .picklist(
                "statuscode",
                "Status Reason",
                &[(1, "Active"), (2, "Inactive")],
            )
            .user(
                "createdonbehalfby",
                "Created By (Delegate)",
                &rel("createdonbehalfby"),
            )
            .read_only()
            .user(
                "modifiedonbehalfby",
                "Modified By (Delegate)",
                &rel("modifiedonbehalfby"),
            )
            .read_only()
    }

    pub(super) fn done(self) -> Vec<AttributeDef> {
        self.list
    }
}

/// What names an entity: everything of an [`EntityDef`] but its columns
/// and keys.
pub(super) struct Table {
    pub logical_name: &'static str,
    pub entity_set_name: &'static str,
    pub schema_name: &'static str,
    pub display_name: &'static str,
    pub display_collection_name: &'static str,
    pub description: &'static str,
    pub primary_name: &'static str,
    pub ownership: Ownership,
}

impl Table {
    /// The entity, with its primary key `<logical name>id` as the first
    /// column.
    pub(super) fn entity(
        self,
        mut attributes: Vec<AttributeDef>,
        keys: Vec<AlternateKey>,
    ) -> EntityDef {
        let logical_name = self.logical_name;
        let primary_id = format!("{logical_name}id");
        attributes.insert(
            0,
            attr(
                logical_name,
                &primary_id,
                self.display_name,
                AttributeKind::Uniqueidentifier,
            ),
        );
        EntityDef {
            logical_name,
            entity_set_name: self.entity_set_name,
            schema_name: self.schema_name,
            metadata_id: stable_guid(&format!("entity:{logical_name}")),
            display_name: self.display_name,
            display_collection_name: self.display_collection_name,
            description: self.description,
            primary_id,
            primary_name: self.primary_name,
            ownership: self.ownership,
            is_custom: false,
            attributes,
            keys,
            change_tracking_enabled: CHANGE_TRACKED_BY_DEFAULT.contains(&logical_name),
            table_type: "Standard",
        }
    }
}

fn account() -> EntityDef {
    let e = "account";
    let attrs = Columns::of(e)
        .string("name", "Account Name", 160)
        .string("accountnumber", "Account Number", 20)
        .string("telephone1", "Main Phone", 50)
        .string("emailaddress1", "Email", 100)
        .string("websiteurl", "Website", 200)
        .string("address1_city", "Address 1: City", 80)
        .string("address1_country", "Address 1: Country/Region", 80)
        .memo("description", "Description", 2000)
        .money("revenue", "Annual Revenue")
        .integer("numberofemployees", "Number of Employees")
        .boolean("creditonhold", "Credit Hold")
        .picklist(
            "accountcategorycode",
            "Category",
            &[(1, "Preferred Customer"), (2, "Standard")],
        )
        .picklist(
            "industrycode",
            "Industry",
            &[
                (1, "Accounting"),
                (2, "Agriculture and Non-petrol Natural Resource Extraction"),
                (3, "Broadcasting Printing and Publishing"),
                (4, "Brokers"),
                (5, "Building Supply Retail"),
                (6, "Business Services"),
                (7, "Consulting"),
                (8, "Consumer Services"),
            ],
        )
        .lookup(
            "primarycontactid",
            "Primary Contact",
            &[("contact", "primarycontactid", "account_primary_contact")],
        )
        .lookup(
            "parentaccountid",
            "Parent Account",
            &[("account", "parentaccountid", "account_parent_account")],
        )
        .system("account")
        .done();
    Table {
        logical_name: e,
        entity_set_name: "accounts",
        schema_name: "Account",
        display_name: "Account",
        display_collection_name: "Accounts",
        description: "Business that represents a customer or potential customer.",
        primary_name: "name",
        ownership: Ownership::UserOwned,
    }
    .entity(
        attrs,
        vec![AlternateKey {
            logical_name: "accountnumber_key",
            schema_name: "AccountNumberKey",
            display_name: "Account Number",
            attributes: vec!["accountnumber"],
        }],
    )
}

fn contact() -> EntityDef {
    let e = "contact";
    let attrs = Columns::of(e)
        .string("fullname", "Full Name", 160)
        .string("firstname", "First Name", 50)
        .string("lastname", "Last Name", 50)
        .string("emailaddress1", "Email", 100)
        .string("jobtitle", "Job Title", 100)
        .string("telephone1", "Business Phone", 50)
        .string("address1_city", "Address 1: City", 80)
        .datetime("birthdate", "Birthday")
        .memo("description", "Description", 2000)
        .picklist("gendercode", "Gender", &[(1, "Male"), (2, "Female")])
        .boolean("donotemail", "Do not allow Emails")
        .lookup(
            "parentcustomerid",
            "Company Name",
            &[
                (
                    "account",
                    "parentcustomerid_account",
                    "contact_customer_accounts",
                ),
                (
                    "contact",
                    "parentcustomerid_contact",
                    "contact_customer_contacts",
                ),
            ],
        )
        .system("contact")
        .done();
    Table {
        logical_name: e,
        entity_set_name: "contacts",
        schema_name: "Contact",
        display_name: "Contact",
        display_collection_name: "Contacts",
        description: "Person with whom a business unit has a relationship.",
        primary_name: "fullname",
        ownership: Ownership::UserOwned,
    }
    .entity(
        attrs,
        vec![
            AlternateKey {
                logical_name: "emailaddress1_key",
                schema_name: "EmailAddressKey",
                display_name: "Email",
                attributes: vec!["emailaddress1"],
            },
            AlternateKey {
                logical_name: "name_key",
                schema_name: "NameKey",
                display_name: "First and last name",
                attributes: vec!["firstname", "lastname"],
            },
        ],
    )
}

fn lead() -> EntityDef {
    let e = "lead";
    let attrs = Columns::of(e)
        .string("subject", "Topic", 300)
        .string("fullname", "Name", 160)
        .string("firstname", "First Name", 50)
        .string("lastname", "Last Name", 50)
        .string("companyname", "Company Name", 100)
        .string("emailaddress1", "Email", 100)
        .money("estimatedamount", "Est. Value")
        .picklist(
            "leadsourcecode",
            "Lead Source",
            &[
                (1, "Advertisement"),
                (2, "Employee Referral"),
                (3, "External Referral"),
                (4, "Partner"),
                (8, "Web"),
            ],
        )
        .lookup(
            "parentaccountid",
            "Parent Account for lead",
            &[("account", "parentaccountid", "account_originating_lead")],
        )
        .system("lead")
        .done();
    Table {
        logical_name: e,
        entity_set_name: "leads",
        schema_name: "Lead",
        display_name: "Lead",
        display_collection_name: "Leads",
        description: "Prospect or potential sales opportunity.",
        primary_name: "fullname",
        ownership: Ownership::UserOwned,
    }
    .entity(attrs, vec![])
}

fn opportunity() -> EntityDef {
    let e = "opportunity";
    let attrs = Columns::of(e)
        .string("name", "Topic", 300)
        .money("estimatedvalue", "Est. Revenue")
        .datetime("estimatedclosedate", "Est. Close Date")
        .integer("closeprobability", "Probability")
        .lookup(
            "customerid",
            "Potential Customer",
            &[
                (
                    "account",
                    "customerid_account",
                    "opportunity_customer_accounts",
                ),
                (
                    "contact",
                    "customerid_contact",
                    "opportunity_customer_contacts",
                ),
            ],
        )
        .lookup(
            "parentaccountid",
            "Account",
            &[("account", "parentaccountid", "opportunity_parent_account")],
        )
        .system("opportunity")
        .done();
    Table {
        logical_name: e,
        entity_set_name: "opportunities",
        schema_name: "Opportunity",
        display_name: "Opportunity",
        display_collection_name: "Opportunities",
        description: "Potential revenue-generating event, or sale to an account.",
        primary_name: "name",
        ownership: Ownership::UserOwned,
    }
    .entity(attrs, vec![])
}

fn systemuser() -> EntityDef {
    let e = "systemuser";
    let attrs = Columns::of(e)
        .string("fullname", "Full Name", 200)
        .string("domainname", "User Name", 1024)
        .string("internalemailaddress", "Primary Email", 100)
        .guid("azureactivedirectoryobjectid", "Azure AD Object ID")
        .guid("applicationid", "Application ID")
        .boolean("isdisabled", "Status")
        .lookup(
            "businessunitid",
            "Business Unit",
            &[(
                "businessunit",
                "businessunitid",
                "business_unit_system_users",
            )],
        )
        .stamps()
        .done();
    Table {
        logical_name: e,
        entity_set_name: "systemusers",
        schema_name: "SystemUser",
        display_name: "User",
        display_collection_name: "Users",
        description: "Person with access to the Microsoft CRM system and who owns objects in the Microsoft CRM database.",
        primary_name: "fullname",
        ownership: Ownership::BusinessOwned,
    }
    .entity(attrs, vec![])
}

fn businessunit() -> EntityDef {
    let e = "businessunit";
    let attrs = Columns::of(e)
        .string("name", "Name", 160)
        .lookup(
            "parentbusinessunitid",
            "Parent Business",
            &[(
                "businessunit",
                "parentbusinessunitid",
                "business_unit_parent_business_unit",
            )],
        )
        .stamps()
        .done();
    Table {
        logical_name: e,
        entity_set_name: "businessunits",
        schema_name: "BusinessUnit",
        display_name: "Business Unit",
        display_collection_name: "Business Units",
        description: "Business, division, or department in the Microsoft Dynamics 365 database.",
        primary_name: "name",
        ownership: Ownership::BusinessOwned,
    }
    .entity(attrs, vec![])
}

/// What the associate/executeAction/file-column work adds to the built-in
/// entities: the file column `new_document` (+ its `_name`) and the
/// `opendeals` rollup on account, and the real state and status options of
/// opportunity (Open/Won/Lost), which `WinOpportunity` needs.
fn relations_additions(schema: &mut Schema) {
    for e in &mut schema.entities {
        match e.logical_name {
            "account" => {
                // Custom columns: the publisher prefix, schema names as
                // Dataverse makes them. The file id and name are written
                // only by the upload (never through a JSON body).
                // 100 MB: the MaxSizeInKB of Learn's example ("Use file
                // column data", Check maximum file size; Dataverse's
                // default is 32 MB).
                let file = AttributeKind::File {
                    max_size_kb: 102_400,
                };
                let added = Columns::of("account")
                    .col("new_document", "Document", file)
                    .read_only()
                    .custom("new_Document")
                    .string("new_document_name", "Document Name", 260)
                    .read_only()
                    .custom("new_Document_Name")
                    .integer("opendeals", "Open Deals")
                    .read_only()
                    .datetime("opendeals_date", "Open Deals (Last Updated On)")
                    .read_only()
                    .integer("opendeals_state", "Open Deals (State)")
                    .read_only();
                e.attributes.extend(added.done());
                // Full-size images kept: UNCONFIRMED for the built-in
                // account.entityimage (each column's CanStoreFullImage).
                e.attributes.extend(entity_image("account", true));
            }
            "contact" => e.attributes.extend(entity_image("contact", false)),
            "opportunity" => {
                for a in &mut e.attributes {
                    match a.logical_name.as_str() {
                        "statecode" => {
                            a.kind = AttributeKind::State {
                                options: vec![(0, "Open"), (1, "Won"), (2, "Lost")],
                            }
                        }
                        "statuscode" => {
                            a.kind = AttributeKind::Picklist {
                                options: vec![
                                    (1, "In Progress"),
                                    (2, "On Hold"),
                                    (3, "Won"),
                                    (4, "Canceled"),
                                    (5, "Out-Sold"),
                                ],
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    schema.entities.push(intersect_accountleads());
}

/// The primary image column `entityimage` and its companions
/// `entityimageid`, `entityimage_timestamp` and `entityimage_url` ("Use
/// image column data", Download URL). Its MaxSizeInKB is 10240 (10 MB;
/// UNCONFIRMED for the built-in column, image columns allow up to 30 MB).
/// Setting image data through a record's JSON body, which Dataverse allows,
/// is not emulated: images arrive through the file protocol only, so the
/// columns are read-only here. The timestamp is a BigInt in Dataverse; the
/// emulator's nearest kind is Integer.
fn entity_image(entity: &'static str, can_store_full_image: bool) -> Vec<AttributeDef> {
    let image = AttributeKind::Image {
        max_size_kb: 10_240,
        can_store_full_image,
    };
    Columns::of(entity)
        .col("entityimage", "Default Image", image)
        .read_only()
        .guid("entityimageid", "Entity Image Id")
        .read_only()
        .integer("entityimage_timestamp", "Entity Image Timestamp")
        .read_only()
        .string("entityimage_url", "Entity Image URL", 200)
        .read_only()
        .done()
}

/// The intersect entity of `accountleads_association`: one row per
/// associated (account, lead) pair; readable as `accountleadscollection`.
fn intersect_accountleads() -> EntityDef {
    let e = "accountleads";
    let attrs = Columns::of(e)
        .guid("accountid", "Account")
        .guid("leadid", "Lead")
        .done();
    let mut def = Table {
        logical_name: e,
        entity_set_name: "accountleadscollection",
        schema_name: "AccountLeads",
        display_name: "AccountLeads",
        display_collection_name: "AccountLeads",
        description: "Intersect table of the accountleads_association many-to-many relationship.",
        primary_name: "accountleadid",
        ownership: Ownership::OrganizationOwned,
    }
    .entity(attrs, vec![]);
    // Table::entity names the key `accountleadsid`; Dataverse names it accountleadid.
    if let Some(pk) = def.attributes.first_mut() {
        pk.logical_name = "accountleadid".into();
        pk.schema_name = "AccountLeadId".into();
    }
    def.primary_id = "accountleadid".into();
    def
}
