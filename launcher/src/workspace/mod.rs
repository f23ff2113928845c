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
mod tests;
