//! Logging: the access-log record and the JSON/text subscriber.
//!
//! Owns: one access-log event per request with the SPEC §5 keys (`ts`,
//! `client`, `method`, `host`, `path`, `status`, `decision`, `route`,
//! `bytes_in`, `bytes_out`, `duration_ms`), the output format, and when
//! JSON access lines reach stderr (in batches, [`Batcher`]).
//! Must never: log a secret, a query string or a body; lose a line on an
//! orderly exit.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use http::Method;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::metrics::Outcome;

mod batch;
pub use batch::{BATCH_EVERY, Batcher};
use batch::{log_writer, write_access};

/// The facts of one request for its access-log line.
#[derive(Debug)]
pub struct AccessRecord {
    pub client: SocketAddr,
    /// `None` when no request was read (a connection refused as overloaded).
    pub method: Option<Method>,
    pub host: String,
    /// The path without the query.
    pub path: String,
    pub status: u16,
    pub decision: Outcome,
    pub route: Option<String>,
    /// Request body bytes, counted by the forwarded body (`None`: no body).
    pub bytes_in: Option<Arc<AtomicU64>>,
    pub bytes_out: u64,
    pub start: Instant,
}

impl AccessRecord {
    /// A record for a request; `decision` is set when it is answered.
    pub fn new(client: SocketAddr, method: &Method, start: Instant) -> Self {
        let mut r = AccessRecord::connection(client, start);
        r.method = Some(method.clone());
        r
    }

    /// A record for a connection no request was read from.
    pub fn connection(client: SocketAddr, start: Instant) -> Self {
        AccessRecord {
            client,
            method: None,
            host: String::new(),
            path: String::new(),
            status: 0,
            decision: Outcome::Allowed,
            route: None,
            bytes_in: None,
            bytes_out: 0,
            start,
        }
    }

    /// Writes the access-log line (and counts the request in the metrics).
    pub fn emit(&self) {
        let elapsed = self.start.elapsed();
        crate::metrics::get().request(self.decision, elapsed);
        let duration_ms = elapsed.as_millis() as u64;
        if JSON_LINES.load(Ordering::Relaxed) {
            // The JSON line written directly, byte for byte what the
            // subscriber's `JsonLine` writes for the event below, without
            // the event's field visits, Display calls and sort (most of a
            // request's logging cost, docs/benchmarks.md). `enabled!` keeps
            // `EGRESS_PROXY_LOG` in charge.
            if tracing::enabled!(target: "access", tracing::Level::INFO) {
                ACCESS_LINE.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut line) => self.write_json(duration_ms, &mut line),
                    Err(_) => self.write_json(duration_ms, &mut String::new()),
                });
            }
            return;
        }
        self.event(duration_ms);
    }

    /// The access-log line as a `tracing` event (the text format, and the
    /// reference the JSON fast path is tested against).
    fn event(&self, duration_ms: u64) {
        let path = self.path.split('?').next().unwrap_or("");
        tracing::info!(
            target: "access",
            client = %self.client,
            method = %self.method.as_ref().map_or("", Method::as_str),
            host = %self.host,
            path = %path,
            status = self.status,
            decision = %self.decision,
            route = %self.route.as_deref().unwrap_or(""),
            bytes_in = self.bytes_in(),
            bytes_out = self.bytes_out,
            duration_ms,
            "request"
        );
    }
}

impl AccessRecord {
    fn bytes_in(&self) -> u64 {
        self.bytes_in
            .as_ref()
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn write_json(&self, duration_ms: u64, line: &mut String) {
        line.clear();
        self.json_line(None, duration_ms, line);
        write_access(line.as_bytes());
        if line.capacity() > 64 * 1024 {
            *line = String::new();
        }
    }

    /// The access line as [`JsonLine`] formats the `tracing` event of
    /// [`AccessRecord::emit`]: keys sorted, `msg` "request", ending in a
    /// newline. `ts` is the RFC 3339 time (`None`: now).
    fn json_line(&self, ts: Option<&str>, duration_ms: u64, line: &mut String) {
        let path = self.path.split('?').next().unwrap_or("");
        let method = self.method.as_ref().map_or("", Method::as_str);
        let route = self.route.as_deref().unwrap_or("");
        let num = |line: &mut String, key: &str, v: u64| {
            line.push_str(key);
            push_u64(line, v);
        };
        num(line, "{\"bytes_in\":", self.bytes_in());
        num(line, ",\"bytes_out\":", self.bytes_out);
        line.push_str(",\"client\":\"");
        match self.client {
            // `Ipv4Addr`'s Display pads and aligns: the digits by hand.
            SocketAddr::V4(a) => {
                for (i, o) in a.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        line.push('.');
                    }
                    push_u64(line, o.into());
                }
                line.push(':');
                push_u64(line, a.port().into());
            }
            SocketAddr::V6(a) => {
                let _ = write!(line, "{a}");
            }
        }
        line.push_str("\",\"decision\":");
        push_json_str(line, self.decision.as_str());
        num(line, ",\"duration_ms\":", duration_ms);
        line.push_str(",\"host\":");
        push_json_str(line, &self.host);
        line.push_str(",\"level\":\"info\",\"method\":");
        push_json_str(line, method);
        line.push_str(",\"msg\":\"request\",\"path\":");
        push_json_str(line, path);
        line.push_str(",\"route\":");
        push_json_str(line, route);
        num(line, ",\"status\":", u64::from(self.status));
        line.push_str(",\"ts\":\"");
        match ts {
            Some(ts) => line.push_str(ts),
            // RFC 3339 has nothing to escape.
            None => {
                push_rfc3339_now(line);
            }
        }
        line.push_str("\"}\n");
    }
}

