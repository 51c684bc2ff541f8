/* zocket.h - real-time apps over WebSocket, in one C file.
   https://github.com/ (vendored: this file is the whole library)

   USAGE
     In exactly one .c or .cpp file of your program:
         #define ZOCKET_IMPLEMENTATION
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
/* >>common: strings and errors ------------------------------------------ */

/* A borrowed view of bytes; not NUL-terminated. */
typedef struct zk_str {
    const char *ptr;
    size_t len;
} zk_str;

/* Initialiser for a zk_str from a string literal: zk_str s = ZK_STR("hi"); */
#define ZK_STR(lit) { (lit), sizeof(lit) - 1 }

/* zk_str of a NUL-terminated string (NULL gives the empty view). */
ZK_API zk_str zk_str_c(const char *s);

/* 1 if a and b hold the same bytes, ignoring ASCII case; else 0. */
ZK_API int zk_str_eq_nocase(zk_str a, const char *b);

/* Every error the library returns: name, value, text. */
#define ZK_ERRORS(X)                                                         \
    X(ZK_OK, 0, "success")                                                   \
    X(ZK_EAGAIN, -1, "incomplete input: call again with more bytes")        \
    X(ZK_ENOMEM, -2, "out of memory")                                        \
    X(ZK_EINVAL, -3, "invalid argument")                                     \
    X(ZK_ENOSPACE, -4, "output buffer too small")                            \
    X(ZK_EHTTP, -5, "malformed HTTP message")                                \
    X(ZK_ETOOBIG, -6, "size limit exceeded")                                 \
    X(ZK_ENOTWS, -7, "not a WebSocket upgrade request")                      \
    X(ZK_EHANDSHAKE, -8, "WebSocket handshake refused")                      \
    X(ZK_EPROTO, -9, "WebSocket protocol error")                             \
    X(ZK_ECLOSED, -10, "WebSocket closing or closed")                        \
    X(ZK_ENOTFOUND, -11, "not found")                                        \
    X(ZK_EBACKPRESSURE, -12, "write queue full: message not queued")         \
    X(ZK_EADDRINUSE, -13, "address already in use")                          \
    X(ZK_EIO, -14, "I/O error")                                              \
    X(ZK_ETIMEDOUT, -15, "timed out")                                        \
    X(ZK_EPARSE, -16, "malformed payload")

typedef enum zk_err {
#define ZK__ERR_ENUM(name, value, text) name = value,
    ZK_ERRORS(ZK__ERR_ENUM)
#undef ZK__ERR_ENUM
    ZK__ERR_END = 1 /* not an error: ends the list without a trailing comma */
} zk_err;

/* "ZK_EPROTO" for ZK_EPROTO; "ZK_E?" for a value that is not an error. */
ZK_API const char *zk_err_name(int err);
/* A short English description of err. */
ZK_API const char *zk_strerror(int err);
/* >>http: HTTP/1.1 heads and the WebSocket upgrade ---------------------- */

#ifndef ZK_HTTP_MAX_HEADERS
#define ZK_HTTP_MAX_HEADERS 64
#endif
#ifndef ZK_HTTP_MAX_HEADER_BYTES
#define ZK_HTTP_MAX_HEADER_BYTES 16384
#endif

typedef struct zk_http_header {
    zk_str name;
    zk_str value;
} zk_http_header;

/* Limits for the parsers; zero fields mean the defaults. */
typedef struct zk_http_limits {
    size_t max_bytes;   /* head size, blank line included; 0: ZK_HTTP_MAX_HEADER_BYTES */
    size_t max_headers; /* header lines; 0 or more than ZK_HTTP_MAX_HEADERS: ZK_HTTP_MAX_HEADERS */
} zk_http_limits;

/* A parsed request head. Every view points into the buffer that was parsed. */
typedef struct zk_http_request {
    zk_str method;       /* "GET" */
    zk_str target;       /* as sent: "/chat?room=1" (or absolute-form) */
    zk_str path;         /* "/chat", still percent-encoded ("/" for an
                            absolute-form target without a path) */
    zk_str query;        /* "room=1", without '?'; empty when there is none */
    int version;         /* 10 for HTTP/1.0, 11 for HTTP/1.1 */
    size_t header_count;
    zk_http_header headers[ZK_HTTP_MAX_HEADERS];
    int status;          /* after an error: the status to answer (400, 431, 505) */
    const char *error;   /* after an error: what was wrong (static text) */
} zk_http_request;

/* A parsed response head (the client side of the handshake). */
typedef struct zk_http_response {
    int version;         /* 10 or 11 */
    int status;          /* 101, 404, ... */
    zk_str reason;       /* "Switching Protocols" */
    size_t header_count;
    zk_http_header headers[ZK_HTTP_MAX_HEADERS];
    const char *error;   /* after an error: what was wrong (static text) */
} zk_http_response;

/* Parses a request head from buf[0..len). Call again with the same buffer
   and more bytes after ZK_EAGAIN, passing the length seen so far as
   prev_len (0 the first time) so the search for the end resumes where it
   stopped. Nothing is allocated; req's views point into buf.
   Returns the head's size (> 0; the body, if any, starts there),
   ZK_EAGAIN (incomplete), ZK_EHTTP (malformed; req->status is 400 or 505) or
   ZK_ETOOBIG (over a limit; req->status is 431). limits may be NULL.
       int n = zk_http_parse_request(buf, len, seen, &req, NULL); seen = len; */
ZK_API int zk_http_parse_request(const char *buf, size_t len, size_t prev_len,
                                 zk_http_request *req, const zk_http_limits *limits);

/* The same for a response head. Only the head is parsed; a body is the
   caller's. Errors: ZK_EHTTP, ZK_ETOOBIG (res->error says why). */
ZK_API int zk_http_parse_response(const char *buf, size_t len, size_t prev_len,
                                  zk_http_response *res, const zk_http_limits *limits);

/* The value of the first header called name (any case), or {NULL, 0}. */
ZK_API zk_str zk_http_header_get(const zk_http_header *headers, size_t count,
                                 const char *name);

/* 1 if the comma-separated list (as in Connection: keep-alive, Upgrade)
   holds token, ignoring case and optional white space; else 0. */
ZK_API int zk_http_list_has(zk_str list, const char *token);

/* Percent-decodes in into out (with '+' as a space when plus_is_space, as in
   query strings). Returns the decoded length, ZK_EINVAL on a bad escape or
   ZK_ENOSPACE when cap is too small. out is not NUL-terminated. out == in.ptr
   is allowed (decoding in place). */
ZK_API int zk_url_decode(zk_str in, char *out, size_t cap, int plus_is_space);

/* Finds name in a query string ("a=1&b=x%20y") and percent-decodes its value
   into out. Returns the value's length, ZK_ENOTFOUND, ZK_EINVAL or
   ZK_ENOSPACE. A name without '=' has the empty value.
       char v[64]; int n = zk_query_get(req.query, "token", v, sizeof v); */
ZK_API int zk_query_get(zk_str query, const char *name, char *out, size_t cap);

/* The reason phrase for a status ("Not Found"), "Unknown" if not known. */
ZK_API const char *zk_http_status_text(int status);

/* Writes a complete response: status line, Content-Length (not for 1xx and
   204, which take no body), Connection: close, your headers, the body.
   Returns the bytes written or ZK_ENOSPACE; ZK_EINVAL if a header holds CR,
   LF or NUL or its name is not a token, or a 1xx/204 has a body. */
ZK_API int zk_http_write_response(char *out, size_t cap, int status,
                                  const zk_http_header *headers, size_t header_count,
                                  const void *body, size_t body_len);

/* ---- server side of the upgrade ---- */

/* What zk_ws_upgrade_check found in a request. */
typedef struct zk_ws_upgrade {
    zk_str key;          /* Sec-WebSocket-Key */
    zk_str host;         /* Host */
    zk_str origin;       /* Origin, {NULL,0} when absent; "null" from blank pages */
    zk_str protocols;    /* the offered subprotocols, first header line only */
    const char *protocol;/* the chosen subprotocol (one of yours) or NULL */
    char accept[29];     /* Sec-WebSocket-Accept, NUL-terminated */
    int status;          /* after ZK_EHANDSHAKE: 400, 405 or 426 */
    const char *error;   /* after ZK_EHANDSHAKE: what was wrong */
} zk_ws_upgrade;

/* Validates a parsed request as a WebSocket upgrade (RFC 6455 4.2.1) and
   chooses a subprotocol: the first of yours, in your order, that the client
   offered, compared exactly (none chosen is not an error: the client
   decides). The method must be GET (405), one Host (400). Returns ZK_OK,
   ZK_ENOTWS when the request asks for no WebSocket upgrade (answer it as
   plain HTTP), or ZK_EHANDSHAKE (answer with zk_ws_upgrade_refuse).
   Origin is not checked here; an allow-list is the server's. */
ZK_API int zk_ws_upgrade_check(const zk_http_request *req,
                               const char *const *protocols, size_t protocol_count,
                               zk_ws_upgrade *up);

/* Writes the 101 Switching Protocols answer, with your extra headers.
   Returns the bytes written, ZK_ENOSPACE or ZK_EINVAL (bad header). */
ZK_API int zk_ws_upgrade_accept(char *out, size_t cap, const zk_ws_upgrade *up,
                                const zk_http_header *headers, size_t header_count);

/* Writes the refusal for a failed check: up->status with a short text body;
   426 carries Sec-WebSocket-Version: 13. Returns bytes or ZK_ENOSPACE. */
ZK_API int zk_ws_upgrade_refuse(char *out, size_t cap, const zk_ws_upgrade *up);

/* ---- client side of the upgrade ---- */

typedef struct zk_ws_client_handshake {
    const char *host;     /* Host header, e.g. "127.0.0.1:9001" (required) */
    const char *path;     /* path and query, e.g. "/chat?room=1"; NULL: "/" */
    const char *origin;   /* Origin header, or NULL for none */
    const char *const *protocols; /* subprotocols to offer, in preference order */
    size_t protocol_count;
    const zk_http_header *headers; /* extra headers, or NULL */
    size_t header_count;
    unsigned char key[16]; /* the nonce: 16 random bytes chosen by the caller */
} zk_ws_client_handshake;

/* Writes the upgrade request. Returns the bytes written, ZK_ENOSPACE, or
   ZK_EINVAL (missing host, or a field holding CR, LF, NUL or a bad name). */
ZK_API int zk_ws_client_request(char *out, size_t cap, const zk_ws_client_handshake *hs);

/* Checks the server's answer against the request: status 101, Upgrade,
   Connection, Sec-WebSocket-Accept, a subprotocol only if one offered, no
   extension. Returns ZK_OK (*protocol is the chosen one or empty; it may be
   NULL) or ZK_EHANDSHAKE (*error, if not NULL, says why). */
ZK_API int zk_ws_client_verify(const zk_http_response *res, const zk_ws_client_handshake *hs,
                               zk_str *protocol, const char **error);

/* Computes Sec-WebSocket-Accept for a key: out gets 28 chars and a NUL. */
ZK_API void zk_ws_accept_key(zk_str key, char out[29]);
/* >>ws: the RFC 6455 frame engine (sans-I/O) ----------------------------- */

#ifndef ZK_WS_MAX_MESSAGE
#define ZK_WS_MAX_MESSAGE (16u * 1024u * 1024u)
#endif

/* Opcodes. */
enum {
    ZK_WS_CONTINUATION = 0x0,
    ZK_WS_TEXT = 0x1,
    ZK_WS_BINARY = 0x2,
    ZK_WS_CLOSE = 0x8,
    ZK_WS_PING = 0x9,
    ZK_WS_PONG = 0xA
};

/* Close codes (RFC 6455 7.4.1). 4000-4999 are the application's. */
enum {
    ZK_CLOSE_NORMAL = 1000,
    ZK_CLOSE_GOING_AWAY = 1001,
    ZK_CLOSE_PROTOCOL_ERROR = 1002,
    ZK_CLOSE_UNSUPPORTED = 1003,
    ZK_CLOSE_NO_STATUS = 1005,   /* never sent: the peer's close had no code */
    ZK_CLOSE_ABNORMAL = 1006,    /* never sent: the connection dropped */
    ZK_CLOSE_INVALID_DATA = 1007,
    ZK_CLOSE_POLICY = 1008,
    ZK_CLOSE_TOO_BIG = 1009,
    ZK_CLOSE_EXTENSION = 1010,
    ZK_CLOSE_INTERNAL = 1011
};

/* Roles: a client masks what it sends and refuses masked frames. */
enum { ZK_WS_SERVER = 0, ZK_WS_CLIENT = 1 };

/* Connection states, as zk_ws_state() reports them. */
enum {
    ZK_WS_OPEN = 0,       /* messages flow both ways */
    ZK_WS_CLOSE_SENT = 1, /* we sent close; the peer's data still arrives
                             and its pings are still answered */
    ZK_WS_CLOSED = 2      /* closes exchanged, or the peer failed: drop TCP */
};

/* What zk_ws_feed found. */
enum {
    ZK_WS_EV_NONE = 0, /* nothing complete yet: read more bytes */
    ZK_WS_EV_TEXT,     /* a whole text message (valid UTF-8) in data */
    ZK_WS_EV_BINARY,   /* a whole binary message in data */
    ZK_WS_EV_PING,     /* data: its payload; reply holds the pong */
    ZK_WS_EV_PONG,     /* data: its payload */
    ZK_WS_EV_CLOSE,    /* the peer closed: code (1005 if none), data: reason;
                          reply holds our answering close, if one is due */
    ZK_WS_EV_ERROR     /* the peer broke the protocol: code is the close code
                          sent in reply (1002, 1007, 1009), error says why */
};

/* The largest control frame: 2 header bytes, 4 mask bytes, 125 payload. */
#define ZK_WS_MAX_CONTROL_FRAME 131

typedef struct zk_ws_event {
    int type;            /* ZK_WS_EV_* */
    int code;            /* CLOSE and ERROR: a close code */
    zk_str data;         /* payload or close reason; valid until the next
                            zk_ws_feed or zk_ws_free on this engine, and only
                            while the input buffer is unchanged */
    const char *error;   /* ERROR: a static description */
    size_t reply_len;    /* > 0: send reply[0..reply_len) to the peer now,
                            before any later frame of yours */
    unsigned char reply[ZK_WS_MAX_CONTROL_FRAME];
} zk_ws_event;

typedef struct zk_ws_opts {
    int role;            /* ZK_WS_SERVER (default) or ZK_WS_CLIENT */
    size_t max_message;  /* 0: ZK_WS_MAX_MESSAGE; more closes with 1009 */
    uint64_t mask_seed;  /* client: seeds the masking-key generator; give it
                            random bits (the loop does). 0 is a fixed seed. */
} zk_ws_opts;

/* One WebSocket connection's protocol state, about 64 bytes; the buffer for
   fragmented or split messages is allocated only while one is in flight. */
typedef struct zk_ws {
    unsigned char *msg;       /* reassembly buffer, or NULL */
    size_t msg_len, msg_cap;
    size_t max_message;
    uint64_t frame_left;      /* payload bytes of the current frame to come */
    uint64_t rng;             /* masking-key generator (client) */
    uint32_t utf8_in;         /* UTF-8 validator state, incoming text */
    uint32_t utf8_out;        /* UTF-8 validator state, outgoing text */
    unsigned char mask[4];    /* current incoming frame's masking key */
    unsigned char role, state, flags, msg_op, send_op, mask_off;
} zk_ws;

/* Sets up ws; opts may be NULL (server, defaults). Allocates nothing. */
ZK_API void zk_ws_init(zk_ws *ws, const zk_ws_opts *opts);

/* Frees the reassembly buffer, if any. ws can be reused after zk_ws_init. */
ZK_API void zk_ws_free(zk_ws *ws);

/* Consumes bytes from in[0..len) until it completes one event (or needs more
   bytes) and returns how many it consumed; the event is in *ev (type
   ZK_WS_EV_NONE when none completed). Bytes it did not consume - at most a
   partial frame header or a partial control frame, so under 132 - must be
   passed again, followed by newer ones. in is modified: payloads are
   unmasked in place. Call in a loop until it returns 0 with no event.
   The result is the same however the input is split. After CLOSE or ERROR
   every later byte is consumed and ignored. */
ZK_API size_t zk_ws_feed(zk_ws *ws, void *in, size_t len, zk_ws_event *ev);

/* The bytes a frame with this payload takes (header, mask, payload). */
ZK_API size_t zk_ws_frame_size(const zk_ws *ws, size_t payload_len);

/* Encodes one frame (masked if ws is a client) into out. opcode is TEXT,
   BINARY, CONTINUATION, PING or PONG; fin = 0 starts or continues a
   fragmented message (then CONTINUATION frames, the last with fin = 1).
   Returns the bytes written, or ZK_ENOSPACE (cap < zk_ws_frame_size),
   ZK_EINVAL (bad opcode or sequence, control payload over 125 bytes, text
   that is not UTF-8) or ZK_ECLOSED (a close was sent).
       char out[64]; int n = zk_ws_send(&ws, out, 64, ZK_WS_TEXT, "hi", 2, 1); */
ZK_API int zk_ws_send(zk_ws *ws, void *out, size_t cap, int opcode,
                      const void *payload, size_t len, int fin);

/* Encodes a close frame with code (0 for none) and a UTF-8 reason of at
   most 123 bytes, and moves ws to CLOSE_SENT. Returns the bytes written,
   ZK_ENOSPACE, ZK_EINVAL (a code one may not send, such as 1005, or a bad
   reason) or ZK_ECLOSED (already sent). */
ZK_API int zk_ws_close(zk_ws *ws, void *out, size_t cap, int code,
                       const char *reason, size_t reason_len);

/* ZK_WS_OPEN, ZK_WS_CLOSE_SENT or ZK_WS_CLOSED. */
ZK_API int zk_ws_state(const zk_ws *ws);

/* Writes a frame header (2 to 14 bytes) for a payload of len bytes, with
   the masking key when mask is not NULL. Returns its size. Stateless. */
ZK_API size_t zk_ws_frame_header(unsigned char out[14], int opcode, int fin,
                                 uint64_t len, const unsigned char *mask);

/* XORs data with the masking key, starting at key byte (offset % 4). The
   same call unmasks. Works a vector or 8 bytes at a time. */
ZK_API void zk_ws_mask(void *data, size_t len, const unsigned char mask[4], size_t offset);

/* 1 if a close code may be sent or received on the wire, else 0. */
ZK_API int zk_ws_close_code_valid(int code);

/* 1 if s[0..len) is complete, valid UTF-8 (RFC 3629), else 0. */
ZK_API int zk_utf8_valid(const void *s, size_t len);
/* >>loop: event loop, timers, clock, randomness, wakeup -------------------- */

/* One loop per thread. It owns a poller (epoll, kqueue or poll), a timer
   heap, a clock (the system's monotonic clock, or a virtual one that only
   moves when a test says so) and a seedable random generator. Run it with
   zk_loop_run, or drive it from a game loop with zk_loop_step(loop, 0).
   Every call on a loop and on what belongs to it must come from the loop's
   thread, except zk_loop_post, which any thread may call. */
typedef struct zk_loop zk_loop;

enum {
    ZK_POLLER_AUTO = 0, /* epoll on Linux, kqueue on BSD and macOS, else poll */
    ZK_POLLER_EPOLL,
    ZK_POLLER_KQUEUE,
    ZK_POLLER_POLL
};

typedef struct zk_loop_opts {
    int poller;         /* ZK_POLLER_*; 0: the best one this system has */
    int virtual_clock;  /* 1: time moves only through zk_loop_advance (tests) */
    uint64_t seed;      /* random generator seed; 0: seeded from the OS */
    size_t max_events;  /* events taken per poll; 0: 256 */
} zk_loop_opts;

/* A new loop, or NULL (out of memory, or the poller could not be made).
   opts may be NULL. */
ZK_API zk_loop *zk_loop_new(const zk_loop_opts *opts);

/* Frees the loop. Free its servers first. Client connections still open
   are dropped (on_close 1006) and those finishing a close are freed;
   posted functions that never ran are dropped (their arg is not freed). */
ZK_API void zk_loop_free(zk_loop *loop);

/* Runs until zk_loop_stop. Returns 0, or a negative zk_err if polling fails. */
ZK_API int zk_loop_run(zk_loop *loop);

/* One pass: waits for I/O at most timeout_ms (0: do not wait; -1: until
   something happens or a timer is due), then runs I/O callbacks, due
   timers and posted functions. Returns the number of callbacks run (>= 0)
   or a negative zk_err. A game loop calls zk_loop_step(loop, 0) per frame. */
ZK_API int zk_loop_step(zk_loop *loop, int timeout_ms);

/* Makes zk_loop_run return after the current pass. */
ZK_API void zk_loop_stop(zk_loop *loop);

/* The loop's clock in milliseconds (monotonic; starts near 0 with a virtual
   clock). Cached per pass. */
ZK_API uint64_t zk_loop_now(const zk_loop *loop);

/* Virtual clock only: moves time forward by ms, running every timer that
   falls due on the way, in order, and the in-memory deliveries they cause.
   Also, with a virtual clock, a zk_loop_step that would wait (timeout not 0)
   and finds no I/O or work jumps time to the next timer and runs it, so
   zk_loop_run works and a test never waits for real. */
ZK_API void zk_loop_advance(zk_loop *loop, uint64_t ms);

/* Milliseconds until the loop has something to do without I/O: 0 when
   work is pending or a timer is due, -1 when no timer is set. An embedding
   event loop waits on zk_loop_fd for at most this long, then steps. */
ZK_API int zk_loop_timeout(const zk_loop *loop);

/* The poller's descriptor (epoll or kqueue), readable when the loop has
   work: add it to another event loop and call zk_loop_step(loop, 0) when it
   fires. -1 with the poll backend. */
ZK_API int zk_loop_fd(const zk_loop *loop);

/* The loop's random generator (xoshiro256**), seeded by opts.seed. Not for
   secrets; WebSocket keys and masks and reconnect jitter use it. */
ZK_API uint64_t zk_loop_random(zk_loop *loop);
ZK_API void zk_loop_random_bytes(zk_loop *loop, void *out, size_t len);

/* One slot for your pointer. */
ZK_API void zk_loop_set_data(zk_loop *loop, void *data);
ZK_API void *zk_loop_data(const zk_loop *loop);

typedef void (*zk_post_fn)(zk_loop *loop, void *arg);

/* Thread-safe: asks the loop's thread to call fn(loop, arg) soon, in the
   order posted, and wakes the loop. Returns 0 or ZK_ENOMEM. Not
   async-signal-safe (it allocates and locks), nor is zk_loop_stop: take
   signals in a thread (sigwait) and post from there, as examples/chat.c
   does. */
ZK_API int zk_loop_post(zk_loop *loop, zk_post_fn fn, void *arg);

/* Timers. A zk_timer is yours to allocate (embed it in your own struct);
   the loop keeps only a pointer to it while it is active. Resolution 1 ms;
   a heap, so thousands cost O(log n) each. */
typedef struct zk_timer zk_timer;
typedef void (*zk_timer_fn)(zk_timer *timer);
struct zk_timer {
    void *data;         /* yours */
    zk_timer_fn fn;
    zk_loop *loop;
    uint64_t due, repeat, seq;
    size_t slot;        /* heap position + 1, 0 when inactive */
};

ZK_API void zk_timer_init(zk_loop *loop, zk_timer *timer, zk_timer_fn fn, void *data);

/* Calls fn after after_ms, then every repeat_ms if that is not 0. Starting
   an active timer restarts it. Returns 0 or ZK_ENOMEM. */
ZK_API int zk_timer_start(zk_timer *timer, uint64_t after_ms, uint64_t repeat_ms);
ZK_API void zk_timer_stop(zk_timer *timer);
ZK_API int zk_timer_active(const zk_timer *timer);
/* >>net: WebSocket connections, server and client, over TCP or loopback ---- */

/* A zk_conn is one WebSocket connection, server side or client side, over
   TCP or over the in-memory loopback transport: the same code runs on both.
   Callbacks run on the loop's thread. A connection is freed by the library
   after its on_close callback returns; do not use it after that. */
typedef struct zk_conn zk_conn;
typedef struct zk_server zk_server;

/* What a server or client tells you. Every callback is optional. */
typedef struct zk_callbacks {
    /* The connection is open: the 101 was sent (server) or verified
       (client). req is the upgrade request (server side only, else NULL);
       its views are valid during the call. */
    void (*on_open)(zk_conn *conn, const zk_http_request *req);
    /* A whole message: binary is 0 for text (valid UTF-8), 1 for binary.
       data is valid during the call. */
    void (*on_message)(zk_conn *conn, zk_str data, int binary);
    /* The connection is gone: code and reason from the peer's close frame
       (1005 when it had none), or 1006 when it dropped without one, or the
       code we sent when we failed it. clean is 1 after a full close
       handshake. After this returns the connection is no longer yours: do
       not use it. (The library may still finish the TCP close, then frees
       it; zk_server_free and zk_loop_free free any still finishing.) A
       client whose connect failed gets on_close with 1006 and no on_open; a
       server connection that on_upgrade did not accept gets no on_close,
       except a plain HTTP request still waiting for zk_conn_respond (see
       zk_http_fn). */
    void (*on_close)(zk_conn *conn, int code, zk_str reason, int clean);
    /* The write queue fell below the high-water mark after a send reported
       backpressure (ZK_SEND_BACKPRESSURE). */
    void (*on_drain)(zk_conn *conn);
    /* A pong arrived (answers to zk_conn_ping and to heartbeats). */
    void (*on_pong)(zk_conn *conn, zk_str data);
} zk_callbacks;

/* Server side: a request without a WebSocket upgrade. Answer it with
   zk_conn_respond (now or later); the connection closes after the answer.
   If it goes away before you answered (peer gone, handshake_timeout_ms,
   zk_server_free), on_close tells you (1006), and then the connection may
   not be used. Without this callback such requests get 426 Upgrade Required. */
typedef void (*zk_http_fn)(zk_conn *conn, const zk_http_request *req);

/* Server side: a valid upgrade request, before the answer. Return 0 to
   accept (zk_conn_set_data here is the usual place to attach your state),
   or an HTTP status (401, 403, ...) to refuse it: the peer gets that status
   and no WebSocket frame, with the status text as body, or with your own
   headers and body if you answer with zk_conn_respond before returning. */
typedef int (*zk_upgrade_fn)(zk_conn *conn, const zk_http_request *req, const zk_ws_upgrade *up);

typedef struct zk_server_opts {
    const char *host;             /* address to listen on; NULL: "127.0.0.1". "::"
                                     or "0.0.0.0" for all interfaces. Numeric or
                                     "localhost": no name lookup. */
    int port;                     /* 0: any free port (see zk_server_port) */
    int backlog;                  /* 0: 511 */
    const char *const *protocols; /* subprotocols you speak, preferred first */
    size_t protocol_count;
    size_t max_message;           /* 0: ZK_WS_MAX_MESSAGE (16 MiB); more: close 1009 */
    size_t write_high_water;      /* 0: 1 MiB. Past it sends report backpressure, and
                                     after a message the connection is not read
                                     until its queue falls below it again */
    size_t write_limit;           /* 0: 16 MiB + high water. Past it sends are refused */
    uint32_t handshake_timeout_ms;/* 0: 10000. Upgrade not done by then: closed */
    uint32_t idle_timeout_ms;     /* 0: 30000. A peer silent this long is pinged */
    uint32_t pong_timeout_ms;     /* 0: 10000. No pong (or anything) by then: closed */
    uint32_t close_timeout_ms;    /* 0: 3000. Close handshake not done by then: TCP closed */
    uint32_t message_timeout_ms;  /* 0: 30000. A message (every frame of it) not whole
                                     this long after its first byte came: close 1008 */
    uint32_t write_timeout_ms;    /* 0: 30000. Bytes queued and none of them taken by
                                     the peer for this long (it does not read): the
                                     TCP connection is dropped (on_close 1006) */
    size_t max_connections;       /* 0: no limit of ours (the fd limit applies) */
    size_t max_per_address;       /* connections at once from one IP address (IPv4,
                                     or IPv6; loopback transport not counted);
                                     0: no limit. More: accepted and closed at once */
    const char *const *origins;   /* Origin allow-list ("https://app.example.com",
                                     compared without case): an upgrade whose
                                     Origin header is not listed gets 403 before
                                     any hook runs. Requests without Origin (not
                                     from a browser) pass. NULL: every origin */
    size_t origin_count;
    zk_callbacks cb;
    zk_upgrade_fn on_upgrade;
    zk_http_fn on_http;
    void *data;                   /* yours: zk_server_data() */
} zk_server_opts;

/* A server on loop; it listens once zk_server_listen succeeds (loopback
   connections need no listening). NULL when out of memory. */
ZK_API zk_server *zk_server_new(zk_loop *loop, const zk_server_opts *opts);

/* Binds host:port over TCP. Returns 0 or a negative zk_err
   (ZK_EADDRINUSE, ZK_EINVAL for a bad host, ZK_EIO). */
ZK_API int zk_server_listen(zk_server *server);

/* The port listened on (useful with port 0), or 0. */
ZK_API int zk_server_port(const zk_server *server);

/* Graceful shutdown: stop accepting, close every connection with 1001,
   let queues flush and closes complete, and after timeout_ms (0: 5000)
   drop whatever is left. done (may be NULL) runs when no connection is
   left, possibly before this returns; done may free the server. */
ZK_API void zk_server_shutdown(zk_server *server, uint32_t timeout_ms,
                               void (*done)(zk_server *server));

/* Frees the server, dropping its connections at once (on_close runs with
   1006 for each). */
ZK_API void zk_server_free(zk_server *server);

ZK_API size_t zk_server_connections(const zk_server *server);
ZK_API void *zk_server_data(const zk_server *server);
ZK_API zk_loop *zk_server_loop(const zk_server *server);

/* Client side. */
typedef struct zk_conn_opts {
    const char *url;              /* ws://host[:port][/path][?query]; host numeric,
                                     [v6], "localhost" (no lookup) or a name
                                     (getaddrinfo: blocks the loop while it runs) */
    const char *origin;           /* Origin header, or NULL */
    const char *const *protocols; /* subprotocols to offer, preferred first */
    size_t protocol_count;
    const zk_http_header *headers;/* extra HTTP headers, or NULL */
    size_t header_count;
    uint32_t connect_timeout_ms;  /* 0: 10000, TCP connect and upgrade together */
    uint32_t close_timeout_ms;    /* 0: 3000 */
    size_t max_message;           /* 0: ZK_WS_MAX_MESSAGE */
    size_t write_high_water;      /* 0: 1 MiB */
    size_t write_limit;           /* 0: 16 MiB + high water */
    zk_callbacks cb;
    void *data;                   /* the connection's initial zk_conn_data */
} zk_conn_opts;

/* Starts connecting; the outcome arrives as on_open or on_close (1006).
   Returns the connection, or NULL with *err set (a bad URL or a header with
   CR, LF or a bad name: ZK_EINVAL; headers over 4 KiB: ZK_ETOOBIG; name not
   found: ZK_ENOTFOUND; out of memory). err may be NULL. */
ZK_API zk_conn *zk_conn_connect(zk_loop *loop, const zk_conn_opts *opts, int *err);

/* In-memory transport: a client connection to server through a loopback
   pair, with faults to inject. Nothing touches the network; with a virtual
   clock, time passes only through zk_loop_advance. */
typedef struct zk_loopback_opts {
    size_t chunk;        /* deliver bytes in pieces of at most this size; 0: as written */
    uint32_t delay_ms;   /* bytes arrive this long after they were written */
    size_t capacity;     /* bytes in flight per direction before writes block; 0: 256 KiB */
} zk_loopback_opts;

/* The client side of a new loopback pair to server; url gives the path and
   query ("ws://loopback/chat?x=1"), the rest of copts is as for
   zk_conn_connect. fault may be NULL. */
ZK_API zk_conn *zk_loopback_connect(zk_server *server, const zk_conn_opts *copts,
                                    const zk_loopback_opts *fault, int *err);

/* Fault injection on a loopback connection (either end); each returns
   ZK_EINVAL on a TCP connection.
   stall: 1 stops this end reading (its peer's writes back up), 0 resumes.
   drop: both ends see the connection reset now (on_close 1006).
   silence: 1 makes bytes vanish both ways without a close (a half-open
   peer, as when a cable is pulled); 0 restores delivery. */
ZK_API int zk_loopback_stall(zk_conn *conn, int stalled);
ZK_API int zk_loopback_drop(zk_conn *conn);
ZK_API int zk_loopback_silence(zk_conn *conn, int silent);

/* What zk_conn_send reports (or a negative zk_err when refused). */
enum {
    ZK_SEND_OK = 0,          /* queued below the high-water mark */
    ZK_SEND_BACKPRESSURE = 1 /* queued, but the queue is over the mark: wait for on_drain */
};

/* Queues a message (copied). binary 0: text (must be UTF-8); 1: binary.
   Returns ZK_SEND_OK, ZK_SEND_BACKPRESSURE, or ZK_ECLOSED (not open),
   ZK_EINVAL (text not UTF-8, too big for the peer's limit is not known),
   ZK_EBACKPRESSURE (the queue would pass write_limit: nothing queued),
   ZK_ENOMEM. Frames go out at the end of the loop pass, coalesced. */
ZK_API int zk_conn_send(zk_conn *conn, const void *data, size_t len, int binary);

/* A message encoded once, to send to many connections (a broadcast, a
   game state): the frame header is built and text is validated once. Server
   connections copy the ready bytes when they are few, and hold a reference
   to them from 2 KiB on; a client connection must mask, so it encodes it
   again. Free it whenever you like (the bytes live while a queue holds
   them); the count is not atomic: use a frame on one loop's thread.
   Returns NULL when out of memory or when text is not UTF-8 (*err says,
   may be NULL).
       zk_frame *f = zk_frame_new(state, n, 0, NULL);
       for (i = 0; i < nplayers; i++) zk_conn_send_frame(players[i], f);
       zk_frame_free(f); */
typedef struct zk_frame zk_frame;
ZK_API zk_frame *zk_frame_new(const void *data, size_t len, int binary, int *err);
ZK_API void zk_frame_free(zk_frame *frame);
/* As zk_conn_send, with the message of frame. */
ZK_API int zk_conn_send_frame(zk_conn *conn, const zk_frame *frame);

/* Sends a ping (payload at most 125 bytes); the pong comes to on_pong. */
ZK_API int zk_conn_ping(zk_conn *conn, const void *data, size_t len);

/* Starts the close handshake with code (0: none) and a reason (NULL: none,
   at most 123 bytes). Queued messages go first. on_close follows when the
   peer answers or close_timeout_ms passes. ZK_ECLOSED if already closing. */
ZK_API int zk_conn_close(zk_conn *conn, int code, const char *reason);

/* Drops the connection now, without a close handshake: on_close gets 1006. */
ZK_API void zk_conn_abort(zk_conn *conn);

/* Answers a plain HTTP request (see zk_http_fn) and closes afterwards. */
ZK_API int zk_conn_respond(zk_conn *conn, int status, const zk_http_header *headers,
                           size_t header_count, const void *body, size_t body_len);

ZK_API void zk_conn_set_data(zk_conn *conn, void *data);
ZK_API void *zk_conn_data(const zk_conn *conn);
/* Bytes queued and not yet written. */
ZK_API size_t zk_conn_buffered(const zk_conn *conn);
/* The negotiated subprotocol, or an empty view. */
ZK_API zk_str zk_conn_protocol(const zk_conn *conn);
/* Client side: the HTTP status of an upgrade answer that was not 101 (401,
   404, 503...), readable in on_close; else 0. */
ZK_API int zk_conn_http_status(const zk_conn *conn);
/* The server a server-side connection belongs to, or NULL. */
ZK_API zk_server *zk_conn_server(const zk_conn *conn);
ZK_API zk_loop *zk_conn_loop(const zk_conn *conn);
/* "127.0.0.1:50312", "[::1]:50312" or "loopback" into out; returns length. */
ZK_API int zk_conn_peer(const zk_conn *conn, char *out, size_t cap);
/* >>value: payloads - parsed documents, values, writers (codec-neutral) --- */

/* Handlers read payloads as zk_value handles into a parsed zk_doc and write
   answers with a zk_writer; neither says which codec is on the wire, so the
   same handler serves JSON and (later) MessagePack clients.

   Parsing is zero-copy: string values are views into the message buffer,
   whose escapes are decoded in place (so the parser needs a writable
   buffer). A document's node array is reused from message to message: a
   zk_doc that stays alive allocates only when a message is larger than any
   before it. Limits bound every message: nesting depth (without recursion)
   and node count. */

#ifndef ZK_DOC_MAX_DEPTH
#define ZK_DOC_MAX_DEPTH 64
#endif
#ifndef ZK_DOC_MAX_NODES
#define ZK_DOC_MAX_NODES 65536
#endif

enum {
    ZK_TYPE_NONE = 0, /* no such value (a missing member, an index out of range) */
    ZK_TYPE_NULL,
    ZK_TYPE_BOOL,
    ZK_TYPE_INT,      /* an integer that fits int64 (written without . or e) */
    ZK_TYPE_DOUBLE,   /* any other number */
    ZK_TYPE_STRING,   /* valid UTF-8 */
    ZK_TYPE_BINARY,   /* raw bytes (MessagePack bin; never from JSON) */
    ZK_TYPE_ARRAY,
    ZK_TYPE_OBJECT
};

typedef struct zk__node zk__node;

/* A parsed document. Zero-initialise it (or zk_doc_init), parse into it as
   often as you like, zk_doc_free it once. */
typedef struct zk_doc {
    zk__node *nodes;
    uint32_t count, cap;
    uint32_t max_nodes;  /* values plus object keys; 0: ZK_DOC_MAX_NODES; more: ZK_ETOOBIG */
    uint32_t max_depth;  /* 0 or more than ZK_DOC_MAX_DEPTH: ZK_DOC_MAX_DEPTH */
    const char *error;   /* after a failed parse: what was wrong (static text) */
    size_t error_at;     /* and at which byte of the input */
} zk_doc;

/* A handle to one value of a document: valid while the document and the
   buffer it was parsed from are unchanged. Copy it freely. */
typedef struct zk_value {
    const zk_doc *doc;
    uint32_t at;
} zk_value;

ZK_API void zk_doc_init(zk_doc *doc);
ZK_API void zk_doc_free(zk_doc *doc);

/* Parses one JSON text (RFC 8259) from buf[0..len), which it modifies
   (string escapes are decoded in place). Leading and trailing white space
   is allowed; anything else after the value is an error. Numbers too large
   for a double (1e400) are refused; too small ones become 0. Returns ZK_OK,
   ZK_EPARSE (doc->error and doc->error_at say what and where), ZK_ETOOBIG
   (containers nested deeper than max_depth, or more than max_nodes values
   and keys) or ZK_ENOMEM. Numbers go through the C library's strtod and
   snprintf with the locale's decimal point: do not change the locale
   (setlocale) while another thread parses or writes.
       zk_doc doc = {0};
       if (zk_json_parse(&doc, buf, len) == ZK_OK)
           printf("%s\n", zk_value_str(zk_value_get(zk_doc_root(&doc), "name")).ptr); */
ZK_API int zk_json_parse(zk_doc *doc, char *buf, size_t len);

/* The top value (ZK_TYPE_NONE before a successful parse). */
ZK_API zk_value zk_doc_root(const zk_doc *doc);

ZK_API int zk_value_type(zk_value v);
/* "none", "null", "bool", "int", "double", "string", "binary", "array", "object" */
ZK_API const char *zk_type_name(int type);

/* Typed getters: the value when it has that type, else def. An int is also
   a double; a double is an int only when it is integral and fits. */
ZK_API int64_t zk_value_int(zk_value v, int64_t def);
ZK_API double zk_value_double(zk_value v, double def);
ZK_API int zk_value_bool(zk_value v, int def);
/* A string's (or binary's) bytes; {NULL, 0} for other types. Strings are
   not NUL-terminated. */
ZK_API zk_str zk_value_str(zk_value v);

/* Elements of an array, members of an object, bytes of a string or a
   binary; else 0. */
ZK_API size_t zk_value_len(zk_value v);

/* The member called key of an object (the first one, if repeated), or a
   ZK_TYPE_NONE value. zk_value_get_n takes a length-delimited key. */
ZK_API zk_value zk_value_get(zk_value obj, const char *key);
ZK_API zk_value zk_value_get_n(zk_value obj, const char *key, size_t key_len);
/* Element i of an array (or member value i of an object), or a
   ZK_TYPE_NONE value. O(i). */
ZK_API zk_value zk_value_at(zk_value arr, size_t i);
/* A path of members and indexes: "user.name", "items[2]", "a.b[0].c"; ""
   is v itself. A ZK_TYPE_NONE value when any step is missing or the path is
   malformed. */
ZK_API zk_value zk_value_path(zk_value v, const char *path);

/* Iteration over an array's elements or an object's member values:
       for (e = zk_value_first(arr); zk_value_type(e); e = zk_value_next(e)) ...
   zk_value_key gives an object member's key (an empty view otherwise). */
ZK_API zk_value zk_value_first(zk_value container);
ZK_API zk_value zk_value_next(zk_value element);
ZK_API zk_str zk_value_key(zk_value member);

/* Writers. A zk_writer builds one value (a payload, an envelope) into a
   buffer: yours, fixed, or its own, grown as needed and kept for reuse.
   It cannot produce invalid output: strings are escaped for you, a key is
   required before each value in an object and refused elsewhere, NaN and
   infinities are refused, containers must be closed; the first misuse is
   kept in zk_writer_error and later calls do nothing. */
typedef struct zk_writer {
    char *buf;
    size_t len, cap;
    size_t max;          /* growable buffer: at most this many bytes (past it:
                            ZK_ETOOBIG); 0: 16 MiB */
    int err;             /* the first error (ZK_EINVAL, ZK_ENOSPACE, ZK_ETOOBIG, ZK_ENOMEM) */
    int owned;           /* buf was allocated by the writer */
    uint32_t depth;
    int root_done;
    unsigned char want_key[ZK_DOC_MAX_DEPTH]; /* per level: 1 object wanting a key, 2 object wanting a value, 0 array */
    unsigned char first[ZK_DOC_MAX_DEPTH];    /* per level: no element written yet */
    unsigned char codec;                      /* ZK_CODEC_*: what it writes */
    uint32_t mp_at[ZK_DOC_MAX_DEPTH];         /* MessagePack: where each open container's header is */
    uint32_t mp_n[ZK_DOC_MAX_DEPTH];          /* and how many elements or members it has so far */
} zk_writer;

/* buf NULL: the writer allocates (and zk_writer_free releases); otherwise it
   writes into buf[0..cap) and fails with ZK_ENOSPACE past it. */
ZK_API void zk_writer_init(zk_writer *w, char *buf, size_t cap);
/* Starts a new value, keeping the buffer. */
ZK_API void zk_writer_reset(zk_writer *w);
ZK_API void zk_writer_free(zk_writer *w);

ZK_API void zk_write_object(zk_writer *w);
ZK_API void zk_write_array(zk_writer *w);
ZK_API void zk_write_end(zk_writer *w);   /* closes the innermost object or array */
ZK_API void zk_write_key(zk_writer *w, const char *key);
ZK_API void zk_write_key_n(zk_writer *w, const char *key, size_t len);
ZK_API void zk_write_str(zk_writer *w, const char *s);          /* NULL writes null */
ZK_API void zk_write_str_n(zk_writer *w, const char *s, size_t len);
ZK_API void zk_write_int(zk_writer *w, int64_t v);
ZK_API void zk_write_double(zk_writer *w, double v);
ZK_API void zk_write_bool(zk_writer *w, int v);
ZK_API void zk_write_null(zk_writer *w);
/* Copies a parsed value, whatever its codec, with everything inside it
   (binary as a base64 string in JSON). A ZK_TYPE_NONE value: ZK_EINVAL. */
ZK_API void zk_write_value(zk_writer *w, zk_value v);

/* Raw bytes: MessagePack bin; in JSON, a base64 string (RFC 4648, padded). */
ZK_API void zk_write_binary(zk_writer *w, const void *p, size_t len);

/* ---- MessagePack ----
   The same documents and writers speak MessagePack: a handler reads
   zk_value handles and writes with zk_write_* whatever the codec. */

enum {
    ZK_CODEC_JSON = 0,           /* a writer's default */
    ZK_CODEC_MSGPACK = 1
};

/* What a writer writes from its next value on: ZK_CODEC_JSON or
   ZK_CODEC_MSGPACK (the smallest form of each integer, string, binary and
   container header; doubles as float64; containers are counted as they are
   written and their headers fitted when they close). Call it after init or
   reset, before writing: ZK_EINVAL otherwise, or for another codec. It
   stays through resets. */
ZK_API int zk_writer_set_codec(zk_writer *w, int codec);

/* Parses one MessagePack value from buf[0..len) into doc, as zk_json_parse
   does JSON: the same node types, limits and errors. nil, bool, every
   integer width (an unsigned one above INT64_MAX becomes a double, as a JSON
   integer that large does), float32 and float64, str (valid UTF-8, else
   refused), bin (ZK_TYPE_BINARY), array and map (keys must be strings).
   Refused with ZK_EPARSE: ext types (no handler could read them), NaN and
   infinities (JSON cannot carry them), the never-used byte 0xc1, a length
   or count larger than the bytes left (checked before anything is
   allocated), data after the value. The buffer is not modified: strings are
   views into it. Returns ZK_OK, ZK_EPARSE, ZK_ETOOBIG, ZK_ENOMEM. */
ZK_API int zk_msgpack_parse(zk_doc *doc, const char *buf, size_t len);

/* The finished value: {buf, len} when exactly one complete value was
   written and no error happened, else {NULL, 0}. */
ZK_API zk_str zk_writer_result(const zk_writer *w);
/* ZK_OK, or the first error. */
ZK_API int zk_writer_error(const zk_writer *w);
/* >>app: the Zocket layer - router, middleware, RPC, rooms, caller -------- */

/* A zk_router maps dotted message names ("chat.send") to handlers, with an
   input schema and middleware per route. A zk_app serves a router over
   WebSocket in the Zocket protocol (JSON shown):
       client -> server  {"type":"users.get","payload":{...},"rpcId":"c1"}
       server -> client  {"type":"__rpc_res","payload":{...},"rpcId":"c1"}
                         {"type":"__rpc_err","rpcId":"c1","error":{"code":..,"message":..}}
                         {"type":"__error","error":{"code":..,"message":..,"ref":"chat.send"}}
                         {"type":"chat.message","payload":{...}}
   A message with an rpcId is a call and always gets exactly one answer
   (__rpc_res or __rpc_err); one without is an event, answered only when it
   fails (__error). {"type":"__ping"} is answered {"type":"__pong"} (with the
   same payload), before authentication and without routing: the heartbeat
   of browser clients, which cannot send ping frames (with an rpcId it is a
   call, answered __rpc_res with the payload). zk_router_call invokes
   a route with no network at all. A client that offers the subprotocol
   zocket.msgpack exchanges the same envelopes as MessagePack maps in binary
   frames (zk_app_opts.codecs); handlers do not see the difference.

   Limits: a route name at most ZK_ROUTE_MAX_NAME bytes of letters, digits,
   '_', '-', in '.'-separated non-empty parts; an rpcId a string of at most
   ZK_RPC_ID_MAX bytes or an integer; ZK_REQUEST_MAX_VALUES context values per
   request; rooms per connection max_rooms_per_conn; a room name at most
   ZK_ROOM_MAX_NAME bytes. Messages are bounded by the server's max_message
   and parsed under zk_doc's depth and node limits. */

#ifndef ZK_ROUTE_MAX_NAME
#define ZK_ROUTE_MAX_NAME 128
#endif
#ifndef ZK_RPC_ID_MAX
#define ZK_RPC_ID_MAX 64
#endif
#ifndef ZK_REQUEST_MAX_VALUES
#define ZK_REQUEST_MAX_VALUES 8
#endif
#ifndef ZK_ROOM_MAX_NAME
#define ZK_ROOM_MAX_NAME 128
#endif
#ifndef ZK_SCHEMA_MAX_ISSUES
#define ZK_SCHEMA_MAX_ISSUES 16
#endif

/* Error codes of the protocol; applications add their own (any non-empty
   string of at most 64 bytes). */
#define ZK_CODE_BAD_REQUEST "BAD_REQUEST"             /* malformed message, missing type */
#define ZK_CODE_NOT_FOUND "NOT_FOUND"                 /* no such route */
#define ZK_CODE_INVALID_INPUT "INVALID_INPUT"         /* the payload fails the schema */
#define ZK_CODE_UNAUTHORIZED "UNAUTHORIZED"
#define ZK_CODE_FORBIDDEN "FORBIDDEN"
#define ZK_CODE_TIMEOUT "TIMEOUT"                     /* no answer by the deadline */
#define ZK_CODE_TOO_MANY_REQUESTS "TOO_MANY_REQUESTS"
#define ZK_CODE_PAYLOAD_TOO_LARGE "PAYLOAD_TOO_LARGE"
#define ZK_CODE_INTERNAL "INTERNAL"

/* Close codes the app sends (a client reconnects after 4000-4499, stops
   after 4500-4999). */
enum {
    ZK_CLOSE_SLOW_CONSUMER = 4001, /* could not keep up (ZK_DELIVER_CLOSE_SLOW) */
    ZK_CLOSE_UNAUTHORIZED = 4501   /* __auth failed or did not come in time */
};

typedef struct zk_router zk_router;
typedef struct zk_app zk_app;
typedef struct zk_request zk_request;

/* ---- schemas ----
   A declarative description of a payload, checked before any middleware or
   handler runs. Failures answer INVALID_INPUT with
       "data":{"issues":[{"path":"user.name","message":"expected string, got int"}]}
   (at most ZK_SCHEMA_MAX_ISSUES issues). Schemas are static data:
       static const zk_schema send_fields[] = {
           {"room", ZK_TYPE_STRING, ZK_SCHEMA_MIN | ZK_SCHEMA_MAX, 1, 64, NULL, NULL},
           {"text", ZK_TYPE_STRING, ZK_SCHEMA_MAX, 0, 2000, NULL, NULL},
           {NULL, 0, 0, 0, 0, NULL, NULL}};
       static const zk_schema send_input = {NULL, ZK_TYPE_OBJECT, 0, 0, 0, send_fields, NULL};
*/
enum {
    ZK_SCHEMA_OPTIONAL = 1, /* the member may be missing (members are required otherwise) */
    ZK_SCHEMA_NULLABLE = 2, /* null is accepted too */
    ZK_SCHEMA_MIN = 4,      /* check min */
    ZK_SCHEMA_MAX = 8,      /* check max */
    ZK_SCHEMA_STRICT = 16   /* object: members not in fields are refused */
};

typedef struct zk_schema {
    const char *name;               /* a member's name in a fields list; NULL ends the list */
    int type;                       /* ZK_TYPE_*: NONE any value, DOUBLE any number,
                                       INT an integral number */
    unsigned flags;                 /* ZK_SCHEMA_* */
    double min, max;                /* string: length in bytes; number: value;
                                       array: elements; object: members */
    const struct zk_schema *fields; /* object: its members, ended by a NULL name */
    const struct zk_schema *items;  /* array: every element */
} zk_schema;

/* Checks v against schema, writing issues into w as an array of
   {path, message} (w may be NULL). Returns the number of issues. */
ZK_API size_t zk_schema_check(const zk_schema *schema, zk_value v, zk_writer *w);

/* ---- requests ----
   What a handler or middleware gets. The request and its payload are valid
   until the handler returns, unless it is kept (zk_request_keep). */

/* A handler: read the payload, write the result into zk_request_writer (a
   call's result; nothing written is null), or answer an error with
   zk_request_fail. Returning without either answers with what was written.
   A handler may also keep the request and answer later. */
typedef void (*zk_handler_fn)(zk_request *req);

/* Middleware runs before the handler, global first, then the route's, in
   the order added. Return 0 to go on; to refuse, call zk_request_fail and
   return nonzero (nonzero without a failure answers INTERNAL). */
typedef int (*zk_middleware_fn)(zk_request *req);

ZK_API zk_str zk_request_type(const zk_request *req);
/* The payload (ZK_TYPE_NONE when absent; also after zk_request_keep). */
ZK_API zk_value zk_request_payload(const zk_request *req);
/* 1 for a call (it has an rpcId), 0 for an event. */
ZK_API int zk_request_is_call(const zk_request *req);
/* The connection it came from: NULL from zk_router_call, and for a kept
   request whose connection has closed. */
ZK_API zk_conn *zk_request_conn(const zk_request *req);
/* The app serving it; NULL from zk_router_call. */
ZK_API zk_app *zk_request_app(const zk_request *req);
/* The connection's context (set by the connect hook or an __auth handler),
   or zk_router_call's context argument. Setting it sets the connection's. */
ZK_API void *zk_request_context(const zk_request *req);
ZK_API void zk_request_set_context(zk_request *req, void *context);
/* The data pointer of the route (zk_route_opts.data). */
ZK_API void *zk_request_route_data(const zk_request *req);

/* Values middleware hands on to later middleware and the handler, by key
   (compared as strings; the key must outlive the request: a literal).
   Setting an existing key replaces it. ZK_ENOSPACE past
   ZK_REQUEST_MAX_VALUES keys. zk_request_get: NULL when not set. */
ZK_API int zk_request_set(zk_request *req, const char *key, void *value);
ZK_API void *zk_request_get(const zk_request *req, const char *key);

/* Where the result goes: write one value. For zk_request_fail it is the
   error's optional "data" (leave it empty for none). Reset between uses. */
ZK_API zk_writer *zk_request_writer(zk_request *req);

/* Answers with what the writer holds (null when nothing). A writer that was
   misused answers INTERNAL instead. Events send nothing on success. */
ZK_API int zk_request_ok(zk_request *req);

/* Answers a typed error: code (ZK_CODE_* or yours), message (NULL: the
   code's default text), and as data what the writer holds, if it holds a
   complete value. INTERNAL's message reaches the client only when the app
   has expose_internal; otherwise it reads "internal error". */
ZK_API int zk_request_fail(zk_request *req, const char *code, const char *message);

/* Keeps the request past the handler's return: the returned copy stays
   valid until you answer it with zk_request_ok or zk_request_fail, which
   frees it (call them on the loop's thread: post back with zk_loop_post
   after work elsewhere). Its payload is gone (copy what you need first);
   the type, rpcId, context and values are kept. If the app's
   request_timeout_ms passes first, the client gets TIMEOUT and your later
   answer returns ZK_ETIMEDOUT; if the connection closed, ZK_ECLOSED (the
   copy is freed either way). NULL when out of memory (the call then gets
   INTERNAL). */
ZK_API zk_request *zk_request_keep(zk_request *req);

/* ---- router ---- */

typedef struct zk_route_opts {
    const zk_schema *input;                /* NULL: any payload */
    const zk_middleware_fn *middleware;    /* run after the router's global middleware */
    size_t middleware_count;
    void *data;                            /* zk_request_route_data() */
} zk_route_opts;

ZK_API zk_router *zk_router_new(void);
ZK_API void zk_router_free(zk_router *router);

/* Registers name. opts may be NULL (it is copied, the schema is not: keep
   it alive). Returns 0, ZK_EINVAL (bad name, NULL handler, name taken) or
   ZK_ENOMEM. */
ZK_API int zk_router_on(zk_router *router, const char *name, zk_handler_fn handler,
                        const zk_route_opts *opts);

/* Adds global middleware: it runs for every route, before the route's. */
ZK_API int zk_router_use(zk_router *router, zk_middleware_fn middleware);

/* Copies every route of sub into router as "prefix.name"; sub's global
   middleware runs before each copied route's own. Later changes to sub do
   not show. Returns 0, ZK_EINVAL (bad prefix, a name taken) or ZK_ENOMEM;
   on failure nothing was added. */
ZK_API int zk_router_mount(zk_router *router, const char *prefix, const zk_router *sub);

/* How many routes. */
ZK_API size_t zk_router_count(const zk_router *router);

/* ---- caller: invoke a route with no network ---- */

/* An answer, as the client would see it. ok 1: data is the result as JSON
   text ("null" when none). ok 0: code, message and data (the error's data as
   JSON, or empty) describe the error. Valid during the callback. */
typedef struct zk_answer {
    int ok;
    zk_str code;
    zk_str message;
    zk_str data;
} zk_answer;
typedef void (*zk_answer_fn)(const zk_answer *answer, void *user);

/* Runs route `type` as a call with payload (JSON text, copied; NULL for
   none) and context as the connection's context: schema, middleware and
   handler, exactly as over a connection. done gets the answer before this
   returns, or later when a kept request is answered. Errors are as a
   client sees them, except INTERNAL messages, which are shown. Returns 0,
   or ZK_ENOMEM (done not called). Needs no loop; nothing is sent.
       zk_router_call(router, "users.get", "{\"id\":1}", 8, NULL, on_answer, &out); */
ZK_API int zk_router_call(zk_router *router, const char *type, const char *payload,
                          size_t payload_len, void *context, zk_answer_fn done, void *user);

/* ---- app: a router served over WebSocket ---- */

/* The connect hook: a valid upgrade request arrived (path, query, headers in
   req; zk_query_get reads parameters; zk_conn_peer the address). Return 0
   to accept, setting *context (zk_request_context); or an HTTP status to
   refuse the upgrade before any WebSocket frame: the body is the status
   text, or yours if you call zk_conn_respond(conn, status, ...) first (a
   hook that answers with zk_conn_respond and returns 0 refuses too). */
typedef int (*zk_connect_fn)(zk_conn *conn, const zk_http_request *req, void **context);

/* A connection that was accepted is gone; it is still in its rooms (to tell
   the others) and is taken out of them after this returns. */
typedef void (*zk_disconnect_fn)(zk_conn *conn, void *context, int code);

typedef struct zk_app_opts {
    zk_router *router;            /* required; borrowed: keep it while the app runs */
    zk_server_opts server;        /* address, limits, timeouts. Its cb, on_upgrade
                                     and data belong to the app: leave them 0 */
    const char *path;             /* the WebSocket endpoint, starting with '/', e.g.
                                     "/ws"; NULL: any path. Upgrades elsewhere get 404 */
    zk_connect_fn on_connect;     /* NULL: accept all, context NULL */
    zk_disconnect_fn on_disconnect;
    zk_http_fn on_http;           /* plain HTTP requests (a page); NULL: 426 */
    int require_auth;             /* 1: the first message must be __auth (a route
                                     you register); nothing else is routed before
                                     it succeeds (UNAUTHORIZED); a failure closes
                                     with ZK_CLOSE_UNAUTHORIZED */
    uint32_t auth_timeout_ms;     /* 0: 10000. Not authenticated by then: closed
                                     with ZK_CLOSE_UNAUTHORIZED */
    uint32_t request_timeout_ms;  /* 0: 30000. A kept request not answered by then
                                     gets TIMEOUT */
    int expose_internal;          /* 1: INTERNAL errors carry the handler's text */
    size_t max_rooms_per_conn;    /* 0: 64. More joins: ZK_ENOSPACE */
    size_t max_kept_per_conn;     /* 0: 1024 kept requests at once per connection;
                                     more calls answer TOO_MANY_REQUESTS */
    uint32_t rate_per_sec;        /* messages a connection may send per second, on
                                     average (a token bucket); 0: 10000;
                                     ZK_RATE_UNLIMITED: no limit. Past it each
                                     message is answered TOO_MANY_REQUESTS (not
                                     routed); a client that goes on for another
                                     rate_burst messages is closed with 1008 */
    uint32_t rate_burst;          /* the bucket's size; 0: rate_per_sec */
    int codecs;                   /* ZK_APP_JSON | ZK_APP_MSGPACK; 0: both. A client
                                     offering subprotocol "zocket.msgpack" speaks
                                     MessagePack (binary frames), "zocket.json" or
                                     none JSON (text frames). With server.protocols
                                     NULL the app offers the ones it accepts; a client
                                     left with a codec the app refuses gets 400 */
    void *data;                   /* yours: zk_app_data() */
} zk_app_opts;

/* The codecs of zk_app_opts.codecs, and the subprotocols that choose them.
   A MessagePack client sends and gets the same envelope as a map (type,
   payload, rpcId, error) in binary frames; handlers see zk_value payloads
   and write results with zk_write_* either way. */
enum { ZK_APP_JSON = 1, ZK_APP_MSGPACK = 2 };
#define ZK_RATE_UNLIMITED 0xffffffffu
#define ZK_PROTOCOL_JSON "zocket.json"
#define ZK_PROTOCOL_MSGPACK "zocket.msgpack"

/* A new app on loop with its own zk_server (listen with
   zk_server_listen(zk_app_server(app)), or connect over loopback). NULL with
   *err (ZK_EINVAL: no router, server callbacks set, require_auth without an
   __auth route; ZK_ENOMEM). err may be NULL. */
ZK_API zk_app *zk_app_new(zk_loop *loop, const zk_app_opts *opts, int *err);
/* Frees the app and its server (connections dropped, kept requests freed:
   do not answer them afterwards). The router is yours. */
ZK_API void zk_app_free(zk_app *app);
ZK_API zk_server *zk_app_server(const zk_app *app);
ZK_API void *zk_app_data(const zk_app *app);

/* The app of a connection it serves, else NULL. */
ZK_API zk_app *zk_conn_app(const zk_conn *conn);
/* A connection's client id: 22 characters of base64url from 128 random bits
   (unique, unguessable), NUL-terminated; "" for a connection not served by
   an app. */
ZK_API const char *zk_conn_id(const zk_conn *conn);
ZK_API void *zk_conn_context(const zk_conn *conn);
/* The codec a connection of an app speaks: ZK_CODEC_JSON or ZK_CODEC_MSGPACK. */
ZK_API int zk_conn_codec(const zk_conn *conn);
ZK_API void zk_conn_set_context(zk_conn *conn, void *context);
/* The open connection with that id, or NULL. */
ZK_API zk_conn *zk_app_find(const zk_app *app, const char *id);

/* ---- rooms ----
   Named sets of connections of one app. A room exists while it has members;
   a connection leaves all its rooms when it closes. Names are C strings
   (a name from a payload with "\u0000" in it is cut there: check for it).
   The listing calls take out NULL with cap 0 to count. */

/* 0 joined, 1 already a member; ZK_EINVAL (a name empty, longer than
   ZK_ROOM_MAX_NAME or not UTF-8; not an open app connection), ZK_ENOSPACE (the
   connection is in max_rooms_per_conn rooms), ZK_ENOMEM. */
ZK_API int zk_room_join(zk_conn *conn, const char *room);
/* 0 left, ZK_ENOTFOUND when not a member. */
ZK_API int zk_room_leave(zk_conn *conn, const char *room);
ZK_API int zk_room_has(const zk_conn *conn, const char *room);
/* The rooms conn is in: up to cap names into out (valid until the room
   changes); returns how many there are. */
ZK_API size_t zk_room_list(const zk_conn *conn, const char **out, size_t cap);
/* Members of a room: up to cap connections into out; returns how many. */
ZK_API size_t zk_room_members(const zk_app *app, const char *room, zk_conn **out, size_t cap);
/* Every room of the app: up to cap names into out; returns how many. */
ZK_API size_t zk_app_rooms(const zk_app *app, const char **out, size_t cap);

/* ---- sending ----
   Build a message with zk_app_message (write its payload, or nothing for
   none), then deliver it with zk_app_send. It is encoded once, whatever the
   number of recipients, and a connection named by several targets gets it
   once. Each connection's queued messages go out in one write at the end of
   the loop pass.
       zk_writer *w = zk_app_message(app, "chat.message");
       zk_write_object(w); zk_write_key(w, "text"); zk_write_str(w, text); zk_write_end(w);
       zk_target to = {0}; to.rooms = &room; to.room_count = 1;
       zk_app_send(app, &to); */

/* What to do with a recipient whose queue is at or past its high-water
   mark (sends to it report backpressure). */
enum {
    ZK_DELIVER_QUEUE = 0,   /* queue it anyway, up to the write limit (then drop it
                               and close the connection, ZK_CLOSE_SLOW_CONSUMER) */
    ZK_DELIVER_VOLATILE,    /* drop it (positions, typing indicators) */
    ZK_DELIVER_CLOSE_SLOW   /* drop it and close the connection (ZK_CLOSE_SLOW_CONSUMER) */
};

typedef struct zk_target {
    zk_conn *const *conns;  size_t conn_count;
    const char *const *ids; size_t id_count;   /* client ids (zk_conn_id) */
    const char *const *rooms; size_t room_count;
    int all;                                   /* every open connection of the app
                                                  (with require_auth: authenticated) */
    const zk_conn *except;                     /* never this one (the sender) */
    int delivery;                              /* ZK_DELIVER_* */
} zk_target;

/* Starts a message of type; write its payload into the writer returned (one
   value, or nothing for no payload). Starting another message discards an
   unsent one. */
ZK_API zk_writer *zk_app_message(zk_app *app, const char *type);
/* Delivers the message started last. Connections not yet authenticated
   (require_auth) are skipped, even when named. Returns how many connections
   it was queued to, or ZK_EINVAL (no message, a bad type or payload),
   ZK_ENOMEM. */
ZK_API int zk_app_send(zk_app *app, const zk_target *to);

/* Counters since the app started. */
typedef struct zk_app_stats {
    uint64_t connections;       /* open now */
    uint64_t accepted;          /* connections accepted in all */
    uint64_t refused;           /* upgrades refused (path, connect hook) */
    uint64_t messages_in, bytes_in;
    uint64_t messages_out, bytes_out; /* one per connection a message was queued
                                         to; bytes of messages, not of frames */
    uint64_t dropped;           /* deliveries not queued (volatile, write limit, slow close) */
    uint64_t slow_closed;       /* connections closed as slow consumers */
    uint64_t errors;            /* error answers sent (__rpc_err, __error) */
} zk_app_stats;
ZK_API void zk_app_get_stats(const zk_app *app, zk_app_stats *out);
/* >>client: the Zocket client - reconnects, heartbeats, calls, offline queue - */

/* A zk_client is one logical connection to a Zocket server that survives
   the network: it reconnects with exponential backoff and jitter, notices
   dead connections with pings, times out calls, keeps what is sent while
   offline in a bounded queue, shares identical calls in flight, caches
   results, and undoes optimistic updates that fail. Everything runs on its
   loop's thread; with a virtual-clock loop and a loopback server (opts.
   loopback) every schedule is deterministic.

   Reconnection follows the close code: 1000 (a normal close, by either
   side), 1008 (policy) and 4500-4999 (e.g. unauthorized) end it; anything
   else - 1001 going away, 1006 dropped, 1011, 1012, 4000-4499, a failed
   connect - schedules another attempt. An upgrade refused with a 4xx
   status (401, 403, 404...; not 408 or 429) ends it too: the same request
   would meet the same answer. Attempt k (from 1) waits a random
   time in [0, min(backoff_max_ms, backoff_base_ms * 2^(k-1))] ("full
   jitter"); after 1001 or 1012 (a server going away or restarting), the
   first attempt waits a random time in [0, restart_spread_ms] instead, so
   that the clients of a restarted server do not all come back at once. The
   attempt count resets once a connection has stayed open stable_ms. */

enum {
    ZK_CLIENT_CONNECTING = 1, /* the first connection is being made */
    ZK_CLIENT_OPEN,           /* connected (and authenticated, with auth) */
    ZK_CLIENT_RECONNECTING,   /* waiting to retry, or retrying */
    ZK_CLIENT_CLOSED          /* for good: closed by you, or a final close code,
                                 or max_attempts spent */
};

/* "connecting", "open", "reconnecting", "closed" */
ZK_API const char *zk_client_state_name(int state);

typedef struct zk_client zk_client;

/* What a call came to. ok 1: value is the result (ZK_TYPE_NULL for null).
   ok 0: code and message say why - the server's code, or the client's own:
   TIMEOUT (no answer in time; a late answer is dropped), DISCONNECTED (the
   connection dropped with the call in flight: retriable), CLOSED (the
   client closed for good: by you, or a final close code, also for calls in
   flight then); value is the error's data, or ZK_TYPE_NONE. cached 1: the
   result came from the cache. Everything is valid during the callback. */
typedef struct zk_result {
    int ok;
    zk_str code;
    zk_str message;
    zk_value value;
    int cached;
} zk_result;

#define ZK_CODE_DISCONNECTED "DISCONNECTED"
#define ZK_CODE_CLOSED "CLOSED"

typedef void (*zk_result_fn)(zk_client *client, const zk_result *result, void *user);
/* An event of a type you listen to; payload is ZK_TYPE_NONE when absent. */
typedef void (*zk_listener_fn)(zk_client *client, zk_str type, zk_value payload, void *user);
/* The state changed: code and reason say why (the close code and text, or
   0 and what failed), as zk_client_error does afterwards. OPEN is told
   after on_open ran and the rejoins and the queue went out. */
typedef void (*zk_state_fn)(zk_client *client, int state, int code, const char *reason);
/* The connection is open (again): runs before rejoin calls and queued
   messages go out, so what you send here goes first. reconnect is 0 the
   first time. */
typedef void (*zk_open_fn)(zk_client *client, int reconnect);

typedef struct zk_client_opts {
    const char *url;                /* ws://host[:port]/path[?query] (see zk_conn_opts) */
    const zk_http_header *params;   /* connection "headers", sent as query parameters */
    size_t param_count;
    const zk_http_header *headers;  /* real HTTP headers */
    size_t header_count;
    const char *const *protocols;   /* subprotocols to offer (at most 8, with codec
                                       ZK_CODEC_MSGPACK 7: "zocket.msgpack" comes first) */
    size_t protocol_count;
    int codec;                      /* ZK_CODEC_JSON (0) or ZK_CODEC_MSGPACK: calls and
                                       events go as MessagePack (payloads are still
                                       given as JSON text, results read as zk_value);
                                       a server that does not choose zocket.msgpack
                                       ends the client (1008). Cached results are kept
                                       as JSON: a bin result comes back from the cache
                                       as a base64 string */
    const char *auth;               /* JSON payload of an __auth call made first on
                                       every connection; NULL: none. Until it
                                       succeeds the client is not open; an error
                                       answer closes the client, no answer in
                                       auth_timeout_ms drops the connection and
                                       tries again */
    uint32_t auth_timeout_ms;       /* 0: 10000 */
    int no_reconnect;               /* 1: a dropped connection closes the client */
    uint32_t backoff_base_ms;       /* 0: 500 */
    uint32_t backoff_max_ms;        /* 0: 15000 */
    uint32_t restart_spread_ms;     /* 0: 5000 (after 1001 or 1012) */
    uint32_t max_attempts;          /* reconnect attempts in a row; 0: no limit */
    uint32_t stable_ms;             /* 0: 5000 */
    uint32_t connect_timeout_ms;    /* 0: 10000 per attempt */
    uint32_t ping_interval_ms;      /* 0: 15000. Every interval a ping; no pong or
                                       other data within pong_timeout_ms: dead,
                                       closed and reconnected */
    uint32_t pong_timeout_ms;       /* 0: 5000 */
    uint32_t call_timeout_ms;       /* 0: 10000: calls without their own timeout */
    size_t queue_max;               /* 0: 1024 messages waiting while not open */
    size_t queue_max_bytes;         /* 0: 1 MiB of them */
    size_t max_pending;             /* 0: 4096 calls without their result yet (sent,
                                       queued or sharing an identical call's
                                       request); more: zk_client_call gives
                                       ZK_ENOSPACE */
    size_t max_message;             /* 0: ZK_WS_MAX_MESSAGE */
    zk_server *loopback;            /* tests: connect over loopback to this server
                                       instead of TCP (url gives path and query) */
    const zk_loopback_opts *loopback_fault;
    zk_state_fn on_state;
    zk_open_fn on_open;
    void *data;                     /* yours: zk_client_data() */
} zk_client_opts;

/* Per call; zero-initialise (NULL means all defaults). */
typedef struct zk_call_opts {
    uint32_t timeout_ms;            /* 0: the client's call_timeout_ms */
    int idempotent;                 /* 1: in flight when the connection drops, it is
                                       sent again after the reconnect instead of
                                       failing with DISCONNECTED */
    int cacheable;                  /* 1: a result is kept for cache_ttl_ms and
                                       answers the same call meanwhile */
    uint32_t cache_ttl_ms;          /* 0: 30000 */
    int no_dedup;                   /* 1: never shared with an identical call */
    /* an optimistic update you applied before calling: undo(user) runs if the
       call fails (error, timeout, disconnect), before the result callback */
    void (*undo)(zk_client *client, void *user);
} zk_call_opts;

/* Starts connecting at once. NULL with *err (ZK_EINVAL: a bad URL, option,
   or auth that is not JSON; ZK_ENOMEM). err may be NULL. */
ZK_API zk_client *zk_client_new(zk_loop *loop, const zk_client_opts *opts, int *err);
/* Frees the client: pending calls get CLOSED first. */
ZK_API void zk_client_free(zk_client *client);
/* Closes for good (1000), after queued messages went out if open; pending
   and queued calls get CLOSED. */
ZK_API void zk_client_close(zk_client *client);

ZK_API int zk_client_state(const zk_client *client);
/* The last reason the connection closed or failed, or "" (valid until the
   next state change); *code the close code (0 when none). code may be NULL. */
ZK_API const char *zk_client_error(const zk_client *client, int *code);
/* Reconnect attempts since the last stable connection. */
ZK_API uint32_t zk_client_attempts(const zk_client *client);
ZK_API void *zk_client_data(const zk_client *client);
ZK_API zk_loop *zk_client_loop(const zk_client *client);

/* Calls type with payload (JSON text, NULL for none). done (may be NULL)
   gets exactly one result - before this returns when it comes from the
   cache. Sent now when open, else queued; the timeout runs from now, queued
   or not. Identical calls in flight share one request, each with its own
   timeout. Do not zk_client_free the client from its own callbacks
   (zk_client_close is fine). Returns 0, ZK_EINVAL (bad type or payload),
   ZK_ENOSPACE (the offline queue is full, or max_pending calls are waiting:
   nothing queued, done not called),
   ZK_EBACKPRESSURE (open, but the connection's write limit is reached),
   ZK_ECLOSED (closed), ZK_ENOMEM. */
ZK_API int zk_client_call(zk_client *client, const char *type, const char *payload, size_t payload_len,
                          const zk_call_opts *opts, zk_result_fn done, void *user);
/* Sends an event (no answer; a failure comes back as an "__error" event,
   whose payload is the error: {code, message, ref}). Same returns as
   zk_client_call. */
ZK_API int zk_client_emit(zk_client *client, const char *type, const char *payload, size_t payload_len);

/* Listens to events of type ("*": every type). Several listeners per type
   run in the order added. Returns 0, ZK_EINVAL, ZK_ENOMEM. */
ZK_API int zk_client_on(zk_client *client, const char *type, zk_listener_fn fn, void *user);
/* Stops the listener added with the same type, fn and user; ZK_ENOTFOUND. */
ZK_API int zk_client_off(zk_client *client, const char *type, zk_listener_fn fn, void *user);
/* Events nobody listened to, and messages from the server that could not
   be read (not in the client's codec, malformed), counted; they are not
   errors and are otherwise dropped. */
ZK_API uint64_t zk_client_unhandled(const zk_client *client);

/* A call made on every open from now on, before the queue (rejoining
   rooms): registered before the first open, it goes out on that one too;
   registered while open, it is not sent now (call it yourself this time).
   Its results go to done as usual. Returns 0 or a negative zk_err. */
ZK_API int zk_client_rejoin(zk_client *client, const char *type, const char *payload, size_t payload_len,
                            zk_result_fn done, void *user);

/* Cache: drops cached results whose key starts with prefix ("" or NULL:
   all); returns how many. A key is the type, a space, and the payload
   written canonically (members sorted by key, no white space):
   "users.get {\"id\":1}". After a reconnect every cached call is made
   again in the background and its entry replaced by the fresh result. */
ZK_API size_t zk_client_invalidate(zk_client *client, const char *prefix);
/* >>broker: the Redis (RESP) and NATS wire protocols, sans I/O ------------ */

/* What the Redis and NATS adapters speak, as bytes in and bytes out: no
   sockets, no allocation. The parsers take what arrived so far and report
   one reply (or operation), how many bytes it used, or that more are
   needed; their views point into your buffer. Garbage is an error, never a
   crash or an over-read: the adapters then drop the connection and
   reconnect. */

/* ---- Redis: RESP2 ---- */

#ifndef ZK_RESP_MAX_ITEMS
#define ZK_RESP_MAX_ITEMS 16     /* elements of an array reply kept (nested ones count) */
#endif

enum {
    ZK_RESP_SIMPLE = '+',        /* +OK */
    ZK_RESP_ERROR = '-',         /* -ERR unknown command */
    ZK_RESP_INTEGER = ':',       /* :3 */
    ZK_RESP_BULK = '$',          /* $5 hello */
    ZK_RESP_ARRAY = '*',         /* *3 ... */
    ZK_RESP_NIL = '_'            /* $-1 or *-1 */
};

/* One value of a reply: a string (simple, error, bulk), an integer, nil, or
   an array header (count elements follow in the list, depth + 1). */
typedef struct zk_resp_item {
    int type;                    /* ZK_RESP_* */
    int depth;                   /* 0 for the reply itself */
    zk_str str;                  /* SIMPLE, ERROR, BULK: the bytes */
    int64_t integer;             /* INTEGER; ARRAY: its element count */
} zk_resp_item;

/* A whole reply, flattened in order: items[0] is the reply; an array's
   elements follow it (pre-order). */
typedef struct zk_resp_reply {
    size_t count;
    zk_resp_item items[ZK_RESP_MAX_ITEMS];
} zk_resp_reply;

/* Parses one reply from buf[0..len). Returns the bytes it used, ZK_EAGAIN
   (incomplete: call again with more), ZK_EPROTO (not RESP), or ZK_ETOOBIG
   (a bulk string over max_bulk bytes - 0: 512 MiB, Redis's own limit -,
   more than ZK_RESP_MAX_ITEMS items, or arrays nested deeper than 8). */
ZK_API int zk_resp_parse(const char *buf, size_t len, size_t max_bulk, zk_resp_reply *out);

/* Writes a command as an array of bulk strings ("PUBLISH", channel,
   message). Returns the bytes written, or ZK_ENOSPACE. */
ZK_API int zk_resp_command(char *out, size_t cap, size_t argc, const zk_str *argv);

/* ---- NATS: the client protocol (text) ---- */

enum {
    ZK_NATS_INFO = 1,            /* INFO {json}: text is the JSON */
    ZK_NATS_MSG,                 /* MSG subject sid [reply] #bytes + payload */
    ZK_NATS_PING,
    ZK_NATS_PONG,
    ZK_NATS_OK,                  /* +OK */
    ZK_NATS_ERR                  /* -ERR 'text': text without the quotes */
};

typedef struct zk_nats_op {
    int type;                    /* ZK_NATS_* */
    zk_str subject, reply;       /* MSG (reply empty when none) */
    uint64_t sid;                /* MSG */
    zk_str payload;              /* MSG */
    zk_str text;                 /* INFO, ERR */
} zk_nats_op;

/* Parses one server operation from buf[0..len). Returns the bytes used,
   ZK_EAGAIN, ZK_EPROTO, or ZK_ETOOBIG (a control line over 4096 bytes -
   INFO over 64 KiB - or a payload over max_payload, 0: 1 MiB, NATS's
   default max_payload). Operation names are case-insensitive. HMSG is
   refused (the adapter does not ask for headers). */
ZK_API int zk_nats_parse(const char *buf, size_t len, size_t max_payload, zk_nats_op *out);

/* The subject for a room: prefix, '.', and the room name with every byte
   outside [A-Za-z0-9-] written as _XX (hex), so that no name can make a
   wildcard, an empty token or a second token. Returns the length (the
   subject is NUL-terminated), or ZK_ENOSPACE, ZK_EINVAL (a prefix that is
   not a valid subject). */
ZK_API int zk_nats_subject(char *out, size_t cap, const char *prefix, zk_str room);

/* "PUB subject #bytes\r\npayload\r\n". Returns bytes or ZK_ENOSPACE /
   ZK_EINVAL (a subject with white space or empty). */
ZK_API int zk_nats_pub(char *out, size_t cap, zk_str subject, zk_str payload);
/* "SUB subject sid\r\n" and "UNSUB sid\r\n". */
ZK_API int zk_nats_sub(char *out, size_t cap, zk_str subject, uint64_t sid);
ZK_API int zk_nats_unsub(char *out, size_t cap, uint64_t sid);

/* ---- the adapter: rooms across server processes ----

   A zk_broker joins an app to other server processes (nodes) through a
   Redis or NATS server, so that rooms, ids and "everyone" span them all.
   It runs on the app's loop: non-blocking sockets, no threads.

   - A room is subscribed while it has local members: when its first local
     member joins and unsubscribed when its last one leaves. Sends to
     everyone and to ids not found locally go through one reserved channel
     that every node subscribes ("<prefix>:all" on Redis, "<prefix>.all" on
     NATS; rooms are "<prefix>:r:<name>" and "<prefix>.r.<escaped name>").
   - zk_app_send delivers to local recipients at once and publishes one copy
     per room named (one in all for `all` or remote ids). Each copy carries
     the origin node, a sequence number and the whole target, so a node
     delivers the first copy it gets to all its local recipients and drops
     the others: a recipient gets a message once, whatever the number of
     rooms it is in, and `except` holds across nodes. A node drops its own
     copies.
   - When the broker goes away the adapter reconnects with full-jitter
     backoff and subscribes again. Messages sent meanwhile wait in a bounded
     queue and go out in order once it is back. Recently published messages
     are kept (in the same bounded ring) and sent again when another node
     comes back and says which of ours it saw last, so a node that was cut
     off gets what it missed, in order, once. Past the limit the oldest
     messages already sent are forgotten first; when the ring holds only
     unsent ones, zk_app_send returns ZK_ENOSPACE and delivers nothing.
   - Connection state and queue depth: zk_broker_state, zk_broker_get_stats
     and the on_state callback.

   Host names in the URL are resolved once, in zk_broker_new, with
   getaddrinfo (blocking); numeric addresses and "localhost" never block. */

typedef struct zk_broker zk_broker;

enum {
    ZK_BROKER_CONNECTING = 0,   /* first connection not up yet */
    ZK_BROKER_OPEN,             /* connected and subscribed */
    ZK_BROKER_RECONNECTING      /* lost; retrying with backoff */
};

typedef void (*zk_broker_state_fn)(zk_broker *broker, int state, void *data);

typedef struct zk_broker_opts {
    const char *url;            /* redis://[:password@]host[:port] (6379), or
                                   nats://[user:password@|token@]host[:port] (4222) */
    const char *prefix;         /* channel prefix, NULL: "zocket". [A-Za-z0-9_-],
                                   1 to 64 bytes: nodes sharing it form one app */
    size_t max_queue;           /* 0: 4096 messages in the ring (unsent + kept) */
    size_t max_queue_bytes;     /* 0: 8 MiB of messages in the ring */
    size_t max_message;         /* 0: 1 MiB; a bigger message: ZK_ETOOBIG. NATS
                                   servers announce their own max_payload, and a
                                   message over it is dropped and counted */
    uint32_t connect_timeout_ms;/* 0: 5000 */
    uint32_t backoff_base_ms;   /* 0: 100; attempt n waits random(0, min(max, base*2^n)) */
    uint32_t backoff_max_ms;    /* 0: 5000 */
    uint32_t ping_ms;           /* 0: 5000: a ping when idle this long; no answer
                                   within the next ping_ms: reconnect */
    uint32_t hold_ms;           /* 0: 2000: after coming back, how long a peer's
                                   messages wait for that peer's replay before
                                   being delivered anyway */
    zk_broker_state_fn on_state;/* each change of zk_broker_state (do not free
                                   the broker or its app from it) */
    void *data;                 /* yours: zk_broker_data() */
} zk_broker_opts;

/* Attaches a broker to app (one per app) and starts connecting; rooms the
   app already has are subscribed. NULL with *err: ZK_EINVAL (bad URL,
   prefix or option; the app has one already), ZK_ENOTFOUND (host not
   found), ZK_ENOMEM. err may be NULL. */
ZK_API zk_broker *zk_broker_new(zk_app *app, const zk_broker_opts *opts, int *err);
/* Detaches and frees it (unsent messages are dropped). zk_app_free frees an
   attached broker too. */
ZK_API void zk_broker_free(zk_broker *broker);
ZK_API zk_broker *zk_app_broker(const zk_app *app);
ZK_API int zk_broker_state(const zk_broker *broker);
ZK_API const char *zk_broker_state_name(int state);
/* The last error seen (connect failure, broker error reply, protocol
   error), "" when none. */
ZK_API const char *zk_broker_error(const zk_broker *broker);
ZK_API void *zk_broker_data(const zk_broker *broker);
/* This node's id: 16 hex characters, random per broker. */
ZK_API const char *zk_broker_node(const zk_broker *broker);

typedef struct zk_broker_stats {
    uint64_t published;         /* messages sent to the broker (once each; copies
                                   per room and replays not counted) */
    uint64_t publishes;         /* PUBLISH / PUB commands written, all copies */
    uint64_t received;          /* messages from other nodes, first copies */
    uint64_t delivered;         /* connections they were queued to here */
    uint64_t duplicates;        /* copies dropped: seen already, or our own */
    uint64_t invalid;           /* messages on our channels we could not read */
    uint64_t replayed;          /* messages sent again for a node that came back */
    uint64_t forgotten;         /* messages dropped from the ring before a node that
                                   came back asked for them (lost for it) */
    uint64_t refused;           /* zk_app_send calls refused: ring full (ZK_ENOSPACE) */
    uint64_t oversize;          /* messages over the NATS server's max_payload, dropped */
    uint64_t connects;          /* broker connections established */
    uint64_t disconnects;       /* broker connections lost or dropped */
    size_t queued;              /* messages not yet confirmed by the broker */
    size_t queued_bytes;
    size_t kept;                /* messages in the ring, sent or not */
    size_t rooms;               /* rooms subscribed (local rooms) */
    size_t nodes;               /* other nodes heard from (at most 256 remembered) */
} zk_broker_stats;
ZK_API void zk_broker_get_stats(const zk_broker *broker, zk_broker_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* ZOCKET_H */

/* ======================================================================== */
/*                             IMPLEMENTATION                               */
/* ======================================================================== */
#ifdef ZOCKET_IMPLEMENTATION
#ifndef ZOCKET_IMPLEMENTATION_DONE
#define ZOCKET_IMPLEMENTATION_DONE

#include <string.h>

#ifndef ZK_ASSERT
#include <assert.h>
#define ZK_ASSERT(c) assert(c)
#endif

#if defined(ZK_MALLOC) && defined(ZK_REALLOC) && defined(ZK_FREE)
#elif !defined(ZK_MALLOC) && !defined(ZK_REALLOC) && !defined(ZK_FREE)
#include <stdlib.h>
#define ZK_MALLOC(n) malloc(n)
#define ZK_REALLOC(p, n) realloc(p, n)
#define ZK_FREE(p) free(p)
#else
#error "zocket.h: define all of ZK_MALLOC, ZK_REALLOC and ZK_FREE, or none"
#endif

#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define ZK__SSE2 1
#else
#define ZK__SSE2 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ZK__LIKELY(x) __builtin_expect(!!(x), 1)
#define ZK__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define ZK__LIKELY(x) (x)
#define ZK__UNLIKELY(x) (x)
#endif

#define ZK__MIN(a, b) ((a) < (b) ? (a) : (b))

/* Private helpers are static: nothing but the zk_ API leaves this file. */
#define ZK__PRIVATE static
/* >>common implementation ------------------------------------------------ */

ZK__PRIVATE unsigned char zk__lower(unsigned char c) {
    return (unsigned char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
}

ZK_API zk_str zk_str_c(const char *s) {
    zk_str r;
    r.ptr = s ? s : "";
    r.len = s ? strlen(s) : 0;
    return r;
}

ZK_API int zk_str_eq_nocase(zk_str a, const char *b) {
    size_t i;
    for (i = 0; i < a.len; i++) {
        if (b[i] == '\0' || zk__lower((unsigned char)a.ptr[i]) != zk__lower((unsigned char)b[i]))
            return 0;
    }
    return b[a.len] == '\0';
}

ZK_API const char *zk_err_name(int err) {
    switch (err) {
#define ZK__ERR_NAME(name, value, text) case value: return #name;
        ZK_ERRORS(ZK__ERR_NAME)
#undef ZK__ERR_NAME
    default: return "ZK_E?";
    }
}

ZK_API const char *zk_strerror(int err) {
    switch (err) {
#define ZK__ERR_TEXT(name, value, text) case value: return text;
        ZK_ERRORS(ZK__ERR_TEXT)
#undef ZK__ERR_TEXT
    default: return "unknown error";
    }
}
/* >>sha1: FIPS 180-4 SHA-1, only for Sec-WebSocket-Accept ----------------- */

typedef struct zk__sha1 {
    uint32_t h[5];
    uint64_t total;          /* bytes hashed so far */
    unsigned char block[64];
    size_t used;             /* bytes waiting in block */
} zk__sha1;

#define ZK__ROL32(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

ZK__PRIVATE void zk__sha1_block(zk__sha1 *s, const unsigned char *p) {
    uint32_t w[80], a, b, c, d, e, t;
    int i;
    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (i = 16; i < 80; i++) {
        t = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
        w[i] = ZK__ROL32(t, 1);
    }
    a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3]; e = s->h[4];
    for (i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20)      { f = (b & c) | (~b & d);          k = 0x5A827999u; }
        else if (i < 40) { f = b ^ c ^ d;                   k = 0x6ED9EBA1u; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDCu; }
        else             { f = b ^ c ^ d;                   k = 0xCA62C1D6u; }
        t = ZK__ROL32(a, 5) + f + e + k + w[i];
        e = d; d = c; c = ZK__ROL32(b, 30); b = a; a = t;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d; s->h[4] += e;
}

ZK__PRIVATE void zk__sha1_init(zk__sha1 *s) {
    s->h[0] = 0x67452301u; s->h[1] = 0xEFCDAB89u; s->h[2] = 0x98BADCFEu;
    s->h[3] = 0x10325476u; s->h[4] = 0xC3D2E1F0u;
    s->total = 0;
    s->used = 0;
}

ZK__PRIVATE void zk__sha1_update(zk__sha1 *s, const void *data, size_t len) {
    const unsigned char *p = (const unsigned char *)data;
    s->total += len;
    while (len > 0) {
        size_t n = 64 - s->used;
        if (n > len) n = len;
        memcpy(s->block + s->used, p, n);
        s->used += n; p += n; len -= n;
        if (s->used == 64) {
            zk__sha1_block(s, s->block);
            s->used = 0;
        }
    }
}

ZK__PRIVATE void zk__sha1_final(zk__sha1 *s, unsigned char digest[20]) {
    uint64_t bits = s->total * 8;
    int i;
    s->block[s->used++] = 0x80;
    if (s->used > 56) {
        memset(s->block + s->used, 0, 64 - s->used);
        zk__sha1_block(s, s->block);
        s->used = 0;
    }
    memset(s->block + s->used, 0, 56 - s->used);
    for (i = 0; i < 8; i++) s->block[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    zk__sha1_block(s, s->block);
    for (i = 0; i < 20; i++) digest[i] = (unsigned char)(s->h[i / 4] >> (24 - 8 * (i % 4)));
}
/* >>base64: RFC 4648 section 4, padded --------------------------------- */

ZK__PRIVATE const char zk__b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Writes 4 * ceil(len / 3) characters (no NUL) and returns that count. */
ZK__PRIVATE size_t zk__b64_encode(const unsigned char *in, size_t len, char *out) {
    size_t i, o = 0;
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = zk__b64_alphabet[v >> 18];
        out[o++] = zk__b64_alphabet[(v >> 12) & 63];
        out[o++] = zk__b64_alphabet[(v >> 6) & 63];
        out[o++] = zk__b64_alphabet[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = zk__b64_alphabet[v >> 18];
        out[o++] = zk__b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < len ? zk__b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    return o;
}

ZK__PRIVATE int zk__b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict decoding: padding required, no white space, unused bits zero.
   Returns the decoded length, or -1 if in is not canonical base64 or the
   result would not fit in cap. */
ZK__PRIVATE int zk__b64_decode(const char *in, size_t len, unsigned char *out, size_t cap) {
    size_t i, o = 0;
    if (len % 4 != 0) return -1;
    for (i = 0; i < len; i += 4) {
        int v[4], k, pad = 0;
        for (k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            if (c == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
            } else {
                if (pad) return -1; /* data after '=' */
                v[k] = zk__b64_value(c);
                if (v[k] < 0) return -1;
            }
        }
        if (o + (size_t)(3 - pad) > cap) return -1;
        if (pad == 2 && (v[1] & 15)) return -1;
        if (pad == 1 && (v[2] & 3)) return -1;
        out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
        if (pad < 2) out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
        if (pad < 1) out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
    }
    return (int)o;
}
/* >>utf8: incremental validation (RFC 3629) ------------------------------ */

/* A DFA with 9 states: 0 between characters, 8 rejected (sticky); the
   others wait for continuation bytes with the right ranges, so there are no
   overlongs (C0, C1, E0 80-9F, F0 80-8F), no surrogates (ED A0-BF) and
   nothing above U+10FFFF (F4 90+, F5-FF). It is a "shift DFA": the row of
   a byte packs the next state of every state, 6 bits each, so a step is
   one load and one shift, state = row[byte] >> state; states are kept as
   their bit offsets (6 * number). */
#define ZK__UTF8_ACCEPT 0u
#define ZK__UTF8_REJECT 48u

ZK__PRIVATE const uint64_t zk__utf8_dfa[256] = {
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull, 0x30c30c30c30c00ull,
    0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull,
    0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull,
    0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull,
    0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull, 0x303301b0306030ull,
    0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull,
    0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull,
    0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull,
    0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull, 0x30c0c1b0306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull, 0x30c0cc06306030ull,
    0x30c30c30c30c30ull, 0x30c30c30c30c30ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull, 0x30c30c30c30c06ull,
    0x30c30c30c30c18ull, 0x30c30c30c30c0cull, 0x30c30c30c30c0cull, 0x30c30c30c30c0cull,
    0x30c30c30c30c0cull, 0x30c30c30c30c0cull, 0x30c30c30c30c0cull, 0x30c30c30c30c0cull,
    0x30c30c30c30c0cull, 0x30c30c30c30c0cull, 0x30c30c30c30c0cull, 0x30c30c30c30c0cull,
    0x30c30c30c30c0cull, 0x30c30c30c30c1eull, 0x30c30c30c30c0cull, 0x30c30c30c30c0cull,
    0x30c30c30c30c24ull, 0x30c30c30c30c12ull, 0x30c30c30c30c12ull, 0x30c30c30c30c12ull,
    0x30c30c30c30c2aull, 0x30c30c30c30c30ull, 0x30c30c30c30c30ull, 0x30c30c30c30c30ull,
    0x30c30c30c30c30ull, 0x30c30c30c30c30ull, 0x30c30c30c30c30ull, 0x30c30c30c30c30ull,
    0x30c30c30c30c30ull, 0x30c30c30c30c30ull, 0x30c30c30c30c30ull, 0x30c30c30c30c30ull,
};

/* 1 if the 16 (or 8) bytes at p are all ASCII. */
ZK__PRIVATE int zk__ascii16(const unsigned char *p) {
#if ZK__SSE2
    return _mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(const void *)p)) == 0;
#else
    uint64_t a, b;
    memcpy(&a, p, 8);
    memcpy(&b, p + 8, 8);
    return ((a | b) & 0x8080808080808080ull) == 0;
#endif
}

/* 1 if the 64 bytes at p are all ASCII. */
ZK__PRIVATE int zk__ascii64(const unsigned char *p) {
#if ZK__SSE2
    __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
    __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(p + 32));
    __m128i d = _mm_loadu_si128((const __m128i *)(const void *)(p + 48));
    return _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d))) == 0;
#else
    return zk__ascii16(p) && zk__ascii16(p + 16) && zk__ascii16(p + 32) && zk__ascii16(p + 48);
#endif
}

/* Runs the validator over s[0..len) from state; returns the new state.
   ZK__UTF8_REJECT once a byte cannot continue valid text (checked per 16
   bytes: rejection is sticky). ASCII runs are skipped 16 bytes at a time. */
ZK__PRIVATE uint32_t zk__utf8_run(uint32_t state, const unsigned char *s, size_t len) {
    uint64_t st = state;
    size_t i = 0;
    while (i < len) {
        size_t end;
        if (st == ZK__UTF8_ACCEPT && i + 16 <= len && zk__ascii16(s + i)) {
            i += 16;
            while (i + 64 <= len && zk__ascii64(s + i)) i += 64;
            continue;
        }
        end = i + 16 < len ? i + 16 : len;
        for (; i < end; i++) st = zk__utf8_dfa[s[i]] >> (st & 63);
        st &= 63;
        if (st == ZK__UTF8_REJECT) break;
    }
    return (uint32_t)st;
}

ZK_API int zk_utf8_valid(const void *s, size_t len) {
    return zk__utf8_run(ZK__UTF8_ACCEPT, (const unsigned char *)s, len) == ZK__UTF8_ACCEPT;
}
/* >>http implementation -------------------------------------------------- */

/* RFC 9110 tchar: the characters of a token (method, header name). */
ZK__PRIVATE int zk__is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A header value byte: HTAB, SP, VCHAR, obs-text. */
ZK__PRIVATE int zk__is_value_char(unsigned char c) {
    return c == '\t' || (c >= 0x20 && c != 0x7F);
}

ZK__PRIVATE size_t zk__http_max_headers(const zk_http_limits *limits) {
    if (!limits || limits->max_headers == 0 || limits->max_headers > ZK_HTTP_MAX_HEADERS)
        return ZK_HTTP_MAX_HEADERS;
    return limits->max_headers;
}

ZK__PRIVATE size_t zk__http_max_bytes(const zk_http_limits *limits) {
    size_t n = limits && limits->max_bytes ? limits->max_bytes : ZK_HTTP_MAX_HEADER_BYTES;
    return n > 0x7FFFFFFF ? 0x7FFFFFFF : n; /* the size of a head is returned as an int */
}

/* Longer methods are refused before the request line is complete, so a peer
   trickling bytes cannot make each call rescan a long first word. */
#define ZK__HTTP_MAX_METHOD 32

/* Finds the end of a head (just past CRLF CRLF) at or after prev_len - 3.
   Returns 0 when it is not there yet. */
ZK__PRIVATE size_t zk__http_head_end(const char *buf, size_t len, size_t prev_len) {
    size_t i = prev_len > 3 ? prev_len - 3 : 0;
    while (i < len) {
        const char *lf = (const char *)memchr(buf + i, '\n', len - i);
        size_t at;
        if (!lf) return 0;
        at = (size_t)(lf - buf);
        if (at >= 3 && buf[at - 1] == '\r' && buf[at - 2] == '\n' && buf[at - 3] == '\r')
            return at + 1;
        i = at + 1;
    }
    return 0;
}

/* Whether the bytes that arrived since prev_len hold an LF without a CR
   before it: such a head can never complete (we require CRLF). */
ZK__PRIVATE int zk__http_bare_lf(const char *buf, size_t len, size_t prev_len) {
    size_t i = prev_len;
    while (i < len) {
        const char *lf = (const char *)memchr(buf + i, '\n', len - i);
        if (!lf) return 0;
        i = (size_t)(lf - buf);
        if (i == 0 || buf[i - 1] != '\r') return 1;
        i++;
    }
    return 0;
}

/* Parses header lines from p up to the blank line that ends at end.
   Returns 0, ZK_EHTTP or ZK_ETOOBIG, with *error set on failure. */
ZK__PRIVATE int zk__http_headers(const char *p, const char *end, zk_http_header *headers,
                                 size_t max, size_t *count, const char **error) {
    *count = 0;
    for (;;) {
        const char *name = p, *value, *vend;
        if (p + 1 < end && p[0] == '\r' && p[1] == '\n') return 0; /* blank line */
        if (*p == ' ' || *p == '\t') { *error = "obsolete line folding"; return ZK_EHTTP; }
        while (p < end && zk__is_tchar((unsigned char)*p)) p++;
        if (p == name || p >= end || *p != ':') {
            *error = p < end && (*p == ' ' || *p == '\t') ? "white space before ':'"
                                                          : "malformed header name";
            return ZK_EHTTP;
        }
        if (*count == max) { *error = "too many headers"; return ZK_ETOOBIG; }
        headers[*count].name.ptr = name;
        headers[*count].name.len = (size_t)(p - name);
        p++;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        value = p;
        while (p < end && zk__is_value_char((unsigned char)*p)) p++;
        if (p + 1 >= end || p[0] != '\r' || p[1] != '\n') {
            *error = "invalid character in header value";
            return ZK_EHTTP;
        }
        vend = p;
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t')) vend--;
        headers[*count].value.ptr = value;
        headers[*count].value.len = (size_t)(vend - value);
        (*count)++;
        p += 2;
    }
}

/* "HTTP/1.1" at p: returns 10 or 11, 0 when malformed, -1 when another
   major version (answer 505). */
ZK__PRIVATE int zk__http_version(const char *p) {
    if (memcmp(p, "HTTP/", 5) != 0 || p[6] != '.') return 0;
    if (p[5] < '0' || p[5] > '9' || p[7] < '0' || p[7] > '9') return 0;
    if (p[5] != '1') return -1;
    return p[7] == '0' ? 10 : 11;
}

ZK__PRIVATE int zk__request_fail(zk_http_request *req, int err, int status, const char *error) {
    req->status = status;
    req->error = error;
    return err;
}

/* Parses the request line in [p, end) (end at its CR). */
ZK__PRIVATE int zk__request_line(const char *p, const char *end, zk_http_request *req) {
    const char *s = p, *q;
    int version;
    while (p < end && zk__is_tchar((unsigned char)*p)) p++;
    if (p == s || p >= end || *p != ' ' || p - s > ZK__HTTP_MAX_METHOD)
        return zk__request_fail(req, ZK_EHTTP, 400, "malformed method");
    req->method.ptr = s;
    req->method.len = (size_t)(p - s);
    s = ++p;
    while (p < end && (unsigned char)*p > 0x20 && *p != 0x7F) p++;
    if (p == s || p >= end || *p != ' ') return zk__request_fail(req, ZK_EHTTP, 400, "malformed request target");
    req->target.ptr = s;
    req->target.len = (size_t)(p - s);
    p++;
    if (end - p != 8) return zk__request_fail(req, ZK_EHTTP, 400, "malformed HTTP version");
    version = zk__http_version(p);
    if (version == 0) return zk__request_fail(req, ZK_EHTTP, 400, "malformed HTTP version");
    if (version < 0) return zk__request_fail(req, ZK_EHTTP, 505, "HTTP version not supported");
    req->version = version;

    /* path and query; absolute-form keeps only the path */
    s = req->target.ptr;
    end = s + req->target.len;
    if (*s != '/' && *s != '*') {
        const char *scheme = s;
        while (scheme + 2 < end && !(scheme[0] == ':' && scheme[1] == '/' && scheme[2] == '/')) scheme++;
        if (scheme + 2 < end) {
            s = scheme + 3;
            while (s < end && *s != '/' && *s != '?') s++;
        }
    }
    q = s;
    while (q < end && *q != '?') q++;
    req->path.ptr = s;
    req->path.len = (size_t)(q - s);
    if (req->path.len == 0) req->path = zk_str_c("/"); /* "http://host?x" asks for "/" */
    req->query.ptr = q < end ? q + 1 : end;
    req->query.len = q < end ? (size_t)(end - q - 1) : 0;
    return 0;
}

ZK_API int zk_http_parse_request(const char *buf, size_t len, size_t prev_len,
                                 zk_http_request *req, const zk_http_limits *limits) {
    size_t max_bytes = zk__http_max_bytes(limits), end, i;
    const char *line_end;
    int rc;
    req->method.ptr = req->target.ptr = req->path.ptr = req->query.ptr = buf;
    req->method.len = req->target.len = req->path.len = req->query.len = 0;
    req->version = 0;
    req->header_count = 0;
    req->status = 0;
    req->error = NULL;

    end = zk__http_head_end(buf, len, prev_len);
    if (end == 0) {
        /* Not complete. Refuse at once what cannot become a request: bytes
           that are not a method (a TLS hello, binary noise) or a first line
           that is already complete and wrong. */
        for (i = 0; i < len && buf[i] != ' '; i++) {
            if (!zk__is_tchar((unsigned char)buf[i]) || i == ZK__HTTP_MAX_METHOD)
                return zk__request_fail(req, ZK_EHTTP, 400, "malformed method");
        }
        if (zk__http_bare_lf(buf, len, prev_len))
            return zk__request_fail(req, ZK_EHTTP, 400, "line not ended by CRLF");
        line_end = (const char *)memchr(buf, '\n', len);
        if (line_end && (size_t)(line_end - buf) + 1 > prev_len) {
            if (line_end == buf || line_end[-1] != '\r')
                return zk__request_fail(req, ZK_EHTTP, 400, "line not ended by CRLF");
            rc = zk__request_line(buf, line_end - 1, req);
            if (rc < 0) return rc;
        }
        if (len >= max_bytes) return zk__request_fail(req, ZK_ETOOBIG, 431, "request head too large");
        return ZK_EAGAIN;
    }
    if (end > max_bytes) return zk__request_fail(req, ZK_ETOOBIG, 431, "request head too large");
    if (memchr(buf, '\0', end)) return zk__request_fail(req, ZK_EHTTP, 400, "NUL byte in request head");
    line_end = (const char *)memchr(buf, '\n', end);
    if (line_end == buf || line_end[-1] != '\r')
        return zk__request_fail(req, ZK_EHTTP, 400, "line not ended by CRLF");
    rc = zk__request_line(buf, line_end - 1, req);
    if (rc < 0) return rc;
    rc = zk__http_headers(line_end + 1, buf + end, req->headers, zk__http_max_headers(limits),
                          &req->header_count, &req->error);
    if (rc == ZK_ETOOBIG) return zk__request_fail(req, rc, 431, req->error);
    if (rc < 0) return zk__request_fail(req, rc, 400, req->error);
    return (int)end;
}

ZK_API int zk_http_parse_response(const char *buf, size_t len, size_t prev_len,
                                  zk_http_response *res, const zk_http_limits *limits) {
    size_t max_bytes = zk__http_max_bytes(limits), end;
    const char *p, *line_end;
    int rc;
    res->version = res->status = 0;
    res->reason.ptr = buf;
    res->reason.len = 0;
    res->header_count = 0;
    res->error = NULL;
    end = zk__http_head_end(buf, len, prev_len);
    if (end == 0) {
        if (memcmp(buf, "HTTP/", ZK__MIN(len, (size_t)5)) != 0) {
            res->error = "not an HTTP response";
            return ZK_EHTTP;
        }
        if (zk__http_bare_lf(buf, len, prev_len)) {
            res->error = "line not ended by CRLF";
            return ZK_EHTTP;
        }
        if (len >= max_bytes) { res->error = "response head too large"; return ZK_ETOOBIG; }
        return ZK_EAGAIN;
    }
    if (end > max_bytes) { res->error = "response head too large"; return ZK_ETOOBIG; }
    line_end = (const char *)memchr(buf, '\n', end);
    if (memchr(buf, '\0', end) || line_end == buf || line_end[-1] != '\r' ||
        line_end - buf < 13 || zk__http_version(buf) <= 0 || buf[8] != ' ' ||
        buf[9] < '1' || buf[9] > '9' || buf[10] < '0' || buf[10] > '9' ||
        buf[11] < '0' || buf[11] > '9' || (buf[12] != ' ' && buf[12] != '\r')) {
        res->error = "malformed status line";
        return ZK_EHTTP;
    }
    res->version = zk__http_version(buf);
    res->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    p = buf[12] == ' ' ? buf + 13 : buf + 12;
    for (res->reason.ptr = p; p < line_end - 1; p++) {
        if (!zk__is_value_char((unsigned char)*p)) {
            res->error = "malformed status line";
            return ZK_EHTTP;
        }
    }
    res->reason.len = (size_t)(line_end - 1 - res->reason.ptr);
    rc = zk__http_headers(line_end + 1, buf + end, res->headers, zk__http_max_headers(limits),
                          &res->header_count, &res->error);
    return rc < 0 ? rc : (int)end;
}

ZK_API zk_str zk_http_header_get(const zk_http_header *headers, size_t count, const char *name) {
    zk_str none = {NULL, 0};
    size_t i;
    for (i = 0; i < count; i++)
        if (zk_str_eq_nocase(headers[i].name, name)) return headers[i].value;
    return none;
}

/* Whether a comma-separated list holds token; case_sensitive for
   subprotocol names (RFC 6455 11.3.4 tokens compare exactly). */
ZK__PRIVATE int zk__list_has(zk_str list, const char *token, int case_sensitive) {
    const char *p = list.ptr, *end;
    size_t token_len = strlen(token);
    if (!p) return 0;
    end = p + list.len;
    while (p < end) {
        const char *s, *e;
        zk_str item;
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) p++;
        s = p;
        while (p < end && *p != ',') p++;
        e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        item.ptr = s;
        item.len = (size_t)(e - s);
        if (item.len && (case_sensitive ? item.len == token_len && memcmp(item.ptr, token, token_len) == 0
                                        : zk_str_eq_nocase(item, token)))
            return 1;
    }
    return 0;
}

ZK_API int zk_http_list_has(zk_str list, const char *token) { return zk__list_has(list, token, 0); }

ZK__PRIVATE int zk__hex(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

ZK_API int zk_url_decode(zk_str in, char *out, size_t cap, int plus_is_space) {
    size_t i, o = 0;
    for (i = 0; i < in.len; i++) {
        char c = in.ptr[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= in.len) return ZK_EINVAL;
            hi = zk__hex((unsigned char)in.ptr[i + 1]);
            lo = zk__hex((unsigned char)in.ptr[i + 2]);
            if (hi < 0 || lo < 0) return ZK_EINVAL;
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (o == cap) return ZK_ENOSPACE;
        out[o++] = c;
    }
    return (int)o;
}

/* Whether the raw (still encoded) query key equals name once decoded. */
ZK__PRIVATE int zk__query_key_is(zk_str key, const char *name) {
    size_t i = 0;
    for (; *name; name++) {
        int c;
        if (i >= key.len) return 0;
        c = (unsigned char)key.ptr[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= key.len) return 0;
            hi = zk__hex((unsigned char)key.ptr[i + 1]);
            lo = zk__hex((unsigned char)key.ptr[i + 2]);
            if (hi < 0 || lo < 0) return 0;
            c = hi << 4 | lo;
            i += 3;
        } else {
            if (c == '+') c = ' ';
            i++;
        }
        if (c != (unsigned char)*name) return 0;
    }
    return i == key.len;
}

ZK_API int zk_query_get(zk_str query, const char *name, char *out, size_t cap) {
    const char *p = query.ptr, *end;
    if (!p) return ZK_ENOTFOUND;
    end = p + query.len;
    while (p < end) {
        const char *s = p, *eq, *amp;
        zk_str key, value;
        while (p < end && *p != '&') p++;
        amp = p;
        if (p < end) p++;
        for (eq = s; eq < amp && *eq != '='; eq++) {}
        key.ptr = s;
        key.len = (size_t)(eq - s);
        if (key.len == 0 || !zk__query_key_is(key, name)) continue;
        value.ptr = eq < amp ? eq + 1 : amp;
        value.len = (size_t)(amp - value.ptr);
        return zk_url_decode(value, out, cap, 1);
    }
    return ZK_ENOTFOUND;
}

ZK_API const char *zk_http_status_text(int status) {
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ---- writing heads ---- */

typedef struct zk__out {
    char *p;
    size_t cap, len;
    int bad; /* ZK_ENOSPACE or ZK_EINVAL once something did not fit or was refused */
} zk__out;

ZK__PRIVATE void zk__out_bytes(zk__out *o, const void *s, size_t n) {
    if (o->bad) return;
    if (o->cap - o->len < n) { o->bad = ZK_ENOSPACE; return; }
    if (n) memcpy(o->p + o->len, s, n);
    o->len += n;
}

ZK__PRIVATE void zk__out_str(zk__out *o, const char *s) { zk__out_bytes(o, s, strlen(s)); }

ZK__PRIVATE void zk__out_uint(zk__out *o, uint64_t v) {
    char tmp[20];
    size_t n = 0;
    do { tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10); v /= 10; } while (v);
    zk__out_bytes(o, tmp + sizeof tmp - n, n);
}

/* 1 if s may be a header value (or Host, path, Origin): no CTL but HTAB. */
ZK__PRIVATE int zk__safe_value(zk_str s) {
    size_t i;
    for (i = 0; i < s.len; i++)
        if (!zk__is_value_char((unsigned char)s.ptr[i])) return 0;
    return 1;
}

ZK__PRIVATE int zk__is_token(zk_str s) {
    size_t i;
    if (s.len == 0 || !s.ptr) return 0;
    for (i = 0; i < s.len; i++)
        if (!zk__is_tchar((unsigned char)s.ptr[i])) return 0;
    return 1;
}

ZK__PRIVATE void zk__out_header(zk__out *o, const char *name, zk_str value) {
    if (!zk__safe_value(value)) { if (!o->bad) o->bad = ZK_EINVAL; return; }
    zk__out_str(o, name);
    zk__out_bytes(o, ": ", 2);
    zk__out_bytes(o, value.ptr, value.len);
    zk__out_bytes(o, "\r\n", 2);
}

ZK__PRIVATE void zk__out_headers(zk__out *o, const zk_http_header *h, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (!zk__is_token(h[i].name) || (h[i].value.len && !h[i].value.ptr)) {
            if (!o->bad) o->bad = ZK_EINVAL;
            return;
        }
        zk__out_bytes(o, h[i].name.ptr, h[i].name.len);
        zk__out_bytes(o, ": ", 2);
        if (!zk__safe_value(h[i].value)) { if (!o->bad) o->bad = ZK_EINVAL; return; }
        zk__out_bytes(o, h[i].value.ptr, h[i].value.len);
        zk__out_bytes(o, "\r\n", 2);
    }
}

ZK__PRIVATE int zk__out_done(zk__out *o) {
    if (o->bad) return o->bad;
    return o->len > 0x7FFFFFFF ? ZK_ENOSPACE : (int)o->len;
}

ZK__PRIVATE void zk__out_status(zk__out *o, int status) {
    zk__out_str(o, "HTTP/1.1 ");
    zk__out_uint(o, (uint64_t)(status < 100 || status > 999 ? 500 : status));
    zk__out_bytes(o, " ", 1);
    zk__out_str(o, zk_http_status_text(status));
    zk__out_bytes(o, "\r\n", 2);
}

ZK_API int zk_http_write_response(char *out, size_t cap, int status,
                                  const zk_http_header *headers, size_t header_count,
                                  const void *body, size_t body_len) {
    zk__out o = {NULL, 0, 0, 0};
    o.p = out;
    o.cap = cap;
    if (status < 100 || status > 999) return ZK_EINVAL;
    zk__out_status(&o, status);
    if (status < 200 || status == 204) {
        if (body_len) return ZK_EINVAL; /* RFC 9110 6.4.1: no content, no Content-Length */
    } else {
        zk__out_str(&o, "Content-Length: ");
        zk__out_uint(&o, body_len);
        zk__out_bytes(&o, "\r\n", 2);
    }
    zk__out_str(&o, "Connection: close\r\n");
    zk__out_headers(&o, headers, header_count);
    zk__out_bytes(&o, "\r\n", 2);
    zk__out_bytes(&o, body, body_len);
    return zk__out_done(&o);
}

/* ---- the upgrade, server side ---- */

ZK_API void zk_ws_accept_key(zk_str key, char out[29]) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[20];
    zk__sha1 s;
    zk__sha1_init(&s);
    zk__sha1_update(&s, key.ptr, key.len);
    zk__sha1_update(&s, guid, sizeof guid - 1);
    zk__sha1_final(&s, digest);
    zk__b64_encode(digest, 20, out);
    out[28] = '\0';
}

ZK__PRIVATE int zk__upgrade_fail(zk_ws_upgrade *up, int status, const char *error) {
    up->status = status;
    up->error = error;
    return ZK_EHANDSHAKE;
}

ZK_API int zk_ws_upgrade_check(const zk_http_request *req,
                               const char *const *protocols, size_t protocol_count,
                               zk_ws_upgrade *up) {
    const zk_http_header *h = req->headers;
    size_t n = req->header_count, i, j, keys = 0;
    unsigned char nonce[18];
    zk_str version;
    memset(up, 0, sizeof *up);
    if (!zk_http_list_has(zk_http_header_get(h, n, "Upgrade"), "websocket")) return ZK_ENOTWS;
    if (req->method.len != 3 || memcmp(req->method.ptr, "GET", 3) != 0)
        return zk__upgrade_fail(up, 405, "WebSocket upgrade needs GET");
    if (req->version < 11) return zk__upgrade_fail(up, 400, "WebSocket upgrade needs HTTP/1.1");
    if (!zk_http_list_has(zk_http_header_get(h, n, "Connection"), "upgrade"))
        return zk__upgrade_fail(up, 400, "Connection header lacks Upgrade");
    for (i = 0; i < n; i++) {
        if (zk_str_eq_nocase(h[i].name, "Sec-WebSocket-Key")) {
            up->key = h[i].value;
            keys++;
        } else if (zk_str_eq_nocase(h[i].name, "Host")) {
            if (up->host.ptr) return zk__upgrade_fail(up, 400, "more than one Host header");
            up->host = h[i].value;
        }
    }
    if (!up->host.ptr || up->host.len == 0) return zk__upgrade_fail(up, 400, "missing Host header");
    if (keys != 1) return zk__upgrade_fail(up, 400, keys ? "more than one Sec-WebSocket-Key" : "missing Sec-WebSocket-Key");
    if (up->key.len != 24 || zk__b64_decode(up->key.ptr, 24, nonce, sizeof nonce) != 16)
        return zk__upgrade_fail(up, 400, "Sec-WebSocket-Key is not base64 of 16 bytes");
    version = zk_http_header_get(h, n, "Sec-WebSocket-Version");
    if (version.len != 2 || memcmp(version.ptr, "13", 2) != 0)
        return zk__upgrade_fail(up, 426, "unsupported Sec-WebSocket-Version (13 is)");
    up->origin = zk_http_header_get(h, n, "Origin");
    up->protocols = zk_http_header_get(h, n, "Sec-WebSocket-Protocol");
    for (j = 0; j < protocol_count && !up->protocol; j++) {
        for (i = 0; i < n && !up->protocol; i++) {
            if (zk_str_eq_nocase(h[i].name, "Sec-WebSocket-Protocol") &&
                zk__list_has(h[i].value, protocols[j], 1))
                up->protocol = protocols[j];
        }
    }
    zk_ws_accept_key(up->key, up->accept);
    return ZK_OK;
}

ZK_API int zk_ws_upgrade_accept(char *out, size_t cap, const zk_ws_upgrade *up,
                                const zk_http_header *headers, size_t header_count) {
    zk__out o = {NULL, 0, 0, 0};
    o.p = out;
    o.cap = cap;
    zk__out_str(&o, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: ");
    zk__out_bytes(&o, up->accept, 28);
    zk__out_bytes(&o, "\r\n", 2);
    if (up->protocol) zk__out_header(&o, "Sec-WebSocket-Protocol", zk_str_c(up->protocol));
    zk__out_headers(&o, headers, header_count);
    zk__out_bytes(&o, "\r\n", 2);
    return zk__out_done(&o);
}

ZK_API int zk_ws_upgrade_refuse(char *out, size_t cap, const zk_ws_upgrade *up) {
    zk_http_header h[2];
    size_t n = 1, len;
    char body[128];
    const char *error = up->error ? up->error : "bad WebSocket upgrade";
    int status = up->status ? up->status : 400;
    h[0].name = zk_str_c("Content-Type");
    h[0].value = zk_str_c("text/plain");
    if (status == 426) {
        h[1].name = zk_str_c("Sec-WebSocket-Version");
        h[1].value = zk_str_c("13");
        n = 2;
    } else if (status == 405) {
        h[1].name = zk_str_c("Allow");
        h[1].value = zk_str_c("GET");
        n = 2;
    }
    len = strlen(error);
    if (len > sizeof body - 1) len = sizeof body - 1;
    memcpy(body, error, len);
    body[len++] = '\n';
    return zk_http_write_response(out, cap, status, h, n, body, len);
}

/* ---- the upgrade, client side ---- */

ZK_API int zk_ws_client_request(char *out, size_t cap, const zk_ws_client_handshake *hs) {
    zk__out o = {NULL, 0, 0, 0};
    zk_str path = zk_str_c(hs->path && hs->path[0] ? hs->path : "/"), host = zk_str_c(hs->host);
    char key[25];
    size_t i;
    o.p = out;
    o.cap = cap;
    if (host.len == 0 || path.ptr[0] != '/') return ZK_EINVAL;
    for (i = 0; i < host.len; i++)
        if ((unsigned char)host.ptr[i] <= 0x20 || host.ptr[i] == 0x7F) return ZK_EINVAL;
    for (i = 0; i < path.len; i++)
        if ((unsigned char)path.ptr[i] <= 0x20 || path.ptr[i] == 0x7F) return ZK_EINVAL;
    zk__b64_encode(hs->key, 16, key);
    key[24] = '\0';
    zk__out_str(&o, "GET ");
    zk__out_bytes(&o, path.ptr, path.len);
    zk__out_str(&o, " HTTP/1.1\r\n");
    zk__out_header(&o, "Host", host);
    zk__out_str(&o, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    zk__out_bytes(&o, key, 24);
    zk__out_str(&o, "\r\nSec-WebSocket-Version: 13\r\n");
    if (hs->origin) zk__out_header(&o, "Origin", zk_str_c(hs->origin));
    if (hs->protocol_count) {
        zk__out_str(&o, "Sec-WebSocket-Protocol: ");
        for (i = 0; i < hs->protocol_count; i++) {
            if (!zk__is_token(zk_str_c(hs->protocols[i]))) return ZK_EINVAL;
            if (i) zk__out_bytes(&o, ", ", 2);
            zk__out_str(&o, hs->protocols[i]);
        }
        zk__out_bytes(&o, "\r\n", 2);
    }
    zk__out_headers(&o, hs->headers, hs->header_count);
    zk__out_bytes(&o, "\r\n", 2);
    return zk__out_done(&o);
}

ZK__PRIVATE int zk__verify_fail(const char **error, const char *why) {
    if (error) *error = why;
    return ZK_EHANDSHAKE;
}

ZK_API int zk_ws_client_verify(const zk_http_response *res, const zk_ws_client_handshake *hs,
                               zk_str *protocol, const char **error) {
    const zk_http_header *h = res->headers;
    size_t n = res->header_count, i;
    char key[25], accept[29];
    zk_str got, chosen;
    if (protocol) { protocol->ptr = ""; protocol->len = 0; }
    if (res->status != 101) return zk__verify_fail(error, "server did not answer 101 Switching Protocols");
    if (!zk_http_list_has(zk_http_header_get(h, n, "Upgrade"), "websocket"))
        return zk__verify_fail(error, "response lacks Upgrade: websocket");
    if (!zk_http_list_has(zk_http_header_get(h, n, "Connection"), "upgrade"))
        return zk__verify_fail(error, "response lacks Connection: Upgrade");
    zk__b64_encode(hs->key, 16, key);
    key[24] = '\0';
    zk_ws_accept_key(zk_str_c(key), accept);
    got = zk_http_header_get(h, n, "Sec-WebSocket-Accept");
    if (got.len != 28 || memcmp(got.ptr, accept, 28) != 0)
        return zk__verify_fail(error, "wrong Sec-WebSocket-Accept");
    if (zk_http_header_get(h, n, "Sec-WebSocket-Extensions").ptr)
        return zk__verify_fail(error, "server chose an extension that was not offered");
    chosen = zk_http_header_get(h, n, "Sec-WebSocket-Protocol");
    if (chosen.ptr) {
        int offered = 0;
        for (i = 0; i < hs->protocol_count && !offered; i++)
            offered = strlen(hs->protocols[i]) == chosen.len &&
                      memcmp(hs->protocols[i], chosen.ptr, chosen.len) == 0;
        if (!offered) return zk__verify_fail(error, "server chose a subprotocol that was not offered");
        if (protocol) *protocol = chosen;
    }
    if (error) *error = NULL;
    return ZK_OK;
}
/* >>ws implementation ---------------------------------------------------- */

/* zk_ws.flags */
#define ZK__WS_IN_FRAME 1u   /* inside a data frame's payload */
#define ZK__WS_FIN 2u        /* the current data frame ends its message */
#define ZK__WS_IN_MESSAGE 4u /* a fragmented message is being reassembled */
#define ZK__WS_RELEASE 8u    /* msg was handed out: drop it at the next feed */

ZK_API void zk_ws_init(zk_ws *ws, const zk_ws_opts *opts) {
    memset(ws, 0, sizeof *ws);
    ws->role = (unsigned char)(opts && opts->role == ZK_WS_CLIENT ? ZK_WS_CLIENT : ZK_WS_SERVER);
    ws->max_message = opts && opts->max_message ? opts->max_message : (size_t)ZK_WS_MAX_MESSAGE;
    ws->rng = opts ? opts->mask_seed : 0;
    ws->state = ZK_WS_OPEN;
}

ZK_API void zk_ws_free(zk_ws *ws) {
    if (ws->msg) ZK_FREE(ws->msg);
    ws->msg = NULL;
    ws->msg_len = ws->msg_cap = 0;
    ws->flags &= (unsigned char)~(ZK__WS_IN_MESSAGE | ZK__WS_IN_FRAME | ZK__WS_RELEASE);
}

ZK_API int zk_ws_state(const zk_ws *ws) { return ws->state; }

ZK_API int zk_ws_close_code_valid(int code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* splitmix64: masking keys for client frames. */
ZK__PRIVATE uint32_t zk__ws_next_key(zk_ws *ws) {
    uint64_t z = (ws->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 16);
}

ZK_API void zk_ws_mask(void *data, size_t len, const unsigned char mask[4], size_t offset) {
    unsigned char *p = (unsigned char *)data, k[8];
    uint64_t k8;
    uint32_t k4;
    size_t i;
    for (i = 0; i < 4; i++) k[i] = k[i + 4] = mask[(offset + i) & 3];
    memcpy(&k4, k, 4);
#if ZK__SSE2
    if (len >= 64) {
        __m128i km = _mm_set1_epi32((int)k4);
        for (; len >= 64; p += 64, len -= 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)(void *)p);
            __m128i b = _mm_loadu_si128((const __m128i *)(void *)(p + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(void *)(p + 32));
            __m128i d = _mm_loadu_si128((const __m128i *)(void *)(p + 48));
            _mm_storeu_si128((__m128i *)(void *)p, _mm_xor_si128(a, km));
            _mm_storeu_si128((__m128i *)(void *)(p + 16), _mm_xor_si128(b, km));
            _mm_storeu_si128((__m128i *)(void *)(p + 32), _mm_xor_si128(c, km));
            _mm_storeu_si128((__m128i *)(void *)(p + 48), _mm_xor_si128(d, km));
        }
    }
#endif
    memcpy(&k8, k, 8);
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= k8;
        memcpy(p, &v, 8);
    }
    for (i = 0; i < len; i++) p[i] ^= k[i];
}

/* dst = src XOR mask, in one pass: the reassembly path copies and unmasks. */
ZK__PRIVATE void zk__ws_mask_copy(unsigned char *dst, const unsigned char *src, size_t len,
                                  const unsigned char mask[4], size_t offset) {
    unsigned char k[16];
    uint64_t k8;
    size_t i;
    for (i = 0; i < 16; i++) k[i] = mask[(offset + i) & 3];
#if ZK__SSE2
    if (len >= 32) {
        __m128i km = _mm_loadu_si128((const __m128i *)(const void *)k);
        for (; len >= 32; src += 32, dst += 32, len -= 32) {
            __m128i a = _mm_loadu_si128((const __m128i *)(const void *)src);
            __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(src + 16));
            _mm_storeu_si128((__m128i *)(void *)dst, _mm_xor_si128(a, km));
            _mm_storeu_si128((__m128i *)(void *)(dst + 16), _mm_xor_si128(b, km));
        }
    }
#endif
    memcpy(&k8, k, 8);
    for (; len >= 8; src += 8, dst += 8, len -= 8) {
        uint64_t v;
        memcpy(&v, src, 8);
        v ^= k8;
        memcpy(dst, &v, 8);
    }
    for (i = 0; i < len; i++) dst[i] = (unsigned char)(src[i] ^ k[i]);
}

ZK_API size_t zk_ws_frame_header(unsigned char out[14], int opcode, int fin, uint64_t len,
                                 const unsigned char *mask) {
    size_t n = 2;
    out[0] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (len < 126) {
        out[1] = (unsigned char)len;
    } else if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        n = 4;
    } else {
        int i;
        out[1] = 127;
        for (i = 0; i < 8; i++) out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        out[1] |= 0x80;
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

ZK_API size_t zk_ws_frame_size(const zk_ws *ws, size_t payload_len) {
    size_t header = payload_len < 126 ? 2 : payload_len <= 0xFFFF ? 4 : 10;
    return header + (ws->role == ZK_WS_CLIENT ? 4 : 0) + payload_len;
}

/* Writes a whole frame; the caller checked cap >= zk_ws_frame_size. */
ZK__PRIVATE size_t zk__ws_frame(zk_ws *ws, unsigned char *out, int opcode, int fin,
                                const void *payload, size_t len) {
    size_t n;
    if (ws->role == ZK_WS_CLIENT) {
        uint32_t key = zk__ws_next_key(ws);
        unsigned char mask[4];
        memcpy(mask, &key, 4);
        n = zk_ws_frame_header(out, opcode, fin, len, mask);
        zk__ws_mask_copy(out + n, (const unsigned char *)payload, len, mask, 0);
    } else {
        n = zk_ws_frame_header(out, opcode, fin, len, NULL);
        if (len) memcpy(out + n, payload, len);
    }
    return n + len;
}

/* A close frame with code (none when 0) and reason, into a control buffer. */
ZK__PRIVATE size_t zk__ws_close_frame(zk_ws *ws, unsigned char *out, int code,
                                      const char *reason, size_t reason_len) {
    unsigned char payload[125];
    size_t n = 0;
    if (code) {
        payload[0] = (unsigned char)(code >> 8);
        payload[1] = (unsigned char)code;
        n = 2 + ZK__MIN(reason_len, (size_t)123);
        if (n > 2) memcpy(payload + 2, reason, n - 2);
    }
    return zk__ws_frame(ws, out, ZK_WS_CLOSE, 1, payload, n);
}

ZK_API int zk_ws_send(zk_ws *ws, void *out, size_t cap, int opcode,
                      const void *payload, size_t len, int fin) {
    uint32_t utf8 = ws->utf8_out;
    int text;
    size_t size;
    if (ws->state != ZK_WS_OPEN) return ZK_ECLOSED;
    if (!payload && len) return ZK_EINVAL;
    switch (opcode) {
    case ZK_WS_PING:
    case ZK_WS_PONG:
        if (len > 125 || !fin) return ZK_EINVAL;
        break;
    case ZK_WS_TEXT:
    case ZK_WS_BINARY:
        if (ws->send_op) return ZK_EINVAL; /* a fragmented message is open */
        utf8 = ZK__UTF8_ACCEPT;
        break;
    case ZK_WS_CONTINUATION:
        if (!ws->send_op) return ZK_EINVAL;
        break;
    default:
        return ZK_EINVAL;
    }
    text = opcode == ZK_WS_TEXT || (opcode == ZK_WS_CONTINUATION && ws->send_op == ZK_WS_TEXT);
    if (text) {
        utf8 = zk__utf8_run(utf8, (const unsigned char *)payload, len);
        if (utf8 == ZK__UTF8_REJECT || (fin && utf8 != ZK__UTF8_ACCEPT)) return ZK_EINVAL;
    }
    size = zk_ws_frame_size(ws, len);
    if (size > 0x7FFFFFFF || size < len) return ZK_EINVAL;
    if (cap < size) return ZK_ENOSPACE;
    zk__ws_frame(ws, (unsigned char *)out, opcode, fin, payload, len);
    if (!(opcode & 0x8)) {
        if (text) ws->utf8_out = utf8;
        if (fin) ws->send_op = 0;
        else if (opcode != ZK_WS_CONTINUATION) ws->send_op = (unsigned char)opcode;
    }
    return (int)size;
}

ZK_API int zk_ws_close(zk_ws *ws, void *out, size_t cap, int code,
                       const char *reason, size_t reason_len) {
    if (ws->state != ZK_WS_OPEN) return ZK_ECLOSED;
    if (code == 0 ? reason_len != 0 : !zk_ws_close_code_valid(code)) return ZK_EINVAL;
    if (reason_len > 123 || (reason_len && !reason) || !zk_utf8_valid(reason, reason_len))
        return ZK_EINVAL;
    if (cap < zk_ws_frame_size(ws, code ? 2 + reason_len : 0)) return ZK_ENOSPACE;
    ws->state = ZK_WS_CLOSE_SENT;
    return (int)zk__ws_close_frame(ws, (unsigned char *)out, code, reason, reason_len);
}

/* Nothing is read after a close: a half-received message is dropped now. */
ZK__PRIVATE void zk__ws_closed(zk_ws *ws) {
    ws->state = ZK_WS_CLOSED;
    zk_ws_free(ws);
}

/* The peer broke the protocol: answer with a close (unless one was sent
   already), stop, and swallow what is left. */
ZK__PRIVATE size_t zk__ws_fail(zk_ws *ws, zk_ws_event *ev, int code, const char *error, size_t len) {
    ev->type = ZK_WS_EV_ERROR;
    ev->code = code;
    ev->error = error;
    if (ws->state == ZK_WS_OPEN)
        ev->reply_len = zk__ws_close_frame(ws, ev->reply, code, error, strlen(error));
    zk__ws_closed(ws);
    return len;
}

/* A complete control frame whose payload p[0..n) is already unmasked. */
ZK__PRIVATE void zk__ws_control(zk_ws *ws, zk_ws_event *ev, int opcode, const char *p, size_t n) {
    ev->data.ptr = p;
    ev->data.len = n;
    if (opcode == ZK_WS_PING) {
        ev->type = ZK_WS_EV_PING;
        /* RFC 6455 5.5.2: answered unless a close was received (we only get
           here before that), so also after we sent ours */
        ev->reply_len = zk__ws_frame(ws, ev->reply, ZK_WS_PONG, 1, p, n);
        return;
    }
    if (opcode == ZK_WS_PONG) {
        ev->type = ZK_WS_EV_PONG;
        return;
    }
    /* close */
    ev->data.len = 0;
    if (n == 1) {
        zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload", 0);
        return;
    }
    ev->code = ZK_CLOSE_NO_STATUS;
    if (n >= 2) {
        ev->code = (unsigned char)p[0] << 8 | (unsigned char)p[1];
        if (!zk_ws_close_code_valid(ev->code)) {
            zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "invalid close code", 0);
            return;
        }
        if (!zk_utf8_valid(p + 2, n - 2)) {
            zk__ws_fail(ws, ev, ZK_CLOSE_INVALID_DATA, "close reason is not UTF-8", 0);
            return;
        }
        ev->data.ptr = p + 2;
        ev->data.len = n - 2;
    }
    ev->type = ZK_WS_EV_CLOSE;
    if (ws->state == ZK_WS_OPEN)
        ev->reply_len = zk__ws_close_frame(ws, ev->reply, ev->code == ZK_CLOSE_NO_STATUS ? 0 : ev->code,
                                           NULL, 0);
    zk__ws_closed(ws);
}

/* Makes room for n more bytes of the message being reassembled. The buffer
   doubles, so it never holds more than twice what arrived (a peer that
   declares a huge frame and sends little gets little) and tiny fragments
   cost amortised O(1); the final frame's end, when known, is the exact size. */
ZK__PRIVATE int zk__ws_reserve(zk_ws *ws, size_t n) {
    size_t need = ws->msg_len + n, cap, frame_end;
    unsigned char *p;
    if (need <= ws->msg_cap) return 0;
    frame_end = ws->msg_len + (size_t)ws->frame_left;
    cap = ws->msg_cap ? ws->msg_cap * 2 : 4096;
    if ((ws->flags & ZK__WS_FIN) && cap > frame_end) cap = frame_end;
    if (cap > ws->max_message) cap = ws->max_message;
    if (cap < need) cap = need;
    p = (unsigned char *)ZK_REALLOC(ws->msg, cap);
    if (!p) return ZK_ENOMEM;
    ws->msg = p;
    ws->msg_cap = cap;
    return 0;
}

ZK_API size_t zk_ws_feed(zk_ws *ws, void *in, size_t len, zk_ws_event *ev) {
    unsigned char *p = (unsigned char *)in;
    size_t used = 0, n;

    ev->type = ZK_WS_EV_NONE;
    ev->code = 0;
    ev->data.ptr = "";
    ev->data.len = 0;
    ev->error = NULL;
    ev->reply_len = 0;
    if (ws->flags & ZK__WS_RELEASE) {
        ws->flags &= (unsigned char)~ZK__WS_RELEASE;
        ws->msg_len = 0;
        if (ws->msg) ZK_FREE(ws->msg);
        ws->msg = NULL;
        ws->msg_cap = 0;
    }
    if (ws->state == ZK_WS_CLOSED) return len;

    if (!(ws->flags & ZK__WS_IN_FRAME)) {
        unsigned b0, b1, opcode, fin, masked;
        size_t header;
        uint64_t plen;
        if (len < 2) return 0;
        b0 = p[0];
        b1 = p[1];
        fin = b0 >> 7;
        opcode = b0 & 0x0F;
        masked = b1 >> 7;
        plen = b1 & 0x7F;
        if (b0 & 0x70) return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "reserved bits set", len);
        if ((opcode > 2 && opcode < 8) || opcode > 10)
            return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "reserved opcode", len);
        if (masked != (ws->role == ZK_WS_SERVER ? 1u : 0u))
            return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR,
                               masked ? "masked frame from a server" : "unmasked frame from a client", len);
        if (opcode & 0x8) {
            if (!fin) return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "fragmented control frame", len);
            if (plen > 125) return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "control frame over 125 bytes", len);
        } else if (opcode == ZK_WS_CONTINUATION) {
            if (!(ws->flags & ZK__WS_IN_MESSAGE))
                return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "continuation without a message", len);
        } else if (ws->flags & ZK__WS_IN_MESSAGE) {
            return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one", len);
        }
        header = 2 + (plen == 126 ? 2 : plen == 127 ? 8 : 0) + (masked ? 4 : 0);
        if (len < header) return 0;
        if (plen == 126) {
            plen = (uint64_t)p[2] << 8 | p[3];
        } else if (plen == 127) {
            int i;
            if (p[2] & 0x80) return zk__ws_fail(ws, ev, ZK_CLOSE_PROTOCOL_ERROR, "64-bit length with the high bit set", len);
            for (plen = 0, i = 2; i < 10; i++) plen = plen << 8 | p[i];
        }
        if (masked) memcpy(ws->mask, p + header - 4, 4);

        if (opcode & 0x8) {
            /* control frames are handled whole: wait until all of it is here */
            if (len - header < plen) return 0;
            if (masked) zk_ws_mask(p + header, (size_t)plen, ws->mask, 0);
            zk__ws_control(ws, ev, (int)opcode, (const char *)p + header, (size_t)plen);
            return ev->type == ZK_WS_EV_ERROR ? len : header + (size_t)plen;
        }
        if (plen > (uint64_t)ws->max_message ||
            (opcode == ZK_WS_CONTINUATION && plen > (uint64_t)(ws->max_message - ws->msg_len)))
            return zk__ws_fail(ws, ev, ZK_CLOSE_TOO_BIG, "message too big", len);

        if (fin && opcode != ZK_WS_CONTINUATION && len - header >= plen) {
            /* the common case: a whole one-frame message, used in place */
            unsigned char *payload = p + header;
            if (masked) zk_ws_mask(payload, (size_t)plen, ws->mask, 0);
            if (opcode == ZK_WS_TEXT && !zk_utf8_valid(payload, (size_t)plen))
                return zk__ws_fail(ws, ev, ZK_CLOSE_INVALID_DATA, "text is not valid UTF-8", len);
            ev->type = opcode == ZK_WS_TEXT ? ZK_WS_EV_TEXT : ZK_WS_EV_BINARY;
            ev->data.ptr = (const char *)payload;
            ev->data.len = (size_t)plen;
            return header + (size_t)plen;
        }
        /* otherwise the payload is copied into the message buffer as it comes */
        if (opcode != ZK_WS_CONTINUATION) {
            ws->msg_op = (unsigned char)opcode;
            ws->msg_len = 0;
            ws->utf8_in = ZK__UTF8_ACCEPT;
            ws->flags |= ZK__WS_IN_MESSAGE;
        }
        ws->flags = (unsigned char)((ws->flags & ~ZK__WS_FIN) | ZK__WS_IN_FRAME | (fin ? ZK__WS_FIN : 0));
        ws->frame_left = plen;
        ws->mask_off = 0;
        p += header;
        len -= header;
        used = header;
    }

    n = (size_t)ZK__MIN((uint64_t)len, ws->frame_left);
    if (n) {
        unsigned char *dst;
        if (zk__ws_reserve(ws, n) < 0)
            return used + zk__ws_fail(ws, ev, ZK_CLOSE_TOO_BIG, "out of memory for the message", len);
        dst = ws->msg + ws->msg_len;
        if (ws->role == ZK_WS_SERVER) zk__ws_mask_copy(dst, p, n, ws->mask, ws->mask_off);
        else memcpy(dst, p, n);
        ws->mask_off = (unsigned char)((ws->mask_off + n) & 3);
        if (ws->msg_op == ZK_WS_TEXT) {
            ws->utf8_in = zk__utf8_run(ws->utf8_in, dst, n);
            if (ws->utf8_in == ZK__UTF8_REJECT)
                return used + zk__ws_fail(ws, ev, ZK_CLOSE_INVALID_DATA, "text is not valid UTF-8", len);
        }
        ws->msg_len += n;
        ws->frame_left -= n;
        used += n;
    }
    if (ws->frame_left == 0) {
        ws->flags &= (unsigned char)~ZK__WS_IN_FRAME;
        if (ws->flags & ZK__WS_FIN) {
            if (ws->msg_op == ZK_WS_TEXT && ws->utf8_in != ZK__UTF8_ACCEPT)
                return used + zk__ws_fail(ws, ev, ZK_CLOSE_INVALID_DATA, "text is not valid UTF-8", len - n);
            ws->flags = (unsigned char)((ws->flags & ~ZK__WS_IN_MESSAGE) | ZK__WS_RELEASE);
            ev->type = ws->msg_op == ZK_WS_TEXT ? ZK_WS_EV_TEXT : ZK_WS_EV_BINARY;
            ev->data.ptr = ws->msg ? (const char *)ws->msg : "";
            ev->data.len = ws->msg_len;
        }
    }
    return used;
}
/* >>loop implementation -------------------------------------------------- */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#if !defined(ZK_HAVE_EPOLL)
#if defined(__linux__)
#define ZK_HAVE_EPOLL 1
#else
#define ZK_HAVE_EPOLL 0
#endif
#endif
#if !defined(ZK_HAVE_KQUEUE)
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || \
    defined(__NetBSD__) || defined(__DragonFly__)
#define ZK_HAVE_KQUEUE 1
#else
#define ZK_HAVE_KQUEUE 0
#endif
#endif
#if ZK_HAVE_EPOLL
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif
#if ZK_HAVE_KQUEUE
#include <sys/event.h>
#endif

/* ---- internal I/O watchers and deferred work ---- */

#define ZK__IO_READ 1u
#define ZK__IO_WRITE 2u
#define ZK__IO_ERROR 4u /* hang-up or error: also reported as readable */

typedef struct zk__io zk__io;
typedef void (*zk__io_fn)(zk__io *io, unsigned events);
struct zk__io {
    int fd;
    unsigned events; /* registered interest */
    zk__io_fn fn;
    size_t slot;     /* poll backend: index + 1; 0 when not registered */
};

/* Work the loop runs after I/O in a pass (in-memory deliveries, flushes). */
typedef struct zk__work zk__work;
struct zk__work {
    zk__work *next;
    void (*fn)(zk__work *work);
    int queued;
};

typedef struct zk__post {
    struct zk__post *next;
    zk_post_fn fn;
    void *arg;
} zk__post;

struct zk_loop {
    int poller, fd, stopped, virtual_clock;
    uint64_t now, rng[4];
    void *data;
    /* timers: a binary min-heap on (due, seq) */
    zk_timer **heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;
    /* poll backend */
    struct pollfd *pfds;
    zk__io **pios;
    size_t npfds, pfds_cap;
    /* epoll / kqueue: the batch being dispatched, so a watcher stopped by an
       earlier callback is not called from it */
    void *events;
    int nevents, event_at, max_events;
    /* wakeup and posts from other threads */
    int wake_rd, wake_wr, wake_pending;
    zk__io wake_io;
    pthread_mutex_t mutex;
    zk__post *posts, *posts_tail;
    /* deferred work; work_stop ends the current pass (see zk__work_run) */
    zk__work *work, *work_tail, *work_stop;
    int work_stop_gone;
    /* the read buffer every connection of this loop reads into */
    unsigned char *rbuf;
    size_t rbuf_cap;
    /* client connections (the net layer's), dropped by zk_loop_free */
    void *clients;
    void (*drop_clients)(zk_loop *loop);
    /* spare write-queue chunks: a list through each block's first word */
    void *chunk_cache;
    size_t chunk_cached;     /* spare standard chunks (net.c) */
    size_t chunk_live;       /* standard chunks in write queues now */
    size_t chunk_peak;       /* the most in queues since chunk_decay_at */
    uint64_t chunk_decay_at;
    /* the cork: output of the connection whose read handler runs */
    unsigned char *cork;
    size_t cork_len, cork_cap;
    void *corked;
    int cork_raw;
};

ZK__PRIVATE uint64_t zk__monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

ZK__PRIVATE int zk__set_nonblock(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return -1;
    flags = fcntl(fd, F_GETFD, 0);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) return -1;
    return 0;
}

/* ---- random: xoshiro256**, seeded through splitmix64 ---- */

ZK__PRIVATE uint64_t zk__splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

ZK__PRIVATE uint64_t zk__os_seed(void) {
    uint64_t seed = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &seed, sizeof seed) != (ssize_t)sizeof seed) seed = 0;
        close(fd);
    }
    if (seed == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid() << 40;
    }
    return seed;
}

#define ZK__ROL64(x, k) (((x) << (k)) | ((x) >> (64 - (k))))

ZK_API uint64_t zk_loop_random(zk_loop *loop) {
    uint64_t *s = loop->rng, r = ZK__ROL64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ZK__ROL64(s[3], 45);
    return r;
}

ZK_API void zk_loop_random_bytes(zk_loop *loop, void *out, size_t len) {
    unsigned char *p = (unsigned char *)out;
    while (len) {
        uint64_t r = zk_loop_random(loop);
        size_t n = len < 8 ? len : 8;
        memcpy(p, &r, n);
        p += n;
        len -= n;
    }
}

/* ---- pollers ---- */

ZK__PRIVATE int zk__poller_open(zk_loop *loop) {
    loop->fd = -1;
    if (loop->poller == ZK_POLLER_AUTO)
        loop->poller = ZK_HAVE_EPOLL ? ZK_POLLER_EPOLL : ZK_HAVE_KQUEUE ? ZK_POLLER_KQUEUE : ZK_POLLER_POLL;
#if ZK_HAVE_EPOLL
    if (loop->poller == ZK_POLLER_EPOLL) {
        loop->fd = epoll_create1(EPOLL_CLOEXEC);
        loop->events = ZK_MALLOC(sizeof(struct epoll_event) * (size_t)loop->max_events);
        return loop->fd >= 0 && loop->events ? 0 : -1;
    }
#endif
#if ZK_HAVE_KQUEUE
    if (loop->poller == ZK_POLLER_KQUEUE) {
        loop->fd = kqueue();
        if (loop->fd >= 0) fcntl(loop->fd, F_SETFD, FD_CLOEXEC);
        loop->events = ZK_MALLOC(sizeof(struct kevent) * (size_t)loop->max_events);
        return loop->fd >= 0 && loop->events ? 0 : -1;
    }
#endif
    return loop->poller == ZK_POLLER_POLL ? 0 : -1;
}

/* Registers, changes or (events == 0) removes a watcher. */
ZK__PRIVATE int zk__io_set(zk_loop *loop, zk__io *io, unsigned events) {
    unsigned old = io->events;
    int i;
    if (events == old && (events == 0 || io->slot)) return 0;
#if ZK_HAVE_EPOLL
    if (loop->poller == ZK_POLLER_EPOLL) {
        struct epoll_event ev;
        int op = !io->slot ? EPOLL_CTL_ADD : events ? EPOLL_CTL_MOD : EPOLL_CTL_DEL;
        memset(&ev, 0, sizeof ev);
        ev.events = (events & ZK__IO_READ ? EPOLLIN : 0u) | (events & ZK__IO_WRITE ? EPOLLOUT : 0u);
        ev.data.ptr = io;
        if (!io->slot && !events) return 0;
        if (epoll_ctl(loop->fd, op, io->fd, &ev) < 0 && op != EPOLL_CTL_DEL)
            return errno == ENOMEM || errno == ENOSPC ? ZK_ENOMEM : ZK_EIO;
        io->slot = events ? 1 : 0;
        io->events = events;
        if (!events) {
            struct epoll_event *e = (struct epoll_event *)loop->events;
            for (i = loop->event_at + 1; i < loop->nevents; i++)
                if (e[i].data.ptr == io) e[i].data.ptr = NULL;
        }
        return 0;
    }
#endif
#if ZK_HAVE_KQUEUE
    if (loop->poller == ZK_POLLER_KQUEUE) {
        /* one change per call: kqueue stops at the first failing change, and
           io->events must say exactly what is registered */
        static const short filters[2] = {EVFILT_READ, EVFILT_WRITE};
        static const unsigned bits[2] = {ZK__IO_READ, ZK__IO_WRITE};
        int k;
        for (k = 0; k < 2; k++) {
            struct kevent ch;
            if (!((events ^ io->events) & bits[k])) continue;
            EV_SET(&ch, io->fd, filters[k], events & bits[k] ? EV_ADD : EV_DELETE, 0, 0, io);
            if (kevent(loop->fd, &ch, 1, NULL, 0, NULL) < 0 && (events & bits[k]))
                return errno == ENOMEM ? ZK_ENOMEM : ZK_EIO;
            io->events ^= bits[k];
        }
        io->slot = io->events ? 1 : 0;
        if (!events) {
            struct kevent *e = (struct kevent *)loop->events;
            for (i = loop->event_at + 1; i < loop->nevents; i++)
                if (e[i].udata == (void *)io) e[i].udata = NULL;
        }
        return 0;
    }
#endif
    /* poll */
    if (events && !io->slot) {
        if (loop->npfds == loop->pfds_cap) {
            size_t cap = loop->pfds_cap ? loop->pfds_cap * 2 : 16;
            struct pollfd *p = (struct pollfd *)ZK_REALLOC(loop->pfds, cap * sizeof *p);
            zk__io **q;
            if (!p) return ZK_ENOMEM;
            loop->pfds = p;
            q = (zk__io **)ZK_REALLOC(loop->pios, cap * sizeof *q);
            if (!q) return ZK_ENOMEM;
            loop->pios = q;
            loop->pfds_cap = cap;
        }
        loop->pfds[loop->npfds].fd = io->fd;
        loop->pfds[loop->npfds].revents = 0;
        loop->pios[loop->npfds] = io;
        io->slot = ++loop->npfds;
    }
    if (io->slot) {
        size_t at = io->slot - 1;
        if (events) {
            loop->pfds[at].events = (short)((events & ZK__IO_READ ? POLLIN : 0) | (events & ZK__IO_WRITE ? POLLOUT : 0));
        } else {
            /* swap-remove; dispatch walks downwards and clears revents, so the
               moved entry is neither lost nor run twice */
            size_t last = --loop->npfds;
            loop->pfds[at] = loop->pfds[last];
            loop->pios[at] = loop->pios[last];
            loop->pios[at]->slot = at + 1;
            io->slot = 0;
        }
    }
    io->events = events;
    return 0;
}

ZK__PRIVATE void zk__io_init(zk__io *io, int fd, zk__io_fn fn) {
    io->fd = fd;
    io->events = 0;
    io->fn = fn;
    io->slot = 0;
}

/* The wait may have lasted: callbacks must see the time they run at (a
   send's timestamp, a deadline started from a read handler). */
ZK__PRIVATE void zk__clock_after_wait(zk_loop *loop) {
    if (!loop->virtual_clock) loop->now = zk__monotonic_ms();
}

/* Waits up to timeout_ms and runs the callbacks of ready watchers. */
ZK__PRIVATE int zk__poller_wait(zk_loop *loop, int timeout_ms) {
    int n, i, ran = 0;
#if ZK_HAVE_EPOLL
    if (loop->poller == ZK_POLLER_EPOLL) {
        struct epoll_event *e = (struct epoll_event *)loop->events;
        n = epoll_wait(loop->fd, e, loop->max_events, timeout_ms);
        if (n < 0) return errno == EINTR ? 0 : ZK_EINVAL;
        zk__clock_after_wait(loop);
        loop->nevents = n;
        for (i = 0; i < n; i++) {
            zk__io *io = (zk__io *)e[i].data.ptr;
            unsigned ev = 0;
            loop->event_at = i;
            if (!io) continue;
            if (e[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) ev |= ZK__IO_READ;
            if (e[i].events & EPOLLOUT) ev |= ZK__IO_WRITE;
            if (e[i].events & (EPOLLHUP | EPOLLERR)) ev |= ZK__IO_ERROR;
            io->fn(io, ev);
            ran++;
        }
        loop->nevents = loop->event_at = 0;
        return ran;
    }
#endif
#if ZK_HAVE_KQUEUE
    if (loop->poller == ZK_POLLER_KQUEUE) {
        struct kevent *e = (struct kevent *)loop->events;
        struct timespec ts, *tsp = NULL;
        if (timeout_ms >= 0) {
            ts.tv_sec = timeout_ms / 1000;
            ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
            tsp = &ts;
        }
        n = kevent(loop->fd, NULL, 0, e, loop->max_events, tsp);
        if (n < 0) return errno == EINTR ? 0 : ZK_EINVAL;
        zk__clock_after_wait(loop);
        loop->nevents = n;
        for (i = 0; i < n; i++) {
            zk__io *io = (zk__io *)e[i].udata;
            unsigned ev;
            loop->event_at = i;
            if (!io) continue;
            ev = e[i].filter == EVFILT_WRITE ? ZK__IO_WRITE : ZK__IO_READ;
            if (e[i].flags & (EV_EOF | EV_ERROR)) ev |= ZK__IO_ERROR | ZK__IO_READ;
            io->fn(io, ev);
            ran++;
        }
        loop->nevents = loop->event_at = 0;
        return ran;
    }
#endif
    n = poll(loop->pfds, (nfds_t)loop->npfds, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : ZK_EINVAL;
    zk__clock_after_wait(loop);
    for (i = (int)loop->npfds - 1; i >= 0 && n > 0; i--) {
        short re;
        unsigned ev = 0;
        if ((size_t)i >= loop->npfds) continue;
        re = loop->pfds[i].revents;
        if (!re) continue;
        loop->pfds[i].revents = 0;
        n--;
        if (re & (POLLIN | POLLHUP | POLLERR)) ev |= ZK__IO_READ;
        if (re & POLLOUT) ev |= ZK__IO_WRITE;
        if (re & (POLLHUP | POLLERR | POLLNVAL)) ev |= ZK__IO_ERROR | ZK__IO_READ;
        loop->pios[i]->fn(loop->pios[i], ev);
        ran++;
    }
    return ran;
}

/* ---- deferred work ---- */

ZK__PRIVATE void zk__work_queue(zk_loop *loop, zk__work *w) {
    if (w->queued) return;
    w->queued = 1;
    w->next = NULL;
    if (loop->work_tail) loop->work_tail->next = w;
    else loop->work = w;
    loop->work_tail = w;
}

ZK__PRIVATE void zk__work_cancel(zk_loop *loop, zk__work *w) {
    zk__work **p, *prev = NULL;
    if (!w->queued) return;
    for (p = &loop->work; *p; prev = *p, p = &(*p)->next) {
        if (*p == w) {
            /* the pass that is running must still end where it meant to */
            if (loop->work_stop == w) {
                loop->work_stop = prev;
                if (!prev) loop->work_stop_gone = 1;
            }
            *p = w->next;
            if (loop->work_tail == w) {
                zk__work *t = loop->work;
                while (t && t->next) t = t->next;
                loop->work_tail = t;
            }
            break;
        }
    }
    w->queued = 0;
}

/* Runs the work queued before this call; work it queues waits for the next
   pass. The end of the pass is kept in the loop, so cancelling it (a
   connection freed by an earlier item) cannot make the pass run on. */
ZK__PRIVATE int zk__work_run(zk_loop *loop) {
    int ran = 0;
    if (!loop->work) return 0;
    loop->work_stop = loop->work_tail;
    loop->work_stop_gone = 0;
    while (loop->work && !loop->work_stop_gone) {
        zk__work *w = loop->work;
        int last = w == loop->work_stop;
        loop->work = w->next;
        if (!loop->work) loop->work_tail = NULL;
        w->queued = 0;
        w->fn(w);
        ran++;
        if (last) break;
    }
    loop->work_stop = NULL;
    return ran;
}

/* ---- timers ---- */

ZK__PRIVATE int zk__timer_less(const zk_timer *a, const zk_timer *b) {
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

ZK__PRIVATE void zk__heap_set(zk_loop *loop, size_t i, zk_timer *t) {
    loop->heap[i] = t;
    t->slot = i + 1;
}

ZK__PRIVATE void zk__heap_up(zk_loop *loop, size_t i) {
    zk_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!zk__timer_less(t, loop->heap[parent])) break;
        zk__heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    zk__heap_set(loop, i, t);
}

ZK__PRIVATE void zk__heap_down(zk_loop *loop, size_t i) {
    zk_timer *t = loop->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= loop->heap_len) break;
        if (c + 1 < loop->heap_len && zk__timer_less(loop->heap[c + 1], loop->heap[c])) c++;
        if (!zk__timer_less(loop->heap[c], t)) break;
        zk__heap_set(loop, i, loop->heap[c]);
        i = c;
    }
    zk__heap_set(loop, i, t);
}

ZK_API void zk_timer_init(zk_loop *loop, zk_timer *timer, zk_timer_fn fn, void *data) {
    memset(timer, 0, sizeof *timer);
    timer->loop = loop;
    timer->fn = fn;
    timer->data = data;
}

ZK_API int zk_timer_active(const zk_timer *timer) { return timer->slot != 0; }

ZK_API void zk_timer_stop(zk_timer *timer) {
    zk_loop *loop = timer->loop;
    size_t i;
    if (!timer->slot) return;
    i = timer->slot - 1;
    timer->slot = 0;
    if (i == --loop->heap_len) return;
    zk__heap_set(loop, i, loop->heap[loop->heap_len]);
    zk__heap_up(loop, i);
    zk__heap_down(loop, i);
}

ZK_API int zk_timer_start(zk_timer *timer, uint64_t after_ms, uint64_t repeat_ms) {
    zk_loop *loop = timer->loop;
    zk_timer_stop(timer);
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        zk_timer **h = (zk_timer **)ZK_REALLOC(loop->heap, cap * sizeof *h);
        if (!h) return ZK_ENOMEM;
        loop->heap = h;
        loop->heap_cap = cap;
    }
    timer->due = loop->now + after_ms;
    timer->repeat = repeat_ms;
    timer->seq = loop->timer_seq++;
    loop->heap[loop->heap_len] = timer;
    zk__heap_up(loop, loop->heap_len++);
    return 0;
}

/* Runs the timers due at or before `until`, advancing the virtual clock to
   each one's time. */
ZK__PRIVATE int zk__timers_run(zk_loop *loop, uint64_t until) {
    int ran = 0;
    while (loop->heap_len && loop->heap[0]->due <= until) {
        zk_timer *t = loop->heap[0];
        if (loop->virtual_clock && t->due > loop->now) loop->now = t->due;
        zk_timer_stop(t);
        if (t->repeat) zk_timer_start(t, t->repeat, t->repeat);
        t->fn(t);
        ran++;
    }
    return ran;
}

/* ---- wakeup and posts ---- */

ZK__PRIVATE void zk__wake_cb(zk__io *io, unsigned events) {
    zk_loop *loop = (zk_loop *)(void *)((char *)io - offsetof(zk_loop, wake_io));
    char drain[64];
    zk__post *p;
    (void)events;
    while (read(loop->wake_rd, drain, sizeof drain) > 0) {}
    pthread_mutex_lock(&loop->mutex);
    p = loop->posts;
    loop->posts = loop->posts_tail = NULL;
    loop->wake_pending = 0;
    pthread_mutex_unlock(&loop->mutex);
    while (p) {
        zk__post *next = p->next;
        p->fn(loop, p->arg);
        ZK_FREE(p);
        p = next;
    }
}

ZK_API int zk_loop_post(zk_loop *loop, zk_post_fn fn, void *arg) {
    zk__post *p = (zk__post *)ZK_MALLOC(sizeof *p);
    int wake;
    if (!p) return ZK_ENOMEM;
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&loop->mutex);
    if (loop->posts_tail) loop->posts_tail->next = p;
    else loop->posts = p;
    loop->posts_tail = p;
    wake = !loop->wake_pending;
    loop->wake_pending = 1;
    pthread_mutex_unlock(&loop->mutex);
    if (wake) {
        uint64_t one = 1;
        ssize_t w;
        do {
            w = write(loop->wake_wr, &one, loop->wake_rd == loop->wake_wr ? 8 : 1);
        } while (w < 0 && errno == EINTR);
    }
    return 0;
}

/* ---- the loop ---- */

ZK_API zk_loop *zk_loop_new(const zk_loop_opts *opts) {
    zk_loop *loop = (zk_loop *)ZK_MALLOC(sizeof *loop);
    uint64_t seed;
    int i;
    if (!loop) return NULL;
    memset(loop, 0, sizeof *loop);
    loop->poller = opts ? opts->poller : ZK_POLLER_AUTO;
    loop->virtual_clock = opts && opts->virtual_clock;
    loop->max_events = opts && opts->max_events ? (int)ZK__MIN(opts->max_events, (size_t)65536) : 256;
    loop->wake_rd = loop->wake_wr = -1;
    seed = opts && opts->seed ? opts->seed : zk__os_seed();
    for (i = 0; i < 4; i++) loop->rng[i] = zk__splitmix(&seed);
    loop->now = loop->virtual_clock ? 0 : zk__monotonic_ms();
    if (pthread_mutex_init(&loop->mutex, NULL) != 0) {
        ZK_FREE(loop);
        return NULL;
    }
    if (zk__poller_open(loop) < 0) goto fail;
#if ZK_HAVE_EPOLL
    loop->wake_rd = loop->wake_wr = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake_rd < 0) goto fail;
#else
    {
        int p[2];
        if (pipe(p) < 0) goto fail;
        loop->wake_rd = p[0];
        loop->wake_wr = p[1];
        if (zk__set_nonblock(p[0]) < 0 || zk__set_nonblock(p[1]) < 0) goto fail;
    }
#endif
    zk__io_init(&loop->wake_io, loop->wake_rd, zk__wake_cb);
    if (zk__io_set(loop, &loop->wake_io, ZK__IO_READ) < 0) goto fail;
    return loop;
fail:
    zk_loop_free(loop);
    return NULL;
}

ZK_API void zk_loop_free(zk_loop *loop) {
    zk__post *p;
    if (!loop) return;
    if (loop->drop_clients) loop->drop_clients(loop);
    if (loop->wake_rd >= 0) close(loop->wake_rd);
    if (loop->wake_wr >= 0 && loop->wake_wr != loop->wake_rd) close(loop->wake_wr);
    if (loop->fd >= 0) close(loop->fd);
    for (p = loop->posts; p;) {
        zk__post *next = p->next;
        ZK_FREE(p);
        p = next;
    }
    while (loop->chunk_cache) {
        void *next;
        memcpy(&next, loop->chunk_cache, sizeof next);
        ZK_FREE(loop->chunk_cache);
        loop->chunk_cache = next;
    }
    pthread_mutex_destroy(&loop->mutex);
    ZK_FREE(loop->events);
    ZK_FREE(loop->heap);
    ZK_FREE(loop->pfds);
    ZK_FREE(loop->pios);
    ZK_FREE(loop->rbuf);
    ZK_FREE(loop->cork);
    ZK_FREE(loop);
}

ZK_API uint64_t zk_loop_now(const zk_loop *loop) { return loop->now; }
ZK_API int zk_loop_fd(const zk_loop *loop) { return loop->fd; }
ZK_API void zk_loop_set_data(zk_loop *loop, void *data) { loop->data = data; }
ZK_API void *zk_loop_data(const zk_loop *loop) { return loop->data; }
ZK_API void zk_loop_stop(zk_loop *loop) { loop->stopped = 1; }

ZK_API int zk_loop_timeout(const zk_loop *loop) {
    uint64_t now, due;
    if (loop->work) return 0;
    if (!loop->heap_len) return -1;
    now = loop->virtual_clock ? loop->now : zk__monotonic_ms();
    due = loop->heap[0]->due;
    return due <= now ? 0 : (int)ZK__MIN(due - now, (uint64_t)0x7FFFFFFF);
}

ZK_API int zk_loop_step(zk_loop *loop, int timeout_ms) {
    int ran, wait = timeout_ms;
    if (!loop->virtual_clock) loop->now = zk__monotonic_ms();
    if (loop->virtual_clock && loop->heap_len) {
        wait = 0; /* virtual time never passes while waiting: look, then jump */
    } else if (wait != 0) {
        int t = zk_loop_timeout(loop);
        if (t >= 0 && (wait < 0 || t < wait)) wait = t;
    }
    ran = zk__poller_wait(loop, wait);
    if (ran < 0) return ran;
    if (!loop->virtual_clock) loop->now = zk__monotonic_ms();
    ran += zk__work_run(loop);
    if (loop->virtual_clock && ran == 0 && timeout_ms != 0 && loop->heap_len &&
        loop->heap[0]->due > loop->now)
        loop->now = loop->heap[0]->due;
    ran += zk__timers_run(loop, loop->now);
    ran += zk__work_run(loop);
    return ran;
}

ZK_API int zk_loop_run(zk_loop *loop) {
    loop->stopped = 0;
    while (!loop->stopped) {
        int rc = zk_loop_step(loop, -1);
        if (rc < 0) return rc;
    }
    return 0;
}

ZK_API void zk_loop_advance(zk_loop *loop, uint64_t ms) {
    uint64_t until = loop->now + ms;
    int rounds;
    if (!loop->virtual_clock) return;
    for (rounds = 0; rounds < 100000 && loop->work; rounds++) zk__work_run(loop);
    while (loop->heap_len && loop->heap[0]->due <= until) {
        zk__timers_run(loop, loop->heap[0]->due);
        for (rounds = 0; rounds < 100000 && loop->work; rounds++) zk__work_run(loop);
    }
    loop->now = until;
}
/* >>net implementation --------------------------------------------------- */

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* BSD/macOS: SO_NOSIGPIPE is set on the socket instead */
#endif

#define ZK__READ_BUFFER (64u * 1024u) /* the loop's shared read buffer */
#define ZK__CHUNK (16u * 1024u)       /* write-queue chunk */
#define ZK__CHUNK_CACHE 64            /* spare chunks a loop keeps at least (1 MiB),
                                         and more, up to the most its queues held
                                         in the last second: a broadcast to 1000
                                         connections then reuses its 1000 chunks
                                         rather than malloc, free, glibc trimming
                                         and faulting the pages back every pass */
#define ZK__READS_PER_EVENT 8         /* fairness: reads per readiness event */
#define ZK__CORK (64u * 1024u)        /* the loop's cork buffer */
#define ZK__MAX_PONGS 64              /* pongs queued per connection before they coalesce */

/* ---- streams: what a connection reads from and writes to ---- */

typedef struct zk__stream zk__stream;
typedef struct zk__stream_ops {
    /* > 0 bytes read, 0 at end of stream, ZK_EAGAIN when nothing now, or an error */
    long (*read)(zk__stream *s, void *buf, size_t cap);
    /* bytes taken (0: would block) or an error */
    long (*writev)(zk__stream *s, const struct iovec *iov, int n);
    void (*want_write)(zk__stream *s, int on);
    void (*want_read)(zk__stream *s, int on);  /* NULL: the stream reads only when asked */
    void (*shutdown)(zk__stream *s); /* no more writes: the peer reads end of stream */
    void (*close)(zk__stream *s);    /* release; no callbacks after this */
    int (*peer)(zk__stream *s, char *out, size_t cap);
} zk__stream_ops;

struct zk__stream {
    const zk__stream_ops *ops;
    zk_conn *conn;
    int loopback;
};

/* A TCP stream lives in the same allocation as its connection, after it. */
typedef struct zk__tcp {
    zk__stream base;
    zk__io io;
    zk_loop *loop;
    int connecting;
    int no_read; /* reads paused: no read interest */
} zk__tcp;

ZK__PRIVATE void zk__conn_readable(zk_conn *c);
ZK__PRIVATE void zk__conn_writable(zk_conn *c);
ZK__PRIVATE void zk__conn_connected(zk_conn *c, int err);

/* ---- the write queue ---- */

/* A message encoded once for many connections; the write queues that hold
   it share it (refs) rather than copy it, when it is large. */
struct zk_frame {
    size_t refs;         /* the owner's, plus one per queue holding it */
    size_t size;         /* header + payload */
    size_t header;
    int binary;
    /* the frame's bytes follow */
};

#define ZK__FRAME_BYTES(f) ((unsigned char *)((f) + 1))
#define ZK__SHARE_MIN 2048 /* smaller frames are copied: cheaper than a chunk of their own */

typedef struct zk__chunk {
    struct zk__chunk *next;
    size_t len, cap;
    zk_frame *shared;     /* the bytes are this frame's, not the chunk's */
    unsigned char frames; /* holds whole WebSocket frames (not HTTP bytes) */
    unsigned char open;   /* more frames may be appended */
    unsigned char pong;   /* a queued pong (counted in zk_conn.pongs) */
} zk__chunk;

#define ZK__CHUNK_DATA(ch) ((ch)->shared ? ZK__FRAME_BYTES((ch)->shared) : (unsigned char *)((ch) + 1))

/* ---- connections ---- */

enum {
    ZK__C_CONNECTING, /* client: TCP connect under way */
    ZK__C_HANDSHAKE,  /* upgrade request or answer under way */
    ZK__C_HTTP,       /* server: a plain request waits for zk_conn_respond */
    ZK__C_OPEN,
    ZK__C_CLOSING,    /* we sent a close and wait for the peer's */
    ZK__C_LINGER,     /* done: flush, shut down, wait for the peer's end */
    ZK__C_GONE        /* transport closed */
};

enum { ZK__T_NONE, ZK__T_HANDSHAKE, ZK__T_IDLE, ZK__T_PONG, ZK__T_CLOSE, ZK__T_LINGER };

typedef struct zk__client {
    zk_ws_client_handshake hs;
    char *strings;           /* host, path, origin and protocols, copied */
    const char *protocols[8];
    zk_callbacks cb;
    zk_http_header *headers; /* copied into strings */
    uint32_t connect_timeout_ms, close_timeout_ms;
    size_t max_message;
    struct sockaddr_storage addr;
    socklen_t addr_len;
} zk__client;

struct zk_conn {
    zk__stream *stream;
    zk_loop *loop;
    zk_server *server;          /* NULL on the client side */
    zk__client *client;         /* NULL on the server side */
    zk_conn *prev, *next;       /* the server's list */
    const zk_callbacks *cb;
    void *data;
    zk_ws ws;
    unsigned char *rbuf;        /* unconsumed input (partial head or frame) */
    size_t rlen, rseen;
    zk__chunk *wq, *wq_tail;
    zk__chunk *wq_prio;         /* the last control frame queued ahead of data */
    zk__chunk *wq_pong;         /* a pong not yet started, replaced by newer ones */
    size_t wq_bytes, wq_off;    /* queued bytes; bytes of the head chunk written */
    size_t high_water, write_limit;
    zk_timer timer;
    zk_timer guard;             /* server: message_timeout_ms and write_timeout_ms */
    uint64_t last_rx;
    uint64_t msg_since;         /* a message has been arriving since (msg_started) */
    uint64_t stall_since;       /* bytes queued and none taken since (stalled) */
    uint64_t paused_since;      /* not read since (rpaused) */
    zk__work flush;
    zk__work resume;            /* reads resume: what was left is processed */
    const char *protocol;       /* chosen subprotocol, or NULL */
    int busy;                   /* handlers running on the stack */
    unsigned char state, timer_what, opened, notified, want_drain, shut, write_blocked;
    unsigned char pinged;       /* a heartbeat ping is out and nothing came since */
    unsigned char msg_started, stalled;
    unsigned char rpaused;      /* server: not read while the queue is past high water */
    unsigned char rleft;        /* rbuf holds bytes left unprocessed by a pause */
    unsigned char pongs;        /* pongs queued, at most ZK__MAX_PONGS */
    unsigned char http_pending; /* on_http has the request and has not answered */
    unsigned char accepted;     /* on_upgrade accepted it: on_close will come */
    unsigned char upgrading;    /* on_upgrade runs: zk_conn_respond may refuse */
    int http_status;            /* client: a refusing answer's status (not 101) */
    void *app;                  /* the app layer's state for this connection */
    unsigned char addr[16];     /* the peer's address (IPv4 mapped into IPv6), when counted */
    unsigned char addr_counted; /* in the server's per-address table */
};

struct zk_server {
    zk_loop *loop;
    zk_server_opts opts;
    int fd, port;
    zk__io io;
    zk_conn *conns;
    size_t nconns;
    zk_timer shutdown_timer;
    void (*shutdown_done)(zk_server *s);
    int shutting_down;
    int holding; /* inside a loop over conns: done must wait */
    struct zk__addr_slot *addrs; /* connections per address (max_per_address) */
    size_t addr_cap, addr_used;
};

/* ---- connections per address: open addressing, backward-shift delete ---- */

typedef struct zk__addr_slot {
    unsigned char key[16];
    uint32_t count;              /* 0: empty */
} zk__addr_slot;

ZK__PRIVATE size_t zk__addr_hash(const unsigned char *k, size_t cap) {
    uint64_t h = 1469598103934665603ull;
    int i;
    for (i = 0; i < 16; i++) h = (h ^ k[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

ZK__PRIVATE zk__addr_slot *zk__addr_find(const zk_server *s, const unsigned char *k) {
    size_t i;
    if (!s->addr_cap) return NULL;
    for (i = zk__addr_hash(k, s->addr_cap); s->addrs[i].count; i = (i + 1) & (s->addr_cap - 1))
        if (memcmp(s->addrs[i].key, k, 16) == 0) return &s->addrs[i];
    return NULL;
}

/* Counts one more connection from k: 0, or ZK_ENOMEM. */
ZK__PRIVATE int zk__addr_add(zk_server *s, const unsigned char *k) {
    zk__addr_slot *e = zk__addr_find(s, k);
    size_t i;
    if (e) {
        e->count++;
        return 0;
    }
    if ((s->addr_used + 1) * 2 > s->addr_cap) { /* grow: at most half full */
        size_t cap = s->addr_cap ? s->addr_cap * 2 : 16, j;
        zk__addr_slot *a = (zk__addr_slot *)ZK_MALLOC(cap * sizeof *a);
        if (!a) return ZK_ENOMEM;
        memset(a, 0, cap * sizeof *a);
        for (j = 0; j < s->addr_cap; j++) {
            if (!s->addrs[j].count) continue;
            for (i = zk__addr_hash(s->addrs[j].key, cap); a[i].count; i = (i + 1) & (cap - 1)) {
            }
            a[i] = s->addrs[j];
        }
        ZK_FREE(s->addrs);
        s->addrs = a;
        s->addr_cap = cap;
    }
    for (i = zk__addr_hash(k, s->addr_cap); s->addrs[i].count; i = (i + 1) & (s->addr_cap - 1)) {
    }
    memcpy(s->addrs[i].key, k, 16);
    s->addrs[i].count = 1;
    s->addr_used++;
    return 0;
}

ZK__PRIVATE void zk__addr_remove(zk_server *s, const unsigned char *k) {
    zk__addr_slot *e = zk__addr_find(s, k);
    size_t i, j, mask = s->addr_cap - 1;
    if (!e || --e->count) return;
    /* emptied: later entries of its run move back so lookups still find them */
    i = (size_t)(e - s->addrs);
    for (j = (i + 1) & mask; s->addrs[j].count; j = (j + 1) & mask) {
        size_t home = zk__addr_hash(s->addrs[j].key, s->addr_cap);
        if (((j - home) & mask) >= ((j - i) & mask)) { /* home is at or before the hole */
            s->addrs[i] = s->addrs[j];
            s->addrs[j].count = 0;
            i = j;
        }
    }
    s->addrs[i].count = 0;
    s->addr_used--;
}

/* The 16-byte key of a peer address (IPv4 as ::ffff:a.b.c.d), or -1. */
ZK__PRIVATE int zk__addr_key(const struct sockaddr_storage *ss, unsigned char out[16]) {
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)ss;
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a->sin_addr, 4);
        return 0;
    }
    if (ss->ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

/* A chunk for at least need bytes: a standard one (from the loop's spares
   when it has one), or exactly need bytes (HTTP answers, control frames). */
ZK__PRIVATE zk__chunk *zk__chunk_new(zk_loop *loop, size_t need, int exact) {
    size_t cap = exact ? need : need < ZK__CHUNK ? ZK__CHUNK : need;
    zk__chunk *ch;
    if (cap == ZK__CHUNK) {
        /* once a second the spares shrink to what the last second needed:
           the most its queues held at once, less what they hold now */
        if (loop->now - loop->chunk_decay_at >= 1000) {
            size_t keep = loop->chunk_peak > loop->chunk_live ? loop->chunk_peak - loop->chunk_live : 0;
            loop->chunk_decay_at = loop->now;
            loop->chunk_peak = loop->chunk_live;
            while (loop->chunk_cached > keep && loop->chunk_cached > ZK__CHUNK_CACHE) {
                ch = (zk__chunk *)loop->chunk_cache;
                loop->chunk_cache = ch->next;
                loop->chunk_cached--;
                ZK_FREE(ch);
            }
        }
        if (++loop->chunk_live > loop->chunk_peak) loop->chunk_peak = loop->chunk_live;
    }
    if (cap == ZK__CHUNK && loop->chunk_cache) {
        ch = (zk__chunk *)loop->chunk_cache;
        loop->chunk_cache = ch->next;
        loop->chunk_cached--;
    } else {
        ch = (zk__chunk *)ZK_MALLOC(sizeof *ch + cap);
        if (!ch) {
            if (cap == ZK__CHUNK) loop->chunk_live--;
            return NULL;
        }
    }
    ch->next = NULL;
    ch->shared = NULL;
    ch->len = 0;
    ch->cap = cap;
    ch->frames = 1;
    ch->open = 1;
    ch->pong = 0;
    return ch;
}

ZK__PRIVATE void zk__chunk_free(zk_loop *loop, zk__chunk *ch) {
    if (ch->shared) {
        zk_frame_free(ch->shared);
        ZK_FREE(ch);
        return;
    }
    if (ch->cap == ZK__CHUNK) loop->chunk_live--;
    if (ch->cap == ZK__CHUNK && (loop->chunk_cached < ZK__CHUNK_CACHE || loop->chunk_cached < loop->chunk_peak)) {
        ch->next = (zk__chunk *)loop->chunk_cache;
        loop->chunk_cache = ch;
        loop->chunk_cached++;
    } else {
        ZK_FREE(ch);
    }
}

ZK__PRIVATE void zk__conn_arm(zk_conn *c, int what, uint64_t ms) {
    c->timer_what = (unsigned char)what;
    if (what == ZK__T_NONE) zk_timer_stop(&c->timer);
    else zk_timer_start(&c->timer, ms, 0);
}

ZK__PRIVATE void zk__conn_schedule_flush(zk_conn *c) {
    if (c->state != ZK__C_GONE) zk__work_queue(c->loop, &c->flush);
}

/* The cork. While a connection's read handler runs, what it sends goes
   into one loop-wide buffer, written with a single send when the handler
   ends; only what the socket does not take is queued. The common echo or
   request/answer path then allocates nothing per message. */
ZK__PRIVATE void zk__cork(zk_conn *c) {
    zk_loop *loop = c->loop;
    if (loop->corked || c->wq) return; /* queued bytes go first: no cork */
    if (!loop->cork) {
        loop->cork = (unsigned char *)ZK_MALLOC(ZK__CORK);
        if (!loop->cork) return;
        loop->cork_cap = ZK__CORK;
    }
    loop->corked = c;
    loop->cork_len = 0;
    loop->cork_raw = 0;
}

ZK__PRIVATE void zk__conn_gone(zk_conn *c, int code, const char *reason);

/* Moves the corked bytes into c's queue, which is empty, and uncorks;
   `written` of them already went out (the chunk then starts mid-frame and
   wq_off says so). If that cannot be done, bytes that sends reported as
   queued would be lost: the connection is dropped instead. */
ZK__PRIVATE int zk__cork_spill(zk_conn *c, size_t written) {
    zk_loop *loop = c->loop;
    size_t n = loop->cork_len;
    zk__chunk *ch;
    loop->corked = NULL;
    if (n == written) return 0;
    ch = zk__chunk_new(loop, n, 0);
    if (!ch) {
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "out of memory");
        return ZK_ENOMEM;
    }
    memcpy(ZK__CHUNK_DATA(ch), loop->cork, n);
    ch->len = n;
    if (loop->cork_raw) ch->frames = ch->open = 0;
    c->wq = c->wq_tail = ch;
    c->wq_off = written;
    zk__conn_schedule_flush(c);
    return 0;
}

/* Reserves len bytes at the end of the queue: whole frames, or (raw) HTTP
   bytes, which get a chunk of their own. */
ZK__PRIVATE unsigned char *zk__wq_add(zk_conn *c, size_t len, int raw) {
    zk__chunk *t;
    unsigned char *p;
    zk_loop *loop = c->loop;
    if (loop->corked == c) {
        if (loop->cork_cap - loop->cork_len >= len) {
            p = loop->cork + loop->cork_len;
            loop->cork_len += len;
            loop->cork_raw |= raw;
            c->wq_bytes += len;
            return p;
        }
        if (zk__cork_spill(c, 0) < 0) return NULL;
    }
    t = c->wq_tail;
    if (raw || !t || !t->open || t->cap - t->len < len) {
        t = zk__chunk_new(c->loop, len, raw);
        if (!t) return NULL;
        if (raw) t->frames = t->open = 0;
        if (c->wq_tail) c->wq_tail->next = t;
        else c->wq = t;
        c->wq_tail = t;
    }
    p = ZK__CHUNK_DATA(t) + t->len;
    t->len += len;
    c->wq_bytes += len;
    zk__conn_schedule_flush(c);
    return p;
}

ZK__PRIVATE unsigned char *zk__wq_append(zk_conn *c, size_t len) { return zk__wq_add(c, len, 0); }

/* Gives back the last n bytes of the latest reservation. */
ZK__PRIVATE void zk__wq_unreserve(zk_conn *c, size_t n) {
    if (c->loop->corked == c) c->loop->cork_len -= n;
    else c->wq_tail->len -= n;
    c->wq_bytes -= n;
}
ZK__PRIVATE unsigned char *zk__wq_raw(zk_conn *c, size_t len) { return zk__wq_add(c, len, 1); }

/* The head chunk is partly written: split it at the first frame boundary
   after what went out, so a control frame can go in between. */
ZK__PRIVATE int zk__wq_split_head(zk_conn *c) {
    zk__chunk *h = c->wq, *r;
    const unsigned char *d = ZK__CHUNK_DATA(h);
    size_t pos = 0;
    if (!h->frames) return 0;
    while (pos < c->wq_off) {
        size_t code = d[pos + 1] & 0x7Fu, header = 2, payload = code, i;
        if (code == 126) {
            header = 4;
            payload = (size_t)d[pos + 2] << 8 | d[pos + 3];
        } else if (code == 127) {
            header = 10;
            for (payload = 0, i = 0; i < 8; i++) payload = payload << 8 | d[pos + 2 + i];
        }
        if (d[pos + 1] & 0x80u) header += 4;
        pos += header + payload;
    }
    if (pos >= h->len) return 0;
    r = zk__chunk_new(c->loop, h->len - pos, 0);
    if (!r) return ZK_ENOMEM;
    memcpy(ZK__CHUNK_DATA(r), d + pos, h->len - pos);
    r->len = h->len - pos;
    r->open = h->open;
    r->next = h->next;
    h->next = r;
    h->len = pos;
    h->open = 0;
    if (c->wq_tail == h) c->wq_tail = r;
    return 0;
}

/* Queues a control frame ahead of queued data, at the first frame
   boundary not yet started, after earlier control frames: a pong is never
   stuck behind a backlog. Every ping gets its pong, except over the
   high-water mark or past ZK__MAX_PONGS queued pongs, where the newest pong
   not yet started is replaced (RFC 6455 5.5.3): a peer that pings and never
   reads holds at most that many. HTTP bytes at the head (the 101) always go
   first. */
ZK__PRIVATE int zk__wq_priority(zk_conn *c, const void *frame, size_t len, int pong) {
    zk__chunk *ch;
    if (c->loop->corked == c && zk__cork_spill(c, 0) < 0) return ZK_ENOMEM;
    ch = c->wq_pong;
    if (pong && ch && (c->wq_bytes >= c->high_water || c->pongs >= ZK__MAX_PONGS) &&
        !(ch == c->wq && c->wq_off)) {
        memcpy(ZK__CHUNK_DATA(ch), frame, len);
        c->wq_bytes = c->wq_bytes - ch->len + len;
        ch->len = len;
        zk__conn_schedule_flush(c);
        return 0;
    }
    ch = zk__chunk_new(c->loop, ZK_WS_MAX_CONTROL_FRAME, 1);
    if (!ch) return ZK_ENOMEM;
    memcpy(ZK__CHUNK_DATA(ch), frame, len);
    ch->len = len;
    ch->open = 0; /* the data after it stays in order */
    if (!c->wq) {
        c->wq = c->wq_tail = ch;
    } else if (c->wq_prio || c->wq_off || !c->wq->frames) {
        zk__chunk *after = c->wq_prio;
        if (!after) {
            if (zk__wq_split_head(c) < 0) {
                zk__chunk_free(c->loop, ch);
                return ZK_ENOMEM;
            }
            after = c->wq;
        }
        ch->next = after->next;
        after->next = ch;
        if (c->wq_tail == after) c->wq_tail = ch;
    } else {
        ch->next = c->wq;
        c->wq = ch;
    }
    c->wq_prio = ch;
    if (pong) {
        c->wq_pong = ch;
        ch->pong = 1;
        c->pongs++;
    }
    c->wq_bytes += len;
    zk__conn_schedule_flush(c);
    return 0;
}

ZK__PRIVATE void zk__wq_clear(zk_conn *c) {
    zk__chunk *ch = c->wq;
    while (ch) {
        zk__chunk *next = ch->next;
        zk__chunk_free(c->loop, ch);
        ch = next;
    }
    c->wq = c->wq_tail = c->wq_prio = c->wq_pong = NULL;
    c->pongs = 0;
    c->wq_bytes = c->wq_off = 0;
}

ZK__PRIVATE void zk__conn_free(zk_conn *c) {
    if (c->client && (c->prev || c->loop->clients == c)) {
        if (c->prev) c->prev->next = c->next;
        else c->loop->clients = c->next;
        if (c->next) c->next->prev = c->prev;
    }
    zk_timer_stop(&c->timer);
    zk_timer_stop(&c->guard);
    zk__work_cancel(c->loop, &c->flush);
    zk__work_cancel(c->loop, &c->resume);
    zk__wq_clear(c);
    zk_ws_free(&c->ws);
    if (c->rbuf) ZK_FREE(c->rbuf);
    if (c->client) {
        ZK_FREE(c->client->strings);
        ZK_FREE(c->client);
    }
    ZK_FREE(c);
}

/* Frees the connection once its transport is closed and no handler of ours
   is running with it on the stack. */
ZK__PRIVATE void zk__conn_release(zk_conn *c) {
    if (c->busy == 0 && c->state == ZK__C_GONE) zk__conn_free(c);
}

ZK__PRIVATE void zk__server_check_done(zk_server *s);

/* Tells the user once that the connection is over. */
ZK__PRIVATE void zk__conn_notify(zk_conn *c, int code, zk_str reason, int clean) {
    if (c->notified) return;
    c->notified = 1;
    if (c->opened || c->accepted || c->client || c->http_pending) {
        c->busy++;
        if (c->cb && c->cb->on_close) c->cb->on_close(c, code, reason, clean);
        c->busy--;
    }
}

/* Closes the transport now. */
ZK__PRIVATE void zk__conn_gone(zk_conn *c, int code, const char *reason) {
    zk_server *s = c->server;
    if (c->state == ZK__C_GONE) return;
    c->state = ZK__C_LINGER; /* API calls inside on_close see a closed connection */
    zk__conn_notify(c, code, zk_str_c(reason), 0);
    if (c->state == ZK__C_GONE) { /* on_close aborted it */
        zk__conn_release(c);
        return;
    }
    c->state = ZK__C_GONE;
    if (c->loop->corked == c) c->loop->corked = NULL;
    zk_timer_stop(&c->timer);
    zk_timer_stop(&c->guard);
    zk__work_cancel(c->loop, &c->flush);
    zk__work_cancel(c->loop, &c->resume);
    if (c->stream) c->stream->ops->close(c->stream);
    c->stream = NULL;
    zk__wq_clear(c);
    if (s) {
        if (c->prev) c->prev->next = c->next;
        else s->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        c->prev = c->next = NULL;
        s->nconns--;
        if (c->addr_counted) zk__addr_remove(s, c->addr);
        c->addr_counted = 0;
        zk__server_check_done(s);
    } else if (c->client) {
        if (c->prev) c->prev->next = c->next;
        else c->loop->clients = c->next;
        if (c->next) c->next->prev = c->prev;
        c->prev = c->next = NULL;
    }
    zk__conn_release(c);
}

/* zk_loop_free: client connections still there (open, or finishing their
   close after on_close) are dropped and freed. */
ZK__PRIVATE void zk__drop_clients(zk_loop *loop) {
    while (loop->clients) zk_conn_abort((zk_conn *)loop->clients);
}

/* The WebSocket part is over (close exchanged, failed, or an HTTP answer
   queued): flush, then shut down our side and wait for the peer's end. */
ZK__PRIVATE void zk__conn_linger(zk_conn *c, uint32_t timeout_ms) {
    if (c->state >= ZK__C_LINGER) return;
    c->state = ZK__C_LINGER;
    zk__conn_arm(c, ZK__T_LINGER, timeout_ms);
    zk__conn_schedule_flush(c);
}

ZK__PRIVATE uint32_t zk__close_timeout(const zk_conn *c) {
    uint32_t t = c->server ? c->server->opts.close_timeout_ms : c->client->close_timeout_ms;
    return t ? t : 3000;
}

/* The server's two slow-peer deadlines share one timer, armed when either
   starts and checked lazily: a message arriving for longer than
   message_timeout_ms is closed with 1008, and a queue the peer has taken
   nothing from for write_timeout_ms drops the connection. */
ZK__PRIVATE uint32_t zk__ms_or(uint32_t v, uint32_t dflt) { return v ? v : dflt; }

ZK__PRIVATE void zk__guard_arm(zk_conn *c) {
    uint64_t now, due = UINT64_MAX;
    if (!c->server || zk_timer_active(&c->guard)) return;
    /* a message is timed only while open (closing, close_timeout_ms bounds
       it) and while we read */
    if (c->msg_started && c->state == ZK__C_OPEN && !c->rpaused)
        due = c->msg_since + zk__ms_or(c->server->opts.message_timeout_ms, 30000);
    if (c->stalled) {
        uint64_t d = c->stall_since + zk__ms_or(c->server->opts.write_timeout_ms, 30000);
        if (d < due) due = d;
    }
    if (due == UINT64_MAX) return;
    now = zk_loop_now(c->loop);
    zk_timer_start(&c->guard, due > now ? due - now : 0, 0);
}

ZK__PRIVATE void zk__guard_fire(zk_timer *t) {
    zk_conn *c = (zk_conn *)t->data;
    uint64_t now = zk_loop_now(c->loop);
    c->busy++;
    if (c->stalled && now - c->stall_since >= zk__ms_or(c->server->opts.write_timeout_ms, 30000)) {
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "peer did not read");
    } else if (c->msg_started && c->state == ZK__C_OPEN && !c->rpaused &&
               now - c->msg_since >= zk__ms_or(c->server->opts.message_timeout_ms, 30000)) {
        c->msg_started = 0;
        zk_conn_close(c, ZK_CLOSE_POLICY, "message too slow");
        zk__guard_arm(c);
    } else if (c->state != ZK__C_GONE) {
        zk__guard_arm(c);
    }
    c->busy--;
    zk__conn_release(c);
}

/* A server connection is not read while its write queue is past the
   high-water mark (checked after each message): a peer that sends and does
   not read waits in its own TCP window rather than growing our queue with
   answers. Reads resume below the mark, or when we close. Paused, the peer
   cannot be heard: the idle clock and a message's clock stop, and
   write_timeout_ms is what ends a peer that takes nothing. */
ZK__PRIVATE void zk__conn_pause(zk_conn *c) {
    if (c->rpaused) return;
    c->rpaused = 1;
    c->paused_since = zk_loop_now(c->loop);
    if (c->stream && c->stream->ops->want_read) c->stream->ops->want_read(c->stream, 0);
}

ZK__PRIVATE void zk__conn_resume(zk_conn *c) {
    uint64_t paused;
    if (!c->rpaused) return;
    paused = zk_loop_now(c->loop) - c->paused_since;
    c->rpaused = 0;
    c->last_rx += paused; /* the time we did not listen does not count */
    c->msg_since += paused;
    if (c->rlen) c->rleft = 1;
    if (c->stream && c->stream->ops->want_read) c->stream->ops->want_read(c->stream, 1);
    zk__work_queue(c->loop, &c->resume);
    zk__guard_arm(c);
}

ZK__PRIVATE void zk__conn_resume_work(zk__work *w) {
    zk_conn *c = (zk_conn *)(void *)((char *)w - offsetof(zk_conn, resume));
    if (c->stream && !c->rpaused) zk__conn_readable(c);
}

ZK__PRIVATE void zk__conn_flush_now(zk_conn *c) {
    struct iovec iov[64];
    long n;
    int k, taken = 0;
    if (c->state == ZK__C_GONE || c->state == ZK__C_CONNECTING || !c->stream) return;
    while (c->wq) {
        zk__chunk *ch = c->wq;
        for (k = 0; ch && k < 64; ch = ch->next, k++) {
            size_t off = k == 0 ? c->wq_off : 0;
            iov[k].iov_base = ZK__CHUNK_DATA(ch) + off;
            iov[k].iov_len = ch->len - off;
        }
        n = c->stream->ops->writev(c->stream, iov, k);
        if (n < 0) {
            zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "write failed");
            return;
        }
        c->wq_bytes -= (size_t)n;
        if (n > 0) taken = 1;
        while (n > 0) {
            ch = c->wq;
            ZK_ASSERT(ch); /* a stream takes no more than it was offered */
            if ((size_t)n >= ch->len - c->wq_off) {
                n -= (long)(ch->len - c->wq_off);
                c->wq = ch->next;
                if (!c->wq) c->wq_tail = NULL;
                if (c->wq_prio == ch) c->wq_prio = NULL;
                if (c->wq_pong == ch) c->wq_pong = NULL;
                if (ch->pong) c->pongs--;
                c->wq_off = 0;
                zk__chunk_free(c->loop, ch);
            } else {
                c->wq_off += (size_t)n;
                n = 0;
            }
        }
        if (c->wq) break; /* short write: the socket is full */
    }
    if (c->server) { /* what the peer took restarts write_timeout_ms */
        if (!c->wq) {
            c->stalled = 0;
        } else if (!c->stalled || taken) {
            c->stalled = 1;
            c->stall_since = zk_loop_now(c->loop);
            zk__guard_arm(c);
        }
    }
    if (c->wq && !c->write_blocked) {
        c->write_blocked = 1;
        c->stream->ops->want_write(c->stream, 1);
    } else if (!c->wq && c->write_blocked) {
        c->write_blocked = 0;
        c->stream->ops->want_write(c->stream, 0);
    }
    if (c->want_drain && c->wq_bytes < c->high_water && c->state == ZK__C_OPEN) {
        c->want_drain = 0;
        if (c->cb && c->cb->on_drain) {
            c->busy++;
            c->cb->on_drain(c);
            c->busy--;
        }
    }
    if (c->rpaused && (c->wq_bytes < c->high_water || c->state != ZK__C_OPEN)) zk__conn_resume(c);
    if (!c->wq && c->state == ZK__C_LINGER && !c->shut && c->stream) {
        c->shut = 1;
        c->stream->ops->shutdown(c->stream);
    }
}

ZK__PRIVATE void zk__conn_flush_work(zk__work *w) {
    zk_conn *c = (zk_conn *)(void *)((char *)w - offsetof(zk_conn, flush));
    c->busy++;
    zk__conn_flush_now(c);
    c->busy--;
    zk__conn_release(c);
}

ZK__PRIVATE void zk__conn_timer(zk_timer *t) {
    zk_conn *c = (zk_conn *)t->data;
    uint64_t now = zk_loop_now(c->loop);
    c->busy++;
    switch (c->timer_what) {
    case ZK__T_HANDSHAKE:
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, c->state == ZK__C_CONNECTING ? "connect timed out" : "handshake timed out");
        break;
    case ZK__T_IDLE: {
        uint32_t idle = c->server->opts.idle_timeout_ms ? c->server->opts.idle_timeout_ms : 30000;
        uint32_t wait = c->server->opts.pong_timeout_ms ? c->server->opts.pong_timeout_ms : 10000;
        if (c->rpaused) { /* its answer could not be read: write_timeout_ms watches */
            zk__conn_arm(c, ZK__T_IDLE, idle);
        } else if (now - c->last_rx >= idle) {
            unsigned char frame[8];
            int n = zk_ws_send(&c->ws, frame, sizeof frame, ZK_WS_PING, NULL, 0, 1);
            if (n > 0) zk__wq_priority(c, frame, (size_t)n, 0);
            c->pinged = 1;
            zk__conn_arm(c, ZK__T_PONG, wait);
        } else {
            zk__conn_arm(c, ZK__T_IDLE, idle - (now - c->last_rx));
        }
        break;
    }
    case ZK__T_PONG: {
        uint32_t idle = c->server->opts.idle_timeout_ms ? c->server->opts.idle_timeout_ms : 30000;
        uint32_t wait = c->server->opts.pong_timeout_ms ? c->server->opts.pong_timeout_ms : 10000;
        (void)now, (void)wait;
        if (c->pinged && !c->rpaused) zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "peer did not answer a ping");
        else zk__conn_arm(c, ZK__T_IDLE, idle);
        break;
    }
    case ZK__T_CLOSE:
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "close handshake timed out");
        break;
    case ZK__T_LINGER:
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "peer did not close");
        break;
    default:
        break;
    }
    c->busy--;
    zk__conn_release(c);
}

ZK__PRIVATE zk_conn *zk__conn_new(zk_loop *loop, const zk_callbacks *cb, size_t max_message,
                                  size_t high_water, size_t write_limit, int role, int tcp) {
    zk_conn *c = (zk_conn *)ZK_MALLOC(sizeof *c + (tcp ? sizeof(zk__tcp) : 0));
    zk_ws_opts wo;
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->cb = cb;
    c->high_water = high_water ? high_water : (size_t)1 << 20;
    c->write_limit = write_limit ? write_limit : c->high_water + ((size_t)16 << 20);
    memset(&wo, 0, sizeof wo);
    wo.role = role;
    wo.max_message = max_message;
    wo.mask_seed = zk_loop_random(loop);
    zk_ws_init(&c->ws, &wo);
    zk_timer_init(loop, &c->timer, zk__conn_timer, c);
    zk_timer_init(loop, &c->guard, zk__guard_fire, c);
    c->flush.fn = zk__conn_flush_work;
    c->resume.fn = zk__conn_resume_work;
    c->last_rx = zk_loop_now(loop);
    return c;
}

/* ---- sending ---- */

ZK_API int zk_conn_send(zk_conn *c, const void *data, size_t len, int binary) {
    size_t size;
    unsigned char *p;
    int n;
    if (c->state != ZK__C_OPEN) return ZK_ECLOSED;
    if (!binary && !zk_utf8_valid(data, len)) return ZK_EINVAL;
    size = zk_ws_frame_size(&c->ws, len);
    if (size < len || c->wq_bytes + size > c->write_limit) return ZK_EBACKPRESSURE;
    p = zk__wq_append(c, size);
    if (!p) return ZK_ENOMEM;
    n = zk_ws_send(&c->ws, p, size, binary ? ZK_WS_BINARY : ZK_WS_TEXT, data, len, 1);
    ZK_ASSERT(n == (int)size);
    (void)n;
    if (c->wq_bytes >= c->high_water) {
        c->want_drain = 1;
        return ZK_SEND_BACKPRESSURE;
    }
    return ZK_SEND_OK;
}

ZK_API zk_frame *zk_frame_new(const void *data, size_t len, int binary, int *err) {
    unsigned char header[14];
    size_t hlen;
    zk_frame *f;
    int dummy;
    if (!err) err = &dummy;
    if ((len && !data) || (!binary && !zk_utf8_valid(data, len))) {
        *err = ZK_EINVAL;
        return NULL;
    }
    hlen = zk_ws_frame_header(header, binary ? ZK_WS_BINARY : ZK_WS_TEXT, 1, len, NULL);
    f = (zk_frame *)ZK_MALLOC(sizeof *f + hlen + len);
    if (!f) {
        *err = ZK_ENOMEM;
        return NULL;
    }
    f->refs = 1;
    f->size = hlen + len;
    f->header = hlen;
    f->binary = binary;
    memcpy(ZK__FRAME_BYTES(f), header, hlen);
    if (len) memcpy(ZK__FRAME_BYTES(f) + hlen, data, len);
    *err = 0;
    return f;
}

ZK_API void zk_frame_free(zk_frame *f) {
    if (f && --f->refs == 0) ZK_FREE(f);
}

ZK_API int zk_conn_send_frame(zk_conn *c, const zk_frame *f) {
    unsigned char *p;
    if (c->ws.role == ZK_WS_CLIENT) /* masked per frame: encode again */
        return zk_conn_send(c, ZK__FRAME_BYTES(f) + f->header, f->size - f->header, f->binary);
    if (c->state != ZK__C_OPEN) return ZK_ECLOSED;
    if (c->wq_bytes + f->size > c->write_limit) return ZK_EBACKPRESSURE;
    if (c->ws.send_op) return ZK_EINVAL; /* not between fragments of another message */
    if (f->size >= ZK__SHARE_MIN && c->loop->corked != c) {
        zk__chunk *ch = (zk__chunk *)ZK_MALLOC(sizeof *ch);
        if (!ch) return ZK_ENOMEM;
        memset(ch, 0, sizeof *ch);
        ch->shared = (zk_frame *)(uintptr_t)f; /* the count changes, the bytes never do */
        ch->shared->refs++;
        ch->len = f->size;
        ch->frames = 1;
        if (c->wq_tail) c->wq_tail->next = ch;
        else c->wq = ch;
        c->wq_tail = ch;
        c->wq_bytes += f->size;
        zk__conn_schedule_flush(c);
    } else {
        p = zk__wq_append(c, f->size);
        if (!p) return ZK_ENOMEM;
        memcpy(p, ZK__FRAME_BYTES(f), f->size);
    }
    if (c->wq_bytes >= c->high_water) {
        c->want_drain = 1;
        return ZK_SEND_BACKPRESSURE;
    }
    return ZK_SEND_OK;
}

ZK_API int zk_conn_ping(zk_conn *c, const void *data, size_t len) {
    unsigned char frame[ZK_WS_MAX_CONTROL_FRAME];
    int n;
    if (c->state != ZK__C_OPEN) return ZK_ECLOSED;
    n = zk_ws_send(&c->ws, frame, sizeof frame, ZK_WS_PING, data, len, 1);
    if (n < 0) return n;
    return zk__wq_priority(c, frame, (size_t)n, 0);
}

ZK_API int zk_conn_close(zk_conn *c, int code, const char *reason) {
    size_t rlen = reason ? strlen(reason) : 0;
    unsigned char frame[ZK_WS_MAX_CONTROL_FRAME];
    unsigned char *p;
    int n;
    if (c->state == ZK__C_CONNECTING || c->state == ZK__C_HANDSHAKE || c->state == ZK__C_HTTP) {
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "closed before open");
        return 0;
    }
    if (c->state != ZK__C_OPEN) return ZK_ECLOSED;
    n = zk_ws_close(&c->ws, frame, sizeof frame, code, reason, rlen);
    if (n < 0) return n;
    p = zk__wq_append(c, (size_t)n);
    if (!p) { /* the engine already counts the close as sent: drop instead */
        zk_conn_abort(c);
        return ZK_ENOMEM;
    }
    memcpy(p, frame, (size_t)n);
    c->state = ZK__C_CLOSING;
    zk__conn_arm(c, ZK__T_CLOSE, zk__close_timeout(c));
    zk__conn_resume(c); /* the peer's close is to be read */
    return 0;
}

ZK_API void zk_conn_abort(zk_conn *c) {
    c->busy++;
    zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "aborted");
    c->busy--;
    zk__conn_release(c);
}

ZK_API int zk_conn_respond(zk_conn *c, int status, const zk_http_header *headers,
                           size_t header_count, const void *body, size_t body_len) {
    size_t cap = 512 + body_len;
    unsigned char *p;
    int n;
    size_t i;
    if (c->state != ZK__C_HTTP && !(c->upgrading && c->state == ZK__C_HANDSHAKE)) return ZK_ECLOSED;
    c->http_pending = 0;
    for (i = 0; i < header_count; i++) cap += headers[i].name.len + headers[i].value.len + 4;
    p = zk__wq_raw(c, cap);
    if (!p) return ZK_ENOMEM;
    n = zk_http_write_response((char *)p, cap, status, headers, header_count, body, body_len);
    if (n < 0) {
        zk__wq_unreserve(c, cap);
        return n;
    }
    zk__wq_unreserve(c, cap - (size_t)n);
    zk__conn_linger(c, zk__close_timeout(c));
    return 0;
}

ZK_API void zk_conn_set_data(zk_conn *c, void *data) { c->data = data; }
ZK_API void *zk_conn_data(const zk_conn *c) { return c->data; }
ZK_API size_t zk_conn_buffered(const zk_conn *c) { return c->wq_bytes; }
ZK_API zk_server *zk_conn_server(const zk_conn *c) { return c->server; }
ZK_API int zk_conn_http_status(const zk_conn *c) { return c->http_status; }
ZK_API zk_loop *zk_conn_loop(const zk_conn *c) { return c->loop; }

ZK_API zk_str zk_conn_protocol(const zk_conn *c) {
    return zk_str_c(c->protocol);
}

ZK_API int zk_conn_peer(const zk_conn *c, char *out, size_t cap) {
    if (!c->stream || cap == 0) return ZK_EINVAL;
    return c->stream->ops->peer(c->stream, out, cap);
}

/* ---- receiving ---- */

/* Handles bytes as a server waiting for the upgrade request. Returns bytes
   consumed; the state tells whether to go on with frames. */
ZK__PRIVATE size_t zk__server_handshake(zk_conn *c, unsigned char *buf, size_t len) {
    zk_server *s = c->server;
    zk_http_request req;
    zk_ws_upgrade up;
    zk_http_limits limits;
    char out[1024];
    int n, rc, status;
    memset(&limits, 0, sizeof limits);
    n = zk_http_parse_request((const char *)buf, len, c->rseen, &req, &limits);
    c->rseen = len;
    if (n == ZK_EAGAIN) return 0;
    if (n < 0) {
        /* 400, 431 or 505, with what was wrong as the body */
        c->state = ZK__C_HTTP;
        zk_conn_respond(c, req.status, NULL, 0, req.error, strlen(req.error));
        return len;
    }
    c->rseen = 0;
    rc = zk_ws_upgrade_check(&req, s->opts.protocols, s->opts.protocol_count, &up);
    if (rc == ZK_ENOTWS) {
        c->state = ZK__C_HTTP;
        zk__conn_arm(c, ZK__T_LINGER, s->opts.handshake_timeout_ms ? s->opts.handshake_timeout_ms : 10000);
        if (s->opts.on_http) {
            c->http_pending = 1;
            s->opts.on_http(c, &req);
        } else {
            static const char body[] = "this is a WebSocket endpoint\n";
            zk_http_header h[1];
            h[0].name = zk_str_c("Upgrade");
            h[0].value = zk_str_c("websocket");
            zk_conn_respond(c, 426, h, 1, body, sizeof body - 1);
        }
        return len; /* no pipelining: what follows the request is ignored */
    }
    if (rc != ZK_OK) {
        n = zk_ws_upgrade_refuse(out, sizeof out, &up);
        c->state = ZK__C_HTTP;
        if (n > 0) {
            unsigned char *p = zk__wq_raw(c, (size_t)n);
            if (p) memcpy(p, out, (size_t)n);
        }
        zk__conn_linger(c, zk__close_timeout(c));
        return len;
    }
    if (s->opts.origins && up.origin.ptr) { /* a browser page from elsewhere: refused */
        size_t i;
        for (i = 0; i < s->opts.origin_count && !zk_str_eq_nocase(up.origin, s->opts.origins[i]); i++) {
        }
        if (i == s->opts.origin_count) {
            static const char body[] = "this origin is not allowed\n";
            c->state = ZK__C_HTTP;
            zk_conn_respond(c, 403, NULL, 0, body, sizeof body - 1);
            return len;
        }
    }
    c->upgrading = 1;
    status = s->opts.on_upgrade ? s->opts.on_upgrade(c, &req, &up) : 0;
    c->upgrading = 0;
    if (c->state != ZK__C_HANDSHAKE) return len; /* gone, or refused with zk_conn_respond */
    if (status) {
        const char *text = zk_http_status_text(status);
        c->state = ZK__C_HTTP;
        zk_conn_respond(c, status, NULL, 0, text, strlen(text));
        return len;
    }
    c->accepted = 1;
    rc = zk_ws_upgrade_accept(out, sizeof out, &up, NULL, 0);
    if (rc < 0) {
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "could not write the upgrade answer");
        return len;
    }
    {
        unsigned char *p = zk__wq_raw(c, (size_t)rc);
        if (!p) {
            zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "out of memory");
            return len;
        }
        memcpy(p, out, (size_t)rc);
    }
    c->protocol = up.protocol;
    c->state = ZK__C_OPEN;
    c->opened = 1;
    zk__conn_arm(c, ZK__T_IDLE, s->opts.idle_timeout_ms ? s->opts.idle_timeout_ms : 30000);
    if (c->cb && c->cb->on_open) c->cb->on_open(c, &req);
    return (size_t)n;
}

/* Handles bytes as a client waiting for the upgrade answer. */
ZK__PRIVATE size_t zk__client_handshake(zk_conn *c, unsigned char *buf, size_t len) {
    zk_http_response res;
    zk_str chosen;
    const char *error = NULL;
    size_t i;
    int n = zk_http_parse_response((const char *)buf, len, c->rseen, &res, NULL);
    c->rseen = len;
    if (n == ZK_EAGAIN) return 0;
    if (n < 0) {
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, res.error ? res.error : "malformed upgrade answer");
        return len;
    }
    c->rseen = 0;
    if (zk_ws_client_verify(&res, &c->client->hs, &chosen, &error) != ZK_OK) {
        if (res.status != 101) c->http_status = res.status;
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, error);
        return len;
    }
    for (i = 0; i < c->client->hs.protocol_count; i++)
        if (chosen.len && zk_str_eq_nocase(chosen, c->client->protocols[i])) c->protocol = c->client->protocols[i];
    c->state = ZK__C_OPEN;
    c->opened = 1;
    zk__conn_arm(c, ZK__T_NONE, 0);
    if (c->cb && c->cb->on_open) c->cb->on_open(c, NULL);
    return (size_t)n;
}

/* Feeds frames to the engine and acts on each event. Returns bytes used. */
ZK__PRIVATE size_t zk__conn_frames(zk_conn *c, unsigned char *buf, size_t len) {
    size_t at = 0;
    while (at < len && c->state != ZK__C_GONE && c->state != ZK__C_LINGER) {
        zk_ws_event ev;
        size_t used = zk_ws_feed(&c->ws, buf + at, len - at, &ev);
        at += used;
        if (ev.reply_len) {
            if (ev.type == ZK_WS_EV_PING) {
                zk__wq_priority(c, ev.reply, ev.reply_len, 1);
            } else {
                unsigned char *p = zk__wq_append(c, ev.reply_len);
                if (p) memcpy(p, ev.reply, ev.reply_len);
            }
        }
        /* a message or a control frame ended: what arrives next is timed
           from its own first byte (a control frame inside a fragmented
           message leaves the message's clock running) */
        if (ev.type != ZK_WS_EV_NONE && !(c->ws.flags & ZK__WS_IN_MESSAGE)) c->msg_started = 0;
        switch (ev.type) {
        case ZK_WS_EV_TEXT:
        case ZK_WS_EV_BINARY:
            if (c->cb && c->cb->on_message) c->cb->on_message(c, ev.data, ev.type == ZK_WS_EV_BINARY);
            break;
        case ZK_WS_EV_PONG:
            if (c->cb && c->cb->on_pong) c->cb->on_pong(c, ev.data);
            break;
        case ZK_WS_EV_CLOSE: /* closed before on_close: sends in it get ZK_ECLOSED */
            zk__conn_linger(c, zk__close_timeout(c));
            zk__conn_notify(c, ev.code, ev.data, 1);
            return len;
        case ZK_WS_EV_ERROR:
            zk__conn_linger(c, zk__close_timeout(c));
            zk__conn_notify(c, ev.code, zk_str_c(ev.error), 0);
            return len;
        default:
            break;
        }
        if ((ev.type == ZK_WS_EV_TEXT || ev.type == ZK_WS_EV_BINARY) && c->server &&
            c->state == ZK__C_OPEN && c->wq_bytes >= c->high_water) {
            zk__conn_pause(c);
            break;
        }
        if (!used && ev.type == ZK_WS_EV_NONE) break;
    }
    return at;
}

/* The loop's shared read buffer, with room for the leftover and a read. */
ZK__PRIVATE unsigned char *zk__read_buffer(zk_loop *loop, size_t need) {
    if (loop->rbuf_cap < need) {
        unsigned char *p = (unsigned char *)ZK_REALLOC(loop->rbuf, need);
        if (!p) return NULL;
        loop->rbuf = p;
        loop->rbuf_cap = need;
    }
    return loop->rbuf;
}

/* The read handler ended: one send for what it wrote; the rest is queued. */
ZK__PRIVATE void zk__uncork(zk_conn *c) {
    zk_loop *loop = c->loop;
    struct iovec iov;
    long n = 0;
    if (loop->corked != c) return;
    if (loop->cork_len && c->stream) {
        iov.iov_base = loop->cork;
        iov.iov_len = loop->cork_len;
        n = c->stream->ops->writev(c->stream, &iov, 1);
        if (n < 0) {
            loop->corked = NULL;
            zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "write failed");
            return;
        }
        c->wq_bytes -= (size_t)n;
    }
    if (zk__cork_spill(c, (size_t)n) < 0) return; /* the connection was dropped */
    zk__conn_flush_now(c); /* drain callback, write interest, shutdown when lingering */
}

ZK__PRIVATE void zk__conn_readable(zk_conn *c) {
    int reads;
    c->busy++;
    zk__cork(c);
    for (reads = 0; reads < ZK__READS_PER_EVENT && c->stream && !c->rpaused; reads++) {
        size_t have = c->rlen, used;
        unsigned char *buf = zk__read_buffer(c->loop, have + ZK__READ_BUFFER);
        long n;
        if (!buf) {
            zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "out of memory");
            break;
        }
        if (have) memcpy(buf, c->rbuf, have);
        n = c->stream->ops->read(c->stream, buf + have, ZK__READ_BUFFER);
        if (n == ZK_EAGAIN && c->rleft) { /* reads resumed: what a pause left */
            n = 0;
        } else if (n == ZK_EAGAIN) {
            break;
        } else if (n <= 0) {
            zk__conn_gone(c, ZK_CLOSE_ABNORMAL, n == 0 ? "connection closed by peer" : "connection reset");
            break;
        } else {
            c->last_rx = zk_loop_now(c->loop);
            c->pinged = 0; /* anything from the peer proves it alive */
        }
        c->rleft = 0;
        have += (size_t)n;
        used = 0;
        if (c->state == ZK__C_HANDSHAKE) {
            used = c->server ? zk__server_handshake(c, buf, have) : zk__client_handshake(c, buf, have);
        }
        if (c->state == ZK__C_OPEN || c->state == ZK__C_CLOSING) used += zk__conn_frames(c, buf + used, have - used);
        else if (c->state != ZK__C_HANDSHAKE) used = have; /* HTTP answered, lingering: discard */
        /* keep what was not consumed for the next read */
        have -= used;
        if (c->server && c->state == ZK__C_OPEN) {
            if (!have && !(c->ws.flags & (ZK__WS_IN_MESSAGE | ZK__WS_IN_FRAME))) {
                c->msg_started = 0; /* at a frame boundary: a whole control frame ends it too */
            } else if (!c->msg_started) {
                c->msg_started = 1; /* message_timeout_ms runs from here */
                c->msg_since = c->last_rx;
                zk__guard_arm(c);
            }
        }
        if (have > c->rlen || !have) {
            if (c->rbuf) ZK_FREE(c->rbuf);
            c->rbuf = NULL;
            if (have) {
                c->rbuf = (unsigned char *)ZK_MALLOC(have);
                if (!c->rbuf) {
                    zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "out of memory");
                    break;
                }
            }
        }
        if (have) memcpy(c->rbuf, buf + used, have);
        c->rlen = have;
        if (!c->stream || ((size_t)n < ZK__READ_BUFFER && !c->stream->loopback)) break; /* drained */
    }
    zk__uncork(c);
    c->busy--;
    zk__conn_release(c);
}

ZK__PRIVATE void zk__conn_writable(zk_conn *c) {
    c->busy++;
    zk__conn_flush_now(c);
    c->busy--;
    zk__conn_release(c);
}

/* ---- TCP ---- */

ZK__PRIVATE zk__tcp *zk__tcp_of(zk__stream *s) { return (zk__tcp *)(void *)s; }

ZK__PRIVATE long zk__tcp_read(zk__stream *s, void *buf, size_t cap) {
    ssize_t n;
    do {
        n = recv(zk__tcp_of(s)->io.fd, buf, cap, 0);
    } while (n < 0 && errno == EINTR);
    if (n >= 0) return (long)n;
    return errno == EAGAIN || errno == EWOULDBLOCK ? ZK_EAGAIN : ZK_EIO;
}

ZK__PRIVATE long zk__tcp_writev(zk__stream *s, const struct iovec *iov, int n) {
    struct msghdr m;
    ssize_t w;
    memset(&m, 0, sizeof m);
    m.msg_iov = (struct iovec *)(void *)iov;
    m.msg_iovlen = (size_t)n;
    do {
        w = sendmsg(zk__tcp_of(s)->io.fd, &m, MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    if (w >= 0) return (long)w;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : ZK_EIO;
}

ZK__PRIVATE void zk__tcp_want_write(zk__stream *s, int on) {
    zk__tcp *t = zk__tcp_of(s);
    zk__io_set(t->loop, &t->io, (t->no_read ? 0u : ZK__IO_READ) | (on ? ZK__IO_WRITE : 0u));
}

ZK__PRIVATE void zk__tcp_want_read(zk__stream *s, int on) {
    zk__tcp *t = zk__tcp_of(s);
    t->no_read = !on;
    zk__io_set(t->loop, &t->io, (on ? ZK__IO_READ : 0u) | (t->io.events & ZK__IO_WRITE));
}

ZK__PRIVATE void zk__tcp_shutdown(zk__stream *s) { shutdown(zk__tcp_of(s)->io.fd, SHUT_WR); }

ZK__PRIVATE void zk__tcp_close(zk__stream *s) {
    zk__tcp *t = zk__tcp_of(s);
    zk__io_set(t->loop, &t->io, 0);
    if (s->conn && s->conn->wq) {
        /* Bytes the peer never took (write_timeout_ms, a drop): a plain
           close() would queue the FIN behind them, so a peer that does not
           read never learns, and the kernel keeps the socket and its send
           buffer, probing a zero window for a minute or more. A reset
           tells the peer and frees both now. */
        struct linger lg;
        lg.l_onoff = 1;
        lg.l_linger = 0;
        setsockopt(t->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(t->io.fd); /* the memory goes with the connection's */
}

ZK__PRIVATE int zk__format_addr(const struct sockaddr *sa, char *out, size_t cap) {
    char host[INET6_ADDRSTRLEN];
    int port, n;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
        n = snprintf(out, cap, "[%s]:%d", host, port);
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
        n = snprintf(out, cap, "%s:%d", host, port);
    } else {
        return ZK_EIO; /* not an IP peer */
    }
    return n < 0 || (size_t)n >= cap ? ZK_ENOSPACE : n;
}

ZK__PRIVATE int zk__tcp_peer(zk__stream *s, char *out, size_t cap) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ss.ss_family = AF_UNSPEC; /* as in zk__server_accept */
    if (getpeername(zk__tcp_of(s)->io.fd, (struct sockaddr *)&ss, &len) < 0) return ZK_EIO;
    return zk__format_addr((struct sockaddr *)&ss, out, cap);
}

ZK__PRIVATE const zk__stream_ops zk__tcp_ops = {
    zk__tcp_read, zk__tcp_writev, zk__tcp_want_write, zk__tcp_want_read, zk__tcp_shutdown, zk__tcp_close,
    zk__tcp_peer
};

ZK__PRIVATE void zk__tcp_event(zk__io *io, unsigned events) {
    zk__tcp *t = (zk__tcp *)(void *)((char *)io - offsetof(zk__tcp, io));
    zk_conn *c = t->base.conn;
    if (t->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (!(events & (ZK__IO_WRITE | ZK__IO_ERROR))) return;
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        t->connecting = 0;
        zk__io_set(t->loop, io, ZK__IO_READ);
        zk__conn_connected(c, err);
        return;
    }
    c->busy++;
    if (events & ZK__IO_WRITE) zk__conn_writable(c);
    if ((events & ZK__IO_READ) && c->state != ZK__C_GONE) zk__conn_readable(c);
    c->busy--;
    zk__conn_release(c);
}

ZK__PRIVATE void zk__tcp_tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef SO_NOSIGPIPE
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
}

/* c was made by zk__conn_new with room for the stream (tcp = 1). */
ZK__PRIVATE zk__tcp *zk__tcp_new(zk_loop *loop, int fd, zk_conn *c) {
    zk__tcp *t = (zk__tcp *)(void *)(c + 1);
    memset(t, 0, sizeof *t);
    t->base.ops = &zk__tcp_ops;
    t->base.conn = c;
    t->loop = loop;
    zk__io_init(&t->io, fd, zk__tcp_event);
    c->stream = &t->base;
    return t;
}

/* ---- loopback: an in-memory pair of streams ---- */

typedef struct zk__lb_seg {
    struct zk__lb_seg *next;
    uint64_t due;      /* loop time it may be read */
    size_t len, off;
} zk__lb_seg;

typedef struct zk__lb_end {
    zk__stream base;
    struct zk__lb_pair *pair;
    int side;
    zk__lb_seg *in, *in_tail; /* bytes written by the peer, not yet read */
    size_t in_bytes;
    int stalled, want_write, closed, shut_in; /* shut_in: the peer shut down */
    zk__work readable, writable;
    zk_timer due_timer;
} zk__lb_end;

typedef struct zk__lb_pair {
    zk__lb_end end[2];
    zk_loop *loop;
    zk_loopback_opts opts;
    int reset, silent, refs;
} zk__lb_pair;

ZK__PRIVATE zk__lb_end *zk__lb_of(zk__stream *s) { return (zk__lb_end *)(void *)s; }
ZK__PRIVATE zk__lb_end *zk__lb_peer(zk__lb_end *e) { return &e->pair->end[!e->side]; }

ZK__PRIVATE void zk__lb_segs_free(zk__lb_end *e) {
    zk__lb_seg *g = e->in;
    while (g) {
        zk__lb_seg *next = g->next;
        ZK_FREE(g);
        g = next;
    }
    e->in = e->in_tail = NULL;
    e->in_bytes = 0;
}

/* Bytes that have arrived (their delay passed) are readable. */
ZK__PRIVATE int zk__lb_ready(zk__lb_end *e) {
    if (e->pair->reset) return 1;
    if (e->in) return e->in->due <= zk_loop_now(e->pair->loop);
    return e->shut_in;
}

ZK__PRIVATE void zk__lb_poke(zk__lb_end *e) {
    if (e->closed || e->stalled) return;
    if (zk__lb_ready(e)) {
        zk__work_queue(e->pair->loop, &e->readable);
    } else if (e->in) {
        uint64_t now = zk_loop_now(e->pair->loop);
        zk_timer_start(&e->due_timer, e->in->due > now ? e->in->due - now : 0, 0);
    }
}

ZK__PRIVATE void zk__lb_readable_work(zk__work *w) {
    zk__lb_end *e = (zk__lb_end *)(void *)((char *)w - offsetof(zk__lb_end, readable));
    if (!e->closed && e->base.conn) zk__conn_readable(e->base.conn);
}

ZK__PRIVATE void zk__lb_writable_work(zk__work *w) {
    zk__lb_end *e = (zk__lb_end *)(void *)((char *)w - offsetof(zk__lb_end, writable));
    if (!e->closed && e->want_write && e->base.conn) zk__conn_writable(e->base.conn);
}

ZK__PRIVATE void zk__lb_due(zk_timer *t) { zk__lb_poke((zk__lb_end *)t->data); }

ZK__PRIVATE long zk__lb_read(zk__stream *s, void *buf, size_t cap) {
    zk__lb_end *e = zk__lb_of(s), *peer = zk__lb_peer(e);
    size_t chunk = e->pair->opts.chunk, got = 0;
    uint64_t now = zk_loop_now(e->pair->loop);
    if (e->pair->reset) return ZK_EIO;
    if (e->stalled) return ZK_EAGAIN;
    if (chunk && cap > chunk) cap = chunk;
    while (e->in && got < cap && e->in->due <= now) {
        zk__lb_seg *g = e->in;
        size_t n = ZK__MIN(cap - got, g->len - g->off);
        memcpy((unsigned char *)buf + got, (unsigned char *)(g + 1) + g->off, n);
        g->off += n;
        got += n;
        e->in_bytes -= n;
        if (g->off == g->len) {
            e->in = g->next;
            if (!e->in) e->in_tail = NULL;
            ZK_FREE(g);
        }
    }
    if (got && peer->want_write && !peer->closed) zk__work_queue(e->pair->loop, &peer->writable);
    if (got) {
        zk__lb_poke(e); /* level-triggered: more may be waiting */
        return (long)got;
    }
    if (!e->in && e->shut_in) return 0;
    zk__lb_poke(e);
    return ZK_EAGAIN;
}

ZK__PRIVATE long zk__lb_writev(zk__stream *s, const struct iovec *iov, int n) {
    zk__lb_end *e = zk__lb_of(s), *peer = zk__lb_peer(e);
    zk__lb_pair *p = e->pair;
    size_t cap = p->opts.capacity ? p->opts.capacity : (size_t)256 * 1024, total = 0, room;
    zk__lb_seg *g;
    int i;
    if (p->reset || peer->closed) return ZK_EIO;
    for (i = 0; i < n; i++) total += iov[i].iov_len;
    if (p->silent) return (long)total; /* a pulled cable: gone without a trace */
    room = peer->in_bytes < cap ? cap - peer->in_bytes : 0;
    if (total > room) total = room;
    if (total == 0) return 0;
    g = (zk__lb_seg *)ZK_MALLOC(sizeof *g + total);
    if (!g) return ZK_ENOMEM;
    g->next = NULL;
    g->due = zk_loop_now(p->loop) + p->opts.delay_ms;
    g->len = total;
    g->off = 0;
    {
        size_t at = 0;
        for (i = 0; i < n && at < total; i++) {
            size_t k = ZK__MIN(iov[i].iov_len, total - at);
            memcpy((unsigned char *)(g + 1) + at, iov[i].iov_base, k);
            at += k;
        }
    }
    if (peer->in_tail) peer->in_tail->next = g;
    else peer->in = g;
    peer->in_tail = g;
    peer->in_bytes += total;
    zk__lb_poke(peer);
    return (long)total;
}

ZK__PRIVATE void zk__lb_want_write(zk__stream *s, int on) {
    zk__lb_end *e = zk__lb_of(s);
    e->want_write = on;
    if (on && !e->pair->silent && zk__lb_peer(e)->in_bytes <
        (e->pair->opts.capacity ? e->pair->opts.capacity : (size_t)256 * 1024))
        zk__work_queue(e->pair->loop, &e->writable);
}

ZK__PRIVATE void zk__lb_shutdown(zk__stream *s) {
    zk__lb_end *peer = zk__lb_peer(zk__lb_of(s));
    if (zk__lb_of(s)->pair->silent) return;
    peer->shut_in = 1;
    zk__lb_poke(peer);
}

ZK__PRIVATE void zk__lb_release(zk__lb_pair *p) {
    if (--p->refs == 0) ZK_FREE(p);
}

ZK__PRIVATE void zk__lb_close(zk__stream *s) {
    zk__lb_end *e = zk__lb_of(s), *peer = zk__lb_peer(e);
    zk__lb_pair *p = e->pair;
    e->closed = 1;
    e->base.conn = NULL;
    zk__work_cancel(p->loop, &e->readable);
    zk__work_cancel(p->loop, &e->writable);
    zk_timer_stop(&e->due_timer);
    zk__lb_segs_free(e);
    if (!peer->closed && !p->silent) {
        peer->shut_in = 1; /* closing also ends our direction */
        zk__lb_poke(peer);
    }
    zk__lb_release(p);
}

ZK__PRIVATE int zk__lb_peer_name(zk__stream *s, char *out, size_t cap) {
    static const char name[] = "loopback";
    (void)s;
    if (cap < sizeof name) return ZK_ENOSPACE;
    memcpy(out, name, sizeof name);
    return (int)sizeof name - 1;
}

ZK__PRIVATE const zk__stream_ops zk__lb_ops = {
    zk__lb_read, zk__lb_writev, zk__lb_want_write, NULL, zk__lb_shutdown, zk__lb_close, zk__lb_peer_name
};

ZK__PRIVATE zk__lb_pair *zk__lb_pair_new(zk_loop *loop, const zk_loopback_opts *opts) {
    zk__lb_pair *p = (zk__lb_pair *)ZK_MALLOC(sizeof *p);
    int i;
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->loop = loop;
    if (opts) p->opts = *opts;
    p->refs = 2;
    for (i = 0; i < 2; i++) {
        zk__lb_end *e = &p->end[i];
        e->base.ops = &zk__lb_ops;
        e->base.loopback = 1;
        e->pair = p;
        e->side = i;
        e->readable.fn = zk__lb_readable_work;
        e->writable.fn = zk__lb_writable_work;
        zk_timer_init(loop, &e->due_timer, zk__lb_due, e);
    }
    return p;
}

ZK__PRIVATE zk__lb_end *zk__lb_end_of(zk_conn *c) {
    return c->stream && c->stream->loopback ? zk__lb_of(c->stream) : NULL;
}

ZK_API int zk_loopback_stall(zk_conn *c, int stalled) {
    zk__lb_end *e = zk__lb_end_of(c);
    if (!e) return ZK_EINVAL;
    e->stalled = stalled;
    if (!stalled) zk__lb_poke(e);
    return 0;
}

ZK_API int zk_loopback_drop(zk_conn *c) {
    zk__lb_end *e = zk__lb_end_of(c);
    if (!e) return ZK_EINVAL;
    e->pair->reset = 1;
    zk__lb_segs_free(&e->pair->end[0]);
    zk__lb_segs_free(&e->pair->end[1]);
    zk__lb_poke(&e->pair->end[0]);
    zk__lb_poke(&e->pair->end[1]);
    return 0;
}

ZK_API int zk_loopback_silence(zk_conn *c, int silent) {
    zk__lb_end *e = zk__lb_end_of(c);
    if (!e) return ZK_EINVAL;
    e->pair->silent = silent;
    if (silent) { /* what was on the wire is lost too */
        zk__lb_segs_free(&e->pair->end[0]);
        zk__lb_segs_free(&e->pair->end[1]);
    }
    return 0;
}

/* ---- addresses ---- */

/* Fills addr from a host (numeric v4/v6, "localhost", or a name looked up
   with getaddrinfo, which blocks) and port. */
ZK__PRIVATE int zk__resolve(const char *host, int port, struct sockaddr_storage *addr,
                            socklen_t *len, int passive) {
    struct sockaddr_in *a4 = (struct sockaddr_in *)(void *)addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)(void *)addr;
    memset(addr, 0, sizeof *addr);
    if (!host || !*host || strcmp(host, "localhost") == 0) host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof *a4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof *a6;
        return 0;
    }
    {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = passive ? AI_PASSIVE : 0;
        if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return ZK_ENOTFOUND;
        memcpy(addr, res->ai_addr, res->ai_addrlen);
        *len = (socklen_t)res->ai_addrlen;
        if (addr->ss_family == AF_INET) a4->sin_port = htons((uint16_t)port);
        else a6->sin6_port = htons((uint16_t)port);
        freeaddrinfo(res);
        return 0;
    }
}

/* ---- server ---- */

ZK__PRIVATE void zk__server_add(zk_server *s, zk_conn *c) {
    c->server = s;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
}

ZK__PRIVATE zk_conn *zk__server_conn(zk_server *s, int tcp) {
    zk_conn *c = zk__conn_new(s->loop, &s->opts.cb, s->opts.max_message, s->opts.write_high_water,
                              s->opts.write_limit, ZK_WS_SERVER, tcp);
    if (!c) return NULL;
    c->state = ZK__C_HANDSHAKE;
    zk__server_add(s, c);
    zk__conn_arm(c, ZK__T_HANDSHAKE, s->opts.handshake_timeout_ms ? s->opts.handshake_timeout_ms : 10000);
    return c;
}

ZK__PRIVATE void zk__server_accept(zk__io *io, unsigned events) {
    zk_server *s = (zk_server *)(void *)((char *)io - offsetof(zk_server, io));
    int i;
    (void)events;
    for (i = 0; i < 64; i++) {
        zk_conn *c;
        zk__tcp *t;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        unsigned char key[16];
        int fd, keyed;
        /* accept writes the family; it is set first as clang's analyzer does
           not see writes through glibc's transparent-union sockaddr argument */
        ss.ss_family = AF_UNSPEC;
        fd = accept(s->fd, (struct sockaddr *)&ss, &sl);
        if (fd < 0) break; /* EAGAIN, or out of descriptors: try again later */
        keyed = s->opts.max_per_address && zk__addr_key(&ss, key) == 0;
        if (zk__set_nonblock(fd) < 0 || s->shutting_down ||
            (s->opts.max_connections && s->nconns >= s->opts.max_connections) ||
            (keyed && zk__addr_find(s, key) && zk__addr_find(s, key)->count >= s->opts.max_per_address) ||
            (keyed && zk__addr_add(s, key) < 0)) {
            close(fd);
            continue;
        }
        zk__tcp_tune(fd);
        c = zk__server_conn(s, 1);
        if (!c) {
            if (keyed) zk__addr_remove(s, key);
            close(fd);
            continue;
        }
        if (keyed) { /* counted until it is gone */
            memcpy(c->addr, key, 16);
            c->addr_counted = 1;
        }
        t = zk__tcp_new(s->loop, fd, c);
        if (!t || zk__io_set(s->loop, &t->io, ZK__IO_READ) < 0) {
            if (!t) close(fd);
            zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "out of resources");
        }
    }
}

ZK_API zk_server *zk_server_new(zk_loop *loop, const zk_server_opts *opts) {
    zk_server *s = (zk_server *)ZK_MALLOC(sizeof *s);
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    s->loop = loop;
    if (opts) s->opts = *opts;
    s->fd = -1;
    zk_timer_init(loop, &s->shutdown_timer, NULL, s);
    return s;
}

ZK_API int zk_server_listen(zk_server *s) {
    struct sockaddr_storage addr;
    socklen_t len;
    int one = 1, rc, fd;
    if (s->fd >= 0) return ZK_EINVAL;
    rc = zk__resolve(s->opts.host, s->opts.port, &addr, &len, 1);
    if (rc < 0) return rc == ZK_ENOTFOUND ? ZK_EINVAL : rc;
    fd = socket(addr.ss_family, SOCK_STREAM, 0);
    if (fd < 0) return ZK_EIO;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, len) < 0) {
        rc = errno == EADDRINUSE ? ZK_EADDRINUSE : ZK_EIO;
        close(fd);
        return rc;
    }
    if (listen(fd, s->opts.backlog ? s->opts.backlog : 511) < 0 || zk__set_nonblock(fd) < 0) {
        close(fd);
        return ZK_EIO;
    }
    len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    s->port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)(void *)&addr)->sin6_port
                                               : ((struct sockaddr_in *)(void *)&addr)->sin_port);
    s->fd = fd;
    zk__io_init(&s->io, fd, zk__server_accept);
    rc = zk__io_set(s->loop, &s->io, ZK__IO_READ);
    if (rc < 0) {
        close(fd);
        s->fd = -1;
        return rc;
    }
    return 0;
}

ZK_API int zk_server_port(const zk_server *s) { return s->port; }
ZK_API size_t zk_server_connections(const zk_server *s) { return s->nconns; }
ZK_API void *zk_server_data(const zk_server *s) { return s->opts.data; }
ZK_API zk_loop *zk_server_loop(const zk_server *s) { return s->loop; }

ZK__PRIVATE void zk__server_stop_listening(zk_server *s) {
    if (s->fd < 0) return;
    zk__io_set(s->loop, &s->io, 0);
    close(s->fd);
    s->fd = -1;
}

ZK__PRIVATE void zk__server_check_done(zk_server *s) {
    if (s->shutting_down == 1 && s->nconns == 0 && !s->holding) {
        s->shutting_down = 2;
        zk_timer_stop(&s->shutdown_timer);
        if (s->shutdown_done) s->shutdown_done(s);
    }
}

ZK__PRIVATE void zk__server_shutdown_timeout(zk_timer *t) {
    zk_server *s = (zk_server *)t->data;
    s->holding = 1;
    while (s->conns) zk_conn_abort(s->conns);
    s->holding = 0;
    zk__server_check_done(s); /* the last use of s: done may free it */
}

ZK_API void zk_server_shutdown(zk_server *s, uint32_t timeout_ms, void (*done)(zk_server *s)) {
    zk_conn *c, *next;
    if (s->shutting_down) return;
    zk__server_stop_listening(s);
    s->shutting_down = 1;
    s->holding = 1;
    s->shutdown_done = done;
    s->shutdown_timer.fn = zk__server_shutdown_timeout;
    zk_timer_start(&s->shutdown_timer, timeout_ms ? timeout_ms : 5000, 0);
    for (c = s->conns; c; c = next) {
        next = c->next;
        if (c->state == ZK__C_OPEN) zk_conn_close(c, ZK_CLOSE_GOING_AWAY, "server shutting down");
        else if (c->state == ZK__C_HANDSHAKE) zk_conn_abort(c);
    }
    s->holding = 0;
    zk__server_check_done(s); /* the last use of s: done may free it */
}

ZK_API void zk_server_free(zk_server *s) {
    if (!s) return;
    zk__server_stop_listening(s);
    s->shutting_down = 2;
    zk_timer_stop(&s->shutdown_timer);
    while (s->conns) zk_conn_abort(s->conns);
    ZK_FREE(s->addrs);
    ZK_FREE(s);
}

/* ---- client ---- */

/* Splits ws://host[:port][/path][?query]. */
ZK__PRIVATE int zk__parse_url(const char *url, char *host, size_t host_cap, int *port,
                              const char **path) {
    const char *p, *h, *e;
    size_t n;
    if (strncmp(url, "ws://", 5) != 0) return ZK_EINVAL;
    p = url + 5;
    if (*p == '[') {
        h = ++p;
        while (*p && *p != ']') p++;
        if (*p != ']') return ZK_EINVAL;
        e = p++;
    } else {
        h = p;
        while (*p && *p != ':' && *p != '/' && *p != '?') p++;
        e = p;
    }
    n = (size_t)(e - h);
    if (n == 0 || n >= host_cap) return ZK_EINVAL;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = 80;
    if (*p == ':') {
        long v = 0;
        p++;
        if (*p < '0' || *p > '9') return ZK_EINVAL;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (*p++ - '0');
            if (v > 65535) return ZK_EINVAL;
        }
        if (v == 0) return ZK_EINVAL;
        *port = (int)v;
    }
    if (*p && *p != '/' && *p != '?') return ZK_EINVAL;
    *path = p;
    return 0;
}

/* Copies what the client needs after connect returns into one block. */
ZK__PRIVATE zk__client *zk__client_new(zk_loop *loop, const zk_conn_opts *o, const char *host,
                                       int port, const char *path, int *err) {
    zk__client *cl = (zk__client *)ZK_MALLOC(sizeof *cl);
    size_t need = strlen(host) + 16 + strlen(path) + 2 + (o->origin ? strlen(o->origin) + 1 : 0), i;
    char *w;
    int v6 = strchr(host, ':') != NULL;
    if (!cl) { *err = ZK_ENOMEM; return NULL; }
    memset(cl, 0, sizeof *cl);
    if (o->protocol_count > 8) { ZK_FREE(cl); *err = ZK_EINVAL; return NULL; }
    for (i = 0; i < o->protocol_count; i++) need += strlen(o->protocols[i]) + 1;
    need += o->header_count * sizeof(zk_http_header) + sizeof(zk_http_header);
    for (i = 0; i < o->header_count; i++) need += o->headers[i].name.len + o->headers[i].value.len;
    cl->strings = (char *)ZK_MALLOC(need);
    if (!cl->strings) { ZK_FREE(cl); *err = ZK_ENOMEM; return NULL; }
    /* headers first: the block is malloc-aligned */
    cl->headers = (zk_http_header *)(void *)cl->strings;
    w = cl->strings + o->header_count * sizeof(zk_http_header) + sizeof(zk_http_header);
    for (i = 0; i < o->header_count; i++) {
        memcpy(w, o->headers[i].name.ptr, o->headers[i].name.len);
        cl->headers[i].name.ptr = w;
        cl->headers[i].name.len = o->headers[i].name.len;
        w += o->headers[i].name.len;
        memcpy(w, o->headers[i].value.ptr, o->headers[i].value.len);
        cl->headers[i].value.ptr = w;
        cl->headers[i].value.len = o->headers[i].value.len;
        w += o->headers[i].value.len;
    }
    cl->hs.headers = cl->headers;
    cl->hs.header_count = o->header_count;
    cl->hs.host = w;
    w += port == 80 ? sprintf(w, v6 ? "[%s]" : "%s", host) : sprintf(w, v6 ? "[%s]:%d" : "%s:%d", host, port);
    w++;
    cl->hs.path = w;
    w += sprintf(w, "%s%s", *path == '/' ? "" : "/", path) + 1;
    if (o->origin) {
        cl->hs.origin = w;
        w += sprintf(w, "%s", o->origin) + 1;
    }
    for (i = 0; i < o->protocol_count; i++) {
        cl->protocols[i] = w;
        w += sprintf(w, "%s", o->protocols[i]) + 1;
    }
    cl->hs.protocols = cl->protocols;
    cl->hs.protocol_count = o->protocol_count;
    zk_loop_random_bytes(loop, cl->hs.key, 16);
    cl->cb = o->cb;
    cl->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 10000;
    cl->close_timeout_ms = o->close_timeout_ms ? o->close_timeout_ms : 3000;
    return cl;
}

/* TCP is up (err 0) or failed: send the upgrade request. */
/* The upgrade request goes into the queue when the connection is made, so
   that nothing can fail once the transport is up; it is written when the
   connect completes. */
ZK__PRIVATE int zk__client_request(zk_conn *c) {
    char req[4096];
    unsigned char *p;
    int n = zk_ws_client_request(req, sizeof req, &c->client->hs);
    if (n < 0) return n == ZK_EINVAL ? ZK_EINVAL : ZK_ETOOBIG;
    p = zk__wq_raw(c, (size_t)n);
    if (!p) return ZK_ENOMEM;
    memcpy(p, req, (size_t)n);
    return 0;
}

ZK__PRIVATE void zk__conn_connected(zk_conn *c, int err) {
    c->busy++;
    if (err) {
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, err == ECONNREFUSED ? "connection refused" : "connect failed");
    } else {
        c->state = ZK__C_HANDSHAKE;
        zk__conn_schedule_flush(c);
    }
    c->busy--;
    zk__conn_release(c);
}

ZK__PRIVATE zk_conn *zk__client_conn(zk_loop *loop, const zk_conn_opts *o, int resolve, int *err) {
    char host[256];
    const char *path;
    int port, rc;
    zk_conn *c;
    zk__client *cl;
    if (!o || !o->url) { *err = ZK_EINVAL; return NULL; }
    rc = zk__parse_url(o->url, host, sizeof host, &port, &path);
    if (rc < 0) { *err = rc; return NULL; }
    cl = zk__client_new(loop, o, host, port, path, err);
    if (!cl) return NULL;
    c = zk__conn_new(loop, &cl->cb, o->max_message, o->write_high_water, o->write_limit, ZK_WS_CLIENT,
                     resolve);
    if (!c) {
        ZK_FREE(cl->strings);
        ZK_FREE(cl);
        *err = ZK_ENOMEM;
        return NULL;
    }
    c->client = cl;
    c->data = o->data;
    c->state = ZK__C_CONNECTING;
    /* a request that cannot be written is refused here, not after the
       connection was handed out */
    rc = zk__client_request(c);
    if (rc < 0) {
        zk__conn_free(c);
        *err = rc;
        return NULL;
    }
    c->next = (zk_conn *)loop->clients;
    if (c->next) c->next->prev = c;
    loop->clients = c;
    loop->drop_clients = zk__drop_clients;
    rc = resolve ? zk__resolve(host, port, &cl->addr, &cl->addr_len, 0) : 0;
    if (rc < 0) {
        zk__conn_free(c);
        *err = rc;
        return NULL;
    }
    zk__conn_arm(c, ZK__T_HANDSHAKE, cl->connect_timeout_ms);
    return c;
}

ZK_API zk_conn *zk_conn_connect(zk_loop *loop, const zk_conn_opts *opts, int *err) {
    int dummy, fd, rc;
    zk_conn *c;
    zk__tcp *t;
    if (!err) err = &dummy;
    *err = 0;
    c = zk__client_conn(loop, opts, 1, err);
    if (!c) return NULL;
    fd = socket(c->client->addr.ss_family, SOCK_STREAM, 0);
    if (fd < 0 || zk__set_nonblock(fd) < 0) {
        if (fd >= 0) close(fd);
        zk__conn_free(c);
        *err = ZK_EIO;
        return NULL;
    }
    zk__tcp_tune(fd);
    t = zk__tcp_new(loop, fd, c);
    if (!t) {
        close(fd);
        zk__conn_free(c);
        *err = ZK_ENOMEM;
        return NULL;
    }
    rc = connect(fd, (struct sockaddr *)&c->client->addr, c->client->addr_len);
    if (rc == 0) {
        zk__io_set(loop, &t->io, ZK__IO_READ);
        zk__conn_connected(c, 0);
    } else if (errno == EINPROGRESS) {
        t->connecting = 1;
        zk__io_set(loop, &t->io, ZK__IO_WRITE);
    } else {
        /* refused at once (a closed local port): report it on the loop */
        t->connecting = 1;
        zk__io_set(loop, &t->io, ZK__IO_WRITE);
    }
    return c;
}

ZK_API zk_conn *zk_loopback_connect(zk_server *s, const zk_conn_opts *copts,
                                    const zk_loopback_opts *fault, int *err) {
    int dummy;
    zk_conn *c, *sc;
    zk__lb_pair *p;
    if (!err) err = &dummy;
    *err = 0;
    c = zk__client_conn(s->loop, copts, 0, err);
    if (!c) return NULL;
    p = zk__lb_pair_new(s->loop, fault);
    sc = p && !s->shutting_down ? zk__server_conn(s, 0) : NULL;
    if (!sc) {
        if (p) ZK_FREE(p);
        zk__conn_free(c);
        *err = s->shutting_down ? ZK_ECLOSED : ZK_ENOMEM;
        return NULL;
    }
    c->stream = &p->end[0].base;
    p->end[0].base.conn = c;
    sc->stream = &p->end[1].base;
    p->end[1].base.conn = sc;
    zk__conn_connected(c, 0);
    return c;
}
/* >>json: documents, values, the JSON reader and writer ------------------ */

#include <locale.h>
#include <stdlib.h>

/* Nodes are kept in document order. A container is followed by its
   elements; an object member is a key node (type ZK__KEY) then its value.
   `next` links an array's elements, or an object's key nodes, to the next
   sibling (0: none; the root is never a sibling). */
#define ZK__KEY 15

struct zk__node {
    unsigned char type;
    uint32_t len;  /* bytes of a string or key; elements or members of a container */
    uint32_t next;
    union {
        int64_t i;
        double d;
        const char *s;
    } v;
};

ZK_API void zk_doc_init(zk_doc *doc) { memset(doc, 0, sizeof *doc); }

ZK_API void zk_doc_free(zk_doc *doc) {
    ZK_FREE(doc->nodes);
    doc->nodes = NULL;
    doc->count = doc->cap = 0;
}

ZK__PRIVATE uint32_t zk__doc_max_depth(const zk_doc *doc) {
    return doc->max_depth && doc->max_depth < ZK_DOC_MAX_DEPTH ? doc->max_depth : ZK_DOC_MAX_DEPTH;
}

/* A new node at the end, or NULL (out of memory, or over max_nodes). */
ZK__PRIVATE zk__node *zk__doc_node(zk_doc *doc, int type, int *err) {
    zk__node *n;
    uint32_t max = doc->max_nodes ? doc->max_nodes : ZK_DOC_MAX_NODES;
    if (doc->count >= max) { /* checked every time: the limit may have been lowered */
        *err = ZK_ETOOBIG;
        return NULL;
    }
    if (doc->count == doc->cap) {
        uint32_t cap = doc->cap ? doc->cap * 2 : 64;
        if (cap > max) cap = max;
        n = (zk__node *)ZK_REALLOC(doc->nodes, (size_t)cap * sizeof *n);
        if (!n) {
            *err = ZK_ENOMEM;
            return NULL;
        }
        doc->nodes = n;
        doc->cap = cap;
    }
    n = &doc->nodes[doc->count++];
    n->type = (unsigned char)type;
    n->len = 0;
    n->next = 0;
    n->v.i = 0;
    return n;
}

ZK__PRIVATE int zk__json_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Writes code point cp as UTF-8 at d; returns the bytes written. */
ZK__PRIVATE size_t zk__utf8_put(unsigned char *d, uint32_t cp) {
    if (cp < 0x80) { d[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        d[0] = (unsigned char)(0xC0 | cp >> 6);
        d[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (unsigned char)(0xE0 | cp >> 12);
        d[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (unsigned char)(0xF0 | cp >> 18);
    d[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Four hex digits at p (p + 4 <= end checked by the caller), or -1. */
ZK__PRIVATE long zk__hex4(const unsigned char *p) {
    long v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        int h = zk__hex(p[i]);
        if (h < 0) return -1;
        v = v << 4 | h;
    }
    return v;
}

/* Parses the string whose opening quote is at *pp, decoding escapes in
   place; on success *pp is past the closing quote and the node holds the
   view. Returns 0 or an error text. */
ZK__PRIVATE const char *zk__json_string(unsigned char **pp, const unsigned char *end, zk__node *n) {
    unsigned char *p = *pp + 1, *d = p, *start = p;
    uint64_t st = ZK__UTF8_ACCEPT;
    for (;;) {
        unsigned char c;
        /* a run of plain bytes, validated as UTF-8 as it is copied down */
        while (p < end && (c = *p) != '"' && c != '\\' && c >= 0x20) {
            if (c >= 0x80 || st != ZK__UTF8_ACCEPT) {
                st = (zk__utf8_dfa[c] >> st) & 63;
                if (st == ZK__UTF8_REJECT) {
                    *pp = p;
                    return "invalid UTF-8 in a string";
                }
            }
            *d++ = *p++;
        }
        if (p >= end) { *pp = p; return "unterminated string"; }
        c = *p;
        if (c < 0x20) { *pp = p; return "control character in a string"; }
        if (st != ZK__UTF8_ACCEPT) { *pp = p; return "invalid UTF-8 in a string"; }
        if (c == '"') break;
        /* an escape */
        if (p + 1 >= end) { *pp = p; return "unterminated string"; }
        switch (p[1]) {
        case '"': *d++ = '"'; p += 2; break;
        case '\\': *d++ = '\\'; p += 2; break;
        case '/': *d++ = '/'; p += 2; break;
        case 'b': *d++ = '\b'; p += 2; break;
        case 'f': *d++ = '\f'; p += 2; break;
        case 'n': *d++ = '\n'; p += 2; break;
        case 'r': *d++ = '\r'; p += 2; break;
        case 't': *d++ = '\t'; p += 2; break;
        case 'u': {
            long cp, lo;
            if (end - p < 6 || (cp = zk__hex4(p + 2)) < 0) { *pp = p; return "invalid \\u escape"; }
            if (cp >= 0xDC00 && cp <= 0xDFFF) { *pp = p; return "lone low surrogate"; }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || (lo = zk__hex4(p + 8)) < 0 ||
                    lo < 0xDC00 || lo > 0xDFFF) {
                    *pp = p;
                    return "lone high surrogate";
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            p += 6;
            d += zk__utf8_put(d, (uint32_t)cp); /* never longer than the escape */
            break;
        }
        default:
            *pp = p;
            return "invalid escape";
        }
    }
    n->v.s = (const char *)start;
    n->len = (uint32_t)(d - start);
    *pp = p + 1;
    return NULL;
}

ZK__PRIVATE const char zk__json_oom[] = "out of memory";

/* The decimal point of the C library's locale, which strtod and printf use. */
ZK__PRIVATE const char *zk__decimal_point(void) {
    const char *dp = localeconv()->decimal_point;
    return dp && dp[0] ? dp : ".";
}

/* Parses a number at *pp into n. Returns 0 or an error text
   (zk__json_oom when out of memory). */
ZK__PRIVATE const char *zk__json_number(unsigned char **pp, const unsigned char *end, zk__node *n) {
    unsigned char *p = *pp, *s = p;
    int neg = 0, integral = 1;
    if (*p == '-') { neg = 1; p++; }
    if (p >= end || *p < '0' || *p > '9') return "invalid number";
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9') return "leading zero in a number";
    } else {
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && *p == '.') {
        p++;
        integral = 0;
        if (p >= end || *p < '0' || *p > '9') return "invalid number";
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        integral = 0;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return "invalid number";
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    *pp = p;
    if (integral) {
        uint64_t v = 0, limit = neg ? (uint64_t)1 << 63 : ((uint64_t)1 << 63) - 1;
        const unsigned char *q = s + neg;
        int fits = 1;
        for (; q < p; q++) {
            unsigned digit = (unsigned)(*q - '0');
            if (v > (limit - digit) / 10) { fits = 0; break; }
            v = v * 10 + digit;
        }
        if (fits) {
            n->type = ZK_TYPE_INT;
            n->v.i = neg ? (v ? -(int64_t)(v - 1) - 1 : 0) : (int64_t)v; /* -2^63 fits too */
            return NULL;
        }
    }
    {
        /* strtod needs a terminated copy, with the locale's decimal point
           (which may be longer than one byte) in place of '.' */
        char small[64], *tmp = small, *e;
        const char *dp = zk__decimal_point();
        size_t len = (size_t)(p - s), dlen = strlen(dp), i, o = 0, cap = len + dlen + 1;
        int whole;
        double d;
        if (cap > sizeof small) {
            tmp = (char *)ZK_MALLOC(cap);
            if (!tmp) return zk__json_oom;
        }
        for (i = 0; i < len; i++) {
            if (s[i] == '.') {
                memcpy(tmp + o, dp, dlen);
                o += dlen;
            } else {
                tmp[o++] = (char)s[i];
            }
        }
        tmp[o] = '\0';
        d = strtod(tmp, &e);
        whole = e == tmp + o;
        if (tmp != small) ZK_FREE(tmp);
        if (!whole) return "number not understood (locale)";
        if (d - d != 0) return "number out of range";
        n->type = ZK_TYPE_DOUBLE;
        n->v.d = d;
        return NULL;
    }
}

ZK__PRIVATE int zk__json_fail(zk_doc *doc, const char *buf, const unsigned char *at, int err,
                              const char *error) {
    doc->count = 0;
    doc->error = error;
    doc->error_at = (size_t)((const char *)at - buf);
    return err;
}

ZK_API int zk_json_parse(zk_doc *doc, char *buf, size_t len) {
    unsigned char *p = (unsigned char *)buf;
    const unsigned char *end = buf ? p + len : p;
    uint32_t stack[ZK_DOC_MAX_DEPTH], last[ZK_DOC_MAX_DEPTH];
    uint32_t depth = 0, max_depth = zk__doc_max_depth(doc), idx;
    int err = ZK_OK, in_object = 0;
    const char *error;
    zk__node *n;

    doc->count = 0;
    doc->error = NULL;
    doc->error_at = 0;
    if (!buf) { /* (NULL, 0) is empty input, and NULL + 0 is not computed */
        doc->error = "unexpected end of input";
        return len ? ZK_EINVAL : ZK_EPARSE;
    }
    while (p < end && zk__json_ws(*p)) p++;

value: /* a value is expected at p: an array element or the root */
    /* cppcheck-suppress incorrectLogicOperator ; gotos below come back here with depth > 0 */
    if (depth && !in_object) {
        uint32_t parent = stack[depth - 1];
        if (last[depth - 1]) doc->nodes[last[depth - 1]].next = doc->count;
        last[depth - 1] = doc->count;
        doc->nodes[parent].len++;
    }
member_value: /* an object member's value: linked through its key */
    if (p >= end) return zk__json_fail(doc, buf, p, ZK_EPARSE, "unexpected end of input");
    idx = doc->count;
    n = zk__doc_node(doc, ZK_TYPE_NULL, &err);
    if (!n) return zk__json_fail(doc, buf, p, err, err == ZK_ETOOBIG ? "too many values" : "out of memory");
    switch (*p) {
    case '{':
    case '[':
        if (depth == max_depth) return zk__json_fail(doc, buf, p, ZK_ETOOBIG, "nested too deeply");
        n->type = *p == '{' ? ZK_TYPE_OBJECT : ZK_TYPE_ARRAY;
        stack[depth] = idx;
        last[depth] = 0;
        depth++;
        in_object = *p == '{';
        p++;
        while (p < end && zk__json_ws(*p)) p++;
        if (p < end && *p == (in_object ? '}' : ']')) {
            p++;
            depth--;
            goto after_value;
        }
        if (in_object) goto member;
        goto value;
    case '"':
        n->type = ZK_TYPE_STRING;
        error = zk__json_string(&p, end, n);
        if (error) return zk__json_fail(doc, buf, p, ZK_EPARSE, error);
        break;
    case 't':
        if (end - p < 4 || memcmp(p, "true", 4) != 0) return zk__json_fail(doc, buf, p, ZK_EPARSE, "invalid literal");
        n->type = ZK_TYPE_BOOL;
        n->v.i = 1;
        p += 4;
        break;
    case 'f':
        if (end - p < 5 || memcmp(p, "false", 5) != 0) return zk__json_fail(doc, buf, p, ZK_EPARSE, "invalid literal");
        n->type = ZK_TYPE_BOOL;
        p += 5;
        break;
    case 'n':
        if (end - p < 4 || memcmp(p, "null", 4) != 0) return zk__json_fail(doc, buf, p, ZK_EPARSE, "invalid literal");
        p += 4;
        break;
    default:
        if (*p == '-' || (*p >= '0' && *p <= '9')) {
            unsigned char *at = p;
            error = zk__json_number(&p, end, n);
            if (error) return zk__json_fail(doc, buf, at, error == zk__json_oom ? ZK_ENOMEM : ZK_EPARSE, error);
            break;
        }
        return zk__json_fail(doc, buf, p, ZK_EPARSE, "unexpected character");
    }

after_value:
    while (p < end && zk__json_ws(*p)) p++;
    if (depth == 0) {
        if (p != end) return zk__json_fail(doc, buf, p, ZK_EPARSE, "data after the value");
        return ZK_OK;
    }
    in_object = doc->nodes[stack[depth - 1]].type == ZK_TYPE_OBJECT;
    if (p < end && *p == ',') {
        p++;
        while (p < end && zk__json_ws(*p)) p++;
        if (in_object) goto member;
        goto value;
    }
    if (p < end && *p == (in_object ? '}' : ']')) {
        p++;
        depth--;
        goto after_value;
    }
    return zk__json_fail(doc, buf, p, ZK_EPARSE, p >= end ? "unexpected end of input"
                                         : in_object ? "expected , or } after a member"
                                                     : "expected , or ] after an element");

member: /* "key": value */
    if (p >= end || *p != '"') return zk__json_fail(doc, buf, p, ZK_EPARSE, p >= end ? "unexpected end of input" : "expected a string key");
    idx = doc->count;
    n = zk__doc_node(doc, ZK__KEY, &err);
    if (!n) return zk__json_fail(doc, buf, p, err, err == ZK_ETOOBIG ? "too many values" : "out of memory");
    error = zk__json_string(&p, end, n);
    if (error) return zk__json_fail(doc, buf, p, ZK_EPARSE, error);
    if (last[depth - 1]) doc->nodes[last[depth - 1]].next = idx;
    last[depth - 1] = idx;
    doc->nodes[stack[depth - 1]].len++;
    while (p < end && zk__json_ws(*p)) p++;
    if (p >= end || *p != ':') return zk__json_fail(doc, buf, p, ZK_EPARSE, "expected : after a key");
    p++;
    while (p < end && zk__json_ws(*p)) p++;
    goto member_value;
}

/* ---- values ---- */

ZK__PRIVATE const zk__node *zk__value_node(zk_value v) {
    return v.doc && v.at < v.doc->count ? &v.doc->nodes[v.at] : NULL;
}

ZK__PRIVATE zk_value zk__value(const zk_doc *doc, uint32_t at) {
    zk_value v;
    v.doc = doc;
    v.at = at;
    return v;
}

ZK__PRIVATE zk_value zk__none(void) { return zk__value(NULL, 0); }

ZK_API zk_value zk_doc_root(const zk_doc *doc) { return zk__value(doc, 0); }

ZK_API int zk_value_type(zk_value v) {
    const zk__node *n = zk__value_node(v);
    return n && n->type != ZK__KEY ? (int)n->type : (int)ZK_TYPE_NONE;
}

ZK_API const char *zk_type_name(int type) {
    static const char *const names[] = {"none", "null", "bool", "int", "double",
                                        "string", "binary", "array", "object"};
    return type >= 0 && type <= ZK_TYPE_OBJECT ? names[type] : "none";
}

ZK_API int64_t zk_value_int(zk_value v, int64_t def) {
    const zk__node *n = zk__value_node(v);
    if (!n) return def;
    if (n->type == ZK_TYPE_INT) return n->v.i;
    if (n->type == ZK_TYPE_DOUBLE && n->v.d >= -9223372036854775808.0 && n->v.d < 9223372036854775808.0 &&
        (double)(int64_t)n->v.d == n->v.d)
        return (int64_t)n->v.d;
    return def;
}

ZK_API double zk_value_double(zk_value v, double def) {
    const zk__node *n = zk__value_node(v);
    if (!n) return def;
    if (n->type == ZK_TYPE_DOUBLE) return n->v.d;
    if (n->type == ZK_TYPE_INT) return (double)n->v.i;
    return def;
}

ZK_API int zk_value_bool(zk_value v, int def) {
    const zk__node *n = zk__value_node(v);
    return n && n->type == ZK_TYPE_BOOL ? (int)n->v.i : def;
}

ZK_API zk_str zk_value_str(zk_value v) {
    const zk__node *n = zk__value_node(v);
    zk_str s = {NULL, 0};
    if (n && (n->type == ZK_TYPE_STRING || n->type == ZK_TYPE_BINARY)) {
        s.ptr = n->v.s;
        s.len = n->len;
    }
    return s;
}

ZK_API size_t zk_value_len(zk_value v) {
    const zk__node *n = zk__value_node(v);
    if (!n) return 0;
    switch (n->type) {
    case ZK_TYPE_STRING: case ZK_TYPE_BINARY: case ZK_TYPE_ARRAY: case ZK_TYPE_OBJECT: return n->len;
    default: return 0;
    }
}

ZK_API zk_value zk_value_get_n(zk_value obj, const char *key, size_t key_len) {
    const zk__node *n = zk__value_node(obj);
    uint32_t k;
    if (!n || n->type != ZK_TYPE_OBJECT || n->len == 0) return zk__none();
    for (k = obj.at + 1; k; k = obj.doc->nodes[k].next) {
        const zk__node *kn = &obj.doc->nodes[k];
        if (kn->len == key_len && (key_len == 0 || memcmp(kn->v.s, key, key_len) == 0))
            return zk__value(obj.doc, k + 1);
    }
    return zk__none();
}

ZK_API zk_value zk_value_get(zk_value obj, const char *key) {
    return zk_value_get_n(obj, key, strlen(key));
}

ZK_API zk_value zk_value_first(zk_value c) {
    const zk__node *n = zk__value_node(c);
    if (!n || n->len == 0) return zk__none();
    if (n->type == ZK_TYPE_ARRAY) return zk__value(c.doc, c.at + 1);
    if (n->type == ZK_TYPE_OBJECT) return zk__value(c.doc, c.at + 2);
    return zk__none();
}

ZK_API zk_value zk_value_next(zk_value e) {
    const zk__node *n = zk__value_node(e);
    uint32_t next;
    if (!n || e.at == 0) return zk__none();
    if (e.doc->nodes[e.at - 1].type == ZK__KEY) { /* an object member: follow the keys */
        next = e.doc->nodes[e.at - 1].next;
        return next ? zk__value(e.doc, next + 1) : zk__none();
    }
    next = n->next;
    return next ? zk__value(e.doc, next) : zk__none();
}

ZK_API zk_str zk_value_key(zk_value m) {
    zk_str s = {"", 0};
    if (zk__value_node(m) && m.at > 0 && m.doc->nodes[m.at - 1].type == ZK__KEY) {
        s.ptr = m.doc->nodes[m.at - 1].v.s;
        s.len = m.doc->nodes[m.at - 1].len;
    }
    return s;
}

ZK_API zk_value zk_value_at(zk_value c, size_t i) {
    zk_value e = zk_value_first(c);
    while (i-- && zk_value_type(e)) e = zk_value_next(e);
    return e;
}

ZK_API zk_value zk_value_path(zk_value v, const char *path) {
    const char *p = path;
    if (!path) return zk__none();
    while (*p) {
        if (*p == '[') {
            size_t i = 0;
            const char *digits = ++p;
            while (*p >= '0' && *p <= '9') {
                if (i > ((size_t)-1 - 9) / 10) return zk__none();
                i = i * 10 + (size_t)(*p++ - '0');
            }
            if (p == digits || *p != ']') return zk__none();
            p++;
            if (zk_value_type(v) != ZK_TYPE_ARRAY) return zk__none();
            v = zk_value_at(v, i);
        } else {
            const char *name = p;
            while (*p && *p != '.' && *p != '[') p++;
            if (p == name) return zk__none();
            v = zk_value_get_n(v, name, (size_t)(p - name));
        }
        if (!zk_value_type(v)) return zk__none();
        if (*p == '.') {
            p++;
            if (!*p || *p == '.' || *p == '[') return zk__none();
        } else if (*p && *p != '[') {
            return zk__none();
        }
    }
    return v;
}

/* ---- the writer (JSON) ---- */

ZK_API void zk_writer_init(zk_writer *w, char *buf, size_t cap) {
    memset(w, 0, sizeof *w);
    w->buf = buf;
    w->cap = buf ? cap : 0;
    w->owned = buf == NULL;
}

ZK_API void zk_writer_reset(zk_writer *w) {
    w->len = 0;
    w->err = ZK_OK;
    w->depth = 0;
    w->root_done = 0;
}

ZK_API void zk_writer_free(zk_writer *w) {
    if (w->owned) ZK_FREE(w->buf);
    w->buf = NULL;
    w->len = w->cap = 0;
}

ZK_API int zk_writer_error(const zk_writer *w) { return w->err; }

ZK_API zk_str zk_writer_result(const zk_writer *w) {
    zk_str s = {NULL, 0};
    if (!w->err && w->depth == 0 && w->root_done) {
        s.ptr = w->buf;
        s.len = w->len;
    }
    return s;
}

ZK__PRIVATE void zk__w_fail(zk_writer *w, int err) {
    if (!w->err) w->err = err;
}

/* Makes room for n more bytes; 0, or -1 with w->err set. */
ZK__PRIVATE int zk__w_room(zk_writer *w, size_t n) {
    size_t need = w->len + n, cap, max = w->max ? w->max : (size_t)16 << 20;
    char *b;
    if (w->err) return -1;
    if (need <= w->cap) return 0;
    if (!w->owned) { zk__w_fail(w, ZK_ENOSPACE); return -1; }
    if (need > max) { zk__w_fail(w, ZK_ETOOBIG); return -1; }
    cap = w->cap ? w->cap * 2 : 256;
    if (cap < need) cap = need;
    if (cap > max) cap = max;
    b = (char *)ZK_REALLOC(w->buf, cap);
    if (!b) { zk__w_fail(w, ZK_ENOMEM); return -1; }
    w->buf = b;
    w->cap = cap;
    return 0;
}

ZK__PRIVATE void zk__w_put(zk_writer *w, const void *s, size_t n) {
    if (zk__w_room(w, n) < 0) return;
    if (n) memcpy(w->buf + w->len, s, n); /* (s may be NULL when n is 0) */
    w->len += n;
}

ZK__PRIVATE void zk__w_byte(zk_writer *w, char c) {
    if (zk__w_room(w, 1) < 0) return;
    w->buf[w->len++] = c;
}

/* Before a value: is one allowed here? Writes the separating comma. */
ZK__PRIVATE int zk__w_begin(zk_writer *w) {
    uint32_t l;
    if (w->err) return -1;
    if (w->depth == 0) {
        if (w->root_done) { zk__w_fail(w, ZK_EINVAL); return -1; }
        return 0;
    }
    l = w->depth - 1;
    if (w->want_key[l] == 1) { zk__w_fail(w, ZK_EINVAL); return -1; } /* a key comes first */
    if (w->codec == ZK_CODEC_MSGPACK) {
        if (w->want_key[l] == 0) w->mp_n[l]++;
        return 0;
    }
    if (w->want_key[l] == 0 && !w->first[l]) zk__w_byte(w, ',');
    return w->err ? -1 : 0;
}

/* ---- MessagePack output ---- */

ZK__PRIVATE void zk__mp_head(zk_writer *w, unsigned char tag, uint64_t v, int bytes) {
    unsigned char b[9];
    int i;
    b[0] = tag;
    for (i = 0; i < bytes; i++) b[1 + i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    zk__w_put(w, b, (size_t)bytes + 1);
}

/* str, bin: the smallest header for len, then the bytes. */
ZK__PRIVATE void zk__mp_bytes(zk_writer *w, int bin, const void *p, size_t len) {
    if (!bin && len < 32) zk__w_byte(w, (char)(0xa0 | len));
    else if (len < 256) zk__mp_head(w, bin ? 0xc4 : 0xd9, len, 1);
    else if (len < 65536) zk__mp_head(w, bin ? 0xc5 : 0xda, len, 2);
    else if ((uint64_t)len <= 0xffffffffu) zk__mp_head(w, bin ? 0xc6 : 0xdb, len, 4);
    else { zk__w_fail(w, ZK_ETOOBIG); return; }
    zk__w_put(w, p, len);
}

ZK__PRIVATE void zk__mp_int(zk_writer *w, int64_t v) {
    if (v >= 0) {
        uint64_t u = (uint64_t)v;
        if (u < 128) zk__w_byte(w, (char)u);
        else if (u < 256) zk__mp_head(w, 0xcc, u, 1);
        else if (u < 65536) zk__mp_head(w, 0xcd, u, 2);
        else if (u <= 0xffffffffu) zk__mp_head(w, 0xce, u, 4);
        else zk__mp_head(w, 0xcf, u, 8);
    } else if (v >= -32) {
        zk__w_byte(w, (char)(unsigned char)(0xe0 | (unsigned)(v + 32)));
    } else if (v >= -128) {
        zk__mp_head(w, 0xd0, (uint64_t)v & 0xff, 1);
    } else if (v >= -32768) {
        zk__mp_head(w, 0xd1, (uint64_t)v & 0xffff, 2);
    } else if (v >= -2147483647 - 1) {
        zk__mp_head(w, 0xd2, (uint64_t)v & 0xffffffffu, 4);
    } else {
        zk__mp_head(w, 0xd3, (uint64_t)v, 8);
    }
}

/* A container's header was written as one byte; now that its count is
   known, it gets the header it needs (1, 3 or 5 bytes), the body moved up
   when more than one: a writer needs no more room than its result. */
ZK__PRIVATE void zk__mp_close(zk_writer *w, int object) {
    uint32_t l = w->depth - 1, n = w->mp_n[l];
    size_t at = w->mp_at[l], body = w->len - (at + 1), h;
    unsigned char *b;
    h = n < 16 ? 1 : n < 65536 ? 3 : 5;
    if (h > 1) {
        if (zk__w_room(w, h - 1) < 0) return;
        memmove(w->buf + at + h, w->buf + at + 1, body);
        w->len += h - 1;
    }
    b = (unsigned char *)w->buf + at;
    if (h == 1) {
        b[0] = (unsigned char)((object ? 0x80 : 0x90) | n);
    } else if (h == 3) {
        b[0] = object ? 0xde : 0xdc;
        b[1] = (unsigned char)(n >> 8);
        b[2] = (unsigned char)n;
    } else {
        b[0] = object ? 0xdf : 0xdd;
        b[1] = (unsigned char)(n >> 24);
        b[2] = (unsigned char)(n >> 16);
        b[3] = (unsigned char)(n >> 8);
        b[4] = (unsigned char)n;
    }
}

ZK_API int zk_writer_set_codec(zk_writer *w, int codec) {
    if ((codec != ZK_CODEC_JSON && codec != ZK_CODEC_MSGPACK) || w->len || w->depth || w->root_done || w->err)
        return ZK_EINVAL;
    w->codec = (unsigned char)codec;
    return ZK_OK;
}

ZK__PRIVATE void zk__w_done(zk_writer *w) {
    if (w->err) return;
    if (w->depth == 0) {
        w->root_done = 1;
        return;
    }
    if (w->want_key[w->depth - 1] == 2) w->want_key[w->depth - 1] = 1;
    w->first[w->depth - 1] = 0;
}

/* A quoted, escaped string (s must be valid UTF-8). */
ZK__PRIVATE void zk__w_quoted(zk_writer *w, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    size_t i = 0, run;
    zk__w_byte(w, '"');
    while (i < len && !w->err) {
        for (run = i; run < len; run++) {
            unsigned char c = (unsigned char)s[run];
            if (c < 0x20 || c == '"' || c == '\\') break;
        }
        zk__w_put(w, s + i, run - i);
        i = run;
        if (i < len) {
            unsigned char c = (unsigned char)s[i++];
            char e[6];
            e[0] = '\\';
            switch (c) {
            case '"': e[1] = '"'; zk__w_put(w, e, 2); break;
            case '\\': e[1] = '\\'; zk__w_put(w, e, 2); break;
            case '\b': e[1] = 'b'; zk__w_put(w, e, 2); break;
            case '\f': e[1] = 'f'; zk__w_put(w, e, 2); break;
            case '\n': e[1] = 'n'; zk__w_put(w, e, 2); break;
            case '\r': e[1] = 'r'; zk__w_put(w, e, 2); break;
            case '\t': e[1] = 't'; zk__w_put(w, e, 2); break;
            default:
                e[1] = 'u'; e[2] = '0'; e[3] = '0';
                e[4] = hex[c >> 4];
                e[5] = hex[c & 15];
                zk__w_put(w, e, 6);
            }
        }
    }
    zk__w_byte(w, '"');
}

ZK__PRIVATE void zk__w_open(zk_writer *w, char c, int object) {
    if (zk__w_begin(w) < 0) return;
    if (w->depth == ZK_DOC_MAX_DEPTH) { zk__w_fail(w, ZK_ETOOBIG); return; }
    if (w->codec == ZK_CODEC_MSGPACK) {
        if (w->len > 0xffffffffu - 5) { zk__w_fail(w, ZK_ETOOBIG); return; }
        w->mp_at[w->depth] = (uint32_t)w->len;
        w->mp_n[w->depth] = 0;
        zk__w_byte(w, (char)(unsigned char)(object ? 0x80 : 0x90)); /* fitted on close */
    } else {
        zk__w_byte(w, c);
    }
    if (w->err) return;
    w->want_key[w->depth] = (unsigned char)(object ? 1 : 0);
    w->first[w->depth] = 1;
    w->depth++;
}

ZK_API void zk_write_object(zk_writer *w) { zk__w_open(w, '{', 1); }
ZK_API void zk_write_array(zk_writer *w) { zk__w_open(w, '[', 0); }

ZK_API void zk_write_end(zk_writer *w) {
    uint32_t l;
    if (w->err) return;
    if (w->depth == 0) { zk__w_fail(w, ZK_EINVAL); return; }
    l = w->depth - 1;
    if (w->want_key[l] == 2) { zk__w_fail(w, ZK_EINVAL); return; } /* a key without its value */
    if (w->codec == ZK_CODEC_MSGPACK) zk__mp_close(w, w->want_key[l] != 0);
    else zk__w_byte(w, w->want_key[l] ? '}' : ']');
    if (w->err) return;
    w->depth--;
    zk__w_done(w);
}

ZK_API void zk_write_key_n(zk_writer *w, const char *key, size_t len) {
    uint32_t l;
    if (w->err) return;
    if (w->depth == 0 || w->want_key[w->depth - 1] != 1 || (len && !key) || !zk_utf8_valid(key, len)) {
        zk__w_fail(w, ZK_EINVAL);
        return;
    }
    l = w->depth - 1;
    if (w->codec == ZK_CODEC_MSGPACK) {
        w->mp_n[l]++;
        zk__mp_bytes(w, 0, key, len);
        if (!w->err) w->want_key[l] = 2;
        return;
    }
    if (!w->first[l]) zk__w_byte(w, ',');
    zk__w_quoted(w, key, len);
    zk__w_byte(w, ':');
    if (!w->err) w->want_key[l] = 2;
}

ZK_API void zk_write_key(zk_writer *w, const char *key) {
    if (!key) { zk__w_fail(w, ZK_EINVAL); return; }
    zk_write_key_n(w, key, strlen(key));
}

ZK_API void zk_write_str_n(zk_writer *w, const char *s, size_t len) {
    if ((len && !s) || !zk_utf8_valid(s, len)) { zk__w_fail(w, ZK_EINVAL); return; }
    if (zk__w_begin(w) < 0) return;
    if (w->codec == ZK_CODEC_MSGPACK) zk__mp_bytes(w, 0, s, len);
    else zk__w_quoted(w, s, len);
    zk__w_done(w);
}

ZK_API void zk_write_str(zk_writer *w, const char *s) {
    if (!s) zk_write_null(w);
    else zk_write_str_n(w, s, strlen(s));
}

ZK_API void zk_write_int(zk_writer *w, int64_t v) {
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (zk__w_begin(w) < 0) return;
    if (w->codec == ZK_CODEC_MSGPACK) {
        zk__mp_int(w, v);
        zk__w_done(w);
        return;
    }
    do { tmp[sizeof tmp - 1 - n++] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) tmp[sizeof tmp - 1 - n++] = '-';
    zk__w_put(w, tmp + sizeof tmp - n, n);
    zk__w_done(w);
}

/* Replaces the locale's decimal point in out[0..n) with '.'; returns the
   new length. */
ZK__PRIVATE int zk__dot(char *out, int n, const char *dp) {
    size_t dlen = strlen(dp);
    char *at;
    if (dlen == 1 && dp[0] == '.') return n;
    at = strstr(out, dp);
    if (!at) return n;
    *at = '.';
    memmove(at + 1, at + dlen, (size_t)(out + n - (at + dlen)) + 1);
    return n - (int)dlen + 1;
}

/* The shortest of %.15g, %.16g and %.17g that reads back as the same
   double, with '.' whatever the locale, and ".0" when it would otherwise
   read back as an integer. */
ZK__PRIVATE size_t zk__format_double(double v, char out[48]) {
    const char *dp = zk__decimal_point();
    int prec, n = 0;
    for (prec = 15; prec <= 17; prec++) {
        n = snprintf(out, 48, "%.*g", prec, v); /* in the locale, as strtod reads */
        if (prec == 17 || strtod(out, NULL) == v) break;
    }
    n = zk__dot(out, n, dp);
    if (!strpbrk(out, ".eE")) {
        out[n++] = '.';
        out[n++] = '0';
        out[n] = '\0';
    }
    return (size_t)n;
}

ZK_API void zk_write_double(zk_writer *w, double v) {
    char tmp[48];
    size_t n;
    if (v - v != 0) { zk__w_fail(w, ZK_EINVAL); return; } /* NaN and infinities are not JSON */
    if (zk__w_begin(w) < 0) return;
    if (w->codec == ZK_CODEC_MSGPACK) {
        union { double d; uint64_t u; } bits;
        bits.d = v;
        zk__mp_head(w, 0xcb, bits.u, 8);
        zk__w_done(w);
        return;
    }
    n = zk__format_double(v, tmp);
    zk__w_put(w, tmp, n);
    zk__w_done(w);
}

ZK_API void zk_write_bool(zk_writer *w, int v) {
    if (zk__w_begin(w) < 0) return;
    if (w->codec == ZK_CODEC_MSGPACK) zk__w_byte(w, (char)(unsigned char)(v ? 0xc3 : 0xc2));
    else if (v) zk__w_put(w, "true", 4);
    else zk__w_put(w, "false", 5);
    zk__w_done(w);
}

ZK_API void zk_write_null(zk_writer *w) {
    if (zk__w_begin(w) < 0) return;
    if (w->codec == ZK_CODEC_MSGPACK) zk__w_byte(w, (char)(unsigned char)0xc0);
    else zk__w_put(w, "null", 4);
    zk__w_done(w);
}

/* Binary has no JSON form: it is written as a base64 string. */
ZK__PRIVATE void zk__write_binary(zk_writer *w, const unsigned char *p, size_t len) {
    size_t n = (len + 2) / 3 * 4;
    if (len && !p) { zk__w_fail(w, ZK_EINVAL); return; }
    if (zk__w_begin(w) < 0) return;
    if (w->codec == ZK_CODEC_MSGPACK) {
        zk__mp_bytes(w, 1, p, len);
        zk__w_done(w);
        return;
    }
    zk__w_byte(w, '"');
    if (zk__w_room(w, n) == 0) {
        zk__b64_encode(p, len, w->buf + w->len);
        w->len += n;
    }
    zk__w_byte(w, '"');
    zk__w_done(w);
}

ZK_API void zk_write_binary(zk_writer *w, const void *p, size_t len) {
    zk__write_binary(w, (const unsigned char *)p, len);
}

ZK_API void zk_write_value(zk_writer *w, zk_value v) {
    uint32_t left[ZK_DOC_MAX_DEPTH], depth = 0, i = v.at;
    const zk__node *n = zk__value_node(v);
    if (!n || n->type == ZK__KEY) { zk__w_fail(w, ZK_EINVAL); return; }
    /* nodes are in document order: one pass, with a count per open level */
    for (;;) {
        n = &v.doc->nodes[i++];
        switch (n->type) {
        case ZK__KEY: zk_write_key_n(w, n->v.s, n->len); continue;
        case ZK_TYPE_NULL: zk_write_null(w); break;
        case ZK_TYPE_BOOL: zk_write_bool(w, (int)n->v.i); break;
        case ZK_TYPE_INT: zk_write_int(w, n->v.i); break;
        case ZK_TYPE_DOUBLE: zk_write_double(w, n->v.d); break;
        case ZK_TYPE_STRING: zk_write_str_n(w, n->v.s, n->len); break;
        case ZK_TYPE_BINARY: zk__write_binary(w, (const unsigned char *)n->v.s, n->len); break;
        case ZK_TYPE_ARRAY:
        case ZK_TYPE_OBJECT:
            if (n->type == ZK_TYPE_ARRAY) zk_write_array(w);
            else zk_write_object(w);
            if (n->len) {
                if (depth == ZK_DOC_MAX_DEPTH) { zk__w_fail(w, ZK_ETOOBIG); return; }
                left[depth++] = n->len;
                continue;
            }
            zk_write_end(w);
            break;
        default:
            zk__w_fail(w, ZK_EINVAL);
            return;
        }
        if (w->err) return;
        /* a value is complete: close every level it completes */
        while (depth && --left[depth - 1] == 0) {
            depth--;
            zk_write_end(w);
        }
        if (depth == 0) return;
    }
}
/* >>msgpack: the MessagePack reader (the writer is zk_writer's other codec) */

/* The big-endian unsigned integer of n bytes at p. */
ZK__PRIVATE uint64_t zk__mp_be(const unsigned char *p, int n) {
    uint64_t v = 0;
    int i;
    for (i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

ZK__PRIVATE int zk__mp_fail(zk_doc *doc, const char *buf, const unsigned char *at, int err, const char *error) {
    doc->count = 0;
    doc->error = error;
    doc->error_at = (size_t)((const char *)at - buf);
    return err;
}

ZK_API int zk_msgpack_parse(zk_doc *doc, const char *buf, size_t len) {
    const unsigned char *p = (const unsigned char *)buf, *end = buf ? p + len : p, *at;
    uint32_t stack[ZK_DOC_MAX_DEPTH], last[ZK_DOC_MAX_DEPTH], depth = 0, max_depth = zk__doc_max_depth(doc);
    uint64_t left[ZK_DOC_MAX_DEPTH]; /* items still to come: elements, or keys and values */
    int err = ZK_OK;
    doc->count = 0;
    doc->error = NULL;
    doc->error_at = 0;
    if (!buf && len) return ZK_EINVAL;
    for (;;) {
        unsigned char c;
        int type = -1, key = 0, bytes = 0;
        uint64_t n = 0;
        uint32_t idx;
        zk__node *node;
        if (depth && doc->nodes[stack[depth - 1]].type == ZK_TYPE_OBJECT && left[depth - 1] % 2 == 0) key = 1;
        at = p;
        if (p >= end) return zk__mp_fail(doc, buf, p, ZK_EPARSE, "unexpected end of input");
        c = *p++;
        /* the format: its type, and how many bytes of length or value follow */
        if (c <= 0x7f) { type = ZK_TYPE_INT; n = c; }
        else if (c >= 0xe0) { type = ZK_TYPE_INT; n = (uint64_t)(int64_t)(signed char)c; }
        else if (c <= 0x8f) { type = ZK_TYPE_OBJECT; n = c & 15u; }
        else if (c <= 0x9f) { type = ZK_TYPE_ARRAY; n = c & 15u; }
        else if (c <= 0xbf) { type = ZK_TYPE_STRING; n = c & 31u; }
        else {
            switch (c) {
            case 0xc0: type = ZK_TYPE_NULL; break;
            case 0xc2: case 0xc3: type = ZK_TYPE_BOOL; n = c & 1u; break;
            case 0xc4: case 0xc5: case 0xc6: type = ZK_TYPE_BINARY; bytes = 1 << (c - 0xc4); break;
            case 0xca: type = ZK_TYPE_DOUBLE; bytes = 4; break;
            case 0xcb: type = ZK_TYPE_DOUBLE; bytes = 8; break;
            case 0xcc: case 0xcd: case 0xce: case 0xcf: type = ZK_TYPE_INT; bytes = 1 << (c - 0xcc); break;
            case 0xd0: case 0xd1: case 0xd2: case 0xd3: type = ZK_TYPE_INT; bytes = 1 << (c - 0xd0); break;
            case 0xd9: case 0xda: case 0xdb: type = ZK_TYPE_STRING; bytes = 1 << (c - 0xd9); break;
            case 0xdc: case 0xdd: type = ZK_TYPE_ARRAY; bytes = c == 0xdc ? 2 : 4; break;
            case 0xde: case 0xdf: type = ZK_TYPE_OBJECT; bytes = c == 0xde ? 2 : 4; break;
            case 0xc1: return zk__mp_fail(doc, buf, at, ZK_EPARSE, "0xc1 is never used");
            default: /* 0xc7-0xc9 ext, 0xd4-0xd8 fixext */
                return zk__mp_fail(doc, buf, at, ZK_EPARSE, "ext types are not supported");
            }
        }
        if ((size_t)(end - p) < (size_t)bytes) return zk__mp_fail(doc, buf, at, ZK_EPARSE, "unexpected end of input");
        if (bytes) {
            n = zk__mp_be(p, bytes);
            p += bytes;
        }
        if (key && type != ZK_TYPE_STRING) return zk__mp_fail(doc, buf, at, ZK_EPARSE, "a map key that is not a string");
        idx = doc->count;
        node = zk__doc_node(doc, key ? ZK__KEY : type, &err);
        if (!node) return zk__mp_fail(doc, buf, at, err, err == ZK_ETOOBIG ? "too many values" : "out of memory");
        switch (type) {
        case ZK_TYPE_BOOL:
            node->v.i = (int64_t)n;
            break;
        case ZK_TYPE_INT:
            if (c >= 0xd0 && c <= 0xd3) { /* signed: extend from its width */
                int shift = 64 - 8 * bytes;
                node->v.i = (int64_t)(n << shift) >> shift;
            } else if (c == 0xcf && n > (uint64_t)INT64_MAX) {
                node->type = ZK_TYPE_DOUBLE; /* as JSON does with an integer this large */
                node->v.d = (double)n;
            } else {
                node->v.i = (int64_t)n;
            }
            break;
        case ZK_TYPE_DOUBLE: {
            double d;
            if (bytes == 4) {
                union { uint32_t u; float f; } f32;
                f32.u = (uint32_t)n;
                d = (double)f32.f;
            } else {
                union { uint64_t u; double d; } f64;
                f64.u = n;
                d = f64.d;
            }
            if (d - d != 0) return zk__mp_fail(doc, buf, at, ZK_EPARSE, "NaN and infinities are not supported");
            node->v.d = d;
            break;
        }
        case ZK_TYPE_STRING:
        case ZK_TYPE_BINARY:
            if (n > (uint64_t)(end - p)) return zk__mp_fail(doc, buf, at, ZK_EPARSE, "unexpected end of input");
            if (type == ZK_TYPE_STRING && !zk_utf8_valid(p, (size_t)n))
                return zk__mp_fail(doc, buf, at, ZK_EPARSE, "invalid UTF-8 in a string");
            node->v.s = (const char *)p;
            node->len = (uint32_t)n;
            p += n;
            break;
        case ZK_TYPE_ARRAY:
        case ZK_TYPE_OBJECT:
            /* each element takes a byte at least: a count past the input is
               refused now, not after allocating for it */
            if ((type == ZK_TYPE_OBJECT ? n * 2 : n) > (uint64_t)(end - p))
                return zk__mp_fail(doc, buf, at, ZK_EPARSE, "unexpected end of input");
            break;
        default:
            break;
        }
        /* link it to its parent */
        if (depth) {
            uint32_t l = depth - 1;
            if (doc->nodes[stack[l]].type == ZK_TYPE_ARRAY || key) {
                if (last[l]) doc->nodes[last[l]].next = idx;
                last[l] = idx;
            }
            left[l]--;
        }
        if ((type == ZK_TYPE_ARRAY || type == ZK_TYPE_OBJECT) && depth == max_depth) /* empty ones too, as JSON */
            return zk__mp_fail(doc, buf, at, ZK_ETOOBIG, "nested too deeply");
        if ((type == ZK_TYPE_ARRAY || type == ZK_TYPE_OBJECT) && n) {
            node->len = (uint32_t)n;
            stack[depth] = idx;
            last[depth] = 0;
            left[depth] = type == ZK_TYPE_OBJECT ? n * 2 : n;
            depth++;
            continue;
        }
        while (depth && left[depth - 1] == 0) depth--;
        if (!depth) break;
    }
    if (p != end) return zk__mp_fail(doc, buf, p, ZK_EPARSE, "data after the value");
    return ZK_OK;
}
#include <stdarg.h>
/* >>app implementation: router, requests, schemas, caller, app, rooms ---- */

/* ---- a string-keyed hash table: open addressing, linear probing,
   deletion by backward shift (no tombstones, so a million join/leave
   cycles leave it as it was). Keys live in the values it points to. ---- */

typedef struct zk__slot {
    uint64_t hash;
    const char *key;
    size_t len;
    void *val;         /* NULL: empty slot */
} zk__slot;

typedef struct zk__map {
    zk__slot *slots;
    size_t cap, count; /* cap: a power of two, or 0 */
    int keep;          /* keep the slots when it empties (tables that fill and
                          empty all the time); otherwise they are given back */
} zk__map;

ZK__PRIVATE uint64_t zk__hash(const char *s, size_t n) {
    uint64_t h = 14695981039346656037ull;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

/* The slot of key, or the empty slot where it would go. */
ZK__PRIVATE size_t zk__map_probe(const zk__map *m, const char *key, size_t len, uint64_t h) {
    size_t i = (size_t)h & (m->cap - 1);
    for (;;) {
        const zk__slot *s = &m->slots[i];
        if (!s->val) return i;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) return i;
        i = (i + 1) & (m->cap - 1);
    }
}

ZK__PRIVATE void *zk__map_get(const zk__map *m, const char *key, size_t len) {
    if (!m->count) return NULL;
    return m->slots[zk__map_probe(m, key, len, zk__hash(key, len))].val;
}

/* Adds key (not present) -> val (not NULL). 0 or ZK_ENOMEM. */
ZK__PRIVATE int zk__map_put(zk__map *m, const char *key, size_t len, void *val) {
    uint64_t h = zk__hash(key, len);
    size_t i;
    if ((m->count + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16, j;
        zk__slot *old = m->slots, *slots = (zk__slot *)ZK_MALLOC(cap * sizeof *slots);
        if (!slots) return ZK_ENOMEM;
        memset(slots, 0, cap * sizeof *slots);
        m->slots = slots;
        j = m->cap;
        m->cap = cap;
        while (j--)
            if (old[j].val) m->slots[zk__map_probe(m, old[j].key, old[j].len, old[j].hash)] = old[j];
        ZK_FREE(old);
    }
    i = zk__map_probe(m, key, len, h);
    m->slots[i].hash = h;
    m->slots[i].key = key;
    m->slots[i].len = len;
    m->slots[i].val = val;
    m->count++;
    return 0;
}

/* Removes key when it maps to val (any value when val is NULL). */
ZK__PRIVATE void zk__map_del_value(zk__map *m, const char *key, size_t len, const void *val) {
    size_t i, j, want, mask = m->cap - 1;
    if (!m->count) return;
    i = zk__map_probe(m, key, len, zk__hash(key, len));
    if (!m->slots[i].val || (val && m->slots[i].val != val)) return;
    /* pull later members of the cluster back over the hole when their home
       slot does not lie between the hole and them */
    for (j = (i + 1) & mask;; j = (j + 1) & mask) {
        if (!m->slots[j].val) break;
        want = (size_t)m->slots[j].hash & mask;
        if (((j - want) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].val = NULL;
    m->count--;
    if (!m->count && !m->keep) { /* an empty table gives its memory back */
        ZK_FREE(m->slots);
        m->slots = NULL;
        m->cap = 0;
    }
}

ZK__PRIVATE void zk__map_del(zk__map *m, const char *key, size_t len) { zk__map_del_value(m, key, len, NULL); }

ZK__PRIVATE void zk__map_free(zk__map *m) {
    ZK_FREE(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

/* Writes a value that is already valid JSON (our own writer's output). */
ZK__PRIVATE void zk__write_raw(zk_writer *w, const char *s, size_t n) {
    if (zk__w_begin(w) < 0) return;
    zk__w_put(w, s, n);
    zk__w_done(w);
}

/* ---- router ---- */

typedef struct zk__route {
    char *name;
    size_t name_len;
    zk_handler_fn handler;
    const zk_schema *input;
    zk_middleware_fn *middleware;
    size_t middleware_count;
    void *data;
} zk__route;

struct zk_router {
    zk__map map;
    zk__route **routes;
    size_t count, cap;
    zk_middleware_fn *middleware;
    size_t middleware_count;
    /* the caller's buffers, reused from call to call when not nested */
    zk_doc doc;
    zk_writer writer;
    char *buf;
    size_t buf_cap;
    int busy;
};

/* Dotted names: parts of [A-Za-z0-9_-], at most ZK_ROUTE_MAX_NAME bytes. */
ZK__PRIVATE int zk__name_valid(const char *s, size_t n) {
    size_t i, part = 0;
    if (!n || n > ZK_ROUTE_MAX_NAME) return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (!part) return 0;
            part = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '_' || c == '-') {
            part++;
        } else {
            return 0;
        }
    }
    return part > 0;
}

ZK_API zk_router *zk_router_new(void) {
    zk_router *r = (zk_router *)ZK_MALLOC(sizeof *r);
    if (!r) return NULL;
    memset(r, 0, sizeof *r);
    zk_doc_init(&r->doc);
    zk_writer_init(&r->writer, NULL, 0);
    return r;
}

ZK__PRIVATE void zk__route_free(zk__route *rt) {
    ZK_FREE(rt->middleware);
    ZK_FREE(rt);
}

ZK_API void zk_router_free(zk_router *r) {
    size_t i;
    if (!r) return;
    for (i = 0; i < r->count; i++) zk__route_free(r->routes[i]);
    ZK_FREE(r->routes);
    ZK_FREE(r->middleware);
    zk__map_free(&r->map);
    zk_doc_free(&r->doc);
    zk_writer_free(&r->writer);
    ZK_FREE(r->buf);
    ZK_FREE(r);
}

/* A route named prefix.name (prefix may be empty) with middleware first
   then more; not yet registered. */
ZK__PRIVATE zk__route *zk__route_new(const char *prefix, size_t plen, const char *name, size_t nlen,
                                     zk_handler_fn handler, const zk_schema *input,
                                     const zk_middleware_fn *first, size_t nfirst,
                                     const zk_middleware_fn *more, size_t nmore, void *data) {
    size_t len = plen ? plen + 1 + nlen : nlen, nmw = nfirst + nmore;
    zk__route *rt = (zk__route *)ZK_MALLOC(sizeof *rt + len + 1);
    if (!rt) return NULL;
    memset(rt, 0, sizeof *rt);
    rt->name = (char *)(rt + 1);
    if (plen) {
        memcpy(rt->name, prefix, plen);
        rt->name[plen] = '.';
        memcpy(rt->name + plen + 1, name, nlen);
    } else {
        memcpy(rt->name, name, nlen);
    }
    rt->name[len] = '\0';
    rt->name_len = len;
    rt->handler = handler;
    rt->input = input;
    rt->data = data;
    if (nmw) {
        rt->middleware = (zk_middleware_fn *)ZK_MALLOC(nmw * sizeof *rt->middleware);
        if (!rt->middleware) {
            ZK_FREE(rt);
            return NULL;
        }
        if (nfirst) memcpy(rt->middleware, first, nfirst * sizeof *first);
        if (nmore) memcpy(rt->middleware + nfirst, more, nmore * sizeof *more);
        rt->middleware_count = nmw;
    }
    return rt;
}

/* Makes room for n more routes in the list and the table. */
ZK__PRIVATE int zk__router_reserve(zk_router *r, size_t n) {
    if (r->count + n > r->cap) {
        size_t cap = r->cap ? r->cap : 16;
        zk__route **routes;
        while (cap < r->count + n) cap *= 2;
        routes = (zk__route **)ZK_REALLOC(r->routes, cap * sizeof *routes);
        if (!routes) return ZK_ENOMEM;
        r->routes = routes;
        r->cap = cap;
    }
    return 0;
}

ZK__PRIVATE int zk__router_add(zk_router *r, zk__route *rt) {
    if (zk__router_reserve(r, 1) < 0 || zk__map_put(&r->map, rt->name, rt->name_len, rt) < 0) return ZK_ENOMEM;
    r->routes[r->count++] = rt;
    return 0;
}

ZK_API int zk_router_on(zk_router *r, const char *name, zk_handler_fn handler, const zk_route_opts *opts) {
    size_t len;
    zk__route *rt;
    if (!r || !name || !handler) return ZK_EINVAL;
    len = strlen(name);
    if (!zk__name_valid(name, len) || zk__map_get(&r->map, name, len)) return ZK_EINVAL;
    if (opts && opts->middleware_count && !opts->middleware) return ZK_EINVAL;
    rt = zk__route_new(NULL, 0, name, len, handler, opts ? opts->input : NULL,
                       opts ? opts->middleware : NULL, opts ? opts->middleware_count : 0, NULL, 0,
                       opts ? opts->data : NULL);
    if (!rt) return ZK_ENOMEM;
    if (zk__router_add(r, rt) < 0) {
        zk__route_free(rt);
        return ZK_ENOMEM;
    }
    return 0;
}

ZK_API int zk_router_use(zk_router *r, zk_middleware_fn fn) {
    zk_middleware_fn *m;
    if (!r || !fn) return ZK_EINVAL;
    m = (zk_middleware_fn *)ZK_REALLOC(r->middleware, (r->middleware_count + 1) * sizeof *m);
    if (!m) return ZK_ENOMEM;
    r->middleware = m;
    m[r->middleware_count++] = fn;
    return 0;
}

ZK_API int zk_router_mount(zk_router *r, const char *prefix, const zk_router *sub) {
    size_t plen, i, j, start;
    char name[ZK_ROUTE_MAX_NAME + 1];
    if (!r || !prefix || !sub || r == sub) return ZK_EINVAL;
    plen = strlen(prefix);
    if (!zk__name_valid(prefix, plen)) return ZK_EINVAL;
    /* every name first, so that a failure adds nothing */
    for (i = 0; i < sub->count; i++) {
        const zk__route *s = sub->routes[i];
        if (plen + 1 + s->name_len > ZK_ROUTE_MAX_NAME) return ZK_EINVAL;
        memcpy(name, prefix, plen);
        name[plen] = '.';
        memcpy(name + plen + 1, s->name, s->name_len);
        if (zk__map_get(&r->map, name, plen + 1 + s->name_len)) return ZK_EINVAL;
    }
    if (zk__router_reserve(r, sub->count) < 0) return ZK_ENOMEM;
    start = r->count;
    for (i = 0; i < sub->count; i++) {
        const zk__route *s = sub->routes[i];
        zk__route *rt = zk__route_new(prefix, plen, s->name, s->name_len, s->handler, s->input,
                                      sub->middleware, sub->middleware_count, s->middleware,
                                      s->middleware_count, s->data);
        if (!rt || zk__router_add(r, rt) < 0) {
            if (rt) zk__route_free(rt);
            for (j = start; j < r->count; j++) {
                zk__map_del(&r->map, r->routes[j]->name, r->routes[j]->name_len);
                zk__route_free(r->routes[j]);
            }
            r->count = start;
            return ZK_ENOMEM;
        }
    }
    return 0;
}

ZK_API size_t zk_router_count(const zk_router *r) { return r ? r->count : 0; }

/* ---- schemas ---- */

typedef struct zk__issues {
    zk_writer *w;
    size_t count;
    char path[256];
    size_t path_len;
} zk__issues;

ZK__PRIVATE void zk__issue(zk__issues *is, const char *fmt, ...) {
    char msg[160];
    va_list ap;
    is->count++;
    if (!is->w || is->count > ZK_SCHEMA_MAX_ISSUES) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    zk_write_object(is->w);
    zk_write_key(is->w, "path");
    zk_write_str_n(is->w, is->path, is->path_len);
    zk_write_key(is->w, "message");
    zk_write_str(is->w, msg);
    zk_write_end(is->w);
}

/* Appends ".name" (or "name" at the root) or "[i]" to the path; returns the
   old length to restore. A path longer than the buffer is cut short. */
ZK__PRIVATE size_t zk__path_push(zk__issues *is, const char *name, size_t nlen, size_t index) {
    size_t old = is->path_len, room = sizeof is->path - 1 - old;
    char tmp[32];
    size_t n;
    if (name) {
        if (old && room) is->path[is->path_len++] = '.', room--;
        n = nlen < room ? nlen : room;
        memcpy(is->path + is->path_len, name, n);
    } else {
        n = (size_t)snprintf(tmp, sizeof tmp, "[%lu]", (unsigned long)index);
        if (n > room) n = room;
        memcpy(is->path + is->path_len, tmp, n);
    }
    is->path_len += n;
    /* never cut a UTF-8 sequence: a path must stay a valid string */
    while (is->path_len > old && !zk_utf8_valid(is->path + old, is->path_len - old)) is->path_len--;
    return old;
}

ZK__PRIVATE const char *zk__schema_type_name(int type) {
    return type == ZK_TYPE_DOUBLE ? "number" : type == ZK_TYPE_INT ? "integer" : zk_type_name(type);
}

ZK__PRIVATE int zk__is_integral(zk_value v) {
    int t = zk_value_type(v);
    double d;
    if (t == ZK_TYPE_INT) return 1;
    if (t != ZK_TYPE_DOUBLE) return 0;
    d = zk_value_double(v, 0.5);
    /* the range first: converting a double outside int64 is undefined */
    return d >= -9223372036854775808.0 && d < 9223372036854775808.0 && d == (double)(int64_t)d;
}

/* unit: "bytes long" (strings), "items", "members", or NULL (numbers) */
ZK__PRIVATE void zk__bounds(zk__issues *is, const zk_schema *s, double n, const char *unit) {
    const char *verb = unit && unit[0] == 'b' ? "be" : unit ? "have" : "be";
    if ((s->flags & ZK_SCHEMA_MIN) && n < s->min)
        zk__issue(is, "must %s at least %.15g%s%s", verb, s->min, unit ? " " : "", unit ? unit : "");
    else if ((s->flags & ZK_SCHEMA_MAX) && n > s->max)
        zk__issue(is, "must %s at most %.15g%s%s", verb, s->max, unit ? " " : "", unit ? unit : "");
}

ZK__PRIVATE void zk__check(zk__issues *is, const zk_schema *s, zk_value v) {
    int t = zk_value_type(v), ok;
    if (t == ZK_TYPE_NONE) {
        if (!(s->flags & ZK_SCHEMA_OPTIONAL)) zk__issue(is, "required");
        return;
    }
    if (t == ZK_TYPE_NULL && (s->flags & ZK_SCHEMA_NULLABLE)) return;
    switch (s->type) {
    case ZK_TYPE_NONE: ok = 1; break;
    case ZK_TYPE_DOUBLE: ok = t == ZK_TYPE_INT || t == ZK_TYPE_DOUBLE; break;
    case ZK_TYPE_INT: ok = zk__is_integral(v); break;
    default: ok = t == s->type; break;
    }
    if (!ok) {
        zk__issue(is, "expected %s, got %s", zk__schema_type_name(s->type), zk_type_name(t));
        return;
    }
    switch (s->type) {
    case ZK_TYPE_STRING:
    case ZK_TYPE_BINARY: zk__bounds(is, s, (double)zk_value_len(v), "bytes long"); break;
    case ZK_TYPE_INT:
    case ZK_TYPE_DOUBLE: zk__bounds(is, s, zk_value_double(v, 0), NULL); break;
    case ZK_TYPE_ARRAY: {
        zk_value e;
        size_t i = 0;
        zk__bounds(is, s, (double)zk_value_len(v), "items");
        if (s->items)
            for (e = zk_value_first(v); zk_value_type(e); e = zk_value_next(e), i++) {
                size_t old = zk__path_push(is, NULL, 0, i);
                zk__check(is, s->items, e);
                is->path_len = old;
            }
        break;
    }
    case ZK_TYPE_OBJECT: {
        const zk_schema *f;
        zk__bounds(is, s, (double)zk_value_len(v), "members");
        for (f = s->fields; f && f->name; f++) {
            size_t old = zk__path_push(is, f->name, strlen(f->name), 0);
            zk__check(is, f, zk_value_get(v, f->name));
            is->path_len = old;
        }
        if ((s->flags & ZK_SCHEMA_STRICT)) {
            zk_value m;
            for (m = zk_value_first(v); zk_value_type(m); m = zk_value_next(m)) {
                zk_str key = zk_value_key(m);
                for (f = s->fields; f && f->name; f++)
                    if (strlen(f->name) == key.len && memcmp(f->name, key.ptr, key.len) == 0) break;
                if (!f || !f->name) {
                    size_t old = zk__path_push(is, key.ptr, key.len, 0);
                    zk__issue(is, "unknown member");
                    is->path_len = old;
                }
            }
        }
        break;
    }
    default: break;
    }
}

ZK_API size_t zk_schema_check(const zk_schema *schema, zk_value v, zk_writer *w) {
    zk__issues is;
    is.w = w;
    is.count = 0;
    is.path_len = 0;
    if (w) zk_write_array(w);
    if (schema) zk__check(&is, schema, v);
    if (w) zk_write_end(w);
    return is.count;
}

/* ---- requests ---- */

typedef struct zk__member zk__member;

enum { ZK__RPC_NONE, ZK__RPC_STRING, ZK__RPC_INT };

struct zk_request {
    zk_router *router;
    const zk__route *route;
    zk_app *app;
    zk_conn *conn;
    zk__member *member;
    void *context;               /* zk_router_call's (an app's is the member's) */
    zk_str type;
    zk_value payload;
    char rpc_id[ZK_RPC_ID_MAX + 1];
    size_t rpc_len;
    int rpc_kind;
    const char *keys[ZK_REQUEST_MAX_VALUES];
    void *values[ZK_REQUEST_MAX_VALUES];
    unsigned nvalues;
    zk_writer writer;
    zk_answer_fn done;           /* zk_router_call's sink */
    void *user;
    unsigned char answered;      /* answered, or kept (the copy answers) */
    unsigned char heap;          /* a kept copy */
    unsigned char timed_out;     /* kept: TIMEOUT went out already */
    unsigned char is_auth;       /* an __auth request */
    /* kept copies only */
    zk_timer deadline;
    zk_request *prev, *next;     /* the member's kept list, or the app's orphans */
};

ZK_API zk_str zk_request_type(const zk_request *r) { return r->type; }
ZK_API zk_value zk_request_payload(const zk_request *r) { return r->payload; }
ZK_API int zk_request_is_call(const zk_request *r) { return r->rpc_kind != ZK__RPC_NONE; }
ZK_API zk_conn *zk_request_conn(const zk_request *r) { return r->conn; }
ZK_API zk_app *zk_request_app(const zk_request *r) { return r->app; }
ZK_API void *zk_request_route_data(const zk_request *r) { return r->route ? r->route->data : NULL; }
ZK_API zk_writer *zk_request_writer(zk_request *r) { return &r->writer; }

ZK_API int zk_request_set(zk_request *r, const char *key, void *value) {
    unsigned i;
    if (!key) return ZK_EINVAL;
    for (i = 0; i < r->nvalues; i++)
        if (strcmp(r->keys[i], key) == 0) {
            r->values[i] = value;
            return 0;
        }
    if (r->nvalues == ZK_REQUEST_MAX_VALUES) return ZK_ENOSPACE;
    r->keys[r->nvalues] = key;
    r->values[r->nvalues++] = value;
    return 0;
}

ZK_API void *zk_request_get(const zk_request *r, const char *key) {
    unsigned i;
    if (!key) return NULL;
    for (i = 0; i < r->nvalues; i++)
        if (strcmp(r->keys[i], key) == 0) return r->values[i];
    return NULL;
}

/* ---- the app's state ---- */

typedef struct zk__room zk__room;

typedef struct zk__seat {        /* a room's entry for a member */
    zk__member *member;
    uint32_t slot;               /* where the room is in member->rooms */
    uint64_t joined;             /* loop time (a broker delivers only what was sent since) */
} zk__seat;

typedef struct zk__membership {  /* a member's entry for a room */
    zk__room *room;
    uint32_t seat;               /* where the member is in room->seats */
} zk__membership;

struct zk__room {
    zk__seat *seats;
    uint32_t count, cap;
    char *name;                  /* follows the struct */
    size_t name_len;
};

struct zk__member {
    zk_app *app;
    zk_conn *conn;
    void *context;
    char id[23];
    size_t index;                /* in app->members */
    zk__membership *rooms;
    uint32_t room_count, room_cap;
    uint64_t mark;               /* the last send that reached it */
    uint64_t since;              /* loop time it connected */
    unsigned char codec;         /* ZK_CODEC_* */
    uint64_t tokens;             /* rate limit: thousandths of a message */
    uint64_t refilled;           /* loop time of the last refill */
    uint32_t strikes;            /* messages refused in a row */
    unsigned char authed;
    zk_timer auth_timer;
    zk_request *kept;            /* kept requests not answered yet */
    size_t kept_count;
    zk_request *active;          /* the request its handler runs for now */
};

struct zk_app {
    zk_loop *loop;
    zk_server *server;
    zk_router *router;
    zk_app_opts opts;
    char *path;
    zk__member **members;
    size_t count, cap;
    zk__map ids, rooms;
    zk_doc doc;
    zk_writer results;           /* lent to each request in turn */
    zk_writer envelope;          /* answers on the way out */
    zk_writer payload;           /* zk_app_message's */
    zk_writer message;
    char message_type[ZK_ROUTE_MAX_NAME + 1];
    int message_started;
    zk_frame *frame;             /* the last message, reused when no queue holds it */
    size_t frame_cap;
    zk_frame *frame_mp;          /* the same message in MessagePack, made when needed */
    size_t frame_mp_cap;
    int frame_mp_state;          /* 0 not made for this message, 1 made, -1 cannot be */
    zk_str frame_type, frame_payload; /* what the frames say (views valid during a send) */
    zk_doc mp_doc;               /* the payload, read again to write it in MessagePack */
    zk_writer mp_copy, mp_out;
    const char *protocols[2];    /* offered when server.protocols is NULL */
    uint64_t mark;
    zk_app_stats stats;
    zk_request *orphans;         /* kept requests whose connection is gone */
    unsigned char ids_pool[512]; /* random bytes from the OS, for client ids */
    size_t ids_left;
    zk_broker *broker;           /* rooms across processes (broker.c), or NULL */
};

/* broker.c: a room got its first local member (on 1) or lost its last (0);
   a message to publish (before it is delivered here); the app going away. */
ZK__PRIVATE int zk__broker_room(zk_broker *b, const char *room, size_t len, int on);
ZK__PRIVATE int zk__broker_publish(zk_broker *b, const zk_target *to);

ZK_API void *zk_request_context(const zk_request *r) { return r->app ? (r->member ? r->member->context : NULL) : r->context; }
ZK_API void zk_request_set_context(zk_request *r, void *ctx) {
    if (r->member) r->member->context = ctx;
    else if (!r->app) r->context = ctx;
}

/* The default text of a code. */
ZK__PRIVATE const char *zk__code_text(const char *code) {
    static const char *const texts[][2] = {
        {ZK_CODE_BAD_REQUEST, "bad request"},
        {ZK_CODE_NOT_FOUND, "not found"},
        {ZK_CODE_INVALID_INPUT, "invalid input"},
        {ZK_CODE_UNAUTHORIZED, "unauthorized"},
        {ZK_CODE_FORBIDDEN, "forbidden"},
        {ZK_CODE_TIMEOUT, "timed out"},
        {ZK_CODE_TOO_MANY_REQUESTS, "too many requests"},
        {ZK_CODE_PAYLOAD_TOO_LARGE, "payload too large"},
        {ZK_CODE_INTERNAL, "internal error"}};
    size_t i;
    for (i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (strcmp(code, texts[i][0]) == 0) return texts[i][1];
    return "error";
}

ZK__PRIVATE void zk__kept_unlink(zk_request *r);
ZK__PRIVATE void zk__send_answer(zk_request *r, const zk_answer *a);

/* Delivers an answer to the request's sink; the request is answered. */
ZK__PRIVATE void zk__deliver(zk_request *r, const zk_answer *a) {
    r->answered = 1;
    if (r->done) r->done(a, r->user);
    else if (r->app && r->conn) zk__send_answer(r, a);
}

/* Ends a kept copy after its answer (or the owner's answer attempt). */
ZK__PRIVATE void zk__kept_free(zk_request *r) {
    zk_timer_stop(&r->deadline);
    zk__kept_unlink(r);
    zk_writer_free(&r->writer);
    ZK_FREE(r);
}

ZK__PRIVATE int zk__answer_status(zk_request *r) {
    if (!r->heap) return r->answered ? ZK_EINVAL : 0;
    if (r->timed_out) return ZK_ETIMEDOUT;
    if (r->app && !r->conn) return ZK_ECLOSED;
    return 0;
}

/* zk__fail and zk__ok answer r and leave it be; a kept copy is freed by the
   public calls, the only ones a kept copy reaches. */
ZK__PRIVATE int zk__fail(zk_request *r, const char *code, const char *message, zk_str data) {
    zk_answer a;
    int status = zk__answer_status(r);
    if (status) return status;
    if (!code || !*code || strlen(code) > 64 || !zk_utf8_valid(code, strlen(code))) code = ZK_CODE_INTERNAL;
    if (!message || !zk_utf8_valid(message, strlen(message))) message = zk__code_text(code);
    if (strcmp(code, ZK_CODE_INTERNAL) == 0 && r->app && !r->app->opts.expose_internal) {
        message = zk__code_text(code);
        data.ptr = NULL;
        data.len = 0;
    }
    a.ok = 0;
    a.code = zk_str_c(code);
    a.message = zk_str_c(message);
    a.data = data;
    zk__deliver(r, &a);
    return 0;
}

ZK__PRIVATE int zk__ok(zk_request *r) {
    zk_answer a;
    zk_str result;
    int status = zk__answer_status(r);
    if (status) return status;
    result = zk_writer_result(&r->writer);
    if (!result.ptr) {
        if (r->writer.len || r->writer.err) {
            zk_str none = {NULL, 0};
            return zk__fail(r, ZK_CODE_INTERNAL,
                            r->writer.err ? "the result could not be written" : "the result is incomplete", none);
        }
        result = r->writer.codec == ZK_CODEC_MSGPACK ? zk_str_c("\xc0") : zk_str_c("null");
    }
    a.ok = 1;
    a.code.ptr = a.message.ptr = NULL;
    a.code.len = a.message.len = 0;
    a.data = result;
    zk__deliver(r, &a);
    return 0;
}

ZK_API int zk_request_fail(zk_request *r, const char *code, const char *message) {
    int rc = zk__fail(r, code, message, zk_writer_result(&r->writer));
    if (r->heap) zk__kept_free(r);
    return rc;
}

ZK_API int zk_request_ok(zk_request *r) {
    int rc = zk__ok(r);
    if (r->heap) zk__kept_free(r);
    return rc;
}

ZK__PRIVATE void zk__kept_deadline(zk_timer *t);

ZK_API zk_request *zk_request_keep(zk_request *r) {
    zk_request *k;
    size_t extra;
    zk_str none = {NULL, 0};
    if (r->answered || r->heap) return NULL;
    extra = r->type.len + 1;
    k = (zk_request *)ZK_MALLOC(sizeof *k + extra);
    if (!k) {
        zk__fail(r, ZK_CODE_INTERNAL, "out of memory", none);
        return NULL;
    }
    memcpy(k, r, sizeof *k);
    memcpy((char *)(k + 1), r->type.ptr, r->type.len);
    ((char *)(k + 1))[r->type.len] = '\0';
    k->type.ptr = (const char *)(k + 1);
    k->payload.doc = NULL;
    k->payload.at = 0;
    k->heap = 1;
    k->prev = k->next = NULL;
    /* the writer: its own buffer, with whatever was written so far */
    zk_writer_init(&k->writer, NULL, 0);
    k->writer.codec = r->writer.codec;
    if (r->writer.len) {
        memcpy(&k->writer, &r->writer, sizeof k->writer);
        k->writer.buf = (char *)ZK_MALLOC(r->writer.len);
        k->writer.cap = k->writer.buf ? r->writer.len : 0;
        k->writer.owned = 1;
        if (k->writer.buf) memcpy(k->writer.buf, r->writer.buf, r->writer.len);
        else zk__w_fail(&k->writer, ZK_ENOMEM);
    }
    memset(&k->deadline, 0, sizeof k->deadline);
    if (r->member) {
        zk__member *m = r->member;
        uint32_t ms = r->app->opts.request_timeout_ms ? r->app->opts.request_timeout_ms : 30000;
        zk_timer_init(r->app->loop, &k->deadline, zk__kept_deadline, k);
        if (zk_timer_start(&k->deadline, ms, 0) < 0) {
            zk_writer_free(&k->writer);
            ZK_FREE(k);
            zk__fail(r, ZK_CODE_INTERNAL, "out of memory", none);
            return NULL;
        }
        k->next = m->kept;
        if (m->kept) m->kept->prev = k;
        m->kept = k;
        m->kept_count++;
    } else if (r->app) { /* its connection is gone already */
        k->next = r->app->orphans;
        if (r->app->orphans) r->app->orphans->prev = k;
        r->app->orphans = k;
    }
    r->answered = 1; /* the copy answers now */
    return k;
}

/* The server's deadline for a kept request: the client hears TIMEOUT; the
   copy waits for its owner's answer, which is then refused. */
ZK__PRIVATE void zk__kept_deadline(zk_timer *t) {
    zk_request *r = (zk_request *)t->data;
    zk_answer a;
    if (r->timed_out || !r->conn) return;
    a.ok = 0;
    a.code = zk_str_c(ZK_CODE_TIMEOUT);
    a.message = zk_str_c("the request was not answered in time");
    a.data.ptr = NULL;
    a.data.len = 0;
    zk__deliver(r, &a);
    r->timed_out = 1;
}

/* ---- dispatch: schema, middleware, handler ---- */

ZK__PRIVATE void zk__run(zk_request *r) {
    const zk__route *rt = r->route;
    size_t i;
    if (rt->input) {
        zk_writer *w = &r->writer;
        zk_write_object(w);
        zk_write_key(w, "issues");
        if (zk_schema_check(rt->input, r->payload, w)) {
            zk_write_end(w);
            zk__fail(r, ZK_CODE_INVALID_INPUT, "invalid input", zk_writer_result(w));
            return;
        }
        zk_writer_reset(w);
    }
    for (i = 0; i < r->router->middleware_count + rt->middleware_count; i++) {
        zk_middleware_fn fn = i < r->router->middleware_count
                                  ? r->router->middleware[i]
                                  : rt->middleware[i - r->router->middleware_count];
        int rc = fn(r);
        if (r->answered) return;
        if (rc) {
            zk_str none = {NULL, 0};
            zk__fail(r, ZK_CODE_INTERNAL, "middleware refused without an answer", none);
            return;
        }
    }
    rt->handler(r);
    if (!r->answered) zk__ok(r);
}

/* ---- caller ---- */

ZK_API int zk_router_call(zk_router *router, const char *type, const char *payload, size_t payload_len,
                          void *context, zk_answer_fn done, void *user) {
    zk_request r;
    zk_doc local_doc, *doc;
    zk_writer *shared = NULL;
    char *buf = NULL;
    int nested, rc = 0;
    if (!router || !type || !done || (payload_len && !payload)) return ZK_EINVAL;
    nested = router->busy;
    memset(&r, 0, sizeof r);
    r.router = router;
    r.context = context;
    r.done = done;
    r.user = user;
    r.type = zk_str_c(type);
    r.rpc_kind = ZK__RPC_STRING;
    memcpy(r.rpc_id, "call", 5);
    r.rpc_len = 4;
    if (nested) { /* a handler calls again: buffers of its own */
        doc = &local_doc;
        zk_doc_init(doc);
        zk_writer_init(&r.writer, NULL, 0);
    } else {
        doc = &router->doc;
        shared = &router->writer;
        r.writer = *shared;
        zk_writer_reset(&r.writer);
    }
    router->busy++;
    if (payload) {
        if (nested || payload_len + 1 > router->buf_cap) {
            buf = (char *)ZK_MALLOC(payload_len + 1);
            if (!buf) {
                rc = ZK_ENOMEM;
                goto out;
            }
            if (!nested) {
                ZK_FREE(router->buf);
                router->buf = buf;
                router->buf_cap = payload_len + 1;
            }
        } else {
            buf = router->buf;
        }
        memcpy(buf, payload, payload_len);
        if (zk_json_parse(doc, buf, payload_len) != ZK_OK) {
            zk_str none = {NULL, 0};
            zk__fail(&r, ZK_CODE_BAD_REQUEST, doc->error ? doc->error : "malformed payload", none);
            goto out;
        }
        r.payload = zk_doc_root(doc);
    }
    r.route = (const zk__route *)zk__map_get(&router->map, type, strlen(type));
    if (!r.route) {
        zk_str none = {NULL, 0};
        zk__fail(&r, ZK_CODE_NOT_FOUND, "unknown message type", none);
        goto out;
    }
    zk__run(&r);
out:
    router->busy--;
    if (nested) {
        zk_doc_free(doc);
        zk_writer_free(&r.writer);
        ZK_FREE(buf);
    } else {
        *shared = r.writer; /* the buffer, perhaps grown, goes back */
    }
    return rc;
}

/* ---- app: connections ---- */

ZK__PRIVATE void zk__kept_unlink(zk_request *r) {
    if (!r->app) return;
    if (r->prev) r->prev->next = r->next;
    else if (r->member && r->member->kept == r) r->member->kept = r->next;
    else if (r->app->orphans == r) r->app->orphans = r->next;
    if (r->next) r->next->prev = r->prev;
    if (r->member) r->member->kept_count--;
    r->prev = r->next = NULL;
}

ZK__PRIVATE void zk__app_close_slow(zk__member *m);

/* Sends text (an answer, a __pong) to one member's connection, counting
   it. Past the write limit it is lost, so the connection goes (4001), as
   for a room message: the client's calls then fail rather than wait. */
ZK__PRIVATE int zk__app_send_text(zk_app *app, zk_conn *c, zk_str s, int binary) {
    int rc = zk_conn_send(c, s.ptr, s.len, binary);
    if (rc >= 0) {
        app->stats.messages_out++;
        app->stats.bytes_out += s.len;
    } else if (rc != ZK_ECLOSED) {
        app->stats.dropped++;
        if (rc == ZK_EBACKPRESSURE && c->app) zk__app_close_slow((zk__member *)c->app);
    }
    return rc;
}

ZK__PRIVATE void zk__write_rpc_id(zk_writer *w, const zk_request *r) {
    zk_write_key(w, "rpcId");
    if (r->rpc_kind == ZK__RPC_INT) zk_write_int(w, (int64_t)strtoll(r->rpc_id, NULL, 10));
    else zk_write_str_n(w, r->rpc_id, r->rpc_len);
}

/* The envelope of an answer, or {NULL, 0} if it cannot be written. */
ZK__PRIVATE zk_str zk__encode_answer(zk_writer *w, const zk_request *r, const zk_answer *a) {
    zk_writer_reset(w);
    w->codec = (unsigned char)(r->member ? (int)r->member->codec : (int)ZK_CODEC_JSON);
    zk_write_object(w);
    zk_write_key(w, "type");
    if (a->ok) {
        zk_write_str(w, "__rpc_res");
        zk_write_key(w, "payload");
        zk__write_raw(w, a->data.ptr, a->data.len);
        zk__write_rpc_id(w, r);
    } else {
        zk_write_str(w, r->rpc_kind ? "__rpc_err" : "__error");
        if (r->rpc_kind) zk__write_rpc_id(w, r);
        zk_write_key(w, "error");
        zk_write_object(w);
        zk_write_key(w, "code");
        zk_write_str_n(w, a->code.ptr, a->code.len);
        zk_write_key(w, "message");
        zk_write_str_n(w, a->message.ptr, a->message.len);
        if (!r->rpc_kind && r->type.len) {
            zk_write_key(w, "ref");
            zk_write_str_n(w, r->type.ptr, r->type.len);
        }
        if (a->data.len) {
            zk_write_key(w, "data");
            zk__write_raw(w, a->data.ptr, a->data.len);
        }
        zk_write_end(w);
    }
    zk_write_end(w);
    return zk_writer_result(w);
}

ZK__PRIVATE void zk__send_answer(zk_request *r, const zk_answer *a) {
    zk_app *app = r->app;
    zk_conn *c = r->conn;
    zk_answer fb;
    zk_str out;
    if (a->ok && r->rpc_kind == ZK__RPC_NONE) { /* an event that went well */
        out.ptr = NULL;
    } else {
        out = zk__encode_answer(&app->envelope, r, a);
        if (!out.ptr) { /* too big, or out of memory: say so rather than lose it */
            fb.ok = 0;
            fb.code = zk_str_c(ZK_CODE_INTERNAL);
            fb.message = zk_str_c("the answer could not be encoded");
            fb.data.ptr = NULL;
            fb.data.len = 0;
            a = &fb;
            out = zk__encode_answer(&app->envelope, r, a);
        }
        if (!a->ok) app->stats.errors++;
        if (out.ptr) zk__app_send_text(app, c, out, app->envelope.codec == ZK_CODEC_MSGPACK);
    }
    if (r->is_auth && r->member) {
        if (a->ok) {
            r->member->authed = 1;
            zk_timer_stop(&r->member->auth_timer);
        } else {
            zk_conn_close(c, ZK_CLOSE_UNAUTHORIZED, "unauthorized");
        }
    }
}

ZK__PRIVATE void zk__base64url(const unsigned char *in, size_t len, char *out) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t i, o = 0;
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
    }
    out[o] = '\0';
}

/* 16 random bytes from the OS (through a small pool), so ids cannot be
   guessed from other ids; the loop's generator, which is not made for
   secrets, only if the OS has none to give. */
ZK__PRIVATE void zk__app_random(zk_app *app, unsigned char out[16]) {
    if (app->ids_left < 16) {
        size_t got = 0;
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            while (got < sizeof app->ids_pool) {
                ssize_t n = read(fd, app->ids_pool + got, sizeof app->ids_pool - got);
                if (n <= 0) break;
                got += (size_t)n;
            }
            close(fd);
        }
        if (got < sizeof app->ids_pool) zk_loop_random_bytes(app->loop, app->ids_pool + got, sizeof app->ids_pool - got);
        app->ids_left = sizeof app->ids_pool;
    }
    app->ids_left -= 16;
    memcpy(out, app->ids_pool + app->ids_left, 16);
    memset(app->ids_pool + app->ids_left, 0, 16);
}

ZK__PRIVATE void zk__auth_deadline(zk_timer *t) {
    zk__member *m = (zk__member *)t->data;
    zk_conn_close(m->conn, ZK_CLOSE_UNAUTHORIZED, "authentication timed out");
}

ZK__PRIVATE zk__member *zk__member_new(zk_app *app, zk_conn *c) {
    zk__member *m;
    unsigned char rnd[16];
    if (app->count == app->cap) {
        size_t cap = app->cap ? app->cap * 2 : 64;
        zk__member **a = (zk__member **)ZK_REALLOC(app->members, cap * sizeof *a);
        if (!a) return NULL;
        app->members = a;
        app->cap = cap;
    }
    m = (zk__member *)ZK_MALLOC(sizeof *m);
    if (!m) return NULL;
    memset(m, 0, sizeof *m);
    m->app = app;
    m->conn = c;
    do {
        zk__app_random(app, rnd);
        zk__base64url(rnd, 16, m->id);
    } while (zk__map_get(&app->ids, m->id, 22));
    if (zk__map_put(&app->ids, m->id, 22, m) < 0) {
        ZK_FREE(m);
        return NULL;
    }
    zk_timer_init(app->loop, &m->auth_timer, zk__auth_deadline, m);
    m->since = zk_loop_now(app->loop);
    m->refilled = m->since;
    m->tokens = (uint64_t)app->opts.rate_burst * 1000; /* a full bucket */
    m->index = app->count;
    app->members[app->count++] = m;
    m->authed = !app->opts.require_auth;
    c->app = m;
    return m;
}

ZK__PRIVATE void zk__room_leave_slot(zk__member *m, uint32_t slot);

ZK__PRIVATE void zk__member_free(zk__member *m) {
    zk_app *app = m->app;
    zk__member *last;
    while (m->room_count) zk__room_leave_slot(m, m->room_count - 1);
    ZK_FREE(m->rooms);
    while (m->kept) { /* their owners still answer them: they become orphans */
        zk_request *r = m->kept;
        zk__kept_unlink(r);
        zk_timer_stop(&r->deadline);
        r->conn = NULL;
        r->member = NULL;
        r->next = app->orphans;
        if (app->orphans) app->orphans->prev = r;
        app->orphans = r;
    }
    if (m->active) { /* a handler closed its own connection: its request lives on */
        m->active->member = NULL;
        m->active->conn = NULL;
    }
    zk_timer_stop(&m->auth_timer);
    zk__map_del(&app->ids, m->id, 22);
    last = app->members[--app->count];
    app->members[m->index] = last;
    last->index = m->index;
    if (m->conn) m->conn->app = NULL;
    ZK_FREE(m);
}

ZK__PRIVATE int zk__app_upgrade(zk_conn *c, const zk_http_request *req, const zk_ws_upgrade *up) {
    zk_app *app = (zk_app *)zk_server_data(zk_conn_server(c));
    zk__member *m;
    void *context = NULL;
    int status = 0, codec = up->protocol && zk_str_eq_nocase(zk_str_c(up->protocol), ZK_PROTOCOL_MSGPACK)
                                ? ZK_CODEC_MSGPACK : ZK_CODEC_JSON;
    if (app->path && (req->path.len != strlen(app->path) || memcmp(req->path.ptr, app->path, req->path.len))) {
        app->stats.refused++;
        return 404;
    }
    if (!(app->opts.codecs & (codec == ZK_CODEC_MSGPACK ? ZK_APP_MSGPACK : ZK_APP_JSON))) {
        static const char json_only[] = "this endpoint speaks JSON: offer the subprotocol zocket.json or none\n";
        static const char mp_only[] = "this endpoint speaks MessagePack: offer the subprotocol zocket.msgpack\n";
        app->stats.refused++;
        if (codec == ZK_CODEC_MSGPACK) zk_conn_respond(c, 400, NULL, 0, json_only, sizeof json_only - 1);
        else zk_conn_respond(c, 400, NULL, 0, mp_only, sizeof mp_only - 1);
        return 400;
    }
    m = zk__member_new(app, c);
    if (!m) {
        app->stats.refused++;
        return 503;
    }
    m->codec = (unsigned char)codec;
    if (app->opts.on_connect) status = app->opts.on_connect(c, req, &context);
    if (!status && c->state != ZK__C_HANDSHAKE) status = 400; /* it answered (or dropped) the request itself */
    if (status) {
        app->stats.refused++;
        zk__member_free(m);
        return status;
    }
    m->context = context;
    return 0;
}

ZK__PRIVATE void zk__app_open(zk_conn *c, const zk_http_request *req) {
    zk__member *m = (zk__member *)c->app;
    zk_app *app;
    (void)req;
    if (!m) return;
    app = m->app;
    app->stats.connections++;
    app->stats.accepted++;
    if (app->opts.require_auth)
        zk_timer_start(&m->auth_timer, app->opts.auth_timeout_ms ? app->opts.auth_timeout_ms : 10000, 0);
}

ZK__PRIVATE void zk__app_close(zk_conn *c, int code, zk_str reason, int clean) {
    zk__member *m = (zk__member *)c->app;
    zk_app *app;
    (void)reason;
    (void)clean;
    if (!m) return;
    app = m->app;
    if (c->opened) app->stats.connections--;
    if (app->opts.on_disconnect) app->opts.on_disconnect(c, m->context, code);
    zk__member_free(m);
}

/* {"type":"__pong"} with the ping's payload: browsers cannot send ping
   frames, so their clients ping with messages. */
ZK__PRIVATE void zk__app_pong(zk_app *app, zk_conn *c, zk_value payload) {
    zk_writer *w = &app->envelope;
    zk_str out;
    zk_writer_reset(w);
    w->codec = ((zk__member *)c->app)->codec;
    zk_write_object(w);
    zk_write_key(w, "type");
    zk_write_str(w, "__pong");
    if (zk_value_type(payload)) {
        zk_write_key(w, "payload");
        zk_write_value(w, payload);
    }
    zk_write_end(w);
    out = zk_writer_result(w);
    if (out.ptr) zk__app_send_text(app, c, out, w->codec == ZK_CODEC_MSGPACK);
}

/* Answers an envelope that never reached a route. */
ZK__PRIVATE void zk__app_reject(zk_request *r, const char *code, const char *message) {
    zk_str none = {NULL, 0};
    zk__fail(r, code, message, none);
}

ZK__PRIVATE void zk__app_message(zk_conn *c, zk_str data, int binary) {
    zk__member *m = (zk__member *)c->app;
    zk_app *app;
    zk_request r;
    zk_value root, v;
    int rc, limited = 0;
    char why[96];
    if (!m) return;
    app = m->app;
    app->stats.messages_in++;
    app->stats.bytes_in += data.len;
    memset(&r, 0, sizeof r);
    r.router = app->router;
    r.app = app;
    r.conn = c;
    r.member = m;
    if (app->opts.rate_per_sec != ZK_RATE_UNLIMITED) { /* the token bucket */
        uint64_t now = zk_loop_now(app->loop), cap = (uint64_t)app->opts.rate_burst * 1000;
        m->tokens += (now - m->refilled) * app->opts.rate_per_sec; /* per ms: rate / 1000 messages */
        if (m->tokens > cap) m->tokens = cap;
        m->refilled = now;
        if (m->tokens >= 1000) {
            m->tokens -= 1000;
            m->strikes = 0;
        } else if (++m->strikes > app->opts.rate_burst) {
            zk_conn_close(c, ZK_CLOSE_POLICY, "too many messages");
            return;
        } else {
            limited = 1; /* answered TOO_MANY_REQUESTS once it is read */
        }
    }
    if (binary != (m->codec == ZK_CODEC_MSGPACK)) {
        zk__app_reject(&r, ZK_CODE_BAD_REQUEST, binary ? "binary messages need the zocket.msgpack protocol"
                                                       : "text messages need the zocket.json protocol (or none)");
        return;
    }
    if (binary) {
        rc = zk_msgpack_parse(&app->doc, data.ptr, data.len);
    } else { /* the message is ours to change: it sits in the connection's buffer */
        rc = zk_json_parse(&app->doc, (char *)(uintptr_t)data.ptr, data.len);
    }
    if (rc == ZK_ETOOBIG) {
        zk__app_reject(&r, ZK_CODE_PAYLOAD_TOO_LARGE, "the message is nested too deeply or has too many values");
        return;
    }
    if (rc != ZK_OK) {
        if (rc == ZK_EPARSE)
            snprintf(why, sizeof why, "malformed %s: %s at byte %lu", binary ? "MessagePack" : "JSON",
                     app->doc.error, (unsigned long)app->doc.error_at);
        else
            snprintf(why, sizeof why, "the message could not be read");
        zk__app_reject(&r, rc == ZK_EPARSE ? ZK_CODE_BAD_REQUEST : ZK_CODE_INTERNAL, why);
        return;
    }
    root = zk_doc_root(&app->doc);
    if (zk_value_type(root) != ZK_TYPE_OBJECT) {
        zk__app_reject(&r, ZK_CODE_BAD_REQUEST, binary ? "a message is a MessagePack map" : "a message is a JSON object");
        return;
    }
    v = zk_value_get(root, "rpcId");
    switch (zk_value_type(v)) {
    case ZK_TYPE_NONE:
    case ZK_TYPE_NULL: break;
    case ZK_TYPE_STRING: {
        zk_str id = zk_value_str(v);
        if (id.len > ZK_RPC_ID_MAX) {
            zk__app_reject(&r, ZK_CODE_BAD_REQUEST, "rpcId is too long");
            return;
        }
        memcpy(r.rpc_id, id.ptr, id.len);
        r.rpc_len = id.len;
        r.rpc_kind = ZK__RPC_STRING;
        break;
    }
    case ZK_TYPE_INT:
        r.rpc_len = (size_t)snprintf(r.rpc_id, sizeof r.rpc_id, "%lld", (long long)zk_value_int(v, 0));
        r.rpc_kind = ZK__RPC_INT;
        break;
    default:
        zk__app_reject(&r, ZK_CODE_BAD_REQUEST, "rpcId must be a string or an integer");
        return;
    }
    v = zk_value_get(root, "type");
    if (zk_value_type(v) != ZK_TYPE_STRING || zk_value_len(v) == 0) {
        zk__app_reject(&r, ZK_CODE_BAD_REQUEST, "type must be a non-empty string");
        return;
    }
    if (zk_value_len(v) > ZK_ROUTE_MAX_NAME) {
        zk__app_reject(&r, ZK_CODE_NOT_FOUND, "unknown message type (the name is too long)");
        return;
    }
    r.type = zk_value_str(v);
    r.payload = zk_value_get(root, "payload");
    if (limited) {
        zk__app_reject(&r, ZK_CODE_TOO_MANY_REQUESTS, "too many messages: slow down");
        return;
    }
    if (r.type.len == 6 && memcmp(r.type.ptr, "__ping", 6) == 0) { /* a browser's heartbeat */
        if (r.rpc_kind == ZK__RPC_NONE) {
            zk__app_pong(app, c, r.payload);
        } else { /* a call like any other: its one answer, the payload back */
            r.writer = app->results;
            zk_writer_reset(&r.writer);
            r.writer.codec = m->codec;
            if (zk_value_type(r.payload)) zk_write_value(&r.writer, r.payload);
            zk__ok(&r);
            app->results = r.writer;
        }
        return;
    }
    r.is_auth = app->opts.require_auth && r.type.len == 6 && memcmp(r.type.ptr, "__auth", 6) == 0;
    if (!m->authed && !r.is_auth) { /* (authed is 1 without require_auth) */
        zk__app_reject(&r, ZK_CODE_UNAUTHORIZED, "authenticate first (__auth)");
        return;
    }
    r.route = (const zk__route *)zk__map_get(&app->router->map, r.type.ptr, r.type.len);
    if (!r.route) {
        zk__app_reject(&r, ZK_CODE_NOT_FOUND, "unknown message type");
        return;
    }
    if (app->opts.max_kept_per_conn && m->kept_count >= app->opts.max_kept_per_conn) {
        zk__app_reject(&r, ZK_CODE_TOO_MANY_REQUESTS, "too many requests in progress");
        return;
    }
    r.writer = app->results; /* lent for the request, given back after */
    zk_writer_reset(&r.writer);
    r.writer.codec = m->codec; /* the result is written in the client's codec */
    m->active = &r;
    zk__run(&r);
    if (r.member) r.member->active = NULL;
    app->results = r.writer;
}

ZK_API zk_app *zk_app_new(zk_loop *loop, const zk_app_opts *opts, int *err) {
    zk_app *app;
    zk_server_opts so;
    int dummy;
    if (!err) err = &dummy;
    *err = ZK_EINVAL;
    if (!loop || !opts || !opts->router) return NULL;
    so = opts->server;
    if (so.cb.on_open || so.cb.on_message || so.cb.on_close || so.cb.on_drain || so.cb.on_pong ||
        so.on_upgrade || so.on_http || so.data)
        return NULL;
    if (opts->require_auth && !zk__map_get(&opts->router->map, "__auth", 6)) return NULL;
    if (opts->path && opts->path[0] != '/') return NULL;
    if (opts->codecs & ~(ZK_APP_JSON | ZK_APP_MSGPACK)) return NULL;
    *err = ZK_ENOMEM;
    app = (zk_app *)ZK_MALLOC(sizeof *app);
    if (!app) return NULL;
    memset(app, 0, sizeof *app);
    app->loop = loop;
    app->router = opts->router;
    app->opts = *opts;
    if (!app->opts.codecs) app->opts.codecs = ZK_APP_JSON | ZK_APP_MSGPACK;
    if (!app->opts.rate_per_sec) app->opts.rate_per_sec = 10000;
    if (!app->opts.rate_burst) app->opts.rate_burst = app->opts.rate_per_sec;
    if (!so.protocols) { /* a client offering both gets MessagePack */
        if (app->opts.codecs & ZK_APP_MSGPACK) app->protocols[so.protocol_count++] = ZK_PROTOCOL_MSGPACK;
        if (app->opts.codecs & ZK_APP_JSON) app->protocols[so.protocol_count++] = ZK_PROTOCOL_JSON;
        so.protocols = app->protocols;
    }
    if (!app->opts.max_rooms_per_conn) app->opts.max_rooms_per_conn = 64;
    if (!app->opts.max_kept_per_conn) app->opts.max_kept_per_conn = 1024;
    if (opts->path) {
        size_t n = strlen(opts->path) + 1;
        app->path = (char *)ZK_MALLOC(n);
        if (!app->path) {
            ZK_FREE(app);
            return NULL;
        }
        memcpy(app->path, opts->path, n);
    }
    zk_doc_init(&app->doc);
    zk_writer_init(&app->results, NULL, 0);
    zk_writer_init(&app->envelope, NULL, 0);
    zk_writer_init(&app->payload, NULL, 0);
    zk_writer_init(&app->message, NULL, 0);
    zk_writer_init(&app->mp_copy, NULL, 0);
    zk_writer_init(&app->mp_out, NULL, 0);
    zk_writer_set_codec(&app->mp_out, ZK_CODEC_MSGPACK);
    so.cb.on_open = zk__app_open;
    so.cb.on_message = zk__app_message;
    so.cb.on_close = zk__app_close;
    so.on_upgrade = zk__app_upgrade;
    so.on_http = opts->on_http;
    so.data = app;
    app->server = zk_server_new(loop, &so);
    if (!app->server) {
        ZK_FREE(app->path);
        ZK_FREE(app);
        return NULL;
    }
    *err = 0;
    return app;
}

ZK_API void zk_app_free(zk_app *app) {
    if (!app) return;
    zk_broker_free(app->broker);
    zk_server_free(app->server); /* on_close for each: members go */
    while (app->count) zk__member_free(app->members[app->count - 1]);
    while (app->orphans) {
        zk_request *r = app->orphans;
        app->orphans = r->next;
        zk_writer_free(&r->writer);
        ZK_FREE(r);
    }
    ZK_FREE(app->members);
    zk__map_free(&app->ids);
    zk__map_free(&app->rooms);
    zk_doc_free(&app->doc);
    zk_writer_free(&app->results);
    zk_writer_free(&app->envelope);
    zk_writer_free(&app->payload);
    zk_writer_free(&app->message);
    zk_writer_free(&app->mp_copy);
    zk_writer_free(&app->mp_out);
    zk_doc_free(&app->mp_doc);
    zk_frame_free(app->frame);
    zk_frame_free(app->frame_mp);
    ZK_FREE(app->path);
    ZK_FREE(app);
}

ZK_API zk_server *zk_app_server(const zk_app *app) { return app->server; }
ZK_API void *zk_app_data(const zk_app *app) { return app->opts.data; }

ZK_API zk_app *zk_conn_app(const zk_conn *c) { return c && c->app ? ((zk__member *)c->app)->app : NULL; }
ZK_API const char *zk_conn_id(const zk_conn *c) { return c && c->app ? ((zk__member *)c->app)->id : ""; }
ZK_API void *zk_conn_context(const zk_conn *c) { return c && c->app ? ((zk__member *)c->app)->context : NULL; }
ZK_API int zk_conn_codec(const zk_conn *c) { return c && c->app ? (int)((zk__member *)c->app)->codec : (int)ZK_CODEC_JSON; }
ZK_API void zk_conn_set_context(zk_conn *c, void *context) {
    if (c && c->app) ((zk__member *)c->app)->context = context;
}

ZK_API zk_conn *zk_app_find(const zk_app *app, const char *id) {
    zk__member *m;
    if (!app || !id) return NULL;
    m = (zk__member *)zk__map_get(&app->ids, id, strlen(id));
    return m && m->conn && m->conn->opened ? m->conn : NULL;
}

/* ---- rooms ---- */

ZK__PRIVATE zk__member *zk__open_member(const zk_conn *c) {
    zk__member *m = c ? (zk__member *)c->app : NULL;
    return m && c->state == ZK__C_OPEN ? m : NULL;
}

ZK__PRIVATE int zk__room_name_ok(const char *room, size_t *len) {
    if (!room) return 0;
    *len = strlen(room);
    return *len && *len <= ZK_ROOM_MAX_NAME && zk_utf8_valid(room, *len);
}

ZK__PRIVATE int zk__member_slot(const zk__member *m, const char *room, size_t len) {
    uint32_t i;
    for (i = 0; i < m->room_count; i++) {
        const zk__room *rm = m->rooms[i].room;
        if (rm->name_len == len && memcmp(rm->name, room, len) == 0) return (int)i;
    }
    return -1;
}

ZK_API int zk_room_join(zk_conn *c, const char *room) {
    zk__member *m = zk__open_member(c);
    zk_app *app;
    zk__room *rm;
    size_t len;
    if (!m || !zk__room_name_ok(room, &len)) return ZK_EINVAL;
    app = m->app;
    rm = (zk__room *)zk__map_get(&app->rooms, room, len);
    if (rm && zk__member_slot(m, room, len) >= 0) return 1;
    if (m->room_count >= app->opts.max_rooms_per_conn) return ZK_ENOSPACE;
    if (m->room_count == m->room_cap) {
        uint32_t cap = m->room_cap ? m->room_cap * 2 : 4;
        zk__membership *a = (zk__membership *)ZK_REALLOC(m->rooms, cap * sizeof *a);
        if (!a) return ZK_ENOMEM;
        m->rooms = a;
        m->room_cap = cap;
    }
    if (!rm) {
        rm = (zk__room *)ZK_MALLOC(sizeof *rm + len + 1);
        if (!rm) return ZK_ENOMEM;
        memset(rm, 0, sizeof *rm);
        rm->name = (char *)(rm + 1);
        memcpy(rm->name, room, len + 1);
        rm->name_len = len;
        if (zk__map_put(&app->rooms, rm->name, len, rm) < 0) {
            ZK_FREE(rm);
            return ZK_ENOMEM;
        }
        if (app->broker && zk__broker_room(app->broker, rm->name, len, 1) < 0) {
            zk__map_del(&app->rooms, rm->name, len);
            ZK_FREE(rm);
            return ZK_ENOMEM;
        }
    }
    if (rm->count == rm->cap) {
        uint32_t cap = rm->cap ? rm->cap * 2 : 4;
        zk__seat *a = (zk__seat *)ZK_REALLOC(rm->seats, cap * sizeof *a);
        if (!a) {
            if (!rm->count) {
                if (app->broker) zk__broker_room(app->broker, rm->name, len, 0);
                zk__map_del(&app->rooms, rm->name, len);
                ZK_FREE(rm);
            }
            return ZK_ENOMEM;
        }
        rm->seats = a;
        rm->cap = cap;
    }
    rm->seats[rm->count].member = m;
    rm->seats[rm->count].slot = m->room_count;
    rm->seats[rm->count].joined = zk_loop_now(app->loop);
    m->rooms[m->room_count].room = rm;
    m->rooms[m->room_count].seat = rm->count;
    rm->count++;
    m->room_count++;
    return 0;
}

/* Takes m out of the room in its slot; an empty room goes. */
ZK__PRIVATE void zk__room_leave_slot(zk__member *m, uint32_t slot) {
    zk__room *rm = m->rooms[slot].room;
    uint32_t seat = m->rooms[slot].seat;
    /* the room's last seat moves into ours */
    rm->seats[seat] = rm->seats[--rm->count];
    rm->seats[seat].member->rooms[rm->seats[seat].slot].seat = seat;
    /* and m's last room into this slot */
    m->rooms[slot] = m->rooms[--m->room_count];
    if (slot < m->room_count) {
        zk__membership *moved = &m->rooms[slot];
        moved->room->seats[moved->seat].slot = slot;
    }
    if (!rm->count) {
        if (m->app->broker) zk__broker_room(m->app->broker, rm->name, rm->name_len, 0);
        zk__map_del(&m->app->rooms, rm->name, rm->name_len);
        ZK_FREE(rm->seats);
        ZK_FREE(rm);
    } else if (rm->count * 4 < rm->cap && rm->cap > 16) { /* a room that emptied gives memory back */
        zk__seat *a = (zk__seat *)ZK_REALLOC(rm->seats, (rm->cap / 2) * sizeof *a);
        if (a) {
            rm->seats = a;
            rm->cap /= 2;
        }
    }
    if (!m->room_count) {
        ZK_FREE(m->rooms);
        m->rooms = NULL;
        m->room_cap = 0;
    }
}

ZK_API int zk_room_leave(zk_conn *c, const char *room) {
    zk__member *m = c ? (zk__member *)c->app : NULL;
    size_t len;
    int slot;
    if (!m || !zk__room_name_ok(room, &len)) return ZK_EINVAL;
    slot = zk__member_slot(m, room, len);
    if (slot < 0) return ZK_ENOTFOUND;
    zk__room_leave_slot(m, (uint32_t)slot);
    return 0;
}

ZK_API int zk_room_has(const zk_conn *c, const char *room) {
    const zk__member *m = c ? (const zk__member *)c->app : NULL;
    size_t len;
    if (!m || !zk__room_name_ok(room, &len)) return 0;
    return zk__member_slot(m, room, len) >= 0;
}

ZK_API size_t zk_room_list(const zk_conn *c, const char **out, size_t cap) {
    const zk__member *m = c ? (const zk__member *)c->app : NULL;
    size_t i;
    if (!m) return 0;
    for (i = 0; i < m->room_count && i < cap; i++) out[i] = m->rooms[i].room->name;
    return m->room_count;
}

ZK_API size_t zk_room_members(const zk_app *app, const char *room, zk_conn **out, size_t cap) {
    const zk__room *rm;
    size_t i, len;
    if (!app || !zk__room_name_ok(room, &len)) return 0;
    rm = (const zk__room *)zk__map_get(&app->rooms, room, len);
    if (!rm) return 0;
    for (i = 0; i < rm->count && i < cap; i++) out[i] = rm->seats[i].member->conn;
    return rm->count;
}

ZK_API size_t zk_app_rooms(const zk_app *app, const char **out, size_t cap) {
    size_t i, n = 0;
    if (!app) return 0;
    for (i = 0; i < app->rooms.cap; i++)
        if (app->rooms.slots[i].val) {
            if (n < cap) out[n] = ((const zk__room *)app->rooms.slots[i].val)->name;
            n++;
        }
    return n;
}

/* ---- sending ---- */

ZK_API zk_writer *zk_app_message(zk_app *app, const char *type) {
    size_t len = type ? strlen(type) : 0;
    zk_writer_reset(&app->payload);
    app->message_started = 0;
    if (!len || len > ZK_ROUTE_MAX_NAME || !zk_utf8_valid(type, len)) {
        zk__w_fail(&app->payload, ZK_EINVAL); /* zk_app_send will say so */
        return &app->payload;
    }
    memcpy(app->message_type, type, len + 1);
    app->message_started = 1;
    return &app->payload;
}

/* Encodes a message (payload: JSON text, or none when empty) as one server
   frame in app->frame. */
/* A frame of len bytes in *fp (capacity *capp), reused when no queue holds it. */
ZK__PRIVATE zk_frame *zk__app_frame_buf(zk_frame **fp, size_t *capp, zk_str msg, int binary) {
    unsigned char header[14];
    size_t hlen = zk_ws_frame_header(header, binary ? ZK_WS_BINARY : ZK_WS_TEXT, 1, msg.len, NULL);
    size_t need = sizeof(zk_frame) + hlen + msg.len;
    zk_frame *f;
    if (*fp && (*fp)->refs > 1) { /* queues still send it: theirs now */
        zk_frame_free(*fp);
        *fp = NULL;
        *capp = 0;
    }
    if (!*fp || need > *capp) {
        f = (zk_frame *)ZK_REALLOC(*fp, need);
        if (!f) return NULL;
        *fp = f;
        *capp = need;
    }
    f = *fp;
    f->refs = 1;
    f->size = hlen + msg.len;
    f->header = hlen;
    f->binary = binary;
    memcpy(ZK__FRAME_BYTES(f), header, hlen);
    memcpy(ZK__FRAME_BYTES(f) + hlen, msg.ptr, msg.len);
    return f;
}

/* The MessagePack frame of the message app->frame holds, made once per
   message for however many MessagePack recipients: the payload (JSON, the
   canonical form) is read again and written as MessagePack. */
ZK__PRIVATE const zk_frame *zk__app_frame_mp(zk_app *app) {
    zk_writer *w = &app->mp_out;
    zk_str msg;
    if (app->frame_mp_state) return app->frame_mp_state > 0 ? app->frame_mp : NULL;
    app->frame_mp_state = -1;
    zk_writer_reset(w);
    zk_write_object(w);
    zk_write_key(w, "type");
    zk_write_str_n(w, app->frame_type.ptr, app->frame_type.len);
    if (app->frame_payload.ptr) {
        zk_writer_reset(&app->mp_copy);
        zk__w_put(&app->mp_copy, app->frame_payload.ptr, app->frame_payload.len);
        if (app->mp_copy.err ||
            zk_json_parse(&app->mp_doc, app->mp_copy.buf, app->mp_copy.len) != ZK_OK)
            return NULL;
        zk_write_key(w, "payload");
        zk_write_value(w, zk_doc_root(&app->mp_doc));
    }
    zk_write_end(w);
    msg = zk_writer_result(w);
    if (!msg.ptr || !zk__app_frame_buf(&app->frame_mp, &app->frame_mp_cap, msg, 1)) return NULL;
    app->frame_mp_state = 1;
    return app->frame_mp;
}

ZK__PRIVATE int zk__app_frame_of(zk_app *app, zk_str type, zk_str payload) {
    zk_writer *w = &app->message;
    zk_str msg;
    app->frame_type = type;
    app->frame_payload = payload;
    app->frame_mp_state = 0;
    zk_writer_reset(w);
    zk_write_object(w);
    zk_write_key(w, "type");
    zk_write_str_n(w, type.ptr, type.len);
    if (payload.ptr) {
        zk_write_key(w, "payload");
        zk__write_raw(w, payload.ptr, payload.len);
    }
    zk_write_end(w);
    msg = zk_writer_result(w);
    if (!msg.ptr) return w->err == ZK_ENOMEM ? ZK_ENOMEM : ZK_EINVAL;
    return zk__app_frame_buf(&app->frame, &app->frame_cap, msg, 0) ? 0 : ZK_ENOMEM;
}

/* The started message. */
ZK__PRIVATE int zk__app_frame(zk_app *app) {
    zk_str payload = zk_writer_result(&app->payload), type;
    if (!app->message_started || app->payload.err || (app->payload.len && !payload.ptr)) return ZK_EINVAL;
    type.ptr = app->message_type;
    type.len = strlen(app->message_type);
    return zk__app_frame_of(app, type, payload);
}

ZK__PRIVATE void zk__app_close_slow(zk__member *m) {
    m->app->stats.slow_closed++;
    zk_conn_close(m->conn, ZK_CLOSE_SLOW_CONSUMER, "slow consumer");
}

/* One recipient: at most once per send, by the delivery policy. */
ZK__PRIVATE int zk__deliver_to(zk_app *app, zk__member *m, const zk_target *to, const zk_frame *f) {
    zk_conn *c = m->conn;
    int rc;
    if (m->mark == app->mark || c == to->except) return 0;
    m->mark = app->mark;
    if (c->state != ZK__C_OPEN || !m->authed) return 0;
    if (m->codec == ZK_CODEC_MSGPACK && !(f = zk__app_frame_mp(app))) {
        app->stats.dropped++; /* cannot happen for a payload the app wrote */
        return 0;
    }
    if (to->delivery != ZK_DELIVER_QUEUE && c->wq_bytes >= c->high_water) { /* backpressure now */
        app->stats.dropped++;
        if (to->delivery == ZK_DELIVER_CLOSE_SLOW) zk__app_close_slow(m);
        return 0;
    }
    rc = zk_conn_send_frame(c, f);
    if (rc < 0) {
        app->stats.dropped++;
        /* past the write limit: a member that misses a message and stays
           connected never learns it; closed, it reconnects and catches up */
        if (rc == ZK_EBACKPRESSURE) zk__app_close_slow(m);
        return 0;
    }
    app->stats.messages_out++;
    app->stats.bytes_out += f->size - f->header;
    return 1;
}

ZK_API int zk_app_send(zk_app *app, const zk_target *to) {
    const zk_frame *f;
    size_t i, j;
    int n = 0, rc;
    if (!app || !to) return ZK_EINVAL;
    rc = zk__app_frame(app);
    if (rc < 0) return rc;
    if (app->broker) { /* published first: refused (queue full), it goes nowhere */
        rc = zk__broker_publish(app->broker, to);
        if (rc < 0) return rc;
    }
    f = app->frame;
    app->mark++;
    if (to->all) {
        for (i = 0; i < app->count; i++) n += zk__deliver_to(app, app->members[i], to, f);
        return n;
    }
    for (i = 0; i < to->conn_count; i++) {
        zk__member *m = to->conns[i] ? (zk__member *)to->conns[i]->app : NULL;
        if (m && m->app == app) n += zk__deliver_to(app, m, to, f);
    }
    for (i = 0; i < to->id_count; i++) {
        zk__member *m = to->ids[i] ? (zk__member *)zk__map_get(&app->ids, to->ids[i], strlen(to->ids[i])) : NULL;
        if (m) n += zk__deliver_to(app, m, to, f);
    }
    for (i = 0; i < to->room_count; i++) {
        size_t len;
        zk__room *rm;
        if (!zk__room_name_ok(to->rooms[i], &len)) continue;
        rm = (zk__room *)zk__map_get(&app->rooms, to->rooms[i], len);
        /* closing slow consumers does not change membership now */
        for (j = 0; rm && j < rm->count; j++) n += zk__deliver_to(app, rm->seats[j].member, to, f);
    }
    return n;
}

ZK_API void zk_app_get_stats(const zk_app *app, zk_app_stats *out) { *out = app->stats; }
/* >>client implementation: states, backoff, heartbeat, calls, queue, cache - */

/* Someone waiting for a call's answer, until its own deadline: identical
   calls share one request, not their timeouts. */
typedef struct zk__waiter {
    struct zk__waiter *next;
    struct zk__msg *msg;
    zk_result_fn done;
    void *user;
    void (*undo)(zk_client *client, void *user);
    zk_timer timer;
} zk__waiter;

/* A message on its way: an event, or a call (rpc set) waiting in the
   offline queue or for its answer. */
typedef struct zk__msg {
    struct zk__msg *prev, *next;  /* the queue, or the in-flight list */
    char *json;                   /* the envelope as sent */
    size_t len;
    int is_call, queued;
    /* calls */
    zk_client *client;
    char rpc[24];                 /* the rpcId, a decimal string */
    char *key;                    /* "type payload" (dedup and cache) */
    size_t type_len;
    int idempotent, cacheable, dedup, background, is_auth;
    uint32_t ttl_ms;
    zk_timer timer;
    zk__waiter *waiters;
} zk__msg;

typedef struct zk__listener {
    struct zk__listener *next;
    char *type;
    zk_listener_fn fn;            /* NULL: taken off during a dispatch, freed after it */
    void *user;
} zk__listener;

typedef struct zk__cached {
    struct zk__cached *next;
    char *key;
    size_t type_len;
    char *result;                 /* JSON */
    size_t result_len;
    uint64_t expires;
} zk__cached;

typedef struct zk__rejoin {
    struct zk__rejoin *next;
    char *key;                    /* as a call's */
    size_t type_len;
    zk_result_fn done;
    void *user;
} zk__rejoin;

struct zk_client {
    zk_loop *loop;
    zk_client_opts opts;
    char *url;                    /* with the params in its query */
    char *auth;                   /* canonical auth payload, or NULL */
    zk_http_header *headers;      /* copied */
    char *strings;
    zk_conn *conn;
    int state, opened_once, authed, closing, dead, final_code;
    int last_code;
    char last_error[128];
    uint32_t attempts;
    int spread_next;              /* the next attempt follows a 1001 / 1012 */
    zk_timer retry, stable, ping, pong;
    zk__msg *queue, *queue_tail;  /* waiting for the connection */
    size_t queued, queued_bytes;
    size_t pending;               /* waiters: calls that have not had their result */
    zk__msg *flight;              /* calls sent, waiting for answers */
    zk__map rpcs;                 /* rpcId -> call in flight */
    zk__map inflight;             /* key -> call, for dedup */
    zk__cached *cache;
    zk__rejoin *rejoins;
    zk__listener *listeners;
    uint64_t next_rpc, unhandled;
    const char *refused;          /* why we closed the connection ourselves, or NULL */
    const char *protos[8];        /* zocket.msgpack, then opts.protocols (8: the connection's limit) */
    int dispatching;              /* listeners running: zk_client_off only marks */
    zk_doc doc, scratch;
    zk_writer w;                  /* JSON: keys, the cache, JSON envelopes */
    zk_writer mw;                 /* MessagePack envelopes */
    char *buf;                    /* for parsing copies */
    size_t buf_cap;
};

ZK_API const char *zk_client_state_name(int state) {
    switch (state) {
    case ZK_CLIENT_CONNECTING: return "connecting";
    case ZK_CLIENT_OPEN: return "open";
    case ZK_CLIENT_RECONNECTING: return "reconnecting";
    case ZK_CLIENT_CLOSED: return "closed";
    default: return "unknown";
    }
}

ZK__PRIVATE char *zk__strndup(const char *s, size_t n) {
    char *p = (char *)ZK_MALLOC(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---- canonical payloads: members sorted by key, no white space ---- */

typedef struct zk__member_ref {
    zk_str key;
    zk_value value;
} zk__member_ref;

ZK__PRIVATE int zk__member_cmp(const void *a, const void *b) {
    const zk__member_ref *x = (const zk__member_ref *)a, *y = (const zk__member_ref *)b;
    size_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
    int c = n ? memcmp(x->key.ptr, y->key.ptr, n) : 0;
    if (c) return c;
    return x->key.len < y->key.len ? -1 : x->key.len > y->key.len;
}

ZK__PRIVATE void zk__write_canonical(zk_writer *w, zk_value v) {
    int t = zk_value_type(v);
    if (t == ZK_TYPE_OBJECT) {
        size_t n = zk_value_len(v), i = 0;
        zk__member_ref *m = n ? (zk__member_ref *)ZK_MALLOC(n * sizeof *m) : NULL;
        zk_value e;
        if (n && !m) {
            zk__w_fail(w, ZK_ENOMEM);
            return;
        }
        for (e = zk_value_first(v); zk_value_type(e) && i < n; e = zk_value_next(e), i++) {
            m[i].key = zk_value_key(e);
            m[i].value = e;
        }
        n = i; /* the members read: all of them, in a parsed document */
        if (n > 1) qsort(m, n, sizeof *m, zk__member_cmp);
        zk_write_object(w);
        for (i = 0; i < n; i++) {
            zk_write_key_n(w, m[i].key.ptr, m[i].key.len);
            zk__write_canonical(w, m[i].value);
        }
        zk_write_end(w);
        ZK_FREE(m);
    } else if (t == ZK_TYPE_ARRAY) {
        zk_value e;
        zk_write_array(w);
        for (e = zk_value_first(v); zk_value_type(e); e = zk_value_next(e)) zk__write_canonical(w, e);
        zk_write_end(w);
    } else {
        zk_write_value(w, v);
    }
}

/* Parses a copy of json[0..len) into doc; the copy lives in c->buf. */
ZK__PRIVATE int zk__client_parse(zk_client *c, zk_doc *doc, const char *json, size_t len) {
    if (len + 1 > c->buf_cap) {
        char *b = (char *)ZK_REALLOC(c->buf, len + 1);
        if (!b) return ZK_ENOMEM;
        c->buf = b;
        c->buf_cap = len + 1;
    }
    if (len) memcpy(c->buf, json, len);
    return zk_json_parse(doc, c->buf, len);
}

/* "type canonical-payload" into a new string; type_len says where the type
   ends. ZK_EINVAL for a bad type or payload. */
ZK__PRIVATE int zk__client_key(zk_client *c, const char *type, const char *payload, size_t plen, char **out,
                               size_t *type_len) {
    size_t tlen = type ? strlen(type) : 0;
    zk_str canon = {"", 0};
    int rc;
    if (!tlen || tlen > ZK_ROUTE_MAX_NAME || !zk_utf8_valid(type, tlen) || (plen && !payload)) return ZK_EINVAL;
    zk_writer_reset(&c->w);
    if (payload) {
        rc = zk__client_parse(c, &c->scratch, payload, plen);
        if (rc != ZK_OK) return rc == ZK_ENOMEM ? ZK_ENOMEM : ZK_EINVAL;
        zk__write_canonical(&c->w, zk_doc_root(&c->scratch));
        canon = zk_writer_result(&c->w);
        if (!canon.ptr) return c->w.err == ZK_ENOMEM ? ZK_ENOMEM : ZK_EINVAL;
    }
    *out = (char *)ZK_MALLOC(tlen + 1 + canon.len + 1);
    if (!*out) return ZK_ENOMEM;
    memcpy(*out, type, tlen);
    (*out)[tlen] = ' ';
    if (canon.len) memcpy(*out + tlen + 1, canon.ptr, canon.len);
    (*out)[tlen + 1 + canon.len] = '\0';
    *type_len = tlen;
    return 0;
}

/* The envelope of key (type and canonical payload) with rpc (NULL: an
   event) into a new string. */
ZK__PRIVATE char *zk__client_envelope(zk_client *c, const char *key, size_t type_len, const char *rpc, size_t *len) {
    const char *payload = key + type_len + 1;
    size_t plen = strlen(payload);
    zk_writer *w = c->opts.codec == ZK_CODEC_MSGPACK ? &c->mw : &c->w;
    zk_str out;
    if (plen && w == &c->mw && zk__client_parse(c, &c->scratch, payload, plen) != ZK_OK) return NULL;
    zk_writer_reset(w);
    zk_write_object(w);
    zk_write_key(w, "type");
    zk_write_str_n(w, key, type_len);
    if (plen) {
        zk_write_key(w, "payload");
        if (w == &c->mw) zk_write_value(w, zk_doc_root(&c->scratch)); /* the canonical JSON, as MessagePack */
        else zk__write_raw(w, payload, plen);
    }
    if (rpc) {
        zk_write_key(w, "rpcId");
        zk_write_str(w, rpc);
    }
    zk_write_end(w);
    out = zk_writer_result(w);
    if (!out.ptr) return NULL;
    *len = out.len;
    return zk__strndup(out.ptr, out.len);
}

/* ---- states ---- */

ZK__PRIVATE void zk__client_state(zk_client *c, int state, int code, const char *reason) {
    c->last_code = code;
    snprintf(c->last_error, sizeof c->last_error, "%s", reason ? reason : "");
    if (c->state == state) return;
    c->state = state;
    if (c->opts.on_state) c->opts.on_state(c, state, code, c->last_error);
}

ZK_API int zk_client_state(const zk_client *c) { return c->state; }
ZK_API const char *zk_client_error(const zk_client *c, int *code) {
    if (code) *code = c->last_code;
    return c->last_error;
}
ZK_API uint32_t zk_client_attempts(const zk_client *c) { return c->attempts; }
ZK_API void *zk_client_data(const zk_client *c) { return c->opts.data; }
ZK_API zk_loop *zk_client_loop(const zk_client *c) { return c->loop; }
ZK_API uint64_t zk_client_unhandled(const zk_client *c) { return c->unhandled; }

/* ---- messages and results ---- */

ZK__PRIVATE void zk__msg_free(zk__msg *m) {
    zk__waiter *w = m->waiters;
    while (w) {
        zk__waiter *next = w->next;
        zk_timer_stop(&w->timer);
        m->client->pending--;
        ZK_FREE(w);
        w = next;
    }
    zk_timer_stop(&m->timer);
    ZK_FREE(m->json);
    ZK_FREE(m->key);
    ZK_FREE(m);
}

ZK__PRIVATE void zk__queue_unlink(zk_client *c, zk__msg *m) {
    if (m->prev) m->prev->next = m->next;
    else c->queue = m->next;
    if (m->next) m->next->prev = m->prev;
    else c->queue_tail = m->prev;
    m->prev = m->next = NULL;
    m->queued = 0;
    c->queued--;
    c->queued_bytes -= m->len;
}

ZK__PRIVATE void zk__queue_push(zk_client *c, zk__msg *m, int front) {
    m->queued = 1;
    if (front) {
        m->prev = NULL;
        m->next = c->queue;
        if (c->queue) c->queue->prev = m;
        else c->queue_tail = m;
        c->queue = m;
    } else {
        m->next = NULL;
        m->prev = c->queue_tail;
        if (c->queue_tail) c->queue_tail->next = m;
        else c->queue = m;
        c->queue_tail = m;
    }
    c->queued++;
    c->queued_bytes += m->len;
}

ZK__PRIVATE void zk__flight_unlink(zk_client *c, zk__msg *m) {
    if (m->prev) m->prev->next = m->next;
    else if (c->flight == m) c->flight = m->next;
    if (m->next) m->next->prev = m->prev;
    m->prev = m->next = NULL;
}

/* Takes a call out of wherever it is (queue, flight, the tables). */
ZK__PRIVATE void zk__call_detach(zk_client *c, zk__msg *m) {
    if (m->queued) zk__queue_unlink(c, m);
    else zk__flight_unlink(c, m);
    if (m->rpc[0]) zk__map_del_value(&c->rpcs, m->rpc, strlen(m->rpc), m);
    if (m->dedup && m->key) zk__map_del_value(&c->inflight, m->key, strlen(m->key), m);
    zk_timer_stop(&m->timer);
}

/* Gives every waiter of m the result, then frees m (detached already). */
ZK__PRIVATE void zk__call_finish(zk_client *c, zk__msg *m, const zk_result *r) {
    zk__waiter *w = m->waiters;
    m->waiters = NULL;
    while (w) {
        zk__waiter *next = w->next;
        zk_timer_stop(&w->timer);
        if (!r->ok && w->undo) w->undo(c, w->user);
        c->pending--;
        if (w->done) w->done(c, r, w->user);
        ZK_FREE(w);
        w = next;
    }
    zk__msg_free(m);
}

ZK__PRIVATE void zk__call_fail(zk_client *c, zk__msg *m, const char *code, const char *message) {
    zk_result r;
    memset(&r, 0, sizeof r);
    r.code = zk_str_c(code);
    r.message = zk_str_c(message);
    zk__call_detach(c, m);
    zk__call_finish(c, m, &r);
}

ZK__PRIVATE void zk__call_timeout(zk_timer *t) {
    zk__msg *m = (zk__msg *)t->data;
    zk_client *c = m->client;
    if (m->is_auth) { /* the server never answered __auth: try another connection */
        zk__call_detach(c, m);
        zk__msg_free(m);
        c->dead = 1;
        if (c->conn) zk_conn_abort(c->conn);
        return;
    }
    zk__call_fail(c, m, ZK_CODE_TIMEOUT, "no answer in time");
}

/* Sends m now if open (0), else queues it (front or back); ZK_ENOSPACE
   when the queue is full. */
ZK__PRIVATE int zk__client_send(zk_client *c, zk__msg *m, int front) {
    size_t qmax = c->opts.queue_max ? c->opts.queue_max : 1024;
    size_t qbytes = c->opts.queue_max_bytes ? c->opts.queue_max_bytes : (size_t)1 << 20;
    if (c->state == ZK_CLIENT_OPEN && c->conn) {
        int rc = zk_conn_send(c->conn, m->json, m->len, c->opts.codec == ZK_CODEC_MSGPACK);
        if (rc < 0) return rc;
        if (m->is_call) {
            m->next = c->flight;
            m->prev = NULL;
            if (c->flight) c->flight->prev = m;
            c->flight = m;
        } else {
            zk__msg_free(m);
        }
        return 0;
    }
    if (!front && (c->queued >= qmax || c->queued_bytes + m->len > qbytes)) return ZK_ENOSPACE;
    zk__queue_push(c, m, front);
    return 0;
}

/* A new call message for key; not yet sent. timeout_ms 0: no deadline of
   its own (its waiters have theirs). */
ZK__PRIVATE zk__msg *zk__call_new(zk_client *c, char *key, size_t type_len, uint32_t timeout_ms) {
    zk__msg *m = (zk__msg *)ZK_MALLOC(sizeof *m);
    if (!m) return NULL;
    memset(m, 0, sizeof *m);
    m->client = c;
    m->is_call = 1;
    m->key = key;
    m->type_len = type_len;
    snprintf(m->rpc, sizeof m->rpc, "%llu", (unsigned long long)++c->next_rpc);
    m->json = zk__client_envelope(c, key, type_len, m->rpc, &m->len);
    if (!m->json || zk__map_put(&c->rpcs, m->rpc, strlen(m->rpc), m) < 0) {
        ZK_FREE(m->json);
        ZK_FREE(m);
        return NULL;
    }
    zk_timer_init(c->loop, &m->timer, zk__call_timeout, m);
    if (timeout_ms && zk_timer_start(&m->timer, timeout_ms, 0) < 0) {
        zk__map_del(&c->rpcs, m->rpc, strlen(m->rpc));
        ZK_FREE(m->json);
        ZK_FREE(m);
        return NULL;
    }
    return m;
}

/* A waiter's deadline: it alone gets TIMEOUT; a request nobody waits for
   any more is dropped (its late answer with it). */
ZK__PRIVATE void zk__waiter_timeout(zk_timer *t) {
    zk__waiter *w = (zk__waiter *)t->data, **p;
    zk__msg *m = w->msg;
    zk_client *c = m->client;
    zk_result r;
    for (p = &m->waiters; *p && *p != w; p = &(*p)->next) {}
    if (*p) *p = w->next;
    c->pending--;
    if (!m->waiters && !m->background) {
        zk__call_detach(c, m);
        zk__msg_free(m);
    }
    memset(&r, 0, sizeof r);
    r.code = zk_str_c(ZK_CODE_TIMEOUT);
    r.message = zk_str_c("no answer in time");
    if (w->undo) w->undo(c, w->user);
    if (w->done) w->done(c, &r, w->user);
    ZK_FREE(w);
}

ZK__PRIVATE int zk__add_waiter(zk__msg *m, zk_result_fn done, void *user, void (*undo)(zk_client *, void *),
                               uint32_t timeout_ms) {
    zk_client *c = m->client;
    zk__waiter *w = (zk__waiter *)ZK_MALLOC(sizeof *w), **tail = &m->waiters;
    if (!w) return ZK_ENOMEM;
    w->next = NULL;
    w->msg = m;
    w->done = done;
    w->user = user;
    w->undo = undo;
    zk_timer_init(c->loop, &w->timer, zk__waiter_timeout, w);
    if (zk_timer_start(&w->timer, timeout_ms ? timeout_ms : c->opts.call_timeout_ms ? c->opts.call_timeout_ms : 10000,
                       0) < 0) {
        ZK_FREE(w);
        return ZK_ENOMEM;
    }
    while (*tail) tail = &(*tail)->next;
    *tail = w;
    c->pending++;
    return 0;
}

ZK__PRIVATE zk__cached *zk__cache_find(zk_client *c, const char *key) {
    zk__cached *e;
    for (e = c->cache; e; e = e->next)
        if (strcmp(e->key, key) == 0) return e;
    return NULL;
}

ZK__PRIVATE void zk__cache_remove(zk_client *c, zk__cached *e) {
    zk__cached **p = &c->cache;
    while (*p && *p != e) p = &(*p)->next;
    if (*p) *p = e->next;
    ZK_FREE(e->key);
    ZK_FREE(e->result);
    ZK_FREE(e);
}

/* Answers from the cache: 1 when it did. */
ZK__PRIVATE int zk__cache_answer(zk_client *c, const char *key, zk_result_fn done, void *user) {
    zk__cached *e = zk__cache_find(c, key);
    zk_doc doc;
    zk_result r;
    char *copy;
    if (!e) return 0;
    if (zk_loop_now(c->loop) >= e->expires) {
        zk__cache_remove(c, e);
        return 0;
    }
    copy = zk__strndup(e->result, e->result_len);
    if (!copy) return 0;
    zk_doc_init(&doc);
    if (zk_json_parse(&doc, copy, e->result_len) != ZK_OK) {
        zk_doc_free(&doc);
        ZK_FREE(copy);
        return 0;
    }
    memset(&r, 0, sizeof r);
    r.ok = 1;
    r.value = zk_doc_root(&doc);
    r.cached = 1;
    if (done) done(c, &r, user);
    zk_doc_free(&doc);
    ZK_FREE(copy);
    return 1;
}

ZK__PRIVATE void zk__cache_store(zk_client *c, zk__msg *m, zk_value result) {
    zk__cached *e = zk__cache_find(c, m->key);
    zk_str text;
    char *copy;
    zk_writer_reset(&c->w);
    zk_write_value(&c->w, result);
    text = zk_writer_result(&c->w);
    if (!text.ptr || !(copy = zk__strndup(text.ptr, text.len))) return;
    if (!e) {
        e = (zk__cached *)ZK_MALLOC(sizeof *e);
        if (!e || !(e->key = zk__strndup(m->key, strlen(m->key)))) {
            ZK_FREE(e);
            ZK_FREE(copy);
            return;
        }
        e->type_len = m->type_len;
        e->next = c->cache;
        c->cache = e;
    } else {
        ZK_FREE(e->result);
    }
    e->result = copy;
    e->result_len = text.len;
    e->expires = zk_loop_now(c->loop) + (m->ttl_ms ? m->ttl_ms : 30000);
}

ZK_API int zk_client_call(zk_client *c, const char *type, const char *payload, size_t payload_len,
                          const zk_call_opts *opts, zk_result_fn done, void *user) {
    zk_call_opts none;
    char *key = NULL;
    size_t type_len;
    zk__msg *m;
    int rc;
    if (!c) return ZK_EINVAL;
    if (c->state == ZK_CLIENT_CLOSED) return ZK_ECLOSED;
    if (!opts) {
        memset(&none, 0, sizeof none);
        opts = &none;
    }
    rc = zk__client_key(c, type, payload, payload_len, &key, &type_len);
    if (rc < 0) return rc;
    if (opts->cacheable && zk__cache_answer(c, key, done, user)) {
        ZK_FREE(key);
        return 0;
    }
    if (c->pending >= (c->opts.max_pending ? c->opts.max_pending : 4096)) {
        ZK_FREE(key);
        return ZK_ENOSPACE;
    }
    if (!opts->no_dedup) {
        m = (zk__msg *)zk__map_get(&c->inflight, key, strlen(key));
        if (m) { /* the same call is on its way: wait for its answer too */
            ZK_FREE(key);
            if (opts->cacheable && !m->cacheable) {
                m->cacheable = 1;
                m->ttl_ms = opts->cache_ttl_ms;
            }
            return zk__add_waiter(m, done, user, opts->undo, opts->timeout_ms);
        }
    }
    m = zk__call_new(c, key, type_len, 0);
    if (!m) {
        ZK_FREE(key);
        return ZK_ENOMEM;
    }
    m->idempotent = opts->idempotent;
    m->cacheable = opts->cacheable;
    m->ttl_ms = opts->cache_ttl_ms;
    if (zk__add_waiter(m, done, user, opts->undo, opts->timeout_ms) < 0) {
        zk__map_del(&c->rpcs, m->rpc, strlen(m->rpc));
        zk__msg_free(m);
        return ZK_ENOMEM;
    }
    if (!opts->no_dedup) {
        if (zk__map_put(&c->inflight, m->key, strlen(m->key), m) < 0) {
            zk__map_del(&c->rpcs, m->rpc, strlen(m->rpc));
            zk__msg_free(m);
            return ZK_ENOMEM;
        }
        m->dedup = 1;
    }
    rc = zk__client_send(c, m, 0);
    if (rc < 0) {
        zk__call_detach(c, m);
        zk__msg_free(m);
        return rc;
    }
    return 0;
}

ZK_API int zk_client_emit(zk_client *c, const char *type, const char *payload, size_t payload_len) {
    char *key = NULL;
    size_t type_len;
    zk__msg *m;
    int rc;
    if (!c) return ZK_EINVAL;
    if (c->state == ZK_CLIENT_CLOSED) return ZK_ECLOSED;
    rc = zk__client_key(c, type, payload, payload_len, &key, &type_len);
    if (rc < 0) return rc;
    m = (zk__msg *)ZK_MALLOC(sizeof *m);
    if (!m) {
        ZK_FREE(key);
        return ZK_ENOMEM;
    }
    memset(m, 0, sizeof *m);
    m->client = c;
    m->json = zk__client_envelope(c, key, type_len, NULL, &m->len);
    ZK_FREE(key);
    if (!m->json) {
        ZK_FREE(m);
        return ZK_ENOMEM;
    }
    rc = zk__client_send(c, m, 0);
    if (rc < 0) zk__msg_free(m);
    return rc;
}

ZK_API int zk_client_rejoin(zk_client *c, const char *type, const char *payload, size_t payload_len,
                            zk_result_fn done, void *user) {
    zk__rejoin *j, **tail;
    char *key = NULL;
    size_t type_len;
    int rc;
    if (!c) return ZK_EINVAL;
    rc = zk__client_key(c, type, payload, payload_len, &key, &type_len);
    if (rc < 0) return rc;
    j = (zk__rejoin *)ZK_MALLOC(sizeof *j);
    if (!j) {
        ZK_FREE(key);
        return ZK_ENOMEM;
    }
    j->next = NULL;
    j->key = key;
    j->type_len = type_len;
    j->done = done;
    j->user = user;
    for (tail = &c->rejoins; *tail; tail = &(*tail)->next) {}
    *tail = j;
    return 0;
}

/* An internal call (rejoin, revalidation, auth) sent now, ahead of the
   queue. */
ZK__PRIVATE zk__msg *zk__client_internal(zk_client *c, const char *key, size_t type_len, uint32_t timeout_ms) {
    char *k = zk__strndup(key, strlen(key));
    zk__msg *m;
    if (!k) return NULL;
    m = zk__call_new(c, k, type_len, timeout_ms);
    if (!m) {
        ZK_FREE(k);
        return NULL;
    }
    if (zk_conn_send(c->conn, m->json, m->len, c->opts.codec == ZK_CODEC_MSGPACK) < 0) {
        zk__call_detach(c, m);
        zk__msg_free(m);
        return NULL;
    }
    m->next = c->flight;
    if (c->flight) c->flight->prev = m;
    c->flight = m;
    return m;
}

ZK_API size_t zk_client_invalidate(zk_client *c, const char *prefix) {
    size_t n = 0, plen = prefix ? strlen(prefix) : 0;
    zk__cached *e = c->cache, *next;
    for (; e; e = next) {
        next = e->next;
        if (!plen || strncmp(e->key, prefix, plen) == 0) {
            zk__cache_remove(c, e);
            n++;
        }
    }
    return n;
}

/* ---- listeners ---- */

ZK_API int zk_client_on(zk_client *c, const char *type, zk_listener_fn fn, void *user) {
    zk__listener *l, **tail;
    if (!c || !type || !*type || !fn) return ZK_EINVAL;
    l = (zk__listener *)ZK_MALLOC(sizeof *l);
    if (!l || !(l->type = zk__strndup(type, strlen(type)))) {
        ZK_FREE(l);
        return ZK_ENOMEM;
    }
    l->next = NULL;
    l->fn = fn;
    l->user = user;
    for (tail = &c->listeners; *tail; tail = &(*tail)->next) {}
    *tail = l;
    return 0;
}

ZK_API int zk_client_off(zk_client *c, const char *type, zk_listener_fn fn, void *user) {
    zk__listener **p;
    if (!c || !type) return ZK_EINVAL;
    for (p = &c->listeners; *p; p = &(*p)->next) {
        zk__listener *l = *p;
        if (l->fn && l->fn == fn && l->user == user && strcmp(l->type, type) == 0) {
            if (c->dispatching) { /* the dispatch loop may hold it: freed after */
                l->fn = NULL;
                return 0;
            }
            *p = l->next;
            ZK_FREE(l->type);
            ZK_FREE(l);
            return 0;
        }
    }
    return ZK_ENOTFOUND;
}

ZK__PRIVATE void zk__client_event(zk_client *c, zk_str type, zk_value payload) {
    zk__listener *l, **p;
    int heard = 0;
    c->dispatching++;
    for (l = c->listeners; l; l = l->next) /* listeners added now run too */
        if (l->fn && ((l->type[0] == '*' && !l->type[1]) ||
                      (strlen(l->type) == type.len && memcmp(l->type, type.ptr, type.len) == 0))) {
            heard = 1;
            l->fn(c, type, payload, l->user);
        }
    if (--c->dispatching == 0)
        for (p = &c->listeners; *p;) {
            l = *p;
            if (l->fn) {
                p = &l->next;
                continue;
            }
            *p = l->next;
            ZK_FREE(l->type);
            ZK_FREE(l);
        }
    if (!heard) c->unhandled++;
}

/* ---- the connection ---- */

ZK__PRIVATE int zk__client_connect(zk_client *c);
ZK__PRIVATE void zk__client_finish(zk_client *c, int code, const char *reason);
ZK__PRIVATE void zk__client_schedule(zk_client *c, int spread);

ZK__PRIVATE void zk__client_retry(zk_timer *t) { zk__client_connect((zk_client *)t->data); }

ZK__PRIVATE void zk__client_stable(zk_timer *t) { ((zk_client *)t->data)->attempts = 0; }

ZK__PRIVATE void zk__client_ping(zk_timer *t) {
    zk_client *c = (zk_client *)t->data;
    if (!c->conn || zk_timer_active(&c->pong)) return;
    if (zk_conn_ping(c->conn, "zk", 2) == 0)
        zk_timer_start(&c->pong, c->opts.pong_timeout_ms ? c->opts.pong_timeout_ms : 5000, 0);
}

ZK__PRIVATE void zk__client_no_pong(zk_timer *t) {
    zk_client *c = (zk_client *)t->data;
    if (!c->conn) return;
    c->dead = 1; /* on_close tells why */
    zk_conn_abort(c->conn);
}

ZK__PRIVATE void zk__client_alive(zk_client *c) { zk_timer_stop(&c->pong); }

/* The connection is usable: hooks, rejoins, revalidation, then the queue. */
ZK__PRIVATE void zk__client_ready(zk_client *c) {
    int reconnect = c->opened_once;
    zk__rejoin *j;
    zk__cached *e;
    c->opened_once = 1;
    c->state = ZK_CLIENT_OPEN; /* on_state is told after the queue went out */
    c->last_code = 0;
    c->last_error[0] = '\0';
    zk_timer_start(&c->stable, c->opts.stable_ms ? c->opts.stable_ms : 5000, 0);
    if (c->opts.on_open) c->opts.on_open(c, reconnect);
    if (c->state != ZK_CLIENT_OPEN || !c->conn) return;
    for (j = c->rejoins; j; j = j->next) {
        zk__msg *m = zk__client_internal(c, j->key, j->type_len, 0);
        if (m && zk__add_waiter(m, j->done, j->user, NULL, 0) < 0) {
            zk__call_detach(c, m);
            zk__msg_free(m);
            m = NULL;
        }
        if (!m) { /* out of memory: not open without its rooms; the next connection rejoins */
            zk_conn_abort(c->conn);
            return;
        }
    }
    if (reconnect) {
        zk__cached *next;
        for (e = c->cache; e; e = next) { /* expired entries are not brought back */
            next = e->next;
            if (zk_loop_now(c->loop) >= e->expires) zk__cache_remove(c, e);
        }
    }
    if (reconnect)
        for (e = c->cache; e; e = e->next) {
            zk__msg *m = zk__client_internal(c, e->key, e->type_len,
                                             c->opts.call_timeout_ms ? c->opts.call_timeout_ms : 10000);
            if (m) {
                m->background = 1;
                m->cacheable = 1;
            }
        }
    while (c->queue && c->state == ZK_CLIENT_OPEN && c->conn) {
        zk__msg *m = c->queue;
        zk__queue_unlink(c, m);
        if (zk__client_send(c, m, 0) < 0) { /* the connection cannot take it: fail it now */
            if (m->is_call) zk__call_fail(c, m, ZK_CODE_DISCONNECTED, "could not be sent");
            else zk__msg_free(m);
        }
    }
    if (c->state == ZK_CLIENT_OPEN && c->opts.on_state) c->opts.on_state(c, ZK_CLIENT_OPEN, 0, "");
}

ZK__PRIVATE void zk__client_on_open(zk_conn *conn, const zk_http_request *req) {
    zk_client *c = (zk_client *)zk_conn_data(conn);
    (void)req;
    if (!c || c->conn != conn) return;
    if (c->opts.codec == ZK_CODEC_MSGPACK && !zk_str_eq_nocase(zk_conn_protocol(conn), ZK_PROTOCOL_MSGPACK)) {
        c->refused = "the server does not speak zocket.msgpack";
        zk_conn_close(conn, ZK_CLOSE_POLICY, c->refused);
        return;
    }
    zk_timer_start(&c->ping, c->opts.ping_interval_ms ? c->opts.ping_interval_ms : 15000,
                   c->opts.ping_interval_ms ? c->opts.ping_interval_ms : 15000);
    if (c->auth) {
        size_t n = strlen(c->auth);
        char *k = (char *)ZK_MALLOC(7 + n + 1);
        zk__msg *m;
        if (!k) {
            zk_conn_abort(conn);
            return;
        }
        memcpy(k, "__auth ", 7);
        memcpy(k + 7, c->auth, n + 1);
        m = zk__client_internal(c, k, 6, c->opts.auth_timeout_ms ? c->opts.auth_timeout_ms : 10000);
        ZK_FREE(k);
        if (!m) {
            zk_conn_abort(conn);
            return;
        }
        m->is_auth = 1;
        return;
    }
    zk__client_ready(c);
}

ZK__PRIVATE void zk__client_answer(zk_client *c, zk_value root, int ok) {
    zk_value id = zk_value_get(root, "rpcId");
    zk_str ids = zk_value_str(id);
    char buf[24];
    zk__msg *m;
    zk_result r;
    if (zk_value_type(id) == ZK_TYPE_INT) {
        snprintf(buf, sizeof buf, "%lld", (long long)zk_value_int(id, 0));
        ids = zk_str_c(buf);
    }
    m = ids.len ? (zk__msg *)zk__map_get(&c->rpcs, ids.ptr, ids.len) : NULL;
    if (!m) return; /* late (timed out), or not ours */
    memset(&r, 0, sizeof r);
    r.ok = ok;
    if (ok) {
        r.value = zk_value_get(root, "payload");
    } else {
        zk_value e = zk_value_get(root, "error");
        r.code = zk_value_str(zk_value_get(e, "code"));
        r.message = zk_value_str(zk_value_get(e, "message"));
        r.value = zk_value_get(e, "data");
        if (!r.code.len) r.code = zk_str_c(ZK_CODE_INTERNAL);
    }
    zk__call_detach(c, m);
    if (m->is_auth) {
        zk__msg_free(m);
        if (ok) {
            c->authed = 1;
            zk__client_ready(c);
        } else {
            zk__client_finish(c, ZK_CLOSE_UNAUTHORIZED, "authentication failed");
        }
        return;
    }
    if (ok && m->cacheable) zk__cache_store(c, m, r.value);
    if (!ok && m->background) { /* revalidation failed: the entry goes */
        zk__cached *e = zk__cache_find(c, m->key);
        if (e) zk__cache_remove(c, e);
    }
    zk__call_finish(c, m, &r);
}

ZK__PRIVATE void zk__client_on_message(zk_conn *conn, zk_str data, int binary) {
    zk_client *c = (zk_client *)zk_conn_data(conn);
    zk_value root, type;
    zk_str t;
    if (!c || c->conn != conn) return; /* a connection we let go */
    zk__client_alive(c);
    if (binary != (c->opts.codec == ZK_CODEC_MSGPACK) || /* not in our codec, or unreadable: counted */
        (binary ? zk_msgpack_parse(&c->doc, data.ptr, data.len) != ZK_OK
                : zk_json_parse(&c->doc, (char *)(uintptr_t)data.ptr, data.len) != ZK_OK)) {
        c->unhandled++;
        return;
    }
    root = zk_doc_root(&c->doc);
    type = zk_value_get(root, "type");
    t = zk_value_str(type);
    if (zk_value_type(type) != ZK_TYPE_STRING) return;
    if (t.len == 9 && memcmp(t.ptr, "__rpc_res", 9) == 0) zk__client_answer(c, root, 1);
    else if (t.len == 9 && memcmp(t.ptr, "__rpc_err", 9) == 0) zk__client_answer(c, root, 0);
    else if (t.len == 6 && memcmp(t.ptr, "__pong", 6) == 0) return;
    else if (t.len == 7 && memcmp(t.ptr, "__error", 7) == 0) zk__client_event(c, t, zk_value_get(root, "error"));
    else zk__client_event(c, t, zk_value_get(root, "payload"));
}

ZK__PRIVATE void zk__client_on_pong(zk_conn *conn, zk_str data) {
    zk_client *c = (zk_client *)zk_conn_data(conn);
    (void)data;
    if (c && c->conn == conn) zk__client_alive(c);
}

/* Codes after which trying again cannot help. */
ZK__PRIVATE int zk__close_final(int code) {
    return code == ZK_CLOSE_NORMAL || code == ZK_CLOSE_POLICY || (code >= 4500 && code <= 4999);
}

/* Calls in flight when the connection went: idempotent ones are sent again
   (first in the queue, in their order), the others fail. */
ZK__PRIVATE void zk__client_orphan_calls(zk_client *c) {
    zk__msg *m = c->flight, *list = NULL;
    c->flight = NULL;
    /* the flight list is newest first: reverse it to the order sent */
    while (m) {
        zk__msg *next = m->next;
        m->next = list;
        list = m;
        m = next;
    }
    while (list) {
        zk__msg *next = list->next;
        list->prev = list->next = NULL;
        if (list->idempotent && c->state != ZK_CLIENT_CLOSED) {
            zk__queue_push(c, list, 0);
        } else if (list->is_auth || list->background || !list->waiters) {
            zk__call_detach(c, list);
            zk__msg_free(list);
        } else {
            zk__call_fail(c, list, ZK_CODE_DISCONNECTED, "the connection dropped");
        }
        list = next;
    }
}

/* Closed for good: everything waiting fails with CLOSED. */
ZK__PRIVATE void zk__client_finish(zk_client *c, int code, const char *reason) {
    zk_timer_stop(&c->retry);
    zk_timer_stop(&c->stable);
    zk_timer_stop(&c->ping);
    zk_timer_stop(&c->pong);
    zk__client_state(c, ZK_CLIENT_CLOSED, code, reason);
    if (c->conn) {
        zk_conn *conn = c->conn;
        c->conn = NULL;
        zk_conn_set_data(conn, NULL);
        zk_conn_close(conn, ZK_CLOSE_NORMAL, NULL);
    }
    while (c->flight) zk__call_fail(c, c->flight, ZK_CODE_CLOSED, "the client closed");
    while (c->queue) {
        zk__msg *m = c->queue;
        ZK_ASSERT(m->queued && !m->prev); /* the head: unlinking it moves c->queue on */
        if (m->is_call) zk__call_fail(c, m, ZK_CODE_CLOSED, "the client closed");
        else {
            zk__queue_unlink(c, m);
            zk__msg_free(m);
        }
    }
}

/* The next attempt: full jitter over the backoff window of this attempt,
   or over restart_spread_ms when the server went away or restarts. */
ZK__PRIVATE void zk__client_schedule(zk_client *c, int spread) {
    uint64_t window;
    c->attempts++;
    if (spread) {
        window = c->opts.restart_spread_ms ? c->opts.restart_spread_ms : 5000;
    } else {
        uint64_t base = c->opts.backoff_base_ms ? c->opts.backoff_base_ms : 500;
        uint64_t cap = c->opts.backoff_max_ms ? c->opts.backoff_max_ms : 15000;
        uint32_t k = c->attempts - 1;
        window = k >= 32 ? cap : base << k;
        if (window > cap) window = cap;
    }
    if (zk_timer_start(&c->retry, zk_loop_random(c->loop) % (window + 1), 0) < 0)
        zk__client_finish(c, 0, "out of memory");
}

ZK__PRIVATE void zk__client_on_close(zk_conn *conn, int code, zk_str reason, int clean) {
    zk_client *c = (zk_client *)zk_conn_data(conn);
    char why[128];
    int status = zk_conn_http_status(conn);
    (void)clean;
    if (!c || c->conn != conn) return; /* a connection we let go */
    c->conn = NULL;
    zk_timer_stop(&c->ping);
    zk_timer_stop(&c->pong);
    zk_timer_stop(&c->stable);
    if (c->dead) snprintf(why, sizeof why, "no answer to a ping in time");
    else if (status) snprintf(why, sizeof why, "upgrade refused: HTTP %d %s", status, zk_http_status_text(status));
    else if (c->refused) snprintf(why, sizeof why, "%s", c->refused); /* ours, whatever the peer echoed */
    else if (reason.len) snprintf(why, sizeof why, "%.*s", (int)ZK__MIN(reason.len, sizeof why - 1), reason.ptr);
    else snprintf(why, sizeof why, "closed (%d)", code);
    if (c->dead) code = ZK_CLOSE_ABNORMAL;
    if (c->refused) code = ZK_CLOSE_POLICY;
    c->dead = 0;
    c->refused = NULL;
    c->authed = 0;
    if (c->state == ZK_CLIENT_CLOSED) return;
    /* a refusal the same request will meet again (401, 403, 404...) is
       final; 408, 429 and 5xx are worth another try */
    if (zk__close_final(code) || (status >= 400 && status < 500 && status != 408 && status != 429) ||
        c->opts.no_reconnect ||
        (c->opts.max_attempts && c->attempts >= c->opts.max_attempts)) {
        /* closed for good before anyone hears of it: calls in flight get
           CLOSED (not the retriable DISCONNECTED), and a callback that looks
           at the state sees CLOSED */
        zk__client_finish(c, code, why);
        return;
    }
    zk__client_state(c, ZK_CLIENT_RECONNECTING, code, why);
    zk__client_orphan_calls(c);
    if (c->state != ZK_CLIENT_RECONNECTING) return; /* a callback closed it */
    zk__client_schedule(c, code == ZK_CLOSE_GOING_AWAY || code == 1012);
}

/* Appends params to the URL's query, percent-encoded. */
ZK__PRIVATE char *zk__client_url(const zk_client_opts *o) {
    static const char hex[] = "0123456789ABCDEF";
    size_t cap = strlen(o->url) + 2, i, j, n;
    char *u, *p;
    for (i = 0; i < o->param_count; i++) cap += 3 * (o->params[i].name.len + o->params[i].value.len) + 2;
    u = (char *)ZK_MALLOC(cap);
    if (!u) return NULL;
    n = strlen(o->url);
    memcpy(u, o->url, n);
    p = u + n;
    for (i = 0; i < o->param_count; i++) {
        const zk_str parts[2] = {o->params[i].name, o->params[i].value};
        *p++ = (i == 0 && !memchr(o->url, '?', n)) ? '?' : '&';
        for (j = 0; j < 2; j++) {
            size_t k;
            if (j) *p++ = '=';
            for (k = 0; k < parts[j].len; k++) {
                unsigned char ch = (unsigned char)parts[j].ptr[k];
                if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '-' || ch == '_' || ch == '.' || ch == '~') {
                    *p++ = (char)ch;
                } else {
                    *p++ = '%';
                    *p++ = hex[ch >> 4];
                    *p++ = hex[ch & 15];
                }
            }
        }
    }
    *p = '\0';
    return u;
}

ZK__PRIVATE int zk__client_connect(zk_client *c) {
    zk_conn_opts co;
    int err = 0;
    memset(&co, 0, sizeof co);
    co.url = c->url;
    co.protocols = c->opts.protocols;
    co.protocol_count = c->opts.protocol_count;
    co.headers = c->opts.headers;
    co.header_count = c->opts.header_count;
    co.connect_timeout_ms = c->opts.connect_timeout_ms;
    co.max_message = c->opts.max_message;
    co.cb.on_open = zk__client_on_open;
    co.cb.on_message = zk__client_on_message;
    co.cb.on_close = zk__client_on_close;
    co.cb.on_pong = zk__client_on_pong;
    co.data = c;
    c->conn = c->opts.loopback ? zk_loopback_connect(c->opts.loopback, &co, c->opts.loopback_fault, &err)
                               : zk_conn_connect(c->loop, &co, &err);
    if (!c->conn) { /* at once: as a failed attempt */
        char why[96];
        snprintf(why, sizeof why, "connect: %s", zk_strerror(err));
        if (err == ZK_EINVAL && c->state == ZK_CLIENT_CONNECTING) return ZK_EINVAL; /* zk_client_new says so */
        if (err == ZK_EINVAL || c->opts.no_reconnect ||
            (c->opts.max_attempts && c->attempts >= c->opts.max_attempts)) {
            zk__client_finish(c, 0, why);
            return 0;
        }
        zk__client_state(c, ZK_CLIENT_RECONNECTING, 0, why);
        zk__client_schedule(c, 0);
    }
    return 0;
}

ZK_API zk_client *zk_client_new(zk_loop *loop, const zk_client_opts *opts, int *err) {
    zk_client *c;
    int dummy;
    if (!err) err = &dummy;
    *err = ZK_EINVAL;
    if (!loop || !opts || !opts->url || (opts->param_count && !opts->params)) return NULL;
    if (opts->codec != ZK_CODEC_JSON && opts->codec != ZK_CODEC_MSGPACK) return NULL;
    *err = ZK_ENOMEM;
    c = (zk_client *)ZK_MALLOC(sizeof *c);
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->opts = *opts;
    if (opts->codec == ZK_CODEC_MSGPACK) { /* zocket.msgpack first, then yours */
        size_t i, n = 0;
        c->protos[n++] = ZK_PROTOCOL_MSGPACK;
        for (i = 0; i < opts->protocol_count && n < 8; i++)
            if (!zk_str_eq_nocase(zk_str_c(opts->protocols[i]), ZK_PROTOCOL_MSGPACK)) c->protos[n++] = opts->protocols[i];
        c->opts.protocols = c->protos;
        c->opts.protocol_count = n;
    }
    c->rpcs.keep = c->inflight.keep = 1; /* they empty after every answer */
    zk_doc_init(&c->doc);
    zk_doc_init(&c->scratch);
    zk_writer_init(&c->w, NULL, 0);
    zk_writer_init(&c->mw, NULL, 0);
    zk_writer_set_codec(&c->mw, ZK_CODEC_MSGPACK);
    zk_timer_init(loop, &c->retry, zk__client_retry, c);
    zk_timer_init(loop, &c->stable, zk__client_stable, c);
    zk_timer_init(loop, &c->ping, zk__client_ping, c);
    zk_timer_init(loop, &c->pong, zk__client_no_pong, c);
    c->url = zk__client_url(opts);
    if (!c->url) goto fail;
    if (opts->auth) {
        char *key = NULL;
        size_t tl;
        int rc = zk__client_key(c, "__auth", opts->auth, strlen(opts->auth), &key, &tl);
        if (rc < 0) {
            *err = rc;
            goto fail;
        }
        c->auth = zk__strndup(key + 7, strlen(key + 7));
        ZK_FREE(key);
        if (!c->auth) goto fail;
    }
    c->state = ZK_CLIENT_CONNECTING;
    c->opts.url = c->url;
    c->opts.auth = c->auth;
    if (zk__client_connect(c) == ZK_EINVAL) { /* a bad URL or header */
        *err = ZK_EINVAL;
        zk_client_free(c);
        return NULL;
    }
    *err = 0;
    return c;
fail:
    zk_client_free(c);
    return NULL;
}

ZK_API void zk_client_close(zk_client *c) {
    if (!c || c->state == ZK_CLIENT_CLOSED) return;
    zk__client_finish(c, ZK_CLOSE_NORMAL, "closed by the application");
}

ZK_API void zk_client_free(zk_client *c) {
    if (!c) return;
    if (c->state != ZK_CLIENT_CLOSED && (c->flight || c->queue || c->conn)) zk__client_finish(c, ZK_CLOSE_NORMAL, "freed");
    if (c->conn) {
        zk_conn_set_data(c->conn, NULL);
        zk_conn_abort(c->conn);
    }
    while (c->flight) zk__call_fail(c, c->flight, ZK_CODE_CLOSED, "the client was freed");
    while (c->queue) {
        zk__msg *m = c->queue;
        zk__queue_unlink(c, m);
        zk__msg_free(m);
    }
    zk_timer_stop(&c->retry);
    zk_timer_stop(&c->stable);
    zk_timer_stop(&c->ping);
    zk_timer_stop(&c->pong);
    while (c->cache) zk__cache_remove(c, c->cache);
    while (c->rejoins) {
        zk__rejoin *j = c->rejoins;
        c->rejoins = j->next;
        ZK_FREE(j->key);
        ZK_FREE(j);
    }
    while (c->listeners) {
        zk__listener *l = c->listeners;
        c->listeners = l->next;
        ZK_FREE(l->type);
        ZK_FREE(l);
    }
    zk__map_free(&c->rpcs);
    zk__map_free(&c->inflight);
    zk_doc_free(&c->doc);
    zk_doc_free(&c->scratch);
    zk_writer_free(&c->w);
    zk_writer_free(&c->mw);
    ZK_FREE(c->buf);
    ZK_FREE(c->url);
    ZK_FREE(c->auth);
    ZK_FREE(c);
}
/* >>broker implementation: RESP and NATS parsers and encoders -------------- */

/* A decimal integer of buf[0..n): optional '-', 1 to 19 digits, exact. */
ZK__PRIVATE int zk__parse_i64(const char *s, size_t n, int64_t *out) {
    size_t i = 0;
    int neg = 0;
    uint64_t v = 0, lim;
    if (n && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n || n - i > 19) return -1;
    lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9) return -1;
        if (v > (lim - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* The line starting at buf[at], up to "\r\n": its end (the '\r'), or -1
   when more is needed, -2 when a '\r' is not followed by '\n', -3 when it
   is longer than max. */
ZK__PRIVATE long zk__line_end(const char *buf, size_t len, size_t at, size_t max) {
    size_t avail = len - at, look = avail < max + 1 ? avail : max + 1;
    const char *cr = (const char *)memchr(buf + at, '\r', look);
    if (!cr) return avail > max ? -3 : -1;
    if ((size_t)(cr - buf) + 1 >= len) return -1; /* the '\n' has not come */
    if (cr[1] != '\n') return -2;
    return (long)(cr - buf);
}

/* ---- RESP ---- */

#define ZK__RESP_MAX_DEPTH 8

ZK_API int zk_resp_parse(const char *buf, size_t len, size_t max_bulk, zk_resp_reply *out) {
    size_t at = 0;
    int64_t remaining[ZK__RESP_MAX_DEPTH];
    int open = 0;
    if (!max_bulk) max_bulk = (size_t)512 << 20;
    out->count = 0;
    if (!buf && len) return ZK_EINVAL;
    for (;;) {
        zk_resp_item it;
        long end;
        char type;
        if (at >= len) return ZK_EAGAIN;
        type = buf[at];
        if (type != '+' && type != '-' && type != ':' && type != '$' && type != '*')
            return ZK_EPROTO; /* at once: a peer that sent garbage may send nothing more */
        end = zk__line_end(buf, len, at + 1, type == '+' || type == '-' ? 65536 : 32);
        if (end == -1) return ZK_EAGAIN;
        if (end == -2) return ZK_EPROTO;
        if (end == -3) return type == '+' || type == '-' ? ZK_ETOOBIG : ZK_EPROTO;
        memset(&it, 0, sizeof it);
        it.depth = open;
        switch (type) {
        case '+':
        case '-':
            it.type = type;
            it.str.ptr = buf + at + 1;
            it.str.len = (size_t)end - (at + 1);
            at = (size_t)end + 2;
            break;
        case ':':
            it.type = ZK_RESP_INTEGER;
            if (zk__parse_i64(buf + at + 1, (size_t)end - (at + 1), &it.integer) < 0) return ZK_EPROTO;
            at = (size_t)end + 2;
            break;
        case '$': {
            int64_t n;
            size_t start;
            if (zk__parse_i64(buf + at + 1, (size_t)end - (at + 1), &n) < 0 || n < -1 ||
                (buf[at + 1] == '-' && n != -1))
                return ZK_EPROTO;
            start = (size_t)end + 2;
            if (n == -1) {
                it.type = ZK_RESP_NIL;
                at = start;
                break;
            }
            if ((uint64_t)n > max_bulk) return ZK_ETOOBIG;
            if (start > len || len - start < (size_t)n + 2) return ZK_EAGAIN;
            if (buf[start + (size_t)n] != '\r' || buf[start + (size_t)n + 1] != '\n') return ZK_EPROTO;
            it.type = ZK_RESP_BULK;
            it.str.ptr = buf + start;
            it.str.len = (size_t)n;
            at = start + (size_t)n + 2;
            break;
        }
        case '*': {
            int64_t n;
            if (zk__parse_i64(buf + at + 1, (size_t)end - (at + 1), &n) < 0 || n < -1 ||
                (buf[at + 1] == '-' && n != -1))
                return ZK_EPROTO;
            at = (size_t)end + 2;
            if (n == -1) {
                it.type = ZK_RESP_NIL;
                break;
            }
            if (n > ZK_RESP_MAX_ITEMS) return ZK_ETOOBIG;
            it.type = ZK_RESP_ARRAY;
            it.integer = n;
            break;
        }
        default:
            return ZK_EPROTO;
        }
        if (out->count == ZK_RESP_MAX_ITEMS) return ZK_ETOOBIG;
        out->items[out->count++] = it;
        if (it.type == ZK_RESP_ARRAY && it.integer > 0) {
            if (open == ZK__RESP_MAX_DEPTH) return ZK_ETOOBIG;
            remaining[open++] = it.integer;
            continue;
        }
        /* an element is complete: so may be the arrays around it */
        while (open > 0) {
            if (--remaining[open - 1] > 0) break;
            open--;
        }
        if (open == 0) return (int)at;
    }
}

/* snprintf into a small buffer, then copied: out needs no room for a NUL. */
ZK__PRIVATE int zk__put_head(char *out, size_t cap, size_t at, const char *fmt, unsigned long long v) {
    char tmp[48];
    int n = snprintf(tmp, sizeof tmp, fmt, v);
    if (n < 0 || (size_t)n > cap - at) return -1;
    memcpy(out + at, tmp, (size_t)n);
    return n;
}

ZK_API int zk_resp_command(char *out, size_t cap, size_t argc, const zk_str *argv) {
    size_t at, i;
    int n = zk__put_head(out, cap, 0, "*%llu\r\n", (unsigned long long)argc);
    if (n < 0) return ZK_ENOSPACE;
    at = (size_t)n;
    for (i = 0; i < argc; i++) {
        n = zk__put_head(out, cap, at, "$%llu\r\n", (unsigned long long)argv[i].len);
        if (n < 0 || cap - at - (size_t)n < argv[i].len + 2) return ZK_ENOSPACE;
        at += (size_t)n;
        if (argv[i].len) memcpy(out + at, argv[i].ptr, argv[i].len);
        at += argv[i].len;
        out[at++] = '\r';
        out[at++] = '\n';
    }
    if (at > 0x7fffffff) return ZK_ENOSPACE;
    return (int)at;
}

/* ---- NATS ---- */

ZK__PRIVATE int zk__ascii_eq_nocase(const char *a, size_t n, const char *b) {
    size_t i;
    if (strlen(b) != n) return 0;
    for (i = 0; i < n; i++) {
        char x = a[i];
        if (x >= 'a' && x <= 'z') x = (char)(x - 32);
        if (x != b[i]) return 0;
    }
    return 1;
}

/* Splits line[0..n) at spaces and tabs into at most max tokens; returns
   how many there are (max + 1 when there are more). */
ZK__PRIVATE size_t zk__tokens(const char *line, size_t n, zk_str *tok, size_t max) {
    size_t i = 0, count = 0;
    while (i < n) {
        size_t start;
        while (i < n && (line[i] == ' ' || line[i] == '\t')) i++;
        if (i == n) break;
        start = i;
        while (i < n && line[i] != ' ' && line[i] != '\t') i++;
        if (count == max) return max + 1;
        tok[count].ptr = line + start;
        tok[count].len = i - start;
        count++;
    }
    return count;
}

ZK_API int zk_nats_parse(const char *buf, size_t len, size_t max_payload, zk_nats_op *out) {
    long end;
    size_t op_len, line_len, rest_at;
    const char *line;
    memset(out, 0, sizeof out[0]);
    if (!buf && len) return ZK_EINVAL;
    if (!max_payload) max_payload = (size_t)1 << 20;
    if (len == 0) return ZK_EAGAIN;
    /* INFO may be long; everything else fits in 4 KiB */
    end = zk__line_end(buf, len, 0, len >= 4 && zk__ascii_eq_nocase(buf, 4, "INFO") ? 65536 : 4096);
    if (end == -1) return ZK_EAGAIN;
    if (end == -2) return ZK_EPROTO;
    if (end == -3) return ZK_ETOOBIG;
    line = buf;
    line_len = (size_t)end;
    for (op_len = 0; op_len < line_len && line[op_len] != ' ' && line[op_len] != '\t'; op_len++) {}
    rest_at = op_len;
    while (rest_at < line_len && (line[rest_at] == ' ' || line[rest_at] == '\t')) rest_at++;
    if (zk__ascii_eq_nocase(line, op_len, "PING") && rest_at == line_len) {
        out->type = ZK_NATS_PING;
    } else if (zk__ascii_eq_nocase(line, op_len, "PONG") && rest_at == line_len) {
        out->type = ZK_NATS_PONG;
    } else if (zk__ascii_eq_nocase(line, op_len, "+OK") && rest_at == line_len) {
        out->type = ZK_NATS_OK;
    } else if (zk__ascii_eq_nocase(line, op_len, "INFO") && rest_at < line_len) {
        out->type = ZK_NATS_INFO;
        out->text.ptr = line + rest_at;
        out->text.len = line_len - rest_at;
    } else if (zk__ascii_eq_nocase(line, op_len, "-ERR")) {
        size_t a = rest_at, b = line_len;
        while (b > a && (line[b - 1] == ' ' || line[b - 1] == '\t')) b--;
        if (b - a >= 2 && line[a] == '\'' && line[b - 1] == '\'') {
            a++;
            b--;
        }
        out->type = ZK_NATS_ERR;
        out->text.ptr = line + a;
        out->text.len = b - a;
    } else if (zk__ascii_eq_nocase(line, op_len, "MSG")) {
        zk_str tok[4];
        size_t n = zk__tokens(line + rest_at, line_len - rest_at, tok, 4), start, k;
        uint64_t sid = 0;
        int64_t size;
        if (n < 3 || n > 4 || tok[1].len > 20) return ZK_EPROTO;
        for (k = 0; k < tok[1].len; k++) { /* digits only: the full uint64 range */
            unsigned d = (unsigned char)tok[1].ptr[k] - '0';
            if (d > 9 || sid > (UINT64_MAX - d) / 10) return ZK_EPROTO;
            sid = sid * 10 + d;
        }
        if (tok[n - 1].ptr[0] == '-' || zk__parse_i64(tok[n - 1].ptr, tok[n - 1].len, &size) < 0)
            return ZK_EPROTO;
        if ((uint64_t)size > max_payload) return ZK_ETOOBIG;
        start = (size_t)end + 2;
        if (start > len || len - start < (size_t)size + 2) return ZK_EAGAIN;
        if (buf[start + (size_t)size] != '\r' || buf[start + (size_t)size + 1] != '\n') return ZK_EPROTO;
        out->type = ZK_NATS_MSG;
        out->subject = tok[0];
        if (n == 4) out->reply = tok[2];
        out->sid = sid;
        out->payload.ptr = buf + start;
        out->payload.len = (size_t)size;
        return (int)(start + (size_t)size + 2);
    } else {
        return ZK_EPROTO; /* HMSG among them: we never ask for headers */
    }
    return (int)((size_t)end + 2);
}

/* A subject (or prefix): tokens of printable ASCII without '.', '*', '>'
   or white space, joined by '.'. */
ZK__PRIVATE int zk__subject_valid(const char *s, size_t n) {
    size_t i, token = 0;
    if (!n) return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (!token) return 0;
            token = 0;
        } else if (c <= ' ' || c >= 0x7f || c == '*' || c == '>') {
            return 0;
        } else {
            token++;
        }
    }
    return token > 0;
}

ZK_API int zk_nats_subject(char *out, size_t cap, const char *prefix, zk_str room) {
    static const char hex[] = "0123456789ABCDEF";
    size_t plen = prefix ? strlen(prefix) : 0, at, i;
    if (!zk__subject_valid(prefix, plen) || !room.len || (room.len && !room.ptr)) return ZK_EINVAL;
    if (cap < plen + 2) return ZK_ENOSPACE;
    memcpy(out, prefix, plen);
    out[plen] = '.';
    at = plen + 1;
    for (i = 0; i < room.len; i++) {
        unsigned char c = (unsigned char)room.ptr[i];
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (cap - at < (plain ? 1u : 3u) + 1) return ZK_ENOSPACE;
        if (plain) {
            out[at++] = (char)c;
        } else {
            out[at++] = '_';
            out[at++] = hex[c >> 4];
            out[at++] = hex[c & 15];
        }
    }
    out[at] = '\0';
    if (at > 0x7fffffff) return ZK_ENOSPACE;
    return (int)at;
}

ZK_API int zk_nats_pub(char *out, size_t cap, zk_str subject, zk_str payload) {
    int n;
    if (!subject.ptr || !zk__subject_valid(subject.ptr, subject.len) || (payload.len && !payload.ptr))
        return ZK_EINVAL;
    n = snprintf(out, cap, "PUB %.*s %lu\r\n", (int)subject.len, subject.ptr, (unsigned long)payload.len);
    if (n < 0 || (size_t)n >= cap || cap - (size_t)n < payload.len + 2) return ZK_ENOSPACE;
    if (payload.len) memcpy(out + n, payload.ptr, payload.len);
    out[(size_t)n + payload.len] = '\r';
    out[(size_t)n + payload.len + 1] = '\n';
    if ((size_t)n + payload.len + 2 > 0x7fffffff) return ZK_ENOSPACE;
    return (int)((size_t)n + payload.len + 2);
}

ZK_API int zk_nats_sub(char *out, size_t cap, zk_str subject, uint64_t sid) {
    int n;
    if (!subject.ptr || !zk__subject_valid(subject.ptr, subject.len)) return ZK_EINVAL;
    if (cap < 4 || cap - 4 < subject.len) return ZK_ENOSPACE;
    memcpy(out, "SUB ", 4);
    memcpy(out + 4, subject.ptr, subject.len);
    n = zk__put_head(out, cap, 4 + subject.len, " %llu\r\n", (unsigned long long)sid);
    if (n < 0 || 4 + subject.len + (size_t)n > 0x7fffffff) return ZK_ENOSPACE;
    return (int)(4 + subject.len + (size_t)n);
}

ZK_API int zk_nats_unsub(char *out, size_t cap, uint64_t sid) {
    int n = zk__put_head(out, cap, 0, "UNSUB %llu\r\n", (unsigned long long)sid);
    return n < 0 ? ZK_ENOSPACE : n;
}

/* ---- the adapter ----

   Between nodes a message travels as text (the canonical form):
     "ZK1 M <node> <L|P> <age> <seq> <flags> <except|-> <rooms> <ids>\n"
     then each room and each id as "<len>:<bytes>", then "<len>:<type>",
     then the payload as JSON (nothing for none).
   flags: 1 all, plus the delivery policy times 2. L is a first send, P a
   replay. age: 10 digits, the milliseconds between zk_app_send and this
   copy's writing (a queued or replayed message is old): a receiving node
   takes now - age as the send time and delivers only to members that were
   there by then (give or take ZK__JOIN_SLACK_MS), so nobody gets what was
   sent well before they joined. Only durations cross between nodes, never
   clock readings. Control messages:
     "ZK1 H <node> <seq> <n>\n" and n lines "<node> <seq>\n": hello, sent
     after (re)subscribing: the sender's last confirmed seq and, per node,
     the last seq of that node it delivered;
     "ZK1 R <node> <seq> <to>\n": "replayed for <to> up to <seq>". */

#define ZK__NODE_LEN 16
#define ZK__BROKER_MAX_NODES 256
#define ZK__DEDUP_WINDOW 1024      /* bits per node: seqs below the newest that are tracked */
#define ZK__BROKER_OUT_HIGH 262144 /* stop adding publishes past this much unsent output */
#define ZK__BROKER_MAX_MARKS 64
#define ZK__AGE_DIGITS 10
/* A member that joined up to this long after a message was sent still gets
   it: the send time is an estimate (loop clocks read once per pass, whole
   milliseconds), and missing a message is worse than one from just before
   the join. Queued and replayed messages, seconds old, are what the check
   is for. */
#define ZK__JOIN_SLACK_MS 1000
#define ZK__AGE_AT (6 + ZK__NODE_LEN + 3) /* where the age starts in a body */

enum { ZK__B_REDIS = 1, ZK__B_NATS };
enum { ZK__BC_IDLE, ZK__BC_WAIT, ZK__BC_CONNECTING, ZK__BC_HANDSHAKE, ZK__BC_READY };

typedef struct zk__bconn {
    zk_broker *b;
    int sub;                     /* the subscribing connection (NATS: the only one) */
    int state;                   /* ZK__BC_* */
    zk__io io;                   /* fd -1 when closed */
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off, out_cap;
    zk_timer timer;              /* backoff, connect deadline, then ping */
    uint32_t attempts;
    uint64_t last_rx;
    int ping_out;
    int auth_wait;               /* the next reply answers AUTH (Redis) */
    uint64_t writes, answers;    /* Redis: commands and replies; NATS: PINGs and PONGs */
    size_t pending;              /* handshake answers still awaited */
} zk__bconn;

typedef struct zk__bent {        /* a published message in the ring */
    char *body;
    size_t len;
    uint64_t at;                 /* loop time of zk_app_send */
    uint64_t ack;                /* the answer count that confirms it */
} zk__bent;

typedef struct zk__held {        /* a message from a node we wait for a replay from */
    struct zk__held *next;
    uint64_t seq;
    uint64_t sent_at;            /* its send time on our clock */
    size_t len;                  /* body follows */
} zk__held;

typedef struct zk__origin {
    char node[ZK__NODE_LEN];
    uint64_t seen;               /* the newest seq delivered */
    uint64_t bits[ZK__DEDUP_WINDOW / 64]; /* bit i: seen - i delivered */
    uint64_t heard;              /* loop time of the last message */
    uint64_t hold_until;         /* 0: not holding */
    zk__held *held;              /* sorted by seq */
    size_t held_count;
} zk__origin;

typedef struct zk__broom {
    uint64_t sid;                /* NATS */
    size_t len;                  /* name follows */
} zk__broom;

struct zk_broker {
    zk_app *app;
    zk_loop *loop;
    zk_broker_opts opts;
    int kind;
    char *user, *password;       /* from the URL; NATS token: password without user */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char prefix[65];
    char node[ZK__NODE_LEN + 1];
    int state;
    int was_open;
    char error[160];
    zk__bconn conn[2];           /* [0] subscribes; [1] publishes (Redis only) */
    zk__map rooms;               /* name -> zk__broom, rooms with local members */
    uint64_t next_sid;
    /* the ring: seqs [first, next) are kept; [acked, next) not confirmed;
       [sent, next) not written on the current connection */
    zk__bent *ring;
    size_t ring_bytes;
    uint64_t first, acked, sent, next;
    int hello_pending;
    char marks[ZK__BROKER_MAX_MARKS][ZK__NODE_LEN]; /* "replayed for" markers to send */
    uint64_t mark_seq[ZK__BROKER_MAX_MARKS];
    size_t mark_count;
    zk__origin *origins;
    size_t origin_count;
    zk_timer hold_timer;
    zk__work flush_work;
    zk_doc doc;
    zk_writer scratch, hello_writer;
    size_t nats_max_payload;
    zk_broker_stats stats;
};

ZK__PRIVATE void zk__bconn_start(zk__bconn *bc);
ZK__PRIVATE void zk__broker_flush(zk_broker *b);
ZK__PRIVATE zk__bconn *zk__broker_pubconn(zk_broker *b);
ZK__PRIVATE void zk__broker_schedule(zk_broker *b);
ZK__PRIVATE void zk__broker_hold_check(zk_broker *b);

ZK__PRIVATE void zk__broker_set_error(zk_broker *b, const char *what, zk_str detail) {
    size_t n = strlen(what), d = detail.len;
    if (n > sizeof b->error - 1) n = sizeof b->error - 1;
    memcpy(b->error, what, n);
    if (d && n + 2 < sizeof b->error) {
        b->error[n++] = ':';
        b->error[n++] = ' ';
        if (d > sizeof b->error - 1 - n) d = sizeof b->error - 1 - n;
        memcpy(b->error + n, detail.ptr, d);
        n += d;
    }
    b->error[n] = 0;
    /* broker text is shown to people: keep it printable */
    for (d = 0; d < n; d++)
        if ((unsigned char)b->error[d] < 32 || (unsigned char)b->error[d] == 127) b->error[d] = '?';
}

ZK__PRIVATE size_t zk__broker_nconns(const zk_broker *b) { return b->kind == ZK__B_REDIS ? 2 : 1; }

/* OPEN when every connection is ready. */
ZK__PRIVATE void zk__broker_update_state(zk_broker *b) {
    size_t i;
    int ready = 1, st;
    for (i = 0; i < zk__broker_nconns(b); i++)
        if (b->conn[i].state != ZK__BC_READY) ready = 0;
    st = ready ? ZK_BROKER_OPEN : b->was_open ? ZK_BROKER_RECONNECTING : ZK_BROKER_CONNECTING;
    if (ready) b->was_open = 1;
    if (st == b->state) return;
    b->state = st;
    if (b->opts.on_state) b->opts.on_state(b, st, b->opts.data);
}

/* ---- output ---- */

ZK__PRIVATE char *zk__bout(zk__bconn *bc, size_t n) {
    if (bc->out_off && bc->out_off == bc->out_len) bc->out_off = bc->out_len = 0;
    if (bc->out_cap - bc->out_len < n) {
        size_t cap = bc->out_cap ? bc->out_cap : 4096;
        char *p;
        if (bc->out_off) { /* reclaim what was written */
            memmove(bc->out, bc->out + bc->out_off, bc->out_len - bc->out_off);
            bc->out_len -= bc->out_off;
            bc->out_off = 0;
        }
        while (cap - bc->out_len < n) cap *= 2;
        if (cap != bc->out_cap) {
            p = (char *)ZK_REALLOC(bc->out, cap);
            if (!p) return NULL;
            bc->out = p;
            bc->out_cap = cap;
        }
    }
    return bc->out + bc->out_len;
}

ZK__PRIVATE int zk__bout_raw(zk__bconn *bc, const char *s, size_t n) {
    char *p = zk__bout(bc, n);
    if (!p) return ZK_ENOMEM;
    memcpy(p, s, n);
    bc->out_len += n;
    return 0;
}

/* A Redis command of argc bulk strings. */
ZK__PRIVATE int zk__bout_resp(zk__bconn *bc, size_t argc, const zk_str *argv) {
    size_t need = 16, i;
    char *p;
    int n;
    for (i = 0; i < argc; i++) need += argv[i].len + 24;
    p = zk__bout(bc, need);
    if (!p) return ZK_ENOMEM;
    n = zk_resp_command(p, need, argc, argv);
    if (n < 0) return n;
    bc->out_len += (size_t)n;
    bc->writes++;
    return 0;
}

ZK__PRIVATE void zk__bconn_fail(zk__bconn *bc, const char *why, zk_str detail);

/* Writes what it can; the rest waits for writable. */
ZK__PRIVATE void zk__bconn_write(zk__bconn *bc) {
    zk_broker *b = bc->b;
    while (bc->out_off < bc->out_len) {
        ssize_t n = send(bc->io.fd, bc->out + bc->out_off, bc->out_len - bc->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            zk_str none = {NULL, 0};
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            zk__bconn_fail(bc, "broker write failed", none);
            return;
        }
        bc->out_off += (size_t)n;
    }
    if (bc->out_off == bc->out_len) bc->out_off = bc->out_len = 0;
    zk__io_set(b->loop, &bc->io, ZK__IO_READ | (bc->out_len ? ZK__IO_WRITE : 0));
    /* the flush stopped at ZK__BROKER_OUT_HIGH: room again for the rest */
    if (bc->out_len - bc->out_off < ZK__BROKER_OUT_HIGH / 2 && b->sent < b->next && bc == zk__broker_pubconn(b))
        zk__broker_schedule(b);
}

/* ---- connections ---- */

ZK__PRIVATE void zk__bconn_close(zk__bconn *bc) {
    if (bc->io.fd >= 0) {
        zk__io_set(bc->b->loop, &bc->io, 0);
        close(bc->io.fd);
        bc->io.fd = -1;
    }
    bc->in_len = bc->out_len = bc->out_off = 0;
    bc->writes = bc->answers = 0;
    bc->pending = 0;
    bc->ping_out = 0;
    bc->auth_wait = 0;
}

ZK__PRIVATE void zk__bconn_timer(zk_timer *t);

/* Retries after a full-jitter backoff. */
ZK__PRIVATE void zk__bconn_backoff(zk__bconn *bc) {
    zk_broker *b = bc->b;
    uint64_t cap = b->opts.backoff_base_ms, delay;
    uint32_t i;
    for (i = 0; i < bc->attempts && cap < b->opts.backoff_max_ms; i++) cap *= 2;
    if (cap > b->opts.backoff_max_ms) cap = b->opts.backoff_max_ms;
    delay = zk_loop_random(b->loop) % (cap + 1);
    if (bc->attempts < 31) bc->attempts++;
    bc->state = ZK__BC_WAIT;
    zk_timer_start(&bc->timer, delay, 0);
}

ZK__PRIVATE void zk__broker_lost(zk_broker *b, zk__bconn *bc);

ZK__PRIVATE void zk__bconn_fail(zk__bconn *bc, const char *why, zk_str detail) {
    zk_broker *b = bc->b;
    int was = bc->state;
    zk__broker_set_error(b, why, detail);
    zk__bconn_close(bc);
    if (was == ZK__BC_HANDSHAKE || was == ZK__BC_READY) b->stats.disconnects++;
    zk__bconn_backoff(bc);
    zk__broker_lost(b, bc);
    zk__broker_update_state(b);
}

/* ---- subscriptions ---- */

ZK__PRIVATE zk_str zk__bw_result(const zk_writer *w) {
    zk_str s = {NULL, 0};
    if (!w->err) {
        s.ptr = w->buf;
        s.len = w->len;
    }
    return s;
}

/* A room's channel (NULL: the reserved one) into w, as raw bytes. */
ZK__PRIVATE int zk__broker_channel(zk_broker *b, const char *room, size_t len, zk_writer *w) {
    size_t plen = strlen(b->prefix);
    zk_writer_reset(w);
    if (b->kind == ZK__B_REDIS) {
        zk__w_put(w, b->prefix, plen);
        if (room) {
            zk__w_put(w, ":r:", 3);
            zk__w_put(w, room, len);
        } else {
            zk__w_put(w, ":all", 4);
        }
    } else if (!room) {
        zk__w_put(w, b->prefix, plen);
        zk__w_put(w, ".all", 4);
    } else {
        char pre[80];
        zk_str r;
        int n;
        snprintf(pre, sizeof pre, "%s.r", b->prefix);
        r.ptr = room;
        r.len = len;
        if (zk__w_room(w, len * 3 + plen + 8) < 0) return w->err;
        n = zk_nats_subject(w->buf + w->len, w->cap - w->len, pre, r);
        if (n < 0) return n;
        w->len += (size_t)n;
    }
    return w->err;
}

/* Writes the subscription for a room (NULL: the reserved channel). */
ZK__PRIVATE int zk__broker_sub_cmd(zk_broker *b, const char *room, size_t len, uint64_t sid, int on) {
    zk__bconn *bc = &b->conn[0];
    zk_str ch;
    int rc = zk__broker_channel(b, room, len, &b->scratch);
    if (rc < 0) return rc;
    ch = zk__bw_result(&b->scratch);
    if (b->kind == ZK__B_REDIS) {
        zk_str argv[2];
        argv[0].ptr = on ? "SUBSCRIBE" : "UNSUBSCRIBE";
        argv[0].len = strlen(argv[0].ptr);
        argv[1] = ch;
        return zk__bout_resp(bc, 2, argv);
    } else {
        char *p = zk__bout(bc, ch.len + 48);
        int n;
        if (!p) return ZK_ENOMEM;
        n = on ? zk_nats_sub(p, ch.len + 48, ch, sid) : zk_nats_unsub(p, ch.len + 48, sid);
        if (n < 0) return n;
        bc->out_len += (size_t)n;
        return 0;
    }
}

ZK__PRIVATE int zk__broker_room(zk_broker *b, const char *room, size_t len, int on) {
    zk__broom *r = (zk__broom *)zk__map_get(&b->rooms, room, len);
    zk__bconn *bc = &b->conn[0];
    if (on) {
        if (r) return 0;
        r = (zk__broom *)ZK_MALLOC(sizeof *r + len + 1);
        if (!r) return ZK_ENOMEM;
        r->sid = ++b->next_sid;
        r->len = len;
        memcpy((char *)(r + 1), room, len);
        ((char *)(r + 1))[len] = 0;
        if (zk__map_put(&b->rooms, (const char *)(r + 1), len, r) < 0) {
            ZK_FREE(r);
            return ZK_ENOMEM;
        }
        b->stats.rooms++;
    } else {
        if (!r) return 0;
        zk__map_del(&b->rooms, room, len);
        b->stats.rooms--;
    }
    /* A connection not yet subscribing takes the set as it is then; one
       whose subscriptions went out hears of the change now. */
    if (bc->state == ZK__BC_READY || (bc->state == ZK__BC_HANDSHAKE && (b->kind == ZK__B_REDIS || bc->pending))) {
        if (on && bc->state == ZK__BC_HANDSHAKE && b->kind == ZK__B_REDIS) bc->pending++;
        if (zk__broker_sub_cmd(b, room, len, r->sid, on) < 0) {
            zk_str none = {NULL, 0};
            if (!on) ZK_FREE(r);
            zk__bconn_fail(bc, "out of memory", none); /* resubscribes from the set */
            return 0;
        }
        zk__bconn_write(bc);
    }
    if (!on) ZK_FREE(r);
    return 0;
}

/* Everything to subscribe on a fresh connection. */
ZK__PRIVATE int zk__broker_sub_all(zk_broker *b) {
    size_t i;
    int rc = zk__broker_sub_cmd(b, NULL, 0, 1, 1);
    b->conn[0].pending = 1;
    for (i = 0; rc == 0 && i < b->rooms.cap; i++) {
        const zk__broom *r = (const zk__broom *)b->rooms.slots[i].val;
        if (!r) continue;
        rc = zk__broker_sub_cmd(b, (const char *)(r + 1), r->len, r->sid, 1);
        b->conn[0].pending++;
    }
    return rc;
}

/* ---- the ring: what this node published ---- */

ZK__PRIVATE zk__bent *zk__ring_at(zk_broker *b, uint64_t seq) { return &b->ring[seq % b->opts.max_queue]; }

ZK__PRIVATE void zk__ring_drop_first(zk_broker *b) {
    zk__bent *e = zk__ring_at(b, b->first);
    b->ring_bytes -= e->len;
    ZK_FREE(e->body);
    e->body = NULL;
    b->first++;
}

ZK__PRIVATE zk__bconn *zk__broker_pubconn(zk_broker *b) { return &b->conn[b->kind == ZK__B_REDIS ? 1 : 0]; }

ZK__PRIVATE void zk__broker_flush_work(zk__work *w) {
    zk_broker *b = (zk_broker *)(void *)((char *)w - offsetof(zk_broker, flush_work));
    zk__broker_flush(b);
}

ZK__PRIVATE void zk__broker_schedule(zk_broker *b) {
    if (zk__broker_pubconn(b)->state == ZK__BC_READY) zk__work_queue(b->loop, &b->flush_work);
}

ZK__PRIVATE void zk__bw_num(zk_writer *w, uint64_t v) {
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    zk__w_put(w, tmp, (size_t)n);
}

ZK__PRIVATE void zk__bw_net(zk_writer *w, const char *s, size_t n) {
    zk__bw_num(w, n);
    zk__w_put(w, ":", 1);
    zk__w_put(w, s, n);
}

ZK__PRIVATE int zk__broker_publish(zk_broker *b, const zk_target *to) {
    zk_app *app = b->app;
    zk_writer *w = &b->scratch;
    size_t i, rooms = 0, ids = 0, len;
    zk_str payload = zk_writer_result(&app->payload);
    const zk__member *ex = to->except ? (const zk__member *)to->except->app : NULL;
    zk__bent *e;
    char *body;
    if (!to->all) {
        for (i = 0; i < to->room_count; i++) {
            size_t n;
            if (zk__room_name_ok(to->rooms[i], &n)) rooms++;
        }
        for (i = 0; i < to->id_count; i++)
            if (to->ids[i] && strlen(to->ids[i]) == 22 && !zk__map_get(&app->ids, to->ids[i], 22)) ids++;
        if (!rooms && !ids) return 0; /* every recipient is here */
    }
    zk_writer_reset(w);
    zk__w_put(w, "ZK1 M ", 6);
    zk__w_put(w, b->node, ZK__NODE_LEN);
    zk__w_put(w, " L 0000000000 ", 14);
    zk__bw_num(w, b->next);
    zk__w_put(w, " ", 1);
    zk__bw_num(w, (uint64_t)(to->all ? 1 : 0) + (uint64_t)(to->delivery & 3) * 2);
    zk__w_put(w, " ", 1);
    if (ex && ex->app == app) zk__w_put(w, ex->id, 22);
    else zk__w_put(w, "-", 1);
    zk__w_put(w, " ", 1);
    zk__bw_num(w, to->all ? 0 : rooms);
    zk__w_put(w, " ", 1);
    zk__bw_num(w, to->all ? 0 : ids);
    zk__w_put(w, "\n", 1);
    for (i = 0; !to->all && i < to->room_count; i++) {
        size_t n;
        if (zk__room_name_ok(to->rooms[i], &n)) zk__bw_net(w, to->rooms[i], n);
    }
    for (i = 0; !to->all && i < to->id_count; i++)
        if (to->ids[i] && strlen(to->ids[i]) == 22 && !zk__map_get(&app->ids, to->ids[i], 22))
            zk__bw_net(w, to->ids[i], 22);
    zk__bw_net(w, app->message_type, strlen(app->message_type));
    if (payload.ptr) zk__w_put(w, payload.ptr, payload.len);
    if (w->err) return w->err == ZK_ENOMEM ? ZK_ENOMEM : ZK_ETOOBIG;
    len = w->len;
    if (len > b->opts.max_message) return ZK_ETOOBIG;
    while (b->next - b->first >= b->opts.max_queue || b->ring_bytes + len > b->opts.max_queue_bytes) {
        if (b->first >= b->acked) { /* only messages not yet confirmed: refuse */
            b->stats.refused++;
            return ZK_ENOSPACE;
        }
        zk__ring_drop_first(b);
    }
    body = (char *)ZK_MALLOC(len);
    if (!body) return ZK_ENOMEM;
    memcpy(body, w->buf, len);
    e = zk__ring_at(b, b->next);
    e->body = body;
    e->len = len;
    e->ack = 0;
    e->at = zk_loop_now(b->loop);
    b->ring_bytes += len;
    b->next++;
    b->stats.published++;
    zk__broker_schedule(b);
    return 0;
}

/* ---- reading what other nodes sent ---- */

typedef struct zk__bmsg {
    int kind;                    /* 'M', 'H', 'R' */
    const char *node;            /* ZK__NODE_LEN bytes */
    int replay;
    uint64_t age, seq, flags;
    const char *except;          /* 22 bytes, or NULL */
    uint64_t rooms, ids;
    const char *list, *list_end; /* rooms and ids, then the type */
    zk_str type;
    char *payload;
    size_t payload_len;
    const char *target;          /* R */
} zk__bmsg;

/* A decimal up to the next byte in stop; *p moves past that byte. */
ZK__PRIVATE int zk__bm_num(const char **p, const char *end, char stop, uint64_t *out) {
    const char *s = *p;
    uint64_t v = 0;
    if (s >= end || *s < '0' || *s > '9') return -1;
    while (s < end && *s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
        s++;
    }
    if (s >= end || *s != stop) return -1;
    *p = s + 1;
    *out = v;
    return 0;
}

ZK__PRIVATE int zk__bm_node(const char **p, const char *end, const char **out) {
    size_t i;
    if ((size_t)(end - *p) < ZK__NODE_LEN + 1) return -1;
    for (i = 0; i < ZK__NODE_LEN; i++) {
        char c = (*p)[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return -1;
    }
    *out = *p;
    *p += ZK__NODE_LEN;
    return 0;
}

/* One "<len>:<bytes>" of at most max bytes. */
ZK__PRIVATE int zk__bm_net(const char **p, const char *end, size_t max, zk_str *out) {
    uint64_t n;
    if (zk__bm_num(p, end, ':', &n) < 0 || n > max || n > (uint64_t)(end - *p)) return -1;
    out->ptr = *p;
    out->len = (size_t)n;
    *p += n;
    return 0;
}

ZK__PRIVATE int zk__bmsg_parse(char *buf, size_t len, zk__bmsg *m) {
    const char *p = buf, *end = buf + len;
    uint64_t i;
    memset(m, 0, sizeof *m);
    if (len < 6 || memcmp(p, "ZK1 ", 4) != 0 || p[5] != ' ') return -1;
    m->kind = p[4];
    p += 6;
    if (zk__bm_node(&p, end, &m->node) < 0 || *p++ != ' ') return -1;
    if (m->kind == 'H') {
        uint64_t n;
        if (zk__bm_num(&p, end, ' ', &m->seq) < 0 || zk__bm_num(&p, end, '\n', &n) < 0) return -1;
        if (n > ZK__BROKER_MAX_NODES) return -1;
        m->rooms = n;
        m->list = p;
        m->list_end = end;
        return 0;
    }
    if (m->kind == 'R') {
        if (zk__bm_num(&p, end, ' ', &m->seq) < 0 || zk__bm_node(&p, end, &m->target) < 0) return -1;
        return *p == '\n' ? 0 : -1;
    }
    if (m->kind != 'M' || end - p < 2 || (p[0] != 'L' && p[0] != 'P') || p[1] != ' ') return -1;
    m->replay = p[0] == 'P';
    p += 2;
    if (end - p < ZK__AGE_DIGITS + 1 || zk__bm_num(&p, end, ' ', &m->age) < 0) return -1;
    if (zk__bm_num(&p, end, ' ', &m->seq) < 0 || !m->seq || zk__bm_num(&p, end, ' ', &m->flags) < 0 ||
        m->flags > 7)
        return -1;
    if (end - p >= 2 && p[0] == '-' && p[1] == ' ') { /* ids may start with '-' too */
        p++;
    } else {
        if (end - p < 22) return -1;
        m->except = p;
        p += 22;
    }
    if (p >= end || *p++ != ' ') return -1;
    if (zk__bm_num(&p, end, ' ', &m->rooms) < 0 || zk__bm_num(&p, end, '\n', &m->ids) < 0) return -1;
    m->list = p;
    for (i = 0; i < m->rooms + m->ids; i++) {
        zk_str s;
        if (zk__bm_net(&p, end, i < m->rooms ? ZK_ROOM_MAX_NAME : 22, &s) < 0) return -1;
        if (memchr(s.ptr, 0, s.len) || (i >= m->rooms && s.len != 22)) return -1;
    }
    m->list_end = p;
    if (zk__bm_net(&p, end, ZK_ROUTE_MAX_NAME, &m->type) < 0 || !m->type.len ||
        !zk_utf8_valid(m->type.ptr, m->type.len))
        return -1;
    m->payload = buf + (p - buf);
    m->payload_len = (size_t)(end - p);
    return 0;
}

/* Delivers a message to this node's recipients that were there when it was
   sent (sent_at, our clock). */
ZK__PRIVATE void zk__broker_deliver(zk_broker *b, zk__bmsg *m, uint64_t sent_at) {
    zk_app *app = b->app;
    zk_target t;
    zk_str payload = {NULL, 0};
    const char *p = m->list;
    zk__member *ex = NULL;
    uint64_t i;
    int n = 0;
    if (m->payload_len) { /* checked on a copy: the bytes go out as they came */
        zk_writer *w = &b->scratch;
        zk_writer_reset(w);
        zk__w_put(w, m->payload, m->payload_len);
        if (w->err || zk_json_parse(&b->doc, w->buf, w->len) != ZK_OK) {
            b->stats.invalid++;
            return;
        }
        payload.ptr = m->payload;
        payload.len = m->payload_len;
    }
    if (zk__app_frame_of(app, m->type, payload) < 0) {
        b->stats.invalid++;
        return;
    }
    memset(&t, 0, sizeof t);
    t.delivery = (int)(m->flags >> 1);
    if (m->except) {
        ex = (zk__member *)zk__map_get(&app->ids, m->except, 22);
        if (ex) t.except = ex->conn;
    }
    b->stats.received++;
    app->mark++;
    if (m->flags & 1) {
        for (i = 0; i < app->count; i++)
            if (app->members[i]->since <= sent_at) n += zk__deliver_to(app, app->members[i], &t, app->frame);
    } else {
        for (i = 0; i < m->rooms + m->ids; i++) {
            zk_str s;
            if (zk__bm_net(&p, m->list_end, ZK_ROOM_MAX_NAME, &s) < 0) break; /* parsed before: cannot */
            if (i < m->rooms) {
                zk__room *rm = (zk__room *)zk__map_get(&app->rooms, s.ptr, s.len);
                size_t j;
                for (j = 0; rm && j < rm->count; j++)
                    if (rm->seats[j].joined <= sent_at) n += zk__deliver_to(app, rm->seats[j].member, &t, app->frame);
            } else {
                zk__member *mm = (zk__member *)zk__map_get(&app->ids, s.ptr, 22);
                if (mm && mm->since <= sent_at) n += zk__deliver_to(app, mm, &t, app->frame);
            }
        }
    }
    b->stats.delivered += (uint64_t)n;
}

ZK__PRIVATE zk__origin *zk__origin_find(zk_broker *b, const char *node) {
    size_t i;
    for (i = 0; i < b->origin_count; i++)
        if (memcmp(b->origins[i].node, node, ZK__NODE_LEN) == 0) return &b->origins[i];
    return NULL;
}

ZK__PRIVATE void zk__origin_clear(zk__origin *o) {
    while (o->held) {
        zk__held *h = o->held;
        o->held = h->next;
        ZK_FREE(h);
    }
    o->held_count = 0;
    o->hold_until = 0;
}

/* A node heard of for the first time: everything up to seq counts as seen
   (it is not ours to replay). The least recently heard goes when full. */
ZK__PRIVATE zk__origin *zk__origin_add(zk_broker *b, const char *node, uint64_t seq) {
    zk__origin *o;
    if (b->origin_count == ZK__BROKER_MAX_NODES) {
        size_t i, old = 0;
        for (i = 1; i < b->origin_count; i++)
            if (b->origins[i].heard < b->origins[old].heard) old = i;
        zk__origin_clear(&b->origins[old]);
        b->origins[old] = b->origins[--b->origin_count];
    }
    if (!b->origins) {
        b->origins = (zk__origin *)ZK_MALLOC(ZK__BROKER_MAX_NODES * sizeof *b->origins);
        if (!b->origins) return NULL;
    }
    o = &b->origins[b->origin_count++];
    memset(o, 0, sizeof *o);
    memcpy(o->node, node, ZK__NODE_LEN);
    o->seen = seq;
    memset(o->bits, 0xff, sizeof o->bits);
    o->heard = zk_loop_now(b->loop);
    b->stats.nodes = b->origin_count;
    return o;
}

/* 1 when seq was delivered already (or is too old to tell). */
ZK__PRIVATE int zk__origin_seen(const zk__origin *o, uint64_t seq) {
    uint64_t d;
    if (seq > o->seen) return 0;
    d = o->seen - seq;
    if (d >= ZK__DEDUP_WINDOW) return 1;
    return (int)((o->bits[d / 64] >> (d % 64)) & 1);
}

ZK__PRIVATE void zk__origin_mark(zk__origin *o, uint64_t seq) {
    uint64_t d;
    if (seq > o->seen) {
        uint64_t k = seq - o->seen;
        size_t words = ZK__DEDUP_WINDOW / 64, i;
        if (k >= ZK__DEDUP_WINDOW) {
            memset(o->bits, 0, sizeof o->bits);
        } else {
            size_t ws = (size_t)(k / 64), bs = (size_t)(k % 64);
            for (i = words; i-- > 0;) {
                uint64_t v = i >= ws ? o->bits[i - ws] << bs : 0;
                if (bs && i >= ws + 1) v |= o->bits[i - ws - 1] >> (64 - bs);
                o->bits[i] = v;
            }
        }
        o->seen = seq;
        d = 0;
    } else {
        d = o->seen - seq;
        if (d >= ZK__DEDUP_WINDOW) return;
    }
    o->bits[d / 64] |= (uint64_t)1 << (d % 64);
}

ZK__PRIVATE void zk__broker_take(zk_broker *b, zk__origin *o, zk__bmsg *m, uint64_t sent_at) {
    if (zk__origin_seen(o, m->seq)) {
        b->stats.duplicates++;
        return;
    }
    zk__origin_mark(o, m->seq);
    zk__broker_deliver(b, m, sent_at);
}

/* When m was sent, on our clock, plus the slack. */
ZK__PRIVATE uint64_t zk__bmsg_sent_at(zk_broker *b, const zk__bmsg *m) {
    uint64_t now = zk_loop_now(b->loop) + ZK__JOIN_SLACK_MS;
    return m->age < now ? now - m->age : 0;
}

/* Stops waiting for o's replay: what was held goes out in order. */
ZK__PRIVATE void zk__origin_release(zk_broker *b, zk__origin *o) {
    zk__held *h = o->held;
    o->held = NULL;
    o->held_count = 0;
    o->hold_until = 0;
    while (h) {
        zk__held *next = h->next;
        zk__bmsg m;
        if (zk__bmsg_parse((char *)(h + 1), h->len, &m) == 0) zk__broker_take(b, o, &m, h->sent_at);
        ZK_FREE(h);
        h = next;
    }
}

ZK__PRIVATE void zk__broker_hold(zk_broker *b, zk__origin *o, zk__bmsg *m, const char *body, size_t len) {
    zk__held **pp = &o->held, *h;
    if (zk__origin_seen(o, m->seq)) {
        b->stats.duplicates++;
        return;
    }
    while (*pp && (*pp)->seq < m->seq) pp = &(*pp)->next;
    if (*pp && (*pp)->seq == m->seq) {
        b->stats.duplicates++;
        return;
    }
    h = (zk__held *)ZK_MALLOC(sizeof *h + len);
    if (!h) { /* cannot wait: deliver now */
        zk__origin_release(b, o);
        zk__broker_take(b, o, m, zk__bmsg_sent_at(b, m));
        return;
    }
    h->seq = m->seq;
    h->sent_at = zk__bmsg_sent_at(b, m);
    h->len = len;
    memcpy(h + 1, body, len);
    h->next = *pp;
    *pp = h;
    if (++o->held_count >= b->opts.max_queue) zk__origin_release(b, o);
}

ZK__PRIVATE void zk__broker_mark_for(zk_broker *b, const char *node) {
    size_t i;
    for (i = 0; i < b->mark_count; i++)
        if (memcmp(b->marks[i], node, ZK__NODE_LEN) == 0) break;
    if (i == ZK__BROKER_MAX_MARKS) return; /* that node's hold times out instead */
    if (i == b->mark_count) {
        memcpy(b->marks[i], node, ZK__NODE_LEN);
        b->mark_count++;
    }
    b->mark_seq[i] = b->next - 1;
}

/* Another node came back: send it again what it missed of ours. */
ZK__PRIVATE void zk__broker_hello(zk_broker *b, zk__bmsg *m) {
    const char *p = m->list, *end = m->list_end;
    zk__origin *o = zk__origin_find(b, m->node);
    uint64_t i;
    if (!o) o = zk__origin_add(b, m->node, m->seq);
    else if (o->hold_until) b->hello_pending = 1; /* it missed our hello: again */
    if (o) o->heard = zk_loop_now(b->loop);
    for (i = 0; i < m->rooms; i++) {
        const char *node;
        uint64_t seen;
        if (zk__bm_node(&p, end, &node) < 0 || *p++ != ' ' || zk__bm_num(&p, end, '\n', &seen) < 0) {
            b->stats.invalid++;
            return;
        }
        if (memcmp(node, b->node, ZK__NODE_LEN) != 0) continue;
        if (seen + 1 < b->next) { /* it missed some */
            uint64_t from = seen + 1, s;
            if (from < b->first) {
                b->stats.forgotten += b->first - from;
                from = b->first;
            }
            for (s = from; s < b->sent; s++) {
                zk__bent *e = zk__ring_at(b, s);
                e->body[6 + ZK__NODE_LEN + 1] = 'P'; /* the flag, after "ZK1 M <node> " */
            }
            if (from < b->sent) {
                b->stats.replayed += b->sent - from;
                b->sent = from;
            }
            if (from < b->acked) b->acked = from;
        }
        zk__broker_mark_for(b, m->node);
    }
    zk__broker_schedule(b);
}

/* One message from the broker on one of our channels. */
ZK__PRIVATE void zk__broker_incoming(zk_broker *b, char *body, size_t len) {
    zk__bmsg m;
    zk__origin *o;
    if (zk__bmsg_parse(body, len, &m) < 0) {
        b->stats.invalid++;
        return;
    }
    if (memcmp(m.node, b->node, ZK__NODE_LEN) == 0) {
        b->stats.duplicates++;
        return;
    }
    if (m.kind == 'H') {
        zk__broker_hello(b, &m);
        return;
    }
    o = zk__origin_find(b, m.node);
    if (m.kind == 'R') {
        if (o && memcmp(m.target, b->node, ZK__NODE_LEN) == 0 && o->hold_until) zk__origin_release(b, o);
        return;
    }
    if (!o) {
        o = zk__origin_add(b, m.node, m.seq - 1);
        if (!o) return;
    }
    o->heard = zk_loop_now(b->loop);
    if (o->hold_until) {
        zk__broker_hold(b, o, &m, body, len);
        return;
    }
    if (m.replay && m.seq <= o->seen) { /* a replay for another node */
        b->stats.duplicates++;
        return;
    }
    zk__broker_take(b, o, &m, zk__bmsg_sent_at(b, &m));
}

ZK__PRIVATE void zk__broker_hold_timer(zk_timer *t) { zk__broker_hold_check((zk_broker *)t->data); }

ZK__PRIVATE void zk__broker_hold_check(zk_broker *b) {
    uint64_t now = zk_loop_now(b->loop), next = 0;
    size_t i;
    for (i = 0; i < b->origin_count; i++) {
        zk__origin *o = &b->origins[i];
        if (!o->hold_until) continue;
        if (o->hold_until <= now) zk__origin_release(b, o);
        else if (!next || o->hold_until < next) next = o->hold_until;
    }
    if (next) zk_timer_start(&b->hold_timer, next - now, 0);
}

/* The subscribing connection is (re)connecting: hold every known node's
   messages until it says what we missed (or until the hold runs out). */
ZK__PRIVATE void zk__broker_hold_all(zk_broker *b, uint64_t until) {
    size_t i;
    for (i = 0; i < b->origin_count; i++) b->origins[i].hold_until = until;
    zk__broker_hold_check(b);
}

/* ---- writing to the broker ---- */

/* Hello: our last confirmed seq and the last seq we delivered per node. */
ZK__PRIVATE int zk__broker_hello_body(zk_broker *b, zk_writer *w) {
    size_t i;
    zk_writer_reset(w);
    zk__w_put(w, "ZK1 H ", 6);
    zk__w_put(w, b->node, ZK__NODE_LEN);
    zk__w_put(w, " ", 1);
    zk__bw_num(w, b->acked ? b->acked - 1 : 0);
    zk__w_put(w, " ", 1);
    zk__bw_num(w, b->origin_count);
    zk__w_put(w, "\n", 1);
    for (i = 0; i < b->origin_count; i++) {
        zk__w_put(w, b->origins[i].node, ZK__NODE_LEN);
        zk__w_put(w, " ", 1);
        zk__bw_num(w, b->origins[i].seen);
        zk__w_put(w, "\n", 1);
    }
    return w->err;
}

/* One message to one channel (NULL room: the reserved channel). */
ZK__PRIVATE int zk__broker_put(zk_broker *b, const char *room, size_t rlen, const char *body, size_t len) {
    zk__bconn *bc = zk__broker_pubconn(b);
    zk_str ch, msg;
    int rc = zk__broker_channel(b, room, rlen, &b->scratch);
    if (rc < 0) return rc;
    ch = zk__bw_result(&b->scratch);
    msg.ptr = body;
    msg.len = len;
    b->stats.publishes++;
    if (b->kind == ZK__B_REDIS) {
        zk_str argv[3];
        argv[0].ptr = "PUBLISH";
        argv[0].len = 7;
        argv[1] = ch;
        argv[2] = msg;
        return zk__bout_resp(bc, 3, argv);
    } else {
        size_t need = ch.len + len + 48;
        char *p = zk__bout(bc, need);
        int n;
        if (!p) return ZK_ENOMEM;
        n = zk_nats_pub(p, need, ch, msg);
        if (n < 0) return n;
        bc->out_len += (size_t)n;
        return 0;
    }
}

/* Every copy of ring entry seq: one per room, or one on the reserved
   channel (everyone, ids). */
ZK__PRIVATE int zk__broker_put_entry(zk_broker *b, zk__bent *e) {
    zk__bmsg m;
    const char *p;
    uint64_t i;
    int rc = 0;
    char *copy;
    uint64_t age = zk_loop_now(b->loop) - e->at;
    char digits[ZK__AGE_DIGITS + 1];
    if (age > 9999999999ull) age = 9999999999ull;
    snprintf(digits, sizeof digits, "%010llu", (unsigned long long)age);
    memcpy(e->body + ZK__AGE_AT, digits, ZK__AGE_DIGITS);
    if (zk__bmsg_parse(e->body, e->len, &m) < 0) return 0; /* ours, so it cannot happen; never block the ring */
    copy = e->body;
    if ((m.flags & 1) || m.ids) rc = zk__broker_put(b, NULL, 0, copy, e->len);
    p = m.list;
    for (i = 0; rc == 0 && i < m.rooms; i++) {
        zk_str s;
        if (zk__bm_net(&p, m.list_end, ZK_ROOM_MAX_NAME, &s) < 0) break; /* parsed: cannot */
        rc = zk__broker_put(b, s.ptr, s.len, copy, e->len);
    }
    return rc;
}

ZK__PRIVATE void zk__broker_flush(zk_broker *b) {
    zk__bconn *bc = zk__broker_pubconn(b);
    int rc = 0, wrote = 0;
    if (bc->state != ZK__BC_READY) return;
    if (b->hello_pending && b->conn[0].state == ZK__BC_READY) {
        rc = zk__broker_hello_body(b, &b->hello_writer);
        if (rc == 0) {
            zk_str h = zk__bw_result(&b->hello_writer);
            rc = zk__broker_put(b, NULL, 0, h.ptr, h.len);
        }
        b->hello_pending = 0;
        wrote = 1;
    }
    while (rc == 0 && b->sent < b->next && bc->out_len - bc->out_off < ZK__BROKER_OUT_HIGH) {
        zk__bent *e = zk__ring_at(b, b->sent);
        if (b->kind == ZK__B_NATS && e->len > b->nats_max_payload) {
            b->stats.oversize++; /* the server would close the connection over it */
            e->ack = 0;
        } else {
            rc = zk__broker_put_entry(b, e);
            e->ack = bc->writes + (b->kind == ZK__B_NATS); /* NATS: the PING below */
            wrote = 1;
        }
        b->sent++;
    }
    if (rc == 0 && b->sent == b->next && b->mark_count) {
        size_t i;
        for (i = 0; rc == 0 && i < b->mark_count; i++) {
            char line[64];
            int n = snprintf(line, sizeof line, "ZK1 R %.16s %llu %.16s\n", b->node,
                             (unsigned long long)b->mark_seq[i], b->marks[i]);
            rc = zk__broker_put(b, NULL, 0, line, (size_t)n);
        }
        b->mark_count = 0;
        wrote = 1;
    }
    if (rc == 0 && b->kind == ZK__B_NATS && wrote) { /* its PONG confirms what went before */
        rc = zk__bout_raw(bc, "PING\r\n", 6);
        bc->writes++;
    }
    if (rc < 0) {
        zk_str none = {NULL, 0};
        zk__bconn_fail(bc, "cannot write to the broker", none);
        return;
    }
    zk__bconn_write(bc);
}

/* ---- reading from the broker ---- */

ZK__PRIVATE void zk__broker_confirm(zk_broker *b, uint64_t answers) {
    while (b->acked < b->sent && zk__ring_at(b, b->acked)->ack <= answers) b->acked++;
}

ZK__PRIVATE void zk__bconn_ready(zk__bconn *bc) {
    zk_broker *b = bc->b;
    uint64_t now = zk_loop_now(b->loop);
    size_t i;
    bc->state = ZK__BC_READY; /* the backoff starts over once it has lasted (first ping tick) */
    b->stats.connects++;
    zk_timer_start(&bc->timer, b->opts.ping_ms, 0);
    if (bc->sub) {
        b->hello_pending = 1;
        for (i = 0; i < b->origin_count; i++)
            if (b->origins[i].hold_until) b->origins[i].hold_until = now + b->opts.hold_ms;
        zk__broker_hold_check(b);
    }
    zk__broker_update_state(b);
    zk__broker_flush(b);
    if (bc->state == ZK__BC_READY && bc->out_len > bc->out_off) zk__bconn_write(bc);
}

/* Every array reply of a subscribing Redis connection starts with its kind. */
ZK__PRIVATE int zk__resp_is(const zk_resp_reply *r, const char *kind) {
    size_t n = strlen(kind);
    return r->count >= 2 && r->items[0].type == ZK_RESP_ARRAY && r->items[1].type == ZK_RESP_BULK &&
           r->items[1].str.len == n && memcmp(r->items[1].str.ptr, kind, n) == 0;
}

ZK__PRIVATE void zk__redis_reply(zk__bconn *bc, zk_resp_reply *r) {
    zk_broker *b = bc->b;
    const zk_resp_item *it = &r->items[0];
    zk_str none = {NULL, 0};
    if (bc->auth_wait) {
        bc->auth_wait = 0;
        if (!bc->sub) bc->answers++;
        if (it->type != ZK_RESP_SIMPLE) {
            zk__bconn_fail(bc, "redis refused AUTH", it->type == ZK_RESP_ERROR ? it->str : none);
            return;
        }
        return;
    }
    if (it->type == ZK_RESP_ERROR) {
        if (bc->sub || bc->state != ZK__BC_READY) {
            zk__bconn_fail(bc, "redis error", it->str);
            return;
        }
        zk__broker_set_error(b, "redis error", it->str); /* a PUBLISH refused: counted as answered */
    }
    if (!bc->sub) {
        if (it->type == ZK_RESP_ARRAY) {
            zk__bconn_fail(bc, "unexpected reply from redis", none);
            return;
        }
        bc->answers++;
        if (bc->state == ZK__BC_HANDSHAKE) {
            if (bc->answers == bc->writes) zk__bconn_ready(bc);
            return;
        }
        zk__broker_confirm(b, bc->answers);
        zk__broker_schedule(b);
        return;
    }
    if (zk__resp_is(r, "message") && r->count == 4 && r->items[3].type == ZK_RESP_BULK) {
        zk__broker_incoming(b, (char *)r->items[3].str.ptr, r->items[3].str.len);
    } else if (zk__resp_is(r, "subscribe")) {
        if (bc->state == ZK__BC_HANDSHAKE && bc->pending && --bc->pending == 0) zk__bconn_ready(bc);
    } else if (!zk__resp_is(r, "unsubscribe") && !zk__resp_is(r, "pong")) {
        zk__bconn_fail(bc, "unexpected reply from redis", none);
    }
}

/* INFO's max_payload, when it has one. */
ZK__PRIVATE void zk__nats_info(zk_broker *b, zk_str json) {
    zk_writer *w = &b->scratch;
    zk_writer_reset(w);
    zk__w_put(w, json.ptr, json.len);
    if (!w->err && zk_json_parse(&b->doc, w->buf, w->len) == ZK_OK) {
        int64_t mp = zk_value_int(zk_value_get(zk_doc_root(&b->doc), "max_payload"), 0);
        if (mp > 0) b->nats_max_payload = (size_t)mp;
    }
}

ZK__PRIVATE int zk__bout_json_str(zk_writer *w, const char *key, const char *val) {
    if (!val) return 0;
    zk_write_key(w, key);
    zk_write_str(w, val);
    return 0;
}

ZK__PRIVATE void zk__nats_op(zk__bconn *bc, zk_nats_op *op) {
    zk_broker *b = bc->b;
    zk_str none = {NULL, 0};
    if (bc->state == ZK__BC_HANDSHAKE && !bc->pending) { /* INFO comes first */
        zk_writer *w = &b->hello_writer;
        zk_str cj;
        if (op->type != ZK_NATS_INFO) {
            zk__bconn_fail(bc, "not a NATS server (no INFO)", none);
            return;
        }
        b->nats_max_payload = (size_t)1 << 20;
        zk__nats_info(b, op->text);
        zk_writer_reset(w);
        zk_write_object(w);
        zk_write_key(w, "verbose");
        zk_write_bool(w, 0);
        zk_write_key(w, "pedantic");
        zk_write_bool(w, 0);
        zk_write_key(w, "name");
        zk_write_str(w, "zocket.h");
        zk_write_key(w, "lang");
        zk_write_str(w, "c");
        zk_write_key(w, "version");
        zk_write_str(w, "1");
        zk_write_key(w, "protocol");
        zk_write_int(w, 1);
        zk_write_key(w, "echo");
        zk_write_bool(w, 0); /* our own messages need not come back */
        if (b->user) {
            zk__bout_json_str(w, "user", b->user);
            zk__bout_json_str(w, "pass", b->password ? b->password : "");
        } else if (b->password) {
            zk__bout_json_str(w, "auth_token", b->password);
        }
        zk_write_end(w);
        cj = zk_writer_result(w);
        if (!cj.ptr || zk__bout_raw(bc, "CONNECT ", 8) < 0 || zk__bout_raw(bc, cj.ptr, cj.len) < 0 ||
            zk__bout_raw(bc, "\r\n", 2) < 0 || zk__broker_sub_all(b) < 0 || zk__bout_raw(bc, "PING\r\n", 6) < 0) {
            zk__bconn_fail(bc, "out of memory", none);
            return;
        }
        bc->writes++;
        bc->pending = 1;
        zk__bconn_write(bc);
        return;
    }
    switch (op->type) {
    case ZK_NATS_PING:
        if (zk__bout_raw(bc, "PONG\r\n", 6) < 0) zk__bconn_fail(bc, "out of memory", none);
        else zk__bconn_write(bc);
        break;
    case ZK_NATS_PONG:
        bc->answers++;
        if (bc->state == ZK__BC_HANDSHAKE) {
            if (bc->answers >= bc->writes) zk__bconn_ready(bc);
            break;
        }
        zk__broker_confirm(b, bc->answers);
        zk__broker_schedule(b);
        break;
    case ZK_NATS_ERR:
        zk__bconn_fail(bc, "nats error", op->text);
        break;
    case ZK_NATS_MSG:
        zk__broker_incoming(b, (char *)op->payload.ptr, op->payload.len);
        break;
    case ZK_NATS_INFO:
        zk__nats_info(b, op->text);
        break;
    default: /* +OK */
        break;
    }
}

ZK__PRIVATE void zk__bconn_readable(zk__bconn *bc) {
    zk_broker *b = bc->b;
    size_t limit = b->opts.max_message + 65536, at = 0;
    zk_str none = {NULL, 0};
    int reads;
    for (reads = 0; reads < 4; reads++) {
        ssize_t n;
        if (bc->in_cap - bc->in_len < 4096) {
            size_t cap = bc->in_cap ? bc->in_cap * 2 : 16384;
            char *p;
            if (bc->in_len >= limit) {
                zk__bconn_fail(bc, "message from the broker too large", none);
                return;
            }
            if (cap > limit) cap = limit;
            if (cap < bc->in_len + 4096) cap = bc->in_len + 4096;
            p = (char *)ZK_REALLOC(bc->in, cap);
            if (!p) {
                zk__bconn_fail(bc, "out of memory", none);
                return;
            }
            bc->in = p;
            bc->in_cap = cap;
        }
        n = recv(bc->io.fd, bc->in + bc->in_len, bc->in_cap - bc->in_len, 0);
        if (n == 0) {
            zk__bconn_fail(bc, "the broker closed the connection", none);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            zk__bconn_fail(bc, "broker read failed", none);
            return;
        }
        bc->in_len += (size_t)n;
        bc->last_rx = zk_loop_now(b->loop);
        bc->ping_out = 0;
        if ((size_t)n < 4096) break;
    }
    while (at < bc->in_len && bc->io.fd >= 0) {
        int used;
        if (b->kind == ZK__B_REDIS) {
            zk_resp_reply r;
            used = zk_resp_parse(bc->in + at, bc->in_len - at, b->opts.max_message + 4096, &r);
            if (used > 0) {
                at += (size_t)used;
                zk__redis_reply(bc, &r);
                continue;
            }
        } else {
            zk_nats_op op;
            used = zk_nats_parse(bc->in + at, bc->in_len - at, b->opts.max_message + 4096, &op);
            if (used > 0) {
                at += (size_t)used;
                zk__nats_op(bc, &op);
                continue;
            }
        }
        if (used == ZK_EAGAIN) break;
        zk__bconn_fail(bc, used == ZK_ETOOBIG ? "message from the broker too large"
                                              : "the broker sent something that is not its protocol", none);
        return;
    }
    if (bc->io.fd < 0) return;
    if (at) {
        memmove(bc->in, bc->in + at, bc->in_len - at);
        bc->in_len -= at;
    }
}

/* ---- connecting ---- */

ZK__PRIVATE void zk__bconn_connected(zk__bconn *bc) {
    zk_broker *b = bc->b;
    zk_str none = {NULL, 0};
    int rc = 0;
    bc->state = ZK__BC_HANDSHAKE;
    bc->last_rx = zk_loop_now(b->loop);
    zk__io_set(b->loop, &bc->io, ZK__IO_READ);
    if (bc->sub && b->origin_count)
        zk__broker_hold_all(b, zk_loop_now(b->loop) + b->opts.connect_timeout_ms + b->opts.hold_ms);
    if (b->kind == ZK__B_REDIS) {
        if (b->password) {
            zk_str argv[3];
            size_t argc = 0;
            argv[argc].ptr = "AUTH";
            argv[argc++].len = 4;
            if (b->user) {
                argv[argc].ptr = b->user;
                argv[argc++].len = strlen(b->user);
            }
            argv[argc].ptr = b->password;
            argv[argc++].len = strlen(b->password);
            rc = zk__bout_resp(bc, argc, argv);
            bc->auth_wait = 1;
        }
        if (rc == 0 && bc->sub) {
            rc = zk__broker_sub_all(b);
        } else if (rc == 0) {
            zk_str ping;
            ping.ptr = "PING";
            ping.len = 4;
            rc = zk__bout_resp(bc, 1, &ping);
        }
        if (rc < 0) {
            zk__bconn_fail(bc, "out of memory", none);
            return;
        }
        zk__bconn_write(bc);
    }
    /* NATS: the server speaks first (INFO) */
}

ZK__PRIVATE void zk__bconn_event(zk__io *io, unsigned events) {
    zk__bconn *bc = (zk__bconn *)(void *)((char *)io - offsetof(zk__bconn, io));
    if (bc->state == ZK__BC_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (!(events & (ZK__IO_WRITE | ZK__IO_ERROR))) return;
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) {
            zk_str d;
            d.ptr = strerror(err);
            d.len = strlen(d.ptr);
            zk__bconn_fail(bc, "cannot connect to the broker", d);
            return;
        }
        zk__bconn_connected(bc);
        return;
    }
    if (events & ZK__IO_WRITE) zk__bconn_write(bc);
    if (bc->io.fd >= 0 && (events & (ZK__IO_READ | ZK__IO_ERROR))) zk__bconn_readable(bc);
}

ZK__PRIVATE void zk__bconn_start(zk__bconn *bc) {
    zk_broker *b = bc->b;
    int fd = socket(b->addr.ss_family, SOCK_STREAM, 0), rc;
    zk_str d;
    if (fd < 0 || zk__set_nonblock(fd) < 0) {
        if (fd >= 0) close(fd);
        d.ptr = strerror(errno);
        d.len = strlen(d.ptr);
        zk__bconn_fail(bc, "cannot make a socket", d);
        return;
    }
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    zk__tcp_tune(fd);
    zk__io_init(&bc->io, fd, zk__bconn_event);
    bc->state = ZK__BC_CONNECTING;
    zk_timer_start(&bc->timer, b->opts.connect_timeout_ms, 0);
    rc = connect(fd, (struct sockaddr *)&b->addr, b->addr_len);
    if (rc < 0 && errno != EINPROGRESS) {
        d.ptr = strerror(errno);
        d.len = strlen(d.ptr);
        zk__bconn_fail(bc, "cannot connect to the broker", d);
        return;
    }
    zk__io_set(b->loop, &bc->io, ZK__IO_WRITE);
}

ZK__PRIVATE void zk__bconn_timer(zk_timer *t) {
    zk__bconn *bc = (zk__bconn *)t->data;
    zk_broker *b = bc->b;
    zk_str none = {NULL, 0};
    switch (bc->state) {
    case ZK__BC_WAIT:
        zk__bconn_start(bc);
        break;
    case ZK__BC_CONNECTING:
    case ZK__BC_HANDSHAKE:
        zk__bconn_fail(bc, "broker connect timed out", none);
        break;
    case ZK__BC_READY: {
        uint64_t now = zk_loop_now(b->loop);
        int rc = 0;
        bc->attempts = 0;
        if (bc->ping_out) {
            zk__bconn_fail(bc, "the broker stopped answering", none);
            break;
        }
        if (now - bc->last_rx >= b->opts.ping_ms) {
            if (b->kind == ZK__B_REDIS) {
                zk_str ping;
                ping.ptr = "PING";
                ping.len = 4;
                rc = zk__bout_resp(bc, 1, &ping);
            } else {
                rc = zk__bout_raw(bc, "PING\r\n", 6);
                bc->writes++;
            }
            if (rc < 0) {
                zk__bconn_fail(bc, "out of memory", none);
                break;
            }
            bc->ping_out = 1;
            zk__bconn_write(bc);
        }
        zk_timer_start(&bc->timer, b->opts.ping_ms, 0);
        break;
    }
    default:
        break;
    }
}

/* A connection went: what it had not confirmed goes again on the next. */
ZK__PRIVATE void zk__broker_lost(zk_broker *b, zk__bconn *bc) {
    if (bc == zk__broker_pubconn(b)) {
        b->sent = b->acked;
        zk__work_cancel(b->loop, &b->flush_work);
    }
}

/* ---- the API ---- */

ZK__PRIVATE int zk__hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A percent-decoded copy of s[0..n), or NULL (bad escape, NUL, no memory). */
ZK__PRIVATE char *zk__url_part(const char *s, size_t n) {
    char *out = (char *)ZK_MALLOC(n + 1), *o = out;
    size_t i;
    if (!out) return NULL;
    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? zk__hexval(s[i + 1]) : -1, lo = i + 2 < n ? zk__hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                ZK_FREE(out);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
            continue;
        }
        *o++ = s[i];
    }
    *o = 0;
    return out;
}

/* scheme://[user[:password]@]host[:port][/...] */
ZK__PRIVATE int zk__broker_url(zk_broker *b, const char *url) {
    const char *p, *at, *end, *host, *hend, *colon;
    char hostbuf[256];
    long port;
    size_t hn;
    if (strncmp(url, "redis://", 8) == 0) {
        b->kind = ZK__B_REDIS;
        p = url + 8;
        port = 6379;
    } else if (strncmp(url, "nats://", 7) == 0) {
        b->kind = ZK__B_NATS;
        p = url + 7;
        port = 4222;
    } else {
        return ZK_EINVAL;
    }
    end = p + strcspn(p, "/?#");
    if (*end == '/') { /* redis://host/0: the database does not matter to pub/sub */
        const char *d = end + 1;
        if (b->kind != ZK__B_REDIS) return ZK_EINVAL;
        while (*d >= '0' && *d <= '9') d++;
        if (*d) return ZK_EINVAL;
    } else if (*end) {
        return ZK_EINVAL;
    }
    at = NULL;
    for (host = p; host < end; host++)
        if (*host == '@') at = host;
    host = p;
    if (at) {
        const char *c = (const char *)memchr(p, ':', (size_t)(at - p));
        if (c) {
            if (c > p && !(b->user = zk__url_part(p, (size_t)(c - p)))) return ZK_EINVAL;
            if (!(b->password = zk__url_part(c + 1, (size_t)(at - c - 1)))) return ZK_EINVAL;
        } else if (!(b->password = zk__url_part(p, (size_t)(at - p)))) { /* a token (NATS) or a password */
            return ZK_EINVAL;
        }
        host = at + 1;
    }
    if (*host == '[') {
        hend = (const char *)memchr(host, ']', (size_t)(end - host));
        if (!hend) return ZK_EINVAL;
        host++;
        colon = hend + 1 < end ? hend + 1 : NULL;
        if (colon && *colon != ':') return ZK_EINVAL;
    } else {
        colon = (const char *)memchr(host, ':', (size_t)(end - host));
        hend = colon ? colon : end;
    }
    hn = (size_t)(hend - host);
    if (hn >= sizeof hostbuf) return ZK_EINVAL;
    memcpy(hostbuf, host, hn);
    hostbuf[hn] = 0;
    if (colon) {
        char *e;
        if (colon + 1 >= end || colon[1] < '0' || colon[1] > '9') return ZK_EINVAL;
        port = strtol(colon + 1, &e, 10);
        if (e != end || port < 1 || port > 65535) return ZK_EINVAL;
    }
    return zk__resolve(hn ? hostbuf : "127.0.0.1", (int)port, &b->addr, &b->addr_len, 0);
}

ZK_API zk_broker *zk_broker_new(zk_app *app, const zk_broker_opts *opts, int *err) {
    zk_broker *b;
    int dummy, rc;
    size_t i;
    unsigned char rnd[16];
    if (!err) err = &dummy;
    *err = ZK_EINVAL;
    if (!app || !opts || !opts->url || app->broker) return NULL;
    b = (zk_broker *)ZK_MALLOC(sizeof *b);
    if (!b) {
        *err = ZK_ENOMEM;
        return NULL;
    }
    memset(b, 0, sizeof *b);
    b->app = app;
    b->loop = app->loop;
    b->opts = *opts;
    b->opts.url = NULL;
    b->opts.prefix = NULL;
    if (!b->opts.max_queue) b->opts.max_queue = 4096;
    if (!b->opts.max_queue_bytes) b->opts.max_queue_bytes = (size_t)8 << 20;
    if (!b->opts.max_message) b->opts.max_message = (size_t)1 << 20;
    if (!b->opts.connect_timeout_ms) b->opts.connect_timeout_ms = 5000;
    if (!b->opts.backoff_base_ms) b->opts.backoff_base_ms = 100;
    if (!b->opts.backoff_max_ms) b->opts.backoff_max_ms = 5000;
    if (!b->opts.ping_ms) b->opts.ping_ms = 5000;
    if (!b->opts.hold_ms) b->opts.hold_ms = 2000;
    b->nats_max_payload = (size_t)1 << 20;
    b->next_sid = 1; /* sid 1 is the reserved channel's */
    for (i = 0; i < 2; i++) {
        b->conn[i].b = b;
        b->conn[i].sub = i == 0;
        b->conn[i].io.fd = -1;
        zk_timer_init(b->loop, &b->conn[i].timer, zk__bconn_timer, &b->conn[i]);
    }
    zk_timer_init(b->loop, &b->hold_timer, zk__broker_hold_timer, b);
    b->flush_work.fn = zk__broker_flush_work;
    zk_writer_init(&b->scratch, NULL, 0);
    zk_writer_init(&b->hello_writer, NULL, 0);
    b->scratch.max = b->opts.max_message + 65536;
    {
        const char *pre = opts->prefix ? opts->prefix : "zocket";
        size_t n = strlen(pre);
        rc = n >= 1 && n <= 64 ? 0 : ZK_EINVAL;
        for (i = 0; rc == 0 && i < n; i++) {
            char c = pre[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
                rc = ZK_EINVAL;
        }
        if (rc == 0) memcpy(b->prefix, pre, n + 1);
    }
    if (rc == 0 && (b->opts.max_message > b->opts.max_queue_bytes || b->opts.backoff_base_ms > b->opts.backoff_max_ms))
        rc = ZK_EINVAL;
    if (rc == 0) rc = zk__broker_url(b, opts->url);
    if (rc == 0) {
        b->ring = (zk__bent *)ZK_MALLOC(b->opts.max_queue * sizeof *b->ring);
        if (!b->ring || b->opts.max_queue > SIZE_MAX / sizeof *b->ring) rc = ZK_ENOMEM;
        else memset(b->ring, 0, b->opts.max_queue * sizeof *b->ring);
    }
    for (i = 0; rc == 0 && i < app->rooms.cap; i++) { /* rooms the app has already */
        const zk__room *rm = (const zk__room *)app->rooms.slots[i].val;
        if (rm) rc = zk__broker_room(b, rm->name, rm->name_len, 1);
    }
    if (rc < 0) {
        *err = rc;
        zk_broker_free(b);
        return NULL;
    }
    zk__app_random(app, rnd);
    for (i = 0; i < ZK__NODE_LEN / 2; i++) {
        b->node[2 * i] = "0123456789abcdef"[rnd[i] >> 4];
        b->node[2 * i + 1] = "0123456789abcdef"[rnd[i] & 15];
    }
    b->next = b->first = b->acked = b->sent = 1;
    b->state = ZK_BROKER_CONNECTING;
    app->broker = b;
    *err = 0;
    for (i = 0; i < zk__broker_nconns(b); i++) zk__bconn_start(&b->conn[i]);
    return b;
}

ZK_API void zk_broker_free(zk_broker *b) {
    size_t i;
    if (!b) return;
    if (b->app && b->app->broker == b) b->app->broker = NULL;
    for (i = 0; i < 2; i++) {
        zk__bconn *bc = &b->conn[i];
        zk_timer_stop(&bc->timer);
        if (bc->io.fd >= 0) zk__bconn_close(bc);
        ZK_FREE(bc->in);
        ZK_FREE(bc->out);
    }
    zk_timer_stop(&b->hold_timer);
    zk__work_cancel(b->loop, &b->flush_work);
    while (b->ring && b->first < b->next) zk__ring_drop_first(b);
    ZK_FREE(b->ring);
    for (i = 0; i < b->origin_count; i++) zk__origin_clear(&b->origins[i]);
    ZK_FREE(b->origins);
    for (i = 0; i < b->rooms.cap; i++)
        if (b->rooms.slots[i].val) ZK_FREE(b->rooms.slots[i].val);
    zk__map_free(&b->rooms);
    zk_doc_free(&b->doc);
    zk_writer_free(&b->scratch);
    zk_writer_free(&b->hello_writer);
    ZK_FREE(b->user);
    ZK_FREE(b->password);
    ZK_FREE(b);
}

ZK_API zk_broker *zk_app_broker(const zk_app *app) { return app ? app->broker : NULL; }
ZK_API int zk_broker_state(const zk_broker *b) { return b->state; }
ZK_API const char *zk_broker_state_name(int state) {
    switch (state) {
    case ZK_BROKER_CONNECTING: return "connecting";
    case ZK_BROKER_OPEN: return "open";
    case ZK_BROKER_RECONNECTING: return "reconnecting";
    default: return "unknown";
    }
}
ZK_API const char *zk_broker_error(const zk_broker *b) { return b->error; }
ZK_API void *zk_broker_data(const zk_broker *b) { return b->opts.data; }
ZK_API const char *zk_broker_node(const zk_broker *b) { return b->node; }

ZK_API void zk_broker_get_stats(const zk_broker *b, zk_broker_stats *out) {
    uint64_t s;
    *out = b->stats;
    out->queued = (size_t)(b->next - b->acked);
    out->queued_bytes = 0;
    for (s = b->acked; s < b->next; s++) out->queued_bytes += b->ring[s % b->opts.max_queue].len;
    out->kept = (size_t)(b->next - b->first);
    out->nodes = b->origin_count;
}
#endif /* ZOCKET_IMPLEMENTATION_DONE */
#endif /* ZOCKET_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
This software is available under two licenses; choose whichever you prefer.
------------------------------------------------------------------------------
ALTERNATIVE A - MIT License
Copyright (c) 2026 the zocket.h authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose,
commercial or non-commercial, and by any means.
In jurisdictions that recognize copyright laws, the author or authors of this
software dedicate any and all copyright interest in the software to the public
domain. We make this dedication for the benefit of the public at large and to
the detriment of our heirs and successors. We intend this dedication to be an
overt act of relinquishment in perpetuity of all present and future rights to
this software under copyright law.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN
ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------
*/
