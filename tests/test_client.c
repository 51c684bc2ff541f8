/* Behaviour tests of zk_client: a Zocket client talking to a zk_app over
   the loopback transport, with a virtual clock and a fixed loop seed, so
   every schedule (backoff, jitter, heartbeats, timeouts, cache TTLs) is
   checked to the millisecond.

   What is checked is what a user sees: the client's states and callbacks,
   call results, events, and, on the server side, what arrived on the wire:
   a global middleware logs every routed message as "type payload", and the
   connect hook logs "+" for each connection it accepts (and counts the
   ones it refuses, with the time and the client's attempt count), so a log
   such as "+|__auth {...}|hello 1|join \"lobby\"|note 2" is the exact order
   a connection delivered its messages in.

   The library allocates through a wrapper that counts live allocations
   and bytes, so each test ends by checking that nothing is left, and one
   test fails every allocation of a session in turn. */
#define _GNU_SOURCE /* clock_gettime, MAP_ANONYMOUS under -std=c99 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
static void *count_realloc(void *p, size_t n) {
    alloc_head *h = p ? (alloc_head *)p - 1 : NULL;
    size_t old = h ? h->size : 0;
    alloc_head *q = NULL;
    lib_alloc_calls++;
    if (!(lib_fail_at && lib_alloc_calls == lib_fail_at)) {
        q = (alloc_head *)realloc(h, sizeof *q + (n ? n : 1));
        if (q) {
            if (!h) lib_live_allocs++;
            lib_live_bytes += (long long)n - (long long)old;
            q->size = n;
        }
    }
    return q ? q + 1 : NULL;
}
static void count_free(void *p) {
    alloc_head *h;
    if (!p) return;
    h = (alloc_head *)p - 1;
    lib_live_allocs--;
    lib_live_bytes -= (long long)h->size;
    free(h);
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

/* A value as JSON text ("" for ZK_TYPE_NONE). */
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

/* ---- the server: a loop, a router, an app --------------------------------- */

#define MAX_LOG 1024
#define MAX_HOOKS 256

typedef struct world {
    zk_loop *loop;
    zk_router *router;
    zk_app *app;
    zk_app_opts opts;
    zk_client *client;  /* the client under test (its attempts are read by the hook) */
    /* the connect hook */
    int hooks, accepted, refuse_next, refuse_status;
    uint64_t hook_at[MAX_HOOKS];
    long hook_attempts[MAX_HOOKS]; /* zk_client_attempts when the request arrived */
    zk_conn *srv;                  /* the newest accepted connection, while open */
    int disconnects, disconnect_code;
    uint64_t disconnect_at;
    char hook_path[64], hook_token[64], hook_header[64];
    /* what was routed, in order */
    char log[MAX_LOG][200];
    int nlog;
    /* handlers */
    int counter;        /* "count": answers ++counter */
    int count_of[16];   /* the last answer "count" gave for {"k":K} */
    int auth_keep;      /* __auth keeps the request instead of answering */
    zk_request *kept[64];
    int64_t kept_value[64]; /* the payload of each kept request, as an integer */
    int nkept;
} world;

static world *W;

static void log_add(const char *text) {
    if (W->nlog < MAX_LOG) {
        strncpy(W->log[W->nlog], text, sizeof W->log[0] - 1);
        W->log[W->nlog][sizeof W->log[0] - 1] = '\0';
        W->nlog++;
    }
}

/* The log joined with "|". */
static const char *log_str(const world *w) {
    static char out[MAX_LOG * 8];
    int i;
    out[0] = '\0';
    for (i = 0; i < w->nlog; i++) {
        if (i) strncat(out, "|", sizeof out - strlen(out) - 1);
        strncat(out, w->log[i], sizeof out - strlen(out) - 1);
    }
    return out;
}

static void log_clear(world *w) { w->nlog = 0; }

/* How many routed messages of type (entries "type" or "type payload"). */
static int log_count(const world *w, const char *type) {
    int i, n = 0;
    size_t len = strlen(type);
    for (i = 0; i < w->nlog; i++)
        if (strncmp(w->log[i], type, len) == 0 && (w->log[i][len] == ' ' || w->log[i][len] == '\0')) n++;
    return n;
}

static void pump(zk_loop *loop) {
    int i;
    for (i = 0; i < 100000 && (i == 0 || loop->work); i++) zk_loop_advance(loop, 0);
    zk_loop_step(loop, 0);
    for (i = 0; i < 100000 && loop->work; i++) zk_loop_advance(loop, 0);
}

static uint64_t now_ms(const world *w) { return zk_loop_now(w->loop); }

/* Moves the clock by ms (timers run on the way), then settles. */
static void run_for(world *w, uint64_t ms) {
    zk_loop_advance(w->loop, ms);
    pump(w->loop);
}

static int test_codec; /* ZK_TEST_CODEC=msgpack runs every test with MessagePack */

static int on_connect(zk_conn *c, const zk_http_request *req, void **context) {
    char v[64];
    int n;
    (void)context;
    /* a connection speaks what its client asked for (raw JSON probes offer nothing) */
    if (zk_http_header_get(req->headers, req->header_count, "Sec-WebSocket-Protocol").len)
        CHECK_EQ_INT(zk_conn_codec(c), W->opts.codecs == ZK_APP_JSON ? ZK_CODEC_JSON : test_codec);
    else
        CHECK_EQ_INT(zk_conn_codec(c), ZK_CODEC_JSON);
    copy_view(W->hook_path, sizeof W->hook_path, req->path);
    n = zk_query_get(req->query, "token", v, sizeof v - 1);
    v[n > 0 ? n : 0] = '\0';
    strcpy(W->hook_token, v);
    copy_view(W->hook_header, sizeof W->hook_header,
              zk_http_header_get(req->headers, req->header_count, "X-Token"));
    if (W->hooks < MAX_HOOKS) {
        W->hook_at[W->hooks] = zk_loop_now(W->loop);
        W->hook_attempts[W->hooks] = W->client ? (long)zk_client_attempts(W->client) : -1;
    }
    W->hooks++;
    if (W->refuse_next > 0) {
        W->refuse_next--;
        return W->refuse_status ? W->refuse_status : 503;
    }
    W->accepted++;
    W->srv = c;
    log_add("+");
    return 0;
}

static void on_disconnect(zk_conn *c, void *context, int code) {
    (void)context;
    W->disconnects++;
    W->disconnect_code = code;
    W->disconnect_at = zk_loop_now(W->loop);
    if (W->srv == c) W->srv = NULL;
}

static int mw_log(zk_request *req) {
    char line[200], payload[160];
    zk_str type = zk_request_type(req);
    value_json(zk_request_payload(req), payload, sizeof payload);
    snprintf(line, sizeof line, "%.*s%s%s", (int)type.len, type.ptr, payload[0] ? " " : "", payload);
    log_add(line);
    return 0;
}

static void r_echo(zk_request *req) {
    zk_value p = zk_request_payload(req);
    if (zk_value_type(p) != ZK_TYPE_NONE) zk_write_value(zk_request_writer(req), p);
}

static void r_fail(zk_request *req) {
    zk_writer *w = zk_request_writer(req);
    zk_write_object(w);
    zk_write_key(w, "max");
    zk_write_int(w, 10);
    zk_write_end(w);
    zk_request_fail(req, "ROOM_FULL", "room is full");
}

static void r_forbid(zk_request *req) { zk_request_fail(req, ZK_CODE_FORBIDDEN, "not yours"); }

static void r_keep(zk_request *req) {
    int64_t v = zk_value_int(zk_request_payload(req), -1);
    zk_request *k = zk_request_keep(req);
    if (k && W->nkept < 64) {
        W->kept_value[W->nkept] = v;
        W->kept[W->nkept++] = k;
    }
}

static void r_count(zk_request *req) {
    int64_t k = zk_value_int(zk_value_get(zk_request_payload(req), "k"), -1);
    W->counter++;
    if (k >= 0 && k < 16) W->count_of[k] = W->counter;
    zk_write_int(zk_request_writer(req), W->counter);
}

static void r_auth(zk_request *req) {
    zk_str token = zk_value_str(zk_value_get(zk_request_payload(req), "token"));
    if (W->auth_keep) {
        r_keep(req);
        return;
    }
    if (token.len == 6 && memcmp(token.ptr, "secret", 6) == 0) zk_write_str(zk_request_writer(req), "welcome");
    else zk_request_fail(req, ZK_CODE_UNAUTHORIZED, "bad token");
}

static void r_join(zk_request *req) {
    char name[128];
    copy_view(name, sizeof name, zk_value_str(zk_request_payload(req)));
    zk_write_int(zk_request_writer(req), zk_room_join(zk_request_conn(req), name));
}

static world *world_new_seed(uint64_t seed) {
    world *w = (world *)calloc(1, sizeof *w);
    zk_loop_opts lo;
    if (!w) abort();
    memset(&lo, 0, sizeof lo);
    lo.virtual_clock = 1;
    lo.seed = seed;
    w->loop = zk_loop_new(&lo);
    w->router = zk_router_new();
    if (!w->loop || !w->router) abort();
    if (zk_router_use(w->router, mw_log) || zk_router_on(w->router, "echo", r_echo, NULL) ||
        zk_router_on(w->router, "note", r_echo, NULL) || zk_router_on(w->router, "hello", r_echo, NULL) ||
        zk_router_on(w->router, "q", r_echo, NULL) || zk_router_on(w->router, "fail", r_fail, NULL) ||
        zk_router_on(w->router, "forbid", r_forbid, NULL) || zk_router_on(w->router, "slow", r_keep, NULL) ||
        zk_router_on(w->router, "count", r_count, NULL) || zk_router_on(w->router, "users.get", r_count, NULL) ||
        zk_router_on(w->router, "rooms.get", r_count, NULL) || zk_router_on(w->router, "__auth", r_auth, NULL) ||
        zk_router_on(w->router, "join", r_join, NULL))
        abort();
    w->opts.router = w->router;
    w->opts.on_connect = on_connect;
    w->opts.on_disconnect = on_disconnect;
    W = w;
    return w;
}

static world *world_new(void) { return world_new_seed(0x5eed); }

static void world_start(world *w) {
    int err = 1;
    w->app = zk_app_new(w->loop, &w->opts, &err);
    CHECK(w->app != NULL);
    if (!w->app) abort();
}

static void world_free(world *w) {
    if (w->client) zk_client_free(w->client);
    w->client = NULL;
    if (w->app) zk_app_free(w->app);
    zk_loop_free(w->loop);
    zk_router_free(w->router);
    free(w);
    W = NULL;
}

/* Sends event type with a JSON payload (NULL: none) to the newest connection. */
static int server_event(world *w, const char *type, const char *json) {
    zk_writer *wr = zk_app_message(w->app, type);
    zk_target to;
    if (json) {
        zk_doc d;
        char buf[1024];
        size_t n = strlen(json);
        memcpy(buf, json, n + 1);
        zk_doc_init(&d);
        if (zk_json_parse(&d, buf, n) == ZK_OK) zk_write_value(wr, zk_doc_root(&d));
        zk_doc_free(&d);
    }
    if (!w->srv) return -1;
    memset(&to, 0, sizeof to);
    to.conns = &w->srv;
    to.conn_count = 1;
    return zk_app_send(w->app, &to);
}

/* Answers the kept request i with an integer. */
static int answer_kept(world *w, int i, int value) {
    CHECK(i < w->nkept);
    if (i >= w->nkept) return -1;
    zk_write_int(zk_request_writer(w->kept[i]), value);
    return zk_request_ok(w->kept[i]);
}

/* Faults on the server end of the newest connection (a failed check, not
   a crash, when there is none). */
static int srv_drop(world *w) {
    CHECK(w->srv != NULL);
    return w->srv ? zk_loopback_drop(w->srv) : -1;
}
static int srv_close(world *w, int code, const char *reason) {
    CHECK(w->srv != NULL);
    return w->srv ? zk_conn_close(w->srv, code, reason) : -1;
}
static void srv_abort(world *w) {
    CHECK(w->srv != NULL);
    if (w->srv) zk_conn_abort(w->srv);
}

/* ---- the client: what it told us ------------------------------------------ */

typedef struct transition {
    char letter;        /* c(onnecting) o(pen) r(econnecting) x (closed) */
    int code;
    char reason[96];
    uint64_t at;
} transition;

typedef struct probe {
    char states[128];   /* the letters of every on_state, in order */
    int nstates;
    transition tr[128];
    int state, code;    /* of the last on_state */
    char reason[128];
    uint64_t state_at;  /* when the last on_state ran */
    int opens;
    int open_reconnect[64];
    const char *open_emit; /* on_open emits this type, with payload the reconnect flag */
    world *w;
} probe;

static void p_state(zk_client *c, int state, int code, const char *reason) {
    probe *p = (probe *)zk_client_data(c);
    static const char letters[] = "?corx";
    uint64_t now = zk_loop_now(zk_client_loop(c));
    if (p->nstates < (int)sizeof p->states - 1) {
        transition *t = &p->tr[p->nstates];
        t->letter = state >= 1 && state <= 4 ? letters[state] : '?';
        t->code = code;
        copy_view(t->reason, sizeof t->reason, zk_str_c(reason));
        t->at = now;
        p->states[p->nstates++] = t->letter;
    }
    p->state = state;
    p->code = code;
    copy_view(p->reason, sizeof p->reason, zk_str_c(reason));
    p->state_at = now;
}

/* The last transition to RECONNECTING (a zeroed one if none). */
static transition last_r(const probe *p) {
    transition none;
    int i;
    for (i = p->nstates - 1; i >= 0; i--)
        if (p->tr[i].letter == 'r') return p->tr[i];
    memset(&none, 0, sizeof none);
    return none;
}

/* A full-jitter wait may be 0, so a reconnect can complete within one
   pump: to look at the client while it is offline, the server refuses
   every upgrade until release(). */
static void hold(world *w) { w->refuse_next = 1000000; }
static void release(world *w) { w->refuse_next = 0; }

static void p_open(zk_client *c, int reconnect) {
    probe *p = (probe *)zk_client_data(c);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_OPEN);
    if (p->opens < 64) p->open_reconnect[p->opens] = reconnect;
    p->opens++;
    if (p->open_emit) CHECK_EQ_INT(zk_client_emit(c, p->open_emit, reconnect ? "1" : "0", 1), 0);
}

