#include "loop.c"
/* >>net implementation --------------------------------------------------- */

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* BSD/macOS: SO_NOSIGPIPE is set on the socket instead */
#endif

#define ZK__READ_BUFFER (64u * 1024u) /* the loop's shared read buffer */
#define ZK__CHUNK (16u * 1024u)       /* write-queue chunk */
#define ZK__CHUNK_CACHE 64            /* spare chunks a loop keeps at least (1 MiB),
                                         and more, up to the most its queues held
                                         in the last second: a broadcast to 1000
                                         connections then reuses its 1000 chunks
                                         rather than malloc, free, glibc trimming
                                         and faulting the pages back every pass */
#define ZK__READS_PER_EVENT 8         /* fairness: reads per readiness event */
#define ZK__CORK (64u * 1024u)        /* the loop's cork buffer */
#define ZK__MAX_PONGS 64              /* pongs queued per connection before they coalesce */

/* ---- streams: what a connection reads from and writes to ---- */

typedef struct zk__stream zk__stream;
typedef struct zk__stream_ops {
    /* > 0 bytes read, 0 at end of stream, ZK_EAGAIN when nothing now, or an error */
    long (*read)(zk__stream *s, void *buf, size_t cap);
    /* bytes taken (0: would block) or an error */
    long (*writev)(zk__stream *s, const struct iovec *iov, int n);
    void (*want_write)(zk__stream *s, int on);
    void (*want_read)(zk__stream *s, int on);  /* NULL: the stream reads only when asked */
    void (*shutdown)(zk__stream *s); /* no more writes: the peer reads end of stream */
    void (*close)(zk__stream *s);    /* release; no callbacks after this */
    int (*peer)(zk__stream *s, char *out, size_t cap);
} zk__stream_ops;

struct zk__stream {
    const zk__stream_ops *ops;
    zk_conn *conn;
    int loopback;
};

/* A TCP stream lives in the same allocation as its connection, after it. */
typedef struct zk__tcp {
    zk__stream base;
    zk__io io;
    zk_loop *loop;
    int connecting;
    int no_read; /* reads paused: no read interest */
} zk__tcp;

ZK__PRIVATE void zk__conn_readable(zk_conn *c);
ZK__PRIVATE void zk__conn_writable(zk_conn *c);
ZK__PRIVATE void zk__conn_connected(zk_conn *c, int err);

/* ---- the write queue ---- */

/* A message encoded once for many connections; the write queues that hold
   it share it (refs) rather than copy it, when it is large. */
struct zk_frame {
    size_t refs;         /* the owner's, plus one per queue holding it */
    size_t size;         /* header + payload */
    size_t header;
    int binary;
    /* the frame's bytes follow */
};

#define ZK__FRAME_BYTES(f) ((unsigned char *)((f) + 1))
#define ZK__SHARE_MIN 2048 /* smaller frames are copied: cheaper than a chunk of their own */

typedef struct zk__chunk {
    struct zk__chunk *next;
    size_t len, cap;
    zk_frame *shared;     /* the bytes are this frame's, not the chunk's */
    unsigned char frames; /* holds whole WebSocket frames (not HTTP bytes) */
    unsigned char open;   /* more frames may be appended */
    unsigned char pong;   /* a queued pong (counted in zk_conn.pongs) */
} zk__chunk;

#define ZK__CHUNK_DATA(ch) ((ch)->shared ? ZK__FRAME_BYTES((ch)->shared) : (unsigned char *)((ch) + 1))

/* ---- connections ---- */

enum {
    ZK__C_CONNECTING, /* client: TCP connect under way */
    ZK__C_HANDSHAKE,  /* upgrade request or answer under way */
    ZK__C_HTTP,       /* server: a plain request waits for zk_conn_respond */
    ZK__C_OPEN,
    ZK__C_CLOSING,    /* we sent a close and wait for the peer's */
    ZK__C_LINGER,     /* done: flush, shut down, wait for the peer's end */
    ZK__C_GONE        /* transport closed */
};

enum { ZK__T_NONE, ZK__T_HANDSHAKE, ZK__T_IDLE, ZK__T_PONG, ZK__T_CLOSE, ZK__T_LINGER };

typedef struct zk__client {
    zk_ws_client_handshake hs;
    char *strings;           /* host, path, origin and protocols, copied */
    const char *protocols[8];
    zk_callbacks cb;
    zk_http_header *headers; /* copied into strings */
    uint32_t connect_timeout_ms, close_timeout_ms;
    size_t max_message;
    struct sockaddr_storage addr;
    socklen_t addr_len;
} zk__client;

struct zk_conn {
    zk__stream *stream;
    zk_loop *loop;
    zk_server *server;          /* NULL on the client side */
    zk__client *client;         /* NULL on the server side */
    zk_conn *prev, *next;       /* the server's list */
    const zk_callbacks *cb;
    void *data;
    zk_ws ws;
    unsigned char *rbuf;        /* unconsumed input (partial head or frame) */
    size_t rlen, rseen;
    zk__chunk *wq, *wq_tail;
    zk__chunk *wq_prio;         /* the last control frame queued ahead of data */
    zk__chunk *wq_pong;         /* a pong not yet started, replaced by newer ones */
    size_t wq_bytes, wq_off;    /* queued bytes; bytes of the head chunk written */
    size_t high_water, write_limit;
    zk_timer timer;
    zk_timer guard;             /* server: message_timeout_ms and write_timeout_ms */
    uint64_t last_rx;
    uint64_t msg_since;         /* a message has been arriving since (msg_started) */
    uint64_t stall_since;       /* bytes queued and none taken since (stalled) */
    uint64_t paused_since;      /* not read since (rpaused) */
    zk__work flush;
    zk__work resume;            /* reads resume: what was left is processed */
    const char *protocol;       /* chosen subprotocol, or NULL */
    int busy;                   /* handlers running on the stack */
    unsigned char state, timer_what, opened, notified, want_drain, shut, write_blocked;
    unsigned char pinged;       /* a heartbeat ping is out and nothing came since */
    unsigned char msg_started, stalled;
    unsigned char rpaused;      /* server: not read while the queue is past high water */
    unsigned char rleft;        /* rbuf holds bytes left unprocessed by a pause */
    unsigned char pongs;        /* pongs queued, at most ZK__MAX_PONGS */
    unsigned char http_pending; /* on_http has the request and has not answered */
    unsigned char accepted;     /* on_upgrade accepted it: on_close will come */
    unsigned char upgrading;    /* on_upgrade runs: zk_conn_respond may refuse */
    int http_status;            /* client: a refusing answer's status (not 101) */
    void *app;                  /* the app layer's state for this connection */
    unsigned char addr[16];     /* the peer's address (IPv4 mapped into IPv6), when counted */
    unsigned char addr_counted; /* in the server's per-address table */
};

struct zk_server {
    zk_loop *loop;
    zk_server_opts opts;
    int fd, port;
    zk__io io;
    zk_conn *conns;
    size_t nconns;
    zk_timer shutdown_timer;
    void (*shutdown_done)(zk_server *s);
    int shutting_down;
    int holding; /* inside a loop over conns: done must wait */
    struct zk__addr_slot *addrs; /* connections per address (max_per_address) */
    size_t addr_cap, addr_used;
};

/* ---- connections per address: open addressing, backward-shift delete ---- */

typedef struct zk__addr_slot {
    unsigned char key[16];
    uint32_t count;              /* 0: empty */
} zk__addr_slot;

