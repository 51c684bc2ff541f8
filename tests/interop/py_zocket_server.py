#!/usr/bin/python3
"""A Zocket-protocol server written with Python websockets (Debian
python3-websockets 10.4), not with zocket.h: the independent peer that
build/zkcat (zk_client) talks to in tests/interop/run.sh, section 9.

    /usr/bin/python3 tests/interop/py_zocket_server.py --port N

Prints "listening on ws://127.0.0.1:N/" once ready; exits 0 on SIGINT or
SIGTERM (open connections are closed with 1001). Any path is accepted.
Two codecs, chosen per connection by the subprotocol the client offers
(the first of the client's offers that the server speaks is selected):
zocket.msgpack, the envelope as a MessagePack map in binary frames,
read and written with Debian's python3-msgpack (1.0.3: unpackb(raw=False),
packb(use_bin_type=True); without the module, zocket.msgpack is not
offered); zocket.json or none, JSON text frames.

Wire protocol (/work/shared/DESIGN.md): a text frame is one JSON object
{"type","payload"?,"rpcId"?} (a binary frame one MessagePack map with
those keys). With an rpcId (a string or an integer) it is a
call, answered exactly once, by __rpc_res {payload, rpcId} or __rpc_err
{rpcId, error {code, message, data?}}, unless its route is defined not to
answer; without one it is an event, answered only when it fails, by
__error {error {code, message, ref: its type}}. The messages of a connection
are handled one at a time, in order, so what a route sends comes out in
order. Routes:
  math.add {a, b}  a + b (numbers; else INVALID_INPUT)
  fail             error FORBIDDEN, message "no", data {"why": "test"}
  whoami           {"query": {name: value...}, "x_test": the X-Test header
                   or null, "protocol": the negotiated subprotocol or null},
                   as seen on this connection's upgrade request
  emit.me {n}      n events {"type":"tick","payload":i}, i = 0..n-1, then
                   the answer {"ok": true} (0 <= n <= 1000)
  close.with {code}  answers nothing and closes the connection with that
                   close code (1000-4999, one websockets may send; else
                   INVALID_INPUT); later messages on it are not handled
  slow             never answers
  conns            how many connections the server has accepted so far,
                   this one included
  echo             its payload (null when there is none)
  types            its payload with each scalar replaced by the name of the
                   Python type the codec decoded it to ("int", "float",
                   "str", "bytes", "bool", "nil"), containers kept
  wire             {"codec": "msgpack" or "json", "canonical": whether
                   packb(the decoded envelope) gives back the very bytes of
                   the frame (python3-msgpack writes the smallest form of
                   each value; null for JSON), "frame": the frame, in hex
                   for MessagePack}
  raw {hex}        MessagePack only: answers with those bytes, unchecked, as
                   the payload of its __rpc_res (to hand a client forms
                   python3-msgpack would not write, or bad ones); on JSON,
                   INVALID_INPUT
  __ping           {"type":"__pong"} with the same payload (not routed; the
                   heartbeat of clients that cannot send ping frames)
  anything else    NOT_FOUND
A frame that is not a map/object with a string "type" (or not JSON or
MessagePack, or a MessagePack ext type) gets __error BAD_REQUEST (no ref);
so does a frame of the other codec's kind (binary in a JSON session, text in
a MessagePack one).
"""
import argparse
import asyncio
import json
import signal
import urllib.parse

import websockets
from websockets.frames import Close

try:
    import msgpack
except ImportError:  # JSON only then
    msgpack = None

MSGPACK = "zocket.msgpack"

accepted = 0  # connections accepted so far


class ZkError(Exception):
    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def body(self):
        e = {"code": self.code, "message": self.message}
        if self.data is not None:
            e["data"] = self.data
        return e


class NoAnswer(Exception):
    """The route is defined not to answer."""