/* The state letters, without a leading "c" (whether the first state is
   reported is not specified). */
static const char *states_of(const probe *p) { return p->states[0] == 'c' ? p->states + 1 : p->states; }

static void client_opts(world *w, probe *p, zk_client_opts *o) {
    memset(o, 0, sizeof *o);
    memset(p, 0, sizeof *p);
    p->w = w;
    o->url = "ws://loopback/";
    o->loopback = zk_app_server(w->app);
    o->on_state = p_state;
    o->on_open = p_open;
    o->data = p;
    o->codec = test_codec;
}

static zk_client *client_start(world *w, const zk_client_opts *o) {
    int err = 0;
    zk_client *c;
    w->client = NULL;
    c = zk_client_new(w->loop, o, &err);
    CHECK(c != NULL);
    if (!c) {
        printf("  zk_client_new failed: %s\n", zk_err_name(err));
        abort();
    }
    w->client = c;
    return c;
}

/* Starts a client and runs the loop until it is open (no time passes). */
static zk_client *client_open(world *w, const zk_client_opts *o) {
    zk_client *c = client_start(w, o);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_OPEN);
    return c;
}

static void client_free(world *w) {
    if (w->client) zk_client_free(w->client);
    w->client = NULL;
}

/* Steps the clock 1 ms at a time until the client is open, at most limit ms. */
static void run_until_open(world *w, uint64_t limit) {
    uint64_t end = now_ms(w) + limit;
    while (zk_client_state(w->client) != ZK_CLIENT_OPEN && now_ms(w) < end) run_for(w, 1);
    CHECK_EQ_INT(zk_client_state(w->client), ZK_CLIENT_OPEN);
}

/* Steps the clock 1 ms at a time until the connect hook ran n times. */
static void run_until_hooks(world *w, int n, uint64_t limit) {
    uint64_t end = now_ms(w) + limit;
    while (w->hooks < n && now_ms(w) < end) run_for(w, 1);
    CHECK_EQ_INT(w->hooks, n);
}

/* ---- call results ---------------------------------------------------------- */

typedef struct answer {
    int calls, ok, cached, type; /* type: zk_value_type of value */
    char code[64], message[128], value[512];
    int undos;
    char order[16]; /* "U" for undo, "D" for done, in the order they ran */
    uint64_t at;
} answer;

static void on_done(zk_client *c, const zk_result *r, void *user) {
    answer *a = (answer *)user;
    a->calls++;
    a->ok = r->ok;
    a->cached = r->cached;
    a->type = zk_value_type(r->value);
    copy_view(a->code, sizeof a->code, r->code);
    copy_view(a->message, sizeof a->message, r->message);
    value_json(r->value, a->value, sizeof a->value);
    a->at = zk_loop_now(zk_client_loop(c));
    if (strlen(a->order) < sizeof a->order - 1) strcat(a->order, "D");
}

static void on_undo(zk_client *c, void *user) {
    answer *a = (answer *)user;
    (void)c;
    a->undos++;
    if (strlen(a->order) < sizeof a->order - 1) strcat(a->order, "U");
}

static zk_call_opts call_opts(void) {
    zk_call_opts o;
    memset(&o, 0, sizeof o);
    return o;
}

static int call(zk_client *c, const char *type, const char *payload, const zk_call_opts *o, answer *a) {
    return zk_client_call(c, type, payload, payload ? strlen(payload) : 0, o, on_done, a);
}

static int emit(zk_client *c, const char *type, const char *payload) {
    return zk_client_emit(c, type, payload, payload ? strlen(payload) : 0);
}

#define CHECK_OK(a, val)                                                      \
    do {                                                                      \
        CHECK_EQ_INT((a).calls, 1);                                           \
        CHECK_EQ_INT((a).ok, 1);                                              \
        CHECK_TEXT((a).value, val);                                           \
    } while (0)

#define CHECK_FAILED(a, cod)                                                  \
    do {                                                                      \
        CHECK_EQ_INT((a).calls, 1);                                           \
        CHECK_EQ_INT((a).ok, 0);                                              \
        CHECK_TEXT((a).code, cod);                                            \
    } while (0)

/* ---- states ------------------------------------------------------------------ */

TEST(state_names_and_accessors) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    int code = -1;
    CHECK_TEXT(zk_client_state_name(ZK_CLIENT_CONNECTING), "connecting");
    CHECK_TEXT(zk_client_state_name(ZK_CLIENT_OPEN), "open");
    CHECK_TEXT(zk_client_state_name(ZK_CLIENT_RECONNECTING), "reconnecting");
    CHECK_TEXT(zk_client_state_name(ZK_CLIENT_CLOSED), "closed");
    CHECK(zk_client_state_name(99) != NULL);
    world_start(w);
    client_opts(w, &p, &o);
    c = client_start(w, &o);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CONNECTING);
    CHECK(zk_client_data(c) == &p);
    CHECK(zk_client_loop(c) == w->loop);
    CHECK_TEXT(zk_client_error(c, &code), "");
    CHECK_EQ_INT(code, 0);
    CHECK(zk_client_error(c, NULL) != NULL);
    CHECK_EQ_INT(zk_client_attempts(c), 0);
    CHECK_EQ_INT(p.opens, 0);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_OPEN);
    CHECK_TEXT(states_of(&p), "o");
    CHECK_EQ_INT(p.opens, 1);
    CHECK_EQ_INT(p.open_reconnect[0], 0);
    CHECK_EQ_INT(w->accepted, 1);
    CHECK_EQ_INT(zk_client_attempts(c), 0);
    CHECK_EQ_INT(now_ms(w), 0);
    client_free(w);
    pump(w->loop);
    CHECK_EQ_INT(w->disconnects, 1);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(new_refuses_bad_options) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    int err = 0;
    world_start(w);
    client_opts(w, &p, &o);
    o.auth = "{\"token\":";
    CHECK(zk_client_new(w->loop, &o, &err) == NULL);
    CHECK_EQ_INT(err, ZK_EINVAL);
    client_opts(w, &p, &o);
    o.url = "not a url";
    err = 0;
    CHECK(zk_client_new(w->loop, &o, &err) == NULL);
    CHECK_EQ_INT(err, ZK_EINVAL);
    client_opts(w, &p, &o);
    o.url = "http://loopback/";
    err = 0;
    CHECK(zk_client_new(w->loop, &o, &err) == NULL);
    CHECK_EQ_INT(err, ZK_EINVAL);
    CHECK(zk_client_new(w->loop, NULL, NULL) == NULL);
    pump(w->loop);
    CHECK_EQ_INT(w->hooks, 0);
    CHECK_EQ_INT(p.nstates, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(drop_and_abort_reconnect_and_close_ends_it) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    int code = 0;
    answer a;
    world_start(w);
    client_opts(w, &p, &o);
    o.backoff_base_ms = 100;
    c = client_open(w, &o);
    /* the transport resets */
    hold(w);
    CHECK_EQ_INT(srv_drop(w), 0);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_RECONNECTING);
    CHECK_EQ_INT(p.state, ZK_CLIENT_RECONNECTING);
    CHECK_EQ_INT(p.code, 1006);
    CHECK_TEXT(zk_client_error(c, &code), p.reason);
    CHECK_EQ_INT(code, 1006);
    release(w);
    run_until_open(w, 2000);
    CHECK_TEXT(states_of(&p), "oro");
    CHECK_EQ_INT(p.opens, 2);
    CHECK_EQ_INT(p.open_reconnect[1], 1);
    CHECK_EQ_INT(w->accepted, 2);
    /* the server drops it */
    hold(w);
    srv_abort(w);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_RECONNECTING);
    CHECK_EQ_INT(p.code, 1006);
    release(w);
    run_until_open(w, 2000);
    CHECK_TEXT(states_of(&p), "ororo");
    CHECK_EQ_INT(w->accepted, 3);
    {
        int hooks = w->hooks;
    /* closed by us: for good, 1000 */
    zk_client_close(c);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CLOSED);
    CHECK_TEXT(states_of(&p), "ororox");
    CHECK_EQ_INT(w->disconnect_code, 1000);
    CHECK(w->srv == NULL);
    run_for(w, 600000);
    CHECK_EQ_INT(w->hooks, hooks);
    }
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CLOSED);
    memset(&a, 0, sizeof a);
    CHECK_EQ_INT(call(c, "echo", "1", NULL, &a), ZK_ECLOSED);
    CHECK_EQ_INT(emit(c, "note", "1"), ZK_ECLOSED);
    pump(w->loop);
    CHECK_EQ_INT(a.calls, 0);
    CHECK_EQ_INT(log_count(w, "echo") + log_count(w, "note"), 0);
    world_free(w);
    CHECK_EQ_INT(a.calls, 0);
    CHECK_ALL_FREED();
}

TEST(close_codes_that_stop_the_client) {
    static const int codes[] = {1000, 1008, 4500, 4501, 4999};
    size_t i;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        world *w = world_new();
        probe p;
        zk_client_opts o;
        zk_client *c;
        int code = 0;
        answer a;
        world_start(w);
        client_opts(w, &p, &o);
        o.backoff_base_ms = 10;
        o.restart_spread_ms = 10;
        c = client_open(w, &o);
        CHECK_EQ_INT(srv_close(w, codes[i], "go away for good"), 0);
        pump(w->loop);
        if (zk_client_state(c) != ZK_CLIENT_CLOSED) printf("  close code %d\n", codes[i]);
        CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CLOSED);
        CHECK_TEXT(states_of(&p), "ox");
        CHECK_EQ_INT(p.code, codes[i]);
        CHECK_TEXT(p.reason, "go away for good");
        CHECK_TEXT(zk_client_error(c, &code), "go away for good");
        CHECK_EQ_INT(code, codes[i]);
        run_for(w, 600000);
        CHECK_EQ_INT(w->hooks, 1);
        memset(&a, 0, sizeof a);
        CHECK_EQ_INT(call(c, "echo", "1", NULL, &a), ZK_ECLOSED);
        world_free(w);
        CHECK_EQ_INT(a.calls, 0);
    }
    CHECK_ALL_FREED();
}

/* A final close with calls in flight: they get CLOSED, not the retriable
   DISCONNECTED, and their callbacks already see the client CLOSED. */
static int state_in_done;
static void done_state(zk_client *c, const zk_result *r, void *user) {
    state_in_done = zk_client_state(c);
    on_done(c, r, user);
}

TEST(final_close_fails_calls_in_flight_with_closed) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a, b;
    zk_call_opts idem = call_opts();
    world_start(w);
    client_opts(w, &p, &o);
    c = client_open(w, &o);
    memset(&a, 0, sizeof a);
    idem.idempotent = 1;
    state_in_done = 0;
    memset(&b, 0, sizeof b);
    CHECK_EQ_INT(zk_client_call(c, "slow", "1", 1, &idem, done_state, &a), 0);
    CHECK_EQ_INT(zk_client_call(c, "slow", "2", 1, NULL, done_state, &b), 0);
    pump(w->loop);
    CHECK_EQ_INT(srv_close(w, 4501, "unauthorized"), 0);
    pump(w->loop);
    CHECK_EQ_INT(a.calls, 1);
    CHECK_TEXT(a.code, "CLOSED");
    CHECK_EQ_INT(b.calls, 1);
    CHECK_TEXT(b.code, "CLOSED");
    CHECK_EQ_INT(state_in_done, ZK_CLIENT_CLOSED);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CLOSED);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(close_codes_that_reconnect) {
    static const int codes[] = {1001, 1011, 1012, 4000, 4001, 4499};
    size_t i;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        world *w = world_new();
        probe p;
        zk_client_opts o;
        zk_client *c;
        int code = 0;
        world_start(w);
        client_opts(w, &p, &o);
        o.backoff_base_ms = 10;
        o.restart_spread_ms = 10;
        c = client_open(w, &o);
        hold(w);
        CHECK_EQ_INT(srv_close(w, codes[i], "back soon"), 0);
        pump(w->loop);
        if (zk_client_state(c) != ZK_CLIENT_RECONNECTING) printf("  close code %d\n", codes[i]);
        CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_RECONNECTING);
        CHECK_EQ_INT(p.code, codes[i]);
        CHECK_TEXT(p.reason, "back soon");
        CHECK_TEXT(zk_client_error(c, &code), "back soon");
        CHECK_EQ_INT(code, codes[i]);
        release(w);
        run_until_open(w, 2000);
        CHECK_TEXT(states_of(&p), "oro");
        CHECK_EQ_INT(w->accepted, 2);
        world_free(w);
    }
    CHECK_ALL_FREED();
}

