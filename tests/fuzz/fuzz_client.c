/* libFuzzer harness for zk_client against a hostile server.

   A plain zk_server on a loopback pair sends the input to a zk_client as
   messages: the input is split at newlines, each piece sent as one text
   message when it is UTF-8 (else binary). Before each input the client has
   four calls in flight, the last one cacheable and idempotent; in the
   input, "$0".."$3" stand for their rpcIds, so that it can answer them
   (wrongly, or twice). The client listens to "ev" and to "*". When the
   last byte is odd the connection is then dropped (the client reconnects;
   calls in flight fail or are resent). Finally the clock moves past every
   timeout.

   Aborts when a call's callback runs more than once, when a result is not
   well formed (ok with a value, or an error with a non-empty code), when
   calls are left unanswered once the clock has passed their timeouts, or
   when the library holds more than MAX_LIVE allocations after an input.
   LeakSanitizer checks at exit that everything was freed. */
#define _GNU_SOURCE
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

#define MAX_LIVE 400
#define CALLS 4

static zk_loop *loop;
static zk_server *server;
static zk_conn *srv;            /* the server's end */
static zk_client *client;
static int answers[CALLS], outstanding;

static void srv_open(zk_conn *c, const zk_http_request *req) {
    (void)req;
    srv = c;
}
static void srv_close(zk_conn *c, int code, zk_str reason, int clean) {
    (void)code;
    (void)reason;
    (void)clean;
    if (srv == c) srv = NULL;
}

static void on_result(zk_client *c, const zk_result *r, void *user) {
    int i = (int)(intptr_t)user;
    (void)c;
    if (++answers[i] > 1) abort();               /* exactly once */
    if (!r->ok && !r->code.len) abort();         /* an error has a code */
    if (r->ok && r->code.len) abort();
    outstanding--;
}

static void on_event(zk_client *c, zk_str type, zk_value payload, void *user) {
    (void)c;
    (void)type;
    (void)user;
    (void)zk_value_type(payload);
}

static void pump(void) {
    int i;
    for (i = 0; i < 64 && zk_loop_step(loop, 0) > 0; i++) {}
}

static void setup(void) {
    zk_loop_opts lo;
    zk_server_opts so;
    zk_client_opts co;
    memset(&lo, 0, sizeof lo);
    lo.virtual_clock = 1;
    lo.seed = 7;
    loop = zk_loop_new(&lo);
    memset(&so, 0, sizeof so);
    so.cb.on_open = srv_open;
    so.cb.on_close = srv_close;
    server = zk_server_new(loop, &so);
    memset(&co, 0, sizeof co);
    co.url = "ws://loopback/";
    co.loopback = server;
    co.backoff_base_ms = 10;
    co.restart_spread_ms = 10;
    co.call_timeout_ms = 1000;
    client = zk_client_new(loop, &co, NULL);
    if (!loop || !server || !client) abort();
    zk_client_on(client, "ev", on_event, NULL);
    zk_client_on(client, "*", on_event, NULL);
    pump();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t at = 0;
    int i;
    zk_call_opts cache;
    uint64_t first_rpc;
    if (!loop) setup();
    if (zk_client_state(client) == ZK_CLIENT_CLOSED) abort(); /* nothing here ends it for good */
    while (zk_client_state(client) != ZK_CLIENT_OPEN || !srv) zk_loop_step(loop, 1000);
    memset(answers, 0, sizeof answers);
    outstanding = CALLS;
    first_rpc = client->next_rpc + 1; /* how the client will number them */
    memset(&cache, 0, sizeof cache);
    cache.cacheable = 1;
    cache.idempotent = 1;
    for (i = 0; i < CALLS; i++) {
        char payload[16];
        int n = snprintf(payload, sizeof payload, "%d", i);
        if (zk_client_call(client, i == 3 ? "cached" : "work", payload, (size_t)n, i == 3 ? &cache : NULL, on_result,
                           (void *)(intptr_t)i) != 0)
            abort();
    }
    pump();
    while (at < size && srv) {
        const uint8_t *nl = (const uint8_t *)memchr(data + at, '\n', size - at);
        size_t len = nl ? (size_t)(nl - (data + at)) : size - at, k, o = 0;
        char *msg = (char *)malloc(len * 12 + 1);
        if (!msg) abort();
        for (k = 0; k < len; k++) { /* $d: the rpcId of call d */
            if (data[at + k] == '$' && k + 1 < len && data[at + k + 1] >= '0' && data[at + k + 1] <= '3') {
                o += (size_t)sprintf(msg + o, "%llu", (unsigned long long)(first_rpc + (data[at + k + 1] - '0')));
                k++;
            } else {
                msg[o++] = (char)data[at + k];
            }
        }
        zk_conn_send(srv, msg, o, !zk_utf8_valid(msg, o));
        free(msg);
        at += len + 1;
    }
    pump();
    if (size && (data[size - 1] & 1) && srv) {
        zk_conn_abort(srv);
        pump();
    }
    /* past every timeout: whatever was not answered gets TIMEOUT */
    zk_loop_advance(loop, 2000);
    pump();
    if (outstanding != 0) abort();
    if (lib_live > MAX_LIVE) abort();
    return 0;
}
