//! Shared helpers for the launcher's end-to-end tests: real Docker, the real
//! `bottle` binary, unique resource names per test, and Drop guards that
//! remove everything a test (or the bottle it started) left, even on panic.
//!
//! Images: the tests assume `docker/build-images.sh` ran (scripts/setup.sh runs
//! it before the tests in CI); `bottle run` itself builds a missing image too.
//! No engine is a failure, never a silent pass: a dead daemon on CI must not
//! look green. Only `BOTTLE_SKIP_DOCKER=1` skips these tests, and says so.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The variable that, set to `1`, skips the tests that need Docker.
pub const SKIP_VAR: &str = "BOTTLE_SKIP_DOCKER";

/// True when the test should run against Docker; false (with a SKIP line)
/// only when `BOTTLE_SKIP_DOCKER=1`. Panics when no engine answers otherwise.
pub fn docker_or_skip() -> bool {
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        eprintln!("SKIP: {SKIP_VAR}=1 asks to skip the tests that need Docker");
        return false;
    }
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    let why = match &out {
        Ok(o) if o.status.success() => return true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => format!("cannot run the docker CLI: {e}"),
    };
    panic!(
        "this test needs a Docker engine and none answers (`docker info`: {why}); \
         start the engine, or set {SKIP_VAR}=1 to skip the Docker tests explicitly"
    );
}

pub fn unique(prefix: &str) -> String {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("urandom");
    format!("{prefix}{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI")
}

pub fn docker_ok_out(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn bottle_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bottle"))
}

/// Polls `f` every 300 ms until it returns Some or `secs` pass.
pub fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    None
}

/// The bottle id of a running bottle of this (unique) bottle name.
pub fn bottle_id(bottle: &str) -> Option<String> {
    let out = docker_ok_out(&[
        "network",
        "ls",
        "--filter",
        &format!("label=bottle.bottle={bottle}"),
        "--format",
        "{{.Label \"bottle.id\"}}",
    ]);
    out.lines()
        .next()
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

/// Resources of a bottle id still present: containers, networks, firewall rules.
pub fn leftovers(id: &str) -> Vec<String> {
    let mut v = Vec::new();
    for c in docker_ok_out(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=bottle.id={id}"),
        "--format",
        "{{.Names}}",
    ])
    .lines()
    {
        v.push(format!("container {c}"));
    }
    for n in docker_ok_out(&[
        "network",
        "ls",
        "--filter",
        &format!("label=bottle.id={id}"),
        "--format",
        "{{.Name}}",
    ])
    .lines()
    {
        v.push(format!("network {n}"));
    }
    if let Ok(o) = Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
    {
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            if l.contains(&format!("bottle:{id}")) {
                v.push(format!("rule {l}"));
            }
        }
    }
    v
}

