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

use crate::error::{ConnectorError, Result, clip};
use crate::percent;
use crate::types::{EntityKey, EntitySet, Guid, KeyValue, is_identifier};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Dataverse's limit on requests per batch (reference §5.1).
pub const MAX_REQUESTS: usize = 1000;

/// The input key the item model's errors name (`batchActions[3].key`).
pub const INPUT: &str = "batchActions";

/// The `Content-Type` of inner JSON bodies (reference §5.1).
const ENTRY_CONTENT_TYPE: &str = "application/json; type=entry";

/// One HTTP request inside a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct InnerRequest {
    /// `GET`, `POST`, `PATCH`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// Server-relative (`/api/data/v9.2/accounts(…)`) or a Content-ID
    /// reference (`$1`).
    pub url: String,
    /// Extra headers; names and values were validated by whoever built them.
    pub headers: Vec<(String, String)>,
    /// JSON body (its text), sent as `application/json; type=entry`.
    /// Serialised when the request is built, straight from the item's
    /// borrowed data rather than a clone of it.
    pub body: Option<String>,
    /// `Content-ID`, echoed by Dataverse and referable as `$<id>` inside a
    /// change set.
    pub content_id: Option<String>,
}

/// A top-level part: one request, or a change set (atomic, no GETs).
#[derive(Debug, Clone, PartialEq)]
pub enum BatchPart {
    Request(InnerRequest),
    ChangeSet(Vec<InnerRequest>),
}

impl BatchPart {
    /// The part's requests in send order.
    pub fn requests(&self) -> &[InnerRequest] {
        match self {
            BatchPart::Request(r) => std::slice::from_ref(r),
            BatchPart::ChangeSet(rs) => rs,
        }
    }
}

/// An encoded batch: the outer `Content-Type` header value and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Encodes `parts` as the body of `POST /api/data/v9.2/$batch`.
///
/// Boundaries are derived from a hash of the content, so the output is
/// deterministic, and [`boundary_token`] checks that no request contains
/// them.
pub fn encode(parts: &[BatchPart]) -> EncodedBatch {
    // Each request is rendered once, all into one buffer: checked for the
    // boundary, then copied into the body (a 1,000-part batch is ~0.5 MB;
    // rendering twice, or a buffer per request, showed in the benchmark).
    let mut content = Vec::new();
    let spans: Vec<std::ops::Range<usize>> = parts
        .iter()
        .flat_map(BatchPart::requests)
        .map(|r| {
            let start = content.len();
            render_request(r, &mut content);
            start..content.len()
        })
        .collect();
    let token = boundary_token(&content, spans.len());
    let batch = format!("batch_{token}{:012x}", 0);
    let mut body = Vec::with_capacity(content.len() + 160 * spans.len() + 256);
    // `spans` are in the same order as the requests walked below.
    let mut rendered = spans
        .iter()
        .map(|s| content.get(s.clone()).unwrap_or_default());
    for (n, part) in parts.iter().enumerate() {
        push_all(&mut body, &["--", &batch, "\r\n"]);
        match part {
            BatchPart::Request(r) => {
                write_http_part(&mut body, r, rendered.next().unwrap_or_default());
            }
            BatchPart::ChangeSet(rs) => {
                let changeset = format!("changeset_{token}{:012x}", n + 1);
                push_all(
                    &mut body,
                    &[
                        "Content-Type: multipart/mixed; boundary=",
                        &changeset,
                        "\r\n\r\n",
                    ],
                );
                for r in rs {
                    push_all(&mut body, &["--", &changeset, "\r\n"]);
                    write_http_part(&mut body, r, rendered.next().unwrap_or_default());
                }
                push_all(&mut body, &["--", &changeset, "--\r\n"]);
            }
        }
    }
    push_all(&mut body, &["--", &batch, "--\r\n"]);
    EncodedBatch {
        content_type: format!("multipart/mixed; boundary={batch}"),
        body,
    }
}

/// The first 24 hex digits of every boundary in a batch, GUID-shaped
/// (`xxxxxxxx-xxxx-xxxx-xxxx-`; each boundary adds 12 digits of its own),
/// found nowhere in the `requests` rendered into `content`: so no request
/// can contain a boundary.
///
/// The first candidate comes from a fast hash of the content, so output is
/// deterministic and a collision needs content that contains a hash of
/// itself; should one occur, the next candidate is tried. A cryptographic
/// hash cost ~1.3 ms per 1,000 parts and proved nothing more than the scan.
fn boundary_token(content: &[u8], requests: usize) -> String {
    let mut h = mix(requests as u64 ^ content.len() as u64);
    let mut words = content.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    for &b in words.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    first_absent_token(h, content)
}

