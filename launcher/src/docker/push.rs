//! `bottle images push --registry R`: tags local images as
//! `k8s::image_ref(R, image)` (the very names `bottle render --image-registry R`
//! writes) and pushes them through the engine, returning each pushed digest.
//!
//! Owns: the registry syntax check, the list of offline-built images, and
//! the messages when the registry refuses.
//!
//! Must never: pull, build, remove an image, or send credentials (only
//! registries that take anonymous pushes from this engine are supported).

use bollard::Docker;
use bollard::query_parameters::{PushImageOptions, TagImageOptions};
use futures_util::StreamExt;

use super::engine::{ApplyError, docker_err};
use crate::progress::Progress;

/// The images `docker/build-images.sh` builds offline, pushed when no
/// manifest narrows the set.
pub const OFFLINE_IMAGES: &[&str] = &[
    "bottle-agent:latest",
    "bottle-git-gate:latest",
    "bottle-squid:latest",
    "bottle-supervise:latest",
    "egress-proxy:latest",
];

/// One image in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The local image (`egress-proxy:latest`).
    pub source: String,
    /// What the render references (`R/egress-proxy:latest`).
    pub target: String,
    /// `sha256:...`, the manifest digest the registry stored.
    pub digest: String,
}

/// Checks `R`: `host[:port][/path]`, no scheme, no tag, no digest, the path
/// in lowercase repository characters. Returns it without a trailing `/`.
pub fn check_registry(r: &str) -> Result<String, ApplyError> {
    let bad = |why: &str| {
        ApplyError::Config(format!(
            "--registry {r:?}: {why}; fix: give host[:port][/path], e.g. 127.0.0.1:5000 or registry.example:5000/team"
        ))
    };
    let r = r.trim_end_matches('/');
    if r.is_empty() {
        return Err(bad("empty"));
    }
    if r.contains("://") {
        return Err(bad(
            "no scheme (the engine picks https, or http for insecure registries)",
        ));
    }
    let mut parts = r.split('/');
    let host = parts.next().unwrap_or_default();
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !host_ok {
        return Err(bad(
            "the host part has a character a registry host cannot have",
        ));
    }
    for p in parts {
        let ok = !p.is_empty()
            && p.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            })
            && p.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(bad(&format!(
                "path component {p:?} is not a repository name (lowercase letters, digits, . _ -; no tag or digest)"
            )));
        }
    }
    Ok(r.to_string())
}

/// `repo:tag` of a local image (`latest` when it has none); an image pinned
/// by digest has no tag to push.
fn split_tag(image: &str) -> Result<(&str, &str), ApplyError> {
    if image.contains('@') {
        return Err(ApplyError::Config(format!(
            "{image}: pinned by digest, there is no local tag to push; fix: push it with `docker tag`/`docker push` yourself, or name it by tag in the manifest"
        )));
    }
    Ok(image
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .unwrap_or((image, "latest")))
}

/// The digest in the engine's last push line (`latest: digest: sha256:... size: N`).
fn digest_of(line: &str) -> Option<String> {
    let rest = line.split("digest: ").nth(1)?;
    let d = rest.split_whitespace().next()?;
    (d.starts_with("sha256:") && d.len() == 71).then(|| d.to_string())
}

