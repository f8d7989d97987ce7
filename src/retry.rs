//! The one retry policy every action shares, as pure decisions: given what an
//! attempt produced, wait how long and try again, or stop. [`crate::client`]
//! runs the loop (sending, sleeping through `Platform::sleep_ms`, i.e.
//! wasi:clocks); nothing here does I/O.
//!
//! Defaults (overridable per connection with the `retryPolicy` setting):
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `maxRetries` | 5 | retries after the first attempt (0 = never retry) |
//! | `baseDelayMs` | 1000 | first step of the exponential schedule |
//! | `maxDelayMs` | 30000 | cap on one exponential step |
//! | `maxRetryAfterSeconds` | 300 | cap on an honoured `Retry-After` (Dataverse's window is 300 s) |
//! | `maxTotalSeconds` | 600 | no retry is started that would end its wait later than this after the first attempt began |
//!
//! Exponential schedule: retry n (n = 0, 1, 2, …) waits
//! `d(n) = min(maxDelayMs, baseDelayMs · 2^n)` less a random part of up to
//! half of it, i.e. uniformly in `[d(n)/2, d(n)]` ("equal jitter", so that
//! many clients throttled together do not come back together). With the
//! defaults: 0.5–1 s, 1–2 s, 2–4 s, 4–8 s, 8–16 s, then 15–30 s.
//!
//! What is retried by every action ([`Mode::Safe`]):
//! - 429 (service protection: Dataverse codes `0x80072322`, `0x80072321`,
//!   `0x80072326`) and 503: the request was refused before processing, so any
//!   method is retried; a `Retry-After` is waited (up to the cap), else the
//!   exponential schedule.
//! - 408 and failures where nothing reached the server (connection refused,
//!   no connection in time, name resolution timeout): any method.
//! - 502, 504, a connection broken after sending, a response timeout: only
//!   idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE). A POST or PATCH
//!   may have been applied, and retrying it could create a record twice.
//! - Never: 500 and other 5xx, 4xx other than 408/429 (a 401 is answered
//!   once by a token renewal in the session, not here), input errors.
//!
//! `rawRequest` states its own rules through its inputs ([`Mode::Explicit`]);
//! the caps above still bound it.

use crate::error::{ConnectorError, ErrorKind, Result};
use crate::http::{Method, Response, transport_code};
use serde_json::Value;

pub const DEFAULT_MAX_RETRIES: u32 = 5;
pub const DEFAULT_BASE_DELAY_MS: u64 = 1_000;
pub const DEFAULT_MAX_DELAY_MS: u64 = 30_000;
pub const DEFAULT_MAX_RETRY_AFTER_MS: u64 = 300_000;
pub const DEFAULT_MAX_TOTAL_MS: u64 = 600_000;

/// Dataverse service-protection error codes (Web API hex form) with the
/// limit each one reports.
pub const SERVICE_PROTECTION_CODES: [(&str, &str); 3] = [
    ("0x80072322", "number of requests"),
    ("0x80072321", "combined execution time"),
    ("0x80072326", "concurrent requests"),
];

/// A connection's retry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    pub max_retry_after_ms: u64,
    pub max_total_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: DEFAULT_MAX_RETRIES,
            base_delay_ms: DEFAULT_BASE_DELAY_MS,
            max_delay_ms: DEFAULT_MAX_DELAY_MS,
            max_retry_after_ms: DEFAULT_MAX_RETRY_AFTER_MS,
            max_total_ms: DEFAULT_MAX_TOTAL_MS,
        }
    }
}

const SETTING: &str = "retryPolicy";
const FIELDS: [&str; 5] = [
    "maxRetries",
    "baseDelayMs",
    "maxDelayMs",
    "maxRetryAfterSeconds",
    "maxTotalSeconds",
];

