// zocket.js - a small browser client for the Zocket protocol, in JSON or
// MessagePack (an ES module).
//
//   import { connect } from "./zocket.js";
//   const client = connect("ws://127.0.0.1:8080/ws?name=ada", {
//     onOpen() { ... }, onClose({ code, reason, reconnectIn }) { ... },
//     onState(state) { ... },   // "connecting" | "open" | "reconnecting" | "closed"
//   });
//   client.on("chat.message", (payload) => { ... });       // server events
//   client.emit("chat.typing", { room: "lobby" });          // an event: no answer
//   const result = await client.call("chat.join", { room: "lobby" }, { timeoutMs: 5000 });
//
// A call is {"type","payload","rpcId"}; its promise resolves with the
// __rpc_res payload, or rejects with a ZocketError {code, message, data}: the
// server's __rpc_err, TIMEOUT when no answer comes in time, DISCONNECTED when
// the connection is not open or drops before the answer.
//
// The codec: with codec "json" (the default) the envelope travels as JSON in
// text frames, with no subprotocol unless `protocols` offers one. With codec
// "msgpack" the same envelope travels as a MessagePack map in binary frames,
// encoded and decoded by msgpackEncode and msgpackDecode below; the client
// offers the subprotocols zocket.msgpack, then those of `protocols`, then
// zocket.json, and speaks only if the server selected zocket.msgpack. A
// server that selects another one (a Zocket server that speaks JSON only
// selects zocket.json) is not spoken to in the wrong codec: the connection is
// closed with 4002, and onClose gets that code, the reason and reconnectIn
// -1; the client stops (state "closed"), since trying again would meet the
// same server. zocket.json is offered for that answer: a browser fails the
// handshake of a server that selects none of the offered subprotocols, and
// reports it as 1006, like a network error, which is retried. A JSON client
// whose server selects zocket.msgpack (offered in `protocols`) is closed the
// same way. Handlers see the same values in both codecs, except that a
// MessagePack bin arrives as a Uint8Array, a 64-bit integer past 2^53 as a
// BigInt, and that JSON.stringify's conversions (NaN and infinities to null)
// do not happen: a Zocket server refuses a non-finite float in MessagePack
// (__error BAD_REQUEST).
//
// The client reconnects after the connection drops, waiting a random time
// between 0 and min(maxDelayMs, baseDelayMs * 2^attempt) ("full jitter"), the
// attempt count going back to 0 after a successful open. It stops for good
// after close() and after close codes 1000 (a normal close: the server meant
// it), 1008 (policy) and 4500-4999 (the
// server says: do not come back). A browser reports an HTTP refusal of the
// upgrade (401, 404) as 1006, like a network error, so that one is retried.
//
// Heartbeat: browsers cannot send WebSocket ping frames, so every
// pingIntervalMs the client sends {"type":"__ping","payload":N}, which a
// Zocket server answers {"type":"__pong","payload":N} (__pong is not given to
// listeners). When nothing at all (a __pong or any other message) has come
// pongTimeoutMs after a ping, the connection is taken for dead: it is closed
// with 4000 "heartbeat timeout" and onClose is called at once (not after the
// browser's closing handshake, which waits for a peer that may never answer)
// and the client reconnects as after any drop. An attempt that is not open
// after connectTimeoutMs is abandoned the same way (code 4001) and retried: a
// stopped server's kernel may accept the TCP connection and never answer.
//
// Options of connect() (defaults in DEFAULTS below): codec ("json" or
// "msgpack"), protocols, baseDelayMs, maxDelayMs, timeoutMs, reconnect,
// pingIntervalMs (0: no heartbeat), pongTimeoutMs, connectTimeoutMs (0: the
// browser's own), onOpen, onClose, onState; an option given as undefined
// takes its default. client.state is the last state given to onState
// (called on changes only): "connecting" (the first attempt), "open",
// "reconnecting" (waiting for or making another attempt after a close or a
// failed attempt), "closed" (for good).
//
// Close codes the client itself uses: 4000 heartbeat timeout, 4001 connect
// timeout (both retried), 4002 the server did not select the codec's
// subprotocol (final).

export class ZocketError extends Error {
  constructor(code, message, data) {
    super(message || code);
    this.name = "ZocketError";
    this.code = code;
    this.data = data;
  }
}

const MSGPACK_PROTOCOL = "zocket.msgpack";
const JSON_PROTOCOL = "zocket.json";

