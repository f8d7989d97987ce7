//! `POST /api/data/v9.2/$batch` as Dataverse implements it (reference §5):
//! a `multipart/mixed` body of requests and change sets, executed in order
//! through the emulator's own router, answered with a
//! `batchresponse_<guid>` multipart body.
//!
//! Behaviour (reference §5, checklist item 11):
//! - parts run sequentially; responses come back in the same order;
//! - a change set is atomic: the emulator's data is snapshotted before it
//!   and restored when any request in it fails; the response then holds the
//!   single failing response instead of the change set;
//! - `Content-ID: n` inside a change set makes `$n` usable as a URL
//!   (`PATCH $1`, `$1/lastname`) and in `@odata.bind` / `@odata.id` values;
//!   `$n` before its declaration → 400 `Content-ID Reference: '$n' does not
//!   exist in the batch context.`;
//! - without `Prefer: odata.continue-on-error`, processing stops at the
//!   first failure, the outer status becomes that failure's status and the
//!   body holds only the failing response; with it, everything runs and the
//!   outer status is 200;
//! - creates carry both `Location` and `OData-EntityId`; error parts carry
//!   `REQ_ID: <guid>`;
//! - at most 1000 requests; GET is not allowed inside a change set; batches
//!   do not nest.
//!
//! UNCONFIRMED (the reference gives no text): the code/message of the
//! 1000-request limit, of a malformed body, of a GET in a change set and of
//! a nested batch (code `0x0`, OData-library style messages); echoing a
//! failing change-set request's `Content-ID` on the single error part;
//! `Preference-Applied: odata.continue-on-error`.

use super::caller::Caller;
use super::reply::method_not_allowed;
use crate::emulator::odata::payload;
use crate::emulator::response::odata_error;
use crate::emulator::store::new_guid;
use crate::emulator::{EmuRequest, EmuResponse, State, route, url_too_long};
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;

/// Requests per batch (reference §5.1).
pub const MAX_REQUESTS: usize = 1000;

/// Longest inner request URL: 64 KB (65,536 characters), reference §4.
pub const MAX_INNER_URL_LEN: usize = 65_536;

/// Headers of the outer request every inner request inherits unless it
/// sets its own (authentication, host, impersonation).
const INHERITED: &[&str] = &["authorization", "host", "callerobjectid", "mscrmcallerid"];

/// One inner request as parsed from the body.
#[derive(Debug, Clone, PartialEq)]
pub struct InnerRequest {
    pub content_id: Option<String>,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A top-level part of the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Request(InnerRequest),
    ChangeSet(Vec<InnerRequest>),
}

/// An inner response, ready to be written as an `application/http` part.
struct PartResponse {
    content_id: Option<String>,
    response: EmuResponse,
}

pub fn handle(state: &mut State, request: &EmuRequest, caller: &Caller) -> EmuResponse {
    if request.method() != http::Method::POST {
        return method_not_allowed(request.method());
    }
    let content_type = header(request.headers(), "content-type").unwrap_or_default();
    let Some(boundary) = boundary_of(&content_type) else {
        return odata_error(
            400,
            "0x0",
            "The content type of the batch request must be multipart/mixed with a boundary.",
        );
    };
    let parts = match parse_body(request.body(), &boundary) {
        Ok(p) => p,
        Err(msg) => return odata_error(400, "0x0", &msg),
    };
    let count: usize = parts
        .iter()
        .map(|p| match p {
            Part::Request(_) => 1,
            Part::ChangeSet(rs) => rs.len(),
        })
        .sum();
    if count > MAX_REQUESTS {
        return odata_error(
            400,
            "0x0",
            &format!(
                "The number of requests in the batch ({count}) exceeds the maximum of {MAX_REQUESTS}."
            ),
        );
    }
    for p in &parts {
        if let Part::ChangeSet(rs) = p
            && rs.iter().any(|r| r.method.eq_ignore_ascii_case("GET"))
        {
            return odata_error(
                400,
                "0x0",
                "The HTTP method 'GET' is invalid for a request in a change set. Only POST, PUT, PATCH and DELETE requests are allowed in change sets.",
            );
        }
    }
    let continue_on_error = prefers_continue_on_error(request);
    let mut out: Vec<Answer> = Vec::new();
    let mut outer_status = 200u16;
    for part in parts {
        let answer = match part {
            Part::Request(r) => {
                let response = execute(state, request, caller, &r, &HashMap::new());
                Answer::Single(PartResponse {
                    content_id: r.content_id.clone(),
                    response,
                })
            }
            Part::ChangeSet(rs) => run_changeset(state, request, caller, &rs),
        };
        let failed = answer.failure_status();
        match failed {
            Some(status) if !continue_on_error => {
                outer_status = status;
                out.clear();
                out.push(answer);
                break;
            }
            _ => out.push(answer),
        }
    }
    write_response(outer_status, continue_on_error, &out)
}

