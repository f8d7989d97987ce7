//! The OData `$batch` wire format as Dataverse speaks it (reference §5):
//! encoding a `multipart/mixed` request (individual parts and change sets),
//! decoding the response (nested `changesetresponse_` parts included) into
//! one result per part, and the `batchActions` item model that turns a
//! workflow's list of operations into parts.
//!
//! How `runBatch` uses it: [`parse_items`] (validates everything before
//! sending) → [`build_parts`] (Content-ID = item index + 1) → [`encode`] →
//! `POST $batch` (with `Prefer: odata.continue-on-error` when asked) →
//! [`decode`] whatever the status → [`assign_to_items`] → [`item_results`].
//!
//! Decoding never panics and never indexes by input: a truncated or
//! malformed response is a `transport` error. Both directions are linear in
//! the body size (a 1,000-part batch is one pass).
//!
//! One file per step: `items` (the item model, validation, parts),
//! `request` (encoding), `response` (decoding), `results` (back in item
//! order). The unit tests below cover them together.

/// Dataverse's limit on requests per batch (reference §5.1).
pub const MAX_REQUESTS: usize = 1000;

/// The input key the item model's errors name (`batchActions[3].key`).
pub const INPUT: &str = "batchActions";

mod items;
mod request;
mod response;
mod results;

pub use items::*;
pub use request::*;
pub use response::*;
pub use results::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ConnectorError, ErrorKind};
    use serde_json::Value;
    use serde_json::json;
    use std::cell::Cell;

    thread_local! {
        /// Bytes examined by `find_byte` on this thread.
        pub(super) static SCANNED: Cell<usize> = const { Cell::new(0) };
    }

    /// Reference §5.2, byte for byte in shape (Microsoft's `$batch` doc).
    const MS_RESPONSE: &str = "--batchresponse_4d2e6c1a-0000-4b5c-9d00-112233445566\r
