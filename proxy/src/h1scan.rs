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

use addon_rules::{Reason, Refusal};
use http::{HeaderValue, StatusCode};
use tokio::io::{AsyncRead, ReadBuf};

use crate::limits::{MAX_CHUNK_EXTENSIONS, MAX_CONNECT_TARGET, MAX_HEADERS, SCAN_KEEP_CAPACITY};

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

/// Chunked body states, as hyper's decoder follows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size(u64),
    Lws(u64),
    Ext(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a head (its bytes are held back).
    Head,
    /// A `Content-Length` body with this many bytes left (never 0).
    Fixed(u64),
    /// A chunked body; the count is of chunk extension bytes so far.
    Chunked(Chunk, u64),
    /// Not HTTP/1 any more (after CONNECT/Upgrade, or a broken chunked body
    /// hyper fails on): bytes pass, no more heads are queued.
    Off,
    /// A refused head was replaced; nothing more is read.
    Refused,
}

/// What one step of the tracker produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// `n` input bytes may go to hyper as they are (body or scanning off).
    Pass(usize),
    /// `n` input bytes were taken into the held-back head.
    Held(usize),
    /// `n` input bytes completed a head: hand `bytes` (the whole head) to
    /// hyper; the facts were queued.
    Head { used: usize, bytes: Vec<u8> },
    /// The head is refused: hand `bytes` (a synthetic head) to hyper, then
    /// nothing more.
    Refused { bytes: &'static [u8] },
}

/// The HTTP/1 request framing tracker (pure; no IO).
#[derive(Debug)]
pub struct Tracker {
    state: State,
    head: Vec<u8>,
    /// Where the search for the end of the head resumes.
    searched: usize,
    max_head: usize,
    heads: RawHeads,
    /// No head completed yet (an h2 prior-knowledge preface may come).
    first: bool,
}

impl Tracker {
    pub fn new(max_head: usize, heads: RawHeads) -> Self {
        Tracker {
            state: State::Head,
            head: Vec::new(),
            searched: 0,
            max_head,
            heads,
            first: true,
        }
    }

    /// Between two requests, with no byte of the next head seen.
    fn at_boundary(&self) -> bool {
        self.state == State::Head && self.head.is_empty()
    }