enum Answer {
    Single(PartResponse),
    ChangeSet(Vec<PartResponse>),
}

impl Answer {
    fn failure_status(&self) -> Option<u16> {
        match self {
            Answer::Single(p) if p.response.status().as_u16() >= 400 => {
                Some(p.response.status().as_u16())
            }
            _ => None,
        }
    }
}

/// Runs a change set atomically: on the first failure the data is restored
/// and that failure alone answers for the change set.
fn run_changeset(
    state: &mut State,
    outer: &EmuRequest,
    caller: &Caller,
    requests: &[InnerRequest],
) -> Answer {
    let snapshot = state.snapshot();
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut responses = Vec::with_capacity(requests.len());
    for r in requests {
        let response = execute(state, outer, caller, r, &ids);
        if response.status().as_u16() >= 400 {
            state.restore(snapshot);
            return Answer::Single(PartResponse {
                content_id: r.content_id.clone(),
                response,
            });
        }
        if let (Some(id), Some(url)) = (
            &r.content_id,
            header(response.headers(), "odata-entityid")
                .or_else(|| header(response.headers(), "location")),
        ) {
            ids.insert(id.clone(), url);
        }
        responses.push(PartResponse {
            content_id: r.content_id.clone(),
            response,
        });
    }
    Answer::ChangeSet(responses)
}

/// Executes one inner request through the emulator's router, after
/// resolving `$n` references against `ids` (Content-ID → entity URL).
fn execute(
    state: &mut State,
    outer: &EmuRequest,
    caller: &Caller,
    r: &InnerRequest,
    ids: &HashMap<String, String>,
) -> EmuResponse {
    let url = match resolve_url(&r.url, ids) {
        Ok(u) => u,
        Err(reference) => return reference_error(&reference),
    };
    if url.len() > MAX_INNER_URL_LEN {
        return url_too_long();
    }
    let path = match to_server_path(&url, caller) {
        Some(p) => p,
        None => {
            return odata_error(
                400,
                "0x0",
                &format!("The request URI '{url}' is not valid."),
            );
        }
    };
    if path.split('?').next().unwrap_or("").ends_with("/$batch") {
        return odata_error(
            400,
            "0x0",
            "A batch request cannot contain another batch request.",
        );
    }
    let body = if r.body.is_empty() {
        Bytes::new()
    } else {
        match resolve_body(&r.body, ids) {
            Ok(b) => b,
            Err(reference) => return reference_error(&reference),
        }
    };
    let Ok(method) = http::Method::from_bytes(r.method.as_bytes()) else {
        return odata_error(
            400,
            "0x0",
            &format!("The HTTP method '{}' is not valid.", r.method),
        );
    };
    let mut builder = http::Request::builder().method(method).uri(path.as_str());
    for (k, v) in &r.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    for name in INHERITED {
        if !r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
            && let Some(v) = outer.headers().get(*name)
        {
            builder = builder.header(*name, v.clone());
        }
    }
    let inner = match builder.body(body) {
        Ok(req) => req,
        Err(e) => return odata_error(400, "0x0", &format!("The inner request is not valid: {e}.")),
    };
    let mut response = route(state, &inner);
    // Creates inside a batch carry Location as well as OData-EntityId.
    if inner.method() == http::Method::POST
        && response.status().is_success()
        && let Some(id) = response.headers().get("OData-EntityId").cloned()
        && !response.headers().contains_key(http::header::LOCATION)
    {
        response.headers_mut().insert(http::header::LOCATION, id);
    }
    response
}

