/* herd_test: does a restart bring N zk_clients back all at once? On real
   sockets (tests/interop/run.sh drives it against build/chat).

   build/herd_test ws://127.0.0.1:PORT/ws [N]      (N: 1000 by default)

   N clients on one loop connect to /ws?name=hN. When all are open the
   program prints "ready 1"; run.sh stops the server with SIGTERM (it closes
   every connection with 1001, going away) and starts it again on the same
   port. A client's first reconnect after 1001 waits a random time in
   [0, restart_spread_ms] (5000 ms by default); the program records when each
   client is open again, relative to the first close it saw, prints a
   histogram per 250 ms and checks that
     - every client saw 1001 and came back, within SPREAD + 15 s;
     - no one-second window holds more than MAX_WINDOW_SHARE of them, plus
       the share d / SPREAD_MS of those whose first attempt fell into the
       server's downtime d (measured: the first client back).
   Why 30%: uniform over 5 s, 1000 clients give 200 a second (20%), with a
   standard deviation of sqrt(1000 * 0.2 * 0.8) = 12.6 (1.3%) per fixed
   window; the fullest of all sliding windows lies about 2 to 4 of those
   above (23-25%; a simulation of 1000 runs: median 22.7%, worst 25.5%).
   The clients whose draw fell into the downtime d (the old process exiting,
   the new one starting: tens of ms here, more on a loaded machine) are
   refused and retry with backoff in [0, 2 * backoff_base_ms] = [0, 1000]
   ms, which piles a share of about d / 5 s onto the first second or so;
   the bound grows by that share (simulated with d = 300 ms: worst 31.5%
   against 36%; d = 1 s: worst 40.8% against 50%). A herd - everyone back
   at once, or within the backoff window - puts nearly all of them into one
   second and fails it. (The numbers are for N = 1000: with far fewer
   clients the share varies more and 30% is too tight.) The server's side is part of what is measured: its
   listen backlog (511) and accept loop must take what comes (a backlog
   overflow shows up as connects that take a SYN retransmission, 1 s, not
   as failures).

   Once every client's connection is stable again (zk_client_attempts 0:
   stable_ms, 5 s by default, after it opened) it prints "ready 2"; run.sh
   kills the server (SIGKILL: the clients see 1006, no close frame) and
   starts it again. After 1006 the first attempt waits only in [0,
   backoff_base_ms] = [0, 500] ms, so they come back nearly together: the
   histogram is printed, and only "every client came back" is checked.

   Every wait has a deadline. The soft limit on open files is raised (to the
   hard limit at most) when N clients would not fit. */
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define DEFAULT_N 1000
#define MAX_N 20000
#define SPREAD_MS 5000u               /* the client's restart_spread_ms default */
#define MAX_WINDOW_SHARE 0.30         /* of N in any one second, after 1001 */
#define BUCKET_MS 250u
#define CONNECT_DEADLINE_MS 30000u
#define KILL_DEADLINE_MS 30000u       /* from "ready" to seeing the server go */
#define BACK_DEADLINE_MS (SPREAD_MS + 15000u)
#define STABLE_DEADLINE_MS 15000u

typedef struct herd_client {
    zk_client *client;
    int down;               /* this round: the connection dropped */
    int back;               /* this round: open again */
    int code;               /* this round: the close code */
    uint64_t down_at, back_at;
    uint32_t attempts;      /* zk_client_attempts when it opened again */
} herd_client;

static zk_loop *loop;
static herd_client *clients;
static int n_clients;
static int round_no;        /* 0 connecting, 1 after SIGTERM, 2 after SIGKILL */
static int failures;

static void report(const char *name, const char *error) {
    if (!error) {
        printf("ok %s\n", name);
    } else {
        failures++;
        printf("FAIL %s: %s\n", name, error);
    }
    fflush(stdout);
}

static void on_state(zk_client *c, int state, int code, const char *reason) {
    herd_client *h = (herd_client *)zk_client_data(c);
    (void)reason;
    if (round_no == 0) return;
    if (state == ZK_CLIENT_OPEN) {
        if (h->down && !h->back) {
            h->back = 1;
            h->back_at = zk_loop_now(loop);
            h->attempts = zk_client_attempts(c);
        }
    } else if (!h->down) {
        h->down = 1;
        h->down_at = zk_loop_now(loop);
        h->code = code;
    }
}

