//! `rawRequest` through the real component against the emulator: methods,
//! URL resolution, query parameters and headers, the four kinds of body,
//! response types, and input errors.
//!
//! Writes go to a real entity set (`accounts`, served by the record store)
//! and are checked by reading the record back; the file-column upload goes
//! to the File column `new_document` of account and is read back through
//! `…/new_document/$value`. `PublishAllXml` (POST → 204, any body) stays the
//! target of the form and multipart tests, which only check what was sent.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Env, host};
use host_test::emulator::data;
use host_test::emulator::store::seed;
use serde_json::{Value, json};

/// An entity set: POST creates a record (204 with OData-EntityId).
const WRITE_TARGET: &str = "/api/data/v9.2/accounts";
/// A POST target that takes any body and answers 204.
const ANY_BODY_TARGET: &str = "/api/data/v9.2/PublishAllXml";
/// The File column of a seeded account.
fn file_column() -> String {
    format!(
        "/api/data/v9.2/accounts({})/new_document",
        seed::account_id(3)
    )
}

/// Every request the emulator received but token requests: rawRequest can
/// reach paths outside `/api/data/`, so this is wider than
/// `common::web_api_requests`.
fn sent_requests(env: &Env) -> Vec<host_test::emulator::LoggedRequest> {
    env.emulator
        .log()
        .into_iter()
        .filter(|r| !r.is_token_request())
        .collect()
}

#[tokio::test]
async fn raw_get_resolves_paths_and_returns_status_headers_and_body() {
    let mut env = Env::new();
    for url in [
        "/api/data/v9.2/WhoAmI",
        "WhoAmI",
        "/WhoAmI()",
        "http://localhost/api/data/v9.2/WhoAmI",
    ] {
        let out = env.ok("rawRequest", &json!({"url": url}).to_string()).await;
        assert_eq!(out["status"], 200, "{url}");
        assert_eq!(out["body"]["UserId"], data::USER_APP, "{url}");
        assert_eq!(out["headers"]["odata-version"], "4.0");
        assert!(
            out["headers"]["content-type"]
                .as_str()
                .unwrap()
                .starts_with("application/json")
        );
    }
    let paths: Vec<String> = sent_requests(&env)
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(
        paths,
        [
            "GET /api/data/v9.2/WhoAmI",
            "GET /api/data/v9.2/WhoAmI",
            "GET /api/data/v9.2/WhoAmI()",
            "GET /api/data/v9.2/WhoAmI",
        ]
    );
}

#[tokio::test]
async fn raw_post_sends_json_and_returns_the_empty_answer() {
    let mut env = Env::new();
    let out = env
        .ok(
            "rawRequest",
            &json!({"url": WRITE_TARGET, "method": "POST", "data": {"name": "Raw O'Post", "numberofemployees": 7}})
                .to_string(),
        )
        .await;
    assert_eq!(out["status"], 204);
    assert_eq!(out["body"], Value::Null);
    let entity_id = out["headers"]["odata-entityid"]
        .as_str()
        .expect("OData-EntityId names the new record")
        .to_string();
    let log = sent_requests(&env);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].path(), WRITE_TARGET);
    assert_eq!(
        log[0].header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let sent: Value = serde_json::from_slice(&log[0].body).unwrap();
    assert_eq!(sent, json!({"name": "Raw O'Post", "numberofemployees": 7}));

    // The record exists: read it back through the URL the server gave.
    let got = env
        .ok("rawRequest", &json!({"url": entity_id}).to_string())
        .await;
    assert_eq!(got["body"]["name"], "Raw O'Post");
    assert_eq!(got["body"]["numberofemployees"], 7);

    // The server's 400 for an unknown column is a typed error.
    let err = env
        .err(
            "rawRequest",
            &json!({"url": WRITE_TARGET, "method": "post", "data": {"nosuchcolumn": 1}})
                .to_string(),
        )
        .await;
    assert_eq!(err["kind"], "dataverse");
    assert_eq!(err["status"], 400);
    assert_eq!(err["code"], "0x80060888");
}

