//! A Dataverse emulator: the Microsoft identity platform token endpoint and
//! the Dataverse Web API, behaving as Microsoft documents them (status codes,
//! headers, error bodies), with seeded data, a request log and injectable
//! faults. It runs in-process ([`Emulator::handle`]) or as a loopback server
//! ([`server::serve`]).
//!
//! This module tree imports nothing from the wasmtime host, so it could move
//! to its own crate unchanged.

pub mod data;
pub mod identity;
pub mod odata;
pub mod response;
pub mod server;
pub mod store;
pub mod webapi;

use bytes::Bytes;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub use data::Directory;
pub use identity::{AppRegistration, Identity};

/// A request as the emulator sees it (body read in full).
pub type EmuRequest = http::Request<Bytes>;
/// A response as the emulator produces it.
pub type EmuResponse = http::Response<Bytes>;

/// Options fixed when the emulator starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Lifetime of issued access tokens, in seconds (Entra: about an hour).
    pub access_token_lifetime: u64,
    /// Synthetic accounts to generate beyond the seeded demo data.
    pub generated_records: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            access_token_lifetime: 3599,
            generated_records: 0,
        }
    }
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
}

impl LoggedRequest {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn is_token_request(&self) -> bool {
        self.path().ends_with("/oauth2/v2.0/token")
    }
}

/// Faults a test can switch on.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer every Web API call with 401, whatever the token.
    pub reject_all_tokens: bool,
}

/// Everything the emulator knows, behind one lock.
pub struct State {
    pub config: Config,
    pub identity: Identity,
    pub directory: Directory,
    /// Records of every entity set.
    pub store: store::Store,
    pub log: Vec<LoggedRequest>,
    pub faults: Faults,
    /// Added to the wall clock: lets tests age tokens without waiting.
    pub clock_offset_secs: i64,
}

impl State {
    /// Seconds since the Unix epoch, as the emulator's clock reads it.
    pub fn now(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        real.saturating_add_signed(self.clock_offset_secs)
    }
}

/// A shareable handle on one emulated environment.
#[derive(Clone)]
pub struct Emulator {
    state: Arc<Mutex<State>>,
}

impl Emulator {
    pub fn new(config: Config) -> Self {
        let directory = Directory::seeded(config.generated_records);
        let identity = Identity::seeded(&directory);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let store = store::seed::seeded(&directory, config.generated_records, now);
        Emulator {
            state: Arc::new(Mutex::new(State {
                config,
                identity,
                directory,
                store,
                log: Vec::new(),
                faults: Faults::default(),
                clock_offset_secs: 0,
            })),
        }
    }

    /// The state, for tests and the CLI. A panic while the lock was held
    /// does not poison the emulator for other callers.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers one request.
    pub async fn handle(&self, request: EmuRequest) -> EmuResponse {
        let method = request.method().to_string();
        let target = request
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let headers = request
            .headers()
            .iter()
            .map(|(k, v)| {
                let value = if k == http::header::AUTHORIZATION {
                    "Bearer ***".to_string()
                } else {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                };
                (k.to_string(), value)
            })
            .collect();
        let body_len = request.body().len();
        let response = {
            let mut state = self.state();
            route(&mut state, &request)
        };
        self.state().log.push(LoggedRequest {
            method,
            target,
            status: response.status().as_u16(),
            headers,
            body_len,
        });
        response
    }

    /// A copy of the request log.
    pub fn log(&self) -> Vec<LoggedRequest> {
        self.state().log.clone()
    }

    pub fn clear_log(&self) {
        self.state().log.clear();
    }

    /// Makes every access token issued so far invalid (as if they expired).
    pub fn expire_access_tokens(&self) {
        self.state().identity.expire_access_tokens();
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }
}

/// The emulator's URL as the client addressed it, from the Host header:
/// the same emulator answers in-process (`http://localhost`) and on a
/// loopback port (`http://127.0.0.1:PORT`).
pub fn origin_of(request: &EmuRequest) -> String {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_string());
    format!("http://{host}")
}

fn route(state: &mut State, request: &EmuRequest) -> EmuResponse {
    let path = request.uri().path();
    if path.starts_with("/api/data/") {
        webapi::handle(state, request)
    } else if path.contains("/oauth2/") {
        identity::handle(state, request)
    } else {
        response::odata_error(
            404,
            "0x8006088a",
            &format!(
                "Resource not found for the segment '{}'.",
                path.trim_start_matches('/')
            ),
        )
    }
}
