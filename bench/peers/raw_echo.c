/* raw_echo: the syscall floor of a WebSocket echo server.

   cc -std=c99 -O2 -I. bench/peers/raw_echo.c -o build/raw_echo
   build/raw_echo PORT

   As little as an echo can do: level-triggered epoll, one read per ready
   socket (more only when the read filled the buffer), every frame of that
   read echoed straight into one output buffer (header written, payload
   unmasked eight bytes at a time on the copy), one write. Frames are echoed
   one for one (fragments stay fragments); pings get pongs, a close gets its
   close back. No UTF-8 check, no limits, no timers: a floor, not a server.
   The upgrade uses zocket.h's HTTP parser and accept-key helpers; the frame
   path is its own. Binds 127.0.0.1 only; prints "listening on
   ws://127.0.0.1:PORT". */
#define _GNU_SOURCE
#define ZOCKET_IMPLEMENTATION
#include "zocket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* One connection: about 40 bytes while idle, in a table indexed by fd. */
typedef struct rconn {
    unsigned char *left;    /* unparsed input: a partial head or frame */
    size_t left_len;
    unsigned char *pending; /* output the socket did not take */
    size_t pending_len;
    int open;               /* upgraded */
} rconn;

static rconn *table;
static size_t table_len;
static unsigned char *in_buf, *out_buf;
static size_t in_cap, out_cap;
static int epfd;
static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static void *grow(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "raw_echo: out of memory\n");
        exit(1);
    }
    return q;
}

static void drop(int fd) {
    rconn *c = &table[fd];
    free(c->left);
    free(c->pending);
    memset(c, 0, sizeof *c);
    close(fd); /* also leaves the epoll set */
}

/* Writes out[0..len); keeps what the socket did not take. 0 or -1. */
static int send_out(int fd, const unsigned char *out, size_t len) {
    rconn *c = &table[fd];
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, out + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct epoll_event ev;
            c->pending = (unsigned char *)grow(NULL, len - off);
            memcpy(c->pending, out + off, len - off);
            c->pending_len = len - off;
            memset(&ev, 0, sizeof ev);
            ev.events = EPOLLOUT; /* stop reading until it drains */
            ev.data.fd = fd;
            epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
            return 0;
        } else {
            return -1;
        }
    }
    return 0;
}

static void unmask_copy(unsigned char *dst, const unsigned char *src, size_t len, const unsigned char key[4]) {
    uint64_t k8;
    uint32_t k4;
    size_t i = 0;
    memcpy(&k4, key, 4);
    k8 = (uint64_t)k4 << 32 | k4;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k8;
        memcpy(dst + i, &w, 8);
    }
    for (; i < len; i++) dst[i] = src[i] ^ key[i & 3];
}

/* Echoes every whole frame in buf[0..len); returns bytes consumed, or -1
   to drop the connection. *out_len grows with what is to be written. */
static long echo_frames(unsigned char *buf, size_t len, size_t *out_len, int *closing) {
    size_t pos = 0;
    while (len - pos >= 2) {
        unsigned char *f = buf + pos, *o;
        size_t hlen = 2, plen = f[1] & 0x7F, avail = len - pos, ohlen;
        int op = f[0] & 0x0F;
        if (!(f[1] & 0x80)) return -1; /* clients must mask */
        if (plen == 126) {
            hlen = 4;
            if (avail < hlen) break;
            plen = (size_t)f[2] << 8 | f[3];
        } else if (plen == 127) {
            int k;
            hlen = 10;
            if (avail < hlen) break;
            for (plen = 0, k = 0; k < 8; k++) plen = plen << 8 | f[2 + k];
            if (plen > ((size_t)1 << 30)) return -1;
        }
        hlen += 4;
        if (avail < hlen + plen) break;
        if (*out_len + plen + 10 > out_cap) {
            out_cap = (*out_len + plen + 10) * 2;
            out_buf = (unsigned char *)grow(out_buf, out_cap);
        }
        o = out_buf + *out_len;
        if (op == 0x9) op = 0xA;                      /* ping: answer with a pong */
        else if (op == 0xA) { pos += hlen + plen; continue; } /* pong: nothing */
        o[0] = (unsigned char)((f[0] & 0x80) | op);
        if (plen < 126) {
            o[1] = (unsigned char)plen;
            ohlen = 2;
        } else if (plen < 65536) {
            o[1] = 126;
            o[2] = (unsigned char)(plen >> 8);
            o[3] = (unsigned char)plen;
            ohlen = 4;
        } else {
            int k;
            o[1] = 127;
            for (k = 0; k < 8; k++) o[2 + k] = (unsigned char)((uint64_t)plen >> (56 - 8 * k));
            ohlen = 10;
        }
        unmask_copy(o + ohlen, f + hlen, plen, f + hlen - 4);
        *out_len += ohlen + plen;
        pos += hlen + plen;
        if (op == 0x8) { /* close: echo it and stop */
            *closing = 1;
            return (long)len;
        }
    }
    return (long)pos;
}