const DEFAULTS = {
  codec: "json", // "json": text frames; "msgpack": binary frames, subprotocol zocket.msgpack
  protocols: undefined, // more subprotocols to offer (JSON is the default without)
  baseDelayMs: 250,
  maxDelayMs: 10000,
  timeoutMs: 10000, // a call's default timeout
  reconnect: true,
  pingIntervalMs: 15000, // a __ping this often (0: no heartbeat)
  pongTimeoutMs: 5000, // no message this long after a __ping: the connection is dead
  connectTimeoutMs: 10000, // an attempt not open by then is abandoned
  onOpen: null, // () => {}
  onClose: null, // ({code, reason, reconnectIn}) => {}; reconnectIn is -1 when it stops
  onState: null, // (state) => {}; see client.state
};

export function connect(url, options) {
  return new ZocketClient(url, options);
}

export class ZocketClient {
  constructor(url, options) {
    this.url = url;
    this.options = { ...DEFAULTS };
    for (const [key, value] of Object.entries(options || {}))
      if (value !== undefined) this.options[key] = value; // undefined: the default
    if (this.options.codec !== "json" && this.options.codec !== "msgpack")
      throw new TypeError(`zocket: codec "json" or "msgpack", not ${String(this.options.codec)}`);
    this.ws = null;
    this.handlers = new Map(); // type -> Set of handlers
    this.pending = new Map(); // rpcId -> {resolve, reject, timer}
    this.nextId = 1;
    this.attempt = 0;
    this.retryTimer = null;
    this.stopped = false;
    this.state = "connecting";
    this.pingTimer = null; // the heartbeat's interval, while open
    this.pongTimer = null; // the deadline of an unanswered __ping, or of an attempt
    this.pingCount = 0;
    this.open();
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  // Calls handler(payload, message) for each server message of type. For
  // "__error" (an event the server could not handle) the first argument is
  // the error, {code, message, ref}. Returns a function that removes it.
  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(handler);
    return () => this.off(type, handler);
  }

  off(type, handler) {
    const set = this.handlers.get(type);
    if (set) set.delete(handler);
  }

  // Sends an event; returns false when the connection is not open (nothing
  // is queued).
  emit(type, payload) {
    return this.send({ type, payload });
  }

  call(type, payload, { timeoutMs } = {}) {
    const ms = timeoutMs ?? this.options.timeoutMs;
    return new Promise((resolve, reject) => {
      if (!this.connected) {
        reject(new ZocketError("DISCONNECTED", "not connected"));
        return;
      }
      const rpcId = "c" + this.nextId++;
      const timer = setTimeout(() => {
        this.pending.delete(rpcId);
        reject(new ZocketError("TIMEOUT", `no answer to ${type} in ${ms} ms`));
      }, ms);
      this.pending.set(rpcId, { resolve, reject, timer });
      try {
        this.send({ type, payload, rpcId });
      } catch (err) { // a payload the codec cannot encode (a cycle, a function)
        clearTimeout(timer);
        this.pending.delete(rpcId);
        reject(err);
      }
    });
  }

  // Closes for good: no reconnect; pending calls fail with DISCONNECTED.
  close(code = 1000, reason = "") {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.stopTimers();
    if (this.ws) this.ws.close(code, reason);
    this.failPending("closed by the client");
    this.setState("closed");
  }

  // ---- inside ----

  open() {
    this.retryTimer = null;
    const ws = new WebSocket(this.url, this.offeredProtocols());
    if (this.options.codec === "msgpack") ws.binaryType = "arraybuffer";
    this.ws = ws;
    const { connectTimeoutMs, pingIntervalMs } = this.options;
    if (connectTimeoutMs > 0)
      this.pongTimer = setTimeout(() => this.drop(4001, "connect timeout"), connectTimeoutMs);
    ws.onopen = () => {
      const wrong = this.wrongProtocol(ws.protocol);
      if (wrong) {
        this.drop(4002, wrong, true);
        return;
      }
      this.stopTimers();
      this.attempt = 0;
      if (pingIntervalMs > 0) this.pingTimer = setInterval(() => this.ping(), pingIntervalMs);
      this.setState("open");
      if (this.options.onOpen) this.options.onOpen();
    };
    ws.onmessage = (event) => this.receive(event.data);
    ws.onerror = () => {}; // a close event follows (Node's ws package throws without a handler)
    ws.onclose = (event) => {
      if (this.ws === ws) this.closed(event.code, event.reason);
    };
  }

