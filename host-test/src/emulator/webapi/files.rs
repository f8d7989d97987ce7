//! File and image columns, as Microsoft Learn documents them in "Use file
//! column data"
//! (https://learn.microsoft.com/power-apps/developer/data-platform/file-column-data)
//! and "Use image column data"
//! (https://learn.microsoft.com/power-apps/developer/data-platform/image-column-data):
//!
//! - Upload in one request: `PATCH|PUT set(<key>)/<column>` with the bytes,
//!   `x-ms-file-name` → 204.
//! - Chunked upload: `PATCH …/<column>` with `x-ms-transfer-mode: chunked`
//!   (file name in `x-ms-file-name`, header or query) → 200 with
//!   `Location: …/<column>?sessiontoken=…`, `x-ms-chunk-size: 4194304` and
//!   `Accept-Ranges: bytes`; then one `PATCH <Location>` per chunk with
//!   `Content-Range: bytes a-b/total` → 206, the last 204. A chunk that
//!   leaves a gap, overlaps what was received, names another total or does
//!   not match its body's length is a 400 and changes nothing (so a chunk
//!   is never applied twice).
//! - `MaxSizeInKB`: a file above it is refused with
//!   `unManagedidsattachmentinvalidfilesize` (`0x80044a02`, "Attachment
//!   file size is too big."), an image with `ProcessImageFailure`
//!   (`0x80072553`); an image that is not gif, jpeg, tiff, bmp or png is a
//!   `ProcessImageFailure` too.
//! - Download: `GET …/<column>/$value` → the bytes with `x-ms-file-size`,
//!   `x-ms-file-name` and `mimetype`; with `Range: bytes=a-b` → 206 with
//!   `Content-Range` and `x-ms-chunk-size`. Image columns answer the
//!   thumbnail, or with `?size=full` the image as uploaded — 204 when the
//!   column does not keep full-size images (`CanStoreFullImage`).
//! - Block download: `InitializeFileBlocksDownload` (`FileSizeInBytes`,
//!   `FileName`, `FileContinuationToken`, `IsChunkingSupported`) and
//!   `DownloadBlock` (`Offset`, `BlockLength` → `Data`, base64). For image
//!   columns they serve the full-size image only; without one,
//!   `ObjectDoesNotExist` (`0x80040217`).
//! - Delete: `DELETE …/<column>` → 204 (and for images `PUT …/<column>`
//!   with `{"value": null}`).
//!
//! A file column's JSON value is the file id and `<column>_name` holds the
//! file name. An image column's value is the thumbnail as base64, with the
//! companions `<column>id`, `<column>_timestamp` and `<column>_url`
//! (`/Image/download.aspx?Entity=…&Attribute=…&Id=…&Timestamp=…`).
//!
//! Simplifications, each UNCONFIRMED against a real environment: the
//! thumbnail is a 24-bit BMP of one colour, 144×144 or the image's smaller
//! side when both sides are below 144 (the resize rules of "Use image column
//! data"; pixels are not resampled); the `mimetype` of a file comes from its
//! name's extension; the status of the size and Content-Range errors (400),
//! the Content-Range error's code and messages, and the 404 for an empty
//! column. Not emulated: the upload messages (`InitializeFileBlocksUpload`,
//! `UploadBlock`, `CommitFileBlocksUpload`) and `DeleteFile`.

use super::caller::Caller;
use super::reply::{
    error, header, method_not_allowed, method_not_allowed_error, segment_not_found,
};
use super::rows::{self, UnderRow, existing_id};
use crate::emulator::odata::ODataError;
use crate::emulator::odata::options::query_pairs;
use crate::emulator::response::{no_content, odata_json};
use crate::emulator::store::schema::{AttributeKind, EntityDef};
use crate::emulator::store::{Changes, new_guid, normalize_guid};
use crate::emulator::{EmuRequest, EmuResponse, State};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The chunk size the emulator recommends (`x-ms-chunk-size`), as in
/// Learn's examples.
pub const CHUNK_SIZE: usize = 4 << 20;

/// One stored file (or image, thumbnail or full size).
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    pub name: String,
    pub bytes: Bytes,
    pub mime: String,
}

/// A chunked upload in progress, by session token.
#[derive(Debug, Clone)]
struct Upload {
    entity: String,
    id: String,
    column: String,
    name: String,
    /// Set by the first chunk's Content-Range.
    total: Option<usize>,
    received: Vec<u8>,
}

