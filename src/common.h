#include "zocket_head.h"
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
