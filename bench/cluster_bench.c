/* Cross-node room fan-out: what a message costs in time when it goes to
   another server process through a broker (Redis, NATS), beside the same
   message delivered in process, measured in one run.

   build/cluster_bench [--redis URL] [--nats URL] [--clients "10 100"]
                       [--senders K] [--window W] [--seconds S]
                       [--latency-seconds S] [--redis-pid PID] [--nats-pid PID]

   Node A and node B are two zk_apps on one loop in this process, each with
   its own zk_broker to the same broker server (a channel prefix of their
   own per run), so everything between them goes through that server as
   between two processes. Each node has N loopback clients in the room
   "bench". A client of A sends {"type":"bench.send","payload":{"k":K,
   "t":NS}}; A's route answers nothing and sends {"type":"bench.msg",
   "payload":<the payload>} to the room (zk_app_message + zk_write_value +
   zk_app_send): A's N clients get it in process (local), B's N through the
   broker (remote). "none" is node A alone with no broker: what the local
   path costs without one. A delivery's latency is from the client's send
   (t, CLOCK_MONOTONIC ns) to its arrival at a client (on_message).

   Per broker and N:
   - setup: both brokers open, every client joined, then probe messages
     until one reaches every client of B (B's room subscription is live).
   - unloaded: one message at a time from one sender (the next once the
     last has reached all 2N clients), --latency-seconds (1.5). Latency
     p50/p99 of local and remote deliveries; "added" = remote - local.
   - loaded: K senders (4) on A, each with W messages (16) not yet at all
     of B's clients, for --seconds (3). Messages/s, deliveries/s at B's
     clients and at A's, latency p50/p99 under that load, CPU of this
     process (both nodes and all clients: one thread) and of the broker
     server (with --*-pid, from /proc/PID/stat) per message.
   - then sending stops and every message sent must reach each of the 2N
     clients exactly once (checked: counted per message; "lost" or "dup"
     in the last column otherwise).

   Everything runs on one thread: both nodes, their clients and the
   broker's client sides share one core; the broker server runs on its
   own (bench/run_cluster.sh pins them). Prints a Markdown table.
   Histograms have 1 µs buckets up to 200 ms. */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define RING 65536          /* messages tracked at once (k % RING) */
#define HIST 200000         /* 1 µs buckets */
#define MAX_CLIENTS 1000
#define MAX_SENDERS 64

typedef struct hist {
    uint32_t *b;
    uint64_t n, over;
} hist;

static void hist_add(hist *h, uint64_t ns) {
    uint64_t us = ns / 1000;
    if (us >= HIST) h->over++;
    else h->b[us]++;
    h->n++;
}

/* The p-th percentile in µs (bucket upper edge), or -1 with no samples. */
static double hist_pct(const hist *h, double p) {
    uint64_t want, seen = 0;
    size_t i;
    if (!h->n) return -1;
    want = (uint64_t)((double)h->n * p / 100.0);
    if (want >= h->n) want = h->n - 1;
    for (i = 0; i < HIST; i++) {
        seen += h->b[i];
        if (seen > want) return (double)i + 1;
    }
    return HIST;
}

static void hist_reset(hist *h) {
    memset(h->b, 0, HIST * sizeof *h->b);
    h->n = h->over = 0;
}

typedef struct client {
    zk_conn *conn;
    int node;            /* 0: A, 1: B */
    int index;           /* in its node */
    int joined;
    int open;
} client;

typedef struct slot {    /* one message in flight */
    uint64_t k;
    uint32_t local, remote;
    int sender;          /* index of the sending client of A, -1 for none */
} slot;

