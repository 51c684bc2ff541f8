/* slowloris: slow and silent peers against a zk_app over real sockets, and
   a normal client's round trip while they are there (issue 8).

   build/slowloris [--quick] [--count N] [--calls N]

   (--quick: 100 of each kind and 500 calls; --count N of each kind;
   --calls N per phase. By default 1000 of each kind and 2000 calls.)

   A server is forked on 127.0.0.1 (port 0, told back through a pipe): a
   zk_app with two routes, "ping" (answers its payload) and "fill" (answers
   a string of as many bytes as its payload says, at most 64 KiB), and the
   limits under test set short (the SERVER_* values below, printed at
   start). This process runs one thread and one epoll loop for the
   attackers' raw sockets, with the zk_loop of the normal client (a
   zk_client) embedded in it through zk_loop_fd and zk_loop_timeout; the
   attackers' pacing is zk_timers on that loop.

   Phase 1, baseline: the client makes CALLS sequential "ping" calls.
   Phase 2: N connections of each kind, at most MAX_PENDING connecting or
   upgrading at once:
   - non-readers (SO_RCVBUF and TCP_MAXSEG set small before the connect, so
     that neither kernel takes much of what the server sends) complete the
     upgrade, call "fill" FILL_CALLS times in one write and never read
     again: their server queues fill up to write_limit and stop moving.
     Each must be dropped write_timeout_ms later, which the peer sees as a
     reset (epoll reports it without a read);
   - slow handshakes send the upgrade request a byte a second, never
     finished: each must be closed handshake_timeout_ms after its connect;
   - slow messages complete the upgrade and send one masked text frame a
     byte a second, never finished: each must get a close frame with 1008
     message_timeout_ms after its first byte, and, silent since (it cannot
     answer in the middle of a frame), see the TCP connection closed
     close_timeout_ms after that.
   In that order: the non-readers and slow messages are upgraded and held;
   the non-readers send their calls, and one normal call made then waits
   out the server's answering them (its round trip is reported: the burst
   of work this attack costs); then the slow handshakes connect and the
   slow messages start, against a server idle again, so that their
   deadlines run from a known time. With all of them there, the client
   makes its CALLS calls again. (write_timeout_ms is the longest so that
   the non-readers, which start first, are still there then.)

   Checked: every call answered with its payload in both phases; every
   attacker closed by the server no earlier than its deadline after its
   start (less EARLY_MS: the server's clock counts whole milliseconds) and
   no later than its deadline plus SLACK_MS (for a non-reader: after the
   server had answered the non-readers' calls, which it does one
   connection after another); the server's descriptor count back to where
   it was before the attack; the server exits 0 on SIGTERM having closed
   every descriptor it opened. Reported, never asserted: the round trip's
   p50/p99/max in both phases, the server's peak RSS (VmHWM), its
   descriptor count during the attack, when each kind was closed, the
   server's close codes. A non-reader never seen closed sends a byte at the
   end: a reset in answer shows the server had dropped it without telling
   it (a plain close() with bytes unsent leaves the peer waiting).
   Every wait is bounded (GLOBAL_MS in all); no sleep anywhere. Ends with
   "N passed, N failed"; exit 0 only if none failed. Linux only (epoll,
   /proc, TCP_MAXSEG, PR_SET_PDEATHSIG). */
#define _GNU_SOURCE
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* the server's options under test */
#define SERVER_HANDSHAKE_MS 3000u
#define SERVER_MESSAGE_MS 3000u
#define SERVER_WRITE_MS 5000u    /* it starts first, while the server is busy: see phase 2 */
#define SERVER_CLOSE_MS 2000u
#define SERVER_HIGH_WATER (64u * 1024u)
#define SERVER_WRITE_LIMIT (256u * 1024u)
#define SERVER_BACKLOG 4096

#define DEFAULT_COUNT 1000       /* connections of each kind */
#define DEFAULT_CALLS 2000       /* sequential calls per phase */
#define QUICK_COUNT 100
#define QUICK_CALLS 500
#define MAX_COUNT 5000
#define MAX_PENDING 256          /* attackers connecting or upgrading at once */
#define PACE_MS 1000u            /* one byte a second */
#define FILL_BYTES 65536         /* one "fill" answer's string */
#define FILL_CALLS ((SERVER_WRITE_LIMIT + 128u * 1024u) / FILL_BYTES) /* more than the limit */
#define NONREADER_RCVBUF 1024    /* the kernel makes it 2304 */
#define NONREADER_MSS 536        /* keeps the server's send buffer small too */
#define SLOW_FRAME_PAYLOAD 100   /* a 7-bit length: 106 bytes in all */
#define EARLY_MS 5               /* the server's clock has 1 ms resolution */
#define SLACK_MS 2000            /* how late a close may be seen */
#define CALL_TIMEOUT_MS 5000u
#define BURST_TIMEOUT_MS 20000u  /* the call that waits out the non-readers' answers */
#define GLOBAL_MS 60000u         /* the whole run */
#define READY_MS 10000u          /* the server's port, the client's connect */
#define SAMPLE_MS 100u           /* the server's fds and RSS sampled this often */

enum { K_HANDSHAKE, K_NONREADER, K_MESSAGE, K_KINDS };
static const char *const kind_name[K_KINDS] = {"slow handshakes", "non-readers", "slow messages"};

enum { A_IDLE, A_CONNECTING, A_UPGRADING, A_READY, A_ACTIVE, A_CLOSED, A_FAILED };
enum { HOW_NONE, HOW_EOF, HOW_RESET, HOW_WRITE_ERROR };

typedef struct attacker {
    int fd, kind, state, how;
    uint64_t started;         /* ns: its deadline cannot have started before */
    uint64_t closed_at;       /* ns: EOF or reset seen */
    uint64_t close_frame_at;  /* ns: slow messages, the server's close frame */
    int close_code;
    size_t sent;              /* bytes of its slow request or frame sent */
    size_t rlen, seen;
    unsigned long unexpected; /* slow handshakes: bytes the server sent */
    int failed_setup;         /* could not connect or upgrade */
    int probed;               /* 1: a byte sent after the wait, to diagnose;
                                 2: that byte was answered with a reset */
    unsigned char key[16];
    unsigned char rbuf[512];
    zk_timer tick;
    zk_ws ws;                 /* slow messages: reads the server's frames */
} attacker;

