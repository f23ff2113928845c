//! routes.json for egress-proxy (SPEC §2): `unmatched: deny`, the manifest's
//! routes with token *slot names*, then one plain route per `allow` host.
//!
//! Must never: contain a secret value or a host variable's name (only slots).

use serde_json::{Map, Value, json};

use crate::model::Bottle;

/// Renders the routes file. `slot_of(route_index)` names the route's token slot.
pub fn render(bottle: &Bottle, slot_of: impl Fn(usize) -> Option<String>) -> String {
    let mut routes = Vec::new();
    for (i, r) in bottle.routes.iter().enumerate() {
        let mut o = Map::new();
        o.insert("host".into(), json!(r.host));
        if !r.path_allowlist.is_empty() {
            o.insert("path_allowlist".into(), json!(r.path_allowlist));
        }
        if !r.path_denylist.is_empty() {
            o.insert("path_denylist".into(), json!(r.path_denylist));
        }
        if !r.methods.is_empty() {
            o.insert("methods".into(), json!(r.methods));
        }
        if let Some(a) = &r.auth {
            if let Some(h) = &a.header {
                o.insert("auth_header".into(), json!(h));
            }
            if let Some(s) = &a.scheme {
                o.insert("auth_scheme".into(), json!(s));
            }
            if let Some(slot) = slot_of(i) {
                o.insert("token_env".into(), json!(slot));
            }
        }
        if !r.strip_headers.is_empty() {
            o.insert("strip_headers".into(), json!(r.strip_headers));
        }
        routes.push(Value::Object(o));
    }
    for h in &bottle.allow {
        routes.push(json!({ "host": h }));
    }
    let doc = json!({ "unmatched": "deny", "routes": routes });
    // serde_json keeps insertion order only with preserve_order; keys are sorted,
    // which is stable too.
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}
