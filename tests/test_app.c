/* Behaviour tests of zk_app: the Zocket protocol served over the loopback
   transport with a virtual clock. Clients are plain zocket WebSocket
   clients (zk_loopback_connect) that send raw JSON text with zk_conn_send
   and record every message they get, so what is checked is what is on the
   wire: envelopes byte for byte, close codes, who received what. A "raw
   peer" (one end of a loopback pair driven by hand) reads the HTTP answer
   to a refused upgrade.

   The library allocates through a wrapper that counts live allocations
   and bytes, so each test ends by checking that nothing is left, and the
   rooms test checks that a million join/leave cycles leave the bytes in
   use exactly where they were. */
#define _GNU_SOURCE /* clock_gettime, MAP_ANONYMOUS under -std=c99 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* Every allocation carries its size in front, so live bytes can be told. */
typedef union alloc_head {
    size_t size;
    long double align_ld;
    void *align_p;
    long long align_ll;
} alloc_head;
static long lib_live_allocs;
static long long lib_live_bytes;
static long lib_alloc_calls, lib_fail_at; /* the allocation numbered lib_fail_at fails */
/* a lock: zk_loop_post allocates on the poster's thread */
static pthread_mutex_t lib_alloc_lock = PTHREAD_MUTEX_INITIALIZER;
static void *count_realloc(void *p, size_t n) {
    alloc_head *h = p ? (alloc_head *)p - 1 : NULL;
    size_t old = h ? h->size : 0;
    alloc_head *q = NULL;
    pthread_mutex_lock(&lib_alloc_lock);
    lib_alloc_calls++;
    if (!(lib_fail_at && lib_alloc_calls == lib_fail_at)) {
        q = (alloc_head *)realloc(h, sizeof *q + (n ? n : 1));
        if (q) {
            if (!h) lib_live_allocs++;
            lib_live_bytes += (long long)n - (long long)old;
            q->size = n;
        }
    }
    pthread_mutex_unlock(&lib_alloc_lock);
    return q ? q + 1 : NULL;
}
static void count_free(void *p) {
    alloc_head *h;
    if (!p) return;
    h = (alloc_head *)p - 1;
    pthread_mutex_lock(&lib_alloc_lock);
    lib_live_allocs--;
    lib_live_bytes -= (long long)h->size;
    free(h);
    pthread_mutex_unlock(&lib_alloc_lock);
}
#define ZK_MALLOC(n) count_realloc(NULL, n)
#define ZK_REALLOC(p, n) count_realloc(p, n)
#define ZK_FREE(p) count_free(p)
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"
#include "test.h"

#define CHECK_ALL_FREED()                                                     \
    do {                                                                      \
        CHECK_EQ_INT(lib_live_allocs, 0);                                     \
        CHECK_EQ_INT(lib_live_bytes, 0);                                      \
    } while (0)