TEST(close_while_reconnecting_stops_the_attempts) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    world_start(w);
    client_opts(w, &p, &o);
    o.backoff_base_ms = 1000;
    c = client_open(w, &o);
    w->refuse_next = 1000000;
    srv_drop(w);
    pump(w->loop);
    run_for(w, 5000);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_RECONNECTING);
    CHECK(w->hooks > 1);
    {
        int hooks = w->hooks;
        zk_client_close(c);
        pump(w->loop);
        CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CLOSED);
        CHECK_TEXT(states_of(&p), "orx");
        run_for(w, 600000);
        CHECK_EQ_INT(w->hooks, hooks);
    }
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(close_sends_what_is_queued_and_fails_pending_calls) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a, b;
    zk_call_opts co = call_opts();
    world_start(w);
    client_opts(w, &p, &o);
    c = client_open(w, &o);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    co.undo = on_undo;
    CHECK_EQ_INT(call(c, "slow", "1", &co, &a), 0);
    pump(w->loop);
    CHECK_EQ_INT(w->nkept, 1);
    CHECK_EQ_INT(emit(c, "note", "\"bye\""), 0);
    zk_client_close(c);
    pump(w->loop);
    CHECK_FAILED(a, ZK_CODE_CLOSED);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CLOSED);
    CHECK_TEXT(log_str(w), "+|slow 1|note \"bye\"");
    CHECK_EQ_INT(w->disconnects, 1);
    CHECK_EQ_INT(w->disconnect_code, 1000);
    /* closed while connecting: queued calls get CLOSED and nothing is sent */
    client_free(w);
    log_clear(w);
    client_opts(w, &p, &o);
    c = client_start(w, &o);
    CHECK_EQ_INT(call(c, "echo", "2", NULL, &b), 0);
    CHECK_EQ_INT(emit(c, "note", "3"), 0);
    zk_client_close(c);
    pump(w->loop);
    run_for(w, 60000);
    CHECK_FAILED(b, ZK_CODE_CLOSED);
    CHECK_EQ_INT(log_count(w, "echo") + log_count(w, "note"), 0);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CLOSED);
    world_free(w);
    CHECK_EQ_INT(a.calls, 1);
    CHECK_EQ_INT(b.calls, 1);
    CHECK_ALL_FREED();
}

/* ---- backoff ---------------------------------------------------------------- */

#define SCHEDULE_N 12 /* the first connect and 11 attempts */

/* A client whose every upgrade is refused (503): when each connect
   reached the server, and zk_client_attempts at that moment. */
static void refused_schedule(uint64_t seed, uint64_t *at, long *attempts) {
    world *w = world_new_seed(seed);
    probe p;
    zk_client_opts o;
    zk_client *c;
    world_start(w);
    w->refuse_next = 1000000;
    client_opts(w, &p, &o);
    o.backoff_base_ms = 100;
    o.backoff_max_ms = 1000;
    c = client_start(w, &o);
    pump(w->loop);
    CHECK(w->hooks >= 1);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_RECONNECTING);
    CHECK(p.reason[0] != '\0'); /* says what failed */
    run_until_hooks(w, SCHEDULE_N, 100000);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_RECONNECTING);
    CHECK_TEXT(states_of(&p), "r");
    CHECK_EQ_INT(p.opens, 0);
    memcpy(at, w->hook_at, SCHEDULE_N * sizeof *at);
    memcpy(attempts, w->hook_attempts, SCHEDULE_N * sizeof *attempts);
    world_free(w);
}

TEST(backoff_waits_are_full_jitter_under_the_cap) {
    uint64_t seed;
    int low = 0, high = 0;
    for (seed = 1; seed <= 8; seed++) {
        uint64_t at[SCHEDULE_N];
        long attempts[SCHEDULE_N];
        int k;
        refused_schedule(seed, at, attempts);
        CHECK_EQ_INT(at[0], 0);
        CHECK_EQ_INT(attempts[0], 0);
        for (k = 1; k < SCHEDULE_N; k++) {
            uint64_t cap = 100u << (k - 1), wait = at[k] - at[k - 1];
            if (cap > 1000) cap = 1000;
            if (wait > cap)
                printf("  seed %d attempt %d waited %d ms, cap %d\n", (int)seed, k, (int)wait, (int)cap);
            CHECK(at[k] >= at[k - 1]);
            CHECK(wait <= cap);
            CHECK_EQ_INT(attempts[k], k);
            if (wait * 2 < cap) low++;
            else high++;
        }
    }
    /* "full jitter": the waits spread over [0, cap], not only its top half */
    CHECK(low > 0);
    CHECK(high > 0);
    CHECK_ALL_FREED();
}

TEST(backoff_schedule_is_reproducible_with_a_seed) {
    uint64_t a[SCHEDULE_N], b[SCHEDULE_N], c[SCHEDULE_N];
    long n[SCHEDULE_N];
    refused_schedule(42, a, n);
    refused_schedule(42, b, n);
    refused_schedule(43, c, n);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    CHECK_ALL_FREED();
}

TEST(max_attempts_ends_in_closed) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a;
    world_start(w);
    w->refuse_next = 1000000;
    client_opts(w, &p, &o);
    o.backoff_base_ms = 100;
    o.max_attempts = 3;
    c = client_start(w, &o);
    memset(&a, 0, sizeof a);
    CHECK_EQ_INT(call(c, "echo", "1", NULL, &a), 0);
    pump(w->loop);
    while (zk_client_state(c) != ZK_CLIENT_CLOSED && now_ms(w) < 60000) run_for(w, 1);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CLOSED);
    CHECK_EQ_INT(w->hooks, 4); /* the first connect and 3 attempts */
    CHECK_EQ_INT(zk_client_attempts(c), 3);
    CHECK_TEXT(states_of(&p), "rx");
    CHECK_FAILED(a, ZK_CODE_CLOSED);
    run_for(w, 600000);
    CHECK_EQ_INT(w->hooks, 4);
    CHECK_EQ_INT(call(c, "echo", "1", NULL, &a), ZK_ECLOSED);
    world_free(w);
    CHECK_EQ_INT(a.calls, 1);
    CHECK_ALL_FREED();
}

TEST(attempts_reset_once_a_connection_stays_open_stable_ms) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    uint64_t opened;
    world_start(w);
    client_opts(w, &p, &o);
    o.backoff_base_ms = 100;
    o.backoff_max_ms = 1000;
    o.stable_ms = 1000;
    c = client_open(w, &o);
    /* two refusals, then it gets in on attempt 3 */
    w->refuse_next = 2;
    srv_drop(w);
    pump(w->loop);
    run_until_hooks(w, 4, 5000);
    CHECK_EQ_INT(w->hook_attempts[1], 1);
    CHECK_EQ_INT(w->hook_attempts[2], 2);
    CHECK_EQ_INT(w->hook_attempts[3], 3);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_OPEN);
    CHECK_EQ_INT(zk_client_attempts(c), 3);
    /* open less than stable_ms: the count goes on */
    run_for(w, 500);
    CHECK_EQ_INT(zk_client_attempts(c), 3);
    srv_drop(w);
    pump(w->loop);
    run_until_hooks(w, 5, 5000);
    CHECK_EQ_INT(w->hook_attempts[4], 4);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_OPEN);
    opened = p.state_at;
    CHECK_EQ_INT(opened, w->hook_at[4]);
    /* open stable_ms: back to 0, and the next drop starts at attempt 1 */
    run_for(w, opened + 999 - now_ms(w));
    CHECK_EQ_INT(zk_client_attempts(c), 4);
    run_for(w, 1);
    CHECK_EQ_INT(zk_client_attempts(c), 0);
    srv_drop(w);
    pump(w->loop);
    run_until_hooks(w, 6, 5000);
    CHECK_EQ_INT(w->hook_attempts[5], 1);
    world_free(w);
    CHECK_ALL_FREED();
}

/* How long after the close (code 0: a dropped transport) the first attempt
   reached the server, with base 10 ms and the restart spread given. */
static uint64_t first_wait(uint64_t seed, int code, uint32_t spread) {
    world *w = world_new_seed(seed);
    probe p;
    zk_client_opts o;
    uint64_t closed, wait;
    world_start(w);
    client_opts(w, &p, &o);
    o.backoff_base_ms = 10;
    o.backoff_max_ms = 10000;
    o.restart_spread_ms = spread;
    client_open(w, &o);
    run_for(w, 100);
    if (code) srv_close(w, code, "restart");
    else srv_drop(w);
    pump(w->loop);
    CHECK_EQ_INT(last_r(&p).code, code ? code : 1006);
    closed = now_ms(w);
    run_until_hooks(w, 2, 20000);
    wait = w->hook_at[1] - closed;
    world_free(w);
    return wait;
}

TEST(first_attempt_after_a_server_restart_is_spread) {
    static const int codes[] = {1001, 1012};
    size_t i;
    uint64_t seed;
    for (i = 0; i < 2; i++) {
        int over_base = 0;
        for (seed = 1; seed <= 8; seed++) {
            uint64_t wait = first_wait(seed, codes[i], 3000);
            CHECK(wait <= 3000);
            if (wait > 10) over_base++;
        }
        if (!over_base) printf("  code %d: every first attempt within backoff_base_ms\n", codes[i]);
        CHECK(over_base > 0); /* the spread is used, not the backoff */
    }
    /* the default spread is 5000 ms */
    for (seed = 1; seed <= 4; seed++) CHECK(first_wait(seed, 1001, 0) <= 5000);
    /* a dropped connection is not a restart: attempt 1 waits at most the base */
    for (seed = 1; seed <= 8; seed++) CHECK(first_wait(seed, 0, 3000) <= 10);
    CHECK_ALL_FREED();
}

TEST(server_shutdown_is_going_away_and_the_client_keeps_trying) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    world_start(w);
    client_opts(w, &p, &o);
    o.backoff_base_ms = 100;
    c = client_open(w, &o);
    zk_server_shutdown(zk_app_server(w->app), 1000, NULL);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_RECONNECTING);
    CHECK_EQ_INT(p.code, 1001);
    run_for(w, 20000);
    /* the server accepts no one any more: still trying, not closed */
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_RECONNECTING);
    CHECK(zk_client_attempts(c) > 0);
    CHECK_EQ_INT(w->hooks, 1);
    CHECK_TEXT(states_of(&p), "or");
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- heartbeats -------------------------------------------------------------- */

TEST(heartbeat_detects_a_silent_connection) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    uint64_t t, silenced;
    world_start(w);
    client_opts(w, &p, &o);
    o.ping_interval_ms = 1000;
    o.pong_timeout_ms = 500;
    o.backoff_base_ms = 10;
    client_open(w, &o);
    /* silent from the start: the first ping (at 1000) is never answered */
    CHECK(w->srv != NULL);
    if (w->srv) CHECK_EQ_INT(zk_loopback_silence(w->srv, 1), 0);
    for (t = 0; t < 1499; t++) run_for(w, 1);
    CHECK_TEXT(states_of(&p), "o");
    run_for(w, 1);
    CHECK_EQ_INT(now_ms(w), 1500);
    CHECK(strncmp(states_of(&p), "or", 2) == 0);
    CHECK_EQ_INT(last_r(&p).at, 1500);
    CHECK(last_r(&p).reason[0] != '\0');
    run_until_open(w, 20);
    CHECK_EQ_INT(w->accepted, 2);
    /* alive for a while, then silent mid-interval: found dead within
       pong_timeout_ms .. ping_interval_ms + pong_timeout_ms */
    run_for(w, 2500);
    CHECK_TEXT(states_of(&p), "oro");
    CHECK_EQ_INT(w->accepted, 2);
    silenced = now_ms(w);
    CHECK(w->srv != NULL);
    if (w->srv) zk_loopback_silence(w->srv, 1);
    while (p.nstates == 3 && now_ms(w) < silenced + 5000) run_for(w, 1);
    CHECK_EQ_INT(p.tr[3].letter, 'r');
    CHECK(p.tr[3].at >= silenced + 500);
    CHECK(p.tr[3].at <= silenced + 1500);
    run_until_open(w, 20);
    CHECK_TEXT(states_of(&p), "ororo");
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(heartbeat_keeps_a_healthy_connection_open) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    int i;
    world_start(w);
    client_opts(w, &p, &o);
    o.ping_interval_ms = 1000;
    o.pong_timeout_ms = 500;
    c = client_open(w, &o);
    for (i = 0; i < 10000; i++) {
        run_for(w, 10);
        if (zk_client_state(c) != ZK_CLIENT_OPEN) break;
    }
    CHECK_EQ_INT(now_ms(w), 100000);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_OPEN);
    CHECK_TEXT(states_of(&p), "o");
    CHECK_EQ_INT(w->hooks, 1);
    CHECK_EQ_INT(w->disconnects, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

static void count_event(zk_client *c, zk_str type, zk_value payload, void *user) {
    (void)c;
    (void)type;
    (void)payload;
    (*(int *)user)++;
}

TEST(heartbeat_counts_received_data_as_life) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    int ticks = 0, sent = 0;
    uint64_t last;
    w->opts.server.idle_timeout_ms = 600000;
    world_start(w);
    client_opts(w, &p, &o);
    o.ping_interval_ms = 1000;
    o.pong_timeout_ms = 500;
    o.backoff_base_ms = 10;
    c = client_open(w, &o);
    CHECK_EQ_INT(zk_client_on(c, "tick", count_event, &ticks), 0);
    /* the server stops reading (no pongs) but keeps talking */
    CHECK(w->srv != NULL);
    if (w->srv) CHECK_EQ_INT(zk_loopback_stall(w->srv, 1), 0);
    while (now_ms(w) < 9900) {
        run_for(w, 300);
        CHECK_EQ_INT(server_event(w, "tick", "1"), 1);
        sent++;
        pump(w->loop);
        if (zk_client_state(c) != ZK_CLIENT_OPEN) break;
    }
    last = now_ms(w);
    CHECK_EQ_INT(last, 9900);
    CHECK_EQ_INT(ticks, sent);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_OPEN);
    /* silence: dead within ping_interval_ms + pong_timeout_ms of the last data */
    run_for(w, 500);
    CHECK_TEXT(states_of(&p), "o");
    while (p.nstates == 1 && now_ms(w) < last + 5000) run_for(w, 1);
    CHECK_EQ_INT(p.tr[1].letter, 'r');
    CHECK(p.tr[1].at > last + 500);
    CHECK(p.tr[1].at <= last + 1500);
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- calls ---------------------------------------------------------------- */

