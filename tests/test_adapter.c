/* Unit tests for the broker adapter's logic between nodes, with no broker:
   messages from other nodes are handed to the adapter as its connection
   would (zk__broker_incoming), on a virtual clock, and what this node's
   members get is checked message by message: one delivery per recipient
   whatever the number of copies and rooms, `except` across nodes, the
   duplicate window, holds after a reconnect released by the other node's
   "replayed" marker or by the clock (in seq order either way), replays for
   other nodes ignored, malformed or foreign messages refused. The adapter's
   broker URL points at a closed local port: it never connects, and what
   this node publishes stays in its ring (ZK_ENOSPACE when full). The real
   brokers are in test_cluster.c. */
#define _DEFAULT_SOURCE
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"
#include "test.h"

#define MEMBERS 4
#define NODE_A "0123456789abcdef"
#define NODE_B "fedcba9876543210"

typedef struct member {
    zk_conn *client, *server;
    char msgs[64][160];
    int n;
} member;

static zk_loop *loop;
static zk_router *router;
static zk_app *app;
static zk_broker *broker;
static member mem[MEMBERS];
static int nserver;

static void on_msg(zk_conn *c, zk_str d, int binary) {
    member *m = (member *)zk_conn_data(c);
    (void)binary;
    if (m->n < 64) snprintf(m->msgs[m->n], sizeof m->msgs[0], "%.*s", (int)d.len, d.ptr);
    m->n++;
}

static int on_connect(zk_conn *c, const zk_http_request *req, void **ctx) {
    (void)req;
    (void)ctx;
    if (nserver < MEMBERS) mem[nserver++].server = c;
    return 0;
}

static void h_none(zk_request *r) { (void)r; }

/* Members 0: room a; 1: room b; 2: a and b; 3: none. */
static void setup(size_t max_queue) {
    zk_loop_opts lo;
    zk_app_opts ao;
    zk_broker_opts bo;
    int err, i;
    memset(&lo, 0, sizeof lo);
    lo.virtual_clock = 1;
    lo.seed = 3;
    loop = zk_loop_new(&lo);
    router = zk_router_new();
    zk_router_on(router, "x", h_none, NULL);
    memset(&ao, 0, sizeof ao);
    ao.router = router;
    ao.on_connect = on_connect;
    app = zk_app_new(loop, &ao, &err);
    memset(&bo, 0, sizeof bo);
    bo.url = "redis://127.0.0.1:1";
    bo.hold_ms = 1000;
    bo.max_queue = max_queue;
    broker = zk_broker_new(app, &bo, &err);
    CHECK(broker != NULL);
    memset(mem, 0, sizeof mem);
    nserver = 0;
    for (i = 0; i < MEMBERS; i++) {
        zk_conn_opts co;
        memset(&co, 0, sizeof co);
        co.url = "ws://loopback/";
        co.cb.on_message = on_msg;
        co.data = &mem[i];
        mem[i].client = zk_loopback_connect(zk_app_server(app), &co, NULL, &err);
    }
    zk_loop_advance(loop, 1);
    CHECK_EQ_INT(nserver, MEMBERS);
    CHECK_EQ_INT(zk_room_join(mem[0].server, "a"), 0);
    CHECK_EQ_INT(zk_room_join(mem[1].server, "b"), 0);
    CHECK_EQ_INT(zk_room_join(mem[2].server, "a"), 0);
    CHECK_EQ_INT(zk_room_join(mem[2].server, "b"), 0);
}

static void teardown(void) {
    zk_app_free(app);
    zk_router_free(router);
    zk_loop_free(loop);
}

/* A message of node with seq to rooms (space-separated, "" for none). */
static unsigned feed_age; /* ms the next message spent before reaching us */

static void feed_msg(const char *node, int replay, unsigned seq, const char *rooms, int flags,
                     const char *except, const char *ids, const char *payload) {
    char body[1024], list[512] = "";
    char tmp[256];
    int nrooms = 0, nids = 0;
    const char *p;
    for (p = rooms; *p;) {
        size_t n = strcspn(p, " ");
        snprintf(tmp, sizeof tmp, "%u:%.*s", (unsigned)n, (int)n, p);
        strcat(list, tmp);
        nrooms++;
        p += n;
        while (*p == ' ') p++;
    }
    for (p = ids; *p;) {
        size_t n = strcspn(p, " ");
        snprintf(tmp, sizeof tmp, "%u:%.*s", (unsigned)n, (int)n, p);
        strcat(list, tmp);
        nids++;
        p += n;
        while (*p == ' ') p++;
    }
    snprintf(body, sizeof body, "ZK1 M %s %c %010u %u %d %s %d %d\n%s4:chat%s", node, replay ? 'P' : 'L', feed_age,
             seq, flags, except ? except : "-", nrooms, nids, list, payload);
    zk__broker_incoming(broker, body, strlen(body));
    zk_loop_advance(loop, 0);
}