impl RetryPolicy {
    /// Reads the `retryPolicy` connection setting: an object with any of
    /// `maxRetries` (0–20), `baseDelayMs` (0–60000), `maxDelayMs`
    /// (0–600000), `maxRetryAfterSeconds` (0–3600), `maxTotalSeconds`
    /// (0–3600); the others keep their defaults.
    pub fn from_setting(value: &Value) -> Result<Self> {
        let Value::Object(map) = value else {
            return Err(ConnectorError::invalid_input(
                SETTING,
                format!("must be an object with any of {}", FIELDS.join(", ")),
            ));
        };
        if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(ConnectorError::invalid_input(
                format!("{SETTING}.{unknown}"),
                format!("is not a retry setting (known: {})", FIELDS.join(", ")),
            ));
        }
        let field = |key: &str, max: u64| -> Result<Option<u64>> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => {
                    let n = match v {
                        Value::Number(n) => n.as_u64(),
                        Value::String(s) => s.trim().parse().ok(),
                        _ => None,
                    };
                    match n {
                        Some(n) if n <= max => Ok(Some(n)),
                        _ => Err(ConnectorError::invalid_input(
                            format!("{SETTING}.{key}"),
                            format!("must be a whole number from 0 to {max}"),
                        )),
                    }
                }
            }
        };
        let d = RetryPolicy::default();
        Ok(RetryPolicy {
            max_retries: field("maxRetries", 20)?.map_or(d.max_retries, |n| n as u32),
            base_delay_ms: field("baseDelayMs", 60_000)?.unwrap_or(d.base_delay_ms),
            max_delay_ms: field("maxDelayMs", 600_000)?.unwrap_or(d.max_delay_ms),
            max_retry_after_ms: field("maxRetryAfterSeconds", 3_600)?
                .map_or(d.max_retry_after_ms, |s| s * 1000),
            max_total_ms: field("maxTotalSeconds", 3_600)?.map_or(d.max_total_ms, |s| s * 1000),
        })
    }

    /// The nominal exponential step for retry `n` (0-based), before jitter.
    pub fn nominal_backoff_ms(&self, n: u32) -> u64 {
        let factor = 1u64.checked_shl(n.min(40)).unwrap_or(u64::MAX);
        self.base_delay_ms
            .saturating_mul(factor)
            .min(self.max_delay_ms)
    }

    /// The jittered wait for retry `n`: `jitter` in [0, 1) takes up to half
    /// of the nominal step off, so the wait is in `[d/2, d]`.
    pub fn backoff_ms(&self, n: u32, jitter: f64) -> u64 {
        let nominal = self.nominal_backoff_ms(n);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        nominal - ((nominal / 2) as f64 * jitter) as u64
    }

    /// The policy for typed actions.
    pub fn safe(&self) -> Plan {
        Plan {
            policy: self.clone(),
            max_retries: self.max_retries,
            mode: Mode::Safe,
        }
    }
}

/// How to wait between explicit (rawRequest) retries when the answer gives
/// no `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    Fixed(u64),
    Exponential,
}

/// Which failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every action's default: never risks applying a write twice.
    Safe,
    /// rawRequest's inputs: 5xx, 408, 429 and network errors (any method,
    /// because the caller asked for retries), or every error answer with
    /// `retry_all_errors`.
    Explicit {
        retry_all_errors: bool,
        delay: Delay,
    },
}

/// A retry plan for one request: the caps, how many retries, and the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub policy: RetryPolicy,
    pub max_retries: u32,
    pub mode: Mode,
}

/// What one attempt produced.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    Response(&'a Response),
    Failed(&'a ConnectorError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Retry { wait_ms: u64 },
    Stop,
}

/// An attempt's failure, by what it says about the request's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// 429 or 503: refused before processing; may carry a Retry-After.
    Refused { retry_after_ms: Option<u64> },
    /// 408, or nothing reached the server.
    NotApplied,
    /// 502/504 or a connection broken / timed out after sending.
    MaybeApplied,
    /// 500 and the other 5xx.
    ServerError,
    /// Other 4xx.
    ClientError,
    /// 401: the session renews the token once; retrying the same token is pointless.
    Unauthorized,
    /// Input errors, unknown host, anything else that cannot get better.
    Permanent,
}

fn classify(outcome: Outcome<'_>) -> Option<Failure> {
    match outcome {
        Outcome::Response(r) if r.status < 400 => None,
        Outcome::Response(r) => Some(match r.status {
            429 | 503 => Failure::Refused {
                retry_after_ms: r.retry_after().map(|s| u64::from(s) * 1000),
            },
            408 => Failure::NotApplied,
            401 => Failure::Unauthorized,
            502 | 504 => Failure::MaybeApplied,
            500..=599 => Failure::ServerError,
            _ => Failure::ClientError,
        }),
        Outcome::Failed(e) => Some(classify_error(e)),
    }
}

