//! Raw-socket clients (tokio TcpStream + tokio-rustls) for what a normal client
//! would not send, and the one CONNECT every client in this support library uses.
//!
//! Responses are parsed by hand here on purpose: the bytes the proxy wrote are what
//! is asserted, with no client library smoothing them over.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::STEP;
use super::pki::TestCa;

// The hyper clients lived here once; their old paths keep working.
pub use super::clients::{Got as Collected, collect, empty, h1_client, h2_client, request};

#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The head as received (status line and header lines).
    pub head: String,
    pub status: u16,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// True when no body could follow (HEAD, 1xx/204/304, a CONNECT's 2xx).
    pub no_body: bool,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn decision(&self) -> Option<&str> {
        self.header("x-egress-proxy-decision")
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Asserts a proxy refusal: status, reason header, `text/plain` body.
    #[track_caller]
    pub fn assert_refused(&self, status: u16, reason: &str, what: &str) {
        assert_eq!(
            (self.status, self.decision()),
            (status, Some(reason)),
            "{what}: want {status} `{reason}`; got {} {:?} body {:?}",
            self.status,
            self.decision(),
            self.body_text()
        );
        let ct = self.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("text/plain"),
            "{what}: a refusal is text/plain, got {ct:?}"
        );
        assert!(
            self.no_body || !self.body.is_empty(),
            "{what}: a refusal says why in its body"
        );
    }
    #[track_caller]
    pub fn assert_allowed(&self, what: &str) {
        assert!(
            (200..300).contains(&self.status) && self.decision().is_none(),
            "{what}: want an allowed 2xx without decision header; got {} {:?} body {:?}",
            self.status,
            self.decision(),
            self.body_text()
        );
    }
}

