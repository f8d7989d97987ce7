//! The emulator's `$batch` endpoint over a real loopback socket, with a
//! bearer token the real component obtained (getCurrentUser). The batch
//! bodies are written by hand here; the `runBatch` action comes with the
//! record store. Also checks that the component's own `$batch` codec and
//! the emulator agree on the wire format.

mod common;

use bytes::Bytes;
use common::host;
use d365_connector::batch as codec;
use host_test::cli;
use host_test::emulator::{self, data};
use host_test::host::Route;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// Starts a loopback emulator and gets a token through the component.
async fn setup() -> (emulator::server::Server, String) {
    let emu = emulator::Emulator::new(Default::default());
    let server = emulator::server::serve(emu, 0).await.unwrap();
    let conn = cli::emulator_connection(&server.base_url());
    let result = host()
        .invoke(
            &Route::Network,
            "getCurrentUser",
            &conn.connection().unwrap(),
            "{}",
        )
        .await
        .unwrap()
        .expect("getCurrentUser");
    let token = result.state.expect("a fresh token").access_token;
    (server, token)
}

/// `POST /api/data/v9.2/$batch` over a socket.
async fn post_batch(
    server: &emulator::server::Server,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
    prefer: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let authority = server.addr.to_string();
    let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::post("/api/data/v9.2/$batch")
        .header("Host", authority)
        .header("Authorization", format!("Bearer {token}"))
        .header("OData-Version", "4.0")
        .header("OData-MaxVersion", "4.0")
        .header("Accept", "application/json")
        .header("Content-Type", content_type);
    if let Some(p) = prefer {
        req = req.header("Prefer", p);
    }
    let res = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, ct, body)
}

/// A hand-written batch: GET parts, CRLF line endings.
fn get_batch(urls: &[&str]) -> Vec<u8> {
    let mut body = String::new();
    for url in urls {
        body.push_str(&format!(
            "--batch_e2e\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET {url} HTTP/1.1\r\nAccept: application/json\r\n\r\n\r\n"
        ));
    }
    body.push_str("--batch_e2e--\r\n");
    body.into_bytes()
}

/// Minimal reading of a response: (status line code, part text) per part,
/// change sets not expected here.
fn parts(content_type: &str, body: &[u8]) -> Vec<(u16, String)> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .unwrap()
        .trim_matches('"');
    assert!(boundary.starts_with("batchresponse_"), "{boundary}");
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    text.split(&format!("--{boundary}"))
        .filter(|p| p.starts_with("\r\nContent-Type: application/http"))
        .map(|p| {
            let status_line = p.lines().find(|l| l.starts_with("HTTP/1.1 ")).unwrap();
            let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
            (status, p.to_string())
        })
        .collect()
}

const WHOAMI: &str = "/api/data/v9.2/WhoAmI";
const MISSING: &str = "/api/data/v9.2/nosuchentities";

#[tokio::test]
async fn batch_of_who_am_i_gets_with_a_failing_part_in_both_error_modes() {
    let (server, token) = setup().await;
    let body = get_batch(&[WHOAMI, "WhoAmI()", MISSING, WHOAMI]);
    let ct = "multipart/mixed; boundary=\"batch_e2e\"";

    // Default: stop at the first failure; outer status = that failure's.
    let (status, rct, rbody) = post_batch(&server, &token, ct, body.clone(), None).await;
    assert_eq!(status, 404);
    let got = parts(&rct, &rbody);
    assert_eq!(got.len(), 1, "only the failing part is returned");
    assert_eq!(got[0].0, 404);
    assert!(got[0].1.contains("\r\nREQ_ID: "), "{}", got[0].1);
    assert!(
        got[0]
            .1
            .contains("Resource not found for the segment 'nosuchentities'."),
        "{}",
        got[0].1
    );
    assert!(got[0].1.contains("\"code\":\"0x8006088a\""));

    // continue-on-error: every part runs, outer 200, per-part statuses.
    let (status, rct, rbody) =
        post_batch(&server, &token, ct, body, Some("odata.continue-on-error")).await;
    assert_eq!(status, 200);
    let got = parts(&rct, &rbody);
    let statuses: Vec<u16> = got.iter().map(|p| p.0).collect();
    assert_eq!(statuses, vec![200, 200, 404, 200]);
    for (i, (_, text)) in got.iter().enumerate().filter(|(_, p)| p.0 == 200) {
        let json = text.split("\r\n\r\n").nth(2).unwrap().trim();
        let v: Value =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("part {i}: {e}: {json}"));
        assert_eq!(v["UserId"], data::USER_APP, "part {i} ran as the caller");
    }
    assert!(!got[3].1.contains("REQ_ID"), "REQ_ID only on errors");
    server.shutdown();
}

