// The load of build/client_load (bench/client_load.c) from an independent
// client: Node's `ws` 8 (with bufferutil when installed), or Bun's built-in
// WebSocket client when run under Bun. For bench/run_client.sh.
//
//   node bench/peers/ws_client_rpc.js [--url ws://127.0.0.1:PORT/] [--inflight K]
//                                     [--seconds S] [--warmup S] [--server-pid PID]
//   bun  bench/peers/ws_client_rpc.js ...     (Bun's WebSocket, not the ws package)
//
// One WebSocket, K calls in flight (1): each answer starts the next call, a
// new payload each time. A call is the Zocket envelope
//   {"type":"bench.echo","payload":{"n":<counter>},"rpcId":"<id>"}
// (JSON.stringify); an answer is JSON.parse'd and matched by its rpcId in a
// Map of the calls in flight, then checked: __rpc_res, and the payload's n
// the one sent. After a warm-up (1 s), the calls answered in S seconds (5)
// and the CPU this process used meanwhile (process.cpuUsage(): user +
// system, every thread) are reported, as client_load does:
//   RESULT mode=client inflight=K calls=N seconds=T calls_per_s=R
//          cpu_us_per_call=C user_us_per_call=U sys_us_per_call=Y cpu_pct=P
//          server_ticks=S busy_ticks=B errors=E
// With --server-pid, server_ticks is the server's utime+stime
// (/proc/PID/stat) and busy_ticks the machine's non-idle time (/proc/stat),
// in clock ticks, over the same window; -1 without it.
// Connects to 127.0.0.1 only (whatever --url says is used as given).
'use strict';

const isBun = typeof Bun !== 'undefined';
let url = 'ws://127.0.0.1:9002/';
let inflight = 1;
let seconds = 5;
let warmup = 1;
let serverPid = 0;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const v = argv[i + 1];
  if (a === '--url' && v !== undefined) { url = v; i++; }
  else if (a === '--inflight' && v !== undefined) { inflight = Number(v); i++; }
  else if (a === '--seconds' && v !== undefined) { seconds = Number(v); i++; }
  else if (a === '--warmup' && v !== undefined) { warmup = Number(v); i++; }
  else if (a === '--server-pid' && v !== undefined) { serverPid = Number(v); i++; }
  else {
    console.error('usage: ws_client_rpc.js [--url ws://127.0.0.1:PORT/] [--inflight K] [--seconds S] [--warmup S] [--server-pid PID]');
    process.exit(2);
  }
}
if (!(inflight >= 1) || !(seconds > 0) || !(warmup >= 0)) {
  console.error('ws_client_rpc: bad --inflight, --seconds or --warmup');
  process.exit(2);
}

