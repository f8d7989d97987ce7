//! The host's cap on one response body (see [`super::HostLimits`]): past it
//! the body stream fails with wasi:http's `HTTP-response-body-size`, so a
//! server streaming gigabytes cannot exhaust the host however long the guest
//! keeps reading.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use wasmtime_wasi_http::{Error, WasiBody};

/// `body`, failing once more than `cap` bytes have passed.
pub fn capped<B>(body: B, cap: u64) -> WasiBody
where
    B: Body<Data = Bytes, Error = Error> + Send + Unpin + 'static,
{
    Capped {
        inner: body,
        cap,
        seen: 0,
        failed: false,
    }
    .boxed_unsync()
}

struct Capped<B> {
    inner: B,
    cap: u64,
    seen: u64,
    failed: bool,
}

impl<B> Body for Capped<B>
where
    B: Body<Data = Bytes, Error = Error> + Unpin,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            this.seen = this.seen.saturating_add(data.len() as u64);
            if this.seen > this.cap {
                this.failed = true;
                return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(this.seen)))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn small_bodies_pass_and_big_ones_fail() {
        let ok = capped(
            Full::new(Bytes::from_static(b"0123456789")).map_err(|n| match n {}),
            10,
        );
        assert_eq!(ok.collect().await.unwrap().to_bytes().len(), 10);
        let big = capped(
            Full::new(Bytes::from_static(b"0123456789")).map_err(|n| match n {}),
            9,
        );
        match big.collect().await {
            Err(Error::HttpResponseBodySize(Some(10))) => {}
            other => panic!("{:?}", other.map(|c| c.to_bytes())),
        }
    }
}