TEST(call_results_and_server_errors) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a[6];
    int i;
    world_start(w);
    client_opts(w, &p, &o);
    c = client_open(w, &o);
    memset(a, 0, sizeof a);
    CHECK_EQ_INT(call(c, "echo", "{\"x\":[1,\"two\"],\"y\":null}", NULL, &a[0]), 0);
    CHECK_EQ_INT(call(c, "echo", NULL, NULL, &a[1]), 0);
    CHECK_EQ_INT(call(c, "fail", "{}", NULL, &a[2]), 0);
    CHECK_EQ_INT(call(c, "forbid", NULL, NULL, &a[3]), 0);
    CHECK_EQ_INT(call(c, "no.such", "1", NULL, &a[4]), 0);
    CHECK_EQ_INT(zk_client_call(c, "echo", " [ 1 , 2 ] ", 11, NULL, NULL, NULL), 0); /* done may be NULL */
    for (i = 0; i < 5; i++) CHECK_EQ_INT(a[i].calls, 0); /* answers come from the loop */
    pump(w->loop);
    CHECK_OK(a[0], "{\"x\":[1,\"two\"],\"y\":null}");
    CHECK_EQ_INT(a[0].cached, 0);
    CHECK_OK(a[1], "null");
    CHECK_EQ_INT(a[1].type, ZK_TYPE_NULL);
    CHECK_FAILED(a[2], "ROOM_FULL");
    CHECK_TEXT(a[2].message, "room is full");
    CHECK_TEXT(a[2].value, "{\"max\":10}");
    CHECK_FAILED(a[3], "FORBIDDEN");
    CHECK_TEXT(a[3].message, "not yours");
    CHECK_EQ_INT(a[3].type, ZK_TYPE_NONE);
    CHECK_FAILED(a[4], "NOT_FOUND");
    CHECK(a[4].message[0] != '\0');
    CHECK_EQ_INT(log_count(w, "echo"), 3);
    /* bad arguments: refused at once, done never called, nothing sent */
    memset(&a[5], 0, sizeof a[5]);
    CHECK_EQ_INT(call(c, "", "1", NULL, &a[5]), ZK_EINVAL);
    CHECK_EQ_INT(call(c, NULL, "1", NULL, &a[5]), ZK_EINVAL);
    CHECK_EQ_INT(call(c, "echo", "{\"a\":", NULL, &a[5]), ZK_EINVAL);
    CHECK_EQ_INT(call(c, "echo", "1 2", NULL, &a[5]), ZK_EINVAL);
    CHECK_EQ_INT(emit(c, "note", "{nope}"), ZK_EINVAL);
    CHECK_EQ_INT(emit(c, NULL, "1"), ZK_EINVAL);
    pump(w->loop);
    CHECK_EQ_INT(a[5].calls, 0);
    CHECK_EQ_INT(log_count(w, "echo"), 3);
    CHECK_EQ_INT(log_count(w, "note"), 0);
    world_free(w);
    CHECK_EQ_INT(a[5].calls, 0);
    CHECK_ALL_FREED();
}

TEST(call_timeouts_per_call_and_default_and_late_answers) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a, b, e, d;
    zk_call_opts co = call_opts();
    int t;
    world_start(w);
    client_opts(w, &p, &o);
    o.call_timeout_ms = 700;
    c = client_open(w, &o);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&e, 0, sizeof e);
    memset(&d, 0, sizeof d);
    co.timeout_ms = 300;
    co.undo = on_undo;
    CHECK_EQ_INT(call(c, "slow", "1", &co, &a), 0);
    CHECK_EQ_INT(call(c, "slow", "2", NULL, &b), 0);
    CHECK_EQ_INT(call(c, "echo", "3", &co, &e), 0);
    pump(w->loop);
    CHECK_EQ_INT(w->nkept, 2);
    CHECK_OK(e, "3");
    CHECK_EQ_INT(e.undos, 0);
    for (t = 0; t < 299; t++) run_for(w, 1);
    CHECK_EQ_INT(a.calls, 0);
    run_for(w, 1);
    CHECK_FAILED(a, ZK_CODE_TIMEOUT);
    CHECK_EQ_INT(a.at, 300);
    CHECK_TEXT(a.order, "UD");
    for (t = 300; t < 699; t++) run_for(w, 1);
    CHECK_EQ_INT(b.calls, 0);
    run_for(w, 1);
    CHECK_FAILED(b, ZK_CODE_TIMEOUT);
    CHECK_EQ_INT(b.at, 700);
    CHECK_EQ_INT(b.undos, 0);
    /* a new call in flight, then the late answers of the timed-out ones:
       dropped, and never taken for the new call's */
    CHECK_EQ_INT(call(c, "slow", "4", NULL, &d), 0);
    pump(w->loop);
    CHECK_EQ_INT(w->nkept, 3);
    answer_kept(w, 0, 111);
    answer_kept(w, 1, 222);
    pump(w->loop);
    CHECK_EQ_INT(a.calls, 1);
    CHECK_EQ_INT(b.calls, 1);
    CHECK_EQ_INT(d.calls, 0);
    CHECK_EQ_INT(a.undos, 1);
    answer_kept(w, 2, 444);
    pump(w->loop);
    CHECK_OK(d, "444");
    run_for(w, 10000);
    CHECK_EQ_INT(a.calls + b.calls + d.calls + e.calls, 4);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_OPEN);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(calls_in_flight_on_a_drop_fail_or_are_resent_when_idempotent) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a, b;
    zk_call_opts co = call_opts();
    world_start(w);
    client_opts(w, &p, &o);
    o.backoff_base_ms = 10;
    c = client_open(w, &o);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    co.undo = on_undo;
    CHECK_EQ_INT(call(c, "slow", "1", &co, &a), 0);
    co.idempotent = 1;
    CHECK_EQ_INT(call(c, "slow", "2", &co, &b), 0);
    pump(w->loop);
    CHECK_EQ_INT(w->nkept, 2);
    log_clear(w);
    srv_drop(w);
    pump(w->loop);
    CHECK_FAILED(a, ZK_CODE_DISCONNECTED);
    CHECK_TEXT(a.order, "UD");
    CHECK_EQ_INT(b.calls, 0);
    CHECK_EQ_INT(b.undos, 0);
    run_until_open(w, 20);
    pump(w->loop);
    /* only the idempotent one is made again */
    CHECK_TEXT(log_str(w), "+|slow 2");
    CHECK_EQ_INT(w->nkept, 3);
    answer_kept(w, 1, 20); /* the first connection's copy: its connection is gone */
    answer_kept(w, 2, 22);
    pump(w->loop);
    CHECK_OK(b, "22");
    CHECK_EQ_INT(b.undos, 0);
    CHECK_EQ_INT(a.calls, 1);
    run_for(w, 30000);
    CHECK_EQ_INT(a.calls, 1);
    CHECK_EQ_INT(b.calls, 1);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(undo_runs_before_done_only_when_a_call_fails) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer ok, err;
    zk_call_opts co = call_opts();
    world_start(w);
    client_opts(w, &p, &o);
    c = client_open(w, &o);
    memset(&ok, 0, sizeof ok);
    memset(&err, 0, sizeof err);
    co.undo = on_undo;
    CHECK_EQ_INT(call(c, "echo", "1", &co, &ok), 0);
    CHECK_EQ_INT(call(c, "fail", "1", &co, &err), 0);
    CHECK_EQ_INT(ok.undos + err.undos, 0); /* not before the answer */
    pump(w->loop);
    CHECK_OK(ok, "1");
    CHECK_TEXT(ok.order, "D");
    CHECK_FAILED(err, "ROOM_FULL");
    CHECK_TEXT(err.order, "UD");
    world_free(w);
    CHECK_EQ_INT(ok.undos, 0);
    CHECK_EQ_INT(err.undos, 1);
    CHECK_ALL_FREED();
}

/* ---- offline queue --------------------------------------------------------- */

/* max_pending counts every call still owed a result: sent and kept by the
   server, queued, or sharing an identical call's request. */
TEST(pending_calls_are_limited_by_max_pending) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a[6];
    zk_call_opts once = call_opts();
    world_start(w);
    client_opts(w, &p, &o);
    o.max_pending = 3;
    c = client_open(w, &o);
    memset(a, 0, sizeof a);
    once.no_dedup = 1;
    CHECK_EQ_INT(call(c, "slow", "1", NULL, &a[0]), 0);
    CHECK_EQ_INT(call(c, "slow", "2", NULL, &a[1]), 0);
    pump(w->loop);
    CHECK_EQ_INT(w->nkept, 2);
    CHECK_EQ_INT(call(c, "slow", "2", NULL, &a[2]), 0); /* shares the request of a[1] */
    CHECK_EQ_INT(call(c, "slow", "3", NULL, &a[3]), ZK_ENOSPACE);
    CHECK_EQ_INT(call(c, "slow", "2", NULL, &a[3]), ZK_ENOSPACE);
    pump(w->loop);
    CHECK_EQ_INT(w->nkept, 2);
    CHECK_EQ_INT(a[3].calls, 0);
    /* a result frees a place */
    CHECK_EQ_INT(answer_kept(w, 0, 10), 0);
    pump(w->loop);
    CHECK_EQ_INT(a[0].calls, 1);
    CHECK_EQ_INT(call(c, "slow", "4", &once, &a[4]), 0);
    CHECK_EQ_INT(call(c, "slow", "5", &once, &a[5]), ZK_ENOSPACE);
    /* so does a timeout */
    run_for(w, 10000);
    CHECK_EQ_INT(a[1].calls + a[2].calls + a[4].calls, 3);
    CHECK(strcmp(a[1].code, "TIMEOUT") == 0);
    CHECK_EQ_INT(call(c, "echo", "6", NULL, &a[5]), 0);
    pump(w->loop);
    CHECK_EQ_INT(a[5].ok, 1);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(offline_queue_goes_out_in_order_once_open) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a, b;
    world_start(w);
    client_opts(w, &p, &o);
    o.backoff_base_ms = 10;
    c = client_start(w, &o);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CONNECTING);
    CHECK_EQ_INT(emit(c, "note", "1"), 0);
    CHECK_EQ_INT(call(c, "echo", "2", NULL, &a), 0);
    CHECK_EQ_INT(emit(c, "note", "3"), 0);
    pump(w->loop);
    CHECK_TEXT(log_str(w), "+|note 1|echo 2|note 3");
    CHECK_OK(a, "2");
    /* and while reconnecting */
    hold(w);
    srv_drop(w);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_RECONNECTING);
    log_clear(w);
    CHECK_EQ_INT(emit(c, "note", "4"), 0);
    CHECK_EQ_INT(call(c, "echo", "5", NULL, &b), 0);
    CHECK_EQ_INT(emit(c, "note", "6"), 0);
    pump(w->loop);
    CHECK_EQ_INT(b.calls, 0);
    CHECK_TEXT(log_str(w), "");
    release(w);
    run_until_open(w, 2000);
    pump(w->loop);
    CHECK_TEXT(log_str(w), "+|note 4|echo 5|note 6");
    CHECK_OK(b, "5");
    world_free(w);
    CHECK_ALL_FREED();
}

/* An upgrade refused with a 4xx the same request would meet again (401,
   403, 404) ends the client at once with the status in the reason; 408,
   429 and 503 are tried again. */