ZK__PRIVATE size_t zk__addr_hash(const unsigned char *k, size_t cap) {
    uint64_t h = 1469598103934665603ull;
    int i;
    for (i = 0; i < 16; i++) h = (h ^ k[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

ZK__PRIVATE zk__addr_slot *zk__addr_find(const zk_server *s, const unsigned char *k) {
    size_t i;
    if (!s->addr_cap) return NULL;
    for (i = zk__addr_hash(k, s->addr_cap); s->addrs[i].count; i = (i + 1) & (s->addr_cap - 1))
        if (memcmp(s->addrs[i].key, k, 16) == 0) return &s->addrs[i];
    return NULL;
}

/* Counts one more connection from k: 0, or ZK_ENOMEM. */
ZK__PRIVATE int zk__addr_add(zk_server *s, const unsigned char *k) {
    zk__addr_slot *e = zk__addr_find(s, k);
    size_t i;
    if (e) {
        e->count++;
        return 0;
    }
    if ((s->addr_used + 1) * 2 > s->addr_cap) { /* grow: at most half full */
        size_t cap = s->addr_cap ? s->addr_cap * 2 : 16, j;
        zk__addr_slot *a = (zk__addr_slot *)ZK_MALLOC(cap * sizeof *a);
        if (!a) return ZK_ENOMEM;
        memset(a, 0, cap * sizeof *a);
        for (j = 0; j < s->addr_cap; j++) {
            if (!s->addrs[j].count) continue;
            for (i = zk__addr_hash(s->addrs[j].key, cap); a[i].count; i = (i + 1) & (cap - 1)) {
            }
            a[i] = s->addrs[j];
        }
        ZK_FREE(s->addrs);
        s->addrs = a;
        s->addr_cap = cap;
    }
    for (i = zk__addr_hash(k, s->addr_cap); s->addrs[i].count; i = (i + 1) & (s->addr_cap - 1)) {
    }
    memcpy(s->addrs[i].key, k, 16);
    s->addrs[i].count = 1;
    s->addr_used++;
    return 0;
}

ZK__PRIVATE void zk__addr_remove(zk_server *s, const unsigned char *k) {
    zk__addr_slot *e = zk__addr_find(s, k);
    size_t i, j, mask = s->addr_cap - 1;
    if (!e || --e->count) return;
    /* emptied: later entries of its run move back so lookups still find them */
    i = (size_t)(e - s->addrs);
    for (j = (i + 1) & mask; s->addrs[j].count; j = (j + 1) & mask) {
        size_t home = zk__addr_hash(s->addrs[j].key, s->addr_cap);
        if (((j - home) & mask) >= ((j - i) & mask)) { /* home is at or before the hole */
            s->addrs[i] = s->addrs[j];
            s->addrs[j].count = 0;
            i = j;
        }
    }
    s->addrs[i].count = 0;
    s->addr_used--;
}

/* The 16-byte key of a peer address (IPv4 as ::ffff:a.b.c.d), or -1. */
ZK__PRIVATE int zk__addr_key(const struct sockaddr_storage *ss, unsigned char out[16]) {
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)ss;
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a->sin_addr, 4);
        return 0;
    }
    if (ss->ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

/* A chunk for at least need bytes: a standard one (from the loop's spares
   when it has one), or exactly need bytes (HTTP answers, control frames). */
ZK__PRIVATE zk__chunk *zk__chunk_new(zk_loop *loop, size_t need, int exact) {
    size_t cap = exact ? need : need < ZK__CHUNK ? ZK__CHUNK : need;
    zk__chunk *ch;
    if (cap == ZK__CHUNK) {
        /* once a second the spares shrink to what the last second needed:
           the most its queues held at once, less what they hold now */
        if (loop->now - loop->chunk_decay_at >= 1000) {
            size_t keep = loop->chunk_peak > loop->chunk_live ? loop->chunk_peak - loop->chunk_live : 0;
            loop->chunk_decay_at = loop->now;
            loop->chunk_peak = loop->chunk_live;
            while (loop->chunk_cached > keep && loop->chunk_cached > ZK__CHUNK_CACHE) {
                ch = (zk__chunk *)loop->chunk_cache;
                loop->chunk_cache = ch->next;
                loop->chunk_cached--;
                ZK_FREE(ch);
            }
        }
        if (++loop->chunk_live > loop->chunk_peak) loop->chunk_peak = loop->chunk_live;
    }
    if (cap == ZK__CHUNK && loop->chunk_cache) {
        ch = (zk__chunk *)loop->chunk_cache;
        loop->chunk_cache = ch->next;
        loop->chunk_cached--;
    } else {
        ch = (zk__chunk *)ZK_MALLOC(sizeof *ch + cap);
        if (!ch) {
            if (cap == ZK__CHUNK) loop->chunk_live--;
            return NULL;
        }
    }
    ch->next = NULL;
    ch->shared = NULL;
    ch->len = 0;
    ch->cap = cap;
    ch->frames = 1;
    ch->open = 1;
    ch->pong = 0;
    return ch;
}

ZK__PRIVATE void zk__chunk_free(zk_loop *loop, zk__chunk *ch) {
    if (ch->shared) {
        zk_frame_free(ch->shared);
        ZK_FREE(ch);
        return;
    }
    if (ch->cap == ZK__CHUNK) loop->chunk_live--;
    if (ch->cap == ZK__CHUNK && (loop->chunk_cached < ZK__CHUNK_CACHE || loop->chunk_cached < loop->chunk_peak)) {
        ch->next = (zk__chunk *)loop->chunk_cache;
        loop->chunk_cache = ch;
        loop->chunk_cached++;
    } else {
        ZK_FREE(ch);
    }
}

ZK__PRIVATE void zk__conn_arm(zk_conn *c, int what, uint64_t ms) {
    c->timer_what = (unsigned char)what;
    if (what == ZK__T_NONE) zk_timer_stop(&c->timer);
    else zk_timer_start(&c->timer, ms, 0);
}

ZK__PRIVATE void zk__conn_schedule_flush(zk_conn *c) {
    if (c->state != ZK__C_GONE) zk__work_queue(c->loop, &c->flush);
}

/* The cork. While a connection's read handler runs, what it sends goes
   into one loop-wide buffer, written with a single send when the handler
   ends; only what the socket does not take is queued. The common echo or
   request/answer path then allocates nothing per message. */
ZK__PRIVATE void zk__cork(zk_conn *c) {
    zk_loop *loop = c->loop;
    if (loop->corked || c->wq) return; /* queued bytes go first: no cork */
    if (!loop->cork) {
        loop->cork = (unsigned char *)ZK_MALLOC(ZK__CORK);
        if (!loop->cork) return;
        loop->cork_cap = ZK__CORK;
    }
    loop->corked = c;
    loop->cork_len = 0;
    loop->cork_raw = 0;
}

ZK__PRIVATE void zk__conn_gone(zk_conn *c, int code, const char *reason);

/* Moves the corked bytes into c's queue, which is empty, and uncorks;
   `written` of them already went out (the chunk then starts mid-frame and
   wq_off says so). If that cannot be done, bytes that sends reported as
   queued would be lost: the connection is dropped instead. */
ZK__PRIVATE int zk__cork_spill(zk_conn *c, size_t written) {
    zk_loop *loop = c->loop;
    size_t n = loop->cork_len;
    zk__chunk *ch;
    loop->corked = NULL;
    if (n == written) return 0;
    ch = zk__chunk_new(loop, n, 0);
    if (!ch) {
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "out of memory");
        return ZK_ENOMEM;
    }
    memcpy(ZK__CHUNK_DATA(ch), loop->cork, n);
    ch->len = n;
    if (loop->cork_raw) ch->frames = ch->open = 0;
    c->wq = c->wq_tail = ch;
    c->wq_off = written;
    zk__conn_schedule_flush(c);
    return 0;
}

/* Reserves len bytes at the end of the queue: whole frames, or (raw) HTTP
   bytes, which get a chunk of their own. */
ZK__PRIVATE unsigned char *zk__wq_add(zk_conn *c, size_t len, int raw) {
    zk__chunk *t;
    unsigned char *p;
    zk_loop *loop = c->loop;
    if (loop->corked == c) {
        if (loop->cork_cap - loop->cork_len >= len) {
            p = loop->cork + loop->cork_len;
            loop->cork_len += len;
            loop->cork_raw |= raw;
            c->wq_bytes += len;
            return p;
        }
        if (zk__cork_spill(c, 0) < 0) return NULL;
    }
    t = c->wq_tail;
    if (raw || !t || !t->open || t->cap - t->len < len) {
        t = zk__chunk_new(c->loop, len, raw);
        if (!t) return NULL;
        if (raw) t->frames = t->open = 0;
        if (c->wq_tail) c->wq_tail->next = t;
        else c->wq = t;
        c->wq_tail = t;
    }
    p = ZK__CHUNK_DATA(t) + t->len;
    t->len += len;
    c->wq_bytes += len;
    zk__conn_schedule_flush(c);
    return p;
}

ZK__PRIVATE unsigned char *zk__wq_append(zk_conn *c, size_t len) { return zk__wq_add(c, len, 0); }

/* Gives back the last n bytes of the latest reservation. */
ZK__PRIVATE void zk__wq_unreserve(zk_conn *c, size_t n) {
    if (c->loop->corked == c) c->loop->cork_len -= n;
    else c->wq_tail->len -= n;
    c->wq_bytes -= n;
}
ZK__PRIVATE unsigned char *zk__wq_raw(zk_conn *c, size_t len) { return zk__wq_add(c, len, 1); }

/* The head chunk is partly written: split it at the first frame boundary
   after what went out, so a control frame can go in between. */
ZK__PRIVATE int zk__wq_split_head(zk_conn *c) {
    zk__chunk *h = c->wq, *r;
    const unsigned char *d = ZK__CHUNK_DATA(h);
    size_t pos = 0;
    if (!h->frames) return 0;
    while (pos < c->wq_off) {
        size_t code = d[pos + 1] & 0x7Fu, header = 2, payload = code, i;
        if (code == 126) {
            header = 4;
            payload = (size_t)d[pos + 2] << 8 | d[pos + 3];
        } else if (code == 127) {
            header = 10;
            for (payload = 0, i = 0; i < 8; i++) payload = payload << 8 | d[pos + 2 + i];
        }
        if (d[pos + 1] & 0x80u) header += 4;
        pos += header + payload;
    }
    if (pos >= h->len) return 0;
    r = zk__chunk_new(c->loop, h->len - pos, 0);
    if (!r) return ZK_ENOMEM;
    memcpy(ZK__CHUNK_DATA(r), d + pos, h->len - pos);
    r->len = h->len - pos;
    r->open = h->open;
    r->next = h->next;
    h->next = r;
    h->len = pos;
    h->open = 0;
    if (c->wq_tail == h) c->wq_tail = r;
    return 0;
}

/* Queues a control frame ahead of queued data, at the first frame
   boundary not yet started, after earlier control frames: a pong is never
   stuck behind a backlog. Every ping gets its pong, except over the
   high-water mark or past ZK__MAX_PONGS queued pongs, where the newest pong
   not yet started is replaced (RFC 6455 5.5.3): a peer that pings and never
   reads holds at most that many. HTTP bytes at the head (the 101) always go
   first. */
ZK__PRIVATE int zk__wq_priority(zk_conn *c, const void *frame, size_t len, int pong) {
    zk__chunk *ch;
    if (c->loop->corked == c && zk__cork_spill(c, 0) < 0) return ZK_ENOMEM;
    ch = c->wq_pong;
    if (pong && ch && (c->wq_bytes >= c->high_water || c->pongs >= ZK__MAX_PONGS) &&
        !(ch == c->wq && c->wq_off)) {
        memcpy(ZK__CHUNK_DATA(ch), frame, len);
        c->wq_bytes = c->wq_bytes - ch->len + len;
        ch->len = len;
        zk__conn_schedule_flush(c);
        return 0;
    }
    ch = zk__chunk_new(c->loop, ZK_WS_MAX_CONTROL_FRAME, 1);
    if (!ch) return ZK_ENOMEM;
    memcpy(ZK__CHUNK_DATA(ch), frame, len);
    ch->len = len;
    ch->open = 0; /* the data after it stays in order */
    if (!c->wq) {
        c->wq = c->wq_tail = ch;
    } else if (c->wq_prio || c->wq_off || !c->wq->frames) {
        zk__chunk *after = c->wq_prio;
        if (!after) {
            if (zk__wq_split_head(c) < 0) {
                zk__chunk_free(c->loop, ch);
                return ZK_ENOMEM;
            }
            after = c->wq;
        }
        ch->next = after->next;
        after->next = ch;
        if (c->wq_tail == after) c->wq_tail = ch;
    } else {
        ch->next = c->wq;
        c->wq = ch;
    }
    c->wq_prio = ch;
    if (pong) {
        c->wq_pong = ch;
        ch->pong = 1;
        c->pongs++;
    }
    c->wq_bytes += len;
    zk__conn_schedule_flush(c);
    return 0;
}

ZK__PRIVATE void zk__wq_clear(zk_conn *c) {
    zk__chunk *ch = c->wq;
    while (ch) {
        zk__chunk *next = ch->next;
        zk__chunk_free(c->loop, ch);
        ch = next;
    }
    c->wq = c->wq_tail = c->wq_prio = c->wq_pong = NULL;
    c->pongs = 0;
    c->wq_bytes = c->wq_off = 0;
}

ZK__PRIVATE void zk__conn_free(zk_conn *c) {
    if (c->client && (c->prev || c->loop->clients == c)) {
        if (c->prev) c->prev->next = c->next;
        else c->loop->clients = c->next;
        if (c->next) c->next->prev = c->prev;
    }
    zk_timer_stop(&c->timer);
    zk_timer_stop(&c->guard);
    zk__work_cancel(c->loop, &c->flush);
    zk__work_cancel(c->loop, &c->resume);
    zk__wq_clear(c);
    zk_ws_free(&c->ws);
    if (c->rbuf) ZK_FREE(c->rbuf);
    if (c->client) {
        ZK_FREE(c->client->strings);
        ZK_FREE(c->client);
    }
    ZK_FREE(c);
}

/* Frees the connection once its transport is closed and no handler of ours
   is running with it on the stack. */
ZK__PRIVATE void zk__conn_release(zk_conn *c) {
    if (c->busy == 0 && c->state == ZK__C_GONE) zk__conn_free(c);
}

ZK__PRIVATE void zk__server_check_done(zk_server *s);

/* Tells the user once that the connection is over. */
ZK__PRIVATE void zk__conn_notify(zk_conn *c, int code, zk_str reason, int clean) {
    if (c->notified) return;
    c->notified = 1;
    if (c->opened || c->accepted || c->client || c->http_pending) {
        c->busy++;
        if (c->cb && c->cb->on_close) c->cb->on_close(c, code, reason, clean);
        c->busy--;
    }
}

/* Closes the transport now. */
ZK__PRIVATE void zk__conn_gone(zk_conn *c, int code, const char *reason) {
    zk_server *s = c->server;
    if (c->state == ZK__C_GONE) return;
    c->state = ZK__C_LINGER; /* API calls inside on_close see a closed connection */
    zk__conn_notify(c, code, zk_str_c(reason), 0);
    if (c->state == ZK__C_GONE) { /* on_close aborted it */
        zk__conn_release(c);
        return;
    }
    c->state = ZK__C_GONE;
    if (c->loop->corked == c) c->loop->corked = NULL;
    zk_timer_stop(&c->timer);
    zk_timer_stop(&c->guard);
    zk__work_cancel(c->loop, &c->flush);
    zk__work_cancel(c->loop, &c->resume);
    if (c->stream) c->stream->ops->close(c->stream);
    c->stream = NULL;
    zk__wq_clear(c);
    if (s) {
        if (c->prev) c->prev->next = c->next;
        else s->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        c->prev = c->next = NULL;
        s->nconns--;
        if (c->addr_counted) zk__addr_remove(s, c->addr);
        c->addr_counted = 0;
        zk__server_check_done(s);
    } else if (c->client) {
        if (c->prev) c->prev->next = c->next;
        else c->loop->clients = c->next;
        if (c->next) c->next->prev = c->prev;
        c->prev = c->next = NULL;
    }
    zk__conn_release(c);
}

/* zk_loop_free: client connections still there (open, or finishing their
   close after on_close) are dropped and freed. */
ZK__PRIVATE void zk__drop_clients(zk_loop *loop) {
    while (loop->clients) zk_conn_abort((zk_conn *)loop->clients);
}

/* The WebSocket part is over (close exchanged, failed, or an HTTP answer
   queued): flush, then shut down our side and wait for the peer's end. */
ZK__PRIVATE void zk__conn_linger(zk_conn *c, uint32_t timeout_ms) {
    if (c->state >= ZK__C_LINGER) return;
    c->state = ZK__C_LINGER;
    zk__conn_arm(c, ZK__T_LINGER, timeout_ms);
    zk__conn_schedule_flush(c);
}

ZK__PRIVATE uint32_t zk__close_timeout(const zk_conn *c) {
    uint32_t t = c->server ? c->server->opts.close_timeout_ms : c->client->close_timeout_ms;
    return t ? t : 3000;
}

/* The server's two slow-peer deadlines share one timer, armed when either
   starts and checked lazily: a message arriving for longer than
   message_timeout_ms is closed with 1008, and a queue the peer has taken
   nothing from for write_timeout_ms drops the connection. */
ZK__PRIVATE uint32_t zk__ms_or(uint32_t v, uint32_t dflt) { return v ? v : dflt; }

ZK__PRIVATE void zk__guard_arm(zk_conn *c) {
    uint64_t now, due = UINT64_MAX;
    if (!c->server || zk_timer_active(&c->guard)) return;
    /* a message is timed only while open (closing, close_timeout_ms bounds
       it) and while we read */
    if (c->msg_started && c->state == ZK__C_OPEN && !c->rpaused)
        due = c->msg_since + zk__ms_or(c->server->opts.message_timeout_ms, 30000);
    if (c->stalled) {
        uint64_t d = c->stall_since + zk__ms_or(c->server->opts.write_timeout_ms, 30000);
        if (d < due) due = d;
    }
    if (due == UINT64_MAX) return;
    now = zk_loop_now(c->loop);
    zk_timer_start(&c->guard, due > now ? due - now : 0, 0);
}

ZK__PRIVATE void zk__guard_fire(zk_timer *t) {
    zk_conn *c = (zk_conn *)t->data;
    uint64_t now = zk_loop_now(c->loop);
    c->busy++;
    if (c->stalled && now - c->stall_since >= zk__ms_or(c->server->opts.write_timeout_ms, 30000)) {
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "peer did not read");
    } else if (c->msg_started && c->state == ZK__C_OPEN && !c->rpaused &&
               now - c->msg_since >= zk__ms_or(c->server->opts.message_timeout_ms, 30000)) {
        c->msg_started = 0;
        zk_conn_close(c, ZK_CLOSE_POLICY, "message too slow");
        zk__guard_arm(c);
    } else if (c->state != ZK__C_GONE) {
        zk__guard_arm(c);
    }
    c->busy--;
    zk__conn_release(c);
}

