#!/usr/bin/env python3
"""Writes the seed corpora of the fuzzers into tests/fuzz/corpus/.

    python3 tools/gen_corpus.py

request/   upgrade requests (valid and refused), plain GETs, malformed heads
response/  101 answers (right and wrong), refusals, malformed status lines
frames/    one configuration byte (see tests/fuzz/fuzz_frames.c) and a frame
           stream: masked client frames for a server, unmasked ones for a
           client, covering text, binary, fragments, control frames, 16- and
           64-bit lengths, bad UTF-8, reserved bits and other violations
json/      one limits byte (see tests/fuzz/fuzz_json.c), a JSON text and,
           after a 0xFF, writer commands: documents of every type and
           nesting, numbers at the edges, escapes and surrogates, malformed
           texts, texts over small limits
msgpack/   one limits byte (see tests/fuzz/fuzz_msgpack.c), a MessagePack value
           and, after C1 C1, writer commands: every format family at its
           edges (fixint to 64-bit ints, float32 and float64, str, bin,
           array and map in each length form, lengths that are not the
           smallest), nesting to the depth limit and one past it, values over
           small limits, refusals (0xC1, ext and fixext, NaN and infinities,
           keys that are not strings, str that is not UTF-8, truncated values,
           data after the value, lengths and counts of up to 4 GiB past the
           end), and writer commands crossing the header sizes
app/       one message (see tests/fuzz/fuzz_app.c), used whole as a Zocket
           envelope and split at its first space as "type payload" for the
           caller: calls and events to each route of the harness, schema
           passes and failures, middleware refusals, kept requests answered
           ok, with an error or after the timeout (the last byte), malformed
           envelopes, bad rpcIds, invalid UTF-8, deep nesting
resp/      what a Redis server sends (see tests/fuzz/fuzz_resp.c), read as a
           stream of RESP2 replies: every type, nil bulk and array, binary
           bulks, nested arrays, pub/sub replies back to back, integers at
           the edges, limits (items, depth, line length) and malformed replies
nats/      what a NATS server sends (see tests/fuzz/fuzz_nats.c), read as a
           stream of operations: INFO, MSG with and without a reply subject,
           payloads holding CR LF, PING/PONG/+OK/-ERR in any case, HMSG,
           oversized lines and malformed sizes
broker/    what other nodes publish (see tests/fuzz/fuzz_broker.c): records
           of messages to rooms, to everyone, to ids, with an except id,
           duplicates and replays, hellos and "replayed" markers, holds,
           clock steps and this node's own publishes, and malformed headers
server/    two configuration bytes (see tests/fuzz/fuzz_server.c) and what a
           peer sends a zk_app server: an upgrade offering zocket.json,
           zocket.msgpack, both or none, then masked frames carrying Zocket
           envelopes (calls to each route, events, __ping, __auth, kept
           requests answered or timed out, rooms), fragmented messages,
           pings, closes, and refused upgrades, plain and malformed
           requests, frames that break the protocol, messages over the
           limits, and the deadlines (handshake, idle, auth, close, a slow
           message, a peer that does not read)

Deterministic: the same files, byte for byte, on every run. It only writes
files; it does not delete any.
"""
import json
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fuzz", "corpus")

KEY = "dGhlIHNhbXBsZSBub25jZQ=="        # RFC 6455 1.3 sample nonce
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="     # and its Sec-WebSocket-Accept


def head(first, headers, tail=b""):
    lines = [first] + ["%s: %s" % h for h in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + tail


def upgrade_headers(**over):
    h = [("Host", "server.example.com"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
         ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13")]
    out = []
    for name, value in h:
        key = name.lower().replace("-", "_")
        if key in over:
            if over[key] is not None:
                out.append((name, over[key]))
        else:
            out.append((name, value))
    return out


REQUESTS = {
    "rfc6455": head("GET /chat HTTP/1.1", [
        ("Host", "server.example.com"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY), ("Origin", "http://example.com"),
        ("Sec-WebSocket-Protocol", "chat, superchat"), ("Sec-WebSocket-Version", "13")]),
    "subprotocols": head("GET /chat HTTP/1.1", upgrade_headers() + [
        ("Sec-WebSocket-Protocol", "v2.bookings , SuperChat"), ("Sec-WebSocket-Protocol", "chat")]),
    "query": head("GET /chat?room=1&token=a%20b+c&a HTTP/1.1", upgrade_headers()),
    "absolute_form": head("GET ws://server.example.com:8080/chat?x=%41 HTTP/1.1", upgrade_headers()),
    "browser": head("GET /socket HTTP/1.1", [
        ("Host", "127.0.0.1:9001"), ("Connection", "keep-alive, Upgrade"), ("Pragma", "no-cache"),
        ("Cache-Control", "no-cache"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0"),
        ("Upgrade", "websocket"), ("Origin", "null"), ("Sec-WebSocket-Version", "13"),
        ("Accept-Encoding", "gzip, deflate, br"), ("Accept-Language", "en-US,en;q=0.9"),
        ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw=="),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]),
    "lowercase": head("GET / HTTP/1.1", [
        ("host", "a"), ("upgrade", "WebSocket"), ("connection", "upgrade"),
        ("sec-websocket-key", KEY), ("sec-websocket-version", "13"), ("x-empty", "")]),
    "plain_get": head("GET /index.html HTTP/1.1", [("Host", "a"), ("Accept", "*/*")]),
    "plain_http10": head("GET / HTTP/1.0", []),
    "with_body": head("POST /form HTTP/1.1", [("Host", "a"), ("Content-Length", "5")], b"hello"),
    "pipelined": head("GET /1 HTTP/1.1", [("Host", "a")]) + head("GET /2 HTTP/1.1", [("Host", "a")]),
    "refuse_http10": head("GET /chat HTTP/1.0", upgrade_headers()),
    "refuse_post": head("POST /chat HTTP/1.1", upgrade_headers()),
    "refuse_version8": head("GET /chat HTTP/1.1", upgrade_headers(sec_websocket_version="8")),
    "refuse_short_key": head("GET /chat HTTP/1.1", upgrade_headers(sec_websocket_key="dGhlIHNhbXBsZQ==")),
    "refuse_two_keys": head("GET /chat HTTP/1.1", upgrade_headers() + [("Sec-WebSocket-Key", KEY)]),
    "refuse_no_host": head("GET /chat HTTP/1.1", upgrade_headers(host=None)),
    "refuse_no_connection": head("GET /chat HTTP/1.1", upgrade_headers(connection="keep-alive")),
    "bad_folding": b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n",
    "bad_space_colon": b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    "bad_lf_only": b"GET / HTTP/1.1\nHost: a\n\n",
    "bad_http2": b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    "bad_nul": b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
    "bad_tls_hello": bytes.fromhex("1603010200010001fc0303") + bytes(range(32)),
    "bad_target_ctl": b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n",
    "partial": b"GET /chat HTTP/1.1\r\nHost: server.exa",
}

RESPONSES = {
    "101_rfc6455": head("HTTP/1.1 101 Switching Protocols", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT),
        ("Sec-WebSocket-Protocol", "chat")]),
    "101_no_protocol": head("HTTP/1.1 101 Switching Protocols", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)]),
    "101_case": head("HTTP/1.1 101 Switching Protocols", [
        ("upgrade", "WebSocket"), ("connection", "keep-alive, upgrade"),
        ("sec-websocket-accept", ACCEPT), ("sec-websocket-protocol", "SuperChat"),
        ("Date", "Wed, 25 Nov 2026 12:00:00 GMT")]),
    "101_no_reason": head("HTTP/1.1 101", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)]),
    "101_with_frame": head("HTTP/1.1 101 Switching Protocols", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)],
        b"\x81\x05Hello"),
    "101_wrong_accept": head("HTTP/1.1 101 Switching Protocols", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOx=")]),
    "101_extension": head("HTTP/1.1 101 Switching Protocols", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT),
        ("Sec-WebSocket-Extensions", "permessage-deflate")]),
    "101_unoffered_protocol": head("HTTP/1.1 101 Switching Protocols", [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT),
        ("Sec-WebSocket-Protocol", "chatty")]),
    "101_no_upgrade": head("HTTP/1.1 101 Switching Protocols", [
        ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)]),
    "400_refusal": head("HTTP/1.1 400 Bad Request", [
        ("Content-Length", "44"), ("Connection", "close"), ("Content-Type", "text/plain")],
        b"Sec-WebSocket-Key is not base64 of 16 bytes\n"),
    "426_refusal": head("HTTP/1.1 426 Upgrade Required", [
        ("Content-Length", "43"), ("Connection", "close"), ("Content-Type", "text/plain"),
        ("Sec-WebSocket-Version", "13")], b"unsupported Sec-WebSocket-Version (13 is)\n"),
    "404_http10": head("HTTP/1.0 404 Not Found", [("Server", "x")]),
    "200_body": head("HTTP/1.1 200 OK", [("Content-Length", "2")], b"ok"),
    "bad_status_2digits": b"HTTP/1.1 10 X\r\n\r\n",
    "bad_http2": b"HTTP/2 101 Switching Protocols\r\n\r\n",
    "bad_icy": b"ICY 200 OK\r\n\r\n",
    "bad_lf_only": b"HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\n\n",
    "bad_reason_ctl": b"HTTP/1.1 200 O\x01K\r\n\r\n",
    "partial": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: webs",
}

