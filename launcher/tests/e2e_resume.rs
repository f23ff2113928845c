//! Resume, export and rm on real Docker (issue 15, "Starting and coming
//! back"): the agent's home and `/workspace` live in volumes labelled with
//! the bottle id, so a file written in either survives `bottle resume`,
//! while the CAs are minted fresh; `bottle list` shows the stopped bottle;
//! `bottle export` copies the workspace out and refuses what the agent made
//! to escape; `bottle rm` leaves nothing with the id; resuming an unknown,
//! running or no longer declared bottle is refused with the fix.
//!
//! Needs the images of docker/build-images.sh (CI: scripts/setup.sh builds them).

mod e2e_support;

use e2e_support::*;
use std::path::Path;
use std::process::{Command, Output};

/// `bottle <args>` from `cwd`, state in `dir/state`.
fn bottle(dir: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(bottle_bin())
        .args(args)
        .current_dir(cwd)
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

/// A repository and a manifest (squid, a prompt) in `dir`.
fn setup(dir: &Path, bottle_name: &str) -> std::path::PathBuf {
    git_repo(&dir.join("repo"));
    let m = dir.join("m.yaml");
    std::fs::write(
        &m,
        format!(
            "bottles:\n  {bottle_name}:\n    outer_proxy: squid\n    allow: [pypi.org]\n    runtime: runc\nagents:\n  a:\n    bottle: {bottle_name}\n    prompt: \"PROMPT-NEEDLE\"\n    command: [sleep, \"600\"]\n"
        ),
    )
    .unwrap();
    m
}

/// The agent's view after a run: the CA fingerprint it trusts, and whether
/// egress-proxy's leaf (for a host with no route) verifies against it.
const CA_PROBE: &str = "echo ca=$(openssl x509 -in /etc/bottle/ca.pem -noout -fingerprint -sha256 | cut -d= -f2); \
    echo tls=$(curl -s -o /dev/null -w '%{http_code}' https://blocked.example.com/ || echo fail)";

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} line in:\n{out}"))
}

