//! End to end on real Docker: the operator's terminal UI and approve with
//! edit (issue 14). A supervised bottle (squid outer proxy, the HTTPS test
//! origin); the agent's MCP client asks for a new host; `bottle supervise`
//! runs under a pseudo-terminal (`script`), the test reads the screen (a
//! small emulator of the cursor moves and text the backend sends), presses
//! `a`, and the agent's request then gets the origin's 200 through
//! egress-proxy and squid. A rejection typed in the TUI needs a reason and
//! reaches the agent; `e` approves what an `EDITOR` script kept; a
//! credential widening is marked and needs `a` then `y`. Then `bottle
//! supervise approve ID --edit` with an `EDITOR` script that drops a path:
//! the audit keeps the edit, the live routes and the proxy allow only what
//! was kept, and a widening `--paths` is refused with nothing changed.
//!
//! Needs the images of docker/build-images.sh (bottle-supervise included)
//! and `script` (util-linux's, in Debian's essential bsdutils).

mod e2e_support;
mod supervise_support;
mod tui_pty;

use e2e_support::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use supervise_support::{MCP_PY, last_status};
use tui_pty::Tui;

fn supervise(state: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bottle_bin())
        .arg("supervise")
        .args(args)
        .env("BOTTLE_STATE_DIR", state)
        .env("USER", "e2e-operator")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Starts `request-egress` in the agent (waiting in the background) and
