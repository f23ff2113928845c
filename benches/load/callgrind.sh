#!/usr/bin/env bash
# Instructions per request of egress-proxy and of the hudsucker proxy through S1 (or S2),
# counted by callgrind: user-space instructions, steady to about 1% from run to run where
# CPU time on this kind of shared vCPU moves by 10-20% (docs/benchmarks.md, round 12).
#
#   bash benches/load/callgrind.sh [-s s1|s2] [-c CONCURRENCY] [-e EGRESS_BINARY] [-p PROXIES] [-o DIR]
#
#   -s  the scenario: s1 (keep-alive, default) or s2 (a new connection per request)
#   -c  S1 concurrency (default 1; S2 runs at the harness's 8)
#   -e  the egress-proxy binary (default target/release/egress-proxy, built here)
#   -p  comma-separated, of egress-proxy and hudsucker (default both)
#   -o  where the profiles go (default benches/load/out/callgrind), for callgrind_annotate
#
# Each proxy runs alone under callgrind (about 50 times slower) through a run of the
# scenario by the harness. Once it has run WARM seconds the counts so far are dumped and
# set aside; the next dump, WINDOW seconds later, is the measurement. Its requests are
# the calls of hyper's HTTP/1 server head parser in that dump (one per request in both
# proxies); S2's connections are the client handshakes rustls finished (egress-proxy
# parses a connection's first CONNECT itself, hudsucker with hyper).
# Needs valgrind (apt-get install valgrind). Kernel time is not counted: see the
# benchmark docs for what the kernel adds per request.
set -euo pipefail
cd "$(dirname "$0")/../.."

scenario=s1 conc=1 egress=target/release/egress-proxy proxies=egress-proxy,hudsucker
out=benches/load/out/callgrind
while getopts "s:c:e:p:o:h" opt; do
  case "$opt" in
    s) scenario=$OPTARG ;;
    c) conc=$OPTARG ;;
    e) egress=$OPTARG ;;
    p) proxies=$OPTARG ;;
    o) out=$OPTARG ;;
    *) sed -n 2,20p "$0"; exit 2 ;;
  esac
done
case "$scenario" in
  s1) started="S1 keep-alive" label="S1 C=$conc" per=request
      pattern='role::Server as hyper::proto::h1::Http1Transaction>::parse$' ;;
  s2) started="S2 new connection" label="S2" per=connection
      pattern='rustls::server::tls13::ExpectFinished as .*>::handle$' ;;
  *) echo "callgrind.sh: -s takes s1 or s2, not '$scenario'" >&2; exit 2 ;;
esac
warm=${WARM:-4} window=${WINDOW:-10}
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || {
  echo "callgrind.sh: valgrind not found (apt-get install valgrind)" >&2
  exit 2
}
cargo build --release -q -p load-harness
[ "$egress" = target/release/egress-proxy ] && cargo build --release -q -p egress-proxy
mkdir -p "$out"
out=$(cd "$out" && pwd)
harness=$PWD/target/release/load-harness
egress=$(realpath "$egress")

# The calls of the function matching $pattern in one callgrind profile.
requests() {
  python3 - "$1" "$pattern" <<'PY'
import re, sys
names, calls, cfn = {}, 0, None
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(2):
            names[m.group(1)] = m.group(2)
        cfn = names.get(m.group(1), "") if line.startswith("cfn=") else None
    elif line.startswith("calls=") and cfn is not None:
        if re.search(sys.argv[2], cfn):
            calls += int(line[6:].split()[0])
        cfn = None
print(calls)
PY
}

for proxy in ${proxies//,/ }; do
  case "$proxy" in
    egress-proxy) target=$egress flag=--egress-proxy ;;
    hudsucker) target=$harness flag=--hudsucker-exec ;;
    *) echo "callgrind.sh: unknown proxy '$proxy' (egress-proxy, hudsucker)" >&2; exit 2 ;;
  esac
  rm -f "$out/$proxy".*
  wrap=$out/$proxy.wrap.sh
  # Started by the harness; callgrind runs in the background so that the harness's
  # SIGKILL at the end leaves it to this script, which dumps first. The egress-proxy
  # variable keeps it from restarting itself with glibc tunables (exec would leave
  # callgrind behind).
  cat > "$wrap" <<EOF
#!/usr/bin/env bash
export EGRESS_PROXY_GLIBC_TUNED=1
valgrind --tool=callgrind --dump-instr=no --log-file="$out/$proxy.valgrind.log" \
  --callgrind-out-file="$out/$proxy.callgrind" "$target" "\$@" &
echo \$! > "$out/$proxy.pid"
wait
EOF
  chmod +x "$wrap"
  log=$out/$proxy.harness.log
  taskset -c 0 "$harness" bench --proxies "$proxy" --only "$scenario" --s1-concurrency "$conc" \
    --seconds $((warm + window + 15)) --rounds 1 "$flag" "$wrap" \
    --results "$out/$proxy.results.json" --out-dir "$out/run" > "$log" 2>&1 &
  bench=$!
  for _ in $(seq 1 240); do
    grep -q "$started" "$log" 2>/dev/null && break
    kill -0 "$bench" 2>/dev/null || { echo "callgrind.sh: the harness ended early, see $log" >&2; exit 1; }
    sleep 0.5
  done
  pid=$(cat "$out/$proxy.pid")
  sleep "$warm"
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep "$window"
  callgrind_control -d "$pid" >/dev/null 2>&1
  wait "$bench" || true
  kill "$pid" 2>/dev/null || true
  # The second dump is the window (dumps are numbered from 1).
  profile=$out/$proxy.callgrind.2
  [ -f "$profile" ] || { echo "callgrind.sh: no profile $profile, see $out/$proxy.valgrind.log" >&2; exit 1; }
  ir=$(awk '/^summary:/{print $2; exit}' "$profile")
  n=$(requests "$profile")
  [ "$n" -gt 0 ] || { echo "callgrind.sh: no request in the window of $proxy" >&2; exit 1; }
  echo "$proxy $label: $((ir / n)) instructions per $per ($n, $ir instructions; $profile)"
done
