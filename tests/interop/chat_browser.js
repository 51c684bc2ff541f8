// Drives examples/chat's page (build/chat) in headless Chromium (Debian's
// /usr/bin/chromium) with playwright-core: two users, each in a browser
// context of their own, join a room and talk; then a third connects by hand.
// Three rounds, each in a room of its own: every page JSON, every page
// MessagePack (?codec=msgpack), and mixed (alice JSON, bob and carol
// MessagePack: each sees the others' messages). In each round every page's
// WebSockets are recorded in the page (an init script wraps WebSocket): a
// MessagePack page must have the subprotocol zocket.msgpack and send and
// receive binary frames only, a JSON page no subprotocol and text frames
// only. Last, a MessagePack zocket.js against a server that selects
// zocket.json (as a JSON-only Zocket server does; Node's ws here) must close
// with 4002 and not retry.
//
//     node tests/interop/chat_browser.js http://127.0.0.1:P/
//
// The URL is the one build/chat prints. The page's contract: ?name=NAME
// connects at once; ?codec=msgpack speaks MessagePack, JSON without it, and
// #codec reads "MessagePack" or "JSON"; #name and #connect connect by hand;
// #room and #join join a room; #text and #send send; #messages has one child
// per message whose text contains "from: text"; #members lists the room's
// members; #status reads "connected", "reconnecting" or "disconnected".
// Prints one "ok NAME" or "FAIL NAME: why" line per check and exits non-zero
// if any failed. Every wait is bounded; CHROMIUM overrides the browser's
// path. The helpers are exported for chat_browser_restart.js.
'use strict';
const path = require('path');
const { chromium } = require(path.join(__dirname, 'node', 'node_modules', 'playwright-core'));
const { WebSocketServer } = require(path.join(__dirname, 'node', 'node_modules', 'ws'));

const WAIT_MS = 5000;           // any one element state
const CHECK_MS = 20000;         // any one check
const WATCHDOG_MS = 55000;      // the whole run (run.sh's limit is 60 s)
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// Each round's room is not the page's default room (lobby): #join must work.
// codecs: each user's page's codec; query: more of the pages' query (the
// MessagePack round runs the heartbeat, __ping and __pong, every 200 ms, with
// a pongTimeout long enough for a server under valgrind on a busy machine).
const ROUNDS = [
  { label: 'JSON', room: 'garden', codecs: { alice: 'json', bob: 'json', carol: 'json' } },
  { label: 'MessagePack', room: 'orchard', codecs: { alice: 'msgpack', bob: 'msgpack', carol: 'msgpack' },
    query: 'ping=200&pongTimeout=2000', pongs: true },
  { label: 'mixed', room: 'meadow', codecs: { alice: 'json', bob: 'msgpack', carol: 'msgpack' } },
];
let failures = 0;
let broken = false;             // a check failed: later ones that need its state are skipped

