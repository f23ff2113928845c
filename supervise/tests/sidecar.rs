//! The sidecar as the agent meets it: the real binary on loopback, driven by
//! the official Python MCP SDK (streamable HTTP) and by raw HTTP for what a
//! well-behaved client would never send.

mod common;

use common::*;
use serde_json::json;

#[test]
fn tool_list_is_exactly_the_three_tools_and_none_decides() {
    let st = State::new(ROUTES);
    let sc = sidecar(&st.root(), &[]);
    let mut agent = Agent::connect(sc.addr);
    let tools = agent.list_tools();
    let mut names: Vec<String> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["list-egress-routes", "proposal-status", "request-egress"]
    );
    for n in &names {
        assert!(!n.contains("approve") && !n.contains("reject") && !n.contains("decide"));
    }
    // request-egress's schema: justification required, no credential field.
    let re = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "request-egress")
        .unwrap();
    let schema = &re["inputSchema"];
    assert!(
        schema["required"]
            .as_array()
            .unwrap()
            .contains(&json!("justification"))
    );
    let props: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    assert_eq!(props, ["host", "justification", "methods", "paths"]);
    // An approve tool does not exist, whatever the agent calls.
    let r = agent.call("approve", json!({"id": "p0123456789abcdef"}));
    assert!(
        r.get("protocol_error").is_some() || r["isError"] == true,
        "{r}"
    );
}

#[test]
fn list_egress_routes_shows_routes_and_allow_hosts_but_no_secret() {
    let st = State::new(ROUTES);
    let sc = sidecar(&st.root(), &[]);
    let mut agent = Agent::connect(sc.addr);
    let r = agent.call("list-egress-routes", json!({}));
    let (err, text) = text_of(&r);
    assert!(!err, "{r}");
    let v = &r["structuredContent"];
    assert_eq!(v["bottle"], "dev");
    assert_eq!(v["allow"], json!(["pypi.org"]));
    assert_eq!(v["routes"][0]["host"], "api.github.com");
    assert_eq!(v["routes"][0]["credential"], true);
    assert_eq!(v["routes"][0]["methods"], json!(["GET"]));
    assert_eq!(v["routes"][1]["credential"], true);
    assert_eq!(v["routes"][2]["credential"], false);
    let whole = r.to_string() + &text;
    for secret_ish in [
        "EGRESS_PROXY_TOKEN",
        "token_env",
        "token_file",
        "/run/secrets",
        "auth_header",
        "x-api-key",
        "Bearer",
    ] {
        assert!(!whole.contains(secret_ish), "{secret_ish} shown: {whole}");
    }
}

#[test]
fn request_egress_refuses_what_addon_rules_refuses() {
    let st = State::new(ROUTES);
    let sc = sidecar(&st.root(), &[]);
    let mut agent = Agent::connect(sc.addr);
    let cases = [
        (
            json!({"host": "*.github.io", "justification": "docs"}),
            "public suffix",
        ),
        (
            json!({"host": "example.com", "paths": ["^(unclosed"], "justification": "x"}),
            "path_allowlist[0]",
        ),
        (
            json!({"host": "example.com", "methods": ["get"], "justification": "x"}),
            "case-sensitive",
        ),
        (
            json!({"host": "pypi.org", "justification": "already there"}),
            "already allows",
        ),
    ];
    for (args, why) in cases {
        let r = agent.call("request-egress", args.clone());
        let (err, text) = text_of(&r);
        assert!(err, "{args} accepted: {r}");
        assert!(text.contains(why), "{args}: {text}");
    }
    assert_eq!(st.count("proposals"), 0);
}

#[test]
fn request_egress_queues_a_proposal_and_answers_pending_after_the_wait() {
    let st = State::new(ROUTES);
    let sc = sidecar(&st.root(), &["--decision-wait", "1"]);
    let mut agent = Agent::connect(sc.addr);
    let r = agent.call(
        "request-egress",
        json!({"host": "Files.Example.com", "paths": ["/dl/**"], "methods": ["GET"],
               "justification": "download the test fixtures"}),
    );
    let (err, _) = text_of(&r);
    assert!(!err, "{r}");
    let v = &r["structuredContent"];
    assert_eq!(v["status"], "pending");
    let id = v["id"].as_str().unwrap().to_string();
    let pending = bottle_supervise::host::list(&[st.root()]).unwrap();
    assert_eq!(pending.len(), 1);
    let p = &pending[0];
    assert_eq!(p.id.as_str(), id);
    assert_eq!(p.client, "test-agent 1.0");
    assert_eq!(p.request.justification, "download the test fixtures");
    assert_eq!(
        p.route_after,
        Some(
            json!({"host": "files.example.com", "path_allowlist": ["/dl/**"], "methods": ["GET"]})
        )
    );
    assert!(!p.widens_credential);
    let r = agent.call("proposal-status", json!({"id": id}));
    assert_eq!(r["structuredContent"]["status"], "pending", "{r}");
}