/// `--log-format json` is in force: [`AccessRecord::emit`] writes the line itself.
static JSON_LINES: AtomicBool = AtomicBool::new(false);

thread_local! {
    static ACCESS_LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Log output format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the global subscriber (stderr). Call once, from `main`.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EGRESS_PROXY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(log_writer)
        // Colour codes only for a person at a terminal, never in a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = match format {
        LogFormat::Json => builder.event_format(JsonLine).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    JSON_LINES.store(
        installed.is_ok() && format == LogFormat::Json,
        Ordering::Relaxed,
    );
}

/// One JSON object per line: `ts`, `level`, `msg`, then the event's fields.
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Same output as a `serde_json::Map` (keys sorted, a later field of
        // the same name wins, `message` written as `msg`), built without a
        // `Value` or a `String` per field, in buffers kept per thread: this
        // runs once per request (docs/benchmarks.md).
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => s.format(event, &mut w),
            // Re-entered (a field's Display logged): fresh buffers.
            Err(_) => Scratch::default().format(event, &mut w),
        })
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The buffers of one JSON line: field texts, fields, the line.
#[derive(Default)]
struct Scratch {
    text: String,
    fields: Vec<(&'static str, Val)>,
    line: String,
}

impl Scratch {
    fn format(&mut self, event: &Event<'_>, w: &mut Writer<'_>) -> fmt::Result {
        self.text.clear();
        self.fields.clear();
        self.line.clear();
        let ts = push_rfc3339_now(&mut self.text);
        self.fields.push(("ts", Val::Str(ts)));
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warn",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        let at = self.text.len();
        self.text.push_str(level);
        self.fields.push(("level", Val::Str(at..self.text.len())));
        event.record(&mut JsonVisitor {
            text: &mut self.text,
            fields: &mut self.fields,
        });
        // Stable: among equal keys the last recorded stays last.
        self.fields.sort_by(|a, b| a.0.cmp(b.0));
        let line = &mut self.line;
        line.push('{');
        let mut first = true;
        for (i, (name, value)) in self.fields.iter().enumerate() {
            if self.fields.get(i + 1).is_some_and(|next| next.0 == *name) {
                continue;
            }
            if !first {
                line.push(',');
            }
            first = false;
            push_json_str(line, name);
            line.push(':');
            match value {
                Val::Str(r) => push_json_str(line, &self.text[r.clone()]),
                Val::U64(v) => write!(line, "{v}")?,
                Val::I64(v) => write!(line, "{v}")?,
                Val::Bool(v) => line.push_str(if *v { "true" } else { "false" }),
            }
        }
        line.push_str("}\n");
        let r = w.write_str(line);
        // A huge field must not keep its buffers for the thread's life.
        if self.text.capacity() > 64 * 1024 || self.line.capacity() > 64 * 1024 {
            *self = Scratch::default();
        }
        r
    }
}

/// One recorded field value (the JSON types the visitor produces); a string
/// is a range of `Scratch::text`.
enum Val {
    Str(Range<usize>),
    U64(u64),
    I64(i64),
    Bool(bool),
}

struct JsonVisitor<'a> {
    text: &'a mut String,
    fields: &'a mut Vec<(&'static str, Val)>,
}

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let at = self.text.len();
        let _ = write!(self.text, "{value:?}");
        let end = self.text.len();
        self.insert(field, Val::Str(at..end));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let at = self.text.len();
        self.text.push_str(value);
        let end = self.text.len();
        self.insert(field, Val::Str(at..end));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Val::U64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Val::I64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Val::Bool(value));
    }
}