typedef struct call_run {
    int total, done, ok;
    uint32_t timeout_ms;
    uint64_t sent_at;
    uint64_t *rtt, *done_at;
    char first_error[200];
} call_run;

static struct {
    int count[K_KINDS], calls;
} cfg;

static int port, ep, failures, passes;
static char hostport[32];
static pid_t server_pid;
static zk_loop *loop;
static zk_client *client;
static attacker *attackers;
static int total_attackers, next_open, open_limit, pending, in_place, closed_or_failed, setup_failures;
static uint64_t t_begin, global_end, first_server_close;
static uint64_t go_at, burst_end; /* the non-readers' calls went; the call after them came back */
static call_run *current;
static char slow_request[512];
static size_t slow_request_len;
static unsigned char slow_frame[SLOW_FRAME_PAYLOAD + 6];
static unsigned char fill_calls[FILL_CALLS * 64];
static size_t fill_calls_len;
static zk_timer sampler;
static int sampling, peak_fds;
static long peak_rss_sampled;

/* ---- small things ---- */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double ms_between(uint64_t from, uint64_t to) { return ((double)to - (double)from) / 1e6; }

static void report(const char *name, const char *error) {
    if (!error) {
        passes++;
        printf("ok %s\n", name);
    } else {
        failures++;
        printf("FAIL %s: %s\n", name, error);
    }
    fflush(stdout);
}

static int count_fds(pid_t pid) {
    char path[64];
    DIR *d;
    struct dirent *e;
    int n = 0;
    if (pid) snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    else snprintf(path, sizeof path, "/proc/self/fd");
    d = opendir(path);
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return pid ? n : n - 1; /* our own count leaves out the directory's fd */
}

