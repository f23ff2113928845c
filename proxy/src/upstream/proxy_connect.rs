//! CONNECT through the upstream proxy (pipelock or squid in a bottle).
//!
//! Owns: opening the tunnel and reading the proxy's reply.
//! Must never: send a byte of the client's request before the proxy's 2xx
//! (CVE-2025-64763 class), resolve the origin's name, or pass the proxy's
//! `Proxy-Authenticate` on.

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::UpstreamError;
use crate::io::Prefixed;
use crate::limits::MAX_UPSTREAM_PROXY_REPLY;

/// Opens a tunnel to `target` (`host:port`) through the proxy at `proxy`.
pub async fn connect(proxy: &str, target: &str) -> Result<Prefixed<TcpStream>, UpstreamError> {
    let mut s = TcpStream::connect(proxy).await.map_err(|e| {
        UpstreamError::Unreachable(format!("cannot connect to the upstream proxy {proxy}: {e}"))
    })?;
    let _ = s.set_nodelay(true);
    let line = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    s.write_all(line.as_bytes()).await.map_err(|e| {
        UpstreamError::Unreachable(format!("upstream proxy {proxy}: write failed: {e}"))
    })?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = s.read(&mut chunk).await.map_err(|e| {
            UpstreamError::Unreachable(format!("upstream proxy {proxy}: read failed: {e}"))
        })?;
        if n == 0 {
            return Err(UpstreamError::Unreachable(format!(
                "upstream proxy {proxy} closed the connection before answering the CONNECT"
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = find_head_end(&buf) {
            break pos;
        }
        if buf.len() > MAX_UPSTREAM_PROXY_REPLY {
            return Err(UpstreamError::Unreachable(format!(
                "upstream proxy {proxy}: reply head too large"
            )));
        }
    };
    let status = parse_status(&buf[..end]).ok_or_else(|| {
        UpstreamError::Unreachable(format!(
            "upstream proxy {proxy}: malformed reply to CONNECT"
        ))
    })?;
    if !status.is_success() {
        return Err(UpstreamError::ProxyRefused(status));
    }
    // Bytes after the head belong to the tunnel (the origin speaks first only
    // in rare protocols; keep them rather than lose them).
    let rest = buf[end..].to_vec();
    Ok(Prefixed::new(rest, s))
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn parse_status(head: &[u8]) -> Option<StatusCode> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    StatusCode::from_bytes(code.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_parsing() {
        assert_eq!(
            parse_status(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some(StatusCode::OK)
        );
        assert_eq!(
            parse_status(b"HTTP/1.0 407 Auth\r\n\r\n"),
            Some(StatusCode::PROXY_AUTHENTICATION_REQUIRED)
        );
        assert_eq!(parse_status(b"SSH-2.0\r\n\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2000 x\r\n\r\n"), None);
    }
}