/* The run's state: one configuration at a time. */
static struct {
    zk_loop *loop;
    zk_router *router;
    zk_app *app[2];
    int nodes;           /* 1 (none) or 2 */
    int n;               /* clients per node */
    client clients[2][MAX_CLIENTS];
    slot *ring;
    uint64_t next_k;     /* the next message number */
    uint64_t first_k;    /* messages before it are not counted (probes, earlier phases) */
    uint64_t completed;  /* counted messages at all 2N (or N) clients */
    uint64_t del_local, del_remote; /* counted deliveries */
    uint64_t dups, strays, refused;
    hist lat_local, lat_remote;
    int sending;         /* senders send more when a message completes */
    int window, senders;
    int in_flight[MAX_SENDERS];
} R;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_self(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* utime + stime of pid in seconds, or -1. */
static double cpu_pid(long pid) {
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    size_t n;
    if (pid <= 0) return -1;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if (!(f = fopen(path, "r"))) return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    if (!(p = strrchr(buf, ')'))) return -1;
    /* after ")": state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int expected_per_message(void) { return R.n * R.nodes; }

static void send_one(int sender) {
    char buf[128];
    uint64_t k = R.next_k++;
    slot *s = &R.ring[k % RING];
    int len;
    s->k = k;
    s->local = s->remote = 0;
    s->sender = sender;
    len = snprintf(buf, sizeof buf, "{\"type\":\"bench.send\",\"payload\":{\"k\":%llu,\"t\":%llu}}",
                   (unsigned long long)k, (unsigned long long)now_ns());
    if (sender >= 0) R.in_flight[sender]++;
    if (zk_conn_send(R.clients[0][sender < 0 ? 0 : sender].conn, buf, (size_t)len, 0) < 0) {
        fprintf(stderr, "cluster_bench: a send was refused\n");
        exit(1);
    }
}

/* ---- the nodes ---- */

static const char *room = "bench";

static void route_join(zk_request *req) {
    int rc = zk_room_join(zk_request_conn(req), room);
    if (rc < 0) zk_request_fail(req, ZK_CODE_INTERNAL, zk_strerror(rc));
}

static void route_send(zk_request *req) {
    zk_app *app = zk_request_app(req);
    zk_writer *w = zk_app_message(app, "bench.msg");
    zk_target to;
    int rc;
    zk_write_value(w, zk_request_payload(req));
    memset(&to, 0, sizeof to);
    to.rooms = &room;
    to.room_count = 1;
    if ((rc = zk_app_send(app, &to)) < 0) {
        R.refused++;
        if (R.refused == 1) fprintf(stderr, "cluster_bench: zk_app_send: %s\n", zk_strerror(rc));
    }
}

/* ---- the clients ---- */

static uint64_t field(zk_str d, const char *key) {
    const char *p = d.ptr, *end = d.ptr + d.len;
    size_t kl = strlen(key);
    uint64_t v = 0;
    for (; p + kl < end; p++)
        if (*p == '"' && memcmp(p + 1, key, kl) == 0 && p[kl + 1] == '"' && p[kl + 2] == ':') break;
    if (p + kl >= end) return UINT64_MAX;
    for (p += kl + 3; p < end && *p >= '0' && *p <= '9'; p++) v = v * 10 + (uint64_t)(*p - '0');
    return v;
}

static void client_open(zk_conn *conn, const zk_http_request *req) {
    client *c = (client *)zk_conn_data(conn);
    static const char join[] = "{\"type\":\"bench.join\",\"rpcId\":\"j\"}";
    (void)req;
    c->open = 1;
    zk_conn_send(conn, join, sizeof join - 1, 0);
}

static void client_message(zk_conn *conn, zk_str d, int binary) {
    client *c = (client *)zk_conn_data(conn);
    uint64_t k, t, now = now_ns();
    slot *s;
    (void)binary;
    if (d.len > 20 && memcmp(d.ptr, "{\"type\":\"__rpc_res\"", 19) == 0) {
        c->joined = 1;
        return;
    }
    if (d.len < 20 || memcmp(d.ptr, "{\"type\":\"bench.msg\"", 19) != 0) {
        R.strays++;
        return;
    }
    k = field(d, "k");
    t = field(d, "t");
    if (k == UINT64_MAX || t == UINT64_MAX || k >= R.next_k || R.next_k - k > RING) {
        R.strays++;
        return;
    }
    s = &R.ring[k % RING];
    if (s->k != k) {
        R.strays++;
        return;
    }
    if (c->node == 0) s->local++;
    else s->remote++;
    if (s->local > (uint32_t)R.n || s->remote > (uint32_t)R.n) R.dups++;
    if (k < R.first_k) return;
    if (c->node == 0) {
        R.del_local++;
        hist_add(&R.lat_local, now - t);
    } else {
        R.del_remote++;
        hist_add(&R.lat_remote, now - t);
    }
    if ((int)(s->local + s->remote) == expected_per_message()) {
        R.completed++; /* counted messages only: k >= first_k */
        if (s->sender >= 0) {
            R.in_flight[s->sender]--;
            if (R.sending) while (R.in_flight[s->sender] < R.window) send_one(s->sender);
        }
    }
}

static void client_close(zk_conn *conn, int code, zk_str reason, int clean) {
    client *c = (client *)zk_conn_data(conn);
    (void)code;
    (void)reason;
    (void)clean;
    c->open = 0;
    c->conn = NULL;
}

/* ---- a configuration ---- */

typedef struct result {
    const char *broker;
    int n;
    double u_local50, u_local99, u_remote50, u_remote99;
    double msgs_per_s, del_remote_s, del_local_s;
    double l_local50, l_local99, l_remote50, l_remote99;
    double cpu_us, broker_cpu_us;
    uint64_t messages, lost, dups, refused;
    int ok;
} result;

/* Runs the loop until done() or seconds pass; 0 when done. */
static int run_until(int (*done)(void), double seconds) {
    uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
    while (!done()) {
        if (now_ns() > end) return -1;
        zk_loop_step(R.loop, 1);
    }
    return 0;
}

static int brokers_open(void) {
    int i;
    for (i = 0; i < R.nodes; i++)
        if (R.nodes == 2 && zk_broker_state(zk_app_broker(R.app[i])) != ZK_BROKER_OPEN) return 0;
    return 1;
}

static int all_joined(void) {
    int i, j;
    for (i = 0; i < R.nodes; i++)
        for (j = 0; j < R.n; j++)
            if (!R.clients[i][j].joined) return 0;
    return 1;
}

static uint64_t wait_k;
static int message_done(void) {
    const slot *s = &R.ring[wait_k % RING];
    return s->k == wait_k && (int)(s->local + s->remote) == expected_per_message();
}

static int nothing_in_flight(void) {
    int i;
    for (i = 0; i < R.senders; i++)
        if (R.in_flight[i] > 0) return 0;
    return 1;
}

static zk_conn_opts client_opts;

static int configure(const char *kind, const char *url, int n, char *why, size_t why_len) {
    static unsigned run;
    zk_app_opts ao;
    int i, j, err = 0;
    char prefix[64];
    memset(&R.clients, 0, sizeof R.clients);
    R.n = n;
    R.nodes = url ? 2 : 1;
    R.loop = zk_loop_new(NULL);
    memset(&ao, 0, sizeof ao);
    ao.router = R.router;
    ao.rate_per_sec = ZK_RATE_UNLIMITED; /* a benchmark floods on purpose */
    ao.max_rooms_per_conn = 4;
    snprintf(prefix, sizeof prefix, "zkbench%ld-%u", (long)getpid(), run++);
    for (i = 0; i < R.nodes; i++) {
        R.app[i] = zk_app_new(R.loop, &ao, &err);
        if (!R.app[i]) {
            snprintf(why, why_len, "zk_app_new: %s", zk_strerror(err));
            return -1;
        }
        if (url) {
            zk_broker_opts bo;
            memset(&bo, 0, sizeof bo);
            bo.url = url;
            bo.prefix = prefix;
            if (!zk_broker_new(R.app[i], &bo, &err)) {
                snprintf(why, why_len, "zk_broker_new(%s): %s", url, zk_strerror(err));
                return -1;
            }
        }
    }
    if (run_until(brokers_open, 5) < 0) {
        snprintf(why, why_len, "%s: not open within 5 s: %s", kind,
                 zk_broker_error(zk_app_broker(R.app[0])));
        return -1;
    }
    for (i = 0; i < R.nodes; i++)
        for (j = 0; j < n; j++) {
            client *c = &R.clients[i][j];
            c->node = i;
            c->index = j;
            client_opts.data = c;
            c->conn = zk_loopback_connect(zk_app_server(R.app[i]), &client_opts, NULL, &err);
            if (!c->conn) {
                snprintf(why, why_len, "zk_loopback_connect: %s", zk_strerror(err));
                return -1;
            }
        }
    if (run_until(all_joined, 5) < 0) {
        snprintf(why, why_len, "the clients did not all join within 5 s");
        return -1;
    }
    return 0;
}

static void teardown(void) {
    int i;
    for (i = 0; i < R.nodes; i++) zk_app_free(R.app[i]);
    zk_loop_free(R.loop);
    R.app[0] = R.app[1] = NULL;
    R.loop = NULL;
}

static void reset_counts(void) {
    R.first_k = R.next_k;
    R.completed = R.del_local = R.del_remote = 0;
    hist_reset(&R.lat_local);
    hist_reset(&R.lat_remote);
}

static int measure(const char *kind, const char *url, long broker_pid, int n, double lat_s,
                   double load_s, result *out) {
    char why[256] = "";
    uint64_t t0, t1, sent_first, sent_end;
    double c0, c1, b0, b1;
    int i, probes = 0;

    memset(out, 0, sizeof *out);
    out->broker = kind;
    out->n = n;
    memset(R.in_flight, 0, sizeof R.in_flight);
    R.sending = 0;
    R.dups = R.strays = R.refused = 0;
    if (configure(kind, url, n, why, sizeof why) < 0) {
        fprintf(stderr, "cluster_bench: %s, N=%d: %s\n", kind, n, why);
        teardown();
        return -1;
    }
    /* probes until one reaches everyone: B's subscription is live */
    for (;;) {
        wait_k = R.next_k;
        send_one(-1);
        if (run_until(message_done, 0.2) == 0) break;
        if (++probes == 25) {
            fprintf(stderr, "cluster_bench: %s, N=%d: no probe reached every client in 5 s\n",
                    kind, n);
            teardown();
            return -1;
        }
    }
    /* unloaded: one at a time */
    reset_counts();
    t0 = now_ns();
    while (now_ns() - t0 < (uint64_t)(lat_s * 1e9) && R.next_k - R.first_k < 20000) {
        wait_k = R.next_k;
        send_one(-1);
        if (run_until(message_done, 5) < 0) {
            fprintf(stderr, "cluster_bench: %s, N=%d: message %llu not everywhere in 5 s\n", kind, n,
                    (unsigned long long)wait_k);
            out->lost++;
            break;
        }
    }
    out->u_local50 = hist_pct(&R.lat_local, 50);
    out->u_local99 = hist_pct(&R.lat_local, 99);
    out->u_remote50 = hist_pct(&R.lat_remote, 50);
    out->u_remote99 = hist_pct(&R.lat_remote, 99);

    /* loaded: K senders, W each */
    reset_counts();
    sent_first = R.next_k;
    R.sending = 1;
    c0 = cpu_self();
    b0 = cpu_pid(broker_pid);
    t0 = now_ns();
    for (i = 0; i < R.senders && i < n; i++)
        while (R.in_flight[i] < R.window) send_one(i);
    while ((t1 = now_ns()) - t0 < (uint64_t)(load_s * 1e9)) zk_loop_step(R.loop, 1);
    c1 = cpu_self();
    b1 = cpu_pid(broker_pid);
    out->messages = R.completed;
    out->msgs_per_s = (double)R.completed / ((double)(t1 - t0) * 1e-9);
    out->del_remote_s = (double)R.del_remote / ((double)(t1 - t0) * 1e-9);
    out->del_local_s = (double)R.del_local / ((double)(t1 - t0) * 1e-9);
    out->l_local50 = hist_pct(&R.lat_local, 50);
    out->l_local99 = hist_pct(&R.lat_local, 99);
    out->l_remote50 = hist_pct(&R.lat_remote, 50);
    out->l_remote99 = hist_pct(&R.lat_remote, 99);
    out->cpu_us = R.completed ? (c1 - c0) * 1e6 / (double)R.completed : -1;
    out->broker_cpu_us = R.completed && b0 >= 0 && b1 >= 0 ? (b1 - b0) * 1e6 / (double)R.completed : -1;

    /* drain, then check: every message sent in the loaded phase, everywhere once */
    R.sending = 0;
    run_until(nothing_in_flight, 10);
    sent_end = R.next_k;
    out->lost += sent_end - sent_first - R.completed; /* completed: once each, at all */
    out->dups = R.dups;
    out->refused = R.refused;
    out->ok = !out->lost && !out->dups && !out->refused && !R.strays;
    if (R.strays) fprintf(stderr, "cluster_bench: %s, N=%d: %llu messages not understood\n", kind, n,
                          (unsigned long long)R.strays);
    teardown();
    return 0;
}

static void print_pair(double a, double b) {
    if (a < 0) printf(" - |");
    else printf(" %.0f/%.0f |", a, b);
}

int main(int argc, char **argv) {
    const char *redis = NULL, *nats = NULL, *sizes = "10 100";
    long redis_pid = 0, nats_pid = 0;
    double lat_s = 1.5, load_s = 3;
    result res[3 * 8];
    int nres = 0, i, failed = 0;
    const char *p;

    R.senders = 4;
    R.window = 16;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) goto usage;
        if (!strcmp(a, "--redis")) redis = v;
        else if (!strcmp(a, "--nats")) nats = v;
        else if (!strcmp(a, "--clients")) sizes = v;
        else if (!strcmp(a, "--senders")) R.senders = atoi(v);
        else if (!strcmp(a, "--window")) R.window = atoi(v);
        else if (!strcmp(a, "--seconds")) load_s = atof(v);
        else if (!strcmp(a, "--latency-seconds")) lat_s = atof(v);
        else if (!strcmp(a, "--redis-pid")) redis_pid = atol(v);
        else if (!strcmp(a, "--nats-pid")) nats_pid = atol(v);
        else goto usage;
        i++;
    }
    if (R.senders < 1 || R.senders > MAX_SENDERS || R.window < 1 ||
        (uint64_t)R.senders * (uint64_t)R.window > 2048 || load_s <= 0 || lat_s <= 0)
        goto usage;

    R.router = zk_router_new();
    if (!R.router || zk_router_on(R.router, "bench.join", route_join, NULL) < 0 ||
        zk_router_on(R.router, "bench.send", route_send, NULL) < 0)
        return 1;
    R.ring = (slot *)calloc(RING, sizeof *R.ring);
    R.lat_local.b = (uint32_t *)calloc(HIST, sizeof(uint32_t));
    R.lat_remote.b = (uint32_t *)calloc(HIST, sizeof(uint32_t));
    if (!R.ring || !R.lat_local.b || !R.lat_remote.b) return 1;
    memset(&client_opts, 0, sizeof client_opts);
    client_opts.url = "ws://loopback/ws";
    client_opts.cb.on_open = client_open;
    client_opts.cb.on_message = client_message;
    client_opts.cb.on_close = client_close;

    for (p = sizes; *p;) {
        char *end;
        long n = strtol(p, &end, 10);
        if (end == p) break;
        p = end;
        while (*p == ' ' || *p == ',') p++;
        if (n < 1 || n > MAX_CLIENTS || nres + 3 > (int)(sizeof res / sizeof *res)) goto usage;
        if (measure("none", NULL, 0, (int)n, lat_s, load_s, &res[nres]) == 0) nres++;
        else failed++;
        if (redis) {
            if (measure("redis", redis, redis_pid, (int)n, lat_s, load_s, &res[nres]) == 0) nres++;
            else failed++;
        }
        if (nats) {
            if (measure("nats", nats, nats_pid, (int)n, lat_s, load_s, &res[nres]) == 0) nres++;
            else failed++;
        }
    }

    printf("%d senders x %d in flight on node A; unloaded %.1f s, loaded %.1f s per row; latency in µs"
           " from the client's send\n\n",
           R.senders, R.window, lat_s, load_s);
    printf("| broker | N | unloaded local p50/p99 | unloaded remote p50/p99 | added p50/p99 |"
           " loaded msgs/s | deliveries/s at B | deliveries/s at A | loaded local p50/p99 |"
           " loaded remote p50/p99 | this process µs/msg | broker µs/msg | checked |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (i = 0; i < nres; i++) {
        result *r = &res[i];
        printf("| %s | %d |", r->broker, r->n);
        print_pair(r->u_local50, r->u_local99);
        print_pair(r->u_remote50, r->u_remote99);
        if (r->u_remote50 < 0) printf(" - |");
        else printf(" %.0f/%.0f |", r->u_remote50 - r->u_local50, r->u_remote99 - r->u_local99);
        printf(" %.0f |", r->msgs_per_s);
        if (r->u_remote50 < 0) printf(" - |");
        else printf(" %.0f |", r->del_remote_s);
        printf(" %.0f |", r->del_local_s);
        print_pair(r->l_local50, r->l_local99);
        print_pair(r->l_remote50, r->l_remote99);
        printf(" %.2f |", r->cpu_us);
        if (r->broker_cpu_us < 0) printf(" - |");
        else printf(" %.2f |", r->broker_cpu_us);
        if (r->ok) printf(" %llu msgs, each once at all |\n", (unsigned long long)r->messages);
        else {
            printf(" FAILED: %llu lost, %llu dup, %llu refused |\n", (unsigned long long)r->lost,
                   (unsigned long long)r->dups, (unsigned long long)r->refused);
            failed++;
        }
    }
    zk_router_free(R.router);
    free(R.ring);
    free(R.lat_local.b);
    free(R.lat_remote.b);
    return failed ? 1 : 0;

usage:
    fprintf(stderr,
            "usage: %s [--redis URL] [--nats URL] [--clients \"10 100\"] [--senders K] [--window W]\n"
            "          [--seconds S] [--latency-seconds S] [--redis-pid PID] [--nats-pid PID]\n",
            argv[0]);
    return 2;
}
