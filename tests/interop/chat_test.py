#!/usr/bin/python3
"""Checks examples/chat (build/chat) over real sockets with Python websockets
10.4 (Debian python3-websockets) as the client, and its page with http.client.

    /usr/bin/python3 tests/interop/chat_test.py http://127.0.0.1:P/ \
        [--codec json|msgpack] [--sigterm-url http://127.0.0.1:Q/ --sigterm-pid PID]

The argument is the URL build/chat prints ("chat: open http://H:P/"); the
Zocket endpoint is ws://H:P/ws?name=NAME. With --sigterm-*, it also connects
two clients to that second build/chat, sends it SIGTERM and expects both
closed with 1001 (going away). Prints one "ok NAME" or
"FAIL NAME: why" line per check and exits non-zero if any failed. Every
check opens its own connections, with names and rooms of its own, and every
wait is bounded. Payloads are compared exactly.

--codec (json by default) is what every client of the checks speaks: json
offers no subprotocol and sends and expects JSON text frames; msgpack
offers "zocket.msgpack", sends envelopes packed by Debian's python3-msgpack
(packb(use_bin_type=True)) in binary frames and reads what it gets with
unpackb(raw=False); a connection must have that subprotocol selected, and
every frame it receives must be binary. The checks are the same in both
(but for their input where it must be malformed or of the other codec's
kind: each codec's own); msgpack adds checks of its own: every MessagePack type through __ping, bin where a string is
wanted, and JSON and MessagePack clients in one room (each other's messages,
decoded, identical). Exits 2 when --codec msgpack and python3-msgpack
cannot be imported.

"Nothing else arrived" is checked without sleeping: a client makes a
chat.rooms call, and whatever reached it before the answer (the server sends
each connection its messages in order) must be what the check expected.
"""
import argparse
import asyncio
import http.client
import json
import os
import re
import signal
import sys
import urllib.parse

import websockets

try:
    import msgpack
except ImportError:  # --codec msgpack says so
    msgpack = None

WAIT = 5            # seconds for any one message or HTTP answer
CHECK_TIMEOUT = 30  # seconds for any one check
MAX_TEXT = 2000     # bytes of chat.send text the server accepts
failures = 0
ABSENT = object()


class Failure(Exception):
    pass


def report(name, error):
    global failures
    if error is None:
        print(f"ok {name}", flush=True)
    else:
        failures += 1
        print(f"FAIL {name}: {error}", flush=True)


async def check(name, fn):
    try:
        await asyncio.wait_for(fn(), CHECK_TIMEOUT)
        report(name, None)
    except Failure as e:
        report(name, str(e))
    except Exception as e:  # a timeout, a dropped connection: all are failures
        report(name, f"{type(e).__name__}: {e}")


