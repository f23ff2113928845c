use std::path::Path;

use super::load_plan::plan_as;
use super::session::volumes_to_drop;
use super::*;

/// `run` takes a manifest and an agent, or `--resume ID`, never both;
/// `--keep` and `--rm` contradict each other.
#[test]
fn run_takes_a_manifest_or_a_resume_id_and_keep_or_rm() {
    let parse = |a: &[&str]| Cli::try_parse_from([&["bottle"], a].concat());
    assert!(parse(&["run", "--resume", "dev-00000001"]).is_ok());
    assert!(parse(&["run", "-m", "m.yaml", "-a", "a", "--rm"]).is_ok());
    assert!(parse(&["resume", "dev-00000001", "--yes", "--", "bash"]).is_ok());
    for bad in [
        &["run"][..],
        &["run", "-m", "m.yaml"],
        &["run", "--resume", "x", "-m", "m.yaml"],
        &["run", "--resume", "x", "-a", "a"],
        &["run", "-m", "m.yaml", "-a", "a", "--keep", "--rm"],
        &["resume"],
        &["export", "x"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} accepted");
    }
}

/// Volumes outlive a run once the agent has them; a first run that
/// fails before drops the ones it made, a resumed one never drops the
/// bottle's (it made none); `--rm` drops them all.
#[test]
fn teardown_keeps_filled_volumes_and_drops_unfilled_new_ones() {
    let m = manifest::parse(
        "bottles:\n  dev: {}\nagents:\n  a: {bottle: dev}\n",
        Path::new("m.yaml"),
        Path::new("/"),
        None,
    )
    .unwrap();
    let Ok(mut p) = plan_as(&m, "a", None, "dev-00000001") else {
        panic!("plan failed");
    };
    let all = vec![
        "bottle-dev-00000001-home".to_string(),
        "bottle-dev-00000001-workspace".to_string(),
    ];
    let first = docker::Record {
        volumes: all.clone(),
        ..Default::default()
    };
    assert!(volumes_to_drop(&p, &first, false, true).is_empty());
    assert_eq!(volumes_to_drop(&p, &first, false, false), all);
    assert_eq!(volumes_to_drop(&p, &first, true, true), all);
    assert!(
        p.preflight("runc")
            .contains("workspace: none (empty /workspace)")
    );
    p.resumed = true;
    // The preflight of a resume says where the workspace comes from.
    assert!(
        p.preflight("runc").contains(
            "workspace: resumed from volume bottle-dev-00000001-workspace (not copied again)"
        ),
        "{}",
        p.preflight("runc")
    );
    let resumed = docker::Record::default();
    assert!(volumes_to_drop(&p, &resumed, false, false).is_empty());
    assert_eq!(volumes_to_drop(&p, &resumed, true, true), all);
}

/// `check` and `plan` refuse, at the manifest's key path, what
/// egress-proxy would refuse at start (SPEC §6), with every other problem.
#[tokio::test]
async fn check_and_plan_refuse_what_the_engine_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.yaml");
    std::fs::write(
        &m,
        "bottles:\n  dev:\n    allow: [\"*.co.uk\"]\n    egress_proxy:\n      routes:\n        - host: api.example.com\n          path_allowlist: [\"/a/../b\"]\n    git:\n      - {name: w, upstream: \"https://github.com/acme/w.git\", identity_file: /k, known_host_key: \"h ssh-ed25519 AAAA\"}\nagents:\n  coder: {bottle: prod}\n",
    )
    .unwrap();
    let commands = [
        Cmd::Check {
            manifest: m.clone(),
        },
        Cmd::Plan {
            manifest: m.clone(),
            agent: "coder".into(),
            json: true,
        },
    ];
    for cmd in commands {
        let Err(f) = main(Cli { quiet: true, cmd }).await else {
            panic!("accepted");
        };
        assert_eq!(f.code, 2);
        for want in [
            "bottles.dev.allow[0]: host \"*.co.uk\"",
            "bottles.dev.egress_proxy.routes[0].path_allowlist[0]: pattern \"/a/../b\"",
            "bottles.dev.git[0].upstream: `https://github.com/acme/w.git` is not an ssh URL",
            "agents.coder.bottle: unknown bottle `prod`",
        ] {
            assert!(f.message.contains(want), "{want}:\n{}", f.message);
        }
    }
}