/// Whether the server may have applied the request despite this outcome
/// (502/504, a connection broken after sending, a response timeout).
pub fn may_have_been_applied(outcome: Outcome<'_>) -> bool {
    matches!(classify(outcome), Some(Failure::MaybeApplied))
}

fn classify_error(e: &ConnectorError) -> Failure {
    if !matches!(e.kind, ErrorKind::Transport | ErrorKind::Timeout) {
        return Failure::Permanent;
    }
    use transport_code as tc;
    match e.code.as_deref() {
        Some(tc::CONNECTION_REFUSED | tc::CONNECT_TIMEOUT | tc::DNS) => Failure::NotApplied,
        Some(tc::RESPONSE_TIMEOUT | tc::CONNECTION_BROKEN) => Failure::MaybeApplied,
        _ => Failure::Permanent,
    }
}

/// Whether sending the same request twice has the effect of sending it once.
pub fn is_idempotent(method: Method) -> bool {
    matches!(
        method,
        Method::Get | Method::Head | Method::Options | Method::Put | Method::Delete
    )
}

/// Whether an answer is a Dataverse service-protection refusal (429 with one
/// of [`SERVICE_PROTECTION_CODES`]).
pub fn is_service_protection(response: &Response) -> bool {
    response.status == 429
        && serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|v| v.pointer("/error/code")?.as_str().map(str::to_string))
            .is_some_and(|c| {
                SERVICE_PROTECTION_CODES
                    .iter()
                    .any(|(code, _)| code.eq_ignore_ascii_case(&c))
            })
}

impl Plan {
    /// No retries at all.
    pub fn none(policy: &RetryPolicy) -> Plan {
        Plan {
            policy: policy.clone(),
            max_retries: 0,
            mode: Mode::Explicit {
                retry_all_errors: false,
                delay: Delay::Fixed(0),
            },
        }
    }

    /// Decides after an attempt. `retries_done` counts retries already made,
    /// `elapsed_ms` the time since the first attempt began, `jitter` is a
    /// random number in [0, 1).
    pub fn decide(
        &self,
        method: Method,
        retries_done: u32,
        elapsed_ms: u64,
        outcome: Outcome<'_>,
        jitter: f64,
    ) -> Decision {
        let Some(failure) = classify(outcome) else {
            return Decision::Stop;
        };
        if retries_done >= self.max_retries {
            return Decision::Stop;
        }
        let retry = match (self.mode, failure) {
            (_, Failure::Unauthorized | Failure::Permanent) => false,
            (_, Failure::Refused { .. } | Failure::NotApplied) => true,
            (Mode::Safe, Failure::MaybeApplied) => is_idempotent(method),
            (Mode::Safe, Failure::ServerError | Failure::ClientError) => false,
            (Mode::Explicit { .. }, Failure::MaybeApplied | Failure::ServerError) => true,
            (
                Mode::Explicit {
                    retry_all_errors, ..
                },
                Failure::ClientError,
            ) => retry_all_errors,
        };
        if !retry {
            return Decision::Stop;
        }
        let wait_ms = match (failure, self.mode) {
            (
                Failure::Refused {
                    retry_after_ms: Some(ms),
                },
                _,
            ) => ms.min(self.policy.max_retry_after_ms),
            (
                _,
                Mode::Explicit {
                    delay: Delay::Fixed(ms),
                    ..
                },
            ) => ms,
            _ => self.policy.backoff_ms(retries_done, jitter),
        };
        if elapsed_ms.saturating_add(wait_ms) > self.policy.max_total_ms {
            return Decision::Stop;
        }
        Decision::Retry { wait_ms }
    }
}

