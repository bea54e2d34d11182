"""The gateway's added latency: one MCP client (the official Python SDK) calls
the same upstream tool directly and through `sluice gateway`, interleaved, in
the same run. Each round makes CALLS calls on each path (the first tenth of
the first round warms up and is not counted); prints each path's p50/p90/p99
per round, the medians over the rounds, the added time (gateway minus
direct, from the medians) and the machine's load average before and after.

    bench-gateway.py DIRECT_URL GATEWAY_URL CALLS ROUNDS
"""

import asyncio
import json
import statistics
import sys
import time

from mcp import Client


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def load():
    with open("/proc/loadavg", encoding="ascii") as f:
        return float(f.read().split()[0])


QS = (0.5, 0.9, 0.99)


async def main():
    direct_url, gateway_url = sys.argv[1], sys.argv[2]
    calls, rounds = int(sys.argv[3]), int(sys.argv[4])
    load_before = load()
    per_round = {"direct": [], "gateway": []}
    async with Client(direct_url) as direct, Client(gateway_url) as gateway:
        paths = {"direct": (direct, "pay"), "gateway": (gateway, "up.pay")}
        for _ in range(calls // 10):
            for client, tool in paths.values():
                await client.call_tool(tool, {"amount": 5, "to": "bench"})
        for _ in range(rounds):
            samples = {"direct": [], "gateway": []}
            for _ in range(calls):
                for name, (client, tool) in paths.items():
                    t0 = time.perf_counter_ns()
                    r = await client.call_tool(tool, {"amount": 5, "to": "bench"})
                    t = time.perf_counter_ns() - t0
                    assert not r.is_error, r
                    samples[name].append(t / 1e6)
            for name, xs in samples.items():
                per_round[name].append({f"p{int(q * 100)}": round(quantile(xs, q), 3) for q in QS})
    out = {"calls": calls, "rounds": rounds}
    for name, rs in per_round.items():
        out[name] = {k: round(statistics.median(r[k] for r in rs), 3) for k in rs[0]}
        out[name + "_rounds"] = rs
    out["added"] = {k: round(out["gateway"][k] - out["direct"][k], 3) for k in out["direct"]}
    out["load"] = {"before": load_before, "after": load()}
    print(json.dumps(out))


asyncio.run(main())
