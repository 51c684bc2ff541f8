// Bun.serve WebSocket echo server (uWebSockets inside) for bench/run_echo.sh.
//   bun bench/peers/bun_echo.js PORT
// Binds 127.0.0.1 only, echoes every message with its type (a string comes
// back as text, a buffer as binary), prints "listening on ws://127.0.0.1:PORT".
const port = Number(process.argv[2] || 9003);

const server = Bun.serve({
  hostname: '127.0.0.1',
  port,
  fetch(req, srv) {
    if (srv.upgrade(req)) return undefined;
    return new Response('bun echo server: connect a WebSocket client\n');
  },
  websocket: {
    perMessageDeflate: false,
    message(ws, message) {
      ws.send(message);
    },
  },
});
console.log(`listening on ws://127.0.0.1:${server.port} (bun ${Bun.version})`);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
