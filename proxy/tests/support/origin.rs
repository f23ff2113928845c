//! The test origin: one server on loopback with an HTTPS listener (a leaf for
//! `localhost`, `127.0.0.1` and `::1` from its own [`TestCa`]) and a plain HTTP
//! listener, recording every connection and request it sees so a test can assert
//! "the origin saw nothing" or "the origin saw the injected credential".
//!
//! What it answers depends on the [`Answers`] it was started with: the endpoint
//! sets differ because the tests assert on their bodies, but the listeners, TLS,
//! recording ([`Seen`]) and the WebSocket echo are the same for all.
//!
//! It must never print header values: tests read [`Seen`] and compare in memory.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::pki::TestCa;

type Body = BoxBody<Bytes, std::io::Error>;

/// Which endpoints the origin answers. Any request carrying
/// `Upgrade: websocket` gets the WebSocket echo (101) whatever the kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answers {
    /// For the black-box tests ([`Origin::start`]); any other path echoes
    /// `echo METHOD PATH body=N`:
    /// - `/sse`: one event, then waits for [`Origin::release_sse`] (or 15 s)
    ///   before the last one, so a test proves streaming without timing asserts.
    /// - `/large?bytes=N`: N bytes streamed in 64 KiB chunks.
    /// - `/echo/mirror`: the request body, byte for byte.
    /// - `/no-101`: answers a WebSocket upgrade with a plain 200 (no switch).
    /// - `/dirty`: a response carrying `Alt-Svc` and `x-egress-proxy-decision`.
    /// - `/git/...`: `git http-backend` (CGI) over a bare repo, receive-pack
    ///   enabled, so a push that got through would really land.
    Echo,
    /// For the in-process tests ([`Origin::hello`]); every answer is
    /// `hello from origin: METHOD PATH` carrying `Alt-Svc`, a forged
    /// `x-egress-proxy-decision` and `x-origin: yes`:
    /// - `/sse`: `data: one`, then `data: two` after [`Origin::release_one`] (or 20 s).
    /// - `/slow`: answers after 30 s.
    Hello,
    /// For the operation tests ([`Origin::streaming`]); any other path answers
    /// `origin ok PATH`:
    /// - `/slow?n=N&ms=M`: N chunks of 16 KiB, one every M ms (10, 200).
    /// - `/sse?n=N&ms=M`: N events `data: event I`, one every M ms (10, 300).
    /// - `/big?kib=N`: N KiB as fast as the reader takes them (1024).
    Stream,
}

/// One request as the origin received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub tls: bool,
    /// The TLS cipher suite the connection negotiated (`None`: cleartext).
    pub suite: Option<rustls::CipherSuite>,
    /// The key exchange group it negotiated (`None`: cleartext).
    pub group: Option<rustls::NamedGroup>,
    pub method: String,
    /// The raw path and query exactly as received.
    pub path: String,
    /// `:authority` (h2) or the absolute-form authority, when present.
    pub authority: Option<String>,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body_len: usize,
    /// Which accepted TCP connection carried it (1-based, across both listeners).
    pub conn: usize,
}

impl Seen {
    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(|v| v.as_bytes())
    }
    pub fn header_count(&self, name: &str) -> usize {
        self.headers.get_all(name).iter().count()
    }
}

struct State {
    answers: Answers,
    seen: Mutex<Vec<Seen>>,
    conns: AtomicUsize,
    release: Notify,
    git_root: PathBuf,
}

