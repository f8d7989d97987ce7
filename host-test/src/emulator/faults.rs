//! Injectable faults, switched on per test ([`super::Emulator::set_faults`])
//! or from the CLI (`d365 emulator --inject-429-every N`). They apply to Web
//! API and search requests only (`/api/data/…`, `/api/search/…`; the token
//! endpoint is never faulted),
//! counted from the moment the faults were set, and every arrival is
//! counted ([`FaultStats`]) so tests can assert how many attempts a client
//! made — including attempts it abandoned on a timeout.
//!
//! The injected answers are the ones Dataverse documents: a 429 carries
//! `Retry-After` and a service-protection error body with its hex code; a
//! 503 is the gateway's HTML page (its exact body is UNCONFIRMED); a 500 is
//! Dataverse's generic `0x80040216` error. One is not Dataverse's: a
//! gateway's 400 page that quotes the request, bearer token included
//! ([`Injected::EchoRequest`]), for the connector's secret hygiene.
//!
//! Transport faults are marks on the response that the transport acts on
//! ([`Reset`], [`CutBody`], [`EndlessMark`]): the in-process route
//! (`host::route`) and the loopback server ([`super::server`]) each turn
//! them into what a client on their side would see.

use super::response::odata_error;
use super::{EmuRequest, EmuResponse};
use bytes::Bytes;
use hyper::body::{Body, Frame};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Which Web API requests (1-based, counted since the faults were set) a
/// fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Requests N, 2N, 3N, …
    Every(u64),
    /// The next K requests (1..=K).
    Next(u64),
    /// Exactly request N.
    Nth(u64),
}

impl Trigger {
    pub fn fires(self, n: u64) -> bool {
        match self {
            Trigger::Every(every) => every > 0 && n.is_multiple_of(every),
            Trigger::Next(k) => n <= k,
            Trigger::Nth(at) => n == at,
        }
    }
}

/// The three Dataverse service protection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Limit {
    /// 6000 requests per 300 s: `0x80072322`.
    #[default]
    Requests,
    /// 20 minutes of execution time per 300 s: `0x80072321`.
    ExecutionTime,
    /// 52 concurrent requests: `0x80072326`.
    Concurrency,
}

impl Limit {
    pub fn code(self) -> &'static str {
        match self {
            Limit::Requests => "0x80072322",
            Limit::ExecutionTime => "0x80072321",
            Limit::Concurrency => "0x80072326",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Limit::Requests => {
                "Number of requests exceeded the limit of 6000 over time window of 300 seconds."
            }
            Limit::ExecutionTime => {
                "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds over time window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later."
            }
            Limit::Concurrency => "Number of concurrent requests exceeded the limit of 52.",
        }
    }
}

/// An error answer instead of the real one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injected {
    /// 429 Too Many Requests with `Retry-After` (seconds).
    Throttle { retry_after_secs: u64, limit: Limit },
    /// 503 Service Unavailable, with `Retry-After` when given.
    Unavailable { retry_after_secs: Option<u64> },
    /// Any other status (500, 502, 504, 400, …) with a Dataverse error body.
    Status(u16),
    /// 400 from a gateway in front of the org that quotes the request it
    /// refused, headers and all, bearer token included, as some
    /// misconfigured proxies and firewalls do (Dataverse itself never
    /// echoes a credential). Built by [`Injected::answer`].
    EchoRequest,
}

impl Injected {
    /// The answer to `request`.
    pub fn answer(&self, request: &EmuRequest) -> EmuResponse {
        match self {
            Injected::EchoRequest => echo_request(request),
            other => other.response(),
        }
    }