# ---- frames ----

SERVER, CLIENT = 0, 1
MAX_64K, MAX_125 = 0 << 1, 4 << 1
CLOSE_FIRST = 1 << 4


def frame(opcode, payload=b"", fin=True, mask=None, rsv=0, length_form=None):
    """One frame. mask: 4 bytes or None. length_form 16 or 64 forces a longer
    length encoding than needed (legal to receive)."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if length_form == 64 or n > 0xFFFF:
        out = bytes([b0, m | 127]) + struct.pack(">Q", n)
    elif length_form == 16 or n > 125:
        out = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        out = bytes([b0, m | n])
    if mask:
        out += mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    else:
        out += payload
    return out


_counter = [0]


def key():
    """A fixed sequence of masking keys."""
    _counter[0] += 1
    i = _counter[0]
    return bytes(((i * 73 + k * 151 + 0x3d) & 0xFF) for k in range(4))


def c(opcode, payload=b"", **kw):
    """A client frame (masked) for the server role."""
    return frame(opcode, payload, mask=kw.pop("mask", None) or key(), **kw)


def s(opcode, payload=b"", **kw):
    """A server frame (unmasked) for the client role."""
    return frame(opcode, payload, **kw)


TEXT, BIN, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10
MIXED = "Hello, мир! 你好世界 🙂🚀 café".encode("utf-8")


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


def frames_corpus():
    rfc_mask = bytes.fromhex("37fa213d")
    f = {}
    f["text_rfc_hello"] = bytes([SERVER]) + c(TEXT, b"Hello", mask=rfc_mask)
    f["text_mixed_utf8"] = bytes([SERVER]) + c(TEXT, MIXED)
    f["binary_small"] = bytes([SERVER]) + c(BIN, bytes(range(40)))
    f["binary_len16"] = bytes([SERVER]) + c(BIN, bytes(i & 0xFF for i in range(300)))
    f["binary_len64_short"] = bytes([SERVER]) + c(BIN, b"\xAA" * 200, length_form=64)
    f["text_len16_nonminimal"] = bytes([SERVER]) + c(TEXT, b"tiny", length_form=16)
    f["fragmented_text"] = bytes([SERVER]) + c(TEXT, b"Hel", fin=False) + c(CONT, b"lo")
    f["fragmented_ping_between"] = bytes([SERVER]) + (
        c(BIN, b"\x01\x02", fin=False) + c(PING, b"are you there") +
        c(CONT, b"\x03", fin=False) + c(CONT, b"\x04\x05"))
    # a character split across fragments: valid in total
    cut = MIXED.index("你".encode()) + 1
    f["fragmented_split_char"] = bytes([SERVER]) + c(TEXT, MIXED[:cut], fin=False) + c(CONT, MIXED[cut:])
    f["ping_pong_close"] = bytes([SERVER]) + (
        c(PING, b"Hello") + c(PONG, b"") + c(CLOSE, close_payload(1000, b"bye")))
    f["close_empty"] = bytes([SERVER]) + c(CLOSE) + c(TEXT, b"after close")
    f["close_one_byte"] = bytes([SERVER]) + c(CLOSE, b"\x03")
    f["close_code_1005"] = bytes([SERVER]) + c(CLOSE, close_payload(1005))
    f["close_reason_bad_utf8"] = bytes([SERVER]) + c(CLOSE, close_payload(1001, b"\xff"))
    f["many_small"] = bytes([SERVER]) + b"".join(
        c(TEXT if i % 3 else BIN, bytes([0x61 + i % 26]) * (i % 7)) for i in range(40))
    f["bad_utf8_single"] = bytes([SERVER]) + c(TEXT, b"ok \xc3\x28 no")
    f["bad_utf8_fragment"] = bytes([SERVER]) + c(TEXT, b"fine \xe2\x82", fin=False) + c(CONT, b"\x28")
    f["bad_utf8_truncated"] = bytes([SERVER]) + c(TEXT, b"end \xf0\x9f\x99")
    f["bad_surrogate"] = bytes([SERVER]) + c(TEXT, b"\xed\xa0\x80")
    f["bad_rsv1"] = bytes([SERVER]) + c(TEXT, b"compressed?", rsv=4)
    f["bad_opcode3"] = bytes([SERVER]) + c(3, b"x")
    f["bad_unmasked_to_server"] = bytes([SERVER]) + s(TEXT, b"Hello")
    f["bad_ping_126"] = bytes([SERVER]) + c(PING, b"p" * 126)
    f["bad_ping_fragmented"] = bytes([SERVER]) + c(PING, b"p", fin=False)
    f["bad_continuation_first"] = bytes([SERVER]) + c(CONT, b"orphan")
    f["bad_text_inside_fragmented"] = bytes([SERVER]) + c(TEXT, b"a", fin=False) + c(TEXT, b"b")
    f["bad_len64_high_bit"] = bytes([SERVER]) + bytes([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1]) + key()
    f["too_big_max125"] = bytes([SERVER | MAX_125]) + c(BIN, b"z" * 200)
    f["too_big_fragments_max125"] = bytes([SERVER | MAX_125]) + (
        c(BIN, b"y" * 100, fin=False) + c(CONT, b"y" * 30))
    f["close_first_server"] = bytes([SERVER | CLOSE_FIRST]) + c(PING, b"late") + c(CLOSE, close_payload(1000))
    f["client_text_ping_close"] = bytes([CLIENT]) + (
        s(TEXT, "привет".encode()) + s(PING, b"hb") + s(BIN, bytes(130)) +
        s(CLOSE, close_payload(4000, b"app")))
    f["client_fragmented"] = bytes([CLIENT]) + s(TEXT, b"ab", fin=False) + s(CONT, b"cd")
    f["bad_masked_to_client"] = bytes([CLIENT]) + frame(TEXT, b"Hi", mask=key())
    return f


# ---- json ----

DEPTH64, DEPTH3, DEPTH1 = 63, 2, 0    # bits 0-5: max_depth - 1
NODES3, NODES16 = 1 << 6, 2 << 6      # bits 6-7: max_nodes 3, 16 (0: default)

# writer commands (low nibble; the high nibble is an argument)
W_OBJECT, W_ARRAY, W_END, W_KEY_N, W_STR_N, W_CSTR, W_INT64, W_INT8 = range(8)
W_INT_EDGE, W_DOUBLE64, W_DOUBLE_EDGE, W_BOOL, W_NULL, W_VALUE, W_RESET = range(8, 15)


def wkey(b):
    return bytes([W_KEY_N | len(b) << 4]) + b


def wstr(b):
    return bytes([W_STR_N | len(b) << 4]) + b


def json_corpus():
    j = {}
    d = bytes([DEPTH64])
    j["null"] = d + b"null"
    j["true_ws"] = d + b" \t\r\n true \n"
    j["false"] = d + b"false"
    j["ints"] = d + b"[0,-0,1,-1,9223372036854775807,-9223372036854775808,9223372036854775808," \
        b"-9223372036854775809,18446744073709551616]"
    j["doubles"] = d + b"[0.0,-0.0,1.5,-2.5e-3,1E+2,1e308,1.7976931348623157e308,4.9e-324," \
        b"2.2250738585072014e-308,0.1,123456789012345678901234567890,1e-400,3.0e0]"
    j["double_overflow"] = d + b"[1e309,-1e400]"
    j["string_escapes"] = d + b'"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u0000\\u001f\\u00e9\\u20AC"'
    j["string_utf8"] = d + '"Hello, мир! 你好世界 🙂 café"'.encode("utf-8")
    j["string_surrogates"] = d + b'["\\ud83d\\ude42","\\uD834\\uDD1E","\\uffff","\\u0800"]'
    j["object_nested"] = d + b'{"user":{"name":"ann","tags":["a","b",[]],"age":41,"ok":true},' \
        b'"items":[{"id":1},{"id":2,"x":null}],"":{},"e":[{}]}'
    j["object_duplicate_keys"] = d + b'{"a":1,"b":2,"a":3,"a\\u0000":4,"\\u0061":5}'
    j["array_deep64"] = d + b"[" * 64 + b"]" * 64
    j["array_deep65"] = d + b"[" * 65 + b"]" * 65
    j["object_deep"] = d + b'{"a":' * 20 + b"0" + b"}" * 20
    j["envelope"] = d + b'{"type":"call","id":7,"method":"room.join","params":{"room":"lobby",' \
        b'"since":1.5e9,"filter":[1,2,3]}}'
    j["limits_depth1"] = bytes([DEPTH1]) + b"[[1]]"
    j["limits_depth3"] = bytes([DEPTH3]) + b'{"a":[{"b":[1]}]}'
    j["limits_nodes3"] = bytes([DEPTH64 | NODES3]) + b"[1,2,3]"
    j["limits_nodes16"] = bytes([DEPTH64 | NODES16]) + b'{"k":[' + b",".join(b"%d" % i for i in range(20)) + b"]}"
    j["bad_trailing"] = d + b"{} x"
    j["bad_trailing_comma"] = d + b"[1,2,]"
    j["bad_leading_zero"] = d + b"[01]"
    j["bad_numbers"] = d + b"[-,1.,.5,1e,+1,0x10,NaN,Infinity]"
    j["bad_unterminated"] = d + b'{"a":"b'
    j["bad_control_char"] = d + b'"a\tb"'
    j["bad_escape"] = d + b'"\\x41"'
    j["bad_lone_surrogate"] = d + b'["\\ud800","\\udc00x"]'
    j["bad_utf8"] = d + b'["\xc3\x28","\xed\xa0\x80","\xc0\xaf"]'
    j["bad_key"] = d + b"{a:1}"
    j["bad_single_quote"] = d + b"['a']"
    j["bad_empty"] = d
    j["bad_nul"] = d + b"[1\x00]"
    j["bad_literal"] = d + b"[tru]"
    # writer commands: after the text, a 0xFF
    j["writer_object"] = d + b"0\xff" + bytes([W_OBJECT]) + wkey(b"id") + bytes([W_INT8, 42]) + \
        wkey(b"name") + wstr(b"caf\xc3\xa9 \"q\" \\ \x01") + wkey(b"list") + bytes([W_ARRAY]) + \
        bytes([W_BOOL | 1 << 4, W_NULL, W_INT_EDGE, W_INT_EDGE | 1 << 4, W_DOUBLE_EDGE | 1 << 4,
               W_DOUBLE_EDGE | 5 << 4, W_DOUBLE_EDGE | 12 << 4, W_END, W_END])
    j["writer_value"] = d + b'{"a":[1,2.5,"x"]}\xff' + bytes([W_ARRAY, W_VALUE, W_VALUE, W_END])
    j["writer_misuse"] = d + b"1\xff" + bytes([W_ARRAY]) + wkey(b"k") + bytes([W_NULL, W_END])
    j["writer_nan"] = d + b"1\xff" + bytes([W_ARRAY, W_DOUBLE64]) + struct.pack("<d", float("nan")) + \
        bytes([W_END])
    j["writer_bad_utf8"] = d + b"1\xff" + bytes([W_OBJECT]) + wkey(b"\xc3") + wstr(b"\xed\xa0\x80") + \
        bytes([W_END])
    j["writer_full"] = d + b"1\xff" + bytes([W_ARRAY]) + wstr(b"\x00" * 15) * 60 + bytes([W_END])
    j["writer_reset"] = d + b"1\xff" + bytes([W_ARRAY, W_ARRAY, W_RESET, W_OBJECT, W_CSTR | 9 << 4, 0x61,
                                             W_CSTR | 15 << 4, W_END])
    return j


# ---- msgpack ----

MW_BIN = 15  # writer command 15: binary (argument * 17 bytes)


def mp_head(n, fix, fix_max, t8, t16, t32):
    if fix is not None and n <= fix_max:
        return bytes([fix | n])
    if t8 is not None and n < 256:
        return bytes([t8, n])
    if n < 65536:
        return bytes([t16]) + struct.pack(">H", n)
    return bytes([t32]) + struct.pack(">I", n)


def mp(v):
    """v in the smallest MessagePack form (independent of the library)."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack(">b", v)
        for lo, hi, tag, fmt in ((0, 0xFF, 0xcc, ">B"), (0, 0xFFFF, 0xcd, ">H"), (0, 0xFFFFFFFF, 0xce, ">I"),
                                 (0, 2 ** 64 - 1, 0xcf, ">Q"), (-128, -1, 0xd0, ">b"),
                                 (-32768, -1, 0xd1, ">h"), (-2 ** 31, -1, 0xd2, ">i"),
                                 (-2 ** 63, -1, 0xd3, ">q")):
            if lo <= v <= hi:
                return bytes([tag]) + struct.pack(fmt, v)
        raise ValueError(v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode("utf-8")
        return mp_head(len(b), 0xa0, 31, 0xd9, 0xda, 0xdb) + b
    if isinstance(v, bytes):
        return mp_head(len(v), None, 0, 0xc4, 0xc5, 0xc6) + v
    if isinstance(v, list):
        return mp_head(len(v), 0x90, 15, None, 0xdc, 0xdd) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        return mp_head(len(v), 0x80, 15, None, 0xde, 0xdf) + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


def f32(x):
    return b"\xca" + struct.pack(">f", x)


def msgpack_corpus():
    m = {}
    d = bytes([DEPTH64])
    m["nil_bool"] = d + mp([None, True, False])
    m["fixint"] = d + mp([0, 1, 127, -1, -32])
    m["ints_edges"] = d + mp([128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1, -33, -128, -129,
                              -32768, -32769, -2 ** 31, -2 ** 31 - 1, -2 ** 63])
    m["uint64_above_int64"] = d + mp([2 ** 63, 2 ** 64 - 1, 2 ** 63 + 1025])
    m["ints_not_smallest"] = d + bytes.fromhex("98cc00cd0001ce00000001cf0000000000000001d000d10001d200000001d300000000000000ff")
    m["floats"] = d + b"\x99" + f32(1.5) + f32(-0.0) + f32(3.4028234663852886e38) + struct.pack(">BI", 0xca, 1) + \
        mp(0.1) + mp(-0.0) + mp(5e-324) + mp(1.7976931348623157e308) + mp(2.0 ** 63)
    m["strings"] = d + mp(["", "a", "x" * 31, "y" * 32, "z" * 255, "w" * 256, "Hello, мир! 你好 🙂", "a\x00b"])
    m["string_str32_short"] = d + b"\x92\xdb\x00\x00\x00\x03abc\xda\x00\x00"
    m["binary"] = d + mp([b"", b"\x00\xff", bytes(range(256)), b"\xc1\x80" * 40]) + b""
    m["binary_bin32_short"] = d + b"\x92\xc6\x00\x00\x00\x02\xc0\xc1\xc5\x00\x00"
    m["arrays"] = d + mp([[], [1] * 15, [2] * 16, [[[]]]])
    m["array16_300"] = d + mp([None, 1, "x"] * 100)
    m["string_300"] = d + mp("s" * 300)
    m["array32_short"] = d + b"\xdd\x00\x00\x00\x02\xdc\x00\x00\x90"
    m["maps"] = d + mp({"": {}, "a": 1, "b": {"c": [1, {"d": None}]}, "k" * 40: {str(i): i for i in range(16)}})
    m["map32_short"] = d + b"\xdf\x00\x00\x00\x01\xa1k\xde\x00\x00"
    m["duplicate_keys"] = d + b"\x83\xa1a\x01\xa1b\x02\xa1a\x03"
    m["envelope"] = d + mp({"type": "chat.send", "payload": {"text": "hi", "n": [1, 2.5, None], "blob": b"\x01\x02"},
                            "rpcId": "c1"})
    m["array_deep64"] = d + b"\x91" * 63 + b"\x90"
    m["array_deep64_int"] = d + b"\x91" * 64 + b"\x01"
    m["array_deep65"] = d + b"\x91" * 65 + b"\x01"
    m["array_deep65_empty"] = d + b"\x91" * 64 + b"\x90"
    m["map_deep64"] = d + b"\x81\xa1a" * 64 + b"\xc0"
    m["map_deep65_empty"] = d + b"\x81\xa1a" * 64 + b"\x80"
    m["limits_depth1"] = bytes([DEPTH1]) + mp([[1]])
    m["limits_depth1_empty"] = bytes([DEPTH1]) + mp([[]])
    m["limits_depth3"] = bytes([DEPTH3]) + mp({"a": [{"b": [1]}]})
    m["limits_nodes3"] = bytes([DEPTH64 | NODES3]) + mp([1, 2, 3])
    m["limits_nodes16"] = bytes([DEPTH64 | NODES16]) + mp({"k": list(range(20))})
    m["bad_c1"] = d + b"\x92\x01\xc1"
    m["bad_ext"] = d + b"\x96\xd4\x01\x00\xd5\x01\x00\x00\xd6\xff\x00\x00\x00\x00\xc7\x01\x05\x00" \
        b"\xc8\x00\x01\x05\x00\xc9\x00\x00\x00\x01\x05\x00"
    m["bad_fixext16"] = d + b"\xd8\x01" + bytes(16)
    m["bad_nan32"] = d + b"\x91\xca\x7f\xc0\x00\x00"
    m["bad_inf64"] = d + b"\x81\xa1x\xcb\x7f\xf0" + bytes(6)
    m["bad_key_int"] = d + b"\x81\x01\x01"
    m["bad_key_bin"] = d + b"\x81\xc4\x01a\x01"
    m["bad_key_array"] = d + b"\x82\xa1a\x01\x90\x01"
    m["bad_utf8"] = d + b"\x93\xa2\xc3\x28\xa3\xed\xa0\x80\xa2\xc0\xaf"
    m["bad_truncated"] = d + mp({"a": [1, 2, "xyz"]})[:-1]
    m["bad_truncated_header"] = d + b"\x92\xcd\x01"
    m["bad_trailing"] = d + b"\x90\x00"
    m["bad_str32_4gib"] = d + b"\xdb\xff\xff\xff\xffabc"
    m["bad_bin32_4gib"] = d + b"\xc6\xff\xff\xff\xff\x00"
    m["bad_array32_huge"] = d + b"\x91\xdd\xff\xff\xff\xff\x01\x02"
    m["bad_map32_huge"] = d + b"\xdf\xff\xff\xff\xff\xa1a\x01"
    m["bad_empty"] = d
    # writer commands: after the value, C1 C1
    sep = b"\xc1\xc1"
    m["writer_object"] = d + mp(0) + sep + bytes([W_OBJECT]) + wkey(b"id") + bytes([W_INT8, 42]) + \
        wkey(b"name") + wstr(b"caf\xc3\xa9 \x01") + wkey(b"list") + bytes([W_ARRAY]) + \
        bytes([W_BOOL | 1 << 4, W_NULL] + [W_INT_EDGE | k << 4 for k in range(16)] +
              [W_DOUBLE_EDGE | 1 << 4, W_DOUBLE_EDGE | 5 << 4, W_DOUBLE_EDGE | 12 << 4, W_END, W_END])
    m["writer_binary"] = d + mp(0) + sep + bytes([W_ARRAY, MW_BIN, MW_BIN | 1 << 4]) + bytes(range(17)) + \
        bytes([MW_BIN | 15 << 4]) + bytes(255) + bytes([W_END])
    m["writer_16_elements"] = d + mp(0) + sep + bytes([W_ARRAY, W_ARRAY] + [W_NULL] * 16 + [W_END, W_OBJECT]) + \
        b"".join(wkey(b"%x" % i) + bytes([W_INT8, i]) for i in range(16)) + bytes([W_END, W_END])
    m["writer_value"] = d + mp({"a": [1, 2.5, "x", b"\x00"]}) + sep + bytes([W_ARRAY, W_VALUE, W_VALUE, W_END])
    m["writer_misuse"] = d + mp(1) + sep + bytes([W_ARRAY]) + wkey(b"k") + bytes([W_NULL, W_END])
    m["writer_nan"] = d + mp(1) + sep + bytes([W_ARRAY, W_DOUBLE64]) + struct.pack("<d", float("nan")) + \
        bytes([W_END])
    m["writer_bad_utf8"] = d + mp(1) + sep + bytes([W_OBJECT]) + wkey(b"\xc3") + wstr(b"\xed\xa0\x80") + \
        bytes([W_END])
    m["writer_reset"] = d + mp(1) + sep + bytes([W_ARRAY, W_ARRAY, W_RESET, W_OBJECT, W_CSTR | 9 << 4, 0x61,
                                                 W_CSTR | 15 << 4, W_END])
    # a result of exactly 4096 bytes: 255 strings of 15 and one of 12 in an array16
    m["writer_exactly_4096"] = d + mp(1) + sep + bytes([W_ARRAY]) + wstr(b"0123456789abcde") * 255 + \
        wstr(b"0123456789ab") + bytes([W_END])
    m["writer_4097"] = d + mp(1) + sep + bytes([W_ARRAY]) + wstr(b"0123456789abcde") * 255 + \
        wstr(b"0123456789abc") + bytes([W_END])
    return m


def app_corpus():
    # The last byte of a seed picks what happens to kept requests: bit 0
    # answers ok (1) or with an error (0), bit 1 lets the timeout pass
    # first. JSON white space gives '\t' ok, ' ' error, '\n' late.
    a = {}
    a["call_echo"] = b'{"type":"echo","payload":{"a":[1,2.5,"x",null,true]},"rpcId":"c1"}'
    a["call_int_id"] = b'{"type":"echo","payload":1,"rpcId":7}'
    a["call_negative_id"] = b'{"rpcId":-9223372036854775808,"type":"echo"}'
    a["call_escaped_id"] = b'{"type":"e\\u0063ho","payload":"\\u0000","rpcId":"\\ud83d\\ude00\\""}'
    a["event_echo"] = b'{"type":"echo","payload":"hi"}'
    a["users_get_ok"] = b'{"type":"users.get","payload":{"user":{"name":"ann","age":41,"email":null},' \
        b'"tags":["a","b"],"score":0.5,"any":[{}]},"rpcId":"u1"}'
    a["users_get_bad"] = b'{"type":"users.get","payload":{"user":{"name":"","age":1.5,"email":3},' \
        b'"tags":["toolongtag",1,2,3,4],"score":-2,"x":0},"rpcId":"u2"}'
    a["users_get_missing"] = b'{"type":"users.get","rpcId":"u3"}'
    a["users_get_event_bad"] = b'{"type":"users.get","payload":[]}'
    a["slow_call_ok"] = b'{"type":"jobs.slow","payload":{"n":1},"rpcId":"s1"}\t'
    a["slow_call_error"] = b'{"type":"jobs.slow","payload":{"n":2},"rpcId":"s2"} '
    a["slow_call_late"] = b'{"type":"jobs.slow","rpcId":3}\n'
    a["slow_event_error"] = b'{"type":"jobs.slow"} '
    a["slow_event_late"] = b'{"type":"jobs.slow"}\n'
    a["fail_call"] = b'{"type":"jobs.fail","payload":[1],"rpcId":"f1"}'
    a["fail_event"] = b'{"type":"jobs.fail"}'
    a["guarded_refused"] = b'{"type":"guarded","payload":[1],"rpcId":"g1"}'
    a["guarded_ok"] = b'{"type":"guarded","payload":{"k":"v"},"rpcId":"g2"}'
    a["middleware_forbidden"] = b'{"type":"echo","payload":13,"rpcId":"m1"}'
    a["middleware_nonzero"] = b'{"type":"echo","payload":666}'
    a["nested_call"] = b'{"type":"nested","payload":{"deep":[[[1]]],"s":"\xc3\xa9"},"rpcId":"n1"}'
    a["news_event"] = b'{"type":"news","payload":{"headline":"x"}}'
    a["auth_ok"] = b'{"type":"__auth","payload":"ok","rpcId":"a1"}'
    a["auth_failure"] = b'{"type":"__auth","payload":"nope","rpcId":"a2"}'
    # found by fuzz_app: a __ping event is answered with a __pong
    a["ping_event"] = b'{"type":"__ping","payl/MMMMMMMMMMMMMMMMMd":"n1"}'
    a["ping_call"] = b'{"type":"__ping","payload":[1,"x"],"rpcId":"p1"}'
    a["ping_null_id"] = b'{"type":"__ping","payload&":[1,"x"],"rpcId":null}'
    a["bad_truncated"] = b'{"type":"echo",'
    a["bad_no_type"] = b'{"rpcId":"x","payload":1}'
    a["bad_type_not_string"] = b'{"type":5,"rpcId":9}'
    a["bad_empty_type"] = b'{"type":"","rpcId":"e"}'
    a["bad_rpc_id_double"] = b'{"type":"echo","rpcId":1.5}'
    a["bad_rpc_id_object"] = b'{"type":"echo","rpcId":{"a":1}}'
    a["bad_rpc_id_long"] = b'{"type":"echo","rpcId":"' + b"i" * 65 + b'"}'
    a["rpc_id_longest"] = b'{"type":"echo","rpcId":"' + b"i" * 64 + b'"}'
    a["unknown_route"] = b'{"type":"no.such","rpcId":"z"}'
    a["unknown_long_route"] = b'{"type":"' + b"a" * 200 + b'","rpcId":"z"}'
    a["not_an_object"] = b"[1,2,3]"
    a["bad_utf8"] = b'{"type":"echo","payload":"\xff","rpcId":"b"}'
    a["too_deep"] = b'{"type":"echo","rpcId":"d","payload":' + b"[" * 70 + b"]" * 70 + b"}"
    a["split_users_get"] = b'users.get {"user":{"name":"ann"}}'
    a["split_echo"] = b"echo [1,2,3]"
    a["split_bad_payload"] = b'echo {"a":'
    a["split_slow"] = b"jobs.slow {}\t"
    a["split_no_payload"] = b"guarded"
    a["split_bad_name"] = b"a..b 1"
    a["split_nul_in_type"] = b"echo\x00x 1"
    return a


def client_corpus():
    # Messages a server sends a zk_client, one per line; "$0".."$3" stand
    # for the rpcIds of the four calls in flight. An odd last byte drops
    # the connection afterwards.
    a = {}
    a["answers"] = b'{"type":"__rpc_res","payload":1,"rpcId":"$0"}\n' \
        b'{"type":"__rpc_err","rpcId":"$1","error":{"code":"X","message":"m","data":[1]}}\n' \
        b'{"type":"__rpc_res","rpcId":"$3","payload":{"a":1}}\n'
    a["answered_twice"] = b'{"type":"__rpc_res","rpcId":"$2"}\n{"type":"__rpc_res","rpcId":"$2","payload":2}\n'
    a["int_rpc_id"] = b'{"type":"__rpc_res","rpcId":$0,"payload":null}\n'
    a["events"] = b'{"type":"ev","payload":{"x":"y"}}\n{"type":"other"}\n{"type":"__error","error":{"code":"BAD"}}\n' \
        b'{"type":"__pong"}\n'
    a["junk"] = b'not json\n[1,2]\n{"type":5}\n{"rpcId":"$0"}\n{"type":"__rpc_err","rpcId":"$0"}\n'
    a["then_drop"] = b'{"type":"__rpc_res","rpcId":"$3","payload":3}\n\x01'
    a["binary"] = b'\xff\xfe{"type":"__rpc_res","rpcId":"$1"}'
    return a


# ---- resp ----


def bulk(b):
    return b"$%d\r\n" % len(b) + b + b"\r\n"


def array(*items):
    return b"*%d\r\n" % len(items) + b"".join(items)


def resp_corpus():
    r = {}
    r["simple_ok"] = b"+OK\r\n"
    r["simple_empty"] = b"+\r\n"
    r["error"] = b"-ERR unknown command 'FOO', with args beginning with: \r\n"
    r["error_wrongtype"] = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    r["integers"] = b":0\r\n:1\r\n:-1\r\n:9223372036854775807\r\n:-9223372036854775808\r\n:007\r\n"
    r["integer_overflow"] = b":9223372036854775808\r\n"
    r["integer_underflow"] = b":-9223372036854775809\r\n"
    r["bulks"] = bulk(b"hello") + bulk(b"") + b"$-1\r\n" + bulk(b"a\r\nb\x00\xff\r\n") + bulk(b"\r\n")
    r["arrays"] = b"*0\r\n*-1\r\n" + array(array(b":1\r\n", bulk(b"a")), b"*0\r\n", b"$-1\r\n")
    r["pubsub"] = (array(bulk(b"subscribe"), bulk(b"room"), b":1\r\n") +
                   array(bulk(b"psubscribe"), bulk(b"room.*"), b":2\r\n") +
                   array(bulk(b"message"), bulk(b"room"), bulk(b'{"type":"chat","text":"hi"}')) +
                   array(bulk(b"pmessage"), bulk(b"room.*"), bulk(b"room.a"), bulk(b"*1\r\n:1\r\n")) +
                   array(bulk(b"pong"), bulk(b"")) +
                   array(bulk(b"unsubscribe"), bulk(b"room"), b":0\r\n"))
    r["message_partial"] = array(bulk(b"message"), bulk(b"room"), bulk(b"hello"))[:-4]
    r["items_16"] = array(*[b":%d\r\n" % i for i in range(15)])
    r["items_17"] = array(*[bulk(b"x") for _ in range(16)])
    r["items_nested_19"] = array(array(*[b":1\r\n"] * 8), array(*[b"+x\r\n"] * 8))
    r["array_header_too_big"] = b"*17\r\n"
    deep8 = b":8\r\n"
    for _ in range(8):
        deep8 = array(deep8)
    r["depth_8"] = deep8
    r["depth_9"] = array(deep8)
    r["simple_64k"] = b"+" + b"a" * 65536 + b"\r\n+OK\r\n"
    r["simple_too_long"] = b"+" + b"a" * 65537 + b"\r\n"
    r["header_too_long"] = b"$" + b"0" * 40 + b"1\r\nx\r\n"
    r["bulk_too_big"] = b"$536870913\r\n"
    r["bad_type"] = b"+OK\r\n?x\r\n"
    r["bad_resp3"] = b"_\r\n#t\r\n,1.5\r\n%1\r\n"
    r["bad_bare_cr"] = b":1\rX\r\n"
    r["bad_bare_cr_simple"] = b"+O\rK\r\n"
    r["bad_bulk_length"] = b"$5\r\nhi\r\n:1\r\n"
    r["bad_bulk_short"] = b"$2\r\nhello\r\n"
    r["bad_signs"] = b":+1\r\n"
    r["bad_space"] = b"*1 \r\n:1\r\n"
    r["bad_nil_length"] = b"$-2\r\n"
    return r


# ---- nats ----


def nats_msg(subject, sid, payload, reply=None):
    line = b"MSG " + subject + b" %d " % sid + (reply + b" " if reply else b"") + b"%d\r\n" % len(payload)
    return line + payload + b"\r\n"


def nats_corpus():
    n = {}
    info = b'INFO {"server_id":"NCXMJZYQEWUDJFLYLSTTE745I2WUNCVG3LJJ3NRKSFJXEG6RGK7753DJ","version":"2.10.7",' \
        b'"proto":1,"headers":true,"max_payload":1048576,"client_id":5}\r\n'
    n["session"] = (info + b"PING\r\n+OK\r\n" + nats_msg(b"zk.room.lobby", 1, b'{"type":"chat"}') +
                    nats_msg(b"zk.room.a_2Eb", 2, b"", b"_INBOX.x.1") + b"PONG\r\n")
    n["info_lower"] = b"info {}\r\n"
    n["info_long"] = b'INFO {"x":"' + b"x" * 10000 + b'"}\r\nPING\r\n'
    n["info_too_long"] = b'INFO {"x":"' + b"x" * 65536 + b'"}\r\n'
    n["msg_reply"] = nats_msg(b"a.b", 12, b"abc", b"_INBOX.x.y")
    n["msg_empty"] = nats_msg(b"a", 1, b"")
    n["msg_crlf_payload"] = nats_msg(b"a", 1, b"x\r\nPING\r\n\x00\r\n")
    n["msg_spaces_tabs"] = b"mSg\t\ta  \t 2\t\tr   1 \t\r\ny\r\n"
    n["msg_big_sid"] = nats_msg(b"a", 9223372036854775807, b"z") + b"MSG a 18446744073709551615 0\r\n\r\n"
    n["msg_payload_1mib_header"] = b"MSG a 1 1048577\r\n"
    n["ping_pong_case"] = b"Ping\r\npong \t\r\n+ok\r\n"
    n["err"] = b"-ERR 'Unknown Protocol Operation'\r\n-err 'Stale Connection'  \r\n-ERR\r\n"
    n["bad_hmsg"] = b"HMSG a 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
    n["bad_unknown"] = b"PING\r\nFOO bar\r\n"
    n["bad_msg_tokens"] = b"MSG a 1\r\n"
    n["bad_msg_too_many"] = b"MSG a 1 r x 3\r\nabc\r\n"
    n["bad_size"] = b"MSG a 1 -1\r\n"
    n["bad_size_text"] = b"MSG a 1 3x\r\nabc\r\n"
    n["bad_trailer"] = b"MSG a 1 3\r\nabcXY"
    n["bad_bare_cr"] = b"PI\rNG\r\n"
    n["control_line_too_long"] = b"MSG " + b"s" * 4089 + b" 1 0\r\n\r\n"
    return n


# ---- broker ----

NODE_A = b"0123456789abcdef"
NODE_B = b"fedcba9876543210"


def bmsg(node, seq, rooms=(), ids=(), mtype=b"chat.message", payload=b'{"text":"hi"}', flags=0,
         except_id=None, replay=False, age=0):
    head = b"ZK1 M " + node + (b" P " if replay else b" L ") + b"%010d %d %d " % (age, seq, flags)
    head += (except_id if except_id else b"-") + b" %d %d\n" % (len(rooms), len(ids))
    body = b"".join(b"%d:" % len(x) + x for x in list(rooms) + list(ids))
    return head + body + b"%d:" % len(mtype) + mtype + payload


def rec(b):
    return struct.pack(">H", len(b)) + b


def broker_corpus():
    c = {}
    c["room_a"] = rec(bmsg(NODE_A, 1, [b"a"]))
    c["rooms_a_b_once"] = rec(bmsg(NODE_A, 1, [b"a", b"b"])) + rec(bmsg(NODE_A, 1, [b"a", b"b"]))
    c["all_except"] = rec(bmsg(NODE_B, 5, flags=1 + 2 * 1, except_id=b"A" * 22, payload=b"[1,2,3]"))
    c["ids"] = rec(bmsg(NODE_A, 2, ids=[b"x" * 22, b"y" * 22], payload=b""))
    c["sequence"] = b"".join(rec(bmsg(NODE_A, i, [b"a"], payload=b"%d" % i)) for i in range(1, 9))
    c["reordered"] = b"".join(rec(bmsg(NODE_A, i, [b"b"])) for i in (3, 1, 2, 3, 1200, 2))
    c["hold_replay_marker"] = (rec(bmsg(NODE_A, 1, [b"a"])) + rec(b"\xe0") + rec(bmsg(NODE_A, 3, [b"a"])) +
                               rec(bmsg(NODE_A, 2, [b"a"], replay=True)) +
                               rec(b"ZK1 R " + NODE_A + b" 3 " + b"0" * 16 + b"\n"))
    c["hold_timeout"] = rec(bmsg(NODE_B, 1, [b"b"])) + rec(b"\xe0") + rec(bmsg(NODE_B, 2, [b"b"])) + rec(b"\xff")
    c["hello_replay"] = (rec(b"\xc8") + rec(b"\xc8") + rec(b"\xc8") +
                         rec(b"ZK1 H " + NODE_B + b" 0 2\n" + NODE_A + b" 4\n" + b"f" * 16 + b" 1\n"))
    c["ring_full"] = b"".join(rec(b"\xc9") for _ in range(20))
    c["old_message"] = rec(b"\xf4") + rec(bmsg(NODE_A, 1, [b"a"], age=1500)) + rec(bmsg(NODE_A, 2, [b"b"], age=10))
    c["except_dash"] = rec(bmsg(NODE_A, 1, [b"a"], except_id=b"-" * 22))
    c["bad_header"] = rec(b"ZK1 M " + NODE_A + b" L 0000000000 1 9 - 1 0\n1:a2:hi") + rec(b"ZK1 X " + NODE_A + b" 1\n")
    c["bad_payload"] = rec(bmsg(NODE_A, 1, [b"a"], payload=b'{"a":')) + rec(bmsg(NODE_A, 2, [b"a"], mtype=b""))
    c["bad_lengths"] = (rec(b"ZK1 M " + NODE_A + b" L 0000000000 1 0 - 1 0\n99:a") +
                        rec(b"ZK1 M " + NODE_A + b" L 0000000000 1 0 - 2 0\n") + rec(b"ZK1 M " + NODE_A + b" L 1 0 - 1 0\n1:a"))
    return c


# ---- server ----

# byte 0 of a server seed
APP_PLAIN, APP_AUTH, APP_TIGHT, APP_STRICT = 0, 1, 2, 3
WRITE_ALL, WRITE_RANDOM, WRITE_BYTES, WRITE_SMALL = 0 << 2, 1 << 2, 2 << 2, 3 << 2
TIME_NONE, TIME_SMALL, TIME_MEDIUM, TIME_DEADLINES = 0 << 4, 1 << 4, 2 << 4, 3 << 4
ANSWER_KEPT, SILENT_END = 1 << 6, 1 << 7


def _splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & (2 ** 64 - 1)
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2 ** 64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2 ** 64 - 1)
    return state, z ^ (z >> 31)


