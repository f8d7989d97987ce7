//! Write controls: how one request runs — as which user, with or without
//! the org's custom logic and flows, with duplicate detection, in which
//! elastic-table partition, with which shared-variable tag. One parser for
//! action inputs and for `runBatch` items, so that the keys, the checks and
//! the headers they become are the same everywhere.
//!
//! Microsoft Learn sources: "Impersonate another user using the Web API"
//! (`CallerObjectId`, `MSCRMCallerID`); "Bypass custom Dataverse logic"
//! (`MSCRM.BypassBusinessLogicExecution`: `CustomSync`, `CustomAsync` or
//! both, privilege `prvBypassCustomBusinessLogic`;
//! `MSCRM.BypassBusinessLogicExecutionStepIds`, three steps by default, at
//! most ten recommended; `MSCRM.SuppressCallbackRegistrationExpanderJob`
//! for flows); "Detect duplicate data using the Web API"
//! (`MSCRM.SuppressDuplicateDetection: false`); "Use elastic tables using
//! code" (`partitionId` query parameter on GET and DELETE,
//! `x-ms-session-token` on write answers, `MSCRM.SessionToken` on reads);
//! "Add a shared variable from the Web API" (`tag` query parameter).

use crate::error::{ConnectorError, Result};
use crate::types::{Guid, encode_query};

pub const IMPERSONATE_USER_ID: &str = "impersonateUserId";
pub const IMPERSONATION_HEADER: &str = "impersonationHeader";
pub const BYPASS_BUSINESS_LOGIC: &str = "bypassBusinessLogic";
pub const BYPASS_STEP_IDS: &str = "bypassStepIds";
pub const SUPPRESS_FLOW_TRIGGERS: &str = "suppressFlowTriggers";
pub const DUPLICATE_DETECTION: &str = "duplicateDetection";
pub const PARTITION_ID: &str = "partitionId";
pub const SESSION_TOKEN: &str = "sessionToken";
pub const TAG: &str = "tag";

/// The controls a write takes (and each `runBatch` item).
pub const WRITE_KEYS: &[&str] = &[
    IMPERSONATE_USER_ID,
    IMPERSONATION_HEADER,
    BYPASS_BUSINESS_LOGIC,
    BYPASS_STEP_IDS,
    SUPPRESS_FLOW_TRIGGERS,
    DUPLICATE_DETECTION,
    PARTITION_ID,
    TAG,
];

/// The controls an operation takes that is not a row of one table
/// (associate, disassociate, actions): no partition.
pub const OPERATION_KEYS: &[&str] = &[
    IMPERSONATE_USER_ID,
    IMPERSONATION_HEADER,
    BYPASS_BUSINESS_LOGIC,
    BYPASS_STEP_IDS,
    SUPPRESS_FLOW_TRIGGERS,
    DUPLICATE_DETECTION,
    TAG,
];

/// The controls a read takes.
pub const READ_KEYS: &[&str] = &[
    IMPERSONATE_USER_ID,
    IMPERSONATION_HEADER,
    PARTITION_ID,
    SESSION_TOKEN,
];

/// The Dataverse code of a duplicate-detection refusal ("Use optional
/// parameters" shows it with 412; the wire reference, §7.2, with 500, as
/// older answers had it): recognised by the code, whatever the status.
pub const DUPLICATE_CODE: &str = "0x80040333";
/// The documented ceiling on `bypassStepIds` (the org's default is three;
/// `BypassBusinessLogicExecutionStepIdsLimit` raises it, ten at most
/// recommended): more is refused here, fewer past the org's limit by
/// Dataverse.
pub const MAX_STEP_IDS: usize = 10;

/// A request's controls, checked; empty when none was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Controls {
    pub headers: Vec<(&'static str, String)>,
    pub partition_id: Option<String>,
    pub tag: Option<String>,
    /// Which input named `partitionId` (`partitionId`, or
    /// `batchActions[3].partitionId`), for errors found later.
    pub partition_input: String,
    bypass: bool,
    impersonated: bool,
    duplicates: bool,
}

