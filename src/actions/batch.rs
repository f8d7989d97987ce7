//! `runBatch`: up to 1,000 operations in one `$batch` request, as
//! individual parts or one all-or-nothing change set, with one result per
//! item in input order. With `bulk`, runs of same-table creates, updates or
//! upserts travel as one `CreateMultiple` / `UpdateMultiple` /
//! `UpsertMultiple` request each (still inside the `$batch`).
//!
//! After a stop-at-first-failure (no `continueOnError`), Dataverse answers
//! with only the failing part: every later item is reported explicitly as
//! not run (`status: null`, `success: false`, `notRun: true`), never
//! dropped. In an atomic change set every write is reported: the failing
//! one with its Dataverse error, the others as rolled back.

use crate::actions::action::Action;
use crate::actions::controls;
use crate::batch::{
    self, BatchAction, BatchItem, BatchPart, InnerRequest, ItemResult, PartResponse,
};
use crate::catalog::def::{ActionDef, InputType, input};
use crate::client::Session;
use crate::controls::OPERATION_KEYS;
use crate::error::{ConnectorError, Result};
use crate::http::Method;
use crate::inputs::Inputs;
use crate::page::Output;
use crate::types::{EntitySet, Guid};
use serde_json::{Map, Value, json};

// Input keys, each written once: the definitions and `run` use these.
/// The same key item errors name (`batchActions[3].data`).
const BATCH_ACTIONS: &str = batch::INPUT;
const ATOMIC: &str = "atomic";
const CONTINUE_ON_ERROR: &str = "continueOnError";
const BULK: &str = "bulk";

pub const RUN_BATCH: Action = Action {
    def: ActionDef {
        key: "runBatch",
        label: "Run Batch Operations",
        description: "Runs up to 1,000 creates, updates, upserts, deletes and gets in one $batch request and returns one result per item, in order, with its status and record or Dataverse error. Writes can run as one all-or-nothing change set (atomic), where later items can refer to records created earlier as $1, $2 …",
        deprecated: false,
        input_defs: || {
            vec![
                {
                    let text = "Up to 1000 items {collection, action: create/update/upsert/delete/get, key, data, returnRepresentation, headers, query}. collection is the entity set (accounts); key a GUID, alternate key (accountnumber='A-1' or {\"accountnumber\": \"A-1\"}) or $n; data the columns to write; query the OData options of a get ($select=name&$filter=…). An item may carry its own write controls (impersonateUserId, bypassBusinessLogic, suppressFlowTriggers, duplicateDetection, tag; partitionId on get and delete), which win over the action's. Every item is checked before anything is sent.";
                    input(BATCH_ACTIONS, "Batch Actions", InputType::Json, text).required().raw().example(json!([ {"collection": "accounts", "action": "create", "data": {"name": "Fabrikam"}}, {"collection": "contacts", "action": "create", "data": {"lastname": "Smith", "parentcustomerid_account@odata.bind": "$1"}} ]))
                },
                {
                    let text = "Run every write as one change set: all succeed or none is applied. Needed for $n references to records created earlier in the batch. Gets run outside the change set.";
                    input(ATOMIC, "Atomic (Change Set)", InputType::Boolean, text)
                        .default(json!(false))
                },
                {
                    let text = "Keep running after a failed item (Prefer: odata.continue-on-error). Off: the batch stops at the first failure and later items are reported as not run.";
                    input(
                        CONTINUE_ON_ERROR,
                        "Continue On Error",
                        InputType::Boolean,
                        text,
                    )
                    .default(json!(false))
                },
                {
                    let text = "Send runs of consecutive creates, updates or upserts on the same table as one CreateMultiple / UpdateMultiple / UpsertMultiple request (much cheaper for Dataverse). Updates and upserts need a GUID key; items with headers, returnRepresentation or $n references, and items a later $n refers to, are sent one by one. A bulk request succeeds or fails as a whole.";
                    input(BULK, "Use Bulk Operations", InputType::Boolean, text)
                        .default(json!(false))
                },
            ]
            .into_iter()
            .chain(controls::inputs(OPERATION_KEYS))
            .collect()
        },
    },
    run: run_batch,
};

