//! Files and images (issue #27): `uploadFile`, `downloadFile` and
//! `deleteFile` through the real component against the emulator's file
//! protocol (Microsoft Learn, "Use file column data" and "Use image column
//! data"), the protocol itself on the wire (chunk validation, ranges, block
//! downloads), and the CLI's `--file`/`--save`.
//!
//! Columns: account's file column `new_document` (MaxSizeInKB 102400),
//! account's image column `entityimage` (10240 KB, full-size images kept)
//! and contact's `entityimage` (no full-size images).

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::wire::{Req, Wire};
use common::{Env, request_header, web_api_requests};
use host_test::emulator::store::seed;
use host_test::emulator::{Faults, Injected, Trigger};
use serde_json::{Value, json};

const MIB: usize = 1 << 20;

/// Deterministic bytes that do not repeat with any short period.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A PNG signature and IHDR of `w`×`h`, then `extra` bytes (the emulator
/// reads no further than the header).
fn png(w: u32, h: u32, extra: usize) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    out.extend_from_slice(&w.to_be_bytes());
    out.extend_from_slice(&h.to_be_bytes());
    out.extend_from_slice(&bytes(extra, 7));
    out
}

fn upload_inputs(set: &str, id: &str, column: &str, name: &str, content: &[u8]) -> String {
    json!({"entityType": set, "entityId": id, "columnName": column,
        "fileName": name, "fileContent": B64.encode(content)})
    .to_string()
}

fn download_inputs(set: &str, id: &str, column: &str, size: Option<&str>) -> String {
    let mut inputs = json!({"entityType": set, "entityId": id, "columnName": column});
    if let Some(s) = size {
        inputs["imageSize"] = json!(s);
    }
    inputs.to_string()
}

fn content_of(out: &Value) -> Vec<u8> {
    B64.decode(out["fileContent"].as_str().expect("fileContent"))
        .expect("base64 fileContent")
}

/// The logged requests to a file column: (method, target, status).
fn file_requests(env: &Env, column: &str) -> Vec<host_test::emulator::LoggedRequest> {
    web_api_requests(env)
        .into_iter()
        .filter(|r| r.path().contains(&format!("/{column}")))
        .collect()
}