    /// The answer, for faults whose answer does not depend on the request
    /// (an [`Injected::EchoRequest`] here quotes nothing).
    pub fn response(&self) -> EmuResponse {
        match self {
            Injected::EchoRequest => echo_page(""),
            Injected::Throttle {
                retry_after_secs,
                limit,
            } => {
                let mut r = odata_error(429, limit.code(), limit.message());
                if let Ok(v) = http::HeaderValue::from_str(&retry_after_secs.to_string()) {
                    r.headers_mut().insert(http::header::RETRY_AFTER, v);
                }
                r
            }
            Injected::Unavailable { retry_after_secs } => {
                let mut b = http::Response::builder()
                    .status(503)
                    .header("Content-Type", "text/html");
                if let Some(s) = retry_after_secs {
                    b = b.header("Retry-After", s.to_string());
                }
                b.body(Bytes::from_static(
                    b"<html><head><title>Service Unavailable</title></head><body><h2>Service Unavailable</h2></body></html>",
                ))
                .unwrap_or_default()
            }
            Injected::Status(status) => {
                let (code, message) = match status {
                    400 => ("0x80040203", "Invalid argument."),
                    500 => ("0x80040216", "An unexpected error occurred."),
                    502 => ("0x80040216", "Bad Gateway"),
                    504 => ("0x80040216", "Gateway Timeout"),
                    _ => ("0x80040216", "Injected fault."),
                };
                odata_error(*status, code, message)
            }
        }
    }
}

/// A gateway's 400 page quoting `request`'s line and headers.
fn echo_request(request: &EmuRequest) -> EmuResponse {
    let mut quoted = format!("{} {} HTTP/1.1\n", request.method(), request.uri());
    for (name, value) in request.headers() {
        quoted.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    // Escaped as a page quoting it would be; `<` in a header stays text.
    echo_page(&quick_xml::escape::escape(quoted.as_str()))
}

fn echo_page(quoted: &str) -> EmuResponse {
    let body = format!(
        "<html><head><title>400 Bad Request</title></head><body><h1>Bad Request</h1>\
         <p>The request was rejected by the gateway:</p><pre>{quoted}</pre></body></html>"
    );
    http::Response::builder()
        .status(400)
        .header("Content-Type", "text/html")
        .body(Bytes::from(body))
        .unwrap_or_default()
}

/// Faults a test or the CLI can switch on. Several may hit one request:
/// tokens are expired first, then a reset before sending ends it (nothing
/// else happens), else the delay is served, then the first matching
/// injected error answers (else the real endpoint does, and an
/// after-processing error may replace its answer), then an invalid-JSON
/// answer may replace it, and finally the connection may be reset or the
/// body cut.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer every Web API call with 401, whatever the token.
    pub reject_all_tokens: bool,
    /// Error answers instead of processing, first match wins.
    pub errors: Vec<(Trigger, Injected)>,
    /// Error answers after the request was processed (a write applied, then
    /// the gateway fails: the case where a client retry would duplicate).
    pub errors_after_processing: Vec<(Trigger, Injected)>,
    /// Wait this long before answering (an async sleep: tokio's paused
    /// clock skips it).
    pub delay: Option<(Trigger, Duration)>,
    /// Send the headers and half the body, then close the connection
    /// (server mode; in-process the body stream fails the same way).
    pub cut_body: Option<Trigger>,
    /// Make every token issued so far invalid just before the request is
    /// checked, as if it expired early.
    pub expire_tokens: Option<Trigger>,
    /// Send the headers and the first half of the body, then whitespace
    /// forever: a hostile or broken server streaming gigabytes (in-process
    /// route only; the socket server sends the normal body).
    pub endless_body: Option<Trigger>,
    /// The connection is reset before the request reaches the service:
    /// nothing is processed or logged (only counted). A client may retry
    /// any method.
    pub reset_before_send: Option<Trigger>,
    /// The service processes the request (a write is applied), then the
    /// connection is reset before any answer: a client cannot know whether
    /// its request was applied.
    pub reset_after_send: Option<Trigger>,
    /// The service processes the request, then `200 OK` with a JSON
    /// content type and a body that is not JSON (an HTML page, as a
    /// misconfigured proxy answers) replaces its answer.
    pub invalid_json: Option<Trigger>,
    /// The service answers, then a collection page's `@odata.nextLink`
    /// points back at the request itself: a broken server whose paging
    /// never advances (a client that follows links blindly loops forever).
    pub repeat_next_link: Option<Trigger>,
    /// Only Web API requests whose path contains this text are counted and
    /// faulted (all of them when `None`).
    pub path_contains: Option<String>,
}

