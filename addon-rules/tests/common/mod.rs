//! Shared helpers for the addon-rules integration tests: load testdata
//! policies and build `RequestFacts` from compact table rows.
#![allow(dead_code)]

use addon_rules::{BodyHint, ConnectTarget, Policy, RequestFacts, Transport, parse_connect_target};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};

pub fn testdata(name: &str) -> String {
    format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn policy(name: &str) -> Policy {
    let path = testdata(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    Policy::from_text(&text, &path).unwrap_or_else(|e| panic!("{e}"))
}

/// How the row's request arrives.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    /// TLS tunnel to this CONNECT target, SNI = the CONNECT host.
    Tls(&'static str),
    /// TLS tunnel with an explicit SNI (None: no SNI).
    TlsSni(&'static str, Option<&'static str>),
    /// Cleartext HTTP/1 inside a CONNECT.
    Clear(&'static str),
    /// Absolute-form http:// to the proxy port.
    Plain,
}

/// One request, owned, so a row can be turned into `RequestFacts`.
pub struct Req {
    pub via: Via,
    pub method: Method,
    pub target: String,
    pub version: Version,
    pub authority: Option<String>,
    pub headers: HeaderMap,
    pub body: BodyHint,
    connect: Option<ConnectTarget>,
}

impl Req {
    /// A GET with `Host` set to the CONNECT host (tunnels) or nothing (plain).
    pub fn new(via: Via, method: &str, target: &str) -> Req {
        let connect = match via {
            Via::Tls(c) | Via::TlsSni(c, _) | Via::Clear(c) => {
                Some(parse_connect_target(c).expect("test CONNECT target"))
            }
            Via::Plain => None,
        };
        let mut headers = HeaderMap::new();
        if let Some(c) = &connect {
            headers.insert(
                http::header::HOST,
                HeaderValue::from_str(&c.authority()).expect("host value"),
            );
        }
        Req {
            via,
            method: Method::from_bytes(method.as_bytes()).expect("method"),
            target: target.to_string(),
            version: Version::HTTP_11,
            authority: None,
            headers,
            body: BodyHint::Empty,
            connect,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
        self
    }

    pub fn no_host(mut self) -> Req {
        self.headers.remove(http::header::HOST);
        self
    }

    pub fn version(mut self, v: Version) -> Req {
        self.version = v;
        self
    }

    /// HTTP/2 with `:authority` and no Host.
    pub fn h2(mut self, authority: &str) -> Req {
        self.version = Version::HTTP_2;
        self.authority = Some(authority.to_string());
        self.headers.remove(http::header::HOST);
        self
    }

    pub fn body(mut self, b: BodyHint) -> Req {
        self.body = b;
        self
    }

    pub fn facts(&self) -> RequestFacts<'_> {
        let transport = match (self.via, &self.connect) {
            // Clients send no SNI for an IPv6 literal (RFC 6066 forbids IP SNI).
            (Via::Tls(h), Some(c)) => {
                let host = h.rsplit_once(':').map_or(h, |(h, _)| h);
                Transport::Tls {
                    connect: c,
                    sni: (!host.starts_with('[')).then_some(host),
                }
            }
            (Via::TlsSni(_, sni), Some(c)) => Transport::Tls { connect: c, sni },
            (Via::Clear(_), Some(c)) => Transport::CleartextTunnel { connect: c },
            _ => Transport::PlainProxy,
        };
        RequestFacts {
            transport,
            method: &self.method,
            target: &self.target,
            version: self.version,
            authority: self.authority.as_deref(),
            headers: &self.headers,
            body: self.body,
        }
    }
}
