// Bun.serve WebSocket server (uWebSockets inside) speaking the part of the
// Zocket JSON protocol that bench/run_fanout.sh loads, for comparison with
// build/app_server (bench/app_server.c):
//   bun bench/peers/bun_app.js PORT
// Every message is JSON.parse'd; then
//   bench.echo (a call)   -> {"type":"__rpc_res","payload":<payload>,"rpcId":<id>}
//   room.join  (a call)   -> ws.subscribe("bench"), answered with null
//   room.send  (an event) -> ws.publish("bench", {"type":"room.message","payload":<payload>})
//                            to every subscriber, the sender too (publishToSelf)
//   anything else          -> __rpc_err / __error NOT_FOUND
// Binds 127.0.0.1 only, prints "listening on ws://127.0.0.1:PORT".
const port = Number(process.argv[2] || 9004);
const ROOM = 'bench';

function fail(ws, msg, code, message) {
  if (msg && msg.rpcId !== undefined) {
    ws.send(JSON.stringify({ type: '__rpc_err', rpcId: msg.rpcId, error: { code, message } }));
  } else {
    ws.send(JSON.stringify({ type: '__error', error: { code, message, ref: msg && msg.type } }));
  }
}

const server = Bun.serve({
  hostname: '127.0.0.1',
  port,
  fetch(req, srv) {
    if (srv.upgrade(req)) return undefined;
    return new Response('bun app server: connect a WebSocket client\n');
  },
  websocket: {
    perMessageDeflate: false,
    publishToSelf: true,
    message(ws, data) {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch (e) {
        fail(ws, null, 'BAD_REQUEST', 'malformed message');
        return;
      }
      switch (msg.type) {
        case 'room.send':
          ws.publish(ROOM, JSON.stringify({ type: 'room.message', payload: msg.payload }));
          break;
        case 'bench.echo':
          if (msg.rpcId !== undefined)
            ws.send(JSON.stringify({ type: '__rpc_res', payload: msg.payload, rpcId: msg.rpcId }));
          break;
        case 'room.join':
          ws.subscribe(ROOM);
          if (msg.rpcId !== undefined)
            ws.send(JSON.stringify({ type: '__rpc_res', payload: null, rpcId: msg.rpcId }));
          break;
        default:
          fail(ws, msg, 'NOT_FOUND', 'no such route');
      }
    },
  },
});
console.log(`listening on ws://127.0.0.1:${server.port} (bun ${Bun.version})`);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
