//! File and image columns: uploadFile, downloadFile and deleteFile over the
//! Web API's own file protocol (Microsoft Learn, "Use file column data",
//! https://learn.microsoft.com/power-apps/developer/data-platform/file-column-data,
//! and "Use image column data",
//! https://learn.microsoft.com/power-apps/developer/data-platform/image-column-data).
//!
//! - Upload: the column's `MaxSizeInKB` is read from metadata first, and an
//!   oversized file is refused before anything is sent. Up to [`CHUNK`]
//!   bytes go in one `PATCH …/<column>` (`x-ms-file-name`,
//!   `application/octet-stream`); larger files (and names outside ASCII,
//!   which only the query parameter carries) start a chunked session
//!   (`x-ms-transfer-mode: chunked` → `Location` with the session token and
//!   `x-ms-chunk-size`) and send `Content-Range` chunks, answered 206 and
//!   the last 204. Each chunk is decoded from the base64 input when it is
//!   sent, so the decoded file is never held whole; each is sent under the
//!   shared retry policy on its own (a 503 re-sends that chunk, never the
//!   file; an answer lost after sending is never repeated).
//! - Download: `GET …/<column>/$value` with `Range` requests of
//!   [`CHUNK`] bytes (206 and `x-ms-file-size`), or the whole file when the
//!   server answers 200; `?size=full` for a full-size image, which Dataverse
//!   answers 204 when the column keeps none (`CanStoreFullImage`).
//! - Delete: `DELETE …/<column>`.

use super::records::{entity_id, entity_type, key_of, set_of};
use crate::actions::action::Action;
use crate::actions::controls;
use crate::catalog::def::{ActionDef, InputDef, InputType, input};
use crate::client::{Session, answer_error};
use crate::controls::{Controls, OPERATION_KEYS};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::http::{Method, Response};
use crate::inputs::Inputs;
use crate::page::{MAX_OUTPUT_BYTES, Output};
use crate::rawjson;
use crate::types::{EntityKey, EntitySet, encode_query, is_identifier, string_literal};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde_json::{Value, json};
use std::borrow::Cow;

const ENTITY_TYPE: &str = "entityType";
const COLUMN_NAME: &str = "columnName";
const FILE_NAME: &str = "fileName";
const FILE_CONTENT: &str = "fileContent";
const MIME_TYPE: &str = "mimeType";
const IMAGE_SIZE: &str = "imageSize";

// imageSize's choices.
const THUMBNAIL: &str = "thumbnail";
const FULL: &str = "full";

/// Files up to this size go in one request, larger ones in chunks; also the
/// size of one download range. 4 MiB: the `x-ms-chunk-size` Dataverse
/// recommends and the block size of Learn's examples.
const CHUNK: usize = 4 << 20;

/// What a server's `x-ms-chunk-size` is held to: a tiny one would mean
/// thousands of requests, a huge one the whole file in memory twice.
const CHUNK_RANGE: (usize, usize) = (64 << 10, 16 << 20);

/// The MIME types an image column stores ("Use image column data", Image
/// file types).
const IMAGE_TYPES: [&str; 6] = [
    "image/gif",
    "image/jpeg",
    "image/tiff",
    "image/bmp",
    "image/png",
    "image/jpg",
];

fn column_name() -> InputDef {
    let text = "The file or image column's logical name, e.g. new_document, or entityimage (the record's primary image).";
    input(COLUMN_NAME, "Column Name", InputType::String, text)
        .required()
        .example(json!("new_document"))
}

fn upload_inputs() -> Vec<InputDef> {
    vec![
        entity_type(),
        entity_id(),
        column_name(),
        input(
            FILE_NAME,
            "File Name",
            InputType::String,
            "The name the file is stored under, e.g. report.pdf.",
        )
        .required()
        .example(json!("report.pdf")),
        {
            let text = "The file's bytes as base64 (standard or URL-safe, padding optional), or a data: URL (data:application/pdf;base64,JVBER…). Files above 4 MiB are sent in chunks.";
            // Raw: 85 MiB of base64 for a 64 MiB file is scanned once, not
            // parsed again into a Value.
            input(FILE_CONTENT, "File Content", InputType::String, text)
                .required()
                .raw()
        },
        input(
            MIME_TYPE,
            "MIME Type",
            InputType::String,
            "The file's MIME type, e.g. image/png. For an image column it must be an image type Dataverse stores (gif, jpeg, tiff, bmp, png): anything else is refused before sending. Dataverse keeps the type it derives from the file itself.",
        ),
    ]
    .into_iter()
    .chain(controls::inputs(OPERATION_KEYS))
    .collect()
}