fn run_batch(session: &mut Session<'_>, inputs: &Inputs) -> Result<Output> {
    let atomic = inputs.bool(ATOMIC)?;
    let continue_on_error = inputs.bool(CONTINUE_ON_ERROR)?;
    let bulk = inputs.bool(BULK)?;
    let c = controls::of(inputs, OPERATION_KEYS)?;
    let raw = inputs
        .raw(BATCH_ACTIONS)?
        .ok_or_else(|| ConnectorError::invalid_input(BATCH_ACTIONS, "is required"))?;
    let items = batch::parse_items(raw, atomic)?;
    let api_root = session.web_api().service_root().path().to_string();
    let groups = if bulk {
        bulk_groups(&items)
    } else {
        (0..items.len()).map(Group::Single).collect()
    };
    let types = if groups.iter().any(|g| matches!(g, Group::Bulk { .. })) {
        logical_names(session, &items, &groups)
    } else {
        Vec::new()
    };
    let lost = || ConnectorError::transport("internal: a batch group lost its items");
    let requests: Vec<(bool, InnerRequest)> = groups
        .iter()
        .map(|g| match g {
            Group::Single(i) => items
                .get(*i)
                .map(|it| (it.action.is_write(), it.to_request(&api_root, i + 1)))
                .ok_or_else(lost),
            Group::Bulk { action, members } => {
                bulk_request(&items, *action, members, &api_root, &types).map(|r| (true, r))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    // The action's own controls go on every part (and bulk request) that
    // does not set them itself.
    let mut requests = requests;
    if !c.is_empty() {
        let options = c.query(false);
        for (_, r) in &mut requests {
            for (name, value) in &c.headers {
                if !r.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                    r.headers.push((name.to_string(), value.clone()));
                }
            }
            if !options.is_empty() {
                r.url = crate::controls::url_with(&r.url, &options);
            }
        }
    }
    let parts = into_parts(requests, atomic);
    let sent_at = send_positions(&parts, &groups, items.len());
    let encoded = batch::encode(&parts);
    let mut request = session
        .request(Method::Post, "$batch")?
        .header("Content-Type", encoded.content_type.clone());
    if continue_on_error {
        request = request.header("Prefer", "odata.continue-on-error");
    }
    request.body = encoded.body;
    let response = session.send(request)?;
    let content_type = response.header("Content-Type").unwrap_or("").to_string();
    if batch::boundary_of(&content_type).is_none() {
        // The batch as a whole was refused (a JSON error, not a multipart body).
        if response.is_success() {
            return Err(ConnectorError::transport(format!(
                "the $batch response is not multipart/mixed (Content-Type '{content_type}')"
            )));
        }
        return Err(crate::client::answer_error(Method::Post, &response));
    }
    let decoded = batch::decode(&content_type, &response.body)?;
    // Content-IDs are item index + 1 (a bulk request carries its first member's).
    let by_content_id = batch::assign_to_items(items.len(), decoded);
    let assigned = spread(&items, &groups, by_content_id, session);
    let mut results = batch::item_results(&items, atomic, &assigned);
    mark_unanswered(
        &mut results,
        &items,
        &assigned,
        &sent_at,
        atomic,
        continue_on_error,
    );
    for (r, item) in results.iter_mut().zip(&items) {
        fill_id_from_record(r, item);
    }
    for g in &groups {
        if let Group::Bulk { action, members } = g {
            for i in members {
                if let Some(r) = results.get_mut(*i) {
                    r.bulk = Some(bulk_message(*action));
                }
            }
        }
    }
    let succeeded = results.iter().filter(|r| r.success).count();
    let unplaced: Vec<Value> = assigned
        .unplaced
        .iter()
        .map(|p| {
            json!({
                "status": p.status,
                "error": p.error().and_then(|e| serde_json::to_value(e).ok()),
            })
        })
        .collect();
    let output = BatchOutput {
        failed: results.len() - succeeded,
        results: &results,
        status: response.status,
        succeeded,
        unplaced,
    };
    serde_json::to_string(&output)
        .map(Output::Json)
        .map_err(|e| ConnectorError::transport(format!("internal: the batch output: {e}")))
}

/// `runBatch`'s output, keys in the order serde_json's map wrote them.
#[derive(serde::Serialize)]
struct BatchOutput<'a> {
    failed: usize,
    results: &'a [ItemResult],
    status: u16,
    succeeded: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unplaced: Vec<Value>,
}

/// Explains every item without an answer of its own. Without
/// continue-on-error Dataverse stops at the first failure and answers with
/// that part alone: items sent before it ran (and succeeded, or it would
/// have stopped there) but have no answer; items after it never ran.
/// Rolled-back change-set writes were already marked by `item_results`.
/// When Dataverse returned a failure not tied to any item (no Content-ID
/// echoed), which items ran is unknown, and the result says so.
fn mark_unanswered(
    results: &mut [ItemResult],
    items: &[BatchItem],
    assigned: &batch::Assigned,
    sent_at: &[usize],
    atomic: bool,
    continue_on_error: bool,
) {
    let first_failure = assigned
        .slots
        .iter()
        .position(|s| s.as_ref().is_some_and(|r| !r.is_success()));
    let failure_sent_at = first_failure.and_then(|f| sent_at.get(f).copied());
    let unattributed_failure = assigned.unplaced.iter().any(|r| !r.is_success());
    for (i, (r, slot)) in results.iter_mut().zip(&assigned.slots).enumerate() {
        if slot.is_some() {
            continue;
        }
        let rolled_back = atomic && items.get(i).is_some_and(|it| it.action.is_write());
        // Send order, not item order: an atomic batch sends the change set
        // where its first write is, so a later get can go after it.
        let ran_before_failure = !continue_on_error
            && !rolled_back
            && failure_sent_at
                .zip(sent_at.get(i))
                .is_some_and(|(f, at)| *at < f);
        if ran_before_failure {
            r.success = true;
            r.error = None;
            r.answered = Some(false);
            r.note = Some(format!(
                "ran before batchActions[{}] failed, so it was applied, but Dataverse returns no response for it when a batch stops at a failure (set continueOnError to get every response)",
                first_failure.unwrap_or_default()
            ));
        } else if unattributed_failure && !rolled_back && first_failure.is_none() {
            r.outcome_unknown = Some(true);
            r.error = Some(
                json!({"message": "no answer for this item: Dataverse returned a failure without saying which request it was (see unplaced), so this item may or may not have run; set continueOnError to get every response"}),
            );
        } else {
            r.not_run = Some(true);
        }
    }
}

/// The position at which each item's request goes out (a change set's
/// requests in order; a bulk request's members share one position).
fn send_positions(parts: &[BatchPart], groups: &[Group], items: usize) -> Vec<usize> {
    let mut by_content_id: Vec<usize> = vec![usize::MAX; items];
    for (at, r) in parts.iter().flat_map(BatchPart::requests).enumerate() {
        let slot = r
            .content_id
            .as_deref()
            .and_then(|id| id.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| by_content_id.get_mut(i));
        if let Some(s) = slot {
            *s = at;
        }
    }
    for g in groups {
        if let Group::Bulk { members, .. } = g
            && let Some(at) = members.first().and_then(|f| by_content_id.get(*f)).copied()
        {
            for m in members {
                if let Some(s) = by_content_id.get_mut(*m) {
                    *s = at;
                }
            }
        }
    }
    by_content_id
}

/// A write answered with its record (`returnRepresentation`) carries no
/// `OData-EntityId`: the id comes from the record's `@odata.id` or its
/// primary key column (`<logicalname>id`).
fn fill_id_from_record(result: &mut ItemResult, item: &BatchItem) {
    if !item.action.is_write() || result.id.is_some() {
        return;
    }
    let Some(record) = &result.record else {
        return;
    };
    let from_url = record
        .get("@odata.id")
        .and_then(Value::as_str)
        .and_then(batch::id_from_entity_url);
    let key = format!("{}id", singular(item.collection.as_str()));
    result.id = from_url.or_else(|| {
        record
            .get(&key)
            .and_then(Value::as_str)
            .and_then(Guid::parse)
            .map(Guid::into_string)
    });
}

/// How items travel: one part each, or a run of same-table writes as one
/// bulk request.
#[derive(Debug, Clone, PartialEq)]
enum Group {
    Single(usize),
    Bulk {
        action: BatchAction,
        members: Vec<usize>,
    },
}

/// Whether an item can travel inside a bulk request: a bulk request has
/// one Content-ID, so an item a later `$n` refers to goes on its own.
fn bulk_eligible(item: &BatchItem, referenced: bool) -> bool {
    if referenced {
        return false;
    }
    let action_ok = match item.action {
        BatchAction::Create => true,
        BatchAction::Update | BatchAction::Upsert => item.record_id().is_some(),
        _ => false,
    };
    action_ok
        && item.headers.is_empty()
        && item.options.is_empty()
        && !item.return_representation
        && !item.has_content_refs()
}

/// Consecutive eligible items with the same table and action form one
/// group; a run of one stays a plain request. Order is kept.
fn bulk_groups(items: &[BatchItem]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    let flush = |run: &mut Vec<usize>, groups: &mut Vec<Group>| {
        match run.as_slice() {
            [] => {}
            [one] => groups.push(Group::Single(*one)),
            _ => {
                let action = run
                    .first()
                    .and_then(|i| items.get(*i))
                    .map(|it| it.action)
                    .unwrap_or(BatchAction::Create);
                groups.push(Group::Bulk {
                    action,
                    members: std::mem::take(run),
                });
            }
        }
        run.clear();
    };
    let mut referenced = vec![false; items.len()];
    for n in items.iter().flat_map(BatchItem::referenced) {
        if let Some(r) = n.checked_sub(1).and_then(|i| referenced.get_mut(i)) {
            *r = true;
        }
    }
    for (i, item) in items.iter().enumerate() {
        let continues = run
            .last()
            .and_then(|j| items.get(*j))
            .is_some_and(|prev| prev.collection == item.collection && prev.action == item.action);
        if !bulk_eligible(item, referenced.get(i).copied().unwrap_or(true)) {
            flush(&mut run, &mut groups);
            groups.push(Group::Single(i));
            continue;
        }
        if !continues {
            flush(&mut run, &mut groups);
        }
        run.push(i);
    }
    flush(&mut run, &mut groups);
    groups
}

/// The entity logical name (`account`) of each item's collection, for the
/// `@odata.type` bulk targets need: asked of the metadata once per table,
/// else derived from the plural entity set name.
fn logical_names(
    session: &mut Session<'_>,
    items: &[BatchItem],
    groups: &[Group],
) -> Vec<(EntitySet, String)> {
    let mut out: Vec<(EntitySet, String)> = Vec::new();
    for g in groups {
        let Group::Bulk { members, .. } = g else {
            continue;
        };
        let Some(set) = members
            .first()
            .and_then(|i| items.get(*i))
            .map(|it| &it.collection)
        else {
            continue;
        };
        if out.iter().any(|(s, _)| s == set) {
            continue;
        }
        let name = controls::table(session, set)
            .map(|(t, _)| t.logical_name)
            .unwrap_or_else(|| singular(set.as_str()));
        out.push((set.clone(), name));
    }
    out
}

/// Dataverse's default entity set name is the logical name's English
/// plural; this undoes it (opportunities → opportunity, customeraddresses →
/// customeraddress, accounts → account).
fn singular(set: &str) -> String {
    if let Some(stem) = set.strip_suffix("ies") {
        format!("{stem}y")
    } else if ["sses", "xes", "ches", "shes"]
        .iter()
        .any(|end| set.ends_with(end))
    {
        set.strip_suffix("es").unwrap_or(set).to_string()
    } else {
        set.strip_suffix('s').unwrap_or(set).to_string()
    }
}

fn bulk_message(action: BatchAction) -> &'static str {
    match action {
        BatchAction::Update => "UpdateMultiple",
        BatchAction::Upsert => "UpsertMultiple",
        _ => "CreateMultiple",
    }
}

