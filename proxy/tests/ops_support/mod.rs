//! Support of the operation tests (`ops_*.rs`): the real `egress-proxy`
//! binary as a child process, a loopback origin (TLS h1/h2 and plain HTTP)
//! with slow, streaming and SSE endpoints, and small real clients.
//!
//! Owns: child lifecycle (killed on drop, even when a test fails), log
//! capture, signals, RSS. Must never: print a test secret (failure messages
//! show log lines with every secret replaced).

#![allow(dead_code)]

use std::convert::Infallible;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// Generous bound for anything a test waits on.
pub const T: Duration = Duration::from_secs(20);

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------- the proxy

/// The binary running as a child, with its stderr captured line by line.
pub struct Proc {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub ca_pem: String,
    pub dir: tempfile::TempDir,
    pub routes: PathBuf,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    secrets: Vec<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start the proxy.
pub struct Opts {
    pub routes: String,
    /// Environment for the child (token variables); values are secrets.
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub admin: bool,
    pub upstream_ca: Option<String>,
}

impl Opts {
    pub fn new(routes: &str) -> Opts {
        Opts {
            routes: routes.into(),
            env: Vec::new(),
            args: Vec::new(),
            admin: false,
            upstream_ca: None,
        }
    }
    pub fn arg(mut self, a: &str) -> Opts {
        self.args.push(a.into());
        self
    }
}

impl Proc {
    /// Starts the proxy and waits for its JSON `listening` line.
    pub fn start(opts: Opts) -> Proc {
        let admin = opts.admin;
        let mut p = Proc::spawn(opts);
        let listening = p.wait_line(|v| v["msg"] == "listening", "the listening line");
        p.addr = listening["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("listening line names the address");
        if admin {
            let a = p.wait_line(
                |v| {
                    v["msg"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("admin listening"))
                },
                "admin line",
            );
            p.admin = a["admin"].as_str().and_then(|a| a.parse().ok());
        }
        p.ca_pem = std::fs::read_to_string(p.dir.path().join("proxy-ca.pem"))
            .expect("ephemeral CA written");
        p
    }

    /// Starts the proxy (its `--listen` given in `opts` as 127.0.0.1:`port`)
    /// and waits until the port accepts: for output formats other than JSON.
    pub fn start_unparsed(opts: Opts, port: u16) -> Proc {
        let mut p = Proc::spawn(opts);
        p.addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + T;
        while std::net::TcpStream::connect(p.addr).is_err() {
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("egress-proxy exited ({st}):\n{}", p.redacted());
            }
            assert!(
                Instant::now() < deadline,
                "proxy not listening on {}",
                p.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        p.ca_pem = std::fs::read_to_string(p.dir.path().join("proxy-ca.pem"))
            .expect("ephemeral CA written");
        p
    }

    fn spawn(opts: Opts) -> Proc {
        let dir = tempfile::tempdir().expect("temp dir");
        let routes = dir.path().join("routes.yaml");
        std::fs::write(&routes, &opts.routes).expect("write routes");
        let ca_out = dir.path().join("proxy-ca.pem");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_egress-proxy"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .arg("--routes")
            .arg(&routes)
            .args(["--allow-range", "127.0.0.0/8"])
            .arg("--ca-out")
            .arg(&ca_out);
        if let Some(pem) = &opts.upstream_ca {
            let p = dir.path().join("origin-ca.pem");
            std::fs::write(&p, pem).expect("write origin CA");
            cmd.arg("--upstream-ca").arg(p);
        }
        if opts.admin {
            cmd.args(["--admin-listen", "127.0.0.1:0"]);
        }
        if !opts.args.iter().any(|a| a == "--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(&opts.args);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn egress-proxy");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for out in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let secrets = opts.env.iter().map(|(_, v)| v.clone()).collect();
        Proc {
            addr: "0.0.0.0:0".parse().unwrap(),
            admin: None,
            ca_pem: String::new(),
            dir,
            routes,
            child,
            lines,
            secrets,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line written so far (stderr and stdout).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The lines parsed as JSON (non-JSON lines are skipped).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The access-log records (JSON format).
    pub fn access(&self) -> Vec<serde_json::Value> {
        self.json_lines()
            .into_iter()
            .filter(|v| v["msg"] == "request")
            .collect()
    }

    /// The output with secrets replaced, for failure messages.
    pub fn redacted(&self) -> String {
        let mut all = self.lines().join("\n");
        for s in &self.secrets {
            all = all.replace(s.as_str(), "<SECRET>");
        }
        all
    }

    /// Waits (bounded) for a JSON line matching `pred`.
    pub fn wait_line(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
        what: &str,
    ) -> serde_json::Value {
        let deadline = Instant::now() + T;
        loop {
            if let Some(v) = self.json_lines().into_iter().find(|v| pred(v)) {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "egress-proxy exited ({status}) before {what}:\n{}",
                    self.redacted()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {T:?}:\n{}",
                self.redacted()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Counts JSON lines matching `pred`.
    pub fn count(&self, pred: impl Fn(&serde_json::Value) -> bool) -> usize {
        self.json_lines().iter().filter(|v| pred(v)).count()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -s {sig} failed");
    }

    /// Waits up to `limit` for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Rewrites the routes file and sends SIGHUP.
    pub fn reload_with(&self, routes: &str) {
        // Write then rename: the proxy never reads a half-written file.
        let tmp = self.dir.path().join("routes.yaml.new");
        std::fs::write(&tmp, routes).expect("write routes");
        std::fs::rename(&tmp, &self.routes).expect("rename routes");
        self.signal("HUP");
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        roots_from_pem(&self.ca_pem)
    }
}

pub fn roots_from_pem(pem: &str) -> rustls::RootCertStore {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c.expect("PEM certificate")).expect("add root");
    }
    roots
}

// --------------------------------------------------------------- the origin

/// A loopback origin: TLS (h1 and h2, certificate for `localhost` and
/// 127.0.0.1 signed by `ca_pem`) and plain HTTP/1.1.
pub struct Origin {
    pub tls_port: u16,
    pub plain_port: u16,
    pub ca_pem: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

type OBody = BoxBody<Bytes, Infallible>;

fn text(s: String) -> OBody {
    Full::new(Bytes::from(s)).boxed()
}

/// `n` chunks of `size` bytes, one every `every`.
fn trickle(n: usize, size: usize, every: Duration, sse: bool) -> OBody {
    let stream = futures_util::stream::unfold(0usize, move |i| async move {
        if i >= n {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(every).await;
        }
        let data = if sse {
            Bytes::from(format!("data: event {i}\n\n"))
        } else {
            Bytes::from(vec![b'x'; size])
        };
        Some((Ok::<_, Infallible>(Frame::data(data)), i + 1))
    });
    StreamBody::new(stream).boxed()
}

fn query_num(q: &str, key: &str, default: usize) -> usize {
    q.split('&')
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn origin_answer(req: Request<hyper::body::Incoming>) -> Result<Response<OBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let q = req.uri().query().unwrap_or("").to_owned();
    // Drain the request body (bounded by the tests themselves).
    let _ = req.into_body().collect().await;
    let resp = match path.as_str() {
        // n chunks of 16 KiB, one every ms milliseconds.
        "/slow" => Response::builder()
            .header("content-type", "application/octet-stream")
            .body(trickle(
                query_num(&q, "n", 10),
                16 * 1024,
                Duration::from_millis(query_num(&q, "ms", 200) as u64),
                false,
            )),
        "/sse" => Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(trickle(
                query_num(&q, "n", 10),
                0,
                Duration::from_millis(query_num(&q, "ms", 300) as u64),
                true,
            )),
        // A large body sent as fast as the reader takes it.
        "/big" => Response::builder().body(text("y".repeat(query_num(&q, "kib", 1024) * 1024))),
        _ => Response::builder().body(text(format!("origin ok {path}\n"))),
    };
    Ok(resp.unwrap_or_else(|_| Response::new(text(String::new()))))
}

impl Origin {
    pub async fn start() -> Origin {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ops test origin CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf_cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let tls_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_port = tls_l.local_addr().unwrap().port();
        let plain_port = plain_l.local_addr().unwrap().port();
        let tls_task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = tls_l.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(s).await {
                        serve_origin(tls).await;
                    }
                });
            }
        });
        let plain_task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = plain_l.accept().await else {
                    continue;
                };
                tokio::spawn(serve_origin(s));
            }
        });
        Origin {
            tls_port,
            plain_port,
            ca_pem: ca_cert.pem(),
            tasks: vec![tls_task, plain_task],
        }
    }
}