fn reference_error(reference: &str) -> EmuResponse {
    odata_error(
        400,
        "0x0",
        &format!("Content-ID Reference: '{reference}' does not exist in the batch context."),
    )
}

/// `$1`, `$1/lastname` → the referenced entity URL (+ rest); other URLs
/// unchanged. `Err` carries the unresolved reference (`$1`).
fn resolve_url(url: &str, ids: &HashMap<String, String>) -> Result<String, String> {
    let Some(rest) = url.strip_prefix('$') else {
        return Ok(url.to_string());
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() {
        // `$batch`, `$metadata`…: not a reference.
        return Ok(url.to_string());
    }
    let tail = rest.get(digits.len()..).unwrap_or("");
    match ids.get(&digits) {
        Some(target) => Ok(format!("{target}{tail}")),
        None => Err(format!("${digits}")),
    }
}

/// Replaces `$n` in `…@odata.bind` and `@odata.id` values of a JSON body.
/// Any other body goes on byte for byte, so that the endpoint judges what
/// was sent: parsed into a map and written again it would lose a duplicate
/// property (which the endpoint refuses) and digits an f64 cannot hold.
fn resolve_body(body: &[u8], ids: &HashMap<String, String>) -> Result<Bytes, String> {
    // `$` as itself or escaped (`\u0024`, which JSON reads as `$`).
    let may_refer = body.contains(&b'$') || body.windows(6).any(|w| w == b"\\u0024");
    let Some(mut json) = may_refer.then(|| payload::parse(body).ok()).flatten() else {
        return Ok(Bytes::copy_from_slice(body));
    };
    if resolve_value(None, &mut json, ids)? {
        Ok(Bytes::from(json.to_string()))
    } else {
        // A `$` that was no reference ("$5").
        Ok(Bytes::copy_from_slice(body))
    }
}

/// Whether anything was replaced.
fn resolve_value(
    key: Option<&str>,
    v: &mut Value,
    ids: &HashMap<String, String>,
) -> Result<bool, String> {
    let is_ref_key = key.is_some_and(|k| k.ends_with("@odata.bind") || k == "@odata.id");
    let mut replaced = false;
    match v {
        Value::String(s) if is_ref_key && s.starts_with('$') => {
            *s = resolve_url(s, ids)?;
            replaced = true;
        }
        Value::Array(a) => {
            for item in a {
                replaced |= resolve_value(key, item, ids)?;
            }
        }
        Value::Object(m) => {
            for (k, item) in m.iter_mut() {
                replaced |= resolve_value(Some(k.as_str()), item, ids)?;
            }
        }
        _ => {}
    }
    Ok(replaced)
}

/// Absolute (`http://host/api/data/v9.2/x`), server-relative
/// (`/api/data/v9.2/x`) or service-root-relative (`x`) → path and query.
fn to_server_path(url: &str, caller: &Caller) -> Option<String> {
    let path = if let Some(after_scheme) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    {
        let slash = after_scheme.find('/')?;
        after_scheme.get(slash..)?.to_string()
    } else if url.starts_with('/') {
        url.to_string()
    } else {
        let root = caller.service_root.split_once("://").map(|(_, r)| r)?;
        let root_path = root.get(root.find('/')?..)?;
        format!("{root_path}{url}")
    };
    path.parse::<http::Uri>().ok().map(|_| path)
}

fn prefers_continue_on_error(request: &EmuRequest) -> bool {
    request
        .headers()
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| {
            let p = p.trim().to_ascii_lowercase();
            p == "odata.continue-on-error" || p == "continue-on-error"
        })
}

fn header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The `boundary` parameter of a `multipart/mixed` Content-Type.
fn boundary_of(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    if !params
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/mixed")
    {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim().eq_ignore_ascii_case("boundary") && !v.is_empty()).then(|| v.to_string())
    })
}

