#include "ws.c"
/* >>loop implementation -------------------------------------------------- */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#if !defined(ZK_HAVE_EPOLL)
#if defined(__linux__)
#define ZK_HAVE_EPOLL 1
#else
#define ZK_HAVE_EPOLL 0
#endif
#endif
#if !defined(ZK_HAVE_KQUEUE)
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || \
    defined(__NetBSD__) || defined(__DragonFly__)
#define ZK_HAVE_KQUEUE 1
#else
#define ZK_HAVE_KQUEUE 0
#endif
#endif
#if ZK_HAVE_EPOLL
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif
#if ZK_HAVE_KQUEUE
#include <sys/event.h>
#endif

/* ---- internal I/O watchers and deferred work ---- */

#define ZK__IO_READ 1u
#define ZK__IO_WRITE 2u
#define ZK__IO_ERROR 4u /* hang-up or error: also reported as readable */

typedef struct zk__io zk__io;
typedef void (*zk__io_fn)(zk__io *io, unsigned events);
struct zk__io {
    int fd;
    unsigned events; /* registered interest */
    zk__io_fn fn;
    size_t slot;     /* poll backend: index + 1; 0 when not registered */
};

/* Work the loop runs after I/O in a pass (in-memory deliveries, flushes). */
typedef struct zk__work zk__work;
struct zk__work {
    zk__work *next;
    void (*fn)(zk__work *work);
    int queued;
};

typedef struct zk__post {
    struct zk__post *next;
    zk_post_fn fn;
    void *arg;
} zk__post;

struct zk_loop {
    int poller, fd, stopped, virtual_clock;
    uint64_t now, rng[4];
    void *data;
    /* timers: a binary min-heap on (due, seq) */
    zk_timer **heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;
    /* poll backend */
    struct pollfd *pfds;
    zk__io **pios;
    size_t npfds, pfds_cap;
    /* epoll / kqueue: the batch being dispatched, so a watcher stopped by an
       earlier callback is not called from it */
    void *events;
    int nevents, event_at, max_events;
    /* wakeup and posts from other threads */
    int wake_rd, wake_wr, wake_pending;
    zk__io wake_io;
    pthread_mutex_t mutex;
    zk__post *posts, *posts_tail;
    /* deferred work; work_stop ends the current pass (see zk__work_run) */
    zk__work *work, *work_tail, *work_stop;
    int work_stop_gone;
    /* the read buffer every connection of this loop reads into */
    unsigned char *rbuf;
    size_t rbuf_cap;
    /* client connections (the net layer's), dropped by zk_loop_free */
    void *clients;
    void (*drop_clients)(zk_loop *loop);
    /* spare write-queue chunks: a list through each block's first word */
    void *chunk_cache;
    size_t chunk_cached;     /* spare standard chunks (net.c) */
    size_t chunk_live;       /* standard chunks in write queues now */
    size_t chunk_peak;       /* the most in queues since chunk_decay_at */
    uint64_t chunk_decay_at;
    /* the cork: output of the connection whose read handler runs */
    unsigned char *cork;
    size_t cork_len, cork_cap;
    void *corked;
    int cork_raw;
};

ZK__PRIVATE uint64_t zk__monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

ZK__PRIVATE int zk__set_nonblock(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return -1;
    flags = fcntl(fd, F_GETFD, 0);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) return -1;
    return 0;
}

/* ---- random: xoshiro256**, seeded through splitmix64 ---- */

ZK__PRIVATE uint64_t zk__splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

ZK__PRIVATE uint64_t zk__os_seed(void) {
    uint64_t seed = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &seed, sizeof seed) != (ssize_t)sizeof seed) seed = 0;
        close(fd);
    }
    if (seed == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid() << 40;
    }
    return seed;
}

#define ZK__ROL64(x, k) (((x) << (k)) | ((x) >> (64 - (k))))

ZK_API uint64_t zk_loop_random(zk_loop *loop) {
    uint64_t *s = loop->rng, r = ZK__ROL64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ZK__ROL64(s[3], 45);
    return r;
}

ZK_API void zk_loop_random_bytes(zk_loop *loop, void *out, size_t len) {
    unsigned char *p = (unsigned char *)out;
    while (len) {
        uint64_t r = zk_loop_random(loop);
        size_t n = len < 8 ? len : 8;
        memcpy(p, &r, n);
        p += n;
        len -= n;
    }
}

