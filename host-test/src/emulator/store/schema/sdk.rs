//! The plug-in registration tables a webhook registration writes through
//! the Web API: `serviceendpoint`, `sdkmessageprocessingstep`,
//! `sdkmessageprocessingstepimage`, and the catalogue tables it reads,
//! `sdkmessage` and `sdkmessagefilter` (seeded from [`MESSAGES`]).
//!
//! Columns and choices follow the table references on Microsoft Learn:
//! https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/serviceendpoint
//! (contract 8 = Webhook; authtype 4 = Webhook Key, 5 = Http Header,
//! 6 = Http Query String; `authvalue` is valid for create/update but not
//! for read, so it is no column here: `webapi/registration.rs` keeps it
//! aside), …/sdkmessageprocessingstep (stage 10/20/40, mode 0 sync /
//! 1 async, lookups `sdkmessageid`, `sdkmessagefilterid`, `eventhandler`
//! with navigation `eventhandler_serviceendpoint`, `impersonatinguserid`),
//! …/sdkmessageprocessingstepimage (imagetype 0 PreImage, 1 PostImage,
//! 2 Both; `attributes` comma-separated), …/sdkmessage and
//! …/sdkmessagefilter (`primaryobjecttypecode` the table's logical name).
//! Only the columns a registration uses are modelled.

use super::{Columns, EntityDef, Ownership, Table};

/// The messages the emulated environment knows, each with the tables it
/// has a `sdkmessagefilter` for (`None`: every table of the schema except
/// these registration tables). `new_SetCreditHold` is the custom API bound
/// to account (`webapi/operations.rs`); `WinOpportunity` an unbound action
/// (filter on `none`, as Dataverse lists unbound messages; UNCONFIRMED).
pub const MESSAGES: &[(&str, Option<&str>)] = &[
    ("Create", None),
    ("Update", None),
    ("Delete", None),
    ("Retrieve", None),
    ("RetrieveMultiple", None),
    ("Assign", None),
    ("new_SetCreditHold", Some("account")),
    ("WinOpportunity", Some("none")),
];

/// The registration tables' logical names (no filters are seeded for them).
pub const REGISTRATION_TABLES: [&str; 5] = [
    "serviceendpoint",
    "sdkmessageprocessingstep",
    "sdkmessageprocessingstepimage",
    "sdkmessage",
    "sdkmessagefilter",
];

/// The id of message `name`'s `sdkmessage` row (stable across runs).
pub fn message_id(name: &str) -> String {
    super::stable_guid(&format!("sdkmessage:{name}"))
}

/// The id of the `sdkmessagefilter` row of message `name` on `table`.
pub fn filter_id(name: &str, table: &str) -> String {
    super::stable_guid(&format!("sdkmessagefilter:{name}:{table}"))
}

pub fn entities() -> Vec<EntityDef> {
    vec![
        sdkmessage(),
        sdkmessagefilter(),
        serviceendpoint(),
        sdkmessageprocessingstep(),
        sdkmessageprocessingstepimage(),
    ]
}

fn table(
    logical_name: &'static str,
    entity_set_name: &'static str,
    schema_name: &'static str,
    display_name: &'static str,
    description: &'static str,
) -> Table {
    Table {
        logical_name,
        entity_set_name,
        schema_name,
        display_name,
        display_collection_name: display_name,
        description,
        primary_name: "name",
        ownership: Ownership::OrganizationOwned,
    }
}

fn sdkmessage() -> EntityDef {
    let attrs = Columns::of("sdkmessage")
        .string("name", "Name", 256)
        .stamps()
        .done();
    table(
        "sdkmessage",
        "sdkmessages",
        "SdkMessage",
        "Sdk Message",
        "Message that is supported by the SDK.",
    )
    .entity(attrs, Vec::new())
}

fn sdkmessagefilter() -> EntityDef {
    let attrs = Columns::of("sdkmessagefilter")
        .string("name", "Name", 256)
        .string("primaryobjecttypecode", "Primary Object Type Code", 64)
        .string("secondaryobjecttypecode", "Secondary Object Type Code", 64)
        .boolean(
            "iscustomprocessingstepallowed",
            "Custom Processing Step Allowed",
        )
        .lookup(
            "sdkmessageid",
            "SDK Message ID",
            &[(
                "sdkmessage",
                "sdkmessageid",
                "sdkmessageid_sdkmessagefilter",
            )],
        )
        .stamps()
        .done();
    table(
        "sdkmessagefilter",
        "sdkmessagefilters",
        "SdkMessageFilter",
        "Sdk Message Filter",
        "Filter that defines which SDK messages are valid for each type of entity.",
    )
    .entity(attrs, Vec::new())
}

