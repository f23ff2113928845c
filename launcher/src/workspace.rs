//! The agent's workspace: which host files are copied to `/workspace`, the
//! warnings about files that look like secrets, and the tar archive `apply`
//! uploads (owned by the agent's uid, with a fresh `.git/config`).
//!
//! Owns: the choice of files and of git data. In a git work tree (whether `.git`
//! is a directory, or a file as in a linked worktree or a submodule checkout) the
//! files are the tracked ones plus the untracked ones git does not ignore, the
//! same `git ls-files` selection applied inside populated submodules. The agent
//! gets a self-contained `.git` directory: the repository's common directory
//! (objects, refs, hooks) with, for a linked worktree, that worktree's own HEAD,
//! index and per-worktree refs laid over it. Outside git, every file of the
//! `workdir` except any nested `.git`.
//!
//! Must never: let a git config file other than the fresh one into the archive
//! (`config`, `config.worktree`, `worktrees/*/config*` and all of
//! `modules/**`, where CI checkouts keep tokens and extra headers), follow
//! symlinks out of the tree, or write on the host.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use crate::plan::AGENT_UID;

/// Submodules inside submodules are followed this deep, no deeper.
const MAX_SUBMODULE_DEPTH: usize = 8;

/// What will be copied.
#[derive(Debug, Clone)]
pub struct WorkspaceInfo {
    pub root: PathBuf,
    /// Paths relative to `root` (without any git data).
    pub files: Vec<PathBuf>,
    /// The repository's common git directory (objects, refs, and the `config`
    /// the fresh one is rendered from), when `root` is a work tree's top level.
    pub git_dir: Option<PathBuf>,
    /// A linked worktree's own git directory (`<common>/worktrees/<name>`):
    /// its HEAD, index and per-worktree refs replace the main checkout's.
    pub worktree_git_dir: Option<PathBuf>,
    pub warnings: Vec<String>,
}

/// Errors reading the workspace.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("workspace {path}: {source}; fix: check the directory exists and is readable")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "workspace {path}: `git {what}` failed: {detail}; fix: run bottle from a working git repository or set `workdir`"
    )]
    Git {
        path: String,
        what: String,
        detail: String,
    },
}

/// `git` that finds the repository from its working directory alone: a
/// `GIT_DIR` or `GIT_WORK_TREE` in bottle's environment (set by a hook, say)
/// must not make it read another repository than the one being copied.
fn git_cmd() -> Command {
    let mut c = Command::new("git");
    for v in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_COMMON_DIR",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_CEILING_DIRECTORIES",
    ] {
        c.env_remove(v);
    }
    c
}

/// The git repository containing `dir`, if any.
pub fn git_toplevel(dir: &Path) -> Option<PathBuf> {
    let out = git_cmd()
        .args(["rev-parse", "--show-toplevel"])
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    Some(PathBuf::from(s.trim_end_matches('\n')))
}