/* A "VmHWM:"-like field of /proc/PID/status in KiB, or -1. */
static long status_kib(pid_t pid, const char *field) {
    char path[64], line[256];
    size_t flen = strlen(field);
    long v = -1;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, flen) == 0) {
            v = strtol(line + flen, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- the server (the forked child) ---- */

static volatile sig_atomic_t server_stop;
static char filler[FILL_BYTES];
static unsigned long closes_1000, closes_1006, closes_1008, closes_other;

static void on_term(int sig) {
    (void)sig;
    server_stop = 1;
}

static void route_ping(zk_request *req) { zk_write_value(zk_request_writer(req), zk_request_payload(req)); }

static void route_fill(zk_request *req) {
    int64_t n = zk_value_int(zk_request_payload(req), -1);
    if (n < 0 || n > FILL_BYTES) {
        zk_request_fail(req, ZK_CODE_INVALID_INPUT, "a byte count, at most 65536");
        return;
    }
    zk_write_str_n(zk_request_writer(req), filler, (size_t)n);
}

static void on_disconnect(zk_conn *conn, void *context, int code) {
    (void)conn;
    (void)context;
    if (code == 1000) closes_1000++;
    else if (code == 1006) closes_1006++;
    else if (code == 1008) closes_1008++;
    else closes_other++;
}

static void server_options(zk_server_opts *o) {
    o->host = "127.0.0.1";
    o->port = 0;
    o->backlog = SERVER_BACKLOG;
    o->handshake_timeout_ms = SERVER_HANDSHAKE_MS;
    o->message_timeout_ms = SERVER_MESSAGE_MS;
    o->write_timeout_ms = SERVER_WRITE_MS;
    o->close_timeout_ms = SERVER_CLOSE_MS;
    o->write_high_water = SERVER_HIGH_WATER;
    o->write_limit = SERVER_WRITE_LIMIT;
}

/* Writes "port N\n" to out once listening, runs until SIGTERM, then writes
   one line of figures and exits (the pipe closes with the process). */
static int server_main(int out, pid_t parent) {
    struct sigaction sa;
    zk_router *router;
    zk_app_opts ao;
    zk_app *app;
    zk_app_stats st;
    zk_loop *sloop;
    char line[512];
    int err = 0, rc, fds_start, fds_end, n;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
    if (getppid() != parent) return 1;
    memset(filler, 'x', sizeof filler);
    fds_start = count_fds(0);

    sloop = zk_loop_new(NULL);
    router = zk_router_new();
    if (!sloop || !router || zk_router_on(router, "ping", route_ping, NULL) < 0 ||
        zk_router_on(router, "fill", route_fill, NULL) < 0) {
        fprintf(stderr, "server: out of memory\n");
        return 1;
    }
    memset(&ao, 0, sizeof ao);
    ao.router = router;
    ao.path = "/ws";
    ao.on_disconnect = on_disconnect;
    ao.rate_per_sec = ZK_RATE_UNLIMITED; /* the normal client calls back to back */
    server_options(&ao.server);
    app = zk_app_new(sloop, &ao, &err);
    if (!app) {
        fprintf(stderr, "server: zk_app_new: %s\n", zk_strerror(err));
        return 1;
    }
    if ((rc = zk_server_listen(zk_app_server(app))) < 0) {
        fprintf(stderr, "server: listen: %s\n", zk_strerror(rc));
        return 1;
    }
    n = snprintf(line, sizeof line, "port %d\n", zk_server_port(zk_app_server(app)));
    if (write(out, line, (size_t)n) != n) return 1;

    while (!server_stop)
        if (zk_loop_step(sloop, 100) < 0) break;

    zk_app_get_stats(app, &st);
    zk_app_free(app);
    zk_router_free(router);
    zk_loop_free(sloop);
    fds_end = count_fds(0);
    n = snprintf(line, sizeof line,
                 "fds %d %d accepted %llu dropped %llu errors %llu closes 1000:%lu 1006:%lu 1008:%lu other:%lu\n",
                 fds_start, fds_end, (unsigned long long)st.accepted, (unsigned long long)st.dropped,
                 (unsigned long long)st.errors, closes_1000, closes_1006, closes_1008, closes_other);
    if (write(out, line, (size_t)n) != n) return 1;
    return 0;
}

/* ---- the parent's loop: epoll with the zk_loop inside ---- */

static void attacker_event(attacker *a);
static void open_more(void);

static void pump(int max_ms) {
    struct epoll_event ev[256];
    int t = zk_loop_timeout(loop), n, i;
    if (t < 0 || t > max_ms) t = max_ms;
    n = epoll_wait(ep, ev, 256, t);
    for (i = 0; i < n; i++)
        if (ev[i].data.u64) attacker_event(&attackers[ev[i].data.u64 - 1]);
    zk_loop_step(loop, 0);
    open_more();
}

/* Pumps until done() or until_ns (and never past the global deadline);
   1 if done() held. */
static int wait_until(int (*done)(void), uint64_t until_ns) {
    if (until_ns > global_end) until_ns = global_end;
    while (!done()) {
        uint64_t now = now_ns();
        uint64_t left_ms;
        if (now >= until_ns) return 0;
        left_ms = (until_ns - now) / 1000000 + 1;
        pump(left_ms < 50 ? (int)left_ms : 50);
    }
    return 1;
}

static void sample(zk_timer *t) {
    int fds;
    long rss;
    (void)t;
    if (!sampling) return;
    fds = count_fds(server_pid);
    rss = status_kib(server_pid, "VmRSS:");
    if (fds > peak_fds) peak_fds = fds;
    if (rss > peak_rss_sampled) peak_rss_sampled = rss;
}

/* ---- the normal client ---- */

static void next_call(void);

static void on_result(zk_client *c, const zk_result *r, void *user) {
    call_run *run = current;
    uint64_t now = now_ns();
    int i = run->done;
    (void)c;
    (void)user;
    run->rtt[i] = now - run->sent_at;
    run->done_at[i] = now;
    if (r->ok && zk_value_int(zk_value_get(r->value, "n"), -1) == i) {
        run->ok++;
    } else if (!run->first_error[0]) {
        snprintf(run->first_error, sizeof run->first_error, "call %d: %s %.*s", i, r->ok ? "wrong answer" : "error",
                 (int)(r->ok ? 0 : r->code.len), r->ok ? "" : r->code.ptr);
    }
    run->done++;
    next_call();
}

static void next_call(void) {
    call_run *run = current;
    while (run->done < run->total) {
        char payload[64];
        int len = snprintf(payload, sizeof payload, "{\"n\":%d}", run->done);
        int rc;
        zk_call_opts opts;
        memset(&opts, 0, sizeof opts);
        opts.timeout_ms = run->timeout_ms;
        run->sent_at = now_ns();
        rc = zk_client_call(client, "ping", payload, (size_t)len, &opts, on_result, NULL);
        if (rc >= 0) return;
        if (!run->first_error[0])
            snprintf(run->first_error, sizeof run->first_error, "call %d not made: %s", run->done, zk_strerror(rc));
        run->rtt[run->done] = 0;
        run->done_at[run->done] = now_ns();
        run->done++;
    }
}

static int client_open(void) { return zk_client_state(client) == ZK_CLIENT_OPEN; }
static int client_closed(void) { return zk_client_state(client) == ZK_CLIENT_CLOSED; }
static int calls_done(void) { return current->done >= current->total; }

static int run_calls(call_run *run, int total, uint32_t timeout_ms) {
    memset(run, 0, sizeof *run);
    run->total = total;
    run->timeout_ms = timeout_ms;
    run->rtt = (uint64_t *)calloc((size_t)total, sizeof *run->rtt);
    run->done_at = (uint64_t *)calloc((size_t)total, sizeof *run->done_at);
    if (!run->rtt || !run->done_at) return -1;
    current = run;
    next_call();
    wait_until(calls_done, global_end);
    return 0;
}

/* p50/p99/max of the first n round trips, in microseconds, into out. */
static void describe_rtt(const call_run *run, int n, char *out, size_t cap) {
    uint64_t *v;
    if (n <= 0) {
        snprintf(out, cap, "no calls");
        return;
    }
    v = (uint64_t *)malloc((size_t)n * sizeof *v);
    if (!v) {
        snprintf(out, cap, "out of memory");
        return;
    }
    memcpy(v, run->rtt, (size_t)n * sizeof *v);
    qsort(v, (size_t)n, sizeof *v, compare_u64);
    snprintf(out, cap, "p50 %.1f us, p99 %.1f us, max %.1f us", (double)v[(size_t)(n - 1) / 2] / 1e3,
             (double)v[((size_t)n * 99 + 99) / 100 - 1] / 1e3, (double)v[n - 1] / 1e3);
    free(v);
}

/* ---- the attackers ----
   A_CONNECTING, then (non-readers and slow messages) A_UPGRADING and
   A_READY, upgraded and held; go() starts what its deadline runs from
   (A_ACTIVE): the non-readers' calls, the slow messages' first byte, and
   for a slow handshake its first byte as soon as it is connected. Then
   A_CLOSED when the server's close is seen, or A_FAILED. */

/* no attacker allowed to open is connecting or upgrading any more */
static int attackers_settled(void) { return next_open >= open_limit && pending == 0; }
static int attackers_done(void) { return closed_or_failed >= total_attackers; }

static void watch(attacker *a, int op, uint32_t events) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = (uint64_t)(a - attackers) + 1;
    epoll_ctl(ep, op, a->fd, &ev);
}

static void finish(attacker *a, int state) {
    if (a->state == A_CONNECTING || a->state == A_UPGRADING) pending--;
    zk_timer_stop(&a->tick);
    if (a->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, a->fd, NULL);
        close(a->fd);
        a->fd = -1;
    }
    a->state = state;
    closed_or_failed++;
}

static void setup_failed(attacker *a, const char *why) {
    static int told;
    if (told++ < 5) fprintf(stderr, "%s %d: %s\n", kind_name[a->kind], (int)(a - attackers), why);
    a->failed_setup = 1;
    setup_failures++;
    finish(a, A_FAILED);
}

/* The server closed it (seen now, as how). */
static void closed_by_server(attacker *a, int how) {
    a->closed_at = now_ns();
    a->how = how;
    if (!first_server_close) first_server_close = a->closed_at;
    finish(a, A_CLOSED);
}

