//! End-to-end tests of the load harness with real processes, real TLS and curl: the
//! origin's credential check, the hudsucker comparison proxy's allowlist and injection,
//! a smoke run of the whole bench (direct + hudsucker), and the loud failure of
//! `--smoke` when egress-proxy cannot be measured.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_load-harness");
const TOKEN: &str = "benchTESTtoken0123456789abcdefXYZ";

/// Kills and reaps the child on drop, also when a test fails.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "load-harness-test-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Starts `load-harness <args>` and waits (bounded) for `READY <port>`.
fn start_ready(args: &[&str]) -> (Guard, u16) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("BENCH_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        for _ in lines {}
    });
    let guard = Guard(child);
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("child printed READY within 60 s");
    let port = line
        .strip_prefix("READY ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (guard, port)
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "30", "-o", "/dev/null", "-D", "-"])
        .args(args)
        .output()
        .expect("curl runs")
}

fn head_of(o: &Output) -> String {
    assert!(
        o.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_ascii_lowercase()
}

fn write_routes(dir: &Path) -> PathBuf {
    let p = dir.join("routes.json");
    std::fs::write(
        &p,
        r#"{"unmatched":"deny","routes":[
            {"host":"127.0.0.1","auth_scheme":"Bearer","token_env":"BENCH_TOKEN"},
            {"host":"127.0.0.2"}]}"#,
    )
    .unwrap();
    p
}

