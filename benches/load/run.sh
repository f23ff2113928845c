#!/usr/bin/env bash
# Side-by-side load comparison of issue 6: direct, tunnel (the floor), egress-proxy, hudsucker, mitmproxy.
#
#   bash benches/load/run.sh           full run (~10 min): docs/bench/results.json + plot
#   bash benches/load/run.sh --smoke   a few seconds per scenario, direct and egress-proxy
#                                      only (CI); exits non-zero on any error
#
# The proxies run pinned to CPU 1 (taskset), the origin and the load generator to CPU 0,
# so figures are per proxy CPU. Needs 2 CPUs, taskset (util-linux), python3 with venv
# (full run: mitmproxy and matplotlib are installed into benches/load/.venv from PyPI).
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=full
case "${1:-}" in
  "") ;;
  --smoke) mode=smoke ;;
  -h|--help) sed -n 2,11p "$0"; exit 0 ;;
  *) echo "run.sh: unknown argument '$1' (use --smoke or nothing)" >&2; exit 2 ;;
esac

if [ "$(nproc --all)" -lt 2 ]; then
  echo "run.sh: needs 2 CPUs (proxy on CPU 1, origin and load generator on CPU 0)" >&2
  exit 2
fi
command -v taskset >/dev/null || { echo "run.sh: taskset not found (apt-get install util-linux)" >&2; exit 2; }

# 1000 idle connections (S6) hold ~4000 descriptors across the processes.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# The full run measures release builds; the smoke run only proves the harness and
# egress-proxy work together, so it reuses the debug build CI already has.
if [ "$mode" = full ]; then profile=release; flag=--release; else profile=debug; flag=; fi
echo "== building ($profile)"
cargo build $flag -p load-harness
egress_ok=1
if ! cargo build $flag -p egress-proxy; then
  egress_ok=0
  echo "run.sh: egress-proxy does not build; it will be reported as not measured" >&2
  if [ "$mode" = smoke ]; then
    echo "run.sh: SMOKE FAILED: egress-proxy does not build" >&2
    exit 1
  fi
fi

venv=benches/load/.venv
if [ "$mode" = full ]; then
  if [ ! -x "$venv/bin/mitmdump" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    echo "== creating $venv (mitmproxy, matplotlib from PyPI)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet mitmproxy matplotlib
  fi
  "$venv/bin/mitmdump" --version | head -1
  mkdir -p docs/bench
  # Never measure a stale egress-proxy binary left from an earlier build.
  proxies=direct,tunnel,egress-proxy,hudsucker,mitmproxy
  [ "$egress_ok" = 1 ] || proxies=direct,tunnel,hudsucker,mitmproxy
  taskset -c 0 target/release/load-harness bench --proxies "$proxies" \
    --results docs/bench/results.json --out-dir benches/load/out \
    --egress-proxy target/release/egress-proxy
  "$venv/bin/python" benches/load/plot.py docs/bench/results.json docs/bench/s1-concurrency.png
else
  taskset -c 0 target/debug/load-harness bench --smoke \
    --results benches/load/out/smoke-results.json --out-dir benches/load/out \
    --egress-proxy target/debug/egress-proxy || {
      echo "run.sh: SMOKE FAILED: see the table above (INVALID cells, errors, or a proxy not measured)" >&2
      exit 1
    }
fi
[ "$egress_ok" = 1 ] || echo "run.sh: NOTE egress-proxy was not measured (it did not build)" >&2