/* ---- pollers ---- */

ZK__PRIVATE int zk__poller_open(zk_loop *loop) {
    loop->fd = -1;
    if (loop->poller == ZK_POLLER_AUTO)
        loop->poller = ZK_HAVE_EPOLL ? ZK_POLLER_EPOLL : ZK_HAVE_KQUEUE ? ZK_POLLER_KQUEUE : ZK_POLLER_POLL;
#if ZK_HAVE_EPOLL
    if (loop->poller == ZK_POLLER_EPOLL) {
        loop->fd = epoll_create1(EPOLL_CLOEXEC);
        loop->events = ZK_MALLOC(sizeof(struct epoll_event) * (size_t)loop->max_events);
        return loop->fd >= 0 && loop->events ? 0 : -1;
    }
#endif
#if ZK_HAVE_KQUEUE
    if (loop->poller == ZK_POLLER_KQUEUE) {
        loop->fd = kqueue();
        if (loop->fd >= 0) fcntl(loop->fd, F_SETFD, FD_CLOEXEC);
        loop->events = ZK_MALLOC(sizeof(struct kevent) * (size_t)loop->max_events);
        return loop->fd >= 0 && loop->events ? 0 : -1;
    }
#endif
    return loop->poller == ZK_POLLER_POLL ? 0 : -1;
}

/* Registers, changes or (events == 0) removes a watcher. */
ZK__PRIVATE int zk__io_set(zk_loop *loop, zk__io *io, unsigned events) {
    unsigned old = io->events;
    int i;
    if (events == old && (events == 0 || io->slot)) return 0;
#if ZK_HAVE_EPOLL
    if (loop->poller == ZK_POLLER_EPOLL) {
        struct epoll_event ev;
        int op = !io->slot ? EPOLL_CTL_ADD : events ? EPOLL_CTL_MOD : EPOLL_CTL_DEL;
        memset(&ev, 0, sizeof ev);
        ev.events = (events & ZK__IO_READ ? EPOLLIN : 0u) | (events & ZK__IO_WRITE ? EPOLLOUT : 0u);
        ev.data.ptr = io;
        if (!io->slot && !events) return 0;
        if (epoll_ctl(loop->fd, op, io->fd, &ev) < 0 && op != EPOLL_CTL_DEL)
            return errno == ENOMEM || errno == ENOSPC ? ZK_ENOMEM : ZK_EIO;
        io->slot = events ? 1 : 0;
        io->events = events;
        if (!events) {
            struct epoll_event *e = (struct epoll_event *)loop->events;
            for (i = loop->event_at + 1; i < loop->nevents; i++)
                if (e[i].data.ptr == io) e[i].data.ptr = NULL;
        }
        return 0;
    }
#endif
#if ZK_HAVE_KQUEUE
    if (loop->poller == ZK_POLLER_KQUEUE) {
        /* one change per call: kqueue stops at the first failing change, and
           io->events must say exactly what is registered */
        static const short filters[2] = {EVFILT_READ, EVFILT_WRITE};
        static const unsigned bits[2] = {ZK__IO_READ, ZK__IO_WRITE};
        int k;
        for (k = 0; k < 2; k++) {
            struct kevent ch;
            if (!((events ^ io->events) & bits[k])) continue;
            EV_SET(&ch, io->fd, filters[k], events & bits[k] ? EV_ADD : EV_DELETE, 0, 0, io);
            if (kevent(loop->fd, &ch, 1, NULL, 0, NULL) < 0 && (events & bits[k]))
                return errno == ENOMEM ? ZK_ENOMEM : ZK_EIO;
            io->events ^= bits[k];
        }
        io->slot = io->events ? 1 : 0;
        if (!events) {
            struct kevent *e = (struct kevent *)loop->events;
            for (i = loop->event_at + 1; i < loop->nevents; i++)
                if (e[i].udata == (void *)io) e[i].udata = NULL;
        }
        return 0;
    }
#endif
    /* poll */
    if (events && !io->slot) {
        if (loop->npfds == loop->pfds_cap) {
            size_t cap = loop->pfds_cap ? loop->pfds_cap * 2 : 16;
            struct pollfd *p = (struct pollfd *)ZK_REALLOC(loop->pfds, cap * sizeof *p);
            zk__io **q;
            if (!p) return ZK_ENOMEM;
            loop->pfds = p;
            q = (zk__io **)ZK_REALLOC(loop->pios, cap * sizeof *q);
            if (!q) return ZK_ENOMEM;
            loop->pios = q;
            loop->pfds_cap = cap;
        }
        loop->pfds[loop->npfds].fd = io->fd;
        loop->pfds[loop->npfds].revents = 0;
        loop->pios[loop->npfds] = io;
        io->slot = ++loop->npfds;
    }
    if (io->slot) {
        size_t at = io->slot - 1;
        if (events) {
            loop->pfds[at].events = (short)((events & ZK__IO_READ ? POLLIN : 0) | (events & ZK__IO_WRITE ? POLLOUT : 0));
        } else {
            /* swap-remove; dispatch walks downwards and clears revents, so the
               moved entry is neither lost nor run twice */
            size_t last = --loop->npfds;
            loop->pfds[at] = loop->pfds[last];
            loop->pios[at] = loop->pios[last];
            loop->pios[at]->slot = at + 1;
            io->slot = 0;
        }
    }
    io->events = events;
    return 0;
}

