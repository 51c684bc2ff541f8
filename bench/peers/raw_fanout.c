/* raw_fanout: the syscall floor of room fan-out, for bench/run_fanout.sh.

   cc -std=c99 -O2 -I. bench/peers/raw_fanout.c -o build/raw_fanout
   build/raw_fanout PORT

   A minimal epoll loop that writes each subscriber once per pass: every
   ready socket read once (more only when the read filled the buffer), each
   {"type":"room.send","payload":P} appends one frame
   {"type":"room.message","payload":P} to the output buffer of every member
   of the one room, and after the pass's events each connection with output
   gets one write. {"type":"room.join","rpcId":I} joins and is answered
   {"type":"__rpc_res","payload":null,"rpcId":I}. No JSON parser (P is the
   bytes after "payload": up to the envelope's closing brace: the load
   generator sends payload last), no UTF-8 check, no limits: a floor, not a
   server. The upgrade uses zocket.h's HTTP parser and accept-key helpers.
   Binds 127.0.0.1 only; prints "listening on ws://127.0.0.1:PORT". */
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

typedef struct rconn {
    unsigned char *left;  /* unparsed input: a partial head or frame */
    size_t left_len;
    unsigned char *out;   /* output not yet written */
    size_t out_len, out_cap;
    int open, member, dirty;
} rconn;

static rconn *table;
static size_t table_len;
static int *members, *dirty;
static size_t member_count, member_cap, dirty_count, dirty_cap;
static unsigned char *in_buf;
static size_t in_cap;
static int epfd;
static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static void *grow(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "raw_fanout: out of memory\n");
        exit(1);
    }
    return q;
}

static void drop(int fd) {
    rconn *c = &table[fd];
    size_t i;
    if (c->member)
        for (i = 0; i < member_count; i++)
            if (members[i] == fd) {
                members[i] = members[--member_count];
                break;
            }
    free(c->left);
    free(c->out);
    memset(c, 0, sizeof *c);
    close(fd);
}

/* Appends an unmasked text frame of a + b to fd's output. */
static void queue_frame(int fd, const void *a, size_t alen, const void *b, size_t blen, const void *tail,
                        size_t tlen) {
    rconn *c = &table[fd];
    size_t len = alen + blen + tlen, need = c->out_len + len + 4;
    unsigned char *o;
    if (need > c->out_cap) {
        c->out_cap = need * 2 < 4096 ? 4096 : need * 2;
        c->out = (unsigned char *)grow(c->out, c->out_cap);
    }
    o = c->out + c->out_len;
    o[0] = 0x81;
    if (len < 126) {
        o[1] = (unsigned char)len;
        o += 2;
    } else {
        o[1] = 126;
        o[2] = (unsigned char)(len >> 8);
        o[3] = (unsigned char)len;
        o += 4;
    }
    memcpy(o, a, alen);
    memcpy(o + alen, b, blen);
    memcpy(o + alen + blen, tail, tlen);
    c->out_len = (size_t)(o + len - c->out);
    if (!c->dirty) {
        c->dirty = 1;
        if (dirty_count == dirty_cap) {
            dirty_cap = dirty_cap ? 2 * dirty_cap : 256;
            dirty = (int *)grow(dirty, dirty_cap * sizeof *dirty);
        }
        dirty[dirty_count++] = fd;
    }
}

static void on_text(int fd, unsigned char *m, size_t len) {
    static const char msg_head[] = "{\"type\":\"room.message\",\"payload\":";
    static const char res_head[] = "{\"type\":\"__rpc_res\",\"payload\":null,\"rpcId\":";
    unsigned char *p;
    size_t i;
    if (len < 2 || m[len - 1] != '}') return;
    if (memmem(m, len, "\"room.send\"", 11) && (p = (unsigned char *)memmem(m, len, "\"payload\":", 10))) {
        p += 10;
        for (i = 0; i < member_count; i++)
            queue_frame(members[i], msg_head, sizeof msg_head - 1, p, (size_t)(m + len - 1 - p), "}", 1);
    } else if (memmem(m, len, "\"room.join\"", 11) && (p = (unsigned char *)memmem(m, len, "\"rpcId\":", 8))) {
        p += 8;
        if (!table[fd].member) {
            if (member_count == member_cap) {
                member_cap = member_cap ? 2 * member_cap : 64;
                members = (int *)grow(members, member_cap * sizeof *members);
            }
            members[member_count++] = fd;
            table[fd].member = 1;
        }
        queue_frame(fd, res_head, sizeof res_head - 1, p, (size_t)(m + len - 1 - p), "}", 1);
    }
}

