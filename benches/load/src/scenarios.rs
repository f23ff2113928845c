//! The scenarios S1-S6 of issue 6, each bounded in time and count, each measuring the
//! proxy process's CPU (utime+stime) around its measured window.
//!
//! Owns load generation and the figures of one scenario. It must never turn a failed
//! request into a number: every error is counted, the first is kept, and a scenario
//! with errors is marked invalid.

use crate::client::{self, Conn, Target};
use crate::procstat;
use crate::slices::Slices;
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The proxy process whose CPU and memory are read; `None` when going direct.
#[derive(Clone, Copy)]
pub struct Probe {
    pub pid: Option<u32>,
    pub tck: f64,
}

impl Probe {
    fn cpu(&self) -> Option<f64> {
        self.pid
            .and_then(|p| procstat::cpu_seconds(p, self.tck).ok())
    }
    pub fn rss_kib(&self) -> Option<u64> {
        self.pid.and_then(|p| procstat::vm_kib(p, "VmRSS").ok())
    }
    pub fn hwm_kib(&self) -> Option<u64> {
        self.pid.and_then(|p| procstat::vm_kib(p, "VmHWM").ok())
    }
}

#[derive(Default)]
struct Errors {
    count: u64,
    first: Option<String>,
}

impl Errors {
    fn add(&mut self, e: &anyhow::Error) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(format!("{e:#}"));
        }
    }
    fn merge(&mut self, o: Errors) {
        self.count += o.count;
        if self.first.is_none() {
            self.first = o.first;
        }
    }
}

/// Percentile (nearest rank) of sorted microseconds, in milliseconds.
fn pct_ms(sorted_us: &[u64], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    Some(sorted_us[rank - 1] as f64 / 1000.0)
}

fn per_cpu(n: u64, cpu: Option<f64>) -> Option<f64> {
    cpu.filter(|c| *c > 0.0).map(|c| n as f64 / c)
}

fn cpu_delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? - a?)
}

/// A scenario measured in rounds that alternate the proxies (`bench`): the next
/// round's result folded into this one, as if the rounds were one measurement.
pub trait Merge {
    fn merge(&mut self, next: Self);
}

/// `slot` holds the rounds so far; `next` joins them.
pub fn fold<T: Merge>(slot: &mut Option<T>, next: T) {
    match slot {
        Some(s) => s.merge(next),
        None => *slot = Some(next),
    }
}

/// Two rounds' CPU: known only when both are.
fn cpu_sum(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? + b?)
}

/// Two rounds' sorted samples as one sorted list.
fn merged(mut a: Vec<u64>, b: Vec<u64>) -> Vec<u64> {
    a.extend(b);
    a.sort_unstable();
    a
}

/// A throughput-and-latency point (S1, S2).
#[derive(Serialize, Clone, Debug)]
pub struct RatePoint {
    pub concurrency: usize,
    pub ok: u64,
    pub seconds: f64,
    pub per_s: f64,
    pub proxy_cpu_s: Option<f64>,
    pub per_cpu_s: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub valid: bool,
    /// Every request's latency in µs, sorted: percentiles over several rounds.
    #[serde(skip)]
    pub lat_us: Vec<u64>,
}

impl RatePoint {
    fn new(
        concurrency: usize,
        lat_us: Vec<u64>,
        seconds: f64,
        cpu: Option<f64>,
        errors: u64,
        first_error: Option<String>,
    ) -> RatePoint {
        let ok = lat_us.len() as u64;
        RatePoint {
            concurrency,
            ok,
            seconds,
            per_s: ok as f64 / seconds,
            proxy_cpu_s: cpu,
            per_cpu_s: per_cpu(ok, cpu),
            p50_ms: pct_ms(&lat_us, 0.50),
            p99_ms: pct_ms(&lat_us, 0.99),
            valid: errors == 0 && ok > 0,
            errors,
            first_error,
            lat_us,
        }
    }
}

impl Merge for RatePoint {
    fn merge(&mut self, next: RatePoint) {
        debug_assert_eq!(self.concurrency, next.concurrency);
        let lat = merged(std::mem::take(&mut self.lat_us), next.lat_us);
        *self = RatePoint::new(
            self.concurrency,
            lat,
            self.seconds + next.seconds,
            cpu_sum(self.proxy_cpu_s, next.proxy_cpu_s),
            self.errors + next.errors,
            self.first_error.take().or(next.first_error),
        );
    }
}