/// `POST {set}/Microsoft.Dynamics.CRM.CreateMultiple` `{"Targets": […]}`,
/// each target typed and (update/upsert) carrying its primary key.
fn bulk_request(
    items: &[BatchItem],
    action: BatchAction,
    members: &[usize],
    api_root: &str,
    types: &[(EntitySet, String)],
) -> Result<InnerRequest> {
    let lost = || ConnectorError::transport("internal: a bulk request lost its items");
    let first = *members.first().ok_or_else(lost)?;
    let set = &items.get(first).ok_or_else(lost)?.collection;
    let logical = types
        .iter()
        .find(|(s, _)| s == set)
        .map(|(_, n)| n.clone())
        .ok_or_else(lost)?;
    let mut targets = Vec::with_capacity(members.len());
    for i in members {
        let item = items.get(*i).ok_or_else(lost)?;
        let mut target = match &item.data {
            // Valid JSON, but not always a map of Values (1e400).
            Some(d) => d.to_map().map_err(|e| {
                ConnectorError::invalid_input(
                    format!("{}[{i}].data", batch::INPUT),
                    format!("cannot be sent in a bulk request ({e}): set bulk to false"),
                )
            })?,
            None => Map::new(),
        };
        target.insert(
            "@odata.type".into(),
            Value::from(format!("Microsoft.Dynamics.CRM.{logical}")),
        );
        if let Some(id) = item.record_id() {
            target.insert(format!("{logical}id"), Value::from(id.as_str()));
        }
        targets.push(Value::Object(target));
    }
    Ok(InnerRequest {
        method: "POST",
        url: format!(
            "{api_root}{set}/Microsoft.Dynamics.CRM.{}",
            bulk_message(action)
        ),
        headers: Vec::new(),
        body: Some(json!({ "Targets": targets }).to_string()),
        content_id: Some((first + 1).to_string()),
    })
}

