//! The export's refusals, one hostile archive entry per row: each is named
//! in the report and nothing is written outside the export directory.

use super::*;

/// A raw tar entry: the name bytes go into the header as they are (the tar
/// crate's builder refuses `..` and absolute names, an agent's tar need not).
fn entry(out: &mut Vec<u8>, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_mode(0o6755);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};

#[test]
fn hostile_entries_are_refused_and_nothing_leaves_the_directory() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let dest = t.path().join("out");
    let root = destination(&dest, false).unwrap();
    let mut a = Vec::new();
    entry(&mut a, b"workspace/", Directory, b"", b"");
    entry(&mut a, b"workspace/ok.txt", Regular, b"", b"fine\n");
    entry(&mut a, b"workspace/sub/deep.txt", Regular, b"", b"deep\n");
    entry(&mut a, b"workspace/in-link", Symlink, b"sub/deep.txt", b"");
    entry(&mut a, b"workspace/hard", Link, b"workspace/ok.txt", b"");
    // Hostile, one reason each:
    entry(&mut a, b"workspace/../outside/dotdot", Regular, b"", b"x");
    entry(&mut a, b"/abs-file", Regular, b"", b"x");
    entry(&mut a, b"other/file", Regular, b"", b"x");
    entry(&mut a, b"workspace/esc", Symlink, b"../outside", b"");
    entry(&mut a, b"workspace/abs-link", Symlink, b"/etc", b"");
    // A link that stays inside, then a file written "through" it.
    entry(&mut a, b"workspace/dirlink", Symlink, b"sub", b"");
    entry(&mut a, b"workspace/dirlink/through.txt", Regular, b"", b"x");
    // A file written onto an inside symlink: never followed.
    entry(&mut a, b"workspace/in-link", Regular, b"", b"overwrite");
    entry(&mut a, b"workspace/hard-out", Link, b"../etc/passwd", b"");
    entry(&mut a, b"workspace/null", Char, b"", b"");
    entry(&mut a, b"workspace/disk", Block, b"", b"");
    entry(&mut a, b"workspace/fifo", Fifo, b"", b"");
    let r = extract(&finish(a)[..], "workspace", &root).unwrap();
    let refused: Vec<(&str, &str)> = r
        .refused
        .iter()
        .map(|(p, w)| (p.as_str(), w.as_str()))
        .collect();
    let want = [
        ("workspace/../outside/dotdot", "a `..` component"),
        ("/abs-file", "an absolute path"),
        ("other/file", "outside the workspace"),
        ("workspace/esc", "a symlink to ../outside (outside"),
        ("workspace/abs-link", "a symlink to /etc (outside"),
        (
            "workspace/dirlink/through.txt",
            "its parent dirlink is a symlink (never followed)",
        ),
        ("workspace/in-link", "never followed"),
        ("workspace/hard-out", "a hard link to a `..` component"),
        ("workspace/null", "a character device"),
        ("workspace/disk", "a block device"),
        ("workspace/fifo", "a FIFO"),
    ];
    assert_eq!(refused.len(), want.len(), "{refused:#?}");
    for ((p, w), (wp, ww)) in refused.iter().zip(want) {
        assert_eq!(*p, wp);
        assert!(w.contains(ww), "{p}: {w:?} should say {ww:?}");
    }
    assert_eq!(std::fs::read(root.join("ok.txt")).unwrap(), b"fine\n");
    assert_eq!(std::fs::read(root.join("hard")).unwrap(), b"fine\n");
    assert_eq!(std::fs::read(root.join("sub/deep.txt")).unwrap(), b"deep\n");
    // The inside symlink still points at the file, which was not overwritten.
    assert_eq!(
        std::fs::read_link(root.join("in-link")).unwrap(),
        Path::new("sub/deep.txt")
    );
    // The file keeps the time the agent wrote it.
    let written = std::fs::metadata(root.join("ok.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        written
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        1_700_000_000
    );
    // setuid/setgid bits never come out.
    let m = std::fs::metadata(root.join("ok.txt")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o755);
    assert!(!root.join("sub/through.txt").exists());
    assert!(!root.join("esc").exists() && !root.join("null").exists());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!t.path().join("abs-file").exists());
    assert_eq!((r.files, r.links), (3, 2));
}

