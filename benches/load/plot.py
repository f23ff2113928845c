"""Plot S1 (keep-alive requests through a MITM proxy, or the relaying tunnel) against concurrency, per proxy.

Usage: plot.py RESULTS_JSON OUT_PNG. Invalid points (a scenario with errors) are not
plotted; the proxy's legend entry says so.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402


COLORS = {"direct": "tab:gray", "tunnel": "tab:purple", "egress-proxy": "tab:blue", "hudsucker": "tab:orange", "mitmproxy": "tab:green"}


def main(path, out):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = [
        ("per_s", "requests/s", "S1 throughput"),
        ("per_cpu_s", "requests per proxy CPU-second", "S1 efficiency"),
        ("p99_ms", "p99 latency (ms)", "S1 p99 latency"),
    ]
    for r in doc["results"]:
        pts = [p for p in r.get("s1", []) if p.get("valid")]
        dropped = len(r.get("s1", [])) - len(pts)
        label = r["name"] + (f" ({dropped} invalid)" if dropped else "")
        for ax, (key, _, _) in zip(axes, panels):
            xs = [p["concurrency"] for p in pts if p.get(key) is not None]
            ys = [p[key] for p in pts if p.get(key) is not None]
            if xs:
                ax.plot(xs, ys, marker="o", label=label, color=COLORS.get(r["name"]))
    for ax, (_, ylabel, title) in zip(axes, panels):
        ax.set_xscale("log", base=2)
        conc = doc.get("meta", {}).get("scenarios", {}).get("s1_concurrency") or [1, 8, 64]
        ax.set_xticks(conc)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%d"))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_yscale("log")
        ax.set_xlabel("concurrent keep-alive connections")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    m = doc.get("meta", {}).get("machine", {})
    fig.suptitle(f"bottle egress load harness, proxy pinned to 1 CPU ({m.get('cpu', '?')})", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot: {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: plot.py RESULTS_JSON OUT_PNG")
    main(sys.argv[1], sys.argv[2])
