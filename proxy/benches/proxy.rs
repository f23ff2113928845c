//! Criterion benchmarks of the proxy's hot paths: leaf minting (cold) and the
//! leaf cache (hit), a TLS handshake in memory with a minted leaf, and one
//! HTTPS request through the in-process proxy over an open tunnel (h1, h2).
//!
//! Run: `cargo bench -p egress-proxy --bench proxy`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use egress_proxy::tls::{Ca, LeafCache, LeafKey};
use http::Request;
use support::clients::{body, collect, connect, h1, h2, tls};
use support::origin::Origin;
use support::pki::{TestCa, provider};
use support::proxy::{ProxySetup, SECRET, routes_with_credential};

fn leaf(c: &mut Criterion) {
    let (ca, _) = Ca::mint("bench CA").unwrap();
    let cache = LeafCache::new(Arc::new(ca), 1_000_000).unwrap();
    let mut n = 0u64;
    c.bench_function("leaf_mint_cold", |b| {
        b.iter(|| {
            n += 1;
            cache
                .mint(&format!("host{n}.example"), LeafKey::Ed25519)
                .unwrap()
        })
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(cache.server_config("hit.example")).unwrap();
    c.bench_function("leaf_cache_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { cache.server_config("hit.example").await.unwrap() })
    });
}

fn handshake(c: &mut Criterion) {
    let (ca, _) = Ca::mint("bench CA").unwrap();
    let ca_der = ca.cert_der().clone();
    let cache = LeafCache::new(Arc::new(ca), 16).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(cache.server_config("bench.example")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let client = Arc::new(client);
    c.bench_function("tls_handshake_in_memory", |b| {
        b.iter(|| {
            let name = rustls::pki_types::ServerName::try_from("bench.example").unwrap();
            let mut cl = rustls::ClientConnection::new(client.clone(), name).unwrap();
            let mut sv = rustls::ServerConnection::new(server.clone()).unwrap();
            let mut buf = Vec::new();
            for _ in 0..10 {
                if !cl.is_handshaking() && !sv.is_handshaking() {
                    break;
                }
                buf.clear();
                while cl.wants_write() {
                    cl.write_tls(&mut buf).unwrap();
                }
                let mut rd = &buf[..];
                while !rd.is_empty() {
                    sv.read_tls(&mut rd).unwrap();
                }
                sv.process_new_packets().unwrap();
                buf.clear();
                while sv.wants_write() {
                    sv.write_tls(&mut buf).unwrap();
                }
                let mut rd = &buf[..];
                while !rd.is_empty() {
                    cl.read_tls(&mut rd).unwrap();
                }
                cl.process_new_packets().unwrap();
            }
            assert!(!cl.is_handshaking());
        })
    });
}

fn request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (origin, proxy, pki) = rt.block_on(async {
        let pki = Arc::new(TestCa::new("test origin CA"));
        let origin = Origin::hello(&pki, &["h2", "http/1.1"]).await;
        let mut s = ProxySetup::new(&routes_with_credential(""));
        s.env.push(("TEST_TOKEN".into(), SECRET.into()));
        s.upstream_ca = Some(pki.cert_pem.clone());
        (origin, s.start().await, pki)
    });
    let _ = &pki;
    let port = origin.https.port();
    let url = format!("https://localhost:{port}/allowed");
    for alpn in ["http/1.1", "h2"] {
        let (mut h1c, mut h2c) = (None, None);
        rt.block_on(async {
            let (s, _) = connect(proxy.addr, &format!("localhost:{port}")).await;
            let t = tls(s, &proxy.ca_pem, "localhost", &[alpn]).await.unwrap();
            if alpn == "h2" {
                h2c = Some(h2(t).await);
            } else {
                h1c = Some(h1(t).await);
            }
        });
        let h1c = Arc::new(tokio::sync::Mutex::new(h1c));
        let h2c = Arc::new(tokio::sync::Mutex::new(h2c));
        let name = format!("https_request_{}", if alpn == "h2" { "h2" } else { "h1" });
        c.bench_function(&name, |b| {
            b.to_async(&rt).iter(|| {
                let (h1c, h2c, url) = (h1c.clone(), h2c.clone(), url.clone());
                async move {
                    let req = Request::get(&url).body(body("")).unwrap();
                    let resp = if let Some(c) = h1c.lock().await.as_mut() {
                        // HTTP/1: wait until the last exchange is fully done.
                        c.ready().await.unwrap();
                        c.send_request(req).await.unwrap()
                    } else {
                        let mut g = h2c.lock().await;
                        g.as_mut().unwrap().send_request(req).await.unwrap()
                    };
                    let got = collect(resp).await;
                    assert_eq!(got.status, 200);
                }
            })
        });
        origin.clear_seen();
    }
    // The origin recorded every request; keep memory flat between benches.
    origin.clear_seen();
}

criterion_group!(benches, leaf, handshake, request);
criterion_main!(benches);
