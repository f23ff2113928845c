//! Generates a realistic routes file for the benchmarks: mostly exact hosts
//! with prefix allow lists and a deny entry, 10% wildcards, 5% with a regex,
//! some credential routes.

pub fn routes_yaml(n: usize) -> String {
    let mut s = String::from("unmatched: deny\nroutes:\n");
    for i in 0..n {
        match i % 20 {
            // 5%: a regex in the allow list.
            0 => s.push_str(&format!(
                "  - host: api{i}.svc{}.example.com\n    path_allowlist: [\"^/v[0-9]+/items/[0-9]+\", /health]\n    methods: [GET, POST]\n",
                i % 97
            )),
            // 10%: wildcards.
            1 | 2 => s.push_str(&format!("  - host: \"*.w{i}.example.net\"\n    path_allowlist: [/pkg/**, /dist]\n")),
            // Credential routes.
            3 => s.push_str(&format!(
                "  - host: api{i}.svc{}.example.com\n    path_allowlist: [/repos/acme/widget/issues, /repos/acme/widget/pulls/**]\n    path_denylist: [/repos/acme/widget/git]\n    auth_scheme: Bearer\n    token_env: TOKEN_{i}\n",
                i % 97
            )),
            _ => s.push_str(&format!(
                "  - host: api{i}.svc{}.example.com\n    path_allowlist: [/repos/acme/widget/issues, /repos/acme/widget/pulls, /users/acme/repos]\n    path_denylist: [/repos/acme/widget/issues/secret]\n",
                i % 97
            )),
        }
    }
    s
}

/// (CONNECT host, path) pairs hitting the routes: allowed, refused and unrouted.
pub fn requests(n: usize) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for k in 0..256usize {
        let i = (k * 7919) % n;
        let host = match i % 20 {
            1 | 2 => format!("cdn.w{i}.example.net"),
            _ => format!("api{i}.svc{}.example.com", i % 97),
        };
        let path = match (k % 8, i % 20) {
            (7, _) => "/not/listed".to_string(),
            (_, 0) => format!("/v2/items/{k}"),
            (_, 1 | 2) => format!("/pkg/a/b/{k}.tgz"),
            _ => format!("/repos/acme/widget/issues/{k}?state=open"),
        };
        let host = if k % 16 == 15 {
            format!("unrouted{k}.example.org")
        } else {
            host
        };
        v.push((host, path));
    }
    v
}

/// The same routes as JSON (what the launcher writes).
pub fn routes_json(n: usize) -> String {
    let q = |s: &str| format!("{s:?}");
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        v.push(match i % 20 {
            0 => format!(
                "{{\"host\": \"api{i}.svc{}.example.com\", \"path_allowlist\": [{}, \"/health\"], \"methods\": [\"GET\", \"POST\"]}}",
                i % 97,
                q("^/v[0-9]+/items/[0-9]+")
            ),
            1 | 2 => format!("{{\"host\": \"*.w{i}.example.net\", \"path_allowlist\": [\"/pkg/**\", \"/dist\"]}}"),
            3 => format!(
                "{{\"host\": \"api{i}.svc{}.example.com\", \"path_allowlist\": [\"/repos/acme/widget/issues\", \"/repos/acme/widget/pulls/**\"], \"path_denylist\": [\"/repos/acme/widget/git\"], \"auth_scheme\": \"Bearer\", \"token_env\": \"TOKEN_{i}\"}}",
                i % 97
            ),
            _ => format!(
                "{{\"host\": \"api{i}.svc{}.example.com\", \"path_allowlist\": [\"/repos/acme/widget/issues\", \"/repos/acme/widget/pulls\", \"/users/acme/repos\"], \"path_denylist\": [\"/repos/acme/widget/issues/secret\"]}}",
                i % 97
            ),
        });
    }
    format!(
        "{{\"unmatched\": \"deny\", \"routes\": [\n{}\n]}}",
        v.join(",\n")
    )
}
