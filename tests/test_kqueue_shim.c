/* Tests of the kqueue emulation in tests/kqueue/ (kqueue over epoll), which
   lets src/loop.c's kqueue backend run on Linux. Elsewhere the same tests
   run against the system's real kqueue, which keeps the emulation honest. */
#ifdef __linux__
#include "kqueue/kqueue_shim.c"
#else
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#endif
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int udata_a, udata_b, udata_c;

/* One change, no events. */
static int change(int kq, int fd, int filter, int flags, void *udata) {
    struct kevent ch;
    EV_SET(&ch, fd, filter, flags, 0, 0, udata);
    return kevent(kq, &ch, 1, NULL, 0, NULL);
}

/* Events ready now (or within ms). */
static int events_in(int kq, struct kevent *ev, int n, int ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    return kevent(kq, NULL, 0, ev, n, &ts);
}

static const struct kevent *find(const struct kevent *ev, int n, int fd, int filter) {
    int i;
    for (i = 0; i < n; i++)
        if (ev[i].ident == (uintptr_t)fd && ev[i].filter == filter) return &ev[i];
    return NULL;
}

static void nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

TEST(pipe_readable_after_write) {
    struct kevent ev[4];
    char buf[8];
    int kq = kqueue(), p[2];
    CHECK(kq >= 0);
    CHECK(pipe(p) == 0);
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_ADD, &udata_a), 0);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 0);
    CHECK_EQ_INT(write(p[1], "abc", 3), 3);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 1);
    CHECK_EQ_INT(ev[0].ident, p[0]);
    CHECK_EQ_INT(ev[0].filter, EVFILT_READ);
    CHECK(ev[0].udata == &udata_a);
    CHECK_EQ_INT(ev[0].data, 3);
    CHECK(!(ev[0].flags & (EV_EOF | EV_ERROR)));
    /* level-triggered: still there until read */
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 1);
    CHECK_EQ_INT(read(p[0], buf, sizeof buf), 3);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 0);
    /* the kqueue descriptor itself polls readable while events wait */
    {
        struct pollfd pf;
        pf.fd = kq;
        pf.events = POLLIN;
        CHECK_EQ_INT(poll(&pf, 1, 0), 0);
        CHECK_EQ_INT(write(p[1], "x", 1), 1);
        CHECK_EQ_INT(poll(&pf, 1, 0), 1);
        CHECK(pf.revents & POLLIN);
    }
    close(p[0]);
    close(p[1]);
    close(kq);
}

TEST(pipe_writable_when_empty) {
    static char chunk[4096];
    struct kevent ev[4];
    int kq = kqueue(), p[2];
    CHECK(pipe(p) == 0);
    nonblock(p[1]);
    CHECK_EQ_INT(change(kq, p[1], EVFILT_WRITE, EV_ADD, &udata_b), 0);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 1);
    CHECK_EQ_INT(ev[0].ident, p[1]);
    CHECK_EQ_INT(ev[0].filter, EVFILT_WRITE);
    CHECK(ev[0].udata == &udata_b);
    CHECK(!(ev[0].flags & EV_EOF));
    /* full: not writable; drained: writable again */
    while (write(p[1], chunk, sizeof chunk) > 0) {}
    while (write(p[1], chunk, 1) > 0) {}
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 0);
    nonblock(p[0]);
    while (read(p[0], chunk, sizeof chunk) > 0) {}
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 1);
    CHECK_EQ_INT(ev[0].filter, EVFILT_WRITE);
    close(p[0]);
    close(p[1]);
    close(kq);
}

