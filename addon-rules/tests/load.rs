//! Loading routes files: every file in testdata/good loads; every file in
//! testdata/broken fails with exactly the errors its `# expect: LOCATION |
//! FRAGMENT` lines (or its `.expect` file) list, all at once, each with a fix.

mod common;

use addon_rules::{LoadError, Policy, Unmatched};
use common::testdata;

fn files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(testdata(dir))
        .expect("testdata dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no files in testdata/{dir}");
    v
}

#[test]
fn good_files_load() {
    for f in files("good") {
        let text = std::fs::read_to_string(&f).expect("read");
        if let Err(e) = Policy::from_text(&text, &f.display().to_string()) {
            panic!("{} should load:\n{e}", f.display());
        }
    }
}

#[test]
fn example_routes_file_loads() {
    let path = format!("{}/../examples/routes.yaml", env!("CARGO_MANIFEST_DIR"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    Policy::from_text(&text, "examples/routes.yaml")
        .unwrap_or_else(|e| panic!("examples/routes.yaml:\n{e}"));
}

fn expectations(f: &std::path::Path, text: &str) -> Vec<(String, String)> {
    let side = format!("{}.expect", f.display());
    let lines: Vec<String> = match std::fs::read_to_string(&side) {
        Ok(s) => s.lines().map(str::to_string).collect(),
        Err(_) => text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect:"))
            .map(str::to_string)
            .collect(),
    };
    lines
        .iter()
        .map(|l| {
            let (loc, frag) = l.split_once('|').expect("expect line: LOCATION | FRAGMENT");
            (loc.trim().to_string(), frag.trim().to_string())
        })
        .collect()
}

#[test]
fn broken_files_report_every_error_with_location_and_fix() {
    for f in files("broken") {
        let text = std::fs::read_to_string(&f).expect("read");
        let name = f.display().to_string();
        let want = expectations(&f, &text);
        assert!(!want.is_empty(), "{name}: no expectations");
        let err: LoadError = match Policy::from_text(&text, &name) {
            Ok(_) => panic!("{name} should fail"),
            Err(e) => e,
        };
        let got: Vec<String> = err.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            err.errors.len(),
            want.len(),
            "{name}: expected {} errors, got:\n{}",
            want.len(),
            got.join("\n")
        );
        for (loc, frag) in &want {
            let hit = err
                .errors
                .iter()
                .any(|e| e.location() == *loc && e.to_string().contains(frag.as_str()));
            assert!(
                hit,
                "{name}: no error at {loc:?} containing {frag:?}; got:\n{}",
                got.join("\n")
            );
        }
        for e in &err.errors {
            assert_eq!(e.source, name);
            assert!(!e.fix.is_empty(), "{name}: error without fix: {e}");
            assert!(
                !e.to_string().contains('\n'),
                "{name}: multi-line error: {e}"
            );
            assert!(e.to_string().starts_with(&format!("{name}: ")), "{e}");
        }
        // Display: one error per line.
        assert_eq!(err.to_string().lines().count(), err.errors.len(), "{name}");
    }
}

#[test]
fn error_line_format_names_file_route_field_and_fix() {
    let err = Policy::from_text("routes:\n  - host: Bücher.example\n", "r.yaml")
        .expect_err("non-ASCII host");
    assert_eq!(
        err.to_string(),
        "r.yaml: routes[0].host: host \"Bücher.example\" is not ASCII: write it as \"xn--bcher-kva.example\""
    );
}

#[test]
fn json_and_yaml_give_the_same_policy() {
    let yaml = "unmatched: forward\nroutes:\n  - host: a.example.com\n    path_allowlist: [/x]\n";
    let json = r#"{"unmatched": "forward", "routes": [{"host": "a.example.com", "path_allowlist": ["/x"]}]}"#;
    let (a, b) = (
        Policy::from_text(yaml, "y").expect("yaml"),
        Policy::from_text(json, "j").expect("json"),
    );
    assert_eq!(a.unmatched(), Unmatched::Forward);
    assert_eq!(a.unmatched(), b.unmatched());
    assert_eq!(a.routes().len(), b.routes().len());
    assert_eq!(a.routes()[0].host(), b.routes()[0].host());
    assert_eq!(
        a.routes()[0].path_allowlist().entries(),
        b.routes()[0].path_allowlist().entries()
    );
}

#[test]
fn unmatched_defaults_to_deny_and_routes_keep_file_order() {
    let p = Policy::from_text(
        "routes:\n  - host: B.example.com.\n  - host: '*.a.example.com'\n  - host: '[::1]'\n",
        "t",
    )
    .expect("valid");
    assert_eq!(p.unmatched(), Unmatched::Deny);
    let hosts: Vec<_> = p
        .routes()
        .iter()
        .map(|r| (r.index(), r.host().to_string(), r.is_wildcard()))
        .collect();
    assert_eq!(
        hosts,
        [
            (0, "b.example.com".into(), false),
            (1, "*.a.example.com".into(), true),
            (2, "::1".into(), false)
        ]
    );
    assert!(p.routes()[2].names_ip(&"::1".parse().expect("ip")));
    assert!(!p.routes()[0].names_ip(&"::1".parse().expect("ip")));
}

#[test]
fn ip_route_names_ipv4_also_as_mapped_ipv6_for_direct_mode() {
    let p = Policy::from_text("routes:\n  - host: 127.0.0.1\n", "t").expect("valid");
    assert!(p.routes()[0].names_ip(&"::ffff:127.0.0.1".parse().expect("ip")));
    assert!(!p.routes()[0].names_ip(&"127.0.0.2".parse().expect("ip")));
}

#[test]
fn policy_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policy>();
}

#[test]
fn hostile_yaml_is_an_error_not_a_hang_or_panic() {
    // Alias expansion bomb: the YAML crate limits repetition.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        bomb.push_str(&format!(
            "{}: &{} [*{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}]\n",
            (b'a' + i) as char,
            (b'a' + i) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char,
            (b'a' + i - 1) as char
        ));
    }
    assert!(Policy::from_text(&bomb, "bomb").is_err());
    for junk in [
        "",
        "   \n",
        "[",
        "{",
        "routes: !!binary AAAA",
        "\u{0}",
        "routes:\n- host: a.com\n---\nroutes: []\n",
        "? [a]\n: b\n",
    ] {
        assert!(Policy::from_text(junk, "junk").is_err(), "{junk:?}");
    }
}