/* One byte of the slow request or frame; never the last one. */
static void send_slow_byte(attacker *a) {
    const unsigned char *src = a->kind == K_HANDSHAKE ? (const unsigned char *)slow_request : slow_frame;
    size_t len = a->kind == K_HANDSHAKE ? slow_request_len : sizeof slow_frame;
    ssize_t n;
    if (a->sent + 1 >= len) return;
    n = send(a->fd, src + a->sent, 1, MSG_NOSIGNAL);
    if (n == 1) a->sent++;
    else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        closed_by_server(a, HOW_WRITE_ERROR);
}

static void tick(zk_timer *t) {
    attacker *a = (attacker *)t->data;
    if (a->state != A_ACTIVE || a->close_frame_at) {
        zk_timer_stop(t);
        return;
    }
    send_slow_byte(a);
}

/* Its deadline starts: slow bytes begin, or the non-reader's calls go. */
static void go(attacker *a) {
    a->state = A_ACTIVE;
    in_place++;
    /* taken before the send: a preemption in between must not shorten the
       time measured to the server's close. A slow handshake's was taken
       before its connect: the server may accept before we see it connected */
    if (a->kind != K_HANDSHAKE) a->started = now_ns();
    if (a->kind == K_NONREADER) {
        if (send(a->fd, fill_calls, fill_calls_len, MSG_NOSIGNAL) != (ssize_t)fill_calls_len) {
            in_place--;
            setup_failed(a, "cannot send the calls");
            return;
        }
        watch(a, EPOLL_CTL_MOD, EPOLLRDHUP); /* never read again: only a hang-up or a reset is reported */
        return;
    }
    send_slow_byte(a);
    if (a->state == A_ACTIVE) zk_timer_start(&a->tick, PACE_MS, PACE_MS);
}

static void start_attacker(attacker *a) {
    struct sockaddr_in addr;
    int rc;
    a->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    a->state = A_CONNECTING;
    pending++;
    if (a->fd < 0) {
        setup_failed(a, strerror(errno));
        return;
    }
    if (a->kind == K_NONREADER) {
        int rcvbuf = NONREADER_RCVBUF, mss = NONREADER_MSS;
        setsockopt(a->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        setsockopt(a->fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof mss);
    }
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a->started = now_ns(); /* slow handshakes: the server's deadline starts later, at accept */
    rc = connect(a->fd, (struct sockaddr *)&addr, sizeof addr);
    if (rc < 0 && errno != EINPROGRESS) {
        setup_failed(a, strerror(errno));
        return;
    }
    watch(a, EPOLL_CTL_ADD, EPOLLOUT);
}

static void open_more(void) {
    while (pending < MAX_PENDING && next_open < open_limit) start_attacker(&attackers[next_open++]);
}

static void connected(attacker *a) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        setup_failed(a, err ? strerror(err) : "connect failed");
        return;
    }
    watch(a, EPOLL_CTL_MOD, EPOLLIN | EPOLLRDHUP);
    if (a->kind == K_HANDSHAKE) {
        pending--;
        go(a);
    } else {
        char req[512];
        zk_ws_client_handshake hs;
        int n;
        memset(&hs, 0, sizeof hs);
        hs.host = hostport;
        hs.path = "/ws";
        zk_loop_random_bytes(loop, a->key, sizeof a->key);
        memcpy(hs.key, a->key, sizeof hs.key);
        n = zk_ws_client_request(req, sizeof req, &hs);
        if (n < 0 || send(a->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
            setup_failed(a, "cannot send the upgrade request");
            return;
        }
        a->state = A_UPGRADING;
    }
}

static void upgrade_answer(attacker *a) {
    zk_http_response res;
    zk_ws_client_handshake hs;
    const char *why = NULL;
    ssize_t got = recv(a->fd, a->rbuf + a->rlen, sizeof a->rbuf - a->rlen, 0);
    int n;
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        setup_failed(a, got == 0 ? "the server closed during the upgrade" : strerror(errno));
        return;
    }
    if (got < 0) return;
    a->rlen += (size_t)got;
    n = zk_http_parse_response((const char *)a->rbuf, a->rlen, a->seen, &res, NULL);
    a->seen = a->rlen;
    if (n == ZK_EAGAIN) {
        if (a->rlen == sizeof a->rbuf) setup_failed(a, "upgrade answer too long");
        return;
    }
    memset(&hs, 0, sizeof hs);
    hs.host = hostport;
    hs.path = "/ws";
    memcpy(hs.key, a->key, sizeof hs.key);
    if (n < 0 || zk_ws_client_verify(&res, &hs, NULL, &why) != ZK_OK) {
        setup_failed(a, n < 0 ? "malformed upgrade answer" : why ? why : "upgrade refused");
        return;
    }
    if (a->rlen != (size_t)n) {
        setup_failed(a, "bytes after the upgrade answer");
        return;
    }
    a->rlen = 0;
    if (a->kind == K_MESSAGE) {
        zk_ws_opts wo;
        memset(&wo, 0, sizeof wo);
        wo.role = ZK_WS_CLIENT;
        zk_ws_init(&a->ws, &wo);
    }
    pending--;
    a->state = A_READY;
}

/* Slow messages: what the server sent; a close frame is what it must. */
static void feed_frames(attacker *a) {
    for (;;) {
        zk_ws_event ev;
        size_t used = zk_ws_feed(&a->ws, a->rbuf, a->rlen, &ev);
        memmove(a->rbuf, a->rbuf + used, a->rlen - used);
        a->rlen -= used;
        if ((ev.type == ZK_WS_EV_CLOSE || ev.type == ZK_WS_EV_ERROR) && !a->close_frame_at) {
            a->close_frame_at = now_ns();
            a->close_code = ev.type == ZK_WS_EV_CLOSE ? ev.code : -1;
            if (!first_server_close) first_server_close = a->close_frame_at;
            zk_timer_stop(&a->tick); /* silent from now on: it cannot answer mid-frame */
        }
        if (!used && ev.type == ZK_WS_EV_NONE) break;
    }
}

/* Readable, hung up or reset: slow handshakes and slow messages read
   (EOF or a reset is the server's close), non-readers only look. */
