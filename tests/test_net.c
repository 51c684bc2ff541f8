/* Behaviour tests of WebSocket connections (server and client): what a user
   sees through the callbacks (on_open, on_message, on_close, on_drain,
   on_pong), zk_conn_send's results, zk_conn_buffered and
   zk_server_connections.

   Most tests run over the in-memory loopback transport with a virtual
   clock: instant and deterministic, time moves only by zk_loop_advance. A
   smaller set runs over real 127.0.0.1 and ::1 sockets with the real clock
   and bounded waits. A "raw peer" (one end of a loopback pair, or a plain
   socket) plays a client that is not a zocket client: plain HTTP, a client
   that never sends its upgrade, frames no zocket client would send.

   Loops use the poller named by ZK_TEST_POLLER ("epoll", "poll", "kqueue";
   unset or "auto": the system's best); the binary prints which one ran.
   Every test ends by checking that the library holds no allocation. */
#define _GNU_SOURCE /* sockets, fork, mmap/sysconf in test.h */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The library allocates through these, so a test can check it holds
   nothing once everything is freed. */
static long lib_live_allocs, lib_alloc_calls;
static void *count_realloc(void *p, size_t n) {
    void *q = realloc(p, n);
    lib_alloc_calls++;
    if (q && !p) lib_live_allocs++;
    return q;
}
static void count_free(void *p) {
    if (p) lib_live_allocs--;
    free(p);
}
#define ZK_MALLOC(n) count_realloc(NULL, n)
#define ZK_REALLOC(p, n) count_realloc(p, n)
#define ZK_FREE(p) count_free(p)
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"
#include "test.h"

#define CHECK_ALL_FREED() CHECK_EQ_INT(lib_live_allocs, 0)

/* ---- byte strings and payloads ------------------------------------------ */