impl Faults {
    /// 429 with `Retry-After: retry_after_secs` on every `n`th request.
    pub fn throttle_every(n: u64, retry_after_secs: u64) -> Self {
        Faults::default().with_error(
            Trigger::Every(n),
            Injected::Throttle {
                retry_after_secs,
                limit: Limit::Requests,
            },
        )
    }

    /// The next `k` requests answer `status` (429 and 503 with the bodies
    /// above, `Retry-After: 1` on a 429).
    pub fn fail_next(k: u64, status: u16) -> Self {
        let injected = match status {
            429 => Injected::Throttle {
                retry_after_secs: 1,
                limit: Limit::Requests,
            },
            503 => Injected::Unavailable {
                retry_after_secs: None,
            },
            other => Injected::Status(other),
        };
        Faults::default().with_error(Trigger::Next(k), injected)
    }

    pub fn with_error(mut self, trigger: Trigger, injected: Injected) -> Self {
        self.errors.push((trigger, injected));
        self
    }

    /// Processes the request, then answers `injected` instead of the result.
    pub fn with_error_after_processing(mut self, trigger: Trigger, injected: Injected) -> Self {
        self.errors_after_processing.push((trigger, injected));
        self
    }

    pub fn with_delay(mut self, trigger: Trigger, delay: Duration) -> Self {
        self.delay = Some((trigger, delay));
        self
    }

    pub fn with_cut_body(mut self, trigger: Trigger) -> Self {
        self.cut_body = Some(trigger);
        self
    }

    pub fn with_expired_tokens(mut self, trigger: Trigger) -> Self {
        self.expire_tokens = Some(trigger);
        self
    }

    pub fn with_endless_body(mut self, trigger: Trigger) -> Self {
        self.endless_body = Some(trigger);
        self
    }

    pub fn with_reset_before_send(mut self, trigger: Trigger) -> Self {
        self.reset_before_send = Some(trigger);
        self
    }

    pub fn with_reset_after_send(mut self, trigger: Trigger) -> Self {
        self.reset_after_send = Some(trigger);
        self
    }

    pub fn with_invalid_json(mut self, trigger: Trigger) -> Self {
        self.invalid_json = Some(trigger);
        self
    }

    pub fn with_repeated_next_link(mut self, trigger: Trigger) -> Self {
        self.repeat_next_link = Some(trigger);
        self
    }

    pub fn only_path(mut self, text: &str) -> Self {
        self.path_contains = Some(text.to_string());
        self
    }

    /// What happens to Web API request number `n` (1-based).
    pub fn plan(&self, n: u64) -> FaultPlan {
        FaultPlan {
            expire_tokens: self.expire_tokens.is_some_and(|t| t.fires(n)),
            delay: self.delay.filter(|(t, _)| t.fires(n)).map(|(_, d)| d),
            error: self
                .errors
                .iter()
                .find(|(t, _)| t.fires(n))
                .map(|(_, e)| e.clone()),
            error_after_processing: self
                .errors_after_processing
                .iter()
                .find(|(t, _)| t.fires(n))
                .map(|(_, e)| e.clone()),
            cut_body: self.cut_body.is_some_and(|t| t.fires(n)),
            endless_body: self.endless_body.is_some_and(|t| t.fires(n)),
            reset: if self.reset_before_send.is_some_and(|t| t.fires(n)) {
                Some(Reset::BeforeProcessing)
            } else if self.reset_after_send.is_some_and(|t| t.fires(n)) {
                Some(Reset::AfterProcessing)
            } else {
                None
            },
            invalid_json: self.invalid_json.is_some_and(|t| t.fires(n)),
            repeat_next_link: self.repeat_next_link.is_some_and(|t| t.fires(n)),
        }
    }

