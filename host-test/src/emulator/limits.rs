//! Dataverse's service protection limits (Microsoft Learn, "Service
//! protection API limits", power-apps/developer/data-platform/api-limits;
//! the wire reference §7.3): per user, over a sliding window (300 s), at
//! most 6,000 requests and 1,200,000 ms of combined execution time, and at
//! most 52 requests at once. Past one, a 429 with `Retry-After` and the
//! documented code and message; the count and time limits refuse only
//! once exceeded within the window, the concurrency limit at once.
//!
//! Off unless configured ([`super::Config::limits`], `d365 emulator
//! --limits …`), and scalable so that tests and benches hit them in
//! seconds: `requests=600,window=30s,concurrent=8,execution=120s`.
//! Execution time is simulated: each request costs [`cost_ms`] and is
//! held that long (outside the emulator's lock), so the time limit and the
//! concurrency limit can actually be reached.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;

/// The limits in force, per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests per window.
    pub requests: u64,
    /// The sliding window, in milliseconds.
    pub window_ms: u64,
    /// Requests in progress at once.
    pub concurrent: u32,
    /// Combined execution time per window, in milliseconds.
    pub execution_ms: u64,
    /// The degree of parallelism `x-ms-dop-hint` recommends.
    pub dop_hint: u32,
}

impl Default for Limits {
    /// The documented defaults. The dop hint is UNCONFIRMED: Microsoft
    /// Learn ("Send parallel requests") says the header recommends a
    /// degree of parallelism without giving a value; 5 is what
    /// environments are commonly reported to send.
    fn default() -> Self {
        Limits {
            requests: 6000,
            window_ms: 300_000,
            concurrent: 52,
            execution_ms: 1_200_000,
            dop_hint: 5,
        }
    }
}

/// Parses `requests=600,window=30s,concurrent=8,execution=120s[,dop=4]`:
/// any subset, the rest as documented; durations in `ms`, `s` or `m`.
impl FromStr for Limits {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut limits = Limits::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not name=value"))?;
            let number = |v: &str| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{key}: '{v}' is not a positive whole number"))
            };
            let duration = |v: &str| -> Result<u64, String> {
                let (digits, scale) = if let Some(d) = v.strip_suffix("ms") {
                    (d, 1)
                } else if let Some(d) = v.strip_suffix('s') {
                    (d, 1000)
                } else if let Some(d) = v.strip_suffix('m') {
                    (d, 60_000)
                } else {
                    return Err(format!("{key}: '{v}' needs a unit (ms, s or m)"));
                };
                Ok(number(digits)?.saturating_mul(scale))
            };
            match key.trim() {
                "requests" => limits.requests = number(value)?,
                "window" => limits.window_ms = duration(value)?,
                "execution" => limits.execution_ms = duration(value)?,
                "concurrent" => {
                    limits.concurrent = u32::try_from(number(value)?)
                        .map_err(|_| format!("concurrent: '{value}' is too large"))?
                }
                "dop" => {
                    limits.dop_hint = u32::try_from(number(value)?)
                        .map_err(|_| format!("dop: '{value}' is too large"))?
                }
                other => {
                    return Err(format!(
                        "'{other}' is not a limit (requests, window, concurrent, execution, dop)"
                    ));
                }
            }
        }
        Ok(limits)
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requests={},window={}ms,concurrent={},execution={}ms,dop={}",
            self.requests, self.window_ms, self.concurrent, self.execution_ms, self.dop_hint
        )
    }
}

/// The simulated execution time of one request, in milliseconds: an
/// emulator's model (UNCONFIRMED; Dataverse measures real server time):
/// a read 10 ms, a write 30 ms, and 5 ms more per KiB of body, so bulk
/// writes (`$batch`, CreateMultiple) cost more.
pub fn cost_ms(method: &http::Method, body_len: usize) -> u64 {
    let base = if method == http::Method::GET { 10 } else { 30 };
    base + 5 * (body_len as u64 / 1024)
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Requests,
    ExecutionTime,
    Concurrency,
}

impl Exceeded {
    /// The documented code (wire reference §7.3).
    pub fn code(self) -> &'static str {
        match self {
            Exceeded::Requests => "0x80072322",
            Exceeded::ExecutionTime => "0x80072321",
            Exceeded::Concurrency => "0x80072326",
        }
    }

    /// The documented message, with the limits in force.
    pub fn message(self, limits: &Limits) -> String {
        let seconds = limits.window_ms / 1000;
        match self {
            Exceeded::Requests => format!(
                "Number of requests exceeded the limit of {} over time window of {seconds} seconds.",
                limits.requests
            ),
            Exceeded::ExecutionTime => format!(
                "Combined execution time of incoming requests exceeded limit of {} milliseconds over time window of {seconds} seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
                group_thousands(limits.execution_ms)
            ),
            Exceeded::Concurrency => format!(
                "Number of concurrent requests exceeded the limit of {}.",
                limits.concurrent
            ),
        }
    }

    /// A short name for reports (`d365 load`).
    pub fn name(self) -> &'static str {
        match self {
            Exceeded::Requests => "requests",
            Exceeded::ExecutionTime => "execution-time",
            Exceeded::Concurrency => "concurrency",
        }
    }
}

/// `1200000` → `1,200,000`, as the documented message writes it.
fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One user's usage: arrivals in the window (time, cost) and requests in
/// progress.
#[derive(Debug, Default)]
struct Usage {
    arrivals: VecDeque<(u64, u64)>,
    in_flight: u32,
}