// --- multipart parsing (the emulator's own; it shares nothing with src/) ---

/// Parses the request body into parts. `Err` is the 400 message.
pub fn parse_body(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    for raw in split(body, boundary)? {
        let (head, content) = split_head(raw);
        let head = headers_of(head);
        let ctype = head
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if ctype
            .trim()
            .to_ascii_lowercase()
            .starts_with("multipart/mixed")
        {
            let inner = boundary_of(ctype)
                .ok_or_else(|| "A change set part has no boundary.".to_string())?;
            let mut requests = Vec::new();
            for raw in split(content, &inner)? {
                let (head, content) = split_head(raw);
                let head = headers_of(head);
                if is_multipart(&head) {
                    return Err("Change sets cannot be nested.".into());
                }
                requests.push(parse_request(&head, content)?);
            }
            parts.push(Part::ChangeSet(requests));
        } else {
            parts.push(Part::Request(parse_request(&head, content)?));
        }
    }
    Ok(parts)
}

fn is_multipart(head: &[(String, String)]) -> bool {
    head.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type")
            && v.trim().to_ascii_lowercase().starts_with("multipart/")
    })
}

fn parse_request(mime: &[(String, String)], content: &[u8]) -> Result<InnerRequest, String> {
    let content_id = mime
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-id"))
        .map(|(_, v)| v.trim().to_string());
    let mut content = content;
    while let Some(rest) = content
        .strip_prefix(b"\r\n")
        .or_else(|| content.strip_prefix(b"\n"))
    {
        content = rest;
    }
    let line_end = content
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(content.len());
    let line = String::from_utf8_lossy(content.get(..line_end).unwrap_or(b""));
    let mut words = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(url)) = (words.next(), words.next()) else {
        return Err(format!("The request line '{}' is not valid.", line.trim()));
    };
    if method.is_empty() || url.is_empty() {
        return Err(format!("The request line '{}' is not valid.", line.trim()));
    }
    let rest = content
        .get(line_end.saturating_add(1).min(content.len())..)
        .unwrap_or(b"");
    let (head, body) = split_head(rest);
    let mut body = body;
    while let Some(b) = body.strip_suffix(b"\n") {
        body = b.strip_suffix(b"\r").unwrap_or(b);
    }
    Ok(InnerRequest {
        content_id,
        method: method.to_string(),
        url: url.to_string(),
        headers: headers_of(head),
        body: body.to_vec(),
    })
}

/// Body parts between `--boundary` lines; the line break before a
/// delimiter belongs to it (RFC 2046). One pass over the lines.
fn split<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>, String> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0usize;
    while pos < body.len() {
        let end = body
            .get(pos..)
            .and_then(|r| r.iter().position(|b| *b == b'\n'))
            .map_or(body.len(), |i| pos + i);
        let line = body.get(pos..end).unwrap_or(b"");
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(delimiter) {
            let (close, pad) = match rest.strip_prefix(b"--") {
                Some(p) => (true, p),
                None => (false, rest),
            };
            if pad.iter().all(|b| *b == b' ' || *b == b'\t') {
                if let Some(s) = start {
                    let mut e = pos;
                    if e > s && body.get(e - 1) == Some(&b'\n') {
                        e -= 1;
                        if e > s && body.get(e - 1) == Some(&b'\r') {
                            e -= 1;
                        }
                    }
                    parts.push(body.get(s..e).unwrap_or(b""));
                }
                if close {
                    return Ok(parts);
                }
                start = Some((end + 1).min(body.len()));
            }
        }
        pos = end + 1;
    }
    Err(format!(
        "The MIME multipart message is missing its closing boundary '--{boundary}--'."
    ))
}

fn split_head(part: &[u8]) -> (&[u8], &[u8]) {
    let mut pos = 0usize;
    while pos < part.len() {
        let end = part
            .get(pos..)
            .and_then(|r| r.iter().position(|b| *b == b'\n'))
            .map_or(part.len(), |i| pos + i);
        let line = part.get(pos..end).unwrap_or(b"");
        if line.is_empty() || line == b"\r" {
            return (
                part.get(..pos).unwrap_or(b""),
                part.get((end + 1).min(part.len())..).unwrap_or(b""),
            );
        }
        pos = end + 1;
    }
    (part, b"")
}

