// examples/chat's page (build/chat) in headless Chromium across a server
// restart and a stopped server: zocket.js's reconnect and heartbeat.
//
//     node tests/interop/chat_browser_restart.js http://127.0.0.1:P/
//
// run.sh drives the server: when this script prints "do restart" (SIGTERM
// the server, start it again on the same port), "do stop" (SIGSTOP) or
// "do cont" (SIGCONT), run.sh does it and answers one line on stdin, "done
// WHAT" or "fail WHAT: why". Prints "ok NAME" / "FAIL NAME: why" per check
// (as chat_browser.js) and "# ..." lines with measurements. Every wait is
// bounded.
'use strict';
const path = require('path');
const readline = require('readline');
const { chromium } = require(path.join(__dirname, 'node', 'node_modules', 'playwright-core'));
const {
  WAIT_MS, CHROMIUM, check, withTimeout, statusOf, waitStatus, waitMembers, waitMessage, send,
  failures,
} = require('./chat_browser.js');

const WATCHDOG_MS = 55000;     // the whole run (run.sh's limit is 60 s)
const CONTROL_MS = 15000;      // run.sh's answer to a "do" line (a restart under valgrind)
const RECONNECT_MS = 10000;    // back to "connected" (the backoff's ceiling grows while it is down)
const PING_MS = 200, PONG_TIMEOUT_MS = 500;   // the heartbeat page's ?ping= and ?pongTimeout=
const DETECT_MS = PING_MS + PONG_TIMEOUT_MS + 1000;   // ... with a margin for timers and polling
const ROOM = 'orchard';

// ---- the control lines ----

const lines = [];
let waiter = null;
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (waiter) { const w = waiter; waiter = null; w(line); } else lines.push(line);
});

async function control(what) {
  console.log(`do ${what}`);
  const line = lines.length ? lines.shift() : await withTimeout(
    new Promise((resolve) => { waiter = resolve; }), CONTROL_MS, `run.sh's answer to "do ${what}"`)
    .finally(() => { waiter = null; });
  if (line !== `done ${what}`) throw new Error(`run.sh answered ${JSON.stringify(line)} to "do ${what}"`);
}

// Every text #status takes from now on, with Date.now(), in window.__statusLog.
function recordStatus(page) {
  return page.evaluate(() => {
    const s = document.querySelector('#status');
    window.__statusLog = [{ text: s.textContent.trim(), at: Date.now() }];
    new MutationObserver((records) => {
      for (const r of records) {
        for (const n of r.addedNodes) window.__statusLog.push({ text: n.textContent.trim(), at: Date.now() });
      }
    }).observe(s, { childList: true, characterData: true, subtree: true });
  });
}
const statusLog = (page) => page.evaluate(() => window.__statusLog);
const texts = (log) => log.map((e) => e.text).join(' -> ');

