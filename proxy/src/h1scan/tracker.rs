//! The HTTP/1 request framing tracker: pure, no IO. It follows a connection's
//! bytes as hyper's parser would (head, `Content-Length` or chunked body, next
//! head), holds a head back until it is complete and checked, queues its raw
//! facts, and replaces a head hyper would reject by a synthetic one.

use std::mem::MaybeUninit;

use addon_rules::{Reason, Refusal};
use http::{HeaderValue, StatusCode};

use super::{RawHead, RawHeads, SYNTHETIC_HEAD};
use crate::limits::{FIRST_HEAD_MAX, MAX_CHUNK_EXTENSIONS, MAX_CONNECT_TARGET, MAX_HEADERS};

/// Chunked body states, as hyper's decoder follows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
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
pub(super) enum State {
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
    pub(super) state: State,
    pub(super) head: Vec<u8>,
    /// Where the search for the end of the head resumes.
    searched: usize,
    max_head: usize,
    pub(super) heads: RawHeads,
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
    pub(super) fn at_boundary(&self) -> bool {
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

/// A connection's first bytes, sorted for the proxy port's `CONNECT` path.
#[derive(Debug, PartialEq, Eq)]
pub enum First {
    /// Not decided yet: more bytes are needed.
    More,
    /// A whole `CONNECT` head of `len` bytes that hyper would upgrade and the
    /// tracker would pass, its request-target as hyper would show it; the
    /// bytes after it are the tunnel's.
    Connect { len: usize, target: String },
    /// Anything else: served by hyper through the tracker, which gives any
    /// refusal.
    Other,
}

/// Sorts the first bytes of a proxy-port connection, `buf`, searched for the
/// end of the head from `from` (the bytes before were searched already).
///
/// Strict: only a plain `CONNECT` head is `Connect`: a request line as the
/// tracker's parse accepts it, HTTP/1.1 or 1.0, no `Content-Length`,
/// `Transfer-Encoding` or `Upgrade`, at most [`FIRST_HEAD_MAX`] bytes. Every
/// other start, well-formed or not, is `Other` as soon as that is certain, so
/// its refusals stay the tracker's and hyper's.
pub fn first(buf: &[u8], from: usize) -> First {
    const CONNECT: &[u8] = b"CONNECT ";
    let n = buf.len().min(CONNECT.len());
    if buf[..n] != CONNECT[..n] {
        return First::Other;
    }
    let Some(end) = head_end(buf, from) else {
        return if buf.len() >= FIRST_HEAD_MAX {
            First::Other
        } else {
            First::More
        };
    };
    if end > FIRST_HEAD_MAX {
        return First::Other;
    }
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        &buf[..end],
        &mut slots,
    );
    if parsed != Ok(httparse::Status::Complete(end)) {
        return First::Other;
    }
    let (Some("CONNECT"), Some(target), Some(0 | 1)) = (req.method, req.path, req.version) else {
        return First::Other;
    };
    let body_or_upgrade = req.headers.iter().any(|h| {
        ["content-length", "transfer-encoding", "upgrade"]
            .iter()
            .any(|n| h.name.eq_ignore_ascii_case(n))
    });
    match http::Uri::try_from(target) {
        Ok(uri) if !body_or_upgrade => First::Connect {
            len: end,
            target: uri.to_string(),
        },
        _ => First::Other,
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