/// Runs git in `dir`; stdout on success.
fn git_out(dir: &Path, args: &[&str]) -> Result<Vec<u8>, WorkspaceError> {
    let out = git_cmd()
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|source| WorkspaceError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(WorkspaceError::Git {
            path: dir.display().to_string(),
            what: args.join(" "),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

fn path_from_bytes(b: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(b))
}

/// Where git keeps the data of the work tree at `root`.
struct Layout {
    /// `root` is the work tree's top level (not a directory inside it).
    toplevel: bool,
    git_dir: PathBuf,
    common_dir: PathBuf,
}

/// `None` when `root` is not inside a git work tree (a plain directory, a bare
/// repository, or a `.git` directory itself). A `root` holding a `.git` that
/// git cannot open is an error, not a plain directory: copying it whole would
/// take ignored files in.
fn layout(root: &Path) -> Result<Option<Layout>, WorkspaceError> {
    match try_layout(root) {
        Some(l) => Ok(Some(l)),
        None if root.join(".git").symlink_metadata().is_ok() => {
            // Ask again for the message git gives.
            git_out(root, &["rev-parse", "--show-toplevel"])?;
            Err(WorkspaceError::Git {
                path: root.display().to_string(),
                what: "rev-parse".into(),
                detail: "cannot open the repository".into(),
            })
        }
        None => Ok(None),
    }
}

fn try_layout(root: &Path) -> Option<Layout> {
    let out = git_cmd()
        .args([
            "rev-parse",
            "--is-inside-work-tree",
            "--show-toplevel",
            "--absolute-git-dir",
            "--git-common-dir",
        ])
        .current_dir(root)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    // Paths are bytes on unix: a non-UTF-8 directory name must not turn a
    // work tree into a plain directory (which would copy ignored files).
    let mut lines = out.stdout.split(|b| *b == b'\n').map(path_from_bytes);
    if lines.next()? != Path::new("true") {
        return None;
    }
    let top = lines.next()?;
    let git_dir = lines.next()?;
    let common = lines.next()?;
    // `--git-common-dir` is relative to `root` when it is relative.
    let common = if common.is_absolute() {
        common
    } else {
        root.join(common)
    };
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    Some(Layout {
        toplevel: canon(&top) == canon(root),
        git_dir: canon(&git_dir),
        common_dir: canon(&common),
    })
}

/// Reads the workspace rooted at `root` (a git work tree or a plain directory).
pub fn scan(root: &Path) -> Result<WorkspaceInfo, WorkspaceError> {
    let io_err = |source| WorkspaceError::Io {
        path: root.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(root).map_err(io_err)?;
    if !meta.is_dir() {
        return Err(io_err(io::Error::other("not a directory")));
    }
    let mut warnings = Vec::new();
    let (files, git_dir, worktree_git_dir) = match layout(root)? {
        Some(l) => {
            let mut files = Vec::new();
            select(root, Path::new(""), 0, &mut files, &mut warnings)?;
            files.sort();
            if l.toplevel {
                let linked = (l.git_dir != l.common_dir).then_some(l.git_dir);
                (files, Some(l.common_dir), linked)
            } else {
                warnings.push(format!(
                    "{} is inside a git work tree but not its top level: its files are copied without git data",
                    root.display()
                ));
                (files, None, None)
            }
        }
        None => {
            let mut v = Vec::new();
            walk_plain(root, Path::new(""), &mut v, &mut warnings).map_err(io_err)?;
            (v, None, None)
        }
    };
    warnings.extend(files.iter().filter(|p| looks_secret(p)).map(|p| {
        format!(
            "{} looks like a secret and will be visible to the agent",
            p.display()
        )
    }));
    Ok(WorkspaceInfo {
        root: root.to_path_buf(),
        files,
        git_dir,
        worktree_git_dir,
        warnings,
    })
}

/// The `git ls-files` selection of the work tree at `root.join(prefix)`: tracked
/// files plus untracked, not-ignored ones; populated submodules contribute
/// their own selection (their git data stays out, with a warning).
fn select(
    root: &Path,
    prefix: &Path,
    depth: usize,
    out: &mut Vec<PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<(), WorkspaceError> {
    let dir = root.join(prefix);
    let listed = git_out(
        &dir,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    )?;
    let staged = git_out(&dir, &["ls-files", "-z", "--stage"])?;
    // `<mode> <oid> <stage>\t<path>`; mode 160000 is a submodule (gitlink).
    let submodules: BTreeSet<&[u8]> = staged
        .split(|b| *b == 0)
        .filter_map(|e| {
            let tab = e.iter().position(|b| *b == b'\t')?;
            e.starts_with(b"160000 ").then(|| &e[tab + 1..])
        })
        .collect();
    let mut set = BTreeSet::new();
    for p in listed.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let is_sub = submodules.contains(p);
        let rel = path_from_bytes(p);
        let shown = prefix.join(&rel);
        if is_sub {
            if !dir.join(&rel).join(".git").exists() {
                continue; // not checked out: nothing to copy
            }
            if depth >= MAX_SUBMODULE_DEPTH {
                warnings.push(format!(
                    "submodule {} is nested too deep and is left out",
                    shown.display()
                ));
                continue;
            }
            let mut sub = Vec::new();
            match select(root, &shown, depth + 1, &mut sub, warnings) {
                Ok(()) => {
                    out.extend(sub);
                    warnings.push(format!(
                        "submodule {}: its files are copied without its git data (its config may hold credentials); git commands inside it act on the outer repository in the agent",
                        shown.display()
                    ));
                }
                Err(e) => warnings.push(format!("submodule {} is left out: {e}", shown.display())),
            }
            continue;
        }
        if p.ends_with(b"/") {
            // `--others` lists an untracked nested repository as `dir/`.
            warnings.push(format!(
                "{} is a nested git repository (not a submodule) and is left out",
                shown.display()
            ));
            continue;
        }
        // Deleted-but-tracked files are listed too: keep only what exists.
        if root.join(&shown).symlink_metadata().is_ok() {
            set.insert(shown);
        }
    }
    out.extend(set);
    Ok(())
}

/// `.env`, `*.pem`, `id_*` file names (SPEC §6).
pub fn looks_secret(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name == ".env" || name.starts_with(".env.") || name.ends_with(".pem") || name.starts_with("id_")
}

/// Every file and symlink under `root/rel`, sorted; no filtering.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        let t = e.file_type()?;
        if t.is_dir() {
            walk(root, &r, out)?;
        } else if t.is_file() || t.is_symlink() {
            out.push(r);
        }
    }
    Ok(())
}

/// A plain directory's files, leaving out every `.git` (a nested repository's
/// config is as likely to hold credentials as the top one's).
fn walk_plain(
    root: &Path,
    rel: &Path,
    out: &mut Vec<PathBuf>,
    warnings: &mut Vec<String>,
) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        if e.file_name() == ".git" {
            warnings.push(format!(
                "{}: git data of a nested repository is left out",
                r.display()
            ));
            continue;
        }
        let t = e.file_type()?;
        if t.is_dir() {
            walk_plain(root, &r, out, warnings)?;
        } else if t.is_file() || t.is_symlink() {
            out.push(r);
        }
    }
    Ok(())
}