    pub fn applies_to(&self, path: &str) -> bool {
        (path.starts_with("/api/data/") || path.starts_with("/api/search/"))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

/// The faults that hit one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub expire_tokens: bool,
    pub delay: Option<Duration>,
    pub error: Option<Injected>,
    pub error_after_processing: Option<Injected>,
    pub cut_body: bool,
    pub endless_body: bool,
    pub reset: Option<Reset>,
    pub invalid_json: bool,
    pub repeat_next_link: bool,
}

/// Counters since the faults were last set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Web API requests that arrived (and matched `path_contains`), answered or not.
    pub requests: u64,
    /// Injected error answers, by status.
    pub injected: Vec<u16>,
    pub delayed: u64,
    pub cut: u64,
    pub tokens_expired: u64,
    pub endless: u64,
    /// Connections reset, before or after processing.
    pub resets: u64,
    pub invalid_json: u64,
    /// Pages whose nextLink was pointed back at their own request.
    pub repeated_links: u64,
}

/// When the connection is reset. Also the mark on a response whose
/// connection the transport must reset instead of answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// Before the request reached the service: nothing was processed.
    BeforeProcessing,
    /// After the service processed the request, before any answer.
    AfterProcessing,
}

/// The reset a response is marked with, if any.
pub fn reset(response: &EmuResponse) -> Option<Reset> {
    response.extensions().get::<Reset>().copied()
}

/// The answer an invalid-JSON fault gives instead of the real one.
pub fn invalid_json_response() -> EmuResponse {
    http::Response::builder()
        .status(200)
        .header("Content-Type", "application/json; odata.metadata=minimal")
        .header("OData-Version", "4.0")
        .body(Bytes::from_static(
            b"<!DOCTYPE html><html><head><title>Sign in to continue</title></head><body><p>Your session has expired.</p></body></html>",
        ))
        .unwrap_or_default()
}

/// `response` with its `@odata.nextLink` (if it has one) set to `url`, the
/// request that produced it; other answers are left as they are.
pub fn repeat_next_link(response: EmuResponse, url: &str) -> (EmuResponse, bool) {
    let Ok(serde_json::Value::Object(mut page)) =
        serde_json::from_slice::<serde_json::Value>(response.body())
    else {
        return (response, false);
    };
    if !page.contains_key("@odata.nextLink") {
        return (response, false);
    }
    page.insert("@odata.nextLink".into(), serde_json::Value::from(url));
    let Ok(body) = serde_json::to_vec(&page) else {
        return (response, false);
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    (http::Response::from_parts(parts, Bytes::from(body)), true)
}

/// Marks a response whose body the transport must cut after `keep` bytes.
#[derive(Debug, Clone, Copy)]
pub struct CutBody {
    pub keep: usize,
}

/// A body that yields its first bytes and then fails, so the client sees a
/// connection closed mid-body (`Content-Length` promised more).
pub struct BrokenBody<E> {
    head: Option<Bytes>,
    error: Option<E>,
}

impl<E> BrokenBody<E> {
    pub fn new(head: Bytes, error: E) -> Self {
        BrokenBody {
            head: Some(head),
            error: Some(error),
        }
    }
}

impl<E: Unpin> Body for BrokenBody<E> {
    type Data = Bytes;
    type Error = E;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        let this = self.get_mut();
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        Poll::Ready(this.error.take().map(Err))
    }
}

/// Splits a response marked with [`CutBody`] into the part to send and the
/// full length to announce.
pub fn cut(response: &EmuResponse) -> Option<(Bytes, usize)> {
    let mark = response.extensions().get::<CutBody>()?;
    let body = response.body();
    Some((body.slice(..mark.keep.min(body.len())), body.len()))
}

