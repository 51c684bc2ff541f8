/* libFuzzer harness for what other nodes send through a broker: the
   adapter's message format (zk__bmsg_parse), its duplicate window, hello
   and replay, holds and their release, and delivery to local members.

   Anyone who can publish on the broker's channels can send these bytes, so
   they are as hostile as a client's. Per input: a fresh app on a virtual
   clock with three members (in rooms "a", "b" and both) over loopback, and
   a broker to a closed local port (it never connects; its ring holds what
   this node publishes). The input is a list of records, each a 2-byte
   big-endian length and that many bytes; a record's first byte chooses:
   0-199 the bytes go to the adapter as a message from the broker; 200-219
   this node publishes to room "a" (its ring fills); 220-239 the node
   behaves as after a reconnect (holds every known node); 240-255 the
   virtual clock moves by (byte - 239) x 200 ms (holds run out).
   Aborts when:
   - a member gets something that is not a JSON object with a string
     "type" (the adapter delivers only payloads that parse);
   - a member gets more messages from other nodes than there were distinct
     (node, seq) messages fed to it;
   - the broker's counters disagree: delivered is not the sum of what
     reached members, or the ring holds more than its limit;
   - memory is left when the app is freed (every held message, ring entry
     and origin is freed). */
#define _GNU_SOURCE /* the library's includes: before any system header */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    fprintf(stderr, "fuzz_broker: invariant broken at line %d: %s\n", __LINE__, #c); \
    abort(); } } while (0)

#define MEMBERS 3
#define MAX_KEYS 4096

typedef struct member {
    zk_conn *client;
    zk_conn *server;
    unsigned long got;
} member;

static member members[MEMBERS];
static int nserver;
static zk_doc doc;

static void on_client_message(zk_conn *c, zk_str data, int binary) {
    member *m = (member *)zk_conn_data(c);
    char *copy = (char *)malloc(data.len + 1);
    zk_value root;
    CHECK(!binary);
    CHECK(copy != NULL);
    memcpy(copy, data.ptr, data.len);
    CHECK(zk_json_parse(&doc, copy, data.len) == ZK_OK);
    root = zk_doc_root(&doc);
    CHECK(zk_value_type(root) == ZK_TYPE_OBJECT);
    CHECK(zk_value_type(zk_value_get(root, "type")) == ZK_TYPE_STRING);
    free(copy);
    m->got++;
}

static int on_connect(zk_conn *c, const zk_http_request *req, void **ctx) {
    (void)req;
    (void)ctx;
    if (nserver < MEMBERS) members[nserver++].server = c;
    return 0;
}

static void h_none(zk_request *req) { (void)req; }

/* (node, seq) pairs fed, to count the distinct ones */
static char keys[MAX_KEYS][40];
static size_t nkeys;

static void remember(const char *body, size_t len) {
    zk__bmsg m;
    char *copy = (char *)malloc(len ? len : 1);
    size_t i;
    CHECK(copy != NULL);
    if (len) memcpy(copy, body, len);
    if (zk__bmsg_parse(copy, len, &m) == 0 && m.kind == 'M' && nkeys < MAX_KEYS) {
        char k[40];
        snprintf(k, sizeof k, "%.16s %llu", m.node, (unsigned long long)m.seq);
        for (i = 0; i < nkeys && strcmp(keys[i], k) != 0; i++) {
        }
        if (i == nkeys) memcpy(keys[nkeys++], k, sizeof k);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    zk_loop_opts lo;
    zk_loop *loop;
    zk_router *router;
    zk_app_opts ao;
    zk_app *app;
    zk_broker_opts bo;
    zk_broker *b;
    zk_broker_stats st;
    int err, i;
    size_t at = 0;
    unsigned long total = 0, local = 0;
    static const char *ra = "a";
    long live0 = lib_live;

    memset(&lo, 0, sizeof lo);
    lo.virtual_clock = 1;
    lo.seed = 7;
    loop = zk_loop_new(&lo);
    router = zk_router_new();
    CHECK(loop && router);
    CHECK(zk_router_on(router, "x", h_none, NULL) == 0);
    memset(&ao, 0, sizeof ao);
    ao.router = router;
    ao.on_connect = on_connect;
    app = zk_app_new(loop, &ao, &err);
    CHECK(app != NULL);
    memset(&bo, 0, sizeof bo);
    bo.url = "redis://127.0.0.1:1";
    bo.max_queue = 16;
    bo.hold_ms = 500;
    b = zk_broker_new(app, &bo, &err);
    CHECK(b != NULL);
    nserver = 0;
    nkeys = 0;
    memset(members, 0, sizeof members);
    for (i = 0; i < MEMBERS; i++) {
        zk_conn_opts co;
        memset(&co, 0, sizeof co);
        co.url = "ws://loopback/";
        co.cb.on_message = on_client_message;
        co.data = &members[i];
        members[i].client = zk_loopback_connect(zk_app_server(app), &co, NULL, &err);
        CHECK(members[i].client != NULL);
    }
    zk_loop_advance(loop, 1);
    CHECK(nserver == MEMBERS);
    CHECK(zk_room_join(members[0].server, "a") == 0);
    CHECK(zk_room_join(members[1].server, "b") == 0);
    CHECK(zk_room_join(members[2].server, "a") == 0);
    CHECK(zk_room_join(members[2].server, "b") == 0);

    while (size - at >= 2) {
        size_t n = ((size_t)data[at] << 8) | data[at + 1];
        const uint8_t *rec = data + at + 2;
        at += 2;
        if (n > size - at) n = size - at;
        at += n;
        if (!n) continue;
        if (rec[0] < 200) {
            char *copy = (char *)malloc(n);
            CHECK(copy != NULL);
            memcpy(copy, rec, n);
            remember(copy, n);
            zk__broker_incoming(b, copy, n);
            free(copy);
        } else if (rec[0] < 220) {
            zk_target t;
            zk_writer *w = zk_app_message(app, "pub");
            zk_write_int(w, (int64_t)n);
            memset(&t, 0, sizeof t);
            t.rooms = &ra;
            t.room_count = 1;
            err = zk_app_send(app, &t);
            CHECK(err == 2 || err == ZK_ENOSPACE);
            if (err == 2) local++;
        } else if (rec[0] < 240) {
            zk__broker_hold_all(b, zk_loop_now(loop) + 500);
        } else {
            zk_loop_advance(loop, (uint64_t)(rec[0] - 239) * 200);
        }
        zk_loop_advance(loop, 0);
    }
    zk_loop_advance(loop, 10000); /* every hold runs out */
    zk_broker_get_stats(b, &st);
    CHECK(st.kept <= 16);
    for (i = 0; i < MEMBERS; i++) total += members[i].got;
    /* local publishes reach members 0 and 2 directly */
    CHECK(st.delivered <= total);
    for (i = 0; i < MEMBERS; i++) /* 0 and 2 are in "a": they get this node's own sends */
        CHECK(members[i].got - (i == 1 ? 0 : local) <= nkeys || nkeys == MAX_KEYS);
    CHECK(st.received <= nkeys || nkeys == MAX_KEYS);
    zk_app_free(app);
    zk_router_free(router);
    zk_loop_free(loop);
    zk_doc_free(&doc);
    CHECK(lib_live == live0);
    return 0;
}
