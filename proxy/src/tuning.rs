//! glibc, tuned for a proxy's copies, at start-up.
//!
//! Owns: the two workarounds for glibc defaults that cost the proxy most of a
//! download's CPU on some machines (docs/benchmarks.md, "S4: why the two
//! harnesses differed" and "Performance round 7"). Must never: change what
//! the proxy does, only how fast glibc copies and allocates for it; touch a
//! tunable the operator set.

use std::ffi::{OsStr, OsString};

/// The glibc tunable that decides from what size `memcpy` and `memmove`
/// use `rep movsb`.
const REP_MOVSB: &str = "glibc.cpu.x86_rep_movsb_threshold";
/// Larger than any copy the proxy makes: `rep movsb` never.
const REP_MOVSB_OFF: &str = "glibc.cpu.x86_rep_movsb_threshold=4294967295";
/// Set on the image this process `exec`s, so it never does it twice (glibc
/// drops `GLIBC_TUNABLES` for a set-user-ID program: without this, such a
/// start would `exec` itself for ever).
const REEXECED: &str = "EGRESS_PROXY_GLIBC_TUNED";

/// On AMD Zen 3 and Zen 4, glibc (releases without the fix for its bug
/// 30994, Debian 12's 2.36 among them) copies blocks of 8 KiB and more with
/// `rep movsb`, and that instruction runs at 3-4 GB/s instead of ~90 when the
/// destination starts 1 to 15 bytes (modulo 4 KiB) after the source, and at a
/// fraction of it up to ~160 (`memcpy` of 16 KiB on this project's machine,
/// docs/benchmarks.md round 7). rustls copies every decrypted record (16 KiB)
/// out of its record buffer into a fresh one; in a download that copy ran at
/// the slow case's rate and took 26% of the proxy's CPU.
/// glibc reads its tunables only when a program starts, so on such a CPU the
/// proxy starts itself again, once, with `rep movsb` turned off (what newer
/// glibc does on AMD by itself). Returns why it did not, when it tried and
/// could not (then it runs as it is); returns `None` when there was nothing
/// to do. Call it first, before any thread starts.
pub fn restart_without_slow_rep_movsb() -> Option<std::io::Error> {
    if !cfg!(all(
        target_os = "linux",
        target_env = "gnu",
        target_arch = "x86_64"
    )) || std::env::var_os(REEXECED).is_some()
        || !amd_cpu()
    {
        return None;
    }
    let tunables = with_rep_movsb_off(std::env::var_os("GLIBC_TUNABLES").as_deref())?;
    Some(restart(tunables))
}

/// `GLIBC_TUNABLES` with `rep movsb` off added, or `None` when the operator
/// set the threshold already (their value stands).
fn with_rep_movsb_off(current: Option<&OsStr>) -> Option<OsString> {
    let Some(current) = current.filter(|c| !c.is_empty()) else {
        return Some(REP_MOVSB_OFF.into());
    };
    let set = current
        .as_encoded_bytes()
        .split(|&b| b == b':')
        .any(|t| t.split(|&b| b == b'=').next() == Some(REP_MOVSB.as_bytes()));
    if set {
        return None;
    }
    let mut v = current.to_os_string();
    v.push(":");
    v.push(REP_MOVSB_OFF);
    Some(v)
}

/// `exec` of this same program with the same arguments and one variable
/// changed; returns only if that failed. It is started by its path, not as
/// `/proc/self/exe`: the kernel names a process after the file it was
/// started from, and `pgrep`, `pkill` and `top` would see `exe`. The path
/// must still be this very file (not a newer build put in its place).
fn restart(tunables: OsString) -> std::io::Error {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let path = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return e,
    };
    let stat = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| (m.dev(), m.ino()))
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    };
    match (stat(&path), stat("/proc/self/exe".as_ref())) {
        (Ok(a), Ok(b)) if a == b => {}
        (Err(e), _) | (_, Err(e)) => return e,
        _ => {
            return std::io::Error::other(format!(
                "{} is no longer the file this process runs",
                path.display()
            ));
        }
    }
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(&path);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    cmd.args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(REEXECED, "1")
        .exec()
}

fn amd_cpu() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| vendor_is_amd(&info))
}

