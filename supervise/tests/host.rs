//! The host library never trusts a proposal file: the sidecar wrote it, and
//! the agent talks to the sidecar. Each case writes a proposal as a
//! misbehaving sidecar could, and checks that approving refuses it and
//! changes nothing.

mod common;

use bottle_supervise::host;
use common::*;
use serde_json::json;

fn write_proposal(st: &State, id: &str, body: serde_json::Value) {
    std::fs::write(
        st.root().join("proposals").join(format!("{id}.json")),
        body.to_string(),
    )
    .unwrap();
}

fn proposal(id: &str, request: serde_json::Value) -> serde_json::Value {
    json!({"id": id, "created": "2026-12-06T00:00:00Z", "bottle": "dev",
           "client": "x", "request": request})
}

#[test]
fn approve_validates_again_and_refuses_without_touching_anything() {
    let st = State::new(ROUTES);
    let dirs = [st.root()];
    let routes_before = std::fs::read(st.root().join("routes/routes.json")).unwrap();
    let cases = [
        // the engine refuses it
        (
            "p0000000000000001",
            proposal(
                "p0000000000000001",
                json!({"host": "*.github.io", "justification": "x"}),
            ),
            "public suffix",
        ),
        // out of bounds
        (
            "p0000000000000002",
            proposal(
                "p0000000000000002",
                json!({"host": "e.com", "justification": "x".repeat(5000)}),
            ),
            "justification",
        ),
        // a credential smuggled in
        (
            "p0000000000000003",
            proposal(
                "p0000000000000003",
                json!({"host": "e.com", "justification": "x", "token_env": "EGRESS_PROXY_TOKEN_0"}),
            ),
            "unknown field",
        ),
        // a file that claims another proposal's id
        (
            "p0000000000000004",
            proposal(
                "p0000000000000005",
                json!({"host": "e.com", "justification": "x"}),
            ),
            "holds id",
        ),
    ];
    for (id, body, why) in cases {
        write_proposal(&st, id, body);
        let e = host::approve(&dirs, id, "op").unwrap_err().to_string();
        assert!(e.contains(why), "{id}: {e}");
    }
    assert_eq!(
        std::fs::read(st.root().join("routes/routes.json")).unwrap(),
        routes_before
    );
    assert_eq!(st.count("decisions"), 0);
    assert!(!st.root().join("audit.jsonl").exists());
    assert!(!st.root().join("approved.json").exists());
    // A path in place of an id is refused before any file is opened.
    assert!(matches!(
        host::approve(&dirs, "../routes", "op"),
        Err(host::HostError::BadId(_))
    ));
}

#[test]
fn list_marks_a_credential_widening_and_shows_the_route_after() {
    let st = State::new(ROUTES);
    write_proposal(
        &st,
        "p00000000000000a1",
        proposal(
            "p00000000000000a1",
            json!({"host": "api.github.com", "methods": ["POST"], "justification": "comment"}),
        ),
    );
    let p = &host::list(&[st.root()]).unwrap()[0];
    assert!(p.widens_credential);
    assert_eq!(p.route_before.as_ref().unwrap()["methods"], json!(["GET"]));
    assert_eq!(
        p.route_after.as_ref().unwrap()["methods"],
        json!(["GET", "POST"])
    );
    // Approved, the credential stays on the route; the view shows only that one is there.
    host::approve(&[st.root()], "p00000000000000a1", "op").unwrap();
    let routes: serde_json::Value =
        serde_json::from_slice(&std::fs::read(st.root().join("routes/routes.json")).unwrap())
            .unwrap();
    assert_eq!(routes["routes"][0]["token_env"], "EGRESS_PROXY_TOKEN_0");
    let view = std::fs::read_to_string(st.root().join("view/view.json")).unwrap();
    assert!(!view.contains("EGRESS_PROXY_TOKEN"));
    let view: serde_json::Value = serde_json::from_str(&view).unwrap();
    assert_eq!(view["routes"][0]["credential"], true);
    assert_eq!(view["routes"][0]["methods"], json!(["GET", "POST"]));
}