async function main() {
  const base = process.argv[2];
  if (!base || !/^http:\/\//.test(base)) {
    console.error('usage: chat_browser_restart.js http://HOST:PORT/');
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
      const page = await context.newPage();
      page.setDefaultTimeout(WAIT_MS);
      page.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
      const resp = await page.goto(new URL(query, base).href, { timeout: WAIT_MS });
      if (!resp || resp.status() !== 200) {
        throw new Error(`GET ${query}: status ${resp ? resp.status() : 'none'}`);
      }
      return page;
    };
    const inRoom = (page) => page.waitForFunction((r) =>
      document.querySelector('#current-room').textContent === r, ROOM, { timeout: WAIT_MS })
      .catch(() => { throw new Error(`the page is not in ${ROOM}`); });

    let alice, bob, dave;
    await check(`alice's page (?name=alice&room=${ROOM}) connects and joins ${ROOM}`, async () => {
      alice = await open('alice', `/?name=alice&room=${ROOM}`);
      await waitStatus(alice, 'connected');
      await inRoom(alice);
      await waitMembers(alice, ['alice']);
      await recordStatus(alice);
    });
    await check('the server restarts on its port: alice\'s #status goes to "reconnecting" and back to "connected"', async () => {
      await control('restart');
      await waitStatus(alice, 'connected', RECONNECT_MS);
      const log = await statusLog(alice);
      const at = log.findIndex((e) => e.text === 'reconnecting');
      if (at < 0 || log[log.length - 1].text !== 'connected') {
        throw new Error(`#status went ${texts(log)}`);
      }
      console.log(`# restart: ${texts(log)}; "reconnecting" for ${log[log.length - 1].at - log[at].at} ms`);
    });
    await check(`after the restart alice is in ${ROOM} again: bob joining sees her, she gets his message`, async () => {
      await inRoom(alice);
      bob = await open('bob', `/?name=bob&room=${ROOM}`);
      await waitStatus(bob, 'connected');
      await waitMembers(bob, ['alice', 'bob']);
      await waitMembers(alice, ['alice', 'bob']);
      await send(bob, 'bob after the restart');
      await waitMessage(alice, 'bob: bob after the restart', 'alice\'s page');
      await send(alice, 'alice after the restart');
      await waitMessage(bob, 'alice: alice after the restart', 'bob\'s page');
    });
    await check('alice and bob close their pages', async () => {
      await alice.context().close();
      await bob.context().close();
      alice = bob = null;
    });

    // The heartbeat: a page pinging every PING_MS. The frames it sends and
    // receives are counted through Playwright's WebSocket events.
    const frames = { pings: 0, pongs: 0, onPong: null };
    await check(`with ?ping=${PING_MS}&pongTimeout=${PONG_TIMEOUT_MS} the page sends __ping, gets __pong and stays connected`, async () => {
      const context = await browser.newContext();
      dave = await context.newPage();
      dave.setDefaultTimeout(WAIT_MS);
      dave.on('pageerror', (e) => pageErrors.push(`dave: ${e.message}`));
      dave.on('websocket', (ws) => {
        ws.on('framesent', ({ payload }) => { if (String(payload).includes('"__ping"')) frames.pings++; });
        ws.on('framereceived', ({ payload }) => {
          if (!String(payload).includes('"__pong"')) return;
          frames.pongs++;
          if (frames.onPong) frames.onPong();
        });
      });
      await dave.goto(new URL(`/?name=dave&room=${ROOM}&ping=${PING_MS}&pongTimeout=${PONG_TIMEOUT_MS}`, base).href);
      await waitStatus(dave, 'connected');
      await inRoom(dave);
      await recordStatus(dave);
      // 5 pongs: over 4 intervals, longer than the pong timeout
      const want = frames.pongs + 5;
      await withTimeout(new Promise((resolve) => {
        frames.onPong = () => { if (frames.pongs >= want) resolve(); };
      }), 10 * PING_MS + WAIT_MS, 'five __pong').catch(() => {
        throw new Error(`${frames.pings} __ping sent, ${frames.pongs} __pong received`);
      }).finally(() => { frames.onPong = null; });
      const log = await statusLog(dave);
      if (log.length !== 1) throw new Error(`#status went ${texts(log)} while the server answered`);
    });
    await check(`the server is stopped (SIGSTOP): #status leaves "connected" within ${DETECT_MS} ms`, async () => {
      const t0 = Date.now();
      await control('stop');
      try {
        await dave.waitForFunction(() => document.querySelector('#status').textContent.trim() !== 'connected',
                                   null, { timeout: DETECT_MS + WAIT_MS });
      } catch (e) {
        throw new Error(`#status still reads ${JSON.stringify(await statusOf(dave))}`);
      }
      const log = await statusLog(dave);
      const left = log.find((e) => e.text !== 'connected');
      const ms = left.at - t0;
      console.log(`# heartbeat: "${left.text}" ${ms} ms after the SIGSTOP request (ping ${PING_MS} + timeout ${PONG_TIMEOUT_MS})`);
      if (left.text !== 'reconnecting') throw new Error(`#status went ${texts(log)}`);
      if (ms > DETECT_MS) throw new Error(`it took ${ms} ms`);
    });
    await check('the server goes on (SIGCONT): the page is "connected" again and back in its room', async () => {
      await control('cont');
      await waitStatus(dave, 'connected', RECONNECT_MS);
      await inRoom(dave);
      await waitMembers(dave, ['dave']);
      const log = await statusLog(dave);
      console.log(`# heartbeat: #status went ${texts(log)}; ${frames.pings} __ping, ${frames.pongs} __pong`);
    });
    await check('no uncaught JavaScript error on any page', async () => {
      if (pageErrors.length) throw new Error(pageErrors.join('; '));
    }, { needs: false });
  } finally {
    if (browser) await withTimeout(browser.close(), 10000, 'browser.close').catch(() => {});
  }
}

main().then(() => process.exit(failures() ? 1 : 0), (e) => {
  console.log(`FAIL unexpected error: ${e && e.stack ? e.stack.split('\n')[0] : e}`);
  process.exit(1);
});
