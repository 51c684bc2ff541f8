/* libFuzzer harness for the Zocket layer: envelopes, the router, schemas,
   middleware, kept requests and the caller.

   Input: a message, used whole three ways.
   1. zk_router_call, split: the bytes before the first space (cut at a
      NUL) are the type, the bytes after it the payload (none when there
      is no space). The payload is a malloc'd block of exactly its length,
      so ASan catches a read past the end.
   2. zk_router_call, parsed: when the input is a JSON object with a
      string "type" (no NUL in it), that type and its "payload" written
      back as JSON (none when absent).
   3. The app: the input goes as one message from a loopback client to a
      zk_app on a virtual clock (text when it is UTF-8, else binary). The
      loop, router, app and client are made once and reused; a client the
      server closed is replaced.
   4. The app again, from a client speaking MessagePack (zocket.msgpack):
      the input written as MessagePack when it is JSON (the same
      expectations as 3), and the raw input as a binary frame (any
      answers well formed, at most one).
   The last byte picks what happens to requests a handler kept: bit 0
   answers them ok or with an error; bit 1 first moves the clock past the
   request timeout (TIMEOUT goes out, the late answer gets ZK_ETIMEDOUT).

   Routes: "users.get" (a nested schema: object, strict, with a nested
   object, bounds, an array of strings), "jobs.slow" (keeps the request),
   "jobs.fail" (an app error with data), "echo", "guarded" (route
   middleware that refuses non-objects), "nested" (calls the router again
   from the handler), "news" (sends a message to every connection), and
   "__auth" (ok for the payload "ok", else an error, which closes the
   connection). Global middleware sets a value and refuses the payloads 13
   (FORBIDDEN) and 666 (nonzero without an answer: INTERNAL).

   Aborts when:
   - zk_router_call returns anything but 0, or its done callback does not
     run exactly once (counting the answer of a kept request), or an
     answer is not well formed: ok with data that parses as JSON, or an
     error with a non-empty code, a non-empty UTF-8 message and data that
     is empty or parses;
   - the app does not answer a call (an object with a string rpcId of at
     most ZK_RPC_ID_MAX bytes, or an integer rpcId) exactly once with
     __rpc_res or __rpc_err carrying the same rpcId (a __ping too), or
     answers an event with anything but at most one __error, or a __ping
     event with anything but one __pong, or sends a message that is not a
     JSON object with a string type;
   - a kept request's late answer returns anything but 0, ZK_ETIMEDOUT
     (after the clock passed the timeout) or ZK_ECLOSED;
   - the app's connection count is not 1 once the client is connected;
   - the library holds more than MAX_LIVE allocations after an input (the
     app keeps a bounded set of buffers: more means something piles up
     from message to message, which LeakSanitizer cannot see while it is
     still reachable).
   LeakSanitizer checks at exit that everything was freed. */
#define _GNU_SOURCE /* the library's includes: before any system header */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The library's live allocations. */
static long lib_live;
static void *count_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (q && !p) lib_live++;
    return q;
}
static void count_free(void *p) {
    if (p) lib_live--;
    free(p);
}
#define ZK_MALLOC(n) count_realloc(NULL, n)
#define ZK_REALLOC(p, n) count_realloc(p, n)
#define ZK_FREE(p) count_free(p)
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#define CHECK(c) do { if (!(c)) { \
    fprintf(stderr, "fuzz_app: invariant broken at line %d: %s\n", __LINE__, #c); \
    abort(); } } while (0)

#define REQUEST_TIMEOUT_MS 1000
#define MAX_LIVE 256

static zk_loop *loop;
static zk_router *router;
static zk_app *app;
static zk_conn *client;
static zk_conn *mpclient; /* speaks MessagePack; what it gets is kept as JSON text */
static int mpclient_closed;
static int client_closed;
static zk_doc check_doc; /* for checking answers and messages */
static zk_request *kept[64];
static int nkept;

/* ---- routes ---- */