/// The first component of `rel` as a string ("" when it has none).
fn first(rel: &Path) -> &str {
    match rel.components().next() {
        Some(Component::Normal(c)) => c.to_str().unwrap_or_default(),
        _ => "",
    }
}

fn is_config_name(rel: &Path) -> bool {
    rel.components().count() == 1 && (first(rel) == "config" || first(rel).starts_with("config."))
}

/// Whether a file of the common git directory goes into the agent's `.git`.
/// `linked`: the work tree is a linked worktree, so the main checkout's own
/// state (HEAD, index, merge/rebase state, per-worktree refs) stays out too.
fn keep_common(rel: &Path, linked: bool) -> bool {
    if is_config_name(rel) || matches!(first(rel), "worktrees" | "modules") {
        return false;
    }
    if !linked {
        return true;
    }
    let top_file = rel.components().count() == 1;
    if top_file {
        return matches!(first(rel), "packed-refs" | "shallow" | "description");
    }
    !(matches!(first(rel), "sequencer" | "rebase-merge" | "rebase-apply")
        || rel == Path::new("logs/HEAD")
        || rel.starts_with("refs/bisect")
        || rel.starts_with("refs/worktree")
        || rel.starts_with("refs/rewritten")
        || rel.starts_with("logs/refs/bisect")
        || rel.starts_with("logs/refs/worktree"))
}

/// Whether a file of a linked worktree's own git directory goes in.
fn keep_worktree(rel: &Path) -> bool {
    !(is_config_name(rel)
        || first(rel) == "modules"
        || (rel.components().count() == 1
            && matches!(first(rel), "commondir" | "gitdir" | "locked")))
}

/// The agent's `.git` without its config: path inside `.git` → host file.
pub fn git_files(info: &WorkspaceInfo) -> io::Result<BTreeMap<PathBuf, PathBuf>> {
    let mut map = BTreeMap::new();
    let Some(common) = &info.git_dir else {
        return Ok(map);
    };
    let linked = info.worktree_git_dir.is_some();
    let mut v = Vec::new();
    walk(common, Path::new(""), &mut v)?;
    for rel in v.into_iter().filter(|r| keep_common(r, linked)) {
        map.insert(rel.clone(), common.join(rel));
    }
    if let Some(wt) = &info.worktree_git_dir {
        let mut v = Vec::new();
        walk(wt, Path::new(""), &mut v)?;
        for rel in v.into_iter().filter(|r| keep_worktree(r)) {
            map.insert(rel.clone(), wt.join(rel));
        }
    }
    Ok(map)
}

/// The tar archive to upload at `/`: `workspace/...` owned by the agent, with
/// a self-contained `.git` directory whose only config is `git_config`.
pub fn archive(info: &WorkspaceInfo, git_config: &str) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut dirs = BTreeSet::new();
    let ws = Path::new("workspace");
    add_dir(&mut b, &mut dirs, ws)?;
    for rel in &info.files {
        add_path(&mut b, &mut dirs, &info.root.join(rel), &ws.join(rel))?;
    }
    if info.git_dir.is_some() {
        let dot_git = ws.join(".git");
        for (rel, src) in git_files(info)? {
            add_path(&mut b, &mut dirs, &src, &dot_git.join(rel))?;
        }
        add_bytes(
            &mut b,
            &mut dirs,
            &dot_git.join("config"),
            git_config.as_bytes(),
            0o644,
        )?;
    }
    b.into_inner()
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(AGENT_UID);
    h.set_gid(AGENT_UID);
    h.set_size(size);
    h.set_mtime(0);
    h
}

fn add_dir(
    b: &mut tar::Builder<Vec<u8>>,
    dirs: &mut BTreeSet<PathBuf>,
    p: &Path,
) -> io::Result<()> {
    if p.as_os_str().is_empty() || dirs.contains(p) {
        return Ok(());
    }
    if let Some(parent) = p.parent() {
        add_dir(b, dirs, parent)?;
    }
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, p, io::empty())?;
    dirs.insert(p.to_path_buf());
    Ok(())
}

fn add_bytes(
    b: &mut tar::Builder<Vec<u8>>,
    dirs: &mut BTreeSet<PathBuf>,
    p: &Path,
    data: &[u8],
    mode: u32,
) -> io::Result<()> {
    if let Some(parent) = p.parent() {
        add_dir(b, dirs, parent)?;
    }
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
    b.append_data(&mut h, p, data)
}

fn add_path(
    b: &mut tar::Builder<Vec<u8>>,
    dirs: &mut BTreeSet<PathBuf>,
    src: &Path,
    dst: &Path,
) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = src.symlink_metadata()?;
    if meta.file_type().is_symlink() {
        if let Some(parent) = dst.parent() {
            add_dir(b, dirs, parent)?;
        }
        let target = std::fs::read_link(src)?;
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, dst, target)?;
    } else if meta.is_file() {
        let mode = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        let data = std::fs::read(src)?;
        add_bytes(b, dirs, dst, &data, mode)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
}