#define CHECK_TEXT(s, lit)                                                    \
    do {                                                                      \
        const char *s_ = (s), *l_ = (lit);                                    \
        if (strcmp(s_, l_) != 0) {                                            \
            test__failed_checks++;                                            \
            printf("  %s:%d: %s: %s is \"%s\", expected \"%s\"\n", __FILE__,  \
                   __LINE__, test__name, #s, s_, l_);                         \
        }                                                                     \
    } while (0)

static void copy_view(char *out, size_t cap, zk_str v) {
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    if (n) memcpy(out, v.ptr, n);
    out[n] = '\0';
}

/* ---- clients: what each one saw ------------------------------------------ */

#define MAX_CLIENTS 300

typedef struct client {
    zk_conn *conn; /* NULL once on_close ran */
    int opens, closes, close_code, close_clean;
    char close_reason[128];
    char **msgs;   /* every message, NUL-terminated copies */
    int n, cap;
    int binary;    /* binary messages seen (stored as "MP:" and their JSON form) */
    unsigned long long bytes;
    unsigned char last_raw[512]; /* the last message's bytes */
    size_t last_raw_len;
    int mp;        /* connected by connect_with in MessagePack mode (ZK_TEST_CODEC) */
} client;

/* ZK_TEST_CODEC=msgpack runs the tests again with MessagePack clients:
   connect_with offers zocket.msgpack, send_json sends the envelope as
   MessagePack, and what such a client receives is kept as its JSON form, so
   the same checks read it. Tests whose subject is JSON text itself (bytes
   that are not JSON, UTF-8 checks, sizes) run in JSON mode only. */
static int test_codec;
/* A test about JSON text itself (sizes, raw frames, counts of bytes), or
   one that makes its own MessagePack clients: once, in JSON mode. */
#define RUN_JSON(name) do { if (test_codec == ZK_CODEC_JSON) RUN(name); } while (0)

static void cl_open(zk_conn *c, const zk_http_request *req) {
    client *cl = (client *)zk_conn_data(c);
    (void)req;
    cl->opens++;
}

static void cl_message(zk_conn *c, zk_str data, int binary) {
    client *cl = (client *)zk_conn_data(c);
    char *m;
    if (cl->n == cl->cap) {
        cl->cap = cl->cap ? cl->cap * 2 : 16;
        cl->msgs = (char **)realloc(cl->msgs, (size_t)cl->cap * sizeof *cl->msgs);
        if (!cl->msgs) abort();
    }
    cl->last_raw_len = data.len < sizeof cl->last_raw ? data.len : sizeof cl->last_raw;
    memcpy(cl->last_raw, data.ptr, cl->last_raw_len);
    if (binary) { /* MessagePack: kept as "MP:" and its JSON form (without "MP:" in codec mode) */
        zk_doc d = {0};
        zk_writer jw;
        zk_str js;
        zk_writer_init(&jw, NULL, 0);
        if (zk_msgpack_parse(&d, data.ptr, data.len) == ZK_OK) zk_write_value(&jw, zk_doc_root(&d));
        js = zk_writer_result(&jw);
        m = (char *)malloc(js.len + 16);
        if (!m) abort();
        snprintf(m, js.len + 16, "%s%.*s", cl->mp ? "" : "MP:", (int)js.len, js.ptr ? js.ptr : "");
        zk_writer_free(&jw);
        zk_doc_free(&d);
    } else {
        m = (char *)malloc(data.len + 1);
        if (!m) abort();
        memcpy(m, data.ptr, data.len);
        m[data.len] = '\0';
    }
    cl->msgs[cl->n++] = m;
    cl->bytes += data.len;
    cl->binary += binary;
}

static void cl_close(zk_conn *c, int code, zk_str reason, int clean) {
    client *cl = (client *)zk_conn_data(c);
    cl->closes++;
    cl->close_code = code;
    cl->close_clean = clean;
    copy_view(cl->close_reason, sizeof cl->close_reason, reason);
    cl->conn = NULL;
}

static const char *last_msg(const client *cl) { return cl->n ? cl->msgs[cl->n - 1] : ""; }
static const char *msg_at(const client *cl, int i) { return i >= 0 && i < cl->n ? cl->msgs[i] : ""; }

/* ---- the world: a loop, a router, an app, and its clients -------------- */

typedef struct world {
    zk_loop *loop;
    zk_router *router;
    zk_app *app;
    zk_app_opts opts;
    client cli[MAX_CLIENTS];
    int ncli;
    zk_conn *srv[MAX_CLIENTS]; /* server ends, in the order the hook accepted them */
    char srv_id[MAX_CLIENTS][23];
    int nsrv;
    /* the connect hook */
    int hooks, refuse, respond, respond_accept; /* respond_accept: answer, then return 0 */
    void *context;
    char hook_path[64], hook_token[64], hook_header[64], hook_id[32];
    int hook_app_ok;
    /* the disconnect hook */
    int disconnects, disconnect_code, disconnect_in_room;
    void *disconnect_context;
    size_t disconnect_room_members;
    /* handlers */
    int routed;
    zk_request *kept[64];
    int nkept;
} world;

static world *W; /* the world the hooks and handlers of the running test see */

static void pump(zk_loop *loop) {
    int i;
    for (i = 0; i < 100000 && (i == 0 || loop->work); i++) zk_loop_advance(loop, 0);
    zk_loop_step(loop, 0);
    for (i = 0; i < 100000 && loop->work; i++) zk_loop_advance(loop, 0);
}

static int on_connect(zk_conn *c, const zk_http_request *req, void **context) {
    char v[64];
    int n;
    W->hooks++;
    copy_view(W->hook_path, sizeof W->hook_path, req->path);
    n = zk_query_get(req->query, "token", v, sizeof v - 1);
    v[n > 0 ? n : 0] = '\0';
    strcpy(W->hook_token, v);
    copy_view(W->hook_header, sizeof W->hook_header,
              zk_http_header_get(req->headers, req->header_count, "X-Token"));
    strncpy(W->hook_id, zk_conn_id(c), sizeof W->hook_id - 1);
    W->hook_app_ok = zk_conn_app(c) == W->app;
    if (W->respond_accept) {
        CHECK_EQ_INT(zk_conn_respond(c, 403, NULL, 0, "answered", 8), 0);
        return 0;
    }
    if (W->refuse || zk_query_get(req->query, "refuse", v, sizeof v) >= 0) {
        int status = W->refuse ? W->refuse : 403;
        if (W->respond) {
            zk_http_header h[1];
            h[0].name = zk_str_c("X-Why");
            h[0].value = zk_str_c("token");
            CHECK_EQ_INT(zk_conn_respond(c, status, h, 1, "go away", 7), 0);
        }
        return status;
    }
    if (W->nsrv < MAX_CLIENTS) {
        strcpy(W->srv_id[W->nsrv], zk_conn_id(c));
        W->srv[W->nsrv++] = c;
    }
    *context = W->context;
    return 0;
}

static void on_disconnect(zk_conn *c, void *context, int code) {
    W->disconnects++;
    W->disconnect_context = context;
    W->disconnect_code = code;
    W->disconnect_in_room = zk_room_has(c, "lobby");
    W->disconnect_room_members = zk_room_members(W->app, "lobby", NULL, 0);
}

/* ---- routes ---- */

static void r_echo(zk_request *req) {
    zk_value p = zk_request_payload(req);
    W->routed++;
    if (zk_value_type(p) != ZK_TYPE_NONE) zk_write_value(zk_request_writer(req), p);
}

static void r_fail(zk_request *req) {
    zk_writer *w = zk_request_writer(req);
    W->routed++;
    zk_write_object(w);
    zk_write_key(w, "max");
    zk_write_int(w, 10);
    zk_write_end(w);
    zk_request_fail(req, "ROOM_FULL", "room is full");
}

static void r_forbid(zk_request *req) {
    W->routed++;
    zk_request_fail(req, ZK_CODE_FORBIDDEN, "not yours");
}

static void r_boom(zk_request *req) {
    W->routed++;
    zk_request_fail(req, ZK_CODE_INTERNAL, "db down at 10.0.0.7");
}

static int mw_refuse_silently(zk_request *req) {
    (void)req;
    return 1;
}

static void r_whoami(zk_request *req) {
    zk_writer *w = zk_request_writer(req);
    zk_conn *c = zk_request_conn(req);
    W->routed++;
    zk_write_object(w);
    zk_write_key(w, "ctx");
    zk_write_bool(w, zk_request_context(req) == W->context && W->context != NULL);
    zk_write_key(w, "conn_ctx");
    zk_write_bool(w, c && zk_conn_context(c) == W->context && W->context != NULL);
    zk_write_key(w, "app");
    zk_write_bool(w, zk_request_app(req) == W->app && zk_conn_app(c) == W->app);
    zk_write_key(w, "call");
    zk_write_bool(w, zk_request_is_call(req));
    zk_write_key(w, "id");
    zk_write_str(w, c ? zk_conn_id(c) : "");
    zk_write_end(w);
}

static void r_keep(zk_request *req) {
    zk_request *k = zk_request_keep(req);
    W->routed++;
    if (k && W->nkept < 64) W->kept[W->nkept++] = k;
}

static int auth_user = 77;
static void r_auth(zk_request *req) {
    zk_str token = zk_value_str(zk_value_get(zk_request_payload(req), "token"));
    W->routed++;
    if (token.len == 6 && memcmp(token.ptr, "secret", 6) == 0) {
        zk_request_set_context(req, &auth_user);
        zk_write_str(zk_request_writer(req), "welcome");
    } else {
        zk_request_fail(req, ZK_CODE_UNAUTHORIZED, "bad token");
    }
}

/* Sends payload-many "burst" messages to the caller before answering. */
static int burst_rcs;
static void r_burst(zk_request *req) {
    int64_t i, n = zk_value_int(zk_request_payload(req), 0);
    zk_conn *c = zk_request_conn(req);
    zk_target to;
    memset(&to, 0, sizeof to);
    to.conns = &c;
    to.conn_count = 1;
    W->routed++;
    for (i = 0; i < n; i++) {
        zk_writer *w = zk_app_message(zk_request_app(req), "burst");
        zk_write_int(w, i);
        burst_rcs += zk_app_send(zk_request_app(req), &to);
    }
}

/* Joins the room named by the payload and answers zk_room_join's result. */
static void r_join(zk_request *req) {
    zk_str room = zk_value_str(zk_request_payload(req));
    char name[256];
    W->routed++;
    copy_view(name, sizeof name, room);
    zk_write_int(zk_request_writer(req), zk_room_join(zk_request_conn(req), name));
}

/* Broadcasts {"from": id, "text": payload} to the room "lobby", except the sender. */
static void r_say(zk_request *req) {
    zk_conn *c = zk_request_conn(req);
    const char *room = "lobby";
    zk_target to;
    zk_writer *w = zk_app_message(zk_request_app(req), "chat.message");
    W->routed++;
    zk_write_object(w);
    zk_write_key(w, "from");
    zk_write_str(w, zk_conn_id(c));
    zk_write_key(w, "text");
    zk_write_value(w, zk_request_payload(req));
    zk_write_end(w);
    memset(&to, 0, sizeof to);
    to.rooms = &room;
    to.room_count = 1;
    to.except = c;
    zk_write_int(zk_request_writer(req), zk_app_send(zk_request_app(req), &to));
}

/* Drops its own connection, then goes on with the request. */
static void r_kick(zk_request *req) {
    W->routed++;
    zk_conn_abort(zk_request_conn(req));
    W->context = zk_request_context(req);
    zk_write_str(zk_request_writer(req), "kicked");
}

static void r_kick_keep(zk_request *req) {
    zk_request *k;
    W->routed++;
    zk_conn_abort(zk_request_conn(req));
    k = zk_request_keep(req);
    if (k && W->nkept < 64) W->kept[W->nkept++] = k;
}

static const zk_schema add_fields[] = {
    {"name", ZK_TYPE_STRING, ZK_SCHEMA_MIN, 1, 0, NULL, NULL},
    {"age", ZK_TYPE_INT, ZK_SCHEMA_OPTIONAL, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL}};
static const zk_schema add_input = {NULL, ZK_TYPE_OBJECT, 0, 0, 0, add_fields, NULL};

static const zk_middleware_fn refuse_mw[] = {mw_refuse_silently};

static world *world_new(void) {
    world *w = (world *)calloc(1, sizeof *w);
    zk_loop_opts lo;
    zk_route_opts ro;
    if (!w) abort();
    memset(&lo, 0, sizeof lo);
    lo.virtual_clock = 1;
    lo.seed = 0x5eed;
    w->loop = zk_loop_new(&lo);
    w->router = zk_router_new();
    if (!w->loop || !w->router) abort();
    memset(&ro, 0, sizeof ro);
    ro.middleware = refuse_mw;
    ro.middleware_count = 1;
    if (zk_router_on(w->router, "echo", r_echo, NULL) || zk_router_on(w->router, "room.fail", r_fail, NULL) ||
        zk_router_on(w->router, "forbid", r_forbid, NULL) || zk_router_on(w->router, "boom", r_boom, NULL) ||
        zk_router_on(w->router, "refused", r_echo, &ro) || zk_router_on(w->router, "whoami", r_whoami, NULL) ||
        zk_router_on(w->router, "slow", r_keep, NULL) || zk_router_on(w->router, "__auth", r_auth, NULL) ||
        zk_router_on(w->router, "burst", r_burst, NULL) || zk_router_on(w->router, "join", r_join, NULL) ||
        zk_router_on(w->router, "say", r_say, NULL) || zk_router_on(w->router, "kick", r_kick, NULL) ||
        zk_router_on(w->router, "kick.keep", r_kick_keep, NULL))
        abort();
    memset(&ro, 0, sizeof ro);
    ro.input = &add_input;
    if (zk_router_on(w->router, "users.add", r_echo, &ro)) abort();
    w->opts.router = w->router;
    w->opts.on_connect = on_connect;
    w->opts.on_disconnect = on_disconnect;
    W = w;
    return w;
}

static void world_start(world *w) {
    int err = 1;
    w->app = zk_app_new(w->loop, &w->opts, &err);
    CHECK(w->app != NULL);
    CHECK_EQ_INT(err, 0);
    if (!w->app) abort();
}

static void world_free(world *w) {
    int i, j;
    if (w->app) zk_app_free(w->app);
    for (i = 0; i < w->ncli; i++)
        if (w->cli[i].conn) zk_conn_abort(w->cli[i].conn);
    zk_loop_free(w->loop);
    zk_router_free(w->router);
    for (i = 0; i < MAX_CLIENTS; i++) {
        for (j = 0; j < w->cli[i].n; j++) free(w->cli[i].msgs[j]);
        free(w->cli[i].msgs);
    }
    free(w);
    W = NULL;
}

static client *connect_with(world *w, const char *url, const zk_http_header *headers, size_t nheaders,
                            const zk_loopback_opts *fault) {
    zk_conn_opts o;
    client *cl;
    int err = 1;
    if (w->ncli >= MAX_CLIENTS) abort();
    cl = &w->cli[w->ncli++];
    memset(&o, 0, sizeof o);
    o.url = url;
    o.headers = headers;
    o.header_count = nheaders;
    o.cb.on_open = cl_open;
    o.cb.on_message = cl_message;
    o.cb.on_close = cl_close;
    o.data = cl;
    if (test_codec == ZK_CODEC_MSGPACK) {
        static const char *const mp[] = {ZK_PROTOCOL_MSGPACK};
        o.protocols = mp;
        o.protocol_count = 1;
        cl->mp = 1;
    }
    cl->conn = zk_loopback_connect(zk_app_server(w->app), &o, fault, &err);
    CHECK(cl->conn != NULL);
    CHECK_EQ_INT(err, 0);
    pump(w->loop);
    return cl;
}

static client *connect_url(world *w, const char *url) { return connect_with(w, url, NULL, 0, NULL); }

/* A client offering subprotocols. */
static client *connect_proto(world *w, const char *const *protocols, size_t n) {
    zk_conn_opts o;
    client *cl;
    int err = 1;
    if (w->ncli >= MAX_CLIENTS) abort();
    cl = &w->cli[w->ncli++];
    memset(&o, 0, sizeof o);
    o.url = "ws://loopback/";
    o.protocols = protocols;
    o.protocol_count = n;
    o.cb.on_open = cl_open;
    o.cb.on_message = cl_message;
    o.cb.on_close = cl_close;
    o.data = cl;
    cl->conn = zk_loopback_connect(zk_app_server(w->app), &o, NULL, &err);
    CHECK(cl->conn != NULL);
    pump(w->loop);
    return cl;
}

static const char *const mp_protocol[] = {ZK_PROTOCOL_MSGPACK};

/* Sends json as MessagePack (a binary frame) and runs the loop. */
static void send_mp(world *w, client *cl, const char *json) {
    zk_doc d = {0};
    zk_writer mw;
    char buf[1024];
    zk_str out;
    snprintf(buf, sizeof buf, "%s", json);
    zk_writer_init(&mw, NULL, 0);
    zk_writer_set_codec(&mw, ZK_CODEC_MSGPACK);
    CHECK_EQ_INT(zk_json_parse(&d, buf, strlen(buf)), ZK_OK);
    zk_write_value(&mw, zk_doc_root(&d));
    out = zk_writer_result(&mw);
    CHECK(out.ptr != NULL && cl->conn != NULL);
    if (out.ptr && cl->conn) CHECK(zk_conn_send(cl->conn, out.ptr, out.len, 1) >= 0);
    zk_writer_free(&mw);
    zk_doc_free(&d);
    pump(w->loop);
}
static client *connect_one(world *w) { return connect_url(w, "ws://loopback/"); }

/* Sends a JSON text and runs the loop until everything settled. */
static void send_json(world *w, client *cl, const char *json) {
    CHECK(cl->conn != NULL);
    if (!cl->conn) return;
    if (test_codec == ZK_CODEC_MSGPACK && cl->mp) { /* the same envelope, as MessagePack */
        zk_doc d = {0};
        zk_writer mw;
        char *copy = strdup(json);
        zk_str out = {NULL, 0};
        zk_writer_init(&mw, NULL, 0);
        zk_writer_set_codec(&mw, ZK_CODEC_MSGPACK);
        if (copy && zk_json_parse(&d, copy, strlen(copy)) == ZK_OK) {
            zk_write_value(&mw, zk_doc_root(&d));
            out = zk_writer_result(&mw);
        }
        if (out.ptr) CHECK(zk_conn_send(cl->conn, out.ptr, out.len, 1) >= 0);
        else CHECK(zk_conn_send(cl->conn, json, strlen(json), 1) >= 0); /* not JSON: the same bytes, binary */
        zk_writer_free(&mw);
        zk_doc_free(&d);
        free(copy);
    } else {
        CHECK(zk_conn_send(cl->conn, json, strlen(json), 0) >= 0);
    }
    pump(w->loop);
}

/* ---- reading an envelope ---------------------------------------------- */

typedef struct envelope {
    int parsed;
    char type[160], rpc_id[96], code[96], message[256], ref[160];
    char payload[4096], data[1024]; /* re-serialised JSON, "" when absent */
    int rpc_int;                    /* rpcId was a number */
} envelope;

static void value_json(zk_value v, char *out, size_t cap) {
    zk_writer wr;
    zk_writer_init(&wr, NULL, 0);
    out[0] = '\0';
    if (zk_value_type(v) != ZK_TYPE_NONE) {
        zk_write_value(&wr, v);
        copy_view(out, cap, zk_writer_result(&wr));
    }
    zk_writer_free(&wr);
}

static envelope parse_env(const char *json) {
    envelope e;
    zk_doc doc;
    size_t n = strlen(json);
    char *buf = (char *)malloc(n + 1);
    memset(&e, 0, sizeof e);
    memcpy(buf, json, n + 1);
    zk_doc_init(&doc);
    if (zk_json_parse(&doc, buf, n) == ZK_OK) {
        zk_value root = zk_doc_root(&doc), err = zk_value_get(root, "error"), id = zk_value_get(root, "rpcId");
        e.parsed = zk_value_type(root) == ZK_TYPE_OBJECT;
        copy_view(e.type, sizeof e.type, zk_value_str(zk_value_get(root, "type")));
        if (zk_value_type(id) == ZK_TYPE_STRING) copy_view(e.rpc_id, sizeof e.rpc_id, zk_value_str(id));
        else if (zk_value_type(id) == ZK_TYPE_INT) {
            e.rpc_int = 1;
            snprintf(e.rpc_id, sizeof e.rpc_id, "%lld", (long long)zk_value_int(id, 0));
        }
        copy_view(e.code, sizeof e.code, zk_value_str(zk_value_get(err, "code")));
        copy_view(e.message, sizeof e.message, zk_value_str(zk_value_get(err, "message")));
        copy_view(e.ref, sizeof e.ref, zk_value_str(zk_value_get(err, "ref")));
        value_json(zk_value_get(root, "payload"), e.payload, sizeof e.payload);
        value_json(zk_value_get(err, "data"), e.data, sizeof e.data);
    }
    zk_doc_free(&doc);
    free(buf);
    return e;
}

/* The last message is an error answer with this type, rpcId and code. */
#define CHECK_ERR(cl, typ, rpc, cod)                                          \
    do {                                                                      \
        envelope e_ = parse_env(last_msg(cl));                                \
        CHECK(e_.parsed);                                                     \
        CHECK_TEXT(e_.type, typ);                                             \
        CHECK_TEXT(e_.rpc_id, rpc);                                           \
        CHECK_TEXT(e_.code, cod);                                             \
        CHECK(e_.message[0] != '\0');                                         \
    } while (0)

/* ---- a raw peer: one end of a loopback pair no zk_conn drives ----------- */

typedef struct raw {
    zk__stream *s;
    char in[8192];
    size_t len;
    int eof, reset;
} raw;

static void raw_open(raw *r, zk_server *s) {
    zk__lb_pair *p = zk__lb_pair_new(zk_server_loop(s), NULL);
    zk_conn *sc = zk__server_conn(s, 0);
    memset(r, 0, sizeof *r);
    sc->stream = &p->end[1].base;
    p->end[1].base.conn = sc;
    r->s = &p->end[0].base;
}

static void raw_send(raw *r, const char *text) {
    struct iovec iov;
    iov.iov_base = (void *)(uintptr_t)text;
    iov.iov_len = strlen(text);
    CHECK_EQ_INT(r->s->ops->writev(r->s, &iov, 1), (long)strlen(text));
}

static void raw_recv(raw *r) {
    for (;;) {
        long n = r->s->ops->read(r->s, r->in + r->len, sizeof r->in - 1 - r->len);
        if (n > 0) {
            r->len += (size_t)n;
            r->in[r->len] = '\0';
            continue;
        }
        if (n == 0) r->eof = 1;
        else if (n != ZK_EAGAIN) r->reset = 1;
        break;
    }
}

static void raw_close(raw *r) { r->s->ops->close(r->s); }

static void upgrade_text(char *out, size_t cap, const char *target) {
    snprintf(out, cap,
             "GET %s HTTP/1.1\r\nHost: loopback\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
             target);
}

/* The body of an HTTP answer in r (after the blank line), or "". */
static const char *raw_body(const raw *r) {
    const char *p = strstr(r->in, "\r\n\r\n");
    return p ? p + 4 : "";
}

/* ---- envelopes ------------------------------------------------------------ */

TEST(call_result_envelope_echoes_string_and_integer_rpc_ids) {
    world *w = world_new();
    client *c;
    world_start(w);
    c = connect_one(w);
    CHECK_EQ_INT(c->opens, 1);
    send_json(w, c, "{\"type\":\"echo\",\"payload\":{\"x\":1,\"s\":\"\\u00e9\"},\"rpcId\":\"c1\"}");
    CHECK_EQ_INT(c->n, 1);
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":{\"x\":1,\"s\":\"\xc3\xa9\"},\"rpcId\":\"c1\"}");
    send_json(w, c, "{\"rpcId\":7,\"payload\":[1,2],\"type\":\"echo\",\"extra\":{\"ignored\":true}}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":[1,2],\"rpcId\":7}");
    send_json(w, c, "{\"type\":\"echo\",\"rpcId\":-9007199254740993}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":null,\"rpcId\":-9007199254740993}");
    send_json(w, c, "{\"type\":\"echo\",\"rpcId\":\"q\\\"uote\\u0000\"}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":null,\"rpcId\":\"q\\\"uote\\u0000\"}");
    CHECK_EQ_INT(c->n, 4);
    CHECK_EQ_INT(W->routed, 4);
    CHECK_EQ_INT(c->binary, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(error_envelopes_for_calls_and_events) {
    world *w = world_new();
    client *c;
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"room.fail\",\"payload\":{},\"rpcId\":\"c2\"}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_err\",\"rpcId\":\"c2\",\"error\":{\"code\":\"ROOM_FULL\","
                            "\"message\":\"room is full\",\"data\":{\"max\":10}}}");
    send_json(w, c, "{\"type\":\"forbid\",\"rpcId\":3}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_err\",\"rpcId\":3,\"error\":{\"code\":\"FORBIDDEN\","
                            "\"message\":\"not yours\"}}");
    send_json(w, c, "{\"type\":\"forbid\",\"payload\":1}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__error\",\"error\":{\"code\":\"FORBIDDEN\",\"message\":\"not yours\","
                            "\"ref\":\"forbid\"}}");
    send_json(w, c, "{\"type\":\"room.fail\"}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__error\",\"error\":{\"code\":\"ROOM_FULL\",\"message\":\"room is full\","
                            "\"ref\":\"room.fail\",\"data\":{\"max\":10}}}");
    CHECK_EQ_INT(c->n, 4);
    send_json(w, c, "{\"type\":\"users.add\",\"payload\":{\"name\":1,\"age\":2.5},\"rpcId\":\"v\"}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_err\",\"rpcId\":\"v\",\"error\":{\"code\":\"INVALID_INPUT\","
                            "\"message\":\"invalid input\",\"data\":{\"issues\":["
                            "{\"path\":\"name\",\"message\":\"expected string, got int\"},"
                            "{\"path\":\"age\",\"message\":\"expected integer, got double\"}]}}}");
    send_json(w, c, "{\"type\":\"users.add\"}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__error\",\"error\":{\"code\":\"INVALID_INPUT\","
                            "\"message\":\"invalid input\",\"ref\":\"users.add\",\"data\":{\"issues\":["
                            "{\"path\":\"\",\"message\":\"required\"}]}}}");
    CHECK_EQ_INT(W->routed, 4); /* the handler never ran for those */
    send_json(w, c, "{\"type\":\"users.add\",\"payload\":{\"name\":\"ann\"},\"rpcId\":\"v2\"}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":{\"name\":\"ann\"},\"rpcId\":\"v2\"}");
    CHECK_EQ_INT(c->n, 7);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(successful_event_sends_nothing) {
    world *w = world_new();
    client *c;
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"echo\",\"payload\":{\"a\":1}}");
    send_json(w, c, "{\"type\":\"echo\"}");
    CHECK_EQ_INT(W->routed, 2);
    CHECK_EQ_INT(c->n, 0);
    send_json(w, c, "{\"type\":\"echo\",\"payload\":5,\"rpcId\":\"after\"}");
    CHECK_EQ_INT(c->n, 1);
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":5,\"rpcId\":\"after\"}");
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(malformed_messages_are_bad_request_and_the_connection_stays) {
    static const char *const bad[] = {
        "{\"type\":",          "not json",          "[1,2]",      "\"echo\"",
        "{\"payload\":1}",     "{\"type\":5}",      "{\"type\":null}", "{\"type\":\"\"}",
        "{\"type\":[\"echo\"]}", "{\"type\":\"echo\",\"rpcId\":1.5}", "{\"type\":\"echo\",\"rpcId\":{}}",
        "{\"type\":\"echo\",\"rpcId\":[\"c\"]}", "{\"type\":\"echo\",\"rpcId\":true}", ""};
    world *w = world_new();
    client *c;
    size_t i;
    char long_id[ZK_RPC_ID_MAX + 64];
    world_start(w);
    c = connect_one(w);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int before = c->n;
        envelope e;
        send_json(w, c, bad[i]);
        CHECK_EQ_INT(c->n, before + 1);
        e = parse_env(last_msg(c));
        if (strcmp(e.code, "BAD_REQUEST") != 0) printf("  %s -> %s\n", bad[i], last_msg(c));
        CHECK_TEXT(e.type, "__error");
        CHECK_TEXT(e.code, "BAD_REQUEST");
        CHECK(e.message[0] != '\0');
        CHECK(c->conn != NULL);
    }
    CHECK_EQ_INT(W->routed, 0);
    /* an rpcId with a missing type: still a call, answered as one */
    send_json(w, c, "{\"rpcId\":\"c9\",\"payload\":1}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_err\",\"rpcId\":\"c9\",\"error\":{\"code\":\"BAD_REQUEST\","
                            "\"message\":\"type must be a non-empty string\"}}");
    send_json(w, c, "{\"rpcId\":10,\"type\":7}");
    CHECK_ERR(c, "__rpc_err", "10", "BAD_REQUEST");
    /* an rpcId longer than ZK_RPC_ID_MAX is refused; one of exactly that length is not */
    {
        size_t head;
        strcpy(long_id, "{\"type\":\"echo\",\"rpcId\":\"");
        head = strlen(long_id);
        memset(long_id + head, 'i', ZK_RPC_ID_MAX + 1);
        strcpy(long_id + head + ZK_RPC_ID_MAX + 1, "\"}");
        send_json(w, c, long_id);
        CHECK_ERR(c, "__error", "", "BAD_REQUEST");
        strcpy(long_id + head + ZK_RPC_ID_MAX, "\"}");
    }
    send_json(w, c, long_id);
    {
        envelope e = parse_env(last_msg(c));
        CHECK_TEXT(e.type, "__rpc_res");
        CHECK_EQ_INT(strlen(e.rpc_id), ZK_RPC_ID_MAX);
    }
    /* still usable */
    send_json(w, c, "{\"type\":\"echo\",\"payload\":\"ok\",\"rpcId\":\"fine\"}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":\"ok\",\"rpcId\":\"fine\"}");
    CHECK(c->conn != NULL);
    CHECK_EQ_INT(c->closes, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(binary_and_deeply_nested_messages_get_an_error_and_the_connection_stays) {
    world *w = world_new();
    client *c;
    char deep[400];
    int i;
    world_start(w);
    c = connect_one(w);
    CHECK(zk_conn_send(c->conn, "{\"type\":\"echo\"}", 15, 1) >= 0);
    pump(w->loop);
    CHECK_EQ_INT(c->n, 1);
    CHECK_ERR(c, "__error", "", "BAD_REQUEST");
    strcpy(deep, "{\"type\":\"echo\",\"rpcId\":\"d\",\"payload\":");
    for (i = 0; i < 100; i++) strcat(deep, "[");
    for (i = 0; i < 100; i++) strcat(deep, "]");
    strcat(deep, "}");
    send_json(w, c, deep);
    CHECK_EQ_INT(c->n, 2);
    {
        envelope e = parse_env(last_msg(c));
        CHECK(strcmp(e.code, "PAYLOAD_TOO_LARGE") == 0 || strcmp(e.code, "BAD_REQUEST") == 0);
    }
    CHECK_EQ_INT(W->routed, 0);
    send_json(w, c, "{\"type\":\"echo\",\"rpcId\":\"z\"}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":null,\"rpcId\":\"z\"}");
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(unknown_type_is_not_found) {
    world *w = world_new();
    client *c;
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"no.such\",\"rpcId\":\"n1\"}");
    CHECK_ERR(c, "__rpc_err", "n1", "NOT_FOUND");
    send_json(w, c, "{\"type\":\"no.such\",\"payload\":{}}");
    CHECK_ERR(c, "__error", "", "NOT_FOUND");
    CHECK_TEXT(parse_env(last_msg(c)).ref, "no.such");
    send_json(w, c, "{\"type\":\"ech\",\"rpcId\":1}");
    CHECK_ERR(c, "__rpc_err", "1", "NOT_FOUND");
    CHECK_EQ_INT(c->n, 3);
    CHECK_EQ_INT(W->routed, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(internal_errors_are_masked_unless_exposed) {
    int expose;
    for (expose = 0; expose <= 1; expose++) {
        world *w = world_new();
        client *c;
        envelope e;
        w->opts.expose_internal = expose;
        world_start(w);
        c = connect_one(w);
        send_json(w, c, "{\"type\":\"boom\",\"rpcId\":\"b\"}");
        e = parse_env(last_msg(c));
        CHECK_TEXT(e.type, "__rpc_err");
        CHECK_TEXT(e.code, "INTERNAL");
        CHECK_TEXT(e.message, expose ? "db down at 10.0.0.7" : "internal error");
        CHECK(expose || strstr(last_msg(c), "10.0.0.7") == NULL);
        send_json(w, c, "{\"type\":\"boom\"}");
        e = parse_env(last_msg(c));
        CHECK_TEXT(e.type, "__error");
        CHECK_TEXT(e.message, expose ? "db down at 10.0.0.7" : "internal error");
        CHECK_TEXT(e.ref, "boom");
        /* middleware refusing without an answer: INTERNAL, masked the same way */
        send_json(w, c, "{\"type\":\"refused\",\"rpcId\":\"m\"}");
        e = parse_env(last_msg(c));
        CHECK_TEXT(e.code, "INTERNAL");
        if (!expose) CHECK_TEXT(e.message, "internal error");
        CHECK_EQ_INT(W->routed, 2);
        world_free(w);
    }
    CHECK_ALL_FREED();
}

/* zk_router_call answers "as a client sees them, except INTERNAL
   messages": the same code, message and data as the __rpc_err (or the
   same payload as the __rpc_res) for the same type and payload. */
typedef struct caller_answer {
    int ok;
    char code[96], message[256], data[1024];
} caller_answer;

static void on_caller_answer(const zk_answer *a, void *user) {
    caller_answer *r = (caller_answer *)user;
    r->ok = a->ok;
    copy_view(r->code, sizeof r->code, a->code);
    copy_view(r->message, sizeof r->message, a->message);
    copy_view(r->data, sizeof r->data, a->data);
}

TEST(caller_answers_as_a_client_sees_them) {
    static const char *const cases[][2] = {
        {"echo", "{\"a\":[1,\"x\"]}"}, {"echo", NULL},           {"room.fail", "1"},
        {"forbid", NULL},                 {"users.add", "{\"name\":2}"}, {"users.add", NULL},
        {"no.such.route", "{}"},          {"no_such", NULL}};
    world *w = world_new();
    client *c;
    size_t i;
    world_start(w);
    c = connect_one(w);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        caller_answer ca;
        envelope e;
        char msg[512];
        memset(&ca, 0, sizeof ca);
        CHECK_EQ_INT(zk_router_call(w->router, cases[i][0], cases[i][1], cases[i][1] ? strlen(cases[i][1]) : 0,
                                    NULL, on_caller_answer, &ca),
                     0);
        snprintf(msg, sizeof msg, "{\"type\":\"%s\",\"rpcId\":\"c\"%s%s}", cases[i][0],
                 cases[i][1] ? ",\"payload\":" : "", cases[i][1] ? cases[i][1] : "");
        send_json(w, c, msg);
        e = parse_env(last_msg(c));
        if (ca.ok) {
            CHECK_TEXT(e.type, "__rpc_res");
            CHECK_TEXT(e.payload, ca.data);
        } else {
            CHECK_TEXT(e.type, "__rpc_err");
            CHECK_TEXT(e.code, ca.code);
            CHECK_TEXT(e.message, ca.message);
            CHECK_TEXT(e.data, ca.data);
        }
    }
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- the connect hook ---------------------------------------------------- */

static int ctx_marker = 5;

TEST(connect_hook_sees_path_query_and_headers) {
    world *w = world_new();
    client *c;
    zk_http_header h[1];
    h[0].name = zk_str_c("X-Token");
    h[0].value = zk_str_c("hdr-value");
    w->opts.path = "/ws";
    world_start(w);
    c = connect_with(w, "ws://loopback/ws?room=1&token=t%20x%2B", h, 1, NULL);
    CHECK_EQ_INT(c->opens, 1);
    CHECK_EQ_INT(w->hooks, 1);
    CHECK_TEXT(w->hook_path, "/ws");
    CHECK_TEXT(w->hook_token, "t x+");
    CHECK_TEXT(w->hook_header, "hdr-value");
    CHECK_EQ_INT(w->hook_app_ok, 1);
    CHECK_EQ_INT(strlen(w->hook_id), 22); /* the id exists in the hook already */
    CHECK_TEXT(w->hook_id, zk_conn_id(w->srv[0]));
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(connect_hook_refusal_never_opens) {
    world *w = world_new();
    client *c, *ok;
    zk_app_stats st;
    world_start(w);
    w->refuse = 401;
    c = connect_one(w);
    CHECK_EQ_INT(w->hooks, 1);
    CHECK_EQ_INT(c->opens, 0);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1006);
    CHECK_EQ_INT(c->n, 0);
    CHECK_EQ_INT(w->disconnects, 0); /* it was never accepted */
    w->refuse = 0;
    ok = connect_one(w);
    CHECK_EQ_INT(ok->opens, 1);
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.refused, 1);
    CHECK_EQ_INT(st.accepted, 1);
    CHECK_EQ_INT(st.connections, 1);
    CHECK_EQ_INT(zk_server_connections(zk_app_server(w->app)), 1);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(connect_hook_refusal_answers_http_with_no_frame) {
    world *w = world_new();
    raw r;
    char req[512];
    world_start(w);
    /* the status text as body */
    w->refuse = 401;
    raw_open(&r, zk_app_server(w->app));
    upgrade_text(req, sizeof req, "/chat?token=bad");
    raw_send(&r, req);
    pump(w->loop);
    raw_recv(&r);
    CHECK(strncmp(r.in, "HTTP/1.1 401 ", 13) == 0);
    CHECK(strstr(r.in, "Sec-WebSocket-Accept") == NULL);
    CHECK_TEXT(raw_body(&r), "Unauthorized");
    CHECK_EQ_INT(r.eof || r.reset, 1);
    raw_close(&r);
    /* the hook's own answer */
    w->respond = 1;
    raw_open(&r, zk_app_server(w->app));
    raw_send(&r, req);
    pump(w->loop);
    raw_recv(&r);
    CHECK(strncmp(r.in, "HTTP/1.1 401 ", 13) == 0);
    CHECK(strstr(r.in, "\r\nX-Why: token\r\n") != NULL);
    CHECK_TEXT(raw_body(&r), "go away"); /* and nothing after it: no frame */
    CHECK_EQ_INT(r.eof || r.reset, 1);
    raw_close(&r);
    /* a hook that answers and then returns 0: its answer stands */
    w->respond = 0;
    w->refuse = 0;
    w->respond_accept = 1;
    raw_open(&r, zk_app_server(w->app));
    raw_send(&r, req);
    pump(w->loop);
    raw_recv(&r);
    CHECK(strncmp(r.in, "HTTP/1.1 403 ", 13) == 0);
    CHECK_TEXT(raw_body(&r), "answered");
    raw_close(&r);
    pump(w->loop);
    CHECK_EQ_INT(w->hooks, 3);
    CHECK_EQ_INT(w->disconnects, 0);
    CHECK_EQ_INT(zk_server_connections(zk_app_server(w->app)), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(app_path_mismatch_is_404_without_the_hook) {
    world *w = world_new();
    client *c;
    raw r;
    char req[512];
    zk_app_stats st;
    w->opts.path = "/ws";
    world_start(w);
    c = connect_url(w, "ws://loopback/other");
    CHECK_EQ_INT(c->opens, 0);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1006);
    c = connect_url(w, "ws://loopback/ws/more");
    CHECK_EQ_INT(c->opens, 0);
    raw_open(&r, zk_app_server(w->app));
    upgrade_text(req, sizeof req, "/wsx?a=1");
    raw_send(&r, req);
    pump(w->loop);
    raw_recv(&r);
    CHECK(strncmp(r.in, "HTTP/1.1 404 ", 13) == 0);
    raw_close(&r);
    CHECK_EQ_INT(w->hooks, 0);
    c = connect_url(w, "ws://loopback/ws?x=1"); /* the query is not part of the path */
    CHECK_EQ_INT(c->opens, 1);
    CHECK_EQ_INT(w->hooks, 1);
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.refused, 3);
    CHECK_EQ_INT(st.accepted, 1);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(context_reaches_handlers_and_on_disconnect_once) {
    world *w = world_new();
    client *c;
    zk_conn *s;
    envelope e;
    w->context = &ctx_marker;
    world_start(w);
    c = connect_one(w);
    s = w->srv[0];
    CHECK(zk_conn_context(s) == &ctx_marker);
    CHECK(zk_conn_app(s) == w->app);
    CHECK(zk_conn_app(c->conn) == NULL);
    CHECK_TEXT(zk_conn_id(c->conn), ""); /* a client end is not served by an app */
    send_json(w, c, "{\"type\":\"whoami\",\"rpcId\":\"w\"}");
    e = parse_env(last_msg(c));
    CHECK_TEXT(e.type, "__rpc_res");
    {
        char want[160];
        snprintf(want, sizeof want, "{\"ctx\":true,\"conn_ctx\":true,\"app\":true,\"call\":true,\"id\":\"%s\"}",
                 zk_conn_id(s));
        CHECK_TEXT(e.payload, want);
    }
    CHECK_EQ_INT(zk_room_join(s, "lobby"), 0);
    CHECK_EQ_INT(zk_conn_close(c->conn, 1000, "bye"), 0);
    pump(w->loop);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(w->disconnects, 1);
    CHECK(w->disconnect_context == &ctx_marker);
    CHECK_EQ_INT(w->disconnect_code, 1000);
    CHECK_EQ_INT(w->disconnect_in_room, 1);          /* still in its rooms during the call */
    CHECK_EQ_INT(w->disconnect_room_members, 1);
    CHECK_EQ_INT(zk_room_members(w->app, "lobby", NULL, 0), 0); /* and out afterwards */
    zk_loop_advance(w->loop, 60000);
    pump(w->loop);
    CHECK_EQ_INT(w->disconnects, 1);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(on_disconnect_runs_for_connections_dropped_by_app_free) {
    world *w = world_new();
    w->context = &ctx_marker;
    world_start(w);
    connect_one(w);
    connect_one(w);
    CHECK_EQ_INT(w->disconnects, 0);
    zk_app_free(w->app);
    w->app = NULL;
    CHECK_EQ_INT(w->disconnects, 2);
    CHECK(w->disconnect_context == &ctx_marker);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(app_new_refuses_bad_options) {
    world *w = world_new();
    zk_app_opts o;
    int err = 0;
    o = w->opts;
    o.router = NULL;
    CHECK(zk_app_new(w->loop, &o, &err) == NULL);
    CHECK_EQ_INT(err, ZK_EINVAL);
    o = w->opts;
    o.server.cb.on_message = cl_message;
    err = 0;
    CHECK(zk_app_new(w->loop, &o, &err) == NULL);
    CHECK_EQ_INT(err, ZK_EINVAL);
    o = w->opts;
    o.server.data = w;
    err = 0;
    CHECK(zk_app_new(w->loop, &o, &err) == NULL);
    CHECK_EQ_INT(err, ZK_EINVAL);
    {
        zk_router *bare = zk_router_new();
        zk_router_on(bare, "echo", r_echo, NULL);
        o = w->opts;
        o.router = bare;
        o.require_auth = 1;
        err = 0;
        CHECK(zk_app_new(w->loop, &o, &err) == NULL);
        CHECK_EQ_INT(err, ZK_EINVAL);
        o.require_auth = 0;
        o.data = &ctx_marker;
        w->app = zk_app_new(w->loop, &o, NULL); /* err may be NULL */
        CHECK(w->app != NULL);
        if (w->app) {
            CHECK(zk_app_data(w->app) == &ctx_marker);
            CHECK(zk_server_loop(zk_app_server(w->app)) == w->loop);
            zk_app_free(w->app);
            w->app = NULL;
        }
        zk_router_free(bare);
    }
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(handler_dropping_its_own_connection) {
    world *w = world_new();
    client *c;
    w->context = &ctx_marker;
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"kick\",\"rpcId\":\"k\"}");
    CHECK_EQ_INT(W->routed, 1);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1006);
    CHECK_EQ_INT(w->disconnects, 1);
    CHECK_EQ_INT(c->n, 0);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"kick.keep\",\"rpcId\":\"k2\"}");
    CHECK_EQ_INT(c->closes, 1);
    if (w->nkept == 1) CHECK_EQ_INT(zk_request_ok(w->kept[0]), ZK_ECLOSED);
    world_free(w);
    CHECK_ALL_FREED();
}

static void on_http_page(zk_conn *c, const zk_http_request *req) {
    (void)req;
    W->hooks += 100;
    zk_conn_respond(c, 200, NULL, 0, "a page", 6);
}

TEST(plain_http_requests) {
    int custom;
    for (custom = 0; custom <= 1; custom++) {
        world *w = world_new();
        raw r;
        if (custom) w->opts.on_http = on_http_page;
        world_start(w);
        raw_open(&r, zk_app_server(w->app));
        raw_send(&r, "GET /index.html HTTP/1.1\r\nHost: loopback\r\n\r\n");
        pump(w->loop);
        raw_recv(&r);
        if (custom) {
            CHECK(strncmp(r.in, "HTTP/1.1 200 ", 13) == 0);
            CHECK_TEXT(raw_body(&r), "a page");
            CHECK_EQ_INT(w->hooks, 100);
        } else {
            CHECK(strncmp(r.in, "HTTP/1.1 426 ", 13) == 0);
            CHECK_EQ_INT(w->hooks, 0);
        }
        raw_close(&r);
        pump(w->loop);
        world_free(w);
    }
    CHECK_ALL_FREED();
}

/* ---- client ids ---------------------------------------------------------- */

static int is_b64url(const char *s) {
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_'))
            return 0;
    return 1;
}

TEST(client_ids_are_distinct_and_found) {
    world *w = world_new();
    static char ids[MAX_CLIENTS][23];
    int i, j, n = 250, dup = 0;
    world_start(w);
    for (i = 0; i < n; i++) connect_one(w);
    CHECK_EQ_INT(w->nsrv, n);
    for (i = 0; i < n; i++) {
        const char *id = zk_conn_id(w->srv[i]);
        CHECK_EQ_INT(strlen(id), 22);
        CHECK(is_b64url(id));
        strcpy(ids[i], id);
        CHECK(zk_app_find(w->app, id) == w->srv[i]);
    }
    for (i = 0; i < n; i++)
        for (j = i + 1; j < n; j++) dup += strcmp(ids[i], ids[j]) == 0;
    CHECK_EQ_INT(dup, 0);
    CHECK(zk_app_find(w->app, "AAAAAAAAAAAAAAAAAAAAAA") == NULL);
    CHECK(zk_app_find(w->app, "") == NULL);
    {
        char shorter[23];
        strcpy(shorter, ids[0]);
        shorter[21] = '\0';
        CHECK(zk_app_find(w->app, shorter) == NULL);
    }
    /* the id is what the handler sees as well */
    send_json(w, &w->cli[3], "{\"type\":\"whoami\",\"rpcId\":1}");
    CHECK(strstr(last_msg(&w->cli[3]), ids[3]) != NULL);
    /* not found once closed */
    zk_conn_close(w->cli[0].conn, 1000, NULL);
    zk_conn_abort(w->cli[1].conn);
    pump(w->loop);
    CHECK(zk_app_find(w->app, ids[0]) == NULL);
    CHECK(zk_app_find(w->app, ids[1]) == NULL);
    CHECK(zk_app_find(w->app, ids[2]) == w->srv[2]);
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- require_auth ------------------------------------------------------------ */

TEST(auth_required_before_anything_is_routed) {
    world *w = world_new();
    client *c;
    w->opts.require_auth = 1;
    w->opts.auth_timeout_ms = 5000;
    world_start(w);
    c = connect_one(w);
    CHECK_EQ_INT(c->opens, 1);
    send_json(w, c, "{\"type\":\"echo\",\"payload\":1,\"rpcId\":\"x\"}");
    CHECK_ERR(c, "__rpc_err", "x", "UNAUTHORIZED");
    send_json(w, c, "{\"type\":\"echo\"}");
    CHECK_ERR(c, "__error", "", "UNAUTHORIZED");
    send_json(w, c, "{\"type\":\"no.such.route\",\"rpcId\":\"y\"}");
    CHECK_ERR(c, "__rpc_err", "y", "UNAUTHORIZED");
    CHECK_EQ_INT(W->routed, 0);
    CHECK(c->conn != NULL);
    send_json(w, c, "{\"type\":\"__auth\",\"payload\":{\"token\":\"secret\"},\"rpcId\":\"a\"}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":\"welcome\",\"rpcId\":\"a\"}");
    CHECK_EQ_INT(W->routed, 1);
    send_json(w, c, "{\"type\":\"echo\",\"payload\":2,\"rpcId\":\"z\"}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":2,\"rpcId\":\"z\"}");
    /* the context the __auth handler set is the connection's */
    CHECK(zk_conn_context(w->srv[0]) == &auth_user);
    /* authenticated: the deadline no longer applies */
    zk_loop_advance(w->loop, 6000);
    pump(w->loop);
    CHECK(c->conn != NULL);
    CHECK_EQ_INT(c->closes, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(auth_as_an_event_also_authenticates) {
    world *w = world_new();
    client *c;
    w->opts.require_auth = 1;
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"__auth\",\"payload\":{\"token\":\"secret\"}}");
    CHECK_EQ_INT(c->n, 0);
    send_json(w, c, "{\"type\":\"echo\",\"payload\":3,\"rpcId\":\"e\"}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":3,\"rpcId\":\"e\"}");
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(auth_failure_closes_unauthorized) {
    world *w = world_new();
    client *c;
    w->opts.require_auth = 1;
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"__auth\",\"payload\":{\"token\":\"wrong\"},\"rpcId\":\"a\"}");
    CHECK_EQ_INT(c->n, 1);
    CHECK_ERR(c, "__rpc_err", "a", "UNAUTHORIZED");
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, ZK_CLOSE_UNAUTHORIZED);
    CHECK_EQ_INT(w->disconnects, 1);
    CHECK_EQ_INT(w->disconnect_code, ZK_CLOSE_UNAUTHORIZED);
    world_free(w);
    CHECK_ALL_FREED();
}

/* Without require_auth, __auth is a route like any other: its failure is
   an error answer and the connection stays. */
TEST(auth_route_without_require_auth_is_an_ordinary_route) {
    world *w = world_new();
    client *c;
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"__auth\",\"payload\":{\"token\":\"wrong\"},\"rpcId\":\"a\"}");
    CHECK_EQ_INT(c->n, 1);
    CHECK_ERR(c, "__rpc_err", "a", "UNAUTHORIZED");
    CHECK_EQ_INT(c->closes, 0);
    CHECK_EQ_INT(w->disconnects, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(messages_behind_a_failed_auth_are_not_routed) {
    world *w = world_new();
    client *c;
    static const char bad[] = "{\"type\":\"__auth\",\"payload\":{\"token\":\"no\"}}";
    static const char next[] = "{\"type\":\"echo\",\"payload\":1,\"rpcId\":\"n\"}";
    w->opts.require_auth = 1;
    world_start(w);
    c = connect_one(w);
    /* both in one pass: the second arrives while the first closes */
    CHECK_EQ_INT(zk_conn_send(c->conn, bad, sizeof bad - 1, 0), 0);
    CHECK_EQ_INT(zk_conn_send(c->conn, next, sizeof next - 1, 0), 0);
    pump(w->loop);
    CHECK_EQ_INT(W->routed, 1); /* __auth only */
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, ZK_CLOSE_UNAUTHORIZED);
    CHECK(c->n >= 1);
    CHECK_ERR(c, c->n == 1 ? "__error" : "__rpc_err", c->n == 1 ? "" : "n", "UNAUTHORIZED");
    CHECK_TEXT(parse_env(msg_at(c, 0)).ref, "__auth");
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(no_auth_by_the_deadline_closes_unauthorized) {
    world *w = world_new();
    client *c, *late;
    w->opts.require_auth = 1;
    w->opts.auth_timeout_ms = 2000;
    world_start(w);
    c = connect_one(w);
    zk_loop_advance(w->loop, 1000);
    late = connect_one(w);
    zk_loop_advance(w->loop, 999);
    pump(w->loop);
    CHECK(c->conn != NULL);
    zk_loop_advance(w->loop, 1);
    pump(w->loop);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, ZK_CLOSE_UNAUTHORIZED);
    CHECK(late->conn != NULL); /* its own deadline is later */
    send_json(w, late, "{\"type\":\"__auth\",\"payload\":{\"token\":\"secret\"}}");
    zk_loop_advance(w->loop, 5000);
    pump(w->loop);
    CHECK(late->conn != NULL);
    CHECK_EQ_INT(late->closes, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(default_auth_timeout_is_ten_seconds) {
    world *w = world_new();
    client *c;
    w->opts.require_auth = 1;
    world_start(w);
    c = connect_one(w);
    zk_loop_advance(w->loop, 9999);
    pump(w->loop);
    CHECK(c->conn != NULL);
    zk_loop_advance(w->loop, 1);
    pump(w->loop);
    CHECK_EQ_INT(c->close_code, ZK_CLOSE_UNAUTHORIZED);
    world_free(w);
    CHECK_ALL_FREED();
}

/* A __ping event gets one __pong with its payload; a __ping with an rpcId
   is a call, and gets the one answer every call gets. */
TEST(ping_event_gets_a_pong_and_a_ping_call_its_answer) {
    world *w = world_new();
    client *c;
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"__ping\",\"payload\":{\"t\":1}}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__pong\",\"payload\":{\"t\":1}}");
    send_json(w, c, "{\"type\":\"__ping\",\"rpcId\":\"p\"}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":null,\"rpcId\":\"p\"}");
    send_json(w, c, "{\"type\":\"__ping\",\"payload\":[1,\"x\"],\"rpcId\":4}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":[1,\"x\"],\"rpcId\":4}");
    CHECK_EQ_INT(c->n, 3);
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- kept requests ------------------------------------------------------------ */

TEST(kept_request_answered_later) {
    world *w = world_new();
    client *c;
    zk_request *k;
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"slow\",\"payload\":{\"big\":[1,2,3]},\"rpcId\":\"s1\"}");
    CHECK_EQ_INT(w->nkept, 1);
    CHECK_EQ_INT(c->n, 0); /* nothing yet */
    k = w->kept[0];
    CHECK(k != NULL);
    if (!k) {
        world_free(w);
        return;
    }
    CHECK_EQ_INT(zk_value_type(zk_request_payload(k)), ZK_TYPE_NONE);
    CHECK(zk_request_conn(k) == w->srv[0]);
    CHECK(zk_request_app(k) == w->app);
    CHECK_EQ_INT(zk_request_is_call(k), 1);
    zk_loop_advance(w->loop, 1000);
    pump(w->loop);
    CHECK_EQ_INT(c->n, 0);
    zk_write_str(zk_request_writer(k), "late");
    CHECK_EQ_INT(zk_request_ok(k), 0);
    pump(w->loop);
    CHECK_EQ_INT(c->n, 1);
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":\"late\",\"rpcId\":\"s1\"}");
    /* and a failing one, integer rpcId */
    send_json(w, c, "{\"type\":\"slow\",\"rpcId\":12}");
    CHECK_EQ_INT(w->nkept, 2);
    CHECK_EQ_INT(zk_request_fail(w->kept[1], "LATER", "it failed later"), 0);
    pump(w->loop);
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_err\",\"rpcId\":12,\"error\":{\"code\":\"LATER\","
                            "\"message\":\"it failed later\"}}");
    /* an event kept and answered ok later sends nothing */
    send_json(w, c, "{\"type\":\"slow\"}");
    CHECK_EQ_INT(w->nkept, 3);
    CHECK_EQ_INT(zk_request_ok(w->kept[2]), 0);
    pump(w->loop);
    CHECK_EQ_INT(c->n, 2);
    world_free(w);
    CHECK_ALL_FREED();
}

/* The answer-later path as the header describes it: the handler keeps the
   request and hands the work to a thread, which posts the result back to
   the loop; the answer is written on the loop's thread. */
typedef struct job {
    pthread_t thread;
    zk_loop *loop;
    zk_request *req;
    int64_t n, result;
} job;
static job the_job;
static void job_done(zk_loop *loop, void *arg) {
    job *j = (job *)arg;
    (void)loop;
    zk_write_int(zk_request_writer(j->req), j->result);
    CHECK_EQ_INT(zk_request_ok(j->req), 0);
}
static void *job_run(void *arg) {
    job *j = (job *)arg;
    j->result = j->n * 2;
    if (zk_loop_post(j->loop, job_done, j) != 0) abort();
    return NULL;
}
static void r_thread(zk_request *req) {
    the_job.n = zk_value_int(zk_request_payload(req), 0);
    the_job.loop = zk_conn_loop(zk_request_conn(req));
    the_job.req = zk_request_keep(req);
    if (!the_job.req || pthread_create(&the_job.thread, NULL, job_run, &the_job) != 0) abort();
}

TEST(kept_request_answered_from_a_worker_thread) {
    world *w = world_new();
    client *c;
    CHECK_EQ_INT(zk_router_on(w->router, "work", r_thread, NULL), 0);
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"work\",\"payload\":21,\"rpcId\":\"t\"}");
    CHECK_EQ_INT(pthread_join(the_job.thread, NULL), 0); /* it has posted (the pump
                                                             above may have run it already) */
    pump(w->loop);
    CHECK_EQ_INT(c->n, 1);
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":42,\"rpcId\":\"t\"}");
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(kept_request_times_out) {
    world *w = world_new();
    client *c;
    envelope e;
    w->opts.request_timeout_ms = 500;
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"slow\",\"rpcId\":\"t\"}");
    CHECK_EQ_INT(w->nkept, 1);
    zk_loop_advance(w->loop, 499);
    pump(w->loop);
    CHECK_EQ_INT(c->n, 0);
    zk_loop_advance(w->loop, 1);
    pump(w->loop);
    CHECK_EQ_INT(c->n, 1);
    e = parse_env(last_msg(c));
    CHECK_TEXT(e.type, "__rpc_err");
    CHECK_TEXT(e.rpc_id, "t");
    CHECK_TEXT(e.code, "TIMEOUT");
    zk_write_int(zk_request_writer(w->kept[0]), 1);
    CHECK_EQ_INT(zk_request_ok(w->kept[0]), ZK_ETIMEDOUT);
    pump(w->loop);
    CHECK_EQ_INT(c->n, 1); /* no second answer */
    /* the same with zk_request_fail */
    send_json(w, c, "{\"type\":\"slow\",\"rpcId\":\"t2\"}");
    zk_loop_advance(w->loop, 500);
    pump(w->loop);
    CHECK_ERR(c, "__rpc_err", "t2", "TIMEOUT");
    CHECK_EQ_INT(zk_request_fail(w->kept[1], "X", "y"), ZK_ETIMEDOUT);
    pump(w->loop);
    CHECK_EQ_INT(c->n, 2);
    /* a kept event: the TIMEOUT is an __error that names it */
    send_json(w, c, "{\"type\":\"slow\"}");
    zk_loop_advance(w->loop, 500);
    pump(w->loop);
    CHECK_EQ_INT(c->n, 3);
    CHECK_ERR(c, "__error", "", "TIMEOUT");
    CHECK_TEXT(parse_env(last_msg(c)).ref, "slow");
    CHECK_EQ_INT(zk_request_ok(w->kept[2]), ZK_ETIMEDOUT);
    CHECK(c->conn != NULL);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(kept_request_of_a_closed_connection) {
    world *w = world_new();
    client *c;
    zk_request *k;
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"slow\",\"rpcId\":\"s\"}");
    send_json(w, c, "{\"type\":\"slow\",\"rpcId\":\"s2\"}");
    CHECK_EQ_INT(w->nkept, 2);
    zk_conn_close(c->conn, 1000, NULL);
    pump(w->loop);
    CHECK_EQ_INT(c->closes, 1);
    k = w->kept[0];
    CHECK(zk_request_conn(k) == NULL);
    zk_write_int(zk_request_writer(k), 1);
    CHECK_EQ_INT(zk_request_ok(k), ZK_ECLOSED);
    CHECK_EQ_INT(zk_request_fail(w->kept[1], "X", NULL), ZK_ECLOSED);
    /* and past the deadline, after the close: still closed, nothing leaks */
    send_json(w, connect_one(w), "{\"type\":\"slow\",\"rpcId\":\"s3\"}");
    CHECK_EQ_INT(w->nkept, 3);
    zk_conn_abort(w->cli[1].conn);
    pump(w->loop);
    zk_loop_advance(w->loop, 60000);
    pump(w->loop);
    CHECK_EQ_INT(zk_request_ok(w->kept[2]), ZK_ECLOSED);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(kept_requests_never_answered_are_freed_with_the_app) {
    world *w = world_new();
    client *c;
    w->opts.request_timeout_ms = 100;
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"slow\",\"rpcId\":\"a\"}");
    send_json(w, c, "{\"type\":\"slow\",\"rpcId\":\"b\"}");
    send_json(w, connect_one(w), "{\"type\":\"slow\",\"rpcId\":\"c\"}");
    zk_loop_advance(w->loop, 100); /* one timed out, kept by nobody */
    pump(w->loop);
    zk_conn_abort(c->conn); /* two orphaned */
    pump(w->loop);
    CHECK_EQ_INT(w->nkept, 3);
    world_free(w); /* nothing is answered: the app frees them */
    CHECK_ALL_FREED();
}

TEST(too_many_kept_requests_are_refused) {
    world *w = world_new();
    client *c;
    w->opts.max_kept_per_conn = 2;
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"slow\",\"rpcId\":1}");
    send_json(w, c, "{\"type\":\"slow\",\"rpcId\":2}");
    CHECK_EQ_INT(c->n, 0);
    send_json(w, c, "{\"type\":\"slow\",\"rpcId\":3}");
    CHECK_ERR(c, "__rpc_err", "3", "TOO_MANY_REQUESTS");
    CHECK_EQ_INT(w->nkept, 2);
    CHECK_EQ_INT(zk_request_ok(w->kept[0]), 0);
    pump(w->loop);
    send_json(w, c, "{\"type\":\"slow\",\"rpcId\":4}");
    CHECK_EQ_INT(w->nkept, 3);
    CHECK_EQ_INT(zk_request_ok(w->kept[1]), 0);
    CHECK_EQ_INT(zk_request_ok(w->kept[2]), 0);
    pump(w->loop);
    CHECK_EQ_INT(c->n, 4);
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- rooms ---------------------------------------------------------------- */

static int has_name(const char **names, size_t n, const char *want) {
    size_t i;
    for (i = 0; i < n; i++)
        if (strcmp(names[i], want) == 0) return 1;
    return 0;
}

TEST(rooms_join_leave_has_list) {
    world *w = world_new();
    zk_conn *a, *b;
    const char *names[8];
    zk_conn *members[8];
    world_start(w);
    connect_one(w);
    connect_one(w);
    a = w->srv[0];
    b = w->srv[1];
    CHECK_EQ_INT(zk_app_rooms(w->app, names, 8), 0);
    CHECK_EQ_INT(zk_room_join(a, "lobby"), 0);
    CHECK_EQ_INT(zk_room_join(a, "lobby"), 1);
    CHECK_EQ_INT(zk_room_join(a, "game:1"), 0);
    CHECK_EQ_INT(zk_room_join(b, "lobby"), 0);
    CHECK_EQ_INT(zk_room_has(a, "lobby"), 1);
    CHECK_EQ_INT(zk_room_has(a, "game:1"), 1);
    CHECK_EQ_INT(zk_room_has(b, "game:1"), 0);
    CHECK_EQ_INT(zk_room_has(a, "Lobby"), 0);
    CHECK_EQ_INT(zk_room_list(a, names, 8), 2);
    CHECK(has_name(names, 2, "lobby") && has_name(names, 2, "game:1"));
    CHECK_EQ_INT(zk_room_list(a, names, 1), 2); /* how many there are, whatever the cap */
    CHECK_EQ_INT(zk_room_list(b, names, 8), 1);
    CHECK_TEXT(names[0], "lobby");
    CHECK_EQ_INT(zk_room_members(w->app, "lobby", members, 8), 2);
    CHECK((members[0] == a && members[1] == b) || (members[0] == b && members[1] == a));
    CHECK_EQ_INT(zk_room_members(w->app, "lobby", members, 1), 2);
    CHECK_EQ_INT(zk_room_members(w->app, "game:1", members, 8), 1);
    CHECK(members[0] == a);
    CHECK_EQ_INT(zk_room_members(w->app, "nowhere", members, 8), 0);
    CHECK_EQ_INT(zk_app_rooms(w->app, names, 8), 2);
    CHECK(has_name(names, 2, "lobby") && has_name(names, 2, "game:1"));
    CHECK_EQ_INT(zk_app_rooms(w->app, names, 1), 2);
    /* leaving */
    CHECK_EQ_INT(zk_room_leave(a, "game:1"), 0);
    CHECK_EQ_INT(zk_room_leave(a, "game:1"), ZK_ENOTFOUND);
    CHECK_EQ_INT(zk_room_leave(b, "never"), ZK_ENOTFOUND);
    CHECK_EQ_INT(zk_room_has(a, "game:1"), 0);
    CHECK_EQ_INT(zk_app_rooms(w->app, names, 8), 1); /* an empty room is gone */
    CHECK_TEXT(names[0], "lobby");
    CHECK_EQ_INT(zk_room_members(w->app, "game:1", members, 8), 0);
    CHECK_EQ_INT(zk_room_leave(a, "lobby"), 0);
    CHECK_EQ_INT(zk_room_members(w->app, "lobby", members, 8), 1);
    CHECK(members[0] == b);
    CHECK_EQ_INT(zk_room_list(a, names, 8), 0);
    CHECK_EQ_INT(zk_room_leave(b, "lobby"), 0);
    CHECK_EQ_INT(zk_app_rooms(w->app, names, 8), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(room_names_and_the_per_connection_cap) {
    world *w = world_new();
    zk_conn *a;
    client *c;
    char name[ZK_ROOM_MAX_NAME + 2];
    w->opts.max_rooms_per_conn = 3;
    world_start(w);
    c = connect_one(w);
    a = w->srv[0];
    memset(name, 'r', sizeof name);
    name[ZK_ROOM_MAX_NAME] = '\0';
    CHECK_EQ_INT(zk_room_join(a, ""), ZK_EINVAL);
    CHECK_EQ_INT(zk_room_join(a, name), 0); /* exactly the limit */
    name[ZK_ROOM_MAX_NAME] = 'r';
    name[ZK_ROOM_MAX_NAME + 1] = '\0';
    CHECK_EQ_INT(zk_room_join(a, name), ZK_EINVAL);
    CHECK_EQ_INT(zk_room_join(a, "two"), 0);
    CHECK_EQ_INT(zk_room_join(a, "three"), 0);
    CHECK_EQ_INT(zk_room_join(a, "four"), ZK_ENOSPACE);
    CHECK_EQ_INT(zk_room_join(a, "two"), 1); /* re-joining is not a new room */
    CHECK_EQ_INT(zk_room_has(a, "four"), 0);
    CHECK_EQ_INT(zk_room_leave(a, "two"), 0);
    CHECK_EQ_INT(zk_room_join(a, "four"), 0);
    CHECK_EQ_INT(zk_room_list(a, NULL, 0), 3);
    /* a client end, or a closed connection, is not an open app connection */
    CHECK_EQ_INT(zk_room_join(c->conn, "x"), ZK_EINVAL);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(default_room_cap_is_64) {
    world *w = world_new();
    zk_conn *a;
    char name[16];
    int i;
    world_start(w);
    connect_one(w);
    a = w->srv[0];
    for (i = 0; i < 64; i++) {
        sprintf(name, "room%d", i);
        CHECK_EQ_INT(zk_room_join(a, name), 0);
    }
    CHECK_EQ_INT(zk_room_join(a, "one-more"), ZK_ENOSPACE);
    CHECK_EQ_INT(zk_app_rooms(w->app, NULL, 0), 64);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(rooms_are_left_on_disconnect) {
    world *w = world_new();
    client *c0;
    zk_conn *members[4];
    const char *names[4];
    world_start(w);
    c0 = connect_one(w);
    connect_one(w);
    CHECK_EQ_INT(zk_room_join(w->srv[0], "lobby"), 0);
    CHECK_EQ_INT(zk_room_join(w->srv[0], "solo"), 0);
    CHECK_EQ_INT(zk_room_join(w->srv[1], "lobby"), 0);
    CHECK_EQ_INT(zk_app_rooms(w->app, names, 4), 2);
    zk_conn_abort(c0->conn);
    pump(w->loop);
    CHECK_EQ_INT(w->disconnects, 1);
    CHECK_EQ_INT(w->disconnect_in_room, 1);
    CHECK_EQ_INT(w->disconnect_room_members, 2);
    CHECK_EQ_INT(zk_room_members(w->app, "lobby", members, 4), 1);
    CHECK(members[0] == w->srv[1]);
    CHECK_EQ_INT(zk_room_members(w->app, "solo", members, 4), 0);
    CHECK_EQ_INT(zk_app_rooms(w->app, names, 4), 1);
    CHECK_TEXT(names[0], "lobby");
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(joining_through_a_handler) {
    world *w = world_new();
    client *c;
    world_start(w);
    c = connect_one(w);
    send_json(w, c, "{\"type\":\"join\",\"payload\":\"lobby\",\"rpcId\":1}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":0,\"rpcId\":1}");
    send_json(w, c, "{\"type\":\"join\",\"payload\":\"lobby\",\"rpcId\":2}");
    CHECK_TEXT(last_msg(c), "{\"type\":\"__rpc_res\",\"payload\":1,\"rpcId\":2}");
    CHECK_EQ_INT(zk_room_has(w->srv[0], "lobby"), 1);
    world_free(w);
    CHECK_ALL_FREED();
}

/* A broadcast to more connections than the 64 standing spare chunks reuses
   the chunks of the broadcast before: the second one allocates only the
   loopback transport's one segment per write. */
TEST(repeated_broadcasts_to_200_connections_reuse_their_chunks) {
    world *w = world_new();
    zk_target to;
    long calls;
    int i, round;
    world_start(w);
    for (i = 0; i < 200; i++) connect_one(w);
    CHECK_EQ_INT(w->nsrv, 200);
    memset(&to, 0, sizeof to);
    to.all = 1;
    for (round = 0; round < 2; round++) {
        zk_writer *m = zk_app_message(w->app, "tick");
        zk_write_int(m, round);
        calls = lib_alloc_calls;
        CHECK_EQ_INT(zk_app_send(w->app, &to), 200);
        pump(w->loop);
        if (round == 1) CHECK(lib_alloc_calls - calls <= 200 + 8);
    }
    for (i = 0; i < 200; i++) CHECK_TEXT(last_msg(&w->cli[i]), "{\"type\":\"tick\",\"payload\":1}");
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(a_million_join_leave_cycles_keep_memory_flat) {
    world *w = world_new();
    zk_conn *a, *b;
    long long before, after_warm, after;
    long allocs_before;
    long i;
    static const char *const names[] = {"alpha", "beta", "gamma:42"};
    world_start(w);
    connect_one(w);
    connect_one(w);
    a = w->srv[0];
    b = w->srv[1];
    CHECK_EQ_INT(zk_room_join(b, "home"), 0);
    before = lib_live_bytes;
    allocs_before = lib_live_allocs;
    for (i = 0; i < 1000; i++) {
        const char *n = names[i % 3];
        if (zk_room_join(a, n) != 0 || zk_room_join(b, n) != 0 || zk_room_leave(a, n) != 0 ||
            zk_room_leave(b, n) != 0)
            break;
    }
    CHECK_EQ_INT(i, 1000);
    after_warm = lib_live_bytes;
    for (i = 0; i < 1000000; i++) {
        const char *n = names[i % 3];
        if (zk_room_join(a, n) != 0 || zk_room_leave(a, n) != 0) break;
        if ((i & 7) == 0 && (zk_room_join(b, n) != 0 || zk_room_leave(b, n) != 0)) break;
    }
    CHECK_EQ_INT(i, 1000000);
    after = lib_live_bytes;
    CHECK_EQ_INT(after_warm, before);
    CHECK_EQ_INT(after, before);
    CHECK_EQ_INT(lib_live_allocs, allocs_before);
    CHECK_EQ_INT(zk_app_rooms(w->app, NULL, 0), 1);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(a_room_of_many_members_shrinks_back) {
    world *w = world_new();
    long long before;
    int i;
    world_start(w);
    for (i = 0; i < 100; i++) connect_one(w);
    before = lib_live_bytes;
    for (i = 0; i < 100; i++) CHECK_EQ_INT(zk_room_join(w->srv[i], "big"), 0);
    CHECK_EQ_INT(zk_room_members(w->app, "big", NULL, 0), 100);
    for (i = 0; i < 100; i++) CHECK_EQ_INT(zk_room_leave(w->srv[(i * 37) % 100], "big"), 0);
    CHECK_EQ_INT(zk_room_members(w->app, "big", NULL, 0), 0);
    CHECK_EQ_INT(lib_live_bytes, before);
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- sending ------------------------------------------------------------------ */

static int send_text(zk_app *app, const char *type, const char *text, const zk_target *to) {
    zk_writer *w = zk_app_message(app, type);
    if (text) {
        zk_write_object(w);
        zk_write_key(w, "text");
        zk_write_str(w, text);
        zk_write_end(w);
    }
    return zk_app_send(app, to);
}

TEST(send_to_conns_ids_rooms_and_all) {
    world *w = world_new();
    client *c[4];
    zk_target to;
    const char *ids[3];
    const char *rooms[3];
    int i;
    world_start(w);
    for (i = 0; i < 4; i++) c[i] = connect_one(w);
    /* conns */
    memset(&to, 0, sizeof to);
    to.conns = &w->srv[1];
    to.conn_count = 1;
    CHECK_EQ_INT(send_text(w->app, "chat.message", "hi", &to), 1);
    pump(w->loop);
    CHECK_EQ_INT(c[1]->n, 1);
    CHECK_TEXT(last_msg(c[1]), "{\"type\":\"chat.message\",\"payload\":{\"text\":\"hi\"}}");
    CHECK_EQ_INT(c[0]->n + c[2]->n + c[3]->n, 0);
    /* ids, with a duplicate and an unknown one */
    memset(&to, 0, sizeof to);
    ids[0] = zk_conn_id(w->srv[2]);
    ids[1] = "nobody-has-this-id-xxx";
    ids[2] = zk_conn_id(w->srv[2]);
    to.ids = ids;
    to.id_count = 3;
    CHECK_EQ_INT(send_text(w->app, "note", NULL, &to), 1);
    pump(w->loop);
    CHECK_EQ_INT(c[2]->n, 1);
    CHECK_TEXT(last_msg(c[2]), "{\"type\":\"note\"}");
    /* rooms: c0, c1 in a; c1, c2 in b; c1 gets it once */
    zk_room_join(w->srv[0], "a");
    zk_room_join(w->srv[1], "a");
    zk_room_join(w->srv[1], "b");
    zk_room_join(w->srv[2], "b");
    memset(&to, 0, sizeof to);
    rooms[0] = "a";
    rooms[1] = "b";
    rooms[2] = "empty";
    to.rooms = rooms;
    to.room_count = 3;
    CHECK_EQ_INT(send_text(w->app, "room.msg", "r", &to), 3);
    pump(w->loop);
    CHECK_EQ_INT(c[0]->n, 1);
    CHECK_EQ_INT(c[1]->n, 2);
    CHECK_EQ_INT(c[2]->n, 2);
    CHECK_EQ_INT(c[3]->n, 0);
    CHECK_TEXT(last_msg(c[1]), "{\"type\":\"room.msg\",\"payload\":{\"text\":\"r\"}}");
    /* conns, ids and rooms together, each connection once */
    to.conns = &w->srv[0];
    to.conn_count = 1;
    ids[0] = zk_conn_id(w->srv[1]);
    to.ids = ids;
    to.id_count = 1;
    CHECK_EQ_INT(send_text(w->app, "mix", "m", &to), 3);
    pump(w->loop);
    CHECK_EQ_INT(c[0]->n, 2);
    CHECK_EQ_INT(c[1]->n, 3);
    CHECK_EQ_INT(c[2]->n, 3);
    /* all, except one */
    memset(&to, 0, sizeof to);
    to.all = 1;
    CHECK_EQ_INT(send_text(w->app, "everyone", "e", &to), 4);
    to.except = w->srv[3];
    CHECK_EQ_INT(send_text(w->app, "most", "e", &to), 3);
    pump(w->loop);
    CHECK_EQ_INT(c[0]->n, 4);
    CHECK_EQ_INT(c[3]->n, 1);
    CHECK_TEXT(last_msg(c[3]), "{\"type\":\"everyone\",\"payload\":{\"text\":\"e\"}}");
    CHECK_TEXT(last_msg(c[2]), "{\"type\":\"most\",\"payload\":{\"text\":\"e\"}}");
    /* except in a room */
    memset(&to, 0, sizeof to);
    rooms[0] = "a";
    to.rooms = rooms;
    to.room_count = 1;
    to.except = w->srv[0];
    CHECK_EQ_INT(send_text(w->app, "ex", "x", &to), 1);
    /* nothing targeted */
    memset(&to, 0, sizeof to);
    CHECK_EQ_INT(send_text(w->app, "none", "x", &to), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(send_from_a_handler_to_a_room_except_the_sender) {
    world *w = world_new();
    client *c[3];
    int i;
    world_start(w);
    for (i = 0; i < 3; i++) {
        c[i] = connect_one(w);
        send_json(w, c[i], "{\"type\":\"join\",\"payload\":\"lobby\"}");
    }
    send_json(w, c[0], "{\"type\":\"say\",\"payload\":\"hello\",\"rpcId\":\"s\"}");
    CHECK_TEXT(last_msg(c[0]), "{\"type\":\"__rpc_res\",\"payload\":2,\"rpcId\":\"s\"}");
    CHECK_EQ_INT(c[0]->n, 1);
    for (i = 1; i < 3; i++) {
        char want[128];
        snprintf(want, sizeof want, "{\"type\":\"chat.message\",\"payload\":{\"from\":\"%s\",\"text\":\"hello\"}}",
                 zk_conn_id(w->srv[0]));
        CHECK_EQ_INT(c[i]->n, 1);
        CHECK_TEXT(last_msg(c[i]), want);
    }
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(send_refuses_bad_messages) {
    world *w = world_new();
    zk_target to;
    zk_writer *wr;
    char long_type[ZK_ROUTE_MAX_NAME + 2];
    world_start(w);
    connect_one(w);
    memset(&to, 0, sizeof to);
    to.all = 1;
    CHECK_EQ_INT(zk_app_send(w->app, &to), ZK_EINVAL); /* no message started */
    wr = zk_app_message(w->app, "");
    CHECK(wr != NULL);
    CHECK_EQ_INT(zk_app_send(w->app, &to), ZK_EINVAL);
    memset(long_type, 't', sizeof long_type);
    long_type[ZK_ROUTE_MAX_NAME + 1] = '\0';
    zk_app_message(w->app, long_type);
    CHECK_EQ_INT(zk_app_send(w->app, &to), ZK_EINVAL);
    wr = zk_app_message(w->app, "ok.type");
    zk_write_key(wr, "misuse");
    CHECK_EQ_INT(zk_app_send(w->app, &to), ZK_EINVAL);
    wr = zk_app_message(w->app, "ok.type");
    zk_write_array(wr); /* never closed */
    CHECK_EQ_INT(zk_app_send(w->app, &to), ZK_EINVAL);
    /* starting another message discards the unsent one */
    wr = zk_app_message(w->app, "first");
    zk_write_int(wr, 1);
    wr = zk_app_message(w->app, "second");
    CHECK_EQ_INT(zk_app_send(w->app, &to), 1);
    pump(w->loop);
    CHECK_EQ_INT(w->cli[0].n, 1);
    CHECK_TEXT(last_msg(&w->cli[0]), "{\"type\":\"second\"}");
    world_free(w);
    CHECK_ALL_FREED();
}

/* Counts the writes waiting at a stalled client end: each write the
   server made is one segment there. */
static int segments_waiting(zk_conn *client_end) {
    zk__lb_end *e = (zk__lb_end *)(void *)client_end->stream;
    zk__lb_seg *g;
    int n = 0;
    for (g = e->in; g; g = g->next) n++;
    return n;
}

TEST(many_sends_in_one_pass_go_out_in_one_write) {
    world *w = world_new();
    client *c;
    zk_target to;
    int i;
    world_start(w);
    c = connect_one(w);
    memset(&to, 0, sizeof to);
    to.conns = &w->srv[0];
    to.conn_count = 1;
    CHECK_EQ_INT(zk_loopback_stall(c->conn, 1), 0);
    for (i = 0; i < 50; i++) {
        zk_writer *wr = zk_app_message(w->app, "tick");
        zk_write_int(wr, i);
        CHECK_EQ_INT(zk_app_send(w->app, &to), 1);
    }
    pump(w->loop);
    CHECK_EQ_INT(segments_waiting(c->conn), 1);
    CHECK_EQ_INT(c->n, 0);
    CHECK_EQ_INT(zk_loopback_stall(c->conn, 0), 0);
    pump(w->loop);
    CHECK_EQ_INT(c->n, 50);
    for (i = 0; i < 50; i++) {
        char want[64];
        sprintf(want, "{\"type\":\"tick\",\"payload\":%d}", i);
        CHECK_TEXT(msg_at(c, i), want);
    }
    /* a handler's sends and its answer: one write as well */
    {
        static const char burst[] = "{\"type\":\"burst\",\"payload\":20,\"rpcId\":\"b\"}";
        CHECK_EQ_INT(zk_conn_send(c->conn, burst, sizeof burst - 1, 0), 0);
    }
    CHECK_EQ_INT(zk_loopback_stall(c->conn, 1), 0);
    burst_rcs = 0;
    pump(w->loop);
    CHECK_EQ_INT(burst_rcs, 20);
    CHECK_EQ_INT(segments_waiting(c->conn), 1);
    CHECK_EQ_INT(zk_loopback_stall(c->conn, 0), 0);
    pump(w->loop);
    CHECK_EQ_INT(c->n, 71);
    CHECK_TEXT(msg_at(c, 50), "{\"type\":\"burst\",\"payload\":0}");
    CHECK_TEXT(msg_at(c, 69), "{\"type\":\"burst\",\"payload\":19}");
    CHECK_TEXT(msg_at(c, 70), "{\"type\":\"__rpc_res\",\"payload\":null,\"rpcId\":\"b\"}");
    /* large messages (shared by the queues rather than copied) mixed with
       small ones, to two connections: one write each */
    {
        client *d = connect_one(w);
        zk_conn *both[2];
        char big[3001];
        both[0] = w->srv[0];
        both[1] = w->srv[1];
        to.conns = both;
        to.conn_count = 2;
        zk_loopback_stall(c->conn, 1);
        zk_loopback_stall(d->conn, 1);
        for (i = 0; i < 10; i++) {
            memset(big, 'a' + i, sizeof big - 1);
            big[i % 2 ? 100 : sizeof big - 1] = '\0';
            CHECK_EQ_INT(send_text(w->app, "big", big, &to), 2);
        }
        pump(w->loop);
        CHECK_EQ_INT(segments_waiting(c->conn), 1);
        CHECK_EQ_INT(segments_waiting(d->conn), 1);
        zk_loopback_stall(c->conn, 0);
        zk_loopback_stall(d->conn, 0);
        pump(w->loop);
        CHECK_EQ_INT(c->n, 81);
        CHECK_EQ_INT(d->n, 10);
        for (i = 0; i < 10; i++) {
            envelope e = parse_env(msg_at(d, i));
            size_t want = i % 2 ? 100 : 3000;
            CHECK_TEXT(e.type, "big");
            CHECK_EQ_INT(strlen(e.payload), want + 11); /* {"text":"..."} */
            CHECK_EQ_INT(e.payload[9], 'a' + i);
            CHECK_TEXT(msg_at(c, 71 + i), msg_at(d, i));
        }
    }
    world_free(w);
    CHECK_ALL_FREED();
}

/* Backs up the server's queue to client c (stalled, small loopback
   capacity) with QUEUE messages until it holds more than limit bytes. */
static void back_up(world *w, client *c, zk_conn *s, size_t limit) {
    zk_target to;
    int guard = 0;
    memset(&to, 0, sizeof to);
    to.conns = &s;
    to.conn_count = 1;
    zk_loopback_stall(c->conn, 1);
    while (zk_conn_buffered(s) <= limit && guard++ < 1000) {
        CHECK_EQ_INT(send_text(w->app, "fill", "0123456789012345678901234567890123456789", &to), 1);
        pump(w->loop);
    }
}

TEST(volatile_delivery_drops_for_a_backed_up_connection) {
    world *w = world_new();
    client *slow, *fast;
    zk_loopback_opts lo;
    zk_target to;
    zk_app_stats st;
    int queued;
    memset(&lo, 0, sizeof lo);
    lo.capacity = 256;
    w->opts.server.write_high_water = 1024;
    world_start(w);
    slow = connect_with(w, "ws://loopback/", NULL, 0, &lo);
    fast = connect_one(w);
    back_up(w, slow, w->srv[0], 1024);
    CHECK(zk_conn_buffered(w->srv[0]) > 1024);
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.dropped, 0);
    queued = (int)st.messages_out;
    memset(&to, 0, sizeof to);
    to.all = 1;
    to.delivery = ZK_DELIVER_VOLATILE;
    CHECK_EQ_INT(send_text(w->app, "pos", "v1", &to), 1); /* fast only */
    CHECK_EQ_INT(send_text(w->app, "pos", "v2", &to), 1);
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.dropped, 2);
    CHECK_EQ_INT(st.messages_out, (uint64_t)queued + 2);
    CHECK_EQ_INT(st.slow_closed, 0);
    pump(w->loop);
    CHECK_EQ_INT(fast->n, 2);
    zk_loopback_stall(slow->conn, 0);
    pump(w->loop);
    CHECK_EQ_INT(slow->n, queued);
    CHECK(strstr(last_msg(slow), "fill") != NULL); /* no "pos" */
    CHECK(slow->conn != NULL);
    /* caught up: volatile messages reach it again */
    CHECK_EQ_INT(send_text(w->app, "pos", "v3", &to), 2);
    pump(w->loop);
    CHECK_TEXT(last_msg(slow), "{\"type\":\"pos\",\"payload\":{\"text\":\"v3\"}}");
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(volatile_message_reaches_an_idle_connection_whatever_its_size) {
    world *w = world_new();
    client *c;
    zk_target to;
    char big[3000];
    zk_app_stats st;
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    w->opts.server.write_high_water = 1024;
    world_start(w);
    c = connect_one(w);
    CHECK_EQ_INT(zk_conn_buffered(w->srv[0]), 0); /* its queue is empty: not past the mark */
    memset(&to, 0, sizeof to);
    to.all = 1;
    to.delivery = ZK_DELIVER_VOLATILE;
    CHECK_EQ_INT(send_text(w->app, "snapshot", big, &to), 1);
    pump(w->loop);
    CHECK_EQ_INT(c->n, 1);
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.dropped, 0);
    to.delivery = ZK_DELIVER_CLOSE_SLOW;
    CHECK_EQ_INT(send_text(w->app, "snapshot", big, &to), 1);
    pump(w->loop);
    CHECK_EQ_INT(c->n, 2);
    CHECK(c->conn != NULL);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(close_slow_delivery_closes_a_backed_up_connection) {
    world *w = world_new();
    client *slow, *fast;
    zk_loopback_opts lo;
    zk_target to;
    zk_app_stats st;
    memset(&lo, 0, sizeof lo);
    lo.capacity = 256;
    w->opts.server.write_high_water = 1024;
    world_start(w);
    slow = connect_with(w, "ws://loopback/", NULL, 0, &lo);
    fast = connect_one(w);
    back_up(w, slow, w->srv[0], 1024);
    memset(&to, 0, sizeof to);
    to.all = 1;
    to.delivery = ZK_DELIVER_CLOSE_SLOW;
    CHECK_EQ_INT(send_text(w->app, "state", "s", &to), 1);
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.dropped, 1);
    CHECK_EQ_INT(st.slow_closed, 1);
    /* a second one while it closes: not counted as another slow close */
    CHECK_EQ_INT(send_text(w->app, "state", "s2", &to), 1);
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.slow_closed, 1);
    zk_loopback_stall(slow->conn, 0);
    pump(w->loop);
    CHECK_EQ_INT(slow->closes, 1);
    CHECK_EQ_INT(slow->close_code, ZK_CLOSE_SLOW_CONSUMER);
    CHECK_EQ_INT(w->disconnects, 1);
    CHECK_EQ_INT(fast->n, 2);
    CHECK(fast->conn != NULL);
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.connections, 1);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(queue_delivery_queues_up_to_the_write_limit_then_closes) {
    world *w = world_new();
    client *c;
    zk_loopback_opts lo;
    zk_target to;
    zk_app_stats st;
    int i, queued = 0, refused = 0;
    memset(&lo, 0, sizeof lo);
    lo.capacity = 256;
    w->opts.server.write_high_water = 1024;
    w->opts.server.write_limit = 4096;
    world_start(w);
    c = connect_with(w, "ws://loopback/", NULL, 0, &lo);
    zk_loopback_stall(c->conn, 1);
    memset(&to, 0, sizeof to);
    to.all = 1;
    for (i = 0; i < 200; i++) {
        int rc = send_text(w->app, "q", "0123456789012345678901234567890123456789", &to);
        CHECK(rc == 0 || rc == 1);
        if (rc == 1) queued++;
        else refused++;
    }
    /* queued past the high-water mark, as long as the queue stays within
       the write limit (frames of a short text: 2 bytes of header) */
    CHECK_EQ_INT(queued, 4096 / (strlen("{\"type\":\"q\",\"payload\":{\"text\":\"0123456789012345678901234567890123456789\"}}") + 2));
    CHECK(zk_conn_buffered(w->srv[0]) <= 4096);
    pump(w->loop);
    /* the first message refused closes the connection as a slow consumer:
       a member that silently missed one would never know; the others went
       nowhere (the connection was closing) */
    zk_app_get_stats(w->app, &st);
    CHECK(refused > 0);
    CHECK_EQ_INT(st.dropped, 1);
    CHECK_EQ_INT(st.slow_closed, 1);
    zk_loopback_stall(c->conn, 0);
    pump(w->loop);
    CHECK_EQ_INT(c->n, queued);
    CHECK(c->conn == NULL);
    CHECK_EQ_INT(c->close_code, ZK_CLOSE_SLOW_CONSUMER);
    world_free(w);
    CHECK_ALL_FREED();
}

/* An answer that would pass the write limit is lost: the connection is
   closed 4001, so the client's call fails at once rather than at its
   timeout with the connection still open. */
TEST(answer_past_the_write_limit_closes_the_connection) {
    world *w = world_new();
    client *c;
    zk_loopback_opts lo;
    zk_app_stats st;
    char big[2048];
    int queued = 0;
    memset(&lo, 0, sizeof lo);
    lo.capacity = 256;
    w->opts.server.write_high_water = 1024;
    w->opts.server.write_limit = 4096;
    world_start(w);
    c = connect_with(w, "ws://loopback/", NULL, 0, &lo);
    send_json(w, c, "{\"type\":\"slow\",\"rpcId\":\"s1\"}");
    CHECK_EQ_INT(w->nkept, 1);
    if (w->nkept != 1) {
        world_free(w);
        return;
    }
    zk_loopback_stall(c->conn, 1);
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    while (queued < 100 && zk_conn_send(w->srv[0], big, 1000, 0) >= 0) queued++;
    CHECK(zk_conn_buffered(w->srv[0]) > 4096 - 1004);
    zk_write_str(zk_request_writer(w->kept[0]), big);
    CHECK_EQ_INT(zk_request_ok(w->kept[0]), 0);
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.dropped, 1);
    CHECK_EQ_INT(st.slow_closed, 1);
    zk_loopback_stall(c->conn, 0);
    pump(w->loop);
    CHECK_EQ_INT(c->n, queued); /* what was queued, then the close */
    CHECK(c->conn == NULL);
    CHECK_EQ_INT(c->close_code, ZK_CLOSE_SLOW_CONSUMER);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(unauthenticated_connections_receive_no_app_messages) {
    world *w = world_new();
    client *c[2];
    zk_target to;
    w->opts.require_auth = 1;
    world_start(w);
    c[0] = connect_one(w);
    c[1] = connect_one(w);
    send_json(w, c[0], "{\"type\":\"__auth\",\"payload\":{\"token\":\"secret\"}}");
    memset(&to, 0, sizeof to);
    to.all = 1;
    CHECK_EQ_INT(send_text(w->app, "news", "n", &to), 1);
    pump(w->loop);
    CHECK_EQ_INT(c[0]->n, 1);
    CHECK_EQ_INT(c[1]->n, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- stats ---------------------------------------------------------------- */

TEST(stats_count_exactly) {
    world *w = world_new();
    client *a, *b;
    zk_app_stats st;
    zk_target to;
    static const char *const in[] = {
        "{\"type\":\"echo\",\"payload\":1,\"rpcId\":\"a\"}", /* __rpc_res */
        "{\"type\":\"forbid\"}",                             /* __error */
        "{\"type\":\"echo\"}",                               /* nothing */
        "{\"type\":\"nope\",\"rpcId\":2}",                   /* __rpc_err */
        "junk"};                                             /* __error */
    unsigned long long bytes_in = 0;
    size_t i;
    w->opts.path = "/ws";
    world_start(w);
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.connections + st.accepted + st.refused + st.messages_in + st.bytes_in + st.messages_out +
                     st.bytes_out + st.dropped + st.slow_closed + st.errors,
                 0);
    a = connect_url(w, "ws://loopback/ws");
    b = connect_url(w, "ws://loopback/ws");
    connect_url(w, "ws://loopback/ws?refuse=1"); /* the hook refuses */
    connect_url(w, "ws://loopback/elsewhere");    /* 404 */
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.connections, 2);
    CHECK_EQ_INT(st.accepted, 2);
    CHECK_EQ_INT(st.refused, 2);
    for (i = 0; i < sizeof in / sizeof in[0]; i++) {
        send_json(w, a, in[i]);
        bytes_in += strlen(in[i]);
    }
    CHECK_EQ_INT(a->n, 4);
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.messages_in, 5);
    CHECK_EQ_INT(st.bytes_in, bytes_in);
    CHECK_EQ_INT(st.messages_out, 4);
    CHECK_EQ_INT(st.bytes_out, a->bytes);
    CHECK_EQ_INT(st.errors, 3);
    memset(&to, 0, sizeof to);
    to.all = 1;
    CHECK_EQ_INT(send_text(w->app, "hello", "all", &to), 2);
    pump(w->loop);
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.messages_out, 6);
    CHECK_EQ_INT(st.bytes_out, a->bytes + b->bytes);
    CHECK_EQ_INT(st.dropped, 0);
    CHECK_EQ_INT(st.slow_closed, 0);
    zk_conn_close(b->conn, 1000, NULL);
    pump(w->loop);
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.connections, 1);
    CHECK_EQ_INT(st.accepted, 2);
    CHECK_EQ_INT(st.errors, 3);
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- out of memory ------------------------------------------------------- */

/* How many messages of c answer rpcId id (a string). */
static int answers_to(const client *c, const char *id) {
    int i, n = 0;
    for (i = 0; i < c->n; i++) {
        envelope e = parse_env(c->msgs[i]);
        if ((strcmp(e.type, "__rpc_res") == 0 || strcmp(e.type, "__rpc_err") == 0) && strcmp(e.rpc_id, id) == 0)
            n++;
    }
    return n;
}

/* Every allocation of a session fails in turn (app, connections, calls,
   kept requests, rooms, sends): nothing crashes, no call is answered
   twice, and everything is freed. */
TEST(each_allocation_can_fail_in_the_app) {
    long k, failures = 0;
    static const char *const calls[] = {
        "{\"type\":\"echo\",\"payload\":{\"a\":[1,2,3]},\"rpcId\":\"c1\"}",
        "{\"type\":\"slow\",\"payload\":1,\"rpcId\":\"c2\"}",
        "{\"type\":\"join\",\"payload\":\"lobby\",\"rpcId\":\"c3\"}",
        "{\"type\":\"say\",\"payload\":\"hi\",\"rpcId\":\"c4\"}",
        "{\"type\":\"users.add\",\"payload\":{\"name\":5},\"rpcId\":\"c5\"}",
        "{\"type\":\"room.fail\",\"rpcId\":\"c6\"}"};
    static const char *const ids[] = {"c1", "c2", "c3", "c4", "c5", "c6"};
    for (k = 1; k < 5000; k++) {
        world *w = world_new();
        int err, i, j;
        lib_alloc_calls = 0;
        lib_fail_at = k;
        w->app = zk_app_new(w->loop, &w->opts, &err);
        if (w->app) {
            for (j = 0; j < 2; j++) {
                client *c = &w->cli[w->ncli++];
                zk_conn_opts o;
                memset(&o, 0, sizeof o);
                o.url = "ws://loopback/";
                o.cb.on_open = cl_open;
                o.cb.on_message = cl_message;
                o.cb.on_close = cl_close;
                o.data = c;
                c->conn = zk_loopback_connect(zk_app_server(w->app), &o, NULL, &err);
                if (c->closes) {
                    /* it failed inside the call (on_close ran, the
                       connection is freed): the call must not return it */
                    if (c->conn) printf("  allocation %ld: zk_loopback_connect returned a connection "
                                        "whose on_close already ran\n", k);
                    CHECK(c->conn == NULL);
                    c->conn = NULL;
                }
                pump(w->loop);
            }
            for (j = 0; j < 2; j++) {
                client *c = &w->cli[j];
                for (i = 0; i < 6 && c->conn && c->opens; i++) {
                    zk_conn_send(c->conn, calls[i], strlen(calls[i]), 0);
                    pump(w->loop);
                }
            }
            for (i = 0; i < w->nkept; i++) {
                zk_write_int(zk_request_writer(w->kept[i]), i);
                zk_request_ok(w->kept[i]);
            }
            w->nkept = 0;
            pump(w->loop);
            for (j = 0; j < w->nsrv; j++) { /* the ones still open */
                zk_conn *s = zk_app_find(w->app, w->srv_id[j]);
                if (s) zk_room_join(s, "room");
            }
            {
                zk_target to;
                const char *room = "room";
                memset(&to, 0, sizeof to);
                to.rooms = &room;
                to.room_count = 1;
                send_text(w->app, "news", "n", &to);
            }
            pump(w->loop);
            for (j = 0; j < 2; j++)
                for (i = 0; i < 6; i++) CHECK(answers_to(&w->cli[j], ids[i]) <= 1);
            if (w->cli[0].conn) zk_conn_close(w->cli[0].conn, 1000, NULL);
            pump(w->loop);
        }
        world_free(w);
        lib_fail_at = 0;
        CHECK_ALL_FREED();
        if (lib_alloc_calls < k) break; /* every allocation has failed once */
        failures++;
    }
    lib_fail_at = 0;
    CHECK(failures > 20);
    if (getenv("TEST_VERBOSE")) printf("  %ld allocations failed in turn\n", failures);
}

/* ---- MessagePack (zocket.msgpack) ---- */

TEST(msgpack_clients_call_and_get_answers_in_msgpack) {
    world *w = world_new();
    client *c;
    world_start(w);
    c = connect_proto(w, mp_protocol, 1);
    CHECK_STR(zk_conn_protocol(c->conn), ZK_PROTOCOL_MSGPACK);
    CHECK_EQ_INT(w->nsrv, 1);
    CHECK_EQ_INT(zk_conn_codec(w->srv[0]), ZK_CODEC_MSGPACK);
    send_mp(w, c, "{\"type\":\"echo\",\"payload\":{\"a\":[1,\"x\",-3.5,null,true]},\"rpcId\":7}");
    CHECK(strcmp(last_msg(c), "MP:{\"type\":\"__rpc_res\",\"payload\":{\"a\":[1,\"x\",-3.5,null,true]},\"rpcId\":7}") == 0);
    CHECK_EQ_INT(c->binary, 1);
    /* the envelope's bytes: a fixmap of 3, "type" first */
    CHECK(c->last_raw_len > 6 && c->last_raw[0] == 0x83 && c->last_raw[1] == 0xa4 && memcmp(c->last_raw + 2, "type", 4) == 0);
    send_mp(w, c, "{\"type\":\"echo\",\"rpcId\":\"r1\"}");
    CHECK(strcmp(last_msg(c), "MP:{\"type\":\"__rpc_res\",\"payload\":null,\"rpcId\":\"r1\"}") == 0);
    CHECK(c->last_raw_len > 0 && memchr(c->last_raw, 0xc0, c->last_raw_len) != NULL); /* nil, not "null" */
    send_mp(w, c, "{\"type\":\"forbid\",\"rpcId\":2}");
    CHECK(strstr(last_msg(c), "MP:{\"type\":\"__rpc_err\",\"rpcId\":2,\"error\":{\"code\":\"FORBIDDEN\"") == last_msg(c));
    send_mp(w, c, "{\"type\":\"nope\",\"rpcId\":3}");
    CHECK(strstr(last_msg(c), "\"code\":\"NOT_FOUND\"") != NULL);
    send_mp(w, c, "{\"type\":\"__ping\",\"payload\":5}");
    CHECK(strcmp(last_msg(c), "MP:{\"type\":\"__pong\",\"payload\":5}") == 0);
    send_mp(w, c, "{\"type\":\"__ping\",\"payload\":[5],\"rpcId\":9}");
    CHECK(strcmp(last_msg(c), "MP:{\"type\":\"__rpc_res\",\"payload\":[5],\"rpcId\":9}") == 0);
    /* a text frame, and bytes that are not MessagePack: BAD_REQUEST, in MessagePack */
    CHECK(zk_conn_send(c->conn, "{\"type\":\"echo\"}", 15, 0) >= 0);
    pump(w->loop);
    CHECK(strstr(last_msg(c), "MP:{\"type\":\"__error\"") == last_msg(c) && strstr(last_msg(c), "zocket.json"));
    CHECK(zk_conn_send(c->conn, "\xc1", 1, 1) >= 0);
    pump(w->loop);
    CHECK(strstr(last_msg(c), "malformed MessagePack") != NULL);
    CHECK(zk_conn_send(c->conn, "\x92\x01\x02", 3, 1) >= 0);
    pump(w->loop);
    CHECK(strstr(last_msg(c), "a MessagePack map") != NULL);
    CHECK(c->conn != NULL); /* still open */
    world_free(w);
}

TEST(msgpack_binary_payloads_stay_binary) {
    world *w = world_new();
    client *c;
    static const unsigned char call[] = {0x83, 0xa4, 't', 'y', 'p', 'e', 0xa4, 'e', 'c', 'h', 'o',
                                         0xa7, 'p', 'a', 'y', 'l', 'o', 'a', 'd', 0xc4, 0x03, 0x00, 0xff, 0x01,
                                         0xa5, 'r', 'p', 'c', 'I', 'd', 0x01};
    world_start(w);
    c = connect_proto(w, mp_protocol, 1);
    CHECK(zk_conn_send(c->conn, call, sizeof call, 1) >= 0);
    pump(w->loop);
    /* payload: bin 8 of 00 ff 01, as it came */
    CHECK(c->last_raw_len > 0);
    {
        static const unsigned char want[] = {0xc4, 0x03, 0x00, 0xff, 0x01};
        size_t i, found = 0;
        for (i = 0; i + sizeof want <= c->last_raw_len; i++)
            if (memcmp(c->last_raw + i, want, sizeof want) == 0) found = 1;
        CHECK(found);
    }
    world_free(w);
}

TEST(msgpack_and_json_clients_share_rooms) {
    world *w = world_new();
    client *j, *m, *m2;
    const char *room = "lobby";
    zk_target to;
    zk_writer *pw;
    static const char *const both[] = {ZK_PROTOCOL_JSON, ZK_PROTOCOL_MSGPACK};
    world_start(w);
    j = connect_one(w);
    m = connect_proto(w, mp_protocol, 1);
    m2 = connect_proto(w, both, 2); /* offering both: MessagePack, the server's preference */
    CHECK_STR(zk_conn_protocol(m2->conn), ZK_PROTOCOL_MSGPACK);
    CHECK_EQ_INT(zk_room_join(w->srv[0], room), 0);
    CHECK_EQ_INT(zk_room_join(w->srv[1], room), 0);
    CHECK_EQ_INT(zk_room_join(w->srv[2], room), 0);
    pw = zk_app_message(w->app, "news");
    zk_write_object(pw);
    zk_write_key(pw, "n");
    zk_write_int(pw, 300);
    zk_write_key(pw, "s");
    zk_write_str(pw, "h\u00e9");
    zk_write_end(pw);
    memset(&to, 0, sizeof to);
    to.rooms = &room;
    to.room_count = 1;
    CHECK_EQ_INT(zk_app_send(w->app, &to), 3);
    pump(w->loop);
    CHECK(strcmp(last_msg(j), "{\"type\":\"news\",\"payload\":{\"n\":300,\"s\":\"h\u00e9\"}}") == 0);
    CHECK(strcmp(last_msg(m), "MP:{\"type\":\"news\",\"payload\":{\"n\":300,\"s\":\"h\u00e9\"}}") == 0);
    CHECK(strcmp(last_msg(m2), last_msg(m)) == 0);
    CHECK_EQ_INT(j->binary, 0);
    CHECK_EQ_INT(m->binary, 1);
    /* a handler's room send reaches both codecs too */
    send_mp(w, m, "{\"type\":\"say\",\"payload\":\"hi\"}");
    CHECK(strstr(last_msg(j), "\"type\":\"chat.message\"") != NULL);
    CHECK(strstr(last_msg(m2), "MP:{\"type\":\"chat.message\"") == last_msg(m2));
    world_free(w);
}

TEST(msgpack_only_and_json_only_apps) {
    world *w = world_new();
    client *c;
    w->opts.codecs = ZK_APP_MSGPACK;
    world_start(w);
    c = connect_one(w); /* no subprotocol: JSON, which this app does not speak */
    CHECK(c->conn == NULL);
    CHECK_EQ_INT(c->opens, 0);
    c = connect_proto(w, mp_protocol, 1);
    CHECK(c->conn != NULL && c->opens == 1);
    world_free(w);
    w = world_new();
    w->opts.codecs = ZK_APP_JSON;
    world_start(w);
    c = connect_proto(w, mp_protocol, 1); /* not offered back: the client is left with none */
    CHECK(c->conn == NULL || zk_conn_protocol(c->conn).len == 0);
    world_free(w);
    w = world_new();
    w->opts.codecs = 4;
    CHECK(zk_app_new(w->loop, &w->opts, NULL) == NULL);
    world_free(w);
}

TEST(origin_allow_list_refuses_other_pages) {
    world *w = world_new();
    static const char *const allowed[] = {"https://chat.example.com", "http://localhost:8080"};
    zk_http_header h;
    client *c;
    w->opts.server.origins = allowed;
    w->opts.server.origin_count = 2;
    world_start(w);
    h.name = zk_str_c("Origin");
    h.value = zk_str_c("https://evil.example.com");
    c = connect_with(w, "ws://loopback/", &h, 1, NULL);
    CHECK(c->conn == NULL);
    CHECK_EQ_INT(c->opens, 0);
    CHECK_EQ_INT(w->hooks, 0); /* refused before the connect hook */
    h.value = zk_str_c("HTTPS://Chat.Example.com");
    c = connect_with(w, "ws://loopback/", &h, 1, NULL);
    CHECK(c->conn != NULL && c->opens == 1);
    h.value = zk_str_c("http://localhost:8080");
    c = connect_with(w, "ws://loopback/", &h, 1, NULL);
    CHECK(c->conn != NULL && c->opens == 1);
    h.value = zk_str_c("null"); /* a sandboxed or file:// page */
    c = connect_with(w, "ws://loopback/", &h, 1, NULL);
    CHECK(c->conn == NULL);
    c = connect_one(w); /* no Origin: not a browser */
    CHECK(c->conn != NULL && c->opens == 1);
    world_free(w);
}

/* A token bucket per connection: rate_per_sec on average, rate_burst at
   once; past it TOO_MANY_REQUESTS, and after another burst of refusals the
   connection is closed (1008). Time is virtual: the bucket refills with it. */
TEST(rate_limit_answers_too_many_requests_then_closes) {
    world *w = world_new();
    client *c, *other;
    int i;
    char msg[96];
    w->opts.rate_per_sec = 10;
    w->opts.rate_burst = 5;
    world_start(w);
    c = connect_one(w);
    other = connect_one(w);
    for (i = 0; i < 5; i++) { /* the bucket's 5 */
        snprintf(msg, sizeof msg, "{\"type\":\"echo\",\"payload\":%d,\"rpcId\":%d}", i, i);
        send_json(w, c, msg);
    }
    CHECK_EQ_INT(w->routed, 5);
    send_json(w, c, "{\"type\":\"echo\",\"payload\":5,\"rpcId\":5}");
    CHECK_EQ_INT(w->routed, 5);
    CHECK(strstr(last_msg(c), "\"rpcId\":5") && strstr(last_msg(c), "TOO_MANY_REQUESTS"));
    send_json(w, c, "{\"type\":\"echo\",\"payload\":6}"); /* an event: __error */
    CHECK(strstr(last_msg(c), "\"type\":\"__error\"") && strstr(last_msg(c), "TOO_MANY_REQUESTS"));
    /* another connection has its own bucket */
    send_json(w, other, "{\"type\":\"echo\",\"payload\":1,\"rpcId\":1}");
    CHECK_EQ_INT(w->routed, 6);
    /* 100 ms later one message more may go */
    zk_loop_advance(w->loop, 100);
    send_json(w, c, "{\"type\":\"echo\",\"payload\":7,\"rpcId\":7}");
    CHECK_EQ_INT(w->routed, 7);
    send_json(w, c, "{\"type\":\"echo\",\"payload\":8,\"rpcId\":8}");
    CHECK_EQ_INT(w->routed, 7);
    /* going on for another burst (5 refusals in a row): closed with 1008 */
    for (i = 0; i < 5 && c->conn; i++) send_json(w, c, "{\"type\":\"echo\"}");
    zk_loop_advance(w->loop, 10);
    CHECK(c->conn == NULL);
    CHECK_EQ_INT(c->close_code, ZK_CLOSE_POLICY);
    CHECK(strcmp(c->close_reason, "too many messages") == 0);
    CHECK(other->conn != NULL);
    world_free(w);
    /* ZK_RATE_UNLIMITED: no limit */
    w = world_new();
    w->opts.rate_per_sec = ZK_RATE_UNLIMITED;
    world_start(w);
    c = connect_one(w);
    for (i = 0; i < 20000; i++) zk_conn_send(c->conn, "{\"type\":\"echo\"}", 15, 0);
    pump(w->loop);
    CHECK(c->conn != NULL);
    CHECK_EQ_INT(w->routed, 20000); /* in one virtual millisecond, all routed */
    world_free(w);
}

int main(void) {
    if (getenv("ZK_TEST_CODEC") && strcmp(getenv("ZK_TEST_CODEC"), "msgpack") == 0) test_codec = ZK_CODEC_MSGPACK;
    printf("codec: %s\n", test_codec == ZK_CODEC_MSGPACK ? "msgpack" : "json");
    (void)guard_alloc;
    (void)guard_free;
    RUN_JSON(call_result_envelope_echoes_string_and_integer_rpc_ids);
    RUN(error_envelopes_for_calls_and_events);
    RUN(successful_event_sends_nothing);
    RUN(malformed_messages_are_bad_request_and_the_connection_stays);
    RUN(binary_and_deeply_nested_messages_get_an_error_and_the_connection_stays);
    RUN(unknown_type_is_not_found);
    RUN(internal_errors_are_masked_unless_exposed);
    RUN(caller_answers_as_a_client_sees_them);
    RUN(connect_hook_sees_path_query_and_headers);
    RUN(connect_hook_refusal_never_opens);
    RUN(connect_hook_refusal_answers_http_with_no_frame);
    RUN(app_path_mismatch_is_404_without_the_hook);
    RUN(context_reaches_handlers_and_on_disconnect_once);
    RUN(on_disconnect_runs_for_connections_dropped_by_app_free);
    RUN(app_new_refuses_bad_options);
    RUN(handler_dropping_its_own_connection);
    RUN(plain_http_requests);
    RUN(client_ids_are_distinct_and_found);
    RUN(auth_required_before_anything_is_routed);
    RUN(auth_as_an_event_also_authenticates);
    RUN(auth_failure_closes_unauthorized);
    RUN(auth_route_without_require_auth_is_an_ordinary_route);
    RUN_JSON(messages_behind_a_failed_auth_are_not_routed);
    RUN(no_auth_by_the_deadline_closes_unauthorized);
    RUN(default_auth_timeout_is_ten_seconds);
    RUN_JSON(ping_event_gets_a_pong_and_a_ping_call_its_answer);
    RUN(kept_request_answered_later);
    RUN(kept_request_answered_from_a_worker_thread);
    RUN(kept_request_times_out);
    RUN(kept_request_of_a_closed_connection);
    RUN(kept_requests_never_answered_are_freed_with_the_app);
    RUN(too_many_kept_requests_are_refused);
    RUN(rooms_join_leave_has_list);
    RUN(room_names_and_the_per_connection_cap);
    RUN(default_room_cap_is_64);
    RUN(rooms_are_left_on_disconnect);
    RUN(joining_through_a_handler);
    RUN_JSON(repeated_broadcasts_to_200_connections_reuse_their_chunks);
    RUN(a_million_join_leave_cycles_keep_memory_flat);
    RUN(a_room_of_many_members_shrinks_back);
    RUN(send_to_conns_ids_rooms_and_all);
    RUN(send_from_a_handler_to_a_room_except_the_sender);
    RUN(send_refuses_bad_messages);
    RUN(origin_allow_list_refuses_other_pages);
    RUN_JSON(rate_limit_answers_too_many_requests_then_closes);
    RUN_JSON(msgpack_clients_call_and_get_answers_in_msgpack);
    RUN_JSON(msgpack_binary_payloads_stay_binary);
    RUN_JSON(msgpack_and_json_clients_share_rooms);
    RUN_JSON(msgpack_only_and_json_only_apps);
    RUN_JSON(many_sends_in_one_pass_go_out_in_one_write);
    RUN(volatile_delivery_drops_for_a_backed_up_connection);
    RUN(volatile_message_reaches_an_idle_connection_whatever_its_size);
    RUN(close_slow_delivery_closes_a_backed_up_connection);
    RUN_JSON(queue_delivery_queues_up_to_the_write_limit_then_closes);
    RUN_JSON(answer_past_the_write_limit_closes_the_connection);
    RUN(unauthenticated_connections_receive_no_app_messages);
    RUN_JSON(stats_count_exactly);
    RUN(each_allocation_can_fail_in_the_app);
    return test_summary();
}
