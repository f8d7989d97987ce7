//! The network route's HTTP client: keep-alive HTTP/1.1 connections (TLS for
//! `https`), pooled per host and shared by every call.
//!
//! wasi-http's `default_send_request` opens a TCP connection (and a TLS
//! session) per request. A platform runs thousands of short calls — each a
//! fresh store — against the same org, so the handshakes would be most of a
//! `getEntity`'s cost. The pool lives in the [`super::ConnectorHost`], not in
//! the component: the component stays stateless between calls.
//!
//! Pooling, stale-connection detection and the retry of a request that never
//! left on a connection the server had closed are hyper-util's legacy client;
//! this module adds the connector (TCP + rustls with the webpki roots, as
//! wasi-http's default does) and wasi-http's per-request timeouts.

use bytes::Bytes;
use http::Uri;
use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// Idle pooled connections are closed after this long (Dataverse's front
/// end keeps idle connections for minutes; a shorter idle time avoids
/// reusing one the server is about to drop).
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// wasi-http's default when the guest sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// One pooled client per host (cheap to clone: an `Arc` inside).
#[derive(Clone)]
pub struct Network {
    client: Client<Connector, WasiBody>,
}

impl Default for Network {
    fn default() -> Self {
        Self::new()
    }
}

impl Network {
    pub fn new() -> Self {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = Connector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector);
        Network { client }
    }

    /// Sends one request on a pooled connection. The response body keeps
    /// wasi-http's between-bytes timeout; the connection goes back to the
    /// pool when the body has been read to its end.
    pub async fn send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<TimedBody>, Error> {
        if request.uri().authority().is_none() {
            return Err(Error::HttpRequestUriInvalid);
        }
        // The guest sets connect and first-byte timeouts alike; one deadline
        // covers connecting (when no pooled connection is free) and the head.
        let first_byte = options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(DEFAULT_TIMEOUT);
        let between_bytes = options
            .and_then(|o| o.between_bytes_timeout)
            .unwrap_or(DEFAULT_TIMEOUT)
            .max(Duration::from_nanos(1));
        let response = tokio::time::timeout(first_byte, self.client.request(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(client_error)?;
        Ok(response.map(|incoming| TimedBody::new(incoming, between_bytes)))
    }
}

/// Maps hyper-util's error onto wasi-http's, keeping the distinction the
/// connector's retry policy needs: a connect failure sent nothing.
fn client_error(e: hyper_util::client::legacy::Error) -> Error {
    let mut source = std::error::Error::source(&e);
    if e.is_connect() {
        // wasi-http classifies connect failures by the io::Error's kind and
        // text (e.g. DNS: "failed to lookup address information"), so the
        // connector's own error is passed on as it was.
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<io::Error>() {
                return Error::Connect(io::Error::new(io.kind(), io.to_string()));
            }
            source = s.source();
        }
        return Error::Connect(io::Error::other(e.to_string()));
    }
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return Error::ConnectionReadTimeout;
            }
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return Error::ConnectionTerminated;
            }
            return Error::HttpProtocolError;
        }
        if s.downcast_ref::<io::Error>().is_some() {
            return Error::ConnectionTerminated;
        }
        source = s.source();
    }
    Error::InternalError(Some(e.to_string()))
}

/// Opens TCP (and TLS for `https`) connections for the pool.
#[derive(Clone)]
struct Connector {
    tls: tokio_rustls::TlsConnector,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let https = uri.scheme() == Some(&Scheme::HTTPS);
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URI without host"))?;
            // `[::1]` in a URI is `::1` to connect to and to verify.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            if !https {
                return Ok(TokioIo::new(Stream::Plain(tcp)));
            }
            let name = rustls::pki_types::ServerName::try_from(host)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tls = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(Stream::Tls(Box::new(tls))))
        })
    }
}

/// A pooled connection's transport.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A response body that fails when the server sends nothing for
/// `between_bytes` (wasi-http's between-bytes timeout).
pub struct TimedBody {
    incoming: hyper::body::Incoming,
    between_bytes: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl TimedBody {
    fn new(incoming: hyper::body::Incoming, between_bytes: Duration) -> Self {
        TimedBody {
            incoming,
            between_bytes,
            timer: Box::pin(tokio::time::sleep(between_bytes)),
        }
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + this.between_bytes;
                this.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(if e.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(e)
            }))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

impl TimedBody {
    /// As a wasi-http body.
    pub fn boxed(self) -> WasiBody {
        BodyExt::boxed_unsync(self)
    }
}
