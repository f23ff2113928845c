//! Stopped bottles: what `bottle run` leaves on purpose (the agent's home and
//! workspace volumes) and the commands over them: `resume` (which bottle to
//! bring back, from the volume labels), `rm`, `export`, and the volume side
//! of `list` and `cleanup`.
//!
//! What a bottle id remembers lives only in its volumes' labels
//! (`bottle.id`, `bottle.role`, `bottle.bottle`, `bottle.agent`,
//! `bottle.manifest`): no file under the state root, never a secret.
//!
//! Must never: remove or resume a bottle whose `bottle run` still lives,
//! touch a volume without bottle's labels, or write an exported entry
//! anywhere but the export directory (`export`).

use std::path::{Path, PathBuf};

use crate::cli::Failure;
use crate::docker::teardown::{self, Found};
use crate::docker::{self, volumes};
use crate::manifest::Manifest;

/// A stopped bottle that `resume` can bring back.
#[derive(Debug)]
pub struct Resumable {
    pub id: String,
    pub manifest: PathBuf,
    pub agent: String,
    pub bottle: String,
}

fn fail(code: i32, message: String) -> Failure {
    Failure { code, message }
}

async fn found(id: &str) -> Result<(bollard::Docker, Option<Found>), Failure> {
    let d = docker::connect().await?;
    let all = teardown::find(&d).await?;
    Ok((d, all.into_iter().find(|f| f.id == id)))
}

fn unknown(id: &str) -> Failure {
    fail(
        2,
        format!("no bottle `{id}` on this engine; fix: `bottle list` shows the bottles there are"),
    )
}

fn running(f: &Found) -> Failure {
    fail(
        1,
        format!(
            "bottle {} is running (its `bottle run` is process {}); fix: use that session, or end its agent first",
            f.id,
            f.pid.unwrap_or(0)
        ),
    )
}

/// Which bottle `resume ID` brings back: refused when the id is unknown,
/// still running, left half torn down by a killed run, or lost a volume.
pub async fn locate(id: &str) -> Result<Resumable, Failure> {
    let (_, f) = found(id).await?;
    let f = f.ok_or_else(|| unknown(id))?;
    if f.alive() {
        return Err(running(&f));
    }
    if f.has_run_parts() {
        return Err(fail(
            1,
            format!(
                "bottle {id} has leftovers of a `bottle run` that is gone (containers, networks, rules or its state directory); fix: `bottle cleanup --yes --id {id}` removes them and keeps the volumes, then `bottle resume {id}`"
            ),
        ));
    }
    for role in ["home", "workspace"] {
        if !f.volumes.iter().any(|v| v.role == role) {
            return Err(fail(
                1,
                format!(
                    "bottle {id} has no {role} volume any more; fix: `bottle rm {id}` removes what is left"
                ),
            ));
        }
    }
    let v = &f.volumes[0];
    if v.manifest.is_empty() || v.agent.is_empty() || v.bottle.is_empty() {
        return Err(fail(
            1,
            format!(
                "volume {} does not say which manifest and agent it belongs to; fix: `bottle export {id} --to DIR` to keep the workspace, then `bottle rm {id}`",
                v.name
            ),
        ));
    }
    Ok(Resumable {
        id: id.to_string(),
        manifest: PathBuf::from(&v.manifest),
        agent: v.agent.clone(),
        bottle: v.bottle.clone(),
    })
}

/// The manifest (as it is now) still has the agent, in the same bottle.
pub fn check_manifest(r: &Resumable, m: &Manifest) -> Result<(), Failure> {
    match m.agents.get(&r.agent) {
        Some(a) if a.bottle == r.bottle => Ok(()),
        found => Err(fail(
            2,
            format!(
                "bottle {} ran agent `{}` of bottle `{}` from {}, and that manifest {}; fix: put agent `{}` (bottle `{}`) back in the manifest, or `bottle export {} --to DIR` and `bottle rm {}`",
                r.id,
                r.agent,
                r.bottle,
                r.manifest.display(),
                match found {
                    Some(a) => format!("now puts it in bottle `{}`", a.bottle),
                    None => "no longer has it".into(),
                },
                r.agent,
                r.bottle,
                r.id,
                r.id
            ),
        )),
    }
}