static const zk_schema user_fields[] = {
    {"name", ZK_TYPE_STRING, ZK_SCHEMA_MIN | ZK_SCHEMA_MAX, 1, 16, NULL, NULL},
    {"age", ZK_TYPE_INT, ZK_SCHEMA_OPTIONAL | ZK_SCHEMA_MIN | ZK_SCHEMA_MAX, 0, 150, NULL, NULL},
    {"email", ZK_TYPE_STRING, ZK_SCHEMA_OPTIONAL | ZK_SCHEMA_NULLABLE, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL}};
static const zk_schema tag = {NULL, ZK_TYPE_STRING, ZK_SCHEMA_MAX, 0, 8, NULL, NULL};
static const zk_schema get_fields[] = {
    {"user", ZK_TYPE_OBJECT, 0, 0, 0, user_fields, NULL},
    {"tags", ZK_TYPE_ARRAY, ZK_SCHEMA_OPTIONAL | ZK_SCHEMA_MAX, 0, 4, NULL, &tag},
    {"score", ZK_TYPE_DOUBLE, ZK_SCHEMA_OPTIONAL | ZK_SCHEMA_MIN, -1.5, 0, NULL, NULL},
    {"any", ZK_TYPE_NONE, ZK_SCHEMA_OPTIONAL, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL}};
static const zk_schema get_input = {NULL, ZK_TYPE_OBJECT, ZK_SCHEMA_STRICT | ZK_SCHEMA_MAX, 0, 6, get_fields, NULL};

static int marker;

static int mw_global(zk_request *req) {
    zk_value p = zk_request_payload(req);
    CHECK(zk_request_set(req, "seen", &marker) == 0);
    if (zk_value_type(p) == ZK_TYPE_INT && zk_value_int(p, 0) == 13) {
        zk_request_fail(req, ZK_CODE_FORBIDDEN, "thirteen");
        return 1;
    }
    if (zk_value_type(p) == ZK_TYPE_INT && zk_value_int(p, 0) == 666) return -1;
    return 0;
}

static int mw_objects_only(zk_request *req) {
    CHECK(zk_request_get(req, "seen") == &marker);
    if (zk_value_type(zk_request_payload(req)) == ZK_TYPE_OBJECT) return 0;
    zk_write_str(zk_request_writer(req), "objects only");
    zk_request_fail(req, "NOT_AN_OBJECT", NULL);
    return 1;
}

static void h_echo(zk_request *req) {
    zk_value p = zk_request_payload(req);
    CHECK(zk_request_get(req, "seen") == &marker);
    if (zk_value_type(p) != ZK_TYPE_NONE) zk_write_value(zk_request_writer(req), p);
}

static void h_slow(zk_request *req) {
    zk_request *k = zk_request_keep(req);
    if (k) {
        CHECK(nkept < 64);
        CHECK(zk_value_type(zk_request_payload(k)) == ZK_TYPE_NONE);
        kept[nkept++] = k;
    }
}

static void h_fail(zk_request *req) {
    zk_writer *w = zk_request_writer(req);
    zk_write_object(w);
    zk_write_key(w, "payload_type");
    zk_write_str(w, zk_type_name(zk_value_type(zk_request_payload(req))));
    zk_write_end(w);
    zk_request_fail(req, "JOB_FAILED", "the job failed");
}

typedef struct answer_rec {
    int calls;
    int ok;
} answer_rec;

static void check_json(zk_str s) {
    char *copy = (char *)malloc(s.len ? s.len : 1);
    CHECK(copy != NULL);
    if (s.len) memcpy(copy, s.ptr, s.len);
    CHECK(zk_json_parse(&check_doc, copy, s.len) == ZK_OK);
    free(copy);
}

static void on_answer(const zk_answer *a, void *user) {
    answer_rec *r = (answer_rec *)user;
    r->calls++;
    r->ok = a->ok;
    if (a->ok) {
        CHECK(a->data.len > 0);
        check_json(a->data);
    } else {
        CHECK(a->code.len > 0 && a->code.len <= 64);
        CHECK(a->message.len > 0 && zk_utf8_valid(a->message.ptr, a->message.len));
        if (a->data.len) check_json(a->data);
    }
}