    /// Consumes a prefix of `input` (at least one byte when `input` is not
    /// empty, unless refused).
    pub fn step(&mut self, input: &[u8]) -> Step {
        match self.state {
            State::Refused => Step::Pass(0),
            State::Off => Step::Pass(input.len()),
            State::Fixed(left) => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::Head
                } else {
                    State::Fixed(left)
                };
                Step::Pass(n)
            }
            State::Chunked(..) => Step::Pass(self.chunked(input)),
            State::Head => self.head_step(input),
        }
    }

    /// Follows a chunked body over `input`; returns the bytes it covers.
    fn chunked(&mut self, input: &[u8]) -> usize {
        let mut i = 0;
        while i < input.len() {
            let State::Chunked(chunk, ext) = self.state else {
                return i;
            };
            if let Chunk::Data(left) = chunk {
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                let left = left - n as u64;
                i += n;
                let next = if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left)
                };
                self.state = State::Chunked(next, ext);
                continue;
            }
            let b = input[i];
            i += 1;
            let next = match (chunk, b) {
                (Chunk::Start, _) => addon_rules::hex_digit(b).map(|d| Chunk::Size(u64::from(d))),
                (Chunk::Size(n), b'\t' | b' ') => Some(Chunk::Lws(n)),
                (Chunk::Size(n) | Chunk::Lws(n), b';') => Some(Chunk::Ext(n)),
                (Chunk::Size(n) | Chunk::Lws(n) | Chunk::Ext(n), b'\r') => Some(Chunk::SizeLf(n)),
                (Chunk::Size(n), _) => addon_rules::hex_digit(b).and_then(|d| {
                    n.checked_mul(16)
                        .and_then(|n| n.checked_add(u64::from(d)))
                        .map(Chunk::Size)
                }),
                (Chunk::Lws(n), b'\t' | b' ') => Some(Chunk::Lws(n)),
                (Chunk::Lws(_), _) => None,
                (Chunk::Ext(_), b'\n') => None,
                (Chunk::Ext(n), _) => {
                    if ext + 1 >= MAX_CHUNK_EXTENSIONS {
                        None
                    } else {
                        self.state = State::Chunked(Chunk::Ext(n), ext + 1);
                        continue;
                    }
                }
                (Chunk::SizeLf(0), b'\n') => Some(Chunk::EndCr),
                (Chunk::SizeLf(n), b'\n') => Some(Chunk::Data(n)),
                (Chunk::SizeLf(_), _) => None,
                (Chunk::DataCr, b'\r') => Some(Chunk::DataLf),
                (Chunk::DataLf, b'\n') => Some(Chunk::Start),
                (Chunk::DataCr | Chunk::DataLf, _) => None,
                (Chunk::Trailer, b'\r') => Some(Chunk::TrailerLf),
                (Chunk::Trailer, _) => Some(Chunk::Trailer),
                (Chunk::TrailerLf, b'\n') => Some(Chunk::EndCr),
                (Chunk::TrailerLf, _) => None,
                (Chunk::EndCr, b'\r') => Some(Chunk::EndLf),
                (Chunk::EndCr, _) => Some(Chunk::Trailer),
                (Chunk::EndLf, b'\n') => {
                    self.state = State::Head;
                    return i;
                }
                (Chunk::EndLf, _) => None,
                (Chunk::Data(_), _) => None,
            };
            match next {
                Some(c) => self.state = State::Chunked(c, ext),
                None => {
                    // hyper fails the body here and the connection ends; no
                    // further head can be trusted.
                    self.state = State::Off;
                    return input.len();
                }
            }
        }
        i
    }

    fn head_step(&mut self, input: &[u8]) -> Step {
        let mut skip = 0;
        if self.head.is_empty() {
            // Empty lines before a request are ignored (RFC 9112 §2.2), as
            // hyper does; dropping them keeps the held-back head small.
            skip = input
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            if skip == input.len() {
                return Step::Held(skip);
            }
        }
        let room = (self.max_head + 1).saturating_sub(self.head.len());
        let take = (input.len() - skip).min(room);
        let from = self.searched;
        self.head.extend_from_slice(&input[skip..skip + take]);
        let Some(end) = head_end(&self.head, from) else {
            self.searched = self.head.len().saturating_sub(2);
            // A CONNECT line is bounded at 8 KiB (400), well before the head
            // limit (431): decide as soon as the line is surely too long.
            // The margin covers "CONNECT " and " HTTP/1.1\r".
            let line_limit = MAX_CONNECT_TARGET + 32;
            if self.head.starts_with(b"CONNECT ")
                && self.head.len() > line_limit
                && memchr_nl(&self.head[..line_limit]).is_none()
            {
                return self.refuse(StatusCode::BAD_REQUEST, "CONNECT line longer than 8 KiB");
            }
            if self.head.len() > self.max_head {
                return self.refuse(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head larger than 64 KiB",
                );
            }
            return Step::Held(skip + take);
        };
        if end > self.max_head {
            return self.refuse(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head larger than 64 KiB",
            );
        }
        let extra = self.head.len() - end;
        self.head.truncate(end);
        let used = skip + take - extra;
        match self.parse() {
            Ok(facts) => {
                let bytes = std::mem::take(&mut self.head);
                self.searched = 0;
                if let Some(facts) = facts {
                    self.heads.push(facts);
                }
                Step::Head { used, bytes }
            }
            Err(why) => self.refuse(StatusCode::BAD_REQUEST, why),
        }
    }

    fn refuse(&mut self, status: StatusCode, why: &'static str) -> Step {
        self.heads.push(RawHead {
            method: http::Method::default(),
            target: String::new(),
            dropped_content_length: Vec::new(),
            ends_http: true,
            refusal: Some(Refusal::with_status(Reason::BadRequest, status, why)),
        });
        self.head = Vec::new();
        self.state = State::Refused;
        Step::Refused {
            bytes: SYNTHETIC_HEAD,
        }
    }

    /// Parses the complete head in `self.head` the way hyper does and sets the
    /// body state. `Ok(None)`: an h2 preface (nothing queued, scanning stops).
    fn parse(&mut self) -> Result<Option<RawHead>, &'static str> {
        if std::mem::take(&mut self.first) && self.head == b"PRI * HTTP/2.0\r\n\r\n" {
            // hyper's auto builder serves h2 (no ALPN, prior knowledge).
            self.state = State::Off;
            return Ok(None);
        }
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        match httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, &self.head, &mut slots)
        {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err("malformed request head"),
            Err(httparse::Error::TooManyHeaders) => return Err("more than 100 request headers"),
            Err(httparse::Error::Token) if req.method.is_none() => {
                return Err("malformed request method");
            }
            Err(httparse::Error::Token) => {
                return Err(
                    "the request target holds bytes that are not allowed (raw non-ASCII or control characters)",
                );
            }
            Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
                return Err("malformed request header line");
            }
            Err(_) => return Err("malformed request line"),
        }
        let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version)
        else {
            return Err("malformed request line");
        };
        if http::Uri::try_from(target).is_err() {
            return Err("the request target is not a valid URI");
        }
        let http11 = version == 1;
        let mut te = false;
        let mut te_chunked = false;
        let mut cl: Option<u64> = None;
        let mut cl_values = Vec::new();
        let mut upgrade = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if !http11 {
                    return Err("Transfer-Encoding is only allowed on HTTP/1.1 requests");
                }
                te = true;
                te_chunked = last_is_chunked(h.value);
            } else if h.name.eq_ignore_ascii_case("content-length") {
                if let Ok(v) = HeaderValue::from_bytes(h.value) {
                    cl_values.push(v);
                }
                if te {
                    continue;
                }
                let n = content_length(h.value).ok_or("invalid Content-Length")?;
                if cl.is_some_and(|prev| prev != n) {
                    return Err("conflicting Content-Length values");
                }
                cl = Some(n);
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = http11;
            }
        }
        if te && !te_chunked {
            return Err("Transfer-Encoding must end with chunked");
        }
        let connect = method == "CONNECT";
        self.state = if connect || upgrade {
            State::Off
        } else if te {
            State::Chunked(Chunk::Start, 0)
        } else {
            match cl {
                Some(n) if n > 0 => State::Fixed(n),
                _ => State::Head,
            }
        };
        let method =
            http::Method::from_bytes(method.as_bytes()).map_err(|_| "malformed request method")?;
        Ok(Some(RawHead {
            method,
            target: target.to_owned(),
            dropped_content_length: if te { cl_values } else { Vec::new() },
            ends_http: connect || upgrade,
            refusal: None,
        }))
    }
}

