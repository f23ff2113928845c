//! The Pods' own trees: the outer proxy's writable directories as non-root,
//! and the agent's prompt, skills and workspace carried by ConfigMaps and
//! emptyDirs (and what a ConfigMap cannot carry, refused).

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;

use super::{SECRET, m, objects, plan_for};
use crate::k8s::{Options, host, outer, render};
use crate::manifest;
use crate::plan::Plan;
use crate::plan::tests::golden;

/// squid cannot run its entrypoint without root (it `chown`s to `proxy`):
/// squid runs directly as 65534 with a read-only root, every directory it
/// writes an emptyDir, and an init container creates the certificate
/// database. pipelock needs none of this.
#[test]
fn outer_proxy_runs_as_nobody_with_its_writable_dirs() {
    let dep = |outer: &str| -> Deployment {
        objects::<Deployment>(
            &render(&plan_for(outer), &Options::default()).unwrap(),
            "Deployment",
        )
        .into_iter()
        .find(|d| d.metadata.labels.as_ref().unwrap()["bottle.role"] == "outer-proxy")
        .unwrap()
    };
    let d = dep("squid");
    let s = d.spec.template.spec.unwrap();
    let c = &s.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(65534));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        c.command.as_deref(),
        Some(&["/usr/sbin/squid", "-N", "-f", "/etc/squid/squid.conf"].map(String::from)[..])
    );
    let empty: Vec<&str> = s
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.empty_dir.is_some())
        .map(|v| v.name.as_str())
        .collect();
    let mounted = |c: &k8s_openapi::api::core::v1::Container, path: &str| {
        c.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == path && empty.contains(&m.name.as_str()))
    };
    for dir in outer::SQUID_DIRS {
        assert!(mounted(c, dir), "{dir}");
    }
    // squid.conf's paths are all under those directories.
    let conf = &plan_for("squid").rendered["squid.conf"];
    for path in [
        "/var/lib/squid/ssl_db",
        "/var/log/squid/",
        "/run/squid/",
        "/var/spool/squid",
    ] {
        assert!(conf.contains(path), "{path}");
    }
    let init = &s.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.image, c.image);
    assert_eq!(init.security_context, c.security_context);
    assert!(init.command.as_ref().unwrap()[0].ends_with("security_file_certgen"));
    assert!(mounted(init, "/var/lib/squid"));

    let d = dep("pipelock");
    let s = d.spec.template.spec.unwrap();
    assert!(s.init_containers.is_none());
    assert_eq!(s.containers[0].command, None);
    assert_eq!(
        s.containers[0]
            .security_context
            .as_ref()
            .unwrap()
            .run_as_user,
        Some(65534)
    );
}