#[test]
fn origin_reports_whether_the_credential_arrived_without_echoing_it() {
    let dir = tempdir("origin");
    let (_origin, port) = start_ready(&["origin", "--dir", dir.to_str().unwrap(), "--hosts", "2"]);
    let ca = dir.join("origin-ca.pem");
    let url = format!("https://127.0.0.1:{port}/small");
    let good = format!("Authorization: Bearer {TOKEN}");
    let cases = [
        (vec![], "x-auth: none"),
        (vec!["-H", "Authorization: Bearer wrong"], "x-auth: other"),
        (vec!["-H", good.as_str()], "x-auth: match"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["--cacert", ca.to_str().unwrap()];
        args.extend(extra);
        args.push(&url);
        let o = curl(&args);
        let head = head_of(&o);
        assert!(head.contains(want), "want {want}, got {head}");
        assert!(!head.contains(&TOKEN.to_ascii_lowercase()), "token echoed");
    }
    // The second S3 host answers on the same port with a certificate naming its IP.
    let o = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        &format!("https://127.0.0.2:{port}/small"),
    ]);
    assert!(head_of(&o).starts_with("http/2 200") || head_of(&o).starts_with("http/1.1 200"));
    // Bounded endpoints refuse out-of-range requests.
    let o = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        &format!("https://127.0.0.1:{port}/bytes/99999999999999"),
    ]);
    assert!(
        head_of(&o).contains(" 400"),
        "oversized /bytes must be refused"
    );
    // `?slice=` (S4s) changes the slices, not the length; out of range is refused.
    for (query, want) in [
        ("slice=16384", 200u16),
        ("slice=100", 400),
        ("slice=70000", 400),
    ] {
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "30", "--cacert", ca.to_str().unwrap()])
            .args(["-o", "/dev/null", "-w", "%{http_code} %{size_download}"])
            .arg(format!("https://127.0.0.1:{port}/bytes/100000?{query}"))
            .output()
            .expect("curl runs");
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let code: u16 = out.split(' ').next().unwrap_or("").parse().unwrap_or(0);
        assert_eq!(code, want, "{query}: {out}");
        if want == 200 {
            assert_eq!(out, "200 100000", "{query}");
        }
    }
    // `POST /sink` (S4u) reads the whole body and answers with its length.
    let upload = dir.join("upload.bin");
    std::fs::write(&upload, vec![b'u'; 300_001]).unwrap();
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert", ca.to_str().unwrap()])
        .arg("--data-binary")
        .arg(format!("@{}", upload.display()))
        .arg(format!("https://127.0.0.1:{port}/sink"))
        .output()
        .expect("curl runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "300001\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hudsucker_proxy_injects_on_the_credential_route_and_refuses_unrouted_hosts() {
    let dir = tempdir("hud");
    let (_origin, oport) = start_ready(&["origin", "--dir", dir.to_str().unwrap(), "--hosts", "3"]);
    let cadir = dir.join("ca");
    let st = Command::new(BIN)
        .args(["ca", "--out", cadir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let routes = write_routes(&dir);
    let (_proxy, pport) = start_ready(&[
        "hudsucker",
        "--ca-cert",
        cadir.join("proxy-ca-cert.pem").to_str().unwrap(),
        "--ca-key",
        cadir.join("proxy-ca-key.pem").to_str().unwrap(),
        "--upstream-ca",
        dir.join("origin-ca.pem").to_str().unwrap(),
        "--routes",
        routes.to_str().unwrap(),
    ]);
    let proxy = format!("http://127.0.0.1:{pport}");
    let ca = cadir.join("proxy-ca-cert.pem");
    let via = |host: &str, extra: &[&str]| {
        let mut args = vec!["--proxy", proxy.as_str(), "--cacert", ca.to_str().unwrap()];
        args.extend_from_slice(extra);
        let url = format!("https://{host}:{oport}/small");
        args.push(&url);
        head_of(&curl(&args))
    };
    // The client's own credential is replaced by the route's.
    let h = via("127.0.0.1", &["-H", "Authorization: Bearer agent-guess"]);
    assert!(h.contains("x-auth: match"), "{h}");
    // A plain route: allowed, nothing injected.
    let h = via("127.0.0.2", &[]);
    assert!(h.contains("x-auth: none"), "{h}");
    // No route: refused by the proxy itself, the origin never asked.
    let h = via("127.0.0.3", &[]);
    assert!(h.contains(" 403"), "{h}");
    assert!(
        h.contains("x-egress-proxy-decision: host-not-allowed"),
        "{h}"
    );
    assert!(
        !h.contains("x-auth"),
        "refused request reached the origin: {h}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn all_cpus() -> String {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("0-{}", n - 1)
}

#[test]
fn smoke_bench_direct_tunnel_and_hudsucker_measures_every_scenario_and_leaks_no_token() {
    let dir = tempdir("smoke");
    let results = dir.join("results.json");
    let out = Command::new(BIN)
        .args([
            "bench",
            "--smoke",
            "--proxies",
            "direct,tunnel,hudsucker",
            "--seconds",
            "0.5",
        ])
        .args(["--proxy-cpus", &all_cpus()])
        .arg("--out-dir")
        .arg(dir.join("out"))
        .arg("--results")
        .arg(&results)
        .env("BENCH_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&results).unwrap();
    for (what, s) in [
        ("results", text.as_str()),
        ("stdout", &stdout),
        ("stderr", &stderr),
    ] {
        assert!(!s.contains(TOKEN), "token leaked into {what}");
    }
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rs = doc["results"].as_array().unwrap();
    assert_eq!(rs.len(), 3);
    for r in rs {
        let name = r["name"].as_str().unwrap();
        assert_eq!(r["status"], "ok", "{name}");
        for p in r["s1"].as_array().unwrap() {
            assert_eq!(p["valid"], true, "{name} S1 {p}");
            assert!(p["ok"].as_u64().unwrap() > 0);
        }
        for s in ["s2", "s3", "s4", "s5"] {
            assert_eq!(r[s]["valid"], true, "{name} {s}: {}", r[s]);
        }
        assert_eq!(r["s5"]["received"], r["s5"]["events"]);
    }
    // The tunnel relays the client's TLS to the origin: its CPU is read, and S6 (a MITM
    // proxy's memory per connection) is not its to measure.
    let tunnel = &rs[1];
    assert_eq!(tunnel["name"], "tunnel");
    assert!(tunnel["s1"][0]["per_cpu_s"].as_f64().unwrap() > 0.0);
    assert!(tunnel["s6"].is_null(), "{}", tunnel["s6"]);
    let hud = &rs[2];
    assert_eq!(hud["name"], "hudsucker");
    assert!(
        hud["s1"][0]["per_cpu_s"].as_f64().unwrap() > 0.0,
        "proxy CPU was read"
    );
    assert_eq!(hud["s6"]["valid"], true, "{}", hud["s6"]);
    assert!(hud["s6"]["rest_kib"].as_u64().unwrap() > 0);
    assert!(hud["s5"]["added_p99_ms"].is_number());
    assert!(
        stdout.contains("| S1 C=1 req/s |") && stdout.contains("| egress/tunnel |"),
        "table printed:\n{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn smoke_fails_loudly_when_egress_proxy_is_missing() {
    let dir = tempdir("missing");
    let out = Command::new(BIN)
        .args([
            "bench",
            "--smoke",
            "--proxies",
            "egress-proxy",
            "--seconds",
            "0.2",
        ])
        .args(["--proxy-cpus", &all_cpus()])
        .arg("--egress-proxy")
        .arg(dir.join("no-such-egress-proxy"))
        .arg("--out-dir")
        .arg(dir.join("out"))
        .arg("--results")
        .arg(dir.join("r.json"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("INVALID results for egress-proxy"),
        "{stderr}"
    );
    assert!(stdout.contains("egress-proxy: not measured"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
