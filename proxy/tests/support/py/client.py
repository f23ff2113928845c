"""A Python `requests` client for the egress-proxy tests: one request through the
proxy (proxies=, verify=CA). Prints JSON: status, decision, body.
Usage: client.py PROXY_URL CA_FILE METHOD URL"""
import json
import sys

import requests


def main():
    if len(sys.argv) != 5:
        print("usage: client.py PROXY_URL CA_FILE METHOD URL", file=sys.stderr)
        sys.exit(2)
    proxy, ca, method, url = sys.argv[1:]
    with requests.Session() as s:
        s.trust_env = False  # only the proxy given here, never the machine's
        r = s.request(method, url, proxies={"http": proxy, "https": proxy},
                      verify=ca, timeout=30)
    print(json.dumps({
        "status": r.status_code,
        "decision": r.headers.get("x-egress-proxy-decision", ""),
        "body": r.text,
    }))


if __name__ == "__main__":
    main()
