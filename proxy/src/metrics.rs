//! Prometheus metrics of the proxy (served on `--admin-listen` only).
//!
//! Owns: the process-wide registry and every metric in it: requests by
//! decision, upstream errors by kind, active client connections, connections
//! refused as overloaded, leaf mints and leaf cache hits, and the request
//! duration histogram. Encoding is prometheus-client's (OpenMetrics text).
//! Must never: carry a secret, a host, a path or a query in a label. Labels
//! are closed sets by type (`Outcome`, `addon_rules::Reason`), so the
//! agent cannot grow the registry without bound by sending odd requests.
//!
//! Why a process-wide registry rather than one in `Shared`: the proxy is one
//! per process, and the stages that count (listener, serve, leaf cache, log)
//! already share nothing else that would carry it; a static keeps each
//! counting site one line.

use std::sync::LazyLock;
use std::time::Duration;

use addon_rules::Reason;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What became of a request: the access log's `decision` and the metrics
/// label. A closed set by its type, so neither can carry request data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded (whatever the origin answered).
    Allowed,
    /// `GET /healthz` on the proxy port.
    Healthz,
    /// Refused by the proxy with this reason.
    Refused(Reason),
}

impl Outcome {
    /// `allowed`, `healthz` or the SPEC §3 reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Healthz => "healthz",
            Outcome::Refused(r) => r.as_str(),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision of a request (`allowed`, `healthz` or a refusal reason).
/// The names are static: counting a request allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: &'static str,
}

/// The kind of an upstream failure (`upstream-unreachable`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Every metric of the proxy.
pub struct Metrics {
    registry: Registry,
    requests: Family<DecisionLabel, Counter>,
    upstream_errors: Family<KindLabel, Counter>,
    active_connections: Gauge,
    resting_connections: Gauge,
    overloaded_connections: Counter,
    leaf_mints: Counter,
    leaf_cache_hits: Counter,
    duration: Histogram,
    reloads: Family<ResultLabel, Counter>,
    routes: Gauge<i64, std::sync::atomic::AtomicI64>,
}

/// Outcome of a reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics { .. }")
    }
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("egress_proxy");
        let requests = Family::<DecisionLabel, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by decision (allowed or the refusal reason)",
            requests.clone(),
        );
        let upstream_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "upstream_errors",
            "Allowed requests that failed upstream, by kind",
            upstream_errors.clone(),
        );
        let active_connections = Gauge::default();
        registry.register(
            "active_connections",
            "Client connections open on the proxy port",
            active_connections.clone(),
        );
        let resting_connections = Gauge::default();
        registry.register(
            "resting_connections",
            "HTTP/1 tunnels idle long enough to have freed their HTTP state until the client's next bytes",
            resting_connections.clone(),
        );
        let overloaded_connections = Counter::default();
        registry.register(
            "overloaded_connections",
            "Client connections refused with 503 because --max-connections were open",
            overloaded_connections.clone(),
        );
        let leaf_mints = Counter::default();
        registry.register("leaf_mints", "Leaf certificates minted", leaf_mints.clone());
        let leaf_cache_hits = Counter::default();
        registry.register(
            "leaf_cache_hits",
            "TLS handshakes served from the leaf certificate cache",
            leaf_cache_hits.clone(),
        );
        // 1 ms .. ~65 s: covers a refusal answered locally up to a long stream.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register(
            "request_duration_seconds",
            "Time from request head to the end of the response body",
            duration.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reloads",
            "Routes reloads (SIGHUP), by result (ok or error)",
            reloads.clone(),
        );
        let routes = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register("routes", "Routes in the loaded policy", routes.clone());
        Metrics {
            registry,
            requests,
            upstream_errors,
            active_connections,
            resting_connections,
            overloaded_connections,
            leaf_mints,
            leaf_cache_hits,
            duration,
            reloads,
            routes,
        }
    }

    /// One finished request (called where its access-log line is written).
    pub fn request(&self, decision: Outcome, elapsed: Duration) {
        self.requests
            .get_or_create(&DecisionLabel {
                decision: decision.as_str(),
            })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// An allowed request that failed upstream, by the reason it was refused with.
    pub fn upstream_error(&self, reason: Reason) {
        self.upstream_errors
            .get_or_create(&KindLabel {
                kind: reason.as_str(),
            })
            .inc();
    }

    /// A connection refused because the connection limit was reached (its
    /// access-log record counts it among the requests).
    pub fn overloaded(&self) {
        self.overloaded_connections.inc();
    }

    pub fn leaf_minted(&self) {
        self.leaf_mints.inc();
    }

    pub fn leaf_cache_hit(&self) {
        self.leaf_cache_hits.inc();
    }

    /// A reload attempt and, on success, the number of routes now loaded.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// The number of routes of the policy in force.
    pub fn set_routes(&self, n: usize) {
        self.routes.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts one open client connection until the guard is dropped.
    pub fn connection(&'static self) -> GaugeGuard {
        GaugeGuard::new(&self.active_connections)
    }

    /// Counts one resting tunnel until the guard is dropped.
    pub fn resting(&'static self) -> GaugeGuard {
        GaugeGuard::new(&self.resting_connections)
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One in a gauge until dropped (also on panic or abort of the task that
/// holds it).
#[derive(Debug)]
pub struct GaugeGuard(&'static Gauge);

impl GaugeGuard {
    fn new(gauge: &'static Gauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_a_closed_set() {
        let m = Metrics::new();
        m.request(Outcome::Allowed, Duration::from_millis(3));
        m.request(Outcome::Healthz, Duration::from_millis(1));
        for r in Reason::ALL {
            m.request(Outcome::Refused(r), Duration::from_millis(1));
        }
        m.upstream_error(Reason::UpstreamTimeout);
        let text = m.encode();
        assert!(text.contains("egress_proxy_requests_total{decision=\"allowed\"} 1"));
        assert!(text.contains("egress_proxy_requests_total{decision=\"healthz\"} 1"));
        for r in Reason::ALL {
            let line = format!("egress_proxy_requests_total{{decision=\"{r}\"}} 1");
            assert!(text.contains(&line), "{line}");
        }
        assert_eq!(
            text.matches("egress_proxy_requests_total{").count(),
            Reason::ALL.len() + 2,
            "one series per outcome, nothing else"
        );
        assert!(text.contains("egress_proxy_upstream_errors_total{kind=\"upstream-timeout\"} 1"));
        let n = Reason::ALL.len() + 2;
        assert!(text.contains(&format!("egress_proxy_request_duration_seconds_count {n}")));
    }

    #[test]
    fn connection_guard_counts_down() {
        let m: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        let g1 = m.connection();
        let g2 = m.connection();
        assert!(m.encode().contains("egress_proxy_active_connections 2"));
        drop(g1);
        drop(g2);
        assert!(m.encode().contains("egress_proxy_active_connections 0"));
    }
}
