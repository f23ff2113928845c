//! Writing key and certificate files.
//!
//! Owns: creating a file so that nobody else can own it, hold it open or point
//! it elsewhere: exclusively (`O_CREAT|O_EXCL`, which also refuses a symlink,
//! dangling or not), with `O_NOFOLLOW`, with its final mode from the first
//! byte; or, when the caller asks to replace, through a new exclusive temp file
//! in the same directory renamed over the old name (a reader of the old file
//! never sees the new bytes; a symlink at the name is replaced, not followed).
//! Must never: truncate or chmod a file that already exists.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Errors writing a file; they name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "{path} already exists; remove it or pass --force to replace it (the old file is not opened, the new one is renamed into place)"
    )]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to do when the name is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Refuse,
    Replace,
}

/// Writes `data` to `path` with `mode` (e.g. 0o600 for a key).
pub fn write_new(
    path: &Path,
    data: &[u8],
    mode: u32,
    existing: Existing,
) -> Result<(), WriteError> {
    let io = |source| WriteError::Io {
        path: path.into(),
        source,
    };
    match existing {
        Existing::Refuse => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(mode)
                .open(path)
                .map_err(|source| match source.kind() {
                    std::io::ErrorKind::AlreadyExists => WriteError::Exists { path: path.into() },
                    _ => io(source),
                })?;
            // The umask may have removed bits; never added any.
            f.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(io)?;
            f.write_all(data).map_err(io)?;
            f.sync_all().map_err(io)
        }
        Existing::Replace => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            // tempfile creates with O_EXCL and mode 0600 under a random name.
            let mut tmp = tempfile::Builder::new()
                .prefix(".egress-new-")
                .permissions(std::fs::Permissions::from_mode(0o600))
                .tempfile_in(dir)
                .map_err(io)?;
            tmp.write_all(data).map_err(io)?;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(io)?;
            tmp.as_file().sync_all().map_err(io)?;
            tmp.persist(path).map_err(|e| io(e.error))?;
            Ok(())
        }
    }
}

/// A fresh directory only the current user can enter (mode 0700, random name
/// under the system temp dir), removed when the value is dropped.
pub fn private_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn refuse_keeps_a_planted_file_and_replace_swaps_the_inode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.pem");
        std::fs::write(&p, "planted").unwrap();
        let before = std::fs::metadata(&p).unwrap().ino();
        let err = write_new(&p, b"new", 0o600, Existing::Refuse).unwrap_err();
        assert!(matches!(err, WriteError::Exists { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "planted");
        write_new(&p, b"new", 0o600, Existing::Replace).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_ne!(m.ino(), before);
        assert_eq!(m.mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
    }

    #[test]
    fn private_dir_is_0700_and_random() {
        let a = private_dir("t-").unwrap();
        let b = private_dir("t-").unwrap();
        assert_ne!(a.path(), b.path());
        let m = std::fs::metadata(a.path()).unwrap();
        assert_eq!(m.mode() & 0o777, 0o700);
    }
}