static void feed(const char *node, unsigned seq, const char *rooms, const char *payload) {
    feed_msg(node, 0, seq, rooms, 0, NULL, "", payload);
}

static void feed_raw(const char *text) {
    char body[512];
    size_t n = strlen(text);
    memcpy(body, text, n);
    zk__broker_incoming(broker, body, n);
    zk_loop_advance(loop, 0);
}

static zk_broker_stats stats(void) {
    zk_broker_stats s;
    zk_broker_get_stats(broker, &s);
    return s;
}

TEST(one_delivery_per_recipient_whatever_the_copies) {
    setup(0);
    /* the copy for room a, then the copy for room b, of one message */
    feed(NODE_A, 1, "a b", "1");
    feed(NODE_A, 1, "a b", "1");
    CHECK_EQ_INT(mem[0].n, 1);
    CHECK_EQ_INT(mem[1].n, 1);
    CHECK_EQ_INT(mem[2].n, 1);
    CHECK_EQ_INT(mem[3].n, 0);
    CHECK(strcmp(mem[2].msgs[0], "{\"type\":\"chat\",\"payload\":1}") == 0);
    CHECK_EQ_INT(stats().received, 1);
    CHECK_EQ_INT(stats().delivered, 3);
    CHECK_EQ_INT(stats().duplicates, 1);
    CHECK_EQ_INT(stats().nodes, 1);
    teardown();
}

TEST(everyone_ids_and_except_across_nodes) {
    char ids[64];
    setup(0);
    /* everyone but member 1 */
    feed_msg(NODE_A, 0, 1, "", 1, zk_conn_id(mem[1].server), "", "{\"x\":true}");
    CHECK_EQ_INT(mem[0].n, 1);
    CHECK_EQ_INT(mem[1].n, 0);
    CHECK_EQ_INT(mem[2].n, 1);
    CHECK_EQ_INT(mem[3].n, 1);
    /* ids: member 3 and one that lives elsewhere */
    snprintf(ids, sizeof ids, "%s %s", zk_conn_id(mem[3].server), "AAAAAAAAAAAAAAAAAAAAAA");
    feed_msg(NODE_A, 0, 2, "", 0, NULL, ids, "");
    CHECK_EQ_INT(mem[3].n, 2);
    CHECK(strcmp(mem[3].msgs[1], "{\"type\":\"chat\"}") == 0);
    CHECK_EQ_INT(mem[0].n, 1);
    teardown();
}

TEST(duplicate_window_and_order_of_arrival) {
    setup(0);
    feed(NODE_A, 3, "a", "3");
    feed(NODE_A, 2, "a", "2"); /* before the first heard of: not ours */
    feed(NODE_A, 5, "a", "5");
    feed(NODE_A, 4, "a", "4"); /* older, never seen: delivered */
    feed(NODE_A, 4, "a", "4"); /* now seen */
    feed(NODE_A, 5, "a", "5");
    feed(NODE_A, 2000, "a", "2000");
    feed(NODE_A, 900, "a", "900"); /* more than 1024 behind: counts as seen */
    CHECK_EQ_INT(mem[0].n, 4);
    CHECK(strstr(mem[0].msgs[2], "\"payload\":4") != NULL);
    CHECK_EQ_INT(stats().duplicates, 4);
    /* seqs of different nodes do not mix */
    feed(NODE_B, 5, "a", "5");
    CHECK_EQ_INT(mem[0].n, 5);
    CHECK_EQ_INT(stats().nodes, 2);
    teardown();
}