/* Steps the loop until pred() or the deadline; 1 if pred() held. */
static int wait_for(int (*pred)(void), uint32_t deadline_ms) {
    uint64_t end = zk_loop_now(loop) + deadline_ms;
    while (!pred()) {
        if (zk_loop_now(loop) >= end) return 0;
        if (zk_loop_step(loop, 50) < 0) return 0;
    }
    return 1;
}

static int count_open(void) {
    int i, n = 0;
    for (i = 0; i < n_clients; i++) n += zk_client_state(clients[i].client) == ZK_CLIENT_OPEN;
    return n;
}
static int all_open(void) { return count_open() == n_clients; }
static int all_stable(void) {
    int i;
    for (i = 0; i < n_clients; i++)
        if (zk_client_state(clients[i].client) != ZK_CLIENT_OPEN || zk_client_attempts(clients[i].client))
            return 0;
    return 1;
}
static int count_down(void) {
    int i, n = 0;
    for (i = 0; i < n_clients; i++) n += clients[i].down;
    return n;
}
static int some_down(void) { return count_down() > 0; }
static int count_back(void) {
    int i, n = 0;
    for (i = 0; i < n_clients; i++) n += clients[i].back;
    return n;
}
static int all_back(void) { return count_back() == n_clients; }

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void start_round(int r) {
    int i;
    round_no = r;
    for (i = 0; i < n_clients; i++) {
        herd_client *h = &clients[i];
        h->down = h->back = 0;
        h->code = 0;
        h->attempts = 0;
    }
}

/* The round's histogram and checks; expect_code is the close code every
   client must have seen; check_spread 1 checks the window share. */
static void finish_round(const char *label, int expect_code, int check_spread) {
    uint64_t *t = (uint64_t *)malloc((size_t)n_clients * sizeof *t);
    uint64_t t0 = (uint64_t)-1, last = 0;
    size_t buckets, b, *hist;
    int i, n = 0, wrong_code = 0, other_code = 0, max_window = 0, retried = 0, j;
    uint32_t max_attempts = 0;
    char name[160], why[200];

    if (!t) return;
    for (i = 0; i < n_clients; i++) {
        herd_client *h = &clients[i];
        if (h->down && h->down_at < t0) t0 = h->down_at;
        if (h->down && h->code != expect_code) {
            wrong_code++;
            other_code = h->code;
        }
    }
    for (i = 0; i < n_clients; i++) {
        herd_client *h = &clients[i];
        if (!h->back) continue;
        t[n++] = h->back_at - t0;
        if (h->attempts > 1) retried++;
        if (h->attempts > max_attempts) max_attempts = h->attempts;
    }
    qsort(t, (size_t)n, sizeof *t, compare_u64);
    if (n) last = t[n - 1];
    for (i = 0, j = 0; i < n; i++) { /* the fullest window [t[i], t[i] + 1 s) */
        while (j < n && t[j] < t[i] + 1000) j++;
        if (j - i > max_window) max_window = j - i;
    }
    printf("# %s: %d of %d back; first %.3f s, median %.3f s, last %.3f s after the first close; "
           "%d needed more than one attempt (at most %lu); fullest 1 s window: %d (%.1f%%)\n",
           label, n, n_clients, n ? (double)t[0] / 1000 : 0.0, n ? (double)t[n / 2] / 1000 : 0.0,
           (double)last / 1000, retried, (unsigned long)max_attempts, max_window,
           100.0 * max_window / n_clients);
    buckets = (size_t)(last / BUCKET_MS) + 1;
    hist = (size_t *)calloc(buckets, sizeof *hist);
    if (hist) {
        for (i = 0; i < n; i++) hist[t[i] / BUCKET_MS]++;
        for (b = 0; b < buckets; b++) {
            size_t bar = hist[b] * 200 / (size_t)n_clients, k;
            printf("#   %6.2f s %5lu ", (double)(b * BUCKET_MS) / 1000, (unsigned long)hist[b]);
            for (k = 0; k < bar; k++) putchar('#');
            putchar('\n');
        }
        free(hist);
    }
    snprintf(name, sizeof name, "%s: every client saw close code %d", label, expect_code);
    snprintf(why, sizeof why, "%d did not (one saw %d); %d did not see the drop at all", wrong_code, other_code,
             n_clients - count_down());
    report(name, wrong_code || count_down() != n_clients ? why : NULL);
    snprintf(name, sizeof name, "%s: every client came back", label);
    snprintf(why, sizeof why, "%d of %d within %u ms", n, n_clients, BACK_DEADLINE_MS);
    report(name, n == n_clients ? NULL : why);
    if (check_spread && n) {
        /* the first client back tells when the server was back */
        double downtime_share = (double)t[0] / SPREAD_MS, bound = MAX_WINDOW_SHARE + downtime_share;
        snprintf(name, sizeof name, "%s: no 1 s window holds more than %.0f%% of the clients (+ the downtime's share)",
                 label, 100 * MAX_WINDOW_SHARE);
        if (downtime_share > 0.5) {
            snprintf(why, sizeof why, "the server was down %.3f s: too long to measure a %u ms spread",
                     (double)t[0] / 1000, SPREAD_MS);
            report(name, why);
        } else {
            snprintf(why, sizeof why, "%d (%.1f%%) in one second; bound %.1f%% (server down %.3f s)", max_window,
                     100.0 * max_window / n_clients, 100 * bound, (double)t[0] / 1000);
            report(name, max_window > bound * n_clients ? why : NULL);
            printf("# bound for the fullest window: %.1f%% (30%% + %.1f%% for %.3f s down)\n", 100 * bound,
                   100 * downtime_share, (double)t[0] / 1000);
        }
    }
    free(t);
}