/* A server connection is not read while its write queue is past the
   high-water mark (checked after each message): a peer that sends and does
   not read waits in its own TCP window rather than growing our queue with
   answers. Reads resume below the mark, or when we close. Paused, the peer
   cannot be heard: the idle clock and a message's clock stop, and
   write_timeout_ms is what ends a peer that takes nothing. */
ZK__PRIVATE void zk__conn_pause(zk_conn *c) {
    if (c->rpaused) return;
    c->rpaused = 1;
    c->paused_since = zk_loop_now(c->loop);
    if (c->stream && c->stream->ops->want_read) c->stream->ops->want_read(c->stream, 0);
}

ZK__PRIVATE void zk__conn_resume(zk_conn *c) {
    uint64_t paused;
    if (!c->rpaused) return;
    paused = zk_loop_now(c->loop) - c->paused_since;
    c->rpaused = 0;
    c->last_rx += paused; /* the time we did not listen does not count */
    c->msg_since += paused;
    if (c->rlen) c->rleft = 1;
    if (c->stream && c->stream->ops->want_read) c->stream->ops->want_read(c->stream, 1);
    zk__work_queue(c->loop, &c->resume);
    zk__guard_arm(c);
}

ZK__PRIVATE void zk__conn_resume_work(zk__work *w) {
    zk_conn *c = (zk_conn *)(void *)((char *)w - offsetof(zk_conn, resume));
    if (c->stream && !c->rpaused) zk__conn_readable(c);
}

ZK__PRIVATE void zk__conn_flush_now(zk_conn *c) {
    struct iovec iov[64];
    long n;
    int k, taken = 0;
    if (c->state == ZK__C_GONE || c->state == ZK__C_CONNECTING || !c->stream) return;
    while (c->wq) {
        zk__chunk *ch = c->wq;
        for (k = 0; ch && k < 64; ch = ch->next, k++) {
            size_t off = k == 0 ? c->wq_off : 0;
            iov[k].iov_base = ZK__CHUNK_DATA(ch) + off;
            iov[k].iov_len = ch->len - off;
        }
        n = c->stream->ops->writev(c->stream, iov, k);
        if (n < 0) {
            zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "write failed");
            return;
        }
        c->wq_bytes -= (size_t)n;
        if (n > 0) taken = 1;
        while (n > 0) {
            ch = c->wq;
            ZK_ASSERT(ch); /* a stream takes no more than it was offered */
            if ((size_t)n >= ch->len - c->wq_off) {
                n -= (long)(ch->len - c->wq_off);
                c->wq = ch->next;
                if (!c->wq) c->wq_tail = NULL;
                if (c->wq_prio == ch) c->wq_prio = NULL;
                if (c->wq_pong == ch) c->wq_pong = NULL;
                if (ch->pong) c->pongs--;
                c->wq_off = 0;
                zk__chunk_free(c->loop, ch);
            } else {
                c->wq_off += (size_t)n;
                n = 0;
            }
        }
        if (c->wq) break; /* short write: the socket is full */
    }
    if (c->server) { /* what the peer took restarts write_timeout_ms */
        if (!c->wq) {
            c->stalled = 0;
        } else if (!c->stalled || taken) {
            c->stalled = 1;
            c->stall_since = zk_loop_now(c->loop);
            zk__guard_arm(c);
        }
    }
    if (c->wq && !c->write_blocked) {
        c->write_blocked = 1;
        c->stream->ops->want_write(c->stream, 1);
    } else if (!c->wq && c->write_blocked) {
        c->write_blocked = 0;
        c->stream->ops->want_write(c->stream, 0);
    }
    if (c->want_drain && c->wq_bytes < c->high_water && c->state == ZK__C_OPEN) {
        c->want_drain = 0;
        if (c->cb && c->cb->on_drain) {
            c->busy++;
            c->cb->on_drain(c);
            c->busy--;
        }
    }
    if (c->rpaused && (c->wq_bytes < c->high_water || c->state != ZK__C_OPEN)) zk__conn_resume(c);
    if (!c->wq && c->state == ZK__C_LINGER && !c->shut && c->stream) {
        c->shut = 1;
        c->stream->ops->shutdown(c->stream);
    }
}

ZK__PRIVATE void zk__conn_flush_work(zk__work *w) {
    zk_conn *c = (zk_conn *)(void *)((char *)w - offsetof(zk_conn, flush));
    c->busy++;
    zk__conn_flush_now(c);
    c->busy--;
    zk__conn_release(c);
}

