#include "common.h"
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
