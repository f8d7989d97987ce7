//! Where a call's outgoing wasi:http requests go.

use super::body_cap;
use super::network::Network;
use crate::emulator::Emulator;
use crate::emulator::faults::{self, BrokenBody, EndlessBody, Reset};
use bytes::Bytes;
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// Chosen per connection: a real org over the network, or the emulator
/// in-process (no socket; works with tokio's paused clock).
#[derive(Clone)]
pub enum Route {
    /// The network: TCP (TLS for https) on the host's pooled keep-alive
    /// connections ([`super::network`]).
    Network,
    /// Every request is answered by this emulator.
    InProcess(Emulator),
}

/// Sees every request a component sends (method and URL), e.g. for the
/// CLI's progress on stderr during a long fetch-all.
pub type Observer = Arc<dyn Fn(&http::Method, &http::Uri) + Send + Sync>;

static OBSERVER: Mutex<Option<Observer>> = Mutex::new(None);

/// Installs (or removes) the process-wide request observer.
pub fn set_observer(observer: Option<Observer>) {
    *OBSERVER.lock().unwrap_or_else(|p| p.into_inner()) = observer;
}

fn observe(method: &http::Method, uri: &http::Uri) {
    let observer = OBSERVER.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(o) = observer {
        o(method, uri);
    }
}

pub struct RouteHooks {
    route: Route,
    /// The host's keep-alive connections, for [`Route::Network`].
    network: Network,
    /// Response bodies longer than this fail (see [`super::HostLimits`]).
    max_response_body: u64,
}

impl RouteHooks {
    pub fn new(route: Route, network: Network) -> Self {
        RouteHooks {
            route,
            network,
            max_response_body: super::HostLimits::default().max_response_body,
        }
    }

    pub fn with_max_response_body(mut self, bytes: u64) -> Self {
        self.max_response_body = bytes;
        self
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for RouteHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<
        dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), wasmtime_wasi_http::Error>>
            + Send,
    > {
        observe(request.method(), request.uri());
        let cap = self.max_response_body;
        match &self.route {
            Route::Network => {
                _ = fut;
                let network = self.network.clone();
                Box::new(async move {
                    let res = network.send(request, options).await?;
                    let res = res.map(|b| body_cap::capped(b.boxed(), cap));
                    // The pool drives the connection; nothing to await here.
                    Ok((res, Box::new(async { Ok(()) }) as IoFuture))
                })
            }
            Route::InProcess(emulator) => {
                let emulator = emulator.clone();
                // As wasi-http's default sender does: wait for the answer at
                // most first-byte-timeout (600 s when the guest sets none).
                let first_byte_timeout = options
                    .and_then(|o| o.first_byte_timeout)
                    .unwrap_or(Duration::from_secs(600));
                Box::new(async move {
                    let (mut parts, body) = request.into_parts();
                    // What hyper puts on the wire: a body the guest streamed
                    // goes chunked unless it declared a length; a request
                    // without one declares nothing (the emulator answers 411
                    // to a POST, PUT or PATCH that declares no length, as
                    // HTTP.sys does).
                    if !body.is_end_stream()
                        && !parts.headers.contains_key(http::header::CONTENT_LENGTH)
                    {
                        parts.headers.insert(
                            http::header::TRANSFER_ENCODING,
                            http::HeaderValue::from_static("chunked"),
                        );
                    }
                    let body = body.collect().await?.to_bytes();
                    let response = tokio::time::timeout(
                        first_byte_timeout,
                        emulator.handle(http::Request::from_parts(parts, body)),
                    )
                    .await
                    .map_err(|_| wasmtime_wasi_http::Error::ConnectionReadTimeout)?;
                    // What wasi-http's default sender reports for the same
                    // failure on a socket: an I/O error while connecting is
                    // `connection-refused`; a connection that dies once the
                    // request is out is a hyper error, `HTTP-protocol-error`.
                    match faults::reset(&response) {
                        Some(Reset::BeforeProcessing) => {
                            return Err(wasmtime_wasi_http::Error::ConnectionRefused);
                        }
                        Some(Reset::AfterProcessing) => {
                            return Err(wasmtime_wasi_http::Error::HttpProtocolError);
                        }
                        None => {}
                    }
                    if let Some(chunk) = faults::endless(&response) {
                        let endless = EndlessBody::new(chunk);
                        let response = response.map(|_| body_cap::capped(endless, cap));
                        return Ok((response, Box::new(async { Ok(()) }) as IoFuture));
                    }
                    if let Some((head, _)) = faults::cut(&response) {
                        let broken =
                            BrokenBody::new(head, wasmtime_wasi_http::Error::ConnectionTerminated);
                        let response = response.map(|_| broken.boxed_unsync());
                        return Ok((response, Box::new(async { Ok(()) }) as IoFuture));
                    }
                    let response = response.map(|b: Bytes| {
                        body_cap::capped(Full::new(b).map_err(|never| match never {}), cap)
                    });
                    Ok((response, Box::new(async { Ok(()) }) as IoFuture))
                })
            }
        }
    }
}