impl Controls {
    /// Reads the controls from `get` (a key → its value as text: lists
    /// comma-separated, booleans `true`/`false`; `None` when absent).
    /// `name` turns a key into the input name errors carry.
    // Size: `dyn`, not generic; the three callers would each get a copy.
    pub fn parse(
        get: &dyn Fn(&'static str) -> Result<Option<String>>,
        name: &dyn Fn(&str) -> String,
    ) -> Result<Controls> {
        let bad = |key: &str, message: String| ConnectorError::invalid_input(name(key), message);
        let mut c = Controls::default();
        let given = |key: &'static str| -> Result<Option<String>> {
            Ok(get(key)?
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()))
        };
        if let Some(user) = given(IMPERSONATE_USER_ID)? {
            let id = Guid::parse(&user)
                .ok_or_else(|| bad(IMPERSONATE_USER_ID, format!("'{user}' is not a GUID")))?;
            let header = match given(IMPERSONATION_HEADER)?.as_deref() {
                None | Some("CallerObjectId") => "CallerObjectId",
                Some("MSCRMCallerID") => "MSCRMCallerID",
                Some(other) => {
                    return Err(bad(
                        IMPERSONATION_HEADER,
                        format!("'{other}' is not CallerObjectId or MSCRMCallerID"),
                    ));
                }
            };
            c.headers.push((header, id.into_string()));
            c.impersonated = true;
        }
        if let Some(text) = given(BYPASS_BUSINESS_LOGIC)? {
            let (mut sync, mut r#async) = (false, false);
            for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                if part.eq_ignore_ascii_case("CustomSync") {
                    sync = true;
                } else if part.eq_ignore_ascii_case("CustomAsync") {
                    r#async = true;
                } else {
                    return Err(bad(
                        BYPASS_BUSINESS_LOGIC,
                        format!(
                            "'{part}' is not CustomSync or CustomAsync (both: CustomSync,CustomAsync)"
                        ),
                    ));
                }
            }
            let value = match (sync, r#async) {
                (true, true) => "CustomSync,CustomAsync",
                (true, false) => "CustomSync",
                (false, true) => "CustomAsync",
                (false, false) => "",
            };
            if !value.is_empty() {
                c.headers
                    .push(("MSCRM.BypassBusinessLogicExecution", value.to_string()));
                c.bypass = true;
            }
        }
        if let Some(text) = given(BYPASS_STEP_IDS)? {
            let mut ids = Vec::new();
            for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let id = Guid::parse(part).ok_or_else(|| {
                    bad(BYPASS_STEP_IDS, format!("'{part}' is not a step id (GUID)"))
                })?;
                ids.push(id.into_string());
            }
            if ids.len() > MAX_STEP_IDS {
                return Err(bad(
                    BYPASS_STEP_IDS,
                    format!(
                        "{} step ids; Dataverse takes at most {MAX_STEP_IDS} (three unless the org raised BypassBusinessLogicExecutionStepIdsLimit)",
                        ids.len()
                    ),
                ));
            }
            if !ids.is_empty() {
                c.headers
                    .push(("MSCRM.BypassBusinessLogicExecutionStepIds", ids.join(",")));
                c.bypass = true;
            }
        }
        if flag(&given, &bad, SUPPRESS_FLOW_TRIGGERS)? {
            c.headers.push((
                "MSCRM.SuppressCallbackRegistrationExpanderJob",
                "true".into(),
            ));
        }
        if flag(&given, &bad, DUPLICATE_DETECTION)? {
            c.headers
                .push(("MSCRM.SuppressDuplicateDetection", "false".into()));
            c.duplicates = true;
        }
        if let Some(token) = given(SESSION_TOKEN)? {
            if token.bytes().any(|b| b.is_ascii_control()) {
                return Err(bad(SESSION_TOKEN, "contains a control character".into()));
            }
            c.headers.push(("MSCRM.SessionToken", token));
        }
        if let Some(p) = given(PARTITION_ID)? {
            if p.bytes().any(|b| b.is_ascii_control()) {
                return Err(bad(PARTITION_ID, "contains a control character".into()));
            }
            c.partition_id = Some(p);
            c.partition_input = name(PARTITION_ID);
        }
        c.tag = given(TAG)?;
        Ok(c)
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.partition_id.is_none() && self.tag.is_none()
    }

    /// The query options these controls add to a request's URL, encoded:
    /// `tag` on any request, `partitionId` on GET and DELETE only
    /// (Dataverse ignores it on POST and PATCH, where the partition goes in
    /// the body or the key).
    pub fn query(&self, get_or_delete: bool) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        // Unquoted, as Learn's "Use optional parameters" (Perform a data
        // operation with specified partition) sends it:
        // `?partitionId=Device-ABC-1234`.
        if let (Some(p), true) = (&self.partition_id, get_or_delete) {
            out.push(("partitionId", encode_query(p)));
        }
        if let Some(t) = &self.tag {
            out.push(("tag", encode_query(t)));
        }
        out
    }

    /// Adds the headers, and the query options the URL does not already
    /// carry (a nextLink keeps the first page's), to `request`.
    pub fn apply(&self, mut request: crate::http::Request) -> crate::http::Request {
        use crate::http::Method;
        let get_or_delete = matches!(request.method, Method::Get | Method::Delete);
        let options = self.query(get_or_delete);
        if !options.is_empty() {
            let query = merge_query(request.url.query().unwrap_or(""), &options);
            request.url.set_query(Some(&query));
        }
        for (name, value) in &self.headers {
            request.set_header(name, value.clone());
        }
        request
    }

    /// Explains what Dataverse refused because of a control: a missing
    /// privilege, a duplicate.
    pub fn explain(&self, e: ConnectorError) -> ConnectorError {
        use crate::error::ErrorKind;
        if e.status == Some(403) && self.bypass {
            return e.with_hint(
                "Bypassing business logic needs the prvBypassCustomBusinessLogic privilege (only System Administrators have it by default; it is added to another role with AddPrivilegesRole, id 0ea552b0-a491-4470-9a1b-82068deccf66). Nothing was written.",
            );
        }
        if e.status == Some(403) && self.impersonated {
            return e.with_hint(
                "Impersonation needs the connection's user to hold prvActOnBehalfOfAnotherUser (Act on Behalf of Another User), and the impersonated user to have the privileges the request needs.",
            );
        }
        if self.duplicates
            && e.code
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(DUPLICATE_CODE))
        {
            // Keeps what is known already (the matching records' ids).
            let hint = format!(
                "{}A duplicate detection rule matched an existing record, so nothing was written. Change the values, or send duplicateDetection false to write it anyway.",
                e.hint
                    .as_deref()
                    .map(|h| format!("{h} "))
                    .unwrap_or_default()
            );
            let mut e = e.with_hint(hint);
            e.kind = ErrorKind::Conflict;
            e.retryable = false;
            return e;
        }
        e
    }
}

