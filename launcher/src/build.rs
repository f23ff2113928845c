//! The build context of an agent image (`agents.<a>.build`): the context
//! directory and the Dockerfile as one deterministic tar (sorted, mtime 0,
//! owner 0), and the image tag named by its content hash
//! (`bottle-agent-<agent>:<first 16 hex of sha256>`), so an unchanged build is
//! recognised by its tag and skipped.
//!
//! Owns: what goes into the context. Symlinks stay links (never followed, so
//! nothing outside the context is sent); special files are left out;
//! `.dockerignore` is not read (the whole directory is sent).
//!
//! Must never: talk to Docker (`docker/images.rs` builds), or read outside
//! the context directory and the Dockerfile.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::model::AgentBuild;

/// The Dockerfile's name inside the context archive.
pub const DOCKERFILE: &str = ".bottle.Dockerfile";

/// A context ready to send, and its tag.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub tag: String,
    pub tar: Vec<u8>,
}

/// Reads the context and the Dockerfile; errors name the path.
pub fn context(agent: &str, b: &AgentBuild) -> Result<BuildContext, String> {
    let mut t = tar::Builder::new(Vec::new());
    let err = |p: &Path, e: std::io::Error| format!("cannot read {}: {e}", p.display());
    add_dir(&mut t, &b.context, "").map_err(|(p, e)| err(&p, e))?;
    let df = std::fs::read(&b.dockerfile).map_err(|e| err(&b.dockerfile, e))?;
    let mut h = header(0o644);
    h.set_size(df.len() as u64);
    t.append_data(&mut h, DOCKERFILE, &df[..])
        .map_err(|e| err(&b.dockerfile, e))?;
    let tar = t.into_inner().map_err(|e| err(&b.context, e))?;
    let hash = Sha256::digest(&tar);
    let hex: String = hash.iter().take(8).map(|x| format!("{x:02x}")).collect();
    Ok(BuildContext {
        tag: format!("bottle-agent-{agent}:{hex}"),
        tar,
    })
}

fn header(mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

type IoAt = (std::path::PathBuf, std::io::Error);

fn add_dir(t: &mut tar::Builder<Vec<u8>>, dir: &Path, prefix: &str) -> Result<(), IoAt> {
    use std::os::unix::fs::PermissionsExt;
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    let mut items: Vec<_> = std::fs::read_dir(dir)
        .map_err(at(dir))?
        .collect::<Result<_, _>>()
        .map_err(at(dir))?;
    items.sort_by_key(|e| e.file_name());
    for e in items {
        let path = e.path();
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        let meta = std::fs::symlink_metadata(&path).map_err(at(&path))?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        if ft.is_dir() {
            let mut h = header(mode);
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            t.append_data(&mut h, format!("{name}/"), std::io::empty())
                .map_err(at(&path))?;
            add_dir(t, &path, &format!("{name}/"))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(at(&path))?;
            let mut h = header(0o777);
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            t.append_link(&mut h, &name, target).map_err(at(&path))?;
        } else if ft.is_file() {
            let data = std::fs::read(&path).map_err(at(&path))?;
            let mut h = header(mode);
            h.set_size(data.len() as u64);
            t.append_data(&mut h, &name, &data[..]).map_err(at(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_follows_content_only() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Dockerfile"), "FROM bottle-agent\n").unwrap();
        std::fs::write(d.path().join("agent.sh"), "echo hi\n").unwrap();
        let b = AgentBuild {
            dockerfile: d.path().join("Dockerfile"),
            context: d.path().to_path_buf(),
        };
        let one = context("stub", &b).unwrap();
        assert!(one.tag.starts_with("bottle-agent-stub:"), "{}", one.tag);
        assert_eq!(one.tag.len(), "bottle-agent-stub:".len() + 16);
        // Same bytes, later mtime: same tag.
        std::fs::write(d.path().join("agent.sh"), "echo hi\n").unwrap();
        assert_eq!(context("stub", &b).unwrap().tag, one.tag);
        std::fs::write(d.path().join("agent.sh"), "echo bye\n").unwrap();
        assert_ne!(context("stub", &b).unwrap().tag, one.tag);
        std::fs::write(d.path().join("agent.sh"), "echo hi\n").unwrap();
        std::fs::write(d.path().join("Dockerfile"), "FROM bottle-agent:latest\n").unwrap();
        assert_ne!(context("stub", &b).unwrap().tag, one.tag);
        let missing = AgentBuild {
            dockerfile: d.path().join("nope"),
            context: d.path().to_path_buf(),
        };
        let e = context("stub", &missing).unwrap_err();
        assert!(e.contains("cannot read") && e.contains("nope"), "{e}");
    }
}
