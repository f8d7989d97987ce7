//! Decoding a `$batch` response into one [`PartResponse`] per inner part
//! (nested `changesetresponse_` parts included), never panicking: a
//! truncated or malformed body is a `transport` error.

use crate::error::{ConnectorError, Result, clip};
use serde_json::Value;
use std::borrow::Cow;

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
    super::tests::SCANNED.with(|c| c.set(c.get() + found.map_or(rest.len(), |i| i + 1)));
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
pub(super) fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>> {
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
pub(super) fn split_head(part: &[u8]) -> (&[u8], &[u8]) {
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
pub(super) fn header_lines(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
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

pub(super) fn text(bytes: &[u8]) -> String {
    utf8(bytes).into_owned()
}
