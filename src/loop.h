#include "ws.h"
/* >>loop: event loop, timers, clock, randomness, wakeup -------------------- */

/* One loop per thread. It owns a poller (epoll, kqueue or poll), a timer
   heap, a clock (the system's monotonic clock, or a virtual one that only
   moves when a test says so) and a seedable random generator. Run it with
   zk_loop_run, or drive it from a game loop with zk_loop_step(loop, 0).
   Every call on a loop and on what belongs to it must come from the loop's
   thread, except zk_loop_post, which any thread may call. */
typedef struct zk_loop zk_loop;

enum {
    ZK_POLLER_AUTO = 0, /* epoll on Linux, kqueue on BSD and macOS, else poll */
    ZK_POLLER_EPOLL,
    ZK_POLLER_KQUEUE,
    ZK_POLLER_POLL
};

typedef struct zk_loop_opts {
    int poller;         /* ZK_POLLER_*; 0: the best one this system has */
    int virtual_clock;  /* 1: time moves only through zk_loop_advance (tests) */
    uint64_t seed;      /* random generator seed; 0: seeded from the OS */
    size_t max_events;  /* events taken per poll; 0: 256 */
} zk_loop_opts;

/* A new loop, or NULL (out of memory, or the poller could not be made).
   opts may be NULL. */
ZK_API zk_loop *zk_loop_new(const zk_loop_opts *opts);

/* Frees the loop. Free its servers first. Client connections still open
   are dropped (on_close 1006) and those finishing a close are freed;
   posted functions that never ran are dropped (their arg is not freed). */
ZK_API void zk_loop_free(zk_loop *loop);

/* Runs until zk_loop_stop. Returns 0, or a negative zk_err if polling fails. */
ZK_API int zk_loop_run(zk_loop *loop);

/* One pass: waits for I/O at most timeout_ms (0: do not wait; -1: until
   something happens or a timer is due), then runs I/O callbacks, due
   timers and posted functions. Returns the number of callbacks run (>= 0)
   or a negative zk_err. A game loop calls zk_loop_step(loop, 0) per frame. */
ZK_API int zk_loop_step(zk_loop *loop, int timeout_ms);

/* Makes zk_loop_run return after the current pass. */
ZK_API void zk_loop_stop(zk_loop *loop);

/* The loop's clock in milliseconds (monotonic; starts near 0 with a virtual
   clock). Cached per pass. */
ZK_API uint64_t zk_loop_now(const zk_loop *loop);

/* Virtual clock only: moves time forward by ms, running every timer that
   falls due on the way, in order, and the in-memory deliveries they cause.
   Also, with a virtual clock, a zk_loop_step that would wait (timeout not 0)
   and finds no I/O or work jumps time to the next timer and runs it, so
   zk_loop_run works and a test never waits for real. */
ZK_API void zk_loop_advance(zk_loop *loop, uint64_t ms);

/* Milliseconds until the loop has something to do without I/O: 0 when
   work is pending or a timer is due, -1 when no timer is set. An embedding
   event loop waits on zk_loop_fd for at most this long, then steps. */
ZK_API int zk_loop_timeout(const zk_loop *loop);

/* The poller's descriptor (epoll or kqueue), readable when the loop has
   work: add it to another event loop and call zk_loop_step(loop, 0) when it
   fires. -1 with the poll backend. */
ZK_API int zk_loop_fd(const zk_loop *loop);

/* The loop's random generator (xoshiro256**), seeded by opts.seed. Not for
   secrets; WebSocket keys and masks and reconnect jitter use it. */
ZK_API uint64_t zk_loop_random(zk_loop *loop);
ZK_API void zk_loop_random_bytes(zk_loop *loop, void *out, size_t len);

/* One slot for your pointer. */
ZK_API void zk_loop_set_data(zk_loop *loop, void *data);
ZK_API void *zk_loop_data(const zk_loop *loop);

typedef void (*zk_post_fn)(zk_loop *loop, void *arg);

/* Thread-safe: asks the loop's thread to call fn(loop, arg) soon, in the
   order posted, and wakes the loop. Returns 0 or ZK_ENOMEM. Not
   async-signal-safe (it allocates and locks), nor is zk_loop_stop: take
   signals in a thread (sigwait) and post from there, as examples/chat.c
   does. */
ZK_API int zk_loop_post(zk_loop *loop, zk_post_fn fn, void *arg);

/* Timers. A zk_timer is yours to allocate (embed it in your own struct);
   the loop keeps only a pointer to it while it is active. Resolution 1 ms;
   a heap, so thousands cost O(log n) each. */
typedef struct zk_timer zk_timer;
typedef void (*zk_timer_fn)(zk_timer *timer);
struct zk_timer {
    void *data;         /* yours */
    zk_timer_fn fn;
    zk_loop *loop;
    uint64_t due, repeat, seq;
    size_t slot;        /* heap position + 1, 0 when inactive */
};

ZK_API void zk_timer_init(zk_loop *loop, zk_timer *timer, zk_timer_fn fn, void *data);

/* Calls fn after after_ms, then every repeat_ms if that is not 0. Starting
   an active timer restarts it. Returns 0 or ZK_ENOMEM. */
ZK_API int zk_timer_start(zk_timer *timer, uint64_t after_ms, uint64_t repeat_ms);
ZK_API void zk_timer_stop(zk_timer *timer);
ZK_API int zk_timer_active(const zk_timer *timer);