fn download_inputs() -> Vec<InputDef> {
    let text = "For image columns: thumbnail (the 144×144 image Dataverse keeps for every image) or full (the image as uploaded, kept only when the column's CanStoreFullImage is true). Ignored for file columns.";
    vec![
        entity_type(),
        entity_id(),
        column_name(),
        input(IMAGE_SIZE, "Image Size", InputType::String, text)
            .default(json!(THUMBNAIL))
            .choices(&[THUMBNAIL, FULL]),
    ]
}

pub const UPLOAD_FILE: Action = Action {
    def: ActionDef {
        key: "uploadFile",
        label: "Upload File or Image",
        description: "Stores a file in a record's file or image column (replacing any file there). Checks the column's maximum size first; files above 4 MiB go in chunks, each retried on its own. Returns {fileId, fileName, fileSize, chunks}.",
        deprecated: false,
        input_defs: upload_inputs,
    },
    run: |s, i| upload(s, i).map(Output::from),
};

pub const DOWNLOAD_FILE: Action = Action {
    def: ActionDef {
        key: "downloadFile",
        label: "Download File or Image",
        description: "Reads the file in a record's file or image column (large files in 4 MiB ranges). Returns {fileName, fileSize, mimeType, fileContent} with the content as base64; an empty column is not-found.",
        deprecated: false,
        input_defs: download_inputs,
    },
    run: download,
};

pub const DELETE_FILE: Action = Action {
    def: ActionDef {
        key: "deleteFile",
        label: "Delete File or Image",
        description: "Removes the file or image from a record's column (DELETE on the column).",
        deprecated: false,
        input_defs: || vec![entity_type(), entity_id(), column_name()],
    },
    run: |s, i| delete(s, i).map(Output::from),
};

/// The record, column and the column's URL: `accounts(<id>)/new_document`.
fn target(inputs: &Inputs) -> Result<(EntitySet, EntityKey, String, String)> {
    let set = set_of(inputs)?;
    let key = key_of(inputs)?;
    let column = inputs.expect_str(COLUMN_NAME)?.trim().to_ascii_lowercase();
    if !is_identifier(&column) {
        return Err(ConnectorError::invalid_input(
            COLUMN_NAME,
            format!("'{column}' is not a column logical name (letters, digits and _ only)"),
        ));
    }
    let path = format!("{set}{}/{column}", key.to_segment());
    Ok((set, key, column, path))
}

/// A 404 for a file: no file in the column, or no such record.
fn explain_missing(e: ConnectorError, column: &str) -> ConnectorError {
    if e.kind == ErrorKind::NotFound {
        e.with_hint(format!("The record has no file in column '{column}', or there is no such record: check entityId, or store a file with uploadFile first."))
    } else {
        e
    }
}

/// The `fileContent` string: borrowed from the input's JSON text when it
/// holds no escape (base64 never needs one), else unescaped.
fn file_content(inputs: &Inputs) -> Result<Cow<'_, str>> {
    inputs
        .raw(FILE_CONTENT)?
        .and_then(rawjson::string)
        .ok_or_else(|| ConnectorError::invalid_input(FILE_CONTENT, "must be a string of base64"))
}

// Byte classes of base64 text, as bits.
const SPACE: u8 = 1;
const URL_SAFE: u8 = 2;
const STANDARD_ONLY: u8 = 4;
const BAD: u8 = 8;

/// The class of every byte: letters, digits and `=` are 0.
static CLASSES: [u8; 256] = {
    let mut t = [BAD; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'=' => 0,
            b'+' | b'/' => STANDARD_ONLY,
            b'-' | b'_' => URL_SAFE,
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => SPACE,
            _ => BAD,
        };
        b += 1;
    }
    t
};

