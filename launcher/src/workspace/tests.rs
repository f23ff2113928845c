//! The workspace selection and archive, on real git repositories.

use super::*;

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn commit_all(dir: &Path, msg: &str) {
    git(dir, &["add", "-A"]);
    git(
        dir,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "-m",
            msg,
        ],
    );
}

/// Every value a CI checkout hides in git data or ignored files.
const NEEDLES: &[&str] = &[
    "ORIGTOKEN",
    "SUBTOKEN",
    "SUBHEADER",
    "WTHEADER",
    "LINKEDHEADER",
    "LINKEDSUBTOKEN",
    "IGNOREDSECRET",
];

/// A checkout as CI leaves it: a token in the remote URL, a submodule whose
/// config holds a token URL and an extra header, a worktree config with an
/// extra header, an ignored `secrets.json`, and a linked worktree `wt`
/// with its own worktree config and submodule. Returns (main, wt).
fn ci_checkout(base: &Path) -> (PathBuf, PathBuf) {
    let sub = base.join("subsrc");
    std::fs::create_dir_all(&sub).unwrap();
    git(&sub, &["init", "-q", "-b", "main"]);
    std::fs::write(sub.join("lib.txt"), "sub file\n").unwrap();
    commit_all(&sub, "sub");
    let main = base.join("main");
    std::fs::create_dir_all(&main).unwrap();
    git(&main, &["init", "-q", "-b", "main"]);
    std::fs::write(main.join(".gitignore"), "secrets.json\n").unwrap();
    std::fs::write(main.join("README"), "hello\n").unwrap();
    commit_all(&main, "one");
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
    commit_all(&main, "add sub");
    git(
        &main,
        &[
            "remote",
            "add",
            "origin",
            "https://x-access-token:ORIGTOKEN@github.com/acme/main.git",
        ],
    );
    let subdir = main.join("sub");
    git(
        &subdir,
        &[
            "config",
            "remote.origin.url",
            "https://x-access-token:SUBTOKEN@github.com/acme/sub.git",
        ],
    );
    git(
        &subdir,
        &[
            "config",
            "http.https://github.com/.extraheader",
            "AUTHORIZATION: basic SUBHEADER",
        ],
    );
    git(&main, &["config", "extensions.worktreeConfig", "true"]);
    git(
        &main,
        &[
            "config",
            "--worktree",
            "http.extraheader",
            "AUTHORIZATION: basic WTHEADER",
        ],
    );
    std::fs::write(main.join("secrets.json"), "{\"k\": \"IGNOREDSECRET\"}").unwrap();
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
        &[
            "config",
            "remote.origin.url",
            "https://x-access-token:LINKEDSUBTOKEN@github.com/acme/sub.git",
        ],
    );
    git(
        &wt,
        &[
            "config",
            "--worktree",
            "http.extraheader",
            "AUTHORIZATION: basic LINKEDHEADER",
        ],
    );
    std::fs::write(wt.join("feature.txt"), "feature\n").unwrap();
    commit_all(&wt, "feature work");
    std::fs::write(wt.join("secrets.json"), "{\"k\": \"IGNOREDSECRET\"}").unwrap();
    // The host copies really hold what the agent must not see.
    let all = format!(
        "{}{}",
        std::fs::read_to_string(main.join(".git/modules/sub/config")).unwrap(),
        std::fs::read_to_string(main.join(".git/worktrees/wt/config.worktree")).unwrap()
    );
    assert!(all.contains("SUBTOKEN") && all.contains("LINKEDHEADER"));
    (main, wt)
}

/// Builds the archive as `bottle run` does and unpacks it into a new directory.
fn unpacked(info: &WorkspaceInfo) -> (tempfile::TempDir, Vec<String>) {
    let original = info
        .git_dir
        .as_ref()
        .and_then(|g| std::fs::read_to_string(g.join("config")).ok());
    let cfg = crate::render::git_config::render(
        original.as_deref(),
        &[("gate".into(), "git://git-gate:9418/gate.git".into())],
    );
    let tar = archive(info, &cfg).unwrap();
    let mut names = Vec::new();
    let mut a = tar::Archive::new(&tar[..]);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().uid().unwrap(), AGENT_UID);
        names.push(e.path().unwrap().display().to_string());
    }
    let out = tempfile::tempdir().unwrap();
    tar::Archive::new(&tar[..]).unpack(out.path()).unwrap();
    (out, names)
}

