//! `wasi:http/outgoing-handler.handle` that sends a request without a body
//! in the calling task.
//!
//! wasmtime-wasi-http's `handle` spawns every request as a tokio task and
//! hands the guest a future to wait on. On a multi-thread runtime that task
//! usually runs on another worker than the call, and each hand-over is a
//! cross-thread wake-up (tens of µs on our 2-core VM). `examples/call_cost.rs`
//! measured getEntity in-process 240 -> 139 µs and over loopback ~20 µs
//! less (~300 µs; there the pool's connection task is on a worker anyway).
//!
//! A request without a body — every GET and DELETE the connector sends —
//! needs nothing more from the guest once `handle` is called, so here it is
//! sent by `handle` itself while the guest waits (the guest's fiber is
//! suspended, as in any blocking wasi call), and the future the guest gets
//! back is already resolved. A request with a body keeps wasi-http's path:
//! the guest writes the body after `handle` returns, so the request must be
//! under way by then.
//!
//! Either way the request goes through the same [`RouteHooks`]
//! (`send_request`): the route, timeouts, response cap and faults are the
//! same.

use super::HostState;
use super::route::RouteHooks;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::runtime::AbortOnDropJoinHandle;
use wasmtime_wasi_http::p2::bindings::http::outgoing_handler::Host as _;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Method, Scheme};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{RequestOptions, WasiHttpHooks, WasiHttpView};

/// The interface as the component imports it (wasmtime-wasi-http's WIT).
const INTERFACE: &str = "wasi:http/outgoing-handler@0.2.12";

/// Defines `handle` in `linker`, in place of wasi-http's (add this after
/// the rest of wasi:http).
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.instance(INTERFACE)?.func_wrap_async(
        "handle",
        |mut store,
         (request, options): (
            Resource<HostOutgoingRequest>,
            Option<Resource<RequestOptions>>,
        )| { Box::new(async move { handle(store.data_mut(), request, options).await }) },
    )
}

type Handled = Result<Resource<HostFutureIncomingResponse>, ErrorCode>;

async fn handle(
    state: &mut HostState,
    request: Resource<HostOutgoingRequest>,
    options: Option<Resource<RequestOptions>>,
) -> wasmtime::Result<(Handled,)> {
    if state.table.get(&request)?.body.is_some() {
        // wasi-http's own: spawned, the guest then writes the body.
        return match state.http().handle(request, options) {
            Ok(future) => Ok((Ok(future),)),
            // An error code goes to the guest; anything else traps.
            Err(e) => Ok((Err(e.downcast()?),)),
        };
    }
    let options = options.and_then(|o| state.table.get(&o).ok()).cloned();
    let outgoing = state.table.delete(request)?;
    let request = match to_http(outgoing, &mut state.hooks) {
        Ok(r) => r,
        Err(code) => return Ok((Err(code),)),
    };
    // The same future wasi-http would have spawned, awaited here.
    let sent = Pin::from(
        state
            .hooks
            .send_request(request, options, Box::new(async { Ok(()) })),
    );
    let response = match sent.await {
        Ok((response, io)) => {
            // The resolved future carries the request's I/O task. Ours is
            // already done (the pool or the emulator drives the connection),
            // so the handle of a finished task stands in for it.
            let mut io = Pin::from(io);
            let io = match wasmtime_wasi::runtime::poll_noop(Pin::new(&mut io)) {
                Some(_) => task_handle(),
                None => wasmtime_wasi::runtime::spawn(async move {
                    let _ = io.await;
                }),
            };
            Ok((response.map(|b| b.boxed_unsync()), io))
        }
        Err(e) => Err(e),
    };
    let future = state
        .table
        .push(HostFutureIncomingResponse::Ready(response))?;
    Ok((Ok(future),))
}

/// How many trivial tasks [`task_handle`] spawns at a time.
const HANDLE_STOCK: usize = 64;

/// A handle to a trivial task, for a response whose I/O is already done.
///
/// wasi-http's resolved response must hold a task handle. Spawning a task
/// per request only for its handle wakes a parked tokio worker each time
/// (`perf record` of `examples/call_cost.rs`: futex and eventfd writes under
/// `spawn`). Spawned [`HANDLE_STOCK`] at a time, the tasks share one
/// wake-up: an in-process getEntity went from ~141 to ~108 µs (`call_cost
/// 3000 --only getEntity`, five alternating runs each). Over loopback the
/// pool's connection task wakes a worker anyway, and eight alternating runs
/// showed no difference beyond the VM's noise (240–310 µs either way).
///
/// Nothing awaits or aborts these tasks with effect: wasi-http only keeps
/// the handle until the body is dropped, and a handle from a runtime that
/// has since shut down is just as inert.
fn task_handle() -> AbortOnDropJoinHandle<()> {
    static STOCK: Mutex<Vec<AbortOnDropJoinHandle<()>>> = Mutex::new(Vec::new());
    let mut stock = STOCK.lock().unwrap_or_else(PoisonError::into_inner);
    if stock.is_empty() {
        stock.extend((0..HANDLE_STOCK).map(|_| wasmtime_wasi::runtime::spawn(async {})));
    }
    match stock.pop() {
        Some(handle) => handle,
        None => wasmtime_wasi::runtime::spawn(async {}),
    }
}

