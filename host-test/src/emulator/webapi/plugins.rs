//! The org's custom business logic, emulated, and the write controls that
//! steer it (issue #29): two registered plug-in steps and a Power Automate
//! flow on account Create, each of which writes a `new_auditentry` row, so
//! that bypassing them is visible; a duplicate detection rule on accounts;
//! elastic tables' session tokens.
//!
//! Microsoft Learn: "Bypass custom Dataverse logic" (headers, the
//! prvBypassCustomBusinessLogic privilege held by System Administrators,
//! three step ids by default); "Bypass Power Automate flows"
//! (`MSCRM.SuppressCallbackRegistrationExpanderJob`); "Detect duplicate data
//! using the Web API" and "Use optional parameters"
//! (`MSCRM.SuppressDuplicateDetection: false`, 412 with 0x80040333,
//! RetrieveDuplicates; a `tag` query option; `partitionId` unquoted); "Use elastic tables using code"
//! (`x-ms-session-token`, `MSCRM.SessionToken`).
//!
//! Simplifications: asynchronous steps and flows run at once, inside the
//! request, instead of as system jobs; the privilege is checked for the
//! user the request acts as (UNCONFIRMED which of caller and impersonated
//! user Dataverse checks).

use super::caller::{Caller, Logic};
use super::reply::{self, error};
use super::rows;
use crate::emulator::odata::ODataError;
use crate::emulator::odata::options::{Prefer, QueryOptions, query_pairs};
use crate::emulator::response::{odata_error, odata_json};
use crate::emulator::store::schema::EntityDef;
use crate::emulator::store::{Changes, Record};
use crate::emulator::{EmuRequest, EmuResponse, State};
use serde_json::{Map, Value, json};

/// The synchronous post-operation step "Contoso.Audit: Create of account".
pub const SYNC_AUDIT_STEP: &str = "4ab978b0-1d77-ec11-8d21-000d3a554d57";
/// The asynchronous step "Contoso.Audit.Async: Create of account".
pub const ASYNC_AUDIT_STEP: &str = "5bc089c1-2e88-ec11-8d21-000d3a554d57";
/// The flow "When an account is added, notify sales".
pub const ACCOUNT_FLOW: &str = "6cd19ad2-3f99-ec11-8d21-000d3a554d57";
/// prvBypassCustomBusinessLogic's id (the same in every environment).
const BYPASS_PRIVILEGE_ID: &str = "0ea552b0-a491-4470-9a1b-82068deccf66";
/// The org's BypassBusinessLogicExecutionStepIdsLimit (default three).
pub const STEP_ID_LIMIT: usize = 3;
/// Dataverse's code for a duplicate-detection hit.
pub const DUPLICATE_CODE: &str = "0x80040333";

/// A header given with a value (an empty one counts as not given).
fn header<'r>(request: &'r EmuRequest, name: &str) -> Option<&'r str> {
    reply::header(request, name).filter(|v| !v.is_empty())
}

