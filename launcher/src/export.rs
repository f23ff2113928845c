//! `bottle export`'s host side: writes the tar of the agent's workspace
//! volume into a directory of the host. The agent wrote every byte of that
//! archive, so each entry is hostile until checked.
//!
//! Git data is hostile in its own way: a `.git/config` (`core.fsmonitor`,
//! `core.sshCommand`, aliases, filter drivers) or a hook runs commands the
//! moment someone runs git in the exported directory on the host. So every
//! `.git/config` is written rendered through `render::git_config` (format
//! and extensions, author identity: nothing that runs a command; no
//! remotes), and hooks, `modules/`, `worktrees/`, other `config*` files,
//! gitdir/commondir pointers, `.git` files and object alternates are left
//! out (listed, not an error). Not handled: a bare repository the agent
//! builds elsewhere in the tree is exported as plain files (Git's
//! `safe.bareRepository=explicit` refuses to use it).
//!
//! Owns: the rules for what leaves the bottle. Written: directories, regular
//! files (permission bits without setuid/setgid/sticky), hard links as
//! copies of a file already written, and symlinks whose target is relative
//! and stays inside the directory (`..` only leading). Refused, each named with the reason:
//! `..` components and absolute paths, a symlink leaving the directory,
//! devices, FIFOs and anything else, and any entry whose path would go
//! through a symlink or a non-directory.
//!
//! Must never: follow a symlink (every parent is checked with
//! `symlink_metadata`, files are opened `O_NOFOLLOW`), write outside the
//! directory, or write into a non-empty directory without `force`.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// What an export wrote and what it refused.
#[derive(Debug, Default)]
pub struct Report {
    pub files: usize,
    pub dirs: usize,
    pub links: usize,
    /// (entry path as in the archive, why it was not written)
    pub refused: Vec<(String, String)>,
    /// Git data left out on purpose (entry path, why): not an error.
    pub left_out: Vec<(String, String)>,
    /// `.git/config` files written scrubbed (paths in the export).
    pub scrubbed: Vec<PathBuf>,
}

/// What happens to an entry because of where it sits in git data.
#[derive(Debug, PartialEq)]
enum Git {
    /// Not git data that can run anything: written as any other entry.
    Plain,
    /// A `.git/config`: written rendered, never as the agent wrote it.
    Scrub,
    LeaveOut(&'static str),
}

/// The git rule for `rel` (an entry of kind `kind`).
fn git_rule(rel: &Path, kind: tar::EntryType) -> Git {
    let comps: Vec<&std::ffi::OsStr> = rel.iter().collect();
    let Some(at) = comps.iter().position(|c| *c == ".git") else {
        return Git::Plain;
    };
    let below = &comps[at + 1..];
    let Some(first) = below.first() else {
        return if kind == tar::EntryType::Directory {
            Git::Plain
        } else {
            Git::LeaveOut("a `.git` that is not a directory (a pointer git would follow)")
        };
    };
    let first = first.to_string_lossy();
    match (first.as_ref(), below.len()) {
        ("config", 1) if kind == tar::EntryType::Regular => Git::Scrub,
        ("hooks", _) => Git::LeaveOut("git hooks (they would run on the host)"),
        ("modules" | "worktrees", _) => {
            Git::LeaveOut("git data of other checkouts (their config would apply on the host)")
        }
        ("commondir" | "gitdir", 1) => Git::LeaveOut("a pointer to another git directory"),
        (f, 1) if f.starts_with("config") => {
            Git::LeaveOut("git config files other than .git/config")
        }
        ("objects", 3) if below[1] == "info" && below[2] == "alternates" => {
            Git::LeaveOut("a pointer to another object store")
        }
        _ => Git::Plain,
    }
}

/// The largest `.git/config` read for scrubbing.
const MAX_GIT_CONFIG: u64 = 1 << 20;

/// Why an export could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "{0} is not empty; fix: name an empty or new directory, or pass --force to write into it"
    )]
    NotEmpty(PathBuf),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Makes `dir` (or checks it is empty unless `force`) and returns its
