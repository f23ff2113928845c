//! Images: checks that every image of a plan is present and builds the ones
//! `docker/build-images.sh` knows when missing. Nothing is ever pulled.
//!
//! Must never: pull from a registry, or start a bottle on a missing image.

use std::path::PathBuf;

use bollard::Docker;

use super::engine::ApplyError;
use crate::plan::Plan;
use crate::progress::Progress;

/// Images `docker/build-images.sh` builds.
const BUILDABLE: &[&str] = &[
    "bottle-agent",
    "bottle-squid",
    "egress-proxy",
    "bottle-git-gate",
];

/// The build script: `$BOTTLE_BUILD_IMAGES`, else the source tree's copy.
pub fn build_script() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BOTTLE_BUILD_IMAGES").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docker/build-images.sh");
    p.exists().then_some(p)
}

fn repo(image: &str) -> &str {
    image
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map(|(r, _)| r)
        .unwrap_or(image)
}

/// Ensures every image of the plan exists, building what can be built.
pub async fn ensure(d: &Docker, plan: &Plan, progress: &Progress) -> Result<(), ApplyError> {
    let mut missing = Vec::new();
    for c in &plan.containers {
        if d.inspect_image(&c.image).await.is_err() && !missing.contains(&c.image) {
            missing.push(c.image.clone());
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let (buildable, other): (Vec<String>, Vec<String>) = missing
        .into_iter()
        .partition(|i| BUILDABLE.contains(&repo(i)));
    if let Some(img) = other.first() {
        let how = if repo(img).contains("pipelock") {
            format!(
                "pipelock cannot be built here: on a machine with registry access run `docker pull {img} && docker save {img} -o pipelock.tar`, copy the file, then `docker load -i pipelock.tar`; or use `outer_proxy: squid`"
            )
        } else {
            "build or `docker load` it first (bottle never pulls)".to_string()
        };
        return Err(ApplyError::Config(format!(
            "image {img} is not present; fix: {how}"
        )));
    }
    let Some(script) = build_script() else {
        return Err(ApplyError::Config(format!(
            "images {} are missing and docker/build-images.sh was not found; fix: run docker/build-images.sh from the source tree, or set BOTTLE_BUILD_IMAGES to its path",
            buildable.join(", ")
        )));
    };
    let names: Vec<&str> = buildable.iter().map(|i| repo(i)).collect();
    let step = progress.step(&format!(
        "building images {} (offline, a few minutes the first time)",
        names.join(", ")
    ));
    let st = tokio::process::Command::new("bash")
        .arg(&script)
        .args(&names)
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .map_err(|source| ApplyError::Io {
            what: format!("run {}", script.display()),
            source,
        })?;
    if !st.success() {
        return Err(ApplyError::Runtime(format!(
            "{} {} failed (see its messages above)",
            script.display(),
            names.join(" ")
        )));
    }
    step.done();
    Ok(())
}
