//! The write-control inputs ([`crate::controls`]) as catalog definitions,
//! defined once for every action that takes them, and what an action needs
//! beyond headers: the table's metadata for `partitionId` (only elastic
//! tables have partitions) and the records a duplicate matched.

use crate::catalog::def::{InputDef, InputType, input};
use crate::client::Session;
use crate::controls::{self, Controls};
use crate::error::{ConnectorError, Result};
use crate::http::{Method, Response};
use crate::inputs::Inputs;
use crate::types::{EntitySet, encode_query, string_literal};
use serde_json::{Map, Value, json};

/// The inputs of `keys` ([`controls::WRITE_KEYS`],
/// [`controls::READ_KEYS`]), in that order.
pub fn inputs(keys: &[&str]) -> Vec<InputDef> {
    keys.iter().filter_map(|k| definition(k)).collect()
}

fn definition(key: &str) -> Option<InputDef> {
    Some(match key {
        controls::IMPERSONATE_USER_ID => input(
            controls::IMPERSONATE_USER_ID,
            "Impersonate User ID",
            InputType::String,
            "Run the request as this user (GUID). By default it is the user's Microsoft Entra object id, sent as CallerObjectId; set Impersonation Header to MSCRMCallerID to give a systemuserid instead. The connection's user needs the Act on Behalf of Another User privilege.",
        ),
        controls::IMPERSONATION_HEADER => {
            let text = "Which id Impersonate User ID is: CallerObjectId (the Entra object id, Microsoft's recommended header) or MSCRMCallerID (the systemuserid).";
            input(
                controls::IMPERSONATION_HEADER,
                "Impersonation Header",
                InputType::String,
                text,
            )
            .default(json!("CallerObjectId"))
            .choices(&["CallerObjectId", "MSCRMCallerID"])
        }
        controls::BYPASS_BUSINESS_LOGIC => {
            let text = "Skip the org's custom plug-ins and workflows: CustomSync (synchronous), CustomAsync (asynchronous) or CustomSync,CustomAsync. Needs the prvBypassCustomBusinessLogic privilege (System Administrators). Microsoft's own logic always runs; flows are skipped with Suppress Flow Triggers.";
            input(
                controls::BYPASS_BUSINESS_LOGIC,
                "Bypass Business Logic",
                InputType::String,
                text,
            )
            .choices(&["CustomSync", "CustomAsync", "CustomSync,CustomAsync"])
        }
        controls::BYPASS_STEP_IDS => input(
            controls::BYPASS_STEP_IDS,
            "Bypass Plug-in Steps",
            InputType::List,
            "Skip only these registered plug-in steps (sdkmessageprocessingstepid GUIDs). Three by default per org, ten at most; same privilege as Bypass Business Logic.",
        ),
        controls::SUPPRESS_FLOW_TRIGGERS => input(
            controls::SUPPRESS_FLOW_TRIGGERS,
            "Suppress Flow Triggers",
            InputType::Boolean,
            "Do not start the Power Automate flows this write would trigger (MSCRM.SuppressCallbackRegistrationExpanderJob), e.g. during a migration.",
        ),
        controls::DUPLICATE_DETECTION => input(
            controls::DUPLICATE_DETECTION,
            "Duplicate Detection",
            InputType::Boolean,
            "Apply the org's duplicate detection rules (off by default for the Web API): a write that matches an existing record is refused as a conflict naming it.",
        ),
        controls::PARTITION_ID => input(
            controls::PARTITION_ID,
            "Partition ID",
            InputType::String,
            "Elastic tables only: the record's partitionid (with its GUID it identifies the record). Refused on standard tables.",
        ),
        controls::SESSION_TOKEN => input(
            controls::SESSION_TOKEN,
            "Session Token",
            InputType::String,
            "Elastic tables: the sessionToken an earlier write returned, so that this read sees that write (session consistency).",
        ),
        controls::TAG => input(
            controls::TAG,
            "Tag",
            InputType::String,
            "A value plug-ins read as the shared variable 'tag' (the tag query option).",
        ),
        _ => return None,
    })
}