async fn serve_origin<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: I) {
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service_fn(origin_answer))
        .await;
}

// ---------------------------------------------------------------- clients

/// Sends `CONNECT target` and reads the answer head; the stream is then the tunnel.
pub async fn connect(proxy: SocketAddr, target: &str) -> std::io::Result<TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(proxy).await?;
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await? == 0 || head.len() > 16 * 1024 {
            return Err(std::io::Error::other("CONNECT answer cut"));
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other(format!(
            "CONNECT refused: {}",
            String::from_utf8_lossy(&head)
        )));
    }
    Ok(s)
}

pub type CBody = BoxBody<Bytes, Infallible>;

pub fn empty() -> CBody {
    Full::new(Bytes::new()).boxed()
}

/// A TLS stream through the proxy to `host:port`, ALPN as given.
pub async fn tls_through(
    proxy: &Proc,
    host: &str,
    port: u16,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    tls_to(proxy.addr, &proxy.ca_pem, host, port, alpn).await
}

/// A TLS stream through the proxy at `addr` whose CA is `ca_pem`.
pub async fn tls_to(
    addr: SocketAddr,
    ca_pem: &str,
    host: &str,
    port: u16,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = connect(addr, &format!("{host}:{port}")).await?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots_from_pem(ca_pem))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let name =
        rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// An HTTP/1.1 client over TLS through the proxy.