/// Marks a response whose body never ends: the transport sends the first
/// `keep` bytes, then [`EndlessBody`] filler.
#[derive(Debug, Clone, Copy)]
pub struct EndlessMark {
    pub keep: usize,
}

/// The part of a response marked with [`EndlessMark`] to send before the
/// filler.
pub fn endless(response: &EmuResponse) -> Option<Bytes> {
    let mark = response.extensions().get::<EndlessMark>()?;
    let body = response.body();
    Some(body.slice(..mark.keep.min(body.len())))
}

/// A body that yields its head, then 64 KiB chunks of spaces forever (still
/// well-formed JSON so far, so a parser keeps reading).
/// Never fails; `E` is whatever error type the transport's bodies carry.
pub struct EndlessBody<E> {
    head: Option<Bytes>,
    filler: Bytes,
    error: std::marker::PhantomData<fn() -> E>,
}

impl<E> EndlessBody<E> {
    pub fn new(head: Bytes) -> Self {
        EndlessBody {
            head: Some(head),
            filler: Bytes::from(vec![b' '; 64 << 10]),
            error: std::marker::PhantomData,
        }
    }
}

impl<E> Body for EndlessBody<E> {
    type Data = Bytes;
    type Error = E;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let chunk = this.head.take().unwrap_or_else(|| this.filler.clone());
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers() {
        let every = Trigger::Every(5);
        let hits: Vec<u64> = (1..=20).filter(|n| every.fires(*n)).collect();
        assert_eq!(hits, [5, 10, 15, 20]);
        assert!(!Trigger::Every(0).fires(0));
        let next: Vec<u64> = (1..=6).filter(|n| Trigger::Next(3).fires(*n)).collect();
        assert_eq!(next, [1, 2, 3]);
        assert!(Trigger::Nth(2).fires(2) && !Trigger::Nth(2).fires(3));
    }

    #[test]
    fn throttle_answer_is_dataverse_shaped() {
        let r = Faults::throttle_every(2, 17)
            .plan(2)
            .error
            .expect("fires")
            .response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "17");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["error"]["code"], "0x80072322");
        assert!(Faults::throttle_every(2, 17).plan(1).error.is_none());
    }

    #[test]
    fn errors_before_and_after_processing() {
        let f = Faults::fail_next(1, 503)
            .with_error_after_processing(Trigger::Nth(2), Injected::Status(502));
        let first = f.plan(1);
        assert_eq!(
            first.error.map(|e| e.response().status()),
            Some(503.try_into().unwrap())
        );
        assert!(first.error_after_processing.is_none());
        let second = f.plan(2);
        assert!(second.error.is_none());
        assert_eq!(second.error_after_processing, Some(Injected::Status(502)));
        assert_eq!(f.plan(3), FaultPlan::default());
    }

    #[test]
    fn resets_and_invalid_json() {
        let f = Faults::default()
            .with_reset_before_send(Trigger::Nth(1))
            .with_reset_after_send(Trigger::Next(2))
            .with_invalid_json(Trigger::Nth(3));
        assert_eq!(
            f.plan(1).reset,
            Some(Reset::BeforeProcessing),
            "before wins"
        );
        assert_eq!(f.plan(2).reset, Some(Reset::AfterProcessing));
        assert!(f.plan(3).invalid_json && f.plan(3).reset.is_none());
        let r = invalid_json_response();
        assert_eq!(r.status(), 200);
        assert!(serde_json::from_slice::<serde_json::Value>(r.body()).is_err());
    }

    #[test]
    fn only_web_api_paths() {
        let f = Faults::default();
        assert!(f.applies_to("/api/data/v9.2/WhoAmI"));
        assert!(!f.applies_to("/tenant/oauth2/v2.0/token"));
        let f = f.only_path("PublishXml");
        assert!(!f.applies_to("/api/data/v9.2/WhoAmI"));
    }
}
