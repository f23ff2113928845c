//! The routes file as a document: JSON or YAML read into a [`Node`] tree
//! that keeps map entries in order and duplicates, the error collector of one
//! file ([`Errs`]), and the generic checks every key goes through (unknown
//! and duplicate keys with did-you-mean, strings, lists of strings).
//! Must never know what a route means: that is [`super::fields`].

use crate::error::{ConfigError, LoadError};

/// A parsed document before validation: like a JSON value, but keeping map
/// entries in order and duplicates, so a repeated key is an error instead of
/// a silent overwrite (a second `path_allowlist` must not win quietly).
#[derive(Debug, Clone)]
pub(super) enum Node {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing (null)",
            Node::Bool(_) => "a boolean",
            Node::Num(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a routes file value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Num(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Num(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Num(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
        let mut v = Vec::new();
        while let Some(n) = a.next_element()? {
            v.push(n);
        }
        Ok(Node::Seq(v))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
        let mut v = Vec::new();
        while let Some((k, val)) = a.next_entry()? {
            v.push((k, val));
        }
        Ok(Node::Map(v))
    }
}

/// Collects errors for one file.
pub(super) struct Errs<'s> {
    pub(super) source: &'s str,
    pub(super) list: Vec<ConfigError>,
}

impl Errs<'_> {
    pub(super) fn top(
        &mut self,
        field: Option<&str>,
        msg: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.list.push(ConfigError::new(
            self.source,
            None,
            field.map(str::to_string),
            msg,
            fix,
        ));
    }
    pub(super) fn route(
        &mut self,
        i: usize,
        field: &str,
        msg: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.list.push(ConfigError::new(
            self.source,
            Some(i),
            Some(field.to_string()),
            msg,
            fix,
        ));
    }
}

pub(super) fn parse_document(text: &str, source: &str) -> Result<Node, LoadError> {
    let one = |msg: String, fix: &str| LoadError {
        errors: vec![ConfigError::new(source, None, None, msg, fix)],
    };
    if text.trim().is_empty() {
        return Err(one(
            "the file is empty".into(),
            "write at least `routes: []` (see docs/routes.md)",
        ));
    }
    // JSON gets serde_json for exact line/column messages; everything else is YAML.
    if text.trim_start().starts_with('{') {
        serde_json::from_str::<Node>(text).map_err(|e| {
            one(
                format!("not valid JSON: {e}"),
                "fix the JSON syntax at that line and column",
            )
        })
    } else {
        serde_yaml_ng::from_str::<Node>(text).map_err(|e| {
            one(
                format!(
                    "not valid YAML: {}",
                    e.to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                "fix the YAML syntax at that line and column",
            )
        })
    }
}

fn key_str(k: &Node) -> Option<&str> {
    match k {
        Node::Str(s) => Some(s),
        _ => None,
    }
}

/// Checks keys of a mapping against `known`: unknown and duplicate keys are
/// errors. Returns the entries with string keys, first occurrence only.
pub(super) fn check_keys<'n>(
    entries: &'n [(Node, Node)],
    known: &[&str],
    mut report: impl FnMut(&str, String, String),
) -> Vec<(&'n str, &'n Node)> {
    let mut out: Vec<(&str, &Node)> = Vec::new();
    for (k, v) in entries {
        let Some(k) = key_str(k) else {
            report(
                "",
                format!("a key is {}, not a string", k.kind()),
                format!("use one of: {}", known.join(", ")),
            );
            continue;
        };
        if !known.contains(&k) {
            let fix = match did_you_mean(k, known) {
                Some(s) => format!("did you mean {s:?}? known keys: {}", known.join(", ")),
                None => format!("remove it; known keys: {}", known.join(", ")),
            };
            report(k, format!("unknown key {k:?}"), fix);
            continue;
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            report(
                k,
                format!("key {k:?} appears twice"),
                "keep one of them".into(),
            );
            continue;
        }
        out.push((k, v));
    }
    out
}

fn did_you_mean<'a>(k: &str, known: &[&'a str]) -> Option<&'a str> {
    let k = k.to_ascii_lowercase().replace('-', "_");
    known
        .iter()
        .copied()
        .map(|c| (edit_distance(&k, c), c))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

pub(super) fn describe(n: &Node) -> String {
    match n {
        Node::Str(s) => format!("{s:?}"),
        Node::Num(s) => format!("the number {s}"),
        Node::Bool(b) => format!("the boolean {b}"),
        other => other.kind().to_string(),
    }
}

pub(super) fn as_str<'n>(
    i: usize,
    field: &str,
    v: &'n Node,
    fix: &str,
    errs: &mut Errs<'_>,
) -> Option<&'n str> {
    match v {
        Node::Str(s) => Some(s),
        other => {
            errs.route(
                i,
                field,
                format!("must be a string, found {}", describe(other)),
                fix,
            );
            None
        }
    }
}

pub(super) fn as_str_list(
    i: usize,
    field: &str,
    v: &Node,
    errs: &mut Errs<'_>,
) -> Option<Vec<String>> {
    let Node::Seq(items) = v else {
        let fix = match v {
            Node::Null => "give a list such as [\"/a\"], or remove the key".to_string(),
            Node::Str(s) => format!("write a list: [{s:?}]"),
            _ => "write a list of strings".to_string(),
        };
        errs.route(
            i,
            field,
            format!("must be a list of strings, found {}", describe(v)),
            fix,
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (k, item) in items.iter().enumerate() {
        match item {
            Node::Str(s) => out.push(s.clone()),
            other => {
                ok = false;
                errs.route(
                    i,
                    &format!("{field}[{k}]"),
                    format!("must be a string, found {}", describe(other)),
                    "quote the entry",
                );
            }
        }
    }
    ok.then_some(out)
}

/// The checked entries of one mapping: known keys, first occurrence only.
pub(super) struct Fields<'n>(pub(super) Vec<(&'n str, &'n Node)>);

impl<'n> Fields<'n> {
    /// The value of `name`, if the mapping has it.
    pub(super) fn get(&self, name: &str) -> Option<&'n Node> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}
