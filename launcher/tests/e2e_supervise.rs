//! End to end on real Docker: the supervise loop in a bottle (issue 14).
//! Squid outer proxy, the HTTPS test origin on the egress network, a small
//! MCP client in the agent (raw JSON-RPC over streamable HTTP with urllib),
//! the test as the operator (`bottle supervise`, `bottle approvals`). One
//! bottle is run three times: approvals apply live, are kept for the
//! bottle's name and start the next run, and a revoke takes them away from
//! the run after. Plus pipelock's config rewrite against a stand-in that
//! watches its directory (no pipelock image here).
//!
//! Needs the images of docker/build-images.sh (bottle-supervise included).

mod e2e_support;
mod supervise_support;

use e2e_support::*;
use std::time::{Duration, Instant};
use supervise_support::*;

/// The whole loop over three runs of one bottle (issue 14):
/// run 1: a new host is approved live (egress-proxy and squid, nothing
/// restarts), a rejection reaches the agent, a path extension of the
/// credentialed route gets the credential injected and the agent never sees
/// it; `bottle plan` lists both approvals as approved earlier;
/// run 2: both apply with no new approval, a flood of proposals is capped
/// and the sidecar stays up, a revoke leaves the running bottle alone;
/// run 3: the revoked host is refused again. The kept audit log has every
/// decision with the routes before and after.
#[test]
fn supervise_approval_applies_live_through_egress_proxy_and_squid() {
    if !docker_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let su = Setup::new(tmp.path());
    let mut guard = Guard::new(&su.bottle);
    let state = su.state.clone();
    let (token, token_var) = (su.token.clone(), su.token_var.clone());
    let auth_sha = sha256_hex(&format!("Bearer {token}"));
    let t_run1 = Instant::now();
    let (id, agent, origin) = su.run(&mut guard, &[]);
    // The sidecar: running, non-root, on the agent network only, no env value.
    let sup = format!("bottle-{id}-supervise");
    let info = docker_ok_out(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.Config.User}} {{json .NetworkSettings.Networks}} {{json .Config.Env}}",
        &sup,
    ]);
    assert!(info.starts_with("true 65534:65534 "), "{info}");
    assert!(info.contains(&format!("bottle-{id}-agent")), "{info}");
    assert!(
        !info.contains("-egress\"") && !info.contains("-relay\""),
        "{info}"
    );
    assert!(
        !info.contains(&token) && !info.contains("EGRESS_PROXY_TOKEN"),
        "{info}"
    );
    let before = start_times(&id);
    assert_eq!(
        before.len(),
        4,
        "outer-proxy, egress-proxy, supervise, agent: {before:?}"
    );

    // 1. A new host: 403 host-not-allowed.
    let curl_new = "curl -s -m 30 -o /dev/null -D - https://new.origin.test/fresh";
    let (_, out, _) = exec(&agent, curl_new);
    assert_eq!(last_status(&out), Some(403), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-egress-proxy-decision: host-not-allowed"),
        "{out}"
    );

    // 2. The MCP client: list-egress-routes carries no secret.
    let (code, out, err) = exec(
        &agent,
        "for i in $(seq 20); do python3 /tmp/mcp.py list-egress-routes '{}' && exit 0; sleep 0.5; done; exit 1",
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let line = out.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("{out}"));
    let routes = v["content"]["routes"].as_array().unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r["host"] == "api.origin.test" && r["credential"] == true),
        "{v}"
    );
    assert!(
        !line.contains(&token)
            && !line.contains("EGRESS_PROXY_TOKEN")
            && !line.contains(&token_var),
        "{line}"
    );

    // 3. request-egress, waiting for the operator in the background.
    exec(
        &agent,
        r#"nohup python3 /tmp/mcp.py request-egress '{"host":"new.origin.test","paths":["/fresh"],"methods":["GET"],"justification":"e2e: fetch the fresh fixture"}' >/tmp/req.out 2>/tmp/req.err &"#,
    );
    let pending = wait_for(30, || {
        let (_, out, _) = supervise(&state, &["list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let p = v.as_array()?.first()?.clone();
        Some(p)
    })
    .unwrap_or_else(|| {
        panic!(
            "no pending proposal; req.err: {}",
            exec(&agent, "cat /tmp/req.err").1
        )
    });
    assert_eq!(pending["request"]["host"], "new.origin.test", "{pending}");
    let pid = pending["id"].as_str().unwrap().to_string();
    let (_, human, _) = supervise(&state, &["list"]);
    assert!(
        human.contains(&pid) && human.contains("e2e: fetch the fresh fixture"),
        "{human}"
    );

    // 4. Approve; measure until the same request is no longer refused.
    let t0 = Instant::now();
    let (code, out, err) = supervise(&state, &["approve", &pid]);
    let approve_took = t0.elapsed();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("outer proxy (squid) reconfigured"),
        "{out}\n{err}"
    );
    let status = wait_for(20, || {
        let (_, out, _) = exec(&agent, curl_new);
        (last_status(&out) == Some(200)).then_some(out)
    });
    let applied = t0.elapsed();
    eprintln!(
        "supervise: approve command {:.2}s; request answered 200 {:.2}s after the approval started",
        approve_took.as_secs_f64(),
        applied.as_secs_f64()
    );
    assert!(
        status.is_some(),
        "still refused: {}",
        exec(&agent, curl_new).1
    );
    assert!(applied < Duration::from_secs(10));
    // The agent's waiting tool call answered `approved`.
    let res = wait_for(30, || {
        let (_, out, _) = exec(&agent, "cat /tmp/req.out");
        out.contains("approved").then_some(out)
    });
    assert!(
        res.is_some(),
        "{}",
        exec(&agent, "cat /tmp/req.out /tmp/req.err").1
    );
    // Nothing restarted.
    assert_eq!(start_times(&id), before, "a container restarted");
    // The audit names the operator; the proposal is no longer pending.
    let audit = file(&state.join(&id).join("supervise/audit.jsonl"));
    assert!(
        audit.contains(&pid) && audit.contains("e2e-operator"),
        "{audit}"
    );
    let (_, out, _) = supervise(&state, &["list", "--json"]);
    assert_eq!(out.trim(), "[]");

    // 5. A rejection reaches the agent with its reason; routes unchanged.
    let routes_file = state.join(&id).join("supervise/routes/routes.json");
    let routes_before = file(&routes_file);
    exec(
        &agent,
        r#"nohup python3 /tmp/mcp.py request-egress '{"host":"api.origin.test","paths":["/secret"],"justification":"e2e: read the secret path"}' >/tmp/rej.out 2>/tmp/rej.err &"#,
    );
    let pending = wait_for(30, || {
        let (_, out, _) = supervise(&state, &["list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v.as_array()?.first().cloned()
    })
    .unwrap_or_else(|| panic!("no second proposal: {}", exec(&agent, "cat /tmp/rej.err").1));
    assert_eq!(pending["widens_credential"], true, "{pending}");
    let rid = pending["id"].as_str().unwrap().to_string();
    let (code, out, err) = supervise(&state, &["reject", &rid, "--why", "not for this task"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let res = wait_for(30, || {
        let (_, out, _) = exec(&agent, "cat /tmp/rej.out");
        out.contains("rejected").then_some(out)
    })
    .unwrap_or_else(|| exec(&agent, "cat /tmp/rej.out /tmp/rej.err").1);
    assert!(res.contains("not for this task"), "{res}");
    assert_eq!(
        file(&routes_file),
        routes_before,
        "a rejection changed the routes"
    );
    let (code, _, err) = supervise(&state, &["approve", &rid]);
    assert_ne!(code, 0, "a decided proposal was approved again");
    assert!(err.contains("already"), "{err}");

    // 5b. A path extension of the credentialed route: refused now, then
    // approved; the origin gets the injected Authorization on the new path.
    let curl_extra = "curl -s -m 30 -D - https://api.origin.test/extra";
    let (_, out, _) = exec(&agent, curl_extra);
    assert_eq!(last_status(&out), Some(403), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-egress-proxy-decision: path-not-allowed"),
        "{out}"
    );
    let pending = propose(
        &state,
        &agent,
        "ext",
        r#"{"host":"api.origin.test","paths":["/extra"],"justification":"e2e: the extra endpoint"}"#,
        "api.origin.test",
    );
    assert_eq!(pending["widens_credential"], true, "{pending}");
    assert_eq!(pending["kind"], "extend", "{pending}");
    let ext_id = pending["id"].as_str().unwrap().to_string();
    let (code, out, err) = supervise(&state, &["approve", &ext_id]);
    assert_eq!(code, 0, "{out}\n{err}");
    let got = wait_for(20, || origin_json(&exec(&agent, curl_extra).1))
        .unwrap_or_else(|| panic!("/extra still refused: {}", exec(&agent, curl_extra).1));
    assert_eq!(got["path"], "/extra", "{got}");
    assert_eq!(
        got["auth_sha256"],
        auth_sha.as_str(),
        "credential not injected: {got}"
    );
    // The agent never sees the token: not in its environment, its files, or
    // what list-egress-routes answers now.
    let (_, routes_now, _) = exec(&agent, "python3 /tmp/mcp.py list-egress-routes '{}'");
    assert!(routes_now.contains("/extra"), "{routes_now}");
    let seen = agent_readable(&agent) + &routes_now;
    assert!(
        seen.len() > 10_000,
        "read too little of the agent: {}",
        seen.len()
    );
    assert!(
        !seen.contains(&token) && !seen.contains(&token_var),
        "the agent can read the token"
    );
    assert_eq!(start_times(&id), before, "a container restarted");

    su.finish(&mut guard, &id, &agent, &origin);
    eprintln!("run 1 took {:.1}s", t_run1.elapsed().as_secs_f64());

    // Between runs: both approvals are kept for the bottle's name.
    let (code, out, err) = bottle(&state, &[], &["approvals", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let kept: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = kept
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [pid.as_str(), ext_id.as_str()], "{out}");
    assert!(
        kept.as_array()
            .unwrap()
            .iter()
            .all(|a| a["bottle"] == su.bottle.as_str())
    );
    assert!(!out.contains(&token), "{out}");
    let (_, out, _) = bottle(&state, &[], &["approvals", "list", "--bottle", &su.bottle]);
    assert!(out.contains("e2e: the extra endpoint"), "{out}");
    // `bottle plan` lists them as approved earlier (text and --json).
    let manifest = su.dir.join("bottle.yaml");
    let m = manifest.to_str().unwrap();
    let (code, out, err) = bottle(&state, &su.env(), &["plan", "-m", m, "-a", "a"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("approved earlier") && out.contains(&pid) && out.contains(&ext_id),
        "{out}"
    );
    let (_, out, _) = bottle(&state, &su.env(), &["plan", "-m", m, "-a", "a", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        plan["approved_earlier"].as_array().map(Vec::len),
        Some(2),
        "{out}"
    );
    assert!(
        plan["outer_proxy"]["allowlist"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "new.origin.test"),
        "{out}"
    );
    // A kept approval the edited manifest makes moot is skipped, named, with
    // the revoke command: never silently.
    let edited = su.dir.join("edited.yaml");
    std::fs::write(&edited, su.manifest(&["/allowed", "/extra"])).unwrap();
    let (code, out, err) = bottle(
        &state,
        &su.env(),
        &["plan", "-m", edited.to_str().unwrap(), "-a", "a"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("bottle approvals revoke {ext_id}")) && out.contains("not applied"),
        "{out}\n{err}"
    );

    // Run 2: both apply from the start, with no new approval.
    let t_run2 = Instant::now();
    let (id2, agent2, origin2) = su.run(&mut guard, &[]);
    let ok = wait_for(30, || {
        (last_status(&exec(&agent2, curl_new).1) == Some(200)).then_some(())
    });
    assert!(
        ok.is_some(),
        "approved host refused in run 2: {}",
        exec(&agent2, curl_new).1
    );
    let got = origin_json(&exec(&agent2, curl_extra).1).expect("/extra refused in run 2");
    assert_eq!(got["auth_sha256"], auth_sha.as_str(), "{got}");
    let (_, out, _) = supervise(&state, &["list", "--json"]);
    assert_eq!(out.trim(), "[]", "run 2 needed a new proposal");
    // A flood of proposals is bounded: the 9th pending one gets a tool error
    // naming the cap (8), and the sidecar stays up.
    for i in 0..9 {
        exec(
            &agent2,
            &format!(
                r#"nohup python3 /tmp/mcp.py request-egress '{{"host":"flood{i}.origin.test","justification":"e2e flood {i}"}}' >/tmp/flood{i}.out 2>/tmp/flood{i}.err &"#
            ),
        );
    }
    let refused = wait_for(60, || {
        let (_, out, _) = exec(&agent2, "cat /tmp/flood*.out");
        out.lines()
            .find(|l| l.contains("already wait for the operator"))
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no flood refusal: {}", exec(&agent2, "cat /tmp/flood*").1));
    assert!(
        refused.contains("\"isError\": true") && refused.contains("at most 8"),
        "{refused}"
    );
    let (_, out, _) = supervise(&state, &["list", "--json"]);
    let n = serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .map(Vec::len);
    assert_eq!(n, Some(8), "{out}");
    let (code, out, err) = exec(&agent2, "python3 /tmp/mcp.py list-egress-routes '{}'");
    assert_eq!(code, 0, "the sidecar is down after the flood: {out}{err}");
    // Revoke the new host's approval: audited; the running bottle keeps it.
    let (code, out, err) = bottle(&state, &[], &["approvals", "revoke", &pid]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("next run starts without it"), "{out}");
    assert!(
        last_status(&exec(&agent2, curl_new).1) == Some(200),
        "revoke cut a running bottle"
    );
    let (code, _, err) = bottle(&state, &[], &["approvals", "revoke", &pid]);
    assert_ne!(code, 0);
    assert!(err.contains("no kept approval"), "{err}");
    su.finish(&mut guard, &id2, &agent2, &origin2);
    eprintln!("run 2 took {:.1}s", t_run2.elapsed().as_secs_f64());

    // Run 3: the revoked host is refused again (by egress-proxy, first).
    let t_run3 = Instant::now();
    let (id3, agent3, origin3) = su.run(&mut guard, &[]);
    let (_, out, _) = exec(&agent3, curl_new);
    assert_eq!(last_status(&out), Some(403), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-egress-proxy-decision: host-not-allowed"),
        "{out}"
    );
    su.finish(&mut guard, &id3, &agent3, &origin3);
    eprintln!("run 3 took {:.1}s", t_run3.elapsed().as_secs_f64());

    // The kept audit log has every decision, with the routes before/after.
    let audit = file(
        &state
            .join("approvals")
            .join(format!("{}.audit.jsonl", su.bottle)),
    );
    assert!(!audit.contains(&token), "the audit holds the token");
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["decision"].as_str().unwrap(), l["id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("approved", pid.as_str()),
            ("rejected", rid.as_str()),
            ("approved", ext_id.as_str()),
            ("revoked", pid.as_str())
        ],
        "{audit}"
    );
    assert_eq!(
        lines[0]["route_after"]["host"], "new.origin.test",
        "{audit}"
    );
    assert!(lines[0].get("route_before").is_none(), "{audit}");
    assert_eq!(lines[1]["reason"], "not for this task", "{audit}");
    assert_eq!(
        lines[2]["route_before"]["path_allowlist"],
        serde_json::json!(["/allowed"])
    );
    assert_eq!(
        lines[2]["route_after"]["path_allowlist"],
        serde_json::json!(["/allowed", "/extra"])
    );
    assert_eq!(lines[2]["route_after"]["token_env"], "EGRESS_PROXY_TOKEN_0");
    assert_eq!(lines[3]["operator"], "e2e-operator", "{audit}");
    assert_eq!(
        lines[3]["route_before"]["host"], "new.origin.test",
        "{audit}"
    );
}

/// pipelock's hot reload, as far as it can be checked without its image:
/// `bottle supervise approve`'s rewrite of pipelock.yaml (api_allowlist
/// replaced, every other key kept) lands in the container as a new file in
/// `/etc/pipelock/`, which a watcher of that directory sees, and PID 1 gets
/// SIGHUP. pipelock reloads on either.
#[test]
fn pipelock_config_rewrite_reaches_a_watcher_of_its_directory_and_sighup_reaches_pid_1() {
    if !docker_or_skip() {
        return;
    }
    let name = unique("bottle-e2e-pipelock-watch");
    let mut guard = Guard::new(&name);
    guard.containers.push(name.clone());
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("pipelock");
    std::fs::create_dir_all(&conf).unwrap();
    let old = bottle::render::pipelock::render(&["pypi.org".into()], &["Authorization".into()]);
    std::fs::write(conf.join("pipelock.yaml"), &old).unwrap();
    std::fs::write(tmp.path().join("watch.py"), WATCH_PY).unwrap();
    docker_ok_out(&[
        "create",
        "--name",
        &name,
        "--user",
        "0:0",
        "--network",
        "none",
        "bottle-agent:latest",
        "python3",
        "/watch.py",
    ]);
    docker_ok_out(&["cp", conf.to_str().unwrap(), &format!("{name}:/etc/")]);
    docker_ok_out(&[
        "cp",
        tmp.path().join("watch.py").to_str().unwrap(),
        &format!("{name}:/watch.py"),
    ]);
    docker_ok_out(&["start", &name]);
    let logs = || {
        let o = docker(&["logs", &name]);
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    };
    assert!(
        wait_for(30, || logs().contains("watching").then_some(())).is_some(),
        "{}",
        logs()
    );
    let hosts = vec!["files.example.com".to_string(), "pypi.org".to_string()];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let n = rt
        .block_on(async {
            let d = bottle::docker::connect().await?;
            bottle::supervise::update_pipelock(&d, &name, &hosts).await
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, Some(2));
    let now = docker_ok_out(&["exec", &name, "cat", "/etc/pipelock/pipelock.yaml"]);
    assert_eq!(
        now,
        bottle::render::pipelock::render(&hosts, &["Authorization".into()])
    );
    let seen = wait_for(10, || {
        let l = logs();
        (l.contains("HUP") && l.contains("event pipelock.yaml")).then_some(l)
    })
    .unwrap_or_else(|| panic!("the watcher saw nothing: {}", logs()));
    // The name itself changed in the directory (created or written), which
    // is what pipelock's watcher filters on.
    assert!(
        seen.lines().any(|l| l.starts_with("event pipelock.yaml")
            && ["0x100", "0x8", "0x2", "0x80"]
                .iter()
                .any(|m| l.ends_with(m))),
        "{seen}"
    );
    eprintln!("pipelock watcher saw:\n{seen}");
    // Nothing to change: nothing written, no signal.
    let again = rt
        .block_on(async {
            let d = bottle::docker::connect().await?;
            bottle::supervise::update_pipelock(&d, &name, &hosts).await
        })
        .unwrap();
    assert_eq!(again, None);
}

/// `bottle approvals` refuses bad input with a clear error and the right
/// exit code, and a planted symlink in the store is never followed: the
/// commands name it, and `bottle plan` warns and plans without approvals.
/// No Docker needed.
#[test]
fn approvals_commands_refuse_bad_input_and_planted_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let (code, out, _) = bottle(&state, &[], &["approvals", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("no kept approvals"), "{out}");
    let (code, _, err) = bottle(&state, &[], &["approvals", "revoke", "../x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a proposal id"), "{err}");
    let (code, _, err) = bottle(&state, &[], &["approvals", "revoke", "p0123456789abcdef"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no kept approval with that id"), "{err}");
    let (code, _, err) = bottle(&state, &[], &["approvals", "list", "--bottle", "../x"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a bottle name"), "{err}");
    // A symlink planted at the bottle's file: refused by name, target untouched.
    let store = state.join("approvals");
    std::fs::create_dir_all(&store).unwrap();
    let target = tmp.path().join("elsewhere.json");
    std::fs::write(&target, r#"{"approved": []}"#).unwrap();
    std::os::unix::fs::symlink(&target, store.join("dev.json")).unwrap();
    let (code, _, err) = bottle(&state, &[], &["approvals", "list", "--bottle", "dev"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("symlink"), "{err}");
    let m = tmp.path().join("m.yaml");
    std::fs::write(
        &m,
        "bottles:\n  dev:\n    outer_proxy: squid\n    allow: [pypi.org]\nagents:\n  a: {bottle: dev}\n",
    )
    .unwrap();
    let (code, out, err) = bottle(
        &state,
        &[],
        &["plan", "-m", m.to_str().unwrap(), "-a", "a", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("cannot be read, so this run starts without them") && err.contains("symlink"),
        "{err}"
    );
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["approved_earlier"], serde_json::json!([]));
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        r#"{"approved": []}"#
    );
}