/// Candidates from `h`, `h + 1`, `h + 2`: the first one `content` does not
/// contain (distinct `h` give distinct candidates: `mix` is a bijection).
fn first_absent_token(mut h: u64, content: &[u8]) -> String {
    for _ in 0..3 {
        let token = candidate_token(h);
        if !crate::bytes::contains(content, token.as_bytes()) {
            return token;
        }
        h = h.wrapping_add(1);
    }
    constructed_token(h, content)
}

/// Only content written to hold our next candidates gets here, and a scan
/// per further candidate would be quadratic in how many it holds. Instead,
/// two linear passes build a token no run in `content` can match: its first
/// four hex digits `p` are the rarest among the token-shaped runs, and its
/// second group `q` is one that no run starting with `p` has. A free `q`
/// exists unless `content` holds over 65,536 runs per `p`, 100 GB in all.
fn constructed_token(h: u64, content: &[u8]) -> String {
    const GROUP: usize = 1 << 16;
    let runs = || content.windows(TOKEN_LEN).filter(|w| is_token_shaped(w));
    let mut count = vec![0u32; GROUP];
    for p in runs().filter_map(|w| hex16(w, 0)) {
        if let Some(c) = count.get_mut(p) {
            *c = c.saturating_add(1);
        }
    }
    let start = (mix(h) >> 48) as usize;
    let p = (0..GROUP)
        .map(|k| (start + k) % GROUP)
        .min_by_key(|&p| count.get(p).copied().unwrap_or(0))
        .unwrap_or(0);
    let mut taken = vec![false; GROUP];
    for w in runs().filter(|w| hex16(w, 0) == Some(p)) {
        if let Some(t) = hex16(w, 9).and_then(|q| taken.get_mut(q)) {
            *t = true;
        }
    }
    let q = (0..GROUP)
        .find(|&q| !taken.get(q).copied().unwrap_or(true))
        .unwrap_or(0);
    let rest = candidate_token(h);
    format!(
        "{p:04x}{}-{q:04x}{}",
        rest.get(4..8).unwrap_or("0000"),
        rest.get(13..).unwrap_or("-0000-0000-")
    )
}