/// Reads a request's write controls; refuses a bad value (400) and a bypass
/// by a user without the privilege (403) before anything is written.
pub fn logic_of(state: &State, request: &EmuRequest, user_id: &str) -> Result<Logic, EmuResponse> {
    let mut logic = Logic::default();
    if let Some(v) = header(request, "MSCRM.BypassBusinessLogicExecution") {
        for part in v.split(',').map(str::trim) {
            match part {
                "CustomSync" => logic.skip_sync = true,
                "CustomAsync" => logic.skip_async = true,
                // UNCONFIRMED: the code and message of a bad value.
                other => {
                    return Err(odata_error(
                        400,
                        "0x80040203",
                        &format!(
                            "Invalid value '{other}' for BypassBusinessLogicExecution: expected CustomSync, CustomAsync or CustomSync,CustomAsync."
                        ),
                    ));
                }
            }
        }
    }
    if header(request, "MSCRM.BypassCustomPluginExecution")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        logic.skip_sync = true;
    }
    if let Some(v) = header(request, "MSCRM.BypassBusinessLogicExecutionStepIds") {
        for part in v.trim_matches('"').split(',').map(str::trim) {
            match crate::emulator::store::normalize_guid(part) {
                Some(id) => logic.skip_steps.push(id),
                None => {
                    return Err(odata_error(
                        400,
                        "0x80040203",
                        &format!("'{part}' in BypassBusinessLogicExecutionStepIds is not a GUID."),
                    ));
                }
            }
        }
        if logic.skip_steps.len() > STEP_ID_LIMIT {
            // UNCONFIRMED: the code and message past the org's limit.
            return Err(odata_error(
                400,
                "0x80040203",
                &format!(
                    "BypassBusinessLogicExecutionStepIds lists {} steps; this organization allows {STEP_ID_LIMIT} (BypassBusinessLogicExecutionStepIdsLimit).",
                    logic.skip_steps.len()
                ),
            ));
        }
    }
    let bypasses = logic.skip_sync || logic.skip_async || !logic.skip_steps.is_empty();
    let admin = state
        .directory
        .user(user_id)
        .is_some_and(|u| u.system_administrator);
    if bypasses && !admin {
        // The shape of Dataverse's privilege errors (wire reference §7.2).
        return Err(odata_error(
            403,
            "0x80040220",
            &format!(
                "Principal user (Id={user_id}, type=8, roleCount=1, privilegeCount=0, accessMode=0), is missing prvBypassCustomBusinessLogic privilege (Id={BYPASS_PRIVILEGE_ID}) on OTC=None for entity 'None'."
            ),
        ));
    }
    logic.suppress_flows = header(request, "MSCRM.SuppressCallbackRegistrationExpanderJob")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    logic.detect_duplicates = header(request, "MSCRM.SuppressDuplicateDetection")
        .is_some_and(|v| v.eq_ignore_ascii_case("false"));
    if let Some(token) = header(request, "MSCRM.SessionToken") {
        logic.session_version = Some(parse_session_token(token).ok_or_else(|| {
            odata_error(
                400,
                "0x80040203",
                &format!("The session token '{token}' is not valid."),
            )
        })?);
    }
    // Most requests carry no tag: their query is not decoded for it.
    if request.uri().query().is_some_and(|q| q.contains("tag=")) {
        logic.tag = query_pairs(request.uri().query())
            .into_iter()
            .find(|(k, _)| k == "tag")
            .map(|(_, v)| v);
    }
    Ok(logic)
}

/// Runs the custom logic registered on `entity`'s Create, as the request
/// allows: each step or flow that runs writes an audit row.
pub fn after_create(state: &mut State, caller: &Caller, entity: &EntityDef, id: &str) {
    if entity.logical_name != "account" {
        return;
    }
    let logic = &caller.logic;
    let runs = [
        (SYNC_AUDIT_STEP, "plugin:sync", !logic.skip_sync),
        (ASYNC_AUDIT_STEP, "plugin:async", !logic.skip_async),
        (ACCOUNT_FLOW, "flow", !logic.suppress_flows),
    ];
    for (step, source, allowed) in runs {
        if !allowed || logic.skip_steps.iter().any(|s| s == step) {
            continue;
        }
        let mut values = Map::new();
        values.insert(
            "new_name".into(),
            json!(format!("{source}: Create of account {id}")),
        );
        values.insert("new_source".into(), json!(source));
        values.insert("new_stepid".into(), json!(step));
        values.insert("new_regardingid".into(), json!(id));
        if let Some(tag) = &logic.tag {
            values.insert("new_tag".into(), json!(tag));
        }
        let changes = Changes {
            values,
            lookups: Default::default(),
        };
        // An audit row that cannot be written is not the caller's failure.
        let _ = rows::create(state, caller, "new_auditentry", None, changes);
    }
}

/// The duplicate detection rule "Accounts with the same Account Name"
/// (case and surrounding spaces ignored): applied when the request asked for
/// detection. `except` is the record being updated.
pub fn check_duplicates(
    state: &State,
    caller: &Caller,
    entity: &EntityDef,
    changes: &Changes,
    except: Option<&str>,
) -> Result<(), ODataError> {
    if !caller.logic.detect_duplicates || entity.logical_name != "account" {
        return Ok(());
    }
    let Some(name) = changes.values.get("name").and_then(Value::as_str) else {
        return Ok(());
    };
    if matches_of(state, name, except).next().is_some() {
        // 412, as Learn's "Use optional parameters" (Suppress duplicate
        // detection) shows it today; the wire reference (§7.2) has 500 from
        // an older answer (MicrosoftDocs/powerapps-docs#1951).
        return Err(ODataError::new(
            412,
            DUPLICATE_CODE,
            "A record was not created or updated because a duplicate of the current record already exists.",
        ));
    }
    Ok(())
}

