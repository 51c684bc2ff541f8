#include "app.h"
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