ZK__PRIVATE void zk__conn_timer(zk_timer *t) {
    zk_conn *c = (zk_conn *)t->data;
    uint64_t now = zk_loop_now(c->loop);
    c->busy++;
    switch (c->timer_what) {
    case ZK__T_HANDSHAKE:
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, c->state == ZK__C_CONNECTING ? "connect timed out" : "handshake timed out");
        break;
    case ZK__T_IDLE: {
        uint32_t idle = c->server->opts.idle_timeout_ms ? c->server->opts.idle_timeout_ms : 30000;
        uint32_t wait = c->server->opts.pong_timeout_ms ? c->server->opts.pong_timeout_ms : 10000;
        if (c->rpaused) { /* its answer could not be read: write_timeout_ms watches */
            zk__conn_arm(c, ZK__T_IDLE, idle);
        } else if (now - c->last_rx >= idle) {
            unsigned char frame[8];
            int n = zk_ws_send(&c->ws, frame, sizeof frame, ZK_WS_PING, NULL, 0, 1);
            if (n > 0) zk__wq_priority(c, frame, (size_t)n, 0);
            c->pinged = 1;
            zk__conn_arm(c, ZK__T_PONG, wait);
        } else {
            zk__conn_arm(c, ZK__T_IDLE, idle - (now - c->last_rx));
        }
        break;
    }
    case ZK__T_PONG: {
        uint32_t idle = c->server->opts.idle_timeout_ms ? c->server->opts.idle_timeout_ms : 30000;
        uint32_t wait = c->server->opts.pong_timeout_ms ? c->server->opts.pong_timeout_ms : 10000;
        (void)now, (void)wait;
        if (c->pinged && !c->rpaused) zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "peer did not answer a ping");
        else zk__conn_arm(c, ZK__T_IDLE, idle);
        break;
    }
    case ZK__T_CLOSE:
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "close handshake timed out");
        break;
    case ZK__T_LINGER:
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "peer did not close");
        break;
    default:
        break;
    }
    c->busy--;
    zk__conn_release(c);
}

ZK__PRIVATE zk_conn *zk__conn_new(zk_loop *loop, const zk_callbacks *cb, size_t max_message,
                                  size_t high_water, size_t write_limit, int role, int tcp) {
    zk_conn *c = (zk_conn *)ZK_MALLOC(sizeof *c + (tcp ? sizeof(zk__tcp) : 0));
    zk_ws_opts wo;
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->cb = cb;
    c->high_water = high_water ? high_water : (size_t)1 << 20;
    c->write_limit = write_limit ? write_limit : c->high_water + ((size_t)16 << 20);
    memset(&wo, 0, sizeof wo);
    wo.role = role;
    wo.max_message = max_message;
    wo.mask_seed = zk_loop_random(loop);
    zk_ws_init(&c->ws, &wo);
    zk_timer_init(loop, &c->timer, zk__conn_timer, c);
    zk_timer_init(loop, &c->guard, zk__guard_fire, c);
    c->flush.fn = zk__conn_flush_work;
    c->resume.fn = zk__conn_resume_work;
    c->last_rx = zk_loop_now(loop);
    return c;
}

/* ---- sending ---- */

ZK_API int zk_conn_send(zk_conn *c, const void *data, size_t len, int binary) {
    size_t size;
    unsigned char *p;
    int n;
    if (c->state != ZK__C_OPEN) return ZK_ECLOSED;
    if (!binary && !zk_utf8_valid(data, len)) return ZK_EINVAL;
    size = zk_ws_frame_size(&c->ws, len);
    if (size < len || c->wq_bytes + size > c->write_limit) return ZK_EBACKPRESSURE;
    p = zk__wq_append(c, size);
    if (!p) return ZK_ENOMEM;
    n = zk_ws_send(&c->ws, p, size, binary ? ZK_WS_BINARY : ZK_WS_TEXT, data, len, 1);
    ZK_ASSERT(n == (int)size);
    (void)n;
    if (c->wq_bytes >= c->high_water) {
        c->want_drain = 1;
        return ZK_SEND_BACKPRESSURE;
    }
    return ZK_SEND_OK;
}

ZK_API zk_frame *zk_frame_new(const void *data, size_t len, int binary, int *err) {
    unsigned char header[14];
    size_t hlen;
    zk_frame *f;
    int dummy;
    if (!err) err = &dummy;
    if ((len && !data) || (!binary && !zk_utf8_valid(data, len))) {
        *err = ZK_EINVAL;
        return NULL;
    }
    hlen = zk_ws_frame_header(header, binary ? ZK_WS_BINARY : ZK_WS_TEXT, 1, len, NULL);
    f = (zk_frame *)ZK_MALLOC(sizeof *f + hlen + len);
    if (!f) {
        *err = ZK_ENOMEM;
        return NULL;
    }
    f->refs = 1;
    f->size = hlen + len;
    f->header = hlen;
    f->binary = binary;
    memcpy(ZK__FRAME_BYTES(f), header, hlen);
    if (len) memcpy(ZK__FRAME_BYTES(f) + hlen, data, len);
    *err = 0;
    return f;
}

ZK_API void zk_frame_free(zk_frame *f) {
    if (f && --f->refs == 0) ZK_FREE(f);
}

ZK_API int zk_conn_send_frame(zk_conn *c, const zk_frame *f) {
    unsigned char *p;
    if (c->ws.role == ZK_WS_CLIENT) /* masked per frame: encode again */
        return zk_conn_send(c, ZK__FRAME_BYTES(f) + f->header, f->size - f->header, f->binary);
    if (c->state != ZK__C_OPEN) return ZK_ECLOSED;
    if (c->wq_bytes + f->size > c->write_limit) return ZK_EBACKPRESSURE;
    if (c->ws.send_op) return ZK_EINVAL; /* not between fragments of another message */
    if (f->size >= ZK__SHARE_MIN && c->loop->corked != c) {
        zk__chunk *ch = (zk__chunk *)ZK_MALLOC(sizeof *ch);
        if (!ch) return ZK_ENOMEM;
        memset(ch, 0, sizeof *ch);
        ch->shared = (zk_frame *)(uintptr_t)f; /* the count changes, the bytes never do */
        ch->shared->refs++;
        ch->len = f->size;
        ch->frames = 1;
        if (c->wq_tail) c->wq_tail->next = ch;
        else c->wq = ch;
        c->wq_tail = ch;
        c->wq_bytes += f->size;
        zk__conn_schedule_flush(c);
    } else {
        p = zk__wq_append(c, f->size);
        if (!p) return ZK_ENOMEM;
        memcpy(p, ZK__FRAME_BYTES(f), f->size);
    }
    if (c->wq_bytes >= c->high_water) {
        c->want_drain = 1;
        return ZK_SEND_BACKPRESSURE;
    }
    return ZK_SEND_OK;
}

ZK_API int zk_conn_ping(zk_conn *c, const void *data, size_t len) {
    unsigned char frame[ZK_WS_MAX_CONTROL_FRAME];
    int n;
    if (c->state != ZK__C_OPEN) return ZK_ECLOSED;
    n = zk_ws_send(&c->ws, frame, sizeof frame, ZK_WS_PING, data, len, 1);
    if (n < 0) return n;
    return zk__wq_priority(c, frame, (size_t)n, 0);
}

ZK_API int zk_conn_close(zk_conn *c, int code, const char *reason) {
    size_t rlen = reason ? strlen(reason) : 0;
    unsigned char frame[ZK_WS_MAX_CONTROL_FRAME];
    unsigned char *p;
    int n;
    if (c->state == ZK__C_CONNECTING || c->state == ZK__C_HANDSHAKE || c->state == ZK__C_HTTP) {
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "closed before open");
        return 0;
    }
    if (c->state != ZK__C_OPEN) return ZK_ECLOSED;
    n = zk_ws_close(&c->ws, frame, sizeof frame, code, reason, rlen);
    if (n < 0) return n;
    p = zk__wq_append(c, (size_t)n);
    if (!p) { /* the engine already counts the close as sent: drop instead */
        zk_conn_abort(c);
        return ZK_ENOMEM;
    }
    memcpy(p, frame, (size_t)n);
    c->state = ZK__C_CLOSING;
    zk__conn_arm(c, ZK__T_CLOSE, zk__close_timeout(c));
    zk__conn_resume(c); /* the peer's close is to be read */
    return 0;
}

ZK_API void zk_conn_abort(zk_conn *c) {
    c->busy++;
    zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "aborted");
    c->busy--;
    zk__conn_release(c);
}

ZK_API int zk_conn_respond(zk_conn *c, int status, const zk_http_header *headers,
                           size_t header_count, const void *body, size_t body_len) {
    size_t cap = 512 + body_len;
    unsigned char *p;
    int n;
    size_t i;
    if (c->state != ZK__C_HTTP && !(c->upgrading && c->state == ZK__C_HANDSHAKE)) return ZK_ECLOSED;
    c->http_pending = 0;
    for (i = 0; i < header_count; i++) cap += headers[i].name.len + headers[i].value.len + 4;
    p = zk__wq_raw(c, cap);
    if (!p) return ZK_ENOMEM;
    n = zk_http_write_response((char *)p, cap, status, headers, header_count, body, body_len);
    if (n < 0) {
        zk__wq_unreserve(c, cap);
        return n;
    }
    zk__wq_unreserve(c, cap - (size_t)n);
    zk__conn_linger(c, zk__close_timeout(c));
    return 0;
}

ZK_API void zk_conn_set_data(zk_conn *c, void *data) { c->data = data; }
ZK_API void *zk_conn_data(const zk_conn *c) { return c->data; }
ZK_API size_t zk_conn_buffered(const zk_conn *c) { return c->wq_bytes; }
ZK_API zk_server *zk_conn_server(const zk_conn *c) { return c->server; }
ZK_API int zk_conn_http_status(const zk_conn *c) { return c->http_status; }
ZK_API zk_loop *zk_conn_loop(const zk_conn *c) { return c->loop; }

ZK_API zk_str zk_conn_protocol(const zk_conn *c) {
    return zk_str_c(c->protocol);
}

ZK_API int zk_conn_peer(const zk_conn *c, char *out, size_t cap) {
    if (!c->stream || cap == 0) return ZK_EINVAL;
    return c->stream->ops->peer(c->stream, out, cap);
}

/* ---- receiving ---- */

/* Handles bytes as a server waiting for the upgrade request. Returns bytes
   consumed; the state tells whether to go on with frames. */
