#!/usr/bin/python3
"""Checks that two build/chat servers sharing one broker (--redis or --nats)
behave as one chat, with Python websockets 10.4 as the client.

    /usr/bin/python3 tests/interop/chat_nodes_test.py http://127.0.0.1:P/ \
        http://127.0.0.1:Q/ [--outage] [--sigterm-pid2 PID]
    /usr/bin/python3 tests/interop/chat_nodes_test.py --local-only http://127.0.0.1:P/

The arguments are the URLs the two nodes print ("chat: open http://H:P/").
With --local-only there is one, node 1's, whose broker is unreachable (not
started yet), and the one check is that it still serves its own rooms: two
members of one room on it each get the other's chat.message once, and their
own once, as on a node without a broker.
Prints one "ok NAME" or "FAIL NAME: why" line per check, "# ..." lines with
measurements, and exits non-zero if any failed. With --outage it also asks
whoever runs it, on its stdout, for the broker to be killed ("do
kill-broker": SIGKILL, and wait for it to be gone) and started again on the
same port ("do start-broker": wait until it is ready), and waits for the
answer on its stdin ("done kill-broker", "done start-broker"; "fail ...:
why" fails the check). tests/interop/run.sh does that. With --sigterm-pid2
it ends by stopping node 2 (that pid) with SIGTERM.

"Exactly once" across nodes cannot use chat_test.py's chat.rooms barrier:
that answer comes from the client's own node, while remote messages come
through the broker at their own pace. The barrier here is a marker message
sent last by a member of each node: a node's messages reach another node in
the order they were sent, so once a client has the markers of both nodes,
everything sent before them has arrived, and a client must then have got
exactly the messages expected, in the order each sender sent them, and no
others (a final chat.rooms call catches what its own node sent late).
Every check uses names and rooms of its own and every wait is bounded.
"""
import argparse
import asyncio
import json
import os
import signal
import sys
import time
import urllib.parse

import websockets

WAIT = 5              # seconds for any one message within a node or across a live broker
OUTAGE_WAIT = 15      # seconds for what was sent during the outage, once the broker is back
CHECK_TIMEOUT = 40    # seconds for any one check
failures = 0


class Failure(Exception):
    pass


def report(name, error):
    global failures
    if error is None:
        print(f"ok {name}", flush=True)
    else:
        failures += 1
        print(f"FAIL {name}: {error}", flush=True)


def short(v, limit=400):
    s = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else repr(v)
    return s if len(s) <= limit else s[:limit] + f"... ({len(s)} chars)"


def expect_equal(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {short(got)}, want {short(want)}")


class Peer:
    """One chat connection; messages that arrive while waiting for another
    are kept, in order, in self.pending."""

    def __init__(self, ws, name, node):
        self.ws, self.name, self.node = ws, name, node
        self.pending = []
        self.seq = 0

    async def send(self, msg):
        await self.ws.send(json.dumps(msg))

    async def take(self, pred, what, timeout=WAIT):
        for i, m in enumerate(self.pending):
            if pred(m):
                return self.pending.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise Failure(f"{self.name} (node {self.node}): no {what} within {timeout} s"
                              f" (unconsumed: {short(self.pending)})")
            try:
                raw = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                continue
            except websockets.ConnectionClosed as e:
                raise Failure(f"{self.name}: connection closed ({e}) while waiting for {what}")
            if not isinstance(raw, str):
                raise Failure(f"{self.name}: a binary frame in a JSON session")
            m = json.loads(raw)
            if pred(m):
                return m
            self.pending.append(m)

    async def call(self, type_, payload=None):
        self.seq += 1
        rpc_id = f"{self.name}-{self.seq}"
        msg = {"type": type_, "rpcId": rpc_id}
        if payload is not None:
            msg["payload"] = payload
        await self.send(msg)
        return await self.take(
            lambda m: m.get("rpcId") == rpc_id and m.get("type") in ("__rpc_res", "__rpc_err"),
            f"answer to {type_} ({rpc_id})")

    async def ok(self, type_, payload=None):
        m = await self.call(type_, payload)
        if m.get("type") != "__rpc_res":
            raise Failure(f"{self.name}: {type_} {short(payload)} failed: {short(m)}")
        return m["payload"]

    async def say(self, room, text):
        expect_equal(await self.ok("chat.send", {"room": room, "text": text}), {"ok": True},
                     f"{self.name}'s chat.send answer")

    async def event(self, type_, timeout=WAIT):
        m = await self.take(lambda m: m.get("type") == type_, type_, timeout)
        return m["payload"]

    async def until_markers(self, markers, timeout=WAIT):
        """Every event up to the last of the chat.message texts in markers
        (each must come once), in order of arrival, markers included."""
        got, want = [], set(markers)
        while want:
            m = await self.take(lambda m: m.get("type", "").startswith("chat."),
                                f"the markers {sorted(want)}", timeout)
            p = m.get("payload")
            got.append((m["type"], p))
            if m["type"] == "chat.message" and isinstance(p, dict) and p.get("text") in want:
                want.discard(p["text"])
        return got

    async def quiet(self):
        """Nothing unconsumed, and nothing more from its own node before the
        answer to a chat.rooms call made now."""
        await self.ok("chat.rooms")
        stray, self.pending = self.pending, []
        if stray:
            raise Failure(f"{self.name} (node {self.node}): unexpected messages: {short(stray)}")

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), WAIT)
        except Exception:
            pass


