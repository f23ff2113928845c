//! The interactive session on real Docker, through the attach API (issue 15):
//! `bottle run --yes` on a pseudo-terminal (tests/pty/driver.py: Python's
//! `pty`-style openpty, `TIOCSWINSZ` for the window size) gets the agent's
//! tty at our size and follows a resize, carries typed input in and output
//! back, lets Ctrl-C (byte 0x03) interrupt a `sleep` in the agent's shell
//! without ending the bottle, and ends with the agent's exit code and a
//! complete teardown. Two SIGINTs close together still tear everything down.
//! The terminal is raw while attached and restored after, and `bottle` runs
//! no `docker` process (a `docker` on PATH that records its calls is never
//! called).
//!
//! Needs the images of docker/build-images.sh (CI: scripts/setup.sh builds them).

mod e2e_support;

use e2e_support::*;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const DRIVER: &str = include_str!("pty/driver.py");

/// What the driver saw: exit code, output, per-step marks.
struct Session {
    exit: Option<i64>,
    output: String,
    marks: Value,
}

impl Session {
    fn mark(&self, step: usize) -> &Value {
        &self.marks[step.to_string()]
    }
    /// Seconds since the start at which `step` finished.
    fn t(&self, step: usize) -> f64 {
        self.mark(step)["t"].as_f64().unwrap_or(f64::NAN)
    }
    /// The first group an `expect` step matched.
    fn group(&self, step: usize) -> String {
        self.mark(step)["groups"][0]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    /// The bottle id from the "agent bottle-<id>-agent starting" line.
    fn id(&self) -> String {
        let at = self
            .output
            .find("agent bottle-")
            .unwrap_or_else(|| panic!("no agent line in:\n{}", self.output));
        let rest = &self.output[at + "agent bottle-".len()..];
        rest[..rest.find("-agent starting").expect("agent line")].to_string()
    }
}

/// A directory whose `docker` records its arguments in `calls` and fails.
fn recording_docker(dir: &Path) -> String {
    let bin = dir.join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = dir.join("docker-calls");
    std::fs::write(
        bin.join("docker"),
        format!(
            "#!/bin/sh\necho \"docker $*\" >> '{}'\nexit 1\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("docker"), std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs `bottle run --yes -m m.yaml -a a` in `dir` on a pty of `rows`x`cols`
/// through `steps`; panics with the transcript when a step fails.
fn session(dir: &Path, rows: u16, cols: u16, steps: Value) -> Session {
    let path = recording_docker(dir);
    let env = serde_json::json!({
        "PATH": path,
        "HOME": dir,
        "BOTTLE_STATE_DIR": dir.join("state"),
        "TERM": "xterm",
    });
    let spec = serde_json::json!({
        "argv": [bottle_bin(), "run", "--yes", "-m", "m.yaml", "-a", "a"],
        "env": env,
        "cwd": dir,
        "rows": rows,
        "cols": cols,
        "steps": steps,
    });
    // The spec on stdin: a long paste is over the kernel's limit for one argument.
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(spec.to_string().as_bytes())
        .expect("spec to the driver");
    let o = child.wait_with_output().expect("driver");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "driver: {e}\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let s = Session {
        exit: v["exit"].as_i64(),
        output: v["output"].as_str().unwrap_or_default().to_string(),
        marks: v["marks"].clone(),
    };
    assert!(
        v["ok"].as_bool() == Some(true),
        "{}\nexit {:?}; output:\n{}",
        v["error"],
        s.exit,
        s.output
    );
    assert!(
        !dir.join("docker-calls").exists(),
        "bottle ran the docker CLI: {}",
        file(&dir.join("docker-calls"))
    );
    s
}

/// The bottle (squid outer proxy, runc) with `command` as the agent.
fn manifest(dir: &Path, bottle: &str, command: &str) {
    std::fs::write(
        dir.join("m.yaml"),
        format!(
            "bottles:\n  {bottle}:\n    outer_proxy: squid\n    allow: [pypi.org]\n    runtime: runc\nagents:\n  a:\n    bottle: {bottle}\n    env: {{PS1: 'AGENT-READY$ '}}\n    command: {command}\n"
        ),
    )
    .unwrap();
}

/// Raw while attached (no canonical mode, no echo, no signals from keys),
/// restored after.
fn assert_raw_then_restored(s: &Session, during: usize, after: usize) {
    let d = s.mark(during);
    assert_eq!(
        (
            d["canonical"].as_bool(),
            d["echo"].as_bool(),
            d["signals"].as_bool()
        ),
        (Some(false), Some(false), Some(false)),
        "not raw while attached: {d}"
    );
    let a = s.mark(after);
    assert_eq!(
        (
            a["canonical"].as_bool(),
            a["echo"].as_bool(),
            a["signals"].as_bool()
        ),
        (Some(true), Some(true), Some(true)),
        "terminal not restored: {a}"
    );
}

fn assert_gone(dir: &Path, id: &str) {
    let left = leftovers(id);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        !dir.join("state").join(id).exists(),
        "state directory remains"
    );
}

const PROMPT: &str = r"AGENT-READY\$ ";

#[test]
fn terminal_session_size_resize_input_ctrl_c_and_exit_code() {
    if !docker_or_skip() {
        return;
    }
    let bottle = unique("att");
    let _g = Guard::new(&bottle);
    let d = tempfile::tempdir().unwrap();
    manifest(d.path(), &bottle, "[bash, --norc, --noprofile, -i]");
    let steps = serde_json::json!([
        ["expect", PROMPT, 240],                                   // 0
        ["termios", "attached"],                                   // 1
        ["send", "echo SIZE=$(stty size)\r"],                      // 2
        ["expect", r"SIZE=(\d+ \d+)", 20],                         // 3
        ["resize", 42, 133],                                       // 4
        ["sleep", 1],                                              // 5
        ["send", "echo SIZE=$(stty size)\r"],                      // 6
        ["expect", r"SIZE=(\d+ \d+)", 20],                         // 7
        ["send", "read -r line; echo \"GOT:${line}:$((6*7))\"\r"], // 8
        ["sleep", 0.5],                                            // 9
        ["send", "typed on the host\r"],                           // 10
        ["expect", r"GOT:([^:]*):42", 20],                         // 11
        ["send", "sleep 30; echo NOT-$((2+3))\r"],                 // 12
        ["expect", r"echo NOT-\$\(\(2\+3\)\)\r\n", 10],            // 13
        ["sleep", 1.5],                                            // 14
        ["send", "\u{3}"],                                         // 15
        ["expect", PROMPT, 10],                                    // 16
        ["send", "echo ALIVE-$((1+1))\r"],                         // 17
        ["expect", r"ALIVE-(2)", 10],                              // 18
        ["send", "exit 7\r"],                                      // 19
        ["wait", 120],                                             // 20
        ["termios", "after"],                                      // 21
    ]);
    let s = session(d.path(), 31, 97, steps);
    let id = s.id();
    assert_eq!(s.group(3), "31 97", "initial size");
    assert_eq!(s.group(7), "42 133", "size after the resize");
    assert_eq!(s.group(11), "typed on the host");
    // Ctrl-C ended the sleep at once (not after its 30 s), the list after
    // it did not run, and the shell (so the bottle) stayed.
    let ctrl_c = s.t(16) - s.t(15);
    assert!(
        ctrl_c < 5.0,
        "Ctrl-C took {ctrl_c:.2} s to interrupt the sleep"
    );
    assert!(!s.output.contains("NOT-5"), "{}", s.output);
    eprintln!(
        "MEASURE: agent prompt after {:.1} s; Ctrl-C to prompt {:.3} s; exit to bottle gone {:.1} s",
        s.t(0),
        ctrl_c,
        s.t(20) - s.t(19)
    );
    assert_eq!(s.exit, Some(7), "{}", s.output);
    assert_raw_then_restored(&s, 1, 21);
    assert_gone(d.path(), &id);
}

#[test]
fn two_sigints_close_together_still_tear_everything_down() {
    if !docker_or_skip() {
        return;
    }
    let bottle = unique("int2");
    let _g = Guard::new(&bottle);
    let d = tempfile::tempdir().unwrap();
    manifest(d.path(), &bottle, "[sleep, '600']");
    let steps = serde_json::json!([
        ["expect", r"agent bottle-\S+-agent starting", 240], // 0
        ["sleep", 2],                                        // 1
        ["termios", "attached"],                             // 2
        ["kill", "INT"],                                     // 3
        ["sleep", 0.3],                                      // 4
        ["kill", "INT"],                                     // 5
        ["wait", 120],                                       // 6
        ["termios", "after"],                                // 7
    ]);
    let s = session(d.path(), 24, 80, steps);
    let id = s.id();
    assert_eq!(s.exit, Some(130), "{}", s.output);
    assert_gone(d.path(), &id);
    assert!(
        s.output.contains("interrupted: tearing the bottle down"),
        "{}",
        s.output
    );
    // The second one came during teardown, was acknowledged, and did not stop it.
    assert!(
        s.output.contains("interrupted again: teardown goes on"),
        "{}",
        s.output
    );
    eprintln!(
        "MEASURE: first SIGINT to bottle gone {:.1} s",
        s.t(6) - s.t(3)
    );
    assert_raw_then_restored(&s, 2, 7);
}

/// The detach keys (Ctrl-] then `.`) end the session and the bottle (130),
/// everything torn down; a lone Ctrl-] followed by other input reaches the
/// agent unchanged.
#[test]
fn detach_keys_end_the_session_and_tear_down() {
    if !docker_or_skip() {
        return;
    }
    let bottle = unique("det");
    let _g = Guard::new(&bottle);
    let d = tempfile::tempdir().unwrap();
    manifest(d.path(), &bottle, "[bash, --norc, --noprofile, -i]");
    let steps = serde_json::json!([
        ["expect", PROMPT, 240], // 0
        [
            "send",
            "IFS= read -r line; printf 'LEN=%s\\n' \"${#line}\"\r"
        ], // 1
        ["sleep", 0.5],          // 2
        ["send", "\u{1d}x\r"],   // 3
        ["expect", r"LEN=(\d+)", 20], // 4
        ["send", "\u{1d}."],     // 5
        ["wait", 120],           // 6
        ["termios", "after"],    // 7
    ]);
    let s = session(d.path(), 24, 80, steps);
    let id = s.id();
    assert_eq!(s.group(4), "2", "Ctrl-] x reaches the agent as two bytes");
    assert_eq!(s.exit, Some(130), "{}", s.output);
    assert!(s.output.contains("detached from the agent"), "{}", s.output);
    let a = s.mark(7);
    assert_eq!(a["canonical"].as_bool(), Some(true), "{a}");
    assert_gone(d.path(), &id);
}

/// A 200 KB paste reaches the agent whole while its echo (as much again)
/// comes back: both directions at once, with bounded buffers, do not stall.
#[test]
fn a_long_paste_arrives_whole_while_its_echo_comes_back() {
    if !docker_or_skip() {
        return;
    }
    let bottle = unique("paste");
    let _g = Guard::new(&bottle);
    let d = tempfile::tempdir().unwrap();
    manifest(d.path(), &bottle, "[bash, --norc, --noprofile, -i]");
    let lines = 2000;
    let paste: String = (0..lines)
        .map(|i| format!("line-{i:04}-{}\r", "x".repeat(89)))
        .collect();
    let steps = serde_json::json!([
        ["expect", PROMPT, 240],        // 0
        ["send", "cat > /tmp/paste\r"], // 1
        ["sleep", 0.5],                 // 2
        ["send", paste],                // 3
        ["send", "\u{4}"],              // 4
        ["expect", PROMPT, 120],        // 5
        [
            "send",
            "echo BYTES=$(wc -c < /tmp/paste) LAST=$(tail -c 100 /tmp/paste | head -c 9)\r"
        ], // 6
        ["expect", r"BYTES=(\d+ LAST=line-\d+)", 20], // 7
        ["send", "exit 0\r"],           // 8
        ["wait", 120],                  // 9
    ]);
    let s = session(d.path(), 24, 80, steps);
    let id = s.id();
    assert_eq!(
        s.group(7),
        format!("{} LAST=line-{:04}", lines * 100, lines - 1)
    );
    eprintln!(
        "MEASURE: {} KB pasted and echoed in {:.2} s",
        lines * 100 / 1000,
        s.t(5) - s.t(2)
    );
    assert_eq!(s.exit, Some(0), "{}", s.output);
    assert_gone(d.path(), &id);
}

/// An agent whose command does not exist: the agent's init says why on the
/// terminal, `bottle` exits 127 (the agent's code), the terminal is
/// restored and nothing of the bottle is left. (An error inside `bottle`
/// after raw mode, such as a start the engine refuses, restores the
/// terminal through the same guard; no engine refusal can be provoked here.)
#[test]
fn an_agent_command_that_does_not_exist_exits_127_terminal_restored() {
    if !docker_or_skip() {
        return;
    }
    let bottle = unique("nostart");
    let _g = Guard::new(&bottle);
    let d = tempfile::tempdir().unwrap();
    manifest(d.path(), &bottle, "[no-such-agent-binary]");
    let steps = serde_json::json!([
        ["expect", r"agent bottle-\S+-agent starting", 240], // 0
        ["expect", r"exec no-such-agent-binary failed", 60], // 1
        ["wait", 120],                                       // 2
        ["termios", "after"],                                // 3
    ]);
    let s = session(d.path(), 24, 80, steps);
    let id = s.id();
    assert_eq!(s.exit, Some(127), "{}", s.output);
    let a = s.mark(3);
    assert_eq!(
        (a["canonical"].as_bool(), a["echo"].as_bool()),
        (Some(true), Some(true)),
        "terminal not restored: {a}"
    );
    assert_gone(d.path(), &id);
}
