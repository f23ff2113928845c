//! Logging: the access-log record and the JSON/text subscriber.
//!
//! Owns: one access-log event per request with the SPEC §5 keys (`ts`,
//! `client`, `method`, `host`, `path`, `status`, `decision`, `route`,
//! `bytes_in`, `bytes_out`, `duration_ms`), and the output format.
//! Must never: log a secret, a query string or a body.

use std::fmt;
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
        let mut map = serde_json::Map::new();
        map.insert("ts".into(), serde_json::Value::String(now_rfc3339()));
        map.insert(
            "level".into(),
            serde_json::Value::String(event.metadata().level().as_str().to_ascii_lowercase()),
        );
        let mut v = JsonVisitor(&mut map);
        event.record(&mut v);
        let line = serde_json::Value::Object(map).to_string();
        writeln!(w, "{line}")
    }
}

struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field, serde_json::Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, serde_json::Value::String(value.to_owned()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, serde_json::Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, serde_json::Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, serde_json::Value::from(value));
    }
}

impl JsonVisitor<'_> {
    fn insert(&mut self, field: &Field, value: serde_json::Value) {
        let name = if field.name() == "message" {
            "msg"
        } else {
            field.name()
        };
        self.0.insert(name.to_owned(), value);
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
