//! The agent workspace's `.git/config`, written fresh (SPEC §6): the original
//! file is read only for the few settings the repository needs to open
//! (format version, extensions but `worktreeConfig`) and the author identity;
//! everything else — `credential.*`, `http.*`, `url.*`, `include*`, remotes
//! with userinfo, hooks paths, `extensions.worktreeConfig` (no
//! `config.worktree` enters the agent for it to switch on) — is dropped. The only remotes are git-gate's.
//!
//! Must never: copy a setting not on the keep-list below.

/// Settings kept from the original file (section.key, lower case; `extensions.*`).
const KEEP: &[&str] = &[
    "core.repositoryformatversion",
    "core.filemode",
    "core.ignorecase",
    "core.precomposeunicode",
    "core.logallrefupdates",
    "core.autocrlf",
    "core.eol",
    "user.name",
    "user.email",
    "init.defaultbranch",
];

fn keep(section: &str, sub: Option<&str>, key: &str) -> bool {
    if sub.is_some() {
        return false;
    }
    if section == "extensions" {
        // worktreeConfig would switch on a `config.worktree`; none goes in.
        return key != "worktreeconfig";
    }
    let full = format!("{section}.{key}");
    KEEP.contains(&full.as_str())
}

/// Parses `[section]`, `[section "sub"]` and `[section.sub]` headers.
fn header(line: &str) -> Option<(String, Option<String>)> {
    let inner = line.strip_prefix('[')?;
    let end = inner.find(']')?;
    let inner = inner[..end].trim();
    if let Some((s, rest)) = inner.split_once(char::is_whitespace) {
        let sub = rest.trim().trim_matches('"').to_string();
        return Some((s.to_ascii_lowercase(), Some(sub)));
    }
    if let Some((s, sub)) = inner.split_once('.') {
        return Some((s.to_ascii_lowercase(), Some(sub.to_string())));
    }
    Some((inner.to_ascii_lowercase(), None))
}

fn quote(v: &str) -> String {
    if v.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.@+/:, ".contains(c))
        && !v.starts_with(' ')
        && !v.ends_with(' ')
    {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Renders the fresh config. `remotes` are (name, url) pairs pointing at git-gate.
pub fn render(original: Option<&str>, remotes: &[(String, String)]) -> String {
    let mut kept: Vec<(String, String, String)> = Vec::new(); // section, key, value
    let mut section: Option<(String, Option<String>)> = None;
    for raw in original.unwrap_or_default().lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = header(line);
            continue;
        }
        let Some((sec, sub)) = &section else { continue };
        let (k, v) = match line.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim()),
            None => (line.to_ascii_lowercase(), "true"),
        };
        // Multi-line values and quoted oddities are not worth the risk: drop them.
        let v = v.trim_matches('"');
        if v.ends_with('\\') || v.contains(['\n', '\r', '"']) {
            continue;
        }
        if keep(sec, sub.as_deref(), &k) {
            kept.retain(|(s, kk, _)| !(s == sec && *kk == k));
            kept.push((sec.clone(), k, v.to_string()));
        }
    }
    if !kept
        .iter()
        .any(|(s, k, _)| s == "core" && k == "repositoryformatversion")
    {
        kept.insert(
            0,
            ("core".into(), "repositoryformatversion".into(), "0".into()),
        );
    }
    kept.push(("core".into(), "bare".into(), "false".into()));
    let mut out = String::from("# Written by bottle: remotes point at git-gate only.\n");
    for sec in ["core", "extensions", "user", "init"] {
        let items: Vec<_> = kept.iter().filter(|(s, _, _)| s == sec).collect();
        if items.is_empty() {
            continue;
        }
        out.push_str(&format!("[{sec}]\n"));
        for (_, k, v) in items {
            out.push_str(&format!("\t{k} = {}\n", quote(v)));
        }
    }
    for (name, url) in remotes {
        out.push_str(&format!(
            "[remote \"{name}\"]\n\turl = {url}\n\tfetch = +refs/heads/*:refs/remotes/{name}/*\n"
        ));
    }
    out
}

