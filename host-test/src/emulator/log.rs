//! The request log: what the emulator received and answered, for tests to
//! prove what a client sent (and that no secret came back).
//!
//! Tests keep every entry. A long-running server, the CLI's embedded
//! emulator and the benchmark keep only recent entries: a 100,000-record
//! fetch-all answers ≈ 60 MB of pages, and a log holding every response
//! grew the bench process by ≈ 280 MB per round.

use bytes::Bytes;
use std::collections::VecDeque;

/// How much of the log to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRetention {
    /// Every request (the default: tests read the whole log).
    All,
    /// The most recent requests only: at most `entries` of them, and older
    /// ones dropped while the kept request and response bodies exceed
    /// `body_bytes` (the newest entry is always kept).
    Recent { entries: usize, body_bytes: usize },
}

impl LogRetention {
    /// For servers and long runs: the last 1,000 requests, bodies up to 64 MiB.
    pub const RECENT: LogRetention = LogRetention::Recent {
        entries: 1000,
        body_bytes: 64 << 20,
    };
}

/// One line of the request log: enough for tests to prove what was sent.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: String,
    /// Path and query, as received.
    pub target: String,
    pub status: u16,
    /// Request headers (Authorization values replaced by `Bearer ***`).
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// The request body, for Web API requests only (token requests carry
    /// secrets and are never kept).
    pub body: Bytes,
    /// The response body as answered (before any injected cut), so tests
    /// can scan what the service sent back (e.g. for leaked secrets).
    pub response_body: Bytes,
}

impl LoggedRequest {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn is_token_request(&self) -> bool {
        self.path().ends_with("/oauth2/v2.0/token")
    }

    /// The first request header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The log itself, bounded by its [`LogRetention`].
#[derive(Debug)]
pub struct RequestLog {
    retention: LogRetention,
    entries: VecDeque<LoggedRequest>,
    /// Request and response body bytes held by `entries`.
    body_bytes: usize,
    /// Entries dropped to stay within the retention since the last clear.
    dropped: u64,
}

impl RequestLog {
    pub fn new(retention: LogRetention) -> Self {
        RequestLog {
            retention,
            entries: VecDeque::new(),
            body_bytes: 0,
            dropped: 0,
        }
    }

    pub fn push(&mut self, entry: LoggedRequest) {
        self.body_bytes += entry_bytes(&entry);
        self.entries.push_back(entry);
        if let LogRetention::Recent {
            entries,
            body_bytes,
        } = self.retention
        {
            while self.entries.len() > entries.max(1)
                || (self.body_bytes > body_bytes && self.entries.len() > 1)
            {
                let Some(old) = self.entries.pop_front() else {
                    break;
                };
                self.body_bytes -= entry_bytes(&old);
                self.dropped += 1;
            }
        }
    }

    /// The kept entries, oldest first.
    pub fn to_vec(&self) -> Vec<LoggedRequest> {
        self.entries.iter().cloned().collect()
    }

    /// How many entries the retention dropped since the last clear.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.body_bytes = 0;
        self.dropped = 0;
    }
}

fn entry_bytes(e: &LoggedRequest) -> usize {
    e.body.len() + e.response_body.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize, body: usize) -> LoggedRequest {
        LoggedRequest {
            method: "GET".into(),
            target: format!("/api/data/v9.2/accounts?n={n}"),
            status: 200,
            headers: Vec::new(),
            body_len: 0,
            body: Bytes::new(),
            response_body: Bytes::from(vec![b'x'; body]),
        }
    }

    fn targets(log: &RequestLog) -> Vec<String> {
        log.to_vec().into_iter().map(|e| e.target).collect()
    }

    #[test]
    fn all_keeps_everything() {
        let mut log = RequestLog::new(LogRetention::All);
        for n in 0..50 {
            log.push(entry(n, 1 << 20));
        }
        assert_eq!(log.to_vec().len(), 50);
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn recent_keeps_the_newest_entries() {
        let mut log = RequestLog::new(LogRetention::Recent {
            entries: 3,
            body_bytes: 1 << 20,
        });
        for n in 0..5 {
            log.push(entry(n, 10));
        }
        assert_eq!(
            targets(&log),
            ["n=2", "n=3", "n=4"].map(|q| format!("/api/data/v9.2/accounts?{q}"))
        );
        assert_eq!(log.dropped(), 2);
    }

    #[test]
    fn recent_drops_old_bodies_beyond_the_budget_but_keeps_the_newest() {
        let mut log = RequestLog::new(LogRetention::Recent {
            entries: 100,
            body_bytes: 250,
        });
        for n in 0..4 {
            log.push(entry(n, 100));
        }
        // 400 bytes pushed, 250 allowed: the two newest (200 bytes) stay.
        assert_eq!(log.to_vec().len(), 2);
        assert_eq!(log.dropped(), 2);
        // One entry larger than the whole budget is still kept, alone.
        log.push(entry(9, 1000));
        assert_eq!(targets(&log), ["/api/data/v9.2/accounts?n=9"]);
        log.clear();
        assert!(log.to_vec().is_empty());
        assert_eq!(log.dropped(), 0);
    }
}