class Cluster:
    def __init__(self, urls):
        self.ws_urls = []
        for url in urls:
            u = urllib.parse.urlsplit(url)
            if u.scheme != "http" or not u.hostname or not u.port:
                raise SystemExit(f"usage: chat_nodes_test.py http://HOST:PORT/ http://HOST:PORT/"
                                 f" | --local-only http://HOST:PORT/ (got {url!r})")
            self.ws_urls.append(f"ws://{u.hostname}:{u.port}/ws")
        self.peers = []

    async def peer(self, name, node):
        ws = await websockets.connect(
            self.ws_urls[node - 1] + "?name=" + urllib.parse.quote(name), open_timeout=WAIT,
            close_timeout=WAIT, ping_interval=None, compression=None, max_size=1 << 20)
        p = Peer(ws, name, node)
        self.peers.append(p)
        return p

    async def close_all(self):
        peers, self.peers = self.peers, []
        await asyncio.gather(*(p.close() for p in peers))


def msg(room, sender, text):
    return ("chat.message", {"room": room, "from": sender.name, "text": text})


def joined(room, who):
    return ("chat.joined", {"room": room, "name": who.name})


def left(room, who):
    return ("chat.left", {"room": room, "name": who.name})


async def join_all(room, peers):
    """Joins peers to room one after the other; each member already in it
    must get one chat.joined per later joiner, in order, wherever it is.
    After each join a chat.rooms call on the same connection: its answer
    comes once the node has handed what the join sent to the broker (the
    adapter writes it in the loop pass after the join's answer), so the
    next joiner, whose node may only now subscribe the room, cannot get an
    earlier joiner's chat.joined as the broker's copy arrives late."""
    for i, p in enumerate(peers):
        await p.ok("chat.join", {"room": room})
        await p.ok("chat.rooms")
        for q in peers[:i]:
            expect_equal(await q.event("chat.joined"), {"room": room, "name": p.name},
                         f"{q.name} (node {q.node})'s chat.joined for {p.name} (node {p.node})")


async def settle(room, peers, mark1, mark2, expected):
    """mark1 (node 1) and mark2 (node 2, or node 1 when it is alone) each
    send a marker; every peer must then have got exactly expected[peer]
    before and between the markers (markers left out), each sender's
    messages in the order sent."""
    t1, t2 = f"end {mark1.name}", f"end {mark2.name}"
    await mark1.say(room, t1)
    await mark2.say(room, t2)
    for p in peers:
        got = [e for e in await p.until_markers([t1, t2])
               if not (e[0] == "chat.message" and e[1].get("text") in (t1, t2))]
        want = expected.get(p, [])
        if sorted(map(json.dumps, got)) != sorted(map(json.dumps, want)):
            missing, extra = list(want), []
            for e in got:
                if e in missing:
                    missing.remove(e)
                else:
                    extra.append(e)
            raise Failure(f"{p.name} (node {p.node}) got {len(got)} events, want {len(want)}:"
                          f" missing {short(missing)}, unexpected {short(extra)}")
        for sender in {e[1].get("from") for e in want if e[0] == "chat.message"}:
            expect_equal([e for e in got if e[0] == "chat.message" and e[1].get("from") == sender],
                         [e for e in want if e[0] == "chat.message" and e[1].get("from") == sender],
                         f"{p.name}: the messages from {sender}, in order")
        await p.quiet()


# ---- the checks ------------------------------------------------------------