pub struct Origin {
    pub https: SocketAddr,
    pub http: SocketAddr,
    /// The CA of the HTTPS leaf (what the proxy must trust).
    pub ca: Arc<TestCa>,
    /// The origin CA certificate on disk (for `--upstream-ca`).
    pub ca_file: PathBuf,
    pub git_root: PathBuf,
    state: Arc<State>,
    _dir: tempfile::TempDir,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Origin {
    /// [`Answers::Echo`] with a fresh CA, offering h2 and http/1.1.
    pub async fn start() -> Origin {
        let ca = Arc::new(TestCa::new("egress test origin CA"));
        Self::launch(Answers::Echo, ca, &["h2", "http/1.1"]).await
    }

    /// [`Answers::Echo`] whose TLS side offers only `http/1.1` (a proxy speaking
    /// h2 to its client must downgrade to reach it).
    pub async fn start_h1_only() -> Origin {
        let ca = Arc::new(TestCa::new("egress test origin CA"));
        Self::launch(Answers::Echo, ca, &["http/1.1"]).await
    }

    /// [`Answers::Hello`] with a leaf from `ca`, offering `alpn` on TLS.
    pub async fn hello(ca: &Arc<TestCa>, alpn: &[&str]) -> Origin {
        Self::launch(Answers::Hello, ca.clone(), alpn).await
    }

    /// [`Answers::Stream`] with a fresh CA, offering h2 and http/1.1.
    pub async fn streaming() -> Origin {
        // The operation tests build some clients with the process default provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = Arc::new(TestCa::new("ops test origin CA"));
        Self::launch(Answers::Stream, ca, &["h2", "http/1.1"]).await
    }

    async fn launch(answers: Answers, ca: Arc<TestCa>, alpn: &[&str]) -> Origin {
        let dir = tempfile::tempdir().expect("origin temp dir");
        let ca_file = dir.path().join("origin-ca.pem");
        std::fs::write(&ca_file, &ca.cert_pem).expect("write origin CA");
        let (cert_pem, key_pem) = ca.leaf(&["localhost", "127.0.0.1", "::1"]);
        let git_root = dir.path().join("git");
        std::fs::create_dir_all(&git_root).expect("git root");

        let acceptor = tls_acceptor(&cert_pem, &key_pem, alpn);
        let state = Arc::new(State {
            answers,
            seen: Mutex::new(Vec::new()),
            conns: AtomicUsize::new(0),
            release: Notify::new(),
            git_root: git_root.clone(),
        });
        let https_l = TcpListener::bind("127.0.0.1:0").await.expect("bind https");
        let http_l = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let https = https_l.local_addr().expect("addr");
        let http = http_l.local_addr().expect("addr");
        let mut tasks = Vec::new();
        {
            let state = state.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = https_l.accept().await else {
                        continue;
                    };
                    let conn = state.conns.fetch_add(1, Ordering::SeqCst) + 1;
                    let acceptor = acceptor.clone();
                    let state = state.clone();
                    tokio::spawn(async move {
                        let _ = tcp.set_nodelay(true);
                        let Ok(Ok(tls)) =
                            tokio::time::timeout(super::STEP, acceptor.accept(tcp)).await
                        else {
                            return;
                        };
                        let c = tls.get_ref().1;
                        let negotiated = Negotiated {
                            suite: c.negotiated_cipher_suite().map(|s| s.suite()),
                            group: c.negotiated_key_exchange_group().map(|g| g.name()),
                        };
                        serve(TokioIo::new(tls), state, conn, Some(negotiated)).await;
                    });
                }
            }));
        }
        {
            let state = state.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = http_l.accept().await else {
                        continue;
                    };
                    let conn = state.conns.fetch_add(1, Ordering::SeqCst) + 1;
                    let state = state.clone();
                    tokio::spawn(async move {
                        let _ = tcp.set_nodelay(true);
                        serve(TokioIo::new(tcp), state, conn, None).await;
                    });
                }
            }));
        }
        Origin {
            https,
            http,
            ca,
            ca_file,
            git_root,
            state,
            _dir: dir,
            tasks,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("seen lock").clone()
    }

    /// Forgets the recorded requests (keeps memory flat in benchmarks).
    pub fn clear_seen(&self) {
        self.state.seen.lock().expect("seen lock").clear();
    }

    /// TCP connections accepted so far, TLS and plain.
    pub fn connections(&self) -> usize {
        self.state.conns.load(Ordering::SeqCst)
    }

    /// [`Answers::Echo`]: lets every waiting `/sse` stream send its last event.
    pub fn release_sse(&self) {
        self.state.release.notify_waiters();
    }

    /// [`Answers::Hello`]: lets one `/sse` stream send its second event (a
    /// release before the stream waits is kept for it).
    pub fn release_one(&self) {
        self.state.release.notify_one();
    }

    /// Asserts that no request and no TCP connection reached the origin.
    pub fn assert_untouched(&self, what: &str) {
        let seen = self.seen();
        assert!(
            seen.is_empty(),
            "{what}: the origin must see no request, it saw {:?}",
            seen.iter()
                .map(|s| format!("{} {}", s.method, s.path))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            self.connections(),
            0,
            "{what}: the origin must see no connection"
        );
    }

    /// Asserts that no request whose path contains `needle` reached the origin.
    pub fn assert_no_path(&self, needle: &str, what: &str) {
        let hits: Vec<String> = self
            .seen()
            .into_iter()
            .filter(|s| s.path.contains(needle))
            .map(|s| format!("{} {}", s.method, s.path))
            .collect();
        assert!(hits.is_empty(), "{what}: origin saw {hits:?}");
    }

    /// Creates a bare repo `NAME.git` with one commit on `main`, served at
    /// `/git/NAME.git`. Returns its path.
    pub fn add_git_repo(&self, name: &str) -> PathBuf {
        let work = self.git_root.join(format!("{name}-seed"));
        let bare = self.git_root.join(format!("{name}.git"));
        let git = |args: &[&str], cwd: &std::path::Path| {
            let out = super::tools::git_cmd()
                .args(args)
                .current_dir(cwd)
                .output()
                .expect("run git (apt package git)");
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::create_dir_all(&work).expect("seed dir");
        git(&["init", "-q", "-b", "main"], &work);
        std::fs::write(work.join("README"), "hello from the origin\n").expect("seed file");
        git(&["add", "README"], &work);
        git(&["commit", "-q", "-m", "seed"], &work);
        git(
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().expect("utf8"),
                bare.to_str().expect("utf8"),
            ],
            &self.git_root,
        );
        git(&["config", "http.receivepack", "true"], &bare);
        bare
    }
}

