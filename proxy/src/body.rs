//! Body types shared by the serving and forwarding stages.
//!
//! Owns: the boxed body type, and wrappers that count bytes and report the end
//! of a body. Must never: buffer a whole body.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

/// Error type of every body the proxy passes on.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The one body type of requests and responses the proxy builds.
pub type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `data` in full (refusals, health checks).
pub fn full(data: Bytes) -> BoxBody {
    http_body_util::Full::new(data)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> BoxBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Wraps a body: counts the data bytes that pass, also into `counter` (if
/// any, for a reader elsewhere), and calls `on_end` once with whether the
/// body ended (`false`: dropped before its end) and the count. Size hints
/// pass through so the framing kind is kept. The closure is held in place,
/// not boxed: this wraps a body per request.
pub struct Tracked<B, F: FnOnce(bool, u64)> {
    inner: B,
    seen: u64,
    counter: Option<Arc<AtomicU64>>,
    on_end: Option<F>,
}

/// The `on_end` type of a [`Tracked`] that has none.
pub type NoEnd = fn(bool, u64);

impl<B, F: FnOnce(bool, u64)> Tracked<B, F> {
    pub fn new(inner: B, counter: Option<Arc<AtomicU64>>, on_end: Option<F>) -> Self {
        Tracked {
            inner,
            seen: 0,
            counter,
            on_end,
        }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(f) = self.on_end.take() {
            f(complete, self.seen);
        }
    }
}

impl<B, F: FnOnce(bool, u64)> Drop for Tracked<B, F> {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl<B, F> Body for Tracked<B, F>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    F: FnOnce(bool, u64) + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.seen += d.len() as u64;
                    if let Some(c) = &this.counter {
                        c.fetch_add(d.len() as u64, Ordering::Relaxed);
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(false);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.finish(true);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body that keeps `guard` alive until the body is dropped. Frames, the
/// end of stream and the size hint pass through unchanged, so a response
/// keeps its `Content-Length` (a `map_frame` closure holding the guard
/// would hide the size and turn it into a chunked one).
pub struct Guarded<B, G> {
    inner: B,
    _guard: G,
}

impl<B, G> Guarded<B, G> {
    pub fn new(inner: B, guard: G) -> Self {
        Guarded {
            inner,
            _guard: guard,
        }
    }
}

impl<B, G> Body for Guarded<B, G>
where
    B: Body + Unpin,
    G: Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