/* The upgrade: parse the head, answer 101 (or drop a bad request). */
static long handshake(int fd, unsigned char *buf, size_t len) {
    zk_http_request req;
    zk_ws_upgrade up;
    char answer[512];
    int n = zk_http_parse_request((const char *)buf, len, 0, &req, NULL), m;
    if (n == ZK_EAGAIN) return 0;
    if (n < 0 || zk_ws_upgrade_check(&req, NULL, 0, &up) != ZK_OK) return -1;
    m = zk_ws_upgrade_accept(answer, sizeof answer, &up, NULL, 0);
    if (m < 0 || send_out(fd, (const unsigned char *)answer, (size_t)m) < 0) return -1;
    table[fd].open = 1;
    return n;
}

static void on_readable(int fd) {
    rconn *c = &table[fd];
    for (;;) {
        size_t have = c->left_len, out_len = 0;
        ssize_t n;
        long used = 0;
        int closing = 0;
        if (in_cap < have + 65536) {
            in_cap = have + 65536;
            in_buf = (unsigned char *)grow(in_buf, in_cap);
        }
        if (have) memcpy(in_buf, c->left, have);
        n = recv(fd, in_buf + have, in_cap - have, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            drop(fd);
            return;
        }
        have += (size_t)n;
        if (!c->open) {
            used = handshake(fd, in_buf, have);
            if (used < 0) { drop(fd); return; }
        }
        if (c->open) {
            long more = echo_frames(in_buf + used, have - (size_t)used, &out_len, &closing);
            if (more < 0) { drop(fd); return; }
            used += more;
            if (out_len && send_out(fd, out_buf, out_len) < 0) { drop(fd); return; }
        }
        if (closing) { drop(fd); return; }
        if ((size_t)used < have) {
            if (have - (size_t)used > c->left_len) c->left = (unsigned char *)grow(c->left, have - (size_t)used);
            memcpy(c->left, in_buf + used, have - (size_t)used);
        } else if (c->left) { /* nothing left over: an idle connection holds no buffer */
            free(c->left);
            c->left = NULL;
        }
        c->left_len = have - (size_t)used;
        if (c->pending_len || (size_t)n < in_cap - (have - (size_t)n)) return;
    }
}

static void on_writable(int fd) {
    rconn *c = &table[fd];
    unsigned char *p = c->pending;
    size_t len = c->pending_len;
    struct epoll_event ev;
    c->pending = NULL;
    c->pending_len = 0;
    if (send_out(fd, p, len) < 0) {
        free(p);
        drop(fd);
        return;
    }
    free(p);
    if (!c->pending_len) {
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
    }
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 9005, lfd, one = 1;
    struct sockaddr_in a;
    struct epoll_event ev, evs[256];
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0) {
        fprintf(stderr, "raw_echo: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    printf("listening on ws://127.0.0.1:%d\n", port);
    fflush(stdout);

    while (!stopping) {
        int n = epoll_wait(epfd, evs, 256, 1000), i;
        for (i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int cfd, k;
                for (k = 0; k < 64 && (cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0; k++) {
                    if ((size_t)cfd >= table_len) {
                        size_t len = table_len ? table_len : 1024;
                        while (len <= (size_t)cfd) len *= 2;
                        table = (rconn *)grow(table, len * sizeof *table);
                        memset(table + table_len, 0, (len - table_len) * sizeof *table);
                        table_len = len;
                    }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    ev.events = EPOLLIN;
                    ev.data.fd = cfd;
                    epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &ev);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT) on_writable(fd);
            else if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(fd);
        }
    }
    return 0;
}
