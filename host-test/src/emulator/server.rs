//! The emulator as a loopback HTTP/1.1 server, for clients other than the
//! in-process route (the CLI's `d365 emulator`, Node, benchmarks).

use super::Emulator;
use super::faults::{self, BrokenBody};
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;

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
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let emulator = emulator.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = match body.collect().await {
                            Ok(b) => b.to_bytes(),
                            Err(_) => Bytes::new(),
                        };
                        let response = emulator
                            .handle(http::Request::from_parts(parts, body))
                            .await;
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
                            return Ok::<_, Infallible>(http::Response::from_parts(
                                parts,
                                Either::Right(broken),
                            ));
                        }
                        Ok::<_, Infallible>(response.map(|b| Either::Left(Full::new(b))))
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