/* Calls "echo" with this request's payload, from inside its handler. */
static void h_nested(zk_request *req) {
    zk_writer tmp;
    zk_str p;
    answer_rec inner = {0, 0};
    zk_value v = zk_request_payload(req);
    zk_writer_init(&tmp, NULL, 0);
    if (zk_value_type(v) != ZK_TYPE_NONE) zk_write_value(&tmp, v);
    p = zk_writer_result(&tmp);
    CHECK(zk_router_call(router, "echo", p.ptr, p.len, NULL, on_answer, &inner) == 0);
    CHECK(inner.calls == 1);
    CHECK(inner.ok);
    /* the outer payload is still there */
    CHECK(zk_value_type(zk_request_payload(req)) == zk_value_type(v));
    zk_writer_free(&tmp);
    zk_write_bool(zk_request_writer(req), 1);
}

static void h_news(zk_request *req) {
    zk_app *a = zk_request_app(req);
    zk_target to;
    zk_writer *w;
    if (!a) return;
    w = zk_app_message(a, "news");
    zk_write_value(w, zk_request_payload(req)); /* ZK_EINVAL without one: not sent */
    memset(&to, 0, sizeof to);
    to.all = 1;
    to.delivery = ZK_DELIVER_VOLATILE;
    zk_app_send(a, &to);
}

static void h_auth(zk_request *req) {
    zk_str s = zk_value_str(zk_request_payload(req));
    if (s.len == 2 && memcmp(s.ptr, "ok", 2) == 0) return;
    zk_request_fail(req, ZK_CODE_UNAUTHORIZED, "no");
}

/* ---- the client ---- */

typedef struct received {
    char **msgs;
    size_t n, cap;
} received;
static received got;

static void cl_message(zk_conn *c, zk_str data, int binary) {
    char *m;
    (void)c;
    CHECK(!binary);
    if (got.n == got.cap) {
        got.cap = got.cap ? got.cap * 2 : 8;
        got.msgs = (char **)realloc(got.msgs, got.cap * sizeof *got.msgs);
        CHECK(got.msgs != NULL);
    }
    m = (char *)malloc(data.len + 1);
    CHECK(m != NULL);
    memcpy(m, data.ptr, data.len);
    m[data.len] = '\0';
    got.msgs[got.n++] = m;
}

static void cl_close(zk_conn *c, int code, zk_str reason, int clean) {
    (void)code;
    (void)reason;
    (void)clean;
    if (c == mpclient) {
        mpclient_closed = 1;
        mpclient = NULL;
        return;
    }
    client_closed = 1;
    client = NULL;
}

/* A MessagePack client's message: must be binary MessagePack; kept as JSON. */
static void mp_message(zk_conn *c, zk_str data, int binary) {
    zk_doc d;
    zk_writer w;
    zk_str js;
    char *m;
    (void)c;
    CHECK(binary);
    zk_doc_init(&d);
    CHECK(zk_msgpack_parse(&d, data.ptr, data.len) == ZK_OK);
    zk_writer_init(&w, NULL, 0);
    zk_write_value(&w, zk_doc_root(&d));
    js = zk_writer_result(&w);
    CHECK(js.ptr != NULL);
    if (got.n == got.cap) {
        got.cap = got.cap ? got.cap * 2 : 8;
        got.msgs = (char **)realloc(got.msgs, got.cap * sizeof *got.msgs);
        CHECK(got.msgs != NULL);
    }
    m = (char *)malloc(js.len + 1);
    CHECK(m != NULL);
    memcpy(m, js.ptr, js.len);
    m[js.len] = '\0';
    got.msgs[got.n++] = m;
    zk_writer_free(&w);
    zk_doc_free(&d);
}