/// A manifest that cannot be loaded any more, said with the way out.
pub fn manifest_gone(r: &Resumable, why: impl std::fmt::Display) -> Failure {
    fail(
        2,
        format!(
            "bottle {} was started from {}: {why}; fix: restore that manifest, or `bottle export {} --to DIR` and `bottle rm {}`",
            r.id,
            r.manifest.display(),
            r.id,
            r.id
        ),
    )
}

/// `bottle rm ID`: removes a stopped bottle (its volumes) and whatever a
/// killed run left of it. A running bottle is refused.
pub async fn rm(id: &str) -> Result<i32, Failure> {
    let (d, f) = found(id).await?;
    let f = f.ok_or_else(|| unknown(id))?;
    if f.alive() {
        return Err(running(&f));
    }
    let mut failures = Vec::new();
    if f.has_run_parts()
        && let Err(e) = teardown::teardown(&d, &f.record()).await
    {
        failures.push(e.to_string());
    }
    volumes::remove(&d, &f.volume_names(), &mut failures).await;
    if !failures.is_empty() {
        return Err(fail(1, failures.join("\n")));
    }
    println!("removed bottle {id} ({} volume(s))", f.volumes.len());
    Ok(0)
}

/// `bottle export ID --to DIR [--force]`: the workspace volume, out.
/// Works on a running bottle too (a snapshot of what is there now).
pub async fn export(id: &str, to: &Path, force: bool) -> Result<i32, Failure> {
    let (d, f) = found(id).await?;
    let f = f.ok_or_else(|| unknown(id))?;
    let Some(v) = f.volumes.iter().find(|v| v.role == "workspace") else {
        return Err(fail(
            1,
            format!("bottle {id} has no workspace volume; nothing to export"),
        ));
    };
    let root = crate::export::destination(to, force).map_err(|e| fail(1, e.to_string()))?;
    let (tx, reader) = crate::export::ChunkReader::new(16);
    let strip = v.name.clone();
    let target = root.clone();
    let writer =
        tokio::task::spawn_blocking(move || crate::export::extract(reader, &strip, &target));
    let read = volumes::archive(&d, &v.name, tx).await;
    let written = writer
        .await
        .map_err(|e| fail(1, format!("export stopped: {e}")))?;
    read?;
    let r = written.map_err(|e| fail(1, e.to_string()))?;
    println!(
        "exported bottle {id}'s workspace to {}: {} file(s), {} dir(s), {} symlink(s)",
        root.display(),
        r.files,
        r.dirs,
        r.links
    );
    for p in &r.scrubbed {
        println!(
            "  {}: rewritten (only format, extensions and author kept; no remote, nothing that runs a command)",
            p.display()
        );
    }
    let mut reasons: Vec<(&str, usize, &str)> = Vec::new();
    for (p, why) in &r.left_out {
        match reasons.iter_mut().find(|(w, _, _)| w == why) {
            Some(x) => x.1 += 1,
            None => reasons.push((why, 1, p)),
        }
    }
    for (why, n, example) in reasons {
        println!(
            "  left out {n} entr{} ({why}), e.g. {example}",
            if n == 1 { "y" } else { "ies" }
        );
    }
    if r.refused.is_empty() {
        return Ok(0);
    }
    let mut m = format!(
        "{} entr{} of the workspace refused (the agent wrote them; nothing was written for them):",
        r.refused.len(),
        if r.refused.len() == 1 { "y" } else { "ies" }
    );
    for (p, why) in &r.refused {
        m.push_str(&format!("\n  {p}: {why}"));
    }
    Err(fail(1, m))
}

/// "3.2 MiB"-style sizes.
pub fn human_size(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = b as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{x:.1} {}", units[u])
    }
}

