/* bench_client: what the Zocket client costs on the client side.

   build/bench_client [--seconds S]

   1. Calls/s through one zk_client, pipelined (K calls in flight, each
      answer starting the next), to a zk_app on the same loop over the
      in-memory loopback transport: both ends run in this process, so the
      figure is the whole stack's cost per call (client envelope, dedup and
      rpc tables, timers; server parse, route, answer), with no kernel.
      Once with JSON and once with MessagePack (zocket.msgpack) on the wire.
   2. Memory per client object: 10,000 zk_clients connected over loopback,
      the library's live bytes (counted through ZK_MALLOC) divided by the
      count, for the client alone (its struct, URL, tables) and with its
      connection and the server's side of it. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef union head {
    size_t size;
    long double align;
} head;
static long long live_bytes;
static void *count_realloc(void *p, size_t n) {
    head *h = p ? (head *)p - 1 : NULL;
    size_t old = h ? h->size : 0;
    head *q = (head *)realloc(h, sizeof *q + n);
    if (!q) return NULL;
    live_bytes += (long long)n - (long long)old;
    q->size = n;
    return q + 1;
}
static void count_free(void *p) {
    head *h;
    if (!p) return;
    h = (head *)p - 1;
    live_bytes -= (long long)h->size;
    free(h);
}
#define ZK_MALLOC(n) count_realloc(NULL, n)
#define ZK_REALLOC(p, n) count_realloc(p, n)
#define ZK_FREE(p) count_free(p)
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void echo(zk_request *req) { zk_write_value(zk_request_writer(req), zk_request_payload(req)); }

static long answered, failed;
static int running = 1;
static void on_result(zk_client *c, const zk_result *r, void *user) {
    char payload[32];
    int n;
    (void)user;
    if (r->ok && zk_value_type(zk_value_get(r->value, "n")) == ZK_TYPE_INT) answered++; /* the echo came back */
    else failed++;
    if (!running) return;
    /* a new payload each time, so dedup and the cache are never hit */
    n = snprintf(payload, sizeof payload, "{\"n\":%ld}", answered + failed);
    zk_client_call(c, "bench.echo", payload, (size_t)n, NULL, on_result, NULL);
}

int main(int argc, char **argv) {
    double seconds = 3, t0, t1;
    int k, i;
    zk_loop *loop;
    zk_router *router;
    zk_app_opts ao;
    zk_app *app;
    zk_client_opts co;
    zk_client *client;
    static const int pipelines[] = {1, 16, 100};
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--seconds S]\n", argv[0]);
            return 2;
        }
    }
    loop = zk_loop_new(NULL);
    router = zk_router_new();
    zk_router_on(router, "bench.echo", echo, NULL);
    memset(&ao, 0, sizeof ao);
    ao.router = router;
    ao.rate_per_sec = ZK_RATE_UNLIMITED; /* one client, hundreds of thousands of calls/s */
    app = zk_app_new(loop, &ao, NULL);
    if (!loop || !router || !app) return 1;

    printf("zocket.h client benchmark (one process, loopback transport, both ends)\n");
    for (k = 0; k < 6; k++) {
        long start;
        memset(&co, 0, sizeof co);
        co.url = "ws://loopback/";
        co.loopback = zk_app_server(app);
        co.codec = k < 3 ? ZK_CODEC_JSON : ZK_CODEC_MSGPACK;
        client = zk_client_new(loop, &co, NULL);
        while (zk_client_state(client) != ZK_CLIENT_OPEN) zk_loop_step(loop, 10);
        answered = failed = 0;
        running = 1;
        for (i = 0; i < pipelines[k % 3]; i++) {
            char payload[32];
            int n = snprintf(payload, sizeof payload, "{\"n\":-%d}", i + 1);
            zk_client_call(client, "bench.echo", payload, (size_t)n, NULL, on_result, NULL);
        }
        t0 = now_s();
        start = answered;
        while ((t1 = now_s()) - t0 < seconds) zk_loop_step(loop, 10);
        printf("  %-7s %3d calls in flight: %9.0f calls/s  %7.2f us/call  (%ld failed)\n",
               k < 3 ? "json" : "msgpack", pipelines[k % 3],
               (double)(answered - start) / (t1 - t0), (t1 - t0) * 1e6 / (double)(answered - start), failed);
        running = 0;
        zk_client_free(client); /* the calls in flight end with CLOSED */
        for (i = 0; i < 10; i++) zk_loop_step(loop, 0);
    }

    {
        enum { N = 10000 };
        static zk_client *many[N];
        static zk_conn *raw[N];
        long long base = live_bytes, with_clients, with_raw;
        int open = 0;
        zk_conn_opts ro;
        memset(&co, 0, sizeof co);
        co.url = "ws://loopback/";
        co.loopback = zk_app_server(app);
        for (i = 0; i < N; i++) many[i] = zk_client_new(loop, &co, NULL);
        for (i = 0; i < 200 && open < N; i++) {
            int j;
            zk_loop_step(loop, 10);
            for (open = 0, j = 0; j < N; j++) open += zk_client_state(many[j]) == ZK_CLIENT_OPEN;
        }
        with_clients = live_bytes - base;
        for (i = 0; i < N; i++) zk_client_free(many[i]);
        for (i = 0; i < 50; i++) zk_loop_step(loop, 0);
        /* the same connections without the client object, to tell its share */
        base = live_bytes;
        memset(&ro, 0, sizeof ro);
        ro.url = "ws://loopback/";
        for (i = 0; i < N; i++) raw[i] = zk_loopback_connect(zk_app_server(app), &ro, NULL, NULL);
        for (i = 0; i < 50; i++) zk_loop_step(loop, 0);
        with_raw = live_bytes - base;
        printf("  memory, %d clients open over loopback (library bytes, both ends of each):\n"
               "    zk_client + connection %lld B, the connection alone %lld B: the client object %lld B\n",
               open, with_clients / N, with_raw / N, (with_clients - with_raw) / N);
        for (i = 0; i < N; i++)
            if (raw[i]) zk_conn_abort(raw[i]);
        for (i = 0; i < 50; i++) zk_loop_step(loop, 0);
    }
    zk_app_free(app);
    zk_router_free(router);
    zk_loop_free(loop);
    return 0;
}
