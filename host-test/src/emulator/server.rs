//! The emulator as a loopback HTTP/1.1 server, for clients other than the
//! in-process route (the CLI's `d365 emulator`, Node, benchmarks).

use super::Emulator;
use super::faults::{self, BrokenBody};
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A running server; dropping the handle does not stop it (see [`Server::shutdown`]).
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn shutdown(self) {
        self.task.abort();
    }

    /// Runs until the task is aborted or fails.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Serves `emulator` on 127.0.0.1:`port` (0 picks a free port).
pub async fn serve(emulator: Emulator, port: u16) -> std::io::Result<Server> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let emulator = emulator.clone();
            let reset = Arc::new(AtomicBool::new(false));
            let stream = ResettableStream {
                inner: stream,
                reset: reset.clone(),
            };
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let emulator = emulator.clone();
                    let reset = reset.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = match body.collect().await {
                            Ok(b) => b.to_bytes(),
                            Err(_) => Bytes::new(),
                        };
                        let response = emulator
                            .handle(http::Request::from_parts(parts, body))
                            .await;
                        // A reset: no answer; failing the service makes
                        // hyper drop the connection, and the stream's drop
                        // turns the close into a TCP RST. Over a socket the
                        // request was already written, so a client sees a
                        // broken connection either way: only the in-process
                        // route can report a reset before sending as the
                        // failed connect it stands for.
                        if faults::reset(&response).is_some() {
                            reset.store(true, Ordering::SeqCst);
                            return Err(ResetFault);
                        }
                        // A cut body: announce the full length, send half, fail
                        // (hyper then closes the connection).
                        if let Some((head, full_len)) = faults::cut(&response) {
                            let (mut parts, _) = response.into_parts();
                            parts.headers.insert(
                                http::header::CONTENT_LENGTH,
                                http::HeaderValue::from(full_len),
                            );
                            let broken = BrokenBody::new(
                                head,
                                std::io::Error::new(
                                    std::io::ErrorKind::ConnectionAborted,
                                    "fault: connection closed mid-body",
                                ),
                            );
                            return Ok(http::Response::from_parts(parts, Either::Right(broken)));
                        }
                        Ok(response.map(|b| Either::Left(Full::new(b))))
                    }
                });
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Server { addr, task })
}

/// The service's error for an injected reset (hyper then closes the
/// connection without answering).
#[derive(Debug)]
struct ResetFault;

impl std::fmt::Display for ResetFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault: connection reset")
    }
}

impl std::error::Error for ResetFault {}

/// A connection that closes with a TCP RST instead of a FIN once `reset`
/// is set (zero linger on drop).
struct ResettableStream {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
