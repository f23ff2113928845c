//! Real client programs and squid: locating them (a missing one FAILS naming the
//! apt package, never skips), building the Go client once, and running squid with a
//! generated config on a free loopback port.
//!
//! Client programs get a cleared environment so the machine's proxy variables and
//! git/curl config cannot change what is tested.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Finds `bin` on PATH or fails naming the apt package that provides it.
pub fn require(bin: &str, apt: &str) -> PathBuf {
    if bin.starts_with('/') {
        let p = PathBuf::from(bin);
        assert!(
            p.exists(),
            "{bin} is missing: install the apt package `{apt}`"
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{bin}` is not on PATH: install the apt package `{apt}` (scripts/setup.sh does)");
}

pub fn git_path() -> PathBuf {
    require("git", "git")
}

/// `git` with a hermetic environment (no global/system config, no proxies).
pub fn git_cmd() -> Command {
    let mut c = Command::new(git_path());
    hermetic(&mut c);
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid");
    c
}

/// Clears the environment but PATH and HOME (a temp HOME when asked).
pub fn hermetic(c: &mut Command) {
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("LANG", "C.UTF-8");
}

/// Runs a client program with a time bound (killed after 60 s); returns its
/// output. Pipes are drained while it runs so a large output cannot stall it.
pub fn run(mut c: Command, what: &str) -> Output {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            // Only the child this function started, by its id.
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait {what}: {e}"));
    let _ = done_tx.send(());
    let _ = watchdog.join();
    out
}

/// Runs blocking work (a client program) off the async runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// The directory of the client programs' sources.
pub fn support_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support")
}

/// Builds `support/go/main.go` once per machine into the target dir (rebuilt when
/// the source is newer); concurrent test processes race harmlessly via rename.
pub fn go_client() -> PathBuf {
    let go = require("go", "golang-go");
    let src = support_dir().join("go/main.go");
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out = tmp.join("egress-go-client");
    let fresh = match (std::fs::metadata(&out), std::fs::metadata(&src)) {
        (Ok(o), Ok(s)) => o.modified().ok() >= s.modified().ok(),
        _ => false,
    };
    if fresh {
        return out;
    }
    let part = tmp.join(format!("egress-go-client.{}", std::process::id()));
    let mut c = Command::new(go);
    hermetic(&mut c);
    c.arg("build")
        .arg("-o")
        .arg(&part)
        .arg(&src)
        .env("GOCACHE", tmp.join("gocache"))
        .env("GOPATH", tmp.join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .env("CGO_ENABLED", "0");
    let o = run(c, "go build");
    assert!(
        o.status.success(),
        "go build of the Go client failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::rename(&part, &out).expect("install go client");
    out
}

/// A free loopback port (bound then released; squid binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// squid (Debian squid-openssl) run in the foreground (`-N`) with a generated
/// config; killed on drop.
pub struct Squid {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct SquidBump<'a> {
    /// squid's own CA (cert PEM, key PEM) used to mint its bumped leaves.
    pub ca: (&'a str, &'a str),
    /// The CA squid trusts for the origin.
    pub origin_ca: &'a Path,
}

impl Squid {
    /// Starts squid allowing CONNECT only to the `allow` domains.
    pub fn start(allow: &[&str], bump: Option<SquidBump<'_>>) -> Squid {
        let squid = require("/usr/sbin/squid", "squid-openssl");
        let dir = tempfile::Builder::new()
            .prefix("egress-squid")
            .tempdir()
            .expect("squid dir");
        let d = dir.path();
        // squid drops to user `proxy`: everything it writes must be theirs.
        let _ = Command::new("chmod").arg("0777").arg(d).status();
        let port = free_port();
        let mut conf = String::new();
        let mut port_line = format!("http_port 127.0.0.1:{port}");
        if let Some(b) = &bump {
            let certgen = require("/usr/lib/squid/security_file_certgen", "squid-openssl");
            let ca = d.join("squid-ca.pem");
            std::fs::write(&ca, format!("{}{}", b.ca.0, b.ca.1)).expect("squid CA");
            let db = d.join("ssldb");
            let o = Command::new(&certgen)
                .args(["-c", "-s"])
                .arg(&db)
                .args(["-M", "4MB"])
                .output()
                .expect("security_file_certgen");
            assert!(
                o.status.success(),
                "security_file_certgen -c: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let _ = Command::new("chown")
                .args(["-R", "proxy:proxy"])
                .arg(&db)
                .status();
            port_line.push_str(&format!(
                " ssl-bump tls-cert={} generate-host-certificates=on dynamic_cert_mem_cache_size=4MB",
                ca.display()
            ));
            conf.push_str(&format!(
                "sslcrtd_program {} -s {} -M 4MB\nsslcrtd_children 2 startup=1 idle=1\n\
                 tls_outgoing_options cafile={}\n\
                 acl step1 at_step SslBump1\nssl_bump peek step1\nssl_bump bump all\n",
                certgen.display(),
                db.display(),
                b.origin_ca.display()
            ));
        }
        conf.insert_str(0, &format!("{port_line}\n"));
        conf.push_str(&format!(
            "pid_filename {d}/squid.pid\ncache_log {d}/cache.log\naccess_log {d}/access.log\n\
             coredump_dir {d}\ncache deny all\ncache_mem 8 MB\nshutdown_lifetime 0 seconds\n\
             acl allowed dstdomain {}\nhttp_access allow allowed\nhttp_access deny all\n",
            allow.join(" "),
            d = d.display()
        ));
        let conf_path = d.join("squid.conf");
        std::fs::write(&conf_path, conf).expect("squid.conf");
        let mut c = Command::new(squid);
        c.arg("-N").arg("-f").arg(&conf_path);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn squid");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(addr).is_ok() {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                let log = std::fs::read_to_string(d.join("cache.log")).unwrap_or_default();
                panic!("squid exited with {st} before listening; cache.log:\n{log}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let log = std::fs::read_to_string(d.join("cache.log")).unwrap_or_default();
                panic!("squid did not listen on {addr} in 30 s; cache.log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Squid { addr, dir, child }
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

/// `git ARGS` in `dir`, stdout trimmed (for reading repo state).
pub fn git_cmd_out(dir: &Path, args: &[&str]) -> String {
    let mut c = git_cmd();
    c.current_dir(dir).args(args);
    let o = run(c, "git");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
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
