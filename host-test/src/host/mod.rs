//! The wasmtime host: compiles the connector component once, pre-instantiates
//! it, and gives every call a fresh store. Outgoing wasi:http requests go to
//! the network or, per call, to an in-process [`Emulator`](crate::emulator::Emulator).

mod body_cap;
pub mod limits;
pub mod network;
mod outgoing;
pub mod route;

pub use limits::HostLimits;
pub use route::Route;

use route::RouteHooks;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::sync::OnceLock;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "connector",
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:random": wasmtime_wasi::p2::bindings::random,
    },
});

pub use d365::connector::types::{
    ActionResult, AuthorizeRequest, Connection, ConnectionType, ConnectorError, ErrorKind,
    TokenState,
};

pub use exports::d365::connector::webhook::{
    IncomingWebhook, Subscription, WebhookEvent, WebhookRejection,
};

/// The release `.wasm` that build.rs produced.
pub const COMPONENT_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/d365_connector.wasm"));

/// Per-call store data.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: RouteHooks,
    memory: limits::MemoryLimiter,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// wasi:clocks/monotonic-clock on tokio's clock: the guest's sleeps are
/// tokio timers already, so with tokio's paused clock (tests) a 60 s backoff
/// passes instantly and the guest still measures 60 s. Outside paused tests
/// tokio's clock is the system's monotonic clock.
struct TokioMonotonicClock {
    start: tokio::time::Instant,
}

impl TokioMonotonicClock {
    fn new() -> Self {
        TokioMonotonicClock {
            start: tokio::time::Instant::now(),
        }
    }
}

impl wasmtime_wasi::HostMonotonicClock for TokioMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// See `engine_config`.
const KEEP_RESIDENT: usize = 512 * 1024;
/// See `engine_config`.
const KEEP_RESIDENT_SCANNED: usize = 4 << 20;

/// The engine configuration every host uses (precompiled artifacts must be
/// loaded with the same one): the component model, and epoch interruption
/// for the per-call deadline.
fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // `D365_WASM_PROFILER=perfmap` writes /tmp/perf-PID.map so that `perf
    // report` names the guest's JIT-compiled functions (finding where a
    // benchmark's time goes); off by default.
    if std::env::var_os("D365_WASM_PROFILER").is_some_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    // The pooling allocator keeps instance slots mapped between calls, so a
    // fresh instance per call costs a slot reset instead of fresh mmaps.
    // Bounded pool: at most 64 concurrent calls per host; a slot's memory
    // is capped above the default per-call limit (512 MiB) so that the
    // ResourceLimiter's clear error fires first.
    //
    // With PAGEMAP_SCAN (Linux >= 6.7) wasmtime asks the kernel which pages
    // of the resident span a call wrote and resets only those, so the span
    // can cover a large call's heap: a 1,000-item runBatch writes ~3 MiB;
    // kept, its ~720 page faults per call are gone (batch_cost, perf stat
    // page-faults, deterministic) and its CPU time drops ~3%. Instantiation
    // 16 -> 13 us, a rejected call 38 -> 32 us (call_cost). Costs at most
    // that span of RSS per pool slot a call has used.
    //
    // Without it, wasmtime memsets the whole span on every reset, so the
    // span stays at what every call touches anyway: the guest's 256 KiB
    // stack (see the root build.rs), its ~130 KB of data and the start of
    // its heap (getEntity 330 -> 266 us, instantiation 16.6 -> 15.2 us
    // against decommitting them).
    let keep_resident = if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        KEEP_RESIDENT_SCANNED
    } else {
        KEEP_RESIDENT
    };
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(64)
        .total_core_instances(64 * 8)
        .total_memories(64 * 2)
        .total_tables(64 * 8)
        .total_stacks(64)
        .max_memory_size(1 << 30)
        // Keep the low addresses of a slot's memory resident between
        // instances and reset them in place instead of madvising them away:
        // decommitted, every call faults its pages in again.
        .linear_memory_keep_resident(keep_resident)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(wasmtime::Enabled::Auto);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    config
}

/// A compiled, pre-instantiated connector.
#[derive(Clone)]
pub struct ConnectorHost {
    engine: Engine,
    pre: ConnectorPre<HostState>,
    limits: HostLimits,
    /// Keep-alive connections shared by every call's store.
    network: network::Network,
}

impl ConnectorHost {
    /// Compiles `wasm` and links WASI p2 (a panic message goes to wasi:cli/stderr) and
    /// wasi:http.
    pub fn new(wasm: &[u8]) -> wasmtime::Result<Self> {
        Self::with_limits(wasm, HostLimits::default())
    }