TEST(delete_stops_events) {
    struct kevent ev[4], ch[2];
    int kq = kqueue(), p[2];
    CHECK(pipe(p) == 0);
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_ADD, &udata_a), 0);
    CHECK_EQ_INT(write(p[1], "abc", 3), 3);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 1);
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_DELETE, NULL), 0);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 0);
    /* deleting what is not registered: ENOENT */
    errno = 0;
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_DELETE, NULL), -1);
    CHECK_EQ_INT(errno, ENOENT);
    errno = 0;
    CHECK_EQ_INT(change(kq, p[1], EVFILT_WRITE, EV_DELETE, NULL), -1);
    CHECK_EQ_INT(errno, ENOENT);
    errno = 0;
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_ENABLE, NULL), -1);
    CHECK_EQ_INT(errno, ENOENT);
    /* one filter registered does not make the other one deletable */
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_ADD, &udata_a), 0);
    errno = 0;
    CHECK_EQ_INT(change(kq, p[0], EVFILT_WRITE, EV_DELETE, NULL), -1);
    CHECK_EQ_INT(errno, ENOENT);
    /* with room in the event list the error is an EV_ERROR entry instead,
       the later changes still apply, and nothing is waited for */
    EV_SET(&ch[0], p[0], EVFILT_WRITE, EV_DELETE, 0, 0, &udata_c);
    EV_SET(&ch[1], p[0], EVFILT_READ, EV_ADD, 0, 0, &udata_b);
    CHECK_EQ_INT(kevent(kq, ch, 2, ev, 4, NULL), 1);
    CHECK(ev[0].flags & EV_ERROR);
    CHECK_EQ_INT(ev[0].data, ENOENT);
    CHECK_EQ_INT(ev[0].ident, p[0]);
    CHECK_EQ_INT(ev[0].filter, EVFILT_WRITE);
    CHECK(ev[0].udata == &udata_c);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 1);
    CHECK(ev[0].udata == &udata_b);
    close(p[0]);
    close(p[1]);
    close(kq);
}

TEST(eof_when_the_other_end_closes) {
    struct kevent ev[4];
    const struct kevent *e;
    int kq = kqueue(), p[2], s[2];
    /* pipe: the writer goes away */
    CHECK(pipe(p) == 0);
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_ADD, &udata_a), 0);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 0);
    close(p[1]);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 1);
    CHECK_EQ_INT(ev[0].filter, EVFILT_READ);
    CHECK(ev[0].flags & EV_EOF);
    CHECK_EQ_INT(ev[0].data, 0);
    CHECK(ev[0].udata == &udata_a);
    close(p[0]);
    /* socket: the peer shuts down writing (EOF on read, can still write),
       then closes (EOF on both) */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
    CHECK_EQ_INT(change(kq, s[0], EVFILT_READ, EV_ADD, &udata_a), 0);
    CHECK_EQ_INT(change(kq, s[0], EVFILT_WRITE, EV_ADD, &udata_b), 0);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 1);
    CHECK(!(ev[0].flags & EV_EOF));
    CHECK_EQ_INT(write(s[1], "x", 1), 1);
    CHECK_EQ_INT(shutdown(s[1], SHUT_WR), 0);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 2);
    e = find(ev, 2, s[0], EVFILT_READ);
    CHECK(e && (e->flags & EV_EOF) && e->data == 1);
    e = find(ev, 2, s[0], EVFILT_WRITE);
    CHECK(e && !(e->flags & EV_EOF));
    close(s[1]);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 2);
    e = find(ev, 2, s[0], EVFILT_READ);
    CHECK(e && (e->flags & EV_EOF) && e->udata == &udata_a);
    e = find(ev, 2, s[0], EVFILT_WRITE);
    CHECK(e && (e->flags & EV_EOF) && e->udata == &udata_b);
    close(s[0]);
    close(kq);
}

TEST(two_filters_two_events) {
    struct kevent ev[4], ch[2];
    const struct kevent *r, *w;
    int kq = kqueue(), kq2 = kqueue(), s[2], got_read = 0, got_write = 0, i;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
    EV_SET(&ch[0], s[0], EVFILT_READ, EV_ADD, 0, 0, &udata_a);
    EV_SET(&ch[1], s[0], EVFILT_WRITE, EV_ADD, 0, 0, &udata_b);
    CHECK_EQ_INT(kevent(kq, ch, 2, NULL, 0, NULL), 0);
    CHECK_EQ_INT(write(s[1], "hello", 5), 5);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 2);
    r = find(ev, 2, s[0], EVFILT_READ);
    w = find(ev, 2, s[0], EVFILT_WRITE);
    CHECK(r && r->udata == &udata_a && r->data == 5);
    CHECK(w && w->udata == &udata_b);
    /* room for one at a time: both still come, one per call */
    for (i = 0; i < 2; i++) {
        CHECK_EQ_INT(events_in(kq, ev, 1, 0), 1);
        if (ev[0].filter == EVFILT_READ && ev[0].udata == &udata_a) got_read++;
        if (ev[0].filter == EVFILT_WRITE && ev[0].udata == &udata_b) got_write++;
    }
    CHECK_EQ_INT(got_read, 1);
    CHECK_EQ_INT(got_write, 1);
    /* EV_ADD again changes udata; deleting one filter leaves the other */
    CHECK_EQ_INT(change(kq, s[0], EVFILT_READ, EV_ADD, &udata_c), 0);
    CHECK_EQ_INT(change(kq, s[0], EVFILT_WRITE, EV_DELETE, NULL), 0);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 1);
    CHECK_EQ_INT(ev[0].filter, EVFILT_READ);
    CHECK(ev[0].udata == &udata_c);
    /* another kqueue watches the same descriptor on its own */
    CHECK_EQ_INT(change(kq2, s[0], EVFILT_WRITE, EV_ADD, &udata_a), 0);
    CHECK_EQ_INT(events_in(kq2, ev, 4, 0), 1);
    CHECK_EQ_INT(ev[0].filter, EVFILT_WRITE);
    CHECK(ev[0].udata == &udata_a);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 1);
    CHECK_EQ_INT(ev[0].filter, EVFILT_READ);
    close(s[0]);
    close(s[1]);
    close(kq);
    close(kq2);
}