ZK__PRIVATE void zk__io_init(zk__io *io, int fd, zk__io_fn fn) {
    io->fd = fd;
    io->events = 0;
    io->fn = fn;
    io->slot = 0;
}

/* The wait may have lasted: callbacks must see the time they run at (a
   send's timestamp, a deadline started from a read handler). */
ZK__PRIVATE void zk__clock_after_wait(zk_loop *loop) {
    if (!loop->virtual_clock) loop->now = zk__monotonic_ms();
}

/* Waits up to timeout_ms and runs the callbacks of ready watchers. */
ZK__PRIVATE int zk__poller_wait(zk_loop *loop, int timeout_ms) {
    int n, i, ran = 0;
#if ZK_HAVE_EPOLL
    if (loop->poller == ZK_POLLER_EPOLL) {
        struct epoll_event *e = (struct epoll_event *)loop->events;
        n = epoll_wait(loop->fd, e, loop->max_events, timeout_ms);
        if (n < 0) return errno == EINTR ? 0 : ZK_EINVAL;
        zk__clock_after_wait(loop);
        loop->nevents = n;
        for (i = 0; i < n; i++) {
            zk__io *io = (zk__io *)e[i].data.ptr;
            unsigned ev = 0;
            loop->event_at = i;
            if (!io) continue;
            if (e[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) ev |= ZK__IO_READ;
            if (e[i].events & EPOLLOUT) ev |= ZK__IO_WRITE;
            if (e[i].events & (EPOLLHUP | EPOLLERR)) ev |= ZK__IO_ERROR;
            io->fn(io, ev);
            ran++;
        }
        loop->nevents = loop->event_at = 0;
        return ran;
    }
#endif
#if ZK_HAVE_KQUEUE
    if (loop->poller == ZK_POLLER_KQUEUE) {
        struct kevent *e = (struct kevent *)loop->events;
        struct timespec ts, *tsp = NULL;
        if (timeout_ms >= 0) {
            ts.tv_sec = timeout_ms / 1000;
            ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
            tsp = &ts;
        }
        n = kevent(loop->fd, NULL, 0, e, loop->max_events, tsp);
        if (n < 0) return errno == EINTR ? 0 : ZK_EINVAL;
        zk__clock_after_wait(loop);
        loop->nevents = n;
        for (i = 0; i < n; i++) {
            zk__io *io = (zk__io *)e[i].udata;
            unsigned ev;
            loop->event_at = i;
            if (!io) continue;
            ev = e[i].filter == EVFILT_WRITE ? ZK__IO_WRITE : ZK__IO_READ;
            if (e[i].flags & (EV_EOF | EV_ERROR)) ev |= ZK__IO_ERROR | ZK__IO_READ;
            io->fn(io, ev);
            ran++;
        }
        loop->nevents = loop->event_at = 0;
        return ran;
    }
#endif
    n = poll(loop->pfds, (nfds_t)loop->npfds, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : ZK_EINVAL;
    zk__clock_after_wait(loop);
    for (i = (int)loop->npfds - 1; i >= 0 && n > 0; i--) {
        short re;
        unsigned ev = 0;
        if ((size_t)i >= loop->npfds) continue;
        re = loop->pfds[i].revents;
        if (!re) continue;
        loop->pfds[i].revents = 0;
        n--;
        if (re & (POLLIN | POLLHUP | POLLERR)) ev |= ZK__IO_READ;
        if (re & POLLOUT) ev |= ZK__IO_WRITE;
        if (re & (POLLHUP | POLLERR | POLLNVAL)) ev |= ZK__IO_ERROR | ZK__IO_READ;
        loop->pios[i]->fn(loop->pios[i], ev);
        ran++;
    }
    return ran;
}

/* ---- deferred work ---- */

ZK__PRIVATE void zk__work_queue(zk_loop *loop, zk__work *w) {
    if (w->queued) return;
    w->queued = 1;
    w->next = NULL;
    if (loop->work_tail) loop->work_tail->next = w;
    else loop->work = w;
    loop->work_tail = w;
}

ZK__PRIVATE void zk__work_cancel(zk_loop *loop, zk__work *w) {
    zk__work **p, *prev = NULL;
    if (!w->queued) return;
    for (p = &loop->work; *p; prev = *p, p = &(*p)->next) {
        if (*p == w) {
            /* the pass that is running must still end where it meant to */
            if (loop->work_stop == w) {
                loop->work_stop = prev;
                if (!prev) loop->work_stop_gone = 1;
            }
            *p = w->next;
            if (loop->work_tail == w) {
                zk__work *t = loop->work;
                while (t && t->next) t = t->next;
                loop->work_tail = t;
            }
            break;
        }
    }
    w->queued = 0;
}

/* Runs the work queued before this call; work it queues waits for the next
   pass. The end of the pass is kept in the loop, so cancelling it (a
   connection freed by an earlier item) cannot make the pass run on. */
ZK__PRIVATE int zk__work_run(zk_loop *loop) {
    int ran = 0;
    if (!loop->work) return 0;
    loop->work_stop = loop->work_tail;
    loop->work_stop_gone = 0;
    while (loop->work && !loop->work_stop_gone) {
        zk__work *w = loop->work;
        int last = w == loop->work_stop;
        loop->work = w->next;
        if (!loop->work) loop->work_tail = NULL;
        w->queued = 0;
        w->fn(w);
        ran++;
        if (last) break;
    }
    loop->work_stop = NULL;
    return ran;
}

/* ---- timers ---- */

ZK__PRIVATE int zk__timer_less(const zk_timer *a, const zk_timer *b) {
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

ZK__PRIVATE void zk__heap_set(zk_loop *loop, size_t i, zk_timer *t) {
    loop->heap[i] = t;
    t->slot = i + 1;
}

ZK__PRIVATE void zk__heap_up(zk_loop *loop, size_t i) {
    zk_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!zk__timer_less(t, loop->heap[parent])) break;
        zk__heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    zk__heap_set(loop, i, t);
}

ZK__PRIVATE void zk__heap_down(zk_loop *loop, size_t i) {
    zk_timer *t = loop->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= loop->heap_len) break;
        if (c + 1 < loop->heap_len && zk__timer_less(loop->heap[c + 1], loop->heap[c])) c++;
        if (!zk__timer_less(loop->heap[c], t)) break;
        zk__heap_set(loop, i, loop->heap[c]);
        i = c;
    }
    zk__heap_set(loop, i, t);
}