/// The base64 `fileContent`, checked whole before anything is sent and
/// decoded a range at a time.
struct Content<'a> {
    /// Without whitespace; padding is past `end`.
    text: Cow<'a, str>,
    end: usize,
    engine: GeneralPurpose,
    size: usize,
}

impl<'a> Content<'a> {
    fn parse(given: &'a str) -> Result<Content<'a>> {
        let bad = |why: &str| ConnectorError::invalid_input(FILE_CONTENT, why.to_string());
        let given = given.trim();
        let payload = match given.strip_prefix("data:") {
            Some(rest) => match rest.split_once(',') {
                Some((meta, p)) if meta.ends_with(";base64") => p,
                _ => {
                    return Err(bad(
                        "is a data: URL without base64 content (data:<type>;base64,<content>)",
                    ));
                }
            },
            None => given,
        };
        // One pass over what can be 85 MiB: which classes of bytes occur.
        let seen = payload.bytes().fold(0u8, |seen, b| {
            seen | CLASSES.get(usize::from(b)).copied().unwrap_or(BAD)
        });
        let text: Cow<'a, str> = if seen & SPACE != 0 {
            Cow::Owned(payload.split_ascii_whitespace().collect())
        } else {
            Cow::Borrowed(payload)
        };
        let end = text.trim_end_matches('=').len();
        let url_safe = seen & URL_SAFE != 0;
        let alphabet = if url_safe {
            &alphabet::URL_SAFE
        } else {
            &alphabet::STANDARD
        };
        // Padding only at the end (a `=` before `end` is refused), and one
        // alphabet.
        let valid = seen & BAD == 0
            && !(url_safe && seen & STANDARD_ONLY != 0)
            && text.len() - end <= 2
            && end % 4 != 1
            && !text.get(..end).is_some_and(|t| t.contains('='));
        if !valid {
            return Err(bad("is not valid base64 (nor a data: URL)"));
        }
        let size = end / 4 * 3 + (end % 4).saturating_sub(1);
        if size == 0 {
            return Err(bad("is empty: there is no file to store"));
        }
        let config = GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true);
        Ok(Content {
            text,
            end,
            engine: GeneralPurpose::new(alphabet, config),
            size,
        })
    }

    /// Bytes `start..start + len` of the file.
    fn bytes(&self, start: usize, len: usize) -> Result<Vec<u8>> {
        // Whole groups of 3 bytes (4 characters) around the range.
        let group = start / 3;
        let from = group * 4;
        let to = ((start + len).div_ceil(3) * 4).min(self.end);
        let mut out = Vec::with_capacity(len + 3);
        self.text
            .get(from..to)
            .and_then(|t| self.engine.decode_vec(t, &mut out).ok())
            .ok_or_else(|| {
                ConnectorError::invalid_input(FILE_CONTENT, "is not valid base64".to_string())
            })?;
        let skip = start - group * 3;
        if out.len() < skip + len {
            return Err(ConnectorError::invalid_input(
                FILE_CONTENT,
                "is shorter than its own length".to_string(),
            ));
        }
        out.drain(..skip);
        out.truncate(len);
        Ok(out)
    }
}

/// Whether a file of `total` bytes fits the output as base64. The size comes
/// from the server's headers: compared without arithmetic that could wrap
/// (usize is 32 bits in the component, and a wrapped size of ~3 GiB would
/// pass and then fail to allocate: a trap).
fn fits_output(total: usize) -> bool {
    total <= (MAX_OUTPUT_BYTES - 1024) / 4 * 3
}

/// What metadata says about a file or image column.
struct Column {
    image: bool,
    max_kb: Option<u64>,
}

