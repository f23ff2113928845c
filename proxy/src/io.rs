//! Stream wrappers: bytes already read in front of a stream, and the
//! client's TCP stream that closes without losing the last response.
//!
//! Owns: replaying bytes read while sniffing a tunnel (or past an upstream
//! proxy's reply) before the rest of the stream, and the lingering close of
//! client connections. Must never: drop or reorder bytes it passes on, or
//! pass on bytes read while lingering.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::limits::{LINGER_BYTES, LINGER_IDLE, LINGER_TOTAL};

/// `prefix` is read first, then `inner`; writes go to `inner`.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let rest = &this.prefix[this.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

/// Most bytes read from the socket at once for a reader that asks for less
/// (see [`ReadAhead`]).
pub const READ_AHEAD: usize = 64 * 1024;

/// Reads from `inner` in blocks of up to [`READ_AHEAD`] bytes once a read
/// shows the stream is busy, for a reader that asks for a few KiB at a time.
///
/// rustls asks for 4 KiB per read, so a 16 KiB record took five `read`
/// calls on a download. A read that fills what was asked for turns this on;
/// a read that would block turns it off and frees the block, so an idle
/// connection holds no buffer and a small exchange pays nothing.
pub struct ReadAhead<S> {
    buf: bytes::BytesMut,
    ahead: bool,
    inner: S,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        ReadAhead {
            buf: bytes::BytesMut::new(),
            ahead: false,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.buf.is_empty() {
            if !this.ahead || out.remaining() >= READ_AHEAD {
                let asked = out.remaining();
                let before = out.filled().len();
                let r = Pin::new(&mut this.inner).poll_read(cx, out);
                this.ahead = asked > 0
                    && matches!(r, Poll::Ready(Ok(())))
                    && out.filled().len() - before == asked;
                return r;
            }
            this.buf.reserve(READ_AHEAD);
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    this.buf = bytes::BytesMut::new();
                    this.ahead = false;
                    return Poll::Pending;
                }
            }
        }
        let n = this.buf.len().min(out.remaining());
        out.put_slice(&this.buf[..n]);
        bytes::Buf::advance(&mut this.buf, n);
        Poll::Ready(Ok(()))
    }
}

/// Implements `AsyncWrite` for a read-side wrapper `$ty<S>` with a field
/// `inner: S` by passing every write straight through: the wrappers here
/// only look at what the client sends.
macro_rules! write_through {
    ($ty:ident) => {
        impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $ty<S> {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
            }
            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_flush(cx)
            }
            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
            }
            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }
            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }
        }
    };
}

write_through!(Prefixed);
write_through!(ReadAhead);

/// A client's TCP stream that closes the way HTTP/1 needs (RFC 9112 §9.6,
/// nginx's lingering close): when dropped, it sends FIN and then reads and
/// discards what the client still sends, for a few seconds at most, before
/// closing. Closed at once, a socket with unread bytes (the body of a
/// refused request still in flight) answers with a TCP reset, and the
/// client's kernel throws away the refusal it had not read yet. The bytes
/// are never parsed or passed on. `guard` (the connection-limit permit)
/// lives until the socket is really closed.
///
/// A stream that has read the client's FIN has nothing left to discard:
/// it closes at once (most connections end so: the client closes first).
pub struct Lingering<G: Send + 'static> {
    inner: Option<tokio::net::TcpStream>,
    guard: Option<G>,
    /// A read returned end of stream.
    eof: bool,
    /// Our side was shut down (FIN sent) already.
    shut: bool,
}

impl<G: Send + 'static> Lingering<G> {
    pub fn new(inner: tokio::net::TcpStream, guard: G) -> Self {
        Lingering {
            inner: Some(inner),
            guard: Some(guard),
            eof: false,
            shut: false,
        }
    }
}

impl<G: Send + 'static> Drop for Lingering<G> {
    fn drop(&mut self) {
        let (Some(mut s), guard) = (self.inner.take(), self.guard.take()) else {
            return;
        };
        if self.eof {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shut = self.shut;
        rt.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            if !shut {
                let _ = s.shutdown().await;
            }
            let deadline = tokio::time::Instant::now() + LINGER_TOTAL;
            let mut left = LINGER_BYTES;
            let mut buf = vec![0u8; 8192];
            while left > 0 {
                let until = deadline.min(tokio::time::Instant::now() + LINGER_IDLE);
                match tokio::time::timeout_at(until, s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
                    _ => break,
                }
            }
            drop(guard);
        });
    }
}

impl<G: Send + 'static + Unpin> AsyncRead for Lingering<G> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let Some(s) = this.inner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let (asked, before) = (buf.remaining(), buf.filled().len());
        let r = Pin::new(s).poll_read(cx, buf);
        if asked > 0 && matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            this.eof = true;
        }
        r
    }
}