ZK__PRIVATE size_t zk__server_handshake(zk_conn *c, unsigned char *buf, size_t len) {
    zk_server *s = c->server;
    zk_http_request req;
    zk_ws_upgrade up;
    zk_http_limits limits;
    char out[1024];
    int n, rc, status;
    memset(&limits, 0, sizeof limits);
    n = zk_http_parse_request((const char *)buf, len, c->rseen, &req, &limits);
    c->rseen = len;
    if (n == ZK_EAGAIN) return 0;
    if (n < 0) {
        /* 400, 431 or 505, with what was wrong as the body */
        c->state = ZK__C_HTTP;
        zk_conn_respond(c, req.status, NULL, 0, req.error, strlen(req.error));
        return len;
    }
    c->rseen = 0;
    rc = zk_ws_upgrade_check(&req, s->opts.protocols, s->opts.protocol_count, &up);
    if (rc == ZK_ENOTWS) {
        c->state = ZK__C_HTTP;
        zk__conn_arm(c, ZK__T_LINGER, s->opts.handshake_timeout_ms ? s->opts.handshake_timeout_ms : 10000);
        if (s->opts.on_http) {
            c->http_pending = 1;
            s->opts.on_http(c, &req);
        } else {
            static const char body[] = "this is a WebSocket endpoint\n";
            zk_http_header h[1];
            h[0].name = zk_str_c("Upgrade");
            h[0].value = zk_str_c("websocket");
            zk_conn_respond(c, 426, h, 1, body, sizeof body - 1);
        }
        return len; /* no pipelining: what follows the request is ignored */
    }
    if (rc != ZK_OK) {
        n = zk_ws_upgrade_refuse(out, sizeof out, &up);
        c->state = ZK__C_HTTP;
        if (n > 0) {
            unsigned char *p = zk__wq_raw(c, (size_t)n);
            if (p) memcpy(p, out, (size_t)n);
        }
        zk__conn_linger(c, zk__close_timeout(c));
        return len;
    }
    if (s->opts.origins && up.origin.ptr) { /* a browser page from elsewhere: refused */
        size_t i;
        for (i = 0; i < s->opts.origin_count && !zk_str_eq_nocase(up.origin, s->opts.origins[i]); i++) {
        }
        if (i == s->opts.origin_count) {
            static const char body[] = "this origin is not allowed\n";
            c->state = ZK__C_HTTP;
            zk_conn_respond(c, 403, NULL, 0, body, sizeof body - 1);
            return len;
        }
    }
    c->upgrading = 1;
    status = s->opts.on_upgrade ? s->opts.on_upgrade(c, &req, &up) : 0;
    c->upgrading = 0;
    if (c->state != ZK__C_HANDSHAKE) return len; /* gone, or refused with zk_conn_respond */
    if (status) {
        const char *text = zk_http_status_text(status);
        c->state = ZK__C_HTTP;
        zk_conn_respond(c, status, NULL, 0, text, strlen(text));
        return len;
    }
    c->accepted = 1;
    rc = zk_ws_upgrade_accept(out, sizeof out, &up, NULL, 0);
    if (rc < 0) {
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "could not write the upgrade answer");
        return len;
    }
    {
        unsigned char *p = zk__wq_raw(c, (size_t)rc);
        if (!p) {
            zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "out of memory");
            return len;
        }
        memcpy(p, out, (size_t)rc);
    }
    c->protocol = up.protocol;
    c->state = ZK__C_OPEN;
    c->opened = 1;
    zk__conn_arm(c, ZK__T_IDLE, s->opts.idle_timeout_ms ? s->opts.idle_timeout_ms : 30000);
    if (c->cb && c->cb->on_open) c->cb->on_open(c, &req);
    return (size_t)n;
}

/* Handles bytes as a client waiting for the upgrade answer. */
ZK__PRIVATE size_t zk__client_handshake(zk_conn *c, unsigned char *buf, size_t len) {
    zk_http_response res;
    zk_str chosen;
    const char *error = NULL;
    size_t i;
    int n = zk_http_parse_response((const char *)buf, len, c->rseen, &res, NULL);
    c->rseen = len;
    if (n == ZK_EAGAIN) return 0;
    if (n < 0) {
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, res.error ? res.error : "malformed upgrade answer");
        return len;
    }
    c->rseen = 0;
    if (zk_ws_client_verify(&res, &c->client->hs, &chosen, &error) != ZK_OK) {
        if (res.status != 101) c->http_status = res.status;
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, error);
        return len;
    }
    for (i = 0; i < c->client->hs.protocol_count; i++)
        if (chosen.len && zk_str_eq_nocase(chosen, c->client->protocols[i])) c->protocol = c->client->protocols[i];
    c->state = ZK__C_OPEN;
    c->opened = 1;
    zk__conn_arm(c, ZK__T_NONE, 0);
    if (c->cb && c->cb->on_open) c->cb->on_open(c, NULL);
    return (size_t)n;
}

/* Feeds frames to the engine and acts on each event. Returns bytes used. */
ZK__PRIVATE size_t zk__conn_frames(zk_conn *c, unsigned char *buf, size_t len) {
    size_t at = 0;
    while (at < len && c->state != ZK__C_GONE && c->state != ZK__C_LINGER) {
        zk_ws_event ev;
        size_t used = zk_ws_feed(&c->ws, buf + at, len - at, &ev);
        at += used;
        if (ev.reply_len) {
            if (ev.type == ZK_WS_EV_PING) {
                zk__wq_priority(c, ev.reply, ev.reply_len, 1);
            } else {
                unsigned char *p = zk__wq_append(c, ev.reply_len);
                if (p) memcpy(p, ev.reply, ev.reply_len);
            }
        }
        /* a message or a control frame ended: what arrives next is timed
           from its own first byte (a control frame inside a fragmented
           message leaves the message's clock running) */
        if (ev.type != ZK_WS_EV_NONE && !(c->ws.flags & ZK__WS_IN_MESSAGE)) c->msg_started = 0;
        switch (ev.type) {
        case ZK_WS_EV_TEXT:
        case ZK_WS_EV_BINARY:
            if (c->cb && c->cb->on_message) c->cb->on_message(c, ev.data, ev.type == ZK_WS_EV_BINARY);
            break;
        case ZK_WS_EV_PONG:
            if (c->cb && c->cb->on_pong) c->cb->on_pong(c, ev.data);
            break;
        case ZK_WS_EV_CLOSE: /* closed before on_close: sends in it get ZK_ECLOSED */
            zk__conn_linger(c, zk__close_timeout(c));
            zk__conn_notify(c, ev.code, ev.data, 1);
            return len;
        case ZK_WS_EV_ERROR:
            zk__conn_linger(c, zk__close_timeout(c));
            zk__conn_notify(c, ev.code, zk_str_c(ev.error), 0);
            return len;
        default:
            break;
        }
        if ((ev.type == ZK_WS_EV_TEXT || ev.type == ZK_WS_EV_BINARY) && c->server &&
            c->state == ZK__C_OPEN && c->wq_bytes >= c->high_water) {
            zk__conn_pause(c);
            break;
        }
        if (!used && ev.type == ZK_WS_EV_NONE) break;
    }
    return at;
}

/* The loop's shared read buffer, with room for the leftover and a read. */
ZK__PRIVATE unsigned char *zk__read_buffer(zk_loop *loop, size_t need) {
    if (loop->rbuf_cap < need) {
        unsigned char *p = (unsigned char *)ZK_REALLOC(loop->rbuf, need);
        if (!p) return NULL;
        loop->rbuf = p;
        loop->rbuf_cap = need;
    }
    return loop->rbuf;
}

/* The read handler ended: one send for what it wrote; the rest is queued. */
ZK__PRIVATE void zk__uncork(zk_conn *c) {
    zk_loop *loop = c->loop;
    struct iovec iov;
    long n = 0;
    if (loop->corked != c) return;
    if (loop->cork_len && c->stream) {
        iov.iov_base = loop->cork;
        iov.iov_len = loop->cork_len;
        n = c->stream->ops->writev(c->stream, &iov, 1);
        if (n < 0) {
            loop->corked = NULL;
            zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "write failed");
            return;
        }
        c->wq_bytes -= (size_t)n;
    }
    if (zk__cork_spill(c, (size_t)n) < 0) return; /* the connection was dropped */
    zk__conn_flush_now(c); /* drain callback, write interest, shutdown when lingering */
}

ZK__PRIVATE void zk__conn_readable(zk_conn *c) {
    int reads;
    c->busy++;
    zk__cork(c);
    for (reads = 0; reads < ZK__READS_PER_EVENT && c->stream && !c->rpaused; reads++) {
        size_t have = c->rlen, used;
        unsigned char *buf = zk__read_buffer(c->loop, have + ZK__READ_BUFFER);
        long n;
        if (!buf) {
            zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "out of memory");
            break;
        }
        if (have) memcpy(buf, c->rbuf, have);
        n = c->stream->ops->read(c->stream, buf + have, ZK__READ_BUFFER);
        if (n == ZK_EAGAIN && c->rleft) { /* reads resumed: what a pause left */
            n = 0;
        } else if (n == ZK_EAGAIN) {
            break;
        } else if (n <= 0) {
            zk__conn_gone(c, ZK_CLOSE_ABNORMAL, n == 0 ? "connection closed by peer" : "connection reset");
            break;
        } else {
            c->last_rx = zk_loop_now(c->loop);
            c->pinged = 0; /* anything from the peer proves it alive */
        }
        c->rleft = 0;
        have += (size_t)n;
        used = 0;
        if (c->state == ZK__C_HANDSHAKE) {
            used = c->server ? zk__server_handshake(c, buf, have) : zk__client_handshake(c, buf, have);
        }
        if (c->state == ZK__C_OPEN || c->state == ZK__C_CLOSING) used += zk__conn_frames(c, buf + used, have - used);
        else if (c->state != ZK__C_HANDSHAKE) used = have; /* HTTP answered, lingering: discard */
        /* keep what was not consumed for the next read */
        have -= used;
        if (c->server && c->state == ZK__C_OPEN) {
            if (!have && !(c->ws.flags & (ZK__WS_IN_MESSAGE | ZK__WS_IN_FRAME))) {
                c->msg_started = 0; /* at a frame boundary: a whole control frame ends it too */
            } else if (!c->msg_started) {
                c->msg_started = 1; /* message_timeout_ms runs from here */
                c->msg_since = c->last_rx;
                zk__guard_arm(c);
            }
        }
        if (have > c->rlen || !have) {
            if (c->rbuf) ZK_FREE(c->rbuf);
            c->rbuf = NULL;
            if (have) {
                c->rbuf = (unsigned char *)ZK_MALLOC(have);
                if (!c->rbuf) {
                    zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "out of memory");
                    break;
                }
            }
        }
        if (have) memcpy(c->rbuf, buf + used, have);
        c->rlen = have;
        if (!c->stream || ((size_t)n < ZK__READ_BUFFER && !c->stream->loopback)) break; /* drained */
    }
    zk__uncork(c);
    c->busy--;
    zk__conn_release(c);
}