/// The column's type and `MaxSizeInKB` ("Check maximum file size"): the
/// table's logical name with the column's type in one query, then the
/// typed attribute for its size.
fn column_info(session: &mut Session<'_>, set: &EntitySet, column: &str) -> Result<Column> {
    let query = format!(
        "EntityDefinitions?$filter={}&$select=LogicalName&$expand={}",
        encode_query(&format!(
            "EntitySetName eq {}",
            string_literal(set.as_str())
        )),
        encode_query(&format!(
            "Attributes($select=LogicalName;$filter=LogicalName eq {})",
            string_literal(column)
        ))
    );
    let request = session.request(Method::Get, &query)?;
    let body = session.send_json(request)?;
    let entity = body.get("value").and_then(|v| v.get(0)).ok_or_else(|| {
        ConnectorError::invalid_input(
            ENTITY_TYPE,
            format!("no table has the entity set name '{set}'"),
        )
    })?;
    let table = entity
        .get("LogicalName")
        .and_then(Value::as_str)
        .filter(|n| is_identifier(n))
        .unwrap_or(set.as_str());
    let kind = entity
        .get("Attributes")
        .and_then(|a| a.get(0))
        .map(|a| a.get("@odata.type").and_then(Value::as_str).unwrap_or(""));
    let image = match kind {
        Some(t) if t.ends_with("FileAttributeMetadata") => false,
        Some(t) if t.ends_with("ImageAttributeMetadata") => true,
        Some(t) => {
            return Err(ConnectorError::invalid_input(
                COLUMN_NAME,
                format!(
                    "'{column}' of {table} is not a file or image column (it is {})",
                    t.rsplit('.').next().unwrap_or(t)
                ),
            ));
        }
        None => {
            return Err(ConnectorError::invalid_input(
                COLUMN_NAME,
                format!("{table} has no column '{column}'"),
            ));
        }
    };
    let path = format!(
        "EntityDefinitions(LogicalName={})/Attributes(LogicalName={})/Microsoft.Dynamics.CRM.{}AttributeMetadata?$select=MaxSizeInKB",
        string_literal(table),
        string_literal(column),
        if image { "Image" } else { "File" }
    );
    let request = session.request(Method::Get, &path)?;
    let typed = session.send_json(request)?;
    Ok(Column {
        image,
        max_kb: typed.get("MaxSizeInKB").and_then(Value::as_u64),
    })
}

fn upload(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let (set, key, column, path) = target(inputs)?;
    let name = inputs.expect_str(FILE_NAME)?.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(ConnectorError::invalid_input(
            FILE_NAME,
            "must be a file name without line breaks or control characters",
        ));
    }
    let mime = inputs
        .str(MIME_TYPE)?
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let text = file_content(inputs)?;
    let content = Content::parse(&text)?;
    // Checked before anything is sent, and on every request of the upload.
    let c = controls::of(inputs, OPERATION_KEYS)?;
    let info = column_info(session, &set, &column)?;
    if let Some(m) = mime
        && info.image
        && !IMAGE_TYPES.iter().any(|t| t.eq_ignore_ascii_case(m))
    {
        return Err(ConnectorError::invalid_input(
            MIME_TYPE,
            format!(
                "'{m}' is not an image type: image column '{column}' stores gif, jpeg, tiff, bmp or png"
            ),
        ));
    }
    let size = content.size;
    if let Some(kb) = info.max_kb
        && size as u64 > kb.saturating_mul(1024)
    {
        return Err(ConnectorError::invalid_input(
            FILE_CONTENT,
            format!(
                "is {size} bytes ({} KB), more than the {kb} KB column '{column}' takes (its MaxSizeInKB); nothing was sent",
                size.div_ceil(1024)
            ),
        )
        .with_hint("Store a smaller file, or raise the column's maximum size (MaxSizeInKB) in its definition."));
    }
    let ascii = name.bytes().all(|b| (0x20..0x7f).contains(&b));
    let chunks = if size <= CHUNK && ascii {
        let mut request = session
            .request(Method::Patch, &path)?
            .header("Content-Type", "application/octet-stream")
            .header("x-ms-file-name", name);
        request.body = content.bytes(0, size)?;
        session
            .send_ok(c.apply(request))
            .map_err(|e| c.explain(explain_missing(e, &column)))?;
        1
    } else {
        upload_chunks(session, &content, &path, &column, name, ascii, &c)?
    };
    // The stored file's id (an image's is its `<column>id`); best effort.
    let id_column = if info.image {
        format!("{column}id")
    } else {
        column.clone()
    };
    let file_id = session
        .request(
            Method::Get,
            &format!("{set}{}?$select={id_column}", key.to_segment()),
        )
        .and_then(|r| session.send_json(r))
        .ok()
        .and_then(|r| r.get(&id_column).cloned())
        .unwrap_or(Value::Null);
    Ok(json!({"fileId": file_id, "fileName": name, "fileSize": size, "chunks": chunks}))
}

