//! A Dataverse emulator: the Microsoft identity platform token endpoint and
//! the Dataverse Web API, behaving as Microsoft documents them (status codes,
//! headers, error bodies), with seeded data, a request log, injectable
//! faults and outbound webhooks ([`webhooks`]). It runs in-process
//! ([`Emulator::handle`]) or as a loopback server ([`server::serve`]).
//!
//! This module tree imports nothing from the wasmtime host, so it could move
//! to its own crate unchanged.

// Handlers refuse a request by returning its answer early as
// `Err(EmuResponse)` (144 bytes, once per request): boxing it would buy
// nothing and make every refusal harder to read.
#![allow(clippy::result_large_err)]

pub mod data;
pub mod dates;
pub mod faults;
pub mod fetchxml;
pub mod identity;
pub mod limits;
pub mod log;
pub mod odata;
pub mod response;
pub mod search;
pub mod server;
pub mod store;
pub mod webapi;
pub mod webhooks;

use bytes::Bytes;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub use data::Directory;
pub use faults::{FaultStats, Faults, Injected, Limit, Reset, Trigger};
pub use identity::{AppRegistration, Identity};
pub use log::{LogRetention, LoggedRequest, RequestLog};
pub use webhooks::{DeliveryRecord, Webhooks};

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
    /// How much of the request log to keep (see [`log`]).
    pub log_retention: LogRetention,
    /// Whether Dataverse search is provisioned ([`search`]); off, its
    /// status says `notprovisioned` and its queries fail.
    pub search_enabled: bool,
    /// Service protection limits ([`limits`]); none by default.
    pub limits: Option<limits::Limits>,
    /// Elastic tables: how long (seconds) a write stays unseen by reads
    /// without a session token at least as new (`webapi/plugins.rs`,
    /// `visible`); 0, the default, makes every write visible at once.
    pub elastic_read_lag_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            access_token_lifetime: 3599,
            generated_records: 0,
            log_retention: LogRetention::All,
            search_enabled: true,
            limits: None,
            elastic_read_lag_secs: 0,
        }
    }
}

/// Everything the emulator knows, behind one lock.
pub struct State {
    pub config: Config,
    pub identity: Identity,
    pub directory: Directory,
    /// Records of every entity set.
    pub store: store::Store,
    pub log: RequestLog,
    pub faults: Faults,
    /// What the faults did since they were last set.
    pub fault_stats: FaultStats,
    /// Added to the wall clock: lets tests age tokens without waiting.
    pub clock_offset_secs: i64,
    /// Registered webhooks, queued deliveries and their log.
    pub webhooks: Webhooks,
    /// Contents of file columns, by file id.
    pub files: webapi::files::FileBlobs,
    /// Service protection: the limits in force and every user's usage
    /// (none unless [`Config::limits`] is set).
    pub limiter: Option<limits::Limiter>,
}

/// A copy of the emulator's data, taken before a `$batch` change set so a
/// failing change set can be rolled back (all or nothing).
pub struct Snapshot {
    directory: Directory,
    store: store::Store,
    files: webapi::files::FileBlobs,
}

