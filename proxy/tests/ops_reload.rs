//! SIGHUP reload of the real binary under load (SPEC §5, issue 5): a client
//! loop (bounded: 2 000 requests or 20 s) during 20 reloads alternating two
//! policies sees only those two policies' answers and no error; a bad file
//! mid-run keeps the last good policy and logs every error of the file.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::T;
use support::clients::*;
use support::origin::Origin;
use support::proxy::{Proxy, ProxyOpts};
use support::raw::plain_get;

fn policy(path: &str) -> String {
    format!("unmatched: deny\nroutes:\n  - host: localhost\n    path_allowlist: [\"{path}\"]\n")
}

/// What one request of the loop saw.
#[derive(Debug, Clone)]
struct Seen {
    path: &'static str,
    status: u16,
    decision: Option<String>,
}

/// Policy A allows /a, policy B allows /b; anything else is an error.
fn answer_of(s: &Seen) -> Result<char, String> {
    let ok = s.status == 200 && s.decision.is_none();
    let refused = s.status == 403 && s.decision.as_deref() == Some("path-not-allowed");
    match (s.path, ok, refused) {
        ("/a", true, _) | ("/b", _, true) => Ok('A'),
        ("/a", _, true) | ("/b", true, _) => Ok('B'),
        _ => Err(format!("{s:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_swap_atomically_and_a_bad_file_keeps_the_last_good_policy() {
    let origin = Origin::streaming().await;
    let mut opts = ProxyOpts::ephemeral(policy("/a"));
    opts.upstream_ca = Some(origin.ca_file.clone());
    let mut proxy = Proxy::start(opts);
    let proxy_ref = Arc::new(ProcHandle {
        addr: proxy.addr,
        ca_pem: proxy.ca_pem.clone(),
    });
    let tp = origin.https.port();

    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        let p = proxy_ref.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut errors = Vec::new();
            let mut send = p.h1(tp).await.expect("tunnel");
            let start = Instant::now();
            // Bounded in count and time whatever happens.
            while seen.len() + errors.len() < 2000
                && start.elapsed() < Duration::from_secs(20)
                && !stop.load(Ordering::Relaxed)
            {
                let path = if seen.len() % 2 == 0 { "/a" } else { "/b" };
                // Paced so the 2 000 requests span all 20 reloads.
                tokio::time::sleep(Duration::from_millis(2)).await;
                match get1(&mut send, &format!("localhost:{tp}"), path).await {
                    Ok(g) => seen.push(Seen {
                        path,
                        status: g.status,
                        decision: g.decision().map(str::to_owned),
                    }),
                    Err(e) => {
                        errors.push(e.to_string());
                        // Keep measuring on a new connection.
                        match p.h1(tp).await {
                            Ok(s) => send = s,
                            Err(e) => {
                                errors.push(e.to_string());
                                break;
                            }
                        }
                    }
                }
            }
            (seen, errors)
        })
    };

    // 20 reloads, alternating B and A, each confirmed by its log line (a
    // signal sent before the previous one was handled could be coalesced).
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..20 {
        let path = if i % 2 == 0 { "/b" } else { "/a" };
        proxy.reload_with(&policy(path));
        let want = i + 1;
        let deadline = Instant::now() + T;
        while proxy.count(|v| v["msg"] == "routes reloaded") < want {
            assert!(
                Instant::now() < deadline,
                "reload {want} not logged:\n{}",
                proxy.redacted()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The last good policy is A. A bad file: two errors, both logged.
    proxy.reload_with("unmatched: deny\nroutes:\n  - host: \"*.com\"\n  - hots: localhost\n");
    proxy.wait_line(
        |v| v["msg"] == "reload failed; keeping the old policy",
        "the failed reload line",
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (seen, errors) = client.await.expect("client loop");

    let refused = proxy.json_lines();
    let errs: Vec<_> = refused
        .iter()
        .filter(|v| v["msg"] == "reload refused")
        .collect();
    assert!(
        errs.iter()
            .any(|v| v["error"].as_str().unwrap_or("").contains("routes[0].host")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|v| v["error"].as_str().unwrap_or("").contains("routes[1].hots")),
        "{errs:?}"
    );

    eprintln!(
        "reload under load: {} requests, {} errors",
        seen.len(),
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "no request fails during reloads: {errors:?}"
    );
    assert!(
        seen.len() >= 40,
        "the loop ran during the reloads ({} requests)",
        seen.len()
    );
    let mut a = 0;
    let mut b = 0;
    for s in &seen {
        match answer_of(s) {
            Ok('A') => a += 1,
            Ok(_) => b += 1,
            Err(e) => panic!("an answer of neither policy: {e}"),
        }
    }
    assert!(a > 0 && b > 0, "both policies were seen (A {a}, B {b})");

    // After the bad file: the last good policy (A), consistently.
    let mut send = proxy_ref.h1(tp).await.expect("tunnel");
    for i in 0..20 {
        let path = if i % 2 == 0 { "/a" } else { "/b" };
        let g = get1(&mut send, &format!("localhost:{tp}"), path)
            .await
            .expect("request");
        let s = Seen {
            path,
            status: g.status,
            decision: g.decision().map(str::to_owned),
        };
        assert_eq!(answer_of(&s), Ok('A'), "after a bad reload: {s:?}");
    }
    let (status, _) = plain_get(proxy.addr, "/healthz").await.unwrap();
    assert_eq!(status, 200, "still healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_under_the_policy_it_started_with() {
    let origin = Origin::streaming().await;
    let mut opts = ProxyOpts::ephemeral(policy("/slow"));
    opts.upstream_ca = Some(origin.ca_file.clone());
    let mut proxy = Proxy::start(opts);
    let tp = origin.https.port();
    let handle = ProcHandle {
        addr: proxy.addr,
        ca_pem: proxy.ca_pem.clone(),
    };
    let mut send = handle.h1(tp).await.expect("tunnel");
    let req = hyper::Request::get("/slow?n=8&ms=200")
        .header("host", format!("localhost:{tp}"))
        .body(empty())
        .unwrap();
    let resp = send.send_request(req).await.expect("slow request");
    assert_eq!(resp.status(), 200);
    // Reload to a policy that no longer allows /slow while the body streams.
    proxy.reload_with(&policy("/other"));
    proxy.wait_line(|v| v["msg"] == "routes reloaded", "the reload line");
    let got = tokio::time::timeout(T, try_collect(resp))
        .await
        .expect("bounded")
        .expect("body");
    assert_eq!(got.body.len(), 8 * 16 * 1024, "the whole body arrived");
    // The next request is judged by the new policy.
    let mut send = handle.h1(tp).await.expect("tunnel");
    let g = get1(&mut send, &format!("localhost:{tp}"), "/slow?n=1")
        .await
        .unwrap();
    assert_eq!((g.status, g.decision()), (403, Some("path-not-allowed")));
}

/// What a client task needs of the proxy (the `Proxy` itself stays with the test).
struct ProcHandle {
    addr: std::net::SocketAddr,
    ca_pem: String,
}

impl ProcHandle {
    async fn h1(
        &self,
        port: u16,
    ) -> std::io::Result<hyper::client::conn::http1::SendRequest<CBody>> {
        h1_to(self.addr, &self.ca_pem, "localhost", port).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_routes_reloads_when_the_routes_file_or_a_token_file_changes() {
    use std::os::unix::fs::PermissionsExt;
    let origin = Origin::streaming().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "watch-token-one-1a2b").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let with_token = |path: &str| {
        format!(
            "{}  - host: api.example\n    auth_header: x-api-key\n    token_file: {}\n",
            policy(path),
            token.display()
        )
    };
    let mut opts = ProxyOpts::ephemeral(with_token("/a")).arg("--watch-routes");
    opts.upstream_ca = Some(origin.ca_file.clone());
    let mut proxy = Proxy::start(opts);
    let tp = origin.https.port();
    let handle = ProcHandle {
        addr: proxy.addr,
        ca_pem: proxy.ca_pem.clone(),
    };
    let reloads = |p: &Proxy| p.count(|v| v["msg"] == "routes reloaded");

    // The routes file changes (written elsewhere, moved into place): no signal.
    let tmp = proxy.dir.path().join("next.yaml");
    std::fs::write(&tmp, with_token("/b")).unwrap();
    std::fs::rename(&tmp, &proxy.routes).unwrap();
    proxy.wait_line(|v| v["msg"] == "routes reloaded", "a reload on file change");
    let mut send = handle.h1(tp).await.expect("tunnel");
    let g = get1(&mut send, &format!("localhost:{tp}"), "/b")
        .await
        .unwrap();
    assert_eq!(g.status, 200, "the new policy is in force");

    // A token file change reloads too.
    let before = reloads(&proxy);
    std::fs::write(&token, "watch-token-two-3c4d").unwrap();
    let deadline = Instant::now() + T;
    while reloads(&proxy) == before {
        assert!(
            Instant::now() < deadline,
            "no reload on token file change:\n{}",
            proxy.redacted()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A bad file is refused once (not retried every poll) and changes nothing.
    std::fs::write(&tmp, "routes:\n  - hots: x\n").unwrap();
    std::fs::rename(&tmp, &proxy.routes).unwrap();
    proxy.wait_line(
        |v| v["msg"] == "reload failed; keeping the old policy",
        "the refused reload",
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        proxy.count(|v| v["msg"] == "reload failed; keeping the old policy"),
        1
    );
    let g = get1(&mut send, &format!("localhost:{tp}"), "/b")
        .await
        .unwrap();
    assert_eq!(g.status, 200, "the last good policy stays");
    assert!(
        !proxy.lines().join("\n").contains("watch-token"),
        "no token value logged"
    );
}