fn tls_acceptor(cert_pem: &str, key_pem: &str, alpn: &[&str]) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("leaf PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
    let mut cfg = rustls::ServerConfig::builder_with_provider(super::pki::provider())
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server cert");
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

async fn serve<I>(io: TokioIo<I>, state: Arc<State>, conn: usize, negotiated: Option<Negotiated>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(req, state, conn, negotiated).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(io, svc)
        .await;
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "text/plain".parse().expect("static"));
    r
}

fn streamed(stream: impl futures_util::Stream<Item = Bytes> + Send + Sync + 'static) -> Body {
    BodyExt::boxed(StreamBody::new(
        stream.map(|b| Ok::<_, std::io::Error>(Frame::data(b))),
    ))
}

/// What a TLS connection to the origin negotiated.
#[derive(Clone, Copy)]
struct Negotiated {
    suite: Option<rustls::CipherSuite>,
    group: Option<rustls::NamedGroup>,
}

/// The request facts every endpoint set needs, read before the body.
struct Req {
    method: String,
    /// Path without the query.
    route: String,
    query: String,
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    conn: usize,
    negotiated: Option<Negotiated>,
) -> Response<Body> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let seen = |body_len: usize| Seen {
        tls: negotiated.is_some(),
        suite: negotiated.and_then(|n| n.suite),
        group: negotiated.and_then(|n| n.group),
        method: req.method().to_string(),
        path: path.clone(),
        authority: req.uri().authority().map(|a| a.to_string()),
        version: req.version(),
        headers: req.headers().clone(),
        body_len,
        conn,
    };
    let is_upgrade = req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    // WebSocket endpoints must not read the body; record first.
    if is_upgrade {
        let s = seen(0);
        state.seen.lock().expect("seen").push(s);
        return websocket(req);
    }
    let mut s = seen(0);
    let r = Req {
        method: req.method().to_string(),
        route: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or("").to_string(),
    };
    let git = git_request(&req);
    let body = match tokio::time::timeout(super::STEP, req.into_body().collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        _ => Bytes::new(),
    };
    s.body_len = body.len();
    state.seen.lock().expect("seen").push(s);
    match state.answers {
        Answers::Echo => echo_answers(&state, r, &path, git, body).await,
        Answers::Hello => hello_answers(&state, r).await,
        Answers::Stream => stream_answers(r),
    }
}