/// A number in [0, 1) from eight random bytes.
pub fn jitter_from(bytes: &[u8]) -> f64 {
    let mut buf = [0u8; 8];
    for (slot, b) in buf.iter_mut().zip(bytes) {
        *slot = *b;
    }
    (u64::from_le_bytes(buf) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resp(status: u16, retry_after: Option<&str>) -> Response {
        let mut headers = Vec::new();
        if let Some(r) = retry_after {
            headers.push(("Retry-After".to_string(), r.to_string()));
        }
        Response {
            status,
            headers,
            body: Vec::new(),
        }
    }

    fn safe() -> Plan {
        RetryPolicy::default().safe()
    }

    fn decide(plan: &Plan, method: Method, r: &Response) -> Decision {
        plan.decide(method, 0, 0, Outcome::Response(r), 0.0)
    }

    #[test]
    fn exponential_schedule_matches_the_documented_one() {
        let p = RetryPolicy::default();
        // d(n) = min(30 s, 1 s · 2^n), without jitter.
        let nominal: Vec<u64> = (0..8).map(|n| p.nominal_backoff_ms(n)).collect();
        assert_eq!(
            nominal,
            [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
        for n in 0..8 {
            let d = nominal[n as usize];
            assert_eq!(p.backoff_ms(n, 0.0), d, "no jitter: the full step");
            assert_eq!(p.backoff_ms(n, 1.0), d / 2, "full jitter: half the step");
            for j in [0.1, 0.25, 0.5, 0.75, 0.999] {
                let w = p.backoff_ms(n, j);
                assert!((d / 2..=d).contains(&w), "retry {n} jitter {j}: {w}");
            }
        }
        assert_eq!(p.backoff_ms(2, 0.5), 3_000);
        // Huge retry numbers do not overflow.
        assert_eq!(p.nominal_backoff_ms(200), 30_000);
        assert_eq!(p.backoff_ms(1, f64::NAN), 2_000);
    }

    #[test]
    fn jitter_is_in_unit_interval() {
        assert_eq!(jitter_from(&[0; 8]), 0.0);
        let j = jitter_from(&[0xff; 8]);
        assert!((0.0..1.0).contains(&j));
        assert_eq!(jitter_from(&[]), 0.0);
    }

    #[test]
    fn throttling_honours_retry_after_for_every_method() {
        let plan = safe();
        let r = resp(429, Some("17"));
        for m in [Method::Get, Method::Post, Method::Patch, Method::Delete] {
            assert_eq!(
                decide(&plan, m, &r),
                Decision::Retry { wait_ms: 17_000 },
                "{m:?}"
            );
        }
        // 503 with Retry-After too; capped at the documented maximum.
        let r = resp(503, Some("9999"));
        assert_eq!(
            decide(&plan, Method::Post, &r),
            Decision::Retry {
                wait_ms: DEFAULT_MAX_RETRY_AFTER_MS
            }
        );
        // Without Retry-After: the exponential schedule.
        assert_eq!(
            decide(&plan, Method::Post, &resp(429, None)),
            Decision::Retry { wait_ms: 1_000 }
        );
    }

    #[test]
    fn gateway_errors_retry_only_idempotent_methods() {
        let plan = safe();
        for status in [502, 504] {
            let r = resp(status, None);
            assert_eq!(
                decide(&plan, Method::Get, &r),
                Decision::Retry { wait_ms: 1_000 }
            );
            assert_eq!(
                decide(&plan, Method::Delete, &r),
                Decision::Retry { wait_ms: 1_000 }
            );
            assert_eq!(decide(&plan, Method::Post, &r), Decision::Stop);
            assert_eq!(decide(&plan, Method::Patch, &r), Decision::Stop);
        }
    }

    #[test]
    fn server_and_client_errors_are_not_retried_by_default() {
        let plan = safe();
        for status in [400, 401, 403, 404, 405, 409, 412, 413, 500, 501] {
            assert_eq!(
                decide(&plan, Method::Get, &resp(status, None)),
                Decision::Stop,
                "{status}"
            );
        }
        assert_eq!(
            decide(&plan, Method::Get, &resp(408, None)),
            Decision::Retry { wait_ms: 1_000 }
        );
        for status in [200, 201, 204, 304] {
            assert_eq!(
                decide(&plan, Method::Get, &resp(status, None)),
                Decision::Stop
            );
        }
    }

    #[test]
    fn transport_failures_by_whether_the_request_can_have_been_applied() {
        let plan = safe();
        let refused = ConnectorError::transport("x").with_code(transport_code::CONNECTION_REFUSED);
        let broken = ConnectorError::transport("x").with_code(transport_code::CONNECTION_BROKEN);
        let timeout = ConnectorError::timeout("x").with_code(transport_code::RESPONSE_TIMEOUT);
        let unknown_host = ConnectorError::transport("x").with_code(transport_code::HOST_NOT_FOUND);
        let input = ConnectorError::invalid_input("url", "bad");
        let d = |m, e| plan.decide(m, 0, 0, Outcome::Failed(e), 0.0);
        assert_eq!(
            d(Method::Post, &refused),
            Decision::Retry { wait_ms: 1_000 }
        );
        assert_eq!(d(Method::Post, &broken), Decision::Stop);
        assert_eq!(d(Method::Post, &timeout), Decision::Stop);
        assert_eq!(d(Method::Get, &broken), Decision::Retry { wait_ms: 1_000 });
        assert_eq!(d(Method::Get, &timeout), Decision::Retry { wait_ms: 1_000 });
        assert_eq!(d(Method::Get, &unknown_host), Decision::Stop);
        assert_eq!(d(Method::Get, &input), Decision::Stop);
    }

    #[test]
    fn retries_and_total_time_are_bounded() {
        let plan = safe();
        let r = resp(429, Some("60"));
        let at = |retries, elapsed| {
            plan.decide(Method::Get, retries, elapsed, Outcome::Response(&r), 0.0)
        };
        assert_eq!(at(4, 0), Decision::Retry { wait_ms: 60_000 });
        assert_eq!(at(5, 0), Decision::Stop, "maxRetries reached");
        assert_eq!(at(1, 540_000), Decision::Retry { wait_ms: 60_000 });
        assert_eq!(
            at(1, 540_001),
            Decision::Stop,
            "would end past the total bound"
        );
    }

    #[test]
    fn explicit_mode_follows_the_raw_request_options() {
        let policy = RetryPolicy::default();
        let plan = |retry_all_errors, delay| Plan {
            policy: policy.clone(),
            max_retries: 2,
            mode: Mode::Explicit {
                retry_all_errors,
                delay,
            },
        };
        let fixed = plan(false, Delay::Fixed(250));
        assert_eq!(
            decide(&fixed, Method::Post, &resp(500, None)),
            Decision::Retry { wait_ms: 250 },
            "the caller asked for retries of 5xx, writes included"
        );
        assert_eq!(
            decide(&fixed, Method::Get, &resp(400, None)),
            Decision::Stop
        );
        let all = plan(true, Delay::Fixed(0));
        assert_eq!(
            decide(&all, Method::Get, &resp(400, None)),
            Decision::Retry { wait_ms: 0 }
        );
        assert_eq!(decide(&all, Method::Get, &resp(401, None)), Decision::Stop);
        // Retry-After wins over the fixed delay; exponential ignores the fixed one.
        assert_eq!(
            decide(&fixed, Method::Get, &resp(429, Some("1"))),
            Decision::Retry { wait_ms: 1_000 }
        );
        let exp = plan(false, Delay::Exponential);
        assert_eq!(
            exp.decide(Method::Get, 1, 0, Outcome::Response(&resp(503, None)), 0.0),
            Decision::Retry { wait_ms: 2_000 }
        );
        // Max retries: after 2 retries (3 attempts), stop.
        assert_eq!(
            fixed.decide(Method::Get, 2, 0, Outcome::Response(&resp(500, None)), 0.0),
            Decision::Stop
        );
        assert_eq!(
            Plan::none(&policy).decide(
                Method::Get,
                0,
                0,
                Outcome::Response(&resp(429, Some("1"))),
                0.0
            ),
            Decision::Stop
        );
    }

    #[test]
    fn connection_setting_overrides_defaults() {
        let p =
            RetryPolicy::from_setting(&json!({"maxRetries": 2, "maxTotalSeconds": "30"})).unwrap();
        assert_eq!(p.max_retries, 2);
        assert_eq!(p.max_total_ms, 30_000);
        assert_eq!(p.base_delay_ms, DEFAULT_BASE_DELAY_MS);
        let input = |v: Value| match RetryPolicy::from_setting(&v).unwrap_err().kind {
            ErrorKind::InvalidInput { input } => input,
            other => panic!("{other:?}"),
        };
        assert_eq!(input(json!({"maxretries": 1})), "retryPolicy.maxretries");
        assert_eq!(input(json!({"maxRetries": 99})), "retryPolicy.maxRetries");
        assert_eq!(input(json!({"maxRetries": -1})), "retryPolicy.maxRetries");
        assert_eq!(input(json!(3)), "retryPolicy");
    }

    #[test]
    fn recognises_service_protection_codes() {
        for (code, _) in SERVICE_PROTECTION_CODES {
            let mut r = resp(429, Some("1"));
            r.body = json!({"error": {"code": code, "message": "x"}})
                .to_string()
                .into_bytes();
            assert!(is_service_protection(&r), "{code}");
        }
        assert!(!is_service_protection(&resp(429, None)));
    }
}