TEST(hold_after_reconnect_released_by_marker_in_order) {
    int i;
    char marker[64];
    setup(0);
    feed(NODE_A, 10, "a", "10");
    CHECK_EQ_INT(mem[0].n, 1);
    zk__broker_hold_all(broker, zk_loop_now(loop) + 1000); /* as when the subscriber reconnects */
    feed(NODE_A, 20, "a", "20");                          /* live, after the gap */
    for (i = 11; i < 20; i++) {
        char p[16];
        snprintf(p, sizeof p, "%d", i);
        feed_msg(NODE_A, 1, (unsigned)i, "a", 0, NULL, "", p); /* the replay */
    }
    feed_msg(NODE_A, 1, 15, "a", 0, NULL, "", "15");          /* a replay twice */
    CHECK_EQ_INT(mem[0].n, 1);                                /* all held */
    snprintf(marker, sizeof marker, "ZK1 R %s 20 %s\n", NODE_A, zk_broker_node(broker));
    feed_raw(marker);
    CHECK_EQ_INT(mem[0].n, 11);
    for (i = 1; i < 11; i++) {
        char want[64];
        snprintf(want, sizeof want, "{\"type\":\"chat\",\"payload\":%d}", 10 + i);
        CHECK(strcmp(mem[0].msgs[i], want) == 0);
    }
    CHECK_EQ_INT(stats().duplicates, 1);
    /* a marker for another node releases nothing */
    zk__broker_hold_all(broker, zk_loop_now(loop) + 1000);
    feed(NODE_A, 22, "a", "22");
    snprintf(marker, sizeof marker, "ZK1 R %s 22 %s\n", NODE_A, NODE_B);
    feed_raw(marker);
    CHECK_EQ_INT(mem[0].n, 11);
    teardown();
}

TEST(hold_runs_out_and_delivers_in_order) {
    setup(0);
    feed(NODE_B, 1, "b", "1");
    zk__broker_hold_all(broker, zk_loop_now(loop) + 1000);
    feed(NODE_B, 4, "b", "4");
    feed_msg(NODE_B, 1, 3, "b", 0, NULL, "", "3");
    feed_msg(NODE_B, 1, 2, "b", 0, NULL, "", "2");
    zk_loop_advance(loop, 999);
    CHECK_EQ_INT(mem[1].n, 1);
    zk_loop_advance(loop, 1);
    CHECK_EQ_INT(mem[1].n, 4);
    CHECK(strstr(mem[1].msgs[1], ":2}") && strstr(mem[1].msgs[2], ":3}") && strstr(mem[1].msgs[3], ":4}"));
    teardown();
}

TEST(late_joiners_do_not_get_older_messages) {
    setup(0);
    zk_loop_advance(loop, 3000);
    CHECK_EQ_INT(zk_room_join(mem[3].server, "a"), 0); /* member 3 joins a at t = 3001 */
    zk_loop_advance(loop, 500);
    feed_age = 2000; /* sent at t = 1501 (queued, or replayed): well before member 3 joined */
    feed(NODE_A, 1, "a", "1");
    CHECK_EQ_INT(mem[0].n, 1);
    CHECK_EQ_INT(mem[2].n, 1);
    CHECK_EQ_INT(mem[3].n, 0);
    feed_age = 1300; /* t = 2201: 800 ms before the join, within the slack (send times are estimates) */
    feed(NODE_A, 2, "a", "2");
    CHECK_EQ_INT(mem[3].n, 1);
    /* everyone: those connected by then (all of them, at t = 0) */
    feed_age = 3400;
    feed_msg(NODE_A, 0, 3, "", 1, NULL, "", "");
    CHECK_EQ_INT(mem[0].n, 3);
    CHECK_EQ_INT(mem[3].n, 2);
    feed_age = 0;
    /* and an except id that starts with '-' is an id, not "none" */
    {
        char body[160];
        snprintf(body, sizeof body, "ZK1 M %s L 0000000000 5 0 -%.21s 1 0\n1:a4:chat", NODE_A, "AAAAAAAAAAAAAAAAAAAAA");
        feed_raw(body);
        CHECK_EQ_INT(stats().invalid, 0);
        CHECK_EQ_INT(mem[0].n, 4);
        CHECK_EQ_INT(mem[1].n, 1);
    }
    teardown();
}

TEST(replays_for_other_nodes_are_ignored) {
    setup(0);
    feed(NODE_A, 7, "a", "7");
    feed_msg(NODE_A, 1, 6, "a", 0, NULL, "", "6"); /* another node asked for it */
    feed_msg(NODE_A, 1, 8, "a", 0, NULL, "", "8"); /* newer than we saw: ours too */
    CHECK_EQ_INT(mem[0].n, 2);
    CHECK(strstr(mem[0].msgs[1], ":8}") != NULL);
    teardown();
}

