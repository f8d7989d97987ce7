//! `recordChanges`: the polling trigger on Dataverse change tracking.
//! Design:
//! - It calls the Web API, so it runs as an action (`actions.invoke(
//!   "recordChanges", …)`, no WIT change) and is listed here among the
//!   triggers with kind `polling`; the host calls it on a schedule and keeps
//!   the `state` each call returns for the next one.
//! - Inputs: `entityType` (entity set), `fieldNames` ($select), `pageSize`
//!   (`Prefer: odata.maxpagesize`), `state` (the last `@odata.deltaLink`,
//!   opaque to the host; `{"deltaLink": …}` is accepted too), `maxPages`,
//!   `resync`.
//! - First poll (no state, or `resync`): `GET {set}?$select=…` with
//!   `Prefer: odata.track-changes,odata.maxpagesize=N`, follow
//!   `@odata.nextLink` to the end, return every row in `changed` and the last
//!   page's `@odata.deltaLink` as `state`.
//! - Later polls: GET the delta link (checked like a nextLink: same origin,
//!   `/api/data/`, same entity set, has a `$deltatoken`), follow nextLinks;
//!   `$deletedEntity` entries go to `deleted` as their `id`, the rest to
//!   `changed`; return the last page's delta link (never the old one: tokens
//!   move forward). Nothing new → empty lists and the new state.
//! - `maxPages`: a poll that has read that many pages and has a nextLink
//!   stops there with `moreAvailable: true` and the nextLink as `state`; the
//!   next poll GETs it (a `$skiptoken` page cookie, plus the `$deltatoken`
//!   when a delta) and goes on. A table too large for one poll's output
//!   (127 MiB) is so read in full over several polls; rows written
//!   meanwhile come with the next delta.
//! - An expired/invalid token (400 ExpiredVersionStamp `0x80044352`, a
//!   refused `$deltatoken`, or 410) → an error saying a full resync is
//!   needed, with a hint to call again with `resync: true`. An entity
//!   without `ChangeTrackingEnabled` → `invalid-input` on `entityType`.
//! - The emulator side (`host-test/src/emulator/webapi/changes.rs`): a delta
//!   token encodes the store version it covers; changes since are each
//!   touched row's latest state (a row created then deleted in between
//!   appears only as deleted) and the store's deletion log.
//!
//! Pure parts ([`classify`], [`resync_error`], [`state_link`]) are unit
//! tested; the loop is tested end to end against the emulator.

use crate::actions::action::Action;
use crate::catalog::def::{ActionDef, InputDef, InputType, input};
use crate::client::Session;
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::http::Method;
use crate::inputs::Inputs;
use crate::odata::{self, ODataQuery};
use crate::page::{self, Follow, Next, Output, RawRecords};
use crate::types::EntitySet;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

// Input keys, each written once: the definitions and `run` use these.
const ENTITY_TYPE: &str = "entityType";
const FIELD_NAMES: &str = "fieldNames";
const PAGE_SIZE: &str = "pageSize";
const MAX_PAGES: &str = "maxPages";
const STATE: &str = "state";
const RESYNC: &str = "resync";

/// The inputs, shared with the trigger's catalog entry.
pub fn inputs() -> Vec<InputDef> {
    vec![
        {
            let text = "The entity set name (plural, case-sensitive), e.g. accounts. The table must have Track changes (ChangeTrackingEnabled) on.";
            input(ENTITY_TYPE, "Entity Type", InputType::String, text)
                .required()
                .example(json!("accounts"))
        },
        {
            let text = "Columns to return for new and changed rows ($select); lookups as _<name>_value. Empty returns every column. Keep it the same between polls: the delta link repeats the first poll's columns.";
            input(FIELD_NAMES, "Field Name", InputType::List, text)
                .example(json!(["name", "revenue"]))
        },
        {
            let text =
                "Prefer odata.maxpagesize for each request; every page is read within one poll.";
            input(PAGE_SIZE, "Records Per Page", InputType::Integer, text)
                .default(json!(1000))
                .range(1, 5000)
        },
        {
            let text = "Stop after this many pages: the poll returns them with moreAvailable: true and a state that continues from the next page, which the next poll reads on. Empty: every page in one poll. Set it for the first poll of a large table (a poll's output is limited to 127 MiB).";
            input(MAX_PAGES, "Max Pages Per Poll", InputType::Integer, text)
                .range(1, page::MAX_PAGES as i64)
                .example(json!(50))
        },
        input(
            STATE,
            "State (Delta Link)",
            InputType::String,
            "The state returned by the previous poll (its @odata.deltaLink, or with maxPages the link to its next page). Empty: the first poll, which returns every current row and a state to keep.",
        ),
        {
            let text = "Ignore the state and read every row again, returning a new state: what to do after an expired or invalid delta token.";
            input(RESYNC, "Full Resync", InputType::Boolean, text).default(json!(false))
        },
    ]
}

