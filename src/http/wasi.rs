//! [`Platform`] over wasi:http, wasi:clocks and wasi:random.

use super::{MAX_RESPONSE_BYTES, Method, Platform, Request, Response, transport_code};
use crate::error::{ConnectorError, Result};
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method as WasiMethod, OutgoingBody, OutgoingRequest,
    RequestOptions, Scheme,
};
use wasi::io::streams::StreamError;

pub struct WasiPlatform;

impl Platform for WasiPlatform {
    fn send(&mut self, request: &Request) -> Result<Response> {
        send(request)
    }

    fn now_unix(&self) -> u64 {
        wasi::clocks::wall_clock::now().seconds
    }

    fn monotonic_ms(&self) -> u64 {
        wasi::clocks::monotonic_clock::now() / 1_000_000
    }

    fn sleep_ms(&mut self, ms: u64) {
        wasi::clocks::monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
    }

    fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        wasi::random::random::get_random_bytes(len as u64)
    }
}

/// The longest path and query wasi:http hosts take: `http`'s `PathAndQuery`
/// refuses longer ones (wasmtime-wasi-http validates with it).
const MAX_PATH_AND_QUERY: usize = u16::MAX as usize - 1;

fn send(req: &Request) -> Result<Response> {
    let headers = Fields::new();
    for (name, value) in &req.headers {
        headers
            .append(name, value.as_bytes())
            .map_err(|e| ConnectorError::transport(format!("header {name} refused: {e:?}")))?;
    }
    // A POST, PUT or PATCH without a body still declares its length: the
    // front end (HTTP.sys) answers 411 Length Required otherwise.
    let may_have_body = matches!(req.method, Method::Post | Method::Put | Method::Patch);
    if req.body.is_empty()
        && may_have_body
        && !req
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        headers.append("content-length", b"0").map_err(|e| {
            ConnectorError::transport(format!("header content-length refused: {e:?}"))
        })?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let method = match req.method {
        Method::Get => WasiMethod::Get,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Patch => WasiMethod::Patch,
        Method::Delete => WasiMethod::Delete,
        Method::Head => WasiMethod::Head,
        Method::Options => WasiMethod::Options,
    };
    let scheme = match req.url.scheme() {
        "http" => Scheme::Http,
        _ => Scheme::Https,
    };
    let authority = match (req.url.host_str(), req.url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err(ConnectorError::transport("URL without a host")),
    };
    let mut path = req.url.path().to_string();
    if let Some(q) = req.url.query() {
        path.push('?');
        path.push_str(q);
    }
    let fail = |what: &str| ConnectorError::transport(format!("could not set the request {what}"));
    outgoing.set_method(&method).map_err(|_| fail("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|_| fail("scheme"))?;
    outgoing
        .set_authority(Some(&authority))
        .map_err(|_| fail("authority"))?;
    // Past 64 KiB a URL cannot be represented (the `http` crate's limit):
    // the same deterministic refusal as the Web API's 414, not a
    // retryable transport failure.
    if path.len() > MAX_PATH_AND_QUERY {
        return Err(ConnectorError::url_too_long(path.len()));
    }
    outgoing
        .set_path_with_query(Some(&path))
        .map_err(|_| fail("path"))?;

    let options = RequestOptions::new();
    let ns = req.timeout_ms.saturating_mul(1_000_000);
    // Hosts may not support every option; an unsupported one is not an error.
    let _ = options.set_connect_timeout(Some(ns));
    let _ = options.set_first_byte_timeout(Some(ns));
    let _ = options.set_between_bytes_timeout(Some(ns));

    // A request without a body takes no body stream: the host can then
    // send it in `handle` itself (ours does, sparing a task per request).
    let body = if req.body.is_empty() {
        None
    } else {
        Some(outgoing.body().map_err(|_| fail("body"))?)
    };
    let future = outgoing_handler::handle(outgoing, Some(options)).map_err(map_error_code)?;
    if let Some(body) = body {
        write_body(&body, &req.body)?;
        OutgoingBody::finish(body, None).map_err(map_error_code)?;
    }

    let incoming = loop {
        match future.get() {
            Some(result) => break result,
            None => future.subscribe().block(),
        }
    };
    let response = incoming
        .map_err(|_| ConnectorError::transport("response already taken"))?
        .map_err(map_error_code)?;

    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let body = response
        .consume()
        .map_err(|_| ConnectorError::transport("response body already taken"))?;
    let bytes = read_body(&body)?;
    IncomingBody::finish(body);
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

/// Writes with `check-write` flow control so a large body (a `$batch`) never
/// overruns the host's buffer.
fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<()> {
    let stream = body
        .write()
        .map_err(|_| ConnectorError::transport("request body stream unavailable"))?;
    let mut rest = bytes;
    while !rest.is_empty() {
        let permit = stream.check_write().map_err(map_stream_error)?;
        if permit == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = rest.len().min(permit as usize);
        stream.write(&rest[..n]).map_err(map_stream_error)?;
        rest = &rest[n..];
    }
    stream.blocking_flush().map_err(map_stream_error)?;
    drop(stream);
    Ok(())
}

fn read_body(body: &IncomingBody) -> Result<Vec<u8>> {
    let stream = body
        .stream()
        .map_err(|_| ConnectorError::transport("response body stream unavailable"))?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(256 * 1024) {
            Ok(chunk) => {
                if out.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(ConnectorError::transport(format!(
                        "response body larger than {MAX_RESPONSE_BYTES} bytes"
                    )));
                }
                out.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                let code = wasi::http::types::http_error_code(&e);
                let stalled = matches!(
                    code,
                    Some(
                        ErrorCode::ConnectionReadTimeout
                            | ErrorCode::ConnectionWriteTimeout
                            | ErrorCode::HttpResponseTimeout
                            | ErrorCode::ConnectionTimeout
                            | ErrorCode::DnsTimeout
                    )
                );
                let detail = match &code {
                    Some(c) => code_name(c).to_string(),
                    None => e.to_debug_string(),
                };
                return Err(if stalled {
                    ConnectorError::timeout(format!("response body stalled: {detail}"))
                        .with_code(transport_code::RESPONSE_TIMEOUT)
                } else {
                    ConnectorError::transport(format!("response body broken: {detail}"))
                        .with_code(transport_code::CONNECTION_BROKEN)
                });
            }
        }
    }
    drop(stream);
    Ok(out)
}

fn map_stream_error(e: StreamError) -> ConnectorError {
    match e {
        StreamError::Closed => ConnectorError::transport("request body stream closed"),
        StreamError::LastOperationFailed(e) => ConnectorError::transport(format!(
            "request body write failed: {}",
            e.to_debug_string()
        )),
    }
}

/// The wasi:http error code's name, for the error message. Size: not the
/// generated `Debug`, whose strings for all 39 codes and their payloads
/// cost ~4 KB of component; the codes the connector tells apart by name,
/// and the rest as one.
fn code_name(code: &ErrorCode) -> &'static str {
    match code {
        ErrorCode::ConnectionTimeout => "ConnectionTimeout",
        ErrorCode::DnsTimeout => "DnsTimeout",
        ErrorCode::ConnectionReadTimeout => "ConnectionReadTimeout",
        ErrorCode::ConnectionWriteTimeout => "ConnectionWriteTimeout",
        ErrorCode::HttpResponseTimeout => "HttpResponseTimeout",
        ErrorCode::DnsError(_) => "DnsError",
        ErrorCode::DestinationNotFound => "DestinationNotFound",
        ErrorCode::DestinationUnavailable => "DestinationUnavailable",
        ErrorCode::DestinationIpUnroutable => "DestinationIpUnroutable",
        ErrorCode::ConnectionLimitReached => "ConnectionLimitReached",
        ErrorCode::ConnectionTerminated => "ConnectionTerminated",
        ErrorCode::HttpResponseIncomplete => "HttpResponseIncomplete",
        ErrorCode::HttpProtocolError => "HttpProtocolError",
        ErrorCode::TlsProtocolError => "TlsProtocolError",
        ErrorCode::TlsCertificateError => "TlsCertificateError",
        ErrorCode::HttpRequestDenied => "HttpRequestDenied",
        _ => "another wasi:http error code",
    }
}