/// Individual parts, or (atomic) every write in one change set placed at
/// the first write, reads around it in order.
fn into_parts(requests: Vec<(bool, InnerRequest)>, atomic: bool) -> Vec<BatchPart> {
    if !atomic {
        return requests
            .into_iter()
            .map(|(_, r)| BatchPart::Request(r))
            .collect();
    }
    let mut parts = Vec::new();
    let mut changeset: Option<usize> = None;
    for (is_write, request) in requests {
        if !is_write {
            parts.push(BatchPart::Request(request));
            continue;
        }
        match changeset.and_then(|at| parts.get_mut(at)) {
            Some(BatchPart::ChangeSet(rs)) => rs.push(request),
            _ => {
                changeset = Some(parts.len());
                parts.push(BatchPart::ChangeSet(vec![request]));
            }
        }
    }
    parts
}

/// Turns the answers (by Content-ID) into one per item: a bulk answer
/// becomes one synthesized response per member (its id from `Ids`, else its
/// key), a bulk failure the same error on every member.
fn spread(
    items: &[BatchItem],
    groups: &[Group],
    by_content_id: batch::Assigned,
    session: &Session<'_>,
) -> batch::Assigned {
    let batch::Assigned {
        slots: mut answers,
        unplaced,
    } = by_content_id;
    let mut slots: Vec<Option<PartResponse>> = (0..items.len()).map(|_| None).collect();
    let root = session.web_api().service_root().to_string();
    for g in groups {
        match g {
            Group::Single(i) => {
                if let (Some(s), Some(answer)) = (slots.get_mut(*i), answers.get_mut(*i)) {
                    *s = answer.take();
                }
            }
            Group::Bulk { action, members } => {
                let Some(r) = members
                    .first()
                    .and_then(|first| answers.get_mut(*first))
                    .and_then(Option::take)
                else {
                    continue;
                };
                let ids = bulk_ids(&r, *action, members.len());
                for (k, i) in members.iter().enumerate() {
                    let Some(item) = items.get(*i) else { continue };
                    let mut part = r.clone();
                    part.content_id = Some((i + 1).to_string());
                    if r.is_success() {
                        let id = ids
                            .get(k)
                            .cloned()
                            .flatten()
                            .or_else(|| item.record_id().map(|g| g.to_string()));
                        part.body = Vec::new();
                        part.head = id
                            .map(|id| format!("OData-EntityId: {root}{}({id})", item.collection))
                            .unwrap_or_default();
                    }
                    if let Some(s) = slots.get_mut(*i) {
                        *s = Some(part);
                    }
                }
            }
        }
    }
    batch::Assigned { slots, unplaced }
}