async def local_room(c):
    """Node 1 alone, its broker unreachable: a room on it works as on one
    node (the barrier is the same, both markers sent on node 1)."""
    a, b = await c.peer("lo_a", 1), await c.peer("lo_b", 1)
    await join_all("lo", [a, b])
    await a.say("lo", "from lo_a")
    await b.say("lo", "from lo_b")
    both = [msg("lo", a, "from lo_a"), msg("lo", b, "from lo_b")]
    await settle("lo", [a, b], a, b, {a: both, b: both})


async def messages_cross(c):
    a1, a2 = await c.peer("mx_a1", 1), await c.peer("mx_a2", 1)
    b1, b2 = await c.peer("mx_b1", 2), await c.peer("mx_b2", 2)
    outsider = await c.peer("mx_out", 2)      # on node 2, in another room
    await outsider.ok("chat.join", {"room": "mx_other"})
    await join_all("mx", [a1, b1, a2, b2])
    await a1.say("mx", "from node 1")
    await b1.say("mx", "from node 2")
    everyone = [msg("mx", a1, "from node 1"), msg("mx", b1, "from node 2")]
    await settle("mx", [a1, a2, b1, b2], a2, b2, {p: everyone for p in (a1, a2, b1, b2)})
    await outsider.quiet()


async def joined_left_cross(c):
    a, b, a2 = await c.peer("jl_a", 1), await c.peer("jl_b", 2), await c.peer("jl_a2", 1)
    e = await c.peer("jl_e", 2)
    await join_all("jl", [a, b, a2, e])          # chat.joined both ways, checked there
    await b.ok("chat.leave", {"room": "jl"})
    for p in (a, a2, e):
        expect_equal(await p.event("chat.left"), {"room": "jl", "name": "jl_b"},
                     f"{p.name} (node {p.node})'s chat.left for jl_b (node 2, chat.leave)")
    await a2.ok("chat.leave", {"room": "jl"})
    for p in (a, e):
        expect_equal(await p.event("chat.left"), {"room": "jl", "name": "jl_a2"},
                     f"{p.name} (node {p.node})'s chat.left for jl_a2 (node 1, chat.leave)")
    d = await c.peer("jl_d", 2)
    await join_all("jl", [d])
    for p in (a, e):
        expect_equal(await p.event("chat.joined"), {"room": "jl", "name": "jl_d"},
                     f"{p.name}'s chat.joined for jl_d")
    await d.ws.close()                           # a clean close on node 2
    c.peers.remove(d)
    for p in (a, e):
        expect_equal(await p.event("chat.left"), {"room": "jl", "name": "jl_d"},
                     f"{p.name}'s chat.left for jl_d (closed)")
    f = await c.peer("jl_f", 2)
    await join_all("jl", [f])
    for p in (a, e):
        expect_equal(await p.event("chat.joined"), {"room": "jl", "name": "jl_f"},
                     f"{p.name}'s chat.joined for jl_f")
    f.ws.transport.abort()                       # TCP reset, no close frame
    c.peers.remove(f)
    for p in (a, e):
        expect_equal(await p.event("chat.left"), {"room": "jl", "name": "jl_f"},
                     f"{p.name}'s chat.left for jl_f (TCP reset)")
    await settle("jl", [a, e], a, e, {})         # nothing more
    await b.quiet()                              # nothing after it left: from its node,
    await a2.quiet()                             # and (markers passed) from the other


async def two_rooms(c):
    a, b = await c.peer("tr_a", 1), await c.peer("tr_b", 2)
    for room in ("tr_1", "tr_2"):
        await join_all(room, [a, b])
    await b.say("tr_1", "to one room")
    await b.ws.close()
    c.peers.remove(b)
    b2 = await c.peer("tr_b2", 2)                # the node-2 marker
    await b2.ok("chat.join", {"room": "tr_1"})
    await a.event("chat.joined")
    await settle("tr_1", [a], a, b2,
                 {a: [msg("tr_1", b, "to one room"), left("tr_1", b), left("tr_2", b)]})


async def many(c, per_node=4, per_client=10):
    peers = []
    for i in range(per_node):
        peers += [await c.peer(f"mn_{i}a", 1), await c.peer(f"mn_{i}b", 2)]
    await join_all("mn", peers)

    async def burst(p):
        for k in range(per_client):
            await p.send({"type": "chat.send", "payload": {"room": "mn", "text": f"{p.name} #{k}"}})

    await asyncio.gather(*(burst(p) for p in peers))
    # a node takes each connection's messages in order, but not the
    # connections in the order the bursts were written: a call on each
    # answers once its node has sent that sender's burst, before any marker
    await asyncio.gather(*(p.ok("chat.rooms") for p in peers))
    want = [msg("mn", p, f"{p.name} #{k}") for p in peers for k in range(per_client)]
    await settle("mn", peers, peers[0], peers[1], {p: want for p in peers})


