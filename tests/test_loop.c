/* Behaviour tests of the event loop: the timer heap (order by due time, FIFO
   among equal times, stop/restart, repeats, callbacks that stop or start
   timers), the virtual clock, zk_loop_step's waiting rules on a real clock,
   zk_loop_post from other threads, the seeded random generator, the poller
   descriptor, zk_loop_run/zk_loop_stop, and the internal I/O watchers every
   poller dispatches.

   Loops are made with the poller named by ZK_TEST_POLLER ("epoll", "poll",
   "kqueue"; unset or "auto": the system's best) unless a test is about one
   poller. Waits on a real clock are bounded; nothing sleeps. */
#define _GNU_SOURCE /* pthread, pipe2-free fcntl, mmap/sysconf in test.h */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The library allocates through these, so a test can check that it holds
   nothing once everything is freed. Other threads allocate too (posts). */
static long lib_live_allocs;
static void *count_realloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (q && !p) __atomic_add_fetch(&lib_live_allocs, 1, __ATOMIC_RELAXED);
    return q;
}
static void count_free(void *p) {
    if (p) __atomic_sub_fetch(&lib_live_allocs, 1, __ATOMIC_RELAXED);
    free(p);
}
#define ZK_MALLOC(n) count_realloc(NULL, n)
#define ZK_REALLOC(p, n) count_realloc(p, n)
#define ZK_FREE(p) count_free(p)
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"
#include "test.h"

#define CHECK_ALL_FREED() CHECK_EQ_INT(__atomic_load_n(&lib_live_allocs, __ATOMIC_RELAXED), 0)

/* ---- helpers ------------------------------------------------------------- */

static int env_poller = ZK_POLLER_AUTO;

static const char *poller_name(int p) {
    switch (p) {
    case ZK_POLLER_EPOLL: return "epoll";
    case ZK_POLLER_KQUEUE: return "kqueue";
    case ZK_POLLER_POLL: return "poll";
    default: return "auto";
    }
}

static zk_loop *new_loop_with(int poller, int virtual_clock, uint64_t seed) {
    zk_loop_opts o;
    zk_loop *loop;
    memset(&o, 0, sizeof o);
    o.poller = poller;
    o.virtual_clock = virtual_clock;
    o.seed = seed;
    loop = zk_loop_new(&o);
    if (!loop) {
        printf("  cannot make a loop with poller %s\n", poller_name(poller));
        exit(1);
    }
    return loop;
}

static zk_loop *new_loop(int virtual_clock) { return new_loop_with(env_poller, virtual_clock, 1); }
static void *loop_of_io; /* for io callbacks, which get only their zk__io */

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ull;
}

/* A record of which timers fired, in order, and at what loop time. */
#define LOG_MAX 20000
typedef struct fire_log {
    int id[LOG_MAX];
    uint64_t at[LOG_MAX];
    int n;
} fire_log;

typedef struct ttimer {
    zk_timer t;
    int id;
    fire_log *log;
    struct ttimer *other; /* for callbacks that act on another timer */
    int count, limit;
    uint64_t after;
} ttimer;

static void log_fire(zk_timer *t) {
    ttimer *tt = (ttimer *)t->data;
    fire_log *log = tt->log;
    tt->count++;
    if (log->n < LOG_MAX) {
        log->id[log->n] = tt->id;
        log->at[log->n] = zk_loop_now(t->loop);
        log->n++;
    }
}

static void tinit(zk_loop *loop, ttimer *tt, int id, fire_log *log, zk_timer_fn fn) {
    memset(tt, 0, sizeof *tt);
    tt->id = id;
    tt->log = log;
    zk_timer_init(loop, &tt->t, fn ? fn : log_fire, tt);
}

/* ---- timers -------------------------------------------------------------- */

