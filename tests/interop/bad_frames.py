#!/usr/bin/python3
"""Sends deliberately broken frames to build/echo with Autobahn|Python's
low-level API (Debian python3-autobahn on Twisted) and checks the close code
echo answers with, and that echo then closes the TCP connection itself.

    /usr/bin/python3 tests/interop/bad_frames.py ws://127.0.0.1:P

One connection per case. Autobahn does the opening handshake and the
masking; WebSocketClientProtocol.sendFrame(opcode, payload, fin, rsv, ...)
puts any frame on the wire, valid or not, without changing Autobahn's own
state. Prints one "ok NAME" or "FAIL NAME: why" line per case and exits
non-zero if any failed.
"""
import struct
import sys

import txaio

txaio.use_twisted()

from autobahn.twisted.websocket import (WebSocketClientFactory,  # noqa: E402
                                        WebSocketClientProtocol, connectWS)
from twisted.internet import defer, reactor  # noqa: E402

CASE_TIMEOUT = 10  # seconds: no answer by then fails the case

PROTOCOL_ERROR, INVALID_DATA, TOO_BIG = 1002, 1007, 1009
TEXT, BINARY, CONT, CLOSE, PING = 0x1, 0x2, 0x0, 0x8, 0x9


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def huge_frame_header(p):
    """A masked binary frame header announcing 16 MiB + 1 bytes (echo's
    limit is 16 MiB), then only a little of the payload: echo must refuse
    it from the header alone."""
    p.transport.write(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", (16 << 20) + 1)
                      + b"\x01\x02\x03\x04" + b"\x00" * 1000)


def high_bit_length(p):
    """A 64-bit payload length with the most significant bit set."""
    p.transport.write(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + b"\x01\x02\x03\x04")


