//! The workspace copy on real Docker: a checkout as CI leaves it (a token in
//! the remote URL, a submodule whose config holds a token URL and an extra
//! header, a worktree config with an extra header, an ignored `secrets.json`,
//! a linked worktree with its own worktree config) goes into the agent
//! through `bottle run` (squid outer proxy), once from the main checkout and
//! once from the linked worktree. Inside the agent, `grep -r` finds none of
//! those values under /workspace, the only git config file is the fresh
//! `.git/config`, and `git status` / `git log` work.
//!
//! Needs the images of docker/build-images.sh (CI: scripts/setup.sh builds them).

mod e2e_support;

use e2e_support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The values planted in git data and ignored files; unique per run.
struct Needles {
    origin_token: String,
    sub_token: String,
    sub_header: String,
    worktree_header: String,
    linked_header: String,
    ignored: String,
}

impl Needles {
    fn new() -> Self {
        Needles {
            origin_token: unique("origtok"),
            sub_token: unique("subtok"),
            sub_header: unique("subhdr"),
            worktree_header: unique("wthdr"),
            linked_header: unique("lnkhdr"),
            ignored: unique("ignsec"),
        }
    }
    fn all(&self) -> [&str; 6] {
        [
            &self.origin_token,
            &self.sub_token,
            &self.sub_header,
            &self.worktree_header,
            &self.linked_header,
            &self.ignored,
        ]
    }
}

/// Builds the checkout; returns (main, linked worktree).
fn ci_checkout(base: &Path, n: &Needles) -> (PathBuf, PathBuf) {
    let sub = base.join("subsrc");
    std::fs::create_dir_all(&sub).unwrap();
    git(&sub, &["init", "-q", "-b", "main"]);
    std::fs::write(sub.join("lib.txt"), "sub file\n").unwrap();
    git(&sub, &["add", "-A"]);
    git(&sub, &["commit", "-q", "-m", "sub"]);
    let main = base.join("main");
    std::fs::create_dir_all(&main).unwrap();
    git(&main, &["init", "-q", "-b", "main"]);
    std::fs::write(main.join(".gitignore"), "secrets.json\n").unwrap();
    std::fs::write(main.join("README"), "hello\n").unwrap();
    git(&main, &["add", "-A"]);
    git(&main, &["commit", "-q", "-m", "one"]);
    git(
        &main,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            sub.to_str().unwrap(),
            "sub",
        ],
    );
    git(&main, &["commit", "-q", "-m", "add sub"]);
    let token_url = |t: &str| format!("https://x-access-token:{t}@github.com/acme/widget.git");
    git(
        &main,
        &["remote", "add", "origin", &token_url(&n.origin_token)],
    );
    let in_sub = main.join("sub");
    git(
        &in_sub,
        &["config", "remote.origin.url", &token_url(&n.sub_token)],
    );
    git(
        &in_sub,
        &[
            "config",
            "http.https://github.com/.extraheader",
            &format!("AUTHORIZATION: basic {}", n.sub_header),
        ],
    );
    git(&main, &["config", "extensions.worktreeConfig", "true"]);
    git(
        &main,
        &[
            "config",
            "--worktree",
            "http.extraheader",
            &format!("AUTHORIZATION: basic {}", n.worktree_header),
        ],
    );
    std::fs::write(
        main.join("secrets.json"),
        format!("{{\"k\": \"{}\"}}", n.ignored),
    )
    .unwrap();
    let wt = base.join("wt");
    git(
        &main,
        &[
            "worktree",
            "add",
            "-q",
            wt.to_str().unwrap(),
            "-b",
            "feature",
        ],
    );
    git(
        &wt,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "update",
            "-q",
            "--init",
        ],
    );
    git(
        &wt.join("sub"),
        &["config", "remote.origin.url", &token_url(&n.sub_token)],
    );
    git(
        &wt,
        &[
            "config",
            "--worktree",
            "http.extraheader",
            &format!("AUTHORIZATION: basic {}", n.linked_header),
        ],
    );
    std::fs::write(wt.join("feature.txt"), "feature\n").unwrap();
    git(&wt, &["add", "feature.txt"]);
    git(&wt, &["commit", "-q", "-m", "feature work"]);
    std::fs::write(
        wt.join("secrets.json"),
        format!("{{\"k\": \"{}\"}}", n.ignored),
    )
    .unwrap();
    (main, wt)
}