TEST(virtual_clock_starts_at_zero_and_moves_only_by_advance) {
    zk_loop *loop = new_loop(1);
    CHECK_EQ_INT(zk_loop_now(loop), 0);
    CHECK(zk_loop_step(loop, 0) >= 0);
    CHECK_EQ_INT(zk_loop_now(loop), 0);
    zk_loop_advance(loop, 250);
    CHECK_EQ_INT(zk_loop_now(loop), 250);
    zk_loop_advance(loop, 0);
    CHECK_EQ_INT(zk_loop_now(loop), 250);
    zk_loop_advance(loop, 1);
    CHECK_EQ_INT(zk_loop_now(loop), 251);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(timers_fire_in_due_order) {
    static fire_log log;
    ttimer t[5];
    static const uint64_t after[5] = {50, 10, 40, 20, 30};
    zk_loop *loop = new_loop(1);
    int i;
    memset(&log, 0, sizeof log);
    for (i = 0; i < 5; i++) {
        tinit(loop, &t[i], i, &log, NULL);
        CHECK_EQ_INT(zk_timer_start(&t[i].t, after[i], 0), 0);
        CHECK(zk_timer_active(&t[i].t));
    }
    zk_loop_advance(loop, 100);
    CHECK_EQ_INT(log.n, 5);
    CHECK_EQ_INT(log.id[0], 1);
    CHECK_EQ_INT(log.id[1], 3);
    CHECK_EQ_INT(log.id[2], 4);
    CHECK_EQ_INT(log.id[3], 2);
    CHECK_EQ_INT(log.id[4], 0);
    for (i = 0; i < 5; i++) {
        CHECK_EQ_INT(log.at[i], (uint64_t)(i + 1) * 10);
        CHECK(!zk_timer_active(&t[i].t));
        CHECK_EQ_INT(t[i].count, 1);
    }
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(equal_due_times_fire_in_the_order_started) {
    static fire_log log;
    ttimer t[8];
    zk_loop *loop = new_loop(1);
    int i;
    memset(&log, 0, sizeof log);
    /* started in the order 7, 6, ..., 0, all due at 30 */
    for (i = 7; i >= 0; i--) {
        tinit(loop, &t[i], i, &log, NULL);
        zk_timer_start(&t[i].t, 30, 0);
    }
    zk_loop_advance(loop, 30);
    CHECK_EQ_INT(log.n, 8);
    for (i = 0; i < 8; i++) {
        CHECK_EQ_INT(log.id[i], 7 - i);
        CHECK_EQ_INT(log.at[i], 30);
    }
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(advance_runs_due_timers_at_their_own_time_and_stops_at_the_target) {
    static fire_log log;
    ttimer a, b, c;
    zk_loop *loop = new_loop(1);
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, NULL);
    tinit(loop, &b, 2, &log, NULL);
    tinit(loop, &c, 3, &log, NULL);
    zk_timer_start(&a.t, 30, 0);
    zk_timer_start(&b.t, 70, 0);
    zk_timer_start(&c.t, 101, 0);
    zk_loop_advance(loop, 29);
    CHECK_EQ_INT(log.n, 0);
    CHECK_EQ_INT(zk_loop_now(loop), 29);
    zk_loop_advance(loop, 71); /* to 100: a (30) and b (70), not c (101) */
    CHECK_EQ_INT(log.n, 2);
    CHECK_EQ_INT(log.id[0], 1);
    CHECK_EQ_INT(log.at[0], 30);
    CHECK_EQ_INT(log.id[1], 2);
    CHECK_EQ_INT(log.at[1], 70);
    CHECK_EQ_INT(zk_loop_now(loop), 100);
    CHECK(zk_timer_active(&c.t));
    zk_loop_advance(loop, 1); /* exactly due: runs */
    CHECK_EQ_INT(log.n, 3);
    CHECK_EQ_INT(log.at[2], 101);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

typedef struct order_key {
    uint64_t after;
    int started; /* position in the start order */
} order_key;

static int order_cmp(const void *pa, const void *pb) {
    const order_key *a = (const order_key *)pa, *b = (const order_key *)pb;
    if (a->after != b->after) return a->after < b->after ? -1 : 1;
    return a->started - b->started;
}

TEST(ten_thousand_timers_started_in_random_order_fire_in_order) {
    enum { N = 10000 };
    static fire_log log;
    ttimer *t = (ttimer *)calloc(N, sizeof *t);
    order_key *keys = (order_key *)calloc(N, sizeof *keys);
    int *perm = (int *)calloc(N, sizeof *perm);
    int *pos = (int *)calloc(N, sizeof *pos);
    zk_loop *loop = new_loop(1);
    uint64_t seed = 0x1234567;
    int i, bad_order = 0, bad_time = 0;
    memset(&log, 0, sizeof log);
    for (i = 0; i < N; i++) perm[i] = i;
    for (i = N - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)(rng_next(&seed) % (uint64_t)(i + 1)), k = perm[i];
        perm[i] = perm[j];
        perm[j] = k;
    }
    for (i = 0; i < N; i++) {
        int id = perm[i];
        /* 3000 distinct times for 10000 timers: many ties */
        uint64_t after = rng_next(&seed) % 3000;
        tinit(loop, &t[id], id, &log, NULL);
        CHECK_EQ_INT(zk_timer_start(&t[id].t, after, 0), 0);
        t[id].after = after;
        keys[i].after = after;
        keys[i].started = i;
        pos[i] = id;
    }
    zk_loop_advance(loop, 3000);
    CHECK_EQ_INT(log.n, N);
    qsort(keys, N, sizeof *keys, order_cmp);
    for (i = 0; i < N && i < log.n; i++) {
        int want = pos[keys[i].started];
        if (log.id[i] != want) bad_order++;
        if (log.at[i] != t[log.id[i]].after) bad_time++;
    }
    CHECK_EQ_INT(bad_order, 0);
    CHECK_EQ_INT(bad_time, 0);
    zk_loop_free(loop);
    free(t);
    free(keys);
    free(perm);
    free(pos);
    CHECK_ALL_FREED();
}

TEST(stopping_random_timers_among_many_keeps_the_rest_in_order) {
    enum { N = 5000 };
    static fire_log log;
    ttimer *t = (ttimer *)calloc(N, sizeof *t);
    zk_loop *loop = new_loop(1);
    uint64_t seed = 99, last_at = 0;
    int i, stopped = 0, fired_stopped = 0, out_of_order = 0, wrong_time = 0;
    int *was_stopped = (int *)calloc(N, sizeof *was_stopped);
    memset(&log, 0, sizeof log);
    for (i = 0; i < N; i++) {
        tinit(loop, &t[i], i, &log, NULL);
        t[i].after = 1 + rng_next(&seed) % 1000;
        zk_timer_start(&t[i].t, t[i].after, 0);
    }
    for (i = 0; i < N; i++) {
        if (rng_next(&seed) % 3 == 0) {
            zk_timer_stop(&t[i].t);
            zk_timer_stop(&t[i].t); /* twice: a no-op */
            CHECK(!zk_timer_active(&t[i].t));
            was_stopped[i] = 1;
            stopped++;
        }
    }
    zk_loop_advance(loop, 1000);
    CHECK_EQ_INT(log.n, N - stopped);
    for (i = 0; i < log.n; i++) {
        if (was_stopped[log.id[i]]) fired_stopped++;
        /* each at its own time (the clock never goes back, so a timer
           run late would show here), and in order of those times */
        if (log.at[i] != t[log.id[i]].after) wrong_time++;
        if (t[log.id[i]].after < last_at) out_of_order++;
        last_at = t[log.id[i]].after;
    }
    CHECK_EQ_INT(fired_stopped, 0);
    CHECK_EQ_INT(wrong_time, 0);
    CHECK_EQ_INT(out_of_order, 0);
    zk_loop_free(loop);
    free(t);
    free(was_stopped);
    CHECK_ALL_FREED();
}

TEST(stopped_timer_does_not_fire_and_can_be_started_again) {
    static fire_log log;
    ttimer a;
    zk_loop *loop = new_loop(1);
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, NULL);
    CHECK(!zk_timer_active(&a.t));
    zk_timer_stop(&a.t); /* never started: a no-op */
    zk_timer_start(&a.t, 10, 0);
    zk_loop_advance(loop, 5);
    zk_timer_stop(&a.t);
    CHECK(!zk_timer_active(&a.t));
    zk_loop_advance(loop, 100);
    CHECK_EQ_INT(log.n, 0);
    zk_timer_start(&a.t, 10, 0); /* at 105: due 115 */
    zk_loop_advance(loop, 9);
    CHECK_EQ_INT(log.n, 0);
    zk_loop_advance(loop, 1);
    CHECK_EQ_INT(log.n, 1);
    CHECK_EQ_INT(log.at[0], 115);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(starting_an_active_timer_restarts_it) {
    static fire_log log;
    ttimer a, b;
    zk_loop *loop = new_loop(1);
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, NULL);
    tinit(loop, &b, 2, &log, NULL);
    zk_timer_start(&a.t, 10, 0);
    zk_timer_start(&b.t, 20, 0);
    zk_timer_start(&a.t, 30, 0); /* later: moves behind b */
    zk_loop_advance(loop, 25);
    CHECK_EQ_INT(log.n, 1);
    CHECK_EQ_INT(log.id[0], 2);
    zk_timer_start(&a.t, 1, 0); /* earlier than it was: at 26 */
    zk_loop_advance(loop, 100);
    CHECK_EQ_INT(log.n, 2);
    CHECK_EQ_INT(log.id[1], 1);
    CHECK_EQ_INT(log.at[1], 26);
    CHECK_EQ_INT(a.count, 1); /* once, not once per start */
    /* a restart at the same due time goes after the timers already due then */
    zk_timer_start(&a.t, 10, 0);
    zk_timer_start(&b.t, 10, 0);
    zk_timer_start(&a.t, 10, 0);
    zk_loop_advance(loop, 10);
    CHECK_EQ_INT(log.n, 4);
    CHECK_EQ_INT(log.id[2], 2);
    CHECK_EQ_INT(log.id[3], 1);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(repeating_timer_fires_every_period_until_stopped) {
    static fire_log log;
    ttimer a;
    zk_loop *loop = new_loop(1);
    int i;
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, NULL);
    zk_timer_start(&a.t, 10, 20); /* 10, 30, 50, 70, 90 */
    zk_loop_advance(loop, 100);
    CHECK_EQ_INT(log.n, 5);
    for (i = 0; i < log.n; i++) CHECK_EQ_INT(log.at[i], 10 + 20 * (uint64_t)i);
    CHECK(zk_timer_active(&a.t));
    zk_loop_advance(loop, 10); /* 110 */
    CHECK_EQ_INT(log.n, 6);
    zk_timer_stop(&a.t);
    zk_loop_advance(loop, 1000);
    CHECK_EQ_INT(log.n, 6);
    /* a repeating timer started with 0 fires at once, then every period */
    zk_timer_start(&a.t, 0, 5);
    zk_loop_advance(loop, 0);
    CHECK_EQ_INT(log.n, 7);
    zk_loop_advance(loop, 12);
    CHECK_EQ_INT(log.n, 9);
    zk_timer_stop(&a.t);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

static void stop_other(zk_timer *t) {
    ttimer *tt = (ttimer *)t->data;
    log_fire(t);
    zk_timer_stop(&tt->other->t);
}

TEST(timer_stopping_another_timer_in_its_callback) {
    static fire_log log;
    ttimer a, b, c;
    zk_loop *loop = new_loop(1);
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, stop_other);
    tinit(loop, &b, 2, &log, NULL);
    tinit(loop, &c, 3, &log, stop_other);
    a.other = &b;
    zk_timer_start(&a.t, 10, 0);
    zk_timer_start(&b.t, 10, 0); /* due with a, after it: a stops it first */
    zk_loop_advance(loop, 50);
    CHECK_EQ_INT(log.n, 1);
    CHECK_EQ_INT(log.id[0], 1);
    CHECK_EQ_INT(b.count, 0);
    CHECK(!zk_timer_active(&b.t));
    /* one due later, and a repeating one */
    c.other = &b;
    zk_timer_start(&b.t, 40, 10);
    zk_timer_start(&c.t, 25, 0);
    zk_loop_advance(loop, 100);
    CHECK_EQ_INT(b.count, 0);
    CHECK_EQ_INT(c.count, 1);
    CHECK(!zk_timer_active(&b.t));
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

static void stop_self_at_limit(zk_timer *t) {
    ttimer *tt = (ttimer *)t->data;
    log_fire(t);
    if (tt->count == tt->limit) zk_timer_stop(t);
}

TEST(repeating_timer_stopping_itself_in_its_callback) {
    static fire_log log;
    ttimer a;
    zk_loop *loop = new_loop(1);
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, stop_self_at_limit);
    a.limit = 3;
    zk_timer_start(&a.t, 10, 10);
    zk_loop_advance(loop, 1000);
    CHECK_EQ_INT(a.count, 3);
    CHECK_EQ_INT(log.at[2], 30);
    CHECK(!zk_timer_active(&a.t));
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

static void restart_self(zk_timer *t) {
    ttimer *tt = (ttimer *)t->data;
    log_fire(t);
    if (tt->count < tt->limit) zk_timer_start(t, tt->after, 0);
}

TEST(timer_restarting_itself_in_its_callback) {
    static fire_log log;
    ttimer a;
    zk_loop *loop = new_loop(1);
    int i;
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, restart_self);
    a.limit = 4;
    a.after = 7;
    zk_timer_start(&a.t, 7, 0);
    zk_loop_advance(loop, 100);
    CHECK_EQ_INT(a.count, 4);
    for (i = 0; i < log.n; i++) CHECK_EQ_INT(log.at[i], 7 * (uint64_t)(i + 1));
    CHECK(!zk_timer_active(&a.t));
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

/* Starts two new timers: one due now, one `after` later. */
typedef struct spawner {
    ttimer self; /* first: the timer's data points at both */
    ttimer kids[2];
} spawner;

static void spawn(zk_timer *t) {
    spawner *s = (spawner *)t->data;
    log_fire(t);
    zk_timer_start(&s->kids[0].t, 0, 0);
    zk_timer_start(&s->kids[1].t, s->self.after, 0);
}

TEST(callback_starting_new_timers) {
    static fire_log log;
    spawner s;
    ttimer later;
    zk_loop *loop = new_loop(1);
    memset(&log, 0, sizeof log);
    memset(&s, 0, sizeof s);
    tinit(loop, &s.self, 1, &log, spawn);
    tinit(loop, &s.kids[0], 2, &log, NULL);
    tinit(loop, &s.kids[1], 3, &log, NULL);
    tinit(loop, &later, 4, &log, NULL);
    s.self.after = 15;
    zk_timer_start(&s.self.t, 10, 0);
    zk_timer_start(&later.t, 20, 0); /* between the spawner and its second kid */
    zk_loop_advance(loop, 100);
    CHECK_EQ_INT(log.n, 4);
    CHECK_EQ_INT(log.id[0], 1);
    CHECK_EQ_INT(log.at[0], 10);
    CHECK_EQ_INT(log.id[1], 2); /* due at once: runs in the same advance, at 10 */
    CHECK_EQ_INT(log.at[1], 10);
    CHECK_EQ_INT(log.id[2], 4);
    CHECK_EQ_INT(log.at[2], 20);
    CHECK_EQ_INT(log.id[3], 3);
    CHECK_EQ_INT(log.at[3], 25);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(timer_started_after_an_advance_counts_from_the_new_time) {
    static fire_log log;
    ttimer a;
    zk_loop *loop = new_loop(1);
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, NULL);
    zk_loop_advance(loop, 1000);
    zk_timer_start(&a.t, 5, 0);
    CHECK_EQ_INT(a.t.due, 1005);
    zk_loop_advance(loop, 4);
    CHECK_EQ_INT(log.n, 0);
    zk_loop_advance(loop, 1);
    CHECK_EQ_INT(log.n, 1);
    CHECK_EQ_INT(log.at[0], 1005);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(step_on_a_virtual_clock_runs_only_timers_already_due) {
    static fire_log log;
    ttimer a, b, c;
    zk_loop *loop = new_loop(1);
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, NULL);
    tinit(loop, &b, 2, &log, NULL);
    tinit(loop, &c, 3, &log, NULL);
    zk_timer_start(&a.t, 0, 0);
    zk_timer_start(&b.t, 0, 0);
    zk_timer_start(&c.t, 1, 0);
    CHECK_EQ_INT(zk_loop_step(loop, 0), 2); /* two timer callbacks */
    CHECK_EQ_INT(log.n, 2);
    CHECK_EQ_INT(zk_loop_now(loop), 0);
    CHECK_EQ_INT(zk_loop_step(loop, 0), 0);
    CHECK_EQ_INT(log.n, 2);
    zk_loop_advance(loop, 1);
    CHECK_EQ_INT(log.n, 3);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(advance_does_nothing_on_a_real_clock) {
    static fire_log log;
    ttimer a;
    zk_loop *loop = new_loop(0);
    uint64_t before;
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, NULL);
    zk_timer_start(&a.t, 60000, 0);
    before = zk_loop_now(loop);
    zk_loop_advance(loop, 120000);
    CHECK_EQ_INT(log.n, 0);
    CHECK(zk_loop_now(loop) - before < 1000);
    zk_timer_stop(&a.t);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

/* ---- waiting on a real clock ---------------------------------------------- */

TEST(step_zero_returns_at_once) {
    static fire_log log;
    ttimer a;
    zk_loop *loop = new_loop(0);
    uint64_t t0;
    int rc;
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, NULL);
    t0 = now_ms();
    rc = zk_loop_step(loop, 0); /* nothing at all */
    CHECK_EQ_INT(rc, 0);
    zk_timer_start(&a.t, 10000, 0);
    rc = zk_loop_step(loop, 0); /* a timer far away */
    CHECK_EQ_INT(rc, 0);
    CHECK(now_ms() - t0 < 100);
    CHECK_EQ_INT(log.n, 0);
    zk_timer_stop(&a.t);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(step_zero_runs_timers_that_are_due) {
    static fire_log log;
    ttimer a;
    zk_loop *loop = new_loop(0);
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, NULL);
    zk_timer_start(&a.t, 0, 0);
    CHECK_EQ_INT(zk_loop_step(loop, 0), 1);
    CHECK_EQ_INT(log.n, 1);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

static void step_forever_until_timer(int poller) {
    static fire_log log;
    ttimer a, guard;
    zk_loop *loop = new_loop_with(poller, 0, 1);
    uint64_t t0, elapsed, loop_t0;
    int rc;
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, NULL);
    tinit(loop, &guard, 2, &log, NULL);
    loop_t0 = zk_loop_now(loop);
    t0 = now_ms();
    zk_timer_start(&a.t, 20, 0);
    zk_timer_start(&guard.t, 5000, 0); /* bounds the wait if step ignores a */
    rc = zk_loop_step(loop, -1);
    elapsed = now_ms() - t0;
    CHECK_EQ_INT(rc, 1);
    CHECK_EQ_INT(log.n, 1);
    CHECK_EQ_INT(log.id[0], 1);
    CHECK(log.n == 0 || log.at[0] >= loop_t0 + 20);
    /* the timer counts on the loop's clock, read when it was started */
    CHECK(now_ms() - loop_t0 >= 20);
    CHECK(elapsed < 2000);
    zk_timer_stop(&a.t);
    zk_timer_stop(&guard.t);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(step_forever_returns_when_a_timer_is_due) { step_forever_until_timer(env_poller); }
TEST(step_forever_returns_when_a_timer_is_due_with_poll) { step_forever_until_timer(ZK_POLLER_POLL); }

TEST(step_with_a_timeout_waits_at_most_that_long) {
    static fire_log log;
    ttimer far;
    zk_loop *loop = new_loop(0);
    uint64_t t0, elapsed;
    memset(&log, 0, sizeof log);
    tinit(loop, &far, 1, &log, NULL);
    zk_timer_start(&far.t, 10000, 0);
    t0 = now_ms();
    CHECK_EQ_INT(zk_loop_step(loop, 30), 0);
    elapsed = now_ms() - t0;
    CHECK(elapsed >= 29);
    CHECK(elapsed < 2000);
    /* and a timer due before the timeout shortens the wait */
    far.count = 0;
    zk_timer_start(&far.t, 10, 0);
    t0 = now_ms();
    CHECK_EQ_INT(zk_loop_step(loop, 5000), 1);
    CHECK(now_ms() - t0 < 2000);
    CHECK_EQ_INT(far.count, 1);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

static void stop_loop(zk_timer *t) {
    ttimer *tt = (ttimer *)t->data;
    log_fire(t);
    if (tt->count == tt->limit) zk_loop_stop(t->loop);
}

TEST(run_returns_after_stop_from_a_timer) {
    static fire_log log;
    ttimer a, guard;
    zk_loop *loop = new_loop(0);
    uint64_t t0 = now_ms();
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, stop_loop);
    tinit(loop, &guard, 2, &log, NULL);
    a.limit = 3;
    zk_timer_start(&a.t, 5, 5);
    zk_timer_start(&guard.t, 5000, 0);
    CHECK_EQ_INT(zk_loop_run(loop), 0);
    CHECK_EQ_INT(a.count, 3);
    CHECK_EQ_INT(guard.count, 0);
    CHECK(now_ms() - t0 < 2000);
    /* run again: stop from the first callback */
    a.count = 0;
    a.limit = 1;
    CHECK_EQ_INT(zk_loop_run(loop), 0);
    CHECK_EQ_INT(a.count, 1);
    zk_timer_stop(&a.t);
    zk_timer_stop(&guard.t);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

/* ---- posts ---------------------------------------------------------------- */

typedef struct post_state {
    pthread_t loop_thread;
    int count, wrong_thread, wrong_order;
    int next[2]; /* next sequence number expected from each poster */
    int done;
} post_state;

static void count_post(zk_loop *loop, void *arg) {
    post_state *ps = (post_state *)zk_loop_data(loop);
    uintptr_t v = (uintptr_t)arg;
    int who = (int)(v >> 20), seq = (int)(v & 0xFFFFF);
    if (!pthread_equal(pthread_self(), ps->loop_thread)) ps->wrong_thread++;
    if (who < 0 || who > 1 || seq != ps->next[who]) ps->wrong_order++;
    else ps->next[who]++;
    ps->count++;
}

TEST(posts_from_the_loop_thread_run_in_order_on_the_next_step) {
    post_state ps;
    zk_loop *loop = new_loop(0);
    uintptr_t i;
    memset(&ps, 0, sizeof ps);
    ps.loop_thread = pthread_self();
    zk_loop_set_data(loop, &ps);
    CHECK(zk_loop_data(loop) == &ps);
    for (i = 0; i < 100; i++) CHECK_EQ_INT(zk_loop_post(loop, count_post, (void *)i), 0);
    CHECK_EQ_INT(ps.count, 0); /* not run by post itself */
    CHECK(zk_loop_step(loop, 0) >= 1);
    CHECK_EQ_INT(ps.count, 100);
    CHECK_EQ_INT(ps.wrong_order, 0);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(posts_never_run_are_dropped_by_free) {
    post_state ps;
    zk_loop *loop = new_loop(1);
    uintptr_t i;
    memset(&ps, 0, sizeof ps);
    zk_loop_set_data(loop, &ps);
    for (i = 0; i < 10; i++) zk_loop_post(loop, count_post, (void *)i);
    zk_loop_free(loop);
    CHECK_EQ_INT(ps.count, 0);
    CHECK_ALL_FREED();
}

typedef struct poster {
    zk_loop *loop;
    int who, n;
    int *go; /* wait for this to become non-zero before posting */
    int wait_blocked; /* also wait until the loop thread sleeps (Linux) */
    int failures;
} poster;

/* 1 if the process's main thread is asleep in a system call (Linux). */
static int main_thread_sleeping(void) {
#if defined(__linux__)
    char path[64], buf[512], *p;
    ssize_t n;
    int fd;
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)getpid());
    fd = open(path, O_RDONLY);
    if (fd < 0) return 1;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 1;
    buf[n] = '\0';
    p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'S';
#else
    return 1;
#endif
}

static void *poster_main(void *arg) {
    poster *po = (poster *)arg;
    int i;
    uint64_t t0 = now_ms();
    while (!__atomic_load_n(po->go, __ATOMIC_ACQUIRE)) sched_yield();
    if (po->wait_blocked)
        while (!main_thread_sleeping() && now_ms() - t0 < 3000) sched_yield();
    for (i = 0; i < po->n; i++) {
        uintptr_t v = ((uintptr_t)po->who << 20) | (uintptr_t)i;
        if (zk_loop_post(po->loop, count_post, (void *)v) != 0) po->failures++;
    }
    return NULL;
}

TEST(post_from_another_thread_wakes_a_loop_blocked_in_step) {
    static fire_log log;
    post_state ps;
    poster po;
    pthread_t th;
    ttimer guard;
    int go = 0, rc, rounds = 0;
    zk_loop *loop = new_loop(0);
    uint64_t t0;
    memset(&ps, 0, sizeof ps);
    memset(&log, 0, sizeof log);
    ps.loop_thread = pthread_self();
    zk_loop_set_data(loop, &ps);
    tinit(loop, &guard, 1, &log, NULL);
    zk_timer_start(&guard.t, 5000, 0); /* so a lost wakeup fails, not hangs */
    memset(&po, 0, sizeof po);
    po.loop = loop;
    po.who = 0;
    po.n = 1;
    po.go = &go;
    po.wait_blocked = 1;
    CHECK_EQ_INT(pthread_create(&th, NULL, poster_main, &po), 0);
    t0 = now_ms();
    __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    while (ps.count == 0 && guard.count == 0 && rounds++ < 10) {
        rc = zk_loop_step(loop, -1);
        CHECK(rc >= 0);
    }
    pthread_join(th, NULL);
    CHECK_EQ_INT(ps.count, 1);
    CHECK_EQ_INT(guard.count, 0);
    CHECK_EQ_INT(ps.wrong_thread, 0);
    CHECK(now_ms() - t0 < 4000);
    zk_timer_stop(&guard.t);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

static void posts_from_two_threads(int poller) {
    enum { PER_THREAD = 10000 };
    static fire_log log;
    post_state ps;
    poster po[2];
    pthread_t th[2];
    ttimer guard;
    int go = 0, i;
    zk_loop *loop = new_loop_with(poller, 0, 1);
    memset(&ps, 0, sizeof ps);
    memset(&log, 0, sizeof log);
    ps.loop_thread = pthread_self();
    zk_loop_set_data(loop, &ps);
    tinit(loop, &guard, 1, &log, NULL);
    zk_timer_start(&guard.t, 10000, 0);
    for (i = 0; i < 2; i++) {
        memset(&po[i], 0, sizeof po[i]);
        po[i].loop = loop;
        po[i].who = i;
        po[i].n = PER_THREAD;
        po[i].go = &go;
        CHECK_EQ_INT(pthread_create(&th[i], NULL, poster_main, &po[i]), 0);
    }
    __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    while (ps.count < 2 * PER_THREAD && guard.count == 0) CHECK(zk_loop_step(loop, -1) >= 0);
    for (i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(po[i].failures, 0);
    }
    CHECK_EQ_INT(ps.count, 2 * PER_THREAD);
    CHECK_EQ_INT(ps.next[0], PER_THREAD);
    CHECK_EQ_INT(ps.next[1], PER_THREAD);
    CHECK_EQ_INT(ps.wrong_order, 0);
    CHECK_EQ_INT(ps.wrong_thread, 0);
    CHECK_EQ_INT(guard.count, 0);
    zk_timer_stop(&guard.t);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(posts_from_two_threads_all_run_in_order_on_the_loop_thread) { posts_from_two_threads(env_poller); }
TEST(posts_from_two_threads_with_poll) { posts_from_two_threads(ZK_POLLER_POLL); }

/* ---- random --------------------------------------------------------------- */

TEST(random_is_deterministic_for_a_seed) {
    zk_loop *a = new_loop_with(env_poller, 1, 42), *b = new_loop_with(env_poller, 1, 42);
    zk_loop *c = new_loop_with(env_poller, 1, 43);
    unsigned char ba[37], bb[37], bc[37];
    int i, same_ab = 0, same_ac = 0;
    for (i = 0; i < 1000; i++) {
        uint64_t x = zk_loop_random(a), y = zk_loop_random(b), z = zk_loop_random(c);
        same_ab += x == y;
        same_ac += x == z;
    }
    CHECK_EQ_INT(same_ab, 1000);
    CHECK(same_ac < 3);
    zk_loop_random_bytes(a, ba, sizeof ba);
    zk_loop_random_bytes(b, bb, sizeof bb);
    zk_loop_random_bytes(c, bc, sizeof bc);
    CHECK_MEM(ba, sizeof ba, bb, sizeof bb);
    CHECK(memcmp(ba, bc, sizeof ba) != 0);
    /* the bytes are the generator's output, not a fixed pattern */
    {
        int zeros = 0;
        for (i = 0; i < (int)sizeof ba; i++) zeros += ba[i] == 0;
        CHECK(zeros < 10);
    }
    zk_loop_free(a);
    zk_loop_free(b);
    zk_loop_free(c);
    CHECK_ALL_FREED();
}

TEST(random_with_seed_zero_comes_from_the_os) {
    zk_loop *a = new_loop_with(env_poller, 1, 0), *b = new_loop_with(env_poller, 1, 0);
    int i, same = 0;
    for (i = 0; i < 16; i++) same += zk_loop_random(a) == zk_loop_random(b);
    CHECK(same < 16);
    zk_loop_free(a);
    zk_loop_free(b);
    CHECK_ALL_FREED();
}

TEST(random_values_spread_over_all_bits) {
    zk_loop *loop = new_loop_with(env_poller, 1, 7);
    uint64_t or_all = 0, and_all = ~(uint64_t)0;
    int i;
    for (i = 0; i < 256; i++) {
        uint64_t r = zk_loop_random(loop);
        or_all |= r;
        and_all &= r;
    }
    CHECK(or_all == ~(uint64_t)0);
    CHECK(and_all == 0);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

/* ---- the poller's descriptor ---------------------------------------------- */

static int fd_readable(int fd) {
    struct pollfd p;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

TEST(loop_fd_is_the_epoll_descriptor_and_readable_when_work_waits) {
#if ZK_HAVE_EPOLL
    post_state ps;
    zk_loop *loop = new_loop_with(ZK_POLLER_EPOLL, 0, 1);
    int fd = zk_loop_fd(loop);
    memset(&ps, 0, sizeof ps);
    ps.loop_thread = pthread_self();
    zk_loop_set_data(loop, &ps);
    CHECK(fd >= 0);
    CHECK(fcntl(fd, F_GETFD) >= 0);
    CHECK(!fd_readable(fd));
    zk_loop_post(loop, count_post, NULL);
    CHECK(fd_readable(fd));
    CHECK(zk_loop_step(loop, 0) >= 1);
    CHECK_EQ_INT(ps.count, 1);
    CHECK(!fd_readable(fd));
    zk_loop_free(loop);
#else
    printf("  (no epoll on this system: skipped)\n");
#endif
    CHECK_ALL_FREED();
}

TEST(loop_fd_is_minus_one_with_poll) {
    zk_loop *loop = new_loop_with(ZK_POLLER_POLL, 0, 1);
    CHECK_EQ_INT(zk_loop_fd(loop), -1);
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(unknown_poller_is_refused) {
    zk_loop_opts o;
    memset(&o, 0, sizeof o);
    o.poller = 99;
    CHECK(zk_loop_new(&o) == NULL);
#if !ZK_HAVE_KQUEUE
    o.poller = ZK_POLLER_KQUEUE; /* not built in: refused, not faked */
    CHECK(zk_loop_new(&o) == NULL);
#endif
    CHECK_ALL_FREED();
}

TEST(null_options_give_a_working_real_clock_loop) {
    static fire_log log;
    ttimer a;
    zk_loop *loop = zk_loop_new(NULL);
    CHECK(loop != NULL);
    if (!loop) return;
    memset(&log, 0, sizeof log);
    tinit(loop, &a, 1, &log, NULL);
    zk_timer_start(&a.t, 0, 0);
    CHECK_EQ_INT(zk_loop_step(loop, 0), 1);
    CHECK(zk_loop_now(loop) > 0); /* the system's monotonic clock */
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

/* ---- internal I/O watchers, every poller ---------------------------------- */

static int watcher_clock;

typedef struct watcher {
    zk__io io; /* first: the callback gets this pointer */
    zk_loop *loop;
    int calls, wfd, order;
    struct watcher *remove; /* watcher this one unregisters when it runs */
} watcher;

static void watcher_fn(zk__io *io, unsigned events) {
    watcher *w = (watcher *)(void *)io;
    char buf[16];
    w->calls++;
    w->order = ++watcher_clock;
    if (events & ZK__IO_READ) {
        while (read(io->fd, buf, sizeof buf) > 0) {}
    }
    if (w->remove) zk__io_set(w->loop, &w->remove->io, 0);
}

static void watchers_removed_by_callbacks(int poller) {
    enum { N = 12 };
    watcher w[N];
    int fds[N][2], i, round;
    uint64_t seed = 5;
    zk_loop *loop = new_loop_with(poller, 0, 1);
    for (i = 0; i < N; i++) {
        CHECK_EQ_INT(pipe(fds[i]), 0);
        fcntl(fds[i][0], F_SETFL, O_NONBLOCK);
        memset(&w[i], 0, sizeof w[i]);
        w[i].loop = loop;
        w[i].wfd = fds[i][1];
    }
    for (round = 0; round < 20; round++) {
        int removed[N], wrong = 0;
        memset(removed, 0, sizeof removed);
        for (i = 0; i < N; i++) {
            zk__io_init(&w[i].io, fds[i][0], watcher_fn);
            w[i].calls = w[i].order = 0;
            w[i].remove = NULL;
            CHECK_EQ_INT(zk__io_set(loop, &w[i].io, ZK__IO_READ), 0);
            CHECK_EQ_INT(write(fds[i][1], "x", 1), 1);
        }
        /* a third of the watchers unregister another one (or themselves) */
        for (i = 0; i < N; i++)
            if (rng_next(&seed) % 3 == 0) w[i].remove = &w[rng_next(&seed) % N];
        zk_loop_step(loop, 0);
        /* a watcher runs at most once; one removed before its turn never
           runs; every watcher nobody removed runs */
        for (i = 0; i < N; i++) {
            if (w[i].calls > 1) wrong++;
            if (w[i].calls && w[i].remove) {
                watcher *r = w[i].remove;
                removed[r - w] = 1;
                if (r->calls && r != &w[i] && r->order > w[i].order) wrong++;
            }
        }
        for (i = 0; i < N; i++)
            if (!removed[i] && w[i].calls != 1) wrong++;
        CHECK_EQ_INT(wrong, 0);
        for (i = 0; i < N; i++) {
            char buf[16];
            while (read(fds[i][0], buf, sizeof buf) > 0) {}
            zk__io_set(loop, &w[i].io, 0);
        }
    }
    /* nothing left registered: a step finds nothing */
    for (i = 0; i < N; i++) CHECK_EQ_INT(write(fds[i][1], "y", 1), 1);
    CHECK_EQ_INT(zk_loop_step(loop, 0), 0);
    for (i = 0; i < N; i++) {
        close(fds[i][0]);
        close(fds[i][1]);
    }
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(watcher_removed_by_an_earlier_callback_is_not_called) { watchers_removed_by_callbacks(env_poller); }
TEST(watcher_removed_by_an_earlier_callback_is_not_called_with_poll) {
    watchers_removed_by_callbacks(ZK_POLLER_POLL);
}

static void watchers_with_small_batches(int poller) {
    enum { N = 20 };
    watcher w[N];
    int fds[N][2], i, steps = 0, total = 0;
    zk_loop_opts o;
    zk_loop *loop;
    memset(&o, 0, sizeof o);
    o.poller = poller;
    o.max_events = 3; /* fewer than the ready watchers: several steps */
    loop = zk_loop_new(&o);
    CHECK(loop != NULL);
    if (!loop) return;
    for (i = 0; i < N; i++) {
        CHECK_EQ_INT(pipe(fds[i]), 0);
        fcntl(fds[i][0], F_SETFL, O_NONBLOCK);
        memset(&w[i], 0, sizeof w[i]);
        w[i].loop = loop;
        zk__io_init(&w[i].io, fds[i][0], watcher_fn);
        zk__io_set(loop, &w[i].io, ZK__IO_READ);
        CHECK_EQ_INT(write(fds[i][1], "x", 1), 1);
    }
    while (total < N && steps < 100) {
        total = 0;
        zk_loop_step(loop, 0);
        steps++;
        for (i = 0; i < N; i++) total += w[i].calls;
    }
    for (i = 0; i < N; i++) CHECK_EQ_INT(w[i].calls, 1);
    for (i = 0; i < N; i++) {
        zk__io_set(loop, &w[i].io, 0);
        close(fds[i][0]);
        close(fds[i][1]);
    }
    zk_loop_free(loop);
    CHECK_ALL_FREED();
}

TEST(every_ready_watcher_runs_once_with_a_small_event_batch) { watchers_with_small_batches(env_poller); }

#ifdef __linux__
#include <sys/timerfd.h>
static uint64_t clock_seen_in_callback;
static void timerfd_ready(zk__io *io, unsigned events) {
    uint64_t n;
    (void)events;
    if (read(io->fd, &n, sizeof n) < 0) n = 0;
    clock_seen_in_callback = zk_loop_now((zk_loop *)loop_of_io);
}
#endif

/* An I/O callback that runs after the loop waited sees the time it runs at,
   not the time the wait began (a send stamped then, a deadline started from
   a read handler). The fd is a timerfd that becomes readable 40 ms into the
   wait. */
TEST(io_callbacks_see_the_time_after_the_wait) {
#ifdef __linux__
    zk_loop *loop = new_loop(0);
    zk__io io;
    struct itimerspec its;
    uint64_t before;
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC), i;
    CHECK(fd >= 0);
    if (fd < 0) return;
    loop_of_io = loop;
    memset(&its, 0, sizeof its);
    its.it_value.tv_nsec = 40 * 1000000L;
    zk__io_init(&io, fd, timerfd_ready);
    CHECK_EQ_INT(zk__io_set(loop, &io, ZK__IO_READ), 0);
    clock_seen_in_callback = 0;
    zk_loop_step(loop, 0);
    before = zk_loop_now(loop);
    CHECK_EQ_INT(timerfd_settime(fd, 0, &its, NULL), 0);
    for (i = 0; i < 100 && !clock_seen_in_callback; i++) zk_loop_step(loop, 1000); /* bounded: 100 s */
    CHECK(clock_seen_in_callback >= before + 35);
    zk__io_set(loop, &io, 0);
    close(fd);
    zk_loop_free(loop);
#endif
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
        printf("poller %s is not available on this system: loop tests skipped\n", poller_name(env_poller));
        return test_summary();
    }
    printf("poller: %s\n", poller_name(probe->poller));
    zk_loop_free(probe);

    RUN(virtual_clock_starts_at_zero_and_moves_only_by_advance);
    RUN(io_callbacks_see_the_time_after_the_wait);
    RUN(timers_fire_in_due_order);
    RUN(equal_due_times_fire_in_the_order_started);
    RUN(advance_runs_due_timers_at_their_own_time_and_stops_at_the_target);
    RUN(ten_thousand_timers_started_in_random_order_fire_in_order);
    RUN(stopping_random_timers_among_many_keeps_the_rest_in_order);
    RUN(stopped_timer_does_not_fire_and_can_be_started_again);
    RUN(starting_an_active_timer_restarts_it);
    RUN(repeating_timer_fires_every_period_until_stopped);
    RUN(timer_stopping_another_timer_in_its_callback);
    RUN(repeating_timer_stopping_itself_in_its_callback);
    RUN(timer_restarting_itself_in_its_callback);
    RUN(callback_starting_new_timers);
    RUN(timer_started_after_an_advance_counts_from_the_new_time);
    RUN(step_on_a_virtual_clock_runs_only_timers_already_due);
    RUN(advance_does_nothing_on_a_real_clock);
    RUN(step_zero_returns_at_once);
    RUN(step_zero_runs_timers_that_are_due);
    RUN(step_forever_returns_when_a_timer_is_due);
    RUN(step_forever_returns_when_a_timer_is_due_with_poll);
    RUN(step_with_a_timeout_waits_at_most_that_long);
    RUN(run_returns_after_stop_from_a_timer);
    RUN(posts_from_the_loop_thread_run_in_order_on_the_next_step);
    RUN(posts_never_run_are_dropped_by_free);
    RUN(post_from_another_thread_wakes_a_loop_blocked_in_step);
    RUN(posts_from_two_threads_all_run_in_order_on_the_loop_thread);
    RUN(posts_from_two_threads_with_poll);
    RUN(random_is_deterministic_for_a_seed);
    RUN(random_with_seed_zero_comes_from_the_os);
    RUN(random_values_spread_over_all_bits);
    RUN(loop_fd_is_the_epoll_descriptor_and_readable_when_work_waits);
    RUN(loop_fd_is_minus_one_with_poll);
    RUN(unknown_poller_is_refused);
    RUN(null_options_give_a_working_real_clock_loop);
    RUN(watcher_removed_by_an_earlier_callback_is_not_called);
    RUN(watcher_removed_by_an_earlier_callback_is_not_called_with_poll);
    RUN(every_ready_watcher_runs_once_with_a_small_event_batch);
    return test_summary();
}