pub const RECORD_CHANGES: Action = Action {
    def: ActionDef {
        key: "recordChanges",
        label: "Record Changes (polling trigger)",
        description: "Polls a table with Dataverse change tracking: the first poll returns every row and a state (delta link); each later poll with that state returns the rows created or updated since and the ids of rows deleted since, following every page (or maxPages of them, then the state continues from the next page), and the new state to keep.",
        deprecated: false,
        input_defs: inputs,
    },
    run: poll,
};

/// One entry of a delta page.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A new or changed row: passed through as the Web API sent it.
    Changed,
    /// The id (lowercase GUID) of a deleted row.
    Deleted(String),
}

/// Sorts a delta entry: `$deletedEntity` entries (by their context or
/// `reason`) are deletions of their `id`, the rest new or changed rows.
///
/// Reads only the members that decide it: rows stay raw text (a full sync
/// of a large table held every row as a `Value` tree, several times the
/// size of its text).
pub fn classify(row: &RawValue) -> Result<Entry> {
    // from_slice: the page parser's reader, already in the component
    // (from_str would add a second copy of serde_json's skipping code).
    let probe: Probe = serde_json::from_slice(row.get().as_bytes()).map_err(|e| {
        ConnectorError::transport(format!(
            "a row of the delta answer is not a JSON object ({e})"
        ))
    })?;
    let deleted = probe
        .context
        .as_deref()
        .is_some_and(|c| c.ends_with("$deletedEntity"))
        || probe.reason.as_deref() == Some("deleted") && probe.has_id && probe.members <= 3;
    if !deleted {
        return Ok(Entry::Changed);
    }
    match probe.id {
        // The id may be the bare GUID or an entity URL ending in (GUID).
        Some(id) => {
            let bare = id
                .rsplit_once('(')
                .map_or(id.as_str(), |(_, r)| r.trim_end_matches(')'));
            Ok(Entry::Deleted(bare.to_ascii_lowercase()))
        }
        None => Err(ConnectorError::transport(
            "a $deletedEntity entry of the delta answer has no id",
        )),
    }
}

/// The members of a delta row that [`classify`] reads; the rest are skipped.
#[derive(Debug, Default)]
struct Probe {
    context: Option<String>,
    reason: Option<String>,
    /// `id` when it is a string.
    id: Option<String>,
    /// Whether the row has an `id` member at all.
    has_id: bool,
    members: usize,
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct ProbeVisitor;
        impl<'de> Visitor<'de> for ProbeVisitor {
            type Value = Probe;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a row object")
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Probe, A::Error> {
                let mut probe = Probe::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    probe.members += 1;
                    let text = |v: Value| match v {
                        Value::String(s) => Some(s),
                        _ => None,
                    };
                    match key.as_ref() {
                        "@odata.context" => probe.context = text(map.next_value()?),
                        "reason" => probe.reason = text(map.next_value()?),
                        "id" => {
                            probe.has_id = true;
                            probe.id = text(map.next_value()?);
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(probe)
            }
        }
        d.deserialize_map(ProbeVisitor)
    }
}

/// The link in `state`: the link itself, or `{"deltaLink": …}`; `None`
/// when empty. It is a delta link, or (after a poll that stopped at
/// `maxPages`) the next page's link.
pub fn state_link(text: &str) -> Result<Option<String>> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t.starts_with('{') {
        let v: Value = serde_json::from_str(t)
            .map_err(|e| ConnectorError::invalid_input(STATE, format!("is not JSON ({e})")))?;
        return match v.get("deltaLink").and_then(Value::as_str) {
            Some(l) if !l.trim().is_empty() => Ok(Some(l.trim().to_string())),
            _ => Err(ConnectorError::invalid_input(
                STATE,
                "has no deltaLink: pass the state a previous recordChanges poll returned",
            )),
        };
    }
    Ok(Some(t.to_string()))
}

/// Whether a refused request for the state's link means the link can no
/// longer be used (expired: ExpiredVersionStamp 0x80044352; malformed or
/// unknown token; OData's 410 Gone for a dead delta link; a next-page link
/// whose page cookie is refused).
///
/// UNCONFIRMED: Microsoft does not document how long a change tracking
/// nextLink stays usable; one kept between `maxPages` polls that Dataverse
/// refuses asks for a resync like an expired delta token.
fn is_token_error(e: &ConnectorError) -> bool {
    let m = e.message.to_ascii_lowercase();
    e.status == Some(410)
        || e.code.as_deref() == Some("0x80044352")
        || (e.status == Some(400)
            && (m.contains("deltatoken")
                || m.contains("delta token")
                || m.contains("skiptoken")
                || m.contains("paging cookie")
                || m.contains("version stamp")
                || m.contains("full sync")))
}