/// No needle in any file name or content of the unpacked workspace.
fn assert_no_needles(ws: &Path, names: &[String]) {
    let mut files = Vec::new();
    walk(ws, Path::new(""), &mut files).unwrap();
    for rel in files {
        let p = ws.join(&rel);
        let data = if p.symlink_metadata().unwrap().is_symlink() {
            Vec::new()
        } else {
            std::fs::read(&p).unwrap()
        };
        let text = String::from_utf8_lossy(&data);
        for n in NEEDLES {
            assert!(
                !text.contains(n),
                "{n} reached the agent in {}",
                rel.display()
            );
        }
    }
    for name in names {
        assert!(
            !name.contains(".git/worktrees")
                && !name.contains(".git/modules")
                && !name.contains("config.worktree"),
            "{name} reached the agent"
        );
    }
}

#[test]
fn secret_names_warn() {
    for (p, w) in [
        (".env", true),
        ("a/.env.local", true),
        ("k/server.pem", true),
        ("id_ed25519", true),
        ("src/main.rs", false),
        ("identity.rs", false),
    ] {
        assert_eq!(looks_secret(Path::new(p)), w, "{p}");
    }
}

#[test]
fn git_repo_archive_has_fresh_config_and_skips_ignored() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    git(r, &["init", "-q"]);
    git(r, &["config", "credential.helper", "store"]);
    git(
        r,
        &[
            "remote",
            "add",
            "origin",
            "https://u:ghp_TOKEN@github.com/a/b.git",
        ],
    );
    std::fs::write(r.join(".gitignore"), "target/\n").unwrap();
    std::fs::create_dir_all(r.join("target")).unwrap();
    std::fs::write(r.join("target/big"), "x").unwrap();
    std::fs::write(r.join("main.rs"), "fn main() {}").unwrap();
    std::fs::write(r.join(".env"), "A=1").unwrap();
    let info = scan(r).unwrap();
    assert!(info.files.contains(&PathBuf::from("main.rs")));
    assert!(!info.files.iter().any(|p| p.starts_with("target")));
    assert_eq!(info.warnings.len(), 1);
    let (out, names) = unpacked(&info);
    assert!(names.iter().all(|n| n.starts_with("workspace")));
    let cfg = std::fs::read_to_string(out.path().join("workspace/.git/config")).unwrap();
    assert!(
        !cfg.contains("ghp_") && !cfg.contains("credential"),
        "{cfg}"
    );
}

#[test]
fn main_checkout_gets_no_git_config_but_the_fresh_one_and_git_works() {
    let d = tempfile::tempdir().unwrap();
    let (main, _wt) = ci_checkout(d.path());
    let info = scan(&main).unwrap();
    assert_eq!(info.worktree_git_dir, None);
    assert!(
        info.files.contains(&PathBuf::from("sub/lib.txt")),
        "{:?}",
        info.files
    );
    assert!(!info.files.contains(&PathBuf::from("secrets.json")));
    assert!(
        info.warnings
            .iter()
            .any(|w| w.starts_with("submodule sub:")),
        "{:?}",
        info.warnings
    );
    let (out, names) = unpacked(&info);
    let ws = out.path().join("workspace");
    assert_no_needles(&ws, &names);
    assert!(ws.join(".git").is_dir());
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
    assert_eq!(git(&ws, &["log", "--format=%s"]), "add sub\none\n");
    assert_eq!(git(&ws, &["rev-parse", "--abbrev-ref", "HEAD"]), "main\n");
    let cfg = git(&ws, &["config", "--list", "--show-origin"]);
    assert!(
        !cfg.to_ascii_lowercase().contains("worktreeconfig"),
        "{cfg}"
    );
    assert!(
        cfg.contains("remote.gate.url=git://git-gate:9418/gate.git"),
        "{cfg}"
    );
}

