#!/usr/bin/python3
"""Drives build/echo with Python websockets 10.4 (Debian python3-websockets)
as the client.

    /usr/bin/python3 tests/interop/py_client.py ws://127.0.0.1:P \
        [--sigterm-url ws://127.0.0.1:Q --sigterm-pid PID]

Prints one "ok NAME" or "FAIL NAME: why" line per check and exits non-zero
if any failed. With --sigterm-*, it also connects to that second echo,
sends it SIGTERM and expects the server-initiated close 1001.
"""
import argparse
import asyncio
import os
import random
import signal
import sys

import websockets

SIZES = [0, 1, 125, 126, 65535, 65536, 16 << 20]
STEP_TIMEOUT = 30  # seconds, for any one check
failures = 0


def report(name, error):
    global failures
    if error is None:
        print(f"ok {name}", flush=True)
    else:
        failures += 1
        print(f"FAIL {name}: {error}", flush=True)


def text_of(n):
    """n bytes of UTF-8 text mixing 1-, 2-, 3- and 4-byte characters."""
    unit = "a\u00e9\u20ac\U0001F600"  # 1 + 2 + 3 + 4 bytes
    return unit * (n // 10) + "x" * (n % 10)


def binary_of(n):
    return random.Random(n).randbytes(n)


def connect(url):
    return websockets.connect(url, max_size=64 << 20, ping_interval=None,
                              compression=None, open_timeout=10, close_timeout=10)


def describe(got, want):
    if type(got) is not type(want):
        return f"got {type(got).__name__}, sent {type(want).__name__}"
    if len(got) != len(want):
        return f"got {len(got)} units back, sent {len(want)}"
    first = next(i for i in range(len(got)) if got[i] != want[i])
    return f"differs from offset {first}"


class Client:
    """One connection, opened again when a check left it closed."""

    def __init__(self, url):
        self.url, self.ws = url, None

    async def get(self):
        if self.ws is None or self.ws.closed:
            self.ws = await connect(self.url)
        return self.ws


async def check(name, coro):
    try:
        report(name, await asyncio.wait_for(coro, STEP_TIMEOUT))
    except Exception as e:  # a timeout, a dropped connection: all are failures
        report(name, f"{type(e).__name__}: {e}")


async def echo(client, msg):
    ws = await client.get()
    await ws.send(msg)
    got = await ws.recv()
    return None if got == msg else describe(got, msg)


async def fragmented_text(client):
    ws = await client.get()
    parts = ["fragmented ", "", "text \u00e9\u20ac\U0001F600 ", "x" * 70000, "end"]
    # an iterable: one frame per part, then websockets 10.4 ends the message
    # with an empty frame with FIN set
    await ws.send(parts)
    got = await ws.recv()
    want = "".join(parts)
    return None if got == want else describe(got, want)


async def fragmented_binary(client):
    ws = await client.get()
    parts = [binary_of(n) for n in (1, 125, 0, 65536, 3)]

    async def chunks():  # an async iterator works too
        for p in parts:
            yield p

    await ws.send(chunks())
    got = await ws.recv()
    want = b"".join(parts)
    return None if got == want else describe(got, want)


async def ping(client, payload):
    ws = await client.get()
    waiter = await ws.ping(payload)
    await waiter  # resolves when the pong with this payload arrives
    return None


async def many_pings(client):
    ws = await client.get()
    waiters = [await ws.ping(f"ping {i}") for i in range(10)]
    await asyncio.gather(*waiters)
    return None


async def client_close(url, code, reason):
    ws = await connect(url)
    await ws.send("before close")
    if await ws.recv() != "before close":
        return "echo before the close went wrong"
    await ws.close(code, reason)
    if ws.close_code != code:  # the code in the server's answering close
        return f"server answered close {ws.close_code} ({ws.close_reason!r}), want {code}"
    return None


async def server_close(url, pid):
    ws = await connect(url)
    await ws.send("hello")
    await ws.recv()
    os.kill(pid, signal.SIGTERM)
    try:
        got = await ws.recv()
        return f"got a message instead of the close: {got!r}"
    except websockets.ConnectionClosed:
        pass
    await ws.wait_closed()
    if ws.close_code != 1001:
        return f"server closed with {ws.close_code} ({ws.close_reason!r}), want 1001"
    return None


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--sigterm-url")
    parser.add_argument("--sigterm-pid", type=int)
    args = parser.parse_args()

    client = Client(args.url)
    for n in SIZES:
        await check(f"text {n} bytes echoed", echo(client, text_of(n)))
        await check(f"binary {n} bytes echoed", echo(client, binary_of(n)))
    await check("fragmented text (6 frames, two empty) echoed whole", fragmented_text(client))
    await check("fragmented binary (async iterator, 6 frames, two empty) echoed whole",
                fragmented_binary(client))
    await check("ping answered by a pong", ping(client, b"are you there"))
    await check("ping with a 125-byte payload answered", ping(client, binary_of(125)))
    await check("ten pings in a row all answered", many_pings(client))
    if client.ws is not None:
        await client.ws.close()
    await check("client close 1000 answered with 1000", client_close(args.url, 1000, "bye"))
    await check("client close 4001 answered with 4001",
                client_close(args.url, 4001, "application code"))
    if args.sigterm_url:
        await check("server SIGTERM closes the client with 1001",
                    server_close(args.sigterm_url, args.sigterm_pid))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
