//! Path normalization (SPEC §3.2). Owns the single transformation from the
//! path a client sent to the path that is both matched against route patterns
//! and sent upstream, so the two can never disagree.
//! Must never collapse, resolve or re-encode anything beyond what §3.2 says:
//! unreserved characters are decoded, other encodings stay encoded (hex
//! uppercased), everything ambiguous is refused.

use std::borrow::Cow;

/// Why a path was refused; `Display` is a short phrase for the 400 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not starting with `/`.
    NotAbsolute,
    /// `%` not followed by two hex digits.
    MalformedPercent,
    /// `%2F`: would change the segment structure at the origin.
    EncodedSlash,
    /// `%5C` or a raw `\`: some servers treat it as `/`.
    Backslash,
    /// `%00`.
    EncodedNul,
    /// Percent-encoded bytes that are not UTF-8.
    InvalidUtf8,
    /// A `.` or `..` segment, raw or encoded, also before `;`.
    DotSegment,
    /// A raw byte that may not appear in a path (control, space, non-ASCII, `?`, `#`).
    RawByte,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "path does not start with '/'",
            PathError::MalformedPercent => {
                "path holds a malformed percent-encoding (% not followed by two hex digits)"
            }
            PathError::EncodedSlash => "path holds an encoded '/' (%2F)",
            PathError::Backslash => "path holds a '\\' (raw or %5C)",
            PathError::EncodedNul => "path holds an encoded NUL (%00)",
            PathError::InvalidUtf8 => "path holds percent-encoded bytes that are not UTF-8",
            PathError::DotSegment => "path holds a '.' or '..' segment (raw or encoded)",
            PathError::RawByte => {
                "path holds a character that must be percent-encoded (control, space or non-ASCII)"
            }
        })
    }
}

impl std::error::Error for PathError {}

/// Step 2 of a decision: the normalized path, or 400 `bad-path`.
pub(crate) fn normalize_step<'r>(
    raw_path: &'r str,
    trace: &mut crate::trace::Trace<'_>,
) -> Result<Cow<'r, str>, crate::reason::Refusal> {
    let path = normalize_path(raw_path)
        .map_err(|e| crate::reason::Refusal::new(crate::reason::Reason::BadPath, e.to_string()))?;
    trace.step(|| format!("2 path: normalized to {path:?}"));
    Ok(path)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The value of one hex digit (either case); the workspace's one hex decoder.
pub fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Normalizes a request path (query already split off) per SPEC §3.2.
/// Borrowed when `raw` is normalized already, as almost every path is.
///
/// ```
/// use addon_rules::normalize_path;
/// assert_eq!(normalize_path("/a/%7Euser/%2a//b").unwrap(), "/a/~user/%2A//b");
/// assert!(normalize_path("/a/%2e%2E/b").is_err());
/// assert!(normalize_path("/a%2Fb").is_err());
/// ```
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if is_plain(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    normalize_full(raw).map(Cow::Owned)
}

/// True when [`normalize_full`] would return `raw` unchanged: it starts with
/// `/`, every byte is one the full pass copies as it is (printable ASCII but
/// `%`, `\`, `?` and `#`), and no segment starts with `.` (so none is a dot
/// segment). No allocation, no early exit: branch-free folds the compiler
/// turns into vector code, as this runs on every request.
fn is_plain(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let odd = bytes.iter().fold(false, |odd, &b| {
        odd | !(0x21..=0x7e).contains(&b) | (b == b'%') | (b == b'\\') | (b == b'?') | (b == b'#')
    });
    let dot_after_slash = bytes
        .iter()
        .zip(&bytes[1..])
        .fold(false, |found, (&a, &b)| found | ((a == b'/') & (b == b'.')));
    !odd && !dot_after_slash
}

/// The whole of §3.2, for a path that [`is_plain`] did not pass.
fn normalize_full(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut out = String::with_capacity(raw.len());
    // Start of the current run of encoded non-ASCII bytes, and the run itself,
    // checked as UTF-8 when the run ends.
    let mut high = [0u8; 4];
    let mut high_len = 0usize;
    let mut pending: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (h, l) = match (
                bytes.get(i + 1).copied().and_then(hex_digit),
                bytes.get(i + 2).copied().and_then(hex_digit),
            ) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(PathError::MalformedPercent),
            };
            let v = h * 16 + l;
            i += 3;
            if v >= 0x80 {
                if high_len < 4 {
                    high[high_len] = v;
                    high_len += 1;
                } else {
                    pending.extend_from_slice(&high);
                    high_len = 0;
                    pending.push(v);
                }
                out.push('%');
                out.push(HEX_UPPER[(v >> 4) as usize] as char);
                out.push(HEX_UPPER[(v & 15) as usize] as char);
                continue;
            }
            flush_utf8(&mut high, &mut high_len, &mut pending)?;
            match v {
                b'/' => return Err(PathError::EncodedSlash),
                b'\\' => return Err(PathError::Backslash),
                0 => return Err(PathError::EncodedNul),
                v if is_unreserved(v) => out.push(v as char),
                v => {
                    out.push('%');
                    out.push(HEX_UPPER[(v >> 4) as usize] as char);
                    out.push(HEX_UPPER[(v & 15) as usize] as char);
                }
            }
            continue;
        }
        flush_utf8(&mut high, &mut high_len, &mut pending)?;
        match b {
            b'\\' => return Err(PathError::Backslash),
            b'?' | b'#' => return Err(PathError::RawByte),
            0x21..=0x7e => out.push(b as char),
            _ => return Err(PathError::RawByte),
        }
        i += 1;
    }
    flush_utf8(&mut high, &mut high_len, &mut pending)?;
    if has_dot_segment(&out) {
        return Err(PathError::DotSegment);
    }
    Ok(out)
}