/// The error for an unusable delta token: says that a full resync is
/// needed and how to do it, keeping the server's status and code.
pub fn resync_error(server: ConnectorError) -> ConnectorError {
    ConnectorError {
        message: format!(
            "the change tracking state (a delta token, or a next-page link) is expired or invalid; a full resync is needed ({})",
            server.message
        ),
        hint: Some(
            "Poll again with resync: true (or without state): every current row is returned with a new state. Delta tokens expire after Organization.ExpireChangeTrackingInDays (30 days by default)."
                .into(),
        ),
        retryable: false,
        ..server
    }
}

fn is_not_tracked(e: &ConnectorError) -> bool {
    let m = e.message.to_ascii_lowercase();
    e.status == Some(400) && m.contains("change tracking") && m.contains("not enabled")
}

fn poll(session: &mut Session<'_>, inputs: &Inputs) -> Result<Output> {
    let set = EntitySet::parse(ENTITY_TYPE, inputs.expect_str(ENTITY_TYPE)?)?;
    let page_size = inputs.expect_u64(PAGE_SIZE)?.clamp(1, 5000) as u32;
    let resync = inputs.bool(RESYNC)?;
    let link = match resync {
        true => None,
        false => state_link(inputs.str(STATE)?.unwrap_or(""))?,
    };
    let max_pages = inputs.u64(MAX_PAGES)?.map(|n| n.max(1) as usize);
    let url = match &link {
        Some(l) => {
            let url = odata::resolve_next_link(session.web_api(), "state", l)?;
            let last = url.path_segments().and_then(|mut s| s.next_back());
            if last != Some(set.as_str()) {
                return Err(ConnectorError::invalid_input(
                    STATE,
                    format!(
                        "the delta link is for '{}', not for entityType '{set}'",
                        last.unwrap_or("")
                    ),
                )
                .with_hint("Keep one state per table, or poll with resync: true."));
            }
            // A delta link, or the next page of a poll that stopped at
            // maxPages (its page cookie, and the delta token if a delta).
            if !url
                .query_pairs()
                .any(|(k, _)| k == "$deltatoken" || k == "$skiptoken")
            {
                return Err(ConnectorError::invalid_input(
                    STATE,
                    "is not a delta link or the next page of one (it has no $deltatoken or $skiptoken)",
                ));
            }
            url
        }
        None => {
            let query = ODataQuery {
                select: odata::parse_select(FIELD_NAMES, &inputs.list(FIELD_NAMES)?)?,
                ..ODataQuery::default()
            };
            session.web_api().resource(&query.append_to(set.as_str()))?
        }
    };
    // A full sync (no delta token) also when continuing one at its next page.
    let delta = url.query_pairs().any(|(k, _)| k == "$deltatoken");
    let prefer = format!("odata.track-changes,odata.maxpagesize={page_size}");
    let changed = RawRecords::new(
        FIELD_NAMES,
        "Set maxPages so that a poll stops after that many pages and the next poll goes on from there, and list only the columns the flow needs in fieldNames. A first poll returns every row of the table.",
    );
    let mut deleted: Vec<String> = Vec::new();
    let mut seen_deleted = BTreeSet::new();
    let mut delta_link = None;
    let follow = max_pages.map_or(Follow::All, Follow::UpTo);
    let paged = page::read_pages(
        session,
        changed,
        url,
        follow,
        "a change tracking query",
        "nextLink",
        |session, url: &url::Url| {
            let request = session
                .request_to(Method::Get, url.clone())
                .header("Prefer", prefer.clone());
            session.send_ok(request).map_err(|e| match e {
                e if link.is_some() && is_token_error(&e) => resync_error(e),
                e if is_not_tracked(&e) => ConnectorError {
                    kind: ErrorKind::InvalidInput {
                        input: ENTITY_TYPE.into(),
                    },
                    message: format!("{ENTITY_TYPE}: '{set}' does not have change tracking enabled ({})", e.message),
                    hint: Some("Turn on Track changes for the table (Advanced options in Power Apps; EntityMetadata.ChangeTrackingEnabled), or use the webhook trigger.".into()),
                    ..e
                },
                e => e,
            })
        },
        |session, _, page, changed| {
            for row in &page.records {
                match classify(row)? {
                    Entry::Changed => changed.push(row)?,
                    Entry::Deleted(id) => {
                        if seen_deleted.insert(id.clone()) {
                            deleted.push(id);
                        }
                    }
                }
            }
            let body = &page.annotations;
            if let Some(next) = body.get("@odata.nextLink").and_then(Value::as_str) {
                // Resolved before anything else so that the host never
                // stores a foreign link (a poll that stops at maxPages
                // returns it as the state).
                let cursor = odata::resolve_next_link(session.web_api(), "@odata.nextLink", next)?;
                let mark = next.to_string();
                return Ok(Next::Page { cursor, mark });
            }
            match body.get("@odata.deltaLink").and_then(Value::as_str) {
                Some(l) => {
                    // Checked now so that the host never stores a foreign link.
                    odata::resolve_next_link(session.web_api(), "@odata.deltaLink", l)?;
                    delta_link = Some(l.to_string());
                    Ok(Next::Done)
                }
                None => Err(ConnectorError::transport(format!(
                    "the last page has no @odata.deltaLink: is change tracking on for '{set}'?"
                ))),
            }
        },
    )?;
    // The state to return, and whether it continues this change set.
    let (state, more) = match paged.next {
        Some((_, next_link)) => (next_link, true),
        None => (delta_link.unwrap_or_default(), false),
    };
    let changed = paged.records;
    let mut envelope = Map::new();
    envelope.insert("changedCount".into(), Value::from(changed.len()));
    envelope.insert("deletedCount".into(), Value::from(deleted.len()));
    envelope.insert(
        "deleted".into(),
        Value::Array(deleted.into_iter().map(Value::from).collect()),
    );
    envelope.insert("fullSync".into(), Value::from(!delta));
    envelope.insert("moreAvailable".into(), Value::from(more));
    envelope.insert("pages".into(), Value::from(paged.pages));
    envelope.insert("state".into(), Value::from(state));
    Ok(Output::Collection {
        envelope,
        key: "changed",
        records: changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(row: Value) -> Result<Entry> {
        super::classify(&serde_json::value::to_raw_value(&row).unwrap())
    }

    #[test]
    fn deleted_entities_are_told_from_rows() {
        let del = json!({"@odata.context": "https://x/api/data/v9.2/$metadata#accounts/$deletedEntity", "id": "A1B2C3D4-0000-0000-0000-000000000001", "reason": "deleted"});
        assert_eq!(
            classify(del).unwrap(),
            Entry::Deleted("a1b2c3d4-0000-0000-0000-000000000001".into())
        );
        let url_id = json!({"@odata.context": "…$deletedEntity", "id": "accounts(a1b2c3d4-0000-0000-0000-000000000001)"});
        assert_eq!(
            classify(url_id).unwrap(),
            Entry::Deleted("a1b2c3d4-0000-0000-0000-000000000001".into())
        );
        let row = json!({"@odata.etag": "W/\"1\"", "name": "deleted", "accountid": "x"});
        assert_eq!(classify(row).unwrap(), Entry::Changed);
        // Three members, reason deleted, but the id is not text: no id.
        assert!(classify(json!({"reason": "deleted", "id": 7})).is_err());
        assert!(super::classify(&serde_json::value::to_raw_value(&json!([1])).unwrap()).is_err());
        assert!(classify(json!({"@odata.context": "…$deletedEntity"})).is_err());
    }

    #[test]
    fn state_is_a_link_or_the_returned_object() {
        assert_eq!(state_link("  ").unwrap(), None);
        assert_eq!(
            state_link("accounts?$deltatoken=1").unwrap().as_deref(),
            Some("accounts?$deltatoken=1")
        );
        assert_eq!(
            state_link(r#"{"deltaLink":"accounts?$deltatoken=1"}"#)
                .unwrap()
                .as_deref(),
            Some("accounts?$deltatoken=1")
        );
        let e = state_link("{}").unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::InvalidInput {
                input: "state".into()
            }
        );
        assert!(state_link("{oops").is_err());
    }

    #[test]
    fn token_errors_ask_for_a_resync() {
        let body = br#"{"error":{"code":"0x80044352","message":"Version stamp associated with the client has expired. Please perform a full sync."}}"#;
        let e = ConnectorError::from_web_api(400, None, body);
        assert!(is_token_error(&e));
        let r = resync_error(e);
        assert!(r.message.contains("full resync is needed"), "{}", r.message);
        assert!(r.hint.unwrap().contains("resync: true"));
        assert_eq!(r.code.as_deref(), Some("0x80044352"));
        let other = ConnectorError::from_web_api(
            400,
            None,
            br#"{"error":{"code":"0x0","message":"Could not find a property named 'x'."}}"#,
        );
        assert!(!is_token_error(&other));
        assert!(is_token_error(&ConnectorError::from_web_api(
            410, None, b""
        )));
        // A next-page link kept between polls whose cookie is refused.
        assert!(is_token_error(&ConnectorError::from_web_api(
            400,
            None,
            br#"{"error":{"code":"0x80040203","message":"The $skiptoken 'ct1.x' is not valid."}}"#
        )));
    }
}