/// A byte stream with a read buffer, so pipelined responses can be read in turn.
pub struct Conn<S> {
    pub io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(io: S) -> Self {
        Conn {
            io,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut tmp = [0u8; 16384];
        let n = tokio::time::timeout(STEP, self.io.read(&mut tmp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Reads one response; `head_request` for a HEAD (no body follows).
    pub async fn read_response(&mut self, head_request: bool) -> std::io::Result<RawResponse> {
        self.read_response_with(|status| {
            head_request || status < 200 || status == 204 || status == 304
        })
        .await
    }

    /// Reads the answer to a CONNECT: a 2xx has no body, a refusal has one.
    pub async fn read_connect_answer(&mut self) -> std::io::Result<RawResponse> {
        self.read_response_with(|status| (200..300).contains(&status) || status < 200)
            .await
    }

    async fn read_response_with(
        &mut self,
        no_body: impl Fn(u16) -> bool,
    ) -> std::io::Result<RawResponse> {
        loop {
            let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n");
            if let Some(end) = end {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let mut lines = head.split("\r\n");
                let status_line = lines.next().unwrap_or("");
                let mut parts = status_line.splitn(3, ' ');
                let version = parts.next().unwrap_or("").to_string();
                let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("bad status line {status_line:?}"),
                    )
                })?;
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                let mut resp = RawResponse {
                    head: head.clone(),
                    status,
                    version,
                    headers,
                    body: Vec::new(),
                    no_body: no_body(status),
                };
                if resp.no_body {
                    return Ok(resp);
                }
                let chunked = resp
                    .header("transfer-encoding")
                    .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
                if chunked {
                    resp.body = self.read_chunked().await?;
                } else if let Some(len) = resp.header("content-length") {
                    let len: usize = len.parse().map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, "bad content-length")
                    })?;
                    while self.buf.len() < len {
                        if self.fill().await? == 0 {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    resp.body = self.buf.drain(..len).collect();
                } else {
                    while self.fill().await? != 0 {}
                    resp.body = std::mem::take(&mut self.buf);
                }
                return Ok(resp);
            }
            if self.buf.len() > 1 << 20 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "response head over 1 MiB",
                ));
            }
            if self.fill().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    async fn read_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if self.fill().await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            self.buf.drain(..line_end + 2);
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk"))?;
            if size == 0 {
                // Trailers end with an empty line.
                loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        let empty = i == 0;
                        self.buf.drain(..i + 2);
                        if empty {
                            return Ok(body);
                        }
                        continue;
                    }
                    if self.fill().await? == 0 {
                        return Ok(body);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if self.fill().await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// True when the peer closes (EOF or reset) within `STEP` without sending more
    /// than `max_junk` bytes.
    pub async fn is_closed(&mut self) -> bool {
        loop {
            match self.fill().await {
                Ok(0) => return true,
                Ok(_) if self.buf.len() > 64 * 1024 => return false,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
                Err(_) => return true,
            }
        }
    }

    /// Bytes received and not yet consumed.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

/// Opens a TCP connection to the proxy (bounded by `STEP`).
pub async fn try_dial(proxy: SocketAddr) -> std::io::Result<TcpStream> {
    let s = tokio::time::timeout(STEP, TcpStream::connect(proxy))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = s.set_nodelay(true);
    Ok(s)
}

pub async fn dial(proxy: SocketAddr) -> TcpStream {
    try_dial(proxy).await.expect("connect to proxy")
}

/// The one CONNECT: sends `CONNECT target` on a fresh connection and reads the
/// proxy's answer (head, and the body of a refusal). The outer error is the
/// dial or the send; the inner one a missing or stalled answer.
pub async fn try_connect(
    proxy: SocketAddr,
    target: &str,
) -> std::io::Result<(Conn<TcpStream>, std::io::Result<RawResponse>)> {
    let mut c = Conn::new(try_dial(proxy).await?);
    c.send(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await?;
    let answer = c.read_connect_answer().await;
    Ok((c, answer))
}

/// [`try_connect`] that must reach the proxy; the answer may still be missing.
pub async fn connect_answer(
    proxy: SocketAddr,
    target: &str,
) -> (Conn<TcpStream>, std::io::Result<RawResponse>) {
    try_connect(proxy, target)
        .await
        .expect("dial the proxy and send CONNECT")
}

/// Sends `CONNECT target` and reads the proxy's answer.
pub async fn connect(proxy: SocketAddr, target: &str) -> (Conn<TcpStream>, RawResponse) {
    let (c, answer) = connect_answer(proxy, target).await;
    (c, answer.expect("CONNECT answer"))
}

/// CONNECT that must be answered 200; returns the TCP stream ready for TLS.
pub async fn tunnel(proxy: SocketAddr, target: &str) -> TcpStream {
    let (c, r) = connect(proxy, target).await;
    assert_eq!(
        r.status, 200,
        "CONNECT {target} must be answered 200: {r:?}"
    );
    assert!(
        c.pending().is_empty(),
        "no bytes may follow the CONNECT 200 head"
    );
    c.io
}

/// A client config trusting `roots`, offering `alpn`.
pub fn client_config(roots: rustls::RootCertStore, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut cfg = rustls::ClientConfig::builder_with_provider(super::pki::provider())
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

/// A config that accepts any server certificate: only for tests that must send an
/// SNI different from the name the proxy's leaf is for.
pub fn insecure_client_config(alpn: &[&[u8]]) -> rustls::ClientConfig {
    let provider = super::pki::provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS over a tunnel, verifying the leaf against `ca` for `sni`.
pub async fn tls(
    stream: TcpStream,
    sni: &str,
    ca: &TestCa,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    try_tls(stream, sni, client_config(ca.root_store(), alpn))
        .await
        .unwrap_or_else(|e| panic!("TLS to the proxy's leaf for {sni:?} failed: {e}"))
}

pub async fn try_tls(
    stream: TcpStream,
    sni: &str,
    cfg: rustls::ClientConfig,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from(sni.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    tokio::time::timeout(STEP, connector.connect(name, stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// CONNECT `target`, TLS with SNI = host of `target`, send `raw`, read one response.
pub async fn tls_exchange(proxy: SocketAddr, ca: &TestCa, target: &str, raw: &[u8]) -> RawResponse {
    let mut c = tls_conn(proxy, ca, target).await;
    c.send(raw).await.expect("send request");
    c.read_response(raw.starts_with(b"HEAD "))
        .await
        .expect("read response")
}

/// Like [`tls_exchange`], but a missing response is an error, not a panic.
pub async fn try_tls_exchange(
    proxy: SocketAddr,
    ca: &TestCa,
    target: &str,
    raw: &[u8],
) -> std::io::Result<RawResponse> {
    let mut c = tls_conn(proxy, ca, target).await;
    c.send(raw).await?;
    c.read_response(raw.starts_with(b"HEAD ")).await
}

/// CONNECT `target` and TLS (HTTP/1.1 ALPN) with SNI = its host.
pub async fn tls_conn(proxy: SocketAddr, ca: &TestCa, target: &str) -> Conn<TlsStream<TcpStream>> {
    let host = host_of(target);
    let tcp = tunnel(proxy, target).await;
    Conn::new(tls(tcp, &host, ca, &[b"http/1.1"]).await)
}

/// Plain (no TLS) request straight to the proxy port: absolute-form or origin-form.
pub async fn plain_exchange(proxy: SocketAddr, raw: &[u8]) -> RawResponse {
    let mut c = Conn::new(dial(proxy).await);
    c.send(raw).await.expect("send request");
    c.read_response(raw.starts_with(b"HEAD "))
        .await
        .expect("read response")
}

/// The host part of `host:port` or `[v6]:port`, brackets removed.
pub fn host_of(target: &str) -> String {
    if let Some(rest) = target.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_string();
    }
    target
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(target)
        .to_string()
}

/// A whole request on a fresh connection to `addr`: the answer as text, read
/// until the peer closes or `STEP` passes.
pub async fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> std::io::Result<String> {
    let mut s = try_dial(addr).await?;
    s.write_all(raw).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, s.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// An origin-form GET (admin port, or the proxy port itself): (status, body).
pub async fn plain_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let text = raw_exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Waits a little so anything the proxy would wrongly forward has time to land.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// A listener on `ip:port` standing for a place the proxy must never dial;
/// counts the connections it accepts.
pub async fn canary(ip: &str, port: u16) -> Arc<AtomicUsize> {
    let l = tokio::net::TcpListener::bind((ip, port))
        .await
        .unwrap_or_else(|e| panic!("bind the canary on {ip}:{port}: {e}"));
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nCANARY")
                .await;
        }
    });
    hits
}

/// A plain-HTTP proxy request to `host:port`; returns (status, decision, body).
pub async fn proxy_get(proxy: SocketAddr, host: &str, port: u16) -> (u16, String, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(
        format!(
            "GET http://{host}:{port}/echo/x HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(super::T, s.read_to_end(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let decision = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-egress-proxy-decision:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, decision, body)
}