/// The front end (HTTP.sys) answers 411 Length Required to a POST, PUT or
/// PATCH that declares no length, and so does the emulator. Without a body
/// the component sends `Content-Length: 0`; with one, hyper sends it
/// chunked. In-process and over loopback, where hyper frames it for real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_a_body_declares_length_zero_and_one_with_a_body_is_chunked() {
    let mut in_process = Env::new();
    let mut loopback = Env::new();
    let server = host_test::emulator::server::serve(loopback.emulator.clone(), 0)
        .await
        .unwrap();
    loopback.route = host_test::host::Route::Network;
    loopback.connection = host_test::cli::emulator_connection(&server.base_url());
    for env in [&mut in_process, &mut loopback] {
        let out = env
            .ok(
                "rawRequest",
                &json!({"url": ANY_BODY_TARGET, "method": "POST"}).to_string(),
            )
            .await;
        assert_eq!(out["status"], 204, "{out}");
        // PublishAllXml is POST only: past the length check, 405.
        for method in ["PUT", "PATCH"] {
            let err = env
                .err(
                    "rawRequest",
                    &json!({"url": ANY_BODY_TARGET, "method": method}).to_string(),
                )
                .await;
            assert_eq!(err["status"], 405, "{method}: {err}");
        }
        env.ok(
            "rawRequest",
            &json!({"url": ANY_BODY_TARGET, "method": "POST", "data": {"a": 1}}).to_string(),
        )
        .await;
        let log = sent_requests(env);
        let framing: Vec<_> = log
            .iter()
            .map(|r| {
                (
                    r.method.as_str(),
                    r.header("content-length"),
                    r.header("transfer-encoding"),
                )
            })
            .collect();
        assert_eq!(
            framing,
            [
                ("POST", Some("0"), None),
                ("PUT", Some("0"), None),
                ("PATCH", Some("0"), None),
                ("POST", None, Some("chunked")),
            ]
        );
    }
    // What the emulator does with a write that declares no length.
    let (status, _, body) = common::http_send(
        &format!("{}{ANY_BODY_TARGET}", server.base_url()),
        http::Method::POST,
    )
    .await;
    assert_eq!(status, 411);
    assert!(String::from_utf8_lossy(&body).contains("HTTP Error 411"));
    server.shutdown();
}

#[tokio::test]
async fn raw_patch_and_delete_change_the_record() {
    let mut env = Env::new();
    let created = env
        .ok(
            "createEntity",
            r#"{"entityType":"accounts","fieldValues":{"name":"Before"}}"#,
        )
        .await;
    let id = created["id"].as_str().expect("an id").to_string();
    let url = format!("/api/data/v9.2/accounts({id})");
    env.emulator.clear_log();

    let out = env
        .ok(
            "rawRequest",
            &json!({"url": url, "method": "PATCH", "data": {"name": "After"},
                    "headers": [{"key": "If-Match", "value": "*"}]})
            .to_string(),
        )
        .await;
    assert_eq!(out["status"], 204);
    let got = env
        .ok(
            "rawRequest",
            &json!({"url": format!("{url}?$select=name")}).to_string(),
        )
        .await;
    assert_eq!(got["body"]["name"], "After");

    let out = env
        .ok(
            "rawRequest",
            &json!({"url": url, "method": "DELETE"}).to_string(),
        )
        .await;
    assert_eq!(out["status"], 204);
    let err = env
        .err("rawRequest", &json!({"url": url}).to_string())
        .await;
    assert_eq!(err["status"], 404);
    assert_eq!(err["code"], "0x80040217");

    let sent: Vec<(String, String)> = sent_requests(&env)
        .iter()
        .map(|r| (r.method.clone(), r.path().to_string()))
        .collect();
    assert_eq!(
        sent,
        [
            ("PATCH".to_string(), url.clone()),
            ("GET".to_string(), url.clone()),
            ("DELETE".to_string(), url.clone()),
            ("GET".to_string(), url.clone()),
        ]
    );
}