#[inline(always)]
fn flush_utf8(
    high: &mut [u8; 4],
    high_len: &mut usize,
    pending: &mut Vec<u8>,
) -> Result<(), PathError> {
    if *high_len == 0 && pending.is_empty() {
        return Ok(());
    }
    flush_utf8_slow(high, high_len, pending)
}

fn flush_utf8_slow(
    high: &mut [u8; 4],
    high_len: &mut usize,
    pending: &mut Vec<u8>,
) -> Result<(), PathError> {
    let ok = if pending.is_empty() {
        std::str::from_utf8(&high[..*high_len]).is_ok()
    } else {
        pending.extend_from_slice(&high[..*high_len]);
        std::str::from_utf8(pending).is_ok()
    };
    *high_len = 0;
    pending.clear();
    if ok {
        Ok(())
    } else {
        Err(PathError::InvalidUtf8)
    }
}

/// A segment that is `.` or `..` once a `;parameter` (raw `;` or `%3B`) is
/// cut off: servers such as Tomcat resolve `..;x` as `..`.
fn has_dot_segment(normalized: &str) -> bool {
    normalized.split('/').any(|seg| {
        // Cheap reject first: a dot segment starts with '.'.
        if !seg.starts_with('.') {
            return false;
        }
        let end = seg.find(';').unwrap_or(seg.len());
        let seg = &seg[..end];
        let seg = match seg.find("%3B") {
            Some(i) => &seg[..i],
            None => seg,
        };
        seg == "." || seg == ".."
    })
}

/// True when `s` is a normalized path (what [`normalize_path`] returns on it unchanged).
pub fn is_normalized(s: &str) -> bool {
    normalize_path(s).is_ok_and(|n| n == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases() {
        assert_eq!(normalize_path("/").unwrap(), "/");
        assert_eq!(normalize_path("//a//").unwrap(), "//a//");
        assert_eq!(normalize_path("/%41%62").unwrap(), "/Ab");
        assert_eq!(
            normalize_path("/%25%2f".replace("%2f", "x").as_str()).unwrap(),
            "/%25x"
        );
        assert_eq!(normalize_path("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(normalize_path("/a/.../b").unwrap(), "/a/.../b");
        assert_eq!(normalize_path("/a/.b").unwrap(), "/a/.b");
        for (p, e) in [
            ("/a%2fb", PathError::EncodedSlash),
            ("/a%5Cb", PathError::Backslash),
            ("/a\\b", PathError::Backslash),
            ("/a%00", PathError::EncodedNul),
            ("/a%zz", PathError::MalformedPercent),
            ("/a%4", PathError::MalformedPercent),
            ("/a%c3", PathError::InvalidUtf8),
            ("/a%c3A", PathError::InvalidUtf8),
            ("/a%ff%fe", PathError::InvalidUtf8),
            ("/a/../b", PathError::DotSegment),
            ("/a/./b", PathError::DotSegment),
            ("/a/.", PathError::DotSegment),
            ("/a/%2e%2e/b", PathError::DotSegment),
            ("/a/.%2E;x/b", PathError::DotSegment),
            ("/a/..%3bx/b", PathError::DotSegment),
            ("/a b", PathError::RawByte),
            ("a", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
        ] {
            assert_eq!(normalize_path(p), Err(e), "{p}");
        }
    }

    /// Pieces of request targets that normalization treats specially, in
    /// both cases, raw and encoded.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("/"),
            Just("//"),
            Just("."),
            Just(".."),
            Just("a"),
            Just("A"),
            Just("~"),
            Just(";"),
            Just(";x"),
            Just("%3B"),
            Just("%3b"),
            Just("?"),
            Just("#"),
            Just("\\"),
            Just("%2e"),
            Just("%2E"),
            Just("%2f"),
            Just("%2F"),
            Just("%5c"),
            Just("%5C"),
            Just("%00"),
            Just("%41"),
            Just("%7e"),
            Just("%25"),
            Just("%"),
            Just("%z"),
            Just("%c3%a9"),
            Just("%C3"),
            Just("%ff"),
            Just("é"),
            Just(" "),
            Just("\t"),
            Just("*"),
            Just("-"),
            Just("_"),
        ]
        .prop_map(str::to_string)
    }

    fn target() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::collection::vec(piece(), 0..12).prop_map(|p| p.concat()),
            1 => "\\PC{0,24}",
            1 => "/[ -~]{0,24}",
        ]
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The fast path gives exactly what the full normalization gives: a
        /// path it passes through is one the full pass leaves unchanged.
        #[test]
        fn fast_path_equals_full_normalization(t in target()) {
            let full = normalize_full(&t);
            prop_assert_eq!(normalize_path(&t).map(Cow::into_owned), full.clone());
            if is_plain(&t) {
                prop_assert_eq!(full, Ok(t));
            }
        }
    }

    #[test]
    fn fast_path_is_taken_for_plain_paths_only() {
        for p in [
            "/",
            "//a//",
            "/repos/acme/widget/issues/12",
            "/a;b=c/d",
            "/a/b./c",
            "/*",
        ] {
            assert!(is_plain(p), "{p}");
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
        for p in [
            "", "a", "/a/.b", "/.", "/a%41", "/a b", "/a\\b", "/a?b", "/a#b", "/é",
        ] {
            assert!(!is_plain(p), "{p}");
        }
    }
}
