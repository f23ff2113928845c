"""A small MCP client over streamable HTTP, using the official Python SDK.

The Rust tests drive it: one JSON command per stdin line, one JSON answer per
stdout line. Commands: {"op": "list_tools"} and
{"op": "call", "tool": NAME, "args": {...}}. A protocol error (JSON-RPC error)
is answered as {"protocol_error": MESSAGE}.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.types import Implementation


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(url):
    info = Implementation(name="test-agent", version="1.0")
    async with Client(url, client_info=info) as client:
        out({"ready": True})
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            cmd = json.loads(line)
            try:
                if cmd["op"] == "list_tools":
                    r = await client.list_tools()
                    out({"tools": [t.model_dump(mode="json", by_alias=True) for t in r.tools]})
                elif cmd["op"] == "call":
                    r = await client.call_tool(cmd["tool"], cmd.get("args", {}))
                    out(r.model_dump(mode="json", by_alias=True))
                else:
                    out({"protocol_error": "unknown op"})
            except Exception as e:  # the SDK raises on JSON-RPC errors
                out({"protocol_error": f"{type(e).__name__}: {e}"})


asyncio.run(main(sys.argv[1]))
