"""Break a rule, see a test fail, restore: applies each mutation below to
addon-rules/src, runs `cargo test -p addon-rules`, restores the file, and
prints which tests caught it. Run from addon-rules/: python3 scripts/mutate.py
Every line must report a failure; "NO TEST FAILED" means a rule is untested.
"""
import sys,subprocess,shutil
muts=[
 ("src/pattern.rs","Some(rest) => prefix.ends_with('/') || rest.starts_with('/'),","Some(_rest) => true,"),
 ("src/git.rs","        return Some(\"the query asks for service=git-receive-pack\");","        return None;"),
 ("src/decide.rs","let ok = normalize_host(sni).is_ok_and(|s| s == c.host);","let ok = true;"),
 ("src/path.rs","        seg == \".\" || seg == \"..\"","        seg == \"..\""),
 ("src/decide.rs","if !matches!(req.transport, Transport::Tls { .. }) {","if matches!(req.transport, Transport::PlainProxy) {"),
 ("src/framing.rs","if content_length.is_some() {","if false {"),
 ("src/host.rs","if is_public_suffix(&norm) {","if false {"),
 ("src/target.rs","    if last.bytes().all(|b| b.is_ascii_digit()) {","    if false {"),
 ("src/decide.rs","        if hosts.next().is_some() {","        if false {"),
 ("src/routes.rs","Some(prev) = table.insert(&route.host, i)","Some(prev) = table.insert(&route.host, i).filter(|_| false)"),
]
for f,a,b in muts:
    src=open(f).read()
    assert src.count(a)==1,(f,a)
    shutil.copy(f,"/tmp/mut_backup")
    open(f,"w").write(src.replace(a,b))
    r=subprocess.run(["cargo","test","-q","-p","addon-rules","--no-fail-fast"],capture_output=True,text=True)
    shutil.copy("/tmp/mut_backup",f)
    failed=[l for l in (r.stdout+r.stderr).splitlines() if l.startswith("test ") and "FAILED" in l or "rows failed" in l]
    print(f"{f}: {b[:50]!r}: exit={r.returncode} ->", "; ".join(x.strip()[:110] for x in failed[:3]) or "NO TEST FAILED")