/// A resumed workspace's `.git/config` with its remotes replaced by
/// git-gate's from the manifest as it is now: every other line is the
/// agent's and stays as it is (branch tracking, its own settings; nothing in
/// the agent is a host secret), every `remote` section goes.
pub fn with_remotes(existing: &str, remotes: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut in_remote = false;
    for line in existing.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            in_remote = header(t).is_some_and(|(s, _)| s == "remote");
        }
        if !in_remote {
            out.push_str(line);
            out.push('\n');
        }
    }
    for (name, url) in remotes {
        out.push_str(&format!(
            "[remote \"{name}\"]\n\turl = {url}\n\tfetch = +refs/heads/*:refs/remotes/{name}/*\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_remotes_replaces_only_the_remote_sections() {
        let agent = "[core]\n\tbare = false\n[remote \"old\"]\n\turl = git://git-gate:9418/old.git\n[branch \"main\"]\n\tremote = old\n[Remote.x] url = y\n[user]\n\tname = agent\n";
        let got = with_remotes(
            agent,
            &[("new".into(), "git://git-gate:9418/new.git".into())],
        );
        assert_eq!(
            got,
            "[core]\n\tbare = false\n[branch \"main\"]\n\tremote = old\n[user]\n\tname = agent\n[remote \"new\"]\n\turl = git://git-gate:9418/new.git\n\tfetch = +refs/heads/*:refs/remotes/new/*\n"
        );
    }

    const DIRTY: &str = r#"[core]
	repositoryformatversion = 1
	filemode = true
	bare = true
	sshCommand = ssh -i ~/.ssh/secret
	hooksPath = /tmp/evil
[extensions]
	objectFormat = sha256
	worktreeConfig = true
[remote "origin"]
	url = https://user:ghp_SECRETTOKEN@github.com/acme/widget.git
	fetch = +refs/heads/*:refs/remotes/origin/*
[credential]
	helper = store
[credential "https://github.com"]
	username = bob
[http]
	extraheader = AUTHORIZATION: basic c2VjcmV0
[http "https://github.com/"]
	extraHeader = Authorization: Bearer ghp_OTHER
[url "https://x:tok@github.com/"]
	insteadOf = https://github.com/
[include]
	path = ~/.gitconfig-secrets
[includeIf "gitdir:~/work/"]
	path = ~/.work-secrets
[user]
	name = Alice Example
	email = alice@example.com
[branch "main"]
	remote = origin
	merge = refs/heads/main
"#;

    #[test]
    fn scrubs_credentials_urls_includes_and_old_remotes() {
        let out = render(
            Some(DIRTY),
            &[("widget".into(), "git://git-gate:9418/widget.git".into())],
        );
        for bad in [
            "ghp_",
            "credential",
            "extraheader",
            "insteadof",
            "include",
            "helper",
            "sshcommand",
            "hookspath",
            "origin",
            "user:",
            "c2VjcmV0",
            "bob",
            "[http",
            "[url",
            "[branch",
            "worktreeconfig",
        ] {
            assert!(
                !out.to_ascii_lowercase().contains(&bad.to_ascii_lowercase()),
                "{bad} survived:\n{out}"
            );
        }
        assert_eq!(
            out,
            "# Written by bottle: remotes point at git-gate only.\n[core]\n\trepositoryformatversion = 1\n\tfilemode = true\n\tbare = false\n[extensions]\n\tobjectformat = sha256\n[user]\n\tname = Alice Example\n\temail = alice@example.com\n[remote \"widget\"]\n\turl = git://git-gate:9418/widget.git\n\tfetch = +refs/heads/*:refs/remotes/widget/*\n"
        );
    }

    #[test]
    fn works_without_an_original_and_git_reads_it() {
        let out = render(None, &[]);
        assert!(out.contains("repositoryformatversion = 0"));
        let dir = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("git")
            .args(["init", "-q"])
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(st.success());
        let out = render(None, &[("w".into(), "git://git-gate:9418/w.git".into())]);
        std::fs::write(dir.path().join(".git/config"), out).unwrap();
        let o = std::process::Command::new("git")
            .args(["remote", "-v"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("w\tgit://git-gate:9418/w.git (fetch)")
        );
    }

    #[test]
    fn never_panics_on_garbage() {
        for s in [
            "[",
            "[]",
            "[a \"",
            "=",
            "[core]\n=\n",
            "\u{0}[x]\u{0}",
            "[core.]\nk",
        ] {
            let _ = render(Some(s), &[]);
        }
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever the original holds, the output has only keep-listed keys in
        /// the sections core/extensions/user/init plus the given remotes.
        #[test]
        fn output_holds_only_kept_settings(
            sections in proptest::collection::vec(
                ("[a-zA-Z]{1,10}", proptest::option::of("[a-zA-Z:/. \"]{0,12}"), proptest::collection::vec(("[a-zA-Z]{1,12}", "[ -~]{0,30}"), 0..4)),
                0..6,
            ),
            noise in "\\PC{0,80}",
        ) {
            let mut orig = String::new();
            for (name, sub, kvs) in &sections {
                match sub {
                    Some(s) => orig.push_str(&format!("[{name} \"{s}\"]\n")),
                    None => orig.push_str(&format!("[{name}]\n")),
                }
                for (k, v) in kvs {
                    orig.push_str(&format!("\t{k} = {v}\n"));
                }
            }
            orig.push_str(&noise);
            let out = render(Some(&orig), &[("gate".into(), "git://git-gate:9418/gate.git".into())]);
            let mut section = String::new();
            for line in out.lines().skip(1) {
                if line.starts_with('[') {
                    section = line.to_string();
                    prop_assert!(["[core]", "[extensions]", "[user]", "[init]", "[remote \"gate\"]"].contains(&line), "{}", line);
                    continue;
                }
                let key = line.trim().split(" = ").next().unwrap_or_default();
                let ok = match section.as_str() {
                    "[core]" => ["repositoryformatversion", "filemode", "ignorecase", "precomposeunicode", "logallrefupdates", "autocrlf", "eol", "bare"].contains(&key),
                    "[extensions]" => key != "worktreeconfig",
                    "[user]" => ["name", "email"].contains(&key),
                    "[init]" => key == "defaultbranch",
                    _ => ["url", "fetch"].contains(&key),
                };
                prop_assert!(ok, "{} in {}", line, section);
            }
        }
    }
}