  offeredProtocols() {
    const { codec, protocols } = this.options;
    if (codec !== "msgpack") return protocols;
    const more = protocols === undefined ? [] : [].concat(protocols);
    return [MSGPACK_PROTOCOL, ...more.filter((p) => p !== MSGPACK_PROTOCOL && p !== JSON_PROTOCOL),
            JSON_PROTOCOL];
  }

  // Why the subprotocol the server selected does not fit the codec, or "".
  wrongProtocol(selected) {
    if (this.options.codec === "msgpack" && selected !== MSGPACK_PROTOCOL)
      return `the server did not select ${MSGPACK_PROTOCOL} (it selected ${
        selected ? JSON.stringify(selected) : "none"}): it does not speak MessagePack`;
    if (this.options.codec === "json" && selected === MSGPACK_PROTOCOL)
      return `the server selected ${MSGPACK_PROTOCOL}, and this client's codec is "json"`;
    return "";
  }

  ping() {
    if (!this.send({ type: "__ping", payload: this.pingCount++ })) return;
    if (this.pongTimer === null && this.options.pongTimeoutMs > 0)
      this.pongTimer = setTimeout(() => this.drop(4000, "heartbeat timeout"),
                                  this.options.pongTimeoutMs);
  }

  // Gives up on this.ws without waiting for its close event; with final,
  // for good.
  drop(code, reason, final = false) {
    const ws = this.ws;
    this.pongTimer = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close(code, reason);
    } catch {
      ws.close(code); // a reason longer than a close frame's 123 bytes
    }
    this.closed(code, reason, final);
  }

  closed(code, reason, final = false) {
    this.ws = null;
    this.stopTimers();
    this.failPending(`connection closed (${code})`);
    const reconnectIn = final ? -1 : this.scheduleReconnect(code);
    this.setState(reconnectIn >= 0 ? "reconnecting" : "closed");
    if (this.options.onClose) this.options.onClose({ code, reason, reconnectIn });
  }

  stopTimers() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.pingTimer = this.pongTimer = null;
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    if (this.options.onState) this.options.onState(state);
  }

  // Returns the delay before the next attempt, or -1 when there is none.
  scheduleReconnect(code) {
    const final = code === 1000 || code === 1008 || (code >= 4500 && code <= 4999);
    if (this.stopped || final || !this.options.reconnect) return -1;
    const ceiling = Math.min(this.options.maxDelayMs,
                             this.options.baseDelayMs * 2 ** Math.min(this.attempt, 30));
    const delay = Math.floor(Math.random() * ceiling);
    this.attempt++;
    this.retryTimer = setTimeout(() => this.open(), delay);
    return delay;
  }

  // Throws what the codec throws for a message it cannot encode.
  send(message) {
    if (!this.connected) return false;
    const mp = this.options.codec === "msgpack";
    this.ws.send(mp ? msgpackEncode(message) : JSON.stringify(message));
    return true;
  }

  receive(data) {
    if (this.pingTimer !== null) { // anything at all shows the connection is alive
      clearTimeout(this.pongTimer);
      this.pongTimer = null;
    }
    let msg;
    try {
      if (this.options.codec === "msgpack") {
        if (typeof data === "string") return; // a text frame: not this codec's
        msg = msgpackDecode(data);
      } else {
        msg = JSON.parse(data);
      }
    } catch {
      return; // not JSON (a binary frame), not MessagePack: not ours
    }
    if (msg === null || typeof msg !== "object" || typeof msg.type !== "string") return;
    if (msg.type === "__pong") return;
    if (msg.type === "__rpc_res" || msg.type === "__rpc_err") {
      const call = this.pending.get(String(msg.rpcId));
      if (!call) return; // timed out already
      this.pending.delete(String(msg.rpcId));
      clearTimeout(call.timer);
      if (msg.type === "__rpc_res") {
        call.resolve(msg.payload);
      } else {
        const e = msg.error || {};
        call.reject(new ZocketError(e.code || "INTERNAL", e.message, e.data));
      }
      return;
    }
    const set = this.handlers.get(msg.type);
    if (!set) return;
    const arg = msg.type === "__error" ? msg.error || {} : msg.payload;
    for (const handler of [...set]) {
      try {
        handler(arg, msg);
      } catch (err) {
        console.error(`zocket: handler for ${msg.type} threw`, err);
      }
    }
  }

  failPending(why) {
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const call of calls) {
      clearTimeout(call.timer);
      call.reject(new ZocketError("DISCONNECTED", why));
    }
  }
}

