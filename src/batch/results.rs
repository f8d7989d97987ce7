//! Putting the decoded responses back in item order and turning them into
//! one [`ItemResult`] per item.

use super::*;
use serde_json::Value;

/// Responses put back in item order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assigned {
    /// One slot per item; `None` when Dataverse returned nothing for it
    /// (not run after a stop-at-first-failure, or rolled back).
    pub slots: Vec<Option<PartResponse>>,
    /// Responses that could not be tied to an item (no usable Content-ID
    /// and not exactly one per empty slot).
    pub unplaced: Vec<PartResponse>,
}

/// Puts responses back in item order: item `i` was sent with Content-ID
/// `i + 1` (see [`build_parts`]). Responses without an echoed Content-ID
/// fill the empty slots in order only when there is exactly one per empty
/// slot; otherwise guessing could pin an error on the wrong item, so they
/// are returned as `unplaced`.
pub fn assign_to_items(items: usize, responses: Vec<PartResponse>) -> Assigned {
    let mut slots: Vec<Option<PartResponse>> = (0..items).map(|_| None).collect();
    let mut unnumbered = Vec::new();
    for r in responses {
        let slot = r
            .content_id
            .as_deref()
            .and_then(|id| id.trim().parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .filter(|i| slots.get(*i).is_some_and(Option::is_none));
        match slot.and_then(|i| slots.get_mut(i)) {
            Some(s) => *s = Some(r),
            None => unnumbered.push(r),
        }
    }
    let empty = slots.iter().filter(|s| s.is_none()).count();
    if unnumbered.is_empty() || unnumbered.len() != empty {
        return Assigned {
            slots,
            unplaced: unnumbered,
        };
    }
    let mut rest = unnumbered.into_iter();
    for s in slots.iter_mut().filter(|s| s.is_none()) {
        *s = rest.next();
    }
    Assigned {
        slots,
        unplaced: Vec::new(),
    }
}

/// The GUID at the end of an entity URL (`…/accounts(9a1d…)`), if the
/// record is addressed by its primary key.
pub fn id_from_entity_url(url: &str) -> Option<String> {
    let inner = url.trim().strip_suffix(')')?;
    let open = inner.rfind('(')?;
    parse_guid(inner.get(open + 1..)?)
}

/// One result per item, in input order, as `runBatch` returns them:
/// `{index, action, collection, status, success, id?, entityUrl?, record?,
/// error?}`. Items without a response get `success: false`, `status: null`
/// and an error saying why (rolled back with the change set, or not run
/// after an earlier failure). `atomic` says the writes ran as one change
/// set, so one failure means none of them was applied.
pub fn item_results(items: &[BatchItem], atomic: bool, assigned: &Assigned) -> Vec<ItemResult> {
    let failed_write = items
        .iter()
        .zip(&assigned.slots)
        .position(|(item, slot)| {
            item.action.is_write() && slot.as_ref().is_some_and(|r| !r.is_success())
        })
        .or_else(|| {
            // An error Dataverse did not tie to an item still fails the change set.
            assigned
                .unplaced
                .iter()
                .any(|r| !r.is_success())
                .then_some(usize::MAX)
        });
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut out = ItemResult {
                index: i,
                action: item.action.key(),
                collection: item.collection.as_str().to_string(),
                ..ItemResult::default()
            };
            let slot = assigned.slots.get(i).and_then(Option::as_ref);
            let rolled_back = atomic && item.action.is_write() && failed_write.is_some_and(|f| f != i);
            match slot {
                Some(r) if r.is_success() && !rolled_back => {
                    out.status = Some(r.status);
                    out.success = true;
                    if let Some(url) = r.entity_id_url() {
                        out.id = id_from_entity_url(url);
                        out.entity_url = Some(url.to_string());
                    }
                    out.record = r.json();
                }
                Some(r) if !r.is_success() => {
                    out.status = Some(r.status);
                    out.error = Some(r.error().and_then(|e| serde_json::to_value(e).ok()).unwrap_or(Value::Null));
                }
                _ => {
                    let why = if rolled_back {
                        match failed_write {
                            Some(f) if f != usize::MAX => format!("rolled back: batchActions[{f}] failed and the change set is all or nothing"),
                            _ => "rolled back: the change set failed and is all or nothing".to_string(),
                        }
                    } else {
                        "not run: the batch stopped at an earlier failure (set continueOnError to run every item)".to_string()
                    };
                    out.error = Some(serde_json::json!({"message": why}));
                }
            }
            out
        })
        .collect()
}

/// One item's outcome in `runBatch`'s output, serialised as it is (a
/// 1,000-item batch built and then serialised a `Value` tree per item, which
/// showed in the benchmark). Fields are in the output's key order
/// (alphabetical, as serde_json's map wrote them); absent ones are left out,
/// except `status`, which is `null` for an item without an answer.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemResult {
    pub action: &'static str,
    /// `false` for an item that ran but got no response of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered: Option<bool>,
    /// The bulk message (`CreateMultiple`, …) the item travelled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulk: Option<&'static str>,
    pub collection: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome_unknown: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Value>,
    pub status: Option<u16>,
    pub success: bool,
}