async def rooms_per_node(c):
    """The documented limit: chat.join's members and chat.rooms are each
    node's own."""
    a, b = await c.peer("rp_a", 1), await c.peer("rp_b", 2)
    a2 = await c.peer("rp_a2", 1)
    expect_equal(await a.ok("chat.join", {"room": "rp"}), {"room": "rp", "members": ["rp_a"]},
                 "node 1's first join answer")
    await a.ok("chat.rooms")                     # (see join_all)
    expect_equal(await b.ok("chat.join", {"room": "rp"}), {"room": "rp", "members": ["rp_b"]},
                 "node 2's join answer (node 1's member not listed)")
    expect_equal(await a.event("chat.joined"), {"room": "rp", "name": "rp_b"},
                 "rp_a's chat.joined for rp_b")
    got = await a2.ok("chat.join", {"room": "rp"})
    expect_equal(sorted(got["members"]), ["rp_a", "rp_a2"], "node 1's second join answer")
    expect_equal(await b.event("chat.joined"), {"room": "rp", "name": "rp_a2"},
                 "rp_b's chat.joined for rp_a2")
    expect_equal(await a.event("chat.joined"), {"room": "rp", "name": "rp_a2"},
                 "rp_a's chat.joined for rp_a2")
    count = [r for r in await b.ok("chat.rooms") if r.get("room") == "rp"]
    expect_equal(count, [{"room": "rp", "members": 1}], "node 2's chat.rooms entry")
    count = [r for r in await a.ok("chat.rooms") if r.get("room") == "rp"]
    expect_equal(count, [{"room": "rp", "members": 2}], "node 1's chat.rooms entry")
    await settle("rp", [a, a2, b], a, b, {})


async def ask(what):
    """Asks the runner to do something; returns when it says it is done."""
    print(f"do {what}", flush=True)
    line = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
        None, sys.stdin.readline), 30)
    line = line.strip()
    if line != f"done {what}":
        raise Failure(f"asked to {what}, the runner said {line!r}")


async def outage(c):
    """The broker is SIGKILLed while members of both nodes stay in the room,
    and started again on the same port."""
    a1, a2 = await c.peer("ou_a1", 1), await c.peer("ou_a2", 1)
    b1, b2 = await c.peer("ou_b1", 2), await c.peer("ou_b2", 2)
    a3 = await c.peer("ou_a3", 1)                # alone in ou_late until d joins
    await join_all("ou", [a1, b1, a2, b2])
    await a3.ok("chat.join", {"room": "ou_late"})
    await settle("ou", [a1, a2, b1, b2], a1, b1, {})  # the room works both ways

    await ask("kill-broker")
    t0 = time.monotonic()
    n = 5
    for k in range(n):
        await b1.say("ou", f"b1 during {k}")
        await a1.say("ou", f"a1 during {k}")
    for k in range(n):   # members on the sender's node have them at once
        expect_equal(await b2.event("chat.message"), msg("ou", b1, f"b1 during {k}")[1],
                     "ou_b2's chat.message from its own node while the broker is down")
        expect_equal(await a2.event("chat.message"), msg("ou", a1, f"a1 during {k}")[1],
                     "ou_a2's chat.message from its own node while the broker is down")
    await b2.ok("chat.leave", {"room": "ou"})    # its chat.left waits too
    d = await c.peer("ou_d", 2)                  # a room new to node 2, joined while down
    expect_equal(await d.ok("chat.join", {"room": "ou_late"}),
                 {"room": "ou_late", "members": ["ou_d"]}, "ou_d's join answer while down")
    await ask("start-broker")
    t1 = time.monotonic()

    from_b = [msg("ou", b1, f"b1 during {k}") for k in range(n)] + [left("ou", b2)]
    from_a = [msg("ou", a1, f"a1 during {k}") for k in range(n)]
    own_a = from_a
    own_b = [msg("ou", b1, f"b1 during {k}") for k in range(n)] + [left("ou", b2)]

    def from_node2(m):
        return m.get("type") in ("chat.message", "chat.left") and \
            (m.get("payload") or {}).get("from", "ou_b") != "ou_a1"

    seen = []
    for _ in from_b:
        m = await a1.take(from_node2, "node 2's messages sent during the outage", OUTAGE_WAIT)
        seen.append((m["type"], m["payload"]))
    arrived = time.monotonic()
    expect_equal(seen, from_b, "node 2's messages at ou_a1 after the outage, in order")
    print(f"# broker down {1000 * (t1 - t0):.0f} ms; node 2's messages reached node 1"
          f" {1000 * (arrived - t1):.0f} ms after the broker was ready again", flush=True)
    expect_equal(await a3.event("chat.joined", OUTAGE_WAIT), {"room": "ou_late", "name": "ou_d"},
                 "ou_a3's chat.joined for ou_d (joined on node 2 while the broker was down)")
    await a3.say("ou_late", "late room works")
    expect_equal(await d.event("chat.message", OUTAGE_WAIT),
                 msg("ou_late", a3, "late room works")[1],
                 "ou_d's chat.message in the room its node subscribed while the broker was down")
    await a1.say("ou", "a1 after")
    await b1.say("ou", "b1 after")
    after = [msg("ou", a1, "a1 after"), msg("ou", b1, "b1 after")]
    # b1 must get node 1's in order too: settle checks each sender's order
    await settle("ou", [a1, a2, b1], a1, b1, {
        a1: own_a + after,
        a2: from_b + after,
        b1: own_b + from_a + after,
    })
    await settle("ou_late", [a3, d], a3, d, {a3: [msg("ou_late", a3, "late room works")]})
    await b2.quiet()                             # it left: nothing from node 1 reached it