static void got_clear(void) {
    size_t i;
    for (i = 0; i < got.n; i++) free(got.msgs[i]);
    got.n = 0;
}

static void pump(void) {
    int i;
    for (i = 0; i < 100000 && (i == 0 || loop->work); i++) zk_loop_advance(loop, 0);
    zk_loop_step(loop, 0);
    for (i = 0; i < 100000 && loop->work; i++) zk_loop_advance(loop, 0);
}

static void connect_client(void) {
    zk_conn_opts o;
    zk_app_stats st;
    int err = 1;
    memset(&o, 0, sizeof o);
    o.url = "ws://loopback/";
    o.cb.on_message = cl_message;
    o.cb.on_close = cl_close;
    client_closed = 0;
    client = zk_loopback_connect(zk_app_server(app), &o, NULL, &err);
    CHECK(client != NULL && err == 0);
    pump();
    CHECK(client != NULL);
    zk_app_get_stats(app, &st);
    CHECK(st.connections == 1 + (mpclient != NULL));
}

static void connect_mpclient(void) {
    static const char *const mp[] = {ZK_PROTOCOL_MSGPACK};
    zk_conn_opts o;
    int err = 1;
    memset(&o, 0, sizeof o);
    o.url = "ws://loopback/";
    o.protocols = mp;
    o.protocol_count = 1;
    o.cb.on_message = mp_message;
    o.cb.on_close = cl_close;
    mpclient_closed = 0;
    mpclient = zk_loopback_connect(zk_app_server(app), &o, NULL, &err);
    CHECK(mpclient != NULL && err == 0);
    pump();
    CHECK(mpclient != NULL);
    CHECK(zk_str_eq_nocase(zk_conn_protocol(mpclient), ZK_PROTOCOL_MSGPACK));
}

static void cleanup(void) {
    int i;
    for (i = 0; i < nkept; i++) zk_request_ok(kept[i]);
    nkept = 0;
    zk_app_free(app);
    if (client) zk_conn_abort(client);
    if (mpclient) zk_conn_abort(mpclient);
    zk_loop_free(loop);
    zk_router_free(router);
    zk_doc_free(&check_doc);
    got_clear();
    free(got.msgs);
    CHECK(lib_live == 0);
}

static void setup(void) {
    static const zk_middleware_fn guard[] = {mw_objects_only};
    zk_route_opts o;
    zk_loop_opts lo;
    zk_app_opts ao;
    int err = 1;
    memset(&lo, 0, sizeof lo);
    lo.virtual_clock = 1;
    lo.seed = 1;
    loop = zk_loop_new(&lo);
    router = zk_router_new();
    CHECK(loop && router);
    memset(&o, 0, sizeof o);
    o.input = &get_input;
    CHECK(zk_router_on(router, "users.get", h_echo, &o) == 0);
    CHECK(zk_router_on(router, "jobs.slow", h_slow, NULL) == 0);
    CHECK(zk_router_on(router, "jobs.fail", h_fail, NULL) == 0);
    CHECK(zk_router_on(router, "echo", h_echo, NULL) == 0);
    memset(&o, 0, sizeof o);
    o.middleware = guard;
    o.middleware_count = 1;
    CHECK(zk_router_on(router, "guarded", h_echo, &o) == 0);
    CHECK(zk_router_on(router, "nested", h_nested, NULL) == 0);
    CHECK(zk_router_on(router, "news", h_news, NULL) == 0);
    CHECK(zk_router_on(router, "__auth", h_auth, NULL) == 0);
    CHECK(zk_router_use(router, mw_global) == 0);
    memset(&ao, 0, sizeof ao);
    ao.router = router;
    ao.request_timeout_ms = REQUEST_TIMEOUT_MS;
    /* the clock moves only for late answers, so the default rate limit
       (10,000 a second) would refuse, then close, a client that lives
       through more inputs than that; the limiter has its own tests */
    ao.rate_per_sec = ZK_RATE_UNLIMITED;
    ao.server.max_message = 1 << 20;
    app = zk_app_new(loop, &ao, &err);
    CHECK(app != NULL && err == 0);
    zk_doc_init(&check_doc);
    atexit(cleanup);
}