def expect_equal(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {short(got)}, want {short(want)}")


def short(v, limit=300):
    s = json.dumps(v, ensure_ascii=False, default=repr) if not isinstance(v, str) else repr(v)
    return s if len(s) <= limit else s[:limit] + f"... ({len(s)} chars)"


class Json:
    """Envelopes as JSON text frames; offers protocol (None: no subprotocol)."""
    name, binary = "JSON", False

    def __init__(self, protocol=None):
        self.protocol = protocol

    def encode(self, msg):
        return json.dumps(msg)

    def decode(self, frame):
        """The message in frame; raises ValueError when it is not one."""
        if not isinstance(frame, str):
            raise ValueError(f"a binary frame ({len(frame)} bytes) in a JSON session")
        try:
            return json.loads(frame)
        except ValueError:
            raise ValueError(f"a frame that is not JSON: {short(frame)}")

    @staticmethod
    def malformed():
        """Input the server must answer with __error BAD_REQUEST: (what, frame)."""
        return [(repr(raw), raw) for raw in (
            '{"type":"chat.join","payload":{"room":"mf"},"rpcId":"x"',  # truncated
            "not json at all", "[1,2,3]", '"a string"', "{}")]
    # a frame of the other codec's kind
    other_kind = b"\x82\xa4type\xaachat.rooms\xa5rpcId\xa2ok"


class MsgPack:
    """Envelopes as MessagePack maps in binary frames (python3-msgpack)."""
    name, binary, protocol = "MessagePack", True, "zocket.msgpack"

    @staticmethod
    def encode(msg):
        return msgpack.packb(msg, use_bin_type=True)

    @staticmethod
    def decode(frame):
        if not isinstance(frame, bytes):
            raise ValueError(f"a text frame in a MessagePack session: {short(frame)}")
        try:
            return msgpack.unpackb(frame, raw=False)
        except Exception as e:
            raise ValueError(f"a frame that is not MessagePack ({type(e).__name__}: {e}):"
                             f" {frame[:100].hex()}")

    @staticmethod
    def malformed():
        pack = MsgPack.encode
        return [
            ("a truncated map", pack({"type": "chat.join", "payload": {"room": "mf"}, "rpcId": "x"})[:-1]),
            ("0xc1 (never used)", b"\xc1"),
            ("an array", pack([1, 2, 3])),
            ("a string", pack("a string")),
            ("an empty map", pack({})),
            ("a map, then one more byte", pack({"type": "chat.rooms", "rpcId": "x"}) + b"\x00"),
            ("a map with an integer key", pack({1: 2})),
            ("an ext type in the payload",
             pack({"type": "chat.rooms", "rpcId": "x", "payload": msgpack.ExtType(5, b"ab")})),
            ("a str that is not UTF-8", b"\x82\xa4type\xa2\xff\xfe\xa5rpcId\xa1x"),
            ("a str32 declaring 4 GiB", b"\x82\xa4type\xdb\xff\xff\xff\xff"),
            ("a map16 declaring 65535 pairs", b"\xde\xff\xff\xa4type"),
            ("NaN", pack({"type": "chat.rooms", "rpcId": "x", "payload": float("nan")})),
        ]
    other_kind = '{"type":"chat.rooms","rpcId":"ok"}'


CODECS = {"json": Json(), "msgpack": MsgPack()}


class Message(dict):
    """A message received; .frame is the frame it came in."""


class Peer:
    """One chat connection, speaking codec. Messages that arrive while
    waiting for another one are kept, in order, in self.pending for later
    takes."""

    def __init__(self, ws, name, codec):
        self.ws, self.name, self.codec = ws, name, codec
        self.pending = []
        self.seq = 0
        if ws.subprotocol != codec.protocol:
            raise Failure(f"{name}: subprotocol {ws.subprotocol!r} selected, want {codec.protocol!r}")

    async def send(self, msg):
        """An envelope, encoded; str or bytes are sent as they are (a text or
        a binary frame)."""
        await self.ws.send(msg if isinstance(msg, (str, bytes)) else self.codec.encode(msg))

    async def take(self, pred, what, timeout=WAIT):
        for i, m in enumerate(self.pending):
            if pred(m):
                return self.pending.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise Failure(f"{self.name}: no {what} within {timeout} s"
                              f" (unconsumed: {short(self.pending)})")
            try:
                raw = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                continue
            except websockets.ConnectionClosed as e:
                raise Failure(f"{self.name}: connection closed ({e}) while waiting for {what}")
            try:
                m = self.codec.decode(raw)
            except ValueError as e:
                raise Failure(f"{self.name}: {e}")
            if not isinstance(m, dict):
                raise Failure(f"{self.name}: a message that is not an object: {short(raw)}")
            m = Message(m)
            m.frame = raw
            if pred(m):
                return m
            self.pending.append(m)

    async def call(self, type_, payload=ABSENT, rpc_id=None):
        """Sends a call; returns its answer (__rpc_res or __rpc_err)."""
        if rpc_id is None:
            self.seq += 1
            rpc_id = f"{self.name}-{self.seq}"
        msg = {"type": type_, "rpcId": rpc_id}
        if payload is not ABSENT:
            msg["payload"] = payload
        await self.send(msg)
        return await self.take(
            lambda m: m.get("rpcId") == rpc_id and m.get("type") in ("__rpc_res", "__rpc_err"),
            f"answer to {type_} ({rpc_id})")

    async def ok(self, type_, payload=ABSENT):
        """A call that must succeed: returns the whole __rpc_res, checked."""
        m = await self.call(type_, payload)
        if m.get("type") != "__rpc_res":
            raise Failure(f"{self.name}: {type_} {short(payload)} failed: {short(m)}")
        if set(m) != {"type", "payload", "rpcId"}:
            raise Failure(f"{self.name}: {type_} answer has keys {sorted(m)}: {short(m)}")
        return m["payload"]

    async def event(self, type_, what=None):
        m = await self.take(lambda m: m.get("type") == type_, what or type_)
        if set(m) != {"type", "payload"}:
            raise Failure(f"{self.name}: {type_} event has keys {sorted(m)}: {short(m)}")
        return m["payload"]

    async def events(self, type_, n):
        return [await self.event(type_, f"{type_} #{i + 1} of {n}") for i in range(n)]

    async def quiet(self):
        """Fails if anything not yet consumed reached this client before the
        answer to a chat.rooms call made now."""
        await self.ok("chat.rooms")
        stray, self.pending = self.pending, []
        if stray:
            raise Failure(f"{self.name}: unexpected messages: {short(stray)}")

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), WAIT)
        except Exception:
            pass


class Chat:
    def __init__(self, url, codec):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname or not u.port:
            raise SystemExit(f"usage: chat_test.py http://HOST:PORT/ (got {url!r})")
        self.host, self.port = u.hostname, u.port
        self.ws_url = f"ws://{self.host}:{self.port}/ws"
        self.codec = codec
        self.peers = []

    def connect_raw(self, query, codec=None):
        protocol = (codec or self.codec).protocol
        return websockets.connect(self.ws_url + query, open_timeout=WAIT, close_timeout=WAIT,
                                  subprotocols=[protocol] if protocol else None,
                                  ping_interval=None, compression=None, max_size=1 << 20)

    async def peer(self, name, codec=None):
        """A connection named name, speaking codec (the run's by default)."""
        ws = await self.connect_raw("?name=" + urllib.parse.quote(name), codec)
        try:
            p = Peer(ws, name, codec or self.codec)
        except Failure:
            await ws.close()
            raise
        self.peers.append(p)
        return p

    async def close_all(self):
        peers, self.peers = self.peers, []
        await asyncio.gather(*(p.close() for p in peers))

    def http_get(self, path):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=WAIT)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.getheader("Content-Type") or "", r.read()
        finally:
            conn.close()


def expect_error(m, kind, code, rpc_id=None, ref=None):
    """m must be {"type":kind, ["rpcId"], "error":{"code":code, "message":str,
    ["ref"], ["data"]}}; returns the error object."""
    want_keys = {"type", "error"} | ({"rpcId"} if kind == "__rpc_err" else set())
    if m.get("type") != kind or set(m) != want_keys:
        raise Failure(f"want a {kind} with keys {sorted(want_keys)}, got {short(m)}")
    if rpc_id is not None:
        expect_equal(m.get("rpcId"), rpc_id, "rpcId")
    err = m["error"]
    if not isinstance(err, dict):
        raise Failure(f"error is not an object: {short(m)}")
    expect_equal(err.get("code"), code, f"error code in {short(m)}")
    if not isinstance(err.get("message"), str) or not err["message"]:
        raise Failure(f"error without a message: {short(m)}")
    extra = set(err) - {"code", "message", "ref", "data"}
    if extra:
        raise Failure(f"error has unknown keys {sorted(extra)}: {short(m)}")
    if ref is not None:
        expect_equal(err.get("ref"), ref, f"error.ref in {short(m)}")
    return err