ZK__PRIVATE void zk__conn_writable(zk_conn *c) {
    c->busy++;
    zk__conn_flush_now(c);
    c->busy--;
    zk__conn_release(c);
}

/* ---- TCP ---- */

ZK__PRIVATE zk__tcp *zk__tcp_of(zk__stream *s) { return (zk__tcp *)(void *)s; }

ZK__PRIVATE long zk__tcp_read(zk__stream *s, void *buf, size_t cap) {
    ssize_t n;
    do {
        n = recv(zk__tcp_of(s)->io.fd, buf, cap, 0);
    } while (n < 0 && errno == EINTR);
    if (n >= 0) return (long)n;
    return errno == EAGAIN || errno == EWOULDBLOCK ? ZK_EAGAIN : ZK_EIO;
}

ZK__PRIVATE long zk__tcp_writev(zk__stream *s, const struct iovec *iov, int n) {
    struct msghdr m;
    ssize_t w;
    memset(&m, 0, sizeof m);
    m.msg_iov = (struct iovec *)(void *)iov;
    m.msg_iovlen = (size_t)n;
    do {
        w = sendmsg(zk__tcp_of(s)->io.fd, &m, MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    if (w >= 0) return (long)w;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : ZK_EIO;
}

ZK__PRIVATE void zk__tcp_want_write(zk__stream *s, int on) {
    zk__tcp *t = zk__tcp_of(s);
    zk__io_set(t->loop, &t->io, (t->no_read ? 0u : ZK__IO_READ) | (on ? ZK__IO_WRITE : 0u));
}

ZK__PRIVATE void zk__tcp_want_read(zk__stream *s, int on) {
    zk__tcp *t = zk__tcp_of(s);
    t->no_read = !on;
    zk__io_set(t->loop, &t->io, (on ? ZK__IO_READ : 0u) | (t->io.events & ZK__IO_WRITE));
}

ZK__PRIVATE void zk__tcp_shutdown(zk__stream *s) { shutdown(zk__tcp_of(s)->io.fd, SHUT_WR); }

ZK__PRIVATE void zk__tcp_close(zk__stream *s) {
    zk__tcp *t = zk__tcp_of(s);
    zk__io_set(t->loop, &t->io, 0);
    if (s->conn && s->conn->wq) {
        /* Bytes the peer never took (write_timeout_ms, a drop): a plain
           close() would queue the FIN behind them, so a peer that does not
           read never learns, and the kernel keeps the socket and its send
           buffer, probing a zero window for a minute or more. A reset
           tells the peer and frees both now. */
        struct linger lg;
        lg.l_onoff = 1;
        lg.l_linger = 0;
        setsockopt(t->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(t->io.fd); /* the memory goes with the connection's */
}

ZK__PRIVATE int zk__format_addr(const struct sockaddr *sa, char *out, size_t cap) {
    char host[INET6_ADDRSTRLEN];
    int port, n;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
        n = snprintf(out, cap, "[%s]:%d", host, port);
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
        n = snprintf(out, cap, "%s:%d", host, port);
    } else {
        return ZK_EIO; /* not an IP peer */
    }
    return n < 0 || (size_t)n >= cap ? ZK_ENOSPACE : n;
}

ZK__PRIVATE int zk__tcp_peer(zk__stream *s, char *out, size_t cap) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ss.ss_family = AF_UNSPEC; /* as in zk__server_accept */
    if (getpeername(zk__tcp_of(s)->io.fd, (struct sockaddr *)&ss, &len) < 0) return ZK_EIO;
    return zk__format_addr((struct sockaddr *)&ss, out, cap);
}

ZK__PRIVATE const zk__stream_ops zk__tcp_ops = {
    zk__tcp_read, zk__tcp_writev, zk__tcp_want_write, zk__tcp_want_read, zk__tcp_shutdown, zk__tcp_close,
    zk__tcp_peer
};

ZK__PRIVATE void zk__tcp_event(zk__io *io, unsigned events) {
    zk__tcp *t = (zk__tcp *)(void *)((char *)io - offsetof(zk__tcp, io));
    zk_conn *c = t->base.conn;
    if (t->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (!(events & (ZK__IO_WRITE | ZK__IO_ERROR))) return;
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        t->connecting = 0;
        zk__io_set(t->loop, io, ZK__IO_READ);
        zk__conn_connected(c, err);
        return;
    }
    c->busy++;
    if (events & ZK__IO_WRITE) zk__conn_writable(c);
    if ((events & ZK__IO_READ) && c->state != ZK__C_GONE) zk__conn_readable(c);
    c->busy--;
    zk__conn_release(c);
}

ZK__PRIVATE void zk__tcp_tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef SO_NOSIGPIPE
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
}

/* c was made by zk__conn_new with room for the stream (tcp = 1). */
ZK__PRIVATE zk__tcp *zk__tcp_new(zk_loop *loop, int fd, zk_conn *c) {
    zk__tcp *t = (zk__tcp *)(void *)(c + 1);
    memset(t, 0, sizeof *t);
    t->base.ops = &zk__tcp_ops;
    t->base.conn = c;
    t->loop = loop;
    zk__io_init(&t->io, fd, zk__tcp_event);
    c->stream = &t->base;
    return t;
}

/* ---- loopback: an in-memory pair of streams ---- */

typedef struct zk__lb_seg {
    struct zk__lb_seg *next;
    uint64_t due;      /* loop time it may be read */
    size_t len, off;
} zk__lb_seg;

typedef struct zk__lb_end {
    zk__stream base;
    struct zk__lb_pair *pair;
    int side;
    zk__lb_seg *in, *in_tail; /* bytes written by the peer, not yet read */
    size_t in_bytes;
    int stalled, want_write, closed, shut_in; /* shut_in: the peer shut down */
    zk__work readable, writable;
    zk_timer due_timer;
} zk__lb_end;

typedef struct zk__lb_pair {
    zk__lb_end end[2];
    zk_loop *loop;
    zk_loopback_opts opts;
    int reset, silent, refs;
} zk__lb_pair;

ZK__PRIVATE zk__lb_end *zk__lb_of(zk__stream *s) { return (zk__lb_end *)(void *)s; }
ZK__PRIVATE zk__lb_end *zk__lb_peer(zk__lb_end *e) { return &e->pair->end[!e->side]; }

ZK__PRIVATE void zk__lb_segs_free(zk__lb_end *e) {
    zk__lb_seg *g = e->in;
    while (g) {
        zk__lb_seg *next = g->next;
        ZK_FREE(g);
        g = next;
    }
    e->in = e->in_tail = NULL;
    e->in_bytes = 0;
}

/* Bytes that have arrived (their delay passed) are readable. */
ZK__PRIVATE int zk__lb_ready(zk__lb_end *e) {
    if (e->pair->reset) return 1;
    if (e->in) return e->in->due <= zk_loop_now(e->pair->loop);
    return e->shut_in;
}

ZK__PRIVATE void zk__lb_poke(zk__lb_end *e) {
    if (e->closed || e->stalled) return;
    if (zk__lb_ready(e)) {
        zk__work_queue(e->pair->loop, &e->readable);
    } else if (e->in) {
        uint64_t now = zk_loop_now(e->pair->loop);
        zk_timer_start(&e->due_timer, e->in->due > now ? e->in->due - now : 0, 0);
    }
}

ZK__PRIVATE void zk__lb_readable_work(zk__work *w) {
    zk__lb_end *e = (zk__lb_end *)(void *)((char *)w - offsetof(zk__lb_end, readable));
    if (!e->closed && e->base.conn) zk__conn_readable(e->base.conn);
}

ZK__PRIVATE void zk__lb_writable_work(zk__work *w) {
    zk__lb_end *e = (zk__lb_end *)(void *)((char *)w - offsetof(zk__lb_end, writable));
    if (!e->closed && e->want_write && e->base.conn) zk__conn_writable(e->base.conn);
}

ZK__PRIVATE void zk__lb_due(zk_timer *t) { zk__lb_poke((zk__lb_end *)t->data); }

ZK__PRIVATE long zk__lb_read(zk__stream *s, void *buf, size_t cap) {
    zk__lb_end *e = zk__lb_of(s), *peer = zk__lb_peer(e);
    size_t chunk = e->pair->opts.chunk, got = 0;
    uint64_t now = zk_loop_now(e->pair->loop);
    if (e->pair->reset) return ZK_EIO;
    if (e->stalled) return ZK_EAGAIN;
    if (chunk && cap > chunk) cap = chunk;
    while (e->in && got < cap && e->in->due <= now) {
        zk__lb_seg *g = e->in;
        size_t n = ZK__MIN(cap - got, g->len - g->off);
        memcpy((unsigned char *)buf + got, (unsigned char *)(g + 1) + g->off, n);
        g->off += n;
        got += n;
        e->in_bytes -= n;
        if (g->off == g->len) {
            e->in = g->next;
            if (!e->in) e->in_tail = NULL;
            ZK_FREE(g);
        }
    }
    if (got && peer->want_write && !peer->closed) zk__work_queue(e->pair->loop, &peer->writable);
    if (got) {
        zk__lb_poke(e); /* level-triggered: more may be waiting */
        return (long)got;
    }
    if (!e->in && e->shut_in) return 0;
    zk__lb_poke(e);
    return ZK_EAGAIN;
}

ZK__PRIVATE long zk__lb_writev(zk__stream *s, const struct iovec *iov, int n) {
    zk__lb_end *e = zk__lb_of(s), *peer = zk__lb_peer(e);
    zk__lb_pair *p = e->pair;
    size_t cap = p->opts.capacity ? p->opts.capacity : (size_t)256 * 1024, total = 0, room;
    zk__lb_seg *g;
    int i;
    if (p->reset || peer->closed) return ZK_EIO;
    for (i = 0; i < n; i++) total += iov[i].iov_len;
    if (p->silent) return (long)total; /* a pulled cable: gone without a trace */
    room = peer->in_bytes < cap ? cap - peer->in_bytes : 0;
    if (total > room) total = room;
    if (total == 0) return 0;
    g = (zk__lb_seg *)ZK_MALLOC(sizeof *g + total);
    if (!g) return ZK_ENOMEM;
    g->next = NULL;
    g->due = zk_loop_now(p->loop) + p->opts.delay_ms;
    g->len = total;
    g->off = 0;
    {
        size_t at = 0;
        for (i = 0; i < n && at < total; i++) {
            size_t k = ZK__MIN(iov[i].iov_len, total - at);
            memcpy((unsigned char *)(g + 1) + at, iov[i].iov_base, k);
            at += k;
        }
    }
    if (peer->in_tail) peer->in_tail->next = g;
    else peer->in = g;
    peer->in_tail = g;
    peer->in_bytes += total;
    zk__lb_poke(peer);
    return (long)total;
}

ZK__PRIVATE void zk__lb_want_write(zk__stream *s, int on) {
    zk__lb_end *e = zk__lb_of(s);
    e->want_write = on;
    if (on && !e->pair->silent && zk__lb_peer(e)->in_bytes <
        (e->pair->opts.capacity ? e->pair->opts.capacity : (size_t)256 * 1024))
        zk__work_queue(e->pair->loop, &e->writable);
}

ZK__PRIVATE void zk__lb_shutdown(zk__stream *s) {
    zk__lb_end *peer = zk__lb_peer(zk__lb_of(s));
    if (zk__lb_of(s)->pair->silent) return;
    peer->shut_in = 1;
    zk__lb_poke(peer);
}

ZK__PRIVATE void zk__lb_release(zk__lb_pair *p) {
    if (--p->refs == 0) ZK_FREE(p);
}

ZK__PRIVATE void zk__lb_close(zk__stream *s) {
    zk__lb_end *e = zk__lb_of(s), *peer = zk__lb_peer(e);
    zk__lb_pair *p = e->pair;
    e->closed = 1;
    e->base.conn = NULL;
    zk__work_cancel(p->loop, &e->readable);
    zk__work_cancel(p->loop, &e->writable);
    zk_timer_stop(&e->due_timer);
    zk__lb_segs_free(e);
    if (!peer->closed && !p->silent) {
        peer->shut_in = 1; /* closing also ends our direction */
        zk__lb_poke(peer);
    }
    zk__lb_release(p);
}

ZK__PRIVATE int zk__lb_peer_name(zk__stream *s, char *out, size_t cap) {
    static const char name[] = "loopback";
    (void)s;
    if (cap < sizeof name) return ZK_ENOSPACE;
    memcpy(out, name, sizeof name);
    return (int)sizeof name - 1;
}

ZK__PRIVATE const zk__stream_ops zk__lb_ops = {
    zk__lb_read, zk__lb_writev, zk__lb_want_write, NULL, zk__lb_shutdown, zk__lb_close, zk__lb_peer_name
};

ZK__PRIVATE zk__lb_pair *zk__lb_pair_new(zk_loop *loop, const zk_loopback_opts *opts) {
    zk__lb_pair *p = (zk__lb_pair *)ZK_MALLOC(sizeof *p);
    int i;
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->loop = loop;
    if (opts) p->opts = *opts;
    p->refs = 2;
    for (i = 0; i < 2; i++) {
        zk__lb_end *e = &p->end[i];
        e->base.ops = &zk__lb_ops;
        e->base.loopback = 1;
        e->pair = p;
        e->side = i;
        e->readable.fn = zk__lb_readable_work;
        e->writable.fn = zk__lb_writable_work;
        zk_timer_init(loop, &e->due_timer, zk__lb_due, e);
    }
    return p;
}

ZK__PRIVATE zk__lb_end *zk__lb_end_of(zk_conn *c) {
    return c->stream && c->stream->loopback ? zk__lb_of(c->stream) : NULL;
}

ZK_API int zk_loopback_stall(zk_conn *c, int stalled) {
    zk__lb_end *e = zk__lb_end_of(c);
    if (!e) return ZK_EINVAL;
    e->stalled = stalled;
    if (!stalled) zk__lb_poke(e);
    return 0;
}

ZK_API int zk_loopback_drop(zk_conn *c) {
    zk__lb_end *e = zk__lb_end_of(c);
    if (!e) return ZK_EINVAL;
    e->pair->reset = 1;
    zk__lb_segs_free(&e->pair->end[0]);
    zk__lb_segs_free(&e->pair->end[1]);
    zk__lb_poke(&e->pair->end[0]);
    zk__lb_poke(&e->pair->end[1]);
    return 0;
}

ZK_API int zk_loopback_silence(zk_conn *c, int silent) {
    zk__lb_end *e = zk__lb_end_of(c);
    if (!e) return ZK_EINVAL;
    e->pair->silent = silent;
    if (silent) { /* what was on the wire is lost too */
        zk__lb_segs_free(&e->pair->end[0]);
        zk__lb_segs_free(&e->pair->end[1]);
    }
    return 0;
}

/* ---- addresses ---- */

/* Fills addr from a host (numeric v4/v6, "localhost", or a name looked up
   with getaddrinfo, which blocks) and port. */
ZK__PRIVATE int zk__resolve(const char *host, int port, struct sockaddr_storage *addr,
                            socklen_t *len, int passive) {
    struct sockaddr_in *a4 = (struct sockaddr_in *)(void *)addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)(void *)addr;
    memset(addr, 0, sizeof *addr);
    if (!host || !*host || strcmp(host, "localhost") == 0) host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof *a4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof *a6;
        return 0;
    }
    {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = passive ? AI_PASSIVE : 0;
        if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return ZK_ENOTFOUND;
        memcpy(addr, res->ai_addr, res->ai_addrlen);
        *len = (socklen_t)res->ai_addrlen;
        if (addr->ss_family == AF_INET) a4->sin_port = htons((uint16_t)port);
        else a6->sin6_port = htons((uint16_t)port);
        freeaddrinfo(res);
        return 0;
    }
}

