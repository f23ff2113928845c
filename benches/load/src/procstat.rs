//! Reads a process's CPU time and memory from /proc (Linux only).
//!
//! Owns parsing /proc/PID/stat and /proc/PID/status. It must never treat a parse failure
//! as zero: callers get an error and mark the measurement invalid.

use anyhow::{Context, Result};

/// Clock ticks per second for /proc/PID/stat, from `getconf CLK_TCK` (100 on Linux).
pub fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of every thread of `pid`, in seconds.
pub fn cpu_seconds(pid: u32, tck: f64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu(&stat)
        .map(|t| t as f64 / tck)
        .with_context(|| format!("parsing /proc/{pid}/stat"))
}

fn parse_cpu(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields start after
    // the last ')'. utime and stime are fields 14 and 15, i.e. 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `Vm*` field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
pub fn vm_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_vm(&status, field).with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn parse_vm(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(field)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_fields_after_a_name_with_spaces_and_parens() {
        let stat = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_cpu(stat), Some(300));
    }

    #[test]
    fn cpu_of_this_process_is_readable() {
        let t = cpu_seconds(std::process::id(), clk_tck()).unwrap();
        assert!(t >= 0.0);
    }

    #[test]
    fn vm_field() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_vm(s, "VmRSS"), Some(1024));
        assert_eq!(parse_vm(s, "VmHWM"), Some(2048));
        assert_eq!(parse_vm(s, "VmSwap"), None);
        assert!(vm_kib(std::process::id(), "VmRSS").unwrap() > 0);
    }

    #[test]
    fn garbage_is_none_not_zero() {
        assert_eq!(parse_cpu("no parens here"), None);
        assert_eq!(parse_cpu("1 (x) S 1"), None);
    }
}
