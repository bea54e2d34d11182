"""The gateway's added latency: one MCP client (the official Python SDK) calls
the same upstream tool directly and through `sluice gateway`, interleaved, in
the same run. Prints p50/p90/p99 of each path and their differences.

    bench-gateway.py DIRECT_URL GATEWAY_URL CALLS
"""

import asyncio
import json
import sys
import time

from mcp import Client


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def main():
    direct_url, gateway_url, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    async with Client(direct_url) as direct, Client(gateway_url) as gateway:
        paths = {"direct": (direct, "pay"), "gateway": (gateway, "up.pay")}
        samples = {"direct": [], "gateway": []}
        for i in range(calls + calls // 10):
            for name, (client, tool) in paths.items():
                t0 = time.perf_counter_ns()
                r = await client.call_tool(tool, {"amount": 5, "to": "bench"})
                t = time.perf_counter_ns() - t0
                assert not r.is_error, r
                if i >= calls // 10:  # the first tenth warms up
                    samples[name].append(t / 1e6)
    out = {}
    for name, xs in samples.items():
        out[name] = {f"p{int(q * 100)}": round(quantile(xs, q), 3) for q in (0.5, 0.9, 0.99)}
    out["added"] = {k: round(out["gateway"][k] - out["direct"][k], 3) for k in out["direct"]}
    out["calls"] = calls
    print(json.dumps(out))


asyncio.run(main())
