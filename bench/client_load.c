/* client_load: what one zk_client costs over real TCP (bench/run_client.sh).

   build/client_load [--url ws://127.0.0.1:PORT/] [--inflight K] [--seconds S]
                     [--warmup S] [--type bench.echo] [--server-pid PID]

   One zk_client connects to a Zocket server (build/app_server, whose route
   bench.echo answers its payload back) and keeps K calls in flight (1): each
   answer starts the next call, with a new payload every time
   ({"n":<counter>}, so dedup never applies), with the default call options
   (dedup table, a timeout per call). After a warm-up (1 s) it counts the
   calls answered in S seconds (5) and the CPU this process used meanwhile
   (getrusage(RUSAGE_SELF) before and after: user + system, the kernel's
   share of the TCP traffic included). Every answer is checked: ok, and its
   payload's n the one that was sent.
   With --server-pid it also reads, at the same two instants, the server's
   utime+stime (/proc/PID/stat) and the whole machine's busy time
   (/proc/stat), in clock ticks, for bench/run_client.sh.

   Prints a human line, then one line for scripts:
     RESULT mode=client inflight=K calls=N seconds=T calls_per_s=R
            cpu_us_per_call=C user_us_per_call=U sys_us_per_call=Y
            cpu_pct=P server_ticks=S busy_ticks=B errors=E
   (server_ticks and busy_ticks -1 without --server-pid).
   Exit status 1 when it cannot connect or any call failed.

   Not named bench_*: `make bench` runs every bench_* program, and this one
   needs a server. */
#define _GNU_SOURCE
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct slot {
    long long n; /* the payload's n of the call in flight in this slot */
} slot;

static long long answered, errors, next_n;
static int running = 1;
static char first_error[160];
static const char *call_type = "bench.echo";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(double *user, double *sys) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    return *user + *sys;
}

/* utime + stime of a process, in clock ticks; -1 when unreadable */
static long long proc_ticks(long pid) {
    char path[64], buf[1024], *p;
    unsigned long long ut, st;
    size_t n;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if (!(f = fopen(path, "r"))) return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (!(p = strrchr(buf, ')'))) return -1;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
    return (long long)(ut + st);
}

/* non-idle ticks of the whole machine (/proc/stat), as run_fanout.sh counts */
static long long busy_ticks(void) {
    unsigned long long v[8];
    FILE *f = fopen("/proc/stat", "r");
    int n;
    if (!f) return -1;
    n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
               &v[7]);
    fclose(f);
    if (n != 8) return -1;
    return (long long)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]); /* user nice system irq softirq steal */
}

static void fail(const char *fmt, const char *a, const char *b) {
    errors++;
    if (!first_error[0]) snprintf(first_error, sizeof first_error, fmt, a, b);
}

static void on_result(zk_client *c, const zk_result *r, void *user);

static int start_call(zk_client *c, slot *s) {
    char payload[40];
    int n, rc;
    s->n = next_n++;
    n = snprintf(payload, sizeof payload, "{\"n\":%lld}", s->n);
    rc = zk_client_call(c, call_type, payload, (size_t)n, NULL, on_result, s);
    if (rc < 0) fail("zk_client_call: %s%s", zk_strerror(rc), "");
    return rc;
}

static void on_result(zk_client *c, const zk_result *r, void *user) {
    slot *s = (slot *)user;
    if (!running) return; /* the end: the calls still in flight get CLOSED */
    if (!r->ok) {
        char code[64];
        snprintf(code, sizeof code, "%.*s", (int)r->code.len, r->code.ptr ? r->code.ptr : "");
        fail("call failed: %s%s", code, "");
    } else if (zk_value_int(zk_value_get(r->value, "n"), -1) != s->n) {
        fail("wrong answer%s%s", "", "");
    } else {
        answered++;
    }
    start_call(c, s);
}

