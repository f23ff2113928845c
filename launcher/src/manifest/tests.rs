//! Manifest validation tests: a table of refusals (one row per rule, at its
//! key path), engine errors at manifest paths, and property tests.

use super::*;
use std::path::{Path, PathBuf};

fn parse_str(s: &str) -> Result<Manifest, ManifestError> {
    parse(
        s,
        Path::new("m.yaml"),
        Path::new("/base"),
        Some(Path::new("/home/u")),
    )
}

fn paths(s: &str) -> Vec<String> {
    match parse_str(s) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.problems().iter().map(|p| p.path.clone()).collect(),
    }
}

const GOOD: &str = r#"
bottles:
  dev:
    allow: [pypi.org, Files.PythonHosted.org.]
    outer_proxy: squid
    outer_proxy_trust: [./private-ca.pem]
    egress_proxy:
      routes:
        - host: api.github.com
          path_allowlist: ["/repos/acme/widget/issues"]
          methods: [get, POST]
          auth: {scheme: Bearer, token_ref: GH_PAT}
        - host: api.anthropic.com
          auth: {scheme: Bearer, token_ref: CLAUDE_OAUTH}
          role: claude_code_oauth
    git:
      - name: widget
        upstream: ssh://git@github.com/acme/widget.git
        identity_file: ~/.ssh/id_ed25519
        known_host_key: "github.com ssh-ed25519 AAAA"
agents:
  coder:
    bottle: dev
    command: [bash]
    env: {TERM: xterm}
"#;

#[test]
fn good_manifest_parses_and_normalizes() {
    let m = parse_str(GOOD).unwrap();
    let b = &m.bottles["dev"];
    assert_eq!(b.allow, vec!["pypi.org", "files.pythonhosted.org"]);
    assert_eq!(b.outer_proxy, OuterProxyKind::Squid);
    assert_eq!(b.outer_proxy_image, DEFAULT_SQUID_IMAGE);
    assert_eq!(
        b.outer_proxy_trust,
        vec![PathBuf::from("/base/./private-ca.pem")]
    );
    assert_eq!(b.routes[0].methods, vec!["GET", "POST"]);
    assert_eq!(b.routes[1].role, Some(Role::ClaudeCodeOauth));
    assert_eq!(
        b.git[0].identity_file,
        PathBuf::from("/home/u/.ssh/id_ed25519")
    );
    assert!(!b.git[0].allow_force);
    assert_eq!(m.agents["coder"].image, DEFAULT_AGENT_IMAGE);
}

#[test]
fn markdown_front_matter_is_read() {
    let md = format!("---\n{GOOD}\n---\n# Notes\n\nbody: [not yaml\n");
    assert!(parse_str(&md).is_ok());
    let open = "---\nbottles: {}\n";
    assert_eq!(paths(open), vec![""]);
}

#[test]
fn unknown_keys_everywhere_are_reported_at_once() {
    let s = GOOD
        .replace(
            "    outer_proxy: squid",
            "    outer_proxy: squid\n    outr: 1",
        )
        .replace(
            "methods: [get, POST]",
            "methods: [get, POST]\n          auht: x",
        )
        .replace(
            "{scheme: Bearer, token_ref: GH_PAT}",
            "{scheme: Bearer, token_ref: GH_PAT, tokn: 1}",
        )
        .replace("    command: [bash]", "    command: [bash]\n    imgae: x");
    let p = paths(&s);
    assert_eq!(
        p,
        vec![
            "bottles.dev.outr",
            "bottles.dev.egress_proxy.routes[0].auht",
            "bottles.dev.egress_proxy.routes[0].auth.tokn",
            "agents.coder.imgae",
        ]
    );
    let e = parse_str(&s).unwrap_err().to_string();
    assert!(e.contains("m.yaml: bottles.dev.egress_proxy.routes[0].auth.tokn: unknown key `tokn`; fix: use one of: scheme, header, token_ref"), "{e}");
    // A near miss gets a suggestion, as in the routes loader.
    assert!(e.contains("agents.coder.imgae: unknown key `imgae`; fix: did you mean `image`? use one of: bottle, image,"), "{e}");
    assert!(
        e.contains("routes[0].auht: unknown key `auht`; fix: did you mean `auth`?"),
        "{e}"
    );
}