TEST(refused_upgrades_end_the_client_or_are_retried_by_status) {
    static const int final[] = {401, 403, 404}, retried[] = {408, 429, 503};
    size_t i;
    for (i = 0; i < 3; i++) {
        world *w = world_new();
        probe p;
        zk_client_opts o;
        zk_client *c;
        char want[96];
        world_start(w);
        client_opts(w, &p, &o);
        o.backoff_base_ms = 10;
        w->refuse_status = final[i];
        w->refuse_next = 1000000;
        c = client_start(w, &o);
        run_for(w, 60000);
        CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CLOSED);
        CHECK_EQ_INT(w->hooks, 1);
        snprintf(want, sizeof want, "upgrade refused: HTTP %d %s", final[i], zk_http_status_text(final[i]));
        CHECK_TEXT(zk_client_error(c, NULL), want);
        world_free(w);
    }
    for (i = 0; i < 3; i++) {
        world *w = world_new();
        probe p;
        zk_client_opts o;
        zk_client *c;
        world_start(w);
        client_opts(w, &p, &o);
        o.backoff_base_ms = 10;
        o.backoff_max_ms = 100;
        w->refuse_status = retried[i];
        w->refuse_next = 5;
        c = client_start(w, &o);
        run_until_open(w, 60000);
        CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_OPEN);
        CHECK_EQ_INT(w->hooks, 6);
        world_free(w);
    }
    CHECK_ALL_FREED();
}

/* on_state hears OPEN after on_open ran and the queue went out: what it
   sends comes after the queued messages. */
static void state_emit(zk_client *c, int state, int code, const char *reason) {
    p_state(c, state, code, reason);
    if (state == ZK_CLIENT_OPEN) CHECK_EQ_INT(zk_client_emit(c, "note", "9", 1), 0);
}

TEST(on_state_hears_open_after_the_queue_went_out) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    world_start(w);
    client_opts(w, &p, &o);
    o.on_state = state_emit;
    p.open_emit = "note";
    c = client_start(w, &o);
    CHECK_EQ_INT(emit(c, "note", "2"), 0);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_OPEN);
    CHECK_TEXT(log_str(w), "+|note 0|note 2|note 9");
    world_free(w);
    CHECK_ALL_FREED();
}

/* A queued call that timed out (or was refused) is not sent later: the
   caller was told it failed. */
TEST(a_queued_call_that_timed_out_is_never_sent) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a, b;
    zk_call_opts co = call_opts();
    world_start(w);
    client_opts(w, &p, &o);
    o.backoff_base_ms = 100;
    o.backoff_max_ms = 100;
    hold(w);
    c = client_start(w, &o);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    co.timeout_ms = 300;
    CHECK_EQ_INT(call(c, "echo", "1", &co, &a), 0);
    co.timeout_ms = 0;
    CHECK_EQ_INT(call(c, "echo", "2", &co, &b), 0);
    pump(w->loop);
    run_for(w, 300);
    CHECK_FAILED(a, ZK_CODE_TIMEOUT);
    CHECK_EQ_INT(b.calls, 0);
    release(w);
    run_until_open(w, 2000);
    pump(w->loop);
    CHECK_TEXT(log_str(w), "+|echo 2");
    CHECK_OK(b, "2");
    CHECK_EQ_INT(a.calls, 1);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(offline_queue_limits_refuse_at_once) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a;
    char big[200];
    int i, k = 0, rc = 0;
    world_start(w);
    client_opts(w, &p, &o);
    o.queue_max = 3;
    c = client_start(w, &o);
    memset(&a, 0, sizeof a);
    CHECK_EQ_INT(emit(c, "q", "1"), 0);
    CHECK_EQ_INT(emit(c, "q", "2"), 0);
    CHECK_EQ_INT(emit(c, "q", "3"), 0);
    CHECK_EQ_INT(emit(c, "q", "4"), ZK_ENOSPACE);
    CHECK_EQ_INT(call(c, "echo", "5", NULL, &a), ZK_ENOSPACE);
    pump(w->loop);
    CHECK_TEXT(log_str(w), "+|q 1|q 2|q 3");
    CHECK_EQ_INT(a.calls, 0);
    /* open: sends are not queued, so not limited */
    for (i = 0; i < 5; i++) CHECK_EQ_INT(emit(c, "q", "6"), 0);
    pump(w->loop);
    CHECK_EQ_INT(log_count(w, "q"), 8);
    client_free(w);
    CHECK_EQ_INT(a.calls, 0);
    /* bytes */
    log_clear(w);
    client_opts(w, &p, &o);
    o.queue_max_bytes = 100;
    c = client_start(w, &o);
    big[0] = '"';
    memset(big + 1, 'b', 150);
    big[151] = '"';
    big[152] = '\0';
    CHECK_EQ_INT(emit(c, "q", big), ZK_ENOSPACE);
    CHECK_EQ_INT(call(c, "echo", big, NULL, &a), ZK_ENOSPACE);
    for (k = 0; k < 50; k++) {
        rc = emit(c, "q", "\"xxxxxxxxxx\""); /* 12 bytes of payload each */
        if (rc != 0) break;
    }
    CHECK_EQ_INT(rc, ZK_ENOSPACE);
    CHECK(k >= 1);
    CHECK(k * 12 <= 100);
    pump(w->loop);
    CHECK_EQ_INT(log_count(w, "q"), k);
    CHECK_EQ_INT(log_count(w, "echo"), 0);
    world_free(w);
    CHECK_EQ_INT(a.calls, 0);
    CHECK_ALL_FREED();
}

static void count_result(zk_client *c, const zk_result *r, void *user) {
    (void)c;
    if (r->ok) (*(int *)user)++;
}

TEST(on_open_then_rejoin_then_queue_on_every_reconnect) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    int rejoined = 0, before;
    world_start(w);
    client_opts(w, &p, &o);
    o.backoff_base_ms = 10;
    p.open_emit = "hello";
    c = client_start(w, &o);
    CHECK_EQ_INT(emit(c, "note", "1"), 0);
    pump(w->loop);
    CHECK_TEXT(log_str(w), "+|hello 0|note 1");
    CHECK_EQ_INT(zk_client_rejoin(c, "join", "\"lobby\"", 7, count_result, &rejoined), 0);
    pump(w->loop);
    before = rejoined;
    log_clear(w);
    hold(w);
    srv_drop(w);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_RECONNECTING);
    CHECK_EQ_INT(emit(c, "note", "2"), 0);
    release(w);
    run_until_open(w, 2000);
    pump(w->loop);
    CHECK_TEXT(log_str(w), "+|hello 1|join \"lobby\"|note 2");
    CHECK(w->srv != NULL && zk_room_has(w->srv, "lobby"));
    CHECK_EQ_INT(rejoined, before + 1);
    /* again, with nothing queued */
    log_clear(w);
    srv_close(w, 4000, NULL);
    pump(w->loop);
    run_until_open(w, 20);
    pump(w->loop);
    CHECK_TEXT(log_str(w), "+|hello 1|join \"lobby\"");
    CHECK(w->srv != NULL && zk_room_has(w->srv, "lobby"));
    CHECK_EQ_INT(rejoined, before + 2);
    CHECK_EQ_INT(p.opens, 3);
    CHECK_EQ_INT(p.open_reconnect[2], 1);
    CHECK_EQ_INT(zk_client_rejoin(c, "", NULL, 0, NULL, NULL), ZK_EINVAL);
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- dedup ---------------------------------------------------------------- */

TEST(identical_calls_in_flight_share_one_request) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a[10];
    zk_call_opts co = call_opts();
    world_start(w);
    client_opts(w, &p, &o);
    c = client_open(w, &o);
    memset(a, 0, sizeof a);
    /* equal up to white space and member order */
    CHECK_EQ_INT(call(c, "echo", "{\"a\":1,\"b\":[1,2]}", NULL, &a[0]), 0);
    CHECK_EQ_INT(call(c, "echo", " { \"b\" : [ 1 , 2 ] ,\n \"a\" : 1 } ", NULL, &a[1]), 0);
    pump(w->loop);
    CHECK_EQ_INT(log_count(w, "echo"), 1);
    CHECK_OK(a[0], "{\"a\":1,\"b\":[1,2]}");
    CHECK_EQ_INT(a[1].calls, 1);
    CHECK_EQ_INT(a[1].ok, 1);
    CHECK(strcmp(a[1].value, "{\"a\":1,\"b\":[1,2]}") == 0 || strcmp(a[1].value, "{\"b\":[1,2],\"a\":1}") == 0);
    /* one after the other (not in flight together): two requests */
    CHECK_EQ_INT(call(c, "echo", "{\"a\":1,\"b\":[1,2]}", NULL, &a[2]), 0);
    pump(w->loop);
    CHECK_EQ_INT(log_count(w, "echo"), 2);
    CHECK_OK(a[2], "{\"a\":1,\"b\":[1,2]}");
    /* no_dedup */
    co.no_dedup = 1;
    CHECK_EQ_INT(call(c, "echo", "{\"x\":1}", NULL, &a[3]), 0);
    CHECK_EQ_INT(call(c, "echo", "{\"x\":1}", &co, &a[4]), 0);
    pump(w->loop);
    CHECK_EQ_INT(log_count(w, "echo"), 4);
    CHECK_OK(a[3], "{\"x\":1}");
    CHECK_OK(a[4], "{\"x\":1}");
    /* different payloads, different types */
    CHECK_EQ_INT(call(c, "echo", "{\"x\":1}", NULL, &a[5]), 0);
    CHECK_EQ_INT(call(c, "echo", "{\"x\":2}", NULL, &a[6]), 0);
    CHECK_EQ_INT(call(c, "note", "{\"x\":2}", NULL, &a[7]), 0);
    pump(w->loop);
    CHECK_EQ_INT(log_count(w, "echo"), 6);
    CHECK_EQ_INT(log_count(w, "note"), 1);
    CHECK_OK(a[5], "{\"x\":1}");
    CHECK_OK(a[6], "{\"x\":2}");
    CHECK_OK(a[7], "{\"x\":2}");
    /* a shared failure fails both, each with its own undo */
    co = call_opts();
    co.undo = on_undo;
    CHECK_EQ_INT(call(c, "fail", "{}", &co, &a[8]), 0);
    CHECK_EQ_INT(call(c, "fail", "{ }", &co, &a[9]), 0);
    pump(w->loop);
    CHECK_EQ_INT(log_count(w, "fail"), 1);
    CHECK_FAILED(a[8], "ROOM_FULL");
    CHECK_FAILED(a[9], "ROOM_FULL");
    CHECK_TEXT(a[8].order, "UD");
    CHECK_TEXT(a[9].order, "UD");
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- cache ----------------------------------------------------------------- */