/// S1 (keep-alive: `fresh_conn_per_request = false`) or S2 (new CONNECT + TLS per
/// request): `concurrency` workers for `dur`, at most `max_total` requests.
pub async fn rate(
    t: &Target,
    probe: Probe,
    concurrency: usize,
    dur: Duration,
    max_total: u64,
    fresh_conn_per_request: bool,
) -> RatePoint {
    let barrier = Arc::new(tokio::sync::Barrier::new(concurrency + 1));
    let per_worker = (max_total / concurrency as u64).max(1);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let t = t.clone();
        let barrier = barrier.clone();
        set.spawn(async move {
            let host = t.cred_host;
            let mut errs = Errors::default();
            let mut lat = Vec::new();
            // Warm-up outside the window: the keep-alive connection (and the leaf mint).
            let mut conn: Option<Conn> = None;
            if !fresh_conn_per_request {
                match warm(&t, host).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => errs.add(&e),
                }
            }
            barrier.wait().await;
            let deadline = Instant::now() + dur;
            while Instant::now() < deadline && (lat.len() as u64) < per_worker {
                let t0 = Instant::now();
                let r = if fresh_conn_per_request {
                    one_fresh(&t, host).await
                } else {
                    match conn.as_mut() {
                        Some(c) => client::get_all(&t, c, "/small").await.map(|_| ()),
                        None => Err(anyhow::anyhow!("no connection")),
                    }
                };
                match r {
                    Ok(()) => lat.push(t0.elapsed().as_micros() as u64),
                    Err(e) => {
                        errs.add(&e);
                        if !fresh_conn_per_request {
                            conn = client::connect(&t, host).await.ok();
                        }
                        // Bounded retry pace after an error.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (lat, errs)
        });
    }
    barrier.wait().await;
    let cpu0 = probe.cpu();
    let start = Instant::now();
    let mut lat = Vec::new();
    let mut errs = Errors::default();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((l, e)) => {
                lat.extend(l);
                errs.merge(e);
            }
            Err(e) => errs.add(&anyhow::anyhow!("worker task failed: {e}")),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_delta(cpu0, probe.cpu());
    lat.sort_unstable();
    RatePoint::new(concurrency, lat, seconds, cpu, errs.count, errs.first)
}

async fn warm(t: &Target, host: Ipv4Addr) -> Result<Conn> {
    let mut c = client::connect(t, host).await?;
    client::get_all(t, &mut c, "/small").await?;
    Ok(c)
}

async fn one_fresh(t: &Target, host: Ipv4Addr) -> Result<()> {
    let mut c = client::connect(t, host).await?;
    client::get_all(t, &mut c, "/small").await?;
    Ok(())
}

/// S3: first contact with each of `hosts` distinct hosts, one after the other.
#[derive(Serialize, Clone, Debug)]
pub struct FirstContact {
    pub hosts: usize,
    pub ok: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub proxy_cpu_s: Option<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub valid: bool,
    #[serde(skip)]
    pub lat_us: Vec<u64>,
}

impl FirstContact {
    fn new(
        hosts: usize,
        lat_us: Vec<u64>,
        cpu: Option<f64>,
        errors: u64,
        first_error: Option<String>,
    ) -> FirstContact {
        FirstContact {
            hosts,
            ok: lat_us.len(),
            p50_ms: pct_ms(&lat_us, 0.5),
            p99_ms: pct_ms(&lat_us, 0.99),
            proxy_cpu_s: cpu,
            valid: errors == 0 && !lat_us.is_empty(),
            errors,
            first_error,
            lat_us,
        }
    }
}

impl Merge for FirstContact {
    fn merge(&mut self, next: FirstContact) {
        let lat = merged(std::mem::take(&mut self.lat_us), next.lat_us);
        *self = FirstContact::new(
            self.hosts + next.hosts,
            lat,
            cpu_sum(self.proxy_cpu_s, next.proxy_cpu_s),
            self.errors + next.errors,
            self.first_error.take().or(next.first_error),
        );
    }
}

pub async fn first_contact(t: &Target, probe: Probe, hosts: &[Ipv4Addr]) -> FirstContact {
    let mut lat = Vec::new();
    let mut errs = Errors::default();
    let cpu0 = probe.cpu();
    for &h in hosts {
        let t0 = Instant::now();
        match one_fresh(t, h).await {
            Ok(()) => lat.push(t0.elapsed().as_micros() as u64),
            Err(e) => errs.add(&e),
        }
    }
    let cpu = cpu_delta(cpu0, probe.cpu());
    lat.sort_unstable();
    FirstContact::new(hosts.len(), lat, cpu, errs.count, errs.first)
}

/// S4, S4w, S4s and S4u: one large transfer per run on a fresh connection; over several
/// runs (rounds, [`Merge`]) the median run is reported, and the proxy CPU of all runs.
#[derive(Serialize, Clone, Debug)]
pub struct Download {
    pub bytes: u64,
    pub runs_mb_per_s: Vec<f64>,
    pub mb_per_s: Option<f64>,
    pub proxy_cpu_s: Option<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub valid: bool,
}

impl Download {
    fn new(
        bytes: u64,
        speeds: Vec<f64>,
        cpu: Option<f64>,
        errors: u64,
        first_error: Option<String>,
    ) -> Download {
        let mut sorted = speeds.clone();
        sorted.sort_by(f64::total_cmp);
        Download {
            bytes,
            mb_per_s: sorted.get(sorted.len() / 2).copied(),
            runs_mb_per_s: speeds,
            proxy_cpu_s: cpu,
            valid: errors == 0 && !sorted.is_empty(),
            errors,
            first_error,
        }
    }

    /// Megabytes moved per second of proxy CPU, over all runs (the CPU covers them all).
    pub fn mb_per_cpu_s(&self) -> Option<f64> {
        let cpu = self.proxy_cpu_s.filter(|c| *c > 0.0)?;
        Some(self.bytes as f64 * self.runs_mb_per_s.len() as f64 / 1e6 / cpu)
    }
}

/// S4, S4w and S4s; `query` is the origin's (`paced=1`: each slice written on its own;
/// `slice=16384`: 16 KiB slices, so 16 KiB h2 frames).
pub async fn download(t: &Target, probe: Probe, bytes: u64, query: &str) -> Download {
    let path = if query.is_empty() {
        format!("/bytes/{bytes}")
    } else {
        format!("/bytes/{bytes}?{query}")
    };
    transfer(probe, bytes, async {
        let mut c = client::connect(t, t.cred_host).await?;
        let t0 = Instant::now();
        let got = client::get(t, &mut c, &path).await?;
        let mut body = got.body;
        let mut n = 0u64;
        tokio::time::timeout(TRANSFER_LIMIT, async {
            while let Some(f) = body.frame().await {
                if let Some(d) = f?.data_ref() {
                    n += d.len() as u64;
                }
            }
            anyhow::Ok(())
        })
        .await
        .with_context(|| format!("download: timed out after {TRANSFER_LIMIT:?}"))??;
        anyhow::ensure!(n == bytes, "download: got {n} bytes, want {bytes}");
        Ok(t0.elapsed())
    })
    .await
}

/// S4u: one large upload per run (`POST /sink`, `Content-Length`, 64 KiB slices all
/// ready at once) on a fresh connection; timed until the origin's answer, which comes
/// after it has read the last byte.
pub async fn upload(t: &Target, probe: Probe, bytes: u64) -> Download {
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    transfer(probe, bytes, async {
        let mut c = client::connect::<Slices>(t, t.cred_host).await?;
        let t0 = Instant::now();
        let body = Slices::new(bytes, chunk.clone(), false);
        let n = client::post_sink(t, &mut c, body, TRANSFER_LIMIT).await?;
        anyhow::ensure!(
            n == bytes,
            "upload: the origin read {n} bytes, want {bytes}"
        );
        Ok(t0.elapsed())
    })
    .await
}

/// A generous bound on one transfer: 200 MB at 2 MB/s.
const TRANSFER_LIMIT: Duration = Duration::from_secs(120);

/// One run of `one`: its speed and the proxy CPU it took.
async fn transfer(
    probe: Probe,
    bytes: u64,
    one: impl Future<Output = Result<Duration>>,
) -> Download {
    let cpu0 = probe.cpu();
    let r = one.await;
    let cpu = cpu_delta(cpu0, probe.cpu());
    match r {
        Ok(took) => Download::new(
            bytes,
            vec![bytes as f64 / 1e6 / took.as_secs_f64()],
            cpu,
            0,
            None,
        ),
        Err(e) => Download::new(bytes, vec![], cpu, 1, Some(format!("{e:#}"))),
    }
}

impl Merge for Download {
    /// The runs of both rounds; the median over all of them.
    fn merge(&mut self, next: Download) {
        debug_assert_eq!(self.bytes, next.bytes);
        let mut speeds = std::mem::take(&mut self.runs_mb_per_s);
        speeds.extend(next.runs_mb_per_s);
        *self = Download::new(
            self.bytes,
            speeds,
            cpu_sum(self.proxy_cpu_s, next.proxy_cpu_s),
            self.errors + next.errors,
            self.first_error.take().or(next.first_error),
        );
    }
}

/// S5: delay from the origin's send timestamp to the client's receipt, per SSE event.
#[derive(Serialize, Clone, Debug)]
pub struct Sse {
    pub events: u64,
    pub received: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Filled in against the direct run: this minus direct.
    pub added_p50_ms: Option<f64>,
    pub added_p99_ms: Option<f64>,
    pub proxy_cpu_s: Option<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub valid: bool,
    /// Every event's delay in µs, sorted.
    #[serde(skip)]
    pub delays_us: Vec<u64>,
}

impl Sse {
    fn new(
        events: u64,
        delays_us: Vec<u64>,
        cpu: Option<f64>,
        errors: u64,
        first_error: Option<String>,
    ) -> Sse {
        let received = delays_us.len() as u64;
        Sse {
            events,
            received,
            p50_ms: pct_ms(&delays_us, 0.5),
            p90_ms: pct_ms(&delays_us, 0.9),
            p99_ms: pct_ms(&delays_us, 0.99),
            p999_ms: pct_ms(&delays_us, 0.999),
            max_ms: pct_ms(&delays_us, 1.0),
            added_p50_ms: None,
            added_p99_ms: None,
            proxy_cpu_s: cpu,
            valid: errors == 0 && received == events,
            errors,
            first_error,
            delays_us,
        }
    }
}

impl Merge for Sse {
    /// Both rounds' events; the added delay is filled in after the last round.
    fn merge(&mut self, next: Sse) {
        let delays = merged(std::mem::take(&mut self.delays_us), next.delays_us);
        *self = Sse::new(
            self.events + next.events,
            delays,
            cpu_sum(self.proxy_cpu_s, next.proxy_cpu_s),
            self.errors + next.errors,
            self.first_error.take().or(next.first_error),
        );
    }
}

pub async fn sse(t: &Target, probe: Probe, events: u64, interval_ms: u64) -> Sse {
    let mut errs = Errors::default();
    let mut delays = Vec::new();
    let cpu0 = probe.cpu();
    let bound = Duration::from_millis(events * interval_ms * 2 + 30_000);
    let r = async {
        let mut c = client::connect(t, t.cred_host).await?;
        let got = client::get(
            t,
            &mut c,
            &format!("/sse?n={events}&interval_ms={interval_ms}"),
        )
        .await?;
        let mut body = got.body;
        let mut buf: Vec<u8> = Vec::new();
        tokio::time::timeout(bound, async {
            while let Some(f) = body.frame().await {
                let f = f?;
                let Some(d) = f.data_ref() else { continue };
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                buf.extend_from_slice(d);
                while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                    let ev: Vec<u8> = buf.drain(..end + 2).collect();
                    let text = String::from_utf8_lossy(&ev);
                    let sent: u128 = text
                        .trim()
                        .strip_prefix("data: ")
                        .and_then(|v| v.parse().ok())
                        .with_context(|| format!("SSE: malformed event {:?}", text.trim()))?;
                    delays.push((now.saturating_sub(sent) / 1000) as u64);
                }
            }
            anyhow::Ok(())
        })
        .await
        .context("SSE: stream did not end in time")??;
        anyhow::ensure!(
            delays.len() as u64 == events,
            "SSE: received {} of {events} events",
            delays.len()
        );
        Ok(())
    }
    .await;
    if let Err(e) = r {
        errs.add(&e);
    }
    let cpu = cpu_delta(cpu0, probe.cpu());
    delays.sort_unstable();
    Sse::new(events, delays, cpu, errs.count, errs.first)
}