#[test]
fn refusals_table() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "unknown agent bottle",
            "    bottle: dev",
            "    bottle: prod",
            "agents.coder.bottle",
        ),
        (
            "two oauth roles",
            "{scheme: Bearer, token_ref: GH_PAT}",
            "{scheme: Bearer, token_ref: GH_PAT}\n          role: claude_code_oauth",
            "bottles.dev.egress_proxy.routes[1].role",
        ),
        (
            "unknown role",
            "role: claude_code_oauth",
            "role: admin",
            "bottles.dev.egress_proxy.routes[1].role",
        ),
        (
            "duplicate host",
            "host: api.anthropic.com",
            "host: API.github.com",
            "bottles.dev.egress_proxy.routes[1].host",
        ),
        (
            "allow overlaps route",
            "[pypi.org, Files.PythonHosted.org.]",
            "[pypi.org, api.github.com]",
            "bottles.dev.allow[1]",
        ),
        (
            "wrong type",
            "allow: [pypi.org, Files.PythonHosted.org.]",
            "allow: pypi.org",
            "bottles.dev.allow",
        ),
        (
            "host with scheme",
            "host: api.github.com",
            "host: https://api.github.com",
            "bottles.dev.egress_proxy.routes[0].host",
        ),
        (
            "host with port",
            "host: api.github.com",
            "host: api.github.com:443",
            "bottles.dev.egress_proxy.routes[0].host",
        ),
        (
            "unicode host",
            "host: api.github.com",
            "host: bücher.de",
            "bottles.dev.egress_proxy.routes[0].host",
        ),
        (
            "broad wildcard",
            "[pypi.org, Files.PythonHosted.org.]",
            "[pypi.org, \"*.com\"]",
            "bottles.dev.allow[1]",
        ),
        (
            "credential on wildcard",
            "host: api.github.com",
            "host: \"*.github.com\"",
            "bottles.dev.egress_proxy.routes[0].auth",
        ),
        (
            "missing scheme",
            "{scheme: Bearer, token_ref: GH_PAT}",
            "{token_ref: GH_PAT}",
            "bottles.dev.egress_proxy.routes[0].auth.scheme",
        ),
        (
            "bad token_ref",
            "token_ref: GH_PAT",
            "token_ref: GH-PAT",
            "bottles.dev.egress_proxy.routes[0].auth.token_ref",
        ),
        (
            "missing token_ref",
            "{scheme: Bearer, token_ref: GH_PAT}",
            "{scheme: Bearer}",
            "bottles.dev.egress_proxy.routes[0].auth.token_ref",
        ),
        (
            "bad pattern",
            "\"/repos/acme/widget/issues\"",
            "\"repos\"",
            "bottles.dev.egress_proxy.routes[0].path_allowlist[0]",
        ),
        (
            "duplicate git name",
            "        allow_force_placeholder",
            "",
            "",
        ),
        (
            "reserved env",
            "env: {TERM: xterm}",
            "env: {HTTPS_PROXY: http://x}",
            "agents.coder.env.HTTPS_PROXY",
        ),
        (
            "unknown outer proxy",
            "outer_proxy: squid",
            "outer_proxy: nginx",
            "bottles.dev.outer_proxy",
        ),
        ("bad bottle name", "  dev:", "  Dev:", "bottles.Dev"),
        (
            "missing git key",
            "        known_host_key: \"github.com ssh-ed25519 AAAA\"",
            "",
            "bottles.dev.git[0].known_host_key",
        ),
        (
            "bool as string",
            "    command: [bash]",
            "    command: bash",
            "agents.coder.command",
        ),
        // The engine's own rules (addon-rules), at the manifest's key path.
        (
            "public-suffix wildcard in allow",
            "[pypi.org, Files.PythonHosted.org.]",
            "[pypi.org, \"*.co.uk\"]",
            "bottles.dev.allow[1]",
        ),
        (
            "dot segments in a path pattern",
            "\"/repos/acme/widget/issues\"",
            "\"/a/../b\"",
            "bottles.dev.egress_proxy.routes[0].path_allowlist[0]",
        ),
        (
            "public-suffix wildcard route",
            "host: api.anthropic.com\n          auth: {scheme: Bearer, token_ref: CLAUDE_OAUTH}\n          role: claude_code_oauth",
            "host: \"*.github.io\"",
            "bottles.dev.egress_proxy.routes[1].host",
        ),
        (
            "https git upstream",
            "upstream: ssh://git@github.com/acme/widget.git",
            "upstream: https://github.com/acme/widget.git",
            "bottles.dev.git[0].upstream",
        ),
    ];
    for (name, from, to, want) in cases {
        if want.is_empty() {
            continue;
        }
        assert!(GOOD.contains(from), "{name}: fixture lacks {from}");
        let p = paths(&GOOD.replacen(from, to, 1));
        assert!(
            p.iter().any(|x| x == want),
            "{name}: want {want}, got {p:?}"
        );
    }
}