/// "5m", "3h", "2d" since `created` (seconds since the epoch).
pub fn age(created: Option<i64>, now: i64) -> String {
    let Some(c) = created else {
        return "?".into();
    };
    let s = (now - c).max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// `bottle list`: every bottle, running, orphan or stopped, with its
/// volumes' age and size (measured with `du` in a helper container).
pub async fn list() -> Result<i32, Failure> {
    let d = docker::connect().await?;
    let found = teardown::find(&d).await?;
    if found.is_empty() {
        println!("no bottles");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // Sizes only of volumes nobody is using (a helper on a live volume
    // would race the agent for nothing), all in one helper.
    let idle: Vec<String> = found
        .iter()
        .filter(|f| !f.alive())
        .flat_map(|f| f.volume_names())
        .collect();
    let sizes = volumes::measure(&d, &idle).await;
    for f in &found {
        let state = if f.alive() {
            "running"
        } else if f.has_run_parts() {
            "orphan (its bottle run is gone)"
        } else {
            "stopped"
        };
        println!("{}  {state}", f.id);
        for (name, role, st) in &f.containers {
            println!("  {role:<12} {name}  {st}");
        }
        if !f.fw_rules.is_empty() {
            println!("  {} host firewall rule(s)", f.fw_rules.len());
        }
        let Some(v) = f.volumes.first() else {
            continue;
        };
        println!(
            "  agent {} of bottle {} from {}",
            v.agent, v.bottle, v.manifest
        );
        for v in &f.volumes {
            let size = match &sizes {
                _ if f.alive() => "(in use)".to_string(),
                Ok(s) => s.get(&v.name).map_or("?".into(), |b| human_size(*b)),
                Err(e) => format!("? ({e})"),
            };
            println!(
                "  volume {:<10} {}  age {}  size {size}",
                v.role,
                v.name,
                age(v.created, now)
            );
        }
        if f.stopped() {
            println!(
                "  resume: bottle resume {0}   export: bottle export {0} --to DIR   remove: bottle rm {0}",
                f.id
            );
        }
    }
    Ok(0)
}

/// `bottle cleanup`: orphans as before; with `volumes`, also the volumes of
/// the bottles it removes and of stopped bottles.
pub async fn cleanup(
    yes: bool,
    id: Option<&str>,
    all: bool,
    with_volumes: bool,
) -> Result<i32, Failure> {
    let d = docker::connect().await?;
    let found = teardown::find(&d).await?;
    let mut n = 0;
    let mut failures = Vec::new();
    for f in found {
        if id.is_some_and(|i| i != f.id) || (f.alive() && !all) {
            continue;
        }
        if !f.has_run_parts() && !with_volumes {
            continue;
        }
        n += 1;
        let vols = if with_volumes { f.volumes.len() } else { 0 };
        let what = format!(
            "{}: {} container(s), {} network(s), {} firewall rule(s){}{}",
            f.id,
            f.containers.len(),
            f.networks.len(),
            f.fw_rules.len(),
            if f.state_dir.is_some() {
                ", state directory"
            } else {
                ""
            },
            if vols > 0 {
                format!(", {vols} volume(s)")
            } else {
                String::new()
            }
        );
        if !yes {
            println!("would remove {what}");
            continue;
        }
        let mut failed = Vec::new();
        if f.has_run_parts()
            && let Err(e) = teardown::teardown(&d, &f.record()).await
        {
            failed.push(e.to_string());
        }
        if with_volumes {
            volumes::remove(&d, &f.volume_names(), &mut failed).await;
        }
        if failed.is_empty() {
            println!("removed {what}");
        } else {
            failures.extend(failed);
        }
    }
    let helpers = volumes::stale_helpers(&d).await?;
    if !helpers.is_empty() && id.is_none() {
        n += 1;
        if yes {
            volumes::remove_containers(&d, &helpers).await;
            println!(
                "removed {} helper container(s) of a killed bottle list/export",
                helpers.len()
            );
        } else {
            println!(
                "would remove {} helper container(s) of a killed bottle list/export",
                helpers.len()
            );
        }
    }
    if n == 0 {
        println!("nothing to clean up");
    } else if !yes {
        println!(
            "run `bottle cleanup --yes{}` to remove them",
            if with_volumes { " --volumes" } else { "" }
        );
    }
    if failures.is_empty() {
        Ok(0)
    } else {
        Err(fail(1, failures.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_like_du_and_ps() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(3 * 1024 * 1024 + 200 * 1024), "3.2 MiB");
        assert_eq!(age(Some(100), 159), "59s");
        assert_eq!(age(Some(0), 7200), "2h");
        assert_eq!(age(Some(0), 3 * 86400), "3d");
        assert_eq!(age(None, 5), "?");
    }
}
