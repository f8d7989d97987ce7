//! Tables behind the write controls (issue #29): an elastic table with
//! partitions, the background operations table, and the audit table the
//! emulated plug-in steps and flow write to (`webapi/plugins.rs`).

use super::{AlternateKey, Columns, EntityDef, Ownership, Table};

pub fn entities() -> Vec<EntityDef> {
    vec![sensor_data(), background_operation(), audit_entry()]
}

/// `contoso_sensordata`, the elastic table of Microsoft Learn's "Use
/// elastic tables using code": `partitionid` and `ttlinseconds` columns,
/// and the `KeyForNoSqlEntityWithPKPartitionId` alternate key (the primary
/// key and partitionid) every elastic table has ("Create elastic tables",
/// Alternate keys).
fn sensor_data() -> EntityDef {
    let e = "contoso_sensordata";
    let attrs = Columns::of(e)
        .string("contoso_deviceid", "Device ID", 100)
        .string("contoso_sensortype", "Sensor Type", 100)
        .integer("contoso_value", "Value")
        .string("partitionid", "Partition Id", 100)
        .integer("ttlinseconds", "Time to live")
        .system("contoso_sensordata")
        .done();
    let keys = vec![AlternateKey {
        logical_name: "KeyForNoSqlEntityWithPKPartitionId",
        schema_name: "KeyForNoSqlEntityWithPKPartitionId",
        display_name: "Primary key with partition id",
        attributes: vec!["contoso_sensordataid", "partitionid"],
    }];
    let mut def = Table {
        logical_name: e,
        entity_set_name: "contoso_sensordatas",
        schema_name: "contoso_SensorData",
        display_name: "Sensor Data",
        display_collection_name: "Sensor Data",
        description: "Readings from devices (elastic table, partitioned by device).",
        primary_name: "contoso_deviceid",
        ownership: Ownership::UserOwned,
    }
    .entity(attrs, keys);
    def.is_custom = true;
    def.table_type = "Elastic";
    def
}

/// `backgroundoperation` ("Background operations", Background operations
/// table): state and status codes, input and output parameters as JSON
/// text of `[{Key, Value}]`.
fn background_operation() -> EntityDef {
    let e = "backgroundoperation";
    let attrs = Columns::of(e)
        .string("name", "Name", 400)
        .string("displayname", "DisplayName", 400)
        .picklist(
            "backgroundoperationstatecode",
            "Status",
            &[(0, "Ready"), (2, "Locked"), (3, "Completed")],
        )
        .picklist(
            "backgroundoperationstatuscode",
            "Status Reason",
            &[
                (0, "Waiting For Resources"),
                (20, "In Progress"),
                (22, "Canceling"),
                (30, "Succeeded"),
                (31, "Failed"),
                (32, "Canceled"),
            ],
        )
        .memo("inputparameters", "Input Parameters", 1_048_576)
        .memo("outputparameters", "Output Parameters", 1_048_576)
        .datetime("starttime", "Start Time")
        .datetime("endtime", "End Time")
        .integer("retrycount", "Retry Count")
        .integer("errorcode", "Error Code")
        .memo("errormessage", "Error Message", 100_000)
        .string("runas", "Run As", 100)
        .integer("ttlinseconds", "Time to live")
        .system("backgroundoperation")
        .done();
    Table {
        logical_name: e,
        entity_set_name: "backgroundoperations",
        schema_name: "BackgroundOperation",
        display_name: "Background Operation",
        display_collection_name: "Background Operations",
        description: "Requests Dataverse processes asynchronously.",
        primary_name: "name",
        ownership: Ownership::UserOwned,
    }
    .entity(attrs, vec![])
}

/// `new_auditentry`: one row per plug-in step or flow run the emulator
/// fired (`webapi/plugins.rs`), so tests and users can see which custom
/// logic a write ran and which it bypassed.
fn audit_entry() -> EntityDef {
    let e = "new_auditentry";
    let attrs = Columns::of(e)
        .string("new_name", "Name", 200)
        .string("new_source", "Source", 100)
        .string("new_stepid", "Step ID", 100)
        .string("new_regardingid", "Regarding Record", 100)
        .string("new_tag", "Tag", 200)
        .system("new_auditentry")
        .done();
    let mut def = Table {
        logical_name: e,
        entity_set_name: "new_auditentries",
        schema_name: "new_AuditEntry",
        display_name: "Audit Entry",
        display_collection_name: "Audit Entries",
        description: "What the org's custom logic did (written by emulated plug-in steps and flows).",
        primary_name: "new_name",
        ownership: Ownership::UserOwned,
    }
    .entity(attrs, vec![]);
    def.is_custom = true;
    def
}