    /// Like [`Self::new`], with per-call `limits` (memory, deadline,
    /// response body size) instead of the defaults.
    pub fn with_limits(wasm: &[u8], limits: HostLimits) -> wasmtime::Result<Self> {
        let engine = Engine::new(&engine_config())?;
        limits::start_epoch_ticker(&engine);
        let component = Component::new(&engine, wasm)?;
        Self::link(engine, &component, limits)
    }

    /// Links WASI p2 (a panic message goes to wasi:cli/stderr) and wasi:http, and
    /// pre-instantiates `component`.
    fn link(engine: Engine, component: &Component, limits: HostLimits) -> wasmtime::Result<Self> {
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        linker.allow_shadowing(true);
        outgoing::add_to_linker(&mut linker)?;
        linker.allow_shadowing(false);
        let pre = ConnectorPre::new(linker.instantiate_pre(component)?)?;
        Ok(ConnectorHost {
            engine,
            pre,
            limits,
            network: network::Network::new(),
        })
    }

    /// The embedded component, compiled once per process.
    pub fn shared() -> wasmtime::Result<&'static ConnectorHost> {
        static HOST: OnceLock<ConnectorHost> = OnceLock::new();
        if let Some(h) = HOST.get() {
            return Ok(h);
        }
        let host = ConnectorHost::new(COMPONENT_WASM)?;
        Ok(HOST.get_or_init(|| host))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `wasm` ahead of time (what a platform caches on disk), for
    /// [`Self::from_precompiled`]; the benchmark times loading it.
    pub fn precompile(wasm: &[u8]) -> wasmtime::Result<Vec<u8>> {
        Engine::new(&engine_config())?.precompile_component(wasm)
    }

    /// Loads a component that [`Self::precompile`] produced (no compilation)
    /// and pre-instantiates it, linked as in [`Self::new`].
    ///
    /// # Safety
    /// `bytes` must come from [`Self::precompile`] of this wasmtime build
    /// (wasmtime trusts precompiled machine code).
    pub unsafe fn from_precompiled(bytes: &[u8]) -> wasmtime::Result<Self> {
        let engine = Engine::new(&engine_config())?;
        limits::start_epoch_ticker(&engine);
        // SAFETY: the caller guarantees the bytes are wasmtime's own output.
        let component = unsafe { Component::deserialize(&engine, bytes)? };
        Self::link(engine, &component, HostLimits::default())
    }

    /// Creates a fresh store and instance and drops them: the per-call cost a
    /// platform pays before the action runs (timed by the benchmark).
    pub async fn instantiate_fresh(&self) -> wasmtime::Result<()> {
        let (store, instance) = self.instance(&Route::Network).await?;
        drop((instance, store));
        Ok(())
    }

    pub fn limits(&self) -> &HostLimits {
        &self.limits
    }

    /// The same compiled component under other limits (cheap: the engine
    /// and pre-instantiation are shared; the epoch ticker already runs).
    pub fn limited(&self, limits: HostLimits) -> ConnectorHost {
        ConnectorHost {
            limits,
            ..self.clone()
        }
    }

    /// A fresh store and instance for one call.
    async fn instance(&self, route: &Route) -> wasmtime::Result<(Store<HostState>, Connector)> {
        let wasi = WasiCtx::builder()
            .inherit_stderr()
            .monotonic_clock(TokioMonotonicClock::new())
            .build();
        let state = HostState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: RouteHooks::new(route.clone(), self.network.clone())
                .with_max_response_body(self.limits.max_response_body),
            memory: limits::MemoryLimiter::new(self.limits.memory_bytes),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(self.limits.deadline_ticks());
        store.epoch_deadline_trap();
        let instance = self.pre.instantiate_async(&mut store).await?;
        Ok((store, instance))
    }

    /// `actions.invoke`.
    pub async fn invoke(
        &self,
        route: &Route,
        action_key: &str,
        connection: &Connection,
        inputs: &str,
    ) -> wasmtime::Result<Result<ActionResult, ConnectorError>> {
        let (mut store, instance) = self.instance(route).await?;
        instance
            .d365_connector_actions()
            .call_invoke(&mut store, action_key, connection, inputs)
            .await
            .map_err(|e| limits::explain(e, &self.limits))
    }