/// canonical path: the one root every entry is written under.
pub fn destination(dir: &Path, force: bool) -> Result<PathBuf, ExportError> {
    let io_err = |what, source| ExportError::Io {
        what,
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::read_dir(dir) {
        Ok(mut it) => {
            if it.next().is_some() && !force {
                return Err(ExportError::NotEmpty(dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| io_err("create", e))?;
        }
        Err(e) => return Err(io_err("read", e)),
    }
    std::fs::canonicalize(dir).map_err(|e| io_err("resolve", e))
}

/// The entry's path below `strip` (the archive's top directory) as plain
/// components, or why it is refused. `Ok(None)` is the top directory itself.
fn relative(raw: &[u8], strip: &str) -> Result<Option<PathBuf>, String> {
    let p = Path::new(std::ffi::OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    let mut first = true;
    for c in p.components() {
        match c {
            Component::Normal(n) if first => {
                if n != strip {
                    return Err(format!("outside the workspace (not under {strip}/)"));
                }
                first = false;
            }
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("a `..` component".into()),
            Component::RootDir | Component::Prefix(_) => return Err("an absolute path".into()),
        }
    }
    if first {
        return Err("outside the workspace".into());
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Creates the parents of `rel` under `root` as real directories; refuses a
/// path that would go through a symlink or a file.
fn parents(root: &Path, rel: &Path) -> Result<(), String> {
    let mut at = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in &comps[..comps.len().saturating_sub(1)] {
        at.push(c);
        match at.symlink_metadata() {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "its parent {} is a symlink (never followed)",
                    at.strip_prefix(root).unwrap_or(&at).display()
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "its parent {} is not a directory",
                    at.strip_prefix(root).unwrap_or(&at).display()
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&at)
                    .map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// True when `target`, taken from the directory of `link` (both relative to
/// the export root), names something inside the root. `..` is allowed only
/// at the start: after a name it would climb from wherever that name points
/// if it is a symlink (`b -> .`, `c -> b/b/../..` escapes), so the lexical
/// answer would be wrong. The link's own directory is a real one (`parents`
/// makes real directories), so the leading `..`s climb what they say.
fn stays_inside(link: &Path, target: &Path) -> bool {
    let mut depth: usize = link.components().count().saturating_sub(1);
    let mut named = false;
    for c in target.components() {
        match c {
            Component::Normal(_) => {
                named = true;
                depth += 1;
            }
            Component::CurDir => {}
            Component::ParentDir if named => return false,
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Opens `root/rel` for writing without following a symlink at its last
/// component (its parents were checked by `parents`).
fn create_file(path: &Path, mode: u32) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc_o_nofollow())
        .open(path)
}

fn libc_o_nofollow() -> i32 {
    libc::O_NOFOLLOW
}

/// Reads `root/rel` without following a symlink anywhere on the way.
fn read_inside(root: &Path, rel: &Path) -> io::Result<Vec<u8>> {
    let mut at = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in &comps[..comps.len().saturating_sub(1)] {
        at.push(c);
        if !at.symlink_metadata()?.file_type().is_dir() {
            return Err(io::Error::other("not a directory on the way"));
        }
    }
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nofollow())
        .open(root.join(rel))?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// Writes the archive's entries under `root` (from `destination`), the
/// archive's top directory `strip` removed.
pub fn extract(archive: impl Read, strip: &str, root: &Path) -> Result<Report, ExportError> {
    let mut report = Report::default();
    let mut a = tar::Archive::new(archive);
    let io_err = |what, source| ExportError::Io {
        what,
        path: root.to_path_buf(),
        source,
    };
    let entries = a.entries().map_err(|e| io_err("read the archive for", e))?;
    for e in entries {
        let mut e = e.map_err(|e| io_err("read the archive for", e))?;
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let mut refuse = |why: String| report.refused.push((shown.clone(), why));
        let rel = match relative(&raw, strip) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(why) => {
                refuse(why);
                continue;
            }
        };
        let kind = e.header().entry_type();
        let rule = git_rule(&rel, kind);
        if let Git::LeaveOut(why) = rule {
            report.left_out.push((shown, why.to_string()));
            continue;
        }
        if let Err(why) = parents(root, &rel) {
            refuse(why);
            continue;
        }
        let path = root.join(&rel);
        let mode = e.header().mode().unwrap_or(0o644) & 0o777;
        let existing = path.symlink_metadata().ok();
        if rule == Git::Scrub {
            if existing.is_some_and(|m| !m.file_type().is_file()) {
                refuse("a file where a directory or symlink is (never followed)".into());
                continue;
            }
            let mut text = Vec::new();
            (&mut e)
                .take(MAX_GIT_CONFIG)
                .read_to_end(&mut text)
                .map_err(|err| io_err("read the archive for", err))?;
            let clean =
                crate::render::git_config::render(Some(&String::from_utf8_lossy(&text)), &[]);
            let mut f = match create_file(&path, 0o644) {
                Ok(f) => f,
                Err(err) => {
                    refuse(err.to_string());
                    continue;
                }
            };
            f.write_all(clean.as_bytes())
                .map_err(|err| io_err("write", err))?;
            report.files += 1;
            report.scrubbed.push(rel);
            continue;
        }
        match kind {
            tar::EntryType::Directory => match existing {
                Some(m) if m.file_type().is_dir() => report.dirs += 1,
                Some(_) => refuse("a directory where a file or symlink is".into()),
                None => match std::fs::DirBuilder::new().mode(mode | 0o700).create(&path) {
                    Ok(()) => report.dirs += 1,
                    Err(err) => refuse(err.to_string()),
                },
            },
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if existing.is_some_and(|m| !m.file_type().is_file()) {
                    refuse("a file where a directory or symlink is (never followed)".into());
                    continue;
                }
                let mut f = match create_file(&path, mode) {
                    Ok(f) => f,
                    Err(err) => {
                        refuse(err.to_string());
                        continue;
                    }
                };
                let mtime = e.header().mtime().ok();
                io::copy(&mut e, &mut f).map_err(|err| io_err("write", err))?;
                f.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|err| io_err("write", err))?;
                // The time the agent last wrote it (build tools compare them).
                if let Some(t) = mtime {
                    let _ =
                        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t));
                }
                report.files += 1;
            }
            tar::EntryType::Link => {
                let target = e.link_name_bytes().map(|t| t.into_owned());
                let target = match target.as_deref().map(|t| relative(t, strip)) {
                    Some(Ok(Some(t))) => t,
                    Some(Err(why)) => {
                        refuse(format!("a hard link to {why}"));
                        continue;
                    }
                    _ => {
                        refuse("a hard link without a target".into());
                        continue;
                    }
                };
                if existing.is_some_and(|m| !m.file_type().is_file()) {
                    refuse("a file where a directory or symlink is (never followed)".into());
                    continue;
                }
                let data = match read_inside(root, &target) {
                    Ok(d) => d,
                    Err(err) => {
                        refuse(format!("a hard link to {}: {err}", target.display()));
                        continue;
                    }
                };
                let mut f = match create_file(&path, mode) {
                    Ok(f) => f,
                    Err(err) => {
                        refuse(err.to_string());
                        continue;
                    }
                };
                f.write_all(&data).map_err(|err| io_err("write", err))?;
                report.files += 1;
            }
            tar::EntryType::Symlink => {
                let Some(target) = e.link_name().ok().flatten().map(|t| t.into_owned()) else {
                    refuse("a symlink without a target".into());
                    continue;
                };
                if !stays_inside(&rel, &target) {
                    refuse(format!(
                        "a symlink to {} (outside the export directory)",
                        target.display()
                    ));
                    continue;
                }
                match existing {
                    Some(m) if m.file_type().is_dir() => {
                        refuse("a symlink where a directory is".into());
                        continue;
                    }
                    Some(_) => {
                        if let Err(err) = std::fs::remove_file(&path) {
                            refuse(err.to_string());
                            continue;
                        }
                    }
                    None => {}
                }
                match std::os::unix::fs::symlink(&target, &path) {
                    Ok(()) => report.links += 1,
                    Err(err) => refuse(err.to_string()),
                }
            }
            other => refuse(format!(
                "a {} (only files, directories and links are exported)",
                kind_name(other)
            )),
        }
    }
    Ok(report)
}

fn kind_name(k: tar::EntryType) -> &'static str {
    match k {
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "FIFO",
        _ => "special entry",
    }
}

/// A blocking `Read` over chunks sent from async code (the engine's archive
/// stream), so the extraction runs on a blocking thread without holding the
/// whole archive in memory. The stream ends when the sender is dropped.
pub struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    at: usize,
}

impl ChunkReader {
    /// A reader and the sender that feeds it (at most `depth` chunks queued).
    pub fn new(depth: usize) -> (tokio::sync::mpsc::Sender<Vec<u8>>, ChunkReader) {
        let (tx, rx) = tokio::sync::mpsc::channel(depth);
        (
            tx,
            ChunkReader {
                rx,
                buf: Vec::new(),
                at: 0,
            },
        )
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    self.buf = b;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
