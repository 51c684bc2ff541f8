/* Caller benchmark: zk_router_call, a route invoked in process with no
   network, as a test or a server-side job would call it. Prints calls/s and
   ns per call; asserts only that every answer is the one expected.

   Routes (both answer their payload as the result, like bench.echo in
   bench/app_server.c):
     bench.echo      input schema {"n": int, 0 <= n <= 1000000}, strict
     bench.any       no schema
   Payload {"n":123} (9 bytes of JSON). A call parses the payload (copied
   first: the caller takes the text as const), checks the schema, runs the
   handler, which copies the payload into the result writer (zk_write_value),
   and hands the answer's JSON to the done callback.

   Method: best of 5 repetitions of about 0.3 s each (batches of 10,000
   calls, timed with clock_gettime(CLOCK_MONOTONIC)); about 3.5 s in all. */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REPS 5
#define REP_SECONDS 0.3
#define BATCH 10000

static const zk_schema echo_fields[] = {
    {"n", ZK_TYPE_INT, ZK_SCHEMA_MIN | ZK_SCHEMA_MAX, 0, 1000000, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL}};
static const zk_schema echo_input = {NULL, ZK_TYPE_OBJECT, ZK_SCHEMA_STRICT, 0, 0, echo_fields, NULL};

static const char payload[] = "{\"n\":123}";
static uint64_t answers_ok, answers_bad;
static char first_bad[200];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void echo(zk_request *req) {
    zk_write_value(zk_request_writer(req), zk_request_payload(req));
}

static void on_answer(const zk_answer *a, void *user) {
    (void)user;
    if (a->ok && a->data.len == sizeof payload - 1 && !memcmp(a->data.ptr, payload, a->data.len)) {
        answers_ok++;
        return;
    }
    if (!answers_bad++)
        snprintf(first_bad, sizeof first_bad, "ok %d code %.*s message %.*s data %.*s", a->ok,
                 (int)a->code.len, a->code.ptr ? a->code.ptr : "", (int)a->message.len,
                 a->message.ptr ? a->message.ptr : "", (int)a->data.len, a->data.ptr ? a->data.ptr : "");
}

/* Best ns per call of route over REPS repetitions. */
static double measure(zk_router *router, const char *route, double *calls_per_s) {
    double best = 1e30;
    int rep;
    for (rep = 0; rep < REPS; rep++) {
        double t0 = now(), t;
        uint64_t calls = 0;
        do {
            int i;
            for (i = 0; i < BATCH; i++)
                if (zk_router_call(router, route, payload, sizeof payload - 1, NULL, on_answer, NULL) != 0)
                    answers_bad++;
            calls += BATCH;
            t = now() - t0;
        } while (t < REP_SECONDS);
        if (t / (double)calls < best) best = t / (double)calls;
    }
    *calls_per_s = 1.0 / best;
    return best * 1e9;
}

int main(void) {
    zk_router *router = zk_router_new();
    zk_route_opts ro;
    double t0 = now(), rate, ns;
    memset(&ro, 0, sizeof ro);
    ro.input = &echo_input;
    if (!router || zk_router_on(router, "bench.echo", echo, &ro) != 0 ||
        zk_router_on(router, "bench.any", echo, NULL) != 0) {
        fprintf(stderr, "bench_caller: cannot build the router\n");
        return 1;
    }
    printf("zocket.h caller benchmark: zk_router_call, payload %s, best of %d\n", payload, REPS);
    ns = measure(router, "bench.echo", &rate);
    printf("  route with a schema (1 int member, min/max, strict)  %10.0f calls/s  %7.1f ns/call\n", rate, ns);
    ns = measure(router, "bench.any", &rate);
    printf("  route without a schema                               %10.0f calls/s  %7.1f ns/call\n", rate, ns);
    printf("answers ok %llu, wrong %llu, %.1f s\n", (unsigned long long)answers_ok,
           (unsigned long long)answers_bad, now() - t0);
    zk_router_free(router);
    if (answers_bad) {
        fprintf(stderr, "bench_caller: unexpected answer (%s)\n", first_bad);
        return 1;
    }
    return 0;
}
