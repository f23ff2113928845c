//! A body of `n` bytes sent as slices of one shared buffer, `Content-Length` known: the
//! origin's `/bytes/<n>` (S4, S4w) and the client's upload (S4u). No allocation per slice.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

pub struct Slices {
    remaining: u64,
    chunk: Bytes,
    paced: bool,
    yielded: bool,
}

impl Slices {
    /// `paced`: the body is not ready again until its reader has taken the last slice
    /// and polled once more (a wake-up in between), so each slice leaves as its own
    /// write, as from a server that loops on `write(64 KiB)` (S4w); otherwise every
    /// slice is ready at once and hyper may coalesce them. An empty `chunk` ends the body.
    pub fn new(bytes: u64, chunk: Bytes, paced: bool) -> Slices {
        Slices {
            remaining: if chunk.is_empty() { 0 } else { bytes },
            chunk,
            paced,
            yielded: false,
        }
    }
}

impl Body for Slices {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if self.paced && !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yielded = false;
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
