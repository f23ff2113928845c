//! Git push detection (SPEC §3.3): a push over smart HTTP is refused on every
//! host, routed or not, before route matching. Owns the three signals: a
//! `git-receive-pack` path segment, `service=git-receive-pack` in the query,
//! and the receive-pack request content type.
//! Must never depend on the host or the route: a forge the user allowed for
//! reading must not become a way to push.

use http::HeaderMap;

use crate::reason::{Reason, Refusal};
use crate::trace::Trace;

const RECEIVE_PACK: &str = "git-receive-pack";
const RECEIVE_PACK_CT: &str = "application/x-git-receive-pack-request";

/// Step 3 of a decision: 403 `git-push` when any signal says push.
pub(crate) fn block_push(
    normalized_path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    trace: &mut Trace<'_>,
) -> Result<(), Refusal> {
    if let Some(signal) = push_signal(normalized_path, query, headers) {
        trace.step(|| format!("3 git-push: {signal}"));
        return Err(Refusal::new(
            Reason::GitPush,
            format!("git push over HTTP is blocked: {signal}"),
        ));
    }
    trace.step(|| "3 git-push: not a push".into());
    Ok(())
}

/// Which signal identified a push, for messages and `explain`.
pub(crate) fn push_signal(
    normalized_path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Option<&'static str> {
    // The path is normalized: every percent-encoding of these letters and '-'
    // was decoded, so `git%2Dreceive-pack` arrives here as `git-receive-pack`.
    // Bytes, not `str::split`: one loop instead of a `find` per segment, on
    // every request. A segment shorter than the name cannot hold it, so
    // only a long one is cut at `;`.
    if normalized_path.as_bytes().split(|&b| b == b'/').any(|seg| {
        seg.len() >= RECEIVE_PACK.len() && {
            let name = seg.split(|&b| b == b';').next().unwrap_or(seg);
            name.eq_ignore_ascii_case(RECEIVE_PACK.as_bytes())
        }
    }) {
        return Some("a path segment is git-receive-pack");
    }
    // The refs advertisement of a push: the path ends with `/info/refs` on a
    // segment boundary (SPEC §3.3; `/x/info/refs2` is not it). Read as the
    // segment rule above reads names (case-insensitive, `;` parameters
    // dropped) and with one trailing `/` allowed, variants a lax origin may
    // still route to the advertisement.
    // The query first: most requests with a query ask for no service.
    if let Some(q) = query
        && q.split(['&', ';']).any(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            decoded_eq_ignore_case(k, "service") && decoded_eq_ignore_case(v, RECEIVE_PACK)
        })
        && ends_with_info_refs(normalized_path)
    {
        return Some("the query asks for service=git-receive-pack");
    }
    if headers.get_all(http::header::CONTENT_TYPE).iter().any(|v| {
        let v = String::from_utf8_lossy(v.as_bytes());
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case(RECEIVE_PACK_CT)
    }) {
        return Some("the Content-Type is application/x-git-receive-pack-request");
    }
    None
}

/// True when the last two segments (one trailing `/` ignored) are `info` and
/// `refs`, compared without `;` parameters and ignoring ASCII case.
fn ends_with_info_refs(path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut segs = path
        .rsplit('/')
        .map(|seg| seg.split(';').next().unwrap_or(seg));
    matches!(
        (segs.next(), segs.next()),
        (Some(refs), Some(info)) if refs.eq_ignore_ascii_case("refs") && info.eq_ignore_ascii_case("info")
    )
}

/// Form-style percent-decoding (`+` is a space; a malformed escape stays as
/// written) compared case-insensitively with an ASCII `word`, without
/// allocating: this runs on every request with a query.
pub(crate) fn decoded_eq_ignore_case(s: &str, word: &str) -> bool {
    let b = s.as_bytes();
    let w = word.as_bytes();
    let (mut i, mut j) = (0, 0);
    while i < b.len() {
        let (c, step) = match b[i] {
            b'+' => (b' ', 1),
            b'%' => match (
                b.get(i + 1).copied().and_then(crate::path::hex_digit),
                b.get(i + 2).copied().and_then(crate::path::hex_digit),
            ) {
                (Some(h), Some(l)) => (h * 16 + l, 3),
                _ => (b'%', 1),
            },
            c => (c, 1),
        };
        if j >= w.len() || !c.eq_ignore_ascii_case(&w[j]) {
            return false;
        }
        i += step;
        j += 1;
    }
    j == w.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        let h = HeaderMap::new();
        assert!(push_signal("/o/r.git/git-receive-pack", None, &h).is_some());
        assert!(push_signal("/o/r.git/GIT-Receive-Pack;x", None, &h).is_some());
        assert!(push_signal("/o/r.git/info/refs", Some("service=git-receive-pack"), &h).is_some());
        assert!(
            push_signal(
                "/o/r.git/info/refs",
                Some("a=1&SERVICE=git%2Dreceive%2Dpack"),
                &h
            )
            .is_some()
        );
        assert!(push_signal("/o/r.git/info/refs", Some("service=git-upload-pack"), &h).is_none());
        // Only the refs advertisement path (SPEC §3.3), on a segment boundary.
        let push = Some("service=git-receive-pack");
        for p in [
            "/info/refs",
            "/o/r.git/Info/REFS",
            "/o/r.git/info/refs/",
            "/o/r/info;x/refs;y",
        ] {
            assert!(push_signal(p, push, &h).is_some(), "{p}");
        }
        for p in [
            "/x/info/refs2",
            "/x/myinfo/refs",
            "/x/info/refs/y",
            "/refs",
            "/",
            "/x",
        ] {
            assert!(push_signal(p, push, &h).is_none(), "{p}");
        }
        assert!(push_signal("/o/r.git/git-upload-pack", None, &h).is_none());
        assert!(push_signal("/o/git-receive-packs", None, &h).is_none());
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            "Application/X-Git-Receive-Pack-Request; charset=x"
                .parse()
                .unwrap(),
        );
        assert!(push_signal("/x", None, &h).is_some());
        assert!(decoded_eq_ignore_case("%4", "%4"));
        assert!(decoded_eq_ignore_case("a%41+", "aa "));
        assert!(!decoded_eq_ignore_case("servic", "service"));
        assert!(!decoded_eq_ignore_case("services", "service"));
    }
}
