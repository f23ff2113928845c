//! The agent's workspace: which host files are copied to `/workspace`, the
//! warnings about files that look like secrets, and the tar archive `apply`
//! uploads (owned by the agent's uid, with a fresh `.git/config`).
//!
//! Owns: the choice of files (a git repository's tracked and untracked,
//! not-ignored files plus its `.git` directory; or every file of a `workdir`).
//!
//! Must never: copy the original `.git/config` (credentials, extra headers,
//! URL rewrites live there), follow symlinks out of the tree, or write on the host.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::plan::AGENT_UID;

/// What will be copied.
#[derive(Debug, Clone)]
pub struct WorkspaceInfo {
    pub root: PathBuf,
    /// Paths relative to `root` (without `.git`).
    pub files: Vec<PathBuf>,
    /// The repository's `.git` directory, when it is one.
    pub git_dir: Option<PathBuf>,
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
        "workspace {path}: `git ls-files` failed: {detail}; fix: run bottle from a working git repository or set `workdir`"
    )]
    Git { path: String, detail: String },
}

/// The git repository containing `dir`, if any.
pub fn git_toplevel(dir: &Path) -> Option<PathBuf> {
    let out = Command::new("git")
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

/// Reads the workspace rooted at `root` (a git repository or a plain directory).
pub fn scan(root: &Path) -> Result<WorkspaceInfo, WorkspaceError> {
    let io_err = |source| WorkspaceError::Io {
        path: root.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(root).map_err(io_err)?;
    if !meta.is_dir() {
        return Err(io_err(io::Error::other("not a directory")));
    }
    let git_dir = root.join(".git");
    let (files, git_dir) = if git_dir.is_dir() {
        let out = Command::new("git")
            .args([
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ])
            .current_dir(root)
            .output()
            .map_err(io_err)?;
        if !out.status.success() {
            return Err(WorkspaceError::Git {
                path: root.display().to_string(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let mut set = BTreeSet::new();
        for p in out.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
            let p = PathBuf::from(String::from_utf8_lossy(p).into_owned());
            // Deleted-but-tracked files are listed too: keep only what exists.
            if root.join(&p).symlink_metadata().is_ok() {
                set.insert(p);
            }
        }
        (set.into_iter().collect(), Some(git_dir))
    } else {
        let mut v = Vec::new();
        walk(root, Path::new(""), &mut v).map_err(io_err)?;
        (v, None)
    };
    let warnings = files
        .iter()
        .filter(|p| looks_secret(p))
        .map(|p| {
            format!(
                "{} looks like a secret and will be visible to the agent",
                p.display()
            )
        })
        .collect();
    Ok(WorkspaceInfo {
        root: root.to_path_buf(),
        files,
        git_dir,
        warnings,
    })
}

/// `.env`, `*.pem`, `id_*` file names (SPEC §6).
pub fn looks_secret(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name == ".env" || name.starts_with(".env.") || name.ends_with(".pem") || name.starts_with("id_")
}

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

/// The tar archive to upload at `/`: `workspace/...` owned by the agent, with
/// `.git/config` replaced by `git_config`.
pub fn archive(info: &WorkspaceInfo, git_config: &str) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut dirs = BTreeSet::new();
    add_dir(&mut b, &mut dirs, Path::new("workspace"))?;
    for rel in &info.files {
        add_path(&mut b, &mut dirs, &info.root, rel)?;
    }
    if let Some(gd) = &info.git_dir {
        let mut git_files = Vec::new();
        walk(gd, Path::new(""), &mut git_files)?;
        for rel in git_files {
            if rel == Path::new("config") {
                continue;
            }
            add_path(&mut b, &mut dirs, &info.root, &Path::new(".git").join(rel))?;
        }
        add_bytes(
            &mut b,
            &mut dirs,
            Path::new("workspace/.git/config"),
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
    root: &Path,
    rel: &Path,
) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let src = root.join(rel);
    let dst = Path::new("workspace").join(rel);
    let meta = src.symlink_metadata()?;
    if meta.file_type().is_symlink() {
        if let Some(parent) = dst.parent() {
            add_dir(b, dirs, parent)?;
        }
        let target = std::fs::read_link(&src)?;
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, &dst, target)?;
    } else if meta.is_file() {
        let mode = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        let data = std::fs::read(&src)?;
        add_bytes(b, dirs, &dst, &data, mode)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let git = |args: &[&str]| {
            assert!(
                Command::new("git")
                    .args(args)
                    .current_dir(r)
                    .output()
                    .unwrap()
                    .status
                    .success()
            )
        };
        git(&["init", "-q"]);
        git(&["config", "credential.helper", "store"]);
        git(&[
            "remote",
            "add",
            "origin",
            "https://u:ghp_TOKEN@github.com/a/b.git",
        ]);
        std::fs::write(r.join(".gitignore"), "target/\n").unwrap();
        std::fs::create_dir_all(r.join("target")).unwrap();
        std::fs::write(r.join("target/big"), "x").unwrap();
        std::fs::write(r.join("main.rs"), "fn main() {}").unwrap();
        std::fs::write(r.join(".env"), "A=1").unwrap();
        let info = scan(r).unwrap();
        assert!(info.files.contains(&PathBuf::from("main.rs")));
        assert!(!info.files.iter().any(|p| p.starts_with("target")));
        assert_eq!(info.warnings.len(), 1);
        let tar = archive(&info, "[core]\n\trepositoryformatversion = 0\n").unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let mut saw_config = false;
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            assert_eq!(e.header().uid().unwrap(), 1000);
            let p = e.path().unwrap().into_owned();
            assert!(p.starts_with("workspace"));
            if p == Path::new("workspace/.git/config") {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                assert!(!s.contains("ghp_") && !s.contains("credential"));
                saw_config = true;
            }
        }
        assert!(saw_config);
    }
}