TEST(cacheable_results_answer_from_the_cache_until_the_ttl) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a[8];
    zk_call_opts co = call_opts();
    zk_app_stats st;
    uint64_t in, t;
    world_start(w);
    client_opts(w, &p, &o);
    o.ping_interval_ms = 100000; /* no heartbeat in the message counts */
    c = client_open(w, &o);
    memset(a, 0, sizeof a);
    co.cacheable = 1;
    CHECK_EQ_INT(call(c, "count", "{\"k\":1}", &co, &a[0]), 0);
    pump(w->loop);
    CHECK_OK(a[0], "1");
    CHECK_EQ_INT(a[0].cached, 0);
    zk_app_get_stats(w->app, &st);
    in = st.messages_in;
    CHECK_EQ_INT(call(c, "count", " { \"k\" : 1 } ", &co, &a[1]), 0);
    pump(w->loop);
    CHECK_OK(a[1], "1");
    CHECK_EQ_INT(a[1].cached, 1);
    zk_app_get_stats(w->app, &st);
    CHECK_EQ_INT(st.messages_in, in); /* nothing on the wire */
    CHECK_EQ_INT(log_count(w, "count"), 1);
    /* a ttl of its own */
    co.cache_ttl_ms = 1000;
    CHECK_EQ_INT(call(c, "count", "{\"k\":2}", &co, &a[2]), 0);
    pump(w->loop);
    CHECK_OK(a[2], "2");
    t = now_ms(w);
    run_for(w, 999);
    CHECK_EQ_INT(call(c, "count", "{\"k\":2}", &co, &a[3]), 0);
    pump(w->loop);
    CHECK_OK(a[3], "2");
    CHECK_EQ_INT(a[3].cached, 1);
    run_for(w, 2);
    CHECK_EQ_INT(now_ms(w), t + 1001);
    CHECK_EQ_INT(call(c, "count", "{\"k\":2}", &co, &a[4]), 0);
    pump(w->loop);
    CHECK_OK(a[4], "3");
    CHECK_EQ_INT(a[4].cached, 0);
    CHECK_EQ_INT(log_count(w, "count"), 3);
    /* the default ttl (30 s) of the first entry, stored at 0 */
    co.cache_ttl_ms = 0;
    run_for(w, 29999 - now_ms(w));
    CHECK_EQ_INT(call(c, "count", "{\"k\":1}", &co, &a[5]), 0);
    pump(w->loop);
    CHECK_OK(a[5], "1");
    CHECK_EQ_INT(a[5].cached, 1);
    run_for(w, 2);
    CHECK_EQ_INT(call(c, "count", "{\"k\":1}", &co, &a[6]), 0);
    pump(w->loop);
    CHECK_OK(a[6], "4");
    CHECK_EQ_INT(a[6].cached, 0);
    CHECK_EQ_INT(log_count(w, "count"), 4);
    /* errors are not cached */
    CHECK_EQ_INT(call(c, "fail", "{}", &co, &a[7]), 0);
    pump(w->loop);
    memset(&a[7], 0, sizeof a[7]);
    CHECK_EQ_INT(call(c, "fail", "{}", &co, &a[7]), 0);
    pump(w->loop);
    CHECK_FAILED(a[7], "ROOM_FULL");
    CHECK_EQ_INT(a[7].cached, 0);
    CHECK_EQ_INT(log_count(w, "fail"), 2);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(invalidate_by_prefix_and_all) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a[10];
    zk_call_opts co = call_opts();
    world_start(w);
    client_opts(w, &p, &o);
    c = client_open(w, &o);
    memset(a, 0, sizeof a);
    co.cacheable = 1;
    CHECK_EQ_INT(zk_client_invalidate(c, NULL), 0);
    CHECK_EQ_INT(call(c, "users.get", "{\"id\":1}", &co, &a[0]), 0);
    CHECK_EQ_INT(call(c, "users.get", "{\"id\":2}", &co, &a[1]), 0);
    CHECK_EQ_INT(call(c, "rooms.get", "{}", &co, &a[2]), 0);
    pump(w->loop);
    CHECK_EQ_INT(log_count(w, "users.get") + log_count(w, "rooms.get"), 3);
    CHECK_EQ_INT(zk_client_invalidate(c, "users."), 2);
    CHECK_EQ_INT(zk_client_invalidate(c, "users."), 0);
    CHECK_EQ_INT(call(c, "users.get", "{\"id\":1}", &co, &a[3]), 0);
    CHECK_EQ_INT(call(c, "rooms.get", "{}", &co, &a[4]), 0);
    pump(w->loop);
    CHECK_EQ_INT(a[3].cached, 0);
    CHECK_EQ_INT(a[4].cached, 1);
    CHECK_EQ_INT(log_count(w, "users.get"), 3);
    CHECK_EQ_INT(log_count(w, "rooms.get"), 1);
    /* keys are "type payload", the payload written canonically */
    CHECK_EQ_INT(zk_client_invalidate(c, "rooms.get {}"), 1);
    CHECK_EQ_INT(call(c, "users.get", " { \"b\" : 2 , \"a\" : 1 } ", &co, &a[5]), 0);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_invalidate(c, "users.get {\"a\":1,\"b\":2}"), 1);
    CHECK_EQ_INT(zk_client_invalidate(c, "users.get {\"a\":1,\"b\":2}"), 0);
    /* left: users.get {"id":1} */
    CHECK_EQ_INT(call(c, "users.get", "{\"id\":3}", &co, &a[6]), 0);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_invalidate(c, NULL), 2);
    CHECK_EQ_INT(zk_client_invalidate(c, ""), 0);
    CHECK_EQ_INT(call(c, "users.get", "{\"id\":1}", &co, &a[7]), 0);
    pump(w->loop);
    CHECK_EQ_INT(a[7].calls, 1);
    CHECK_EQ_INT(a[7].cached, 0);
    CHECK_EQ_INT(zk_client_invalidate(c, ""), 1);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(cache_is_refetched_after_a_reconnect) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a[6];
    zk_call_opts co = call_opts();
    char v1[16], v2[16];
    world_start(w);
    client_opts(w, &p, &o);
    o.backoff_base_ms = 10;
    c = client_open(w, &o);
    memset(a, 0, sizeof a);
    co.cacheable = 1;
    CHECK_EQ_INT(call(c, "count", "{\"k\":1}", &co, &a[0]), 0);
    CHECK_EQ_INT(call(c, "count", "{\"k\":2}", &co, &a[1]), 0);
    pump(w->loop);
    CHECK_OK(a[0], "1");
    CHECK_OK(a[1], "2");
    log_clear(w);
    srv_drop(w);
    pump(w->loop);
    run_until_open(w, 20);
    pump(w->loop);
    /* one request for each, in the background */
    CHECK_EQ_INT(log_count(w, "count"), 2);
    CHECK(strstr(log_str(w), "count {\"k\":1}") != NULL);
    CHECK(strstr(log_str(w), "count {\"k\":2}") != NULL);
    CHECK(w->count_of[1] > 2);
    CHECK(w->count_of[2] > 2);
    CHECK_EQ_INT(a[0].calls + a[1].calls, 2); /* nobody is answered again */
    snprintf(v1, sizeof v1, "%d", w->count_of[1]);
    snprintf(v2, sizeof v2, "%d", w->count_of[2]);
    CHECK_EQ_INT(call(c, "count", "{\"k\":1}", &co, &a[2]), 0);
    CHECK_EQ_INT(call(c, "count", "{\"k\":2}", &co, &a[3]), 0);
    pump(w->loop);
    CHECK_OK(a[2], v1);
    CHECK_OK(a[3], v2);
    CHECK_EQ_INT(a[2].cached, 1);
    CHECK_EQ_INT(a[3].cached, 1);
    CHECK_EQ_INT(log_count(w, "count"), 2);
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- events ------------------------------------------------------------- */

typedef struct heard {
    char log[512];
    char payload[256];
    int payload_type;
} heard;
static heard H;

static void hear(const char *who, zk_str type, zk_value payload) {
    char t[64];
    copy_view(t, sizeof t, type);
    strncat(H.log, who, sizeof H.log - strlen(H.log) - 1);
    strncat(H.log, ":", sizeof H.log - strlen(H.log) - 1);
    strncat(H.log, t, sizeof H.log - strlen(H.log) - 1);
    strncat(H.log, " ", sizeof H.log - strlen(H.log) - 1);
    value_json(payload, H.payload, sizeof H.payload);
    H.payload_type = zk_value_type(payload);
}
static void l_a(zk_client *c, zk_str type, zk_value payload, void *user) {
    (void)c;
    hear((const char *)user, type, payload);
}
static void l_b(zk_client *c, zk_str type, zk_value payload, void *user) {
    (void)c;
    (void)user;
    hear("B", type, payload);
}
static void l_star(zk_client *c, zk_str type, zk_value payload, void *user) {
    (void)c;
    (void)user;
    hear("*", type, payload);
}
/* removes itself while the event is being delivered */
static void l_once(zk_client *c, zk_str type, zk_value payload, void *user) {
    char t[64];
    hear("1", type, payload);
    copy_view(t, sizeof t, type);
    CHECK_EQ_INT(zk_client_off(c, t, l_once, user), 0);
}

TEST(events_reach_listeners_by_type_in_order) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    world_start(w);
    client_opts(w, &p, &o);
    c = client_open(w, &o);
    memset(&H, 0, sizeof H);
    CHECK_EQ_INT(zk_client_on(c, "chat.message", l_a, (void *)"A1"), 0);
    CHECK_EQ_INT(zk_client_on(c, "chat.message", l_b, NULL), 0);
    CHECK_EQ_INT(zk_client_on(c, "chat.message", l_a, (void *)"A2"), 0);
    CHECK_EQ_INT(zk_client_on(c, NULL, l_b, NULL), ZK_EINVAL);
    CHECK_EQ_INT(zk_client_on(c, "chat.message", NULL, NULL), ZK_EINVAL);
    CHECK_EQ_INT(server_event(w, "chat.message", "{\"text\":\"hi\"}"), 1);
    pump(w->loop);
    CHECK_TEXT(H.log, "A1:chat.message B:chat.message A2:chat.message ");
    CHECK_TEXT(H.payload, "{\"text\":\"hi\"}");
    CHECK_EQ_INT(zk_client_unhandled(c), 0);
    /* nobody listens to this one */
    H.log[0] = '\0';
    CHECK_EQ_INT(server_event(w, "other", "1"), 1);
    pump(w->loop);
    CHECK_TEXT(H.log, "");
    CHECK_EQ_INT(zk_client_unhandled(c), 1);
    /* "*" hears everything, and nothing is unhandled then */
    CHECK_EQ_INT(zk_client_on(c, "*", l_star, NULL), 0);
    CHECK_EQ_INT(server_event(w, "other", NULL), 1);
    pump(w->loop);
    CHECK_TEXT(H.log, "*:other ");
    CHECK_EQ_INT(H.payload_type, ZK_TYPE_NONE);
    CHECK_EQ_INT(zk_client_unhandled(c), 1);
    H.log[0] = '\0';
    CHECK_EQ_INT(server_event(w, "chat.message", "2"), 1);
    pump(w->loop);
    CHECK(strstr(H.log, "A1:chat.message B:chat.message A2:chat.message ") != NULL);
    CHECK(strstr(H.log, "*:chat.message ") != NULL);
    CHECK_EQ_INT(strlen(H.log), strlen("A1:chat.message B:chat.message A2:chat.message *:chat.message "));
    /* off: by type, fn and user */
    CHECK_EQ_INT(zk_client_off(c, "*", l_star, NULL), 0);
    CHECK_EQ_INT(zk_client_off(c, "*", l_star, NULL), ZK_ENOTFOUND);
    CHECK_EQ_INT(zk_client_off(c, "chat.message", l_a, (void *)"A1"), 0);
    CHECK_EQ_INT(zk_client_off(c, "chat.message", l_a, (void *)"nope"), ZK_ENOTFOUND);
    CHECK_EQ_INT(zk_client_off(c, "other", l_b, NULL), ZK_ENOTFOUND);
    H.log[0] = '\0';
    CHECK_EQ_INT(server_event(w, "chat.message", "3"), 1);
    CHECK_EQ_INT(server_event(w, "other", "4"), 1);
    pump(w->loop);
    CHECK_TEXT(H.log, "B:chat.message A2:chat.message ");
    CHECK_EQ_INT(zk_client_unhandled(c), 2);
    /* a listener removing itself while the event is delivered */
    CHECK_EQ_INT(zk_client_on(c, "ev", l_once, NULL), 0);
    CHECK_EQ_INT(zk_client_on(c, "ev", l_b, NULL), 0);
    H.log[0] = '\0';
    CHECK_EQ_INT(server_event(w, "ev", "5"), 1);
    pump(w->loop);
    CHECK_EQ_INT(server_event(w, "ev", "6"), 1);
    pump(w->loop);
    CHECK_TEXT(H.log, "1:ev B:ev B:ev ");
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(failed_emits_come_back_as_error_events) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    world_start(w);
    client_opts(w, &p, &o);
    c = client_open(w, &o);
    memset(&H, 0, sizeof H);
    CHECK_EQ_INT(zk_client_on(c, "__error", l_a, (void *)"E"), 0);
    CHECK_EQ_INT(emit(c, "note", "1"), 0); /* succeeds: nothing comes back */
    pump(w->loop);
    CHECK_TEXT(H.log, "");
    CHECK_EQ_INT(emit(c, "forbid", "{}"), 0);
    pump(w->loop);
    CHECK_TEXT(H.log, "E:__error ");
    CHECK_TEXT(H.payload, "{\"code\":\"FORBIDDEN\",\"message\":\"not yours\",\"ref\":\"forbid\"}");
    H.log[0] = '\0';
    CHECK_EQ_INT(emit(c, "no.such", NULL), 0);
    pump(w->loop);
    CHECK_TEXT(H.log, "E:__error ");
    CHECK(strstr(H.payload, "\"code\":\"NOT_FOUND\"") != NULL);
    CHECK(strstr(H.payload, "\"ref\":\"no.such\"") != NULL);
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- auth ------------------------------------------------------------------ */

TEST(auth_goes_first_and_the_client_opens_after_it) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a;
    w->opts.require_auth = 1;
    world_start(w);
    client_opts(w, &p, &o);
    o.auth = " { \"token\" : \"secret\" } ";
    o.backoff_base_ms = 10;
    p.open_emit = "hello";
    w->auth_keep = 1;
    c = client_start(w, &o);
    memset(&a, 0, sizeof a);
    CHECK_EQ_INT(call(c, "echo", "1", NULL, &a), 0);
    CHECK_EQ_INT(emit(c, "note", "2"), 0);
    pump(w->loop);
    run_for(w, 1000);
    /* the connection is up, the __auth call is unanswered: not open */
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CONNECTING);
    CHECK_EQ_INT(p.opens, 0);
    CHECK_TEXT(log_str(w), "+|__auth {\"token\":\"secret\"}");
    CHECK_EQ_INT(a.calls, 0);
    CHECK_EQ_INT(w->nkept, 1);
    zk_write_str(zk_request_writer(w->kept[0]), "welcome");
    CHECK_EQ_INT(zk_request_ok(w->kept[0]), 0);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_OPEN);
    CHECK_TEXT(states_of(&p), "o");
    CHECK_TEXT(log_str(w), "+|__auth {\"token\":\"secret\"}|hello 0|echo 1|note 2");
    CHECK_OK(a, "1");
    /* and again on every reconnect, first */
    w->auth_keep = 0;
    log_clear(w);
    srv_drop(w);
    pump(w->loop);
    run_until_open(w, 20);
    pump(w->loop);
    CHECK_TEXT(log_str(w), "+|__auth {\"token\":\"secret\"}|hello 1");
    CHECK_TEXT(states_of(&p), "oro");
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(auth_goes_first_without_require_auth_too) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a;
    world_start(w);
    client_opts(w, &p, &o);
    o.auth = "{\"token\":\"secret\"}";
    c = client_start(w, &o);
    memset(&a, 0, sizeof a);
    CHECK_EQ_INT(call(c, "echo", "1", NULL, &a), 0);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_OPEN);
    CHECK_TEXT(log_str(w), "+|__auth {\"token\":\"secret\"}|echo 1");
    CHECK_OK(a, "1");
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(failed_auth_closes_the_client_without_retrying) {
    int require;
    for (require = 0; require <= 1; require++) {
        world *w = world_new();
        probe p;
        zk_client_opts o;
        zk_client *c;
        answer a;
        w->opts.require_auth = require;
        world_start(w);
        client_opts(w, &p, &o);
        o.auth = "{\"token\":\"wrong\"}";
        o.backoff_base_ms = 10;
        c = client_start(w, &o);
        memset(&a, 0, sizeof a);
        CHECK_EQ_INT(call(c, "echo", "1", NULL, &a), 0);
        pump(w->loop);
        run_for(w, 600000);
        CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CLOSED);
        CHECK_TEXT(states_of(&p), "x");
        CHECK_EQ_INT(p.opens, 0);
        CHECK(p.reason[0] != '\0');
        CHECK_EQ_INT(w->hooks, 1);
        CHECK_TEXT(log_str(w), "+|__auth {\"token\":\"wrong\"}");
        CHECK_EQ_INT(a.calls, 1);
        CHECK_EQ_INT(a.ok, 0);
        CHECK_EQ_INT(w->disconnects, 1); /* the client let go of the connection */
        world_free(w);
        CHECK_EQ_INT(a.calls, 1);
    }
    CHECK_ALL_FREED();
}