fn serviceendpoint() -> EntityDef {
    let attrs = Columns::of("serviceendpoint")
        .string("name", "Name", 256)
        .memo("description", "Description", 2000)
        .picklist(
            "contract",
            "Contract",
            &[
                (1, "OneWay"),
                (2, "Queue"),
                (3, "Rest"),
                (4, "TwoWay"),
                (5, "Topic"),
                (6, "Queue (Persistent)"),
                (7, "Event Hub"),
                (8, "Webhook"),
                (9, "Event Grid"),
                (10, "Managed Data Lake"),
            ],
        )
        .picklist(
            "authtype",
            "Specifies mode of authentication with SB",
            &[
                (1, "ACS"),
                (2, "SAS Key"),
                (3, "SAS Token"),
                (4, "Webhook Key"),
                (5, "Http Header"),
                (6, "Http Query String"),
                (7, "Connection String"),
                (8, "Access Key"),
            ],
        )
        .string("url", "Url Address", 2000)
        .picklist(
            "messageformat",
            "Content type of the message",
            &[(1, "Binary XML"), (2, "Json"), (3, "Text XML")],
        )
        .picklist(
            "namespaceformat",
            "Format of Service Bus Namespace",
            &[(1, "Namespace Name"), (2, "Namespace Address")],
        )
        .picklist(
            "userclaim",
            "User Claim",
            &[(1, "None"), (2, "UserId"), (3, "UserInfo")],
        )
        .stamps()
        .done();
    table(
        "serviceendpoint",
        "serviceendpoints",
        "ServiceEndpoint",
        "Service Endpoint",
        "Service endpoint that can be contacted.",
    )
    .entity(attrs, Vec::new())
}

fn sdkmessageprocessingstep() -> EntityDef {
    let attrs = Columns::of("sdkmessageprocessingstep")
        .string("name", "Name", 256)
        .memo("description", "Description", 256)
        .picklist(
            "stage",
            "Execution Stage",
            &[
                (5, "Initial Pre-operation (For internal use only)"),
                (10, "Pre-validation"),
                (
                    15,
                    "Internal Pre-operation Before External Plugins (For internal use only)",
                ),
                (20, "Pre-operation"),
                (
                    25,
                    "Internal Pre-operation After External Plugins (For internal use only)",
                ),
                (30, "Main Operation (For internal use only)"),
                (
                    35,
                    "Internal Post-operation Before External Plugins (For internal use only)",
                ),
                (40, "Post-operation"),
                (
                    45,
                    "Internal Post-operation After External Plugins (For internal use only)",
                ),
                (50, "Post-operation (Deprecated)"),
                (55, "Final Post-operation (For internal use only)"),
            ],
        )
        .picklist(
            "mode",
            "Execution Mode",
            &[(0, "Synchronous"), (1, "Asynchronous")],
        )
        .integer("rank", "Execution Order")
        .picklist(
            "supporteddeployment",
            "Deployment",
            &[
                (0, "Server Only"),
                (1, "Microsoft Dynamics 365 Client for Outlook Only"),
                (2, "Both"),
            ],
        )
        .memo("filteringattributes", "Filtering Attributes", 100000)
        .boolean("asyncautodelete", "Asynchronous Automatic Delete")
        .memo("configuration", "Configuration", 1073741823)
        .lookup(
            "sdkmessageid",
            "SDK Message",
            &[(
                "sdkmessage",
                "sdkmessageid",
                "sdkmessageid_sdkmessageprocessingstep",
            )],
        )
        .lookup(
            "sdkmessagefilterid",
            "SdkMessage Filter",
            &[(
                "sdkmessagefilter",
                "sdkmessagefilterid",
                "sdkmessagefilterid_sdkmessageprocessingstep",
            )],
        )
        .lookup(
            "eventhandler",
            "Event Handler",
            &[(
                "serviceendpoint",
                "eventhandler_serviceendpoint",
                "serviceendpoint_sdkmessageprocessingstep",
            )],
        )
        .lookup(
            "impersonatinguserid",
            "Impersonating User",
            &[(
                "systemuser",
                "impersonatinguserid",
                "impersonatinguserid_sdkmessageprocessingstep",
            )],
        )
        .stamps()
        .done();
    table(
        "sdkmessageprocessingstep",
        "sdkmessageprocessingsteps",
        "SdkMessageProcessingStep",
        "Sdk Message Processing Step",
        "Stage in the execution pipeline that a plug-in or a service endpoint is to execute.",
    )
    .entity(attrs, Vec::new())
}

fn sdkmessageprocessingstepimage() -> EntityDef {
    let attrs = Columns::of("sdkmessageprocessingstepimage")
        .string("name", "Name", 256)
        .string("entityalias", "Entity Alias", 256)
        .picklist(
            "imagetype",
            "Image Type",
            &[(0, "PreImage"), (1, "PostImage"), (2, "Both")],
        )
        .string("messagepropertyname", "Message Property Name", 256)
        .memo("attributes", "Attributes", 100000)
        .memo("description", "Description", 256)
        .lookup(
            "sdkmessageprocessingstepid",
            "SDK Message Processing Step",
            &[(
                "sdkmessageprocessingstep",
                "sdkmessageprocessingstepid",
                "sdkmessageprocessingstepid_sdkmessageprocessingstepimage",
            )],
        )
        .stamps()
        .done();
    table(
        "sdkmessageprocessingstepimage",
        "sdkmessageprocessingstepimages",
        "SdkMessageProcessingStepImage",
        "Sdk Message Processing Step Image",
        "Copy of an entity's attributes before or after the core system operation.",
    )
    .entity(attrs, Vec::new())
}
