/* zocket.h - real-time apps over WebSocket, in one C file.
   https://github.com/ (vendored: this file is the whole library)

   USAGE
     In exactly one .c or .cpp file of your program:
         #define ZOCKET_IMPLEMENTATION
         #include "zocket.h"
     Everywhere else, include "zocket.h" on its own. Only libc is needed; the
     SHA-1 and base64 the WebSocket handshake requires are bundled.

   WHAT IS HERE (this version)
     A WebSocket server and client (RFC 6455) on an event loop, over TCP or
     an in-memory loopback transport, and under them the protocol engine,
     which does no I/O.
       - zk_loop: epoll / kqueue / poll, timers, a clock a test can make
         virtual, run or step (a game loop calls zk_loop_step(loop, 0) per
         frame), zk_loop_post from other threads
       - zk_server / zk_conn_connect / zk_conn: connections with open,
         message, close, drain and pong callbacks, write queues with
         backpressure, deadlines, graceful shutdown
       - zk_loopback_*: client-server pairs in memory with fault injection
       - zk_ws, zk_http_*: the sans-I/O engine: HTTP/1.1 heads, both sides of
         the upgrade, frames parsed however the input is split, UTF-8
         validated as it arrives, pings answered, closes echoed
       - zk_doc / zk_value / zk_writer: payloads read zero-copy and written
         without a chance of invalid output (JSON now, MessagePack later)
       - zk_router / zk_app: the Zocket layer - dotted routes with input
         schemas and middleware, calls (rpcId) answered with results or typed
         errors, events, a connect hook and optional __auth, client ids,
         rooms, sends to ids, rooms or everyone encoded once, counters;
         zk_router_call runs a route with no network (for tests)
       - zk_client: the Zocket client - reconnects with backoff and jitter
         by close code, pings to catch dead connections, calls with
         timeouts, a bounded offline queue, rejoin calls, shared identical
         calls, a result cache, undo for optimistic updates
       - zk_resp_*, zk_nats_*: the Redis and NATS wire protocols, sans I/O
         (the adapters that carry rooms between processes come next)
     MessagePack comes later.

   QUICK START (an echo server)
       #define ZOCKET_IMPLEMENTATION
       #include "zocket.h"

       static void on_message(zk_conn *conn, zk_str data, int binary) {
           zk_conn_send(conn, data.ptr, data.len, binary);
       }
       int main(void) {
           zk_loop *loop = zk_loop_new(NULL);
           zk_server_opts opts = {0};
           opts.port = 9001;                  // host: 127.0.0.1
           opts.cb.on_message = on_message;
           zk_server *server = zk_server_new(loop, &opts);
           if (zk_server_listen(server) < 0) return 1;
           return zk_loop_run(loop);
       }
     A Zocket server (routes answer {"type":"math.add","payload":{"a":1,"b":2},
     "rpcId":"1"} with {"type":"__rpc_res","payload":3,"rpcId":"1"}):
       static void add(zk_request *req) {
           zk_value p = zk_request_payload(req);
           zk_write_int(zk_request_writer(req), zk_value_int(zk_value_get(p, "a"), 0) +
                                                zk_value_int(zk_value_get(p, "b"), 0));
       }
       ...
           zk_router *router = zk_router_new();
           zk_router_on(router, "math.add", add, NULL);
           zk_app_opts ao = {0};
           ao.router = router;
           ao.server.port = 8080;
           zk_app *app = zk_app_new(loop, &ao, NULL);
           zk_server_listen(zk_app_server(app));
     The chat example (examples/chat.c) shows rooms, schemas and events.
     The engine alone (no sockets): see zk_ws_feed and examples/demo.c.

   OPTIONS (define before including; "all files" means every file that
   includes zocket.h must agree, "impl" means only the implementation file)
     ZOCKET_IMPLEMENTATION    impl   compile the implementation here
     ZK_STATIC                all    make every function static (private copy)
     ZK_ASSERT(c)             impl   assertion macro, default assert(c)
     ZK_MALLOC(n) ZK_REALLOC(p,n) ZK_FREE(p)
                              impl   allocator; define all three or none
     ZK_HTTP_MAX_HEADERS      all    headers kept per request/response (64);
                                     more is refused with 431
     ZK_HTTP_MAX_HEADER_BYTES all    default limit on a request or response
                                     head, request line and blank line
                                     included (16384); more is refused: 431
     ZK_WS_MAX_MESSAGE        all    default limit on a message, after
                                     reassembly (16 MiB); more closes 1009
     ZK_DOC_MAX_DEPTH         all    nesting limit of a parsed payload (64)
     ZK_DOC_MAX_NODES         all    values and keys per payload (65536)
     ZK_ROUTE_MAX_NAME        all    bytes in a route or event name (128)
     ZK_RPC_ID_MAX            all    bytes in an rpcId string (64)
     ZK_REQUEST_MAX_VALUES    all    middleware values per request (8)
     ZK_ROOM_MAX_NAME         all    bytes in a room name (128)
     ZK_SCHEMA_MAX_ISSUES     all    issues listed per INVALID_INPUT (16)
     ZK_RESP_MAX_ITEMS        all    values kept per Redis reply (16)
     ZK_HAVE_EPOLL, ZK_HAVE_KQUEUE
                              impl   0 or 1: which pollers to build
                                     (detected from the platform)

   ERRORS
     Functions that can fail return a negative zk_err (ZK_EAGAIN,
     ZK_EPROTO, ...); zk_err_name() and zk_strerror() describe one. There is no
     global error state. The frame engine reports protocol violations of the
     peer as events (ZK_WS_EV_ERROR) carrying the close code to send.

   OWNERSHIP
     Views (zk_str) handed to a callback are valid during that callback.
     Views from a parser or an engine event point into your input buffer or
     the engine's reassembly buffer: valid until the next call on the same
     object, or until you change the input buffer. Sends copy what you give
     them. Encoders write into buffers you provide and report how much they
     wrote. Every zk_*_new has a zk_*_free; a connection is freed by the
     library after its on_close. The library never frees a pointer you gave
     it (option structs are copied; zk_conn_opts strings too).

   THREADS
     No global mutable state. One loop per thread: a loop and everything on
     it (servers, connections, timers) are used from that thread only. The
     one thread-safe call is zk_loop_post, which also wakes the loop. A
     zk_ws or a parsed request belongs to one thread at a time.

   PLATFORM
     POSIX sockets; epoll on Linux, kqueue on BSD and macOS, poll elsewhere
     (ZK_HAVE_EPOLL / ZK_HAVE_KQUEUE set to 0 or 1 override the detection).
     The implementation file needs POSIX declarations: include zocket.h
     before other headers there, or compile with _GNU_SOURCE or
     _POSIX_C_SOURCE=200809L. pthread mutexes guard zk_loop_post (in glibc's
     libc; elsewhere link with -pthread). Host names other than "localhost"
     and numeric addresses are resolved with getaddrinfo, which blocks.

   LICENSE
     MIT or public domain (Unlicense), at your choice; see the end of file.
*/
#ifndef ZOCKET_H
#define ZOCKET_H

/* The implementation needs POSIX and BSD socket declarations that a strict
   -std=c99 hides; this works when zocket.h comes before other headers. */
#if defined(ZOCKET_IMPLEMENTATION) && !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE) && \
    !defined(_XOPEN_SOURCE) && !defined(_DEFAULT_SOURCE) && !defined(_BSD_SOURCE)
#define _GNU_SOURCE 1
#endif

#include <stddef.h>
#include <stdint.h>

#define ZOCKET_VERSION "0.1.0"

#ifdef ZK_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define ZK_API static __attribute__((unused))
#else
#define ZK_API static
#endif
#else
#define ZK_API extern
#endif

#ifdef __cplusplus
extern "C" {
#endif