typedef struct bytes {
    unsigned char *p;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n) {
    if (b->len + n > b->cap || !b->p) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) cap *= 2;
        b->p = (unsigned char *)realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void bytes_free(bytes *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Valid UTF-8 of exactly n bytes, with 2-, 3- and 4-byte characters (so
   1-, 3- and 7-byte chunks split characters). */
static void fill_text(unsigned char *out, size_t n) {
    static const char unit[] = "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6-\xe2\x82\xac-\xf0\x9f\x98\x80-\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5|";
    size_t u = sizeof unit - 1, i = 0;
    while (n - i >= u) {
        memcpy(out + i, unit, u);
        i += u;
    }
    memset(out + i, '*', n - i);
}

static void fill_binary(unsigned char *out, size_t n, unsigned salt) {
    size_t i;
    for (i = 0; i < n; i++) out[i] = (unsigned char)(i * 131 + (i >> 8) + 7 + salt);
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the world: a loop, a server, and what every side saw ------------- */

#define MAX_SIDES 128

/* What one end of one connection saw. */
typedef struct side {
    zk_conn *conn;          /* NULL once on_close ran (it is freed then) */
    int id;
    int opens, closes, drains, pongs, messages;
    int close_code, close_clean;
    char close_reason[128];
    uint64_t open_at, close_at;
    int messages_at_close, messages_at_pong;
    bytes all;              /* every message received, concatenated */
    bytes last;             /* the last message */
    int last_binary;
    char pong[128];
    char protocol[64];
    char upgrade_protocol[64]; /* server: up->protocol in on_upgrade */
    int req_null;           /* on_open got req == NULL */
    char path[64], query[128], token[64], host[64], method[16];
    int echo;               /* server: send every message back */
    int seq_check, seq_bad; /* messages must be "c<id>-m<n>" in order */
    int close_after;        /* close with 1000 after this many messages */
    int abort_on_message;   /* abort from on_message */
    int close_on_message;   /* zk_conn_close(code) from on_message */
    int send_errors;
    int send_in_close_rc, close_in_close_rc; /* results of calls made in on_close */
    int call_in_close;
} side;

typedef struct world {
    zk_loop *loop;
    zk_server *server;
    side srv[MAX_SIDES], cli[MAX_SIDES];
    int nsrv, ncli;
    int upgrades, upgrade_status, server_echo;
    int http_requests, http_mode; /* 1: answer at once; 2: keep the conn for later */
    zk_conn *http_conn;
    char http_path[64];
    int shutdown_done;
    uint64_t shutdown_done_at;
    const char *welcome; /* the server sends this from on_open */
} world;

static int env_poller = ZK_POLLER_AUTO;

static const char *poller_name(int p) {
    switch (p) {
    case ZK_POLLER_EPOLL: return "epoll";
    case ZK_POLLER_KQUEUE: return "kqueue";
    case ZK_POLLER_POLL: return "poll";
    default: return "auto";
    }
}

static zk_loop *new_loop(int virtual_clock) {
    zk_loop_opts o;
    zk_loop *loop;
    memset(&o, 0, sizeof o);
    o.poller = env_poller;
    o.virtual_clock = virtual_clock;
    o.seed = 0x5eed;
    loop = zk_loop_new(&o);
    if (!loop) {
        printf("cannot make a loop with poller %s\n", poller_name(env_poller));
        exit(1);
    }
    return loop;
}

static world *world_new(int virtual_clock) {
    world *w = (world *)calloc(1, sizeof *w);
    int i;
    if (!w) abort();
    w->loop = new_loop(virtual_clock);
    w->server_echo = 1;
    for (i = 0; i < MAX_SIDES; i++) {
        w->srv[i].id = i;
        w->cli[i].id = i;
    }
    return w;
}

/* Runs the in-memory deliveries and due timers until nothing is left to
   do at the current virtual time, with one poller pass on the way. */
static void pump(zk_loop *loop) {
    int i;
    for (i = 0; i < 100000 && (i == 0 || loop->work); i++) zk_loop_advance(loop, 0);
    zk_loop_step(loop, 0);
    for (i = 0; i < 100000 && loop->work; i++) zk_loop_advance(loop, 0);
}

/* Real clock: steps until cond holds or ms pass. */
#define RUN_UNTIL(loop, cond, ms)                                              \
    do {                                                                       \
        uint64_t deadline_ = now_ms() + (ms);                                  \
        while (!(cond) && now_ms() < deadline_) zk_loop_step((loop), 10);      \
    } while (0)

/* ---- callbacks ---------------------------------------------------------- */

static side *server_side(zk_conn *c) {
    world *w = (world *)zk_server_data(zk_conn_server(c));
    side *sd;
    if (w->nsrv >= MAX_SIDES) abort();
    sd = &w->srv[w->nsrv++];
    sd->conn = c;
    sd->echo = w->server_echo;
    zk_conn_set_data(c, sd);
    return sd;
}

static void copy_view(char *out, size_t cap, zk_str v) {
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    if (n) memcpy(out, v.ptr, n);
    out[n] = '\0';
}

static void on_open(zk_conn *c, const zk_http_request *req) {
    side *sd = (side *)zk_conn_data(c);
    if (!sd && zk_conn_server(c)) sd = server_side(c);
    sd->conn = c;
    sd->opens++;
    sd->open_at = zk_loop_now(zk_conn_loop(c));
    copy_view(sd->protocol, sizeof sd->protocol, zk_conn_protocol(c));
    sd->req_null = req == NULL;
    if (zk_conn_server(c)) {
        world *w = (world *)zk_server_data(zk_conn_server(c));
        if (w->welcome && zk_conn_send(c, w->welcome, strlen(w->welcome), 0) < 0) sd->send_errors++;
    }
    if (req) {
        copy_view(sd->path, sizeof sd->path, req->path);
        copy_view(sd->query, sizeof sd->query, req->query);
        copy_view(sd->method, sizeof sd->method, req->method);
        copy_view(sd->token, sizeof sd->token, zk_http_header_get(req->headers, req->header_count, "x-token"));
        copy_view(sd->host, sizeof sd->host, zk_http_header_get(req->headers, req->header_count, "Host"));
    }
}

static void on_message(zk_conn *c, zk_str data, int binary) {
    side *sd = (side *)zk_conn_data(c);
    sd->messages++;
    put(&sd->all, data.ptr, data.len);
    sd->last.len = 0;
    put(&sd->last, data.ptr, data.len);
    sd->last_binary = binary;
    if (sd->seq_check) {
        char want[64];
        int n = snprintf(want, sizeof want, "c%d-m%d", sd->id, sd->messages - 1);
        if (binary || data.len != (size_t)n || memcmp(data.ptr, want, (size_t)n) != 0) sd->seq_bad++;
    }
    if (sd->echo && zk_conn_send(c, data.ptr, data.len, binary) < 0) sd->send_errors++;
    if (sd->abort_on_message) {
        zk_conn_abort(c);
        return;
    }
    if (sd->close_on_message) zk_conn_close(c, sd->close_on_message, "from on_message");
    if (sd->close_after && sd->messages == sd->close_after) zk_conn_close(c, 1000, "done");
}

static void on_close(zk_conn *c, int code, zk_str reason, int clean) {
    side *sd = (side *)zk_conn_data(c);
    if (!sd) return; /* a plain HTTP request that went away before its answer */
    sd->closes++;
    sd->close_code = code;
    sd->close_clean = clean;
    sd->close_at = zk_loop_now(zk_conn_loop(c));
    sd->messages_at_close = sd->messages;
    copy_view(sd->close_reason, sizeof sd->close_reason, reason);
    if (sd->call_in_close) {
        sd->send_in_close_rc = zk_conn_send(c, "late", 4, 0);
        sd->close_in_close_rc = zk_conn_close(c, 1000, NULL);
    }
    sd->conn = NULL;
}

static void on_drain(zk_conn *c) {
    side *sd = (side *)zk_conn_data(c);
    sd->drains++;
}

static void on_pong(zk_conn *c, zk_str data) {
    side *sd = (side *)zk_conn_data(c);
    if (sd->pongs++ == 0) sd->messages_at_pong = sd->messages;
    copy_view(sd->pong, sizeof sd->pong, data);
}

static int on_upgrade(zk_conn *c, const zk_http_request *req, const zk_ws_upgrade *up) {
    world *w = (world *)zk_server_data(zk_conn_server(c));
    (void)req;
    side *sd;
    w->upgrades++;
    if (w->upgrade_status) return w->upgrade_status;
    sd = server_side(c); /* state attached here must be there in on_open */
    copy_view(sd->upgrade_protocol, sizeof sd->upgrade_protocol, zk_str_c(up->protocol));
    return 0;
}

static void on_http(zk_conn *c, const zk_http_request *req) {
    world *w = (world *)zk_server_data(zk_conn_server(c));
    w->http_requests++;
    copy_view(w->http_path, sizeof w->http_path, req->path);
    if (w->http_mode == 1) {
        zk_http_header h[1];
        h[0].name = zk_str_c("X-Served-By");
        h[0].value = zk_str_c("test");
        zk_conn_respond(c, 200, h, 1, "healthy", 7);
    } else {
        w->http_conn = c;
    }
}

static void on_shutdown_done(zk_server *s) {
    world *w = (world *)zk_server_data(s);
    w->shutdown_done++;
    w->shutdown_done_at = zk_loop_now(w->loop);
}

static zk_callbacks callbacks(void) {
    zk_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.on_open = on_open;
    cb.on_message = on_message;
    cb.on_close = on_close;
    cb.on_drain = on_drain;
    cb.on_pong = on_pong;
    return cb;
}

static zk_server_opts server_opts(world *w) {
    zk_server_opts o;
    memset(&o, 0, sizeof o);
    o.cb = callbacks();
    o.on_upgrade = on_upgrade;
    o.data = w;
    return o;
}

static void server_new(world *w, const zk_server_opts *o) {
    w->server = zk_server_new(w->loop, o);
    if (!w->server) abort();
    CHECK(zk_server_data(w->server) == w);
    CHECK(zk_server_loop(w->server) == w->loop);
}

static zk_conn_opts client_opts(const char *url) {
    zk_conn_opts o;
    memset(&o, 0, sizeof o);
    o.url = url;
    o.cb = callbacks();
    return o;
}

static side *new_client_side(world *w) {
    if (w->ncli >= MAX_SIDES) abort();
    return &w->cli[w->ncli++];
}

/* A loopback client; its side is its zk_conn_data. */
static side *connect_lb(world *w, zk_conn_opts *o, const zk_loopback_opts *fault) {
    side *sd = new_client_side(w);
    int err = 1;
    o->data = sd;
    sd->conn = zk_loopback_connect(w->server, o, fault, &err);
    CHECK(sd->conn != NULL);
    CHECK_EQ_INT(err, 0);
    if (sd->conn) CHECK(zk_conn_data(sd->conn) == sd);
    return sd;
}

static side *connect_lb_url(world *w, const char *url, const zk_loopback_opts *fault) {
    zk_conn_opts o = client_opts(url);
    return connect_lb(w, &o, fault);
}

static side *connect_tcp(world *w, zk_conn_opts *o) {
    side *sd = new_client_side(w);
    int err = 1;
    o->data = sd;
    sd->conn = zk_conn_connect(w->loop, o, &err);
    CHECK(sd->conn != NULL);
    CHECK_EQ_INT(err, 0);
    return sd;
}

/* Frees the server (dropping its connections), drops the clients still
   open, frees the loop and what the sides recorded. */
static void world_free(world *w) {
    int i;
    if (w->server) zk_server_free(w->server);
    for (i = 0; i < w->ncli; i++)
        if (w->cli[i].conn) zk_conn_abort(w->cli[i].conn);
    zk_loop_free(w->loop);
    for (i = 0; i < MAX_SIDES; i++) {
        bytes_free(&w->srv[i].all);
        bytes_free(&w->srv[i].last);
        bytes_free(&w->cli[i].all);
        bytes_free(&w->cli[i].last);
    }
    free(w);
}

/* ---- a raw loopback peer: one end of a pair that no zk_conn drives ----- */

typedef struct raw {
    zk__stream *s;
    bytes in;
    int eof, reset;
} raw;

static void raw_open(raw *r, zk_server *s, const zk_loopback_opts *o) {
    zk__lb_pair *p = zk__lb_pair_new(zk_server_loop(s), o);
    zk_conn *sc = zk__server_conn(s, 0);
    memset(r, 0, sizeof *r);
    sc->stream = &p->end[1].base;
    p->end[1].base.conn = sc;
    r->s = &p->end[0].base;
}

static void raw_send(raw *r, const void *data, size_t len) {
    struct iovec iov;
    long n;
    iov.iov_base = (void *)(uintptr_t)data;
    iov.iov_len = len;
    n = r->s->ops->writev(r->s, &iov, 1);
    CHECK_EQ_INT(n, (long)len);
}

static void raw_recv(raw *r) {
    unsigned char buf[4096];
    for (;;) {
        long n = r->s->ops->read(r->s, buf, sizeof buf);
        if (n > 0) {
            put(&r->in, buf, (size_t)n);
            continue;
        }
        if (n == 0) r->eof = 1;
        else if (n != ZK_EAGAIN) r->reset = 1;
        break;
    }
}

static void raw_close(raw *r) {
    r->s->ops->close(r->s);
    bytes_free(&r->in);
}

/* Writes bytes on a client connection's transport as they are, behind the
   engine's back: frames no zocket client would send. */
static void inject(zk_conn *c, const void *data, size_t len) {
    struct iovec iov;
    long n;
    iov.iov_base = (void *)(uintptr_t)data;
    iov.iov_len = len;
    n = c->stream->ops->writev(c->stream, &iov, 1);
    CHECK_EQ_INT(n, (long)len);
}

/* A masked frame as a client would send it (any payload, even bad UTF-8). */
static size_t client_frame(unsigned char *out, int opcode, int fin, const void *payload, size_t len,
                           int masked) {
    static const unsigned char key[4] = {0x11, 0x22, 0x33, 0x44};
    size_t h = zk_ws_frame_header(out, opcode, fin, len, masked ? key : NULL);
    memcpy(out + h, payload, len);
    if (masked) zk_ws_mask(out + h, len, key, 0);
    return h + len;
}

static const char upgrade_request[] =
    "GET /chat HTTP/1.1\r\n"
    "Host: loopback\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

/* ---- opening ------------------------------------------------------------ */

TEST(loopback_open_reaches_both_ends) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c, *s;
    char peer[64];
    so.on_upgrade = NULL; /* the server's side is made in on_open */
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    CHECK_EQ_INT(c->opens, 0); /* nothing happens before the loop runs */
    CHECK_EQ_INT(zk_server_connections(w->server), 1);
    CHECK_EQ_INT(zk_conn_send(c->conn, "early", 5, 0), ZK_ECLOSED); /* not open yet */
    pump(w->loop);
    s = &w->srv[0];
    CHECK_EQ_INT(w->nsrv, 1);
    CHECK_EQ_INT(c->opens, 1);
    CHECK_EQ_INT(s->opens, 1);
    CHECK(c->req_null);
    CHECK(!s->req_null);
    CHECK_EQ_INT(c->closes + s->closes, 0);
    CHECK_EQ_INT(zk_server_connections(w->server), 1);
    CHECK(zk_conn_server(s->conn) == w->server);
    CHECK(zk_conn_server(c->conn) == NULL);
    CHECK(zk_conn_loop(c->conn) == w->loop);
    CHECK(zk_conn_loop(s->conn) == w->loop);
    CHECK_EQ_INT(zk_conn_buffered(c->conn), 0);
    CHECK_EQ_INT(zk_conn_peer(c->conn, peer, sizeof peer), 8);
    CHECK(strcmp(peer, "loopback") == 0);
    CHECK_EQ_INT(zk_conn_peer(s->conn, peer, sizeof peer), 8);
    CHECK(strcmp(peer, "loopback") == 0);
    CHECK(zk_conn_protocol(c->conn).len == 0);
    CHECK(zk_conn_protocol(s->conn).len == 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(many_loopback_clients_are_counted) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c[5];
    int i;
    server_new(w, &so);
    for (i = 0; i < 5; i++) c[i] = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    CHECK_EQ_INT(zk_server_connections(w->server), 5);
    CHECK_EQ_INT(w->nsrv, 5);
    for (i = 0; i < 5; i++) CHECK_EQ_INT(c[i]->opens, 1);
    CHECK_EQ_INT(zk_conn_close(c[1]->conn, 1000, NULL), 0);
    zk_conn_abort(c[3]->conn);
    pump(w->loop);
    CHECK_EQ_INT(zk_server_connections(w->server), 3);
    world_free(w);
    CHECK_ALL_FREED();
}

/* Sends each message from the client, lets the server echo it, and checks
   what comes back. */
static void echo_sizes(size_t chunk) {
    static const size_t sizes[] = {0, 1, 125, 126, 65535, 65536, (size_t)1 << 20};
    const int nsizes = (int)(sizeof sizes / sizeof sizes[0]);
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_loopback_opts lo;
    unsigned char *msg = (unsigned char *)malloc((size_t)1 << 20);
    side *c;
    int binary, i, expect = 0, bad = 0;
    memset(&lo, 0, sizeof lo);
    lo.chunk = chunk;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/echo", &lo);
    pump(w->loop);
    CHECK_EQ_INT(c->opens, 1);
    for (binary = 0; binary < 2 && c->conn; binary++) {
        for (i = 0; i < nsizes && c->conn; i++) {
            size_t n = sizes[i];
            int rc;
            if (binary) fill_binary(msg, n, (unsigned)i);
            else fill_text(msg, n);
            rc = zk_conn_send(c->conn, msg, n, binary);
            /* a message as big as the default high-water mark reports it */
            CHECK_EQ_INT(rc, n + 14 >= ((size_t)1 << 20) ? ZK_SEND_BACKPRESSURE : ZK_SEND_OK);
            expect++;
            pump(w->loop);
            CHECK_EQ_INT(c->messages, expect);
            CHECK_EQ_INT(w->srv[0].messages, expect);
            if (c->messages == expect && (c->last.len != n || c->last_binary != binary ||
                                          (n && memcmp(c->last.p, msg, n) != 0))) {
                printf("  chunk %zu: %s message of %zu bytes came back as %zu bytes%s\n", chunk,
                       binary ? "binary" : "text", n, c->last.len,
                       c->last_binary != binary ? " of the other type" : " that differ");
                bad++;
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(w->srv[0].send_errors, 0);
    CHECK_EQ_INT(c->closes + w->srv[0].closes, 0);
    CHECK_EQ_INT(zk_conn_buffered(c->conn), 0);
    free(msg);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(echo_every_size_in_1_byte_chunks) { echo_sizes(1); }
TEST(echo_every_size_in_3_byte_chunks) { echo_sizes(3); }
TEST(echo_every_size_in_7_byte_chunks) { echo_sizes(7); }
TEST(echo_every_size_in_4096_byte_chunks) { echo_sizes(4096); }
TEST(echo_every_size_whole) { echo_sizes(0); }

TEST(messages_sent_in_one_pass_arrive_in_order) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_loopback_opts lo;
    side *c;
    bytes expect;
    int i;
    memset(&expect, 0, sizeof expect);
    memset(&lo, 0, sizeof lo);
    lo.chunk = 1000;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", &lo);
    pump(w->loop);
    for (i = 0; i < 2000; i++) {
        char m[32];
        int n = snprintf(m, sizeof m, "message %d;", i);
        CHECK_EQ_INT(zk_conn_send(c->conn, m, (size_t)n, i & 1), ZK_SEND_OK);
        put(&expect, m, (size_t)n);
    }
    CHECK(zk_conn_buffered(c->conn) > 0); /* queued, written at the end of the pass */
    pump(w->loop);
    CHECK_EQ_INT(w->srv[0].messages, 2000);
    CHECK_EQ_INT(c->messages, 2000);
    CHECK_MEM(w->srv[0].all.p, w->srv[0].all.len, expect.p, expect.len);
    CHECK_MEM(c->all.p, c->all.len, expect.p, expect.len);
    CHECK_EQ_INT(zk_conn_buffered(c->conn), 0);
    bytes_free(&expect);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(delayed_loopback_delivers_only_after_advance) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_loopback_opts lo;
    side *c, *s;
    memset(&lo, 0, sizeof lo);
    lo.delay_ms = 50;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", &lo);
    pump(w->loop);
    CHECK_EQ_INT(w->upgrades, 0);
    zk_loop_advance(w->loop, 49);
    CHECK_EQ_INT(w->upgrades, 0);
    zk_loop_advance(w->loop, 1); /* the request arrives at 50 */
    s = &w->srv[0];
    CHECK_EQ_INT(s->opens, 1);
    CHECK_EQ_INT(s->open_at, 50);
    CHECK_EQ_INT(c->opens, 0);
    zk_loop_advance(w->loop, 49);
    CHECK_EQ_INT(c->opens, 0);
    zk_loop_advance(w->loop, 1); /* the 101 arrives at 100 */
    CHECK_EQ_INT(c->opens, 1);
    CHECK_EQ_INT(c->open_at, 100);
    CHECK_EQ_INT(zk_conn_send(c->conn, "ping?", 5, 0), ZK_SEND_OK);
    pump(w->loop);
    CHECK_EQ_INT(s->messages, 0);
    zk_loop_advance(w->loop, 50);
    CHECK_EQ_INT(s->messages, 1);
    CHECK_EQ_INT(c->messages, 0);
    zk_loop_advance(w->loop, 49);
    CHECK_EQ_INT(c->messages, 0);
    zk_loop_advance(w->loop, 1);
    CHECK_EQ_INT(c->messages, 1);
    CHECK_MEM(c->last.p, c->last.len, "ping?", 5);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(delayed_and_chunked_big_messages_arrive_intact) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_loopback_opts lo;
    unsigned char *msg = (unsigned char *)malloc(300000);
    side *c;
    int i;
    memset(&lo, 0, sizeof lo);
    lo.delay_ms = 3;
    lo.chunk = 777;
    lo.capacity = 5000;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", &lo);
    zk_loop_advance(w->loop, 10);
    CHECK_EQ_INT(c->opens, 1);
    fill_binary(msg, 300000, 3);
    CHECK_EQ_INT(zk_conn_send(c->conn, msg, 300000, 1), ZK_SEND_OK);
    for (i = 0; i < 2000 && c->messages == 0; i++) zk_loop_advance(w->loop, 1);
    CHECK_EQ_INT(c->messages, 1);
    CHECK_MEM(c->last.p, c->last.len, msg, 300000);
    free(msg);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(subprotocol_is_negotiated_on_both_ends) {
    static const char *const server_protos[] = {"zocket.msgpack", "zocket.json"};
    static const char *const client_protos[] = {"zocket.json", "zocket.msgpack"};
    static const char *const other_protos[] = {"chat.v9"};
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_conn_opts co;
    side *c, *d, *e;
    so.protocols = server_protos;
    so.protocol_count = 2;
    server_new(w, &so);
    co = client_opts("ws://loopback/");
    co.protocols = client_protos;
    co.protocol_count = 2;
    c = connect_lb(w, &co, NULL);
    co = client_opts("ws://loopback/");
    co.protocols = other_protos;
    co.protocol_count = 1;
    d = connect_lb(w, &co, NULL);
    e = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    /* the server's preference wins among what the client offered */
    CHECK_EQ_INT(c->opens, 1);
    CHECK(strcmp(c->protocol, "zocket.msgpack") == 0);
    CHECK(strcmp(w->srv[0].protocol, "zocket.msgpack") == 0);
    CHECK_EQ_INT(w->upgrades, 3);
    CHECK(strcmp(w->srv[0].upgrade_protocol, "zocket.msgpack") == 0);
    CHECK(strcmp(w->srv[1].upgrade_protocol, "") == 0);
    if (c->conn) CHECK_STR(zk_conn_protocol(c->conn), "zocket.msgpack");
    if (w->srv[0].conn) CHECK_STR(zk_conn_protocol(w->srv[0].conn), "zocket.msgpack");
    /* nothing in common, or nothing offered: open, with no subprotocol */
    CHECK_EQ_INT(d->opens, 1);
    CHECK(strcmp(d->protocol, "") == 0);
    CHECK(strcmp(w->srv[1].protocol, "") == 0);
    CHECK_EQ_INT(e->opens, 1);
    CHECK(strcmp(e->protocol, "") == 0);
    CHECK(strcmp(w->srv[2].protocol, "") == 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(upgrade_refused_with_401_never_opens) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c;
    w->upgrade_status = 401;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/?token=wrong", NULL);
    pump(w->loop);
    CHECK_EQ_INT(w->upgrades, 1);
    CHECK_EQ_INT(c->opens, 0);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1006);
    CHECK_EQ_INT(c->close_clean, 0);
    CHECK(c->conn == NULL);
    CHECK_EQ_INT(w->nsrv, 0); /* no on_open on the server either */
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(upgrade_refused_answers_the_status_and_no_frame) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_http_response res;
    raw r;
    int n;
    w->upgrade_status = 403;
    server_new(w, &so);
    raw_open(&r, w->server, NULL);
    raw_send(&r, upgrade_request, sizeof upgrade_request - 1);
    pump(w->loop);
    raw_recv(&r);
    CHECK(r.eof);
    n = zk_http_parse_response((const char *)r.in.p, r.in.len, 0, &res, NULL);
    CHECK(n > 0);
    if (n > 0) {
        zk_str len = zk_http_header_get(res.headers, res.header_count, "Content-Length");
        CHECK_EQ_INT(res.status, 403);
        /* nothing after the body: no WebSocket frame */
        CHECK_EQ_INT(r.in.len, (size_t)n + (size_t)atoi(len.ptr ? len.ptr : "0"));
    }
    CHECK_EQ_INT(w->nsrv, 0);
    raw_close(&r);
    pump(w->loop);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(plain_http_request_is_answered_by_on_http) {
    static const char req[] = "GET /health?full=1 HTTP/1.1\r\nHost: loopback\r\n\r\n";
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_http_response res;
    raw r;
    int n;
    so.on_http = on_http;
    w->http_mode = 1;
    server_new(w, &so);
    raw_open(&r, w->server, NULL);
    raw_send(&r, req, sizeof req - 1);
    pump(w->loop);
    CHECK_EQ_INT(w->http_requests, 1);
    CHECK(strcmp(w->http_path, "/health") == 0);
    raw_recv(&r);
    CHECK(r.eof); /* the connection closes after the answer */
    n = zk_http_parse_response((const char *)r.in.p, r.in.len, 0, &res, NULL);
    CHECK(n > 0);
    if (n > 0) {
        CHECK_EQ_INT(res.status, 200);
        CHECK_STR(zk_http_header_get(res.headers, res.header_count, "X-Served-By"), "test");
        CHECK_MEM(r.in.p + n, r.in.len - (size_t)n, "healthy", 7);
    }
    CHECK_EQ_INT(w->upgrades, 0);
    CHECK_EQ_INT(w->nsrv, 0);
    raw_close(&r);
    pump(w->loop);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(plain_http_request_can_be_answered_later) {
    static const char req[] = "GET /slow HTTP/1.1\r\nHost: loopback\r\n\r\n";
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_http_response res;
    raw r;
    so.on_http = on_http;
    w->http_mode = 2;
    server_new(w, &so);
    raw_open(&r, w->server, NULL);
    raw_send(&r, req, sizeof req - 1);
    pump(w->loop);
    CHECK(w->http_conn != NULL);
    zk_loop_advance(w->loop, 100);
    raw_recv(&r);
    CHECK_EQ_INT(r.in.len, 0);
    CHECK(!r.eof);
    if (w->http_conn) CHECK_EQ_INT(zk_conn_respond(w->http_conn, 404, NULL, 0, "no", 2), 0);
    pump(w->loop);
    raw_recv(&r);
    CHECK(r.eof);
    CHECK(zk_http_parse_response((const char *)r.in.p, r.in.len, 0, &res, NULL) > 0);
    CHECK_EQ_INT(res.status, 404);
    raw_close(&r);
    pump(w->loop);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(plain_http_request_without_on_http_gets_426) {
    static const char req[] = "GET / HTTP/1.1\r\nHost: loopback\r\n\r\n";
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_http_response res;
    raw r;
    server_new(w, &so);
    raw_open(&r, w->server, NULL);
    raw_send(&r, req, sizeof req - 1);
    pump(w->loop);
    raw_recv(&r);
    CHECK(r.eof);
    CHECK(zk_http_parse_response((const char *)r.in.p, r.in.len, 0, &res, NULL) > 0);
    CHECK_EQ_INT(res.status, 426);
    CHECK(zk_http_list_has(zk_http_header_get(res.headers, res.header_count, "Upgrade"), "websocket"));
    CHECK_EQ_INT(w->nsrv, 0);
    raw_close(&r);
    pump(w->loop);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(on_open_sees_the_query_string_and_headers) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_conn_opts co;
    zk_http_header h[2];
    side *s;
    char v[64];
    int n;
    h[0].name = zk_str_c("X-Token");
    h[0].value = zk_str_c("abc123");
    h[1].name = zk_str_c("X-Other");
    h[1].value = zk_str_c("1");
    server_new(w, &so);
    co = client_opts("ws://loopback/chat/room?name=ann%20lee&x=1");
    co.headers = h;
    co.header_count = 2;
    connect_lb(w, &co, NULL);
    pump(w->loop);
    s = &w->srv[0];
    CHECK_EQ_INT(s->opens, 1);
    CHECK(strcmp(s->method, "GET") == 0);
    CHECK(strcmp(s->path, "/chat/room") == 0);
    CHECK(strcmp(s->query, "name=ann%20lee&x=1") == 0);
    CHECK(strcmp(s->token, "abc123") == 0);
    CHECK(strcmp(s->host, "loopback") == 0);
    n = zk_query_get(zk_str_c(s->query), "name", v, sizeof v);
    CHECK_EQ_INT(n, 7);
    CHECK(n == 7 && memcmp(v, "ann lee", 7) == 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(loopback_chunk_and_delay_shape_what_the_peer_reads) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_loopback_opts lo;
    unsigned char buf[64];
    raw r;
    long n, biggest = 0, total = 0;
    memset(&lo, 0, sizeof lo);
    lo.chunk = 5;
    lo.delay_ms = 30;
    server_new(w, &so);
    raw_open(&r, w->server, &lo);
    raw_send(&r, upgrade_request, sizeof upgrade_request - 1);
    pump(w->loop);
    zk_loop_advance(w->loop, 29);
    CHECK_EQ_INT(w->nsrv, 0); /* the request has not arrived */
    zk_loop_advance(w->loop, 1);
    CHECK_EQ_INT(w->nsrv, 1);
    CHECK_EQ_INT(w->srv[0].opens, 1);
    CHECK_EQ_INT(r.s->ops->read(r.s, buf, sizeof buf), ZK_EAGAIN); /* the 101 is on its way */
    zk_loop_advance(w->loop, 30);
    while ((n = r.s->ops->read(r.s, buf, sizeof buf)) > 0) {
        if (n > biggest) biggest = n;
        total += n;
        put(&r.in, buf, (size_t)n);
    }
    CHECK_EQ_INT(n, ZK_EAGAIN);
    CHECK_EQ_INT(biggest, 5);
    CHECK(total > 100);
    CHECK(r.in.len > 12 && memcmp(r.in.p, "HTTP/1.1 101", 12) == 0);
    raw_close(&r);
    pump(w->loop);
    CHECK_EQ_INT(w->srv[0].closes, 1);
    CHECK_EQ_INT(w->srv[0].close_code, 1006);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(messages_sent_in_on_open_arrive_right_after_open) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c, *d;
    zk_loopback_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.chunk = 3;
    w->welcome = "welcome";
    server_new(w, &so);
    /* the 101 and the first frame travel together: one read sees both */
    c = connect_lb_url(w, "ws://loopback/", NULL);
    d = connect_lb_url(w, "ws://loopback/", &lo);
    pump(w->loop);
    CHECK_EQ_INT(c->opens, 1);
    CHECK_EQ_INT(c->messages, 1);
    CHECK_MEM(c->last.p, c->last.len, "welcome", 7);
    CHECK_EQ_INT(d->messages, 1);
    CHECK_MEM(d->last.p, d->last.len, "welcome", 7);
    CHECK_EQ_INT(w->srv[0].send_errors, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(open_connection_outlives_the_connect_timeout) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_conn_opts co;
    side *c;
    so.idle_timeout_ms = 3600000;
    server_new(w, &so);
    co = client_opts("ws://loopback/");
    co.connect_timeout_ms = 500;
    c = connect_lb(w, &co, NULL);
    pump(w->loop);
    CHECK_EQ_INT(c->opens, 1);
    zk_loop_advance(w->loop, 60000);
    CHECK_EQ_INT(c->closes, 0);
    CHECK_EQ_INT(w->srv[0].closes, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(client_connect_timeout_when_the_server_never_answers) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_conn_opts co;
    zk_loopback_opts lo;
    side *c;
    memset(&lo, 0, sizeof lo);
    lo.delay_ms = 10000; /* the answer would come far too late */
    server_new(w, &so);
    co = client_opts("ws://loopback/");
    co.connect_timeout_ms = 500;
    c = connect_lb(w, &co, &lo);
    pump(w->loop);
    zk_loop_advance(w->loop, 499);
    CHECK_EQ_INT(c->closes, 0);
    zk_loop_advance(w->loop, 1);
    CHECK_EQ_INT(c->opens, 0);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1006);
    CHECK_EQ_INT(c->close_at, 500);
    zk_loop_advance(w->loop, 20000);
    CHECK_EQ_INT(c->opens, 0);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(close_before_open_reports_once_and_never_opens) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    CHECK_EQ_INT(zk_conn_close(c->conn, 1000, NULL), 0);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_clean, 0);
    pump(w->loop);
    zk_loop_advance(w->loop, 20000);
    CHECK_EQ_INT(c->opens, 0);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(w->nsrv, 0);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(silence_loses_bytes_until_delivery_is_restored) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c, *s;
    so.idle_timeout_ms = 3600000;
    server_new(w, &so);
    w->server_echo = 0;
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    CHECK_EQ_INT(zk_loopback_silence(s->conn, 1), 0); /* either end */
    CHECK_EQ_INT(zk_conn_send(c->conn, "lost", 4, 0), ZK_SEND_OK);
    CHECK_EQ_INT(zk_conn_send(s->conn, "lost too", 8, 0), ZK_SEND_OK);
    pump(w->loop);
    zk_loop_advance(w->loop, 1000);
    CHECK_EQ_INT(s->messages, 0);
    CHECK_EQ_INT(c->messages, 0);
    CHECK_EQ_INT(zk_conn_buffered(c->conn), 0); /* written, and gone */
    CHECK_EQ_INT(zk_loopback_silence(c->conn, 0), 0);
    CHECK_EQ_INT(zk_conn_send(c->conn, "found", 5, 0), ZK_SEND_OK);
    pump(w->loop);
    CHECK_EQ_INT(s->messages, 1);
    CHECK_MEM(s->all.p, s->all.len, "found", 5);
    CHECK_EQ_INT(c->closes + s->closes, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(plain_http_request_never_answered_is_closed_at_the_deadline) {
    static const char req[] = "GET /slow HTTP/1.1\r\nHost: loopback\r\n\r\n";
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    raw r;
    so.on_http = on_http;
    so.handshake_timeout_ms = 2000;
    w->http_mode = 2;
    server_new(w, &so);
    raw_open(&r, w->server, NULL);
    raw_send(&r, req, sizeof req - 1);
    pump(w->loop);
    CHECK_EQ_INT(w->http_requests, 1);
    zk_loop_advance(w->loop, 1999);
    raw_recv(&r);
    CHECK(!r.eof && !r.reset);
    CHECK_EQ_INT(zk_server_connections(w->server), 1);
    zk_loop_advance(w->loop, 1);
    raw_recv(&r);
    CHECK(r.eof || r.reset);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    raw_close(&r);
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- sending --------------------------------------------------------------- */

TEST(send_refuses_bad_text_and_closed_connections) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    CHECK_EQ_INT(zk_conn_send(c->conn, "\xc3\x28", 2, 0), ZK_EINVAL);
    CHECK_EQ_INT(zk_conn_send(c->conn, "\xe2\x82", 2, 0), ZK_EINVAL); /* cut short */
    CHECK_EQ_INT(zk_conn_buffered(c->conn), 0);
    CHECK_EQ_INT(zk_conn_send(c->conn, "\xc3\x28", 2, 1), ZK_SEND_OK); /* fine as binary */
    CHECK_EQ_INT(zk_conn_ping(c->conn, "x", 126), ZK_EINVAL);
    CHECK(zk_conn_respond(c->conn, 200, NULL, 0, NULL, 0) < 0); /* not a plain HTTP request */
    CHECK_EQ_INT(zk_conn_close(c->conn, 1000, NULL), 0);
    CHECK_EQ_INT(zk_conn_send(c->conn, "late", 4, 0), ZK_ECLOSED);
    CHECK_EQ_INT(zk_conn_ping(c->conn, "late", 4), ZK_ECLOSED);
    CHECK_EQ_INT(zk_conn_close(c->conn, 1000, NULL), ZK_ECLOSED);
    pump(w->loop);
    CHECK_EQ_INT(w->srv[0].messages, 1);
    CHECK_EQ_INT(c->closes, 1);
    world_free(w);
    CHECK_ALL_FREED();
}

/* A frame encoded once reaches every client intact (short, 16-bit and
   64-bit lengths, text and binary); freeing it right after the sends is
   fine (they copy); a client connection, which must mask, sends it too; bad
   text is refused when the frame is made, and a closed connection refuses
   it. */
TEST(one_frame_sent_to_many_connections) {
    static unsigned char payload[70000];
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c[4];
    zk_frame *text, *bin, *big;
    int i, err = 1, server_messages = 0;
    server_new(w, &so);
    for (i = 0; i < 4; i++) c[i] = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    CHECK_EQ_INT(w->nsrv, 4);
    fill_binary(payload, sizeof payload, 7);
    text = zk_frame_new("state 1", 7, 0, &err);
    CHECK(text != NULL);
    CHECK_EQ_INT(err, 0);
    bin = zk_frame_new(payload, 200, 1, NULL);
    big = zk_frame_new(payload, sizeof payload, 1, NULL);
    CHECK(bin != NULL && big != NULL);
    if (!text || !bin || !big) return;
    for (i = 0; i < 4; i++) {
        CHECK_EQ_INT(zk_conn_send_frame(w->srv[i].conn, text), ZK_SEND_OK);
        CHECK_EQ_INT(zk_conn_send_frame(w->srv[i].conn, bin), ZK_SEND_OK);
        CHECK_EQ_INT(zk_conn_send_frame(w->srv[i].conn, big), ZK_SEND_OK);
    }
    zk_frame_free(text);
    zk_frame_free(bin);
    pump(w->loop);
    for (i = 0; i < 4; i++) {
        CHECK_EQ_INT(c[i]->messages, 3);
        CHECK_EQ_INT(c[i]->all.len, 7 + 200 + sizeof payload);
        if (c[i]->all.len != 7 + 200 + sizeof payload) continue;
        CHECK(memcmp(c[i]->all.p, "state 1", 7) == 0);
        CHECK(memcmp(c[i]->all.p + 7, payload, 200) == 0);
        CHECK(memcmp(c[i]->all.p + 207, payload, sizeof payload) == 0);
        CHECK_EQ_INT(c[i]->last_binary, 1);
    }
    CHECK_EQ_INT(zk_conn_send_frame(c[0]->conn, big), ZK_SEND_OK);
    pump(w->loop);
    for (i = 0; i < 4; i++) {
        server_messages += w->srv[i].messages;
        if (w->srv[i].messages == 1) {
            CHECK_EQ_INT(w->srv[i].last.len, sizeof payload);
            CHECK(w->srv[i].last.len == sizeof payload &&
                  memcmp(w->srv[i].last.p, payload, sizeof payload) == 0);
        }
    }
    CHECK_EQ_INT(server_messages, 1);
    err = 0;
    CHECK(zk_frame_new("\xc3\x28", 2, 0, &err) == NULL);
    CHECK_EQ_INT(err, ZK_EINVAL);
    CHECK_EQ_INT(zk_conn_close(w->srv[1].conn, 1000, NULL), 0);
    CHECK_EQ_INT(zk_conn_send_frame(w->srv[1].conn, big), ZK_ECLOSED);
    zk_frame_free(big);
    world_free(w);
    CHECK_ALL_FREED();
}

/* Large frames are shared by the queues that send them, not copied: they
   stay intact when freed before the flush, when written in pieces, when
   mixed with copied messages, and when a pong has to cut in at a frame
   boundary inside the queue. */
/* The loop keeps the spare write chunks its queues needed in the last
   second: a broadcast that comes back a second later finds them. */
TEST(spare_chunks_outlast_a_second_between_broadcasts) {
    enum { N = 120 }; /* more than the 64 spares always kept */
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    long allocs[4];
    int i, round;
    server_new(w, &so);
    for (i = 0; i < N; i++) connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    CHECK_EQ_INT(w->nsrv, N);
    for (round = 0; round < 4; round++) {
        zk_frame *f = zk_frame_new("{\"type\":\"tick\"}", 15, 0, NULL);
        long before;
        if (round == 3) zk_loop_advance(w->loop, 1001);
        before = lib_alloc_calls;
        for (i = 0; i < N; i++) CHECK(zk_conn_send_frame(w->srv[i].conn, f) >= 0);
        zk_frame_free(f);
        pump(w->loop);
        allocs[round] = lib_alloc_calls - before;
    }
    CHECK(allocs[0] >= N);           /* the first one makes the chunks */
    CHECK_EQ_INT(allocs[3], allocs[1]); /* a second later they are still there */
    for (i = 0; i < N; i++) CHECK_EQ_INT(w->cli[i].messages, 4);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(shared_frames_survive_partial_writes_and_pongs) {
    static unsigned char a[5000], b[3000], want[5000 + 1 + 3000 + 5000];
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_loopback_opts slow;
    side *c;
    zk_frame *fa, *fb;
    zk_conn *s;
    size_t n = 0;
    int i;
    memset(&slow, 0, sizeof slow);
    slow.capacity = 1500; /* the server writes a few hundred bytes at a time */
    slow.chunk = 700;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", &slow);
    pump(w->loop);
    CHECK_EQ_INT(w->nsrv, 1);
    if (w->nsrv != 1) return;
    s = w->srv[0].conn;
    fill_binary(a, sizeof a, 1);
    fill_binary(b, sizeof b, 2);
    fa = zk_frame_new(a, sizeof a, 1, NULL);
    fb = zk_frame_new(b, sizeof b, 1, NULL);
    CHECK(fa && fb);
    if (!fa || !fb) return;
    CHECK_EQ_INT(zk_conn_send_frame(s, fa), ZK_SEND_OK);
    CHECK_EQ_INT(zk_conn_send(s, "x", 1, 1), ZK_SEND_OK);
    CHECK_EQ_INT(zk_conn_send_frame(s, fb), ZK_SEND_OK);
    CHECK_EQ_INT(zk_conn_send_frame(s, fa), ZK_SEND_OK);
    CHECK_EQ_INT(zk_conn_buffered(s), 4 + sizeof a + 2 + 1 + 4 + sizeof b + 4 + sizeof a);
    zk_frame_free(fa); /* the queues hold them now */
    zk_frame_free(fb);
    for (i = 0; i < 3; i++) zk_loop_step(w->loop, 0); /* part of it goes out */
    CHECK(zk_conn_buffered(s) > 0);
    CHECK_EQ_INT(zk_conn_ping(c->conn, "cut in", 6), 0);
    pump(w->loop);
    memcpy(want + n, a, sizeof a), n += sizeof a;
    want[n++] = 'x';
    memcpy(want + n, b, sizeof b), n += sizeof b;
    memcpy(want + n, a, sizeof a), n += sizeof a;
    CHECK_EQ_INT(c->messages, 4);
    CHECK_EQ_INT(c->pongs, 1);
    CHECK(strcmp(c->pong, "cut in") == 0);
    CHECK_EQ_INT(c->all.len, n);
    CHECK(c->all.len == n && memcmp(c->all.p, want, n) == 0);
    CHECK_EQ_INT(zk_conn_buffered(s), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(ping_gets_a_pong_with_the_same_payload) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    CHECK_EQ_INT(zk_conn_ping(c->conn, "are you there", 13), 0);
    pump(w->loop);
    CHECK_EQ_INT(c->pongs, 1);
    CHECK(strcmp(c->pong, "are you there") == 0);
    /* the server pings too */
    CHECK_EQ_INT(zk_conn_ping(w->srv[0].conn, NULL, 0), 0);
    pump(w->loop);
    CHECK_EQ_INT(w->srv[0].pongs, 1);
    CHECK(strcmp(w->srv[0].pong, "") == 0);
    world_free(w);
    CHECK_ALL_FREED();
}

/* Server sends numbered 1000-byte messages: 4 bytes of index, then fill. */
static int send_numbered(zk_conn *c, unsigned index) {
    unsigned char m[1000];
    fill_binary(m, sizeof m, index);
    m[0] = (unsigned char)(index >> 24);
    m[1] = (unsigned char)(index >> 16);
    m[2] = (unsigned char)(index >> 8);
    m[3] = (unsigned char)index;
    return zk_conn_send(c, m, sizeof m, 1);
}

static int check_numbered(const bytes *all, unsigned count) {
    unsigned i;
    unsigned char m[1000];
    if (all->len != (size_t)count * 1000) return 0;
    for (i = 0; i < count; i++) {
        fill_binary(m, sizeof m, i);
        m[0] = (unsigned char)(i >> 24);
        m[1] = (unsigned char)(i >> 16);
        m[2] = (unsigned char)(i >> 8);
        m[3] = (unsigned char)i;
        if (memcmp(all->p + (size_t)i * 1000, m, 1000) != 0) return 0;
    }
    return 1;
}

TEST(backpressure_is_reported_then_refused_then_drained) {
    enum { FRAME = 1004 }; /* 1000 bytes: 2 + 2 header bytes, unmasked */
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_loopback_opts lo;
    side *c, *s;
    unsigned sent = 0;
    int rc;
    size_t before;
    memset(&lo, 0, sizeof lo);
    lo.capacity = 2048;
    so.write_high_water = 4096;
    so.write_limit = 16384;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", &lo);
    pump(w->loop);
    s = &w->srv[0];
    CHECK_EQ_INT(zk_loopback_stall(c->conn, 1), 0);
    /* below the mark: OK; the send that reaches it: BACKPRESSURE */
    for (;;) {
        before = zk_conn_buffered(s->conn);
        rc = send_numbered(s->conn, sent);
        if (rc != ZK_SEND_OK) break;
        sent++;
        CHECK(zk_conn_buffered(s->conn) < 4096);
        if (sent > 100) break;
    }
    CHECK_EQ_INT(rc, ZK_SEND_BACKPRESSURE);
    sent++;
    CHECK_EQ_INT(zk_conn_buffered(s->conn), before + FRAME);
    CHECK(zk_conn_buffered(s->conn) >= 4096);
    CHECK_EQ_INT(sent, 5);
    /* over the mark, still queued until the limit */
    for (;;) {
        before = zk_conn_buffered(s->conn);
        rc = send_numbered(s->conn, sent);
        if (rc != ZK_SEND_BACKPRESSURE) break;
        sent++;
        if (sent > 100) break;
    }
    CHECK_EQ_INT(rc, ZK_EBACKPRESSURE);
    CHECK_EQ_INT(zk_conn_buffered(s->conn), before); /* nothing queued */
    CHECK(before + FRAME > 16384);
    CHECK_EQ_INT(sent, 16);
    /* the transport takes what fits; the reader is stalled */
    pump(w->loop);
    CHECK_EQ_INT(c->messages, 0);
    CHECK_EQ_INT(s->drains, 0);
    CHECK_EQ_INT(zk_conn_buffered(s->conn), 16 * FRAME - 2048);
    CHECK_EQ_INT(send_numbered(s->conn, sent), ZK_SEND_BACKPRESSURE);
    sent++;
    zk_loop_advance(w->loop, 1000);
    CHECK_EQ_INT(c->messages, 0);
    /* resume: everything arrives in order, and on_drain fires once */
    CHECK_EQ_INT(zk_loopback_stall(c->conn, 0), 0);
    pump(w->loop);
    CHECK_EQ_INT(c->messages, (int)sent);
    CHECK(check_numbered(&c->all, sent));
    CHECK_EQ_INT(s->drains, 1);
    CHECK_EQ_INT(zk_conn_buffered(s->conn), 0);
    CHECK_EQ_INT(send_numbered(s->conn, sent), ZK_SEND_OK);
    sent++;
    pump(w->loop);
    CHECK_EQ_INT(c->messages, (int)sent);
    CHECK_EQ_INT(s->drains, 1);
    CHECK_EQ_INT(c->closes + s->closes, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(on_drain_does_not_fire_without_backpressure) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c;
    int i;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    for (i = 0; i < 100; i++) CHECK_EQ_INT(zk_conn_send(c->conn, "x", 1, 0), ZK_SEND_OK);
    pump(w->loop);
    CHECK_EQ_INT(c->drains, 0);
    CHECK_EQ_INT(w->srv[0].drains, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

/* The server's queue holds data the stalled client has not read; the
   client pings. The pong goes ahead of the queued data not yet started. */
static void ping_behind_queued_data(size_t high_water, unsigned count, int check_position) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_loopback_opts lo;
    side *c, *s;
    unsigned i;
    memset(&lo, 0, sizeof lo);
    lo.capacity = 2048;
    so.write_high_water = high_water;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", &lo);
    pump(w->loop);
    s = &w->srv[0];
    zk_loopback_stall(c->conn, 1);
    for (i = 0; i < count; i++) CHECK(send_numbered(s->conn, i) >= 0);
    pump(w->loop);
    CHECK(zk_conn_buffered(s->conn) > 10000);
    CHECK_EQ_INT(zk_conn_ping(c->conn, "hb", 2), 0);
    pump(w->loop); /* the server reads the ping: its queue is still full */
    CHECK_EQ_INT(c->pongs, 0);
    zk_loopback_stall(c->conn, 0);
    pump(w->loop);
    CHECK_EQ_INT(c->messages, (int)count);
    CHECK(check_numbered(&c->all, count));
    CHECK_EQ_INT(c->pongs, 1);
    CHECK(strcmp(c->pong, "hb") == 0);
    /* what was in the transport (2 KiB: two whole frames and the start of
       a third) came first, then the pong, then the frames not yet started */
    if (check_position) {
        CHECK(c->pongs == 0 || c->messages_at_pong <= 3);
        if (c->pongs && c->messages_at_pong > 3)
            printf("  the pong came after %d of %u messages\n", c->messages_at_pong, count);
    }
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(pong_goes_ahead_of_queued_data) { ping_behind_queued_data(0, 40, 1); }
TEST(ping_is_answered_while_the_queue_is_over_high_water) { ping_behind_queued_data(4096, 40, 0); }

/* ---- closing ---------------------------------------------------------------- */

TEST(client_close_1000_is_clean_on_both_ends) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c, *s;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    CHECK_EQ_INT(zk_conn_close(c->conn, 1000, "bye"), 0);
    CHECK_EQ_INT(c->closes, 0); /* on_close waits for the answer */
    pump(w->loop);
    CHECK_EQ_INT(s->closes, 1);
    CHECK_EQ_INT(s->close_code, 1000);
    CHECK(strcmp(s->close_reason, "bye") == 0);
    CHECK_EQ_INT(s->close_clean, 1);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1000);
    CHECK_EQ_INT(c->close_clean, 1);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(server_close_4001_reaches_the_client) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c, *s;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    CHECK_EQ_INT(zk_conn_close(s->conn, 4001, "maintenance"), 0);
    pump(w->loop);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 4001);
    CHECK(strcmp(c->close_reason, "maintenance") == 0);
    CHECK_EQ_INT(c->close_clean, 1);
    CHECK_EQ_INT(s->closes, 1);
    CHECK_EQ_INT(s->close_code, 4001);
    CHECK_EQ_INT(s->close_clean, 1);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(close_without_a_code_is_seen_as_1005) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c, *s;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    CHECK_EQ_INT(zk_conn_close(c->conn, 0, NULL), 0);
    pump(w->loop);
    CHECK_EQ_INT(s->closes, 1);
    CHECK_EQ_INT(s->close_code, 1005);
    CHECK_EQ_INT(s->close_clean, 1);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1005);
    CHECK_EQ_INT(c->close_clean, 1);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(close_with_a_code_one_may_not_send_is_refused) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c;
    char long_reason[200];
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    memset(long_reason, 'r', sizeof long_reason - 1);
    long_reason[sizeof long_reason - 1] = '\0';
    CHECK(zk_conn_close(c->conn, 1005, NULL) < 0);
    CHECK(zk_conn_close(c->conn, 1006, NULL) < 0);
    CHECK(zk_conn_close(c->conn, 999, NULL) < 0);
    CHECK(zk_conn_close(c->conn, 1000, long_reason) < 0); /* over 123 bytes */
    CHECK(c->conn != NULL);
    /* still open and usable */
    CHECK_EQ_INT(zk_conn_send(c->conn, "still", 5, 0), ZK_SEND_OK);
    pump(w->loop);
    CHECK_EQ_INT(c->messages, 1);
    CHECK_EQ_INT(c->closes, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(queued_messages_go_before_the_close) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c, *s;
    server_new(w, &so);
    w->server_echo = 0;
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    CHECK_EQ_INT(zk_conn_send(c->conn, "one", 3, 0), ZK_SEND_OK);
    CHECK_EQ_INT(zk_conn_send(c->conn, "two", 3, 0), ZK_SEND_OK);
    CHECK_EQ_INT(zk_conn_send(c->conn, "three", 5, 0), ZK_SEND_OK);
    CHECK_EQ_INT(zk_conn_close(c->conn, 1000, "after three"), 0);
    pump(w->loop);
    CHECK_EQ_INT(s->messages_at_close, 3);
    CHECK_MEM(s->all.p, s->all.len, "onetwothree", 11);
    CHECK_EQ_INT(s->close_code, 1000);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(messages_from_the_peer_still_arrive_while_closing) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_loopback_opts lo;
    side *c, *s;
    memset(&lo, 0, sizeof lo);
    lo.delay_ms = 10;
    server_new(w, &so);
    w->server_echo = 0;
    c = connect_lb_url(w, "ws://loopback/", &lo);
    zk_loop_advance(w->loop, 20);
    s = &w->srv[0];
    CHECK_EQ_INT(c->opens, 1);
    /* both queue data, then the client closes: the server's data was on
       the wire before it saw the close, so the client still gets it */
    CHECK_EQ_INT(zk_conn_send(s->conn, "in flight", 9, 0), ZK_SEND_OK);
    CHECK_EQ_INT(zk_conn_close(c->conn, 1000, NULL), 0);
    zk_loop_advance(w->loop, 100);
    CHECK_EQ_INT(c->messages, 1);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1000);
    CHECK_EQ_INT(c->messages_at_close, 1);
    CHECK_EQ_INT(s->closes, 1);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(close_the_peer_never_answers_times_out_with_1006) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_conn_opts co;
    side *c, *s;
    uint64_t t0;
    so.idle_timeout_ms = 60000;
    server_new(w, &so);
    co = client_opts("ws://loopback/");
    co.close_timeout_ms = 2000;
    c = connect_lb(w, &co, NULL);
    pump(w->loop);
    s = &w->srv[0];
    t0 = zk_loop_now(w->loop);
    CHECK_EQ_INT(zk_conn_close(c->conn, 1000, "bye"), 0);
    CHECK_EQ_INT(zk_loopback_silence(c->conn, 1), 0);
    pump(w->loop);
    zk_loop_advance(w->loop, 1999);
    CHECK_EQ_INT(c->closes, 0);
    zk_loop_advance(w->loop, 1);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1006);
    CHECK_EQ_INT(c->close_clean, 0);
    CHECK_EQ_INT(c->close_at, t0 + 2000);
    CHECK_EQ_INT(s->closes, 0); /* the server heard nothing: still open */
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(server_close_unanswered_times_out_after_close_timeout) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c, *s;
    so.close_timeout_ms = 700;
    so.idle_timeout_ms = 60000;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    zk_loopback_stall(c->conn, 1); /* the client reads nothing, answers nothing */
    CHECK_EQ_INT(zk_conn_close(s->conn, 1001, NULL), 0);
    pump(w->loop);
    zk_loop_advance(w->loop, 699);
    CHECK_EQ_INT(s->closes, 0);
    zk_loop_advance(w->loop, 1);
    CHECK_EQ_INT(s->closes, 1);
    CHECK_EQ_INT(s->close_code, 1006);
    CHECK_EQ_INT(s->close_clean, 0);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    CHECK_EQ_INT(c->closes, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(loopback_drop_gives_1006_on_both_ends) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c, *s, *d;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    d = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    CHECK_EQ_INT(zk_loopback_drop(c->conn), 0);
    pump(w->loop);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1006);
    CHECK_EQ_INT(c->close_clean, 0);
    CHECK_EQ_INT(s->closes, 1);
    CHECK_EQ_INT(s->close_code, 1006);
    CHECK_EQ_INT(s->close_clean, 0);
    CHECK_EQ_INT(d->closes, 0); /* the other pair is untouched */
    CHECK_EQ_INT(zk_server_connections(w->server), 1);
    /* either end may drop */
    CHECK_EQ_INT(zk_loopback_drop(w->srv[1].conn), 0);
    pump(w->loop);
    CHECK_EQ_INT(d->closes, 1);
    CHECK_EQ_INT(d->close_code, 1006);
    CHECK_EQ_INT(w->srv[1].close_code, 1006);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(abort_gives_1006_at_once_and_to_the_peer) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c, *d, *s;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    d = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    CHECK_EQ_INT(zk_conn_send(c->conn, "never sent", 10, 0), ZK_SEND_OK);
    zk_conn_abort(c->conn);
    CHECK_EQ_INT(c->closes, 1); /* during the call */
    CHECK_EQ_INT(c->close_code, 1006);
    CHECK_EQ_INT(c->close_clean, 0);
    pump(w->loop);
    CHECK_EQ_INT(s->closes, 1);
    CHECK_EQ_INT(s->close_code, 1006);
    CHECK_EQ_INT(s->close_clean, 0);
    CHECK_EQ_INT(s->messages, 0);
    /* the server aborting its end */
    zk_conn_abort(w->srv[1].conn);
    CHECK_EQ_INT(w->srv[1].closes, 1);
    pump(w->loop);
    CHECK_EQ_INT(d->closes, 1);
    CHECK_EQ_INT(d->close_code, 1006);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(abort_inside_on_message_stops_delivery) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    w->srv[0].abort_on_message = 1;
    w->srv[0].echo = 0;
    zk_conn_send(c->conn, "1", 1, 0);
    zk_conn_send(c->conn, "2", 1, 0);
    zk_conn_send(c->conn, "3", 1, 0);
    pump(w->loop);
    CHECK_EQ_INT(w->srv[0].messages, 1);
    CHECK_EQ_INT(w->srv[0].closes, 1);
    CHECK_EQ_INT(w->srv[0].close_code, 1006);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1006);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(close_inside_on_message_is_clean) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    w->srv[0].close_on_message = 4200;
    w->srv[0].echo = 0;
    zk_conn_send(c->conn, "bye please", 10, 0);
    pump(w->loop);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 4200);
    CHECK(strcmp(c->close_reason, "from on_message") == 0);
    CHECK_EQ_INT(c->close_clean, 1);
    CHECK_EQ_INT(w->srv[0].close_code, 4200);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

/* Runs fn in a child process, so that a crash (an assertion in the library)
   fails this test instead of ending the whole run. The child's exit status
   is the number of failed checks. */
static int in_child(void (*fn)(void), const char *what) {
    pid_t pid;
    int status = 0;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        int before = test__failed_checks;
        fn();
        fflush(stdout);
        _exit(test__failed_checks - before > 0 ? 1 : 0);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return 0;
    if (WIFSIGNALED(status)) {
        printf("  %s: the child died of signal %d\n", what, WTERMSIG(status));
        return 0;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void calls_in_on_close_after_peer_close(void) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    w->srv[0].call_in_close = 1;
    zk_conn_close(c->conn, 1000, NULL);
    pump(w->loop);
    CHECK_EQ_INT(w->srv[0].closes, 1);
    CHECK_EQ_INT(w->srv[0].send_in_close_rc, ZK_ECLOSED);
    CHECK_EQ_INT(w->srv[0].close_in_close_rc, ZK_ECLOSED);
    world_free(w);
    CHECK_ALL_FREED();
}

static void calls_in_on_close_after_drop(void) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    w->srv[0].call_in_close = 1;
    zk_loopback_drop(c->conn);
    pump(w->loop);
    CHECK_EQ_INT(w->srv[0].closes, 1);
    CHECK_EQ_INT(w->srv[0].send_in_close_rc, ZK_ECLOSED);
    CHECK_EQ_INT(w->srv[0].close_in_close_rc, ZK_ECLOSED);
    world_free(w);
    CHECK_ALL_FREED();
}

static void calls_in_on_close_after_protocol_error(void) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c;
    unsigned char f[32];
    size_t n;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    w->srv[0].call_in_close = 1;
    n = client_frame(f, ZK_WS_TEXT, 1, "\xc3\x28", 2, 1);
    inject(c->conn, f, n);
    pump(w->loop);
    CHECK_EQ_INT(w->srv[0].closes, 1);
    CHECK_EQ_INT(w->srv[0].send_in_close_rc, ZK_ECLOSED);
    CHECK_EQ_INT(w->srv[0].close_in_close_rc, ZK_ECLOSED);
    world_free(w);
    CHECK_ALL_FREED();
}

/* on_close says the connection is gone: a send (or close) made in it must
   report ZK_ECLOSED, whatever ended the connection. */
TEST(send_inside_on_close_after_the_peer_closed_reports_closed) {
    CHECK(in_child(calls_in_on_close_after_peer_close, "after the peer's close"));
}
TEST(send_inside_on_close_after_a_drop_reports_closed) {
    CHECK(in_child(calls_in_on_close_after_drop, "after a drop"));
}
TEST(send_inside_on_close_after_a_protocol_error_reports_closed) {
    CHECK(in_child(calls_in_on_close_after_protocol_error, "after a protocol error"));
}

/* ---- deadlines and heartbeats --------------------------------------------- */

TEST(upgrade_not_sent_is_closed_at_the_handshake_deadline) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    raw r, r2;
    so.handshake_timeout_ms = 1000;
    server_new(w, &so);
    raw_open(&r, w->server, NULL);
    raw_open(&r2, w->server, NULL);
    raw_send(&r2, "GET / HT", 8); /* a request that never ends */
    CHECK_EQ_INT(zk_server_connections(w->server), 2);
    pump(w->loop);
    zk_loop_advance(w->loop, 999);
    raw_recv(&r);
    raw_recv(&r2);
    CHECK(!r.eof && !r.reset);
    CHECK(!r2.eof && !r2.reset);
    CHECK_EQ_INT(zk_server_connections(w->server), 2);
    zk_loop_advance(w->loop, 1);
    raw_recv(&r);
    raw_recv(&r2);
    CHECK(r.eof || r.reset);
    CHECK(r2.eof || r2.reset);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    CHECK_EQ_INT(w->nsrv, 0);
    raw_close(&r);
    raw_close(&r2);
    world_free(w);
    CHECK_ALL_FREED();
}

/* message_timeout_ms: a message must be whole within it of its first byte,
   however the peer trickles it (bytes of one frame, or whole fragments). */
TEST(message_not_whole_at_the_deadline_is_closed_with_1008) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    unsigned char f[256];
    char text[100];
    size_t n, k;
    side *trickle, *frags, *steady;
    int i;
    so.message_timeout_ms = 1000;
    so.idle_timeout_ms = 60000;
    server_new(w, &so);
    trickle = connect_lb_url(w, "ws://loopback/", NULL);
    frags = connect_lb_url(w, "ws://loopback/", NULL);
    steady = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    CHECK_EQ_INT(w->nsrv, 3);
    memset(text, 'a', sizeof text);
    /* one frame, a few bytes at a time: the bytes do not restart the clock */
    n = client_frame(f, ZK_WS_TEXT, 1, text, sizeof text, 1);
    inject(trickle->conn, f, 10);
    /* whole fragments of a message that never ends */
    k = client_frame(f + 128, ZK_WS_TEXT, 0, "a", 1, 1);
    inject(frags->conn, f + 128, k);
    pump(w->loop);
    for (i = 1; i <= 3; i++) {
        zk_loop_advance(w->loop, 333);
        inject(trickle->conn, f + 10 * i, 10);
        k = client_frame(f + 128, ZK_WS_CONTINUATION, 0, "a", 1, 1);
        inject(frags->conn, f + 128, k);
        pump(w->loop);
    }
    CHECK_EQ_INT(trickle->closes + frags->closes, 0);
    zk_loop_advance(w->loop, 1); /* 1000 ms after the first byte */
    pump(w->loop);
    CHECK_EQ_INT(trickle->closes, 1);
    CHECK_EQ_INT(trickle->close_code, 1008);
    CHECK(strcmp(trickle->close_reason, "message too slow") == 0);
    CHECK_EQ_INT(frags->closes, 1);
    CHECK_EQ_INT(frags->close_code, 1008);
    CHECK_EQ_INT(w->srv[0].messages + w->srv[1].messages, 0);
    /* messages that each take 900 ms, one after another, are fine: the
       deadline is per message, and a complete one resets it */
    for (i = 0; i < 5; i++) {
        k = client_frame(f + 128, ZK_WS_TEXT, 1, "hello", 5, 1);
        inject(steady->conn, f + 128, 3);
        pump(w->loop);
        zk_loop_advance(w->loop, 900);
        inject(steady->conn, f + 131, k - 3);
        pump(w->loop);
    }
    CHECK_EQ_INT(steady->closes, 0);
    CHECK_EQ_INT(w->srv[2].messages, 5);
    CHECK_EQ_INT(zk_server_connections(w->server), 1);
    (void)n;
    world_free(w);
    CHECK_ALL_FREED();
}

/* The message clock starts at each message's (or control frame's) own
   first byte: a ping split across reads ends its clock, and a message that
   starts in the read that finished the ping is timed from that read. */
TEST(message_deadline_restarts_after_a_split_ping) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    unsigned char ping[16], msg[64], both[80];
    size_t np, nm;
    side *c;
    so.message_timeout_ms = 1000;
    so.idle_timeout_ms = 60000;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    np = client_frame(ping, ZK_WS_PING, 1, "hb", 2, 1);
    nm = client_frame(msg, ZK_WS_TEXT, 1, "hello there", 11, 1);
    inject(c->conn, ping, 3); /* half a ping */
    pump(w->loop);
    zk_loop_advance(w->loop, 900);
    memcpy(both, ping + 3, np - 3); /* the rest of it, and half a message */
    memcpy(both + np - 3, msg, 5);
    inject(c->conn, both, np - 3 + 5);
    pump(w->loop);
    zk_loop_advance(w->loop, 900); /* 1800 ms after the ping began, 900 after the message */
    CHECK_EQ_INT(c->closes, 0);
    CHECK_EQ_INT(c->pongs, 1);
    if (!c->conn) { /* closed: the failures above say why */
        world_free(w);
        return;
    }
    inject(c->conn, msg + 5, nm - 5);
    pump(w->loop);
    CHECK_EQ_INT(w->srv[0].messages, 1);
    /* and an idle connection that only sends split pings stays open */
    inject(c->conn, ping, 3);
    pump(w->loop);
    inject(c->conn, ping + 3, np - 3);
    pump(w->loop);
    zk_loop_advance(w->loop, 5000);
    CHECK_EQ_INT(c->closes, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

/* A message still arriving when the server starts closing is bounded by
   close_timeout_ms alone (its deadline passing then must not spin). */
TEST(message_arriving_while_closing_ends_at_the_close_timeout) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    unsigned char msg[64];
    side *c, *s;
    uint64_t t0;
    so.message_timeout_ms = 500;
    so.close_timeout_ms = 2000;
    so.idle_timeout_ms = 60000;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    client_frame(msg, ZK_WS_TEXT, 1, "hello there", 11, 1);
    inject(c->conn, msg, 4);
    pump(w->loop);
    CHECK_EQ_INT(zk_loopback_stall(c->conn, 1), 0); /* the client will not see our close */
    t0 = zk_loop_now(w->loop);
    CHECK_EQ_INT(zk_conn_close(s->conn, 1001, "going away"), 0);
    pump(w->loop);
    zk_loop_advance(w->loop, 1999); /* past the message deadline: no 1008, no spin */
    CHECK_EQ_INT(s->closes, 0);
    zk_loop_advance(w->loop, 1);
    CHECK_EQ_INT(s->closes, 1);
    CHECK_EQ_INT(s->close_at, t0 + 2000);
    world_free(w);
    CHECK_ALL_FREED();
}

/* write_timeout_ms: bytes queued that the peer takes none of for that long
   drop the connection; a peer that reads now and then is not dropped. */
TEST(peer_that_reads_nothing_is_dropped_at_the_write_deadline) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_loopback_opts lo;
    side *stuck, *slow, *s;
    unsigned char big[1000];
    uint64_t t0;
    int i, j;
    memset(&lo, 0, sizeof lo);
    memset(big, 'x', sizeof big);
    lo.capacity = 2048;
    so.write_timeout_ms = 1000;
    so.idle_timeout_ms = 60000;
    server_new(w, &so);
    stuck = connect_lb_url(w, "ws://loopback/", &lo);
    slow = connect_lb_url(w, "ws://loopback/", &lo);
    pump(w->loop);
    CHECK_EQ_INT(zk_loopback_stall(stuck->conn, 1), 0);
    CHECK_EQ_INT(zk_loopback_stall(slow->conn, 1), 0);
    s = &w->srv[0];
    for (i = 0; i < 10; i++) CHECK(zk_conn_send(w->srv[0].conn, big, sizeof big, 1) >= 0);
    pump(w->loop);
    t0 = zk_loop_now(w->loop);
    CHECK(zk_conn_buffered(s->conn) > 0);
    /* the slow one reads everything every 900 ms and gets more each time */
    for (j = 0; j < 5; j++) {
        for (i = 0; i < 10; i++) CHECK(zk_conn_send(w->srv[1].conn, big, sizeof big, 1) >= 0);
        pump(w->loop);
        zk_loop_advance(w->loop, 900);
        CHECK_EQ_INT(zk_loopback_stall(slow->conn, 0), 0);
        pump(w->loop);
        CHECK_EQ_INT(zk_loopback_stall(slow->conn, 1), 0);
        if (j == 0) {
            zk_loop_advance(w->loop, 99); /* 999 ms in: the stuck one is still there */
            CHECK_EQ_INT(s->closes, 0);
            zk_loop_advance(w->loop, 1);
            CHECK_EQ_INT(s->closes, 1);
            CHECK_EQ_INT(s->close_code, 1006);
            CHECK(strcmp(s->close_reason, "peer did not read") == 0);
            CHECK_EQ_INT(s->close_at, t0 + 1000);
        }
    }
    CHECK_EQ_INT(slow->messages, 50);
    CHECK_EQ_INT(w->srv[1].closes + slow->closes, 0);
    CHECK_EQ_INT(zk_server_connections(w->server), 1);
    CHECK_EQ_INT(zk_loopback_stall(stuck->conn, 0), 0);
    pump(w->loop);
    CHECK_EQ_INT(stuck->closes, 1);
    CHECK_EQ_INT(stuck->close_code, 1006);
    world_free(w);
    CHECK_ALL_FREED();
}

/* A client that sends and does not read its answers: past the high-water
   mark the server stops reading it, so the echoes wait in the client's
   own window rather than pushing the server's queue to its write limit
   (where answers would be refused); when it reads, every one arrives. */
TEST(server_stops_reading_a_peer_that_does_not_read_its_answers) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_loopback_opts lo;
    side *c, *s;
    unsigned i;
    int seen;
    memset(&lo, 0, sizeof lo);
    lo.capacity = 2048;
    so.write_high_water = 4096;
    so.write_limit = 16384;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", &lo);
    pump(w->loop);
    s = &w->srv[0];
    CHECK_EQ_INT(zk_loopback_stall(c->conn, 1), 0);
    for (i = 0; i < 100; i++) CHECK(send_numbered(c->conn, i) >= 0);
    pump(w->loop);
    seen = s->messages;
    CHECK(seen > 0 && seen < 10);
    CHECK(zk_conn_buffered(s->conn) >= 4096 && zk_conn_buffered(s->conn) < 4096 + 1004);
    zk_loop_advance(w->loop, 1000);
    pump(w->loop);
    CHECK_EQ_INT(s->messages, seen); /* paused: nothing more was read */
    CHECK_EQ_INT(s->send_errors, 0);
    CHECK_EQ_INT(zk_loopback_stall(c->conn, 0), 0);
    pump(w->loop);
    CHECK_EQ_INT(s->messages, 100);
    CHECK_EQ_INT(c->messages, 100);
    CHECK(check_numbered(&c->all, 100));
    CHECK_EQ_INT(s->send_errors, 0);
    CHECK_EQ_INT(c->closes + s->closes, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

/* While the server does not read a peer, the peer cannot be heard: no
   ping times it out and no message deadline runs. write_timeout_ms still
   drops a peer that takes nothing. */
TEST(paused_peer_is_timed_by_the_write_deadline_alone) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_loopback_opts lo;
    side *c, *s;
    unsigned i;
    int step;
    memset(&lo, 0, sizeof lo);
    lo.capacity = 2500; /* two whole frames and part of a third in flight */
    so.write_high_water = 4096;
    so.idle_timeout_ms = 1000;
    so.pong_timeout_ms = 500;
    so.message_timeout_ms = 1000;
    so.write_timeout_ms = 20000;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", &lo);
    pump(w->loop);
    s = &w->srv[0];
    /* the client reads nothing for 15 s, 15 idle timeouts */
    CHECK_EQ_INT(zk_loopback_stall(c->conn, 1), 0);
    for (i = 0; i < 40; i++) CHECK(send_numbered(c->conn, i) >= 0);
    pump(w->loop);
    CHECK(s->messages < 40);
    for (step = 0; step < 30; step++) {
        zk_loop_advance(w->loop, 500);
        pump(w->loop);
        CHECK_EQ_INT(s->closes, 0);
        if (s->closes) break;
    }
    if (!c->conn) { /* failed above: the rest would use a freed connection */
        world_free(w);
        return;
    }
    CHECK(s->messages < 40);
    CHECK_EQ_INT(zk_loopback_stall(c->conn, 0), 0);
    pump(w->loop);
    CHECK_EQ_INT(c->messages, 40);
    CHECK(check_numbered(&c->all, 40));
    CHECK_EQ_INT(s->closes + c->closes, 0);
    /* heartbeats work again once it reads */
    zk_loop_advance(w->loop, 5000);
    pump(w->loop);
    CHECK_EQ_INT(s->closes + c->closes, 0);
    /* a peer that stops reading for good is dropped at the write deadline */
    if (!c->conn) {
        world_free(w);
        return;
    }
    CHECK_EQ_INT(zk_loopback_stall(c->conn, 1), 0);
    for (i = 0; i < 40; i++) CHECK(send_numbered(c->conn, i) >= 0);
    pump(w->loop);
    zk_loop_advance(w->loop, 19000);
    pump(w->loop);
    CHECK_EQ_INT(s->closes, 0);
    zk_loop_advance(w->loop, 1000);
    pump(w->loop);
    CHECK_EQ_INT(s->closes, 1);
    CHECK(strcmp(s->close_reason, "peer did not read") == 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(healthy_client_stays_open_through_heartbeats) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c, *s;
    so.idle_timeout_ms = 1000;
    so.pong_timeout_ms = 500;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    zk_loop_advance(w->loop, 10000);
    CHECK_EQ_INT(c->closes, 0);
    CHECK_EQ_INT(s->closes, 0);
    if (s->closes) printf("  the server closed it at %llu ms with %d\n", (unsigned long long)s->close_at, s->close_code);
    CHECK_EQ_INT(zk_server_connections(w->server), 1);
    CHECK(s->pongs >= 5); /* pinged when idle, answered by the client */
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(healthy_client_with_latency_stays_open_through_heartbeats) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_loopback_opts lo;
    side *c, *s;
    memset(&lo, 0, sizeof lo);
    lo.delay_ms = 20;
    so.idle_timeout_ms = 1000;
    so.pong_timeout_ms = 500;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", &lo);
    zk_loop_advance(w->loop, 100);
    s = &w->srv[0];
    zk_loop_advance(w->loop, 10000);
    CHECK_EQ_INT(c->closes, 0);
    CHECK_EQ_INT(s->closes, 0);
    CHECK(s->pongs >= 5);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(busy_client_is_never_pinged) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c, *s;
    int i;
    so.idle_timeout_ms = 1000;
    so.pong_timeout_ms = 500;
    server_new(w, &so);
    w->server_echo = 0;
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    for (i = 0; i < 40; i++) { /* a message every 250 ms for 10 s */
        zk_conn_send(c->conn, "tick", 4, 0);
        zk_loop_advance(w->loop, 250);
    }
    CHECK_EQ_INT(s->closes, 0);
    CHECK_EQ_INT(s->pongs, 0);
    CHECK_EQ_INT(s->messages, 40);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(silent_client_is_closed_after_idle_plus_pong_timeout) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c, *s;
    uint64_t t0;
    so.idle_timeout_ms = 1000;
    so.pong_timeout_ms = 500;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    t0 = s->open_at;
    CHECK_EQ_INT(zk_loopback_silence(c->conn, 1), 0);
    zk_loop_advance(w->loop, 1499);
    CHECK_EQ_INT(s->closes, 0);
    zk_loop_advance(w->loop, 1);
    CHECK_EQ_INT(s->closes, 1);
    CHECK_EQ_INT(s->close_code, 1006);
    CHECK_EQ_INT(s->close_clean, 0);
    CHECK_EQ_INT(s->close_at, t0 + 1500);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    CHECK_EQ_INT(c->closes, 0); /* a half-open client learns nothing */
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- graceful shutdown ------------------------------------------------------ */

TEST(shutdown_closes_every_client_with_1001) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c[3];
    int i, err = 0;
    server_new(w, &so);
    for (i = 0; i < 3; i++) c[i] = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    CHECK_EQ_INT(zk_server_connections(w->server), 3);
    zk_server_shutdown(w->server, 1000, on_shutdown_done);
    pump(w->loop);
    for (i = 0; i < 3; i++) {
        CHECK_EQ_INT(c[i]->closes, 1);
        CHECK_EQ_INT(c[i]->close_code, 1001);
        CHECK_EQ_INT(c[i]->close_clean, 1);
        CHECK_EQ_INT(w->srv[i].closes, 1);
        CHECK_EQ_INT(w->srv[i].close_code, 1001);
    }
    CHECK_EQ_INT(w->shutdown_done, 1);
    CHECK_EQ_INT(w->shutdown_done_at, 0);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    /* no new connections */
    {
        zk_conn_opts co = client_opts("ws://loopback/");
        zk_conn *late = zk_loopback_connect(w->server, &co, NULL, &err);
        CHECK(late == NULL);
        CHECK(err < 0);
        if (late) zk_conn_abort(late);
    }
    zk_loop_advance(w->loop, 5000);
    CHECK_EQ_INT(w->shutdown_done, 1);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(shutdown_drops_a_client_that_never_answers_at_the_timeout) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c[3];
    int i;
    server_new(w, &so);
    for (i = 0; i < 3; i++) c[i] = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    zk_loopback_silence(c[2]->conn, 1);
    zk_server_shutdown(w->server, 1000, on_shutdown_done);
    pump(w->loop);
    CHECK_EQ_INT(c[0]->close_code, 1001);
    CHECK_EQ_INT(c[1]->close_code, 1001);
    CHECK_EQ_INT(zk_server_connections(w->server), 1);
    CHECK_EQ_INT(w->shutdown_done, 0);
    zk_loop_advance(w->loop, 999);
    CHECK_EQ_INT(w->shutdown_done, 0);
    CHECK_EQ_INT(w->srv[2].closes, 0);
    zk_loop_advance(w->loop, 1);
    CHECK_EQ_INT(w->shutdown_done, 1);
    CHECK_EQ_INT(w->shutdown_done_at, 1000);
    CHECK_EQ_INT(w->srv[2].closes, 1);
    CHECK_EQ_INT(w->srv[2].close_code, 1006);
    CHECK_EQ_INT(w->srv[2].close_clean, 0);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(shutdown_with_no_connections_is_done_at_once) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    server_new(w, &so);
    zk_server_shutdown(w->server, 0, on_shutdown_done);
    CHECK_EQ_INT(w->shutdown_done, 1);
    zk_server_shutdown(w->server, 0, on_shutdown_done); /* twice: nothing more */
    CHECK_EQ_INT(w->shutdown_done, 1);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(server_freed_with_open_connections_leaks_nothing) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    side *c[4];
    int i;
    server_new(w, &so);
    for (i = 0; i < 4; i++) c[i] = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    zk_conn_send(c[0]->conn, "queued", 6, 0);
    zk_conn_send(w->srv[1].conn, "queued", 6, 0);
    zk_loopback_stall(c[2]->conn, 1);
    zk_server_free(w->server);
    w->server = NULL;
    for (i = 0; i < 4; i++) {
        CHECK_EQ_INT(w->srv[i].closes, 1);
        CHECK_EQ_INT(w->srv[i].close_code, 1006);
    }
    pump(w->loop);
    CHECK_EQ_INT(c[0]->closes, 1);
    CHECK_EQ_INT(c[0]->close_code, 1006);
    CHECK_EQ_INT(c[1]->close_code, 1006);
    CHECK_EQ_INT(c[3]->close_code, 1006);
    /* c[2] is stalled and still open: world_free aborts it */
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(clients_freed_with_open_connections_leak_nothing) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_loopback_opts lo;
    int i;
    memset(&lo, 0, sizeof lo);
    lo.delay_ms = 5;
    server_new(w, &so);
    for (i = 0; i < 4; i++) connect_lb_url(w, "ws://loopback/", &lo);
    zk_loop_advance(w->loop, 20);
    zk_conn_send(w->cli[0].conn, "in flight", 9, 0);
    pump(w->loop);
    zk_loop_advance(w->loop, 2); /* bytes in the pair when it goes */
    for (i = 0; i < 4; i++) zk_conn_abort(w->cli[i].conn);
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- protocol errors reach the user ----------------------------------------- */

TEST(invalid_utf8_text_closes_with_1007) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    unsigned char f[32];
    size_t n;
    side *c, *s;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    n = client_frame(f, ZK_WS_TEXT, 1, "ok \xc3\x28", 5, 1);
    inject(c->conn, f, n);
    pump(w->loop);
    CHECK_EQ_INT(s->messages, 0);
    CHECK_EQ_INT(s->closes, 1);
    CHECK_EQ_INT(s->close_code, 1007);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1007);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(unmasked_client_frame_closes_with_1002) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    unsigned char f[32];
    size_t n;
    side *c, *s;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    n = client_frame(f, ZK_WS_BINARY, 1, "abc", 3, 0);
    inject(c->conn, f, n);
    pump(w->loop);
    CHECK_EQ_INT(s->messages, 0);
    CHECK_EQ_INT(s->close_code, 1002);
    CHECK_EQ_INT(c->close_code, 1002);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(message_over_max_message_closes_with_1009) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    unsigned char m[1001];
    side *c, *s;
    so.max_message = 1000;
    server_new(w, &so);
    c = connect_lb_url(w, "ws://loopback/", NULL);
    pump(w->loop);
    s = &w->srv[0];
    fill_binary(m, sizeof m, 0);
    CHECK_EQ_INT(zk_conn_send(c->conn, m, 1000, 1), ZK_SEND_OK);
    pump(w->loop);
    CHECK_EQ_INT(s->messages, 1);
    CHECK_EQ_INT(c->messages, 1);
    CHECK_EQ_INT(zk_conn_send(c->conn, m, 1001, 1), ZK_SEND_OK); /* the limit is the server's */
    pump(w->loop);
    CHECK_EQ_INT(s->messages, 1);
    CHECK_EQ_INT(s->close_code, 1009);
    CHECK_EQ_INT(c->close_code, 1009);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(client_max_message_limits_what_the_server_sends) {
    world *w = world_new(1);
    zk_server_opts so = server_opts(w);
    zk_conn_opts co;
    unsigned char m[600];
    side *c;
    server_new(w, &so);
    co = client_opts("ws://loopback/");
    co.max_message = 500;
    c = connect_lb(w, &co, NULL);
    pump(w->loop);
    fill_binary(m, sizeof m, 1);
    CHECK_EQ_INT(zk_conn_send(w->srv[0].conn, m, 600, 1), ZK_SEND_OK);
    pump(w->loop);
    CHECK_EQ_INT(c->messages, 0);
    CHECK_EQ_INT(c->close_code, 1009);
    CHECK_EQ_INT(w->srv[0].close_code, 1009);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(fault_injection_refuses_tcp_connections) {
    world *w = world_new(0);
    zk_server_opts so = server_opts(w);
    zk_conn_opts co;
    side *c;
    char url[64];
    server_new(w, &so);
    CHECK_EQ_INT(zk_server_listen(w->server), 0);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", zk_server_port(w->server));
    co = client_opts(url);
    c = connect_tcp(w, &co);
    RUN_UNTIL(w->loop, c->opens == 1, 3000);
    CHECK_EQ_INT(c->opens, 1);
    if (c->conn) {
        CHECK_EQ_INT(zk_loopback_stall(c->conn, 1), ZK_EINVAL);
        CHECK_EQ_INT(zk_loopback_silence(c->conn, 1), ZK_EINVAL);
        CHECK_EQ_INT(zk_loopback_drop(c->conn), ZK_EINVAL);
    }
    world_free(w);
    CHECK_ALL_FREED();
}

/* ---- real TCP ---------------------------------------------------------------- */

static int tcp_echo(const char *host, const char *url_host) {
    world *w = world_new(0);
    zk_server_opts so = server_opts(w);
    zk_conn_opts co;
    side *c, *s;
    char url[128], peer[80], want[80];
    static const size_t sizes[] = {0, 125, 126, 65536, (size_t)1 << 20};
    unsigned char *msg = (unsigned char *)malloc((size_t)1 << 20);
    int port, rc, i;
    struct sockaddr_storage local;
    socklen_t local_len = sizeof local;
    so.host = host;
    w->welcome = "hello over tcp";
    server_new(w, &so);
    rc = zk_server_listen(w->server);
    if (rc != 0) {
        free(msg);
        world_free(w);
        return rc;
    }
    port = zk_server_port(w->server);
    CHECK(port > 0 && port < 65536);
    snprintf(url, sizeof url, "ws://%s:%d/echo?x=1", url_host, port);
    co = client_opts(url);
    c = connect_tcp(w, &co);
    RUN_UNTIL(w->loop, c->opens == 1, 3000);
    CHECK_EQ_INT(c->opens, 1);
    CHECK_EQ_INT(w->nsrv, 1);
    s = &w->srv[0];
    RUN_UNTIL(w->loop, c->messages == 1, 3000);
    CHECK_EQ_INT(c->messages, 1); /* sent by the server from on_open */
    CHECK_MEM(c->last.p, c->last.len, "hello over tcp", 14);
    CHECK(strcmp(s->path, "/echo") == 0);
    CHECK(strcmp(s->query, "x=1") == 0);
    if (c->conn && s->conn) {
        /* the client's peer is the server's address; the server's is the
           client's local address */
        snprintf(want, sizeof want, strchr(url_host, '[') ? "[::1]:%d" : "127.0.0.1:%d", port);
        CHECK(zk_conn_peer(c->conn, peer, sizeof peer) > 0);
        CHECK(strcmp(peer, want) == 0);
        getsockname(((zk__tcp *)(void *)c->conn->stream)->io.fd, (struct sockaddr *)&local, &local_len);
        snprintf(want, sizeof want, strchr(url_host, '[') ? "[::1]:%d" : "127.0.0.1:%d",
                 ntohs(local.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)(void *)&local)->sin6_port
                                                  : ((struct sockaddr_in *)(void *)&local)->sin_port));
        CHECK_EQ_INT(zk_conn_peer(s->conn, peer, sizeof peer), (int)strlen(want));
        CHECK(strcmp(peer, want) == 0);
        CHECK(zk_conn_peer(s->conn, peer, 4) < 0); /* too small */
    }
    for (i = 0; i < (int)(sizeof sizes / sizeof sizes[0]) && c->conn; i++) {
        int binary = i & 1, before = c->messages;
        if (binary) fill_binary(msg, sizes[i], (unsigned)i);
        else fill_text(msg, sizes[i]);
        CHECK(zk_conn_send(c->conn, msg, sizes[i], binary) >= 0);
        RUN_UNTIL(w->loop, c->messages > before || !c->conn, 5000);
        CHECK_EQ_INT(c->messages, before + 1);
        CHECK_MEM(c->last.p, c->last.len, msg, sizes[i]);
        CHECK_EQ_INT(c->last_binary, binary);
    }
    if (c->conn) CHECK_EQ_INT(zk_conn_close(c->conn, 1000, "bye"), 0);
    RUN_UNTIL(w->loop, c->closes && s->closes && zk_server_connections(w->server) == 0, 3000);
    CHECK_EQ_INT(c->close_code, 1000);
    CHECK_EQ_INT(c->close_clean, 1);
    CHECK_EQ_INT(s->close_code, 1000);
    CHECK(strcmp(s->close_reason, "bye") == 0);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    free(msg);
    world_free(w);
    return 0;
}

TEST(tcp_echo_over_127_0_0_1) {
    CHECK_EQ_INT(tcp_echo("127.0.0.1", "127.0.0.1"), 0);
    CHECK_ALL_FREED();
}

static int have_ipv6_loopback(void) {
    struct sockaddr_in6 a;
    int fd = socket(AF_INET6, SOCK_STREAM, 0), ok;
    if (fd < 0) return 0;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

TEST(tcp_echo_over_ipv6_loopback) {
    if (!have_ipv6_loopback()) {
        printf("  note: no IPv6 loopback (::1) here: tcp_echo_over_ipv6_loopback skipped\n");
        return;
    }
    CHECK_EQ_INT(tcp_echo("::1", "[::1]"), 0);
    CHECK_ALL_FREED();
}

TEST(tcp_listen_reports_address_in_use) {
    world *w = world_new(0);
    zk_server_opts so = server_opts(w);
    zk_server *second;
    server_new(w, &so);
    CHECK_EQ_INT(zk_server_port(w->server), 0); /* not listening yet */
    CHECK_EQ_INT(zk_server_listen(w->server), 0);
    CHECK(zk_server_port(w->server) > 0);
    so.port = zk_server_port(w->server);
    second = zk_server_new(w->loop, &so);
    CHECK_EQ_INT(zk_server_listen(second), ZK_EADDRINUSE);
    zk_server_free(second);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(tcp_connection_refused_gives_1006_without_open) {
    world *w = world_new(0);
    zk_conn_opts co;
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    char url[64];
    side *c;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    /* a port that was free a moment ago, and nobody listens on */
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ_INT(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", ntohs(a.sin_port));
    co = client_opts(url);
    c = connect_tcp(w, &co);
    RUN_UNTIL(w->loop, c->closes == 1, 3000);
    CHECK_EQ_INT(c->opens, 0);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1006);
    CHECK_EQ_INT(c->close_clean, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(tcp_bad_urls_are_refused_at_once) {
    zk_loop *loop = new_loop(0);
    zk_conn_opts co;
    static const char *const bad[] = {"http://127.0.0.1/", "ws://", "ws://127.0.0.1:99999/",
                                      "ws://127.0.0.1:0/", "ws://[::1/", "ws://127.0.0.1:80x/"};
    int i, err;
    for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        co = client_opts(bad[i]);
        err = 0;
        CHECK(zk_conn_connect(loop, &co, &err) == NULL);
        CHECK_EQ_INT(err, ZK_EINVAL);
    }
    co = client_opts(NULL);
    CHECK(zk_conn_connect(loop, &co, NULL) == NULL);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(tcp_client_connect_timeout_covers_the_upgrade) {
    /* a listener that accepts (the kernel does) but never answers */
    world *w = world_new(0);
    zk_conn_opts co;
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    char url[64];
    side *c;
    uint64_t t0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ_INT(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_EQ_INT(listen(fd, 4), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", ntohs(a.sin_port));
    co = client_opts(url);
    co.connect_timeout_ms = 100;
    zk_loop_step(w->loop, 0);
    t0 = zk_loop_now(w->loop); /* the timer counts on the loop's clock */
    c = connect_tcp(w, &co);
    RUN_UNTIL(w->loop, c->closes == 1, 3000);
    CHECK_EQ_INT(c->opens, 0);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1006);
    CHECK(c->close_at - t0 >= 100);
    CHECK(now_ms() - t0 >= 100);
    CHECK(now_ms() - t0 < 2000);
    close(fd);
    world_free(w);
    CHECK_ALL_FREED();
}

/* A plain blocking socket to the server, used without blocking reads. */
static int raw_tcp_connect(int port) {
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads what has arrived; returns 1 at end of stream or reset. */
static int raw_tcp_read(int fd, bytes *in) {
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            put(in, buf, (size_t)n);
            continue;
        }
        if (n == 0) return 1;
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : 1;
    }
}

TEST(tcp_client_silent_before_the_upgrade_is_closed_at_the_deadline) {
    world *w = world_new(0);
    zk_server_opts so = server_opts(w);
    bytes in, in2;
    int fd, fd2, done = 0, done2 = 0;
    uint64_t t0, took = 0, took2 = 0;
    memset(&in, 0, sizeof in);
    memset(&in2, 0, sizeof in2);
    so.handshake_timeout_ms = 100;
    server_new(w, &so);
    CHECK_EQ_INT(zk_server_listen(w->server), 0);
    t0 = now_ms();
    fd = raw_tcp_connect(zk_server_port(w->server));
    fd2 = raw_tcp_connect(zk_server_port(w->server));
    CHECK(fd >= 0 && fd2 >= 0);
    CHECK_EQ_INT(send(fd2, "G", 1, MSG_NOSIGNAL), 1); /* one byte, then nothing */
    while ((!done || !done2) && now_ms() - t0 < 3000) {
        zk_loop_step(w->loop, 5);
        if (!done && raw_tcp_read(fd, &in)) {
            done = 1;
            took = now_ms() - t0;
        }
        if (!done2 && raw_tcp_read(fd2, &in2)) {
            done2 = 1;
            took2 = now_ms() - t0;
        }
    }
    CHECK(done && done2);
    CHECK(took >= 100 && took < 2000);
    CHECK(took2 >= 100 && took2 < 2000);
    CHECK_EQ_INT(in.len, 0);
    RUN_UNTIL(w->loop, zk_server_connections(w->server) == 0, 1000);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    CHECK_EQ_INT(w->nsrv, 0);
    close(fd);
    close(fd2);
    bytes_free(&in);
    bytes_free(&in2);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(tcp_plain_http_request_gets_426) {
    static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    world *w = world_new(0);
    zk_server_opts so = server_opts(w);
    zk_http_response res;
    bytes in;
    int fd, done = 0;
    uint64_t t0 = now_ms();
    memset(&in, 0, sizeof in);
    server_new(w, &so);
    CHECK_EQ_INT(zk_server_listen(w->server), 0);
    fd = raw_tcp_connect(zk_server_port(w->server));
    CHECK(fd >= 0);
    CHECK_EQ_INT(send(fd, req, sizeof req - 1, MSG_NOSIGNAL), (ssize_t)(sizeof req - 1));
    while (!done && now_ms() - t0 < 3000) {
        zk_loop_step(w->loop, 5);
        done = raw_tcp_read(fd, &in);
    }
    CHECK(done);
    CHECK(zk_http_parse_response((const char *)in.p, in.len, 0, &res, NULL) > 0);
    CHECK_EQ_INT(res.status, 426);
    close(fd);
    bytes_free(&in);
    world_free(w);
    CHECK_ALL_FREED();
}

static void on_open_send_100(zk_conn *c, const zk_http_request *req) {
    side *sd = (side *)zk_conn_data(c);
    int i;
    on_open(c, req);
    for (i = 0; i < 100; i++) {
        char m[32];
        int n = snprintf(m, sizeof m, "c%d-m%d", sd->id, i);
        if (zk_conn_send(c, m, (size_t)n, 0) < 0) sd->send_errors++;
    }
}

TEST(tcp_100_clients_each_echo_100_messages) {
    enum { CLIENTS = 100 };
    world *w = world_new(0);
    zk_server_opts so = server_opts(w);
    char url[64];
    int i, opened = 0, closed = 0, bad = 0, got = 0;
    server_new(w, &so);
    CHECK_EQ_INT(zk_server_listen(w->server), 0);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", zk_server_port(w->server));
    for (i = 0; i < CLIENTS; i++) {
        zk_conn_opts co = client_opts(url);
        side *sd;
        co.cb.on_open = on_open_send_100;
        sd = new_client_side(w);
        sd->seq_check = 1;
        sd->close_after = 100;
        co.data = sd;
        sd->conn = zk_conn_connect(w->loop, &co, NULL);
        CHECK(sd->conn != NULL);
    }
    {
        uint64_t deadline = now_ms() + 10000;
        while (now_ms() < deadline) {
            closed = 0;
            for (i = 0; i < CLIENTS; i++) closed += w->cli[i].closes;
            if (closed == CLIENTS && zk_server_connections(w->server) == 0) break;
            zk_loop_step(w->loop, 10);
        }
    }
    for (i = 0; i < CLIENTS; i++) {
        side *sd = &w->cli[i];
        opened += sd->opens;
        got += sd->messages;
        bad += sd->seq_bad + sd->send_errors;
        if (sd->closes && (sd->close_code != 1000 || !sd->close_clean)) bad++;
    }
    CHECK_EQ_INT(opened, CLIENTS);
    CHECK_EQ_INT(got, CLIENTS * 100);
    CHECK_EQ_INT(closed, CLIENTS);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(w->nsrv, CLIENTS);
    CHECK_EQ_INT(zk_server_connections(w->server), 0);
    world_free(w);
    CHECK_ALL_FREED();
}

/* A raw client's stream of 32 KiB binary messages, message k filled with
   the byte k: sends what the socket takes now; returns 1 when it took any. */
typedef struct raw_sender {
    unsigned char frame[32768 + 14], payload[32768];
    size_t flen, off;
    unsigned sent;
} raw_sender;

static int raw_send_some(int fd, raw_sender *r) {
    ssize_t n;
    if (r->off == r->flen) {
        memset(r->payload, (int)(r->sent & 0xff), sizeof r->payload);
        r->flen = client_frame(r->frame, ZK_WS_BINARY, 1, r->payload, sizeof r->payload, 1);
        r->off = 0;
    }
    n = send(fd, r->frame + r->off, r->flen - r->off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) return 0;
    r->off += (size_t)n;
    if (r->off == r->flen) r->sent++;
    return 1;
}

/* Over TCP: a client sends COUNT messages of 32 KiB as fast as the
   server takes them and reads nothing. Once the kernel's buffers are full
   the server stops reading it: its queue stays near the high-water mark
   (no answer refused at the write limit), and it drops its read interest,
   so a step finds nothing to do rather than spinning on unread input.
   When the client reads, every echo arrives, in order. */
TEST(tcp_server_stops_reading_a_peer_that_does_not_read) {
    enum { COUNT = 400, SIZE = 32768, FRAME = SIZE + 4 };
    static raw_sender rs;
    world *w = world_new(0);
    zk_server_opts so = server_opts(w);
    struct sockaddr_in a;
    bytes in;
    size_t head = 0, k;
    unsigned quiet = 0, bad = 0, held;
    int fd, one_buf = 65536, i;
    uint64_t t0;
    side *s;
    memset(&in, 0, sizeof in);
    memset(&rs, 0, sizeof rs);
    so.write_high_water = 65536;
    so.write_limit = 262144;
    server_new(w, &so);
    CHECK_EQ_INT(zk_server_listen(w->server), 0);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    /* small client buffers: the kernel holds less, the test moves less */
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &one_buf, sizeof one_buf);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &one_buf, sizeof one_buf);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)zk_server_port(w->server));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ_INT(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_EQ_INT(send(fd, upgrade_request, sizeof upgrade_request - 1, MSG_NOSIGNAL),
                 (ssize_t)(sizeof upgrade_request - 1));
    t0 = now_ms();
    while (!head && now_ms() - t0 < 3000) {
        zk_loop_step(w->loop, 5);
        raw_tcp_read(fd, &in);
        for (k = 0; k + 4 <= in.len; k++)
            if (memcmp(in.p + k, "\r\n\r\n", 4) == 0) {
                head = k + 4;
                break;
            }
    }
    CHECK(head > 0 && w->nsrv == 1);
    if (!head || w->nsrv != 1) {
        close(fd);
        bytes_free(&in);
        world_free(w);
        return;
    }
    s = &w->srv[0];
    CHECK_EQ_INT(in.len, head); /* nothing after the 101 yet */
    /* send until neither the client nor the server can move */
    t0 = now_ms();
    while (rs.sent < COUNT && quiet < 50 && now_ms() - t0 < 10000) {
        int moved = raw_send_some(fd, &rs);
        int ran = zk_loop_step(w->loop, moved ? 0 : 1);
        quiet = !moved && ran == 0 ? quiet + 1 : 0;
    }
    held = rs.sent;
    CHECK(held < COUNT); /* held back */
    CHECK(s->messages < COUNT);
    CHECK(zk_conn_buffered(s->conn) < 65536 + FRAME);
    CHECK_EQ_INT(s->send_errors, 0);
    CHECK_EQ_INT(s->closes, 0);
    for (i = 0; i < 20; i++) CHECK_EQ_INT(zk_loop_step(w->loop, 1), 0);
    /* now the client reads, and sends the rest */
    t0 = now_ms();
    while (in.len < head + (size_t)COUNT * FRAME && now_ms() - t0 < 20000) {
        if (rs.sent < COUNT) raw_send_some(fd, &rs);
        zk_loop_step(w->loop, 0);
        if (raw_tcp_read(fd, &in)) break;
    }
    CHECK_EQ_INT(in.len, head + (size_t)COUNT * FRAME);
    for (k = 0; k < COUNT && head + (k + 1) * FRAME <= in.len; k++) {
        const unsigned char *f = in.p + head + k * FRAME;
        size_t j;
        if (f[0] != 0x82 || f[1] != 126 || f[2] != (SIZE >> 8) || f[3] != (SIZE & 0xff)) bad++;
        for (j = 0; j < SIZE; j++)
            if (f[4 + j] != (unsigned char)(k & 0xff)) {
                bad++;
                break;
            }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(s->messages, COUNT);
    CHECK_EQ_INT(s->send_errors, 0);
    CHECK_EQ_INT(s->closes, 0);
    printf("  %u of %u messages sent before the client was held back\n", held, (unsigned)COUNT);
    close(fd);
    bytes_free(&in);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(tcp_max_connections_turns_extra_clients_away) {
    world *w = world_new(0);
    zk_server_opts so = server_opts(w);
    char url[64];
    side *c[3];
    int i;
    so.max_connections = 2;
    server_new(w, &so);
    CHECK_EQ_INT(zk_server_listen(w->server), 0);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", zk_server_port(w->server));
    for (i = 0; i < 2; i++) {
        zk_conn_opts co = client_opts(url);
        c[i] = connect_tcp(w, &co);
    }
    RUN_UNTIL(w->loop, c[0]->opens && c[1]->opens, 3000);
    {
        zk_conn_opts co = client_opts(url);
        c[2] = connect_tcp(w, &co);
    }
    RUN_UNTIL(w->loop, c[2]->closes || c[2]->opens, 3000);
    CHECK_EQ_INT(c[0]->opens + c[1]->opens, 2);
    CHECK_EQ_INT(c[2]->opens, 0);
    CHECK_EQ_INT(c[2]->closes, 1);
    CHECK_EQ_INT(c[2]->close_code, 1006);
    CHECK_EQ_INT(zk_server_connections(w->server), 2);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(tcp_server_freed_with_open_connections) {
    world *w = world_new(0);
    zk_server_opts so = server_opts(w);
    char url[64];
    side *c;
    zk_conn_opts co;
    server_new(w, &so);
    CHECK_EQ_INT(zk_server_listen(w->server), 0);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", zk_server_port(w->server));
    co = client_opts(url);
    c = connect_tcp(w, &co);
    RUN_UNTIL(w->loop, c->opens, 3000);
    CHECK_EQ_INT(c->opens, 1);
    zk_server_free(w->server);
    w->server = NULL;
    CHECK_EQ_INT(w->srv[0].close_code, 1006);
    RUN_UNTIL(w->loop, c->closes, 3000);
    CHECK_EQ_INT(c->closes, 1);
    CHECK_EQ_INT(c->close_code, 1006);
    CHECK_EQ_INT(c->close_clean, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

TEST(tcp_max_per_address_turns_extra_clients_of_one_address_away) {
    world *w = world_new(0);
    zk_server_opts so = server_opts(w);
    char url[64];
    side *c[5];
    int i;
    so.max_per_address = 2;
    server_new(w, &so);
    CHECK_EQ_INT(zk_server_listen(w->server), 0);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", zk_server_port(w->server));
    for (i = 0; i < 2; i++) {
        zk_conn_opts co = client_opts(url);
        c[i] = connect_tcp(w, &co);
    }
    RUN_UNTIL(w->loop, c[0]->opens && c[1]->opens, 3000);
    {
        zk_conn_opts co = client_opts(url);
        c[2] = connect_tcp(w, &co);
    }
    RUN_UNTIL(w->loop, c[2]->closes || c[2]->opens, 3000);
    CHECK_EQ_INT(c[2]->opens, 0);
    CHECK_EQ_INT(c[2]->closes, 1);
    CHECK_EQ_INT(zk_server_connections(w->server), 2);
    /* one leaves: its place is free again */
    zk_conn_close(c[0]->conn, 1000, NULL);
    RUN_UNTIL(w->loop, c[0]->closes && zk_server_connections(w->server) == 1, 3000);
    {
        zk_conn_opts co = client_opts(url);
        c[3] = connect_tcp(w, &co);
    }
    RUN_UNTIL(w->loop, c[3]->closes || c[3]->opens, 3000);
    CHECK_EQ_INT(c[3]->opens, 1);
    {
        zk_conn_opts co = client_opts(url);
        c[4] = connect_tcp(w, &co);
    }
    RUN_UNTIL(w->loop, c[4]->closes || c[4]->opens, 3000);
    CHECK_EQ_INT(c[4]->opens, 0);
    /* loopback connections are not counted */
    {
        side *lb[3];
        for (i = 0; i < 3; i++) lb[i] = connect_lb_url(w, "ws://loopback/", NULL);
        RUN_UNTIL(w->loop, lb[0]->opens && lb[1]->opens && lb[2]->opens, 3000);
        CHECK_EQ_INT(lb[0]->opens + lb[1]->opens + lb[2]->opens, 3);
    }
    world_free(w);
    CHECK_ALL_FREED();
}

/* The per-address table itself: 3000 addresses with 1 to 3 connections
   each, added and removed in a shuffled order; every count stays right and
   the table is empty at the end (deletion moves entries back so lookups
   past a hole still find them). */
TEST(per_address_table_counts_and_deletes) {
    world *w = world_new(0);
    zk_server_opts so = server_opts(w);
    enum { N = 3000 };
    static unsigned char keys[N][16];
    static int counts[N], order[3 * N];
    int i, n = 0, bad = 0;
    uint64_t x = 88172645463325252ull;
    server_new(w, &so);
    for (i = 0; i < N; i++) {
        int k;
        memset(keys[i], 0, 16);
        keys[i][10] = keys[i][11] = 0xff;
        keys[i][12] = (unsigned char)(i >> 8);
        keys[i][13] = (unsigned char)i;
        keys[i][14] = (unsigned char)(i * 7);
        counts[i] = 1 + i % 3;
        for (k = 0; k < counts[i]; k++) {
            CHECK_EQ_INT(zk__addr_add(w->server, keys[i]), 0);
            order[n++] = i;
        }
    }
    for (i = 0; i < N; i++)
        if (!zk__addr_find(w->server, keys[i]) || (int)zk__addr_find(w->server, keys[i])->count != counts[i]) bad++;
    CHECK_EQ_INT(bad, 0);
    for (i = n - 1; i > 0; i--) { /* shuffle the removals */
        int j, t;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        j = (int)(x % (uint64_t)(i + 1));
        t = order[i]; order[i] = order[j]; order[j] = t;
    }
    for (i = 0; i < n; i++) {
        int k = order[i];
        zk__addr_remove(w->server, keys[k]);
        counts[k]--;
        if (i % 97 == 0) { /* now and then, every count is checked */
            int j;
            for (j = 0; j < N; j++) {
                zk__addr_slot *e = zk__addr_find(w->server, keys[j]);
                if ((counts[j] && (!e || (int)e->count != counts[j])) || (!counts[j] && e)) bad++;
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(w->server->addr_used, 0);
    world_free(w);
    CHECK_ALL_FREED();
}

int main(void) {
    const char *p = getenv("ZK_TEST_POLLER");
    zk_loop_opts o;
    zk_loop *probe;
    (void)guard_alloc; /* test.h's guard pages are for the parser tests */
    (void)guard_free;
    if (p && *p && strcmp(p, "auto") != 0) {
        if (strcmp(p, "epoll") == 0) env_poller = ZK_POLLER_EPOLL;
        else if (strcmp(p, "poll") == 0) env_poller = ZK_POLLER_POLL;
        else if (strcmp(p, "kqueue") == 0) env_poller = ZK_POLLER_KQUEUE;
        else {
            printf("ZK_TEST_POLLER=%s: unknown (epoll, poll, kqueue or auto)\n", p);
            return 2;
        }
    }
    memset(&o, 0, sizeof o);
    o.poller = env_poller;
    probe = zk_loop_new(&o);
    if (!probe) {
        printf("poller %s is not available on this system: net tests skipped\n", poller_name(env_poller));
        return test_summary();
    }
    printf("poller: %s\n", poller_name(probe->poller));
    zk_loop_free(probe);

    /* loopback, virtual clock */
    RUN(loopback_open_reaches_both_ends);
    RUN(many_loopback_clients_are_counted);
    RUN(echo_every_size_in_1_byte_chunks);
    RUN(echo_every_size_in_3_byte_chunks);
    RUN(echo_every_size_in_7_byte_chunks);
    RUN(echo_every_size_in_4096_byte_chunks);
    RUN(echo_every_size_whole);
    RUN(messages_sent_in_one_pass_arrive_in_order);
    RUN(delayed_loopback_delivers_only_after_advance);
    RUN(delayed_and_chunked_big_messages_arrive_intact);
    RUN(subprotocol_is_negotiated_on_both_ends);
    RUN(upgrade_refused_with_401_never_opens);
    RUN(upgrade_refused_answers_the_status_and_no_frame);
    RUN(plain_http_request_is_answered_by_on_http);
    RUN(plain_http_request_can_be_answered_later);
    RUN(plain_http_request_without_on_http_gets_426);
    RUN(on_open_sees_the_query_string_and_headers);
    RUN(loopback_chunk_and_delay_shape_what_the_peer_reads);
    RUN(messages_sent_in_on_open_arrive_right_after_open);
    RUN(open_connection_outlives_the_connect_timeout);
    RUN(client_connect_timeout_when_the_server_never_answers);
    RUN(close_before_open_reports_once_and_never_opens);
    RUN(silence_loses_bytes_until_delivery_is_restored);
    RUN(plain_http_request_never_answered_is_closed_at_the_deadline);
    RUN(send_refuses_bad_text_and_closed_connections);
    RUN(one_frame_sent_to_many_connections);
    RUN(shared_frames_survive_partial_writes_and_pongs);
    RUN(spare_chunks_outlast_a_second_between_broadcasts);
    RUN(ping_gets_a_pong_with_the_same_payload);
    RUN(backpressure_is_reported_then_refused_then_drained);
    RUN(on_drain_does_not_fire_without_backpressure);
    RUN(pong_goes_ahead_of_queued_data);
    RUN(ping_is_answered_while_the_queue_is_over_high_water);
    RUN(client_close_1000_is_clean_on_both_ends);
    RUN(server_close_4001_reaches_the_client);
    RUN(close_without_a_code_is_seen_as_1005);
    RUN(close_with_a_code_one_may_not_send_is_refused);
    RUN(queued_messages_go_before_the_close);
    RUN(messages_from_the_peer_still_arrive_while_closing);
    RUN(close_the_peer_never_answers_times_out_with_1006);
    RUN(server_close_unanswered_times_out_after_close_timeout);
    RUN(loopback_drop_gives_1006_on_both_ends);
    RUN(abort_gives_1006_at_once_and_to_the_peer);
    RUN(abort_inside_on_message_stops_delivery);
    RUN(close_inside_on_message_is_clean);
    RUN(send_inside_on_close_after_the_peer_closed_reports_closed);
    RUN(send_inside_on_close_after_a_drop_reports_closed);
    RUN(send_inside_on_close_after_a_protocol_error_reports_closed);
    RUN(upgrade_not_sent_is_closed_at_the_handshake_deadline);
    RUN(message_not_whole_at_the_deadline_is_closed_with_1008);
    RUN(message_deadline_restarts_after_a_split_ping);
    RUN(message_arriving_while_closing_ends_at_the_close_timeout);
    RUN(peer_that_reads_nothing_is_dropped_at_the_write_deadline);
    RUN(server_stops_reading_a_peer_that_does_not_read_its_answers);
    RUN(paused_peer_is_timed_by_the_write_deadline_alone);
    RUN(healthy_client_stays_open_through_heartbeats);
    RUN(healthy_client_with_latency_stays_open_through_heartbeats);
    RUN(busy_client_is_never_pinged);
    RUN(silent_client_is_closed_after_idle_plus_pong_timeout);
    RUN(shutdown_closes_every_client_with_1001);
    RUN(shutdown_drops_a_client_that_never_answers_at_the_timeout);
    RUN(shutdown_with_no_connections_is_done_at_once);
    RUN(server_freed_with_open_connections_leaks_nothing);
    RUN(clients_freed_with_open_connections_leak_nothing);
    RUN(invalid_utf8_text_closes_with_1007);
    RUN(unmasked_client_frame_closes_with_1002);
    RUN(message_over_max_message_closes_with_1009);
    RUN(client_max_message_limits_what_the_server_sends);
    /* real sockets, real clock */
    RUN(fault_injection_refuses_tcp_connections);
    RUN(tcp_echo_over_127_0_0_1);
    RUN(tcp_echo_over_ipv6_loopback);
    RUN(tcp_listen_reports_address_in_use);
    RUN(tcp_connection_refused_gives_1006_without_open);
    RUN(tcp_bad_urls_are_refused_at_once);
    RUN(tcp_client_connect_timeout_covers_the_upgrade);
    RUN(tcp_client_silent_before_the_upgrade_is_closed_at_the_deadline);
    RUN(tcp_plain_http_request_gets_426);
    RUN(tcp_100_clients_each_echo_100_messages);
    RUN(tcp_server_stops_reading_a_peer_that_does_not_read);
    RUN(tcp_max_connections_turns_extra_clients_away);
    RUN(tcp_max_per_address_turns_extra_clients_of_one_address_away);
    RUN(per_address_table_counts_and_deletes);
    RUN(tcp_server_freed_with_open_connections);
    return test_summary();
}