/// The controls an action's inputs give: `keys` are the ones it declares
/// (as given to [`inputs`]).
pub fn of(inputs: &Inputs, keys: &[&str]) -> Result<Controls> {
    Controls::parse(
        &|key| {
            if !keys.contains(&key) {
                return Ok(None);
            }
            Ok(inputs.get(key)?.and_then(controls::text_of))
        },
        &str::to_string,
    )
}

/// What a write's answer says beyond the record: the elastic table's
/// session token (`x-ms-session-token`), added to `out` when present.
pub fn add_session_token(out: &mut Value, response: &Response) {
    if let (Some(token), Some(map)) = (response.header("x-ms-session-token"), out.as_object_mut()) {
        map.insert("sessionToken".into(), Value::String(token.to_string()));
    }
}

/// A table's metadata: what partitions and duplicates need.
pub struct Table {
    pub logical_name: String,
    pub primary_id: String,
}

/// The table behind `set`, looked up once (`EntityDefinitions` filtered by
/// EntitySetName). `None` when metadata cannot be read.
pub fn table(session: &mut Session<'_>, set: &EntitySet) -> Option<(Table, String)> {
    let query = format!(
        "EntityDefinitions?$select=LogicalName,PrimaryIdAttribute,TableType&$filter={}",
        encode_query(&format!(
            "EntitySetName eq {}",
            string_literal(set.as_str())
        ))
    );
    let request = session.request(Method::Get, &query).ok()?;
    let body = session.send_json(request).ok()?;
    let row = body.get("value")?.as_array()?.first()?;
    let text = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_string);
    Some((
        Table {
            logical_name: text("LogicalName")?,
            primary_id: text("PrimaryIdAttribute")?,
        },
        text("TableType").unwrap_or_else(|| "Standard".into()),
    ))
}

/// With a `partitionId`: the elastic table behind `set` ("Use elastic
/// tables using code": only elastic tables have partitions). A standard
/// table is refused, naming the input, before anything is written.
pub fn elastic(session: &mut Session<'_>, set: &EntitySet, c: &Controls) -> Result<Option<Table>> {
    if c.partition_id.is_none() {
        return Ok(None);
    }
    match table(session, set) {
        Some((t, kind)) if kind.eq_ignore_ascii_case("Elastic") => Ok(Some(t)),
        Some((_, kind)) => Err(ConnectorError::invalid_input(
            c.partition_input.clone(),
            format!("'{set}' is a {kind} table; partitionId applies to elastic tables only"),
        )),
        None => Err(ConnectorError::invalid_input(
            c.partition_input.clone(),
            format!("could not read the metadata of '{set}' to check that it is an elastic table"),
        )),
    }
}

/// After a duplicate-detection refusal: the ids of the records the write
/// matched (RetrieveDuplicates, "Detect duplicate data using the Web API"),
/// in the error's hint. Best effort: the error stands as it is without them.
pub fn name_duplicates(
    session: &mut Session<'_>,
    set: &EntitySet,
    body: &Map<String, Value>,
    e: ConnectorError,
) -> ConnectorError {
    if !e
        .code
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case(controls::DUPLICATE_CODE))
    {
        return e;
    }
    let Some((t, _)) = table(session, set) else {
        return e;
    };
    let mut entity = body.clone();
    entity.insert(
        "@odata.type".into(),
        Value::String(format!("Microsoft.Dynamics.CRM.{}", t.logical_name)),
    );
    let url = format!(
        "RetrieveDuplicates(BusinessEntity=@p1,MatchingEntityName=@p2,PagingInfo=@p3)?@p1={}&@p2={}&@p3={}",
        encode_query(&Value::Object(entity).to_string()),
        encode_query(&string_literal(&t.logical_name)),
        encode_query(r#"{"PageNumber":1,"Count":10}"#)
    );
    let Some(found) = session
        .request(Method::Get, &url)
        .ok()
        .and_then(|r| session.send_json(r).ok())
    else {
        return e;
    };
    let ids: Vec<&str> = found
        .get("value")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r.get(&t.primary_id).and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        return e;
    }
    let hint = format!("It duplicates {} {}.", t.logical_name, ids.join(", "));
    e.with_hint(hint)
}
