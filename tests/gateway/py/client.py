"""A gateway client on the official MCP Python SDK.

    client.py URL STEPS_JSON
    client.py '["PROGRAM", "ARG", ...]' STEPS_JSON   (a server over stdio)

STEPS_JSON is a list of steps: {"list": true}, {"call": NAME, "args": {...}}, or
{"wait": true} (prints {"waiting": true} and reads one line of standard input
before going on, in the same MCP session), or {"together": [CALL, ...]} (the
calls made at once; prints {"together": [ANSWER, ...], "order": [the calls'
indices in the order they were answered]}). Prints one JSON line per step:
{"tools": [...]} or {"is_error": bool, "text": str} or {"error": str} (an MCP
error). The whole run is bounded by 60 seconds.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError


async def call(client, step):
    try:
        result = await client.call_tool(step["call"], step.get("args", {}))
        text = "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")
        return {"is_error": bool(result.is_error), "text": text}
    except MCPError as e:
        return {"error": str(e)}


async def main():
    url, steps = sys.argv[1], json.loads(sys.argv[2])
    if url.startswith("["):
        argv = json.loads(url)
        url = StdioServerParameters(command=argv[0], args=argv[1:])
    async with Client(url, read_timeout_seconds=30) as client:
        for step in steps:
            if step.get("wait"):
                print(json.dumps({"waiting": True}), flush=True)
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
                continue
            if "together" in step:
                order = []

                async def one(i, s):
                    answer = await call(client, s)
                    order.append(i)
                    return answer

                answers = await asyncio.gather(*(one(i, s) for i, s in enumerate(step["together"])))
                print(json.dumps({"together": answers, "order": order}), flush=True)
                continue
            if step.get("list"):
                result = await client.list_tools()
                print(json.dumps({"tools": sorted(t.name for t in result.tools)}), flush=True)
                continue
            print(json.dumps(await call(client, step)), flush=True)


asyncio.run(asyncio.wait_for(main(), 60))