Content-Type: multipart/mixed; boundary=changesetresponse_8e1f0000-aaaa-4bbb-8ccc-ddddeeeeffff\r
\r
--changesetresponse_8e1f0000-aaaa-4bbb-8ccc-ddddeeeeffff\r
Content-Type: application/http\r
Content-Transfer-Encoding: binary\r
Content-ID: 1\r
\r
HTTP/1.1 204 No Content\r
OData-Version: 4.0\r
Location: https://contoso.crm.dynamics.com/api/data/v9.2/accounts(aa000000-0000-0000-0000-000000000001)\r
OData-EntityId: https://contoso.crm.dynamics.com/api/data/v9.2/accounts(aa000000-0000-0000-0000-000000000001)\r
\r
\r
--changesetresponse_8e1f0000-aaaa-4bbb-8ccc-ddddeeeeffff\r
Content-Type: application/http\r
Content-Transfer-Encoding: binary\r
Content-ID: 2\r
\r
HTTP/1.1 204 No Content\r
OData-Version: 4.0\r
Location: https://contoso.crm.dynamics.com/api/data/v9.2/contacts(cc000000-0000-0000-0000-000000000002)\r
OData-EntityId: https://contoso.crm.dynamics.com/api/data/v9.2/contacts(cc000000-0000-0000-0000-000000000002)\r
\r
\r
--changesetresponse_8e1f0000-aaaa-4bbb-8ccc-ddddeeeeffff--\r
--batchresponse_4d2e6c1a-0000-4b5c-9d00-112233445566\r
Content-Type: application/http\r
Content-Transfer-Encoding: binary\r
\r
HTTP/1.1 200 OK\r
Content-Type: application/json; odata.metadata=minimal; odata.streaming=true\r
OData-Version: 4.0\r
\r
{\"@odata.context\":\"https://contoso.crm.dynamics.com/api/data/v9.2/$metadata#accounts(name)\",\"value\":[{\"@odata.etag\":\"W/\\\"900\\\"\",\"name\":\"Batch Parent\",\"accountid\":\"aa000000-0000-0000-0000-000000000001\"}]}\r
--batchresponse_4d2e6c1a-0000-4b5c-9d00-112233445566--\r
";
    const MS_CONTENT_TYPE: &str =
        "multipart/mixed; boundary=batchresponse_4d2e6c1a-0000-4b5c-9d00-112233445566";

    /// Reference §5.3: stop at the first failure, only the failing part.
    const MS_ERROR: &str = "--batchresponse_156da4b8-cd2b-4c1b-a3ba-f2ed5d1b2ff1\r
Content-Type: application/http\r
Content-Transfer-Encoding: binary\r
\r
HTTP/1.1 400 Bad Request\r
REQ_ID: 5ecd1cb3-1730-4ffc-909c-d44c22270026\r
Content-Type: application/json; odata.metadata=minimal\r
OData-Version: 4.0\r
\r
{\"error\":{\"code\":\"0x80044331\",\"message\":\"A validation error occurred.  The length of the 'subject' attribute of the 'task' entity exceeded the maximum allowed length of '200'.\"}}\r
--batchresponse_156da4b8-cd2b-4c1b-a3ba-f2ed5d1b2ff1--\r
";

    fn input_of(e: &ConnectorError) -> String {
        match &e.kind {
            ErrorKind::InvalidInput { input } => input.clone(),
            other => panic!("expected invalid-input, got {other:?}: {}", e.message),
        }
    }

    #[test]
    fn decodes_microsofts_example_response() {
        let parts = decode(MS_CONTENT_TYPE, MS_RESPONSE.as_bytes()).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].status, 204);
        assert!(parts[0].in_changeset);
        assert_eq!(parts[0].content_id.as_deref(), Some("1"));
        assert_eq!(
            parts[0].entity_id_url(),
            Some(
                "https://contoso.crm.dynamics.com/api/data/v9.2/accounts(aa000000-0000-0000-0000-000000000001)"
            )
        );
        assert_eq!(
            parts[0].header("location"),
            parts[0].header("OData-EntityId")
        );
        assert!(parts[0].body.is_empty());
        assert_eq!(parts[1].content_id.as_deref(), Some("2"));
        assert!(
            parts[1]
                .entity_id_url()
                .unwrap()
                .contains("contacts(cc000000")
        );
        assert_eq!(parts[2].status, 200);
        assert!(!parts[2].in_changeset);
        assert_eq!(parts[2].content_id, None);
        let json = parts[2].json().unwrap();
        assert_eq!(json["value"][0]["name"], "Batch Parent");
        assert_eq!(json["value"][0]["@odata.etag"], "W/\"900\"");
    }

    #[test]
    fn same_response_with_bare_lf_and_quoted_boundary() {
        let lf = MS_RESPONSE.replace("\r\n", "\n");
        let ct = "multipart/mixed; boundary=\"batchresponse_4d2e6c1a-0000-4b5c-9d00-112233445566\"";
        let crlf = decode(MS_CONTENT_TYPE, MS_RESPONSE.as_bytes()).unwrap();
        assert_eq!(decode(ct, lf.as_bytes()).unwrap(), crlf);
    }

    #[test]
    fn decodes_microsofts_error_example() {
        let ct = "multipart/mixed; boundary=batchresponse_156da4b8-cd2b-4c1b-a3ba-f2ed5d1b2ff1";
        let parts = decode(ct, MS_ERROR.as_bytes()).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].status, 400);
        assert_eq!(
            parts[0].header("REQ_ID"),
            Some("5ecd1cb3-1730-4ffc-909c-d44c22270026")
        );
        let e = parts[0].error().unwrap();
        assert_eq!(e.code.as_deref(), Some("0x80044331"));
        assert_eq!(e.status, Some(400));
        assert!(
            e.message
                .starts_with("A validation error occurred.  The length")
        );
        assert!(
            decode(MS_CONTENT_TYPE, MS_RESPONSE.as_bytes()).unwrap()[0]
                .error()
                .is_none()
        );
    }

    #[test]
    fn truncated_or_malformed_responses_are_transport_errors() {
        let cut_points = [10, 200, MS_RESPONSE.len() / 2, MS_RESPONSE.len() - 60];
        for cut in cut_points {
            let e = decode(MS_CONTENT_TYPE, &MS_RESPONSE.as_bytes()[..cut]).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Transport, "cut at {cut}");
        }
        // Every prefix: never a panic, and never a result when the close delimiter is missing.
        for cut in 0..MS_RESPONSE.len() - 3 {
            assert!(
                decode(MS_CONTENT_TYPE, &MS_RESPONSE.as_bytes()[..cut]).is_err(),
                "cut {cut}"
            );
        }
        for (ct, body) in [
            ("application/json", MS_RESPONSE),
            ("multipart/mixed", MS_RESPONSE),
            (
                MS_CONTENT_TYPE,
                "--batchresponse_4d2e6c1a-0000-4b5c-9d00-112233445566\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 abc OK\r\n\r\n--batchresponse_4d2e6c1a-0000-4b5c-9d00-112233445566--",
            ),
            (
                MS_CONTENT_TYPE,
                "--batchresponse_4d2e6c1a-0000-4b5c-9d00-112233445566\r\nContent-Type: application/http\r\n\r\ngarbage\r\n--batchresponse_4d2e6c1a-0000-4b5c-9d00-112233445566--",
            ),
            (
                MS_CONTENT_TYPE,
                "--batchresponse_4d2e6c1a-0000-4b5c-9d00-112233445566\r\nContent-Type: multipart/mixed\r\n\r\n--batchresponse_4d2e6c1a-0000-4b5c-9d00-112233445566--",
            ),
        ] {
            let e = decode(ct, body.as_bytes()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Transport, "{ct}");
        }
        // Arbitrary bytes never panic.
        let mut junk: Vec<u8> = MS_RESPONSE.bytes().collect();
        for i in (0..junk.len()).step_by(7) {
            junk[i] = (i % 256) as u8;
            let _ = decode(MS_CONTENT_TYPE, &junk);
        }
    }

    fn req(method: &'static str, url: &str, body: Option<Value>, id: Option<&str>) -> InnerRequest {
        InnerRequest {
            method,
            url: url.into(),
            headers: vec![],
            body: body.map(|b| b.to_string()),
            content_id: id.map(str::to_string),
        }
    }

    #[test]
    fn encodes_parts_changesets_and_long_gets() {
        let long_url = format!("/api/data/v9.2/accounts?fetchXml={}", "%3C".repeat(20_000));
        let parts = vec![
            BatchPart::ChangeSet(vec![
                req(
                    "POST",
                    "/api/data/v9.2/accounts",
                    Some(json!({"name": "Batch Parent"})),
                    Some("1"),
                ),
                req(
                    "POST",
                    "/api/data/v9.2/contacts",
                    Some(json!({"lastname": "Child", "parentcustomerid_account@odata.bind": "$1"})),
                    Some("2"),
                ),
            ]),
            BatchPart::Request(InnerRequest {
                headers: vec![("Prefer".into(), "odata.include-annotations=\"*\"".into())],
                ..req("GET", &long_url, None, None)
            }),
        ];
        let enc = encode(&parts);
        let text = String::from_utf8(enc.body.clone()).unwrap();
        let boundary = boundary_of(&enc.content_type).unwrap();
        assert!(boundary.starts_with("batch_"));
        assert_eq!(encode(&parts), enc, "deterministic");
        assert!(text.starts_with(&format!(
            "--{boundary}\r\nContent-Type: multipart/mixed; boundary=changeset_"
        )));
        assert!(text.contains("Content-ID: 1\r\n\r\nPOST /api/data/v9.2/accounts HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{\"name\":\"Batch Parent\"}\r\n--changeset_"));
        assert!(text.contains("\"parentcustomerid_account@odata.bind\":\"$1\""));
        assert!(text.contains(&format!("GET {long_url} HTTP/1.1\r\nPrefer: odata.include-annotations=\"*\"\r\n\r\n\r\n--{boundary}--\r\n")));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "CRLF line endings only"
        );
    }

    /// A tiny emulated server: turns each request part of an encoded batch
    /// into a response part, so encoder and decoder are tested against each
    /// other at 1,000 parts.
    #[test]
    fn a_boundary_found_in_the_content_is_not_used() {
        let first = candidate_token(7);
        let content = format!("GET x HTTP/1.1\r\n\r\n{{\"note\":\"--batch_{first}000000000000\"}}");
        let chosen = first_absent_token(7, content.as_bytes());
        assert_ne!(chosen, first);
        assert_eq!(chosen, candidate_token(8));
        // Content holding the next candidates too: a token is built that no
        // token-shaped run in it can match, in linear time.
        let mut content = String::new();
        for h in 7..47 {
            content.push_str(&format!("x{}y", candidate_token(h)));
        }
        let built = first_absent_token(7, content.as_bytes());
        assert!(is_token_shaped(built.as_bytes()));
        assert!(!content.contains(&built));
        // Even when the runs crowd one prefix: 2,000 second groups taken.
        let mut crowded = String::new();
        for p in 0..=u16::MAX {
            crowded.push_str(&format!("{p:04x}0000-0000-0000-0000-\n"));
        }
        for q in 0..2000u32 {
            crowded.push_str(&format!("00000000-{q:04x}-0000-0000-\n"));
        }
        let built = constructed_token(7, crowded.as_bytes());
        assert!(is_token_shaped(built.as_bytes()));
        assert!(!crowded.contains(&built), "{built}");
        // The token is GUID-shaped and every boundary of an encoding shares it.
        assert_eq!(first.len(), TOKEN_LEN);
        assert!(is_token_shaped(first.as_bytes()));
        let enc = encode(&[BatchPart::ChangeSet(vec![req(
            "POST",
            "/x",
            None,
            Some("1"),
        )])]);
        let batch = boundary_of(&enc.content_type).unwrap();
        let token = batch.strip_prefix("batch_").unwrap().get(..24).unwrap();
        let text = String::from_utf8(enc.body).unwrap();
        assert!(text.contains(&format!("boundary=changeset_{token}")));
    }

    fn echo_server(enc: &EncodedBatch) -> (String, Vec<u8>) {
        let boundary = boundary_of(&enc.content_type).unwrap();
        let mut out = String::new();
        let parts = split_multipart(&enc.body, &boundary).unwrap();
        for part in parts {
            let (head, content) = split_head(part);
            let id = header_lines(head)
                .find(|(k, _)| k.eq_ignore_ascii_case(b"Content-ID"))
                .map(|(_, v)| text(v));
            let line =
                String::from_utf8_lossy(content.split(|b| *b == b'\n').next().unwrap()).to_string();
            out.push_str("--batchresponse_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
            if let Some(id) = &id {
                out.push_str(&format!("Content-ID: {id}\r\n"));
            }
            out.push_str(&format!(
                "\r\nHTTP/1.1 204 No Content\r\nOData-EntityId: {}\r\n\r\n\r\n",
                line.split(' ').nth(1).unwrap()
            ));
        }
        out.push_str("--batchresponse_x--\r\n");
        (
            "multipart/mixed; boundary=batchresponse_x".into(),
            out.into_bytes(),
        )
    }

    #[test]
    fn thousand_parts_round_trip_in_linear_work() {
        let items: Vec<Value> = (0..MAX_REQUESTS)
            .map(|i| json!({"collection": "accounts", "action": "create", "data": {"name": format!("Account {i}"), "description": "x".repeat(200)}}))
            .collect();
        let list = Value::Array(items);
        let items = parse_value(&list, false).unwrap();
        let parts = build_parts(&items, "/api/data/v9.2/", false);
        assert_eq!(parts.len(), MAX_REQUESTS);
        let enc = encode(&parts);
        let (ct, body) = echo_server(&enc);
        SCANNED.with(|c| c.set(0));
        let decoded = decode(&ct, &body).unwrap();
        let scanned = SCANNED.with(|c| c.get());
        assert_eq!(decoded.len(), MAX_REQUESTS);
        let assigned = assign_to_items(items.len(), decoded);
        assert!(assigned.unplaced.is_empty());
        for (i, r) in assigned.slots.iter().enumerate() {
            let r = r.as_ref().unwrap();
            assert_eq!(r.content_id.as_deref(), Some((i + 1).to_string().as_str()));
            assert_eq!(r.status, 204);
        }
        // Linear, counted not timed: each byte of the body is examined a
        // small constant number of times (a quadratic splitter would
        // rescan the remaining body per part: ~500× the body here).
        assert!(
            scanned <= 3 * body.len(),
            "scanned {scanned} bytes of a {}-byte body",
            body.len()
        );
        let boundary = boundary_of(&enc.content_type).unwrap();
        let text = String::from_utf8(enc.body).unwrap();
        assert_eq!(
            text.matches(&format!("--{boundary}\r\n")).count(),
            MAX_REQUESTS
        );
    }

    #[test]
    fn assign_handles_stop_at_first_failure() {
        let ct = "multipart/mixed; boundary=batchresponse_156da4b8-cd2b-4c1b-a3ba-f2ed5d1b2ff1";
        let mut parts = decode(ct, MS_ERROR.as_bytes()).unwrap();
        // Without an echoed Content-ID the failing item cannot be known: not guessed.
        let a = assign_to_items(5, parts.clone());
        assert!(a.slots.iter().all(Option::is_none));
        assert_eq!(a.unplaced.len(), 1);
        parts[0].content_id = Some("3".into());
        let a = assign_to_items(5, parts);
        assert!(a.unplaced.is_empty());
        let slots = a.slots;
        assert!(
            slots[0].is_none() && slots[1].is_none() && slots[3].is_none() && slots[4].is_none()
        );
        assert_eq!(slots[2].as_ref().unwrap().status, 400);
    }

    fn items5() -> Vec<BatchItem<'static>> {
        parse_owned(
            json!([
                {"collection": "accounts", "action": "create", "data": {"name": "A"}},
                {"collection": "contacts", "action": "create", "data": {"lastname": "C", "parentcustomerid_account@odata.bind": "$1"}},
                {"collection": "accounts", "action": "create", "data": {"name": "B"}},
                {"collection": "accounts", "action": "create", "data": {"name": "C"}},
                {"collection": "accounts", "action": "get", "query": "$top=1"}
            ]),
            true,
        )
    }

    #[test]
    fn results_per_item_for_a_successful_changeset() {
        let parts = decode(MS_CONTENT_TYPE, MS_RESPONSE.as_bytes()).unwrap();
        let items: Vec<BatchItem> = items5()
            .into_iter()
            .take(2)
            .chain(items5().into_iter().skip(4))
            .collect();
        // The GET has no Content-ID in Microsoft's example: it is the one
        // response left for the one empty slot.
        let a = assign_to_items(items.len(), parts);
        let results = serde_json::to_value(item_results(&items, true, &a)).unwrap();
        assert_eq!(results.as_array().unwrap().len(), 3);
        assert_eq!(results[0]["success"], true);
        assert_eq!(results[0]["status"], 204);
        assert_eq!(results[0]["id"], "aa000000-0000-0000-0000-000000000001");
        assert_eq!(results[1]["id"], "cc000000-0000-0000-0000-000000000002");
        assert_eq!(results[2]["action"], "get");
        assert_eq!(results[2]["record"]["value"][0]["name"], "Batch Parent");
    }

    #[test]
    fn results_when_item_3_of_5_fails_atomically() {
        let ct = "multipart/mixed; boundary=batchresponse_156da4b8-cd2b-4c1b-a3ba-f2ed5d1b2ff1";
        let mut parts = decode(ct, MS_ERROR.as_bytes()).unwrap();
        parts[0].content_id = Some("3".into());
        let items = items5();
        let results = serde_json::to_value(item_results(
            &items,
            true,
            &assign_to_items(items.len(), parts.clone()),
        ))
        .unwrap();
        assert_eq!(results[2]["success"], false);
        assert_eq!(results[2]["status"], 400);
        assert_eq!(results[2]["error"]["code"], "0x80044331");
        for i in [0, 1, 3] {
            assert_eq!(results[i]["success"], false, "{i}");
            assert!(
                results[i]["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("batchActions[2] failed"),
                "{}",
                results[i]
            );
        }
        assert!(
            results[4]["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("not run")
        );
        // The same failure without an echoed Content-ID: every write rolled back.
        parts[0].content_id = None;
        let results = serde_json::to_value(item_results(
            &items,
            true,
            &assign_to_items(items.len(), parts),
        ))
        .unwrap();
        for r in &results.as_array().unwrap()[..4] {
            assert_eq!(r["success"], false);
            assert!(
                r["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("rolled back"),
                "{r}"
            );
        }
    }

    #[test]
    fn entity_url_ids() {
        assert_eq!(
            id_from_entity_url(
                "https://x/api/data/v9.2/accounts(AA000000-0000-0000-0000-000000000001)"
            )
            .as_deref(),
            Some("aa000000-0000-0000-0000-000000000001")
        );
        assert_eq!(
            id_from_entity_url("https://x/api/data/v9.2/accounts(accountnumber='1')"),
            None
        );
        assert_eq!(id_from_entity_url("nonsense"), None);
    }

    #[test]
    fn items_become_the_right_requests() {
        let items = parse_owned(
            json!([
                {"collection": "accounts", "action": "create", "data": {"name": "A"}, "returnRepresentation": true},
                {"collection": "contacts", "action": "create", "data": {"lastname": "C", "parentcustomerid_account@odata.bind": "$1"}},
                {"collection": "accounts", "action": "update", "key": "{AA000000-0000-0000-0000-000000000001}", "data": {"name": "B"}},
                {"collection": "accounts", "action": "upsert", "key": {"accountnumber": "O'Neil/1 2"}, "data": {"name": "U"}},
                {"collection": "accounts", "action": "delete", "key": "accountnumber='X',region=2"},
                {"collection": "contacts", "action": "get", "query": "$select=fullname&$filter=emailaddress1 eq 'a&b@x.com'", "headers": {"Prefer": "odata.include-annotations=\"*\""}},
                {"collection": "contacts", "action": "update", "key": "$2", "data": {"firstname": "D"}, "headers": {"If-Match": "W/\"5\""}}
            ]),
            true,
        );
        let r: Vec<InnerRequest> = items
            .iter()
            .enumerate()
            .map(|(i, it)| it.to_request("/api/data/v9.2/", i + 1))
            .collect();
        assert_eq!(
            (r[0].method, r[0].url.as_str()),
            ("POST", "/api/data/v9.2/accounts")
        );
        assert_eq!(
            r[0].headers,
            vec![("Prefer".to_string(), "return=representation".to_string())]
        );
        assert_eq!(
            serde_json::from_str::<Value>(r[1].body.as_ref().unwrap()).unwrap()["parentcustomerid_account@odata.bind"],
            "$1"
        );
        assert_eq!(
            (r[2].method, r[2].url.as_str()),
            (
                "PATCH",
                "/api/data/v9.2/accounts(aa000000-0000-0000-0000-000000000001)"
            )
        );
        assert_eq!(
            r[2].headers,
            vec![("If-Match".to_string(), "*".to_string())]
        );
        assert_eq!(
            r[3].url,
            "/api/data/v9.2/accounts(accountnumber='O''Neil%2F1%202')"
        );
        assert!(r[3].headers.is_empty(), "upsert has no If-Match");
        assert_eq!(
            (r[4].method, r[4].url.as_str()),
            (
                "DELETE",
                "/api/data/v9.2/accounts(accountnumber='X',region=2)"
            )
        );
        assert_eq!(r[4].body, None);
        assert_eq!(
            r[5].url,
            "/api/data/v9.2/contacts?$select=fullname&$filter=emailaddress1%20eq%20'a%26b@x.com'"
        );
        assert_eq!(r[6].url, "$2");
        assert_eq!(
            r[6].headers,
            vec![("If-Match".to_string(), "W/\"5\"".to_string())],
            "item header overrides"
        );
        assert_eq!(r[6].content_id.as_deref(), Some("7"));
        // Atomic: one change set at the first write, the GET after it.
        let parts = build_parts(&items, "/api/data/v9.2/", true);
        assert_eq!(parts.len(), 2);
        match &parts[0] {
            BatchPart::ChangeSet(rs) => assert_eq!(rs.len(), 6),
            other => panic!("{other:?}"),
        }
        assert!(matches!(&parts[1], BatchPart::Request(r) if r.method == "GET"));
    }

    #[test]
    fn item_errors_name_index_and_field() {
        let cases: Vec<(Value, bool, &str)> = vec![
            (
                json!([{"collection": "accounts", "action": "update", "data": {"a": 1}}]),
                false,
                "batchActions[0].key",
            ),
            (
                json!([{"collection": "accounts", "action": "create", "data": {"a": 1}}, {"collection": "accounts", "action": "delete"}]),
                false,
                "batchActions[1].key",
            ),
            (
                json!([{"collection": "accounts", "action": "create"}]),
                false,
                "batchActions[0].data",
            ),
            (
                json!([{"collection": "accounts", "action": "update", "key": "00000000-0000-0000-0000-000000000001"}]),
                false,
                "batchActions[0].data",
            ),
            (
                json!([{"collection": "accounts", "action": "merge", "key": "x"}]),
                false,
                "batchActions[0].action",
            ),
            (
                json!([{"collection": "accounts"}]),
                false,
                "batchActions[0].action",
            ),
            (
                json!([{"collection": "bad name", "action": "get"}]),
                false,
                "batchActions[0].collection",
            ),
            (
                json!([{"action": "get"}]),
                false,
                "batchActions[0].collection",
            ),
            (
                json!([{"collection": "a", "action": "get", "key": "not a key"}]),
                false,
                "batchActions[0].key",
            ),
            (
                json!([{"collection": "a", "action": "create", "key": "00000000-0000-0000-0000-000000000001", "data": {}}]),
                false,
                "batchActions[0].key",
            ),
            (
                json!([{"collection": "a", "action": "get", "colection": "x"}]),
                false,
                "batchActions[0].colection",
            ),
            (
                json!([{"collection": "a", "action": "get", "headers": {"X": "a\r\nInjected: 1"}}]),
                false,
                "batchActions[0].headers",
            ),
            (
                json!([{"collection": "a", "action": "get", "headers": {"Authorization": "Bearer x"}}]),
                false,
                "batchActions[0].headers",
            ),
            (
                json!([{"collection": "a", "action": "create", "data": {"x@odata.bind": "$1"}}]),
                true,
                "batchActions[0].data",
            ),
            (
                json!([{"collection": "a", "action": "create", "data": {"n": 1}}, {"collection": "b", "action": "create", "data": {"x@odata.bind": "$1"}}]),
                false,
                "batchActions[1].data",
            ),
            (
                json!([{"collection": "a", "action": "get"}, {"collection": "b", "action": "update", "key": "$1", "data": {"n": 1}}]),
                true,
                "batchActions[1].key",
            ),
            (
                json!([{"collection": "a", "action": "delete", "key": "00000000-0000-0000-0000-000000000001", "data": {"n": 1}}]),
                false,
                "batchActions[0].data",
            ),
            (
                json!([{"collection": "a", "action": "create", "data": {"n": 1}, "returnRepresentation": "maybe"}]),
                false,
                "batchActions[0].returnRepresentation",
            ),
            (json!([1]), false, "batchActions[0]"),
            (json!([]), false, "batchActions"),
            (json!({"collection": "a"}), false, "batchActions"),
        ];
        for (value, atomic, expected) in cases {
            let e = parse_value(&value, atomic).unwrap_err();
            assert_eq!(input_of(&e), expected, "{value}: {}", e.message);
        }
    }

    /// `text` as the raw JSON an input carries.
    fn raw_json(text: &str) -> Box<serde_json::value::RawValue> {
        serde_json::from_str(text).expect("test JSON")
    }

    #[test]
    fn data_travels_as_written() {
        // Key order, spacing and every digit of a decimal: an f64 round trip
        // would have sent 0.1 for this money value.
        let list = r#"[{"collection": "accounts", "action": "create",
            "data": {"revenue": 0.1000000000000000055, "name": "A", "b": [1, 2]}},
            {"collection": "accounts", "action": "create", "data": "{\"name\": \"B\"}"}]"#;
        let raw = raw_json(list);
        let items = parse_items(&raw, false).unwrap();
        let r = items[0].to_request("/api/data/v9.2/", 1);
        assert_eq!(
            r.body.as_deref(),
            Some(r#"{"revenue": 0.1000000000000000055, "name": "A", "b": [1, 2]}"#)
        );
        // A string holding an object (builders' text fields): its text.
        let r = items[1].to_request("/api/data/v9.2/", 2);
        assert_eq!(r.body.as_deref(), Some(r#"{"name": "B"}"#));
    }

    #[test]
    fn content_refs_are_found_however_written() {
        // `\u0024` is `$`: the reference is found and checked like `"$1"`.
        for data in [
            r#"{"x@odata.bind": "$1"}"#,
            r#"{"x@odata.bind": "\u00241"}"#,
            r#"{"x@odata.bind": ["/accounts(1)", "$1/y"]}"#,
        ] {
            let list = format!(
                r#"[{{"collection": "a", "action": "create", "data": {{"n": 1}}}},
                    {{"collection": "b", "action": "create", "data": {data}}}]"#
            );
            let raw = raw_json(&list);
            let e = parse_items(&raw, false).unwrap_err();
            assert_eq!(input_of(&e), "batchActions[1].data", "{data}");
            assert!(e.message.contains("change set"), "{data}: {}", e.message);
            let items = parse_items(&raw, true).unwrap();
            assert_eq!(items[1].referenced(), vec![1], "{data}");
            assert!(items[1].has_content_refs());
        }
        // A `$` that is not a reference's start is no reference.
        let items = parse_owned(
            json!([{"collection": "a", "action": "create", "data": {"price": "$5", "x@odata.bind": "/a(1)"}}]),
            false,
        );
        assert!(items[0].referenced().is_empty());
    }

    #[test]
    fn members_read_like_a_json_object() {
        // Duplicates: the last one counts; unknowns: the first by name.
        let raw = raw_json(r#"[{"action": "delete", "collection": "a", "action": "get"}]"#);
        assert_eq!(
            parse_items(&raw, false).unwrap()[0].action,
            BatchAction::Get
        );
        let raw = raw_json(r#"[{"zz": 1, "collection": "a", "action": "get", "ab": 2}]"#);
        assert_eq!(
            input_of(&parse_items(&raw, false).unwrap_err()),
            "batchActions[0].ab"
        );
        // Escaped member names and values are decoded.
        let raw = raw_json(
            r#"[{"\u0061ction": "g\u0065t", "collection": "accounts", "query": "$top=1"}]"#,
        );
        let items = parse_items(&raw, false).unwrap();
        assert_eq!(items[0].action, BatchAction::Get);
        assert_eq!(items[0].query.as_deref(), Some("$top=1"));
    }

    #[test]
    fn more_than_a_thousand_items_is_invalid_input() {
        let one = json!({"collection": "accounts", "action": "create", "data": {"name": "x"}});
        let ok = Value::Array(vec![one.clone(); MAX_REQUESTS]);
        assert_eq!(parse_value(&ok, false).unwrap().len(), MAX_REQUESTS);
        let too_many = Value::Array(vec![one; MAX_REQUESTS + 1]);
        let e = parse_value(&too_many, false).unwrap_err();
        assert_eq!(input_of(&e), "batchActions");
        assert!(e.message.contains("1001"), "{}", e.message);
        // A JSON string holding the array is accepted too (builders send strings).
        let s = Value::String(json!([{"collection": "accounts", "action": "get"}]).to_string());
        assert_eq!(parse_value(&s, false).unwrap()[0].action, BatchAction::Get);
        // Spaces around it are fine; broken JSON text says so.
        let padded = Value::String(format!(" {} \n", s.as_str().unwrap()));
        assert_eq!(parse_value(&padded, false).unwrap().len(), 1);
        let e = parse_value(&Value::String("[{\"collection\": ".into()), false).unwrap_err();
        assert_eq!(input_of(&e), "batchActions");
        assert!(e.message.contains("is not a JSON array"), "{}", e.message);
        let e = parse_value(&Value::String("{}".into()), false).unwrap_err();
        assert!(e.message.contains("must be an array"), "{}", e.message);
    }
}