static void active_event(attacker *a) {
    if (a->kind == K_NONREADER && a->state == A_ACTIVE) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        closed_by_server(a, err ? HOW_RESET : HOW_EOF);
        return;
    }
    for (;;) {
        unsigned char scratch[512];
        unsigned char *dst = a->kind == K_MESSAGE ? a->rbuf + a->rlen : scratch;
        size_t room = a->kind == K_MESSAGE ? sizeof a->rbuf - a->rlen : sizeof scratch;
        ssize_t n = recv(a->fd, dst, room, 0);
        if (n > 0) {
            if (a->kind == K_MESSAGE) {
                a->rlen += (size_t)n;
                feed_frames(a);
            } else {
                a->unexpected += (unsigned long)n;
            }
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (a->state == A_READY) setup_failed(a, "closed by the server while held after the upgrade");
        else closed_by_server(a, n == 0 ? HOW_EOF : HOW_RESET);
        return;
    }
}

static void attacker_event(attacker *a) {
    switch (a->state) {
    case A_CONNECTING:
        connected(a);
        break;
    case A_UPGRADING:
        upgrade_answer(a);
        break;
    case A_READY:
    case A_ACTIVE:
        active_event(a);
        break;
    default:
        break;
    }
}

/* ---- the bytes the attackers send ---- */

static int build_attack_bytes(void) {
    zk_ws_client_handshake hs;
    zk_ws enc;
    zk_ws_opts wo;
    char payload[SLOW_FRAME_PAYLOAD + 1];
    int n;
    unsigned k;

    memset(&hs, 0, sizeof hs);
    hs.host = hostport;
    hs.path = "/ws";
    zk_loop_random_bytes(loop, hs.key, sizeof hs.key);
    n = zk_ws_client_request(slow_request, sizeof slow_request, &hs);
    if (n < 0) return -1;
    slow_request_len = (size_t)n;

    memset(&wo, 0, sizeof wo);
    wo.role = ZK_WS_CLIENT;
    wo.mask_seed = zk_loop_random(loop);
    zk_ws_init(&enc, &wo);
    /* a whole, valid call if it were ever finished */
    n = snprintf(payload, sizeof payload, "{\"type\":\"ping\",\"payload\":\"");
    memset(payload + n, 'x', (size_t)(SLOW_FRAME_PAYLOAD - n - 2));
    memcpy(payload + SLOW_FRAME_PAYLOAD - 2, "\"}", 2);
    n = zk_ws_send(&enc, slow_frame, sizeof slow_frame, ZK_WS_TEXT, payload, SLOW_FRAME_PAYLOAD, 1);
    if (n != (int)sizeof slow_frame) return -1;
    fill_calls_len = 0;
    for (k = 0; k < FILL_CALLS; k++) {
        char call[64];
        int len = snprintf(call, sizeof call, "{\"type\":\"fill\",\"payload\":%d,\"rpcId\":\"f%u\"}", FILL_BYTES, k);
        n = zk_ws_send(&enc, fill_calls + fill_calls_len, sizeof fill_calls - fill_calls_len, ZK_WS_TEXT, call,
                       (size_t)len, 1);
        if (n < 0) return -1;
        fill_calls_len += (size_t)n;
    }
    zk_ws_free(&enc);
    return 0;
}

/* ---- checks on the attackers ---- */

/* How long after its start an attacker of kind must be closed (frame 1:
   a slow message's close frame, else the TCP close). */
static uint32_t expected_ms(int kind, int frame) {
    if (kind == K_HANDSHAKE) return SERVER_HANDSHAKE_MS;
    if (kind == K_NONREADER) return SERVER_WRITE_MS;
    return frame ? SERVER_MESSAGE_MS : SERVER_MESSAGE_MS + SERVER_CLOSE_MS;
}

/* The latest its deadline can have started: a non-reader's when the server
   had answered its calls (they queue behind each other's), which the call
   made right after them tells; the others' when they started. */
static uint64_t latest_start(const attacker *a) {
    return a->kind == K_NONREADER && burst_end > a->started ? burst_end : a->started;
}

/* Every attacker of kind: closed (or, frame 1, sent a close frame) no
   earlier than expected - EARLY_MS after it started, and no later than
   expected + SLACK_MS after its latest start. */
static void check_kind(int kind, int frame, const char *what) {
    double *t = (double *)malloc((size_t)cfg.count[kind] * sizeof *t);
    double expect = expected_ms(kind, frame), first_early = 0, last_late = 0, latest_min = 1e18, latest_max = 0;
    int i, n = 0, early = 0, late = 0, never_closed = 0, failed = 0, eof = 0, reset = 0, write_err = 0;
    int wrong_code = 0, other_code = 0, silent_drop = 0;
    unsigned long unexpected = 0;
    const char *since = kind == K_HANDSHAKE ? "its connect" : kind == K_NONREADER ? "its calls" : "its first byte";
    const char *since_all = kind == K_HANDSHAKE ? "connecting" : kind == K_NONREADER ? "their calls" : "the first byte";
    char name[256], why[400];
    if (!t) return;
    for (i = 0; i < total_attackers; i++) {
        attacker *a = &attackers[i];
        double ms, ms_latest;
        uint64_t at;
        if (a->kind != kind) continue;
        unexpected += a->unexpected;
        if (a->failed_setup) {
            failed++;
            continue;
        }
        at = frame ? a->close_frame_at : a->closed_at;
        if (!at) {
            never_closed++;
            silent_drop += a->probed == 2;
            continue;
        }
        if (frame && a->close_code != ZK_CLOSE_POLICY) {
            wrong_code++;
            other_code = a->close_code;
        }
        if (!frame) {
            eof += a->how == HOW_EOF;
            reset += a->how == HOW_RESET;
            write_err += a->how == HOW_WRITE_ERROR;
        }
        ms = ms_between(a->started, at);
        ms_latest = ms_between(latest_start(a), at);
        t[n++] = ms / 1000;
        if (ms_latest < latest_min) latest_min = ms_latest;
        if (ms_latest > latest_max) latest_max = ms_latest;
        if (ms < expect - EARLY_MS) {
            if (!early++ || ms < first_early) first_early = ms;
        } else if (ms_latest > expect + SLACK_MS) {
            if (!late++ || ms_latest > last_late) last_late = ms_latest;
        }
    }
    qsort(t, (size_t)n, sizeof *t, compare_double);
    printf("# %s: %d %s %.3f to %.3f s after %s (median %.3f s)", kind_name[kind], n,
           frame ? "close frames" : "closed", n ? t[0] : 0.0, n ? t[n - 1] : 0.0, since_all,
           n ? t[(n - 1) / 2] : 0.0);
    if (kind == K_NONREADER && n)
        printf(", %.3f to %.3f s after the server had answered them all", latest_min / 1000, latest_max / 1000);
    if (!frame) printf(": %d EOF, %d reset, %d on a write", eof, reset, write_err);
    if (kind == K_HANDSHAKE) printf("; %s", unexpected ? "the server sent them bytes" : "no bytes from the server");
    printf("\n");
    snprintf(name, sizeof name, "%s: every one of %d %s %.1f to %.1f s after %s", kind_name[kind], cfg.count[kind],
             what, (expect - EARLY_MS) / 1000, (expect + SLACK_MS) / 1000, since);
    snprintf(why, sizeof why, "%d early (the first at %.3f s), %d late (the last at %.3f s), %d never, %d failed to set up",
             early, first_early / 1000, late, last_late / 1000, never_closed, failed);
    if (wrong_code)
        snprintf(why + strlen(why), sizeof why - strlen(why), "; %d with a close code not 1008 (e.g. %d; -1: a "
                 "protocol error)", wrong_code, other_code);
    if (silent_drop)
        snprintf(why + strlen(why), sizeof why - strlen(why),
                 "; %d of those never closed had been dropped without a reset (a byte sent after the wait "
                 "was answered with one)",
                 silent_drop);
    report(name, early || late || never_closed || failed || wrong_code ? why : NULL);
    free(t);
}

