//! Helpers for the proxy's own integration tests (`proxy_*.rs`): a test PKI,
//! a small HTTPS/HTTP origin on loopback that records what it received, the
//! proxy started in-process, and a rustls/hyper client going through CONNECT.
//! Real sockets and real TLS everywhere; nothing is mocked.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const T: Duration = Duration::from_secs(20);

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA and a leaf for `localhost` / 127.0.0.1, for the test origin.
pub struct OriginPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl OriginPki {
    pub fn new() -> OriginPki {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test origin CA");
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        OriginPki {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// What the origin received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body_len: usize,
}

/// A test origin (HTTPS with its own CA, or plain HTTP) on 127.0.0.1.
pub struct Origin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
    pub release: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type OBody = BoxBody<Bytes, Infallible>;

async fn origin_handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<tokio::sync::Notify>,
) -> Result<Response<OBody>, Infallible> {
    let mut req = req;
    if req.uri().path() == "/ws" {
        return Ok(websocket_echo(&mut req, &seen));
    }
    let (parts, body) = req.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        target,
        version: parts.version,
        headers: parts.headers.clone(),
        body_len: body.len(),
    });
    if path == "/sse" {
        // One event now, the next only after the test released it: the
        // client can only see the first one if the proxy streams.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(b"data: one\n\n"))))
                .await;
            let _ = tokio::time::timeout(T, release.notified()).await;
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(b"data: two\n\n"))))
                .await;
        });
        let stream = tokio_stream_from(rx);
        let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        resp.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        return Ok(resp);
    }
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::from(format!(
        "hello from origin: {} {}",
        parts.method,
        parts.uri.path()
    )))));
    let h = resp.headers_mut();
    h.insert("alt-svc", "h3=\":443\"".parse().unwrap());
    h.insert(
        "x-egress-proxy-decision",
        "forged-by-origin".parse().unwrap(),
    );
    h.insert("x-origin", "yes".parse().unwrap());
    Ok(resp)
}

/// Answers a WebSocket upgrade with 101 and echoes every message.
fn websocket_echo(req: &mut Request<Incoming>, seen: &Arc<Mutex<Vec<Seen>>>) -> Response<OBody> {
    seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        target: req.uri().to_string(),
        version: req.version(),
        headers: req.headers().clone(),
        body_len: 0,
    });
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes()))
        .unwrap_or_default();
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(up),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        use futures_util::{SinkExt, StreamExt};
        let (mut tx, mut rx) = ws.split();
        while let Some(Ok(m)) = rx.next().await {
            if m.is_text() || m.is_binary() {
                let _ = tx.send(m).await;
            }
        }
    });
    let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::new())));
    *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("connection", "upgrade".parse().unwrap());
    h.insert("sec-websocket-accept", key.parse().unwrap());
    resp
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl Origin {
    /// HTTPS origin offering `alpn` (e.g. `["h2","http/1.1"]`).
    pub async fn tls(pki: &OriginPki, alpn: &[&str]) -> Origin {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
        Self::start(Some(Arc::new(cfg))).await
    }

    /// Plain HTTP/1.1 origin.
    pub async fn plain() -> Origin {
        Self::start(None).await
    }

    async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let (s2, c2, r2) = (seen.clone(), connections.clone(), release.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                c2.fetch_add(1, Ordering::SeqCst);
                let (seen, release, tls) = (s2.clone(), r2.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc =
                        service_fn(move |req| origin_handle(req, seen.clone(), release.clone()));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(cfg) => {
                            let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await
                            else {
                                return;
                            };
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(s), svc)
                                .await;
                        }
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                                .await;
                        }
                    }
                });
            }
        });
        Origin {
            addr,
            seen,
            connections,
            release,
            task,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// The proxy running in-process.
pub struct TestProxy {
    pub running: egress_proxy::Running,
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub dir: tempfile::TempDir,
}

pub struct ProxySetup {
    pub routes: String,
    pub env: Vec<(String, String)>,
    pub upstream_ca: Option<String>,
    pub upstream_proxy: Option<String>,
    pub allow: Vec<String>,
    pub upstream_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
    /// Direct mode's resolver; the system's when `None`.
    pub resolver: Option<egress_proxy::upstream::resolve::Resolver>,
}

impl ProxySetup {
    pub fn new(routes: &str) -> ProxySetup {
        ProxySetup {
            routes: routes.into(),
            env: Vec::new(),
            upstream_ca: None,
            upstream_proxy: None,
            allow: vec!["127.0.0.0/8".into()],
            upstream_timeout: None,
            max_connections: None,
            resolver: None,
        }
    }

    pub async fn start(self) -> TestProxy {
        let dir = tempfile::tempdir().unwrap();
        let routes = dir.path().join("routes.yaml");
        std::fs::write(&routes, &self.routes).unwrap();
        let upstream_ca = self.upstream_ca.map(|pem| {
            let p = dir.path().join("upstream-ca.pem");
            std::fs::write(&p, pem).unwrap();
            p
        });
        let cert_out: PathBuf = dir.path().join("proxy-ca.pem");
        let mut limits = egress_proxy::limits::Limits::default();
        if let Some(t) = self.upstream_timeout {
            limits.upstream_response_timeout = t;
        }
        if let Some(m) = self.max_connections {
            limits.max_connections = m;
        }
        let config = egress_proxy::Config {
            routes,
            listen: "127.0.0.1:0".parse().unwrap(),
            ca: egress_proxy::CaSource::Ephemeral {
                cert_out: cert_out.clone(),
            },
            upstream_ca,
            upstream_proxy: self.upstream_proxy,
            allow_ranges: self.allow.iter().map(|a| a.parse().unwrap()).collect(),
            limits,
            env: self.env.into_iter().collect(),
            resolver: self.resolver.unwrap_or_default(),
        };
        let running = egress_proxy::start(config).await.expect("proxy starts");
        let ca_pem = std::fs::read_to_string(&cert_out).unwrap();
        TestProxy {
            addr: running.addr,
            running,
            ca_pem,
            dir,
        }
    }
}

/// Opens a CONNECT tunnel; returns the stream after the proxy's 200 and the
/// status line (so refusals of the CONNECT itself can be checked).
pub async fn connect(proxy: SocketAddr, target: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        let n = tokio::time::timeout(T, s.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    (s, text)
}

/// TLS over the tunnel, trusting `ca_pem`, with `sni` and `alpn`.
pub async fn tls(
    stream: TcpStream,
    ca_pem: &str,
    sni: &str,
    alpn: &[&str],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, stream)
        .await
}

/// A simple response: status, headers, whole body.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    pub fn decision(&self) -> Option<&str> {
        self.headers
            .get("x-egress-proxy-decision")
            .and_then(|v| v.to_str().ok())
    }
}