def server_seed(pieces=False, small=False, first_write=0):
    """The first seed byte (byte 1) whose loopback delivers in pieces and has
    a small capacity as asked (the harness's first draw) and, for
    WRITE_RANDOM, whose first write is at least first_write bytes (its
    second draw)."""
    for b in range(256):
        state, r = _splitmix(b * 0x100000001B3 + 1)
        _, r2 = _splitmix(state)
        size = 1 + (r2 >> 8) % (3, 17, 140, 2000)[r2 & 3]
        if ((r & 3) == 0) == pieces and (((r >> 8) & 3) == 0) == small and size >= first_write:
            return b
    raise ValueError("no such seed")


def stalled_seed(head_len):
    """A seed byte for WRITE_RANDOM | TIME_DEADLINES with a small capacity
    whose first write (past the head) is read at once and whose second is
    not (the peer stalls) and is followed by a step of at least 1100 ms, and
    the sizes of the two writes: an answer sent then waits past
    write_timeout_ms."""
    for b in range(256):
        draws, state = [], b * 0x100000001B3 + 1
        for _ in range(7):
            state, r = _splitmix(state)
            draws.append(r)
        r, w1, stall1, t1, w2, stall2, t2 = draws
        size1 = 1 + (w1 >> 8) % (3, 17, 140, 2000)[w1 & 3]
        size2 = 1 + (w2 >> 8) % (3, 17, 140, 2000)[w2 & 3]
        if ((r >> 8) & 3) == 0 and size1 >= head_len + 200 and not stall1 & 1 and t1 % 5 == 0 and \
                size2 <= 40 and stall2 & 1 and t2 % 5 >= 3:
            return b, size1, size2
    raise ValueError("no such seed")