class CloseWith(Exception):
    """The route wants the connection closed with this code."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def obj(payload):
    if not isinstance(payload, dict):
        raise ZkError("INVALID_INPUT", "payload must be an object")
    return payload


def number(p, key):
    v = p.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ZkError("INVALID_INPUT", f"{key} must be a number")
    return v


class Raw:
    """A result sent as these MessagePack bytes, unchecked."""

    def __init__(self, data):
        self.data = data


def is_msgpack(ws):
    return ws.subprotocol == MSGPACK


def pack(msg):
    return msgpack.packb(msg, use_bin_type=True)


def no_ext(code, data):
    raise ValueError(f"ext type {code}")


def decode(ws, frame):
    """The envelope in frame, or None when it is not one map/object."""
    if isinstance(frame, bytes) != is_msgpack(ws):
        return None
    try:
        if isinstance(frame, bytes):
            return msgpack.unpackb(frame, raw=False, ext_hook=no_ext, strict_map_key=True)
        return json.loads(frame)
    except Exception:  # malformed, truncated, ext, extra data: all refused
        return None


async def send(ws, msg):
    if is_msgpack(ws):
        await ws.send(pack(msg))
    else:
        await ws.send(json.dumps(msg, separators=(",", ":")))


def type_names(v):
    if isinstance(v, dict):
        return {k: type_names(x) for k, x in v.items()}
    if isinstance(v, list):
        return [type_names(x) for x in v]
    if v is None:
        return "nil"
    return {bool: "bool", int: "int", float: "float", str: "str", bytes: "bytes"}.get(type(v), repr(type(v)))


async def route(ws, info, frame, msg, type_, payload):
    """The result of route type_ (sent as __rpc_res for a call; a Raw as its
    bytes), or raises ZkError, NoAnswer or CloseWith. May send events on ws
    first. frame is the message as received, msg its decoded envelope."""
    if type_ == "math.add":
        p = obj(payload)
        return number(p, "a") + number(p, "b")
    if type_ == "fail":
        raise ZkError("FORBIDDEN", "no", {"why": "test"})
    if type_ == "whoami":
        return info
    if type_ == "emit.me":
        n = obj(payload).get("n")
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 1000:
            raise ZkError("INVALID_INPUT", "n must be an integer in 0..1000")
        for i in range(n):
            await send(ws, {"type": "tick", "payload": i})
        return {"ok": True}
    if type_ == "close.with":
        code = obj(payload).get("code")
        if isinstance(code, bool) or not isinstance(code, int):
            raise ZkError("INVALID_INPUT", "code must be an integer")
        try:
            Close(code, "").serialize()  # raises for a code one may not send
        except Exception:
            raise ZkError("INVALID_INPUT", f"{code} is not a close code to send")
        raise CloseWith(code)
    if type_ == "slow":
        raise NoAnswer()
    if type_ == "conns":
        return accepted
    if type_ == "echo":
        return payload
    if type_ == "types":
        return type_names(payload)
    if type_ == "wire":
        if is_msgpack(ws):
            return {"codec": "msgpack", "canonical": pack(msg) == frame, "frame": frame.hex()}
        return {"codec": "json", "canonical": None, "frame": frame}
    if type_ == "raw":
        if not is_msgpack(ws):
            raise ZkError("INVALID_INPUT", "raw needs zocket.msgpack")
        try:
            return Raw(bytes.fromhex(obj(payload).get("hex")))
        except (TypeError, ValueError):
            raise ZkError("INVALID_INPUT", "hex must be a string of hex digits")
    raise ZkError("NOT_FOUND", f"no route {type_}")


async def handle(ws, info, frame):
    msg = decode(ws, frame)
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        await send(ws, {"type": "__error",
                        "error": {"code": "BAD_REQUEST", "message": "not a Zocket envelope"}})
        return
    type_, payload = msg["type"], msg.get("payload")
    if type_ == "__ping":
        pong = {"type": "__pong"}
        if "payload" in msg:
            pong["payload"] = payload
        await send(ws, pong)
        return
    rpc_id = msg.get("rpcId")
    is_call = "rpcId" in msg
    try:
        if is_call and (isinstance(rpc_id, bool) or not isinstance(rpc_id, (str, int))):
            is_call = False
            raise ZkError("BAD_REQUEST", "rpcId must be a string or an integer")
        result = await route(ws, info, frame, msg, type_, payload)
        if is_call and isinstance(result, Raw):
            await ws.send(b"\x83" + pack("type") + pack("__rpc_res") + pack("payload")
                          + result.data + pack("rpcId") + pack(rpc_id))
        elif is_call:
            await send(ws, {"type": "__rpc_res", "payload": result, "rpcId": rpc_id})
    except ZkError as e:
        if is_call:
            await send(ws, {"type": "__rpc_err", "rpcId": rpc_id, "error": e.body()})
        else:
            await send(ws, {"type": "__error", "error": dict(e.body(), ref=type_)})
    except NoAnswer:
        pass


async def handler(ws, path=None):
    global accepted
    accepted += 1
    url = urllib.parse.urlsplit(path if path is not None else ws.path)
    info = {
        "query": dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True)),
        "x_test": ws.request_headers.get("X-Test"),
        "protocol": ws.subprotocol,
    }
    try:
        async for frame in ws:
            try:
                await handle(ws, info, frame)
            except CloseWith as c:
                await ws.close(c.code, "close.with")
                return
    except websockets.ConnectionClosed:
        pass


def first_offer(client_offers, server_protocols):
    """The client's first offer the server speaks (websockets' default
    ranks by the sum of both orders, a tie for two offers)."""
    return next((p for p in client_offers if p in server_protocols), None)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with websockets.serve(handler, "127.0.0.1", args.port,
                                subprotocols=["zocket.json"] + ([MSGPACK] if msgpack else []),
                                select_subprotocol=first_offer,
                                max_size=1 << 20, ping_interval=None,
                                compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on ws://127.0.0.1:{port}/", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