def expect_text_issue(err):
    issues = (err.get("data") or {}).get("issues") if isinstance(err.get("data"), dict) else None
    if not isinstance(issues, list) or not issues:
        raise Failure(f"error.data.issues is not a non-empty list: {short(err)}")
    for i in issues:
        if (not isinstance(i, dict) or set(i) != {"path", "message"}
                or not isinstance(i["path"], str) or not isinstance(i["message"], str)
                or not i["message"]):
            raise Failure(f"an issue is not {{path, message}}: {short(i)}")
    if [i["path"] for i in issues] != ["text"]:
        raise Failure(f"want one issue at path 'text', got {short(issues)}")


def members_of(payload):
    if not isinstance(payload, dict) or not isinstance(payload.get("members"), list):
        raise Failure(f"no members list in {short(payload)}")
    return {**payload, "members": sorted(payload["members"])}


# ---- HTTP: the refusal and the page ----------------------------------------

async def refused(chat, query, status=401):
    try:
        ws = await chat.connect_raw(query)
    except websockets.exceptions.InvalidStatusCode as e:  # websockets <= 10
        expect_equal(e.status_code, status, f"HTTP status of the refused upgrade {query!r}")
        return
    except getattr(websockets.exceptions, "InvalidStatus", ()) as e:  # websockets >= 11
        expect_equal(e.response.status_code, status,
                     f"HTTP status of the refused upgrade {query!r}")
        return
    await ws.close()
    raise Failure(f"the upgrade {query!r} was accepted")


async def bad_names(chat):
    """examples/chat.c: a name over 32 bytes after percent-decoding, not
    UTF-8, or with control characters is a malformed request: 400."""
    for query in ("?name=" + "n" * 33, "?name=" + "%C3%A9" * 16 + "x", "?name=ab%FFcd",
                  "?name=ab%C3", "?name=line%0Abreak", "?name=tab%09", "?name=del%7F"):
        await refused(chat, query, 400)


async def name_decoded(chat):
    """A 32-byte name is accepted; the name is percent-decoded UTF-8, and two
    connections may share one."""
    a = await chat.peer("nd_" + "n" * 29)
    await a.ok("chat.join", {"room": "nd"})
    b = await chat.peer("nd_b\u00e9a \"q\" \u20ac")  # sent percent-encoded
    twin = await chat.peer(b.name)
    expect_equal(members_of(await b.ok("chat.join", {"room": "nd"})),
                 {"room": "nd", "members": sorted([a.name, b.name])}, "join answer")
    expect_equal(members_of(await twin.ok("chat.join", {"room": "nd"})),
                 {"room": "nd", "members": sorted([a.name, b.name, b.name])},
                 "join answer with two connections of one name")
    await b.ok("chat.send", {"room": "nd", "text": "hi"})
    expect_equal(await a.event("chat.message"), {"room": "nd", "from": b.name, "text": "hi"},
                 "the chat.message")


SCRIPT_SRC = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?([^"'\s>]+)""", re.I)
JS_IMPORT = re.compile(r"""\bimport\b[^'";]*?['"](\.{1,2}/[^'"]+)['"]""")
JS_TYPES = ("text/javascript", "application/javascript", "application/x-javascript")


async def page_and_script(chat):
    status, ctype, body = chat.http_get("/")
    expect_equal(status, 200, "GET / status")
    if ctype.split(";")[0].strip().lower() != "text/html":
        raise Failure(f"GET / Content-Type {ctype!r}, want text/html")
    html = body.decode("utf-8", "replace")
    todo = [urllib.parse.urljoin("/", src) for src in SCRIPT_SRC.findall(html)]
    if not todo:
        raise Failure(f"the page references no script (<script src=...>): {short(html)}")
    done = set()
    while todo and len(done) < 20:  # the scripts, and the modules they import
        url = todo.pop()
        path = urllib.parse.urlsplit(url).path
        if path in done:
            continue
        done.add(path)
        status, ctype, body = chat.http_get(path)
        expect_equal(status, 200, f"GET {path} status")
        if ctype.split(";")[0].strip().lower() not in JS_TYPES:
            raise Failure(f"GET {path} Content-Type {ctype!r}, want a JavaScript type")
        if not body.strip():
            raise Failure(f"GET {path}: an empty script")
        todo += [urllib.parse.urljoin(url, m)
                 for m in JS_IMPORT.findall(body.decode("utf-8", "replace"))]


async def page_with_query(chat):
    status, ctype, _ = chat.http_get("/?name=alice")
    expect_equal(status, 200, "GET /?name=alice status")
    if ctype.split(";")[0].strip().lower() != "text/html":
        raise Failure(f"Content-Type {ctype!r}, want text/html")


async def no_traversal(chat):
    for path in ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                 "/..%2f..%2f..%2f..%2fetc/passwd"):
        status, _, body = chat.http_get(path)
        if status == 200 and b"root:" in body:
            raise Failure(f"GET {path} served /etc/passwd")


# ---- rooms -----------------------------------------------------------------

