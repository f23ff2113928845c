//! Well-behaved clients through the proxy: rustls over a CONNECT tunnel, then
//! hyper HTTP/1.1 or h2, and the collected response ([`Got`]).
//!
//! Every CONNECT goes through [`super::raw::connect`] and every TLS handshake
//! through [`super::raw::try_tls`]; this module only chooses names, ALPN and
//! trust. What a normal client would not send belongs in [`super::raw`].

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::STEP;
use super::pki::{TestCa, root_store_from_pem};
use super::proxy::{Proxy, TestProxy};
use super::raw::{self, client_config, host_of, insecure_client_config, try_tls, tunnel};

/// The request body every client here sends.
pub type CBody = Full<Bytes>;

pub fn body(data: &'static str) -> CBody {
    Full::new(Bytes::from_static(data.as_bytes()))
}

pub fn empty() -> CBody {
    Full::new(Bytes::new())
}

pub fn request(method: &str, uri: &str) -> hyper::http::request::Builder {
    Request::builder().method(method).uri(uri)
}

fn alpn_bytes<'a>(alpn: &[&'a str]) -> Vec<&'a [u8]> {
    alpn.iter().map(|a| a.as_bytes()).collect()
}

// ------------------------------------------------------------------ CONNECT

/// CONNECT `target`: the stream and the answer head as text (empty when the
/// proxy closed without answering), so a refused CONNECT can be checked.
pub async fn connect(proxy: SocketAddr, target: &str) -> (TcpStream, String) {
    let (c, answer) = raw::connect_answer(proxy, target).await;
    let head = match answer {
        Ok(r) => {
            assert!(
                r.status != 200 || c.pending().is_empty(),
                "no bytes may follow the CONNECT 200 head"
            );
            r.head
        }
        // Closed before a whole head: what a refusal by closing looks like.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => String::new(),
        Err(e) => panic!("CONNECT {target}: {e}"),
    };
    (c.io, head)
}

/// CONNECT `target`; an error unless the proxy answered 200 with nothing after it.
pub async fn try_tunnel(proxy: SocketAddr, target: &str) -> std::io::Result<TcpStream> {
    let (c, answer) = raw::try_connect(proxy, target).await?;
    let r = answer?;
    if r.status != 200 || !c.pending().is_empty() {
        return Err(std::io::Error::other(format!(
            "CONNECT refused: {}",
            r.head
        )));
    }
    Ok(c.io)
}

// ---------------------------------------------------------------------- TLS

/// TLS over the tunnel, trusting `ca_pem`, with `sni` and `alpn`.
pub async fn tls(
    stream: TcpStream,
    ca_pem: &str,
    sni: &str,
    alpn: &[&str],
) -> std::io::Result<TlsStream<TcpStream>> {
    let cfg = client_config(root_store_from_pem(ca_pem.as_bytes()), &alpn_bytes(alpn));
    try_tls(stream, sni, cfg).await
}

/// TLS over the tunnel with any SNI, not verifying the leaf's name.
pub async fn tls_any_sni(stream: TcpStream, sni: &str, alpn: &[&str]) -> TlsStream<TcpStream> {
    try_tls(stream, sni, insecure_client_config(&alpn_bytes(alpn)))
        .await
        .expect("TLS with any certificate")
}

/// A TLS stream through the proxy at `addr` (whose CA is `ca_pem`) to `host:port`.
pub async fn tls_to(
    addr: SocketAddr,
    ca_pem: &str,
    host: &str,
    port: u16,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = try_tunnel(addr, &format!("{host}:{port}")).await?;
    let cfg = client_config(root_store_from_pem(ca_pem.as_bytes()), alpn);
    try_tls(tcp, host, cfg).await
}

/// A TLS stream through the child `proxy` to `host:port`.
pub async fn tls_through(
    proxy: &Proxy,
    host: &str,
    port: u16,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    tls_to(proxy.addr, &proxy.ca_pem, host, port, alpn).await
}

// -------------------------------------------------------------------- hyper

/// An HTTP/1.1 client connection over `io` (upgrades allowed).
pub async fn try_h1<I>(io: I) -> std::io::Result<http1::SendRequest<CBody>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(send)
}

/// An h2 client connection over `io`.
pub async fn try_h2<I>(io: I) -> std::io::Result<http2::SendRequest<CBody>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

pub async fn h1<I>(io: I) -> http1::SendRequest<CBody>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    try_h1(io).await.expect("h1 handshake")
}