// ---- MessagePack (https://github.com/msgpack/msgpack/blob/master/spec.md) ----
//
// msgpackEncode(value) returns a Uint8Array; msgpackDecode(bytes) takes a
// Uint8Array, another ArrayBuffer view or an ArrayBuffer holding exactly one
// value. Both are written for this module, after the spec.
//
// Encoding: null and undefined are nil; booleans bool; a number that is a
// safe integer (|n| <= 2^53 - 1; -0 counts as 0, as in JSON) an integer in
// its smallest form (fixint, then 8, 16, 32, 64 bits); any other number
// (fractions, larger magnitudes, NaN, infinities) float64, always (float32
// where exact would save 4 bytes but give one JS type two wire forms); a
// BigInt an integer in its smallest form (RangeError outside int64 and
// uint64); a string str (UTF-8; a lone
// surrogate becomes U+FFFD, as TextEncoder does); an ArrayBuffer or any of
// its views (Uint8Array, DataView, ...) bin of its bytes; an array array;
// an object with a toJSON method what that returns (a Date its ISO string,
// as in JSON); any other object a map of its own enumerable string keys. As
// JSON.stringify does, a property whose value is undefined, a function or a
// symbol is left out, and such an element of an array is nil. A function or
// a symbol as the value itself is a TypeError, and so is nesting deeper than
// MSGPACK_MAX_DEPTH (a cyclic structure comes to that).
//
// Decoding: nil is null; integers are Numbers, except a uint64 or int64
// outside the safe range, which is a BigInt (never a rounded Number: no
// digit is lost); float32 and float64 are Numbers; str is a string (invalid
// UTF-8 is an error; a leading U+FEFF is kept); bin is a Uint8Array of its
// own; array is an array; map is a plain object (duplicate keys: the last
// wins; "__proto__" is an own property, as with JSON.parse). Errors, all an
// Error whose message starts "msgpack:" and names the byte offset: a map key
// that is not a str, ext types (fixext 1-16, ext 8/16/32), the unused 0xc1,
// input that ends early (a length or count larger than what is left is
// refused before anything is allocated for it), nesting deeper than
// MSGPACK_MAX_DEPTH, and bytes after the value.

export const MSGPACK_MAX_DEPTH = 512;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const TWO_32 = 4294967296;

class MsgpackWriter {
  constructor() {
    this.bytes = new Uint8Array(128);
    this.view = new DataView(this.bytes.buffer);
    this.length = 0;
  }

  // Makes room for n more bytes; returns where they go.
  reserve(n) {
    const at = this.length;
    if (at + n > this.bytes.length) {
      let size = this.bytes.length * 2;
      while (size < at + n) size *= 2;
      const bytes = new Uint8Array(size);
      bytes.set(this.bytes.subarray(0, at));
      this.bytes = bytes;
      this.view = new DataView(bytes.buffer);
    }
    this.length = at + n;
    return at;
  }

  // (reserve first, then this.bytes: reserve may replace it)
  byte(b) {
    const at = this.reserve(1);
    this.bytes[at] = b;
  }

  // A format byte and an unsigned length or count of 1, 2 or 4 bytes.
  head(format, n, size) {
    const at = this.reserve(1 + size);
    this.bytes[at] = format;
    if (size === 1) this.bytes[at + 1] = n;
    else if (size === 2) this.view.setUint16(at + 1, n);
    else this.view.setUint32(at + 1, n);
  }

  // fix (the fix format's base) holds lengths below fixLimit; then the 8-bit
  // (when format8 is not 0), 16-bit and 32-bit forms.
  lengthHead(n, fix, fixLimit, format8, format16, format32, what) {
    if (n < fixLimit) this.byte(fix | n);
    else if (format8 && n < 0x100) this.head(format8, n, 1);
    else if (n < 0x10000) this.head(format16, n, 2);
    else if (n < TWO_32) this.head(format32, n, 4);
    else throw new RangeError(`msgpack: ${what} of ${n} is more than 2^32 - 1`);
  }

  raw(bytes) {
    const at = this.reserve(bytes.length);
    this.bytes.set(bytes, at);
  }