fn matches_of<'s>(
    state: &'s State,
    name: &str,
    except: Option<&'s str>,
) -> impl Iterator<Item = &'s Record> + 's {
    let wanted = name.trim().to_lowercase();
    state.store.records("account").filter(move |r| {
        Some(r.id.as_str()) != except
            && r.values
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.trim().to_lowercase() == wanted)
    })
}

/// `GET RetrieveDuplicates(BusinessEntity=@p1,MatchingEntityName=@p2,
/// PagingInfo=@p3)`: the records the rule matches for an entity not yet
/// written ("Detect duplicate data using the Web API").
pub fn retrieve_duplicates(
    state: &State,
    request: &EmuRequest,
    caller: &Caller,
    resource: &str,
) -> EmuResponse {
    if request.method() != http::Method::GET {
        return odata_error(
            405,
            "0x80060888",
            "RetrieveDuplicates is a function: use GET.",
        );
    }
    let pairs = query_pairs(request.uri().query());
    let inline = resource
        .split_once('(')
        .map(|(_, r)| r.split(')').next().unwrap_or(""))
        .unwrap_or("");
    let param = |name: &str| -> Option<String> {
        let value = inline
            .split(',')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim() == name)?
            .1
            .trim();
        match value.strip_prefix('@') {
            Some(alias) => pairs
                .iter()
                .find(|(k, _)| k.strip_prefix('@') == Some(alias))
                .map(|(_, v)| v.clone()),
            None => Some(value.to_string()),
        }
    };
    let entity: Option<Map<String, Value>> =
        param("BusinessEntity").and_then(|t| serde_json::from_str(&t).ok());
    let matching = param("MatchingEntityName").map(|m| m.trim_matches('\'').to_string());
    let (Some(entity), Some(matching)) = (entity, matching) else {
        return odata_error(
            400,
            "0x80060888",
            "Request message has unresolved parameters.",
        );
    };
    let Some(def) = state.store.schema().by_logical_name(&matching).cloned() else {
        return error(ODataError::new(
            404,
            "0x80040217",
            format!("The entity '{matching}' does not exist."),
        ));
    };
    let rows: Vec<Value> = match entity.get("name").and_then(Value::as_str) {
        Some(name) if matching == "account" => {
            let prefer = Prefer::default();
            let shaper = caller.shaper(state, &prefer);
            matches_of(state, name, None)
                .map(|r| Value::Object(shaper.record(&def, r, &QueryOptions::default())))
                .collect()
        }
        _ => Vec::new(),
    };
    let context = format!("{}$metadata#{}", caller.service_root, def.entity_set_name);
    odata_json(200, &json!({"@odata.context": context, "value": rows}))
}

/// An elastic table's session token for a write that left the store at
/// `version` (the documented shape, e.g. `240:8#144100870#7=-1`).
pub fn session_token(version: u64) -> String {
    format!("240:8#{version}#7=-1")
}

fn parse_session_token(token: &str) -> Option<u64> {
    token.split('#').nth(1)?.parse().ok()
}

/// Whether a read of an elastic-table row sees it: with the emulator's
/// replica lag on (`Config::elastic_read_lag_secs`), a row written less
/// than that long ago is seen only by a request whose session token is at
/// least as new as the write ("Use elastic tables using code": without the
/// token, a read may not include changes just made).
pub fn visible(state: &State, caller: &Caller, entity: &EntityDef, record: &Record) -> bool {
    let lag = state.config.elastic_read_lag_secs;
    if entity.table_type != "Elastic" || lag == 0 {
        return true;
    }
    if caller
        .logic
        .session_version
        .is_some_and(|v| v >= record.version)
    {
        return true;
    }
    let written = record
        .values
        .get("modifiedon")
        .and_then(Value::as_str)
        .and_then(crate::emulator::dates::parse_datetime)
        .unwrap_or(0);
    (state.now() as i64).saturating_sub(written) >= lag as i64
}