const fs = require('fs');
function procTicks(pid) { // utime + stime in clock ticks, -1 when unreadable
  try {
    const s = fs.readFileSync('/proc/' + pid + '/stat', 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch (e) { return -1; }
}
function busyTicks() { // user nice system irq softirq steal of /proc/stat's cpu line
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
  } catch (e) { return -1; }
}

let WebSocketImpl;
let what;
if (isBun) {
  WebSocketImpl = globalThis.WebSocket;
  what = `Bun ${Bun.version} WebSocket`;
} else {
  const path = require('path');
  const dir = path.join(__dirname, 'node_modules');
  WebSocketImpl = require(path.join(dir, 'ws'));
  let bu = 'no';
  try { require(path.join(dir, 'bufferutil')); bu = 'yes'; } catch (e) { bu = 'no (' + e.code + ')'; }
  what = `node ${process.version}, ws ${require(path.join(dir, 'ws', 'package.json')).version}, bufferutil ${bu}`;
}

let ws;
if (isBun) ws = new WebSocketImpl(url);
else ws = new WebSocketImpl(url, { perMessageDeflate: false, maxPayload: 64 << 20 });

const pending = new Map(); // rpcId -> n sent
let nextId = 0;
let nextN = 0;
let answered = 0;
let errors = 0;
let firstError = '';
let running = true;

function fail(why) {
  errors++;
  if (!firstError) firstError = why;
}

function call() {
  const id = String(++nextId);
  const n = nextN++;
  pending.set(id, n);
  ws.send(JSON.stringify({ type: 'bench.echo', payload: { n }, rpcId: id }));
}

function onMessage(data) {
  if (!running) return;
  let msg;
  try {
    msg = JSON.parse(typeof data === 'string' ? data : data.toString());
  } catch (e) {
    fail('not JSON');
    return;
  }
  const n = pending.get(msg.rpcId);
  if (n === undefined) { fail('unknown rpcId ' + msg.rpcId); return; }
  pending.delete(msg.rpcId);
  if (msg.type !== '__rpc_res') fail('answer of type ' + msg.type);
  else if (!msg.payload || msg.payload.n !== n) fail('wrong answer');
  else answered++;
  call();
}

function report(calls, secs, cpu, serverTicks, busy) {
  const userUs = cpu.user, sysUs = cpu.system; // microseconds
  const per = (x) => (calls ? x / calls : 0).toFixed(3);
  console.log(`${what} to ${url}, ${inflight} call${inflight === 1 ? '' : 's'} in flight: ` +
    `${(calls / secs).toFixed(0)} calls/s, client CPU ${per(userUs + sysUs)} us/call ` +
    `(user ${per(userUs)}, sys ${per(sysUs)}; ${(100 * (userUs + sysUs) / 1e6 / secs).toFixed(0)}% of a core), ` +
    `${errors} errors${errors ? ': ' + firstError : ''}`);
  console.log(`RESULT mode=client inflight=${inflight} calls=${calls} seconds=${secs.toFixed(3)} ` +
    `calls_per_s=${(calls / secs).toFixed(0)} cpu_us_per_call=${per(userUs + sysUs)} ` +
    `user_us_per_call=${per(userUs)} sys_us_per_call=${per(sysUs)} ` +
    `cpu_pct=${(100 * (userUs + sysUs) / 1e6 / secs).toFixed(0)} ` +
    `server_ticks=${serverTicks} busy_ticks=${busy} errors=${errors}`);
}

const connectTimer = setTimeout(() => {
  console.error('ws_client_rpc: cannot connect to ' + url + ' in 10 s');
  process.exit(1);
}, 10000);

function onOpen() {
  clearTimeout(connectTimer);
  for (let i = 0; i < inflight; i++) call();
  setTimeout(() => {
    const sv0 = serverPid ? procTicks(serverPid) : -1;
    const b0 = serverPid ? busyTicks() : -1;
    const a0 = answered;
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    setTimeout(() => {
      const cpu = process.cpuUsage(c0);
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      const calls = answered - a0;
      const sv1 = serverPid ? procTicks(serverPid) : -1;
      const b1 = serverPid ? busyTicks() : -1;
      running = false;
      report(calls, secs, cpu, sv0 < 0 || sv1 < 0 ? -1 : sv1 - sv0, b0 < 0 || b1 < 0 ? -1 : b1 - b0);
      try { ws.close(1000); } catch (e) { /* gone already */ }
      process.exit(errors || !calls ? 1 : 0);
    }, seconds * 1000);
  }, warmup * 1000);
}

function onClose(code) {
  if (running) {
    console.error('ws_client_rpc: the connection closed (' + code + ')');
    process.exit(1);
  }
}

if (isBun) {
  ws.binaryType = 'arraybuffer';
  ws.onopen = onOpen;
  ws.onmessage = (ev) => onMessage(ev.data);
  ws.onclose = (ev) => onClose(ev.code);
  ws.onerror = () => { if (running) { console.error('ws_client_rpc: WebSocket error'); process.exit(1); } };
} else {
  ws.on('open', onOpen);
  ws.on('message', (data) => onMessage(data));
  ws.on('close', onClose);
  ws.on('error', (e) => { if (running) { console.error('ws_client_rpc: ' + e.message); process.exit(1); } });
}
