//! A MITM proxy built on the `hudsucker` crate doing the same work as egress-proxy in the
//! benchmark: host allowlist from the harness routes file, and on the credential route the
//! client's `Authorization`, `Proxy-Authorization`, `Cookie` and `X-Api-Key` replaced by
//! the route's header. It is the baseline "what a user would build with the library".
//!
//! It must never be used outside the benchmark: it enforces nothing else of SPEC §3.
//! The certificate authority mirrors hudsucker's `RcgenAuthority` (leaf key = CA key,
//! cached `ServerConfig` per authority) but writes an IP-address SAN for IP hosts, which
//! `RcgenAuthority` 0.25 writes as a DNS name and every client then rejects.

use crate::{pki, routes};
use anyhow::{Context, Result};
use http::uri::Authority;
use http::{HeaderValue, Request, Response, StatusCode};
use hudsucker::certificate_authority::CertificateAuthority;
use hudsucker::{Body, HttpContext, HttpHandler, RequestOrResponse};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

const CACHE_MAX: usize = 10_000;

struct Authority_ {
    issuer: Issuer<'static, KeyPair>,
    key: PrivateKeyDer<'static>,
    cache: Mutex<HashMap<Authority, Arc<ServerConfig>>>,
}

struct BenchCa(Arc<Authority_>);

impl BenchCa {
    fn mint(&self, authority: &Authority) -> Result<Arc<ServerConfig>> {
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let mut params = CertificateParams::default();
        params.serial_number = Some(rand::random::<u64>().into());
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(30);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.subject_alt_names.push(match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into().context("SAN")?),
        });
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(self.0.issuer.key(), &self.0.issuer)?;
        let mut cfg = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], self.0.key.clone_key())?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

impl CertificateAuthority for BenchCa {
    async fn gen_server_config(&self, authority: &Authority) -> Arc<ServerConfig> {
        if let Ok(cache) = self.0.cache.lock()
            && let Some(c) = cache.get(authority)
        {
            return c.clone();
        }
        let cfg = match self.mint(authority) {
            Ok(c) => c,
            Err(e) => {
                // The trait has no error path; a config without certificates makes the
                // handshake fail for this client only.
                eprintln!("hudsucker-bench: minting a leaf for {authority}: {e:#}");
                return Arc::new(
                    ServerConfig::builder()
                        .with_no_client_auth()
                        .with_cert_resolver(Arc::new(NoCert)),
                );
            }
        };
        if let Ok(mut cache) = self.0.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(authority.clone(), cfg.clone());
        }
        cfg
    }
}

#[derive(Debug)]
struct NoCert;
impl rustls::server::ResolvesServerCert for NoCert {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

/// host (lower case) -> header value to inject, if any.
#[derive(Clone)]
struct Policy(Arc<HashMap<String, Option<HeaderValue>>>);

impl HttpHandler for Policy {
    async fn handle_request(
        &mut self,
        _ctx: &HttpContext,
        mut req: Request<Body>,
    ) -> RequestOrResponse {
        // As SPEC §7: the CONNECT of an unrouted host is still intercepted; the request
        // inside the tunnel is what gets refused.
        if req.method() == http::Method::CONNECT {
            return req.into();
        }
        let host = req
            .uri()
            .host()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase());
        let route = host.as_deref().and_then(|h| self.0.get(h));
        match route {
            None => refuse().into(),
            Some(inject) => {
                if let Some(value) = inject {
                    let h = req.headers_mut();
                    for name in [
                        "authorization",
                        "proxy-authorization",
                        "cookie",
                        "x-api-key",
                    ] {
                        h.remove(name);
                    }
                    h.insert(http::header::AUTHORIZATION, value.clone());
                }
                req.into()
            }
        }
    }
}

fn refuse() -> Response<Body> {
    let mut r = Response::new(Body::from("host-not-allowed: no route for this host\n"));
    *r.status_mut() = StatusCode::FORBIDDEN;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    r.headers_mut().insert(
        "x-egress-proxy-decision",
        HeaderValue::from_static("host-not-allowed"),
    );
    r
}

/// Runs the hudsucker proxy until killed; prints `READY <port>` once listening.
pub async fn run(
    listen: std::net::SocketAddr,
    ca_cert: &Path,
    ca_key: &Path,
    upstream_ca: &Path,
    routes_path: &Path,
) -> Result<()> {
    let rf = routes::read(routes_path)?;
    let mut map = HashMap::new();
    for r in rf.routes {
        let inject = match (&r.token_env, &r.auth_scheme) {
            (Some(var), scheme) => {
                let secret = std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .with_context(|| {
                        format!(
                            "route {}: environment variable {var} is unset or empty",
                            r.host
                        )
                    })?;
                let v = match scheme {
                    Some(s) => format!("{s} {secret}"),
                    None => secret,
                };
                let mut hv = HeaderValue::from_str(&v).map_err(|_| {
                    anyhow::anyhow!("route {}: {var} is not a valid header value", r.host)
                })?;
                hv.set_sensitive(true);
                Some(hv)
            }
            (None, _) => None,
        };
        map.insert(r.host.trim_end_matches('.').to_ascii_lowercase(), inject);
    }

    let cert_pem = std::fs::read_to_string(ca_cert)
        .with_context(|| format!("reading {}", ca_cert.display()))?;
    let key_pem =
        std::fs::read_to_string(ca_key).with_context(|| format!("reading {}", ca_key.display()))?;
    let issuer = pki::load_issuer(&cert_pem, &key_pem)?;
    let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(issuer.key().serialize_der()));
    let ca = BenchCa(Arc::new(Authority_ {
        issuer,
        key,
        cache: Mutex::new(HashMap::new()),
    }));

    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(pki::root_store(upstream_ca)?)
        .with_no_client_auth();
    // `TCP_NODELAY` on both sides, as egress-proxy sets it on its own. hudsucker
    // sets it on neither, and without it S2 stalled on Nagle's algorithm: a
    // new connection took 44 ms (the peer's delayed ACK), so hudsucker ran at
    // 15% of its CPU and its CPU per connection was that of an idle proxy
    // (docs/benchmarks.md, round 13). An accepted socket inherits the option
    // from its listener.
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);

    let socket = match listen {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_nodelay(true)?;
    socket
        .bind(listen)
        .with_context(|| format!("binding {listen}"))?;
    let listener = socket.listen(1024)?;
    println!("READY {}", listener.local_addr()?.port());
    let proxy = hudsucker::Proxy::builder()
        .with_listener(listener)
        .with_ca(ca)
        .with_http_connector(https)
        .with_http_handler(Policy(Arc::new(map)))
        .build()
        .context("building the hudsucker proxy")?;
    proxy.start().await.context("hudsucker proxy")?;
    Ok(())
}