ZK_API void zk_timer_init(zk_loop *loop, zk_timer *timer, zk_timer_fn fn, void *data) {
    memset(timer, 0, sizeof *timer);
    timer->loop = loop;
    timer->fn = fn;
    timer->data = data;
}

ZK_API int zk_timer_active(const zk_timer *timer) { return timer->slot != 0; }

ZK_API void zk_timer_stop(zk_timer *timer) {
    zk_loop *loop = timer->loop;
    size_t i;
    if (!timer->slot) return;
    i = timer->slot - 1;
    timer->slot = 0;
    if (i == --loop->heap_len) return;
    zk__heap_set(loop, i, loop->heap[loop->heap_len]);
    zk__heap_up(loop, i);
    zk__heap_down(loop, i);
}

ZK_API int zk_timer_start(zk_timer *timer, uint64_t after_ms, uint64_t repeat_ms) {
    zk_loop *loop = timer->loop;
    zk_timer_stop(timer);
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        zk_timer **h = (zk_timer **)ZK_REALLOC(loop->heap, cap * sizeof *h);
        if (!h) return ZK_ENOMEM;
        loop->heap = h;
        loop->heap_cap = cap;
    }
    timer->due = loop->now + after_ms;
    timer->repeat = repeat_ms;
    timer->seq = loop->timer_seq++;
    loop->heap[loop->heap_len] = timer;
    zk__heap_up(loop, loop->heap_len++);
    return 0;
}