#[test]
fn a_rejection_needs_a_reason() {
    let st = State::new(ROUTES);
    write_proposal(
        &st,
        "p00000000000000b1",
        proposal(
            "p00000000000000b1",
            json!({"host": "e.com", "justification": "x"}),
        ),
    );
    assert!(matches!(
        host::reject(&[st.root()], "p00000000000000b1", " ", "op"),
        Err(host::HostError::NoReason)
    ));
    assert_eq!(st.count("decisions"), 0);
}

#[test]
fn an_edited_approval_applies_the_edit_validated_and_audits_both() {
    let st = State::new(ROUTES);
    let dirs = [st.root()];
    let req = json!({"host": "files.example.com", "paths": ["/**"], "methods": ["GET", "POST"],
                     "justification": "downloads"});
    write_proposal(
        &st,
        "p00000000000000c1",
        proposal("p00000000000000c1", req.clone()),
    );
    // An edit the engine refuses is refused, nothing written.
    let bad = host::Edit {
        paths: Some(vec!["^(".into()]),
        methods: None,
    };
    let e = host::approve_edited(&dirs, "p00000000000000c1", "op", Some(&bad)).unwrap_err();
    assert!(e.to_string().contains("path_allowlist[0]"), "{e}");
    assert_eq!(st.count("decisions"), 0);
    // An edit that grants more than was asked is refused, nothing written.
    let routes_before = std::fs::read_to_string(st.root().join("routes/routes.json")).unwrap();
    for wide in [
        host::Edit {
            paths: None,
            methods: Some(vec!["GET".into(), "DELETE".into()]),
        },
        host::Edit {
            paths: Some(vec![]),
            methods: None,
        },
    ] {
        let e = host::approve_edited(&dirs, "p00000000000000c1", "op", Some(&wide)).unwrap_err();
        assert!(matches!(e, host::HostError::EditWidens { .. }), "{e}");
        assert!(e.to_string().contains("widens"), "{e}");
    }
    assert_eq!(
        std::fs::read_to_string(st.root().join("routes/routes.json")).unwrap(),
        routes_before
    );
    assert_eq!(st.count("decisions"), 0);
    assert!(!st.root().join("audit.jsonl").exists());
    // The operator narrows it.
    let narrow = host::Edit {
        paths: Some(vec!["/dl/**".into()]),
        methods: Some(vec!["GET".into()]),
    };
    let a = host::approve_edited(&dirs, "p00000000000000c1", "op", Some(&narrow)).unwrap();
    assert_eq!(
        a.route_after,
        json!({"host": "files.example.com", "path_allowlist": ["/dl/**"], "methods": ["GET"]})
    );
    let audit: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(st.root().join("audit.jsonl"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(audit["request"]["paths"], json!(["/**"]));
    assert_eq!(audit["edit"]["paths"], json!(["/dl/**"]));
    assert_eq!(audit["route_after"]["methods"], json!(["GET"]));
    // The next run re-applies what was approved, not what was asked.
    let merged = host::merge_approved(ROUTES, &st.root().join("approved.json")).unwrap();
    let policy = addon_rules::Policy::from_text(&merged.text, "m").unwrap();
    let r = policy.route_for_host("files.example.com").unwrap();
    assert_eq!(r.path_allowlist().entries(), ["/dl/**"]);
}

/// With a store, an approval is kept for the bottle's *name* the host
/// recorded at init (not the name a proposal claims), every decision is
/// audited in the run and in the store, and the next run's routes re-apply
/// it; a revoke removes it and is audited.
#[test]
fn approvals_are_kept_per_bottle_name_outside_the_run() {
    let d = tempfile::tempdir().unwrap();
    let store = bottle_supervise::store::Store::new(d.path().join("approvals"));
    let run = d.path().join("run");
    host::init_with_store(&run, "dev", ROUTES, &["pypi.org".to_string()], Some(&store)).unwrap();
    let dirs = [run.clone()];
    let mut p = proposal(
        "p00000000000000d1",
        json!({"host": "files.example.com", "paths": ["/dl/**"], "justification": "x"}),
    );
    // A proposal claiming another bottle cannot write that bottle's approvals.
    p["bottle"] = json!("prod");
    std::fs::write(run.join("proposals/p00000000000000d1.json"), p.to_string()).unwrap();
    host::approve(&dirs, "p00000000000000d1", "op").unwrap();
    std::fs::write(
        run.join("proposals/p00000000000000d2.json"),
        proposal(
            "p00000000000000d2",
            json!({"host": "x.example.com", "justification": "y"}),
        )
        .to_string(),
    )
    .unwrap();
    host::reject(&dirs, "p00000000000000d2", "no", "op").unwrap();
    assert!(!run.join("approved.json").exists());
    assert_eq!(store.bottles().unwrap(), ["dev"]);
    let kept = store.read("dev").unwrap().approved;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].client, "x");
    let merged = host::merge_kept(ROUTES, &kept).unwrap();
    assert!(merged.text.contains("files.example.com"), "{}", merged.text);
    // Both audit logs have both decisions, with the bottle the host knows.
    for f in [run.join("audit.jsonl"), store.audit_file("dev")] {
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&f)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let got: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| {
                (
                    l["decision"].as_str().unwrap(),
                    l["bottle"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, [("approved", "dev"), ("rejected", "dev")], "{f:?}");
    }
    store.revoke("p00000000000000d1", "op2").unwrap();
    assert!(store.read("dev").unwrap().approved.is_empty());
    let audit = std::fs::read_to_string(store.audit_file("dev")).unwrap();
    let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(last["decision"], "revoked");
    assert_eq!(last["route_before"]["host"], "files.example.com");
}

/// Proposals imported from a sidecar on another machine (`kubectl exec
/// ... --print-proposals`) are parsed as strictly as files: a smuggled
/// field, a bad id, a path-shaped id, or more than the cap are refused and
/// nothing is written; an imported one is approved like any other.
#[test]
fn import_refuses_what_a_proposal_file_may_not_hold() {
    let st = State::new(ROUTES);
    let req = json!({"host": "files.example.org", "justification": "packages"});
    let mut extra = proposal("p0123456789abcdef", req.clone());
    extra["token_env"] = json!("EGRESS_PROXY_TOKEN_0");
    let mut sneaky = proposal("p0123456789abcdef", req.clone());
    sneaky["request"]["auth_header"] = json!("x-api-key");
    let many: Vec<_> = (0..=bottle_supervise::state::MAX_EXPORTED)
        .map(|i| proposal(&format!("p{i:016x}"), req.clone()))
        .collect();
    for (what, bad) in [
        ("unknown field", json!([extra])),
        ("unknown request field", json!([sneaky])),
        ("bad id", json!([proposal("p0123", req.clone())])),
        (
            "path id",
            json!([proposal("../decisions/p0123456789abcdef", req.clone())]),
        ),
        ("not an array", json!({"id": "p0123456789abcdef"})),
        ("too many", json!(many)),
    ] {
        let e = host::import(&st.root(), bad.to_string().as_bytes());
        assert!(e.is_err(), "{what}: accepted");
        assert_eq!(st.count("proposals"), 0, "{what}: wrote something");
    }
    let good = json!([proposal("p0123456789abcdef", req)]).to_string();
    assert_eq!(host::import(&st.root(), good.as_bytes()).unwrap(), 1);
    let dirs = [st.root()];
    let pending = host::list(&dirs).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].request.host, "files.example.org");
    host::approve(&dirs, "p0123456789abcdef", "op").unwrap();
    assert_eq!(host::import(&st.root(), good.as_bytes()).unwrap(), 0);
    assert!(host::list(&dirs).unwrap().is_empty(), "decided once");
}
