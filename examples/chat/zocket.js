// zocket.js - a small browser client for the Zocket JSON protocol (an ES module).
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
// Options of connect() (defaults in DEFAULTS below): protocols, baseDelayMs,
// maxDelayMs, timeoutMs, reconnect, pingIntervalMs (0: no heartbeat),
// pongTimeoutMs, connectTimeoutMs (0: the browser's own), onOpen, onClose,
// onState; an option given as undefined takes its default. client.state is
// the last state given to onState (called on changes only): "connecting"
// (the first attempt), "open", "reconnecting" (waiting for or making another
// attempt after a close or a failed attempt), "closed" (for good).

export class ZocketError extends Error {
  constructor(code, message, data) {
    super(message || code);
    this.name = "ZocketError";
    this.code = code;
    this.data = data;
  }
}

const DEFAULTS = {
  protocols: undefined, // subprotocols to offer (JSON is the default without)
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
      this.send({ type, payload, rpcId });
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
    const ws = new WebSocket(this.url, this.options.protocols);
    this.ws = ws;
    const { connectTimeoutMs, pingIntervalMs } = this.options;
    if (connectTimeoutMs > 0)
      this.pongTimer = setTimeout(() => this.drop(4001, "connect timeout"), connectTimeoutMs);
    ws.onopen = () => {
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

  ping() {
    if (!this.send({ type: "__ping", payload: this.pingCount++ })) return;
    if (this.pongTimer === null && this.options.pongTimeoutMs > 0)
      this.pongTimer = setTimeout(() => this.drop(4000, "heartbeat timeout"),
                                  this.options.pongTimeoutMs);
  }

  // Gives up on this.ws without waiting for its close event.
  drop(code, reason) {
    const ws = this.ws;
    this.pongTimer = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.close(code, reason);
    this.closed(code, reason);
  }

  closed(code, reason) {
    this.ws = null;
    this.stopTimers();
    this.failPending(`connection closed (${code})`);
    const reconnectIn = this.scheduleReconnect(code);
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

  send(message) {
    if (!this.connected) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  receive(text) {
    if (this.pingTimer !== null) { // anything at all shows the connection is alive
      clearTimeout(this.pongTimer);
      this.pongTimer = null;
    }
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return; // not JSON (a binary frame, a MessagePack peer): not ours
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
