"""Checks examples/gameloop with Python websockets: state messages arrive
with consecutive ticks, and two clients see the same stream.

usage: gameloop_client.py URL       prints ok/FAIL lines, exits 1 on failure
"""
import asyncio
import json
import sys

import websockets

URL = sys.argv[1]
failures = 0


def check(cond, what):
    global failures
    print(("ok " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures += 1


async def collect(ws, n):
    out = []
    while len(out) < n:
        msg = await asyncio.wait_for(ws.recv(), 5)
        out.append(json.loads(msg))
    return out


async def main():
    async with websockets.connect(URL, ping_interval=None) as a, \
               websockets.connect(URL, ping_interval=None) as b:
        first = await collect(a, 60)
        check(all(m.get("type") == "state" and "tick" in m.get("payload", {}) for m in first),
              "every message is a {type: state, payload: {tick, x}} object")
        ticks = [m["payload"]["tick"] for m in first]
        check(all(t2 == t1 + 1 for t1, t2 in zip(ticks, ticks[1:])),
              "ticks are consecutive (no state message lost or reordered)")
        second = await collect(b, 60)
        check(len(second) == 60 and second[-1]["payload"]["tick"] > ticks[0],
              "a second client receives the same stream")


asyncio.run(main())
sys.exit(1 if failures else 0)