/// What a request was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Go on; hold it `cost_ms`, then [`Limiter::release`] it. The
    /// remaining budget is for the `x-ms-ratelimit-*` headers.
    Admitted {
        cost_ms: u64,
        requests_left: u64,
        time_left_ms: u64,
    },
    /// A 429: which limit, and the `Retry-After` in seconds.
    Refused {
        exceeded: Exceeded,
        retry_after_secs: u64,
    },
}

/// The limits and every user's usage.
#[derive(Debug)]
pub struct Limiter {
    pub limits: Limits,
    users: HashMap<String, Usage>,
    /// 429s answered, by limit (for reports and tests).
    pub refused: HashMap<&'static str, u64>,
    /// Requests admitted, and their simulated execution time in all.
    pub admitted: u64,
    pub cost_total_ms: u64,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Limiter {
            limits,
            users: HashMap::new(),
            refused: HashMap::new(),
            admitted: 0,
            cost_total_ms: 0,
        }
    }

    /// Admits or refuses a request of `user` arriving at `now_ms` that
    /// costs `cost_ms`.
    pub fn admit(&mut self, user: &str, now_ms: u64, cost_ms: u64) -> Admission {
        let l = self.limits;
        let usage = self.users.entry(user.to_string()).or_default();
        while usage
            .arrivals
            .front()
            .is_some_and(|(t, _)| t + l.window_ms <= now_ms)
        {
            usage.arrivals.pop_front();
        }
        let count = usage.arrivals.len() as u64;
        let used: u64 = usage.arrivals.iter().map(|(_, c)| c).sum();
        let refused = if usage.in_flight >= l.concurrent {
            // UNCONFIRMED: the Retry-After of a concurrency refusal.
            Some((Exceeded::Concurrency, 1))
        } else if count >= l.requests {
            // Until the oldest arrival leaves the window.
            let oldest = usage.arrivals.front().map_or(now_ms, |(t, _)| *t);
            Some((Exceeded::Requests, oldest + l.window_ms - now_ms))
        } else if used >= l.execution_ms {
            // Until enough execution time leaves the window.
            let mut freed = 0;
            let mut until = now_ms;
            for (t, c) in &usage.arrivals {
                freed += c;
                until = t + l.window_ms;
                if used - freed < l.execution_ms {
                    break;
                }
            }
            Some((Exceeded::ExecutionTime, until.saturating_sub(now_ms)))
        } else {
            None
        };
        if let Some((exceeded, wait_ms)) = refused {
            *self.refused.entry(exceeded.name()).or_default() += 1;
            return Admission::Refused {
                exceeded,
                retry_after_secs: wait_ms.div_ceil(1000).max(1),
            };
        }
        usage.arrivals.push_back((now_ms, cost_ms));
        usage.in_flight += 1;
        self.admitted += 1;
        self.cost_total_ms += cost_ms;
        Admission::Admitted {
            cost_ms,
            requests_left: l.requests - count - 1,
            time_left_ms: l.execution_ms.saturating_sub(used + cost_ms),
        }
    }

    /// The end of an admitted request.
    pub fn release(&mut self, user: &str) {
        if let Some(u) = self.users.get_mut(user) {
            u.in_flight = u.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(a: &Admission) -> Option<(Exceeded, u64)> {
        match a {
            Admission::Refused {
                exceeded,
                retry_after_secs,
            } => Some((*exceeded, *retry_after_secs)),
            Admission::Admitted { .. } => None,
        }
    }

    #[test]
    fn the_spec_parses_and_defaults_are_documented() {
        let l: Limits = "requests=600,window=30s,concurrent=8,execution=120s"
            .parse()
            .unwrap();
        assert_eq!(
            (l.requests, l.window_ms, l.concurrent, l.execution_ms),
            (600, 30_000, 8, 120_000)
        );
        assert_eq!("".parse::<Limits>().unwrap(), Limits::default());
        for bad in [
            "requests",
            "requests=0",
            "window=30",
            "speed=1",
            "concurrent=x",
        ] {
            assert!(bad.parse::<Limits>().is_err(), "{bad}");
        }
        assert_eq!(
            Exceeded::ExecutionTime.message(&Limits::default()),
            "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds over time window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later."
        );
    }

    #[test]
    fn each_limit_refuses_past_it_and_the_window_slides() {
        let limits = Limits {
            requests: 3,
            window_ms: 10_000,
            concurrent: 2,
            execution_ms: 1_000,
            dop_hint: 1,
        };
        let mut l = Limiter::new(limits);
        for t in [0, 1000, 2000] {
            assert!(refused(&l.admit("u", t, 10)).is_none());
            l.release("u");
        }
        // The fourth within 10 s: refused until the first leaves (t=10 s).
        assert_eq!(
            refused(&l.admit("u", 3000, 10)),
            Some((Exceeded::Requests, 7))
        );
        // Another user is not affected.
        assert!(refused(&l.admit("v", 3000, 10)).is_none());
        // After the window slid past the first arrival: admitted.
        assert!(refused(&l.admit("u", 10_000, 10)).is_none());
        l.release("u");

        let mut l = Limiter::new(limits);
        assert!(refused(&l.admit("u", 0, 600)).is_none());
        assert!(refused(&l.admit("u", 0, 600)).is_none());
        // Two in progress: the third at once is refused.
        assert_eq!(
            refused(&l.admit("u", 1, 1)),
            Some((Exceeded::Concurrency, 1))
        );
        l.release("u");
        l.release("u");
        // 1,200 ms used of 1,000: refused until 600 ms leave (t=10 s).
        assert_eq!(
            refused(&l.admit("u", 2000, 1)),
            Some((Exceeded::ExecutionTime, 8))
        );
        assert_eq!(l.refused["concurrency"], 1);
    }
}