#[test]
fn linked_worktree_gets_a_self_contained_git_dir_and_the_same_selection() {
    let d = tempfile::tempdir().unwrap();
    let (main, wt) = ci_checkout(d.path());
    let info = scan(&wt).unwrap();
    assert_eq!(
        info.git_dir.as_deref(),
        Some(std::fs::canonicalize(main.join(".git")).unwrap().as_path())
    );
    assert!(info.worktree_git_dir.is_some());
    assert!(
        !info.files.contains(&PathBuf::from("secrets.json")),
        "{:?}",
        info.files
    );
    assert!(info.files.contains(&PathBuf::from("feature.txt")));
    assert!(info.files.contains(&PathBuf::from("sub/lib.txt")));
    let (out, names) = unpacked(&info);
    let ws = out.path().join("workspace");
    assert_no_needles(&ws, &names);
    assert!(ws.join(".git").is_dir(), "the agent's .git is a directory");
    assert!(!ws.join(".git/commondir").exists() && !ws.join(".git/gitdir").exists());
    assert_eq!(
        git(&ws, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "feature\n"
    );
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
    assert_eq!(
        git(&ws, &["log", "--format=%s"]),
        "feature work\nadd sub\none\n"
    );
    // The main checkout's branch is there as a ref, not as the HEAD.
    assert_eq!(
        git(&ws, &["branch", "--format=%(refname:short)"]),
        "feature\nmain\n"
    );
}

#[test]
fn odd_names_nested_repos_and_broken_git_dirs() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("odd");
    std::fs::create_dir_all(&r).unwrap();
    git(&r, &["init", "-q"]);
    let odd = PathBuf::from(OsStr::from_bytes(b"caf\xe9.txt"));
    std::fs::write(r.join(&odd), "x").unwrap();
    std::fs::create_dir_all(r.join("inner")).unwrap();
    git(&r.join("inner"), &["init", "-q"]);
    std::fs::write(r.join("inner/x"), "x").unwrap();
    let info = scan(&r).unwrap();
    assert_eq!(info.files, vec![odd]);
    assert!(
        info.warnings
            .iter()
            .any(|w| w.contains("inner/ is a nested git repository")),
        "{:?}",
        info.warnings
    );
    // A `.git` git cannot open is an error, never a plain directory copied whole.
    let b = d.path().join("broken");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join(".git"), "gitdir: /nonexistent/bottle-test\n").unwrap();
    std::fs::write(b.join("secrets.json"), "IGNOREDSECRET").unwrap();
    let e = scan(&b).unwrap_err().to_string();
    assert!(e.contains("not a git repository"), "{e}");
}

#[test]
fn git_ignores_a_repository_named_by_the_environment() {
    let removed: Vec<_> = git_cmd()
        .get_envs()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    for v in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"] {
        assert!(removed.iter().any(|r| r == v), "{v} reaches git");
    }
}

#[test]
fn plain_directory_leaves_out_nested_git_data() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("plain");
    std::fs::create_dir_all(r.join("proj")).unwrap();
    git(&r.join("proj"), &["init", "-q"]);
    git(
        &r.join("proj"),
        &[
            "config",
            "remote.origin.url",
            "https://u:ORIGTOKEN@example.com/x",
        ],
    );
    std::fs::write(r.join("proj/a.txt"), "a").unwrap();
    std::fs::write(r.join("notes.txt"), "n").unwrap();
    let info = scan(&r).unwrap();
    assert_eq!(
        info.files,
        vec![PathBuf::from("notes.txt"), PathBuf::from("proj/a.txt")]
    );
    assert!(info.git_dir.is_none());
    assert!(info.warnings.iter().any(|w| w.contains("proj/.git")));
    let (out, names) = unpacked(&info);
    assert_no_needles(&out.path().join("workspace"), &names);
}