#[test]
fn a_non_empty_directory_needs_force() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("mine"), "keep").unwrap();
    let e = destination(t.path(), false).unwrap_err();
    assert!(
        e.to_string().contains("is not empty; fix:") && e.to_string().contains("--force"),
        "{e}"
    );
    let root = destination(t.path(), true).unwrap();
    let mut a = Vec::new();
    entry(&mut a, b"workspace/new", Regular, b"", b"n");
    let r = extract(&finish(a)[..], "workspace", &root).unwrap();
    assert!(r.refused.is_empty());
    assert_eq!(std::fs::read(t.path().join("mine")).unwrap(), b"keep");
    // A missing directory is made.
    let fresh = t.path().join("a/b");
    assert!(destination(&fresh, false).is_ok() && fresh.is_dir());
}

#[test]
fn symlink_targets_are_judged_from_the_link_s_directory() {
    let l = Path::new("a/b/link");
    assert!(stays_inside(l, Path::new("../../x")));
    assert!(!stays_inside(l, Path::new("../../../x")));
    assert!(!stays_inside(l, Path::new("../../x/../../y")));
    assert!(stays_inside(l, Path::new("./c/d")));
    // `..` after a name: `b` may be a symlink, `b/..` is then not `.`.
    assert!(!stays_inside(l, Path::new("c/../d")));
    assert!(!stays_inside(Path::new("c"), Path::new("b/b/b/../..")));
    assert!(!stays_inside(Path::new("top"), Path::new("..")));
    assert!(!stays_inside(l, Path::new("/a")));
}

/// Git data that would run commands on the host never comes out as the
/// agent wrote it: `.git/config` is rendered (fsmonitor, sshCommand,
/// aliases, remotes dropped), hooks, other checkouts' data, pointers and
/// `.git` files are left out and listed, not refused.
#[test]
fn git_data_that_runs_commands_is_scrubbed_or_left_out() {
    let t = tempfile::tempdir().unwrap();
    let root = destination(&t.path().join("out"), false).unwrap();
    let cfg = b"[core]\n\trepositoryformatversion = 0\n\tfsmonitor = /tmp/evil\n\tsshCommand = evil\n[alias]\n\tst = !evil\n[remote \"origin\"]\n\turl = git://git-gate:9418/w.git\n[user]\n\tname = agent\n";
    let mut a = Vec::new();
    entry(&mut a, b"workspace/.git/", Directory, b"", b"");
    entry(&mut a, b"workspace/.git/config", Regular, b"", cfg);
    entry(
        &mut a,
        b"workspace/.git/HEAD",
        Regular,
        b"",
        b"ref: refs/heads/main\n",
    );
    entry(&mut a, b"workspace/.git/hooks/", Directory, b"", b"");
    entry(
        &mut a,
        b"workspace/.git/hooks/pre-commit",
        Regular,
        b"",
        b"#!/bin/sh\nevil\n",
    );
    entry(
        &mut a,
        b"workspace/.git/modules/m/config",
        Regular,
        b"",
        b"x",
    );
    entry(
        &mut a,
        b"workspace/.git/config.worktree",
        Regular,
        b"",
        b"x",
    );
    entry(&mut a, b"workspace/.git/commondir", Regular, b"", b"/host");
    entry(
        &mut a,
        b"workspace/.git/objects/info/alternates",
        Regular,
        b"",
        b"/host",
    );
    entry(
        &mut a,
        b"workspace/sub/.git",
        Regular,
        b"",
        b"gitdir: ../evil\n",
    );
    entry(&mut a, b"workspace/nested/.git/config", Regular, b"", cfg);
    let r = extract(&finish(a)[..], "workspace", &root).unwrap();
    assert!(r.refused.is_empty(), "{:?}", r.refused);
    let left: Vec<&str> = r.left_out.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        left,
        [
            "workspace/.git/hooks/",
            "workspace/.git/hooks/pre-commit",
            "workspace/.git/modules/m/config",
            "workspace/.git/config.worktree",
            "workspace/.git/commondir",
            "workspace/.git/objects/info/alternates",
            "workspace/sub/.git",
        ]
    );
    for c in [root.join(".git/config"), root.join("nested/.git/config")] {
        let got = std::fs::read_to_string(&c).unwrap();
        assert!(got.contains("repositoryformatversion = 0"), "{got}");
        assert!(got.contains("name = agent"), "{got}");
        for bad in [
            "fsmonitor",
            "evil",
            "sshcommand",
            "sshCommand",
            "alias",
            "[remote",
            "git://",
        ] {
            assert!(!got.contains(bad), "{bad} in {got}");
        }
    }
    assert_eq!(r.scrubbed.len(), 2);
    assert!(root.join(".git/HEAD").exists());
    assert!(!root.join(".git/hooks").exists() && !root.join("sub/.git").exists());
}
