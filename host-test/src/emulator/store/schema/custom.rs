//! Custom (publisher-prefixed) entities appended to the built-in schema, so
//! that metadata reads can show `IsCustomEntity`, an intersect table and
//! every attribute type on a custom table: `new_project` (user-owned, one
//! column of each type) and `new_project_contact`, the intersect table of
//! the `new_project_contact` many-to-many relationship.

use super::{AttributeKind, EntityDef, Ownership, attr, entity, lookup, string, system_columns};

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
    let mut attrs = vec![
        attr(e, "new_name", "Project Name", string(100)),
        attr(
            e,
            "new_description",
            "Description",
            AttributeKind::Memo { max_length: 4000 },
        ),
        attr(e, "new_budget", "Budget", AttributeKind::Money),
        attr(e, "new_hours", "Planned Hours", AttributeKind::Integer),
        attr(e, "new_rate", "Hourly Rate", AttributeKind::Decimal),
        attr(e, "new_startdate", "Start Date", AttributeKind::DateTime),
        attr(e, "new_isbillable", "Billable", AttributeKind::Boolean),
        attr(
            e,
            "new_stage",
            "Stage",
            AttributeKind::Picklist {
                options: vec![
                    (100000000, "Planned"),
                    (100000001, "Running"),
                    (100000002, "Done"),
                ],
            },
        ),
        attr(
            e,
            "new_accountid",
            "Customer Account",
            lookup(&[("account", "new_accountid", "new_account_new_project")]),
        ),
        attr(
            e,
            "new_externalid",
            "External ID",
            AttributeKind::Uniqueidentifier,
        ),
    ];
    for a in &mut attrs {
        a.schema_name = match a.logical_name.as_str() {
            "new_name" => "new_Name".into(),
            "new_description" => "new_Description".into(),
            "new_budget" => "new_Budget".into(),
            "new_hours" => "new_Hours".into(),
            "new_rate" => "new_Rate".into(),
            "new_startdate" => "new_StartDate".into(),
            "new_isbillable" => "new_IsBillable".into(),
            "new_stage" => "new_Stage".into(),
            "new_accountid" => "new_AccountId".into(),
            "new_externalid" => "new_ExternalId".into(),
            _ => a.schema_name.clone(),
        };
    }
    attrs.extend(system_columns(e, "new_project"));
    let mut def = entity(
        e,
        "new_projects",
        "new_Project",
        "Project",
        "Projects",
        "A customer project (custom table).",
        "new_name",
        Ownership::UserOwned,
        attrs,
        vec![],
    );
    if let Some(id) = def.attributes.first_mut() {
        id.schema_name = "new_ProjectId".into();
    }
    custom(def)
}

fn new_project_contact() -> EntityDef {
    let e = "new_project_contact";
    let attrs = vec![
        attr(
            e,
            "new_projectid",
            "Project",
            AttributeKind::Uniqueidentifier,
        ),
        attr(e, "contactid", "Contact", AttributeKind::Uniqueidentifier),
    ];
    let def = entity(
        e,
        "new_project_contactset",
        "new_project_contact",
        "",
        "",
        "",
        "",
        Ownership::OrganizationOwned,
        attrs,
        vec![],
    );
    custom(def)
}