/// Files by file id (images: the thumbnail by image id, the full size by
/// `full:<image id>`), chunked uploads by session token, and block
/// downloads by continuation token.
#[derive(Debug, Clone, Default)]
pub struct FileBlobs {
    blobs: BTreeMap<String, Blob>,
    uploads: BTreeMap<String, Upload>,
    downloads: BTreeMap<String, String>,
}

impl FileBlobs {
    pub fn get(&self, file_id: &str) -> Option<&Blob> {
        self.blobs.get(file_id)
    }

    /// Chunked uploads not finished yet.
    pub fn open_uploads(&self) -> usize {
        self.uploads.len()
    }
}

/// What a file or image column allows.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_size_kb: u32,
    /// `Some(can_store_full_image)` for an image column.
    image: Option<bool>,
}

impl Limits {
    /// A file or image column's limits; `None` for any other column.
    fn of(entity: &EntityDef, column: &str) -> Option<Limits> {
        match entity.attribute(column).map(|a| &a.kind) {
            Some(AttributeKind::File { max_size_kb }) => Some(Limits {
                max_size_kb: *max_size_kb,
                image: None,
            }),
            Some(AttributeKind::Image {
                max_size_kb,
                can_store_full_image,
            }) => Some(Limits {
                max_size_kb: *max_size_kb,
                image: Some(*can_store_full_image),
            }),
            _ => None,
        }
    }
}

/// The column a request is about, with its record.
struct At<'a> {
    entity: &'a EntityDef,
    id: String,
    column: &'a str,
    limits: Limits,
}

/// Answers `part` = `<column>` (PATCH/PUT/DELETE) or `<column>/$value`
/// (GET) of a file or image column; `None` for anything else.
pub fn handle(state: &mut State, at: &UnderRow<'_>) -> Option<EmuResponse> {
    let (column, value) = match at.part.strip_suffix("/$value") {
        Some(c) => (c, true),
        None => (at.part, false),
    };
    let limits = match at.entity.attribute(column)?.kind {
        AttributeKind::File { max_size_kb } => Limits {
            max_size_kb,
            image: None,
        },
        AttributeKind::Image {
            max_size_kb,
            can_store_full_image,
        } => Limits {
            max_size_kb,
            image: Some(can_store_full_image),
        },
        _ => return None,
    };
    let request = at.request;
    let method = request.method().clone();
    let query = query_pairs(request.uri().query());
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let result = existing_id(state, at.entity, at.raw_key).and_then(|id| {
        let here = At {
            entity: at.entity,
            id,
            column,
            limits,
        };
        match (value, &method) {
            (true, &http::Method::GET) => download(
                state,
                request,
                &here,
                param("size").is_some_and(|s| s.eq_ignore_ascii_case("full")),
            ),
            (false, &http::Method::PATCH | &http::Method::PUT) => {
                if let Some(token) = param("sessiontoken") {
                    chunk(state, request, at.caller, &here, token)
                } else if header(request, "x-ms-transfer-mode")
                    .is_some_and(|m| m.eq_ignore_ascii_case("chunked"))
                {
                    let name = header(request, "x-ms-file-name").or(param("x-ms-file-name"));
                    start_session(state, at.caller, &here, name)
                } else {
                    upload(state, request, at.caller, &here)
                }
            }
            (false, &http::Method::DELETE) => clear(state, at.caller, &here).map(|()| no_content()),
            _ => Err(method_not_allowed_error(&method)),
        }
    });
    Some(result.unwrap_or_else(error))
}

/// The documented size errors ("Check maximum file size"; "Maximum image
/// size").
fn too_big(limits: Limits, size: usize) -> ODataError {
    let mb = |n: f64| (n / (1024.0 * 1024.0) * 100.0).round() / 100.0;
    match limits.image {
        None => ODataError::new(400, "0x80044a02", "Attachment file size is too big."),
        Some(_) => ODataError::new(
            400,
            "0x80072553",
            format!(
                "Error occured when processing image. Reason: File size is too big. MaxSize: {} MB, Uploaded filesize: {} MB.",
                mb(f64::from(limits.max_size_kb) * 1024.0),
                mb(size as f64)
            ),
        ),
    }
}