/// A home with two skills (one with a nested dir, an executable script and
/// a binary file) and a prompt file; the plan and what `host::read` reads.
fn agent_trees(home: &Path) -> (Plan, Options) {
    let review = home.join(".claude/skills/review");
    std::fs::create_dir_all(review.join("scripts")).unwrap();
    std::fs::write(review.join("SKILL.md"), "# review\nRead the diff.\n").unwrap();
    std::fs::write(review.join("scripts/run.sh"), "#!/bin/sh\necho ok\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        review.join("scripts/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(review.join("logo.bin"), [0u8, 159, 146, 150, 255]).unwrap();
    std::fs::create_dir_all(home.join(".claude/skills/lint")).unwrap();
    std::fs::write(home.join(".claude/skills/lint/SKILL.md"), "# lint\n").unwrap();
    std::fs::write(home.join("task.md"), "Fix the failing test.\n").unwrap();
    let src = m("squid").replace(
        "    image: debian:bookworm\n",
        "    image: debian:bookworm\n    prompt_file: task.md\n    skills: [review, lint]\n",
    );
    let man = manifest::parse(&src, Path::new("m.yaml"), home, Some(home)).unwrap();
    let p = crate::plan::plan(
        &man,
        "coder",
        "dev-0a1b2c3d",
        &|_| Some(SECRET.into()),
        &|_| true,
        None,
    )
    .unwrap();
    let o = Options {
        host: host::read(&p).unwrap(),
        ..Default::default()
    };
    (p, o)
}

/// The prompt file reaches the agent from the ConfigMap (0400, group-readable
/// through the Pod's fsGroup, the agent's gid), each skill from its own
/// ConfigMap with its files at their paths (executable 0755, binary bytes
/// intact), and /workspace is an emptyDir; the agent's objects are golden.
#[test]
fn agent_prompt_skills_and_workspace_reach_the_pod() {
    let home = tempfile::tempdir().unwrap();
    let (p, o) = agent_trees(home.path());
    let r = render(&p, &o).unwrap();
    let maps: Vec<ConfigMap> = objects(&r, "ConfigMap");
    let names: Vec<&str> = maps
        .iter()
        .map(|m| m.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "bottle-dev-0a1b2c3d-config",
            "bottle-dev-0a1b2c3d-skill-review",
            "bottle-dev-0a1b2c3d-skill-lint"
        ]
    );
    assert_eq!(
        maps[0].data.as_ref().unwrap()["prompt.md"],
        "Fix the failing test.\n"
    );
    let review = &maps[1];
    assert_eq!(
        review.binary_data.as_ref().unwrap()["001-logo.bin"].0,
        [0u8, 159, 146, 150, 255]
    );
    assert_eq!(
        review.data.as_ref().unwrap()["002-scripts_run.sh"],
        "#!/bin/sh\necho ok\n"
    );
    let agent: Deployment = objects::<Deployment>(&r, "Deployment")
        .into_iter()
        .find(|d| d.metadata.name.as_deref() == Some("bottle-dev-0a1b2c3d-agent"))
        .unwrap();
    let s = agent.spec.template.spec.as_ref().unwrap();
    let c = &s.containers[0];
    let vol = |path: &str| {
        let m = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("{path} not mounted"));
        let v = s
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .unwrap();
        (m.clone(), v.clone())
    };
    let (m, v) = vol("/home/agent/.bottle/prompt.md");
    assert_eq!(m.read_only, Some(true));
    let item = &v.config_map.unwrap().items.unwrap()[0];
    assert_eq!((item.key.as_str(), item.mode), ("prompt.md", Some(0o400)));
    assert_eq!(s.security_context.as_ref().unwrap().fs_group, Some(1000));
    let (m, v) = vol("/home/agent/.claude/skills/review");
    assert_eq!(m.read_only, Some(true));
    let cm = v.config_map.unwrap();
    assert_eq!(cm.name, "bottle-dev-0a1b2c3d-skill-review");
    let items: Vec<(String, String, Option<i32>)> = cm
        .items
        .unwrap()
        .into_iter()
        .map(|i| (i.key, i.path, i.mode))
        .collect();
    assert_eq!(
        items,
        [
            ("000-SKILL.md".into(), "SKILL.md".into(), Some(0o644)),
            ("001-logo.bin".into(), "logo.bin".into(), Some(0o644)),
            (
                "002-scripts_run.sh".into(),
                "scripts/run.sh".into(),
                Some(0o755)
            ),
        ]
    );
    let (m, v) = vol("/workspace");
    assert_eq!(m.read_only, None);
    assert!(v.empty_dir.is_some());
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("git clone git://git-gate:9418/widget.git"))
    );
    assert!(
        !r.notes.iter().any(|n| n.contains("not carried")),
        "{:?}",
        r.notes
    );

    let agent_objects: String = r
        .objects
        .iter()
        .filter(|o| {
            o.kind == "ConfigMap" && o.name.contains("-skill-")
                || o.kind == "Deployment" && o.name.ends_with("-agent")
        })
        .map(|o| format!("---\n{}", o.yaml))
        .collect();
    golden("k8s-agent-trees.yaml", &agent_objects);

    // Not read: refused, never rendered as an empty directory.
    let e = render(&p, &Options::default()).unwrap_err().to_string();
    assert!(e.contains("not read"), "{e}");
}

/// What a ConfigMap cannot carry is refused with the path and the fix: a
/// symlink in a skill, a skill above 1 MiB, a prompt that is not text.
#[test]
fn host_trees_a_config_map_cannot_carry_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let (p, _) = agent_trees(home.path());
    let review = home.path().join(".claude/skills/review");

    std::os::unix::fs::symlink("/etc/passwd", review.join("passwd")).unwrap();
    let e = host::read(&p).unwrap_err().to_string();
    assert!(
        e.contains("passwd") && e.contains("symlink") && e.contains("fix:"),
        "{e}"
    );
    std::fs::remove_file(review.join("passwd")).unwrap();

    std::fs::write(review.join("big.txt"), "x".repeat(host::CONFIG_MAP_LIMIT)).unwrap();
    let e = host::read(&p).unwrap_err().to_string();
    assert!(
        e.contains("review") && e.contains("1 MiB") && e.contains("fix:"),
        "{e}"
    );
    std::fs::remove_file(review.join("big.txt")).unwrap();
    // Just under the limit while reading, over it with the keys: render refuses.
    std::fs::write(
        review.join("big.txt"),
        "x".repeat(host::CONFIG_MAP_LIMIT - 60),
    )
    .unwrap();
    let o = Options {
        host: host::read(&p).unwrap(),
        ..Default::default()
    };
    let e = render(&p, &o).unwrap_err().to_string();
    assert!(
        e.contains("skill-review") && e.contains("1 MiB") && e.contains("fix:"),
        "{e}"
    );
    std::fs::remove_file(review.join("big.txt")).unwrap();

    std::fs::write(home.path().join("task.md"), [0xffu8, 0xfe, 0]).unwrap();
    let e = host::read(&p).unwrap_err().to_string();
    assert!(e.contains("task.md") && e.contains("UTF-8"), "{e}");

    std::fs::write(home.path().join("task.md"), "ok").unwrap();
    assert!(host::read(&p).is_ok());
}
