//! The sidecar: MCP over streamable HTTP (rmcp) on `/mcp`, three tools.
//!
//! Owns the tools `list-egress-routes`, `request-egress`, `proposal-status`,
//! their bounds (request size, pending cap, rate limit), and the HTTP front
//! (allowed `Host` names, body size, connection count, header timeout).
//!
//! Must never decide: it writes only `proposals/`, reads `view/` and
//! `decisions/` (mounted read-only), and has no tool that approves or
//! rejects. Must never hold or show a secret: the view it reads has none.
//! Must never crash on what a client sends: bad JSON-RPC is answered with
//! JSON-RPC errors by rmcp, a bad tool call with a tool error.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::change::{self, Limits};
use crate::state::{self, Decision, EgressRequest, Proposal, ProposalId, SidecarLayout, Status};
use crate::view::View;

/// The `Host` names the sidecar answers to: its own name in the bottle and
/// loopback. rmcp refuses any other with 403 (DNS rebinding).
pub const ALLOWED_HOSTS: [&str; 5] = [
    "supervise",
    "supervise:9100",
    "localhost",
    "127.0.0.1",
    "::1",
];

/// How the sidecar is bounded and where its state is.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--state DIR`: holds `view/`, `proposals/`, `decisions/`.
    pub state: PathBuf,
    /// How long `request-egress` waits for a decision before "pending".
    pub decision_wait: Duration,
    /// How often a waiting `request-egress` looks for the decision.
    pub poll: Duration,
    /// Proposals without a decision, at most.
    pub max_pending: usize,
    /// `request-egress` calls per `rate_window`, at most.
    pub rate_limit: usize,
    pub rate_window: Duration,
    pub limits: Limits,
    /// JSON-RPC POST body, at most (413 above).
    pub max_body_bytes: usize,
    /// Open HTTP connections, at most (more wait to be accepted).
    pub max_connections: usize,
}

impl Config {
    pub fn new(state: PathBuf) -> Config {
        Config {
            state,
            decision_wait: Duration::from_secs(60),
            poll: Duration::from_millis(250),
            max_pending: 8,
            rate_limit: 10,
            rate_window: Duration::from_secs(60),
            limits: Limits::default(),
            max_body_bytes: 64 * 1024,
            max_connections: 64,
        }
    }
}

struct Shared {
    cfg: Config,
    layout: SidecarLayout,
    /// Times of recent `request-egress` calls (the rate window).
    recent: std::sync::Mutex<VecDeque<Instant>>,
    /// Serializes "count pending, then queue one" so the cap holds.
    queue: tokio::sync::Mutex<()>,
}

/// The MCP handler; one per session, sharing the bounds.
#[derive(Clone)]
pub struct Supervise {
    shared: Arc<Shared>,
    tool_router: ToolRouter<Self>,
}

/// `request-egress` arguments. Unknown fields are refused: the agent cannot
/// slip a credential, a decision or anything else into a proposal.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestEgressArgs {
    /// The host, as in a routes file: `pypi.org`, `*.example.com` (not over a public suffix).
    pub host: String,
    /// Path patterns to allow (routes-file syntax: `/a/b`, `/a/*/c`, `/a/**`, `^regex$`).
    /// Omitted: every path (a new route), or no path change (an existing route).
    #[serde(default)]
    pub paths: Vec<String>,
    /// HTTP methods to allow, upper case (`GET`, `POST`). Omitted: any (a new
    /// route), or no method change (an existing route).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Why the task needs this access. Required; the operator reads it.
    pub justification: String,
}

/// `proposal-status` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalStatusArgs {
    /// The id `request-egress` answered, e.g. `p0123456789abcdef`.
    pub id: String,
}

fn tool_error(msg: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(msg.into())])
}

fn client_name(ctx: &RequestContext<RoleServer>) -> String {
    // Per-request `_meta` (protocol 2026-07-28, stateless), else the
    // session's `initialize`.
    let info = ctx
        .meta
        .client_info()
        .or_else(|| ctx.peer.peer_info().map(|i| i.client_info.clone()));
    match info {
        Some(c) => format!("{} {}", c.name, c.version)
            .chars()
            .take(200)
            .collect(),
        None => "unknown client".to_string(),
    }
}

impl Supervise {
    fn new(shared: Arc<Shared>) -> Supervise {
        Supervise {
            shared,
            tool_router: Self::tool_router(),
        }
    }