impl State {
    /// Copies every data field. Every data field added to [`State`] later
    /// (record store, metadata, …) must be included here and in
    /// [`State::restore`], or change sets stop being atomic for it. Tokens,
    /// the request log, faults and the clock are not data.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            directory: self.directory.clone(),
            store: self.store.clone(),
            files: self.files.clone(),
        }
    }

    /// Puts the data back as [`State::snapshot`] saw it.
    pub fn restore(&mut self, snapshot: Snapshot) {
        let Snapshot {
            directory,
            store,
            files,
        } = snapshot;
        self.directory = directory;
        self.store = store;
        self.files = files;
    }

    /// Seconds since the Unix epoch, as the emulator's clock reads it.
    pub fn now(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        real.saturating_add_signed(self.clock_offset_secs)
    }

    /// Milliseconds since the Unix epoch, as the emulator's clock reads it.
    pub fn now_ms(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        real.saturating_add(self.clock_offset_secs.saturating_mul(1000))
    }

    /// Queues the webhook deliveries one write causes (call from the record
    /// store's write path, under the lock); [`Emulator::handle`] sends them
    /// once the lock is released. Returns how many were queued.
    pub fn queue_webhooks(&mut self, write: &webhooks::Write<'_>) -> usize {
        self.queue_webhooks_with(write, &[], &[])
    }

    /// [`Self::queue_webhooks`] with the registrations stored as rows
    /// (`webapi/registration.rs`) as well.
    pub fn queue_webhooks_with(
        &mut self,
        write: &webhooks::Write<'_>,
        endpoints: &[webhooks::ServiceEndpoint],
        steps: &[webhooks::Step],
    ) -> usize {
        let now_ms = self.now_ms();
        self.webhooks
            .on_write_with(&self.directory, now_ms, write, endpoints, steps)
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
        let webhooks = Webhooks::new(&format!("{}.crm.dynamics.com", directory.organization_name));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let store = store::seed::seeded(&directory, config.generated_records, now);
        let log = RequestLog::new(config.log_retention);
        let limiter = config.limits.map(limits::Limiter::new);
        Emulator {
            state: Arc::new(Mutex::new(State {
                config,
                identity,
                directory,
                store,
                log,
                faults: Faults::default(),
                fault_stats: FaultStats::default(),
                clock_offset_secs: 0,
                webhooks,
                files: Default::default(),
                limiter,
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
        let path = request.uri().path().to_string();
        let body = if path.starts_with("/api/data/") || path.starts_with("/api/search/") {
            request.body().clone()
        } else {
            Bytes::new()
        };
        let plan = self.fault_plan(&path);
        if plan.reset == Some(Reset::BeforeProcessing) {
            // The service never sees it: nothing processed, nothing logged.
            let mut response = EmuResponse::default();
            response.extensions_mut().insert(Reset::BeforeProcessing);
            return response;
        }
        if let Some(delay) = plan.delay {
            // Outside the lock, and on tokio's clock (paused in tests).
            tokio::time::sleep(delay).await;
        }
        let mut response = match (&plan.error, &plan.error_after_processing) {
            (Some(injected), _) => injected.answer(&request),
            (None, after) => {
                let admission = self.admit(&request, &path);
                if let Some((_, limits::Admission::Admitted { cost_ms, .. }, _)) = &admission {
                    // The simulated execution, outside the lock (tokio's
                    // clock: paused in tests).
                    tokio::time::sleep(std::time::Duration::from_millis(*cost_ms)).await;
                }
                let mut real = match &admission {
                    Some((
                        _,
                        limits::Admission::Refused {
                            exceeded,
                            retry_after_secs,
                        },
                        l,
                    )) => throttled(*exceeded, *retry_after_secs, l),
                    _ if target.len() > MAX_URL_LEN => url_too_long(),
                    _ => {
                        let mut state = self.state();
                        route(&mut state, &request)
                    }
                };
                if let Some((
                    user,
                    limits::Admission::Admitted {
                        requests_left,
                        time_left_ms,
                        ..
                    },
                    l,
                )) = &admission
                {
                    if let Some(limiter) = self.state().limiter.as_mut() {
                        limiter.release(user);
                    }
                    // The documented debug headers, and the recommended
                    // degree of parallelism (Microsoft Learn, "Service
                    // protection API limits", "Send parallel requests").
                    let headers = real.headers_mut();
                    for (name, value) in [
                        (
                            "x-ms-ratelimit-burst-remaining-xrm-requests",
                            requests_left.to_string(),
                        ),
                        (
                            "x-ms-ratelimit-time-remaining-xrm-requests",
                            time_left_ms.to_string(),
                        ),
                        ("x-ms-dop-hint", l.dop_hint.to_string()),
                    ] {
                        if let Ok(v) = http::HeaderValue::from_str(&value) {
                            headers.insert(name, v);
                        }
                    }
                }
                after.as_ref().map_or(real, |a| a.answer(&request))
            }
        };
        if plan.invalid_json {
            response = faults::invalid_json_response();
        }
        if plan.repeat_next_link {
            let url = format!("{}{target}", origin_of(&request));
            let (page, repeated) = faults::repeat_next_link(response, &url);
            response = page;
            if repeated {
                self.state().fault_stats.repeated_links += 1;
            }
        }
        if let Some(reset) = plan.reset {
            response.extensions_mut().insert(reset);
        }
        if plan.cut_body {
            let keep = response.body().len() / 2;
            response.extensions_mut().insert(faults::CutBody { keep });
        }
        if plan.endless_body {
            let keep = response.body().len() / 2;
            response
                .extensions_mut()
                .insert(faults::EndlessMark { keep });
        }
        self.state().log.push(LoggedRequest {
            method,
            target,
            status: response.status().as_u16(),
            headers,
            body_len,
            body,
            response_body: response.body().clone(),
        });
        let pending = self.state().webhooks.take_pending();
        if !pending.is_empty() {
            self.dispatch_webhooks(pending).await;
        }
        response
    }

    /// Service protection for one request: `None` when no limits are set,
    /// or the request is not an API call by a known token (those are
    /// answered as usual: the token endpoint, a 401).
    fn admit(
        &self,
        request: &EmuRequest,
        path: &str,
    ) -> Option<(String, limits::Admission, limits::Limits)> {
        if !(path.starts_with("/api/data/") || path.starts_with("/api/search/")) {
            return None;
        }
        let token = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))?
            .trim();
        let mut state = self.state();
        let now = state.now();
        let now_ms = u64::try_from(state.now_ms()).unwrap_or(0);
        let user = state
            .identity
            .check_access_token(token, now)?
            .user_id
            .clone();
        let cost = limits::cost_ms(request.method(), request.body().len());
        let limiter = state.limiter.as_mut()?;
        let admission = limiter.admit(&user, now_ms, cost);
        Some((user, admission, limiter.limits))
    }

    /// Sends queued deliveries: synchronous steps before returning (as
    /// Dataverse runs them inside the operation), asynchronous ones in the
    /// background. Outcomes land in [`Webhooks::deliveries`].
    async fn dispatch_webhooks(&self, pending: Vec<webhooks::Delivery>) {
        let timeout = self.state().webhooks.timeout;
        for delivery in pending {
            let emulator = self.clone();
            let synchronous = delivery.mode == webhooks::Mode::Synchronous;
            let send = async move {
                let record = webhooks::send(&delivery, timeout).await;
                emulator.state().webhooks.record(record);
            };
            if synchronous {
                send.await;
            } else {
                tokio::spawn(send);
            }
        }
    }

    /// Registers a webhook service endpoint (see [`Webhooks::register_endpoint`]).
    pub fn register_webhook(
        &self,
        name: &str,
        url: &str,
        auth: webhooks::WebhookAuth,
    ) -> Result<String, String> {
        self.state().webhooks.register_endpoint(name, url, auth)
    }

    /// Registers a step on an endpoint (see [`Webhooks::register_step`]).
    pub fn register_webhook_step(
        &self,
        endpoint_id: &str,
        step: webhooks::StepRegistration,
    ) -> Result<String, String> {
        self.state().webhooks.register_step(endpoint_id, step)
    }

    /// Raises the webhooks for one write and waits for every delivery,
    /// synchronous or not; returns their outcomes (also logged).
    pub async fn fire_webhooks(&self, write: &webhooks::Write<'_>) -> Vec<DeliveryRecord> {
        let (deliveries, timeout) = {
            let state = self.state();
            let now_ms = state.now_ms();
            (
                state.webhooks.build(&state.directory, now_ms, write),
                state.webhooks.timeout,
            )
        };
        let mut records = Vec::new();
        for delivery in deliveries {
            let record = webhooks::send(&delivery, timeout).await;
            self.state().webhooks.record(record.clone());
            records.push(record);
        }
        records
    }

    /// Every webhook delivery made so far.
    pub fn webhook_deliveries(&self) -> Vec<DeliveryRecord> {
        self.state().webhooks.deliveries().to_vec()
    }

    /// Counts a Web API request and decides which faults hit it.
    fn fault_plan(&self, path: &str) -> faults::FaultPlan {
        let mut state = self.state();
        if !state.faults.applies_to(path) {
            return faults::FaultPlan::default();
        }
        state.fault_stats.requests += 1;
        let plan = state.faults.plan(state.fault_stats.requests);
        if plan.expire_tokens {
            state.identity.expire_access_tokens();
            state.fault_stats.tokens_expired += 1;
        }
        if plan.delay.is_some() {
            state.fault_stats.delayed += 1;
        }
        if let Some(injected) = plan.error.as_ref().or(plan.error_after_processing.as_ref()) {
            let status = injected.response().status().as_u16();
            state.fault_stats.injected.push(status);
        }
        if plan.cut_body {
            state.fault_stats.cut += 1;
        }
        if plan.endless_body {
            state.fault_stats.endless += 1;
        }
        if plan.reset.is_some() {
            state.fault_stats.resets += 1;
        }
        if plan.invalid_json {
            state.fault_stats.invalid_json += 1;
        }
        plan
    }

    /// A copy of the request log (the kept part: see [`Config::log_retention`]).
    pub fn log(&self) -> Vec<LoggedRequest> {
        self.state().log.to_vec()
    }

    /// Entries the log retention dropped since the log was last cleared.
    pub fn log_dropped(&self) -> u64 {
        self.state().log.dropped()
    }

    pub fn clear_log(&self) {
        self.state().log.clear();
    }

    /// Makes every access token issued so far invalid (as if they expired).
    pub fn expire_access_tokens(&self) {
        self.state().identity.expire_access_tokens();
    }

    /// Replaces the faults and resets their counters.
    pub fn set_faults(&self, faults: Faults) {
        let mut state = self.state();
        state.faults = faults;
        state.fault_stats = FaultStats::default();
    }

    /// What the faults did since they were set: requests that arrived
    /// (attempts, including abandoned ones) and answers injected.
    pub fn fault_stats(&self) -> FaultStats {
        self.state().fault_stats.clone()
    }
}

/// Longest path + query a top-level request may have: Dataverse's GET URL
/// limit is commonly cited as about 32 KB (reference §4, UNCONFIRMED),
/// which is why long FetchXML goes inside `$batch`, whose inner requests
/// may be up to 64 KB ([`webapi::batch::MAX_INNER_URL_LEN`]).
pub const MAX_URL_LEN: usize = 32 * 1024;

/// `414 URI Too Long` (status and empty body UNCONFIRMED: the front end
/// answers before Dataverse, so no OData error body).
pub fn url_too_long() -> EmuResponse {
    http::Response::builder()
        .status(414)
        .body(Bytes::new())
        .unwrap_or_default()
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
    // In-process requests carry the full URI (scheme included); a loopback
    // server only sees the path, and is plain http.
    let scheme = request.uri().scheme_str().unwrap_or("http");
    format!("{scheme}://{host}")
}

/// Whether a request that may carry a body says how long it is, as HTTP.sys
/// (in front of Dataverse and Entra) requires of POST, PUT and PATCH. On
/// the wire, a request that declares neither a length nor chunking has no
/// body; a request built in-process with a body (tests, examples) has its
/// length in hand.
fn declares_length(request: &EmuRequest) -> bool {
    let may_have_body = matches!(
        *request.method(),
        http::Method::POST | http::Method::PUT | http::Method::PATCH
    );
    let headers = request.headers();
    !may_have_body
        || !request.body().is_empty()
        || headers.contains_key(http::header::CONTENT_LENGTH)
        || headers.contains_key(http::header::TRANSFER_ENCODING)
}

fn route(state: &mut State, request: &EmuRequest) -> EmuResponse {
    let path = request.uri().path();
    if !declares_length(request) {
        return response::length_required();
    }
    if path.starts_with("/api/data/") {
        webapi::handle(state, request)
    } else if path.starts_with("/api/search/") {
        search::handle(state, request)
    } else if path.starts_with("/api/backgroundoperation/") {
        webapi::status_monitor(state, request)
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

/// A service protection 429 as Dataverse answers it: `Retry-After` and the
/// documented code and message (wire reference §7.3).
fn throttled(exceeded: limits::Exceeded, retry_after_secs: u64, l: &limits::Limits) -> EmuResponse {
    let mut response = response::odata_error(429, exceeded.code(), &exceeded.message(l));
    if let Ok(v) = http::HeaderValue::from_str(&retry_after_secs.to_string()) {
        response.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    response
}