/* ---- main ---- */

static int raise_file_limit(rlim_t want) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
    if (r.rlim_cur != r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
    }
    return r.rlim_cur == RLIM_INFINITY || r.rlim_cur >= want ? 0 : -1;
}

/* Reads from fd until a newline or EOF into buf (NUL-terminated), at most
   until until_ns. Returns the length, or -1 on timeout with nothing. */
static int read_line(int fd, char *buf, size_t cap, uint64_t until_ns) {
    size_t len = 0;
    buf[0] = 0;
    while (len + 1 < cap) {
        struct pollfd p;
        uint64_t now = now_ns();
        ssize_t n;
        int rc;
        if (now >= until_ns) return len ? (int)len : -1;
        p.fd = fd;
        p.events = POLLIN;
        rc = poll(&p, 1, (int)((until_ns - now) / 1000000) + 1);
        if (rc < 0 && errno == EINTR) continue;
        if (rc <= 0) continue;
        n = read(fd, buf + len, 1);
        if (n <= 0) break;
        if (buf[len] == '\n') break;
        buf[++len] = 0;
    }
    buf[len] = 0;
    return (int)len;
}

static int parse_count(const char *s, int lo, int hi) {
    char *end;
    long v = strtol(s, &end, 10);
    return *end || v < lo || v > hi ? -1 : (int)v;
}