async def join_members(chat):
    a = await chat.peer("jm_alice")
    b = await chat.peer("jm_bob")
    expect_equal(await a.ok("chat.join", {"room": "jm"}),
                 {"room": "jm", "members": ["jm_alice"]}, "first join answer")
    expect_equal(members_of(await b.ok("chat.join", {"room": "jm"})),
                 {"room": "jm", "members": ["jm_alice", "jm_bob"]}, "second join answer")
    await chat.close_all()


async def joined_event(chat):
    a = await chat.peer("je_alice")
    b = await chat.peer("je_bob")
    c = await chat.peer("je_carol")
    await a.ok("chat.join", {"room": "je"})
    await b.ok("chat.join", {"room": "je"})
    expect_equal(await a.event("chat.joined"), {"room": "je", "name": "je_bob"},
                 "alice's chat.joined for bob")
    await c.ok("chat.join", {"room": "je"})
    expect_equal(await a.event("chat.joined"), {"room": "je", "name": "je_carol"},
                 "alice's chat.joined for carol")
    expect_equal(await b.event("chat.joined"), {"room": "je", "name": "je_carol"},
                 "bob's chat.joined for carol")
    for p in (a, b, c):  # exactly once each, and never to the joiner itself
        await p.quiet()
    await chat.close_all()


async def send_to_members(chat):
    a = await chat.peer("sm_alice")
    b = await chat.peer("sm_bob")
    c = await chat.peer("sm_carol")  # in another room: must not see it
    await a.ok("chat.join", {"room": "sm"})
    await b.ok("chat.join", {"room": "sm"})
    await c.ok("chat.join", {"room": "sm_other"})
    await a.event("chat.joined")
    expect_equal(await a.ok("chat.send", {"room": "sm", "text": "hello, bob"}),
                 {"ok": True}, "chat.send answer")
    want = {"room": "sm", "from": "sm_alice", "text": "hello, bob"}
    expect_equal(await a.event("chat.message"), want, "the sender's own chat.message")
    expect_equal(await b.event("chat.message"), want, "bob's chat.message")
    for p in (a, b, c):
        await p.quiet()
    await chat.close_all()


async def text_round_trip(chat):
    a = await chat.peer("rt_alice")
    b = await chat.peer("rt_bob")
    await a.ok("chat.join", {"room": "rt"})
    await b.ok("chat.join", {"room": "rt"})
    text = 'quote " backslash \\ slash / newline \n tab \t <b>&amp;</b> \u00e9\u20ac\U0001F600 \u2028'
    await a.ok("chat.send", {"room": "rt", "text": text})
    expect_equal(await b.event("chat.message"), {"room": "rt", "from": "rt_alice", "text": text},
                 "bob's chat.message")
    await chat.close_all()


async def forbidden(chat):
    a = await chat.peer("fb_alice")
    m = await chat.peer("fb_mallory")
    await a.ok("chat.join", {"room": "fb"})
    r = await m.call("chat.send", {"room": "fb", "text": "let me in"}, rpc_id="fb1")
    expect_error(r, "__rpc_err", "FORBIDDEN", rpc_id="fb1")
    await a.quiet()  # alice got nothing
    await m.quiet()
    await chat.close_all()


async def invalid_input(chat):
    a = await chat.peer("ii_alice")
    b = await chat.peer("ii_bob")
    await a.ok("chat.join", {"room": "ii"})
    await b.ok("chat.join", {"room": "ii"})
    await a.event("chat.joined")
    cases = [("text missing", {"room": "ii"}),
             ("text a number", {"room": "ii", "text": 42}),
             ("text null", {"room": "ii", "text": None}),
             ("text an array", {"room": "ii", "text": ["hi"]}),
             ("text 2001 ASCII bytes", {"room": "ii", "text": "x" * (MAX_TEXT + 1)}),
             ("text 667 three-byte characters (2001 bytes)", {"room": "ii", "text": "\u20ac" * 667})]
    for what, payload in cases:
        r = await a.call("chat.send", payload, rpc_id="ii-" + what)
        try:
            expect_text_issue(expect_error(r, "__rpc_err", "INVALID_INPUT", rpc_id="ii-" + what))
        except Failure as e:
            raise Failure(f"{what}: {e}")
    await b.quiet()  # no refused message reached anyone
    await a.quiet()
    await chat.close_all()