static int raise_file_limit(rlim_t want) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
    if (r.rlim_cur != RLIM_INFINITY && r.rlim_cur < want) {
        if (r.rlim_max != RLIM_INFINITY && r.rlim_max < want) return -1;
        r.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    char url[512], why[160];
    uint64_t started;
    int i, rc = 0;

    n_clients = argc == 3 ? atoi(argv[2]) : DEFAULT_N;
    if (argc < 2 || argc > 3 || strncmp(argv[1], "ws://", 5) != 0 || strlen(argv[1]) > 400 || n_clients < 1 ||
        n_clients > MAX_N) {
        fprintf(stderr, "usage: %s ws://127.0.0.1:PORT/ws [N]\n", argv[0]);
        return 2;
    }
    if (raise_file_limit((rlim_t)n_clients + 64) < 0) {
        snprintf(why, sizeof why, "cannot have %d open files (ulimit -Hn is too low)", n_clients + 64);
        report("room for the clients' sockets", why);
        return 1;
    }
    loop = zk_loop_new(NULL);
    clients = (herd_client *)calloc((size_t)n_clients, sizeof *clients);
    if (!loop || !clients) {
        fprintf(stderr, "out of memory\n");
        return 2;
    }
    started = zk_loop_now(loop);
    for (i = 0; i < n_clients; i++) {
        zk_client_opts o;
        memset(&o, 0, sizeof o);
        snprintf(url, sizeof url, "%s?name=h%d", argv[1], i);
        o.url = url;
        o.on_state = on_state;
        o.data = &clients[i];
        clients[i].client = zk_client_new(loop, &o, &rc);
        if (!clients[i].client) {
            fprintf(stderr, "client %d: %s\n", i, zk_strerror(rc));
            return 2;
        }
    }

    if (!wait_for(all_open, CONNECT_DEADLINE_MS)) {
        snprintf(why, sizeof why, "%d of %d open within %u ms", count_open(), n_clients, CONNECT_DEADLINE_MS);
        report("all clients connected", why);
        goto done;
    }
    printf("# %d clients open in %.3f s\n", n_clients, (double)(zk_loop_now(loop) - started) / 1000);
    report("all clients connected", NULL);

    /* round 1: SIGTERM (1001) */
    start_round(1);
    printf("ready 1\n");
    fflush(stdout);
    if (!wait_for(some_down, KILL_DEADLINE_MS)) {
        report("after SIGTERM: the server went away", "no client saw its connection close");
        goto done;
    }
    wait_for(all_back, BACK_DEADLINE_MS);
    finish_round("after SIGTERM", 1001, 1);

    /* round 2: SIGKILL (1006) */
    if (!wait_for(all_stable, STABLE_DEADLINE_MS)) {
        report("stable again before the kill", "not every client was open and stable in time");
        goto done;
    }
    start_round(2);
    printf("ready 2\n");
    fflush(stdout);
    if (!wait_for(some_down, KILL_DEADLINE_MS)) {
        report("after SIGKILL: the server went away", "no client saw its connection drop");
        goto done;
    }
    wait_for(all_back, BACK_DEADLINE_MS);
    finish_round("after SIGKILL", 1006, 0);

done:
    printf("# %.1f s\n", (double)(zk_loop_now(loop) - started) / 1000.0);
    for (i = 0; i < n_clients; i++) zk_client_free(clients[i].client);
    free(clients);
    zk_loop_free(loop);
    return failures ? 1 : 0;
}