/* Answers every kept request; moves the clock past the timeout first when
   late. Returns how many answers should have reached the client. */
static void answer_kept(int ok, int late) {
    int i;
    if (late && nkept) {
        zk_loop_advance(loop, REQUEST_TIMEOUT_MS);
        pump();
    }
    for (i = 0; i < nkept; i++) {
        int rc;
        if (ok) {
            zk_write_int(zk_request_writer(kept[i]), i);
            rc = zk_request_ok(kept[i]);
        } else {
            rc = zk_request_fail(kept[i], "LATE_FAILURE", NULL);
        }
        if (late) CHECK(rc == ZK_ETIMEDOUT || rc == ZK_ECLOSED);
        else CHECK(rc == 0 || rc == ZK_ECLOSED);
    }
    nkept = 0;
}

/* ---- part 1 and 2: the caller ---- */

static void router_call(const char *type, const char *payload, size_t len, int ok, int late) {
    answer_rec a = {0, 0};
    (void)late;
    CHECK(zk_router_call(router, type, payload, len, &marker, on_answer, &a) == 0);
    CHECK(a.calls == (nkept ? 0 : 1));
    answer_kept(ok, 0); /* no clock for the caller: never late */
    CHECK(a.calls == 1);
}

static void call_split(const uint8_t *data, size_t size, int ok) {
    const uint8_t *sp = (const uint8_t *)memchr(data, ' ', size);
    size_t tlen = sp ? (size_t)(sp - data) : size;
    char type[256];
    const uint8_t *nul = (const uint8_t *)memchr(data, '\0', tlen);
    if (nul) tlen = (size_t)(nul - data);
    if (tlen >= sizeof type) tlen = sizeof type - 1;
    memcpy(type, data, tlen);
    type[tlen] = '\0';
    if (sp) {
        size_t plen = size - (size_t)(sp + 1 - data);
        char *payload = (char *)malloc(plen ? plen : 1);
        CHECK(payload != NULL);
        if (plen) memcpy(payload, sp + 1, plen);
        router_call(type, plen ? payload : NULL, plen, ok, 0);
        free(payload);
    } else {
        router_call(type, NULL, 0, ok, 0);
    }
}

/* The input as an envelope, when it is one: type and payload. */
static void call_parsed(const uint8_t *data, size_t size, int ok) {
    zk_doc doc;
    char *buf = (char *)malloc(size ? size : 1);
    zk_value root, t;
    CHECK(buf != NULL);
    if (size) memcpy(buf, data, size);
    zk_doc_init(&doc);
    if (zk_json_parse(&doc, buf, size) == ZK_OK) {
        root = zk_doc_root(&doc);
        t = zk_value_get(root, "type");
        if (zk_value_type(t) == ZK_TYPE_STRING && zk_value_len(t) < 256 &&
            !memchr(zk_value_str(t).ptr, '\0', zk_value_len(t))) {
            char type[256];
            zk_value p = zk_value_get(root, "payload");
            zk_writer w;
            zk_str ps;
            memcpy(type, zk_value_str(t).ptr, zk_value_len(t));
            type[zk_value_len(t)] = '\0';
            zk_writer_init(&w, NULL, 0);
            if (zk_value_type(p) != ZK_TYPE_NONE) zk_write_value(&w, p);
            ps = zk_writer_result(&w);
            CHECK(zk_value_type(p) == ZK_TYPE_NONE || ps.ptr != NULL);
            router_call(type, ps.ptr, ps.len, ok, 0);
            zk_writer_free(&w);
        }
    }
    zk_doc_free(&doc);
    free(buf);
}

/* ---- part 3: the app ---- */

/* What the input is to the app: 1 a call (with its rpcId written as JSON
   into id), 0 an event or not a valid message. *ping: an event of type
   __ping, answered with one __pong (an rpcId of null makes an event). */
