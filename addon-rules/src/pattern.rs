//! Path patterns of `path_allowlist` / `path_denylist` (SPEC §2): plain
//! prefixes on a segment boundary, `*` / `**` globs, and `^regex` entries.
//! Owns their compilation at load time and their matching at request time.
//! Must never compile anything per request: plain prefixes are compared
//! directly, globs and regexes go into one `RegexSet` per list.

use regex::bytes::{RegexSet, RegexSetBuilder};

use crate::path::normalize_path;

/// Regex compile limits: a routes file is trusted, but a typo must not make
/// a pattern that takes seconds to compile or megabytes per request.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One compiled list of patterns.
#[derive(Debug, Clone, Default)]
pub struct PatternList {
    /// The entries as written, for `explain`, docs and error messages.
    raw: Vec<String>,
    /// Plain entries (no `*`, not a regex): prefix on a segment boundary.
    /// Each holds the index into `raw`.
    prefixes: Vec<(String, usize)>,
    /// `*` / `**` entries, matched by hand (compiling them to regexes made
    /// loading 10 000 routes take far too long).
    globs: Vec<(Glob, usize)>,
    /// Globs and regexes, compiled together; `set_index[i]` maps pattern i of
    /// the set to its index into `raw`.
    set: Option<RegexSet>,
    set_index: Vec<usize>,
}