/// S6: resident memory at rest, and with `conns` idle MITM'd keep-alive connections
/// (each has carried one request, so the proxy also holds its upstream side).
#[derive(Serialize, Clone, Debug)]
pub struct Memory {
    pub rest_kib: Option<u64>,
    pub before_kib: Option<u64>,
    pub idle_kib: Option<u64>,
    pub conns: usize,
    pub open: usize,
    pub kib_per_conn: Option<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub valid: bool,
}

pub async fn memory(t: &Target, probe: Probe, rest_kib: Option<u64>, conns: usize) -> Memory {
    let before = probe.rss_kib();
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let t = t.clone();
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            warm(&t, t.cred_host).await
        });
    }
    let mut held = Vec::with_capacity(conns);
    let mut errs = Errors::default();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(c)) => held.push(c),
            Ok(Err(e)) => errs.add(&e),
            Err(e) => errs.add(&anyhow::anyhow!("task failed: {e}")),
        }
    }
    // Let the proxy settle (buffers returned, timers armed) before reading.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = probe.rss_kib();
    let open = held.len();
    drop(held);
    let kib_per_conn = match (before, idle) {
        (Some(b), Some(i)) if open > 0 => Some((i as f64 - b as f64) / open as f64),
        _ => None,
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    Memory {
        rest_kib,
        before_kib: before,
        idle_kib: idle,
        conns,
        open,
        kib_per_conn,
        valid: errs.count == 0 && open == conns && kib_per_conn.is_some(),
        errors: errs.count,
        first_error: errs.first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(pct_ms(&v, 0.5), Some(50.0));
        assert_eq!(pct_ms(&v, 0.99), Some(99.0));
        assert_eq!(pct_ms(&[7000], 0.99), Some(7.0));
        assert_eq!(pct_ms(&[], 0.5), None);
    }

    #[test]
    fn rounds_of_a_rate_point_add_up_as_one_measurement() {
        let a = RatePoint::new(
            8,
            (1..=50).map(|i| i * 1000).collect(),
            1.0,
            Some(0.5),
            0,
            None,
        );
        let b = RatePoint::new(
            8,
            (51..=100).map(|i| i * 1000).collect(),
            3.0,
            Some(1.5),
            0,
            None,
        );
        let mut m = a.clone();
        m.merge(b);
        assert_eq!(m.ok, 100);
        assert_eq!(m.seconds, 4.0);
        assert_eq!(m.per_s, 25.0);
        assert_eq!(m.proxy_cpu_s, Some(2.0));
        assert_eq!(m.per_cpu_s, Some(50.0));
        // Percentiles over both rounds' samples, not an average of the rounds' own.
        assert_eq!(m.p50_ms, Some(50.0));
        assert_eq!(m.p99_ms, Some(99.0));
        assert!(m.valid);
    }

    #[test]
    fn a_round_with_errors_or_no_cpu_spoils_the_sum() {
        let ok = RatePoint::new(1, vec![1000], 1.0, Some(1.0), 0, None);
        let bad = RatePoint::new(1, vec![1000], 1.0, Some(1.0), 2, Some("status 502".into()));
        let mut m = ok.clone();
        m.merge(bad);
        assert!(!m.valid);
        assert_eq!(m.errors, 2);
        assert_eq!(m.first_error.as_deref(), Some("status 502"));
        let mut m = ok.clone();
        m.merge(RatePoint::new(1, vec![1000], 1.0, None, 0, None));
        assert_eq!((m.proxy_cpu_s, m.per_cpu_s), (None, None));
    }

    #[test]
    fn rounds_of_the_other_scenarios_add_up() {
        let mut d = Download::new(100_000_000, vec![300.0], Some(0.2), 0, None);
        fold_all(
            &mut d,
            [Download::new(100_000_000, vec![100.0], Some(0.3), 0, None)],
        );
        fold_all(
            &mut d,
            [Download::new(100_000_000, vec![200.0], Some(0.5), 0, None)],
        );
        assert_eq!(d.runs_mb_per_s, [300.0, 100.0, 200.0]);
        assert_eq!(d.mb_per_s, Some(200.0));
        assert_eq!(d.mb_per_cpu_s(), Some(300.0));
        assert!(d.valid);
        fold_all(
            &mut d,
            [Download::new(
                100_000_000,
                vec![],
                Some(0.1),
                1,
                Some("cut".into()),
            )],
        );
        assert!(!d.valid);

        let mut s = Sse::new(2, vec![100, 300], Some(0.1), 0, None);
        s.merge(Sse::new(2, vec![200, 400], Some(0.1), 0, None));
        assert_eq!((s.events, s.received, s.p50_ms), (4, 4, Some(0.2)));
        assert!(s.valid);
        s.merge(Sse::new(2, vec![500], Some(0.1), 0, None));
        assert!(!s.valid, "an event missing in one round");

        let mut f = FirstContact::new(2, vec![1000, 3000], None, 0, None);
        f.merge(FirstContact::new(2, vec![2000, 4000], None, 0, None));
        assert_eq!(
            (f.hosts, f.ok, f.p50_ms, f.p99_ms),
            (4, 4, Some(2.0), Some(4.0))
        );
    }

    fn fold_all<T: Merge>(into: &mut T, rest: impl IntoIterator<Item = T>) {
        rest.into_iter().for_each(|r| into.merge(r));
    }

    #[test]
    fn per_cpu_needs_positive_cpu() {
        assert_eq!(per_cpu(10, Some(2.0)), Some(5.0));
        assert_eq!(per_cpu(10, Some(0.0)), None);
        assert_eq!(per_cpu(10, None), None);
    }
}