impl JsonVisitor<'_> {
    fn insert(&mut self, field: &Field, value: Val) {
        let name = if field.name() == "message" {
            "msg"
        } else {
            field.name()
        };
        self.fields.push((name, value));
    }
}

/// Appends `s` as a JSON string, escaped exactly as serde_json does
/// (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other controls as `\u00XX`).
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    // Most values (hosts, paths, methods, decisions) need no escaping: one
    // plain scan, then one copy (the byte loop below was a third of the
    // access line's cost, docs/benchmarks.md round 2).
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends `v` in decimal (what `write!(out, "{v}")` appends, without the
/// formatting machinery: this runs several times per request).
fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Digits are ASCII: pushed as they are, with no UTF-8 check (that check
    // was over a quarter of this function's instructions, callgrind).
    out.extend(buf[i..].iter().map(|&d| char::from(d)));
}

/// Appends the current UTC time in RFC 3339 to `out`; returns its range.
fn push_rfc3339_now(out: &mut String) -> Range<usize> {
    let mut buf = [0u8; 64];
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let at = out.len();
    if time::OffsetDateTime::now_utc()
        .format_into(&mut cur, &time::format_description::well_known::Rfc3339)
        .is_ok()
    {
        let n = cur.position() as usize;
        out.push_str(std::str::from_utf8(&buf[..n]).unwrap_or_default());
    }
    at..out.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The access line written directly is byte for byte the line the
    /// subscriber writes for the same record's `tracing` event, for records
    /// of every shape (no method, no route, text that needs escaping, IPv6
    /// clients, a query to cut off).
    #[test]
    fn access_fast_path_writes_what_the_subscriber_writes() {
        use proptest::prelude::*;
        use std::sync::Mutex;
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let text = "[ -~]{0,12}|[\\x00-\\x1f\"\\\\é✓]{0,6}";
        let outcomes = [
            Outcome::Allowed,
            Outcome::Healthz,
            Outcome::Refused(addon_rules::Reason::HostNotAllowed),
        ];
        proptest!(ProptestConfig::with_cases(300), |(
            host in text, path in text, route in proptest::option::of(text),
            method in proptest::option::of(prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::from_bytes(b"PURGE").unwrap())]),
            v6 in any::<bool>(), v4 in any::<u32>(), port in any::<u16>(), status in any::<u16>(),
            bytes in any::<(u64, u64)>(), duration_ms in any::<u64>(), o in 0usize..3,
        )| {
            let client: SocketAddr = if v6 {
                (std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7), port).into()
            } else {
                (std::net::Ipv4Addr::from(v4), port).into()
            };
            let rec = AccessRecord {
                client,
                method,
                host,
                path: format!("{path}?q=secret"),
                status,
                decision: outcomes[o],
                route,
                bytes_in: Some(Arc::new(AtomicU64::new(bytes.0))),
                bytes_out: bytes.1,
                start: Instant::now(),
            };
            let buf = Buf::default();
            let out = buf.clone();
            let sub = tracing_subscriber::fmt()
                .with_writer(move || out.clone())
                .with_ansi(false)
                .event_format(JsonLine)
                .finish();
            tracing::subscriber::with_default(sub, || rec.event(duration_ms));
            let theirs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
            let v: serde_json::Value = serde_json::from_str(&theirs).unwrap();
            let mut ours = String::new();
            rec.json_line(v["ts"].as_str(), duration_ms, &mut ours);
            prop_assert_eq!(&ours, &theirs);
            prop_assert!(!ours.contains("secret"));
        });
    }

    #[test]
    fn decimal_digits_like_display() {
        for v in [
            0,
            1,
            9,
            10,
            99,
            100,
            65_535,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut s = String::from("x");
            push_u64(&mut s, v);
            assert_eq!(s, format!("x{v}"));
        }
    }

    /// The hand-written escaping must give byte for byte what serde_json gives
    /// (the JSON format of the access log is a contract: SPEC §5, ops tests).
    #[test]
    fn json_strings_escape_like_serde_json() {
        let mut cases: Vec<String> = (0u32..0x80)
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b"))
            .collect();
        cases.extend(
            [
                "",
                "plain",
                "quote \" and \\ backslash",
                "\u{7f}\u{80}é✓\u{10ffff}",
                "\n\r\t\u{8}\u{c}\u{0}\u{1f}",
                "/path/with%2Fescapes?x=1",
            ]
            .map(String::from),
        );
        for s in cases {
            let mut ours = String::new();
            push_json_str(&mut ours, &s);
            let theirs = serde_json::to_string(&s).unwrap();
            assert_eq!(ours, theirs, "escaping of {s:?}");
        }
    }
}