  integer(n) { // a safe integer
    if (n >= 0) {
      if (n < 0x80) this.byte(n);
      else if (n < 0x100) this.head(0xcc, n, 1);
      else if (n < 0x10000) this.head(0xcd, n, 2);
      else if (n < TWO_32) this.head(0xce, n, 4);
      else this.int64(0xcf, Math.floor(n / TWO_32), n >>> 0);
    } else {
      if (n >= -32) this.byte(n & 0xff);
      else if (n >= -0x80) this.head(0xd0, n & 0xff, 1);
      else if (n >= -0x8000) this.head(0xd1, n & 0xffff, 2);
      else if (n >= -0x80000000) this.head(0xd2, n >>> 0, 4);
      else this.int64(0xd3, Math.floor(n / TWO_32), n >>> 0);
    }
  }

  // The two 32-bit halves of a 64-bit integer (high: signed for int64).
  int64(format, high, low) {
    const at = this.reserve(9);
    this.bytes[at] = format;
    this.view.setUint32(at + 1, high >>> 0);
    this.view.setUint32(at + 5, low);
  }

  number(n) {
    if (Number.isSafeInteger(n)) {
      this.integer(n);
    } else {
      const at = this.reserve(9);
      this.bytes[at] = 0xcb;
      this.view.setFloat64(at + 1, n);
    }
  }

  bigint(n) {
    if (n >= -BigInt(Number.MAX_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER)) {
      this.integer(Number(n));
    } else if (n > 0n && n < 1n << 64n) {
      const at = this.reserve(9);
      this.bytes[at] = 0xcf;
      this.view.setBigUint64(at + 1, n);
    } else if (n < 0n && n >= -(1n << 63n)) {
      const at = this.reserve(9);
      this.bytes[at] = 0xd3;
      this.view.setBigInt64(at + 1, n);
    } else {
      throw new RangeError(`msgpack: ${n} is outside int64 and uint64`);
    }
  }

  value(v, depth) {
    switch (typeof v) {
      case "undefined":
        this.byte(0xc0);
        return;
      case "boolean":
        this.byte(v ? 0xc3 : 0xc2);
        return;
      case "number":
        this.number(v);
        return;
      case "bigint":
        this.bigint(v);
        return;
      case "string": {
        const bytes = utf8Encoder.encode(v);
        this.lengthHead(bytes.length, 0xa0, 32, 0xd9, 0xda, 0xdb, "a string");
        this.raw(bytes);
        return;
      }
      case "object":
        break;
      default:
        throw new TypeError(`msgpack: a ${typeof v} cannot be encoded`);
    }
    if (v === null) {
      this.byte(0xc0);
      return;
    }
    if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) {
      const bytes = v instanceof ArrayBuffer ? new Uint8Array(v)
        : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      this.lengthHead(bytes.length, 0, 0, 0xc4, 0xc5, 0xc6, "a bin");
      this.raw(bytes);
      return;
    }
    if (typeof v.toJSON === "function") {
      this.value(v.toJSON(), depth);
      return;
    }
    if (depth >= MSGPACK_MAX_DEPTH)
      throw new TypeError(`msgpack: nested deeper than ${MSGPACK_MAX_DEPTH} levels (a cycle?)`);
    if (Array.isArray(v)) {
      this.lengthHead(v.length, 0x90, 16, 0, 0xdc, 0xdd, "an array");
      for (const item of v) this.value(skipped(item) ? null : item, depth + 1);
      return;
    }
    const keys = Object.keys(v).filter((key) => !skipped(v[key]));
    this.lengthHead(keys.length, 0x80, 16, 0, 0xde, 0xdf, "a map");
    for (const key of keys) {
      this.value(key, depth + 1);
      this.value(v[key], depth + 1);
    }
  }
}

// A value JSON.stringify leaves out of an object.
function skipped(v) {
  return v === undefined || typeof v === "function" || typeof v === "symbol";
}

export function msgpackEncode(value) {
  const writer = new MsgpackWriter();
  writer.value(value, 0);
  return writer.bytes.subarray(0, writer.length);
}