TEST(disable_enable_oneshot) {
    struct kevent ev[4];
    int kq = kqueue(), p[2];
    CHECK(pipe(p) == 0);
    CHECK_EQ_INT(write(p[1], "a", 1), 1);
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_ADD | EV_DISABLE, &udata_a), 0);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 0);
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_ENABLE, NULL), 0);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 1);
    CHECK(ev[0].udata == &udata_a);
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_DISABLE, NULL), 0);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 0);
    /* EV_ADD on a disabled filter does not enable it */
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_ADD, &udata_b), 0);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 0);
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_DELETE, NULL), 0);
    /* one shot: reported once, then gone */
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_ADD | EV_ONESHOT, &udata_c), 0);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 1);
    CHECK(ev[0].udata == &udata_c);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 0);
    errno = 0;
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_DELETE, NULL), -1);
    CHECK_EQ_INT(errno, ENOENT);
    close(p[0]);
    close(p[1]);
    close(kq);
}

TEST(close_drops_registrations) {
    struct kevent ev[4];
    int kq = kqueue(), p[2], q[2], old;
    CHECK(pipe(p) == 0);
    old = p[0];
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_ADD, &udata_a), 0);
    CHECK_EQ_INT(change(kq, p[0], EVFILT_WRITE, EV_ADD, &udata_a), 0);
    close(p[0]);
    close(p[1]);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 0);
    errno = 0;
    CHECK_EQ_INT(change(kq, old, EVFILT_READ, EV_DELETE, NULL), -1);
    CHECK_EQ_INT(errno, EBADF);
    /* the same number, another file: nothing of the old one is left */
    CHECK(pipe(q) == 0);
    CHECK_EQ_INT(q[0], old);
    errno = 0;
    CHECK_EQ_INT(change(kq, q[0], EVFILT_READ, EV_DELETE, NULL), -1);
    CHECK_EQ_INT(errno, ENOENT);
    CHECK_EQ_INT(change(kq, q[0], EVFILT_READ, EV_ADD, &udata_b), 0);
    CHECK_EQ_INT(write(q[1], "z", 1), 1);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 1);
    CHECK_EQ_INT(ev[0].filter, EVFILT_READ);
    CHECK(ev[0].udata == &udata_b);
    close(q[0]);
    close(q[1]);
    /* again, but the first change on the new file (a socket now) adds the
       other filter: the old read filter must not come back with it */
    CHECK(pipe(p) == 0);
    old = p[0];
    CHECK_EQ_INT(change(kq, p[0], EVFILT_READ, EV_ADD, &udata_a), 0);
    close(p[0]);
    close(p[1]);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, q) == 0);
    CHECK_EQ_INT(q[0], old);
    CHECK_EQ_INT(write(q[1], "z", 1), 1);
    CHECK_EQ_INT(change(kq, q[0], EVFILT_WRITE, EV_ADD, &udata_c), 0);
    CHECK_EQ_INT(events_in(kq, ev, 4, 0), 1);
    CHECK_EQ_INT(ev[0].ident, q[0]);
    CHECK_EQ_INT(ev[0].filter, EVFILT_WRITE);
    CHECK(ev[0].udata == &udata_c);
    close(q[0]);
    close(q[1]);
    close(kq);
}

