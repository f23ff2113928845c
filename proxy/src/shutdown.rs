//! The drain signal of SIGTERM/SIGINT, and the watchers a client connection
//! polls beside hyper's connection.
//!
//! Owns: one flag, set once when the proxy starts draining, that every client
//! connection watches: an idle HTTP/1 connection closes at once, one with a
//! request in flight closes after its response (streams included), an h2
//! connection sends GOAWAY and finishes its open streams. A connection's
//! activity (requests in flight, when the last ended) for its idle limits,
//! and [`WhenWoken`], which keeps those watchers from being polled at every
//! wake-up of the connection's task.
//! Must never: cut a request in flight; only the `--grace` deadline of
//! `Running::shutdown` may do that, by ending the process.

use futures_util::task::AtomicWaker;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tokio::sync::watch;

use crate::limits::BUSY_RECHECK;

/// Set once to start draining; cloned receivers watch it.
#[derive(Debug)]
pub struct Drain {
    tx: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            tx: watch::Sender::new(false),
        }
    }
}

impl Drain {
    /// Starts draining (idempotent).
    pub fn start(&self) {
        self.tx.send_replace(true);
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        *self.tx.borrow()
    }

    /// A future that completes once draining has started (at once if it
    /// already has). Never completes if the `Drain` is dropped undrained.
    /// Polled only when the flag changes ([`WhenWoken`]).
    pub fn signalled(&self) -> impl Future<Output = ()> + Send + 'static {
        WhenWoken::new(draining(self.tx.subscribe()))
    }

    /// As [`signalled`](Self::signalled), but polled at every wake-up of
    /// its task (no wrapper to allocate): for a short wait, such as a
    /// connection's first bytes.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        draining(self.tx.subscribe())
    }
}

/// Completes once `rx` shows draining; never if its sender is dropped first.
async fn draining(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|draining| *draining).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Requests in flight on one client connection and when the last one ended:
/// the idle keep-alive timeout closes a connection only when nothing is in
/// flight (a streaming response counts until its body ends).
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }
}

/// One request in flight, until dropped (with its response body).
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        if let Ok(mut last) = self.0.last.lock() {
            *last = Instant::now();
        }
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    /// Marks a request in flight until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Completes once the connection has had nothing in flight for `limit`:
    /// at the end of the last request plus `limit`, to the timer's
    /// millisecond. One timer, armed again only when it fires and polled
    /// only then ([`WhenWoken`]): a busy connection pays nothing per request.
    pub async fn idle_for(&self, limit: Duration) {
        self.idle_for_checking(limit, limit).await;
    }

    /// As [`idle_for`](Self::idle_for), but never sooner than `limit` from
    /// now: a loop that acts on it (asking a connection to rest) acts at most
    /// once per `limit`, where `idle_for` would complete at once again. While
    /// a request is in flight it looks again only every [`BUSY_RECHECK`] (or
    /// `limit`, if longer), so a long response (a stream of events, a
    /// download) does not wake its connection every `limit`; it may complete
    /// up to that much later than `limit` after such a response.
    pub async fn idle_for_after(&self, limit: Duration) {
        WhenWoken::new(tokio::time::sleep(limit)).await;
        self.idle_for_checking(limit, limit.max(BUSY_RECHECK)).await;
    }

    /// `idle_for(limit)`, looking again `busy` after it found a request in
    /// flight: when the request ends, the limit runs from then (exact when
    /// `busy` is `limit`: the next look comes before its end).
    async fn idle_for_checking(&self, limit: Duration, busy: Duration) {
        loop {
            let due = match self.last_if_idle() {
                Some(last) if last.elapsed() >= limit => return,
                Some(last) => last + limit,
                None => Instant::now() + busy,
            };
            WhenWoken::new(tokio::time::sleep_until(due.into())).await;
        }
    }

    /// When the last request ended, or `None` while one is in flight.
    fn last_if_idle(&self) -> Option<Instant> {
        let last = *self.last.lock().ok()?;
        (self.in_flight.load(Ordering::Acquire) == 0).then_some(last)
    }
}

/// A future polled only at its first poll and after it woke its task.
///
/// `tokio::select!` polls every branch each time the task wakes; a
/// connection's task wakes for every read and every response, and its
/// watchers (the drain signal, the idle timers) would be polled as often for
/// nothing: each poll of a timer or of the drain's `watch` takes locks. This
/// wrapper gives the inner future a waker of its own that marks it woken
/// before waking the task, and otherwise answers `Pending` at once.
pub struct WhenWoken<F> {
    inner: Pin<Box<F>>,
    flag: Arc<WakeFlag>,
    /// The inner future's waker (the flag's), made once.
    waker: Waker,
}