/// Answers a WebSocket upgrade with 101 and echoes every message until close.
fn websocket(req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() == "/no-101" {
        return full(StatusCode::OK, "no switching here\n");
    }
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return full(StatusCode::BAD_REQUEST, "missing key\n");
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        let Ok(up) = hyper::upgrade::on(req).await else {
            return;
        };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(up),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut r = Response::new(
        http_body_util::Empty::new()
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("upgrade", "websocket".parse().expect("static"));
    h.insert("connection", "upgrade".parse().expect("static"));
    h.insert("sec-websocket-accept", accept.parse().expect("base64"));
    r
}

/// The CGI variables `git http-backend` needs from the request head.
struct GitHead {
    content_type: Option<String>,
    content_encoding: Option<String>,
    git_protocol: Option<String>,
}

fn git_request(req: &Request<Incoming>) -> GitHead {
    let get = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    GitHead {
        content_type: get("content-type"),
        content_encoding: get("content-encoding"),
        git_protocol: get("git-protocol"),
    }
}

async fn echo_answers(
    state: &Arc<State>,
    r: Req,
    path: &str,
    git: GitHead,
    body: Bytes,
) -> Response<Body> {
    if let Some(rest) = r.route.strip_prefix("/git/") {
        return git_backend(&state.git_root, &r.method, rest, &r.query, git, body).await;
    }
    match r.route.as_str() {
        "/sse" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
            let st = state.clone();
            tokio::spawn(async move {
                // Register interest before sending, so a release right after the
                // client reads event 1 is not lost.
                let released = st.release.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                let _ = tx.send(Bytes::from_static(b"data: first\n\n")).await;
                let _ = tokio::time::timeout(Duration::from_secs(15), released).await;
                let _ = tx.send(Bytes::from_static(b"data: last\n\n")).await;
            });
            let mut resp = Response::new(streamed(receiver_stream(rx)));
            resp.headers_mut()
                .insert("content-type", "text/event-stream".parse().expect("static"));
            resp
        }
        "/large" => {
            let n: usize = r
                .query
                .split('&')
                .find_map(|kv| kv.strip_prefix("bytes="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1 << 20);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::unfold(n, move |left| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let take = left.min(chunk.len());
                    Some((chunk.slice(..take), left - take))
                }
            });
            let mut resp = Response::new(streamed(stream));
            resp.headers_mut().insert(
                "content-type",
                "application/octet-stream".parse().expect("static"),
            );
            resp
        }
        "/echo/mirror" => full(StatusCode::OK, body),
        "/dirty" => {
            let mut resp = full(StatusCode::OK, "dirty\n");
            resp.headers_mut()
                .insert("alt-svc", "h3=\":443\"; ma=86400".parse().expect("static"));
            resp.headers_mut().insert(
                "x-egress-proxy-decision",
                "allowed".parse().expect("static"),
            );
            resp
        }
        _ => full(
            StatusCode::OK,
            format!("echo {} {path} body={}\n", r.method, body.len()),
        ),
    }
}

fn receiver_stream(
    rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Bytes> + Send + Sync + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
}