TEST(own_foreign_and_malformed_messages) {
    char own[128];
    setup(0);
    snprintf(own, sizeof own, "ZK1 M %s L 0000000000 1 0 - 1 0\n1:a4:chat1", zk_broker_node(broker));
    feed_raw(own);
    CHECK_EQ_INT(mem[0].n, 0);
    CHECK_EQ_INT(stats().duplicates, 1);
    feed_raw("hello from someone else");
    feed_raw("ZK1 M " NODE_A " L 0000000000 1 0 - 1 0\n1:a4:chat{\"unclosed\":");
    feed_raw("ZK1 M " NODE_A " L 0000000000 0 0 - 1 0\n1:a4:chat1");      /* seq 0 */
    feed_raw("ZK1 M " NODE_A " L 0000000000 2 8 - 1 0\n1:a4:chat1");      /* flags */
    feed_raw("ZK1 M " NODE_A " L 0000000000 3 0 - 1 0\n9:a4:chat1");      /* a length past the end */
    feed_raw("ZK1 M " NODE_A " L 0000000000 4 0 - 0 0\n0:");              /* no type */
    feed_raw("ZK1 M 0123456789ABCDEF L 0000000000 5 0 - 1 0\n1:a4:chat1"); /* upper-case hex */
    CHECK_EQ_INT(mem[0].n, 0);
    CHECK_EQ_INT(stats().invalid, 7);
    teardown();
}

TEST(ring_full_refuses_before_delivering) {
    const char *room = "a";
    zk_target t;
    int i, rc = 0;
    setup(4);
    memset(&t, 0, sizeof t);
    t.rooms = &room;
    t.room_count = 1;
    for (i = 0; i < 4; i++) {
        zk_app_message(app, "m");
        CHECK_EQ_INT(zk_app_send(app, &t), 2);
    }
    zk_app_message(app, "m");
    rc = zk_app_send(app, &t);
    CHECK_EQ_INT(rc, ZK_ENOSPACE);
    zk_loop_advance(loop, 0);
    CHECK_EQ_INT(mem[0].n, 4);
    CHECK_EQ_INT(stats().refused, 1);
    CHECK_EQ_INT(stats().queued, 4);
    CHECK_EQ_INT(stats().kept, 4);
    /* local-only sends do not need the ring */
    t.rooms = NULL;
    t.room_count = 0;
    t.conns = &mem[3].server;
    t.conn_count = 1;
    zk_app_message(app, "m");
    CHECK_EQ_INT(zk_app_send(app, &t), 1);
    teardown();
}

TEST(rooms_follow_local_members) {
    setup(0);
    CHECK_EQ_INT(stats().rooms, 2);
    CHECK_EQ_INT(zk_room_leave(mem[0].server, "a"), 0);
    CHECK_EQ_INT(stats().rooms, 2);
    CHECK_EQ_INT(zk_room_leave(mem[2].server, "a"), 0);
    CHECK_EQ_INT(stats().rooms, 1);
    zk_conn_close(mem[1].client, 1000, NULL);
    zk_conn_close(mem[2].client, 1000, NULL);
    zk_loop_advance(loop, 100);
    CHECK_EQ_INT(stats().rooms, 0);
    teardown();
}

