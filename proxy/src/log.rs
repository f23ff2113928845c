//! Logging: the access-log record and the JSON/text subscriber.
//!
//! Owns: one access-log event per request with the SPEC §5 keys (`ts`,
//! `client`, `method`, `host`, `path`, `status`, `decision`, `route`,
//! `bytes_in`, `bytes_out`, `duration_ms`), and the output format.
//! Must never: log a secret, a query string or a body.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::Method;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The facts of one request for its access-log line.
#[derive(Debug)]
pub struct AccessRecord {
    pub client: SocketAddr,
    pub method: String,
    pub host: String,
    /// The path without the query.
    pub path: String,
    pub status: u16,
    pub decision: String,
    pub route: Option<String>,
    pub bytes_in: Arc<AtomicU64>,
    pub bytes_out: Arc<AtomicU64>,
    pub start: Instant,
}

impl AccessRecord {
    pub fn new(client: SocketAddr, method: &Method, start: Instant) -> Self {
        AccessRecord {
            client,
            method: method.as_str().to_owned(),
            host: String::new(),
            path: String::new(),
            status: 0,
            decision: String::new(),
            route: None,
            bytes_in: Arc::new(AtomicU64::new(0)),
            bytes_out: Arc::new(AtomicU64::new(0)),
            start,
        }
    }

    /// Writes the access-log line.
    pub fn emit(&self) {
        crate::metrics::get().request(&self.decision, self.start.elapsed());
        let path = self.path.split('?').next().unwrap_or("");
        tracing::info!(
            target: "access",
            client = %self.client,
            method = %self.method,
            host = %self.host,
            path = %path,
            status = self.status,
            decision = %self.decision,
            route = %self.route.as_deref().unwrap_or(""),
            bytes_in = self.bytes_in.load(Ordering::Relaxed),
            bytes_out = self.bytes_out.load(Ordering::Relaxed),
            duration_ms = self.start.elapsed().as_millis() as u64,
            "request"
        );
    }
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
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.event_format(JsonLine).try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
        // `Value` per field: this runs once per request (docs/benchmarks.md).
        let mut fields: Vec<(&'static str, Val)> = Vec::with_capacity(16);
        fields.push(("ts", Val::Str(now_rfc3339())));
        fields.push((
            "level",
            Val::Str(event.metadata().level().as_str().to_ascii_lowercase()),
        ));
        event.record(&mut JsonVisitor(&mut fields));
        // Stable: among equal keys the last recorded stays last.
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let mut line = String::with_capacity(256);
        line.push('{');
        let mut first = true;
        for (i, (name, value)) in fields.iter().enumerate() {
            if fields.get(i + 1).is_some_and(|next| next.0 == *name) {
                continue;
            }
            if !first {
                line.push(',');
            }
            first = false;
            push_json_str(&mut line, name);
            line.push(':');
            match value {
                Val::Str(v) => push_json_str(&mut line, v),
                Val::U64(v) => write!(line, "{v}")?,
                Val::I64(v) => write!(line, "{v}")?,
                Val::Bool(v) => line.push_str(if *v { "true" } else { "false" }),
            }
        }
        line.push_str("}\n");
        w.write_str(&line)
    }
}

/// One recorded field value (the JSON types the visitor produces).
enum Val {
    Str(String),
    U64(u64),
    I64(i64),
    Bool(bool),
}

struct JsonVisitor<'a>(&'a mut Vec<(&'static str, Val)>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field, Val::Str(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, Val::Str(value.to_owned()));
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
        self.0.push((name, value));
    }
}

/// Appends `s` as a JSON string, escaped exactly as serde_json does
/// (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other controls as `\u00XX`).
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
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

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
