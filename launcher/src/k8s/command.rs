//! `bottle render --format k8s`: load and plan with a stable id (no engine, no
//! token value), read the agent's host trees, render the objects, write them
//! and say what the user must create. Also `bottle images push`'s front:
//! which images (the offline ones, or a bottle's plan) go to the registry.
//!
//! Must never: read a token value unless `--include-secrets` asks, or write a
//! key into a file it did not create.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cli::{Failure, env_lookup, load, usage};
use crate::plan;

/// The flags of `bottle render` beyond the manifest and agent.
pub struct RenderArgs {
    pub namespace: Option<String>,
    pub id: Option<String>,
    pub service_cidr: String,
    pub out: Option<PathBuf>,
    pub mint_cas: Option<PathBuf>,
    pub include_secrets: bool,
    pub image_registry: Option<String>,
}

/// The plan `render` and `images push` read: a stable id (`--id`, else
/// `<bottle>-<first 8 hex of sha256("<bottle>/<agent>")>`), no engine, and
/// no token value (the cluster gets them from a Secret the user creates, so
/// the plan is told every token_ref is present).
pub fn plan_for(manifest: &Path, agent: &str, id: Option<String>) -> Result<plan::Plan, Failure> {
    use sha2::Digest;
    let (m, ws, _) = load(manifest, agent, Vec::new())?;
    let bottle = m
        .agents
        .get(agent)
        .map(|a| a.bottle.clone())
        .unwrap_or_else(|| "bottle".into());
    let id = id.unwrap_or_else(|| {
        let h = sha2::Sha256::digest(format!("{bottle}/{agent}").as_bytes());
        format!("{bottle}-{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3])
    });
    let ws = ws.map(|w| plan::WorkspacePlan {
        source: w.root.clone(),
        files: w.files.len(),
        warnings: w.warnings.clone(),
    });
    let no_tokens = |_: &str| Some("not-read-by-render".to_string());
    let mut p =
        plan::plan(&m, agent, &id, &no_tokens, &|p: &Path| p.exists(), ws).map_err(usage)?;
    // Approvals kept for the bottle's name (`bottle supervise`, on Docker or
    // `--k8s`) apply here as they do to `bottle run`.
    for w in crate::approvals::fold_into(&mut p, &m) {
        eprintln!("bottle: warning: {w}");
    }
    for a in &p.approved_earlier {
        eprintln!(
            "bottle: includes approval {} ({}) kept for bottle {} (`bottle approvals list`)",
            a.id, a.host, p.bottle
        );
    }
    Ok(p)
}

/// `bottle render --format k8s`: plan with a stable id, render, write.
pub fn render(manifest: &Path, agent: &str, a: RenderArgs) -> Result<i32, Failure> {
    let RenderArgs {
        namespace,
        id,
        service_cidr,
        out,
        mint_cas,
        include_secrets,
        image_registry,
    } = a;
    let p = plan_for(manifest, agent, id)?;
    let o = crate::k8s::Options {
        namespace,
        service_cidr,
        token_secret: None,
        image_registry,
        host: crate::k8s::host::read(&p).map_err(usage)?,
        decisions: BTreeMap::new(),
    };
    let r = crate::k8s::render(&p, &o).map_err(usage)?;
    let io = |e: std::io::Error| Failure {
        code: 1,
        message: format!("cannot write the render: {e}"),
    };
    let mint = || {
        let cas = crate::pki::mint_bottle_cas(&p.id).map_err(|e| Failure {
            code: 1,
            message: e.to_string(),
        })?;
        // The agent's bundle.pem: this host's system bundle plus the inner CA
        // (the Docker bottle uses the image's own bundle).
        let system =
            std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
        crate::k8s::ca_secrets(&p, &o, &cas, &system).map_err(usage)
    };
    let secrets = if include_secrets {
        eprintln!(
            "--include-secrets: the output holds token values and CA keys; for throwaway clusters only"
        );
        let mut values = BTreeMap::new();
        for t in &p.token_slots {
            let v = env_lookup(&t.token_ref).filter(|v| !v.is_empty()).ok_or_else(|| {
                usage(format!(
                    "--include-secrets: host variable `{}` (slot {}) is not set; fix: export it, or render without --include-secrets",
                    t.token_ref, t.slot
                ))
            })?;
            values.insert(t.slot.clone(), v);
        }
        let mut y = crate::k8s::token_secret(&p, &o, &values).map_err(usage)?;
        y.push_str(&mint()?);
        Some(y)
    } else {
        None
    };
    // Token values and CA keys: a fresh 0600 file renamed over the name, never
    // an existing file reopened (a planted file would keep its owner and mode).
    let write_private = |path: &Path, yaml: &str| -> Result<(), Failure> {
        bottle_pki::write_new(path, yaml.as_bytes(), 0o600, bottle_pki::Existing::Replace).map_err(
            |e| Failure {
                code: 1,
                message: format!("cannot write the render: {e}"),
            },
        )
    };
    match out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(io)?;
            for (file, yaml) in r.files() {
                std::fs::write(dir.join(file), yaml).map_err(io)?;
            }
            if let Some(y) = &secrets {
                write_private(&dir.join("secret.yaml"), y)?;
            }
        }
        None => print!("{}{}", r.yaml(), secrets.as_deref().unwrap_or("")),
    }
    if let Some(dir) = mint_cas {
        let yaml = mint()?;
        std::fs::create_dir_all(&dir).map_err(io)?;
        let path = dir.join("ca-secrets.yaml");
        write_private(&path, &yaml)?;
        eprintln!(
            "minted the CAs into {} (private keys: apply with `kubectl apply -f`, then delete the file)",
            path.display()
        );
    }
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    if !p.token_slots.is_empty() && !include_secrets {
        eprintln!("create the token Secret (values from your shell, never in the YAML):");
        eprintln!("  {}", r.token_secret_command(&p));
    }
    for (name, keys) in &r.secrets {
        if *name != r.token_secret {
            eprintln!(
                "needs Secret {name} with key(s) {} (docs/kubernetes.md)",
                keys.join(", ")
            );
        }
    }
    Ok(0)
}

/// `bottle images push --registry R [--manifest F --agent A]`: the offline
/// images, or with a manifest the images of that bottle's plan (what
/// `render --image-registry R` references), pushed; one line per image on
/// stdout: `<R/image:tag>@<digest>`.
pub async fn images_push(
    registry: &str,
    manifest: Option<(&Path, &str)>,
    progress: &crate::progress::Progress,
) -> Result<i32, Failure> {
    crate::docker::push::check_registry(registry)?;
    let mut images: Vec<String> = match manifest {
        Some((m, a)) => plan_for(m, a, None)?
            .containers
            .iter()
            .map(|c| c.image.clone())
            .collect(),
        None => crate::docker::push::OFFLINE_IMAGES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    images.sort();
    images.dedup();
    let d = crate::docker::connect().await?;
    for p in crate::docker::push::push(&d, registry, &images, progress).await? {
        println!("{}@{}", p.target, p.digest);
    }
    Ok(0)
}