# name, the close code echo must answer with, what to send (None: expect an
# echo, then close 1000 - the sender's sanity check), unmasked frames
CASES = [
    ("valid text echoed, then close 1000 answered (the sender works)", 1000, None, False),
    ("RSV1 set on a text frame", PROTOCOL_ERROR, lambda p: p.sendFrame(TEXT, b"hi", rsv=4), False),
    ("RSV2 set on a text frame", PROTOCOL_ERROR, lambda p: p.sendFrame(TEXT, b"hi", rsv=2), False),
    ("RSV3 set on a text frame", PROTOCOL_ERROR, lambda p: p.sendFrame(TEXT, b"hi", rsv=1), False),
    ("RSV bits set on a ping", PROTOCOL_ERROR, lambda p: p.sendFrame(PING, b"hi", rsv=7), False),
    ("reserved data opcode 3", PROTOCOL_ERROR, lambda p: p.sendFrame(3, b"hi"), False),
    ("reserved control opcode 0xB", PROTOCOL_ERROR, lambda p: p.sendFrame(0xB, b"hi"), False),
    ("ping with a 126-byte payload (control frame over 125)", PROTOCOL_ERROR,
     lambda p: p.sendFrame(PING, b"x" * 126), False),
    ("close with a 126-byte payload (control frame over 125)", PROTOCOL_ERROR,
     lambda p: p.sendFrame(CLOSE, close_payload(1000, b"r" * 124)), False),
    ("fragmented ping (FIN clear)", PROTOCOL_ERROR,
     lambda p: (p.sendFrame(PING, b"a", fin=False), p.sendFrame(CONT, b"b")), False),
    ("continuation frame with no message started", PROTOCOL_ERROR,
     lambda p: p.sendFrame(CONT, b"orphan"), False),
    ("new text frame inside a fragmented message", PROTOCOL_ERROR,
     lambda p: (p.sendFrame(TEXT, b"first", fin=False), p.sendFrame(TEXT, b"second")), False),
    ("unmasked frame from the client", PROTOCOL_ERROR,
     lambda p: p.sendFrame(TEXT, b"not masked"), True),
    ("64-bit payload length with the high bit set", PROTOCOL_ERROR, high_bit_length, False),
    ("frame announcing 16 MiB + 1 bytes (over echo's limit)", TOO_BIG, huge_frame_header, False),
    ("bad UTF-8 in a text message (0xFF)", INVALID_DATA,
     lambda p: p.sendFrame(TEXT, b"ok so far \xff"), False),
    ("UTF-16 surrogate in a text message (ED A0 80)", INVALID_DATA,
     lambda p: p.sendFrame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"), False),
    ("overlong encoding in a text message (C0 AF)", INVALID_DATA,
     lambda p: p.sendFrame(TEXT, b"\xc0\xaf"), False),
    ("bad UTF-8 in the second fragment of a text message", INVALID_DATA,
     lambda p: (p.sendFrame(TEXT, b"valid start ", fin=False), p.sendFrame(CONT, b"\xf8\x88\x80\x80\x80")),
     False),
    ("text message ending inside a character", INVALID_DATA,
     lambda p: (p.sendFrame(TEXT, b"euro \xe2\x82", fin=False), p.sendFrame(CONT, b"")), False),
    ("close with code 1005", PROTOCOL_ERROR, lambda p: p.sendFrame(CLOSE, close_payload(1005)), False),
    ("close with code 1006", PROTOCOL_ERROR, lambda p: p.sendFrame(CLOSE, close_payload(1006)), False),
    ("close with code 999", PROTOCOL_ERROR, lambda p: p.sendFrame(CLOSE, close_payload(999)), False),
    ("close with code 5000", PROTOCOL_ERROR, lambda p: p.sendFrame(CLOSE, close_payload(5000)), False),
    ("close with a 1-byte payload", PROTOCOL_ERROR, lambda p: p.sendFrame(CLOSE, b"\x03"), False),
    ("close reason that is not UTF-8", INVALID_DATA,
     lambda p: p.sendFrame(CLOSE, close_payload(1000, b"bye \xff\xfe")), False),
]


class CaseProtocol(WebSocketClientProtocol):
    """Sends one case's frames once open, and records what came back."""

    def onOpen(self):
        f = self.factory
        f.opened = True
        if f.send is None:
            self.sendMessage("sanity \u20ac".encode(), isBinary=False)
        else:
            f.send(self)

    def onMessage(self, payload, isBinary):
        f = self.factory
        if f.send is None and payload == "sanity \u20ac".encode() and not isBinary:
            f.echoed = True
            self.sendClose(1000)

    def onCloseFrame(self, code, reasonRaw):
        # the raw code, before Autobahn's own validation of it
        if self.factory.close_frame is None:
            self.factory.close_frame = (code, reasonRaw)
        return super().onCloseFrame(code, reasonRaw)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        f = self.factory
        f.dropped_by_us = self.droppedByMe
        f.why = self.wasNotCleanReason
        if not f.done.called:
            f.done.callback(None)


class CaseFactory(WebSocketClientFactory):
    protocol = CaseProtocol

    def clientConnectionFailed(self, connector, reason):
        self.why = f"cannot connect: {reason.getErrorMessage()}"
        if not self.done.called:
            self.done.callback(None)


def run_case(url, name, want, send, unmasked):
    f = CaseFactory(url)
    f.setProtocolOptions(maskClientFrames=not unmasked, openHandshakeTimeout=5,
                         closeHandshakeTimeout=5, serverConnectionDropTimeout=5,
                         autoPingInterval=0)
    f.send, f.opened, f.echoed, f.close_frame = send, False, False, None
    f.dropped_by_us, f.why, f.done = None, None, defer.Deferred()
    connector = connectWS(f, timeout=5)

    def give_up():
        if not f.done.called:
            f.why = f"no end of the connection within {CASE_TIMEOUT} s"
            f.dropped_by_us = True
            connector.disconnect()
            f.done.callback(None)

    timer = reactor.callLater(CASE_TIMEOUT, give_up)

    def judge(_):
        if timer.active():
            timer.cancel()
        if not f.opened:
            return f"the opening handshake failed ({f.why})"
        if send is None and not f.echoed:
            return "the sanity message was not echoed"
        if f.close_frame is None:
            return f"echo sent no close frame ({f.why})"
        code = f.close_frame[0]
        if code != want:
            return f"echo closed with {code} ({f.close_frame[1]!r}), want {want}"
        if f.dropped_by_us:
            return f"echo did not close the TCP connection ({f.why})"
        return None

    return f.done.addCallback(judge)


@defer.inlineCallbacks
def run_all(url, result):
    for name, want, send, unmasked in CASES:
        try:
            error = yield run_case(url, name, want, send, unmasked)
        except Exception as e:  # report and go on with the next case
            error = f"{type(e).__name__}: {e}"
        if error is None:
            print(f"ok {name}: {want}", flush=True)
        else:
            result["failed"] += 1
            print(f"FAIL {name}: {error}", flush=True)
    reactor.stop()


def main():
    if len(sys.argv) != 2:
        print("usage: bad_frames.py ws://HOST:PORT", file=sys.stderr)
        return 2
    result = {"failed": 0}
    reactor.callWhenRunning(run_all, sys.argv[1], result)
    reactor.run()
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