/// The chunked upload session; returns how many chunks were sent.
fn upload_chunks(
    session: &mut Session<'_>,
    content: &Content<'_>,
    path: &str,
    column: &str,
    name: &str,
    ascii: bool,
    c: &Controls,
) -> Result<usize> {
    let start = session
        .request(
            Method::Patch,
            &format!("{path}?x-ms-file-name={}", encode_query(name)),
        )?
        .header("x-ms-transfer-mode", "chunked");
    let answer = session
        .send_ok(c.apply(start))
        .map_err(|e| c.explain(explain_missing(e, column)))?;
    let location = answer
        .header("Location")
        .and_then(|l| url::Url::parse(l.trim()).ok())
        .ok_or_else(|| {
            ConnectorError::transport(
                "the chunked upload was not given a session (no valid Location header)",
            )
            .with_status(answer.status)
        })?;
    let chunk = answer
        .header("x-ms-chunk-size")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(CHUNK)
        .clamp(CHUNK_RANGE.0, CHUNK_RANGE.1);
    let size = content.size;
    let count = size.div_ceil(chunk);
    let mut sent = 0;
    for n in 1..=count {
        let len = chunk.min(size - sent);
        let mut request = session
            .request_to(Method::Patch, location.clone())
            .header("Content-Type", "application/octet-stream")
            .header(
                "Content-Range",
                format!("bytes {sent}-{}/{size}", sent + len - 1),
            );
        if ascii {
            request = request.header("x-ms-file-name", name);
        }
        request.body = content.bytes(sent, len)?;
        session.send_ok(c.apply(request)).map_err(|e| {
            e.with_hint(format!(
                "Chunk {n} of {count} was refused; Dataverse keeps no partial file, so run uploadFile again to store it."
            ))
        })?;
        sent += len;
    }
    Ok(count)
}

/// `x-ms-file-size`, else the total of `Content-Range: bytes a-b/total`.
fn file_size(response: &Response) -> Option<usize> {
    response
        .header("x-ms-file-size")
        .or_else(|| {
            response
                .header("Content-Range")?
                .rsplit_once('/')
                .map(|(_, t)| t)
        })
        .and_then(|v| v.trim().parse().ok())
}