#[tokio::test]
async fn batch_errors_before_anything_runs() {
    let (server, token) = setup().await;
    let ct = "multipart/mixed; boundary=batch_e2e";
    // More than 1000 requests.
    let urls = vec![WHOAMI; 1001];
    let (status, _, body) = post_batch(&server, &token, ct, get_batch(&urls), None).await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("1000"));
    // A Content-ID reference before its declaration, inside a change set.
    let cs = "--batch_e2e\r\nContent-Type: multipart/mixed; boundary=changeset_1\r\n\r\n--changeset_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nPATCH $1 HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{\"name\":\"x\"}\r\n--changeset_1--\r\n--batch_e2e--\r\n";
    let (status, rct, rbody) = post_batch(&server, &token, ct, cs.into(), None).await;
    assert_eq!(status, 400);
    let got = parts(&rct, &rbody);
    assert!(
        got[0]
            .1
            .contains("Content-ID Reference: '$1' does not exist in the batch context."),
        "{}",
        got[0].1
    );
    // A truncated body.
    let mut cut = get_batch(&[WHOAMI]);
    cut.truncate(cut.len() - 10);
    let (status, _, _) = post_batch(&server, &token, ct, cut, None).await;
    assert_eq!(status, 400);
    server.shutdown();
}

/// The component's encoder and decoder (native build of the same code the
/// `.wasm` runs) against the emulator: the wire formats agree.
#[tokio::test]
async fn component_codec_and_emulator_agree() {
    let (server, token) = setup().await;
    let list = serde_json::json!([
        {"collection": "WhoAmI", "action": "get"},
        {"collection": "nosuchentities", "action": "get", "query": "$select=name&$filter=name eq 'a b'"},
        {"collection": "WhoAmI", "action": "get"}
    ]);
    let items = codec::parse_value(&list, false).unwrap();
    let parts = codec::build_parts(&items, "/api/data/v9.2/", false);
    let encoded = codec::encode(&parts);
    let (status, rct, rbody) = post_batch(
        &server,
        &token,
        &encoded.content_type,
        encoded.body,
        Some("odata.continue-on-error"),
    )
    .await;
    assert_eq!(status, 200);
    let decoded = codec::decode(&rct, &rbody).unwrap();
    let assigned = codec::assign_to_items(items.len(), decoded);
    assert!(
        assigned.unplaced.is_empty(),
        "every response carries its Content-ID"
    );
    let slots = &assigned.slots;
    let statuses: Vec<u16> = slots.iter().map(|s| s.as_ref().unwrap().status).collect();
    assert_eq!(statuses, vec![200, 404, 200]);
    let who = slots[0].as_ref().unwrap().json().unwrap();
    assert_eq!(who["UserId"], data::USER_APP);
    let err = slots[1].as_ref().unwrap().error().unwrap();
    assert_eq!(err.code.as_deref(), Some("0x8006088a"));
    assert!(slots[1].as_ref().unwrap().header("REQ_ID").is_some());
    let results = codec::item_results(&items, false, &assigned);
    assert!(results[0].success);
    let error = results[1]
        .error
        .as_ref()
        .expect("the 404 item has an error");
    assert_eq!(error["code"], "0x8006088a");
    server.shutdown();
}
