//! A scripted [`Platform`] for unit tests: answers by URL substring, records
//! what was sent, never sleeps.

use super::{Platform, Request, Response};
use crate::error::Result;

/// Answers each request with the first `(URL substring, status, body)` whose
/// substring the URL contains (`""` matches any), else 404.
pub struct ByUrl {
    pub answers: Vec<(&'static str, u16, String)>,
    /// The URLs sent, in order.
    pub sent: Vec<String>,
}

impl ByUrl {
    pub fn new(answers: Vec<(&'static str, u16, String)>) -> Self {
        ByUrl {
            answers,
            sent: Vec::new(),
        }
    }
}

impl Platform for ByUrl {
    fn send(&mut self, request: &Request) -> Result<Response> {
        let url = request.url.to_string();
        self.sent.push(url.clone());
        let (_, status, body) = self
            .answers
            .iter()
            .find(|(part, _, _)| url.contains(part))
            .cloned()
            .unwrap_or(("", 404, String::new()));
        Ok(Response {
            status,
            headers: Vec::new(),
            body: body.into_bytes(),
        })
    }
    fn now_unix(&self) -> u64 {
        1_700_000_000
    }
    fn sleep_ms(&mut self, _ms: u64) {}
    fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        vec![7; len]
    }
}