TEST(urls_and_options) {
    zk_loop *l = zk_loop_new(NULL);
    zk_router *r = zk_router_new();
    zk_app_opts ao;
    zk_app *a;
    zk_broker_opts bo;
    zk_broker *b;
    int err, i;
    static const char *bad[] = {"http://x", "redis://:", "redis://127.0.0.1:0", "redis://127.0.0.1:65536",
                                "redis://127.0.0.1:12x", "nats://127.0.0.1/0", "redis://%zz@127.0.0.1",
                                "redis://[::1", "redis://127.0.0.1:6379?x=1", "redis://%00@127.0.0.1"};
    static const char *good[] = {"redis://", "redis://127.0.0.1", "redis://:p%40ss@127.0.0.1:6380", "redis://u:p@localhost/0",
                                 "nats://tok@127.0.0.1", "nats://u:p@[::1]:4223", "nats://127.0.0.1:4222"};
    zk_router_on(r, "x", h_none, NULL);
    memset(&ao, 0, sizeof ao);
    ao.router = r;
    a = zk_app_new(l, &ao, &err);
    for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        memset(&bo, 0, sizeof bo);
        bo.url = bad[i];
        b = zk_broker_new(a, &bo, &err);
        if (b) printf("  accepted %s\n", bad[i]);
        CHECK(b == NULL);
        zk_broker_free(b);
        CHECK(err == ZK_EINVAL || err == ZK_ENOTFOUND);
    }
    for (i = 0; i < (int)(sizeof good / sizeof good[0]); i++) {
        memset(&bo, 0, sizeof bo);
        bo.url = good[i];
        b = zk_broker_new(a, &bo, &err);
        if (!b) printf("  refused %s (%d)\n", good[i], err);
        CHECK(b != NULL);
        if (!b) continue;
        CHECK(zk_app_broker(a) == b);
        CHECK_EQ_INT(zk_broker_state(b), ZK_BROKER_CONNECTING);
        CHECK_EQ_INT(strlen(zk_broker_node(b)), 16);
        zk_broker_free(b);
        CHECK(zk_app_broker(a) == NULL);
    }
    memset(&bo, 0, sizeof bo);
    bo.url = "redis://127.0.0.1";
    bo.prefix = "bad.prefix";
    CHECK(zk_broker_new(a, &bo, &err) == NULL);
    bo.prefix = "good_prefix-1";
    b = zk_broker_new(a, &bo, &err);
    CHECK(b != NULL);
    CHECK(zk_broker_new(a, &bo, &err) == NULL); /* one per app */
    CHECK_EQ_INT(err, ZK_EINVAL);
    CHECK(strcmp(zk_broker_state_name(ZK_BROKER_RECONNECTING), "reconnecting") == 0);
    zk_app_free(a); /* frees the broker too */
    zk_router_free(r);
    zk_loop_free(l);
}

TEST(msgpack_members_get_remote_messages_in_msgpack) {
    static const char *const mp[] = {ZK_PROTOCOL_MSGPACK};
    member extra;
    zk_conn_opts co;
    int err;
    setup(0);
    memset(&extra, 0, sizeof extra);
    memset(&co, 0, sizeof co);
    co.url = "ws://loopback/";
    co.protocols = mp;
    co.protocol_count = 1;
    co.cb.on_message = on_msg;
    co.data = &extra;
    nserver = MEMBERS - 1; /* the hook records the new server end in mem[3] */
    extra.client = zk_loopback_connect(zk_app_server(app), &co, NULL, &err);
    zk_loop_advance(loop, 1);
    CHECK(extra.client != NULL);
    CHECK_EQ_INT(zk_conn_codec(mem[3].server), ZK_CODEC_MSGPACK);
    CHECK_EQ_INT(zk_room_join(mem[3].server, "a"), 0);
    feed(NODE_A, 1, "a", "{\"k\":[1,2]}");
    CHECK_EQ_INT(mem[0].n, 1);
    CHECK(strcmp(mem[0].msgs[0], "{\"type\":\"chat\",\"payload\":{\"k\":[1,2]}}") == 0);
    CHECK_EQ_INT(extra.n, 1);
    /* {"type":"chat","payload":{"k":[1,2]}} as MessagePack */
    CHECK(memcmp(extra.msgs[0], "\x82\xa4" "type" "\xa4" "chat" "\xa7" "payload" "\x81\xa1" "k" "\x92\x01\x02", 26) == 0);
    zk_conn_close(extra.client, 1000, NULL);
    zk_loop_advance(loop, 10);
    teardown();
}

int main(void) {
    (void)guard_alloc; /* test.h's, not needed here */
    (void)guard_free;
    RUN(one_delivery_per_recipient_whatever_the_copies);
    RUN(everyone_ids_and_except_across_nodes);
    RUN(duplicate_window_and_order_of_arrival);
    RUN(hold_after_reconnect_released_by_marker_in_order);
    RUN(hold_runs_out_and_delivers_in_order);
    RUN(late_joiners_do_not_get_older_messages);
    RUN(replays_for_other_nodes_are_ignored);
    RUN(own_foreign_and_malformed_messages);
    RUN(ring_full_refuses_before_delivering);
    RUN(rooms_follow_local_members);
    RUN(urls_and_options);
    RUN(msgpack_members_get_remote_messages_in_msgpack);
    return test_summary();
}
