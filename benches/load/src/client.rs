//! The load generator's client: one HTTPS connection to the origin, either direct or
//! through an HTTP proxy (CONNECT, then TLS to the proxy's minted leaf), driven with hyper.
//!
//! Owns connection set-up and one checked request. It must never print the token: in
//! direct mode it sends the real credential itself (what an agent without a proxy would
//! do); through a proxy it sends a placeholder that the proxy must replace, and the
//! origin's `x-auth` says whether the real one arrived.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use hyper::body::Body;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::slices::Slices;

/// Bound on any single step (connect, CONNECT reply, handshake, response head).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the load goes.
#[derive(Clone)]
pub struct Target {
    /// `None`: straight to the origin.
    pub proxy: Option<SocketAddr>,
    pub origin_port: u16,
    /// Trusts the proxy CA (through a proxy) or the origin CA (direct).
    pub tls: Arc<rustls::ClientConfig>,
    /// Sent as `Authorization`: the real value direct, a placeholder through a proxy.
    pub auth: HeaderValue,
    /// Hosts with the credential route (only 127.0.0.1) must answer `x-auth: match`.
    pub cred_host: Ipv4Addr,
}

/// A client TLS config: full handshakes only (no resumption, so S2 measures what a fresh
/// client process pays), ALPN http/1.1.
pub fn tls_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// One client connection; `B` is its request body type (`Slices` for S4u).
pub struct Conn<B = Empty<Bytes>> {
    pub send: SendRequest<B>,
    pub host: Ipv4Addr,
    task: tokio::task::JoinHandle<()>,
}

impl<B> Drop for Conn<B> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn step<T>(what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .with_context(|| format!("{what}: timed out after {STEP_TIMEOUT:?}"))?
}

/// Opens a connection (CONNECT through the proxy if any), TLS, HTTP/1.1.
pub async fn connect<B>(t: &Target, host: Ipv4Addr) -> Result<Conn<B>>
where
    B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let authority = format!("{host}:{}", t.origin_port);
    let mut tcp = step("tcp connect", async {
        let addr = t
            .proxy
            .unwrap_or_else(|| SocketAddr::from((host, t.origin_port)));
        Ok(TcpStream::connect(addr).await?)
    })
    .await?;
    tcp.set_nodelay(true)?;
    if t.proxy.is_some() {
        step("CONNECT", async {
            tcp.write_all(
                format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes(),
            )
            .await?;
            read_connect_reply(&mut tcp).await
        })
        .await?;
    }
    let tls = step("TLS handshake", async {
        let name = ServerName::IpAddress(std::net::IpAddr::V4(host).into());
        Ok(TlsConnector::from(t.tls.clone()).connect(name, tcp).await?)
    })
    .await?;
    let (send, conn) = step("HTTP/1.1 handshake", async {
        Ok(hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?)
    })
    .await?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { send, host, task })
}

/// Reads the proxy's reply to CONNECT byte by byte up to the blank line (so no TLS byte
/// is consumed), and requires a 2xx.
async fn read_connect_reply(tcp: &mut TcpStream) -> Result<()> {
    let mut head = Vec::with_capacity(128);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            bail!("CONNECT reply head over 8 KiB");
        }
        if tcp.read(&mut b).await? == 0 {
            bail!("proxy closed the connection before answering CONNECT");
        }
        head.push(b[0]);
    }
    let line = head.split(|&c| c == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let ok = line
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2'));
    if !ok {
        bail!("proxy refused CONNECT: {line}");
    }
    Ok(())
}

/// What a checked request returned.
pub struct Got {
    pub body: hyper::body::Incoming,
}

/// Sends `GET path` and checks status 200 and, on the credential host, that the real
/// credential reached the origin. Returns the body unread.
pub async fn get(t: &Target, c: &mut Conn, path: &str) -> Result<Got> {
    let req = Request::get(path)
        .header(http::header::HOST, format!("{}:{}", c.host, t.origin_port))
        .header(http::header::AUTHORIZATION, t.auth.clone())
        .body(Empty::<Bytes>::new())?;
    send_checked(t, c, path, req).await
}

async fn send_checked<B>(t: &Target, c: &mut Conn<B>, path: &str, req: Request<B>) -> Result<Got>
where
    B: Body + 'static,
{
    let resp = step("response head", async {
        c.send.ready().await?;
        Ok(c.send.send_request(req).await?)
    })
    .await?;
    if resp.status() != http::StatusCode::OK {
        let decision = resp
            .headers()
            .get("x-egress-proxy-decision")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        bail!("status {} (decision {decision}) for {path}", resp.status());
    }
    if c.host == t.cred_host {
        let auth = resp
            .headers()
            .get("x-auth")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        if auth != "match" {
            bail!("credential not injected: origin saw Authorization {auth}");
        }
    }
    Ok(Got {
        body: resp.into_body(),
    })
}

/// `get` and read the whole body; returns its length.
pub async fn get_all(t: &Target, c: &mut Conn, path: &str) -> Result<u64> {
    let got = get(t, c, path).await?;
    step("response body", async {
        let mut body = got.body;
        let mut n = 0u64;
        while let Some(f) = body.frame().await {
            if let Some(d) = f?.data_ref() {
                n += d.len() as u64;
            }
        }
        Ok(n)
    })
    .await
}

/// `POST /sink` with `body` (bounded by `limit`); checks the answer as `get` does and
/// returns the byte count the origin says it read. The origin answers after the last
/// byte, so the response head's step bound (`STEP_TIMEOUT`) covers the upload too.
pub async fn post_sink(
    t: &Target,
    c: &mut Conn<Slices>,
    body: Slices,
    limit: Duration,
) -> Result<u64> {
    let req = Request::post("/sink")
        .header(http::header::HOST, format!("{}:{}", c.host, t.origin_port))
        .header(http::header::AUTHORIZATION, t.auth.clone())
        .body(body)?;
    let sent = tokio::time::timeout(limit, async {
        let got = send_checked(t, c, "/sink", req).await?;
        Ok::<_, anyhow::Error>(got.body.collect().await?.to_bytes())
    })
    .await
    .with_context(|| format!("upload: timed out after {limit:?}"))??;
    let text = std::str::from_utf8(&sent).context("upload: the origin's count is not text")?;
    text.trim()
        .parse()
        .with_context(|| format!("upload: the origin answered {text:?}, not a byte count"))
}