#[tokio::test]
async fn a_10_byte_file_round_trips_in_one_request() {
    let mut env = Env::new();
    let id = seed::account_id(1);
    let data = b"0123456789".to_vec();
    let out = env
        .ok(
            "uploadFile",
            &upload_inputs("accounts", &id, "new_document", "ten.txt", &data),
        )
        .await;
    assert_eq!(out["fileName"], "ten.txt");
    assert_eq!(out["fileSize"], 10);
    assert_eq!(out["chunks"], 1);
    let record = env
        .ok(
            "getEntity",
            &json!({"entityType": "accounts", "entityId": id, "fieldNames": ["new_document", "new_document_name"]}).to_string(),
        )
        .await;
    assert_eq!(out["fileId"], record["new_document"], "{out} {record}");
    assert!(common::is_guid(&out["fileId"]));
    assert_eq!(record["new_document_name"], "ten.txt");
    let uploads = file_requests(&env, "new_document");
    assert_eq!(uploads.len(), 1);
    let put = &uploads[0];
    assert_eq!(put.method, "PATCH");
    assert_eq!(request_header(put, "x-ms-file-name"), Some("ten.txt"));
    assert_eq!(
        request_header(put, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(request_header(put, "content-range"), None);
    assert_eq!(&put.body[..], &data[..]);

    let got = env
        .ok(
            "downloadFile",
            &download_inputs("accounts", &id, "new_document", None),
        )
        .await;
    assert_eq!(content_of(&got), data);
    assert_eq!(got["fileName"], "ten.txt");
    assert_eq!(got["fileSize"], 10);
    assert_eq!(got["mimeType"], "text/plain");
}

#[tokio::test]
async fn a_20_mib_file_goes_in_chunks_and_round_trips_byte_for_byte() {
    let mut env = Env::new();
    let id = seed::account_id(2);
    let data = bytes(20 * MIB, 42);
    let out = env
        .ok(
            "uploadFile",
            &upload_inputs("accounts", &id, "new_document", "big.bin", &data),
        )
        .await;
    assert_eq!(out["fileSize"], 20 * MIB);
    assert_eq!(out["chunks"], 5);

    // The session, then five chunks of 4 MiB answered 206, 206, 206, 206, 204.
    let log = file_requests(&env, "new_document");
    assert_eq!(
        log.len(),
        6,
        "{:?}",
        log.iter().map(|r| &r.target).collect::<Vec<_>>()
    );
    assert_eq!(
        request_header(&log[0], "x-ms-transfer-mode"),
        Some("chunked")
    );
    assert!(
        log[0].target.contains("x-ms-file-name=big.bin"),
        "{}",
        log[0].target
    );
    assert_eq!(log[0].status, 200);
    for (n, chunk) in log[1..].iter().enumerate() {
        let start = n * 4 * MIB;
        let end = start + 4 * MIB - 1;
        assert_eq!(chunk.method, "PATCH");
        assert!(chunk.target.contains("sessiontoken="), "{}", chunk.target);
        assert_eq!(
            request_header(chunk, "content-range"),
            Some(format!("bytes {start}-{end}/{}", 20 * MIB).as_str())
        );
        assert_eq!(chunk.body_len, 4 * MIB);
        assert_eq!(chunk.status, if n == 4 { 204 } else { 206 });
    }
    assert_eq!(env.emulator.state().files.open_uploads(), 0);

    let got = env
        .ok(
            "downloadFile",
            &download_inputs("accounts", &id, "new_document", None),
        )
        .await;
    assert!(
        content_of(&got) == data,
        "the download differs from the upload"
    );
    assert_eq!(got["fileSize"], 20 * MIB);
    // Downloaded in 4 MiB ranges, each a 206.
    let gets: Vec<_> = file_requests(&env, "new_document")
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 5);
    for (n, get) in gets.iter().enumerate() {
        let start = n * 4 * MIB;
        assert_eq!(
            request_header(get, "range"),
            Some(format!("bytes={start}-{}", start + 4 * MIB - 1).as_str())
        );
        assert_eq!(get.status, 206);
    }
}

#[tokio::test]
async fn image_thumbnail_and_full_size_download() {
    let mut env = Env::new();
    let id = seed::account_id(3);
    let image = png(300, 428, 5000);
    let out = env
        .ok(
            "uploadFile",
            &upload_inputs("accounts", &id, "entityimage", "photo.png", &image),
        )
        .await;
    let record = env
        .ok(
            "getEntity",
            &json!({"entityType": "accounts", "entityId": id,
                "fieldNames": ["entityimage", "entityimageid", "entityimage_url"]})
            .to_string(),
        )
        .await;
    assert_eq!(out["fileId"], record["entityimageid"], "{out} {record}");
    let url = record["entityimage_url"].as_str().unwrap();
    assert!(
        url.starts_with("/Image/download.aspx?Entity=account&Attribute=entityimage&Id=")
            && url.contains(record["entityimageid"].as_str().unwrap()),
        "{url}"
    );

    let full = env
        .ok(
            "downloadFile",
            &download_inputs("accounts", &id, "entityimage", Some("full")),
        )
        .await;
    assert_eq!(content_of(&full), image);
    assert_eq!(full["mimeType"], "image/png");

    let thumb = env
        .ok(
            "downloadFile",
            &download_inputs("accounts", &id, "entityimage", None),
        )
        .await;
    let t = content_of(&thumb);
    // 144×144 (the resize rule for an image with a side above 144).
    assert!(t.starts_with(b"BM"), "a BMP thumbnail");
    assert_eq!(u32::from_le_bytes(t[18..22].try_into().unwrap()), 144);
    assert_eq!(u32::from_le_bytes(t[22..26].try_into().unwrap()), 144);
    assert_ne!(t, image);
    // The record's value is that thumbnail.
    assert_eq!(record["entityimage"], json!(B64.encode(&t)));
}

#[tokio::test]
async fn a_full_size_image_the_column_does_not_keep_is_a_clear_error() {
    let mut env = Env::new();
    let id = seed::contact_id(1);
    let image = png(60, 40, 100);
    env.ok(
        "uploadFile",
        &upload_inputs("contacts", &id, "entityimage", "face.png", &image),
    )
    .await;
    let e = env
        .err(
            "downloadFile",
            &download_inputs("contacts", &id, "entityimage", Some("full")),
        )
        .await;
    assert_eq!(e["kind"], "not-found", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("'entityimage'"),
        "{e}"
    );
    assert!(
        e["hint"].as_str().unwrap().contains("CanStoreFullImage"),
        "{e}"
    );
    // The thumbnail is there: 40×40, the smaller side of a small image.
    let thumb = env
        .ok(
            "downloadFile",
            &download_inputs("contacts", &id, "entityimage", Some("thumbnail")),
        )
        .await;
    let t = content_of(&thumb);
    assert_eq!(u32::from_le_bytes(t[18..22].try_into().unwrap()), 40);
}

#[tokio::test]
async fn delete_then_download_is_not_found() {
    let mut env = Env::new();
    let id = seed::account_id(4);
    env.ok(
        "uploadFile",
        &upload_inputs("accounts", &id, "new_document", "a.txt", b"some text"),
    )
    .await;
    let out = env
        .ok(
            "deleteFile",
            &json!({"entityType": "accounts", "entityId": id, "columnName": "new_document"})
                .to_string(),
        )
        .await;
    assert_eq!(out["deleted"], true);
    let deletes: Vec<_> = file_requests(&env, "new_document")
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].status, 204);
    let e = env
        .err(
            "downloadFile",
            &download_inputs("accounts", &id, "new_document", None),
        )
        .await;
    assert_eq!(e["kind"], "not-found", "{e}");
    assert!(e["hint"].as_str().unwrap().contains("new_document"), "{e}");
    let record = env
        .ok(
            "getEntity",
            &json!({"entityType": "accounts", "entityId": id, "fieldNames": ["new_document", "new_document_name"]}).to_string(),
        )
        .await;
    assert_eq!(record["new_document"], Value::Null);
    assert_eq!(record["new_document_name"], Value::Null);
}

