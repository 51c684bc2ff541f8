/* kqueue_shim.c - kqueue()/kevent() for Linux over epoll, enough of them to
   run zocket.h's kqueue backend (src/loop.c) in tests. Not for production.

   Model. kqueue() is an epoll descriptor (close it with close()). For each
   (kq, fd) a record holds the two filters, EVFILT_READ and EVFILT_WRITE,
   each registered or not, enabled or not, with its own udata. The epoll
   registration of fd asks for the union of the enabled filters (level-
   triggered); a record whose filters are all disabled stays registered with
   an empty EPOLLONESHOT mask, so it keeps its epoll entry but wakes no one.
   kevent() applies the changes, then turns each epoll result into one event
   per ready, enabled filter (read first, unless the write event of that
   descriptor was cut off last time for lack of room), never more than
   nevents. An event that does not fit is not lost: the filter is level-
   triggered and is reported again by the next call.

   As in kqueue:
     - EV_DELETE, EV_ENABLE or EV_DISABLE of a filter that is not registered
       fails with ENOENT; a descriptor that is not open fails with EBADF.
     - A failed change goes into the event list as EV_ERROR with data =
       errno while there is room (the call then returns those entries
       without waiting); with no room the call fails with errno set, the
       changes before it applied and the ones after it not.
     - Closing a descriptor drops its filters. epoll drops the descriptor
       from the set when its file is closed; the record left here is found
       stale by the next change on that number (epoll answers ENOENT) and
       dropped then, and events of the old file are told apart from those
       of a new file on the same number by a generation tag.
     - EV_EOF: EVFILT_READ when the peer shut down its writing side or hung
       up (EPOLLRDHUP, EPOLLHUP) or the socket has an error (EPOLLERR);
       EVFILT_WRITE when writing is no longer possible (EPOLLHUP, EPOLLERR).
       A filter also fires on these alone, as kqueue's do.
     - data: bytes readable (FIONREAD) for EVFILT_READ when the descriptor
       tells, else 0; always 0 for EVFILT_WRITE. fflags: always 0.
   Not as in kqueue: no other filter; EV_CLEAR is refused with EINVAL;
   regular files fail with EPERM (epoll cannot watch them); the kqueue
   descriptor is not dropped on fork; records of a kqueue that was closed
   stay in memory until kqueue() returns the same number again. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "sys/event.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define ZKQ_NFILT 2 /* 0: EVFILT_READ, 1: EVFILT_WRITE */
#define ZKQ_BATCH 256 /* epoll results taken per wait */

typedef struct zkq_filt {
    unsigned char on;      /* registered */
    unsigned char enabled;
    unsigned short keep;   /* EV_ONESHOT / EV_DISPATCH as given; returned in flags */
    void *udata;
} zkq_filt;

typedef struct zkq_rec {
    uint32_t gen;          /* 0: no record for this fd */
    unsigned char first;   /* filter to report first (fairness when cut off) */
    zkq_filt f[ZKQ_NFILT];
} zkq_rec;

typedef struct zkq_queue {
    int kq;
    zkq_rec *recs;         /* indexed by fd */
    size_t nrecs;
} zkq_queue;

/* Every queue, behind one lock: kevent may be called from several threads
   (a loop's thread waits while another registers). The lock is never held
   while waiting. */
static pthread_mutex_t zkq_lock = PTHREAD_MUTEX_INITIALIZER;
static zkq_queue *zkq_queues;
static size_t zkq_nqueues, zkq_queues_cap;
static uint32_t zkq_next_gen;

static zkq_queue *zkq_find(int kq) {
    size_t i;
    for (i = 0; i < zkq_nqueues; i++)
        if (zkq_queues[i].kq == kq) return &zkq_queues[i];
    return NULL;
}

static zkq_rec *zkq_lookup(const zkq_queue *q, int fd) {
    if (fd < 0 || (size_t)fd >= q->nrecs || !q->recs[fd].gen) return NULL;
    return &q->recs[fd];
}

/* The slot for fd, grown into if needed (NULL: out of memory). */
static zkq_rec *zkq_slot(zkq_queue *q, int fd) {
    if ((size_t)fd >= q->nrecs) {
        size_t n = q->nrecs ? q->nrecs : 64;
        zkq_rec *r;
        while (n <= (size_t)fd) n *= 2;
        r = (zkq_rec *)realloc(q->recs, n * sizeof *r);
        if (!r) return NULL;
        memset(r + q->nrecs, 0, (n - q->nrecs) * sizeof *r);
        q->recs = r;
        q->nrecs = n;
    }
    return &q->recs[fd];
}

static uint32_t zkq_gen(void) {
    if (++zkq_next_gen == 0) zkq_next_gen = 1;
    return zkq_next_gen;
}