/* Runs the timers due at or before `until`, advancing the virtual clock to
   each one's time. */
ZK__PRIVATE int zk__timers_run(zk_loop *loop, uint64_t until) {
    int ran = 0;
    while (loop->heap_len && loop->heap[0]->due <= until) {
        zk_timer *t = loop->heap[0];
        if (loop->virtual_clock && t->due > loop->now) loop->now = t->due;
        zk_timer_stop(t);
        if (t->repeat) zk_timer_start(t, t->repeat, t->repeat);
        t->fn(t);
        ran++;
    }
    return ran;
}

/* ---- wakeup and posts ---- */

ZK__PRIVATE void zk__wake_cb(zk__io *io, unsigned events) {
    zk_loop *loop = (zk_loop *)(void *)((char *)io - offsetof(zk_loop, wake_io));
    char drain[64];
    zk__post *p;
    (void)events;
    while (read(loop->wake_rd, drain, sizeof drain) > 0) {}
    pthread_mutex_lock(&loop->mutex);
    p = loop->posts;
    loop->posts = loop->posts_tail = NULL;
    loop->wake_pending = 0;
    pthread_mutex_unlock(&loop->mutex);
    while (p) {
        zk__post *next = p->next;
        p->fn(loop, p->arg);
        ZK_FREE(p);
        p = next;
    }
}

ZK_API int zk_loop_post(zk_loop *loop, zk_post_fn fn, void *arg) {
    zk__post *p = (zk__post *)ZK_MALLOC(sizeof *p);
    int wake;
    if (!p) return ZK_ENOMEM;
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&loop->mutex);
    if (loop->posts_tail) loop->posts_tail->next = p;
    else loop->posts = p;
    loop->posts_tail = p;
    wake = !loop->wake_pending;
    loop->wake_pending = 1;
    pthread_mutex_unlock(&loop->mutex);
    if (wake) {
        uint64_t one = 1;
        ssize_t w;
        do {
            w = write(loop->wake_wr, &one, loop->wake_rd == loop->wake_wr ? 8 : 1);
        } while (w < 0 && errno == EINTR);
    }
    return 0;
}

/* ---- the loop ---- */

ZK_API zk_loop *zk_loop_new(const zk_loop_opts *opts) {
    zk_loop *loop = (zk_loop *)ZK_MALLOC(sizeof *loop);
    uint64_t seed;
    int i;
    if (!loop) return NULL;
    memset(loop, 0, sizeof *loop);
    loop->poller = opts ? opts->poller : ZK_POLLER_AUTO;
    loop->virtual_clock = opts && opts->virtual_clock;
    loop->max_events = opts && opts->max_events ? (int)ZK__MIN(opts->max_events, (size_t)65536) : 256;
    loop->wake_rd = loop->wake_wr = -1;
    seed = opts && opts->seed ? opts->seed : zk__os_seed();
    for (i = 0; i < 4; i++) loop->rng[i] = zk__splitmix(&seed);
    loop->now = loop->virtual_clock ? 0 : zk__monotonic_ms();
    if (pthread_mutex_init(&loop->mutex, NULL) != 0) {
        ZK_FREE(loop);
        return NULL;
    }
    if (zk__poller_open(loop) < 0) goto fail;
#if ZK_HAVE_EPOLL
    loop->wake_rd = loop->wake_wr = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake_rd < 0) goto fail;