int main(int argc, char **argv) {
    int pipefd[2], i, k, placed[K_KINDS], err = 0, status = 0, fd_base, fd_after, rc;
    long rss_base, hwm;
    pid_t parent = getpid();
    char line[512], why[400], name[256], text[200];
    call_run base, burst, attack;
    zk_client_opts co;
    struct epoll_event lev;
    uint64_t t, t_rest, until, all_placed_at = 0, latest_due = 0;
    int under_full_attack = 0, held;

    memset(&base, 0, sizeof base);
    memset(&attack, 0, sizeof attack);
    memset(&burst, 0, sizeof burst);
    cfg.calls = DEFAULT_CALLS;
    for (k = 0; k < K_KINDS; k++) cfg.count[k] = DEFAULT_COUNT;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            for (k = 0; k < K_KINDS; k++) cfg.count[k] = QUICK_COUNT;
            cfg.calls = QUICK_CALLS;
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc && (rc = parse_count(argv[++i], 1, MAX_COUNT)) > 0) {
            for (k = 0; k < K_KINDS; k++) cfg.count[k] = rc;
        } else if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc &&
                   (rc = parse_count(argv[++i], 1, 1000000)) > 0) {
            cfg.calls = rc;
        } else {
            fprintf(stderr, "usage: %s [--quick] [--count N (each kind, at most %d)] [--calls N]\n", argv[0],
                    MAX_COUNT);
            return 2;
        }
    }
    total_attackers = cfg.count[0] + cfg.count[1] + cfg.count[2];
    held = cfg.count[K_NONREADER] + cfg.count[K_MESSAGE];
    t_begin = now_ns();
    global_end = t_begin + (uint64_t)GLOBAL_MS * 1000000;
    signal(SIGPIPE, SIG_IGN);
    if (raise_file_limit((rlim_t)total_attackers + 256) < 0) {
        snprintf(why, sizeof why, "%d open files needed; raise ulimit -Hn", total_attackers + 256);
        report("room for the sockets", why);
        printf("%d passed, %d failed\n", passes, failures);
        return 1;
    }

    /* the server, before this process has anything to leak into it */
    if (pipe(pipefd) < 0) return 2;
    fflush(stdout);
    fflush(stderr);
    server_pid = fork();
    if (server_pid < 0) return 2;
    if (server_pid == 0) {
        close(pipefd[0]);
        _exit(server_main(pipefd[1], parent));
    }
    close(pipefd[1]);
    if (read_line(pipefd[0], line, sizeof line, now_ns() + (uint64_t)READY_MS * 1000000) <= 0 ||
        sscanf(line, "port %d", &port) != 1) {
        report("the server starts", "no port from it");
        kill(server_pid, SIGKILL);
        waitpid(server_pid, &status, 0);
        printf("%d passed, %d failed\n", passes, failures);
        return 1;
    }
    snprintf(hostport, sizeof hostport, "127.0.0.1:%d", port);
    printf("# server on ws://%s/ws: handshake_timeout_ms %u, message_timeout_ms %u, write_timeout_ms %u, "
           "close_timeout_ms %u, write_high_water %u KiB, write_limit %u KiB, backlog %d (idle and pong "
           "timeouts at their defaults)\n",
           hostport, SERVER_HANDSHAKE_MS, SERVER_MESSAGE_MS, SERVER_WRITE_MS, SERVER_CLOSE_MS,
           SERVER_HIGH_WATER / 1024, SERVER_WRITE_LIMIT / 1024, SERVER_BACKLOG);
    printf("# attackers: %d slow handshakes, %d non-readers (SO_RCVBUF %d, TCP_MAXSEG %d, %u calls answered "
           "with %d KiB each), %d slow messages; one byte every %u ms; %d calls per phase\n",
           cfg.count[K_HANDSHAKE], cfg.count[K_NONREADER], NONREADER_RCVBUF, NONREADER_MSS, FILL_CALLS,
           FILL_BYTES / 1024, cfg.count[K_MESSAGE], PACE_MS, cfg.calls);
    fflush(stdout);

    loop = zk_loop_new(NULL);
    ep = epoll_create1(EPOLL_CLOEXEC);
    attackers = (attacker *)calloc((size_t)total_attackers, sizeof *attackers);
    if (!loop || ep < 0 || !attackers) return 2;
    memset(&lev, 0, sizeof lev);
    lev.events = EPOLLIN;
    lev.data.u64 = 0;
    epoll_ctl(ep, EPOLL_CTL_ADD, zk_loop_fd(loop), &lev);
    if (build_attack_bytes() < 0) {
        fprintf(stderr, "cannot build the attackers' bytes\n");
        return 2;
    }
    /* opened in this order: non-readers and slow messages interleaved
       (upgraded and held), then the slow handshakes */
    memset(placed, 0, sizeof placed);
    for (i = 0; i < total_attackers;)
        for (k = 0; k < K_KINDS; k++)
            if (placed[k] < cfg.count[k] && (k != K_HANDSHAKE || i >= held)) {
                attacker *a = &attackers[i++];
                a->kind = k;
                a->fd = -1;
                zk_timer_init(loop, &a->tick, tick, a);
                placed[k]++;
            }
    zk_timer_init(loop, &sampler, sample, NULL);

    /* ---- phase 1: the normal client alone ---- */
    memset(&co, 0, sizeof co);
    snprintf(line, sizeof line, "ws://%s/ws", hostport);
    co.url = line;
    co.call_timeout_ms = CALL_TIMEOUT_MS;
    client = zk_client_new(loop, &co, &err);
    if (!client) {
        fprintf(stderr, "zk_client_new: %s\n", zk_strerror(err));
        return 2;
    }
    if (!wait_until(client_open, now_ns() + (uint64_t)READY_MS * 1000000)) {
        report("the normal client connects", zk_client_error(client, NULL));
        goto end;
    }
    report("the normal client connects", NULL);
    if (run_calls(&base, cfg.calls, CALL_TIMEOUT_MS) < 0) return 2;
    snprintf(name, sizeof name, "baseline: every one of %d calls answered with its payload", cfg.calls);
    snprintf(why, sizeof why, "%d of %d (%s)", base.ok, base.total, base.first_error[0] ? base.first_error : "timed out");
    report(name, base.ok == base.total ? NULL : why);
    describe_rtt(&base, base.done, text, sizeof text);
    printf("# round trip, baseline: %d calls, %s\n", base.done, text);

    fd_base = count_fds(server_pid);
    rss_base = status_kib(server_pid, "VmRSS:");
    peak_fds = fd_base;
    peak_rss_sampled = rss_base;

    /* ---- phase 2: the attackers, then the same calls ----
       The non-readers go first: the server answers their calls (FILL_CALLS
       answers of FILL_BYTES each, built and queued), a burst of work one
       normal call waits out and measures. Then the slow handshakes connect
       and the slow messages send their first byte, to a server that is
       idle again, so that their deadlines run from a known time; then the
       calls are made while all of them are there. */
    sampling = 1;
    zk_timer_start(&sampler, SAMPLE_MS, SAMPLE_MS);
    t = now_ns();
    open_limit = held;
    open_more();
    wait_until(attackers_settled, t + 20000ull * 1000000);
    go_at = now_ns();
    for (i = 0; i < held; i++)
        if (attackers[i].kind == K_NONREADER && attackers[i].state == A_READY) go(&attackers[i]);
    if (run_calls(&burst, 1, BURST_TIMEOUT_MS) < 0) return 2;
    burst_end = burst.done_at[0] ? burst.done_at[0] : now_ns();
    printf("# round trip of a call made as the non-readers' calls went: %.1f ms (the server answering them: "
           "building and queuing %u x %d KiB each)\n",
           (double)burst.rtt[0] / 1e6, FILL_CALLS, FILL_BYTES / 1024);
    t_rest = now_ns();
    open_limit = total_attackers; /* the slow handshakes start as they connect */
    open_more();
    for (i = 0; i < held; i++)
        if (attackers[i].kind == K_MESSAGE && attackers[i].state == A_READY) go(&attackers[i]);
    wait_until(attackers_settled, t_rest + 10000ull * 1000000);
    all_placed_at = now_ns();
    snprintf(name, sizeof name, "all %d attackers in place (the non-readers' calls sent, the slow ones started)",
             total_attackers);
    snprintf(why, sizeof why, "%d of %d in place, %d failed to set up%s", in_place, total_attackers, setup_failures,
             first_server_close ? ", and the server had closed some already" : "");
    report(name, in_place == total_attackers && !first_server_close ? NULL : why);
    printf("# attackers: %d non-readers and slow messages upgraded in %.3f s; the non-readers' calls answered "
           "%.3f s after they went; then %d slow handshakes connected and %d slow messages started in %.3f s\n",
           held, ms_between(t, go_at) / 1000, ms_between(go_at, burst_end) / 1000, cfg.count[K_HANDSHAKE],
           cfg.count[K_MESSAGE], ms_between(t_rest, all_placed_at) / 1000);

    if (run_calls(&attack, cfg.calls, CALL_TIMEOUT_MS) < 0) return 2;
    snprintf(name, sizeof name, "under attack: every one of %d calls (and the one before) answered with its payload",
             cfg.calls);
    snprintf(why, sizeof why, "%d of %d (%s)", attack.ok + burst.ok, attack.total + 1,
             burst.first_error[0] ? burst.first_error : attack.first_error[0] ? attack.first_error : "timed out");
    report(name, attack.ok == attack.total && burst.ok == 1 ? NULL : why);
    for (i = 0; i < attack.done; i++)
        if (!first_server_close || attack.done_at[i] < first_server_close) under_full_attack++;
    describe_rtt(&attack, attack.done, text, sizeof text);
    printf("# round trip, under attack: %d calls (%d of them done while all %d attackers were open), %s\n",
           attack.done, under_full_attack, total_attackers, text);

    /* every attacker's deadline, then the slack */
    for (i = 0; i < total_attackers; i++) {
        attacker *a = &attackers[i];
        uint64_t due = latest_start(a) + (uint64_t)expected_ms(a->kind, 0) * 1000000;
        if (a->started && due > latest_due) latest_due = due;
    }
    until = (latest_due ? latest_due : now_ns()) + (uint64_t)(SLACK_MS + 500) * 1000000;
    wait_until(attackers_done, until);
    /* diagnosis only: a non-reader not seen closed sends a byte; a reset
       in answer means the server had dropped it without telling the peer */
    for (i = 0; i < total_attackers; i++) {
        attacker *a = &attackers[i];
        if (a->kind == K_NONREADER && a->state == A_ACTIVE) {
            a->probed = 1;
            if (send(a->fd, "\x89", 1, MSG_NOSIGNAL) < 0) closed_by_server(a, HOW_WRITE_ERROR);
        }
    }
    t = now_ns();
    while (now_ns() < t + 500ull * 1000000 && now_ns() < global_end) pump(50);
    for (i = 0; i < total_attackers; i++) {
        attacker *a = &attackers[i];
        if (a->probed && a->state == A_CLOSED) {
            a->probed = 2;
            a->closed_at = 0; /* seen only because it wrote: not closed in time */
        }
        if (a->state != A_CLOSED && a->state != A_FAILED) finish(a, A_FAILED);
    }
    sampling = 0;
    zk_timer_stop(&sampler);

    check_kind(K_HANDSHAKE, 0, "closed by the server");
    check_kind(K_NONREADER, 0, "dropped by the server (seen without reading)");
    check_kind(K_MESSAGE, 1, "got close 1008");
    check_kind(K_MESSAGE, 0, "then silent, saw the TCP connection closed");

    /* the server's descriptors back to where they were */
    until = now_ns() + 5000ull * 1000000;
    fd_after = count_fds(server_pid);
    while (fd_after != fd_base && now_ns() < until && now_ns() < global_end) {
        pump(50);
        fd_after = count_fds(server_pid);
    }
    snprintf(why, sizeof why, "%d open, %d before the attack", fd_after, fd_base);
    report("the server's descriptors back to their count before the attack", fd_after == fd_base ? NULL : why);
    hwm = status_kib(server_pid, "VmHWM:");
    printf("# server: peak RSS (VmHWM) %.1f MiB (the non-readers' queues may hold %d x %u KiB = %.1f MiB); RSS "
           "%.1f MiB before the attack, at most %.1f MiB sampled during it, %.1f MiB after; descriptors %d before, "
           "up to %d during, %d after\n",
           (double)hwm / 1024, cfg.count[K_NONREADER], SERVER_WRITE_LIMIT / 1024,
           (double)cfg.count[K_NONREADER] * SERVER_WRITE_LIMIT / 1048576, (double)rss_base / 1024,
           (double)peak_rss_sampled / 1024, (double)status_kib(server_pid, "VmRSS:") / 1024, fd_base, peak_fds,
           fd_after);

