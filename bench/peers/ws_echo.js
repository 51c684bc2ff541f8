// Node `ws` 8 echo server (with bufferutil for masking) for bench/run_echo.sh.
//   node bench/peers/ws_echo.js PORT
// Binds 127.0.0.1 only, echoes every message with its type, prints
// "listening on ws://127.0.0.1:PORT" when ready.
'use strict';
const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, 'node_modules', 'ws'));

const port = Number(process.argv[2] || 9002);
let bufferutil = 'no';
try {
  require(path.join(__dirname, 'node_modules', 'bufferutil'));
  bufferutil = 'yes';
} catch (e) {
  bufferutil = 'no (' + e.code + ')';
}

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('error', () => {}); // a bad frame closes that connection, not the process
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('error', (e) => {
  console.error('ws_echo: ' + e.message);
  process.exit(1);
});
wss.on('listening', () => {
  console.log(`listening on ws://127.0.0.1:${port} (ws ${require(path.join(__dirname, 'node_modules', 'ws', 'package.json')).version}, bufferutil ${bufferutil})`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
