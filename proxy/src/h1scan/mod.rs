//! Raw HTTP/1 request heads, as the client sent them, before hyper sees them.
//!
//! Owns: an IO wrapper around the client side of every HTTP/1 connection (the
//! proxy port, cleartext and `http/1.1` TLS tunnels) that follows the HTTP/1
//! message framing of the bytes hyper reads (head, then a `Content-Length` or
//! chunked body, then the next head) and, per request, queues the raw facts
//! hyper hides: the raw request-target (hyper drops a `#fragment`) and the
//! `Content-Length` values hyper drops when `Transfer-Encoding` is present.
//! A head hyper would reject (bad bytes, malformed line, conflicting lengths,
//! too large) is replaced by a synthetic request whose queued facts carry the
//! refusal, so `serve` answers with the proxy's own refusal, in order, and the
//! connection closes. Head bytes are held back until the head is complete and
//! checked; body bytes pass through as they come.
//! Resting: asked by the serving loop, the wrapper ends hyper's connection at
//! an idle read between two requests (hyper sees the stream end, its
//! shutdown is not passed on), so the loop can drop hyper's buffers while the
//! client is quiet and start a new connection on its next bytes.
//! Files: `tracker.rs` is the framing parser (pure, no IO); this file is the
//! queue, the resting switch and the IO wrapper around the tracker.
//! Must never: judge a request (the policy does, from these facts), buffer more
//! than one head (max `max_head` bytes), panic on client bytes, scan the
//! bytes after a `CONNECT` or `Upgrade` request (they are not HTTP/1), or rest
//! with any byte of a request read and not yet served.

use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use addon_rules::Refusal;
use http::HeaderValue;
use tokio::io::{AsyncRead, ReadBuf};

use crate::limits::SCAN_KEEP_CAPACITY;

mod tracker;

use tracker::State;
pub use tracker::{First, Step, Tracker, first};

/// How much a resting connection reads at once when the client wakes it.
const WAKE_READ: usize = 4096;
/// What hyper receives in place of a head it would reject.
const SYNTHETIC_HEAD: &[u8] = b"GET / HTTP/1.1\r\nhost: egress-proxy.invalid\r\n\r\n";

/// The raw facts of one request head, in the order hyper will serve them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHead {
    /// The method as sent (a standard method is stored without allocating).
    pub method: http::Method,
    /// The request-target exactly as sent (fragment included).
    pub target: String,
    /// The `Content-Length` values, only when `Transfer-Encoding` is present
    /// too (hyper drops them; the policy must see the conflict).
    pub dropped_content_length: Vec<HeaderValue>,
    /// The bytes after this request are not HTTP/1 (`CONNECT`, `Upgrade`).
    pub ends_http: bool,
    /// The head was malformed (400 or 431 `bad-request`); hyper got a
    /// synthetic request.
    pub refusal: Option<Refusal>,
}

/// The per-connection queue of raw heads shared with `serve::handle`.
#[derive(Debug, Clone, Default)]
pub struct RawHeads(Arc<Mutex<VecDeque<RawHead>>>);

impl RawHeads {
    /// The facts of the next request hyper serves on this connection.
    pub fn pop(&self) -> Option<RawHead> {
        let mut q = self.0.lock().ok()?;
        let head = q.pop_front();
        // No head follows a CONNECT or an Upgrade: free the queue's room (the
        // proxy port's connection lives as long as its tunnel, S6).
        if head.as_ref().is_some_and(|h| h.ends_http) {
            q.shrink_to_fit();
        }
        head
    }
    /// Frees the queue's room once it is empty (a resting connection).
    fn shrink(&self) {
        if let Ok(mut q) = self.0.lock()
            && q.is_empty()
        {
            q.shrink_to_fit();
        }
    }
    fn push(&self, head: RawHead) {
        if let Ok(mut q) = self.0.lock() {
            q.push_back(head);
        }
    }
}

/// Whether a served connection is resting, shared by the serving loop (which
/// asks) and the wrapper hyper reads through (which rests).
#[derive(Debug, Clone, Default)]
pub struct Rest(Arc<AtomicU8>);

const SERVING: u8 = 0;
const ASKED: u8 = 1;
const RESTING: u8 = 2;

