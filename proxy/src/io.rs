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
pub(crate) use write_through;

write_through!(Prefixed);

/// A client's TCP stream that closes the way HTTP/1 needs (RFC 9112 §9.6,
/// nginx's lingering close): when dropped, it sends FIN and then reads and
/// discards what the client still sends, for a few seconds at most, before
/// closing. Closed at once, a socket with unread bytes (the body of a
/// refused request still in flight) answers with a TCP reset, and the
/// client's kernel throws away the refusal it had not read yet. The bytes
/// are never parsed or passed on. `guard` (the connection-limit permit)
/// lives until the socket is really closed.
pub struct Lingering<G: Send + 'static> {
    inner: Option<tokio::net::TcpStream>,
    guard: Option<G>,
}

impl<G: Send + 'static> Lingering<G> {
    pub fn new(inner: tokio::net::TcpStream, guard: G) -> Self {
        Lingering {
            inner: Some(inner),
            guard: Some(guard),
        }
    }
}

impl<G: Send + 'static> Drop for Lingering<G> {
    fn drop(&mut self) {
        let (Some(mut s), guard) = (self.inner.take(), self.guard.take()) else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = s.shutdown().await;
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
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
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
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
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