TEST(errors_and_timeout) {
    struct kevent ev[2];
    struct timespec t0, t1;
    long ms;
    int kq = kqueue(), p[2], fd;
    CHECK(pipe(p) == 0);
    fd = p[0];
    /* a descriptor that is not open: EBADF */
    errno = 0;
    CHECK_EQ_INT(change(kq, 100000, EVFILT_READ, EV_ADD, NULL), -1);
    CHECK_EQ_INT(errno, EBADF);
    /* not a kqueue */
    CHECK_EQ_INT(kevent(fd, NULL, 0, ev, 2, NULL), -1);
#ifdef __linux__
    /* the emulation refuses what it cannot do */
    errno = 0;
    CHECK_EQ_INT(change(kq, fd, EVFILT_READ, EV_ADD | EV_CLEAR, NULL), -1);
    CHECK_EQ_INT(errno, EINVAL);
    errno = 0;
    CHECK_EQ_INT(change(kq, fd, -3 /* EVFILT_AIO on BSD */, EV_ADD, NULL), -1);
    CHECK_EQ_INT(errno, EINVAL);
#endif
    /* a receipt for a change that worked: EV_ERROR with data 0 */
    {
        struct kevent ch;
        EV_SET(&ch, fd, EVFILT_READ, EV_ADD | EV_RECEIPT, 0, 0, &udata_a);
        CHECK_EQ_INT(kevent(kq, &ch, 1, ev, 2, NULL), 1);
        CHECK(ev[0].flags & EV_ERROR);
        CHECK_EQ_INT(ev[0].data, 0);
        CHECK_EQ_INT(change(kq, fd, EVFILT_READ, EV_DELETE, NULL), 0);
    }
    /* nothing registered: the wait lasts its time and returns 0 */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_EQ_INT(events_in(kq, ev, 2, 30), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    CHECK(ms >= 29);
    CHECK(ms < 2000);
    close(p[0]);
    close(p[1]);
    close(kq);
}

/* The change list and the event list are read and written only within
   their counts: both sit against a guard page here. */
TEST(lists_stay_in_bounds) {
    struct kevent ch[2];
    guard_buf gc, ge;
    struct kevent *ev;
    int kq = kqueue(), s[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
    EV_SET(&ch[0], s[0], EVFILT_READ, EV_ADD, 0, 0, &udata_a);
    EV_SET(&ch[1], s[0], EVFILT_WRITE, EV_ADD, 0, 0, &udata_b);
    gc = guard_alloc(ch, sizeof ch);
    ge = guard_alloc(ch, sizeof ch[0]);
    ev = (struct kevent *)(void *)ge.data;
    CHECK_EQ_INT(kevent(kq, (const struct kevent *)(void *)gc.data, 2, NULL, 0, NULL), 0);
    CHECK_EQ_INT(write(s[1], "x", 1), 1);
    CHECK_EQ_INT(events_in(kq, ev, 1, 0), 1);
    CHECK_EQ_INT(events_in(kq, ev, 1, 0), 1);
    guard_free(&gc);
    guard_free(&ge);
    close(s[0]);
    close(s[1]);
    close(kq);
}

typedef struct waiter {
    int kq, rc;
    struct kevent ev;
} waiter;

static void *wait_forever(void *arg) {
    waiter *w = (waiter *)arg;
    w->rc = kevent(w->kq, NULL, 0, &w->ev, 1, NULL);
    return NULL;
}

TEST(wait_wakes_from_another_thread) {
    pthread_t th;
    waiter w;
    int p[2];
    struct timespec pause;
    memset(&w, 0, sizeof w);
    w.kq = kqueue();
    CHECK(pipe(p) == 0);
    CHECK_EQ_INT(change(w.kq, p[0], EVFILT_READ, EV_ADD, &udata_b), 0);
    CHECK_EQ_INT(pthread_create(&th, NULL, wait_forever, &w), 0);
    pause.tv_sec = 0;
    pause.tv_nsec = 20000000L;
    nanosleep(&pause, NULL);
    CHECK_EQ_INT(write(p[1], "w", 1), 1);
    pthread_join(th, NULL);
    CHECK_EQ_INT(w.rc, 1);
    CHECK(w.ev.udata == &udata_b);
    CHECK_EQ_INT(w.ev.ident, p[0]);
    close(p[0]);
    close(p[1]);
    close(w.kq);
}

int main(void) {
    RUN(pipe_readable_after_write);
    RUN(pipe_writable_when_empty);
    RUN(delete_stops_events);
    RUN(eof_when_the_other_end_closes);
    RUN(two_filters_two_events);
    RUN(disable_enable_oneshot);
    RUN(close_drops_registrations);
    RUN(errors_and_timeout);
    RUN(lists_stay_in_bounds);
    RUN(wait_wakes_from_another_thread);
    return test_summary();
}