function report(name, error) {
  if (error == null) {
    console.log(`ok ${name}`);
  } else {
    failures++;
    console.log(`FAIL ${name}: ${String(error).split('\n').slice(0, 3).join(' | ')}`);
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: over ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

// A new group of checks that does not build on the ones before.
function freshStart() {
  broken = false;
}

async function check(name, fn, { needs = true } = {}) {
  if (needs && broken) {
    report(name, 'not run: an earlier check it builds on failed');
    return;
  }
  try {
    await withTimeout(fn(), CHECK_MS, name);
    report(name, null);
  } catch (e) {
    broken = true;
    report(name, e && e.message ? e.message : e);
  }
}

const statusOf = (page) => page.evaluate(() => {
  const s = document.querySelector('#status');
  return s ? s.textContent.trim() : null;
});

async function waitStatus(page, want, ms = WAIT_MS) {
  try {
    await page.waitForFunction((w) => {
      const s = document.querySelector('#status');
      return s && s.textContent.trim() === w;
    }, want, { timeout: ms });
  } catch (e) {
    throw new Error(`#status is ${JSON.stringify(await statusOf(page))}, want ${JSON.stringify(want)}`);
  }
}

const membersText = (page) => page.evaluate(() => {
  const m = document.querySelector('#members');
  return m ? m.textContent : null;
});

// Waits until #members contains every name of `present` and none of `absent`.
async function waitMembers(page, present, absent = []) {
  try {
    await page.waitForFunction(([p, a]) => {
      const m = document.querySelector('#members');
      if (!m) return false;
      const t = m.textContent;
      return p.every((n) => t.includes(n)) && a.every((n) => !t.includes(n));
    }, [present, absent], { timeout: WAIT_MS });
  } catch (e) {
    throw new Error(`#members reads ${JSON.stringify(await membersText(page))}; want ` +
                    `${JSON.stringify(present)}${absent.length ? ` and not ${JSON.stringify(absent)}` : ''}`);
  }
}

const messages = (page) => page.evaluate(() =>
  Array.from(document.querySelectorAll('#messages > *'), (e) => e.textContent));

// Waits for a child of #messages containing `want`; then there must be
// exactly one.
async function waitMessage(page, want, who) {
  try {
    await page.waitForFunction((w) => Array.from(document.querySelectorAll('#messages > *'))
      .some((e) => e.textContent.includes(w)), want, { timeout: WAIT_MS });
  } catch (e) {
    throw new Error(`${who} never showed ${JSON.stringify(want)}; #messages: ` +
                    `${JSON.stringify((await messages(page)).slice(-5))}`);
  }
}

async function countMessage(page, want) {
  return (await messages(page)).filter((t) => t.includes(want)).length;
}

async function send(page, text) {
  await page.fill('#text', text);
  await page.click('#send');
}

// The page's init script: every WebSocket it makes, with the subprotocols
// offered, the frames sent and received by kind (and the binary ones
// received), and how it ended (the code the page closed it with, the code of
// its close event), in window.__zkSockets.
function recordSockets() {
  const Native = window.WebSocket;
  window.__zkSockets = [];
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      const record = {
        socket: this, offered: protocols === undefined ? [] : [].concat(protocols),
        sent: { text: 0, binary: 0 }, received: { text: 0, binary: 0 }, binaryFrames: [],
        closedWith: null, closeEvent: null,
      };
      this.__zkRecord = record;
      window.__zkSockets.push(record);
      this.addEventListener('message', (e) => {
        record.received[typeof e.data === 'string' ? 'text' : 'binary']++;
        if (typeof e.data !== 'string') record.binaryFrames.push(e.data);
      });
      this.addEventListener('close', (e) => { record.closeEvent = `${e.code} ${e.reason}`.trim(); });
    }

    close(code, reason) {
      this.__zkRecord.closedWith = `${code} ${reason || ''}`.trim();
      super.close(code, reason);
    }

    send(data) {
      this.__zkRecord.sent[typeof data === 'string' ? 'text' : 'binary']++;
      super.send(data);
    }
  };
}

// The page's current WebSocket as recordSockets saw it, and #codec; its
// binary frames decoded by the page's zocket.js: types, a count of each.
const wireOf = (page) => page.evaluate(async () => {
  const all = window.__zkSockets || [];
  const r = all[all.length - 1];
  const codec = document.querySelector('#codec');
  const types = {};
  if (r && r.binaryFrames.length) {
    const { msgpackDecode } = await import('/zocket.js');
    for (const frame of r.binaryFrames) {
      let type;
      try {
        const m = msgpackDecode(frame);
        type = m !== null && typeof m === 'object' && typeof m.type === 'string' ? m.type : '(not an envelope)';
      } catch (e) {
        type = `(${e.message})`;
      }
      types[type] = (types[type] || 0) + 1;
    }
  }
  return {
    types,
    sockets: all.length, codecText: codec ? codec.textContent.trim() : null,
    ended: all.slice(0, -1).map((e) => `closed by the page: ${e.closedWith || 'no'}, close event: ${e.closeEvent || 'none'}`),
    ...(r && {
      offered: r.offered, protocol: r.socket.protocol, binaryType: r.socket.binaryType,
      open: r.socket.readyState === WebSocket.OPEN, sent: r.sent, received: r.received,
    }),
  };
});

// Throws unless the page speaks codec on an open WebSocket, its only one (it
// never reconnected), frames of that codec's kind only, at least one each way;
// with MessagePack every frame received an envelope, with pongs a __pong
// among them.
async function checkWire(page, who, codec, { pongs = false } = {}) {
  const w = await wireOf(page);
  const why = [];
  const mp = codec === 'msgpack';
  const kind = mp ? 'binary' : 'text', other = mp ? 'text' : 'binary';
  if (w.codecText !== (mp ? 'MessagePack' : 'JSON')) why.push(`#codec reads ${JSON.stringify(w.codecText)}`);
  if (!w.sockets) {
    why.push('no WebSocket recorded');
  } else {
    if (!w.open) why.push('its WebSocket is not open');
    if (w.sockets !== 1) why.push(`${w.sockets} WebSockets made (it reconnected; ${w.ended.join('; ')})`);
    if (w.protocol !== (mp ? 'zocket.msgpack' : '')) why.push(`protocol ${JSON.stringify(w.protocol)}`);
    if (mp && w.binaryType !== 'arraybuffer') why.push(`binaryType ${w.binaryType}`);
    if (!mp && w.offered.length) why.push(`offered ${JSON.stringify(w.offered)}`);
    for (const dir of ['sent', 'received']) {
      if (!w[dir][kind] || w[dir][other]) why.push(`${dir} ${JSON.stringify(w[dir])}`);
    }
    const odd = Object.keys(w.types).filter((t) => t.startsWith('('));
    if (odd.length) why.push(`binary frames that are not envelopes: ${JSON.stringify(w.types)}`);
    if (pongs && !w.types.__pong) why.push(`no __pong among ${JSON.stringify(w.types)}`);
  }
  if (why.length) throw new Error(`${who}'s page (${codec}): ${why.join(', ')}`);
  return w;
}