fn map_error_code(code: ErrorCode) -> ConnectorError {
    use transport_code as tc;
    match code {
        ErrorCode::ConnectionTimeout => {
            ConnectorError::timeout(format!("no connection in time ({})", code_name(&code)))
                .with_code(tc::CONNECT_TIMEOUT)
        }
        ErrorCode::DnsTimeout => ConnectorError::timeout(format!("no name resolution in time ({})", code_name(&code)))
            .with_code(tc::DNS),
        ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => {
            ConnectorError::timeout(format!("no answer in time ({})", code_name(&code)))
                .with_code(tc::RESPONSE_TIMEOUT)
        }
        ErrorCode::DnsError(_) | ErrorCode::DestinationNotFound => {
            ConnectorError::transport(format!("host not found ({})", code_name(&code)))
                .with_code(tc::HOST_NOT_FOUND)
                .with_hint(
                "Check the Web API URL: the environment name and the region (crm, crm4, crm11 …) must match your environment.",
            )
        }
        ErrorCode::ConnectionRefused => ConnectorError::transport("connection refused")
            .with_code(tc::CONNECTION_REFUSED)
            .with_hint("Is the host reachable and the port right?"),
        ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::ConnectionLimitReached => {
            ConnectorError::transport(format!("could not connect ({})", code_name(&code)))
                .with_code(tc::CONNECTION_REFUSED)
        }
        ErrorCode::ConnectionTerminated
        | ErrorCode::HttpResponseIncomplete
        | ErrorCode::HttpProtocolError => {
            ConnectorError::transport(format!("the connection broke ({})", code_name(&code)))
                .with_code(tc::CONNECTION_BROKEN)
        }
        other => ConnectorError::transport(format!("HTTP transport error: {}", code_name(&other))),
    }
}