fn check_size(limits: Limits, size: usize) -> Result<(), ODataError> {
    if size as u64 > u64::from(limits.max_size_kb) * 1024 {
        Err(too_big(limits, size))
    } else {
        Ok(())
    }
}

/// A bad chunk: gap, overlap, other total, length mismatch, no session.
/// Code and messages UNCONFIRMED.
fn bad_chunk(message: String) -> ODataError {
    ODataError::new(400, "0x80048d19", message)
}

fn upload(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    at: &At<'_>,
) -> Result<EmuResponse, ODataError> {
    let json = header(request, "content-type").is_some_and(|c| c.starts_with("application/json"));
    if at.limits.image.is_some() && json {
        // `PUT …/<image column>` with `{"value": null}` deletes the image.
        let body: Value = serde_json::from_slice(request.body()).unwrap_or(Value::Bool(false));
        if body.get("value").is_some_and(Value::is_null) {
            clear(state, caller, at)?;
            return Ok(no_content());
        }
    }
    let query = query_pairs(request.uri().query());
    let name = header(request, "x-ms-file-name")
        .map(str::to_string)
        .or_else(|| {
            query
                .into_iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("x-ms-file-name"))
                .map(|(_, v)| v)
        })
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            // Message UNCONFIRMED; Dataverse requires the file name.
            ODataError::bad_request(
                "The x-ms-file-name header is required to upload a file.".to_string(),
            )
        })?;
    let bytes = request.body().clone();
    check_size(at.limits, bytes.len())?;
    store(state, caller, at, name, bytes)?;
    Ok(no_content())
}

fn start_session(
    state: &mut State,
    caller: &Caller,
    at: &At<'_>,
    name: Option<&str>,
) -> Result<EmuResponse, ODataError> {
    let name = name.filter(|n| !n.is_empty()).ok_or_else(|| {
        ODataError::bad_request(
            "The x-ms-file-name header or query parameter is required to upload a file."
                .to_string(),
        )
    })?;
    let token = format!("{}{}", new_guid(), new_guid()).replace('-', "");
    let location = format!(
        "{}{}({})/{}?sessiontoken={token}",
        caller.service_root, at.entity.entity_set_name, at.id, at.column
    );
    state.files.uploads.insert(
        token,
        Upload {
            entity: at.entity.logical_name.to_string(),
            id: at.id.clone(),
            column: at.column.to_string(),
            name: name.to_string(),
            total: None,
            received: Vec::new(),
        },
    );
    Ok(http::Response::builder()
        .status(200)
        .header("Accept-Ranges", "bytes")
        .header("Location", location)
        .header("OData-Version", "4.0")
        .header("x-ms-chunk-size", CHUNK_SIZE.to_string())
        .header("Access-Control-Expose-Headers", "x-ms-chunk-size")
        .body(Bytes::new())
        .unwrap_or_default())
}