#[test]
fn engine_errors_name_the_manifest_path_and_the_fix() {
    let e = parse_str(&GOOD.replace(
        "[pypi.org, Files.PythonHosted.org.]",
        "[pypi.org, \"*.co.uk\", api.github.com]",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("m.yaml: bottles.dev.allow[1]: host \"*.co.uk\"") && e.contains("public suffix"),
        "{e}"
    );
    // A rendered index in the engine's message is the manifest's path too.
    assert!(
            e.contains("m.yaml: bottles.dev.allow[2]: host \"api.github.com\" already has a route, bottles.dev.egress_proxy.routes[0]; fix: list a host once"),
            "{e}"
        );
    let e = parse_str(&GOOD.replace("\"/repos/acme/widget/issues\"", "\"/a/../b\""))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bottles.dev.egress_proxy.routes[0].path_allowlist[0]: "),
        "{e}"
    );
    let e = parse_str(&GOOD.replace(
        "upstream: ssh://git@github.com/acme/widget.git",
        "upstream: https://github.com/acme/widget.git",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(
            "bottles.dev.git[0].upstream: `https://github.com/acme/widget.git` is not an ssh URL"
        ) && e.contains("fix: write the ssh form"),
        "{e}"
    );
}

#[test]
fn unknown_bottle_is_reported_with_every_other_problem() {
    let s = GOOD
        .replace("    bottle: dev", "    bottle: prod\n    imgae: x")
        .replace("outer_proxy: squid", "outer_proxy: nginx")
        .replace("[pypi.org, Files.PythonHosted.org.]", "[\"*.co.uk\"]");
    let p = paths(&s);
    for want in [
        "bottles.dev.outer_proxy",
        "bottles.dev.allow[0]",
        "agents.coder.imgae",
        "agents.coder.bottle",
    ] {
        assert!(p.iter().any(|x| x == want), "want {want}, got {p:?}");
    }
    // A bottle that exists but is invalid is not also "unknown".
    let p = paths(&GOOD.replace("outer_proxy: squid", "outer_proxy: nginx"));
    assert!(!p.iter().any(|x| x == "agents.coder.bottle"), "{p:?}");
}

#[test]
fn duplicate_git_names_and_many_problems_at_once() {
    let s = GOOD.replace(
            "    git:\n",
            "    git:\n      - {name: widget, upstream: \"git@h:a/b.git\", identity_file: /k, known_host_key: \"h ssh-ed25519 AAAA\"}\n",
        ).replace("outer_proxy: squid", "outer_proxy: 3");
    let p = paths(&s);
    assert!(p.contains(&"bottles.dev.git[1].name".to_string()), "{p:?}");
    assert!(p.contains(&"bottles.dev.outer_proxy".to_string()), "{p:?}");
}

#[test]
fn yaml_syntax_error_names_the_line() {
    let e = parse_str("bottles: [\n").unwrap_err().to_string();
    assert!(e.contains("m.yaml") && e.contains("line"), "{e}");
}

#[test]
fn never_panics_on_odd_documents() {
    for doc in [
        "",
        "~",
        "[]",
        "3",
        "bottles: 3\nagents: []",
        "bottles: {a: []}\nagents: {b: 1}",
        "bottles: {a: {egress_proxy: {routes: [1, {host: [x]}]}}}\nagents: {}",
        "? [a]\n: b",
        "!!binary aGVsbG8=",
    ] {
        let _ = parse_str(doc);
    }
}

mod prop {
    use super::*;

    use proptest::prelude::*;

    fn parse_any(s: &str) -> Result<Manifest, ManifestError> {
        parse(s, Path::new("p.yaml"), Path::new("/b"), None)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary text never panics; an error always says where and how to fix.
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            if let Err(ManifestError::Invalid(p)) = parse_any(&s) {
                prop_assert!(!p.is_empty());
                for x in p {
                    prop_assert!(!x.fix.is_empty() && x.file == "p.yaml");
                }
            }
        }

        /// Structured documents with random keys and values at the known places:
        /// every problem is reported with a key path under the document.
        #[test]
        fn random_keys_are_reported_with_their_path(
            key in "[a-z_]{1,12}",
            val in prop_oneof![Just("1".to_string()), Just("[a, b]".to_string()), Just("{x: 1}".to_string()), "[a-z.*]{1,20}".prop_map(|v| format!("\"{v}\""))],
        ) {
            let doc = format!(
                "bottles:\n  b:\n    {key}: {val}\n    egress_proxy:\n      routes:\n        - host: h.example\n          {key}: {val}\nagents:\n  a:\n    bottle: b\n    {key}: {val}\n"
            );
            match parse_any(&doc) {
                Ok(m) => prop_assert!(m.bottles.contains_key("b")),
                Err(e) => {
                    for p in e.problems() {
                        prop_assert!(p.path.starts_with("bottles.b") || p.path.starts_with("agents.a"), "{}", p);
                    }
                }
            }
        }
    }
}