pub type CBody = BoxBody<Bytes, Infallible>;

pub fn body(data: &'static str) -> CBody {
    BodyExt::boxed(Full::new(Bytes::from_static(data.as_bytes())))
}

/// An HTTP/1.1 client connection over `io`.
pub async fn h1<I>(io: I) -> hyper::client::conn::http1::SendRequest<CBody>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    s
}

/// An h2 client connection over `io`.
pub async fn h2<I>(io: I) -> hyper::client::conn::http2::SendRequest<CBody>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    s
}

pub async fn collect(resp: Response<Incoming>) -> Got {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(T, resp.into_body().collect())
        .await
        .unwrap()
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

/// One HTTPS request through the proxy on a fresh tunnel (h1 or h2).
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
    if alpn == "h2" {
        let mut s = h2(t).await;
        let resp = tokio::time::timeout(T, s.send_request(req))
            .await
            .unwrap()
            .unwrap();
        collect(resp).await
    } else {
        let mut s = h1(t).await;
        let resp = tokio::time::timeout(T, s.send_request(req))
            .await
            .unwrap()
            .unwrap();
        collect(resp).await
    }
}

/// Routes for an origin on `localhost` with a credential.
pub fn routes_with_credential(extra: &str) -> String {
    format!(
        "unmatched: deny\nroutes:\n  - host: localhost\n    auth_scheme: Bearer\n    token_env: TEST_TOKEN\n    path_allowlist: [\"/allowed\", \"/sse\", \"/slow\", \"/ws\"]\n    path_denylist: [\"/allowed/secret\"]\n{extra}"
    )
}

pub const SECRET: &str = "s3cr3t-token-value-7f1c";

/// Test-only verifier: accepts any certificate (to send an SNI that differs
/// from the CONNECT host and see what the proxy does with the request).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS over the tunnel with any SNI, not verifying the leaf's name.
pub async fn tls_any_sni(
    stream: TcpStream,
    sni: &str,
    alpn: &[&str],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, stream)
        .await
        .unwrap()
}
