//! The test origin: HTTPS (its own CA, ALPN h2 + http/1.1) and plain HTTP on
//! loopback, recording every connection and request it sees so a test can assert
//! "the origin saw nothing" or "the origin saw the injected credential".
//!
//! Endpoints (any other path echoes):
//! - `/sse`: `text/event-stream`, one event, then waits for [`Origin::release_sse`]
//!   (or 15 s) before the second and last event, so a test proves streaming
//!   without timing asserts.
//! - `/large?bytes=N`: N bytes streamed in 64 KiB chunks.
//! - `/ws`, `/ws-denied`: WebSocket echo (101).
//! - `/no-101`: answers a WebSocket upgrade with a plain 200 (no switch).
//! - `/dirty`: a response carrying `Alt-Svc` and `x-egress-proxy-decision`.
//! - `/git/...`: `git http-backend` (CGI) over a bare repo, receive-pack enabled,
//!   so a push that got through would really land.
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
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::pki::TestCa;

type Body = BoxBody<Bytes, std::io::Error>;

/// One request as the origin received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub tls: bool,
    pub method: String,
    /// The raw path and query exactly as received.
    pub path: String,
    /// `:authority` (h2) or the absolute-form authority, when present.
    pub authority: Option<String>,
    pub version: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body_len: usize,
    /// Which accepted TCP connection carried it (1-based, across both listeners).
    pub conn: usize,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

struct State {
    seen: Mutex<Vec<Seen>>,
    conns: AtomicUsize,
    sse_release: Notify,
    git_root: PathBuf,
}

pub struct Origin {
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub ca: TestCa,
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
    /// Starts both listeners on 127.0.0.1 (port 0) with a fresh CA whose leaf
    /// covers `localhost`, `127.0.0.1` and `::1`.
    pub async fn start() -> Origin {
        Self::start_with(true).await
    }

    /// An origin whose TLS side offers only `http/1.1` (a proxy speaking h2 to
    /// its client must downgrade to reach it).
    pub async fn start_h1_only() -> Origin {
        Self::start_with(false).await
    }

    async fn start_with(offer_h2: bool) -> Origin {
        let dir = tempfile::tempdir().expect("origin temp dir");
        let ca = TestCa::new("egress test origin CA");
        let ca_file = dir.path().join("origin-ca.pem");
        std::fs::write(&ca_file, &ca.cert_pem).expect("write origin CA");
        let (cert_pem, key_pem) = ca.leaf(&["localhost", "127.0.0.1", "::1"]);
        let git_root = dir.path().join("git");
        std::fs::create_dir_all(&git_root).expect("git root");

        let acceptor = tls_acceptor(&cert_pem, &key_pem, offer_h2);
        let state = Arc::new(State {
            seen: Mutex::new(Vec::new()),
            conns: AtomicUsize::new(0),
            sse_release: Notify::new(),
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
                        serve(TokioIo::new(tls), state, conn, true).await;
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
                        serve(TokioIo::new(tcp), state, conn, false).await;
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

    /// TCP connections accepted so far, TLS and plain.
    pub fn connections(&self) -> usize {
        self.state.conns.load(Ordering::SeqCst)
    }

    /// Lets every waiting `/sse` stream send its last event.
    pub fn release_sse(&self) {
        self.state.sse_release.notify_waiters();
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

fn tls_acceptor(cert_pem: &str, key_pem: &str, offer_h2: bool) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("leaf PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server cert");
    cfg.alpn_protocols = if offer_h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

async fn serve<I>(io: TokioIo<I>, state: Arc<State>, conn: usize, tls: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(req, state, conn, tls).await) }
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

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    conn: usize,
    tls: bool,
) -> Response<Body> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let method = req.method().to_string();
    let authority = req.uri().authority().map(|a| a.to_string());
    let version = format!("{:?}", req.version());
    let headers: Vec<(String, Vec<u8>)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let is_upgrade = req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let route = req.uri().path().to_string();

    // WebSocket endpoints must not read the body; record first.
    if is_upgrade {
        state.seen.lock().expect("seen").push(Seen {
            tls,
            method: method.clone(),
            path: path.clone(),
            authority,
            version,
            headers,
            body_len: 0,
            conn,
        });
        if route == "/no-101" {
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
        return r;
    }

    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_encoding = req
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let git_protocol = req
        .headers()
        .get("git-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let query = req.uri().query().unwrap_or("").to_string();
    let body = match tokio::time::timeout(super::STEP, req.into_body().collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        _ => Bytes::new(),
    };
    state.seen.lock().expect("seen").push(Seen {
        tls,
        method: method.clone(),
        path: path.clone(),
        authority,
        version,
        headers,
        body_len: body.len(),
        conn,
    });

    if let Some(rest) = route.strip_prefix("/git/") {
        return git_backend(
            &state.git_root,
            &method,
            rest,
            &query,
            content_type,
            content_encoding,
            git_protocol,
            body,
        )
        .await;
    }
    match route.as_str() {
        "/sse" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
            let st = state.clone();
            tokio::spawn(async move {
                // Register interest before sending, so a release right after the
                // client reads event 1 is not lost.
                let released = st.sse_release.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                let _ = tx.send(Bytes::from_static(b"data: first\n\n")).await;
                let _ = tokio::time::timeout(Duration::from_secs(15), released).await;
                let _ = tx.send(Bytes::from_static(b"data: last\n\n")).await;
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().expect("static"));
            r
        }
        "/large" => {
            let n: usize = query
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
                    Some((
                        Ok::<_, std::io::Error>(Frame::data(chunk.slice(..take))),
                        left - take,
                    ))
                }
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            r.headers_mut().insert(
                "content-type",
                "application/octet-stream".parse().expect("static"),
            );
            r
        }
        "/dirty" => {
            let mut r = full(StatusCode::OK, "dirty\n");
            r.headers_mut()
                .insert("alt-svc", "h3=\":443\"; ma=86400".parse().expect("static"));
            r.headers_mut().insert(
                "x-egress-proxy-decision",
                "allowed".parse().expect("static"),
            );
            r
        }
        _ => full(
            StatusCode::OK,
            format!("echo {method} {path} body={}\n", body.len()),
        ),
    }
}

/// Runs `git http-backend` as CGI for one request (bodies are small in tests).
#[allow(clippy::too_many_arguments)]
async fn git_backend(
    root: &std::path::Path,
    method: &str,
    rest: &str,
    query: &str,
    content_type: Option<String>,
    content_encoding: Option<String>,
    git_protocol: Option<String>,
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
    if let Some(ct) = content_type {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(ce) = content_encoding {
        cmd.env("HTTP_CONTENT_ENCODING", ce);
    }
    if let Some(gp) = git_protocol {
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