    fn view(&self) -> Result<View, String> {
        match state::read_json::<View>(&self.shared.layout.view()) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err("the host has not published the routes yet (view.json missing)".into()),
            Err(e) => Err(format!("the routes view cannot be read: {e}")),
        }
    }

    /// Counts this call against the rate window; `Err` when over.
    fn take_rate(&self) -> Result<(), String> {
        let cfg = &self.shared.cfg;
        let now = Instant::now();
        let mut q = self
            .shared
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= cfg.rate_window)
        {
            q.pop_front();
        }
        if q.len() >= cfg.rate_limit {
            let wait = q
                .front()
                .map(|t| cfg.rate_window.saturating_sub(now.duration_since(*t)))
                .unwrap_or(cfg.rate_window);
            return Err(format!(
                "rate limit: at most {} request-egress calls per {} s; try again in {} s",
                cfg.rate_limit,
                cfg.rate_window.as_secs(),
                wait.as_secs().max(1)
            ));
        }
        q.push_back(now);
        Ok(())
    }

    fn pending_count(&self) -> std::io::Result<usize> {
        let l = &self.shared.layout;
        let ids = state::proposal_ids(&l.proposals())?;
        Ok(ids.iter().filter(|id| !l.decision(id).exists()).count())
    }

    fn decision(&self, id: &ProposalId) -> Result<Option<Decision>, String> {
        state::read_json::<Decision>(&self.shared.layout.decision(id))
            .map_err(|e| format!("the decision on {id} cannot be read: {e}"))
    }

    /// The answer for a proposal: pending, approved as a route, rejected with why.
    fn status_result(id: &ProposalId, d: Option<Decision>) -> CallToolResult {
        let v = match d {
            None => json!({
                "id": id, "status": "pending",
                "message": format!("proposal {id} waits for the operator; ask again with proposal-status"),
            }),
            Some(d) if d.status == Status::Approved => json!({
                "id": id, "status": "approved", "route": d.route, "decided": d.time,
                "message": "approved: the route is live within a few seconds",
            }),
            Some(d) => json!({
                "id": id, "status": "rejected", "reason": d.reason, "decided": d.time,
                "message": format!("rejected: {}", d.reason.as_deref().unwrap_or("no reason given")),
            }),
        };
        CallToolResult::structured(v)
    }
}

#[tool_router]
impl Supervise {
    #[tool(
        name = "list-egress-routes",
        description = "The bottle's live egress routes (host, path allow and deny lists, methods, whether a credential is attached) and its `allow` hosts. Hosts without a route are refused with 403 host-not-allowed."
    )]
    async fn list_egress_routes(&self) -> Result<CallToolResult, ErrorData> {
        Ok(match self.view() {
            Ok(v) => CallToolResult::structured(json!({
                "bottle": v.bottle,
                "unmatched": v.unmatched,
                "routes": v.routes,
                "allow": v.allow,
            })),
            Err(e) => tool_error(e),
        })
    }

    #[tool(
        name = "request-egress",
        description = "Propose egress access to the operator: a new route for a host, or more paths or methods on an existing route. Checked with the proxy's own rules first; then waits a bounded time for the operator and answers approved, rejected (with the reason) or pending (with an id for proposal-status). You cannot choose credentials."
    )]
    async fn request_egress(
        &self,
        Parameters(args): Parameters<RequestEgressArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Err(e) = self.take_rate() {
            return Ok(tool_error(e));
        }
        let req = EgressRequest {
            host: args.host,
            paths: args.paths,
            methods: args.methods,
            justification: args.justification,
        };
        let cfg = &self.shared.cfg;
        if let Err(e) = change::check_bounds(&req, &cfg.limits) {
            return Ok(tool_error(e.to_string()));
        }
        let view = match self.view() {
            Ok(v) => v,
            Err(e) => return Ok(tool_error(e)),
        };
        if let Err(e) = change::plan(
            &view.to_plain_document(),
            &req,
            "routes file (with your change)",
        ) {
            return Ok(tool_error(e.to_string()));
        }
        let id = {
            let _queued = self.shared.queue.lock().await;
            match self.pending_count() {
                Ok(n) if n >= cfg.max_pending => {
                    return Ok(tool_error(format!(
                        "{n} proposals already wait for the operator (at most {}); wait for decisions (proposal-status) before asking again",
                        cfg.max_pending
                    )));
                }
                Ok(_) => {}
                Err(e) => {
                    return Ok(tool_error(format!(
                        "the proposal queue cannot be read: {e}"
                    )));
                }
            }
            let id = match ProposalId::random() {
                Ok(id) => id,
                Err(e) => return Ok(tool_error(format!("no proposal id: {e}"))),
            };
            let p = Proposal {
                id: id.clone(),
                created: state::now_rfc3339(),
                bottle: view.bottle.clone(),
                client: client_name(&ctx),
                request: req,
            };
            let text = match serde_json::to_vec_pretty(&p) {
                Ok(t) => t,
                Err(e) => return Ok(tool_error(e.to_string())),
            };
            if let Err(e) = state::write_atomic(&self.shared.layout.proposal(&id), &text, 0o644) {
                return Ok(tool_error(format!("the proposal cannot be queued: {e}")));
            }
            tracing::info!(%id, host = %p.request.host, "proposal queued");
            id
        };
        let deadline = Instant::now() + cfg.decision_wait;
        loop {
            match self.decision(&id) {
                Ok(Some(d)) => return Ok(Self::status_result(&id, Some(d))),
                Ok(None) => {}
                Err(e) => return Ok(tool_error(e)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Self::status_result(&id, None));
            }
            tokio::select! {
                () = tokio::time::sleep(left.min(cfg.poll)) => {}
                () = ctx.ct.cancelled() => return Ok(Self::status_result(&id, None)),
            }
        }
    }

    #[tool(
        name = "proposal-status",
        description = "The state of a proposal made with request-egress: pending, approved (with the route as it now is), or rejected (with the operator's reason)."
    )]
    async fn proposal_status(
        &self,
        Parameters(args): Parameters<ProposalStatusArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let Some(id) = ProposalId::parse(&args.id) else {
            return Ok(tool_error(format!(
                "{:?} is not a proposal id (request-egress answers ids like p0123456789abcdef)",
                args.id.chars().take(64).collect::<String>()
            )));
        };
        if !self.shared.layout.proposal(&id).is_file() {
            return Ok(tool_error(format!("no proposal {id}")));
        }
        Ok(match self.decision(&id) {
            Ok(d) => Self::status_result(&id, d),
            Err(e) => tool_error(e),
        })
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Supervise {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "bottle-supervise",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Egress from this bottle is limited to its routes. When a request is refused with \
                 403 host-not-allowed or path-not-allowed, call request-egress with the host, the \
                 paths and methods you need, and a justification; the operator decides.",
            )
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn not_found() -> http::Response<BoxBody> {
    let mut r =
        http::Response::new(Full::new(Bytes::from_static(b"not found: MCP is at /mcp\n")).boxed());
    *r.status_mut() = http::StatusCode::NOT_FOUND;
    r
}

/// Serves MCP on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let layout = SidecarLayout {
        root: cfg.state.clone(),
    };
    let http_cfg = StreamableHttpServerConfig::default()
        .with_allowed_hosts(ALLOWED_HOSTS)
        .with_max_request_body_bytes(cfg.max_body_bytes)
        .with_cancellation_token(shutdown.child_token());
    let conns = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections));
    let max_body = cfg.max_body_bytes;
    let shared = Arc::new(Shared {
        cfg,
        layout,
        recent: std::sync::Mutex::new(VecDeque::new()),
        queue: tokio::sync::Mutex::new(()),
    });
    let mcp: StreamableHttpService<Supervise, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(Supervise::new(shared.clone())),
        Arc::new(LocalSessionManager::default()),
        http_cfg,
    );
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            p = conns.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return Ok(()),
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let mcp = mcp.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, peer, mcp, max_body).await;
        });
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    mcp: StreamableHttpService<Supervise, LocalSessionManager>,
    max_body: usize,
) {
    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let mcp = mcp.clone();
        async move { Ok::<_, Infallible>(front(req, mcp, max_body).await) }
    });
    let io = hyper_util::rt::TokioIo::new(stream);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(64 * 1024)
        .serve_connection(io, svc);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// A JSON-RPC error answer with an HTTP status.