impl Rest {
    /// Asks the wrapper to end hyper's connection at its next read that
    /// finds nothing to read between two requests.
    pub fn ask(&self) {
        let _ = self
            .0
            .compare_exchange(SERVING, ASKED, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// hyper's connection ended because the wrapper rested it.
    pub fn is_resting(&self) -> bool {
        self.0.load(Ordering::Relaxed) == RESTING
    }

    /// Back to serving: the wrapper passes reads and shutdowns on again.
    pub fn serve(&self) {
        self.0.store(SERVING, Ordering::Relaxed);
    }

    /// The client sent bytes: an ask made while it was quiet is void. (Runs
    /// on every read: a plain load unless there is an ask to void.)
    fn withdraw(&self) {
        if self.0.load(Ordering::Relaxed) == ASKED {
            let _ = self
                .0
                .compare_exchange(ASKED, SERVING, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Rests if asked to.
    fn begin(&self) -> bool {
        self.0
            .compare_exchange(ASKED, RESTING, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}
/// The IO wrapper: hyper reads through it, the tracker sees every byte.
pub struct H1Scan<S> {
    inner: S,
    tracker: Tracker,
    /// Bytes cleared for hyper, not yet handed over.
    ready: Vec<u8>,
    ready_pos: usize,
    /// Bytes read from `inner` that the tracker has not seen yet.
    raw: Vec<u8>,
    rest: Rest,
    /// hyper wrote since its last completed flush: it may hold bytes of a
    /// response not yet written, so the connection must not rest.
    unflushed: bool,
}

impl<S> H1Scan<S> {
    /// Wraps `inner`; heads go to the returned queue.
    pub fn new(inner: S, max_head: usize) -> (Self, RawHeads) {
        let heads = RawHeads::default();
        let scan = H1Scan {
            inner,
            tracker: Tracker::new(max_head, heads.clone()),
            ready: Vec::new(),
            ready_pos: 0,
            raw: Vec::new(),
            rest: Rest::default(),
            unflushed: false,
        };
        (scan, heads)
    }

    /// The handle the serving loop asks this wrapper to rest with.
    pub fn rest(&self) -> Rest {
        self.rest.clone()
    }

    /// Puts bytes hyper had read and not used back in front of the rest
    /// (they were scanned already).
    pub fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut ready = Vec::with_capacity(bytes.len() + self.ready.len() - self.ready_pos);
        ready.extend_from_slice(bytes);
        ready.extend_from_slice(&self.ready[self.ready_pos..]);
        self.ready = ready;
        self.ready_pos = 0;
    }

    /// Frees the buffers that hold nothing (while resting).
    pub fn shed(&mut self) {
        if self.raw.is_empty() {
            self.raw = Vec::new();
        }
        if self.ready_pos >= self.ready.len() {
            self.ready = Vec::new();
            self.ready_pos = 0;
        }
        if self.tracker.head.is_empty() {
            self.tracker.head = Vec::new();
        }
        self.tracker.heads.shrink();
    }

    /// While resting: waits for the client's next bytes and keeps them for
    /// the next reader (nothing is handed over), then serves again.
    /// `false`: the stream ended.
    pub fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>>
    where
        S: AsyncRead + Unpin,
    {
        if self.raw.is_empty() && self.ready_pos >= self.ready.len() {
            let mut chunk = [MaybeUninit::<u8>::uninit(); WAKE_READ];
            let mut buf = ReadBuf::uninit(&mut chunk);
            std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                return Poll::Ready(Ok(false));
            }
            self.raw.extend_from_slice(buf.filled());
        }
        self.rest.serve();
        Poll::Ready(Ok(true))
    }

    /// Runs the tracker over `self.raw`, moving what is cleared to `ready`.
    fn digest(&mut self) {
        while !self.raw.is_empty() && self.ready_pos >= self.ready.len() {
            self.ready.clear();
            self.ready_pos = 0;
            match self.tracker.step(&self.raw) {
                Step::Pass(0) => {
                    self.raw = Vec::new();
                }
                Step::Pass(n) => {
                    self.ready.extend_from_slice(&self.raw[..n]);
                    self.raw.drain(..n);
                }
                Step::Held(n) => {
                    self.raw.drain(..n);
                }
                Step::Head { used, bytes } => {
                    self.ready = bytes;
                    self.raw.drain(..used);
                }
                Step::Refused { bytes } => {
                    self.ready = bytes.to_vec();
                    self.raw = Vec::new();
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for H1Scan<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        // Bounded: every pass either hands bytes over, returns, or makes the
        // tracker consume input (the raw buffer shrinks or a read happens).
        loop {
            if this.ready_pos < this.ready.len() {
                let rest = &this.ready[this.ready_pos..];
                let n = rest.len().min(buf.remaining());
                buf.put_slice(&rest[..n]);
                this.ready_pos += n;
                return Poll::Ready(Ok(()));
            }
            match this.tracker.state {
                // hyper answers the synthetic request with `Connection:
                // close`; nothing after the refused head is read.
                State::Refused => return Poll::Pending,
                State::Off if this.raw.is_empty() => {
                    return Pin::new(&mut this.inner).poll_read(cx, buf);
                }
                _ => {}
            }
            if !this.raw.is_empty() {
                this.digest();
                continue;
            }
            // Idle keep-alive connections must not keep a large read's buffers.
            if this.raw.capacity() > SCAN_KEEP_CAPACITY {
                this.raw = Vec::new();
            }
            if this.ready.capacity() > SCAN_KEEP_CAPACITY {
                this.ready = Vec::new();
                this.ready_pos = 0;
            }
            let before = buf.filled().len();
            let read = Pin::new(&mut this.inner).poll_read(cx, buf);
            if read.is_pending() {
                // Nothing to read between two requests: if asked, hyper sees
                // the stream end and closes its side, idle.
                if !this.unflushed && this.tracker.at_boundary() && this.rest.begin() {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Pending;
            }
            std::task::ready!(read)?;
            let n = buf.filled().len() - before;
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            this.rest.withdraw();
            if matches!(this.tracker.state, State::Fixed(_) | State::Chunked(..)) {
                // Body bytes go to hyper in place; only what follows the end
                // of the body is kept back for the tracker.
                let Step::Pass(used) = this.tracker.step(&buf.filled()[before..]) else {
                    continue;
                };
                if used < n {
                    this.raw.extend_from_slice(&buf.filled()[before + used..]);
                    buf.set_filled(before + used);
                }
                if used > 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.raw.extend_from_slice(&buf.filled()[before..]);
            buf.set_filled(before);
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for H1Scan<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.unflushed = true;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.unflushed = false;
        }
        flushed
    }
    /// A rested connection's close stays here: the stream serves on.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.rest.is_resting() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.unflushed = true;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests;
