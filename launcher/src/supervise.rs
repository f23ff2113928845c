//! `bottle supervise list|approve|reject` (SPEC §8, docs/supervise.md): the
//! operator's side of the supervise loop over the running bottles' supervise
//! state directories, through `bottle_supervise::host`.
//!
//! Owns finding the state directories (as `bottle list` finds bottles), the
//! one approval path the CLI and the terminal UI (`crate::tui`) share
//! (`approve_and_apply`) and, after an approval, the outer proxy's allowlist: squid's `squid.conf`
//! rewritten in the container, checked with `squid -k parse` by the Docker
//! exec API, then SIGHUP, squid's reconfigure, by the Docker kill API (squid
//! is PID 1 there and `squid -k reconfigure` refuses that); pipelock's
//! `pipelock.yaml` with its `api_allowlist` replaced, written into the
//! container (pipelock watches the file's *directory* with fsnotify and
//! reloads on a write, create or rename of the name), then SIGHUP, which
//! pipelock also reloads on. egress-proxy picks the routes file up itself
//! (`--watch-routes`).
//!
//! Must never: print a secret (the routes file holds slot names only), or
//! restart a container.

use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bottle_supervise::host::{Edit, Pending};
use futures_util::StreamExt;

use crate::docker::files::{TarEntry, download_file, files_tar, upload};
use crate::docker::teardown::{self, Found};
use crate::docker::{ApplyError, connect};
use crate::plan::SUPERVISE_DIR;
use crate::render::{self, paths};

fn host_err(e: bottle_supervise::host::HostError) -> ApplyError {
    ApplyError::Config(e.to_string())
}

/// The running bottles that have a supervise state directory.
async fn supervised(d: &Docker) -> Result<Vec<(Found, PathBuf)>, ApplyError> {
    Ok(teardown::find(d)
        .await?
        .into_iter()
        .filter(|f| f.alive())
        .filter_map(|f| {
            let dir = f.state_dir.as_ref()?.join(SUPERVISE_DIR);
            dir.join("bottle.json").is_file().then_some((f, dir))
        })
        .collect())
}

/// `bottle supervise list [--json]`.
pub async fn list(json: bool) -> Result<i32, ApplyError> {
    let d = connect().await?;
    let (pending, bottles) = pending(&d).await?;
    print_pending(
        &pending,
        json,
        &format!("({bottles} supervised bottle(s) running)"),
    );
    Ok(0)
}

/// Prints pending proposals for the operator (or as JSON); `where_` ends
/// the line saying there are none.
pub(crate) fn print_pending(pending: &[Pending], json: bool, where_: &str) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(pending).unwrap_or_else(|_| "[]".into())
        );
        return;
    }
    if pending.is_empty() {
        println!("no pending proposals {where_}");
    }
    for p in pending {
        let kind = p
            .kind
            .map(|k| serde_json::to_value(k).unwrap_or_default().to_string())
            .unwrap_or_else(|| "\"cannot apply\"".into());
        println!(
            "{}  bottle {}  {}  from {}  {}",
            p.id, p.bottle, p.created, p.client, kind
        );
        println!(
            "  asks: {} paths {:?} methods {:?}",
            p.request.host, p.request.paths, p.request.methods
        );
        println!("  why:  {}", p.request.justification);
        if let Some(r) = &p.route_before {
            println!("  route now:   {r}");
        }
        if let Some(r) = &p.route_after {
            println!("  route after: {r}");
        }
        if p.widens_credential {
            println!("  WARNING: widens a route that carries a credential");
        }
        if let Some(w) = &p.shadows_wildcard {
            println!("  note: a wildcard route covers this host today: {w}");
        }
        if let Some(e) = &p.problem {
            println!("  cannot approve now: {e}");
        }
    }
}

/// `bottle supervise approve ID`.
pub async fn approve(id: &str, operator: &str) -> Result<i32, ApplyError> {
    approve_edited(id, operator, None).await
}