    /// Like [`Self::invoke`], also returning the instance's linear memory
    /// when the call ended, which is its peak (`d365 bench`'s files
    /// scenario).
    pub async fn invoke_measured(
        &self,
        route: &Route,
        action_key: &str,
        connection: &Connection,
        inputs: &str,
    ) -> wasmtime::Result<(Result<ActionResult, ConnectorError>, usize)> {
        let (mut store, instance) = self.instance(route).await?;
        let result = instance
            .d365_connector_actions()
            .call_invoke(&mut store, action_key, connection, inputs)
            .await
            .map_err(|e| limits::explain(e, &self.limits))?;
        Ok((result, store.data().memory.used()))
    }

    /// `webhook.handle`: runs the webhook trigger on one received request.
    /// The trigger makes no outgoing requests, so no route is needed.
    pub async fn webhook(
        &self,
        request: &IncomingWebhook,
        inputs: &str,
    ) -> wasmtime::Result<Result<WebhookEvent, WebhookRejection>> {
        let (mut store, instance) = self.instance(&Route::Network).await?;
        instance
            .d365_connector_webhook()
            .call_handle(&mut store, request, inputs)
            .await
    }

    /// `webhook.subscribe`: registers the trigger's endpoint and steps.
    pub async fn subscribe(
        &self,
        route: &Route,
        connection: &Connection,
        inputs: &str,
        callback_url: &str,
    ) -> wasmtime::Result<Result<Subscription, ConnectorError>> {
        let (mut store, instance) = self.instance(route).await?;
        instance
            .d365_connector_webhook()
            .call_subscribe(&mut store, connection, inputs, callback_url)
            .await
            .map_err(|e| limits::explain(e, &self.limits))
    }

    /// `webhook.unsubscribe`.
    pub async fn unsubscribe(
        &self,
        route: &Route,
        connection: &Connection,
        subscription: &Subscription,
    ) -> wasmtime::Result<Result<(), ConnectorError>> {
        let (mut store, instance) = self.instance(route).await?;
        instance
            .d365_connector_webhook()
            .call_unsubscribe(&mut store, connection, subscription)
            .await
            .map_err(|e| limits::explain(e, &self.limits))
    }

    /// `webhook.check`.
    pub async fn check_subscription(
        &self,
        route: &Route,
        connection: &Connection,
        subscription: &Subscription,
    ) -> wasmtime::Result<Result<bool, ConnectorError>> {
        let (mut store, instance) = self.instance(route).await?;
        instance
            .d365_connector_webhook()
            .call_check(&mut store, connection, subscription)
            .await
            .map_err(|e| limits::explain(e, &self.limits))
    }

    /// `catalog.describe`.
    pub async fn describe(&self) -> wasmtime::Result<String> {
        let (mut store, instance) = self.instance(&Route::Network).await?;
        instance
            .d365_connector_catalog()
            .call_describe(&mut store)
            .await
    }

    /// `oauth2-client-credentials.get-token`.
    pub async fn client_credentials_token(
        &self,
        route: &Route,
        settings: &str,
    ) -> wasmtime::Result<Result<TokenState, ConnectorError>> {
        let (mut store, instance) = self.instance(route).await?;
        instance
            .d365_connector_oauth2_client_credentials()
            .call_get_token(&mut store, settings)
            .await
    }

    /// `oauth2-auth-code.authorize-url`.
    pub async fn authorize_url(
        &self,
        settings: &str,
    ) -> wasmtime::Result<Result<AuthorizeRequest, ConnectorError>> {
        let (mut store, instance) = self.instance(&Route::Network).await?;
        instance
            .d365_connector_oauth2_auth_code()
            .call_authorize_url(&mut store, settings)
            .await
    }

    /// `oauth2-auth-code.exchange-code`.
    pub async fn exchange_code(
        &self,
        route: &Route,
        settings: &str,
        code: &str,
        code_verifier: &str,
    ) -> wasmtime::Result<Result<TokenState, ConnectorError>> {
        let (mut store, instance) = self.instance(route).await?;
        instance
            .d365_connector_oauth2_auth_code()
            .call_exchange_code(&mut store, settings, code, code_verifier)
            .await
    }

    /// `oauth2-auth-code.refresh`.
    pub async fn refresh(
        &self,
        route: &Route,
        settings: &str,
        refresh_token: &str,
    ) -> wasmtime::Result<Result<TokenState, ConnectorError>> {
        let (mut store, instance) = self.instance(route).await?;
        instance
            .d365_connector_oauth2_auth_code()
            .call_refresh(&mut store, settings, refresh_token)
            .await
    }
}