/* Handles every whole frame in buf[0..len); returns bytes consumed or -1. */
static long frames(int fd, unsigned char *buf, size_t len) {
    size_t pos = 0;
    while (len - pos >= 2) {
        unsigned char *f = buf + pos, *key, *pl;
        size_t hlen = 2, plen = f[1] & 0x7F, avail = len - pos, i;
        int op = f[0] & 0x0F;
        if (!(f[1] & 0x80)) return -1;
        if (plen == 126) {
            hlen = 4;
            if (avail < hlen) break;
            plen = (size_t)f[2] << 8 | f[3];
        } else if (plen == 127) {
            return -1; /* nothing this big here */
        }
        hlen += 4;
        if (avail < hlen + plen) break;
        key = f + hlen - 4;
        pl = f + hlen;
        for (i = 0; i < plen; i++) pl[i] ^= key[i & 3];
        if (op == 0x8) return -1;
        if (op == 0x1 && (f[0] & 0x80)) on_text(fd, pl, plen);
        pos += hlen + plen;
    }
    return (long)pos;
}

static long handshake(int fd, unsigned char *buf, size_t len) {
    zk_http_request req;
    zk_ws_upgrade up;
    char answer[512];
    int n = zk_http_parse_request((const char *)buf, len, 0, &req, NULL), m;
    if (n == ZK_EAGAIN) return 0;
    if (n < 0 || zk_ws_upgrade_check(&req, NULL, 0, &up) != ZK_OK) return -1;
    m = zk_ws_upgrade_accept(answer, sizeof answer, &up, NULL, 0);
    if (m < 0 || send(fd, answer, (size_t)m, MSG_NOSIGNAL) != m) return -1;
    table[fd].open = 1;
    return n;
}

static void on_readable(int fd) {
    rconn *c = &table[fd];
    for (;;) {
        size_t have = c->left_len;
        ssize_t n;
        long used = 0;
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
            long more = frames(fd, in_buf + used, have - (size_t)used);
            if (more < 0) { drop(fd); return; }
            used += more;
        }
        if ((size_t)used < have) {
            c->left = (unsigned char *)grow(c->left, have - (size_t)used);
            memcpy(c->left, in_buf + used, have - (size_t)used);
        }
        c->left_len = have - (size_t)used;
        if ((size_t)n < in_cap - (have - (size_t)n)) return;
    }
}

/* One write per connection with output; what the socket refuses waits for
   EPOLLOUT. */
static void flush_all(void) {
    size_t k;
    for (k = 0; k < dirty_count; k++) {
        int fd = dirty[k];
        rconn *c = &table[fd];
        ssize_t n;
        c->dirty = 0;
        if (!c->out_len) continue;
        n = send(fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) n = 0;
        if (n < 0) {
            drop(fd);
            continue;
        }
        if ((size_t)n < c->out_len) {
            struct epoll_event ev;
            memmove(c->out, c->out + n, c->out_len - (size_t)n);
            memset(&ev, 0, sizeof ev);
            ev.events = EPOLLIN | EPOLLOUT;
            ev.data.fd = fd;
            epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
        }
        c->out_len -= (size_t)n;
    }
    dirty_count = 0;
}

static void on_writable(int fd) {
    rconn *c = &table[fd];
    struct epoll_event ev;
    if (!c->dirty) {
        c->dirty = 1;
        if (dirty_count == dirty_cap) {
            dirty_cap = dirty_cap ? 2 * dirty_cap : 256;
            dirty = (int *)grow(dirty, dirty_cap * sizeof *dirty);
        }
        dirty[dirty_count++] = fd;
    }
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 9006, lfd, one = 1;
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
        fprintf(stderr, "raw_fanout: cannot listen on 127.0.0.1:%d\n", port);
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
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(fd);
        }
        flush_all();
    }
    return 0;
}
