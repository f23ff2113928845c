//! Path patterns of `path_allowlist` / `path_denylist` (SPEC §2): plain
//! prefixes on a segment boundary, `*` / `**` globs, and `^regex` entries.
//! Owns their compilation at load time and their matching at request time.
//! Must never compile anything per request: plain prefixes are compared
//! directly, globs and regexes go into one `RegexSet` per list.

use regex::{RegexSet, RegexSetBuilder};

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
        let mut regexes = Vec::new();
        let mut set_index = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match compile_one(e) {
                Ok(Compiled::Prefix(p)) => prefixes.push((p, i)),
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
            match RegexSetBuilder::new(&regexes)
                .size_limit(REGEX_SIZE_LIMIT * regexes.len().max(1))
                .build()
            {
                Ok(s) => Some(s),
                Err(e) => {
                    return Err(vec![(
                        set_index.first().copied().unwrap_or(0),
                        format!(
                            "the patterns of this list do not compile together: {}",
                            one_line(&e.to_string())
                        ),
                        "simplify the regular expressions of this list".into(),
                    )]);
                }
            }
        };
        Ok(PatternList {
            raw: entries.to_vec(),
            prefixes,
            set,
            set_index,
        })
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
            || self.set.as_ref().is_some_and(|s| s.is_match(path))
    }

    /// The first entry (in file order among prefixes, then globs/regexes)
    /// matching `path`, for `explain`.
    pub fn first_match(&self, path: &str) -> Option<&str> {
        if let Some((_, i)) = self.prefixes.iter().find(|(p, _)| prefix_matches(p, path)) {
            return Some(&self.raw[*i]);
        }
        let set = self.set.as_ref()?;
        let m = set.matches(path).into_iter().next()?;
        Some(&self.raw[self.set_index[m]])
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

enum Compiled {
    Prefix(String),
    Regex(String),
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn compile_one(e: &str) -> Result<Compiled, (String, String)> {
    if let Some(body) = e.strip_prefix('^') {
        // Anchor at both ends whatever the author wrote: `^/a` must not
        // silently mean "starts with /a" when the SPEC says "whole path".
        let anchored = format!("^(?:{body})$");
        return match regex::Regex::new(&anchored) {
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
    if !e.contains('*') {
        return Ok(Compiled::Prefix(e.to_string()));
    }
    let mut re = String::from("^");
    let segments: Vec<&str> = e[1..].split('/').collect();
    for seg in &segments {
        if *seg == "**" {
            // Zero or more whole segments.
            re.push_str("(?:/[^/]*)*");
            continue;
        }
        if seg.contains("**") {
            return Err((
                format!("pattern {e:?}: '**' must be a whole segment"),
                "write '/**/' for any number of segments, or '*' for part of one segment".into(),
            ));
        }
        re.push('/');
        for (k, lit) in seg.split('*').enumerate() {
            if k > 0 {
                re.push_str("[^/]+");
            }
            re.push_str(&regex::escape(lit));
        }
    }
    // A plain pattern also matches everything below it on a segment boundary.
    if e.ends_with('/') {
        re.push_str(".*$")
    } else {
        re.push_str("(?:/.*)?$")
    }
    Ok(Compiled::Regex(re))
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
    fn errors() {
        for p in [
            "a", "/a/../b", "/a%2Fb", "/%7e", "/a**", "^(", "/a?x=1", "/a b",
        ] {
            assert!(PatternList::compile(&[p.to_string()]).is_err(), "{p}");
        }
    }
}