/* ---- the server's __ping ----------------------------------------------------- */

typedef struct raw_client {
    zk_conn *conn;
    int opens, closes;
    char msgs[8][256];
    int n;
} raw_client;

static void rc_open(zk_conn *c, const zk_http_request *req) {
    (void)req;
    ((raw_client *)zk_conn_data(c))->opens++;
}
static void rc_message(zk_conn *c, zk_str data, int binary) {
    raw_client *r = (raw_client *)zk_conn_data(c);
    (void)binary;
    if (r->n < 8) copy_view(r->msgs[r->n++], sizeof r->msgs[0], data);
}
static void rc_close(zk_conn *c, int code, zk_str reason, int clean) {
    raw_client *r = (raw_client *)zk_conn_data(c);
    (void)code;
    (void)reason;
    (void)clean;
    r->closes++;
    r->conn = NULL;
}

static void raw_send(world *w, raw_client *r, const char *json) {
    CHECK(r->conn != NULL);
    if (r->conn) CHECK(zk_conn_send(r->conn, json, strlen(json), 0) >= 0);
    pump(w->loop);
}

TEST(app_answers_ping_messages_with_pong_even_before_auth) {
    int require;
    for (require = 0; require <= 1; require++) {
        world *w = world_new();
        raw_client r;
        zk_conn_opts co;
        int err = 0;
        w->opts.require_auth = require;
        world_start(w);
        memset(&r, 0, sizeof r);
        memset(&co, 0, sizeof co);
        co.url = "ws://loopback/";
        co.cb.on_open = rc_open;
        co.cb.on_message = rc_message;
        co.cb.on_close = rc_close;
        co.data = &r;
        r.conn = zk_loopback_connect(zk_app_server(w->app), &co, NULL, &err);
        CHECK(r.conn != NULL);
        pump(w->loop);
        CHECK_EQ_INT(r.opens, 1);
        raw_send(w, &r, "{\"type\":\"__ping\",\"payload\":{\"t\":5,\"s\":[\"x\"]}}");
        raw_send(w, &r, "{\"type\":\"__ping\"}");
        raw_send(w, &r, "{\"payload\":17,\"type\":\"__ping\"}");
        CHECK_EQ_INT(r.n, 3);
        CHECK_TEXT(r.msgs[0], "{\"type\":\"__pong\",\"payload\":{\"t\":5,\"s\":[\"x\"]}}");
        CHECK_TEXT(r.msgs[1], "{\"type\":\"__pong\"}");
        CHECK_TEXT(r.msgs[2], "{\"type\":\"__pong\",\"payload\":17}");
        CHECK_EQ_INT(w->nlog, 1); /* "+": never routed */
        CHECK(r.conn != NULL);
        if (require) {
            /* a ping is no authentication */
            raw_send(w, &r, "{\"type\":\"echo\",\"rpcId\":\"e\"}");
            CHECK(strstr(r.msgs[3], "UNAUTHORIZED") != NULL);
            raw_send(w, &r, "{\"type\":\"__auth\",\"payload\":{\"token\":\"secret\"},\"rpcId\":\"a\"}");
            CHECK_TEXT(r.msgs[4], "{\"type\":\"__rpc_res\",\"payload\":\"welcome\",\"rpcId\":\"a\"}");
        }
        if (r.conn) zk_conn_abort(r.conn);
        world_free(w);
    }
    CHECK_ALL_FREED();
}


/* ---- more options ------------------------------------------------------------ */

TEST(no_reconnect_closes_on_the_first_drop) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a;
    world_start(w);
    client_opts(w, &p, &o);
    o.no_reconnect = 1;
    c = client_open(w, &o);
    memset(&a, 0, sizeof a);
    CHECK_EQ_INT(call(c, "slow", "1", NULL, &a), 0);
    pump(w->loop);
    srv_drop(w);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CLOSED);
    CHECK_TEXT(states_of(&p), "ox");
    CHECK_EQ_INT(a.calls, 1);
    CHECK_EQ_INT(a.ok, 0);
    run_for(w, 600000);
    CHECK_EQ_INT(w->hooks, 1);
    client_free(w);
    /* a first connect that fails */
    client_opts(w, &p, &o);
    o.no_reconnect = 1;
    w->refuse_next = 1;
    c = client_start(w, &o);
    pump(w->loop);
    run_for(w, 600000);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CLOSED);
    CHECK_TEXT(states_of(&p), "x");
    CHECK_EQ_INT(w->hooks, 2);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(params_and_headers_reach_the_connect_hook) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_http_header params[2], headers[1];
    world_start(w);
    client_opts(w, &p, &o);
    o.url = "ws://loopback/chat?room=1";
    params[0].name = zk_str_c("token");
    params[0].value = zk_str_c("a b&c=d");
    params[1].name = zk_str_c("v");
    params[1].value = zk_str_c("2");
    headers[0].name = zk_str_c("X-Token");
    headers[0].value = zk_str_c("hdr");
    o.params = params;
    o.param_count = 2;
    o.headers = headers;
    o.header_count = 1;
    client_open(w, &o);
    CHECK_TEXT(w->hook_path, "/chat");
    CHECK_TEXT(w->hook_token, "a b&c=d");
    CHECK_TEXT(w->hook_header, "hdr");
    /* the same on a reconnect */
    memset(w->hook_token, 0, sizeof w->hook_token);
    memset(w->hook_header, 0, sizeof w->hook_header);
    srv_drop(w);
    pump(w->loop);
    run_until_open(w, 2000);
    CHECK_TEXT(w->hook_token, "a b&c=d");
    CHECK_TEXT(w->hook_header, "hdr");
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(connect_timeout_fails_the_attempt) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_loopback_opts slow;
    zk_client *c;
    world_start(w);
    client_opts(w, &p, &o);
    memset(&slow, 0, sizeof slow);
    slow.delay_ms = 5000; /* the upgrade cannot finish before 10 s */
    o.loopback_fault = &slow;
    o.connect_timeout_ms = 1000;
    o.backoff_base_ms = 100000;
    c = client_start(w, &o);
    pump(w->loop);
    run_for(w, 999);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CONNECTING);
    CHECK_EQ_INT(p.opens, 0);
    run_for(w, 1);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_RECONNECTING);
    CHECK_EQ_INT(last_r(&p).at, 1000);
    CHECK(p.reason[0] != '\0');
    world_free(w);
    CHECK_ALL_FREED();
}

/* With the __auth call unanswered, the connection is given up at
   auth_timeout_ms. (What follows, another attempt or CLOSED, the header
   does not say: "its failure closes the client".) */
TEST(auth_timeout_gives_up_the_connection) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    world_start(w);
    client_opts(w, &p, &o);
    o.auth = "{\"token\":\"secret\"}";
    o.auth_timeout_ms = 700;
    o.backoff_base_ms = 100000;
    w->auth_keep = 1;
    c = client_start(w, &o);
    pump(w->loop);
    run_for(w, 699);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CONNECTING);
    CHECK_EQ_INT(w->disconnects, 0);
    run_for(w, 1);
    CHECK(zk_client_state(c) != ZK_CLIENT_CONNECTING);
    CHECK(zk_client_state(c) != ZK_CLIENT_OPEN);
    CHECK_EQ_INT(w->disconnects, 1);
    CHECK_EQ_INT(w->disconnect_at, 700);
    CHECK_EQ_INT(p.opens, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

/* A call that shares an identical one in flight still has its own
   timeout: it fails at its own deadline, and the other one's deadline does
   not end it. */
TEST(a_shared_call_keeps_its_own_timeout) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a, b, d, e;
    zk_call_opts co = call_opts();
    world_start(w);
    client_opts(w, &p, &o);
    o.call_timeout_ms = 5000;
    c = client_open(w, &o);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&d, 0, sizeof d);
    memset(&e, 0, sizeof e);
    /* a short call joins a long one */
    CHECK_EQ_INT(call(c, "slow", "1", NULL, &a), 0);
    co.timeout_ms = 100;
    CHECK_EQ_INT(call(c, "slow", "1", &co, &b), 0);
    pump(w->loop);
    run_for(w, 100);
    if (b.calls == 0) printf("  a 100 ms call sharing a 5000 ms one: no TIMEOUT at 100 ms\n");
    CHECK_FAILED(b, ZK_CODE_TIMEOUT);
    CHECK_EQ_INT(a.calls, 0);
    /* a long call joins a short one */
    CHECK_EQ_INT(call(c, "slow", "2", &co, &d), 0);
    CHECK_EQ_INT(call(c, "slow", "2", NULL, &e), 0);
    pump(w->loop);
    run_for(w, 100);
    CHECK_FAILED(d, ZK_CODE_TIMEOUT);
    if (e.calls) printf("  a 5000 ms call sharing a 100 ms one: failed at 100 ms with %s\n", e.code);
    CHECK_EQ_INT(e.calls, 0);
    /* the answers still reach the calls waiting for them (each request is
       answered with its payload: shared or not) */
    {
        int i;
        for (i = 0; i < w->nkept; i++) answer_kept(w, i, (int)w->kept_value[i]);
    }
    pump(w->loop);
    CHECK_OK(a, "1");
    CHECK_OK(e, "2");
    CHECK_EQ_INT(b.calls, 1);
    CHECK_EQ_INT(d.calls, 1);
    world_free(w);
    CHECK_ALL_FREED();
}

/* Callbacks that use the client: a call from a result, a close from a
   listener, a listener taking another one off. */
static answer chained;
static void call_again(zk_client *c, const zk_result *r, void *user) {
    on_done(c, r, user);
    CHECK_EQ_INT(call(c, "echo", "2", NULL, &chained), 0);
}
static void close_it(zk_client *c, zk_str type, zk_value payload, void *user) {
    hear("close", type, payload);
    (void)user;
    zk_client_close(c);
}
static int take_off_rc = 1;
static void take_off_b(zk_client *c, zk_str type, zk_value payload, void *user) {
    char t[64];
    int rc;
    hear("off", type, payload);
    (void)user;
    copy_view(t, sizeof t, type);
    rc = zk_client_off(c, t, l_b, NULL);
    if (take_off_rc == 1) take_off_rc = rc; /* the first time */
}

TEST(callbacks_may_call_close_and_take_listeners_off) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a, s;
    world_start(w);
    client_opts(w, &p, &o);
    c = client_open(w, &o);
    memset(&a, 0, sizeof a);
    memset(&s, 0, sizeof s);
    memset(&chained, 0, sizeof chained);
    memset(&H, 0, sizeof H);
    CHECK_EQ_INT(zk_client_call(c, "echo", "1", 1, NULL, call_again, &a), 0);
    pump(w->loop);
    CHECK_OK(a, "1");
    CHECK_OK(chained, "2");
    /* the listener after the one running is taken off */
    CHECK_EQ_INT(zk_client_on(c, "ev", take_off_b, NULL), 0);
    CHECK_EQ_INT(zk_client_on(c, "ev", l_b, NULL), 0);
    CHECK_EQ_INT(zk_client_on(c, "ev", l_a, (void *)"A"), 0);
    CHECK_EQ_INT(server_event(w, "ev", "1"), 1);
    pump(w->loop);
    CHECK_EQ_INT(take_off_rc, 0);
    /* whether B still hears the event being delivered is not specified */
    CHECK(strcmp(H.log, "off:ev A:ev ") == 0 || strcmp(H.log, "off:ev B:ev A:ev ") == 0);
    H.log[0] = '\0';
    CHECK_EQ_INT(server_event(w, "ev", "2"), 1);
    pump(w->loop);
    CHECK_TEXT(H.log, "off:ev A:ev ");
    H.log[0] = '\0';
    /* closing from a listener, with a call in flight */
    CHECK_EQ_INT(zk_client_on(c, "bye", close_it, NULL), 0);
    CHECK_EQ_INT(call(c, "slow", "1", NULL, &s), 0);
    pump(w->loop);
    CHECK_EQ_INT(server_event(w, "bye", NULL), 1);
    CHECK_EQ_INT(server_event(w, "ev", "3"), 1);
    pump(w->loop);
    CHECK_TEXT(H.log, "close:bye ");
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CLOSED);
    CHECK_FAILED(s, ZK_CODE_CLOSED);
    CHECK_EQ_INT(w->disconnect_code, 1000);
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- memory ------------------------------------------------------------------ */

