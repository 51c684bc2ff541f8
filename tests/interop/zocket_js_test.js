// examples/chat/zocket.js under Node, without a browser or a server: its
// MessagePack encoder and decoder against byte vectors written from the
// MessagePack spec (https://github.com/msgpack/msgpack/blob/master/spec.md),
// and the client's codec option over a fake WebSocket.
//
//     node tests/interop/zocket_js_test.js
//
// Prints one "ok NAME" or "FAIL NAME: why" line per check (as
// chat_browser.js) and exits non-zero if any failed. Needs no npm package:
// zocket.js is an ES module for browsers, loaded here from a data: URL (so
// that no package.json has to say "type": "module").
'use strict';
const fs = require('fs');
const path = require('path');
const assert = require('assert');

const SOURCE = path.join(__dirname, '..', '..', 'examples', 'chat', 'zocket.js');
let failures = 0;

function report(name, error) {
  if (error == null) {
    console.log(`ok ${name}`);
  } else {
    failures++;
    console.log(`FAIL ${name}: ${String(error).split('\n').slice(0, 3).join(' | ')}`);
  }
}

async function check(name, fn) {
  try {
    await fn();
    report(name, null);
  } catch (e) {
    report(name, e && e.message ? e.message : e);
  }
}

const hex = (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
const unhex = (text) => new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
const repeat = (text, n) => text.repeat(n);
const show = (v) => (typeof v === 'bigint' ? `${v}n` : typeof v === 'string' && v.length > 40
  ? `"${v.slice(0, 20)}..." (${v.length} characters)` : Array.isArray(v) && v.length > 8
    ? `[${v.length} elements]` : JSON.stringify(v, (k, x) => (typeof x === 'bigint' ? `${x}n` : x)));

// [what, value, bytes]: encoding value gives bytes, and decoding bytes gives value.
const str = (n) => 'x'.repeat(n);
const bytesOf = (n) => new Uint8Array(n).fill(7);
const arrayOf = (n) => new Array(n).fill(1);
const mapOf = (n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${String(i).padStart(2, '0')}`, i]));
const mapHex = (n) => Array.from({ length: n }, (_, i) =>
  `a3 6b ${Buffer.from(String(i).padStart(2, '0')).toString('hex')} ${i.toString(16).padStart(2, '0')}`).join('');
const BOTH_WAYS = [
  ['nil', null, 'c0'],
  ['false', false, 'c2'],
  ['true', true, 'c3'],
  ['positive fixint 0', 0, '00'],
  ['positive fixint 127', 127, '7f'],
  ['uint8 128', 128, 'cc 80'],
  ['uint8 255', 255, 'cc ff'],
  ['uint16 256', 256, 'cd 0100'],
  ['uint16 65535', 65535, 'cd ffff'],
  ['uint32 65536', 65536, 'ce 00010000'],
  ['uint32 2^32-1', 2 ** 32 - 1, 'ce ffffffff'],
  ['uint64 2^32', 2 ** 32, 'cf 0000000100000000'],
  ['uint64 2^53-1', 2 ** 53 - 1, 'cf 001fffffffffffff'],
  ['negative fixint -1', -1, 'ff'],
  ['negative fixint -32', -32, 'e0'],
  ['int8 -33', -33, 'd0 df'],
  ['int8 -128', -128, 'd0 80'],
  ['int16 -129', -129, 'd1 ff7f'],
  ['int16 -32768', -32768, 'd1 8000'],
  ['int32 -32769', -32769, 'd2 ffff7fff'],
  ['int32 -2^31', -(2 ** 31), 'd2 80000000'],
  ['int64 -2^31-1', -(2 ** 31) - 1, 'd3 ffffffff7fffffff'],
  ['int64 -(2^53-1)', -(2 ** 53 - 1), 'd3 ffe0000000000001'],
  ['float64 0.5', 0.5, 'cb 3fe0000000000000'],
  ['float64 1.1', 1.1, 'cb 3ff199999999999a'],
  ['float64 -1.5', -1.5, 'cb bff8000000000000'],
  ['float64 2^53 (not a safe integer)', 2 ** 53, 'cb 4340000000000000'],
  ['float64 Infinity', Infinity, 'cb 7ff0000000000000'],
  ['BigInt 2^64-1 as uint64', 2n ** 64n - 1n, 'cf ffffffffffffffff'],
  ['BigInt 2^53 as uint64', 2n ** 53n, 'cf 0020000000000000'],
  ['BigInt -2^63 as int64', -(2n ** 63n), 'd3 8000000000000000'],
  ['BigInt -2^53 as int64', -(2n ** 53n), 'd3 ffe0000000000000'],
  ['fixstr ""', '', 'a0'],
  ['fixstr "a"', 'a', 'a1 61'],
  ['fixstr of 31 bytes', str(31), 'bf' + repeat('78', 31)],
  ['str8 of 32 bytes', str(32), 'd9 20' + repeat('78', 32)],
  ['str8 of 255 bytes', str(255), 'd9 ff' + repeat('78', 255)],
  ['str16 of 256 bytes', str(256), 'da 0100' + repeat('78', 256)],
  ['str32 of 65536 bytes', str(65536), 'db 00010000' + repeat('78', 65536)],
  ['str UTF-8: é € 😀', 'é€😀', 'a9 c3a9 e282ac f09f9880'],
  ['str with a leading U+FEFF (kept)', '\ufeffa', 'a4 efbbbf 61'],
  ['bin8 empty', new Uint8Array(0), 'c4 00'],
  ['bin8 of 3 bytes', new Uint8Array([1, 2, 3]), 'c4 03 010203'],
  ['bin16 of 256 bytes', bytesOf(256), 'c5 0100' + repeat('07', 256)],
  ['bin32 of 65536 bytes', bytesOf(65536), 'c6 00010000' + repeat('07', 65536)],
  ['fixarray []', [], '90'],
  ['fixarray [1,2,3]', [1, 2, 3], '93 010203'],
  ['fixarray of 15', arrayOf(15), '9f' + repeat('01', 15)],
  ['array16 of 16', arrayOf(16), 'dc 0010' + repeat('01', 16)],
  ['array32 of 65536', arrayOf(65536), 'dd 00010000' + repeat('01', 65536)],
  ['fixmap {}', {}, '80'],
  ['the spec\'s example {"compact":true,"schema":0}', { compact: true, schema: 0 },
    '82 a7 636f6d70616374 c3 a6 736368656d61 00'],
  ['fixmap of 15', mapOf(15), '8f' + mapHex(15)],
  ['map16 of 16', mapOf(16), 'de 0010' + mapHex(16)],
  ['nested: {"a":[nil,{"b":-1}]}', { a: [null, { b: -1 }] }, '81 a1 61 92 c0 81 a1 62 ff'],
  ['a Zocket envelope', { type: 'chat.send', payload: { room: 'lobby', text: 'hi' }, rpcId: 'c1' },
    '83 a4 74797065 a9 636861742e73656e64 a7 7061796c6f6164 82 a4 726f6f6d a5 6c6f626279' +
    ' a4 74657874 a2 6869 a5 7270634964 a2 6331'],
];

// [what, bytes, value]: decoding only (forms the encoder does not choose).
const DECODE_ONLY = [
  ['uint8 holding 5', 'cc 05', 5],
  ['uint16 holding 5', 'cd 0005', 5],
  ['uint32 holding 5', 'ce 00000005', 5],
  ['uint64 holding 5', 'cf 0000000000000005', 5],
  ['int8 holding 5', 'd0 05', 5],
  ['int16 -1', 'd1 ffff', -1],
  ['int32 -1', 'd2 ffffffff', -1],
  ['int64 -1', 'd3 ffffffffffffffff', -1],
  ['int64 2^53-1 (a Number)', 'd3 001fffffffffffff', 2 ** 53 - 1],
  ['uint64 2^53 (a BigInt: not safe)', 'cf 0020000000000000', 2n ** 53n],
  ['int64 -2^53 (a BigInt: not safe)', 'd3 ffe0000000000000', -(2n ** 53n)],
  ['int64 2^63-1 (a BigInt)', 'd3 7fffffffffffffff', 2n ** 63n - 1n],
  ['float32 1.5', 'ca 3fc00000', 1.5],
  ['float32 -0.25', 'ca be800000', -0.25],
  ['float32 Infinity', 'ca 7f800000', Infinity],
  ['float32 0.1 (as float32 has it)', 'ca 3dcccccd', Math.fround(0.1)],
  ['float64 NaN', 'cb 7ff8000000000000', NaN],
  ['str8 holding "a"', 'd9 01 61', 'a'],
  ['str16 holding "a"', 'da 0001 61', 'a'],
  ['str32 holding "a"', 'db 00000001 61', 'a'],
  ['array16 holding [1]', 'dc 0001 01', [1]],
  ['map32 holding {"a":1}', 'df 00000001 a1 61 01', { a: 1 }],
  ['map with a str8 key', '81 d9 01 61 01', { a: 1 }],
  ['map with a duplicate key: the last wins', '82 a1 61 01 a1 61 02', { a: 2 }],
];

// [what, bytes, message part]: decoding fails with an Error whose message has it.
const DECODE_ERRORS = [
  ['empty input', '', 'unexpected end of input at byte 0'],
  ['0xc1 (never used)', 'c1', '0xc1 is never used'],
  ['fixext 1', 'd4 01 00', 'ext types are not supported'],
  ['fixext 16', 'd8 01' + repeat('00', 16), 'ext types are not supported'],
  ['ext 8', 'c7 01 05 00', 'ext types are not supported'],
  ['ext 32 inside an array', '92 01 c9 00000001 05 00', 'ext types are not supported (format 0xc9) at byte 2'],
  ['a truncated uint16', 'cd 01', 'unexpected end of input'],
  ['a truncated float64', 'cb 3ff0', 'unexpected end of input'],
  ['a str longer than the input', 'a5 6162', 'unexpected end of input'],
  ['an array missing its last element', '92 01', 'unexpected end of input'],
  ['array32 declaring 2^32-1 elements (refused before allocating)', 'dd ffffffff 01', 'unexpected end of input'],
  ['map32 declaring 2^32-1 entries (refused before allocating)', 'df ffffffff a1 61 01', 'unexpected end of input'],
  ['bin32 declaring 4 GiB', 'c6 ffffffff 00', 'unexpected end of input'],
  ['a map key that is an integer', '81 01 01', 'a map key that is not a str at byte 1'],
  ['a map key that is nil', '81 c0 01', 'a map key that is not a str'],
  ['a map missing its last key', '82 a1 61 01', 'unexpected end of input'],
  ['invalid UTF-8 in a str', 'a2 c328', 'invalid UTF-8 in a string'],
  ['a UTF-16 surrogate encoded in a str', 'a3 eda080', 'invalid UTF-8 in a string'],
  ['bytes after the value', '01 02', 'data after the value at byte 1'],
  ['600 nested arrays', repeat('91', 600) + '01', 'nested deeper than 512 levels'],
];

function sameValue(got, want) {
  if (want instanceof Uint8Array) {
    assert.ok(got instanceof Uint8Array, `a ${got && got.constructor ? got.constructor.name : typeof got}, not a Uint8Array`);
    assert.strictEqual(hex(got), hex(want));
    return;
  }
  if (typeof want === 'number' && Number.isNaN(want)) {
    assert.ok(Number.isNaN(got), `${show(got)}, not NaN`);
    return;
  }
  assert.deepStrictEqual(got, want);
}

async function main() {
  let z;
  await check('zocket.js loads as an ES module under Node', async () => {
    const source = fs.readFileSync(SOURCE);
    z = await import(`data:text/javascript;base64,${source.toString('base64')}`);
    for (const name of ['connect', 'msgpackEncode', 'msgpackDecode', 'ZocketError']) {
      assert.strictEqual(typeof z[name], 'function', `no export ${name}`);
    }
  });
  if (!z) return;
  const { msgpackEncode: encode, msgpackDecode: decode } = z;

  let bad = [];
  for (const [what, value, bytes] of BOTH_WAYS) {
    const want = unhex(bytes);
    try {
      const got = encode(value);
      assert.ok(got instanceof Uint8Array, 'encode did not return a Uint8Array');
      if (hex(got) !== hex(want)) throw new Error(`got ${hex(got).slice(0, 40)}, want ${hex(want).slice(0, 40)}`);
      sameValue(decode(want), value);
    } catch (e) {
      bad.push(`${what}: ${e.message.split('\n')[0]}`);
    }
  }
  report(`MessagePack: ${BOTH_WAYS.length} spec vectors encode to their bytes and decode back ` +
         '(nil, bool, every int width, float64, str/bin/array/map of every length form)',
         bad.length ? bad.join('; ') : null);

  bad = [];
  for (const [what, bytes, value] of DECODE_ONLY) {
    try {
      sameValue(decode(unhex(bytes)), value);
    } catch (e) {
      bad.push(`${what}: ${e.message.split('\n')[0]}`);
    }
  }
  report(`MessagePack: ${DECODE_ONLY.length} non-minimal and float32 forms decode ` +
         '(uint64/int64: a Number when safe, else a BigInt)', bad.length ? bad.join('; ') : null);

  bad = [];
  for (const [what, bytes, part] of DECODE_ERRORS) {
    try {
      const got = decode(unhex(bytes));
      bad.push(`${what}: decoded to ${show(got)}`);
    } catch (e) {
      if (!(e instanceof Error) || !e.message.startsWith('msgpack: ') || !e.message.includes(part)) {
        bad.push(`${what}: ${e && e.message}, want "${part}"`);
      }
    }
  }
  report(`MessagePack: ${DECODE_ERRORS.length} malformed inputs are refused with a clear error ` +
         '(ext, 0xc1, truncation, huge counts, non-str keys, bad UTF-8, nesting, trailing bytes)',
         bad.length ? bad.join('; ') : null);

  await check('MessagePack: decode takes an ArrayBuffer, a Uint8Array view with an offset, and a Node Buffer', async () => {
    const framed = unhex('ff 81 a1 61 93 01 02 03 ff');
    const view = framed.subarray(1, framed.length - 1);
    assert.deepStrictEqual(decode(view), { a: [1, 2, 3] });
    assert.deepStrictEqual(decode(view.slice().buffer), { a: [1, 2, 3] });
    assert.deepStrictEqual(decode(Buffer.from('81a16193010203', 'hex')), { a: [1, 2, 3] });
    assert.throws(() => decode('81a161'), TypeError);
  });

  await check('MessagePack: a decoded bin is a Uint8Array of its own (not a view of the frame)', async () => {
    const frame = unhex('c4 02 0102');
    const bin = decode(frame);
    frame[2] = 9;
    assert.strictEqual(hex(bin), '0102');
    assert.strictEqual(bin.byteLength, bin.buffer.byteLength);
  });

  await check('MessagePack: a "__proto__" key is an own property, the prototype untouched', async () => {
    const o = decode(unhex('81 a9 5f5f70726f746f5f5f 81 a1 78 01'));
    assert.strictEqual(Object.getPrototypeOf(o), Object.prototype);
    assert.deepStrictEqual(Object.keys(o), ['__proto__']);
    assert.strictEqual(o.x, undefined);
    assert.strictEqual(({}).x, undefined);
  });

  await check('MessagePack: encode leaves out what JSON.stringify leaves out (undefined, functions in objects)', async () => {
    assert.strictEqual(hex(encode({ type: 'x', payload: undefined, f() {} })), hex(unhex('81 a4 74797065 a1 78')));
    assert.strictEqual(hex(encode([undefined, () => 1])), '92c0c0');
    assert.strictEqual(hex(encode(undefined)), 'c0');
    assert.strictEqual(hex(encode(-0)), '00');
    const d = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));
    assert.deepStrictEqual(decode(encode({ at: d })), { at: '2024-01-02T03:04:05.000Z' });
  });

  await check('MessagePack: encode takes any ArrayBuffer view or an ArrayBuffer as bin', async () => {
    assert.strictEqual(hex(encode(new Uint16Array([0x0102]).buffer)), 'c402' + hex(new Uint8Array(new Uint16Array([0x0102]).buffer)));
    assert.strictEqual(hex(encode(new DataView(unhex('aabbcc').buffer, 1, 2))), 'c402bbcc');
    assert.strictEqual(hex(encode(Buffer.from('hi'))), 'c4026869');
  });

  await check('MessagePack: encode refuses a cycle, a function, a symbol and a BigInt past 64 bits', async () => {
    const cyclic = { a: 1 };
    cyclic.self = cyclic;
    assert.throws(() => encode(cyclic), /msgpack: nested deeper than 512 levels/);
    assert.throws(() => encode(() => 1), TypeError);
    assert.throws(() => encode(Symbol('s')), TypeError);
    assert.throws(() => encode(2n ** 64n), RangeError);
    assert.throws(() => encode(-(2n ** 63n) - 1n), RangeError);
  });

  await check('MessagePack: 2000 random values round-trip (encode, decode, compare)', async () => {
    let seed = 7;
    const rand = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
    const pick = (depth) => {
      const r = rand();
      if (depth > 3 || r < 0.35) {
        const k = Math.floor(rand() * 9);
        if (k === 0) return null;
        if (k === 1) return rand() < 0.5;
        if (k === 2) return Math.floor((rand() - 0.5) * 2 ** (1 + Math.floor(rand() * 53)));
        if (k === 3) return (rand() - 0.5) * 10 ** Math.floor(rand() * 40 - 20);
        if (k === 4) return String.fromCodePoint(...Array.from({ length: Math.floor(rand() * 40) },
          () => [0x41, 0xe9, 0x20ac, 0x1f600, 0xfeff][Math.floor(rand() * 5)]));
        if (k === 5) return Uint8Array.from({ length: Math.floor(rand() * 300) }, () => Math.floor(rand() * 256));
        if (k === 6) return rand() < 0.5 ? 2n ** 63n + BigInt(Math.floor(rand() * 1e9)) : -(2n ** 62n);
        if (k === 7) return -Math.floor(rand() * 2 ** 31);
        return 'x'.repeat(Math.floor(rand() * 70000 * (rand() < 0.05)));
      }
      if (r < 0.7) return Array.from({ length: Math.floor(rand() * 20) }, () => pick(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(rand() * 20) }, (_, i) => [`k${i}é`, pick(depth + 1)]));
    };
    for (let i = 0; i < 2000; i++) {
      const v = pick(0);
      sameValue(decode(encode(v)), v);
    }
  });

  // ---- the client's codec option, over a fake WebSocket ----

  class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    constructor(url, protocols) {
      this.url = url;
      this.offered = protocols;
      this.readyState = FakeWebSocket.CONNECTING;
      this.binaryType = 'blob';
      this.protocol = '';
      this.sent = [];
      this.closedWith = null;
      FakeWebSocket.last = this;
    }
    send(data) { this.sent.push(data); }
    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = FakeWebSocket.CLOSED;
    }
    // the server's side
    accept(protocol) {
      this.protocol = protocol;
      this.readyState = FakeWebSocket.OPEN;
      this.onopen();
    }
  }
  globalThis.WebSocket = FakeWebSocket;
  const quiet = { reconnect: false, pingIntervalMs: 0, connectTimeoutMs: 0 };

  await check('client: codec "msgpack" offers zocket.msgpack, then protocols, then zocket.json; binaryType arraybuffer', async () => {
    let c = z.connect('ws://x/ws', { ...quiet, codec: 'msgpack' });
    assert.deepStrictEqual(FakeWebSocket.last.offered, ['zocket.msgpack', 'zocket.json']);
    c.close();
    c = z.connect('ws://x/ws', { ...quiet, codec: 'msgpack', protocols: ['zocket.json', 'other', 'zocket.msgpack'] });
    assert.deepStrictEqual(FakeWebSocket.last.offered, ['zocket.msgpack', 'other', 'zocket.json']);
    assert.strictEqual(FakeWebSocket.last.binaryType, 'arraybuffer');
    c.close();
  });

  await check('client: codec "msgpack" sends binary envelopes and decodes binary answers; a text frame is ignored', async () => {
    const events = [];
    const c = z.connect('ws://x/ws', { ...quiet, codec: 'msgpack', onOpen: () => events.push('open') });
    const ws = FakeWebSocket.last;
    ws.accept('zocket.msgpack');
    assert.deepStrictEqual(events, ['open']);
    const answer = c.call('chat.rooms');
    assert.strictEqual(ws.sent.length, 1);
    assert.ok(ws.sent[0] instanceof Uint8Array, `sent a ${typeof ws.sent[0]}`);
    assert.deepStrictEqual(decode(ws.sent[0]), { type: 'chat.rooms', rpcId: 'c1' });
    c.on('chat.message', (p) => events.push(p));
    ws.onmessage({ data: '{"type":"chat.message","payload":"text frame"}' });
    ws.onmessage({ data: encode({ type: 'chat.message', payload: { n: 2n ** 64n - 1n } }).slice().buffer });
    ws.onmessage({ data: encode({ type: '__rpc_res', rpcId: 'c1', payload: [{ room: 'lobby', members: 2 }] }).slice().buffer });
    assert.deepStrictEqual(await answer, [{ room: 'lobby', members: 2 }]);
    assert.deepStrictEqual(events, ['open', { n: 2n ** 64n - 1n }]);
    const failing = c.call('x', {});
    ws.onmessage({ data: encode({ type: '__rpc_err', rpcId: 'c2', error: { code: 'FORBIDDEN', message: 'no' } }).slice().buffer });
    await assert.rejects(failing, (e) => e.name === 'ZocketError' && e.code === 'FORBIDDEN' && e.message === 'no');
    c.close();
  });

  await check('client: codec "msgpack", a server that selects zocket.json: closed 4002, onClose says why, no reconnect', async () => {
    const events = [];
    const c = z.connect('ws://x/ws', {
      codec: 'msgpack', pingIntervalMs: 0, connectTimeoutMs: 0, // reconnect stays on: 4002 must stop it anyway
      onOpen: () => events.push('open'),
      onClose: (e) => events.push(e),
      onState: (s) => events.push(s),
    });
    const ws = FakeWebSocket.last;
    ws.accept('zocket.json');
    assert.strictEqual(FakeWebSocket.last, ws, 'a second attempt was made');
    assert.strictEqual(ws.closedWith && ws.closedWith.code, 4002);
    assert.strictEqual(c.state, 'closed');
    assert.strictEqual(events.length, 2, `events: ${JSON.stringify(events)}`);
    assert.strictEqual(events[0], 'closed');
    assert.strictEqual(events[1].code, 4002);
    assert.strictEqual(events[1].reconnectIn, -1);
    assert.match(events[1].reason, /did not select zocket\.msgpack \(it selected "zocket\.json"\)/);
    assert.strictEqual(c.emit('x', 1), false);
    await assert.rejects(c.call('x'), (e) => e.code === 'DISCONNECTED');
  });

  await check('client: codec "msgpack", a server that selects none (a browser fails that handshake itself): closed 4002', async () => {
    let closed;
    const c = z.connect('ws://x/ws', { ...quiet, reconnect: true, codec: 'msgpack', onClose: (e) => { closed = e; } });
    FakeWebSocket.last.accept('');
    assert.strictEqual(closed && closed.code, 4002);
    assert.strictEqual(closed.reconnectIn, -1);
    assert.match(closed.reason, /it selected none/);
    assert.strictEqual(c.state, 'closed');
  });

  await check('client: codec "json" (the default) is unchanged: no subprotocol offered, JSON text sent', async () => {
    const c = z.connect('ws://x/ws', quiet);
    const ws = FakeWebSocket.last;
    assert.strictEqual(ws.offered, undefined);
    assert.strictEqual(ws.binaryType, 'blob');
    ws.accept('');
    c.emit('chat.typing', { room: 'lobby' });
    assert.deepStrictEqual(ws.sent, ['{"type":"chat.typing","payload":{"room":"lobby"}}']);
    const got = [];
    c.on('e', (p) => got.push(p));
    ws.onmessage({ data: encode({ type: 'e', payload: 1 }).slice().buffer }); // binary: not JSON's
    ws.onmessage({ data: '{"type":"e","payload":2}' });
    assert.deepStrictEqual(got, [2]);
    c.close();
  });

  await check('client: codec "json" whose server selects zocket.msgpack (offered in protocols): closed 4002', async () => {
    let closed;
    const c = z.connect('ws://x/ws', { ...quiet, reconnect: true, protocols: ['zocket.msgpack'], onClose: (e) => { closed = e; } });
    FakeWebSocket.last.accept('zocket.msgpack');
    assert.strictEqual(closed && closed.code, 4002);
    assert.strictEqual(closed.reconnectIn, -1);
    assert.strictEqual(c.state, 'closed');
  });

  await check('client: an unknown codec is a TypeError; a payload it cannot encode rejects the call and leaves nothing pending', async () => {
    assert.throws(() => z.connect('ws://x/ws', { codec: 'cbor' }), TypeError);
    const c = z.connect('ws://x/ws', { ...quiet, codec: 'msgpack' });
    FakeWebSocket.last.accept('zocket.msgpack');
    const cyclic = {};
    cyclic.self = cyclic;
    await assert.rejects(c.call('x', cyclic), /nested deeper/);
    assert.strictEqual(c.pending.size, 0);
    c.close();
  });
}

main().then(() => process.exit(failures ? 1 : 0), (e) => {
  console.log(`FAIL unexpected error: ${e && e.stack ? e.stack.split('\n')[0] : e}`);
  process.exit(1);
});