end:
    zk_client_close(client);
    wait_until(client_closed, now_ns() + 2000ull * 1000000);
    zk_client_free(client);
    kill(server_pid, SIGTERM);
    if (read_line(pipefd[0], line, sizeof line, now_ns() + 10000ull * 1000000) > 0) {
        int fds_start = -1, fds_end = -1;
        unsigned long long accepted = 0, dropped = 0, errors = 0;
        unsigned long c1000 = 0, c1006 = 0, c1008 = 0, cother = 0;
        if (sscanf(line, "fds %d %d accepted %llu dropped %llu errors %llu closes 1000:%lu 1006:%lu 1008:%lu other:%lu",
                   &fds_start, &fds_end, &accepted, &dropped, &errors, &c1000, &c1006, &c1008, &cother) == 9) {
            printf("# server app: %llu connections accepted (upgraded), %llu answers not queued (write limit), "
                   "on_disconnect codes 1000 x%lu, 1006 x%lu, 1008 x%lu, other x%lu; descriptors %d at start, %d "
                   "at exit\n",
                   accepted, dropped, c1000, c1006, c1008, cother, fds_start, fds_end);
            snprintf(why, sizeof why, "%d at exit, %d at start", fds_end, fds_start);
            report("the server closes every descriptor it opened", fds_end == fds_start ? NULL : why);
        } else {
            report("the server reports at exit", line);
        }
        /* EOF: its descriptors are closed, so it is exiting (nothing else
           holds the pipe's write end) and waitpid returns at once */
        if (read_line(pipefd[0], line, sizeof line, now_ns() + 5000ull * 1000000) != 0) {
            kill(server_pid, SIGKILL);
            waitpid(server_pid, &status, 0);
            report("the server exits 0 on SIGTERM", "still running 5 s after its report: killed");
        } else {
            rc = (int)waitpid(server_pid, &status, 0);
            snprintf(why, sizeof why, "status %d", WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
            report("the server exits 0 on SIGTERM", rc == server_pid && WIFEXITED(status) && !WEXITSTATUS(status)
                                                        ? NULL
                                                        : why);
        }
    } else {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, &status, 0);
        report("the server exits 0 on SIGTERM", "no report within 10 s: killed");
    }
    close(pipefd[0]);
    printf("# %.1f s\n", ms_between(t_begin, now_ns()) / 1000);
    for (i = 0; i < total_attackers; i++)
        if (attackers[i].fd >= 0) finish(&attackers[i], A_FAILED);
    free(attackers);
    free(base.rtt);
    free(base.done_at);
    free(attack.rtt);
    free(attack.done_at);
    free(burst.rtt);
    free(burst.done_at);
    close(ep);
    zk_loop_free(loop);
    printf("%d passed, %d failed\n", passes, failures);
    return failures ? 1 : 0;
}