pub async fn h1_through(
    proxy: &Proc,
    host: &str,
    port: u16,
) -> std::io::Result<hyper::client::conn::http1::SendRequest<CBody>> {
    let tls = tls_through(proxy, host, port, &[b"http/1.1"]).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(send)
}

/// An HTTP/1.1 client over TLS through the proxy at `addr`.
pub async fn h1_to(
    addr: SocketAddr,
    ca_pem: &str,
    host: &str,
    port: u16,
) -> std::io::Result<hyper::client::conn::http1::SendRequest<CBody>> {
    let tls = tls_to(addr, ca_pem, host, port, &[b"http/1.1"]).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(send)
}

/// An HTTP/2 client over TLS through the proxy.
pub async fn h2_through(
    proxy: &Proc,
    host: &str,
    port: u16,
) -> std::io::Result<hyper::client::conn::http2::SendRequest<CBody>> {
    let tls = tls_through(proxy, host, port, &[b"h2"]).await?;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(send)
}

/// Status, decision header and whole body of a response.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub decision: Option<String>,
    pub body: Vec<u8>,
}

pub async fn collect(resp: Response<hyper::body::Incoming>) -> std::io::Result<Got> {
    let status = resp.status().as_u16();
    let decision = resp
        .headers()
        .get("x-egress-proxy-decision")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes()
        .to_vec();
    Ok(Got {
        status,
        decision,
        body,
    })
}

/// `GET path` on an HTTP/1 client, bounded by `T`.
pub async fn get1(
    send: &mut hyper::client::conn::http1::SendRequest<CBody>,
    host: &str,
    path: &str,
) -> std::io::Result<Got> {
    let req = Request::get(path)
        .header("host", host)
        .body(empty())
        .map_err(std::io::Error::other)?;
    tokio::time::timeout(T, async {
        send.ready().await.map_err(std::io::Error::other)?;
        let resp = send
            .send_request(req)
            .await
            .map_err(std::io::Error::other)?;
        collect(resp).await
    })
    .await
    .map_err(|_| std::io::Error::other("request timed out"))?
}

/// A plain HTTP/1.1 request on the proxy port: `raw` is the whole request.
/// Returns the answer as text (read until the proxy closes or `T`).
pub async fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(raw).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A free-standing admin/proxy-port GET in origin form: (status, body).
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

pub fn path_of(p: &Path) -> String {
    p.display().to_string()
}

/// The `q`-quantile (0..=1) of `samples` (sorted in place).
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[i.min(samples.len() - 1)]
}