class MsgpackReader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.at = 0;
  }

  fail(why, at = this.at) {
    throw new Error(`msgpack: ${why} at byte ${at}`);
  }

  // Where n more bytes start, past them.
  take(n, start) {
    const at = this.at;
    if (n > this.bytes.length - at) this.fail("unexpected end of input", start);
    this.at = at + n;
    return at;
  }

  // An unsigned length or count of 1, 2 or 4 bytes.
  count(size, start) {
    const at = this.take(size, start);
    if (size === 1) return this.bytes[at];
    return size === 2 ? this.view.getUint16(at) : this.view.getUint32(at);
  }

  string(n, start) {
    const at = this.take(n, start);
    try {
      return utf8Decoder.decode(this.bytes.subarray(at, at + n));
    } catch {
      return this.fail("invalid UTF-8 in a string", start);
    }
  }

  // A container of n items at depth.
  deeper(n, start, depth) {
    if (n && depth >= MSGPACK_MAX_DEPTH)
      this.fail(`nested deeper than ${MSGPACK_MAX_DEPTH} levels`, start);
  }

  array(n, start, depth) {
    // each element takes a byte at least
    if (n > this.bytes.length - this.at) this.fail("unexpected end of input", start);
    this.deeper(n, start, depth);
    const array = new Array(n);
    for (let i = 0; i < n; i++) array[i] = this.value(depth + 1);
    return array;
  }

  map(n, start, depth) {
    if (n * 2 > this.bytes.length - this.at) this.fail("unexpected end of input", start);
    this.deeper(n, start, depth);
    const object = {};
    for (let i = 0; i < n; i++) {
      const keyAt = this.at;
      if (keyAt >= this.bytes.length) this.fail("unexpected end of input", keyAt);
      const c = this.bytes[keyAt];
      const isStr = (c >= 0xa0 && c <= 0xbf) || (c >= 0xd9 && c <= 0xdb);
      if (!isStr) this.fail("a map key that is not a str", keyAt);
      const key = this.value(depth + 1);
      const value = this.value(depth + 1);
      if (key === "__proto__") { // an own property, not the object's prototype
        const property = { value, writable: true, enumerable: true, configurable: true };
        Object.defineProperty(object, key, property);
      } else {
        object[key] = value;
      }
    }
    return object;
  }

  value(depth) {
    const start = this.at;
    const c = this.bytes[this.take(1, start)];
    if (c <= 0x7f) return c;
    if (c >= 0xe0) return c - 0x100;
    if (c <= 0x8f) return this.map(c & 0x0f, start, depth);
    if (c <= 0x9f) return this.array(c & 0x0f, start, depth);
    if (c <= 0xbf) return this.string(c & 0x1f, start);
    switch (c) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: case 0xc5: case 0xc6: {
        const n = this.count(1 << (c - 0xc4), start);
        const at = this.take(n, start);
        return this.bytes.slice(at, at + n);
      }
      case 0xca: return this.view.getFloat32(this.take(4, start));
      case 0xcb: return this.view.getFloat64(this.take(8, start));
      case 0xcc: case 0xcd: case 0xce: return this.count(1 << (c - 0xcc), start);
      case 0xcf: {
        const at = this.take(8, start);
        const high = this.view.getUint32(at);
        if (high < 0x200000) return high * TWO_32 + this.view.getUint32(at + 4); // below 2^53
        return this.view.getBigUint64(at);
      }
      case 0xd0: return this.view.getInt8(this.take(1, start));
      case 0xd1: return this.view.getInt16(this.take(2, start));
      case 0xd2: return this.view.getInt32(this.take(4, start));
      case 0xd3: {
        const at = this.take(8, start);
        const high = this.view.getInt32(at);
        if (high >= -0x200000 && high < 0x200000) {
          const n = high * TWO_32 + this.view.getUint32(at + 4);
          if (Number.isSafeInteger(n)) return n; // not -2^53
        }
        return this.view.getBigInt64(at);
      }
      case 0xd9: case 0xda: case 0xdb:
        return this.string(this.count(1 << (c - 0xd9), start), start);
      case 0xdc: case 0xdd: return this.array(this.count(c === 0xdc ? 2 : 4, start), start, depth);
      case 0xde: case 0xdf: return this.map(this.count(c === 0xde ? 2 : 4, start), start, depth);
      case 0xc1: return this.fail("0xc1 is never used", start);
      default: // 0xc7-0xc9 ext 8/16/32, 0xd4-0xd8 fixext 1-16
        return this.fail(`ext types are not supported (format 0x${c.toString(16)})`, start);
    }
  }
}

export function msgpackDecode(data) {
  let bytes;
  if (data instanceof Uint8Array) bytes = data;
  else if (ArrayBuffer.isView(data))
    bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  else if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
  else throw new TypeError("msgpack: decode takes an ArrayBuffer or one of its views");
  const reader = new MsgpackReader(bytes);
  const value = reader.value(0);
  if (reader.at !== bytes.length) reader.fail("data after the value");
  return value;
}
