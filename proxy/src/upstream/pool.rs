//! The pool of upstream client connections, shared by all clients: per
//! origin, its h2 connection and how many requests it carries, its idle
//! HTTP/1 connections, and the count of HTTP/1 connections opened for
//! HTTP/1 clients.
//!
//! Owns: checkout (h2 first unless asked for HTTP/1, then the most recent
//! idle HTTP/1 connection that is ready), checkin of a finished HTTP/1
//! exchange, the count of requests in flight on each h2 connection, and the
//! spread's count (`UPSTREAM_H1_SPREAD`).
//! Must never: hand out an HTTP/1 connection that is closed, idle past
//! `pool_idle_timeout` or not ready for a new request, or keep more than
//! `pool_max_idle_per_origin` idle ones per origin.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hyper::client::conn::{http1, http2};

use super::Origin;
use crate::body::BoxBody;
use crate::limits::{Limits, POOL_READY_WAIT, UPSTREAM_H1_SPREAD};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PoolKey {
    pub(super) origin: Origin,
    pub(super) h1_only: bool,
    pub(super) route_names_ip: bool,
}

pub(super) enum Conn {
    H1(http1::SendRequest<BoxBody>),
    /// Counted as one request in flight on the connection until the
    /// [`InFlight`] is dropped (with the response body, or on an error).
    H2(http2::SendRequest<BoxBody>, InFlight),
}

/// One request in flight on an h2 connection, from checkout until dropped.
pub(super) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct H2Entry {
    sender: http2::SendRequest<BoxBody>,
    in_flight: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Held {
    h1: HashMap<PoolKey, Vec<(http1::SendRequest<BoxBody>, Instant)>>,
    h2: HashMap<PoolKey, H2Entry>,
    /// HTTP/1 connections open (or opening) for HTTP/1 clients, per origin
    /// (`UPSTREAM_H1_SPREAD`).
    h1_open: HashMap<PoolKey, usize>,
}

pub(super) struct Pool {
    held: Mutex<Held>,
    idle_timeout: Duration,
    max_idle: usize,
}

/// One of an origin's HTTP/1 connections for HTTP/1 clients: counted from
/// the decision to open it until it fails to open or its task ends.
pub(super) struct H1Slot {
    pool: Weak<Pool>,
    key: PoolKey,
}

impl Drop for H1Slot {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        if let Ok(mut held) = pool.held.lock()
            && let Some(n) = held.h1_open.get_mut(&self.key)
        {
            *n -= 1;
            if *n == 0 {
                held.h1_open.remove(&self.key);
            }
        }
    }
}

impl Pool {
    pub(super) fn new(limits: &Limits) -> Arc<Pool> {
        Arc::new(Pool {
            held: Mutex::new(Held::default()),
            idle_timeout: limits.pool_idle_timeout,
            max_idle: limits.pool_max_idle_per_origin,
        })
    }

    /// A pooled connection for `key`: its h2 connection (unless `h1_only`),
    /// else an idle HTTP/1 one.
    pub(super) async fn checkout(&self, key: &PoolKey, h1_only: bool) -> Option<Conn> {
        loop {
            let candidate = {
                let mut held = self.held.lock().ok()?;
                if !h1_only && let Some(e) = held.h2.get(key) {
                    if !e.sender.is_closed() && e.sender.is_ready() {
                        return Some(Conn::H2(e.sender.clone(), InFlight::new(&e.in_flight)));
                    }
                    held.h2.remove(key);
                }
                let list = held.h1.get_mut(key)?;
                list.pop()
            };
            let (mut s, since) = candidate?;
            if s.is_closed() || since.elapsed() > self.idle_timeout {
                continue;
            }
            // The connection task may not have noticed the end of the last
            // exchange yet; give it a moment rather than opening a new one.
            if !s.is_ready() {
                let _ = tokio::time::timeout(POOL_READY_WAIT, s.ready()).await;
            }
            if s.is_ready() {
                return Some(Conn::H1(s));
            }
        }
    }

    /// Keeps an HTTP/1 connection whose exchange was read to its end.
    pub(super) fn checkin(&self, key: PoolKey, sender: http1::SendRequest<BoxBody>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut held) = self.held.lock() {
            let list = held.h1.entry(key).or_default();
            if list.len() < self.max_idle {
                list.push((sender, Instant::now()));
            }
        }
    }

    /// The origin's h2 connection, shared from now on, and the count of the
    /// request about to go on it.
    pub(super) fn insert_h2(&self, key: PoolKey, sender: http2::SendRequest<BoxBody>) -> Conn {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let first = InFlight::new(&in_flight);
        if let Ok(mut held) = self.held.lock() {
            held.h2.insert(
                key,
                H2Entry {
                    sender: sender.clone(),
                    in_flight,
                },
            );
        }
        Conn::H2(sender, first)
    }

    /// Whether `key`'s h2 connection carries a request now (the response
    /// body of one not yet read to its end or dropped).
    pub(super) fn h2_busy(&self, key: &PoolKey) -> bool {
        self.held.lock().is_ok_and(|held| {
            held.h2
                .get(key)
                .is_some_and(|e| e.in_flight.load(Ordering::Relaxed) > 0)
        })
    }

    /// Counts one more HTTP/1 connection for HTTP/1 clients to `key`'s
    /// origin, if it has room.
    pub(super) fn reserve_h1(self: &Arc<Self>, key: &PoolKey) -> Option<H1Slot> {
        let mut held = self.held.lock().ok()?;
        let open = held.h1_open.entry(key.clone()).or_default();
        if *open >= UPSTREAM_H1_SPREAD {
            return None;
        }
        *open += 1;
        Some(H1Slot {
            pool: Arc::downgrade(self),
            key: key.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spread counts connections from the decision to open them until
    /// they close, per origin, and forgets an origin with none open.
    #[test]
    fn the_spread_counts_open_connections_per_origin() {
        let pool = Pool::new(&Limits::default());
        let key = |host: &str| PoolKey {
            origin: Origin {
                host: host.into(),
                port: 443,
                tls: true,
            },
            h1_only: true,
            route_names_ip: false,
        };
        let a = key("a.example");
        let mut slots: Vec<H1Slot> = (0..UPSTREAM_H1_SPREAD)
            .map(|_| pool.reserve_h1(&a).expect("room"))
            .collect();
        assert!(pool.reserve_h1(&a).is_none(), "the spread is full");
        let b = pool
            .reserve_h1(&key("b.example"))
            .expect("another origin has its own");
        slots.pop();
        let again = pool
            .reserve_h1(&a)
            .expect("a closed connection frees its place");
        assert!(pool.reserve_h1(&a).is_none());
        drop((slots, again, b));
        assert!(pool.held.lock().unwrap().h1_open.is_empty());
    }
}
