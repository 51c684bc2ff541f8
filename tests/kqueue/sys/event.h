/* sys/event.h - the part of BSD kqueue that src/loop.c uses, emulated over
   epoll so the kqueue backend can run on Linux (tests only; see
   tests/kqueue/kqueue_shim.c for the implementation and its limits).

   Put tests/kqueue on the include path (-Itests/kqueue) and compile
   tests/kqueue/kqueue_shim.c with the program. Supported:
     filters  EVFILT_READ, EVFILT_WRITE (level-triggered, independent per
              (fd, filter), each with its own udata)
     flags    EV_ADD, EV_DELETE, EV_ENABLE, EV_DISABLE, EV_ONESHOT,
              EV_DISPATCH, EV_RECEIPT; returned: EV_EOF, EV_ERROR
   EV_CLEAR is declared but refused (EINVAL): epoll cannot make one filter
   of a descriptor edge-triggered and leave the other level-triggered. */
#ifndef ZK_KQUEUE_SHIM_SYS_EVENT_H
#define ZK_KQUEUE_SHIM_SYS_EVENT_H

#if defined(__cplusplus) && defined(__GNUC__)
/* as the real one: in C++ the function kevent hides struct kevent's
   constructor, which g++ -Wshadow reports outside system headers */
#pragma GCC system_header
#endif

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct timespec;

struct kevent {
    uintptr_t ident;        /* the descriptor */
    short filter;           /* EVFILT_* */
    unsigned short flags;   /* EV_* */
    unsigned int fflags;    /* filter flags: always 0 here */
    int64_t data;           /* EVFILT_READ: bytes readable when known, else 0;
                               EV_ERROR: the errno of the failed change */
    void *udata;            /* returned as given */
};

#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)

/* actions and options, in changes */
#define EV_ADD 0x0001          /* add, or modify udata of, a filter */
#define EV_DELETE 0x0002       /* remove it (ENOENT when it is not there) */
#define EV_ENABLE 0x0004       /* report it again */
#define EV_DISABLE 0x0008      /* keep it, but report nothing */
#define EV_ONESHOT 0x0010      /* removed once reported */
#define EV_CLEAR 0x0020        /* refused by this emulation (EINVAL) */
#define EV_RECEIPT 0x0040      /* always report the change as an EV_ERROR entry */
#define EV_DISPATCH 0x0080     /* disabled once reported */

/* returned in events */
#define EV_ERROR 0x4000        /* a change failed: data holds the errno */
#define EV_EOF 0x8000          /* the peer shut down or hung up */

/* Fills one struct kevent; kevp is evaluated once. */
#define EV_SET(kevp, a, b, c, d, e, f)                                        \
    do {                                                                      \
        struct kevent *ev_set_p_ = (kevp);                                    \
        ev_set_p_->ident = (uintptr_t)(a);                                    \
        ev_set_p_->filter = (short)(b);                                       \
        ev_set_p_->flags = (unsigned short)(c);                               \
        ev_set_p_->fflags = (unsigned int)(d);                                \
        ev_set_p_->data = (int64_t)(e);                                       \
        ev_set_p_->udata = (void *)(f);                                       \
    } while (0)

/* A new queue: a descriptor to close with close(). -1 and errno on error. */
int kqueue(void);

/* Applies nchanges changes in order, then waits up to *timeout (NULL: no
   limit) for at most nevents events. Returns the number of events, 0 on
   timeout, or -1 with errno. A change that fails is reported as an entry
   with EV_ERROR and data = errno while there is room in events (and then
   nothing is waited for); with no room left the call fails with that errno,
   the changes before it applied and the ones after it not. */
int kevent(int kq, const struct kevent *changes, int nchanges, struct kevent *events,
           int nevents, const struct timespec *timeout);

#ifdef __cplusplus
}
#endif

#endif