/// `bytes a-b/total`.
fn content_range(value: &str) -> Option<(usize, usize, usize)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((
        a.trim().parse().ok()?,
        b.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

fn chunk(
    state: &mut State,
    request: &EmuRequest,
    caller: &Caller,
    at: &At<'_>,
    token: &str,
) -> Result<EmuResponse, ODataError> {
    let upload = state
        .files
        .uploads
        .get(token)
        .filter(|u| u.entity == at.entity.logical_name && u.id == at.id && u.column == at.column)
        .ok_or_else(|| {
            bad_chunk(format!(
                "The upload session token is not valid for {} of this record.",
                at.column
            ))
        })?;
    let body = request.body();
    let (a, b, total) = header(request, "content-range")
        .and_then(content_range)
        .ok_or_else(|| {
            bad_chunk(
                "The Content-Range header is missing or is not 'bytes <start>-<end>/<size>'."
                    .to_string(),
            )
        })?;
    if b < a || b >= total || b - a + 1 != body.len() {
        return Err(bad_chunk(format!(
            "The Content-Range bytes {a}-{b}/{total} does not match the {} bytes sent.",
            body.len()
        )));
    }
    if upload.total.is_some_and(|t| t != total) {
        return Err(bad_chunk(format!(
            "The Content-Range total {total} differs from the file size {} given before.",
            upload.total.unwrap_or_default()
        )));
    }
    let received = upload.received.len();
    if a != received {
        let what = if a < received {
            "overlaps"
        } else {
            "leaves a gap after"
        };
        return Err(bad_chunk(format!(
            "The chunk at byte {a} {what} the {received} bytes received so far."
        )));
    }
    if let Err(e) = check_size(at.limits, total) {
        state.files.uploads.remove(token);
        return Err(e);
    }
    let Some(upload) = state.files.uploads.get_mut(token) else {
        return Err(bad_chunk("The upload session ended.".to_string()));
    };
    upload.total = Some(total);
    upload.received.extend_from_slice(body);
    if upload.received.len() < total {
        return Ok(http::Response::builder()
            .status(206)
            .header("OData-Version", "4.0")
            .body(Bytes::new())
            .unwrap_or_default());
    }
    let Some(done) = state.files.uploads.remove(token) else {
        return Err(bad_chunk("The upload session ended.".to_string()));
    };
    store(state, caller, at, done.name, Bytes::from(done.received))?;
    Ok(no_content())
}

/// The MIME type of an image, by its signature; `None` when it is not one
/// of the types image columns store.
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    let starts = |p: &[u8]| bytes.starts_with(p);
    if starts(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some("image/gif")
    } else if starts(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if starts(b"BM") {
        Some("image/bmp")
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Some("image/tiff")
    } else {
        None
    }
}

/// Width and height from a PNG, GIF or BMP header.
fn image_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let be = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let le16 = |at: usize| {
        Some(u32::from(u16::from_le_bytes(
            bytes.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    let le32 = |at: usize| {
        Some(i32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?).unsigned_abs())
    };
    match image_type(bytes)? {
        "image/png" => Some((be(16)?, be(20)?)),
        "image/gif" => Some((le16(6)?, le16(8)?)),
        "image/bmp" => Some((le32(18)?, le32(22)?)),
        _ => None,
    }
}

/// The thumbnail: a square BMP of the image's average byte as its colour,
/// 144 pixels a side, or the smaller side of an image below 144 both ways.
pub fn thumbnail(bytes: &[u8]) -> Vec<u8> {
    let side = match image_size(bytes) {
        Some((w, h)) if w < 144 && h < 144 => w.min(h).max(1),
        _ => 144,
    };
    let sum: u64 = bytes.iter().map(|&b| u64::from(b)).sum();
    let shade = (sum / bytes.len().max(1) as u64) as u8;
    let row = (side * 3).div_ceil(4) * 4;
    let pixels = row * side;
    let mut out = Vec::with_capacity(54 + pixels as usize);
    out.extend_from_slice(b"BM");
    out.extend_from_slice(&(54 + pixels).to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&side.to_le_bytes());
    out.extend_from_slice(&side.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&pixels.to_le_bytes());
    out.extend_from_slice(&[0; 16]);
    for _ in 0..side {
        for _ in 0..side {
            out.extend_from_slice(&[shade, shade.wrapping_add(85), shade.wrapping_add(170)]);
        }
        out.resize(out.len() + (row - side * 3) as usize, 0);
    }
    out
}

/// A file's MIME type from its name (UNCONFIRMED: how Dataverse fills the
/// `mimetype` it answers).
fn mime_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("zip") => "application/zip",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

/// The stored keys of the column's current file: a file's id, or an
/// image's thumbnail and full-size keys.
fn current(state: &State, at: &At<'_>) -> Vec<String> {
    let row = state.store.get(at.entity.logical_name, &at.id);
    let read = |column: &str| row.and_then(|r| r.get(column).as_str().map(str::to_string));
    match at.limits.image {
        None => read(at.column).into_iter().collect(),
        Some(_) => read(&format!("{}id", at.column))
            .map(|id| vec![format!("full:{id}"), id])
            .unwrap_or_default(),
    }
}

/// Replaces the column's file with `bytes`.
fn store(
    state: &mut State,
    caller: &Caller,
    at: &At<'_>,
    name: String,
    bytes: Bytes,
) -> Result<(), ODataError> {
    let old = current(state, at);
    let mut changes = Changes::default();
    let mut blobs = Vec::new();
    let column = at.column;
    match at.limits.image {
        None => {
            let file_id = new_guid();
            changes.values.insert(column.into(), json!(file_id));
            set_if_present(
                at.entity,
                &mut changes,
                format!("{column}_name"),
                json!(name),
            );
            let mime = mime_of(&name).to_string();
            blobs.push((file_id, Blob { name, bytes, mime }));
        }
        Some(full) => {
            let mime = image_type(&bytes).ok_or_else(|| {
                ODataError::new(
                    400,
                    "0x80072553",
                    format!(
                        "Error occured when processing image. Reason: Update image properties failed for objectid: {}, logicalName: {}, attribute: {column}",
                        at.id, at.entity.logical_name
                    ),
                )
            })?;
            let image_id = new_guid();
            let thumb = thumbnail(&bytes);
            // .NET ticks, as Dataverse's image timestamps are.
            let stamp = state.now_ms() * 10_000 + 621_355_968_000_000_000;
            changes
                .values
                .insert(column.into(), json!(STANDARD.encode(&thumb)));
            let companions = [
                (format!("{column}id"), json!(image_id)),
                (format!("{column}_timestamp"), json!(stamp)),
                (
                    format!("{column}_url"),
                    json!(format!(
                        "/Image/download.aspx?Entity={}&Attribute={column}&Id={image_id}&Timestamp={stamp}",
                        at.entity.logical_name
                    )),
                ),
            ];
            for (k, v) in companions {
                set_if_present(at.entity, &mut changes, k, v);
            }
            if full {
                blobs.push((
                    format!("full:{image_id}"),
                    Blob {
                        name: name.clone(),
                        bytes,
                        mime: mime.to_string(),
                    },
                ));
            }
            // Thumbnails are JPEG in Dataverse; the emulator's are BMP.
            let thumb_name = match name.rsplit_once('.') {
                Some((stem, _)) => format!("{stem}.bmp"),
                None => format!("{name}.bmp"),
            };
            blobs.push((
                image_id,
                Blob {
                    name: thumb_name,
                    bytes: Bytes::from(thumb),
                    mime: "image/bmp".into(),
                },
            ));
        }
    }
    rows::update(state, caller, at.entity.logical_name, &at.id, changes)?;
    for key in old {
        state.files.blobs.remove(&key);
    }
    state.files.blobs.extend(blobs);
    Ok(())
}

/// Companion columns are set by the platform, never by clients.
fn set_if_present(entity: &EntityDef, changes: &mut Changes, column: String, value: Value) {
    if entity.attribute(&column).is_some() {
        changes.values.insert(column, value);
    }
}

fn clear(state: &mut State, caller: &Caller, at: &At<'_>) -> Result<(), ODataError> {
    let old = current(state, at);
    let column = at.column;
    let mut changes = Changes::default();
    changes.values.insert(column.into(), Value::Null);
    for companion in [
        format!("{column}_name"),
        format!("{column}id"),
        format!("{column}_timestamp"),
        format!("{column}_url"),
    ] {
        set_if_present(at.entity, &mut changes, companion, Value::Null);
    }
    rows::update(state, caller, at.entity.logical_name, &at.id, changes)?;
    for key in old {
        state.files.blobs.remove(&key);
    }
    Ok(())
}

fn no_file(at: &At<'_>) -> ODataError {
    // Code and message UNCONFIRMED.
    ODataError::new(
        404,
        "0x80060891",
        format!(
            "No file attachment found for attribute: {} EntityId: {}.",
            at.column, at.id
        ),
    )
}

/// `bytes=a-b` or `bytes=a-`; `None` for anything else (multiple ranges,
/// suffix ranges), which is answered with the whole file as HTTP allows.
fn range(value: &str) -> Option<(usize, Option<usize>)> {
    let (a, b) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
    let a = a.trim().parse().ok()?;
    let b = match b.trim() {
        "" => None,
        b => Some(b.parse().ok()?),
    };
    Some((a, b))
}

/// A header value: non-ASCII and control bytes percent-encoded
/// (UNCONFIRMED for file names outside ASCII).
fn header_text(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            0x20..=0x7e if b != b'%' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn download(
    state: &State,
    request: &EmuRequest,
    at: &At<'_>,
    full: bool,
) -> Result<EmuResponse, ODataError> {
    let keys = current(state, at);
    let key = match at.limits.image {
        None => keys.first(),
        // No full size kept: "the response will return 204 No Content".
        Some(false) if full => return Ok(no_content()),
        Some(_) if full => match keys.first() {
            Some(k) if state.files.get(k).is_none() => return Ok(no_content()),
            k => k,
        },
        Some(_) => keys.get(1),
    };
    let blob = key
        .and_then(|k| state.files.get(k))
        .ok_or_else(|| no_file(at))?;
    let len = blob.bytes.len();
    let builder = http::Response::builder()
        .header("Content-Type", "application/octet-stream")
        .header("OData-Version", "4.0")
        .header("x-ms-file-size", len.to_string())
        .header("x-ms-file-name", header_text(&blob.name))
        .header("mimetype", blob.mime.as_str());
    let Some((a, b)) = header(request, "range").and_then(range) else {
        return Ok(builder
            .status(200)
            .header(
                "Access-Control-Expose-Headers",
                "x-ms-file-size; x-ms-file-name; mimetype",
            )
            .body(blob.bytes.clone())
            .unwrap_or_default());
    };
    if a >= len {
        return Ok(http::Response::builder()
            .status(416)
            .header("Content-Range", format!("bytes */{len}"))
            .body(Bytes::new())
            .unwrap_or_default());
    }
    let end = b.map_or(len - 1, |b| b.min(len - 1));
    if end < a {
        return Err(ODataError::bad_request(format!(
            "The Range bytes={a}-{end} is not valid."
        )));
    }
    Ok(builder
        .status(206)
        .header("Content-Range", format!("bytes {a}-{end}/{len}"))
        .header("x-ms-chunk-size", CHUNK_SIZE.to_string())
        .header(
            "Access-Control-Expose-Headers",
            "x-ms-file-size; x-ms-file-name; x-ms-chunk-size; mimetype",
        )
        .body(blob.bytes.slice(a..=end))
        .unwrap_or_default())
}

/// Puts a file in a record's file or image column as an upload by the
/// application user would (fixtures: the fault matrix, benchmarks).
pub fn put_file(
    state: &mut State,
    entity: &str,
    id: &str,
    column: &str,
    name: &str,
    bytes: Bytes,
) -> Result<(), String> {
    let def = state
        .store
        .schema()
        .by_logical_name(entity)
        .cloned()
        .ok_or_else(|| format!("no table {entity}"))?;
    let limits = match Limits::of(&def, column) {
        Some(l) => l,
        _ => return Err(format!("{entity}.{column} is not a file or image column")),
    };
    let caller = Caller {
        user_id: crate::emulator::data::USER_APP.to_string(),
        service_root: String::new(),
        on_behalf_of: None,
        logic: Default::default(),
    };
    let at = At {
        entity: &def,
        id: id.to_string(),
        column,
        limits,
    };
    store(state, &caller, &at, name.to_string(), bytes).map_err(|e| e.message)
}

/// The bytes in a record's file column (a file, or an image's full size
/// when kept); `None` when it holds none.
pub fn file_bytes(state: &State, entity: &str, id: &str, column: &str) -> Option<Bytes> {
    let row = state.store.get(entity, id)?;
    let key = match row.get(&format!("{column}id")).as_str() {
        Some(image) => format!("full:{image}"),
        None => row.get(column).as_str()?.to_string(),
    };
    state.files.get(&key).map(|b| b.bytes.clone())
}

/// Whether `name` is a block-download message this module answers.
pub fn is_block_message(name: &str) -> bool {
    matches!(name, "InitializeFileBlocksDownload" | "DownloadBlock")
}

/// `POST InitializeFileBlocksDownload` and `POST DownloadBlock` ("Use
/// Dataverse messages to download a file").
pub fn block_message(state: &mut State, request: &EmuRequest, name: &str) -> EmuResponse {
    if request.method() != http::Method::POST {
        return method_not_allowed(request.method());
    }
    let body: Value = match serde_json::from_slice(request.body()) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return error(ODataError::bad_request(
                "The request body is not a JSON object.".to_string(),
            ));
        }
    };
    let result = match name {
        "InitializeFileBlocksDownload" => initialize_download(state, &body),
        "DownloadBlock" => download_block(state, &body),
        other => Err(segment_not_found(other)),
    };
    result.unwrap_or_else(error)
}

fn initialize_download(state: &mut State, body: &Value) -> Result<EmuResponse, ODataError> {
    let target = body.get("Target");
    let entity_name = target
        .and_then(|t| t.get("@odata.type"))
        .and_then(Value::as_str)
        .map(|t| {
            t.trim_start_matches('#')
                .trim_start_matches("Microsoft.Dynamics.CRM.")
        })
        .unwrap_or("");
    let entity = state
        .store
        .schema()
        .by_logical_name(entity_name)
        .cloned()
        .ok_or_else(|| {
            ODataError::bad_request(format!(
                "Target must name a table with @odata.type (got '{entity_name}')."
            ))
        })?;
    let id = target
        .and_then(|t| t.get(entity.primary_id.as_str()))
        .and_then(Value::as_str)
        .and_then(normalize_guid)
        .ok_or_else(|| {
            ODataError::bad_request(format!("Target must give {}.", entity.primary_id))
        })?;
    let column = body
        .get("FileAttributeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let limits = match Limits::of(&entity, column) {
        Some(l) => l,
        _ => {
            return Err(ODataError::bad_request(format!(
                "'{column}' is not a file or image column of {}.",
                entity.logical_name
            )));
        }
    };
    let id = existing_id(state, &entity, &id)?;
    let at = At {
        entity: &entity,
        id,
        column,
        limits,
    };
    // Images: the full size only ("Download images", Using Dataverse
    // messages).
    let key = current(state, &at).into_iter().next();
    let blob = key.as_ref().and_then(|k| state.files.get(k));
    let (Some(key), Some(blob)) = (key.clone(), blob) else {
        return Err(match at.limits.image {
            Some(_) => ODataError::new(
                404,
                "0x80040217",
                format!(
                    "No FileAttachment records found for imagedescriptorId: {} for image attribute: {column} of {} record with id {}.",
                    key.unwrap_or_default().trim_start_matches("full:"),
                    entity.logical_name,
                    at.id
                ),
            ),
            None => no_file(&at),
        });
    };
    let (size, file_name) = (blob.bytes.len(), blob.name.clone());
    let token = format!("{}{}", new_guid(), new_guid()).replace('-', "");
    state.files.downloads.insert(token.clone(), key);
    Ok(odata_json(
        200,
        &json!({
            "@odata.context": "$metadata#Microsoft.Dynamics.CRM.InitializeFileBlocksDownloadResponse",
            "FileSizeInBytes": size,
            "FileName": file_name,
            "FileContinuationToken": token,
            "IsChunkingSupported": true,
        }),
    ))
}

fn download_block(state: &State, body: &Value) -> Result<EmuResponse, ODataError> {
    let token = body
        .get("FileContinuationToken")
        .and_then(Value::as_str)
        .unwrap_or("");
    let blob = state
        .files
        .downloads
        .get(token)
        .and_then(|k| state.files.get(k))
        .ok_or_else(|| {
            ODataError::bad_request("The FileContinuationToken is not valid.".to_string())
        })?;
    let number = |k: &str| body.get(k).and_then(Value::as_u64).map(|n| n as usize);
    let (Some(offset), Some(length)) = (number("Offset"), number("BlockLength")) else {
        return Err(ODataError::bad_request(
            "Offset and BlockLength are required whole numbers.".to_string(),
        ));
    };
    let start = offset.min(blob.bytes.len());
    let end = offset.saturating_add(length).min(blob.bytes.len());
    Ok(odata_json(
        200,
        &json!({
            "@odata.context": "$metadata#Microsoft.Dynamics.CRM.DownloadBlockResponse",
            "Data": STANDARD.encode(&blob.bytes[start..end]),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_follow_the_resize_rules() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&300u32.to_be_bytes());
        png.extend_from_slice(&428u32.to_be_bytes());
        let big = thumbnail(&png);
        assert_eq!(image_size(&big), Some((144, 144)));
        let mut small = png.clone();
        small[16..20].copy_from_slice(&91u32.to_be_bytes());
        small[20..24].copy_from_slice(&130u32.to_be_bytes());
        let t = thumbnail(&small);
        assert_eq!(image_size(&t), Some((91, 91)));
        assert_eq!(t.len(), 54 + 91 * 276);
        assert_eq!(image_type(b"%PDF-1.7"), None);
    }

    #[test]
    fn content_ranges_and_ranges_parse() {
        assert_eq!(
            content_range("bytes 0-4194303/25870370"),
            Some((0, 4194303, 25870370))
        );
        assert_eq!(content_range("bytes 0-1"), None);
        assert_eq!(range("bytes=0-4194303"), Some((0, Some(4194303))));
        assert_eq!(range("bytes=5-"), Some((5, None)));
        assert_eq!(range("bytes=0-1,5-6"), None);
    }
}