fn download(session: &mut Session<'_>, inputs: &Inputs) -> Result<Output> {
    let (_, _, column, path) = target(inputs)?;
    let full = inputs.expect_str(IMAGE_SIZE)?.eq_ignore_ascii_case(FULL);
    let url = session.web_api().resource(&if full {
        format!("{path}/$value?size=full")
    } else {
        format!("{path}/$value")
    })?;
    let mut bytes: Vec<u8> = Vec::new();
    let mut first: Option<Response> = None;
    loop {
        let from = bytes.len();
        let request = session
            .request_to(Method::Get, url.clone())
            .header("Range", format!("bytes={from}-{}", from + CHUNK - 1));
        let mut response = session.send(request)?;
        match response.status {
            // No content: an image column without the size asked for.
            204 if full => {
                return Err(ConnectorError::not_found(format!(
                    "column '{column}' holds no full-size image for this record"
                ))
                .with_hint("The column's CanStoreFullImage is false (or was when the image was uploaded), so Dataverse kept only the thumbnail: download imageSize thumbnail, or allow full-size images on the column and upload the image again."));
            }
            204 => {
                return Err(
                    ConnectorError::not_found(format!("column '{column}' holds no file"))
                        .with_hint(format!(
                            "Store one with uploadFile first (column '{column}')."
                        )),
                );
            }
            200 | 206 => {}
            _ => {
                return Err(explain_missing(
                    answer_error(Method::Get, &response),
                    &column,
                ));
            }
        }
        // Every answer names the file's size, the same each time; a whole
        // file (200) is exactly that long. Anything else (a proxy's page)
        // is not the file.
        let known = first.as_ref().and_then(file_size);
        let total = match file_size(&response) {
            Some(t)
                if known.is_none_or(|k| k == t)
                    && (response.status == 206 || t == response.body.len()) =>
            {
                t
            }
            _ => {
                return Err(ConnectorError::transport(format!(
                    "the answer for bytes from {from} is not the file (HTTP {}, {} bytes, x-ms-file-size {})",
                    response.status,
                    response.body.len(),
                    response.header("x-ms-file-size").unwrap_or("absent")
                )));
            }
        };
        if !fits_output(total) {
            return Err(ConnectorError::transport(format!(
                "the file is {total} bytes: its base64 would pass the connector's 127 MiB output limit"
            ))
            .with_hint("Download files up to about 95 MiB with this action; read larger ones with a client that streams to disk."));
        }
        if response.status == 200 {
            bytes = std::mem::take(&mut response.body);
        } else {
            let starts = response
                .header("Content-Range")
                .and_then(|r| r.trim().strip_prefix("bytes "))
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.trim().parse::<usize>().ok());
            if starts.is_some_and(|s| s != from) || response.body.is_empty() {
                return Err(ConnectorError::transport(format!(
                    "the partial download at byte {from} of {total} did not continue the file (range {}, {} bytes)",
                    response.header("Content-Range").unwrap_or("absent"),
                    response.body.len()
                )));
            }
            if from == 0 {
                bytes.reserve_exact(total);
            }
            bytes.extend_from_slice(&response.body);
            response.body = Vec::new();
        }
        first.get_or_insert(response);
        if bytes.len() >= total {
            bytes.truncate(total);
            break;
        }
    }
    let head = first.unwrap_or_default();
    let text = |name: &str| serde_json::to_string(&head.header(name)).unwrap_or_default();
    let head = format!(
        "{{\"fileName\":{},\"fileSize\":{},\"mimeType\":{},\"fileContent\":\"",
        text("x-ms-file-name"),
        bytes.len(),
        text("mimetype")
    );
    // Encoded straight into the output's buffer (base64's chunked
    // `encode_string` measured slower on 64 MiB).
    let encoded = bytes.len().div_ceil(3) * 4;
    let mut out = Vec::with_capacity(head.len() + encoded + 2);
    out.extend_from_slice(head.as_bytes());
    out.resize(head.len() + encoded, 0);
    let written = out
        .get_mut(head.len()..)
        .and_then(|tail| STANDARD.encode_slice(&bytes, tail).ok());
    drop(bytes);
    if written != Some(encoded) {
        return Err(ConnectorError::transport("the file could not be encoded"));
    }
    out.extend_from_slice(b"\"}");
    String::from_utf8(out)
        .map(Output::Json)
        .map_err(|_| ConnectorError::transport("the file's name is not text"))
}

fn delete(session: &mut Session<'_>, inputs: &Inputs) -> Result<Value> {
    let (_, _, column, path) = target(inputs)?;
    let request = session.request(Method::Delete, &path)?;
    session
        .send_ok(request)
        .map_err(|e| explain_missing(e, &column))?;
    Ok(json!({"deleted": true, "columnName": column}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_announced_size_is_refused_without_wrapping() {
        assert!(fits_output(64 << 20));
        assert!(!fits_output(96 << 20));
        // 3 GiB: its base64 length is 2^32, which wrapped to 0 in 32 bits.
        assert!(!fits_output(3usize << 30));
        assert!(!fits_output(usize::MAX));
    }

    #[test]
    fn content_decodes_any_range_of_any_base64_form() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let std = STANDARD.encode(&data);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&data);
        let wrapped = std
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n");
        let data_url = format!("data:application/octet-stream;base64,{std}");
        for text in [&std, &url_safe, &wrapped, &data_url] {
            let c = Content::parse(text).unwrap();
            assert_eq!(c.size, 1000);
            for (start, len) in [(0, 1000), (1, 7), (2, 998), (999, 1), (500, 333)] {
                assert_eq!(
                    c.bytes(start, len).unwrap(),
                    data[start..start + len],
                    "{start}+{len}"
                );
            }
        }
        for bad in ["not base64!", "QQ=x", "Q", "data:text/plain,hi", "", "===="] {
            let e = Content::parse(bad).err().unwrap();
            assert_eq!(
                e.kind,
                ErrorKind::InvalidInput {
                    input: FILE_CONTENT.into()
                },
                "{bad}"
            );
        }
    }
}
