//! Files in and out of containers: the tar archives apply copies into a
//! container (plan files, skill trees, the workspace), and one file read
//! back out of a created container.
//!
//! Must never: follow a symlink of a host tree (a skill could pull in any
//! host file), or write an entry the caller did not name.

use std::io::Read;

use bollard::Docker;
use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use futures_util::StreamExt;

use super::engine::{ApplyError, docker_err};

/// One entry of the archive copied into a container.
pub struct TarEntry {
    /// Relative to `/` (no leading `/`).
    pub path: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub kind: EntryKind,
}

pub enum EntryKind {
    File(Vec<u8>),
    Dir,
    Symlink(std::path::PathBuf),
}

impl TarEntry {
    pub fn file(path: impl Into<String>, mode: u32, uid: u64, gid: u64, data: Vec<u8>) -> Self {
        TarEntry {
            path: path.into(),
            mode,
            uid,
            gid,
            kind: EntryKind::File(data),
        }
    }

    pub(super) fn dir(path: String, mode: u32, uid: u64, gid: u64) -> Self {
        TarEntry {
            path,
            mode,
            uid,
            gid,
            kind: EntryKind::Dir,
        }
    }
}

/// The entries of a host directory under `prefix`, sorted, owned by
/// `uid:gid`. Symlinks are kept as links and never followed, so a skill
/// cannot pull a host file from outside its directory into the agent; other
/// special files are left out.
pub(super) fn tree_entries(
    root: &std::path::Path,
    prefix: &str,
    uid: u64,
    gid: u64,
    out: &mut Vec<TarEntry>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut items: Vec<_> = std::fs::read_dir(root)?.collect::<Result<_, _>>()?;
    items.sort_by_key(|e| e.file_name());
    for e in items {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}/{name}");
        let meta = std::fs::symlink_metadata(e.path())?;
        // Readable by the agent; executable bits kept.
        let mode = (meta.permissions().mode() & 0o755) | 0o400;
        let ft = meta.file_type();
        if ft.is_dir() {
            out.push(TarEntry::dir(path.clone(), mode | 0o700, uid, gid));
            tree_entries(&e.path(), &path, uid, gid, out)?;
        } else if ft.is_symlink() {
            out.push(TarEntry {
                path,
                mode: 0o777,
                uid,
                gid,
                kind: EntryKind::Symlink(std::fs::read_link(e.path())?),
            });
        } else if ft.is_file() {
            out.push(TarEntry::file(
                path,
                mode,
                uid,
                gid,
                std::fs::read(e.path())?,
            ));
        }
    }
    Ok(())
}

/// A tar of the entries. Directory entries only for directories the plan
/// creates (an existing directory keeps its owner when none names it).
pub fn files_tar(files: &[TarEntry]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for e in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(0);
        match &e.kind {
            EntryKind::File(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, &e.path, &data[..])?;
            }
            EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, &e.path, std::io::empty())?;
            }
            EntryKind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, &e.path, target)?;
            }
        }
    }
    b.into_inner()
}

pub(crate) async fn upload(d: &Docker, name: &str, tar: Vec<u8>) -> Result<(), ApplyError> {
    d.upload_to_container(
        name,
        Some(UploadToContainerOptions {
            path: "/".into(),
            ..Default::default()
        }),
        bollard::body_full(tar.into()),
    )
    .await
    .map_err(docker_err(format!("copy files into {name}")))
}

/// One file's content from a (created) container.
pub(crate) async fn download_file(
    d: &Docker,
    name: &str,
    path: &str,
) -> Result<Vec<u8>, ApplyError> {
    let mut s = d.download_from_container(
        name,
        Some(DownloadFromContainerOptions { path: path.into() }),
    );
    let mut tar = Vec::new();
    while let Some(chunk) = s.next().await {
        tar.extend_from_slice(&chunk.map_err(docker_err(format!("read {path} from {name}")))?);
    }
    let mut a = tar::Archive::new(&tar[..]);
    let entries = a.entries().map_err(|source| ApplyError::Io {
        what: format!("read {path} archive"),
        source,
    })?;
    for e in entries {
        let mut e = e.map_err(|source| ApplyError::Io {
            what: format!("read {path} archive"),
            source,
        })?;
        if e.header().entry_type().is_file() {
            let mut v = Vec::new();
            e.read_to_end(&mut v).map_err(|source| ApplyError::Io {
                what: format!("read {path}"),
                source,
            })?;
            return Ok(v);
        }
    }
    Err(ApplyError::Runtime(format!(
        "{path} in image of {name} is not a regular file"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Path, mode, owner and whether it is a symlink, of each entry of a tar.
    fn listing(t: &[u8]) -> Vec<(String, u32, u64, bool)> {
        let mut a = tar::Archive::new(t);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.entry_type().is_symlink(),
                )
            })
            .collect()
    }

    /// A skill's files reach the agent owned by it; a symlink inside the
    /// skill stays a link, so the host file it names is never read.
    #[test]
    fn tree_entries_keep_symlinks_as_links_and_own_everything() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("host-secret");
        std::fs::write(&secret, "HOST-SECRET-NEEDLE").unwrap();
        let skill = d.path().join("skill");
        std::fs::create_dir_all(skill.join("sub")).unwrap();
        std::fs::write(skill.join("sub/SKILL.md"), "s").unwrap();
        std::os::unix::fs::symlink(&secret, skill.join("leak")).unwrap();
        let mut v = Vec::new();
        tree_entries(&skill, "home/agent/.claude/skills/x", 1000, 1000, &mut v).unwrap();
        let t = files_tar(&v).unwrap();
        assert!(!String::from_utf8_lossy(&t).contains("HOST-SECRET-NEEDLE"));
        let got: Vec<(String, u64, bool)> = listing(&t)
            .into_iter()
            .map(|(path, _, uid, link)| (path, uid, link))
            .collect();
        assert_eq!(
            got,
            vec![
                ("home/agent/.claude/skills/x/leak".to_string(), 1000, true),
                ("home/agent/.claude/skills/x/sub".to_string(), 1000, false),
                (
                    "home/agent/.claude/skills/x/sub/SKILL.md".to_string(),
                    1000,
                    false
                ),
            ]
        );
    }

    #[test]
    fn files_tar_has_no_directory_entries() {
        let t = files_tar(&[TarEntry::file(
            "etc/x/y",
            0o600,
            65534,
            65534,
            b"k".to_vec(),
        )])
        .unwrap();
        let e: Vec<_> = listing(&t)
            .into_iter()
            .map(|(path, mode, uid, _)| (path, mode, uid))
            .collect();
        assert_eq!(e, vec![("etc/x/y".to_string(), 0o600, 65534)]);
    }
}