pub async fn h2<I>(io: I) -> http2::SendRequest<CBody>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    try_h2(io).await.expect("h2 handshake through the proxy")
}

/// An HTTP/1.1 client over CONNECT + TLS trusting `ca`.
pub async fn h1_client(proxy: SocketAddr, ca: &TestCa, target: &str) -> http1::SendRequest<CBody> {
    let host = host_of(target);
    let tcp = tunnel(proxy, target).await;
    h1(raw::tls(tcp, &host, ca, &[b"http/1.1"]).await).await
}

/// An HTTP/2 client over CONNECT + TLS (ALPN h2 only). Panics if h2 is not agreed.
pub async fn h2_client(proxy: SocketAddr, ca: &TestCa, target: &str) -> http2::SendRequest<CBody> {
    let host = host_of(target);
    let tcp = tunnel(proxy, target).await;
    let tls = raw::tls(tcp, &host, ca, &[b"h2"]).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "the proxy must agree ALPN h2 when the client offers only h2"
    );
    h2(tls).await
}

/// An HTTP/1.1 client over TLS through the proxy at `addr` whose CA is `ca_pem`.
pub async fn h1_to(
    addr: SocketAddr,
    ca_pem: &str,
    host: &str,
    port: u16,
) -> std::io::Result<http1::SendRequest<CBody>> {
    try_h1(tls_to(addr, ca_pem, host, port, &[b"http/1.1"]).await?).await
}

/// An HTTP/1.1 client over TLS through the child `proxy`.
pub async fn h1_through(
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> std::io::Result<http1::SendRequest<CBody>> {
    h1_to(proxy.addr, &proxy.ca_pem, host, port).await
}

/// An HTTP/2 client over TLS through the child `proxy`.
pub async fn h2_through(
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> std::io::Result<http2::SendRequest<CBody>> {
    try_h2(tls_through(proxy, host, port, &[b"h2"]).await?).await
}

// ---------------------------------------------------------------- responses

/// A response with its body collected.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub version: hyper::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn decision(&self) -> Option<&str> {
        self.headers
            .get("x-egress-proxy-decision")
            .and_then(|v| v.to_str().ok())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    #[track_caller]
    pub fn assert_refused(&self, status: u16, reason: &str, what: &str) {
        assert_eq!(
            (self.status, self.decision()),
            (status, Some(reason)),
            "{what}: want {status} `{reason}`, got {} {:?} {:?}",
            self.status,
            self.decision(),
            String::from_utf8_lossy(&self.body)
        );
    }
}

/// Collects the body, bounded by `STEP`; a cut or stalled body is an error.
pub async fn try_collect(resp: Response<hyper::body::Incoming>) -> std::io::Result<Got> {
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(STEP, body.collect())
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "body timed out"))?
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok(Got {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

pub async fn collect(resp: Response<hyper::body::Incoming>) -> Got {
    try_collect(resp).await.expect("whole response body")
}

/// `GET path` on an HTTP/1 client, bounded by `STEP`.
pub async fn get1(
    send: &mut http1::SendRequest<CBody>,
    host: &str,
    path: &str,
) -> std::io::Result<Got> {
    let req = Request::get(path)
        .header("host", host)
        .body(empty())
        .map_err(std::io::Error::other)?;
    tokio::time::timeout(STEP, async {
        send.ready().await.map_err(std::io::Error::other)?;
        let resp = send
            .send_request(req)
            .await
            .map_err(std::io::Error::other)?;
        try_collect(resp).await
    })
    .await
    .map_err(|_| std::io::Error::other("request timed out"))?
}

/// One HTTPS request through the in-process proxy on a fresh tunnel (h1 or h2).
pub async fn https_get(
    proxy: &TestProxy,
    host: &str,
    port: u16,
    alpn: &str,
    req: Request<CBody>,
) -> Got {
    let (s, status) = connect(proxy.addr, &format!("{host}:{port}")).await;
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "CONNECT answered {status}"
    );
    let t = tls(s, &proxy.ca_pem, host, &[alpn])
        .await
        .expect("TLS with the proxy leaf");
    let resp = if alpn == "h2" {
        let mut s = h2(t).await;
        tokio::time::timeout(STEP, s.send_request(req)).await
    } else {
        let mut s = h1(t).await;
        tokio::time::timeout(STEP, s.send_request(req)).await
    };
    collect(resp.expect("response within STEP").expect("response")).await
}