static uint32_t zkq_mask(const zkq_rec *r) {
    uint32_t m = 0;
    if (r->f[0].on && r->f[0].enabled) m |= EPOLLIN | EPOLLRDHUP;
    if (r->f[1].on && r->f[1].enabled) m |= EPOLLOUT;
    return m ? m : (uint32_t)EPOLLONESHOT; /* parked: registered, silent */
}

/* Makes epoll match the record of fd. registered: epoll has fd (as far as
   we know). Returns 0 or an errno; the record is dropped when no filter is
   left. */
static int zkq_sync(const zkq_queue *q, int fd, zkq_rec *r, int registered) {
    struct epoll_event ev;
    if (!r->f[0].on && !r->f[1].on) {
        r->gen = 0;
        if (registered && epoll_ctl(q->kq, EPOLL_CTL_DEL, fd, NULL) < 0) return errno;
        return 0;
    }
    memset(&ev, 0, sizeof ev);
    ev.events = zkq_mask(r);
    ev.data.u64 = (uint64_t)r->gen << 32 | (uint32_t)fd;
    if (epoll_ctl(q->kq, registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) == 0) return 0;
    /* epoll still has this file under this number (a record we lost) */
    if (!registered && errno == EEXIST && epoll_ctl(q->kq, EPOLL_CTL_MOD, fd, &ev) == 0) return 0;
    return errno;
}

/* Applies one change. Returns 0 or an errno. */
static int zkq_apply(zkq_queue *q, const struct kevent *kev) {
    int fd, i, attempt, flags = kev->flags;
    if (kev->filter == EVFILT_READ) i = 0;
    else if (kev->filter == EVFILT_WRITE) i = 1;
    else return EINVAL;
    if (flags & EV_CLEAR) return EINVAL;
    if (kev->ident > (uintptr_t)INT_MAX) return EBADF;
    fd = (int)kev->ident;
    if (fcntl(fd, F_GETFD) < 0) {
        /* closed: its filters went with it */
        zkq_rec *r = zkq_lookup(q, fd);
        if (r) memset(r, 0, sizeof *r);
        return EBADF;
    }
    for (attempt = 0; attempt < 2; attempt++) {
        zkq_rec *r = zkq_lookup(q, fd), old;
        int existed = r != NULL, err;
        zkq_filt *f;
        if (!(flags & EV_ADD) && (!r || !r->f[i].on)) return ENOENT;
        if (!r) {
            r = zkq_slot(q, fd);
            if (!r) return ENOMEM;
            memset(r, 0, sizeof *r);
            r->gen = zkq_gen();
        }
        old = *r;
        f = &r->f[i];
        if (flags & EV_DELETE) {
            memset(f, 0, sizeof *f);
        } else {
            if (flags & EV_ADD) {
                if (!f->on) f->enabled = 1;
                f->on = 1;
                f->udata = kev->udata;
                f->keep = (unsigned short)(flags & (EV_ONESHOT | EV_DISPATCH));
            }
            if (flags & EV_DISABLE) f->enabled = 0;
            else if (flags & EV_ENABLE) f->enabled = 1;
        }
        err = zkq_sync(q, fd, r, existed);
        if (!err) return 0;
        if (existed && err == ENOENT) {
            /* epoll no longer knows fd: the file we recorded was closed and
               this number is another one now. Forget the old filters and
               apply the change afresh, as kqueue would. */
            memset(r, 0, sizeof *r);
            continue;
        }
        if (existed) *r = old;
        else memset(r, 0, sizeof *r);
        return err;
    }
    return ENOENT;
}

static int64_t zkq_readable(int fd) {
    int n = 0;
    return ioctl(fd, FIONREAD, &n) == 0 && n > 0 ? (int64_t)n : 0;
}

/* Turns epoll results into at most nevents kevents. Called locked. */
static int zkq_collect(zkq_queue *q, const struct epoll_event *ev, int got,
                       struct kevent *out, int nevents) {
    int n = 0, k, j;
    for (k = 0; k < got && n < nevents; k++) {
        int fd = (int)(uint32_t)(ev[k].data.u64 & 0xFFFFFFFFu);
        uint32_t re = ev[k].events, gen = (uint32_t)(ev[k].data.u64 >> 32);
        zkq_rec *r = zkq_lookup(q, fd);
        int changed = 0, cut = -1;
        if (!r || r->gen != gen) continue; /* a file closed since */
        for (j = 0; j < ZKQ_NFILT; j++) {
            int i = (r->first + j) % ZKQ_NFILT;
            zkq_filt *f = &r->f[i];
            uint32_t ready = i == 0 ? EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR
                                    : EPOLLOUT | EPOLLHUP | EPOLLERR;
            uint32_t eof = i == 0 ? EPOLLRDHUP | EPOLLHUP | EPOLLERR : EPOLLHUP | EPOLLERR;
            struct kevent *e;
            if (!f->on || !f->enabled || !(re & ready)) continue;
            if (n == nevents) {
                cut = i;
                break;
            }
            e = &out[n++];
            e->ident = (uintptr_t)fd;
            e->filter = (short)(i == 0 ? EVFILT_READ : EVFILT_WRITE);
            e->flags = (unsigned short)(f->keep | (re & eof ? EV_EOF : 0));
            e->fflags = 0;
            e->data = i == 0 ? zkq_readable(fd) : 0;
            e->udata = f->udata;
            if (f->keep & EV_ONESHOT) {
                memset(f, 0, sizeof *f);
                changed = 1;
            } else if (f->keep & EV_DISPATCH) {
                f->enabled = 0;
                changed = 1;
            }
        }
        r->first = (unsigned char)(cut < 0 ? 0 : cut);
        if (changed) zkq_sync(q, fd, r, 1);
    }
    return n;
}