/// The connection file the CLI reads and writes:
/// `{"type": "oauth2ClientCredentials", …settings…, "state": {…}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionFile {
    #[serde(rename = "type")]
    pub connection_type: String,
    #[serde(flatten)]
    pub settings: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateJson>,
}

/// Token state as JSON (camelCase, as in the connection file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StateJson {
    pub access_token: String,
    pub expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl From<TokenState> for StateJson {
    fn from(t: TokenState) -> Self {
        StateJson {
            access_token: t.access_token,
            expires_at: t.expires_at,
            refresh_token: t.refresh_token,
            scope: t.scope,
        }
    }
}

impl From<StateJson> for TokenState {
    fn from(t: StateJson) -> Self {
        TokenState {
            access_token: t.access_token,
            expires_at: t.expires_at,
            refresh_token: t.refresh_token,
            scope: t.scope,
        }
    }
}

impl ConnectionFile {
    pub fn connection(&self) -> anyhow::Result<Connection> {
        let connection_type = match self.connection_type.as_str() {
            "oauth2ClientCredentials" => ConnectionType::Oauth2ClientCredentials,
            "oauth2AuthCode" => ConnectionType::Oauth2AuthCode,
            other => anyhow::bail!(
                "connection type '{other}' is unknown (expected oauth2ClientCredentials or oauth2AuthCode)"
            ),
        };
        Ok(Connection {
            connection_type,
            settings: Value::Object(self.settings.clone()).to_string(),
            state: self.state.clone().map(Into::into),
        })
    }

    pub fn settings_json(&self) -> String {
        Value::Object(self.settings.clone()).to_string()
    }
}

/// A connector error as JSON (the shape the CLI prints on stderr).
pub fn error_json(e: &ConnectorError) -> Value {
    let (kind, input, retry_after) = match &e.kind {
        ErrorKind::InvalidInput(i) => ("invalid-input", Some(i.clone()), None),
        ErrorKind::Unauthorized => ("unauthorized", None, None),
        ErrorKind::Forbidden => ("forbidden", None, None),
        ErrorKind::NotFound => ("not-found", None, None),
        ErrorKind::Conflict => ("conflict", None, None),
        ErrorKind::Throttled(r) => ("throttled", None, *r),
        ErrorKind::Dataverse => ("dataverse", None, None),
        ErrorKind::Transport => ("transport", None, None),
        ErrorKind::Timeout => ("timeout", None, None),
    };
    let mut v = json!({
        "kind": kind,
        "status": e.status,
        "code": e.code,
        "message": e.message,
        "hint": e.hint,
        "retryable": e.retryable,
    });
    if let Some(i) = input {
        v["input"] = json!(i);
    }
    if let Some(r) = retry_after {
        v["retryAfter"] = json!(r);
    }
    v
}

/// A wasmtime error (a trap or a link failure) as an anyhow error, for
/// callers that use anyhow.
pub fn trap(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

/// A subscription as JSON (the file `d365 trigger webhook
/// --subscription-out` writes): no token state (that goes to the
/// connection file) and no key.
pub fn subscription_json(s: &Subscription) -> Value {
    json!({
        "name": s.name,
        "callbackUrl": s.callback_url,
        "endpointId": s.endpoint_id,
        "stepIds": s.step_ids,
        "imageIds": s.image_ids,
        "inputs": serde_json::from_str::<Value>(&s.inputs).unwrap_or(Value::String(s.inputs.clone())),
    })
}

/// Reads [`subscription_json`] back.
pub fn subscription_from_json(v: &Value) -> anyhow::Result<Subscription> {
    let text = |k: &str| -> anyhow::Result<String> {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("the subscription has no string `{k}`"))
    };
    let list = |k: &str| -> anyhow::Result<Vec<String>> {
        v.get(k)
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow::anyhow!("the subscription has no list `{k}`"))?
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow::anyhow!("`{k}` must hold strings"))
            })
            .collect()
    };
    Ok(Subscription {
        name: text("name")?,
        callback_url: text("callbackUrl")?,
        endpoint_id: text("endpointId")?,
        step_ids: list("stepIds")?,
        image_ids: list("imageIds")?,
        inputs: match v.get("inputs") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => "{}".to_string(),
        },
        state: None,
    })
}

/// A webhook rejection as JSON (the shape the CLI prints).
pub fn rejection_json(r: &WebhookRejection) -> Value {
    json!({
        "status": r.status,
        "headers": r.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "body": r.body,
        "reason": r.reason,
    })
}
