"""A gateway client on the official MCP Python SDK.

    client.py URL STEPS_JSON

STEPS_JSON is a list of steps: {"list": true} or {"call": NAME, "args": {...}}.
Prints one JSON line per step: {"tools": [...]} or {"is_error": bool, "text": str}
or {"error": str} (an MCP error). The whole run is bounded by 60 seconds.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.shared.exceptions import MCPError


async def main():
    url, steps = sys.argv[1], json.loads(sys.argv[2])
    async with Client(url, read_timeout_seconds=30) as client:
        for step in steps:
            if step.get("list"):
                result = await client.list_tools()
                print(json.dumps({"tools": sorted(t.name for t in result.tools)}), flush=True)
                continue
            try:
                result = await client.call_tool(step["call"], step.get("args", {}))
                text = "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")
                print(json.dumps({"is_error": bool(result.is_error), "text": text}), flush=True)
            except MCPError as e:
                print(json.dumps({"error": str(e)}), flush=True)


asyncio.run(asyncio.wait_for(main(), 60))