impl PatternList {
    /// Compiles `entries`; on failure returns `(entry index, message, fix)` for
    /// every bad entry.
    pub(crate) fn compile(entries: &[String]) -> Result<PatternList, Vec<(usize, String, String)>> {
        let mut errors = Vec::new();
        let mut prefixes = Vec::new();
        let mut globs = Vec::new();
        let mut regexes = Vec::new();
        let mut set_index = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match compile_one(e) {
                Ok(Compiled::Prefix(p)) => prefixes.push((p, i)),
                Ok(Compiled::Glob(g)) => globs.push((g, i)),
                Ok(Compiled::Regex(r)) => {
                    regexes.push(r);
                    set_index.push(i);
                }
                Err((msg, fix)) => errors.push((i, msg, fix)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let set = if regexes.is_empty() {
            None
        } else {
            match builder(&regexes).build() {
                Ok(s) => Some(s),
                // Name the entry that fails on its own, if one does.
                Err(e) => {
                    let culprit = regexes
                        .iter()
                        .position(|r| builder(std::slice::from_ref(r)).build().is_err())
                        .unwrap_or(0);
                    let i = set_index.get(culprit).copied().unwrap_or(0);
                    return Err(vec![(
                        i,
                        format!(
                            "pattern {:?} does not compile: {}",
                            entries[i],
                            one_line(&e.to_string())
                        ),
                        "simplify the regular expression (Rust `regex` syntax, ASCII classes)"
                            .into(),
                    )]);
                }
            }
        };
        Ok(PatternList {
            raw: entries.to_vec(),
            prefixes,
            globs,
            set,
            set_index,
        })
    }

    /// The list an origin that ignores case and merges slashes would apply,
    /// for matching a path folded by [`fold_path`]: plain and glob entries
    /// folded the same way, regexes matched case-insensitively (a regex
    /// cannot have its slashes collapsed: one that spells `//` matches only
    /// paths as sent). `None` when that list is this one (no entry has an
    /// upper-case letter, a `//` or is a regex), so no second list is kept.
    /// `Err` only when a case-insensitive regex set exceeds the size limit.
    pub(crate) fn folded(&self) -> Result<Option<PatternList>, (usize, String, String)> {
        let unchanged = self
            .raw
            .iter()
            .all(|e| !e.starts_with('^') && matches!(fold_path(e), std::borrow::Cow::Borrowed(_)));
        if unchanged {
            return Ok(None);
        }
        let mut out = PatternList {
            raw: self.raw.clone(),
            ..PatternList::default()
        };
        let mut regexes = Vec::new();
        for (i, e) in self.raw.iter().enumerate() {
            if let Some(body) = e.strip_prefix('^') {
                regexes.push(format!("(?i)^(?:{body})$"));
                out.set_index.push(i);
                continue;
            }
            match compile_plain(&fold_path(e)) {
                Compiled::Prefix(p) => out.prefixes.push((p, i)),
                Compiled::Glob(g) => out.globs.push((g, i)),
                Compiled::Regex(_) => {}
            }
        }
        if !regexes.is_empty() {
            match builder(&regexes).build() {
                Ok(set) => out.set = Some(set),
                Err(e) => {
                    let i = out.set_index.first().copied().unwrap_or(0);
                    return Err((
                        i,
                        format!(
                            "the deny list's regular expressions, matched case-insensitively, do not compile: {}",
                            one_line(&e.to_string())
                        ),
                        "simplify the regular expressions (Rust `regex` syntax, ASCII classes)"
                            .into(),
                    ));
                }
            }
        }
        Ok(Some(out))
    }

    /// True when the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The entries as written in the routes file.
    pub fn entries(&self) -> &[String] {
        &self.raw
    }

    /// True when some entry matches the normalized `path`.
    pub fn matches(&self, path: &str) -> bool {
        self.prefixes.iter().any(|(p, _)| prefix_matches(p, path))
            || self.globs.iter().any(|(g, _)| g.matches(path))
            || self
                .set
                .as_ref()
                .is_some_and(|s| s.is_match(path.as_bytes()))
    }

    /// The first entry (in file order) matching `path`, for `explain`.
    pub fn first_match(&self, path: &str) -> Option<&str> {
        let p = self
            .prefixes
            .iter()
            .find(|(p, _)| prefix_matches(p, path))
            .map(|(_, i)| *i);
        let g = self
            .globs
            .iter()
            .find(|(g, _)| g.matches(path))
            .map(|(_, i)| *i);
        let r = self
            .set
            .as_ref()
            .and_then(|set| set.matches(path.as_bytes()).into_iter().next())
            .map(|m| self.set_index[m]);
        [p, g, r]
            .into_iter()
            .flatten()
            .min()
            .map(|i| self.raw[i].as_str())
    }
}

/// `/a/b` matches `/a/b`, `/a/b/`, `/a/b/...`, never `/a/bc`; `/a/` matches
/// everything below `/a/`; `/` matches every path.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some("") => true,
        Some(rest) => prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// Normalized paths are ASCII (everything else is percent-encoded), so
/// Unicode tables are dead weight that multiplies compile time; matching is
/// on bytes so ASCII-only classes are allowed.
fn builder(patterns: &[String]) -> RegexSetBuilder {
    let mut b = RegexSetBuilder::new(patterns);
    b.unicode(false)
        .size_limit(REGEX_SIZE_LIMIT * patterns.len().max(1))
        .dfa_size_limit(REGEX_SIZE_LIMIT);
    b
}

enum Compiled {
    Prefix(String),
    Glob(Glob),
    Regex(String),
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn compile_one(e: &str) -> Result<Compiled, (String, String)> {
    if let Some(body) = e.strip_prefix('^') {
        if !body.is_ascii() {
            return Err((
                format!(
                    "pattern {e:?} holds non-ASCII characters, which a normalized path never does"
                ),
                "write them percent-encoded in uppercase, e.g. %C3%A9 for \u{e9}".into(),
            ));
        }
        // Anchor at both ends whatever the author wrote: `^/a` must not
        // silently mean "starts with /a" when the SPEC says "whole path".
        let anchored = format!("^(?:{body})$");
        // Syntax check only (cheap); the list is compiled once, as one set.
        let parsed = regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(&anchored);
        return match parsed {
            Ok(_) => Ok(Compiled::Regex(anchored)),
            Err(err) => Err((
                format!("pattern {e:?} is not a valid regular expression: {}", one_line(&err.to_string())),
                "fix the regex (Rust `regex` syntax), or write a plain path without the leading '^'".into(),
            )),
        };
    }
    if !e.starts_with('/') {
        return Err((
            format!("pattern {e:?} does not start with '/' or '^'"),
            format!(
                "write a path such as \"/{}\", or a regular expression starting with '^'",
                e.trim_start_matches('/')
            ),
        ));
    }
    if e.contains('?') || e.contains('#') {
        return Err((
            format!(
                "pattern {e:?} holds '?' or '#': patterns match the path only, never the query"
            ),
            "remove the query or fragment from the pattern".into(),
        ));
    }
    // Normalization must leave the pattern unchanged, `*` included (it is a
    // legal path character), so what is written is what is compared.
    match normalize_path(e) {
        Ok(n) if n == e => {}
        Ok(n) => {
            return Err((
                format!("pattern {e:?} is not in normalized form"),
                format!(
                    "write it as {n:?} (unreserved characters decoded, other percent-encodings in uppercase)"
                ),
            ));
        }
        Err(why) => {
            return Err((
                format!("pattern {e:?} would be refused as a request path: {why}"),
                "write the path without it".into(),
            ));
        }
    }
    if e.split('/').any(|seg| seg.contains("**") && seg != "**") {
        return Err((
            format!("pattern {e:?}: '**' must be a whole segment"),
            "write '/**/' for any number of segments, or '*' for part of one segment".into(),
        ));
    }
    Ok(compile_plain(e))
}

/// A plain or glob entry that passed the checks of [`compile_one`] (or its
/// folded form, see [`PatternList::folded`]).
fn compile_plain(e: &str) -> Compiled {
    if !e.contains('*') {
        return Compiled::Prefix(e.to_string());
    }
    let mut segs = Vec::new();
    let body = &e[1..];
    let n = body.split('/').count();
    for (k, seg) in body.split('/').enumerate() {
        if seg == "**" {
            segs.push(GSeg::DoubleStar);
        } else if seg.is_empty() && k == n - 1 && n > 1 {
            // A trailing '/': any one segment (even empty), then anything below.
            segs.push(GSeg::Any);
        } else if seg.contains('*') {
            let mut toks = Vec::new();
            for (j, lit) in seg.split('*').enumerate() {
                if j > 0 {
                    // '*' is one or more characters: one, then any number.
                    toks.push(Tok::One);
                    toks.push(Tok::Many);
                }
                if !lit.is_empty() {
                    toks.push(Tok::Lit(lit.as_bytes().to_vec()));
                }
            }
            segs.push(GSeg::Star(toks));
        } else {
            segs.push(GSeg::Lit(seg.to_string()));
        }
    }
    // A plain pattern also matches everything below it on a segment boundary.
    if segs.last() != Some(&GSeg::DoubleStar) {
        segs.push(GSeg::DoubleStar);
    }
    Compiled::Glob(Glob { segs })
}

/// The path with every segment's `;` parameters removed, the form a Tomcat-
/// or Jetty-style origin reads; `None` when it has none.
pub(crate) fn without_parameters(path: &str) -> Option<String> {
    if !path.contains(';') {
        return None;
    }
    let segments: Vec<&str> = path
        .split('/')
        .map(|seg| seg.split_once(';').map_or(seg, |(name, _)| name))
        .collect();
    Some(segments.join("/"))
}

/// The form an origin that ignores case and merges slashes reads: ASCII
/// lowercase, runs of `/` collapsed to one. Borrowed when already folded.
pub(crate) fn fold_path(path: &str) -> std::borrow::Cow<'_, str> {
    // No allocation, and branch-free folds the compiler turns into vector
    // code: this runs on every request to a route with a deny list, and most
    // paths are folded already.
    let b = path.as_bytes();
    let upper = b.iter().fold(false, |u, c| u | c.is_ascii_uppercase());
    let double_slash = b
        .iter()
        .zip(b.get(1..).unwrap_or_default())
        .fold(false, |d, (&x, &y)| d | ((x == b'/') & (y == b'/')));
    let folded_already = !upper && !double_slash;
    if folded_already {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c.to_ascii_lowercase());
    }
    std::borrow::Cow::Owned(out)
}

/// A compiled `*` / `**` pattern: matched segment by segment without
/// allocating, in O(pattern x path) worst case (greedy with backtracking
/// to the last `**` only, the classic wildcard algorithm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    segs: Vec<GSeg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GSeg {
    /// Exactly this segment.
    Lit(String),
    /// A segment with `*` in it.
    Star(Vec<Tok>),
    /// Any one segment.
    Any,
    /// Zero or more whole segments.
    DoubleStar,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(Vec<u8>),
    One,
    Many,
}