int kqueue(void) {
    int fd = epoll_create1(0);
    zkq_queue *q;
    if (fd < 0) return -1;
    pthread_mutex_lock(&zkq_lock);
    q = zkq_find(fd);
    if (q) {
        /* the number of a kqueue closed earlier: forget its records */
        free(q->recs);
    } else {
        if (zkq_nqueues == zkq_queues_cap) {
            size_t cap = zkq_queues_cap ? zkq_queues_cap * 2 : 8;
            zkq_queue *p = (zkq_queue *)realloc(zkq_queues, cap * sizeof *p);
            if (!p) {
                pthread_mutex_unlock(&zkq_lock);
                close(fd);
                errno = ENOMEM;
                return -1;
            }
            zkq_queues = p;
            zkq_queues_cap = cap;
        }
        q = &zkq_queues[zkq_nqueues++];
    }
    q->kq = fd;
    q->recs = NULL;
    q->nrecs = 0;
    pthread_mutex_unlock(&zkq_lock);
    return fd;
}

static int zkq_fail(int err) {
    errno = err;
    return -1;
}

/* Milliseconds, rounded up so that a short wait is not a busy one. */
static int zkq_ms(long long sec, long nsec) {
    long long ms = nsec / 1000000L + (nsec % 1000000L != 0);
    if (sec >= INT_MAX / 1000) return INT_MAX;
    ms += sec * 1000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

int kevent(int kq, const struct kevent *changes, int nchanges, struct kevent *events,
           int nevents, const struct timespec *timeout) {
    zkq_queue *q;
    struct timespec start;
    int i, nerr = 0, wait_ms = -1;
    if (nchanges < 0 || nevents < 0) return zkq_fail(EINVAL);
    if ((nchanges && !changes) || (nevents && !events)) return zkq_fail(EFAULT);
    if (timeout) {
        if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000L)
            return zkq_fail(EINVAL);
        wait_ms = zkq_ms((long long)timeout->tv_sec, timeout->tv_nsec);
    }

    pthread_mutex_lock(&zkq_lock);
    q = zkq_find(kq);
    if (!q) {
        pthread_mutex_unlock(&zkq_lock);
        return zkq_fail(EBADF);
    }
    for (i = 0; i < nchanges; i++) {
        int err = zkq_apply(q, &changes[i]);
        if (!err && !(changes[i].flags & EV_RECEIPT)) continue;
        if (nerr == nevents) {
            if (!err) continue; /* a receipt with no room for it */
            pthread_mutex_unlock(&zkq_lock);
            return zkq_fail(err);
        }
        events[nerr] = changes[i];
        events[nerr].flags = EV_ERROR;
        events[nerr].data = err;
        nerr++;
    }
    pthread_mutex_unlock(&zkq_lock);
    if (nerr) return nerr;
    if (nevents == 0) return 0;

    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct epoll_event ev[ZKQ_BATCH];
        int got, n = 0;
        got = epoll_wait(kq, ev, nevents < ZKQ_BATCH ? nevents : ZKQ_BATCH, wait_ms);
        if (got < 0) return -1;
        if (got > 0) {
            pthread_mutex_lock(&zkq_lock);
            q = zkq_find(kq);
            if (q) n = zkq_collect(q, ev, got, events, nevents);
            pthread_mutex_unlock(&zkq_lock);
        }
        if (n > 0 || got == 0 || wait_ms == 0) return n;
        /* only stale or filtered results: wait out the rest of the time */
        if (timeout) {
            struct timespec now;
            long long left_ns;
            clock_gettime(CLOCK_MONOTONIC, &now);
            left_ns = ((long long)timeout->tv_sec - (now.tv_sec - start.tv_sec)) * 1000000000LL +
                      (timeout->tv_nsec - (now.tv_nsec - start.tv_nsec));
            if (left_ns <= 0) return 0;
            wait_ms = zkq_ms(left_ns / 1000000000LL, (long)(left_ns % 1000000000LL));
        }
    }
}