/// First run, two resumes (`resume` and `run --resume`), `list`, `rm`.
#[test]
fn a_stopped_bottle_resumes_with_its_home_and_workspace_and_new_cas() {
    if !docker_or_skip() {
        return;
    }
    let name = unique("rsm");
    let _g = Guard::new(&name);
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let m = setup(dir, &name);
    let repo = dir.join("repo");
    let first = format!(
        "echo WS-NEEDLE > /workspace/made-in-bottle.txt; echo HOME-NEEDLE > ~/home-note; {CA_PROBE}"
    );
    // The manifest given relative to the repository, with `..`: the label
    // holds its canonical path, and `-q` still prints the way back.
    let o = bottle(
        dir,
        &repo,
        &[
            "-q",
            "run",
            "-m",
            "../m.yaml",
            "-a",
            "a",
            "--",
            "bash",
            "-c",
            &first,
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let id = resume_id(&err).unwrap_or_else(|| panic!("no resume hint:\n{err}"));
    assert!(
        err.contains(&format!("`bottle rm {id}`"))
            && err.contains(&format!("`bottle export {id} --to DIR`")),
        "{err}"
    );
    let ca1 = line(&out, "ca=").to_string();
    assert_eq!(
        line(&out, "tls="),
        "403",
        "egress-proxy's leaf verifies against the CA"
    );
    // Stopped: containers, networks, rules and state directory gone; volumes kept.
    assert!(leftovers(&id).is_empty(), "{:?}", leftovers(&id));
    assert!(!dir.join("state").join(&id).exists());
    let mut vols = volumes_of(&id);
    vols.sort();
    assert_eq!(
        vols,
        vec![
            format!("bottle-{id}-home"),
            format!("bottle-{id}-workspace")
        ]
    );
    let labels = docker_ok_out(&[
        "volume",
        "inspect",
        "-f",
        "{{json .Labels}}",
        &format!("bottle-{id}-workspace"),
    ]);
    let canon = std::fs::canonicalize(&m).unwrap();
    for want in [
        format!("\"bottle.id\":\"{id}\""),
        "\"bottle.role\":\"workspace\"".to_string(),
        format!("\"bottle.bottle\":\"{name}\""),
        "\"bottle.agent\":\"a\"".to_string(),
        format!("\"bottle.manifest\":\"{}\"", canon.display()),
    ] {
        assert!(labels.contains(&want), "{want} in {labels}");
    }
    // `bottle list` shows it stopped, with age and size.
    let o = bottle(dir, dir, &["list"]);
    let (out, _) = text(&o);
    assert!(out.contains(&format!("{id}  stopped")), "{out}");
    let ws_line = out
        .lines()
        .find(|l| l.contains(&format!("bottle-{id}-workspace")))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        ws_line.contains("age ") && ws_line.contains("KiB"),
        "{ws_line}"
    );
    // The host repository changes; the resumed bottle must not see it (not re-copied).
    std::fs::write(repo.join("host-later.txt"), "late\n").unwrap();
    let second = format!(
        "cat /workspace/made-in-bottle.txt ~/home-note; ls /workspace; stat -c 'prompt %a %U' ~/.bottle/prompt.md; cat ~/.bottle/prompt.md; echo; {CA_PROBE}"
    );
    let o = bottle(dir, dir, &["resume", &id, "--", "bash", "-c", &second]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    for want in [
        "WS-NEEDLE\n",
        "HOME-NEEDLE\n",
        "README\n",
        "prompt 400 agent\n",
        "PROMPT-NEEDLE",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}\n{err}");
    }
    assert!(
        !out.contains("host-later.txt"),
        "workspace was copied again:\n{out}"
    );
    let ca2 = line(&out, "ca=").to_string();
    assert_eq!(line(&out, "tls="), "403", "{out}");
    assert_ne!(ca1, ca2, "the CA is minted again at resume");
    assert!(
        !err.contains("empty /workspace"),
        "no workspace warning on resume: {err}"
    );
    // `run --resume` is the same; the id and its volumes stay.
    let o = bottle(
        dir,
        dir,
        &[
            "run",
            "--resume",
            &id,
            "--",
            "bash",
            "-c",
            &format!("echo AGAIN >> ~/home-note; cat ~/home-note; {CA_PROBE}"),
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("HOME-NEEDLE\nAGAIN\n"), "{out}");
    assert!(![ca1.as_str(), ca2.as_str()].contains(&line(&out, "ca=")));
    assert_eq!(volumes_of(&id).len(), 2);
    // rm: nothing with the id remains.
    let o = bottle(dir, dir, &["rm", &id]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(volumes_of(&id).is_empty(), "{:?}", volumes_of(&id));
    assert!(leftovers(&id).is_empty(), "{:?}", leftovers(&id));
    assert!(!dir.join("state").join(&id).exists());
    let o = bottle(dir, dir, &["list"]);
    assert!(!text(&o).0.contains(&id));
    // Gone means gone: resume and rm now refuse it as unknown.
    for args in [vec!["resume", id.as_str()], vec!["rm", id.as_str()]] {
        let o = bottle(dir, dir, &args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("no bottle `{id}`")) && err.contains("fix: `bottle list`"),
            "{err}"
        );
    }
}

/// A running bottle cannot be resumed or removed; a manifest that lost the
/// agent stops a resume with the fix; `--rm` keeps nothing.
#[test]
fn resume_refuses_running_unknown_and_undeclared_bottles() {
    if !docker_or_skip() {
        return;
    }
    let name = unique("rsr");
    let mut g = Guard::new(&name);
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let m = setup(dir, &name);
    let o = bottle(dir, dir, &["resume", "nothing-00000000"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no bottle `nothing-00000000` on this engine; fix:"),
        "{err}"
    );
    let child = spawn_bottle(
        dir,
        &dir.join("repo"),
        &dir.join("state"),
        &[],
        &["run", "-m", m.to_str().unwrap(), "-a", "a"],
    );
    let pid = child.id();
    g.children.push(child);
    let (id, _) = running_agent(&name, 240)
        .unwrap_or_else(|| panic!("agent never ran:\n{}", file(&dir.join("bottle.err"))));
    for args in [vec!["resume", id.as_str()], vec!["rm", id.as_str()]] {
        let o = bottle(dir, dir, &args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "bottle {id} is running (its `bottle run` is process {pid})"
            )) && err.contains("fix:"),
            "{err}"
        );
    }
    assert_eq!(volumes_of(&id).len(), 2, "a refused rm removed nothing");
    // Ctrl-C: torn down, the volumes kept (a stopped bottle).
    assert!(
        Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let mut c = g.children.pop().unwrap();
    assert_eq!(wait_child(&mut c, 120).and_then(|s| s.code()), Some(130));
    assert!(leftovers(&id).is_empty());
    assert_eq!(volumes_of(&id).len(), 2);
    // The manifest no longer has agent `a`: refused, nothing started.
    std::fs::write(
        &m,
        format!("bottles:\n  {name}:\n    outer_proxy: squid\nagents:\n  b: {{bottle: {name}}}\n"),
    )
    .unwrap();
    let o = bottle(dir, dir, &["resume", &id]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "ran agent `a` of bottle `{name}` from {}",
            std::fs::canonicalize(&m).unwrap().display()
        )) && err.contains("no longer has it; fix: put agent `a`")
            && err.contains(&format!("`bottle rm {id}`")),
        "{err}"
    );
    assert!(leftovers(&id).is_empty() && !dir.join("state").join(&id).exists());
    // cleanup: without --volumes a stopped bottle is not touched; with it, gone.
    let o = bottle(dir, dir, &["cleanup", "--yes", "--id", &id]);
    assert!(text(&o).0.contains("nothing to clean up"), "{}", text(&o).0);
    assert_eq!(volumes_of(&id).len(), 2);
    let o = bottle(dir, dir, &["cleanup", "--yes", "--volumes", "--id", &id]);
    let (out, err) = text(&o);
    assert!(
        o.status.success() && out.contains("2 volume(s)"),
        "{out}\n{err}"
    );
    assert!(volumes_of(&id).is_empty());
    // A helper container whose `bottle` died (killed during list/export) is
    // found by cleanup (dry run: the engine is shared, other orphans too).
    let helper = unique("bottle-helper-du-test");
    docker_ok_out(&[
        "create",
        "--name",
        &helper,
        "--label",
        "bottle.helper=du",
        "--label",
        "bottle.pid=999999999",
        "bottle-agent:latest",
        "true",
    ]);
    let o = bottle(dir, dir, &["cleanup"]);
    let _ = docker(&["rm", "-f", &helper]);
    let (out, _) = text(&o);
    assert!(
        out.contains("helper container(s) of a killed bottle list/export"),
        "{out}"
    );
    // `run --rm`: nothing survives, and no resume hint.
    std::fs::write(
        &m,
        format!("bottles:\n  {name}:\n    outer_proxy: squid\n    runtime: runc\nagents:\n  a: {{bottle: {name}}}\n"),
    )
    .unwrap();
    let o = bottle(
        dir,
        &dir.join("repo"),
        &[
            "run",
            "--rm",
            "-m",
            m.to_str().unwrap(),
            "-a",
            "a",
            "--",
            "true",
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(resume_id(&err).is_none(), "{err}");
    let left = docker_ok_out(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=bottle.bottle={name}"),
    ]);
    assert!(left.trim().is_empty(), "--rm left volumes: {left}");
}

/// `export` copies the workspace out; what the agent made to escape (a
/// symlink out of the directory, an absolute symlink, a FIFO) is refused
/// and named, and nothing is written outside the directory. (`..` and
/// absolute entry names cannot come out of the engine's archive; the unit
/// test `export::tests` feeds them in directly.)
#[test]
fn export_brings_the_workspace_out_and_refuses_hostile_entries() {
    if !docker_or_skip() {
        return;
    }
    let name = unique("rse");
    let _g = Guard::new(&name);
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let m = setup(dir, &name);
    let script = "set -e; cd /workspace; mkdir -p src; echo EXPORTED > src/a.txt; chmod 4755 src/a.txt; \
        ln -s src/a.txt inside-link; ln -s /etc/passwd abs-link; ln -s ../../outside up-link; mkfifo pipe; \
        git config core.fsmonitor 'touch /tmp/pwned'; printf '#!/bin/sh\\ntouch /tmp/pwned\\n' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit";
    let o = bottle(
        dir,
        &dir.join("repo"),
        &[
            "run",
            "-m",
            m.to_str().unwrap(),
            "-a",
            "a",
            "--",
            "bash",
            "-c",
            script,
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let id = resume_id(&err).unwrap();
    let base = dir.join("exp");
    std::fs::create_dir_all(base.join("outside")).unwrap();
    let to = base.join("out");
    let o = bottle(dir, dir, &["export", &id, "--to", to.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "refused entries make it fail:\n{out}\n{err}"
    );
    assert!(
        out.contains(&format!("exported bottle {id}'s workspace to")),
        "{out}"
    );
    for (entry, why) in [
        (
            "abs-link",
            "a symlink to /etc/passwd (outside the export directory)",
        ),
        (
            "up-link",
            "a symlink to ../../outside (outside the export directory)",
        ),
        ("pipe", "a FIFO"),
    ] {
        assert!(
            err.contains(&format!("/{entry}: {why}")),
            "{entry}: {why} in:\n{err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(to.join("src/a.txt")).unwrap(),
        "EXPORTED\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(to.join("src/a.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7000, 0, "setuid never comes out: {mode:o}");
    assert_eq!(
        std::fs::read_link(to.join("inside-link")).unwrap(),
        Path::new("src/a.txt")
    );
    assert_eq!(
        std::fs::read_to_string(to.join("README")).unwrap(),
        "hello\n"
    );
    assert!(to.join(".git/HEAD").exists());
    // Git data that would run commands on the host: config rewritten, hooks left out.
    let cfg = std::fs::read_to_string(to.join(".git/config")).unwrap();
    assert!(
        !cfg.contains("fsmonitor")
            && !cfg.contains("[remote")
            && cfg.contains("repositoryformatversion"),
        "{cfg}"
    );
    assert!(!to.join(".git/hooks").exists());
    assert!(
        out.contains(".git/config: rewritten")
            && out.contains("git hooks (they would run on the host)"),
        "{out}"
    );
    for gone in ["abs-link", "up-link", "pipe"] {
        assert!(
            to.join(gone).symlink_metadata().is_err(),
            "{gone} was written"
        );
    }
    assert_eq!(std::fs::read_dir(base.join("outside")).unwrap().count(), 0);
    // A non-empty directory is refused without --force, written with it.
    let o = bottle(dir, dir, &["export", &id, "--to", to.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is not empty; fix:") && err.contains("--force"),
        "{err}"
    );
    std::fs::remove_file(to.join("README")).unwrap();
    let o = bottle(
        dir,
        dir,
        &["export", &id, "--to", to.to_str().unwrap(), "--force"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o).1);
    assert_eq!(
        std::fs::read_to_string(to.join("README")).unwrap(),
        "hello\n"
    );
    // The helper containers of export are gone.
    assert!(leftovers(&id).is_empty(), "{:?}", leftovers(&id));
    let o = bottle(dir, dir, &["rm", &id]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(volumes_of(&id).is_empty());
}

/// A resumed workspace keeps the agent's `.git/config` but its remotes are
/// git-gate's of the manifest as it is now: a git entry renamed in the
/// manifest between runs is the agent's remote after `resume`.
#[test]
fn resume_gives_the_workspace_the_git_remotes_of_the_manifest_as_it_is_now() {
    if !docker_or_skip() {
        return;
    }
    let name = unique("rsg");
    let _g = Guard::new(&name);
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    git_repo(&dir.join("repo"));
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("id"))
        .status()
        .unwrap();
    assert!(st.success());
    let manifest = |remote: &str| {
        format!(
            "bottles:\n  {name}:\n    outer_proxy: squid\n    runtime: runc\n    git:\n      - name: {remote}\n        upstream: ssh://git@upstream.invalid/acme/{remote}.git\n        identity_file: ./id\n        known_host_key: \"upstream.invalid ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\nagents:\n  a: {{bottle: {name}}}\n"
        )
    };
    let m = dir.join("m.yaml");
    std::fs::write(&m, manifest("widget")).unwrap();
    let show = "cd /workspace; git remote -v; echo branch-remote=$(git config branch.main.remote)";
    let o = bottle(
        dir,
        &dir.join("repo"),
        &[
            "run",
            "-m",
            m.to_str().unwrap(),
            "-a",
            "a",
            "--",
            "bash",
            "-c",
            &format!("git -C /workspace config branch.main.remote widget; {show}"),
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("widget\tgit://git-gate:9418/widget.git (fetch)"),
        "{out}"
    );
    let id = resume_id(&err).unwrap();
    std::fs::write(&m, manifest("gadget")).unwrap();
    let o = bottle(dir, dir, &["resume", &id, "--", "bash", "-c", show]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("gadget\tgit://git-gate:9418/gadget.git (fetch)") && !out.contains("widget\t"),
        "{out}"
    );
    assert!(
        out.contains("branch-remote=widget"),
        "the agent's own settings stay: {out}"
    );
    let o = bottle(dir, dir, &["rm", &id]);
    assert!(o.status.success());
}
