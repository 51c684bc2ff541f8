// Drives build/echo with Node ws 8 as the client.
//
//     node tests/interop/node_client.js ws://127.0.0.1:P \
//         [--sigterm-url ws://127.0.0.1:Q --sigterm-pid PID]
//
// Prints one "ok NAME" or "FAIL NAME: why" line per check and exits non-zero
// if any failed. With --sigterm-*, it also connects to that second echo,
// sends it SIGTERM and expects the server-initiated close 1001.
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, 'node', 'node_modules', 'ws'));

const SIZES = [0, 1, 125, 126, 65535, 65536, 16 << 20];
const STEP_TIMEOUT_MS = 30000;
let failures = 0;

function report(name, error) {
  if (error == null) {
    console.log(`ok ${name}`);
  } else {
    failures++;
    console.log(`FAIL ${name}: ${error}`);
  }
}

// n bytes of UTF-8 text mixing 1-, 2-, 3- and 4-byte characters.
function textOf(n) {
  return Buffer.from('a\u00e9\u20ac\u{1F600}'.repeat(Math.floor(n / 10)) + 'x'.repeat(n % 10));
}

// n pseudo-random bytes (xorshift32, seeded by n).
function binaryOf(n) {
  const b = Buffer.alloc(n);
  let x = (n * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

// A connection whose messages, pongs and close can be awaited in order.
function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      maxPayload: 64 << 20,
      perMessageDeflate: false,
      // ws's own defaults close with 1008 on long legal fragmented messages
      maxFragments: 0,
      maxBufferedChunks: 0,
      handshakeTimeout: 10000
    });
    const conn = { ws, messages: [], pongs: [], waiters: [], closed: null };
    const wake = () => {
      const w = conn.waiters;
      conn.waiters = [];
      w.forEach((f) => f());
    };
    // Without an error handler an error event kills the process.
    ws.on('error', (err) => { conn.error = err; reject(err); wake(); });
    ws.on('open', () => resolve(conn));
    ws.on('message', (data, isBinary) => { conn.messages.push({ data, isBinary }); wake(); });
    ws.on('pong', (data) => { conn.pongs.push(data); wake(); });
    ws.on('close', (code, reason) => { conn.closed = { code, reason: reason.toString() }; wake(); });
  });
}

// Resolves with what take(conn) returns once it is not undefined.
function until(conn, take) {
  return new Promise((resolve, reject) => {
    const look = () => {
      const v = take(conn);
      if (v !== undefined) resolve(v);
      else if (conn.closed && take !== closeOf) reject(new Error(`closed with ${conn.closed.code}`));
      else conn.waiters.push(look);
    };
    look();
  });
}
const nextMessage = (c) => c.messages.shift();
const closeOf = (c) => (c.closed ? c.closed : undefined);

function describe(got, want, wantBinary) {
  if (got.isBinary !== wantBinary) return `got ${got.isBinary ? 'binary' : 'text'} back`;
  if (got.data.length !== want.length) return `got ${got.data.length} bytes back, sent ${want.length}`;
  for (let i = 0; i < want.length; i++) if (got.data[i] !== want[i]) return `differs from offset ${i}`;
  return null;
}

async function check(name, fn) {
  let timer;
  try {
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
    });
    report(name, await Promise.race([fn(), timeout]));
  } catch (e) {
    report(name, e.message || String(e));
  } finally {
    clearTimeout(timer);
  }
}

// One connection, opened again when a check left it closed.
let current = null;
async function conn(url) {
  if (!current || current.closed || current.ws.readyState !== WebSocket.OPEN) current = await open(url);
  return current;
}

async function echo(url, data, binary) {
  const c = await conn(url);
  c.ws.send(data, { binary });
  return describe(await until(c, nextMessage), data, binary);
}

async function fragmented(url, parts, binary) {
  const c = await conn(url);
  parts.forEach((p, i) => c.ws.send(p, { binary, fin: i === parts.length - 1 }));
  return describe(await until(c, nextMessage), Buffer.concat(parts), binary);
}

async function ping(url, payloads) {
  const c = await conn(url);
  c.pongs = [];
  payloads.forEach((p) => c.ws.ping(p));
  await until(c, (x) => (x.pongs.length >= payloads.length ? true : undefined));
  for (let i = 0; i < payloads.length; i++) {
    if (!c.pongs[i].equals(payloads[i])) return `pong ${i} carries the wrong payload`;
  }
  return null;
}

async function clientClose(url, code, reason) {
  const c = await open(url);
  c.ws.send('before close');
  const got = await until(c, nextMessage);
  if (got.data.toString() !== 'before close') return 'echo before the close went wrong';
  c.ws.close(code, reason);
  const closed = await until(c, closeOf);
  return closed.code === code ? null : `server answered close ${closed.code} (${closed.reason}), want ${code}`;
}

async function serverClose(url, pid) {
  const c = await open(url);
  c.ws.send('hello');
  await until(c, nextMessage);
  process.kill(pid, 'SIGTERM');
  const closed = await until(c, closeOf);
  if (c.messages.length) return 'got a message instead of the close';
  return closed.code === 1001 ? null : `server closed with ${closed.code} (${closed.reason}), want 1001`;
}

async function main() {
  const argv = process.argv.slice(2);
  const url = argv[0];
  const opt = (name) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined; };
  const sigtermUrl = opt('--sigterm-url');
  const sigtermPid = Number(opt('--sigterm-pid'));

  for (const n of SIZES) {
    await check(`text ${n} bytes echoed`, () => echo(url, textOf(n), false));
    await check(`binary ${n} bytes echoed`, () => echo(url, binaryOf(n), true));
  }
  // Text fragments cut inside a UTF-8 character: legal, only the whole
  // message must be valid.
  const euro = Buffer.from('\u20ac');
  await check('fragmented text (5 frames, one empty, a character split across two) echoed whole',
    () => fragmented(url, [Buffer.from('frag'), euro.subarray(0, 1), Buffer.alloc(0),
      euro.subarray(1), textOf(70000)], false));
  await check('fragmented binary (5 frames) echoed whole',
    () => fragmented(url, [1, 125, 0, 65536, 3].map(binaryOf), true));
  await check('ping answered by a pong', () => ping(url, [Buffer.from('are you there')]));
  await check('ping with a 125-byte payload answered', () => ping(url, [binaryOf(125)]));
  await check('ten pings in a row all answered in order',
    () => ping(url, Array.from({ length: 10 }, (_, i) => Buffer.from(`ping ${i}`))));
  if (current) current.ws.close();
  await check('client close 1000 answered with 1000', () => clientClose(url, 1000, 'bye'));
  await check('client close 4001 answered with 4001', () => clientClose(url, 4001, 'application code'));
  if (sigtermUrl) {
    await check('server SIGTERM closes the client with 1001', () => serverClose(sigtermUrl, sigtermPid));
  }
  process.exit(failures ? 1 : 0);
}

main().catch((e) => {
  console.log(`FAIL node_client: ${e.stack || e}`);
  process.exit(1);
});