/// The volumes of a bottle id (home, workspace), which `bottle run` keeps.
pub fn volumes_of(id: &str) -> Vec<String> {
    docker_ok_out(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=bottle.id={id}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// The id `bottle run` printed in its "Resume: `bottle resume ID`" line.
pub fn resume_id(stderr: &str) -> Option<String> {
    let rest = stderr.split("`bottle resume ").nth(1)?;
    rest.split('`').next().map(str::to_string)
}

/// Removes every resource of bottles named `bottle` (by label: containers,
/// networks, volumes, firewall rules) and extra containers.
pub struct Guard {
    pub bottle: String,
    pub containers: Vec<String>,
    pub children: Vec<Child>,
}

impl Guard {
    pub fn new(bottle: &str) -> Self {
        Guard {
            bottle: bottle.to_string(),
            containers: Vec::new(),
            children: Vec::new(),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        let label = format!("label=bottle.bottle={}", self.bottle);
        let ids: Vec<String> = String::from_utf8_lossy(
            &docker(&[
                "network",
                "ls",
                "--filter",
                &label,
                "--format",
                "{{.Label \"bottle.id\"}}",
            ])
            .stdout,
        )
        .lines()
        .chain(
            String::from_utf8_lossy(
                &docker(&[
                    "ps",
                    "-a",
                    "--filter",
                    &label,
                    "--format",
                    "{{.Label \"bottle.id\"}}",
                ])
                .stdout,
            )
            .lines(),
        )
        .map(str::to_string)
        .collect();
        for c in String::from_utf8_lossy(&docker(&["ps", "-aq", "--filter", &label]).stdout).lines()
        {
            let _ = docker(&["rm", "-f", c]);
        }
        for n in
            String::from_utf8_lossy(&docker(&["network", "ls", "-q", "--filter", &label]).stdout)
                .lines()
        {
            let _ = docker(&["network", "rm", n]);
        }
        // The agent's volumes outlive `bottle run` on purpose (resume).
        for v in
            String::from_utf8_lossy(&docker(&["volume", "ls", "-q", "--filter", &label]).stdout)
                .lines()
        {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
        if let Ok(o) = Command::new("iptables")
            .args(["-w", "-S", "INPUT"])
            .output()
        {
            for l in String::from_utf8_lossy(&o.stdout).lines() {
                if ids.iter().any(|id| l.contains(&format!("bottle:{id}"))) {
                    let args: Vec<String> = l
                        .replacen("-A", "-D", 1)
                        .split_whitespace()
                        .map(|a| a.trim_matches('"').to_string())
                        .collect();
                    let _ = Command::new("iptables").arg("-w").args(&args).output();
                }
            }
        }
    }
}

/// A test CA and a leaf for the origin's names (PEM cert, key), via rcgen.
pub struct OriginPki {
    pub ca_pem: String,
    pub leaf_pem: String,
    pub leaf_key: String,
}

pub fn origin_pki(names: &[&str]) -> OriginPki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "bottle e2e origin CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = p.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(p, &ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut lp =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    lp.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = lp.signed_by(&leaf_key, &issuer).unwrap();
    OriginPki {
        ca_pem: ca.pem(),
        leaf_pem: leaf.pem(),
        leaf_key: leaf_key.serialize_pem(),
    }
}

/// An HTTPS origin that answers every request with JSON naming the path and
/// the sha256 of the `Authorization` it saw (never the value itself).
pub const ORIGIN_PY: &str = r#"
import http.server, ssl, json, hashlib
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n: self.rfile.read(n)
        a = self.headers.get("Authorization")
        body = json.dumps({"path": self.path, "host": self.headers.get("Host"),
            "auth_sha256": hashlib.sha256(a.encode()).hexdigest() if a else "none"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = answer
    def log_message(self, *a): pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/srv/cert.pem", "/srv/key.pem")
s = http.server.ThreadingHTTPServer(("0.0.0.0", 443), H)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#;

/// Starts the origin container on `network` with `aliases`; returns its name.
pub fn start_origin(
    name: &str,
    network: &str,
    aliases: &[&str],
    pki: &OriginPki,
    dir: &Path,
) -> String {
    // `bottle run` creates its networks one after another and a caller
    // learns the id from the first: wait for this one (`docker create`
    // accepts a missing network; `start` would fail on it).
    wait_for(120, || {
        docker(&["network", "inspect", network])
            .status
            .success()
            .then_some(())
    })
    .unwrap_or_else(|| panic!("network {network} never appeared"));
    let mut args = vec![
        "create",
        "--name",
        name,
        "--user",
        "0:0",
        "--network",
        network,
        "--label",
        "bottle.test=origin",
    ];
    for a in aliases {
        args.push("--network-alias");
        args.push(a);
    }
    args.extend(["bottle-agent:latest", "python3", "/srv/origin.py"]);
    docker_ok_out(&args);
    let srv = dir.join("srv");
    std::fs::create_dir_all(&srv).unwrap();
    std::fs::write(srv.join("origin.py"), ORIGIN_PY).unwrap();
    std::fs::write(srv.join("cert.pem"), &pki.leaf_pem).unwrap();
    std::fs::write(srv.join("key.pem"), &pki.leaf_key).unwrap();
    docker_ok_out(&[
        "cp",
        &format!("{}/.", srv.display()),
        &format!("{name}:/srv"),
    ]);
    docker_ok_out(&["start", name]);
    name.to_string()
}

/// A throwaway git repository with one commit, the bottle's workspace.
pub fn git_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let git = |a: &[&str]| {
        let o = Command::new("git")
            .args(a)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {a:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["config", "user.email", "t@example.com"]);
    git(&["config", "user.name", "t"]);
    git(&["config", "credential.helper", "store"]);
    std::fs::write(dir.join("README"), "hello\n").unwrap();
    git(&["add", "README"]);
    git(&["commit", "-q", "-m", "one"]);
}

/// Spawns `bottle` with output captured to files in `dir`.
pub fn spawn_bottle(
    dir: &Path,
    cwd: &Path,
    state: &Path,
    envs: &[(&str, &str)],
    args: &[&str],
) -> Child {
    let out = std::fs::File::create(dir.join("bottle.out")).unwrap();
    let err = std::fs::File::create(dir.join("bottle.err")).unwrap();
    let mut c = Command::new(bottle_bin());
    c.args(args)
        .current_dir(cwd)
        .env("BOTTLE_STATE_DIR", state)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.spawn().expect("spawn bottle")
}

/// Waits (bounded) for a child to exit.
pub fn wait_child(c: &mut Child, secs: u64) -> Option<std::process::ExitStatus> {
    wait_for(secs, || c.try_wait().ok().flatten())
}

/// The agent container's name once it runs.
pub fn running_agent(bottle: &str, secs: u64) -> Option<(String, String)> {
    wait_for(secs, || {
        let id = bottle_id(bottle)?;
        let name = format!("bottle-{id}-agent");
        let st = docker(&["inspect", "-f", "{{.State.Running}}", &name]);
        (String::from_utf8_lossy(&st.stdout).trim() == "true").then_some((id, name))
    })
}

/// `docker exec` in the agent: (exit code, stdout, stderr).
pub fn exec(container: &str, script: &str) -> (i32, String, String) {
    let o = docker(&["exec", container, "bash", "-c", script]);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

pub fn file(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