TEST(free_with_pending_calls_queue_and_cache_leaks_nothing) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    answer a[6];
    zk_call_opts co = call_opts();
    int rejoined = 0, hooks;
    world_start(w);
    memset(a, 0, sizeof a);
    /* open: a cache entry, listeners, a rejoin call, calls in flight */
    client_opts(w, &p, &o);
    c = client_open(w, &o);
    co.cacheable = 1;
    CHECK_EQ_INT(call(c, "count", "{\"k\":1}", &co, &a[0]), 0);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_on(c, "chat", l_b, NULL), 0);
    CHECK_EQ_INT(zk_client_on(c, "*", l_star, NULL), 0);
    CHECK_EQ_INT(zk_client_rejoin(c, "join", "\"lobby\"", 7, count_result, &rejoined), 0);
    co = call_opts();
    co.undo = on_undo;
    CHECK_EQ_INT(call(c, "slow", "1", &co, &a[1]), 0);
    CHECK_EQ_INT(call(c, "slow", "2", NULL, &a[2]), 0);
    CHECK_EQ_INT(call(c, "slow", "2", NULL, &a[3]), 0); /* shares the one before */
    pump(w->loop);
    client_free(w);
    CHECK_FAILED(a[1], ZK_CODE_CLOSED);
    CHECK_FAILED(a[2], ZK_CODE_CLOSED);
    CHECK_FAILED(a[3], ZK_CODE_CLOSED);
    pump(w->loop);
    /* connecting: queued calls and events */
    client_opts(w, &p, &o);
    c = client_start(w, &o);
    CHECK_EQ_INT(call(c, "echo", "1", NULL, &a[4]), 0);
    CHECK_EQ_INT(emit(c, "note", "1"), 0);
    client_free(w);
    CHECK_FAILED(a[4], ZK_CODE_CLOSED);
    pump(w->loop);
    CHECK_EQ_INT(log_count(w, "echo") + log_count(w, "note"), 0);
    /* reconnecting: a timer pending */
    client_opts(w, &p, &o);
    o.backoff_base_ms = 5000;
    w->refuse_next = 1;
    c = client_start(w, &o);
    CHECK_EQ_INT(call(c, "echo", "2", NULL, &a[5]), 0);
    pump(w->loop);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_RECONNECTING);
    hooks = w->hooks;
    client_free(w);
    CHECK_FAILED(a[5], ZK_CODE_CLOSED);
    run_for(w, 600000);
    CHECK_EQ_INT(w->hooks, hooks);
    world_free(w);
    CHECK_EQ_INT(a[1].calls + a[2].calls + a[3].calls + a[4].calls + a[5].calls, 5);
    CHECK_ALL_FREED();
}

/* Every allocation of a session (the client's and the server's) fails in
   turn: connect, queued and direct calls, an event, a drop, a reconnect,
   cached calls. Nothing crashes or leaks, and every call that was accepted
   gets exactly one answer. */
TEST(each_allocation_can_fail_in_turn) {
    long k, failures = 0;
    int failed_before = test__failed_checks;
    for (k = 1; k < 20000; k++) {
        world *w = world_new();
        probe p;
        zk_client_opts o;
        zk_client *c;
        answer a[5];
        int rc[5], err = 0, i;
        zk_call_opts co = call_opts();
        int rejoined = 0, ticks = 0;
        w->opts.require_auth = 1;
        world_start(w);
        client_opts(w, &p, &o);
        o.backoff_base_ms = 10;
        o.auth = "{\"token\":\"secret\"}";
        memset(a, 0, sizeof a);
        for (i = 0; i < 5; i++) rc[i] = 1;
        lib_alloc_calls = 0;
        lib_fail_at = k;
        c = zk_client_new(w->loop, &o, &err);
        if (!c) {
            CHECK_EQ_INT(err, ZK_ENOMEM);
        } else {
            w->client = c;
            zk_client_on(c, "tick", count_event, &ticks);
            zk_client_rejoin(c, "join", "\"lobby\"", 7, count_result, &rejoined);
            rc[0] = call(c, "echo", "1", NULL, &a[0]);
            emit(c, "note", "1");
            pump(w->loop);
            co.cacheable = 1;
            rc[3] = call(c, "echo", "4", &co, &a[3]);
            co = call_opts();
            co.idempotent = 1;
            rc[1] = call(c, "echo", "2", &co, &a[1]);
            rc[2] = call(c, "echo", "3", NULL, &a[2]);
            if (w->srv) server_event(w, "tick", "{\"n\":1}");
            if (w->srv) zk_loopback_drop(w->srv);
            pump(w->loop);
            for (i = 0; i < 20; i++) run_for(w, 10);
            co = call_opts();
            co.cacheable = 1;
            rc[4] = call(c, "echo", "4", &co, &a[4]);
            pump(w->loop);
            for (i = 0; i < 5; i++) CHECK(a[i].calls <= 1);
            client_free(w);
            for (i = 0; i < 5; i++) {
                /* ZK_ECLOSED: a failure closed the client for good (the
                   server's __auth handler ran out of memory: INTERNAL) */
                int closed = rc[i] == ZK_ECLOSED && p.state == ZK_CLIENT_CLOSED;
                if (!(rc[i] == 0 || rc[i] == ZK_ENOMEM || closed))
                    printf("  allocation %ld: call %d returned %s, state %s, error \"%s\"\n", k, i,
                           zk_err_name(rc[i]), zk_client_state_name(p.state), p.reason);
                CHECK(rc[i] == 0 || rc[i] == ZK_ENOMEM || closed);
                CHECK_EQ_INT(a[i].calls, rc[i] == 0 ? 1 : 0);
            }
        }
        world_free(w);
        lib_fail_at = 0;
        CHECK_ALL_FREED();
        if (test__failed_checks != failed_before) {
            printf("  (allocation %ld failed)\n", k);
            break;
        }
        if (lib_alloc_calls < k) break; /* every allocation has failed once */
        failures++;
    }
    lib_fail_at = 0;
    CHECK(failures > 20);
    if (getenv("TEST_VERBOSE")) printf("  %ld allocations failed in turn\n", failures);
}

static void count_any_result(zk_client *c, const zk_result *r, void *user) {
    (void)c, (void)r;
    (*(int *)user)++;
}

/* Every allocation of a reconnect fails in turn: a client that says it is
   open again has had its rejoin answered (ok or not), never skipped it
   silently, which would leave it out of its room unknowingly. */
TEST(reconnect_never_skips_a_rejoin_silently) {
    long k, failures = 0;
    int failed_before = test__failed_checks;
    for (k = 1; k < 5000; k++) {
        world *w = world_new();
        probe p;
        zk_client_opts o;
        zk_client *c;
        int err = 0, results = 0, i;
        world_start(w);
        client_opts(w, &p, &o);
        o.backoff_base_ms = 10;
        c = zk_client_new(w->loop, &o, &err);
        CHECK(c != NULL);
        if (!c) {
            world_free(w);
            break;
        }
        w->client = c;
        CHECK_EQ_INT(zk_client_rejoin(c, "join", "\"lobby\"", 7, count_any_result, &results), 0);
        run_until_open(w, 1000);
        pump(w->loop);
        CHECK_EQ_INT(results, 1);
        results = 0;
        lib_alloc_calls = 0;
        lib_fail_at = k;
        if (w->srv) zk_loopback_drop(w->srv);
        for (i = 0; i < 100; i++) run_for(w, 10);
        if (p.state == ZK_CLIENT_OPEN) {
            if (results < 1) printf("  allocation %ld: open again without its rejoin answered\n", k);
            CHECK(results >= 1);
        }
        client_free(w);
        world_free(w);
        lib_fail_at = 0;
        CHECK_ALL_FREED();
        if (test__failed_checks != failed_before) break;
        if (lib_alloc_calls < k) break; /* every allocation has failed once */
        failures++;
    }
    lib_fail_at = 0;
    CHECK(failures > 10);
    if (getenv("TEST_VERBOSE")) printf("  %ld allocations failed in turn\n", failures);
}

/* A MessagePack client, a server that does not select zocket.msgpack: the
   client ends (1008, with its own reason), never speaking the wrong codec. */
TEST(msgpack_client_refuses_a_server_without_msgpack) {
    world *w = world_new();
    probe p;
    zk_client_opts o;
    zk_client *c;
    int code = 0;
    w->opts.codecs = ZK_APP_JSON;
    world_start(w);
    client_opts(w, &p, &o);
    o.codec = ZK_CODEC_MSGPACK;
    c = client_start(w, &o);
    run_for(w, 100);
    CHECK_EQ_INT(zk_client_state(c), ZK_CLIENT_CLOSED);
    CHECK(strstr(zk_client_error(c, &code), "does not speak zocket.msgpack") != NULL);
    CHECK_EQ_INT(code, ZK_CLOSE_POLICY);
    CHECK_EQ_INT(p.opens, 0);
    CHECK_EQ_INT(zk_client_call(c, "echo", "1", 1, NULL, NULL, NULL), ZK_ECLOSED);
    world_free(w);
}

int main(void) {
    (void)guard_alloc;
    (void)guard_free;
    setvbuf(stdout, NULL, _IOLBF, 0); /* what ran is seen even if a sanitizer aborts */
    if (getenv("ZK_TEST_CODEC") && strcmp(getenv("ZK_TEST_CODEC"), "msgpack") == 0) test_codec = ZK_CODEC_MSGPACK;
    printf("codec: %s\n", test_codec == ZK_CODEC_MSGPACK ? "msgpack" : "json");
    RUN(state_names_and_accessors);
    RUN(new_refuses_bad_options);
    RUN(msgpack_client_refuses_a_server_without_msgpack);
    RUN(drop_and_abort_reconnect_and_close_ends_it);
    RUN(close_codes_that_stop_the_client);
    RUN(final_close_fails_calls_in_flight_with_closed);
    RUN(close_codes_that_reconnect);
    RUN(close_while_reconnecting_stops_the_attempts);
    RUN(close_sends_what_is_queued_and_fails_pending_calls);
    RUN(backoff_waits_are_full_jitter_under_the_cap);
    RUN(backoff_schedule_is_reproducible_with_a_seed);
    RUN(max_attempts_ends_in_closed);
    RUN(attempts_reset_once_a_connection_stays_open_stable_ms);
    RUN(first_attempt_after_a_server_restart_is_spread);
    RUN(server_shutdown_is_going_away_and_the_client_keeps_trying);
    RUN(heartbeat_detects_a_silent_connection);
    RUN(heartbeat_keeps_a_healthy_connection_open);
    RUN(heartbeat_counts_received_data_as_life);
    RUN(call_results_and_server_errors);
    RUN(call_timeouts_per_call_and_default_and_late_answers);
    RUN(calls_in_flight_on_a_drop_fail_or_are_resent_when_idempotent);
    RUN(undo_runs_before_done_only_when_a_call_fails);
    RUN(pending_calls_are_limited_by_max_pending);
    RUN(offline_queue_goes_out_in_order_once_open);
    RUN(refused_upgrades_end_the_client_or_are_retried_by_status);
    RUN(on_state_hears_open_after_the_queue_went_out);
    RUN(a_queued_call_that_timed_out_is_never_sent);
    RUN(offline_queue_limits_refuse_at_once);
    RUN(on_open_then_rejoin_then_queue_on_every_reconnect);
    RUN(identical_calls_in_flight_share_one_request);
    RUN(cacheable_results_answer_from_the_cache_until_the_ttl);
    RUN(invalidate_by_prefix_and_all);
    RUN(cache_is_refetched_after_a_reconnect);
    RUN(events_reach_listeners_by_type_in_order);
    RUN(failed_emits_come_back_as_error_events);
    RUN(auth_goes_first_and_the_client_opens_after_it);
    RUN(auth_goes_first_without_require_auth_too);
    RUN(failed_auth_closes_the_client_without_retrying);
    RUN(app_answers_ping_messages_with_pong_even_before_auth);
    RUN(no_reconnect_closes_on_the_first_drop);
    RUN(params_and_headers_reach_the_connect_hook);
    RUN(connect_timeout_fails_the_attempt);
    RUN(auth_timeout_gives_up_the_connection);
    RUN(a_shared_call_keeps_its_own_timeout);
    RUN(free_with_pending_calls_queue_and_cache_leaks_nothing);
    RUN(each_allocation_can_fail_in_turn);
    RUN(reconnect_never_skips_a_rejoin_silently);
    /* last: a crash here (ASan) would hide the results of the others */
    RUN(callbacks_may_call_close_and_take_listeners_off);
    return test_summary();
}
