// Echo server on Node ws 8, the peer that tests/interop/interop_client.c
// talks to.
//
//     node tests/interop/node_server.js --port N
//
// Prints "listening on ws://127.0.0.1:N" once ready; exits on SIGINT/SIGTERM.
// Echoes every message, except those starting with a marker (text or binary):
//   fragment:...  echoed whole but sent as five fragments (the fourth empty),
//                 cut at byte offsets, so a UTF-8 character may straddle two
//                 fragments (legal: only the whole message must be UTF-8)
//   close:NNNN    the server closes with code NNNN, reason "server closes"
//   ping:         the server pings (payload "from-server"), and once the pong
//                 is back sends the text "pong:ok"
'use strict';
const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, 'node', 'node_modules', 'ws'));

const i = process.argv.indexOf('--port');
const port = i > 0 ? Number(process.argv[i + 1]) : 0;

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  maxPayload: 64 << 20,
  perMessageDeflate: false,
  // ws's own defaults close with 1008 on long legal fragmented messages
  maxFragments: 0,
  maxBufferedChunks: 0
});

wss.on('connection', (ws) => {
  // Without an error handler a bad frame from the peer kills the process.
  ws.on('error', (err) => console.error(`node_server: ${err.message}`));
  ws.on('message', (data, isBinary) => {
    const head = data.subarray(0, 10).toString('latin1');
    if (head.startsWith('fragment:')) {
      const n = data.length;
      const cuts = [0, n >> 2, n >> 1, (3 * n) >> 2, (3 * n) >> 2, n];
      for (let k = 0; k < 5; k++) {
        ws.send(data.subarray(cuts[k], cuts[k + 1]), { binary: isBinary, fin: k === 4 });
      }
    } else if (head.startsWith('close:')) {
      ws.close(Number(head.slice(6, 10)), 'server closes');
    } else if (head.startsWith('ping:')) {
      ws.once('pong', () => ws.send('pong:ok'));
      ws.ping('from-server');
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});
wss.on('error', (err) => {
  console.error(`node_server: ${err.message}`);
  process.exit(1);
});
wss.on('listening', () => {
  console.log(`listening on ws://127.0.0.1:${wss.address().port}`);
});

function stop() {
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