async def graceful_stop(c, pid):
    """Node 2 stopped with SIGTERM: its member is closed with 1001, and the
    chat.left it sends on the way out reaches node 1."""
    try:
        a, b = await c.peer("gs_a", 1), await c.peer("gs_b", 2)
        await join_all("gs", [a, b])
    finally:  # whatever happened, the runner expects node 2 to stop
        os.kill(pid, signal.SIGTERM)
    expect_equal(await a.event("chat.left"), {"room": "gs", "name": "gs_b"},
                 "gs_a's chat.left for gs_b (node 2 stopping)")
    try:
        while True:
            await asyncio.wait_for(b.ws.recv(), WAIT)
    except websockets.ConnectionClosed:
        pass
    except asyncio.TimeoutError:
        raise Failure(f"gs_b: still open {WAIT} s after node 2's SIGTERM")
    expect_equal(b.ws.close_code, 1001, "gs_b's close code")
    await a.quiet()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url1")
    parser.add_argument("url2", nargs="?")
    parser.add_argument("--local-only", action="store_true",
                        help="node 1 only, its broker unreachable: its own rooms work")
    parser.add_argument("--outage", action="store_true")
    parser.add_argument("--sigterm-pid2", type=int, help="node 2's pid: stop it last")
    args = parser.parse_args()
    if args.local_only != (args.url2 is None) or \
            (args.local_only and (args.outage or args.sigterm_pid2)):
        parser.error("give two URLs, or one with --local-only (and neither --outage"
                     " nor --sigterm-pid2)")
    c = Cluster([args.url1] if args.local_only else [args.url1, args.url2])

    async def run(name, fn):
        try:
            await asyncio.wait_for(fn(c), CHECK_TIMEOUT)
            report(name, None)
        except Failure as e:
            report(name, str(e))
        except Exception as e:  # a timeout, a dropped connection: all are failures
            report(name, f"{type(e).__name__}: {e}")
        finally:
            await c.close_all()

    if args.local_only:
        await run("broker unreachable: two members of a room on node 1 each get the other's"
                  " chat.message once, and their own once", local_room)
        return 1 if failures else 0
    await run("chat.message crosses both ways, once to each member, the sender's own once;"
              " a member of another room gets nothing", messages_cross)
    await run("chat.joined and chat.left (leave, close, TCP reset) cross, never to the joiner"
              " or leaver", joined_left_cross)
    await run("a member of two rooms gets a message to one once, and one chat.left per room"
              " when the other node's member closes", two_rooms)
    await run("4+4 clients on two nodes x 10 messages: each once to everyone, each sender's"
              " in order", many)
    await run("chat.join's members and chat.rooms count this node's members only (documented)",
              rooms_per_node)
    if args.outage:
        await run("broker killed and restarted: what each node sent meanwhile arrives at the"
                  " other once, in order; a room joined meanwhile works; the room keeps working",
                  outage)
    if args.sigterm_pid2:
        await run("node 2 stopped with SIGTERM: its member closed with 1001, its chat.left"
                  " reaches node 1", lambda c: graceful_stop(c, args.sigterm_pid2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