impl GSeg {
    fn matches(&self, seg: &str) -> bool {
        match self {
            GSeg::Lit(l) => l == seg,
            GSeg::Star(toks) => seg_glob(toks, seg.as_bytes()),
            GSeg::Any => true,
            GSeg::DoubleStar => false,
        }
    }
}

/// The segment starting at byte `off` of `s` and the offset of the next one.
fn segment_at(s: &str, off: usize) -> (&str, Option<usize>) {
    match s[off..].find('/') {
        Some(e) => (&s[off..off + e], Some(off + e + 1)),
        None => (&s[off..], None),
    }
}

impl Glob {
    fn matches(&self, path: &str) -> bool {
        let Some(s) = path.strip_prefix('/') else {
            return false;
        };
        let pat = &self.segs;
        let (mut p, mut pos) = (0usize, Some(0usize));
        // After the last `**`: the pattern index after it, and the path
        // offset it has consumed up to.
        let mut star: Option<(usize, Option<usize>)> = None;
        loop {
            if p < pat.len() && pat[p] == GSeg::DoubleStar {
                star = Some((p + 1, pos));
                p += 1;
                continue;
            }
            let Some(off) = pos else {
                // Out of segments: only `**` may remain; consuming more cannot help.
                return pat[p..].iter().all(|g| *g == GSeg::DoubleStar);
            };
            let (seg, next) = segment_at(s, off);
            if p < pat.len() && pat[p].matches(seg) {
                p += 1;
                pos = next;
                continue;
            }
            match star {
                Some((sp, Some(o))) => {
                    let (_, after) = segment_at(s, o);
                    star = Some((sp, after));
                    p = sp;
                    pos = after;
                }
                _ => return false,
            }
        }
    }
}