async fn hello_answers(state: &Arc<State>, r: Req) -> Response<Body> {
    if r.route == "/sse" {
        // One event now, the next only after the test released it: the
        // client can only see the first one if the proxy streams.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let st = state.clone();
        tokio::spawn(async move {
            let _ = tx.send(Bytes::from_static(b"data: one\n\n")).await;
            let _ = tokio::time::timeout(super::STEP, st.release.notified()).await;
            let _ = tx.send(Bytes::from_static(b"data: two\n\n")).await;
        });
        let mut resp = Response::new(streamed(receiver_stream(rx)));
        resp.headers_mut()
            .insert("content-type", "text/event-stream".parse().expect("static"));
        return resp;
    }
    if r.route == "/slow" {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let mut resp = Response::new(
        Full::new(Bytes::from(format!(
            "hello from origin: {} {}",
            r.method, r.route
        )))
        .map_err(|never: Infallible| match never {})
        .boxed(),
    );
    let h = resp.headers_mut();
    h.insert("alt-svc", "h3=\":443\"".parse().expect("static"));
    h.insert(
        "x-egress-proxy-decision",
        "forged-by-origin".parse().expect("static"),
    );
    h.insert("x-origin", "yes".parse().expect("static"));
    resp
}

fn query_num(q: &str, key: &str, default: usize) -> usize {
    q.split('&')
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` chunks of `size` bytes (or SSE events), one every `every`.
fn trickle(n: usize, size: usize, every: Duration, sse: bool) -> Body {
    streamed(futures_util::stream::unfold(0usize, move |i| async move {
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
        Some((data, i + 1))
    }))
}

fn stream_answers(r: Req) -> Response<Body> {
    let q = r.query.as_str();
    let resp = match r.route.as_str() {
        "/slow" => Response::builder()
            .header("content-type", "application/octet-stream")
            .body(trickle(
                query_num(q, "n", 10),
                16 * 1024,
                Duration::from_millis(query_num(q, "ms", 200) as u64),
                false,
            )),
        "/sse" => Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(trickle(
                query_num(q, "n", 10),
                0,
                Duration::from_millis(query_num(q, "ms", 300) as u64),
                true,
            )),
        "/big" => {
            Response::builder().body(plain_body("y".repeat(query_num(q, "kib", 1024) * 1024)))
        }
        _ => Response::builder().body(plain_body(format!("origin ok {}\n", r.route))),
    };
    resp.unwrap_or_else(|_| Response::new(plain_body(String::new())))
}

fn plain_body(s: String) -> Body {
    Full::new(Bytes::from(s))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// Runs `git http-backend` as CGI for one request (bodies are small in tests).
async fn git_backend(
    root: &std::path::Path,
    method: &str,
    rest: &str,
    query: &str,
    head: GitHead,
    body: Bytes,
) -> Response<Body> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(super::tools::git_path());
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{rest}"))
        .env("REQUEST_METHOD", method)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(ct) = head.content_type {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(ce) = head.content_encoding {
        cmd.env("HTTP_CONTENT_ENCODING", ce);
    }
    if let Some(gp) = head.git_protocol {
        cmd.env("GIT_PROTOCOL", gp);
    }
    let Ok(mut child) = cmd.spawn() else {
        return full(StatusCode::INTERNAL_SERVER_ERROR, "cannot run git\n");
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let Ok(Ok(out)) = tokio::time::timeout(super::STEP, child.wait_with_output()).await else {
        return full(StatusCode::INTERNAL_SERVER_ERROR, "git timed out\n");
    };
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, sep)) = split else {
        return full(StatusCode::INTERNAL_SERVER_ERROR, "bad CGI output\n");
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut resp = full(StatusCode::OK, Bytes::copy_from_slice(&raw[end + sep..]));
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            if let Some(code) = v.split(' ').next().and_then(|c| c.parse::<u16>().ok()) {
                *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            }
        } else if let (Ok(n), Ok(val)) = (
            hyper::header::HeaderName::from_bytes(k.trim().as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().insert(n, val);
        }
    }
    resp
}