fn rpc_error(status: u16, id: Value, code: i64, message: &str) -> http::Response<BoxBody> {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    let mut r = http::Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// In front of rmcp: `/mcp` only; a POST body is read whole (bounded) and
/// must be JSON, else a JSON-RPC parse error; an error rmcp answers in plain
/// text becomes a JSON-RPC error with the same status, so every malformed
/// message gets a JSON-RPC answer.
async fn front(
    req: http::Request<Incoming>,
    mut mcp: StreamableHttpService<Supervise, LocalSessionManager>,
    max_body: usize,
) -> http::Response<BoxBody> {
    if req.uri().path() != "/mcp" {
        return not_found();
    }
    let (parts, body) = req.into_parts();
    let (id, resp) = if parts.method == http::Method::POST {
        let bytes = match http_body_util::Limited::new(body, max_body).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                let msg = format!("request body larger than {max_body} bytes");
                return rpc_error(413, Value::Null, -32600, &msg);
            }
            Err(e) => return rpc_error(400, Value::Null, -32700, &format!("unreadable body: {e}")),
        };
        let id = match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => v.get("id").cloned().unwrap_or(Value::Null),
            Err(e) => return rpc_error(400, Value::Null, -32700, &format!("parse error: {e}")),
        };
        let req = http::Request::from_parts(parts, Full::new(bytes));
        (id, tower_service::Service::call(&mut mcp, req).await)
    } else {
        let req = http::Request::from_parts(parts, body);
        (
            Value::Null,
            tower_service::Service::call(&mut mcp, req).await,
        )
    };
    let resp = match resp {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let is_json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if resp.status().as_u16() < 400 || is_json {
        return resp;
    }
    let status = resp.status().as_u16();
    let text: String = match resp.into_body().collect().await {
        Ok(c) => String::from_utf8_lossy(&c.to_bytes())
            .trim()
            .chars()
            .take(500)
            .collect(),
        Err(never) => match never {},
    };
    let code = if status >= 500 { -32603 } else { -32600 };
    rpc_error(status, id, code, &text)
}
