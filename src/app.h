#include "value.h"
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