static int expect_call(const uint8_t *data, size_t size, char *id, size_t cap, int *ping) {
    zk_doc doc;
    char *buf;
    int call = 0;
    *ping = 0;
    if (!zk_utf8_valid((const char *)data, size)) return 0;
    buf = (char *)malloc(size ? size : 1);
    CHECK(buf != NULL);
    if (size) memcpy(buf, data, size);
    zk_doc_init(&doc);
    if (zk_json_parse(&doc, buf, size) == ZK_OK && zk_value_type(zk_doc_root(&doc)) == ZK_TYPE_OBJECT) {
        zk_value v = zk_value_get(zk_doc_root(&doc), "rpcId");
        zk_value ty = zk_value_get(zk_doc_root(&doc), "type");
        int t = zk_value_type(v);
        *ping = (t == ZK_TYPE_NONE || t == ZK_TYPE_NULL) && zk_value_type(ty) == ZK_TYPE_STRING &&
                zk_value_len(ty) == 6 &&
                memcmp(zk_value_str(ty).ptr, "__ping", 6) == 0;
        if ((t == ZK_TYPE_STRING && zk_value_len(v) <= ZK_RPC_ID_MAX) || t == ZK_TYPE_INT) {
            zk_writer w;
            zk_writer_init(&w, id, cap);
            zk_write_value(&w, v);
            CHECK(zk_writer_result(&w).ptr != NULL);
            id[zk_writer_result(&w).len] = '\0';
            call = 1;
        }
    }
    zk_doc_free(&doc);
    free(buf);
    return call;
}

/* Checks one message from the server; returns 1 for an answer to a call
   (its rpcId as JSON in id), 2 for an __error, 3 for a __pong, 0 for
   anything else (news). */
static int classify(const char *m, char *id, size_t cap) {
    size_t n = strlen(m);
    char *buf = (char *)malloc(n + 1);
    zk_value root, t;
    zk_str ts;
    int kind = 0;
    CHECK(buf != NULL);
    memcpy(buf, m, n + 1);
    CHECK(zk_json_parse(&check_doc, buf, n) == ZK_OK);
    root = zk_doc_root(&check_doc);
    CHECK(zk_value_type(root) == ZK_TYPE_OBJECT);
    t = zk_value_get(root, "type");
    CHECK(zk_value_type(t) == ZK_TYPE_STRING);
    ts = zk_value_str(t);
    if ((ts.len == 9 && memcmp(ts.ptr, "__rpc_res", 9) == 0) || (ts.len == 9 && memcmp(ts.ptr, "__rpc_err", 9) == 0)) {
        zk_writer w;
        zk_writer_init(&w, id, cap);
        zk_write_value(&w, zk_value_get(root, "rpcId"));
        CHECK(zk_writer_result(&w).ptr != NULL);
        id[zk_writer_result(&w).len] = '\0';
        if (ts.ptr[6] == 'e') {
            zk_value e = zk_value_get(root, "error");
            CHECK(zk_value_len(zk_value_get(e, "code")) > 0);
            CHECK(zk_value_len(zk_value_get(e, "message")) > 0);
        }
        kind = 1;
    } else if (ts.len == 7 && memcmp(ts.ptr, "__error", 7) == 0) {
        zk_value e = zk_value_get(root, "error");
        CHECK(zk_value_len(zk_value_get(e, "code")) > 0);
        CHECK(zk_value_len(zk_value_get(e, "message")) > 0);
        CHECK(zk_value_type(zk_value_get(root, "rpcId")) == ZK_TYPE_NONE);
        kind = 2;
    } else if (ts.len == 6 && memcmp(ts.ptr, "__pong", 6) == 0) {
        CHECK(zk_value_type(zk_value_get(root, "rpcId")) == ZK_TYPE_NONE);
        kind = 3;
    } else {
        CHECK(ts.len == 4 && memcmp(ts.ptr, "news", 4) == 0);
    }
    free(buf);
    return kind;
}