/// AMD's or Hygon's (Zen cores) CPU, from `/proc/cpuinfo`'s first `vendor_id`.
fn vendor_is_amd(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "vendor_id").then(|| v.trim())
        })
        .is_some_and(|v| v == "AuthenticAMD" || v == "HygonGenuine")
}

/// glibc's malloc hands the free top of a heap back to the kernel once more
/// than its trim threshold (128 KiB at start) is free there. A download's
/// 64 KiB frame and TLS record buffers cross that line all the time, and
/// every page handed back is faulted in again, zero-filled, by the next
/// buffer: S4 through an h2 origin took 111 000 page faults and 570
/// `madvise` calls per 600 MB, 0.7 s of the proxy's 1.4 s of CPU
/// (docs/benchmarks.md, "S4: why the two harnesses differed"). glibc raises
/// the thresholds itself (mmap threshold to the block, trim threshold to
/// twice that) when a block it had to `mmap` is freed: one block of
/// `MALLOC_THRESHOLD_BLOCK`, allocated untouched and freed at start, does
/// that without `mallopt` (this crate has no unsafe code). Another
/// allocator ignores it; the block's pages are never touched.
pub fn raise_malloc_trim_threshold() {
    let block: Vec<u8> = std::hint::black_box(Vec::with_capacity(
        egress_proxy::limits::MALLOC_THRESHOLD_BLOCK,
    ));
    drop(block);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rep_movsb_off_is_added_to_what_the_operator_set() {
        assert_eq!(with_rep_movsb_off(None).unwrap(), REP_MOVSB_OFF);
        assert_eq!(
            with_rep_movsb_off(Some(OsStr::new(""))).unwrap(),
            REP_MOVSB_OFF
        );
        assert_eq!(
            with_rep_movsb_off(Some(OsStr::new("glibc.malloc.mxfast=0"))).unwrap(),
            format!("glibc.malloc.mxfast=0:{REP_MOVSB_OFF}").as_str()
        );
        // A tunable whose name only starts like ours is another one.
        assert_eq!(
            with_rep_movsb_off(Some(OsStr::new("glibc.cpu.x86_rep_movsb_threshold_x=1"))).unwrap(),
            format!("glibc.cpu.x86_rep_movsb_threshold_x=1:{REP_MOVSB_OFF}").as_str()
        );
    }

    #[test]
    fn a_threshold_the_operator_set_stands() {
        for set in [
            "glibc.cpu.x86_rep_movsb_threshold=2048",
            "glibc.malloc.mxfast=0:glibc.cpu.x86_rep_movsb_threshold=0",
            "glibc.cpu.x86_rep_movsb_threshold",
        ] {
            assert_eq!(with_rep_movsb_off(Some(OsStr::new(set))), None, "{set}");
        }
    }

    #[test]
    fn the_vendor_is_read_from_its_own_line() {
        let amd = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n";
        let intel = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: AuthenticAMD\n";
        assert!(vendor_is_amd(amd));
        assert!(vendor_is_amd("vendor_id : HygonGenuine\n"));
        assert!(!vendor_is_amd(intel));
        assert!(!vendor_is_amd(""));
        assert!(!vendor_is_amd("vendor_id AuthenticAMD\n"));
    }

    proptest! {
        /// Whatever the operator set is kept, in order, and ours is added
        /// once at the end, unless theirs names the threshold already.
        #[test]
        fn existing_tunables_are_kept(names in proptest::collection::vec(
            prop_oneof![Just(REP_MOVSB.to_string()), "[a-z0-9._]{1,34}"],
            0..4,
        )) {
            let current = names.iter().map(|n| format!("{n}=1")).collect::<Vec<_>>().join(":");
            match with_rep_movsb_off(Some(OsStr::new(&current))) {
                Some(v) => {
                    let v = v.into_string().unwrap();
                    prop_assert!(!names.iter().any(|n| n == REP_MOVSB));
                    if current.is_empty() {
                        prop_assert_eq!(v, REP_MOVSB_OFF);
                    } else {
                        prop_assert_eq!(v, format!("{current}:{REP_MOVSB_OFF}"));
                    }
                }
                None => prop_assert!(names.iter().any(|n| n == REP_MOVSB)),
            }
        }
    }
}