async function main() {
  const base = process.argv[2];
  if (!base || !/^http:\/\//.test(base)) {
    console.error('usage: chat_browser.js http://HOST:PORT/');
    process.exit(2);
  }
  setTimeout(() => {
    console.log(`FAIL the run finished within ${WATCHDOG_MS} ms`);
    process.exit(1);
  }, WATCHDOG_MS).unref();

  const pageErrors = [];
  let browser;
  try {
    await check('Chromium starts headless', async () => {
      browser = await chromium.launch({
        executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true, timeout: 20000,
      });
    });
    if (!browser) return;

    const open = async (who, query) => {
      const context = await browser.newContext();
      await context.addInitScript(recordSockets);
      const page = await context.newPage();
      page.setDefaultTimeout(WAIT_MS);
      page.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
      const resp = await page.goto(new URL(query, base).href, { timeout: WAIT_MS });
      if (!resp || resp.status() !== 200) {
        throw new Error(`GET ${query}: status ${resp ? resp.status() : 'none'}`);
      }
      return page;
    };

    for (const round of ROUNDS) {
      freshStart();
      await talk(round, open);
    }

    freshStart();
    await check('MessagePack zocket.js, a server that selects zocket.json: closed 4002 with the reason, no retry', async () => {
      const server = new WebSocketServer({
        host: '127.0.0.1', port: 0,
        handleProtocols: (offered) => (offered.has('zocket.json') ? 'zocket.json' : false),
      });
      const closes = [];
      server.on('connection', (ws) => ws.on('close', (code) => closes.push(code)));
      let page;
      try {
        if (!server.address()) await new Promise((resolve) => server.once('listening', resolve));
        page = await open('dave', '/');
        const got = await page.evaluate(async (url) => {
          const { connect } = await import('/zocket.js');
          const events = [];
          const close = await new Promise((resolve) => {
            connect(url, {
              codec: 'msgpack', onOpen: () => events.push('open'), onState: (s) => events.push(s), onClose: resolve,
            });
          });
          await new Promise((resolve) => setTimeout(resolve, 500)); // would a retry come?
          const r = window.__zkSockets[window.__zkSockets.length - 1];
          return { close, events, attempts: window.__zkSockets.length, offered: r.offered, protocol: r.socket.protocol };
        }, `ws://127.0.0.1:${server.address().port}/`);
        const { close } = got;
        if (close.code !== 4002 || close.reconnectIn !== -1 || !/did not select zocket\.msgpack/.test(close.reason)) {
          throw new Error(`onClose got ${JSON.stringify(close)}`);
        }
        if (got.attempts !== 1 || got.events.includes('open') || got.events[got.events.length - 1] !== 'closed') {
          throw new Error(`${got.attempts} attempts, events ${JSON.stringify(got.events)}`);
        }
        if (JSON.stringify(got.offered) !== '["zocket.msgpack","zocket.json"]' || got.protocol !== 'zocket.json') {
          throw new Error(`offered ${JSON.stringify(got.offered)}, selected ${JSON.stringify(got.protocol)}`);
        }
        const deadline = Date.now() + WAIT_MS;
        while (!closes.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
        if (closes[0] !== 4002) throw new Error(`the server saw close codes ${JSON.stringify(closes)}, want [4002]`);
      } finally {
        if (page) await page.context().close().catch(() => {});
        server.close();
      }
    });

    await check('no uncaught JavaScript error on any page', async () => {
      if (pageErrors.length) throw new Error(pageErrors.join('; '));
    }, { needs: false });
  } finally {
    if (browser) await withTimeout(browser.close(), 10000, 'browser.close').catch(() => {});
  }
}

// One round: alice and bob meet in round.room and talk, bob leaves, carol
// connects by hand; each page in the codec round.codecs gives it.
async function talk({ label, room, codecs, query: more, pongs }, open) {
  const query = (name) => {
    const q = new URLSearchParams(more);
    if (name) q.set('name', name);
    if (codecs[name || 'carol'] === 'msgpack') q.set('codec', 'msgpack');
    const text = q.toString();
    return text ? `/?${text}` : '/';
  };
  const pages = [];
  let alice, bob, carol;
  try {
    await check(`${label}: alice's page with ?name=alice connects by itself`, async () => {
      alice = await open('alice', query('alice'));
      pages.push(alice);
      await waitStatus(alice, 'connected');
    });
    await check(`${label}: bob's page with ?name=bob connects by itself`, async () => {
      bob = await open('bob', query('bob'));
      pages.push(bob);
      await waitStatus(bob, 'connected');
    });
    // Both pages join the page's default room, lobby, by themselves (chat.js):
    // once alice is in the round's room, her #members lists her and no longer bob
    await check(`${label}: alice joins ${room}: #members lists her only`, async () => {
      await waitMembers(alice, ['alice', 'bob']);  // both in lobby first
      await alice.fill('#room', room);
      await alice.click('#join');
      await waitMembers(alice, ['alice'], ['bob']);
    });
    await check(`${label}: bob joins ${room}: both pages list alice and bob`, async () => {
      await bob.fill('#room', room);
      await bob.click('#join');
      await waitMembers(bob, ['alice', 'bob']);
      await waitMembers(alice, ['alice', 'bob']);  // from chat.joined
    });
    await check(`${label}: bob (${codecs.bob}) sees alice's (${codecs.alice}) message, alice sees her own, once each`, async () => {
      await send(alice, 'hello from alice');
      await waitMessage(bob, 'alice: hello from alice', 'bob\'s page');
      await waitMessage(alice, 'alice: hello from alice', 'alice\'s page');
      // bob's reply arrives after anything sent before it: a duplicate of
      // alice's message would be there by then
      await send(bob, 'hi alice, bob here');
      await waitMessage(alice, 'bob: hi alice, bob here', 'alice\'s page');
      await waitMessage(bob, 'bob: hi alice, bob here', 'bob\'s page');
      for (const [who, page] of [['alice', alice], ['bob', bob]]) {
        const n = await countMessage(page, 'alice: hello from alice');
        if (n !== 1) throw new Error(`${who}'s page shows alice's message ${n} times`);
      }
    });
    const wire = (codec) => (codec === 'msgpack'
      ? `zocket.msgpack, binary frames (each an envelope${pongs ? ', __pong among them' : ''})`
      : 'no subprotocol, text frames');
    await check(`${label}: on the wire, in the page: alice ${wire(codecs.alice)}; bob ${wire(codecs.bob)}`, async () => {
      await checkWire(alice, 'alice', codecs.alice, { pongs });
      await checkWire(bob, 'bob', codecs.bob, { pongs });
    });
    await check(`${label}: a message with HTML in it is shown as text, not markup`, async () => {
      const text = '<img src="/none" onerror="window.__chatXss = 1"><b id="chatXss">bold</b>';
      await send(alice, text);
      await waitMessage(bob, `alice: ${text}`, 'bob\'s page');
      for (const page of [alice, bob]) {
        const injected = await page.evaluate(() =>
          document.querySelector('#chatXss') !== null || window.__chatXss === 1);
        if (injected) throw new Error('the text became HTML elements on the page');
      }
    });
    await check(`${label}: bob closes his page: alice's #members drops him`, async () => {
      await bob.context().close();
      pages.splice(pages.indexOf(bob), 1);
      bob = null;
      await waitMembers(alice, ['alice'], ['bob']);
    });
    await check(`${label}: a page without ?name reads "disconnected"; #name + #connect connect it (${codecs.carol})`, async () => {
      carol = await open('carol', query(null));
      pages.push(carol);
      await waitStatus(carol, 'disconnected');
      await carol.fill('#name', 'carol');
      await carol.click('#connect');
      await waitStatus(carol, 'connected');
      await carol.fill('#room', room);
      await carol.click('#join');
      await waitMembers(carol, ['alice', 'carol']);
      await send(carol, 'carol was here');
      await waitMessage(alice, 'carol: carol was here', 'alice\'s page');
      await waitMessage(carol, 'carol: carol was here', 'carol\'s page');
      await checkWire(carol, 'carol', codecs.carol); // (she may not have been on for a ping yet)
    }, { needs: false });
  } finally {
    for (const page of pages) await page.context().close().catch(() => {});
  }
}

module.exports = {
  WAIT_MS, CHROMIUM, check, withTimeout, statusOf, waitStatus, waitMembers, waitMessage,
  countMessage, send, failures: () => failures,
};

if (require.main === module) {
  main().then(() => process.exit(failures ? 1 : 0), (e) => {
    console.log(`FAIL unexpected error: ${e && e.stack ? e.stack.split('\n')[0] : e}`);
    process.exit(1);
  });
}