fn headers_of(head: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(head)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}

// --- the response ---

fn write_response(status: u16, continue_on_error: bool, answers: &[Answer]) -> EmuResponse {
    let boundary = format!("batchresponse_{}", new_guid());
    let mut body = Vec::new();
    for answer in answers {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match answer {
            Answer::Single(p) => write_part(&mut body, p),
            Answer::ChangeSet(ps) => {
                let cs = format!("changesetresponse_{}", new_guid());
                body.extend_from_slice(
                    format!("Content-Type: multipart/mixed; boundary={cs}\r\n\r\n").as_bytes(),
                );
                for p in ps {
                    body.extend_from_slice(format!("--{cs}\r\n").as_bytes());
                    write_part(&mut body, p);
                }
                body.extend_from_slice(format!("--{cs}--\r\n").as_bytes());
            }
        }
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let mut builder = http::Response::builder()
        .status(status)
        .header("OData-Version", "4.0")
        .header(
            "Content-Type",
            format!("multipart/mixed; boundary={boundary}"),
        );
    if continue_on_error {
        builder = builder.header("Preference-Applied", "odata.continue-on-error");
    }
    builder.body(Bytes::from(body)).unwrap_or_default()
}

fn write_part(out: &mut Vec<u8>, p: &PartResponse) {
    out.extend_from_slice(
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n",
    );
    if let Some(id) = &p.content_id {
        out.extend_from_slice(format!("Content-ID: {id}\r\n").as_bytes());
    }
    let status = p.response.status();
    out.extend_from_slice(
        format!(
            "\r\nHTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    if status.as_u16() >= 400 {
        out.extend_from_slice(format!("REQ_ID: {}\r\n", new_guid()).as_bytes());
    }
    for (k, v) in p.response.headers() {
        if k == http::header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(
            format!(
                "{}: {}\r\n",
                canonical(k.as_str()),
                String::from_utf8_lossy(v.as_bytes())
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(p.response.body());
    out.extend_from_slice(b"\r\n");
}

/// `odata-entityid` → `OData-EntityId`: header names as Dataverse writes them.
fn canonical(name: &str) -> String {
    match name {
        "odata-version" => "OData-Version".into(),
        "odata-entityid" => "OData-EntityId".into(),
        "etag" => "ETag".into(),
        "www-authenticate" => "WWW-Authenticate".into(),
        other => other
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                    None => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join("-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::{Config, Emulator, identity};

    /// A client-credentials bearer token from the emulator's own endpoint.
    pub(crate) async fn token(emu: &Emulator) -> String {
        let body = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope=http%3A%2F%2Flocalhost%2F.default",
            identity::CLIENT_CREDENTIALS_APP_ID,
            identity::CLIENT_CREDENTIALS_SECRET
        );
        let req = http::Request::post(format!(
            "/{}/oauth2/v2.0/token",
            crate::emulator::data::TENANT_ID
        ))
        .header("Host", "localhost")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(Bytes::from(body))
        .unwrap();
        let res = emu.handle(req).await;
        assert_eq!(res.status(), 200, "{}", String::from_utf8_lossy(res.body()));
        let v: Value = serde_json::from_slice(res.body()).unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    fn batch_request(token: &str, body: &str, prefer: Option<&str>) -> EmuRequest {
        let mut b = http::Request::post("/api/data/v9.2/$batch")
            .header("Host", "localhost")
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "multipart/mixed; boundary=\"batch_t\"");
        if let Some(p) = prefer {
            b = b.header("Prefer", p);
        }
        b.body(Bytes::from(body.replace('\n', "\r\n"))).unwrap()
    }

    fn get_part(url: &str) -> String {
        format!(
            "--batch_t\nContent-Type: application/http\nContent-Transfer-Encoding: binary\n\nGET {url} HTTP/1.1\nAccept: application/json\n\n"
        )
    }

    /// The response body split into (status, headers, body) per part,
    /// flattening change sets — parsed with this module's own parser.
    type Parsed = (u16, Vec<(String, String)>, String);

    fn parts_of(res: &EmuResponse) -> Vec<Parsed> {
        let ct = res.headers()["content-type"].to_str().unwrap().to_string();
        let boundary = boundary_of(&ct).unwrap();
        assert!(boundary.starts_with("batchresponse_"), "{boundary}");
        let mut out = Vec::new();
        for raw in split(res.body(), &boundary).unwrap() {
            let (head, content) = split_head(raw);
            let head = headers_of(head);
            let nested: Vec<&[u8]> = if is_multipart(&head) {
                let ctype = &head.iter().find(|(k, _)| k == "Content-Type").unwrap().1;
                let inner = boundary_of(ctype).unwrap();
                assert!(inner.starts_with("changesetresponse_"));
                split(content, &inner)
                    .unwrap()
                    .into_iter()
                    .map(|r| split_head(r).1)
                    .collect()
            } else {
                vec![content]
            };
            for c in nested {
                let text = String::from_utf8_lossy(c).to_string();
                let (status_line, rest) = text.split_once("\r\n").unwrap();
                let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
                let (h, b) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
                out.push((status, headers_of(h.as_bytes()), b.trim_end().to_string()));
            }
        }
        out
    }

    #[tokio::test]
    async fn gets_run_in_order_with_who_am_i() {
        let emu = Emulator::new(Config::default());
        let t = token(&emu).await;
        let body = format!(
            "{}{}{}--batch_t--\n",
            get_part("/api/data/v9.2/WhoAmI"),
            get_part("WhoAmI()"),
            get_part("http://localhost/api/data/v9.2/WhoAmI")
        );
        let res = emu.handle(batch_request(&t, &body, None)).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["odata-version"], "4.0");
        let parts = parts_of(&res);
        assert_eq!(parts.len(), 3);
        for (status, headers, body) in parts {
            assert_eq!(status, 200);
            assert!(
                headers
                    .iter()
                    .any(|(k, v)| k == "OData-Version" && v == "4.0")
            );
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["UserId"], crate::emulator::data::USER_APP);
        }
        // One logged request: the batch itself.
        assert_eq!(
            emu.log()
                .iter()
                .filter(|r| r.path().ends_with("$batch"))
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn stops_at_first_failure_unless_continue_on_error() {
        let emu = Emulator::new(Config::default());
        let t = token(&emu).await;
        let body = format!(
            "{}{}{}--batch_t--\n",
            get_part("/api/data/v9.2/WhoAmI"),
            get_part("/api/data/v9.2/nosuchset"),
            get_part("/api/data/v9.2/WhoAmI")
        );
        let res = emu.handle(batch_request(&t, &body, None)).await;
        assert_eq!(res.status(), 404, "outer status is the failure's");
        let parts = parts_of(&res);
        assert_eq!(parts.len(), 1, "only the failing part");
        assert_eq!(parts[0].0, 404);
        assert!(parts[0].1.iter().any(|(k, _)| k == "REQ_ID"));
        assert!(parts[0].2.contains("0x8006088a"));

        let res = emu
            .handle(batch_request(&t, &body, Some("odata.continue-on-error")))
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["preference-applied"],
            "odata.continue-on-error"
        );
        let statuses: Vec<u16> = parts_of(&res).iter().map(|p| p.0).collect();
        assert_eq!(statuses, vec![200, 404, 200]);
    }

    #[tokio::test]
    async fn changeset_rolls_back_and_resolves_references() {
        let emu = Emulator::new(Config::default());
        let t = token(&emu).await;
        // A reference before its declaration: the documented 400.
        let body = "--batch_t
Content-Type: multipart/mixed; boundary=changeset_c

--changeset_c
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

PATCH $2 HTTP/1.1
Content-Type: application/json; type=entry

{\"name\":\"x\"}
--changeset_c--
--batch_t--
";
        let res = emu.handle(batch_request(&t, body, None)).await;
        assert_eq!(res.status(), 400);
        let parts = parts_of(&res);
        assert_eq!(parts.len(), 1);
        assert!(
            parts[0]
                .2
                .contains("Content-ID Reference: '$2' does not exist in the batch context."),
            "{}",
            parts[0].2
        );
        // A body reference too.
        let mut ids = HashMap::new();
        assert_eq!(
            resolve_body(br#"{"parentcustomerid_account@odata.bind":"$1"}"#, &ids).unwrap_err(),
            "$1"
        );
        ids.insert(
            "1".to_string(),
            "http://localhost/api/data/v9.2/accounts(aa)".to_string(),
        );
        let b = resolve_body(
            br#"{"parentcustomerid_account@odata.bind":"$1","name":"$1","x":[{"@odata.id":"$1"}]}"#,
            &ids,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            v["parentcustomerid_account@odata.bind"],
            "http://localhost/api/data/v9.2/accounts(aa)"
        );
        assert_eq!(v["name"], "$1", "plain values are data, not references");
        assert_eq!(
            v["x"][0]["@odata.id"],
            "http://localhost/api/data/v9.2/accounts(aa)"
        );
        assert_eq!(
            resolve_url("$1/lastname", &ids).unwrap(),
            "http://localhost/api/data/v9.2/accounts(aa)/lastname"
        );
        assert_eq!(resolve_url("$batch", &ids).unwrap(), "$batch");
    }

    #[tokio::test]
    async fn changeset_failure_restores_the_snapshot() {
        let emu = Emulator::new(Config::default());
        let t = token(&emu).await;
        // Data changed by an earlier request of the change set must be
        // rolled back when a later one fails: simulate the change through
        // the state (no write endpoint exists yet) inside run_changeset.
        let before = emu.state().directory.users.len();
        let outer = batch_request(&t, "", None);
        let caller = Caller {
            logic: Default::default(),
            user_id: crate::emulator::data::USER_APP.into(),
            service_root: "http://localhost/api/data/v9.2/".into(),
            on_behalf_of: None,
        };
        let mut state = emu.state();
        let snapshot = state.snapshot();
        state.directory.users.pop();
        state.restore(snapshot);
        assert_eq!(state.directory.users.len(), before);
        // A failing change set answers with its single failing response
        // (and restores what it saw when it started).
        state
            .directory
            .business_units
            .push(crate::emulator::data::BusinessUnit {
                id: "x",
                name: "temp",
                parent: None,
            });
        let snapshot_len = state.directory.business_units.len();
        let failing = vec![InnerRequest {
            content_id: Some("1".into()),
            method: "DELETE".into(),
            url: "/api/data/v9.2/nosuchset(1)".into(),
            headers: vec![],
            body: vec![],
        }];
        let answer = run_changeset(&mut state, &outer, &caller, &failing);
        assert_eq!(answer.failure_status(), Some(404));
        assert_eq!(state.directory.business_units.len(), snapshot_len);
    }

    #[tokio::test]
    async fn limits_and_malformed_bodies() {
        let emu = Emulator::new(Config::default());
        let t = token(&emu).await;
        let mut body = String::new();
        for _ in 0..=MAX_REQUESTS {
            body.push_str(&get_part("WhoAmI"));
        }
        body.push_str("--batch_t--\n");
        let res = emu.handle(batch_request(&t, &body, None)).await;
        assert_eq!(res.status(), 400);
        assert!(String::from_utf8_lossy(res.body()).contains("1001"));
        // Exactly 1000 is fine.
        let ok: String = (0..MAX_REQUESTS)
            .map(|_| get_part("WhoAmI"))
            .collect::<String>()
            + "--batch_t--\n";
        let res = emu
            .handle(batch_request(&t, &ok, Some("odata.continue-on-error")))
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(parts_of(&res).len(), MAX_REQUESTS);
        // Truncated body.
        let res = emu
            .handle(batch_request(&t, &get_part("WhoAmI"), None))
            .await;
        assert_eq!(res.status(), 400);
        assert!(String::from_utf8_lossy(res.body()).contains("closing boundary"));
        // GET inside a change set.
        let cs = "--batch_t\nContent-Type: multipart/mixed; boundary=cs\n\n--cs\nContent-Type: application/http\n\nGET WhoAmI HTTP/1.1\n\n\n--cs--\n--batch_t--\n";
        let res = emu.handle(batch_request(&t, cs, None)).await;
        assert_eq!(res.status(), 400);
        // No boundary.
        let req = http::Request::post("/api/data/v9.2/$batch")
            .header("Host", "localhost")
            .header("Authorization", format!("Bearer {t}"))
            .header("Content-Type", "application/json")
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        assert_eq!(emu.handle(req).await.status(), 400);
        // No token: 401 before anything runs.
        let req = http::Request::post("/api/data/v9.2/$batch")
            .header("Host", "localhost")
            .header("Content-Length", "0")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(emu.handle(req).await.status(), 401);
        // Without a declared length HTTP.sys answers before the service.
        let req = http::Request::post("/api/data/v9.2/$batch")
            .header("Host", "localhost")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(emu.handle(req).await.status(), 411);
        // URL limits: a 40 KB GET is refused at the top level but runs
        // inside a batch; past 64 KB it is refused there too.
        let long = format!("/api/data/v9.2/WhoAmI?x={}", "a".repeat(40_000));
        let req = http::Request::get(long.as_str())
            .header("Host", "localhost")
            .header("Authorization", format!("Bearer {t}"))
            .body(Bytes::new())
            .unwrap();
        assert_eq!(emu.handle(req).await.status(), 414);
        let res = emu
            .handle(batch_request(
                &t,
                &(get_part(&long) + "--batch_t--\n"),
                None,
            ))
            .await;
        assert_eq!(res.status(), 200);
        let too_long = format!("/api/data/v9.2/WhoAmI?x={}", "a".repeat(70_000));
        let res = emu
            .handle(batch_request(
                &t,
                &(get_part(&too_long) + "--batch_t--\n"),
                None,
            ))
            .await;
        assert_eq!(res.status(), 414);
        // Nested batch.
        let res = emu
            .handle(batch_request(
                &t,
                &(get_part("$batch") + "--batch_t--\n"),
                None,
            ))
            .await;
        assert_eq!(res.status(), 400);
    }

    #[test]
    fn parses_the_reference_request_example() {
        let body = "--batch_7f3c\r\nContent-Type: multipart/mixed; boundary=\"changeset_a91e\"\r\n\r\n--changeset_a91e\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nPOST /api/data/v9.2/accounts HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{\"name\":\"Batch Parent\"}\r\n--changeset_a91e\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\nPOST /api/data/v9.2/contacts HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{\"lastname\":\"Child\",\"parentcustomerid_account@odata.bind\":\"$1\"}\r\n--changeset_a91e--\r\n\r\n--batch_7f3c\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET /api/data/v9.2/accounts?$select=name&$top=1 HTTP/1.1\r\n\r\n\r\n--batch_7f3c--\r\n";
        let parts = parse_body(body.as_bytes(), "batch_7f3c").unwrap();
        assert_eq!(parts.len(), 2);
        let Part::ChangeSet(cs) = &parts[0] else {
            panic!()
        };
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].content_id.as_deref(), Some("1"));
        assert_eq!(
            (cs[0].method.as_str(), cs[0].url.as_str()),
            ("POST", "/api/data/v9.2/accounts")
        );
        assert_eq!(cs[0].body, br#"{"name":"Batch Parent"}"#);
        assert_eq!(
            cs[1].headers,
            vec![(
                "Content-Type".to_string(),
                "application/json; type=entry".to_string()
            )]
        );
        let Part::Request(get) = &parts[1] else {
            panic!()
        };
        assert_eq!(get.url, "/api/data/v9.2/accounts?$select=name&$top=1");
        assert!(get.body.is_empty());
    }

    #[test]
    fn canonical_header_names() {
        assert_eq!(canonical("odata-entityid"), "OData-EntityId");
        assert_eq!(canonical("content-type"), "Content-Type");
        assert_eq!(canonical("location"), "Location");
    }
}