static void app_message(const uint8_t *data, size_t size, int ok, int late) {
    char want[ZK_RPC_ID_MAX * 6 + 8], id[ZK_RPC_ID_MAX * 6 + 8];
    int ping, call = expect_call(data, size, want, sizeof want, &ping), answers = 0, errors = 0, pongs = 0, rc;
    size_t i;
    if (!client) connect_client();
    got_clear();
    rc = zk_conn_send(client, data, size, !zk_utf8_valid((const char *)data, size));
    CHECK(rc >= 0);
    pump();
    answer_kept(ok, late);
    pump();
    for (i = 0; i < got.n; i++) {
        int kind = classify(got.msgs[i], id, sizeof id);
        if (kind == 1) {
            CHECK(call);
            CHECK(strcmp(id, want) == 0);
            answers++;
        } else if (kind == 2) {
            errors++;
        } else if (kind == 3) {
            pongs++;
        }
    }
    CHECK(pongs == ping);
    if (call) {
        CHECK(answers == 1);
        CHECK(errors == 0);
    } else {
        CHECK(answers == 0);
        CHECK(errors <= 1 - ping);
    }
    if (client_closed) client = NULL; /* an __auth failure: a new client next time */
}

/* 4: the same through a MessagePack client. */
static void app_message_mp(const uint8_t *data, size_t size, int ok, int late) {
    char want[ZK_RPC_ID_MAX * 6 + 8], id[ZK_RPC_ID_MAX * 6 + 8];
    int ping, call = expect_call(data, size, want, sizeof want, &ping), answers = 0, errors = 0, pongs, pass;
    size_t i;
    for (pass = 0; pass < 2; pass++) {
        zk_str out = {NULL, 0};
        zk_writer w;
        zk_doc d;
        char *copy = (char *)malloc(size ? size : 1);
        CHECK(copy != NULL);
        if (size) memcpy(copy, data, size);
        zk_doc_init(&d);
        zk_writer_init(&w, NULL, 0);
        zk_writer_set_codec(&w, ZK_CODEC_MSGPACK);
        if (pass == 0) { /* the input as MessagePack, when it is JSON */
            if (zk_json_parse(&d, copy, size) == ZK_OK) {
                zk_write_value(&w, zk_doc_root(&d));
                out = zk_writer_result(&w);
            }
        } else { /* the raw bytes */
            out.ptr = copy;
            out.len = size;
        }
        if (out.ptr) {
            if (!mpclient) connect_mpclient();
            got_clear();
            answers = errors = pongs = 0;
            CHECK(zk_conn_send(mpclient, out.ptr, out.len, 1) >= 0);
            pump();
            answer_kept(ok, late);
            pump();
            for (i = 0; i < got.n; i++) {
                int kind = classify(got.msgs[i], id, sizeof id);
                if (kind == 1) {
                    if (pass == 0) {
                        CHECK(call);
                        CHECK(strcmp(id, want) == 0);
                    }
                    answers++;
                } else if (kind == 2) {
                    errors++;
                } else if (kind == 3) {
                    pongs++;
                }
            }
            if (pass == 0) CHECK(pongs == ping);
            if (pass == 0 && call) {
                CHECK(answers == 1);
                CHECK(errors == 0);
            } else if (pass == 0) {
                CHECK(answers == 0);
                CHECK(errors <= 1 - ping);
            } else {
                CHECK(answers + errors + pongs <= 1);
            }
            if (mpclient_closed) mpclient = NULL;
        }
        zk_writer_free(&w);
        zk_doc_free(&d);
        free(copy);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int ok, late;
    if (!loop) setup();
    if (size == 0) return 0;
    ok = data[size - 1] & 1;
    late = (data[size - 1] >> 1) & 1;
    call_split(data, size, ok);
    call_parsed(data, size, ok);
    app_message(data, size, ok, late);
    app_message_mp(data, size, ok, late);
    CHECK(lib_live <= MAX_LIVE);
    return 0;
}