/// `query` with `options` (encoded) appended, leaving out any option it
/// already names.
pub fn merge_query(query: &str, options: &[(&'static str, String)]) -> String {
    let mut out = query.to_string();
    for (name, value) in options {
        if out.split('&').any(|p| p.split('=').next() == Some(*name)) {
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// A (relative) URL with `options` merged into its query ([`merge_query`]).
pub fn url_with(url: &str, options: &[(&'static str, String)]) -> String {
    if options.is_empty() {
        return url.to_string();
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    format!("{path}?{}", merge_query(query, options))
}

/// A boolean control: `true`/`false` (any case) or absent.
fn flag(
    given: &dyn Fn(&'static str) -> Result<Option<String>>,
    bad: &dyn Fn(&str, String) -> ConnectorError,
    key: &'static str,
) -> Result<bool> {
    match given(key)?.as_deref() {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(bad(key, format!("'{v}' is not true or false"))),
    }
}

/// A JSON value as control text: strings as they are, booleans and numbers
/// written out, arrays of strings comma-separated; `None` for null.
pub fn text_of(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(
            items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(v: Value) -> Result<Controls> {
        Controls::parse(&|k| Ok(v.get(k).and_then(text_of)), &|k| k.to_string())
    }

    #[test]
    fn every_control_becomes_its_documented_header() {
        let c = parse(json!({
            "impersonateUserId": "{B0B0B0B0-0000-4000-8000-00000000B0B0}",
            "bypassBusinessLogic": "customasync, CustomSync",
            "bypassStepIds": ["45e0c603-0d0b-466e-a286-d7fc1cda8361"],
            "suppressFlowTriggers": true,
            "duplicateDetection": "true",
            "sessionToken": "240:8#144100870#7=-1",
        }))
        .unwrap();
        assert_eq!(
            c.headers,
            vec![
                (
                    "CallerObjectId",
                    "b0b0b0b0-0000-4000-8000-00000000b0b0".to_string()
                ),
                (
                    "MSCRM.BypassBusinessLogicExecution",
                    "CustomSync,CustomAsync".into()
                ),
                (
                    "MSCRM.BypassBusinessLogicExecutionStepIds",
                    "45e0c603-0d0b-466e-a286-d7fc1cda8361".into()
                ),
                (
                    "MSCRM.SuppressCallbackRegistrationExpanderJob",
                    "true".into()
                ),
                ("MSCRM.SuppressDuplicateDetection", "false".into()),
                ("MSCRM.SessionToken", "240:8#144100870#7=-1".into()),
            ]
        );
        assert!(parse(json!({})).unwrap().is_empty());
        let legacy = parse(json!({
            "impersonateUserId": "5e6f7a8b-cccc-ef11-8eef-000d3a5b1c2d",
            "impersonationHeader": "MSCRMCallerID",
        }))
        .unwrap();
        assert_eq!(legacy.headers[0].0, "MSCRMCallerID");
    }

    #[test]
    fn partition_and_tag_are_query_options_escaped_once() {
        let c = parse(json!({"partitionId": "dev'ice 1", "tag": "a&b"})).unwrap();
        let pairs = |get| {
            c.query(get)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert_eq!(pairs(true), "partitionId=dev'ice%201&tag=a%26b");
        assert_eq!(pairs(false), "tag=a%26b");
    }

    #[test]
    fn bad_values_name_their_input() {
        for (input, key, needle) in [
            (
                json!({"bypassBusinessLogic": "CustomSync,All"}),
                BYPASS_BUSINESS_LOGIC,
                "'All'",
            ),
            (
                json!({"impersonateUserId": "ben"}),
                IMPERSONATE_USER_ID,
                "not a GUID",
            ),
            (
                json!({"impersonateUserId": "b0b0b0b0-0000-4000-8000-00000000b0b0", "impersonationHeader": "X"}),
                IMPERSONATION_HEADER,
                "CallerObjectId or MSCRMCallerID",
            ),
            (
                json!({"bypassStepIds": "x"}),
                BYPASS_STEP_IDS,
                "not a step id",
            ),
            (
                json!({"duplicateDetection": "yes"}),
                DUPLICATE_DETECTION,
                "true or false",
            ),
            (json!({"partitionId": "a\nb"}), PARTITION_ID, "control"),
        ] {
            let e = parse(input).unwrap_err();
            assert_eq!(
                e.kind,
                crate::error::ErrorKind::InvalidInput {
                    input: key.to_string()
                }
            );
            assert!(e.message.contains(needle), "{}", e.message);
        }
        let eleven: Vec<String> = (0..11)
            .map(|i| format!("45e0c603-0d0b-466e-a286-d7fc1cda83{i:02}"))
            .collect();
        let e = parse(json!({"bypassStepIds": eleven})).unwrap_err();
        assert!(e.message.contains("at most 10"), "{}", e.message);
    }
}