/* ---- server ---- */

ZK__PRIVATE void zk__server_add(zk_server *s, zk_conn *c) {
    c->server = s;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
}

ZK__PRIVATE zk_conn *zk__server_conn(zk_server *s, int tcp) {
    zk_conn *c = zk__conn_new(s->loop, &s->opts.cb, s->opts.max_message, s->opts.write_high_water,
                              s->opts.write_limit, ZK_WS_SERVER, tcp);
    if (!c) return NULL;
    c->state = ZK__C_HANDSHAKE;
    zk__server_add(s, c);
    zk__conn_arm(c, ZK__T_HANDSHAKE, s->opts.handshake_timeout_ms ? s->opts.handshake_timeout_ms : 10000);
    return c;
}

ZK__PRIVATE void zk__server_accept(zk__io *io, unsigned events) {
    zk_server *s = (zk_server *)(void *)((char *)io - offsetof(zk_server, io));
    int i;
    (void)events;
    for (i = 0; i < 64; i++) {
        zk_conn *c;
        zk__tcp *t;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        unsigned char key[16];
        int fd, keyed;
        /* accept writes the family; it is set first as clang's analyzer does
           not see writes through glibc's transparent-union sockaddr argument */
        ss.ss_family = AF_UNSPEC;
        fd = accept(s->fd, (struct sockaddr *)&ss, &sl);
        if (fd < 0) break; /* EAGAIN, or out of descriptors: try again later */
        keyed = s->opts.max_per_address && zk__addr_key(&ss, key) == 0;
        if (zk__set_nonblock(fd) < 0 || s->shutting_down ||
            (s->opts.max_connections && s->nconns >= s->opts.max_connections) ||
            (keyed && zk__addr_find(s, key) && zk__addr_find(s, key)->count >= s->opts.max_per_address) ||
            (keyed && zk__addr_add(s, key) < 0)) {
            close(fd);
            continue;
        }
        zk__tcp_tune(fd);
        c = zk__server_conn(s, 1);
        if (!c) {
            if (keyed) zk__addr_remove(s, key);
            close(fd);
            continue;
        }
        if (keyed) { /* counted until it is gone */
            memcpy(c->addr, key, 16);
            c->addr_counted = 1;
        }
        t = zk__tcp_new(s->loop, fd, c);
        if (!t || zk__io_set(s->loop, &t->io, ZK__IO_READ) < 0) {
            if (!t) close(fd);
            zk__conn_gone(c, ZK_CLOSE_ABNORMAL, "out of resources");
        }
    }
}

ZK_API zk_server *zk_server_new(zk_loop *loop, const zk_server_opts *opts) {
    zk_server *s = (zk_server *)ZK_MALLOC(sizeof *s);
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    s->loop = loop;
    if (opts) s->opts = *opts;
    s->fd = -1;
    zk_timer_init(loop, &s->shutdown_timer, NULL, s);
    return s;
}

ZK_API int zk_server_listen(zk_server *s) {
    struct sockaddr_storage addr;
    socklen_t len;
    int one = 1, rc, fd;
    if (s->fd >= 0) return ZK_EINVAL;
    rc = zk__resolve(s->opts.host, s->opts.port, &addr, &len, 1);
    if (rc < 0) return rc == ZK_ENOTFOUND ? ZK_EINVAL : rc;
    fd = socket(addr.ss_family, SOCK_STREAM, 0);
    if (fd < 0) return ZK_EIO;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, len) < 0) {
        rc = errno == EADDRINUSE ? ZK_EADDRINUSE : ZK_EIO;
        close(fd);
        return rc;
    }
    if (listen(fd, s->opts.backlog ? s->opts.backlog : 511) < 0 || zk__set_nonblock(fd) < 0) {
        close(fd);
        return ZK_EIO;
    }
    len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    s->port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)(void *)&addr)->sin6_port
                                               : ((struct sockaddr_in *)(void *)&addr)->sin_port);
    s->fd = fd;
    zk__io_init(&s->io, fd, zk__server_accept);
    rc = zk__io_set(s->loop, &s->io, ZK__IO_READ);
    if (rc < 0) {
        close(fd);
        s->fd = -1;
        return rc;
    }
    return 0;
}

ZK_API int zk_server_port(const zk_server *s) { return s->port; }
ZK_API size_t zk_server_connections(const zk_server *s) { return s->nconns; }
ZK_API void *zk_server_data(const zk_server *s) { return s->opts.data; }
ZK_API zk_loop *zk_server_loop(const zk_server *s) { return s->loop; }

ZK__PRIVATE void zk__server_stop_listening(zk_server *s) {
    if (s->fd < 0) return;
    zk__io_set(s->loop, &s->io, 0);
    close(s->fd);
    s->fd = -1;
}

ZK__PRIVATE void zk__server_check_done(zk_server *s) {
    if (s->shutting_down == 1 && s->nconns == 0 && !s->holding) {
        s->shutting_down = 2;
        zk_timer_stop(&s->shutdown_timer);
        if (s->shutdown_done) s->shutdown_done(s);
    }
}

ZK__PRIVATE void zk__server_shutdown_timeout(zk_timer *t) {
    zk_server *s = (zk_server *)t->data;
    s->holding = 1;
    while (s->conns) zk_conn_abort(s->conns);
    s->holding = 0;
    zk__server_check_done(s); /* the last use of s: done may free it */
}