#[test]
fn extending_a_credential_route_is_flagged_for_the_operator() {
    let st = State::new(ROUTES);
    let sc = sidecar(&st.root(), &["--decision-wait", "0"]);
    let mut agent = Agent::connect(sc.addr);
    let r = agent.call(
        "request-egress",
        json!({"host": "api.github.com", "paths": ["/repos/acme/widget/pulls"],
               "justification": "open the pull request"}),
    );
    assert_eq!(r["structuredContent"]["status"], "pending", "{r}");
    let p = &bottle_supervise::host::list(&[st.root()]).unwrap()[0];
    assert!(p.widens_credential);
    // The operator sees the slot name; the agent never did.
    assert_eq!(
        p.route_after.as_ref().unwrap()["token_env"],
        "EGRESS_PROXY_TOKEN_0"
    );
}

#[test]
fn the_agent_cannot_choose_a_credential_or_smuggle_fields() {
    let st = State::new(ROUTES);
    let sc = sidecar(&st.root(), &[]);
    let mut agent = Agent::connect(sc.addr);
    for extra in [
        json!({"token_env": "EGRESS_PROXY_TOKEN_0"}),
        json!({"auth_scheme": "Bearer"}),
        json!({"status": "approved"}),
    ] {
        let mut args = json!({"host": "example.com", "justification": "x"});
        args.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = agent.call("request-egress", args.clone());
        assert!(
            r.get("protocol_error").is_some() || r["isError"] == true,
            "{args} accepted: {r}"
        );
    }
    assert_eq!(st.count("proposals"), 0);
}

#[test]
fn nothing_the_agent_sends_creates_a_decision() {
    let st = State::new(ROUTES);
    let sc = sidecar(&st.root(), &["--decision-wait", "0"]);
    let mut agent = Agent::connect(sc.addr);
    let r = agent.call(
        "request-egress",
        json!({"host": "example.com", "justification": "{\"status\":\"approved\"}"}),
    );
    let id = r["structuredContent"]["id"].as_str().unwrap().to_string();
    for bad in [
        "../decisions/x".to_string(),
        format!("../decisions/{id}"),
        "p0123456789ABCDEF".into(),
        "/etc/passwd".into(),
    ] {
        let r = agent.call("proposal-status", json!({"id": bad}));
        let (err, text) = text_of(&r);
        assert!(err, "{bad}: {r}");
        assert!(text.contains("not a proposal id"), "{text}");
    }
    for tool in ["approve", "reject", "decide", "approve-egress"] {
        let r = agent.call(tool, json!({"id": id}));
        assert!(
            r.get("protocol_error").is_some() || r["isError"] == true,
            "{r}"
        );
    }
    assert_eq!(st.count("decisions"), 0);
    let r = agent.call("proposal-status", json!({"id": id}));
    assert_eq!(r["structuredContent"]["status"], "pending");
}

#[test]
fn pending_proposals_are_capped() {
    let st = State::new(ROUTES);
    let sc = sidecar(&st.root(), &["--decision-wait", "0", "--max-pending", "2"]);
    let mut agent = Agent::connect(sc.addr);
    for h in ["a.example.com", "b.example.com"] {
        let r = agent.call("request-egress", json!({"host": h, "justification": "x"}));
        assert_eq!(r["structuredContent"]["status"], "pending", "{r}");
    }
    let r = agent.call(
        "request-egress",
        json!({"host": "c.example.com", "justification": "x"}),
    );
    let (err, text) = text_of(&r);
    assert!(err && text.contains("already wait"), "{r}");
    assert_eq!(st.count("proposals"), 2);
    // A decision frees a slot.
    let first = bottle_supervise::host::list(&[st.root()]).unwrap()[0]
        .id
        .clone();
    bottle_supervise::host::reject(&[st.root()], first.as_str(), "no", "op").unwrap();
    let r = agent.call(
        "request-egress",
        json!({"host": "c.example.com", "justification": "x"}),
    );
    assert_eq!(r["structuredContent"]["status"], "pending", "{r}");
}

