//! The agent side of a bottle on real Docker (issue 15): the prompt file
//! (0400, the agent's own, its path in the command as `{prompt_file}`), the
//! skills copied from `$HOME/.claude/skills`, and the supervise MCP
//! configuration, seen from inside the agent through `bottle run` (squid
//! outer proxy); and a `build:` agent image built on the first run, skipped
//! on the second.
//!
//! Needs the images of docker/build-images.sh (CI: scripts/setup.sh builds them).

mod e2e_support;

use e2e_support::*;
use std::path::Path;
use std::process::{Command, Output};

/// `bottle <args>` with HOME and the state directory in `dir`, from `dir`.
fn bottle(dir: &Path, args: &[&str]) -> Output {
    Command::new(bottle_bin())
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("BOTTLE_STATE_DIR", dir.join("state"))
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A HOME with one skill (a SKILL.md and a nested script) and a prompt file.
fn home(dir: &Path) {
    let s = dir.join(".claude/skills/review");
    std::fs::create_dir_all(s.join("bin")).unwrap();
    std::fs::write(s.join("SKILL.md"), "# review skill\n").unwrap();
    std::fs::write(s.join("bin/run.sh"), "#!/bin/sh\necho skill-ran\n").unwrap();
    std::fs::write(dir.join("prompt.md"), "PROMPT-NEEDLE: fix the tests\n").unwrap();
}

#[test]
fn agent_sees_its_prompt_skills_and_mcp_config() {
    if !docker_or_skip() {
        return;
    }
    let bottle_name = unique("ag");
    let _g = Guard::new(&bottle_name);
    let d = tempfile::tempdir().unwrap();
    home(d.path());
    std::fs::write(
        d.path().join("m.yaml"),
        format!(
            "bottles:\n  {bottle_name}:\n    outer_proxy: squid\n    allow: [pypi.org]\n    supervise: true\n    runtime: runc\nagents:\n  a:\n    bottle: {bottle_name}\n    prompt_file: prompt.md\n    skills: [review]\n    command: [bash, -c, 'echo prompt-arg={{prompt_file}}']\n"
        ),
    )
    .unwrap();
    let script = "set -e; p=/home/agent/.bottle/prompt.md; stat -c 'prompt %a %U' $p; cat $p; \
        stat -c 'skills %U' /home/agent/.claude /home/agent/.claude/skills/review; \
        cat /home/agent/.claude/skills/review/SKILL.md; sh /home/agent/.claude/skills/review/bin/run.sh; \
        touch /home/agent/.claude/written && echo home-writable; \
        echo mcp=$BOTTLE_MCP_CONFIG; cat $BOTTLE_MCP_CONFIG; echo no_proxy=$NO_PROXY";
    let o = bottle(
        d.path(),
        &[
            "-q", "run", "-m", "m.yaml", "-a", "a", "--", "bash", "-c", script,
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    for want in [
        "prompt 400 agent\n",
        "PROMPT-NEEDLE: fix the tests\n",
        "skills agent\nskills agent\n",
        "# review skill\n",
        "skill-ran\n",
        "home-writable\n",
        "mcp=/etc/bottle/mcp.json\n",
        "\"url\": \"http://supervise:9100/mcp\"",
        "\"type\": \"http\"",
    ] {
        assert!(out.contains(want), "want {want:?} in:\n{out}\n{err}");
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("no_proxy=") && l.split(['=', ',']).any(|h| h == "supervise")),
        "{out}"
    );
    // The manifest's command gets the prompt's path for `{prompt_file}`.
    let o = bottle(d.path(), &["-q", "run", "-m", "m.yaml", "-a", "a"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("prompt-arg=/home/agent/.bottle/prompt.md"),
        "{out}\n{err}"
    );
}

/// `check` names a missing skill's path and the fix; `plan` shows the
/// prompt source, the skills and the runtime.
#[test]
fn check_names_a_missing_skill_and_plan_shows_prompt_skills_runtime() {
    let d = tempfile::tempdir().unwrap();
    home(d.path());
    std::fs::write(
        d.path().join("m.yaml"),
        "bottles:\n  dev: {allow: [pypi.org]}\nagents:\n  a: {bottle: dev, prompt_file: prompt.md, skills: [review, gone]}\n",
    )
    .unwrap();
    let o = bottle(d.path(), &["check", "-m", "m.yaml"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let gone = d.path().join(".claude/skills/gone");
    assert!(
        err.contains(&format!(
            "m.yaml: agents.a.skills[1]: skill `gone` not found: {} is not a directory; fix: install the skill at {}",
            gone.display(),
            gone.display()
        )),
        "{err}"
    );
    // `{prompt_file}` in a command given after `--`, with no prompt: refused too.
    std::fs::write(
        d.path().join("n.yaml"),
        "bottles:\n  dev: {allow: [pypi.org]}\nagents:\n  a: {bottle: dev}\n",
    )
    .unwrap();
    let o = bottle(
        d.path(),
        &[
            "run",
            "-m",
            "n.yaml",
            "-a",
            "a",
            "--",
            "cat",
            "{prompt_file}",
        ],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("uses `{prompt_file}` but agent `a` has no prompt; fix: add `prompt:`"),
        "{err}"
    );
    // `bottle build` of an agent without `build:` says how to add one.
    let o = bottle(d.path(), &["build", "-m", "n.yaml", "-a", "a"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "agents.a: has no `build:`; fix: add `build: {dockerfile: ..., context: ...}`"
        ),
        "{err}"
    );
    std::fs::create_dir_all(&gone).unwrap();
    let o = bottle(d.path(), &["plan", "-m", "m.yaml", "-a", "a"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for want in [
        format!(
            "agent prompt: {} -> /home/agent/.bottle/prompt.md",
            d.path().join("prompt.md").display()
        ),
        "agent skills:\n  review (".to_string(),
        "  gone (".to_string(),
        "agent runtime: auto".to_string(),
    ] {
        assert!(out.contains(&want), "{want}\n{out}");
    }
    // No engine to ask: the plan still works and says when `auto` is decided.
    let o = Command::new(bottle_bin())
        .args(["plan", "-m", "m.yaml", "-a", "a"])
        .current_dir(d.path())
        .env("HOME", d.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains(
            "agent runtime: auto (resolved at run: runsc when the engine has it, else runc)"
        ),
        "{out}"
    );
}

/// The engine's registered runtimes (`docker info`).
fn engine_has_runsc() -> bool {
    docker_ok_out(&["info", "--format", "{{json .Runtimes}}"]).contains("\"runsc\"")
}

/// `runtime: auto` runs the agent under gVisor when the engine has `runsc`
/// (its kernel log says "Starting gVisor"), and the sidecars stay on runc;
/// without `runsc` registered, `runtime: runsc` stops before anything starts
/// (exit 2, the fix named) and `auto` falls back to runc.
#[test]
fn runtime_auto_uses_gvisor_when_registered_and_runsc_refuses_without_it() {
    if !docker_or_skip() {
        return;
    }
    let has = engine_has_runsc();
    let bottle_name = unique("rt");
    let _g = Guard::new(&bottle_name);
    let d = tempfile::tempdir().unwrap();
    let manifest = |rt: &str| {
        std::fs::write(
            d.path().join("m.yaml"),
            format!("bottles:\n  {bottle_name}:\n    outer_proxy: squid\n    allow: [pypi.org]\n    runtime: {rt}\nagents:\n  a: {{bottle: {bottle_name}}}\n"),
        )
        .unwrap();
    };
    manifest("auto");
    let script = "dmesg 2>/dev/null | head -1; getent hosts egress-proxy >/dev/null && echo proxy-resolves; \
        curl -s -o /dev/null -w 'healthz=%{http_code}\\n' --noproxy '*' http://egress-proxy:9099/healthz";
    let o = bottle(
        d.path(),
        &["run", "-m", "m.yaml", "-a", "a", "--", "bash", "-c", script],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("proxy-resolves\n") && out.contains("healthz=200"),
        "{out}\n{err}"
    );
    if has {
        assert!(out.contains("Starting gVisor"), "{out}\n{err}");
        assert!(err.contains("agent runtime: runsc"), "{err}");
        let o = bottle(d.path(), &["plan", "-m", "m.yaml", "-a", "a"]);
        assert!(
            text(&o)
                .0
                .contains("agent runtime: auto -> runsc (asked the engine)")
        );
    } else {
        eprintln!("NOTE: the engine has no runsc; checking the fallback and the refusal only");
        assert!(!out.contains("gVisor"), "{out}");
        assert!(err.contains("agent runtime: runc"), "{err}");
        manifest("runsc");
        let o = bottle(d.path(), &["run", "-m", "m.yaml", "-a", "a", "--", "true"]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
        assert!(
            err.contains("has no runtime `runsc`") && err.contains("fix: install gVisor"),
            "{err}"
        );
        assert!(bottle_id(&bottle_name).is_none(), "nothing may start");
    }
}

/// Removes an image when dropped.
struct ImageGuard(String);
impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.0]);
    }
}

/// A stub agent image from a manifest `build:` (FROM bottle-agent, a script
/// added): `bottle run` builds it with progress lines, the second run skips
/// the build, and the stub agent sees its prompt file and skills.
/// `bottle build` prints the tag and skips an unchanged build too.
#[test]
fn build_agent_image_on_first_run_skip_when_unchanged_stub_sees_prompt_and_skills() {
    if !docker_or_skip() {
        return;
    }
    let bottle_name = unique("bd");
    let agent = unique("stub");
    let _g = Guard::new(&bottle_name);
    let d = tempfile::tempdir().unwrap();
    home(d.path());
    let ctx = d.path().join("agent");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bottle-agent:latest\nCOPY stub-agent /usr/local/bin/stub-agent\n",
    )
    .unwrap();
    let script = ctx.join("stub-agent");
    std::fs::write(
        &script,
        "#!/bin/bash\necho \"stub agent, prompt at $1\"\ncat \"$1\"\nls /home/agent/.claude/skills\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        d.path().join("m.yaml"),
        format!(
            "bottles:\n  {bottle_name}:\n    outer_proxy: squid\n    allow: [pypi.org]\nagents:\n  {agent}:\n    bottle: {bottle_name}\n    build: {{dockerfile: agent/Dockerfile, context: agent}}\n    prompt_file: prompt.md\n    skills: [review]\n    command: [stub-agent, \"{{prompt_file}}\"]\n"
        ),
    )
    .unwrap();
    let o = bottle(d.path(), &["plan", "-m", "m.yaml", "-a", &agent]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let tag = out
        .lines()
        .find_map(|l| l.strip_prefix("agent image build: "))
        .and_then(|l| l.rsplit(" -> ").next())
        .unwrap_or_else(|| panic!("no build line:\n{out}"))
        .to_string();
    assert!(tag.starts_with(&format!("bottle-agent-{agent}:")), "{tag}");
    let _img = ImageGuard(tag.clone());
    let run = || {
        let o = bottle(d.path(), &["run", "-m", "m.yaml", "-a", &agent]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{out}\n{err}");
        (out, err)
    };
    let (out, err) = run();
    assert!(
        err.contains(&format!("building agent image {tag}")),
        "{err}"
    );
    assert!(
        err.contains("bottle: build: Step 1/") && err.contains(" : COPY stub-agent"),
        "{err}"
    );
    for want in [
        "stub agent, prompt at /home/agent/.bottle/prompt.md\n",
        "PROMPT-NEEDLE: fix the tests\n",
        "review\n",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}\n{err}");
    }
    let (out2, err2) = run();
    assert!(!err2.contains("building agent image"), "{err2}");
    assert!(
        err2.contains(&format!("agent image {tag} is up to date: build skipped")),
        "{err2}"
    );
    assert_eq!(out2, out);
    // `bottle build` of the unchanged context: the same tag, nothing built.
    let o = bottle(d.path(), &["build", "-m", "m.yaml", "-a", &agent]);
    let (bout, berr) = text(&o);
    assert!(o.status.success(), "{berr}");
    assert_eq!(bout.trim(), tag);
    assert!(berr.contains("build skipped"), "{berr}");
    // A changed context gets a new tag, which `bottle build` builds.
    std::fs::write(&script, "#!/bin/bash\necho changed\n").unwrap();
    let o = bottle(d.path(), &["build", "-m", "m.yaml", "-a", &agent]);
    let (bout, berr) = text(&o);
    assert!(o.status.success(), "{berr}");
    let tag2 = bout.trim().to_string();
    let _img2 = ImageGuard(tag2.clone());
    assert_ne!(tag2, tag);
    assert!(
        berr.contains(&format!("building agent image {tag2}")),
        "{berr}"
    );
}

/// A Dockerfile that cannot build stops `bottle build` with the builder's
/// message and the fix; nothing is pulled.
#[test]
fn build_failure_names_the_dockerfile_and_the_fix() {
    if !docker_or_skip() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let agent = unique("bad");
    std::fs::write(
        d.path().join("Dockerfile"),
        "FROM bottle-agent:latest\nRUN echo build-said-no; exit 3\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("m.yaml"),
        format!("bottles:\n  dev: {{allow: [pypi.org]}}\nagents:\n  {agent}: {{bottle: dev, build: {{dockerfile: Dockerfile}}}}\n"),
    )
    .unwrap();
    let o = bottle(d.path(), &["build", "-m", "m.yaml", "-a", &agent]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains("building bottle-agent-") && err.contains("failed"),
        "{err}"
    );
    assert!(err.contains("build-said-no"), "{err}");
    let _ = docker(&[
        "image",
        "prune",
        "-f",
        "--filter",
        &format!("label=bottle.build={agent}"),
    ]);
}

/// `bottle run` under `script` (a pseudo-terminal) with `input` typed after a
/// pause; its output and exit code.
fn run_in_pty(dir: &Path, bottle_args: &str, input: &str) -> (String, Option<i32>) {
    let cmd = format!("{} {bottle_args}", bottle_bin().display());
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "(sleep 3; printf '{input}') | script -qec \"$BOTTLE_CMD\" /dev/null"
        ))
        .env("BOTTLE_CMD", cmd)
        .current_dir(dir)
        .env("HOME", dir)
        .env("BOTTLE_STATE_DIR", dir.join("state"))
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        o.status.code(),
    )
}

/// On a terminal `bottle run` shows the preflight and asks y/N: `n` starts
/// nothing; `--yes` skips the question; without a terminal it is not asked.
#[test]
fn preflight_asked_on_a_terminal_declined_creates_nothing_yes_and_no_terminal_skip_it() {
    if !docker_or_skip() {
        return;
    }
    let bottle_name = unique("pf");
    let _g = Guard::new(&bottle_name);
    let d = tempfile::tempdir().unwrap();
    home(d.path());
    std::fs::write(
        d.path().join("m.yaml"),
        format!("bottles:\n  {bottle_name}:\n    outer_proxy: squid\n    allow: [pypi.org]\n    runtime: runc\nagents:\n  a: {{bottle: {bottle_name}, prompt: hi, skills: [review]}}\n"),
    )
    .unwrap();
    let (out, code) = run_in_pty(d.path(), "run -m m.yaml -a a -- echo agent-ran", "n\\n");
    assert_eq!(code, Some(1), "{out}");
    for want in [
        "reachable (everything else is refused):",
        "pypi.org                     any path",
        "workspace: none",
        "prompt: text (2 bytes)",
        "skills: review",
        "runtime: runc",
        "Start this bottle? [y/N]",
        "not started: declined at the preflight (nothing was created)",
    ] {
        assert!(out.contains(want), "{want}\n{out}");
    }
    assert!(!out.contains("agent-ran"), "{out}");
    assert!(
        !d.path().join("state").exists()
            || std::fs::read_dir(d.path().join("state"))
                .unwrap()
                .next()
                .is_none(),
        "declined: no state directory"
    );
    let (out, code) = run_in_pty(d.path(), "run -m m.yaml -a a -- echo agent-ran", "y\\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("Start this bottle? [y/N]") && out.contains("agent-ran"),
        "{out}"
    );
    let (out, code) = run_in_pty(d.path(), "run --yes -m m.yaml -a a -- echo agent-ran", "");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        !out.contains("Start this bottle?") && out.contains("agent-ran"),
        "{out}"
    );
    // No terminal: not asked.
    let o = bottle(
        d.path(),
        &["run", "-m", "m.yaml", "-a", "a", "--", "echo", "agent-ran"],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("agent-ran") && !err.contains("Start this bottle?"),
        "{err}"
    );
}