/// The ids of a CreateMultiple answer (`Ids`, in target order); updates
/// and upserts name their records by key, so they get `None` (the member's
/// key is used).
fn bulk_ids(r: &PartResponse, action: BatchAction, n: usize) -> Vec<Option<String>> {
    let list: Vec<Option<String>> = match action {
        BatchAction::Create | BatchAction::Upsert => r
            .json()
            .and_then(|j| j.get("Ids").and_then(Value::as_array).cloned())
            .map(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    list.into_iter()
        .chain(std::iter::repeat(None))
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singular_undoes_default_plurals() {
        for (set, logical) in [
            ("accounts", "account"),
            ("opportunities", "opportunity"),
            ("customeraddresses", "customeraddress"),
            ("salesorders", "salesorder"),
            ("new_boxes", "new_box"),
        ] {
            assert_eq!(singular(set), logical);
        }
    }

    #[test]
    fn bulk_groups_keep_order_and_split_runs() {
        let items = batch::parse_owned(
            json!([
                {"collection": "accounts", "action": "create", "data": {"name": "a"}},
                {"collection": "accounts", "action": "create", "data": {"name": "b"}},
                {"collection": "contacts", "action": "create", "data": {"lastname": "c"}},
                {"collection": "accounts", "action": "update", "key": "00000000-0000-0000-0000-000000000001", "data": {"name": "d"}},
                {"collection": "accounts", "action": "update", "key": "00000000-0000-0000-0000-000000000002", "data": {"name": "e"}},
                {"collection": "accounts", "action": "update", "key": "accountnumber='x'", "data": {"name": "f"}},
                {"collection": "accounts", "action": "create", "data": {"name": "g"}, "returnRepresentation": true},
                {"collection": "accounts", "action": "get"}
            ]),
            false,
        );
        let with_refs = batch::parse_owned(
            json!([
                {"collection": "accounts", "action": "create", "data": {"name": "a"}},
                {"collection": "accounts", "action": "create", "data": {"name": "b"}},
                {"collection": "accounts", "action": "create", "data": {"name": "c"}},
                {"collection": "contacts", "action": "create", "data": {"lastname": "x", "parentcustomerid_account@odata.bind": "$2"}}
            ]),
            true,
        );
        assert_eq!(
            bulk_groups(&with_refs),
            vec![
                Group::Single(0),
                Group::Single(1),
                Group::Single(2),
                Group::Single(3)
            ],
            "item 1 is referenced, so it keeps its own Content-ID; 0 and 2 are runs of one"
        );
        assert_eq!(
            bulk_groups(&items),
            vec![
                Group::Bulk {
                    action: BatchAction::Create,
                    members: vec![0, 1]
                },
                Group::Single(2),
                Group::Bulk {
                    action: BatchAction::Update,
                    members: vec![3, 4]
                },
                Group::Single(5),
                Group::Single(6),
                Group::Single(7),
            ]
        );
        let types = vec![(
            EntitySet::parse("t", "accounts").unwrap(),
            "account".to_string(),
        )];
        let r = bulk_request(
            &items,
            BatchAction::Update,
            &[3, 4],
            "/api/data/v9.2/",
            &types,
        )
        .unwrap();
        assert_eq!(
            r.url,
            "/api/data/v9.2/accounts/Microsoft.Dynamics.CRM.UpdateMultiple"
        );
        assert_eq!(r.content_id.as_deref(), Some("4"));
        assert_eq!(
            serde_json::from_str::<Value>(&r.body.unwrap()).unwrap(),
            json!({"Targets": [
                {"name": "d", "@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": "00000000-0000-0000-0000-000000000001"},
                {"name": "e", "@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": "00000000-0000-0000-0000-000000000002"}
            ]})
        );
    }

    #[test]
    fn unanswered_items_are_explained_by_send_order() {
        use crate::batch::{Assigned, PartResponse};
        let items = batch::parse_owned(
            json!([
                {"collection": "accounts", "action": "create", "data": {"name": "a"}},
                {"collection": "accounts", "action": "create", "data": {"name": "b"}},
                {"collection": "accounts", "action": "create", "data": {"name": "c"}}
            ]),
            false,
        );
        let failure = |cid: Option<&str>| PartResponse {
            content_id: cid.map(str::to_string),
            in_changeset: false,
            status: 400,
            head: String::new(),
            body: br#"{"error":{"code":"0x0","message":"bad"}}"#.to_vec(),
        };
        let sent_at = [0, 1, 2];
        // The failure is tied to item 1: item 0 ran, item 2 did not.
        let assigned = Assigned {
            slots: vec![None, Some(failure(Some("2"))), None],
            unplaced: Vec::new(),
        };
        let mut results = batch::item_results(&items, false, &assigned);
        mark_unanswered(&mut results, &items, &assigned, &sent_at, false, false);
        let results = serde_json::to_value(results).unwrap();
        assert_eq!(results[0]["success"], true);
        assert_eq!(results[0]["answered"], false);
        assert!(results[0].get("error").is_none());
        assert_eq!(results[1]["status"], 400);
        assert_eq!(results[2]["notRun"], true);
        // A failure without a Content-ID: nobody can say which items ran.
        let assigned = Assigned {
            slots: vec![None, None, None],
            unplaced: vec![failure(None)],
        };
        let mut results = batch::item_results(&items, false, &assigned);
        mark_unanswered(&mut results, &items, &assigned, &sent_at, false, false);
        let results = serde_json::to_value(results).unwrap();
        for r in results.as_array().unwrap() {
            assert_eq!(r["outcomeUnknown"], true, "{r}");
            assert_eq!(r["success"], false);
            assert!(r.get("notRun").is_none());
        }
    }
}