#else
    {
        int p[2];
        if (pipe(p) < 0) goto fail;
        loop->wake_rd = p[0];
        loop->wake_wr = p[1];
        if (zk__set_nonblock(p[0]) < 0 || zk__set_nonblock(p[1]) < 0) goto fail;
    }
#endif
    zk__io_init(&loop->wake_io, loop->wake_rd, zk__wake_cb);
    if (zk__io_set(loop, &loop->wake_io, ZK__IO_READ) < 0) goto fail;
    return loop;
fail:
    zk_loop_free(loop);
    return NULL;
}

ZK_API void zk_loop_free(zk_loop *loop) {
    zk__post *p;
    if (!loop) return;
    if (loop->drop_clients) loop->drop_clients(loop);
    if (loop->wake_rd >= 0) close(loop->wake_rd);
    if (loop->wake_wr >= 0 && loop->wake_wr != loop->wake_rd) close(loop->wake_wr);
    if (loop->fd >= 0) close(loop->fd);
    for (p = loop->posts; p;) {
        zk__post *next = p->next;
        ZK_FREE(p);
        p = next;
    }
    while (loop->chunk_cache) {
        void *next;
        memcpy(&next, loop->chunk_cache, sizeof next);
        ZK_FREE(loop->chunk_cache);
        loop->chunk_cache = next;
    }
    pthread_mutex_destroy(&loop->mutex);
    ZK_FREE(loop->events);
    ZK_FREE(loop->heap);
    ZK_FREE(loop->pfds);
    ZK_FREE(loop->pios);
    ZK_FREE(loop->rbuf);
    ZK_FREE(loop->cork);
    ZK_FREE(loop);
}

ZK_API uint64_t zk_loop_now(const zk_loop *loop) { return loop->now; }
ZK_API int zk_loop_fd(const zk_loop *loop) { return loop->fd; }
ZK_API void zk_loop_set_data(zk_loop *loop, void *data) { loop->data = data; }
ZK_API void *zk_loop_data(const zk_loop *loop) { return loop->data; }
ZK_API void zk_loop_stop(zk_loop *loop) { loop->stopped = 1; }

ZK_API int zk_loop_timeout(const zk_loop *loop) {
    uint64_t now, due;
    if (loop->work) return 0;
    if (!loop->heap_len) return -1;
    now = loop->virtual_clock ? loop->now : zk__monotonic_ms();
    due = loop->heap[0]->due;
    return due <= now ? 0 : (int)ZK__MIN(due - now, (uint64_t)0x7FFFFFFF);
}

ZK_API int zk_loop_step(zk_loop *loop, int timeout_ms) {
    int ran, wait = timeout_ms;
    if (!loop->virtual_clock) loop->now = zk__monotonic_ms();
    if (loop->virtual_clock && loop->heap_len) {
        wait = 0; /* virtual time never passes while waiting: look, then jump */
    } else if (wait != 0) {
        int t = zk_loop_timeout(loop);
        if (t >= 0 && (wait < 0 || t < wait)) wait = t;
    }
    ran = zk__poller_wait(loop, wait);
    if (ran < 0) return ran;
    if (!loop->virtual_clock) loop->now = zk__monotonic_ms();
    ran += zk__work_run(loop);
    if (loop->virtual_clock && ran == 0 && timeout_ms != 0 && loop->heap_len &&
        loop->heap[0]->due > loop->now)
        loop->now = loop->heap[0]->due;
    ran += zk__timers_run(loop, loop->now);
    ran += zk__work_run(loop);
    return ran;
}

ZK_API int zk_loop_run(zk_loop *loop) {
    loop->stopped = 0;
    while (!loop->stopped) {
        int rc = zk_loop_step(loop, -1);
        if (rc < 0) return rc;
    }
    return 0;
}

ZK_API void zk_loop_advance(zk_loop *loop, uint64_t ms) {
    uint64_t until = loop->now + ms;
    int rounds;
    if (!loop->virtual_clock) return;
    for (rounds = 0; rounds < 100000 && loop->work; rounds++) zk__work_run(loop);
    while (loop->heap_len && loop->heap[0]->due <= until) {
        zk__timers_run(loop, loop->heap[0]->due);
        for (rounds = 0; rounds < 100000 && loop->work; rounds++) zk__work_run(loop);
    }
    loop->now = until;
}