async def max_text(chat):
    a = await chat.peer("mt_alice")
    b = await chat.peer("mt_bob")
    await a.ok("chat.join", {"room": "mt"})
    await b.ok("chat.join", {"room": "mt"})
    for text in ("y" * MAX_TEXT, "\u00e9" * (MAX_TEXT // 2)):  # 2000 bytes both
        expect_equal(await a.ok("chat.send", {"room": "mt", "text": text}), {"ok": True},
                     f"chat.send of {len(text)} characters answer")
        expect_equal(await b.event("chat.message"), {"room": "mt", "from": "mt_alice", "text": text},
                     "bob's chat.message")
    await chat.close_all()


async def room_names(chat):
    """examples/chat.c: room is a string of 1 to 64 bytes."""
    a = await chat.peer("rn_alice")
    for what, payload in (("room missing", {}), ("room empty", {"room": ""}),
                          ("room 65 bytes", {"room": "r" * 65}), ("room a number", {"room": 5})):
        for type_ in ("chat.join", "chat.send", "chat.leave"):
            p = dict(payload, text="x") if type_ == "chat.send" else payload
            r = await a.call(type_, p, rpc_id=f"rn-{type_}-{what}")
            try:
                err = expect_error(r, "__rpc_err", "INVALID_INPUT", rpc_id=f"rn-{type_}-{what}")
                issues = (err.get("data") or {}).get("issues")
                if not isinstance(issues, list) or [i.get("path") for i in issues] != ["room"]:
                    raise Failure(f"want one issue at path 'room': {short(err)}")
            except Failure as e:
                raise Failure(f"{type_}, {what}: {e}")
    room = "\u20ac" * 21 + "x"  # 64 bytes
    expect_equal(await a.ok("chat.join", {"room": room}), {"room": room, "members": ["rn_alice"]},
                 "join of a 64-byte room")


async def max_rooms(chat, limit=16):
    """examples/chat.c: MAX_ROOMS (16) rooms per connection, then FORBIDDEN."""
    a = await chat.peer("mr_alice")
    for i in range(limit):
        await a.ok("chat.join", {"room": f"mr_{i}"})
    r = await a.call("chat.join", {"room": "mr_more"}, rpc_id="mr1")
    expect_error(r, "__rpc_err", "FORBIDDEN", rpc_id="mr1")
    expect_equal(await a.ok("chat.join", {"room": "mr_0"}), {"room": "mr_0", "members": ["mr_alice"]},
                 "joining a room it is in again")
    await a.ok("chat.leave", {"room": "mr_0"})
    await a.ok("chat.join", {"room": "mr_more"})


async def rooms_counts(chat):
    a = await chat.peer("rc_alice")
    b = await chat.peer("rc_bob")
    c = await chat.peer("rc_carol")
    for p in (a, b, c):
        await p.ok("chat.join", {"room": "rc_three"})
    await a.ok("chat.join", {"room": "rc_one"})
    await b.ok("chat.join", {"room": "rc_two"})
    await c.ok("chat.join", {"room": "rc_two"})
    rooms = await a.ok("chat.rooms")
    if not isinstance(rooms, list):
        raise Failure(f"chat.rooms answered {short(rooms)}, want a list")
    for r in rooms:
        if (not isinstance(r, dict) or set(r) != {"room", "members"}
                or not isinstance(r["room"], str) or type(r["members"]) is not int):
            raise Failure(f"an entry is not {{room, members: int}}: {short(r)}")
    names = [r["room"] for r in rooms]
    if len(names) != len(set(names)):
        raise Failure(f"a room listed twice: {short(rooms)}")
    if names != sorted(names):
        raise Failure(f"rooms not in order of name: {short(names)}")
    mine = sorted((r for r in rooms if r["room"].startswith("rc_")), key=lambda r: r["room"])
    expect_equal(mine, [{"room": "rc_one", "members": 1}, {"room": "rc_three", "members": 3},
                        {"room": "rc_two", "members": 2}], "chat.rooms entries")
    await chat.close_all()


def room_entry(rooms, name):
    return [r for r in rooms if isinstance(r, dict) and r.get("room") == name]


async def leave(chat):
    a = await chat.peer("lv_alice")
    b = await chat.peer("lv_bob")
    await a.ok("chat.join", {"room": "lv"})
    await b.ok("chat.join", {"room": "lv"})
    await a.event("chat.joined")
    expect_equal(await b.ok("chat.leave", {"room": "lv"}), {"room": "lv"}, "chat.leave answer")
    expect_equal(await a.event("chat.left"), {"room": "lv", "name": "lv_bob"},
                 "alice's chat.left for bob")
    await a.quiet()
    await b.quiet()  # no chat.left to the leaver itself
    expect_equal(room_entry(await a.ok("chat.rooms"), "lv"), [{"room": "lv", "members": 1}],
                 "chat.rooms entry after the leave")
    await a.ok("chat.send", {"room": "lv", "text": "bob is gone"})
    await a.event("chat.message")
    await b.quiet()  # bob no longer gets the room's messages
    r = await b.call("chat.send", {"room": "lv", "text": "still here?"}, rpc_id="lv1")
    expect_error(r, "__rpc_err", "FORBIDDEN", rpc_id="lv1")
    r = await b.call("chat.leave", {"room": "lv"}, rpc_id="lv2")
    expect_error(r, "__rpc_err", "FORBIDDEN", rpc_id="lv2")
    expect_equal(await a.ok("chat.leave", {"room": "lv"}), {"room": "lv"}, "the last leave")
    expect_equal(room_entry(await a.ok("chat.rooms"), "lv"), [],
                 "chat.rooms entry once the room is empty")
    await chat.close_all()


async def disconnect(chat):
    a = await chat.peer("dc_alice")
    b = await chat.peer("dc_bob")
    c = await chat.peer("dc_carol")
    await a.ok("chat.join", {"room": "dc_1"})
    await a.ok("chat.join", {"room": "dc_2"})
    await b.ok("chat.join", {"room": "dc_2"})
    await c.ok("chat.join", {"room": "dc_1"})
    await c.ok("chat.join", {"room": "dc_2"})
    await a.events("chat.joined", 3)
    await b.events("chat.joined", 1)
    await c.ws.close()  # a clean close handshake
    chat.peers.remove(c)
    left = sorted((await a.events("chat.left", 2)), key=lambda p: p.get("room", ""))
    expect_equal(left, [{"room": "dc_1", "name": "dc_carol"}, {"room": "dc_2", "name": "dc_carol"}],
                 "alice's chat.left events (she shares two rooms with carol)")
    expect_equal(await b.event("chat.left"), {"room": "dc_2", "name": "dc_carol"},
                 "bob's chat.left")
    await a.quiet()
    await b.quiet()
    rooms = await a.ok("chat.rooms")
    expect_equal(room_entry(rooms, "dc_1") + room_entry(rooms, "dc_2"),
                 [{"room": "dc_1", "members": 1}, {"room": "dc_2", "members": 2}],
                 "chat.rooms after carol left")
    await chat.close_all()


async def abrupt_disconnect(chat):
    a = await chat.peer("ad_alice")
    d = await chat.peer("ad_dave")
    await a.ok("chat.join", {"room": "ad"})
    await d.ok("chat.join", {"room": "ad"})
    await a.event("chat.joined")
    d.ws.transport.abort()  # TCP reset, no close frame
    chat.peers.remove(d)
    expect_equal(await a.event("chat.left"), {"room": "ad", "name": "ad_dave"},
                 "alice's chat.left for dave")
    await a.quiet()
    await chat.close_all()


async def event_errors(chat):
    a = await chat.peer("ee_alice")
    b = await chat.peer("ee_bob")
    await b.ok("chat.join", {"room": "ee"})
    await a.send({"type": "chat.send", "payload": {"room": "ee", "text": "not a member"}})
    expect_error(await a.take(lambda m: True, "an answer to the event"), "__error", "FORBIDDEN",
                 ref="chat.send")
    await a.ok("chat.join", {"room": "ee"})
    await a.send({"type": "chat.send", "payload": {"room": "ee", "text": 7}})
    err = expect_error(await a.take(lambda m: True, "an answer to the event"), "__error",
                       "INVALID_INPUT", ref="chat.send")
    expect_text_issue(err)
    # a successful event is not answered: alice gets only her chat.message
    await a.send({"type": "chat.send", "payload": {"room": "ee", "text": "as an event"}})
    want = {"room": "ee", "from": "ee_alice", "text": "as an event"}
    expect_equal(await a.event("chat.message"), want, "alice's chat.message")
    expect_equal(await b.event("chat.message"), want, "bob's chat.message")
    await a.quiet()
    await b.event("chat.joined")
    await b.quiet()
    await chat.close_all()


async def malformed(chat):
    a = await chat.peer("mf_alice")
    for what, raw in chat.codec.malformed():
        await a.send(raw)
        m = await a.take(lambda m: True, f"an answer to {what}")
        try:
            expect_error(m, "__error", "BAD_REQUEST")
        except Failure as e:
            raise Failure(f"after {what}: {e}")
    expect_equal(await a.ok("chat.join", {"room": "mf"}), {"room": "mf", "members": ["mf_alice"]},
                 "chat.join after the malformed messages")
    await a.quiet()
    await chat.close_all()


async def other_kind(chat):
    """A frame of the other codec's kind (binary in a JSON session, text in a
    MessagePack one) is not read: __error BAD_REQUEST, answered in the
    session's own codec."""
    a = await chat.peer("ok_alice")
    await a.send(chat.codec.other_kind)
    expect_error(await a.take(lambda m: True, "an answer to the frame"), "__error", "BAD_REQUEST")
    expect_equal(await a.ok("chat.join", {"room": "ok"}), {"room": "ok", "members": ["ok_alice"]},
                 "chat.join after it")
    await a.quiet()
    await chat.close_all()


async def integer_rpc_ids(chat):
    """An integer rpcId comes back as the same integer, of any width."""
    a = await chat.peer("ir_alice")
    for i in (0, 7, -1, -33, 128, 255, 256, 65535, 65536, 2 ** 32, 2 ** 53 + 1, 2 ** 63 - 1, -2 ** 63):
        m = await a.call("chat.rooms", rpc_id=i)
        if m.get("type") != "__rpc_res" or type(m.get("rpcId")) is not int:
            raise Failure(f"rpcId {i}: answered {short(m)}")
    await a.quiet()
    await chat.close_all()


async def missing_type_call(chat):
    a = await chat.peer("mt_carl")
    await a.send({"rpcId": "nt1", "payload": {}})
    m = await a.take(lambda m: True, "an answer to a call without a type")
    expect_error(m, "__rpc_err", "BAD_REQUEST", rpc_id="nt1")
    await a.quiet()
    await chat.close_all()


async def unknown_type(chat):
    a = await chat.peer("ut_alice")
    r = await a.call("chat.nope", {"room": "x"}, rpc_id="ut1")
    expect_error(r, "__rpc_err", "NOT_FOUND", rpc_id="ut1")
    await a.send({"type": "chat.nope", "payload": {}})
    expect_error(await a.take(lambda m: True, "an answer to the event"), "__error", "NOT_FOUND",
                 ref="chat.nope")
    await a.quiet()
    await chat.close_all()


async def many_clients(chat, n=5, per_client=10):
    peers = [await chat.peer(f"mc_{i}") for i in range(n)]
    names = [p.name for p in peers]
    for i, p in enumerate(peers):
        expect_equal(members_of(await p.ok("chat.join", {"room": "mc"})),
                     {"room": "mc", "members": sorted(names[:i + 1])}, f"{p.name}'s join answer")
    for i, p in enumerate(peers):
        got = [e.get("name") for e in await p.events("chat.joined", n - 1 - i)]
        expect_equal(got, names[i + 1:], f"{p.name}'s chat.joined names, in order")
        await p.quiet()

    async def burst(p):  # events, sent back to back
        for k in range(per_client):
            await p.send({"type": "chat.send", "payload": {"room": "mc", "text": f"{p.name} #{k}"}})

    await asyncio.gather(*(burst(p) for p in peers))
    seen = []
    for p in peers:
        msgs = await p.events("chat.message", n * per_client)
        for m in msgs:
            if set(m) != {"room", "from", "text"} or m["room"] != "mc" or \
                    not m["text"].startswith(m["from"] + " #"):
                raise Failure(f"{p.name}: a bad chat.message {short(m)}")
        texts = [m["text"] for m in msgs]
        if len(set(texts)) != len(texts):
            raise Failure(f"{p.name}: a message delivered twice")
        for q in names:
            expect_equal([t for t in texts if t.startswith(q + " #")],
                         [f"{q} #{k}" for k in range(per_client)],
                         f"{p.name}: the messages from {q}, in order")
        seen.append(texts)
        await p.quiet()  # nothing more: each message exactly once
    for p, texts in zip(peers[1:], seen[1:]):
        if texts != seen[0]:
            raise Failure(f"{p.name} saw the messages in another order than {peers[0].name}")
    await chat.close_all()


# ---- MessagePack only ------------------------------------------------------

# A payload with each MessagePack type and the forms of each: fixint, every
# integer width either side of its limits, float64, str (fix, 8, 16), bin
# (8, 16), array and map (fix, 16), nested, empty. python3-msgpack packs
# each in its smallest form; the whole envelope stays under the 64 KiB that
# build/chat reads.
EVERY_TYPE = {
    "nil": None, "true": True, "false": False,
    "pos": [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1],
    "neg": [-1, -32, -33, -128, -129, -32768, -32769, -2 ** 31, -2 ** 31 - 1, -2 ** 63],
    "float": [1.5, -0.0, 1e300, -2.5e-300, 0.1],
    "str": ["", "a", "x" * 31, "y" * 32, "z" * 255, "w" * 256, "\u00e9\u20ac\U0001F600" * 3000],
    "bin": [b"", b"\x00\x01\xff", b"\x02" * 255, b"\x03" * 256, bytes(range(256)) * 20],
    "array": [[], list(range(15)), list(range(16)), [[[[]]]]],
    "map": [{}, {f"k{i}": i for i in range(15)}, {f"k{i}": i for i in range(16)},
            {"deep": {"deeper": [{"x": None}]}}],
}


async def every_type(chat):
    """__ping echoes its payload as __pong: every MessagePack type and form
    comes back as the same value, and the frame is byte for byte what
    python3-msgpack packs for it (each value in its smallest form, the same
    type: 1 is not 1.0, -0.0 keeps its sign); a uint64 above INT64_MAX comes
    back as a float64, as documented (zk_msgpack_parse: as JSON does with an
    integer that large), and a float32 as a float64 of the same value."""
    a = await chat.peer("et_alice")
    await a.send({"type": "__ping", "payload": EVERY_TYPE})
    want = {"type": "__pong", "payload": EVERY_TYPE}
    m = await a.take(lambda m: True, "the __pong")
    expect_equal(m, want, "the __pong")
    frame, packed = m.frame, MsgPack.encode(want)
    if frame != packed:
        at = next((i for i, (x, y) in enumerate(zip(frame, packed)) if x != y), min(len(frame), len(packed)))
        raise Failure(f"the __pong frame ({len(frame)} bytes) differs from python3-msgpack's"
                      f" ({len(packed)} bytes) at byte {at}: {frame[at:at + 16].hex()}"
                      f" vs {packed[at:at + 16].hex()}")
    await a.send({"type": "__ping", "payload": 2 ** 64 - 1})
    m = await a.take(lambda m: True, "the __pong")
    if type(m.get("payload")) is not float or m["payload"] != float(2 ** 64 - 1):
        raise Failure(f"uint64 2**64-1 came back as {short(m)}, want the float {float(2 ** 64 - 1)}")
    await a.send(b"\x82\xa4type\xa6__ping\xa7payload\xca\x3f\xc0\x00\x00")  # float32 1.5
    m = await a.take(lambda m: True, "the __pong")
    if type(m.get("payload")) is not float or m["payload"] != 1.5:
        raise Failure(f"float32 1.5 came back as {short(m)}")
    await a.quiet()
    await chat.close_all()


async def bin_is_not_str(chat):
    """bin is bytes, not text: where the chat wants a string, bin is
    INVALID_INPUT at that path, however valid its bytes as UTF-8."""
    a = await chat.peer("bs_alice")
    r = await a.call("chat.join", {"room": b"bs"}, rpc_id="bs1")
    issues = (expect_error(r, "__rpc_err", "INVALID_INPUT", rpc_id="bs1").get("data") or {}).get("issues")
    if not isinstance(issues, list) or [i.get("path") for i in issues] != ["room"]:
        raise Failure(f"want one issue at path 'room': {short(r)}")
    await a.ok("chat.join", {"room": "bs"})
    r = await a.call("chat.send", {"room": "bs", "text": b"hi"}, rpc_id="bs2")
    expect_text_issue(expect_error(r, "__rpc_err", "INVALID_INPUT", rpc_id="bs2"))
    await a.quiet()
    await chat.close_all()


async def mixed_room(chat):
    """A JSON client (no subprotocol), another offering zocket.json and a
    MessagePack client in one room: each gets the others' chat.joined,
    chat.message and chat.left in its own codec, and the decoded payloads
    are identical; chat.rooms answers them identically too."""
    j = await chat.peer("mx_json", Json())
    k = await chat.peer("mx_json2", Json("zocket.json"))
    m = await chat.peer("mx_mp", MsgPack())
    peers = (j, k, m)
    for i, p in enumerate(peers):
        expect_equal(members_of(await p.ok("chat.join", {"room": "mx"})),
                     {"room": "mx", "members": sorted(q.name for q in peers[:i + 1])},
                     f"{p.name}'s join answer")
    for i, p in enumerate(peers):
        expect_equal([e.get("name") for e in await p.events("chat.joined", len(peers) - 1 - i)],
                     [q.name for q in peers[i + 1:]], f"{p.name}'s chat.joined names")
    texts = ["plain", 'quote " backslash \\ newline \n <b>&amp;</b> \u00e9\u20ac\U0001F600 \u2028',
             "\u00e9" * (MAX_TEXT // 2), "y" * MAX_TEXT, "\x00\x01\x1f nul and controls"]
    for sender in peers:
        for text in texts:
            await sender.ok("chat.send", {"room": "mx", "text": text})
            want = {"room": "mx", "from": sender.name, "text": text}
            for p in peers:
                expect_equal(await p.event("chat.message"), want,
                             f"{p.name}'s chat.message from {sender.name} ({len(text)} characters)")
    rooms = [room_entry(await p.ok("chat.rooms"), "mx") for p in peers]
    for p, r in zip(peers, rooms):
        expect_equal(r, [{"room": "mx", "members": 3}], f"{p.name}'s chat.rooms entry")
    for leaver in (m, j):  # the MessagePack client leaves, then a JSON one
        await leaver.ok("chat.leave", {"room": "mx"})
        for p in peers:
            if p is not leaver and (leaver is m or p is not m):
                expect_equal(await p.event("chat.left"), {"room": "mx", "name": leaver.name},
                             f"{p.name}'s chat.left for {leaver.name}")
    for p in peers:
        await p.quiet()
    await chat.close_all()


async def sigterm(chat, pid):
    a = await chat.peer("st_alice")
    b = await chat.peer("st_bob")
    await a.ok("chat.join", {"room": "st"})
    await b.ok("chat.join", {"room": "st"})
    os.kill(pid, signal.SIGTERM)
    for p in (a, b):
        try:  # whatever is still on its way (chat.joined, chat.left), then the close
            while True:
                await asyncio.wait_for(p.ws.recv(), WAIT)
        except websockets.ConnectionClosed:
            pass
        except asyncio.TimeoutError:
            raise Failure(f"{p.name}: still open {WAIT} s after the SIGTERM")
        if p.ws.close_code != 1001:
            raise Failure(f"{p.name}: closed with {p.ws.close_code} ({p.ws.close_reason!r}),"
                          " want 1001")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--codec", choices=sorted(CODECS), default="json")
    parser.add_argument("--sigterm-url")
    parser.add_argument("--sigterm-pid", type=int)
    args = parser.parse_args()
    if args.codec == "msgpack" and msgpack is None:
        print("chat_test.py: --codec msgpack needs python3-msgpack (tools/deps.sh msgpack)",
              file=sys.stderr)
        return 2
    codec = CODECS[args.codec]
    chat = Chat(args.url, codec)

    async def run(name, fn):
        async def go():
            try:
                await fn(chat)
            finally:
                await chat.close_all()
        await check(name, go)

    await run("upgrade without name refused with HTTP 401", lambda c: refused(c, ""))
    await run("upgrade with an empty name refused with HTTP 401", lambda c: refused(c, "?name="))
    await run("name over 32 bytes, not UTF-8 or with control characters: HTTP 400", bad_names)
    await run("a 32-byte name, a percent-encoded UTF-8 name, two connections with one name",
              name_decoded)
    await run("GET / is text/html; its scripts and their imports are JavaScript", page_and_script)
    await run("GET /?name=alice is the page", page_with_query)
    await run("no path traversal out of the assets", no_traversal)
    await run("chat.join answers {room, members} including the caller", join_members)
    await run("chat.joined goes to the other members only, once", joined_event)
    await run("chat.send reaches every member, the sender too, and no one else", send_to_members)
    await run("text with quotes, escapes, HTML and non-ASCII comes back exactly", text_round_trip)
    await run("chat.send by a non-member: FORBIDDEN, nothing delivered", forbidden)
    await run("chat.send with text missing, not a string, over 2000 bytes: INVALID_INPUT with issues",
              invalid_input)
    await run("chat.send with text of exactly 2000 bytes (ASCII, two-byte) delivered", max_text)
    await run("room missing, empty, over 64 bytes, not a string: INVALID_INPUT", room_names)
    await run("16 rooms per connection, the 17th FORBIDDEN", max_rooms)
    await run("chat.rooms lists each room once, by name, with its member count", rooms_counts)
    await run("chat.leave answers {room}; chat.left to the others; FORBIDDEN when not in it;"
              " the room is gone when empty",
              leave)
    await run("close: chat.left in each of the rooms to the others", disconnect)
    await run("TCP reset without a close frame: chat.left to the others", abrupt_disconnect)
    await run("failed chat.send events answer __error with ref chat.send; success is silent",
              event_errors)
    await run("malformed messages answer BAD_REQUEST; the connection keeps working", malformed)
    await run(f"a {'text' if codec.binary else 'binary'} frame in a {codec.name} session:"
              " BAD_REQUEST; the connection keeps working", other_kind)
    await run("integer rpcIds of every width come back as the same integers", integer_rpc_ids)
    await run("a call without a type answers __rpc_err BAD_REQUEST with its rpcId",
              missing_type_call)
    await run("unknown type: NOT_FOUND as a call and as an event", unknown_type)
    await run("5 clients x 10 messages: everyone gets each once, in one order", many_clients)
    if args.codec == "msgpack":
        await run("__ping echoes every MessagePack type and form (uint64 over INT64_MAX and"
                  " float32 as float64)", every_type)
        await run("bin where a string is wanted (room, text): INVALID_INPUT", bin_is_not_str)
        await run("JSON (none, zocket.json) and MessagePack clients in one room: the same"
                  " events and messages, decoded identically", mixed_room)
    if args.sigterm_url:
        chat = Chat(args.sigterm_url, codec)
        await run("SIGTERM closes the connected clients with 1001",
                  lambda c: sigterm(c, args.sigterm_pid))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