#[tokio::test]
async fn an_oversized_file_is_refused_with_nothing_sent() {
    let mut env = Env::new();
    let id = seed::account_id(5);
    // entityimage takes at most 10240 KB.
    let image = png(200, 200, 10 * MIB);
    let size = image.len();
    let e = env
        .err(
            "uploadFile",
            &upload_inputs("accounts", &id, "entityimage", "huge.png", &image),
        )
        .await;
    assert_eq!(e["kind"], "invalid-input", "{e}");
    assert_eq!(e["input"], "fileContent", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{size} bytes")) && message.contains("10240 KB"),
        "{message}"
    );
    // Only the metadata was read: no request reached the column.
    let log = web_api_requests(&env);
    assert!(log.iter().all(|r| r.method == "GET"), "{log:?}");
    assert!(file_requests(&env, "entityimage").is_empty());
    assert!(
        log.iter()
            .any(|r| r.target.contains("ImageAttributeMetadata"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_503_on_chunk_3_is_retried_once_and_the_file_is_intact() {
    let mut env = Env::new();
    let id = seed::account_id(6);
    let data = bytes(13 * MIB + 5, 9);
    // Counted on the column's requests only: 1 = the session, 4 = chunk 3.
    env.emulator.set_faults(
        Faults::default()
            .with_error(
                Trigger::Nth(4),
                Injected::Unavailable {
                    retry_after_secs: None,
                },
            )
            .only_path("/new_document"),
    );
    let out = env
        .ok(
            "uploadFile",
            &upload_inputs("accounts", &id, "new_document", "r.bin", &data),
        )
        .await;
    assert_eq!(out["chunks"], 4);
    let ranges: Vec<(String, u16)> = file_requests(&env, "new_document")
        .iter()
        .filter_map(|r| Some((request_header(r, "content-range")?.to_string(), r.status)))
        .collect();
    let total = data.len();
    let chunk3 = format!("bytes {}-{}/{total}", 8 * MIB, 12 * MIB - 1);
    assert_eq!(
        ranges,
        vec![
            (format!("bytes 0-{}/{total}", 4 * MIB - 1), 206),
            (format!("bytes {}-{}/{total}", 4 * MIB, 8 * MIB - 1), 206),
            (chunk3.clone(), 503),
            (chunk3, 206),
            (format!("bytes {}-{}/{total}", 12 * MIB, total - 1), 204),
        ]
    );
    env.emulator.set_faults(Faults::default());
    let got = env
        .ok(
            "downloadFile",
            &download_inputs("accounts", &id, "new_document", None),
        )
        .await;
    assert!(content_of(&got) == data, "the file is not intact");
}

#[tokio::test]
async fn bad_inputs_are_invalid_input_errors_naming_the_input() {
    let mut env = Env::new();
    let id = seed::account_id(7);
    let cases = [
        (
            json!({"entityType": "accounts", "entityId": id, "columnName": "new_document",
                "fileName": "x.bin", "fileContent": "not base64!"}),
            "uploadFile",
            "fileContent",
            "base64",
        ),
        (
            json!({"entityType": "accounts", "entityId": id, "columnName": "name",
                "fileName": "x.bin", "fileContent": "aGk="}),
            "uploadFile",
            "columnName",
            "not a file or image column",
        ),
        (
            json!({"entityType": "accounts", "entityId": id, "columnName": "new_nosuch",
                "fileName": "x.bin", "fileContent": "aGk="}),
            "uploadFile",
            "columnName",
            "has no column 'new_nosuch'",
        ),
        (
            json!({"entityType": "accounts", "entityId": id, "columnName": "new document",
                "fileName": "x.bin", "fileContent": "aGk="}),
            "uploadFile",
            "columnName",
            "not a column logical name",
        ),
        (
            json!({"entityType": "accounts", "entityId": id, "columnName": "entityimage",
                "fileName": "x.txt", "fileContent": "aGk=", "mimeType": "text/plain"}),
            "uploadFile",
            "mimeType",
            "not an image type",
        ),
        (
            json!({"entityType": "accounts", "entityId": id, "columnName": "entityimage",
                "imageSize": "huge"}),
            "downloadFile",
            "imageSize",
            "thumbnail, full",
        ),
        (
            json!({"entityType": "accounts", "entityId": "not-an-id", "columnName": "new_document"}),
            "deleteFile",
            "entityId",
            "neither a GUID",
        ),
    ];
    for (inputs, action, input, text) in cases {
        let e = env.err(action, &inputs.to_string()).await;
        assert_eq!(e["kind"], "invalid-input", "{action} {inputs}: {e}");
        assert_eq!(e["input"], input, "{action} {inputs}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(text),
            "{action} {inputs}: {e}"
        );
    }
    // Nothing reached a column.
    assert!(
        web_api_requests(&env)
            .iter()
            .all(|r| r.path().contains("EntityDefinitions")),
        "{:?}",
        web_api_requests(&env)
    );
}

#[tokio::test]
async fn alternate_keys_and_data_urls_work_and_allowed_operations_apply() {
    let mut env = Env::new();
    let number = "A-8";
    let data = bytes(1000, 3);
    let inputs = json!({"entityType": "accounts", "entityId": format!("accountnumber='{number}'"),
        "columnName": "new_document", "fileName": "k.bin",
        "fileContent": format!("data:application/octet-stream;base64,{}", B64.encode(&data))});
    env.ok("uploadFile", &inputs.to_string()).await;
    let got = env
        .ok(
            "downloadFile",
            &download_inputs(
                "accounts",
                &format!("accountnumber='{number}'"),
                "new_document",
                None,
            ),
        )
        .await;
    assert_eq!(content_of(&got), data);

    env.connection
        .settings
        .insert("allowedOperations".into(), json!(["downloadFile"]));
    let e = env.err("uploadFile", &inputs.to_string()).await;
    assert_eq!(e["kind"], "forbidden", "{e}");
    let before = web_api_requests(&env).len();
    let e = env
        .err(
            "deleteFile",
            &json!({"entityType": "accounts", "entityId": seed::account_id(8), "columnName": "new_document"}).to_string(),
        )
        .await;
    assert_eq!(e["kind"], "forbidden", "{e}");
    assert_eq!(web_api_requests(&env).len(), before);
}

// ------------------------------------------------ the protocol on the wire

/// Starts a chunked upload of `total` bytes to account 9's `new_document`;
/// returns the session's URL.
async fn session(wire: &Wire) -> String {
    let reply = wire
        .send(
            Req::new(
                "PATCH",
                format!(
                    "accounts({})/new_document?x-ms-file-name=w.bin",
                    seed::account_id(9)
                ),
            )
            .header("x-ms-transfer-mode", "chunked")
            .bytes(Vec::new()),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-ms-chunk-size"), Some("4194304"));
    assert_eq!(reply.header("accept-ranges"), Some("bytes"));
    let location = reply.header("location").expect("Location").to_string();
    assert!(location.contains("sessiontoken="), "{location}");
    location
}

fn chunk(location: &str, range: &str, body: &[u8]) -> Req {
    Req::new("PATCH", location.to_string())
        .header("Content-Type", "application/octet-stream")
        .header("x-ms-file-name", "w.bin")
        .header("Content-Range", range.to_string())
        .bytes(body.to_vec())
}

#[tokio::test]
async fn chunks_with_a_gap_an_overlap_or_another_total_are_refused() {
    let env = Env::new();
    let wire = Wire::new(&env).await;
    let location = session(&wire).await;
    let data = bytes(30, 1);
    let ok = wire
        .send(chunk(&location, "bytes 0-9/30", &data[..10]))
        .await;
    assert_eq!(ok.status, 206);
    for (range, body, what) in [
        ("bytes 15-24/30", &data[15..25], "gap"),
        ("bytes 5-14/30", &data[5..15], "overlap"),
        ("bytes 0-9/30", &data[..10], "the same chunk again"),
        ("bytes 10-19/31", &data[10..20], "another total"),
        ("bytes 10-19/30", &data[10..15], "a length mismatch"),
        ("10-19", &data[10..20], "no unit"),
    ] {
        let reply = wire.send(chunk(&location, range, body)).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.body);
        assert!(reply.at("/error/code").is_string(), "{what}");
    }
    let next = wire
        .send(chunk(&location, "bytes 10-19/30", &data[10..20]))
        .await;
    assert_eq!(next.status, 206);
    let last = wire
        .send(chunk(&location, "bytes 20-29/30", &data[20..]))
        .await;
    assert_eq!(last.status, 204);
    // The file is exactly the three chunks, once each.
    let whole = wire
        .send(Req::get(format!(
            "accounts({})/new_document/$value",
            seed::account_id(9)
        )))
        .await;
    assert_eq!(whole.status, 200);
    assert_eq!(&whole.raw[..], &data[..]);
    assert_eq!(whole.header("x-ms-file-size"), Some("30"));
    assert_eq!(whole.header("x-ms-file-name"), Some("w.bin"));
    // An unknown session.
    let stale = wire
        .send(chunk(&location, "bytes 0-9/30", &data[..10]))
        .await;
    assert_eq!(stale.status, 400);
}

#[tokio::test]
async fn ranges_answer_206_and_the_size_limits_have_their_documented_codes() {
    let env = Env::new();
    let wire = Wire::new(&env).await;
    let location = session(&wire).await;
    let data = bytes(100, 5);
    assert_eq!(
        wire.send(chunk(&location, "bytes 0-99/100", &data))
            .await
            .status,
        204
    );
    let value = format!("accounts({})/new_document/$value", seed::account_id(9));
    let part = wire
        .send(Req::get(value.clone()).header("Range", "bytes=10-19"))
        .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 10-19/100"));
    assert_eq!(part.header("x-ms-file-size"), Some("100"));
    assert_eq!(part.header("x-ms-chunk-size"), Some("4194304"));
    assert_eq!(&part.raw[..], &data[10..20]);
    let tail = wire
        .send(Req::get(value.clone()).header("Range", "bytes=90-"))
        .await;
    assert_eq!(&tail.raw[..], &data[90..]);
    let past = wire
        .send(Req::get(value).header("Range", "bytes=100-"))
        .await;
    assert_eq!(past.status, 416);

    // File: MaxSizeInKB 102400 → 0x80044a02 at the first chunk's total.
    let location = session(&wire).await;
    let too_big = wire
        .send(chunk(
            &location,
            &format!("bytes 0-9/{}", 102_400 * 1024 + 1),
            &data[..10],
        ))
        .await;
    assert_eq!(too_big.status, 400);
    assert_eq!(too_big.at("/error/code"), "0x80044a02");
    assert_eq!(
        too_big.at("/error/message"),
        "Attachment file size is too big."
    );
    // Image: 10240 KB → ProcessImageFailure, and a non-image too.
    let image = format!("accounts({})/entityimage", seed::account_id(9));
    let big = wire
        .send(
            Req::new("PATCH", image.clone())
                .header("x-ms-file-name", "big.png")
                .bytes(png(10, 10, 10 * MIB)),
        )
        .await;
    assert_eq!(big.status, 400);
    assert_eq!(big.at("/error/code"), "0x80072553");
    let text = wire
        .send(
            Req::new("PATCH", image)
                .header("x-ms-file-name", "a.txt")
                .bytes(b"plain text".to_vec()),
        )
        .await;
    assert_eq!(text.status, 400);
    assert_eq!(text.at("/error/code"), "0x80072553");
}

#[tokio::test]
async fn block_downloads_and_image_metadata() {
    let env = Env::new();
    let wire = Wire::new(&env).await;
    let id = seed::account_id(10);
    let data = bytes(10_000, 11);
    let put = wire
        .send(
            Req::new("PATCH", format!("accounts({id})/new_document"))
                .header("x-ms-file-name", "b.bin")
                .bytes(data.clone()),
        )
        .await;
    assert_eq!(put.status, 204);
    let init = wire
        .send(
            Req::new("POST", "InitializeFileBlocksDownload").json(json!({
            "Target": {"accountid": id, "@odata.type": "Microsoft.Dynamics.CRM.account"},
            "FileAttributeName": "new_document"})),
        )
        .await;
    assert_eq!(init.status, 200, "{}", init.body);
    assert_eq!(init.at("/FileSizeInBytes"), 10_000);
    assert_eq!(init.at("/FileName"), "b.bin");
    assert_eq!(init.at("/IsChunkingSupported"), true);
    let token = init.string("/FileContinuationToken");
    let mut got = Vec::new();
    for offset in (0..10_000).step_by(4096) {
        let block = wire
            .send(Req::new("POST", "DownloadBlock").json(json!({
                "Offset": offset, "BlockLength": 4096, "FileContinuationToken": token})))
            .await;
        assert_eq!(block.status, 200);
        got.extend(B64.decode(block.string("/Data")).unwrap());
    }
    assert_eq!(got, data);
    // An image column without a full-size image: ObjectDoesNotExist.
    let contact = seed::contact_id(2);
    wire.send(
        Req::new("PATCH", format!("contacts({contact})/entityimage"))
            .header("x-ms-file-name", "c.png")
            .bytes(png(10, 10, 10)),
    )
    .await;
    let none = wire
        .send(
            Req::new("POST", "InitializeFileBlocksDownload").json(json!({
            "Target": {"contactid": contact, "@odata.type": "Microsoft.Dynamics.CRM.contact"},
            "FileAttributeName": "entityimage"})),
        )
        .await;
    assert_eq!(none.at("/error/code"), "0x80040217", "{}", none.body);
    // What the connector's size check reads.
    let meta = wire
        .send(Req::get(
            "EntityDefinitions(LogicalName='account')/Attributes(LogicalName='entityimage')/Microsoft.Dynamics.CRM.ImageAttributeMetadata?$select=MaxSizeInKB,CanStoreFullImage",
        ))
        .await;
    assert_eq!(meta.at("/MaxSizeInKB"), 10_240);
    assert_eq!(meta.at("/CanStoreFullImage"), true);
    let meta = wire
        .send(Req::get(
            "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='entityimage')/Microsoft.Dynamics.CRM.ImageAttributeMetadata?$select=CanStoreFullImage",
        ))
        .await;
    assert_eq!(meta.at("/CanStoreFullImage"), false);
}

// ------------------------------------------------------------------ CLI

#[test]
fn cli_file_and_save_round_trip_a_binary_file() {
    use sha2::{Digest, Sha256};
    let dir = std::env::temp_dir().join(format!("d365-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conn = dir.join("conn.json");
    let mut server = common::spawn_cli_emulator(&[], &conn);
    let source = dir.join("report.pdf");
    let data = bytes(5 * MIB + 3, 77);
    std::fs::write(&source, &data).unwrap();
    let id = seed::account_id(11);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_d365"))
            .args(args)
            .output()
            .expect("d365 runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON on stdout")
    };
    let inputs = json!({"entityType": "accounts", "entityId": id, "columnName": "new_document",
        "fileName": "report.pdf"})
    .to_string();
    let file_arg = format!("fileContent={}", source.display());
    let up = run(&[
        "run",
        "uploadFile",
        "--connection",
        conn.to_str().unwrap(),
        "--input",
        &inputs,
        "--file",
        &file_arg,
    ]);
    assert_eq!(up["fileSize"], data.len());
    assert_eq!(up["chunks"], 2);
    let saved = dir.join("out.pdf");
    let inputs =
        json!({"entityType": "accounts", "entityId": id, "columnName": "new_document"}).to_string();
    let down = run(&[
        "run",
        "downloadFile",
        "--connection",
        conn.to_str().unwrap(),
        "--input",
        &inputs,
        "--save",
        saved.to_str().unwrap(),
    ]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(down.get("fileContent").is_none(), "{down}");
    assert_eq!(down["savedBytes"], data.len());
    assert_eq!(down["fileName"], "report.pdf");
    assert_eq!(down["mimeType"], "application/pdf");
    let written = std::fs::read(&saved).unwrap();
    assert_eq!(Sha256::digest(&written), Sha256::digest(&data));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