#[tokio::test]
async fn put_options_and_head_reach_the_server_with_their_method() {
    let mut env = Env::new();
    let account = format!("/api/data/v9.2/accounts({})", seed::account_id(1));
    for method in ["PUT", "OPTIONS"] {
        let err = env
            .err(
                "rawRequest",
                &json!({"url": account, "method": method, "data": {"x": 1}}).to_string(),
            )
            .await;
        assert_eq!(err["status"], 405, "{method}");
        assert!(
            err["message"].as_str().unwrap().contains(method),
            "{method}: {err}"
        );
    }
    let err = env
        .err("rawRequest", r#"{"url":"WhoAmI","method":"HEAD"}"#)
        .await;
    assert_eq!(err["status"], 405);
    let sent: Vec<(String, Vec<u8>)> = sent_requests(&env)
        .iter()
        .map(|r| (r.method.clone(), r.body.to_vec()))
        .collect();
    let body = br#"{"x":1}"#.to_vec();
    assert_eq!(
        sent,
        [
            ("PUT".to_string(), body.clone()),
            ("OPTIONS".to_string(), body),
            ("HEAD".to_string(), Vec::new()),
        ]
    );
}

#[tokio::test]
async fn another_host_is_refused_before_anything_is_sent() {
    let mut env = Env::new();
    for url in [
        "https://evil.example/api/data/v9.2/WhoAmI",
        "//evil.example/api/data/v9.2/WhoAmI",
        "http://localhost:8081/api/data/v9.2/WhoAmI",
    ] {
        let err = env
            .err("rawRequest", &json!({"url": url}).to_string())
            .await;
        assert_eq!(err["kind"], "invalid-input", "{url}");
        assert_eq!(err["input"], "url", "{url}");
    }
    assert!(
        env.emulator.log().is_empty(),
        "not even a token request went out"
    );
}

#[tokio::test]
async fn query_params_and_headers_round_trip() {
    let mut env = Env::new();
    let inputs = json!({
        "url": "WhoAmI?x=1",
        "queryParams": [
            {"key": "$select", "value": "UserId"},
            {"key": "tag", "value": "a b&c+d"},
            {"key": "tag", "value": 2},
            {"key": "$filter", "value": "name eq 'O''Neil'"}
        ],
        "headers": [
            {"key": "Prefer", "value": "odata.include-annotations=\"*\""},
            {"key": "X-Custom", "value": "one"},
            {"key": "X-Custom", "value": "two"},
            {"key": "Accept", "value": "application/json;odata.metadata=full"}
        ]
    });
    let out = env.ok("rawRequest", &inputs.to_string()).await;
    assert_eq!(out["status"], 200);
    let log = sent_requests(&env);
    assert_eq!(
        log[0].target,
        "/api/data/v9.2/WhoAmI?x=1&$select=UserId&tag=a%20b%26c%2Bd&tag=2&$filter=name%20eq%20%27O%27%27Neil%27"
    );
    let values = |name: &str| -> Vec<&str> {
        log[0]
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("x-custom"), ["one", "two"]);
    assert_eq!(values("prefer"), ["odata.include-annotations=\"*\""]);
    assert_eq!(
        values("accept"),
        ["application/json;odata.metadata=full"],
        "a given Accept replaces the default"
    );
    assert_eq!(values("odata-version"), ["4.0"]);
    assert_eq!(values("authorization"), ["Bearer ***"]);

    // A header the connection owns is refused, naming the item.
    let err = env
        .err(
            "rawRequest",
            r#"{"url":"WhoAmI","headers":[{"key":"X-Ok","value":"1"},{"key":"Authorization","value":"Bearer stolen"}]}"#,
        )
        .await;
    assert_eq!(err["input"], "headers[1]");
    // A plain object is accepted for key/value lists.
    env.ok(
        "rawRequest",
        r#"{"url":"WhoAmI","queryParams":{"a":"1"},"headers":{"X-Obj":"y"}}"#,
    )
    .await;
    let last = sent_requests(&env).pop().unwrap();
    assert!(last.target.ends_with("WhoAmI?a=1"));
    assert_eq!(last.header("x-obj"), Some("y"));
}

#[tokio::test]
async fn form_data_is_sent_form_urlencoded() {
    let mut env = Env::new();
    let out = env
        .ok(
            "rawRequest",
            &json!({
                "url": ANY_BODY_TARGET,
                "method": "POST",
                "formData": [{"key": "a", "value": 1}, {"key": "b", "value": "x y&z"}, {"key": "a", "value": "again"}]
            })
            .to_string(),
        )
        .await;
    assert_eq!(out["status"], 204);
    let log = sent_requests(&env);
    assert_eq!(
        log[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(&log[0].body[..], b"a=1&b=x+y%26z&a=again");
}

/// Splits a multipart/form-data body into (headers, content) parts.
fn parts(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delimiter = format!("--{boundary}");
    let text = body.to_vec();
    let mut out = Vec::new();
    let mut rest = &text[..];
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        rest = rest.strip_prefix(b"\r\n").expect("CRLF after delimiter");
        let head_end = find(rest, b"\r\n\r\n").expect("part headers");
        let head = String::from_utf8(rest[..head_end].to_vec()).unwrap();
        rest = &rest[head_end + 4..];
        let end = find(rest, format!("\r\n{delimiter}").as_bytes()).expect("part end");
        out.push((head, rest[..end].to_vec()));
        rest = &rest[end + 2..];
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn file_data_is_sent_as_multipart_form_data() {
    let mut env = Env::new();
    let binary: Vec<u8> = (0..=255u8).collect();
    let out = env
        .ok(
            "rawRequest",
            &json!({
                "url": ANY_BODY_TARGET,
                "method": "POST",
                "formData": [{"key": "note", "value": "two files"}],
                "fileData": [B64.encode("hello"), format!("data:application/octet-stream;base64,{}", B64.encode(&binary))],
                "fileDataFileNames": ["hello.txt", "all-bytes.bin"]
            })
            .to_string(),
        )
        .await;
    assert_eq!(out["status"], 204);
    let log = sent_requests(&env);
    let content_type = log[0].header("content-type").unwrap();
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .expect("multipart content type");
    let parts = parts(&log[0].body, boundary);
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert_eq!(parts[0].0, "Content-Disposition: form-data; name=\"note\"");
    assert_eq!(parts[0].1, b"two files");
    assert_eq!(
        parts[1].0,
        "Content-Disposition: form-data; name=\"file\"; filename=\"hello.txt\"\r\nContent-Type: text/plain"
    );
    assert_eq!(parts[1].1, b"hello");
    assert!(parts[2].0.contains("filename=\"all-bytes.bin\""));
    assert_eq!(parts[2].1, binary, "binary content arrives byte for byte");
}

#[tokio::test]
async fn file_column_upload_sends_the_raw_bytes_with_x_ms_file_name() {
    let mut env = Env::new();
    let column = file_column();
    let pdf = b"%PDF-1.7\n\x00\x01\x02binary\xff".to_vec();
    let out = env
        .ok(
            "rawRequest",
            &json!({
                "url": column,
                "method": "PATCH",
                "headers": [{"key": "x-ms-file-name", "value": "report.pdf"}],
                "fileData": B64.encode(&pdf),
                "fileDataFileNames": ["report.pdf"]
            })
            .to_string(),
        )
        .await;
    assert_eq!(out["status"], 204, "{out}");
    let log = sent_requests(&env);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].method, "PATCH");
    assert_eq!(log[0].path(), column);
    assert_eq!(log[0].header("x-ms-file-name"), Some("report.pdf"));
    assert_eq!(
        log[0].header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(&log[0].body[..], &pdf[..]);

    // Read back: the bytes, and the record's file id and name.
    let back = env
        .ok(
            "rawRequest",
            &json!({"url": format!("{column}/$value"), "responseType": "binary"}).to_string(),
        )
        .await;
    assert_eq!(back["status"], 200);
    assert_eq!(back["headers"]["x-ms-file-name"], "report.pdf");
    assert_eq!(back["headers"]["x-ms-file-size"], pdf.len().to_string());
    let bytes = B64
        .decode(back["body"].as_str().expect("base64 body"))
        .unwrap();
    assert_eq!(bytes, pdf, "byte for byte");
    let record = env
        .ok(
            "getEntity",
            &json!({"entityType": "accounts", "entityId": seed::account_id(3),
                    "fieldNames": ["new_document", "new_document_name"]})
            .to_string(),
        )
        .await;
    assert!(common::is_guid(&record["new_document"]), "{record}");
    assert_eq!(record["new_document_name"], "report.pdf");

    // Without the file name header Dataverse refuses the upload.
    let err = env
        .err(
            "rawRequest",
            &json!({"url": column, "method": "PATCH", "fileData": B64.encode(b"x"),
                    "fileDataFileNames": ["x.bin"]})
            .to_string(),
        )
        .await;
    assert_eq!(err["status"], 400, "{err}");
    // Deleting the file empties the column.
    env.ok(
        "rawRequest",
        &json!({"url": column, "method": "DELETE"}).to_string(),
    )
    .await;
    let err = env
        .err(
            "rawRequest",
            &json!({"url": format!("{column}/$value")}).to_string(),
        )
        .await;
    assert_eq!(err["status"], 404, "{err}");
}

#[tokio::test]
async fn a_non_json_body_with_response_type_json_is_an_error_showing_its_start() {
    let mut env = Env::new();
    let column = file_column();
    env.ok(
        "rawRequest",
        &json!({"url": column, "method": "PATCH",
                "headers": [{"key": "x-ms-file-name", "value": "notes.txt"}],
                "fileData": B64.encode(b"plain text, not JSON at all"),
                "fileDataFileNames": ["notes.txt"]})
        .to_string(),
    )
    .await;
    let err = env
        .err(
            "rawRequest",
            &json!({"url": format!("{column}/$value"), "responseType": "json"}).to_string(),
        )
        .await;
    assert_ne!(err["kind"], "invalid-input", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or("")
            .contains("plain text, not JSON"),
        "shows the first bytes: {err}"
    );
    let text = env
        .ok(
            "rawRequest",
            &json!({"url": format!("{column}/$value"), "responseType": "text"}).to_string(),
        )
        .await;
    assert_eq!(text["body"], "plain text, not JSON at all");
}

#[tokio::test]
async fn response_types_text_and_binary() {
    let mut env = Env::new();
    let text = env
        .ok("rawRequest", r#"{"url":"WhoAmI","responseType":"text"}"#)
        .await;
    let body = text["body"].as_str().expect("text body");
    let parsed: Value = serde_json::from_str(body).unwrap();
    assert_eq!(parsed["UserId"], data::USER_APP);

    let binary = env
        .ok("rawRequest", r#"{"url":"WhoAmI","responseType":"binary"}"#)
        .await;
    let bytes = B64
        .decode(binary["body"].as_str().expect("base64 body"))
        .unwrap();
    assert_eq!(bytes, body.as_bytes());
    assert_eq!(binary["status"], 200);
    assert!(binary["headers"]["content-type"].is_string());
}

#[tokio::test]
async fn raw_request_deprecated_behaves_the_same_and_is_marked() {
    let mut env = Env::new();
    let out = env
        .ok(
            "rawRequestDeprecated",
            r#"{"url":"WhoAmI","queryParams":[{"key":"a","value":"b"}]}"#,
        )
        .await;
    assert_eq!(out["body"]["UserId"], data::USER_APP);
    let described = host().describe().await.unwrap();
    let table = host_test::cli::catalog_table(&described).unwrap();
    let line = table
        .lines()
        .find(|l| l.starts_with("rawRequestDeprecated "))
        .expect("listed by d365 actions");
    assert!(line.ends_with("(deprecated)"), "{line}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("rawRequest ") && !l.contains("deprecated"))
    );
    let catalog: Value = serde_json::from_str(&described).unwrap();
    let action = |key: &str| {
        catalog["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .cloned()
            .unwrap()
    };
    assert_eq!(action("rawRequestDeprecated")["deprecated"], true);
    assert!(action("rawRequest").get("deprecated").is_none());
    assert_eq!(
        action("rawRequest")["inputs"],
        action("rawRequestDeprecated")["inputs"],
        "same inputs"
    );
    let raw_request = action("rawRequest");
    let keys: Vec<&str> = raw_request["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "url",
            "method",
            "data",
            "formData",
            "fileData",
            "fileDataFileNames",
            "queryParams",
            "headers",
            "responseType",
            "timeout",
            "retryDelayMs",
            "retryAllErrors",
            "maxRetries",
            "useExponentialBackoff"
        ]
    );
}

#[tokio::test]
async fn bad_inputs_name_the_input_and_send_nothing() {
    let mut env = Env::new();
    for (inputs, input) in [
        (json!({}), "url"),
        (json!({"url": "WhoAmI", "method": "FETCH"}), "method"),
        (
            json!({"url": "WhoAmI", "responseType": "xml"}),
            "responseType",
        ),
        (json!({"url": "WhoAmI", "maxRetries": -1}), "maxRetries"),
        (json!({"url": "WhoAmI", "timeout": 0}), "timeout"),
        (
            json!({"url": "WhoAmI", "fileData": "not base64!"}),
            "fileData",
        ),
        (
            json!({"url": "WhoAmI", "fileData": ["aGk=", 3]}),
            "fileData[1]",
        ),
        (
            json!({"url": "WhoAmI", "fileData": "aGk=", "fileDataFileNames": ["a", "b"]}),
            "fileDataFileNames",
        ),
        (
            json!({"url": "WhoAmI", "data": "x", "formData": {"a": "b"}}),
            "data",
        ),
        (
            json!({"url": "WhoAmI", "headers": [{"key": "Bad Name", "value": "1"}]}),
            "headers[0]",
        ),
    ] {
        let err = env.err("rawRequest", &inputs.to_string()).await;
        assert_eq!(err["kind"], "invalid-input", "{inputs}: {err}");
        assert_eq!(err["input"], input, "{inputs}: {err}");
    }
    assert!(sent_requests(&env).is_empty());
}
