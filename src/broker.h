#include "client.h"
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