/// `*`-within-a-segment matching over bytes (classic greedy wildcard).
fn seg_glob(toks: &[Tok], s: &[u8]) -> bool {
    let (mut t, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if t < toks.len() {
            match &toks[t] {
                Tok::Many => {
                    star = Some((t + 1, i));
                    t += 1;
                    continue;
                }
                Tok::One if i < s.len() => {
                    t += 1;
                    i += 1;
                    continue;
                }
                Tok::Lit(l) if s[i..].starts_with(l) => {
                    t += 1;
                    i += l.len();
                    continue;
                }
                _ => {}
            }
        } else if i == s.len() {
            return true;
        }
        match star {
            Some((st, si)) if si < s.len() => {
                star = Some((st, si + 1));
                t = st;
                i = si + 1;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(p: &[&str]) -> PatternList {
        PatternList::compile(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn semantics() {
        let l = list(&["/a/b"]);
        assert!(l.matches("/a/b") && l.matches("/a/b/") && l.matches("/a/b/c"));
        assert!(!l.matches("/a/bc") && !l.matches("/a"));
        let l = list(&["/a/**"]);
        assert!(l.matches("/a") && l.matches("/a/") && l.matches("/a/b/c"));
        assert!(!l.matches("/ab"));
        let l = list(&["/r/*/issues"]);
        assert!(l.matches("/r/x/issues") && l.matches("/r/x/issues/1"));
        assert!(!l.matches("/r//issues") && !l.matches("/r/x/y/issues"));
        let l = list(&["/a/**/z"]);
        assert!(l.matches("/a/z") && l.matches("/a/b/c/z") && !l.matches("/a/b/cz"));
        let l = list(&["^/v[0-9]+/x"]);
        assert!(l.matches("/v1/x") && !l.matches("/v1/x/y") && !l.matches("/pre/v1/x"));
        let l = list(&["/"]);
        assert!(l.matches("/") && l.matches("//x"));
        let l = list(&["/a/"]);
        assert!(l.matches("/a/") && l.matches("/a/b") && !l.matches("/a"));
    }

    #[test]
    fn parameters_are_removed_from_every_segment() {
        assert_eq!(without_parameters("/a/b"), None);
        assert_eq!(
            without_parameters("/a;x=1/secret;jsessionid=2/c").as_deref(),
            Some("/a/secret/c")
        );
        assert_eq!(
            without_parameters("/a/secret;/x").as_deref(),
            Some("/a/secret/x")
        );
        assert_eq!(without_parameters("/a/b;").as_deref(), Some("/a/b"));
    }

    #[test]
    fn errors() {
        for p in [
            "a", "/a/../b", "/a%2Fb", "/%7e", "/a**", "^(", "/a?x=1", "/a b",
        ] {
            assert!(PatternList::compile(&[p.to_string()]).is_err(), "{p}");
        }
    }
}