/// Tags and pushes every image; all must be present locally (checked before
/// the first push). Progress shows one line per layer as it completes.
pub async fn push(
    d: &Docker,
    registry: &str,
    images: &[String],
    progress: &Progress,
) -> Result<Vec<Pushed>, ApplyError> {
    let registry = check_registry(registry)?;
    let mut missing = Vec::new();
    for i in images {
        split_tag(i)?;
        if d.inspect_image(i).await.is_err() {
            missing.push(i.as_str());
        }
    }
    if !missing.is_empty() {
        return Err(ApplyError::Config(format!(
            "not on this engine: {}; fix: docker/build-images.sh (the offline images), `bottle build` (an agent's build image), or `docker load` the others; nothing is pulled",
            missing.join(", ")
        )));
    }
    let mut out = Vec::new();
    for source in images {
        let (repo, tag) = split_tag(source)?;
        let target_repo = crate::k8s::image_ref(Some(&registry), repo);
        let target = format!("{target_repo}:{tag}");
        d.tag_image(
            source,
            Some(TagImageOptions {
                repo: Some(target_repo.clone()),
                tag: Some(tag.to_string()),
            }),
        )
        .await
        .map_err(docker_err(format!("tag {source} as {target}")))?;
        let step = progress.step(&format!("pushing {target}"));
        let mut s = d.push_image(
            &target_repo,
            Some(PushImageOptions {
                tag: Some(tag.to_string()),
                platform: None,
            }),
            None,
        );
        let mut digest = None;
        while let Some(item) = s.next().await {
            let info = item.map_err(|e| refused(&registry, &target, &e.to_string()))?;
            let status = info.status.unwrap_or_default();
            if let Some(dg) = digest_of(&status) {
                digest = Some(dg);
            } else if matches!(status.as_str(), "Pushed" | "Layer already exists") {
                progress.note(&format!("  {target}: layer {status}"));
            }
        }
        let digest = match digest {
            Some(dg) => dg,
            None => repo_digest(d, &target, &target_repo).await?,
        };
        step.done();
        out.push(Pushed {
            source: source.clone(),
            target,
            digest,
        });
    }
    Ok(out)
}

/// The digest the engine recorded for `target` (`RepoDigests`).
async fn repo_digest(d: &Docker, target: &str, target_repo: &str) -> Result<String, ApplyError> {
    let i = d
        .inspect_image(target)
        .await
        .map_err(docker_err(format!("inspect {target}")))?;
    i.repo_digests
        .unwrap_or_default()
        .iter()
        .find_map(|rd| {
            rd.strip_prefix(&format!("{target_repo}@"))
                .map(String::from)
        })
        .ok_or_else(|| {
            ApplyError::Runtime(format!(
                "pushed {target} but the engine reports no digest for it"
            ))
        })
}

fn refused(registry: &str, target: &str, e: &str) -> ApplyError {
    ApplyError::Runtime(format!(
        "registry {registry} refused {target}: {e}; fix: check that the registry runs and the Docker engine reaches it (`curl http://{registry_host}/v2/`); a plain-HTTP registry outside 127.0.0.0/8 must be in the engine's `insecure-registries` (/etc/docker/daemon.json); a registry that needs a login is not supported by this command (use `docker login` and `docker push`)",
        registry_host = registry.split('/').next().unwrap_or(registry)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_syntax_is_checked() {
        assert_eq!(check_registry("127.0.0.1:5000/").unwrap(), "127.0.0.1:5000");
        assert_eq!(
            check_registry("registry.example:5000/team/x").unwrap(),
            "registry.example:5000/team/x"
        );
        for bad in [
            "",
            "http://127.0.0.1:5000",
            "127.0.0.1:5000/Team",
            "127.0.0.1:5000/team:v1",
            "host with space",
            "r//x",
        ] {
            let e = check_registry(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().contains("fix:"), "{e}");
        }
    }

    #[test]
    fn tags_and_digests_are_read() {
        assert_eq!(
            split_tag("egress-proxy:latest").unwrap(),
            ("egress-proxy", "latest")
        );
        assert_eq!(
            split_tag("localhost:5000/x").unwrap(),
            ("localhost:5000/x", "latest")
        );
        assert_eq!(
            split_tag("ghcr.io/a/b:2.3.0").unwrap(),
            ("ghcr.io/a/b", "2.3.0")
        );
        assert!(split_tag("x@sha256:abc").is_err());
        let dg = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            digest_of(&format!("latest: digest: {dg} size: 528")),
            Some(dg)
        );
        assert_eq!(digest_of("Pushed"), None);
    }
}