/// A temp dir used as the manifest's directory and as HOME, with one skill
/// (`review`) and a prompt file.
fn agent_home() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join(".claude/skills/review")).unwrap();
    std::fs::write(
        d.path().join(".claude/skills/review/SKILL.md"),
        "# review\n",
    )
    .unwrap();
    std::fs::write(d.path().join("prompt.md"), "be careful\n").unwrap();
    std::fs::write(d.path().join("Dockerfile"), "FROM bottle-agent\n").unwrap();
    d
}

fn parse_in(dir: &Path, agent: &str) -> Result<Manifest, ManifestError> {
    let text =
        format!("bottles:\n  dev: {{allow: [pypi.org]}}\nagents:\n  a:\n    bottle: dev\n{agent}");
    parse(&text, Path::new("m.yaml"), dir, Some(dir))
}

fn problems_in(dir: &Path, agent: &str) -> Vec<String> {
    match parse_in(dir, agent) {
        Ok(_) => panic!("accepted:\n{agent}"),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn agent_prompt_skills_build_and_bottle_runtime_supervise_parse() {
    let d = agent_home();
    let m = parse_in(
        d.path(),
        "    prompt_file: prompt.md\n    skills: [review]\n    build: {dockerfile: Dockerfile}\n    command: [claude, --append-system-prompt-file, \"{prompt_file}\"]\n",
    )
    .unwrap();
    let a = &m.agents["a"];
    assert_eq!(
        a.prompt,
        Some(PromptSource::File(d.path().join("prompt.md")))
    );
    assert_eq!(a.skills[0].path, d.path().join(".claude/skills/review"));
    assert_eq!(
        a.build.as_ref().map(|b| b.context.clone()),
        Some(d.path().to_path_buf())
    );
    let text = "bottles:\n  dev: {supervise: true, runtime: runsc}\nagents:\n  a: {bottle: dev, prompt: hi}\n";
    let m = parse(text, Path::new("m.yaml"), d.path(), Some(d.path())).unwrap();
    assert!(m.bottles["dev"].supervise);
    assert_eq!(m.bottles["dev"].runtime, RuntimeChoice::Runsc);
    assert_eq!(m.agents["a"].prompt, Some(PromptSource::Text("hi".into())));
    let m = parse_str(GOOD).unwrap();
    assert_eq!(m.bottles["dev"].runtime, RuntimeChoice::Auto);
    assert!(!m.bottles["dev"].supervise);
}

/// One row per refusal of the agent's prompt, skills and build, and of the
/// bottle's runtime: key path, what is wrong, and the fix.
#[test]
fn agent_prompt_skills_build_refusals_name_path_and_fix() {
    let d = agent_home();
    let skill_dir = d.path().join(".claude/skills/missing");
    let rows: Vec<(&str, Vec<String>)> = vec![
        (
            "    prompt: hi\n    prompt_file: prompt.md\n",
            vec!["m.yaml: agents.a.prompt_file: both `prompt` and `prompt_file` are given; fix: keep one".into()],
        ),
        (
            "    command: [claude, \"{prompt_file}\"]\n",
            vec!["m.yaml: agents.a.command[1]: uses `{prompt_file}` but the agent has no prompt; fix: add `prompt: <text>` or `prompt_file: <path>`".into()],
        ),
        (
            "    prompt_file: nope.md\n",
            vec![format!("m.yaml: agents.a.prompt_file: {} is not a readable file", d.path().join("nope.md").display())],
        ),
        (
            "    skills: [review, missing]\n",
            vec![format!(
                "m.yaml: agents.a.skills[1]: skill `missing` not found: {} is not a directory; fix: install the skill at {}",
                skill_dir.display(),
                skill_dir.display()
            )],
        ),
        (
            "    skills: [../etc]\n",
            vec!["agents.a.skills[0]: `../etc` is not a skill name".into()],
        ),
        (
            "    image: x\n    build: {dockerfile: Dockerfile}\n",
            vec!["agents.a.build: both `image` and `build` are given".into()],
        ),
        (
            "    build: {context: .}\n",
            vec!["agents.a.build.dockerfile: missing".into()],
        ),
        (
            "    build: {dockerfile: Dockerfile, contxt: .}\n",
            vec!["agents.a.build.contxt: unknown key `contxt`; fix: did you mean `context`?".into()],
        ),
    ];
    for (agent, want) in rows {
        let got = problems_in(d.path(), agent).join("\n");
        for w in want {
            assert!(got.contains(&w), "{agent}: want {w}\ngot {got}");
        }
    }
    let text = "bottles:\n  dev: {runtime: kata, supervise: yes}\nagents:\n  a: {bottle: dev}\n";
    let e = parse(text, Path::new("m.yaml"), d.path(), Some(d.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("bottles.dev.runtime: unknown runtime `kata`; fix: use `auto`"),
        "{e}"
    );
    assert!(
        e.contains("bottles.dev.supervise: expected true or false"),
        "{e}"
    );
}
