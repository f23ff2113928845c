//! Images: checks that every image of a plan is present and builds the ones
//! `docker/build-images.sh` knows when missing; builds the agent's own image
//! (`agents.<a>.build`) from its context archive when its content-hash tag is
//! absent. Nothing is ever pulled.
//!
//! Must never: pull from a registry, or start a bottle on a missing image.

use std::path::PathBuf;

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;

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

/// Builds the agent's image from `context` (the archive of `crate::build`)
/// unless its tag exists; progress lines show the builder's steps. Returns
/// whether it built.
pub async fn build_agent(
    d: &Docker,
    plan: &Plan,
    context: Option<&[u8]>,
    progress: &Progress,
) -> Result<bool, ApplyError> {
    let (Some(b), Some(context)) = (&plan.build, context) else {
        return Ok(false);
    };
    if d.inspect_image(&b.tag).await.is_ok() {
        progress.note(&format!(
            "agent image {} is up to date: build skipped",
            b.tag
        ));
        return Ok(false);
    }
    let step = progress.step(&format!(
        "building agent image {} from {}",
        b.tag,
        b.dockerfile.display()
    ));
    let opts = BuildImageOptions {
        dockerfile: crate::build::DOCKERFILE.into(),
        t: Some(b.tag.clone()),
        rm: true,
        forcerm: true,
        labels: Some(HashMap::from([(
            "bottle.build".to_string(),
            plan.agent.clone(),
        )])),
        ..Default::default()
    };
    let mut s = d.build_image(
        opts,
        None,
        Some(bollard::body_full(context.to_vec().into())),
    );
    let mut last = Vec::new();
    while let Some(item) = s.next().await {
        let info = item.map_err(|e| {
            ApplyError::Runtime(format!(
                "building {} from {} failed: {e}; fix: make `docker build -f {} {}` work (only local base images can be used; nothing is pulled from a registry here)",
                b.tag,
                b.dockerfile.display(),
                b.dockerfile.display(),
                b.context.display()
            ))
        })?;
        if let Some(line) = info
            .stream
            .as_deref()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
        {
            // The builder's steps as progress lines; command output only on failure.
            if line.starts_with("Step ") {
                progress.note(&format!("build: {line}"));
            }
            last.push(line.to_string());
            if last.len() > 20 {
                last.remove(0);
            }
        }
        if let Some(e) = info.error_detail.and_then(|e| e.message) {
            return Err(ApplyError::Runtime(format!(
                "building {} from {} failed: {e}\n{}",
                b.tag,
                b.dockerfile.display(),
                last.join("\n")
            )));
        }
    }
    if d.inspect_image(&b.tag).await.is_err() {
        return Err(ApplyError::Runtime(format!(
            "building {} ended without the image:\n{}",
            b.tag,
            last.join("\n")
        )));
    }
    step.done();
    Ok(true)
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
