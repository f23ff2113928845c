//! Method overrides (SPEC §2 `methods`): the headers `X-HTTP-Method-Override`,
//! `X-HTTP-Method`, `X-Method-Override` and the `_method` query parameter,
//! which frameworks (Rails, Laravel, Express middleware, many Java stacks)
//! honour as the request's real method. Owns finding the first override that
//! a predicate rejects. Must never read a body: a `_method` form field in a
//! urlencoded body cannot be seen without buffering it (docs/routes.md).

use http::HeaderMap;

use crate::git::decoded_eq_ignore_case;

/// The override headers, lowercase.
pub(crate) const HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The query parameter (matched by its decoded name, ignoring case).
pub(crate) const QUERY_PARAM: &str = "_method";

/// The first method an override names for which `refused` is true, with where
/// it was found (for the message). Every value of every override header and
/// every `_method` parameter is read; a value holding several names
/// (`PUT, DELETE`) is read name by name; empty names are ignored; a value that
/// is not text is refused as it stands. Allocates only for a `_method`
/// parameter.
pub(crate) fn find_refused(
    headers: &HeaderMap,
    query: Option<&str>,
    mut refused: impl FnMut(&str) -> bool,
) -> Option<(&'static str, String)> {
    // One pass over the names, no lookup by name: parsing and hashing three
    // names would cost more than the rest of a decision's header work.
    for key in headers.keys() {
        let Some(name) = HEADERS.iter().copied().find(|h| *h == key.as_str()) else {
            continue;
        };
        for v in headers.get_all(key) {
            let Ok(v) = v.to_str() else {
                return Some((name, "(a value that is not ASCII text)".to_string()));
            };
            if let Some(m) = v
                .split(',')
                .map(str::trim)
                .find(|m| !m.is_empty() && refused(m))
            {
                return Some((name, m.to_string()));
            }
        }
    }
    let q = query?;
    // `_` is in the name raw or as `%5F`: most queries are skipped here.
    if !q.bytes().any(|b| b == b'_' || b == b'%') {
        return None;
    }
    for pair in q.split(['&', ';']) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !decoded_eq_ignore_case(k, QUERY_PARAM) {
            continue;
        }
        let v = form_decode(v);
        if let Some(m) = v
            .split(',')
            .map(str::trim)
            .find(|m| !m.is_empty() && refused(m))
        {
            return Some(("the _method query parameter", m.to_string()));
        }
    }
    None
}

/// A client-sent method name for a message: at most 40 characters, quoted.
pub(crate) fn shorten(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{:?}...", &s[..i]),
        None => format!("{s:?}"),
    }
}

/// Form-style decoding (`+` is a space, `%xx` decoded, a malformed escape
/// kept as written, bytes that are not UTF-8 replaced).
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hexval(b[i + 1]), hexval(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hexval(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outside_get(m: &str) -> bool {
        !m.eq_ignore_ascii_case("GET")
    }

    #[test]
    fn headers_and_query_are_read_value_by_value() {
        let mut h = HeaderMap::new();
        assert_eq!(find_refused(&h, Some("a=1&_method=get"), outside_get), None);
        assert_eq!(
            find_refused(&h, Some("a=1&_method=DELETE"), outside_get),
            Some(("the _method query parameter", "DELETE".into()))
        );
        assert_eq!(
            find_refused(&h, Some("%5Fmethod=d%45lete"), outside_get).map(|x| x.1),
            Some("dElete".into())
        );
        assert_eq!(
            find_refused(&h, Some("_METHOD=get,+put"), outside_get).map(|x| x.1),
            Some("put".into())
        );
        assert_eq!(find_refused(&h, Some("x_method=PUT"), outside_get), None);
        assert_eq!(find_refused(&h, Some("_method="), outside_get), None);
        h.append("x-http-method", "GET".parse().unwrap());
        assert_eq!(find_refused(&h, None, outside_get), None);
        h.append("x-http-method", "get, PATCH".parse().unwrap());
        assert_eq!(
            find_refused(&h, None, outside_get),
            Some(("x-http-method", "PATCH".into()))
        );
        let mut h = HeaderMap::new();
        h.append(
            "x-method-override",
            http::HeaderValue::from_bytes(b"\xffPUT").unwrap(),
        );
        assert!(find_refused(&h, None, outside_get).is_some());
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a+b%41%zz%4"), "a bA%zz%4");
        assert_eq!(form_decode("%"), "%");
        assert_eq!(form_decode("%5f"), "_");
    }
}