/// `bottle supervise approve ID` with the operator's narrowing edit
/// (`--edit`, `--paths`, `--methods`).
pub async fn approve_edited(
    id: &str,
    operator: &str,
    edit: Option<&Edit>,
) -> Result<i32, ApplyError> {
    let d = connect().await?;
    let done = approve_and_apply(&d, id, operator, edit).await?;
    let a = &done.approved;
    println!(
        "approved {}: routes[{}] = {} (egress-proxy reloads {} within 2 s)",
        a.id,
        a.index,
        a.route_after,
        a.routes_file.display()
    );
    match &done.outer_proxy {
        Ok(Some((kind, n))) => println!("outer proxy ({kind}) reconfigured: {n} host(s) allowed"),
        Ok(None) => {}
        Err(e) => {
            eprintln!("bottle: approved, but the outer proxy's allowlist was not updated: {e}");
            return Ok(1);
        }
    }
    Ok(0)
}

/// What [`approve_and_apply`] did: the approval, and the outer proxy's update
/// (`Ok(Some((kind, hosts)))` squid or pipelock reconfigured, `Ok(None)`
/// nothing to do).
pub(crate) struct Applied {
    pub approved: bottle_supervise::host::Approved,
    pub outer_proxy: Result<Option<(&'static str, usize)>, ApplyError>,
}

/// The one approval path (the CLI and the TUI): approve with the host
/// library (an edit may only narrow), then update the outer proxy's
/// allowlist. An approval the library refuses changes nothing.
pub(crate) async fn approve_and_apply(
    d: &Docker,
    id: &str,
    operator: &str,
    edit: Option<&Edit>,
) -> Result<Applied, ApplyError> {
    let bottles = supervised(d).await?;
    let dirs: Vec<PathBuf> = bottles.iter().map(|x| x.1.clone()).collect();
    let a = bottle_supervise::host::approve_edited(&dirs, id, operator, edit).map_err(host_err)?;
    let outer_proxy = match bottles
        .iter()
        .find(|(_, dir)| a.routes_file.starts_with(dir))
    {
        Some((found, _)) => update_outer_proxy(d, found, &a.routes_file).await,
        None => Ok(None),
    };
    Ok(Applied {
        approved: a,
        outer_proxy,
    })
}

/// The pending proposals of every running supervised bottle.
pub(crate) async fn pending(d: &Docker) -> Result<(Vec<Pending>, usize), ApplyError> {
    let dirs = state_dirs(d).await?;
    let p = bottle_supervise::host::list(&dirs).map_err(host_err)?;
    Ok((p, dirs.len()))
}

/// The supervise state directories of the running bottles.
async fn state_dirs(d: &Docker) -> Result<Vec<PathBuf>, ApplyError> {
    Ok(supervised(d).await?.into_iter().map(|x| x.1).collect())
}

/// The one rejection path (the CLI and the TUI).
pub(crate) async fn reject_in(
    d: &Docker,
    id: &str,
    why: &str,
    operator: &str,
) -> Result<(), ApplyError> {
    let dirs = state_dirs(d).await?;
    bottle_supervise::host::reject(&dirs, id, why, operator).map_err(host_err)
}

/// `bottle supervise reject ID --why TEXT`.
pub async fn reject(id: &str, why: &str, operator: &str) -> Result<i32, ApplyError> {
    let d = connect().await?;
    reject_in(&d, id, why, operator).await?;
    println!("rejected {id}: {why}");
    Ok(0)
}

/// The outer proxy's hosts after an approval: every route host of the live
/// routes file (the `allow` hosts are plain routes there too).
fn route_hosts(routes_file: &Path) -> Result<Vec<String>, ApplyError> {
    let text = std::fs::read_to_string(routes_file).map_err(|source| ApplyError::Io {
        what: format!("read {}", routes_file.display()),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ApplyError::Config(format!("{}: {e}", routes_file.display())))?;
    let mut hosts: Vec<String> = v["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["host"].as_str().map(str::to_string))
        .collect();
    hosts.sort();
    hosts.dedup();
    Ok(hosts)
}

/// The running outer proxy's allowlist made the live routes' hosts: squid
/// or pipelock, whichever config the container holds. `None` when neither
/// (or nothing changed); `Some((kind, hosts))` when reconfigured.
async fn update_outer_proxy(
    d: &Docker,
    found: &Found,
    routes_file: &Path,
) -> Result<Option<(&'static str, usize)>, ApplyError> {
    let Some((name, _, _)) = found.containers.iter().find(|c| c.1 == "outer-proxy") else {
        return Ok(None);
    };
    let hosts = route_hosts(routes_file)?;
    if let Some(n) = update_squid(d, name, &hosts).await? {
        return Ok(Some(("squid", n)));
    }
    Ok(update_pipelock(d, name, &hosts)
        .await?
        .map(|n| ("pipelock", n)))
}

/// Rewrites squid's allowlist in container `name` when it changed, and
/// reconfigures squid. `None` when it holds no squid.conf of ours or
/// nothing changed.
async fn update_squid(
    d: &Docker,
    name: &str,
    hosts: &[String],
) -> Result<Option<usize>, ApplyError> {
    let Ok(old) = download_file(d, name, paths::SQUID_CONF).await else {
        return Ok(None);
    };
    let old = String::from_utf8_lossy(&old).to_string();
    if !old.starts_with("# Rendered by bottle") {
        return Ok(None);
    }
    let has_trust = old.contains(paths::SQUID_TRUST);
    let new = render::squid::render(hosts, has_trust);
    if new == old {
        return Ok(None);
    }
    put_config(d, name, paths::SQUID_CONF, new).await?;
    // squid runs in the foreground as PID 1 (`squid -k reconfigure` refuses
    // a PID file of 1), so its reconfigure signal goes through the Docker
    // API; a config squid rejects would then be reported by `squid -k parse`.
    exec_ok(d, name, &["squid", "-k", "parse", "-f", paths::SQUID_CONF]).await?;
    hup(d, name, "reconfigure squid").await?;
    Ok(Some(hosts.len()))
}

/// `pipelock.yaml` (as rendered by bottle) with `api_allowlist` replaced by
/// `hosts`, sorted, every other key kept. `None` when it is not ours, or
/// already says exactly that.
pub fn pipelock_with_hosts(old: &str, hosts: &[String]) -> Result<Option<String>, String> {
    use serde_yaml_ng::Value;
    if !old.starts_with("# Rendered by bottle") {
        return Ok(None);
    }
    let mut doc: Value = serde_yaml_ng::from_str(old).map_err(|e| format!("pipelock.yaml: {e}"))?;
    let Some(map) = doc.as_mapping_mut() else {
        return Err("pipelock.yaml: not a mapping".into());
    };
    let mut sorted: Vec<String> = hosts.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.is_empty() {
        // strict mode with an empty allowlist fails to load (shared/pipelock.md).
        return Err("pipelock: no host to allow".into());
    }
    let list = Value::Sequence(sorted.into_iter().map(Value::String).collect());
    if map.get("api_allowlist") == Some(&list) {
        return Ok(None);
    }
    map.insert(Value::String("api_allowlist".into()), list);
    let header: String = old
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let body = serde_yaml_ng::to_string(&doc).map_err(|e| format!("pipelock.yaml: {e}"))?;
    Ok(Some(format!("{header}{body}")))
}

/// Rewrites pipelock's allowlist in container `name` when it changed:
/// `pipelock.yaml` replaced through the Docker archive API (the file is in
/// the container's own filesystem, not a bind mount: the extraction
/// unlinks and recreates it in `/etc/pipelock/`, the directory pipelock's
/// fsnotify watches), then SIGHUP (pipelock reloads on it too). pipelock
/// validates the new file and keeps the old one when it fails to load.
/// `None` when it holds no pipelock.yaml of ours or nothing changed.
pub async fn update_pipelock(
    d: &Docker,
    name: &str,
    hosts: &[String],
) -> Result<Option<usize>, ApplyError> {
    let Ok(old) = download_file(d, name, paths::PIPELOCK_CONF).await else {
        return Ok(None);
    };
    let old = String::from_utf8_lossy(&old).to_string();
    let Some(new) = pipelock_with_hosts(&old, hosts).map_err(ApplyError::Config)? else {
        return Ok(None);
    };
    put_config(d, name, paths::PIPELOCK_CONF, new).await?;
    hup(d, name, "reload pipelock").await?;
    Ok(Some(hosts.len()))
}

/// Replaces the config file at `path` in container `name` (0644, root)
/// through the Docker archive API: the extraction unlinks and recreates it
/// inside the container.
async fn put_config(d: &Docker, name: &str, path: &str, text: String) -> Result<(), ApplyError> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let entry = TarEntry::file(path.trim_start_matches('/'), 0o644, 0, 0, text.into_bytes());
    let tar = files_tar(&[entry]).map_err(|source| ApplyError::Io {
        what: format!("build the {file} archive"),
        source,
    })?;
    upload(d, name, tar).await
}

/// SIGHUP to container `name`'s PID 1 through the Docker kill API (`what`
/// names the reload in the error).
async fn hup(d: &Docker, name: &str, what: &str) -> Result<(), ApplyError> {
    d.kill_container(
        name,
        Some(bollard::query_parameters::KillContainerOptions {
            signal: "HUP".into(),
        }),
    )
    .await
    .map_err(crate::docker::docker_err(format!("{what} in {name}")))?;
    Ok(())
}

/// Runs `cmd` in `container` (as its user) and fails unless it exits 0.
async fn exec_ok(d: &Docker, container: &str, cmd: &[&str]) -> Result<(), ApplyError> {
    let what = format!("{} in {container}", cmd.join(" "));
    let e = d
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(crate::docker::docker_err(what.clone()))?;
    let mut out = String::new();
    if let StartExecResults::Attached { mut output, .. } = d
        .start_exec(&e.id, None)
        .await
        .map_err(crate::docker::docker_err(what.clone()))?
    {
        while let Some(Ok(chunk)) = output.next().await {
            out.push_str(&chunk.to_string());
        }
    }
    let code = d
        .inspect_exec(&e.id)
        .await
        .map_err(crate::docker::docker_err(what.clone()))?
        .exit_code
        .unwrap_or(-1);
    if code != 0 {
        return Err(ApplyError::Runtime(format!(
            "{what} exited {code}: {}",
            out.trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squid_hosts_are_the_live_route_hosts_sorted_once() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("routes.json");
        std::fs::write(
            &f,
            r#"{"routes":[{"host":"b.test","token_env":"EGRESS_PROXY_TOKEN_0"},{"host":"a.test"},{"host":"b.test"}]}"#,
        )
        .unwrap();
        assert_eq!(route_hosts(&f).unwrap(), ["a.test", "b.test"]);
        let conf = render::squid::render(&route_hosts(&f).unwrap(), false);
        assert!(conf.contains("acl allowed_hosts dstdomain -n a.test b.test\n"));
    }

    #[test]
    fn pipelock_allowlist_is_replaced_and_nothing_else_changes() {
        let old = render::pipelock::render(&["pypi.org".into()], &["Authorization".into()]);
        let hosts = vec!["pypi.org".to_string(), "files.example.com".to_string()];
        let new = pipelock_with_hosts(&old, &hosts).unwrap().unwrap();
        // The same as rendering with the longer list: every other key kept.
        assert_eq!(
            new,
            render::pipelock::render(&hosts, &["Authorization".into()])
        );
        // Unchanged: nothing to do; not ours: left alone; empty: refused.
        assert_eq!(pipelock_with_hosts(&new, &hosts).unwrap(), None);
        assert_eq!(pipelock_with_hosts("mode: strict\n", &hosts).unwrap(), None);
        assert!(pipelock_with_hosts(&old, &[]).is_err());
    }
}
