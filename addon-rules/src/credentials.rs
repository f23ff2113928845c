//! Step 7 of a decision (SPEC §3.7): credentials. Owns the rule that a
//! credential route is reached only inside TLS (403 `cleartext-credentials`)
//! and the trace of what will be injected and stripped.
//! Must never read or hold the secret: the credential is named by its source,
//! the proxy reads the value.

use crate::facts::Transport;
use crate::reason::{Reason, Refusal};
use crate::routes::Route;
use crate::trace::Trace;

/// Step 7: `route`'s credential may be sent over `transport`.
pub(crate) fn check(
    route: &Route,
    transport: &Transport<'_>,
    trace: &mut Trace<'_>,
) -> Result<(), Refusal> {
    let Some(c) = route.credential() else {
        trace.step(|| "7 credentials: none".into());
        return Ok(());
    };
    if !matches!(transport, Transport::Tls { .. }) {
        return Err(Refusal::new(
            Reason::CleartextCredentials,
            format!(
                "host {} gets a credential and is reachable only over https",
                route.host()
            ),
        )
        .on_route(route.host()));
    }
    trace.step(|| {
        format!(
            "7 credentials: inject {}{} from {}, strip {}",
            c.header,
            c.scheme
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default(),
            c.source,
            route
                .strip_headers()
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    Ok(())
}