ZK_API void zk_server_shutdown(zk_server *s, uint32_t timeout_ms, void (*done)(zk_server *s)) {
    zk_conn *c, *next;
    if (s->shutting_down) return;
    zk__server_stop_listening(s);
    s->shutting_down = 1;
    s->holding = 1;
    s->shutdown_done = done;
    s->shutdown_timer.fn = zk__server_shutdown_timeout;
    zk_timer_start(&s->shutdown_timer, timeout_ms ? timeout_ms : 5000, 0);
    for (c = s->conns; c; c = next) {
        next = c->next;
        if (c->state == ZK__C_OPEN) zk_conn_close(c, ZK_CLOSE_GOING_AWAY, "server shutting down");
        else if (c->state == ZK__C_HANDSHAKE) zk_conn_abort(c);
    }
    s->holding = 0;
    zk__server_check_done(s); /* the last use of s: done may free it */
}

ZK_API void zk_server_free(zk_server *s) {
    if (!s) return;
    zk__server_stop_listening(s);
    s->shutting_down = 2;
    zk_timer_stop(&s->shutdown_timer);
    while (s->conns) zk_conn_abort(s->conns);
    ZK_FREE(s->addrs);
    ZK_FREE(s);
}

/* ---- client ---- */

/* Splits ws://host[:port][/path][?query]. */
ZK__PRIVATE int zk__parse_url(const char *url, char *host, size_t host_cap, int *port,
                              const char **path) {
    const char *p, *h, *e;
    size_t n;
    if (strncmp(url, "ws://", 5) != 0) return ZK_EINVAL;
    p = url + 5;
    if (*p == '[') {
        h = ++p;
        while (*p && *p != ']') p++;
        if (*p != ']') return ZK_EINVAL;
        e = p++;
    } else {
        h = p;
        while (*p && *p != ':' && *p != '/' && *p != '?') p++;
        e = p;
    }
    n = (size_t)(e - h);
    if (n == 0 || n >= host_cap) return ZK_EINVAL;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = 80;
    if (*p == ':') {
        long v = 0;
        p++;
        if (*p < '0' || *p > '9') return ZK_EINVAL;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (*p++ - '0');
            if (v > 65535) return ZK_EINVAL;
        }
        if (v == 0) return ZK_EINVAL;
        *port = (int)v;
    }
    if (*p && *p != '/' && *p != '?') return ZK_EINVAL;
    *path = p;
    return 0;
}

/* Copies what the client needs after connect returns into one block. */
ZK__PRIVATE zk__client *zk__client_new(zk_loop *loop, const zk_conn_opts *o, const char *host,
                                       int port, const char *path, int *err) {
    zk__client *cl = (zk__client *)ZK_MALLOC(sizeof *cl);
    size_t need = strlen(host) + 16 + strlen(path) + 2 + (o->origin ? strlen(o->origin) + 1 : 0), i;
    char *w;
    int v6 = strchr(host, ':') != NULL;
    if (!cl) { *err = ZK_ENOMEM; return NULL; }
    memset(cl, 0, sizeof *cl);
    if (o->protocol_count > 8) { ZK_FREE(cl); *err = ZK_EINVAL; return NULL; }
    for (i = 0; i < o->protocol_count; i++) need += strlen(o->protocols[i]) + 1;
    need += o->header_count * sizeof(zk_http_header) + sizeof(zk_http_header);
    for (i = 0; i < o->header_count; i++) need += o->headers[i].name.len + o->headers[i].value.len;
    cl->strings = (char *)ZK_MALLOC(need);
    if (!cl->strings) { ZK_FREE(cl); *err = ZK_ENOMEM; return NULL; }
    /* headers first: the block is malloc-aligned */
    cl->headers = (zk_http_header *)(void *)cl->strings;
    w = cl->strings + o->header_count * sizeof(zk_http_header) + sizeof(zk_http_header);
    for (i = 0; i < o->header_count; i++) {
        memcpy(w, o->headers[i].name.ptr, o->headers[i].name.len);
        cl->headers[i].name.ptr = w;
        cl->headers[i].name.len = o->headers[i].name.len;
        w += o->headers[i].name.len;
        memcpy(w, o->headers[i].value.ptr, o->headers[i].value.len);
        cl->headers[i].value.ptr = w;
        cl->headers[i].value.len = o->headers[i].value.len;
        w += o->headers[i].value.len;
    }
    cl->hs.headers = cl->headers;
    cl->hs.header_count = o->header_count;
    cl->hs.host = w;
    w += port == 80 ? sprintf(w, v6 ? "[%s]" : "%s", host) : sprintf(w, v6 ? "[%s]:%d" : "%s:%d", host, port);
    w++;
    cl->hs.path = w;
    w += sprintf(w, "%s%s", *path == '/' ? "" : "/", path) + 1;
    if (o->origin) {
        cl->hs.origin = w;
        w += sprintf(w, "%s", o->origin) + 1;
    }
    for (i = 0; i < o->protocol_count; i++) {
        cl->protocols[i] = w;
        w += sprintf(w, "%s", o->protocols[i]) + 1;
    }
    cl->hs.protocols = cl->protocols;
    cl->hs.protocol_count = o->protocol_count;
    zk_loop_random_bytes(loop, cl->hs.key, 16);
    cl->cb = o->cb;
    cl->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 10000;
    cl->close_timeout_ms = o->close_timeout_ms ? o->close_timeout_ms : 3000;
    return cl;
}

/* TCP is up (err 0) or failed: send the upgrade request. */
/* The upgrade request goes into the queue when the connection is made, so
   that nothing can fail once the transport is up; it is written when the
   connect completes. */
ZK__PRIVATE int zk__client_request(zk_conn *c) {
    char req[4096];
    unsigned char *p;
    int n = zk_ws_client_request(req, sizeof req, &c->client->hs);
    if (n < 0) return n == ZK_EINVAL ? ZK_EINVAL : ZK_ETOOBIG;
    p = zk__wq_raw(c, (size_t)n);
    if (!p) return ZK_ENOMEM;
    memcpy(p, req, (size_t)n);
    return 0;
}

ZK__PRIVATE void zk__conn_connected(zk_conn *c, int err) {
    c->busy++;
    if (err) {
        zk__conn_gone(c, ZK_CLOSE_ABNORMAL, err == ECONNREFUSED ? "connection refused" : "connect failed");
    } else {
        c->state = ZK__C_HANDSHAKE;
        zk__conn_schedule_flush(c);
    }
    c->busy--;
    zk__conn_release(c);
}

ZK__PRIVATE zk_conn *zk__client_conn(zk_loop *loop, const zk_conn_opts *o, int resolve, int *err) {
    char host[256];
    const char *path;
    int port, rc;
    zk_conn *c;
    zk__client *cl;
    if (!o || !o->url) { *err = ZK_EINVAL; return NULL; }
    rc = zk__parse_url(o->url, host, sizeof host, &port, &path);
    if (rc < 0) { *err = rc; return NULL; }
    cl = zk__client_new(loop, o, host, port, path, err);
    if (!cl) return NULL;
    c = zk__conn_new(loop, &cl->cb, o->max_message, o->write_high_water, o->write_limit, ZK_WS_CLIENT,
                     resolve);
    if (!c) {
        ZK_FREE(cl->strings);
        ZK_FREE(cl);
        *err = ZK_ENOMEM;
        return NULL;
    }
    c->client = cl;
    c->data = o->data;
    c->state = ZK__C_CONNECTING;
    /* a request that cannot be written is refused here, not after the
       connection was handed out */
    rc = zk__client_request(c);
    if (rc < 0) {
        zk__conn_free(c);
        *err = rc;
        return NULL;
    }
    c->next = (zk_conn *)loop->clients;
    if (c->next) c->next->prev = c;
    loop->clients = c;
    loop->drop_clients = zk__drop_clients;
    rc = resolve ? zk__resolve(host, port, &cl->addr, &cl->addr_len, 0) : 0;
    if (rc < 0) {
        zk__conn_free(c);
        *err = rc;
        return NULL;
    }
    zk__conn_arm(c, ZK__T_HANDSHAKE, cl->connect_timeout_ms);
    return c;
}

ZK_API zk_conn *zk_conn_connect(zk_loop *loop, const zk_conn_opts *opts, int *err) {
    int dummy, fd, rc;
    zk_conn *c;
    zk__tcp *t;
    if (!err) err = &dummy;
    *err = 0;
    c = zk__client_conn(loop, opts, 1, err);
    if (!c) return NULL;
    fd = socket(c->client->addr.ss_family, SOCK_STREAM, 0);
    if (fd < 0 || zk__set_nonblock(fd) < 0) {
        if (fd >= 0) close(fd);
        zk__conn_free(c);
        *err = ZK_EIO;
        return NULL;
    }
    zk__tcp_tune(fd);
    t = zk__tcp_new(loop, fd, c);
    if (!t) {
        close(fd);
        zk__conn_free(c);
        *err = ZK_ENOMEM;
        return NULL;
    }
    rc = connect(fd, (struct sockaddr *)&c->client->addr, c->client->addr_len);
    if (rc == 0) {
        zk__io_set(loop, &t->io, ZK__IO_READ);
        zk__conn_connected(c, 0);
    } else if (errno == EINPROGRESS) {
        t->connecting = 1;
        zk__io_set(loop, &t->io, ZK__IO_WRITE);
    } else {
        /* refused at once (a closed local port): report it on the loop */
        t->connecting = 1;
        zk__io_set(loop, &t->io, ZK__IO_WRITE);
    }
    return c;
}

ZK_API zk_conn *zk_loopback_connect(zk_server *s, const zk_conn_opts *copts,
                                    const zk_loopback_opts *fault, int *err) {
    int dummy;
    zk_conn *c, *sc;
    zk__lb_pair *p;
    if (!err) err = &dummy;
    *err = 0;
    c = zk__client_conn(s->loop, copts, 0, err);
    if (!c) return NULL;
    p = zk__lb_pair_new(s->loop, fault);
    sc = p && !s->shutting_down ? zk__server_conn(s, 0) : NULL;
    if (!sc) {
        if (p) ZK_FREE(p);
        zk__conn_free(c);
        *err = s->shutting_down ? ZK_ECLOSED : ZK_ENOMEM;
        return NULL;
    }
    c->stream = &p->end[0].base;
    p->end[0].base.conn = c;
    sc->stream = &p->end[1].base;
    p->end[1].base.conn = sc;
    zk__conn_connected(c, 0);
    return c;
}