_server_masks = [0]


def sk():
    """Masking keys for the server seeds (a sequence of their own)."""
    _server_masks[0] += 1
    i = _server_masks[0]
    return bytes(((i * 97 + k * 59 + 0x11) & 0xFF) for k in range(4))


def sc(opcode, payload=b"", **kw):
    return frame(opcode, payload, mask=kw.pop("mask", None) or sk(), **kw)


def upgrade(path="/", protocols=None, origin=None, extra=()):
    h = [("Host", "server.example.com"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
         ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13")]
    if protocols:
        h.append(("Sec-WebSocket-Protocol", protocols))
    if origin:
        h.append(("Origin", origin))
    return head("GET %s HTTP/1.1" % path, h + list(extra))


def js(**env):
    """A JSON envelope as a masked text frame."""
    return sc(TEXT, json.dumps(env, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def ms(**env):
    """A MessagePack envelope as a masked binary frame."""
    return sc(BIN, mp(env))


def server_corpus():
    cfg = lambda *bits: bytes([sum(bits), server_seed()])
    f = {}
    up_json = upgrade(protocols="zocket.json")
    up_mp = upgrade(protocols="zocket.msgpack")
    slow = lambda *bits: bytes([sum(bits), server_seed(first_write=len(up_mp))])
    bye = sc(CLOSE, close_payload(1000, b"done"))
    calls = [dict(type="echo", payload={"a": [1, 2.5, "x", None, True]}, rpcId="c1"),
             dict(type="echo", payload=7, rpcId=7),
             dict(type="users.get", payload={"user": {"name": "ann", "age": 41}, "tags": ["a"]}, rpcId="u1"),
             dict(type="users.get", payload={"user": {"name": "", "age": 1.5}, "x": 0}, rpcId="u2"),
             dict(type="no.such", rpcId="z"),
             dict(type="echo", payload="an event"),
             dict(type="__ping", payload=1),
             dict(type="room.send", payload={"room": "lobby", "text": "hi"}, rpcId="r1"),
             dict(type="news", payload=1)]
    f["json_calls"] = cfg(APP_PLAIN) + up_json + b"".join(js(**c) for c in calls) + bye
    f["msgpack_calls"] = cfg(APP_PLAIN) + up_mp + b"".join(ms(**c) for c in calls) + bye
    f["no_protocol"] = cfg(APP_PLAIN, WRITE_RANDOM) + upgrade() + js(**calls[0]) + js(**calls[2]) + bye
    f["both_protocols"] = cfg(APP_PLAIN) + upgrade(protocols="zocket.json, zocket.msgpack") + ms(**calls[0])
    f["json_pieces_time"] = cfg(APP_PLAIN, WRITE_RANDOM, TIME_SMALL) + up_json + \
        b"".join(js(**c) for c in calls[:5]) + bye
    f["handshake_bytewise"] = cfg(APP_PLAIN, WRITE_BYTES) + up_json + js(**calls[0])
    f["handshake_timeout"] = cfg(APP_PLAIN, WRITE_SMALL, TIME_DEADLINES) + up_json
    f["idle_then_silent"] = cfg(APP_PLAIN, SILENT_END) + up_json + js(**calls[0])
    f["kept_answered"] = cfg(APP_PLAIN, WRITE_RANDOM, TIME_SMALL, ANSWER_KEPT) + up_json + \
        js(type="jobs.slow", payload={"n": 1}, rpcId="s1") + js(type="jobs.slow", rpcId=2) + \
        js(type="jobs.slow") + js(**calls[0]) + js(type="jobs.slow", rpcId="s3") + bye
    f["kept_timeout"] = slow(APP_PLAIN, WRITE_RANDOM, TIME_MEDIUM) + up_mp + \
        ms(type="jobs.slow", rpcId="s1") + ms(type="jobs.slow") + ms(**calls[1]) * 8
    f["kept_then_close"] = cfg(APP_PLAIN) + up_json + js(type="jobs.slow", rpcId="s1") + bye
    f["rooms"] = cfg(APP_PLAIN, WRITE_RANDOM) + up_json + \
        js(type="room.send", payload={"room": "a", "text": {"x": [1]}}, rpcId=1) + \
        js(type="room.send", payload={"room": "b"}, rpcId=2) + \
        js(type="room.send", payload={"room": "a\u0000b", "text": 1}) + \
        js(type="room.send", payload={"room": ""}, rpcId=3) + \
        js(type="room.leave", payload={"room": "a"}, rpcId=4) + \
        js(type="room.leave", payload={"room": "zzz"}, rpcId=5) + \
        js(type="news", payload=2, rpcId=6) + js(type="room.send", payload={"room": "a"}) + bye
    f["bye_route"] = cfg(APP_PLAIN) + up_json + js(**calls[0]) + js(type="bye", rpcId="b") + \
        js(**calls[1]) + sc(PING, b"after bye") + sc(CLOSE, close_payload(4000))
    f["drop_route"] = cfg(APP_PLAIN) + up_mp + ms(type="jobs.slow", rpcId=1) + ms(type="drop", rpcId=2) + \
        ms(**calls[0])
    f["fragmented"] = cfg(APP_PLAIN, WRITE_SMALL) + up_json + \
        sc(TEXT, b'{"type":"echo","pay', fin=False) + sc(PING, b"mid") + \
        sc(CONT, b'load":"\xc3', fin=False) + sc(CONT, b'\xa9","rpcId":"f1"}') + \
        sc(PING, b"") + sc(PONG, b"unasked") + sc(TEXT, b"{}", length_form=64) + bye
    f["pings_many_small_capacity"] = bytes([APP_TIGHT, server_seed(small=True)]) + up_json + \
        b"".join(sc(PING, b"p%03d" % i) for i in range(80)) + js(**calls[0]) * 4
    f["pieces_small_capacity"] = bytes([APP_PLAIN | WRITE_RANDOM | TIME_SMALL, server_seed(True, True)]) + \
        up_json + b"".join(js(type="echo", payload="x" * 300, rpcId=i) for i in range(6)) + \
        js(type="news", payload=[1] * 100) + bye
    f["message_timeout"] = slow(APP_PLAIN, WRITE_RANDOM, TIME_DEADLINES) + up_json + \
        js(type="echo", payload="m" * 1500, rpcId="m") + sc(TEXT, b'{"type":', fin=False) + \
        sc(CONT, b'"echo"}')
    # one call whose answer (larger than the capacity) comes while the peer
    # does not read: the call ends with the second write
    b, size1, size2 = stalled_seed(len(up_json))
    env = b'{"type":"echo","payload":"%s","rpcId":1}'
    call = sc(TEXT, env % (b"w" * (size1 + size2 - len(up_json) - len(env % b"") - 8)))
    f["write_timeout"] = bytes([APP_PLAIN | WRITE_RANDOM | TIME_DEADLINES, b]) + up_json + call
    f["close_no_code"] = cfg(APP_PLAIN) + up_json + js(**calls[0]) + sc(CLOSE)
    f["close_1_byte"] = cfg(APP_PLAIN) + up_json + sc(CLOSE, b"\x03")
    f["close_bad_code"] = cfg(APP_PLAIN) + up_json + sc(CLOSE, close_payload(1005))
    f["close_bad_reason"] = cfg(APP_PLAIN) + up_json + sc(CLOSE, close_payload(1000, b"\xff"))
    f["bad_unmasked"] = cfg(APP_PLAIN) + up_json + js(**calls[0]) + frame(TEXT, b'{"type":"echo"}')
    f["bad_utf8"] = cfg(APP_PLAIN) + up_json + sc(TEXT, b'{"type":"echo","payload":"\xc3\x28"}')
    f["bad_rsv"] = cfg(APP_PLAIN) + up_json + sc(TEXT, b"{}", rsv=4)
    f["bad_opcode"] = cfg(APP_PLAIN) + up_mp + sc(3, b"x")
    f["bad_continuation"] = cfg(APP_PLAIN) + up_json + sc(CONT, b"orphan")
    f["bad_ping_fragmented"] = cfg(APP_PLAIN) + up_json + sc(PING, b"p", fin=False)
    f["bad_envelopes"] = cfg(APP_PLAIN) + up_json + sc(TEXT, b"[1,2]") + sc(TEXT, b'{"type":5,"rpcId":9}') + \
        sc(TEXT, b'{"type":"echo",') + sc(TEXT, b'{"type":"echo","rpcId":1.5}') + \
        sc(TEXT, b'{"type":"echo","rpcId":"' + b"i" * 65 + b'"}') + \
        sc(TEXT, b'{"type":"echo","rpcId":"' + b"i" * 64 + b'"}') + \
        sc(TEXT, b'{"type":"' + b"a" * 200 + b'","rpcId":"l"}') + \
        sc(TEXT, b'{"type":"echo","rpcId":"d","payload":' + b"[" * 70 + b"]" * 70 + b"}") + \
        sc(BIN, mp(calls[0])) + bye
    f["bad_msgpack"] = cfg(APP_PLAIN) + up_mp + sc(BIN, b"\xc1") + sc(BIN, mp([1])) + \
        sc(BIN, b"\x81\x01\x01") + sc(TEXT, b'{"type":"echo","rpcId":1}') + ms(**calls[0])
    f["tight_too_big"] = cfg(APP_TIGHT) + up_json + js(type="echo", payload="y" * 400, rpcId="big")
    f["tight_fragments_too_big"] = cfg(APP_TIGHT) + up_json + \
        sc(TEXT, b'{"type":"echo","payload":"' + b"z" * 200, fin=False) + sc(CONT, b"z" * 200 + b'"}')
    f["tight_rate"] = cfg(APP_TIGHT) + up_json + b"".join(js(type="echo", payload=i, rpcId=i) for i in range(12))
    f["tight_rate_slow"] = slow(APP_TIGHT, WRITE_RANDOM, TIME_MEDIUM) + up_mp + \
        b"".join(ms(type="echo", payload=i, rpcId=i) for i in range(12))
    f["tight_rooms_kept"] = cfg(APP_TIGHT, ANSWER_KEPT) + up_json + \
        b"".join(js(type="room.send", payload={"room": "r%d" % i}, rpcId=i) for i in range(3)) + \
        b"".join(js(type="jobs.slow", rpcId="k%d" % i) for i in range(3))
    f["tight_news_close_slow"] = cfg(APP_TIGHT) + up_json + \
        js(type="echo", payload="q" * 200, rpcId=1) + js(type="news", payload=2)
    f["auth_ok"] = cfg(APP_AUTH) + up_json + js(type="__auth", payload="ok", rpcId="a") + js(**calls[0]) + bye
    f["auth_fail"] = cfg(APP_AUTH) + up_mp + ms(type="__auth", payload="no", rpcId="a") + ms(**calls[0])
    f["auth_missing"] = cfg(APP_AUTH) + up_json + js(**calls[0]) + js(**calls[5]) + \
        js(type="__ping") + js(type="__auth", payload="ok")
    f["auth_timeout"] = cfg(APP_AUTH, SILENT_END) + up_json + js(type="__ping")
    f["auth_late"] = slow(APP_AUTH, WRITE_RANDOM, TIME_DEADLINES) + up_json + js(type="echo", payload=1) + \
        js(type="__auth", payload="ok", rpcId=1) + js(**calls[0])
    f["strict_ok"] = cfg(APP_STRICT) + upgrade("/ws", "zocket.msgpack", "https://ok.example") + \
        ms(type="__auth", payload="ok", rpcId="a") + ms(**calls[0]) + bye
    f["strict_json_refused"] = cfg(APP_STRICT) + upgrade("/ws", "zocket.json")
    f["strict_wrong_path"] = cfg(APP_STRICT) + upgrade("/", "zocket.msgpack")
    f["strict_wrong_origin"] = cfg(APP_STRICT) + upgrade("/ws", "zocket.msgpack", "https://evil.example")
    f["http_plain_get"] = cfg(APP_PLAIN) + head("GET /index.html HTTP/1.1", [("Host", "a")]) + b"ignored"
    f["http_malformed"] = cfg(APP_PLAIN) + b"GET / HTTP/1.1\nHost: a\n\n"
    f["http_version8"] = cfg(APP_PLAIN) + head("GET / HTTP/1.1", upgrade_headers(sec_websocket_version="8"))
    f["http_post"] = cfg(APP_PLAIN) + head("POST / HTTP/1.1", upgrade_headers())
    f["http_partial"] = cfg(APP_PLAIN, SILENT_END) + up_json[:40]
    f["http_too_big"] = cfg(APP_PLAIN) + head("GET / HTTP/1.1", [("X-%d" % i, "v") for i in range(70)])
    # regressions the fuzzer found (fixed in 932881f): a text frame starting
    # in the read that ends a split ping was timed from the ping's first
    # byte (closed 1008 early); a message still arriving when the auth
    # deadline closed the connection left the deadline timer re-arming
    # itself at an instant already past
    f["regress_slow_after_split_ping"] = bytes.fromhex(
        "34cd474554202f20485454502f312e310d0a486f73743a20610d0a5570677261"
        "64653a20776562736f636b65740d0a436f6e6e656374696f6e3a205570677261"
        "64650d0a5365632d576562536f636b65742d4b65793a206447686c49484e6862"
        "5842735a5342756232356a5a513d3d0d0a5365632d576562536f636b65742d56"
        "657273696f6e3a2031330d0a583a206161616161616161616161616161616161"
        "6161616161616161610d0a0d0a8980010203048185050607086d636b646a")
    f["regress_guard_spin_while_closing"] = bytes.fromhex(
        "3588474554202f20485454502f312e310d0a486f73743a20610d0a5570677261"
        "64653a20776562736f636b65740d0a436f6e6e656374696f6e3a205570677261"
        "64650d0a5365632d576562536f636b65742d4b65793a206447686c49484e6862"
        "5842735a5342756232356a5a513d3d0d0a5365632d576562536f636b65742d56"
        "657273696f6e3a2031330d0a583a2061616161616161616161610d0a0d0a81fe"
        "00e4050607087e24737175632532276364606a242b2a75677e646a67632a3f24"
        "7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e"
        "7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e"
        "7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e"
        "7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e"
        "7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e"
        "7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e7f707d7e"
        "7f707d7e7f707d7e2575")
    return f


def write(kind, files):
    d = os.path.join(ROOT, kind)
    os.makedirs(d, exist_ok=True)
    for name in sorted(files):
        with open(os.path.join(d, name), "wb") as fh:
            fh.write(files[name])


def main():
    write("request", REQUESTS)
    write("response", RESPONSES)
    write("frames", frames_corpus())
    write("json", json_corpus())
    write("msgpack", msgpack_corpus())
    write("app", app_corpus())
    write("client", client_corpus())
    write("resp", resp_corpus())
    write("nats", nats_corpus())
    write("broker", broker_corpus())
    write("server", server_corpus())
    return 0


if __name__ == "__main__":
    sys.exit(main())