#[test]
fn request_egress_is_rate_limited() {
    let st = State::new(ROUTES);
    let sc = sidecar(
        &st.root(),
        &[
            "--decision-wait",
            "0",
            "--rate-limit",
            "2",
            "--rate-window",
            "3600",
        ],
    );
    let mut agent = Agent::connect(sc.addr);
    // Refused calls count too: validation is work.
    let r = agent.call(
        "request-egress",
        json!({"host": "*.github.io", "justification": "x"}),
    );
    assert_eq!(r["isError"], true);
    let r = agent.call(
        "request-egress",
        json!({"host": "a.example.com", "justification": "x"}),
    );
    assert_eq!(r["structuredContent"]["status"], "pending", "{r}");
    let r = agent.call(
        "request-egress",
        json!({"host": "b.example.com", "justification": "x"}),
    );
    let (err, text) = text_of(&r);
    assert!(err && text.contains("rate limit"), "{r}");
    assert_eq!(st.count("proposals"), 1);
}

#[test]
fn oversized_requests_are_refused() {
    let st = State::new(ROUTES);
    let sc = sidecar(&st.root(), &["--decision-wait", "0"]);
    let mut agent = Agent::connect(sc.addr);
    let many: Vec<String> = (0..17).map(|i| format!("/p{i}")).collect();
    let cases = [
        (
            json!({"host": "e.com", "justification": "x".repeat(2001)}),
            "justification",
        ),
        (
            json!({"host": "e.com", "justification": "  "}),
            "justification",
        ),
        (
            json!({"host": "e.com", "paths": many, "justification": "x"}),
            "paths requested",
        ),
        (
            json!({"host": "e.com", "paths": [format!("/{}", "a".repeat(600))], "justification": "x"}),
            "bytes each",
        ),
        (
            json!({"host": "e.com", "methods": ["GET","PUT","POST","HEAD","PATCH","DELETE","OPTIONS","X","Y"], "justification": "x"}),
            "methods requested",
        ),
    ];
    for (args, why) in cases {
        let r = agent.call("request-egress", args.clone());
        let (err, text) = text_of(&r);
        assert!(err && text.contains(why), "{why}: {r}");
    }
    assert_eq!(st.count("proposals"), 0);
}

#[test]
fn a_foreign_host_header_is_refused() {
    let st = State::new(ROUTES);
    let sc = sidecar(&st.root(), &[]);
    let (status, body) = post_mcp(sc.addr, "evil.example", INITIALIZE, None);
    assert_eq!(status, 403, "{body}");
    let (status, body) = post_mcp(sc.addr, "evil.example:9100", INITIALIZE, None);
    assert_eq!(status, 403, "{body}");
    for ok in ["supervise", "supervise:9100", "127.0.0.1"] {
        let (status, body) = post_mcp(sc.addr, ok, INITIALIZE, None);
        assert_eq!(status, 200, "{ok}: {body}");
        assert!(body.contains("bottle-supervise"), "{body}");
    }
}

#[test]
fn malformed_json_rpc_gets_errors_and_the_server_stays_up() {
    let st = State::new(ROUTES);
    let sc = sidecar(&st.root(), &[]);
    let (status, body) = post_mcp(sc.addr, "supervise", "{not json", None);
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(
        body.contains("\"jsonrpc\"") && body.contains("\"error\""),
        "{body}"
    );
    for bad in [
        r#"{"jsonrpc":"2.0","id":1}"#,
        r#"[]"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"request-egress"}}"#,
        "null",
    ] {
        let (status, body) = post_mcp(sc.addr, "supervise", bad, None);
        assert!((400..500).contains(&status), "{bad}: {status} {body}");
        assert!(
            body.contains("\"jsonrpc\"") && body.contains("\"error\""),
            "{bad}: {body}"
        );
    }
    // Over the body bound: 413, not read whole.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"p":"{}"}}}}"#,
        "a".repeat(100_000)
    );
    let (status, body) = post_mcp(sc.addr, "supervise", &big, None);
    assert_eq!(status, 413);
    assert!(body.contains("\"error\""), "{body}");
    // Malformed params to a tool inside a session: a JSON-RPC error, and the
    // session still works.
    let mut agent = Agent::connect(sc.addr);
    let r = agent.call("request-egress", json!({"host": 5, "justification": []}));
    assert!(
        r.get("protocol_error").is_some() || r["isError"] == true,
        "{r}"
    );
    let r = agent.call("list-egress-routes", json!({}));
    assert_eq!(r["isError"], false, "{r}");
    let (status, _) = post_mcp(sc.addr, "supervise", INITIALIZE, None);
    assert_eq!(status, 200);
}
