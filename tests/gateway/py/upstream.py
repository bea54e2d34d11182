"""An upstream MCP server for the gateway tests, on the official MCP Python SDK.

    upstream.py RECORD_FILE stdio
    upstream.py RECORD_FILE http PORT [json]

`json`: answer each request with one JSON body (the SDK's `json_response`)
instead of an event stream.

Every tool appends {"tool": name, "args": {...}} to RECORD_FILE (one JSON line)
before it answers, so a test sees exactly what the gateway forwarded.
`crash` ends the process; `hang` answers after 30 s (never, for the tests' 2 s
upstream timeout; a hung process left by a killed gateway still ends).
"""

import json
import os
import sys
import time

from mcp.server.mcpserver import MCPServer

record_file = sys.argv[1]
server = MCPServer("upstream")


def record(tool, args):
    with open(record_file, "a", encoding="utf-8") as f:
        f.write(json.dumps({"tool": tool, "args": args}) + "\n")


@server.tool()
def run(command: str, description: str = "") -> str:
    """Run a shell command (recorded, not run)."""
    record("run", {"command": command, "description": description})
    return f"ran: {command}"


@server.tool()
def write(path: str, content: str) -> str:
    """Write a file (recorded, not written)."""
    record("write", {"path": path, "content": content})
    return f"wrote {len(content)} characters to {path}"


@server.tool()
def pay(amount: int, to: str) -> str:
    """Pay someone (recorded)."""
    record("pay", {"amount": amount, "to": to})
    return f"paid {amount} to {to}"


@server.tool()
def crash() -> str:
    """The process dies mid-call."""
    record("crash", {})
    os._exit(3)


@server.tool()
def hang() -> str:
    """Never answers."""
    record("hang", {})
    time.sleep(30)  # far past the tests' 2 s timeout; ends by itself
    return "late"


if __name__ == "__main__":
    if sys.argv[2] == "stdio":
        server.run("stdio")
    else:
        json_response = sys.argv[4:5] == ["json"]
        server.run(
            "streamable-http", host="127.0.0.1", port=int(sys.argv[3]), json_response=json_response
        )
