//! Resource limits of the proxy, in one place.
//!
//! Owns: every bound of the request path (sizes, counts, timeouts): the ones
//! the CLI can change in `Limits`, with their defaults, and the fixed ones as
//! constants below. The leaf certificate's validity is not a resource bound:
//! it belongs to the certificate profile in `tls/leaf.rs`.
//! Must never: be read from the network; only the CLI may change `Limits`.

use std::time::Duration;

/// SPEC §5: a CONNECT line over 8 KiB is a 400.
pub const MAX_CONNECT_TARGET: usize = 8 * 1024;

/// The longest first head the proxy port reads itself to see whether it is
/// a plain `CONNECT` (a longer one is left to hyper and `h1scan`).
pub const FIRST_HEAD_MAX: usize = 4 * 1024;

/// hyper's default limit on the number of request headers (a head with more
/// is refused by the proxy before hyper sees it).
pub const MAX_HEADERS: usize = 100;

/// hyper's limit on chunk extension bytes per body.
pub const MAX_CHUNK_EXTENSIONS: u64 = 16 * 1024;

/// Scanner buffers above this are released between reads, so an idle
/// keep-alive connection does not keep a large read's memory.
pub const SCAN_KEEP_CAPACITY: usize = 16 * 1024;

/// The longest method token the tunnel sniffer takes for HTTP/1.
pub const MAX_SNIFFED_METHOD: usize = 16;

/// The largest reply head accepted from the upstream proxy.
pub const MAX_UPSTREAM_PROXY_REPLY: usize = 16 * 1024;

/// Lingering close of a client connection (`io::Lingering`): how long what
/// the client still sends is read and discarded, in all and between two
/// reads, and how many bytes at most.
pub const LINGER_TOTAL: Duration = Duration::from_secs(5);
pub const LINGER_IDLE: Duration = Duration::from_secs(2);
pub const LINGER_BYTES: usize = 16 << 20;

/// An h2 request refused with its body unread (`serve::linger_h2`): how long
/// the body is kept past the refusal, and how many of its bytes are read, so
/// the stream closes without a CANCEL that could overtake the refusal.
pub const REFUSED_H2_BODY_TIME: Duration = Duration::from_secs(2);
pub const REFUSED_H2_BODY_BYTES: usize = 64 * 1024;

/// An HTTP/1 tunnel with nothing in flight this long rests
/// (`connect::serve_h1`): hyper's connection and its buffers are freed until
/// the client's next bytes. Waking costs a new hyper connection, a few
/// microseconds, so a connection that goes quiet for longer than a request's
/// round trip loses nothing worth measuring; back-to-back requests never rest.
pub const REST_AFTER: Duration = Duration::from_millis(50);

/// How often a connection with a request in flight looks again whether it
/// may rest (`shutdown::Activity::idle_for_after`): a long response (a stream
/// of server-sent events, a download) would otherwise wake its connection
/// every `REST_AFTER`, 20 times a second, for nothing. Such a connection rests
/// up to this much later after its response ended.
pub const BUSY_RECHECK: Duration = Duration::from_secs(1);

/// After `accept` fails (EMFILE and the like), wait this long instead of spinning.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long a pooled HTTP/1 connection may take to become ready (its task
/// may not have seen the end of the last exchange yet) before a new one is opened.
pub const POOL_READY_WAIT: Duration = Duration::from_millis(200);

/// An HTTP/1 client's request goes to a TLS origin on an HTTP/1 connection
/// of its own (ALPN `http/1.1`), as the client spoke, while the origin has
/// fewer than this many such connections open; past that it shares the h2
/// connection like an h2 client's request. A request without a body does so
/// only while the origin's h2 connection carries no request: many small
/// requests in flight share that connection's system calls (S1 at C=64).
/// An upload over h2 goes in frames of the origin's choosing (16 KiB unless
/// it says otherwise: a write and a wake-up of the origin per 16 KiB) within
/// its flow-control window; over HTTP/1, in the pieces the client sent (S4u
/// in docs/benchmarks.md). A download over HTTP/1 comes in reads of up to 64
/// KiB whatever the origin's frames (S4s), and a lone request skips h2's
/// stream and task per request (S1 at C=1; round 16 in docs/benchmarks.md).
pub const UPSTREAM_H1_SPREAD: usize = 8;

/// One upstream h2 connection carries many clients' streams: a client that
/// stops reading must only stall its own stream. Per-stream flow control
/// bounds what one stream buffers (1 MiB: the smallest window at which a
/// download through the proxy stops waiting on window updates, S4 in
/// docs/benchmarks.md; 256 KiB gave 0.70x direct, 1, 2 and 8 MiB 0.84x).
pub const UPSTREAM_H2_STREAM_WINDOW: u32 = 1 << 20;
/// Made too large to be the limit, or a few unread streams would hold it and
/// starve every other stream (ops_hostile test).
pub const UPSTREAM_H2_CONNECTION_WINDOW: u32 = 1 << 30;
/// Lets the origin send DATA frames up to 1 MiB instead of 16 KiB: fewer
/// frames, wake-ups and window updates on large downloads (S4).
pub const UPSTREAM_H2_MAX_FRAME: u32 = 1 << 20;

/// Freed once at start to raise glibc's malloc thresholds (`main.rs`,
/// `raise_malloc_trim_threshold`): the heap keeps up to twice this free at
/// its top instead of 128 KiB. 4 MiB: a download's buffers in flight (one
/// 1 MiB stream window and the TLS and frame buffers around it) fit well
/// under it.
pub const MALLOC_THRESHOLD_BLOCK: usize = 4 << 20;

/// Every bound the proxy enforces. One struct so the CLI and later tasks
/// (limits flags, reload) have one place to change.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Maximum concurrent client connections (503 `overloaded` beyond).
    pub max_connections: usize,
    /// Maximum concurrent h2 streams per client connection.
    pub max_h2_streams: u32,
    /// Maximum request head size (431 beyond; SPEC §5, 64 KiB).
    pub max_head_bytes: usize,
    /// Time for a client to send a request head or finish a TLS handshake.
    pub header_read_timeout: Duration,
    /// Time for the first bytes inside a CONNECT tunnel.
    pub handshake_timeout: Duration,
    /// Idle keep-alive on client connections (h1 between requests).
    pub idle_timeout: Duration,
    /// Connect (TCP + upstream proxy CONNECT + TLS) timeout upstream.
    pub upstream_connect_timeout: Duration,
    /// Time from the request sent upstream to the response head.
    pub upstream_response_timeout: Duration,
    /// Idle pooled upstream connections older than this are dropped.
    pub pool_idle_timeout: Duration,
    /// Idle pooled HTTP/1 connections kept per origin.
    pub pool_max_idle_per_origin: usize,
    /// Leaf certificates kept in the cache.
    pub leaf_cache_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_h2_streams: 100,
            max_head_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            upstream_connect_timeout: Duration::from_secs(30),
            upstream_response_timeout: Duration::from_secs(120),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_origin: 32,
            leaf_cache_size: 10_000,
        }
    }
}