/// `bottle run` from `cwd` with `script` as the agent command; its stdout.
fn run_agent(dir: &Path, bottle: &str, cwd: &Path, script: &str) -> String {
    let m = dir.join("m.yaml");
    std::fs::write(
        &m,
        format!(
            "bottles:\n  {bottle}:\n    outer_proxy: squid\n    allow: [pypi.org]\nagents:\n  a: {{bottle: {bottle}}}\n"
        ),
    )
    .unwrap();
    let o = Command::new(bottle_bin())
        .args([
            "-q",
            "run",
            "--manifest",
            m.to_str().unwrap(),
            "--agent",
            "a",
        ])
        .args(["--", "bash", "-c", script])
        .current_dir(cwd)
        .env("BOTTLE_STATE_DIR", dir.join("state"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "bottle run from {}: {out}\n{}",
        cwd.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[test]
fn workspace_copy_carries_no_git_credentials_from_main_checkout_or_linked_worktree() {
    if !docker_or_skip() {
        return;
    }
    let bottle = unique("ws");
    let _guard = Guard::new(&bottle);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let n = Needles::new();
    let (main, wt) = ci_checkout(dir, &n);
    // The needles go in through a file so that no process argv in the agent holds
    // them; grep prints only file names (-l), never a value.
    let patterns: String = n.all().iter().map(|s| format!("{s}\n")).collect();
    let b64 = {
        use std::io::Write;
        let mut c = Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(patterns.as_bytes())
            .unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
    };
    let script = format!(
        "set -u; echo {b64} | base64 -d > /tmp/needles; \
         echo \"files-with-needles: $(grep -rlaF -f /tmp/needles /workspace | tr '\\n' ' ')\"; \
         echo \"git-config-files: $(find /workspace -path '*/.git/*' \\( -name 'config' -o -name 'config.*' \\) | sort | tr '\\n' ' ')\"; \
         test -d /workspace/.git && echo dot-git-is-a-dir; \
         cd /workspace && echo \"status: [$(git status --porcelain 2>&1)] rc=$?\"; \
         echo \"log: $(git log --format=%s 2>&1 | tr '\\n' ',')\"; \
         echo \"head: $(git rev-parse --abbrev-ref HEAD)\"; \
         echo \"sub: $(cat sub/lib.txt)\"; \
         ls secrets.json 2>/dev/null && echo secrets-present; exit 0"
    );
    for (what, cwd, head, log) in [
        ("main checkout", &main, "main", "add sub,one,"),
        (
            "linked worktree",
            &wt,
            "feature",
            "feature work,add sub,one,",
        ),
    ] {
        let out = run_agent(dir, &bottle, cwd, &script);
        let line = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("{what}: no `{key}` in the agent's output:\n{out}"))
                .trim()
                .to_string()
        };
        assert_eq!(
            line("files-with-needles:"),
            "",
            "{what}: a credential or ignored value reached the agent"
        );
        for needle in n.all() {
            assert!(
                !out.contains(needle),
                "{what}: a needle in the agent's output"
            );
        }
        assert_eq!(
            line("git-config-files:"),
            "/workspace/.git/config",
            "{what}: a git config file other than the fresh one"
        );
        assert!(out.contains("dot-git-is-a-dir"), "{what}: {out}");
        assert_eq!(
            line("status:"),
            "[] rc=0",
            "{what}: git status in the agent"
        );
        assert_eq!(line("log:"), log, "{what}: git log in the agent");
        assert_eq!(line("head:"), head, "{what}");
        assert_eq!(line("sub:"), "sub file", "{what}: the submodule's files");
        assert!(
            !out.contains("secrets-present"),
            "{what}: the ignored file came in"
        );
    }
}