/// returns the proposal id once `bottle supervise list --json` shows it.
fn request(agent: &str, state: &Path, tag: &str, args: &str) -> String {
    exec(
        agent,
        &format!(
            "nohup python3 /tmp/mcp.py request-egress '{args}' >/tmp/{tag}.out 2>/tmp/{tag}.err &"
        ),
    );
    let host: serde_json::Value = serde_json::from_str(args).unwrap();
    wait_for(40, || {
        let (_, out, _) = supervise(state, &[], &["list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v.as_array()?
            .iter()
            .find(|p| p["request"]["host"] == host["host"])
            .and_then(|p| p["id"].as_str().map(str::to_string))
    })
    .unwrap_or_else(|| {
        panic!(
            "no proposal for {args}: {}",
            exec(agent, &format!("cat /tmp/{tag}.err")).1
        )
    })
}

fn tool_answer(agent: &str, tag: &str, want: &str) -> String {
    wait_for(40, || {
        let (_, out, _) = exec(agent, &format!("cat /tmp/{tag}.out"));
        out.contains(want).then_some(out)
    })
    .unwrap_or_else(|| exec(agent, &format!("cat /tmp/{tag}.out /tmp/{tag}.err")).1)
}

#[test]
fn supervise_tui_approves_and_rejects_live_and_approve_edit_narrows() {
    if !docker_or_skip() {
        return;
    }
    let bottle = unique("svtui");
    let mut guard = Guard::new(&bottle);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let repo = dir.join("repo");
    git_repo(&repo);
    let state = dir.join("state");
    let names = [
        "api.origin.test",
        "pub.origin.test",
        "tui.origin.test",
        "no.origin.test",
        "edit.origin.test",
    ];
    let pki = origin_pki(&names);
    std::fs::write(dir.join("origin-ca.pem"), &pki.ca_pem).unwrap();
    let token = format!("tok-{}", unique("s3cr3t"));
    let token_var = format!("E2E_TOKEN_{}", bottle.to_uppercase());
    let manifest = format!(
        r#"
bottles:
  {bottle}:
    outer_proxy: squid
    outer_proxy_trust: [./origin-ca.pem]
    allow: [pub.origin.test]
    supervise: true
    egress_proxy:
      routes:
        - host: api.origin.test
          path_allowlist: ["/allowed"]
          methods: [GET]
          auth: {{scheme: Bearer, token_ref: {token_var}}}
agents:
  a:
    bottle: {bottle}
    command: [bash, -c, "for i in $(seq 1200); do [ -e /tmp/done ] && exit 7; sleep 0.5; done; exit 1"]
"#
    );
    std::fs::write(dir.join("bottle.yaml"), manifest).unwrap();
    let child = spawn_bottle(
        dir,
        &repo,
        &state,
        &[(token_var.as_str(), token.as_str())],
        &[
            "run",
            "--manifest",
            dir.join("bottle.yaml").to_str().unwrap(),
            "--agent",
            "a",
        ],
    );
    guard.children.push(child);
    let id = wait_for(180, || bottle_id(&bottle)).unwrap_or_else(|| {
        panic!(
            "no bottle network; stderr:\n{}",
            file(&dir.join("bottle.err"))
        )
    });
    let origin = format!("bottle-{id}-test-origin");
    guard.containers.push(origin.clone());
    start_origin(&origin, &format!("bottle-{id}-egress"), &names, &pki, dir);
    let (_, agent) = running_agent(&bottle, 240).unwrap_or_else(|| {
        panic!(
            "agent never ran; stderr:\n{}",
            file(&dir.join("bottle.err"))
        )
    });
    exec(
        &agent,
        &format!("cat > /tmp/mcp.py <<'PYEOF'\n{MCP_PY}\nPYEOF"),
    );
    let (code, out, err) = exec(
        &agent,
        "for i in $(seq 20); do python3 /tmp/mcp.py list-egress-routes '{}' >/dev/null && exit 0; sleep 0.5; done; exit 1",
    );
    assert_eq!(code, 0, "the sidecar never answered: {out}\n{err}");
    let curl = |url: &str| {
        let (_, out, _) = exec(&agent, &format!("curl -s -m 30 -o /dev/null -D - {url}"));
        out
    };

    // Without a terminal, `bottle supervise` prints the list and says why.
    let (code, out, err) = supervise(&state, &[], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("no pending proposals (1 supervised bottle(s) running)"),
        "{out}"
    );
    assert!(err.contains("needs a terminal"), "{err}");

    // An EDITOR that drops the path `/drop` from the proposed change.
    let editor = dir.join("narrow.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i '/- \\/drop/d' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // 1. The TUI shows the proposal; `a` approves it; the request then passes.
    let url = "https://tui.origin.test/fresh";
    assert_eq!(last_status(&curl(url)), Some(403), "{}", curl(url));
    let mut tui = Tui::start(&state, Some(&editor));
    tui.wait_screen(30, &["bottle supervise", "0 pending", "q quit"]);
    let pid = request(
        &agent,
        &state,
        "tui",
        r#"{"host":"tui.origin.test","paths":["/fresh"],"methods":["GET"],"justification":"e2e: the TUI approves this"}"#,
    );
    let screen = tui.wait_screen(
        10,
        &[
            &pid,
            "tui.origin.test",
            "e2e: the TUI approves this",
            "e2e-mcp",
            "(new route)",
        ],
    );
    assert!(
        screen.contains(&format!("bottle {bottle} (id {id})")),
        "{screen}"
    );
    assert!(
        screen.contains("+ path_allowlist: [\"/fresh\"]"),
        "{screen}"
    );
    assert!(!screen.contains("!! CREDENTIAL"), "{screen}");
    let t0 = Instant::now();
    tui.press("a");
    let screen = tui.wait_screen(20, &[&format!("approved {pid}"), "squid reconfigured"]);
    let shown = t0.elapsed();
    let passed = wait_for(20, || (last_status(&curl(url)) == Some(200)).then_some(()));
    let applied = t0.elapsed();
    assert!(
        passed.is_some(),
        "still refused after the TUI approved:\n{}\n{screen}",
        curl(url)
    );
    eprintln!(
        "supervise tui: approval shown {:.2}s, request answered 200 {:.2}s after the key",
        shown.as_secs_f64(),
        applied.as_secs_f64()
    );
    assert!(tool_answer(&agent, "tui", "approved").contains("approved"));
    let audit_file = state.join(&id).join("supervise/audit.jsonl");
    let audit = file(&audit_file);
    assert!(
        audit.contains(&pid) && audit.contains("e2e-tui-operator"),
        "{audit}"
    );

    // 2. A rejection in the TUI: Enter without a reason sends nothing.
    let rid = request(
        &agent,
        &state,
        "no",
        r#"{"host":"no.origin.test","justification":"e2e: the TUI rejects this"}"#,
    );
    tui.wait_screen(10, &[&rid, "e2e: the TUI rejects this"]);
    tui.press("x");
    tui.wait_screen(5, &[&format!("reject {rid}, reason:")]);
    tui.press("\r");
    tui.wait_screen(5, &["a rejection needs a reason"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !file(&audit_file).contains(&rid),
        "rejected without a reason"
    );
    tui.press("not in this task\r");
    tui.wait_screen(10, &[&format!("rejected {rid}: not in this task")]);
    let res = tool_answer(&agent, "no", "rejected");
    assert!(res.contains("not in this task"), "{res}");
    assert_eq!(last_status(&curl("https://no.origin.test/")), Some(403));

    // `e` opens the EDITOR on the change, then approves what it kept.
    let tid = request(
        &agent,
        &state,
        "tedit",
        r#"{"host":"tedit.origin.test","paths":["/keep","/drop"],"justification":"e2e: edit in the TUI"}"#,
    );
    tui.wait_screen(10, &[&tid, "e2e: edit in the TUI"]);
    tui.press("e");
    tui.wait_screen(20, &[&format!("approved {tid} (edited)")]);
    let line = file(&audit_file)
        .lines()
        .find(|l| l.contains(&tid))
        .map(str::to_string)
        .unwrap();
    let a: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(a["operator"], "e2e-tui-operator");
    assert_eq!(a["edit"]["paths"], serde_json::json!(["/keep"]), "{a}");
    assert_eq!(
        a["route_after"]["path_allowlist"],
        serde_json::json!(["/keep"]),
        "{a}"
    );

    // A path extension of the credentialed route: marked, and `a` needs `y`.
    let more = "https://api.origin.test/more";
    assert_eq!(last_status(&curl(more)), Some(403), "{}", curl(more));
    let cid = request(
        &agent,
        &state,
        "cred",
        r#"{"host":"api.origin.test","paths":["/more"],"justification":"e2e: more of the API"}"#,
    );
    let screen = tui.wait_screen(
        10,
        &[&cid, "!! CREDENTIAL: this route carries a credential"],
    );
    assert!(
        screen.contains("+ path_allowlist: [\"/allowed\",\"/more\"]"),
        "{screen}"
    );
    assert!(
        !screen.contains(&token),
        "the token value on screen:\n{screen}"
    );
    tui.press("a");
    tui.wait_screen(5, &["widens a credentialed route: y approves"]);
    tui.press("n");
    tui.wait_screen(5, &[&format!("{cid}: not approved")]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !file(&audit_file).contains(&cid),
        "approved without the second key"
    );
    tui.press("a");
    tui.wait_screen(5, &["widens a credentialed route: y approves"]);
    tui.press("y");
    tui.wait_screen(20, &[&format!("approved {cid}")]);
    let out = wait_for(20, || {
        let (_, out, _) = exec(&agent, &format!("curl -s -m 30 -D - {more}"));
        (last_status(&out) == Some(200)).then_some(out)
    })
    .unwrap_or_else(|| curl(more));
    assert_eq!(last_status(&out), Some(200), "{out}");
    // The origin saw the credential (its hash), the agent never the token.
    let want = {
        use sha2::Digest;
        let h = sha2::Sha256::digest(format!("Bearer {token}").as_bytes());
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert!(
        out.contains(&want),
        "the route's credential was not sent: {out}"
    );
    assert!(!out.contains(&token), "{out}");

    // q quits and gives the terminal back (raw mode and alternate screen left).
    tui.press("q");
    let status = wait_child(&mut tui.child, 10).expect("the TUI did not quit on q");
    assert!(status.success(), "{status}");
    let raw = String::from_utf8_lossy(&tui.out.lock().unwrap()).to_string();
    assert!(
        raw.contains("\u{1b}[?1049h") && raw.contains("\u{1b}[?1049l"),
        "alternate screen not left"
    );
    drop(tui);

    // 3. approve --edit: the editor drops a path; a widening edit is refused.
    let eid = request(
        &agent,
        &state,
        "edit",
        r#"{"host":"edit.origin.test","paths":["/keep/**","/drop"],"methods":["GET"],"justification":"e2e: edit me"}"#,
    );
    let routes_file = state.join(&id).join("supervise/routes/routes.json");
    let before = file(&routes_file);
    let (code, _, err) = supervise(&state, &[], &["approve", &eid, "--paths", "/**"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("widens") && err.contains("\"/**\""), "{err}");
    assert_eq!(
        file(&routes_file),
        before,
        "a refused edit changed the routes"
    );
    let (code, out, err) = supervise(
        &state,
        &[("EDITOR", editor.to_str().unwrap()), ("VISUAL", "")],
        &["approve", &eid, "--edit"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("outer proxy (squid) reconfigured"), "{out}");
    let routes: serde_json::Value = serde_json::from_str(&file(&routes_file)).unwrap();
    let route = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == "edit.origin.test")
        .unwrap_or_else(|| panic!("{routes}"))
        .clone();
    assert_eq!(
        route["path_allowlist"],
        serde_json::json!(["/keep/**"]),
        "{route}"
    );
    let line = file(&audit_file)
        .lines()
        .find(|l| l.contains(&eid))
        .map(str::to_string)
        .unwrap();
    let a: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(a["operator"], "e2e-operator");
    assert_eq!(
        a["request"]["paths"],
        serde_json::json!(["/keep/**", "/drop"])
    );
    assert_eq!(a["edit"]["paths"], serde_json::json!(["/keep/**"]));
    assert_eq!(
        a["route_after"]["path_allowlist"],
        serde_json::json!(["/keep/**"])
    );
    let ok = wait_for(20, || {
        (last_status(&curl("https://edit.origin.test/keep/x")) == Some(200)).then_some(())
    });
    assert!(ok.is_some(), "{}", curl("https://edit.origin.test/keep/x"));
    let dropped = curl("https://edit.origin.test/drop");
    assert_eq!(last_status(&dropped), Some(403), "{dropped}");
    assert!(
        dropped.to_ascii_lowercase().contains("path-not-allowed"),
        "{dropped}"
    );
    let res = tool_answer(&agent, "edit", "approved");
    assert!(res.contains("/keep/**") && !res.contains("/drop"), "{res}");

    // 4. The agent exits; nothing remains.
    docker_ok_out(&["rm", "-f", &origin]);
    exec(&agent, "touch /tmp/done");
    let mut child = guard.children.pop().unwrap();
    let status = wait_child(&mut child, 120).expect("bottle run did not exit");
    assert_eq!(
        status.code(),
        Some(7),
        "stderr:\n{}",
        file(&dir.join("bottle.err"))
    );
    assert!(
        leftovers(&id).is_empty(),
        "left behind: {:?}",
        leftovers(&id)
    );
}

/// The pid of `script`'s child (the `bottle` process it exec'd into).
fn tui_pid(script: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{script}/task/{script}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn left_alternate_screen(tui: &Tui) -> bool {
    let raw = String::from_utf8_lossy(&tui.out.lock().unwrap()).to_string();
    let (enter, leave) = (raw.rfind("\u{1b}[?1049h"), raw.rfind("\u{1b}[?1049l"));
    enter.is_some() && leave > enter && raw[leave.unwrap()..].contains("\u{1b}[?25h")
}

#[test]
fn the_tui_gives_the_terminal_back_on_ctrl_c_and_sigterm_and_exits_when_it_hangs_up() {
    if !docker_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Ctrl-C arrives as a key in raw mode: quits with 0.
    let mut tui = Tui::start(tmp.path(), None);
    tui.wait_screen(
        30,
        &["bottle supervise", "0 supervised bottle(s)", "q quit"],
    );
    tui.press("\u{3}");
    let status = wait_child(&mut tui.child, 10).expect("Ctrl-C did not quit");
    assert!(status.success(), "{status}");
    assert!(
        left_alternate_screen(&tui),
        "terminal not restored after Ctrl-C"
    );
    drop(tui);
    // SIGTERM: the loop stops within a poll, restores, exits 130.
    let mut tui = Tui::start(tmp.path(), None);
    tui.wait_screen(30, &["bottle supervise", "q quit"]);
    let pid = wait_for(5, || tui_pid(tui.child.id())).expect("no bottle process under script");
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .starts_with("bottle")
    );
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = wait_child(&mut tui.child, 10).expect("SIGTERM did not stop the TUI");
    assert_eq!(status.code(), Some(130), "{status}");
    assert!(
        left_alternate_screen(&tui),
        "terminal not restored after SIGTERM"
    );
    drop(tui);
    // The terminal goes away (its `script` killed: the pty hangs up). The
    // TUI must exit, not spin on the dead terminal: crossterm's reader
    // loops on end-of-file, and before the fix such orphans kept 40% of a
    // CPU each for an hour.
    let mut tui = Tui::start(tmp.path(), None);
    tui.wait_screen(30, &["bottle supervise", "q quit"]);
    let pid = wait_for(5, || tui_pid(tui.child.id())).expect("no bottle process under script");
    tui.child.kill().unwrap();
    tui.child.wait().unwrap();
    let gone = wait_for(10, || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")))
        .then_some(())
    });
    if gone.is_none() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("the TUI (pid {pid}) outlived its terminal by 10 s");
    }
}

#[test]
fn approve_with_edit_refuses_what_it_cannot_do() {
    if !docker_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path();
    let marker = tmp.path().join("editor-ran");
    let editor = tmp.path().join("ed.sh");
    std::fs::write(&editor, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let env = [("EDITOR", editor.to_str().unwrap()), ("VISUAL", "")];
    // No such pending proposal: the editor is not even opened.
    let (code, _, err) = supervise(st, &env, &["approve", "p0123456789abcdef", "--edit"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no pending proposal \"p0123456789abcdef\""),
        "{err}"
    );
    assert!(!marker.exists(), "the editor ran for nothing");
    let (code, _, err) = supervise(st, &[], &["approve", "p0123456789abcdef", "--paths", "/a"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no pending or decided proposal"), "{err}");
    let (code, _, err) = supervise(st, &[], &["approve", "nope", "--methods", "GET"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a proposal id"), "{err}");
    // --edit and the non-interactive lists exclude each other (usage error).
    let (code, _, err) = supervise(
        st,
        &[],
        &["approve", "p0123456789abcdef", "--edit", "--paths", "/a"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}