/// hyper's rule: the last comma-separated token of the (last) header is
/// `chunked`.
fn last_is_chunked(value: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(value) else {
        return false;
    };
    s.rsplit(',')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"))
}

/// hyper's rule: one decimal number per header line, no sign, no list
/// (`Content-Length: 3, 3` is refused by hyper, so by the proxy too), below
/// hyper's ceiling of `u64::MAX - 2`.
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    (n <= u64::MAX - 2).then_some(n)
}

/// The end of the head (after its empty line), searching from `from`:
/// `\n\r\n` or `\n\n`, as httparse accepts both line ends.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        let nl = i + memchr_nl(&buf[i..])?;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            Some(b'\r') if nl + 2 >= buf.len() => return None,
            None => return None,
            _ => {}
        }
        i = nl + 1;
    }
    None
}

fn memchr_nl(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
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
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use proptest::prelude::*;
    use tokio::io::AsyncReadExt;

    /// A reader that returns its chunks one read at a time, then EOF.
    struct Chunks(VecDeque<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(mut c) = self.0.pop_front() {
                let n = c.len().min(buf.remaining());
                buf.put_slice(&c[..n]);
                if n < c.len() {
                    self.0.push_front(c.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    /// What hyper would read through the wrapper, and the queued heads. A
    /// refused connection stops (the wrapper stays pending).
    fn drain(chunks: Vec<Vec<u8>>, max: usize, bufsize: usize) -> (Vec<u8>, Vec<RawHead>) {
        let chunks = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let (mut scan, heads) = H1Scan::new(Chunks(chunks), max);
        let mut out = Vec::new();
        let mut buf = vec![0u8; bufsize];
        for _ in 0..1_000_000 {
            match scan.read(&mut buf).now_or_never() {
                Some(Ok(0)) | None => break,
                Some(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Some(Err(e)) => panic!("read failed: {e}"),
            }
        }
        let mut queued = Vec::new();
        while let Some(h) = heads.pop() {
            queued.push(h);
        }
        (out, queued)
    }

    fn targets(heads: &[RawHead]) -> Vec<&str> {
        heads.iter().map(|h| h.target.as_str()).collect()
    }

    const PIPELINE: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
POST /b?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nGET /\
POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
3;ext=\"x\"\r\nabc\r\nA \r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n\
GET http://h/d#frag HTTP/1.1\nHost: h\n\n";

    #[test]
    fn heads_split_at_every_offset_are_found() {
        for bufsize in [1, 7, 8192] {
            for k in 0..=PIPELINE.len() {
                let (out, heads) = drain(
                    vec![PIPELINE[..k].to_vec(), PIPELINE[k..].to_vec()],
                    64 * 1024,
                    bufsize,
                );
                assert_eq!(out, PIPELINE, "split at {k}, buffer {bufsize}");
                assert_eq!(
                    targets(&heads),
                    ["/a", "/b?q=1", "/c", "http://h/d#frag"],
                    "split at {k}"
                );
                assert!(heads.iter().all(|h| h.refusal.is_none() && !h.ends_http));
            }
        }
    }

    #[test]
    fn byte_at_a_time_pipeline_is_found() {
        let chunks = PIPELINE.iter().map(|b| vec![*b]).collect();
        let (out, heads) = drain(chunks, 64 * 1024, 3);
        assert_eq!(out, PIPELINE);
        assert_eq!(heads.len(), 4);
        assert_eq!(heads[1].method, "POST");
    }

    #[test]
    fn content_length_next_to_transfer_encoding_is_kept_for_the_policy() {
        for req in [
            &b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                [..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\t\r\nContent-Length: 3\r\n\r\nabc",
        ] {
            let (_, heads) = drain(vec![req.to_vec()], 64 * 1024, 8192);
            assert_eq!(heads[0].dropped_content_length.len(), 1, "{req:?}");
            assert!(heads[0].refusal.is_none());
        }
        let (_, heads) = drain(
            vec![b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".to_vec()],
            64 * 1024,
            8192,
        );
        assert!(heads[0].dropped_content_length.is_empty());
    }

    #[test]
    fn heads_hyper_would_reject_are_refused_by_the_proxy() {
        let cases: [(&[u8], u16); 9] = [
            (
                "CONNECT b\u{fc}cher.example:443 HTTP/1.1\r\n\r\n".as_bytes(),
                400,
            ),
            (
                "GET http://b\u{fc}cher.example/ HTTP/1.1\r\n\r\n".as_bytes(),
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
                400,
            ),
            (b"GET / HTTP/1.1\r\nContent-Length: 3, 40\r\n\r\nabc", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
            (b"GET / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", 400),
            (
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
                400,
            ),
        ];
        for (req, status) in cases {
            let (out, heads) = drain(
                vec![req.to_vec(), b"GET / HTTP/1.1\r\n\r\n".to_vec()],
                64 * 1024,
                8192,
            );
            assert_eq!(out, SYNTHETIC_HEAD, "{:?}", String::from_utf8_lossy(req));
            assert_eq!(heads.len(), 1);
            assert_eq!(
                heads[0].refusal.as_ref().map(|r| r.status.as_u16()),
                Some(status)
            );
        }
    }

    #[test]
    fn a_connect_line_over_8_kib_is_400_before_the_head_limit() {
        let mut req = b"CONNECT ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 1024 * 1024));
        let (out, heads) = drain(vec![req], 64 * 1024, 8192);
        assert_eq!(out, SYNTHETIC_HEAD);
        assert_eq!(
            heads[0].refusal.as_ref().map(|r| r.status.as_u16()),
            Some(400)
        );
        // A long GET line is only bounded by the head limit.
        let mut req = b"GET /".to_vec();
        req.extend(std::iter::repeat_n(b'a', 20 * 1024));
        req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        let (out, heads) = drain(vec![req.clone()], 64 * 1024, 8192);
        assert_eq!(out, req);
        assert!(heads[0].refusal.is_none());
    }

    #[test]
    fn a_head_over_the_limit_is_431_and_held_back() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..100 {
            req.extend_from_slice(b"X-Filler: 0123456789\r\n");
        }
        let (out, heads) = drain(vec![req.clone()], 1024, 8192);
        assert_eq!(out, SYNTHETIC_HEAD);
        assert_eq!(
            heads[0].refusal.as_ref().map(|r| r.status.as_u16()),
            Some(431)
        );
        // A complete head just over the limit too.
        req.extend_from_slice(b"\r\n");
        let (_, heads) = drain(vec![req.clone()], req.len() - 1, 8192);
        assert_eq!(
            heads[0].refusal.as_ref().map(|r| r.status.as_u16()),
            Some(431)
        );
        let (out, heads) = drain(vec![req.clone()], req.len(), 8192);
        assert_eq!(out, req);
        assert!(heads[0].refusal.is_none());
    }

    #[test]
    fn upgrade_and_connect_stop_scanning() {
        let req = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05hello GET /x#y HTTP/1.1\r\n\r\n";
        let (out, heads) = drain(vec![req.to_vec()], 64 * 1024, 8192);
        assert_eq!(out, req);
        assert_eq!(targets(&heads), ["/ws"]);
        assert!(heads[0].ends_http);
        let req = b"CONNECT h:443 HTTP/1.1\r\n\r\n\x16\x03\x01 GET /x HTTP/1.1\r\n\r\n";
        let (out, heads) = drain(vec![req.to_vec()], 64 * 1024, 8192);
        assert_eq!(out, req);
        assert_eq!(targets(&heads), ["h:443"]);
        assert!(heads[0].ends_http);
    }

    #[test]
    fn the_queue_frees_its_room_after_a_connect() {
        let (mut scan, heads) = H1Scan::new(
            Chunks(VecDeque::from([
                b"GET /a HTTP/1.1\r\n\r\nCONNECT h:443 HTTP/1.1\r\n\r\n".to_vec(),
            ])),
            64 * 1024,
        );
        while read_now(&mut scan).is_some_and(|b| !b.is_empty()) {}
        assert_eq!(heads.pop().map(|h| h.target).as_deref(), Some("/a"));
        assert!(
            heads.0.lock().unwrap().capacity() > 0,
            "more heads may come"
        );
        assert_eq!(heads.pop().map(|h| h.target).as_deref(), Some("h:443"));
        assert_eq!(heads.0.lock().unwrap().capacity(), 0, "none can come");
    }

    #[test]
    fn a_broken_chunked_body_stops_queueing_heads() {
        let req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /next HTTP/1.1\r\n\r\n";
        let (out, heads) = drain(vec![req.to_vec()], 64 * 1024, 8192);
        assert_eq!(out, req);
        assert_eq!(targets(&heads), ["/"]);
    }

    #[test]
    fn an_h2_preface_is_passed_through() {
        let req = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
        let (out, heads) = drain(vec![req.to_vec()], 64 * 1024, 8192);
        assert_eq!(out, req);
        assert!(heads.is_empty());
        // Only as the first thing on the connection.
        let req = b"GET / HTTP/1.1\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let (_, heads) = drain(vec![req.to_vec()], 64 * 1024, 8192);
        assert_eq!(heads.len(), 2);
        assert!(heads[1].refusal.is_some());
    }

    #[test]
    fn leading_empty_lines_are_dropped() {
        let (out, heads) = drain(
            vec![b"\r\n\r\n\nGET / HTTP/1.1\r\n\r\n".to_vec()],
            64 * 1024,
            8192,
        );
        assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(targets(&heads), ["/"]);
    }

    /// One valid request: its bytes and its target.
    fn request() -> impl Strategy<Value = (Vec<u8>, String)> {
        let body = prop_oneof![
            Just(None),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Some((
                false,
                vec![b],
                false
            ))),
            (
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..20), 0..4),
                any::<bool>()
            )
                .prop_map(|(c, t)| Some((true, c, t))),
        ];
        (
            prop_oneof![Just("GET"), Just("POST"), Just("PUT")],
            "/[a-z0-9/._~-]{0,12}(\\?[a-z=&]{0,8})?(#[a-z]{0,4})?",
            body,
            any::<bool>(),
        )
            .prop_map(|(method, target, body, lf)| {
                let eol = if lf { "\n" } else { "\r\n" };
                let mut out = format!("{method} {target} HTTP/1.1{eol}Host: h{eol}").into_bytes();
                match body {
                    None => out.extend_from_slice(eol.as_bytes()),
                    Some((false, chunks, _)) => {
                        let b = chunks.concat();
                        out.extend_from_slice(
                            format!("Content-Length: {}{eol}{eol}", b.len()).as_bytes(),
                        );
                        out.extend_from_slice(&b);
                    }
                    Some((true, chunks, trailer)) => {
                        out.extend_from_slice(
                            format!("Transfer-Encoding: chunked{eol}{eol}").as_bytes(),
                        );
                        for (i, c) in chunks.iter().enumerate() {
                            let ext = if i % 2 == 1 { ";a=b" } else { "" };
                            out.extend_from_slice(format!("{:X}{ext}\r\n", c.len()).as_bytes());
                            out.extend_from_slice(c);
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"0\r\n");
                        if trailer {
                            out.extend_from_slice(b"X-T: 1\r\n");
                        }
                        out.extend_from_slice(b"\r\n");
                    }
                }
                (out, target)
            })
    }

    fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut out = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            out.push(bytes[last..p].to_vec());
            last = p;
        }
        out
    }

    /// What one read of the scanner gives now: `None` if it would wait.
    fn read_now<S: AsyncRead + Unpin>(scan: &mut H1Scan<S>) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 8192];
        match scan.read(&mut buf).now_or_never() {
            Some(Ok(n)) => Some(buf[..n].to_vec()),
            Some(Err(e)) => panic!("read failed: {e}"),
            None => None,
        }
    }

    #[tokio::test]
    async fn rests_only_when_asked_between_requests_with_everything_written() {
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (mut scan, heads) = H1Scan::new(server, 64 * 1024);
        let rest = scan.rest();
        // Not asked: an idle read waits.
        assert_eq!(read_now(&mut scan), None);

        // Part of a head read: asked, it still waits for the rest of it.
        client.write_all(b"GET /a HTTP/1.1\r\nHo").await.unwrap();
        assert_eq!(read_now(&mut scan), None);
        rest.ask();
        assert_eq!(read_now(&mut scan), None, "mid-head");
        assert!(!rest.is_resting());
        client.write_all(b"st: h\r\n\r\n").await.unwrap();
        assert_eq!(
            read_now(&mut scan).unwrap(),
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
        );
        // The client's bytes withdrew the ask.
        assert_eq!(read_now(&mut scan), None);
        assert!(!rest.is_resting());

        // Part of a body read: asked, it waits for the body.
        client
            .write_all(b"POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
            .await
            .unwrap();
        assert!(read_now(&mut scan).unwrap().starts_with(b"POST /b"));
        assert_eq!(read_now(&mut scan).unwrap(), b"ab");
        rest.ask();
        assert_eq!(read_now(&mut scan), None, "mid-body");
        client.write_all(b"cde").await.unwrap();
        assert_eq!(read_now(&mut scan).unwrap(), b"cde");

        // A response written and not flushed: asked, it waits.
        scan.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        rest.ask();
        assert_eq!(read_now(&mut scan), None, "unflushed");
        assert!(!rest.is_resting());
        scan.flush().await.unwrap();

        // Between requests, everything written, asked: the reader sees the
        // end of the stream, and a shutdown is not passed on.
        rest.ask();
        assert_eq!(read_now(&mut scan).unwrap(), b"", "rested");
        assert!(rest.is_resting());
        scan.shutdown().await.unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 64];
        while let Some(Ok(n)) = client.read(&mut b).now_or_never() {
            assert!(n > 0, "the client saw a close while the connection rests");
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n");

        // The client's next bytes wake it: kept whole for the next reader.
        scan.shed();
        assert_eq!((scan.raw.capacity(), scan.ready.capacity()), (0, 0));
        client.write_all(b"GET /c HTTP/1.1\r\n\r\n").await.unwrap();
        let woke = std::future::poll_fn(|cx| scan.poll_wake(cx)).await.unwrap();
        assert!(woke && !rest.is_resting());
        assert_eq!(read_now(&mut scan).unwrap(), b"GET /c HTTP/1.1\r\n\r\n");
        let targets: Vec<_> = std::iter::from_fn(|| heads.pop())
            .map(|h| h.target)
            .collect();
        assert_eq!(targets, ["/a", "/b", "/c"], "each head queued once");

        // Serving again, a shutdown reaches the client.
        scan.shutdown().await.unwrap();
        assert_eq!(client.read(&mut b).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_resting_stream_that_ends_does_not_wake_and_unread_bytes_come_first() {
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (mut scan, _heads) = H1Scan::new(server, 64 * 1024);
        client.write_all(b"GET /next").await.unwrap();
        assert_eq!(read_now(&mut scan), None);
        // Bytes hyper had read and not used are handed over before the rest.
        scan.unread(b"GET /kept HTTP/1.1\r\n\r\n");
        assert_eq!(read_now(&mut scan).unwrap(), b"GET /kept HTTP/1.1\r\n\r\n");
        drop(client);
        let mut scan = {
            let (client, server) = tokio::io::duplex(64);
            drop(client);
            H1Scan::new(server, 64 * 1024).0
        };
        let woke = std::future::poll_fn(|cx| scan.poll_wake(cx)).await.unwrap();
        assert!(!woke, "the stream ended");
    }

    proptest! {
        #[test]
        fn every_head_of_a_valid_pipeline_is_found(
            reqs in proptest::collection::vec(request(), 1..6),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            bufsize in 1usize..64,
        ) {
            let bytes: Vec<u8> = reqs.iter().flat_map(|(b, _)| b.clone()).collect();
            let (out, heads) = drain(split(&bytes, &cuts), 64 * 1024, bufsize);
            prop_assert_eq!(out, bytes);
            let want: Vec<&str> = reqs.iter().map(|(_, t)| t.as_str()).collect();
            prop_assert_eq!(targets(&heads), want);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            prefix in prop_oneof![
                Just(&b""[..]),
                Just(&b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..]),
                Just(&b"GET / HTTP/1.1\r\n"[..]),
            ],
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            max in 16usize..1024,
        ) {
            let mut all = prefix.to_vec();
            all.extend_from_slice(&bytes);
            let (out, heads) = drain(split(&all, &cuts), max, 17);
            // Nothing is invented: hyper gets input bytes or the synthetic head.
            prop_assert!(out.len() <= all.len() + SYNTHETIC_HEAD.len());
            prop_assert!(heads.len() <= all.len());
        }
    }
}
