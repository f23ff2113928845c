//! The agent's host trees for Kubernetes: reads the prompt file and every
//! skill directory the plan names, so `render` (pure) can put them into
//! ConfigMaps. Called by `command` before `render`; the only code of the
//! render that reads a host file.
//!
//! Owns: the 1 MiB limit of one ConfigMap (the API server refuses a larger
//! one), and what a tree may hold: regular files and directories (empty ones
//! are not carried), never a symlink, device or socket.
//!
//! Must never: follow a symlink, read past the limit, or read a host file
//! the plan does not name for the agent (git keys and trust files stay
//! Secrets the user creates).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::plan::{Plan, RoleName, Source};
use crate::render::paths;

/// The API server's limit for one ConfigMap's data.
pub const CONFIG_MAP_LIMIT: usize = 1024 * 1024;

/// One file of a tree: its path relative to the tree, bytes, and whether
/// it is executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    pub rel: String,
    pub bytes: Vec<u8>,
    pub executable: bool,
}

/// What the render carries from the host: the prompt file's text and the
/// skill trees, by the host path the plan names.
#[derive(Debug, Clone, Default)]
pub struct Host {
    pub prompt: Option<String>,
    pub trees: BTreeMap<PathBuf, Vec<TreeFile>>,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{path}: cannot read it for the Kubernetes render: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: the prompt file is not UTF-8 text; fix: save it as UTF-8")]
    PromptNotText(PathBuf),
    #[error(
        "{0}: a symlink (or device, socket, fifo) in a skill; a ConfigMap carries regular files only; fix: replace it with the file it points to, or remove it"
    )]
    NotRegular(PathBuf),
    #[error(
        "{path}: more than {limit} bytes ({what}); a ConfigMap holds at most 1 MiB and the API server refuses a larger one; fix: make it smaller, or mount it from a volume you provide"
    )]
    TooLarge {
        path: PathBuf,
        what: String,
        limit: usize,
    },
}

/// Reads what the plan's agent takes from the host.
pub fn read(p: &Plan) -> Result<Host, HostError> {
    let mut host = Host::default();
    let Some(agent) = p.containers.iter().find(|c| c.role == RoleName::Agent) else {
        return Ok(host);
    };
    for f in &agent.files {
        match &f.source {
            Source::HostFiles(files) if f.path == paths::AGENT_PROMPT => {
                let mut bytes = Vec::new();
                for file in files {
                    bytes.extend(read_limited(file, CONFIG_MAP_LIMIT)?);
                }
                if bytes.len() > CONFIG_MAP_LIMIT {
                    return Err(too_large(&files[0], bytes.len()));
                }
                let text = String::from_utf8(bytes)
                    .map_err(|_| HostError::PromptNotText(files[0].clone()))?;
                host.prompt = Some(text);
            }
            Source::HostTree(root) => {
                let mut out = Vec::new();
                let mut total = 0;
                walk(root, root, &mut out, &mut total)?;
                out.sort_by(|a, b| a.rel.cmp(&b.rel));
                host.trees.insert(root.clone(), out);
            }
            _ => {}
        }
    }
    Ok(host)
}

fn too_large(path: &Path, n: usize) -> HostError {
    HostError::TooLarge {
        path: path.to_path_buf(),
        what: format!("{n} read"),
        limit: CONFIG_MAP_LIMIT,
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HostError + '_ {
    move |source| HostError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads at most `limit + 1` bytes (enough to know it is too large).
fn read_limited(path: &Path, limit: usize) -> Result<Vec<u8>, HostError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut bytes = Vec::new();
    f.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    Ok(bytes)
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<TreeFile>,
    total: &mut usize,
) -> Result<(), HostError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        // symlink_metadata: a link is seen as a link, never followed.
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            walk(root, &path, out, total)?;
        } else if meta.is_file() {
            let bytes = read_limited(&path, CONFIG_MAP_LIMIT - *total)?;
            *total += bytes.len();
            if *total > CONFIG_MAP_LIMIT {
                return Err(HostError::TooLarge {
                    path: root.to_path_buf(),
                    what: format!("the skill's files, at {}", path.display()),
                    limit: CONFIG_MAP_LIMIT,
                });
            }
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            out.push(TreeFile {
                rel,
                bytes,
                executable: meta.permissions().mode() & 0o111 != 0,
            });
        } else {
            return Err(HostError::NotRegular(path));
        }
    }
    Ok(())
}