impl<G: Send + 'static + Unpin> tokio::io::AsyncWrite for Lingering<G> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let Some(s) = this.inner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let r = Pin::new(s).poll_shutdown(cx);
        this.shut |= matches!(r, Poll::Ready(Ok(())));
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Writes `data` in `chunks` (cycled) to one end of a pipe and reads it
    /// back through `ReadAhead` with reads of `asks` (cycled) bytes.
    async fn round_trip(data: Vec<u8>, chunks: Vec<usize>, asks: Vec<usize>) -> Vec<u8> {
        let (mut tx, rx) = tokio::io::duplex(256 * 1024);
        let writer = tokio::spawn(async move {
            let mut rest = &data[..];
            for &n in chunks.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (now, later) = rest.split_at(n.min(rest.len()));
                tx.write_all(now).await.expect("write");
                tokio::task::yield_now().await;
                rest = later;
            }
        });
        let mut rx = ReadAhead::new(rx);
        let mut got = Vec::new();
        for &n in asks.iter().cycle() {
            let mut buf = vec![0u8; n];
            let k = rx.read(&mut buf).await.expect("read");
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
        writer.await.expect("writer");
        got
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the writer's chunks and the reader's sizes, the bytes
        /// come out as they went in, none lost, none twice, then EOF.
        #[test]
        fn read_ahead_passes_every_byte_in_order(
            len in 0usize..300_000,
            chunks in proptest::collection::vec(1usize..100_000, 1..6),
            asks in proptest::collection::vec(1usize..70_000, 1..6),
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            let got = runtime().block_on(round_trip(data.clone(), chunks, asks));
            prop_assert_eq!(got.len(), data.len());
            prop_assert!(got == data);
        }
    }

    #[test]
    fn a_full_read_turns_read_ahead_on_and_a_blocked_read_frees_the_block() {
        runtime().block_on(async {
            let (mut tx, rx) = tokio::io::duplex(256 * 1024);
            let mut rx = ReadAhead::new(rx);
            tx.write_all(&[1u8; 40_000]).await.expect("write");
            let mut four = [0u8; 4096];
            // A small exchange reads straight into the caller's buffer.
            assert_eq!(rx.read(&mut four).await.expect("read"), 4096);
            assert_eq!(rx.buf.capacity(), 0, "the first read is direct");
            assert!(
                rx.ahead,
                "a read that filled the caller's buffer turns it on"
            );
            // The next read takes everything the socket has in one go.
            assert_eq!(rx.read(&mut four).await.expect("read"), 4096);
            assert_eq!(rx.buf.len(), 40_000 - 2 * 4096);
            let mut rest = vec![0u8; 40_000];
            let n = rx.read(&mut rest).await.expect("read");
            assert_eq!(n, 40_000 - 2 * 4096, "the block is drained first");
            // Nothing more to read: the read blocks and the block is freed.
            let blocked =
                tokio::time::timeout(std::time::Duration::from_millis(50), rx.read(&mut four))
                    .await;
            assert!(blocked.is_err(), "no bytes were sent");
            assert_eq!(rx.buf.capacity(), 0, "an idle stream holds no buffer");
            assert!(!rx.ahead);
            // A short read stays direct.
            tx.write_all(b"hello").await.expect("write");
            assert_eq!(rx.read(&mut four).await.expect("read"), 5);
            assert!(!rx.ahead);
            drop(tx);
            assert_eq!(rx.read(&mut four).await.expect("read"), 0, "EOF");
        });
    }

    /// Sets its flag when dropped: the connection-limit permit's stand-in.
    struct Permit(Arc<AtomicBool>);

    impl Drop for Permit {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A client socket and the proxy's side of it, as `Lingering`, with the
    /// flag its permit sets when released.
    async fn accepted() -> (tokio::net::TcpStream, Lingering<Permit>, Arc<AtomicBool>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = tokio::net::TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = l.accept().await.expect("accept");
        let released = Arc::new(AtomicBool::new(false));
        (
            client,
            Lingering::new(server, Permit(released.clone())),
            released,
        )
    }

    /// A client that closed first (its FIN read): nothing is left to discard,
    /// so the socket and its permit go at once, without a lingering task.
    #[test]
    fn a_stream_that_read_the_clients_fin_closes_at_once() {
        runtime().block_on(async {
            let (mut client, mut server, released) = accepted().await;
            client.write_all(b"request").await.expect("write");
            client.shutdown().await.expect("FIN");
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.expect("read");
            assert_eq!(got, b"request");
            drop(server);
            assert!(released.load(Ordering::SeqCst), "released in drop");
            let mut rest = Vec::new();
            client
                .read_to_end(&mut rest)
                .await
                .expect("our FIN, no reset");
        });
    }

    /// A client still sending when the proxy is done (a refused body in
    /// flight): the socket lingers, reading and discarding, and its permit
    /// is held until the client closes.
    #[test]
    fn a_stream_with_the_client_still_sending_lingers_until_it_closes() {
        runtime().block_on(async {
            let (mut client, server, released) = accepted().await;
            client.write_all(&[7u8; 1000]).await.expect("write");
            drop(server);
            assert!(!released.load(Ordering::SeqCst), "held while lingering");
            let mut rest = Vec::new();
            client
                .read_to_end(&mut rest)
                .await
                .expect("FIN from the proxy");
            client
                .write_all(&[7u8; 1000])
                .await
                .expect("still read, no reset");
            assert!(!released.load(Ordering::SeqCst), "still lingering");
            drop(client);
            for _ in 0..200 {
                if released.load(Ordering::SeqCst) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("the permit was not released after the client closed");
        });
    }
}
