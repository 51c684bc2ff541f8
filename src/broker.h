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
