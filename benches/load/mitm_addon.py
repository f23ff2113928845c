"""mitmproxy addon for the load harness: the same work egress-proxy does in the benchmark.

Reads the harness routes file (JSON, SPEC section 2 subset: host, auth_scheme,
token_env). A request to a host without a route gets 403 host-not-allowed; on a
credential route the client's Authorization, Proxy-Authorization, Cookie and X-Api-Key
are removed and the route's Authorization added. Request and response bodies are
streamed (not buffered), as SPEC 3.8 requires of egress-proxy. Never logs a header value.
"""

import json
import os

from mitmproxy import ctx, http


class BenchRoutes:
    def __init__(self):
        self.routes = {}

    def load(self, loader):
        loader.add_option("bench_routes", str, "", "harness routes JSON file")

    def configure(self, updated):
        if "bench_routes" not in updated or not ctx.options.bench_routes:
            return
        with open(ctx.options.bench_routes, encoding="utf-8") as f:
            doc = json.load(f)
        routes = {}
        for i, r in enumerate(doc.get("routes", [])):
            inject = None
            if r.get("token_env"):
                secret = os.environ.get(r["token_env"], "")
                if not secret:
                    raise ValueError(f"routes[{i}]: environment variable {r['token_env']} is unset or empty")
                scheme = r.get("auth_scheme")
                inject = f"{scheme} {secret}" if scheme else secret
            routes[r["host"].rstrip(".").lower()] = inject
        self.routes = routes

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Decided on the head: a streamed request body (S4u) leaves before the
        # `request` hook runs, so changing headers there would be too late.
        host = flow.request.host.rstrip(".").lower()
        if host not in self.routes:
            flow.response = http.Response.make(
                403,
                b"host-not-allowed: no route for this host\n",
                {"content-type": "text/plain", "x-egress-proxy-decision": "host-not-allowed"},
            )
            return
        inject = self.routes[host]
        if inject is not None:
            for name in ("authorization", "proxy-authorization", "cookie", "x-api-key"):
                flow.request.headers.pop(name, None)
            flow.request.headers["authorization"] = inject
        # Stream uploads as egress-proxy does.
        flow.request.stream = True

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        # Stream every body as it arrives (SSE, large downloads), like egress-proxy.
        if flow.response is not None:
            flow.response.stream = True


addons = [BenchRoutes()]