struct WakeFlag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> WhenWoken<F> {
    pub fn new(inner: F) -> Self {
        let flag = Arc::new(WakeFlag {
            // The first poll polls the inner future, which registers.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        WhenWoken {
            inner: Box::pin(inner),
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

impl<F: Future> Future for WhenWoken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake between the two still
        // wakes this task (`AtomicWaker`'s protocol).
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_only_when_nothing_is_in_flight() {
        let a = Arc::new(Activity::default());
        let busy = a.begin();
        let limit = Duration::from_millis(100);
        let waited = tokio::time::timeout(Duration::from_millis(400), a.idle_for(limit)).await;
        assert!(waited.is_err(), "a request in flight is not idle");
        drop(busy);
        tokio::time::timeout(Duration::from_secs(5), a.idle_for(limit))
            .await
            .expect("idle once the request ended");
    }

    #[tokio::test]
    async fn idle_for_ends_its_limit_after_the_last_request_ended() {
        let a = Arc::new(Activity::default());
        let limit = Duration::from_secs(2);
        // Watched from before the request ends, as a connection watches.
        let busy = a.begin();
        let watching = tokio::spawn({
            let a = a.clone();
            async move { a.idle_for(limit).await }
        });
        tokio::time::sleep(Duration::from_millis(1050)).await;
        drop(busy);
        let ended = Instant::now();
        watching.await.unwrap();
        let took = ended.elapsed();
        assert!(took >= limit, "not before the limit: {took:?}");
        // Checking at a quarter of the limit (as before) would end at 2.45 s.
        assert!(took < limit + Duration::from_millis(300), "{took:?}");
        // Idle for longer than the limit already: at once.
        let again = Instant::now();
        a.idle_for(limit).await;
        assert!(again.elapsed() < Duration::from_millis(50));
    }

    /// The rest watcher of a connection with a long response in flight looks
    /// again once per `BUSY_RECHECK`, not every `limit` (20 times a second
    /// for `REST_AFTER`), and still completes once the response ended.
    #[tokio::test]
    async fn idle_for_after_looks_at_a_busy_connection_once_a_second() {
        let a = Arc::new(Activity::default());
        let limit = Duration::from_millis(10);
        let busy = a.begin();
        let polls = AtomicUsize::new(0);
        let mut watch = Box::pin(a.idle_for_after(limit));
        let mut counted = std::future::poll_fn(|cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            watch.as_mut().poll(cx)
        });
        let waited = tokio::time::timeout(Duration::from_millis(2500), &mut counted).await;
        assert!(waited.is_err(), "a request in flight is not idle");
        // Its first poll, the end of its first `limit`, then about one a
        // second (250 every `limit`).
        let n = polls.load(Ordering::Relaxed);
        assert!(n <= 6, "{n} polls in 2.5 s");
        drop(busy);
        let ended = Instant::now();
        tokio::time::timeout(BUSY_RECHECK * 2, counted)
            .await
            .expect("idle once the request ended");
        assert!(ended.elapsed() >= limit);
    }

    #[tokio::test]
    async fn idle_for_after_waits_its_limit_even_when_idle_already() {
        let a = Arc::new(Activity::default());
        let limit = Duration::from_millis(100);
        tokio::time::sleep(limit * 2).await;
        let start = Instant::now();
        a.idle_for_after(limit).await;
        assert!(start.elapsed() >= limit, "{:?}", start.elapsed());
    }

    /// An inner future that counts its polls and keeps its last waker.
    #[derive(Default)]
    struct Probe {
        polls: AtomicUsize,
        ready: AtomicBool,
        waker: Mutex<Option<Waker>>,
    }

    impl Probe {
        fn wake(&self) {
            if let Some(w) = self.waker.lock().unwrap().take() {
                w.wake();
            }
        }
    }

    /// A task waker that counts its wakes.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn when_woken_polls_its_future_first_and_then_only_after_its_wake() {
        let probe = Arc::new(Probe::default());
        let p = probe.clone();
        let inner = std::future::poll_fn(move |cx| {
            p.polls.fetch_add(1, Ordering::SeqCst);
            *p.waker.lock().unwrap() = Some(cx.waker().clone());
            if p.ready.load(Ordering::SeqCst) {
                Poll::Ready(7)
            } else {
                Poll::Pending
            }
        });
        let mut fut = WhenWoken::new(inner);
        let wakes = Arc::new(Wakes::default());
        let task = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&task);
        // The task wakes for other reasons a hundred times: one poll inside.
        for _ in 0..100 {
            assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
        }
        assert_eq!(probe.polls.load(Ordering::SeqCst), 1);
        // Its own wake reaches the task, and the next poll goes inside.
        probe.wake();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the task was woken");
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
        assert_eq!(probe.polls.load(Ordering::SeqCst), 2);
        // Ready after a wake: its output comes out.
        probe.ready.store(true, Ordering::SeqCst);
        probe.wake();
        assert_eq!(Pin::new(&mut fut).poll(&mut cx), Poll::Ready(7));
        assert_eq!(probe.polls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn signalled_before_and_after_start() {
        let d = Drain::default();
        let early = d.signalled();
        assert!(!d.is_draining());
        d.start();
        early.await;
        // A connection accepted after the start sees it at once.
        d.signalled().await;
        assert!(d.is_draining());
    }
}
