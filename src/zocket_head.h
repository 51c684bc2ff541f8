/* zocket.h - real-time apps over WebSocket, in one C file.
   https://github.com/ (vendored: this file is the whole library)

   USAGE
     In exactly one .c or .cpp file of your program:
         #define ZOCKET_IMPLEMENTATION
         #include "zocket.h"
     Everywhere else, include "zocket.h" on its own. Only libc is needed; the
     SHA-1 and base64 the WebSocket handshake requires are bundled.

   WHAT IS HERE (this version)
     The WebSocket protocol engine of RFC 6455, "sans-I/O": it turns bytes into
     events and events into bytes, and owns no socket, clock or thread, so the
     same code runs under an event loop, a game loop, a fuzzer or a test.
       - HTTP/1.1 request and response parsers (zero-copy, no allocation)
       - the server side of the upgrade: validation, subprotocol choice,
         101 / 400 / 426 / 431 answers
       - the client side: request generation and response verification
       - a frame engine (zk_ws) that parses frames split in any way, validates
         UTF-8 incrementally, reassembles fragmented messages up to a limit,
         answers pings and closes, and encodes (and masks) outgoing frames
     The event loop, sockets, router, rooms and client come in later versions.

   QUICK START (a server's read path; error handling shortened)
       zk_ws ws; zk_ws_event ev; zk_ws_init(&ws, NULL);   // server role
       ... after the handshake (see zk_http_parse_request) ...
       size_t used;
       while ((used = zk_ws_feed(&ws, buf, len, &ev)) > 0 || ev.type) {
           if (ev.reply_len) write_all(fd, ev.reply, ev.reply_len);
           if (ev.type == ZK_WS_EV_TEXT)   on_text(ev.data.ptr, ev.data.len);
           if (ev.type == ZK_WS_EV_CLOSE || ev.type == ZK_WS_EV_ERROR) break;
           buf += used; len -= used;
       }
       // bytes not consumed (a partial frame header) stay: read more after them
       char out[64];
       int n = zk_ws_send(&ws, out, sizeof out, ZK_WS_TEXT, "hi", 2, 1);
       write_all(fd, out, (size_t)n);
       zk_ws_free(&ws);

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

   ERRORS
     Functions that can fail return a negative zk_err (ZK_EAGAIN,
     ZK_EPROTO, ...); zk_err_name() and zk_strerror() describe one. There is no
     global error state. The frame engine reports protocol violations of the
     peer as events (ZK_WS_EV_ERROR) carrying the close code to send.

   OWNERSHIP
     Views (zk_str) handed out by a parser or an event point into your input
     buffer or into the engine's reassembly buffer: they are valid until the
     next call on the same object, or until you change the input buffer.
     Encoders write into buffers you provide and report how much they wrote.
     The library never frees a pointer you gave it.

   THREADS
     No global mutable state. Each object (zk_ws, a parsed request) belongs to
     one thread at a time.

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
