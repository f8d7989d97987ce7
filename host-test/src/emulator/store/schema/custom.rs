//! Custom (publisher-prefixed) entities appended to the built-in schema, so
//! that metadata reads can show `IsCustomEntity`, an intersect table and
//! every attribute type on a custom table: `new_project` (user-owned, one
//! column of each type) and `new_project_contact`, the intersect table of
//! the `new_project_contact` many-to-many relationship.

use super::{AttributeKind, Columns, EntityDef, Ownership, Table};

/// Intersect tables (`IsIntersect`): the hidden tables behind many-to-many
/// relationships. Not valid for Advanced Find and never "top level".
pub const INTERSECT_ENTITIES: &[&str] = &["new_project_contact"];

/// Activity tables (`IsActivity`) the emulator may carry.
pub const ACTIVITY_ENTITIES: &[&str] = &[
    "activitypointer",
    "email",
    "phonecall",
    "task",
    "appointment",
];

pub fn custom_entities() -> Vec<EntityDef> {
    vec![new_project(), new_project_contact()]
}

fn custom(mut e: EntityDef) -> EntityDef {
    e.is_custom = true;
    for a in &mut e.attributes {
        a.is_custom = a.logical_name.starts_with("new_");
    }
    e
}

fn new_project() -> EntityDef {
    let e = "new_project";
    let stages = [
        (100000000, "Planned"),
        (100000001, "Running"),
        (100000002, "Done"),
    ];
    let attrs = Columns::of(e)
        .string("new_name", "Project Name", 100)
        .custom("new_Name")
        .memo("new_description", "Description", 4000)
        .custom("new_Description")
        .money("new_budget", "Budget")
        .custom("new_Budget")
        .integer("new_hours", "Planned Hours")
        .custom("new_Hours")
        .col("new_rate", "Hourly Rate", AttributeKind::Decimal)
        .custom("new_Rate")
        .datetime("new_startdate", "Start Date")
        .custom("new_StartDate")
        .boolean("new_isbillable", "Billable")
        .custom("new_IsBillable")
        .picklist("new_stage", "Stage", &stages)
        .custom("new_Stage")
        .lookup(
            "new_accountid",
            "Customer Account",
            &[("account", "new_accountid", "new_account_new_project")],
        )
        .custom("new_AccountId")
        .guid("new_externalid", "External ID")
        .custom("new_ExternalId")
        .system("new_project")
        .done();
    let mut def = Table {
        logical_name: e,
        entity_set_name: "new_projects",
        schema_name: "new_Project",
        display_name: "Project",
        display_collection_name: "Projects",
        description: "A customer project (custom table).",
        primary_name: "new_name",
        ownership: Ownership::UserOwned,
    }
    .entity(attrs, vec![]);
    if let Some(id) = def.attributes.first_mut() {
        id.schema_name = "new_ProjectId".into();
    }
    custom(def)
}

fn new_project_contact() -> EntityDef {
    let e = "new_project_contact";
    let attrs = Columns::of(e)
        .guid("new_projectid", "Project")
        .guid("contactid", "Contact")
        .done();
    let def = Table {
        logical_name: e,
        entity_set_name: "new_project_contactset",
        schema_name: "new_project_contact",
        display_name: "",
        display_collection_name: "",
        description: "",
        primary_name: "",
        ownership: Ownership::OrganizationOwned,
    }
    .entity(attrs, vec![]);
    custom(def)
}
