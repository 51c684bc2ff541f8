#!/usr/bin/python3
"""Echo server on Python websockets (Debian python3-websockets 10.4), the
peer that tests/interop/interop_client.c talks to.

    /usr/bin/python3 tests/interop/py_server.py --port N

Prints "listening on ws://127.0.0.1:N" once ready; exits on SIGINT/SIGTERM.
Echoes every message, except those starting with a marker (text or binary):
  fragment:...  echoed whole but sent fragmented: five pieces (the fourth
                empty), and websockets 10.4 adds an empty final frame
  close:NNNN    the server closes with code NNNN, reason "server closes"
  ping:         the server pings (payload "from-server"), and once the pong
                is back sends the text "pong:ok"
"""
import argparse
import asyncio
import signal

import websockets


def pieces(msg):
    """msg cut into five pieces, the fourth empty: an empty continuation
    frame is legal and worth sending. str pieces stay whole characters."""
    n = len(msg)
    a, b, c = n // 4, n // 2, 3 * n // 4
    return [msg[:a], msg[a:b], msg[b:c], msg[c:c], msg[c:]]


async def handler(ws, path=None):
    try:
        async for msg in ws:
            head = msg[:10].encode() if isinstance(msg, str) else msg[:10]
            if head.startswith(b"fragment:"):
                await ws.send(pieces(msg))  # an iterable: sent fragmented
            elif head.startswith(b"close:"):
                await ws.close(int(head[6:10]), "server closes")
            elif head.startswith(b"ping:"):
                pong = await ws.ping(b"from-server")
                await asyncio.wait_for(pong, 10)
                await ws.send("pong:ok")
            else:
                await ws.send(msg)
    except websockets.ConnectionClosed:
        pass


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with websockets.serve(handler, "127.0.0.1", args.port,
                                max_size=64 << 20, ping_interval=None,
                                compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on ws://127.0.0.1:{port}", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