int main(int argc, char **argv) {
    const char *url = "ws://127.0.0.1:9002/";
    double seconds = 5, warmup = 1, t0, t1, end, c0, c1, u0, u1, s0, s1;
    long long a0, a1, calls, sv0 = -1, sv1 = -1, b0 = -1, b1 = -1;
    long server_pid = 0;
    int inflight = 1, i, err = 0;
    zk_loop *loop;
    zk_client_opts co;
    zk_client *client;
    slot *slots;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--url") && i + 1 < argc) url = argv[++i];
        else if (!strcmp(argv[i], "--inflight") && i + 1 < argc) inflight = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atof(argv[++i]);
        else if (!strcmp(argv[i], "--type") && i + 1 < argc) call_type = argv[++i];
        else if (!strcmp(argv[i], "--server-pid") && i + 1 < argc) server_pid = atol(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: %s [--url ws://127.0.0.1:PORT/] [--inflight K] [--seconds S] [--warmup S] [--type T] "
                    "[--server-pid PID]\n",
                    argv[0]);
            return 2;
        }
    }
    if (inflight < 1 || seconds <= 0 || warmup < 0) {
        fprintf(stderr, "client_load: bad --inflight, --seconds or --warmup\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    slots = (slot *)calloc((size_t)inflight, sizeof *slots);
    loop = zk_loop_new(NULL);
    if (!slots || !loop) return 1;
    memset(&co, 0, sizeof co);
    co.url = url;
    co.no_reconnect = 1; /* a dropped connection is a failed run, not a pause */
    client = zk_client_new(loop, &co, &err);
    if (!client) {
        fprintf(stderr, "client_load: zk_client_new(%s): %s\n", url, zk_strerror(err));
        zk_loop_free(loop);
        free(slots);
        return 1;
    }
    end = now_s() + 10;
    while (zk_client_state(client) == ZK_CLIENT_CONNECTING && now_s() < end) zk_loop_step(loop, 50);
    if (zk_client_state(client) != ZK_CLIENT_OPEN) {
        fprintf(stderr, "client_load: cannot connect to %s: %s\n", url, zk_client_error(client, NULL));
        zk_client_free(client);
        zk_loop_free(loop);
        free(slots);
        return 1;
    }

    for (i = 0; i < inflight; i++)
        if (start_call(client, &slots[i]) < 0) break;
    end = now_s() + warmup;
    while (now_s() < end && zk_client_state(client) == ZK_CLIENT_OPEN) zk_loop_step(loop, 10);

    if (server_pid > 0) {
        sv0 = proc_ticks(server_pid);
        b0 = busy_ticks();
    }
    a0 = answered;
    c0 = cpu_s(&u0, &s0);
    t0 = now_s();
    while ((t1 = now_s()) - t0 < seconds && zk_client_state(client) == ZK_CLIENT_OPEN) zk_loop_step(loop, 10);
    c1 = cpu_s(&u1, &s1);
    a1 = answered;
    if (server_pid > 0) {
        sv1 = proc_ticks(server_pid);
        b1 = busy_ticks();
    }
    calls = a1 - a0;

    running = 0;
    if (zk_client_state(client) != ZK_CLIENT_OPEN)
        fail("connection lost: %s%s", zk_client_error(client, NULL), "");
    zk_client_free(client);
    for (i = 0; i < 10; i++) zk_loop_step(loop, 0);
    zk_loop_free(loop);
    free(slots);

    printf("zk_client over TCP to %s, %d call%s in flight: %.0f calls/s, client CPU %.2f us/call "
           "(user %.2f, sys %.2f; %.0f%% of a core), %lld errors%s%s\n",
           url, inflight, inflight == 1 ? "" : "s", calls / (t1 - t0), calls ? (c1 - c0) * 1e6 / (double)calls : 0.0,
           calls ? (u1 - u0) * 1e6 / (double)calls : 0.0, calls ? (s1 - s0) * 1e6 / (double)calls : 0.0,
           100 * (c1 - c0) / (t1 - t0), errors, errors ? ": " : "", first_error);
    printf("RESULT mode=client inflight=%d calls=%lld seconds=%.3f calls_per_s=%.0f cpu_us_per_call=%.3f "
           "user_us_per_call=%.3f sys_us_per_call=%.3f cpu_pct=%.0f server_ticks=%lld busy_ticks=%lld errors=%lld\n",
           inflight, calls, t1 - t0, calls / (t1 - t0), calls ? (c1 - c0) * 1e6 / (double)calls : 0.0,
           calls ? (u1 - u0) * 1e6 / (double)calls : 0.0, calls ? (s1 - s0) * 1e6 / (double)calls : 0.0,
           100 * (c1 - c0) / (t1 - t0), sv0 < 0 || sv1 < 0 ? -1 : sv1 - sv0, b0 < 0 || b1 < 0 ? -1 : b1 - b0, errors);
    return errors || !calls ? 1 : 0;
}
