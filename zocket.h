/* zocket.h - real-time apps over WebSocket, in one C file.
   https://github.com/ (vendored: this file is the whole library)

   USAGE
     In exactly one .c or .cpp file of your program:
         #define ZOCKET_IMPLEMENTATION
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
    X(ZK_ETIMEDOUT, -15, "timed out")

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

/* A small DFA: bytes fall in 12 classes; 9 states, 0 = between characters,
   8 = rejected (sticky). No surrogates (ED A0-BF), no overlongs (C0, C1,
   E0 80-9F, F0 80-8F), nothing above U+10FFFF (F4 90+, F5-FF). */
#define ZK__UTF8_ACCEPT 0u
#define ZK__UTF8_REJECT 8u

ZK__PRIVATE const unsigned char zk__utf8_class[256] = {
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
    3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,
    4,4,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,
    6,7,7,7,7,7,7,7,7,7,7,7,7,8,7,7,9,10,10,10,11,4,4,4,4,4,4,4,4,4,4,4,
};

ZK__PRIVATE const unsigned char zk__utf8_next[9 * 12] = {
    0,8,8,8,8,1,4,2,5,6,3,7,  /* state 0 */
    8,0,0,0,8,8,8,8,8,8,8,8,  /* state 1 */
    8,1,1,1,8,8,8,8,8,8,8,8,  /* state 2 */
    8,2,2,2,8,8,8,8,8,8,8,8,  /* state 3 */
    8,8,8,1,8,8,8,8,8,8,8,8,  /* state 4 */
    8,1,1,8,8,8,8,8,8,8,8,8,  /* state 5 */
    8,8,2,2,8,8,8,8,8,8,8,8,  /* state 6 */
    8,2,8,8,8,8,8,8,8,8,8,8,  /* state 7 */
    8,8,8,8,8,8,8,8,8,8,8,8,  /* state 8 */
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

/* Runs the validator over s[0..len) from state; returns the new state.
   ZK__UTF8_REJECT as soon as a byte cannot continue valid text. */
ZK__PRIVATE uint32_t zk__utf8_run(uint32_t state, const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        if (state == ZK__UTF8_ACCEPT) {
            while (i + 16 <= len && zk__ascii16(s + i)) i += 16;
            while (i < len && s[i] < 0x80) i++;
            if (i == len) break;
        }
        state = zk__utf8_next[state * 12 + zk__utf8_class[s[i]]];
        if (state == ZK__UTF8_REJECT) return state;
        i++;
    }
    return state;
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
    unsigned char *p = (unsigned char *)data, k[16];
    uint64_t k8;
    size_t i;
    for (i = 0; i < 16; i++) k[i] = mask[(offset + i) & 3];
#if ZK__SSE2
    if (len >= 64) {
        __m128i km = _mm_loadu_si128((const __m128i *)(const void *)k);
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

/* Makes room for n more bytes of the message being reassembled, growing
   geometrically but never past the end of the current frame. */
ZK__PRIVATE int zk__ws_reserve(zk_ws *ws, size_t n) {
    size_t need = ws->msg_len + n, cap, frame_end;
    unsigned char *p;
    if (need <= ws->msg_cap) return 0;
    frame_end = ws->msg_len + (size_t)ws->frame_left;
    cap = ws->msg_cap ? ws->msg_cap * 2 : 4096;
    if (cap > frame_end) cap = frame_end;
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