/// The bodiless request as `http` has it, checked as wasi-http's `handle`
/// checks it.
fn to_http(
    req: HostOutgoingRequest,
    hooks: &mut RouteHooks,
) -> Result<http::Request<wasmtime_wasi_http::WasiBody>, ErrorCode> {
    // No body, so a declared length other than 0 cannot be kept.
    let declared = req.headers.get(http::header::CONTENT_LENGTH);
    if declared.is_some_and(|v| v.as_bytes() != b"0") {
        return Err(ErrorCode::HttpRequestBodySize(Some(0)));
    }
    let method = match req.method {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Connect => http::Method::CONNECT,
        Method::Options => http::Method::OPTIONS,
        Method::Trace => http::Method::TRACE,
        Method::Patch => http::Method::PATCH,
        Method::Other(m) => http::Method::from_bytes(m.as_bytes())
            .map_err(|_| ErrorCode::HttpRequestMethodInvalid)?,
    };
    let scheme = match req.scheme {
        Some(Scheme::Http) => http::uri::Scheme::HTTP,
        Some(Scheme::Https) => http::uri::Scheme::HTTPS,
        Some(Scheme::Other(s)) => {
            http::uri::Scheme::try_from(s.as_str()).map_err(|_| ErrorCode::HttpProtocolError)?
        }
        None => hooks.default_scheme().ok_or(ErrorCode::HttpProtocolError)?,
    };
    if !hooks.is_supported_scheme(&scheme) {
        return Err(ErrorCode::HttpProtocolError);
    }
    let authority = req.authority.unwrap_or_default();
    let mut uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority.as_str());
    if let Some(path) = req.path_with_query {
        uri = uri.path_and_query(path);
    }
    let uri = uri
        .build()
        .map_err(wasmtime_wasi_http::p2::http_request_error)?;
    let mut headers = http::HeaderMap::new();
    if hooks.set_host_header() {
        let host = http::HeaderValue::try_from(authority.as_str())
            .map_err(|_| ErrorCode::HttpRequestUriInvalid)?;
        headers.append(http::header::HOST, host);
    }
    // A header's further values come without its name.
    let mut name = None;
    for (next, value) in http::HeaderMap::from(req.headers) {
        name = next.or(name);
        if let Some(name) = &name {
            headers.append(name, value);
        }
    }
    let body = Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::network::Network;
    use crate::host::route::Route;
    use wasmtime_wasi_http::FieldMap;

    fn request(headers: &[(&str, &str)]) -> (HostOutgoingRequest, RouteHooks) {
        let mut hooks = RouteHooks::new(Route::Network, Network::new());
        let mut fields = FieldMap::new_mutable(64 * 1024);
        for (k, v) in headers {
            fields
                .append(&mut hooks, k.to_string(), v.as_bytes().to_vec())
                .unwrap();
        }
        let req = HostOutgoingRequest {
            method: Method::Get,
            scheme: Some(Scheme::Http),
            authority: Some("127.0.0.1:8080".into()),
            path_with_query: Some("/api/data/v9.2/accounts?$top=1".into()),
            headers: fields,
            body: None,
        };
        (req, hooks)
    }

    #[test]
    fn a_bodiless_request_keeps_method_uri_host_and_every_header_value() {
        let (req, mut hooks) =
            request(&[("Accept", "application/json"), ("x-a", "1"), ("x-a", "2")]);
        let http = to_http(req, &mut hooks).unwrap();
        assert_eq!(http.method(), http::Method::GET);
        assert_eq!(
            http.uri().to_string(),
            "http://127.0.0.1:8080/api/data/v9.2/accounts?$top=1"
        );
        let h = http.headers();
        assert_eq!(h["host"], "127.0.0.1:8080");
        assert_eq!(h["accept"], "application/json");
        let xa: Vec<_> = h.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
    }

    #[test]
    fn a_declared_length_without_a_body_is_refused_as_wasi_http_does() {
        let (req, mut hooks) = request(&[("Content-Length", "5")]);
        assert!(matches!(
            to_http(req, &mut hooks),
            Err(ErrorCode::HttpRequestBodySize(Some(0)))
        ));
        let (req, mut hooks) = request(&[("Content-Length", "0")]);
        assert!(to_http(req, &mut hooks).is_ok());
    }
}