/// Four hex digits of a token-shaped run, from byte `at`.
fn hex16(w: &[u8], at: usize) -> Option<usize> {
    let digits = std::str::from_utf8(w.get(at..at + 4)?).ok()?;
    usize::from_str_radix(digits, 16).ok()
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-`: what [`candidate_token`] writes.
const TOKEN_LEN: usize = 24;

fn is_token_shaped(w: &[u8]) -> bool {
    w.len() == TOKEN_LEN
        && w.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        })
}

fn candidate_token(h: u64) -> String {
    let (a, b) = (mix(h), mix(h ^ 0x9e37_79b9_7f4a_7c15));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b & 0xffff
    )
}

/// splitmix64's finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn push_all(out: &mut Vec<u8>, pieces: &[&str]) {
    for p in pieces {
        out.extend_from_slice(p.as_bytes());
    }
}

/// Appends the request line, headers and body (what goes after the MIME
/// headers).
fn render_request(r: &InnerRequest, out: &mut Vec<u8>) {
    push_all(out, &[r.method, " ", &r.url, " HTTP/1.1\r\n"]);
    for (name, value) in &r.headers {
        push_all(out, &[name, ": ", value, "\r\n"]);
    }
    if let Some(body) = &r.body {
        push_all(
            out,
            &[
                "Content-Type: ",
                ENTRY_CONTENT_TYPE,
                "\r\n\r\n",
                body,
                "\r\n",
            ],
        );
    } else {
        out.extend_from_slice(b"\r\n\r\n");
    }
}

/// One `application/http` part: MIME headers, then the rendered request.
fn write_http_part(out: &mut Vec<u8>, r: &InnerRequest, rendered: &[u8]) {
    out.extend_from_slice(
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n",
    );
    if let Some(id) = &r.content_id {
        push_all(out, &["Content-ID: ", id, "\r\n"]);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(rendered);
}

/// One inner response, in the order Dataverse returned it. Equal when the
/// headers are, whatever their line endings.
#[derive(Debug, Clone)]
pub struct PartResponse {
    /// The part's `Content-ID`, when Dataverse echoed one.
    pub content_id: Option<String>,
    /// Whether it came from inside a `changesetresponse_` part.
    pub in_changeset: bool,
    pub status: u16,
    /// The part's HTTP header block as received (`Name: value` lines), read
    /// on demand: a 1,000-create answer has ~3,000 headers and the
    /// connector looks at one or two per part.
    pub head: String,
    pub body: Vec<u8>,
}

impl PartialEq for PartResponse {
    fn eq(&self, other: &Self) -> bool {
        self.content_id == other.content_id
            && self.in_changeset == other.in_changeset
            && self.status == other.status
            && self.headers().eq(other.headers())
            && self.body == other.body
    }
}

impl Eq for PartResponse {}

impl PartResponse {
    /// The headers, in order, names and values trimmed.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        // The lines split at ASCII bytes of a `String`: slices stay UTF-8.
        header_lines(self.head.as_bytes())
            .filter_map(|(k, v)| Some((std::str::from_utf8(k).ok()?, std::str::from_utf8(v).ok()?)))
    }

    /// A header's value, name compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_lines(self.head.as_bytes())
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, when it is JSON.
    pub fn json(&self) -> Option<Value> {
        // A 204's empty body is not JSON; skip building the parse error.
        if self.body.is_empty() {
            return None;
        }
        serde_json::from_slice(&self.body).ok()
    }

    /// The record URL of a create/upsert: `OData-EntityId`, else `Location`.
    pub fn entity_id_url(&self) -> Option<&str> {
        self.header("OData-EntityId")
            .or_else(|| self.header("Location"))
    }

    /// The Dataverse error of a failed part (hex code, message, hint).
    pub fn error(&self) -> Option<ConnectorError> {
        if self.is_success() {
            return None;
        }
        let retry_after = self
            .header("Retry-After")
            .and_then(|v| v.trim().parse().ok());
        Some(ConnectorError::from_web_api(
            self.status,
            retry_after,
            &self.body,
        ))
    }
}

fn truncated(why: &str) -> ConnectorError {
    ConnectorError::transport(format!("the $batch response cannot be read: {why}"))
}

/// Decodes a `$batch` response body given its `Content-Type` header.
/// Change-set responses are flattened in place, so the result has one entry
/// per inner response in order. Call it whatever the outer status: without
/// `odata.continue-on-error` Dataverse answers with the first failure's
/// status and a multipart body holding only that failing part (reference
/// §5.3); a failed change set is likewise one error part.
pub fn decode(content_type: &str, body: &[u8]) -> Result<Vec<PartResponse>> {
    let boundary = boundary_of(content_type)
        .ok_or_else(|| truncated("the Content-Type has no multipart boundary"))?;
    let mut out = Vec::new();
    decode_into(&boundary, body, false, &mut out)?;
    Ok(out)
}

fn decode_into(
    boundary: &str,
    body: &[u8],
    in_changeset: bool,
    out: &mut Vec<PartResponse>,
) -> Result<()> {
    for part in split_multipart(body, boundary)? {
        let (mime_headers, content) = split_head(part);
        // Only two MIME headers matter; looked up in place, in one pass,
        // rather than collected (1,000 parts, a few allocations each).
        let (mut ctype, mut content_id) = (None, None);
        for (name, value) in header_lines(mime_headers) {
            if ctype.is_none() && name.eq_ignore_ascii_case(b"Content-Type") {
                ctype = Some(value);
            } else if content_id.is_none() && name.eq_ignore_ascii_case(b"Content-ID") {
                content_id = Some(value);
            }
        }
        let ctype = ctype.unwrap_or_default();
        if ctype
            .get(..15)
            .is_some_and(|m| m.eq_ignore_ascii_case(b"multipart/mixed"))
        {
            if in_changeset {
                return Err(truncated("a change set nested inside a change set"));
            }
            let inner = boundary_of(&text(ctype))
                .ok_or_else(|| truncated("a change set without a boundary"))?;
            decode_into(&inner, content, true, out)?;
            continue;
        }
        out.push(parse_http_response(
            content,
            content_id.map(text),
            in_changeset,
        )?);
    }
    Ok(())
}

/// `HTTP/1.1 204 No Content`, headers, blank line, body.
fn parse_http_response(
    content: &[u8],
    content_id: Option<String>,
    in_changeset: bool,
) -> Result<PartResponse> {
    let content = trim_leading_newlines(content);
    let line_end = find_byte(content, b'\n', 0).unwrap_or(content.len());
    let status_line = utf8(strip_cr(content.get(..line_end).unwrap_or(b"")));
    let mut words = status_line.split_whitespace();
    let status = match (words.next(), words.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code
            .parse::<u16>()
            .ok()
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| truncated(&format!("bad status line '{}'", clip(&status_line, 60))))?,
        _ => {
            return Err(truncated(&format!(
                "bad status line '{}'",
                clip(&status_line, 60)
            )));
        }
    };
    let rest = content.get(line_end.saturating_add(1)..).unwrap_or(b"");
    let (head, body) = split_head(rest);
    let mut body = body;
    while let Some(stripped) = body.strip_suffix(b"\n") {
        body = stripped.strip_suffix(b"\r").unwrap_or(stripped);
    }
    Ok(PartResponse {
        content_id,
        in_changeset,
        status,
        head: text(head),
        body: body.to_vec(),
    })
}

/// The `boundary` parameter of a `multipart/mixed` Content-Type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let media = params.next()?.trim();
    if !media.eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// Every scan of the body goes through here, so tests can count the bytes
/// examined and prove decoding is linear (no timing involved).
fn find_byte(hay: &[u8], needle: u8, from: usize) -> Option<usize> {
    let rest = hay.get(from..)?;
    let found = memchr::memchr(needle, rest);
    #[cfg(test)]
    tests::SCANNED.with(|c| c.set(c.get() + found.map_or(rest.len(), |i| i + 1)));
    found.map(|i| i + from)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_leading_newlines(mut s: &[u8]) -> &[u8] {
    loop {
        if let Some(r) = s.strip_prefix(b"\r\n") {
            s = r;
        } else if let Some(r) = s.strip_prefix(b"\n") {
            s = r;
        } else {
            return s;
        }
    }
}

/// The body parts between `--boundary` delimiter lines (RFC 2046): the
/// line break before a delimiter belongs to it; preamble and epilogue are
/// ignored; a missing close delimiter means the body was truncated. One
/// pass over the lines, CRLF or LF.
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut parts = Vec::new();
    let mut part_start: Option<usize> = None;
    let mut line_start = 0usize;
    while line_start < body.len() {
        let line_end = find_byte(body, b'\n', line_start).unwrap_or(body.len());
        let line = strip_cr(body.get(line_start..line_end).unwrap_or(b""));
        if let Some(rest) = line.strip_prefix(delimiter) {
            let (is_close, padding) = match rest.strip_prefix(b"--") {
                Some(p) => (true, p),
                None => (false, rest),
            };
            if padding.iter().all(|b| *b == b' ' || *b == b'\t') {
                if let Some(start) = part_start {
                    let mut end = line_start;
                    if end > start && body.get(end - 1) == Some(&b'\n') {
                        end -= 1;
                        if end > start && body.get(end - 1) == Some(&b'\r') {
                            end -= 1;
                        }
                    }
                    parts.push(body.get(start..end).unwrap_or(b""));
                }
                if is_close {
                    return Ok(parts);
                }
                part_start = Some(line_end.saturating_add(1).min(body.len()));
            }
        }
        line_start = line_end.saturating_add(1);
    }
    Err(truncated(&format!(
        "no closing '--{boundary}--' (the body is truncated or not this batch's)"
    )))
}

/// Splits at the first blank line: (headers, rest). No blank line: all
/// headers, empty rest.
fn split_head(part: &[u8]) -> (&[u8], &[u8]) {
    let mut line_start = 0usize;
    while line_start < part.len() {
        let line_end = find_byte(part, b'\n', line_start).unwrap_or(part.len());
        let line = strip_cr(part.get(line_start..line_end).unwrap_or(b""));
        if line.is_empty() {
            let head = part.get(..line_start).unwrap_or(b"");
            let rest = part
                .get(line_end.saturating_add(1).min(part.len())..)
                .unwrap_or(b"");
            return (head, rest);
        }
        line_start = line_end.saturating_add(1);
    }
    (part, b"")
}

/// The `Name: value` lines of a raw header block, name and value trimmed;
/// other lines are skipped. Works on bytes (headers are ASCII; a stray
/// invalid byte only becomes U+FFFD where a value is turned into text).
fn header_lines(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|b| *b == b'\n').filter_map(|line| {
        let colon = memchr::memchr(b':', line)?;
        let name = line.get(..colon)?.trim_ascii();
        let value = line.get(colon + 1..)?.trim_ascii();
        (!name.is_empty()).then_some((name, value))
    })
}

/// UTF-8 text, U+FFFD for invalid bytes. `from_utf8` first: its ASCII
/// fast path beats the lossy decoder's byte-by-byte walk (1,000 parts).
fn utf8(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

fn text(bytes: &[u8]) -> String {
    utf8(bytes).into_owned()
}

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

// ---------------------------------------------------------------------------
// The `batchActions` item model.

/// What an item does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchAction {
    /// `POST {collection}`.
    Create,
    /// `PATCH {collection}({key})` with `If-Match: *` (update only, 404 when missing).
    Update,
    /// `PATCH {collection}({key})` (creates when missing).
    Upsert,
    /// `DELETE {collection}({key})`.
    Delete,
    /// `GET {collection}[({key})][?query]`.
    Get,
}

impl BatchAction {
    const ALL: [Self; 5] = [
        Self::Create,
        Self::Update,
        Self::Upsert,
        Self::Delete,
        Self::Get,
    ];

    /// An item's `action`, any case.
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|a| a.key().eq_ignore_ascii_case(s))
    }

    pub fn is_write(self) -> bool {
        !matches!(self, Self::Get)
    }

    /// As items and results name it.
    pub fn key(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Upsert => "upsert",
            Self::Delete => "delete",
            Self::Get => "get",
        }
    }
}

/// How an item addresses its record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ItemKey {
    /// A primary key GUID or alternate key values.
    Record(EntityKey),
    /// A record created earlier in the same change set (`$1`).
    ContentRef(usize),
}

impl ItemKey {
    /// `key` is a GUID (braces allowed), `$n`, an alternate key in OData
    /// syntax (`accountnumber='A-1'`), or an object of alternate key values
    /// (`{"accountnumber": "A-1"}`). `input` names the field for errors.
    fn parse(input: &str, value: &Value) -> Result<Self> {
        match value {
            Value::String(s) => {
                if let Some(n) = parse_content_ref(s.trim()) {
                    return Ok(Self::ContentRef(n));
                }
                EntityKey::parse(input, s).map(Self::Record)
            }
            Value::Object(map) if !map.is_empty() => {
                let mut pairs = Vec::with_capacity(map.len());
                for (name, v) in map {
                    if !is_identifier(name) {
                        return Err(ConnectorError::invalid_input(
                            input,
                            format!("'{name}' is not a column name"),
                        ));
                    }
                    let value = match v {
                        Value::String(s) => KeyValue::String(s.clone()),
                        Value::Number(n) => KeyValue::Bare(n.to_string()),
                        Value::Bool(b) => KeyValue::Bare(b.to_string()),
                        _ => {
                            return Err(ConnectorError::invalid_input(
                                input,
                                format!(
                                    "the value of '{name}' must be a string, a number or true/false"
                                ),
                            ));
                        }
                    };
                    pairs.push((name.clone(), value));
                }
                Ok(Self::Record(EntityKey::Alternate(pairs)))
            }
            _ => Err(ConnectorError::invalid_input(
                input,
                "must be a GUID, an alternate key such as accountnumber='A-1', an object of alternate key values, or $n",
            )),
        }
    }

    fn path(&self, collection_url: &str) -> String {
        match self {
            Self::Record(k) => format!("{collection_url}{}", k.to_segment()),
            Self::ContentRef(n) => format!("${n}"),
        }
    }
}

fn parse_guid(s: &str) -> Option<String> {
    Guid::parse(s).map(Guid::into_string)
}

fn parse_content_ref(s: &str) -> Option<usize> {
    let n = s.strip_prefix('$')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// One validated `batchActions` item. Its body borrows from the input
/// (1,000 creates would otherwise deep-copy 1,000 maps).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem<'a> {
    pub collection: EntitySet,
    pub action: BatchAction,
    key: Option<ItemKey>,
    pub data: Option<Cow<'a, Map<String, Value>>>,
    pub return_representation: bool,
    pub headers: Vec<(String, String)>,
    /// OData query options for `get` (`$select=name&$filter=…`).
    pub query: Option<String>,
}

/// The members a `batchActions` item may have.
pub const ITEM_FIELDS: &[&str] = &[
    "collection",
    "action",
    "key",
    "data",
    "returnRepresentation",
    "headers",
    "query",
];

/// Headers an item may not set: the batch framing and the connection own them.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "content-length",
    "content-id",
    "content-transfer-encoding",
    "host",
];

fn field_error(i: usize, field: &str, message: impl Into<String>) -> ConnectorError {
    ConnectorError::invalid_input(format!("{INPUT}[{i}].{field}"), message)
}

/// [`parse_items`] of a test's literal list, detached from it.
#[cfg(test)]
pub(crate) fn parse_owned(list: Value, atomic: bool) -> Vec<BatchItem<'static>> {
    let items = parse_items(&list, atomic).expect("a valid test list");
    items.into_iter().map(BatchItem::into_owned).collect()
}

/// Validates the whole `batchActions` list before anything is sent.
/// `atomic` is whether the writes will run as one change set: `$n`
/// references only resolve inside a change set.
pub fn parse_items(value: &Value, atomic: bool) -> Result<Vec<BatchItem<'_>>> {
    match value {
        // Builders often pass the list as JSON text: its items own their bodies.
        Value::String(s) => {
            let parsed = serde_json::from_str::<Value>(s).map_err(|e| {
                ConnectorError::invalid_input(INPUT, format!("is not a JSON array ({e})"))
            })?;
            let items = parse_list(&parsed, atomic)?;
            Ok(items.into_iter().map(BatchItem::into_owned).collect())
        }
        v => parse_list(v, atomic),
    }
}

fn parse_list(value: &Value, atomic: bool) -> Result<Vec<BatchItem<'_>>> {
    let Value::Array(list) = value else {
        return Err(ConnectorError::invalid_input(
            INPUT,
            "must be an array of items",
        ));
    };
    if list.is_empty() {
        return Err(ConnectorError::invalid_input(INPUT, "has no items"));
    }
    if list.len() > MAX_REQUESTS {
        return Err(ConnectorError::invalid_input(
            INPUT,
            format!(
                "has {} items; Dataverse runs at most {MAX_REQUESTS} requests per $batch: split the list",
                list.len()
            ),
        ));
    }
    let mut items: Vec<BatchItem<'_>> = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let item = parse_item(i, raw, atomic, &items)?;
        items.push(item);
    }
    Ok(items)
}

fn parse_item<'a>(
    i: usize,
    raw: &'a Value,
    atomic: bool,
    earlier: &[BatchItem<'_>],
) -> Result<BatchItem<'a>> {
    let Value::Object(obj) = raw else {
        return Err(ConnectorError::invalid_input(
            format!("{INPUT}[{i}]"),
            "must be an object {collection, action, key, data, …}",
        ));
    };
    if let Some(unknown) = obj.keys().find(|k| !ITEM_FIELDS.contains(&k.as_str())) {
        return Err(field_error(
            i,
            unknown,
            format!("is not an item field (fields: {})", ITEM_FIELDS.join(", ")),
        ));
    }
    let present = |k: &str| {
        obj.get(k)
            .filter(|v| !v.is_null() && *v != &Value::String(String::new()))
    };
    let action = match present("action") {
        None => {
            return Err(field_error(
                i,
                "action",
                "is required (create, update, upsert, delete or get)",
            ));
        }
        Some(Value::String(s)) => BatchAction::parse(s).ok_or_else(|| {
            field_error(
                i,
                "action",
                format!("'{s}' is not one of create, update, upsert, delete, get"),
            )
        })?,
        Some(_) => return Err(field_error(i, "action", "must be a string")),
    };
    let collection = match present("collection") {
        // The field's name is only formatted for an error (1,000 items).
        Some(Value::String(s)) => EntitySet::parse(INPUT, s).map_err(|_| {
            field_error(
                i,
                "collection",
                format!("'{s}' is not an entity set name (e.g. accounts)"),
            )
        })?,
        Some(_) => return Err(field_error(i, "collection", "must be a string")),
        None => {
            return Err(field_error(
                i,
                "collection",
                "is required (the entity set name, e.g. accounts)",
            ));
        }
    };
    let key = match present("key") {
        None => None,
        Some(v) => Some(ItemKey::parse(&format!("{INPUT}[{i}].key"), v)?),
    };
    match (action, &key) {
        (BatchAction::Update | BatchAction::Upsert | BatchAction::Delete, None) => {
            return Err(field_error(
                i,
                "key",
                format!("is required for {action:?}").to_ascii_lowercase(),
            ));
        }
        (BatchAction::Create, Some(_)) => {
            return Err(field_error(
                i,
                "key",
                "is not used by create (Dataverse assigns the id): use upsert to write a record with a known key",
            ));
        }
        _ => {}
    }
    if let Some(ItemKey::ContentRef(n)) = key {
        check_reference(i, "key", n, atomic, earlier)?;
    }
    let data = match present("data") {
        None => None,
        Some(Value::Object(m))
            if m.is_empty()
                && !matches!(
                    action,
                    BatchAction::Create | BatchAction::Update | BatchAction::Upsert
                ) =>
        {
            None
        }
        Some(Value::Object(m)) => Some(Cow::Borrowed(m)),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Some(Cow::Owned(m)),
            _ => {
                return Err(field_error(
                    i,
                    "data",
                    "must be a JSON object of column values",
                ));
            }
        },
        Some(_) => {
            return Err(field_error(
                i,
                "data",
                "must be a JSON object of column values",
            ));
        }
    };
    match (action, &data) {
        (BatchAction::Create | BatchAction::Update | BatchAction::Upsert, None) => {
            return Err(field_error(
                i,
                "data",
                format!("is required for {action:?}").to_ascii_lowercase(),
            ));
        }
        (BatchAction::Delete | BatchAction::Get, Some(_)) => {
            return Err(field_error(
                i,
                "data",
                format!("is not used by {action:?}").to_ascii_lowercase(),
            ));
        }
        _ => {}
    }
    if let Some(map) = &data {
        for (name, v) in map.iter() {
            for n in content_refs(name, v) {
                check_reference(i, "data", n, atomic, earlier)?;
            }
        }
    }
    let return_representation = match present("returnRepresentation") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err(field_error(
                i,
                "returnRepresentation",
                "must be true or false",
            ));
        }
    };
    let headers = match present("headers") {
        None => Vec::new(),
        Some(Value::Object(m)) => {
            let mut out = Vec::with_capacity(m.len());
            for (name, v) in m {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(field_error(
                            i,
                            "headers",
                            format!("the value of '{name}' must be a string"),
                        ));
                    }
                };
                let token_ok = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token_ok {
                    return Err(field_error(
                        i,
                        "headers",
                        format!("'{name}' is not a header name"),
                    ));
                }
                if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(field_error(
                        i,
                        "headers",
                        format!("'{name}' is set by the connector and cannot be overridden"),
                    ));
                }
                if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                    return Err(field_error(
                        i,
                        "headers",
                        format!("the value of '{name}' contains a line break or control character"),
                    ));
                }
                out.push((name.clone(), value));
            }
            out
        }
        Some(_) => {
            return Err(field_error(
                i,
                "headers",
                "must be an object of header names to values",
            ));
        }
    };
    let query = match present("query") {
        None => None,
        Some(Value::String(q)) if action == BatchAction::Get => {
            Some(q.trim().trim_start_matches('?').to_string())
        }
        Some(Value::String(_)) => return Err(field_error(i, "query", "is only used by get")),
        Some(_) => {
            return Err(field_error(
                i,
                "query",
                "must be a string of OData query options",
            ));
        }
    };
    Ok(BatchItem {
        collection,
        action,
        key,
        data,
        return_representation,
        headers,
        query,
    })
}

/// `$n` references in a body value: strings under `…@odata.bind` (or its
/// arrays) and `@odata.id`, at any depth.
fn content_refs(name: &str, value: &Value) -> Vec<usize> {
    let is_ref_key = name.ends_with("@odata.bind") || name == "@odata.id";
    match value {
        Value::String(s) if is_ref_key => {
            let head = s.split('/').next().unwrap_or("");
            parse_content_ref(head).into_iter().collect()
        }
        Value::Array(a) => a.iter().flat_map(|v| content_refs(name, v)).collect(),
        Value::Object(m) => m.iter().flat_map(|(k, v)| content_refs(k, v)).collect(),
        _ => Vec::new(),
    }
}

fn check_reference(
    i: usize,
    field: &str,
    n: usize,
    atomic: bool,
    earlier: &[BatchItem],
) -> Result<()> {
    let target = n.checked_sub(1).and_then(|j| earlier.get(j));
    match target {
        Some(t) if matches!(t.action, BatchAction::Create | BatchAction::Upsert) => {}
        Some(_) => {
            return Err(field_error(
                i,
                field,
                format!(
                    "${n} refers to item {} which does not create a record",
                    n - 1
                ),
            ));
        }
        None => {
            return Err(field_error(
                i,
                field,
                format!(
                    "${n} must refer to an earlier item: $1 is the first item (batchActions[0])"
                ),
            ));
        }
    }
    if !atomic {
        return Err(field_error(
            i,
            field,
            format!(
                "${n} references only resolve inside a change set: run the batch with atomic: true"
            ),
        ));
    }
    Ok(())
}

impl BatchItem<'_> {
    /// This item with a body of its own, independent of the input.
    pub fn into_owned(self) -> BatchItem<'static> {
        BatchItem {
            collection: self.collection,
            action: self.action,
            key: self.key,
            data: self.data.map(|d| Cow::Owned(d.into_owned())),
            return_representation: self.return_representation,
            headers: self.headers,
            query: self.query,
        }
    }

    /// The record's GUID when the key is a primary key (not an alternate
    /// key and not a `$n` reference).
    pub fn record_id(&self) -> Option<&Guid> {
        match &self.key {
            Some(ItemKey::Record(EntityKey::Id(g))) => Some(g),
            _ => None,
        }
    }

    /// The `$n` references of this item (key and body), as n.
    pub fn referenced(&self) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .data
            .iter()
            .flat_map(|m| m.iter().flat_map(|(k, v)| content_refs(k, v)))
            .collect();
        if let Some(ItemKey::ContentRef(n)) = self.key {
            out.push(n);
        }
        out
    }

    /// Whether the body refers to a record created earlier in the batch.
    pub fn has_content_refs(&self) -> bool {
        self.data
            .as_ref()
            .is_some_and(|m| m.iter().any(|(k, v)| !content_refs(k, v).is_empty()))
    }
}

impl BatchItem<'_> {
    /// The inner request for this item. `api_root` is the server-relative
    /// service root, e.g. `/api/data/v9.2/`; `content_id` is `index + 1`.
    pub fn to_request(&self, api_root: &str, content_id: usize) -> InnerRequest {
        let collection_url = format!("{api_root}{}", self.collection);
        let record_url = || {
            self.key
                .as_ref()
                .map(|k| k.path(&collection_url))
                .unwrap_or_else(|| collection_url.clone())
        };
        let (method, url) = match self.action {
            BatchAction::Create => ("POST", collection_url.clone()),
            BatchAction::Update | BatchAction::Upsert => ("PATCH", record_url()),
            BatchAction::Delete => ("DELETE", record_url()),
            BatchAction::Get => {
                let url = record_url();
                match self.query.as_deref().filter(|q| !q.is_empty()) {
                    Some(q) => ("GET", format!("{url}?{}", percent::encode_query(q))),
                    None => ("GET", url),
                }
            }
        };
        let mut headers = Vec::new();
        if self.action == BatchAction::Update {
            headers.push(("If-Match".to_string(), "*".to_string()));
        }
        if self.return_representation
            && self.action.is_write()
            && self.action != BatchAction::Delete
        {
            headers.push(("Prefer".to_string(), "return=representation".to_string()));
        }
        for (k, v) in &self.headers {
            if let Some(existing) = headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(k)) {
                existing.1 = v.clone();
            } else {
                headers.push((k.clone(), v.clone()));
            }
        }
        InnerRequest {
            method,
            url,
            headers,
            // A map of Values always serialises.
            body: self
                .data
                .as_ref()
                .map(|m| serde_json::to_string(&**m).unwrap_or_default()),
            content_id: Some(content_id.to_string()),
        }
    }
}

/// The parts for `items`: individual parts, or (atomic) every write in one
/// change set placed at the first write; reads keep their relative order
/// around it (GETs are not allowed inside a change set). Content-IDs are
/// `index + 1`, so responses map back with [`assign_to_items`].
pub fn build_parts(items: &[BatchItem], api_root: &str, atomic: bool) -> Vec<BatchPart> {
    let requests = items
        .iter()
        .enumerate()
        .map(|(i, item)| item.to_request(api_root, i + 1));
    if !atomic {
        return requests.map(BatchPart::Request).collect();
    }
    let mut parts = Vec::new();
    let mut changeset: Option<usize> = None;
    for (item, request) in items.iter().zip(requests) {
        if item.action.is_write() {
            match changeset.and_then(|at| parts.get_mut(at)) {
                Some(BatchPart::ChangeSet(rs)) => rs.push(request),
                _ => {
                    changeset = Some(parts.len());
                    parts.push(BatchPart::ChangeSet(vec![request]));
                }
            }
        } else {
            parts.push(BatchPart::Request(request));
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
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
        let items = parse_items(&list, false).unwrap();
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
            let e = parse_items(&value, atomic).unwrap_err();
            assert_eq!(input_of(&e), expected, "{value}: {}", e.message);
        }
    }

    #[test]
    fn more_than_a_thousand_items_is_invalid_input() {
        let one = json!({"collection": "accounts", "action": "create", "data": {"name": "x"}});
        let ok = Value::Array(vec![one.clone(); MAX_REQUESTS]);
        assert_eq!(parse_items(&ok, false).unwrap().len(), MAX_REQUESTS);
        let too_many = Value::Array(vec![one; MAX_REQUESTS + 1]);
        let e = parse_items(&too_many, false).unwrap_err();
        assert_eq!(input_of(&e), "batchActions");
        assert!(e.message.contains("1001"), "{}", e.message);
        // A JSON string holding the array is accepted too (builders send strings).
        let s = Value::String(json!([{"collection": "accounts", "action": "get"}]).to_string());
        assert_eq!(parse_items(&s, false).unwrap()[0].action, BatchAction::Get);
    }
}
