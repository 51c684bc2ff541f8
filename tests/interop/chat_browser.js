// Drives examples/chat's page (build/chat) in headless Chromium (Debian's
// /usr/bin/chromium) with playwright-core: two users, each in a browser
// context of their own, join a room and talk.
//
//     node tests/interop/chat_browser.js http://127.0.0.1:P/
//
// The URL is the one build/chat prints. The page's contract: ?name=NAME
// connects at once; #name and #connect connect by hand; #room and #join join
// a room; #text and #send send; #messages has one child per message whose
// text contains "from: text"; #members lists the room's members; #status
// reads "connected", "reconnecting" or "disconnected". Prints one "ok NAME" or
// "FAIL NAME: why" line per check and exits non-zero if any failed. Every
// wait is bounded; CHROMIUM overrides the browser's path. The helpers are
// exported for chat_browser_restart.js.
'use strict';
const path = require('path');
const { chromium } = require(path.join(__dirname, 'node', 'node_modules', 'playwright-core'));

const WAIT_MS = 5000;           // any one element state
const CHECK_MS = 20000;         // any one check
const WATCHDOG_MS = 55000;      // the whole run (run.sh's limit is 60 s)
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ROOM = 'garden';       // not the page's default room (lobby): #join must work
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
      const page = await context.newPage();
      page.setDefaultTimeout(WAIT_MS);
      page.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
      const resp = await page.goto(new URL(query, base).href, { timeout: WAIT_MS });
      if (!resp || resp.status() !== 200) {
        throw new Error(`GET ${query}: status ${resp ? resp.status() : 'none'}`);
      }
      return page;
    };

    let alice, bob, carol;
    await check('alice\'s page with ?name=alice connects by itself', async () => {
      alice = await open('alice', '/?name=alice');
      await waitStatus(alice, 'connected');
    });
    await check('bob\'s page with ?name=bob connects by itself', async () => {
      bob = await open('bob', '/?name=bob');
      await waitStatus(bob, 'connected');
    });
    // Both pages join the page's default room, lobby, by themselves (chat.js):
    // once alice is in ROOM, her #members lists her and no longer bob
    await check(`alice joins ${ROOM}: #members lists her only`, async () => {
      await waitMembers(alice, ['alice', 'bob']);  // both in lobby first
      await alice.fill('#room', ROOM);
      await alice.click('#join');
      await waitMembers(alice, ['alice'], ['bob']);
    });
    await check(`bob joins ${ROOM}: both pages list alice and bob`, async () => {
      await bob.fill('#room', ROOM);
      await bob.click('#join');
      await waitMembers(bob, ['alice', 'bob']);
      await waitMembers(alice, ['alice', 'bob']);  // from chat.joined
    });
    await check('bob sees alice\'s message, alice sees her own, once each', async () => {
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
    await check('a message with HTML in it is shown as text, not markup', async () => {
      const text = '<img src="/none" onerror="window.__chatXss = 1"><b id="chatXss">bold</b>';
      await send(alice, text);
      await waitMessage(bob, `alice: ${text}`, 'bob\'s page');
      for (const page of [alice, bob]) {
        const injected = await page.evaluate(() =>
          document.querySelector('#chatXss') !== null || window.__chatXss === 1);
        if (injected) throw new Error('the text became HTML elements on the page');
      }
    });
    await check('bob closes his page: alice\'s #members drops him', async () => {
      await bob.context().close();
      bob = null;
      await waitMembers(alice, ['alice'], ['bob']);
    });
    await check('a page without ?name reads "disconnected"; #name + #connect connect it', async () => {
      carol = await open('carol', '/');
      await waitStatus(carol, 'disconnected');
      await carol.fill('#name', 'carol');
      await carol.click('#connect');
      await waitStatus(carol, 'connected');
      await carol.fill('#room', ROOM);
      await carol.click('#join');
      await waitMembers(carol, ['alice', 'carol']);
      await send(carol, 'carol was here');
      await waitMessage(alice, 'carol: carol was here', 'alice\'s page');
    }, { needs: false });
    await check('no uncaught JavaScript error on any page', async () => {
      if (pageErrors.length) throw new Error(pageErrors.join('; '));
    }, { needs: false });
  } finally {
    if (browser) await withTimeout(browser.close(), 10000, 'browser.close').catch(() => {});
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
