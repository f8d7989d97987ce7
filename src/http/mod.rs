//! HTTP as the connector sees it: plain request/response values and the
//! [`Platform`] trait that sends them. On wasm32 the platform is wasi:http and
//! wasi:clocks ([`wasi`]); native unit tests use a fake.

#[cfg(test)]
pub mod fake;
#[cfg(target_family = "wasm")]
pub mod wasi;

use crate::error::Result;

/// The largest response body read before giving up (a 5,000-row page with
/// wide rows is a few MiB; this leaves ample room).
pub const MAX_RESPONSE_BYTES: usize = 128 * 1024 * 1024;

/// Default per-request timeout, in milliseconds, when an action sets none.
pub const DEFAULT_TIMEOUT_MS: u64 = 120_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
        }
    }
}

/// The `code` of a transport error (the platform could not complete the
/// exchange), named after the wasi:http `error-code` cases they group.
pub mod transport_code {
    /// Nothing reached the server: the connection was refused.
    pub const CONNECTION_REFUSED: &str = "connection-refused";
    /// Nothing reached the server: no connection within the timeout.
    pub const CONNECT_TIMEOUT: &str = "connection-timeout";
    /// Nothing reached the server: name resolution failed or timed out.
    pub const DNS: &str = "dns-error";
    /// The host name does not exist.
    pub const HOST_NOT_FOUND: &str = "host-not-found";
    /// The request was sent but no complete answer came in time.
    pub const RESPONSE_TIMEOUT: &str = "response-timeout";
    /// The connection broke after the request was (maybe) sent.
    pub const CONNECTION_BROKEN: &str = "connection-broken";
}

/// An outgoing request. `url` is absolute.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Bounds connect, first byte and the gap between body chunks.
    pub timeout_ms: u64,
    /// A POST that only reads (a search): repeating it is safe, so the
    /// retry policy treats it as the GET it could have been.
    pub reads_only: bool,
}

impl Request {
    pub fn new(method: Method, url: url::Url) -> Self {
        Request {
            method,
            url,
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            reads_only: false,
        }
    }

    /// See [`Request::reads_only`].
    pub fn reads_only(mut self) -> Self {
        self.reads_only = true;
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set_header(name, value);
        self
    }

    /// Replaces any header of the same name (case-insensitive).
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.into()));
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    pub fn json_body(mut self, body: &serde_json::Value) -> Self {
        self.body = body.to_string().into_bytes();
        self.set_header("Content-Type", "application/json; charset=utf-8");
        self
    }

    pub fn form_body(mut self, pairs: &[(&str, &str)]) -> Self {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            ser.append_pair(k, v);
        }
        self.body = ser.finish().into_bytes();
        self.set_header("Content-Type", "application/x-www-form-urlencoded");
        self
    }
}

/// A response, body read in full.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `Retry-After` in whole seconds, when it is given as seconds.
    pub fn retry_after(&self) -> Option<u32> {
        self.header("Retry-After")?.trim().parse().ok()
    }
}

/// What the connector needs from its host: HTTP, the time, sleeping and
/// randomness. Nothing else — no files, sockets or environment.
pub trait Platform {
    /// Sends one request. A failure to reach the server or to read its answer
    /// is an error whose `code` is one of [`transport_code`], so that the
    /// retry policy can tell whether the request can have been applied.
    fn send(&mut self, request: &Request) -> Result<Response>;
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> u64;
    /// Milliseconds on a monotonic clock (wasi:clocks), for bounding the total
    /// time of retries. The default reads the wall clock, for platforms
    /// without a monotonic one.
    fn monotonic_ms(&self) -> u64 {
        self.now_unix().saturating_mul(1000)
    }
    fn sleep_ms(&mut self, ms: u64);
    fn random_bytes(&mut self, len: usize) -> Vec<u8>;
}
